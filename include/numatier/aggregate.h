/* Aggregation: observations in, per-process and per-page heat out.
 *
 * Pages are keyed by (process instance id, virtual page), so a recycled PID
 * never inherits heat. Heat decays with a half-life; the table is bounded
 * and the coldest entries go first. The snapshot is a plain struct for the
 * policy (placement) and for `numatierctl top`. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "numatier/sampler.h"

struct nt_aggregate;

struct nt_aggregate_config {
    uint64_t half_life_usec;
    size_t max_pages;
    unsigned nr_nodes;            /* node ids are 0..nr_nodes-1 */
    /* Most table entries one multi-page (DAMON) observation touches; larger
     * regions are sampled evenly, rotating, with the weight scaled so the
     * totals stay exact. 0 = NT_AGGREGATE_REGION_PAGES. */
    unsigned max_region_pages;
};

#define NT_AGGREGATE_REGION_PAGES 256

int  nt_aggregate_new(const struct nt_aggregate_config *cfg, struct nt_aggregate **out);
void nt_aggregate_free(struct nt_aggregate *a);    /* NULL ok */
/* Apply a new config (half-life, cap, node count) keeping what fits. */
int  nt_aggregate_reconfigure(struct nt_aggregate *a, const struct nt_aggregate_config *cfg);

/* Ingest one observation for process instance proc_id (0 is ignored).
 * cpu_node is the node of the CPU that made the access (-1 unknown, e.g.
 * DAMON). This is the hot path: no allocation in the steady state, no
 * syscalls. Heat counts acc->weight per page; a time earlier than the
 * latest one seen counts as the latest. */
void nt_aggregate_add(struct nt_aggregate *a, uint32_t proc_id, const struct nt_access *acc,
                      int cpu_node, uint64_t now_usec);

/* One observation for nt_aggregate_add_batch. */
struct nt_aggregate_obs {
    uint32_t proc_id;
    int cpu_node;
    struct nt_access acc;
};

/* The same as nt_aggregate_add for each of obs[0..n), all at now_usec, but
 * faster: it prefetches table slots a few observations ahead, so cache
 * misses overlap. Drains should buffer observations (a few hundred) and
 * hand them over with this. */
void nt_aggregate_add_batch(struct nt_aggregate *a, const struct nt_aggregate_obs *obs, size_t n,
                            uint64_t now_usec);

/* Forget a process instance (it exited or is no longer watched). */
void nt_aggregate_forget(struct nt_aggregate *a, uint32_t proc_id);

/* Record where a page is, e.g. after the mover moved it (node < 0: unknown,
 * look it up again). No-op for a page not in the table. */
void nt_aggregate_set_page_node(struct nt_aggregate *a, uint32_t proc_id, uint64_t vaddr, int node,
                                uint64_t now_usec);

struct nt_aggregate_stats {
    size_t tracked_pages, max_pages;
    size_t slots;                 /* hash table size (grows up to ~4/3 max_pages, a power of 2) */
    size_t procs;                 /* process instances with totals */
    uint64_t observations;        /* nt_aggregate_add calls that counted */
    uint64_t page_updates;        /* table entries touched by them */
    uint64_t evictions;           /* entries dropped for room (not by forget) */
    uint64_t dropped;             /* observations lost to allocation failure */
    uint64_t node_lookups, node_lookup_errors;   /* pages asked of nt_page_node_fn, and per-page errors */
};
void nt_aggregate_get_stats(const struct nt_aggregate *a, struct nt_aggregate_stats *out);

/* Page -> node lookup for a batch: fill nodes[i] for vaddrs[i] (negative
 * errno per page as move_pages reports it). Returns 0 or negative errno. */
typedef int (*nt_page_node_fn)(pid_t pid, size_t n, const uint64_t *vaddrs, int *nodes, void *userdata);

/* The process's pages were moved: every node it knew is unknown again
 * (and asked anew by nt_aggregate_refresh_nodes, hottest first). One sweep
 * of the table. */
void nt_aggregate_invalidate_nodes(struct nt_aggregate *a, uint32_t proc_id);
/* The same for every process. */
void nt_aggregate_invalidate_all_nodes(struct nt_aggregate *a);
/* Only these pages of the process moved (move_pages): their nodes are
 * unknown again, the others keep theirs, so its accesses stay attributed
 * and the next lookups go to the pages that moved. */
void nt_aggregate_invalidate_pages(struct nt_aggregate *a, uint32_t proc_id, const uint64_t *vaddrs, size_t n);

/* Look up the node of up to max_pages pages whose node is unknown or stale,
 * hottest first, batched per process. pid_of maps an instance id to its
 * current pid (0 if gone). A node is stale one half-life (at least 1 s)
 * after it was learned. fn must not call back into the aggregate.
 * Returns the number of pages asked about, or -ENOMEM; a process whose
 * lookup fails (e.g. -ESRCH, it exited) is skipped until its nodes are
 * stale again. */
int nt_aggregate_refresh_nodes(struct nt_aggregate *a, uint64_t now_usec, size_t max_pages,
                               pid_t (*pid_of)(uint32_t proc_id, void *ud), void *ud,
                               nt_page_node_fn fn, void *fn_ud);

struct nt_hot_page {
    uint64_t vaddr;
    double heat;                  /* decayed accesses, at the snapshot's time */
    int node;                     /* -1 unknown */
};

struct nt_proc_heat {
    uint32_t proc_id;
    /* Decayed access totals. An access is local when the memory node equals
     * the accessing CPU's node; for observations without a CPU (DAMON) the
     * process's thread nodes stand in (see nt_aggregate_snapshot). */
    double lma, rma;
    double *node_accesses;        /* [nr_nodes]: by the node the memory was on when accessed */
    /* [nr_nodes]: heat of its pages by the node each is on now, as far as
     * known: where its hot memory is (pages that moved count where they are). */
    double *heat_on;
    unsigned *hot_pages;          /* [nr_nodes]: pages with heat >= 1 on each node */
    unsigned unknown_node_pages;  /* hot pages whose node is not known yet */
    struct nt_hot_page *pages;    /* hottest first, at most top_pages of them */
    size_t nr_pages;
};

struct nt_heat_snapshot {
    uint64_t now_usec;
    unsigned nr_nodes;
    struct nt_proc_heat *procs;
    size_t nr_procs;
    size_t tracked_pages;
    uint64_t evictions;
};

/* thread_nodes(proc_id) gives the bitmask of nodes the process's threads
 * run on (bit n = node n; nodes >= 64 are folded out), used to classify
 * accesses that came without a CPU. With thread_nodes NULL, those accesses
 * count in node_accesses but in neither lma nor rma.
 *
 * Accesses served by a cache (NT_MEM_SRC_CACHE, _REMOTE_CACHE) heat their
 * page but are not memory accesses: they count in none of the totals.
 * REMOTE_DRAM and SLOW_MEM are remote even when the page's node is not
 * known yet. procs are sorted by proc_id. */
int nt_aggregate_snapshot(const struct nt_aggregate *a, uint64_t now_usec, size_t top_pages,
                          uint64_t (*thread_nodes)(uint32_t proc_id, void *ud), void *ud,
                          struct nt_heat_snapshot **out);
void nt_heat_snapshot_free(struct nt_heat_snapshot *s);   /* NULL ok */
