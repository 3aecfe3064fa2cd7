/* te_desc.c: segment descriptors, rpc_meta records and notification payloads
 * as JSON (jansson). The descriptor keeps upstream's field names (name,
 * protocol, tcp_data_port, timestamp, buffers[{name, addr, length}]) and adds
 * ours (ip_or_host_name, mc_host_id, mc_pid) for P2P and same-host transfers.
 * Decoding is strict: every field is type- and range-checked, buffers must not
 * overlap, and a failure says why. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "te_int.h"

#define MAX_BUFS 65536

static int copy_str(json_t *o, const char *key, char *dst, size_t cap, int required, char *why);

/* The "rdma" object: {"provider", "virt_addr", "devices": [{"name",
 * "endpoints": [hex address, ...]}]} (docs/protocol.md). */
static json_t *rdma_encode(const mc__te_desc_t *d)
{
    static const char hex[] = "0123456789abcdef";
    json_t *devs = json_array();
    for (size_t i = 0; devs && i < d->rdma_nnics; i++) {
        const mc__te_nic_t *n = &d->rdma_nics[i];
        json_t *eps = json_array();
        for (size_t j = 0; eps && j < n->neps; j++) {
            char a[2 * MC_TE_RDMA_ADDR_MAX + 1];
            for (size_t k = 0; k < n->addr_len; k++)
                a[2 * k] = hex[n->addr[j][k] >> 4], a[2 * k + 1] = hex[n->addr[j][k] & 15];
            a[2 * n->addr_len] = '\0';
            json_array_append_new(eps, json_string(a));
        }
        json_array_append_new(devs, json_pack("{s:s, s:o}", "name", n->name, "endpoints", eps));
    }
    return json_pack("{s:s, s:b, s:o}", "provider", d->rdma_prov, "virt_addr", d->rdma_virt,
                     "devices", devs);
}

/* Parses the "rdma" object into d; 0 or -1 with why. Addresses must be even
 * hex of equal length up to MC_TE_RDMA_ADDR_MAX bytes, and every buffer must
 * carry one key per device. */
static int rdma_decode(json_t *r, mc__te_desc_t *d, char *why)
{
    json_t *prov = json_object_get(r, "provider"), *virt = json_object_get(r, "virt_addr");
    json_t *devs = json_object_get(r, "devices");
    if (!json_is_object(r) || !json_is_string(prov) || json_string_length(prov) == 0 ||
        json_string_length(prov) >= sizeof d->rdma_prov || !json_is_boolean(virt) ||
        !json_is_array(devs) || json_array_size(devs) == 0 ||
        json_array_size(devs) > MC_TE_RDMA_MAX_NICS) {
        snprintf(why, 256, "field 'rdma' needs 'provider', 'virt_addr' and 1..%d 'devices'",
                 MC_TE_RDMA_MAX_NICS);
        return -1;
    }
    memcpy(d->rdma_prov, json_string_value(prov), json_string_length(prov) + 1);
    d->rdma_virt = json_is_true(virt);
    for (size_t i = 0; i < json_array_size(devs); i++) {
        json_t *dev = json_array_get(devs, i), *eps = json_object_get(dev, "endpoints");
        mc__te_nic_t *n = &d->rdma_nics[i];
        if (copy_str(dev, "name", n->name, sizeof n->name, 1, why)) return -1;
        if (!json_is_array(eps) || json_array_size(eps) == 0 ||
            json_array_size(eps) > MC_TE_RDMA_MAX_EPS) {
            snprintf(why, 256, "rdma device %zu needs 1..%d 'endpoints'", i, MC_TE_RDMA_MAX_EPS);
            return -1;
        }
        for (size_t j = 0; j < json_array_size(eps); j++) {
            json_t *e = json_array_get(eps, j);
            size_t hl = json_is_string(e) ? json_string_length(e) : 0;
            const char *h = json_is_string(e) ? json_string_value(e) : "";
            if (hl == 0 || hl % 2 || hl / 2 > MC_TE_RDMA_ADDR_MAX ||
                (n->addr_len && hl / 2 != n->addr_len) ||
                (i > 0 && hl / 2 != d->rdma_nics[0].addr_len)) {
                snprintf(why, 256, "rdma device %zu endpoint %zu: bad address", i, j);
                return -1;
            }
            for (size_t k = 0; k < hl; k++) {
                char c = h[k];
                int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
                if (v < 0) {
                    snprintf(why, 256, "rdma device %zu endpoint %zu: bad address", i, j);
                    return -1;
                }
                n->addr[j][k / 2] = (uint8_t)(k % 2 ? n->addr[j][k / 2] | v : v << 4);
            }
            n->addr_len = hl / 2;
        }
        n->neps = json_array_size(eps);
    }
    d->rdma_nnics = json_array_size(devs);
    return 0;
}

char *mc__te_desc_encode(const mc__te_desc_t *d)
{
    json_t *bufs = json_array();
    for (size_t i = 0; bufs && i < d->nbufs; i++) {
        json_t *b = json_pack("{s:s, s:I, s:I}", "name", d->bufs[i].location, "addr",
                              (json_int_t)d->bufs[i].addr, "length", (json_int_t)d->bufs[i].length);
        if (b && d->rdma_nnics) { /* keys as the 64-bit pattern (int64 in JSON) */
            json_t *keys = json_array();
            for (size_t k = 0; keys && k < d->rdma_nnics; k++)
                json_array_append_new(keys, json_integer((json_int_t)d->bufs[i].rkey[k]));
            json_object_set_new(b, "rkey", keys);
        }
        json_array_append_new(bufs, b);
    }
    char ts[32];
    snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
    json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:o}", "name",
                          d->name, "protocol", d->protocol[0] ? d->protocol : "tcp",
                          "tcp_data_port", (int)d->port, "timestamp", ts, "ip_or_host_name", d->ip,
                          "mc_host_id", d->host_id, "mc_pid", (json_int_t)d->pid,
                          "mc_start_time", (json_int_t)d->start_time, "mc_gen_addr",
                          (json_int_t)d->gen_addr, "mc_gen", (json_int_t)d->gen, "buffers", bufs);
    if (!o) return NULL;
    if (d->rdma_nnics) json_object_set_new(o, "rdma", rdma_encode(d));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static int cmp_buf(const void *a, const void *b)
{
    const mc__te_buf_t *x = a, *y = b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int copy_str(json_t *o, const char *key, char *dst, size_t cap, int required, char *why)
{
    json_t *v = json_object_get(o, key);
    if (!v) {
        if (!required) return 0;
        snprintf(why, 256, "missing field '%s'", key);
        return -1;
    }
    if (!json_is_string(v) || json_string_length(v) >= cap ||
        (required && json_string_length(v) == 0)) {
        snprintf(why, 256, "field '%s' must be a non-empty string under %zu bytes", key, cap);
        return -1;
    }
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

int mc__te_desc_decode(const char *text, size_t len, mc__te_desc_t *d, char *why)
{
    memset(d, 0, sizeof *d);
    json_error_t jerr;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o) {
        snprintf(why, 256, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        return MC_TE_ERR_MALFORMED_JSON;
    }
    if (!json_is_object(o)) {
        snprintf(why, 256, "descriptor is not an object");
        goto fail;
    }
    if (copy_str(o, "name", d->name, sizeof d->name, 1, why)) goto fail;
    if (copy_str(o, "protocol", d->protocol, sizeof d->protocol, 1, why)) goto fail;
    if (copy_str(o, "ip_or_host_name", d->ip, sizeof d->ip, 0, why)) goto fail;
    if (copy_str(o, "mc_host_id", d->host_id, sizeof d->host_id, 0, why)) goto fail;
    json_t *port = json_object_get(o, "tcp_data_port");
    if (!json_is_integer(port) || json_integer_value(port) < 0 ||
        json_integer_value(port) > 65535) {
        snprintf(why, 256, "field 'tcp_data_port' must be an integer in 0..65535");
        goto fail;
    }
    d->port = (uint16_t)json_integer_value(port);
    json_t *pid = json_object_get(o, "mc_pid");
    if (pid) {
        if (!json_is_integer(pid) || json_integer_value(pid) < 0) {
            snprintf(why, 256, "field 'mc_pid' must be a non-negative integer");
            goto fail;
        }
        d->pid = json_integer_value(pid);
    }
    static const char *const u64_fields[] = {"mc_start_time", "mc_gen_addr", "mc_gen"};
    uint64_t *const u64_dst[] = {&d->start_time, &d->gen_addr, &d->gen};
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_object_get(o, u64_fields[i]);
        if (!v) continue;
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            snprintf(why, 256, "field '%s' must be a non-negative integer", u64_fields[i]);
            goto fail;
        }
        *u64_dst[i] = (uint64_t)json_integer_value(v);
    }
    json_t *bufs = json_object_get(o, "buffers");
    if (bufs && !json_is_array(bufs)) {
        snprintf(why, 256, "field 'buffers' must be an array");
        goto fail;
    }
    size_t n = bufs ? json_array_size(bufs) : 0;
    if (n > MAX_BUFS) {
        snprintf(why, 256, "too many buffers (%zu > %d)", n, MAX_BUFS);
        goto fail;
    }
    if (n) {
        d->bufs = calloc(n, sizeof *d->bufs);
        if (!d->bufs) {
            snprintf(why, 256, "out of memory");
            goto fail;
        }
    }
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_array_get(bufs, i);
        json_t *addr = json_object_get(b, "addr"), *blen = json_object_get(b, "length");
        if (!json_is_object(b) || !json_is_integer(addr) || !json_is_integer(blen)) {
            snprintf(why, 256, "buffer %zu needs integer 'addr' and 'length'", i);
            goto fail;
        }
        if (copy_str(b, "name", d->bufs[i].location, sizeof d->bufs[i].location, 1, why))
            goto fail;
        json_int_t a = json_integer_value(addr), l = json_integer_value(blen);
        if (a <= 0 || l <= 0 || (uint64_t)a + (uint64_t)l < (uint64_t)a) {
            snprintf(why, 256, "buffer %zu has a zero, negative or overflowing range", i);
            goto fail;
        }
        d->bufs[i].addr = (uint64_t)a;
        d->bufs[i].length = (uint64_t)l;
    }
    d->nbufs = n;
    json_t *rdma = json_object_get(o, "rdma");
    if (rdma && rdma_decode(rdma, d, why)) goto fail;
    for (size_t i = 0; d->rdma_nnics && i < n; i++) {
        json_t *keys = json_object_get(json_array_get(bufs, i), "rkey");
        if (!json_is_array(keys) || json_array_size(keys) != d->rdma_nnics) {
            snprintf(why, 256, "buffer %zu needs one 'rkey' per rdma device", i);
            goto fail;
        }
        for (size_t k = 0; k < d->rdma_nnics; k++) {
            json_t *v = json_array_get(keys, k);
            if (!json_is_integer(v)) {
                snprintf(why, 256, "buffer %zu: 'rkey' entries must be integers", i);
                goto fail;
            }
            d->bufs[i].rkey[k] = (uint64_t)json_integer_value(v);
        }
    }
    if (n) qsort(d->bufs, n, sizeof *d->bufs, cmp_buf);
    for (size_t i = 1; i < n; i++)
        if (d->bufs[i - 1].addr + d->bufs[i - 1].length > d->bufs[i].addr) {
            snprintf(why, 256, "buffers %zu and %zu overlap", i - 1, i);
            goto fail;
        }
    json_decref(o);
    return 0;
fail:
    json_decref(o);
    mc__te_desc_clear(d);
    return MC_TE_ERR_MALFORMED_JSON;
}

void mc__te_desc_clear(mc__te_desc_t *d)
{
    free(d->bufs);
    d->bufs = NULL;
    d->nbufs = 0;
}

const mc__te_buf_t *mc__te_desc_find(const mc__te_desc_t *d, uint64_t addr, uint64_t len)
{
    if (addr + len < addr) return NULL;
    size_t lo = 0, hi = d->nbufs;
    while (lo < hi) { /* first buffer with addr > target */
        size_t mid = (lo + hi) / 2;
        if (d->bufs[mid].addr <= addr) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return NULL;
    const mc__te_buf_t *b = &d->bufs[lo - 1];
    return addr - b->addr <= b->length && len <= b->length - (addr - b->addr) ? b : NULL;
}

int mc__te_desc_contains(const mc__te_desc_t *d, uint64_t addr, uint64_t len)
{
    return len != 0 && mc__te_desc_find(d, addr, len) != NULL;
}

char *mc__te_rpc_encode(const char *ip, uint16_t port)
{
    json_t *o = json_pack("{s:s, s:i}", "ip_or_host_name", ip, "rpc_port", (int)port);
    if (!o) return NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

int mc__te_rpc_decode(const char *text, char *ip, size_t iplen, uint16_t *port)
{
    json_t *o = json_loads(text, 0, NULL);
    json_t *h = json_object_get(o, "ip_or_host_name"), *p = json_object_get(o, "rpc_port");
    int ok = json_is_string(h) && json_string_length(h) > 0 && json_string_length(h) < iplen &&
             json_is_integer(p) && json_integer_value(p) > 0 && json_integer_value(p) <= 65535;
    if (ok) {
        memcpy(ip, json_string_value(h), json_string_length(h) + 1);
        *port = (uint16_t)json_integer_value(p);
    }
    json_decref(o);
    return ok ? 0 : MC_TE_ERR_MALFORMED_JSON;
}

char *mc__te_notify_encode(const char *name, const char *msg)
{
    json_t *o = json_pack("{s:s, s:s}", "name", name, "notify_msg", msg);
    if (!o) return NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

int mc__te_notify_decode(const char *text, size_t len, char **name, char **msg)
{
    json_t *o = json_loadb(text, len, 0, NULL);
    json_t *n = json_object_get(o, "name"), *m = json_object_get(o, "notify_msg");
    int rc = MC_TE_ERR_MALFORMED_JSON;
    if (json_is_string(n) && json_is_string(m)) {
        *name = strndup(json_string_value(n), json_string_length(n));
        *msg = strndup(json_string_value(m), json_string_length(m));
        rc = (*name && *msg) ? 0 : MC_TE_ERR_MEMORY;
        if (rc) {
            free(*name);
            free(*msg);
        }
    }
    json_decref(o);
    return rc;
}
