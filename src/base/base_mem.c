/* base_mem.c: mc_mem_check, a kernel-checked probe of caller memory (base_mem.h).
 * Each thread keeps a non-blocking pipe (closed at thread exit); probes move at
 * most MM_IOV bytes through it per syscall, so the pipe never fills. */
#include "base_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/uio.h>
#include <unistd.h>

#define MM_PAGE 4096u /* the smallest page: a protection boundary is a multiple of it */
#define MM_IOV 256    /* bytes (pages) per syscall: well under the pipe's 4 KiB atomic size */

static pthread_key_t mm_key;
static pthread_once_t mm_once = PTHREAD_ONCE_INIT;
static int mm_key_ok;

static void mm_close(void *v)
{
    intptr_t fds = (intptr_t)v; /* (rfd + 1) | (wfd + 1) << 32 */
    close((int)((fds & 0xffffffff) - 1));
    close((int)((fds >> 32) - 1));
}

static void mm_init(void)
{
    mm_key_ok = pthread_key_create(&mm_key, mm_close) == 0;
}

/* This thread's pipe; 0, or -1 when none can be made. */
static int mm_pipe(int *rfd, int *wfd)
{
    pthread_once(&mm_once, mm_init);
    if (!mm_key_ok) return -1;
    intptr_t fds = (intptr_t)pthread_getspecific(mm_key);
    if (!fds) {
        int pf[2];
        if (pipe2(pf, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
        fds = (intptr_t)(pf[0] + 1) | ((intptr_t)(pf[1] + 1) << 32);
        if (pthread_setspecific(mm_key, (void *)fds) != 0) {
            close(pf[0]);
            close(pf[1]);
            return -1;
        }
    }
    *rfd = (int)((fds & 0xffffffff) - 1);
    *wfd = (int)((fds >> 32) - 1);
    return 0;
}

/* Empties the pipe after a failed probe. */
static void mm_drain(int rfd)
{
    char junk[MM_IOV];
    while (read(rfd, junk, sizeof junk) > 0) {
    }
}

int mc_mem_check(const void *p, size_t len, int writable)
{
    if (!len) return 0;
    uintptr_t a = (uintptr_t)p, end = a + len;
    if (end < a) return -EFAULT;
    int rfd, wfd;
    if (mm_pipe(&rfd, &wfd)) return 0; /* cannot tell */
    struct iovec iov[MM_IOV];
    while (a < end) {
        int n = 0;
        for (; n < MM_IOV && a < end; n++) {
            iov[n].iov_base = (void *)a;
            iov[n].iov_len = 1;
            a = (a & ~(uintptr_t)(MM_PAGE - 1)) + MM_PAGE; /* next page's first byte */
        }
        ssize_t w = writev(wfd, iov, n);
        if (w != n) {
            if (w > 0) mm_drain(rfd);
            return -EFAULT;
        }
        ssize_t r;
        if (writable) {
            r = readv(rfd, iov, n);
        } else {
            char junk[MM_IOV];
            r = read(rfd, junk, (size_t)n);
        }
        if (r != n) {
            mm_drain(rfd);
            return -EFAULT;
        }
    }
    return 0;
}
