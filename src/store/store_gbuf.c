/* store_gbuf.c: the arena of get buffers (store_gbuf.h). Free extents live in
 * an array sorted by offset; an allocation takes the front of the first
 * extent that fits, a free inserts its extent and merges it with its
 * neighbours. The arrays stay short (a handful of live buffers), so linear
 * scans are all it needs. */
#include "store_gbuf.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define GB_ALIGN 4096u

typedef struct {
    uint64_t off, len;
} gb_ext_t;

struct mc__gbuf {
    pthread_mutex_t lk;
    char *base;
    uint64_t size;
    uint64_t used;
    size_t refs; /* the store's + one per block out */
    gb_ext_t *fr;
    size_t nfr, cap;
};

static uint64_t gb_round(uint64_t n) { return (n + GB_ALIGN - 1) / GB_ALIGN * GB_ALIGN; }

mc__gbuf_t *mc__gbuf_new(void *base, uint64_t size)
{
    if (!base || size < GB_ALIGN) return NULL;
    mc__gbuf_t *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->cap = 8;
    g->fr = malloc(g->cap * sizeof *g->fr);
    if (!g->fr) {
        free(g);
        return NULL;
    }
    pthread_mutex_init(&g->lk, NULL);
    g->base = base;
    g->size = size / GB_ALIGN * GB_ALIGN;
    g->fr[0] = (gb_ext_t){0, g->size};
    g->nfr = 1;
    g->refs = 1;
    return g;
}

/* Called with lk held; unlocks. Unmaps and frees at the last reference. */
static void gb_unref_unlock(mc__gbuf_t *g)
{
    size_t left = --g->refs;
    pthread_mutex_unlock(&g->lk);
    if (left) return;
    munmap(g->base, g->size);
    pthread_mutex_destroy(&g->lk);
    free(g->fr);
    free(g);
}

void mc__gbuf_put(mc__gbuf_t *g)
{
    if (!g) return;
    pthread_mutex_lock(&g->lk);
    gb_unref_unlock(g);
}

void mc__gbuf_ref(mc__gbuf_t *g)
{
    pthread_mutex_lock(&g->lk);
    g->refs++;
    pthread_mutex_unlock(&g->lk);
}

int mc__gbuf_owns(const mc__gbuf_t *g, const void *p)
{
    return g && (const char *)p >= g->base && (const char *)p < g->base + g->size;
}

void *mc__gbuf_alloc(mc__gbuf_t *g, uint64_t size)
{
    if (!g || size == 0 || size > g->size) return NULL;
    uint64_t need = gb_round(size);
    void *p = NULL;
    pthread_mutex_lock(&g->lk);
    for (size_t i = 0; i < g->nfr; i++) {
        if (g->fr[i].len < need) continue;
        p = g->base + g->fr[i].off;
        g->fr[i].off += need;
        g->fr[i].len -= need;
        if (!g->fr[i].len) {
            memmove(&g->fr[i], &g->fr[i + 1], (g->nfr - i - 1) * sizeof *g->fr);
            g->nfr--;
        }
        g->used += need;
        g->refs++;
        break;
    }
    pthread_mutex_unlock(&g->lk);
    return p;
}

void mc__gbuf_free(mc__gbuf_t *g, void *p, uint64_t size)
{
    if (!p) return;
    if (!mc__gbuf_owns(g, p)) {
        free(p);
        return;
    }
    uint64_t off = (uint64_t)((char *)p - g->base), len = gb_round(size);
    pthread_mutex_lock(&g->lk);
    size_t i = 0;
    while (i < g->nfr && g->fr[i].off < off) i++;
    int left = i > 0 && g->fr[i - 1].off + g->fr[i - 1].len == off;
    int right = i < g->nfr && off + len == g->fr[i].off;
    if (left && right) {
        g->fr[i - 1].len += len + g->fr[i].len;
        memmove(&g->fr[i], &g->fr[i + 1], (g->nfr - i - 1) * sizeof *g->fr);
        g->nfr--;
    } else if (left) {
        g->fr[i - 1].len += len;
    } else if (right) {
        g->fr[i].off = off;
        g->fr[i].len += len;
    } else {
        if (g->nfr == g->cap) {
            gb_ext_t *n = realloc(g->fr, 2 * g->cap * sizeof *n);
            if (!n) { /* the block is lost to the arena (never to the process) */
                g->used -= len;
                gb_unref_unlock(g);
                return;
            }
            g->fr = n;
            g->cap *= 2;
        }
        memmove(&g->fr[i + 1], &g->fr[i], (g->nfr - i) * sizeof *g->fr);
        g->fr[i] = (gb_ext_t){off, len};
        g->nfr++;
    }
    g->used -= len;
    gb_unref_unlock(g);
}

uint64_t mc__gbuf_used(mc__gbuf_t *g)
{
    pthread_mutex_lock(&g->lk);
    uint64_t u = g->used;
    pthread_mutex_unlock(&g->lk);
    return u;
}
