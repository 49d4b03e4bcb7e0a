/* Tiering policy: promotion, demotion, watermarks, streaks, cooldown. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "numatier/tiering.h"

#define SEC UINT64_C(1000000)
#define MAX_MOVES 64

/* Two sockets (0, 1) each with a CPU-less slow node (2 near 0, 3 near 1).
 * Node 2 is nearer node 0 and node 3 nearer node 1. */
enum { N0, N1, N2, N3, NR_NODES };
static const unsigned distance4[NR_NODES * NR_NODES] = {
    10, 21, 20, 30,
    21, 10, 30, 20,
    20, 30, 10, 40,
    30, 20, 40, 10,
};

#define FAST(i) { .id = (i), .slow = false, .nr_cpus = 4, .free_pages = 500, .total_pages = 1000, \
                  .low_watermark_pages = 100, .high_watermark_pages = 200 }
#define SLOW(i) { .id = (i), .slow = true, .nr_cpus = 0, .free_pages = 500, .total_pages = 1000, \
                  .low_watermark_pages = 100, .high_watermark_pages = 200 }

static void default_nodes(struct nt_tier_node nodes[NR_NODES])
{
    const struct nt_tier_node init[NR_NODES] = { FAST(0), FAST(1), SLOW(2), SLOW(3) };
    memcpy(nodes, init, sizeof(init));
}

static const struct nt_tier_params default_params = {
    .hot_threshold = 10,
    .cold_threshold = 1,
    .hot_cycles = 1,
    .cold_cycles = 1,
    .cooldown_usec = 60 * SEC,
    .max_promote = 100,
    .max_demote = 100,
};

#define BIT(n) (UINT64_C(1) << (n))

/* One cycle on the four-node machine; asserts success. */
static size_t plan4(const struct nt_tier_params *p, const struct nt_tier_node *nodes,
                    const struct nt_tier_page *pages, size_t n, uint64_t now,
                    struct nt_tier_move *out, struct nt_tier_summary *sum)
{
    int r = nt_tier_plan(p, nodes, NR_NODES, distance4, pages, n, now, out, MAX_MOVES, sum);
    assert_true(r >= 0);
    return (size_t)r;
}

static void assert_move(const struct nt_tier_move *m, uint64_t vaddr, int from, int to,
                        enum nt_tier_move_kind kind)
{
    if (m->vaddr != vaddr || m->from != from || m->to != to || m->kind != kind)
        fail_msg("move %#llx %d->%d %s, want %#llx %d->%d %s", (unsigned long long)m->vaddr, m->from,
                 m->to, nt_tier_move_kind_to_string(m->kind), (unsigned long long)vaddr, from, to,
                 nt_tier_move_kind_to_string(kind));
}

/* ---- promotion ------------------------------------------------------------- */

static void test_promote_to_fast_node_nearest_threads(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    struct nt_tier_page_state st[2] = { 0 };
    /* Both pages sit on node 2, which is nearer node 0: the threads decide. */
    const struct nt_tier_page pages[] = {
        { .proc_id = 7, .vaddr = 0x1000, .node = 2, .heat = 50, .thread_nodes_mask = BIT(1), .state = &st[0] },
        { .proc_id = 8, .vaddr = 0x2000, .node = 2, .heat = 40, .thread_nodes_mask = BIT(0), .state = &st[1] },
    };
    struct nt_tier_move out[MAX_MOVES];
    struct nt_tier_summary sum;
    assert_int_equal(plan4(&default_params, nodes, pages, 2, 5 * SEC, out, &sum), 2);
    assert_move(&out[0], 0x1000, 2, 1, NT_TIER_PROMOTE);
    assert_int_equal(out[0].proc_id, 7);
    assert_true(out[0].heat == 50);
    assert_move(&out[1], 0x2000, 2, 0, NT_TIER_PROMOTE);
    assert_int_equal(sum.promote.proposed, 2);
    assert_int_equal(sum.demote.proposed, 0);
    assert_int_equal(st[0].last_move, NT_TIER_PROMOTE);
    assert_int_equal(st[0].last_move_usec, 5 * SEC);
    assert_int_equal(st[0].hot_streak, 0);            /* a move starts afresh */
}

/* Threads unknown: the fast node nearest the page. Threads on both fast
 * nodes: a tie, broken the same way. */
static void test_promote_without_thread_preference(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    struct nt_tier_page_state st[2] = { 0 };
    const struct nt_tier_page pages[] = {
        { .vaddr = 0x1000, .node = 3, .heat = 50, .thread_nodes_mask = 0, .state = &st[0] },
        { .vaddr = 0x2000, .node = 2, .heat = 40, .thread_nodes_mask = BIT(0) | BIT(1), .state = &st[1] },
    };
    struct nt_tier_move out[MAX_MOVES];
    assert_int_equal(plan4(&default_params, nodes, pages, 2, 0, out, NULL), 2);
    assert_move(&out[0], 0x1000, 3, 1, NT_TIER_PROMOTE);
    assert_move(&out[1], 0x2000, 2, 0, NT_TIER_PROMOTE);
}

static void test_promote_next_nearest_when_full(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    nodes[N1].free_pages = nodes[N1].low_watermark_pages + 1;    /* room for exactly one */
    struct nt_tier_page_state st[3] = { 0 };
    const struct nt_tier_page pages[] = {
        { .vaddr = 0x1000, .node = 3, .heat = 30, .thread_nodes_mask = BIT(1), .state = &st[0] },
        { .vaddr = 0x2000, .node = 3, .heat = 20, .thread_nodes_mask = BIT(1), .state = &st[1] },
        { .vaddr = 0x3000, .node = 3, .heat = 10, .thread_nodes_mask = BIT(1), .state = &st[2] },
    };
    struct nt_tier_move out[MAX_MOVES];
    assert_int_equal(plan4(&default_params, nodes, pages, 3, 0, out, NULL), 3);
    assert_move(&out[0], 0x1000, 3, 1, NT_TIER_PROMOTE);     /* hottest gets the nearest */
    assert_move(&out[1], 0x2000, 3, 0, NT_TIER_PROMOTE);
    assert_move(&out[2], 0x3000, 3, 0, NT_TIER_PROMOTE);
}

static void test_promote_never_below_low_watermark(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    nodes[N0].free_pages = nodes[N0].low_watermark_pages + 2;
    nodes[N1].free_pages = nodes[N1].low_watermark_pages + 1;
    struct nt_tier_page_state st[6] = { 0 };
    struct nt_tier_page pages[6];
    for (unsigned i = 0; i < 6; i++)
        pages[i] = (struct nt_tier_page){ .vaddr = 0x1000 * (i + 1), .node = 2, .heat = 100 - i,
                                          .thread_nodes_mask = BIT(0), .state = &st[i] };
    struct nt_tier_move out[MAX_MOVES];
    struct nt_tier_summary sum;
    assert_int_equal(plan4(&default_params, nodes, pages, 6, 0, out, &sum), 3);
    unsigned to0 = 0, to1 = 0;
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(out[i].vaddr, 0x1000 * (i + 1));     /* the three hottest */
        to0 += out[i].to == 0;
        to1 += out[i].to == 1;
    }
    assert_int_equal(to0, 2);
    assert_int_equal(to1, 1);
    assert_int_equal(sum.promote.held[NT_TIER_HOLD_NO_ROOM], 3);
    assert_int_equal(st[5].last_move, NT_TIER_MOVE_NONE);
    assert_int_equal(st[5].hot_streak, 1);                      /* still counting */

    nodes[N0].free_pages = nodes[N0].low_watermark_pages;       /* at the mark: no room */
    nodes[N1].free_pages = 0;
    struct nt_tier_page_state fresh = { 0 };
    pages[0].state = &fresh;
    assert_int_equal(plan4(&default_params, nodes, pages, 1, 0, out, &sum), 0);
    assert_int_equal(sum.promote.held[NT_TIER_HOLD_NO_ROOM], 1);
}

static void test_promote_rate_limit(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    struct nt_tier_params p = default_params;
    p.max_promote = 2;
    struct nt_tier_page_state st[5] = { 0 };
    const double heats[5] = { 20, 80, 40, 90, 15 };
    struct nt_tier_page pages[5];
    for (unsigned i = 0; i < 5; i++)
        pages[i] = (struct nt_tier_page){ .vaddr = 0x1000 * (i + 1), .node = 2, .heat = heats[i],
                                          .thread_nodes_mask = BIT(0), .state = &st[i] };
    struct nt_tier_move out[MAX_MOVES];
    struct nt_tier_summary sum;
    assert_int_equal(plan4(&p, nodes, pages, 5, 0, out, &sum), 2);
    assert_int_equal(out[0].vaddr, 0x4000);                     /* heat 90 */
    assert_int_equal(out[1].vaddr, 0x2000);                     /* heat 80 */
    assert_int_equal(sum.promote.proposed, 2);
    assert_int_equal(sum.promote.held[NT_TIER_HOLD_RATE_LIMIT], 3);

    p.max_promote = 0;                                          /* promotion off */
    assert_int_equal(plan4(&p, nodes, pages, 5, 0, out, &sum), 0);
    assert_int_equal(sum.promote.held[NT_TIER_HOLD_RATE_LIMIT], 3);   /* the two moved are cooling */
    assert_int_equal(sum.promote.held[NT_TIER_HOLD_COOLDOWN], 2);
}

/* A fast node without CPUs (set fast in config) is never a promotion
 * target, however near. */
static void test_cpuless_never_promotion_target(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    nodes[N0].nr_cpus = 0;
    struct nt_tier_page_state st = { 0 };
    struct nt_tier_page page = { .vaddr = 0x1000, .node = 2, .heat = 50, .state = &st };
    struct nt_tier_move out[MAX_MOVES];
    struct nt_tier_summary sum;
    assert_int_equal(plan4(&default_params, nodes, &page, 1, 0, out, &sum), 1);
    assert_move(&out[0], 0x1000, 2, 1, NT_TIER_PROMOTE);

    nodes[N1].nr_cpus = 0;                                      /* no fast node with CPUs */
    st = (struct nt_tier_page_state){ 0 };
    assert_int_equal(plan4(&default_params, nodes, &page, 1, 0, out, &sum), 0);
    assert_int_equal(sum.promote.held[NT_TIER_HOLD_NO_ROOM], 1);
}

/* Slow nodes with CPUs (a slow tier set in config) aren't targets either. */
static void test_slow_node_never_promotion_target(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    nodes[N3].nr_cpus = 4;
    struct nt_tier_page_state st = { 0 };
    struct nt_tier_page page = { .vaddr = 0x1000, .node = 2, .heat = 50, .thread_nodes_mask = BIT(3),
                                 .state = &st };
    struct nt_tier_move out[MAX_MOVES];
    assert_int_equal(plan4(&default_params, nodes, &page, 1, 0, out, NULL), 1);
    assert_move(&out[0], 0x1000, 2, 1, NT_TIER_PROMOTE);       /* node 1 is nearest node 3 */
}

static void test_unknown_node_ignored(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    nodes[N0].free_pages = 10;                                  /* pressure, too */
    struct nt_tier_page_state st[3] = { 0 };
    const struct nt_tier_page pages[] = {
        { .vaddr = 0x1000, .node = -1, .heat = 50, .thread_nodes_mask = BIT(0), .state = &st[0] },
        { .vaddr = 0x2000, .node = 9, .heat = 50, .thread_nodes_mask = BIT(0), .state = &st[1] },
        { .vaddr = 0x3000, .node = -1, .heat = 0, .state = &st[2] },
    };
    struct nt_tier_move out[MAX_MOVES];
    struct nt_tier_summary sum;
    assert_int_equal(plan4(&default_params, nodes, pages, 3, 0, out, &sum), 0);
    assert_int_equal(sum.pages, 3);
    assert_int_equal(sum.unknown_node, 3);
    assert_int_equal(sum.promote.proposed + sum.demote.proposed, 0);
    /* The history still counts, so a page whose node turns up can move. */
    assert_int_equal(st[0].hot_streak, 1);
    assert_int_equal(st[2].cold_streak, 1);
}

/* ---- demotion -------------------------------------------------------------- */

static void test_demote_only_under_pressure(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    nodes[N0].free_pages = nodes[N0].low_watermark_pages;       /* at the mark: fine */
    struct nt_tier_page_state st = { 0 };
    struct nt_tier_page page = { .vaddr = 0x1000, .node = 0, .heat = 0, .state = &st };
    struct nt_tier_move out[MAX_MOVES];
    struct nt_tier_summary sum;
    assert_int_equal(plan4(&default_params, nodes, &page, 1, 0, out, &sum), 0);
    assert_int_equal(sum.pressured_nodes, 0);
    assert_int_equal(sum.demote_needed, 0);

    nodes[N0].free_pages = nodes[N0].low_watermark_pages - 1;
    assert_int_equal(plan4(&default_params, nodes, &page, 1, 0, out, &sum), 1);
    assert_move(&out[0], 0x1000, 0, 2, NT_TIER_DEMOTE);        /* node 2 is nearest node 0 */
    assert_int_equal(sum.pressured_nodes, 1);
    assert_int_equal(sum.demote_needed, 101);                   /* up to the high watermark */
    assert_int_equal(st.last_move, NT_TIER_DEMOTE);
}

static void test_demote_coldest_first_until_high_watermark(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    nodes[N0] = (struct nt_tier_node){ .id = 0, .nr_cpus = 4, .free_pages = 8, .total_pages = 100,
                                       .low_watermark_pages = 10, .high_watermark_pages = 12 };
    struct nt_tier_page_state st[8] = { 0 };
    st[4].cold_streak = 5;             /* of the two never-seen pages, cold the longest */
    const double heats[8] = { 0.5, 0, 1.0, 0.2, 0, 0.9, 5, 50 };   /* the last two: warm, hot */
    struct nt_tier_page pages[8];
    for (unsigned i = 0; i < 8; i++)
        pages[i] = (struct nt_tier_page){ .proc_id = 1, .vaddr = 0x1000 * (i + 1), .node = 0,
                                          .heat = heats[i], .state = &st[i] };
    struct nt_tier_move out[MAX_MOVES];
    struct nt_tier_summary sum;
    assert_int_equal(plan4(&default_params, nodes, pages, 8, 0, out, &sum), 4);   /* 12 - 8 */
    assert_move(&out[0], 0x5000, 0, 2, NT_TIER_DEMOTE);
    assert_move(&out[1], 0x2000, 0, 2, NT_TIER_DEMOTE);
    assert_move(&out[2], 0x4000, 0, 2, NT_TIER_DEMOTE);
    assert_move(&out[3], 0x1000, 0, 2, NT_TIER_DEMOTE);
    assert_int_equal(sum.demote.proposed, 4);
    assert_int_equal(sum.demote_needed, 4);
    for (unsigned h = 0; h < NT_TIER_NR_HOLDS; h++)
        assert_int_equal(sum.demote.held[h], 0);                /* the rest aren't needed */
    assert_int_equal(st[6].last_move, NT_TIER_MOVE_NONE);
    assert_int_equal(st[7].last_move, NT_TIER_MOVE_NONE);
}

static void test_demote_max_per_cycle(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    nodes[N0].free_pages = 96;                                  /* needs 104 */
    struct nt_tier_params p = default_params;
    p.max_demote = 1;
    struct nt_tier_page_state st[3] = { 0 };
    struct nt_tier_page pages[3];
    for (unsigned i = 0; i < 3; i++)
        pages[i] = (struct nt_tier_page){ .vaddr = 0x1000 * (i + 1), .node = 0, .heat = 0.5 - 0.1 * i,
                                          .state = &st[i] };
    struct nt_tier_move out[MAX_MOVES];
    struct nt_tier_summary sum;
    assert_int_equal(plan4(&p, nodes, pages, 3, 0, out, &sum), 1);
    assert_move(&out[0], 0x3000, 0, 2, NT_TIER_DEMOTE);        /* the coldest */
    assert_int_equal(sum.demote.held[NT_TIER_HOLD_RATE_LIMIT], 2);
}

/* Node 1 under pressure with three cold pages, coldest first. */
static void pressured_node1(struct nt_tier_node nodes[NR_NODES], struct nt_tier_page_state st[3],
                            struct nt_tier_page pages[3])
{
    default_nodes(nodes);
    nodes[N1].free_pages = 50;
    for (unsigned i = 0; i < 3; i++) {
        st[i] = (struct nt_tier_page_state){ 0 };
        pages[i] = (struct nt_tier_page){ .vaddr = 0x1000 * (i + 1), .node = 1, .heat = 0.1 * i,
                                          .state = &st[i] };
    }
}

static void test_demote_nearest_slow_with_room(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    struct nt_tier_page_state st[3];
    struct nt_tier_page pages[3];
    pressured_node1(nodes, st, pages);
    nodes[N3].free_pages = nodes[N3].low_watermark_pages + 1;   /* room for one */
    struct nt_tier_move out[MAX_MOVES];
    struct nt_tier_summary sum;
    assert_int_equal(plan4(&default_params, nodes, pages, 3, 0, out, &sum), 3);
    assert_move(&out[0], 0x1000, 1, 3, NT_TIER_DEMOTE);
    assert_move(&out[1], 0x2000, 1, 2, NT_TIER_DEMOTE);
    assert_move(&out[2], 0x3000, 1, 2, NT_TIER_DEMOTE);

    nodes[N2].free_pages = nodes[N3].free_pages = 0;            /* no slow room at all */
    for (unsigned i = 0; i < 3; i++)
        st[i] = (struct nt_tier_page_state){ 0 };
    assert_int_equal(plan4(&default_params, nodes, pages, 3, 0, out, &sum), 0);
    assert_int_equal(sum.demote.held[NT_TIER_HOLD_NO_ROOM], 3);
}

/* ---- streaks and cooldown -------------------------------------------------- */

static void test_hot_streak_required(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    struct nt_tier_params p = default_params;
    p.hot_cycles = 3;
    struct nt_tier_page_state st = { 0 };
    struct nt_tier_page page = { .vaddr = 0x1000, .node = 2, .thread_nodes_mask = BIT(0), .state = &st };
    /* A warm cycle (between the thresholds) breaks the run. */
    const double heats[] = { 50, 50, 5, 50, 50, 50 };
    struct nt_tier_move out[MAX_MOVES];
    struct nt_tier_summary sum;
    for (unsigned c = 0; c < 5; c++) {
        page.heat = heats[c];
        assert_int_equal(plan4(&p, nodes, &page, 1, c * SEC, out, &sum), 0);
        assert_int_equal(sum.promote.held[NT_TIER_HOLD_STREAK], heats[c] >= 10);
    }
    page.heat = heats[5];
    assert_int_equal(plan4(&p, nodes, &page, 1, 5 * SEC, out, &sum), 1);
    assert_move(&out[0], 0x1000, 2, 0, NT_TIER_PROMOTE);
}

static void test_cold_streak_required(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    nodes[N0].free_pages = 50;
    struct nt_tier_params p = default_params;
    p.cold_cycles = 2;
    struct nt_tier_page_state st = { 0 };
    struct nt_tier_page page = { .vaddr = 0x1000, .node = 0, .heat = 0, .state = &st };
    struct nt_tier_move out[MAX_MOVES];
    struct nt_tier_summary sum;
    assert_int_equal(plan4(&p, nodes, &page, 1, 0, out, &sum), 0);
    assert_int_equal(sum.demote.held[NT_TIER_HOLD_STREAK], 1);
    page.heat = 3;                                              /* warm: the run restarts */
    assert_int_equal(plan4(&p, nodes, &page, 1, 1 * SEC, out, &sum), 0);
    page.heat = 1;                                              /* at the threshold is cold */
    assert_int_equal(plan4(&p, nodes, &page, 1, 2 * SEC, out, &sum), 0);
    assert_int_equal(plan4(&p, nodes, &page, 1, 3 * SEC, out, &sum), 1);
    assert_move(&out[0], 0x1000, 0, 2, NT_TIER_DEMOTE);
}

/* What the mover would do: the page is where the move put it. */
static void apply_moves(struct nt_tier_page *page, const struct nt_tier_move *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (out[i].vaddr == page->vaddr)
            page->node = out[i].to;
}

/* A page promoted a moment ago is not demoted back, however cold and
 * however pressed its node, until the cooldown ends; nor moved again. */
static void test_cooldown_prevents_demoting_back(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    struct nt_tier_params p = default_params;
    p.cooldown_usec = 10 * SEC;
    struct nt_tier_page_state st = { 0 };
    struct nt_tier_page page = { .vaddr = 0x1000, .node = 2, .heat = 50, .thread_nodes_mask = BIT(0),
                                 .state = &st };
    struct nt_tier_move out[MAX_MOVES];
    struct nt_tier_summary sum;
    size_t n = plan4(&p, nodes, &page, 1, 100 * SEC, out, &sum);
    assert_int_equal(n, 1);
    assert_move(&out[0], 0x1000, 2, 0, NT_TIER_PROMOTE);
    apply_moves(&page, out, n);

    nodes[N0].free_pages = 10;
    page.heat = 0;
    for (uint64_t t = 101 * SEC; t < 110 * SEC; t += SEC) {
        assert_int_equal(plan4(&p, nodes, &page, 1, t, out, &sum), 0);
        assert_int_equal(sum.demote.held[NT_TIER_HOLD_COOLDOWN], 1);
    }
    assert_int_equal(plan4(&p, nodes, &page, 1, 110 * SEC - 1, out, &sum), 0);
    assert_int_equal(plan4(&p, nodes, &page, 1, 50 * SEC, out, &sum), 0);   /* clock went back */
    n = plan4(&p, nodes, &page, 1, 110 * SEC, out, &sum);
    assert_int_equal(n, 1);
    assert_move(&out[0], 0x1000, 0, 2, NT_TIER_DEMOTE);
    apply_moves(&page, out, n);

    page.heat = 50;                                             /* hot again: cooling, too */
    assert_int_equal(plan4(&p, nodes, &page, 1, 111 * SEC, out, &sum), 0);
    assert_int_equal(sum.promote.held[NT_TIER_HOLD_COOLDOWN], 1);
}

/* The worst input for ping-pong: a page whose heat flips hot/cold every
 * cycle while its fast node flips between room and pressure in step, so
 * every cycle offers a move. Returns how many moves 30 cycles make, and
 * checks no page moves twice within the cooldown. */
static unsigned flip_flop_moves(unsigned streak_cycles, uint64_t cooldown_usec)
{
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    struct nt_tier_params p = default_params;
    p.hot_cycles = p.cold_cycles = streak_cycles;
    p.cooldown_usec = cooldown_usec;
    struct nt_tier_page_state st = { 0 };
    struct nt_tier_page page = { .vaddr = 0x1000, .node = 2, .thread_nodes_mask = BIT(0), .state = &st };
    struct nt_tier_move out[MAX_MOVES];
    unsigned moves = 0;
    uint64_t last_move = 0;
    for (unsigned c = 0; c < 30; c++) {
        bool hot = c % 2 == 0;
        page.heat = hot ? 100 : 0;
        nodes[N0].free_pages = hot ? 500 : 50;
        uint64_t now = c * SEC;
        size_t n = plan4(&p, nodes, &page, 1, now, out, NULL);
        if (n && moves)
            assert_true(now - last_move >= cooldown_usec);
        if (n)
            last_move = now;
        moves += (unsigned)n;
        apply_moves(&page, out, n);
    }
    return moves;
}

static void test_alternating_heat_does_not_ping_pong(void **state)
{
    (void)state;
    assert_int_equal(flip_flop_moves(1, 0), 30);       /* unguarded: the input does drive moves */
    assert_int_equal(flip_flop_moves(2, 0), 0);        /* a two-cycle streak never forms */
    assert_int_equal(flip_flop_moves(3, 60 * SEC), 0);
    unsigned m = flip_flop_moves(1, 5 * SEC);          /* at most one move per 5-cycle cooldown */
    assert_true(m >= 1 && m <= 6);
}

/* ---- limits and helpers ---------------------------------------------------- */

static void test_out_cap(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    struct nt_tier_page_state st[2] = { 0 };
    const struct nt_tier_page pages[] = {
        { .vaddr = 0x1000, .node = 2, .heat = 20, .state = &st[0] },
        { .vaddr = 0x2000, .node = 2, .heat = 30, .state = &st[1] },
    };
    struct nt_tier_move out[1];
    struct nt_tier_summary sum;
    assert_int_equal(nt_tier_plan(&default_params, nodes, NR_NODES, distance4, pages, 2, 0, out, 1, &sum), 1);
    assert_int_equal(out[0].vaddr, 0x2000);
    assert_int_equal(sum.promote.held[NT_TIER_HOLD_OUT_FULL], 1);
    assert_int_equal(st[0].last_move, NT_TIER_MOVE_NONE);     /* not proposed: not cooling */
    assert_int_equal(st[0].hot_streak, 1);
}

/* Without a distance matrix every other node is equally far: the first
 * in nodes[] wins. */
static void test_unknown_distances(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    struct nt_tier_page_state st = { 0 };
    struct nt_tier_page page = { .vaddr = 0x1000, .node = 3, .heat = 20, .thread_nodes_mask = BIT(1),
                                 .state = &st };
    struct nt_tier_move out[MAX_MOVES];
    assert_int_equal(nt_tier_plan(&default_params, nodes, NR_NODES, NULL, &page, 1, 0, out, MAX_MOVES, NULL), 1);
    assert_move(&out[0], 0x1000, 3, 1, NT_TIER_PROMOTE);       /* local to the threads still wins */
}

static void test_invalid_input(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    struct nt_tier_params p = default_params;
    struct nt_tier_summary sum;
    struct nt_tier_move out[MAX_MOVES];
    struct nt_tier_page page = { .vaddr = 0x1000, .node = 2, .heat = 20, .state = NULL };
    assert_int_equal(nt_tier_plan(&p, nodes, NR_NODES, distance4, &page, 1, 0, out, MAX_MOVES, &sum), -EINVAL);
    p.hot_threshold = p.cold_threshold;
    assert_int_equal(nt_tier_plan(&p, nodes, NR_NODES, distance4, NULL, 0, 0, out, MAX_MOVES, &sum), -EINVAL);
    assert_int_equal(nt_tier_plan(NULL, nodes, NR_NODES, distance4, NULL, 0, 0, out, MAX_MOVES, &sum), -EINVAL);
    assert_int_equal(nt_tier_plan(&default_params, nodes, NR_NODES, distance4, NULL, 0, 0, NULL, 0, &sum), 0);
    assert_int_equal(sum.pages, 0);
}

static void test_node_memory(void **state)
{
    (void)state;
    struct nt_tier_node n = { .id = 1 };
    /* 1 GiB total, half free, in 4 KiB pages: 262144 and 131072. */
    assert_int_equal(nt_tier_node_memory(&n, 1048576, 524288, 2.0, 5.0, 4096), 0);
    assert_int_equal(n.id, 1);
    assert_int_equal(n.total_pages, 262144);
    assert_int_equal(n.free_pages, 131072);
    assert_int_equal(n.low_watermark_pages, 5243);      /* 5242.88 rounded up */
    assert_int_equal(n.high_watermark_pages, 13108);    /* 13107.2 rounded up */

    assert_int_equal(nt_tier_node_memory(&n, 4096, 0, 0, 100, 2 * 1024 * 1024), 0);   /* 2 huge pages */
    assert_int_equal(n.total_pages, 2);
    assert_int_equal(n.low_watermark_pages, 0);
    assert_int_equal(n.high_watermark_pages, 2);
    assert_int_equal(nt_tier_node_memory(&n, 4, 4, 10, 10, 4096), 0);
    assert_int_equal(n.low_watermark_pages, 1);          /* a tenth of a page rounds up to one */

    assert_int_equal(nt_tier_node_memory(&n, 1024, 0, 6, 5, 4096), -EINVAL);
    assert_int_equal(nt_tier_node_memory(&n, 1024, 0, -1, 5, 4096), -EINVAL);
    assert_int_equal(nt_tier_node_memory(&n, 1024, 0, 1, 101, 4096), -EINVAL);
    assert_int_equal(nt_tier_node_memory(&n, 1024, 0, NAN, 5, 4096), -EINVAL);
    assert_int_equal(nt_tier_node_memory(&n, 1024, 0, 1, 5, 0), -EINVAL);
}

static void test_strings(void **state)
{
    (void)state;
    assert_string_equal(nt_tier_move_kind_to_string(NT_TIER_MOVE_NONE), "none");
    assert_string_equal(nt_tier_move_kind_to_string(NT_TIER_PROMOTE), "promote");
    assert_string_equal(nt_tier_move_kind_to_string(NT_TIER_DEMOTE), "demote");
    assert_string_equal(nt_tier_move_kind_to_string((enum nt_tier_move_kind)42), "unknown");
    assert_string_equal(nt_tier_hold_to_string(NT_TIER_HOLD_STREAK), "streak");
    assert_string_equal(nt_tier_hold_to_string(NT_TIER_HOLD_COOLDOWN), "cooldown");
    assert_string_equal(nt_tier_hold_to_string(NT_TIER_HOLD_NO_ROOM), "no-room");
    assert_string_equal(nt_tier_hold_to_string(NT_TIER_HOLD_RATE_LIMIT), "rate-limit");
    assert_string_equal(nt_tier_hold_to_string(NT_TIER_HOLD_OUT_FULL), "out-full");
    assert_string_equal(nt_tier_hold_to_string(NT_TIER_NR_HOLDS), "unknown");
}

/* ---- maintenance ------------------------------------------------------------ */

/* Node 1 is pressured with cold pages; slow node 3 (its nearest) is being
 * offlined: the demotions go to node 2 instead, none to node 3. With both
 * slow nodes under maintenance nothing is demoted, for want of room. */
static void test_demote_never_to_maintenance_node(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    struct nt_tier_page_state st[3];
    struct nt_tier_page pages[3];
    pressured_node1(nodes, st, pages);
    struct nt_tier_move out[MAX_MOVES];
    struct nt_tier_summary sum;
    assert_int_equal(plan4(&default_params, nodes, pages, 3, 0, out, &sum), 3);
    assert_int_equal(out[0].to, N3);                    /* without maintenance: the nearest */

    nodes[N3].maintenance = true;
    memset(st, 0, sizeof(st));
    assert_int_equal(plan4(&default_params, nodes, pages, 3, 0, out, &sum), 3);
    for (unsigned i = 0; i < 3; i++)
        assert_move(&out[i], 0x1000 * (i + 1), 1, 2, NT_TIER_DEMOTE);

    nodes[N2].maintenance = true;
    memset(st, 0, sizeof(st));
    assert_int_equal(plan4(&default_params, nodes, pages, 3, 0, out, &sum), 0);
    assert_int_equal(sum.demote.held[NT_TIER_HOLD_NO_ROOM], 3);
}

/* A hot page on slow node 3 whose threads run on drained node 1: it is
 * promoted to node 0 rather than to node 1; with node 0 drained too it
 * stays. A drained node's own cold pages may still be demoted off it. */
static void test_promote_never_to_maintenance_node(void **state)
{
    (void)state;
    struct nt_tier_node nodes[NR_NODES];
    default_nodes(nodes);
    struct nt_tier_page_state st = { 0 };
    const struct nt_tier_page hot = { .proc_id = 7, .vaddr = 0x1000, .node = 3, .heat = 50,
                                      .thread_nodes_mask = BIT(1), .state = &st };
    struct nt_tier_move out[MAX_MOVES];
    struct nt_tier_summary sum;
    assert_int_equal(plan4(&default_params, nodes, &hot, 1, 0, out, &sum), 1);
    assert_int_equal(out[0].to, N1);                    /* without maintenance: near the threads */

    nodes[N1].maintenance = true;
    st = (struct nt_tier_page_state){ 0 };
    assert_int_equal(plan4(&default_params, nodes, &hot, 1, 0, out, &sum), 1);
    assert_move(&out[0], 0x1000, 3, 0, NT_TIER_PROMOTE);

    nodes[N0].maintenance = true;
    st = (struct nt_tier_page_state){ 0 };
    assert_int_equal(plan4(&default_params, nodes, &hot, 1, 0, out, &sum), 0);
    assert_int_equal(sum.promote.held[NT_TIER_HOLD_NO_ROOM], 1);

    nodes[N1].free_pages = 50;                          /* drained and pressured: pages leave */
    struct nt_tier_page_state cst = { 0 };
    const struct nt_tier_page cold = { .proc_id = 8, .vaddr = 0x2000, .node = 1, .heat = 0, .state = &cst };
    assert_int_equal(plan4(&default_params, nodes, &cold, 1, 0, out, &sum), 1);
    assert_move(&out[0], 0x2000, 1, 3, NT_TIER_DEMOTE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promote_to_fast_node_nearest_threads),
        cmocka_unit_test(test_promote_without_thread_preference),
        cmocka_unit_test(test_promote_next_nearest_when_full),
        cmocka_unit_test(test_promote_never_below_low_watermark),
        cmocka_unit_test(test_promote_rate_limit),
        cmocka_unit_test(test_cpuless_never_promotion_target),
        cmocka_unit_test(test_slow_node_never_promotion_target),
        cmocka_unit_test(test_unknown_node_ignored),
        cmocka_unit_test(test_demote_only_under_pressure),
        cmocka_unit_test(test_demote_coldest_first_until_high_watermark),
        cmocka_unit_test(test_demote_max_per_cycle),
        cmocka_unit_test(test_demote_nearest_slow_with_room),
        cmocka_unit_test(test_hot_streak_required),
        cmocka_unit_test(test_cold_streak_required),
        cmocka_unit_test(test_cooldown_prevents_demoting_back),
        cmocka_unit_test(test_alternating_heat_does_not_ping_pong),
        cmocka_unit_test(test_out_cap),
        cmocka_unit_test(test_unknown_distances),
        cmocka_unit_test(test_invalid_input),
        cmocka_unit_test(test_node_memory),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_demote_never_to_maintenance_node),
        cmocka_unit_test(test_promote_never_to_maintenance_node),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
