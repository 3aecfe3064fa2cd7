/* store_ssd_internal.h: the types and helpers the SSD tier's disk files
 * share (store_ssd_io.c: open, write, read, evict; store_ssd_scan.c: the
 * restart scan of the buckets). Not part of the tier's interface
 * (store_ssd.h). */
#ifndef MC_STORE_SSD_INTERNAL_H
#define MC_STORE_SSD_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include <liburing.h>

#include "base_map.h"
#include "store_ssd.h"

#define RING_DEPTH 64
#define SCAN_CHUNK (8u << 20)

typedef struct bucket {
    uint64_t id;
    int fd;         /* bucket-<id>.dat */
    int jfd;        /* bucket-<id>.idx, its journal (version 3); -1: a legacy bucket */
    uint64_t size;  /* end of the last record (value): the tail */
    uint64_t alloc; /* length of the file (the tail bucket is allocated ahead) */
    uint64_t jsize; /* end of the journal's last entry */
    uint64_t jalloc; /* length of the journal file */
    uint64_t live;  /* bytes of live records */
    uint64_t nlive;
    unsigned refs; /* readers reading it now (under mu) */
    int dropped;   /* out of the table and unlinked: the last reader closes and frees it */
} bucket_t;

/* A key on disk. Version 3 (legacy 0): off and rec_len are the value's
 * offset and length in the .dat file, data_sum its checksum (from the
 * journal). Legacy (versions 1, 2): the record (header, key, value) at off. */
typedef struct {
    bucket_t *b;
    uint64_t off, rec_len, data_len, stamp, data_sum;
    int legacy;
} ent_t;

struct mc_ssd_disk {
    mc_ssd_disk_config_t cfg;
    char *path;
    int lock_fd;
    int direct;
    mc_uuid_t id;
    pthread_mutex_t mu;
    mc_map_t *index;
    bucket_t **b; /* by id, ascending */
    size_t nb, capb;
    uint64_t used; /* sum of bucket sizes */
    uint64_t next_id;
    uint8_t *wbuf;      /* the writer's staging: nslot pieces of `piece` bytes */
    uint64_t piece;     /* bytes of one write */
    unsigned nslot, qd; /* pieces; writes in flight at most (nslot - 1) */
    /* the written part of the tail bucket's last, partly filled block, which
     * the next batch rewrites (carry_len 0: none) */
    uint8_t carry[MC_SSD_ALIGN];
    uint64_t carry_bucket, carry_off, carry_len;
    /* the same for the tail bucket's journal, and the writer's journal
     * buffer (the entries of one batch and bucket) */
    uint8_t jcarry[MC_SSD_ALIGN];
    uint64_t jcarry_bucket, jcarry_off, jcarry_len;
    uint8_t *jbuf;
    uint64_t jcap;
    struct io_uring wring;
    int wring_ok;
    int wfixed; /* wbuf is registered with wring */
    pthread_key_t rkey; /* a read ring per thread */
    uint64_t written, read, corrupt, evicted;
};

/* One pread or pwrite of a ring run: res, bytes or -errno. */
typedef struct {
    int fd;
    void *buf;
    uint64_t len, off;
    int64_t res;
} io_op_t;

/* The calling thread's read ring (made on first use); NULL on failure. */
struct io_uring *mc_ssd_read_ring(mc_ssd_disk_t *d);
/* Runs n preads/pwrites of (fd, buf, len, off) on ring r, all submitted at
 * once (at most RING_DEPTH in flight). res[i]: bytes or -errno. Short
 * transfers are completed with further submissions. Returns 0 or -errno of
 * the ring itself. */
int mc_ssd_ring_run(struct io_uring *r, io_op_t *ops, size_t n, int write);
/* Puts key -> *v in the index (replacing an older entry) and counts it in
 * its bucket. Caller holds mu or owns d. 0 or -1 (out of memory). */
int mc_ssd_ent_put_locked(mc_ssd_disk_t *d, const char *key, const ent_t *v);

/* The restart scan (store_ssd_scan.c): a legacy bucket (no journal), a
 * version-3 bucket (with its journal). buf/cap: an aligned scratch buffer
 * of cap bytes, grown as needed. 0, or -1 on an I/O error. */
int mc_ssd_scan_bucket(mc_ssd_disk_t *d, bucket_t *b, uint8_t **buf, uint64_t *cap);
int mc_ssd_scan_bucket_v3(mc_ssd_disk_t *d, bucket_t *b, uint8_t **buf, uint64_t *cap);

#endif
