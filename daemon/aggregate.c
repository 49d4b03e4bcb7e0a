/* Aggregation of access observations into per-page and per-process heat.
 *
 * Pages live in one open-addressing table (linear probing, Fibonacci
 * hashing, backward-shift deletion: no tombstones) keyed by (process
 * instance id, virtual page). Heat is stored pre-scaled on one
 * nt_heat_clock (heat.h): an update is one multiply-add, decay is free, and
 * stored values compare like current heats, so picking the coldest entry
 * needs no exp2. The table grows by doubling up to ~4/3 of max_pages; once
 * full, each new page evicts the coldest of a few entries under a clock
 * hand. Per-process totals are kept on the same clock. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "numatier/aggregate.h"
#include "numatier/heat.h"
#include "numatier/util.h"

#define MIN_SLOTS      1024u
#define EVICT_SAMPLE   8u          /* entries looked at per eviction */
#define FIB_MULT       UINT64_C(0x9E3779B97F4A7C15)
#define PROC_MULT      UINT64_C(0xD6E8FEB86659FD93)
#define NODE_UNKNOWN   (-1)
#define STAMP_SHIFT    20          /* node stamps in ~1.05 s units */
#define MIN_STALE_USEC UINT64_C(1000000)
#define HUGE_TABLE_BYTES (UINT64_C(2) << 20)

struct page_entry {
    uint64_t vpage;
    uint32_t proc_id;              /* 0 = empty slot */
    float heat;                    /* stored units of the clock */
    uint32_t node_stamp;           /* when node was learned; 0 = never */
    int16_t node;                  /* >= 0, NODE_UNKNOWN, or -errno from the lookup */
    uint16_t flags;
};

struct page_table {
    struct page_entry *slots;
    size_t mask;                   /* slots - 1 */
    unsigned shift;                /* 64 - log2(slots) */
    size_t count;
};

/* Totals for one process instance, in stored units. */
struct agg_proc {
    uint32_t id;
    size_t nr_pages;               /* its entries in the page table */
    double lma, rma;               /* classified at ingest (CPU known) */
    double *nocpu;                 /* [nr_nodes]: memory node known, CPU not */
    double *node_acc;              /* [nr_nodes]: by memory node */
};

struct proc_slot {
    uint32_t id;                   /* 0 = empty */
    struct agg_proc *p;
};

struct nt_aggregate {
    struct nt_aggregate_config cfg;
    unsigned page_shift;
    size_t max_slots;
    struct nt_heat_clock clock;
    struct page_table pages;
    size_t hand;                   /* eviction clock hand */
    uint64_t rotor;                /* rotates the pages a big region touches */

    struct proc_slot *procs;
    size_t proc_mask, nr_procs;
    struct agg_proc *last;         /* one-entry cache: samples come in runs */

    struct nt_aggregate_stats stats;
};

/* ---- hashing ---------------------------------------------------------------- */

static inline size_t page_home(const struct page_table *t, uint32_t proc_id, uint64_t vpage)
{
    uint64_t x = (vpage ^ ((uint64_t)proc_id * PROC_MULT)) * FIB_MULT;
    return (size_t)(x >> t->shift);
}

static inline size_t proc_home(size_t mask, uint32_t id)
{
    return (size_t)(((uint64_t)id * FIB_MULT) >> 40) & mask;
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

static unsigned log2_of(size_t pow2)
{
    return (unsigned)__builtin_ctzll((unsigned long long)pow2);
}

/* Room for max_pages at a load of at most 3/4. */
static size_t slots_for(size_t max_pages)
{
    size_t s = pow2_at_least(max_pages + max_pages / 3 + 1);
    return s < MIN_SLOTS ? MIN_SLOTS : s;
}

/* ---- the page table --------------------------------------------------------- */

/* Big tables are probed at random: back them with huge pages where the
 * kernel allows (THP "madvise" mode), or TLB misses double the cost of
 * every probe. Fresh anonymous memory is already zero. */
static struct page_entry *slots_alloc(size_t nslots)
{
    size_t bytes = nslots * sizeof(struct page_entry);
    if (bytes < HUGE_TABLE_BYTES)
        return calloc(nslots, sizeof(struct page_entry));
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    (void)madvise(m, bytes, MADV_HUGEPAGE);
    return m;
}

static void slots_free(struct page_entry *slots, size_t nslots)
{
    size_t bytes = nslots * sizeof(struct page_entry);
    if (!slots)
        return;
    if (bytes < HUGE_TABLE_BYTES)
        free(slots);
    else
        munmap(slots, bytes);
}

static void table_done(struct page_table *t)
{
    slots_free(t->slots, t->slots ? t->mask + 1 : 0);
    t->slots = NULL;
}

static int table_init(struct page_table *t, size_t nslots)
{
    struct page_entry *s = slots_alloc(nslots);
    if (!s)
        return -ENOMEM;
    *t = (struct page_table){ .slots = s, .mask = nslots - 1, .shift = 64 - log2_of(nslots) };
    return 0;
}

/* Slot holding the key, or the empty slot where it would go. */
static inline size_t table_probe(const struct page_table *t, uint32_t proc_id, uint64_t vpage)
{
    size_t i = page_home(t, proc_id, vpage);
    for (;;) {
        const struct page_entry *e = &t->slots[i];
        if (e->proc_id == 0 || (e->vpage == vpage && e->proc_id == proc_id))
            return i;
        i = (i + 1) & t->mask;
    }
}

static void table_put(struct page_table *t, const struct page_entry *e)
{
    size_t i = table_probe(t, e->proc_id, e->vpage);
    t->slots[i] = *e;
    t->count++;
}

/* Backward-shift deletion: pull later members of the cluster into the
 * hole when their home allows it, so probes never need tombstones. */
static void table_delete(struct page_table *t, size_t hole)
{
    size_t j = hole;
    for (;;) {
        j = (j + 1) & t->mask;
        struct page_entry *e = &t->slots[j];
        if (e->proc_id == 0)
            break;
        size_t home = page_home(t, e->proc_id, e->vpage);
        if (((j - home) & t->mask) >= ((j - hole) & t->mask)) {
            t->slots[hole] = *e;
            hole = j;
        }
    }
    t->slots[hole].proc_id = 0;
    t->count--;
}

static int table_resize(struct page_table *t, size_t nslots)
{
    struct page_table n;
    int r = table_init(&n, nslots);
    if (r < 0)
        return r;
    for (size_t i = 0; i <= t->mask; i++)
        if (t->slots[i].proc_id)
            table_put(&n, &t->slots[i]);
    table_done(t);
    *t = n;
    return 0;
}

/* ---- processes ------------------------------------------------------------- */

static void proc_free(struct agg_proc *p)
{
    if (p) {
        free(p->nocpu);
        free(p);
    }
}

static struct agg_proc *proc_new(uint32_t id, unsigned nr_nodes)
{
    struct agg_proc *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->id = id;
    p->nocpu = calloc(2 * (size_t)(nr_nodes ? nr_nodes : 1), sizeof(double));
    if (!p->nocpu) {
        free(p);
        return NULL;
    }
    p->node_acc = p->nocpu + nr_nodes;
    return p;
}

static size_t proc_find_slot(const struct nt_aggregate *a, uint32_t id)
{
    size_t i = proc_home(a->proc_mask, id);
    while (a->procs[i].id && a->procs[i].id != id)
        i = (i + 1) & a->proc_mask;
    return i;
}

static struct agg_proc *proc_lookup(const struct nt_aggregate *a, uint32_t id)
{
    return a->procs[proc_find_slot(a, id)].p;
}

static int procs_resize(struct nt_aggregate *a, size_t nslots)
{
    struct proc_slot *n = calloc(nslots, sizeof(*n));
    if (!n)
        return -ENOMEM;
    struct proc_slot *old = a->procs;
    size_t old_n = a->procs ? a->proc_mask + 1 : 0;
    a->procs = n;
    a->proc_mask = nslots - 1;
    for (size_t i = 0; i < old_n; i++)
        if (old[i].id)
            a->procs[proc_find_slot(a, old[i].id)] = old[i];
    free(old);
    return 0;
}

static struct agg_proc *proc_get(struct nt_aggregate *a, uint32_t id)
{
    if (a->last && a->last->id == id)
        return a->last;
    size_t i = proc_find_slot(a, id);
    if (!a->procs[i].p) {
        if ((a->nr_procs + 1) * 2 > a->proc_mask + 1) {
            if (procs_resize(a, (a->proc_mask + 1) * 2) < 0)
                return NULL;
            i = proc_find_slot(a, id);
        }
        struct agg_proc *p = proc_new(id, a->cfg.nr_nodes);
        if (!p)
            return NULL;
        a->procs[i] = (struct proc_slot){ .id = id, .p = p };
        a->nr_procs++;
    }
    return a->last = a->procs[i].p;
}

static void procs_delete(struct nt_aggregate *a, size_t hole)
{
    size_t j = hole;
    for (;;) {
        j = (j + 1) & a->proc_mask;
        if (!a->procs[j].id)
            break;
        size_t home = proc_home(a->proc_mask, a->procs[j].id);
        if (((j - home) & a->proc_mask) >= ((j - hole) & a->proc_mask)) {
            a->procs[hole] = a->procs[j];
            hole = j;
        }
    }
    a->procs[hole] = (struct proc_slot){ 0 };
    a->nr_procs--;
}

/* ---- lifetime --------------------------------------------------------------- */

static unsigned page_shift_of_system(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 ? log2_of((size_t)ps) : 12;
}

static void apply_config(struct nt_aggregate *a, const struct nt_aggregate_config *cfg)
{
    a->cfg = *cfg;
    if (a->cfg.max_region_pages == 0)
        a->cfg.max_region_pages = NT_AGGREGATE_REGION_PAGES;
    if (a->cfg.max_pages == 0)
        a->cfg.max_pages = 1;
    a->max_slots = slots_for(a->cfg.max_pages);
    a->stats.max_pages = a->cfg.max_pages;
}

int nt_aggregate_new(const struct nt_aggregate_config *cfg, struct nt_aggregate **out)
{
    struct nt_aggregate *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    apply_config(a, cfg);
    a->page_shift = page_shift_of_system();
    nt_heat_clock_init(&a->clock, a->cfg.half_life_usec, 0);
    size_t first = a->max_slots < 64 * MIN_SLOTS ? a->max_slots : 64 * MIN_SLOTS;
    if (table_init(&a->pages, first) < 0 || procs_resize(a, 64) < 0) {
        nt_aggregate_free(a);
        return -ENOMEM;
    }
    *out = a;
    return 0;
}

void nt_aggregate_free(struct nt_aggregate *a)
{
    if (!a)
        return;
    for (size_t i = 0; a->procs && i <= a->proc_mask; i++)
        proc_free(a->procs[i].p);
    free(a->procs);
    table_done(&a->pages);
    free(a);
}

/* The clock moved its epoch: bring every stored value along. */
static void rebase(struct nt_aggregate *a, double factor)
{
    for (size_t i = 0; i <= a->pages.mask; i++)
        if (a->pages.slots[i].proc_id)
            a->pages.slots[i].heat = (float)(a->pages.slots[i].heat * factor);
    for (size_t i = 0; i <= a->proc_mask; i++) {
        struct agg_proc *p = a->procs[i].p;
        if (!p)
            continue;
        p->lma *= factor;
        p->rma *= factor;
        for (unsigned n = 0; n < 2 * a->cfg.nr_nodes; n++)
            p->nocpu[n] *= factor;
    }
}

static inline void clock_to(struct nt_aggregate *a, uint64_t now_usec)
{
    double f = nt_heat_clock_advance(&a->clock, now_usec);
    if (__builtin_expect(f != 1.0, 0))
        rebase(a, f);
}

/* ---- ingest ----------------------------------------------------------------- */

static inline uint32_t stamp_of(uint64_t now_usec)
{
    return (uint32_t)(now_usec >> STAMP_SHIFT) + 1;
}

/* Drop the coldest of the next few entries under the clock hand. Stored
 * heats compare like current ones, so no decay math is needed. */
static void evict_one(struct nt_aggregate *a)
{
    struct page_table *t = &a->pages;
    size_t i = a->hand & t->mask, best = SIZE_MAX;
    float coldest = INFINITY;
    unsigned seen = 0;
    for (size_t scanned = 0; seen < EVICT_SAMPLE && scanned <= t->mask; scanned++) {
        const struct page_entry *e = &t->slots[i];
        if (e->proc_id) {
            seen++;
            if (e->heat < coldest) {
                coldest = e->heat;
                best = i;
            }
        }
        i = (i + 1) & t->mask;
    }
    a->hand = i;
    if (best == SIZE_MAX)
        return;
    struct agg_proc *p = proc_lookup(a, t->slots[best].proc_id);
    if (p)
        p->nr_pages--;
    table_delete(t, best);
    a->stats.evictions++;
}

/* Make room for one more entry: grow while below the cap's table size,
 * evict once at max_pages (or when growing fails). */
static void make_room(struct nt_aggregate *a)
{
    struct page_table *t = &a->pages;
    size_t nslots = t->mask + 1;
    if (t->count >= a->cfg.max_pages) {
        evict_one(a);
        return;
    }
    if ((t->count + 1) * 4 <= nslots * 3)
        return;
    if (nslots >= a->max_slots || table_resize(t, nslots * 2) < 0)
        evict_one(a);
}

static __attribute__((noinline)) struct page_entry *page_insert(struct nt_aggregate *a, struct agg_proc *p,
                                                                 uint64_t vpage)
{
    make_room(a);
    struct page_table *t = &a->pages;
    struct page_entry *e = &t->slots[table_probe(t, p->id, vpage)];
    *e = (struct page_entry){ .vpage = vpage, .proc_id = p->id, .node = NODE_UNKNOWN };
    t->count++;
    p->nr_pages++;
    return e;
}

static inline struct page_entry *page_get(struct nt_aggregate *a, struct agg_proc *p, uint64_t vpage)
{
    struct page_entry *e = &a->pages.slots[table_probe(&a->pages, p->id, vpage)];
    if (__builtin_expect(e->proc_id != 0, 1))
        return e;
    return page_insert(a, p, vpage);
}

static inline int known_node(int node, unsigned nr_nodes)
{
    return node >= 0 && (unsigned)node < nr_nodes ? node : -1;
}

/* Add stored weight s to the totals, classifying local or remote. The
 * source, when the PMU gives one, beats what the table knows: it is what
 * happened on this very access. */
static inline void account(struct nt_aggregate *a, struct agg_proc *p, struct page_entry *e, double s,
                           int cpu_node, uint8_t source, uint64_t now_usec)
{
    int mem = known_node(e->node, a->cfg.nr_nodes);
    switch (source) {
    case NT_MEM_SRC_CACHE:
    case NT_MEM_SRC_REMOTE_CACHE:
        return;                                 /* no memory access */
    case NT_MEM_SRC_LOCAL_DRAM:
        if (cpu_node >= 0) {
            mem = cpu_node;                     /* the page's node, learned for free */
            e->node = (int16_t)cpu_node;
            e->node_stamp = stamp_of(now_usec);
        }
        p->lma += s;
        break;
    case NT_MEM_SRC_REMOTE_DRAM:
    case NT_MEM_SRC_SLOW_MEM:
        if (mem >= 0 && mem == cpu_node) {      /* the page moved: look again */
            e->node_stamp = 0;
            mem = -1;
        }
        p->rma += s;
        break;
    default:
        if (mem < 0)
            return;
        if (cpu_node < 0)
            p->nocpu[mem] += s;
        else if (cpu_node == mem)
            p->lma += s;
        else
            p->rma += s;
        break;
    }
    if (mem >= 0)
        p->node_acc[mem] += s;
}

static inline void add_page(struct nt_aggregate *a, struct agg_proc *p, uint64_t vpage, double s,
                            int cpu_node, uint8_t source, uint64_t now_usec)
{
    struct page_entry *e = page_get(a, p, vpage);
    e->heat += (float)s;
    account(a, p, e, s, cpu_node, source, now_usec);
    a->stats.page_updates++;
}

/* A region stands for weight accesses on each of its pages. Touch at most
 * max_region_pages of them, evenly spaced from a rotating offset, each
 * carrying its share so the region's total is exact. */
static void add_region(struct nt_aggregate *a, struct agg_proc *p, const struct nt_access *acc,
                       int cpu_node, uint64_t now_usec)
{
    uint32_t nr = acc->nr_pages, cap = a->cfg.max_region_pages;
    uint32_t stride = nr / cap + (nr % cap != 0);
    uint32_t off = stride > 1 ? (uint32_t)(a->rotor++ % stride) : 0;
    uint32_t picked = (nr - off + stride - 1) / stride;
    double s = nt_heat_clock_stored(&a->clock, (double)acc->weight * nr / picked);
    uint64_t vpage = acc->vaddr >> a->page_shift;
    for (uint32_t k = off; k < nr; k += stride)
        add_page(a, p, vpage + k, s, cpu_node, acc->source, now_usec);
}

void nt_aggregate_add(struct nt_aggregate *a, uint32_t proc_id, const struct nt_access *acc,
                      int cpu_node, uint64_t now_usec)
{
    if (acc->weight == 0 || acc->nr_pages == 0 || proc_id == 0)
        return;
    clock_to(a, now_usec);
    struct agg_proc *p = proc_get(a, proc_id);
    if (__builtin_expect(!p, 0)) {
        a->stats.dropped++;
        return;
    }
    cpu_node = known_node(cpu_node, a->cfg.nr_nodes);
    a->stats.observations++;
    if (__builtin_expect(acc->nr_pages == 1, 1))
        add_page(a, p, acc->vaddr >> a->page_shift, nt_heat_clock_stored(&a->clock, acc->weight),
                 cpu_node, acc->source, now_usec);
    else
        add_region(a, p, acc, cpu_node, now_usec);
}

/* Far enough ahead to cover a miss to DRAM at a few ns per observation. */
#define PREFETCH_AHEAD 12

/* A macro, not a function: GCC deems a function that only prefetches
 * "const" and drops calls to it. */
#define PREFETCH_OBS(a, o) \
    __builtin_prefetch(&(a)->pages.slots[page_home(&(a)->pages, (o)->proc_id, (o)->acc.vaddr >> (a)->page_shift)])

void nt_aggregate_add_batch(struct nt_aggregate *a, const struct nt_aggregate_obs *obs, size_t n,
                            uint64_t now_usec)
{
    size_t ahead = n < PREFETCH_AHEAD ? n : PREFETCH_AHEAD;
    for (size_t i = 0; i < ahead; i++)
        PREFETCH_OBS(a, &obs[i]);
    for (size_t i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n)
            PREFETCH_OBS(a, &obs[i + PREFETCH_AHEAD]);
        nt_aggregate_add(a, obs[i].proc_id, &obs[i].acc, obs[i].cpu_node, now_usec);
    }
}

/* ---- forgetting and node updates --------------------------------------------- */

/* Every entry of proc_id's (0: of every process) has an unknown node. */
static void invalidate(struct nt_aggregate *a, uint32_t proc_id)
{
    struct page_table *t = &a->pages;
    for (size_t j = 0; j <= t->mask; j++)
        if (t->slots[j].proc_id != 0 && (proc_id == 0 || t->slots[j].proc_id == proc_id)) {
            t->slots[j].node = -1;
            t->slots[j].node_stamp = 0;
        }
}

void nt_aggregate_invalidate_nodes(struct nt_aggregate *a, uint32_t proc_id)
{
    if (a && proc_id != 0)
        invalidate(a, proc_id);
}

void nt_aggregate_invalidate_all_nodes(struct nt_aggregate *a)
{
    if (a)
        invalidate(a, 0);
}

void nt_aggregate_invalidate_pages(struct nt_aggregate *a, uint32_t proc_id, const uint64_t *vaddrs, size_t n)
{
    if (!a || proc_id == 0 || a->pages.count == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        struct page_entry *e = &a->pages.slots[table_probe(&a->pages, proc_id, vaddrs[i] >> a->page_shift)];
        if (e->proc_id == 0)
            continue;                     /* never sampled: nothing known */
        e->node = NODE_UNKNOWN;
        e->node_stamp = 0;
    }
}

void nt_aggregate_forget(struct nt_aggregate *a, uint32_t proc_id)
{
    if (!a || proc_id == 0)
        return;
    size_t i = proc_find_slot(a, proc_id);
    struct agg_proc *p = a->procs[i].p;
    if (!p)
        return;
    size_t left = p->nr_pages;
    procs_delete(a, i);
    if (a->last == p)
        a->last = NULL;
    proc_free(p);

    /* One sweep of the table, stopping at the process's last page:
     * processes leave rarely, and a sweep of 1M entries is a few ms.
     * After a delete the slot holds a shifted-in entry: look at it again.
     * Entries only shift towards the sweep, never past it. */
    struct page_table *t = &a->pages;
    for (size_t j = 0; left && j <= t->mask;) {
        if (t->slots[j].proc_id == proc_id) {
            table_delete(t, j);
            left--;
        } else {
            j++;
        }
    }
}

void nt_aggregate_set_page_node(struct nt_aggregate *a, uint32_t proc_id, uint64_t vaddr, int node,
                                uint64_t now_usec)
{
    if (proc_id == 0)
        return;
    struct page_entry *e = &a->pages.slots[table_probe(&a->pages, proc_id, vaddr >> a->page_shift)];
    if (!e->proc_id)
        return;
    bool known = node >= 0 && node <= INT16_MAX;
    e->node = known ? (int16_t)node : NODE_UNKNOWN;
    e->node_stamp = known ? stamp_of(now_usec) : 0;
}

/* ---- node refresh ------------------------------------------------------------ */

struct cand {
    float heat;
    uint32_t proc_id;
    uint64_t vpage;
    size_t slot;
};

/* Min-heap on heat: the root is the coldest of the hottest kept so far. */
static void cand_sift_down(struct cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && h[l].heat < h[m].heat)
            m = l;
        if (l + 1 < n && h[l + 1].heat < h[m].heat)
            m = l + 1;
        if (m == i)
            return;
        struct cand tmp = h[i];
        h[i] = h[m];
        h[m] = tmp;
        i = m;
    }
}

static void cand_push(struct cand *h, size_t *n, size_t cap, const struct cand *c)
{
    if (*n < cap) {
        size_t i = (*n)++;
        h[i] = *c;
        while (i > 0 && h[(i - 1) / 2].heat > h[i].heat) {
            struct cand tmp = h[i];
            h[i] = h[(i - 1) / 2];
            h[(i - 1) / 2] = tmp;
            i = (i - 1) / 2;
        }
    } else if (c->heat > h[0].heat) {
        h[0] = *c;
        cand_sift_down(h, *n, 0);
    }
}

static int by_proc_then_page(const void *x, const void *y)
{
    const struct cand *a = x, *b = y;
    if (a->proc_id != b->proc_id)
        return a->proc_id < b->proc_id ? -1 : 1;
    return (a->vpage > b->vpage) - (a->vpage < b->vpage);
}

static uint32_t stale_units(const struct nt_aggregate *a)
{
    uint64_t usec = a->cfg.half_life_usec > MIN_STALE_USEC ? a->cfg.half_life_usec : MIN_STALE_USEC;
    uint64_t u = usec >> STAMP_SHIFT;
    return u ? (uint32_t)u : 1;
}

/* The hottest entries whose node is unknown or older than stale_units. */
static size_t pick_stale(const struct nt_aggregate *a, uint64_t now_usec, struct cand *heap, size_t cap)
{
    uint32_t now = stamp_of(now_usec), age = stale_units(a);
    size_t n = 0;
    for (size_t i = 0; i <= a->pages.mask; i++) {
        const struct page_entry *e = &a->pages.slots[i];
        if (!e->proc_id || (e->node_stamp && now - e->node_stamp < age))
            continue;
        struct cand c = { .heat = e->heat, .proc_id = e->proc_id, .vpage = e->vpage, .slot = i };
        cand_push(heap, &n, cap, &c);
    }
    return n;
}

/* One process's batch: ask fn, store what it says. */
static size_t lookup_batch(struct nt_aggregate *a, const struct cand *c, size_t n, pid_t pid,
                           uint64_t *vaddrs, int *nodes, nt_page_node_fn fn, void *fn_ud, uint64_t now_usec)
{
    uint32_t stamp = stamp_of(now_usec);
    int r = -ESRCH;
    if (pid > 0) {
        for (size_t i = 0; i < n; i++)
            vaddrs[i] = c[i].vpage << a->page_shift;
        r = fn(pid, n, vaddrs, nodes, fn_ud);
    }
    for (size_t i = 0; i < n; i++) {
        struct page_entry *e = &a->pages.slots[c[i].slot];
        int node = r < 0 ? NODE_UNKNOWN : nodes[i];
        if (r >= 0 && node < 0)
            a->stats.node_lookup_errors++;
        e->node = node >= INT16_MIN && node <= INT16_MAX ? (int16_t)node : NODE_UNKNOWN;
        e->node_stamp = stamp;            /* errors too: wait until stale before asking again */
    }
    if (r < 0)
        return 0;
    a->stats.node_lookups += n;
    return n;
}

int nt_aggregate_refresh_nodes(struct nt_aggregate *a, uint64_t now_usec, size_t max_pages,
                               pid_t (*pid_of)(uint32_t proc_id, void *ud), void *ud,
                               nt_page_node_fn fn, void *fn_ud)
{
    if (max_pages == 0 || a->pages.count == 0)
        return 0;
    if (max_pages > a->pages.count)
        max_pages = a->pages.count;
    _cleanup_free_ struct cand *heap = malloc(max_pages * sizeof(*heap));
    _cleanup_free_ uint64_t *vaddrs = malloc(max_pages * sizeof(*vaddrs));
    _cleanup_free_ int *nodes = malloc(max_pages * sizeof(*nodes));
    if (!heap || !vaddrs || !nodes)
        return -ENOMEM;

    size_t n = pick_stale(a, now_usec, heap, max_pages), asked = 0;
    qsort(heap, n, sizeof(*heap), by_proc_then_page);
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && heap[j].proc_id == heap[i].proc_id; j++)
            ;
        pid_t pid = pid_of ? pid_of(heap[i].proc_id, ud) : 0;
        asked += lookup_batch(a, heap + i, j - i, pid, vaddrs, nodes, fn, fn_ud, now_usec);
    }
    return (int)(asked > INT32_MAX ? INT32_MAX : asked);
}

/* ---- snapshot ---------------------------------------------------------------- */

void nt_heat_snapshot_free(struct nt_heat_snapshot *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nr_procs; i++) {
        free(s->procs[i].node_accesses);
        free(s->procs[i].heat_on);
        free(s->procs[i].hot_pages);
        free(s->procs[i].pages);
    }
    free(s->procs);
    free(s);
}

static void snapshot_freep(struct nt_heat_snapshot **s)
{
    nt_heat_snapshot_free(*s);
}

/* Hotter first; equal heat by address, so output is stable. */
static bool hotter(const struct nt_hot_page *x, const struct nt_hot_page *y)
{
    return x->heat > y->heat || (x->heat == y->heat && x->vaddr < y->vaddr);
}

static int by_heat_desc(const void *x, const void *y)
{
    return hotter(x, y) ? -1 : hotter(y, x) ? 1 : 0;
}

/* Min-heap (by hotter) of the top pages: the root is the one to replace. */
static void top_push(struct nt_hot_page *h, size_t *n, size_t cap, const struct nt_hot_page *pg)
{
    size_t i;
    if (*n < cap) {
        i = (*n)++;
        while (i > 0 && hotter(&h[(i - 1) / 2], pg)) {
            h[i] = h[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        h[i] = *pg;
        return;
    }
    if (!hotter(pg, &h[0]))
        return;
    for (i = 0;;) {
        size_t l = 2 * i + 1, m = l;
        if (l >= *n)
            break;
        if (l + 1 < *n && hotter(&h[l], &h[l + 1]))
            m = l + 1;
        if (!hotter(pg, &h[m]))
            break;
        h[i] = h[m];
        i = m;
    }
    h[i] = *pg;
}

static int by_agg_proc_id(const void *x, const void *y)
{
    uint32_t a = (*(struct agg_proc *const *)x)->id, b = (*(struct agg_proc *const *)y)->id;
    return (a > b) - (a < b);
}

/* The totals of one process at the snapshot's time. CPU-less accesses are
 * local when their memory node is one the threads run on. */
static int proc_totals(const struct nt_aggregate *a, const struct agg_proc *p, double inv, size_t top_pages,
                       uint64_t (*thread_nodes)(uint32_t, void *), void *ud, struct nt_proc_heat *out)
{
    unsigned nn = a->cfg.nr_nodes;
    out->proc_id = p->id;
    out->node_accesses = calloc(nn ? nn : 1, sizeof(double));
    out->heat_on = calloc(nn ? nn : 1, sizeof(double));
    out->hot_pages = calloc(nn ? nn : 1, sizeof(unsigned));
    size_t cap = top_pages < p->nr_pages ? top_pages : p->nr_pages;
    out->pages = cap ? calloc(cap, sizeof(struct nt_hot_page)) : NULL;
    if (!out->node_accesses || !out->heat_on || !out->hot_pages || (cap && !out->pages))
        return -ENOMEM;
    out->lma = p->lma * inv;
    out->rma = p->rma * inv;
    uint64_t mask = thread_nodes ? thread_nodes(p->id, ud) : 0;
    for (unsigned n = 0; n < nn; n++) {
        out->node_accesses[n] = p->node_acc[n] * inv;
        if (!thread_nodes || n >= 64)
            continue;
        if (mask >> n & 1)
            out->lma += p->nocpu[n] * inv;
        else
            out->rma += p->nocpu[n] * inv;
    }
    return 0;
}

static struct nt_proc_heat *find_proc_heat(struct nt_heat_snapshot *s, uint32_t id, struct nt_proc_heat *hint)
{
    if (hint && hint->proc_id == id)
        return hint;
    size_t lo = 0, hi = s->nr_procs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->procs[mid].proc_id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->nr_procs && s->procs[lo].proc_id == id ? &s->procs[lo] : NULL;
}

/* One pass over the table: hot-page counts and each process's top pages. */
static void snapshot_pages(const struct nt_aggregate *a, struct nt_heat_snapshot *s,
                           struct agg_proc *const *order, double inv, size_t top_pages)
{
    struct nt_proc_heat *ph = NULL;
    for (size_t i = 0; i <= a->pages.mask; i++) {
        const struct page_entry *e = &a->pages.slots[i];
        if (!e->proc_id || !(ph = find_proc_heat(s, e->proc_id, ph)))
            continue;
        struct nt_hot_page pg = {
            .vaddr = e->vpage << a->page_shift,
            .heat = e->heat * inv,
            .node = known_node(e->node, a->cfg.nr_nodes),
        };
        if (pg.node >= 0)
            ph->heat_on[pg.node] += pg.heat;
        if (pg.heat >= 1.0) {
            if (pg.node >= 0)
                ph->hot_pages[pg.node]++;
            else
                ph->unknown_node_pages++;
        }
        size_t cap = order[ph - s->procs]->nr_pages;     /* what proc_totals allocated */
        if (top_pages < cap)
            cap = top_pages;
        if (cap)
            top_push(ph->pages, &ph->nr_pages, cap, &pg);
    }
    for (size_t i = 0; i < s->nr_procs; i++)
        if (s->procs[i].nr_pages)
            qsort(s->procs[i].pages, s->procs[i].nr_pages, sizeof(struct nt_hot_page), by_heat_desc);
}

int nt_aggregate_snapshot(const struct nt_aggregate *a, uint64_t now_usec, size_t top_pages,
                          uint64_t (*thread_nodes)(uint32_t proc_id, void *ud), void *ud,
                          struct nt_heat_snapshot **out)
{
    _cleanup_(snapshot_freep) struct nt_heat_snapshot *s = calloc(1, sizeof(*s));
    _cleanup_free_ struct agg_proc **order = malloc((a->nr_procs ? a->nr_procs : 1) * sizeof(*order));
    if (!s || !order)
        return -ENOMEM;
    s->now_usec = now_usec;
    s->nr_nodes = a->cfg.nr_nodes;
    s->tracked_pages = a->pages.count;
    s->evictions = a->stats.evictions;
    s->procs = calloc(a->nr_procs ? a->nr_procs : 1, sizeof(*s->procs));
    if (!s->procs)
        return -ENOMEM;

    size_t k = 0;
    for (size_t i = 0; i <= a->proc_mask; i++)
        if (a->procs[i].p)
            order[k++] = a->procs[i].p;
    qsort(order, k, sizeof(*order), by_agg_proc_id);

    double inv = nt_heat_clock_inv_scale_at(&a->clock, now_usec);
    for (size_t i = 0; i < k; i++) {
        s->nr_procs = i + 1;             /* so a failure frees what was made */
        if (proc_totals(a, order[i], inv, top_pages, thread_nodes, ud, &s->procs[i]) < 0)
            return -ENOMEM;
    }
    snapshot_pages(a, s, order, inv, top_pages);
    *out = NT_TAKE_PTR(s);
    return 0;
}

/* ---- reconfiguration and stats ----------------------------------------------- */

/* New per-process node arrays: all allocated before any is swapped in, so
 * a failure changes nothing. */
static int resize_proc_nodes(struct nt_aggregate *a, unsigned nn)
{
    size_t nslots = a->proc_mask + 1, width = 2 * (size_t)(nn ? nn : 1);
    _cleanup_free_ double **fresh = calloc(nslots, sizeof(*fresh));
    if (!fresh)
        return -ENOMEM;
    for (size_t i = 0; i < nslots; i++) {
        if (a->procs[i].p && !(fresh[i] = calloc(width, sizeof(double)))) {
            for (size_t j = 0; j < i; j++)
                free(fresh[j]);
            return -ENOMEM;
        }
    }
    unsigned keep = nn < a->cfg.nr_nodes ? nn : a->cfg.nr_nodes;
    for (size_t i = 0; i < nslots; i++) {
        struct agg_proc *p = a->procs[i].p;
        if (!p)
            continue;
        memcpy(fresh[i], p->nocpu, keep * sizeof(double));
        memcpy(fresh[i] + nn, p->node_acc, keep * sizeof(double));
        free(p->nocpu);
        p->nocpu = fresh[i];
        p->node_acc = fresh[i] + nn;
    }
    for (size_t i = 0; i <= a->pages.mask; i++) {
        struct page_entry *e = &a->pages.slots[i];
        if (e->proc_id && e->node >= 0 && (unsigned)e->node >= nn) {
            e->node = NODE_UNKNOWN;
            e->node_stamp = 0;
        }
    }
    a->cfg.nr_nodes = nn;
    return 0;
}

static int by_entry_heat_desc(const void *x, const void *y)
{
    const struct page_entry *a = x, *b = y;
    return (a->heat < b->heat) - (a->heat > b->heat);
}

/* Rebuild the table with its keep hottest entries in nslots slots. */
static int keep_hottest(struct nt_aggregate *a, size_t keep, size_t nslots)
{
    struct page_table *t = &a->pages, n;
    size_t count = t->count, k = 0;
    _cleanup_free_ struct page_entry *all = malloc((count ? count : 1) * sizeof(*all));
    if (!all || table_init(&n, nslots) < 0)
        return -ENOMEM;
    for (size_t i = 0; i <= t->mask; i++)
        if (t->slots[i].proc_id)
            all[k++] = t->slots[i];
    qsort(all, k, sizeof(*all), by_entry_heat_desc);
    for (size_t i = 0; i <= a->proc_mask; i++)
        if (a->procs[i].p)
            a->procs[i].p->nr_pages = 0;
    if (keep > k)
        keep = k;
    for (size_t i = 0; i < keep; i++) {
        table_put(&n, &all[i]);
        struct agg_proc *p = proc_lookup(a, all[i].proc_id);
        if (p)
            p->nr_pages++;
    }
    a->stats.evictions += k - keep;
    table_done(t);
    *t = n;
    a->hand = 0;
    return 0;
}

int nt_aggregate_reconfigure(struct nt_aggregate *a, const struct nt_aggregate_config *cfg)
{
    if (cfg->nr_nodes != a->cfg.nr_nodes) {
        int r = resize_proc_nodes(a, cfg->nr_nodes);
        if (r < 0)
            return r;
    }
    if (cfg->half_life_usec != a->cfg.half_life_usec)
        rebase(a, nt_heat_clock_set_half_life(&a->clock, cfg->half_life_usec));
    apply_config(a, cfg);
    if (a->pages.count <= a->cfg.max_pages && a->pages.mask + 1 <= a->max_slots)
        return 0;
    size_t keep = a->pages.count < a->cfg.max_pages ? a->pages.count : a->cfg.max_pages;
    return keep_hottest(a, keep, slots_for(keep));
}

void nt_aggregate_get_stats(const struct nt_aggregate *a, struct nt_aggregate_stats *out)
{
    *out = a->stats;
    out->tracked_pages = a->pages.count;
    out->max_pages = a->cfg.max_pages;
    out->slots = a->pages.mask + 1;
    out->procs = a->nr_procs;
}
