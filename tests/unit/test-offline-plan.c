/* The offline planner: targets, zones, capacity, bound processes, order,
 * drain and online, from plain structs.
 *
 * The world: 128 MiB blocks; node 0 (1 CPU, boot memory, blocks 0-7 in
 * ZONE_NORMAL, 100 MiB used each), node 1 (1 CPU, blocks 8-15, the same)
 * and node 2 (no CPU, slow tier, hot-added blocks 16-19 in ZONE_MOVABLE
 * holding 100, 100, 100 and 10 MiB). Distances 0-1 21, 0-2 and 1-2 30.
 * Room above the watermarks: node 0 180 MiB (200 free, 20 low), node 1
 * 280 MiB (300 free, 20 low), node 2 182 MiB (202 free, 20 low).
 * world4() adds node 3 (1 CPU, blocks 24-27) for tie-breaking. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "numatier/offline-plan.h"
#include "numatier/util.h"

#define MIB (UINT64_C(1) << 20)
#define BLOCK (128 * MIB)
#define MAX_BLOCKS 32
#define MAX_NODES 4

struct world {
    struct nt_offline_block blocks[MAX_BLOCKS];
    struct nt_offline_node nodes[MAX_NODES];
    unsigned distance[MAX_NODES * MAX_NODES];
    struct nt_offline_proc procs[4];
    unsigned ids[8];
    struct nt_offline_input in;
    struct nt_offline_request req;
    struct nt_offline_plan plan;
};

static void add_block(struct world *w, unsigned id, int node, const char *zones, uint64_t used)
{
    w->blocks[w->in.nr_blocks++] = (struct nt_offline_block){
        .id = id, .node = node, .online = true, .state = "online",
        .valid_zones = zones, .used_bytes = used,
    };
}

static void set_distance(struct world *w, unsigned i, unsigned j, unsigned d)
{
    w->distance[i * w->in.nr_nodes + j] = d;
    w->distance[j * w->in.nr_nodes + i] = d;
}

static void world_init(struct world *w, unsigned nr_nodes)
{
    memset(w, 0, sizeof(*w));
    static const uint64_t free_mib[MAX_NODES] = { 200, 300, 202, 300 };
    for (unsigned i = 0; i < nr_nodes; i++) {
        w->nodes[i] = (struct nt_offline_node){
            .id = (int)i, .nr_cpus = i == 2 ? 0 : 1, .online = true, .slow = i == 2,
            .free_bytes = free_mib[i] * MIB, .total_bytes = 1024 * MIB,
            .low_watermark_bytes = 20 * MIB,
        };
        for (unsigned j = 0; j < nr_nodes; j++)
            w->distance[i * nr_nodes + j] = i == j ? 10 : 21;
    }
    w->in = (struct nt_offline_input){
        .blocks = w->blocks, .block_size = BLOCK, .nodes = w->nodes, .nr_nodes = nr_nodes,
        .distance = w->distance, .procs = w->procs,
    };
    set_distance(w, 0, 2, 30);
    set_distance(w, 1, 2, 30);
    for (unsigned id = 0; id < 16; id++)
        add_block(w, id, id < 8 ? 0 : 1, "Normal", 100 * MIB);
    static const uint64_t node2_used_mib[] = { 100, 100, 100, 10 };
    for (unsigned k = 0; k < 4; k++)
        add_block(w, 16 + k, 2, "Movable", node2_used_mib[k] * MIB);
    w->req = (struct nt_offline_request){ .op = NT_OFFLINE_OP_OFFLINE, .target_node = -1 };
}

static void world(struct world *w)
{
    world_init(w, 3);
}

static void world4(struct world *w)
{
    world_init(w, 4);
    set_distance(w, 3, 2, 30);
    for (unsigned id = 24; id < 28; id++)
        add_block(w, id, 3, "Normal", 100 * MIB);
}

static struct nt_offline_block *block(struct world *w, unsigned id)
{
    size_t i = 0;
    while (i < w->in.nr_blocks && w->blocks[i].id != id)
        i++;
    assert_true(i < w->in.nr_blocks);
    return &w->blocks[i];
}

static void target_node(struct world *w, enum nt_offline_op op, int node)
{
    w->req.op = op;
    w->req.target_node = node;
}

static void target_blocks(struct world *w, enum nt_offline_op op, unsigned first, unsigned last)
{
    w->req.op = op;
    w->req.target_node = -1;
    w->req.nr_block_ids = 0;
    for (unsigned id = first; id <= last; id++)
        w->ids[w->req.nr_block_ids++] = id;
    w->req.block_ids = w->ids;
}

static void add_proc(struct world *w, pid_t pid, const char *comm, bool bound, const int *mems,
                     size_t nr_mems)
{
    struct nt_offline_proc *p = &w->procs[w->in.nr_procs++];
    *p = (struct nt_offline_proc){ .pid = pid, .comm = comm, .bound = bound };
    for (size_t i = 0; i < nr_mems; i++)
        nt_nodeset_set(&p->mems, mems[i]);
}

/* Plans, checks the call succeeded, and leaves the plan for teardown. */
static const struct nt_offline_plan *plan(struct world *w)
{
    nt_offline_plan_free(&w->plan);
    assert_int_equal(nt_offline_plan(&w->in, &w->req, &w->plan), 0);
    assert_true(w->plan.message[0] != '\0');
    return &w->plan;
}

static void done(struct world *w)
{
    nt_offline_plan_free(&w->plan);
}

static void assert_has(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("\"%s\" lacks \"%s\"", text, part);
}

static void assert_dest(const struct nt_offline_plan *p, size_t i, int node, uint64_t mib)
{
    assert_true(i < p->nr_dests);
    assert_int_equal(p->dests[i].node, node);
    assert_int_equal(p->dests[i].bytes, mib * MIB);
}

static void assert_step(const struct nt_offline_plan *p, size_t i, unsigned block,
                        enum nt_offline_verdict verdict)
{
    assert_true(i < p->nr_steps);
    if (p->steps[i].block != block || p->steps[i].verdict != verdict)
        fail_msg("step %zu: block %u %s, want block %u %s", i, p->steps[i].block,
                 nt_offline_verdict_to_string(p->steps[i].verdict), block,
                 nt_offline_verdict_to_string(verdict));
}

/* ---- strings ---------------------------------------------------------------- */

static void test_strings(void **state)
{
    (void)state;
    assert_string_equal(nt_offline_op_to_string(NT_OFFLINE_OP_OFFLINE), "offline");
    assert_string_equal(nt_offline_op_to_string(NT_OFFLINE_OP_ONLINE), "online");
    assert_string_equal(nt_offline_op_to_string(NT_OFFLINE_OP_DRAIN), "drain");
    assert_string_equal(nt_offline_op_to_string((enum nt_offline_op)9), "unknown");
    assert_string_equal(nt_offline_verdict_to_string(NT_OFFLINE_DO), "do");
    assert_string_equal(nt_offline_verdict_to_string(NT_OFFLINE_DO_MAY_FAIL), "may-fail");
    assert_string_equal(nt_offline_verdict_to_string(NT_OFFLINE_SKIP), "skip");
    assert_string_equal(nt_offline_verdict_to_string(NT_OFFLINE_IMPOSSIBLE), "impossible");
    assert_string_equal(nt_offline_verdict_to_string((enum nt_offline_verdict)9), "unknown");
    static const char *const refusals[] = {
        "ok", "nothing-to-do", "no-targets", "infeasible", "insufficient-capacity",
        "bound-processes", "no-cpu-destination",
    };
    for (int r = NT_OFFLINE_OK; r <= NT_OFFLINE_NO_CPU_DESTINATION; r++)
        assert_string_equal(nt_offline_refusal_to_string((enum nt_offline_refusal)r), refusals[r]);
    assert_string_equal(nt_offline_refusal_to_string((enum nt_offline_refusal)99), "unknown");
}

/* ---- rule 2: capacity -------------------------------------------------------- */

/* 310 MiB from node 2 into 180 + 280 MiB of room; 0 and 1 tie at 30. */
static void test_capacity_fits(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 2);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->op, NT_OFFLINE_OP_OFFLINE);
    assert_int_equal(p->used_bytes, 310 * MIB);
    assert_int_equal(p->room_bytes, 460 * MIB);
    assert_int_equal(p->nr_dests, 2);
    assert_dest(p, 0, 0, 180);
    assert_dest(p, 1, 1, 130);
    assert_true(nt_nodeset_test(&p->emptied, 2));
    assert_false(nt_nodeset_test(&p->emptied, 0));
    assert_int_equal(p->cpu_node, -1);
    assert_int_equal(p->nr_rebinds, 0);
    assert_int_equal(p->nr_steps, 4);
    assert_string_equal(p->message, "ready to offline node 2: 4 blocks; 310 MiB in use goes to "
                                    "node 0 (180 MiB), node 1 (130 MiB).");
    done(&w);
}

static void test_capacity_short(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    w.nodes[0].free_bytes = 70 * MIB;       /* 50 MiB of room */
    w.nodes[1].free_bytes = 90 * MIB;       /* 70 MiB of room */
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 2);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_INSUFFICIENT_CAPACITY);
    assert_int_equal(p->used_bytes, 310 * MIB);
    assert_int_equal(p->room_bytes, 120 * MIB);
    assert_int_equal(p->nr_dests, 0);
    assert_string_equal(p->message, "cannot offline node 2: 310 MiB in use, only 120 MiB free "
                                    "above the watermarks on nodes 0, 1 (short by 190 MiB).");
    /* The blocks are still explained. */
    assert_int_equal(p->nr_steps, 4);
    done(&w);
}

/* Room equal to the need fits; one byte more does not. */
static void test_capacity_exact(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    w.nodes[1].free_bytes = 150 * MIB;      /* 130 MiB of room: 180 + 130 = 310 */
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 2);
    assert_int_equal(plan(&w)->refusal, NT_OFFLINE_OK);
    assert_dest(&w.plan, 1, 1, 130);
    block(&w, 16)->used_bytes += 1;
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_INSUFFICIENT_CAPACITY);
    assert_has(p->message, "311 MiB in use, only 310 MiB free");
    assert_has(p->message, "(short by 1 MiB)");
    done(&w);
}

static void test_nothing_can_take_it(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    w.nodes[0].online = false;
    w.nodes[1].online = false;
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 2);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_INSUFFICIENT_CAPACITY);
    assert_string_equal(p->message, "cannot offline node 2: 310 MiB in use, and no other node can take it.");
    done(&w);
}

/* From node 2: node 1 and 3 at 25 (tie, by id), node 0 at 30. */
static void test_nearest_first(void **state)
{
    (void)state;
    struct world w;
    world4(&w);
    set_distance(&w, 2, 1, 25);
    set_distance(&w, 2, 3, 25);
    w.nodes[1].free_bytes = 120 * MIB;      /* 100 MiB of room */
    w.nodes[3].free_bytes = 120 * MIB;
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 2);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->nr_dests, 3);
    assert_dest(p, 0, 1, 100);
    assert_dest(p, 1, 3, 100);
    assert_dest(p, 2, 0, 110);
    done(&w);
}

/* No distance table: 10 locally, 20 elsewhere, so ties go by id. */
static void test_default_distances(void **state)
{
    (void)state;
    struct world w;
    world4(&w);
    w.in.distance = NULL;
    w.nodes[0].free_bytes = 20 * MIB;       /* no room at all */
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 2);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->nr_dests, 2);
    assert_dest(p, 0, 1, 280);
    assert_dest(p, 1, 3, 30);
    done(&w);
}

static void test_watermarks(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    w.nodes[1].low_watermark_bytes = 300 * MIB;     /* free 300: nothing above it */
    w.nodes[0].low_watermark_bytes = 500 * MIB;     /* above free: no room, no wrap */
    target_blocks(&w, NT_OFFLINE_OP_OFFLINE, 19, 19);   /* 10 MiB */
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_INSUFFICIENT_CAPACITY);
    assert_int_equal(p->room_bytes, 0);

    /* Node 2 keeps blocks 16-18 online, so it may take block 19's memory:
     * 202 free - 118 free inside block 19 - 20 low = 64 MiB. */
    w.req.allow_slow = true;
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->room_bytes, 64 * MIB);
    assert_int_equal(p->nr_dests, 1);
    assert_dest(p, 0, 2, 10);
    done(&w);
}

/* Offline node 0, 200 MiB in use: slow node 2 is nearer (12) than fast
 * node 1 (21), but slow tiers come last and only with allow_slow. */
static void test_slow_tier_last(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    for (unsigned id = 0; id < 8; id++)
        block(&w, id)->used_bytes = 25 * MIB;
    set_distance(&w, 0, 2, 12);
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 0);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->nr_dests, 1);
    assert_dest(p, 0, 1, 200);
    assert_int_equal(p->room_bytes, 280 * MIB);     /* node 2 not counted */

    w.req.allow_slow = true;
    p = plan(&w);
    assert_int_equal(p->nr_dests, 1);               /* fast node first, even though farther */
    assert_dest(p, 0, 1, 200);

    w.nodes[1].free_bytes = 170 * MIB;              /* 150 MiB of room */
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->nr_dests, 2);
    assert_dest(p, 0, 1, 150);
    assert_dest(p, 1, 2, 50);

    w.req.allow_slow = false;
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_INSUFFICIENT_CAPACITY);
    assert_string_equal(p->message, "cannot offline node 0: 200 MiB in use, only 150 MiB free above "
                                    "the watermarks on node 1 (short by 50 MiB). Slow-tier node 2 "
                                    "was left out because slow tiers may not receive evacuated memory.");
    done(&w);
}

/* Blocks 6-7 of node 0: node 0 keeps 6 blocks, and its 200 MiB free less
 * the 2 * 28 MiB free inside 6-7, less 20 low, is 124 MiB of room. */
static void test_partly_targeted_node(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    target_blocks(&w, NT_OFFLINE_OP_OFFLINE, 6, 7);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->used_bytes, 200 * MIB);
    assert_int_equal(p->room_bytes, (124 + 280) * MIB);
    assert_int_equal(p->nr_dests, 2);
    assert_dest(p, 0, 0, 124);                  /* its own node is nearest */
    assert_dest(p, 1, 1, 76);
    assert_true(nt_nodeset_empty(&p->emptied));
    assert_has(p->message, "ready to offline blocks 6-7: 2 blocks, 2 of them not in ZONE_MOVABLE "
                           "and may fail;");
    done(&w);
}

static void test_whole_node_gives_nothing(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    for (unsigned id = 0; id < 8; id++)
        block(&w, id)->used_bytes = 25 * MIB;
    w.nodes[0].free_bytes = 900 * MIB;          /* plenty, but all of it is leaving */
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 0);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->room_bytes, 280 * MIB);
    assert_int_equal(p->nr_dests, 1);
    assert_dest(p, 0, 1, 200);
    assert_true(nt_nodeset_test(&p->emptied, 0));

    /* Naming every block by id empties the node just the same. */
    target_blocks(&w, NT_OFFLINE_OP_OFFLINE, 0, 7);
    p = plan(&w);
    assert_true(nt_nodeset_test(&p->emptied, 0));
    assert_int_equal(p->room_bytes, 280 * MIB);
    done(&w);
}

/* Blocks 7 (node 0) and 15 (node 1): each stays on its own node first. */
static void test_two_source_nodes(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    w.ids[0] = 15;
    w.ids[1] = 7;
    w.ids[2] = 15;                              /* named twice: once is enough */
    w.req = (struct nt_offline_request){ .op = NT_OFFLINE_OP_OFFLINE, .target_node = -1,
                                         .block_ids = w.ids, .nr_block_ids = 3 };
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->nr_steps, 2);
    assert_int_equal(p->nr_dests, 2);
    assert_dest(p, 0, 0, 100);
    assert_dest(p, 1, 1, 100);
    assert_has(p->message, "ready to offline blocks 7, 15:");
    done(&w);
}

/* ---- rule 1: zones and states ----------------------------------------------- */

static void test_mixed_zones_refused(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    block(&w, 17)->valid_zones = "none";
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 2);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_INFEASIBLE);
    assert_string_equal(p->message, "cannot offline node 2: block 17 spans several zones "
                                    "(valid_zones \"none\"): the kernel cannot offline it.");
    assert_int_equal(p->nr_steps, 4);
    assert_step(p, 3, 17, NT_OFFLINE_IMPOSSIBLE);
    assert_int_equal(p->nr_dests, 0);

    /* A block no node claims cannot be planned either. */
    block(&w, 17)->valid_zones = "Movable";
    block(&w, 17)->node = -1;
    target_blocks(&w, NT_OFFLINE_OP_OFFLINE, 17, 17);
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_INFEASIBLE);
    assert_has(p->message, "block 17 belongs to no NUMA node");
    done(&w);
}

/* The caller may know the kernel will refuse a block (a reserved range
 * inside it): impossible with the caller's reason, however movable its
 * zone; offline already, it is only skipped; a drain does not care. */
static void test_unofflinable_reason(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    const char *why = "is not entirely System RAM (reserved 0x9ffe0000-0x9fffffff inside)";
    block(&w, 19)->unofflinable_reason = why;
    block(&w, 18)->unofflinable_reason = "";        /* empty: no reason */
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 2);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_INFEASIBLE);
    assert_string_equal(p->message, "cannot offline node 2: block 19 is not entirely System RAM "
                                    "(reserved 0x9ffe0000-0x9fffffff inside).");
    assert_step(p, 0, 18, NT_OFFLINE_DO);
    assert_step(p, 3, 19, NT_OFFLINE_IMPOSSIBLE);
    assert_string_equal(p->steps[3].reason, why);
    assert_int_equal(p->nr_dests, 0);

    block(&w, 19)->online = false;
    block(&w, 19)->state = "offline";
    block(&w, 19)->used_bytes = 0;
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_step(p, 3, 19, NT_OFFLINE_SKIP);

    block(&w, 19)->online = true;
    block(&w, 19)->state = "online";
    target_node(&w, NT_OFFLINE_OP_DRAIN, 2);
    w.nodes[0].free_bytes = 900 * MIB;
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_step(p, 0, 19, NT_OFFLINE_DO);
    done(&w);
}

static void test_not_movable_may_fail(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    block(&w, 18)->valid_zones = "Normal";
    block(&w, 16)->valid_zones = "";
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 2);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_step(p, 0, 18, NT_OFFLINE_DO_MAY_FAIL);
    assert_string_equal(p->steps[0].reason, "not in ZONE_MOVABLE (valid_zones \"Normal\"): unmovable "
                                            "kernel allocations may pin it; 100 MiB in use");
    assert_step(p, 1, 16, NT_OFFLINE_DO_MAY_FAIL);
    assert_has(p->steps[1].reason, "zone unknown");
    assert_step(p, 2, 19, NT_OFFLINE_DO);
    assert_string_equal(p->steps[2].reason, "in ZONE_MOVABLE; 10 MiB in use to evacuate");
    assert_has(p->message, "4 blocks, 2 of them not in ZONE_MOVABLE and may fail");

    w.req.refuse_may_fail = true;
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_INFEASIBLE);
    assert_string_equal(p->message, "refusing to offline node 2: blocks 16, 18 are not in ZONE_MOVABLE, "
                                    "so unmovable kernel allocations may pin them; allow blocks that "
                                    "may fail to try anyway.");
    done(&w);
}

/* valid_zones is a list of words; only the whole word counts. */
static void test_zone_words(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    block(&w, 19)->valid_zones = "Normal Movable";
    block(&w, 18)->valid_zones = "NotMovable";
    block(&w, 17)->valid_zones = "nonesuch";
    target_blocks(&w, NT_OFFLINE_OP_OFFLINE, 17, 19);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_step(p, 0, 18, NT_OFFLINE_DO_MAY_FAIL);
    assert_step(p, 1, 17, NT_OFFLINE_DO_MAY_FAIL);
    assert_step(p, 2, 19, NT_OFFLINE_DO);
    done(&w);
}

static void test_already_offline_skipped(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    block(&w, 18)->online = false;
    block(&w, 18)->state = "offline";
    block(&w, 18)->used_bytes = 0;
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 2);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->used_bytes, 210 * MIB);
    assert_step(p, 3, 18, NT_OFFLINE_SKIP);
    assert_string_equal(p->steps[3].reason, "already offline");
    assert_int_equal(p->steps[3].used_bytes, 0);
    assert_has(p->message, "3 blocks (1 more already offline)");

    /* A skipped block is not judged: its zones do not matter. */
    block(&w, 18)->valid_zones = "none";
    block(&w, 18)->state = "going-offline";
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_string_equal(p->steps[3].reason, "already offline (state \"going-offline\")");
    done(&w);
}

static void test_all_skipped_nothing_to_do(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    for (unsigned id = 16; id < 20; id++)
        block(&w, id)->online = false;
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 2);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_NOTHING_TO_DO);
    assert_string_equal(p->message, "nothing to do: every block of node 2 is already offline.");
    assert_int_equal(p->nr_steps, 4);
    assert_int_equal(p->used_bytes, 0);
    done(&w);
}

/* ---- no targets ---------------------------------------------------------------- */

static void test_no_targets(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    target_blocks(&w, NT_OFFLINE_OP_OFFLINE, 19, 21);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_NO_TARGETS);
    assert_string_equal(p->message, "cannot offline blocks 19-21: no memory blocks 20-21 on this system.");

    target_node(&w, NT_OFFLINE_OP_OFFLINE, 3);
    w.req.nr_block_ids = 0;
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_NO_TARGETS);
    assert_string_equal(p->message, "cannot offline node 3: it has no memory blocks.");
    assert_int_equal(p->nr_steps, 0);

    target_node(&w, NT_OFFLINE_OP_ONLINE, 3);
    assert_int_equal(plan(&w)->refusal, NT_OFFLINE_NO_TARGETS);
    done(&w);
}

/* ---- rule 3: bound processes ------------------------------------------------- */

static void test_bound_processes(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    static const int only2[] = { 2 }, zero_and_2[] = { 0, 2 };
    add_proc(&w, 1234, "memhog", true, only2, 1);
    add_proc(&w, 1300, "db", true, zero_and_2, 2);          /* may still use node 0 */
    add_proc(&w, 1400, "idle", false, only2, 1);            /* default policy */
    add_proc(&w, 1500, "a-very-long-command-name", true, only2, 1);
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 2);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_BOUND_PROCESSES);
    assert_string_equal(p->message, "cannot offline node 2: 2 processes are bound only to memory "
                                    "being emptied: 1234 (memhog), 1500 (a-very-long-command-name); "
                                    "use --force to rebind them to node 0.");
    assert_int_equal(p->nr_rebinds, 0);

    w.req.force = true;
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->nr_rebinds, 2);
    assert_int_equal(p->rebinds[0].pid, 1234);
    assert_string_equal(p->rebinds[0].comm, "memhog");
    assert_true(nt_nodeset_test(&p->rebinds[0].from, 2));
    assert_false(nt_nodeset_test(&p->rebinds[0].from, 0));
    assert_int_equal(p->rebinds[0].to_node, p->dests[0].node);
    assert_int_equal(p->rebinds[1].pid, 1500);
    assert_string_equal(p->rebinds[1].comm, "a-very-long-com");     /* TASK_COMM_LEN */
    assert_has(p->message, "; 2 bound processes are rebound to node 0.");

    /* Offlining only part of node 2 leaves it memory: nobody is bound out. */
    w.req.force = false;
    target_blocks(&w, NT_OFFLINE_OP_OFFLINE, 18, 19);
    w.req.allow_slow = true;
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->nr_rebinds, 0);
    done(&w);
}

/* With no memory in use, a bound process still needs a node to go to. */
static void test_bound_nothing_in_use(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    for (unsigned id = 16; id < 20; id++)
        block(&w, id)->used_bytes = 0;
    set_distance(&w, 2, 1, 25);
    static const int only2[] = { 2 };
    add_proc(&w, 1234, "memhog", true, only2, 1);
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 2);
    w.req.force = true;
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->nr_dests, 0);
    assert_int_equal(p->nr_rebinds, 1);
    assert_int_equal(p->rebinds[0].to_node, 1);
    assert_has(p->message, "no memory in use to move");

    w.nodes[0].online = w.nodes[1].online = false;
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_BOUND_PROCESSES);
    assert_has(p->message, "no other node is left to rebind it to.");
    done(&w);
}

/* ---- rule 4: order ------------------------------------------------------------ */

static void test_order(void **state)
{
    (void)state;
    struct world w;
    world4(&w);
    block(&w, 17)->valid_zones = "Normal";
    block(&w, 19)->valid_zones = "Normal";
    block(&w, 24)->online = false;
    w.nodes[1].free_bytes = 900 * MIB;
    target_blocks(&w, NT_OFFLINE_OP_OFFLINE, 16, 19);
    w.ids[w.req.nr_block_ids++] = 24;
    w.ids[w.req.nr_block_ids++] = 25;
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->nr_steps, 6);
    assert_step(p, 0, 25, NT_OFFLINE_DO_MAY_FAIL);
    assert_step(p, 1, 19, NT_OFFLINE_DO_MAY_FAIL);
    assert_step(p, 2, 17, NT_OFFLINE_DO_MAY_FAIL);
    assert_step(p, 3, 18, NT_OFFLINE_DO);
    assert_step(p, 4, 16, NT_OFFLINE_DO);
    assert_step(p, 5, 24, NT_OFFLINE_SKIP);
    assert_int_equal(p->steps[0].node, 3);
    assert_int_equal(p->steps[3].used_bytes, 100 * MIB);
    assert_has(p->message, "ready to offline blocks 16-19, 24-25: 5 blocks");
    done(&w);
}

/* ---- rule 5: drain ---------------------------------------------------------------- */

static void test_drain(void **state)
{
    (void)state;
    struct world w;
    world4(&w);
    set_distance(&w, 1, 3, 15);
    block(&w, 9)->valid_zones = "none";     /* drain offlines nothing: zones do not matter */
    target_node(&w, NT_OFFLINE_OP_DRAIN, 1);
    w.nodes[0].free_bytes = 900 * MIB;      /* 880 MiB of room */
    w.nodes[3].free_bytes = 420 * MIB;      /* 400 MiB of room */
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->op, NT_OFFLINE_OP_DRAIN);
    assert_int_equal(p->cpu_node, 3);       /* nearest node with CPUs */
    assert_int_equal(p->used_bytes, 800 * MIB);
    assert_dest(p, 0, 3, 400);
    assert_dest(p, 1, 0, 400);
    assert_true(nt_nodeset_test(&p->emptied, 1));
    assert_int_equal(p->nr_steps, 8);
    for (size_t i = 0; i < p->nr_steps; i++)
        assert_int_equal(p->steps[i].verdict, NT_OFFLINE_DO);
    assert_string_equal(p->steps[0].reason, "100 MiB in use to evacuate; the block stays online");
    assert_string_equal(p->message, "ready to drain node 1: threads move to node 3; 8 blocks; "
                                    "800 MiB in use goes to node 3 (400 MiB), node 0 (400 MiB).");

    /* Equal distances: the lower id takes the threads. */
    set_distance(&w, 1, 3, 21);
    assert_int_equal(plan(&w)->cpu_node, 0);
    done(&w);
}

static void test_drain_no_cpu_destination(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    w.nodes[0].nr_cpus = 0;
    w.nodes[0].free_bytes = 900 * MIB;
    target_node(&w, NT_OFFLINE_OP_DRAIN, 1);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_NO_CPU_DESTINATION);
    assert_int_equal(p->cpu_node, -1);
    assert_string_equal(p->message, "cannot drain node 1: no other node has CPUs to run its threads.");
    done(&w);
}

/* A CPU-less node needs no CPU destination; a CPU-only node has no
 * memory to move but still has threads. */
static void test_drain_cpuless_and_memoryless(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    target_node(&w, NT_OFFLINE_OP_DRAIN, 2);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->cpu_node, -1);
    assert_int_equal(p->used_bytes, 310 * MIB);

    for (unsigned id = 8; id < 16; id++)
        block(&w, id)->node = 0;            /* node 1 keeps its CPU, loses its memory */
    target_node(&w, NT_OFFLINE_OP_DRAIN, 1);
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->cpu_node, 0);
    assert_int_equal(p->nr_steps, 0);
    assert_string_equal(p->message, "ready to drain node 1: threads move to node 0; no online memory to move.");

    for (unsigned id = 16; id < 20; id++)
        block(&w, id)->online = false;
    target_node(&w, NT_OFFLINE_OP_DRAIN, 2);
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_NOTHING_TO_DO);
    assert_string_equal(p->message, "nothing to do: node 2 has no online memory and no CPUs.");

    w.nodes[1].nr_cpus = 0;
    target_node(&w, NT_OFFLINE_OP_DRAIN, 1);
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_NO_TARGETS);
    assert_string_equal(p->message, "cannot drain node 1: it has neither memory blocks nor CPUs.");
    done(&w);
}

/* ---- rule 6: online ------------------------------------------------------------- */

static void test_online(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    for (unsigned id = 16; id < 20; id++) {
        block(&w, id)->online = false;
        block(&w, id)->state = "offline";
        block(&w, id)->valid_zones = "Normal Movable";
    }
    block(&w, 17)->valid_zones = "Normal";
    block(&w, 18)->online = true;
    block(&w, 18)->state = "online";
    w.nodes[0].online = w.nodes[1].online = false;  /* no capacity check */
    target_node(&w, NT_OFFLINE_OP_ONLINE, 2);
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->op, NT_OFFLINE_OP_ONLINE);
    assert_int_equal(p->nr_steps, 4);
    assert_step(p, 0, 16, NT_OFFLINE_DO);
    assert_true(p->steps[0].online_movable);
    assert_string_equal(p->steps[0].reason, "offline; to be onlined into ZONE_MOVABLE");
    assert_step(p, 1, 17, NT_OFFLINE_DO);
    assert_false(p->steps[1].online_movable);
    assert_has(p->steps[1].reason, "the kernel's default zone (valid_zones \"Normal\")");
    assert_step(p, 2, 19, NT_OFFLINE_DO);
    assert_true(p->steps[2].online_movable);
    assert_step(p, 3, 18, NT_OFFLINE_SKIP);
    assert_string_equal(p->steps[3].reason, "already online");
    assert_int_equal(p->nr_dests, 0);
    assert_int_equal(p->used_bytes, 0);
    assert_true(nt_nodeset_empty(&p->emptied));
    assert_string_equal(p->message, "ready to online node 2: 3 blocks (1 more already online).");

    /* refuse_may_fail is about offlining: it does not stop onlining. */
    w.req.refuse_may_fail = true;
    assert_int_equal(plan(&w)->refusal, NT_OFFLINE_OK);

    target_blocks(&w, NT_OFFLINE_OP_ONLINE, 18, 18);
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_NOTHING_TO_DO);
    assert_string_equal(p->message, "nothing to do: block 18 is already online.");
    done(&w);
}

/* ---- malformed input ------------------------------------------------------------ */

static void expect_einval(struct world *w)
{
    nt_offline_plan_free(&w->plan);
    assert_int_equal(nt_offline_plan(&w->in, &w->req, &w->plan), -EINVAL);
    assert_null(w->plan.steps);
    assert_null(w->plan.dests);
    assert_null(w->plan.rebinds);
    assert_has(w->plan.message, "malformed request: ");
}

/* A copy whose input points at its own arrays, to spoil one at a time. */
static void copy_world(struct world *dst, const struct world *src)
{
    *dst = *src;
    dst->in.blocks = dst->blocks;
    dst->in.nodes = dst->nodes;
    dst->in.distance = dst->distance;
    dst->in.procs = dst->procs;
    memset(&dst->plan, 0, sizeof(dst->plan));
}

static void test_malformed(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 2);
    assert_int_equal(nt_offline_plan(NULL, &w.req, &w.plan), -EINVAL);
    assert_int_equal(nt_offline_plan(&w.in, NULL, &w.plan), -EINVAL);
    assert_int_equal(nt_offline_plan(&w.in, &w.req, NULL), -EINVAL);

    struct world m;
    copy_world(&m, &w);
    m.in.blocks = NULL;
    expect_einval(&m);
    copy_world(&m, &w), m.in.nodes = NULL;
    expect_einval(&m);
    copy_world(&m, &w), m.in.procs = NULL, m.in.nr_procs = 1;
    expect_einval(&m);
    copy_world(&m, &w), m.in.block_size = 0;
    expect_einval(&m);
    copy_world(&m, &w), m.req.op = (enum nt_offline_op)7;
    expect_einval(&m);
    copy_world(&m, &w), m.req.target_node = -2;
    expect_einval(&m);
    copy_world(&m, &w), m.req.target_node = NT_MAX_NODES;
    expect_einval(&m);
    copy_world(&m, &w), m.req.block_ids = m.ids, m.req.nr_block_ids = 1;     /* a node and ids */
    expect_einval(&m);
    copy_world(&m, &w), m.req.target_node = -1;                               /* neither */
    expect_einval(&m);
    copy_world(&m, &w), m.req.target_node = -1, m.req.nr_block_ids = 2;       /* ids NULL */
    expect_einval(&m);
    copy_world(&m, &w), target_blocks(&m, NT_OFFLINE_OP_DRAIN, 16, 17);       /* drain takes a node */
    expect_einval(&m);
    copy_world(&m, &w), m.blocks[3].id = 4;                                   /* block 4 twice */
    expect_einval(&m);
    copy_world(&m, &w), m.blocks[3].node = -7;
    expect_einval(&m);
    copy_world(&m, &w), m.nodes[1].id = 0;                                    /* node 0 twice */
    expect_einval(&m);
    copy_world(&m, &w), m.nodes[1].id = -1;
    expect_einval(&m);

    /* The world itself is fine. */
    assert_int_equal(plan(&w)->refusal, NT_OFFLINE_OK);
    done(&w);
}

static void test_plan_free(void **state)
{
    (void)state;
    struct nt_offline_plan p = { 0 };
    nt_offline_plan_free(&p);
    nt_offline_plan_free(NULL);
    assert_null(p.steps);

    struct world w;
    world(&w);
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 2);
    plan(&w);
    nt_offline_plan_free(&w.plan);
    assert_null(w.plan.steps);
    assert_int_equal(w.plan.nr_steps, 0);
    assert_int_equal(w.plan.nr_dests, 0);
    nt_offline_plan_free(&w.plan);                  /* twice is harmless */
}

/* ---- nodes under maintenance ------------------------------------------------------- */

/* Node 3 is drained: draining node 1 sends neither its threads nor its
 * memory there, though node 3 is the nearest; with node 0 drained too the
 * threads have nowhere to go. */
static void test_maintenance_node_receives_nothing(void **state)
{
    (void)state;
    struct world w;
    world4(&w);
    set_distance(&w, 1, 3, 15);
    target_node(&w, NT_OFFLINE_OP_DRAIN, 1);
    w.nodes[0].free_bytes = 900 * MIB;
    w.nodes[3].free_bytes = 420 * MIB;
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->cpu_node, 3);                   /* without maintenance: the nearest */
    w.nodes[3].maintenance = true;
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    assert_int_equal(p->cpu_node, 0);
    assert_int_equal(p->nr_dests, 1);
    assert_dest(p, 0, 0, 800);

    w.nodes[0].maintenance = true;
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_INSUFFICIENT_CAPACITY);     /* nowhere for the memory first */

    /* offline of node 2's blocks: the drained nodes take none of it */
    w.nodes[0].maintenance = false;
    target_node(&w, NT_OFFLINE_OP_OFFLINE, 2);
    w.nodes[2].maintenance = true;                      /* its own job: it is the target anyway */
    p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_OK);
    for (size_t i = 0; i < p->nr_dests; i++)
        assert_int_not_equal(p->dests[i].node, 3);
    done(&w);
}

static void test_maintenance_no_cpu_destination(void **state)
{
    (void)state;
    struct world w;
    world(&w);
    w.nodes[0].maintenance = true;
    w.nodes[0].free_bytes = 900 * MIB;
    w.nodes[2].free_bytes = 900 * MIB;
    target_node(&w, NT_OFFLINE_OP_DRAIN, 1);
    w.req.allow_slow = true;
    const struct nt_offline_plan *p = plan(&w);
    assert_int_equal(p->refusal, NT_OFFLINE_NO_CPU_DESTINATION);
    assert_string_equal(p->message, "cannot drain node 1: no other node has CPUs to run its threads "
                                    "(nodes under maintenance take none).");
    done(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_capacity_fits),
        cmocka_unit_test(test_capacity_short),
        cmocka_unit_test(test_capacity_exact),
        cmocka_unit_test(test_nothing_can_take_it),
        cmocka_unit_test(test_nearest_first),
        cmocka_unit_test(test_default_distances),
        cmocka_unit_test(test_watermarks),
        cmocka_unit_test(test_slow_tier_last),
        cmocka_unit_test(test_partly_targeted_node),
        cmocka_unit_test(test_whole_node_gives_nothing),
        cmocka_unit_test(test_two_source_nodes),
        cmocka_unit_test(test_mixed_zones_refused),
        cmocka_unit_test(test_unofflinable_reason),
        cmocka_unit_test(test_not_movable_may_fail),
        cmocka_unit_test(test_zone_words),
        cmocka_unit_test(test_already_offline_skipped),
        cmocka_unit_test(test_all_skipped_nothing_to_do),
        cmocka_unit_test(test_no_targets),
        cmocka_unit_test(test_bound_processes),
        cmocka_unit_test(test_bound_nothing_in_use),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_drain_no_cpu_destination),
        cmocka_unit_test(test_drain_cpuless_and_memoryless),
        cmocka_unit_test(test_online),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_plan_free),
        cmocka_unit_test(test_maintenance_node_receives_nothing),
        cmocka_unit_test(test_maintenance_no_cpu_destination),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
