/* Unit tests of the master's persistence: the record codec (round trips,
 * every truncation and every flipped byte refused), and the core with a real
 * persistence directory: objects restored when their segment remounts, bad
 * remounts (ranges outside the segment or overlapping) refused per entry,
 * removals and unmounts replayed, a torn tail and a corrupt record, the grace
 * period, and a snapshot written by the forked child then replayed. The core
 * runs with a fake clock; the directory is a fresh mkdtemp each test. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "master_move.h"
#include "master_persist.h"
#include "master_persist_rec.h"
#include "master_service.h"

static mc_uuid_t CA = {1, 1};
static const mc_uuid_t SEG = {77, 1};

/* ---- codec ---- */

static mc_prec_t *mkput(const char *key, uint32_t nrep)
{
    mc_prec_t *r = calloc(1, sizeof *r);
    r->type = MC_PREC_PUT;
    r->key = key;
    r->size = 1000;
    r->version = 42;
    r->soft_pin = 1;
    r->soft_pin_ttl_ms = 5000;
    r->soft_pin_deadline_ms = 1700000000000ull;
    r->nrep = nrep;
    for (uint32_t i = 0; i < nrep; i++)
        r->rep[i] = (mc_prec_rep_t){{i + 1, i + 2}, 0x1000 * (i + 1), 1024};
    return r;
}

static void test_codec_roundtrip(void **state)
{
    (void)state;
    uint8_t buf[MC_PREC_HDR + MC_PREC_MAX_BODY];
    mc_prec_t *in = mkput("key/1", 3), *out = malloc(sizeof *out);
    size_t n = mc_prec_encode(in, buf, sizeof buf), used;
    const char *why;
    assert_true(n > MC_PREC_HDR);
    assert_int_equal(mc_prec_decode(buf, n, out, &used, &why), MC_PREC_OK);
    assert_int_equal(used, n);
    assert_string_equal(out->key, "key/1");
    assert_int_equal(out->size, 1000);
    assert_int_equal(out->version, 42);
    assert_int_equal(out->soft_pin, 1);
    assert_int_equal(out->hard_pin, 0);
    assert_int_equal(out->soft_pin_ttl_ms, 5000);
    assert_int_equal(out->soft_pin_deadline_ms, 1700000000000ull);
    assert_int_equal(out->nrep, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(out->rep[i].seg.hi, i + 1);
        assert_int_equal(out->rep[i].seg.lo, i + 2);
        assert_int_equal(out->rep[i].addr, 0x1000 * (i + 1));
        assert_int_equal(out->rep[i].size, 1024);
    }
    /* every truncation is SHORT, every flipped byte is refused */
    for (size_t k = 0; k < n; k++)
        assert_int_equal(mc_prec_decode(buf, k, out, &used, &why), MC_PREC_SHORT);
    for (size_t k = 0; k < n; k++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[k] ^= (uint8_t)(1u << bit);
            assert_int_not_equal(mc_prec_decode(buf, n, out, &used, &why), MC_PREC_OK);
            buf[k] ^= (uint8_t)(1u << bit);
        }
    }
    /* other types */
    mc_prec_t r;
    memset(&r, 0, sizeof r);
    r.type = MC_PREC_REMOVE;
    r.key = "gone";
    r.version = 7;
    n = mc_prec_encode(&r, buf, sizeof buf);
    assert_int_equal(mc_prec_decode(buf, n, out, &used, &why), MC_PREC_OK);
    assert_int_equal(out->type, MC_PREC_REMOVE);
    assert_string_equal(out->key, "gone");
    assert_int_equal(out->version, 7);
    r.type = MC_PREC_UNMOUNT;
    r.segment = SEG;
    n = mc_prec_encode(&r, buf, sizeof buf);
    assert_int_equal(mc_prec_decode(buf, n, out, &used, &why), MC_PREC_OK);
    assert_int_equal(out->type, MC_PREC_UNMOUNT);
    assert_int_equal(out->segment.hi, 77);
    /* refused by the encoder */
    in->nrep = 0;
    assert_int_equal(mc_prec_encode(in, buf, sizeof buf), 0);
    in->nrep = MC_PREC_MAX_REPS + 1;
    assert_int_equal(mc_prec_encode(in, buf, sizeof buf), 0);
    in->nrep = 1;
    in->key = "";
    assert_int_equal(mc_prec_encode(in, buf, sizeof buf), 0);
    in->key = "k";
    assert_int_equal(mc_prec_encode(in, buf, 20), 0); /* does not fit */
    r.type = 99;
    assert_int_equal(mc_prec_encode(&r, buf, sizeof buf), 0);
    /* a longest put fits the body bound */
    char *big = malloc(MC_PREC_KEY_MAX + 1);
    memset(big, 'k', MC_PREC_KEY_MAX);
    big[MC_PREC_KEY_MAX] = '\0';
    mc_prec_t *b = mkput(big, MC_PREC_MAX_REPS);
    n = mc_prec_encode(b, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(mc_prec_decode(buf, n, out, &used, &why), MC_PREC_OK);
    assert_int_equal(strlen(out->key), MC_PREC_KEY_MAX);
    /* file headers */
    uint8_t h[MC_PREC_FILE_HDR];
    uint64_t seq, ver;
    mc_prec_file_header(h, MC_PREC_FILE_LOG, 9, 1234);
    assert_int_equal(mc_prec_file_check(h, sizeof h, MC_PREC_FILE_LOG, &seq, &ver), 0);
    assert_int_equal(seq, 9);
    assert_int_equal(ver, 1234);
    assert_int_equal(mc_prec_file_check(h, sizeof h, MC_PREC_FILE_SNAP, &seq, &ver), -1);
    h[20] ^= 1;
    assert_int_equal(mc_prec_file_check(h, sizeof h, MC_PREC_FILE_LOG, &seq, &ver), -1);
    free(big);
    free(b);
    free(in);
    free(out);
}

/* ---- the core with a directory ---- */

static char g_dir[256];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/mc_persist_test.XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *e;
        char p[600];
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') {
                snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(g_dir);
    return 0;
}

typedef struct {
    mc_master_t *m;
    mc_persist_t *p;
} mp_t;

static mp_t mp_open(uint64_t now)
{
    mp_t x;
    char err[512];
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    cfg.client_ttl_ms = 1000;
    assert_int_equal(mc_master_new(&cfg, &x.m), 0);
    int rc = mc_persist_open(g_dir, &x.p, err, sizeof err);
    if (rc) fail_msg("%s", err);
    rc = mc_master_persist_attach(x.m, x.p, now, err, sizeof err);
    if (rc) fail_msg("%s", err);
    return x;
}

/* A kill: nothing is flushed beyond what write(2) already did. */
static void mp_close(mp_t *x)
{
    mc_master_free(x->m);
    mc_persist_close(x->p);
}

static mc_segment_t segdesc(mc_uuid_t id, uint64_t base, uint64_t size)
{
    mc_segment_t s;
    memset(&s, 0, sizeof s);
    s.id = id;
    snprintf(s.name, sizeof s.name, "seg-%llu", (unsigned long long)id.hi);
    snprintf(s.te_endpoint, sizeof s.te_endpoint, "%s", s.name);
    snprintf(s.protocol, sizeof s.protocol, "tcp");
    s.base = base;
    s.size = size;
    return s;
}

static int put(mc_master_t *m, const char *key, uint64_t size, uint64_t now, uint64_t *addr)
{
    mc_replicate_config_t c;
    memset(&c, 0, sizeof c);
    c.replica_num = 1;
    mc_replica_t *r = NULL;
    size_t n = 0;
    int rc = mc_master_put_start(m, CA, key, size, &c, now, &r, &n);
    if (rc == 0 && addr) *addr = r[0].addr;
    free(r);
    return rc ? rc : mc_master_put_end(m, CA, key, now);
}

static int found(mc_master_t *m, const char *key, uint64_t now, uint64_t *addr)
{
    mc_replica_t *r = NULL;
    size_t n = 0;
    int rc = mc_master_get_replicas(m, key, now, &r, &n, NULL);
    if (rc == 0 && addr) *addr = r[0].addr;
    free(r);
    return rc == 0;
}

static uint64_t keys(mc_master_t *m)
{
    mc_master_stats_t st;
    mc_master_get_stats(m, &st);
    return st.key_count;
}

static void test_restore_on_remount(void **state)
{
    (void)state;
    mp_t x = mp_open(1000);
    mc_segment_t s = segdesc(SEG, 0x100000, 1 << 20);
    assert_int_equal(mc_master_mount_segment(x.m, &s, CA, 1000), 0);
    uint64_t a[20];
    char k[32];
    for (int i = 0; i < 20; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(put(x.m, k, 1000 + (uint64_t)i, 1000, &a[i]), 0);
    }
    assert_int_equal(mc_master_remove(x.m, "k3", 1, 1000), 0);
    mc_replica_t *r;
    size_t n;
    /* an upsert of another size replaces k4; an unfinished put of k5 is not logged */
    mc_replicate_config_t c = {.replica_num = 1};
    assert_int_equal(mc_master_upsert_start(x.m, CA, "k4", 3000, &c, 1000, &r, &n), 0);
    uint64_t a4 = r[0].addr;
    free(r);
    assert_int_equal(mc_master_put_end(x.m, CA, "k4", 1000), 0);
    assert_int_equal(mc_master_upsert_start(x.m, CA, "k5", 1005, &c, 1000, &r, &n), 0);
    free(r);
    mp_close(&x);

    x = mp_open(5000);
    assert_int_equal(keys(x.m), 0); /* nothing visible before the owner remounts */
    assert_false(found(x.m, "k0", 5000, NULL));
    assert_int_equal(mc_master_remount_segments(x.m, &s, 1, CA, 5000), 0);
    assert_int_equal(keys(x.m), 18);
    uint64_t got;
    for (int i = 0; i < 20; i++) {
        snprintf(k, sizeof k, "k%d", i);
        int want = i != 3 && i != 5;
        assert_int_equal(found(x.m, k, 5000, &got), want);
        if (want && i != 4) assert_int_equal(got, a[i]);
    }
    assert_true(found(x.m, "k4", 5000, &got));
    assert_int_equal(got, a4);
    /* new puts never land on a restored range */
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof k, "n%d", i);
        uint64_t na;
        if (put(x.m, k, 1000, 5000, &na) != 0) break;
        for (int j = 0; j < 20; j++)
            if (j != 3 && j != 4 && j != 5) assert_true(na + 1000 <= a[j] || na >= a[j] + 1024);
        assert_true(na + 1000 <= a4 || na >= a4 + 3008);
    }
    mp_close(&x);
}

/* batch_replica_clear of one segment's replica is logged: after a restart the
 * object comes back with the other replica only, and the cleared range is free. */
static void test_replica_clear_logged(void **state)
{
    (void)state;
    const mc_uuid_t seg2 = {78, 1};
    mp_t x = mp_open(1000);
    mc_segment_t s1 = segdesc(SEG, 0x100000, 1 << 20), s2 = segdesc(seg2, 0x900000, 1 << 20);
    assert_int_equal(mc_master_mount_segment(x.m, &s1, CA, 1000), 0);
    assert_int_equal(mc_master_mount_segment(x.m, &s2, CA, 1000), 0);
    mc_replicate_config_t c = {.replica_num = 2};
    mc_replica_t *r;
    size_t n;
    assert_int_equal(mc_master_put_start(x.m, CA, "two", 4096, &c, 1000, &r, &n), 0);
    assert_int_equal(n, 2);
    free(r);
    assert_int_equal(mc_master_put_end(x.m, CA, "two", 1000), 0);
    assert_int_equal(mc_master_replica_clear(x.m, CA, "two", s1.name, 1000), 0);
    mp_close(&x);

    x = mp_open(5000);
    assert_int_equal(mc_master_remount_segments(x.m, &s1, 1, CA, 5000), 0);
    assert_int_equal(mc_master_remount_segments(x.m, &s2, 1, CA, 5000), 0);
    assert_int_equal(keys(x.m), 1);
    assert_int_equal(mc_master_get_replicas(x.m, "two", 5000, &r, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].endpoint, s2.name);
    free(r);
    mp_close(&x);
}

/* A remount whose restored ranges fall outside the segment (another size) or
 * overlap (two logged objects claiming the same bytes): those entries are
 * refused with a line, the rest are kept, and the refusal is logged so a
 * later restart does not bring them back. */
static void test_bad_remount(void **state)
{
    (void)state;
    /* a log written by hand: k0..k9 at 0x100000 + i*4096, then "dup" over k2 */
    char path[400];
    snprintf(path, sizeof path, "%s/log-0000000000000001.mcl", g_dir);
    FILE *f = fopen(path, "wb");
    uint8_t h[MC_PREC_FILE_HDR], buf[MC_PREC_HDR + MC_PREC_MAX_BODY];
    mc_prec_file_header(h, MC_PREC_FILE_LOG, 1, 0);
    fwrite(h, 1, sizeof h, f);
    char k[32];
    mc_prec_t *r = mkput("x", 1);
    r->soft_pin = 0;
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof k, "k%d", i);
        r->key = k;
        r->rep[0] = (mc_prec_rep_t){SEG, 0x100000 + (uint64_t)i * 4096, 4096};
        size_t n = mc_prec_encode(r, buf, sizeof buf);
        fwrite(buf, 1, n, f);
    }
    r->key = "dup";
    r->rep[0] = (mc_prec_rep_t){SEG, 0x100000 + 2 * 4096 + 1024, 1024};
    size_t n = mc_prec_encode(r, buf, sizeof buf);
    fwrite(buf, 1, n, f);
    fclose(f);

    mp_t x = mp_open(1000);
    /* the segment came back smaller: k8, k9 lie outside */
    mc_segment_t s = segdesc(SEG, 0x100000, 8 * 4096);
    assert_int_equal(mc_master_remount_segments(x.m, &s, 1, CA, 1000), 0);
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(found(x.m, k, 1000, NULL), i < 8);
    }
    assert_false(found(x.m, "dup", 1000, NULL));
    assert_int_equal(keys(x.m), 8);
    mp_close(&x);
    /* again, with the segment at its full size: the refused ones stay gone */
    x = mp_open(1000);
    s.size = 16 * 4096;
    assert_int_equal(mc_master_remount_segments(x.m, &s, 1, CA, 1000), 0);
    assert_int_equal(keys(x.m), 8);
    assert_false(found(x.m, "k8", 1000, NULL));
    mp_close(&x);
    free(r);
}

static off_t fsize(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 ? sb.st_size : -1;
}

/* A torn tail loses only the torn record; a flipped byte in the middle of
 * the log drops what was logged before it (unprovable) and keeps what follows. */
static void test_damaged_log(void **state)
{
    (void)state;
    mp_t x = mp_open(1000);
    mc_segment_t s = segdesc(SEG, 0x100000, 1 << 20);
    assert_int_equal(mc_master_mount_segment(x.m, &s, CA, 1000), 0);
    char k[32], path[400];
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(put(x.m, k, 100, 1000, NULL), 0);
    }
    mp_close(&x);
    snprintf(path, sizeof path, "%s/log-0000000000000001.mcl", g_dir);
    off_t len = fsize(path);
    assert_int_equal(truncate(path, len - 7), 0); /* k9 torn */
    x = mp_open(1000);
    assert_int_equal(mc_master_remount_segments(x.m, &s, 1, CA, 1000), 0);
    assert_int_equal(keys(x.m), 9);
    assert_false(found(x.m, "k9", 1000, NULL));
    for (int i = 10; i < 15; i++) { /* logged in the next segment */
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(put(x.m, k, 100, 1000, NULL), 0);
    }
    mp_close(&x);
    /* flip a byte inside k4's record (records are the same size) */
    off_t rec = (len - MC_PREC_FILE_HDR) / 10;
    int fd = open(path, O_RDWR);
    uint8_t b;
    off_t at = MC_PREC_FILE_HDR + 4 * rec + rec / 2;
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
    x = mp_open(1000);
    assert_int_equal(mc_master_remount_segments(x.m, &s, 1, CA, 1000), 0);
    /* k0..k4 unprovable, k5..k8 and k10..k14 kept */
    for (int i = 0; i < 15; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(found(x.m, k, 1000, NULL), (i >= 5 && i <= 8) || i >= 10);
    }
    mp_close(&x);
}

/* Objects of a segment that does not remount within the grace period are
 * dropped, and stay dropped when the segment comes back later. */
static void test_grace(void **state)
{
    (void)state;
    mp_t x = mp_open(1000);
    mc_segment_t s1 = segdesc(SEG, 0x100000, 1 << 20);
    mc_segment_t s2 = segdesc((mc_uuid_t){78, 1}, 0x900000, 1 << 20);
    mc_uuid_t CB = {2, 2};
    assert_int_equal(mc_master_mount_segment(x.m, &s1, CA, 1000), 0);
    assert_int_equal(put(x.m, "a", 100, 1000, NULL), 0);
    assert_int_equal(mc_master_unmount_segment(x.m, s1.id, CA), 0); /* a goes */
    assert_int_equal(mc_master_mount_segment(x.m, &s2, CB, 1000), 0);
    assert_int_equal(put(x.m, "b", 100, 1000, NULL), 0);
    mp_close(&x);
    x = mp_open(1000);
    assert_int_equal(mc_master_remount_segments(x.m, &s1, 1, CA, 1000), 0);
    assert_int_equal(keys(x.m), 0);   /* the unmount was replayed */
    mc_master_tick(x.m, 1000 + 2000); /* grace (2 x client_ttl) over: b lost */
    assert_int_equal(mc_master_remount_segments(x.m, &s2, 1, CB, 3500), 0);
    assert_false(found(x.m, "b", 3500, NULL));
    mp_close(&x);
    x = mp_open(1000);
    assert_int_equal(mc_master_remount_segments(x.m, &s2, 1, CB, 1000), 0);
    assert_false(found(x.m, "b", 1000, NULL));
    mp_close(&x);
}

/* Compaction: a snapshot written by the forked child, the log switched; a
 * restart replays snapshot + log. */
static void test_snapshot(void **state)
{
    (void)state;
    setenv("MC_MASTER_PERSIST_COMPACT_BYTES", "4096", 1);
    mp_t x = mp_open(1000);
    unsetenv("MC_MASTER_PERSIST_COMPACT_BYTES");
    mc_segment_t s = segdesc(SEG, 0x100000, 1 << 20);
    assert_int_equal(mc_master_mount_segment(x.m, &s, CA, 1000), 0);
    char k[32], path[400];
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(put(x.m, k, 100, 1000, NULL), 0);
    }
    mc_master_tick(x.m, 1001); /* forks the child */
    snprintf(path, sizeof path, "%s/snap-0000000000000002.mcs", g_dir);
    for (int i = 0; i < 500 && fsize(path) < 0; i++) {
        usleep(10000);
        mc_master_tick(x.m, 1002); /* reaps it */
    }
    assert_true(fsize(path) > 0);
    snprintf(path, sizeof path, "%s/log-0000000000000001.mcl", g_dir);
    assert_int_equal(fsize(path), -1); /* replaced by the snapshot */
    assert_int_equal(mc_master_remove(x.m, "k7", 1, 1003), 0);
    assert_int_equal(put(x.m, "after", 100, 1003, NULL), 0);
    mp_close(&x);
    x = mp_open(1000);
    assert_int_equal(mc_master_remount_segments(x.m, &s, 1, CA, 1000), 0);
    assert_int_equal(keys(x.m), 100);
    assert_false(found(x.m, "k7", 1000, NULL));
    assert_true(found(x.m, "k8", 1000, NULL));
    assert_true(found(x.m, "after", 1000, NULL));
    mp_close(&x);
}

/* A second master on the same directory is refused. */
static void test_lock(void **state)
{
    (void)state;
    mc_persist_t *a, *b;
    char err[512];
    assert_int_equal(mc_persist_open(g_dir, &a, err, sizeof err), 0);
    assert_int_not_equal(mc_persist_open(g_dir, &b, err, sizeof err), 0);
    assert_non_null(strstr(err, "in use by another master"));
    mc_persist_close(a);
    assert_int_not_equal(mc_persist_open("/proc/nope/dir", &b, err, sizeof err), 0);
    assert_non_null(strstr(err, "cannot create"));
}

/* Copy and move tasks journal the object's new replica set: after a restart
 * the copied key has both replicas, the moved one only its target. */
static void test_tasks_logged(void **state)
{
    (void)state;
    const mc_uuid_t id2 = {78, 1}, id3 = {79, 1};
    mp_t x = mp_open(1000);
    mc_segment_t s1 = segdesc(SEG, 0x100000, 1 << 20), s2 = segdesc(id2, 0x900000, 1 << 20),
                 s3 = segdesc(id3, 0x1900000, 1 << 20);
    assert_int_equal(mc_master_mount_segment(x.m, &s1, CA, 1000), 0);
    assert_int_equal(mc_master_mount_segment(x.m, &s2, CA, 1000), 0);
    assert_int_equal(mc_master_mount_segment(x.m, &s3, CA, 1000), 0);
    const char *pref = s1.name;
    mc_replicate_config_t c = {.replica_num = 1, .npreferred = 1, .preferred_segments = &pref};
    mc_replica_t *r;
    size_t n;
    const char *keys2[] = {"copied", "moved"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(mc_master_put_start(x.m, CA, keys2[i], 4096, &c, 1000, &r, &n), 0);
        assert_string_equal(r[0].endpoint, s1.name);
        free(r);
        assert_int_equal(mc_master_put_end(x.m, CA, keys2[i], 1000), 0);
    }
    mc_uuid_t t1, t2;
    const char *tg[] = {s2.name};
    assert_int_equal(mc_master_copy_task(x.m, "copied", tg, 1, 1000, &t1), 0);
    assert_int_equal(mc_master_move_task(x.m, "moved", s1.name, s3.name, 1000, &t2), 0);
    mc_master_task_t *t = NULL;
    size_t nt = 0;
    assert_int_equal(mc_master_task_fetch(x.m, CA, 8, 1000, &t, &nt), 0);
    assert_int_equal(nt, 2);
    uint64_t moved_to = 0;
    for (size_t i = 0; i < nt; i++) {
        if (strcmp(t[i].key, "moved") == 0) moved_to = t[i].dst_addr;
        assert_int_equal(mc_master_task_complete(x.m, CA, t[i].id, 0, 1000), 0);
    }
    mc_master_tasks_free(t, nt);
    assert_true(moved_to >= s3.base && moved_to < s3.base + s3.size);
    mp_close(&x);

    x = mp_open(5000);
    assert_int_equal(mc_master_remount_segments(x.m, &s1, 1, CA, 5000), 0);
    assert_int_equal(mc_master_remount_segments(x.m, &s2, 1, CA, 5000), 0);
    assert_int_equal(mc_master_remount_segments(x.m, &s3, 1, CA, 5000), 0);
    assert_int_equal(keys(x.m), 2);
    assert_int_equal(mc_master_get_replicas(x.m, "copied", 5000, &r, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_true(strcmp(r[0].endpoint, r[1].endpoint) != 0);
    assert_true(strcmp(r[0].endpoint, s2.name) == 0 || strcmp(r[1].endpoint, s2.name) == 0);
    free(r);
    assert_int_equal(mc_master_get_replicas(x.m, "moved", 5000, &r, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].endpoint, s3.name);
    assert_int_equal(r[0].addr, moved_to);
    free(r);
    mp_close(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_roundtrip),
        cmocka_unit_test_setup_teardown(test_restore_on_remount, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_bad_remount, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_damaged_log, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_grace, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_snapshot, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_lock, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_replica_clear_logged, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_tasks_logged, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
