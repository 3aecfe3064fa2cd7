/* net_http_auth.c: net_http_auth.h. Response headers are read with libcurl's
 * header API (curl_easy_header, 7.83+); the MACs are net_auth.h's. */
#include "net_http_auth.h"

#include <stdio.h>
#include <string.h>

#include "base_log.h"
#include "net_auth.h"
#include "net_http.h"

#define TAG "http-auth"
#define MAX_TRIES 3 /* a challenge may be replaced by another client's flood */

/* The value of response header name of the last request, or NULL. */
static const char *resp_header(CURL *c, const char *name)
{
    struct curl_header *h = NULL;
    if (curl_easy_header(c, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h) return NULL;
    return h->value;
}

/* Reads the server's nonce and MAC of the last answer into ns/mac: 1 when
 * both are there and well formed. */
static int server_proof(CURL *c, uint8_t *ns, uint8_t *mac)
{
    return mc_auth_unhex(resp_header(c, MC_HTTP_AUTH_NONCE), ns, MC_AUTH_NONCE_LEN) == 0 &&
           mc_auth_unhex(resp_header(c, MC_HTTP_AUTH_MAC), mac, MC_AUTH_MAC_LEN) == 0;
}

/* 1 after one line naming the server when its answer is a refusal of this
 * process's TLS client certificate (MC_HTTP_TLS_REFUSED), else 0. */
static int tls_refused(CURL *c, const char *what)
{
    const char *v = resp_header(c, MC_HTTP_TLS_REFUSED);
    if (!v) return 0;
    MC_LOGE(TAG,
            "%s refused this process's TLS client certificate (%s): it wants one signed by its "
            "cluster CA (--tls_cert_file/--tls_key_file or MC_TLS_CERT_FILE/MC_TLS_KEY_FILE)",
            what, v);
    return 1;
}

void mc_http_tls_setup(CURL *c)
{
    const mc_tls_files_t *f = mc_tls_files();
    if (!f) return;
    if (f->ca[0]) curl_easy_setopt(c, CURLOPT_CAINFO, f->ca);
    if (f->cert[0]) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, f->cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, f->key);
    }
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
}

CURLcode mc_http_auth_perform(CURL *c, struct curl_slist **hdrs, const char *service,
                              const char *what, void (*reset)(void *), void *arg, long *status)
{
    const mc_auth_key_t *k = mc_auth_cluster_key();
    *status = 0;
    mc_http_tls_setup(c);
    if (!k) {
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
        CURLcode cc = curl_easy_perform(c);
        if (cc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
        if (cc == CURLE_OK && tls_refused(c, what)) return cc;
        if (cc == CURLE_OK && *status == 401 && !resp_header(c, MC_HTTP_AUTH_NONCE))
            MC_LOGE(TAG,
                    "%s requires the cluster secret, and this process has none (set "
                    "MC_CLUSTER_SECRET or MC_CLUSTER_SECRET_FILE)",
                    what);
        return cc;
    }
    uint8_t nc[MC_AUTH_NONCE_LEN], ns[MC_AUTH_NONCE_LEN], mac[MC_AUTH_MAC_LEN];
    char hnc[2 * MC_AUTH_NONCE_LEN + 1], hmac_[2 * MC_AUTH_MAC_LEN + 1];
    char hello[sizeof MC_HTTP_AUTH_HELLO + 8 + sizeof hnc];
    char proof[sizeof MC_HTTP_AUTH_PROOF + 4 + sizeof hmac_];
    if (mc_auth_nonce(nc)) {
        MC_LOGE(TAG, "no random bytes for a nonce: not asking %s", what);
        return CURLE_FAILED_INIT;
    }
    mc_auth_hex(nc, sizeof nc, hnc);
    snprintf(hello, sizeof hello, "%s: 1:%s", MC_HTTP_AUTH_HELLO, hnc);
    struct curl_slist *base = curl_slist_append(*hdrs, hello);
    if (!base) return CURLE_OUT_OF_MEMORY;
    *hdrs = base;
    struct curl_slist *with_proof = NULL;
    CURLcode cc = CURLE_OK;
    for (int attempt = 0; attempt < MAX_TRIES; attempt++) {
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, with_proof ? with_proof : base);
        cc = curl_easy_perform(c);
        if (cc != CURLE_OK) break;
        long st = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
        if (tls_refused(c, what)) {
            *status = st;
            break;
        }
        if (!server_proof(c, ns, mac)) {
            MC_LOGE(TAG,
                    st == 403   ? "%s refused this process's proof (the cluster secrets differ)"
                    : st == 401 ? "%s wants a proof but sent no challenge (another protocol?)"
                                : "%s has no cluster secret configured (its answer proves "
                                  "nothing), and this process has one: not using it",
                    what);
            *status = st == 403 || st == 401 ? st : 0;
            break;
        }
        if (!mc_auth_mac_ok(k, 'S', service, nc, ns, mac)) {
            MC_LOGE(TAG,
                    "%s proved another cluster secret than this process's (the cluster secrets "
                    "differ): not using it",
                    what);
            break;
        }
        if (st != 401) { /* a proved answer */
            *status = st;
            break;
        }
        /* a challenge: prove it, on whatever connection libcurl uses next */
        mc_auth_mac(k, 'C', service, ns, nc, mac);
        mc_auth_hex(mac, sizeof mac, hmac_);
        snprintf(proof, sizeof proof, "%s: %s", MC_HTTP_AUTH_PROOF, hmac_);
        curl_slist_free_all(with_proof);
        with_proof = NULL;
        for (struct curl_slist *h = base; h; h = h->next) {
            struct curl_slist *n = curl_slist_append(with_proof, h->data);
            if (!n) {
                cc = CURLE_OUT_OF_MEMORY;
                break;
            }
            with_proof = n;
        }
        if (cc != CURLE_OK || !(with_proof = curl_slist_append(with_proof, proof))) {
            cc = CURLE_OUT_OF_MEMORY;
            break;
        }
        if (reset) reset(arg);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(with_proof);
    return cc;
}
