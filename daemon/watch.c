/* The watch pipeline: procs -> sampler -> aggregate, and its JSON views. */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>

#include "numatier/aggregate.h"
#include "numatier/config.h"
#include "numatier/heat.h"
#include "numatier/log.h"
#include "numatier/procs.h"
#include "numatier/sampler.h"
#include "numatier/topology.h"
#include "numatier/util.h"
#include "numatier/watch.h"

/* Pages whose node is looked up per cycle: bounds move_pages work. */
#define NODE_LOOKUPS_PER_CYCLE 4096

struct nt_watch {
    struct nt_procs *procs;
    struct nt_sampler *sampler;        /* NULL: no backend usable (auto) */
    char sampler_why[512];             /* why there is none */
    struct nt_aggregate *agg;
    uint64_t unwatched;                /* observations for processes not watched */
    uint64_t watch_errors;
};

struct drain_ctx {
    struct nt_watch *w;
    const struct nt_topology *topo;
    uint64_t now;
};

static struct nt_aggregate_config aggregate_config(const struct nt_config *cfg,
                                                   const struct nt_topology *topo)
{
    int max_id = 0;
    for (unsigned i = 0; topo && i < topo->nr_nodes; i++)
        if (topo->nodes[i].id > max_id)
            max_id = topo->nodes[i].id;
    return (struct nt_aggregate_config){
        .half_life_usec = cfg->heat_half_life_usec,
        .max_pages = cfg->max_pages,
        .nr_nodes = (unsigned)max_id + 1,
    };
}

int nt_watch_new(const char *root, const struct nt_config *cfg, const struct nt_topology *topo,
                 struct nt_watch **out, char *why, size_t len)
{
    _cleanup_(nt_watch_freep) struct nt_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    int r = nt_procs_new(root, getpid(), &w->procs);
    if (r < 0) {
        snprintf(why, len, "cannot read processes below %s: %s", root, strerror(-r));
        return r;
    }
    struct nt_aggregate_config ac = aggregate_config(cfg, topo);
    r = nt_aggregate_new(&ac, &w->agg);
    if (r < 0) {
        snprintf(why, len, "cannot set up the hot-page table: %s", strerror(-r));
        return r;
    }
    struct nt_sampler_env env = { .root = root, .config = cfg, .self = getpid() };
    r = nt_sampler_open(&env, cfg->sampler_backend, &w->sampler, w->sampler_why, sizeof(w->sampler_why));
    if (r == -ENODEV && cfg->sampler_backend == NT_SAMPLER_AUTO) {
        log_warning("sampler: no backend can run (%s); watching processes without sampling",
                    w->sampler_why);
    } else if (r < 0) {
        snprintf(why, len, "%s", w->sampler_why);
        return r;
    } else {
        log_info("sampler: using %s", nt_sampler_name(w->sampler));
    }
    *out = NT_TAKE_PTR(w);
    return 0;
}

void nt_watch_free(struct nt_watch *w)
{
    if (!w)
        return;
    nt_sampler_free(w->sampler);
    nt_aggregate_free(w->agg);
    nt_procs_free(w->procs);
    free(w);
}

static void on_proc_change(const struct nt_proc *p, bool added, void *userdata)
{
    struct nt_watch *w = userdata;
    log_debug("procs: %s %d (%s)", added ? "watching" : "no longer watching", (int)p->key.pid, p->comm);
    if (!added)
        nt_aggregate_forget(w->agg, p->id);
    if (!w->sampler)
        return;
    int r = added ? nt_sampler_watch(w->sampler, p->key.pid) : nt_sampler_unwatch(w->sampler, p->key.pid);
    /* A process that exits between the scan and this call is routine. */
    if (r < 0 && r != -ESRCH && r != -ENOENT) {
        w->watch_errors++;
        log_warning("sampler: cannot %s pid %d: %s", added ? "follow" : "drop", (int)p->key.pid,
                    strerror(-r));
    }
}

static const struct nt_proc *proc_by_id(const struct nt_watch *w, uint32_t id)
{
    size_t n;
    const struct nt_proc *list = nt_procs_list(w->procs, &n);
    for (size_t i = 0; i < n; i++)
        if (list[i].id == id)
            return &list[i];
    return NULL;
}

static pid_t pid_of(uint32_t proc_id, void *userdata)
{
    const struct nt_proc *p = proc_by_id(userdata, proc_id);
    return p ? p->key.pid : 0;
}

static uint64_t thread_nodes(uint32_t proc_id, void *userdata)
{
    const struct nt_proc *p = proc_by_id(userdata, proc_id);
    uint64_t mask = 0;
    for (unsigned i = 0; p && i < p->nr_threads; i++)
        if (p->threads[i].node >= 0 && p->threads[i].node < 64)
            mask |= UINT64_C(1) << p->threads[i].node;
    return mask;
}

int nt_watch_cycle(struct nt_watch *w, const struct nt_config *cfg, const struct nt_topology *topo,
                   uint64_t now_usec)
{
    int r = nt_procs_scan(w->procs, cfg, topo, now_usec, on_proc_change, w);
    if (r < 0)
        return r;
    return nt_aggregate_refresh_nodes(w->agg, now_usec, NODE_LOOKUPS_PER_CYCLE, pid_of, w,
                                      nt_page_nodes_query, NULL);
}

static void on_access(const struct nt_access *a, void *userdata)
{
    struct drain_ctx *c = userdata;
    const struct nt_proc *p = nt_procs_find(c->w->procs, a->pid);
    if (!p) {
        c->w->unwatched++;
        return;
    }
    int cpu_node = a->cpu >= 0 ? nt_topology_cpu_node(c->topo, a->cpu) : -1;
    nt_aggregate_add(c->w->agg, p->id, a, cpu_node, c->now);
}

static uint64_t own_cpu_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int nt_watch_drain(struct nt_watch *w, const struct nt_topology *topo, uint64_t now_usec)
{
    if (!w->sampler)
        return 0;
    struct drain_ctx c = { .w = w, .topo = topo, .now = now_usec };
    return nt_sampler_drain(w->sampler, now_usec, own_cpu_usec(), on_access, &c);
}

int nt_watch_reconfigure(struct nt_watch *w, const struct nt_config *cfg, const struct nt_topology *topo)
{
    struct nt_aggregate_config ac = aggregate_config(cfg, topo);
    return nt_aggregate_reconfigure(w->agg, &ac);
}

static struct json_object *sampler_json(struct nt_watch *w)
{
    struct json_object *o = json_object_new_object();
    if (!w->sampler) {
        json_object_object_add(o, "backend", NULL);
        json_object_object_add(o, "unavailable", json_object_new_string(w->sampler_why));
        return o;
    }
    struct nt_sampler_stats st;
    nt_sampler_get_stats(w->sampler, &st);
    const char *perf_why = nt_sampler_perf_unavailable(w->sampler);
    json_object_object_add(o, "backend", json_object_new_string(nt_sampler_name(w->sampler)));
    json_object_object_add(o, "perf_unavailable", *perf_why ? json_object_new_string(perf_why) : NULL);
    json_object_object_add(o, "samples", json_object_new_uint64(st.samples));
    json_object_object_add(o, "lost", json_object_new_uint64(st.lost));
    json_object_object_add(o, "lost_samples", json_object_new_uint64(st.lost_samples));
    json_object_object_add(o, "throttled", json_object_new_uint64(st.throttled));
    json_object_object_add(o, "unthrottled", json_object_new_uint64(st.unthrottled));
    json_object_object_add(o, "bad_records", json_object_new_uint64(st.bad_records));
    json_object_object_add(o, "unwatched", json_object_new_uint64(st.unwatched + w->unwatched));
    json_object_object_add(o, "period", json_object_new_uint64(st.period));
    json_object_object_add(o, "targets", json_object_new_uint64(st.targets));
    json_object_object_add(o, "watch_errors", json_object_new_uint64(w->watch_errors));
    return o;
}

static struct json_object *procs_json(const struct nt_watch *w)
{
    struct nt_procs_stats st;
    nt_procs_get_stats(w->procs, &st);
    size_t n;
    nt_procs_list(w->procs, &n);
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "watched", json_object_new_uint64(n));
    json_object_object_add(o, "scans", json_object_new_uint64(st.scans));
    json_object_object_add(o, "added", json_object_new_uint64(st.added));
    json_object_object_add(o, "removed", json_object_new_uint64(st.removed));
    json_object_object_add(o, "exited_mid_cycle", json_object_new_uint64(st.exited_mid_cycle));
    json_object_object_add(o, "reused_pids", json_object_new_uint64(st.reused_pids));
    return o;
}

struct json_object *nt_watch_status_json(struct nt_watch *w)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "sampler", sampler_json(w));
    json_object_object_add(o, "procs", procs_json(w));
    return o;
}

static struct json_object *uint_array(const unsigned *v, unsigned n)
{
    struct json_object *a = json_object_new_array_ext((int)n);
    for (unsigned i = 0; i < n; i++)
        json_object_array_add(a, json_object_new_uint64(v[i]));
    return a;
}

static struct json_object *double_array(const double *v, unsigned n)
{
    struct json_object *a = json_object_new_array_ext((int)n);
    for (unsigned i = 0; i < n; i++)
        json_object_array_add(a, json_object_new_double(v[i]));
    return a;
}

static struct json_object *pages_json(const struct nt_proc_heat *h)
{
    struct json_object *a = json_object_new_array_ext((int)h->nr_pages);
    for (size_t i = 0; i < h->nr_pages; i++) {
        struct json_object *p = json_object_new_object();
        json_object_object_add(p, "vaddr", json_object_new_uint64(h->pages[i].vaddr));
        json_object_object_add(p, "heat", json_object_new_double(h->pages[i].heat));
        json_object_object_add(p, "node", json_object_new_int(h->pages[i].node));
        json_object_array_add(a, p);
    }
    return a;
}

static struct json_object *thread_nodes_json(const struct nt_proc *p)
{
    uint64_t mask = 0;
    struct json_object *a = json_object_new_array();
    for (unsigned i = 0; i < p->nr_threads; i++) {
        int n = p->threads[i].node;
        if (n < 0 || (n < 64 && (mask >> n) & 1))
            continue;
        if (n < 64)
            mask |= UINT64_C(1) << n;
        json_object_array_add(a, json_object_new_int(n));
    }
    return a;
}

static struct json_object *proc_top_json(const struct nt_proc *p, const struct nt_proc_heat *h,
                                         unsigned nr_nodes)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "pid", json_object_new_int(p->key.pid));
    json_object_object_add(o, "comm", json_object_new_string(p->comm));
    json_object_object_add(o, "rss_bytes", json_object_new_uint64(p->rss_bytes));
    json_object_object_add(o, "cpu_pct", json_object_new_double(p->cpu_pct));
    json_object_object_add(o, "threads", json_object_new_int((int)p->nr_threads));
    json_object_object_add(o, "thread_nodes", thread_nodes_json(p));
    json_object_object_add(o, "lma", json_object_new_double(h ? h->lma : 0));
    json_object_object_add(o, "rma", json_object_new_double(h ? h->rma : 0));
    json_object_object_add(o, "rma_lma",
                           h && h->lma > 0 ? json_object_new_double(h->rma / h->lma) : NULL);
    if (h) {
        json_object_object_add(o, "node_accesses", double_array(h->node_accesses, nr_nodes));
        json_object_object_add(o, "hot_pages", uint_array(h->hot_pages, nr_nodes));
        json_object_object_add(o, "unknown_node_pages", json_object_new_int((int)h->unknown_node_pages));
        json_object_object_add(o, "pages", pages_json(h));
    }
    return o;
}

static const struct nt_proc_heat *heat_for(const struct nt_heat_snapshot *s, uint32_t id)
{
    for (size_t i = 0; s && i < s->nr_procs; i++)
        if (s->procs[i].proc_id == id)
            return &s->procs[i];
    return NULL;
}

const struct nt_procs *nt_watch_procs(const struct nt_watch *w)
{
    return w->procs;
}

int nt_watch_snapshot(struct nt_watch *w, uint64_t now_usec, size_t top_pages,
                      struct nt_heat_snapshot **out)
{
    return nt_aggregate_snapshot(w->agg, now_usec, top_pages, thread_nodes, w, out);
}

void nt_watch_pages_moved(struct nt_watch *w, uint32_t proc_id)
{
    nt_aggregate_invalidate_nodes(w->agg, proc_id);
}

void nt_watch_some_pages_moved(struct nt_watch *w, uint32_t proc_id, const uint64_t *vaddrs, size_t n)
{
    nt_aggregate_invalidate_pages(w->agg, proc_id, vaddrs, n);
}

void nt_watch_all_pages_moved(struct nt_watch *w)
{
    nt_aggregate_invalidate_all_nodes(w->agg);
}

struct json_object *nt_watch_top_json(struct nt_watch *w, uint64_t now_usec, size_t top_pages)
{
    struct nt_heat_snapshot *snap = NULL;
    int r = nt_aggregate_snapshot(w->agg, now_usec, top_pages, thread_nodes, w, &snap);
    if (r < 0)
        return NULL;
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "sampler",
                           json_object_new_string(w->sampler ? nt_sampler_name(w->sampler) : "none"));
    json_object_object_add(o, "nr_nodes", json_object_new_int((int)snap->nr_nodes));
    json_object_object_add(o, "tracked_pages", json_object_new_uint64(snap->tracked_pages));
    json_object_object_add(o, "evictions", json_object_new_uint64(snap->evictions));
    size_t n;
    const struct nt_proc *list = nt_procs_list(w->procs, &n);
    struct json_object *procs = json_object_new_array_ext((int)n);
    for (size_t i = 0; i < n; i++)
        json_object_array_add(procs, proc_top_json(&list[i], heat_for(snap, list[i].id), snap->nr_nodes));
    json_object_object_add(o, "procs", procs);
    nt_heat_snapshot_free(snap);
    return o;
}
