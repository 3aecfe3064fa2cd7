/* te_test_peer: a real transfer-engine target process for the integration tests.
 *   te_test_peer --name N --metadata S --size BYTES [--log FILE]
 * Creates and starts an engine (S is "http://127.0.0.1:PORT/metadata" or
 * "P2PHANDSHAKE"), mmaps and registers a buffer of BYTES, prints
 *   READY <segment_name> <addr_hex> <size>
 * and then serves one-line commands on stdin, one reply line each:
 *   FILL <seed> <off> <len>   fill main buffer [off, off+len) with th_pattern(seed) -> OK
 *   HASH <off> <len>          XXH3_64bits of that range of the main buffer -> <hex>
 *   HASHAT <addr_hex> <len>   the same for a range inside any buffer REG returned
 *   FILLAT <seed> <addr_hex> <len>   FILL for such a range -> OK
 *   REG <size>                mmap and register another buffer -> OK <addr_hex>
 *   UNREG <addr_hex> [keep]   unregister a REG buffer and unmap it (with "keep": leave
 *                             it mapped and readable by HASHAT, as memory an
 *                             application reuses after unregistering) -> OK
 *   NOTIFIES                  mc_te_notify_fetch -> <n> name1=msg1 name2=msg2 ...
 *   NOTIFYSTAT                mc_te_notify_fetch -> <n> <dropped> <hash_hex>: how many were
 *                             fetched, mc_te_notify_dropped, and XXH3_64bits over
 *                             name '\0' msg '\0' of each, in order
 *   QUIT                      -> OK, then exits 0
 * --log FILE appends the engine's log (stderr) to FILE, for tests that look for
 * a line. Errors answer "ERR <reason>". EOF on stdin exits 0 after a clean teardown, so
 * leak checkers see every engine resource released. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "mooncake/te.h"
#include "te_harness.h"

#define MAX_BUFS 16

typedef struct {
    char *addr;
    size_t len;
} region_t;

static region_t bufs[MAX_BUFS]; /* [0] is the main buffer */

static void *map(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* The registered range [addr, addr+len) as a pointer, or NULL when it is not
 * inside one of our buffers. */
static char *range(uint64_t addr, uint64_t len)
{
    for (int i = 0; i < MAX_BUFS; i++) {
        uint64_t a = (uint64_t)(uintptr_t)bufs[i].addr;
        if (!bufs[i].addr || addr < a || addr - a > bufs[i].len || len > bufs[i].len - (addr - a))
            continue;
        return (char *)(uintptr_t)addr;
    }
    return NULL;
}

static int parse_u64(const char *s, int base, uint64_t *out)
{
    if (!s) return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

/* Serves one command line; returns 1 to exit. */
static int serve(mc_te_t *te, char *line)
{
    char *save = NULL, *cmd = strtok_r(line, " \t\r\n", &save);
    char *a1 = strtok_r(NULL, " \t\r\n", &save), *a2 = strtok_r(NULL, " \t\r\n", &save);
    char *a3 = strtok_r(NULL, " \t\r\n", &save);
    uint64_t x, y, z;
    if (!cmd) {
        puts("ERR empty");
    } else if (!strcmp(cmd, "FILL") || !strcmp(cmd, "FILLAT")) {
        int at = cmd[4] != '\0';
        char *p = NULL;
        if (!parse_u64(a1, 0, &x) && !parse_u64(a2, at ? 16 : 0, &y) && !parse_u64(a3, 0, &z))
            p = range(at ? y : (uint64_t)(uintptr_t)bufs[0].addr + y, z);
        if (p && (at || y <= bufs[0].len)) {
            th_pattern(p, z, x);
            puts("OK");
        } else {
            puts("ERR bad range");
        }
    } else if (!strcmp(cmd, "HASH") || !strcmp(cmd, "HASHAT")) {
        int at = cmd[4] != '\0';
        char *p = NULL;
        if (!parse_u64(a1, at ? 16 : 0, &x) && !parse_u64(a2, 0, &y))
            p = range(at ? x : (uint64_t)(uintptr_t)bufs[0].addr + x, y);
        if (p && (at || x <= bufs[0].len))
            printf("%016llx\n", (unsigned long long)XXH3_64bits(p, y));
        else
            puts("ERR bad range");
    } else if (!strcmp(cmd, "REG")) {
        int slot = 1;
        while (slot < MAX_BUFS && bufs[slot].addr)
            slot++;
        void *p = NULL;
        int rc = -1;
        if (slot < MAX_BUFS && !parse_u64(a1, 0, &x) && x && (p = map(x)) &&
            (rc = mc_te_register(te, p, x, "cpu:0")) == 0) {
            bufs[slot].addr = p;
            bufs[slot].len = x;
            printf("OK %llx\n", (unsigned long long)(uintptr_t)p);
        } else {
            if (p) munmap(p, x);
            printf("ERR register: %s\n", rc ? mc_te_strerror(rc) : "bad size");
        }
    } else if (!strcmp(cmd, "UNREG")) {
        int slot = 1;
        if (!parse_u64(a1, 16, &x))
            while (slot < MAX_BUFS && (uint64_t)(uintptr_t)bufs[slot].addr != x)
                slot++;
        int rc = slot < MAX_BUFS && bufs[slot].addr ? mc_te_unregister(te, bufs[slot].addr) : -1;
        if (rc == 0) {
            if (!a2 || strcmp(a2, "keep")) {
                munmap(bufs[slot].addr, bufs[slot].len);
                bufs[slot].addr = NULL;
            }
            puts("OK");
        } else {
            printf("ERR unregister: %s\n", rc < 0 && slot < MAX_BUFS && bufs[slot].addr
                                               ? mc_te_strerror(rc)
                                               : "no such buffer");
        }
    } else if (!strcmp(cmd, "NOTIFIES")) {
        mc_te_notify_t *v = NULL;
        size_t n = 0;
        mc_te_notify_fetch(te, &v, &n);
        printf("%zu", n);
        for (size_t i = 0; i < n; i++)
            printf(" %s=%s", v[i].name, v[i].msg);
        putchar('\n');
        mc_te_notify_free(v, n);
    } else if (!strcmp(cmd, "NOTIFYSTAT")) {
        mc_te_notify_t *v = NULL;
        size_t n = 0;
        mc_te_notify_fetch(te, &v, &n);
        XXH3_state_t *st = XXH3_createState();
        XXH3_64bits_reset(st);
        for (size_t i = 0; i < n; i++) {
            XXH3_64bits_update(st, v[i].name, strlen(v[i].name) + 1);
            XXH3_64bits_update(st, v[i].msg, strlen(v[i].msg) + 1);
        }
        printf("%zu %llu %016llx\n", n, (unsigned long long)mc_te_notify_dropped(te),
               (unsigned long long)XXH3_64bits_digest(st));
        XXH3_freeState(st);
        mc_te_notify_free(v, n);
    } else if (!strcmp(cmd, "QUIT")) {
        puts("OK");
        fflush(stdout);
        return 1;
    } else {
        printf("ERR unknown command '%s'\n", cmd);
    }
    fflush(stdout);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: te_test_peer --name N --metadata S --size BYTES [--log FILE]\n");
}

int main(int argc, char **argv)
{
    const char *name = NULL, *metadata = NULL, *log = NULL;
    uint64_t size = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--name"))
            name = argv[i + 1];
        else if (!strcmp(argv[i], "--metadata"))
            metadata = argv[i + 1];
        else if (!strcmp(argv[i], "--log"))
            log = argv[i + 1];
        else if (!strcmp(argv[i], "--size") && !parse_u64(argv[i + 1], 0, &size))
            continue;
        else {
            usage();
            return 2;
        }
    }
    if (!name || !metadata || !size || argc % 2 == 0) {
        usage();
        return 2;
    }
    if (log && !freopen(log, "a", stderr)) {
        perror(log);
        return 2;
    }
    if (log) setvbuf(stderr, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    mc_te_t *te = NULL;
    int rc = mc_te_create(&te);
    if (rc == 0) rc = mc_te_init(te, name, metadata, th_protocol(), getenv("MC_TEST_RDMA_DEVICES"));
    if (rc == 0 && !(bufs[0].addr = map(size))) rc = MC_TE_ERR_MEMORY;
    if (rc == 0) {
        bufs[0].len = size;
        rc = mc_te_register(te, bufs[0].addr, size, "cpu:0");
    }
    if (rc) {
        fprintf(stderr, "te_test_peer: cannot start: %s\n", mc_te_strerror(rc));
        goto out;
    }
    printf("READY %s %llx %llu\n", mc_te_segment_name(te),
           (unsigned long long)(uintptr_t)bufs[0].addr, (unsigned long long)size);
    fflush(stdout);

    char line[512];
    while (fgets(line, sizeof line, stdin))
        if (serve(te, line)) break;
out:
    mc_te_destroy(te); /* stops serving before any buffer is unmapped */
    for (int i = 0; i < MAX_BUFS; i++)
        if (bufs[i].addr) munmap(bufs[i].addr, bufs[i].len);
    return rc ? 1 : 0;
}
