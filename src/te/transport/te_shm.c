/* te_shm.c: same-host transport. The initiator copies straight between its
 * buffer and the target's registered memory with process_vm_readv/writev: one
 * kernel copy, no socket, no user-space copy, for any memory the target
 * registered (malloc'd, mmap'd or memfd-backed alike). The target's server is
 * not involved, so the range is checked here against the target's descriptor
 * before every copy (mc__te_peer_check_range in the engine). When the kernel
 * refuses (EPERM: ptrace restrictions), the peer falls back to tcp for good.
 * Pid reuse: a descriptor names the pid and its start time; the engine holds a
 * pidfd of the verified process and checks before each copy that it has not
 * exited, so a stale descriptor can never make us write into another process.
 * Unregistration: the owner bumps a registration generation (its address and
 * value are in the descriptor) before it changes its buffer table; we read it
 * with process_vm_readv before every copy and report MC__TE_STALE on a change,
 * so the engine re-reads the descriptor (or lets the owner's server decide,
 * over tcp) instead of copying into memory that is no longer registered. The
 * window left is one copy that passed this check just before the owner's
 * unregister began; over tcp there is none (the owner's server holds the table
 * shared while bytes move). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base_log.h"
#include "te_int.h"

#define TAG "te-shm"

uint64_t mc__te_proc_start_time(int64_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may contain spaces and ')' */
    if (!p) return 0;
    /* after ") " come fields 3..; starttime is field 22 */
    int field = 2;
    for (p++; *p && field < 22; p++)
        if (*p == ' ') field++;
    return field == 22 ? strtoull(p, NULL, 10) : 0;
}

int mc__te_shm_attach(int64_t pid, uint64_t start_time)
{
    if (pid <= 0 || start_time == 0) return -1;
    int fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
    if (fd < 0) return -1;
    if (mc__te_proc_start_time(pid) != start_time) { /* checked after opening: fd pins it */
        close(fd);
        return -1;
    }
    return fd;
}

static int shm_xfer(mc_te_t *te, mc__te_peer_t *p, int opcode, void *local, uint64_t remote,
                    uint64_t len, int *timed_out)
{
    pthread_mutex_lock(&p->lock);
    pid_t pid = (pid_t)p->desc.pid;
    uint64_t gen_addr = p->desc.gen_addr, gen = p->desc.gen, live = 0;
    struct pollfd alive = {.fd = p->pidfd, .events = POLLIN};
    pthread_mutex_unlock(&p->lock);
    if (alive.fd < 0 || poll(&alive, 1, 0) != 0) { /* readable pidfd: the process exited */
        MC_LOGW(TAG, "segment '%s': process %d is gone", p->name, (int)pid);
        return MC_TE_ERR_SOCKET;
    }
    struct iovec gl = {&live, sizeof live}, gr = {(void *)(uintptr_t)gen_addr, sizeof live};
    if (!gen_addr || process_vm_readv(pid, &gl, 1, &gr, 1, 0) != (ssize_t)sizeof live)
        return MC_TE_ERR_NOT_IMPLEMENTED; /* cannot tell: let the owner's server check (tcp) */
    if (live != gen) return MC__TE_STALE;
    uint64_t done = 0;
    while (done < len) {
        struct iovec l = {(char *)local + done, len - done};
        struct iovec r = {(void *)(uintptr_t)(remote + done), len - done};
        ssize_t n = opcode == MC_TE_OP_WRITE ? process_vm_writev(pid, &l, 1, &r, 1, 0)
                                             : process_vm_readv(pid, &l, 1, &r, 1, 0);
        if (n > 0) {
            done += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        int err = n < 0 ? errno : EFAULT;
        if (err == EPERM || err == ENOSYS) {
            MC_LOGW(TAG, "segment '%s': kernel refused process_vm access (%s); using tcp",
                    p->name, strerror(err));
            pthread_mutex_lock(&p->lock);
            p->shm_state = 0;
            pthread_mutex_unlock(&p->lock);
            return MC_TE_ERR_NOT_IMPLEMENTED; /* caller retries on tcp */
        }
        MC_LOGW(TAG, "segment '%s' (pid %d): copy failed: %s", p->name, (int)pid, strerror(err));
        return MC_TE_ERR_SOCKET;
    }
    return 0;
}

/* Pieces per process_vm_readv/writev call in mc__te_shm_xfer_many (the kernel
 * takes up to IOV_MAX; 2 x 128 iovecs stay small on the stack). */
#define SHM_IOVS 128

size_t mc__te_shm_xfer_many(mc_te_t *te, mc__te_peer_t *p, int opcode, mc__te_piece_t *const *pcs,
                            size_t n)
{
    (void)te;
    size_t done = 0;
    while (done < n) {
        size_t k = n - done < SHM_IOVS ? n - done : SHM_IOVS;
        struct iovec l[SHM_IOVS], r[SHM_IOVS];
        uint64_t want = 0;
        /* the same checks as shm_xfer, once per call instead of once per piece:
         * every range inside the descriptor whose generation is then compared */
        pthread_mutex_lock(&p->lock);
        int ok = p->shm_state == 1 && p->have_desc && p->pidfd >= 0 && p->desc.gen_addr;
        for (size_t i = 0; ok && i < k; i++) {
            const mc__te_piece_t *pc = pcs[done + i];
            ok = mc__te_desc_contains(&p->desc, pc->remote, pc->len);
            l[i] = (struct iovec){pc->local, pc->len};
            r[i] = (struct iovec){(void *)(uintptr_t)pc->remote, pc->len};
            want += pc->len;
        }
        pid_t pid = (pid_t)p->desc.pid;
        uint64_t gen_addr = p->desc.gen_addr, gen = p->desc.gen, live = 0;
        struct pollfd alive = {.fd = p->pidfd, .events = POLLIN};
        pthread_mutex_unlock(&p->lock);
        if (!ok || poll(&alive, 1, 0) != 0) return done; /* shm_xfer will tell why */
        struct iovec gl = {&live, sizeof live}, gr = {(void *)(uintptr_t)gen_addr, sizeof live};
        if (process_vm_readv(pid, &gl, 1, &gr, 1, 0) != (ssize_t)sizeof live || live != gen)
            return done;
        ssize_t got = opcode == MC_TE_OP_WRITE ? process_vm_writev(pid, l, k, r, k, 0)
                                               : process_vm_readv(pid, l, k, r, k, 0);
        if (got == (ssize_t)want) {
            done += k;
            continue;
        }
        /* short or failed (a bad local pointer, EINTR, EPERM): the pieces
         * covered whole are done, the rest go one by one through shm_xfer */
        for (size_t i = 0; got > 0 && i < k && (uint64_t)got >= l[i].iov_len; i++) {
            got -= (ssize_t)l[i].iov_len;
            done++;
        }
        return done;
    }
    return done;
}

const mc__te_transport_t mc__te_shm = {"shm", shm_xfer};
