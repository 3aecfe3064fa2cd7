/* master_hold.c: held frees (master_service.h, mc_master_set_free_hold).
 *
 * With HA replication, a leader must not hand out again a range whose
 * removal a standby of its in-sync set has not applied: were that standby
 * elected, it would restore the removed key over the new key's bytes. So
 * while the replication layer says so (free_hold), mc__master_range_free
 * queues the range here with the journal position of the record that freed
 * it (the record is always logged before its ranges are freed, on the same
 * thread, so the position read at the free is that record's or a later
 * one's), and the replication layer releases the queue up to the position
 * every in-sync standby acknowledged.
 *
 * The queue is FIFO; positions are taken under different shard locks, so an
 * entry may carry a smaller position than the one before it: it is then
 * released a little late, never early. A held range has no owner (eviction
 * skips it, as parked space) and its bytes leave the usage counters at once.
 * A put that finds no room waits for a release (mc__hold_wait) on the RPC
 * loop; once a wait times out, no put waits again until a release happened,
 * so a stalled standby costs the loop one wait, not one per put.
 * Lock order: held_mu, then a segment's mu (release); the hold itself takes
 * the segment's mu and then held_mu one after the other, never nested. A
 * segment that leaves drops its held ranges (its allocator goes with it). */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "base_time.h"
#include "master_int.h"

void mc_master_set_free_hold(mc_master_t *m, int (*hold)(void *arg, uint64_t *pos), void *arg,
                             uint64_t wait_ms)
{
    if (!m->held_tail) {
        pthread_mutex_init(&m->held_mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&m->held_cv, &ca);
        pthread_condattr_destroy(&ca);
        m->held_tail = &m->held_head;
    }
    m->free_hold_arg = arg;
    m->hold_wait_ms = wait_ms;
    m->free_hold = hold;
}

int mc__hold_wait(mc_master_t *m, uint64_t size)
{
    if (!m->free_hold || !m->hold_wait_ms || atomic_load(&m->held_bytes) < size ||
        atomic_load(&m->hold_stalled))
        return 0;
    struct timespec ts = mc_deadline_ts(CLOCK_MONOTONIC, m->hold_wait_ms);
    pthread_mutex_lock(&m->held_mu);
    uint64_t gen = m->held_gen;
    int rc = 0;
    while (m->held_gen == gen && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&m->held_cv, &m->held_mu, &ts);
    int released = m->held_gen != gen;
    /* the acks stopped (a standby stalls until it is cut off): later puts do
     * not wait on the RPC loop until a release shows they flow again */
    if (!released) atomic_store(&m->hold_stalled, 1);
    pthread_mutex_unlock(&m->held_mu);
    return released;
}

int mc__hold_range(mc_master_t *m, mseg_t *s, mc_alloc_blk_t *blk)
{
    uint64_t pos = 0;
    if (!m->free_hold(m->free_hold_arg, &pos)) return 0;
    held_t *h = malloc(sizeof *h);
    if (!h) return 0; /* freed at once: a standby may be wrong, never the leader */
    pthread_mutex_lock(&s->mu);
    mc_alloc_blk_set_owner(blk, NULL); /* no owner to evict */
    uint64_t sz = mc_alloc_blk_size(blk);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_sub(&s->used, sz);
    atomic_fetch_sub(&m->allocated, sz);
    *h = (held_t){s, blk, pos, sz, NULL};
    pthread_mutex_lock(&m->held_mu);
    *m->held_tail = h;
    m->held_tail = &h->next;
    pthread_mutex_unlock(&m->held_mu);
    atomic_fetch_add(&m->held_bytes, sz);
    atomic_fetch_add(&m->held_total, 1);
    return 1;
}

uint64_t mc_master_release_held(mc_master_t *m, uint64_t upto)
{
    if (!m->held_tail) return 0;
    uint64_t bytes = 0;
    pthread_mutex_lock(&m->held_mu);
    while (m->held_head && m->held_head->pos <= upto) {
        held_t *h = m->held_head;
        m->held_head = h->next;
        if (!m->held_head) m->held_tail = &m->held_head;
        pthread_mutex_lock(&h->seg->mu);
        mc_alloc_put(h->seg->alloc, h->blk);
        pthread_mutex_unlock(&h->seg->mu);
        bytes += h->size;
        free(h);
    }
    if (bytes) {
        m->held_gen++;
        atomic_store(&m->hold_stalled, 0);
        pthread_cond_broadcast(&m->held_cv);
    }
    pthread_mutex_unlock(&m->held_mu);
    atomic_fetch_sub(&m->held_bytes, bytes);
    return bytes;
}

void mc__hold_seg_gone(mc_master_t *m, mseg_t *s)
{
    if (!m->held_tail) return;
    uint64_t bytes = 0;
    pthread_mutex_lock(&m->held_mu);
    held_t **pp = &m->held_head, *last = NULL;
    while (*pp) {
        held_t *h = *pp;
        if (h->seg == s) {
            *pp = h->next;
            bytes += h->size;
            free(h);
        } else {
            last = h;
            pp = &h->next;
        }
    }
    m->held_tail = last ? &last->next : &m->held_head;
    pthread_mutex_unlock(&m->held_mu);
    atomic_fetch_sub(&m->held_bytes, bytes);
}

uint64_t mc_master_held_bytes(mc_master_t *m)
{
    return atomic_load(&m->held_bytes);
}

uint64_t mc_master_held_total(mc_master_t *m)
{
    return atomic_load(&m->held_total);
}

void mc__hold_free(mc_master_t *m)
{
    if (!m->held_tail) return;
    while (m->held_head) { /* the allocators are destroyed wholesale */
        held_t *h = m->held_head;
        m->held_head = h->next;
        free(h);
    }
    pthread_mutex_destroy(&m->held_mu);
    pthread_cond_destroy(&m->held_cv);
}
