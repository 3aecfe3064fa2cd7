/* bench_proxy_kvev.c: the fake vLLM KV event publisher of bench_proxy
 * --kv-events. An XPUB socket on 127.0.0.1 (XPUB, so that the bench sees the
 * proxy's subscription arrive instead of publishing into the void), and one
 * event batch in vLLM 0.32's format, written with msgpack-c's packer:
 * [ts, [{"type": "BlockStored", "block_hashes": [...], "parent_block_hash": nil,
 *        "token_ids": [...], "block_size": B, "lora_id": nil, "medium": "GPU",
 *        "lora_name": nil}], nil], sent as [topic, seq (8 bytes BE), payload]. */
#include "bench_proxy_kvev.h"

#include <msgpack.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

static void *g_ctx, *g_pub;

int bench_kvev_open(uint16_t *port)
{
    char ep[64];
    size_t el = sizeof ep;
    g_ctx = zmq_ctx_new();
    g_pub = g_ctx ? zmq_socket(g_ctx, ZMQ_XPUB) : NULL;
    if (!g_pub || zmq_bind(g_pub, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(g_pub, ZMQ_LAST_ENDPOINT, ep, &el) != 0)
        return -1;
    const char *c = strrchr(ep, ':');
    *port = c ? (uint16_t)atoi(c + 1) : 0;
    return *port ? 0 : -1;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

int bench_kvev_publish(const uint32_t *toks, int n, int bs, int timeout_ms)
{
    zmq_pollitem_t it = {g_pub, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) != 1) return -1; /* no subscriber */
    char sub[256];
    if (zmq_recv(g_pub, sub, sizeof sub, 0) < 1 || sub[0] != 1) return -1;
    int nb = n / bs;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_double(&pk, 1.0);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 8);
    pack_str(&pk, "type");
    pack_str(&pk, "BlockStored");
    pack_str(&pk, "block_hashes");
    msgpack_pack_array(&pk, (size_t)nb);
    for (int i = 0; i < nb; i++) {
        char h[32];
        memset(h, 0, sizeof h);
        snprintf(h, sizeof h, "bench-block-%d", i);
        msgpack_pack_bin(&pk, sizeof h);
        msgpack_pack_bin_body(&pk, h, sizeof h);
    }
    pack_str(&pk, "parent_block_hash");
    msgpack_pack_nil(&pk);
    pack_str(&pk, "token_ids");
    msgpack_pack_array(&pk, (size_t)nb * (size_t)bs);
    for (int i = 0; i < nb * bs; i++)
        msgpack_pack_uint32(&pk, toks[i]);
    pack_str(&pk, "block_size");
    msgpack_pack_int(&pk, bs);
    pack_str(&pk, "lora_id");
    msgpack_pack_nil(&pk);
    pack_str(&pk, "medium");
    pack_str(&pk, "GPU");
    pack_str(&pk, "lora_name");
    msgpack_pack_nil(&pk);
    msgpack_pack_nil(&pk);
    unsigned char seq[8] = {0};
    int rc = zmq_send(g_pub, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(g_pub, seq, 8, ZMQ_SNDMORE) < 0 ||
             zmq_send(g_pub, sb.data, sb.size, 0) < 0;
    msgpack_sbuffer_destroy(&sb);
    return rc ? -1 : nb;
}

void bench_kvev_close(void)
{
    if (g_pub) zmq_close(g_pub);
    if (g_ctx) zmq_ctx_term(g_ctx);
    g_pub = g_ctx = NULL;
}
