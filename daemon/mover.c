/* The mover: move_pages/migrate_pages for memory, sched_setaffinity for
 * threads, each guarded by the process's identity and a bandwidth budget.
 *
 * move_pages is used in two steps per batch: a query (nodes == NULL) says
 * where each page is, so pages already on the target cost no budget and
 * the (from, to) counters are exact; then only the pages that must move
 * are moved. Since 4.17 the kernel stops filling status[] for a batch as
 * soon as one page fails to migrate (it returns the count instead), so
 * status starts out as a sentinel and pages left unset are re-queried. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <numaif.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "numatier/log.h"
#include "numatier/mover.h"
#include "numatier/numastat.h"
#include "numatier/procs.h"
#include "numatier/select.h"
#include "numatier/util.h"

#define DEFAULT_BATCH       512
#define MAX_BATCH           4096
#define DEFAULT_RETRY_MAX   5
#define DEFAULT_RETRY_BASE  100000          /* 100 ms */
#define DEFAULT_QUEUE_MAX   4096
#define DEFAULT_PASSES      5
#define MAX_BACKOFF_SHIFT   10              /* base * 1024 at most */
#define RESUBMIT_ROUNDS     4
#define STATUS_UNSET        INT_MIN

/* One page waiting to be retried after EBUSY. Sorted by (id, vaddr). */
struct retry_entry {
    uint32_t id;
    int node;
    unsigned attempts;
    uint64_t vaddr;
    uint64_t due_usec;
};

struct thread_rec {
    pid_t tid;
    cpu_set_t orig;
};

/* Affinity numatierd changed on one process: what to restore, and what
 * it set (to tell its own masks from the user's). */
struct aff_rec {
    uint32_t id;
    pid_t pid;
    uint64_t start_time;
    int pidfd;                  /* a dup of the proc's, -1 if none */
    cpu_set_t proc_orig;        /* the main thread's, for threads born later */
    cpu_set_t ours;
    struct thread_rec *threads; /* sorted by tid */
    size_t nr_threads, cap_threads;
};

struct nt_mover {
    struct nt_mover_params p;
    int64_t tokens;             /* bytes; may go negative after migrate_all */
    bool bucket_started;
    uint64_t bucket_last_usec;
    struct retry_entry *retry;
    size_t nr_retry, cap_retry;
    struct aff_rec *aff;
    size_t nr_aff;
    struct nt_mover_pair *pairs;
    size_t nr_pairs;
    struct nt_mover_stats st;
};

/* ---- the real syscalls --------------------------------------------------------- */

static long real_move_pages(pid_t pid, unsigned long count, void **pages, const int *nodes, int *status,
                            int flags, void *ud)
{
    (void)ud;
    return move_pages(pid, count, pages, nodes, status, flags);
}

static long real_migrate_pages(pid_t pid, unsigned long maxnode, const unsigned long *old_nodes,
                               const unsigned long *new_nodes, void *ud)
{
    (void)ud;
    return migrate_pages(pid, maxnode, old_nodes, new_nodes);
}

static int real_setaffinity(pid_t tid, const cpu_set_t *mask, void *ud)
{
    (void)ud;
    return sched_setaffinity(tid, sizeof(*mask), mask);
}

/* ---- construction ------------------------------------------------------------------ */

void nt_mover_params_init(struct nt_mover_params *p)
{
    *p = (struct nt_mover_params){
        .batch_pages = DEFAULT_BATCH,
        .retry_max = DEFAULT_RETRY_MAX,
        .retry_base_usec = DEFAULT_RETRY_BASE,
        .retry_queue_max = DEFAULT_QUEUE_MAX,
        .affinity_passes = DEFAULT_PASSES,
    };
}

static void fill_defaults(struct nt_mover_params *p)
{
    if (!p->batch_pages)
        p->batch_pages = DEFAULT_BATCH;
    if (p->batch_pages > MAX_BATCH)
        p->batch_pages = MAX_BATCH;
    if (!p->retry_max)
        p->retry_max = DEFAULT_RETRY_MAX;
    if (!p->retry_base_usec)
        p->retry_base_usec = DEFAULT_RETRY_BASE;
    if (!p->retry_queue_max)
        p->retry_queue_max = DEFAULT_QUEUE_MAX;
    if (!p->affinity_passes)
        p->affinity_passes = DEFAULT_PASSES;
    if (p->page_size <= 0)
        p->page_size = sysconf(_SC_PAGESIZE);
    if (p->page_size <= 0)
        p->page_size = 4096;
    if (!p->move_pages)
        p->move_pages = real_move_pages;
    if (!p->migrate_pages)
        p->migrate_pages = real_migrate_pages;
    if (!p->setaffinity)
        p->setaffinity = real_setaffinity;
}

int nt_mover_new(const struct nt_mover_params *p, struct nt_mover **out)
{
    struct nt_mover *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    if (p)
        m->p = *p;
    else
        nt_mover_params_init(&m->p);
    fill_defaults(&m->p);
    *out = m;
    return 0;
}

static void aff_release(struct aff_rec *r)
{
    if (r->pidfd >= 0)
        close(r->pidfd);
    free(r->threads);
}

void nt_mover_free(struct nt_mover *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nr_aff; i++)
        aff_release(&m->aff[i]);
    free(m->aff);
    free(m->retry);
    free(m->pairs);
    free(m);
}

/* ---- budget: a token bucket in bytes ----------------------------------------------- */

static int64_t bucket_size(const struct nt_mover *m)
{
    uint64_t b = m->p.budget_burst_bytes ? m->p.budget_burst_bytes : m->p.budget_bytes_per_sec;
    return b > INT64_MAX ? INT64_MAX : (int64_t)b;
}

/* The bucket starts full, so the first call can move one burst. */
static void bucket_refill(struct nt_mover *m, uint64_t now)
{
    if (!m->p.budget_bytes_per_sec)
        return;
    int64_t size = bucket_size(m);
    if (!m->bucket_started) {
        m->tokens = size;
        m->bucket_started = true;
        m->bucket_last_usec = now;
        return;
    }
    if (now <= m->bucket_last_usec)
        return;
    /* double: rate * elapsed overflows 64 bits after a long idle time */
    double t = (double)m->tokens + (double)m->p.budget_bytes_per_sec * (double)(now - m->bucket_last_usec) / 1e6;
    m->tokens = t > (double)size ? size : (int64_t)t;
    m->bucket_last_usec = now;
}

static uint64_t bucket_pages(const struct nt_mover *m)
{
    if (!m->p.budget_bytes_per_sec)
        return UINT64_MAX;
    return m->tokens <= 0 ? 0 : (uint64_t)m->tokens / (uint64_t)m->p.page_size;
}

static void bucket_charge(struct nt_mover *m, uint64_t bytes)
{
    if (m->p.budget_bytes_per_sec)
        m->tokens -= bytes > INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)bytes;
}

void nt_mover_set_budget(struct nt_mover *m, uint64_t bytes_per_sec, uint64_t burst_bytes)
{
    m->p.budget_bytes_per_sec = bytes_per_sec;
    m->p.budget_burst_bytes = burst_bytes;
    if (m->tokens > bucket_size(m))
        m->tokens = bucket_size(m);
}

/* ---- counters ----------------------------------------------------------------------- */

static const char *const err_names[NT_MOVER_NR_ERR] = {
    [NT_MOVER_EBUSY] = "EBUSY", [NT_MOVER_ENOMEM] = "ENOMEM", [NT_MOVER_EFAULT] = "EFAULT",
    [NT_MOVER_ENOENT] = "ENOENT", [NT_MOVER_EACCES] = "EACCES", [NT_MOVER_ESRCH] = "ESRCH",
    [NT_MOVER_EOTHER] = "other",
};

const char *nt_mover_err_to_string(enum nt_mover_err e)
{
    return (unsigned)e < NT_MOVER_NR_ERR ? err_names[e] : "?";
}

static enum nt_mover_err err_class(int e)
{
    switch (e) {
    case EBUSY:
    case EAGAIN:                /* not moved, the kernel did not say why */
        return NT_MOVER_EBUSY;
    case ENOMEM: return NT_MOVER_ENOMEM;
    case EFAULT: return NT_MOVER_EFAULT;
    case ENOENT: return NT_MOVER_ENOENT;
    case EACCES: return NT_MOVER_EACCES;
    case ESRCH:  return NT_MOVER_ESRCH;
    default:     return NT_MOVER_EOTHER;
    }
}

static void count_pair(struct nt_mover *m, int from, int to, uint64_t pages)
{
    if (from == to || !pages)
        return;
    for (size_t i = 0; i < m->nr_pairs; i++)
        if (m->pairs[i].from == from && m->pairs[i].to == to) {
            m->pairs[i].pages += pages;
            return;
        }
    struct nt_mover_pair *np = realloc(m->pairs, (m->nr_pairs + 1) * sizeof(*np));
    if (!np)
        return;                 /* a lost counter is not worth failing a move */
    m->pairs = np;
    m->pairs[m->nr_pairs++] = (struct nt_mover_pair){ from, to, pages };
}

/* ---- the retry queue ---------------------------------------------------------------- */

static int retry_cmp(uint32_t id, uint64_t vaddr, const struct retry_entry *e)
{
    if (id != e->id)
        return id < e->id ? -1 : 1;
    return vaddr < e->vaddr ? -1 : vaddr > e->vaddr;
}

/* Index of (id, vaddr), or where it would go (*found false). */
static size_t retry_search(const struct nt_mover *m, uint32_t id, uint64_t vaddr, bool *found)
{
    size_t lo = 0, hi = m->nr_retry;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = retry_cmp(id, vaddr, &m->retry[mid]);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    *found = false;
    return lo;
}

static void retry_remove_at(struct nt_mover *m, size_t i)
{
    memmove(&m->retry[i], &m->retry[i + 1], (m->nr_retry - i - 1) * sizeof(*m->retry));
    m->nr_retry--;
}

static void retry_remove(struct nt_mover *m, uint32_t id, uint64_t vaddr)
{
    bool found;
    size_t i = m->nr_retry ? retry_search(m, id, vaddr, &found) : 0;
    if (m->nr_retry && found)
        retry_remove_at(m, i);
}

static void retry_remove_id(struct nt_mover *m, uint32_t id)
{
    size_t k = 0;
    for (size_t i = 0; i < m->nr_retry; i++)
        if (m->retry[i].id != id)
            m->retry[k++] = m->retry[i];
    m->nr_retry = k;
}

static uint64_t backoff(const struct nt_mover *m, unsigned attempts)
{
    unsigned shift = attempts > 0 ? attempts - 1 : 0;
    return m->p.retry_base_usec << (shift > MAX_BACKOFF_SHIFT ? MAX_BACKOFF_SHIFT : shift);
}

static bool retry_insert(struct nt_mover *m, size_t at, const struct retry_entry *e)
{
    if (m->nr_retry == m->cap_retry) {
        size_t cap = m->cap_retry ? 2 * m->cap_retry : 64;
        struct retry_entry *nv = realloc(m->retry, cap * sizeof(*nv));
        if (!nv)
            return false;
        m->retry = nv;
        m->cap_retry = cap;
    }
    memmove(&m->retry[at + 1], &m->retry[at], (m->nr_retry - at) * sizeof(*m->retry));
    m->retry[at] = *e;
    m->nr_retry++;
    return true;
}

/* A page was busy: (re)schedule it, or give up after retry_max retries. */
static void retry_busy(struct nt_mover *m, uint32_t id, uint64_t vaddr, int node, uint64_t now,
                       struct nt_move_result *res)
{
    bool found;
    size_t i = retry_search(m, id, vaddr, &found);
    if (found) {
        struct retry_entry *e = &m->retry[i];
        if (++e->attempts > m->p.retry_max) {
            retry_remove_at(m, i);
            res->gave_up++;
            m->st.retry_gave_up++;
            return;
        }
        e->node = node;
        e->due_usec = now + backoff(m, e->attempts);
        res->queued++;
        return;
    }
    struct retry_entry e = { .id = id, .node = node, .attempts = 1, .vaddr = vaddr,
                             .due_usec = now + backoff(m, 1) };
    if (m->nr_retry >= m->p.retry_queue_max || !retry_insert(m, i, &e)) {
        res->gave_up++;
        m->st.retry_gave_up++;
        return;
    }
    res->queued++;
}

uint64_t nt_mover_next_retry(const struct nt_mover *m)
{
    uint64_t due = UINT64_MAX;
    for (size_t i = 0; i < m->nr_retry; i++)
        if (m->retry[i].due_usec < due)
            due = m->retry[i].due_usec;
    return due;
}

/* ---- identity ---------------------------------------------------------------------- */

/* flags (field 9) and start time (field 22) of /proc/PID/stat. */
static int read_stat_ids(pid_t pid, unsigned *flags, uint64_t *start_time)
{
    char path[64];
    _cleanup_free_ char *buf = NULL;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int r = nt_read_file("/", path, &buf);
    if (r < 0)
        return r == -ENOENT ? -ESRCH : r;
    char *p = strrchr(buf, ')');
    if (!p)
        return -EINVAL;
    /* after ") " comes field 3; skip to fields 9 and 22 */
    unsigned field = 2;
    for (char *save = NULL, *t = strtok_r(p + 1, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 9)
            *flags = (unsigned)strtoul(t, NULL, 10);
        if (field == 22) {
            *start_time = strtoull(t, NULL, 10);
            return 0;
        }
    }
    return -EINVAL;
}

/* Still the instance we chose, and not a kernel thread (never ours to
 * move, whatever a caller hands us). */
static bool guard(const struct nt_procs *procs, const struct nt_proc *proc)
{
    unsigned flags = 0;
    uint64_t start = 0;
    if (proc->key.pid <= 0 || proc->key.pid == NT_KTHREADD_PID)
        return false;
    if (!nt_proc_still_same(procs, proc))
        return false;
    return read_stat_ids(proc->key.pid, &flags, &start) == 0 && !(flags & NT_PF_KTHREAD);
}

static void note_exited(struct nt_mover *m, struct nt_move_result *res)
{
    if (!res->exited)
        m->st.exited++;
    res->exited = true;
}

/* ---- move_pages: one set of pages to one node -------------------------------------- */

/* Scratch arrays for one batch, sized batch_pages. */
struct work {
    int *qstatus;       /* the query of the batch */
    uint64_t *vaddr;    /* the pages that must move */
    int *from;
    int *status;
    void **pages;       /* syscall arguments */
    int *nodes;
    int *st;
    size_t *idx;
};

static void work_free(struct work *w)
{
    free(w->qstatus);
    free(w->vaddr);
    free(w->from);
    free(w->status);
    free(w->pages);
    free(w->nodes);
    free(w->st);
    free(w->idx);
}

static int work_alloc(struct work *w, size_t n)
{
    *w = (struct work){
        .qstatus = calloc(n, sizeof(int)), .vaddr = calloc(n, sizeof(uint64_t)),
        .from = calloc(n, sizeof(int)), .status = calloc(n, sizeof(int)),
        .pages = calloc(n, sizeof(void *)), .nodes = calloc(n, sizeof(int)),
        .st = calloc(n, sizeof(int)), .idx = calloc(n, sizeof(size_t)),
    };
    if (!w->qstatus || !w->vaddr || !w->from || !w->status || !w->pages || !w->nodes || !w->st || !w->idx) {
        work_free(w);
        return -ENOMEM;
    }
    return 0;
}

static int query(struct nt_mover *m, pid_t pid, const uint64_t *vaddrs, size_t n, struct work *w, int *out)
{
    for (size_t i = 0; i < n; i++) {
        w->pages[i] = (void *)(uintptr_t)vaddrs[i];
        out[i] = STATUS_UNSET;
    }
    if (m->p.move_pages(pid, n, w->pages, NULL, out, 0, m->p.userdata) < 0)
        return -errno;
    return 0;
}

/* Re-query the pages still unset after a move: those now on node did
 * move. Returns how many are still unset. */
static int resolve_unset(struct nt_mover *m, pid_t pid, const uint64_t *vaddr, int *status, size_t n,
                         int node, struct work *w, size_t *left)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (status[i] == STATUS_UNSET)
            w->idx[k++] = i;
    *left = k;
    if (!k)
        return 0;
    for (size_t j = 0; j < k; j++) {
        w->pages[j] = (void *)(uintptr_t)vaddr[w->idx[j]];
        w->st[j] = STATUS_UNSET;
    }
    if (m->p.move_pages(pid, k, w->pages, NULL, w->st, 0, m->p.userdata) < 0)
        return -errno;
    for (size_t j = 0; j < k; j++)
        if (w->st[j] == node) {
            status[w->idx[j]] = node;
            (*left)--;
        }
    return 0;
}

static void mark_unset(int *status, size_t n, int e)
{
    for (size_t i = 0; i < n; i++)
        if (status[i] == STATUS_UNSET)
            status[i] = -e;
}

/* Move vaddr[0..n) to node, filling status[] with the node or -errno for
 * every page. Pages the kernel left unset are re-queried, and resubmitted
 * while that makes progress; those that never move get -EAGAIN. Returns 0,
 * or -errno of a whole-call failure (-ESRCH: the process is gone). */
static int move_round(struct nt_mover *m, pid_t pid, const uint64_t *vaddr, int *status, size_t n, int node,
                      struct work *w)
{
    int flags = m->p.move_all ? MPOL_MF_MOVE_ALL : MPOL_MF_MOVE;
    for (size_t i = 0; i < n; i++)
        status[i] = STATUS_UNSET;
    size_t pending = n;
    for (unsigned round = 0; round < RESUBMIT_ROUNDS && pending; round++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (status[i] == STATUS_UNSET) {
                w->idx[k] = i;
                w->pages[k] = (void *)(uintptr_t)vaddr[i];
                w->nodes[k] = node;
                w->st[k++] = STATUS_UNSET;
            }
        long r = m->p.move_pages(pid, k, w->pages, w->nodes, w->st, flags, m->p.userdata);
        int e = r < 0 ? errno : 0;
        if (e && e != ENOMEM)
            return -e;
        for (size_t j = 0; j < k; j++)
            status[w->idx[j]] = w->st[j];
        size_t left;
        int q = resolve_unset(m, pid, vaddr, status, n, node, w, &left);
        if (q == -ESRCH)
            return q;
        if (q < 0 || e == ENOMEM) {
            /* ENOMEM for the whole call: the target is full */
            mark_unset(status, n, q < 0 ? EAGAIN : ENOMEM);
            return 0;
        }
        if (left == pending)
            break;              /* no progress: leave them to the retry queue */
        pending = left;
    }
    mark_unset(status, n, EAGAIN);
    return 0;
}

/* Classify one page after moving it to node. Returns true if it needs the
 * next fallback node. */
static bool classify(struct nt_mover *m, uint32_t id, uint64_t vaddr, int from, int s, int node, bool fb,
                     uint64_t now, struct nt_move_result *res)
{
    if (s == node) {
        res->moved++;
        res->fallback += fb;
        m->st.moved++;
        m->st.fallback += fb;
        count_pair(m, from, node, 1);
        retry_remove(m, id, vaddr);
        return false;
    }
    if (s >= 0) {
        /* on some third node: something else moved it meanwhile */
        res->other++;
        m->st.fail[NT_MOVER_EOTHER]++;
        retry_remove(m, id, vaddr);
        return false;
    }
    enum nt_mover_err c = err_class(-s);
    m->st.fail[c]++;
    switch (c) {
    case NT_MOVER_EBUSY:
        retry_busy(m, id, vaddr, node, now, res);
        return false;
    case NT_MOVER_ENOMEM:
        return true;
    case NT_MOVER_EFAULT:
    case NT_MOVER_ENOENT:
        res->dropped++;
        break;
    case NT_MOVER_EACCES:
        res->shared++;
        break;
    default:
        res->other++;
        break;
    }
    retry_remove(m, id, vaddr);
    return false;
}

/* Move w->vaddr[0..n) (on w->from[]) to node, then what found no memory
 * there to each fallback in turn. */
static int move_set(struct nt_mover *m, const struct nt_proc *proc, size_t n, int node, const int *fb,
                    size_t nfb, uint64_t now, struct work *w, struct nt_move_result *res)
{
    for (size_t level = 0; n; level++) {
        int r = move_round(m, proc->key.pid, w->vaddr, w->status, n, node, w);
        if (r < 0)
            return r;
        size_t k = 0, moved = res->moved;
        for (size_t i = 0; i < n; i++) {
            if (!classify(m, proc->id, w->vaddr[i], w->from[i], w->status[i], node, level > 0, now, res))
                continue;
            w->vaddr[k] = w->vaddr[i];          /* compact in place: k <= i */
            w->from[k++] = w->from[i];
        }
        bucket_charge(m, (res->moved - moved) * (uint64_t)m->p.page_size);
        /* the next fallback, skipping pages already there: they stay put */
        size_t kept = 0;
        if (k && level < nfb) {
            node = fb[level];
            for (size_t i = 0; i < k; i++) {
                if (w->from[i] == node) {
                    res->nomem++;
                    retry_remove(m, proc->id, w->vaddr[i]);
                    continue;
                }
                w->vaddr[kept] = w->vaddr[i];
                w->from[kept++] = w->from[i];
            }
        } else {
            for (size_t i = 0; i < k; i++)
                retry_remove(m, proc->id, w->vaddr[i]);
            res->nomem += k;
        }
        n = kept;
    }
    return 0;
}

/* The query of one batch: count what needs no move, collect what does, up
 * to `allow` pages. Returns how many of the batch were handled (the rest
 * is deferred) and sets *nmove. */
static size_t plan_batch(struct nt_mover *m, uint32_t id, const uint64_t *vaddrs, size_t len, int node,
                         uint64_t allow, struct work *w, size_t *nmove, struct nt_move_result *res)
{
    size_t k = 0, j;
    for (j = 0; j < len; j++) {
        int s = w->qstatus[j];
        if (s >= 0 && s != node) {
            if (k == allow)
                break;
            w->vaddr[k] = vaddrs[j];
            w->from[k++] = s;
            continue;
        }
        if (s == node) {
            res->already++;
            m->st.already++;
            retry_remove(m, id, vaddrs[j]);
            continue;
        }
        int e = s == STATUS_UNSET ? EAGAIN : -s;
        enum nt_mover_err c = err_class(e);
        m->st.fail[c]++;
        if (c == NT_MOVER_EFAULT || c == NT_MOVER_ENOENT)
            res->dropped++;
        else if (c == NT_MOVER_EACCES)
            res->shared++;
        else
            res->other++;
        retry_remove(m, id, vaddrs[j]);
    }
    *nmove = k;
    return j;
}

/* After a whole-call error: a process that went away is "exited", not an
 * error (a zombie gives EINVAL, not ESRCH). */
static int whole_call_error(struct nt_mover *m, const struct nt_procs *procs, const struct nt_proc *proc, int r,
                            struct nt_move_result *res)
{
    if (r == -ESRCH || !nt_proc_still_same(procs, proc)) {
        m->st.fail[NT_MOVER_ESRCH]++;
        note_exited(m, res);
        return 0;
    }
    return r;
}

static int move_range(struct nt_mover *m, const struct nt_procs *procs, const struct nt_proc *proc,
                      const uint64_t *vaddrs, size_t n, int node, const int *fb, size_t nfb, uint64_t now,
                      struct nt_move_result *res)
{
    _cleanup_(work_free) struct work w = { 0 };
    if (work_alloc(&w, m->p.batch_pages) < 0)
        return -ENOMEM;
    bucket_refill(m, now);
    size_t i = 0;
    while (i < n) {
        if (!guard(procs, proc)) {
            note_exited(m, res);
            break;
        }
        size_t len = n - i < m->p.batch_pages ? n - i : m->p.batch_pages, nmove;
        int r = query(m, proc->key.pid, vaddrs + i, len, &w, w.qstatus);
        if (r < 0) {
            r = whole_call_error(m, procs, proc, r, res);
            if (r < 0)
                return r;
            break;
        }
        size_t take = plan_batch(m, proc->id, vaddrs + i, len, node, bucket_pages(m), &w, &nmove, res);
        r = move_set(m, proc, nmove, node, fb, nfb, now, &w, res);
        if (r < 0) {
            r = whole_call_error(m, procs, proc, r, res);
            if (r < 0)
                return r;
            break;
        }
        i += take;
        if (take < len)
            break;              /* out of budget */
    }
    res->next = i;
    if (!res->exited) {
        res->deferred += n - i;
        m->st.deferred += n - i;
    }
    return 0;
}

static void result_init(struct nt_move_result *res)
{
    *res = (struct nt_move_result){ 0 };
}

int nt_mover_move_pages(struct nt_mover *m, const struct nt_procs *procs, const struct nt_proc *proc,
                        const uint64_t *vaddrs, size_t n, int to_node, const int *fallback_nodes,
                        size_t n_fallback, uint64_t now_usec, struct nt_move_result *res)
{
    result_init(res);
    res->requested = n;
    m->st.requested += n;
    if (to_node < 0)
        return -EINVAL;
    return move_range(m, procs, proc, vaddrs, n, to_node, fallback_nodes, n_fallback, now_usec, res);
}

/* ---- retries ------------------------------------------------------------------------- */

static int due_cmp(const void *x, const void *y)
{
    const struct retry_entry *a = x, *b = y;
    if (a->id != b->id)
        return a->id < b->id ? -1 : 1;
    if (a->node != b->node)
        return a->node < b->node ? -1 : 1;
    return (a->vaddr > b->vaddr) - (a->vaddr < b->vaddr);
}

/* The due entries, copied, grouped by (id, node): the queue changes while
 * they are processed. */
static struct retry_entry *collect_due(const struct nt_mover *m, uint64_t now, size_t *n)
{
    struct retry_entry *v = malloc((m->nr_retry ? m->nr_retry : 1) * sizeof(*v));
    *n = 0;
    if (!v)
        return NULL;
    for (size_t i = 0; i < m->nr_retry; i++)
        if (m->retry[i].due_usec <= now)
            v[(*n)++] = m->retry[i];
    qsort(v, *n, sizeof(*v), due_cmp);
    return v;
}

static int retry_group(struct nt_mover *m, const struct nt_procs *procs, const struct retry_entry *g, size_t n,
                       uint64_t now, struct nt_move_result *res)
{
    const struct nt_proc *proc = nt_procs_find_id(procs, g[0].id);
    if (!proc) {
        retry_remove_id(m, g[0].id);            /* no longer watched */
        return 0;
    }
    _cleanup_free_ uint64_t *vaddrs = malloc(n * sizeof(*vaddrs));
    if (!vaddrs)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        vaddrs[i] = g[i].vaddr;
    struct nt_move_result r = { 0 };
    int ret = move_range(m, procs, proc, vaddrs, n, g[0].node, NULL, 0, now, &r);
    m->st.retries += r.next;
    if (r.exited)
        retry_remove_id(m, g[0].id);
    r.deferred = n - r.next;                    /* stay queued, due */
    res->requested += n;
    res->moved += r.moved;
    res->already += r.already;
    res->queued += r.queued;
    res->gave_up += r.gave_up;
    res->nomem += r.nomem;
    res->dropped += r.dropped;
    res->shared += r.shared;
    res->other += r.other;
    res->deferred += r.exited ? 0 : r.deferred;
    res->exited |= r.exited;
    return ret;
}

int nt_mover_retry(struct nt_mover *m, const struct nt_procs *procs, uint64_t now_usec,
                   struct nt_move_result *res)
{
    struct nt_move_result local;
    if (!res)
        res = &local;
    result_init(res);
    size_t n;
    _cleanup_free_ struct retry_entry *due = collect_due(m, now_usec, &n);
    if (!due)
        return -ENOMEM;
    int ret = 0;
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && due[j].id == due[i].id && due[j].node == due[i].node; j++)
            ;
        int r = retry_group(m, procs, due + i, j - i, now_usec, res);
        if (r < 0 && !ret)
            ret = r;
    }
    return ret;
}

/* ---- migrate_pages: the whole process ---------------------------------------------- */

/* Bytes of pid's memory on each node of ids[], from numa_maps. */
static int bytes_per_node(const struct nt_mover *m, pid_t pid, const int *ids, unsigned n, double *bytes)
{
    char path[64];
    _cleanup_free_ char *text = NULL;
    snprintf(path, sizeof(path), "/proc/%d/numa_maps", (int)pid);
    int r = nt_read_file("/", path, &text);
    if (r < 0)
        return r == -ENOENT ? -ESRCH : r;
    _cleanup_free_ double *mb = calloc((size_t)n * NT_NUMASTAT_PROC_ROWS, sizeof(double));
    if (!mb)
        return -ENOMEM;
    nt_numa_maps_tally(text, ids, n, (uint64_t)m->p.page_size, UINT64_C(2) << 20, mb);
    for (unsigned c = 0; c < n; c++) {
        bytes[c] = 0;
        for (unsigned row = 0; row < NT_NUMASTAT_PROC_ROWS; row++)
            bytes[c] += mb[row * n + c] * 1024.0 * 1024.0;
    }
    return 0;
}

/* The from nodes other than to_node, as ids. */
static unsigned from_ids(const struct nt_nodeset *from, int to, int *ids)
{
    unsigned n = 0;
    for (int node = 0; node < NT_MAX_NODES; node++)
        if (node != to && nt_nodeset_test(from, node))
            ids[n++] = node;
    return n;
}

/* Budget for a call that cannot be split: go if the bucket holds it or is
 * full (else a process larger than the bucket would never move). */
static bool budget_allows(struct nt_mover *m, uint64_t bytes, uint64_t now)
{
    if (!m->p.budget_bytes_per_sec)
        return true;
    bucket_refill(m, now);
    return m->tokens >= 0 && ((uint64_t)m->tokens >= bytes || m->tokens >= bucket_size(m));
}

static int do_migrate(struct nt_mover *m, pid_t pid, const int *ids, unsigned n, int to)
{
    unsigned long old[NT_MAX_NODES / (8 * sizeof(unsigned long))] = { 0 };
    unsigned long new[NT_MAX_NODES / (8 * sizeof(unsigned long))] = { 0 };
    const unsigned bits = 8 * sizeof(unsigned long);
    for (unsigned i = 0; i < n; i++)
        old[ids[i] / bits] |= 1UL << (ids[i] % bits);
    new[to / bits] |= 1UL << (to % bits);
    if (m->p.migrate_pages(pid, NT_MAX_NODES + 1, old, new, m->p.userdata) < 0)
        return -errno;
    return 0;
}

int nt_mover_migrate_all(struct nt_mover *m, const struct nt_procs *procs, const struct nt_proc *proc,
                         const struct nt_nodeset *from_nodes, int to_node, uint64_t now_usec,
                         struct nt_move_result *res)
{
    result_init(res);
    if (to_node < 0 || to_node >= NT_MAX_NODES)
        return -EINVAL;
    _cleanup_free_ int *ids = calloc(NT_MAX_NODES, sizeof(int));
    _cleanup_free_ double *before = calloc(NT_MAX_NODES, sizeof(double));
    _cleanup_free_ double *after = calloc(NT_MAX_NODES, sizeof(double));
    if (!ids || !before || !after)
        return -ENOMEM;
    unsigned n = from_ids(from_nodes, to_node, ids);
    if (!guard(procs, proc) || (n && bytes_per_node(m, proc->key.pid, ids, n, before) == -ESRCH)) {
        note_exited(m, res);
        return 0;
    }
    if (!n)
        return 0;               /* only to_node itself: nothing to move */
    double total = 0;
    for (unsigned i = 0; i < n; i++)
        total += before[i];
    uint64_t pages = (uint64_t)(total / (double)m->p.page_size);
    res->requested = pages;
    m->st.requested += pages;
    if (!pages)
        return 0;
    if (!budget_allows(m, pages * (uint64_t)m->p.page_size, now_usec)) {
        res->deferred = pages;
        m->st.deferred += pages;
        return 0;
    }
    if (!guard(procs, proc)) {
        note_exited(m, res);
        return 0;
    }
    int r = do_migrate(m, proc->key.pid, ids, n, to_node);
    if (r < 0)
        return whole_call_error(m, procs, proc, r, res);
    res->next = 1;
    m->st.migrate_calls++;
    /* charged what was asked: the kernel does the work either way */
    bucket_charge(m, pages * (uint64_t)m->p.page_size);
    if (bytes_per_node(m, proc->key.pid, ids, n, after) < 0)
        return 0;               /* gone meanwhile: what moved is unknown */
    for (unsigned i = 0; i < n; i++) {
        double d = before[i] - after[i];
        uint64_t moved = d > 0 ? (uint64_t)(d / (double)m->p.page_size) : 0;
        count_pair(m, ids[i], to_node, moved);
        res->moved += moved;
    }
    m->st.moved += res->moved;
    m->st.migrate_pages += res->moved;
    return 0;
}

/* ---- threads ------------------------------------------------------------------------- */

int nt_cpuset_parse(const char *list, cpu_set_t *out)
{
    CPU_ZERO(out);
    int count = 0;
    for (const char *p = list; p && *p;) {
        char *end;
        p += strspn(p, " \t\n");
        if (!*p)
            break;
        unsigned long lo = strtoul(p, &end, 10), hi = lo;
        if (end == p)
            return -EINVAL;
        if (*end == '-') {
            const char *q = end + 1;
            hi = strtoul(q, &end, 10);
            if (end == q || hi < lo)
                return -EINVAL;
        }
        if (hi >= CPU_SETSIZE)
            return -EINVAL;
        for (unsigned long c = lo; c <= hi; c++)
            CPU_SET((int)c, out);
        p = end + strspn(end, " \t\n");
        if (*p == ',')
            p++;
        else if (*p)
            return -EINVAL;
    }
    count = CPU_COUNT(out);
    return count;
}

void nt_cpuset_format(const cpu_set_t *set, char *buf, size_t len)
{
    if (len == 0)
        return;
    buf[0] = '\0';
    size_t pos = 0;
    for (int c = 0; c < CPU_SETSIZE && pos < len; c++) {
        if (!CPU_ISSET(c, set))
            continue;
        int last = c;
        while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, set))
            last++;
        int n = last > c ? snprintf(buf + pos, len - pos, "%s%d-%d", pos ? "," : "", c, last)
                         : snprintf(buf + pos, len - pos, "%s%d", pos ? "," : "", c);
        pos += n > 0 ? (size_t)n : 0;
        c = last;
    }
}

static struct aff_rec *aff_find_pid(const struct nt_mover *m, pid_t pid)
{
    for (size_t i = 0; i < m->nr_aff; i++)
        if (m->aff[i].pid == pid)
            return &m->aff[i];
    return NULL;
}

static void aff_drop(struct nt_mover *m, struct aff_rec *r)
{
    size_t i = (size_t)(r - m->aff);
    aff_release(r);
    memmove(&m->aff[i], &m->aff[i + 1], (m->nr_aff - i - 1) * sizeof(*m->aff));
    m->nr_aff--;
}

/* The record for proc, made (with the main thread's mask) on first use.
 * A record for the same pid but another instance is stale: replaced. */
static struct aff_rec *aff_get(struct nt_mover *m, const struct nt_proc *proc, int *err)
{
    struct aff_rec *r = aff_find_pid(m, proc->key.pid);
    if (r && r->id == proc->id && r->start_time == proc->key.start_time)
        return r;
    if (r)
        aff_drop(m, r);
    struct aff_rec rec = { .id = proc->id, .pid = proc->key.pid, .start_time = proc->key.start_time, .pidfd = -1 };
    if (sched_getaffinity(proc->key.pid, sizeof(rec.proc_orig), &rec.proc_orig) < 0) {
        *err = -errno;
        return NULL;
    }
    struct aff_rec *nv = realloc(m->aff, (m->nr_aff + 1) * sizeof(*nv));
    if (!nv) {
        *err = -ENOMEM;
        return NULL;
    }
    m->aff = nv;
    if (proc->pidfd >= 0)
        rec.pidfd = fcntl(proc->pidfd, F_DUPFD_CLOEXEC, 3);
    m->aff[m->nr_aff] = rec;
    return &m->aff[m->nr_aff++];
}

static struct thread_rec *thread_find(const struct aff_rec *r, pid_t tid)
{
    size_t lo = 0, hi = r->nr_threads;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->threads[mid].tid == tid)
            return &r->threads[mid];
        if (r->threads[mid].tid < tid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int thread_add(struct aff_rec *r, pid_t tid, const cpu_set_t *orig)
{
    if (r->nr_threads == r->cap_threads) {
        size_t cap = r->cap_threads ? 2 * r->cap_threads : 8;
        struct thread_rec *nv = realloc(r->threads, cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        r->threads = nv;
        r->cap_threads = cap;
    }
    size_t at = r->nr_threads;
    while (at > 0 && r->threads[at - 1].tid > tid)
        at--;
    memmove(&r->threads[at + 1], &r->threads[at], (r->nr_threads - at) * sizeof(*r->threads));
    r->threads[at] = (struct thread_rec){ .tid = tid, .orig = *orig };
    r->nr_threads++;
    return 0;
}

/* The tids in /proc/PID/task. -ESRCH if the process is gone. */
static int list_tids(pid_t pid, pid_t **out, size_t *n)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    _cleanup_closedir_ DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT ? -ESRCH : -errno;
    _cleanup_free_ pid_t *v = NULL;
    size_t k = 0, cap = 0;
    for (struct dirent *de; (de = readdir(d));) {
        unsigned tid;
        if (!nt_name_with_id(de->d_name, "", &tid))
            continue;
        if (k == cap) {
            cap = cap ? 2 * cap : 16;
            pid_t *nv = realloc(v, cap * sizeof(*nv));
            if (!nv)
                return -ENOMEM;
            v = nv;
        }
        v[k++] = (pid_t)tid;
    }
    *out = NT_TAKE_PTR(v);
    *n = k;
    return k ? 0 : -ESRCH;
}

/* What to restore a thread seen for the first time to. One whose mask is
 * what we set (now or before) inherited it from a thread we moved: it
 * gets the process's original. */
static cpu_set_t orig_for_new(const struct aff_rec *r, const cpu_set_t *cur, const cpu_set_t *prev_ours,
                              const cpu_set_t *target, bool first_pass)
{
    if ((prev_ours && CPU_EQUAL(cur, prev_ours)) || (!first_pass && CPU_EQUAL(cur, target)))
        return r->proc_orig;
    return *cur;
}

/* One pass over the task list. Returns threads changed, or -errno. */
static int affinity_pass(struct nt_mover *m, struct aff_rec *r, const cpu_set_t *cpus, const cpu_set_t *prev_ours,
                         bool first_pass)
{
    _cleanup_free_ pid_t *tids = NULL;
    size_t n;
    int r0 = list_tids(r->pid, &tids, &n);
    if (r0 < 0)
        return r0;
    int changed = 0;
    for (size_t i = 0; i < n; i++) {
        cpu_set_t cur;
        if (sched_getaffinity(tids[i], sizeof(cur), &cur) < 0)
            continue;                           /* the thread exited */
        struct thread_rec *t = thread_find(r, tids[i]);
        if (!t) {
            cpu_set_t orig = orig_for_new(r, &cur, prev_ours, cpus, first_pass);
            if (thread_add(r, tids[i], &orig) < 0)
                return -ENOMEM;
        }
        if (CPU_EQUAL(&cur, cpus))
            continue;
        if (m->p.setaffinity(tids[i], cpus, m->p.userdata) == 0) {
            changed++;
            continue;
        }
        int e = errno;
        if (e == ESRCH) {
            m->st.threads_exited++;
            continue;
        }
        m->st.threads_failed++;
        if (e == EINVAL || e == EPERM)
            return -e;                          /* the same for every thread */
    }
    return changed;
}

int nt_mover_move_threads(struct nt_mover *m, const struct nt_procs *procs, const struct nt_proc *proc,
                          const cpu_set_t *cpus)
{
    if (CPU_COUNT(cpus) == 0)
        return -EINVAL;
    if (!guard(procs, proc)) {
        m->st.exited++;
        return 0;
    }
    int err = 0;
    struct aff_rec *r = aff_get(m, proc, &err);
    if (!r)
        return err == -ESRCH ? 0 : err;
    bool had = r->nr_threads > 0;
    cpu_set_t prev = r->ours;
    r->ours = *cpus;            /* before the change, so is_ours never lags */
    int total = 0;
    for (unsigned pass = 0; pass < m->p.affinity_passes; pass++) {
        if (!nt_proc_still_same(procs, proc))
            break;
        int n = affinity_pass(m, r, cpus, had ? &prev : NULL, pass == 0);
        if (n == -ESRCH)
            break;
        if (n < 0)
            return n;
        total += n;
        if (n == 0)
            break;              /* stable: no thread left to change */
    }
    m->st.threads_moved += (uint64_t)total;
    return total;
}

/* Is r's process still the one recorded? */
static bool aff_alive(const struct aff_rec *r)
{
    struct pollfd pfd = { .fd = r->pidfd, .events = POLLIN };
    if (r->pidfd >= 0 && poll(&pfd, 1, 0) > 0)
        return false;
    unsigned flags;
    uint64_t start;
    return read_stat_ids(r->pid, &flags, &start) == 0 && start == r->start_time;
}

static int restore_rec(struct nt_mover *m, struct aff_rec *r)
{
    _cleanup_free_ pid_t *tids = NULL;
    size_t n;
    if (!aff_alive(r) || list_tids(r->pid, &tids, &n) < 0)
        return -ESRCH;
    int restored = 0;
    for (size_t i = 0; i < n; i++) {
        cpu_set_t cur;
        if (sched_getaffinity(tids[i], sizeof(cur), &cur) < 0)
            continue;
        if (!CPU_EQUAL(&cur, &r->ours)) {
            m->st.threads_user_changed++;       /* someone else's choice now */
            continue;
        }
        const struct thread_rec *t = thread_find(r, tids[i]);
        if (m->p.setaffinity(tids[i], t ? &t->orig : &r->proc_orig, m->p.userdata) == 0)
            restored++;
        else if (errno != ESRCH)
            m->st.threads_failed++;
    }
    m->st.threads_restored += (uint64_t)restored;
    return restored;
}

int nt_mover_restore(struct nt_mover *m, pid_t pid)
{
    struct aff_rec *r = aff_find_pid(m, pid);
    if (!r)
        return -ENOENT;
    int ret = restore_rec(m, r);
    aff_drop(m, r);
    return ret;
}

void nt_mover_restore_all(struct nt_mover *m)
{
    while (m->nr_aff) {
        int r = nt_mover_restore(m, m->aff[0].pid);
        if (r < 0 && r != -ESRCH)
            log_debug("mover: restoring affinity of %d: %s", (int)m->aff[0].pid, strerror(-r));
    }
}

int nt_mover_adopt(struct nt_mover *m, pid_t pid, uint64_t start_time, const cpu_set_t *ours,
                   const cpu_set_t *orig)
{
    struct aff_rec *r = aff_find_pid(m, pid);
    if (r && r->start_time == start_time)
        return 0;               /* this run made it: it knows each thread's own mask */
    unsigned flags;
    uint64_t start;
    if (read_stat_ids(pid, &flags, &start) < 0 || start != start_time)
        return -ESRCH;
    if (r)
        aff_drop(m, r);
    struct aff_rec *nv = realloc(m->aff, (m->nr_aff + 1) * sizeof(*nv));
    if (!nv)
        return -ENOMEM;
    m->aff = nv;
    /* No thread records: restore gives every thread still at ours the
     * process's mask from before. */
    m->aff[m->nr_aff++] = (struct aff_rec){ .pid = pid, .start_time = start_time, .pidfd = -1,
                                            .proc_orig = *orig, .ours = *ours };
    return 0;
}

bool nt_mover_affinity_is_ours(const struct nt_mover *m, pid_t pid, const cpu_set_t *current)
{
    const struct aff_rec *r = aff_find_pid(m, pid);
    return r && CPU_EQUAL(current, &r->ours);
}

void nt_mover_forget(struct nt_mover *m, uint32_t proc_id)
{
    retry_remove_id(m, proc_id);
    for (size_t i = 0; i < m->nr_aff; i++)
        if (m->aff[i].id == proc_id) {
            aff_drop(m, &m->aff[i]);
            return;
        }
}

/* ---- status -------------------------------------------------------------------------- */

void nt_mover_get_stats(const struct nt_mover *m, struct nt_mover_stats *out)
{
    *out = m->st;
    out->retry_queued = m->nr_retry;
    out->pairs = m->pairs;
    out->nr_pairs = m->nr_pairs;
}

static void add_u64(struct json_object *o, const char *k, uint64_t v)
{
    json_object_object_add(o, k, json_object_new_uint64(v));
}

static struct json_object *pages_json(const struct nt_mover_stats *s)
{
    struct json_object *o = json_object_new_object();
    add_u64(o, "requested", s->requested);
    add_u64(o, "moved", s->moved);
    add_u64(o, "already", s->already);
    add_u64(o, "fallback", s->fallback);
    add_u64(o, "deferred", s->deferred);
    return o;
}

static struct json_object *failures_json(const struct nt_mover_stats *s)
{
    struct json_object *o = json_object_new_object();
    for (int e = 0; e < NT_MOVER_NR_ERR; e++)
        add_u64(o, err_names[e], s->fail[e]);
    return o;
}

static struct json_object *pairs_json(const struct nt_mover_stats *s)
{
    struct json_object *a = json_object_new_array();
    for (size_t i = 0; i < s->nr_pairs; i++) {
        struct json_object *p = json_object_new_object();
        json_object_object_add(p, "from", json_object_new_int(s->pairs[i].from));
        json_object_object_add(p, "to", json_object_new_int(s->pairs[i].to));
        add_u64(p, "pages", s->pairs[i].pages);
        json_object_array_add(a, p);
    }
    return a;
}

static struct json_object *threads_json(const struct nt_mover *m, const struct nt_mover_stats *s)
{
    struct json_object *o = json_object_new_object();
    add_u64(o, "moved", s->threads_moved);
    add_u64(o, "restored", s->threads_restored);
    add_u64(o, "failed", s->threads_failed);
    add_u64(o, "exited", s->threads_exited);
    add_u64(o, "user_changed", s->threads_user_changed);
    add_u64(o, "procs_pinned", m->nr_aff);
    return o;
}

static struct json_object *budget_json(const struct nt_mover *m)
{
    struct json_object *o = json_object_new_object();
    add_u64(o, "bytes_per_sec", m->p.budget_bytes_per_sec);
    add_u64(o, "burst_bytes", (uint64_t)bucket_size(m));
    if (m->p.budget_bytes_per_sec)
        json_object_object_add(o, "available_bytes",
                               json_object_new_int64(m->bucket_started ? m->tokens : bucket_size(m)));
    else
        json_object_object_add(o, "available_bytes", NULL);
    return o;
}

struct json_object *nt_mover_stats_json(const struct nt_mover *m)
{
    struct nt_mover_stats s;
    nt_mover_get_stats(m, &s);
    struct json_object *o = json_object_new_object(), *retry = json_object_new_object(),
                       *mig = json_object_new_object();
    if (!o || !retry || !mig) {
        json_object_put(o);
        json_object_put(retry);
        json_object_put(mig);
        return NULL;
    }
    json_object_object_add(o, "pages", pages_json(&s));
    json_object_object_add(o, "failures", failures_json(&s));
    json_object_object_add(o, "pairs", pairs_json(&s));
    add_u64(retry, "queued", s.retry_queued);
    add_u64(retry, "retried", s.retries);
    add_u64(retry, "gave_up", s.retry_gave_up);
    json_object_object_add(o, "retry", retry);
    add_u64(o, "exited", s.exited);
    add_u64(mig, "calls", s.migrate_calls);
    add_u64(mig, "pages", s.migrate_pages);
    json_object_object_add(o, "migrate", mig);
    json_object_object_add(o, "threads", threads_json(m, &s));
    json_object_object_add(o, "budget", budget_json(m));
    return o;
}
