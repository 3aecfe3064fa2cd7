/* meta_http.c: the `http://` (and `https://`) backend of the metadata store, a
 * client of the upstream HTTP metadata protocol (spec §3.4, §4):
 *   GET|PUT|DELETE <url>?key=<url-escaped key>
 * PUT carries the JSON text with Content-Type: application/json. Only HTTP 200
 * counts as success; 404 reads as -ENOENT, a 400 answer to a PUT of an rpc_meta
 * key (the server's duplicate rule) as -EEXIST, anything else as -EIO. Timeouts
 * match upstream: 3000 ms per request, 1500 ms to connect.
 *
 * Requests use libcurl easy handles taken from a small mutex-protected pool, so
 * that many threads can call at once and keep-alive connections are reused
 * between calls; a handle is only ever used by one thread at a time. */
#include "meta_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "base_log.h"
#include "net_http_auth.h"

#define MH_TIMEOUT_MS 3000L
#define MH_CONNECT_TIMEOUT_MS 1500L
#define MH_POOL_MAX 8
/* A segment descriptor is a few KiB; anything near this is a broken server. */
#define MH_MAX_RESPONSE (64u << 20)

typedef struct {
    char *url; /* base URL, e.g. http://127.0.0.1:8080/metadata */
    char sep;  /* '?' or '&' (when url already has a query) */
    pthread_mutex_t lock;
    CURL *pool[MH_POOL_MAX];
    int npool;
} mh_t;

typedef struct {
    char *data;
    size_t len, cap;
    int too_big;
} mh_buf_t;

static pthread_once_t mh_once = PTHREAD_ONCE_INIT;
static CURLcode mh_global_rc = CURLE_FAILED_INIT;

static void mh_global_init(void)
{
    mh_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* libcurl write callback: appends to an mh_buf_t, refusing more than
 * MH_MAX_RESPONSE bytes (returning a short count makes curl fail the transfer). */
static size_t mh_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
    mh_buf_t *b = arg;
    size_t n = size * nmemb;
    if (b->len + n > MH_MAX_RESPONSE) {
        b->too_big = 1;
        return 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) return 0;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* Drops a partial answer before a retry (mc_http_auth_perform). */
static void mh_buf_reset(void *arg)
{
    mh_buf_t *b = arg;
    b->len = 0;
    b->too_big = 0;
    if (b->data) b->data[0] = '\0';
}

/* Takes a handle from the pool or makes a new one; NULL on allocation failure. */
static CURL *mh_handle_get(mh_t *h)
{
    CURL *c = NULL;
    pthread_mutex_lock(&h->lock);
    if (h->npool > 0) c = h->pool[--h->npool];
    pthread_mutex_unlock(&h->lock);
    return c ? c : curl_easy_init();
}

/* Returns a handle to the pool (options reset, connection cache kept). */
static void mh_handle_put(mh_t *h, CURL *c)
{
    curl_easy_reset(c);
    pthread_mutex_lock(&h->lock);
    if (h->npool < MH_POOL_MAX) {
        h->pool[h->npool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&h->lock);
    if (c) curl_easy_cleanup(c);
}

/* Performs one request: method is "GET", "PUT" or "DELETE"; body is sent for
 * PUT. On transport success returns 0 with *status set and, when out is not
 * NULL, the response body in *out (caller frees out->data). Returns -EIO (logged,
 * naming URL and key) on transport failure, -ENOMEM, -EINVAL for a NULL key.
 * Thread: any; the handle used is private to this call. */
static int mh_request(mh_t *h, const char *method, const char *key, const char *body, long *status,
                      mh_buf_t *out)
{
    if (!key) return -EINVAL;
    int rc = -ENOMEM;
    char *url = NULL, *esc = NULL;
    struct curl_slist *hdrs = NULL;
    mh_buf_t buf = {0};
    CURL *c = mh_handle_get(h);
    if (!c) goto fail;
    esc = curl_easy_escape(c, key, (int)strlen(key));
    if (!esc) goto fail;
    size_t ul = strlen(h->url) + strlen(esc) + 8;
    url = malloc(ul);
    if (!url) goto fail;
    snprintf(url, ul, "%s%ckey=%s", h->url, h->sep, esc);

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, MH_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, MH_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mh_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &buf);
    if (!strcmp(method, "PUT")) {
        /* "Expect:" disables curl's 100-continue round trip for larger bodies. */
        struct curl_slist *t = curl_slist_append(NULL, "Content-Type: application/json");
        if (!t) goto fail;
        hdrs = t;
        t = curl_slist_append(hdrs, "Expect:");
        if (!t) goto fail;
        hdrs = t;
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? strlen(body) : 0));
    } else if (!strcmp(method, "DELETE")) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }

    char what[300];
    snprintf(what, sizeof what, "metadata server %s", h->url);
    CURLcode cc = mc_http_auth_perform(c, &hdrs, "meta", what, mh_buf_reset, &buf, status);
    if (cc != CURLE_OK) {
        MC_LOGW("meta", "http %s %s (key '%s') failed: %s", method, h->url, key,
                buf.too_big ? "response larger than 64 MiB" : curl_easy_strerror(cc));
        rc = -EIO;
        goto fail;
    }
    if (*status == 0 || *status == 401 || *status == 403) { /* the secret: logged */
        rc = -EACCES;
        goto fail;
    }
    if (out) {
        *out = buf;
        buf.data = NULL;
    }
    rc = 0;
fail:
    free(buf.data);
    curl_slist_free_all(hdrs);
    curl_free(esc);
    free(url);
    if (c) mh_handle_put(h, c);
    return rc;
}

/* Logs a non-200 answer in one line: method, URL, key, status and the first
 * part of the server's reason text. */
static void mh_log_status(const mh_t *h, const char *method, const char *key, long status,
                          const mh_buf_t *b)
{
    char why[161];
    size_t n = 0;
    for (size_t i = 0; i < b->len && n < sizeof why - 1; i++) {
        unsigned char ch = (unsigned char)b->data[i];
        why[n++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch; /* keep it one line */
    }
    why[n] = '\0';
    MC_LOGW("meta", "http %s %s (key '%s') answered %ld: %s", method, h->url, key, status, why);
}

static int mh_get(void *impl, const char *key, char **val)
{
    mh_t *h = impl;
    long status = 0;
    mh_buf_t b = {0};
    int rc = mh_request(h, "GET", key, NULL, &status, &b);
    if (rc) return rc;
    if (status == 200) {
        if (!b.data) { /* empty body */
            b.data = calloc(1, 1);
            if (!b.data) return -ENOMEM;
        }
        *val = b.data;
        return 0;
    }
    if (status == 404) {
        rc = -ENOENT;
    } else {
        mh_log_status(h, "GET", key, status, &b);
        rc = -EIO;
    }
    free(b.data);
    return rc;
}

static int mh_put(void *impl, const char *key, const char *val)
{
    mh_t *h = impl;
    long status = 0;
    mh_buf_t b = {0};
    int rc = mh_request(h, "PUT", key, val, &status, &b);
    if (rc) return rc;
    if (status == 200) {
        rc = 0;
    } else if (status == 400 && strstr(key, "rpc_meta")) {
        /* The server refuses to replace an rpc_meta record with a different one:
         * another process already owns this name. Callers retry another port. */
        MC_LOGD("meta", "http PUT %s (key '%s'): duplicate rpc_meta refused", h->url, key);
        rc = -EEXIST;
    } else {
        mh_log_status(h, "PUT", key, status, &b);
        rc = -EIO;
    }
    free(b.data);
    return rc;
}

static int mh_del(void *impl, const char *key)
{
    mh_t *h = impl;
    long status = 0;
    mh_buf_t b = {0};
    int rc = mh_request(h, "DELETE", key, NULL, &status, &b);
    if (rc) return rc;
    if (status == 200) {
        rc = 0;
    } else if (status == 404) {
        rc = -ENOENT;
    } else {
        mh_log_status(h, "DELETE", key, status, &b);
        rc = -EIO;
    }
    free(b.data);
    return rc;
}

static void mh_close(void *impl)
{
    mh_t *h = impl;
    if (!h) return;
    for (int i = 0; i < h->npool; i++)
        curl_easy_cleanup(h->pool[i]);
    pthread_mutex_destroy(&h->lock);
    free(h->url);
    free(h);
}

static const mc__meta_ops_t mh_ops = {
    .name = "http",
    .get = mh_get,
    .put = mh_put,
    .del = mh_del,
    .close = mh_close,
};

/* Opens the HTTP backend for url (the full endpoint, e.g.
 * "http://127.0.0.1:8080/metadata", kept as given). Validates it with curl's URL
 * parser: -EINVAL when malformed or without a host, -ENOMEM, -EIO when libcurl
 * cannot be initialised. No request is made here. Thread: any. */
int mc__meta_http_open(const char *url, const mc__meta_ops_t **ops, void **impl)
{
    pthread_once(&mh_once, mh_global_init);
    if (mh_global_rc != CURLE_OK) {
        MC_LOGE("meta", "curl_global_init failed: %s", curl_easy_strerror(mh_global_rc));
        return -EIO;
    }
    int rc = -EINVAL;
    char *host = NULL;
    mh_t *h = NULL;
    CURLU *u = curl_url();
    if (!u) return -ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host) {
        MC_LOGE("meta", "malformed metadata URL '%s'", url);
        goto fail;
    }
    rc = -ENOMEM;
    h = calloc(1, sizeof *h);
    if (!h) goto fail;
    h->url = strdup(url);
    if (!h->url) goto fail;
    h->sep = strchr(url, '?') ? '&' : '?';
    pthread_mutex_init(&h->lock, NULL);
    *ops = &mh_ops;
    *impl = h;
    h = NULL;
    rc = 0;
fail:
    if (h) free(h->url);
    free(h);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}
