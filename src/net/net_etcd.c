/* net_etcd.c: client of etcd's v3 JSON gateway (see net_etcd.h for the
 * contract). Every call is one POST of a JSON body to <endpoint>/v3/<path>;
 * int64 fields come back as decimal strings, keys and values as base64
 * (OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock do the coding).
 *
 * Unary calls use libcurl easy handles from a small mutex-protected pool (a
 * handle keeps its connections alive between calls and is used by one thread
 * at a time). Endpoints are tried starting at the last one that answered;
 * transport failures and "unavailable" answers move on to the next, every other
 * answer ends the call. A watch is one long POST /v3/watch driven by a curl
 * multi handle on the watch's own thread, so that stopping it is a
 * curl_multi_wakeup rather than a wait for the next byte; the gateway writes
 * one JSON message per line, which the write callback splits and decodes. */
#include "net_etcd.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "base_log.h"
#include "base_time.h"

#define TAG "etcd"
#define EE_POOL_MAX 8
#define EE_WATCH_BACKOFF_MS 500
/* One watch message is at most a batch of events; the gateway never sends
 * lines this long for our key sizes. */
#define EE_WATCH_MAX_LINE (64u << 20)

struct mc_etcd {
    int n;
    char *url[MC_ETCD_MAX_ENDPOINTS];  /* "http://h:p" */
    char *name[MC_ETCD_MAX_ENDPOINTS]; /* "h:p", for logs */
    atomic_int good;                   /* index of the last endpoint that answered */
    pthread_mutex_t lock;
    CURL *pool[EE_POOL_MAX];
    int npool;
};

typedef struct {
    char *data;
    size_t len, cap;
    size_t max;
    int too_big;
} ee_buf_t;

static pthread_once_t ee_once = PTHREAD_ONCE_INIT;
static CURLcode ee_global_rc = CURLE_FAILED_INIT;

static void ee_global_init(void)
{
    ee_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Appends n bytes to b (NUL kept after the data); -1 past b->max or on ENOMEM. */
static int ee_buf_add(ee_buf_t *b, const char *p, size_t n)
{
    if (b->len + n > b->max) {
        b->too_big = 1;
        return -1;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static size_t ee_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
    size_t n = size * nmemb;
    return ee_buf_add(arg, ptr, n) ? 0 : n;
}

/* ---- base64 ---- */

/* base64 of [p, p+n) as a malloc'd NUL-terminated string; NULL on ENOMEM. */
static char *ee_b64(const void *p, size_t n)
{
    if (n > (size_t)INT32_MAX / 2) return NULL;
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (!out) return NULL;
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

/* Decodes base64 s (strict: length a multiple of 4, '=' only as padding) into
 * a malloc'd buffer with a NUL appended. 0, -EPROTO or -ENOMEM. */
static int ee_unb64(const char *s, size_t n, char **out, size_t *outlen)
{
    if (n % 4 || n > (size_t)INT32_MAX) return -EPROTO;
    size_t pad = 0;
    if (n && s[n - 1] == '=') pad++;
    if (n > 1 && s[n - 2] == '=') pad++;
    for (size_t i = 0; i < n - pad; i++)
        if (s[i] == '=') return -EPROTO;
    char *d = malloc(n / 4 * 3 + 1);
    if (!d) return -ENOMEM;
    int got = n ? EVP_DecodeBlock((unsigned char *)d, (const unsigned char *)s, (int)n) : 0;
    if (got < 0 || (size_t)got < pad) {
        free(d);
        return -EPROTO;
    }
    *outlen = (size_t)got - pad;
    d[*outlen] = '\0';
    *out = d;
    return 0;
}

/* ---- JSON helpers ---- */

/* An int64 field of o that etcd writes as a decimal string (a JSON integer is
 * accepted too). Absent: 0. Malformed: -1 with *bad set. */
static int64_t ee_int(const json_t *o, const char *k, int *bad)
{
    json_t *v = json_object_get(o, k);
    if (!v) return 0;
    if (json_is_integer(v)) return json_integer_value(v);
    if (!json_is_string(v)) {
        *bad = 1;
        return -1;
    }
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || errno) {
        *bad = 1;
        return -1;
    }
    return x;
}

static int64_t ee_header_rev(const json_t *o, int *bad)
{
    json_t *h = json_object_get(o, "header");
    return json_is_object(h) ? ee_int(h, "revision", bad) : 0;
}

/* Decodes a kv object: revisions into kv (may be NULL) and, when val is not
 * NULL, the value. The key must be a valid base64 string. 0 or -EPROTO/-ENOMEM. */
static int ee_parse_kv(const json_t *o, char **val, size_t *vlen, mc_etcd_kv_t *kv)
{
    if (!json_is_object(o)) return -EPROTO;
    json_t *k = json_object_get(o, "key"), *v = json_object_get(o, "value");
    if (!json_is_string(k) || (v && !json_is_string(v))) return -EPROTO;
    int bad = 0;
    mc_etcd_kv_t t = {
        .create_rev = ee_int(o, "create_revision", &bad),
        .mod_rev = ee_int(o, "mod_revision", &bad),
        .version = ee_int(o, "version", &bad),
        .lease = ee_int(o, "lease", &bad),
    };
    if (bad) return -EPROTO;
    char *kb;
    size_t kl;
    int rc = ee_unb64(json_string_value(k), json_string_length(k), &kb, &kl);
    if (rc) return rc;
    free(kb);
    if (val) {
        rc = v ? ee_unb64(json_string_value(v), json_string_length(v), val, vlen)
               : ((*val = calloc(1, 1)) ? (*vlen = 0, 0) : -ENOMEM);
        if (rc) return rc;
    }
    if (kv) *kv = t;
    return 0;
}

/* Range answer object (a top-level answer or a txn response_range). */
static int ee_range_obj(const json_t *o, char **val, size_t *vlen, mc_etcd_kv_t *kv, int64_t *rev)
{
    if (!json_is_object(o)) return -EPROTO;
    int bad = 0;
    int64_t r = ee_header_rev(o, &bad);
    int64_t count = ee_int(o, "count", &bad);
    json_t *kvs = json_object_get(o, "kvs");
    if (bad || (kvs && !json_is_array(kvs))) return -EPROTO;
    if (rev) *rev = r;
    if (!kvs || json_array_size(kvs) == 0) return count > 0 ? -EPROTO : -ENOENT;
    return ee_parse_kv(json_array_get(kvs, 0), val, vlen, kv);
}

int mc_etcd_parse_range(const char *buf, size_t len, char **val, size_t *vlen, mc_etcd_kv_t *kv,
                        int64_t *rev)
{
    json_error_t err;
    json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
    if (!o) return -EPROTO;
    int rc = ee_range_obj(o, val, vlen, kv, rev);
    json_decref(o);
    return rc;
}

int mc_etcd_parse_watch(const char *buf, size_t len, mc_etcd_watch_cb cb, void *arg, int *created,
                        int *canceled)
{
    json_error_t err;
    json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
    if (!o) return -EPROTO;
    int rc = -EPROTO;
    *created = *canceled = 0;
    json_t *res = json_object_get(o, "result");
    if (!json_is_object(res)) goto fail; /* {"error": ...} also lands here */
    if (json_is_true(json_object_get(res, "created"))) *created = 1;
    if (json_is_true(json_object_get(res, "canceled"))) *canceled = 1;
    json_t *evs = json_object_get(res, "events");
    if (evs && !json_is_array(evs)) goto fail;
    size_t i;
    json_t *ev;
    json_array_foreach(evs, i, ev)
    {
        json_t *t = json_object_get(ev, "type"), *jkv = json_object_get(ev, "kv");
        if (!json_is_object(ev) || (t && !json_is_string(t)) || !json_is_object(jkv)) goto fail;
        mc_etcd_event_t e = {.type = MC_ETCD_EV_PUT};
        if (t && !strcmp(json_string_value(t), "DELETE"))
            e.type = MC_ETCD_EV_DELETE;
        else if (t && strcmp(json_string_value(t), "PUT"))
            goto fail;
        json_t *k = json_object_get(jkv, "key"), *v = json_object_get(jkv, "value");
        if (!json_is_string(k) || (v && !json_is_string(v))) goto fail;
        int bad = 0;
        e.mod_rev = ee_int(jkv, "mod_revision", &bad);
        if (bad) goto fail;
        char *kb = NULL, *vb = NULL;
        size_t kl = 0, vl = 0;
        if (ee_unb64(json_string_value(k), json_string_length(k), &kb, &kl)) goto fail;
        if (v && ee_unb64(json_string_value(v), json_string_length(v), &vb, &vl)) {
            free(kb);
            goto fail;
        }
        e.key = kb, e.keylen = kl, e.val = vb, e.vallen = vl;
        if (cb) cb(arg, &e);
        free(kb);
        free(vb);
    }
    rc = 0;
fail:
    json_decref(o);
    return rc;
}

/* ---- client ---- */

int mc_etcd_open(const char *endpoints, mc_etcd_t **out)
{
    pthread_once(&ee_once, ee_global_init);
    if (ee_global_rc != CURLE_OK) {
        MC_LOGE(TAG, "curl_global_init failed: %s", curl_easy_strerror(ee_global_rc));
        return -EIO;
    }
    if (!endpoints) return -EINVAL;
    mc_etcd_t *e = calloc(1, sizeof *e);
    char *list = strdup(endpoints);
    int rc = -ENOMEM;
    if (!e || !list) goto fail;
    rc = -EINVAL;
    char *save = NULL;
    for (char *tok = strtok_r(list, ";,", &save); tok; tok = strtok_r(NULL, ";,", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        size_t tl = strlen(tok);
        while (tl && isspace((unsigned char)tok[tl - 1]))
            tok[--tl] = '\0';
        if (!tl) continue;
        const char *scheme = "http://", *hp = tok;
        if (!strncasecmp(tok, "http://", 7))
            hp = tok + 7;
        else if (!strncasecmp(tok, "https://", 8))
            hp = tok + 8, scheme = "https://";
        size_t hl = strlen(hp);
        if (hl && hp[hl - 1] == '/') hl--;
        /* host:port with a numeric port; IPv6 in brackets */
        const char *colon = memrchr(hp, ':', hl);
        int ok = colon && colon > hp && colon + 1 < hp + hl;
        for (const char *q = colon ? colon + 1 : hp; ok && q < hp + hl; q++)
            ok = isdigit((unsigned char)*q);
        for (const char *q = hp; ok && q < (colon ? colon : hp); q++)
            ok = !strchr("/?#@ ", *q);
        if (!ok || strtol(colon + 1, NULL, 10) <= 0 || strtol(colon + 1, NULL, 10) > 65535) {
            MC_LOGE(TAG, "malformed etcd endpoint '%s' in '%s' (want host:port)", tok, endpoints);
            goto fail;
        }
        if (e->n == MC_ETCD_MAX_ENDPOINTS) {
            MC_LOGE(TAG, "more than %d etcd endpoints in '%s'", MC_ETCD_MAX_ENDPOINTS, endpoints);
            goto fail;
        }
        rc = -ENOMEM;
        size_t ul = strlen(scheme) + hl + 1;
        e->url[e->n] = malloc(ul);
        e->name[e->n] = strndup(hp, hl);
        if (!e->url[e->n] || !e->name[e->n]) {
            e->n++;
            goto fail;
        }
        snprintf(e->url[e->n], ul, "%s%.*s", scheme, (int)hl, hp);
        e->n++;
        rc = -EINVAL;
    }
    if (e->n == 0) {
        MC_LOGE(TAG, "no etcd endpoint in '%s'", endpoints);
        goto fail;
    }
    pthread_mutex_init(&e->lock, NULL);
    free(list);
    *out = e;
    return 0;
fail:
    if (e) {
        for (int i = 0; i < e->n; i++)
            free(e->url[i]), free(e->name[i]);
        free(e);
    }
    free(list);
    return rc;
}

void mc_etcd_close(mc_etcd_t *e)
{
    if (!e) return;
    for (int i = 0; i < e->npool; i++)
        curl_easy_cleanup(e->pool[i]);
    for (int i = 0; i < e->n; i++)
        free(e->url[i]), free(e->name[i]);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

int mc_etcd_endpoint_count(const mc_etcd_t *e)
{
    return e->n;
}

const char *mc_etcd_endpoint(const mc_etcd_t *e, int i)
{
    return i >= 0 && i < e->n ? e->name[i] : NULL;
}

static CURL *ee_handle_get(mc_etcd_t *e)
{
    CURL *c = NULL;
    pthread_mutex_lock(&e->lock);
    if (e->npool > 0) c = e->pool[--e->npool];
    pthread_mutex_unlock(&e->lock);
    return c ? c : curl_easy_init();
}

static void ee_handle_put(mc_etcd_t *e, CURL *c)
{
    curl_easy_reset(c);
    pthread_mutex_lock(&e->lock);
    if (e->npool < EE_POOL_MAX) {
        e->pool[e->npool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&e->lock);
    if (c) curl_easy_cleanup(c);
}

/* Short cause of a failed transfer, lower-case, e.g. "connection refused". */
static void ee_cause(CURL *c, CURLcode cc, const ee_buf_t *b, char *out, size_t len)
{
    long oserr = 0;
    curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &oserr);
    if (b->too_big)
        snprintf(out, len, "answer larger than %u bytes", (unsigned)b->max);
    else if (cc == CURLE_OPERATION_TIMEDOUT)
        snprintf(out, len, "no answer within %d ms", MC_ETCD_TIMEOUT_MS);
    else if (oserr)
        snprintf(out, len, "%s", strerror((int)oserr));
    else
        snprintf(out, len, "%s", curl_easy_strerror(cc));
    if (out[0]) out[0] = (char)tolower((unsigned char)out[0]);
}

/* Copies the gateway's error message of a non-200 answer (one line, short). */
static int ee_error_text(const ee_buf_t *b, char *out, size_t len)
{
    int code = -1;
    out[0] = '\0';
    json_error_t err;
    json_t *o = b->data ? json_loadb(b->data, b->len, 0, &err) : NULL;
    if (json_is_object(o)) {
        json_t *m = json_object_get(o, "message"), *c = json_object_get(o, "code");
        if (json_is_string(m)) snprintf(out, len, "%s", json_string_value(m));
        if (json_is_integer(c)) code = (int)json_integer_value(c);
    }
    json_decref(o);
    if (!out[0]) {
        size_t n = 0;
        for (size_t i = 0; b->data && i < b->len && n + 1 < len; i++) {
            unsigned char ch = (unsigned char)b->data[i];
            out[n++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
        }
        out[n] = '\0';
    }
    return code;
}

/* gRPC codes the gateway puts in "code". */
enum { EE_GRPC_NOT_FOUND = 5, EE_GRPC_UNAVAILABLE = 14 };

/* POSTs body to <endpoint>/v3/<path> on the endpoints in turn (see the top of
 * the file) and parses the 200 answer into *ans. Returns 0, -ENOENT for a
 * NOT_FOUND answer (not logged), -EIO (one WARN line), -ENOMEM. */
static int ee_call(mc_etcd_t *e, const char *path, json_t *body, json_t **ans)
{
    char *text = json_dumps(body, JSON_COMPACT);
    if (!text) return -ENOMEM;
    CURL *c = ee_handle_get(e);
    int rc = -ENOMEM;
    char why[1024] = "", url[600];
    size_t wl = 0;
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = hdrs ? curl_slist_append(hdrs, "Expect:") : NULL;
    if (!c || !h2) goto out;
    hdrs = h2;
    int first = atomic_load(&e->good);
    for (int k = 0; k < e->n; k++) {
        int i = (first + k) % e->n;
        ee_buf_t b = {.max = MC_ETCD_MAX_RESPONSE};
        snprintf(url, sizeof url, "%s/v3/%s", e->url[i], path);
        curl_easy_reset(c);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)MC_ETCD_TIMEOUT_MS);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)MC_ETCD_CONNECT_TIMEOUT_MS);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ee_write_cb);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        CURLcode cc = curl_easy_perform(c);
        char cause[400];
        if (cc != CURLE_OK) {
            ee_cause(c, cc, &b, cause, sizeof cause);
            free(b.data);
            int n =
                snprintf(why + wl, sizeof why - wl, "%s%s: %s", wl ? "; " : "", e->name[i], cause);
            if (n > 0) wl = wl + (size_t)n < sizeof why ? wl + (size_t)n : sizeof why - 1;
            continue;
        }
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status == 200) {
            json_error_t err;
            *ans = json_loadb(b.data ? b.data : "", b.len, 0, &err);
            free(b.data);
            atomic_store(&e->good, i);
            if (!*ans || !json_is_object(*ans)) {
                json_decref(*ans);
                *ans = NULL;
                MC_LOGW(TAG, "etcd %s: malformed answer to %s: %s", e->name[i], path, err.text);
                rc = -EIO;
                goto out;
            }
            rc = 0;
            goto out;
        }
        int code = ee_error_text(&b, cause, sizeof cause);
        free(b.data);
        if (status == 503 || code == EE_GRPC_UNAVAILABLE) { /* no leader here: try another */
            int n =
                snprintf(why + wl, sizeof why - wl, "%s%s: %s", wl ? "; " : "", e->name[i], cause);
            if (n > 0) wl = wl + (size_t)n < sizeof why ? wl + (size_t)n : sizeof why - 1;
            continue;
        }
        atomic_store(&e->good, i);
        if (code == EE_GRPC_NOT_FOUND) {
            rc = -ENOENT;
            goto out;
        }
        MC_LOGW(TAG, "etcd %s: %s answered %ld: %s", e->name[i], path, status, cause);
        rc = -EIO;
        goto out;
    }
    MC_LOGW(TAG, "etcd %s", why);
    rc = -EIO;
out:
    curl_slist_free_all(hdrs);
    if (c) ee_handle_put(e, c);
    free(text);
    return rc;
}

/* Sets o[k] = base64(p, n); -ENOMEM on failure. */
static int ee_set_b64(json_t *o, const char *k, const void *p, size_t n)
{
    char *s = ee_b64(p, n);
    if (!s) return -ENOMEM;
    int rc = json_object_set_new(o, k, json_string(s)) ? -ENOMEM : 0;
    free(s);
    return rc;
}

static int ee_set_int(json_t *o, const char *k, int64_t v)
{
    char s[32];
    snprintf(s, sizeof s, "%lld", (long long)v);
    return json_object_set_new(o, k, json_string(s)) ? -ENOMEM : 0;
}

/* Sets the end of the range covering every key that starts with p[0..n): the
 * prefix with its last byte below 0xff incremented ("\0" = to the end). */
static int ee_set_prefix_end(json_t *o, const char *p, size_t n)
{
    char *end = malloc(n + 1);
    if (!end) return -ENOMEM;
    memcpy(end, p, n);
    size_t m = n;
    while (m && (unsigned char)end[m - 1] == 0xff)
        m--;
    int rc;
    if (m == 0) {
        rc = ee_set_b64(o, "range_end", "", 1);
    } else {
        end[m - 1]++;
        rc = ee_set_b64(o, "range_end", end, m);
    }
    free(end);
    return rc;
}

int mc_etcd_get(mc_etcd_t *e, const char *key, size_t keylen, char **val, size_t *len,
                mc_etcd_kv_t *kv, int64_t *rev)
{
    json_t *req = json_object(), *ans = NULL;
    int rc = req ? ee_set_b64(req, "key", key, keylen) : -ENOMEM;
    if (!rc) rc = ee_call(e, "kv/range", req, &ans);
    if (!rc) {
        size_t vl = 0;
        rc = ee_range_obj(ans, val, len ? len : &vl, kv, rev);
        if (rc == -EPROTO) {
            MC_LOGW(TAG, "etcd: malformed range answer for key '%.*s'", (int)keylen, key);
            rc = -EIO;
        }
    }
    json_decref(req);
    json_decref(ans);
    return rc;
}

int mc_etcd_put(mc_etcd_t *e, const char *key, size_t keylen, const void *val, size_t len,
                int64_t lease, int64_t *rev)
{
    json_t *req = json_object(), *ans = NULL;
    int rc = req ? ee_set_b64(req, "key", key, keylen) : -ENOMEM;
    if (!rc) rc = ee_set_b64(req, "value", val, len);
    if (!rc && lease) rc = ee_set_int(req, "lease", lease);
    if (!rc) rc = ee_call(e, "kv/put", req, &ans);
    if (!rc && rev) {
        int bad = 0;
        *rev = ee_header_rev(ans, &bad);
    }
    json_decref(req);
    json_decref(ans);
    return rc;
}

int mc_etcd_del(mc_etcd_t *e, const char *key, size_t keylen, int prefix, int64_t *ndeleted,
                int64_t *rev)
{
    json_t *req = json_object(), *ans = NULL;
    int rc = req ? ee_set_b64(req, "key", key, keylen) : -ENOMEM;
    if (!rc && prefix) rc = ee_set_prefix_end(req, key, keylen);
    if (!rc) rc = ee_call(e, "kv/deleterange", req, &ans);
    if (!rc) {
        int bad = 0;
        int64_t n = ee_int(ans, "deleted", &bad);
        if (rev) *rev = ee_header_rev(ans, &bad);
        if (ndeleted) *ndeleted = n;
        rc = bad ? -EIO : n > 0 ? 0 : -ENOENT;
    }
    json_decref(req);
    json_decref(ans);
    return rc;
}

/* One-compare transaction on key: compare = {target, result, <field>: value}
 * built by the caller; success = one request (put or delete) of key; failure =
 * a range of key. Returns 1 when the compare held, 0 when not (the failure
 * range decoded into cur/kv when asked), or a negative errno. */
static int ee_txn(mc_etcd_t *e, const char *key, size_t keylen, json_t *cmp, json_t *op, char **cur,
                  size_t *curlen, mc_etcd_kv_t *kv, int64_t *rev)
{
    json_t *req = json_object(), *ans = NULL, *arr;
    int rc = -ENOMEM;
    if (!req || !cmp || !op) goto out;
    if ((rc = ee_set_b64(cmp, "key", key, keylen))) goto out;
    json_t *rng = json_object();
    if (!rng || ee_set_b64(rng, "key", key, keylen)) {
        json_decref(rng);
        goto out;
    }
    if (json_object_set_new(req, "compare", (arr = json_array())) || json_array_append(arr, cmp) ||
        json_object_set_new(req, "success", (arr = json_array())) || json_array_append(arr, op) ||
        json_object_set_new(req, "failure", (arr = json_array())) ||
        json_array_append_new(arr, json_pack("{s:o}", "request_range", rng)))
        goto out;
    if ((rc = ee_call(e, "kv/txn", req, &ans))) goto out;
    int bad = 0;
    if (rev) *rev = ee_header_rev(ans, &bad);
    if (json_is_true(json_object_get(ans, "succeeded"))) {
        rc = 1;
        goto out;
    }
    rc = 0;
    json_t *r =
        json_object_get(json_array_get(json_object_get(ans, "responses"), 0), "response_range");
    if (cur || kv) {
        size_t vl = 0;
        char *v = NULL;
        int prc = ee_range_obj(r, cur ? &v : NULL, &vl, kv, NULL);
        if (prc == -ENOENT) { /* deleted between compare and range cannot happen in one txn */
            if (kv) *kv = (mc_etcd_kv_t){0};
        } else if (prc) {
            MC_LOGW(TAG, "etcd: malformed txn answer for key '%.*s'", (int)keylen, key);
            rc = -EIO;
        } else if (cur) {
            *cur = v;
            if (curlen) *curlen = vl;
        }
    }
out:
    json_decref(req);
    json_decref(ans);
    json_decref(cmp);
    json_decref(op);
    return rc;
}

/* {"request_put": {key, value, lease}} */
static json_t *ee_put_op(const char *key, size_t keylen, const void *val, size_t len, int64_t lease)
{
    json_t *p = json_object();
    if (!p || ee_set_b64(p, "key", key, keylen) || ee_set_b64(p, "value", val, len) ||
        (lease && ee_set_int(p, "lease", lease))) {
        json_decref(p);
        return NULL;
    }
    return json_pack("{s:o}", "request_put", p);
}

int mc_etcd_create(mc_etcd_t *e, const char *key, size_t keylen, const void *val, size_t len,
                   int64_t lease, char **cur, size_t *curlen, mc_etcd_kv_t *kv, int64_t *rev)
{
    json_t *cmp =
        json_pack("{s:s,s:s,s:s}", "target", "CREATE", "result", "EQUAL", "create_revision", "0");
    int rc =
        ee_txn(e, key, keylen, cmp, ee_put_op(key, keylen, val, len, lease), cur, curlen, kv, rev);
    return rc < 0 ? rc : rc ? 0 : -EEXIST;
}

int mc_etcd_put_if_rev(mc_etcd_t *e, const char *key, size_t keylen, const void *val, size_t len,
                       int64_t lease, int64_t mod_rev, int64_t *rev)
{
    char r[32];
    snprintf(r, sizeof r, "%lld", (long long)mod_rev);
    json_t *cmp =
        mod_rev ? json_pack("{s:s,s:s,s:s}", "target", "MOD", "result", "EQUAL", "mod_revision", r)
                : json_pack("{s:s,s:s,s:s}", "target", "CREATE", "result", "EQUAL",
                            "create_revision", "0");
    int rc =
        ee_txn(e, key, keylen, cmp, ee_put_op(key, keylen, val, len, lease), NULL, NULL, NULL, rev);
    return rc < 0 ? rc : rc ? 0 : -ECANCELED;
}

int mc_etcd_put_if_created(mc_etcd_t *e, const char *guard, size_t guardlen, int64_t create_rev,
                           const char *key, size_t keylen, const void *val, size_t len,
                           int64_t *rev)
{
    char r[32];
    snprintf(r, sizeof r, "%lld", (long long)create_rev);
    json_t *cmp =
        json_pack("{s:s,s:s,s:s}", "target", "CREATE", "result", "EQUAL", "create_revision", r);
    int rc =
        ee_txn(e, guard, guardlen, cmp, ee_put_op(key, keylen, val, len, 0), NULL, NULL, NULL, rev);
    return rc < 0 ? rc : rc ? 0 : -ECANCELED;
}

int mc_etcd_del_if_value(mc_etcd_t *e, const char *key, size_t keylen, const void *val, size_t len,
                         int64_t *rev)
{
    json_t *cmp = json_pack("{s:s,s:s}", "target", "VALUE", "result", "EQUAL");
    if (cmp && ee_set_b64(cmp, "value", val, len)) json_decref(cmp), cmp = NULL;
    json_t *d = json_object();
    if (d && ee_set_b64(d, "key", key, keylen)) json_decref(d), d = NULL;
    json_t *op = d ? json_pack("{s:o}", "request_delete_range", d) : NULL;
    int rc = ee_txn(e, key, keylen, cmp, op, NULL, NULL, NULL, rev);
    return rc < 0 ? rc : rc ? 0 : -ECANCELED;
}

int mc_etcd_lease_grant(mc_etcd_t *e, int64_t ttl_s, int64_t *id)
{
    json_t *req = json_pack("{s:I}", "TTL", (json_int_t)ttl_s), *ans = NULL;
    int rc = req ? ee_call(e, "lease/grant", req, &ans) : -ENOMEM;
    if (!rc) {
        int bad = 0;
        *id = ee_int(ans, "ID", &bad);
        if (bad || *id == 0) {
            MC_LOGW(TAG, "etcd: lease grant answered without an ID");
            rc = -EIO;
        }
    }
    json_decref(req);
    json_decref(ans);
    return rc;
}

int mc_etcd_lease_keepalive(mc_etcd_t *e, int64_t id, int64_t *ttl)
{
    json_t *req = json_object(), *ans = NULL;
    int rc = req ? ee_set_int(req, "ID", id) : -ENOMEM;
    if (!rc) rc = ee_call(e, "lease/keepalive", req, &ans);
    if (!rc) {
        /* the gateway wraps stream messages in "result"; a lease that is gone
         * answers without a TTL */
        json_t *r = json_object_get(ans, "result");
        int bad = 0;
        int64_t t = json_is_object(r) ? ee_int(r, "TTL", &bad) : 0;
        if (bad)
            rc = -EIO;
        else if (t <= 0)
            rc = -ENOENT;
        else if (ttl)
            *ttl = t;
    }
    json_decref(req);
    json_decref(ans);
    return rc;
}

int mc_etcd_lease_revoke(mc_etcd_t *e, int64_t id)
{
    json_t *req = json_object(), *ans = NULL;
    int rc = req ? ee_set_int(req, "ID", id) : -ENOMEM;
    if (!rc) rc = ee_call(e, "lease/revoke", req, &ans);
    json_decref(req);
    json_decref(ans);
    return rc;
}

/* ---- watch ---- */

struct mc_etcd_watch {
    mc_etcd_t *e;
    char *key;
    size_t keylen;
    int prefix;
    int64_t start_rev;
    mc_etcd_watch_cb cb;
    void *arg;
    CURLM *multi;
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t lock; /* guards created, and the backoff wait */
    pthread_cond_t cond;
    int created;    /* etcd confirmed the current stream */
    int ncreated;   /* streams confirmed so far */
    int canceled;   /* etcd cancelled the current stream */
    int bad_logged; /* one line per stream for undecodable messages */
    ee_buf_t line;
};

/* Write callback of the stream: splits lines, decodes each message. Returns
 * 0 (ends the transfer) when etcd cancelled the watch. */
static size_t ew_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
    mc_etcd_watch_t *w = arg;
    size_t n = size * nmemb;
    if (ee_buf_add(&w->line, ptr, n)) return 0;
    size_t start = 0;
    for (;;) {
        char *nl = memchr(w->line.data + start, '\n', w->line.len - start);
        if (!nl) break;
        size_t ml = (size_t)(nl - (w->line.data + start));
        int created = 0, canceled = 0;
        if (ml && mc_etcd_parse_watch(w->line.data + start, ml, w->cb, w->arg, &created,
                                      &canceled) != 0) {
            if (!w->bad_logged)
                MC_LOGW(TAG, "etcd watch: undecodable message ignored (%zu bytes)", ml);
            w->bad_logged = 1;
        }
        start += ml + 1;
        if (created) {
            pthread_mutex_lock(&w->lock);
            w->created = 1;
            w->ncreated++;
            int again = w->ncreated > 1;
            pthread_cond_broadcast(&w->cond);
            pthread_mutex_unlock(&w->lock);
            if (again) { /* events between the two streams are unknown */
                mc_etcd_event_t ev = {.type = MC_ETCD_EV_RESET};
                w->cb(w->arg, &ev);
            }
        }
        if (canceled) {
            w->canceled = 1;
            return 0;
        }
    }
    memmove(w->line.data, w->line.data + start, w->line.len - start);
    w->line.len -= start;
    return n;
}

/* Runs one stream against endpoint i until it ends or stop is set. Returns a
 * cause text for logs in why. */
static void ew_stream(mc_etcd_watch_t *w, int i, int64_t from, char *why, size_t wlen)
{
    mc_etcd_t *e = w->e;
    why[0] = '\0';
    json_t *cr = json_object();
    if (!cr || ee_set_b64(cr, "key", w->key, w->keylen) ||
        (w->prefix && ee_set_prefix_end(cr, w->key, w->keylen)) ||
        (from && ee_set_int(cr, "start_revision", from))) {
        json_decref(cr);
        snprintf(why, wlen, "out of memory");
        return;
    }
    json_t *req = json_pack("{s:o}", "create_request", cr);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    char url[600];
    snprintf(url, sizeof url, "%s/v3/watch", e->url[i]);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    CURL *c = curl_easy_init();
    if (!text || !hdrs || !c) {
        snprintf(why, wlen, "out of memory");
        goto out;
    }
    w->line.len = 0;
    w->canceled = 0;
    w->bad_logged = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)MC_ETCD_CONNECT_TIMEOUT_MS);
    /* the stream is idle between events: dead peers are found by TCP keepalive */
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 5L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 2L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ew_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, w);
    if (curl_multi_add_handle(w->multi, c) != CURLM_OK) {
        snprintf(why, wlen, "curl_multi_add_handle failed");
        goto out;
    }
    int running = 1;
    while (running && !atomic_load(&w->stop)) {
        if (curl_multi_perform(w->multi, &running) != CURLM_OK) break;
        if (running) curl_multi_poll(w->multi, NULL, 0, 1000, NULL);
    }
    int left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(w->multi, &left)))
        if (m->msg == CURLMSG_DONE && m->easy_handle == c) {
            long status = 0;
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
            if (w->canceled)
                snprintf(why, wlen, "watch cancelled by etcd");
            else if (m->data.result == CURLE_OK && status != 200)
                snprintf(why, wlen, "watch answered %ld", status);
            else if (m->data.result == CURLE_OK)
                snprintf(why, wlen, "stream closed");
            else
                ee_cause(c, m->data.result, &w->line, why, wlen);
        }
    curl_multi_remove_handle(w->multi, c);
out:
    if (c) curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    free(text);
}

static void *ew_main(void *arg)
{
    mc_etcd_watch_t *w = arg;
    mc_etcd_t *e = w->e;
    int k = 0, down_logged = 0;
    while (!atomic_load(&w->stop)) {
        int i = (atomic_load(&e->good) + k) % e->n;
        char why[400];
        int64_t from = w->ncreated ? 0 : w->start_rev;
        ew_stream(w, i, from, why, sizeof why);
        if (atomic_load(&w->stop)) break;
        pthread_mutex_lock(&w->lock);
        int was = w->created;
        w->created = 0;
        pthread_mutex_unlock(&w->lock);
        if (was) {
            atomic_store(&e->good, i);
            mc_etcd_event_t ev = {.type = MC_ETCD_EV_RESET};
            w->cb(w->arg, &ev);
            MC_LOGW(TAG, "etcd %s: watch on '%.*s' ended (%s); reconnecting", e->name[i],
                    (int)w->keylen, w->key, why);
            down_logged = 0;
        } else if (!down_logged && (k + 1) % e->n == 0) { /* every endpoint failed once */
            MC_LOGW(TAG, "etcd %s: cannot watch '%.*s' (%s); retrying every %d ms", e->name[i],
                    (int)w->keylen, w->key, why, EE_WATCH_BACKOFF_MS);
            down_logged = 1;
        }
        if (!was) k++;
        struct timespec ts = mc_deadline_ts(CLOCK_REALTIME, EE_WATCH_BACKOFF_MS);
        pthread_mutex_lock(&w->lock);
        if (!was && !atomic_load(&w->stop)) pthread_cond_timedwait(&w->cond, &w->lock, &ts);
        pthread_mutex_unlock(&w->lock);
    }
    return NULL;
}

int mc_etcd_watch_start(mc_etcd_t *e, const char *key, size_t keylen, int prefix, int64_t start_rev,
                        mc_etcd_watch_cb cb, void *arg, mc_etcd_watch_t **out)
{
    mc_etcd_watch_t *w = calloc(1, sizeof *w);
    if (!w) return -ENOMEM;
    w->e = e;
    w->key = malloc(keylen + 1);
    w->multi = curl_multi_init();
    if (!w->key || !w->multi) {
        free(w->key);
        if (w->multi) curl_multi_cleanup(w->multi);
        free(w);
        return -ENOMEM;
    }
    memcpy(w->key, key, keylen);
    w->key[keylen] = '\0';
    w->keylen = keylen;
    w->prefix = prefix;
    w->start_rev = start_rev;
    w->cb = cb;
    w->arg = arg;
    w->line.max = EE_WATCH_MAX_LINE;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->thread, NULL, ew_main, w) != 0) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
        curl_multi_cleanup(w->multi);
        free(w->key);
        free(w);
        return -EAGAIN;
    }
    *out = w;
    return 0;
}

int mc_etcd_watch_wait_created(mc_etcd_watch_t *w, int timeout_ms)
{
    struct timespec ts = mc_deadline_ts(CLOCK_REALTIME, timeout_ms > 0 ? (uint64_t)timeout_ms : 0);
    pthread_mutex_lock(&w->lock);
    int rc = 0;
    while (!w->created && rc == 0)
        rc = pthread_cond_timedwait(&w->cond, &w->lock, &ts);
    int ok = w->created;
    pthread_mutex_unlock(&w->lock);
    return ok ? 0 : -ETIMEDOUT;
}

void mc_etcd_watch_stop(mc_etcd_watch_t *w)
{
    if (!w) return;
    atomic_store(&w->stop, 1);
    pthread_mutex_lock(&w->lock);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    curl_multi_wakeup(w->multi);
    pthread_join(w->thread, NULL);
    curl_multi_cleanup(w->multi);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w->line.data);
    free(w->key);
    free(w);
}
