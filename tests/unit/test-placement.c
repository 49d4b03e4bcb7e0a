/* The placement policy: every rule of nt_place_decide from plain structs,
 * damped load balancing, and the per-cycle page-move schedule.
 *
 * The world: nodes of 16 CPUs and 1 Mi pages (800k free, watermark 20k);
 * distance 21 between nodes; a remote access costs 0.1 us extra at
 * distance 20 (0.11 us at 21); a page costs 2 us to move, a thread 450 us
 * (400 refill + 50 sched) plus 0.5 s per second of horizon if it must wait
 * for a CPU; the horizon is 10 s. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "numatier/cost.h"
#include "numatier/placement.h"
#include "numatier/util.h"

#define SEC UINT64_C(1000000)
#define MAX_NODES 4

static void assert_close(double got, double want)
{
    if (fabs(got - want) > 1e-9 * (fabs(want) > 1 ? fabs(want) : 1))
        fail_msg("got %.17g, want %.17g", got, want);
}

static void assert_why_has(const struct nt_place_decision *d, const char *part)
{
    if (!strstr(d->why, part))
        fail_msg("why \"%s\" lacks \"%s\"", d->why, part);
}

/* No measured pairs: every page costs the default. */
static const struct nt_cost_model cost = {
    .c_mem_default_usec = 2.0,
    .c_mem_huge_usec = -1,
    .c_thread_refill_usec = 400,
    .c_thread_sched_usec = 50,
    .queue_usec_per_sec = 5e5,
};

struct world {
    struct nt_place_node nodes[MAX_NODES];
    unsigned distance[MAX_NODES * MAX_NODES];
    struct nt_place_params params;
    struct nt_place_system sys;
    unsigned threads_on[MAX_NODES];
    double rate[MAX_NODES];
    uint64_t hot[MAX_NODES];
    struct nt_place_proc proc;
    struct nt_place_memory mem;
    struct nt_place_decision d;
};

static void world_init(struct world *w, unsigned nr)
{
    memset(w, 0, sizeof(*w));
    for (unsigned i = 0; i < nr; i++) {
        w->nodes[i] = (struct nt_place_node){
            .id = (int)i, .nr_cpus = 16, .idle_cpus = 16,
            .free_pages = 800000, .total_pages = 1 << 20, .low_watermark_pages = 20000,
        };
        for (unsigned j = 0; j < nr; j++)
            w->distance[i * nr + j] = i == j ? 10 : 21;
    }
    w->params = (struct nt_place_params){
        .horizon_sec = 10, .remote_penalty_usec = 0.1, .min_remote_fraction = 0.1,
        .hysteresis_cycles = 1, .damping = 0.5,
    };
    w->sys = (struct nt_place_system){
        .nr_nodes = nr, .nodes = w->nodes, .distance = w->distance,
        .cost = &cost, .params = &w->params, .now_usec = 1000 * SEC,
    };
    w->proc = (struct nt_place_proc){
        .id = 7, .pid = 4242, .nr_threads = 8,
        .threads_on = w->threads_on, .access_rate = w->rate, .hot_pages_on = w->hot,
    };
}

static void set_distance(struct world *w, unsigned i, unsigned j, unsigned d)
{
    w->distance[i * w->sys.nr_nodes + j] = d;
    w->distance[j * w->sys.nr_nodes + i] = d;
}

/* Scenario b: 8 threads on node 0, its 50000 hot pages on node 1, which
 * takes 2M accesses/s. Gain 2M * 0.11 us * 10 s = 2.2 s; threads cost
 * 8 * 450 = 3600 us, pages 50000 * 2 = 100000 us: threads move. */
static void scenario_b(struct world *w)
{
    world_init(w, 2);
    w->threads_on[0] = 8;
    w->rate[0] = 1e5;
    w->rate[1] = 2e6;
    w->hot[0] = 2000;
    w->hot[1] = 50000;
}

static const struct nt_place_decision *decide(struct world *w)
{
    nt_place_decide(&w->sys, &w->proc, &w->mem, &w->d);
    return &w->d;
}

/* ---- strings and distances ------------------------------------------------- */

static void test_strings(void **state)
{
    (void)state;
    assert_string_equal(nt_place_action_to_string(NT_PLACE_NONE), "none");
    assert_string_equal(nt_place_action_to_string(NT_PLACE_MOVE_THREADS), "move-threads");
    assert_string_equal(nt_place_action_to_string(NT_PLACE_MOVE_PAGES), "move-pages");
    assert_string_equal(nt_place_reason_to_string(NT_PLACE_NO_SAMPLES), "no-samples");
    assert_string_equal(nt_place_reason_to_string(NT_PLACE_HYSTERESIS), "hysteresis");
    assert_string_equal(nt_place_reason_to_string(NT_PLACE_PAGES_ONLY), "pages-only");
    assert_string_equal(nt_place_reason_to_string((enum nt_place_reason)99), "unknown");
    assert_string_equal(nt_place_reason_to_string(NT_PLACE_MAINTENANCE), "maintenance");
    for (int r = NT_PLACE_NO_SAMPLES; r <= NT_PLACE_MAINTENANCE; r++)
        assert_string_not_equal(nt_place_reason_to_string((enum nt_place_reason)r), "unknown");
}

static void test_distance_unknown(void **state)
{
    (void)state;
    const unsigned dist[] = { 0, 0, 31, 0 };
    assert_int_equal(nt_place_distance(dist, 2, 0, 0), 10);
    assert_int_equal(nt_place_distance(dist, 2, 0, 1), 20);
    assert_int_equal(nt_place_distance(dist, 2, 1, 0), 31);
    assert_int_equal(nt_place_distance(NULL, 2, 1, 0), 20);
}

/* ---- rules 1-3 --------------------------------------------------------------- */

static void test_no_samples(void **state)
{
    (void)state;
    struct world w;
    scenario_b(&w);
    w.rate[0] = w.rate[1] = 0;
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_NONE);
    assert_int_equal(d->reason, NT_PLACE_NO_SAMPLES);
    assert_int_equal(d->dest_node, -1);
    assert_int_equal(w.mem.streak, 0);

    /* Accesses but no thread seen anywhere: nothing to be local to. */
    scenario_b(&w);
    w.threads_on[0] = 0;
    assert_int_equal(decide(&w)->reason, NT_PLACE_NO_SAMPLES);
}

static void test_local_enough(void **state)
{
    (void)state;
    struct world w;
    scenario_b(&w);
    w.rate[0] = 1e6;
    w.rate[1] = 5e4;                    /* 4.8% remote, under the 10% floor */
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_NONE);
    assert_int_equal(d->reason, NT_PLACE_LOCAL_ENOUGH);
    assert_int_equal(d->thread_node, 0);
    assert_int_equal(d->mem_node, 0);
    assert_close(d->remote_fraction, 5e4 / 1.05e6);
}

static void test_gain_below_cost(void **state)
{
    (void)state;
    struct world w;
    scenario_b(&w);
    w.rate[0] = 50;
    w.rate[1] = 1000;                   /* 1000/s * 0.11 us * 10 s = 1100 us */
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_NONE);
    assert_int_equal(d->reason, NT_PLACE_GAIN_BELOW_COST);
    assert_close(d->penalty_usec_per_sec, 110);
    assert_close(d->gain_usec, 1100);
    assert_close(d->c_thread_usec, 3600);   /* the cheaper option, still too dear */
    assert_int_equal(d->candidate, NT_PLACE_NONE);
}

static void test_threads_cheaper(void **state)
{
    (void)state;
    struct world w;
    scenario_b(&w);
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_MOVE_THREADS);
    assert_int_equal(d->dest_node, 1);
    assert_int_equal(d->reason, NT_PLACE_THREADS_CHEAPER);
    assert_int_equal(d->thread_node, 0);
    assert_int_equal(d->mem_node, 1);
    assert_close(d->remote_fraction, 2e6 / 2.1e6);
    assert_close(d->penalty_usec_per_sec, 2e6 * 0.1 * 1.1);
    assert_close(d->gain_usec, 2.2e6);
    assert_int_equal(d->threads_to_move, 8);
    assert_close(d->c_thread_usec, 3600);
    assert_int_equal(d->hot_remote_pages, 50000);
    assert_close(d->c_mem_per_page_usec, 2.0);
    assert_close(d->c_mem_usec, 100000);
    assert_int_equal(d->page_dest_node, 0);
    assert_int_equal(d->streak, 1);
    assert_int_equal(d->streak_needed, 1);
    assert_string_equal(d->why, "threads cheaper: 8 threads 3600 us vs 50000 pages 100000 us; "
                                "gain 2200000 us");
}

/* Few hot pages, and node 1 has 2 idle CPUs for 8 threads: 6 would queue
 * for 10 s at half a CPU, 3e7 us, against 1000 pages at 2000 us. */
static void test_pages_cheaper(void **state)
{
    (void)state;
    struct world w;
    scenario_b(&w);
    w.hot[1] = 1000;
    w.nodes[1].idle_cpus = 2;
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_MOVE_PAGES);
    assert_int_equal(d->dest_node, 0);
    assert_int_equal(d->reason, NT_PLACE_PAGES_CHEAPER);
    assert_close(d->c_thread_usec, 8 * 450 + 6 * 5e5 * 10);
    assert_close(d->c_mem_usec, 2000);
    assert_why_has(d, "pages cheaper: 1000 pages 2000 us");
}

/* Scenario a: scenario b with the threads pinned: the pages move, since
 * 100000 us of copying still beats 2.2 s of remote accesses. */
static void test_threads_pinned_moves_pages(void **state)
{
    (void)state;
    struct world w;
    scenario_b(&w);
    w.proc.threads_pinned = true;
    w.proc.threads_pinned_why = "affinity 0-1";
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_MOVE_PAGES);
    assert_int_equal(d->dest_node, 0);
    assert_int_equal(d->reason, NT_PLACE_PAGES_ONLY);
    assert_string_equal(d->why, "threads pinned by affinity 0-1; moving pages instead");

    /* Pinned and the pages too dear: gain below cost, naming the pin. */
    w.rate[1] = 40000;                  /* gain 44000 us < 100000 us */
    d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_NONE);
    assert_int_equal(d->reason, NT_PLACE_GAIN_BELOW_COST);
    assert_why_has(d, "threads pinned by affinity 0-1");
}

/* Pages would be cheaper (1000 pages, 2000 us), but a memory policy binds
 * them: the threads move, 3600 us against a 2.2 s gain. */
static void test_pages_pinned_moves_threads(void **state)
{
    (void)state;
    struct world w;
    scenario_b(&w);
    w.hot[1] = 1000;
    w.proc.pages_pinned = true;
    w.proc.pages_pinned_why = "mbind 1";
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_MOVE_THREADS);
    assert_int_equal(d->dest_node, 1);
    assert_int_equal(d->reason, NT_PLACE_THREADS_ONLY);
    assert_string_equal(d->why, "pages pinned by mbind 1; moving threads instead");
}

static void test_both_pinned(void **state)
{
    (void)state;
    struct world w;
    scenario_b(&w);
    w.proc.threads_pinned = w.proc.pages_pinned = true;
    w.proc.threads_pinned_why = "affinity 0-1";
    w.proc.pages_pinned_why = "mbind 1";
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_NONE);
    assert_int_equal(d->reason, NT_PLACE_PINNED);
    assert_why_has(d, "threads pinned by affinity 0-1");
    assert_why_has(d, "pages pinned by mbind 1");
    assert_close(d->gain_usec, 2.2e6);      /* the numbers are still there */

    /* Without a why, the kind of pin is named. */
    w.proc.threads_pinned_why = w.proc.pages_pinned_why = NULL;
    d = decide(&w);
    assert_why_has(d, "CPU affinity");
    assert_why_has(d, "memory policy");
}

/* Node 1 is CXL memory with no CPUs: threads can't go there however cheap,
 * so the pages come to the threads. */
static void test_cpuless_node_only_receives_pages(void **state)
{
    (void)state;
    struct world w;
    scenario_b(&w);
    w.nodes[1].nr_cpus = 0;
    w.nodes[1].idle_cpus = 0;
    w.nodes[1].slow = true;
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_MOVE_PAGES);
    assert_int_equal(d->dest_node, 0);
    assert_int_equal(d->reason, NT_PLACE_PAGES_ONLY);
    assert_why_has(d, "node 1 has no CPUs");

    /* And with the pages pinned there, nothing can be done. */
    w.proc.pages_pinned = true;
    d = decide(&w);
    assert_int_equal(d->reason, NT_PLACE_PINNED);
    assert_why_has(d, "node 1 has no CPUs");
}

/* ---- rule 6: room and distance -------------------------------------------- */

static void test_no_room(void **state)
{
    (void)state;
    struct world w;
    scenario_b(&w);
    w.proc.threads_pinned = true;
    w.nodes[0].free_pages = 20000 + 49999;   /* one page short of 50000 above the watermark */
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_NONE);
    assert_int_equal(d->reason, NT_PLACE_NO_ROOM);
    assert_why_has(d, "no room on node 0");
    assert_int_equal(d->page_dest_node, 0);  /* what was tried, for explain */

    w.nodes[0].free_pages = 20000 + 50000;   /* exactly enough */
    d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_MOVE_PAGES);

    w.nodes[0].free_pages = 10000;           /* below the watermark already */
    assert_int_equal(decide(&w)->reason, NT_PLACE_NO_ROOM);
}

/* Pages would be cheaper, but node 0 is full: the threads go instead. */
static void test_no_room_moves_threads(void **state)
{
    (void)state;
    struct world w;
    scenario_b(&w);
    w.hot[1] = 1000;
    w.nodes[0].free_pages = 20500;
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_MOVE_THREADS);
    assert_int_equal(d->reason, NT_PLACE_THREADS_ONLY);
    assert_why_has(d, "no room on node 0");
}

/* Four sockets: threads pinned on a full node 0; hot pages on node 3 (far,
 * 30). Nodes 1 (12 away) and 2 (20 away) have room: the nearer wins, and
 * the gain is only what the shorter distance saves. */
static void four_sockets_far_memory(struct world *w)
{
    world_init(w, 4);
    set_distance(w, 0, 1, 12);
    set_distance(w, 0, 2, 20);
    set_distance(w, 0, 3, 30);
    w->threads_on[0] = 8;
    w->rate[0] = 1e5;
    w->rate[3] = 2e6;
    w->hot[3] = 50000;
    w->proc.threads_pinned = true;
    w->nodes[0].free_pages = 20000;
}

static void test_nearer_node_preferred(void **state)
{
    (void)state;
    struct world w;
    four_sockets_far_memory(&w);
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_MOVE_PAGES);
    assert_int_equal(d->dest_node, 1);
    assert_int_equal(d->page_dest_node, 1);
    assert_close(d->gain_usec, 2e6 * 0.1 * 2.0 * 10);        /* all the way to t */
    assert_close(d->page_gain_usec, 2e6 * 0.1 * 1.8 * 10);   /* 30 -> 12 */
    assert_int_equal(d->hot_remote_pages, 50000);

    /* Node 1 full too: node 2 next. Slow nodes are never a refuge. */
    w.nodes[1].free_pages = 0;
    assert_int_equal(decide(&w)->dest_node, 2);
    w.nodes[2].slow = true;
    assert_int_equal(decide(&w)->reason, NT_PLACE_NO_ROOM);
}

/* Equal heat on two nodes: m is the one nearer the threads, even when it
 * comes later in the node array. */
static void test_mem_node_tie_nearer(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, 3);
    set_distance(&w, 0, 1, 30);
    set_distance(&w, 0, 2, 15);
    w.threads_on[0] = 8;
    w.rate[1] = w.rate[2] = 1e6;
    w.hot[1] = w.hot[2] = 1000;
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->mem_node, 2);
    assert_int_equal(d->action, NT_PLACE_MOVE_THREADS);
    assert_int_equal(d->dest_node, 2);
}

/* ---- rules 4-5: the guards ------------------------------------------------- */

static void test_hysteresis(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, 3);
    w.params.hysteresis_cycles = 3;
    w.threads_on[0] = 8;
    w.rate[1] = 2e6;
    w.hot[1] = 50000;

    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_NONE);
    assert_int_equal(d->reason, NT_PLACE_HYSTERESIS);
    assert_int_equal(d->candidate, NT_PLACE_MOVE_THREADS);
    assert_int_equal(d->candidate_node, 1);
    assert_why_has(d, "hysteresis (1/3)");
    d = decide(&w);
    assert_why_has(d, "hysteresis (2/3)");
    assert_int_equal(d->streak, 2);

    /* The hot node changes: the count starts over. */
    w.rate[1] = 0;
    w.rate[2] = 2e6;
    w.hot[2] = 50000;
    d = decide(&w);
    assert_int_equal(d->candidate_node, 2);
    assert_why_has(d, "hysteresis (1/3)");
    decide(&w);
    d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_MOVE_THREADS);
    assert_int_equal(d->dest_node, 2);
    assert_int_equal(d->streak, 3);

    /* A quiet cycle in between restarts it as well. */
    nt_place_record_move(&w.mem, d->action, w.sys.now_usec);
    decide(&w);
    w.rate[2] = 0;
    assert_int_equal(decide(&w)->reason, NT_PLACE_NO_SAMPLES);
    w.rate[2] = 2e6;
    assert_why_has(decide(&w), "hysteresis (1/3)");
}

static void test_cooldown(void **state)
{
    (void)state;
    struct world w;
    scenario_b(&w);
    w.params.cooldown_usec = 60 * SEC;
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_MOVE_THREADS);
    nt_place_record_move(&w.mem, d->action, w.sys.now_usec);

    w.sys.now_usec += 10 * SEC;
    d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_NONE);
    assert_int_equal(d->reason, NT_PLACE_COOLDOWN);
    assert_int_equal(d->cooldown_remaining_usec, 50 * SEC);
    assert_int_equal(d->candidate, NT_PLACE_MOVE_THREADS);
    assert_why_has(d, "cooldown: 50.0 s left");

    w.sys.now_usec += 50 * SEC;
    d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_MOVE_THREADS);
    assert_int_equal(d->cooldown_remaining_usec, 0);
}

/* After threads move, pages wait out the settle period (the threads may
 * have fixed it); a cooldown shorter than that does not end the wait. */
static void test_settle_after_thread_move(void **state)
{
    (void)state;
    struct world w;
    scenario_b(&w);
    w.params.cooldown_usec = 5 * SEC;
    w.params.settle_usec = 30 * SEC;
    nt_place_record_move(&w.mem, NT_PLACE_MOVE_THREADS, w.sys.now_usec);

    w.proc.threads_pinned = true;         /* still remote, now only pages can move */
    w.sys.now_usec += 10 * SEC;
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_NONE);
    assert_int_equal(d->reason, NT_PLACE_SETTLING);
    assert_int_equal(d->settle_remaining_usec, 20 * SEC);
    assert_int_equal(d->candidate, NT_PLACE_MOVE_PAGES);

    /* Threads are not held by the settle period, only by the cooldown. */
    w.proc.threads_pinned = false;
    assert_int_equal(decide(&w)->action, NT_PLACE_MOVE_THREADS);
    w.proc.threads_pinned = true;

    w.sys.now_usec += 20 * SEC;
    d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_MOVE_PAGES);
    assert_int_equal(d->settle_remaining_usec, 0);
}

/* A time before the move (a bad clock) waits the whole period. */
static void test_cooldown_clock_backwards(void **state)
{
    (void)state;
    struct world w;
    scenario_b(&w);
    w.params.cooldown_usec = 60 * SEC;
    nt_place_record_move(&w.mem, NT_PLACE_MOVE_PAGES, w.sys.now_usec);
    w.sys.now_usec -= SEC;
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->reason, NT_PLACE_COOLDOWN);
    assert_int_equal(d->cooldown_remaining_usec, 60 * SEC);
}

/* Run `cycles` cycles with the hot node chosen by hot_node(cycle); make
 * every returned move; return how many there were. */
static unsigned run_cycles(struct world *w, unsigned cycles, unsigned (*hot_node)(unsigned),
                           uint64_t *last_gap)
{
    unsigned moves = 0;
    uint64_t last = 0;
    *last_gap = UINT64_MAX;
    for (unsigned c = 0; c < cycles; c++) {
        memset(w->rate, 0, sizeof(w->rate));
        memset(w->hot, 0, sizeof(w->hot));
        unsigned n = hot_node(c);
        w->rate[n] = 2e6;
        w->hot[n] = 50000;
        w->rate[0] += 1e4;
        const struct nt_place_decision *d = decide(w);
        if (d->action != NT_PLACE_NONE) {
            if (moves && w->sys.now_usec - last < *last_gap)
                *last_gap = w->sys.now_usec - last;
            moves++;
            last = w->sys.now_usec;
            nt_place_record_move(&w->mem, d->action, w->sys.now_usec);
        }
        w->sys.now_usec += 10 * SEC;
    }
    return moves;
}

static unsigned alternate_1_2(unsigned c) { return 1 + c % 2; }
static unsigned alternate_1_2_pairs(unsigned c) { return 1 + (c / 2) % 2; }
static unsigned alternate_local_remote(unsigned c) { return c % 2; }
static unsigned alternate_1_2_fours(unsigned c) { return 1 + (c / 4) % 2; }

static void test_oscillation_is_ignored(void **state)
{
    (void)state;
    struct world w;
    uint64_t gap;
    world_init(&w, 3);
    w.params.hysteresis_cycles = 3;
    w.params.cooldown_usec = 60 * SEC;
    w.threads_on[0] = 8;

    assert_int_equal(run_cycles(&w, 30, alternate_1_2, &gap), 0);
    memset(&w.mem, 0, sizeof(w.mem));
    assert_int_equal(run_cycles(&w, 30, alternate_1_2_pairs, &gap), 0);
    memset(&w.mem, 0, sizeof(w.mem));
    assert_int_equal(run_cycles(&w, 30, alternate_local_remote, &gap), 0);

    /* Four cycles each way does pass hysteresis 3; the 60 s cooldown
     * (6 cycles of 10 s) then caps 30 cycles at 5 moves, 60 s apart. */
    memset(&w.mem, 0, sizeof(w.mem));
    unsigned moves = run_cycles(&w, 30, alternate_1_2_fours, &gap);
    assert_true(moves >= 1);
    assert_true(moves <= 5);
    assert_true(gap >= 60 * SEC);
}

/* ---- load balancing -------------------------------------------------------- */

static double load(const struct nt_place_node *n, unsigned runnable)
{
    return (double)runnable / n->nr_cpus;
}

static void test_balance_converges_without_overshoot(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, 2);
    for (unsigned i = 0; i < 2; i++)
        w.nodes[i].nr_cpus = 4;
    unsigned runnable[2] = { 20, 0 };
    const unsigned expect[][2] = { { 15, 5 }, { 13, 7 }, { 12, 8 }, { 11, 9 } };
    struct nt_place_balance b;
    unsigned steps = 0;
    double spread = load(&w.nodes[0], 20);
    while (nt_place_balance(w.nodes, 2, w.distance, runnable, 0.5, &b)) {
        assert_true(steps < NT_ARRAY_SIZE(expect));
        assert_int_equal(b.from, 0);
        assert_int_equal(b.to, 1);
        assert_true(b.threads <= 0.5 * b.excess);
        runnable[0] -= b.threads;
        runnable[1] += b.threads;
        assert_int_equal(runnable[0], expect[steps][0]);
        assert_int_equal(runnable[1], expect[steps][1]);
        /* Never past even, and the gap only shrinks. */
        double now = load(&w.nodes[0], runnable[0]) - load(&w.nodes[1], runnable[1]);
        assert_true(now >= 0);
        assert_true(now < spread);
        spread = now;
        steps++;
    }
    assert_int_equal(steps, NT_ARRAY_SIZE(expect));
}

/* Unequal nodes (8 and 24 CPUs), 40 runnable on the small one: repeated
 * application keeps the loads ordered and ends within one thread of even. */
static void test_balance_unequal_nodes(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, 2);
    w.nodes[0].nr_cpus = 8;
    w.nodes[1].nr_cpus = 24;
    unsigned runnable[2] = { 40, 0 };
    struct nt_place_balance b;
    double prev_max = 5.0;
    unsigned steps = 0;
    while (nt_place_balance(w.nodes, 2, w.distance, runnable, 0.4, &b)) {
        runnable[0] -= b.threads;
        runnable[1] += b.threads;
        double l0 = load(&w.nodes[0], runnable[0]), l1 = load(&w.nodes[1], runnable[1]);
        assert_true(l0 >= l1);
        assert_true(l0 <= prev_max);
        prev_max = l0;
        assert_true(++steps < 50);
    }
    assert_true(runnable[0] <= 12);           /* even is 10 on 8 CPUs, 30 on 24 */
    assert_true(runnable[0] >= 10);
}

static void test_balance_damping_capped_and_nearest(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, 3);
    for (unsigned i = 0; i < 3; i++)
        w.nodes[i].nr_cpus = 4;
    set_distance(&w, 0, 1, 30);
    set_distance(&w, 0, 2, 15);
    unsigned runnable[3] = { 20, 0, 0 };
    struct nt_place_balance b;

    /* A damping of 1 is read as 1/2: half the excess of 10, to the nearer. */
    assert_true(nt_place_balance(w.nodes, 3, w.distance, runnable, 1.0, &b));
    assert_int_equal(b.to, 2);
    assert_int_equal(b.threads, 5);
    assert_close(b.excess, 10);

    /* Nobody waiting for a CPU: no move, however uneven. */
    unsigned calm[3] = { 4, 0, 0 };
    assert_false(nt_place_balance(w.nodes, 3, w.distance, calm, 0.5, &b));
    /* CPU-less nodes take no threads. */
    w.nodes[1].nr_cpus = w.nodes[2].nr_cpus = 0;
    assert_false(nt_place_balance(w.nodes, 3, w.distance, runnable, 0.5, &b));
    assert_false(nt_place_balance(w.nodes, 3, w.distance, runnable, 0, &b));
}

/* ---- the schedule ------------------------------------------------------------ */

static void nodes_for_schedule(struct nt_place_node *nodes, uint64_t free0, uint64_t free1)
{
    nodes[0] = (struct nt_place_node){ .id = 0, .nr_cpus = 16, .free_pages = free0,
                                       .low_watermark_pages = 1000 };
    nodes[1] = (struct nt_place_node){ .id = 1, .nr_cpus = 16, .free_pages = free1,
                                       .low_watermark_pages = 1000 };
}

/* Replays steps against the nodes: every step must leave its destination
 * at or above the watermark. Returns the pages moved. */
static uint64_t replay(const struct nt_place_node *nodes, const struct nt_place_page_move *steps,
                       int nr_steps)
{
    uint64_t free_pages[2] = { nodes[0].free_pages, nodes[1].free_pages };
    uint64_t total = 0;
    for (int i = 0; i < nr_steps; i++) {
        const struct nt_place_page_move *s = &steps[i];
        assert_true(s->pages > 0);
        assert_true(free_pages[s->to] >= s->pages);
        free_pages[s->to] -= s->pages;
        free_pages[s->from] += s->pages;
        assert_true(free_pages[s->to] >= nodes[s->to].low_watermark_pages);
        total += s->pages;
    }
    return total;
}

static void test_schedule_budget_and_gain_order(void **state)
{
    (void)state;
    struct nt_place_node nodes[2];
    nodes_for_schedule(nodes, 500000, 500000);
    const struct nt_place_page_move proposed[] = {
        { .proc_id = 1, .from = 1, .to = 0, .pages = 4000, .gain_usec = 4000 },   /* 1/page */
        { .proc_id = 2, .from = 1, .to = 0, .pages = 3000, .gain_usec = 30000 },  /* 10/page */
        { .proc_id = 3, .from = 0, .to = 1, .pages = 2000, .gain_usec = 10000 },  /* 5/page */
    };
    struct nt_place_page_move steps[8];
    struct nt_place_schedule_stats st;
    int n = nt_place_schedule(proposed, 3, nodes, 2, 6000, steps, 8, &st);
    assert_int_equal(n, 3);
    assert_int_equal(steps[0].proc_id, 2);
    assert_int_equal(steps[0].pages, 3000);
    assert_int_equal(steps[1].proc_id, 3);
    assert_int_equal(steps[1].pages, 2000);
    assert_int_equal(steps[2].proc_id, 1);         /* what is left of the budget */
    assert_int_equal(steps[2].pages, 1000);
    assert_int_equal(steps[2].proposal, 0);
    assert_close(steps[2].gain_usec, 1000);
    assert_int_equal(st.pages_scheduled, 6000);
    assert_int_equal(st.pages_deferred, 3000);
    assert_int_equal(st.moves_deferred, 1);
    assert_int_equal(replay(nodes, steps, n), 6000);
}

static void test_schedule_watermark(void **state)
{
    (void)state;
    struct nt_place_node nodes[2];
    nodes_for_schedule(nodes, 1000 + 2500, 500000);   /* room for 2500 on node 0 */
    const struct nt_place_page_move proposed[] = {
        { .proc_id = 1, .from = 1, .to = 0, .pages = 2000, .gain_usec = 9000 },
        { .proc_id = 2, .from = 1, .to = 0, .pages = 2000, .gain_usec = 8000 },
    };
    struct nt_place_page_move steps[8];
    struct nt_place_schedule_stats st;
    int n = nt_place_schedule(proposed, 2, nodes, 2, 100000, steps, 8, &st);
    assert_int_equal(n, 2);
    assert_int_equal(steps[0].pages, 2000);
    assert_int_equal(steps[1].pages, 500);
    assert_int_equal(st.pages_deferred, 1500);
    assert_int_equal(st.moves_deferred, 1);
    assert_int_equal(replay(nodes, steps, n), 2500);
}

/* Two full nodes, 100 pages above their watermarks, swapping 1000 pages
 * each way: no single move fits, but alternating chunks of what the last
 * step freed completes both, every step with room. */
static void test_schedule_full_nodes_exchange(void **state)
{
    (void)state;
    struct nt_place_node nodes[2];
    nodes_for_schedule(nodes, 1100, 1100);
    const struct nt_place_page_move proposed[] = {
        { .proc_id = 1, .from = 0, .to = 1, .pages = 1000, .gain_usec = 5000 },
        { .proc_id = 2, .from = 1, .to = 0, .pages = 1000, .gain_usec = 5000 },
    };
    struct nt_place_page_move steps[64];
    struct nt_place_schedule_stats st;
    int n = nt_place_schedule(proposed, 2, nodes, 2, 100000, steps, 64, &st);
    assert_true(n > 2);
    assert_int_equal(st.pages_deferred, 0);
    assert_int_equal(st.moves_deferred, 0);
    assert_int_equal(st.pages_scheduled, 2000);
    assert_int_equal(replay(nodes, steps, n), 2000);
    for (int i = 1; i < n; i++)
        assert_int_not_equal(steps[i].proc_id, steps[i - 1].proc_id);   /* they alternate */

    /* Exactly at the watermark, nothing can go first: all deferred. */
    nodes_for_schedule(nodes, 1000, 1000);
    n = nt_place_schedule(proposed, 2, nodes, 2, 100000, steps, 64, &st);
    assert_int_equal(n, 0);
    assert_int_equal(st.pages_deferred, 2000);
    assert_int_equal(st.moves_deferred, 2);

    /* Too few step slots: the rest waits for the next cycle. */
    nodes_for_schedule(nodes, 1100, 1100);
    n = nt_place_schedule(proposed, 2, nodes, 2, 100000, steps, 3, &st);
    assert_int_equal(n, 3);
    assert_int_equal(st.pages_scheduled + st.pages_deferred, 2000);
    assert_true(st.pages_deferred > 0);
    assert_int_equal(replay(nodes, steps, n), st.pages_scheduled);
}

static void test_schedule_edge_cases(void **state)
{
    (void)state;
    struct nt_place_node nodes[2];
    nodes_for_schedule(nodes, 500000, 500000);
    const struct nt_place_page_move proposed[] = {
        { .proc_id = 1, .from = 0, .to = 9, .pages = 100, .gain_usec = 100 },   /* unknown node */
        { .proc_id = 2, .from = 1, .to = 1, .pages = 100, .gain_usec = 100 },   /* no-op */
        { .proc_id = 3, .from = 1, .to = 0, .pages = 0, .gain_usec = 0 },
    };
    struct nt_place_page_move steps[4];
    struct nt_place_schedule_stats st;
    assert_int_equal(nt_place_schedule(proposed, 3, nodes, 2, 1000, steps, 4, &st), 0);
    assert_int_equal(st.pages_deferred, 100);
    assert_int_equal(st.moves_deferred, 1);
    assert_int_equal(nt_place_schedule(proposed, 0, nodes, 2, 1000, steps, 4, &st), 0);
    assert_int_equal(st.pages_deferred, 0);
    /* No budget: everything waits. */
    assert_int_equal(nt_place_schedule(&proposed[0], 1, nodes, 2, 0, steps, 4, &st), 0);
    assert_int_equal(st.pages_deferred, 100);
}

/* ---- rule 7: maintenance ---------------------------------------------------- */

/* A decision sends nothing to node: not as its action, not as a candidate
 * waiting on the guards, not as the page destination. */
static void assert_never_to(const struct nt_place_decision *d, int node)
{
    if (d->action != NT_PLACE_NONE && d->dest_node == node)
        fail_msg("%s to node %d: %s", nt_place_action_to_string(d->action), node, d->why);
    if (d->candidate != NT_PLACE_NONE && d->candidate_node == node)
        fail_msg("candidate %s to node %d: %s", nt_place_action_to_string(d->candidate), node, d->why);
    if (d->page_dest_node == node)
        fail_msg("pages would go to node %d: %s", node, d->why);
}

/* Scenario b with node 1 (the memory's node) drained: the threads may not
 * follow the memory there, so the pages come to the threads instead. */
static void test_maintenance_node_takes_no_threads(void **state)
{
    (void)state;
    struct world w;
    scenario_b(&w);
    assert_int_equal(decide(&w)->dest_node, 1);         /* without maintenance: threads to node 1 */
    w.nodes[1].maintenance = true;
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_MOVE_PAGES);
    assert_int_equal(d->dest_node, 0);
    assert_int_equal(d->reason, NT_PLACE_PAGES_ONLY);
    assert_why_has(d, "node 1 is under maintenance: no threads go there");
    assert_never_to(d, 1);

    /* The pages bound there too: nothing moves, and maintenance is why. */
    w.proc.pages_pinned = true;
    d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_NONE);
    assert_int_equal(d->reason, NT_PLACE_MAINTENANCE);
    assert_never_to(d, 1);
}

/* Threads the user pinned to node 1 while node 1 is drained (a drain
 * leaves a user's affinity alone), their memory moved to node 0 by the
 * drain: the pages would follow the threads back to node 1; they may not. */
static void test_maintenance_node_takes_no_pages(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, 2);
    w.threads_on[1] = 8;
    w.rate[0] = 2e6;
    w.hot[0] = 50000;
    w.proc.threads_pinned = true;
    w.proc.threads_pinned_why = "CPU affinity 1";
    assert_int_equal(decide(&w)->dest_node, 1);         /* without maintenance: pages to node 1 */
    w.nodes[1].maintenance = true;
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_NONE);
    assert_int_equal(d->reason, NT_PLACE_MAINTENANCE);
    assert_why_has(d, "node 1 is under maintenance: no pages go there");
    assert_why_has(d, "threads pinned by CPU affinity 1");
    assert_int_equal(d->page_dest_node, -1);
    assert_never_to(d, 1);
    /* every cycle the same: no streak builds up toward node 1 */
    for (int i = 0; i < 5; i++)
        assert_never_to(decide(&w), 1);
    assert_int_equal(w.mem.streak, 0);
}

/* test_nearer_node_preferred's four sockets: node 1 (nearest) is being
 * offlined, so node 2 takes the pages; with node 2 under maintenance too,
 * no node is left: nothing moves. */
static void test_maintenance_fallback_skips_node(void **state)
{
    (void)state;
    struct world w;
    four_sockets_far_memory(&w);
    assert_int_equal(decide(&w)->dest_node, 1);
    w.nodes[1].maintenance = true;
    const struct nt_place_decision *d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_MOVE_PAGES);
    assert_int_equal(d->dest_node, 2);
    w.nodes[2].maintenance = true;
    d = decide(&w);
    assert_int_equal(d->action, NT_PLACE_NONE);
    assert_never_to(d, 1);
    assert_never_to(d, 2);
}

/* A candidate that built up a streak before the drain is not carried out
 * after it: the cycle the node goes into maintenance, the streak toward it
 * ends. */
static void test_maintenance_stops_a_streak(void **state)
{
    (void)state;
    struct world w;
    scenario_b(&w);
    w.params.hysteresis_cycles = 3;
    assert_int_equal(decide(&w)->reason, NT_PLACE_HYSTERESIS);
    assert_int_equal(decide(&w)->reason, NT_PLACE_HYSTERESIS);   /* 2 of 3 toward node 1 */
    w.nodes[1].maintenance = true;
    for (int i = 0; i < 4; i++) {
        const struct nt_place_decision *d = decide(&w);
        assert_never_to(d, 1);
        assert_true(d->action == NT_PLACE_NONE || d->action == NT_PLACE_MOVE_PAGES);
    }
}

/* Load balancing never sends threads to a node under maintenance, and the
 * schedule defers page moves into one (moves off it go ahead). */
static void test_maintenance_balance_and_schedule(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, 3);
    for (unsigned i = 0; i < 3; i++)
        w.nodes[i].nr_cpus = 4;
    set_distance(&w, 0, 1, 15);
    set_distance(&w, 0, 2, 30);
    unsigned runnable[3] = { 20, 0, 0 };
    struct nt_place_balance b;
    assert_true(nt_place_balance(w.nodes, 3, w.distance, runnable, 0.5, &b));
    assert_int_equal(b.to, 1);
    w.nodes[1].maintenance = true;
    assert_true(nt_place_balance(w.nodes, 3, w.distance, runnable, 0.5, &b));
    assert_int_equal(b.to, 2);
    w.nodes[2].maintenance = true;
    assert_false(nt_place_balance(w.nodes, 3, w.distance, runnable, 0.5, &b));

    struct nt_place_node nodes[2];
    nodes_for_schedule(nodes, 500000, 500000);
    nodes[0].maintenance = true;
    const struct nt_place_page_move proposed[] = {
        { .proc_id = 1, .from = 1, .to = 0, .pages = 400, .gain_usec = 4000 },
        { .proc_id = 2, .from = 0, .to = 1, .pages = 300, .gain_usec = 300 },
    };
    struct nt_place_page_move steps[4];
    struct nt_place_schedule_stats st;
    assert_int_equal(nt_place_schedule(proposed, 2, nodes, 2, 100000, steps, 4, &st), 1);
    assert_int_equal(steps[0].proc_id, 2);
    assert_int_equal(st.pages_deferred, 400);
    assert_int_equal(st.moves_deferred, 1);
}

/* ---- a page move: hot pages first, then the rest ---------------------------- */

/* Three fast nodes (0-2) and a slow one (3). */
static void nodes_for_hot(struct nt_place_node *nodes)
{
    for (int i = 0; i < 4; i++)
        nodes[i] = (struct nt_place_node){
            .id = i, .nr_cpus = i < 3 ? 16 : 0, .free_pages = 800000, .total_pages = 1u << 20,
            .low_watermark_pages = 20000, .slow = i == 3,
        };
}

static void test_pick_hot_from_other_fast_nodes(void **state)
{
    (void)state;
    struct nt_place_node nodes[4];
    nodes_for_hot(nodes);
    const struct nt_place_page pages[] = {
        { .vaddr = 0x1000, .heat = 50, .node = 1 },
        { .vaddr = 0x2000, .heat = 90, .node = 0 },    /* on dest already */
        { .vaddr = 0x3000, .heat = 80, .node = 3 },    /* slow tier: tiering's */
        { .vaddr = 0x4000, .heat = 70, .node = -1 },   /* node not known */
        { .vaddr = 0x5000, .heat = 60, .node = 2 },
        { .vaddr = 0x6000, .heat = 0.5, .node = 1 },   /* not hot */
        { .vaddr = 0x7000, .heat = 99, .node = 7 },    /* not in the topology */
        { .vaddr = 0x8000, .heat = 1, .node = 2 },     /* just hot */
    };
    uint64_t out[8];
    long n = nt_place_pick_hot(pages, 8, nodes, 4, 0, 1.0, 8, out);
    assert_int_equal(n, 3);
    assert_int_equal(out[0], 0x5000);                  /* hottest first */
    assert_int_equal(out[1], 0x1000);
    assert_int_equal(out[2], 0x8000);
}

static void test_pick_hot_order_and_cap(void **state)
{
    (void)state;
    struct nt_place_node nodes[4];
    nodes_for_hot(nodes);
    /* Not sorted on input; ties go by address. */
    const struct nt_place_page pages[] = {
        { .vaddr = 0x9000, .heat = 5, .node = 1 },
        { .vaddr = 0x3000, .heat = 20, .node = 1 },
        { .vaddr = 0x5000, .heat = 5, .node = 2 },
        { .vaddr = 0x1000, .heat = 10, .node = 1 },
    };
    uint64_t out[4];
    assert_int_equal(nt_place_pick_hot(pages, 4, nodes, 4, 0, 1.0, 3, out), 3);
    assert_int_equal(out[0], 0x3000);
    assert_int_equal(out[1], 0x1000);
    assert_int_equal(out[2], 0x5000);
    /* Another destination: its own pages stay out. */
    assert_int_equal(nt_place_pick_hot(pages, 4, nodes, 4, 1, 1.0, 4, out), 1);
    assert_int_equal(out[0], 0x5000);
    /* Nothing to pick. */
    assert_int_equal(nt_place_pick_hot(pages, 0, nodes, 4, 0, 1.0, 4, out), 0);
    assert_int_equal(nt_place_pick_hot(pages, 4, nodes, 4, 0, 1.0, 0, out), 0);
    assert_int_equal(nt_place_pick_hot(pages, 4, nodes, 4, 0, 100.0, 4, out), 0);
}

static void test_rest_goes_on_a_later_cycle(void **state)
{
    (void)state;
    struct nt_place_node nodes[4];
    nodes_for_hot(nodes);
    unsigned threads_on[4] = { 2, 0, 0, 0 };
    struct nt_place_rest rest = { .pending = true, .dest_node = 0, .thread_node = 0, .since_usec = 10 * SEC };
    assert_int_equal(nt_place_rest_check(&rest, nodes, 4, threads_on, true, false, false, 10 * SEC),
                     NT_PLACE_REST_WAIT);
    assert_int_equal(nt_place_rest_check(&rest, nodes, 4, threads_on, true, false, false, 9 * SEC),
                     NT_PLACE_REST_WAIT);
    assert_int_equal(nt_place_rest_check(&rest, nodes, 4, threads_on, true, false, false, 11 * SEC),
                     NT_PLACE_REST_GO);
    assert_string_equal(nt_place_rest_verdict_to_string(NT_PLACE_REST_GO), "go");
    /* A tie with another node still counts as running there. */
    threads_on[1] = 2;
    assert_int_equal(nt_place_rest_check(&rest, nodes, 4, threads_on, true, false, false, 11 * SEC),
                     NT_PLACE_REST_GO);
    /* dest was a room fallback: the threads are on node 1, the pages go to 0. */
    unsigned on1[4] = { 0, 3, 0, 0 };
    struct nt_place_rest fb = { .pending = true, .dest_node = 0, .thread_node = 1, .since_usec = 0 };
    assert_int_equal(nt_place_rest_check(&fb, nodes, 4, on1, true, false, false, SEC), NT_PLACE_REST_GO);
}

static void test_rest_called_off(void **state)
{
    (void)state;
    struct nt_place_node nodes[4];
    nodes_for_hot(nodes);
    unsigned threads_on[4] = { 2, 0, 0, 0 };
    const struct nt_place_rest rest = { .pending = true, .dest_node = 0, .thread_node = 0, .since_usec = 0 };
    uint64_t now = SEC;
    assert_int_equal(nt_place_rest_check(&rest, nodes, 4, threads_on, false, false, false, now),
                     NT_PLACE_REST_GONE);
    assert_int_equal(nt_place_rest_check(&rest, nodes, 4, threads_on, true, true, false, now),
                     NT_PLACE_REST_ADVISE);
    assert_int_equal(nt_place_rest_check(&rest, nodes, 4, threads_on, true, false, true, now),
                     NT_PLACE_REST_PINNED);
    nodes[0].maintenance = true;
    assert_int_equal(nt_place_rest_check(&rest, nodes, 4, threads_on, true, false, false, now),
                     NT_PLACE_REST_MAINTENANCE);
    assert_string_equal(nt_place_rest_verdict_to_string(NT_PLACE_REST_MAINTENANCE),
                        "destination under maintenance");
    nodes[0].maintenance = false;
    nodes[0].free_pages = 19999;
    assert_int_equal(nt_place_rest_check(&rest, nodes, 4, threads_on, true, false, false, now),
                     NT_PLACE_REST_NO_ROOM);
    nodes[0].free_pages = 800000;
    /* Most threads now on node 1 (moved, or the scheduler moved them). */
    unsigned moved[4] = { 1, 2, 0, 0 };
    assert_int_equal(nt_place_rest_check(&rest, nodes, 4, moved, true, false, false, now),
                     NT_PLACE_REST_THREADS_MOVED);
    unsigned none[4] = { 0, 0, 0, 0 };
    assert_int_equal(nt_place_rest_check(&rest, nodes, 4, none, true, false, false, now),
                     NT_PLACE_REST_THREADS_MOVED);
    assert_int_equal(nt_place_rest_check(&rest, nodes, 4, NULL, true, false, false, now),
                     NT_PLACE_REST_THREADS_MOVED);
    /* dest no longer in the topology (hot-removed). */
    const struct nt_place_rest gone = { .pending = true, .dest_node = 9, .thread_node = 0, .since_usec = 0 };
    assert_int_equal(nt_place_rest_check(&gone, nodes, 4, threads_on, true, false, false, now),
                     NT_PLACE_REST_NODE_GONE);
    assert_string_equal(nt_place_rest_verdict_to_string((enum nt_place_rest_verdict)99), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_distance_unknown),
        cmocka_unit_test(test_no_samples),
        cmocka_unit_test(test_local_enough),
        cmocka_unit_test(test_gain_below_cost),
        cmocka_unit_test(test_threads_cheaper),
        cmocka_unit_test(test_pages_cheaper),
        cmocka_unit_test(test_threads_pinned_moves_pages),
        cmocka_unit_test(test_pages_pinned_moves_threads),
        cmocka_unit_test(test_both_pinned),
        cmocka_unit_test(test_cpuless_node_only_receives_pages),
        cmocka_unit_test(test_no_room),
        cmocka_unit_test(test_no_room_moves_threads),
        cmocka_unit_test(test_nearer_node_preferred),
        cmocka_unit_test(test_mem_node_tie_nearer),
        cmocka_unit_test(test_hysteresis),
        cmocka_unit_test(test_cooldown),
        cmocka_unit_test(test_settle_after_thread_move),
        cmocka_unit_test(test_cooldown_clock_backwards),
        cmocka_unit_test(test_oscillation_is_ignored),
        cmocka_unit_test(test_balance_converges_without_overshoot),
        cmocka_unit_test(test_balance_unequal_nodes),
        cmocka_unit_test(test_balance_damping_capped_and_nearest),
        cmocka_unit_test(test_schedule_budget_and_gain_order),
        cmocka_unit_test(test_schedule_watermark),
        cmocka_unit_test(test_schedule_full_nodes_exchange),
        cmocka_unit_test(test_schedule_edge_cases),
        cmocka_unit_test(test_maintenance_node_takes_no_threads),
        cmocka_unit_test(test_maintenance_node_takes_no_pages),
        cmocka_unit_test(test_maintenance_fallback_skips_node),
        cmocka_unit_test(test_maintenance_stops_a_streak),
        cmocka_unit_test(test_maintenance_balance_and_schedule),
        cmocka_unit_test(test_pick_hot_from_other_fast_nodes),
        cmocka_unit_test(test_pick_hot_order_and_cap),
        cmocka_unit_test(test_rest_goes_on_a_later_cycle),
        cmocka_unit_test(test_rest_called_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
