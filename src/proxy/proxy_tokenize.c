/* proxy_tokenize.c: token ids for text prompts, so that cache_aware can match
 * them against the blocks vLLM's KV events name (proxy_kvev.c). The proxy has
 * no tokenizer; a prefill instance that publishes events has one behind its
 * POST /tokenize. A completion whose prompt is one string, or a chat request,
 * is first sent there (the same fields that decide its tokens: the prompt or
 * the messages with their template options), with a short bound
 * (--tokenize-timeout-ms); the answer's "tokens" become r->toks and the
 * request is routed as a token-id prompt would be. Anything else — no such
 * instance, a 404 without an OpenAI error object (a server without the route:
 * that instance is not asked again), a timeout, a bad answer — leaves the
 * request to the approximate index, never failing it. */
#include "proxy_server_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base_log.h"

/* The chat request fields vLLM's /tokenize reads besides "messages". */
static const char *const chat_keys[] = {
    "add_generation_prompt", "continue_final_message", "add_special_tokens",
    "chat_template",         "chat_template_kwargs",   "tools",
    "mm_processor_kwargs",   "media_io_kwargs",
};

char *mc__proxy_tokenize_body(const json_t *req, int chat, size_t *len)
{
    json_t *q = json_object();
    if (!q) return NULL;
    json_t *model = json_object_get(req, "model");
    if (json_is_string(model)) json_object_set(q, "model", model);
    int ok = 0;
    if (chat) {
        json_t *m = json_object_get(req, "messages");
        if (json_is_array(m) && json_array_size(m) > 0) {
            ok = json_object_set(q, "messages", m) == 0;
            for (size_t i = 0; ok && i < sizeof chat_keys / sizeof chat_keys[0]; i++) {
                json_t *v = json_object_get(req, chat_keys[i]);
                if (v) ok = json_object_set(q, chat_keys[i], v) == 0;
            }
        }
    } else {
        json_t *p = json_object_get(req, "prompt");
        if (json_is_string(p) && json_string_length(p) > 0) {
            ok = json_object_set(q, "prompt", p) == 0;
            json_t *v = json_object_get(req, "add_special_tokens");
            if (ok && v) ok = json_object_set(q, "add_special_tokens", v) == 0;
        }
    }
    char *s = ok ? json_dumps(q, JSON_COMPACT) : NULL;
    json_decref(q);
    if (s) *len = strlen(s);
    return s;
}

/* The least loaded eligible prefill instance that publishes events and has not
 * refused /tokenize, or NULL. */
static inst_t *tokenizer(mc_proxy_t *px)
{
    inst_t *best = NULL;
    for (int i = 0; i < px->ngrp[MC_PROXY_PREFILL]; i++) {
        inst_t *in = px->grp[MC_PROXY_PREFILL][i];
        if (in->no_tokenize || !mc__proxy_kvev_live(in) || !mc__proxy_inst_eligible(px, in))
            continue;
        if (!best || mc__proxy_inst_load(in) < mc__proxy_inst_load(best)) best = in;
    }
    return best;
}

int mc__proxy_tokenize_start(mc_proxy_t *px, req_t *r)
{
    if (!px->cfg.tokenize || px->cfg.sched != MC_PROXY_SCHED_CACHE_AWARE || !px->kv ||
        r->n_toks > 0 || r->tokenized)
        return -1;
    inst_t *in = tokenizer(px);
    if (!in) return -1;
    size_t len = 0;
    char *body = mc__proxy_tokenize_body(r->json, r->route == R_CHAT, &len);
    if (!body) return -1;
    r->tokenized = 1;
    if (mc__proxy_leg_start_post(px, LEG_TOKENIZE, r, in, "/tokenize", body, len,
                                 px->cfg.tokenize_timeout_ms) != 0) {
        px->m_tokenize[TK_FAILED]++;
        return -1;
    }
    return 0;
}

int mc__proxy_token_ids(const json_t *a, uint32_t max, uint32_t **toks, uint32_t *n)
{
    size_t k = json_array_size(a);
    if (!json_is_array(a) || k == 0 || max == 0) return -EINVAL;
    if (k > max) k = max;
    uint32_t *v = malloc(k * sizeof *v);
    if (!v) return -ENOMEM;
    for (size_t i = 0; i < k; i++) {
        const json_t *x = json_array_get(a, i);
        json_int_t id = json_is_integer(x) ? json_integer_value(x) : -1;
        if (id < 0 || id > (json_int_t)UINT32_MAX) {
            free(v);
            return -EINVAL;
        }
        v[i] = (uint32_t)id;
    }
    *toks = v;
    *n = (uint32_t)k;
    return 0;
}

int mc__proxy_tokenize_answer(const char *p, size_t len, uint32_t max, uint32_t **toks,
                              uint32_t *n)
{
    json_t *a = p ? json_loadb(p, len, 0, NULL) : NULL;
    int rc = mc__proxy_token_ids(json_object_get(a, "tokens"), max, toks, n) == 0 ? 0 : -1;
    json_decref(a);
    return rc;
}

/* r->toks from a /tokenize answer; 0, or -1 when it is not one. */
static int take_tokens(req_t *r, const char *p, size_t len)
{
    uint32_t *v = NULL, n = 0;
    if (mc__proxy_tokenize_answer(p, len, MC_PROXY_MAX_PROMPT_TOKENS, &v, &n) != 0) return -1;
    free(r->toks);
    r->toks = v;
    r->n_toks = n;
    return 0;
}

int mc__proxy_tokenize_is_error(const char *p, size_t n)
{
    json_t *a = p ? json_loadb(p, n, 0, NULL) : NULL;
    int yes = json_object_get(a, "error") != NULL;
    json_decref(a);
    return yes;
}

void mc__proxy_tokenize_finished(mc_proxy_t *px, leg_t *l)
{
    req_t *r = l->req;
    inst_t *in = l->inst;
    const char *iname = in ? in->name : "?";
    int result = TK_FAILED;
    if (l->rc == CURLE_OK && l->status == 200 && take_tokens(r, l->resp.p, l->resp.len) == 0) {
        result = TK_OK;
        if (in) in->tokenize_warned = 0;
    } else if (l->rc == CURLE_OK && (l->status == 404 || l->status == 405) &&
               !mc__proxy_tokenize_is_error(l->resp.p, l->resp.len)) {
        result = TK_UNSUPPORTED;
        if (in) in->no_tokenize = 1;
        MC_LOGW(TAG, "%s has no POST /tokenize (HTTP %ld): text prompts are matched by the "
                     "approximate index",
                iname, l->status);
    } else if (in && !in->tokenize_warned) {
        in->tokenize_warned = 1; /* one line per streak of failures */
        char st[32];
        snprintf(st, sizeof st, "HTTP %ld", l->status);
        const char *why = l->rc != CURLE_OK   ? (l->err[0] ? l->err : curl_easy_strerror(l->rc))
                          : l->status != 200 ? st
                                             : "an answer without a \"tokens\" list of ids";
        MC_LOGW(TAG, "req %s: /tokenize on %s failed (%s): routed by the approximate index",
                r->reqid, iname, why);
    }
    px->m_tokenize[result]++;
}
