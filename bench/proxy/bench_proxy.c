/* bench_proxy: what mooncake_proxy costs, measured against the same client
 * talking to a backend directly.
 *
 * It starts two instantly-answering OpenAI-like backends in this process
 * (libmicrohttpd, one polling thread each; the prefill one also answers the
 * bootstrap /query), spawns the mooncake_proxy binary in front of them, and
 * runs keep-alive libcurl clients:
 *   latency: sequential requests alternating direct / through the proxy (so both
 *            series see the same machine noise), p50/p99 of the whole answer;
 *   rate:    C clients in parallel for D seconds, requests per second, taken in
 *            S slices alternating direct / through the proxy (same reason);
 * once straight to the decode backend ("direct") and once through the proxy,
 * for a small non-streamed JSON answer and for a 1000-chunk SSE stream.
 * Through the proxy every request makes two upstream requests (prefill and
 * decode), so the direct figure is the physical reference of the same run.
 * During each rate run it also records the CPU time every party used (client
 * threads: getrusage(RUSAGE_THREAD); backend threads: /proc/self/task/TID/
 * schedstat; proxy: /proc/PID/schedstat, with the user/kernel split of its stat;
 * the whole machine: /proc/stat) and reports it per request, so the CPU budget
 * that bounds the ratio is in the same output.
 * --proxies P starts P proxy processes and spreads the clients over them (an
 * upper bound for what a P-thread proxy could do on this machine; latency uses
 * the first). Output: one JSON object on stdout.
 *
 * usage: bench_proxy [--proxy PATH] [--mode connector|toy|demo] [--clients C]
 *                    [--seconds D] [--slices S] [--requests N] [--chunks K]
 *                    [--proxies P] [--scheduling POLICY] [--prompt-tokens N [--kv-events 1]]
 *                    [--only non_streaming|streaming|side_by_side]
 *                    [--vllm DIR [--python PY] [--vllm-requests N] [--vllm-log FILE]]
 * --vllm DIR (an unpacked vLLM source distribution) adds the side by side: for
 * each of vLLM's three Python proxies, ours in the matching mode and theirs in
 * front of the same backends, driven by the same clients in turns (latency and
 * rate slices alternate direct / ours / theirs), non-streaming requests; the
 * ratios ours/theirs of requests/s, added p50/p99 and proxy CPU per request.
 * --prompt-tokens N sends the non-streamed prompt as N token ids (what the precise
 * cache_aware mode matches); --kv-events 1 adds a fake vLLM KV event publisher
 * (bench_proxy_kvev.c) that tells the proxy, before the runs, that the prefill
 * backend holds all the prompt's 16-token blocks, so every request is matched
 * block by block against the event index: the cost of the precise mode. */
#include "base_time.h"
#ifdef BENCH_KVEV
#include "bench_proxy_kvev.h"
#endif

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int g_chunks = 1000;
static const char ANSWER[] =
    "{\"id\":\"cmpl-bench\",\"object\":\"text_completion\",\"model\":\"bench-model\","
    "\"choices\":[{\"index\":0,\"text\":\"Paris is the capital of France.\",\"finish_reason\":"
    "\"length\"}],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":8,\"total_tokens\":15}}";
/* The prefill backend's answer to a prefill leg (one that carries
 * kv_transfer_params): what a vLLM prefiller returns for the decode leg. */
static const char ANSWER_KV[] =
    "{\"id\":\"cmpl-bench\",\"object\":\"text_completion\",\"model\":\"bench-model\","
    "\"choices\":[{\"index\":0,\"text\":\"P\",\"finish_reason\":\"length\"}],"
    "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":1,\"total_tokens\":8},"
    "\"kv_transfer_params\":{\"do_remote_prefill\":true,\"do_remote_decode\":false,"
    "\"remote_engine_id\":\"bench-engine\",\"remote_block_ids\":[1,2,3],"
    "\"remote_host\":\"127.0.0.1\",\"remote_port\":5600}}";
static const char EVENT[] =
    "data: {\"id\":\"cmpl-bench\",\"choices\":[{\"index\":0,\"text\":\"tok\"}]}"
    "\n\n";
static const char DONE[] = "data: [DONE]\n\n";

/* ------------------------------------------------------------ backend */

typedef struct {
    int n;
} sse_t;

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    sse_t *s = cls;
    (void)pos;
    if (s->n > g_chunks) return MHD_CONTENT_READER_END_OF_STREAM;
    const char *src = s->n < g_chunks ? EVENT : DONE;
    size_t len = s->n < g_chunks ? sizeof EVENT - 1 : sizeof DONE - 1;
    if (len > max) return 0;
    memcpy(buf, src, len);
    s->n++;
    return (ssize_t)len; /* one SSE event per HTTP chunk */
}

typedef struct {
    char *p;
    size_t len;
} body_t;

static enum MHD_Result backend(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *data,
                               size_t *size, void **con_cls)
{
    (void)cls, (void)version;
    body_t *b = *con_cls;
    if (strcmp(method, "POST") == 0) {
        if (!b) {
            b = calloc(1, sizeof *b);
            *con_cls = b;
            return b ? MHD_YES : MHD_NO;
        }
        if (*size) {
            char *np = realloc(b->p, b->len + *size + 1);
            if (!np) return MHD_NO;
            memcpy(np + b->len, data, *size);
            b->p = np;
            b->len += *size;
            b->p[b->len] = 0;
            *size = 0;
            return MHD_YES;
        }
    }
    struct MHD_Response *r;
    const char *ct = "application/json";
    if (strcmp(url, "/query") == 0) {
        static const char q[] = "{\"0\":{\"engine_id\":\"bench-engine\",\"worker_addr\":{}}}";
        r = MHD_create_response_from_buffer(sizeof q - 1, (void *)q, MHD_RESPMEM_PERSISTENT);
    } else if (strcmp(url, "/v1/models") == 0) {
        static const char m[] = "{\"object\":\"list\",\"data\":[{\"id\":\"bench-model\"}]}";
        r = MHD_create_response_from_buffer(sizeof m - 1, (void *)m, MHD_RESPMEM_PERSISTENT);
    } else if (strcmp(url, "/health") == 0) {
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    } else if (b && b->p && strstr(b->p, "\"stream\":true")) {
        sse_t *s = calloc(1, sizeof *s);
        if (!s) return MHD_NO;
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_reader, s, free);
        ct = "text/event-stream";
    } else if (cls && b && b->p && strstr(b->p, "kv_transfer_params")) { /* a prefill leg */
        r = MHD_create_response_from_buffer(sizeof ANSWER_KV - 1, (void *)ANSWER_KV,
                                            MHD_RESPMEM_PERSISTENT);
    } else {
        r = MHD_create_response_from_buffer(sizeof ANSWER - 1, (void *)ANSWER,
                                            MHD_RESPMEM_PERSISTENT);
    }
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ct);
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static void backend_done(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    body_t *b = *con_cls;
    if (b) {
        free(b->p);
        free(b);
    }
    *con_cls = NULL;
}

/* is_prefill: the daemon answers prefill legs with kv_transfer_params. */
static struct MHD_Daemon *backend_start(uint16_t *port, int is_prefill)
{
    static int prefill_tag;
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL, backend,
                         is_prefill ? &prefill_tag : NULL, MHD_OPTION_NOTIFY_COMPLETED, backend_done, NULL,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000, MHD_OPTION_END);
    if (!d) return NULL;
    *port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    return d;
}

/* ---------------------------------------------------------- CPU accounting */

typedef struct {
    double user, sys; /* seconds, from clock ticks: only their ratio is used */
    double run;       /* seconds on a CPU, to the nanosecond where the kernel has it */
} cpu_t;

/* CPU time of a task: dir is /proc/PID or /proc/self/task/TID. utime and stime
 * (fields 14 and 15 of stat) give the user / kernel split; schedstat (a
 * thread's, or a process's main thread's) gives the run time in ns. */
static cpu_t task_cpu(const char *dir)
{
    cpu_t c = {0, 0, 0};
    char path[96], buf[1024];
    snprintf(path, sizeof path, "%s/stat", dir);
    FILE *f = fopen(path, "r");
    if (!f) return c;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut = 0, st = 0, ns = 0;
    if (p &&
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2) {
        double hz = (double)sysconf(_SC_CLK_TCK);
        c.user = (double)ut / hz;
        c.sys = (double)st / hz;
        c.run = c.user + c.sys;
    }
    snprintf(path, sizeof path, "%s/schedstat", dir);
    f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%llu", &ns) == 1) c.run = (double)ns / 1e9;
        fclose(f);
    }
    return c;
}

/* Busy and total CPU seconds of the whole machine (first line of /proc/stat). */
static void machine_cpu(double *busy, double *total)
{
    unsigned long long v[10] = {0};
    *busy = *total = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 8) return;
    double hz = (double)sysconf(_SC_CLK_TCK);
    unsigned long long idle = v[3] + v[4], all = 0;
    for (int i = 0; i < 8; i++) /* guest time is already counted in user */
        all += v[i];
    *total = (double)all / hz;
    *busy = (double)(all - idle) / hz;
}

#define MAX_TIDS 8
static pid_t g_backend_tids[2][MAX_TIDS]; /* threads of the prefill and decode backends */
static int g_n_backend_tids[2];
#define MAX_PROXIES 4
static pid_t g_proxy_pids[MAX_PROXIES];
static int g_n_proxies;

/* Thread ids of this process, to find the threads a backend daemon started. */
static int list_tids(pid_t *out, int max)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max)
        if (e->d_name[0] != '.') out[n++] = (pid_t)atoi(e->d_name);
    closedir(d);
    return n;
}

static cpu_t cpu_add(cpu_t a, cpu_t b)
{
    return (cpu_t){a.user + b.user, a.sys + b.sys, a.run + b.run};
}

static cpu_t backend_cpu(int b)
{
    cpu_t t = {0, 0, 0};
    for (int i = 0; i < g_n_backend_tids[b]; i++) {
        char dir[64];
        snprintf(dir, sizeof dir, "/proc/self/task/%d", (int)g_backend_tids[b][i]);
        t = cpu_add(t, task_cpu(dir));
    }
    return t;
}

/* CPU of a whole process: user/kernel ticks of /proc/PID/stat (all threads,
 * live and dead), run time summed over the schedstat of its live threads (ours
 * is one thread; a Python proxy may run helper threads). */
static cpu_t process_cpu(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d", (int)pid);
    cpu_t t = task_cpu(dir), run = {0, 0, 0};
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    if (!d) return t;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            char td[320];
            snprintf(td, sizeof td, "/proc/%d/task/%s", (int)pid, e->d_name);
            run = cpu_add(run, task_cpu(td));
        }
    closedir(d);
    if (run.run > 0) t.run = run.run;
    return t;
}

/* CPU of the proxies under measurement (g_proxy_pids). */
static cpu_t proxy_cpu(void)
{
    cpu_t t = {0, 0, 0};
    for (int i = 0; i < g_n_proxies; i++)
        t = cpu_add(t, process_cpu(g_proxy_pids[i]));
    return t;
}

/* CPU seconds each party used during a rate run. */
typedef struct {
    cpu_t client, backend[2], proxy;
    double machine_busy, machine_total;
} cpu_use_t;

static void cpu_snapshot(cpu_use_t *u)
{
    memset(u, 0, sizeof *u);
    u->backend[0] = backend_cpu(0);
    u->backend[1] = backend_cpu(1);
    u->proxy = proxy_cpu();
    machine_cpu(&u->machine_busy, &u->machine_total);
}

static cpu_t cpu_sub(cpu_t a, cpu_t b)
{
    return (cpu_t){a.user - b.user, a.sys - b.sys, a.run - b.run};
}

static cpu_t thread_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    cpu_t c = {(double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6, 0};
    c.run = c.user + c.sys;
    return c;
}

/* ------------------------------------------------------------- client */

typedef struct {
    size_t bytes;
} sink_t;

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    ((sink_t *)ud)->bytes += s * n;
    return s * n;
}

typedef struct {
    CURL *e;
    sink_t sk;
    struct curl_slist *h;
} client_t;

static int client_init(client_t *c, const char *url, const char *body)
{
    memset(c, 0, sizeof *c);
    c->e = curl_easy_init();
    if (!c->e) return -1;
    c->h = curl_slist_append(NULL, "Content-Type: application/json");
    c->h = curl_slist_append(c->h, "Expect:");
    curl_easy_setopt(c->e, CURLOPT_URL, url);
    curl_easy_setopt(c->e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->e, CURLOPT_HTTPHEADER, c->h);
    curl_easy_setopt(c->e, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c->e, CURLOPT_WRITEDATA, &c->sk);
    curl_easy_setopt(c->e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c->e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->e, CURLOPT_TIMEOUT, 30L);
    return 0;
}

static void client_free(client_t *c)
{
    curl_easy_cleanup(c->e);
    curl_slist_free_all(c->h);
}

/* One request; returns its duration in ns, or 0 on failure. */
static uint64_t client_do(client_t *c, size_t want_min)
{
    c->sk.bytes = 0;
    uint64_t t0 = mc_now_ns();
    CURLcode rc = curl_easy_perform(c->e);
    uint64_t dt = mc_now_ns() - t0;
    long st = 0;
    curl_easy_getinfo(c->e, CURLINFO_RESPONSE_CODE, &st);
    if (rc != CURLE_OK || st != 200 || c->sk.bytes < want_min) return 0;
    return dt ? dt : 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double p50_us, p99_us, rps;
    long errors;
    long done;      /* requests of the rate run */
    double elapsed; /* seconds of the rate run */
    cpu_use_t cpu;  /* CPU seconds used during the rate run, by party */
} result_t;

static void percentiles(uint64_t *t, int n, result_t *out)
{
    qsort(t, (size_t)n, sizeof *t, cmp_u64);
    out->p50_us = (double)t[n / 2] / 1e3;
    out->p99_us = (double)t[(n * 99) / 100] / 1e3;
}

/* Sequential requests to n_urls URLs in turn (direct, proxy, ...), so that all
 * series see the same noise of this shared machine; p50/p99 into out[i]. */
static int latency_multi(const char *const *urls, int n_urls, const char *body, size_t want,
                         int n, result_t *const *out)
{
    client_t c[4];
    uint64_t *t[4];
    if (n_urls > 4) return -1;
    for (int u = 0; u < n_urls; u++) {
        if (client_init(&c[u], urls[u], body)) return -1;
        t[u] = calloc((size_t)n, sizeof *t[u]);
        if (!t[u]) return -1;
    }
    for (int i = 0; i < n / 5 + 10; i++) /* warm-up */
        for (int u = 0; u < n_urls; u++)
            client_do(&c[u], want);
    for (int i = 0; i < n; i++)
        for (int u = 0; u < n_urls; u++) {
            t[u][i] = client_do(&c[u], want);
            if (!t[u][i]) out[u]->errors++, t[u][i] = UINT64_MAX;
        }
    for (int u = 0; u < n_urls; u++) {
        percentiles(t[u], n, out[u]);
        free(t[u]);
        client_free(&c[u]);
    }
    return 0;
}

static int latency(const char *direct, const char *via, const char *body, size_t want, int n,
                   result_t *d, result_t *v)
{
    const char *urls[2] = {direct, via};
    result_t *out[2] = {d, v};
    return latency_multi(urls, 2, body, want, n, out);
}

typedef struct {
    const char *url, *body;
    size_t want;
    atomic_int *go, *ready;
    uint64_t end_ns;
    long done, errors;
    cpu_t cpu; /* this client thread's CPU during the run */
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    client_t c;
    if (client_init(&c, w->url, w->body)) return NULL;
    client_do(&c, w->want);
    atomic_fetch_add(w->ready, 1);
    while (!atomic_load(w->go))
        usleep(100);
    cpu_t c0 = thread_cpu();
    while (mc_now_ns() < w->end_ns) {
        if (client_do(&c, w->want))
            w->done++;
        else
            w->errors++;
    }
    w->cpu = cpu_sub(thread_cpu(), c0);
    client_free(&c);
    return NULL;
}

/* One slice of a rate run: C clients for D seconds. Adds the requests, the
 * time and the CPU each party used to *out (rps is computed by the caller). */
static int rate(const char *const *urls, int n_urls, const char *body, size_t want, int clients,
                double secs, result_t *out)
{
    pthread_t th[64];
    worker_t w[64];
    atomic_int go = 0, ready = 0;
    if (clients > 64) clients = 64;
    uint64_t start = 0;
    for (int i = 0; i < clients; i++) {
        w[i] = (worker_t){
            .url = urls[i % n_urls], .body = body, .want = want, .go = &go, .ready = &ready};
        w[i].end_ns = UINT64_MAX;
    }
    for (int i = 0; i < clients; i++)
        pthread_create(&th[i], NULL, worker, &w[i]);
    while (atomic_load(&ready) < clients) /* each client has connected and done one request */
        usleep(100);
    cpu_use_t u0, u1;
    cpu_snapshot(&u0);
    start = mc_now_ns();
    for (int i = 0; i < clients; i++)
        w[i].end_ns = start + (uint64_t)(secs * 1e9);
    atomic_store(&go, 1);
    cpu_t cl = {0, 0, 0};
    for (int i = 0; i < clients; i++) {
        pthread_join(th[i], NULL);
        out->done += w[i].done;
        out->errors += w[i].errors;
        cl = cpu_add(cl, w[i].cpu);
    }
    out->elapsed += (double)(mc_now_ns() - start) / 1e9;
    cpu_snapshot(&u1);
    cpu_use_t *c = &out->cpu;
    c->client = cpu_add(c->client, cl);
    for (int b = 0; b < 2; b++)
        c->backend[b] = cpu_add(c->backend[b], cpu_sub(u1.backend[b], u0.backend[b]));
    c->proxy = cpu_add(c->proxy, cpu_sub(u1.proxy, u0.proxy));
    c->machine_busy += u1.machine_busy - u0.machine_busy;
    c->machine_total += u1.machine_total - u0.machine_total;
    return 0;
}

/* Request rate straight to the backend (*d) and through the proxy (*v), in
 * alternating slices, so that both see the same noise of this shared machine. */
static void rates(const char *direct, const char *const *via, int n_via, const char *body,
                  size_t want, int clients, double secs, int slices, result_t *d, result_t *v)
{
    for (int i = 0; i < slices; i++) {
        rate(&direct, 1, body, want, clients, secs / slices, d);
        rate(via, n_via, body, want, clients, secs / slices, v);
    }
    d->rps = d->elapsed > 0 ? (double)d->done / d->elapsed : 0;
    v->rps = v->elapsed > 0 ? (double)v->done / v->elapsed : 0;
}

/* --------------------------------------------------------- proxy process */

static const char *g_sched = "round_robin"; /* --scheduling of our proxy */
static int g_prompt_tokens;                  /* --prompt-tokens: the prompt as token ids */
static int g_kvev;                           /* --kv-events: publish the prompt's blocks */
static uint16_t g_kv_port;                   /* the fake publisher's port */
#define KV_BLOCK 16

static uint32_t prompt_token(int i)
{
    return (uint32_t)(i * 7919 % 50000) + 3;
}

/* The prefill (pp) and decode (dp) backends' addresses in the spellings the
 * proxies' command lines take: port, URL, host:port. */
typedef struct {
    char ps[16], ds[16], purl[64], durl[64], phost[64], dhost[64];
} backend_args_t;

static void backend_args(backend_args_t *b, uint16_t pp, uint16_t dp)
{
    snprintf(b->ps, sizeof b->ps, "%u", pp);
    snprintf(b->ds, sizeof b->ds, "%u", dp);
    snprintf(b->purl, sizeof b->purl, "http://127.0.0.1:%u", pp);
    snprintf(b->durl, sizeof b->durl, "http://127.0.0.1:%u", dp);
    snprintf(b->phost, sizeof b->phost, "127.0.0.1:%u", pp);
    snprintf(b->dhost, sizeof b->dhost, "127.0.0.1:%u", dp);
}

static pid_t spawn_proxy(const char *bin, const char *mode, uint16_t pp, uint16_t dp,
                         uint16_t *port)
{
    int fds[2];
    if (pipe(fds) != 0) return -1;
    backend_args_t b;
    backend_args(&b, pp, dp);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        setenv("MC_LOG_LEVEL", "warn", 1);
        char kv[128];
        const char *av[32];
        int n = 0;
        av[n++] = bin;
        av[n++] = "--port";
        av[n++] = "0";
        if (strcmp(mode, "toy") == 0) {
            const char *t[] = {"--prefiller-host", "127.0.0.1", "--prefiller-port", b.ps,
                               "--decoder-host",   "127.0.0.1", "--decoder-port",   b.ds};
            for (size_t k = 0; k < sizeof t / sizeof *t; k++)
                av[n++] = t[k];
        } else if (strcmp(mode, "demo") == 0) {
            const char *t[] = {"--model", "bench-model", "-p", b.phost, "-d", b.dhost};
            for (size_t k = 0; k < sizeof t / sizeof *t; k++)
                av[n++] = t[k];
        } else {
            const char *t[] = {"--prefill", b.purl, b.ps, "--decode", b.durl};
            for (size_t k = 0; k < sizeof t / sizeof *t; k++)
                av[n++] = t[k];
        }
        av[n++] = "--scheduling";
        av[n++] = g_sched;
        if (g_kvev) {
            snprintf(kv, sizeof kv, "%s=tcp://127.0.0.1:%u", b.phost, g_kv_port);
            av[n++] = "--kv-events";
            av[n++] = kv;
        }
        av[n] = NULL;
        execv(bin, (char *const *)av);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[256] = "";
    if (!f || !fgets(line, sizeof line, f)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    fclose(f);
    const char *c = strrchr(line, ':');
    *port = c ? (uint16_t)atoi(c + 1) : 0;
    return pid;
}

/* CPU microseconds per request of all parties (client, backends, proxy). */
static double party_us(const result_t *r)
{
    const cpu_use_t *u = &r->cpu;
    double t = u->client.run + u->proxy.run + u->backend[0].run + u->backend[1].run;
    return r->done > 0 ? t * 1e6 / (double)r->done : 0.0;
}

/* CPU microseconds per request of the rate run, by party ("user+sys"), and the
 * share of the machine's CPUs in use (by anything) during it. */
static void json_cpu(const result_t *r)
{
    double n = r->done > 0 ? (double)r->done : 1.0;
    const cpu_use_t *u = &r->cpu;
    double ticks = u->proxy.user + u->proxy.sys;
    double user_share = ticks > 0 ? u->proxy.user / ticks : 0.0;
    printf(", \"cpu_us_per_request\": {\"client\": %.1f, \"backend_prefill\": %.1f, "
           "\"backend_decode\": %.1f, \"proxy\": %.1f, \"proxy_user\": %.1f, "
           "\"proxy_sys\": %.1f, \"all_parties\": %.1f, \"machine_busy\": %.1f}, "
           "\"machine_busy_pct\": %.0f",
           u->client.run * 1e6 / n, u->backend[0].run * 1e6 / n, u->backend[1].run * 1e6 / n,
           u->proxy.run * 1e6 / n, u->proxy.run * user_share * 1e6 / n,
           u->proxy.run * (1 - user_share) * 1e6 / n, party_us(r), u->machine_busy * 1e6 / n,
           u->machine_total > 0 ? 100.0 * u->machine_busy / u->machine_total : 0.0);
}

static void json_result(const char *name, const result_t *r, int last)
{
    printf("      \"%s\": {\"rps\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"errors\": %ld",
           name, r->rps, r->p50_us, r->p99_us, r->errors);
    json_cpu(r);
    printf("}%s\n", last ? "" : ",");
}

/* ------------------------------------------------ vLLM's Python proxies */

/* The three proxies vLLM ships (paths inside its source distribution) and the
 * mode of ours that does the same job. */
typedef struct {
    const char *name, *path, *mode;
} vproxy_t;
static const vproxy_t VPROXIES[] = {
    {"mooncake_connector_proxy.py",
     "examples/disaggregated/mooncake_connector/mooncake_connector_proxy.py", "connector"},
    {"toy_proxy_server.py", "tests/v1/kv_connector/nixl_integration/toy_proxy_server.py", "toy"},
    {"disagg_proxy_demo.py", "examples/disaggregated/disaggregated_serving/disagg_proxy_demo.py",
     "demo"},
};

/* A port the kernel says is free now (the Python proxies need one given). */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static const char *g_vllm_log = "/dev/null"; /* --vllm-log: the Python proxies' output */

/* Starts `python DIR/vp->path` in front of the backends on `port`, with the
 * command line its documentation gives; its output goes to g_vllm_log. */
static pid_t spawn_vllm(const char *python, const char *dir, const vproxy_t *vp, uint16_t pp,
                        uint16_t dp, uint16_t port)
{
    char script[PATH_MAX], xs[16];
    snprintf(script, sizeof script, "%s/%s", dir, vp->path);
    snprintf(xs, sizeof xs, "%u", port);
    backend_args_t b;
    backend_args(&b, pp, dp);
    pid_t pid = fork();
    if (pid != 0) return pid;
    int fd = open(g_vllm_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
    if (!strcmp(vp->mode, "connector")) /* bootstrap /query is served on the prefill port */
        execl(python, python, script, "--host", "127.0.0.1", "--port", xs, "--prefill", b.purl,
              b.ps, "--decode", b.durl, (char *)NULL);
    else if (!strcmp(vp->mode, "toy"))
        execl(python, python, script, "--host", "127.0.0.1", "--port", xs, "--prefiller-host",
              "127.0.0.1", "--prefiller-port", b.ps, "--decoder-host", "127.0.0.1",
              "--decoder-port", b.ds, (char *)NULL);
    else
        execl(python, python, script, "--model", "bench-model", "-p", b.phost, "-d", b.dhost,
              "--port", xs, (char *)NULL);
    _exit(127);
}

/* Readiness: a completion through url answered 200 with the whole answer.
 * Returns 0, or -1 when pid exited or timeout_s passed. */
static int wait_ready(const char *url, const char *body, size_t want, pid_t pid, int timeout_s)
{
    uint64_t end = mc_now_ns() + (uint64_t)timeout_s * 1000000000ull;
    while (mc_now_ns() < end) {
        client_t c;
        if (client_init(&c, url, body)) return -1;
        curl_easy_setopt(c.e, CURLOPT_TIMEOUT, 2L);
        uint64_t ok = client_do(&c, want);
        client_free(&c);
        if (ok) return 0;
        if (waitpid(pid, NULL, WNOHANG) != 0) return -1;
        usleep(50000); /* between attempts only: readiness is the 200 above */
    }
    return -1;
}

static void stop_process(pid_t pid)
{
    kill(pid, SIGTERM);
    for (int i = 0; i < 100; i++) { /* uvicorn shuts down gracefully; give it 5 s */
        if (waitpid(pid, NULL, WNOHANG) == pid) return;
        usleep(50000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

typedef struct {
    const vproxy_t *vp;
    int ok;
    result_t r[3]; /* direct, ours, theirs */
} side_t;

/* One side-by-side pair: our proxy in vp->mode and vLLM's script, in front of
 * the same backends, with the same clients: latency in turns (direct, ours,
 * theirs), then rate slices in turns, each slice charging the CPU of the one
 * proxy it drives. Non-streaming requests. */
static int side_by_side(const char *bin, const char *python, const char *dir, const vproxy_t *vp,
                        uint16_t pp, uint16_t dp, const char *direct, const char *body,
                        size_t want, int requests, int clients, double secs, int slices,
                        side_t *out)
{
    memset(out, 0, sizeof *out);
    out->vp = vp;
    uint16_t oport = 0, tport = free_port();
    pid_t ours = spawn_proxy(bin, vp->mode, pp, dp, &oport);
    if (ours <= 0 || !oport || !tport) return -1;
    pid_t theirs = spawn_vllm(python, dir, vp, pp, dp, tport);
    char ourl[128], turl[128];
    snprintf(ourl, sizeof ourl, "http://127.0.0.1:%u/v1/completions", oport);
    snprintf(turl, sizeof turl, "http://127.0.0.1:%u/v1/completions", tport);
    int rc = -1;
    if (theirs <= 0) goto done;
    if (wait_ready(ourl, body, want, ours, 30) || wait_ready(turl, body, want, theirs, 60)) {
        fprintf(stderr, "side by side: %s did not become ready\n", vp->name);
        goto done;
    }
    const char *urls[3] = {direct, ourl, turl};
    result_t *res[3] = {&out->r[0], &out->r[1], &out->r[2]};
    latency_multi(urls, 3, body, want, requests, res);
    pid_t pids[3] = {0, ours, theirs};
    int saved_n = g_n_proxies;
    pid_t saved0 = g_proxy_pids[0];
    for (int s = 0; s < slices; s++)
        for (int u = 0; u < 3; u++) {
            g_n_proxies = u ? 1 : 0;
            g_proxy_pids[0] = pids[u];
            rate(&urls[u], 1, body, want, clients, secs / slices, res[u]);
        }
    g_n_proxies = saved_n;
    g_proxy_pids[0] = saved0;
    for (int u = 0; u < 3; u++)
        res[u]->rps = res[u]->elapsed > 0 ? (double)res[u]->done / res[u]->elapsed : 0;
    out->ok = 1;
    rc = 0;
done:
    if (theirs > 0) stop_process(theirs);
    stop_process(ours);
    return rc;
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0.0;
}

static void json_side(const side_t *sd, int last)
{
    const result_t *d = &sd->r[0], *o = &sd->r[1], *t = &sd->r[2];
    double n_o = o->done > 0 ? (double)o->done : 1, n_t = t->done > 0 ? (double)t->done : 1;
    double cpu_o = o->cpu.proxy.run * 1e6 / n_o, cpu_th = t->cpu.proxy.run * 1e6 / n_t;
    double a50_o = o->p50_us - d->p50_us, a50_t = t->p50_us - d->p50_us;
    double a99_o = o->p99_us - d->p99_us, a99_t = t->p99_us - d->p99_us;
    printf("    \"%s\": {\"ours_mode\": \"%s\", \"ok\": %s,\n      \"results\": {\n",
           sd->vp->name, sd->vp->mode, sd->ok ? "true" : "false");
    json_result("direct", d, 0);
    json_result("ours", o, 0);
    json_result("theirs", t, 1);
    printf("      },\n      \"added_p50_us\": {\"ours\": %.1f, \"theirs\": %.1f},"
           " \"added_p99_us\": {\"ours\": %.1f, \"theirs\": %.1f},\n"
           "      \"proxy_cpu_us_per_request\": {\"ours\": %.1f, \"theirs\": %.1f},\n"
           "      \"rps_ratio_ours_over_theirs\": %.2f, \"added_p50_ratio_ours_over_theirs\": %.3f,"
           " \"added_p99_ratio_ours_over_theirs\": %.3f, \"cpu_ratio_ours_over_theirs\": %.3f,\n"
           "      \"targets_met\": {\"rps_10x\": %s, \"added_p50_tenth\": %s,"
           " \"cpu_tenth\": %s}}%s\n",
           a50_o, a50_t, a99_o, a99_t, cpu_o, cpu_th, ratio(o->rps, t->rps), ratio(a50_o, a50_t),
           ratio(a99_o, a99_t), ratio(cpu_o, cpu_th), ratio(o->rps, t->rps) >= 10 ? "true" : "false",
           a50_t > 0 && a50_o <= a50_t / 10 ? "true" : "false",
           cpu_th > 0 && cpu_o <= cpu_th / 10 ? "true" : "false", last ? "" : ",");
}

int main(int argc, char **argv)
{
    char bin[PATH_MAX] = "";
    const char *mode = "connector", *only = "", *vllm_dir = NULL, *python = "python3";
    int vllm_requests = 0;
    int clients = 4, requests = 2000, slices = 10, n_proxies = 1;
    double secs = 3.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "%s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--proxy"))
            snprintf(bin, sizeof bin, "%s", v);
        else if (!strcmp(a, "--mode"))
            mode = v;
        else if (!strcmp(a, "--clients"))
            clients = atoi(v);
        else if (!strcmp(a, "--seconds"))
            secs = atof(v);
        else if (!strcmp(a, "--requests"))
            requests = atoi(v);
        else if (!strcmp(a, "--chunks"))
            g_chunks = atoi(v);
        else if (!strcmp(a, "--proxies"))
            n_proxies = atoi(v);
        else if (!strcmp(a, "--slices"))
            slices = atoi(v);
        else if (!strcmp(a, "--only"))
            only = v;
        else if (!strcmp(a, "--vllm"))
            vllm_dir = v;
        else if (!strcmp(a, "--python"))
            python = v;
        else if (!strcmp(a, "--scheduling"))
            g_sched = v;
        else if (!strcmp(a, "--prompt-tokens"))
            g_prompt_tokens = atoi(v);
        else if (!strcmp(a, "--kv-events"))
            g_kvev = atoi(v);
        else if (!strcmp(a, "--vllm-log"))
            g_vllm_log = v;
        else if (!strcmp(a, "--vllm-requests"))
            vllm_requests = atoi(v);
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    if (strcmp(mode, "connector") && strcmp(mode, "toy") && strcmp(mode, "demo")) {
        fprintf(stderr, "--mode must be connector, toy or demo\n");
        return 2;
    }
    if (*only && strcmp(only, "non_streaming") && strcmp(only, "streaming") &&
        strcmp(only, "side_by_side")) {
        fprintf(stderr, "--only must be non_streaming, streaming or side_by_side\n");
        return 2;
    }
    if (clients < 1 || requests < 10 || secs <= 0 || g_chunks < 1 || slices < 1 || n_proxies < 1 ||
        n_proxies > MAX_PROXIES) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    if (!bin[0]) { /* default: mooncake_proxy next to this binary */
        ssize_t n = readlink("/proc/self/exe", bin, sizeof bin - 32);
        if (n <= 0) return 1;
        bin[n] = 0;
        char *sl = strrchr(bin, '/');
        snprintf(sl + 1, sizeof bin - (size_t)(sl + 1 - bin), "mooncake_proxy");
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    uint16_t pport = 0, dport = 0, xport = 0;
    struct MHD_Daemon *daemons[2] = {NULL, NULL};
    if (g_kvev && (n_proxies != 1 || g_prompt_tokens < KV_BLOCK)) {
        fprintf(stderr, "--kv-events 1 needs --prompt-tokens >= %d and one proxy\n", KV_BLOCK);
        return 2;
    }
#ifdef BENCH_KVEV
    if (g_kvev && bench_kvev_open(&g_kv_port) != 0) {
        fprintf(stderr, "cannot bind the KV event publisher\n");
        return 1;
    }
#else
    if (g_kvev) {
        fprintf(stderr, "--kv-events: built without libzmq/msgpack-c\n");
        return 2;
    }
#endif
    for (int b = 0; b < 2; b++) { /* note the threads each daemon starts */
        pid_t before[MAX_TIDS * 3], after[MAX_TIDS * 3];
        int nb = list_tids(before, MAX_TIDS * 3);
        daemons[b] = backend_start(b == 0 ? &pport : &dport, b == 0);
        int na = list_tids(after, MAX_TIDS * 3);
        for (int i = 0; i < na; i++) {
            int seen = 0;
            for (int j = 0; j < nb; j++)
                seen |= after[i] == before[j];
            if (!seen && g_n_backend_tids[b] < MAX_TIDS)
                g_backend_tids[b][g_n_backend_tids[b]++] = after[i];
        }
    }
    struct MHD_Daemon *pd = daemons[0], *dd = daemons[1];
    if (!pd || !dd) {
        fprintf(stderr, "cannot start backends\n");
        return 1;
    }
    char direct[128], via[MAX_PROXIES][128];
    const char *vias[MAX_PROXIES];
    snprintf(direct, sizeof direct, "http://127.0.0.1:%u/v1/completions", dport);
    for (int k = 0; k < n_proxies; k++) {
        pid_t pid = spawn_proxy(bin, mode, pport, dport, &xport);
        if (pid <= 0 || !xport) {
            fprintf(stderr, "cannot start %s\n", bin);
            return 1;
        }
        g_proxy_pids[g_n_proxies++] = pid;
        snprintf(via[k], sizeof via[k], "http://127.0.0.1:%u/v1/completions", xport);
        vias[k] = via[k];
        char health[128];
        snprintf(health, sizeof health, "http://127.0.0.1:%u/status", xport);
        /* wait until the proxy has checked both backends */
        for (int i = 0; i < 500; i++) {
            client_t c;
            client_init(&c, health, NULL);
            curl_easy_setopt(c.e, CURLOPT_HTTPGET, 1L);
            char buf[8192];
            FILE *m = fmemopen(buf, sizeof buf, "w");
            curl_easy_setopt(c.e, CURLOPT_WRITEFUNCTION, NULL);
            curl_easy_setopt(c.e, CURLOPT_WRITEDATA, m);
            CURLcode rc = curl_easy_perform(c.e);
            fclose(m);
            client_free(&c);
            buf[sizeof buf - 1] = 0;
            if (rc == CURLE_OK && strstr(buf, "\"ready\":true")) break;
            usleep(20000);
        }
    }

    static const char plain_text[] = "{\"model\":\"bench-model\",\"prompt\":\"The capital of "
                                     "France is\",\"max_tokens\":16,\"temperature\":0.7}";
    const char *plain = plain_text;
    char *plain_tokens = NULL;
    if (g_prompt_tokens > 0) { /* {"model":...,"prompt":[t0,t1,...],...} */
        size_t cap = 128 + (size_t)g_prompt_tokens * 12, off = 0;
        plain_tokens = malloc(cap);
        if (!plain_tokens) return 1;
        off += (size_t)snprintf(plain_tokens, cap, "{\"model\":\"bench-model\",\"prompt\":[");
        for (int i = 0; i < g_prompt_tokens; i++)
            off += (size_t)snprintf(plain_tokens + off, cap - off, "%s%u", i ? "," : "",
                                    prompt_token(i));
        snprintf(plain_tokens + off, cap - off, "],\"max_tokens\":16,\"temperature\":0.7}");
        plain = plain_tokens;
    }
#ifdef BENCH_KVEV
    if (g_kvev) { /* the prefill backend holds every block of the prompt */
        uint32_t *t = malloc((size_t)g_prompt_tokens * sizeof *t);
        if (!t) return 1;
        for (int i = 0; i < g_prompt_tokens; i++)
            t[i] = prompt_token(i);
        int nb = bench_kvev_publish(t, g_prompt_tokens, KV_BLOCK, 10000);
        free(t);
        char want[64], health[128];
        snprintf(want, sizeof want, "\"blocks\":%d,", nb);
        snprintf(health, sizeof health, "http://127.0.0.1:%u/status", xport);
        int seen = 0;
        for (int i = 0; nb > 0 && i < 500 && !seen; i++) {
            client_t c;
            client_init(&c, health, NULL);
            curl_easy_setopt(c.e, CURLOPT_HTTPGET, 1L);
            static char buf[65536];
            FILE *m = fmemopen(buf, sizeof buf, "w");
            curl_easy_setopt(c.e, CURLOPT_WRITEFUNCTION, NULL);
            curl_easy_setopt(c.e, CURLOPT_WRITEDATA, m);
            CURLcode rc = curl_easy_perform(c.e);
            fclose(m);
            client_free(&c);
            buf[sizeof buf - 1] = 0;
            seen = rc == CURLE_OK && strstr(buf, want) != NULL;
            if (!seen) usleep(20000);
        }
        if (!seen) {
            fprintf(stderr, "the proxy did not take the KV events (%d blocks)\n", nb);
            return 1;
        }
    }
#endif
    static const char stream[] = "{\"model\":\"bench-model\",\"prompt\":\"The capital of France "
                                 "is\",\"max_tokens\":1000,\"stream\":true}";
    size_t want_plain = sizeof ANSWER - 1;
    size_t want_stream = (size_t)g_chunks * (sizeof EVENT - 1) + sizeof DONE - 1;
    result_t r[4];
    memset(r, 0, sizeof r);
    int sreq = requests / 4 > 10 ? requests / 4 : 10;
    double load0[3] = {0, 0, 0}, load1[3] = {0, 0, 0};
    getloadavg(load0, 3);
    int do_side = vllm_dir && (!*only || !strcmp(only, "side_by_side"));
    int do_plain = !*only || !strcmp(only, "non_streaming");
    int do_stream = !*only || !strcmp(only, "streaming");
    if (do_plain) {
        latency(direct, vias[0], plain, want_plain, requests, &r[0], &r[1]);
        rates(direct, vias, n_proxies, plain, want_plain, clients, secs, slices, &r[0], &r[1]);
    }
    if (do_stream) {
        latency(direct, vias[0], stream, want_stream, sreq, &r[2], &r[3]);
        rates(direct, vias, n_proxies, stream, want_stream, clients, secs, slices, &r[2], &r[3]);
    }

    side_t side[3];
    int n_side = do_side ? 3 : 0;
    if (vllm_requests < 10) vllm_requests = requests / 5 > 100 ? requests / 5 : 100;
    for (int k = 0; k < n_side; k++)
        side_by_side(bin, python, vllm_dir, &VPROXIES[k], pport, dport, direct, plain, want_plain,
                     vllm_requests, clients, secs, slices, &side[k]);
    getloadavg(load1, 3);

    int exit_code = 0;
    for (int k = 0; k < g_n_proxies; k++) {
        int status = 0;
        kill(g_proxy_pids[k], SIGTERM);
        waitpid(g_proxy_pids[k], &status, 0);
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (code != 0) exit_code = code;
    }
    MHD_stop_daemon(pd);
    MHD_stop_daemon(dd);

    printf("{\n  \"bench\": \"mooncake_proxy\",\n  \"mode\": \"%s\",\n  \"scheduling\": \"%s\",\n"
           "  \"prompt_tokens\": %d,\n  \"kv_events\": %d,\n  \"cpus\": %ld,\n"
           "  \"clients\": %d,\n  \"proxies\": %d,\n  \"rate_seconds\": %.1f,\n"
           "  \"rate_slices\": %d,\n  \"latency_requests\": %d,\n  \"stream_chunks\": %d,\n"
           "  \"loadavg_start\": [%.2f, %.2f, %.2f],\n  \"loadavg_end\": [%.2f, %.2f, %.2f],\n",
           mode, g_sched, g_prompt_tokens, g_kvev, sysconf(_SC_NPROCESSORS_ONLN), clients, n_proxies, secs, slices, requests,
           g_chunks, load0[0], load0[1], load0[2], load1[0], load1[1], load1[2]);
    const char *names[2] = {"non_streaming", "streaming"};
    for (int k = 0; k < 2; k++) {
        result_t *d = &r[2 * k], *v = &r[2 * k + 1];
        if (!(k == 0 ? do_plain : do_stream)) continue;
        printf("  \"%s\": {\n    \"results\": {\n", names[k]);
        json_result("direct", d, 0);
        json_result("proxy", v, 1);
        /* The ratio the rates would have if the machine ran only these parties and
         * were CPU-bound: CPU per direct request over CPU per proxied request. */
        double cd = party_us(d), cv = party_us(v);
        printf("    },\n    \"rate_ratio\": %.3f,\n    \"cpu_budget_ratio\": %.3f,\n"
               "    \"added_p50_us\": %.1f\n  }%s\n",
               d->rps > 0 ? v->rps / d->rps : 0.0, cv > 0 ? cd / cv : 0.0, v->p50_us - d->p50_us,
               ",");
    }
    if (n_side) {
        printf("  \"side_by_side\": {\"latency_requests\": %d, \"python\": \"%s\",\n",
               vllm_requests, python);
        for (int k = 0; k < n_side; k++)
            json_side(&side[k], k == n_side - 1);
        printf("  },\n");
    }
    printf("  \"targets\": {\"added_p50_us_max\": 300, \"side_by_side_rps_ratio_min\": 10,"
           " \"side_by_side_added_p50_ratio_max\": 0.1, \"side_by_side_cpu_ratio_max\": 0.1},\n"
           "  \"proxy_exit\": %d\n}\n",
           exit_code);
    free(plain_tokens);
#ifdef BENCH_KVEV
    bench_kvev_close();
#endif
    curl_global_cleanup();
    return 0;
}
