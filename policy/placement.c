/* Placement policy: the rule is spelled out in include/numatier/placement.h.
 * Pure: no syscalls, no globals, no clock (now comes in the system). */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numatier/cost.h"
#include "numatier/placement.h"
#include "numatier/util.h"

const char *nt_place_action_to_string(enum nt_place_action a)
{
    switch (a) {
    case NT_PLACE_NONE:         return "none";
    case NT_PLACE_MOVE_THREADS: return "move-threads";
    case NT_PLACE_MOVE_PAGES:   return "move-pages";
    }
    return "unknown";
}

const char *nt_place_reason_to_string(enum nt_place_reason r)
{
    static const char *const names[] = {
        [NT_PLACE_NO_SAMPLES] = "no-samples",
        [NT_PLACE_LOCAL_ENOUGH] = "local-enough",
        [NT_PLACE_GAIN_BELOW_COST] = "gain-below-cost",
        [NT_PLACE_PINNED] = "pinned",
        [NT_PLACE_NO_ROOM] = "no-room",
        [NT_PLACE_SETTLING] = "settling",
        [NT_PLACE_COOLDOWN] = "cooldown",
        [NT_PLACE_HYSTERESIS] = "hysteresis",
        [NT_PLACE_THREADS_CHEAPER] = "threads-cheaper",
        [NT_PLACE_PAGES_CHEAPER] = "pages-cheaper",
        [NT_PLACE_THREADS_ONLY] = "threads-only",
        [NT_PLACE_PAGES_ONLY] = "pages-only",
        [NT_PLACE_MAINTENANCE] = "maintenance",
    };
    if ((unsigned)r < NT_ARRAY_SIZE(names) && names[r])
        return names[r];
    return "unknown";
}

unsigned nt_place_distance(const unsigned *distance, unsigned nr_nodes, unsigned i, unsigned j)
{
    unsigned d = distance ? distance[i * nr_nodes + j] : 0;
    if (d)
        return d;
    return i == j ? NT_PLACE_DISTANCE_LOCAL : NT_PLACE_DISTANCE_REMOTE;
}

/* Through vsnprintf so a long pinned_why truncates quietly: the line is
 * for people, and its numbers are in the decision's fields anyway. */
__attribute__((format(printf, 3, 4)))
static void why_printf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

/* ---- one process ------------------------------------------------------------ */

/* One process's evaluation; nodes by position, ids go into the decision. */
struct eval {
    const struct nt_place_system *sys;
    const struct nt_place_proc *proc;
    struct nt_place_decision *d;
    unsigned t, m;
    unsigned page_dest;
    bool threads_ok, pages_ok;
    bool pages_no_room;             /* pages blocked by room, not by a pin */
    bool maintenance;               /* an option blocked by a node under maintenance */
    char threads_block[128];        /* why threads may not move */
    char pages_block[128];          /* why pages may not move */
};

static unsigned dist(const struct eval *e, unsigned i, unsigned j)
{
    return nt_place_distance(e->sys->distance, e->sys->nr_nodes, i, j);
}

static int id_of(const struct eval *e, unsigned pos)
{
    return e->sys->nodes[pos].id;
}

static unsigned total_threads(const struct nt_place_proc *p, unsigned nr)
{
    if (p->nr_threads)
        return p->nr_threads;
    unsigned sum = 0;
    for (unsigned i = 0; i < nr; i++)
        sum += p->threads_on[i];
    return sum;
}

/* The node with most threads; -1 when no thread was seen. */
static int find_thread_node(const struct nt_place_proc *p, unsigned nr)
{
    int best = -1;
    for (unsigned i = 0; i < nr; i++)
        if (p->threads_on[i] > 0 && (best < 0 || p->threads_on[i] > p->threads_on[best]))
            best = (int)i;
    return best;
}

/* The node with most accesses; ties go to the one nearer t, so a split
 * signal never sends threads farther than they need to go. */
static unsigned find_mem_node(const struct eval *e)
{
    const double *rate = e->proc->access_rate;
    unsigned best = e->t;
    for (unsigned i = 0; i < e->sys->nr_nodes; i++) {
        if (rate[i] > rate[best] ||
            (rate[i] == rate[best] && dist(e, e->t, i) < dist(e, e->t, best)))
            best = i;
    }
    return best;
}

/* Accesses per second that would stop paying the remote penalty if the
 * memory on nodes farther from t than dest were on dest, times its price.
 * With dest = t this is the process's whole remote penalty. */
static double saved_usec_per_sec(const struct eval *e, unsigned dest)
{
    const struct nt_place_params *p = e->sys->params;
    unsigned base = dist(e, e->t, dest);
    double sum = 0;
    for (unsigned n = 0; n < e->sys->nr_nodes; n++) {
        unsigned dn = dist(e, e->t, n);
        if (n != dest && dn > base && e->proc->access_rate[n] > 0)
            sum += e->proc->access_rate[n] * p->remote_penalty_usec * (dn - base) / 10.0;
    }
    return sum;
}

/* Pages bound for dest: all hot pages off t when dest is t; otherwise only
 * those on nodes farther from t than dest (the rest would not gain). */
static bool page_moves_from(const struct eval *e, unsigned n, unsigned dest)
{
    if (n == dest)
        return false;
    return dest == e->t || dist(e, e->t, n) > dist(e, e->t, dest);
}

struct page_plan {
    uint64_t pages;
    double cost_usec, gain_usec;
};

static struct page_plan plan_pages(const struct eval *e, unsigned dest)
{
    struct page_plan pp = { 0 };
    for (unsigned n = 0; n < e->sys->nr_nodes; n++) {
        if (!page_moves_from(e, n, dest))
            continue;
        uint64_t h = e->proc->hot_pages_on[n];
        pp.pages += h;
        pp.cost_usec += nt_cost_mem(e->sys->cost, id_of(e, n), id_of(e, dest), h);
    }
    pp.gain_usec = saved_usec_per_sec(e, dest) * e->sys->params->horizon_sec;
    return pp;
}

static bool has_room(const struct nt_place_node *n, uint64_t pages)
{
    return n->free_pages >= n->low_watermark_pages &&
           n->free_pages - n->low_watermark_pages >= pages;
}

static void note_page_plan(struct eval *e, unsigned dest, const struct page_plan *pp)
{
    struct nt_place_decision *d = e->d;
    d->hot_remote_pages = pp->pages;
    d->c_mem_usec = pp->cost_usec;
    d->c_mem_per_page_usec = pp->pages ? pp->cost_usec / (double)pp->pages : 0;
    d->page_gain_usec = pp->gain_usec;
    d->page_dest_node = id_of(e, dest);
    e->page_dest = dest;
}

/* The next fallback destination: the nearest fast node to t not yet tried
 * (farther than `after`, or as far with a higher position). -1: none. */
static int next_page_dest(const struct eval *e, int after)
{
    int best = -1;
    for (unsigned i = 0; i < e->sys->nr_nodes; i++) {
        if (i == e->t || e->sys->nodes[i].slow || e->sys->nodes[i].maintenance)
            continue;
        unsigned di = dist(e, e->t, i);
        if (after >= 0) {
            unsigned da = dist(e, e->t, (unsigned)after);
            if (di < da || (di == da && (int)i <= after))
                continue;
        }
        if (best < 0 || di < dist(e, e->t, (unsigned)best))
            best = (int)i;
    }
    return best;
}

/* Rule 6: t if it has room for H, else the nearest fast node that has.
 * Rule 7: a node under maintenance is no destination, t included. */
static void choose_page_dest(struct eval *e)
{
    const struct nt_place_node *nodes = e->sys->nodes;
    bool t_closed = nodes[e->t].maintenance;
    struct page_plan pp = plan_pages(e, e->t);
    note_page_plan(e, e->t, &pp);
    if (!t_closed && has_room(&nodes[e->t], pp.pages)) {
        e->pages_ok = true;
        return;
    }
    for (int n = next_page_dest(e, -1); n >= 0; n = next_page_dest(e, n)) {
        struct page_plan alt = plan_pages(e, (unsigned)n);
        if (alt.pages > 0 && alt.gain_usec > 0 && has_room(&nodes[n], alt.pages)) {
            note_page_plan(e, (unsigned)n, &alt);
            e->pages_ok = true;
            return;
        }
    }
    if (t_closed) {
        e->d->page_dest_node = -1;
        e->maintenance = true;
        why_printf(e->pages_block, sizeof(e->pages_block), "node %d is under maintenance: no pages go there",
                   id_of(e, e->t));
        return;
    }
    e->pages_no_room = true;
    why_printf(e->pages_block, sizeof(e->pages_block), "no room on node %d for %" PRIu64 " pages",
               id_of(e, e->t), pp.pages);
}

static void check_pages_allowed(struct eval *e)
{
    const struct nt_place_proc *p = e->proc;
    if (p->pages_pinned) {
        why_printf(e->pages_block, sizeof(e->pages_block), "pages pinned by %s",
                   p->pages_pinned_why ? p->pages_pinned_why : "memory policy");
        return;
    }
    choose_page_dest(e);
}

static void check_threads_allowed(struct eval *e)
{
    const struct nt_place_proc *p = e->proc;
    struct nt_place_decision *d = e->d;
    const struct nt_place_node *m = &e->sys->nodes[e->m];
    unsigned all = total_threads(p, e->sys->nr_nodes);
    unsigned on_m = p->threads_on[e->m];

    /* Threads already on m have nothing to refill. */
    d->threads_to_move = all > on_m ? all - on_m : 0;
    d->c_thread_usec = nt_cost_thread(e->sys->cost, d->threads_to_move, m->idle_cpus,
                                      e->sys->params->horizon_sec);
    if (p->threads_pinned)
        why_printf(e->threads_block, sizeof(e->threads_block), "threads pinned by %s",
                   p->threads_pinned_why ? p->threads_pinned_why : "CPU affinity");
    else if (m->nr_cpus == 0)
        why_printf(e->threads_block, sizeof(e->threads_block), "node %d has no CPUs", m->id);
    else if (m->maintenance && e->m != e->t) {
        e->maintenance = true;
        why_printf(e->threads_block, sizeof(e->threads_block),
                   "node %d is under maintenance: no threads go there", m->id);
    }
    else if (e->m == e->t)
        why_printf(e->threads_block, sizeof(e->threads_block),
                   "threads already on node %d, the hottest", m->id);
    else
        e->threads_ok = true;
}

static void set_none(struct nt_place_decision *d, enum nt_place_reason r)
{
    d->candidate = NT_PLACE_NONE;
    d->candidate_node = -1;
    d->reason = r;
}

static void set_candidate(struct eval *e, enum nt_place_action a, enum nt_place_reason r)
{
    struct nt_place_decision *d = e->d;
    d->candidate = a;
    d->candidate_node = a == NT_PLACE_MOVE_THREADS ? id_of(e, e->m) : id_of(e, e->page_dest);
    d->reason = r;
}

/* Neither option is allowed: say what blocks each. */
static void choose_neither(struct eval *e)
{
    struct nt_place_decision *d = e->d;
    set_none(d, e->maintenance ? NT_PLACE_MAINTENANCE : e->pages_no_room ? NT_PLACE_NO_ROOM : NT_PLACE_PINNED);
    why_printf(d->why, sizeof(d->why), "%s; %s", e->pages_block, e->threads_block);
}

/* One option is allowed: it moves only if it pays. */
static void choose_only(struct eval *e, enum nt_place_action a)
{
    struct nt_place_decision *d = e->d;
    bool threads = a == NT_PLACE_MOVE_THREADS;
    double gain = threads ? d->gain_usec : d->page_gain_usec;
    double cost = threads ? d->c_thread_usec : d->c_mem_usec;
    const char *block = threads ? e->pages_block : e->threads_block;

    if (!(gain > cost)) {
        set_none(d, NT_PLACE_GAIN_BELOW_COST);
        why_printf(d->why, sizeof(d->why), "gain %.0f us <= %s cost %.0f us (%s)", gain,
                   threads ? "thread" : "page", cost, block);
        return;
    }
    set_candidate(e, a, threads ? NT_PLACE_THREADS_ONLY : NT_PLACE_PAGES_ONLY);
    why_printf(d->why, sizeof(d->why), "%s; moving %s instead", block,
               threads ? "threads" : "pages");
}

/* Both allowed: the cheaper of those that pay; on a tie threads, since
 * threads move first and pages follow only if still remote. */
static void choose_both(struct eval *e)
{
    struct nt_place_decision *d = e->d;
    bool threads_pay = d->gain_usec > d->c_thread_usec;
    bool pages_pay = d->page_gain_usec > d->c_mem_usec;

    if (!threads_pay && !pages_pay) {
        set_none(d, NT_PLACE_GAIN_BELOW_COST);
        why_printf(d->why, sizeof(d->why),
                   "gain %.0f us <= cheaper cost (threads %.0f us, %" PRIu64 " pages %.0f us)",
                   d->gain_usec, d->c_thread_usec, d->hot_remote_pages, d->c_mem_usec);
        return;
    }
    bool threads = threads_pay && (!pages_pay || d->c_thread_usec <= d->c_mem_usec);
    if (threads) {
        set_candidate(e, NT_PLACE_MOVE_THREADS, NT_PLACE_THREADS_CHEAPER);
        why_printf(d->why, sizeof(d->why),
                   "threads cheaper: %u threads %.0f us vs %" PRIu64 " pages %.0f us; gain %.0f us",
                   d->threads_to_move, d->c_thread_usec, d->hot_remote_pages, d->c_mem_usec,
                   d->gain_usec);
    } else {
        set_candidate(e, NT_PLACE_MOVE_PAGES, NT_PLACE_PAGES_CHEAPER);
        why_printf(d->why, sizeof(d->why),
                   "pages cheaper: %" PRIu64 " pages %.0f us vs %u threads %.0f us; gain %.0f us",
                   d->hot_remote_pages, d->c_mem_usec, d->threads_to_move, d->c_thread_usec,
                   d->page_gain_usec);
    }
}

/* Rules 1-3 and 6: what would be done, ignoring the guards. */
static void evaluate(struct eval *e)
{
    const struct nt_place_system *sys = e->sys;
    const struct nt_place_proc *p = e->proc;
    struct nt_place_decision *d = e->d;

    double total = 0;
    for (unsigned i = 0; i < sys->nr_nodes; i++)
        total += p->access_rate[i] > 0 ? p->access_rate[i] : 0;
    int t = find_thread_node(p, sys->nr_nodes);
    if (!(total > 0) || t < 0) {
        set_none(d, NT_PLACE_NO_SAMPLES);
        why_printf(d->why, sizeof(d->why), "no samples%s", t < 0 ? " (no threads seen)" : "");
        return;
    }
    e->t = (unsigned)t;
    e->m = find_mem_node(e);
    d->thread_node = id_of(e, e->t);
    d->mem_node = id_of(e, e->m);
    d->remote_fraction = (total - p->access_rate[e->t]) / total;
    d->penalty_usec_per_sec = saved_usec_per_sec(e, e->t);
    d->gain_usec = d->penalty_usec_per_sec * sys->params->horizon_sec;
    if (d->remote_fraction < sys->params->min_remote_fraction || !(d->penalty_usec_per_sec > 0)) {
        set_none(d, NT_PLACE_LOCAL_ENOUGH);
        why_printf(d->why, sizeof(d->why), "local enough: %.1f%% remote from node %d",
                   100 * d->remote_fraction, d->thread_node);
        return;
    }
    check_threads_allowed(e);
    check_pages_allowed(e);
    if (e->threads_ok && e->pages_ok)
        choose_both(e);
    else if (e->threads_ok)
        choose_only(e, NT_PLACE_MOVE_THREADS);
    else if (e->pages_ok)
        choose_only(e, NT_PLACE_MOVE_PAGES);
    else
        choose_neither(e);
}

/* ---- the guards ------------------------------------------------------------- */

/* What is left of period started at start; time running backwards reads
 * as the whole period. */
static uint64_t remaining(uint64_t start, uint64_t period, uint64_t now)
{
    if (now < start)
        return period;
    uint64_t gone = now - start;
    return gone >= period ? 0 : period - gone;
}

static void count_streak(struct nt_place_memory *mem, struct nt_place_decision *d)
{
    if (d->candidate == NT_PLACE_NONE) {
        mem->candidate = NT_PLACE_NONE;
        mem->candidate_node = 0;
        mem->streak = 0;
    } else if (mem->candidate == d->candidate && mem->candidate_node == d->candidate_node) {
        if (mem->streak < UINT_MAX)
            mem->streak++;
    } else {
        mem->candidate = d->candidate;
        mem->candidate_node = d->candidate_node;
        mem->streak = 1;
    }
    d->streak = mem->streak;
}

/* Hold the candidate back: the reason becomes r, its why keeps the rest. */
__attribute__((format(printf, 3, 4)))
static void hold(struct nt_place_decision *d, enum nt_place_reason r, const char *fmt, ...)
{
    char base[NT_PLACE_WHY_MAX], prefix[96];
    memcpy(base, d->why, sizeof(base));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    why_printf(d->why, sizeof(d->why), "%s; %s", prefix, base);
    d->reason = r;
}

/* Rules 4 and 5. The streak counts even while a period runs: the signal
 * persisting through it is exactly what hysteresis asks for. */
static void apply_guards(const struct nt_place_system *sys, const struct nt_place_memory *mem,
                         struct nt_place_decision *d)
{
    const struct nt_place_params *p = sys->params;
    uint64_t now = sys->now_usec;

    if (mem->threads_moved)
        d->settle_remaining_usec = remaining(mem->threads_moved_usec, p->settle_usec, now);
    if (mem->last_move != NT_PLACE_NONE)
        d->cooldown_remaining_usec = remaining(mem->last_move_usec, p->cooldown_usec, now);

    if (d->candidate == NT_PLACE_MOVE_PAGES && d->settle_remaining_usec)
        hold(d, NT_PLACE_SETTLING, "settling after a thread move: %.1f s left",
             d->settle_remaining_usec / 1e6);
    else if (d->cooldown_remaining_usec)
        hold(d, NT_PLACE_COOLDOWN, "cooldown: %.1f s left", d->cooldown_remaining_usec / 1e6);
    else if (d->streak < d->streak_needed)
        hold(d, NT_PLACE_HYSTERESIS, "hysteresis (%u/%u)", d->streak, d->streak_needed);
    else {
        d->action = d->candidate;
        d->dest_node = d->candidate_node;
    }
}

void nt_place_decide(const struct nt_place_system *sys, const struct nt_place_proc *proc,
                     struct nt_place_memory *mem, struct nt_place_decision *d)
{
    unsigned needed = sys->params->hysteresis_cycles;
    *d = (struct nt_place_decision){
        .action = NT_PLACE_NONE,
        .dest_node = -1,
        .thread_node = -1,
        .mem_node = -1,
        .page_dest_node = -1,
        .candidate_node = -1,
        .streak_needed = needed > 1 ? needed : 1,
    };
    struct eval e = { .sys = sys, .proc = proc, .d = d };
    evaluate(&e);
    count_streak(mem, d);
    if (d->candidate != NT_PLACE_NONE)
        apply_guards(sys, mem, d);
}

void nt_place_record_move(struct nt_place_memory *mem, enum nt_place_action action,
                          uint64_t now_usec)
{
    if (action == NT_PLACE_NONE)
        return;
    mem->last_move = action;
    mem->last_move_usec = now_usec;
    if (action == NT_PLACE_MOVE_THREADS) {
        mem->threads_moved = true;
        mem->threads_moved_usec = now_usec;
    }
    /* A new situation: the next move must earn its own streak. */
    mem->candidate = NT_PLACE_NONE;
    mem->candidate_node = 0;
    mem->streak = 0;
}

/* ---- load balancing --------------------------------------------------------- */

static double load_of(const struct nt_place_node *n, unsigned runnable)
{
    return (double)runnable / n->nr_cpus;
}

/* Threads that, moved from a to b, would leave both equally loaded. */
static double excess_between(const struct nt_place_node *nodes, const unsigned *runnable,
                             unsigned a, unsigned b)
{
    double ca = nodes[a].nr_cpus, cb = nodes[b].nr_cpus;
    return (runnable[a] * cb - runnable[b] * ca) / (ca + cb);
}

/* The most loaded node where threads wait for a CPU; -1: none. */
static int most_overloaded(const struct nt_place_node *nodes, unsigned nr, const unsigned *runnable)
{
    int best = -1;
    for (unsigned i = 0; i < nr; i++) {
        if (nodes[i].nr_cpus == 0 || runnable[i] <= nodes[i].nr_cpus)
            continue;
        if (best < 0 || load_of(&nodes[i], runnable[i]) > load_of(&nodes[best], runnable[best]))
            best = (int)i;
    }
    return best;
}

bool nt_place_balance(const struct nt_place_node *nodes, unsigned nr_nodes,
                      const unsigned *distance, const unsigned *runnable, double damping,
                      struct nt_place_balance *out)
{
    /* Above 1/2 two nodes can trade places every round: no convergence. */
    double damp = damping < 0.5 ? damping : 0.5;
    int src = most_overloaded(nodes, nr_nodes, runnable);
    if (!(damp > 0) || src < 0)
        return false;

    int dst = -1;
    unsigned dst_threads = 0;
    double dst_excess = 0;
    for (unsigned i = 0; i < nr_nodes; i++) {
        if (i == (unsigned)src || nodes[i].nr_cpus == 0 || nodes[i].maintenance)
            continue;
        double x = excess_between(nodes, runnable, (unsigned)src, i);
        if (!(damp * x >= 1))
            continue;               /* less than a whole thread to move */
        unsigned k = (unsigned)floor(damp * x);
        unsigned di = nt_place_distance(distance, nr_nodes, (unsigned)src, i);
        unsigned db = dst < 0 ? UINT_MAX
                              : nt_place_distance(distance, nr_nodes, (unsigned)src, (unsigned)dst);
        if (di < db || (di == db && x > dst_excess)) {
            dst = (int)i;
            dst_threads = k;
            dst_excess = x;
        }
    }
    if (dst < 0)
        return false;
    *out = (struct nt_place_balance){
        .from = nodes[src].id,
        .to = nodes[dst].id,
        .threads = dst_threads,
        .excess = dst_excess,
    };
    return true;
}

/* ---- the cycle's page-move schedule ---------------------------------------- */

struct ranked {
    size_t index;
    double gain_per_page;
};

static int by_gain_per_page(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->gain_per_page != y->gain_per_page)
        return x->gain_per_page > y->gain_per_page ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int pos_of(const struct nt_place_node *nodes, unsigned nr, int id)
{
    for (unsigned i = 0; i < nr; i++)
        if (nodes[i].id == id)
            return (int)i;
    return -1;
}

struct sched {
    const struct nt_place_page_move *proposed;
    const struct nt_place_node *nodes;
    unsigned nr_nodes;
    uint64_t *free_pages;           /* simulated, by position */
    uint64_t *left;                 /* pages still to move, by proposal */
    uint64_t budget;
    struct nt_place_page_move *steps;
    size_t nr_steps, max_steps;
};

/* Move as much of proposal i as budget and the destination's room allow,
 * as one step (or as more of the last step, when that was this proposal). */
static bool schedule_chunk(struct sched *s, size_t i)
{
    const struct nt_place_page_move *mv = &s->proposed[i];
    int f = pos_of(s->nodes, s->nr_nodes, mv->from);
    int t = pos_of(s->nodes, s->nr_nodes, mv->to);
    if (f < 0 || t < 0 || s->left[i] == 0 || s->nodes[t].maintenance)
        return false;
    const struct nt_place_node *dst = &s->nodes[t];
    uint64_t room = s->free_pages[t] > dst->low_watermark_pages
                        ? s->free_pages[t] - dst->low_watermark_pages : 0;
    uint64_t chunk = s->left[i];
    chunk = chunk < s->budget ? chunk : s->budget;
    chunk = chunk < room ? chunk : room;
    if (chunk == 0)
        return false;

    struct nt_place_page_move *last = s->nr_steps ? &s->steps[s->nr_steps - 1] : NULL;
    if (!last || last->proposal != i) {
        if (s->nr_steps == s->max_steps)
            return false;
        last = &s->steps[s->nr_steps++];
        *last = *mv;
        last->pages = 0;
        last->gain_usec = 0;
        last->proposal = i;
    }
    last->pages += chunk;
    last->gain_usec += mv->gain_usec * ((double)chunk / (double)mv->pages);
    s->free_pages[t] -= chunk;
    s->free_pages[f] += chunk;
    s->left[i] -= chunk;
    s->budget -= chunk;
    return true;
}

/* Rounds over the ranked moves, each taking what fits now; pages leaving a
 * node make room for the next round, so exchanges between full nodes go
 * in alternating chunks instead of waiting on each other forever. */
static void schedule_rounds(struct sched *s, const struct ranked *order, size_t n)
{
    bool progress = true;
    while (progress && s->budget > 0) {
        progress = false;
        for (size_t k = 0; k < n && s->budget > 0; k++)
            progress |= schedule_chunk(s, order[k].index);
    }
}

int nt_place_schedule(const struct nt_place_page_move *proposed, size_t nr_proposed,
                      const struct nt_place_node *nodes, unsigned nr_nodes,
                      uint64_t budget_pages, struct nt_place_page_move *steps,
                      size_t max_steps, struct nt_place_schedule_stats *stats)
{
    *stats = (struct nt_place_schedule_stats){ 0 };
    if (nr_proposed == 0)
        return 0;
    _cleanup_free_ struct ranked *order = calloc(nr_proposed, sizeof(*order));
    _cleanup_free_ uint64_t *left = calloc(nr_proposed, sizeof(*left));
    _cleanup_free_ uint64_t *free_pages = calloc(nr_nodes ? nr_nodes : 1, sizeof(*free_pages));
    if (!order || !left || !free_pages)
        return -ENOMEM;

    for (size_t i = 0; i < nr_proposed; i++) {
        const struct nt_place_page_move *mv = &proposed[i];
        left[i] = mv->from == mv->to ? 0 : mv->pages;
        order[i] = (struct ranked){
            .index = i,
            .gain_per_page = mv->pages ? mv->gain_usec / (double)mv->pages : 0,
        };
    }
    qsort(order, nr_proposed, sizeof(*order), by_gain_per_page);
    for (unsigned i = 0; i < nr_nodes; i++)
        free_pages[i] = nodes[i].free_pages;

    struct sched s = {
        .proposed = proposed, .nodes = nodes, .nr_nodes = nr_nodes,
        .free_pages = free_pages, .left = left, .budget = budget_pages,
        .steps = steps, .max_steps = max_steps,
    };
    schedule_rounds(&s, order, nr_proposed);

    stats->nr_steps = s.nr_steps;
    stats->pages_scheduled = budget_pages - s.budget;
    for (size_t i = 0; i < nr_proposed; i++) {
        stats->pages_deferred += left[i];
        stats->moves_deferred += left[i] > 0;
    }
    return (int)s.nr_steps;
}

/* ---- a page move: hot pages first, then the rest ---------------------------- */

struct hot_pick {
    uint64_t vaddr;
    double heat;
};

static int by_heat_then_vaddr(const void *a, const void *b)
{
    const struct hot_pick *x = a, *y = b;
    if (x->heat != y->heat)
        return x->heat > y->heat ? -1 : 1;
    return (x->vaddr > y->vaddr) - (x->vaddr < y->vaddr);
}

long nt_place_pick_hot(const struct nt_place_page *pages, size_t n, const struct nt_place_node *nodes,
                       unsigned nr_nodes, int dest, double min_heat, size_t max, uint64_t *out)
{
    if (n == 0 || max == 0)
        return 0;
    _cleanup_free_ struct hot_pick *c = malloc(n * sizeof(*c));
    if (!c)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct nt_place_page *pg = &pages[i];
        if (pg->node < 0 || pg->node == dest || !(pg->heat >= min_heat))
            continue;
        int pos = pos_of(nodes, nr_nodes, pg->node);
        if (pos < 0 || nodes[pos].slow)
            continue;
        c[k++] = (struct hot_pick){ .vaddr = pg->vaddr, .heat = pg->heat };
    }
    qsort(c, k, sizeof(*c), by_heat_then_vaddr);
    if (k > max)
        k = max;
    for (size_t i = 0; i < k; i++)
        out[i] = c[i].vaddr;
    return (long)k;
}

const char *nt_place_rest_verdict_to_string(enum nt_place_rest_verdict v)
{
    static const char *const names[] = {
        [NT_PLACE_REST_GO] = "go",
        [NT_PLACE_REST_WAIT] = "wait",
        [NT_PLACE_REST_GONE] = "process gone",
        [NT_PLACE_REST_ADVISE] = "mode advise",
        [NT_PLACE_REST_PINNED] = "pages pinned",
        [NT_PLACE_REST_MAINTENANCE] = "destination under maintenance",
        [NT_PLACE_REST_NODE_GONE] = "node gone",
        [NT_PLACE_REST_NO_ROOM] = "no room on destination",
        [NT_PLACE_REST_THREADS_MOVED] = "threads moved",
    };
    return (unsigned)v < sizeof(names) / sizeof(names[0]) && names[v] ? names[v] : "unknown";
}

enum nt_place_rest_verdict nt_place_rest_check(const struct nt_place_rest *rest,
                                               const struct nt_place_node *nodes, unsigned nr_nodes,
                                               const unsigned *threads_on, bool alive, bool advise,
                                               bool pages_pinned, uint64_t now_usec)
{
    if (now_usec <= rest->since_usec)
        return NT_PLACE_REST_WAIT;
    if (!alive)
        return NT_PLACE_REST_GONE;
    if (advise)
        return NT_PLACE_REST_ADVISE;
    if (pages_pinned)
        return NT_PLACE_REST_PINNED;
    int d = pos_of(nodes, nr_nodes, rest->dest_node);
    int t = pos_of(nodes, nr_nodes, rest->thread_node);
    if (d >= 0 && nodes[d].maintenance)
        return NT_PLACE_REST_MAINTENANCE;
    if (d < 0 || t < 0)
        return NT_PLACE_REST_NODE_GONE;
    if (nodes[d].free_pages < nodes[d].low_watermark_pages)
        return NT_PLACE_REST_NO_ROOM;
    if (!threads_on || threads_on[t] == 0)
        return NT_PLACE_REST_THREADS_MOVED;
    for (unsigned i = 0; i < nr_nodes; i++)
        if (threads_on[i] > threads_on[t])
            return NT_PLACE_REST_THREADS_MOVED;
    return NT_PLACE_REST_GO;
}
