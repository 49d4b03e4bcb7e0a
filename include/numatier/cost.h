/* The cost model: what moving one page, or one thread, costs on this
 * machine. Pure (policy/cost.c); the numbers come from calibration in the
 * daemon (daemon/calibrate.c) or from config overrides. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

enum nt_cost_origin {
    NT_COST_DEFAULT,      /* built-in guess: nothing measured yet */
    NT_COST_MEASURED,     /* calibrated on this machine at startup */
    NT_COST_CONFIG,       /* [placement] c_mem / c_thread override */
};

struct nt_cost_model {
    unsigned nr_nodes;
    const int *node_ids;            /* [nr_nodes], the topology's node ids, sorted */
    /* [i * nr_nodes + j]: microseconds to move one base page from node_ids[i]
     * to node_ids[j]; < 0 when unknown (nt_cost_mem then falls back to
     * c_mem_default_usec). Diagonal unused. */
    const double *c_mem_usec;
    double c_mem_default_usec;
    /* Microseconds per huge page (THP) between any pair, < 0 unknown:
     * then huge pages cost (huge_size / page_size) base pages. */
    double c_mem_huge_usec;
    enum nt_cost_origin mem_origin;

    /* Moving one thread: cache and TLB refill (measured by a probe), plus a
     * fixed scheduling overhead. */
    double c_thread_refill_usec;
    double c_thread_sched_usec;
    enum nt_cost_origin thread_origin;
    /* Queueing: per second of horizon, what a thread pays when it lands on
     * a node without an idle CPU (its share of the CPU it must wait for),
     * expressed in microseconds per second of horizon per missing CPU. */
    double queue_usec_per_sec;
};

/* Index of node id in model->node_ids, -1 if absent. */
int nt_cost_node_index(const struct nt_cost_model *m, int node);

/* Microseconds to move `pages` base pages from -> to. */
double nt_cost_mem(const struct nt_cost_model *m, int from, int to, uint64_t pages);

/* Microseconds to move `threads` threads onto a node that has `idle_cpus`
 * idle CPUs (fractional; from CPU load), over `horizon_sec`: refill and
 * scheduling for each thread, plus the queueing penalty for every thread
 * beyond the idle CPUs (the load-balancer's dL > P rule: moving is only
 * free while the target has room). */
double nt_cost_thread(const struct nt_cost_model *m, unsigned threads, double idle_cpus,
                      double horizon_sec);

const char *nt_cost_origin_to_string(enum nt_cost_origin o);
