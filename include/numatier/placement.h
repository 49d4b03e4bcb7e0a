/* Placement policy (policy/placement.c, pure): for each process, whether to
 * move its threads to its memory or its memory to its threads; damped load
 * balancing between nodes; and the per-cycle schedule of page moves under
 * the migration budget. Plain structs in, plain structs out; time comes in
 * as now_usec. Arrays are indexed by a node's position in the node array,
 * and node ids in outputs are the nodes' own ids.
 *
 * The per-process rule (nt_place_decide), in order:
 *   1. t = node with most of the process's threads; m = node with the most
 *      accesses to its memory (ties: nearer to t). No accesses: no samples.
 *   2. remote fraction = accesses not on t / all; penalty per second = sum
 *      over remote n of access_rate[n] * remote_penalty_usec *
 *      (distance(t, n) - 10) / 10. Below min_remote_fraction: local enough.
 *   3. gain = penalty/s * horizon. Moving threads to m costs C_thread
 *      (nt_cost_thread for the threads not already on m, with m's idle
 *      CPUs); moving the hot pages to t costs H * C_mem (nt_cost_mem per
 *      source node). Threads may not move when pinned by affinity, when m
 *      has no CPUs or is t; pages may not move when pinned by a memory
 *      policy, or when no destination has room (6). Of the allowed options
 *      whose gain beats their cost, take the cheaper; none: gain below cost;
 *      none allowed: the reason names the constraint.
 *   4. Never both in one step: for settle_usec after threads moved, pages
 *      wait (settling); for cooldown_usec after any move, everything waits.
 *   5. Hysteresis: the same (action, node) must come out hysteresis_cycles
 *      cycles in a row before it is returned; a different one restarts.
 *   6. Pages go into a node only if free - H >= low watermark. t is tried
 *      first, then other fast nodes by distance from t: pages then move
 *      only from nodes farther from t, and the gain is what that saves.
 *   7. A node under maintenance (being offlined, or drained) receives
 *      nothing: threads may not move to it, pages may not go to it (t
 *      included: the fallback nodes of rule 6 are tried instead). Moving
 *      pages or threads off it is allowed.
 *
 * The caller owns struct nt_place_memory (zeroed for a new process) and
 * reports moves it actually made with nt_place_record_move, so a deferred
 * or failed move starts no cooldown. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct nt_cost_model;

/* Distances as numactl prints them: 10 is local. */
#define NT_PLACE_DISTANCE_LOCAL  10u
#define NT_PLACE_DISTANCE_REMOTE 20u   /* assumed when the matrix says 0 */

struct nt_place_node {
    int id;
    unsigned nr_cpus;                /* 0 = CPU-less: can only receive pages */
    double idle_cpus;                /* from CPU load; fractional */
    uint64_t free_pages, total_pages, low_watermark_pages;
    bool slow;                       /* a slow tier (CXL, PMEM): no hot pages sent here */
    bool maintenance;                /* offlined or drained: receives neither threads nor pages */
};

struct nt_place_proc {
    uint32_t id;
    pid_t pid;
    unsigned nr_threads;             /* 0: the sum of threads_on */
    const unsigned *threads_on;      /* [nr_nodes] */
    const double *access_rate;       /* [nr_nodes] sampled accesses/s to memory on each node */
    const uint64_t *hot_pages_on;    /* [nr_nodes] */
    bool threads_pinned;             /* explicit CPU affinity: never move threads */
    bool pages_pinned;               /* explicit memory binding: never move pages */
    const char *threads_pinned_why;  /* e.g. "affinity 0-1"; NULL: "CPU affinity" */
    const char *pages_pinned_why;    /* e.g. "mbind 1"; NULL: "memory policy" */
};

struct nt_place_params {
    double horizon_sec;
    /* Extra cost of one remote access per 10 units of distance beyond
     * local: distance 21 costs 1.1 times this. */
    double remote_penalty_usec;
    double min_remote_fraction;
    unsigned hysteresis_cycles;      /* 0 or 1: act on the first cycle */
    uint64_t cooldown_usec;
    uint64_t settle_usec;
    double damping;                  /* load balancing, <= 0.5 */
};

/* What is the same for every process in one cycle. */
struct nt_place_system {
    unsigned nr_nodes;
    const struct nt_place_node *nodes;   /* [nr_nodes] */
    const unsigned *distance;            /* [i * nr_nodes + j] by position; 0 = unknown; may be NULL */
    const struct nt_cost_model *cost;
    const struct nt_place_params *params;
    uint64_t now_usec;
};

enum nt_place_action {
    NT_PLACE_NONE = 0,
    NT_PLACE_MOVE_THREADS,
    NT_PLACE_MOVE_PAGES,
};

/* "none", "move-threads", "move-pages". */
const char *nt_place_action_to_string(enum nt_place_action a);

enum nt_place_reason {
    NT_PLACE_NO_SAMPLES = 0,
    NT_PLACE_LOCAL_ENOUGH,
    NT_PLACE_GAIN_BELOW_COST,
    NT_PLACE_PINNED,             /* neither option allowed */
    NT_PLACE_NO_ROOM,            /* only pages were allowed, and nowhere has room */
    NT_PLACE_SETTLING,
    NT_PLACE_COOLDOWN,
    NT_PLACE_HYSTERESIS,
    NT_PLACE_THREADS_CHEAPER,    /* both allowed, threads cost less */
    NT_PLACE_PAGES_CHEAPER,      /* both allowed, pages cost less */
    NT_PLACE_THREADS_ONLY,       /* pages pinned or no room: threads */
    NT_PLACE_PAGES_ONLY,         /* threads pinned, m CPU-less, or m == t: pages */
    NT_PLACE_MAINTENANCE,        /* neither allowed, and a node under maintenance blocked one */
};

/* "no-samples", "local-enough", "gain-below-cost", "pinned", "no-room",
 * "settling", "cooldown", "hysteresis", "threads-cheaper", "pages-cheaper",
 * "threads-only", "pages-only", "maintenance". */
const char *nt_place_reason_to_string(enum nt_place_reason r);

/* Across cycles, per process; owned by the caller, zero for a new one. */
struct nt_place_memory {
    enum nt_place_action candidate;  /* what the last cycle would have done */
    int candidate_node;
    unsigned streak;                 /* cycles in a row it came out */
    enum nt_place_action last_move;  /* NONE: never moved */
    uint64_t last_move_usec;
    bool threads_moved;
    uint64_t threads_moved_usec;     /* start of the settle period */
};

#define NT_PLACE_WHY_MAX 256

struct nt_place_decision {
    enum nt_place_action action;     /* what to do now */
    int dest_node;                   /* its node id; -1 with NONE */
    enum nt_place_reason reason;
    char why[NT_PLACE_WHY_MAX];      /* one line for `numatierctl explain` */

    /* Every number the rule used (ids; -1 where not reached). */
    int thread_node, mem_node;       /* t, m */
    double remote_fraction;
    double penalty_usec_per_sec;
    double gain_usec;                /* penalty/s * horizon */
    unsigned threads_to_move;
    double c_thread_usec;
    int page_dest_node;              /* nearest node with room for H; -1: none */
    uint64_t hot_remote_pages;       /* H */
    double c_mem_per_page_usec;
    double c_mem_usec;               /* H * C_mem */
    double page_gain_usec;           /* = gain_usec when page_dest_node is t */

    /* The guards. */
    enum nt_place_action candidate;  /* what passed rules 1-3 and 6 */
    int candidate_node;
    unsigned streak, streak_needed;
    uint64_t cooldown_remaining_usec;
    uint64_t settle_remaining_usec;
};

/* distance[i * nr + j], with 0 read as 10 on the diagonal, 20 elsewhere. */
unsigned nt_place_distance(const unsigned *distance, unsigned nr_nodes, unsigned i, unsigned j);

/* Rules 1-6 for one process. Updates mem's candidate and streak only. */
void nt_place_decide(const struct nt_place_system *sys, const struct nt_place_proc *proc,
                     struct nt_place_memory *mem, struct nt_place_decision *d);

/* The caller made the move: start the cooldown (and, for threads, the
 * settle period) and clear the streak. */
void nt_place_record_move(struct nt_place_memory *mem, enum nt_place_action action,
                          uint64_t now_usec);

/* ---- load balancing --------------------------------------------------------- */

struct nt_place_balance {
    int from, to;                    /* node ids */
    unsigned threads;
    double excess;                   /* threads that would make from and to equally loaded */
};

/* Given runnable[i] threads on each node (by position), proposes one move
 * from the most overloaded node (load = runnable / CPUs, overloaded when
 * runnable > CPUs) to the nearest less-loaded node that can take a whole
 * thread (ties: the less loaded): floor(damping * excess) threads, damping
 * capped at 1/2. No node overloaded: no move, however uneven. Never
 * moves more than the excess, so repeated application converges without
 * overshoot; it stops once the excess is below 1 / damping. CPU-less nodes
 * take no part; a node under maintenance is never the destination.
 * Returns true when a move is proposed. */
bool nt_place_balance(const struct nt_place_node *nodes, unsigned nr_nodes,
                      const unsigned *distance, const unsigned *runnable, double damping,
                      struct nt_place_balance *out);

/* ---- the cycle's page-move schedule ---------------------------------------- */

struct nt_place_page_move {
    uint32_t proc_id;
    int from, to;                    /* node ids */
    uint64_t pages;
    double gain_usec;                /* what the whole move saves */
    size_t proposal;                 /* in steps: index of the proposed move */
};

struct nt_place_schedule_stats {
    size_t nr_steps;
    uint64_t pages_scheduled;
    uint64_t pages_deferred;         /* to a later cycle: budget, room, or steps */
    size_t moves_deferred;           /* proposals not completed this cycle */
};

/* Orders this cycle's proposed page moves into at most max_steps steps,
 * each a whole or partial move, so that:
 *  - the pages add up to at most budget_pages;
 *  - no node goes below its low watermark at any step (free pages are
 *    simulated as steps apply: pages leaving a node make room there, so
 *    two full nodes exchanging pages alternate in chunks that fit);
 *  - moves that save more per page go first (with a budget, the best use
 *    of each page moved);
 *  - nothing goes into a node under maintenance (such moves are deferred).
 * What does not fit is counted in stats as deferred. nodes gives free pages
 * and watermarks (ids as in the moves; moves naming unknown nodes are
 * deferred). Returns the number of steps, or -ENOMEM. */
int nt_place_schedule(const struct nt_place_page_move *proposed, size_t nr_proposed,
                      const struct nt_place_node *nodes, unsigned nr_nodes,
                      uint64_t budget_pages, struct nt_place_page_move *steps,
                      size_t max_steps, struct nt_place_schedule_stats *stats);

/* ---- a page move: hot pages first, then the rest ---------------------------- */

/* A MOVE_PAGES decision is carried out in two parts: first the process's
 * known hot pages (move_pages(2), hottest first, under the budget), then,
 * on a later cycle, the rest of its memory on the other fast nodes
 * (migrate_pages(2)), unless the rest is cancelled meanwhile. */

struct nt_place_page {
    uint64_t vaddr;
    double heat;                     /* decayed accesses */
    int node;                        /* node id; < 0 unknown */
};

/* Which of a process's known pages go first in a page move to dest: those
 * with heat >= min_heat whose node is known, is one of nodes[], and is
 * neither dest nor a slow tier (slow tiers are tiering's), hottest first
 * (ties: lower address first), at most max. Writes their addresses to
 * out[0 .. max) and returns how many, or -ENOMEM. */
long nt_place_pick_hot(const struct nt_place_page *pages, size_t n, const struct nt_place_node *nodes,
                       unsigned nr_nodes, int dest, double min_heat, size_t max, uint64_t *out);

/* The rest of a page move, kept per process between cycles. */
struct nt_place_rest {
    bool pending;
    int dest_node;                   /* where the hot pages went */
    int thread_node;                 /* where most threads ran then (dest, unless dest had no room) */
    uint64_t since_usec;             /* when the hot pages moved */
};

enum nt_place_rest_verdict {
    NT_PLACE_REST_GO = 0,            /* move the rest now */
    NT_PLACE_REST_WAIT,              /* not in the cycle the hot pages moved */
    NT_PLACE_REST_GONE,              /* the process exited (or is another instance) */
    NT_PLACE_REST_ADVISE,            /* mode advise: nothing moves */
    NT_PLACE_REST_PINNED,            /* its pages are bound now */
    NT_PLACE_REST_MAINTENANCE,       /* dest is under maintenance */
    NT_PLACE_REST_NODE_GONE,         /* dest or the thread node is not in the topology */
    NT_PLACE_REST_NO_ROOM,           /* dest is below its low watermark */
    NT_PLACE_REST_THREADS_MOVED,     /* most threads no longer run on thread_node */
};

/* "go", "wait", "process gone", "mode advise", "pages pinned",
 * "destination under maintenance", "node gone", "no room on destination",
 * "threads moved". */
const char *nt_place_rest_verdict_to_string(enum nt_place_rest_verdict v);

/* Whether the pending rest goes now, waits, or is cancelled (any verdict
 * past WAIT), checked in the order of the enum. threads_on[nr_nodes] (by
 * position) counts the process's threads on each node now: the rest goes
 * only while no node has more of them than thread_node. */
enum nt_place_rest_verdict nt_place_rest_check(const struct nt_place_rest *rest,
                                               const struct nt_place_node *nodes, unsigned nr_nodes,
                                               const unsigned *threads_on, bool alive, bool advise,
                                               bool pages_pinned, uint64_t now_usec);
