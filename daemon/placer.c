/* The placer: heat -> placement decisions -> moves. See placer.h. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "numatier/aggregate.h"
#include "numatier/calibrate.h"
#include "numatier/config.h"
#include "numatier/cost.h"
#include "numatier/log.h"
#include "numatier/mover.h"
#include "numatier/placement.h"
#include "numatier/placer.h"
#include "numatier/procs.h"
#include "numatier/tierer.h"
#include "numatier/topology.h"
#include "numatier/util.h"
#include "numatier/watch.h"

/* Built-in guesses until calibration or config says better. */
#define DEFAULT_C_MEM_USEC       2.0
#define DEFAULT_C_THREAD_REFILL  50.0
#define DEFAULT_C_THREAD_SCHED   5.0
/* A process's explicit bindings are re-read this often, not every cycle:
 * numa_maps walks page tables. */
#define CONSTRAINT_TTL_USEC      (10 * 1000000ull)
/* A page move takes at most this many of a process's known hot pages
 * (hottest first) with move_pages(2); beyond them, the rest. */
#define HOT_PAGES_MAX            65536
/* A page is hot at this heat: the aggregate's hot_pages (H) count. */
#define HOT_PAGE_HEAT            1.0

struct constraints {
    bool threads_pinned, pages_pinned;
    char threads_why[320], pages_why[320];
    char affinity_owner[160];         /* a narrower affinity that is not the user's: whose */
    uint64_t read_usec;
};

/* What the placer remembers about one process instance. */
struct placed {
    uint32_t id;
    pid_t pid;
    char comm[16];
    bool seen;                        /* in this cycle's snapshot */
    struct nt_place_memory mem;
    struct nt_place_decision last;
    struct nt_place_decision acted;   /* the decision behind last_action */
    bool decided;
    struct constraints cons;
    enum nt_place_action last_action; /* carried out (or advised, in advise mode) */
    int last_action_node;
    char last_result[128];
    struct nt_place_rest rest;        /* a page move's rest, after its hot pages */
    uint64_t rest_hot_moved;          /* hot pages that went first */
};

struct nt_placer {
    char *root;
    struct nt_mover *mover;
    struct nt_tierer *tierer;
    struct nt_cost_model cost;
    struct nt_calibration cal;        /* what startup measured */
    bool calibrated;
    int *cost_ids;
    double *c_mem;                    /* [nr*nr] by position; -1 unknown */
    unsigned cost_nodes;
    struct nt_place_params params;
    bool move_bound_pages, restore_on_exit;
    double free_watermark;            /* fraction */
    struct placed *procs;
    size_t nr_procs, cap_procs;
    uint64_t cycles, decisions, threads_moves, page_moves, advised, failed;
    uint64_t threads_moved, pages_moved;
    uint64_t hot_first_moves, rest_moves, rests_cancelled;
    /* This cycle's snapshot with each process's hottest pages, taken at
     * the first page move of the cycle (page moves are rare). */
    struct nt_heat_snapshot *pages_snap;
    nt_placer_pin_owner_fn pin_owner;
    void *pin_owner_ud;
};

/* ---- costs ------------------------------------------------------------------ */

/* Defaults, then what calibration measured, then config overrides. */
static void apply_cost_config(struct nt_placer *p, const struct nt_config *cfg)
{
    struct nt_cost_model *c = &p->cost;
    *c = (struct nt_cost_model){
        .nr_nodes = p->cost_nodes,
        .node_ids = p->cost_ids,
        .c_mem_usec = p->c_mem,
        .c_mem_default_usec = DEFAULT_C_MEM_USEC,
        .c_mem_huge_usec = -1,
        .mem_origin = NT_COST_DEFAULT,
        .c_thread_refill_usec = DEFAULT_C_THREAD_REFILL,
        .c_thread_sched_usec = DEFAULT_C_THREAD_SCHED,
        .thread_origin = NT_COST_DEFAULT,
        .queue_usec_per_sec = 1e6,
    };
    if (p->calibrated && p->cal.nr_nodes == p->cost_nodes)
        nt_calibration_apply(&p->cal, c);
    if (cfg->c_mem_ns) {
        c->c_mem_default_usec = cfg->c_mem_ns / 1000.0;
        c->c_mem_usec = NULL;             /* the override wins over any measurement */
        c->mem_origin = NT_COST_CONFIG;
    }
    if (cfg->c_thread_us) {
        c->c_thread_refill_usec = cfg->c_thread_us;
        c->c_thread_sched_usec = 0;
        c->thread_origin = NT_COST_CONFIG;
    }
}

static void calibrate(struct nt_placer *p, const struct nt_config *cfg, const struct nt_topology *topo)
{
    if (cfg->c_mem_ns && cfg->c_thread_us)
        return;                           /* both given: nothing to measure */
    struct nt_calibrate_params cp;
    nt_calibrate_params_init(&cp);
    cp.sysfs_root = p->root;
    int r = nt_calibrate(topo, &cp, &p->cal);
    if (r < 0) {
        log_warning("calibration failed: %s; using default costs", strerror(-r));
        return;
    }
    p->calibrated = true;
    log_info("calibration (%.0f ms): C_mem %s; C_thread %s", p->cal.elapsed_usec / 1e3, p->cal.mem_reason,
             p->cal.thread_reason);
}

static int init_costs(struct nt_placer *p, const struct nt_topology *topo)
{
    unsigned n = topo ? topo->nr_nodes : 0;
    p->cost_ids = calloc(n ? n : 1, sizeof(int));
    p->c_mem = malloc((n ? n * n : 1) * sizeof(double));
    if (!p->cost_ids || !p->c_mem)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++)
        p->cost_ids[i] = topo->nodes[i].id;
    for (unsigned i = 0; i < n * n; i++)
        p->c_mem[i] = -1;
    p->cost_nodes = n;
    return 0;
}

static void apply_params(struct nt_placer *p, const struct nt_config *cfg)
{
    p->params = (struct nt_place_params){
        .horizon_sec = cfg->horizon_usec / 1e6,
        .remote_penalty_usec = cfg->remote_penalty_ns / 1000.0,
        .min_remote_fraction = cfg->min_remote_pct / 100.0,
        .hysteresis_cycles = cfg->hysteresis_cycles,
        .cooldown_usec = cfg->cooldown_usec,
        .settle_usec = cfg->settle_usec,
        .damping = cfg->damping_pct / 100.0,
    };
    p->move_bound_pages = cfg->move_bound_pages;
    p->restore_on_exit = cfg->restore_on_exit;
    p->free_watermark = cfg->free_watermark_pct / 100.0;
    apply_cost_config(p, cfg);
}

int nt_placer_new(const char *root, const struct nt_config *cfg, const struct nt_topology *topo,
                  struct nt_placer **out)
{
    _cleanup_(nt_placer_freep) struct nt_placer *p = calloc(1, sizeof(*p));
    if (!p || !(p->root = strdup(root ? root : "/")))
        return -ENOMEM;
    struct nt_mover_params mp;
    nt_mover_params_init(&mp);
    mp.budget_bytes_per_sec = cfg->migration_budget;
    int r = nt_mover_new(&mp, &p->mover);
    if (r < 0)
        return r;
    r = nt_tierer_new(root, &p->tierer);
    if (r < 0)
        return r;
    r = init_costs(p, topo);
    if (r < 0)
        return r;
    if (topo)
        calibrate(p, cfg, topo);
    apply_params(p, cfg);
    *out = NT_TAKE_PTR(p);
    return 0;
}

void nt_placer_free(struct nt_placer *p)
{
    if (!p)
        return;
    if (p->restore_on_exit && p->mover)
        nt_mover_restore_all(p->mover);
    nt_tierer_free(p->tierer);
    nt_mover_free(p->mover);
    nt_heat_snapshot_free(p->pages_snap);
    nt_calibration_done(&p->cal);
    free(p->procs);
    free(p->cost_ids);
    free(p->c_mem);
    free(p->root);
    free(p);
}

void nt_placer_reconfigure(struct nt_placer *p, const struct nt_config *cfg)
{
    apply_params(p, cfg);
    nt_mover_set_budget(p->mover, cfg->migration_budget, 0);
}

/* ---- per-process records ---------------------------------------------------- */

static struct placed *placed_find(struct nt_placer *p, uint32_t id)
{
    for (size_t i = 0; i < p->nr_procs; i++)
        if (p->procs[i].id == id)
            return &p->procs[i];
    return NULL;
}

static const struct placed *placed_by_pid(const struct nt_placer *p, pid_t pid)
{
    for (size_t i = 0; i < p->nr_procs; i++)
        if (p->procs[i].pid == pid)
            return &p->procs[i];
    return NULL;
}

static struct placed *placed_get(struct nt_placer *p, const struct nt_proc *proc)
{
    struct placed *x = placed_find(p, proc->id);
    if (x)
        return x;
    if (p->nr_procs == p->cap_procs) {
        size_t cap = p->cap_procs ? 2 * p->cap_procs : 16;
        struct placed *v = realloc(p->procs, cap * sizeof(*v));
        if (!v)
            return NULL;
        p->procs = v;
        p->cap_procs = cap;
    }
    x = &p->procs[p->nr_procs++];
    *x = (struct placed){ .id = proc->id, .pid = proc->key.pid, .last_action_node = -1 };
    snprintf(x->comm, sizeof(x->comm), "%s", proc->comm);
    return x;
}

/* Forget processes no longer watched: their ids never come back. */
static void placed_sweep(struct nt_placer *p)
{
    size_t out = 0;
    for (size_t i = 0; i < p->nr_procs; i++) {
        if (p->procs[i].seen)
            p->procs[out++] = p->procs[i];
        else
            nt_mover_forget(p->mover, p->procs[i].id);
    }
    p->nr_procs = out;
}

/* ---- explicit placement: memory policy and CPU affinity ---------------------- */

/* A numa_maps policy the user chose: bind, prefer(red), interleave. */
static bool explicit_policy(const char *policy)
{
    return strncmp(policy, "default", 7) != 0 && strncmp(policy, "local", 5) != 0;
}

/* /proc/PID/name below the placer's root; NULL if it cannot be opened. */
static FILE *open_proc_file(const struct nt_placer *p, pid_t pid, const char *name)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
    _cleanup_free_ char *full = nt_path_join(p->root, path);
    return full ? fopen(full, "re") : NULL;
}

static void read_mem_policy(const struct nt_placer *p, pid_t pid, struct constraints *c)
{
    _cleanup_fclose_ FILE *f = open_proc_file(p, pid, "numa_maps");
    char line[512];
    while (f && fgets(line, sizeof(line), f)) {
        char policy[64];
        if (sscanf(line, "%*s %63s", policy) == 1 && explicit_policy(policy)) {
            c->pages_pinned = true;
            snprintf(c->pages_why, sizeof(c->pages_why), "memory policy %s", policy);
            return;
        }
    }
}

/* "Cpus_allowed_list:\t0-1" and "Mems_allowed_list:\t0-1" of the main thread. */
static void read_status_lists(const struct nt_placer *p, pid_t pid, char *cpus, char *mems, size_t len)
{
    _cleanup_fclose_ FILE *f = open_proc_file(p, pid, "status");
    char line[512];
    while (f && fgets(line, sizeof(line), f)) {
        char *v = strchr(line, ':');
        if (!v)
            continue;
        v += strspn(v + 1, " \t") + 1;
        v[strcspn(v, "\n")] = '\0';
        if (strncmp(line, "Cpus_allowed_list:", 18) == 0)
            snprintf(cpus, len, "%s", v);
        else if (strncmp(line, "Mems_allowed_list:", 18) == 0)
            snprintf(mems, len, "%s", v);
    }
}

static void read_constraints(struct nt_placer *p, const struct nt_proc *proc, const struct nt_topology *topo,
                             struct constraints *c, uint64_t now)
{
    *c = (struct constraints){ .read_usec = now };
    char cpus[256] = "", mems[256] = "";
    read_status_lists(p, proc->key.pid, cpus, mems, sizeof(cpus));
    read_mem_policy(p, proc->key.pid, c);
    unsigned mem_nodes = 0;
    for (unsigned i = 0; i < topo->nr_nodes; i++)
        mem_nodes += topo->nodes[i].mem_total_kb > 0;
    int nmems = *mems ? nt_cpulist_count(mems) : -1;
    if (!c->pages_pinned && nmems > 0 && (unsigned)nmems < mem_nodes) {
        c->pages_pinned = true;
        snprintf(c->pages_why, sizeof(c->pages_why), "cpuset.mems %s", mems);
    }
    /* Narrower than every online CPU, and not a mask numatierd set. A
     * cpuset that narrows the CPUs narrows where we could move them too. */
    cpu_set_t set;
    unsigned online = 0;
    for (unsigned i = 0; i < topo->nr_nodes; i++)
        online += topo->nodes[i].nr_cpus;
    int n = *cpus ? nt_cpuset_parse(cpus, &set) : -1;
    if (n > 0 && (unsigned)n < online && !nt_mover_affinity_is_ours(p->mover, proc->key.pid, &set) &&
        !(p->pin_owner && p->pin_owner(proc->key.pid, proc->key.start_time, &set, c->affinity_owner,
                                       sizeof(c->affinity_owner), p->pin_owner_ud))) {
        c->threads_pinned = true;
        snprintf(c->threads_why, sizeof(c->threads_why), "CPU affinity %s", cpus);
    }
    if (p->move_bound_pages)
        c->pages_pinned = false;
}

/* ---- one cycle ---------------------------------------------------------------- */

/* Per-node inputs, by position in the topology; heat arrays are by node id. */
struct cycle_input {
    struct nt_place_node *nodes;
    unsigned *threads_on;
    double *rate;
    uint64_t *hot;
};

static void free_input(struct cycle_input *in)
{
    free(in->nodes);
    free(in->threads_on);
    free(in->rate);
    free(in->hot);
}

static int alloc_input(struct cycle_input *in, unsigned n)
{
    size_t k = n ? n : 1;
    in->nodes = calloc(k, sizeof(*in->nodes));
    in->threads_on = calloc(k, sizeof(*in->threads_on));
    in->rate = calloc(k, sizeof(*in->rate));
    in->hot = calloc(k, sizeof(*in->hot));
    return in->nodes && in->threads_on && in->rate && in->hot ? 0 : -ENOMEM;
}

/* Idle CPUs per node: its CPUs minus what the watched processes use there.
 * Unwatched load is not seen; the queueing penalty errs on the cheap side. */
static void fill_nodes(const struct nt_placer *p, const struct nt_topology *topo, const struct nt_procs *procs,
                       const struct nt_nodeset *maintenance, struct nt_place_node *nodes)
{
    for (unsigned i = 0; i < topo->nr_nodes; i++) {
        const struct nt_node *n = &topo->nodes[i];
        uint64_t total = n->mem_total_kb / 4, free_pages = n->mem_free_kb / 4;
        nodes[i] = (struct nt_place_node){
            .id = n->id, .nr_cpus = n->nr_cpus, .idle_cpus = n->nr_cpus,
            .free_pages = free_pages, .total_pages = total,
            .low_watermark_pages = (uint64_t)(total * p->free_watermark),
            .slow = n->tier == NT_TIER_SLOW,
            .maintenance = maintenance && nt_nodeset_test(maintenance, n->id),
        };
    }
    size_t np;
    const struct nt_proc *list = nt_procs_list(procs, &np);
    for (size_t k = 0; k < np; k++)
        for (unsigned t = 0; t < list[k].nr_threads; t++)
            for (unsigned i = 0; i < topo->nr_nodes; i++)
                if (nodes[i].id == list[k].threads[t].node && list[k].nr_threads)
                    nodes[i].idle_cpus -= list[k].cpu_pct / 100.0 / list[k].nr_threads;
    for (unsigned i = 0; i < topo->nr_nodes; i++)
        if (nodes[i].idle_cpus < 0)
            nodes[i].idle_cpus = 0;
}

static void fill_proc(const struct nt_topology *topo, const struct nt_proc *proc, const struct nt_proc_heat *h,
                      unsigned heat_nodes, double half_life_sec, struct cycle_input *in)
{
    /* A decayed total in steady state is rate * half_life / ln 2. */
    double to_rate = M_LN2 / (half_life_sec > 0 ? half_life_sec : 1);
    for (unsigned i = 0; i < topo->nr_nodes; i++) {
        int id = topo->nodes[i].id;
        in->threads_on[i] = 0;
        for (unsigned t = 0; t < proc->nr_threads; t++)
            in->threads_on[i] += proc->threads[t].node == id;
        /* Memory on a slow tier is tiering's to move (promotion), not
         * placement's: placement weighs fast nodes only. */
        bool known = h && id >= 0 && (unsigned)id < heat_nodes && topo->nodes[i].tier != NT_TIER_SLOW;
        in->rate[i] = known ? h->heat_on[id] * to_rate : 0;
        in->hot[i] = known ? h->hot_pages[id] : 0;
    }
}

static const struct nt_node *topo_node(const struct nt_topology *topo, int id)
{
    return nt_topology_node(topo, id);
}

static void move_threads(struct nt_placer *p, const struct nt_procs *procs, const struct nt_proc *proc,
                         struct placed *x, const struct nt_topology *topo, int dest, uint64_t now)
{
    const struct nt_node *n = topo_node(topo, dest);
    cpu_set_t cpus;
    int r = n ? nt_cpuset_parse(n->cpulist, &cpus) : -ENODEV;
    if (r > 0)
        r = nt_mover_move_threads(p->mover, procs, proc, &cpus);
    if (r > 0) {
        nt_place_record_move(&x->mem, NT_PLACE_MOVE_THREADS, now);
        p->threads_moves++;
        p->threads_moved += (uint64_t)r;
        snprintf(x->last_result, sizeof(x->last_result), "moved %d thread(s) to node %d (CPUs %s)", r, dest,
                 n->cpulist);
        log_info("placement: pid %d (%s): moved %d thread(s) to node %d", (int)proc->key.pid, proc->comm, r, dest);
    } else if (r == 0) {
        snprintf(x->last_result, sizeof(x->last_result), "process gone before its threads moved");
    } else {
        p->failed++;
        snprintf(x->last_result, sizeof(x->last_result), "moving threads to node %d failed: %s", dest, strerror(-r));
        log_warning("placement: pid %d (%s): %s", (int)proc->key.pid, proc->comm, x->last_result);
    }
}

/* The process's fast nodes other than dest: where its pages come from.
 * Slow tiers are tiering's. */
static void fast_from(const struct nt_topology *topo, int dest, struct nt_nodeset *from)
{
    *from = (struct nt_nodeset){ 0 };
    for (unsigned i = 0; i < topo->nr_nodes; i++)
        if (topo->nodes[i].id != dest && topo->nodes[i].tier != NT_TIER_SLOW)
            nt_nodeset_set(from, topo->nodes[i].id);
}

static void rest_cancel(struct nt_placer *p, const struct nt_proc *proc, struct placed *x, const char *why)
{
    if (!x->rest.pending)
        return;
    x->rest.pending = false;
    p->rests_cancelled++;
    snprintf(x->last_result, sizeof(x->last_result), "moved %" PRIu64 " hot pages to node %d; the rest called off: %s",
             x->rest_hot_moved, x->rest.dest_node, why);
    log_info("placement: pid %d (%s): the rest of the move to node %d called off: %s", (int)proc->key.pid,
             proc->comm, x->rest.dest_node, why);
}

/* Every page of the process on the other fast nodes goes to dest at once,
 * cold ones too: the threads stay, so all of it is remote. rest: this is
 * the rest after the hot pages. Returns true when the call is deferred for
 * the budget. */
static bool move_all(struct nt_placer *p, struct nt_watch *w, const struct nt_procs *procs,
                     const struct nt_proc *proc, struct placed *x, const struct nt_topology *topo, int dest,
                     bool rest, uint64_t now)
{
    struct nt_nodeset from;
    fast_from(topo, dest, &from);
    struct nt_move_result res;
    int r = nt_mover_migrate_all(p->mover, procs, proc, &from, dest, now, &res);
    const char *what = rest ? "the rest of its pages" : "pages";
    if (r < 0) {
        p->failed++;
        snprintf(x->last_result, sizeof(x->last_result), "moving %s to node %d failed: %s", what, dest,
                 strerror(-r));
        log_warning("placement: pid %d (%s): %s", (int)proc->key.pid, proc->comm, x->last_result);
    } else if (res.exited) {
        snprintf(x->last_result, sizeof(x->last_result), "process gone before its %s moved", what);
    } else if (res.deferred) {
        snprintf(x->last_result, sizeof(x->last_result),
                 "deferred: %" PRIu64 " pages%s wait for the migration budget", res.deferred,
                 rest ? " (the rest)" : "");
        return true;
    } else if (rest) {
        if (res.moved) {
            nt_place_record_move(&x->mem, NT_PLACE_MOVE_PAGES, now);
            nt_watch_pages_moved(w, proc->id);
        }
        p->rest_moves++;
        p->pages_moved += res.moved;
        snprintf(x->last_result, sizeof(x->last_result),
                 "moved %" PRIu64 " hot pages, then %" PRIu64 " pages (the rest) to node %d", x->rest_hot_moved,
                 res.moved, dest);
        log_info("placement: pid %d (%s): moved %" PRIu64 " pages to node %d (the rest, after %" PRIu64
                 " hot pages)", (int)proc->key.pid, proc->comm, res.moved, dest, x->rest_hot_moved);
    } else {
        nt_place_record_move(&x->mem, NT_PLACE_MOVE_PAGES, now);
        nt_watch_pages_moved(w, proc->id);
        p->page_moves++;
        p->pages_moved += res.moved;
        snprintf(x->last_result, sizeof(x->last_result), "moved %" PRIu64 " pages to node %d", res.moved, dest);
        log_info("placement: pid %d (%s): moved %" PRIu64 " pages to node %d", (int)proc->key.pid, proc->comm,
                 res.moved, dest);
    }
    return false;
}

/* The process's known hot pages on other fast nodes, hottest first, at
 * most HOT_PAGES_MAX, into *out (malloc'd). Returns how many (0: none
 * known) or negative errno. */
static long hot_pages_for(struct nt_placer *p, struct nt_watch *w, const struct nt_proc *proc,
                          const struct nt_place_node *nodes, unsigned nr_nodes, int dest, uint64_t now,
                          uint64_t **out)
{
    *out = NULL;
    if (!p->pages_snap) {
        int r = nt_watch_snapshot(w, now, HOT_PAGES_MAX, &p->pages_snap);
        if (r < 0)
            return r;
    }
    const struct nt_proc_heat *h = NULL;
    for (size_t i = 0; i < p->pages_snap->nr_procs && !h; i++)
        if (p->pages_snap->procs[i].proc_id == proc->id)
            h = &p->pages_snap->procs[i];
    if (!h || !h->nr_pages)
        return 0;
    _cleanup_free_ struct nt_place_page *pages = malloc(h->nr_pages * sizeof(*pages));
    _cleanup_free_ uint64_t *va = malloc(h->nr_pages * sizeof(*va));
    if (!pages || !va)
        return -ENOMEM;
    for (size_t i = 0; i < h->nr_pages; i++)
        pages[i] = (struct nt_place_page){ .vaddr = h->pages[i].vaddr, .heat = h->pages[i].heat,
                                           .node = h->pages[i].node };
    long n = nt_place_pick_hot(pages, h->nr_pages, nodes, nr_nodes, dest, HOT_PAGE_HEAT, HOT_PAGES_MAX, va);
    if (n > 0)
        *out = NT_TAKE_PTR(va);
    return n;
}

/* Hot pages first: the process's known hot pages on the other fast nodes
 * go to dest with move_pages(2), hottest first, within the budget (what
 * does not fit is deferred). With move_cold, the rest follows with
 * migrate_pages(2) on a later cycle (continue_rest). No hot page known
 * there, or none of them needed to move: the whole process at once. */
static void move_pages(struct nt_placer *p, struct nt_watch *w, const struct nt_procs *procs,
                       const struct nt_proc *proc, struct placed *x, const struct nt_topology *topo,
                       const struct nt_place_node *nodes, bool move_cold, int dest, uint64_t now)
{
    x->rest.pending = false;          /* a new decision replaces an older rest */
    _cleanup_free_ uint64_t *va = NULL;
    long n = hot_pages_for(p, w, proc, nodes, topo->nr_nodes, dest, now, &va);
    if (n < 0)
        log_debug("placement: pid %d (%s): no hot-page list: %s; moving all pages", (int)proc->key.pid,
                  proc->comm, strerror((int)-n));
    if (n <= 0) {
        move_all(p, w, procs, proc, x, topo, dest, false, now);
        return;
    }
    struct nt_move_result res;
    int r = nt_mover_move_pages(p->mover, procs, proc, va, (size_t)n, dest, NULL, 0, now, &res);
    if (r < 0) {
        p->failed++;
        snprintf(x->last_result, sizeof(x->last_result), "moving %ld hot pages to node %d failed: %s", n, dest,
                 strerror(-r));
        log_warning("placement: pid %d (%s): %s", (int)proc->key.pid, proc->comm, x->last_result);
        return;
    }
    if (res.exited) {
        snprintf(x->last_result, sizeof(x->last_result), "process gone before its hot pages moved");
        return;
    }
    if (!res.moved && res.deferred) {
        snprintf(x->last_result, sizeof(x->last_result),
                 "deferred: %" PRIu64 " hot pages wait for the migration budget", res.deferred);
        return;
    }
    if (!res.moved) {
        /* The known nodes were stale (already on dest) or nothing could
         * move page by page: fall back to the whole process. */
        move_all(p, w, procs, proc, x, topo, dest, false, now);
        return;
    }
    nt_place_record_move(&x->mem, NT_PLACE_MOVE_PAGES, now);
    nt_watch_pages_moved(w, proc->id);
    p->page_moves++;
    p->hot_first_moves++;
    p->pages_moved += res.moved;
    x->rest_hot_moved = res.moved;
    char deferred[48] = "";
    if (res.deferred)
        snprintf(deferred, sizeof(deferred), " (%" PRIu64 " deferred)", res.deferred);
    snprintf(x->last_result, sizeof(x->last_result), "moved %" PRIu64 " hot pages to node %d%s%s", res.moved,
             dest, deferred, move_cold ? "; the rest follows" : "");
    log_info("placement: pid %d (%s): moved %" PRIu64 " hot pages to node %d%s%s", (int)proc->key.pid,
             proc->comm, res.moved, dest, deferred, move_cold ? "; the rest follows" : "");
    if (move_cold)
        x->rest = (struct nt_place_rest){
            .pending = true, .dest_node = dest,
            .thread_node = x->last.thread_node >= 0 ? x->last.thread_node : dest, .since_usec = now,
        };
}

/* The rest of a page move, a cycle or more after its hot pages: not a new
 * decision (no hysteresis), but called off when the process is gone, its
 * pages became bound, dest is under maintenance or full, its threads
 * moved away, or the mode is advise. */
static void continue_rest(struct nt_placer *p, struct nt_watch *w, const struct nt_procs *procs,
                          const struct nt_proc *proc, struct placed *x, const struct nt_topology *topo,
                          const struct cycle_input *in, bool advise, uint64_t now)
{
    enum nt_place_rest_verdict v =
        nt_place_rest_check(&x->rest, in->nodes, topo->nr_nodes, in->threads_on, nt_proc_still_same(procs, proc),
                            advise, x->cons.pages_pinned, now);
    if (v == NT_PLACE_REST_WAIT)
        return;
    if (v != NT_PLACE_REST_GO) {
        rest_cancel(p, proc, x, nt_place_rest_verdict_to_string(v));
        return;
    }
    if (!move_all(p, w, procs, proc, x, topo, x->rest.dest_node, true, now))
        x->rest.pending = false;
}

static void act(struct nt_placer *p, struct nt_watch *w, const struct nt_procs *procs, const struct nt_proc *proc,
                struct placed *x, const struct nt_topology *topo, const struct cycle_input *in,
                const struct nt_config *cfg, uint64_t now)
{
    bool advise = cfg->mode == NT_MODE_ADVISE;
    const struct nt_place_decision *d = &x->last;
    bool same_as_before = x->last_action == d->action && x->last_action_node == d->dest_node;
    x->acted = *d;
    x->last_action = d->action;
    x->last_action_node = d->dest_node;
    if (advise) {
        /* Nothing moves, so the advice stands every cycle; log it once. */
        p->advised++;
        snprintf(x->last_result, sizeof(x->last_result), "advised only (mode advise)");
        if (!same_as_before)
            log_info("placement (advise): pid %d (%s): would %s to node %d: %s", (int)proc->key.pid,
                     proc->comm, nt_place_action_to_string(d->action), d->dest_node, d->why);
        return;
    }
    if (!nt_proc_still_same(procs, proc)) {
        snprintf(x->last_result, sizeof(x->last_result), "process gone before the move");
        return;
    }
    if (d->action == NT_PLACE_MOVE_THREADS) {
        rest_cancel(p, proc, x, "its threads move instead");
        move_threads(p, procs, proc, x, topo, d->dest_node, now);
    } else {
        move_pages(p, w, procs, proc, x, topo, in->nodes, cfg->move_cold, d->dest_node, now);
    }
}

static const struct nt_proc_heat *heat_of(const struct nt_heat_snapshot *s, uint32_t id)
{
    for (size_t i = 0; s && i < s->nr_procs; i++)
        if (s->procs[i].proc_id == id)
            return &s->procs[i];
    return NULL;
}

static void decide_one(struct nt_placer *p, struct nt_watch *w, const struct nt_place_system *sys,
                       const struct nt_procs *procs,
                       const struct nt_proc *proc, const struct nt_heat_snapshot *snap,
                       const struct nt_config *cfg, const struct nt_topology *topo, struct cycle_input *in)
{
    struct placed *x = placed_get(p, proc);
    if (!x)
        return;
    x->seen = true;
    x->pid = proc->key.pid;
    if (x->cons.read_usec == 0 || sys->now_usec - x->cons.read_usec >= CONSTRAINT_TTL_USEC)
        read_constraints(p, proc, topo, &x->cons, sys->now_usec);
    fill_proc(topo, proc, heat_of(snap, proc->id), snap ? snap->nr_nodes : 0,
              cfg->heat_half_life_usec / 1e6, in);
    struct nt_place_proc pp = {
        .id = proc->id, .pid = proc->key.pid, .nr_threads = proc->nr_threads,
        .threads_on = in->threads_on, .access_rate = in->rate, .hot_pages_on = in->hot,
        .threads_pinned = x->cons.threads_pinned, .pages_pinned = x->cons.pages_pinned,
        .threads_pinned_why = x->cons.threads_why, .pages_pinned_why = x->cons.pages_why,
    };
    nt_place_decide(sys, &pp, &x->mem, &x->last);
    x->decided = true;
    p->decisions++;
    if (x->last.action != NT_PLACE_NONE)
        act(p, w, procs, proc, x, topo, in, cfg, sys->now_usec);
    else if (x->rest.pending)
        continue_rest(p, w, procs, proc, x, topo, in, cfg->mode == NT_MODE_ADVISE, sys->now_usec);
}

/* For tiering: may this process's pages move? */
static bool pages_pinned(uint32_t proc_id, void *ud)
{
    struct placed *x = placed_find(ud, proc_id);
    return !x || x->cons.pages_pinned;
}

int nt_placer_cycle(struct nt_placer *p, struct nt_watch *w, const struct nt_config *cfg,
                    const struct nt_topology *topo, const struct nt_nodeset *maintenance, uint64_t now_usec)
{
    if (!topo)
        return 0;
    if (topo->nr_nodes != p->cost_nodes) {
        /* Nodes came or went (hot-plug): what was measured no longer fits. */
        log_notice("placement: %u nodes now (was %u); costs measured at startup no longer apply",
                   topo->nr_nodes, p->cost_nodes);
        p->calibrated = false;
        free(p->cost_ids);
        free(p->c_mem);
        p->cost_ids = NULL;
        p->c_mem = NULL;
        int r = init_costs(p, topo);
        if (r < 0)
            return r;
        apply_cost_config(p, cfg);
    }
    const struct nt_procs *procs = nt_watch_procs(w);
    struct nt_heat_snapshot *snap = NULL;
    int r = nt_watch_snapshot(w, now_usec, 0, &snap);
    if (r < 0)
        return r;
    struct cycle_input in = { 0 };
    r = alloc_input(&in, topo->nr_nodes);
    if (r >= 0) {
        fill_nodes(p, topo, procs, maintenance, in.nodes);
        struct nt_place_system sys = {
            .nr_nodes = topo->nr_nodes, .nodes = in.nodes, .distance = topo->distance,
            .cost = &p->cost, .params = &p->params, .now_usec = now_usec,
        };
        for (size_t i = 0; i < p->nr_procs; i++)
            p->procs[i].seen = false;
        size_t np;
        const struct nt_proc *list = nt_procs_list(procs, &np);
        for (size_t i = 0; i < np; i++)
            decide_one(p, w, &sys, procs, &list[i], snap, cfg, topo, &in);
        placed_sweep(p);
        int tr = nt_tierer_cycle(p->tierer, p->mover, w, cfg, topo, maintenance, now_usec, pages_pinned, p);
        if (tr < 0)
            log_warning("tiering: %s", strerror(-tr));
        nt_mover_retry(p->mover, procs, now_usec, NULL);
        p->cycles++;
    }
    free_input(&in);
    nt_heat_snapshot_free(snap);
    nt_heat_snapshot_free(p->pages_snap);
    p->pages_snap = NULL;
    return r;
}

/* ---- views -------------------------------------------------------------------- */

static struct json_object *costs_json(const struct nt_placer *p)
{
    const struct nt_cost_model *c = &p->cost;
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "c_mem_usec", json_object_new_double(c->c_mem_default_usec));
    json_object_object_add(o, "c_mem_origin", json_object_new_string(nt_cost_origin_to_string(c->mem_origin)));
    struct json_object *pairs = json_object_new_array();
    for (unsigned i = 0; c->c_mem_usec && i < c->nr_nodes; i++)
        for (unsigned j = 0; j < c->nr_nodes; j++) {
            double v = c->c_mem_usec[i * c->nr_nodes + j];
            if (i == j || v < 0)
                continue;
            struct json_object *e = json_object_new_object();
            json_object_object_add(e, "from", json_object_new_int(c->node_ids[i]));
            json_object_object_add(e, "to", json_object_new_int(c->node_ids[j]));
            json_object_object_add(e, "usec_per_page", json_object_new_double(v));
            json_object_array_add(pairs, e);
        }
    json_object_object_add(o, "c_mem_pairs", pairs);
    json_object_object_add(o, "c_thread_usec",
                           json_object_new_double(c->c_thread_refill_usec + c->c_thread_sched_usec));
    json_object_object_add(o, "c_thread_refill_usec", json_object_new_double(c->c_thread_refill_usec));
    json_object_object_add(o, "c_thread_sched_usec", json_object_new_double(c->c_thread_sched_usec));
    json_object_object_add(o, "c_thread_origin",
                           json_object_new_string(nt_cost_origin_to_string(c->thread_origin)));
    return o;
}

struct json_object *nt_placer_status_json(const struct nt_placer *p)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "costs", costs_json(p));
    json_object_object_add(o, "calibration", p->calibrated ? nt_calibration_to_json(&p->cal) : NULL);
    json_object_object_add(o, "cycles", json_object_new_uint64(p->cycles));
    json_object_object_add(o, "decisions", json_object_new_uint64(p->decisions));
    json_object_object_add(o, "thread_moves", json_object_new_uint64(p->threads_moves));
    json_object_object_add(o, "threads_moved", json_object_new_uint64(p->threads_moved));
    json_object_object_add(o, "page_moves", json_object_new_uint64(p->page_moves));
    json_object_object_add(o, "pages_moved", json_object_new_uint64(p->pages_moved));
    json_object_object_add(o, "hot_first_moves", json_object_new_uint64(p->hot_first_moves));
    json_object_object_add(o, "rest_moves", json_object_new_uint64(p->rest_moves));
    json_object_object_add(o, "rests_cancelled", json_object_new_uint64(p->rests_cancelled));
    json_object_object_add(o, "advised", json_object_new_uint64(p->advised));
    json_object_object_add(o, "failed", json_object_new_uint64(p->failed));
    json_object_object_add(o, "tiering", nt_tierer_status_json(p->tierer));
    json_object_object_add(o, "mover", nt_mover_stats_json(p->mover));
    return o;
}

static void add_double(struct json_object *o, const char *k, double v)
{
    json_object_object_add(o, k, json_object_new_double(isfinite(v) ? v : 0));
}

static struct json_object *decision_json(const struct nt_place_decision *d, const struct nt_place_params *par)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "action", json_object_new_string(nt_place_action_to_string(d->action)));
    json_object_object_add(o, "dest_node", json_object_new_int(d->dest_node));
    json_object_object_add(o, "reason", json_object_new_string(nt_place_reason_to_string(d->reason)));
    json_object_object_add(o, "why", json_object_new_string(d->why));
    json_object_object_add(o, "thread_node", json_object_new_int(d->thread_node));
    json_object_object_add(o, "mem_node", json_object_new_int(d->mem_node));
    add_double(o, "remote_fraction", d->remote_fraction);
    add_double(o, "penalty_usec_per_sec", d->penalty_usec_per_sec);
    add_double(o, "horizon_sec", par->horizon_sec);
    add_double(o, "gain_usec", d->gain_usec);
    json_object_object_add(o, "hot_remote_pages", json_object_new_uint64(d->hot_remote_pages));
    add_double(o, "c_mem_per_page_usec", d->c_mem_per_page_usec);
    add_double(o, "cost_pages_usec", d->c_mem_usec);
    json_object_object_add(o, "page_dest_node", json_object_new_int(d->page_dest_node));
    json_object_object_add(o, "threads_to_move", json_object_new_int((int)d->threads_to_move));
    add_double(o, "cost_threads_usec", d->c_thread_usec);
    json_object_object_add(o, "candidate", json_object_new_string(nt_place_action_to_string(d->candidate)));
    json_object_object_add(o, "candidate_node", json_object_new_int(d->candidate_node));
    json_object_object_add(o, "streak", json_object_new_int((int)d->streak));
    json_object_object_add(o, "streak_needed", json_object_new_int((int)d->streak_needed));
    json_object_object_add(o, "cooldown_remaining_usec", json_object_new_uint64(d->cooldown_remaining_usec));
    json_object_object_add(o, "settle_remaining_usec", json_object_new_uint64(d->settle_remaining_usec));
    return o;
}

static struct json_object *placed_json(const struct placed *x, const struct nt_place_params *par, bool advise)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "pid", json_object_new_int(x->pid));
    json_object_object_add(o, "comm", json_object_new_string(x->comm));
    json_object_object_add(o, "mode", json_object_new_string(advise ? "advise" : "enforce"));
    json_object_object_add(o, "threads_pinned", json_object_new_boolean(x->cons.threads_pinned));
    json_object_object_add(o, "threads_pinned_why",
                           x->cons.threads_pinned ? json_object_new_string(x->cons.threads_why) : NULL);
    json_object_object_add(o, "affinity_set_by",
                           x->cons.affinity_owner[0] ? json_object_new_string(x->cons.affinity_owner) : NULL);
    json_object_object_add(o, "pages_pinned", json_object_new_boolean(x->cons.pages_pinned));
    json_object_object_add(o, "pages_pinned_why",
                           x->cons.pages_pinned ? json_object_new_string(x->cons.pages_why) : NULL);
    json_object_object_add(o, "decision", decision_json(&x->last, par));
    json_object_object_add(o, "last_decision",
                           x->last_action != NT_PLACE_NONE ? decision_json(&x->acted, par) : NULL);
    json_object_object_add(o, "last_action", json_object_new_string(nt_place_action_to_string(x->last_action)));
    json_object_object_add(o, "last_action_node", json_object_new_int(x->last_action_node));
    json_object_object_add(o, "last_result", json_object_new_string(x->last_result));
    struct json_object *rest = NULL;
    if (x->rest.pending) {
        rest = json_object_new_object();
        json_object_object_add(rest, "node", json_object_new_int(x->rest.dest_node));
        json_object_object_add(rest, "thread_node", json_object_new_int(x->rest.thread_node));
        json_object_object_add(rest, "since_usec", json_object_new_uint64(x->rest.since_usec));
        json_object_object_add(rest, "hot_pages_moved", json_object_new_uint64(x->rest_hot_moved));
    }
    json_object_object_add(o, "pending_rest", rest);
    return o;
}

struct json_object *nt_placer_explain_json(const struct nt_placer *p, const struct nt_watch *w,
                                           const struct nt_config *cfg, pid_t pid, int *err)
{
    const struct placed *x = placed_by_pid(p, pid);
    if (!x || !x->decided) {
        *err = -ESRCH;
        char why[256] = "";
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "pid", json_object_new_int(pid));
        json_object_object_add(o, "watched", json_object_new_boolean(0));
        if (nt_procs_explain(nt_watch_procs(w), cfg, pid, why, sizeof(why)) == 0)
            json_object_object_add(o, "why_not", json_object_new_string(why));
        else
            json_object_object_add(o, "why_not", json_object_new_string("not seen by the last process scan"));
        return o;
    }
    *err = 0;
    struct json_object *o = placed_json(x, &p->params, cfg->mode == NT_MODE_ADVISE);
    json_object_object_add(o, "watched", json_object_new_boolean(1));
    return o;
}

struct json_object *nt_placer_plan_json(const struct nt_placer *p)
{
    struct json_object *list = json_object_new_array();
    for (size_t i = 0; i < p->nr_procs; i++) {
        const struct placed *x = &p->procs[i];
        const struct nt_place_decision *d = &x->last;
        if (x->decided && d->action == NT_PLACE_NONE && x->rest.pending) {
            /* The rest of a page move whose hot pages went first. */
            char why[96];
            snprintf(why, sizeof(why), "the rest of a page move, after %" PRIu64 " hot pages", x->rest_hot_moved);
            struct json_object *e = json_object_new_object();
            json_object_object_add(e, "pid", json_object_new_int(x->pid));
            json_object_object_add(e, "comm", json_object_new_string(x->comm));
            json_object_object_add(e, "action", json_object_new_string(nt_place_action_to_string(NT_PLACE_MOVE_PAGES)));
            json_object_object_add(e, "node", json_object_new_int(x->rest.dest_node));
            json_object_object_add(e, "state", json_object_new_string("rest"));
            json_object_object_add(e, "reason", json_object_new_string(nt_place_reason_to_string(d->reason)));
            json_object_object_add(e, "why", json_object_new_string(why));
            json_object_object_add(e, "result", json_object_new_string(x->last_result));
            json_object_array_add(list, e);
            continue;
        }
        if (!x->decided || (d->action == NT_PLACE_NONE && d->candidate == NT_PLACE_NONE))
            continue;
        struct json_object *e = json_object_new_object();
        bool now = d->action != NT_PLACE_NONE;
        json_object_object_add(e, "pid", json_object_new_int(x->pid));
        json_object_object_add(e, "comm", json_object_new_string(x->comm));
        json_object_object_add(e, "action",
                               json_object_new_string(nt_place_action_to_string(now ? d->action : d->candidate)));
        json_object_object_add(e, "node", json_object_new_int(now ? d->dest_node : d->candidate_node));
        json_object_object_add(e, "state", json_object_new_string(now ? "this-cycle" : "waiting"));
        json_object_object_add(e, "reason", json_object_new_string(nt_place_reason_to_string(d->reason)));
        json_object_object_add(e, "why", json_object_new_string(d->why));
        json_object_object_add(e, "result", json_object_new_string(now ? x->last_result : ""));
        json_object_array_add(list, e);
    }
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "actions", list);
    return o;
}

int nt_placer_restore(struct nt_placer *p, pid_t pid)
{
    return nt_mover_restore(p->mover, pid);
}

void nt_placer_set_pin_owner(struct nt_placer *p, nt_placer_pin_owner_fn fn, void *userdata)
{
    p->pin_owner = fn;
    p->pin_owner_ud = userdata;
}

bool nt_placer_affinity_is_ours(const struct nt_placer *p, pid_t pid, const cpu_set_t *mask)
{
    return nt_mover_affinity_is_ours(p->mover, pid, mask);
}
