/* proxy_admin.c: the proxy's admin API (POST /instances/add, /instances/remove
 * behind X-API-Key) and its GET endpoints (/health, /healthcheck, /status,
 * /metrics, /v1/models), built from the instance groups at request time. Runs
 * on the loop thread. */
#include "proxy_server_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_log.h"
#include "base_time.h"

static const char *const state_name[3] = {"checking", "healthy", "unhealthy"};
static const char *const mode_name[3] = {"connector", "toy", "demo"};

/* -------------------------------------------------------------- admin */

/* Checks X-API-Key. Returns 0 when authorised, else answers r and returns -1. */
static int admin_auth(mc_proxy_t *px, req_t *r, const char *action)
{
    char peer[80];
    mc_http_peer(r->conn, peer, sizeof peer);
    if (!px->admin_key) {
        MC_LOGW(TAG, "admin: %s from %s refused: ADMIN_API_KEY is not set", action, peer);
        mc__proxy_req_answer(
            r, 503,
            mc__proxy_error_json(503, "admin_disabled", NULL, NULL,
                                 "admin API is disabled: ADMIN_API_KEY is not set"));
        return -1;
    }
    const char *key = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-API-Key");
    if (!key || !*key) {
        MC_LOGW(TAG, "admin: %s from %s refused: no X-API-Key", action, peer);
        mc__proxy_req_answer(
            r, 401,
            mc__proxy_error_json(401, "unauthorized", NULL, NULL, "missing X-API-Key header"));
        return -1;
    }
    if (!mc__proxy_key_equal(px->admin_key, key)) {
        MC_LOGW(TAG, "admin: %s from %s refused: wrong X-API-Key", action, peer);
        mc__proxy_req_answer(
            r, 403, mc__proxy_error_json(403, "forbidden", NULL, NULL, "invalid X-API-Key"));
        return -1;
    }
    MC_LOGI(TAG, "admin: %s from %s authorised", action, peer);
    return 0;
}

void mc__proxy_dispatch_admin(mc_proxy_t *px, req_t *r)
{
    int add = r->route == R_ADD;
    char err[256], host[256];
    uint16_t port;
    json_t *j = NULL;
    if (admin_auth(px, r, add ? "instances/add" : "instances/remove") != 0) return;
    px->m_admin[!add]++;
    if (mc__proxy_parse_body(r->body.p, r->body.len, &j, err, sizeof err) != 0) {
        mc__proxy_req_answer(
            r, 400, mc__proxy_error_json(400, "invalid_request_error", NULL, NULL, "%s", err));
        return;
    }
    r->json = j;
    json_t *jt = json_object_get(j, "type"), *ji = json_object_get(j, "instance");
    const char *type = json_string_value(jt), *inst = json_string_value(ji);
    int g = !type ? -1 : strcmp(type, "prefill") == 0 ? 0 : strcmp(type, "decode") == 0 ? 1 : -1;
    if (g < 0) {
        mc__proxy_req_answer(r, 400,
                             mc__proxy_error_json(400, "invalid_request_error", NULL, NULL,
                                                  "\"type\" must be \"prefill\" or \"decode\""));
        return;
    }
    if (!inst) {
        mc__proxy_req_answer(r, 400,
                             mc__proxy_error_json(400, "invalid_request_error", NULL, NULL,
                                                  "\"instance\" must be a \"host:port\" string"));
        return;
    }
    if (mc__proxy_check_instance(inst, host, sizeof host, &port, err, sizeof err) != 0) {
        mc__proxy_req_answer(r, 400,
                             mc__proxy_error_json(400, "invalid_request_error", NULL, NULL,
                                                  "bad instance '%.300s': %s", inst, err));
        return;
    }
    inst_t *old = mc__proxy_group_find(px, g, inst);
    if (!add) {
        if (!old) {
            mc__proxy_req_answer(r, 404,
                                 mc__proxy_error_json(404, "not_found", NULL, inst,
                                                      "%s is not in %s_instances", inst,
                                                      mc__proxy_group_name[g]));
            return;
        }
        MC_LOGI(TAG, "admin: removing %s instance %s (%u in flight)", mc__proxy_group_name[g], inst,
                old->inflight);
        old->removed = 1;
        mc__proxy_group_del(px, old);
        if (old->admin_waiter) {
            snprintf(old->last_error, sizeof old->last_error, "removed while being checked");
            mc__proxy_admin_reply(px, old, 0);
        }
        char msg[400];
        snprintf(msg, sizeof msg, "Removed %s from %s_instances.", inst, mc__proxy_group_name[g]);
        json_t *o =
            json_pack("{s:s, s:s, s:s, s:i}", "message", msg, "type", mc__proxy_group_name[g],
                      "instance", inst, "draining", (int)old->inflight);
        /* Last use of old: cancelling its probe (a health check in flight) frees it when
         * nothing else holds it, as mc__proxy_inst_maybe_free does otherwise. */
        if (old->probe)
            mc__proxy_leg_cancel(px, old->probe);
        else
            mc__proxy_inst_maybe_free(px, old);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        mc__proxy_req_answer(r, 200, s);
        return;
    }
    if (old) {
        mc__proxy_req_answer(r, 400,
                             mc__proxy_error_json(400, "invalid_request_error", NULL, inst,
                                                  "%s is already in %s_instances", inst,
                                                  mc__proxy_group_name[g]));
        return;
    }
    uint16_t boot = 0;
    if (px->cfg.mode == MC_PROXY_MODE_CONNECTOR && g == MC_PROXY_PREFILL) {
        json_t *jb = json_object_get(j, "bootstrap_port");
        boot = MC_PROXY_DEFAULT_BOOTSTRAP;
        if (jb) {
            json_int_t bv = json_integer_value(jb);
            if (!json_is_integer(jb) || bv < 1 || bv > 65535) {
                mc__proxy_req_answer(
                    r, 400,
                    mc__proxy_error_json(400, "invalid_request_error", NULL, NULL,
                                         "\"bootstrap_port\" must be an integer in 1..65535"));
                return;
            }
            boot = (uint16_t)bv;
        }
    }
    /* "kv_events": "tcp://host:port" (prefill): where its vLLM publishes KV events */
    json_t *jk = json_object_get(j, "kv_events");
    const char *kv_ep = json_string_value(jk);
    if (jk && (g != MC_PROXY_PREFILL || !kv_ep || !strstr(kv_ep, "://") || strlen(kv_ep) > 255 ||
               (!px->kv && mc__proxy_kvev_init(px, 1) != 0))) {
        mc__proxy_req_answer(
            r, 400,
            mc__proxy_error_json(400, "invalid_request_error", NULL, NULL,
                                 "\"kv_events\" must be a ZMQ endpoint (tcp://host:port) of a "
                                 "prefill instance, in a proxy built with libzmq"));
        return;
    }
    char url[320];
    snprintf(url, sizeof url, "http://%s", inst);
    inst_t *in = mc__proxy_inst_add(px, g, url, boot, 0);
    if (in && kv_ep && !in->kv && mc__proxy_kvev_attach(px, in, kv_ep) != 0) {
        in->removed = 1;
        mc__proxy_group_del(px, in);
        mc__proxy_inst_maybe_free(px, in);
        mc__proxy_req_answer(r, 400,
                             mc__proxy_error_json(400, "invalid_request_error", NULL, NULL,
                                                  "cannot subscribe to \"kv_events\" %s", kv_ep));
        return;
    }
    if (!in || mc__proxy_probe_start(px, in, STEP_MODELS) != 0) {
        if (in) {
            in->removed = 1;
            mc__proxy_group_del(px, in);
            mc__proxy_inst_maybe_free(px, in);
        }
        mc__proxy_req_answer(
            r, 500, mc__proxy_error_json(500, "internal_error", NULL, NULL, "cannot add instance"));
        return;
    }
    MC_LOGI(TAG, "admin: checking new %s instance %s", mc__proxy_group_name[g], inst);
    in->admin_waiter = r;
    r->admin_inst = in;
    mc__proxy_req_ref(r); /* held until mc__proxy_admin_reply */
}

/* ------------------------------------------------------- GET endpoints */

static json_t *inst_json(const mc_proxy_t *px, const inst_t *in)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:i, s:I, s:I}", "instance", in->name, "url",
                          in->base, "state", state_name[in->state], "healthy",
                          in->state == ST_HEALTHY, "inflight", (int)in->inflight, "requests",
                          (json_int_t)in->total, "failures", (json_int_t)in->failures);
    if (!o) return NULL;
    if (in->boot_port) {
        json_object_set_new(o, "bootstrap_port", json_integer(in->boot_port));
        json_t *a = json_array();
        for (int i = 0; i < in->n_dp; i++)
            json_array_append_new(a, json_string(in->engine_ids[i]));
        json_object_set_new(o, "engine_ids", a);
    }
    if (in->last_error[0]) json_object_set_new(o, "last_error", json_string(in->last_error));
    mc__proxy_route_inst_json(px, in, o);
    return o;
}

static char *status_json(mc_proxy_t *px)
{
    json_t *o = json_object();
    json_object_set_new(o, "mode", json_string(mode_name[px->cfg.mode]));
    json_object_set_new(o, "scheduling",
                        json_string(mc__proxy_sched_name[px->cfg.sched]));
    json_object_set_new(o, "model", json_string(px->cfg.model[0] ? px->cfg.model : px->model_id));
    json_object_set_new(o, "ready",
                        json_boolean(mc__proxy_connector_ready(px) &&
                                     mc__proxy_pick_noadvance(px, 0) &&
                                     mc__proxy_pick_noadvance(px, 1)));
    for (int g = 0; g < 2; g++) {
        char k[40];
        json_t *names = json_array(), *det = json_array();
        for (int i = 0; i < px->ngrp[g]; i++) {
            json_array_append_new(names, json_string(px->grp[g][i]->name));
            json_array_append_new(det, inst_json(px, px->grp[g][i]));
        }
        snprintf(k, sizeof k, "%s_node_count", mc__proxy_group_name[g]);
        json_object_set_new(o, k, json_integer(px->ngrp[g]));
        snprintf(k, sizeof k, "%s_nodes", mc__proxy_group_name[g]);
        json_object_set_new(o, k, names);
        json_object_set_new(o, mc__proxy_group_name[g], det);
    }
    json_t *dr = json_array();
    for (inst_t *in = px->all; in; in = in->next_all)
        if (in->removed) {
            json_t *x = inst_json(px, in);
            json_object_set_new(x, "type", json_string(mc__proxy_group_name[in->group]));
            json_array_append_new(dr, x);
        }
    json_object_set_new(o, "draining", dr);
    json_t *rs = mc__proxy_route_status(px);
    if (rs) json_object_update(o, rs);
    json_decref(rs);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static char *metrics_text(mc_proxy_t *px)
{
    buf_t b = {0};
    int oom = 0;
#define P(...) oom |= mc__proxy_buf_printf(&b, __VA_ARGS__)
    P("# HELP mooncake_proxy_requests_total Completion requests received.\n"
      "# TYPE mooncake_proxy_requests_total counter\n"
      "mooncake_proxy_requests_total{endpoint=\"completions\"} %llu\n"
      "mooncake_proxy_requests_total{endpoint=\"chat_completions\"} %llu\n",
      (unsigned long long)px->m_requests[0], (unsigned long long)px->m_requests[1]);
    P("# HELP mooncake_proxy_responses_total Responses sent, by status class.\n"
      "# TYPE mooncake_proxy_responses_total counter\n");
    for (int c = 1; c < 6; c++)
        P("mooncake_proxy_responses_total{code=\"%dxx\"} %llu\n", c,
          (unsigned long long)px->m_status[c]);
    P("# HELP mooncake_proxy_upstream_errors_total Failed upstream legs.\n"
      "# TYPE mooncake_proxy_upstream_errors_total counter\n"
      "mooncake_proxy_upstream_errors_total{leg=\"prefill\"} %llu\n"
      "mooncake_proxy_upstream_errors_total{leg=\"decode\"} %llu\n",
      (unsigned long long)px->m_upstream_err[0], (unsigned long long)px->m_upstream_err[1]);
    P("# HELP mooncake_proxy_client_disconnects_total Clients gone before their answer ended.\n"
      "# TYPE mooncake_proxy_client_disconnects_total counter\n"
      "mooncake_proxy_client_disconnects_total %llu\n",
      (unsigned long long)px->m_disconnects);
    P("# HELP mooncake_proxy_admin_requests_total Authorised admin requests.\n"
      "# TYPE mooncake_proxy_admin_requests_total counter\n"
      "mooncake_proxy_admin_requests_total{action=\"add\"} %llu\n"
      "mooncake_proxy_admin_requests_total{action=\"remove\"} %llu\n",
      (unsigned long long)px->m_admin[0], (unsigned long long)px->m_admin[1]);
    P("# HELP mooncake_proxy_inflight_requests Completion requests in progress.\n"
      "# TYPE mooncake_proxy_inflight_requests gauge\n"
      "mooncake_proxy_inflight_requests %u\n",
      px->m_inflight);
    P("# HELP mooncake_proxy_request_duration_seconds Time from request to last byte.\n"
      "# TYPE mooncake_proxy_request_duration_seconds summary\n"
      "mooncake_proxy_request_duration_seconds_sum %.6f\n"
      "mooncake_proxy_request_duration_seconds_count %llu\n",
      px->m_dur_sum, (unsigned long long)px->m_dur_count);
    P("# HELP mooncake_proxy_instance_healthy 1 when the instance is in rotation.\n"
      "# TYPE mooncake_proxy_instance_healthy gauge\n");
    for (int g = 0; g < 2; g++)
        for (int i = 0; i < px->ngrp[g]; i++)
            P("mooncake_proxy_instance_healthy{type=\"%s\",instance=\"%s\"} %d\n",
              mc__proxy_group_name[g], px->grp[g][i]->name,
              mc__proxy_inst_eligible(px, px->grp[g][i]));
    P("# HELP mooncake_proxy_instance_inflight Outstanding upstream requests per instance.\n"
      "# TYPE mooncake_proxy_instance_inflight gauge\n");
    for (int g = 0; g < 2; g++)
        for (int i = 0; i < px->ngrp[g]; i++)
            P("mooncake_proxy_instance_inflight{type=\"%s\",instance=\"%s\"} %u\n",
              mc__proxy_group_name[g], px->grp[g][i]->name, px->grp[g][i]->inflight);
    P("# HELP mooncake_proxy_instance_requests_total Upstream requests per instance.\n"
      "# TYPE mooncake_proxy_instance_requests_total counter\n");
    for (int g = 0; g < 2; g++)
        for (int i = 0; i < px->ngrp[g]; i++)
            P("mooncake_proxy_instance_requests_total{type=\"%s\",instance=\"%s\"} %llu\n",
              mc__proxy_group_name[g], px->grp[g][i]->name,
              (unsigned long long)px->grp[g][i]->total);
#undef P
    oom |= mc__proxy_route_metrics(px, &b);
    if (oom || mc__proxy_buf_append(&b, "", 1) != 0) {
        mc__proxy_buf_free(&b);
        return NULL;
    }
    return b.p;
}

enum MHD_Result mc__proxy_serve_get(mc_proxy_t *px, struct MHD_Connection *c, const char *url)
{
    char *s = NULL;
    int status = 200;
    const char *ct = "application/json";
    int ready = mc__proxy_connector_ready(px) && mc__proxy_pick_noadvance(px, 0) &&
                mc__proxy_pick_noadvance(px, 1);
    if (strcmp(url, "/health") == 0) {
        s = strdup(ready ? "{\"status\":\"ok\",\"ready\":true}"
                         : "{\"status\":\"ok\",\"ready\":false}");
    } else if (strcmp(url, "/healthcheck") == 0) {
        json_t *o = json_pack("{s:s, s:i, s:i}", "status", "ok", "prefill_instances", px->ngrp[0],
                              "decode_instances", px->ngrp[1]);
        s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
    } else if (strcmp(url, "/status") == 0) {
        s = status_json(px);
    } else if (strcmp(url, "/metrics") == 0) {
        s = metrics_text(px);
        ct = "text/plain; version=0.0.4";
    } else { /* /v1/models */
        if (px->models_json) {
            s = strdup(px->models_json);
        } else {
            status = 503;
            s = mc__proxy_error_json(503, "service_unavailable", NULL, NULL,
                                     "no instance has answered /v1/models yet");
        }
    }
    px->m_status[status / 100]++;
    enum MHD_Result r = mc__proxy_queue_str(c, status, ct, s, NULL);
    free(s);
    return r;
}
