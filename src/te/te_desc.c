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

char *mc__te_desc_encode(const mc__te_desc_t *d)
{
    json_t *bufs = json_array();
    for (size_t i = 0; bufs && i < d->nbufs; i++)
        json_array_append_new(bufs, json_pack("{s:s, s:I, s:I}", "name", d->bufs[i].location,
                                              "addr", (json_int_t)d->bufs[i].addr, "length",
                                              (json_int_t)d->bufs[i].length));
    char ts[32];
    snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
    json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:o}", "name",
                          d->name, "protocol", d->protocol[0] ? d->protocol : "tcp",
                          "tcp_data_port", (int)d->port, "timestamp", ts, "ip_or_host_name", d->ip,
                          "mc_host_id", d->host_id, "mc_pid", (json_int_t)d->pid,
                          "mc_start_time", (json_int_t)d->start_time, "mc_gen_addr",
                          (json_int_t)d->gen_addr, "mc_gen", (json_int_t)d->gen, "buffers", bufs);
    if (!o) return NULL;
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

int mc__te_desc_contains(const mc__te_desc_t *d, uint64_t addr, uint64_t len)
{
    if (len == 0 || addr + len < addr) return 0;
    size_t lo = 0, hi = d->nbufs;
    while (lo < hi) { /* first buffer with addr > target */
        size_t mid = (lo + hi) / 2;
        if (d->bufs[mid].addr <= addr) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return 0;
    const mc__te_buf_t *b = &d->bufs[lo - 1];
    return addr - b->addr <= b->length && len <= b->length - (addr - b->addr);
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
