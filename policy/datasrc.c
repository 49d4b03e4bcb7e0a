/* Where a sampled load came from: union perf_mem_data_src -> nt_mem_source.
 *
 * The kernel fills data_src for Intel PEBS load latency and AMD IBS op in
 * two vocabularies at once: the legacy mem_lvl bit mask, and the newer
 * mem_lvl_num / mem_remote / mem_hops fields. Kernels and CPU models differ
 * in which they fill, so we read both. Pure: no syscalls, no state. */
#include <stddef.h>
#include <stdint.h>

#include "numatier/perf.h"
#include "numatier/sampler.h"

/* Newer uapi values, for older headers. */
#ifndef PERF_MEM_LVLNUM_UNC
#define PERF_MEM_LVLNUM_UNC 0x08
#endif
#ifndef PERF_MEM_LVLNUM_CXL
#define PERF_MEM_LVLNUM_CXL 0x09
#endif
#ifndef PERF_MEM_LVLNUM_L2_MHB
#define PERF_MEM_LVLNUM_L2_MHB 0x05
#endif
#ifndef PERF_MEM_LVLNUM_MSC
#define PERF_MEM_LVLNUM_MSC 0x06
#endif

/* The fields, by shift and width, so we don't depend on bitfield layout. */
#define FIELD(v, name, bits) (((v) >> PERF_MEM_##name##_SHIFT) & ((UINT64_C(1) << (bits)) - 1))

struct data_src {
    unsigned lvl;       /* legacy PERF_MEM_LVL_* mask */
    unsigned lvl_num;   /* PERF_MEM_LVLNUM_*, 0 when not reported */
    bool remote;
    unsigned hops;      /* PERF_MEM_HOPS_*, 0 when not reported */
};

static struct data_src split(uint64_t v)
{
    return (struct data_src){
        .lvl = (unsigned)FIELD(v, LVL, 14),
        .lvl_num = (unsigned)FIELD(v, LVLNUM, 4),
        .remote = FIELD(v, REMOTE, 1) != 0,
        .hops = (unsigned)FIELD(v, HOPS, 3),
    };
}

static bool lvl_num_is_cache(unsigned n)
{
    switch (n) {
    case PERF_MEM_LVLNUM_L1:
    case PERF_MEM_LVLNUM_L2:
    case PERF_MEM_LVLNUM_L3:
    case PERF_MEM_LVLNUM_L4:
    case PERF_MEM_LVLNUM_L2_MHB:
    case PERF_MEM_LVLNUM_MSC:
    case PERF_MEM_LVLNUM_ANY_CACHE:
    case PERF_MEM_LVLNUM_LFB:
        return true;
    default:
        return false;
    }
}

/* A cache line another core supplied: remote only if it crossed a node.
 * HOPS_0 is "another core on the same node" (AMD's near CCX); no hop count
 * at all (Intel) with the remote bit means another socket. */
static enum nt_mem_source cache_source(const struct data_src *d)
{
    if (d->remote && d->hops != PERF_MEM_HOPS_0)
        return NT_MEM_SRC_REMOTE_CACHE;
    return NT_MEM_SRC_CACHE;
}

/* Kernels and events that only fill the legacy mask. */
static enum nt_mem_source from_legacy(const struct data_src *d)
{
    if (d->lvl & PERF_MEM_LVL_LOC_RAM)
        return NT_MEM_SRC_LOCAL_DRAM;
    if (d->lvl & (PERF_MEM_LVL_REM_CCE1 | PERF_MEM_LVL_REM_CCE2))
        return NT_MEM_SRC_REMOTE_CACHE;
    if ((d->lvl & PERF_MEM_LVL_HIT) &&
        (d->lvl & (PERF_MEM_LVL_L1 | PERF_MEM_LVL_LFB | PERF_MEM_LVL_L2 | PERF_MEM_LVL_L3)))
        return NT_MEM_SRC_CACHE;
    return NT_MEM_SRC_UNKNOWN;
}

enum nt_mem_source nt_mem_source_from_data_src(uint64_t v)
{
    struct data_src d = split(v);

    if (d.lvl_num == PERF_MEM_LVLNUM_PMEM || d.lvl_num == PERF_MEM_LVLNUM_CXL)
        return NT_MEM_SRC_SLOW_MEM;
    /* Before lvl_num: Intel's "L3 miss, remote DRAM" (DSE 0x0b) says
     * lvl_num L3 and only the legacy REM_RAM bit tells the truth. */
    if (d.lvl & (PERF_MEM_LVL_REM_RAM1 | PERF_MEM_LVL_REM_RAM2))
        return NT_MEM_SRC_REMOTE_DRAM;
    if (d.lvl_num == PERF_MEM_LVLNUM_RAM)
        return d.remote ? NT_MEM_SRC_REMOTE_DRAM : NT_MEM_SRC_LOCAL_DRAM;
    if (lvl_num_is_cache(d.lvl_num)) {
        /* "Missed this level" (Intel DSE 0x00, unknown L3 miss) says
         * nothing about where the data came from. */
        if ((d.lvl & PERF_MEM_LVL_MISS) && !(d.lvl & PERF_MEM_LVL_HIT))
            return NT_MEM_SRC_UNKNOWN;
        return cache_source(&d);
    }
    if (d.lvl_num == 0)
        return from_legacy(&d);
    return NT_MEM_SRC_UNKNOWN;      /* I/O, uncached, N/A */
}

const char *nt_mem_source_to_string(enum nt_mem_source s)
{
    static const char *const names[] = {
        [NT_MEM_SRC_UNKNOWN] = "unknown",
        [NT_MEM_SRC_CACHE] = "cache",
        [NT_MEM_SRC_LOCAL_DRAM] = "local-dram",
        [NT_MEM_SRC_REMOTE_DRAM] = "remote-dram",
        [NT_MEM_SRC_REMOTE_CACHE] = "remote-cache",
        [NT_MEM_SRC_SLOW_MEM] = "slow-mem",
    };
    if ((unsigned)s >= sizeof(names) / sizeof(names[0]) || !names[s])
        return "unknown";
    return names[s];
}
