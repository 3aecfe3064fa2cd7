/* Fuzz target for the proxy's request rewriter and the parsers of upstream
 * answers. Input: CLIENT_BODY [NUL PREFILL_ANSWER]. Every mode's prefill and
 * decode rewrite runs on the body; the rewritten prefill body must parse back
 * as an object with max_tokens == 1 and stream == false and without
 * stream_options / min_tokens, and the decode body spliced into the client's
 * bytes must equal the re-serialised one. The answer goes through the kv_transfer_params
 * extractor, the bootstrap /query parser, the /metrics load reader and the
 * /v1/models matcher and the /tokenize answer reader (at most 1000 ids, each
 * < 2^32); the body also through the /tokenize body builder, whose output must
 * parse back as an object holding a text "prompt" or a non-empty "messages"
 * array and nothing but the fields it may copy; both halves go through the
 * admin instance validator and the key comparison. */
#include "proxy.h"
#include "proxy_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_tokenize_body(const json_t *req, int chat)
{
    static const char *const allowed[] = {
        "model",         "prompt",           "messages",          "add_generation_prompt",
        "continue_final_message", "add_special_tokens", "chat_template",
        "chat_template_kwargs", "tools",     "mm_processor_kwargs", "media_io_kwargs"};
    size_t len = 0;
    char *s = mc__proxy_tokenize_body(req, chat, &len);
    if (!s) return;
    json_t *j = json_loadb(s, len, 0, NULL);
    if (!json_is_object(j)) abort();
    if (chat ? json_array_size(json_object_get(j, "messages")) == 0
             : json_string_length(json_object_get(j, "prompt")) == 0)
        abort();
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
        size_t i = 0;
        while (i < sizeof allowed / sizeof allowed[0] && strcmp(k, allowed[i]) != 0)
            i++;
        if (i == sizeof allowed / sizeof allowed[0]) abort();
        if (!json_equal(v, json_object_get(req, k))) abort(); /* copied, not changed */
    }
    json_decref(j);
    free(s);
}

static void check_prefill(const char *s, size_t len)
{
    json_t *j = json_loadb(s, len, 0, NULL);
    if (!json_is_object(j)) abort();
    if (json_integer_value(json_object_get(j, "max_tokens")) != 1) abort();
    if (!json_is_false(json_object_get(j, "stream"))) abort();
    if (json_object_get(j, "stream_options") || json_object_get(j, "min_tokens")) abort();
    if (!json_is_object(json_object_get(j, "kv_transfer_params"))) abort();
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nul = memchr(in, 0, size);
    size_t blen = nul ? (size_t)(nul - in) : size;
    const char *ans = nul ? nul + 1 : "";
    size_t alen = nul ? size - blen - 1 : 0;
    char err[256];

    json_t *kv = NULL;
    mc__proxy_extract_kv(ans, alen, &kv);

    json_t *body = NULL;
    if (mc__proxy_parse_body(in, blen, &body, err, sizeof err) == 0) {
        for (int mode = 0; mode < 3; mode++) {
            mc__proxy_rw_t rw = {.mode = mode,
                                 .transfer_id = "xfer-1",
                                 .bootstrap_addr = "http://h:8998",
                                 .engine_id = "e",
                                 .prefill_kv = kv,
                                 .prefill_host = "10.0.0.1"};
            char *out = NULL;
            size_t olen = 0;
            if (mc__proxy_rw_prefill(body, &rw, &out, &olen) == 0) {
                check_prefill(out, olen);
                free(out);
            }
            if (mc__proxy_rw_decode(body, &rw, &out, &olen) == 0) {
                json_t *j = json_loadb(out, olen, 0, NULL);
                if (!json_is_object(j)) abort();
                /* Differential: splicing into the client's bytes must mean the same
                 * JSON as re-serialising the parsed body. */
                rw.raw = in;
                rw.raw_len = blen;
                char *out2 = NULL;
                size_t olen2 = 0;
                if (mc__proxy_rw_decode(body, &rw, &out2, &olen2) == 0) {
                    json_t *j2 = json_loadb(out2, olen2, 0, NULL);
                    if (!json_equal(j, j2)) abort();
                    json_decref(j2);
                    free(out2);
                }
                rw.raw = NULL;
                json_decref(j);
                free(out);
            }
        }
        check_tokenize_body(body, 0);
        check_tokenize_body(body, 1);
        json_decref(body);
    }
    json_decref(kv);

    uint32_t *toks = NULL, nt = 0;
    if (mc__proxy_tokenize_answer(ans, alen, 1000, &toks, &nt) == 0) {
        if (!toks || nt == 0 || nt > 1000) abort();
        free(toks);
    }
    (void)mc__proxy_tokenize_is_error(ans, alen);

    char **ids = NULL;
    int n = 0;
    if (mc__proxy_parse_query(ans, alen, &ids, &n) == 0) {
        if (n <= 0 || !ids) abort();
        for (int i = 0; i < n; i++)
            if (!ids[i] || !ids[i][0]) abort();
    }
    mc__proxy_free_ids(ids, n);

    unsigned run = 0, wait = 0;
    if (mc__proxy_parse_engine_load(ans, alen, &run, &wait) == 0 && (run > 1000000 || wait > 1000000))
        abort();

    char *b = strndup(in, blen), *a = strndup(ans, alen);
    if (b && a) {
        char id[64], host[256];
        uint16_t port;
        mc__proxy_models_match(ans, alen, b, id, sizeof id);
        if (mc__proxy_check_instance(b, host, sizeof host, &port, err, sizeof err) == 0 &&
            (port == 0 || strlen(host) == 0))
            abort();
        if (mc__proxy_key_equal(a, b) != (strcmp(a, b) == 0 && a[0] != 0)) abort();
    }
    free(b);
    free(a);
    return 0;
}
