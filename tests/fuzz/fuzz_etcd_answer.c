/* libFuzzer target: the etcd gateway answer decoders (src/net/net_etcd.c),
 * a /v3/kv/range answer and one /v3/watch stream message. A decoded value is
 * NUL-terminated at its length; every event handed to the callback has a key
 * and a value that can be read in full. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net_etcd.h"

static void touch(void *arg, const mc_etcd_event_t *ev)
{
    unsigned char sum = 0;
    for (size_t i = 0; i < ev->keylen; i++)
        sum ^= (unsigned char)ev->key[i];
    for (size_t i = 0; i < ev->vallen; i++)
        sum ^= (unsigned char)ev->val[i];
    if (ev->type != MC_ETCD_EV_PUT && ev->type != MC_ETCD_EV_DELETE) __builtin_trap();
    *(volatile unsigned char *)arg ^= sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *val = NULL;
    size_t vl = 0;
    mc_etcd_kv_t kv;
    int64_t rev;
    if (mc_etcd_parse_range((const char *)data, size, &val, &vl, &kv, &rev) == 0) {
        if (val[vl] != '\0') __builtin_trap();
        free(val);
    }
    int created, canceled;
    unsigned char sink = 0;
    mc_etcd_parse_watch((const char *)data, size, touch, &sink, &created, &canceled);
    return 0;
}
