/* Unit tests of the SSD tier's disk (src/store/store_ssd_io.c) on a real
 * directory: packed records across many batches (each batch rewrites the
 * last partly written block of the one before), objects larger than a write
 * piece, a reopen (the scan stops at the allocated zeros of the tail bucket)
 * followed by more appends and another reopen, a torn batch (a zeroed block)
 * and the quota counted on the files, batched reads (more keys than the
 * ring holds, missing keys and too small buffers among them) and buckets
 * dropped while readers read them; the version-3 format: a 4 KiB value in
 * one 4 KiB block, a torn journal entry (the entries before it kept, appends
 * after it found by the next scan), a corrupt value dropped by the scan, and
 * a legacy (version 2) bucket still read. Every value is checked byte for
 * byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "mooncake/err.h"
#include "store_ssd.h"

#define NOBJ 600

static char dir[256];

/* Size of object i: small ones mostly, a few larger than a 1 MiB piece. */
static uint64_t obj_size(size_t i)
{
    if (i % 97 == 13) return (1u << 20) + 4096 * (i % 5) + 77;
    return 1 + (i * 7919) % 20000;
}

static void obj_fill(size_t i, uint8_t *p, uint64_t n)
{
    uint64_t x = i * 0x9E3779B97F4A7C15ull + 1;
    for (uint64_t k = 0; k < n; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[k] = (uint8_t)x;
    }
}

static mc_ssd_disk_t *open_disk(uint64_t quota, uint64_t bucket)
{
    mc_ssd_disk_config_t cfg = {.path = dir,
                                .quota = quota,
                                .bucket = bucket,
                                .high = 0.99,
                                .low = 0.98,
                                .write_buf = 2ull << 20};
    mc_ssd_disk_t *d = NULL;
    assert_int_equal(mc_ssd_disk_open(&cfg, &d), 0);
    return d;
}

/* Writes objects [from, to) in batches of `batch`. */
static void write_range(mc_ssd_disk_t *d, size_t from, size_t to, size_t batch)
{
    for (size_t i = from; i < to; i += batch) {
        size_t n = to - i < batch ? to - i : batch;
        char keys[64][32];
        const char *kp[64];
        const void *src[64];
        uint64_t sz[64], st[64];
        int rc[64];
        assert_true(n <= 64);
        for (size_t k = 0; k < n; k++) {
            snprintf(keys[k], sizeof keys[k], "obj-%zu", i + k);
            kp[k] = keys[k];
            sz[k] = obj_size(i + k);
            st[k] = 1000 + i + k;
            uint8_t *v = malloc(sz[k]);
            obj_fill(i + k, v, sz[k]);
            src[k] = v;
        }
        assert_int_equal(mc_ssd_disk_write(d, kp, src, sz, st, n, rc), 0);
        for (size_t k = 0; k < n; k++) {
            assert_int_equal(rc[k], 0);
            free((void *)src[k]);
        }
    }
}

/* Reads objects [from, to) back; returns how many were found (all exact). */
static size_t check_range(mc_ssd_disk_t *d, size_t from, size_t to)
{
    size_t found = 0;
    for (size_t i = from; i < to; i++) {
        char key[32];
        snprintf(key, sizeof key, "obj-%zu", i);
        uint64_t size = 0, stamp = 0;
        uint64_t need = mc_ssd_disk_rec_len(d, key, &size, &stamp);
        if (!need) continue;
        assert_int_equal(size, obj_size(i));
        assert_int_equal(stamp, 1000 + i);
        uint8_t *buf = NULL;
        assert_int_equal(posix_memalign((void **)&buf, MC_SSD_ALIGN, need), 0);
        const uint8_t *data = NULL;
        uint64_t got = 0;
        assert_int_equal(mc_ssd_disk_read(d, key, buf, need, &data, &got), 0);
        assert_int_equal(got, size);
        uint8_t *want = malloc(size);
        obj_fill(i, want, size);
        assert_memory_equal(data, want, size);
        free(want);
        free(buf);
        found++;
    }
    return found;
}

static uint64_t files_bytes(void)
{
    uint64_t sum = 0;
    DIR *dd = opendir(dir);
    struct dirent *de;
    while (dd && (de = readdir(dd))) {
        if (strncmp(de->d_name, "bucket-", 7) != 0) continue;
        char p[512];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (stat(p, &st) == 0) sum += (uint64_t)st.st_size;
    }
    if (dd) closedir(dd);
    return sum;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/mc-ssd-io-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_batches_reopen_append(void **state)
{
    (void)state;
    mc_ssd_disk_t *d = open_disk(4ull << 30, 8ull << 20);
    write_range(d, 0, 300, 7); /* many batches: each ends inside a block */
    assert_int_equal(check_range(d, 0, 300), 300);
    mc_ssd_disk_close(d);

    d = open_disk(4ull << 30, 8ull << 20); /* the scan finds all of them */
    assert_int_equal(check_range(d, 0, 300), 300);
    write_range(d, 300, NOBJ, 13); /* appends after a reopen */
    assert_int_equal(check_range(d, 0, NOBJ), NOBJ);
    mc_ssd_disk_close(d);

    d = open_disk(4ull << 30, 8ull << 20);
    assert_int_equal(check_range(d, 0, NOBJ), NOBJ);
    mc_ssd_disk_stats_t st;
    mc_ssd_disk_stats(d, &st);
    assert_int_equal(st.keys, NOBJ);
    assert_int_equal(st.dropped_corrupt, 0);
    assert_int_equal(st.bytes_used, files_bytes()); /* the quota counts the files */
    mc_ssd_disk_close(d);
}

/* A block of the last bucket zeroed (a write that never landed): the
 * records before it are kept, none after it is served wrong. */
static void test_torn_tail(void **state)
{
    (void)state;
    mc_ssd_disk_t *d = open_disk(4ull << 30, 64ull << 20);
    write_range(d, 0, 200, 9);
    mc_ssd_disk_close(d);
    char p[512];
    snprintf(p, sizeof p, "%s/bucket-%016x.dat", dir, 0);
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    static uint8_t zero[MC_SSD_ALIGN];
    off_t at = (off_t)(1u << 20) * 2; /* in the middle of the records */
    assert_int_equal(pwrite(fd, zero, sizeof zero, at), (ssize_t)sizeof zero);
    close(fd);
    d = open_disk(4ull << 30, 64ull << 20);
    size_t found = check_range(d, 0, 200); /* asserts every found one is exact */
    assert_true(found > 0 && found < 200);
    write_range(d, 200, 260, 5); /* appends where the good records end */
    assert_int_equal(check_range(d, 200, 260), 60);
    mc_ssd_disk_close(d);
    d = open_disk(4ull << 30, 64ull << 20);
    assert_int_equal(check_range(d, 200, 260), 60);
    mc_ssd_disk_close(d);
}

/* A quota of a few buckets: writes past it are refused, the files stay under it. */
static void test_quota(void **state)
{
    (void)state;
    uint64_t quota = 6ull << 20;
    mc_ssd_disk_t *d = open_disk(quota, 1ull << 20);
    size_t ok = 0, full = 0;
    for (size_t i = 0; i < 400; i++) {
        char key[32];
        snprintf(key, sizeof key, "obj-%zu", i);
        const char *kp = key;
        uint64_t sz = 20000, st = 1000 + i;
        uint8_t *v = malloc(sz);
        obj_fill(i, v, sz);
        const void *src = v;
        int rc = 0;
        mc_ssd_disk_write(d, &kp, &src, &sz, &st, 1, &rc);
        free(v);
        if (rc == 0)
            ok++;
        else if (rc == MC_ERR_NO_AVAILABLE_HANDLE)
            full++;
        else
            fail_msg("write rc %d", rc);
        assert_true(files_bytes() <= quota);
    }
    assert_true(ok > 100 && full > 0);
    mc_ssd_disk_close(d);
}

/* One mc_ssd_disk_read_many of 150 keys (more than one ring's 64), with
 * missing keys and a too small buffer among them: each gets its own answer. */
static void test_read_many(void **state)
{
    (void)state;
    mc_ssd_disk_t *d = open_disk(4ull << 30, 8ull << 20);
    write_range(d, 0, 140, 11);
    enum { N = 150 };
    char keys[N][32];
    const char *kp[N];
    void *bufs[N];
    uint64_t caps[N], sizes[N];
    const uint8_t *datas[N];
    int rcs[N];
    for (size_t i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "obj-%zu", i); /* 140.. are missing */
        kp[i] = keys[i];
        uint64_t need = mc_ssd_disk_rec_len(d, keys[i], NULL, NULL);
        caps[i] = need ? need : MC_SSD_ALIGN;
        if (i == 5) caps[i] = need - MC_SSD_ALIGN; /* too small */
        assert_int_equal(posix_memalign(&bufs[i], MC_SSD_ALIGN, caps[i] + MC_SSD_ALIGN), 0);
        rcs[i] = 12345;
    }
    assert_int_equal(mc_ssd_disk_read_many(d, kp, N, bufs, caps, datas, sizes, rcs), 0);
    for (size_t i = 0; i < N; i++) {
        if (i >= 140) {
            assert_int_equal(rcs[i], MC_ERR_OBJECT_NOT_FOUND);
        } else if (i == 5) {
            assert_int_equal(rcs[i], MC_ERR_BUFFER_OVERFLOW);
        } else {
            assert_int_equal(rcs[i], 0);
            assert_int_equal(sizes[i], obj_size(i));
            uint8_t *want = malloc(sizes[i]);
            obj_fill(i, want, sizes[i]);
            assert_memory_equal(datas[i], want, sizes[i]);
            free(want);
        }
        free(bufs[i]);
    }
    mc_ssd_disk_close(d);
}

typedef struct {
    mc_ssd_disk_t *d;
    volatile int stop;
    size_t ok, gone;
} drop_rd_t;

static void *drop_reader(void *arg)
{
    drop_rd_t *r = arg;
    uint8_t *buf = NULL;
    if (posix_memalign((void **)&buf, MC_SSD_ALIGN, 4u << 20)) return NULL;
    for (size_t n = 0; !r->stop || n < 200; n++) {
        size_t i = n % 200;
        char key[32];
        snprintf(key, sizeof key, "obj-%zu", i);
        const uint8_t *data;
        uint64_t size;
        int rc = mc_ssd_disk_read(r->d, key, buf, 4u << 20, &data, &size);
        if (rc == MC_ERR_OBJECT_NOT_FOUND) {
            r->gone++;
            continue;
        }
        if (rc != 0 || size != obj_size(i)) {
            r->ok = (size_t)-1; /* checked by the test: never a wrong answer */
            break;
        }
        uint8_t *want = malloc(size);
        obj_fill(i, want, size);
        int same = memcmp(data, want, size) == 0;
        free(want);
        if (!same) {
            r->ok = (size_t)-1;
            break;
        }
        r->ok++;
    }
    free(buf);
    return NULL;
}

/* Buckets dropped while two readers read their keys: a read either returns
 * the exact bytes (the bucket stays open while the read is in flight) or
 * OBJECT_NOT_FOUND; the dropped files leave the directory. */
static void test_drop_while_reading(void **state)
{
    (void)state;
    mc_ssd_disk_t *d = open_disk(4ull << 30, 1ull << 20); /* many small buckets */
    write_range(d, 0, 200, 10);
    uint64_t before = files_bytes();
    drop_rd_t r[2] = {{d, 0, 0, 0}, {d, 0, 0, 0}};
    pthread_t th[2];
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_create(&th[k], NULL, drop_reader, &r[k]), 0);
    for (uint64_t id = 0; id < 3; id++)
        mc_ssd_disk_drop_bucket(d, id);
    for (int k = 0; k < 2; k++)
        r[k].stop = 1;
    for (int k = 0; k < 2; k++) {
        assert_int_equal(pthread_join(th[k], NULL), 0);
        assert_true(r[k].ok != (size_t)-1);
        assert_true(r[k].ok > 0);
    }
    assert_true(files_bytes() < before);
    size_t left = check_range(d, 0, 200);
    assert_true(left > 0 && left < 200);
    mc_ssd_disk_close(d);
}

/* Writes objects [from, to) of `size` bytes each, batch at a time. */
static void write_sized(mc_ssd_disk_t *d, size_t from, size_t to, size_t batch, uint64_t size)
{
    for (size_t i = from; i < to; i += batch) {
        size_t n = to - i < batch ? to - i : batch;
        char keys[64][32];
        const char *kp[64];
        const void *src[64];
        uint64_t sz[64], st[64];
        int rc[64];
        assert_true(n <= 64);
        for (size_t k = 0; k < n; k++) {
            snprintf(keys[k], sizeof keys[k], "obj-%zu", i + k);
            kp[k] = keys[k];
            sz[k] = size;
            st[k] = 1000 + i + k;
            uint8_t *v = malloc(size);
            obj_fill(i + k, v, size);
            src[k] = v;
        }
        assert_int_equal(mc_ssd_disk_write(d, kp, src, sz, st, n, rc), 0);
        for (size_t k = 0; k < n; k++) {
            assert_int_equal(rc[k], 0);
            free((void *)src[k]);
        }
    }
}

/* Reads objects [from, to) of `size` bytes; how many were found (all exact). */
static size_t check_sized(mc_ssd_disk_t *d, size_t from, size_t to, uint64_t size)
{
    size_t found = 0;
    uint8_t *buf = NULL, *want = malloc(size);
    assert_int_equal(posix_memalign((void **)&buf, MC_SSD_ALIGN, size + 2 * MC_SSD_ALIGN), 0);
    for (size_t i = from; i < to; i++) {
        char key[32];
        snprintf(key, sizeof key, "obj-%zu", i);
        const uint8_t *data = NULL;
        uint64_t got = 0;
        int rc = mc_ssd_disk_read(d, key, buf, size + 2 * MC_SSD_ALIGN, &data, &got);
        if (rc == MC_ERR_OBJECT_NOT_FOUND) continue;
        assert_int_equal(rc, 0);
        assert_int_equal(got, size);
        obj_fill(i, want, size);
        assert_memory_equal(data, want, size);
        found++;
    }
    free(buf);
    free(want);
    return found;
}

static void path_of(char *p, size_t n, uint64_t id, const char *ext)
{
    snprintf(p, n, "%s/bucket-%016llx.%s", dir, (unsigned long long)id, ext);
}

/* Version 3: a 4 KiB value is read as one 4 KiB block (its header and key
 * are in the journal), in odd batches (each batch rewrites the journal's
 * last block) and after a reopen; smaller values never cross a block. */
static void test_block_values(void **state)
{
    (void)state;
    mc_ssd_disk_t *d = open_disk(4ull << 30, 8ull << 20);
    write_sized(d, 0, 300, 7, 4096);
    for (size_t i = 0; i < 300; i++) {
        char key[32];
        snprintf(key, sizeof key, "obj-%zu", i);
        assert_int_equal(mc_ssd_disk_rec_len(d, key, NULL, NULL), MC_SSD_ALIGN);
    }
    mc_ssd_disk_close(d);
    d = open_disk(4ull << 30, 8ull << 20);
    assert_int_equal(check_sized(d, 0, 300, 4096), 300);
    mc_ssd_disk_stats_t st;
    mc_ssd_disk_stats(d, &st);
    assert_int_equal(st.dropped_corrupt, 0);
    /* values of 1000 bytes: four to a block, none across two */
    write_sized(d, 300, 340, 9, 1000);
    for (size_t i = 300; i < 340; i++) {
        char key[32];
        snprintf(key, sizeof key, "obj-%zu", i);
        assert_int_equal(mc_ssd_disk_rec_len(d, key, NULL, NULL), MC_SSD_ALIGN);
    }
    assert_int_equal(check_sized(d, 300, 340, 1000), 40);
    mc_ssd_disk_close(d);
    assert_int_equal(mc_ssd_val_off(4095, 4096), 4096);
    assert_int_equal(mc_ssd_val_off(4000, 200), 4096);
    assert_int_equal(mc_ssd_val_off(4000, 64), 4032);
    assert_int_equal(mc_ssd_val_off(1, 10), 64);
}

/* A journal entry corrupted in the middle of the tail bucket's journal: the
 * entries before it are served, none after it; appends continue and the
 * next scan finds them (the rest of the bad entry's block was zeroed). */
static void test_torn_journal(void **state)
{
    (void)state;
    mc_ssd_disk_t *d = open_disk(4ull << 30, 64ull << 20);
    write_sized(d, 0, 100, 10, 8192);
    mc_ssd_disk_close(d);
    char p[512];
    path_of(p, sizeof p, 0, "idx");
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    /* entries are 128 bytes here ("obj-N" keys): entry 50 at 6400 */
    uint8_t b = 0;
    assert_int_equal(pread(fd, &b, 1, 50 * 128 + 20), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, 50 * 128 + 20), 1);
    close(fd);
    d = open_disk(4ull << 30, 64ull << 20);
    assert_int_equal(check_sized(d, 0, 50, 8192), 50);
    assert_int_equal(check_sized(d, 50, 100, 8192), 0);
    write_sized(d, 100, 130, 7, 8192);
    assert_int_equal(check_sized(d, 100, 130, 8192), 30);
    mc_ssd_disk_close(d);
    d = open_disk(4ull << 30, 64ull << 20);
    assert_int_equal(check_sized(d, 0, 50, 8192), 50);
    assert_int_equal(check_sized(d, 50, 100, 8192), 0);
    assert_int_equal(check_sized(d, 100, 130, 8192), 30);
    mc_ssd_disk_close(d);
}

/* A byte of a value flipped on disk: the scan drops that key (counted), the
 * others are served; flipped while open: the read refuses it and drops it. */
static void test_corrupt_value(void **state)
{
    (void)state;
    mc_ssd_disk_t *d = open_disk(4ull << 30, 64ull << 20);
    write_sized(d, 0, 20, 20, 4096);
    mc_ssd_disk_close(d);
    char p[512];
    path_of(p, sizeof p, 0, "dat");
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b = 0;
    assert_int_equal(pread(fd, &b, 1, 3 * 4096 + 7), 1);
    b ^= 1;
    assert_int_equal(pwrite(fd, &b, 1, 3 * 4096 + 7), 1);
    d = open_disk(4ull << 30, 64ull << 20);
    mc_ssd_disk_stats_t st;
    mc_ssd_disk_stats(d, &st);
    assert_int_equal(st.dropped_corrupt, 1);
    assert_int_equal(st.keys, 19);
    assert_int_equal(check_sized(d, 0, 20, 4096), 19);
    assert_int_equal(check_sized(d, 3, 4, 4096), 0);
    /* and while it is open: value 5 */
    assert_int_equal(pread(fd, &b, 1, 5 * 4096 + 100), 1);
    b ^= 1;
    assert_int_equal(pwrite(fd, &b, 1, 5 * 4096 + 100), 1);
    close(fd);
    uint8_t *buf = NULL;
    assert_int_equal(posix_memalign((void **)&buf, MC_SSD_ALIGN, 8192), 0);
    const uint8_t *data;
    uint64_t got;
    assert_int_equal(mc_ssd_disk_read(d, "obj-5", buf, 8192, &data, &got),
                     MC_ERR_CHECKSUM_MISMATCH);
    assert_int_equal(mc_ssd_disk_read(d, "obj-5", buf, 8192, &data, &got),
                     MC_ERR_OBJECT_NOT_FOUND);
    free(buf);
    assert_int_equal(check_sized(d, 0, 20, 4096), 18);
    mc_ssd_disk_close(d);
}

/* A version-2 bucket (records with their headers inline, no journal), as
 * written before version 3: read and checked; appends go to a new bucket. */
static void test_legacy_bucket(void **state)
{
    (void)state;
    char p[512];
    path_of(p, sizeof p, 0, "dat");
    int fd = open(p, O_RDWR | O_CREAT, 0644);
    assert_true(fd >= 0);
    uint64_t off = 0;
    for (size_t i = 0; i < 10; i++) {
        char key[32];
        snprintf(key, sizeof key, "obj-%zu", i);
        size_t kl = strlen(key);
        uint64_t sz = 3000 + 100 * i;
        uint8_t *v = malloc(sz);
        obj_fill(i, v, sz);
        mc_ssd_rec_t r = {(uint32_t)kl,          sz, 1000 + i, XXH3_64bits(v, sz),
                          XXH3_64bits(key, kl), mc_ssd_rec_len(kl, sz)};
        uint8_t *rec = calloc(1, r.rec_len);
        mc_ssd_rec_encode(&r, rec);
        memcpy(rec + MC_SSD_REC_HDR, key, kl);
        memcpy(rec + MC_SSD_REC_HDR + kl, v, sz);
        assert_int_equal(pwrite(fd, rec, r.rec_len, (off_t)off), (ssize_t)r.rec_len);
        off += r.rec_len;
        free(rec);
        free(v);
    }
    assert_int_equal(ftruncate(fd, (off_t)MC_SSD_ALIGN_UP(off)), 0);
    close(fd);
    mc_ssd_disk_t *d = open_disk(4ull << 30, 8ull << 20);
    uint8_t *buf = NULL, want[4000];
    assert_int_equal(posix_memalign((void **)&buf, MC_SSD_ALIGN, 3 * MC_SSD_ALIGN), 0);
    for (size_t i = 0; i < 10; i++) {
        char key[32];
        snprintf(key, sizeof key, "obj-%zu", i);
        const uint8_t *data;
        uint64_t got;
        assert_int_equal(mc_ssd_disk_read(d, key, buf, 3 * MC_SSD_ALIGN, &data, &got), 0);
        assert_int_equal(got, 3000 + 100 * i);
        obj_fill(i, want, got);
        assert_memory_equal(data, want, got);
    }
    free(buf);
    write_sized(d, 10, 20, 5, 4096);
    char j[512];
    path_of(j, sizeof j, 1, "idx");
    assert_int_equal(access(j, F_OK), 0); /* a new, version-3 bucket */
    mc_ssd_disk_close(d);
    d = open_disk(4ull << 30, 8ull << 20);
    assert_int_equal(check_sized(d, 10, 20, 4096), 10);
    mc_ssd_disk_stats_t st;
    mc_ssd_disk_stats(d, &st);
    assert_int_equal(st.keys, 20);
    mc_ssd_disk_close(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batches_reopen_append, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quota, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_while_reading, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_bucket, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
