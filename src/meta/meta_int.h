/* Internal backend interface of the metadata store: each backend is one file
 * that fills an mc__meta_ops_t. Thread rule: ops are called from many threads. */
#ifndef MC_META_INT_H
#define MC_META_INT_H
#include "mooncake/meta.h"

typedef struct {
    const char *name;
    int (*get)(void *impl, const char *key, char **val);
    int (*put)(void *impl, const char *key, const char *val);
    int (*del)(void *impl, const char *key);
    void (*close)(void *impl);
} mc__meta_ops_t;

struct mc_meta {
    const mc__meta_ops_t *ops; /* NULL for P2PHANDSHAKE */
    void *impl;
};

/* Backend constructors: return 0 and fill *ops and *impl, or a negative errno. */
int mc__meta_http_open(const char *url, const mc__meta_ops_t **ops, void **impl);
#endif
