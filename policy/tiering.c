/* Memory tiering: promotion and demotion over plain structs. Pure: no
 * syscalls, no globals, no clock. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "numatier/tiering.h"
#include "numatier/util.h"

/* SLIT values: a node to itself, and what an unknown distance counts as
 * (the largest a SLIT can hold), so unknown nodes are tried last. */
#define DISTANCE_LOCAL 10u
#define DISTANCE_UNKNOWN 255u

static const char *const kind_names[] = {
    [NT_TIER_MOVE_NONE] = "none",
    [NT_TIER_PROMOTE] = "promote",
    [NT_TIER_DEMOTE] = "demote",
};

static const char *const hold_names[] = {
    [NT_TIER_HOLD_STREAK] = "streak",
    [NT_TIER_HOLD_COOLDOWN] = "cooldown",
    [NT_TIER_HOLD_NO_ROOM] = "no-room",
    [NT_TIER_HOLD_RATE_LIMIT] = "rate-limit",
    [NT_TIER_HOLD_OUT_FULL] = "out-full",
};

const char *nt_tier_move_kind_to_string(enum nt_tier_move_kind k)
{
    if ((unsigned)k >= NT_ARRAY_SIZE(kind_names))
        return "unknown";
    return kind_names[k];
}

const char *nt_tier_hold_to_string(enum nt_tier_hold h)
{
    if ((unsigned)h >= NT_ARRAY_SIZE(hold_names))
        return "unknown";
    return hold_names[h];
}

/* ---- watermarks ------------------------------------------------------------ */

static bool valid_pct(double pct)
{
    return pct >= 0 && pct <= 100;      /* false for NaN too */
}

static uint64_t pct_of_pages(uint64_t pages, double pct)
{
    double w = ceil((double)pages * pct / 100.0);
    return w >= (double)pages ? pages : (uint64_t)w;
}

int nt_tier_node_memory(struct nt_tier_node *n, uint64_t mem_total_kb, uint64_t mem_free_kb,
                        double low_pct, double high_pct, uint64_t page_size)
{
    if (page_size == 0 || !valid_pct(low_pct) || !valid_pct(high_pct) || low_pct > high_pct)
        return -EINVAL;
    n->total_pages = mem_total_kb * 1024 / page_size;
    n->free_pages = mem_free_kb * 1024 / page_size;
    n->low_watermark_pages = pct_of_pages(n->total_pages, low_pct);
    n->high_watermark_pages = pct_of_pages(n->total_pages, high_pct);
    return 0;
}

/* ---- the plan -------------------------------------------------------------- */

/* Per node, what this cycle has planned so far. */
struct node_plan {
    uint64_t incoming;            /* pages already sent here */
    uint64_t need;                /* under pressure: pages to free to reach the high watermark */
    uint64_t claimed;             /* demotion candidates counted against need */
};

struct candidate {
    const struct nt_tier_page *page;
    unsigned pos;                 /* of page->node in nodes[] */
};

struct planner {
    const struct nt_tier_params *p;
    const struct nt_tier_node *nodes;
    unsigned nr_nodes;
    const unsigned *distance;
    uint64_t now_usec;
    struct node_plan *plan;       /* [nr_nodes] */
    struct nt_tier_move *out;
    size_t out_cap, nr_out;
    struct nt_tier_summary *sum;
};

static unsigned distance_between(const struct planner *pl, unsigned from, unsigned to)
{
    unsigned d = pl->distance ? pl->distance[from * pl->nr_nodes + to] : 0;
    if (d)
        return d;
    return from == to ? DISTANCE_LOCAL : DISTANCE_UNKNOWN;
}

static int node_position(const struct planner *pl, int id)
{
    for (unsigned i = 0; i < pl->nr_nodes; i++)
        if (pl->nodes[i].id == id)
            return (int)i;
    return -1;
}

/* Room for one more page without going under the low watermark. Pages this
 * cycle moves out are not counted as freed: the mover may fail. A node
 * under maintenance has none (rule 4). */
static bool has_room(const struct planner *pl, unsigned pos)
{
    const struct nt_tier_node *n = &pl->nodes[pos];
    uint64_t incoming = pl->plan[pos].incoming;
    return !n->maintenance && n->free_pages > incoming && n->free_pages - incoming > n->low_watermark_pages;
}

static void mark_pressure(struct planner *pl)
{
    for (unsigned i = 0; i < pl->nr_nodes; i++) {
        const struct nt_tier_node *n = &pl->nodes[i];
        if (n->slow || n->free_pages >= n->low_watermark_pages)
            continue;
        uint64_t high = n->high_watermark_pages > n->low_watermark_pages ? n->high_watermark_pages
                                                                         : n->low_watermark_pages;
        pl->plan[i].need = high - n->free_pages;
        pl->sum->pressured_nodes++;
        pl->sum->demote_needed += pl->plan[i].need;
    }
}

static uint32_t streak_step(uint32_t streak, bool holds)
{
    if (!holds)
        return 0;
    return streak == UINT32_MAX ? streak : streak + 1;
}

/* Heat between the thresholds breaks both streaks: only an unbroken run
 * counts, which is what keeps a flickering page where it is. */
static void update_streaks(const struct nt_tier_params *p, const struct nt_tier_page *pg)
{
    struct nt_tier_page_state *s = pg->state;
    s->hot_streak = streak_step(s->hot_streak, pg->heat >= p->hot_threshold);
    s->cold_streak = streak_step(s->cold_streak, pg->heat <= p->cold_threshold);
}

static bool in_cooldown(const struct planner *pl, const struct nt_tier_page_state *s)
{
    if (s->last_move == NT_TIER_MOVE_NONE)
        return false;
    /* A clock that went backwards counts as "just moved". */
    return pl->now_usec < s->last_move_usec || pl->now_usec - s->last_move_usec < pl->p->cooldown_usec;
}

static bool streak_reached(uint32_t streak, unsigned cycles)
{
    return streak >= (cycles ? cycles : 1);
}

static enum nt_tier_move_kind candidate_kind(const struct planner *pl, const struct nt_tier_page *pg,
                                             unsigned pos)
{
    const struct nt_tier_node *n = &pl->nodes[pos];
    if (n->slow && pg->heat >= pl->p->hot_threshold)
        return NT_TIER_PROMOTE;
    if (!n->slow && pl->plan[pos].need > 0 && pg->heat <= pl->p->cold_threshold)
        return NT_TIER_DEMOTE;
    return NT_TIER_MOVE_NONE;
}

static struct nt_tier_tally *tally_of(const struct planner *pl, enum nt_tier_move_kind kind)
{
    return kind == NT_TIER_PROMOTE ? &pl->sum->promote : &pl->sum->demote;
}

/* Streaks and cooldown; true if the page may move this cycle. */
static bool eligible(const struct planner *pl, const struct nt_tier_page *pg, enum nt_tier_move_kind kind)
{
    const struct nt_tier_page_state *s = pg->state;
    struct nt_tier_tally *t = tally_of(pl, kind);
    if (in_cooldown(pl, s)) {
        t->held[NT_TIER_HOLD_COOLDOWN]++;
        return false;
    }
    bool reached = kind == NT_TIER_PROMOTE ? streak_reached(s->hot_streak, pl->p->hot_cycles)
                                           : streak_reached(s->cold_streak, pl->p->cold_cycles);
    if (!reached) {
        t->held[NT_TIER_HOLD_STREAK]++;
        return false;
    }
    return true;
}

static bool emit(struct planner *pl, const struct candidate *c, unsigned to, enum nt_tier_move_kind kind)
{
    const struct nt_tier_page *pg = c->page;
    struct nt_tier_tally *t = tally_of(pl, kind);
    if (pl->nr_out >= pl->out_cap) {
        t->held[NT_TIER_HOLD_OUT_FULL]++;
        return false;
    }
    pl->out[pl->nr_out++] = (struct nt_tier_move){
        .proc_id = pg->proc_id,
        .vaddr = pg->vaddr,
        .from = pg->node,
        .to = pl->nodes[to].id,
        .heat = pg->heat,
        .kind = kind,
    };
    pl->plan[to].incoming++;
    t->proposed++;
    /* A move starts the page's history afresh. */
    *pg->state = (struct nt_tier_page_state){
        .last_move_usec = pl->now_usec,
        .last_move = kind,
    };
    return true;
}

/* ---- demotion -------------------------------------------------------------- */

static int by_coldest(const void *a, const void *b)
{
    const struct nt_tier_page *x = ((const struct candidate *)a)->page;
    const struct nt_tier_page *y = ((const struct candidate *)b)->page;
    if (x->heat != y->heat)
        return x->heat < y->heat ? -1 : 1;
    if (x->state->cold_streak != y->state->cold_streak)
        return x->state->cold_streak > y->state->cold_streak ? -1 : 1;
    if (x->proc_id != y->proc_id)
        return x->proc_id < y->proc_id ? -1 : 1;
    return (x->vaddr > y->vaddr) - (x->vaddr < y->vaddr);
}

/* The slow node with room nearest the page's node, -1 if none. */
static int demotion_target(const struct planner *pl, unsigned from)
{
    int best = -1;
    unsigned best_distance = 0;
    for (unsigned t = 0; t < pl->nr_nodes; t++) {
        if (!pl->nodes[t].slow || !has_room(pl, t))
            continue;
        unsigned d = distance_between(pl, from, t);
        if (best < 0 || d < best_distance) {
            best = (int)t;
            best_distance = d;
        }
    }
    return best;
}

static void plan_demotions(struct planner *pl, struct candidate *cands, size_t nr)
{
    qsort(cands, nr, sizeof(*cands), by_coldest);
    for (size_t i = 0; i < nr; i++) {
        struct node_plan *src = &pl->plan[cands[i].pos];
        if (src->claimed >= src->need)
            continue;               /* enough already planned for this node */
        src->claimed++;
        if (pl->sum->demote.proposed >= pl->p->max_demote) {
            pl->sum->demote.held[NT_TIER_HOLD_RATE_LIMIT]++;
            continue;
        }
        int to = demotion_target(pl, cands[i].pos);
        if (to < 0) {
            pl->sum->demote.held[NT_TIER_HOLD_NO_ROOM]++;
            continue;
        }
        emit(pl, &cands[i], (unsigned)to, NT_TIER_DEMOTE);
    }
}

/* ---- promotion ------------------------------------------------------------- */

static int by_hottest(const void *a, const void *b)
{
    const struct nt_tier_page *x = ((const struct candidate *)a)->page;
    const struct nt_tier_page *y = ((const struct candidate *)b)->page;
    if (x->heat != y->heat)
        return x->heat > y->heat ? -1 : 1;
    if (x->state->hot_streak != y->state->hot_streak)
        return x->state->hot_streak > y->state->hot_streak ? -1 : 1;
    if (x->proc_id != y->proc_id)
        return x->proc_id < y->proc_id ? -1 : 1;
    return (x->vaddr > y->vaddr) - (x->vaddr < y->vaddr);
}

/* Total distance from the thread nodes to node t; 0 for every t when no
 * thread node is known, which leaves the choice to the tie-breaks. */
static unsigned thread_distance(const struct planner *pl, uint64_t mask, unsigned t)
{
    unsigned sum = 0;
    for (unsigned u = 0; u < pl->nr_nodes; u++) {
        int id = pl->nodes[u].id;
        if (id >= 0 && id < 64 && ((mask >> id) & 1))
            sum += distance_between(pl, u, t);
    }
    return sum;
}

static bool promotable_to(const struct planner *pl, unsigned t)
{
    const struct nt_tier_node *n = &pl->nodes[t];
    return !n->slow && n->nr_cpus > 0 && has_room(pl, t);
}

/* The fast node with CPUs and room nearest the page's threads (then
 * nearest the page itself, then first in nodes[]), -1 if none. */
static int promotion_target(const struct planner *pl, const struct candidate *c)
{
    int best = -1;
    unsigned best_threads = 0, best_page = 0;
    for (unsigned t = 0; t < pl->nr_nodes; t++) {
        if (!promotable_to(pl, t))
            continue;
        unsigned dt = thread_distance(pl, c->page->thread_nodes_mask, t);
        unsigned dp = distance_between(pl, c->pos, t);
        if (best < 0 || dt < best_threads || (dt == best_threads && dp < best_page)) {
            best = (int)t;
            best_threads = dt;
            best_page = dp;
        }
    }
    return best;
}

static void plan_promotions(struct planner *pl, struct candidate *cands, size_t nr)
{
    qsort(cands, nr, sizeof(*cands), by_hottest);
    for (size_t i = 0; i < nr; i++) {
        if (pl->sum->promote.proposed >= pl->p->max_promote) {
            pl->sum->promote.held[NT_TIER_HOLD_RATE_LIMIT]++;
            continue;
        }
        int to = promotion_target(pl, &cands[i]);
        if (to < 0) {
            pl->sum->promote.held[NT_TIER_HOLD_NO_ROOM]++;
            continue;
        }
        emit(pl, &cands[i], (unsigned)to, NT_TIER_PROMOTE);
    }
}

/* ---- entry point ----------------------------------------------------------- */

static bool valid_params(const struct nt_tier_params *p)
{
    /* Overlapping thresholds would let one heat be hot and cold at once. */
    return p && p->hot_threshold > p->cold_threshold;
}

static bool states_present(const struct nt_tier_page *pages, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!pages[i].state)
            return false;
    return true;
}

/* Update every page's streaks and sort the eligible ones into candidates:
 * promotions from the front of cands, demotions from the back, since a
 * page is at most one of them and n slots hold both. */
static void collect(struct planner *pl, const struct nt_tier_page *pages, size_t n, struct candidate *cands,
                    size_t *nr_promote, size_t *nr_demote)
{
    for (size_t i = 0; i < n; i++) {
        const struct nt_tier_page *pg = &pages[i];
        pl->sum->pages++;
        update_streaks(pl->p, pg);
        int pos = pg->node < 0 ? -1 : node_position(pl, pg->node);
        if (pos < 0) {
            pl->sum->unknown_node++;
            continue;
        }
        enum nt_tier_move_kind kind = candidate_kind(pl, pg, (unsigned)pos);
        if (kind == NT_TIER_MOVE_NONE || !eligible(pl, pg, kind))
            continue;
        struct candidate c = { .page = pg, .pos = (unsigned)pos };
        if (kind == NT_TIER_PROMOTE)
            cands[(*nr_promote)++] = c;
        else
            cands[n - ++*nr_demote] = c;
    }
}

int nt_tier_plan(const struct nt_tier_params *p, const struct nt_tier_node *nodes, unsigned nr_nodes,
                 const unsigned *distance, const struct nt_tier_page *pages, size_t n,
                 uint64_t now_usec, struct nt_tier_move *out, size_t out_cap,
                 struct nt_tier_summary *sum)
{
    struct nt_tier_summary scratch;
    if (!sum)
        sum = &scratch;
    *sum = (struct nt_tier_summary){ 0 };
    if (!valid_params(p) || (nr_nodes && !nodes) || (n && !pages) || (out_cap && !out) ||
        !states_present(pages, n))
        return -EINVAL;
    if (n == 0)
        return 0;
    if (out_cap > INT_MAX)
        out_cap = INT_MAX;          /* the count must fit the return value */

    _cleanup_free_ struct node_plan *plan = calloc(nr_nodes ? nr_nodes : 1, sizeof(*plan));
    _cleanup_free_ struct candidate *cands = malloc(n * sizeof(*cands));
    if (!plan || !cands)
        return -ENOMEM;

    struct planner pl = {
        .p = p, .nodes = nodes, .nr_nodes = nr_nodes, .distance = distance,
        .now_usec = now_usec, .plan = plan, .out = out, .out_cap = out_cap, .sum = sum,
    };
    mark_pressure(&pl);
    size_t nr_promote = 0, nr_demote = 0;
    collect(&pl, pages, n, cands, &nr_promote, &nr_demote);
    /* Relieving pressure comes first: it gets the out slots when few. */
    plan_demotions(&pl, cands + n - nr_demote, nr_demote);
    plan_promotions(&pl, cands, nr_promote);
    return (int)pl.nr_out;
}
