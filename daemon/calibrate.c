/* Calibration: time move_pages of a scratch buffer between every pair of
 * memory nodes, and a probe thread's cache refill after a migration.
 *
 * Everything here acts on numatierd itself (its own buffers and a thread
 * of its own), so nothing is guarded: there is no other process involved.
 * It runs once at startup under a time budget; a measurement that cannot
 * be made leaves the default in place and says why. */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <numaif.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "numatier/calibrate.h"
#include "numatier/log.h"
#include "numatier/topology.h"
#include "numatier/util.h"

#define HUGE_SIZE        (UINT64_C(2) << 20)
#define MAX_REPEATS      32
#define CACHE_LINE       64
#define WARM_PASSES      6
#define STEADY_PASSES    3            /* the last warm passes: the steady state */
#define DEFAULT_PROBE    (256u << 10)
#define MIN_PROBE        (64u << 10)
#define MAX_PROBE        (4u << 20)

void nt_calibrate_params_init(struct nt_calibrate_params *p)
{
    *p = (struct nt_calibrate_params){
        .mem_buffer_bytes = 1u << 20,
        .huge_buffer_bytes = 4u << 20,
        .repeats = 5,
        .time_budget_usec = 1500000,
        .thp = true,
        .thread = true,
        .sched_usec = -1,
    };
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

double nt_median(double *v, size_t n)
{
    if (!n)
        return NAN;
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

bool nt_thp_enabled(const char *root)
{
    _cleanup_free_ char *s = NULL;
    if (nt_read_file(root, "/sys/kernel/mm/transparent_hugepage/enabled", &s) < 0)
        return false;
    const char *open = strchr(s, '[');
    return open && (strncmp(open, "[always]", 8) == 0 || strncmp(open, "[madvise]", 9) == 0);
}

static double elapsed_usec(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e6 + (double)(b->tv_nsec - a->tv_nsec) / 1e3;
}

/* ---- a scratch buffer that moves between nodes ---------------------------------- */

struct membuf {
    char *map;
    size_t map_len;
    size_t n;                   /* pages (or huge pages) */
    void **pages;
    int *nodes, *status, *where;   /* where: each page's node, -1 unknown */
};

static void membuf_free(struct membuf *b)
{
    if (b->map)
        munmap(b->map, b->map_len);
    free(b->pages);
    free(b->nodes);
    free(b->status);
    free(b->where);
    *b = (struct membuf){ 0 };
}

/* bytes of memory, touched, one entry per `step` bytes; huge: 2 MiB
 * aligned and MADV_HUGEPAGE, else MADV_NOHUGEPAGE so base pages move. */
static int membuf_new(size_t bytes, size_t step, bool huge, struct membuf *b)
{
    *b = (struct membuf){ 0 };
    size_t align = huge ? HUGE_SIZE : 0;
    b->map_len = bytes + align;
    char *map = mmap(NULL, b->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return -errno;
    b->map = map;
    char *start = huge ? (char *)(((uintptr_t)map + align - 1) & ~(uintptr_t)(align - 1)) : map;
    madvise(start, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    b->n = bytes / step;
    b->pages = calloc(b->n, sizeof(void *));
    b->nodes = calloc(b->n, sizeof(int));
    b->status = calloc(b->n, sizeof(int));
    b->where = calloc(b->n, sizeof(int));
    if (!b->pages || !b->nodes || !b->status || !b->where) {
        membuf_free(b);
        return -ENOMEM;
    }
    for (size_t i = 0; i < b->n; i++) {
        b->pages[i] = start + i * step;
        memset(start + i * step, 1, 1);
        b->where[i] = -1;
    }
    return 0;
}

/* Move the buffer to node; *usec is how long it took per page that
 * really went from `from` to node (NAN when none did). */
static int membuf_move(struct membuf *b, int from, int node, double *usec)
{
    struct timespec t0, t1;
    for (size_t i = 0; i < b->n; i++)
        b->nodes[i] = node;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long r = move_pages(0, b->n, b->pages, b->nodes, b->status, MPOL_MF_MOVE);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (r < 0)
        return -errno;
    size_t moved = 0;
    for (size_t i = 0; i < b->n; i++) {
        moved += b->status[i] == node && b->where[i] == from;
        b->where[i] = b->status[i] >= 0 ? b->status[i] : -1;
    }
    *usec = moved ? elapsed_usec(&t0, &t1) / (double)moved : NAN;
    return 0;
}

/* ---- C_mem over every pair of memory nodes --------------------------------------- */

struct mem_run {
    const struct nt_calibrate_params *p;
    uint64_t deadline;
    unsigned nr;                /* memory nodes */
    int ids[64];                /* their ids ... */
    unsigned pos[64];           /* ... and positions in the topology */
    double *samples;            /* [(i * nr + j) * repeats + r] */
    unsigned *count;            /* [i * nr + j] */
    int error;
};

static void add_sample(struct mem_run *mr, unsigned i, unsigned j, double v)
{
    unsigned *c = &mr->count[i * mr->nr + j];
    if (!isnan(v) && *c < mr->p->repeats)
        mr->samples[(i * mr->nr + j) * mr->p->repeats + (*c)++] = v;
}

/* One round: for each node i, the buffer goes i -> j -> i for every
 * j > i, so every ordered pair is timed and the buffer needs no untimed
 * move except once per i. Later rounds stop at the deadline. */
static void mem_round(struct mem_run *mr, struct membuf *b, bool first)
{
    for (unsigned i = 0; i + 1 < mr->nr; i++) {
        double u;
        int r = membuf_move(b, -2, mr->ids[i], &u);
        for (unsigned j = i + 1; r == 0 && j < mr->nr; j++) {
            if (!first && nt_now_usec() > mr->deadline)
                return;
            r = membuf_move(b, mr->ids[i], mr->ids[j], &u);
            add_sample(mr, i, j, u);
            if (r == 0)
                r = membuf_move(b, mr->ids[j], mr->ids[i], &u);
            add_sample(mr, j, i, u);
        }
        if (r < 0 && !mr->error)
            mr->error = r;
    }
}

static unsigned memory_nodes(const struct nt_topology *topo, uint64_t need, struct mem_run *mr, unsigned *low)
{
    mr->nr = 0;
    *low = 0;
    for (unsigned k = 0; k < topo->nr_nodes && mr->nr < NT_ARRAY_SIZE(mr->ids); k++) {
        const struct nt_node *n = &topo->nodes[k];
        if (n->mem_total_kb == 0)
            continue;
        if (n->mem_free_kb * 1024 < need) {
            (*low)++;                           /* no room for the buffer */
            continue;
        }
        mr->ids[mr->nr] = n->id;
        mr->pos[mr->nr++] = k;
    }
    return mr->nr;
}

static void mem_results(struct mem_run *mr, struct nt_calibration *c)
{
    unsigned rounds = UINT32_MAX;
    for (unsigned i = 0; i < mr->nr; i++)
        for (unsigned j = 0; j < mr->nr; j++) {
            unsigned n = mr->count[i * mr->nr + j];
            if (i == j || !n)
                continue;
            double med = nt_median(&mr->samples[(i * mr->nr + j) * mr->p->repeats], n);
            c->c_mem_usec[mr->pos[i] * c->nr_nodes + mr->pos[j]] = med;
            c->mem_pairs++;
            rounds = n < rounds ? n : rounds;
        }
    if (c->mem_pairs) {
        c->mem_origin = NT_COST_MEASURED;
        snprintf(c->mem_reason, sizeof(c->mem_reason), "measured %u node pairs, median of %u+ moves of %zu KiB",
                 c->mem_pairs, rounds, mr->p->mem_buffer_bytes >> 10);
    } else {
        snprintf(c->mem_reason, sizeof(c->mem_reason), "move_pages failed: %s",
                 mr->error ? strerror(-mr->error) : "no page moved");
    }
}

static int calibrate_mem(const struct nt_topology *topo, const struct nt_calibrate_params *p, uint64_t deadline,
                         struct nt_calibration *c)
{
    struct mem_run mr = { .p = p, .deadline = deadline };
    unsigned low;
    if (memory_nodes(topo, 2 * p->mem_buffer_bytes, &mr, &low) < 2) {
        snprintf(c->mem_reason, sizeof(c->mem_reason), "%s",
                 low ? "no node pairs with free memory: nothing to measure" : "no node pairs: nothing to measure");
        return 0;
    }
    _cleanup_free_ double *samples = calloc((size_t)mr.nr * mr.nr * p->repeats, sizeof(double));
    _cleanup_free_ unsigned *count = calloc((size_t)mr.nr * mr.nr, sizeof(unsigned));
    if (!samples || !count)
        return -ENOMEM;
    mr.samples = samples;
    mr.count = count;
    struct membuf b;
    int r = membuf_new(p->mem_buffer_bytes, (size_t)sysconf(_SC_PAGESIZE), false, &b);
    if (r < 0)
        return r;
    for (unsigned rep = 0; rep < p->repeats && (rep == 0 || nt_now_usec() <= deadline); rep++)
        mem_round(&mr, &b, rep == 0);
    membuf_free(&b);
    mem_results(&mr, c);
    return 0;
}

/* ---- C_mem for huge pages ------------------------------------------------------------ */

/* AnonHugePages of the mapping holding addr, from /proc/self/smaps. */
static uint64_t anon_huge_kb(const void *addr)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/self/smaps", "re");
    char line[512];
    bool in = false;
    uintptr_t a = (uintptr_t)addr;
    while (f && fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        unsigned long long kb;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            in = a >= lo && a < hi;
        else if (in && sscanf(line, "AnonHugePages: %llu kB", &kb) == 1)
            return kb;
    }
    return 0;
}

static int calibrate_huge(const struct nt_topology *topo, const struct nt_calibrate_params *p, uint64_t deadline,
                          struct nt_calibration *c)
{
    struct mem_run mr = { .p = p };
    unsigned low;
    if (!p->thp || !nt_thp_enabled(p->sysfs_root)) {
        snprintf(c->huge_reason, sizeof(c->huge_reason), "%s",
                 p->thp ? "transparent huge pages disabled" : "not asked for");
        return 0;
    }
    if (memory_nodes(topo, 2 * p->huge_buffer_bytes, &mr, &low) < 2) {
        snprintf(c->huge_reason, sizeof(c->huge_reason), "no node pairs: nothing to measure");
        return 0;
    }
    struct membuf b;
    int r = membuf_new(p->huge_buffer_bytes, HUGE_SIZE, true, &b);
    if (r < 0)
        return r;
    if (anon_huge_kb(b.pages[0]) == 0) {
        membuf_free(&b);
        snprintf(c->huge_reason, sizeof(c->huge_reason), "no huge page obtained (memory fragmented?)");
        return 0;
    }
    double v[2 * MAX_REPEATS];
    size_t n = 0;
    int from = mr.ids[0], to = mr.ids[1];
    double u;
    membuf_move(&b, -2, from, &u);
    for (unsigned rep = 0; rep < p->repeats && (rep == 0 || nt_now_usec() <= deadline); rep++) {
        if (membuf_move(&b, from, to, &u) == 0 && !isnan(u))
            v[n++] = u;
        if (membuf_move(&b, to, from, &u) == 0 && !isnan(u))
            v[n++] = u;
    }
    membuf_free(&b);
    if (!n) {
        snprintf(c->huge_reason, sizeof(c->huge_reason), "move_pages moved no huge page");
        return 0;
    }
    c->c_mem_huge_usec = nt_median(v, n);
    c->huge_origin = NT_COST_MEASURED;
    snprintf(c->huge_reason, sizeof(c->huge_reason), "measured between nodes %d and %d, median of %zu moves",
             from, to, n);
    return 0;
}

/* ---- C_thread: the refill probe --------------------------------------------------- */

struct line {
    struct line *next;
    uint64_t pad[CACHE_LINE / sizeof(uint64_t) - 1];
};

struct probe {
    int cpu_a, cpu_b;
    size_t lines;
    unsigned repeats;
    uint64_t deadline;
    double refill[MAX_REPEATS], sched[MAX_REPEATS];
    unsigned n;
    int error;
};

/* A random cycle through the lines (Sattolo), so the walk defeats the
 * prefetchers and every step is a dependent load. Fixed seed: the same
 * walk each run. */
static void link_cycle(struct line *v, size_t n)
{
    _cleanup_free_ size_t *perm = malloc(n * sizeof(*perm));
    uint64_t x = 0x9e3779b97f4a7c15u;
    if (!perm) {
        for (size_t i = 0; i < n; i++)
            v[i].next = &v[(i + 1) % n];
        return;
    }
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    for (size_t i = n - 1; i > 0; i--) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        size_t j = (size_t)((x >> 33) % i);
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < n; i++)
        v[perm[i]].next = &v[perm[(i + 1) % n]];
}

/* One pass, writing each line so the previous CPU's copies go stale: the
 * next CPU has to fetch them, as a migrated thread does. Microseconds. */
static double walk(struct line *v, size_t n)
{
    struct timespec t0, t1;
    struct line *p = v;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < n; i++) {
        p->pad[0]++;
        p = p->next;
    }
    __asm__ volatile("" : : "r"(p) : "memory");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return elapsed_usec(&t0, &t1);
}

static int pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    return sched_setaffinity(0, sizeof(s), &s) < 0 ? -errno : 0;
}

/* One repeat: warm on A, move to B (timed), the first two passes there
 * against the steady state on A. */
static int probe_once(struct probe *pr, struct line *v, double *refill, double *sched)
{
    double warm[WARM_PASSES];
    struct timespec t0, t1;
    int r = pin(pr->cpu_a);
    if (r < 0)
        return r;
    for (unsigned i = 0; i < WARM_PASSES; i++)
        warm[i] = walk(v, pr->lines);
    double steady = nt_median(warm + WARM_PASSES - STEADY_PASSES, STEADY_PASSES);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    r = pin(pr->cpu_b);         /* returns once the thread runs on B */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (r < 0)
        return r;
    double p1 = walk(v, pr->lines), p2 = walk(v, pr->lines);
    *sched = elapsed_usec(&t0, &t1);
    *refill = fmax(0, p1 - steady) + fmax(0, p2 - steady);
    return 0;
}

static void *probe_main(void *arg)
{
    struct probe *pr = arg;
    struct line *v = NULL;
    if (posix_memalign((void **)&v, CACHE_LINE, pr->lines * sizeof(*v)) != 0) {
        pr->error = -ENOMEM;
        return NULL;
    }
    memset(v, 0, pr->lines * sizeof(*v));
    link_cycle(v, pr->lines);
    for (unsigned rep = 0; rep < pr->repeats && (rep == 0 || nt_now_usec() <= pr->deadline); rep++) {
        int r = probe_once(pr, v, &pr->refill[pr->n], &pr->sched[pr->n]);
        if (r < 0) {
            pr->error = r;
            break;
        }
        pr->n++;
    }
    free(v);
    return NULL;
}

static size_t l2_bytes(void)
{
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    uint64_t kb;
    if (l2 <= 0) {
        _cleanup_free_ char *s = NULL;
        if (nt_read_file("/", "/sys/devices/system/cpu/cpu0/cache/index2/size", &s) == 0 &&
            (kb = strtoull(s, NULL, 10)) > 0)
            l2 = (long)(kb << 10);
    }
    if (l2 <= 0)
        return DEFAULT_PROBE;
    return l2 < (long)MIN_PROBE ? MIN_PROBE : l2 > (long)MAX_PROBE ? MAX_PROBE : (size_t)l2;
}

/* A CPU of ours on some node, and one on another node if we may use one,
 * else another CPU of the same node. false with one usable CPU. */
static bool pick_cpus(const struct nt_topology *topo, int *a, int *b, bool *remote)
{
    cpu_set_t ok;
    if (sched_getaffinity(0, sizeof(ok), &ok) < 0)
        return false;
    *a = *b = -1;
    *remote = false;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &ok))
            continue;
        if (*a < 0) {
            *a = c;
            continue;
        }
        int na = topo ? nt_topology_cpu_node(topo, *a) : -1, nc = topo ? nt_topology_cpu_node(topo, c) : -1;
        if (na >= 0 && nc >= 0 && na != nc) {
            *b = c;
            *remote = true;
            break;
        }
        if (*b < 0)
            *b = c;
    }
    return *b >= 0;
}

static void thread_results(const struct nt_calibrate_params *p, struct probe *pr, bool remote,
                           struct nt_calibration *c)
{
    if (!pr->n) {
        snprintf(c->thread_reason, sizeof(c->thread_reason), "probe failed: %s",
                 strerror(pr->error ? -pr->error : EAGAIN));
        return;
    }
    c->c_thread_refill_usec = nt_median(pr->refill, pr->n);
    c->c_thread_sched_usec = p->sched_usec >= 0 ? p->sched_usec : nt_median(pr->sched, pr->n);
    c->thread_origin = NT_COST_MEASURED;
    snprintf(c->thread_reason, sizeof(c->thread_reason), "measured CPU %d -> %d (%s), %zu KiB probe, median of %u%s",
             pr->cpu_a, pr->cpu_b, remote ? "another node" : "same node: no other node to move to",
             c->probe_bytes >> 10, pr->n, c->c_thread_refill_usec > 0 ? "" : "; no slowdown seen (shared caches?)");
}

static int calibrate_thread(const struct nt_topology *topo, const struct nt_calibrate_params *p, uint64_t deadline,
                            struct nt_calibration *c)
{
    if (!p->thread) {
        snprintf(c->thread_reason, sizeof(c->thread_reason), "not asked for");
        return 0;
    }
    bool remote;
    struct probe pr = { .repeats = p->repeats, .deadline = deadline };
    if (!pick_cpus(topo, &pr.cpu_a, &pr.cpu_b, &remote)) {
        snprintf(c->thread_reason, sizeof(c->thread_reason), "one usable CPU: nowhere to move a thread");
        return 0;
    }
    c->probe_bytes = p->probe_bytes ? p->probe_bytes : l2_bytes();
    pr.lines = c->probe_bytes / sizeof(struct line);
    c->probe_cpu_from = pr.cpu_a;
    c->probe_cpu_to = pr.cpu_b;
    /* a thread of its own: the daemon's threads keep their affinity */
    pthread_t t;
    int r = pthread_create(&t, NULL, probe_main, &pr);
    if (r != 0) {
        snprintf(c->thread_reason, sizeof(c->thread_reason), "no probe thread: %s", strerror(r));
        return 0;
    }
    pthread_join(t, NULL);
    thread_results(p, &pr, remote, c);
    return 0;
}

/* ---- the whole run ------------------------------------------------------------------- */

static int calibration_init(const struct nt_topology *topo, struct nt_calibration *c)
{
    *c = (struct nt_calibration){
        .c_mem_huge_usec = -1, .c_thread_refill_usec = -1, .c_thread_sched_usec = -1,
        .probe_cpu_from = -1, .probe_cpu_to = -1,
    };
    c->nr_nodes = topo ? topo->nr_nodes : 0;
    c->node_ids = calloc(c->nr_nodes ? c->nr_nodes : 1, sizeof(int));
    c->c_mem_usec = calloc(c->nr_nodes ? (size_t)c->nr_nodes * c->nr_nodes : 1, sizeof(double));
    if (!c->node_ids || !c->c_mem_usec)
        return -ENOMEM;
    for (unsigned i = 0; i < c->nr_nodes; i++)
        c->node_ids[i] = topo->nodes[i].id;
    for (size_t i = 0; i < (size_t)c->nr_nodes * c->nr_nodes; i++)
        c->c_mem_usec[i] = -1;
    snprintf(c->mem_reason, sizeof(c->mem_reason), "no topology");
    snprintf(c->huge_reason, sizeof(c->huge_reason), "no topology");
    return 0;
}

int nt_calibrate(const struct nt_topology *topo, const struct nt_calibrate_params *params, struct nt_calibration *out)
{
    struct nt_calibrate_params p;
    if (params)
        p = *params;
    else
        nt_calibrate_params_init(&p);
    if (p.repeats == 0)
        p.repeats = 1;
    if (p.repeats > MAX_REPEATS)
        p.repeats = MAX_REPEATS;
    uint64_t start = nt_now_usec(), deadline = start + p.time_budget_usec;
    int r = calibration_init(topo, out);
    /* the probe first: it is quick, and memory moves may use up the budget */
    if (r == 0)
        r = calibrate_thread(topo, &p, deadline, out);
    if (r == 0 && topo && p.mem_buffer_bytes)
        r = calibrate_mem(topo, &p, deadline, out);
    if (r == 0 && topo && p.huge_buffer_bytes >= HUGE_SIZE)
        r = calibrate_huge(topo, &p, deadline, out);
    out->elapsed_usec = nt_now_usec() - start;
    return r;
}

void nt_calibration_done(struct nt_calibration *c)
{
    free(c->node_ids);
    free(c->c_mem_usec);
    c->node_ids = NULL;
    c->c_mem_usec = NULL;
    c->nr_nodes = 0;
}

void nt_calibration_apply(const struct nt_calibration *c, struct nt_cost_model *m)
{
    m->nr_nodes = c->nr_nodes;
    m->node_ids = c->node_ids;
    m->c_mem_usec = c->c_mem_usec;
    if (c->mem_origin == NT_COST_MEASURED)
        m->mem_origin = NT_COST_MEASURED;
    if (c->huge_origin == NT_COST_MEASURED)
        m->c_mem_huge_usec = c->c_mem_huge_usec;
    if (c->thread_origin == NT_COST_MEASURED) {
        m->c_thread_refill_usec = c->c_thread_refill_usec;
        m->c_thread_sched_usec = c->c_thread_sched_usec;
        m->thread_origin = NT_COST_MEASURED;
    }
}

/* ---- JSON ------------------------------------------------------------------------------ */

static struct json_object *num_or_null(double v)
{
    return v >= 0 && !isnan(v) ? json_object_new_double(v) : NULL;
}

static struct json_object *mem_json(const struct nt_calibration *c)
{
    struct json_object *o = json_object_new_object(), *nodes = json_object_new_array(),
                       *rows = json_object_new_array();
    json_object_object_add(o, "origin", json_object_new_string(nt_cost_origin_to_string(c->mem_origin)));
    json_object_object_add(o, "reason", json_object_new_string(c->mem_reason));
    json_object_object_add(o, "pairs", json_object_new_int((int)c->mem_pairs));
    for (unsigned i = 0; i < c->nr_nodes; i++) {
        struct json_object *row = json_object_new_array();
        json_object_array_add(nodes, json_object_new_int(c->node_ids[i]));
        for (unsigned j = 0; j < c->nr_nodes; j++)
            json_object_array_add(row, num_or_null(c->c_mem_usec[i * c->nr_nodes + j]));
        json_object_array_add(rows, row);
    }
    json_object_object_add(o, "nodes", nodes);
    json_object_object_add(o, "usec_per_page", rows);
    return o;
}

static struct json_object *huge_json(const struct nt_calibration *c)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "origin", json_object_new_string(nt_cost_origin_to_string(c->huge_origin)));
    json_object_object_add(o, "reason", json_object_new_string(c->huge_reason));
    json_object_object_add(o, "usec_per_page", num_or_null(c->c_mem_huge_usec));
    return o;
}

static struct json_object *thread_json(const struct nt_calibration *c)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "origin", json_object_new_string(nt_cost_origin_to_string(c->thread_origin)));
    json_object_object_add(o, "reason", json_object_new_string(c->thread_reason));
    json_object_object_add(o, "refill_usec", num_or_null(c->c_thread_refill_usec));
    json_object_object_add(o, "sched_usec", num_or_null(c->c_thread_sched_usec));
    json_object_object_add(o, "cpu_from", json_object_new_int(c->probe_cpu_from));
    json_object_object_add(o, "cpu_to", json_object_new_int(c->probe_cpu_to));
    json_object_object_add(o, "probe_bytes", json_object_new_uint64(c->probe_bytes));
    return o;
}

struct json_object *nt_calibration_to_json(const struct nt_calibration *c)
{
    struct json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    json_object_object_add(o, "elapsed_usec", json_object_new_uint64(c->elapsed_usec));
    json_object_object_add(o, "c_mem", mem_json(c));
    json_object_object_add(o, "c_mem_huge", huge_json(c));
    json_object_object_add(o, "c_thread", thread_json(c));
    return o;
}
