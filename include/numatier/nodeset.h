/* A set of NUMA node ids, and the tier overrides that config carries. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define NT_MAX_NODES 1024

struct nt_nodeset {
    uint64_t bits[NT_MAX_NODES / 64];
};

static inline bool nt_nodeset_test(const struct nt_nodeset *s, int node)
{
    return node >= 0 && node < NT_MAX_NODES &&
           (s->bits[node / 64] >> (node % 64)) & 1u;
}

static inline void nt_nodeset_set(struct nt_nodeset *s, int node)
{
    if (node >= 0 && node < NT_MAX_NODES)
        s->bits[node / 64] |= UINT64_C(1) << (node % 64);
}

static inline void nt_nodeset_clear(struct nt_nodeset *s, int node)
{
    if (node >= 0 && node < NT_MAX_NODES)
        s->bits[node / 64] &= ~(UINT64_C(1) << (node % 64));
}

static inline bool nt_nodeset_empty(const struct nt_nodeset *s)
{
    for (unsigned i = 0; i < NT_MAX_NODES / 64; i++)
        if (s->bits[i])
            return false;
    return true;
}

/* How nodes are sorted into fast and slow tiers; see numatierd.conf(5). */
struct nt_tier_config {
    struct nt_nodeset slow_nodes;   /* [topology] slow_tier_nodes */
    struct nt_nodeset fast_nodes;   /* [topology] fast_tier_nodes */
    bool cpuless_is_slow;           /* [topology] cpuless_is_slow */
};
