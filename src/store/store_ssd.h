/* store_ssd.h: the store's SSD tier (docs/store.md "SSD tier"), in three parts:
 *   store_ssd_rec.c  the bytes: on-disk records and the staging protocol's
 *                    frames (pure codecs, fuzzed by fuzz_store_ssd);
 *   store_ssd_io.c   the disk: bucket files written and read with io_uring
 *                    (O_DIRECT, 4 KiB aligned, writes batched), the key index,
 *                    the quota, the scan at start;
 *   store_ssd.c      the tier in a store: the offload thread (tasks from the
 *                    master, disk eviction, promotions), the staging server
 *                    readers ask, and the reader's side of a disk get.
 * Thread rule: as each section says. Errors: 0 or a negative MC_ERR_*. */
#ifndef MC_STORE_SSD_H
#define MC_STORE_SSD_H
#include <stddef.h>
#include <stdint.h>

#include "master_service.h"

#define MC_SSD_ALIGN 4096u
#define MC_SSD_REC_HDR 64u
#define MC_SSD_KEY_MAX 4096u
#define MC_SSD_DATA_MAX (1ull << 40)
#define MC_SSD_ALIGN_UP(x) (((uint64_t)(x) + MC_SSD_ALIGN - 1) / MC_SSD_ALIGN * MC_SSD_ALIGN)
#define MC_SSD_REC_ALIGN 64u            /* records are packed at this alignment */
#define MC_SSD_WRITE_PIECE (1ull << 20) /* bytes of one write */
#define MC_SSD_WRITE_SLOTS_MAX 33u      /* pieces of the writer's staging at most */

/* ---- store_ssd_rec.c: records ----
 * Records are packed in a bucket file, each on a 64-byte boundary: a 64-byte
 * header, the key, the value, zeros up to the next 64-byte boundary
 * (version 2; version 1, still read, padded records to 4 KiB). Header (LE):
 *   u32 magic "MCSR", u16 version 2, u16 header length 64, u32 key length,
 *   u32 0, u64 value length, u64 stamp (the master's incarnation of the
 *   object), u64 XXH3 of the value, u64 XXH3 of the key, u64 record length
 *   (padded), u64 XXH3 of the 56 bytes before it. */
typedef struct {
    uint32_t key_len;
    uint64_t data_len, stamp, data_sum, key_sum, rec_len;
} mc_ssd_rec_t;

/* Record length of a key and value of these sizes. */
uint64_t mc_ssd_rec_len(size_t key_len, uint64_t data_len);
/* Writes the header of a record into out[0..64) (the key and value
 * checksums must be filled). */
void mc_ssd_rec_encode(const mc_ssd_rec_t *r, uint8_t out[MC_SSD_REC_HDR]);
/* Parses and checks a header from buf[0..len): 0, or -1 with *why (static):
 * short, bad magic/version/lengths, header checksum mismatch. */
int mc_ssd_rec_decode(const uint8_t *buf, size_t len, mc_ssd_rec_t *r, const char **why);
/* Checks a whole record in buf[0..len) (len >= rec_len): the header, the key
 * checksum, the value checksum. 0 or -1 with *why. */
int mc_ssd_rec_verify(const uint8_t *buf, size_t len, mc_ssd_rec_t *r, const char **why);

/* ---- store_ssd_rec.c: version 3, values in whole blocks ----
 * A bucket written since version 3 is two files: `bucket-<id>.dat` holds the
 * values only, and `bucket-<id>.idx`, its journal, one entry per value,
 * packed on 64-byte boundaries: a 64-byte header, the key, zeros up to the
 * next 64-byte boundary. Header (LE): u32 magic "MCSJ", u16 version 3, u16
 * header length 64, u32 key length, u32 0, u64 value offset in the .dat
 * file, u64 value length, u64 stamp, u64 XXH3 of the value, u64 XXH3 of the
 * key, u64 XXH3 of the 56 bytes before it. A value of 4 KiB or more starts
 * on a 4 KiB boundary (a 4 KiB value is one block); a smaller one is packed
 * on 64 bytes and never crosses a 4 KiB boundary (mc_ssd_val_off). A value
 * is checked against its entry's checksum at every read and at the scan. */
typedef struct {
    uint32_t key_len;
    uint64_t off, data_len, stamp, data_sum, key_sum;
} mc_ssd_jent_t;
#define MC_SSD_JENT_HDR 64u
/* Bytes of a journal entry with a key of key_len bytes. */
uint64_t mc_ssd_jent_len(size_t key_len);
/* Where a value of size bytes goes in a .dat file whose tail is at tail. */
uint64_t mc_ssd_val_off(uint64_t tail, uint64_t size);
void mc_ssd_jent_encode(const mc_ssd_jent_t *e, uint8_t out[MC_SSD_JENT_HDR]);
/* Parses and checks an entry from buf[0..len) (the header, its checksum,
 * the lengths, the value's placement, the key's checksum): 0, or -1 with
 * *why (static). The key is buf[64 .. 64 + key_len). */
int mc_ssd_jent_decode(const uint8_t *buf, size_t len, mc_ssd_jent_t *e, const char **why);

/* ---- store_ssd_rec.c: the staging protocol (TCP, little-endian) ----
 * Frame: u32 magic "MCSS", u8 version 1, u8 op (| 0x80 in replies), u16 0,
 * i32 status (0 in requests), u32 payload length (<= 1 MiB).
 *   STAGE request:  u32 count (<= 1024), count x (u32 key length <= 4096, key)
 *   STAGE reply:    u32 name length (<= 255), TE segment name, u64 token,
 *                   u32 count, count x (i32 rc, u64 addr, u64 size)
 *   RELEASE request: u64 token; no reply.
 *   AUTH_HELLO / AUTH_PROOF: the cluster secret's exchange (net_auth.h), first
 *   on a connection when the store has a secret: HELLO u8 version + 32-byte
 *   nonce, reply 32-byte nonce + MAC; PROOF the 32-byte MAC, reply header
 *   only; errors are the reply's status (MC_ERR_AUTH_*, INVALID_VERSION). */
#define MC_SSD_SRV_MAGIC 0x5353434Du
#define MC_SSD_SRV_HDR 16u
#define MC_SSD_SRV_FRAME_MAX (1u << 20)
#define MC_SSD_SRV_KEYS_MAX 1024u
enum {
    MC_SSD_OP_STAGE = 1,
    MC_SSD_OP_RELEASE = 2,
    MC_SSD_OP_AUTH_HELLO = 3,
    MC_SSD_OP_AUTH_PROOF = 4
};
typedef struct {
    uint8_t op;
    int32_t status;
    uint32_t len;
} mc_ssd_hdr_t;
void mc_ssd_hdr_encode(const mc_ssd_hdr_t *h, uint8_t out[MC_SSD_SRV_HDR]);
/* Decodes a header; reply says which direction is expected. 0 or -1 (*why). */
int mc_ssd_hdr_decode(const uint8_t *buf, size_t len, int reply, mc_ssd_hdr_t *h, const char **why);
/* STAGE request payload: keys point into buf (not NUL-terminated: klen). */
typedef struct {
    uint32_t n;
    const uint8_t *key[MC_SSD_SRV_KEYS_MAX];
    uint32_t klen[MC_SSD_SRV_KEYS_MAX];
} mc_ssd_stage_req_t;
int mc_ssd_stage_req_decode(const uint8_t *p, size_t len, mc_ssd_stage_req_t *q, const char **why);
typedef struct mc_ssd_staged {
    int32_t rc;
    uint64_t addr, size;
} mc_ssd_staged_t;
/* STAGE reply payload: name (NUL-terminated into name[256]), token, up to
 * cap entries (the count must equal want). */
int mc_ssd_stage_rep_decode(const uint8_t *p, size_t len, char name[256], uint64_t *token,
                            mc_ssd_staged_t *v, uint32_t want, const char **why);

/* ---- store_ssd_io.c: the disk ---- */
typedef struct mc_ssd_disk mc_ssd_disk_t;
typedef struct {
    const char *path;   /* directory, created if missing */
    uint64_t quota;     /* bytes of bucket files at most */
    uint64_t bucket;    /* bucket file size (a larger record gets a bucket of its own) */
    double high, low;   /* watermarks of the quota: eviction starts / stops */
    uint64_t write_buf; /* bytes of writes in flight (1 MiB each; plus one being filled) */
} mc_ssd_disk_config_t;

/* Opens (and locks) the directory, reads its identity (disk.id, created the
 * first time) and scans its buckets into the index: records that are torn or
 * fail their checksums are dropped, each with a log line. Errors: the
 * directory cannot be created, locked (another store uses it) or read. */
int mc_ssd_disk_open(const mc_ssd_disk_config_t *cfg, mc_ssd_disk_t **out);
void mc_ssd_disk_close(mc_ssd_disk_t *d);
/* 1 when directory path (created if missing) is held by no open disk, of
 * this process or another, at the time of the call. */
int mc_ssd_dir_free(const char *path);
mc_uuid_t mc_ssd_disk_id(const mc_ssd_disk_t *d);
/* 1 when O_DIRECT is in use (the filesystem took it). */
int mc_ssd_disk_direct(const mc_ssd_disk_t *d);

/* Appends n objects (key, bytes at src, size, stamp) in as few large writes
 * as the write buffer allows; rcs[i] 0 or an error (NO_AVAILABLE_HANDLE: no
 * room under the quota). A key already on disk is replaced. One writer
 * thread at a time. */
int mc_ssd_disk_write(mc_ssd_disk_t *d, const char *const *keys, const void *const *srcs,
                      const uint64_t *sizes, const uint64_t *stamps, size_t n, int *rcs);
/* Reads key's record into buf (MC_SSD_ALIGN-aligned, cap bytes) with
 * io_uring and checks it. *data points at the value inside buf, *size its
 * length. OBJECT_NOT_FOUND; BUFFER_OVERFLOW when the record exceeds cap;
 * CHECKSUM_MISMATCH (logged, key dropped from the index). Any thread (a
 * ring per calling thread). */
int mc_ssd_disk_read(mc_ssd_disk_t *d, const char *key, void *buf, uint64_t cap,
                     const uint8_t **data, uint64_t *size);
/* mc_ssd_disk_read of n keys at once: one index look-up for the batch, all
 * the reads submitted together (64 in flight at most), each checked;
 * rcs[i], datas[i], sizes[i] as mc_ssd_disk_read's. Returns 0. */
int mc_ssd_disk_read_many(mc_ssd_disk_t *d, const char *const *keys, size_t n, void *const *bufs,
                          const uint64_t *caps, const uint8_t **datas, uint64_t *sizes, int *rcs);
/* Bytes a read of key needs (its record and the 4 KiB blocks around it,
 * for O_DIRECT), 0 when absent. */
uint64_t mc_ssd_disk_rec_len(mc_ssd_disk_t *d, const char *key, uint64_t *size, uint64_t *stamp);
/* Forgets key (its space comes back with its bucket). */
void mc_ssd_disk_delete(mc_ssd_disk_t *d, const char *key);
/* Calls fn for every key on disk (under the index lock: fn must not call back). */
void mc_ssd_disk_each(mc_ssd_disk_t *d,
                      void (*fn)(const char *key, uint64_t size, uint64_t stamp, void *arg),
                      void *arg);
/* Disk eviction, FIFO by bucket: when usage is past the high watermark,
 * the live keys of the oldest bucket (malloc'd array of strdup'd keys; free
 * with mc_ssd_keys_free) and its id. 0 when below it. */
int mc_ssd_disk_victims(mc_ssd_disk_t *d, uint64_t *bucket, char ***keys, size_t *n);
/* Deletes bucket (its remaining keys are forgotten). */
void mc_ssd_disk_drop_bucket(mc_ssd_disk_t *d, uint64_t bucket);
/* 1 while usage is above the low watermark (eviction goes on). */
int mc_ssd_disk_above_low(mc_ssd_disk_t *d);
void mc_ssd_keys_free(char **keys, size_t n);
typedef struct {
    uint64_t keys, bytes_live, bytes_used, quota, buckets;
    uint64_t written_bytes, read_bytes, dropped_corrupt, evicted_buckets;
} mc_ssd_disk_stats_t;
void mc_ssd_disk_stats(mc_ssd_disk_t *d, mc_ssd_disk_stats_t *st);
#endif
