/* store_dummy.c: dummy clients of a standalone mooncake_client (upstream's
 * setup_dummy). Upstream's dummy forwards every call to the standalone
 * process over an RPC and shares memory with it; here the dummy asks the
 * standalone client for its configuration once, over HTTP (GET
 * /v1/client_config, answered by store_srv.c), and then is an ordinary pure
 * client of the same master: its bytes move with its own transfer engine to
 * and from the segment the standalone client mounted. Protocol: docs/store.md,
 * "Standalone client and dummy clients". */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_log.h"
#include "net_http_auth.h"
#include "net_sock.h"
#include "store_int.h"

#define TAG "store"
#define DUMMY_CONNECT_TIMEOUT_MS 3000
#define DUMMY_TIMEOUT_MS 10000

static pthread_once_t dm_once = PTHREAD_ONCE_INIT;
static CURLcode dm_global_rc = CURLE_FAILED_INIT;

static void dm_global_init(void)
{
    dm_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Copies the JSON string member `key` of obj into dst[cap]. Returns 0, or -1
 * when it is missing (and required), not a string, or does not fit. An
 * optional member that is missing leaves dst empty. */
static int dm_str(json_t *obj, const char *key, int required, char *dst, size_t cap)
{
    dst[0] = '\0';
    json_t *v = json_object_get(obj, key);
    if (!v) return required ? -1 : 0;
    if (!json_is_string(v)) return -1;
    size_t n = json_string_length(v);
    const char *p = json_string_value(v);
    if (n >= cap || memchr(p, '\0', n) || (required && n == 0)) return -1;
    memcpy(dst, p, n + 1);
    return 0;
}

int mc__store_dummy_cfg_parse(const char *body, size_t len, mc__store_dummy_cfg_t *out)
{
    memset(out, 0, sizeof *out);
    if (!body || len > MC__STORE_DUMMY_MAX_BODY) return MC_ERR_RPC_FAIL;
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return MC_ERR_RPC_FAIL;
    int rc = MC_ERR_RPC_FAIL;
    if (!json_is_object(root)) goto out;
    json_t *ver = json_object_get(root, "version");
    if (!json_is_integer(ver)) goto out;
    if (json_integer_value(ver) != MC__STORE_DUMMY_PROTO) {
        rc = MC_ERR_INVALID_VERSION;
        goto out;
    }
    if (dm_str(root, "name", 1, out->name, sizeof out->name) ||
        dm_str(root, "master_server_address", 1, out->master_server_address,
               sizeof out->master_server_address) ||
        dm_str(root, "metadata_server", 1, out->metadata_server, sizeof out->metadata_server) ||
        dm_str(root, "protocol", 1, out->protocol, sizeof out->protocol) ||
        dm_str(root, "device_names", 0, out->device_names, sizeof out->device_names) ||
        dm_str(root, "tenant_id", 0, out->tenant_id, sizeof out->tenant_id))
        goto out;
    rc = 0;
out:
    json_decref(root);
    if (rc) memset(out, 0, sizeof *out);
    return rc;
}

typedef struct {
    char *data;
    size_t len;
} dm_buf_t;

/* libcurl write callback: appends, refusing more than MC__STORE_DUMMY_MAX_BODY. */
static size_t dm_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
    dm_buf_t *b = arg;
    size_t n = size * nmemb;
    if (b->len + n > MC__STORE_DUMMY_MAX_BODY) return 0;
    char *p = realloc(b->data, b->len + n + 1);
    if (!p) return 0;
    memcpy(p + b->len, ptr, n);
    b->data = p;
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* Drops a partial answer before a retry (mc_http_auth_perform). */
static void dm_buf_reset(void *arg)
{
    ((dm_buf_t *)arg)->len = 0;
}

/* GET http://addr/v1/client_config into cfg. Logs one line naming addr on failure. */
static int dm_fetch(const char *addr, mc__store_dummy_cfg_t *cfg)
{
    pthread_once(&dm_once, dm_global_init);
    if (dm_global_rc != CURLE_OK) {
        MC_LOGE(TAG, "curl_global_init failed: %s", curl_easy_strerror(dm_global_rc));
        return MC_ERR_INTERNAL;
    }
    CURL *c = curl_easy_init();
    if (!c) return MC_ERR_INTERNAL;
    char url[MC_NAME_MAX + 64];
    snprintf(url, sizeof url, "%s://%s" MC__STORE_DUMMY_PATH, mc_tls_files() ? "https" : "http",
             addr);
    dm_buf_t b = {NULL, 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* the standalone client is local: no proxy */
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)DUMMY_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)DUMMY_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dm_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    char what[MC_NAME_MAX + 48];
    snprintf(what, sizeof what, "standalone client %s", addr);
    struct curl_slist *hdrs = NULL;
    long status = 0;
    CURLcode cc = mc_http_auth_perform(c, &hdrs, "dummy", what, dm_buf_reset, &b, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    int rc;
    if (cc == CURLE_OK && (status == 0 || status == 401 || status == 403)) {
        rc = MC_ERR_AUTH_FAILED; /* the cluster secret: logged */
    } else if (cc != CURLE_OK) {
        MC_LOGE(TAG, "setup_dummy: standalone client at %s unreachable: %s", addr,
                curl_easy_strerror(cc));
        rc = MC_ERR_RPC_FAIL;
    } else if (status != 200) {
        MC_LOGE(TAG, "setup_dummy: standalone client at %s answered HTTP %ld to %s", addr, status,
                MC__STORE_DUMMY_PATH);
        rc = MC_ERR_RPC_FAIL;
    } else {
        rc = mc__store_dummy_cfg_parse(b.data ? b.data : "", b.len, cfg);
        if (rc == MC_ERR_INVALID_VERSION)
            MC_LOGE(TAG, "setup_dummy: standalone client at %s speaks another protocol version",
                    addr);
        else if (rc)
            MC_LOGE(TAG, "setup_dummy: standalone client at %s sent a malformed configuration",
                    addr);
    }
    free(b.data);
    return rc;
}

int mc_store_setup_dummy(mc_store_t *s, uint64_t mem_pool_size, uint64_t local_buffer_size,
                         const char *client_server_address)
{
    char host[MC_NAME_MAX];
    uint16_t port;
    if (!s || s->ready || !client_server_address || mem_pool_size > (1ull << 40) ||
        local_buffer_size > (1ull << 40) || strlen(client_server_address) >= MC_NAME_MAX ||
        mc_net_split_hostport(client_server_address, host, sizeof host, &port) != 0 || !port ||
        !*host) {
        MC_LOGE(TAG, "setup_dummy: bad arguments (client address '%s')",
                client_server_address ? client_server_address : "(null)");
        return MC_ERR_INVALID_PARAMS;
    }
    mc__store_dummy_cfg_t *cfg = malloc(sizeof *cfg);
    if (!cfg) return MC_ERR_INTERNAL;
    int rc = dm_fetch(client_server_address, cfg);
    if (rc == 0) {
        if (cfg->tenant_id[0] && strcmp(cfg->tenant_id, "default") != 0)
            MC_LOGW(TAG, "setup_dummy: tenant '%s' of %s: tenants are not implemented, ignored",
                    cfg->tenant_id, client_server_address);
        rc = mc_store_setup(s, host, cfg->metadata_server, 0, local_buffer_size, cfg->protocol,
                            cfg->device_names, cfg->master_server_address);
        if (rc == 0)
            MC_LOGI(TAG, "dummy client %s of standalone client %s (%s), master %s", s->hostname,
                    cfg->name, client_server_address, cfg->master_server_address);
        else
            MC_LOGE(TAG, "setup_dummy: setup on master %s (from %s) failed: %d",
                    cfg->master_server_address, client_server_address, rc);
    }
    free(cfg);
    return rc;
}
