/* te_auth.c: the client half of the cluster secret's exchange on a transfer
 * engine connection (the server half is in te_server.c). Frames and status
 * codes: te_int.h; the exchange and its MACs: net_auth.h. Used by every way an
 * engine connects to another: data lanes (te_peer.c), the metadata / notify
 * handshake (mc__te_rpc_call) and name probes (te_name.c). */
#include <errno.h>
#include <string.h>

#include "base_log.h"
#include "net_auth.h"
#include "te_int.h"

#define TAG "te-auth"
#define SERVICE "te"

/* Receives one reply frame of opcode with exactly want payload bytes into
 * out (want 0: none). Returns 0, -EPROTO with *why, or an I/O error. */
static int auth_reply(mc_te_t *te, int fd, uint8_t opcode, void *out, size_t want,
                      uint64_t deadline, int *cur, int32_t *status, const char **why)
{
    uint8_t hb[MC_TE_HDR_LEN];
    mc__te_hdr_t h;
    int rc = mc__te_io_by(fd, hb, sizeof hb, 0, deadline, te->io_timeout_ms, cur);
    if (rc) return rc;
    if (mc__te_hdr_decode(hb, sizeof hb, &h, why)) return -EPROTO;
    if (h.opcode != (opcode | MC_TE_OP_REPLY)) {
        *why = "an unexpected reply (an engine that predates the cluster secret?)";
        return -EPROTO;
    }
    *status = h.status;
    if (h.status != MC_TE_ST_OK) return h.length ? (*why = "a refusal with a payload", -EPROTO) : 0;
    if (h.length != want) {
        *why = "a reply of the wrong length";
        return -EPROTO;
    }
    return want ? mc__te_io_by(fd, out, want, 0, deadline, te->io_timeout_ms, cur) : 0;
}

static const char *refusal(int32_t st)
{
    switch (st) {
    case MC_TE_ST_AUTH_OFF:
        return "it has no cluster secret configured, and this engine has one";
    case MC_TE_ST_AUTH_VERSION:
        return "it speaks another version of the secret's handshake";
    case MC_TE_ST_AUTH_FAILED:
        return "it refused this engine's proof (the cluster secrets differ)";
    default:
        return "it refused the secret's exchange";
    }
}

int mc__te_auth_client(mc_te_t *te, int fd, const char *ip, uint16_t port, uint64_t deadline_ms)
{
    const mc_auth_key_t *k = te->auth_key;
    if (!k) return 0;
    int cur = te->io_timeout_ms;
    const char *why = NULL;
    int32_t st = 0;
    uint8_t hello[MC_TE_AUTH_HELLO_LEN], rep[MC_TE_AUTH_HELLO_REP_LEN], mac[MC_AUTH_MAC_LEN];
    hello[0] = MC_AUTH_VERSION;
    if (mc_auth_nonce(hello + 1)) {
        MC_LOGE(TAG, "no random bytes for a nonce: not connecting to %s:%u", ip, port);
        return MC_TE_ERR_SOCKET;
    }
    int rc = mc__te_send_frame_by(fd, MC_TE_OP_AUTH_HELLO, 1, 0, 0, sizeof hello, hello,
                                  deadline_ms, te->io_timeout_ms, &cur);
    if (!rc)
        rc = auth_reply(te, fd, MC_TE_OP_AUTH_HELLO, rep, sizeof rep, deadline_ms, &cur, &st, &why);
    if (!rc && st != MC_TE_ST_OK) {
        MC_LOGE(TAG, "engine %s:%u: %s: not using it", ip, port, refusal(st));
        return MC_TE_ERR_REJECT_HANDSHAKE;
    }
    if (!rc && !mc_auth_mac_ok(k, 'S', SERVICE, hello + 1, rep, rep + MC_AUTH_NONCE_LEN)) {
        MC_LOGE(TAG,
                "engine %s:%u proved another cluster secret than this engine's (the cluster "
                "secrets differ): not using it",
                ip, port);
        return MC_TE_ERR_REJECT_HANDSHAKE;
    }
    if (!rc) {
        mc_auth_mac(k, 'C', SERVICE, rep, hello + 1, mac);
        rc = mc__te_send_frame_by(fd, MC_TE_OP_AUTH_PROOF, 2, 0, 0, sizeof mac, mac, deadline_ms,
                                  te->io_timeout_ms, &cur);
    }
    if (!rc) rc = auth_reply(te, fd, MC_TE_OP_AUTH_PROOF, NULL, 0, deadline_ms, &cur, &st, &why);
    if (!rc && st != MC_TE_ST_OK) {
        MC_LOGE(TAG, "engine %s:%u: %s: not using it", ip, port, refusal(st));
        return MC_TE_ERR_REJECT_HANDSHAKE;
    }
    if (rc) {
        MC_LOGW(TAG, "engine %s:%u: the cluster secret's exchange failed: %s", ip, port,
                rc == -EPROTO  ? why
                : rc == -ETIME ? "no whole answer by its deadline"
                               : strerror(-rc));
        return rc == -EPROTO ? MC_TE_ERR_REJECT_HANDSHAKE : MC_TE_ERR_SOCKET;
    }
    return 0;
}
