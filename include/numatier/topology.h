/* A snapshot of the machine's NUMA layout: nodes, their CPUs and memory,
 * the distance matrix, fast/slow tiers and memory blocks.
 *
 * Everything is read from sysfs below a root ("/" or a fixture tree), so
 * the same code runs on the host and in unit tests. A snapshot is plain
 * data: policy code takes it by const pointer and never re-reads sysfs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "numatier/nodeset.h"

struct json_object;

enum nt_tier { NT_TIER_FAST, NT_TIER_SLOW };
const char *nt_tier_to_string(enum nt_tier t);   /* "fast" / "slow" */

/* One /sys/devices/system/memory/memoryN block. */
struct nt_mem_block {
    unsigned id;
    int node;                 /* -1 if no node claims the block */
    bool online;              /* state is exactly "online" */
    int removable;            /* 1 / 0 from memoryN/removable, -1 if absent */
    char state[24];           /* "online", "offline", "going-offline" */
    char valid_zones[64];     /* "Normal", "DMA32", "none", "Normal Movable" */
};

struct nt_node {
    int id;
    char *cpulist;            /* as the kernel prints it, "" for none */
    unsigned nr_cpus;
    uint64_t mem_total_kb, mem_free_kb;
    int memory_tier;          /* kernel memory_tierN, -1 if unknown */
    enum nt_tier tier;
    const char *tier_reason;  /* static string: "config", "memory_tiering", "cpuless", "default" */
    unsigned nr_blocks, nr_blocks_online;
};

struct nt_topology {
    unsigned nr_nodes;
    struct nt_node *nodes;       /* sorted by id */
    unsigned *distance;          /* nr_nodes*nr_nodes, [i*nr_nodes+j] by position in nodes[]; 0 = unknown */
    struct nt_mem_block *blocks;
    size_t nr_blocks;            /* sorted by id */
    uint64_t block_size_bytes;   /* 0 if the kernel has no memory block devices */
    int *cpu_node;               /* [nr_cpu_ids]: node of each CPU, -1 if none */
    unsigned nr_cpu_ids;
};

/* Read the topology below root (NULL or "/" for the live system).
 * tiers may be NULL: no overrides, and CPU-less nodes count as slow.
 * Returns 0, or negative errno: -ENOENT if root has no node directory
 * (-EOPNOTSUPP instead on a live kernel built without NUMA), -EINVAL if a
 * sysfs file is malformed, -ENOMEM. */
int nt_topology_read(const char *root, const struct nt_tier_config *tiers, struct nt_topology **out);
void nt_topology_free(struct nt_topology *t);           /* NULL ok */
static inline void nt_topology_freep(struct nt_topology **t) { nt_topology_free(*t); }

const struct nt_node *nt_topology_node(const struct nt_topology *t, int id);   /* NULL if absent */
/* Node of a CPU, -1 if unknown. */
int nt_topology_cpu_node(const struct nt_topology *t, int cpu);
unsigned nt_topology_distance(const struct nt_topology *t, int from, int to);  /* 0 if unknown */

/* {"nodes":[{"id","tier","tier_reason","memory_tier","cpus","nr_cpus","cpuless",
 *   "mem_total_kb","mem_free_kb","distances":[..],"blocks_total","blocks_online"}],
 *  "block_size_bytes":N,
 *  "blocks":[{"id","node","state","valid_zones","removable"}]}
 * memory_tier is -1 when unknown; removable is null when the kernel doesn't say. */
struct json_object *nt_topology_to_json(const struct nt_topology *t);

/* The memory blocks alone, sorted by id, with their node from the
 * nodeK/memoryM links (or memoryM/nodeK). No memory directory at all is
 * not an error: *n = 0 and *block_size = 0. Used by nt_topology_read; the
 * hot-plug code can call it to re-read block states cheaply. */
int nt_memblocks_read(const char *root, struct nt_mem_block **blocks, size_t *n, uint64_t *block_size);

/* "0-3,8-11" -> 8. Returns the count or negative errno (-EINVAL). */
int nt_cpulist_count(const char *list);
