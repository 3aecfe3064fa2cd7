/* base_mem.c: mc_mem_check, a kernel-checked probe of caller memory (base_mem.h).
 * Each thread keeps a non-blocking pipe (closed at thread exit; a forked child
 * makes its own, never sharing its parent's); probes move at most MM_IOV bytes
 * through it per syscall, so the pipe never fills. */
#include "base_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#define MM_PAGE 4096u /* the smallest page: a protection boundary is a multiple of it */
#define MM_IOV 256    /* bytes (pages) per syscall: well under the pipe's 4 KiB atomic size */

typedef struct {
    int rfd, wfd;
    pid_t pid; /* the process that made the pipe: a forked child makes its own */
} mm_pipe_t;

static pthread_key_t mm_key;
static pthread_once_t mm_once = PTHREAD_ONCE_INIT;
static int mm_key_ok;

static void mm_close(void *v)
{
    mm_pipe_t *p = v;
    close(p->rfd);
    close(p->wfd);
    free(p);
}

static void mm_init(void)
{
    mm_key_ok = pthread_key_create(&mm_key, mm_close) == 0;
}

/* This thread's pipe, made in this process; NULL when none can be made. */
static mm_pipe_t *mm_pipe(void)
{
    pthread_once(&mm_once, mm_init);
    if (!mm_key_ok) return NULL;
    mm_pipe_t *p = pthread_getspecific(mm_key);
    pid_t me = getpid();
    if (p && p->pid == me) return p;
    if (p) { /* inherited through fork: shared with the parent, never use it */
        pthread_setspecific(mm_key, NULL);
        mm_close(p);
    }
    int pf[2];
    if (pipe2(pf, O_CLOEXEC | O_NONBLOCK) != 0) return NULL;
    p = malloc(sizeof *p);
    if (!p || pthread_setspecific(mm_key, p) != 0) {
        close(pf[0]);
        close(pf[1]);
        free(p);
        return NULL;
    }
    *p = (mm_pipe_t){pf[0], pf[1], me};
    return p;
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
    mm_pipe_t *pp = mm_pipe();
    if (!pp) return 0; /* cannot tell */
    int rfd = pp->rfd, wfd = pp->wfd;
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
