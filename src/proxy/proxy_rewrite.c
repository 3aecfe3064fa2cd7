/* Request rewriting for the prefill and decode legs, and the parsers of the
 * few upstream answers the proxy reads (prefill kv_transfer_params, bootstrap
 * /query, /v1/models). Pure functions over jansson values: no I/O, no globals
 * except the lock-free UUID generator's state, so the fuzz target can drive them.
 *
 * Only top-level fields are rewritten, so each leg works on a shallow copy of
 * the parsed client body (json_copy) and the original stays untouched.
 * Numbers are re-serialised with the fewest significant digits that read back
 * to the same double, so "0.7" stays "0.7" rather than jansson's default
 * 17-digit form. */
#include "proxy.h"
#include "proxy_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

int mc__proxy_parse_body(const char *body, size_t len, json_t **out, char *err, size_t errlen)
{
    json_error_t je;
    *out = NULL;
    if (len == 0) {
        snprintf(err, errlen, "empty request body; expected a JSON object");
        return -EINVAL;
    }
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        snprintf(err, errlen, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
        return -EINVAL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        snprintf(err, errlen, "request body must be a JSON object");
        return -EINVAL;
    }
    *out = j;
    return 0;
}

/* Fewest %g digits (1..17) that read back to exactly v. */
static int real_digits(double v)
{
    char buf[40];
    for (int p = 1; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, v);
        if (strtod(buf, NULL) == v) return p;
    }
    return 17;
}

/* Largest real_digits over every real in the tree (iterative depth bound by jansson). */
static int tree_digits(const json_t *j, int depth)
{
    int best = 1;
    if (depth > 4096) return 17;
    if (json_is_real(j)) return real_digits(json_real_value(j));
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            int d = tree_digits(v, depth + 1);
            if (d > best) best = d;
            if (best == 17) break;
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            int d = tree_digits(v, depth + 1);
            if (d > best) best = d;
            if (best == 17) break;
        }
    }
    return best;
}

static int dump(const json_t *j, char **out, size_t *outlen)
{
    int p = tree_digits(j, 0);
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(p));
    if (!s) return -ENOMEM;
    *out = s;
    *outlen = strlen(s);
    return 0;
}

int mc__proxy_rw_prefill(const json_t *orig, const mc__proxy_rw_t *rw, char **out, size_t *outlen)
{
    int rc = -ENOMEM;
    json_t *c = json_copy((json_t *)orig);
    json_t *kv = NULL;
    if (!c) return -ENOMEM;

    if (rw->mode == MC_PROXY_MODE_CONNECTOR) {
        kv = json_pack("{s:b, s:b, s:s}", "do_remote_decode", 1, "do_remote_prefill", 0,
                       "transfer_id", rw->transfer_id ? rw->transfer_id : "");
    } else {
        kv = json_pack("{s:b, s:b, s:n, s:n, s:n, s:n}", "do_remote_decode", 1, "do_remote_prefill",
                       0, "remote_engine_id", "remote_block_ids", "remote_host", "remote_port");
    }
    if (!kv) goto fail;
    if (json_object_set_new(c, "kv_transfer_params", kv) != 0) goto fail;
    if (json_object_set_new(c, "stream", json_false()) != 0) goto fail;
    if (json_object_set_new(c, "max_tokens", json_integer(1)) != 0) goto fail;
    if (json_object_get(c, "max_completion_tokens") &&
        json_object_set_new(c, "max_completion_tokens", json_integer(1)) != 0)
        goto fail;
    json_object_del(c, "stream_options");
    json_object_del(c, "min_tokens");
    json_object_del(c, "min_completion_tokens");
    rc = dump(c, out, outlen);
fail:
    json_decref(c);
    return rc;
}

/* raw (a JSON object's text) with ,"kv_transfer_params":<kv> inserted before its
 * closing brace; raw unchanged when kv is NULL. -EINVAL when raw does not end in '}'. */
static int splice(const char *raw, size_t len, int nonempty, const json_t *kv, char **out,
                  size_t *outlen)
{
    static const char key[] = "\"kv_transfer_params\":";
    size_t end = len;
    while (end && (raw[end - 1] == ' ' || raw[end - 1] == '\t' || raw[end - 1] == '\n' ||
                   raw[end - 1] == '\r'))
        end--;
    if (end == 0 || raw[end - 1] != '}') return -EINVAL;
    char *kvs = NULL;
    size_t kvl = 0;
    if (kv) {
        kvs = json_dumps(kv, JSON_COMPACT | JSON_REAL_PRECISION(tree_digits(kv, 0)));
        if (!kvs) return -ENOMEM;
        kvl = strlen(kvs);
    }
    size_t cap = len + (kv ? 1 + sizeof key - 1 + kvl : 0) + 1;
    char *o = malloc(cap);
    if (!o) {
        free(kvs);
        return -ENOMEM;
    }
    size_t n;
    if (kv) {
        n = end - 1;
        memcpy(o, raw, n);
        if (nonempty) o[n++] = ',';
        memcpy(o + n, key, sizeof key - 1);
        n += sizeof key - 1;
        memcpy(o + n, kvs, kvl);
        n += kvl;
        o[n++] = '}';
    } else {
        memcpy(o, raw, len);
        n = len;
    }
    o[n] = 0;
    free(kvs);
    *out = o;
    *outlen = n;
    return 0;
}

int mc__proxy_rw_decode(const json_t *orig, const mc__proxy_rw_t *rw, char **out, size_t *outlen)
{
    int rc = -ENOMEM;
    json_t *c = NULL, *kv = NULL;

    if (rw->mode == MC_PROXY_MODE_CONNECTOR) {
        kv = json_pack("{s:b, s:b, s:s, s:s, s:s}", "do_remote_decode", 0, "do_remote_prefill", 1,
                       "remote_bootstrap_addr", rw->bootstrap_addr ? rw->bootstrap_addr : "",
                       "remote_engine_id", rw->engine_id ? rw->engine_id : "", "transfer_id",
                       rw->transfer_id ? rw->transfer_id : "");
        if (!kv) goto fail;
    } else if (rw->prefill_kv && json_is_object(rw->prefill_kv)) {
        kv = json_deep_copy(rw->prefill_kv);
        if (!kv) goto fail;
        if (rw->mode == MC_PROXY_MODE_DEMO && rw->prefill_host &&
            json_object_set_new(kv, "remote_host", json_string(rw->prefill_host)) != 0)
            goto fail;
    }
    if (rw->raw && !json_object_get(orig, "kv_transfer_params")) {
        rc = splice(rw->raw, rw->raw_len, json_object_size(orig) > 0, kv, out, outlen);
        if (rc != -EINVAL) goto fail; /* done, or out of memory */
        rc = -ENOMEM;
    }
    c = json_copy((json_t *)orig); /* shallow: only top-level fields change */
    if (!c) goto fail;
    if (kv) {
        int r = json_object_set_new(c, "kv_transfer_params", kv);
        kv = NULL; /* set_new consumed it, even on failure */
        if (r != 0) goto fail;
    }
    rc = dump(c, out, outlen);
fail:
    json_decref(kv);
    json_decref(c);
    return rc;
}

/* kv_transfer_params of one parsed object, as a new reference, or NULL. */
static json_t *kv_of(json_t *j)
{
    json_t *kv = json_is_object(j) ? json_object_get(j, "kv_transfer_params") : NULL;
    if (!kv || json_is_null(kv)) return NULL;
    return json_incref(kv);
}

int mc__proxy_extract_kv(const char *resp, size_t len, json_t **kv)
{
    *kv = NULL;
    json_t *j = json_loadb(resp, len, 0, NULL);
    if (j) {
        *kv = kv_of(j);
        json_decref(j);
        return *kv ? 0 : -ENOENT;
    }
    /* Not one JSON value: look for SSE frames "data: {...}" line by line. */
    int seen_data = 0;
    const char *p = resp, *end = resp + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t ll = (size_t)(le - p);
        if (ll && p[ll - 1] == '\r') ll--;
        if (ll >= 5 && memcmp(p, "data:", 5) == 0) {
            const char *d = p + 5;
            size_t dl = ll - 5;
            while (dl && *d == ' ')
                d++, dl--;
            seen_data = 1;
            json_t *f = json_loadb(d, dl, 0, NULL);
            json_t *k = f ? kv_of(f) : NULL;
            json_decref(f);
            if (k) {
                json_decref(*kv);
                *kv = k;
            }
        }
        p = nl ? nl + 1 : end;
    }
    if (*kv) return 0;
    return seen_data ? -ENOENT : -EINVAL;
}

void mc__proxy_free_ids(char **ids, int n)
{
    if (!ids) return;
    for (int i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

int mc__proxy_parse_query(const char *resp, size_t len, char ***ids, int *n)
{
    enum { MAX_DP = 1024 };
    *ids = NULL;
    *n = 0;
    json_t *j = json_loadb(resp, len, 0, NULL);
    char **v = NULL;
    int cnt = 0, rc = -EINVAL;
    if (!json_is_object(j)) goto fail;
    size_t sz = json_object_size(j);
    if (sz == 0 || sz > MAX_DP) goto fail;
    cnt = (int)sz;
    v = calloc(sz, sizeof *v);
    if (!v) {
        rc = -ENOMEM;
        goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach(j, key, val)
    {
        char *e;
        errno = 0;
        long r = strtol(key, &e, 10);
        if (errno || e == key || *e || r < 0 || r >= cnt || v[r]) goto fail;
        json_t *eid = json_is_object(val) ? json_object_get(val, "engine_id") : NULL;
        if (!json_is_string(eid) || json_string_length(eid) == 0) goto fail;
        v[r] = strdup(json_string_value(eid));
        if (!v[r]) {
            rc = -ENOMEM;
            goto fail;
        }
    }
    *ids = v;
    *n = cnt;
    json_decref(j);
    return 0;
fail:
    mc__proxy_free_ids(v, cnt);
    json_decref(j);
    return rc;
}

const char *mc__proxy_model_base(const char *model, size_t *len)
{
    size_t l = strlen(model);
    while (l > 0 && model[l - 1] == '/')
        l--;
    size_t s = l;
    while (s > 0 && model[s - 1] != '/')
        s--;
    *len = l - s;
    return model + s;
}

/* One sample line "name[{labels}] value [timestamp]": the value of the two
 * gauges we read; 1 when the line is one of them (into *which), else 0. */
static int load_sample(const char *line, size_t n, int *which, double *val)
{
    static const char run[] = "vllm:num_requests_running", wait[] = "vllm:num_requests_waiting";
    size_t nl = sizeof run - 1; /* both names have this length */
    if (n <= nl || (line[nl] != '{' && line[nl] != ' ')) return 0;
    if (memcmp(line, run, nl) == 0)
        *which = 0;
    else if (memcmp(line, wait, nl) == 0)
        *which = 1;
    else
        return 0;
    size_t i = nl;
    if (line[i] == '{') { /* label values may hold '}' only when quoted */
        int quoted = 0;
        for (i++; i < n; i++) {
            if (quoted && line[i] == '\\') {
                i++;
            } else if (line[i] == '"') {
                quoted = !quoted;
            } else if (!quoted && line[i] == '}') {
                break;
            }
        }
        if (i >= n) return 0;
        i++;
    }
    while (i < n && line[i] == ' ')
        i++;
    char num[48];
    size_t k = 0;
    while (i < n && line[i] != ' ' && k < sizeof num - 1)
        num[k++] = line[i++];
    num[k] = 0;
    if (k == 0) return 0;
    char *end = NULL;
    double v = strtod(num, &end);
    if (end != num + k || !(v == v) || v < 0) return 0; /* NaN and negatives skipped */
    *val = v > 1e6 ? 1e6 : v;
    return 1;
}

int mc__proxy_parse_engine_load(const char *text, size_t len, unsigned *running,
                                unsigned *waiting)
{
    double sum[2] = {0, 0};
    int found = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        int which;
        double v;
        if (n && text[pos] != '#' && load_sample(text + pos, n, &which, &v)) {
            if (sum[which] + v <= 1e6) sum[which] += v;
            found = 1;
        }
        pos += n + 1;
    }
    *running = (unsigned)sum[0];
    *waiting = (unsigned)sum[1];
    return found ? 0 : -ENOENT;
}

int mc__proxy_models_match(const char *resp, size_t len, const char *model, char *first_id,
                           size_t idlen)
{
    int rc = -EINVAL;
    json_t *j = json_loadb(resp, len, 0, NULL);
    json_t *data = json_is_object(j) ? json_object_get(j, "data") : NULL;
    if (!json_is_array(data)) goto out;
    rc = -ENOENT;
    size_t i;
    json_t *m;
    json_array_foreach(data, i, m)
    {
        json_t *id = json_is_object(m) ? json_object_get(m, "id") : NULL;
        if (!json_is_string(id)) continue;
        const char *s = json_string_value(id);
        int ok = 1;
        if (model && *model) {
            size_t la, lb;
            const char *a = mc__proxy_model_base(model, &la);
            const char *b = mc__proxy_model_base(s, &lb);
            ok = la == lb && memcmp(a, b, la) == 0;
        }
        if (ok) {
            if (first_id && idlen) snprintf(first_id, idlen, "%s", s);
            rc = 0;
            break;
        }
    }
out:
    json_decref(j);
    return rc;
}

int mc__proxy_check_instance(const char *s, char *host, size_t hlen, uint16_t *port, char *err,
                             size_t errlen)
{
    size_t l = strnlen(s, 256);
    if (l == 0 || l > 255) {
        snprintf(err, errlen, "instance must be a non-empty \"host:port\" of at most 255 bytes");
        return -EINVAL;
    }
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) {
        snprintf(err, errlen, "instance must look like \"host:port\"");
        return -EINVAL;
    }
    size_t hl = (size_t)(colon - s);
    const char *h = s;
    if (s[0] == '[') {
        if (hl < 3 || s[hl - 1] != ']') {
            snprintf(err, errlen, "bad bracketed IPv6 host");
            return -EINVAL;
        }
        h = s + 1;
        hl -= 2;
        for (size_t i = 0; i < hl; i++) {
            char c = h[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                  c == ':' || c == '.')) {
                snprintf(err, errlen, "bad character in IPv6 host");
                return -EINVAL;
            }
        }
    } else {
        for (size_t i = 0; i < hl; i++) {
            char c = h[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '.' || c == '-' || c == '_')) {
                snprintf(err, errlen, "bad character in host (allowed: letters, digits, . - _)");
                return -EINVAL;
            }
        }
    }
    const char *ps = colon + 1;
    unsigned long pv = 0;
    size_t nd = 0;
    for (; ps[nd]; nd++) {
        if (ps[nd] < '0' || ps[nd] > '9' || nd >= 5) {
            snprintf(err, errlen, "port must be a number in 1..65535");
            return -EINVAL;
        }
        pv = pv * 10 + (unsigned long)(ps[nd] - '0');
    }
    if (nd == 0 || pv == 0 || pv > 65535) {
        snprintf(err, errlen, "port must be a number in 1..65535");
        return -EINVAL;
    }
    if (hl + 1 > hlen) {
        snprintf(err, errlen, "host too long");
        return -EINVAL;
    }
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = (uint16_t)pv;
    return 0;
}

int mc__proxy_key_equal(const char *secret, const char *candidate)
{
    size_t ls = strlen(secret), lc = strlen(candidate);
    volatile unsigned char diff = (unsigned char)(ls != lc);
    for (size_t i = 0; i < lc; i++) {
        unsigned char a = ls ? (unsigned char)secret[i % ls] : 0;
        diff |= (unsigned char)(a ^ (unsigned char)candidate[i]);
    }
    return ls > 0 && diff == 0;
}

/* splitmix64 over an atomic counter seeded once from getrandom(): unique ids
 * at no syscall per request. Not a secret, only unique. */
static _Atomic uint64_t uuid_state;
static _Atomic int uuid_seeded;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void mc__proxy_uuid(char out[37])
{
    if (!atomic_load(&uuid_seeded)) {
        uint64_t s = 0;
        if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) s = (uint64_t)(uintptr_t)&s ^ 0x9e37;
        uint64_t zero = 0;
        atomic_compare_exchange_strong(&uuid_state, &zero, s);
        atomic_store(&uuid_seeded, 1);
    }
    uint64_t a = mix64(atomic_fetch_add(&uuid_state, 0x9e3779b97f4a7c15ull));
    uint64_t b = mix64(atomic_fetch_add(&uuid_state, 0x9e3779b97f4a7c15ull));
    unsigned char u[16];
    for (int i = 0; i < 8; i++)
        u[i] = (unsigned char)(a >> (8 * i));
    for (int i = 0; i < 8; i++)
        u[8 + i] = (unsigned char)(b >> (8 * i));
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
    static const char hx[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = hx[u[i] >> 4];
        out[o++] = hx[u[i] & 15];
    }
    out[o] = 0;
}
