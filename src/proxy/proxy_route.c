/* proxy_route.c: where a completion goes, and which instances are skipped.
 *
 * Policies (--scheduling):
 *   round_robin   the next eligible instance of the group;
 *   least_loaded  fewest outstanding upstream requests (ties go round robin);
 *   least_tokens  fewest outstanding estimated tokens (prompt bytes / 4, plus
 *                 max_tokens on decode legs);
 *   cache_aware   prefill group: the instance whose approximate prefix index
 *                 holds the longest prefix of the prompt, unless the group's
 *                 load is imbalanced past the threshold (then least loaded
 *                 wins); decode group: least loaded.
 *
 * The approximate prefix index is a bounded set of chained block hashes: the
 * prompt text (the "prompt" field, or the serialised "messages") is cut into
 * MC_PROXY_BLOCK_BYTES-byte blocks, block i's key is XXH3(block, seed = key of
 * block i-1), so a key names the whole prefix up to it (a radix tree of blocks
 * flattened into a hash table). Each key carries a bit mask of the prefill
 * instances it was routed to. The table is 4-way set associative with the
 * oldest entry of a set replaced: memory is fixed, old prompts are forgotten,
 * a lookup costs one probe per block.
 *
 * Load is the instance's outstanding requests through us, or vLLM's own
 * running + waiting requests from its /metrics (read after each passed health
 * check under cache_aware) when those are more.
 *
 * Circuit breaker: every failure of an instance (a health check, or a leg
 * that could not reach it) takes it out of rotation until a check passes;
 * after --circuit-failures consecutive failures the next check waits a backoff
 * that doubles with each further failure (--circuit-backoff-ms up to
 * --circuit-backoff-max-ms). A passing check closes the circuit.
 *
 * Every pick for a completion is recorded in a ring (GET /status) and counted
 * by policy, group and reason (GET /metrics). Runs on the loop thread. */
#include "proxy_server_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base_log.h"
#include "base_time.h"

#define SETS (1u << 14) /* 4 ways each: 65536 prefix blocks remembered */
#define WAYS 4

typedef struct {
    uint64_t key;   /* 0 = empty */
    uint64_t mask;  /* bit = instance slot */
    uint64_t stamp; /* last use, for replacement */
} pentry_t;

struct mc__proxy_route {
    pentry_t *tab;   /* SETS * WAYS */
    uint64_t clock;  /* use counter */
    inst_t *slot[MC_PROXY_SLOTS];
    mc__proxy_decision_t ring[MC_PROXY_RING];
    unsigned ring_next, ring_n;
    uint64_t m_pick[MC_PROXY_N_SCHED][2][RS_N];
    uint64_t m_retries, m_cb_open;
};

const char *const mc__proxy_sched_name[MC_PROXY_N_SCHED] = {"round_robin", "least_loaded",
                                                            "least_tokens", "cache_aware"};
const char *const mc__proxy_reason_name[RS_N] = {"round_robin", "least_loaded", "least_tokens",
                                                 "cache_hit", "cache_miss", "load_imbalance"};

int mc__proxy_route_init(mc_proxy_t *px)
{
    px->route = calloc(1, sizeof *px->route);
    if (!px->route) return -ENOMEM;
    if (px->cfg.sched == MC_PROXY_SCHED_CACHE_AWARE) {
        px->route->tab = calloc((size_t)SETS * WAYS, sizeof(pentry_t));
        if (!px->route->tab) {
            free(px->route);
            px->route = NULL;
            return -ENOMEM;
        }
    }
    return 0;
}

void mc__proxy_route_free(mc_proxy_t *px)
{
    if (!px->route) return;
    free(px->route->tab);
    free(px->route);
    px->route = NULL;
}

/* ------------------------------------------------------ instance slots */

void mc__proxy_route_inst_added(mc_proxy_t *px, inst_t *in)
{
    in->slot = -1;
    if (!px->route || in->group != MC_PROXY_PREFILL) return;
    for (int s = 0; s < MC_PROXY_SLOTS; s++)
        if (!px->route->slot[s]) {
            px->route->slot[s] = in;
            in->slot = s;
            mc__proxy_kvev_inst_added(px, in);
            return;
        }
}

void mc__proxy_route_inst_removed(mc_proxy_t *px, inst_t *in)
{
    mc__proxy_route_t *rt = px->route;
    if (!rt || in->slot < 0) return;
    mc__proxy_kvev_inst_removed(px, in);
    uint64_t bit = 1ull << in->slot;
    if (rt->tab)
        for (size_t i = 0; i < (size_t)SETS * WAYS; i++) {
            rt->tab[i].mask &= ~bit;
            if (!rt->tab[i].mask) rt->tab[i].key = 0;
        }
    rt->slot[in->slot] = NULL;
    in->slot = -1;
    in->cache_blocks = 0;
}

/* ------------------------------------------------- request preparation */

/* Bytes of the prompt that name its prefix: the "prompt" string, or (when
 * serialise) the serialised "prompt" (token ids, a list) or "messages", then
 * malloc'd into *own. NULL (and *len 0) when the body has none. */
static const char *prompt_text(const json_t *body, size_t *len, char **own, int serialise)
{
    *own = NULL;
    *len = 0;
    const json_t *p = json_object_get(body, "prompt");
    if (json_is_string(p)) {
        *len = json_string_length(p);
        return json_string_value(p);
    }
    if (!serialise) return NULL; /* only the policies that use it pay for the dump */
    if (!p) p = json_object_get(body, "messages");
    if (!p || json_is_null(p)) return NULL;
    *own = json_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!*own) return NULL;
    *len = strlen(*own);
    /* a conversation grows at its end: drop the closing ']' so turn n's text is a
     * prefix of turn n+1's */
    if (*len && (*own)[*len - 1] == ']') (*len)--;
    return *own;
}

void mc__proxy_route_prepare(mc_proxy_t *px, req_t *r)
{
    size_t len = 0;
    char *own = NULL;
    int sched = px->cfg.sched;
    const char *t = prompt_text(r->json, &len, &own,
                                sched == MC_PROXY_SCHED_LEAST_TOKENS ||
                                    sched == MC_PROXY_SCHED_CACHE_AWARE);
    json_t *mt = json_object_get(r->json, "max_tokens");
    if (!mt) mt = json_object_get(r->json, "max_completion_tokens");
    json_int_t max_tokens = json_is_integer(mt) ? json_integer_value(mt) : 16;
    if (max_tokens < 1) max_tokens = 1;
    if (max_tokens > 1000000) max_tokens = 1000000;
    r->tok_prefill = (uint32_t)(len / 4 + 1);
    r->tok_decode = r->tok_prefill + (uint32_t)max_tokens;
    r->n_hashes = 0;
    if (t && px->cfg.sched == MC_PROXY_SCHED_CACHE_AWARE) {
        size_t n = len / MC_PROXY_BLOCK_BYTES;
        if (n > MC_PROXY_MAX_BLOCKS) n = MC_PROXY_MAX_BLOCKS;
        if (n) r->hashes = malloc(n * sizeof *r->hashes);
        if (r->hashes) {
            uint64_t h = 0x6d6f6f6e63616b65ull;
            for (size_t i = 0; i < n; i++) {
                h = XXH3_64bits_withSeed(t + i * MC_PROXY_BLOCK_BYTES, MC_PROXY_BLOCK_BYTES, h);
                r->hashes[i] = h ? h : 1; /* 0 marks an empty entry */
            }
            r->n_hashes = (int)n;
        }
    }
    if (px->cfg.sched == MC_PROXY_SCHED_CACHE_AWARE) mc__proxy_kvev_prepare(px, r);
    free(own);
}

/* -------------------------------------------------------- prefix index */

static pentry_t *pfind(mc__proxy_route_t *rt, uint64_t key)
{
    pentry_t *set = &rt->tab[(key & (SETS - 1)) * WAYS];
    for (int w = 0; w < WAYS; w++)
        if (set[w].key == key) return &set[w];
    return NULL;
}

/* Remembers that the prompt's blocks now sit on instance `in`. */
static void pinsert(mc__proxy_route_t *rt, const req_t *r, inst_t *in)
{
    if (!rt->tab || in->slot < 0) return;
    uint64_t bit = 1ull << in->slot;
    for (int i = 0; i < r->n_hashes; i++) {
        uint64_t key = r->hashes[i];
        pentry_t *e = pfind(rt, key);
        if (!e) {
            pentry_t *set = &rt->tab[(key & (SETS - 1)) * WAYS];
            e = &set[0];
            for (int w = 1; w < WAYS; w++)
                if (set[w].stamp < e->stamp) e = &set[w];
            for (int s = 0; e->key && s < MC_PROXY_SLOTS; s++) /* evicted: forget it */
                if ((e->mask >> s & 1) && rt->slot[s] && rt->slot[s]->cache_blocks)
                    rt->slot[s]->cache_blocks--;
            e->key = key;
            e->mask = 0;
        }
        if (!(e->mask & bit)) in->cache_blocks++;
        e->mask |= bit;
        e->stamp = ++rt->clock;
    }
}

/* Longest remembered prefix (in blocks) of r per slot, into match[]. */
static void pmatch(mc__proxy_route_t *rt, const req_t *r, int match[MC_PROXY_SLOTS])
{
    memset(match, 0, sizeof(int) * MC_PROXY_SLOTS);
    if (!rt->tab) return;
    uint64_t alive = ~0ull;
    for (int i = 0; i < r->n_hashes && alive; i++) {
        pentry_t *e = pfind(rt, r->hashes[i]);
        alive &= e ? e->mask : 0;
        for (uint64_t m = alive; m; m &= m - 1)
            match[__builtin_ctzll(m)] = i + 1;
    }
}

/* ---------------------------------------------------------------- pick */

/* Our outstanding requests, or vLLM's running + waiting when its /metrics says
 * more (other clients, or requests our count no longer sees); the latter is as
 * old as the last health check. */
unsigned mc__proxy_inst_load(const inst_t *in)
{
    unsigned eng = in->eng_running + in->eng_waiting;
    return in->engine_load_known && eng > in->inflight ? eng : in->inflight;
}

static void record(mc_proxy_t *px, int g, const req_t *r, const inst_t *in, int reason, int match,
                   int match_tokens, int from_events)
{
    mc__proxy_route_t *rt = px->route;
    rt->m_pick[px->cfg.sched][g][reason]++;
    mc__proxy_decision_t *d = &rt->ring[rt->ring_next];
    rt->ring_next = (rt->ring_next + 1) % MC_PROXY_RING;
    if (rt->ring_n < MC_PROXY_RING) rt->ring_n++;
    d->t_ms = mc_now_ms();
    d->group = g;
    d->reason = reason;
    d->match_blocks = match;
    d->match_tokens = match_tokens;
    d->from_events = from_events;
    d->prompt_blocks = r->n_hashes;
    d->load = in->inflight;
    d->tokens = in->out_tokens;
    snprintf(d->reqid, sizeof d->reqid, "%s", r->reqid);
    snprintf(d->inst, sizeof d->inst, "%s", in->name);
}

/* The match compared between instances, in (estimated) prompt tokens: what the
 * instance's KV events say it holds when it publishes them (ptok[slot] >= 0),
 * else the approximate index's blocks at MC_PROXY_BLOCK_BYTES / 4 tokens each. */
static int slot_match(const int *match, const int *ptok, int slot)
{
    if (ptok && ptok[slot] >= 0) return ptok[slot];
    return match[slot] * (MC_PROXY_BLOCK_BYTES / 4);
}

inst_t *mc__proxy_pick(mc_proxy_t *px, int g, req_t *r, const inst_t *avoid)
{
    int n = px->ngrp[g];
    if (n == 0) return NULL;
    int sched = px->cfg.sched;
    mc__proxy_route_t *rt = px->route;
    int match[MC_PROXY_SLOTS], ptok[MC_PROXY_SLOTS];
    int cache = sched == MC_PROXY_SCHED_CACHE_AWARE && g == MC_PROXY_PREFILL && r && rt &&
                (r->n_hashes > 0 || r->n_toks > 0);
    int precise = 0;
    if (cache) {
        pmatch(rt, r, match);
        precise = mc__proxy_kvev_match(px, r, ptok);
    }
    unsigned start = px->rr[g] % (unsigned)n;
    inst_t *best = NULL, *hit = NULL;
    int best_i = -1, hit_i = -1, hit_len = 0;
    unsigned lo = ~0u, hi = 0;
    for (int k = 0; k < n; k++) {
        int i = (int)((start + (unsigned)k) % (unsigned)n);
        inst_t *in = px->grp[g][i];
        if (in == avoid || !mc__proxy_inst_eligible(px, in)) continue;
        if (sched == MC_PROXY_SCHED_ROUND_ROBIN) {
            best = in;
            best_i = i;
            break;
        }
        unsigned load = mc__proxy_inst_load(in);
        if (load < lo) lo = load;
        if (load > hi) hi = load;
        int better = !best;
        if (!better && sched == MC_PROXY_SCHED_LEAST_TOKENS)
            better = in->out_tokens < best->out_tokens ||
                     (in->out_tokens == best->out_tokens && load < mc__proxy_inst_load(best));
        else if (!better)
            better = load < mc__proxy_inst_load(best);
        if (better) best = in, best_i = i;
        if (cache && in->slot >= 0) {
            int m = slot_match(match, precise ? ptok : NULL, in->slot);
            if (m > hit_len || (m == hit_len && m > 0 && load < mc__proxy_inst_load(hit)))
                hit = in, hit_i = i, hit_len = m;
        }
    }
    if (!best) return NULL;
    int reason = sched == MC_PROXY_SCHED_ROUND_ROBIN    ? RS_RR
                 : sched == MC_PROXY_SCHED_LEAST_TOKENS ? RS_LEAST_TOKENS
                                                        : RS_LEAST_LOADED;
    if (cache) {
        /* Load wins when the group is imbalanced past both thresholds. */
        int imbalanced = hi - lo > (unsigned)px->cfg.cache_balance_abs &&
                         (double)hi > px->cfg.cache_balance_rel * (double)lo;
        if (imbalanced)
            reason = hit == best ? RS_CACHE_HIT : RS_LOAD_IMBALANCE;
        else if (hit)
            best = hit, best_i = hit_i, reason = RS_CACHE_HIT;
        else
            reason = RS_CACHE_MISS;
    }
    px->rr[g] = (unsigned)best_i + 1;
    if (r) {
        if (cache) pinsert(rt, r, best);
        if (rt) {
            int s = cache ? best->slot : -1;
            record(px, g, r, best, reason, s >= 0 ? match[s] : 0,
                   s >= 0 ? slot_match(match, precise ? ptok : NULL, s) : 0,
                   s >= 0 && precise && ptok[s] >= 0);
        }
    }
    return best;
}

/* ------------------------------------------------------ circuit breaker */

void mc__proxy_inst_failed(mc_proxy_t *px, inst_t *in, const char *why, int from_check)
{
    uint64_t now = mc_now_ms();
    if (!from_check) in->failures++; /* /status counts failed requests */
    in->fail_streak++;
    snprintf(in->last_error, sizeof in->last_error, "%.199s", why);
    if (in->state == ST_HEALTHY) {
        if (!from_check) /* the check path logged its own line */
            MC_LOGW(TAG, "%s instance %s out of rotation: %s", mc__proxy_group_name[in->group],
                    in->name, why);
        in->state = ST_UNHEALTHY;
    }
    uint64_t soon;
    if (in->fail_streak >= (unsigned)px->cfg.cb_failures) {
        unsigned extra = in->fail_streak - (unsigned)px->cfg.cb_failures;
        uint64_t b = (uint64_t)px->cfg.cb_backoff_ms << (extra > 20 ? 20 : extra);
        if (b > (uint64_t)px->cfg.cb_backoff_max_ms) b = (uint64_t)px->cfg.cb_backoff_max_ms;
        if (!in->circuit_open) {
            MC_LOGW(TAG, "%s instance %s: circuit open after %u failures",
                    mc__proxy_group_name[in->group], in->name, in->fail_streak);
            if (px->route) px->route->m_cb_open++;
        }
        in->circuit_open = 1;
        in->backoff_ms = b;
        soon = now + b;
        in->next_check_ms = soon; /* skipped until then, even by a sooner tick */
        return;
    }
    int iv = px->cfg.health_interval_ms;
    soon = now + (from_check ? (uint64_t)(iv < 500 ? iv : 500) : 100);
    if (from_check || in->next_check_ms > soon) in->next_check_ms = soon;
}

void mc__proxy_inst_passed(mc_proxy_t *px, inst_t *in)
{
    (void)px;
    if (in->circuit_open)
        MC_LOGI(TAG, "%s instance %s: circuit closed", mc__proxy_group_name[in->group], in->name);
    in->fail_streak = 0;
    in->circuit_open = 0;
    in->backoff_ms = 0;
}

void mc__proxy_route_count_retry(mc_proxy_t *px)
{
    if (px->route) px->route->m_retries++;
}

/* -------------------------------------------------------- observability */

void mc__proxy_route_inst_json(const mc_proxy_t *px, const inst_t *in, json_t *o)
{
    (void)px;
    json_object_set_new(o, "outstanding_tokens", json_integer((json_int_t)in->out_tokens));
    json_object_set_new(o, "load", json_integer((json_int_t)mc__proxy_inst_load(in)));
    json_object_set_new(o, "consecutive_failures", json_integer((json_int_t)in->fail_streak));
    json_object_set_new(o, "circuit_open", json_boolean(in->circuit_open));
    if (in->circuit_open)
        json_object_set_new(o, "backoff_ms", json_integer((json_int_t)in->backoff_ms));
    if (in->group == MC_PROXY_PREFILL && px->cfg.sched == MC_PROXY_SCHED_CACHE_AWARE)
        json_object_set_new(o, "cache_blocks", json_integer((json_int_t)in->cache_blocks));
    if (in->no_tokenize) json_object_set_new(o, "tokenize", json_false());
    mc__proxy_kvev_inst_json(px, in, o);
    if (in->engine_load_known) {
        json_object_set_new(o, "engine_running", json_integer((json_int_t)in->eng_running));
        json_object_set_new(o, "engine_waiting", json_integer((json_int_t)in->eng_waiting));
    }
}

json_t *mc__proxy_route_status(const mc_proxy_t *px)
{
    const mc__proxy_route_t *rt = px->route;
    json_t *o = json_object();
    if (!o || !rt) return o;
    if (px->cfg.sched == MC_PROXY_SCHED_CACHE_AWARE)
        json_object_set_new(
            o, "cache_aware",
            json_pack("{s:i, s:i, s:i, s:f, s:{s:s, s:i, s:I, s:I, s:I}}", "block_bytes",
                      MC_PROXY_BLOCK_BYTES, "capacity_blocks", (int)(SETS * WAYS), "balance_abs",
                      px->cfg.cache_balance_abs, "balance_rel", px->cfg.cache_balance_rel,
                      "tokenize", "mode", px->cfg.tokenize ? "auto" : "off", "timeout_ms",
                      px->cfg.tokenize_timeout_ms, "ok", (json_int_t)px->m_tokenize[TK_OK],
                      "failed", (json_int_t)px->m_tokenize[TK_FAILED], "unsupported",
                      (json_int_t)px->m_tokenize[TK_UNSUPPORTED]));
    json_t *a = json_array();
    for (unsigned k = 0; k < rt->ring_n; k++) { /* newest first */
        const mc__proxy_decision_t *d =
            &rt->ring[(rt->ring_next + MC_PROXY_RING - 1 - k) % MC_PROXY_RING];
        json_array_append_new(
            a, json_pack("{s:I, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:i, s:I}", "t_ms",
                         (json_int_t)d->t_ms, "request_id", d->reqid, "type",
                         mc__proxy_group_name[d->group], "instance", d->inst, "reason",
                         mc__proxy_reason_name[d->reason], "match_blocks", d->match_blocks,
                         "prompt_blocks", d->prompt_blocks, "match_tokens", d->match_tokens,
                         "match_source", d->from_events ? "kv_events" : "approximate", "load",
                         (int)d->load, "tokens",
                         (json_int_t)d->tokens));
    }
    json_object_set_new(o, "recent_decisions", a);
    return o;
}

int mc__proxy_route_metrics(const mc_proxy_t *px, buf_t *b)
{
    const mc__proxy_route_t *rt = px->route;
    if (!rt) return 0;
    int oom = 0;
    oom |= mc__proxy_buf_printf(
        b, "# HELP mooncake_proxy_route_decisions_total Instances picked, by policy, group and "
           "reason.\n# TYPE mooncake_proxy_route_decisions_total counter\n");
    int s = px->cfg.sched;
    /* the reasons a policy can give (cache_aware's decode group: least_loaded) */
    static const unsigned reasons[MC_PROXY_N_SCHED] = {
        1u << RS_RR, 1u << RS_LEAST_LOADED, 1u << RS_LEAST_TOKENS,
        1u << RS_LEAST_LOADED | 1u << RS_CACHE_HIT | 1u << RS_CACHE_MISS | 1u << RS_LOAD_IMBALANCE};
    for (int g = 0; g < 2; g++)
        for (int k = 0; k < RS_N; k++)
            if (reasons[s] >> k & 1)
                oom |= mc__proxy_buf_printf(
                    b,
                    "mooncake_proxy_route_decisions_total{policy=\"%s\",type=\"%s\","
                    "reason=\"%s\"} %llu\n",
                    mc__proxy_sched_name[s], mc__proxy_group_name[g], mc__proxy_reason_name[k],
                    (unsigned long long)rt->m_pick[s][g][k]);
    oom |= mc__proxy_buf_printf(
        b,
        "# HELP mooncake_proxy_prefill_retries_total Failed prefill legs started again on another "
        "instance.\n# TYPE mooncake_proxy_prefill_retries_total counter\n"
        "mooncake_proxy_prefill_retries_total %llu\n"
        "# HELP mooncake_proxy_circuit_opens_total Times an instance's circuit opened.\n"
        "# TYPE mooncake_proxy_circuit_opens_total counter\n"
        "mooncake_proxy_circuit_opens_total %llu\n"
        "# HELP mooncake_proxy_instance_outstanding_tokens Estimated tokens in flight.\n"
        "# TYPE mooncake_proxy_instance_outstanding_tokens gauge\n",
        (unsigned long long)rt->m_retries, (unsigned long long)rt->m_cb_open);
    for (int g = 0; g < 2; g++)
        for (int i = 0; i < px->ngrp[g]; i++)
            oom |= mc__proxy_buf_printf(
                b, "mooncake_proxy_instance_outstanding_tokens{type=\"%s\",instance=\"%s\"} %llu\n",
                mc__proxy_group_name[g], px->grp[g][i]->name,
                (unsigned long long)px->grp[g][i]->out_tokens);
    if (s == MC_PROXY_SCHED_CACHE_AWARE) {
        static const char *const tk[TK_N] = {"ok", "failed", "unsupported"};
        oom |= mc__proxy_buf_printf(
            b, "# HELP mooncake_proxy_tokenize_total Text prompts sent to a prefiller's /tokenize "
               "for the KV-event match, by result.\n# TYPE mooncake_proxy_tokenize_total counter\n");
        for (int k = 0; k < TK_N; k++)
            oom |= mc__proxy_buf_printf(b, "mooncake_proxy_tokenize_total{result=\"%s\"} %llu\n",
                                        tk[k], (unsigned long long)px->m_tokenize[k]);
    }
    oom |= mc__proxy_kvev_metrics(px, b) != 0;
    return oom ? -ENOMEM : 0;
}
