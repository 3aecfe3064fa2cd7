/* store_ssd_io.c: the disk of the SSD tier. Objects are appended as records
 * (store_ssd_rec.c) to bucket files `bucket-<id:016x>.dat` in one directory;
 * a bucket is written once, front to back, and deleted whole, oldest first,
 * when usage passes the high watermark (FIFO eviction; a key deleted or
 * replaced leaves dead bytes until its bucket goes). All I/O goes through
 * io_uring with O_DIRECT (buffered when the filesystem refuses O_DIRECT, with
 * a log line): writes gather many records into one large aligned buffer and
 * submit it in a few large writes; reads of a batch are submitted together.
 * At open the buckets are scanned (store_ssd_scan.c): a torn tail ends a bucket (appends
 * continue there), a record whose checksums fail is dropped with a log line;
 * both are never served. The index (key -> bucket, offset, lengths, stamp)
 * is in memory, under one mutex; the writer is one thread at a time, readers
 * any thread (a ring each). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <liburing.h>
#include <xxhash.h>

#include "base_log.h"
#include "base_map.h"
#include "store_ssd_internal.h"

#define TAG "ssd"

/* ---- rings ---- */

static void ring_free(void *p)
{
    struct io_uring *r = p;
    io_uring_queue_exit(r);
    free(r);
}

struct io_uring *mc_ssd_read_ring(mc_ssd_disk_t *d)
{
    struct io_uring *r = pthread_getspecific(d->rkey);
    if (r) return r;
    r = calloc(1, sizeof *r);
    if (!r) return NULL;
    /* this thread alone submits to it and always waits for its completions:
     * they run when it waits (no interrupt of the task per completion), as
     * fio sets up its rings; plain on kernels without these flags */
    int rc = io_uring_queue_init(RING_DEPTH, r,
                                 IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
                                     IORING_SETUP_DEFER_TASKRUN);
    if (rc == -EINVAL) rc = io_uring_queue_init(RING_DEPTH, r, 0);
    if (rc) {
        MC_LOGE(TAG, "io_uring_queue_init: %s", strerror(-rc));
        free(r);
        return NULL;
    }
    pthread_setspecific(d->rkey, r);
    return r;
}

int mc_ssd_ring_run(struct io_uring *r, io_op_t *ops, size_t n, int write)
{
    size_t next = 0, inflight = 0, done = 0;
    uint64_t small[RING_DEPTH] = {0};
    uint64_t *moved = n <= RING_DEPTH ? small : calloc(n, sizeof *moved);
    if (!moved) return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        ops[i].res = 0;
    int err = 0;
    while (done < n && !err) {
        while (next < n && inflight < RING_DEPTH) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(r);
            if (!sqe) break;
            io_op_t *o = &ops[next];
            if (write)
                io_uring_prep_write(sqe, o->fd, o->buf, (unsigned)o->len, o->off);
            else
                io_uring_prep_read(sqe, o->fd, o->buf, (unsigned)o->len, o->off);
            io_uring_sqe_set_data64(sqe, next);
            next++;
            inflight++;
        }
        int rc = io_uring_submit_and_wait(r, 1);
        if (rc < 0 && rc != -EINTR) {
            err = rc;
            break;
        }
        struct io_uring_cqe *cqe;
        while (io_uring_peek_cqe(r, &cqe) == 0) {
            size_t i = (size_t)io_uring_cqe_get_data64(cqe);
            int res = cqe->res;
            io_uring_cqe_seen(r, cqe);
            inflight--;
            io_op_t *o = &ops[i];
            if (res < 0) {
                o->res = res;
                done++;
                continue;
            }
            moved[i] += (uint64_t)res;
            if (res == 0 || moved[i] >= o->len) { /* done (0: end of file) */
                o->res = (int64_t)moved[i];
                done++;
                continue;
            }
            /* short: the rest of it, at once */
            struct io_uring_sqe *sqe = io_uring_get_sqe(r);
            if (!sqe) {
                o->res = -EAGAIN;
                done++;
                continue;
            }
            uint8_t *b = (uint8_t *)o->buf + moved[i];
            unsigned left = (unsigned)(o->len - moved[i]);
            if (write)
                io_uring_prep_write(sqe, o->fd, b, left, o->off + moved[i]);
            else
                io_uring_prep_read(sqe, o->fd, b, left, o->off + moved[i]);
            io_uring_sqe_set_data64(sqe, i);
            inflight++;
        }
    }
    /* a ring error: wait out what is in flight so no buffer is touched later */
    while (err && inflight) {
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe(r, &cqe)) break;
        io_uring_cqe_seen(r, cqe);
        inflight--;
    }
    if (moved != small) free(moved);
    return err;
}

/* Bytes a bucket's .dat takes from the quota: its file, or its records. */
static uint64_t dfoot(const bucket_t *b)
{
    return b->size > b->alloc ? b->size : b->alloc;
}

/* Bytes a bucket takes from the quota: both its files. */
static uint64_t foot(const bucket_t *b)
{
    return dfoot(b) + b->jalloc;
}

/* The bytes of an entry's read: its offset and length. */
static uint64_t ent_bytes(const ent_t *e)
{
    return e->legacy ? e->rec_len : e->data_len;
}

/* Bytes of the 4 KiB blocks a record at off of rec_len bytes touches. */
static uint64_t span_len(uint64_t off, uint64_t rec_len)
{
    return MC_SSD_ALIGN_UP(off % MC_SSD_ALIGN + rec_len);
}

/* ---- buckets ---- */

static void bucket_path(const mc_ssd_disk_t *d, uint64_t id, const char *ext, char *p, size_t n)
{
    snprintf(p, n, "%s/bucket-%016" PRIx64 ".%s", d->path, id, ext);
}

/* Opens one of a bucket's files (O_DIRECT unless the filesystem refuses). */
static int file_open(mc_ssd_disk_t *d, const char *p, int create)
{
    int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
    int fd = open(p, flags | (d->direct ? O_DIRECT : 0), 0644);
    if (fd < 0 && d->direct && errno == EINVAL) {
        MC_LOGW(TAG, "%s: O_DIRECT refused by the filesystem; buffered I/O from now on", p);
        d->direct = 0;
        fd = open(p, flags, 0644);
    }
    if (fd < 0) MC_LOGE(TAG, "open %s: %s", p, strerror(errno));
    return fd;
}

static void bucket_close(bucket_t *b)
{
    close(b->fd);
    if (b->jfd >= 0) close(b->jfd);
}

/* Opens bucket id: created (both files, version 3), or found, with its
 * journal (version 3) or without one (legacy). */
static int bucket_open(mc_ssd_disk_t *d, uint64_t id, int create, bucket_t **out)
{
    char p[4096], j[4096];
    bucket_path(d, id, "dat", p, sizeof p);
    bucket_path(d, id, "idx", j, sizeof j);
    int fd = file_open(d, p, create), jfd = -1;
    if (fd < 0) return MC_ERR_INTERNAL;
    if (create || access(j, F_OK) == 0) {
        jfd = file_open(d, j, create);
        if (jfd < 0) {
            close(fd);
            if (create) unlink(p);
            return MC_ERR_INTERNAL;
        }
    }
    bucket_t *b = calloc(1, sizeof *b);
    if (!b) {
        close(fd);
        if (jfd >= 0) close(jfd);
        return MC_ERR_INTERNAL;
    }
    b->id = id;
    b->fd = fd;
    b->jfd = jfd;
    *out = b;
    return 0;
}

/* Appends b to the table (ids ascending). Caller holds mu or owns d. */
static int bucket_add(mc_ssd_disk_t *d, bucket_t *b)
{
    if (d->nb == d->capb) {
        size_t nc = d->capb ? d->capb * 2 : 16;
        bucket_t **nv = realloc(d->b, nc * sizeof *nv);
        if (!nv) return -1;
        d->b = nv;
        d->capb = nc;
    }
    size_t i = d->nb++;
    while (i > 0 && d->b[i - 1]->id > b->id) {
        d->b[i] = d->b[i - 1];
        i--;
    }
    d->b[i] = b;
    if (b->id >= d->next_id) d->next_id = b->id + 1;
    return 0;
}

/* Removes b's files from the directory (its descriptors stay open): the
 * journal first (a .dat left alone by a crash is scanned as legacy: nothing
 * in it parses, nothing is served). */
static void bucket_unlink_path(mc_ssd_disk_t *d, bucket_t *b)
{
    char p[4096];
    if (b->jfd >= 0) {
        bucket_path(d, b->id, "idx", p, sizeof p);
        if (unlink(p) != 0) MC_LOGW(TAG, "unlink %s: %s", p, strerror(errno));
    }
    bucket_path(d, b->id, "dat", p, sizeof p);
    if (unlink(p) != 0) MC_LOGW(TAG, "unlink %s: %s", p, strerror(errno));
}

static void bucket_unlink(mc_ssd_disk_t *d, bucket_t *b)
{
    bucket_close(b);
    bucket_unlink_path(d, b);
}

/* ---- index ---- */

static void ent_unlink_locked(mc_ssd_disk_t *d, const char *key)
{
    ent_t *e = mc_map_del(d->index, key);
    if (!e) return;
    e->b->live -= ent_bytes(e);
    e->b->nlive--;
    free(e);
}

int mc_ssd_ent_put_locked(mc_ssd_disk_t *d, const char *key, const ent_t *v)
{
    ent_t *e = calloc(1, sizeof *e);
    if (!e) return -1;
    *e = *v;
    ent_unlink_locked(d, key);
    if (mc_map_put(d->index, key, e, NULL) != 0) {
        free(e);
        return -1;
    }
    e->b->live += ent_bytes(e);
    e->b->nlive++;
    return 0;
}

/* ---- open: identity, lock, scan ---- */

static int mkdirs(const char *path)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (char *c = p + 1; *c; c++) {
        if (*c != '/') continue;
        *c = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return -1;
        *c = '/';
    }
    return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

int mc_ssd_dir_free(const char *path)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s/lock", path) >= (int)sizeof p || mkdirs(path) != 0) return 0;
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return 0;
    int free_ = flock(fd, LOCK_EX | LOCK_NB) == 0;
    close(fd); /* drops the lock */
    return free_;
}

static int read_identity(mc_ssd_disk_t *d)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/disk.id", d->path);
    FILE *f = fopen(p, "r");
    if (f) {
        unsigned long long hi, lo;
        int ok = fscanf(f, "%llx-%llx", &hi, &lo) == 2;
        fclose(f);
        if (ok) {
            d->id.hi = hi;
            d->id.lo = lo;
            return 0;
        }
        MC_LOGW(TAG, "%s unreadable: a new identity", p);
    }
    if (getrandom(&d->id, sizeof d->id, 0) != (ssize_t)sizeof d->id) return -1;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    f = fopen(tmp, "w");
    if (!f) return -1;
    fprintf(f, "%016llx-%016llx\n", (unsigned long long)d->id.hi, (unsigned long long)d->id.lo);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        fclose(f);
        return -1;
    }
    fclose(f);
    return rename(tmp, p);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int mc_ssd_disk_open(const mc_ssd_disk_config_t *cfg, mc_ssd_disk_t **out)
{
    *out = NULL;
    if (!cfg->path || !*cfg->path || cfg->quota == 0) return MC_ERR_INVALID_PARAMS;
    mc_ssd_disk_t *d = calloc(1, sizeof *d);
    if (!d) return MC_ERR_INTERNAL;
    d->cfg = *cfg;
    if (!d->cfg.bucket) d->cfg.bucket = 256ull << 20;
    if (!d->cfg.write_buf) d->cfg.write_buf = 8ull << 20;
    d->cfg.write_buf = MC_SSD_ALIGN_UP(d->cfg.write_buf);
    d->piece = d->cfg.write_buf < MC_SSD_WRITE_PIECE ? d->cfg.write_buf : MC_SSD_WRITE_PIECE;
    uint64_t qd = d->cfg.write_buf / d->piece;
    d->qd = qd < 1                            ? 1
            : qd > MC_SSD_WRITE_SLOTS_MAX - 1 ? MC_SSD_WRITE_SLOTS_MAX - 1
                                              : (unsigned)qd;
    d->nslot = d->qd + 1;
    if (d->cfg.high <= 0 || d->cfg.high > 1) d->cfg.high = 0.9;
    if (d->cfg.low <= 0 || d->cfg.low > d->cfg.high) d->cfg.low = d->cfg.high * 0.9;
    d->path = strdup(cfg->path);
    d->lock_fd = -1;
    d->direct = 1;
    pthread_mutex_init(&d->mu, NULL);
    pthread_key_create(&d->rkey, ring_free);
    d->index = mc_map_new();
    uint8_t *buf = NULL;
    uint64_t cap = SCAN_CHUNK;
    uint64_t *ids = NULL;
    size_t nids = 0, capids = 0;
    DIR *dir = NULL;
    int rc = MC_ERR_INTERNAL;
    if (!d->path || !d->index) goto fail;
    if (mkdirs(d->path) != 0) {
        MC_LOGE(TAG, "cannot create %s: %s", d->path, strerror(errno));
        goto fail;
    }
    char p[4096];
    snprintf(p, sizeof p, "%s/lock", d->path);
    d->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (d->lock_fd < 0 || flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        MC_LOGE(TAG, "%s: %s (another store uses this directory?)", p, strerror(errno));
        rc = MC_ERR_INVALID_PARAMS;
        goto fail;
    }
    if (read_identity(d) != 0) {
        MC_LOGE(TAG, "%s/disk.id: %s", d->path, strerror(errno));
        goto fail;
    }
    if (posix_memalign((void **)&d->wbuf, MC_SSD_ALIGN, d->piece * d->nslot) ||
        posix_memalign((void **)&buf, MC_SSD_ALIGN, cap))
        goto fail;
    if (io_uring_queue_init(RING_DEPTH, &d->wring, 0) != 0) {
        MC_LOGE(TAG, "io_uring_queue_init failed");
        goto fail;
    }
    d->wring_ok = 1;
    struct iovec iov = {d->wbuf, d->piece * d->nslot};
    d->wfixed = io_uring_register_buffers(&d->wring, &iov, 1) == 0;
    d->jcap = 256u << 10;
    if (posix_memalign((void **)&d->jbuf, MC_SSD_ALIGN, d->jcap)) goto fail;
    dir = opendir(d->path);
    if (!dir) goto fail;
    struct dirent *de;
    while ((de = readdir(dir))) {
        unsigned long long id;
        char tail[8];
        if (sscanf(de->d_name, "bucket-%16llx.%4s", &id, tail) != 2 || strcmp(tail, "dat") != 0)
            continue;
        if (nids == capids) {
            size_t nc = capids ? capids * 2 : 64;
            uint64_t *nv = realloc(ids, nc * sizeof *nv);
            if (!nv) goto fail;
            ids = nv;
            capids = nc;
        }
        ids[nids++] = id;
    }
    if (nids) qsort(ids, nids, sizeof *ids, cmp_u64);
    for (size_t i = 0; i < nids; i++) {
        bucket_t *b;
        if (bucket_open(d, ids[i], 0, &b)) goto fail;
        if (bucket_add(d, b) != 0) {
            bucket_close(b);
            free(b);
            goto fail;
        }
        if ((b->jfd >= 0 ? mc_ssd_scan_bucket_v3(d, b, &buf, &cap) : mc_ssd_scan_bucket(d, b, &buf, &cap)) != 0)
            goto fail;
        d->used += foot(b);
    }
    MC_LOGI(TAG, "%s: %zu objects in %zu buckets, %" PRIu64 " of %" PRIu64 " bytes used%s", d->path,
            mc_map_size(d->index), d->nb, d->used, d->cfg.quota,
            d->direct ? "" : " (buffered I/O)");
    closedir(dir);
    free(buf);
    free(ids);
    *out = d;
    return 0;
fail:
    if (dir) closedir(dir);
    free(buf);
    free(ids);
    mc_ssd_disk_close(d);
    return rc;
}

void mc_ssd_disk_close(mc_ssd_disk_t *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->nb; i++) {
        bucket_close(d->b[i]);
        free(d->b[i]);
    }
    free(d->b);
    mc_map_free(d->index, free);
    if (d->wring_ok) io_uring_queue_exit(&d->wring);
    struct io_uring *r = pthread_getspecific(d->rkey);
    if (r) {
        pthread_setspecific(d->rkey, NULL);
        ring_free(r);
    }
    pthread_key_delete(d->rkey);
    if (d->lock_fd >= 0) close(d->lock_fd);
    free(d->wbuf);
    free(d->jbuf);
    free(d->path);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

mc_uuid_t mc_ssd_disk_id(const mc_ssd_disk_t *d)
{
    return d->id;
}

int mc_ssd_disk_direct(const mc_ssd_disk_t *d)
{
    return d->direct;
}

/* ---- writes ----
 * The writer stages values in nslot pieces of `piece` bytes (1 MiB) and
 * keeps up to qd of them in flight: while the disk writes the pieces already
 * full, the writer copies and checksums the next objects into a free one, so
 * the copy overlaps the I/O. Values go one after the other, each where
 * mc_ssd_val_off puts it (4 KiB aligned from 4 KiB up, packed on 64 bytes
 * below); their journal entries gather in one buffer per batch and bucket,
 * written in one piece at the batch's end (or when the writer moves to a new
 * bucket), while the last values are written. Every write is 4 KiB aligned,
 * so the last, partly filled block of a batch (values and journal) is
 * written padded and kept (`carry`, `jcarry`): the next batch starts by
 * rewriting that block with the same bytes and more after them. No fsync: a
 * value becomes a replica once its writes (value and entry) completed, and a
 * crash loses at most a torn tail, whose checksums the scan finds wrong. The
 * pieces are registered with the ring (fixed buffers) when the kernel and
 * RLIMIT_MEMLOCK allow: no page pinning per write. */

#define JSLOT MC_SSD_WRITE_SLOTS_MAX /* io[] and busy[] of the journal's write */

typedef struct {
    mc_ssd_disk_t *d;
    bucket_t *b;    /* the bucket being appended to */
    uint64_t base;  /* file offset of the current piece (4 KiB aligned) */
    uint64_t fill;  /* bytes in the current piece */
    uint64_t jbase; /* journal file offset of d->jbuf[0] (4 KiB aligned) */
    uint64_t jfill; /* bytes in d->jbuf */
    size_t jnew;    /* entries appended to it in this batch */
    unsigned cur;   /* the piece being filled */
    unsigned inflight;
    uint8_t busy[MC_SSD_WRITE_SLOTS_MAX + 1];
    struct {
        int fd, fixed;
        uint8_t *buf;
        uint64_t off, len, done;
        uint64_t bucket;
    } io[MC_SSD_WRITE_SLOTS_MAX + 1];
    int err;
} wr_t;

static uint8_t *wr_slot(wr_t *w, unsigned i)
{
    return w->d->wbuf + (uint64_t)i * w->d->piece;
}

static void wr_fail(wr_t *w, unsigned i, int res)
{
    if (!w->err)
        MC_LOGE(TAG, "write to bucket %016" PRIx64 "%s at %" PRIu64 ": %s", w->io[i].bucket,
                i == JSLOT ? " (journal)" : "", w->io[i].off,
                res < 0 ? strerror(-res) : "no progress");
    w->err = MC_ERR_WRITE_FAIL;
}

static void wr_prep(wr_t *w, unsigned i)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->d->wring);
    if (!sqe) { /* cannot happen: the ring is deeper than the pieces */
        w->busy[i] = 0;
        w->inflight--;
        wr_fail(w, i, -EAGAIN);
        return;
    }
    uint8_t *p = w->io[i].buf + w->io[i].done;
    unsigned n = (unsigned)(w->io[i].len - w->io[i].done);
    uint64_t off = w->io[i].off + w->io[i].done;
    if (w->io[i].fixed)
        io_uring_prep_write_fixed(sqe, w->io[i].fd, p, n, off, 0);
    else
        io_uring_prep_write(sqe, w->io[i].fd, p, n, off);
    io_uring_sqe_set_data64(sqe, i);
}

/* Starts write i of len bytes at buf to (fd, off). */
static void wr_start(wr_t *w, unsigned i, int fd, uint8_t *buf, uint64_t len, uint64_t off,
                     int fixed)
{
    w->io[i].fd = fd;
    w->io[i].fixed = fixed;
    w->io[i].buf = buf;
    w->io[i].bucket = w->b->id;
    w->io[i].off = off;
    w->io[i].len = len;
    w->io[i].done = 0;
    w->busy[i] = 1;
    w->inflight++;
    wr_prep(w, i);
    if (w->busy[i]) io_uring_submit(&w->d->wring);
}

/* Waits for one completion and books it (a short write is resubmitted). */
static void wr_reap(wr_t *w)
{
    struct io_uring_cqe *cqe;
    int rc = io_uring_wait_cqe(&w->d->wring, &cqe);
    if (rc == -EINTR) return;
    if (rc < 0) { /* the ring itself failed: nothing more completes */
        MC_LOGE(TAG, "io_uring_wait_cqe: %s", strerror(-rc));
        w->err = MC_ERR_WRITE_FAIL;
        memset(w->busy, 0, sizeof w->busy);
        w->inflight = 0;
        return;
    }
    unsigned i = (unsigned)io_uring_cqe_get_data64(cqe);
    int res = cqe->res;
    io_uring_cqe_seen(&w->d->wring, cqe);
    if ((i >= w->d->nslot && i != JSLOT) || !w->busy[i]) { /* a completion we never asked for */
        MC_LOGE(TAG, "io_uring: stray completion %u", i);
        abort();
    }
    if (res > 0) w->io[i].done += (uint64_t)res;
    /* short: the rest, while the descriptor is surely still the bucket's */
    if (res > 0 && w->io[i].done < w->io[i].len && !w->err && w->io[i].bucket == w->b->id) {
        wr_prep(w, i);
        if (w->busy[i]) io_uring_submit(&w->d->wring);
        return;
    }
    w->busy[i] = 0;
    w->inflight--;
    if (res <= 0 || w->io[i].done < w->io[i].len) {
        wr_fail(w, i, res);
        return;
    }
    w->d->written += w->io[i].len;
}

/* Submits the current piece (padded to 4 KiB) and moves on to the next one,
 * waiting until it is free. */
static void wr_submit(wr_t *w)
{
    unsigned i = w->cur;
    uint64_t len = MC_SSD_ALIGN_UP(w->fill);
    if (w->fill && !w->err) {
        memset(wr_slot(w, i) + w->fill, 0, len - w->fill);
        wr_start(w, i, w->b->fd, wr_slot(w, i), len, w->base, w->d->wfixed);
    }
    w->base += len;
    w->fill = 0;
    w->cur = (i + 1) % w->d->nslot;
    while (w->busy[w->cur])
        wr_reap(w);
}

static void wr_drain(wr_t *w)
{
    while (w->inflight)
        wr_reap(w);
}

static void wr_bytes(wr_t *w, const void *src, uint64_t n)
{
    const uint8_t *s = src;
    while (n && !w->err) {
        uint64_t room = w->d->piece - w->fill, k = n < room ? n : room;
        memcpy(wr_slot(w, w->cur) + w->fill, s, k);
        w->fill += k;
        s += k;
        n -= k;
        if (w->fill == w->d->piece) wr_submit(w);
    }
}

/* n zero bytes (the padding before a value). */
static void wr_zero(wr_t *w, uint64_t n)
{
    while (n && !w->err) {
        uint64_t room = w->d->piece - w->fill, k = n < room ? n : room;
        memset(wr_slot(w, w->cur) + w->fill, 0, k);
        w->fill += k;
        n -= k;
        if (w->fill == w->d->piece) wr_submit(w);
    }
}

/* Appends a journal entry (header and key) to the batch's journal buffer. */
static void wr_jent(wr_t *w, const mc_ssd_jent_t *e, const char *key)
{
    mc_ssd_disk_t *d = w->d;
    uint64_t jl = mc_ssd_jent_len(e->key_len);
    if (w->jfill + jl + MC_SSD_ALIGN > d->jcap) { /* no write of it is in flight */
        uint64_t nc = d->jcap * 2;
        while (w->jfill + jl + MC_SSD_ALIGN > nc)
            nc *= 2;
        uint8_t *nb = NULL;
        if (posix_memalign((void **)&nb, MC_SSD_ALIGN, nc)) {
            w->err = MC_ERR_INTERNAL;
            return;
        }
        memcpy(nb, d->jbuf, w->jfill);
        free(d->jbuf);
        d->jbuf = nb;
        d->jcap = nc;
    }
    uint8_t *p = d->jbuf + w->jfill;
    mc_ssd_jent_encode(e, p);
    memcpy(p + MC_SSD_JENT_HDR, key, e->key_len);
    memset(p + MC_SSD_JENT_HDR + e->key_len, 0, jl - MC_SSD_JENT_HDR - e->key_len);
    w->jfill += jl;
    w->jnew++;
}

/* Writes the journal buffer (padded to 4 KiB) when it has new entries;
 * wait: until it landed (the buffer is then free for the next bucket). */
static void wr_jflush(wr_t *w, int wait)
{
    if (!w->b || w->err || !w->jnew) return;
    uint64_t len = MC_SSD_ALIGN_UP(w->jfill);
    memset(w->d->jbuf + w->jfill, 0, len - w->jfill);
    wr_start(w, JSLOT, w->b->jfd, w->d->jbuf, len, w->jbase, 0);
    while (wait && w->busy[JSLOT])
        wr_reap(w);
}

/* Books the bytes appended to the current bucket (its tails, the usage). */
static void wr_commit(wr_t *w)
{
    if (!w->b) return;
    uint64_t tail = w->base + w->fill, jtail = w->jbase + w->jfill;
    pthread_mutex_lock(&w->d->mu);
    uint64_t old = foot(w->b);
    if (tail > w->b->size) w->b->size = tail;
    if (jtail > w->b->jsize) w->b->jsize = jtail;
    if (MC_SSD_ALIGN_UP(jtail) > w->b->jalloc) w->b->jalloc = MC_SSD_ALIGN_UP(jtail);
    w->d->used += foot(w->b) - old;
    pthread_mutex_unlock(&w->d->mu);
}

/* Continues the last bucket at its tails: their last blocks rewritten from
 * the carries, or, without one (after a restart or a failed write), from
 * the next 4 KiB boundary. A legacy bucket is not continued. */
static void wr_begin(wr_t *w)
{
    mc_ssd_disk_t *d = w->d;
    pthread_mutex_lock(&d->mu);
    w->b = d->nb && d->b[d->nb - 1]->jfd >= 0 ? d->b[d->nb - 1] : NULL;
    uint64_t size = w->b ? w->b->size : 0, jsize = w->b ? w->b->jsize : 0;
    pthread_mutex_unlock(&d->mu);
    if (w->b) {
        if (d->carry_len && d->carry_bucket == w->b->id && d->carry_off + d->carry_len == size) {
            w->base = d->carry_off;
            memcpy(wr_slot(w, w->cur), d->carry, d->carry_len);
            w->fill = d->carry_len;
        } else {
            w->base = MC_SSD_ALIGN_UP(size);
        }
        if (d->jcarry_len && d->jcarry_bucket == w->b->id &&
            d->jcarry_off + d->jcarry_len == jsize) {
            w->jbase = d->jcarry_off;
            memcpy(d->jbuf, d->jcarry, d->jcarry_len);
            w->jfill = d->jcarry_len;
        } else {
            w->jbase = MC_SSD_ALIGN_UP(jsize);
        }
    }
    d->carry_len = 0;
    d->jcarry_len = 0;
}

/* Length a new bucket is allocated to, for a first value of need bytes. */
static uint64_t bucket_len(const mc_ssd_disk_t *d, uint64_t need)
{
    return MC_SSD_ALIGN_UP(need > d->cfg.bucket ? need : d->cfg.bucket);
}

/* Starts a new bucket for the writer (the pieces of the old one stay in
 * flight; its journal is written first), of at least `need` bytes. The file
 * is allocated to its full size up front: writes inside the file's size run
 * in parallel on filesystems that serialise the ones extending it (ext4),
 * and its values are where the journal says. The old bucket is cut to its
 * tail when that is short of its length (ext4 waits for the writes in flight
 * to a file it cuts: a full bucket is left alone). */
static int wr_new_bucket(wr_t *w, uint64_t need)
{
    mc_ssd_disk_t *d = w->d;
    if (w->b) {
        wr_commit(w);
        uint64_t end = MC_SSD_ALIGN_UP(w->base + w->fill);
        if (w->fill) wr_submit(w);
        wr_jflush(w, 1);
        if (end < w->b->alloc) {
            if (ftruncate(w->b->fd, (off_t)end) == 0) {
                pthread_mutex_lock(&d->mu);
                uint64_t old = foot(w->b);
                w->b->alloc = end;
                d->used = d->used - old + foot(w->b);
                pthread_mutex_unlock(&d->mu);
            } else {
                MC_LOGW(TAG, "bucket %016" PRIx64 ": cannot cut to %" PRIu64 ": %s", w->b->id, end,
                        strerror(errno));
            }
        }
    }
    if (w->err) return w->err;
    pthread_mutex_lock(&d->mu);
    uint64_t id = d->next_id++;
    pthread_mutex_unlock(&d->mu);
    bucket_t *b;
    if (bucket_open(d, id, 1, &b)) return w->err = MC_ERR_WRITE_FAIL;
    uint64_t len = bucket_len(d, need);
    if (fallocate(b->fd, 0, 0, (off_t)len) == 0 || ftruncate(b->fd, (off_t)len) == 0)
        b->alloc = len;
    else
        MC_LOGW(TAG, "bucket %016" PRIx64 ": cannot size it to %" PRIu64 ": %s", id, len,
                strerror(errno));
    pthread_mutex_lock(&d->mu);
    int rc = bucket_add(d, b);
    if (!rc) d->used += b->alloc;
    pthread_mutex_unlock(&d->mu);
    if (rc) {
        bucket_unlink(d, b);
        free(b);
        return w->err = MC_ERR_INTERNAL;
    }
    w->b = b;
    w->base = 0;
    w->fill = 0;
    w->jbase = 0;
    w->jfill = 0;
    w->jnew = 0;
    return 0;
}

/* Ends a batch: the partly filled piece and the journal go out (wr_drain
 * then waits for everything in flight), the last partial blocks are kept
 * for the next batch. */
static void wr_end(wr_t *w)
{
    mc_ssd_disk_t *d = w->d;
    wr_commit(w);
    if (!w->b || w->err) return;
    if (w->fill) {
        uint64_t blk = w->fill / MC_SSD_ALIGN * MC_SSD_ALIGN;
        d->carry_len = w->fill - blk;
        memcpy(d->carry, wr_slot(w, w->cur) + blk, d->carry_len);
        d->carry_off = w->base + blk;
        d->carry_bucket = w->b->id;
        wr_submit(w);
    }
    uint64_t jblk = w->jfill / MC_SSD_ALIGN * MC_SSD_ALIGN;
    d->jcarry_len = w->jfill - jblk;
    memcpy(d->jcarry, d->jbuf + jblk, d->jcarry_len);
    d->jcarry_off = w->jbase + jblk;
    d->jcarry_bucket = w->b->id;
    wr_jflush(w, 0);
}

/* 1 while b is still in the table (eviction may drop an older bucket). */
static int bucket_live_locked(mc_ssd_disk_t *d, const bucket_t *b)
{
    for (size_t i = d->nb; i-- > 0;)
        if (d->b[i] == b) return 1;
    return 0;
}

int mc_ssd_disk_write(mc_ssd_disk_t *d, const char *const *keys, const void *const *srcs,
                      const uint64_t *sizes, const uint64_t *stamps, size_t n, int *rcs)
{
    wr_t w;
    memset(&w, 0, sizeof w);
    w.d = d;
    size_t m = n ? n : 1;
    uint64_t *offs = calloc(m, sizeof *offs), *sums = calloc(m, sizeof *sums);
    bucket_t **bk = calloc(m, sizeof *bk);
    uint8_t *early = calloc(m, 1); /* indexed before the last writes completed */
    if (!offs || !sums || !bk || !early) {
        free(offs);
        free(sums);
        free(bk);
        free(early);
        for (size_t i = 0; i < n; i++)
            rcs[i] = MC_ERR_INTERNAL;
        return MC_ERR_INTERNAL;
    }
    wr_begin(&w);
    pthread_mutex_lock(&d->mu);
    /* usage at the start (drops only lower it meanwhile), what the current
     * bucket's .dat took then, what the buckets this call left took more,
     * the journal bytes this call added (and a block of rounding per bucket) */
    uint64_t used0 = d->used, foot0 = w.b ? dfoot(w.b) : 0, added = 0, jadd = MC_SSD_ALIGN;
    pthread_mutex_unlock(&d->mu);
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(keys[i]);
        rcs[i] = 0;
        if (kl == 0 || kl > MC_SSD_KEY_MAX || sizes[i] == 0 || sizes[i] > MC_SSD_DATA_MAX) {
            rcs[i] = MC_ERR_INVALID_PARAMS;
            continue;
        }
        uint64_t jl = mc_ssd_jent_len(kl);
        uint64_t tail = w.b ? w.base + w.fill : 0, voff = mc_ssd_val_off(tail, sizes[i]);
        int fresh = !w.b || (tail > 0 && voff + sizes[i] > d->cfg.bucket);
        if (fresh) voff = 0;
        uint64_t alloc = w.b ? w.b->alloc : 0, end = voff + sizes[i] > alloc ? voff + sizes[i] : alloc;
        uint64_t grow = fresh ? bucket_len(d, sizes[i]) : end - foot0;
        if (used0 + added + grow + jadd + jl > d->cfg.quota) {
            rcs[i] = MC_ERR_NO_AVAILABLE_HANDLE;
            continue;
        }
        if (fresh) {
            if (w.b) { /* it is cut to its tail */
                added += MC_SSD_ALIGN_UP(tail) - foot0;
                jadd += MC_SSD_ALIGN;
            }
            if (wr_new_bucket(&w, sizes[i])) break;
            foot0 = 0;
        }
        wr_zero(&w, voff - (w.base + w.fill));
        sums[i] = XXH3_64bits(srcs[i], sizes[i]);
        mc_ssd_jent_t e = {(uint32_t)kl, voff, sizes[i], stamps[i], sums[i],
                           XXH3_64bits(keys[i], kl)};
        offs[i] = voff;
        bk[i] = w.b;
        wr_bytes(&w, srcs[i], sizes[i]);
        wr_jent(&w, &e, keys[i]);
        jadd += jl;
        if (w.err) break;
    }
    wr_end(&w);
    /* While the last pieces are written, the keys new to the disk are
     * indexed: nobody asks for them before the master hears of them, after
     * this call. A key replaced waits for the end (a reader may be reading
     * its older record). */
    const bucket_t *ok = NULL;
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < n && !w.err; i++) {
        if (rcs[i] || !bk[i] || mc_map_get(d->index, keys[i])) continue;
        if (bk[i] != ok && !bucket_live_locked(d, bk[i])) continue;
        ok = bk[i];
        ent_t v = {bk[i], offs[i], sizes[i], sizes[i], stamps[i], sums[i], 0};
        if (mc_ssd_ent_put_locked(d, keys[i], &v) == 0) early[i] = 1;
    }
    pthread_mutex_unlock(&d->mu);
    wr_drain(&w);
    if (w.err) d->carry_len = d->jcarry_len = 0;
    ok = NULL;
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < n; i++) {
        if (rcs[i]) continue;
        if (w.err || !bk[i]) {
            rcs[i] = w.err ? w.err : MC_ERR_WRITE_FAIL;
            ent_t *e = early[i] ? mc_map_get(d->index, keys[i]) : NULL;
            if (e && e->b == bk[i] && e->off == offs[i]) ent_unlink_locked(d, keys[i]);
            continue;
        }
        if (bk[i] != ok && !bucket_live_locked(d, bk[i])) {
            rcs[i] = MC_ERR_WRITE_FAIL; /* its bucket was evicted meanwhile */
            continue;
        }
        ok = bk[i];
        ent_t v = {bk[i], offs[i], sizes[i], sizes[i], stamps[i], sums[i], 0};
        if (!early[i] && mc_ssd_ent_put_locked(d, keys[i], &v) != 0) rcs[i] = MC_ERR_INTERNAL;
    }
    pthread_mutex_unlock(&d->mu);
    free(offs);
    free(sums);
    free(bk);
    free(early);
    return w.err;
}

/* ---- reads ---- */

uint64_t mc_ssd_disk_rec_len(mc_ssd_disk_t *d, const char *key, uint64_t *size, uint64_t *stamp)
{
    pthread_mutex_lock(&d->mu);
    ent_t *e = mc_map_get(d->index, key);
    uint64_t rl = e ? span_len(e->off, ent_bytes(e)) : 0;
    if (e && size) *size = e->data_len;
    if (e && stamp) *stamp = e->stamp;
    pthread_mutex_unlock(&d->mu);
    return rl;
}

/* Releases the buckets a batch of reads held (under no lock). */
static void buckets_put(mc_ssd_disk_t *d, bucket_t *const *bs, size_t n)
{
    bucket_t *freed[RING_DEPTH];
    size_t nf = 0;
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < n; i++) {
        if (!bs[i]) continue;
        if (--bs[i]->refs == 0 && bs[i]->dropped) freed[nf++] = bs[i];
    }
    pthread_mutex_unlock(&d->mu);
    for (size_t i = 0; i < nf; i++) {
        bucket_close(freed[i]);
        free(freed[i]);
    }
}

/* One chunk of mc_ssd_disk_read_many: n <= RING_DEPTH. */
static int read_chunk(mc_ssd_disk_t *d, struct io_uring *r, const char *const *keys, size_t n,
                      void *const *bufs, const uint64_t *caps, const uint8_t **datas,
                      uint64_t *sizes, int *rcs)
{
    ent_t copy[RING_DEPTH];
    bucket_t *held[RING_DEPTH];
    io_op_t ops[RING_DEPTH];
    size_t idx[RING_DEPTH], nops = 0;
    /* one look-up of the whole batch; a bucket is held (not closed or freed
     * by a drop) while its read is in flight */
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < n; i++) {
        held[i] = NULL;
        ent_t *e = mc_map_get(d->index, keys[i]);
        if (!e) {
            rcs[i] = MC_ERR_OBJECT_NOT_FOUND;
            continue;
        }
        copy[i] = *e;
        uint64_t skip = e->off % MC_SSD_ALIGN, span = span_len(e->off, ent_bytes(e));
        if (span > caps[i]) {
            rcs[i] = MC_ERR_BUFFER_OVERFLOW;
            continue;
        }
        e->b->refs++;
        held[i] = e->b;
        rcs[i] = 0;
        ops[nops] = (io_op_t){e->b->fd, bufs[i], span, e->off - skip, 0};
        idx[nops++] = i;
    }
    pthread_mutex_unlock(&d->mu);
    /* all the batch's reads in one submission */
    int err = nops ? mc_ssd_ring_run(r, ops, nops, 0) : 0;
    buckets_put(d, held, n);
    uint64_t bytes = 0;
    for (size_t j = 0; j < nops; j++) {
        size_t i = idx[j];
        const char *key = keys[i];
        if (err || ops[j].res != (int64_t)ops[j].len) {
            MC_LOGW(TAG, "read of '%.128s' at %" PRIu64 ": %s", key, copy[i].off,
                    err              ? strerror(-err)
                    : ops[j].res < 0 ? strerror((int)-ops[j].res)
                                     : "short read");
            rcs[i] = MC_ERR_TRANSFER_FAIL;
            continue;
        }
        mc_ssd_rec_t rec = {0};
        const char *why = NULL;
        size_t kl = strlen(key);
        const uint8_t *p = (const uint8_t *)bufs[i] + copy[i].off % MC_SSD_ALIGN, *val = p;
        int bad;
        if (copy[i].legacy) { /* the whole record: header, key, value */
            bad = mc_ssd_rec_verify(p, copy[i].rec_len, &rec, &why) || rec.key_len != kl ||
                  memcmp(p + MC_SSD_REC_HDR, key, kl) != 0 || rec.data_len != copy[i].data_len;
            if (!why && bad) why = "another key";
            val = p + MC_SSD_REC_HDR + kl;
        } else { /* the value, against its journal entry's checksum */
            bad = XXH3_64bits(p, copy[i].data_len) != copy[i].data_sum;
            why = "value checksum mismatch";
        }
        if (bad) {
            MC_LOGW(TAG, "record of '%.128s' (bucket offset %" PRIu64 "): %s; dropped, not served",
                    key, copy[i].off, why);
            pthread_mutex_lock(&d->mu);
            d->corrupt++;
            ent_t *now = mc_map_get(d->index, key);
            if (now && now->b == copy[i].b && now->off == copy[i].off) ent_unlink_locked(d, key);
            pthread_mutex_unlock(&d->mu);
            rcs[i] = MC_ERR_CHECKSUM_MISMATCH;
            continue;
        }
        bytes += ent_bytes(&copy[i]);
        datas[i] = val;
        sizes[i] = copy[i].data_len;
    }
    if (bytes) __atomic_fetch_add(&d->read, bytes, __ATOMIC_RELAXED);
    return 0;
}

int mc_ssd_disk_read_many(mc_ssd_disk_t *d, const char *const *keys, size_t n, void *const *bufs,
                          const uint64_t *caps, const uint8_t **datas, uint64_t *sizes, int *rcs)
{
    struct io_uring *r = mc_ssd_read_ring(d);
    for (size_t i = 0; i < n; i += RING_DEPTH) {
        size_t k = n - i < RING_DEPTH ? n - i : RING_DEPTH;
        if (!r) {
            for (size_t j = 0; j < k; j++)
                rcs[i + j] = MC_ERR_INTERNAL;
            continue;
        }
        read_chunk(d, r, keys + i, k, bufs + i, caps + i, datas + i, sizes + i, rcs + i);
    }
    return 0;
}

int mc_ssd_disk_read(mc_ssd_disk_t *d, const char *key, void *buf, uint64_t cap,
                     const uint8_t **data, uint64_t *size)
{
    int rc;
    mc_ssd_disk_read_many(d, &key, 1, &buf, &cap, data, size, &rc);
    return rc;
}

void mc_ssd_disk_delete(mc_ssd_disk_t *d, const char *key)
{
    pthread_mutex_lock(&d->mu);
    ent_unlink_locked(d, key);
    pthread_mutex_unlock(&d->mu);
}

typedef struct {
    void (*fn)(const char *, uint64_t, uint64_t, void *);
    void *arg;
} each_t;

static int each_visit(const char *key, void *val, void *arg)
{
    each_t *c = arg;
    const ent_t *e = val;
    c->fn(key, e->data_len, e->stamp, c->arg);
    return 0;
}

void mc_ssd_disk_each(mc_ssd_disk_t *d, void (*fn)(const char *, uint64_t, uint64_t, void *),
                      void *arg)
{
    each_t c = {fn, arg};
    pthread_mutex_lock(&d->mu);
    mc_map_each(d->index, each_visit, &c);
    pthread_mutex_unlock(&d->mu);
}

/* ---- eviction ---- */

typedef struct {
    bucket_t *b;
    char **keys;
    size_t n, cap;
    int oom;
} vic_t;

static int vic_visit(const char *key, void *val, void *arg)
{
    vic_t *c = arg;
    if (((ent_t *)val)->b != c->b) return 0;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 64;
        char **nv = realloc(c->keys, nc * sizeof *nv);
        if (!nv) return c->oom = 1, 1;
        c->keys = nv;
        c->cap = nc;
    }
    if (!(c->keys[c->n] = strdup(key))) return c->oom = 1, 1;
    c->n++;
    return 0;
}

int mc_ssd_disk_victims(mc_ssd_disk_t *d, uint64_t *bucket, char ***keys, size_t *n)
{
    *keys = NULL;
    *n = 0;
    pthread_mutex_lock(&d->mu);
    /* the newest bucket is the one being appended to: never a victim */
    int over = (double)d->used > d->cfg.high * (double)d->cfg.quota && d->nb > 1;
    if (!over) {
        pthread_mutex_unlock(&d->mu);
        return 0;
    }
    vic_t c = {d->b[0], NULL, 0, 0, 0};
    if (c.b->nlive) mc_map_each(d->index, vic_visit, &c);
    *bucket = c.b->id;
    pthread_mutex_unlock(&d->mu);
    if (c.oom) {
        mc_ssd_keys_free(c.keys, c.n);
        return MC_ERR_INTERNAL;
    }
    *keys = c.keys;
    *n = c.n;
    return 1;
}

int mc_ssd_disk_above_low(mc_ssd_disk_t *d)
{
    pthread_mutex_lock(&d->mu);
    int above = (double)d->used > d->cfg.low * (double)d->cfg.quota && d->nb > 1;
    pthread_mutex_unlock(&d->mu);
    return above;
}

void mc_ssd_disk_drop_bucket(mc_ssd_disk_t *d, uint64_t id)
{
    pthread_mutex_lock(&d->mu);
    size_t i = 0;
    while (i < d->nb && d->b[i]->id != id)
        i++;
    if (i == d->nb || i == d->nb - 1) { /* gone, or the one being appended to */
        pthread_mutex_unlock(&d->mu);
        return;
    }
    bucket_t *b = d->b[i];
    if (b->nlive) {
        vic_t c = {b, NULL, 0, 0, 0};
        mc_map_each(d->index, vic_visit, &c);
        for (size_t k = 0; k < c.n; k++)
            ent_unlink_locked(d, c.keys[k]);
        mc_ssd_keys_free(c.keys, c.n);
    }
    memmove(&d->b[i], &d->b[i + 1], (d->nb - i - 1) * sizeof *d->b);
    d->nb--;
    d->evicted++;
    uint64_t gone = foot(b);
    pthread_mutex_unlock(&d->mu);
    bucket_unlink_path(d, b);
    /* its bytes leave the quota once its file is gone, never before: the
     * writer cannot take them while the disk still holds them (a reader still
     * reading it holds it open until it is done: a few blocks, briefly) */
    pthread_mutex_lock(&d->mu);
    d->used -= gone;
    int last = b->refs == 0;
    if (!last) b->dropped = 1;
    pthread_mutex_unlock(&d->mu);
    if (last) {
        bucket_close(b);
        free(b);
    }
}

void mc_ssd_keys_free(char **keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
}

void mc_ssd_disk_stats(mc_ssd_disk_t *d, mc_ssd_disk_stats_t *st)
{
    memset(st, 0, sizeof *st);
    pthread_mutex_lock(&d->mu);
    st->keys = mc_map_size(d->index);
    for (size_t i = 0; i < d->nb; i++)
        st->bytes_live += d->b[i]->live;
    st->bytes_used = d->used;
    st->quota = d->cfg.quota;
    st->buckets = d->nb;
    st->written_bytes = d->written;
    st->read_bytes = __atomic_load_n(&d->read, __ATOMIC_RELAXED);
    st->dropped_corrupt = d->corrupt;
    st->evicted_buckets = d->evicted;
    pthread_mutex_unlock(&d->mu);
}
