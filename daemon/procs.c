/* Watched processes: scan /proc below a root, apply the [procs] selection
 * (policy/select.c), and hold each watched process by pidfd plus start
 * time, so a recycled PID is never taken for the process we chose.
 *
 * A scan reads stat, statm and cgroup of every process (kernel threads:
 * stat only), then the threads of the watched ones. Everything from the
 * last scan is kept as "seen" for CPU deltas and for explaining verdicts. */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "numatier/config.h"
#include "numatier/log.h"
#include "numatier/procs.h"
#include "numatier/select.h"
#include "numatier/topology.h"
#include "numatier/util.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* stat fields we use, by their number in proc(5). */
#define F_STATE      3
#define F_PPID       4
#define F_FLAGS      9
#define F_UTIME      14
#define F_STIME      15
#define F_STARTTIME  22
#define F_PROCESSOR  39
#define F_MAX        F_PROCESSOR

struct stat_fields {
    char comm[16];
    char state;
    pid_t ppid;
    unsigned flags;
    uint64_t ticks;             /* utime + stime */
    uint64_t start_time;
    int processor;              /* -1 if the line is too short */
};

/* One process of a scan, selected or not. Also what "seen" keeps. */
struct cand {
    pid_t pid;
    struct stat_fields st;
    uint64_t rss_bytes;
    double cpu_pct;
    char *cgroup;
    enum nt_select_reason reason;
    bool kept;                  /* an already-watched instance that stays */
};

struct nt_procs {
    char *root;
    bool live;                  /* root is "/": hold pidfds */
    pid_t self;
    long clk_tck, page_size;
    uint32_t next_id;
    struct nt_proc *watched;    /* sorted by pid */
    size_t nr_watched;
    const struct nt_proc **by_id;   /* the same, sorted by id */
    struct cand *seen;          /* the last scan, sorted by pid */
    size_t nr_seen;
    uint64_t last_scan_usec;
    bool warned_pidfd;
    struct nt_procs_stats stats;
};

/* ---- reading /proc/PID --------------------------------------------------------- */

/* A process that is gone shows as ENOENT, or ESRCH mid-read. */
static bool vanished(int r)
{
    return r == -ENOENT || r == -ESRCH;
}

static int read_pid_file(const struct nt_procs *p, pid_t pid, pid_t tid, const char *name, char **out)
{
    char path[96];
    if (tid)
        snprintf(path, sizeof(path), "/proc/%d/task/%d/%s", (int)pid, (int)tid, name);
    else
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
    return nt_read_file(p->root, path, out);
}

/* Split what follows the comm into fields; f[k] is field number k. */
static int split_fields(char *rest, char **f, int max)
{
    int n = F_STATE;
    for (char *save = NULL, *t = strtok_r(rest, " \n", &save); t && n <= max;
         t = strtok_r(NULL, " \n", &save))
        f[n++] = t;
    return n;
}

/* comm may hold blanks and parentheses: it runs from the first '(' to the
 * last ')'. */
static int parse_stat(char *line, struct stat_fields *st)
{
    char *open = strchr(line, '('), *close = strrchr(line, ')');
    if (!open || !close || close < open)
        return -EINVAL;
    size_t len = (size_t)(close - open - 1);
    if (len >= sizeof(st->comm))
        len = sizeof(st->comm) - 1;
    memcpy(st->comm, open + 1, len);
    st->comm[len] = '\0';

    char *f[F_MAX + 1] = { 0 };
    int n = split_fields(close + 1, f, F_MAX);
    if (n <= F_STARTTIME)
        return -EINVAL;
    st->state = f[F_STATE][0];
    st->ppid = (pid_t)strtol(f[F_PPID], NULL, 10);
    st->flags = (unsigned)strtoul(f[F_FLAGS], NULL, 10);
    st->ticks = strtoull(f[F_UTIME], NULL, 10) + strtoull(f[F_STIME], NULL, 10);
    st->start_time = strtoull(f[F_STARTTIME], NULL, 10);
    st->processor = n > F_PROCESSOR ? (int)strtol(f[F_PROCESSOR], NULL, 10) : -1;
    return 0;
}

static int read_stat(const struct nt_procs *p, pid_t pid, pid_t tid, struct stat_fields *st)
{
    _cleanup_free_ char *buf = NULL;
    int r = read_pid_file(p, pid, tid, "stat", &buf);
    return r < 0 ? r : parse_stat(buf, st);
}

/* Resident pages are statm's second field. */
static int read_rss(const struct nt_procs *p, pid_t pid, uint64_t *bytes)
{
    _cleanup_free_ char *buf = NULL;
    int r = read_pid_file(p, pid, 0, "statm", &buf);
    if (r < 0)
        return r;
    unsigned long long size, resident;
    if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return -EINVAL;
    *bytes = resident * (uint64_t)p->page_size;
    return 0;
}

/* The cgroup v2 path from the "0::/path" line; NULL (not an error) on a
 * v1-only system. */
static int read_cgroup(const struct nt_procs *p, pid_t pid, char **path)
{
    _cleanup_free_ char *buf = NULL;
    int r = read_pid_file(p, pid, 0, "cgroup", &buf);
    if (r < 0)
        return r;
    *path = NULL;
    for (char *line = buf; line && *line;) {
        char *eol = strchr(line, '\n');
        if (strncmp(line, "0::", 3) == 0) {
            *path = strndup(line + 3, eol ? (size_t)(eol - line - 3) : strlen(line + 3));
            return *path ? 0 : -ENOMEM;
        }
        line = eol ? eol + 1 : NULL;
    }
    return 0;
}

static bool is_kernel_thread(const struct stat_fields *st)
{
    return (st->flags & NT_PF_KTHREAD) || st->ppid == NT_KTHREADD_PID;
}

/* Zombies have no memory left to place. */
static bool is_dead(const struct stat_fields *st)
{
    return st->state == 'Z' || st->state == 'X' || st->state == 'x';
}

/* Read one process. Kernel threads stop after stat: their verdict is
 * settled and they have no user memory. */
static int read_cand(const struct nt_procs *p, pid_t pid, struct cand *c)
{
    *c = (struct cand){ .pid = pid };
    int r = read_stat(p, pid, 0, &c->st);
    if (r < 0)
        return r;
    if (is_dead(&c->st))
        return -ESRCH;
    if (is_kernel_thread(&c->st))
        return 0;
    r = read_rss(p, pid, &c->rss_bytes);
    if (r >= 0)
        r = read_cgroup(p, pid, &c->cgroup);
    return r;
}

/* ---- pidfds ------------------------------------------------------------------- */

/* An exited process makes its pidfd readable. */
static bool pidfd_exited(int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    return fd >= 0 && poll(&pfd, 1, 0) > 0;
}

/* Open a pidfd for pid and check it names the instance we read: the PID
 * may have been recycled between reading stat and opening. -ESRCH if it
 * did or the process is gone; *fd = -1 if pidfds are unavailable. */
static int hold(struct nt_procs *p, pid_t pid, uint64_t start_time, int *fd)
{
    *fd = -1;
    if (!p->live)
        return 0;
    _cleanup_close_ int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd < 0) {
        if (errno == ESRCH)
            return -ESRCH;
        if (!p->warned_pidfd)
            log_warning("pidfd_open(%d): %m; PID reuse is caught only by start time", (int)pid);
        p->warned_pidfd = true;
    }
    struct stat_fields st;
    int r = read_stat(p, pid, 0, &st);
    if (vanished(r) || (r == 0 && (st.start_time != start_time || is_dead(&st))))
        return -ESRCH;
    *fd = NT_TAKE_FD(pfd);
    return 0;
}

bool nt_proc_still_same(const struct nt_procs *p, const struct nt_proc *proc)
{
    if (pidfd_exited(proc->pidfd))
        return false;
    struct stat_fields st;
    return read_stat(p, proc->key.pid, 0, &st) == 0 && st.start_time == proc->key.start_time &&
           !is_dead(&st);
}

/* ---- threads ------------------------------------------------------------------ */

static int by_tid(const void *x, const void *y)
{
    const struct nt_thread *a = x, *b = y;
    return (a->tid > b->tid) - (a->tid < b->tid);
}

/* Each thread's last CPU (stat field 39) and that CPU's node. A thread
 * that exits meanwhile is just left out; a missing task directory means
 * the whole process is gone. */
static int read_threads(const struct nt_procs *p, pid_t pid, const struct nt_topology *topo,
                        struct nt_thread **out, unsigned *nr)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    _cleanup_closedir_ DIR *d = nt_opendir_below(p->root, path);
    if (!d)
        return -errno;
    _cleanup_free_ struct nt_thread *v = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *de; (de = readdir(d));) {
        unsigned tid;
        struct stat_fields st;
        if (!nt_name_with_id(de->d_name, "", &tid) || read_stat(p, pid, (pid_t)tid, &st) < 0)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            struct nt_thread *nv = realloc(v, cap * sizeof(*v));
            if (!nv)
                return -ENOMEM;
            v = nv;
        }
        int node = topo && st.processor >= 0 ? nt_topology_cpu_node(topo, st.processor) : -1;
        v[n++] = (struct nt_thread){ .tid = (pid_t)tid, .cpu = st.processor, .node = node };
    }
    if (n == 0)
        return -ESRCH;                    /* every thread gone: so is the process */
    qsort(v, n, sizeof(*v), by_tid);
    *out = NT_TAKE_PTR(v);
    *nr = (unsigned)n;
    return 0;
}

/* ---- listing ------------------------------------------------------------------- */

static void cands_free(struct cand *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i].cgroup);
    free(v);
}

static int by_cand_pid(const void *x, const void *y)
{
    const struct cand *a = x, *b = y;
    return (a->pid > b->pid) - (a->pid < b->pid);
}

static struct cand *cand_find(struct cand *v, size_t n, pid_t pid)
{
    struct cand key = { .pid = pid };
    return n ? bsearch(&key, v, n, sizeof(*v), by_cand_pid) : NULL;
}

static int cands_grow(struct cand **v, size_t n, size_t *cap)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? 2 * *cap : 256;
    struct cand *nv = realloc(*v, ncap * sizeof(**v));
    if (!nv)
        return -ENOMEM;
    *v = nv;
    *cap = ncap;
    return 0;
}

/* Every process below root, sorted by pid. Those that vanish while being
 * read are counted and left out; zombies are left out silently. */
static int list_cands(struct nt_procs *p, struct cand **out, size_t *nout)
{
    _cleanup_closedir_ DIR *d = nt_opendir_below(p->root, "/proc");
    if (!d)
        return -errno;
    struct cand *v = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *de; (de = readdir(d));) {
        unsigned pid;
        if (!nt_name_with_id(de->d_name, "", &pid) || pid == 0)
            continue;
        if (cands_grow(&v, n, &cap) < 0) {
            cands_free(v, n);
            return -ENOMEM;
        }
        int r = read_cand(p, (pid_t)pid, &v[n]);
        if (r == 0) {
            n++;
            continue;
        }
        free(v[n].cgroup);
        bool zombie = r == -ESRCH && is_dead(&v[n].st);
        if (vanished(r) && !zombie)
            p->stats.exited_mid_cycle++;
        else if (r == -ENOMEM) {
            cands_free(v, n);
            return r;
        } else if (!zombie) {
            log_debug("procs: skipping pid %u: %s", pid, strerror(-r));
        }
    }
    if (n)
        qsort(v, n, sizeof(*v), by_cand_pid);
    *out = v;
    *nout = n;
    return 0;
}

static double read_uptime_sec(const struct nt_procs *p)
{
    _cleanup_free_ char *buf = NULL;
    return nt_read_file(p->root, "/proc/uptime", &buf) < 0 ? 0 : strtod(buf, NULL);
}

/* CPU% from the tick delta since the last scan; on first sight, the
 * average over the process's lifetime, so min_cpu can apply at once. */
static void set_cpu_pct(const struct nt_procs *p, struct cand *c, uint64_t now_usec, double uptime)
{
    const struct cand *prev = cand_find(p->seen, p->nr_seen, c->pid);
    double hz = (double)p->clk_tck, secs;
    uint64_t ticks;
    if (prev && prev->st.start_time == c->st.start_time && now_usec > p->last_scan_usec) {
        secs = (double)(now_usec - p->last_scan_usec) / 1e6;
        ticks = c->st.ticks > prev->st.ticks ? c->st.ticks - prev->st.ticks : 0;
    } else {
        secs = uptime - (double)c->st.start_time / hz;
        ticks = c->st.ticks;
    }
    c->cpu_pct = secs > 0 ? (double)ticks / hz / secs * 100.0 : 0.0;
}

static int select_cands(const struct nt_procs *p, const struct nt_config *cfg, struct cand *c, size_t n)
{
    struct nt_select_rules rules;
    nt_select_rules_from_config(&rules, cfg, p->self);
    _cleanup_free_ struct nt_proc_info *info = calloc(n ? n : 1, sizeof(*info));
    if (!info)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        info[i] = (struct nt_proc_info){
            .pid = c[i].pid,
            .ppid = c[i].st.ppid,
            .comm = c[i].st.comm,
            .cgroup = c[i].cgroup,
            .rss_bytes = c[i].rss_bytes,
            .cpu_pct = c[i].cpu_pct,
            .kernel_thread = c[i].st.flags & NT_PF_KTHREAD,
        };
    int r = nt_select_apply(&rules, info, n);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        c[i].reason = info[i].reason;
    return r;
}

/* ---- the watched set ------------------------------------------------------------ */

static void proc_release(struct nt_proc *w)
{
    if (w->pidfd >= 0)
        close(w->pidfd);
    free(w->cgroup);
    free(w->threads);
    *w = (struct nt_proc){ .pidfd = -1 };
}

static int by_proc_pid(const void *x, const void *y)
{
    const struct nt_proc *a = x, *b = y;
    return (a->key.pid > b->key.pid) - (a->key.pid < b->key.pid);
}

static int by_id_of(const void *x, const void *y)
{
    uint32_t a = (*(const struct nt_proc *const *)x)->id, b = (*(const struct nt_proc *const *)y)->id;
    return (a > b) - (a < b);
}

/* Copy this scan's facts into a watched process. */
static int refresh_proc(struct nt_proc *w, const struct cand *c)
{
    char *cg = c->cgroup ? strdup(c->cgroup) : NULL;
    if (c->cgroup && !cg)
        return -ENOMEM;
    free(w->cgroup);
    w->cgroup = cg;
    memcpy(w->comm, c->st.comm, sizeof(w->comm));
    w->rss_bytes = c->rss_bytes;
    w->cpu_pct = c->cpu_pct;
    w->cpu_ticks = c->st.ticks;
    return 0;
}

enum fate { KEEP, EXITED, REUSED, DROPPED };

/* What becomes of a watched process given this scan's entry for its pid. */
static enum fate fate_of(const struct nt_proc *w, const struct cand *c)
{
    if (!c)
        return EXITED;
    if (c->st.start_time != w->key.start_time)
        return REUSED;
    if (pidfd_exited(w->pidfd))
        return EXITED;
    return c->reason == NT_SELECT_WATCHED ? KEEP : DROPPED;
}

struct sets {
    struct nt_proc *next;       /* the new watched set */
    size_t nr_next;
    struct nt_proc *gone;       /* removed from the watched set, to report */
    size_t nr_gone;
    uint32_t first_new_id;      /* ids from here on were added in this scan */
};

static void sort_old(struct nt_procs *p, struct cand *c, size_t n, struct sets *s)
{
    for (size_t i = 0; i < p->nr_watched; i++) {
        struct nt_proc *w = &p->watched[i];
        struct cand *m = cand_find(c, n, w->key.pid);
        enum fate f = fate_of(w, m);
        if (f == KEEP && refresh_proc(w, m) == 0) {
            m->kept = true;
            s->next[s->nr_next++] = *w;
            continue;
        }
        p->stats.exited_mid_cycle += f == EXITED;
        p->stats.reused_pids += f == REUSED;
        s->gone[s->nr_gone++] = *w;
    }
}

static void add_new(struct nt_procs *p, struct cand *c, size_t n, struct sets *s)
{
    for (size_t i = 0; i < n; i++) {
        if (c[i].reason != NT_SELECT_WATCHED || c[i].kept)
            continue;
        struct nt_proc w = { .key = { c[i].pid, c[i].st.start_time }, .pidfd = -1 };
        if (hold(p, c[i].pid, c[i].st.start_time, &w.pidfd) < 0) {
            p->stats.exited_mid_cycle++;
            continue;
        }
        if (refresh_proc(&w, &c[i]) < 0) {
            proc_release(&w);
            continue;
        }
        w.id = p->next_id++;
        s->next[s->nr_next++] = w;
    }
}

/* Threads of every process in the new set. One whose threads are all
 * gone has exited: a new one silently, a kept one as a removal. */
static void read_all_threads(struct nt_procs *p, const struct nt_topology *topo, struct sets *s)
{
    size_t k = 0;
    for (size_t i = 0; i < s->nr_next; i++) {
        struct nt_proc *w = &s->next[i];
        struct nt_thread *t = NULL;
        unsigned nt = 0;
        int r = read_threads(p, w->key.pid, topo, &t, &nt);
        if (r == 0) {
            free(w->threads);
            w->threads = t;
            w->nr_threads = nt;
        } else if (vanished(r)) {
            p->stats.exited_mid_cycle++;
            if (w->id >= s->first_new_id)
                proc_release(w);
            else
                s->gone[s->nr_gone++] = *w;
            continue;
        }
        s->next[k++] = *w;
    }
    s->nr_next = k;
}

static void report(struct nt_procs *p, struct sets *s, nt_proc_change_fn fn, void *userdata)
{
    /* Removals first: a recycled pid's old instance must be unwatched
     * before the new one is watched. */
    for (size_t i = 0; i < s->nr_gone; i++) {
        if (fn)
            fn(&s->gone[i], false, userdata);
        p->stats.removed++;
    }
    for (size_t i = 0; i < p->nr_watched; i++) {
        if (p->watched[i].id < s->first_new_id)
            continue;
        if (fn)
            fn(&p->watched[i], true, userdata);
        p->stats.added++;
    }
}

static int reconcile(struct nt_procs *p, struct cand *c, size_t n, const struct nt_topology *topo,
                     nt_proc_change_fn fn, void *userdata)
{
    size_t selected = 0;
    for (size_t i = 0; i < n; i++)
        selected += c[i].reason == NT_SELECT_WATCHED;
    struct sets s = { .first_new_id = p->next_id };
    s.next = calloc(selected + p->nr_watched + 1, sizeof(*s.next));
    s.gone = calloc(selected + p->nr_watched + 1, sizeof(*s.gone));
    const struct nt_proc **by_id = calloc(selected + p->nr_watched + 1, sizeof(*by_id));
    if (!s.next || !s.gone || !by_id) {
        free(s.next);
        free(s.gone);
        free(by_id);
        return -ENOMEM;
    }
    sort_old(p, c, n, &s);
    add_new(p, c, n, &s);
    read_all_threads(p, topo, &s);
    qsort(s.next, s.nr_next, sizeof(*s.next), by_proc_pid);

    free(p->watched);
    p->watched = s.next;
    p->nr_watched = s.nr_next;
    for (size_t i = 0; i < s.nr_next; i++)
        by_id[i] = &s.next[i];
    qsort(by_id, s.nr_next, sizeof(*by_id), by_id_of);
    free(p->by_id);
    p->by_id = by_id;
    report(p, &s, fn, userdata);
    for (size_t i = 0; i < s.nr_gone; i++)
        proc_release(&s.gone[i]);
    free(s.gone);
    return 0;
}

/* ---- public ----------------------------------------------------------------------- */

int nt_procs_new(const char *root, pid_t self, struct nt_procs **out)
{
    _cleanup_free_ struct nt_procs *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->root = strdup(root && *root ? root : "/");
    if (!p->root)
        return -ENOMEM;
    p->live = strcmp(p->root, "/") == 0;
    p->self = self;
    p->clk_tck = sysconf(_SC_CLK_TCK);
    p->page_size = sysconf(_SC_PAGESIZE);
    if (p->clk_tck <= 0)
        p->clk_tck = 100;
    if (p->page_size <= 0)
        p->page_size = 4096;
    p->next_id = 1;
    *out = NT_TAKE_PTR(p);
    return 0;
}

void nt_procs_free(struct nt_procs *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nr_watched; i++)
        proc_release(&p->watched[i]);
    free(p->watched);
    free(p->by_id);
    cands_free(p->seen, p->nr_seen);
    free(p->root);
    free(p);
}

int nt_procs_scan(struct nt_procs *p, const struct nt_config *cfg, const struct nt_topology *topo,
                  uint64_t now_usec, nt_proc_change_fn fn, void *userdata)
{
    struct cand *c = NULL;
    size_t n = 0;
    int r = list_cands(p, &c, &n);
    if (r < 0)
        return r;
    double uptime = read_uptime_sec(p);
    for (size_t i = 0; i < n; i++)
        set_cpu_pct(p, &c[i], now_usec, uptime);
    r = select_cands(p, cfg, c, n);
    if (r >= 0)
        r = reconcile(p, c, n, topo, fn, userdata);
    if (r < 0) {
        cands_free(c, n);
        return r;
    }
    cands_free(p->seen, p->nr_seen);
    p->seen = c;
    p->nr_seen = n;
    p->last_scan_usec = now_usec;
    p->stats.scans++;
    return 0;
}

const struct nt_proc *nt_procs_list(const struct nt_procs *p, size_t *n)
{
    *n = p->nr_watched;
    return p->watched;
}

const struct nt_proc *nt_procs_find(const struct nt_procs *p, pid_t pid)
{
    struct nt_proc key = { .key.pid = pid };
    return p->nr_watched ? bsearch(&key, p->watched, p->nr_watched, sizeof(key), by_proc_pid) : NULL;
}

const struct nt_proc *nt_procs_find_id(const struct nt_procs *p, uint32_t id)
{
    struct nt_proc key = { .id = id };
    const struct nt_proc *kp = &key;
    const struct nt_proc *const *hit =
        p->nr_watched ? bsearch(&kp, p->by_id, p->nr_watched, sizeof(*p->by_id), by_id_of) : NULL;
    return hit ? *hit : NULL;
}

uint64_t nt_proc_thread_nodes(const struct nt_proc *proc)
{
    uint64_t mask = 0;
    for (unsigned i = 0; i < proc->nr_threads; i++)
        if (proc->threads[i].node >= 0 && proc->threads[i].node < 64)
            mask |= UINT64_C(1) << proc->threads[i].node;
    return mask;
}

int nt_procs_explain(const struct nt_procs *p, const struct nt_config *cfg, pid_t pid, char *buf, size_t len)
{
    const struct cand *c = cand_find(p->seen, p->nr_seen, pid);
    if (!c)
        return -ESRCH;
    struct nt_select_rules rules;
    nt_select_rules_from_config(&rules, cfg, p->self);
    struct nt_proc_info info = {
        .pid = c->pid, .ppid = c->st.ppid, .comm = c->st.comm, .cgroup = c->cgroup,
        .rss_bytes = c->rss_bytes, .cpu_pct = c->cpu_pct,
        .kernel_thread = c->st.flags & NT_PF_KTHREAD, .reason = c->reason,
    };
    nt_select_explain(&rules, &info, buf, len);
    return 0;
}

void nt_procs_get_stats(const struct nt_procs *p, struct nt_procs_stats *out)
{
    *out = p->stats;
}
