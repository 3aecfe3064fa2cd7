/* store_prefault.c: the segment's pages, faulted in ahead of the puts.
 * A fresh segment is untouched anonymous memory: the first put into each
 * range pays for its page faults (with transparent huge pages, the kernel
 * zeroes 2 MiB per fault and, short of free huge pages, compacts memory
 * right there, in the put). Since the master hands out ranges in address
 * order (master_alloc.c), a filling pool meets fresh pages on every put for
 * as long as it takes to go once through the segment. Here a thread started
 * at setup populates the segment (MADV_POPULATE_WRITE, Linux 5.14+) in steps
 * of PF_STEP bytes, so that setup returns at once and close can stop it
 * between two steps. The thread keeps the normal priority: populating holds
 * the process's mmap lock (for reading) during a step, so a thread starved
 * under SCHED_IDLE would hold up every mmap/munmap of the process (a priority
 * inversion); steps of 16 MiB keep each hold short. Populating writes nothing into the pages (it only
 * faults in those not yet present), so puts may land in the segment
 * meanwhile. MC_STORE_PREFAULT=0 leaves the segment to fault on demand (its
 * memory is then committed only as it fills); on a kernel without
 * MADV_POPULATE_WRITE the thread stops at its first step. It also stops,
 * with one line, when free memory (sysinfo: free + buffers) would fall below
 * an eighth of RAM: a segment larger than the host can back (several stores
 * on one host, or a segment sized for a bigger machine) then faults in on
 * demand as before, instead of pushing the host into the OOM killer. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>

#include "base_env.h"
#include "base_log.h"
#include "base_time.h"
#include "store_int.h"

#define TAG "store"
#define PF_STEP (16ull << 20)

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static void *pf_main(void *arg)
{
    mc_store_t *s = arg;
    uint64_t t0 = mc_now_ms(), off = 0;
    int err = 0;
    while (off < s->seg_size && !atomic_load_explicit(&s->pf_stop, memory_order_relaxed)) {
        uint64_t n = s->seg_size - off < PF_STEP ? s->seg_size - off : PF_STEP;
        struct sysinfo si;
        if (sysinfo(&si) == 0) {
            uint64_t unit = si.mem_unit ? si.mem_unit : 1;
            uint64_t avail = ((uint64_t)si.freeram + si.bufferram) * unit;
            if (avail < (uint64_t)si.totalram * unit / 8 + n) {
                MC_LOGI(TAG,
                        "segment prefault stopped at %llu of %llu bytes: free memory is below "
                        "an eighth of RAM; the rest faults in on demand",
                        (unsigned long long)off, (unsigned long long)s->seg_size);
                break;
            }
        }
        if (madvise((char *)s->seg + off, n, MADV_POPULATE_WRITE) != 0 && errno != EINTR) {
            err = errno;
            break;
        }
        off += n;
        atomic_store_explicit(&s->pf_done, off, memory_order_relaxed);
    }
    if (err)
        MC_LOGD(TAG, "segment prefault stopped at %llu of %llu bytes: %s",
                (unsigned long long)off, (unsigned long long)s->seg_size, strerror(err));
    else if (off == s->seg_size)
        MC_LOGD(TAG, "segment of %llu bytes prefaulted in %llu ms",
                (unsigned long long)s->seg_size, (unsigned long long)(mc_now_ms() - t0));
    return NULL;
}

void mc__store_prefault_start(mc_store_t *s)
{
    atomic_store(&s->pf_stop, 0);
    atomic_store(&s->pf_done, 0);
    if (!s->seg || !mc_env_bool("MC_STORE_PREFAULT", 1)) return;
    if (pthread_create(&s->pf_thread, NULL, pf_main, s) == 0)
        s->pf_running = 1;
    else
        MC_LOGW(TAG, "segment prefault thread: %s (pages fault on demand)", strerror(errno));
}

void mc__store_prefault_stop(mc_store_t *s)
{
    if (!s->pf_running) return;
    atomic_store(&s->pf_stop, 1);
    pthread_join(s->pf_thread, NULL);
    s->pf_running = 0;
}

uint64_t mc__store_prefaulted(const mc_store_t *s)
{
    return atomic_load_explicit(&s->pf_done, memory_order_relaxed);
}
