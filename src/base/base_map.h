/* String-keyed hash map (XXH3, open hashing with chains) owning copies of its
 * keys; values are caller-owned pointers. Not thread-safe: callers lock. */
#ifndef MC_BASE_MAP_H
#define MC_BASE_MAP_H
#include <stddef.h>

typedef struct mc_map mc_map_t;

/* Returns NULL on allocation failure. */
mc_map_t *mc_map_new(void);
/* Frees the map; calls free_val on every value when non-NULL. */
void mc_map_free(mc_map_t *m, void (*free_val)(void *));
/* Value for key, or NULL. */
void *mc_map_get(const mc_map_t *m, const char *key);
/* Inserts or replaces; the replaced value is returned through *old (may be NULL).
 * Returns 0, or -1 on allocation failure (map unchanged). */
int mc_map_put(mc_map_t *m, const char *key, void *val, void **old);
/* The map's own copy of key (valid until key is removed), or NULL. */
const char *mc_map_stored_key(const mc_map_t *m, const char *key);
/* Removes key and returns its value, or NULL when absent. */
void *mc_map_del(mc_map_t *m, const char *key);
size_t mc_map_size(const mc_map_t *m);
/* Calls fn for every entry until it returns non-zero; the map must not change meanwhile. */
int mc_map_each(const mc_map_t *m, int (*fn)(const char *key, void *val, void *arg), void *arg);
#endif
