/* Aggregate ingest rate: synthetic perf-like samples on one core.
 *
 * 64 processes with 16384 pages each (1M distinct pages), page popularity
 * Zipf(1.0) over all of them with ranks scattered across processes and
 * addresses, a table capped at 1M entries, two nodes, and a mix of memory
 * sources as PEBS reports them. Samples are generated up front; the clock
 * advances 1 ms per 1000 samples, as drains would stamp them. A warm-up
 * pass fills the table first, so the figure is the steady state, evictions
 * included. Also times one snapshot of the full table. */
#include <math.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "numatier/aggregate.h"
#include "numatier/util.h"

#define NR_PROCS       64u
#define PAGES_PER_PROC 16384u
#define NR_PAGES       (NR_PROCS * PAGES_PER_PROC)
#define NR_SAMPLES     (1u << 22)
#define ZIPF_S         1.0
#define MIN_SECONDS    1.0

#define BATCH          256u          /* observations per nt_aggregate_add_batch */
#define PER_TICK       1024u         /* observations per 1 ms of clock */

/* What a drain hands the aggregate. */
typedef struct nt_aggregate_obs sample_t;

static uint64_t rng_state = 0x243F6A8885A308D3ull;

static uint64_t rng(void)
{
    /* xorshift64*: fast and good enough for a workload generator */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* cdf[i] = P(rank <= i) for Zipf(s) over n ranks. */
static double *zipf_cdf(size_t n, double s)
{
    double *cdf = malloc(n * sizeof(*cdf)), sum = 0;
    if (!cdf)
        return NULL;
    for (size_t i = 0; i < n; i++)
        cdf[i] = sum += 1.0 / pow((double)(i + 1), s);
    for (size_t i = 0; i < n; i++)
        cdf[i] /= sum;
    return cdf;
}

static size_t zipf_draw(const double *cdf, size_t n)
{
    double u = (double)(rng() >> 11) / 9007199254740992.0;
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Roughly what PEBS load-latency reports for loads past L1 on a two-socket
 * box: mostly caches, some local and remote DRAM. */
static uint8_t draw_source(void)
{
    unsigned r = (unsigned)(rng() % 100);
    return r < 40 ? NT_MEM_SRC_CACHE : r < 70 ? NT_MEM_SRC_LOCAL_DRAM : r < 90 ? NT_MEM_SRC_REMOTE_DRAM
                                                                     : NT_MEM_SRC_UNKNOWN;
}

static sample_t *make_samples(void)
{
    _cleanup_free_ double *cdf = zipf_cdf(NR_PAGES, ZIPF_S);
    _cleanup_free_ uint32_t *perm = malloc(NR_PAGES * sizeof(*perm));
    sample_t *s = malloc(NR_SAMPLES * sizeof(*s));
    if (!cdf || !perm || !s) {
        free(s);
        return NULL;
    }
    for (uint32_t i = 0; i < NR_PAGES; i++)
        perm[i] = i;
    for (uint32_t i = NR_PAGES - 1; i > 0; i--) {      /* scatter ranks over pages */
        uint32_t j = (uint32_t)(rng() % (i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < NR_SAMPLES; i++) {
        uint32_t page = perm[zipf_draw(cdf, NR_PAGES)];
        uint32_t proc = page / PAGES_PER_PROC;
        int cpu = (int)(rng() % 4);
        s[i] = (sample_t){
            .proc_id = proc + 1,
            .cpu_node = cpu / 2,
            .acc = {
                .pid = (pid_t)(1000 + proc),
                .tid = (pid_t)(1000 + proc),
                .vaddr = 0x7f0000000000ull + (uint64_t)(page % PAGES_PER_PROC) * 4096,
                .nr_pages = 1,
                .weight = 1,
                .cpu = cpu,
                .source = draw_source(),
            },
        };
    }
    return s;
}

static uint64_t one_pass(struct nt_aggregate *a, const sample_t *s, uint64_t now_usec, bool batched)
{
    for (size_t i = 0; i < NR_SAMPLES; i += PER_TICK) {
        now_usec += 1000;
        if (batched) {
            for (size_t j = i; j < i + PER_TICK; j += BATCH)
                nt_aggregate_add_batch(a, &s[j], BATCH, now_usec);
        } else {
            for (size_t j = i; j < i + PER_TICK; j++)
                nt_aggregate_add(a, s[j].proc_id, &s[j].acc, s[j].cpu_node, now_usec);
        }
    }
    return now_usec;
}

/* Samples per second over at least MIN_SECONDS of passes. */
static double rate(struct nt_aggregate *a, const sample_t *s, uint64_t *now, bool batched)
{
    uint64_t samples = 0;
    double t0 = now_sec(), t1;
    do {
        *now = one_pass(a, s, *now, batched);
        samples += NR_SAMPLES;
        t1 = now_sec();
    } while (t1 - t0 < MIN_SECONDS);
    return (double)samples / (t1 - t0);
}

/* The same samples into a table a quarter the size of the working set:
 * every miss evicts. */
static int evicting_rate(const sample_t *s)
{
    struct nt_aggregate *a = NULL;
    struct nt_aggregate_config cfg = { .half_life_usec = 30000000, .max_pages = 1u << 17, .nr_nodes = 2 };
    if (nt_aggregate_new(&cfg, &a) < 0)
        return -1;
    uint64_t now = one_pass(a, s, 1000000, true);
    struct nt_aggregate_stats before, after;
    nt_aggregate_get_stats(a, &before);
    double r = rate(a, s, &now, true);
    nt_aggregate_get_stats(a, &after);
    printf("| aggregate ingest, evicting | %.1f | M samples/s | same, cap 128K: %.1f%% of samples evict |\n",
           r / 1e6, 100.0 * (double)(after.evictions - before.evictions) /
                        (double)(after.observations - before.observations));
    nt_aggregate_free(a);
    return 0;
}

static uint64_t thread_nodes(uint32_t proc_id, void *ud)
{
    (void)ud;
    return UINT64_C(1) << (proc_id % 2);
}

int main(void)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    (void)sched_setaffinity(0, sizeof(one), &one);

    _cleanup_free_ sample_t *s = make_samples();
    struct nt_aggregate *a = NULL;
    struct nt_aggregate_config cfg = { .half_life_usec = 30000000, .max_pages = 1u << 20, .nr_nodes = 2 };
    if (!s || nt_aggregate_new(&cfg, &a) < 0) {
        fprintf(stderr, "bench-aggregate: out of memory\n");
        return 1;
    }

    uint64_t now = one_pass(a, s, 1000000, true);    /* warm-up: fill the table */
    double batched = rate(a, s, &now, true), single = rate(a, s, &now, false);
    printf("| aggregate ingest | %.1f | M samples/s | 1 core, %u procs, Zipf pages, cap 1M; "
           "nt_aggregate_add_batch, %u per call |\n", batched / 1e6, NR_PROCS, BATCH);
    printf("| aggregate ingest, one at a time | %.1f | M samples/s | same, nt_aggregate_add per sample |\n",
           single / 1e6);

    struct nt_aggregate_stats st;
    nt_aggregate_get_stats(a, &st);
    if (evicting_rate(s) < 0)
        return 1;
    struct nt_heat_snapshot *snap = NULL;
    double s0 = now_sec();
    int r = nt_aggregate_snapshot(a, now, 64, thread_nodes, NULL, &snap);
    double s1 = now_sec();
    if (r == 0)
        printf("| aggregate snapshot | %.1f | ms | %zu pages, %u procs, top 64 each |\n", (s1 - s0) * 1e3,
               st.tracked_pages, NR_PROCS);
    nt_heat_snapshot_free(snap);
    nt_aggregate_free(a);
    return r == 0 ? 0 : 1;
}
