/* proxy_kvev_decode.c: the decoder of vLLM's KV cache events (the payload
 * frame of its ZMQ publisher), for the precise mode of --scheduling cache_aware.
 *
 * The wire format (vLLM 0.32, vllm/distributed/kv_events.py, msgspec msgpack):
 * a message is three ZMQ frames [topic, seq as 8 bytes big-endian, payload];
 * the payload is an event batch encoded as an array [ts, events, dp_rank]
 * (dp_rank may be nil or absent), each event a map tagged by its "type" field:
 *   {"type": "BlockStored", "block_hashes": [h...], "parent_block_hash": h|nil,
 *    "token_ids": [int...], "block_size": int, "lora_id": int|nil,
 *    "medium": str|nil, "lora_name": str|nil, ...further optional fields}
 *   {"type": "BlockRemoved", "block_hashes": [h...], "medium": str|nil, ...}
 *   {"type": "AllBlocksCleared"}
 * where a block hash h is bytes (sha256) or an integer. Older vLLM releases
 * encoded events as arrays with the tag first and the fields in the order
 * above; both forms are read. Unknown event types and unknown fields are
 * skipped (counted by the caller as ignored), so newer publishers still work.
 *
 * The bytes are decoded by msgpack-c (msgpack_unpack_next). msgpack-c
 * allocates a container's element array from the count in its header before it
 * reads any element, so a 5-byte message could ask for 100 GB; a bounds walk
 * over the headers (mc__proxy_kvev_bounded) first checks that every declared
 * count fits in the bytes left and that nesting stays shallow. Pure functions:
 * no I/O, no globals, any thread. */
#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "proxy_int.h"

#define KVEV_MAX_DEPTH 16

/* Reads a big-endian unsigned of n bytes at p. */
static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Checks that the msgpack value(s) in b[0..len) declare no container longer
 * than the bytes left (each element takes at least one byte) and nest at most
 * KVEV_MAX_DEPTH deep, and that the first value ends within the buffer.
 * 0 or -EINVAL. */
int mc__proxy_kvev_bounded(const void *buf, size_t len)
{
    const unsigned char *b = buf;
    size_t off = 0;
    uint64_t pending[KVEV_MAX_DEPTH + 1];
    int depth = 0;
    pending[0] = 1;
    while (depth >= 0) {
        if (pending[depth] == 0) {
            depth--;
            continue;
        }
        pending[depth]--;
        if (off >= len) return -EINVAL;
        unsigned c = b[off++];
        uint64_t skip = 0, items = 0;
        int container = 0, hl = 0;
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
            /* fixint, nil, bool */
        } else if (c <= 0x8f) {
            items = 2u * (c & 0x0f), container = 1;
        } else if (c <= 0x9f) {
            items = c & 0x0f, container = 1;
        } else if (c <= 0xbf) {
            skip = c & 0x1f;
        } else if (c == 0xc1) {
            return -EINVAL;
        } else if (c >= 0xc4 && c <= 0xc6) { /* bin 8/16/32 */
            hl = 1 << (c - 0xc4);
        } else if (c >= 0xc7 && c <= 0xc9) { /* ext 8/16/32: length, type */
            hl = 1 << (c - 0xc7);
            skip = 1;
        } else if (c == 0xca) {
            skip = 4;
        } else if (c == 0xcb) {
            skip = 8;
        } else if (c >= 0xcc && c <= 0xcf) {
            skip = 1u << (c - 0xcc);
        } else if (c >= 0xd0 && c <= 0xd3) {
            skip = 1u << (c - 0xd0);
        } else if (c >= 0xd4 && c <= 0xd8) { /* fixext: type + 1..16 */
            skip = 1 + (1u << (c - 0xd4));
        } else if (c >= 0xd9 && c <= 0xdb) { /* str 8/16/32 */
            hl = 1 << (c - 0xd9);
        } else if (c == 0xdc || c == 0xdd) {
            hl = c == 0xdc ? 2 : 4;
            container = 1;
        } else { /* 0xde, 0xdf: map 16/32 */
            hl = c == 0xde ? 2 : 4;
            container = 2;
        }
        if (hl) {
            if (len - off < (size_t)hl) return -EINVAL;
            uint64_t n = be(b + off, hl);
            off += (size_t)hl;
            if (container)
                items = n * (uint64_t)container;
            else
                skip += n;
        }
        if (skip > len - off) return -EINVAL;
        off += (size_t)skip;
        if (container) {
            if (items > len - off) return -EINVAL;
            if (items) {
                if (depth == KVEV_MAX_DEPTH) return -EINVAL;
                pending[++depth] = items;
            }
        }
    }
    return 0;
}

static int str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

/* A block hash (bytes or an integer) as a 64-bit key: XXH3 of the bytes, or of
 * the integer's 8 little-endian bytes. -EINVAL for another type. */
static int hash_key(const msgpack_object *o, uint64_t *out)
{
    if (o->type == MSGPACK_OBJECT_BIN || o->type == MSGPACK_OBJECT_STR) {
        *out = XXH3_64bits(o->via.bin.ptr, o->via.bin.size);
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        uint64_t v = o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64 : (uint64_t)o->via.i64;
        unsigned char le[8];
        for (int i = 0; i < 8; i++)
            le[i] = (unsigned char)(v >> (8 * i));
        *out = XXH3_64bits(le, 8);
        return 0;
    }
    return -EINVAL;
}

/* The fields of one event, wherever they came from (map or array form). */
typedef struct {
    const msgpack_object *type, *hashes, *parent, *tokens, *block_size, *lora_id, *medium,
        *lora_name;
} fields_t;

static int fields_of(const msgpack_object *o, fields_t *f)
{
    memset(f, 0, sizeof *f);
    if (o->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
            if (str_eq(k, "type")) f->type = v;
            else if (str_eq(k, "block_hashes")) f->hashes = v;
            else if (str_eq(k, "parent_block_hash")) f->parent = v;
            else if (str_eq(k, "token_ids")) f->tokens = v;
            else if (str_eq(k, "block_size")) f->block_size = v;
            else if (str_eq(k, "lora_id")) f->lora_id = v;
            else if (str_eq(k, "medium")) f->medium = v;
            else if (str_eq(k, "lora_name")) f->lora_name = v;
        }
        return f->type ? 0 : -EINVAL;
    }
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size == 0) return -EINVAL;
    const msgpack_object *a = o->via.array.ptr;
    uint32_t n = o->via.array.size;
    f->type = &a[0];
    if (str_eq(f->type, "BlockStored")) {
        const msgpack_object **dst[] = {&f->hashes, &f->parent,  &f->tokens,   &f->block_size,
                                        &f->lora_id, &f->medium, &f->lora_name};
        for (uint32_t i = 1; i < n && i <= 7; i++)
            *dst[i - 1] = &a[i];
    } else if (str_eq(f->type, "BlockRemoved")) {
        if (n > 1) f->hashes = &a[1];
        if (n > 2) f->medium = &a[2];
    }
    return 0;
}

static int not_nil(const msgpack_object *o)
{
    return o && o->type != MSGPACK_OBJECT_NIL;
}

/* Fills ev from f; the arrays are malloc'd into ev (freed by the caller). */
static int event_of(const fields_t *f, mc__proxy_kvev_t *ev)
{
    memset(ev, 0, sizeof *ev);
    if (str_eq(f->type, "AllBlocksCleared")) {
        ev->kind = MC_KVEV_CLEARED;
        return 0;
    }
    int stored = str_eq(f->type, "BlockStored");
    if (!stored && !str_eq(f->type, "BlockRemoved")) {
        ev->kind = MC_KVEV_OTHER;
        return 0;
    }
    ev->kind = stored ? MC_KVEV_STORED : MC_KVEV_REMOVED;
    if (!f->hashes || f->hashes->type != MSGPACK_OBJECT_ARRAY) return -EINVAL;
    uint32_t nh = f->hashes->via.array.size;
    if (nh > MC_KVEV_MAX_BLOCKS) return -EINVAL;
    if (nh) {
        ev->hashes = malloc(nh * sizeof *ev->hashes);
        if (!ev->hashes) return -ENOMEM;
    }
    for (uint32_t i = 0; i < nh; i++)
        if (hash_key(&f->hashes->via.array.ptr[i], &ev->hashes[i]) != 0) return -EINVAL;
    ev->n_hashes = nh;
    if (f->medium && f->medium->type == MSGPACK_OBJECT_STR) {
        size_t ml = f->medium->via.str.size;
        if (ml >= sizeof ev->medium) ml = sizeof ev->medium - 1;
        memcpy(ev->medium, f->medium->via.str.ptr, ml);
    } else if (not_nil(f->medium)) {
        return -EINVAL;
    }
    if (!stored) return 0;
    if (not_nil(f->parent)) {
        if (hash_key(f->parent, &ev->parent) != 0) return -EINVAL;
        ev->has_parent = 1;
    }
    if (!f->block_size || f->block_size->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        f->block_size->via.u64 == 0 || f->block_size->via.u64 > MC_KVEV_MAX_BLOCK_SIZE)
        return -EINVAL;
    ev->block_size = (uint32_t)f->block_size->via.u64;
    if (!f->tokens || f->tokens->type != MSGPACK_OBJECT_ARRAY) return -EINVAL;
    uint32_t nt = f->tokens->via.array.size;
    /* one full block of tokens per hash */
    if ((uint64_t)nh * ev->block_size != nt) return -EINVAL;
    if (nt) {
        ev->tokens = malloc(nt * sizeof *ev->tokens);
        if (!ev->tokens) return -ENOMEM;
    }
    for (uint32_t i = 0; i < nt; i++) {
        const msgpack_object *t = &f->tokens->via.array.ptr[i];
        if (t->type != MSGPACK_OBJECT_POSITIVE_INTEGER || t->via.u64 > UINT32_MAX) return -EINVAL;
        ev->tokens[i] = (uint32_t)t->via.u64;
    }
    ev->n_tokens = nt;
    ev->lora = not_nil(f->lora_id) || not_nil(f->lora_name);
    return 0;
}

static void event_clear(mc__proxy_kvev_t *ev)
{
    free(ev->hashes);
    free(ev->tokens);
    ev->hashes = NULL;
    ev->tokens = NULL;
}

int mc__proxy_kvev_decode(const void *payload, size_t len, mc__proxy_kvev_cb cb, void *ud,
                          unsigned *n_events, unsigned *n_bad)
{
    *n_events = 0;
    *n_bad = 0;
    if (len == 0 || len > MC_KVEV_MAX_PAYLOAD || mc__proxy_kvev_bounded(payload, len) != 0)
        return -EINVAL;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = -EINVAL;
    msgpack_unpack_return ur = msgpack_unpack_next(&u, payload, len, &off);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR) rc = -ENOMEM;
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len) goto done;
    const msgpack_object *top = &u.data;
    if (top->type != MSGPACK_OBJECT_ARRAY || top->via.array.size < 2) goto done;
    const msgpack_object *ts = &top->via.array.ptr[0], *evs = &top->via.array.ptr[1];
    if (ts->type != MSGPACK_OBJECT_FLOAT64 && ts->type != MSGPACK_OBJECT_FLOAT32 &&
        ts->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        goto done;
    if (evs->type != MSGPACK_OBJECT_ARRAY) goto done;
    rc = 0;
    for (uint32_t i = 0; i < evs->via.array.size; i++) {
        fields_t f;
        mc__proxy_kvev_t ev;
        int e = fields_of(&evs->via.array.ptr[i], &f);
        if (e == 0) e = event_of(&f, &ev);
        else memset(&ev, 0, sizeof ev);
        if (e == -ENOMEM) {
            event_clear(&ev);
            rc = -ENOMEM;
            break;
        }
        if (e != 0) {
            (*n_bad)++;
        } else {
            (*n_events)++;
            cb(ud, &ev);
        }
        event_clear(&ev);
    }
done:
    msgpack_unpacked_destroy(&u);
    return rc;
}

uint64_t mc__proxy_kvev_chain(uint64_t parent, const uint32_t *tokens, uint32_t n)
{
    /* the token ids as little-endian u32, whatever the host order */
    unsigned char buf[4 * 64];
    XXH3_state_t st;
    XXH3_64bits_reset_withSeed(&st, parent);
    for (uint32_t i = 0; i < n;) {
        uint32_t k = 0;
        for (; k < 64 && i < n; k++, i++) {
            buf[4 * k] = (unsigned char)tokens[i];
            buf[4 * k + 1] = (unsigned char)(tokens[i] >> 8);
            buf[4 * k + 2] = (unsigned char)(tokens[i] >> 16);
            buf[4 * k + 3] = (unsigned char)(tokens[i] >> 24);
        }
        XXH3_64bits_update(&st, buf, 4 * (size_t)k);
    }
    uint64_t h = XXH3_64bits_digest(&st);
    return h ? h : 1; /* 0 marks an empty table entry */
}
