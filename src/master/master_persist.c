/* master_persist.c: the persistence directory of the master (see
 * master_persist.h): file names, the lock file, log segments with their fsync
 * thread, snapshots written by a forked child, and replay with damage
 * detection.
 *
 * Files, in the directory:
 *   LOCK                 flock'ed by the master that uses the directory
 *   log-<seq16x>.mcl     a log segment: file header, then record frames
 *   snap-<seq16x>.mcs    a snapshot: file header, PUT frames, one END frame;
 *                        it holds the state before log <seq>
 *   *.tmp                a snapshot being written (removed at start)
 * Replay takes the highest-seq snapshot and the log segments with seq >= its
 * seq (all of them when there is none), in seq order. */

#include "master_persist.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base_env.h"
#include "base_log.h"
#include "base_time.h"

#define WBUF_MAX (4u << 20) /* pending frames kept before a write */
#define TAG "persist"
#define FSYNC_EVERY_MS 1000
#define SNAP_BUF (1u << 20)
#define SNAP_RETRY_MS 60000

struct mc_persist {
    char dir[4096];
    int lock_fd, dir_fd;
    pthread_mutex_t mu; /* the log: fd, seq, bytes; appends */
    int fd, old_fd;     /* current segment; the previous one, until synced */
    uint64_t seq;       /* current segment's seq */
    uint64_t log_bytes; /* bytes of log after the current snapshot */
    uint64_t snap_bytes;
    int dirty;
    uint64_t err_log_ms;
    uint64_t write_errors;
    /* appended frames not written yet (mc_persist_flush writes them, before
     * any reply that depends on them leaves the master) */
    uint8_t *wbuf;
    size_t wlen, wcap;
    /* snapshot child (poll/snapshot: tick thread) */
    pid_t child;
    uint64_t child_seq, child_start_ms, snap_failed_ms;
    uint64_t min_compact;
    uint8_t *snap_buf; /* allocated before fork: the child does not allocate */
    /* fsync thread */
    pthread_t thr;
    int thr_running, stop;
    pthread_cond_t cond;
};

static int flush_locked(mc_persist_t *p);

struct mc_persist_snap {
    int fd;
    uint8_t *buf;
    size_t len;
    uint64_t count;
    int err;
};

static void perr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void perr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* mkdir -p with mode 0700 for what it creates. */
static int mkdirs(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0') continue;
        char c = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -errno;
        tmp[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0) return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int mc_persist_open(const char *dir, mc_persist_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!dir || !*dir || strlen(dir) >= sizeof((mc_persist_t *)0)->dir - 32) {
        perr(err, errlen, "persist dir '%s': empty or too long", dir ? dir : "");
        return -EINVAL;
    }
    int rc = mkdirs(dir);
    if (rc) {
        perr(err, errlen, "persist dir '%s': cannot create it: %s", dir, strerror(-rc));
        return rc;
    }
    mc_persist_t *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    snprintf(p->dir, sizeof p->dir, "%s", dir);
    p->fd = p->old_fd = p->lock_fd = p->dir_fd = -1;
    p->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char path[4200];
    snprintf(path, sizeof path, "%s/LOCK", dir);
    p->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (p->dir_fd < 0 || p->lock_fd < 0) {
        rc = -errno;
        perr(err, errlen, "persist dir '%s': cannot open it: %s", dir, strerror(errno));
        goto fail;
    }
    if (flock(p->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK ? -EEXIST : -errno;
        char pid[32] = "";
        ssize_t n = pread(p->lock_fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        perr(err, errlen, "persist dir '%s' is in use by another master (pid %s)", dir,
             pid[0] ? pid : "?");
        goto fail;
    }
    char pid[32];
    int pn = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(p->lock_fd, 0) != 0 || pwrite(p->lock_fd, pid, (size_t)pn, 0) != pn) {
        rc = -errno;
        perr(err, errlen, "persist dir '%s': cannot write %s: %s", dir, path, strerror(errno));
        goto fail;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    p->min_compact =
        (uint64_t)mc_env_int("MC_MASTER_PERSIST_COMPACT_BYTES", 64ll << 20, 4096, INT64_MAX);
    *out = p;
    return 0;
fail:
    if (p->lock_fd >= 0) close(p->lock_fd);
    if (p->dir_fd >= 0) close(p->dir_fd);
    free(p);
    return rc;
}

const char *mc_persist_dir(const mc_persist_t *p)
{
    return p->dir;
}

/* ---- directory listing ---- */

typedef struct {
    uint64_t *logs, *snaps;
    size_t nlogs, nsnaps;
} listing_t;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int push(uint64_t **v, size_t *n, uint64_t x)
{
    uint64_t *nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv) return -ENOMEM;
    nv[(*n)++] = x;
    *v = nv;
    return 0;
}

/* Lists the log and snapshot seqs (sorted); removes *.tmp when clean_tmp. */
static int list_dir(mc_persist_t *p, listing_t *l, int clean_tmp)
{
    memset(l, 0, sizeof *l);
    DIR *d = opendir(p->dir);
    if (!d) return -errno;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        unsigned long long seq;
        size_t n = strlen(e->d_name);
        if (clean_tmp && n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0) {
            unlinkat(p->dir_fd, e->d_name, 0);
            continue;
        }
        int end = 0;
        if (n == 24 && sscanf(e->d_name, "log-%16llx.mcl%n", &seq, &end) == 1 && end == 24)
            rc = push(&l->logs, &l->nlogs, seq);
        else if (n == 25 && sscanf(e->d_name, "snap-%16llx.mcs%n", &seq, &end) == 1 && end == 25)
            rc = push(&l->snaps, &l->nsnaps, seq);
        if (rc) break;
    }
    closedir(d);
    if (l->nlogs) qsort(l->logs, l->nlogs, sizeof *l->logs, cmp_u64);
    if (l->nsnaps) qsort(l->snaps, l->nsnaps, sizeof *l->snaps, cmp_u64);
    return rc;
}

static void name_of(char *buf, size_t cap, int snap, uint64_t seq)
{
    snprintf(buf, cap, snap ? "snap-%016" PRIx64 ".mcs" : "log-%016" PRIx64 ".mcl", seq);
}

/* ---- replay ---- */

static void note_damage(mc_persist_replay_stats_t *st, const char *file, uint64_t off,
                        const char *why)
{
    if (!st->damaged)
        snprintf(st->damage, sizeof st->damage, "%s offset %" PRIu64 ": %s", file, off, why);
    st->damaged = 1;
    st->ndamage++;
}

/* Offset of the next position after from where a whole valid frame starts,
 * or len when there is none (the rest is a damaged tail). */
static size_t resync(const uint8_t *b, size_t from, size_t len, mc_prec_t *tmp)
{
    for (size_t off = from + 1; off + MC_PREC_HDR <= len; off++) {
        size_t used;
        const char *why;
        if (mc_prec_decode(b + off, len - off, tmp, &used, &why) == MC_PREC_OK) return off;
    }
    return len;
}

/* Replays one file; snap: its records are independent (no barrier). */
static int replay_file(mc_persist_t *p, int snap, uint64_t seq, const mc_persist_replay_ops_t *ops,
                       mc_persist_replay_stats_t *st, mc_prec_t *rec)
{
    char name[64];
    name_of(name, sizeof name, snap, seq);
    int fd = openat(p->dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        note_damage(st, name, 0, strerror(errno));
        return 0;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        note_damage(st, name, 0, strerror(errno));
        close(fd);
        return 0;
    }
    size_t len = (size_t)sb.st_size;
    st->files++;
    st->bytes += len;
    if (!snap) st->log_bytes += len;
    if (len == 0) { /* created, never written: nothing was logged in it */
        close(fd);
        return 0;
    }
    const uint8_t *b = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    close(fd);
    if (b == MAP_FAILED) {
        note_damage(st, name, 0, strerror(errno));
        return 0;
    }
    madvise((void *)b, len, MADV_SEQUENTIAL);
    uint64_t hseq, hver;
    int rc = 0;
    if (mc_prec_file_check(b, len, snap ? MC_PREC_FILE_SNAP : MC_PREC_FILE_LOG, &hseq, &hver) ||
        hseq != seq) {
        note_damage(st, name, 0, len < MC_PREC_FILE_HDR ? "torn file header" : "bad file header");
        if (!snap && len >= MC_PREC_FILE_HDR && ops->barrier) ops->barrier(ops->arg);
        goto out;
    }
    if (hver > st->version) st->version = hver;
    size_t off = MC_PREC_FILE_HDR;
    uint64_t count = 0;
    int ended = 0;
    while (off < len) {
        size_t used;
        const char *why;
        int d = mc_prec_decode(b + off, len - off, rec, &used, &why);
        if (d == MC_PREC_OK) {
            off += used;
            if (rec->type == MC_PREC_END) {
                if (!snap || rec->count != count) {
                    note_damage(st, name, off - used, "misplaced end record");
                    if (!snap && ops->barrier) ops->barrier(ops->arg);
                } else {
                    ended = 1;
                }
                continue;
            }
            if (snap && rec->type != MC_PREC_PUT) {
                note_damage(st, name, off - used, "non-put record in a snapshot");
                continue;
            }
            count++;
            st->records++;
            if (rec->version > st->version) st->version = rec->version;
            if ((rc = ops->apply(rec, ops->arg)) != 0) goto out;
            continue;
        }
        if (d == MC_PREC_SHORT) {
            note_damage(st, name, off, "torn record at the end of the file");
            break;
        }
        size_t next = resync(b, off, len, rec);
        if (next >= len) {
            note_damage(st, name, off, why);
            break;
        }
        char what[160];
        snprintf(what, sizeof what, "%s (%zu bytes skipped)", why, next - off);
        note_damage(st, name, off, what);
        if (!snap && ops->barrier) ops->barrier(ops->arg);
        off = next;
    }
    if (snap && !ended) note_damage(st, name, len, "no end record (truncated snapshot)");
out:
    munmap((void *)b, len);
    return rc;
}

int mc_persist_replay(mc_persist_t *p, const mc_persist_replay_ops_t *ops,
                      mc_persist_replay_stats_t *st)
{
    memset(st, 0, sizeof *st);
    listing_t l;
    int rc = list_dir(p, &l, 1);
    if (rc) return rc;
    mc_prec_t *rec = malloc(sizeof *rec);
    if (!rec) {
        rc = -ENOMEM;
        goto out;
    }
    uint64_t from = 0;
    if (l.nsnaps) {
        from = l.snaps[l.nsnaps - 1];
        st->have_snapshot = 1;
        st->snapshot_seq = from;
        rc = replay_file(p, 1, from, ops, st, rec);
        if (rc) goto out;
        char name[64];
        name_of(name, sizeof name, 1, from);
        struct stat sb;
        if (fstatat(p->dir_fd, name, &sb, 0) == 0) p->snap_bytes = (uint64_t)sb.st_size;
    }
    for (size_t i = 0; i < l.nlogs; i++) {
        if (l.logs[i] < from) continue;
        rc = replay_file(p, 0, l.logs[i], ops, st, rec);
        if (rc) goto out;
    }
    p->log_bytes = st->log_bytes;
out:
    free(rec);
    free(l.logs);
    free(l.snaps);
    return rc;
}

/* ---- the log ---- */

/* Creates segment seq with its header; returns the fd or -errno. */
static int seg_create(mc_persist_t *p, uint64_t seq, uint64_t version)
{
    char name[64];
    name_of(name, sizeof name, 0, seq);
    int fd = openat(p->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return -errno;
    uint8_t h[MC_PREC_FILE_HDR];
    mc_prec_file_header(h, MC_PREC_FILE_LOG, seq, version);
    if (write(fd, h, sizeof h) != (ssize_t)sizeof h) {
        int e = errno ? errno : EIO;
        close(fd);
        unlinkat(p->dir_fd, name, 0);
        return -e;
    }
    return fd;
}

static void *fsync_main(void *arg)
{
    mc_persist_t *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        struct timespec ts = mc_deadline_ts(CLOCK_MONOTONIC, FSYNC_EVERY_MS);
        while (!p->stop && pthread_cond_timedwait(&p->cond, &p->mu, &ts) != ETIMEDOUT) {
        }
        flush_locked(p);
        int fd = p->dirty && p->fd >= 0 ? dup(p->fd) : -1;
        int old = p->old_fd;
        p->old_fd = -1;
        p->dirty = 0;
        pthread_mutex_unlock(&p->mu);
        if (old >= 0) {
            fdatasync(old);
            close(old);
        }
        if (fd >= 0) {
            fdatasync(fd);
            close(fd);
        }
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int mc_persist_start(mc_persist_t *p, uint64_t version, char *err, size_t errlen)
{
    listing_t l;
    int rc = list_dir(p, &l, 0);
    if (rc) {
        perr(err, errlen, "persist dir '%s': cannot list it: %s", p->dir, strerror(-rc));
        return rc;
    }
    uint64_t seq = 1;
    if (l.nlogs && l.logs[l.nlogs - 1] >= seq) seq = l.logs[l.nlogs - 1] + 1;
    if (l.nsnaps && l.snaps[l.nsnaps - 1] >= seq) seq = l.snaps[l.nsnaps - 1] + 1;
    free(l.logs);
    free(l.snaps);
    int fd = seg_create(p, seq, version);
    if (fd < 0) {
        perr(err, errlen, "persist dir '%s': cannot create a log segment: %s", p->dir,
             strerror(-fd));
        return fd;
    }
    fsync(p->dir_fd);
    p->snap_buf = malloc(SNAP_BUF);
    if (!p->snap_buf) {
        close(fd);
        return -ENOMEM;
    }
    pthread_mutex_lock(&p->mu);
    p->fd = fd;
    p->seq = seq;
    p->log_bytes += MC_PREC_FILE_HDR;
    pthread_mutex_unlock(&p->mu);
    if (pthread_create(&p->thr, NULL, fsync_main, p) != 0) {
        perr(err, errlen, "persist: cannot start the fsync thread");
        return -EAGAIN;
    }
    p->thr_running = 1;
    return 0;
}

static int write_all(int fd, const uint8_t *b, size_t len)
{
    while (len) {
        ssize_t n = write(fd, b, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return -EIO;
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes the pending frames to the current segment. Caller holds mu. */
static int flush_locked(mc_persist_t *p)
{
    if (!p->wlen) return 0;
    int rc = p->fd >= 0 ? write_all(p->fd, p->wbuf, p->wlen) : -EBADF;
    if (rc == 0) {
        p->dirty = 1;
    } else {
        p->write_errors++;
        uint64_t now = mc_now_ms();
        if (!p->err_log_ms || now >= p->err_log_ms + 10000) {
            MC_LOGE(TAG,
                    "cannot append to the log in %s: %s (%" PRIu64 " writes lost so far); "
                    "the index goes on in memory only",
                    p->dir, strerror(-rc), p->write_errors);
            p->err_log_ms = now;
        }
    }
    p->wlen = 0;
    return rc;
}

int mc_persist_append(mc_persist_t *p, const void *frame, size_t len)
{
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    if (p->fd < 0) {
        rc = -EBADF;
    } else {
        if (p->wlen + len > p->wcap) { /* grow up to WBUF_MAX, else write what is there */
            size_t cap = p->wcap ? p->wcap : 65536;
            while (cap < p->wlen + len && cap < WBUF_MAX)
                cap *= 2;
            uint8_t *nb = cap >= p->wlen + len ? realloc(p->wbuf, cap) : NULL;
            if (nb) {
                p->wbuf = nb;
                p->wcap = cap;
            } else {
                rc = flush_locked(p);
            }
        }
        if (p->wlen + len <= p->wcap) {
            memcpy(p->wbuf + p->wlen, frame, len);
            p->wlen += len;
        } else if (rc == 0) { /* larger than the buffer: straight to the file */
            rc = write_all(p->fd, frame, len);
            if (rc == 0) p->dirty = 1;
        }
        if (rc == 0) p->log_bytes += len;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int mc_persist_flush(mc_persist_t *p)
{
    if (!p) return 0;
    pthread_mutex_lock(&p->mu);
    int rc = flush_locked(p);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void mc_persist_lock(mc_persist_t *p)
{
    pthread_mutex_lock(&p->mu);
}

void mc_persist_unlock(mc_persist_t *p)
{
    pthread_mutex_unlock(&p->mu);
}

int mc_persist_want_snapshot(mc_persist_t *p, uint64_t now_ms)
{
    if (p->child > 0) return 0;
    if (p->snap_failed_ms && now_ms < p->snap_failed_ms + SNAP_RETRY_MS) return 0;
    pthread_mutex_lock(&p->mu);
    uint64_t lb = p->log_bytes, want = p->snap_bytes * 2;
    pthread_mutex_unlock(&p->mu);
    if (want < p->min_compact) want = p->min_compact;
    return p->fd >= 0 && lb > want;
}

int mc_persist_snap_add(mc_persist_snap_t *w, const void *frame, size_t len)
{
    if (w->err) return -1;
    if (w->len + len > SNAP_BUF) {
        if (write_all(w->fd, w->buf, w->len)) {
            w->err = 1;
            return -1;
        }
        w->len = 0;
    }
    memcpy(w->buf + w->len, frame, len);
    w->len += len;
    w->count++;
    return 0;
}

/* The snapshot child: never returns. */
static void snap_child(mc_persist_t *p, uint64_t seq, uint64_t version,
                       int (*fill)(mc_persist_snap_t *w, void *arg), void *arg)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(p->lock_fd); /* the master's lock must go with the master */
    char name[64];
    snprintf(name, sizeof name, "snap-%016" PRIx64 ".tmp", seq);
    mc_persist_snap_t w = {.buf = p->snap_buf};
    w.fd = openat(p->dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w.fd < 0) _exit(2);
    uint8_t h[MC_PREC_FILE_HDR];
    mc_prec_file_header(h, MC_PREC_FILE_SNAP, seq, version);
    if (write_all(w.fd, h, sizeof h)) _exit(3);
    if (fill(&w, arg) != 0 || w.err) _exit(4);
    mc_prec_t end;
    memset(&end, 0, offsetof(mc_prec_t, keybuf));
    end.type = MC_PREC_END;
    end.count = w.count;
    uint8_t fb[64];
    size_t n = mc_prec_encode(&end, fb, sizeof fb);
    uint64_t count = w.count;
    if (!n || mc_persist_snap_add(&w, fb, n)) _exit(5);
    w.count = count;
    if (w.len && write_all(w.fd, w.buf, w.len)) _exit(6);
    if (fdatasync(w.fd) != 0) _exit(7);
    close(w.fd);
    _exit(0);
}

int mc_persist_snapshot_locked(mc_persist_t *p, uint64_t version,
                               int (*fill)(mc_persist_snap_t *w, void *arg), void *arg)
{
    if (p->child > 0 || p->fd < 0) return -EBUSY;
    uint64_t seq = p->seq + 1;
    int fd = seg_create(p, seq, version);
    if (fd < 0) {
        MC_LOGE(TAG, "snapshot: cannot create log segment %" PRIu64 " in %s: %s", seq, p->dir,
                strerror(-fd));
        p->snap_failed_ms = mc_now_ms();
        return fd;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        char name[64];
        name_of(name, sizeof name, 0, seq);
        close(fd);
        unlinkat(p->dir_fd, name, 0);
        MC_LOGE(TAG, "snapshot: fork: %s", strerror(e));
        p->snap_failed_ms = mc_now_ms();
        return -e;
    }
    if (pid == 0) snap_child(p, seq, version, fill, arg);
    flush_locked(p);      /* what was appended so far belongs to the old segment */
    if (p->old_fd >= 0) { /* not synced yet: do it now, rarely matters */
        fdatasync(p->old_fd);
        close(p->old_fd);
    }
    p->old_fd = p->fd;
    p->fd = fd;
    p->seq = seq;
    p->dirty = 1;
    p->log_bytes = MC_PREC_FILE_HDR;
    p->child = pid;
    p->child_seq = seq;
    p->child_start_ms = mc_now_ms();
    return 0;
}

/* Deletes every file the current snapshot seq replaces. */
static void drop_older(mc_persist_t *p, uint64_t seq)
{
    listing_t l;
    if (list_dir(p, &l, 0)) return;
    char name[64];
    for (size_t i = 0; i < l.nlogs; i++)
        if (l.logs[i] < seq) {
            name_of(name, sizeof name, 0, l.logs[i]);
            unlinkat(p->dir_fd, name, 0);
        }
    for (size_t i = 0; i < l.nsnaps; i++)
        if (l.snaps[i] < seq) {
            name_of(name, sizeof name, 1, l.snaps[i]);
            unlinkat(p->dir_fd, name, 0);
        }
    free(l.logs);
    free(l.snaps);
}

static void reap(mc_persist_t *p, int status, uint64_t now_ms)
{
    char tmp[64], name[64];
    snprintf(tmp, sizeof tmp, "snap-%016" PRIx64 ".tmp", p->child_seq);
    name_of(name, sizeof name, 1, p->child_seq);
    p->child = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        MC_LOGE(TAG, "snapshot %s in %s failed (child %s %d); the log keeps everything", name,
                p->dir, WIFEXITED(status) ? "exit" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        unlinkat(p->dir_fd, tmp, 0);
        p->snap_failed_ms = now_ms;
        return;
    }
    if (renameat(p->dir_fd, tmp, p->dir_fd, name) != 0) {
        MC_LOGE(TAG, "snapshot: rename %s: %s", tmp, strerror(errno));
        unlinkat(p->dir_fd, tmp, 0);
        p->snap_failed_ms = now_ms;
        return;
    }
    fsync(p->dir_fd);
    struct stat sb;
    uint64_t size = fstatat(p->dir_fd, name, &sb, 0) == 0 ? (uint64_t)sb.st_size : 0;
    pthread_mutex_lock(&p->mu);
    p->snap_bytes = size;
    pthread_mutex_unlock(&p->mu);
    drop_older(p, p->child_seq);
    MC_LOGI(TAG, "snapshot %s written (%" PRIu64 " bytes in %" PRIu64 " ms); older files removed",
            name, size, mc_now_ms() - p->child_start_ms);
}

void mc_persist_poll(mc_persist_t *p, uint64_t now_ms)
{
    if (!p || p->child <= 0) return;
    int status;
    pid_t r = waitpid(p->child, &status, WNOHANG);
    if (r == p->child) reap(p, status, now_ms);
}

void mc_persist_close(mc_persist_t *p)
{
    if (!p) return;
    if (p->child > 0) {
        int status;
        if (waitpid(p->child, &status, 0) == p->child) reap(p, status, mc_now_ms());
    }
    if (p->thr_running) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thr, NULL);
    }
    flush_locked(p);
    if (p->old_fd >= 0) {
        fdatasync(p->old_fd);
        close(p->old_fd);
    }
    if (p->fd >= 0) {
        fdatasync(p->fd);
        close(p->fd);
    }
    free(p->wbuf);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
    close(p->dir_fd);
    close(p->lock_fd);
    free(p->snap_buf);
    free(p);
}
