/* base_map.c: a plain chained hash map keyed by strings, hashed with XXH3.
 * Grows by doubling when the load passes 1. */
#include "base_map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    void *val;
    char key[];
} entry_t;

struct mc_map {
    entry_t **slots;
    size_t nslots; /* power of two */
    size_t size;
};

mc_map_t *mc_map_new(void)
{
    mc_map_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->nslots = 16;
    m->slots = calloc(m->nslots, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    return m;
}

void mc_map_free(mc_map_t *m, void (*free_val)(void *))
{
    if (!m) return;
    for (size_t i = 0; i < m->nslots; i++) {
        entry_t *e = m->slots[i];
        while (e) {
            entry_t *n = e->next;
            if (free_val) free_val(e->val);
            free(e);
            e = n;
        }
    }
    free(m->slots);
    free(m);
}

static entry_t **find(const mc_map_t *m, const char *key, uint64_t h)
{
    entry_t **pp = &m->slots[h & (m->nslots - 1)];
    while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0)) pp = &(*pp)->next;
    return pp;
}

void *mc_map_get(const mc_map_t *m, const char *key)
{
    entry_t **pp = find(m, key, XXH3_64bits(key, strlen(key)));
    return *pp ? (*pp)->val : NULL;
}

const char *mc_map_stored_key(const mc_map_t *m, const char *key)
{
    entry_t **pp = find(m, key, XXH3_64bits(key, strlen(key)));
    return *pp ? (*pp)->key : NULL;
}

static void grow(mc_map_t *m)
{
    size_t n = m->nslots * 2;
    entry_t **slots = calloc(n, sizeof *slots);
    if (!slots) return; /* keep the old table; chains just get longer */
    for (size_t i = 0; i < m->nslots; i++) {
        entry_t *e = m->slots[i];
        while (e) {
            entry_t *next = e->next;
            e->next = slots[e->hash & (n - 1)];
            slots[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = n;
}

int mc_map_put(mc_map_t *m, const char *key, void *val, void **old)
{
    size_t klen = strlen(key);
    uint64_t h = XXH3_64bits(key, klen);
    entry_t **pp = find(m, key, h);
    if (*pp) {
        if (old) *old = (*pp)->val;
        (*pp)->val = val;
        return 0;
    }
    entry_t *e = malloc(sizeof *e + klen + 1);
    if (!e) return -1;
    memcpy(e->key, key, klen + 1);
    e->hash = h;
    e->val = val;
    e->next = NULL;
    *pp = e;
    if (old) *old = NULL;
    if (++m->size > m->nslots) grow(m);
    return 0;
}

void *mc_map_del(mc_map_t *m, const char *key)
{
    entry_t **pp = find(m, key, XXH3_64bits(key, strlen(key)));
    entry_t *e = *pp;
    if (!e) return NULL;
    *pp = e->next;
    void *v = e->val;
    free(e);
    m->size--;
    return v;
}

size_t mc_map_size(const mc_map_t *m)
{
    return m->size;
}

int mc_map_each(const mc_map_t *m, int (*fn)(const char *, void *, void *), void *arg)
{
    for (size_t i = 0; i < m->nslots; i++)
        for (entry_t *e = m->slots[i]; e; e = e->next) {
            int rc = fn(e->key, e->val, arg);
            if (rc) return rc;
        }
    return 0;
}
