/* master_alloc.c: range allocator of one segment, in the manner of TLSF
 * (two-level segregated fit). Every range (free or handed out) is a block node
 * in a doubly linked list ordered by address, so freeing coalesces with both
 * neighbours in O(1). Free blocks also sit in size-class bins: the first level
 * is the power of two of the size in 64-byte units, the second splits each
 * power into 8 linear sub-classes (units below 8 get exact bins); two bitmaps
 * say which bins are non-empty. A request is rounded up to the next sub-class
 * boundary so that the head of the first non-empty bin found through the
 * bitmaps always fits (O(1), "good fit", waste under 1/8); when no such bin
 * exists the request's own bin is scanned first-fit, so a request fails only
 * when no free block is large enough. Nodes live in the master's heap, never
 * in the segment, because the segment belongs to another process. */
#include "master_alloc.h"

#include <stdlib.h>
#include <string.h>

#include "mooncake/err.h"

#define NFL 56 /* units < 2^58 */
#define NSL 8

struct mc_alloc_blk {
    uint64_t addr, size;                /* size in bytes, a multiple of MC_ALLOC_ALIGN */
    struct mc_alloc_blk *prev, *next;   /* neighbours by address */
    struct mc_alloc_blk *fprev, *fnext; /* bin list, when free */
    void *owner;                        /* the caller's, when handed out */
    int free;
};

struct mc_alloc {
    uint64_t base, cap, used;
    struct mc_alloc_blk *first;
    struct mc_alloc_blk *hint; /* where the last claim ended (a live node), or NULL */
    uint64_t fl_map;
    uint8_t sl_map[NFL];
    struct mc_alloc_blk *bins[NFL][NSL];
};

static int msb64(uint64_t x)
{
    return 63 - __builtin_clzll(x);
}

static void bin_of(uint64_t units, int *fl, int *sl)
{
    if (units < NSL) {
        *fl = 0;
        *sl = (int)units;
        return;
    }
    int m = msb64(units);
    *fl = m - 2;
    *sl = (int)((units >> (m - 3)) & (NSL - 1));
}

static void bin_insert(mc_alloc_t *a, struct mc_alloc_blk *b)
{
    int fl, sl;
    bin_of(b->size / MC_ALLOC_ALIGN, &fl, &sl);
    b->free = 1;
    b->fprev = NULL;
    b->fnext = a->bins[fl][sl];
    if (b->fnext) b->fnext->fprev = b;
    a->bins[fl][sl] = b;
    a->sl_map[fl] |= (uint8_t)(1u << sl);
    a->fl_map |= 1ull << fl;
}

static void bin_remove(mc_alloc_t *a, struct mc_alloc_blk *b)
{
    int fl, sl;
    bin_of(b->size / MC_ALLOC_ALIGN, &fl, &sl);
    if (b->fprev)
        b->fprev->fnext = b->fnext;
    else
        a->bins[fl][sl] = b->fnext;
    if (b->fnext) b->fnext->fprev = b->fprev;
    if (!a->bins[fl][sl]) {
        a->sl_map[fl] &= (uint8_t) ~(1u << sl);
        if (!a->sl_map[fl]) a->fl_map &= ~(1ull << fl);
    }
    b->free = 0;
    b->fprev = b->fnext = NULL;
}

int mc_alloc_new(uint64_t base, uint64_t size, mc_alloc_t **out)
{
    *out = NULL;
    if (size == 0 || base + size < base) return MC_ERR_INVALID_PARAMS;
    uint64_t lo = (base + MC_ALLOC_ALIGN - 1) & ~(uint64_t)(MC_ALLOC_ALIGN - 1);
    if (lo < base) return MC_ERR_INVALID_PARAMS;
    uint64_t hi = (base + size) & ~(uint64_t)(MC_ALLOC_ALIGN - 1);
    if (hi <= lo) return MC_ERR_INVALID_PARAMS;
    if ((hi - lo) / MC_ALLOC_ALIGN >= (1ull << 58)) return MC_ERR_INVALID_PARAMS;
    mc_alloc_t *a = calloc(1, sizeof *a);
    struct mc_alloc_blk *b = calloc(1, sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        return MC_ERR_INTERNAL;
    }
    a->base = lo;
    a->cap = hi - lo;
    b->addr = lo;
    b->size = a->cap;
    a->first = b;
    bin_insert(a, b);
    *out = a;
    return 0;
}

void mc_alloc_destroy(mc_alloc_t *a)
{
    if (!a) return;
    struct mc_alloc_blk *b = a->first;
    while (b) {
        struct mc_alloc_blk *n = b->next;
        free(b);
        b = n;
    }
    free(a);
}

/* First block of the first non-empty bin at or above (fl, sl), or NULL. */
static struct mc_alloc_blk *find_from(mc_alloc_t *a, int fl, int sl)
{
    if (fl >= NFL) return NULL;
    uint32_t sm = sl >= NSL ? 0 : (uint32_t)a->sl_map[fl] & (~0u << sl);
    if (!sm) {
        uint64_t fm = fl + 1 >= 64 ? 0 : a->fl_map & (~0ull << (fl + 1));
        if (!fm) return NULL;
        fl = __builtin_ctzll(fm);
        sm = a->sl_map[fl];
    }
    sl = __builtin_ctz(sm);
    return a->bins[fl][sl];
}

int mc_alloc_get(mc_alloc_t *a, uint64_t size, mc_alloc_blk_t **blk, uint64_t *addr)
{
    if (size == 0) return MC_ERR_INVALID_PARAMS;
    if (size > a->cap) return MC_ERR_NO_AVAILABLE_HANDLE;
    uint64_t units = (size + MC_ALLOC_ALIGN - 1) / MC_ALLOC_ALIGN;
    uint64_t need = units * MC_ALLOC_ALIGN;
    int fl, sl;
    uint64_t search = units;
    if (units >= NSL) search = units + (1ull << (msb64(units) - 3)) - 1;
    bin_of(search, &fl, &sl);
    struct mc_alloc_blk *b = find_from(a, fl, sl);
    if (!b) { /* the request's own bin may still hold a block that fits */
        bin_of(units, &fl, &sl);
        for (b = a->bins[fl][sl]; b && b->size < need; b = b->fnext) {
        }
    }
    if (!b) return MC_ERR_NO_AVAILABLE_HANDLE;
    bin_remove(a, b);
    if (b->size - need >= MC_ALLOC_ALIGN) {
        struct mc_alloc_blk *r = calloc(1, sizeof *r);
        if (r) { /* without a node the whole block is handed out */
            r->addr = b->addr + need;
            r->size = b->size - need;
            r->prev = b;
            r->next = b->next;
            if (b->next) b->next->prev = r;
            b->next = r;
            b->size = need;
            bin_insert(a, r);
        }
    }
    a->used += b->size;
    b->owner = NULL;
    *blk = b;
    *addr = b->addr;
    return 0;
}

void mc_alloc_put(mc_alloc_t *a, mc_alloc_blk_t *b)
{
    if (!b) return;
    a->used -= b->size;
    struct mc_alloc_blk *n = b->next;
    if (n && n->free) {
        bin_remove(a, n);
        b->size += n->size;
        b->next = n->next;
        if (n->next) n->next->prev = b;
        if (a->hint == n) a->hint = b;
        free(n);
    }
    struct mc_alloc_blk *p = b->prev;
    if (p && p->free) {
        bin_remove(a, p);
        p->size += b->size;
        p->next = b->next;
        if (b->next) b->next->prev = p;
        if (a->hint == b) a->hint = p;
        free(b);
        b = p;
    }
    bin_insert(a, b);
}

int mc_alloc_claim(mc_alloc_t *a, uint64_t addr, uint64_t size, mc_alloc_blk_t **blk)
{
    *blk = NULL;
    if (size == 0 || addr % MC_ALLOC_ALIGN) return MC_ERR_INVALID_PARAMS;
    uint64_t need = (size + MC_ALLOC_ALIGN - 1) / MC_ALLOC_ALIGN * MC_ALLOC_ALIGN;
    uint64_t end = a->base + a->cap;
    if (need < size || addr < a->base || addr >= end || need > end - addr)
        return MC_ERR_INVALID_PARAMS;
    /* Claims in ascending address order start where the previous one ended. */
    struct mc_alloc_blk *b = a->hint && a->hint->addr <= addr ? a->hint : a->first;
    while (b && b->addr + b->size <= addr)
        b = b->next;
    if (!b || !b->free || need > b->addr + b->size - addr) return MC_ERR_NO_AVAILABLE_HANDLE;
    uint64_t left = addr - b->addr, right = b->addr + b->size - (addr + need);
    struct mc_alloc_blk *l = left ? calloc(1, sizeof *l) : NULL;
    struct mc_alloc_blk *r = right ? calloc(1, sizeof *r) : NULL;
    if ((left && !l) || (right && !r)) {
        free(l);
        free(r);
        return MC_ERR_INTERNAL;
    }
    bin_remove(a, b);
    if (l) { /* the free part before the claim */
        l->addr = b->addr;
        l->size = left;
        l->prev = b->prev;
        l->next = b;
        if (b->prev)
            b->prev->next = l;
        else
            a->first = l;
        b->prev = l;
        bin_insert(a, l);
    }
    if (r) { /* the free part after it */
        r->addr = addr + need;
        r->size = right;
        r->prev = b;
        r->next = b->next;
        if (b->next) b->next->prev = r;
        b->next = r;
        bin_insert(a, r);
    }
    b->addr = addr;
    b->size = need;
    b->owner = NULL;
    a->used += need;
    a->hint = r ? r : b->next;
    *blk = b;
    return 0;
}

void mc_alloc_blk_set_owner(mc_alloc_blk_t *b, void *owner)
{
    b->owner = owner;
}

void *mc_alloc_blk_owner(const mc_alloc_blk_t *b)
{
    return b->owner;
}

int mc_alloc_each(const mc_alloc_t *a,
                  int (*fn)(uint64_t addr, uint64_t size, int is_free, void *owner, void *arg),
                  void *arg)
{
    for (const struct mc_alloc_blk *b = a->first; b; b = b->next) {
        int rc = fn(b->addr, b->size, b->free, b->free ? NULL : b->owner, arg);
        if (rc) return rc;
    }
    return 0;
}

uint64_t mc_alloc_blk_addr(const mc_alloc_blk_t *b)
{
    return b->addr;
}
uint64_t mc_alloc_blk_size(const mc_alloc_blk_t *b)
{
    return b->size;
}
uint64_t mc_alloc_capacity(const mc_alloc_t *a)
{
    return a->cap;
}
uint64_t mc_alloc_used(const mc_alloc_t *a)
{
    return a->used;
}

uint64_t mc_alloc_largest_free(const mc_alloc_t *a)
{
    if (!a->fl_map) return 0;
    int fl = msb64(a->fl_map);
    int sl = 31 - __builtin_clz((uint32_t)a->sl_map[fl]);
    uint64_t best = 0;
    for (const struct mc_alloc_blk *b = a->bins[fl][sl]; b; b = b->fnext)
        if (b->size > best) best = b->size;
    return best;
}

int mc_alloc_check(const mc_alloc_t *a)
{
    uint64_t pos = a->base, used = 0, nfree = 0;
    const struct mc_alloc_blk *prev = NULL;
    for (const struct mc_alloc_blk *b = a->first; b; b = b->next) {
        if (b->prev != prev || b->addr != pos || b->size == 0 || b->size % MC_ALLOC_ALIGN)
            return -1;
        if (prev && prev->free && b->free) return -1; /* not coalesced */
        if (b->free)
            nfree++;
        else
            used += b->size;
        pos += b->size;
        prev = b;
    }
    if (pos != a->base + a->cap || used != a->used) return -1;
    uint64_t inbins = 0;
    for (int fl = 0; fl < NFL; fl++)
        for (int sl = 0; sl < NSL; sl++) {
            int nonempty = a->bins[fl][sl] != NULL;
            if (nonempty != !!(a->sl_map[fl] & (1u << sl))) return -1;
            for (const struct mc_alloc_blk *b = a->bins[fl][sl]; b; b = b->fnext) {
                int f, s;
                bin_of(b->size / MC_ALLOC_ALIGN, &f, &s);
                if (!b->free || f != fl || s != sl) return -1;
                inbins++;
            }
        }
    for (int fl = 0; fl < NFL; fl++)
        if (!!a->sl_map[fl] != !!(a->fl_map & (1ull << fl))) return -1;
    return inbins == nfree ? 0 : -1;
}
