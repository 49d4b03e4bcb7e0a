/* Calibration at startup: what moving a page or a thread costs on this
 * machine, for the cost model (cost.h).
 *
 * C_mem: for each ordered pair of nodes with memory (CPU-less ones too), a
 * scratch buffer of base pages is moved from one to the other with
 * move_pages(2), a few times; the median in microseconds per page is kept.
 * With THP available, a 2 MiB-aligned THP buffer gives c_mem_huge.
 * C_thread: a probe thread walks a cache-sized working set on one CPU
 * until warm, is moved to a CPU of another node (or just another CPU), and
 * the slowdown of its first passes is the refill cost; the
 * sched_setaffinity call itself is the scheduling overhead.
 *
 * Each result says how it was obtained, and why not when it wasn't. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "numatier/cost.h"

struct json_object;
struct nt_topology;

struct nt_calibrate_params {
    size_t mem_buffer_bytes;     /* base-page buffer per measurement; default 1 MiB */
    size_t huge_buffer_bytes;    /* THP buffer, a multiple of 2 MiB; default 4 MiB */
    unsigned repeats;            /* per pair / probe; default 5 */
    uint64_t time_budget_usec;   /* all of it; default 1.5 s: later repeats are dropped past it */
    bool thp;                    /* measure c_mem_huge when THP is enabled; default true */
    bool thread;                 /* measure c_thread; default true */
    size_t probe_bytes;          /* probe working set; 0 = the L2 size (256 KiB if unknown) */
    double sched_usec;           /* >= 0: use instead of measuring the migration; default -1 */
    const char *sysfs_root;      /* for the THP setting; NULL = "/" */
};

struct nt_calibration {
    unsigned nr_nodes;
    int *node_ids;               /* [nr_nodes], the topology's, sorted */
    double *c_mem_usec;          /* [i * nr_nodes + j], < 0 not measured */
    unsigned mem_pairs;          /* pairs measured */
    enum nt_cost_origin mem_origin;
    char mem_reason[160];        /* "measured 6 pairs, 5 repeats" / "no node pairs: nothing to measure" */

    double c_mem_huge_usec;      /* < 0 not measured */
    enum nt_cost_origin huge_origin;
    char huge_reason[160];

    double c_thread_refill_usec; /* < 0 not measured */
    double c_thread_sched_usec;
    int probe_cpu_from, probe_cpu_to;   /* -1 if not run */
    size_t probe_bytes;
    enum nt_cost_origin thread_origin;
    char thread_reason[160];

    uint64_t elapsed_usec;
};

void nt_calibrate_params_init(struct nt_calibrate_params *p);

/* Measure what can be measured on this machine (live: it allocates,
 * migrates its own pages and threads). Something that cannot be measured
 * is not an error: its origin stays NT_COST_DEFAULT with a reason.
 * Returns 0 or negative errno (-ENOMEM). out is always initialized;
 * release it with nt_calibration_done(). */
int nt_calibrate(const struct nt_topology *topo, const struct nt_calibrate_params *p, struct nt_calibration *out);
void nt_calibration_done(struct nt_calibration *c);   /* zeroed or done: fine */

/* Put the measured values into m (which keeps pointers into c: c must
 * outlive it). Unmeasured values are left as m has them (its defaults);
 * the per-pair matrix is always c's, with -1 where not measured. */
void nt_calibration_apply(const struct nt_calibration *c, struct nt_cost_model *m);

/* {"elapsed_usec":N,
 *  "c_mem":{"origin","reason","pairs":N,"nodes":[..],"usec_per_page":[[null,1.2],..]},
 *  "c_mem_huge":{"origin","reason","usec_per_page":x|null},
 *  "c_thread":{"origin","reason","refill_usec","sched_usec","cpu_from","cpu_to","probe_bytes"}} */
struct json_object *nt_calibration_to_json(const struct nt_calibration *c);

/* Median of v[0..n) (sorts v); NAN for n == 0. */
double nt_median(double *v, size_t n);
/* Is THP enabled in /sys/kernel/mm/transparent_hugepage/enabled below
 * root ("always" or "madvise")? false when the file is missing or "never". */
bool nt_thp_enabled(const char *root);
