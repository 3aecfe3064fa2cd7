/* master_persist_rec.h: the records of the master's persistence (the log of
 * index mutations and the snapshots, master_persist.c), and their codec.
 * A record is a frame: u32 body length, u64 XXH3-64 of the body, then the
 * body (little-endian, layout in docs/master.md "Persistence and recovery").
 * The same frames are meant to travel to an HA standby, which replays them
 * with the same decoder. Files start with a 40-byte header of their own.
 * Thread rule: pure functions of their arguments; any thread.
 * The decoder reads bytes from disk: it is bounds-checked, refuses anything
 * it does not fully understand, and has a fuzz target (fuzz_master_persist). */
#ifndef MC_MASTER_PERSIST_REC_H
#define MC_MASTER_PERSIST_REC_H
#include <stddef.h>
#include <stdint.h>

#include "master_service.h"

#define MC_PREC_HDR 12        /* u32 body length, u64 checksum */
#define MC_PREC_MAX_BODY 8192 /* a put with a 4 KiB key and 64 replicas fits */
#define MC_PREC_KEY_MAX 4096  /* MC_MASTER_KEY_MAX */
#define MC_PREC_MAX_REPS 64   /* MC_MASTER_MAX_REPLICAS */
#define MC_PREC_FILE_HDR 40

enum {
    MC_PREC_PUT = 1,     /* an object completed (its whole state) */
    MC_PREC_REMOVE = 2,  /* a completed object was erased (remove, evict, replace...) */
    MC_PREC_UNMOUNT = 3, /* a segment went: every replica on it is gone */
    MC_PREC_END = 4,  /* the last record of a snapshot (or of a replication base), with its count */
    MC_PREC_PING = 5, /* replication stream only: the leader's version and clock (master_repl.c) */
};

typedef struct {
    mc_uuid_t seg;       /* segment id, as the owner mounts it */
    uint64_t addr, size; /* the allocated range (size rounded to MC_ALLOC_ALIGN) */
} mc_prec_rep_t;

typedef struct {
    int type;
    const char *key;  /* PUT, REMOVE: NUL-terminated (decode points it at keybuf) */
    uint64_t size;    /* PUT: object bytes */
    uint64_t version; /* PUT, REMOVE: the master's mutation counter when logged */
    int soft_pin, hard_pin;
    uint64_t soft_pin_ttl_ms;
    uint64_t soft_pin_deadline_ms; /* wall clock (ms since the epoch); 0: none yet */
    uint32_t nrep;
    mc_prec_rep_t rep[MC_PREC_MAX_REPS];
    mc_uuid_t segment; /* UNMOUNT */
    uint64_t count;    /* END */
    uint64_t ping_ms;  /* PING: the leader's monotonic clock (version: its mutation counter) */
    char keybuf[MC_PREC_KEY_MAX + 1];
} mc_prec_t;

/* Encodes r as one frame into buf[0..cap). Returns the frame's length, or 0
 * when r is not a valid record (bad type, key empty or over 4096 bytes, size
 * 0, no replica or more than 64) or it does not fit. */
size_t mc_prec_encode(const mc_prec_t *r, uint8_t *buf, size_t cap);

enum { MC_PREC_OK = 0, MC_PREC_SHORT = 1, MC_PREC_BAD = 2 };
/* Decodes the frame at buf[0..len). MC_PREC_OK: *out filled, *used is the
 * frame's length. MC_PREC_SHORT: the frame runs past len (a torn tail, or read
 * more). MC_PREC_BAD: a length out of bounds, a checksum mismatch or a body
 * that does not decode; *why says which (static text). */
int mc_prec_decode(const uint8_t *buf, size_t len, mc_prec_t *out, size_t *used, const char **why);

enum { MC_PREC_FILE_LOG = 1, MC_PREC_FILE_SNAP = 2 };
/* Writes a file header: magic "MCMPERS1", u32 kind, u32 format (1), u64 seq,
 * u64 version (the mutation counter when the file was started), u64 XXH3 of
 * the 32 bytes before it. */
void mc_prec_file_header(uint8_t out[MC_PREC_FILE_HDR], int kind, uint64_t seq, uint64_t version);
/* Checks a file header of the given kind: 0 (and *seq, *version), or -1. */
int mc_prec_file_check(const uint8_t *buf, size_t len, int kind, uint64_t *seq, uint64_t *version);
#endif
