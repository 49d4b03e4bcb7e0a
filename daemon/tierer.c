/* The tierer: hot pages up from slow tiers, cold pages down from fast
 * nodes under pressure. See tierer.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "numatier/aggregate.h"
#include "numatier/config.h"
#include "numatier/heat.h"
#include "numatier/log.h"
#include "numatier/mover.h"
#include "numatier/procs.h"
#include "numatier/tierer.h"
#include "numatier/tiering.h"
#include "numatier/topology.h"
#include "numatier/util.h"
#include "numatier/watch.h"

#define PAGE_SIZE_4K        4096u
/* Hottest pages per process handed to the policy each cycle. */
#define PAGES_PER_PROC      4096
/* Pages looked at per cycle in search of cold pages the table lacks (only
 * while a fast node is under pressure). A page must be seen cold on several
 * scans, so the window decides how soon demotion starts: 16384 took ~14
 * cycles to reach a 433 MiB process's every page, 65536 about 4; the query
 * is one move_pages call, a page-table walk per page. */
#define COLD_SCAN_PAGES     65536
/* A page's history is forgotten after this long unseen. */
#define STATE_TTL_USEC      (15 * 60 * 1000000ull)

struct slot {
    uint32_t proc_id;                 /* 0: empty */
    uint64_t vaddr;
    uint64_t seen_usec;
    struct nt_tier_page_state st;
};

struct nt_tierer {
    char *root;
    struct slot *slots;
    size_t cap, used;                 /* cap a power of two */
    uint64_t cycles, promoted, demoted, move_failures;
    uint64_t scan_cursor;
    /* Node ids (< 1024) being relieved: pressure began below the low
     * watermark and lasts until free memory is back at the high one. */
    struct nt_nodeset relieving;
    struct nt_tier_summary last;
    bool enabled;
};

/* ---- per-page history: (proc id, vaddr) -> state ------------------------------ */

static size_t slot_home(const struct nt_tierer *t, uint32_t id, uint64_t vaddr)
{
    uint64_t h = (vaddr >> 12) * 0x9e3779b97f4a7c15ull ^ (uint64_t)id * 0xc2b2ae3d27d4eb4full;
    return (size_t)(h ^ (h >> 29)) & (t->cap - 1);
}

static struct slot *slot_find(struct nt_tierer *t, uint32_t id, uint64_t vaddr, bool insert)
{
    if (!t->cap)
        return NULL;
    for (size_t i = slot_home(t, id, vaddr);; i = (i + 1) & (t->cap - 1)) {
        struct slot *s = &t->slots[i];
        if (s->proc_id == id && s->vaddr == vaddr)
            return s;
        if (s->proc_id == 0) {
            if (!insert)
                return NULL;
            *s = (struct slot){ .proc_id = id, .vaddr = vaddr };
            t->used++;
            return s;
        }
    }
}

/* Room for `more` new entries at half load; stale entries are dropped on
 * the way. Pointers into the table are invalid afterwards. */
static int slots_reserve(struct nt_tierer *t, size_t more, uint64_t now)
{
    if (t->cap && 2 * (t->used + more) <= t->cap)
        return 0;
    size_t cap = 1024;
    while (cap < 4 * (t->used + more))
        cap *= 2;
    struct slot *old = t->slots;
    size_t old_cap = t->cap;
    t->slots = calloc(cap, sizeof(*t->slots));
    if (!t->slots) {
        t->slots = old;
        return -ENOMEM;
    }
    t->cap = cap;
    t->used = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].proc_id && now - old[i].seen_usec < STATE_TTL_USEC)
            *slot_find(t, old[i].proc_id, old[i].vaddr, true) = old[i];
    free(old);
    return 0;
}

int nt_tierer_new(const char *root, struct nt_tierer **out)
{
    struct nt_tierer *t = calloc(1, sizeof(*t));
    if (!t || !(t->root = strdup(root ? root : "/"))) {
        free(t);
        return -ENOMEM;
    }
    *out = t;
    return 0;
}

void nt_tierer_free(struct nt_tierer *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t->root);
    free(t);
}

/* ---- this cycle's pages ---------------------------------------------------------- */

struct page_list {
    struct nt_tier_page *v;
    size_t n, cap;
};

static int list_add(struct page_list *l, const struct nt_tier_page *p)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4096;
        struct nt_tier_page *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *p;
    return 0;
}

/* The policy sees pressure below the low watermark only. A node stays
 * relieved until it reaches the high one (else demotion would stop just
 * above low, and start again at the next allocation): while it is, its
 * low watermark is raised to the high one, which also keeps promotions out. */
static void fill_nodes(struct nt_tierer *t, const struct nt_topology *topo, const struct nt_config *cfg,
                       const struct nt_nodeset *maintenance, struct nt_tier_node *nodes)
{
    for (unsigned i = 0; i < topo->nr_nodes; i++) {
        const struct nt_node *n = &topo->nodes[i];
        struct nt_tier_node *x = &nodes[i];
        *x = (struct nt_tier_node){ .id = n->id, .slow = n->tier == NT_TIER_SLOW, .nr_cpus = n->nr_cpus,
                                    .maintenance = maintenance && nt_nodeset_test(maintenance, n->id) };
        nt_tier_node_memory(x, n->mem_total_kb, n->mem_free_kb, cfg->low_watermark_pct,
                            cfg->high_watermark_pct, PAGE_SIZE_4K);
        if (x->slow || x->free_pages >= x->high_watermark_pages)
            nt_nodeset_clear(&t->relieving, n->id);
        else if (x->free_pages < x->low_watermark_pages)
            nt_nodeset_set(&t->relieving, n->id);
        if (nt_nodeset_test(&t->relieving, n->id))
            x->low_watermark_pages = x->high_watermark_pages;
    }
}

static bool node_pressured(const struct nt_tier_node *nodes, unsigned nr, int id)
{
    for (unsigned i = 0; i < nr; i++)
        if (nodes[i].id == id)
            return !nodes[i].slow && nodes[i].free_pages < nodes[i].low_watermark_pages;
    return false;
}

/* The hottest pages of every process the policy may touch. Entries are
 * created here; state pointers are filled in once all exist. */
static int collect_hot(const struct nt_heat_snapshot *snap, const struct nt_procs *procs,
                       bool (*pinned)(uint32_t, void *), void *ud, struct page_list *l)
{
    for (size_t i = 0; i < snap->nr_procs; i++) {
        const struct nt_proc_heat *h = &snap->procs[i];
        const struct nt_proc *proc = nt_procs_find_id(procs, h->proc_id);
        if (!proc || (pinned && pinned(h->proc_id, ud)))
            continue;
        uint64_t mask = nt_proc_thread_nodes(proc);
        for (size_t k = 0; k < h->nr_pages; k++) {
            if (h->pages[k].node < 0)
                continue;
            struct nt_tier_page p = {
                .proc_id = h->proc_id, .vaddr = h->pages[k].vaddr, .node = h->pages[k].node,
                .heat = h->pages[k].heat, .thread_nodes_mask = mask,
            };
            int r = list_add(l, &p);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

/* Writable private anonymous mappings of pid: where cold data lives. */
static size_t anon_ranges(const char *root, pid_t pid, uint64_t (*out)[2], size_t max)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    _cleanup_free_ char *full = nt_path_join(root, path);
    _cleanup_fclose_ FILE *f = full ? fopen(full, "re") : NULL;
    char line[512];
    size_t n = 0;
    while (f && n < max && fgets(line, sizeof(line), f)) {
        unsigned long lo, hi, inode;
        char perms[8];
        int name_at = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %lu %n", &lo, &hi, perms, &inode, &name_at) < 4)
            continue;
        const char *name = name_at ? line + name_at : "";
        bool anon = inode == 0 && (*name == '\n' || *name == '\0' || strncmp(name, "[heap]", 6) == 0);
        if (anon && perms[0] == 'r' && perms[1] == 'w' && perms[3] == 'p') {
            out[n][0] = lo;
            out[n][1] = hi;
            n++;
        }
    }
    return n;
}

/* Pages of pid on nodes under pressure that the hot list lacks, as heat 0:
 * a rotating window of its anonymous memory is looked up each cycle. */
static int collect_cold_of(struct nt_tierer *t, const struct nt_proc *proc, const struct nt_tier_node *nodes,
                           unsigned nr, size_t budget, uint64_t now, struct page_list *l)
{
    uint64_t ranges[256][2];
    size_t nr_ranges = anon_ranges(t->root, proc->key.pid, ranges, 256);
    uint64_t total = 0;
    for (size_t i = 0; i < nr_ranges; i++)
        total += (ranges[i][1] - ranges[i][0]) / PAGE_SIZE_4K;
    if (!total)
        return 0;
    size_t n = budget < total ? budget : (size_t)total;
    _cleanup_free_ uint64_t *va = malloc(n * sizeof(*va));
    _cleanup_free_ int *node = malloc(n * sizeof(*node));
    if (!va || !node)
        return -ENOMEM;
    uint64_t start = t->scan_cursor % total;
    for (size_t k = 0; k < n; k++) {
        uint64_t idx = (start + k) % total;
        size_t r = 0;
        while (idx >= (ranges[r][1] - ranges[r][0]) / PAGE_SIZE_4K) {
            idx -= (ranges[r][1] - ranges[r][0]) / PAGE_SIZE_4K;
            r++;
        }
        va[k] = ranges[r][0] + idx * PAGE_SIZE_4K;
    }
    if (nt_page_nodes_query(proc->key.pid, n, va, node, NULL) < 0)
        return 0;                          /* gone: not an error */
    uint64_t mask = nt_proc_thread_nodes(proc);
    for (size_t k = 0; k < n; k++) {
        if (node[k] < 0 || !node_pressured(nodes, nr, node[k]))
            continue;
        struct slot *s = slot_find(t, proc->id, va[k], false);
        if (s && s->seen_usec == now)
            continue;                      /* listed hot already */
        struct nt_tier_page p = { .proc_id = proc->id, .vaddr = va[k], .node = node[k], .heat = 0,
                                  .thread_nodes_mask = mask };
        int r = list_add(l, &p);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Unlisted pages of a process are cold only if its list was complete, or
 * its last (coolest) listed page is cold already. */
static bool unlisted_are_cold(const struct nt_heat_snapshot *snap, uint32_t id, double cold)
{
    for (size_t i = 0; i < snap->nr_procs; i++) {
        const struct nt_proc_heat *h = &snap->procs[i];
        if (h->proc_id == id)
            return h->nr_pages < PAGES_PER_PROC || h->pages[h->nr_pages - 1].heat <= cold;
    }
    return true;
}

static int collect_cold(struct nt_tierer *t, const struct nt_procs *procs, const struct nt_heat_snapshot *snap,
                        double cold, const struct nt_tier_node *nodes, unsigned nr,
                        bool (*pinned)(uint32_t, void *), void *ud, uint64_t now, struct page_list *l)
{
    bool any = false;
    for (unsigned i = 0; i < nr; i++)
        any |= node_pressured(nodes, nr, nodes[i].id);
    if (!any)
        return 0;
    size_t np;
    const struct nt_proc *list = nt_procs_list(procs, &np);
    for (size_t i = 0; i < np; i++) {
        if ((pinned && pinned(list[i].id, ud)) || !unlisted_are_cold(snap, list[i].id, cold))
            continue;
        int r = collect_cold_of(t, &list[i], nodes, nr, COLD_SCAN_PAGES / np + 1, now, l);
        if (r < 0)
            return r;
    }
    t->scan_cursor += COLD_SCAN_PAGES / (np ? np : 1) + 1;
    return 0;
}

/* Give every listed page its state, creating what is new. */
static int attach_states(struct nt_tierer *t, struct page_list *l, size_t from, uint64_t now)
{
    int r = slots_reserve(t, l->n - from, now);
    if (r < 0)
        return r;
    for (size_t i = from; i < l->n; i++) {
        struct slot *s = slot_find(t, l->v[i].proc_id, l->v[i].vaddr, true);
        s->seen_usec = now;
        l->v[i].state = &s->st;
    }
    return 0;
}

/* ---- moving ------------------------------------------------------------------------ */

static int by_proc_then_target(const void *a, const void *b)
{
    const struct nt_tier_move *x = a, *y = b;
    if (x->proc_id != y->proc_id)
        return x->proc_id < y->proc_id ? -1 : 1;
    return (x->to > y->to) - (x->to < y->to);
}

static void move_group(struct nt_tierer *t, struct nt_mover *mover, struct nt_watch *w,
                       const struct nt_procs *procs, const struct nt_tier_move *m, size_t n, uint64_t now)
{
    const struct nt_proc *proc = nt_procs_find_id(procs, m[0].proc_id);
    if (!proc)
        return;
    _cleanup_free_ uint64_t *va = malloc(n * sizeof(*va));
    if (!va)
        return;
    for (size_t i = 0; i < n; i++)
        va[i] = m[i].vaddr;
    struct nt_move_result res;
    int r = nt_mover_move_pages(mover, procs, proc, va, n, m[0].to, NULL, 0, now, &res);
    if (r < 0) {
        t->move_failures += n;
        log_warning("tiering: pid %d (%s): moving %zu pages to node %d failed: %s", (int)proc->key.pid,
                    proc->comm, n, m[0].to, strerror(-r));
        return;
    }
    /* Only these pages moved: the process's other known nodes stay valid
     * (forgetting them all each cycle starved both the lookups and the
     * per-node access counts while pages were being promoted). */
    if (res.moved)
        nt_watch_some_pages_moved(w, proc->id, va, n);
    if (m[0].kind == NT_TIER_PROMOTE)
        t->promoted += res.moved;
    else
        t->demoted += res.moved;
    t->move_failures += res.nomem + res.gave_up + res.other;
    log_info("tiering: pid %d (%s): %s %" PRIu64 " of %zu pages to node %d", (int)proc->key.pid, proc->comm,
             nt_tier_move_kind_to_string(m[0].kind), res.moved, n, m[0].to);
}

static void carry_out(struct nt_tierer *t, struct nt_mover *mover, struct nt_watch *w,
                      const struct nt_procs *procs, struct nt_tier_move *moves, size_t n, uint64_t now)
{
    qsort(moves, n, sizeof(*moves), by_proc_then_target);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && moves[j].proc_id == moves[i].proc_id && moves[j].to == moves[i].to &&
               moves[j].kind == moves[i].kind)
            j++;
        move_group(t, mover, w, procs, &moves[i], j - i, now);
        i = j;
    }
}

static struct nt_tier_params params_from(const struct nt_config *cfg)
{
    return (struct nt_tier_params){
        .hot_threshold = cfg->hot_heat,
        .cold_threshold = cfg->cold_heat,
        .hot_cycles = cfg->tier_cycles,
        .cold_cycles = cfg->tier_cycles,
        .cooldown_usec = cfg->tier_cooldown_usec,
        .max_promote = cfg->max_promote,
        .max_demote = cfg->max_demote,
    };
}

static int plan_and_move(struct nt_tierer *t, struct nt_mover *mover, struct nt_watch *w,
                         const struct nt_procs *procs,
                         const struct nt_config *cfg, const struct nt_topology *topo, const struct nt_tier_node *nodes,
                         struct page_list *l, uint64_t now)
{
    struct nt_tier_params p = params_from(cfg);
    size_t cap = (size_t)cfg->max_promote + cfg->max_demote;
    _cleanup_free_ struct nt_tier_move *moves = malloc((cap ? cap : 1) * sizeof(*moves));
    if (!moves)
        return -ENOMEM;
    int n = nt_tier_plan(&p, nodes, topo->nr_nodes, topo->distance, l->v, l->n, now, moves, cap, &t->last);
    if (n < 0)
        return n;
    if (n > 0 && cfg->mode == NT_MODE_ENFORCE)
        carry_out(t, mover, w, procs, moves, (size_t)n, now);
    return 0;
}

int nt_tierer_cycle(struct nt_tierer *t, struct nt_mover *mover, struct nt_watch *w,
                    const struct nt_config *cfg, const struct nt_topology *topo,
                    const struct nt_nodeset *maintenance, uint64_t now_usec,
                    bool (*pinned)(uint32_t proc_id, void *ud), void *ud)
{
    bool slow = false;
    for (unsigned i = 0; i < topo->nr_nodes; i++)
        slow |= topo->nodes[i].tier == NT_TIER_SLOW && topo->nodes[i].mem_total_kb > 0;
    t->enabled = cfg->tiering && slow;
    if (!t->enabled)
        return 0;
    const struct nt_procs *procs = nt_watch_procs(w);
    struct nt_heat_snapshot *snap = NULL;
    int r = nt_watch_snapshot(w, now_usec, PAGES_PER_PROC, &snap);
    if (r < 0)
        return r;
    _cleanup_free_ struct nt_tier_node *nodes = calloc(topo->nr_nodes, sizeof(*nodes));
    struct page_list l = { 0 };
    if (!nodes)
        r = -ENOMEM;
    if (r >= 0) {
        fill_nodes(t, topo, cfg, maintenance, nodes);
        r = collect_hot(snap, procs, pinned, ud, &l);
    }
    if (r >= 0)
        r = attach_states(t, &l, 0, now_usec);       /* marks the hot ones seen, for collect_cold */
    if (r >= 0)
        r = collect_cold(t, procs, snap, cfg->cold_heat, nodes, topo->nr_nodes, pinned, ud, now_usec, &l);
    if (r >= 0)
        r = attach_states(t, &l, 0, now_usec);       /* the table may have grown: all pointers anew */
    if (r >= 0)
        r = plan_and_move(t, mover, w, procs, cfg, topo, nodes, &l, now_usec);
    if (r >= 0)
        t->cycles++;
    free(l.v);
    nt_heat_snapshot_free(snap);
    return r;
}

/* ---- status -------------------------------------------------------------------------- */

static struct json_object *tally_json(const struct nt_tier_tally *tl)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "proposed", json_object_new_uint64(tl->proposed));
    struct json_object *held = json_object_new_object();
    for (int h = 0; h < NT_TIER_NR_HOLDS; h++)
        json_object_object_add(held, nt_tier_hold_to_string((enum nt_tier_hold)h),
                               json_object_new_uint64(tl->held[h]));
    json_object_object_add(o, "held", held);
    return o;
}

struct json_object *nt_tierer_status_json(const struct nt_tierer *t)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "enabled", json_object_new_boolean(t->enabled));
    json_object_object_add(o, "cycles", json_object_new_uint64(t->cycles));
    json_object_object_add(o, "promoted", json_object_new_uint64(t->promoted));
    json_object_object_add(o, "demoted", json_object_new_uint64(t->demoted));
    json_object_object_add(o, "move_failures", json_object_new_uint64(t->move_failures));
    json_object_object_add(o, "tracked_pages", json_object_new_uint64(t->used));
    struct json_object *last = json_object_new_object();
    json_object_object_add(last, "pages", json_object_new_uint64(t->last.pages));
    json_object_object_add(last, "pressured_nodes", json_object_new_uint64(t->last.pressured_nodes));
    json_object_object_add(last, "demote_needed", json_object_new_uint64(t->last.demote_needed));
    json_object_object_add(last, "promote", tally_json(&t->last.promote));
    json_object_object_add(last, "demote", tally_json(&t->last.demote));
    json_object_object_add(o, "last", last);
    return o;
}
