/* net_tls_bench: the CPU cost of the control plane's TLS (net_tls.h) per
 * request, with no network and no scheduler in the figure: one thread runs a
 * server and a client connection of the memory-BIO engine against each other
 * and times round trips (the client encrypts a request, the server decrypts
 * it, encrypts a reply, the client decrypts it: what TLS adds to one master
 * RPC) and full handshakes (what it adds to one new connection). The
 * single-thread memcpy of the same bytes is printed next to it.
 *
 *   net_tls_bench --cert F --key F --ca F [--request BYTES] [--reply BYTES]
 *                 [--iters N] [--json]
 * The certificate must name 127.0.0.1 (it is both ends' certificate). */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "net_tls.h"

static uint64_t cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Moves what a has for the wire into b. Returns 0 or -1. */
static int move(mc_tls_conn_t *a, mc_tls_conn_t *b)
{
    uint8_t *p;
    size_t n;
    if (mc_tls_conn_take_out(a, &p, &n)) return -1;
    int rc = n ? mc_tls_conn_feed(b, p, n) : 0;
    free(p);
    return rc;
}

/* Runs the handshake of a fresh pair. Returns 0, or -1 with why on stderr. */
static int pair(mc_tls_conn_t **s, mc_tls_conn_t **c)
{
    char err[512];
    uint8_t buf[16];
    *s = mc_tls_conn_new(1, NULL, err, sizeof err);
    *c = *s ? mc_tls_conn_new(0, "127.0.0.1", err, sizeof err) : NULL;
    if (!*c) {
        fprintf(stderr, "net_tls_bench: %s\n", err);
        return -1;
    }
    for (int i = 0; i < 10 && !(mc_tls_conn_ready(*s) && mc_tls_conn_ready(*c)); i++) {
        if (mc_tls_conn_read(*c, buf, sizeof buf) < 0 || move(*c, *s) ||
            mc_tls_conn_read(*s, buf, sizeof buf) < 0 || move(*s, *c))
            break;
    }
    mc_tls_conn_read(*c, buf, sizeof buf); /* the client's last word, if any */
    if (mc_tls_conn_ready(*s) && mc_tls_conn_ready(*c)) return 0;
    fprintf(stderr, "net_tls_bench: handshake failed: %s%s\n", mc_tls_conn_why(*s),
            mc_tls_conn_why(*c));
    return -1;
}

/* Sends n bytes of p from a to b and reads them all into q. Returns 0 or -1. */
static int send_one(mc_tls_conn_t *a, mc_tls_conn_t *b, const uint8_t *p, uint8_t *q, size_t n)
{
    if (mc_tls_conn_write(a, p, n) || move(a, b)) return -1;
    for (size_t have = 0; have < n;) {
        ssize_t k = mc_tls_conn_read(b, q + have, n - have);
        if (k <= 0) return -1;
        have += (size_t)k;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL, *ca = NULL;
    size_t req = 2048, rep = 1024;
    long iters = 200000;
    int json = 0;
    static const struct option lo[] = {{"cert", 1, 0, 'c'},    {"key", 1, 0, 'k'},
                                       {"ca", 1, 0, 'a'},      {"request", 1, 0, 'q'},
                                       {"reply", 1, 0, 'r'},   {"iters", 1, 0, 'n'},
                                       {"json", 0, 0, 'j'},    {0, 0, 0, 0}};
    for (int o; (o = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
        switch (o) {
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 'a': ca = optarg; break;
        case 'q': req = strtoul(optarg, NULL, 10); break;
        case 'r': rep = strtoul(optarg, NULL, 10); break;
        case 'n': iters = strtol(optarg, NULL, 10); break;
        case 'j': json = 1; break;
        default:
            fprintf(stderr, "usage: net_tls_bench --cert F --key F --ca F [--request BYTES] "
                            "[--reply BYTES] [--iters N] [--json]\n");
            return 2;
        }
    }
    char err[8192];
    if (!cert || !key || !ca || !req || !rep || iters < 1 ||
        mc_tls_use_files(cert, key, ca, err, sizeof err)) {
        fprintf(stderr, "net_tls_bench: %s\n",
                cert && key && ca ? err : "--cert, --key and --ca are needed");
        return 2;
    }
    uint8_t *a = malloc(req), *b = malloc(rep), *qa = malloc(req), *qb = malloc(rep);
    if (!a || !b || !qa || !qb) return 1;
    mc_bench_pattern(a, req);
    mc_bench_pattern(b, rep);
    mc_tls_conn_t *s, *c;

    long hs = iters / 200 > 10 ? iters / 200 : 10;
    uint64_t t0 = cpu_ns();
    for (long i = 0; i < hs; i++) {
        if (pair(&s, &c)) return 1;
        mc_tls_conn_free(s);
        mc_tls_conn_free(c);
    }
    double hs_us = (double)(cpu_ns() - t0) / 1e3 / (double)hs;

    if (pair(&s, &c)) return 1;
    t0 = cpu_ns();
    for (long i = 0; i < iters; i++)
        if (send_one(c, s, a, qa, req) || send_one(s, c, b, qb, rep)) {
            fprintf(stderr, "net_tls_bench: round trip %ld failed\n", i);
            return 1;
        }
    double rt_ns = (double)(cpu_ns() - t0) / (double)iters;
    if (memcmp(a, qa, req) || memcmp(b, qb, rep)) {
        fprintf(stderr, "net_tls_bench: bytes differ\n");
        return 1;
    }
    mc_tls_conn_free(s);
    mc_tls_conn_free(c);
    size_t mlen = 64u << 20;
    char *mbuf = malloc(mlen);
    double memcpy_gbps = mbuf ? mc_bench_memcpy_gbps(mbuf, mlen, req) : 0;
    free(mbuf);
    double gbps = (double)(req + rep) / rt_ns;
    if (json)
        printf("{\"bench\":\"net_tls\",\"request\":%zu,\"reply\":%zu,\"round_trips\":%ld,"
               "\"cpu_ns_per_round_trip\":%.0f,\"tls_gbps\":%.3f,\"cpu_us_per_handshake\":%.1f,"
               "\"memcpy_gbps\":%.2f}\n",
               req, rep, iters, rt_ns, gbps, hs_us, memcpy_gbps);
    else
        printf("net_tls: request %zu B + reply %zu B: %.0f ns CPU per round trip (both ends, "
               "%.3f GB/s through TLS); handshake %.1f us CPU (both ends); memcpy %.2f GB/s\n",
               req, rep, rt_ns, gbps, hs_us, memcpy_gbps);
    free(a);
    free(b);
    free(qa);
    free(qb);
    return 0;
}
