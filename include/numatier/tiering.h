/* Memory tiering: which pages to promote to fast memory and which to demote
 * to slow memory this cycle (policy/tiering.c, pure).
 *
 * Rules:
 *   1. Promotion. A page on a slow node that has been hot (heat >=
 *      hot_threshold) for hot_cycles consecutive cycles moves to the fast
 *      node with CPUs nearest its process's threads (least total distance
 *      from the thread nodes; ties: nearest the page, then first in nodes[]).
 *      A node has room while its free pages, less what this cycle already
 *      sends there, stay at or above its low watermark after the move, so
 *      promotion never puts a node under pressure. No room: the next
 *      nearest. At most max_promote pages per cycle, hottest first.
 *   2. Demotion. A fast node whose free pages are below its low watermark
 *      is under pressure. Its pages that have been cold (heat <=
 *      cold_threshold) for cold_cycles consecutive cycles move to the
 *      nearest slow node with room (same rule as above), coldest first,
 *      until the planned moves would lift its free pages to its high
 *      watermark. At most max_demote pages per cycle.
 *   3. Cooldown. A page that was moved either way is not moved again
 *      within cooldown_usec, so it cannot ping-pong.
 *   4. Maintenance. A node under maintenance (being offlined, or drained)
 *      has no room: no page is promoted or demoted into it. Its own pages
 *      may still leave it.
 *
 * The history each rule needs lives in a struct nt_tier_page_state that the
 * caller keeps per page, keyed by (proc_id, vaddr), and hands in with the
 * page every cycle; nt_tier_plan updates it in place. Pages the hot-page
 * table does not list must be handed in too, with heat 0, or they never
 * become cold enough to demote. Every call counts as one cycle. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nt_tier_params {
    double hot_threshold;         /* heat >= this is hot; must be > cold_threshold */
    double cold_threshold;        /* heat <= this is cold */
    unsigned hot_cycles;          /* consecutive hot cycles before a promotion (0 acts as 1) */
    unsigned cold_cycles;         /* consecutive cold cycles before a demotion (0 acts as 1) */
    uint64_t cooldown_usec;       /* a moved page stays put this long */
    unsigned max_promote;         /* promotions per cycle; 0: none */
    unsigned max_demote;          /* demotions per cycle; 0: none */
};

/* One node, in pages of the size the caller moves. */
struct nt_tier_node {
    int id;
    bool slow;                    /* slow tier: CXL, PMEM, or set in config */
    unsigned nr_cpus;             /* 0: never a promotion target */
    uint64_t free_pages, total_pages;
    uint64_t low_watermark_pages, high_watermark_pages;
    bool maintenance;             /* offlined or drained: never a target */
};

enum nt_tier_move_kind {
    NT_TIER_MOVE_NONE = 0,        /* in a page state: never moved */
    NT_TIER_PROMOTE,
    NT_TIER_DEMOTE,
};

/* What the policy remembers about one page between cycles. Zero it for a
 * page seen for the first time. */
struct nt_tier_page_state {
    uint32_t hot_streak;          /* consecutive cycles hot, up to now */
    uint32_t cold_streak;         /* consecutive cycles cold, up to now */
    uint64_t last_move_usec;      /* when the last move was proposed */
    enum nt_tier_move_kind last_move;
};

struct nt_tier_page {
    uint32_t proc_id;
    uint64_t vaddr;
    int node;                     /* node id; -1 unknown: never moved */
    double heat;                  /* decayed heat now; 0 for a page not in the hot-page table */
    uint64_t thread_nodes_mask;   /* bit n: the process has threads on node id n; 0 unknown */
    struct nt_tier_page_state *state;   /* in/out, never NULL */
};

struct nt_tier_move {
    uint32_t proc_id;
    uint64_t vaddr;
    int from, to;                 /* node ids */
    double heat;
    enum nt_tier_move_kind kind;
};

/* Why a candidate was not moved this cycle. */
enum nt_tier_hold {
    NT_TIER_HOLD_STREAK = 0,      /* not hot (cold) for enough consecutive cycles yet */
    NT_TIER_HOLD_COOLDOWN,        /* moved too recently */
    NT_TIER_HOLD_NO_ROOM,         /* no target node with room */
    NT_TIER_HOLD_RATE_LIMIT,      /* max_promote / max_demote reached */
    NT_TIER_HOLD_OUT_FULL,        /* the caller's move array is full */
    NT_TIER_NR_HOLDS,
};

struct nt_tier_tally {
    size_t proposed;
    size_t held[NT_TIER_NR_HOLDS];
};

/* Promotion candidates are hot pages on slow nodes. Demotion candidates
 * are cold pages on fast nodes under pressure; of those, held[STREAK] and
 * held[COOLDOWN] count them all, the other reasons only the coldest ones
 * each node needs to reach its high watermark. */
struct nt_tier_summary {
    size_t pages;                 /* pages looked at */
    size_t unknown_node;          /* of them, not placed: node -1 or absent from nodes[] */
    unsigned pressured_nodes;     /* fast nodes below their low watermark */
    uint64_t demote_needed;       /* pages they must free to reach their high watermarks */
    struct nt_tier_tally promote, demote;
};

/* Plan this cycle's moves. nodes[0..nr_nodes) with distance[i * nr_nodes +
 * j] from nodes[i] to nodes[j] by position (0 or a NULL matrix: unknown,
 * counted as the farthest). Updates every pages[i].state (streaks, and the
 * move when one is proposed: if the mover then fails, the cooldown doubles
 * as a back-off) and writes up to out_cap moves to out, demotions first.
 * sum may be NULL. Returns the number of moves, or -EINVAL (bad params, a
 * NULL state), -ENOMEM. */
int nt_tier_plan(const struct nt_tier_params *p, const struct nt_tier_node *nodes, unsigned nr_nodes,
                 const unsigned *distance, const struct nt_tier_page *pages, size_t n,
                 uint64_t now_usec, struct nt_tier_move *out, size_t out_cap,
                 struct nt_tier_summary *sum);

/* Fill n's page counts from a node's MemFree and MemTotal (kB, as in
 * /sys/devices/system/node/nodeN/meminfo) and watermarks given as
 * percentages of MemTotal, rounded up to whole pages. Returns 0, or
 * -EINVAL if page_size is 0 or the percentages are not 0 <= low <= high
 * <= 100. */
int nt_tier_node_memory(struct nt_tier_node *n, uint64_t mem_total_kb, uint64_t mem_free_kb,
                        double low_pct, double high_pct, uint64_t page_size);

/* "none", "promote", "demote". */
const char *nt_tier_move_kind_to_string(enum nt_tier_move_kind k);
/* "streak", "cooldown", "no-room", "rate-limit", "out-full". */
const char *nt_tier_hold_to_string(enum nt_tier_hold h);
