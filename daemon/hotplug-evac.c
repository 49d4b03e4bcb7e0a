/* Moving memory and threads off what a job takes out of service: the
 * evacuation before an offline, a node drain, and --force rebinds.
 *
 * Evacuation is a head start, not a precondition: the kernel's offline
 * migrates whatever is left anyway, but only where it likes. Moving first
 * puts memory where the plan said (nearest nodes, above their watermarks),
 * under the migration budget, and measures it. A node being emptied goes
 * whole, process by process, with migrate_pages; blocks of a node that
 * stays go page by page with move_pages, for the pages whose frames
 * (from /proc/PID/pagemap) lie in the blocks, at most SLICE_PAGES per
 * loop turn. One migrate_pages call cannot be cut short and takes seconds
 * for a large process, so it runs in a thread of its own while the loop
 * goes on answering; the job's mover is used by nothing else meanwhile. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hotplug-internal.h"
#include "numatier/log.h"
#include "numatier/numastat.h"
#include "numatier/select.h"
#include "numatier/topology.h"
#include "numatier/units.h"
#include "numatier/util.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define BUDGET_WAIT_USEC    100000      /* the mover deferred for lack of budget: try again */
#define PAGEMAP_CHUNK       4096        /* entries per pread */
#define SLICE_PAGES         4096        /* move_pages per loop turn: 16 MiB of 4 KiB pages */
#define PM_PRESENT          (UINT64_C(1) << 63)
#define PM_PFN_MASK         ((UINT64_C(1) << 55) - 1)
#define CGROUP_ROOT         "/sys/fs/cgroup"

struct phys_range {
    uint64_t start, end;
};

enum evac_stage { STAGE_THREADS, STAGE_MEMORY };

/* One migrate_pages of one process off one node, in a thread. */
struct migrate_task {
    pthread_t thread;
    bool running;               /* the thread exists and is not joined */
    bool finished;              /* joined; res and r wait to be counted */
    struct nt_hotplug *h;
    struct nt_proc proc;
    struct nt_nodeset from;
    int dest;
    size_t pos;
    struct nt_move_result res;
    int r;
};

/* What the migrate_pages in flight has moved so far, for the job's
 * progress: the kernel says nothing until the call returns, but the pages
 * it moved no longer count in the source node's used memory. */
struct flight {
    bool active;                /* from the task's start until it is counted */
    int node;                   /* the node it empties */
    uint64_t expected;          /* the process's bytes there at the start (numa_maps) */
    uint64_t used_start;        /* the node's MemTotal - MemFree at the start */
};

struct nt_hp_evac {
    pid_t *pids;
    size_t n, next;
    enum evac_stage stage;
    struct nt_nodeset from;         /* nodes emptied whole */
    struct phys_range *ranges;      /* target blocks of nodes that stay */
    size_t nr_ranges;
    uint64_t *vaddrs;               /* the current process's pages in ranges */
    size_t nv, vnext;
    bool scanned;
    cpu_set_t node_cpus, dest_cpus; /* drain */
    int online_cpus;
    long page_size;
    int node_cursor;                /* the current process: next node of `from` to empty */
    bool budget_wait;               /* the last slice found no budget left */
    struct migrate_task task;
    struct flight flight;
    uint64_t shown;                 /* the most bytes_moved a client was shown */
    int efd;                        /* eventfd: the task's thread is done */
    sd_event_source *io;
};

static void evac_freep(struct nt_hp_evac **e) { nt_hp_evac_free(*e); }

static void release(struct nt_proc *p);

/* migrate_pages cannot be interrupted: wait for it. */
static void task_join(struct migrate_task *t)
{
    if (!t->running)
        return;
    pthread_join(t->thread, NULL);
    t->running = false;
    t->finished = true;
}

void nt_hp_evac_free(struct nt_hp_evac *e)
{
    if (!e)
        return;
    task_join(&e->task);
    release(&e->task.proc);
    sd_event_source_disable_unref(e->io);
    if (e->efd >= 0)
        close(e->efd);
    free(e->pids);
    free(e->ranges);
    free(e->vaddrs);
    free(e);
}

/* ---- processes ------------------------------------------------------------------ */

/* Start time (stat field 22), flags (9), ppid (4) and comm of pid. */
static int read_stat(const char *root, pid_t pid, uint64_t *start, unsigned *flags, pid_t *ppid, char *comm)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    _cleanup_free_ char *s = NULL;
    int r = nt_read_file(root, path, &s);
    if (r < 0)
        return r == -ENOENT ? -ESRCH : r;
    char *open = strchr(s, '('), *close = strrchr(s, ')');
    if (!open || !close || close < open)
        return -EINVAL;
    snprintf(comm, 16, "%.*s", (int)(close - open - 1 > 15 ? 15 : close - open - 1), open + 1);
    unsigned field = 2;
    for (char *save = NULL, *t = strtok_r(close + 1, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 4)
            *ppid = (pid_t)strtol(t, NULL, 10);
        else if (field == 9)
            *flags = (unsigned)strtoul(t, NULL, 10);
        else if (field == 22) {
            *start = strtoull(t, NULL, 10);
            return 0;
        }
    }
    return -EINVAL;
}

static bool user_process(const char *root, pid_t pid)
{
    uint64_t start;
    unsigned flags = 0;
    pid_t ppid = 0;
    char comm[16];
    return read_stat(root, pid, &start, &flags, &ppid, comm) == 0 && !(flags & NT_PF_KTHREAD) &&
           ppid != NT_KTHREADD_PID && pid != NT_KTHREADD_PID;
}

static int list_pids(const char *root, pid_t **out, size_t *n)
{
    _cleanup_closedir_ DIR *d = nt_opendir_below(root, "/proc");
    *n = 0;
    *out = NULL;
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    _cleanup_free_ pid_t *v = NULL;
    size_t cap = 0, len = 0;
    for (struct dirent *de; (de = readdir(d));) {
        unsigned pid;
        if (!nt_name_with_id(de->d_name, "", &pid) || pid == 0 || pid > INT32_MAX ||
            !user_process(root, (pid_t)pid))
            continue;
        if (len == cap) {
            cap = cap ? 2 * cap : 64;
            pid_t *nv = realloc(v, cap * sizeof(*nv));
            if (!nv)
                return -ENOMEM;
            v = nv;
        }
        v[len++] = (pid_t)pid;
    }
    *out = NT_TAKE_PTR(v);
    *n = len;
    return 0;
}

/* An nt_proc for the mover, held by pidfd. -ESRCH if gone. */
static int hold(struct nt_hotplug *h, pid_t pid, struct nt_proc *p)
{
    unsigned flags = 0;
    pid_t ppid = 0;
    *p = (struct nt_proc){ .pidfd = -1 };
    int r = read_stat(h->root, pid, &p->key.start_time, &flags, &ppid, p->comm);
    if (r < 0)
        return r;
    p->key.pid = pid;
    p->id = ++h->next_proc_id;
    if (strcmp(h->root, "/") == 0) {
        p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (p->pidfd < 0 && errno == ESRCH)
            return -ESRCH;
    }
    return 0;
}

static void release(struct nt_proc *p)
{
    if (p->pidfd >= 0)
        close(p->pidfd);
    p->pidfd = -1;
}

/* ---- setup ------------------------------------------------------------------------- */

static int add_range(struct nt_hp_evac *e, uint64_t start, uint64_t end)
{
    if (e->nr_ranges && e->ranges[e->nr_ranges - 1].end == start) {
        e->ranges[e->nr_ranges - 1].end = end;
        return 0;
    }
    struct phys_range *nv = realloc(e->ranges, (e->nr_ranges + 1) * sizeof(*nv));
    if (!nv)
        return -ENOMEM;
    e->ranges = nv;
    e->ranges[e->nr_ranges++] = (struct phys_range){ start, end };
    return 0;
}

/* Target blocks of nodes that keep other memory: their frames, merged. */
static int partial_ranges(struct nt_hotplug *h, struct nt_hp_evac *e, uint64_t block_size)
{
    const struct nt_job *j = h->job;
    _cleanup_free_ unsigned *ids = calloc(j->nr_blocks ? j->nr_blocks : 1, sizeof(*ids));
    if (!ids)
        return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < j->nr_blocks; i++)
        if (j->blocks[i].result == NT_BLOCK_PENDING && !nt_nodeset_test(&e->from, j->blocks[i].node))
            ids[n++] = j->blocks[i].block;
    for (size_t a = 1; a < n; a++)          /* insertion sort: a job has few blocks */
        for (size_t b = a; b > 0 && ids[b - 1] > ids[b]; b--) {
            unsigned t = ids[b];
            ids[b] = ids[b - 1];
            ids[b - 1] = t;
        }
    for (size_t i = 0; i < n; i++) {
        int r = add_range(e, (uint64_t)ids[i] * block_size, (uint64_t)(ids[i] + 1) * block_size);
        if (r < 0)
            return r;
    }
    return 0;
}

static int node_cpus(struct nt_hotplug *h, int node, cpu_set_t *set)
{
    char path[64];
    snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/cpulist", node);
    _cleanup_free_ char *list = NULL;
    int r = nt_read_file(h->root, path, &list);
    return r < 0 ? r : nt_cpuset_parse(list, set);
}

static int drain_setup(struct nt_hotplug *h, struct nt_hp_evac *e)
{
    const struct nt_job *j = h->job;
    int r = node_cpus(h, j->target_node, &e->node_cpus);
    if (r < 0)
        CPU_ZERO(&e->node_cpus);        /* a CPU-less node: only memory to move */
    r = j->cpu_node >= 0 ? node_cpus(h, j->cpu_node, &e->dest_cpus) : -ENOENT;
    if (r <= 0) {
        CPU_ZERO(&e->dest_cpus);
        CPU_ZERO(&e->node_cpus);
    }
    _cleanup_free_ char *online = NULL;
    cpu_set_t all;
    e->online_cpus = nt_read_file(h->root, "/sys/devices/system/cpu/online", &online) == 0 ?
                     nt_cpuset_parse(online, &all) : 0;
    e->stage = CPU_COUNT(&e->node_cpus) ? STAGE_THREADS : STAGE_MEMORY;
    nt_nodeset_set(&e->from, j->target_node);
    return 0;
}

static int on_migrated(sd_event_source *s, int fd, uint32_t revents, void *userdata);

static int evac_new(struct nt_hotplug *h, struct nt_hp_evac **out)
{
    _cleanup_(evac_freep) struct nt_hp_evac *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->task.proc.pidfd = -1;
    e->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->efd < 0)
        return -errno;
    int r = sd_event_add_io(h->event, &e->io, e->efd, EPOLLIN, on_migrated, h);
    if (r < 0)
        return r;
    e->page_size = sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096;
    e->stage = STAGE_MEMORY;
    if (h->job->op == NT_OFFLINE_OP_DRAIN)
        r = drain_setup(h, e);
    else {
        e->from = h->run.emptied;
        uint64_t bs = 0;
        _cleanup_free_ struct nt_mem_block *blocks = NULL;
        size_t nb = 0;
        r = nt_memblocks_read(h->root, &blocks, &nb, &bs);
        if (r == 0 && bs)
            r = partial_ranges(h, e, bs);
    }
    if (r == 0)
        r = list_pids(h->root, &e->pids, &e->n);
    if (r < 0)
        return r;
    *out = NT_TAKE_PTR(e);
    return 0;
}

/* ---- memory --------------------------------------------------------------------------- */

static uint64_t bytes_on_node(struct nt_hotplug *h, pid_t pid, int node, long page_size)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/numa_maps", (int)pid);
    _cleanup_free_ char *text = NULL;
    if (nt_read_file(h->root, path, &text) < 0)
        return 0;
    double mb[NT_NUMASTAT_PROC_ROWS] = { 0 };
    nt_numa_maps_tally(text, &node, 1, (uint64_t)page_size, UINT64_C(2) << 20, mb);
    double total = 0;
    for (unsigned i = 0; i < NT_NUMASTAT_PROC_ROWS; i++)
        total += mb[i];
    return (uint64_t)(total * 1024 * 1024);
}

/* The nearest destination with room for bytes, else the roomiest. */
static int pick_dest(struct nt_hotplug *h, uint64_t bytes, size_t *pos)
{
    const struct nt_hp_run *run = &h->run;
    size_t best = 0;
    for (size_t i = 0; i < run->nr_dests; i++) {
        if (run->dest_left[i] >= bytes) {
            *pos = i;
            return run->dests[i].node;
        }
        if (run->dest_left[i] > run->dest_left[best])
            best = i;
    }
    *pos = best;
    return run->nr_dests ? run->dests[best].node : -1;
}

static void count_moved(struct nt_hotplug *h, size_t pos, uint64_t bytes)
{
    h->job->bytes_moved += bytes;
    h->moved_total += bytes;
    if (pos < h->run.nr_dests)
        h->run.dest_left[pos] -= bytes < h->run.dest_left[pos] ? bytes : h->run.dest_left[pos];
}

/* ---- progress while migrate_pages runs ----------------------------------------------- */

/* numastat's cell `row` for node, in MB; NAN if the kernel did not print it. */
static double meminfo_mb(const struct nt_numastat_table *t, const char *row, int node)
{
    for (unsigned i = 0; i < t->nr_rows; i++) {
        if (strcmp(t->row_names[i], row) != 0)
            continue;
        for (unsigned c = 0; c < t->nr_cols; c++)
            if (t->node_ids[c] == node)
                return t->mb[i * t->nr_cols + c];
    }
    return NAN;
}

/* MemTotal - MemFree of node, with numastat's reader of the nodes'
 * meminfo: topology's would also read every memory block, on every
 * request for the job while a migrate_pages runs. */
static int node_used(const char *root, int node, uint64_t *bytes)
{
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *t = NULL;
    int r = nt_numastat_system(root, &t);
    if (r < 0)
        return r;
    double used = meminfo_mb(t, "MemTotal", node) - meminfo_mb(t, "MemFree", node);
    if (isnan(used))
        return -ENOENT;
    *bytes = used > 0 ? (uint64_t)(used * 1048576.0) : 0;  /* kB / 1024 * 2^20: exact */
    return 0;
}

/* What the task has moved: how much less the node holds than at its start,
 * clamped to [0, expected]. Others' allocations on the node hide some of
 * it, their frees look like progress; the clamp keeps it within what this
 * one call can move. */
static uint64_t flight_estimate(const struct nt_hotplug *h, const struct flight *f)
{
    uint64_t now;
    if (!f->active || node_used(h->root, f->node, &now) < 0 || now >= f->used_start)
        return 0;
    uint64_t gone = f->used_start - now;
    return gone < f->expected ? gone : f->expected;
}

void nt_hp_evac_track(struct nt_hotplug *h, int node, uint64_t expected)
{
    struct nt_hp_evac *e = h->run.evac;
    uint64_t used = 0;
    if (!e)
        return;
    /* without a first reading there is nothing to compare with: no estimate */
    e->flight = (struct flight){ .active = node_used(h->root, node, &used) == 0, .node = node,
                                 .expected = expected, .used_start = used };
}

/* Monotonic while the evacuation runs: an estimate above what the task
 * then counts (frees by others, pages the kernel could not move) is kept
 * until the evacuation ends, so a client polling it never sees it go back
 * mid-way; after that the job shows the count the ledger has, which may be
 * that much lower, once. */
uint64_t nt_hp_evac_progress(const struct nt_hotplug *h)
{
    const struct nt_job *j = h->job;
    struct nt_hp_evac *e = h->run.evac;     /* what was shown is kept there: a query changes only that */
    if (!j || !e)
        return j ? j->bytes_moved : 0;
    uint64_t now = j->bytes_moved + flight_estimate(h, &e->flight);
    if (now > e->shown)
        e->shown = now;
    return e->shown;
}

/* ---- whole nodes: migrate_pages in a thread ------------------------------------------- */

static void *migrate_thread(void *arg)
{
    struct nt_hp_evac *e = arg;
    struct migrate_task *t = &e->task;
    t->r = nt_mover_migrate_all(t->h->mover, t->h->procs, &t->proc, &t->from, t->dest, nt_now_usec(), &t->res);
    uint64_t one = 1;
    if (write(e->efd, &one, sizeof(one)) < 0)
        t->r = t->r ? t->r : -errno;    /* the loop would never hear of it: nothing better to do */
    return NULL;
}

static int on_migrated(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    (void)s;
    (void)revents;
    struct nt_hotplug *h = userdata;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) < 0 || !h->run.evac)
        return 0;
    task_join(&h->run.evac->task);
    if (h->job && (h->job->phase == NT_JOB_EVACUATING || h->job->phase == NT_JOB_DRAINING))
        nt_hp_kick(h, 0);
    return 0;
}

/* Start moving p's memory off node (bytes there, as numa_maps says) to
 * the chosen destination. */
static int task_start(struct nt_hotplug *h, struct nt_hp_evac *e, struct nt_proc *p, int node, uint64_t bytes,
                      int dest, size_t pos)
{
    struct migrate_task *t = &e->task;
    *t = (struct migrate_task){ .h = h, .proc = *p, .dest = dest, .pos = pos };
    nt_nodeset_set(&t->from, node);
    nt_hp_evac_track(h, node, bytes);      /* before the thread: it may move pages at once */
    int r = pthread_create(&t->thread, NULL, migrate_thread, e);
    if (r != 0) {
        e->flight.active = false;
        t->proc.pidfd = -1;     /* still the caller's to release */
        return -r;
    }
    *p = (struct nt_proc){ .pidfd = -1 };  /* the task holds it now */
    t->running = true;
    return 0;
}

/* A finished task: count what moved. *again when the budget said wait. */
static int task_collect(struct nt_hotplug *h, struct nt_hp_evac *e, bool *again)
{
    struct migrate_task *t = &e->task;
    t->finished = false;
    e->flight.active = false;           /* its count replaces the estimate */
    release(&t->proc);
    if (t->r < 0)
        return t->r;
    if (!t->res.exited && t->res.deferred) {
        *again = e->budget_wait = true;
        return 0;
    }
    count_moved(h, t->pos, t->res.moved * (uint64_t)e->page_size);
    e->node_cursor++;
    return 0;
}

/* The next node of `from` on which p has memory: start its task
 * (*waiting), or none left. */
static int migrate_whole(struct nt_hotplug *h, struct nt_hp_evac *e, struct nt_proc *p, bool *waiting)
{
    for (; e->node_cursor < NT_MAX_NODES; e->node_cursor++) {
        int node = e->node_cursor;
        if (!nt_nodeset_test(&e->from, node))
            continue;
        uint64_t bytes = bytes_on_node(h, p->key.pid, node, e->page_size);
        size_t pos;
        int dest = bytes ? pick_dest(h, bytes, &pos) : -1;
        if (dest < 0)
            continue;
        int r = task_start(h, e, p, node, bytes, dest, pos);
        if (r == 0)
            *waiting = true;
        return r;
    }
    return 0;
}

static bool in_ranges(const struct nt_hp_evac *e, uint64_t phys)
{
    for (size_t i = 0; i < e->nr_ranges; i++)
        if (phys >= e->ranges[i].start && phys < e->ranges[i].end)
            return true;
    return false;
}

static int push_vaddr(struct nt_hp_evac *e, size_t *cap, uint64_t va)
{
    if (e->nv == *cap) {
        size_t ncap = *cap ? 2 * *cap : 1024;
        uint64_t *nv = realloc(e->vaddrs, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        e->vaddrs = nv;
        *cap = ncap;
    }
    e->vaddrs[e->nv++] = va;
    return 0;
}

static int scan_mapping(struct nt_hp_evac *e, int fd, uint64_t start, uint64_t end, size_t *cap)
{
    uint64_t ps = (uint64_t)e->page_size, buf[PAGEMAP_CHUNK];
    for (uint64_t va = start; va < end;) {
        size_t want = (size_t)((end - va) / ps);
        if (want > PAGEMAP_CHUNK)
            want = PAGEMAP_CHUNK;
        ssize_t n = pread(fd, buf, want * sizeof(uint64_t), (off_t)(va / ps * sizeof(uint64_t)));
        if (n <= 0)
            return n < 0 ? -errno : 0;
        for (size_t i = 0; i < (size_t)n / sizeof(uint64_t); i++) {
            uint64_t pfn = buf[i] & PM_PFN_MASK;
            if ((buf[i] & PM_PRESENT) && pfn && in_ranges(e, pfn * ps)) {
                int r = push_vaddr(e, cap, va + i * ps);
                if (r < 0)
                    return r;
            }
        }
        va += (uint64_t)n / sizeof(uint64_t) * ps;
    }
    return 0;
}

/* The process's pages whose frames lie in the target ranges. */
static int scan_pagemap(struct nt_hotplug *h, struct nt_hp_evac *e, pid_t pid)
{
    char rel[64];
    e->nv = e->vnext = 0;
    snprintf(rel, sizeof(rel), "/proc/%d/maps", (int)pid);
    _cleanup_free_ char *maps = NULL;
    if (nt_read_file(h->root, rel, &maps) < 0)
        return 0;                           /* gone */
    snprintf(rel, sizeof(rel), "/proc/%d/pagemap", (int)pid);
    _cleanup_free_ char *path = nt_path_join(h->root, rel);
    _cleanup_close_ int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return 0;
    size_t cap = 0;
    for (char *line = maps; line && *line;) {
        char *eol = strchr(line, '\n');
        unsigned long long s, en;
        if (sscanf(line, "%llx-%llx", &s, &en) == 2 && !strstr(line, "[vsyscall]")) {
            int r = scan_mapping(e, fd, s, en, &cap);
            if (r < 0)
                return r;
        }
        line = eol ? eol + 1 : NULL;
    }
    return 0;
}

static int move_partial(struct nt_hotplug *h, struct nt_hp_evac *e, const struct nt_proc *p, bool *again)
{
    if (!e->scanned) {
        int r = scan_pagemap(h, e, p->key.pid);
        if (r < 0)
            return r;
        e->scanned = true;
    }
    size_t pos;
    int dest = e->nv > e->vnext ? pick_dest(h, (e->nv - e->vnext) * (uint64_t)e->page_size, &pos) : -1;
    if (dest < 0)
        return 0;
    int fb[16];
    size_t nfb = 0;
    for (size_t i = 0; i < h->run.nr_dests && nfb < NT_ARRAY_SIZE(fb); i++)
        if (h->run.dests[i].node != dest)
            fb[nfb++] = h->run.dests[i].node;
    struct nt_move_result res;
    size_t n = e->nv - e->vnext < SLICE_PAGES ? e->nv - e->vnext : SLICE_PAGES;
    int r = nt_mover_move_pages(h->mover, h->procs, p, e->vaddrs + e->vnext, n, dest, fb, nfb, nt_now_usec(), &res);
    if (r < 0)
        return r;
    count_moved(h, pos, res.moved * (uint64_t)e->page_size);
    e->vnext += res.next;
    *again = !res.exited && e->vnext < e->nv;
    e->budget_wait = *again && res.next == 0;       /* nothing moved: out of budget */
    return 0;
}

/* One step on one process: collect a finished migrate_pages, start the
 * next one (*waiting), or move a slice of pages in target blocks (*again
 * while some are left or the budget said wait). */
static int evac_memory(struct nt_hotplug *h, struct nt_hp_evac *e, pid_t pid, bool *again, bool *waiting)
{
    if (e->task.finished) {
        int r = task_collect(h, e, again);
        if (r < 0 || *again)
            return r;
    }
    struct nt_proc p;
    int r = hold(h, pid, &p);
    if (r < 0)
        return r == -ESRCH ? 0 : r;         /* exited meanwhile: nothing to move */
    r = migrate_whole(h, e, &p, waiting);
    if (r == 0 && !*waiting && e->nr_ranges)
        r = move_partial(h, e, &p, again);
    release(&p);
    return r;
}

/* ---- threads (drain) --------------------------------------------------------------------- */

/* May any thread of pid run on the node's CPUs? Where one ran last is a
 * snapshot the scheduler changes the next moment: the affinity is what
 * keeps it off. */
static bool may_run_on(struct nt_hotplug *h, const struct nt_hp_evac *e, pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    _cleanup_closedir_ DIR *d = nt_opendir_below(h->root, path);
    for (struct dirent *de; d && (de = readdir(d));) {
        unsigned tid;
        cpu_set_t mask, both;
        if (!nt_name_with_id(de->d_name, "", &tid) || sched_getaffinity((pid_t)tid, sizeof(mask), &mask) < 0)
            continue;
        CPU_AND(&both, &mask, &e->node_cpus);
        if (CPU_COUNT(&both))
            return true;
    }
    return false;
}

/* An affinity narrower than every CPU, not set by numatierd (a drain's
 * own mover, or placement as the owner hook tells): the user's. */
static bool user_affinity(struct nt_hotplug *h, const struct nt_hp_evac *e, pid_t pid)
{
    cpu_set_t cur;
    if (sched_getaffinity(pid, sizeof(cur), &cur) < 0)
        return false;
    return e->online_cpus > 0 && CPU_COUNT(&cur) < e->online_cpus &&
           !nt_mover_affinity_is_ours(h->mover, pid, &cur) &&
           !(h->affinity_owner && h->affinity_owner(pid, &cur, h->affinity_owner_ud));
}

/* Journal what the drain pinned, for `online node N` to put back. */
static void record_pin(struct nt_hotplug *h, const struct nt_proc *p, const cpu_set_t *before,
                       const cpu_set_t *set, unsigned threads)
{
    struct nt_job *j = h->job;
    struct nt_job_pin *nv = realloc(j->pins, (j->nr_pins + 1) * sizeof(*nv));
    if (!nv) {
        log_warning("drain job %" PRId64 ": pid %d: no memory to record its affinity; `online` cannot put "
                    "it back (numatierctl restore can)", j->id, (int)p->key.pid);
        return;
    }
    j->pins = nv;
    struct nt_job_pin *pin = &j->pins[j->nr_pins++];
    *pin = (struct nt_job_pin){ .pid = p->key.pid, .start_time = p->key.start_time, .threads = threads };
    snprintf(pin->boot_id, sizeof(pin->boot_id), "%s", h->boot_id);
    snprintf(pin->comm, sizeof(pin->comm), "%s", p->comm);
    nt_cpuset_format(before, pin->cpus_before, sizeof(pin->cpus_before));
    nt_cpuset_format(set, pin->cpus_set, sizeof(pin->cpus_set));
    nt_hp_journal_pin(h, j->nr_pins - 1);
}

static int drain_threads(struct nt_hotplug *h, struct nt_hp_evac *e, pid_t pid)
{
    if (!may_run_on(h, e, pid))
        return 0;
    if (!h->job->force && user_affinity(h, e, pid)) {
        h->run.threads_kept++;
        log_info("drain job %" PRId64 ": pid %d keeps its own CPU affinity (use --force to move it)",
                 h->job->id, (int)pid);
        return 0;
    }
    struct nt_proc p;
    cpu_set_t before;
    int r = hold(h, pid, &p);
    if (r < 0)
        return r == -ESRCH ? 0 : r;
    if (sched_getaffinity(pid, sizeof(before), &before) < 0) {
        release(&p);
        return 0;                           /* gone meanwhile */
    }
    r = nt_mover_move_threads(h->mover, h->procs, &p, &e->dest_cpus);
    if (r > 0) {
        h->run.threads_moved += (unsigned)r;
        record_pin(h, &p, &before, &e->dest_cpus, (unsigned)r);
    }
    release(&p);
    return r < 0 && r != -ESRCH ? r : 0;
}

/* ---- the slice ----------------------------------------------------------------------------- */

int nt_hp_evac_slice(struct nt_hotplug *h, bool *done, uint64_t *delay_usec)
{
    struct nt_hp_run *run = &h->run;
    *done = false;
    *delay_usec = 0;
    if (!run->evac) {
        int r = evac_new(h, &run->evac);
        if (r < 0)
            return r;
    }
    struct nt_hp_evac *e = run->evac;
    if (e->next >= e->n && e->stage == STAGE_THREADS) {
        e->stage = STAGE_MEMORY;
        e->next = 0;
    }
    if (e->next >= e->n) {
        *done = true;
        return 0;
    }
    if (e->task.running) {
        *delay_usec = UINT64_MAX;           /* on_migrated kicks the job */
        return 0;
    }
    pid_t pid = e->pids[e->next];
    bool again = false, waiting = false;
    int r = e->stage == STAGE_THREADS ? drain_threads(h, e, pid) : evac_memory(h, e, pid, &again, &waiting);
    if (r < 0)
        log_warning("job %" PRId64 ": moving pid %d: %s; going on", h->job->id, (int)pid, strerror(-r));
    if (r == 0 && waiting) {
        *delay_usec = UINT64_MAX;
        return 0;
    }
    if (r == 0 && again) {
        /* budget: wait; more pages: come back at once, after other events */
        *delay_usec = e->budget_wait ? BUDGET_WAIT_USEC : 0;
        e->budget_wait = false;
        return 0;
    }
    e->next++;
    e->node_cursor = 0;
    e->scanned = false;
    e->nv = e->vnext = 0;
    return 0;
}

/* ---- rebinds ---------------------------------------------------------------------------------- */

static int read_mems(const char *root, const char *cgroup, char *buf, size_t len)
{
    char rel[400];
    snprintf(rel, sizeof(rel), CGROUP_ROOT "%s/cpuset.mems", strcmp(cgroup, "/") == 0 ? "" : cgroup);
    _cleanup_free_ char *s = NULL;
    int r = nt_read_file(root, rel, &s);
    if (r == 0)
        snprintf(buf, len, "%s", s);
    return r;
}

static int write_mems(const char *root, const char *cgroup, const char *mems)
{
    char rel[400];
    snprintf(rel, sizeof(rel), CGROUP_ROOT "%s/cpuset.mems", strcmp(cgroup, "/") == 0 ? "" : cgroup);
    return nt_write_file(root, rel, mems);
}

/* The nearest cgroup from the process's up whose cpuset.mems is set: the
 * one that binds it. */
static int binding_cgroup(const char *root, const char *cgroup, char *out, size_t len, char *mems, size_t mlen)
{
    snprintf(out, len, "%s", cgroup);
    while (*out) {
        if (read_mems(root, out, mems, mlen) == 0 && *mems)
            return 0;
        char *slash = strrchr(out, '/');
        if (!slash || slash == out)
            break;
        *slash = '\0';
    }
    return -ENOENT;
}

static const struct nt_hotplug_proc *proc_info(const struct nt_hotplug *h, pid_t pid)
{
    for (size_t i = 0; i < h->run.nr_procs; i++)
        if (h->run.procs[i].pid == pid)
            return &h->run.procs[i];
    return NULL;
}

/* Notes end up in the job's message, whatever its outcome. */
static void note(struct nt_hotplug *h, const char *text)
{
    char *n = h->run.notes;
    size_t len = strlen(n);
    snprintf(n + len, sizeof(h->run.notes) - len, "%s%s", len ? " " : "", text);
    snprintf(h->job->message, sizeof(h->job->message), "%s", n);
}

static void apply_cpuset(struct nt_hotplug *h, size_t i, const struct nt_hotplug_proc *info)
{
    struct nt_job_rebind *rb = &h->job->rebinds[i];
    char mems[64], why[200];
    struct nt_nodeset set;
    int r = binding_cgroup(h->root, info->cgroup, rb->cgroup, sizeof(rb->cgroup), mems, sizeof(mems));
    if (r == 0 && (r = nt_parse_nodelist(mems, &set)) == 0) {
        char next[NT_NODELIST_STRLEN];
        nt_nodeset_set(&set, rb->to_node);
        nt_format_nodelist(&set, next, sizeof(next));
        snprintf(rb->mems_before, sizeof(rb->mems_before), "%s", mems);
        r = write_mems(h->root, rb->cgroup, next);
        if (r == 0) {
            rb->applied = true;
            log_notice("job %" PRId64 ": cgroup %s (pid %d, %s): cpuset.mems %s -> %s", h->job->id,
                       rb->cgroup, (int)rb->pid, rb->comm, mems, next);
        }
    }
    if (r < 0) {
        snprintf(why, sizeof(why), "pid %d (%s): its cpuset.mems could not be rewritten (%s); it stays bound.",
                 (int)rb->pid, rb->comm, strerror(-r));
        note(h, why);
        log_warning("job %" PRId64 ": %s", h->job->id, why);
    }
    nt_hp_journal_rebind(h, i);
}

void nt_hp_rebinds_apply(struct nt_hotplug *h)
{
    struct nt_job *j = h->job;
    for (size_t i = 0; i < j->nr_rebinds; i++) {
        struct nt_job_rebind *rb = &j->rebinds[i];
        const struct nt_hotplug_proc *info = proc_info(h, rb->pid);
        if (info && info->cpuset) {
            apply_cpuset(h, i, info);
            continue;
        }
        char why[NT_JOB_MESSAGE_MAX];
        snprintf(why, sizeof(why), "pid %d (%s) is bound by its memory policy to node %s: its pages are moved "
                 "to node %d, but no system call changes another process's policy, so its new allocations "
                 "there may fail.", (int)rb->pid, rb->comm, rb->from, rb->to_node);
        note(h, why);
        log_warning("job %" PRId64 ": %s", j->id, why);
    }
}

void nt_hp_rebinds_undo(struct nt_hotplug *h)
{
    struct nt_job *j = h->job;
    for (size_t i = 0; i < j->nr_rebinds; i++) {
        struct nt_job_rebind *rb = &j->rebinds[i];
        if (!rb->applied || rb->restored)
            continue;
        int r = write_mems(h->root, rb->cgroup, rb->mems_before);
        if (r < 0) {
            log_error("job %" PRId64 ": cgroup %s: cannot restore cpuset.mems %s: %s", j->id, rb->cgroup,
                      rb->mems_before, strerror(-r));
            continue;
        }
        rb->restored = true;
        nt_hp_journal_rebind(h, i);
    }
}

static int push_rebind(struct nt_job *j, const struct nt_job_rebind *rb)
{
    struct nt_job_rebind *nv = realloc(j->rebinds, (j->nr_rebinds + 1) * sizeof(*nv));
    if (!nv)
        return -ENOMEM;
    j->rebinds = nv;
    j->rebinds[j->nr_rebinds++] = *rb;
    return 0;
}

void nt_hp_rebinds_restore_for_node(struct nt_hotplug *h, int node)
{
    _cleanup_free_ struct nt_job_rebind_ref *refs = NULL;
    size_t n = 0;
    if (!h->ledger || node < 0 || nt_ledger_rebinds_open(h->ledger, node, &refs, &n) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        struct nt_job_rebind *rb = &refs[i].rb;
        int r = write_mems(h->root, rb->cgroup, rb->mems_before);
        if (r < 0) {
            log_warning("job %" PRId64 ": cgroup %s: cannot restore cpuset.mems %s: %s", h->job->id, rb->cgroup,
                        rb->mems_before, strerror(-r));
            continue;
        }
        rb->restored = true;
        (void)nt_ledger_rebind_mark_restored(h->ledger, refs[i].job_id, refs[i].seq);
        if (push_rebind(h->job, rb) < 0)
            continue;
        nt_hp_journal_rebind(h, h->job->nr_rebinds - 1);
        log_notice("job %" PRId64 ": cgroup %s (pid %d): cpuset.mems back to %s (from job %" PRId64 ")",
                       h->job->id, rb->cgroup, (int)rb->pid, rb->mems_before, refs[i].job_id);
    }
}

/* ---- ending a drain ------------------------------------------------------------------------ */

/* One pinned process back to its affinity from before: threads restored
 * (>= 0), or -ESRCH when it is gone (or from another boot). Threads whose
 * mask someone changed since are left alone (the mover's rule). */
static int restore_pin(struct nt_hotplug *h, const struct nt_job_pin *pin)
{
    if (pin->boot_id[0] && h->boot_id[0] && strcmp(pin->boot_id, h->boot_id) != 0)
        return -ESRCH;
    cpu_set_t set, before;
    if (nt_cpuset_parse(pin->cpus_set, &set) <= 0 || nt_cpuset_parse(pin->cpus_before, &before) <= 0)
        return -EINVAL;
    /* after a restart the mover has no record: take it back from the journal */
    int r = nt_mover_adopt(h->mover, pin->pid, pin->start_time, &set, &before);
    return r < 0 ? r : nt_mover_restore(h->mover, pin->pid);
}

static void undrain_pin(struct nt_hotplug *h, struct nt_job_pin *pin, int64_t job_id, size_t seq)
{
    struct nt_hp_run *run = &h->run;
    int r = restore_pin(h, pin);
    if (r >= 0) {
        run->undrain_threads += (unsigned)r;
        run->undrain_procs++;
        log_info("job %" PRId64 ": pid %d (%s): %d thread(s) back to CPUs %s (pinned to %s by drain job %" PRId64
                 ")", h->job->id, (int)pin->pid, pin->comm, r, pin->cpus_before, pin->cpus_set, job_id);
    } else if (r == -ESRCH || r == -ENOENT) {
        run->undrain_gone++;
    } else {
        log_warning("job %" PRId64 ": pid %d (%s): cannot restore its CPU affinity %s: %s", h->job->id,
                    (int)pin->pid, pin->comm, pin->cpus_before, strerror(-r));
    }
    pin->restored = true;       /* done or impossible: the next online does not try again */
    if (h->ledger && job_id && nt_ledger_pin_mark_restored(h->ledger, job_id, seq) < 0)
        log_error("job %" PRId64 ": cannot journal that pid %d was restored", h->job->id, (int)pin->pid);
}

/* Without a journal the pins live in the jobs kept in memory. */
static void undrain_from_history(struct nt_hotplug *h, int node)
{
    for (size_t i = 0; i < h->nr_history; i++) {
        struct nt_job *j = h->history[i];
        if (j->op != NT_OFFLINE_OP_DRAIN || j->target_node != node)
            continue;
        for (size_t k = 0; k < j->nr_pins; k++)
            if (!j->pins[k].restored) {
                h->run.undrained = true;
                undrain_pin(h, &j->pins[k], 0, k);
            }
    }
}

void nt_hp_undrain(struct nt_hotplug *h, int node)
{
    struct nt_hp_run *run = &h->run;
    int64_t drain = -1;
    if (node < 0)
        return;
    run->undrained = nt_hp_drained(h, node, &drain);
    run->undrained_job = run->undrained ? drain : -1;
    if (!h->ledger) {
        undrain_from_history(h, node);
        return;
    }
    _cleanup_free_ struct nt_job_pin_ref *refs = NULL;
    size_t n = 0;
    int r = nt_ledger_pins_open(h->ledger, node, &refs, &n);
    if (r < 0) {
        log_error("job %" PRId64 ": cannot read what drains of node %d pinned: %s", h->job->id, node, strerror(-r));
        return;
    }
    run->undrained |= n > 0;
    for (size_t i = 0; i < n; i++) {
        undrain_pin(h, &refs[i].pin, refs[i].job_id, refs[i].seq);
        struct nt_job *old = nt_hp_history_job(h, refs[i].job_id);     /* what `jobs` shows */
        if (old && refs[i].seq < old->nr_pins)
            old->pins[refs[i].seq].restored = true;
    }
}
