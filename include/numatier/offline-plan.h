/* Offline planning (policy/offline-plan.c, pure): given memory blocks,
 * nodes and bound processes as plain structs, decide whether taking a set
 * of blocks out of service (or bringing them back, or draining a node) is
 * possible, where the memory in use goes, in what order the blocks go,
 * and explain every block. Nothing here reads the system or the clock.
 *
 * The rules, in order (nt_offline_plan):
 *   1. Targets: the blocks named by the request (ids, or all blocks of
 *      target_node). A target block that is already in the wanted state is
 *      skipped ("already offline"). A block whose valid_zones is "none"
 *      (mixed zones) cannot be offlined: the plan is refused (infeasible),
 *      naming it; so is a block with an unofflinable_reason (the caller
 *      knows better, e.g. a reserved range inside it), with that reason.
 *      A block whose valid_zones lacks "Movable" is planned but
 *      marked may_fail ("not in ZONE_MOVABLE: unmovable kernel allocations
 *      may pin it"); with refuse_may_fail the plan is refused instead.
 *   2. Capacity: the bytes in use in the target blocks (their used_bytes)
 *      must fit on the other nodes, above their low watermarks. Space is
 *      taken from the nearest nodes first (distance from the target node,
 *      ties by id); slow-tier nodes only after every fast node, and only
 *      when allow_slow. A node that is itself a target (whole node) gives
 *      nothing; a node partly targeted gives its free bytes outside the
 *      target blocks. If it does not fit: refused (insufficient-capacity),
 *      with the shortfall in bytes.
 *   3. Bound processes: a process whose memory policy or cpuset allows
 *      only target nodes (mems is a subset of the nodes being emptied)
 *      would lose all its memory: refused (bound-processes), naming each
 *      pid and comm, unless force, in which case each gets a rebind to the
 *      plan's first destination node, recorded in the plan.
 *   4. Order: blocks that may fail first (fail fast: the least to roll
 *      back), then the rest by descending block id (hot-added memory sits
 *      at the top of the address space).
 *   5. Drain (NT_OFFLINE_OP_DRAIN): rules 1-4 for the node's memory but no
 *      block changes state; in addition the node's CPUs must be emptied:
 *      cpu_node is the nearest other node with CPUs (refused with
 *      no-cpu-destination if there is none).
 *   A node under maintenance (another drain or offline has it) is neither
 *   a destination for memory (rule 2) nor the cpu_node (rule 5).
 *   6. Online (NT_OFFLINE_OP_ONLINE): targets that are offline are onlined
 *      (movable when their valid_zones includes Movable, else the kernel's
 *      default); online ones are skipped; no capacity or binding checks.
 *
 * Details the rules leave open, as policy/offline-plan.c settles them:
 *   - Every named block id must exist, or the plan is refused (no-targets)
 *     naming the missing ones: a typo must not offline the rest. An id
 *     named twice counts once. A target block with node -1 is impossible.
 *   - Zones are whole words of valid_zones; "" (unreadable) is may-fail.
 *   - Drain offlines nothing, so zones do not refuse it: every online block
 *     of the node is DO ("stays online"), offline ones SKIP. A node with
 *     CPUs but no blocks can be drained (threads only); a node with
 *     neither is no-targets; one with no online memory and no CPUs is
 *     nothing-to-do. A CPU-less node needs no cpu_node (it stays -1).
 *   - Memory from several source nodes: each source's bytes go nearest-
 *     first from that source, all drawing on the same room. A partly
 *     targeted source is its own nearest destination, so a dest may name
 *     a node the memory already sits on: the kernel's offline migrates it
 *     within the node, and move_pages to that node would be a no-op.
 *   - dests is filled only when the memory fits; room_bytes whenever
 *     capacity was checked.
 *   - Rebinds go to dests[0]; with nothing in use to move, to the node the
 *     first emptied node's memory would go to first. With no such node
 *     the plan is refused (bound-processes) even with force. Only procs
 *     with bound set and a non-empty mems count.
 *   - Steps order: may-fail, do, impossible, skip; offline and drain by
 *     descending id within each, online by ascending id.
 *   - A refused plan keeps its steps (with reasons) for the operator.
 *   - On -EINVAL message says what was malformed (both or neither of
 *     target_node and block_ids, drain by block ids, block_size 0, a node
 *     or block id listed twice, node ids out of range); arrays stay NULL.
 *
 * All sizes are bytes. Arrays in nt_offline_input are borrowed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "numatier/nodeset.h"

enum nt_offline_op {
    NT_OFFLINE_OP_OFFLINE,
    NT_OFFLINE_OP_ONLINE,
    NT_OFFLINE_OP_DRAIN,
};
const char *nt_offline_op_to_string(enum nt_offline_op op);    /* "offline", "online", "drain" */

struct nt_offline_block {
    unsigned id;
    int node;                   /* -1: no node claims it */
    bool online;                /* state is "online" */
    const char *state;          /* the kernel's word, for messages; may be NULL */
    const char *valid_zones;    /* "Movable", "Normal Movable", "none", "" (unknown) */
    uint64_t used_bytes;        /* estimated bytes in use (caller's estimate) */
    /* Non-NULL: the caller knows the kernel will refuse to offline this
     * block, and why, as a phrase that follows "block N" ("is not entirely
     * System RAM (...)"). An online target is then impossible. */
    const char *unofflinable_reason;
};

struct nt_offline_node {
    int id;
    unsigned nr_cpus;
    bool online;                /* has memory and is usable as a destination */
    bool slow;                  /* slow tier (CPU-less CXL/PMEM) */
    bool maintenance;           /* drained or being offlined: receives no memory and no threads */
    uint64_t free_bytes, total_bytes, low_watermark_bytes;
};

struct nt_offline_proc {
    pid_t pid;
    const char *comm;
    struct nt_nodeset mems;     /* nodes its mempolicy/cpuset allows */
    bool bound;                 /* mems comes from an explicit binding (mbind/set_mempolicy/cpuset) */
};

struct nt_offline_request {
    enum nt_offline_op op;
    int target_node;            /* >= 0: every block of this node; -1: use block_ids */
    const unsigned *block_ids;  /* with target_node == -1 */
    size_t nr_block_ids;
    bool force;                 /* rebind bound processes instead of refusing */
    bool allow_slow;            /* slow tiers may receive evacuated memory */
    bool refuse_may_fail;       /* refuse rather than try non-movable blocks */
};

struct nt_offline_input {
    const struct nt_offline_block *blocks;   /* all blocks of the system, any order */
    size_t nr_blocks;
    uint64_t block_size;
    const struct nt_offline_node *nodes;
    size_t nr_nodes;
    const unsigned *distance;                /* [nr_nodes * nr_nodes], by position; NULL: 10/20 */
    const struct nt_offline_proc *procs;
    size_t nr_procs;
};

enum nt_offline_verdict {
    NT_OFFLINE_DO,              /* will change state */
    NT_OFFLINE_DO_MAY_FAIL,     /* will try; may fail (not movable) */
    NT_OFFLINE_SKIP,            /* already in the wanted state */
    NT_OFFLINE_IMPOSSIBLE,      /* cannot (mixed zones, no node, unofflinable_reason); refuses the plan */
};
const char *nt_offline_verdict_to_string(enum nt_offline_verdict v);   /* "do", "may-fail", "skip", "impossible" */

#define NT_OFFLINE_REASON_MAX 160

struct nt_offline_step {        /* one target block, in execution order */
    unsigned block;
    int node;
    enum nt_offline_verdict verdict;
    bool online_movable;        /* online op: write "online_movable" rather than "online" */
    uint64_t used_bytes;
    char reason[NT_OFFLINE_REASON_MAX];   /* why this verdict, for the operator */
};

struct nt_offline_dest {        /* where the memory in use goes */
    int node;
    uint64_t bytes;
};

struct nt_offline_rebind {
    pid_t pid;
    char comm[16];
    struct nt_nodeset from;     /* its mems before */
    int to_node;
};

enum nt_offline_refusal {
    NT_OFFLINE_OK,
    NT_OFFLINE_NOTHING_TO_DO,       /* every target already in the wanted state (not an error) */
    NT_OFFLINE_NO_TARGETS,          /* no such block / node has no blocks */
    NT_OFFLINE_INFEASIBLE,          /* an impossible block (or may-fail with refuse_may_fail) */
    NT_OFFLINE_INSUFFICIENT_CAPACITY,
    NT_OFFLINE_BOUND_PROCESSES,
    NT_OFFLINE_NO_CPU_DESTINATION,  /* drain of a node when no other node has CPUs */
};
/* Machine-readable: "ok", "nothing-to-do", "no-targets", "infeasible",
 * "insufficient-capacity", "bound-processes", "no-cpu-destination". */
const char *nt_offline_refusal_to_string(enum nt_offline_refusal r);

struct nt_offline_plan {
    enum nt_offline_op op;
    enum nt_offline_refusal refusal;
    char message[512];          /* one sentence an operator can act on */
    struct nt_offline_step *steps;      /* malloc'd, execution order */
    size_t nr_steps;
    struct nt_offline_dest *dests;      /* malloc'd, nearest first */
    size_t nr_dests;
    struct nt_offline_rebind *rebinds;  /* malloc'd (force) */
    size_t nr_rebinds;
    uint64_t used_bytes;        /* total to evacuate */
    uint64_t room_bytes;        /* total room found on the destinations */
    struct nt_nodeset emptied;  /* nodes whose every block is a target */
    int cpu_node;               /* drain: where threads go; -1 otherwise */
};

/* Fill plan (zeroed by the caller). Returns 0 with plan->refusal telling
 * whether it may go ahead (a refusal is a normal outcome, with message), or
 * -ENOMEM / -EINVAL (malformed input: NULL arrays with counts, unknown op). */
int nt_offline_plan(const struct nt_offline_input *in, const struct nt_offline_request *req,
                    struct nt_offline_plan *plan);
void nt_offline_plan_free(struct nt_offline_plan *plan);       /* frees the arrays; NULL ok */
