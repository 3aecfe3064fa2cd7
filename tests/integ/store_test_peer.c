/* store_test_peer: a store client in its own process, for test_store.
 *   store_test_peer MASTER_ADDR METADATA SEGMENT_BYTES [tcp]
 * Sets up a store named "127.0.0.1" (automatic port), segment SEGMENT_BYTES,
 * local buffer 32 MiB; with "tcp" its own transfers avoid shm (MC_FORCE_TCP).
 * Prints "READY <hostname>" and serves one-line commands on stdin, one reply
 * line each:
 *   PUT <key> <size> <seed> [<preferred segment>]  th_pattern(seed) -> RC <rc>
 *   PUTPIN <key> <size> <seed> [<preferred segment>]  the same, hard-pinned
 *   GET <key> <size> <seed>   get_into, bytes compared with th_pattern(seed)
 *                             -> RC <bytes or error> | BAD <first bad offset>
 *   QUIT                      -> OK, then closes the store and exits 0
 * EOF on stdin also closes and exits 0. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mooncake/store.h"
#include "te_harness.h"

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s MASTER METADATA SEGMENT_BYTES [tcp]\n", argv[0]);
        return 2;
    }
    if (argc > 4 && strcmp(argv[4], "tcp") == 0) setenv("MC_FORCE_TCP", "1", 1);
    setvbuf(stdout, NULL, _IOLBF, 0);
    mc_store_t *s;
    if (mc_store_create(&s)) return 1;
    int rc = mc_store_setup(s, "127.0.0.1", argv[2], strtoull(argv[3], NULL, 10), 32u << 20, th_protocol(),
                            NULL, argv[1]);
    if (rc) {
        printf("FAIL %d\n", rc);
        mc_store_destroy(s);
        return 1;
    }
    char name[256];
    mc_store_get_hostname(s, name, sizeof name);
    printf("READY %s\n", name);

    char line[1024];
    while (fgets(line, sizeof line, stdin)) {
        char cmd[16], key[512], pref[256] = "";
        unsigned long long size = 0, seed = 0;
        int n = sscanf(line, "%15s %511s %llu %llu %255s", cmd, key, &size, &seed, pref);
        if (n >= 1 && strcmp(cmd, "QUIT") == 0) {
            printf("OK\n");
            break;
        }
        if (n < 4 || size > (64ull << 20)) {
            printf("ERR bad command\n");
            continue;
        }
        char *buf = malloc(size ? size : 1), *want = malloc(size ? size : 1);
        if (!buf || !want) {
            printf("ERR memory\n");
            free(buf);
            free(want);
            continue;
        }
        th_pattern(want, size, seed);
        if (strcmp(cmd, "PUT") == 0 || strcmp(cmd, "PUTPIN") == 0) {
            mc_store_config_t cfg;
            mc_store_config_init(&cfg);
            cfg.with_hard_pin = strcmp(cmd, "PUTPIN") == 0;
            const char *p = pref;
            if (pref[0]) cfg.preferred_segments = &p, cfg.preferred_segments_count = 1;
            printf("RC %d\n", mc_store_put(s, key, want, size, &cfg));
        } else if (strcmp(cmd, "GET") == 0) {
            int64_t got = mc_store_get_into(s, key, buf, size);
            size_t bad = 0;
            while (got == (int64_t)size && bad < size && buf[bad] == want[bad])
                bad++;
            if (got == (int64_t)size && bad < size)
                printf("BAD %zu\n", bad);
            else
                printf("RC %" PRId64 "\n", got);
        } else {
            printf("ERR unknown command\n");
        }
        free(buf);
        free(want);
    }
    mc_store_destroy(s);
    return 0;
}
