/* te_rdma.c: the rdma transport, on libfabric. One-sided RMA READ/WRITE
 * straight between the caller's memory and the target's registered buffers:
 * the target's CPU is not involved beyond its provider's progress thread.
 *
 * NICs: every name of device_name (comma-separated libfabric domain names,
 * e.g. "mlx5_0,mlx5_1", "erdma_0", "rdmap0s31-rdm"; "lo" for the software
 * provider) is one domain, with MC_TE_RDMA_EPS reliable-datagram endpoints
 * (FI_EP_RDM) each, every endpoint with its own completion queue and a
 * progress thread that reads it. A piece is cut into slices of
 * MC_TE_RDMA_SLICE bytes, posted round robin over every (NIC, endpoint) of
 * the engine, and waited for through the completion queues.
 *
 * Registration: every buffer registered with the engine (the store's segment
 * and staging buffer included) is registered with every domain for remote
 * read and write; its key per NIC travels in the segment descriptor ("rkey"
 * of each buffer), with the endpoints' addresses ("rdma" object;
 * docs/protocol.md). A target that unregisters closes the registrations, so
 * the NIC itself refuses any later access.
 *
 * Optional twice: without libfabric's headers at build time this file builds
 * the stubs at its end; at run time libfabric.so.1 is opened with dlopen (the
 * few functions that are not inline in its headers are looked up), so a
 * program or the Python module built with rdma still runs tcp and shm on a
 * machine without it. CI runs the same code over the software provider
 * "tcp;ofi_rxm" (FI_PROVIDER=tcp); without FI_PROVIDER the software providers
 * are never chosen, so "rdma" on a machine without an RDMA NIC is tcp.
 * Thread rule: xfer runs on many threads at once; registrations are made and
 * closed by the engine's (un)register; open/close once per engine. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_env.h"
#include "base_mem.h"
#include "base_log.h"
#include "base_time.h"
#include "net_sock.h"
#include "te_int.h"

#define TAG "te-rdma"

#ifdef MC_HAVE_LIBFABRIC
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#define API_VERSION FI_VERSION(1, 9)

/* The non-inline part of libfabric's API, from dlopen. */
static struct {
    pthread_once_t once;
    int ok;
    char why[256];
    int (*getinfo)(uint32_t, const char *, const char *, uint64_t, const struct fi_info *,
                   struct fi_info **);
    void (*freeinfo)(struct fi_info *);
    struct fi_info *(*dupinfo)(const struct fi_info *);
    int (*fabric)(struct fi_fabric_attr *, struct fid_fabric **, void *);
    const char *(*strerror)(int);
} lib = {.once = PTHREAD_ONCE_INIT};

static void lib_load(void)
{
    const char *path = getenv("MC_TE_LIBFABRIC"); /* tests: a library that is not there */
    if (!path || !*path) path = "libfabric.so.1";
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(lib.why, sizeof lib.why, "%s not loadable (%s)", path, dlerror());
        return;
    }
    *(void **)&lib.getinfo = dlsym(h, "fi_getinfo");
    *(void **)&lib.freeinfo = dlsym(h, "fi_freeinfo");
    *(void **)&lib.dupinfo = dlsym(h, "fi_dupinfo");
    *(void **)&lib.fabric = dlsym(h, "fi_fabric");
    *(void **)&lib.strerror = dlsym(h, "fi_strerror");
    if (!lib.getinfo || !lib.freeinfo || !lib.dupinfo || !lib.fabric || !lib.strerror) {
        snprintf(lib.why, sizeof lib.why, "%s lacks fi_getinfo/fi_fabric", path);
        dlclose(h);
        return;
    }
    lib.ok = 1; /* kept open for the life of the process */
}

static const char *fierr(int err)
{
    return lib.strerror ? lib.strerror(err < 0 ? -err : err) : "?";
}

typedef struct xfer xfer_t;
typedef struct {
    struct fi_context2 ctx; /* first: the completion's op_context points here */
    xfer_t *x;
    uint64_t len;
    int nic;
    int state; /* under x->mu: -1 posted, 0 completed, > 0 failed (fi errno) */
    uint32_t piece;
} op_t;

/* One piece in flight: its slices' contexts, freed by whoever drops the last
 * reference (the waiter, or the progress thread that reads the last
 * completion of a piece whose waiter gave up at its deadline). */
struct xfer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;      /* the waiter's, while it waits, plus one per slice posted */
    int left;      /* slices posted and not completed */
    int err;       /* first failed completion (positive fi errno) */
    int abandoned; /* the waiter left: on the engine's abandoned list */
    xfer_t *next;
    struct fid_mr **tmp_mr; /* FI_MR_LOCAL, unregistered sources: piece x NIC */
    size_t ntmp;
    size_t nops;
    op_t ops[];
};

typedef struct nic nic_t;
typedef struct {
    struct fid_ep *ep;
    struct fid_cq *cq;
    pthread_t thr;
    int thr_on;
    mc__te_rdma_t *r;
} ep_t;

struct nic {
    char name[64];
    struct fid_fabric *fabric;
    struct fid_domain *domain;
    struct fid_av *av;
    ep_t eps[MC_TE_RDMA_MAX_EPS];
    size_t addr_len;
    uint8_t addr[MC_TE_RDMA_MAX_EPS][MC_TE_RDMA_ADDR_MAX];
    atomic_ullong bytes;
};

struct mc__te_rdma {
    struct fi_info *infos; /* fi_getinfo's list; the NICs point into it */
    struct fi_info *info[MC_TE_RDMA_MAX_NICS];
    nic_t nics[MC_TE_RDMA_MAX_NICS];
    size_t nnics, neps;
    char prov[64];
    int virt, mr_local, mr_ep, prov_key, sread;
    uint64_t slice;
    atomic_uint rr;
    atomic_ullong next_key;
    atomic_int stopping;
    pthread_mutex_t ab_lock;
    xfer_t *abandoned;
};

/* A registration record: one fid_mr per NIC. */
typedef struct {
    struct fid_mr *mr[MC_TE_RDMA_MAX_NICS];
} reg_t;

static void xfer_free(xfer_t *x)
{
    for (size_t i = 0; i < x->ntmp; i++)
        if (x->tmp_mr[i]) fi_close(&x->tmp_mr[i]->fid);
    free(x->tmp_mr);
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->cv);
    free(x);
}

/* A completion (err 0) or a failed one, for the op at ctx. */
static void op_done(mc__te_rdma_t *r, void *ctx, int err)
{
    op_t *o = ctx;
    if (!o) return;
    xfer_t *x = o->x;
    pthread_mutex_lock(&x->mu);
    if (err && !x->err) x->err = err;
    o->state = err;
    if (!err) atomic_fetch_add(&r->nics[o->nic].bytes, o->len);
    x->left--;
    int last = --x->refs == 0, abandoned = x->abandoned;
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->mu);
    if (!last) return;
    if (abandoned) {
        pthread_mutex_lock(&r->ab_lock);
        for (xfer_t **pp = &r->abandoned; *pp; pp = &(*pp)->next)
            if (*pp == x) {
                *pp = x->next;
                break;
            }
        pthread_mutex_unlock(&r->ab_lock);
    }
    xfer_free(x);
}

/* Reads one endpoint's completion queue until the engine stops: the
 * completions of our slices, and the progress that the provider needs for
 * the RMA that peers aim at our buffers (manual-progress providers such as
 * tcp;ofi_rxm move target-side bytes only inside these calls). */
static void *progress_main(void *arg)
{
    ep_t *e = arg;
    mc__te_rdma_t *r = e->r;
    struct fi_cq_entry ent[16];
    unsigned idle = 0;
    while (!atomic_load(&r->stopping)) {
        ssize_t n = r->sread ? fi_cq_sread(e->cq, ent, 16, NULL, 100) : fi_cq_read(e->cq, ent, 16);
        if (n > 0) {
            for (ssize_t i = 0; i < n; i++)
                op_done(r, ent[i].op_context, 0);
            idle = 0;
            continue;
        }
        if (n == -FI_EAVAIL) {
            struct fi_cq_err_entry ee;
            memset(&ee, 0, sizeof ee);
            if (fi_cq_readerr(e->cq, &ee, 0) > 0) op_done(r, ee.op_context, ee.err ? ee.err : FI_EIO);
            continue;
        }
        if (n == -FI_EAGAIN && r->sread) continue;
        /* polled queue (or a queue error): back off up to 200 us when idle */
        struct timespec ts = {0, idle < 64 ? 0 : idle < 256 ? 20000 : 200000};
        idle++;
        if (ts.tv_nsec) nanosleep(&ts, NULL);
    }
    return NULL;
}

/* The core provider of a name like "tcp;ofi_rxm". */
static int software_prov(const char *prov)
{
    static const char *const sw[] = {"tcp", "sockets", "udp", "net", "shm"};
    size_t l = strcspn(prov, ";");
    for (size_t i = 0; i < sizeof sw / sizeof *sw; i++)
        if (strlen(sw[i]) == l && !strncmp(prov, sw[i], l)) return 1;
    return 0;
}

/* Whether info's source address is IPv4 ip (for the software provider's
 * default NIC). */
static int src_is(const struct fi_info *i, const char *ip)
{
    struct in_addr a;
    if (!i->src_addr || i->addr_format != FI_SOCKADDR_IN || inet_pton(AF_INET, ip, &a) != 1)
        return 0;
    return ((const struct sockaddr_in *)i->src_addr)->sin_addr.s_addr == a.s_addr;
}

static int open_nic(mc__te_rdma_t *r, nic_t *n, struct fi_info *info)
{
    snprintf(n->name, sizeof n->name, "%s", info->domain_attr->name);
    int rc = lib.fabric(info->fabric_attr, &n->fabric, NULL);
    if (!rc) rc = fi_domain(n->fabric, info, &n->domain, NULL);
    struct fi_av_attr ava = {.type = info->domain_attr->av_type};
    if (!rc) rc = fi_av_open(n->domain, &ava, &n->av, NULL);
    for (size_t j = 0; !rc && j < r->neps; j++) {
        ep_t *e = &n->eps[j];
        e->r = r;
        struct fi_cq_attr cqa = {.format = FI_CQ_FORMAT_CONTEXT,
                                 .wait_obj = r->sread ? FI_WAIT_UNSPEC : FI_WAIT_NONE};
        rc = fi_cq_open(n->domain, &cqa, &e->cq, NULL);
        if (rc && r->sread && j == 0 && n == &r->nics[0]) { /* no wait object: poll */
            r->sread = 0;
            cqa.wait_obj = FI_WAIT_NONE;
            rc = fi_cq_open(n->domain, &cqa, &e->cq, NULL);
        }
        if (!rc) rc = fi_endpoint(n->domain, info, &e->ep, NULL);
        if (!rc) rc = fi_ep_bind(e->ep, &n->av->fid, 0);
        if (!rc) rc = fi_ep_bind(e->ep, &e->cq->fid, FI_TRANSMIT | FI_RECV);
        if (!rc) rc = fi_enable(e->ep);
        size_t alen = MC_TE_RDMA_ADDR_MAX;
        if (!rc) rc = fi_getname(&e->ep->fid, n->addr[j], &alen);
        if (!rc && j > 0 && alen != n->addr_len) rc = -FI_EINVAL;
        if (!rc) n->addr_len = alen;
    }
    if (rc)
        MC_LOGW(TAG, "NIC '%s' (%s): cannot open: %s", n->name, r->prov, fierr(rc));
    return rc;
}

static void close_nic(nic_t *n)
{
    for (size_t j = 0; j < MC_TE_RDMA_MAX_EPS; j++) {
        if (n->eps[j].ep) fi_close(&n->eps[j].ep->fid);
        if (n->eps[j].cq) fi_close(&n->eps[j].cq->fid);
        n->eps[j].ep = NULL;
        n->eps[j].cq = NULL;
    }
    if (n->av) fi_close(&n->av->fid);
    if (n->domain) fi_close(&n->domain->fid);
    if (n->fabric) fi_close(&n->fabric->fid);
    n->av = NULL;
    n->domain = NULL;
    n->fabric = NULL;
}

/* Appends "prov:domain" of every distinct entry to buf (for the warning). */
static void list_found(struct fi_info *infos, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (struct fi_info *i = infos; i; i = i->next) {
        char one[160];
        snprintf(one, sizeof one, "%s:%s%s", i->fabric_attr->prov_name, i->domain_attr->name,
                 software_prov(i->fabric_attr->prov_name) ? " (software)" : "");
        if (strstr(buf, one)) continue;
        int w = snprintf(buf + used, cap - used, "%s%s", used ? ", " : "", one);
        if (w < 0 || (size_t)w >= cap - used) break;
        used += (size_t)w;
    }
    if (!used) snprintf(buf, cap, "none");
}

int mc__te_rdma_open(mc_te_t *te, const char *devices)
{
    const char *want = devices && *devices ? devices : "(any)";
    pthread_once(&lib.once, lib_load);
    if (!lib.ok) {
        MC_LOGW(TAG, "protocol 'rdma': looked for libfabric, found %s; using tcp", lib.why);
        return -1;
    }
    const char *fiprov = getenv("FI_PROVIDER");
    int allow_sw = fiprov && *fiprov;
    struct fi_info *hints = lib.dupinfo(NULL), *infos = NULL;
    if (!hints) return -1;
    hints->caps = FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE;
    hints->mode = FI_CONTEXT | FI_CONTEXT2;
    hints->ep_attr->type = FI_EP_RDM;
    hints->domain_attr->mr_mode =
        FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
    hints->domain_attr->threading = FI_THREAD_SAFE;
    /* a completion must mean the bytes are in the target's memory (a WRITE
     * is read by the target's owner right after): delivery complete where
     * the provider offers it (tcp;ofi_rxm does; on verbs and EFA a completion
     * of a reliable connection's RMA already means placement) */
    hints->tx_attr->op_flags = FI_DELIVERY_COMPLETE;
    int rc = lib.getinfo(API_VERSION, NULL, NULL, 0, hints, &infos);
    if (rc) {
        hints->tx_attr->op_flags = 0;
        rc = lib.getinfo(API_VERSION, NULL, NULL, 0, hints, &infos);
    }
    lib.freeinfo(hints);
    if (rc) {
        MC_LOGW(TAG,
                "protocol 'rdma': looked for devices %s with RMA (FI_EP_RDM), found none (%s%s%s); "
                "using tcp",
                want, fierr(rc), allow_sw ? ", FI_PROVIDER=" : "", allow_sw ? fiprov : "");
        return -1;
    }
    mc__te_rdma_t *r = calloc(1, sizeof *r);
    if (!r) {
        lib.freeinfo(infos);
        return -1;
    }
    r->infos = infos;
    pthread_mutex_init(&r->ab_lock, NULL);
    atomic_init(&r->next_key, 1);
    /* pick the NICs: the named domains, or by default every domain of the
     * first hardware provider (the software one: the domain of our address) */
    const char *prov = NULL;
    if (devices && *devices) {
        char names[512];
        snprintf(names, sizeof names, "%s", devices);
        for (char *save = NULL, *tok = strtok_r(names, ", ", &save); tok;
             tok = strtok_r(NULL, ", ", &save)) {
            struct fi_info *hit = NULL;
            for (struct fi_info *i = infos; i && !hit; i = i->next)
                if (!strcmp(i->domain_attr->name, tok) &&
                    (!software_prov(i->fabric_attr->prov_name) || allow_sw) &&
                    (!prov || !strcmp(prov, i->fabric_attr->prov_name)))
                    hit = i;
            if (!hit || r->nnics == MC_TE_RDMA_MAX_NICS) {
                r->nnics = 0;
                break;
            }
            prov = hit->fabric_attr->prov_name;
            r->info[r->nnics++] = hit;
        }
    } else {
        for (struct fi_info *i = infos; i && !prov; i = i->next)
            if (!software_prov(i->fabric_attr->prov_name)) prov = i->fabric_attr->prov_name;
        for (struct fi_info *i = infos; prov && i && r->nnics < MC_TE_RDMA_MAX_NICS; i = i->next) {
            int dup = 0;
            for (size_t k = 0; k < r->nnics; k++)
                dup |= !strcmp(r->info[k]->domain_attr->name, i->domain_attr->name);
            if (!dup && !strcmp(i->fabric_attr->prov_name, prov)) r->info[r->nnics++] = i;
        }
        if (!prov && allow_sw) {
            for (struct fi_info *i = infos; i && !r->nnics; i = i->next)
                if (src_is(i, te->ip)) r->info[r->nnics++] = i;
            if (!r->nnics) r->info[r->nnics++] = infos;
            prov = r->info[0]->fabric_attr->prov_name;
        }
    }
    if (!r->nnics) {
        char found[1024];
        list_found(infos, found, sizeof found);
        MC_LOGW(TAG,
                "protocol 'rdma': looked for devices %s, found %s%s; using tcp", want, found,
                allow_sw ? "" : " (software providers only with FI_PROVIDER, e.g. FI_PROVIDER=tcp)");
        goto fail;
    }
    snprintf(r->prov, sizeof r->prov, "%s", prov);
    uint64_t mode = r->info[0]->domain_attr->mr_mode;
    r->virt = !!(mode & FI_MR_VIRT_ADDR);
    r->mr_local = !!(mode & FI_MR_LOCAL) || mc_env_bool("MC_TE_RDMA_MR_LOCAL", 0);
    r->mr_ep = !!(mode & FI_MR_ENDPOINT);
    r->prov_key = !!(mode & FI_MR_PROV_KEY);
    r->neps = (size_t)mc_env_int("MC_TE_RDMA_EPS", 2, 1, MC_TE_RDMA_MAX_EPS);
    r->slice = (uint64_t)mc_env_int("MC_TE_RDMA_SLICE", 1 << 20, 4096, 1ll << 30);
    r->sread = 1;
    for (size_t i = 0; i < r->nnics; i++)
        if (open_nic(r, &r->nics[i], r->info[i])) goto fail;
    for (size_t i = 0; i < r->nnics; i++)
        for (size_t j = 0; j < r->neps; j++) {
            ep_t *e = &r->nics[i].eps[j];
            if (pthread_create(&e->thr, NULL, progress_main, e)) goto fail;
            e->thr_on = 1;
        }
    te->rdma = r;
    char names[512] = "";
    for (size_t i = 0, u = 0; i < r->nnics && u < sizeof names; i++)
        u += (size_t)snprintf(names + u, sizeof names - u, "%s%s", i ? "," : "", r->nics[i].name);
    MC_LOGI(TAG, "rdma on %s via %s: %zu endpoint(s) per NIC, %s addressing, slices of %llu B%s",
            names, r->prov, r->neps, r->virt ? "virtual" : "offset",
            (unsigned long long)r->slice, r->sread ? "" : ", polled completion queues");
    return 0;
fail:
    te->rdma = r;
    mc__te_rdma_close(te);
    return -1;
}

void mc__te_rdma_close(mc_te_t *te)
{
    mc__te_rdma_t *r = te->rdma;
    if (!r) return;
    atomic_store(&r->stopping, 1);
    for (size_t i = 0; i < r->nnics; i++)
        for (size_t j = 0; j < r->neps; j++)
            if (r->nics[i].eps[j].thr_on) pthread_join(r->nics[i].eps[j].thr, NULL);
    for (size_t i = 0; i < r->nnics; i++)
        for (size_t j = 0; j < MC_TE_RDMA_MAX_EPS; j++)
            if (r->nics[i].eps[j].ep) {
                fi_close(&r->nics[i].eps[j].ep->fid);
                r->nics[i].eps[j].ep = NULL;
            }
    /* pieces whose waiters gave up: no completion comes any more */
    for (xfer_t *x = r->abandoned, *n; x; x = n) {
        n = x->next;
        xfer_free(x);
    }
    r->abandoned = NULL;
    pthread_rwlock_wrlock(&te->bufs_lock);
    for (size_t i = 0; i < te->nbufs; i++)
        mc__te_rdma_dereg(te, &te->bufs[i]);
    pthread_rwlock_unlock(&te->bufs_lock);
    for (size_t i = 0; i < MC_TE_RDMA_MAX_NICS; i++)
        close_nic(&r->nics[i]);
    lib.freeinfo(r->infos);
    pthread_mutex_destroy(&r->ab_lock);
    free(r);
    te->rdma = NULL;
}

/* Registers [addr, +len) on NIC i with access; binds it to the NIC's
 * endpoints where the provider asks (FI_MR_ENDPOINT). */
static int mr_reg(mc__te_rdma_t *r, size_t i, const void *addr, uint64_t len, uint64_t access,
                  struct fid_mr **out)
{
    uint64_t key = r->prov_key ? 0 : atomic_fetch_add(&r->next_key, 1);
    int rc = fi_mr_reg(r->nics[i].domain, addr, len, access, 0, key, 0, out, NULL);
    for (size_t j = 0; !rc && r->mr_ep && j < r->neps; j++)
        rc = fi_mr_bind(*out, &r->nics[i].eps[j].ep->fid, 0);
    if (!rc && r->mr_ep) rc = fi_mr_enable(*out);
    if (rc && *out) {
        fi_close(&(*out)->fid);
        *out = NULL;
    }
    return rc;
}

int mc__te_rdma_reg(mc_te_t *te, mc__te_buf_t *b)
{
    mc__te_rdma_t *r = te->rdma;
    memset(b->rkey, 0, sizeof b->rkey);
    b->rdma_mr = NULL;
    if (!r) return 0;
    reg_t *g = calloc(1, sizeof *g);
    if (!g) return MC_TE_ERR_MEMORY;
    /* MC_TE_RDMA_FAIL_REG=<n>: the registration on NIC n fails (tests) */
    long fail_on = mc_env_int("MC_TE_RDMA_FAIL_REG", -1, -1, MC_TE_RDMA_MAX_NICS);
    for (size_t i = 0; i < r->nnics; i++) {
        int rc = fail_on == (long)i ? -FI_ENOMEM
                                    : mr_reg(r, i, (void *)(uintptr_t)b->addr, b->length,
                                             FI_REMOTE_READ | FI_REMOTE_WRITE | FI_READ | FI_WRITE,
                                             &g->mr[i]);
        if (rc) {
            MC_LOGW(TAG, "NIC '%s': cannot register %llu bytes at 0x%llx: %s%s", r->nics[i].name,
                    (unsigned long long)b->length, (unsigned long long)b->addr, fierr(rc),
                    fail_on == (long)i ? " (MC_TE_RDMA_FAIL_REG)" : "");
            for (size_t k = 0; k < i; k++)
                fi_close(&g->mr[k]->fid);
            free(g);
            return MC_TE_ERR_MEMORY;
        }
        b->rkey[i] = fi_mr_key(g->mr[i]);
    }
    b->rdma_mr = g;
    return 0;
}

void mc__te_rdma_dereg(mc_te_t *te, mc__te_buf_t *b)
{
    reg_t *g = b->rdma_mr;
    (void)te;
    if (!g) return;
    for (size_t i = 0; i < MC_TE_RDMA_MAX_NICS; i++)
        if (g->mr[i]) fi_close(&g->mr[i]->fid);
    free(g);
    b->rdma_mr = NULL;
}

void mc__te_rdma_self_desc(mc_te_t *te, mc__te_desc_t *d)
{
    mc__te_rdma_t *r = te->rdma;
    if (!r) return;
    snprintf(d->rdma_prov, sizeof d->rdma_prov, "%s", r->prov);
    d->rdma_virt = r->virt;
    d->rdma_nnics = r->nnics;
    for (size_t i = 0; i < r->nnics; i++) {
        mc__te_nic_t *n = &d->rdma_nics[i];
        snprintf(n->name, sizeof n->name, "%s", r->nics[i].name);
        n->neps = r->neps;
        n->addr_len = r->nics[i].addr_len;
        memcpy(n->addr, r->nics[i].addr, sizeof n->addr);
    }
}

int mc__te_rdma_usable(mc_te_t *te, const mc__te_desc_t *d)
{
    mc__te_rdma_t *r = te->rdma;
    if (!r || !d->rdma_nnics || strcmp(d->rdma_prov, r->prov) || d->rdma_virt != r->virt)
        return 0;
    for (size_t i = 0; i < d->rdma_nnics; i++)
        if (d->rdma_nics[i].addr_len != r->nics[0].addr_len || !d->rdma_nics[i].neps) return 0;
    return 1;
}

size_t mc__te_rdma_nic_bytes(mc_te_t *te, uint64_t *out, size_t cap)
{
    mc__te_rdma_t *r = te->rdma;
    if (!r) return 0;
    for (size_t i = 0; i < r->nnics && i < cap; i++)
        out[i] = atomic_load(&r->nics[i].bytes);
    return r->nnics;
}

/* Whether the peer's listener still accepts connections: a process that
 * died leaves none (refused at once); a stopped or slow one still has it. */
static int peer_listening(mc__te_peer_t *p)
{
    char ip[64];
    pthread_mutex_lock(&p->lock);
    snprintf(ip, sizeof ip, "%s", p->desc.ip);
    uint16_t port = p->desc.port;
    pthread_mutex_unlock(&p->lock);
    int fd = -1, rc = mc_sock_connect(ip, port, 200, &fd);
    if (fd >= 0) close(fd);
    return rc != -ECONNREFUSED;
}

/* Waits for x's slices until deadline, checking every 500 ms after the first
 * that the peer is still there; copies each op's state to st[] and drops the
 * waiter's reference (x is freed here, or later by its last completion).
 * Returns 1 when the peer's process is gone, else 0. */
static int xfer_wait(mc__te_rdma_t *r, mc__te_peer_t *p, xfer_t *x, uint64_t deadline_ms,
                     int *st)
{
    int gone = 0;
    pthread_mutex_lock(&x->mu);
    for (uint64_t t0 = mc_now_ms(), now = t0; x->left > 0 && now < deadline_ms && !gone;) {
        uint64_t step = deadline_ms - now < 500 ? deadline_ms - now : 500;
        struct timespec ts = mc_deadline_ts(CLOCK_REALTIME, step);
        while (x->left > 0 && pthread_cond_timedwait(&x->cv, &x->mu, &ts) != ETIMEDOUT)
            ;
        now = mc_now_ms();
        if (x->left > 0 && now < deadline_ms) {
            pthread_mutex_unlock(&x->mu);
            gone = !peer_listening(p);
            pthread_mutex_lock(&x->mu);
        }
    }
    pthread_mutex_unlock(&x->mu);
    /* our reference keeps x alive until here; ab_lock before x->mu */
    pthread_mutex_lock(&r->ab_lock);
    pthread_mutex_lock(&x->mu);
    for (size_t i = 0; i < x->nops; i++)
        st[i] = x->ops[i].state;
    int last = --x->refs == 0;
    if (!last) { /* the waiter gives up: the last completion frees x */
        x->abandoned = 1;
        x->next = r->abandoned;
        r->abandoned = x;
    }
    pthread_mutex_unlock(&x->mu);
    pthread_mutex_unlock(&r->ab_lock);
    if (last) xfer_free(x);
    return gone;
}

/* Looks up what n pieces to p need: the key and base of each remote range,
 * our address-vector entries for the peer's endpoints. Returns 0,
 * MC_TE_ERR_NOT_IMPLEMENTED (no rdma to p), MC__TE_STALE (a range the
 * descriptor lacks) or MC_TE_ERR_ENDPOINT. */
static int peer_route(mc__te_rdma_t *r, mc__te_peer_t *p, mc__te_piece_t *const *pcs, size_t n,
                      uint64_t (*key)[MC_TE_RDMA_MAX_NICS], uint64_t *base,
                      fi_addr_t (*dest)[MC_TE_RDMA_MAX_EPS])
{
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    if (!p->have_desc || p->rdma_state != 1) rc = MC_TE_ERR_NOT_IMPLEMENTED;
    size_t pn = p->desc.rdma_nnics;
    for (size_t k = 0; !rc && k < n; k++) {
        const mc__te_buf_t *b = mc__te_desc_find(&p->desc, pcs[k]->remote, pcs[k]->len);
        if (!b) rc = MC__TE_STALE;
        for (size_t i = 0; !rc && i < r->nnics; i++)
            key[k][i] = b->rkey[i % pn];
        if (!rc) base[k] = b->addr;
    }
    for (size_t i = 0; i < r->nnics && !rc; i++) {
        const mc__te_nic_t *pnic = &p->desc.rdma_nics[i % pn];
        for (size_t j = 0; j < r->neps && !rc; j++) {
            size_t e = j % pnic->neps;
            uint64_t bit = 1ull << (i * MC_TE_RDMA_MAX_EPS + e);
            if (!(p->rdma_av_set & bit)) {
                fi_addr_t fa = FI_ADDR_NOTAVAIL;
                if (fi_av_insert(r->nics[i].av, pnic->addr[e], 1, &fa, 0, NULL) != 1)
                    rc = MC_TE_ERR_ENDPOINT;
                p->rdma_fi[i][e] = fa;
                if (!rc) p->rdma_av_set |= bit;
            }
            dest[i][j] = (fi_addr_t)p->rdma_fi[i][e];
        }
    }
    pthread_mutex_unlock(&p->lock);
    if (rc == MC_TE_ERR_ENDPOINT)
        MC_LOGW(TAG, "segment '%s': its endpoint address was refused", p->name);
    return rc;
}

/* Moves n pieces (one direction, all to p) as one set of slices spread over
 * every (NIC, endpoint), under one deadline for all their bytes. res[k] gets
 * each piece's result: 0, MC__TE_STALE (a refused key or range),
 * MC_TE_ERR_SOCKET, MC_TE_ERR_INVALID_ARGUMENT (a bad local pointer);
 * *timed_out when slices were still in flight at the deadline (those pieces
 * get MC_TE_ERR_SOCKET). Returns 0, or an error that applies to every piece. */
static int rdma_run(mc_te_t *te, mc__te_peer_t *p, int opcode, mc__te_piece_t *const *pcs,
                    size_t n, int *res, int *timed_out)
{
    mc__te_rdma_t *r = te->rdma;
    if (!r) return MC_TE_ERR_NOT_IMPLEMENTED;
    /* a peer found gone fails at once while its listener stays closed */
    pthread_mutex_lock(&p->lock);
    int down = p->rdma_down;
    pthread_mutex_unlock(&p->lock);
    if (down && !peer_listening(p)) {
        for (size_t k = 0; k < n; k++)
            res[k] = MC_TE_ERR_SOCKET;
        return 0;
    }
    fi_addr_t dest[MC_TE_RDMA_MAX_NICS][MC_TE_RDMA_MAX_EPS];
    uint64_t(*key)[MC_TE_RDMA_MAX_NICS] = malloc(n * sizeof *key);
    uint64_t *base = malloc(n * sizeof *base), total = 0;
    size_t nops = 0;
    int rc = key && base ? peer_route(r, p, pcs, n, key, base, dest) : MC_TE_ERR_MEMORY;
    for (size_t k = 0; k < n; k++) {
        /* the provider copies into or out of an unregistered source in
         * software (the tcp provider) or pins it (FI_MR_LOCAL): a bad pointer
         * is an error here, as on the other transports, never a fault in a
         * progress thread */
        res[k] = 0;
        if (!mc_te_is_registered(te, pcs[k]->local, pcs[k]->len) &&
            mc_mem_check(pcs[k]->local, pcs[k]->len, opcode != MC_TE_OP_WRITE)) {
            MC_LOGW(TAG, "local buffer %p (+%llu) is not %s", pcs[k]->local,
                    (unsigned long long)pcs[k]->len,
                    opcode == MC_TE_OP_WRITE ? "readable" : "writable");
            res[k] = MC_TE_ERR_INVALID_ARGUMENT;
            continue;
        }
        nops += (size_t)(pcs[k]->len / r->slice + (pcs[k]->len % r->slice != 0));
        total += pcs[k]->len;
    }
    xfer_t *x = rc ? NULL : calloc(1, sizeof *x + nops * sizeof(op_t));
    int *st = rc ? NULL : malloc((nops ? nops : 1) * sizeof *st);
    if (!rc && (!x || !st)) rc = MC_TE_ERR_MEMORY;
    if (rc) {
        free(x);
        free(st);
        free(key);
        free(base);
        return rc;
    }
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
    x->refs = 1;
    /* local memory descriptors where the provider needs them (FI_MR_LOCAL):
     * the registered buffer that holds the source, or a registration for
     * this piece. The engine's table stays shared-locked while slices fly,
     * so that a local unregister waits for them. */
    void **ldesc = NULL;
    int locked = 0;
    if (r->mr_local) {
        ldesc = calloc(n * r->nnics, sizeof *ldesc);
        x->tmp_mr = calloc(n * r->nnics, sizeof *x->tmp_mr);
        x->ntmp = x->tmp_mr ? n * r->nnics : 0;
        pthread_rwlock_rdlock(&te->bufs_lock);
        locked = 1;
        mc__te_desc_t view = {.nbufs = te->nbufs, .bufs = te->bufs};
        for (size_t k = 0; k < n && ldesc && x->tmp_mr; k++) {
            const mc__te_buf_t *lb =
                mc__te_desc_find(&view, (uint64_t)(uintptr_t)pcs[k]->local, pcs[k]->len);
            reg_t *g = lb ? lb->rdma_mr : NULL;
            for (size_t i = 0; i < r->nnics && !res[k]; i++) {
                struct fid_mr *mr = g ? g->mr[i] : NULL, **tmp = &x->tmp_mr[k * r->nnics + i];
                if (!mr && mr_reg(r, i, pcs[k]->local, pcs[k]->len, FI_READ | FI_WRITE, tmp) == 0)
                    mr = *tmp;
                if (mr) ldesc[k * r->nnics + i] = fi_mr_desc(mr);
                if (!mr) {
                    MC_LOGW(TAG, "NIC '%s': cannot register the local %llu bytes at %p",
                            r->nics[i].name, (unsigned long long)pcs[k]->len, pcs[k]->local);
                    res[k] = MC_TE_ERR_MEMORY;
                }
            }
        }
        if (!ldesc || !x->tmp_mr)
            for (size_t k = 0; k < n; k++)
                if (!res[k]) res[k] = MC_TE_ERR_MEMORY;
    }
    uint64_t deadline = mc__te_frame_deadline(te, mc_now_ms(), total);
    size_t nslots = r->nnics * r->neps, s = 0;
    unsigned start = atomic_fetch_add(&r->rr, 1);
    int post_err = 0, post_gone = 0, post_timeout = 0;
    uint64_t eagain_ms = 0;
    for (size_t k = 0; k < n && !post_err; k++) {
        for (uint64_t off = 0; !res[k] && off < pcs[k]->len && !post_err; off += r->slice, s++) {
            size_t slot = (start + s) % nslots, i = slot / r->neps, j = slot % r->neps;
            uint64_t l = pcs[k]->len - off < r->slice ? pcs[k]->len - off : r->slice;
            op_t *o = &x->ops[x->nops];
            *o = (op_t){.x = x, .len = l, .nic = (int)i, .state = -1, .piece = (uint32_t)k};
            char *lp = pcs[k]->local + off;
            void *ld = ldesc ? ldesc[k * r->nnics + i] : NULL;
            uint64_t raddr = (r->virt ? pcs[k]->remote : pcs[k]->remote - base[k]) + off;
            pthread_mutex_lock(&x->mu);
            x->refs++, x->left++, x->nops++; /* before posting: the completion may come first */
            pthread_mutex_unlock(&x->mu);
            for (;;) {
                struct fid_ep *ep = r->nics[i].eps[j].ep;
                ssize_t prc = opcode == MC_TE_OP_WRITE
                                  ? fi_write(ep, lp, l, ld, dest[i][j], raddr, key[k][i], &o->ctx)
                                  : fi_read(ep, lp, l, ld, dest[i][j], raddr, key[k][i], &o->ctx);
                if (prc == 0) break;
                uint64_t now = mc_now_ms();
                if (prc == -FI_EAGAIN && now < deadline) {
                    /* queue full, or no connection yet: let it drain, and
                     * every 500 ms check that the peer is still there */
                    if (!eagain_ms) eagain_ms = now;
                    if (now - eagain_ms >= 500) {
                        eagain_ms = now;
                        if (!peer_listening(p)) {
                            post_gone = 1;
                            prc = -FI_ECONNREFUSED;
                        }
                    }
                    if (!post_gone) {
                        pthread_mutex_lock(&x->mu);
                        struct timespec ts = mc_deadline_ts(CLOCK_REALTIME, 1);
                        pthread_cond_timedwait(&x->cv, &x->mu, &ts);
                        pthread_mutex_unlock(&x->mu);
                        continue;
                    }
                }
                pthread_mutex_lock(&x->mu);
                x->refs--, x->left--, x->nops--;
                pthread_mutex_unlock(&x->mu);
                if (prc == -FI_EAGAIN) post_timeout = 1;
                post_err = prc == -FI_EAGAIN ? FI_ETIMEDOUT : (int)-prc;
                break;
            }
        }
        if (post_err) { /* this piece and the ones after it were not (all) posted */
            MC_LOGW(TAG, "segment '%s': cannot post: %s", p->name, fierr(post_err));
            for (size_t q = k; q < n; q++)
                if (!res[q]) res[q] = MC_TE_ERR_SOCKET;
        }
    }
    size_t posted = x->nops;
    int gone = xfer_wait(r, p, x, deadline, st); /* x is not ours any more */
    if (locked) pthread_rwlock_unlock(&te->bufs_lock);
    free(ldesc);
    int pending = 0, failed = 0, first_err = 0;
    for (size_t i = 0; i < posted; i++) {
        if (st[i] < 0) pending++;
        if (st[i] > 0 && !first_err) first_err = st[i];
        if (st[i] > 0) failed++;
    }
    /* per piece, from its slices (their order is the pieces' order) */
    for (size_t k = 0, i = 0; k < n; k++) {
        if (res[k]) continue;
        size_t cnt = (size_t)(pcs[k]->len / r->slice + (pcs[k]->len % r->slice != 0));
        int pend = 0, err = 0;
        for (size_t c = 0; c < cnt && i < posted; c++, i++) {
            pend |= st[i] < 0;
            if (st[i] > 0 && !err) err = st[i];
        }
        if (pend)
            res[k] = MC_TE_ERR_SOCKET;
        else if (err == FI_EACCES || err == FI_EINVAL || err == FI_EKEYREJECTED ||
                 err == FI_EFAULT || err == FI_ENOKEY || err == FI_EPERM)
            res[k] = MC__TE_STALE; /* a refused key or range: the target re-registered */
        else if (err)
            res[k] = MC_TE_ERR_SOCKET;
    }
    gone |= post_gone;
    /* after a failure the next transfer first checks that the peer listens */
    pthread_mutex_lock(&p->lock);
    p->rdma_down = gone || failed || post_err;
    pthread_mutex_unlock(&p->lock);
    if (post_timeout && !gone) *timed_out = 1;
    if (gone)
        MC_LOGW(TAG, "segment '%s': its process is gone (%d of %zu slices not completed)",
                p->name, pending, posted);
    else if (pending) {
        MC_LOGW(TAG, "segment '%s': %d of %zu slices (%llu bytes) not completed by their deadline",
                p->name, pending, posted, (unsigned long long)total);
        *timed_out = 1;
    }
    if (failed)
        MC_LOGW(TAG, "segment '%s': %d of %zu slices of %s failed: %s", p->name, failed, posted,
                opcode == MC_TE_OP_WRITE ? "WRITE" : "READ", fierr(first_err));
    free(st);
    free(key);
    free(base);
    return 0;
}

static int rdma_xfer(mc_te_t *te, mc__te_peer_t *p, int opcode, void *local, uint64_t remote,
                     uint64_t len, int *timed_out)
{
    mc__te_piece_t pc = {.opcode = opcode, .local = local, .remote = remote, .len = len};
    mc__te_piece_t *pcs[1] = {&pc};
    int res = 0, rc = rdma_run(te, p, opcode, pcs, 1, &res, timed_out);
    return rc ? rc : res;
}

size_t mc__te_rdma_xfer_many(mc_te_t *te, mc__te_peer_t *p, int opcode, mc__te_piece_t *const *pcs,
                             size_t n, int *rest_rc, int *rest_timed_out)
{
    *rest_rc = 0;
    *rest_timed_out = 0;
    int *res = malloc(n * sizeof *res), timed_out = 0;
    if (!res || rdma_run(te, p, opcode, pcs, n, res, &timed_out)) {
        free(res);
        return 0;
    }
    size_t moved = 0;
    while (moved < n && res[moved] == 0)
        moved++;
    if (timed_out) { /* the peer is stuck: the rest fail without trying again */
        *rest_rc = MC_TE_ERR_SOCKET;
        *rest_timed_out = 1;
    }
    free(res);
    return moved;
}

#else /* no libfabric at build time: "rdma" falls back to tcp */

int mc__te_rdma_open(mc_te_t *te, const char *devices)
{
    (void)te;
    MC_LOGW(TAG,
            "protocol 'rdma': looked for devices %s, found none: this build has no libfabric "
            "(libfabric-dev at build time); using tcp",
            devices && *devices ? devices : "(any)");
    return -1;
}

void mc__te_rdma_close(mc_te_t *te)
{
    (void)te;
}

int mc__te_rdma_reg(mc_te_t *te, mc__te_buf_t *b)
{
    (void)te;
    memset(b->rkey, 0, sizeof b->rkey);
    b->rdma_mr = NULL;
    return 0;
}

void mc__te_rdma_dereg(mc_te_t *te, mc__te_buf_t *b)
{
    (void)te;
    (void)b;
}

void mc__te_rdma_self_desc(mc_te_t *te, mc__te_desc_t *d)
{
    (void)te;
    (void)d;
}

int mc__te_rdma_usable(mc_te_t *te, const mc__te_desc_t *d)
{
    (void)te;
    (void)d;
    return 0;
}

size_t mc__te_rdma_nic_bytes(mc_te_t *te, uint64_t *out, size_t cap)
{
    (void)te;
    (void)out;
    (void)cap;
    return 0;
}

static int rdma_xfer(mc_te_t *te, mc__te_peer_t *p, int opcode, void *local, uint64_t remote,
                     uint64_t len, int *timed_out)
{
    (void)te, (void)p, (void)opcode, (void)local, (void)remote, (void)len, (void)timed_out;
    return MC_TE_ERR_NOT_IMPLEMENTED;
}

size_t mc__te_rdma_xfer_many(mc_te_t *te, mc__te_peer_t *p, int opcode, mc__te_piece_t *const *pcs,
                             size_t n, int *rest_rc, int *rest_timed_out)
{
    (void)te, (void)p, (void)opcode, (void)pcs, (void)n;
    *rest_rc = 0;
    *rest_timed_out = 0;
    return 0;
}
#endif

const mc__te_transport_t mc__te_rdma = {"rdma", rdma_xfer};
