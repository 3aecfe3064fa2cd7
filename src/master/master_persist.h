/* master_persist.h: the master's persistence files in one directory: an
 * append-only log of index mutations, split in segments (log-<seq>.mcl), and
 * snapshots of the whole index (snap-<seq>.mcs: the state before log <seq>).
 * Records are master_persist_rec.h frames. This module knows files, not
 * objects: the core (master_recover.c) encodes records, applies replayed ones
 * and writes a snapshot's contents.
 *
 * - append: into a buffer under the log mutex; mc_persist_flush write(2)s it,
 *   and the master flushes before every reply, so a record is in the page
 *   cache (and survives a kill of the process) before the caller is answered,
 *   with one write per batch of requests rather than one per record; a thread
 *   fdatasyncs the log every second (a machine crash loses at most that).
 * - snapshot: with the whole index quiesced by the caller, fork(); the child
 *   writes the snapshot from its copy-on-write view and exits; the parent
 *   starts a new log segment at once. The snapshot becomes current by rename
 *   once the child exited 0 (mc_persist_poll), and older files are deleted.
 * - replay: the latest snapshot, then every log segment from its seq on.
 *
 * Thread rule: append, lock/unlock and want_snapshot from any thread;
 * open, replay, start, poll and close from one thread at a time (the daemon's
 * main and tick threads). Errors: 0 or a negative errno, messages in err. */
#ifndef MC_MASTER_PERSIST_H
#define MC_MASTER_PERSIST_H
#include <stddef.h>
#include <stdint.h>

#include "master_persist_rec.h"

typedef struct mc_persist mc_persist_t;

/* Creates dir (and its parents, mode 0700) when missing and takes its lock
 * file (flock): -EEXIST when another master holds it, another -errno when the
 * directory cannot be created or written. */
int mc_persist_open(const char *dir, mc_persist_t **out, char *err, size_t errlen);
const char *mc_persist_dir(const mc_persist_t *p);

typedef struct {
    /* a record in log order; a nonzero return stops the replay with that error */
    int (*apply)(const mc_prec_t *r, void *arg);
    /* the log lost records here (a bad record followed by good ones): what
     * was recorded before this point can no longer be proven */
    void (*barrier)(void *arg);
    void *arg;
} mc_persist_replay_ops_t;

typedef struct {
    uint64_t records, files, bytes;
    int have_snapshot;
    uint64_t snapshot_seq, version; /* highest version seen */
    uint64_t log_bytes;             /* log bytes after the snapshot */
    int damaged;                    /* a torn or corrupt record, header or file */
    char damage[512];               /* the first: "FILE offset N: why" */
    int ndamage;
} mc_persist_replay_stats_t;

/* Reads the latest snapshot and the log segments after it, in order, calling
 * ops for every valid record. Damage never fails the replay: a bad snapshot
 * record is skipped (snapshot records are independent); a bad log record
 * followed by valid ones calls barrier and goes on after it; a bad or short
 * tail ends that file. Leftover temporary files are removed. */
int mc_persist_replay(mc_persist_t *p, const mc_persist_replay_ops_t *ops,
                      mc_persist_replay_stats_t *st);

/* Opens a new log segment after every existing file and starts the fsync
 * thread. version goes into the segment's header. */
int mc_persist_start(mc_persist_t *p, uint64_t version, char *err, size_t errlen);

/* Appends one encoded frame to a buffer of pending frames (written by
 * mc_persist_flush, or when 4 MiB are pending). A failure is logged (once
 * per 10 s) and returned; the caller goes on in memory. */
int mc_persist_append(mc_persist_t *p, const void *frame, size_t len);
/* Writes the pending frames (write(2), retried until whole): they are then in
 * the page cache and survive a kill of the process. Called before any reply
 * leaves the master (the RPC loop after each batch of requests, the admin
 * server after a mutating request) and by the tick; p NULL: nothing. */
int mc_persist_flush(mc_persist_t *p);

/* The log mutex, for a caller that quiesces the index around a snapshot. */
void mc_persist_lock(mc_persist_t *p);
void mc_persist_unlock(mc_persist_t *p);

/* 1 when the log after the current snapshot has passed max(min bytes,
 * twice the last snapshot) and no snapshot is running (or failed in the last
 * minute). min bytes: MC_MASTER_PERSIST_COMPACT_BYTES (default 64 MiB). */
int mc_persist_want_snapshot(mc_persist_t *p, uint64_t now_ms);

typedef struct mc_persist_snap mc_persist_snap_t;
/* Child side: adds one frame to the snapshot being written (buffered). */
int mc_persist_snap_add(mc_persist_snap_t *w, const void *frame, size_t len);

/* Caller holds the log mutex (mc_persist_lock) and has quiesced every writer.
 * Starts a new log segment, then forks: the child calls fill(w, arg), which
 * must not take locks nor allocate, adds the end record, syncs and exits.
 * Returns 0 when the child runs (or -errno: no snapshot, log unchanged). */
int mc_persist_snapshot_locked(mc_persist_t *p, uint64_t version,
                               int (*fill)(mc_persist_snap_t *w, void *arg), void *arg);

/* Tick: reaps a finished snapshot child (rename, directory sync, delete what
 * it replaces; a failed child is logged and its file removed). */
void mc_persist_poll(mc_persist_t *p, uint64_t now_ms);

/* Waits for a running snapshot child, syncs and closes the log, releases the
 * lock. NULL is a no-op. */
void mc_persist_close(mc_persist_t *p);
#endif
