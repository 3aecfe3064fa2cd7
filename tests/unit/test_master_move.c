/* Unit tests of the master's move tasks (master_move.c) with a fake clock and
 * fake segments (the core never touches data): a drained segment's objects
 * get tasks for its owner, a completed task swaps the replica (source range
 * freed, or parked under a read lease), failures are retried then fail the
 * job, no room elsewhere fails it at once, a removal or an upsert during a
 * move, the per-client bound, the deadline and a stopped job. Run under
 * ASan/UBSan: a task's ranges are never used after their segment went. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "master_move.h"
#include "master_service.h"

#define KiB 1024ull
#define MiB (1024ull * 1024ull)
#define A_BASE (1ull << 32)
#define B_BASE (2ull << 32)

static mc_uuid_t CA = {1, 1}, CB = {2, 2};

static int mc__uuid_eq_t(mc_uuid_t a, mc_uuid_t b)
{
    return a.hi == b.hi && a.lo == b.lo;
}

static void mount(mc_master_t *m, mc_uuid_t client, uint64_t idlo, const char *name, uint64_t base,
                  uint64_t size)
{
    mc_segment_t s;
    memset(&s, 0, sizeof s);
    s.id = (mc_uuid_t){client.hi + 1000, idlo};
    snprintf(s.name, sizeof s.name, "%s", name);
    snprintf(s.te_endpoint, sizeof s.te_endpoint, "te-%s", name);
    snprintf(s.protocol, sizeof s.protocol, "tcp");
    s.base = base;
    s.size = size;
    assert_int_equal(mc_master_mount_segment(m, &s, client, 0), 0);
}

static mc_master_t *two_segments(uint64_t b_size)
{
    mc_master_t *m;
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    cfg.default_kv_lease_ttl_ms = 1000;
    cfg.client_ttl_ms = 1000000000; /* the fake clock never expires anyone */
    assert_int_equal(mc_master_new(&cfg, &m), 0);
    mount(m, CA, 1, "A", A_BASE, 16 * MiB);
    mount(m, CB, 1, "B", B_BASE, b_size);
    return m;
}

static void put_on(mc_master_t *m, const char *key, uint64_t size, const char *seg, int pin)
{
    mc_replicate_config_t c;
    memset(&c, 0, sizeof c);
    c.replica_num = 1;
    c.with_hard_pin = pin;
    const char *pref = seg;
    c.npreferred = 1;
    c.preferred_segments = &pref;
    mc_replica_t *r = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_put_start(m, CA, key, size, &c, 0, &r, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].endpoint, seg[0] == 'A' ? "te-A" : "te-B");
    free(r);
    assert_int_equal(mc_master_put_end(m, CA, key, 0), 0);
}

/* The one replica of key: its address (0 when there is none to read). */
static uint64_t addr_of(mc_master_t *m, const char *key, uint64_t now, char ep[MC_NAME_MAX])
{
    mc_replica_t *r = NULL;
    size_t n = 0;
    if (mc_master_get_replicas(m, key, now, &r, &n, NULL) != 0) return 0;
    assert_int_equal(n, 1);
    uint64_t a = r[0].addr;
    if (ep) snprintf(ep, MC_NAME_MAX, "%s", r[0].endpoint);
    free(r);
    return a;
}

typedef struct {
    uint64_t a_used;
    int a_draining;
} seg_a_t;

static void seg_a_visit(const mc_master_segment_info_t *si, void *arg)
{
    seg_a_t *q = arg;
    if (strcmp(si->seg.name, "A") == 0) q->a_used = si->used_bytes;
}

static uint64_t used_a(mc_master_t *m)
{
    seg_a_t q = {0, 0};
    mc_master_each_segment(m, seg_a_visit, &q);
    return q.a_used;
}

static void test_move_swaps_replicas(void **st)
{
    (void)st;
    mc_master_t *m = two_segments(64 * MiB);
    put_on(m, "k0", 4 * KiB, "A", 0);
    put_on(m, "k1", 1 * MiB, "A", 1); /* hard-pinned objects move too */
    put_on(m, "k2", 100, "A", 0);
    put_on(m, "elsewhere", 4 * KiB, "B", 0);
    uint64_t now = 10000; /* the put's leases are over */
    uint64_t job;
    assert_int_equal(mc_master_set_draining(m, "A", 1, NULL), 0);
    assert_int_equal(mc_master_move_start(m, "A", &job), 0);
    assert_false(mc_master_tasks_pending(m, CA));
    mc_master_tick(m, now);
    assert_true(mc_master_tasks_pending(m, CA));
    assert_false(mc_master_tasks_pending(m, CB)); /* the owner of the source runs them */
    mc_master_task_t *t = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_task_fetch(m, CB, 8, now, &t, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(mc_master_task_fetch(m, CA, 8, now, &t, &n), 0);
    assert_int_equal(n, 3);
    assert_false(mc_master_tasks_pending(m, CA));
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(t[i].dst_endpoint, "te-B");
        assert_true(t[i].src_addr >= A_BASE && t[i].src_addr < A_BASE + 16 * MiB);
        assert_true(t[i].dst_addr >= B_BASE && t[i].dst_addr < B_BASE + 64 * MiB);
        /* until the task completes readers get the source */
        char ep[MC_NAME_MAX];
        assert_int_equal(addr_of(m, t[i].key, now, ep), t[i].src_addr);
        assert_string_equal(ep, "te-A");
    }
    /* another client cannot complete them */
    assert_int_equal(mc_master_task_complete(m, CB, t[0].id, 0, now), MC_ERR_ILLEGAL_CLIENT);
    /* k read just now: its source range stays allocated until the lease ends */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(mc_master_task_complete(m, CA, t[i].id, 0, now), 0);
    assert_int_equal(mc_master_task_complete(m, CA, t[0].id, 0, now), MC_ERR_OBJECT_NOT_FOUND);
    for (size_t i = 0; i < n; i++) {
        char ep[MC_NAME_MAX];
        assert_int_equal(addr_of(m, t[i].key, now, ep), t[i].dst_addr);
        assert_string_equal(ep, "te-B");
    }
    assert_true(used_a(m) > 0); /* parked under the leases */
    mc_master_move_info_t info;
    assert_int_equal(mc_master_move_info(m, job, &info), 0);
    assert_int_equal(info.state, MC_MOVE_RUNNING);
    assert_int_equal(info.moved_objects, 3);
    assert_int_equal(info.moved_bytes, 4 * KiB + 1 * MiB + 100);
    assert_int_equal(info.in_flight, 0);
    mc_master_tick(m, now + 5000); /* past the leases: the sources are freed */
    assert_int_equal(used_a(m), 0);
    /* the moved objects are ordinary objects again: removable, evictable */
    assert_int_equal(mc_master_remove(m, "k0", 0, now + 5000), 0);
    mc_master_tasks_free(t, n);
    mc_master_move_forget(m, job);
    mc_master_free(m);
}

static void test_move_failures_then_fail(void **st)
{
    (void)st;
    mc_master_t *m = two_segments(64 * MiB);
    put_on(m, "bad", 4 * KiB, "A", 0);
    uint64_t now = 10000, job;
    assert_int_equal(mc_master_move_start(m, "A", &job), 0);
    for (int i = 0; i < 3; i++) {
        mc_master_tick(m, now);
        mc_master_task_t *t = NULL;
        size_t n = 0;
        assert_int_equal(mc_master_task_fetch(m, CA, 8, now, &t, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(mc_master_task_complete(m, CA, t[0].id, MC_ERR_TRANSFER_FAIL, now), 0);
        mc_master_tasks_free(t, n);
        now += 100;
    }
    mc_master_move_info_t info;
    assert_int_equal(mc_master_move_info(m, job, &info), 0);
    assert_int_equal(info.state, MC_MOVE_FAILED);
    assert_int_equal(info.failed_tasks, 3);
    assert_non_null(strstr(info.message, "'bad' was not moved after 3 tries"));
    mc_master_tick(m, now);
    assert_false(mc_master_tasks_pending(m, CA));        /* a failed job plans nothing */
    assert_true(addr_of(m, "bad", now, NULL) >= A_BASE); /* intact, on its source */
    mc_master_move_forget(m, job);
    mc_master_free(m);
}

static void test_move_no_room(void **st)
{
    (void)st;
    mc_master_t *m = two_segments(1 * MiB);
    put_on(m, "big", 2 * MiB, "A", 0);
    uint64_t now = 10000, job;
    assert_int_equal(mc_master_set_draining(m, "A", 1, NULL), 0);
    assert_int_equal(mc_master_move_start(m, "A", &job), 0);
    mc_master_tick(m, now);
    mc_master_move_info_t info;
    assert_int_equal(mc_master_move_info(m, job, &info), 0);
    assert_int_equal(info.state, MC_MOVE_FAILED);
    assert_non_null(strstr(info.message, "no room elsewhere"));
    assert_non_null(strstr(info.message, "'big'"));
    assert_true(addr_of(m, "big", now, NULL) >= A_BASE);
    mc_master_move_forget(m, job);
    mc_master_free(m);
}

static void test_move_object_changes(void **st)
{
    (void)st;
    mc_master_t *m = two_segments(64 * MiB);
    put_on(m, "gone", 4 * KiB, "A", 0);
    put_on(m, "busy", 4 * KiB, "A", 0);
    uint64_t now = 10000, job;
    assert_int_equal(mc_master_move_start(m, "A", &job), 0);
    mc_master_tick(m, now);
    mc_master_task_t *t = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_task_fetch(m, CA, 8, now, &t, &n), 0);
    assert_int_equal(n, 2);
    /* a move keeps the bytes from changing: an upsert finds the object busy */
    mc_replicate_config_t c;
    memset(&c, 0, sizeof c);
    c.replica_num = 1;
    mc_replica_t *r = NULL;
    size_t nr = 0;
    assert_int_equal(mc_master_upsert_start(m, CB, "busy", 4 * KiB, &c, now, &r, &nr),
                     MC_ERR_OBJECT_REPLICA_BUSY);
    /* a removal goes ahead; its task then ends without touching it */
    assert_int_equal(mc_master_remove(m, "gone", 1, now), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(mc_master_task_complete(m, CA, t[i].id, 0, now), 0);
    assert_int_equal(addr_of(m, "gone", now, NULL), 0);
    mc_master_move_info_t info;
    assert_int_equal(mc_master_move_info(m, job, &info), 0);
    assert_int_equal(info.moved_objects, 1);
    assert_int_equal(info.failed_tasks, 0); /* a removed object is no failure */
    assert_true(addr_of(m, "busy", now, NULL) >= B_BASE);
    mc_master_tasks_free(t, n);
    mc_master_move_forget(m, job);
    mc_master_free(m);
}

static void test_move_bounds_deadline_stop(void **st)
{
    (void)st;
    setenv("MC_MASTER_MOVE_CLIENT_INFLIGHT", "2", 1);
    setenv("MC_MASTER_MOVE_TIMEOUT_MS", "1000", 1);
    mc_master_t *m = two_segments(64 * MiB);
    unsetenv("MC_MASTER_MOVE_CLIENT_INFLIGHT");
    unsetenv("MC_MASTER_MOVE_TIMEOUT_MS");
    char key[32];
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "o%d", i);
        put_on(m, key, 4 * KiB, "A", 0);
    }
    uint64_t now = 10000, job;
    assert_int_equal(mc_master_move_start(m, "A", &job), 0);
    mc_master_tick(m, now);
    mc_master_task_t *t = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_task_fetch(m, CA, 8, now, &t, &n), 0);
    assert_int_equal(n, 2); /* at most 2 in flight for one client */
    mc_master_task_t *t2 = NULL;
    size_t n2 = 0;
    assert_int_equal(mc_master_task_fetch(m, CA, 8, now, &t2, &n2), 0);
    assert_int_equal(n2, 0);
    /* nobody reports: past the deadline the tasks are revoked (a failure each) */
    mc_master_tick(m, now + 5000);
    assert_int_equal(mc_master_task_complete(m, CA, t[0].id, 0, now + 5000),
                     MC_ERR_OBJECT_NOT_FOUND);
    mc_master_move_info_t info;
    assert_int_equal(mc_master_move_info(m, job, &info), 0);
    assert_true(info.failed_tasks >= 2);
    assert_int_equal(addr_of(m, t[0].key, now + 5000, NULL) >= A_BASE, 1);
    /* a stopped job: its unfetched tasks are revoked, nothing new is planned */
    mc_master_move_stop(m, job);
    mc_master_tick(m, now + 5001);
    assert_false(mc_master_tasks_pending(m, CA));
    assert_int_equal(mc_master_move_info(m, job, &info), 0);
    assert_int_equal(info.state, MC_MOVE_STOPPED);
    assert_int_equal(info.in_flight, 0);
    /* the targets of the revoked tasks are released once no write can land */
    mc_master_tick(m, now + 60000);
    mc_master_tasks_free(t, n);
    mc_master_move_forget(m, job);
    mc_master_free(m);
}

static void test_move_target_segment_unmounted(void **st)
{
    (void)st;
    mc_master_t *m = two_segments(64 * MiB);
    put_on(m, "k", 4 * KiB, "A", 0);
    uint64_t now = 10000, job;
    assert_int_equal(mc_master_move_start(m, "A", &job), 0);
    mc_master_tick(m, now);
    mc_master_task_t *t = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_task_fetch(m, CA, 8, now, &t, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(mc_master_unmount_segment(m, (mc_uuid_t){CB.hi + 1000, 1}, CB), 0);
    /* the client's success cannot be used: the target is gone */
    assert_int_equal(mc_master_task_complete(m, CA, t[0].id, 0, now), 0);
    assert_true(addr_of(m, "k", now, NULL) >= A_BASE);
    mc_master_tick(m, now + 100);
    mc_master_move_info_t info;
    assert_int_equal(mc_master_move_info(m, job, &info), 0);
    assert_int_equal(info.state, MC_MOVE_FAILED); /* and now there is no room elsewhere */
    mc_master_tasks_free(t, n);
    mc_master_move_forget(m, job);
    mc_master_free(m);
}

static void test_move_waits_for_put_end(void **st)
{
    (void)st;
    mc_master_t *m = two_segments(64 * MiB);
    mc_replicate_config_t c;
    memset(&c, 0, sizeof c);
    c.replica_num = 1;
    const char *pref = "A";
    c.npreferred = 1;
    c.preferred_segments = &pref;
    mc_replica_t *r = NULL;
    size_t n = 0;
    uint64_t now = 10000, job;
    assert_int_equal(mc_master_put_start(m, CA, "w", 4 * KiB, &c, now, &r, &n), 0);
    free(r);
    assert_int_equal(mc_master_move_start(m, "A", &job), 0);
    mc_master_tick(m, now);
    assert_false(mc_master_tasks_pending(m, CA)); /* being written: not moved yet */
    assert_int_equal(mc_master_put_end(m, CA, "w", now), 0);
    mc_master_tick(m, now + 100);
    assert_true(mc_master_tasks_pending(m, CA));
    mc_master_task_t *t = NULL;
    assert_int_equal(mc_master_task_fetch(m, CA, 8, now + 100, &t, &n), 0);
    assert_int_equal(n, 1);
    /* a repeated put_end or a late revoke by the writer leaves the move alone */
    assert_int_equal(mc_master_put_end(m, CA, "w", now + 100), 0);
    assert_int_equal(mc_master_put_revoke(m, CA, "w"), MC_ERR_INVALID_WRITE);
    assert_int_equal(mc_master_task_complete(m, CA, t[0].id, 0, now + 100), 0);
    assert_int_equal(addr_of(m, "w", now + 100, NULL), t[0].dst_addr);
    mc_master_tasks_free(t, n);
    mc_master_move_forget(m, job);
    mc_master_free(m);
}

/* ---- copy / move tasks of upstream's API ---- */

static mc_uuid_t CC = {3, 3};

static mc_master_t *three_segments(uint64_t c_size)
{
    mc_master_t *m = two_segments(64 * MiB);
    mount(m, CC, 1, "C", 3ull << 32, c_size);
    return m;
}

/* The endpoints of key's replicas, sorted, joined by ',' into buf. */
static const char *eps_of(mc_master_t *m, const char *key, uint64_t now, char *buf, size_t cap)
{
    mc_replica_t *r = NULL;
    size_t n = 0;
    buf[0] = 0;
    if (mc_master_get_replicas(m, key, now, &r, &n, NULL) != 0) return buf;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(r[j].endpoint, r[i].endpoint) < 0) {
                mc_replica_t x = r[i];
                r[i] = r[j];
                r[j] = x;
            }
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, cap - l, "%s%s", i ? "," : "", r[i].endpoint);
    }
    free(r);
    return buf;
}

static int status_of(mc_master_t *m, mc_uuid_t id)
{
    mc_master_task_info_t ti;
    if (mc_master_task_query(m, id, &ti) != 0) return -1;
    return ti.status;
}

static void test_task_copy(void **st)
{
    (void)st;
    mc_master_t *m = three_segments(64 * MiB);
    put_on(m, "k", 64 * KiB, "A", 0);
    uint64_t now = 10000;
    char eps[256];
    const char *tg[] = {"B", "te-C", "A", "B"}; /* names or endpoints; A has it; B twice */
    mc_uuid_t id;
    assert_int_equal(mc_master_copy_task(m, "k", tg, 4, now, &id), 0);
    assert_true(id.hi || id.lo);
    assert_int_equal((id.hi >> 52) & 0xF, 4); /* a version 4 UUID (its 7th byte) */
    mc_master_task_info_t ti;
    assert_int_equal(mc_master_task_query(m, id, &ti), 0);
    assert_int_equal(ti.type, MC_TASK_REPLICA_COPY);
    assert_int_equal(ti.status, MC_TASK_PENDING);
    assert_true(ti.created_ms > 1600000000000ll && ti.updated_ms >= ti.created_ms);
    assert_true(mc__uuid_eq_t(ti.assigned_client, CA));
    assert_true(mc_master_tasks_pending(m, CA));
    mc_master_task_t *t = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_task_fetch(m, CA, 8, now, &t, &n), 0);
    assert_int_equal(n, 2); /* B and C; A already holds it */
    assert_int_equal(status_of(m, id), MC_TASK_PROCESSING);
    /* until done, readers see the source only */
    assert_string_equal(eps_of(m, "k", now, eps, sizeof eps), "te-A");
    assert_int_equal(mc_master_task_complete(m, CA, t[0].id, 0, now), 0);
    assert_int_equal(status_of(m, id), MC_TASK_PROCESSING);
    assert_int_equal(mc_master_task_complete(m, CA, t[1].id, 0, now), 0);
    assert_int_equal(status_of(m, id), MC_TASK_SUCCESS);
    assert_string_equal(eps_of(m, "k", now, eps, sizeof eps), "te-A,te-B,te-C");
    mc_master_tasks_free(t, n);
    /* a copy to segments that hold it already succeeds at once, changing nothing */
    const char *tb[] = {"B"};
    assert_int_equal(mc_master_copy_task(m, "k", tb, 1, now, &id), 0);
    assert_int_equal(status_of(m, id), MC_TASK_SUCCESS);
    assert_false(mc_master_tasks_pending(m, CA));
    /* the replicas are real: removing the object frees them all */
    assert_int_equal(mc_master_remove(m, "k", 1, now + 100000), 0);
    assert_int_equal(used_a(m), 0);
    mc_master_free(m);
}

static void test_task_move(void **st)
{
    (void)st;
    mc_master_t *m = three_segments(64 * MiB);
    put_on(m, "k", 64 * KiB, "A", 0);
    uint64_t now = 10000;
    char eps[256];
    mc_uuid_t id;
    assert_int_equal(mc_master_move_task(m, "k", "A", "C", now, &id), 0);
    mc_master_task_t *t = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_task_fetch(m, CA, 8, now, &t, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(t[0].dst_endpoint, "te-C");
    /* the object is busy meanwhile: another task of it fails */
    mc_uuid_t id2;
    const char *tb[] = {"B"};
    assert_int_equal(mc_master_copy_task(m, "k", tb, 1, now, &id2), 0);
    mc_master_task_info_t ti;
    assert_int_equal(mc_master_task_query(m, id2, &ti), 0);
    assert_int_equal(ti.status, MC_TASK_FAILED);
    assert_non_null(strstr(ti.message, "OBJECT_HAS_REPLICATION_TASK"));
    assert_int_equal(mc_master_task_complete(m, CA, t[0].id, 0, now), 0);
    mc_master_tasks_free(t, n);
    assert_int_equal(status_of(m, id), MC_TASK_SUCCESS);
    assert_string_equal(eps_of(m, "k", now, eps, sizeof eps), "te-C");
    /* a move onto a segment holding a replica drops the source one */
    const char *ta[] = {"A"};
    assert_int_equal(mc_master_copy_task(m, "k", ta, 1, now, &id), 0);
    assert_int_equal(mc_master_task_fetch(m, CC, 8, now, &t, &n), 0); /* C's owner copies */
    assert_int_equal(n, 1);
    assert_int_equal(mc_master_task_complete(m, CC, t[0].id, 0, now), 0);
    mc_master_tasks_free(t, n);
    assert_string_equal(eps_of(m, "k", now, eps, sizeof eps), "te-A,te-C");
    assert_int_equal(mc_master_move_task(m, "k", "te-C", "A", now + 100000, &id), 0);
    assert_int_equal(status_of(m, id), MC_TASK_SUCCESS);
    assert_string_equal(eps_of(m, "k", now + 100000, eps, sizeof eps), "te-A");
    mc_master_free(m);
}

static void test_task_errors(void **st)
{
    (void)st;
    mc_master_t *m = three_segments(16 * KiB); /* C is small */
    put_on(m, "k", 64 * KiB, "A", 0);
    uint64_t now = 10000;
    mc_uuid_t id;
    const char *none[] = {"nowhere"}, *b[] = {"B"}, *c[] = {"C"};
    assert_int_equal(mc_master_copy_task(m, "k", b, 0, now, &id), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_master_copy_task(m, "missing", b, 1, now, &id), MC_ERR_OBJECT_NOT_FOUND);
    assert_int_equal(mc_master_copy_task(m, "k", none, 1, now, &id), MC_ERR_INVALID_PARAMS);
    assert_true(id.hi == 0 && id.lo == 0);
    assert_int_equal(mc_master_move_task(m, "missing", "A", "B", now, &id),
                     MC_ERR_OBJECT_NOT_FOUND);
    assert_int_equal(mc_master_move_task(m, "k", "A", "A", now, &id), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_master_move_task(m, "k", "A", "te-A", now, &id), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_master_move_task(m, "k", "A", "nowhere", now, &id), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_master_move_task(m, "k", "B", "C", now, &id), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_master_task_query(m, (mc_uuid_t){5, 5}, &(mc_master_task_info_t){0}),
                     MC_ERR_TASK_NOT_FOUND);
    /* a draining target */
    assert_int_equal(mc_master_set_draining(m, "B", 1, NULL), 0);
    assert_int_equal(mc_master_copy_task(m, "k", b, 1, now, &id),
                     MC_ERR_UNAVAILABLE_IN_CURRENT_STATUS);
    assert_int_equal(mc_master_move_task(m, "k", "A", "B", now, &id),
                     MC_ERR_UNAVAILABLE_IN_CURRENT_STATUS);
    assert_int_equal(mc_master_set_draining(m, "B", 0, NULL), 0);
    /* no room on the target: the task is made, and FAILED */
    assert_int_equal(mc_master_copy_task(m, "k", c, 1, now, &id), 0);
    mc_master_task_info_t ti;
    assert_int_equal(mc_master_task_query(m, id, &ti), 0);
    assert_int_equal(ti.status, MC_TASK_FAILED);
    assert_non_null(strstr(ti.message, "NO_AVAILABLE_HANDLE"));
    /* the client reports an error: FAILED with the reason, the object unchanged */
    assert_int_equal(mc_master_copy_task(m, "k", b, 1, now, &id), 0);
    mc_master_task_t *t = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_task_fetch(m, CA, 8, now, &t, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(mc_master_task_complete(m, CA, t[0].id, MC_ERR_TRANSFER_FAIL, now), 0);
    mc_master_tasks_free(t, n);
    assert_int_equal(mc_master_task_query(m, id, &ti), 0);
    assert_int_equal(ti.status, MC_TASK_FAILED);
    assert_non_null(strstr(ti.message, "-800"));
    char eps[256];
    assert_string_equal(eps_of(m, "k", now, eps, sizeof eps), "te-A");
    /* nobody fetches: past the budget the task fails and its target is freed */
    assert_int_equal(mc_master_move_task(m, "k", "A", "B", now, &id), 0);
    mc_master_tick(m, now + 10000000);
    assert_int_equal(status_of(m, id), MC_TASK_FAILED);
    assert_string_equal(eps_of(m, "k", now, eps, sizeof eps), "te-A");
    mc_master_free(m);
}

static void test_task_history_and_limit(void **st)
{
    (void)st;
    setenv("MC_MASTER_TASK_HISTORY", "2", 1);
    setenv("MC_MASTER_TASK_PENDING_MAX", "1", 1);
    mc_master_t *m = three_segments(64 * MiB);
    unsetenv("MC_MASTER_TASK_HISTORY");
    unsetenv("MC_MASTER_TASK_PENDING_MAX");
    put_on(m, "k", 4 * KiB, "A", 0);
    put_on(m, "j", 4 * KiB, "A", 0);
    uint64_t now = 10000;
    mc_uuid_t id[3], p;
    const char *a[] = {"A"}, *b[] = {"B"};
    for (int i = 0; i < 3; i++) /* finished at once */
        assert_int_equal(mc_master_copy_task(m, "k", a, 1, now, &id[i]), 0);
    assert_int_equal(status_of(m, id[0]), -1); /* pruned: only the last 2 are kept */
    assert_int_equal(status_of(m, id[1]), MC_TASK_SUCCESS);
    assert_int_equal(status_of(m, id[2]), MC_TASK_SUCCESS);
    assert_int_equal(mc_master_copy_task(m, "k", b, 1, now, &p), 0);
    assert_int_equal(status_of(m, p), MC_TASK_PENDING);
    assert_int_equal(mc_master_copy_task(m, "j", b, 1, now, &id[0]),
                     MC_ERR_TASK_PENDING_LIMIT_EXCEEDED);
    mc_master_free(m); /* a master freed with tasks in flight frees them */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_move_swaps_replicas),
        cmocka_unit_test(test_move_failures_then_fail),
        cmocka_unit_test(test_move_no_room),
        cmocka_unit_test(test_move_object_changes),
        cmocka_unit_test(test_move_bounds_deadline_stop),
        cmocka_unit_test(test_move_target_segment_unmounted),
        cmocka_unit_test(test_move_waits_for_put_end),
        cmocka_unit_test(test_task_copy),
        cmocka_unit_test(test_task_move),
        cmocka_unit_test(test_task_errors),
        cmocka_unit_test(test_task_history_and_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
