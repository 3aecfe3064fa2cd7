/* meta_bench: latency of metadata get and put (the transfer engine's
 * descriptor records) through mc_meta on each backend in the same run:
 *   http   the HTTP metadata server core (src/metasrv) embedded in this process
 *   etcd   an etcd member: --etcd <endpoints>, or one spawned from $PATH
 *   redis  a redis-server: --redis host:port, or one spawned from $PATH
 * (a backend whose server is neither given nor installed is left out).
 *
 *   meta_bench [--ops N] [--value_size BYTES] [--etcd EPS] [--redis HOST:PORT]
 *
 * Every op is one synchronous call from one thread on loopback, so the figures
 * are round-trip latencies. One JSON line per backend and op, then a summary
 * line with the etcd/http ratios of the median (target: within 2x). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "base_time.h"
#include "bench_util.h"
#include "metasrv.h"
#include "mooncake/meta.h"

typedef struct {
    const char *name;
    char conn[256];
    double p50[2], p99[2], mean[2]; /* [0] get, [1] put */
    int ok;
} backend_t;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &al)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int in_path(const char *exe)
{
    const char *path = getenv("PATH");
    if (!path) return 0;
    char *p = strdup(path), *save = NULL;
    int found = 0;
    for (char *d = strtok_r(p, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", d, exe);
        found = access(full, X_OK) == 0;
    }
    free(p);
    return found;
}

static pid_t spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) dup2(nul, 0);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Readiness: mc_meta_get of a key nobody writes answers -ENOENT. */
static int wait_ready(const char *conn, pid_t pid)
{
    for (int i = 0; i < 600; i++) {
        if (pid > 0 && waitpid(pid, NULL, WNOHANG) == pid) return -1;
        mc_meta_t *m = NULL;
        char *v = NULL;
        int rc = mc_meta_open(conn, &m);
        if (rc == 0) rc = mc_meta_get(m, "mooncake/bench-readiness", &v);
        free(v);
        mc_meta_close(m);
        if (rc == -ENOENT || rc == 0) return 0;
        usleep(50 * 1000);
    }
    return -1;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* Times ops gets and puts of distinct keys holding value; fills b. */
static int run(backend_t *b, int ops, const char *value)
{
    mc_meta_t *m = NULL;
    if (mc_meta_open(b->conn, &m)) return -1;
    mc_bench_hist_t *h = calloc(2, sizeof *h);
    double sum[2] = {0, 0};
    int rc = 0;
    char key[128];
    for (int warm = 0; warm < 50 && rc == 0; warm++) {
        snprintf(key, sizeof key, "mooncake/ram/bench-warm-%d", warm);
        rc = mc_meta_put(m, key, value);
    }
    for (int i = 0; i < ops && rc == 0; i++) {
        snprintf(key, sizeof key, "mooncake/ram/bench-%d", i);
        uint64_t t0 = mc_now_ns();
        rc = mc_meta_put(m, key, value);
        uint64_t dt = mc_now_ns() - t0;
        mc_bench_hist_add(&h[1], dt);
        sum[1] += (double)dt / 1e3;
    }
    for (int i = 0; i < ops && rc == 0; i++) {
        snprintf(key, sizeof key, "mooncake/ram/bench-%d", i);
        char *v = NULL;
        uint64_t t0 = mc_now_ns();
        rc = mc_meta_get(m, key, &v);
        uint64_t dt = mc_now_ns() - t0;
        if (rc == 0 && strcmp(v, value)) rc = -EILSEQ; /* byte for byte */
        free(v);
        mc_bench_hist_add(&h[0], dt);
        sum[0] += (double)dt / 1e3;
    }
    for (int i = 0; i < ops; i++) {
        snprintf(key, sizeof key, "mooncake/ram/bench-%d", i);
        mc_meta_del(m, key);
    }
    for (int warm = 0; warm < 50; warm++) {
        snprintf(key, sizeof key, "mooncake/ram/bench-warm-%d", warm);
        mc_meta_del(m, key);
    }
    for (int o = 0; o < 2; o++) {
        b->p50[o] = mc_bench_hist_quantile_us(&h[o], 0.5);
        b->p99[o] = mc_bench_hist_quantile_us(&h[o], 0.99);
        b->mean[o] = ops ? sum[o] / ops : 0;
    }
    free(h);
    mc_meta_close(m);
    b->ok = rc == 0;
    if (rc) fprintf(stderr, "meta_bench: %s failed: %s\n", b->name, strerror(-rc));
    return rc;
}

static size_t sink_cb(char *p, size_t size, size_t n, void *arg)
{
    (void)p, (void)arg;
    return size * n;
}

/* etcd's own floor: the same range request as a fixed body on one reused curl
 * handle (no JSON building or parsing, no base64 on our side). p50 in us. */
static double etcd_floor_p50(const char *conn, int ops)
{
    const char *ep = conn + strlen("etcd://");
    char url[300];
    snprintf(url, sizeof url, "http://%.*s/v3/kv/range", (int)strcspn(ep, ";,"), ep);
    CURL *c = curl_easy_init();
    if (!c) return 0;
    mc_bench_hist_t *h = calloc(1, sizeof *h);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"key\":\"bW9vbmNha2UvcmFtL2JlbmNoLTA=\"}");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_cb);
    for (int i = 0; i < ops + 50; i++) {
        uint64_t t0 = mc_now_ns();
        if (curl_easy_perform(c) != CURLE_OK) break;
        if (i >= 50) mc_bench_hist_add(h, mc_now_ns() - t0);
    }
    double p50 = mc_bench_hist_quantile_us(h, 0.5);
    free(h);
    curl_easy_cleanup(c);
    return p50;
}

int main(int argc, char **argv)
{
    int ops = 2000;
    size_t vsize = 1024;
    const char *etcd_eps = NULL, *redis_hp = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ops") && i + 1 < argc)
            ops = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--value_size") && i + 1 < argc)
            vsize = strtoul(argv[++i], 0, 0);
        else if (!strcmp(argv[i], "--etcd") && i + 1 < argc)
            etcd_eps = argv[++i];
        else if (!strcmp(argv[i], "--redis") && i + 1 < argc)
            redis_hp = argv[++i];
        else {
            fprintf(stderr, "usage: meta_bench [--ops N] [--value_size BYTES] [--etcd EPS] "
                            "[--redis HOST:PORT]\n");
            return 2;
        }
    }
    if (ops < 1 || vsize < 16 || vsize > (16u << 20)) return 2;
    setenv("MC_LOG_LEVEL", getenv("MC_LOG_LEVEL") ? getenv("MC_LOG_LEVEL") : "error", 0);
    signal(SIGPIPE, SIG_IGN);
    /* a JSON text of the requested size, like a descriptor */
    char *value = malloc(vsize + 1);
    int n = snprintf(value, vsize + 1, "{\"name\":\"bench\",\"pad\":\"");
    memset(value + n, 'x', vsize - (size_t)n - 2);
    memcpy(value + vsize - 2, "\"}", 3);

    char tmp[] = "/tmp/mc-meta-bench-XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    backend_t be[3] = {{.name = "http"}, {.name = "etcd"}, {.name = "redis"}};
    pid_t etcd_pid = -1, redis_pid = -1;

    mc_metasrv_t *srv = NULL;
    if (mc_metasrv_start("127.0.0.1", 0, &srv) == 0)
        snprintf(be[0].conn, sizeof be[0].conn, "http://127.0.0.1:%u/metadata",
                 mc_metasrv_port(srv));

    if (etcd_eps) {
        snprintf(be[1].conn, sizeof be[1].conn, "etcd://%s", etcd_eps);
    } else if (in_path("etcd")) {
        int cp = free_port(), pp = free_port();
        char cu[64], pu[64], ic[96], dd[300], log[300];
        snprintf(cu, sizeof cu, "http://127.0.0.1:%d", cp);
        snprintf(pu, sizeof pu, "http://127.0.0.1:%d", pp);
        snprintf(ic, sizeof ic, "default=%s", pu);
        snprintf(dd, sizeof dd, "%s/etcd", tmp);
        snprintf(log, sizeof log, "%s/etcd.log", tmp);
        char *av[] = {"etcd",  "--data-dir",
                      dd,      "--listen-client-urls",
                      cu,      "--advertise-client-urls",
                      cu,      "--listen-peer-urls",
                      pu,      "--initial-advertise-peer-urls",
                      pu,      "--initial-cluster",
                      ic,      "--log-level",
                      "error", "--logger",
                      "zap",   NULL};
        etcd_pid = spawn(av, log);
        snprintf(be[1].conn, sizeof be[1].conn, "etcd://127.0.0.1:%d", cp);
    }
    if (redis_hp) {
        snprintf(be[2].conn, sizeof be[2].conn, "redis://%s", redis_hp);
    } else if (in_path("redis-server")) {
        int rp = free_port();
        char ps[16], log[300];
        snprintf(ps, sizeof ps, "%d", rp);
        snprintf(log, sizeof log, "%s/redis.log", tmp);
        char *av[] = {"redis-server", "--port", ps,      "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no",     "--dir", tmp,      NULL};
        redis_pid = spawn(av, log);
        snprintf(be[2].conn, sizeof be[2].conn, "redis://127.0.0.1:%d", rp);
    }

    for (int i = 0; i < 3; i++) {
        if (!be[i].conn[0]) continue;
        if (wait_ready(be[i].conn, i == 1 ? etcd_pid : i == 2 ? redis_pid : -1)) {
            fprintf(stderr, "meta_bench: %s (%s) not reachable; left out\n", be[i].name,
                    be[i].conn);
            continue;
        }
        run(&be[i], ops, value);
        for (int o = 0; o < 2 && be[i].ok; o++)
            printf("{\"bench\":\"meta\",\"backend\":\"%s\",\"op\":\"%s\",\"ops\":%d,"
                   "\"value_size\":%zu,\"mean_us\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f}\n",
                   be[i].name, o ? "put" : "get", ops, vsize, be[i].mean[o], be[i].p50[o],
                   be[i].p99[o]);
        fflush(stdout);
    }
    if (be[0].ok && be[1].ok)
        printf("{\"bench\":\"meta\",\"summary\":true,\"etcd_over_http_get_p50\":%.2f,"
               "\"etcd_over_http_put_p50\":%.2f,\"target_max\":2.0,"
               "\"etcd_gateway_floor_get_p50_us\":%.1f}\n",
               be[1].p50[0] / be[0].p50[0], be[1].p50[1] / be[0].p50[1],
               etcd_floor_p50(be[1].conn, ops));

    if (etcd_pid > 0) kill(etcd_pid, SIGTERM), waitpid(etcd_pid, NULL, 0);
    if (redis_pid > 0) kill(redis_pid, SIGTERM), waitpid(redis_pid, NULL, 0);
    if (srv) mc_metasrv_stop(srv);
    nftw(tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(value);
    return be[0].ok && be[1].ok ? 0 : 1;
}
