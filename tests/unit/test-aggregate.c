/* The aggregate: ingest, decay, eviction, forgetting, local/remote
 * accounting, DAMON regions, node refresh, snapshots; and the move_pages
 * node query against this very process. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "numatier/aggregate.h"
#include "numatier/heat.h"
#include "numatier/util.h"

#define HL    UINT64_C(10000000)      /* 10 s */
#define T0    UINT64_C(5000000000)    /* an arbitrary monotonic time */
#define BASE  UINT64_C(0x7f0000000000)
#define EPS   1e-4

static size_t page_size;

static uint64_t va(unsigned page)
{
    return BASE + (uint64_t)page * page_size;
}

static void snapshot_freep(struct nt_heat_snapshot **s)
{
    nt_heat_snapshot_free(*s);
}

static void aggregate_freep(struct nt_aggregate **a)
{
    nt_aggregate_free(*a);
}

#define _cleanup_snap_ _cleanup_(snapshot_freep)
#define _cleanup_agg_  _cleanup_(aggregate_freep)

static struct nt_aggregate *make(size_t max_pages, unsigned nr_nodes)
{
    struct nt_aggregate_config cfg = { .half_life_usec = HL, .max_pages = max_pages, .nr_nodes = nr_nodes };
    struct nt_aggregate *a = NULL;
    assert_int_equal(nt_aggregate_new(&cfg, &a), 0);
    assert_non_null(a);
    return a;
}

static struct nt_access sample(unsigned page, uint32_t weight, uint8_t source)
{
    return (struct nt_access){ .pid = 100, .vaddr = va(page), .nr_pages = 1, .weight = weight, .cpu = -1,
                               .source = source };
}

static void add(struct nt_aggregate *a, uint32_t id, unsigned page, uint32_t weight, int cpu_node,
                uint8_t source, uint64_t now)
{
    struct nt_access acc = sample(page, weight, source);
    nt_aggregate_add(a, id, &acc, cpu_node, now);
}

static struct nt_heat_snapshot *snap(struct nt_aggregate *a, uint64_t now, size_t top,
                                     uint64_t (*tn)(uint32_t, void *), void *ud)
{
    struct nt_heat_snapshot *s = NULL;
    assert_int_equal(nt_aggregate_snapshot(a, now, top, tn, ud, &s), 0);
    assert_non_null(s);
    return s;
}

static const struct nt_proc_heat *find_proc(const struct nt_heat_snapshot *s, uint32_t id)
{
    for (size_t i = 0; i < s->nr_procs; i++)
        if (s->procs[i].proc_id == id)
            return &s->procs[i];
    return NULL;
}

static const struct nt_proc_heat *proc_of(const struct nt_heat_snapshot *s, uint32_t id)
{
    const struct nt_proc_heat *p = find_proc(s, id);
    if (p)
        return p;
    fail_msg("no process %u in the snapshot", id);
    static const struct nt_proc_heat none;
    return &none;                         /* not reached: fail_msg jumps out */
}

/* Heat of one page in a snapshot taken with enough top_pages; -1 if absent. */
static double page_heat(const struct nt_heat_snapshot *s, uint32_t id, unsigned page)
{
    const struct nt_proc_heat *p = find_proc(s, id);
    for (size_t i = 0; p && i < p->nr_pages; i++)
        if (p->pages[i].vaddr == va(page))
            return p->pages[i].heat;
    return -1;
}

static void assert_near(double got, double want)
{
    if (fabs(got - want) > EPS * (fabs(want) > 1 ? fabs(want) : 1))
        fail_msg("got %.9g, want %.9g", got, want);
}

/* ---- ingest and decay ------------------------------------------------------- */

static void test_ingest(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(1024, 2);
    add(a, 1, 0, 1, -1, NT_MEM_SRC_UNKNOWN, T0);
    add(a, 1, 0, 2, -1, NT_MEM_SRC_UNKNOWN, T0);
    add(a, 1, 1, 5, -1, NT_MEM_SRC_UNKNOWN, T0);
    add(a, 2, 0, 1, -1, NT_MEM_SRC_UNKNOWN, T0);          /* same address, another process */
    add(a, 0, 0, 9, -1, NT_MEM_SRC_UNKNOWN, T0);          /* id 0 is "none": ignored */
    add(a, 1, 7, 0, -1, NT_MEM_SRC_UNKNOWN, T0);          /* weight 0 adds nothing */

    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0, 16, NULL, NULL);
    assert_int_equal(s->tracked_pages, 3);
    assert_int_equal(s->nr_procs, 2);
    assert_int_equal(s->nr_nodes, 2);
    assert_int_equal(s->now_usec, T0);
    assert_near(page_heat(s, 1, 0), 3);
    assert_near(page_heat(s, 1, 1), 5);
    assert_near(page_heat(s, 2, 0), 1);
    assert_true(page_heat(s, 1, 7) < 0);
    assert_int_equal(proc_of(s, 1)->unknown_node_pages, 2);   /* hot, node not known yet */

    struct nt_aggregate_stats st;
    nt_aggregate_get_stats(a, &st);
    assert_int_equal(st.tracked_pages, 3);
    assert_int_equal(st.observations, 4);
    assert_int_equal(st.page_updates, 4);
    assert_int_equal(st.procs, 2);
    assert_int_equal(st.max_pages, 1024);
    assert_int_equal(st.evictions, 0);
}

static void test_decay(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(1024, 1);
    add(a, 1, 0, 8, -1, NT_MEM_SRC_UNKNOWN, T0);
    for (unsigned k = 0; k <= 3; k++) {
        _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0 + k * HL, 4, NULL, NULL);
        assert_near(page_heat(s, 1, 0), 8.0 / (1u << k));
    }
    add(a, 1, 0, 8, -1, NT_MEM_SRC_UNKNOWN, T0 + HL);     /* 4 left + 8 */
    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0 + HL, 4, NULL, NULL);
    assert_near(page_heat(s, 1, 0), 12);
    _cleanup_snap_ struct nt_heat_snapshot *s2 = snap(a, T0 + HL + HL / 2, 4, NULL, NULL);
    assert_near(page_heat(s2, 1, 0), 12 * M_SQRT1_2);
    /* a snapshot of an earlier time reads as of the latest observation */
    _cleanup_snap_ struct nt_heat_snapshot *s3 = snap(a, T0, 4, NULL, NULL);
    assert_near(page_heat(s3, 1, 0), 12);
}

/* Many half-lives of steady input: the clock rebases and heat converges
 * to w / (1 - 2^(-dt/HL)). */
static void test_long_run(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(1024, 1);
    uint64_t dt = HL / 10, t = T0;
    for (unsigned i = 0; i < 100 * 10; i++, t += dt)
        add(a, 1, 0, 1, -1, NT_MEM_SRC_UNKNOWN, t);
    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, t - dt, 4, NULL, NULL);
    assert_near(page_heat(s, 1, 0), 1.0 / (1.0 - exp2(-0.1)));
}

/* ---- eviction ------------------------------------------------------------------ */

/* With a cap no larger than the eviction sample, the coldest goes exactly. */
static void test_evict_coldest_exact(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(8, 1);
    for (unsigned i = 0; i < 8; i++)
        add(a, 1, i, i + 1, -1, NT_MEM_SRC_UNKNOWN, T0);
    add(a, 1, 100, 50, -1, NT_MEM_SRC_UNKNOWN, T0);
    add(a, 1, 101, 50, -1, NT_MEM_SRC_UNKNOWN, T0);
    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0, 64, NULL, NULL);
    assert_int_equal(s->tracked_pages, 8);
    assert_int_equal(s->evictions, 2);
    assert_true(page_heat(s, 1, 0) < 0);                  /* weights 1 and 2 went */
    assert_true(page_heat(s, 1, 1) < 0);
    for (unsigned i = 2; i < 8; i++)
        assert_near(page_heat(s, 1, i), i + 1);
    assert_near(page_heat(s, 1, 100), 50);
    assert_int_equal(proc_of(s, 1)->nr_pages, 8);
}

/* Decayed heat decides: an old heavy page loses to a fresh light one. */
static void test_evict_by_decayed_heat(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(2, 1);
    add(a, 1, 0, 10, -1, NT_MEM_SRC_UNKNOWN, T0);         /* 10 / 32 = 0.31 five half-lives on */
    add(a, 1, 1, 2, -1, NT_MEM_SRC_UNKNOWN, T0 + 5 * HL);
    add(a, 1, 2, 1, -1, NT_MEM_SRC_UNKNOWN, T0 + 5 * HL);
    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0 + 5 * HL, 8, NULL, NULL);
    assert_true(page_heat(s, 1, 0) < 0);
    assert_near(page_heat(s, 1, 1), 2);
    assert_near(page_heat(s, 1, 2), 1);
}

/* A big table under a stream of cold pages keeps its hot ones. */
static void test_evict_keeps_hot(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(1024, 1);
    for (unsigned i = 0; i < 256; i++)
        add(a, 1, i, 1000, -1, NT_MEM_SRC_UNKNOWN, T0);
    for (unsigned i = 0; i < 100000; i++)
        add(a, 2, i, 1, -1, NT_MEM_SRC_UNKNOWN, T0 + i);
    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0 + 100000, 1024, NULL, NULL);
    assert_int_equal(s->tracked_pages, 1024);
    assert_true(s->evictions >= 100000 + 256 - 1024);
    assert_int_equal(proc_of(s, 1)->nr_pages, 256);       /* every hot page survived */
    struct nt_aggregate_stats st;
    nt_aggregate_get_stats(a, &st);
    assert_true(st.slots >= 1024 && st.slots <= 2048);
}

/* ---- forget -------------------------------------------------------------------- */

static void test_forget(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(4096, 1);
    for (unsigned i = 0; i < 1000; i++) {
        add(a, 1, i, 1, -1, NT_MEM_SRC_UNKNOWN, T0);
        add(a, 2, i, 2, -1, NT_MEM_SRC_UNKNOWN, T0);
        add(a, 3, i, 3, -1, NT_MEM_SRC_UNKNOWN, T0);
    }
    nt_aggregate_forget(a, 2);
    nt_aggregate_forget(a, 2);                            /* twice: no-op */
    nt_aggregate_forget(a, 99);                           /* unknown: no-op */
    nt_aggregate_forget(NULL, 1);
    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0, 2000, NULL, NULL);
    assert_int_equal(s->tracked_pages, 2000);
    assert_int_equal(s->nr_procs, 2);
    assert_null(find_proc(s, 2));
    assert_int_equal(proc_of(s, 1)->nr_pages, 1000);
    assert_int_equal(proc_of(s, 3)->nr_pages, 1000);
    for (unsigned i = 0; i < 1000; i += 37) {             /* the others are intact after shifting */
        assert_near(page_heat(s, 1, i), 1);
        assert_near(page_heat(s, 3, i), 3);
    }
    /* the id comes back fresh (ids are never reused in practice, but the table must not care) */
    add(a, 2, 5, 7, -1, NT_MEM_SRC_UNKNOWN, T0);
    _cleanup_snap_ struct nt_heat_snapshot *s2 = snap(a, T0, 10, NULL, NULL);
    assert_int_equal(proc_of(s2, 2)->nr_pages, 1);
    assert_near(page_heat(s2, 2, 5), 7);
}

/* Random adds, evictions and forgets; then every entry must still be
 * reachable by probing (set_page_node finds it), counted once, and the
 * forgotten processes gone. Catches broken backward-shift deletion. */
static void test_table_integrity(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(300, 2);
    bool gone[9] = { false };
    uint64_t x = 99;
    for (unsigned i = 0; i < 20000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t id = 1 + (uint32_t)(x >> 61);            /* 1..8 */
        if ((x >> 20) % 500 == 0) {
            nt_aggregate_forget(a, id);
            gone[id] = true;
            continue;
        }
        add(a, id, (unsigned)(x >> 33) % 700, 1 + (unsigned)(x >> 50) % 8, -1, NT_MEM_SRC_UNKNOWN, T0 + i);
        gone[id] = false;
    }
    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0 + 20000, 100000, NULL, NULL);
    size_t total = 0;
    for (size_t i = 0; i < s->nr_procs; i++) {
        const struct nt_proc_heat *p = &s->procs[i];
        assert_false(gone[p->proc_id]);
        total += p->nr_pages;
        for (size_t j = 0; j < p->nr_pages; j++) {
            for (size_t k = j + 1; k < p->nr_pages; k++)
                assert_true(p->pages[j].vaddr != p->pages[k].vaddr);
            nt_aggregate_set_page_node(a, p->proc_id, p->pages[j].vaddr, 1, T0 + 20000);
        }
    }
    assert_int_equal(total, s->tracked_pages);
    assert_true(total <= 300);
    _cleanup_snap_ struct nt_heat_snapshot *s2 = snap(a, T0 + 20000, 100000, NULL, NULL);
    for (size_t i = 0; i < s2->nr_procs; i++)
        for (size_t j = 0; j < s2->procs[i].nr_pages; j++)
            assert_int_equal(s2->procs[i].pages[j].node, 1);
}

/* ---- local / remote ------------------------------------------------------------ */

static void test_lma_rma_with_cpu(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(1024, 2);
    add(a, 1, 0, 4, 0, NT_MEM_SRC_LOCAL_DRAM, T0);        /* local; page 0 is on node 0 */
    add(a, 1, 1, 2, 0, NT_MEM_SRC_REMOTE_DRAM, T0);       /* remote, node unknown */
    add(a, 1, 2, 1, 1, NT_MEM_SRC_SLOW_MEM, T0);          /* remote */
    add(a, 1, 3, 8, 0, NT_MEM_SRC_CACHE, T0);             /* no memory access */
    add(a, 1, 4, 8, 1, NT_MEM_SRC_REMOTE_CACHE, T0);
    add(a, 1, 5, 16, 0, NT_MEM_SRC_UNKNOWN, T0);          /* node unknown: unclassified */
    add(a, 1, 0, 3, 1, NT_MEM_SRC_UNKNOWN, T0);           /* page 0 on node 0, CPU on 1: remote */
    add(a, 1, 0, 5, 0, NT_MEM_SRC_UNKNOWN, T0);           /* local */
    nt_aggregate_set_page_node(a, 1, va(5), 1, T0);
    add(a, 1, 5, 32, 1, NT_MEM_SRC_UNKNOWN, T0);          /* now known: local on node 1 */

    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0, 16, NULL, NULL);
    const struct nt_proc_heat *p = proc_of(s, 1);
    assert_near(p->lma, 4 + 5 + 32);
    assert_near(p->rma, 2 + 1 + 3);
    assert_near(p->node_accesses[0], 4 + 3 + 5);
    assert_near(p->node_accesses[1], 32);
    assert_near(page_heat(s, 1, 3), 8);                   /* cache hits still heat the page */
    assert_near(page_heat(s, 1, 0), 12);
    assert_int_equal(p->hot_pages[0], 1);                 /* page 0 */
    assert_int_equal(p->hot_pages[1], 1);                 /* page 5 */
    assert_int_equal(p->unknown_node_pages, 4);           /* 1..4 */

    /* decay applies to the totals too */
    _cleanup_snap_ struct nt_heat_snapshot *later = snap(a, T0 + HL, 16, NULL, NULL);
    assert_near(proc_of(later, 1)->lma, (4 + 5 + 32) / 2.0);
    assert_near(proc_of(later, 1)->node_accesses[1], 16);
}

/* A remote-DRAM sample on a page we think is local means it moved. */
static void test_remote_source_marks_node_stale(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(1024, 2);
    add(a, 1, 0, 1, 0, NT_MEM_SRC_LOCAL_DRAM, T0);        /* node 0, learned now */
    add(a, 1, 0, 1, 0, NT_MEM_SRC_REMOTE_DRAM, T0);       /* contradiction */
    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0, 4, NULL, NULL);
    assert_near(proc_of(s, 1)->node_accesses[0], 1);      /* only the local one */
    assert_near(proc_of(s, 1)->rma, 1);
}

static uint64_t threads_on_node1(uint32_t id, void *ud)
{
    (void)ud;
    return id == 1 ? UINT64_C(1) << 1 : UINT64_C(1) << 0;
}

static void test_lma_rma_with_thread_nodes(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(1024, 2);
    /* DAMON-like: no CPU. Pages 0 on node 0, 1 on node 1, 2 unknown. */
    add(a, 1, 0, 1, -1, NT_MEM_SRC_UNKNOWN, T0);
    add(a, 1, 1, 1, -1, NT_MEM_SRC_UNKNOWN, T0);
    add(a, 1, 2, 1, -1, NT_MEM_SRC_UNKNOWN, T0);
    nt_aggregate_set_page_node(a, 1, va(0), 0, T0);
    nt_aggregate_set_page_node(a, 1, va(1), 1, T0);
    add(a, 1, 0, 10, -1, NT_MEM_SRC_UNKNOWN, T0);
    add(a, 1, 1, 20, -1, NT_MEM_SRC_UNKNOWN, T0);
    add(a, 1, 2, 40, -1, NT_MEM_SRC_UNKNOWN, T0);
    add(a, 2, 0, 5, -1, NT_MEM_SRC_UNKNOWN, T0);
    nt_aggregate_set_page_node(a, 2, va(0), 1, T0);
    add(a, 2, 0, 5, -1, NT_MEM_SRC_UNKNOWN, T0);

    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0, 8, threads_on_node1, NULL);
    assert_near(proc_of(s, 1)->lma, 20);                  /* node 1, where its threads are */
    assert_near(proc_of(s, 1)->rma, 10);
    assert_near(proc_of(s, 1)->node_accesses[0], 10);
    assert_near(proc_of(s, 1)->node_accesses[1], 20);
    assert_near(proc_of(s, 2)->lma, 0);                   /* threads on 0, memory on 1 */
    assert_near(proc_of(s, 2)->rma, 5);
    assert_int_equal(proc_of(s, 1)->hot_pages[0], 1);
    assert_int_equal(proc_of(s, 1)->hot_pages[1], 1);
    assert_int_equal(proc_of(s, 1)->unknown_node_pages, 1);

    /* without thread_nodes, CPU-less accesses are neither local nor remote */
    _cleanup_snap_ struct nt_heat_snapshot *n = snap(a, T0, 8, NULL, NULL);
    assert_near(proc_of(n, 1)->lma + proc_of(n, 1)->rma, 0);
    assert_near(proc_of(n, 1)->node_accesses[1], 20);
}

static void test_nodes_out_of_range(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(1024, 2);
    add(a, 1, 0, 1, 7, NT_MEM_SRC_LOCAL_DRAM, T0);        /* CPU node beyond nr_nodes: unknown */
    nt_aggregate_set_page_node(a, 1, va(0), 9, T0);
    nt_aggregate_set_page_node(a, 1, va(77), 1, T0);      /* not in the table: no-op */
    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0, 8, NULL, NULL);
    assert_near(proc_of(s, 1)->lma, 1);
    assert_near(proc_of(s, 1)->node_accesses[0] + proc_of(s, 1)->node_accesses[1], 0);
    assert_int_equal(proc_of(s, 1)->pages[0].node, -1);
    assert_int_equal(s->tracked_pages, 1);
}

/* ---- DAMON regions --------------------------------------------------------------- */

static double total_heat(const struct nt_proc_heat *p)
{
    double sum = 0;
    for (size_t i = 0; i < p->nr_pages; i++)
        sum += p->pages[i].heat;
    return sum;
}

static void test_region_spread(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(1 << 16, 1);
    struct nt_access r = { .pid = 100, .vaddr = va(0), .nr_pages = 10, .weight = 3, .cpu = -1 };
    nt_aggregate_add(a, 1, &r, -1, T0);
    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0, 100, NULL, NULL);
    assert_int_equal(proc_of(s, 1)->nr_pages, 10);
    for (unsigned i = 0; i < 10; i++)
        assert_near(page_heat(s, 1, i), 3);

    /* A cold region adds nothing, however big. */
    struct nt_access cold = { .pid = 100, .vaddr = va(1000), .nr_pages = 100000, .weight = 0, .cpu = -1 };
    nt_aggregate_add(a, 1, &cold, -1, T0);
    struct nt_aggregate_stats st;
    nt_aggregate_get_stats(a, &st);
    assert_int_equal(st.tracked_pages, 10);
}

static void test_region_capped(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(1 << 16, 2);
    struct nt_access r = { .pid = 100, .vaddr = va(0), .nr_pages = 1000, .weight = 2, .cpu = -1 };
    nt_aggregate_add(a, 1, &r, -1, T0);
    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0, 4096, NULL, NULL);
    const struct nt_proc_heat *p = proc_of(s, 1);
    assert_true(p->nr_pages <= NT_AGGREGATE_REGION_PAGES);
    assert_near(total_heat(p), 2000);                     /* the region's total is exact */

    /* the picked pages rotate: a few more rounds cover the whole region */
    for (unsigned i = 0; i < 3; i++)
        nt_aggregate_add(a, 1, &r, -1, T0);
    _cleanup_snap_ struct nt_heat_snapshot *s2 = snap(a, T0, 4096, NULL, NULL);
    assert_int_equal(proc_of(s2, 1)->nr_pages, 1000);
    assert_near(total_heat(proc_of(s2, 1)), 8000);

    /* a configured cap */
    struct nt_aggregate_config cfg = { .half_life_usec = HL, .max_pages = 1 << 16, .nr_nodes = 2,
                                       .max_region_pages = 16 };
    assert_int_equal(nt_aggregate_reconfigure(a, &cfg), 0);
    struct nt_access big = { .pid = 100, .vaddr = va(5000), .nr_pages = 1000, .weight = 1, .cpu = -1 };
    nt_aggregate_add(a, 2, &big, -1, T0);
    _cleanup_snap_ struct nt_heat_snapshot *s3 = snap(a, T0, 4096, NULL, NULL);
    assert_true(proc_of(s3, 2)->nr_pages <= 16);
    assert_near(total_heat(proc_of(s3, 2)), 1000);
}

/* ---- node refresh ------------------------------------------------------------------ */

struct call {
    pid_t pid;
    size_t n;
    uint64_t first, last;
};

struct fake {
    struct call calls[16];
    size_t nr_calls;
    int fail_with;              /* the whole call fails with this if set */
};

/* Odd pages on node 1, even on node 0; page 3 is not present. */
static int fake_nodes(pid_t pid, size_t n, const uint64_t *vaddrs, int *nodes, void *ud)
{
    struct fake *f = ud;
    assert_true(f->nr_calls < NT_ARRAY_SIZE(f->calls));
    f->calls[f->nr_calls++] = (struct call){ pid, n, vaddrs[0], vaddrs[n - 1] };
    if (f->fail_with)
        return f->fail_with;
    for (size_t i = 0; i < n; i++) {
        assert_true(i == 0 || vaddrs[i] > vaddrs[i - 1]);     /* sorted by address */
        unsigned page = (unsigned)((vaddrs[i] - BASE) / page_size);
        nodes[i] = page == 3 ? -ENOENT : (int)(page % 2);
    }
    return 0;
}

static pid_t pid_of(uint32_t id, void *ud)
{
    (void)ud;
    return id == 3 ? 0 : (pid_t)(1000 + id);             /* instance 3 has exited */
}

static void test_refresh_nodes(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(1024, 2);
    for (unsigned i = 0; i < 10; i++) {
        add(a, 1, i, 100 + i, -1, NT_MEM_SRC_UNKNOWN, T0);
        add(a, 2, i, 1, -1, NT_MEM_SRC_UNKNOWN, T0);     /* colder */
        add(a, 3, i, 1000, -1, NT_MEM_SRC_UNKNOWN, T0);  /* hottest, but gone */
    }
    struct fake f = { 0 };
    /* 15 hottest: 10 of instance 3 (skipped, no call) and 5 of instance 1 */
    int r = nt_aggregate_refresh_nodes(a, T0, 15, pid_of, NULL, fake_nodes, &f);
    assert_int_equal(r, 5);
    assert_int_equal(f.nr_calls, 1);
    assert_int_equal(f.calls[0].pid, 1001);
    assert_int_equal(f.calls[0].n, 5);
    assert_int_equal(f.calls[0].first, va(5));            /* its 5 hottest: pages 5..9 */
    assert_int_equal(f.calls[0].last, va(9));

    /* next round: the rest, batched per process, hottest first */
    f.nr_calls = 0;
    r = nt_aggregate_refresh_nodes(a, T0, 100, pid_of, NULL, fake_nodes, &f);
    assert_int_equal(r, 15);
    assert_int_equal(f.nr_calls, 2);
    assert_int_equal(f.calls[0].pid, 1001);
    assert_int_equal(f.calls[0].n, 5);
    assert_int_equal(f.calls[1].pid, 1002);
    assert_int_equal(f.calls[1].n, 10);

    /* everything is fresh now, errors included */
    f.nr_calls = 0;
    assert_int_equal(nt_aggregate_refresh_nodes(a, T0 + HL / 2, 100, pid_of, NULL, fake_nodes, &f), 0);
    assert_int_equal(f.nr_calls, 0);

    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0, 16, NULL, NULL);
    const struct nt_proc_heat *p1 = proc_of(s, 1);
    for (size_t i = 0; i < p1->nr_pages; i++) {
        unsigned page = (unsigned)((p1->pages[i].vaddr - BASE) / page_size);
        assert_int_equal(p1->pages[i].node, page == 3 ? -1 : (int)(page % 2));
    }
    assert_int_equal(p1->hot_pages[0], 5);                /* 0 2 4 6 8 */
    assert_int_equal(p1->hot_pages[1], 4);                /* 1 5 7 9 */
    assert_int_equal(p1->unknown_node_pages, 1);          /* 3 */
    /* heat by the node each page is on now; page 3's node is unknown */
    assert_true(fabs(p1->heat_on[0] - (100 + 102 + 104 + 106 + 108)) < 1e-6);
    assert_true(fabs(p1->heat_on[1] - (101 + 105 + 107 + 109)) < 1e-6);
    struct nt_aggregate_stats st;
    nt_aggregate_get_stats(a, &st);
    assert_int_equal(st.node_lookups, 20);
    assert_int_equal(st.node_lookup_errors, 2);           /* page 3 of instances 1 and 2 */

    /* stale after a half-life: asked again; a failing call is skipped */
    f = (struct fake){ .fail_with = -ESRCH };
    r = nt_aggregate_refresh_nodes(a, T0 + 2 * HL, 100, pid_of, NULL, fake_nodes, &f);
    assert_int_equal(r, 0);
    assert_int_equal(f.nr_calls, 2);
    assert_int_equal(nt_aggregate_refresh_nodes(a, T0 + 2 * HL, 100, pid_of, NULL, fake_nodes, &f), 0);
    assert_int_equal(f.nr_calls, 2);                      /* not retried at once */
    assert_int_equal(nt_aggregate_refresh_nodes(a, T0, 0, pid_of, NULL, fake_nodes, &f), 0);
}

/* After a move every node of the process is unknown and asked anew; other
 * processes keep theirs (unless all are invalidated). */
static void test_invalidate_nodes(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(1024, 2);
    for (unsigned i = 0; i < 10; i++) {
        add(a, 1, i, 100, -1, NT_MEM_SRC_UNKNOWN, T0);
        add(a, 2, i, 100, -1, NT_MEM_SRC_UNKNOWN, T0);
    }
    struct fake f = { 0 };
    assert_int_equal(nt_aggregate_refresh_nodes(a, T0, 100, pid_of, NULL, fake_nodes, &f), 20);
    nt_aggregate_invalidate_nodes(a, 1);
    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0, 16, NULL, NULL);
    const struct nt_proc_heat *p1 = proc_of(s, 1), *p2 = proc_of(s, 2);
    assert_int_equal(p1->unknown_node_pages, 10);
    assert_true(p1->heat_on[0] == 0 && p1->heat_on[1] == 0);
    assert_int_equal(p2->unknown_node_pages, 1);          /* page 3: the fake's error */
    assert_true(p2->heat_on[0] > 0 && p2->heat_on[1] > 0);
    f = (struct fake){ 0 };
    assert_int_equal(nt_aggregate_refresh_nodes(a, T0, 100, pid_of, NULL, fake_nodes, &f), 10);
    assert_int_equal(f.nr_calls, 1);
    assert_int_equal(f.calls[0].pid, 1001);
    nt_aggregate_invalidate_nodes(a, 99);                 /* unknown: nothing happens */
    nt_aggregate_invalidate_nodes(NULL, 1);

    /* an offline job moved anyone's pages: every node is asked anew */
    nt_aggregate_invalidate_all_nodes(a);
    nt_aggregate_invalidate_all_nodes(NULL);
    _cleanup_snap_ struct nt_heat_snapshot *s2 = snap(a, T0, 16, NULL, NULL);
    assert_int_equal(proc_of(s2, 1)->unknown_node_pages, 10);
    assert_int_equal(proc_of(s2, 2)->unknown_node_pages, 10);
    f = (struct fake){ 0 };
    assert_int_equal(nt_aggregate_refresh_nodes(a, T0, 100, pid_of, NULL, fake_nodes, &f), 20);
    assert_int_equal(f.nr_calls, 2);
}

/* move_pages moved some pages: only theirs are unknown and asked anew. */
static void test_invalidate_pages(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(1024, 2);
    nt_aggregate_invalidate_pages(a, 1, (uint64_t[]){ va(0) }, 1);   /* empty table */
    for (unsigned i = 0; i < 10; i++) {
        add(a, 1, i, 100, -1, NT_MEM_SRC_UNKNOWN, T0);
        add(a, 2, i, 100, -1, NT_MEM_SRC_UNKNOWN, T0);
    }
    struct fake f = { 0 };
    assert_int_equal(nt_aggregate_refresh_nodes(a, T0, 100, pid_of, NULL, fake_nodes, &f), 20);
    /* pages 4 and 5 of instance 1 moved; 42 was never sampled; page 4 of
     * instance 2 is another process's */
    nt_aggregate_invalidate_pages(a, 1, (uint64_t[]){ va(4), va(5), va(42) }, 3);
    nt_aggregate_invalidate_pages(NULL, 1, (uint64_t[]){ va(4) }, 1);
    nt_aggregate_invalidate_pages(a, 0, (uint64_t[]){ va(4) }, 1);
    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0, 16, NULL, NULL);
    const struct nt_proc_heat *p1 = proc_of(s, 1), *p2 = proc_of(s, 2);
    assert_int_equal(p1->unknown_node_pages, 3);          /* 4, 5 and the fake's error on 3 */
    assert_int_equal(p1->hot_pages[0], 4);                /* 0 2 6 8 */
    assert_int_equal(p1->hot_pages[1], 3);                /* 1 7 9 */
    assert_int_equal(p2->unknown_node_pages, 1);
    f = (struct fake){ 0 };
    assert_int_equal(nt_aggregate_refresh_nodes(a, T0, 100, pid_of, NULL, fake_nodes, &f), 2);
    assert_int_equal(f.nr_calls, 1);
    assert_int_equal(f.calls[0].pid, 1001);
    assert_int_equal(f.calls[0].first, va(4));
    assert_int_equal(f.calls[0].last, va(5));
}

/* ---- snapshot ------------------------------------------------------------------------ */

static void test_snapshot_order(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(1024, 1);
    const unsigned weights[] = { 5, 50, 1, 20, 20, 3, 7 };
    for (unsigned i = 0; i < NT_ARRAY_SIZE(weights); i++)
        add(a, 9, i, weights[i], -1, NT_MEM_SRC_UNKNOWN, T0);
    add(a, 4, 0, 1, -1, NT_MEM_SRC_UNKNOWN, T0);
    add(a, 6, 0, 1, -1, NT_MEM_SRC_UNKNOWN, T0);

    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0, 4, NULL, NULL);
    assert_int_equal(s->nr_procs, 3);
    assert_int_equal(s->procs[0].proc_id, 4);             /* by id */
    assert_int_equal(s->procs[1].proc_id, 6);
    assert_int_equal(s->procs[2].proc_id, 9);
    const struct nt_proc_heat *p = &s->procs[2];
    assert_int_equal(p->nr_pages, 4);
    assert_int_equal(p->pages[0].vaddr, va(1));           /* 50 */
    assert_int_equal(p->pages[1].vaddr, va(3));           /* 20, lower address first */
    assert_int_equal(p->pages[2].vaddr, va(4));           /* 20 */
    assert_int_equal(p->pages[3].vaddr, va(6));           /* 7 */
    assert_int_equal(s->procs[0].nr_pages, 1);

    _cleanup_snap_ struct nt_heat_snapshot *none = snap(a, T0, 0, NULL, NULL);
    assert_int_equal(none->procs[2].nr_pages, 0);
    assert_null(none->procs[2].pages);
    nt_heat_snapshot_free(NULL);

    _cleanup_agg_ struct nt_aggregate *empty = make(1024, 1);
    _cleanup_snap_ struct nt_heat_snapshot *e = snap(empty, T0, 8, NULL, NULL);
    assert_int_equal(e->nr_procs, 0);
    assert_int_equal(e->tracked_pages, 0);
}

/* Hot means heat >= 1 at the snapshot's time. */
static void test_hot_threshold(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(1024, 1);
    add(a, 1, 0, 4, -1, NT_MEM_SRC_UNKNOWN, T0);
    add(a, 1, 1, 1, -1, NT_MEM_SRC_UNKNOWN, T0);
    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0, 8, NULL, NULL);
    assert_int_equal(proc_of(s, 1)->unknown_node_pages, 2);
    _cleanup_snap_ struct nt_heat_snapshot *s2 = snap(a, T0 + HL, 8, NULL, NULL);
    assert_int_equal(proc_of(s2, 1)->unknown_node_pages, 1);
    _cleanup_snap_ struct nt_heat_snapshot *s3 = snap(a, T0 + 3 * HL, 8, NULL, NULL);
    assert_int_equal(proc_of(s3, 1)->unknown_node_pages, 0);
    assert_int_equal(proc_of(s3, 1)->nr_pages, 2);        /* still tracked, just cold */
}

/* ---- batch, reconfigure ------------------------------------------------------------------ */

static void test_batch_equals_single(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *one = make(256, 2), *many = make(256, 2);
    struct nt_aggregate_obs obs[1000];
    uint64_t x = 12345;
    for (size_t i = 0; i < NT_ARRAY_SIZE(obs); i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        obs[i] = (struct nt_aggregate_obs){
            .proc_id = (uint32_t)(x >> 60) + 1,
            .cpu_node = (int)(x >> 40) % 2,
            .acc = sample((unsigned)(x >> 33) % 400, 1 + (unsigned)(x >> 50) % 4, (uint8_t)((x >> 20) % 6)),
        };
        nt_aggregate_add(one, obs[i].proc_id, &obs[i].acc, obs[i].cpu_node, T0);
    }
    nt_aggregate_add_batch(many, obs, NT_ARRAY_SIZE(obs), T0);
    nt_aggregate_add_batch(many, obs, 0, T0);
    _cleanup_snap_ struct nt_heat_snapshot *s1 = snap(one, T0, 300, NULL, NULL);
    _cleanup_snap_ struct nt_heat_snapshot *s2 = snap(many, T0, 300, NULL, NULL);
    assert_int_equal(s1->nr_procs, s2->nr_procs);
    assert_int_equal(s1->tracked_pages, s2->tracked_pages);
    assert_int_equal(s1->evictions, s2->evictions);
    for (size_t i = 0; i < s1->nr_procs; i++) {
        assert_int_equal(s1->procs[i].nr_pages, s2->procs[i].nr_pages);
        assert_near(s1->procs[i].lma, s2->procs[i].lma);
        assert_near(s1->procs[i].rma, s2->procs[i].rma);
        for (size_t j = 0; j < s1->procs[i].nr_pages; j++)
            assert_int_equal(s1->procs[i].pages[j].vaddr, s2->procs[i].pages[j].vaddr);
    }
}

static void test_reconfigure(void **state)
{
    (void)state;
    _cleanup_agg_ struct nt_aggregate *a = make(4096, 2);
    for (unsigned i = 0; i < 3000; i++)
        add(a, 1 + i % 3, i, 1 + i, 0, NT_MEM_SRC_LOCAL_DRAM, T0);
    /* shrink the cap: the hottest stay */
    struct nt_aggregate_config cfg = { .half_life_usec = HL, .max_pages = 1000, .nr_nodes = 2 };
    assert_int_equal(nt_aggregate_reconfigure(a, &cfg), 0);
    _cleanup_snap_ struct nt_heat_snapshot *s = snap(a, T0, 4096, NULL, NULL);
    assert_int_equal(s->tracked_pages, 1000);
    size_t kept = 0;
    for (size_t i = 0; i < s->nr_procs; i++) {
        kept += s->procs[i].nr_pages;
        for (size_t j = 0; j < s->procs[i].nr_pages; j++)
            assert_true(s->procs[i].pages[j].heat > 2000);  /* pages 2000..2999 */
    }
    assert_int_equal(kept, 1000);
    struct nt_aggregate_stats st;
    nt_aggregate_get_stats(a, &st);
    assert_int_equal(st.slots, 2048);
    assert_int_equal(st.evictions, 2000);

    /* new half-life: heat now is kept, decay follows the new one */
    cfg.half_life_usec = 2 * HL;
    assert_int_equal(nt_aggregate_reconfigure(a, &cfg), 0);
    _cleanup_snap_ struct nt_heat_snapshot *h = snap(a, T0 + 2 * HL, 4096, NULL, NULL);
    assert_near(page_heat(h, 3, 2999), 3000 / 2.0);

    /* one node fewer: node 1 data dropped, node 0 kept */
    add(a, 1, 2001, 1, 1, NT_MEM_SRC_LOCAL_DRAM, T0 + 2 * HL);
    cfg.nr_nodes = 1;
    assert_int_equal(nt_aggregate_reconfigure(a, &cfg), 0);
    _cleanup_snap_ struct nt_heat_snapshot *n = snap(a, T0 + 2 * HL, 4096, NULL, NULL);
    assert_int_equal(n->nr_nodes, 1);
    assert_true(proc_of(n, 1)->node_accesses[0] > 0);
    assert_int_equal(page_heat(n, 1, 2001) > 0, 1);
    const struct nt_proc_heat *p1 = proc_of(n, 1);
    for (size_t j = 0; j < p1->nr_pages; j++)
        if (p1->pages[j].vaddr == va(2001))
            assert_int_equal(p1->pages[j].node, -1);      /* was node 1 */
    cfg.nr_nodes = 4;
    assert_int_equal(nt_aggregate_reconfigure(a, &cfg), 0);
    add(a, 1, 2001, 1, 3, NT_MEM_SRC_LOCAL_DRAM, T0 + 2 * HL);
    _cleanup_snap_ struct nt_heat_snapshot *m = snap(a, T0 + 2 * HL, 4, NULL, NULL);
    assert_near(proc_of(m, 1)->node_accesses[3], 1);
}

/* ---- move_pages query on ourselves -------------------------------------------------------- */

static void test_page_nodes_query(void **state)
{
    (void)state;
    size_t n = 3000;                                      /* more than one batch of 1024 */
    uint8_t *buf = mmap(NULL, n * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(buf != MAP_FAILED);
    for (size_t i = 0; i < n; i += 2)
        buf[i * page_size] = 1;                           /* even pages present, odd never touched */
    _cleanup_free_ uint64_t *va_ = calloc(n + 1, sizeof(*va_));
    _cleanup_free_ int *nodes = calloc(n + 1, sizeof(*nodes));
    assert_non_null(va_);
    assert_non_null(nodes);
    for (size_t i = 0; i < n; i++)
        va_[i] = (uint64_t)(uintptr_t)(buf + i * page_size);
    va_[n] = 0x1000;                                      /* not mapped */
    int r = nt_page_nodes_query(getpid(), n + 1, va_, nodes, NULL);
    if (r == -ENOSYS || r == -EPERM)
        skip();
    assert_int_equal(r, 0);
    for (size_t i = 0; i < n; i++) {
        if (i % 2 == 0)
            assert_true(nodes[i] >= 0);
        else
            assert_int_equal(nodes[i], -ENOENT);
    }
    assert_int_equal(nodes[n], -EFAULT);
    munmap(buf, n * page_size);
    assert_int_equal(nt_page_nodes_query(getpid(), 0, va_, nodes, NULL), 0);
    /* a pid that is not there (pid_max is at most 2^22) */
    assert_int_equal(nt_page_nodes_query(4194304 + 7, 1, va_, nodes, NULL), -ESRCH);
}

int main(void)
{
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ingest),
        cmocka_unit_test(test_decay),
        cmocka_unit_test(test_long_run),
        cmocka_unit_test(test_evict_coldest_exact),
        cmocka_unit_test(test_evict_by_decayed_heat),
        cmocka_unit_test(test_evict_keeps_hot),
        cmocka_unit_test(test_forget),
        cmocka_unit_test(test_table_integrity),
        cmocka_unit_test(test_lma_rma_with_cpu),
        cmocka_unit_test(test_remote_source_marks_node_stale),
        cmocka_unit_test(test_lma_rma_with_thread_nodes),
        cmocka_unit_test(test_nodes_out_of_range),
        cmocka_unit_test(test_region_spread),
        cmocka_unit_test(test_region_capped),
        cmocka_unit_test(test_refresh_nodes),
        cmocka_unit_test(test_invalidate_nodes),
        cmocka_unit_test(test_invalidate_pages),
        cmocka_unit_test(test_snapshot_order),
        cmocka_unit_test(test_hot_threshold),
        cmocka_unit_test(test_batch_equals_single),
        cmocka_unit_test(test_reconfigure),
        cmocka_unit_test(test_page_nodes_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
