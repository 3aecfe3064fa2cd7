/* Internals shared by the proxy's files: the request rewriter and the small
 * parsers of upstream answers. Everything here is pure (no I/O, no globals),
 * so the fuzz target and the unit tests drive it directly. Thread-safe. */
#ifndef MC_PROXY_INT_H
#define MC_PROXY_INT_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

/* What the decode leg needs to know about the prefill leg. */
typedef struct {
    int mode;                   /* MC_PROXY_MODE_* */
    const char *transfer_id;    /* connector mode: "xfer-<uuid>" */
    const char *bootstrap_addr; /* connector mode: "http://P_host:boot_port" */
    const char *engine_id;      /* connector mode: engine id of the chosen dp rank */
    const json_t *prefill_kv;   /* toy/demo: kv_transfer_params the prefiller returned, or NULL */
    const char *prefill_host;   /* demo: overwrites remote_host in prefill_kv */
    const char *raw;            /* the client's body as received, or NULL */
    size_t raw_len;
} mc__proxy_rw_t;

/* Parses a client body. Returns 0 and a new reference in *out when the body is a
 * JSON object; -EINVAL with a one-line reason in err otherwise. */
int mc__proxy_parse_body(const char *body, size_t len, json_t **out, char *err, size_t errlen);

/* Serialises the prefill request for `orig` (not modified): max_tokens=1,
 * max_completion_tokens=1 when present, stream=false, no stream_options, no
 * min_tokens / min_completion_tokens, and the kv_transfer_params of rw->mode.
 * *out is malloc'd (caller frees). Returns 0 or -ENOMEM. */
int mc__proxy_rw_prefill(const json_t *orig, const mc__proxy_rw_t *rw, char **out, size_t *outlen);
/* Serialises the decode request: `orig` plus the kv_transfer_params of rw->mode
 * (connector: remote_* from rw; toy: rw->prefill_kv verbatim; demo: prefill_kv
 * with remote_host overwritten; toy/demo without prefill_kv: orig unchanged).
 * When rw->raw holds the text `orig` was parsed from and that has no
 * kv_transfer_params, the client's bytes are kept as they are and the
 * parameters are appended before the closing brace. */
int mc__proxy_rw_decode(const json_t *orig, const mc__proxy_rw_t *rw, char **out, size_t *outlen);

/* Finds "kv_transfer_params" in a prefill answer: a JSON object body, or the
 * last SSE "data:" frame that carries one. Returns 0 with a new reference in
 * *kv, -ENOENT when absent (or null), -EINVAL when the body is unusable. */
int mc__proxy_extract_kv(const char *resp, size_t len, json_t **kv);

/* Parses a bootstrap server's GET /query answer {dp_rank: {"engine_id": s, ...}}
 * into ids[0..*n) (dp ranks 0..n-1, all present, n <= 1024). *ids and each id
 * are malloc'd; free with mc__proxy_free_ids. Returns 0 or -EINVAL / -ENOMEM. */
int mc__proxy_parse_query(const char *resp, size_t len, char ***ids, int *n);
void mc__proxy_free_ids(char **ids, int n);

/* Checks a GET /v1/models answer: 0 when `model` is NULL/"" and the answer lists
 * at least one model, or when some data[].id has the same last path component
 * as `model`; the first id is copied to first_id. -EINVAL / -ENOENT otherwise. */
int mc__proxy_models_match(const char *resp, size_t len, const char *model, char *first_id,
                           size_t idlen);

/* Reads the engine's queue from a vLLM GET /metrics answer (Prometheus text):
 * the sums over all label sets of vllm:num_requests_running and
 * vllm:num_requests_waiting (values clamped to 0..1e6, non-finite ones skipped).
 * Returns 0 when at least one of the two was present, -ENOENT otherwise. */
int mc__proxy_parse_engine_load(const char *text, size_t len, unsigned *running,
                                unsigned *waiting);

/* Validates an admin "host:port" string (host: letters, digits, '.', '-', '_';
 * or [v6]; port 1..65535; at most 255 bytes). Returns 0 with host/port filled,
 * -EINVAL with a reason in err. */
int mc__proxy_check_instance(const char *s, char *host, size_t hlen, uint16_t *port, char *err,
                             size_t errlen);

/* Compares a secret with a candidate in time that depends only on the
 * candidate's length. Returns 1 when equal. */
int mc__proxy_key_equal(const char *secret, const char *candidate);

/* Writes a random RFC 4122 version 4 UUID (36 chars + NUL) into out[37]. */
void mc__proxy_uuid(char out[37]);

/* Last path component of a model name ("org/name/" -> "name"). */
const char *mc__proxy_model_base(const char *model, size_t *len);

/* ---- proxy_tokenize.c: a vLLM POST /tokenize for a text prompt */

/* The token ids a prompt or a /tokenize answer holds: a non-empty JSON array of
 * integers in 0..2^32-1, its first `max` read. 0 with a malloc'd array in *toks
 * and its length in *n; -EINVAL when a is not such an array; -ENOMEM. */
int mc__proxy_token_ids(const json_t *a, uint32_t max, uint32_t **toks, uint32_t *n);

/* The /tokenize body for client request `req` (chat: a /v1/chat/completions
 * body): the fields that decide its tokens. Returns a malloc'd string and its
 * length, or NULL when there is no single text to tokenize (a token-id prompt,
 * a batch, an empty prompt, no messages) or on allocation failure. */
char *mc__proxy_tokenize_body(const json_t *req, int chat, size_t *len);
/* The token ids of a /tokenize answer ({"tokens": [ids...], ...}), at most max:
 * 0 with a malloc'd array in *toks and its length in *n, -1 when the answer is
 * not one (not JSON, no non-empty "tokens" list, an id outside 0..2^32-1). */
int mc__proxy_tokenize_answer(const char *p, size_t len, uint32_t max, uint32_t **toks,
                              uint32_t *n);
/* 1 when a 404 answer carries an OpenAI "error" object (vLLM saying the model
 * it names is not served), 0 for anything else (a server without the route). */
int mc__proxy_tokenize_is_error(const char *p, size_t len);
/* ---- proxy_kvev_decode.c: vLLM KV cache events (msgpack payload frames) */

enum { MC_KVEV_STORED = 1, MC_KVEV_REMOVED, MC_KVEV_CLEARED, MC_KVEV_OTHER };
#define MC_KVEV_MAX_PAYLOAD (64u << 20)  /* larger payload frames are bad */
#define MC_KVEV_MAX_BLOCKS 65536         /* block hashes per event */
#define MC_KVEV_MAX_BLOCK_SIZE 65536     /* tokens per block */

/* One decoded event. Block hashes (bytes or integers on the wire) are reduced
 * to 64-bit keys (XXH3); the arrays belong to the decoder and live only during
 * the callback. */
typedef struct {
    int kind;               /* MC_KVEV_* */
    uint32_t n_hashes;
    uint64_t *hashes;       /* stored/removed: the blocks, parent first */
    int has_parent;         /* stored: parent_block_hash not nil */
    uint64_t parent;
    uint32_t block_size;    /* stored: tokens per block */
    uint32_t n_tokens;      /* stored: n_hashes * block_size */
    uint32_t *tokens;
    int lora;               /* stored: lora_id or lora_name set */
    char medium[16];        /* "" when nil */
} mc__proxy_kvev_t;
typedef void (*mc__proxy_kvev_cb)(void *ud, const mc__proxy_kvev_t *ev);

/* Decodes one event batch payload and calls cb for every well-formed event in
 * order; an event of a known type with bad fields is skipped and counted in
 * *n_bad, an unknown type is passed as MC_KVEV_OTHER. Returns 0, -EINVAL when
 * the payload is not an event batch at all (nothing was called), or -ENOMEM. */
int mc__proxy_kvev_decode(const void *payload, size_t len, mc__proxy_kvev_cb cb, void *ud,
                          unsigned *n_events, unsigned *n_bad);
/* 0 when every container header of the msgpack value in buf fits in the bytes
 * left and nesting is shallow (what msgpack-c needs checked first). */
int mc__proxy_kvev_bounded(const void *buf, size_t len);
/* The proxy's key of a block: XXH3 of its token ids (u32 little-endian) seeded
 * with the key of the block before it (MC_KVEV_ROOT for the first); never 0. */
uint64_t mc__proxy_kvev_chain(uint64_t parent, const uint32_t *tokens, uint32_t n);
#define MC_KVEV_ROOT 0x6b762d6576656e74ull
#endif
