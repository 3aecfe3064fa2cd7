/* store_ssd_scan.c: the SSD tier's restart scan. At open (store_ssd_io.c)
 * each bucket file is read front to back into the index: a legacy bucket
 * record by record, a version-3 bucket through its journal, each value
 * checked against its checksum. A torn tail ends a bucket (appends continue
 * there); a record whose checksums fail is dropped with a log line; neither
 * is ever served. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "base_log.h"
#include "store_ssd_internal.h"

#define TAG "ssd"


static int all_zero(const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

/* Scans bucket b into the index; sets b->size to the end of its last good
 * record. Records are read in SCAN_CHUNK pieces from 4 KiB boundaries (a
 * record larger than that is read whole). Zeros up to the end of a 4 KiB
 * block are padding (a batch, or a writer restarted, began at the next
 * block): the scan goes on at the next block. */
int mc_ssd_scan_bucket(mc_ssd_disk_t *d, bucket_t *b, uint8_t **buf, uint64_t *cap)
{
    struct stat st;
    if (fstat(b->fd, &st) != 0) return -1;
    uint64_t fsize = (uint64_t)st.st_size / MC_SSD_ALIGN * MC_SSD_ALIGN, off = 0;
    struct io_uring *r = mc_ssd_read_ring(d);
    if (!r) return -1;
    uint64_t nrec = 0, ndrop = 0;
    const char *stop = NULL;
    int end = 0;
    while (off < fsize && !end) {
        uint64_t aoff = off / MC_SSD_ALIGN * MC_SSD_ALIGN, skip = off - aoff;
        uint64_t want = fsize - aoff < SCAN_CHUNK ? fsize - aoff : SCAN_CHUNK;
        io_op_t op = {b->fd, *buf, want, aoff, 0};
        if (mc_ssd_ring_run(r, &op, 1, 0) || op.res < (int64_t)MC_SSD_ALIGN) {
            stop = "read error";
            break;
        }
        uint64_t got = (uint64_t)op.res / MC_SSD_ALIGN * MC_SSD_ALIGN, pos = skip;
        while (pos < got) {
            mc_ssd_rec_t rec;
            const char *why;
            uint64_t blk_end = MC_SSD_ALIGN_UP(pos + 1);
            if (all_zero(*buf + pos, blk_end - pos)) {
                if (pos % MC_SSD_ALIGN == 0) { /* a zero block: the end (allocated, or torn) */
                    end = 1;
                    break;
                }
                pos = blk_end; /* padding */
                continue;
            }
            if (mc_ssd_rec_decode(*buf + pos, got - pos, &rec, &why)) {
                stop = why;
                break;
            }
            if (pos + rec.rec_len > got) { /* runs past this chunk */
                if (pos == skip) {         /* a record larger than the chunk: read it whole */
                    uint64_t need = MC_SSD_ALIGN_UP(skip + rec.rec_len);
                    if (need > *cap) {
                        uint8_t *nb = NULL;
                        if (posix_memalign((void **)&nb, MC_SSD_ALIGN, need)) {
                            stop = "out of memory";
                            break;
                        }
                        free(*buf);
                        *buf = nb;
                        *cap = need;
                    }
                    io_op_t big = {b->fd, *buf, need, aoff, 0};
                    if (mc_ssd_ring_run(r, &big, 1, 0) || big.res < (int64_t)need) {
                        stop = "torn record";
                        break;
                    }
                    got = need;
                } else {
                    break; /* read on from here */
                }
            }
            if (mc_ssd_rec_verify(*buf + pos, got - pos, &rec, &why)) {
                MC_LOGW(TAG, "bucket %016" PRIx64 " offset %" PRIu64 ": %s; record dropped", b->id,
                        aoff + pos, why);
                ndrop++;
                d->corrupt++;
            } else {
                char key[MC_SSD_KEY_MAX + 1];
                memcpy(key, *buf + pos + MC_SSD_REC_HDR, rec.key_len);
                key[rec.key_len] = '\0';
                ent_t v = {b, aoff + pos, rec.rec_len, rec.data_len, rec.stamp, rec.data_sum, 1};
                if (strlen(key) == rec.key_len && mc_ssd_ent_put_locked(d, key, &v) == 0) nrec++;
            }
            pos += rec.rec_len;
        }
        uint64_t adv = pos - skip;
        off += adv;
        if (stop || (adv == 0 && !end)) break;
    }
    b->size = off < fsize ? off : fsize;
    b->alloc = (uint64_t)st.st_size;
    if (stop && off < fsize)
        MC_LOGW(TAG,
                "bucket %016" PRIx64 ": %s at offset %" PRIu64 " of %" PRIu64
                "; the rest is dropped (appends continue there)",
                b->id, stop, off, fsize);
    if (ndrop || nrec)
        MC_LOGI(TAG, "bucket %016" PRIx64 ": %" PRIu64 " records, %" PRIu64 " dropped", b->id, nrec,
                ndrop);
    return 0;
}

/* A window on a file for the scan: win_get(w, off, n) gives bytes
 * [off, off + n) of the file, read with io_uring from 4 KiB boundaries,
 * SCAN_CHUNK at a time (more for a longer range); NULL past the end of the
 * file or on a read error. */
typedef struct {
    int fd;
    struct io_uring *r;
    uint8_t *buf;
    uint64_t cap, start, len, fsize;
} win_t;

static const uint8_t *win_get(win_t *w, uint64_t off, uint64_t n)
{
    if (off + n > w->fsize || off + n < off) return NULL;
    if (off >= w->start && off + n <= w->start + w->len) return w->buf + (off - w->start);
    uint64_t a = off / MC_SSD_ALIGN * MC_SSD_ALIGN, want = MC_SSD_ALIGN_UP(off + n) - a;
    if (want < SCAN_CHUNK) want = SCAN_CHUNK;
    if (want > MC_SSD_ALIGN_UP(w->fsize) - a) want = MC_SSD_ALIGN_UP(w->fsize) - a;
    if (want > w->cap) {
        uint8_t *nb = NULL;
        if (posix_memalign((void **)&nb, MC_SSD_ALIGN, want)) return NULL;
        free(w->buf);
        w->buf = nb;
        w->cap = want;
    }
    w->len = 0;
    io_op_t op = {w->fd, w->buf, want, a, 0};
    if (mc_ssd_ring_run(w->r, &op, 1, 0) || op.res < (int64_t)(off + n - a)) return NULL;
    w->start = a;
    w->len = (uint64_t)op.res;
    return w->buf + (off - a);
}

/* Scans a version-3 bucket: its journal front to back, each entry's value
 * read from the .dat file and checked against the entry. Zeros at an entry
 * are the end (at a 4 KiB boundary) or a batch's padding (the scan goes on
 * at the next block). An entry whose header fails ends the journal: the
 * rest of its block is zeroed and the file cut after it, so appends continue
 * there and the next scan reads them. An entry whose value fails its
 * checksum (torn, corrupt) is dropped with a log line. Sets b->size to the
 * end of the last good value, b->jsize to the journal's good end. */
int mc_ssd_scan_bucket_v3(mc_ssd_disk_t *d, bucket_t *b, uint8_t **buf, uint64_t *cap)
{
    struct stat st, jst;
    if (fstat(b->fd, &st) != 0 || fstat(b->jfd, &jst) != 0) return -1;
    struct io_uring *r = mc_ssd_read_ring(d);
    if (!r) return -1;
    win_t jw = {b->jfd, r, *buf, *cap, 0, 0, (uint64_t)jst.st_size};
    win_t dw = {b->fd, r, NULL, 0, 0, 0, (uint64_t)st.st_size};
    uint64_t pos = 0, dend = 0, nrec = 0, ndrop = 0;
    const char *stop = NULL;
    while (pos + MC_SSD_JENT_HDR <= jw.fsize) {
        const uint8_t *h = win_get(&jw, pos, MC_SSD_JENT_HDR);
        if (!h) {
            stop = "read error";
            break;
        }
        if (all_zero(h, MC_SSD_JENT_HDR)) {
            if (pos % MC_SSD_ALIGN == 0) break; /* the end */
            pos = MC_SSD_ALIGN_UP(pos);         /* a batch's padding */
            continue;
        }
        mc_ssd_jent_t e;
        const char *why;
        uint64_t klen = h[8] | (uint64_t)h[9] << 8 | (uint64_t)h[10] << 16 | (uint64_t)h[11] << 24;
        uint64_t jl = mc_ssd_jent_len(klen <= MC_SSD_KEY_MAX ? klen : 0);
        if (klen > MC_SSD_KEY_MAX || !(h = win_get(&jw, pos, jl))) h = win_get(&jw, pos, 64);
        if (!h || mc_ssd_jent_decode(h, jw.start + jw.len - pos, &e, &why)) {
            stop = h ? why : "read error";
            break;
        }
        jl = mc_ssd_jent_len(e.key_len);
        const uint8_t *v = win_get(&dw, e.off, e.data_len);
        if (!v || XXH3_64bits(v, e.data_len) != e.data_sum) {
            MC_LOGW(TAG, "bucket %016" PRIx64 " value at %" PRIu64 " (journal %" PRIu64 "): %s; "
                    "record dropped", b->id, e.off, pos,
                    v ? "value checksum mismatch" : "value past the end of the file");
            ndrop++;
            d->corrupt++;
        } else {
            char key[MC_SSD_KEY_MAX + 1];
            memcpy(key, h + MC_SSD_JENT_HDR, e.key_len);
            key[e.key_len] = '\0';
            ent_t en = {b, e.off, e.data_len, e.data_len, e.stamp, e.data_sum, 0};
            if (strlen(key) == e.key_len && mc_ssd_ent_put_locked(d, key, &en) == 0) nrec++;
            if (e.off + e.data_len > dend) dend = e.off + e.data_len;
        }
        pos += jl;
    }
    *buf = jw.buf;
    *cap = jw.cap;
    free(dw.buf);
    b->size = dend;
    b->alloc = (uint64_t)st.st_size;
    b->jsize = pos;
    b->jalloc = jw.fsize;
    if (stop) {
        MC_LOGW(TAG,
                "bucket %016" PRIx64 ": journal %s at offset %" PRIu64 " of %" PRIu64
                "; the rest is dropped (appends continue there)",
                b->id, stop, pos, jw.fsize);
        /* zeros after the good entries, in their block, and nothing after it */
        uint64_t a = pos / MC_SSD_ALIGN * MC_SSD_ALIGN;
        if (pos > a) {
            io_op_t op = {b->jfd, *buf, MC_SSD_ALIGN, a, 0};
            if (mc_ssd_ring_run(r, &op, 1, 0) == 0 && op.res == (int64_t)MC_SSD_ALIGN) {
                memset(*buf + (pos - a), 0, MC_SSD_ALIGN - (pos - a));
                op = (io_op_t){b->jfd, *buf, MC_SSD_ALIGN, a, 0};
                if (mc_ssd_ring_run(r, &op, 1, 1) || op.res != (int64_t)MC_SSD_ALIGN) return -1;
            }
        }
        if (ftruncate(b->jfd, (off_t)MC_SSD_ALIGN_UP(pos)) != 0) return -1;
        b->jalloc = MC_SSD_ALIGN_UP(pos);
    }
    if (ndrop || nrec)
        MC_LOGI(TAG, "bucket %016" PRIx64 ": %" PRIu64 " records, %" PRIu64 " dropped", b->id, nrec,
                ndrop);
    return 0;
}
