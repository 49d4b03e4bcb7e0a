/* The DAMON sampler backend: one kdamond of ours, driven through
 * /sys/kernel/mm/damon/admin/kdamonds (see include/numatier/damon.h for the
 * layout and why it is one kdamond).
 *
 * Kernel behaviour this relies on, checked on 6.12 (tests/vm/scenarios/
 * damon-sysfs.sh proves it in a guest):
 *  - writing nr_kdamonds, nr_targets, nr_schemes or nr_filters recreates
 *    every directory below it with defaults; nr_kdamonds is EBUSY while any
 *    kdamond runs;
 *  - `on` with a dead pid is EINVAL; `on` with no targets "succeeds" and
 *    the kdamond stays off;
 *  - `commit` with a dead pid returns success but DAMON drops the kdamond:
 *    re-read state after every commit;
 *  - a kdamond whose targets all exited turns itself off;
 *  - `commit`, `update_schemes_tried_regions` and reading `state` are EBUSY
 *    while any DAMON sysfs request is in flight (damon_sysfs_lock is held
 *    for a whole tried-regions update, whoever asked for it);
 *  - a target whose pid changes in place keeps its old regions until the
 *    next ops update (update_us), but their counts come from the new
 *    process from the next aggregation interval on. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "numatier/config.h"
#include "numatier/damon.h"
#include "numatier/log.h"
#include "numatier/util.h"

#define REL_MAX 256              /* our sysfs paths are short */
#define CTX "contexts/0"

struct nt_damon {
    char *root;
    unsigned index;              /* kdamonds/INDEX is ours */
    char kd[64];                 /* NT_DAMON_KDAMONDS "/INDEX" */
    struct nt_damon_params p;
    nt_damon_write_hook hook;
    void *hook_userdata;
    bool created;                /* we raised nr_kdamonds from 0 */
    bool on;
    pid_t kpid;                  /* the kdamond thread while on */
    /* What the kdamond runs: target i, and scheme i that reports it. */
    pid_t targets[NT_DAMON_MAX_TARGETS];
    size_t nr_targets;
    /* What the sysfs files hold, for the next `on` or `commit`. */
    pid_t files[NT_DAMON_MAX_TARGETS];
    size_t nr_files;
    size_t nr_schemes;
    bool pending;                /* the files differ from what runs */
};

/* What one kdamond directory says. */
struct kd_info {
    bool on;
    pid_t pid;
};

/* ---- small sysfs helpers ------------------------------------------------- */

static void why_set(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void why_set(char *why, size_t len, const char *fmt, ...)
{
    if (!why || len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
}

/* A kdamond file path: NT_DAMON_KDAMONDS "/INDEX/" rest. */
static const char *kd_path(char buf[static REL_MAX], const struct nt_damon *d, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static const char *kd_path(char buf[static REL_MAX], const struct nt_damon *d, const char *fmt, ...)
{
    int n = snprintf(buf, REL_MAX, "%s/", d->kd);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, REL_MAX - (size_t)n, fmt, ap);
    va_end(ap);
    return buf;
}

/* sysfs takes a value in one write(); a short write is a failure. */
static int attr_write(const struct nt_damon *d, const char *path, const char *value)
{
    if (d->hook) {
        int r = d->hook(path, value, false, d->hook_userdata);
        if (r < 0)
            return r;
    }
    int r = nt_write_file(d->root, path, value);
    if (r < 0)
        return r;
    if (d->hook)
        d->hook(path, value, true, d->hook_userdata);
    return 0;
}

static int attr_write_u64(const struct nt_damon *d, const char *path, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    return attr_write(d, path, buf);
}

/* `state` and `pid` are EBUSY while any DAMON request is in flight (up to
 * two aggregation intervals): wait that out, up to about 2 s. */
static int read_busy_retry(const char *root, const char *path, char **out)
{
    for (int i = 0;; i++) {
        int r = nt_read_file(root, path, out);
        if (r != -EBUSY || i >= 100)
            return r;
        nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000 * 1000 }, NULL);
    }
}

static int read_kdamond(const char *root, unsigned idx, struct kd_info *out)
{
    char path[REL_MAX];
    _cleanup_free_ char *state = NULL, *pid = NULL;
    snprintf(path, sizeof(path), NT_DAMON_KDAMONDS "/%u/state", idx);
    int r = read_busy_retry(root, path, &state);
    if (r < 0)
        return r;
    snprintf(path, sizeof(path), NT_DAMON_KDAMONDS "/%u/pid", idx);
    r = read_busy_retry(root, path, &pid);
    if (r < 0)
        return r;
    out->on = strcmp(state, "on") == 0;
    out->pid = (pid_t)strtol(pid, NULL, 10);
    return 0;
}

/* Every kdamond directory, in index order. */
static int list_kdamonds(const char *root, struct kd_info **out, size_t *n)
{
    uint64_t nr;
    int r = nt_read_u64(root, NT_DAMON_KDAMONDS "/nr_kdamonds", &nr);
    if (r < 0)
        return r;
    if (nr > 4096)
        return -EINVAL;
    _cleanup_free_ struct kd_info *v = calloc(nr ? nr : 1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (unsigned i = 0; i < nr; i++) {
        r = read_kdamond(root, i, &v[i]);
        if (r < 0)
            return r;
    }
    *out = NT_TAKE_PTR(v);
    *n = nr;
    return 0;
}

static bool pid_alive(const char *root, pid_t pid)
{
    char path[32];
    snprintf(path, sizeof(path), "/proc/%d", (int)pid);
    _cleanup_free_ char *full = nt_path_join(root, path);
    struct stat st;
    return full && stat(full, &st) == 0;
}

/* ---- the state file: which kdamond is ours ------------------------------- */

static int read_state_file(const char *root, unsigned *idx, pid_t *pid)
{
    _cleanup_free_ char *s = NULL;
    int r = nt_read_file(root, NT_DAMON_STATE_FILE, &s);
    if (r < 0)
        return r;
    long k = -1, p = 0;
    for (char *save = NULL, *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *end;
        if (strncmp(line, "kdamond=", 8) == 0) {
            k = strtol(line + 8, &end, 10);
            if (end == line + 8 || *end)
                return -EINVAL;
        } else if (strncmp(line, "pid=", 4) == 0) {
            p = strtol(line + 4, &end, 10);
            if (end == line + 4 || *end)
                return -EINVAL;
        }
    }
    if (k < 0 || k > INT_MAX || p <= 0 || p > INT_MAX)
        return -EINVAL;
    *idx = (unsigned)k;
    *pid = (pid_t)p;
    return 0;
}

static int mkdir_below(const char *root, const char *path)
{
    _cleanup_free_ char *full = nt_path_join(root, path);
    if (!full)
        return -ENOMEM;
    return mkdir(full, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

/* Replaced atomically, so a crash never leaves half a record. */
static int write_state_file(const char *root, unsigned idx, pid_t pid)
{
    int r = mkdir_below(root, "/run");
    if (r == 0)
        r = mkdir_below(root, "/run/numatier");
    if (r < 0)
        return r;
    _cleanup_free_ char *path = nt_path_join(root, NT_DAMON_STATE_FILE);
    _cleanup_free_ char *tmp = nt_path_join(root, NT_DAMON_STATE_FILE ".tmp");
    if (!path || !tmp)
        return -ENOMEM;
    _cleanup_fclose_ FILE *f = fopen(tmp, "we");
    if (!f)
        return -errno;
    fprintf(f, "kdamond=%u\npid=%d\n", idx, (int)pid);
    r = fflush(f) == 0 && !ferror(f) ? 0 : -EIO;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0)
        unlink(tmp);
    return r;
}

static void remove_state_file(const char *root)
{
    _cleanup_free_ char *path = nt_path_join(root, NT_DAMON_STATE_FILE);
    if (path)
        unlink(path);
}

/* The kdamond a previous numatierd recorded, if it still runs as recorded:
 * a running kdamond with another pid was restarted by someone else. */
static bool stale_is_ours(const char *root, const struct kd_info *kds, size_t n, unsigned *idx)
{
    pid_t pid;
    if (read_state_file(root, idx, &pid) < 0 || *idx >= n)
        return false;
    return kds[*idx].on && kds[*idx].pid == pid;
}

/* ---- probe ----------------------------------------------------------------- */

static int probe_files(const char *root, char *why, size_t len)
{
    _cleanup_free_ char *dir = nt_path_join(root, NT_DAMON_DIR);
    _cleanup_free_ char *nr = nt_path_join(root, NT_DAMON_KDAMONDS "/nr_kdamonds");
    if (!dir || !nr)
        return -ENOMEM;
    struct stat st;
    if (stat(dir, &st) < 0 && errno == ENOENT) {
        why_set(why, len, "DAMON sysfs interface absent: no " NT_DAMON_DIR " (kernel built without "
                "CONFIG_DAMON_SYSFS; Debian 12's 6.1 kernel has none)");
        return -ENODEV;
    }
    if (stat(nr, &st) < 0 && errno == ENOENT) {
        why_set(why, len, "DAMON sysfs interface incomplete: no " NT_DAMON_KDAMONDS "/nr_kdamonds");
        return -ENODEV;
    }
    if (faccessat(AT_FDCWD, nr, R_OK | W_OK, AT_EACCESS) < 0) {
        int e = errno;
        if (e == EROFS)
            why_set(why, len, "cannot write " NT_DAMON_KDAMONDS "/nr_kdamonds: sysfs is mounted "
                    "read-only (in a container?)");
        else
            why_set(why, len, "no permission to write " NT_DAMON_KDAMONDS "/nr_kdamonds (DAMON "
                    "needs root)");
        return -e;
    }
    return 0;
}

/* Does kdamond idx's context list vaddr? -ENOENT when it has no context
 * to ask (avail_operations lives in one). Writing `vaddr` to operations
 * cannot tell: it takes any name it knows, and only `on` fails. */
static int check_vaddr(const char *root, unsigned idx, char *why, size_t len)
{
    char path[REL_MAX];
    _cleanup_free_ char *ops = NULL;
    snprintf(path, sizeof(path), NT_DAMON_KDAMONDS "/%u/" CTX "/avail_operations", idx);
    int r = nt_read_file(root, path, &ops);
    if (r < 0)
        return r;
    for (char *save = NULL, *w = strtok_r(ops, " \n", &save); w; w = strtok_r(NULL, " \n", &save))
        if (strcmp(w, "vaddr") == 0)
            return 0;
    why_set(why, len, "DAMON cannot monitor processes: kdamond %u's avail_operations lacks vaddr "
            "(kernel built without CONFIG_DAMON_VADDR)", idx);
    return -EOPNOTSUPP;
}

/* The first kdamond with a context answers for all; open asks again once
 * it has made its own. */
static int probe_vaddr(const char *root, size_t n, char *why, size_t len)
{
    for (unsigned i = 0; i < n; i++) {
        int r = check_vaddr(root, i, why, len);
        if (r != -ENOENT)
            return r == -EOPNOTSUPP ? r : 0;
    }
    return 0;
}

static void busy_reason(const struct kd_info *kds, size_t n, char *why, size_t len)
{
    char list[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < n && used < sizeof(list); i++)
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%zu (pid %d)", i ? ", " : "", i,
                                 (int)kds[i].pid);
    why_set(why, len, "DAMON busy: %s %s %s run by another user and no idle kdamond slot exists",
            n == 1 ? "kdamond" : "kdamonds", list, n == 1 ? "is" : "are");
}

/* A slot for us: the one a previous numatierd had (prefer), else the
 * highest idle one (kdamond 0 is what other tools take first). -1 when
 * none is idle. */
static int idle_slot(const struct kd_info *kds, size_t n, long prefer)
{
    if (prefer >= 0 && (size_t)prefer < n && !kds[prefer].on)
        return (int)prefer;
    for (size_t i = n; i-- > 0;)
        if (!kds[i].on)
            return (int)i;
    return -1;
}

int nt_damon_probe(const char *root, char *why, size_t len)
{
    int r = probe_files(root, why, len);
    if (r < 0)
        return r;
    _cleanup_free_ struct kd_info *kds = NULL;
    size_t n = 0;
    r = list_kdamonds(root, &kds, &n);
    if (r < 0) {
        why_set(why, len, "cannot read " NT_DAMON_KDAMONDS ": %s", strerror(-r));
        return r;
    }
    r = probe_vaddr(root, n, why, len);
    if (r < 0)
        return r;
    unsigned stale;
    if (n > 0 && idle_slot(kds, n, -1) < 0 && !stale_is_ours(root, kds, n, &stale)) {
        busy_reason(kds, n, why, len);
        return -EBUSY;
    }
    return 0;
}

/* ---- configuration ----------------------------------------------------------- */

void nt_damon_params_from_config(const struct nt_config *cfg, struct nt_damon_params *out)
{
    *out = (struct nt_damon_params){
        .sample_usec = cfg ? cfg->damon_sample_usec : 5000,
        .aggr_usec = cfg ? cfg->sample_interval_usec : 200000,
        .min_regions = cfg ? cfg->damon_min_regions : 10,
        .max_regions = cfg ? cfg->damon_max_regions : 1000,
    };
    /* DAMON refuses a sampling interval longer than the aggregation one. */
    if (out->sample_usec > out->aggr_usec)
        out->sample_usec = out->aggr_usec;
    /* The mappings rarely change faster than this, and a new target gets
     * its first regions only at the next update. */
    out->update_usec = out->aggr_usec > 1000000 ? out->aggr_usec : 1000000;
}

static int write_regions_limits(struct nt_damon *d, size_t n)
{
    char path[REL_MAX];
    unsigned lo, hi;
    nt_damon_nr_regions(&d->p, n, &lo, &hi);
    int r = attr_write_u64(d, kd_path(path, d, CTX "/monitoring_attrs/nr_regions/min"), lo);
    if (r == 0)
        r = attr_write_u64(d, kd_path(path, d, CTX "/monitoring_attrs/nr_regions/max"), hi);
    return r;
}

/* The whole context, from scratch: DAMON keeps no owner, so while our
 * kdamond was off anybody may have changed it. */
static int setup_context(struct nt_damon *d, char *why, size_t len)
{
    char path[REL_MAX];
    int r = attr_write(d, kd_path(path, d, "contexts/nr_contexts"), "1");
    if (r == 0 && check_vaddr(d->root, d->index, why, len) == -EOPNOTSUPP)
        return -EOPNOTSUPP;
    if (r == 0)
        r = attr_write(d, kd_path(path, d, CTX "/operations"), "vaddr");
    if (r == 0)
        r = attr_write_u64(d, kd_path(path, d, CTX "/monitoring_attrs/intervals/sample_us"), d->p.sample_usec);
    if (r == 0)
        r = attr_write_u64(d, kd_path(path, d, CTX "/monitoring_attrs/intervals/aggr_us"), d->p.aggr_usec);
    if (r == 0)
        r = attr_write_u64(d, kd_path(path, d, CTX "/monitoring_attrs/intervals/update_us"), d->p.update_usec);
    if (r == 0)
        r = write_regions_limits(d, 1);
    if (r == 0)
        r = attr_write(d, kd_path(path, d, CTX "/targets/nr_targets"), "0");
    if (r == 0)
        r = attr_write(d, kd_path(path, d, CTX "/schemes/nr_schemes"), "0");
    if (r < 0) {
        why_set(why, len, "cannot set up %s: %s", path, strerror(-r));
        return r;
    }
    d->nr_files = d->nr_schemes = 0;
    return 0;
}

/* A `stat` scheme that matches every region (the pattern's min/max default
 * to 0/0, which matches nothing) and only those of target i. */
static int write_scheme(struct nt_damon *d, size_t i)
{
    static const char *const pattern[][2] = {
        { "sz/max", "18446744073709551615" },     /* ULONG_MAX on 64-bit */
        { "nr_accesses/max", "4294967295" },
        { "age/max", "4294967295" },
    };
    char path[REL_MAX], idx[24];
    int r = attr_write(d, kd_path(path, d, CTX "/schemes/%zu/action", i), "stat");
    for (size_t k = 0; r == 0 && k < NT_ARRAY_SIZE(pattern); k++)
        r = attr_write(d, kd_path(path, d, CTX "/schemes/%zu/access_pattern/%s", i, pattern[k][0]), pattern[k][1]);
    if (r == 0)
        r = attr_write(d, kd_path(path, d, CTX "/schemes/%zu/filters/nr_filters", i), "1");
    if (r == 0)
        r = attr_write(d, kd_path(path, d, CTX "/schemes/%zu/filters/0/type", i), "target");
    snprintf(idx, sizeof(idx), "%zu", i);
    if (r == 0)
        r = attr_write(d, kd_path(path, d, CTX "/schemes/%zu/filters/0/damon_target_idx", i), idx);
    /* matching N: filter out what is NOT target i. */
    if (r == 0)
        r = attr_write(d, kd_path(path, d, CTX "/schemes/%zu/filters/0/matching", i), "N");
    return r;
}

/* Targets and schemes for the kernel to take on `on` or `commit`. Writing
 * a count recreates every directory below it, so a changed count means
 * writing them all; an unchanged one only the pids that moved. */
static int write_targets(struct nt_damon *d, const pid_t *pids, size_t n)
{
    char path[REL_MAX];
    d->pending = true;
    int r = write_regions_limits(d, n);
    if (r == 0 && n != d->nr_files) {
        d->nr_files = 0;
        r = attr_write_u64(d, kd_path(path, d, CTX "/targets/nr_targets"), n);
        if (r == 0) {
            memset(d->files, 0, sizeof(d->files));      /* fresh directories */
            d->nr_files = n;
        }
    }
    for (size_t i = 0; i < n && r == 0; i++) {
        if (pids[i] == d->files[i])
            continue;
        r = attr_write_u64(d, kd_path(path, d, CTX "/targets/%zu/pid_target", i), (uint64_t)pids[i]);
        d->files[i] = r == 0 ? pids[i] : 0;
    }
    if (r < 0 || n == d->nr_schemes)
        return r;
    d->nr_schemes = 0;
    r = attr_write_u64(d, kd_path(path, d, CTX "/schemes/nr_schemes"), n);
    for (size_t i = 0; i < n && r == 0; i++)
        r = write_scheme(d, i);
    if (r == 0)
        d->nr_schemes = n;
    return r;
}

/* ---- on, off, commit --------------------------------------------------------- */

static int read_own_state(struct nt_damon *d, struct kd_info *out)
{
    return read_kdamond(d->root, d->index, out);
}

static int turn_off(struct nt_damon *d)
{
    char path[REL_MAX];
    struct kd_info k;
    int r = read_own_state(d, &k);
    d->on = false;
    if (r < 0)
        return r;
    /* Someone else may have stopped ours and started theirs here. */
    if (!k.on || (d->kpid > 0 && k.pid != d->kpid))
        return 0;
    r = attr_write(d, kd_path(path, d, "state"), "off");
    return r == -EPERM ? 0 : r;       /* EPERM: it stopped by itself meanwhile */
}

static int take_slot(struct nt_damon *d, long prefer, char *why, size_t len);

/* Our slot may have been taken, or removed by nr_kdamonds, while our
 * kdamond was off: find another one then. */
static int ensure_slot(struct nt_damon *d)
{
    struct kd_info k;
    int r = read_own_state(d, &k);
    if (r < 0 && r != -ENOENT)
        return r;
    if (r < 0 || k.on) {
        char why[256];
        unsigned old = d->index;
        r = take_slot(d, -1, why, sizeof(why));
        if (r < 0) {
            log_warning("DAMON: lost kdamond %u: %s", old, why);
            return r;
        }
        log_notice("DAMON: kdamond %u was taken or removed while ours was off; now using kdamond %u",
                   old, d->index);
    }
    return setup_context(d, NULL, 0);
}

/* Drop processes that are gone: `on` and `commit` fail on them. */
static size_t prune_dead(const char *root, pid_t *pids, size_t n)
{
    for (size_t i = 0; i < n;)
        if (pid_alive(root, pids[i]))
            i++;
        else
            pids[i] = pids[--n];
    return n;
}

static int adopt_running(struct nt_damon *d, const pid_t *pids, size_t n)
{
    struct kd_info k;
    int r = read_own_state(d, &k);
    if (r < 0)
        return r;
    if (!k.on)
        return -ESRCH;
    memcpy(d->targets, pids, n * sizeof(*pids));
    d->nr_targets = n;
    d->on = true;
    d->pending = false;
    if (k.pid != d->kpid) {
        d->kpid = k.pid;
        r = write_state_file(d->root, d->index, k.pid);
        if (r < 0)
            log_warning("DAMON: cannot record kdamond %u in " NT_DAMON_STATE_FILE ": %s", d->index,
                        strerror(-r));
    }
    return 0;
}

static int start(struct nt_damon *d, pid_t *pids, size_t n)
{
    char path[REL_MAX];
    int r = ensure_slot(d);
    if (r < 0)
        return r;
    for (int attempt = 0;; attempt++) {
        n = prune_dead(d->root, pids, n);
        if (n == 0)
            return 0;
        r = write_targets(d, pids, n);
        if (r == 0)
            r = attr_write(d, kd_path(path, d, "state"), "on");
        /* EINVAL: a target exited between the check and `on`. */
        if (r != -EINVAL || attempt > 0)
            break;
    }
    return r < 0 ? r : adopt_running(d, pids, n);
}

static int commit(struct nt_damon *d, const pid_t *pids, size_t n)
{
    char path[REL_MAX];
    int r = write_targets(d, pids, n);
    if (r == 0)
        r = attr_write(d, kd_path(path, d, "state"), "commit");
    if (r == 0)
        r = adopt_running(d, pids, n);
    return r;
}

static bool pid_in(const pid_t *pids, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (pids[i] == pid)
            return true;
    return false;
}

/* The new kernel order. A target that stays keeps its index (and so its
 * regions and its scheme); newcomers fill the places of those that left,
 * then go at the end; places still free are filled from the end. */
static size_t plan_order(const struct nt_damon *d, const pid_t *want, size_t nw, pid_t *out)
{
    size_t n = d->nr_targets;
    for (size_t i = 0; i < n; i++)
        out[i] = pid_in(want, nw, d->targets[i]) ? d->targets[i] : 0;     /* 0: a free place */
    size_t hole = 0;
    for (size_t j = 0; j < nw; j++) {
        if (want[j] <= 0 || pid_in(out, n, want[j]))
            continue;
        while (hole < n && out[hole] != 0)
            hole++;
        if (hole < n)
            out[hole] = want[j];
        else
            out[n++] = want[j];
    }
    for (size_t i = 0; i < n;) {
        if (out[i] != 0)
            i++;
        else if (i < --n)
            out[i] = out[n];
    }
    return n;
}

int nt_damon_set_targets(struct nt_damon *d, const pid_t *pids, size_t n)
{
    if (n > NT_DAMON_MAX_TARGETS)
        return -E2BIG;
    pid_t order[2 * NT_DAMON_MAX_TARGETS];
    size_t nn = plan_order(d, pids, n, order);
    nn = prune_dead(d->root, order, nn);
    if (nn == 0) {
        int r = d->on ? turn_off(d) : 0;
        d->nr_targets = 0;
        return r;
    }
    if (d->on && nn == d->nr_targets && memcmp(order, d->targets, nn * sizeof(*order)) == 0)
        return 0;
    if (d->on) {
        int r = commit(d, order, nn);
        if (r != -ESRCH && r != -EINVAL)
            return r;
        /* DAMON dropped the kdamond (a target died during the commit) or
         * it had stopped already, or refused what we wrote: start afresh
         * without the dead. */
        log_debug("DAMON: kdamond %u stopped on commit (%s); restarting it", d->index, strerror(-r));
        r = turn_off(d);
        if (r < 0)
            return r;
    }
    return start(d, order, nn);
}

/* ---- collecting regions ---------------------------------------------------- */

static int cmp_unsigned(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return (x > y) - (x < y);
}

/* Region directory names count across all schemes (schemes/1's may start
 * at 14), so list them instead of counting from 0. */
static int list_region_ids(const char *root, const char *dir, unsigned **out, size_t *n)
{
    _cleanup_closedir_ DIR *dp = nt_opendir_below(root, dir);
    if (!dp)
        return -errno;
    _cleanup_free_ unsigned *v = NULL;
    size_t len = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(dp))) {
        unsigned id;
        if (!nt_name_with_id(de->d_name, "", &id))
            continue;
        if (len == cap) {
            cap = cap ? 2 * cap : 64;
            unsigned *nv = realloc(v, cap * sizeof(*v));
            if (!nv)
                return -ENOMEM;
            v = nv;
        }
        v[len++] = id;
    }
    if (len)
        qsort(v, len, sizeof(*v), cmp_unsigned);
    *out = NT_TAKE_PTR(v);
    *n = len;
    return 0;
}

static int read_region(const char *root, const char *dir, unsigned id, struct nt_damon_region *out)
{
    static const char *const names[] = { "start", "end", "nr_accesses", "age" };
    uint64_t v[4];
    for (size_t i = 0; i < NT_ARRAY_SIZE(names); i++) {
        char path[REL_MAX + 64];
        snprintf(path, sizeof(path), "%s/%u/%s", dir, id, names[i]);
        int r = nt_read_u64(root, path, &v[i]);
        if (r < 0)
            return r;
    }
    if (v[1] <= v[0] || v[2] > UINT32_MAX || v[3] > UINT32_MAX)
        return -EINVAL;
    *out = (struct nt_damon_region){ .start = v[0], .end = v[1], .nr_accesses = (uint32_t)v[2],
                                     .age = (uint32_t)v[3] };
    return 0;
}

static int read_tried(struct nt_damon *d, size_t i, nt_damon_region_fn fn, void *userdata, uint64_t *bad)
{
    char dir[REL_MAX];
    kd_path(dir, d, CTX "/schemes/%zu/tried_regions", i);
    _cleanup_free_ unsigned *ids = NULL;
    size_t n = 0;
    int r = list_region_ids(d->root, dir, &ids, &n);
    if (r < 0)
        return r;
    int count = 0;
    for (size_t k = 0; k < n; k++) {
        struct nt_damon_region reg;
        if (read_region(d->root, dir, ids[k], &reg) < 0) {
            (*bad)++;
            continue;
        }
        fn(d->targets[i], &reg, userdata);
        count++;
    }
    return count;
}

int nt_damon_collect(struct nt_damon *d, nt_damon_region_fn fn, void *userdata, uint64_t *bad)
{
    char path[REL_MAX];
    /* While a commit is pending the scheme directories may not match
     * what runs; the caller retries that first. */
    if (!d->on || d->nr_targets == 0 || d->pending)
        return 0;
    int r = attr_write(d, kd_path(path, d, "state"), "update_schemes_tried_regions");
    if (r == -EINVAL) {
        /* Only a stopped kdamond refuses the update. */
        struct kd_info k;
        if (read_own_state(d, &k) == 0 && !k.on) {
            d->on = false;
            return -ESRCH;
        }
    }
    if (r < 0)
        return r;
    int total = 0;
    for (size_t i = 0; i < d->nr_targets; i++) {
        r = read_tried(d, i, fn, userdata, bad);
        if (r < 0) {
            (*bad)++;               /* the scheme's directory vanished */
            continue;
        }
        total += r;
    }
    return total;
}

unsigned nt_damon_index(const struct nt_damon *d) { return d->index; }
bool nt_damon_running(const struct nt_damon *d) { return d->on; }
size_t nt_damon_nr_targets(const struct nt_damon *d) { return d->on ? d->nr_targets : 0; }
const pid_t *nt_damon_targets(const struct nt_damon *d) { return d->targets; }

/* ---- open and close ------------------------------------------------------------ */

/* A kdamond left on by a numatierd that died: stop it, keep its slot. */
static long stop_stale(struct nt_damon *d, const struct kd_info *kds, size_t n)
{
    unsigned idx;
    pid_t pid;
    int r = read_state_file(d->root, &idx, &pid);
    if (r == -ENOENT)
        return -1;
    remove_state_file(d->root);
    if (r < 0) {
        log_warning("DAMON: ignoring unreadable " NT_DAMON_STATE_FILE ": %s", strerror(-r));
        return -1;
    }
    if (idx >= n || !kds[idx].on)
        return idx;
    if (kds[idx].pid != pid) {
        log_info("DAMON: kdamond %u now runs as pid %d, not the recorded %d: another user's, left alone",
                 idx, (int)kds[idx].pid, (int)pid);
        return -1;
    }
    char path[REL_MAX];
    snprintf(path, sizeof(path), NT_DAMON_KDAMONDS "/%u/state", idx);
    r = attr_write(d, path, "off");
    if (r < 0 && r != -EPERM) {
        log_warning("DAMON: cannot stop stale kdamond %u (pid %d): %s", idx, (int)pid, strerror(-r));
        return -1;
    }
    log_notice("DAMON: stopped kdamond %u (pid %d) left running by a previous numatierd", idx, (int)pid);
    return idx;
}

/* An idle kdamond (prefer, if idle), or the first one if there are none
 * at all. */
static int take_slot(struct nt_damon *d, long prefer, char *why, size_t len)
{
    _cleanup_free_ struct kd_info *kds = NULL;
    size_t n = 0;
    int r = list_kdamonds(d->root, &kds, &n);
    if (r < 0) {
        why_set(why, len, "cannot read " NT_DAMON_KDAMONDS ": %s", strerror(-r));
        return r;
    }
    if (n == 0) {
        /* The only time we may add a kdamond without disturbing anyone:
         * resizing recreates every kdamond directory, and is refused while
         * any runs. */
        r = attr_write(d, NT_DAMON_KDAMONDS "/nr_kdamonds", "1");
        if (r < 0) {
            why_set(why, len, "cannot create a kdamond (" NT_DAMON_KDAMONDS "/nr_kdamonds): %s", strerror(-r));
            return r;
        }
        d->created = true;
        d->index = 0;
    } else {
        int slot = idle_slot(kds, n, prefer);
        if (slot < 0) {
            busy_reason(kds, n, why, len);
            return -EBUSY;
        }
        d->index = (unsigned)slot;
    }
    snprintf(d->kd, sizeof(d->kd), NT_DAMON_KDAMONDS "/%u", d->index);
    return 0;
}

static int claim_slot(struct nt_damon *d, char *why, size_t len)
{
    _cleanup_free_ struct kd_info *kds = NULL;
    size_t n = 0;
    long prefer = -1;
    if (list_kdamonds(d->root, &kds, &n) == 0)
        prefer = stop_stale(d, kds, n);
    return take_slot(d, prefer, why, len);
}

int nt_damon_open(const char *root, const struct nt_damon_params *p, nt_damon_write_hook hook,
                  void *hook_userdata, struct nt_damon **out, char *why, size_t len)
{
    int r = probe_files(root, why, len);
    if (r < 0)
        return r;
    _cleanup_(nt_damon_closep) struct nt_damon *d = calloc(1, sizeof(*d));
    if (!d || !(d->root = strdup(root ? root : "/")))
        return -ENOMEM;
    d->p = *p;
    d->hook = hook;
    d->hook_userdata = hook_userdata;
    d->kpid = -1;
    r = claim_slot(d, why, len);
    if (r < 0) {
        d->index = UINT_MAX;          /* nothing of ours to release */
        return r;
    }
    r = setup_context(d, why, len);
    if (r < 0)
        return r;
    log_info("DAMON: using kdamond %u (sample %" PRIu64 " us, aggregation %" PRIu64 " us)", d->index,
             d->p.sample_usec, d->p.aggr_usec);
    *out = NT_TAKE_PTR(d);
    return 0;
}

/* Leave our slot empty, and give it back if we made it. */
static void release_slot(struct nt_damon *d)
{
    char path[REL_MAX];
    struct kd_info k;
    if (read_own_state(d, &k) < 0 || k.on)
        return;                       /* gone, or someone else's by now */
    attr_write(d, kd_path(path, d, CTX "/targets/nr_targets"), "0");
    attr_write(d, kd_path(path, d, CTX "/schemes/nr_schemes"), "0");
    uint64_t nr;
    if (d->created && nt_read_u64(d->root, NT_DAMON_KDAMONDS "/nr_kdamonds", &nr) == 0 && nr == 1 &&
        d->index == 0)
        attr_write(d, NT_DAMON_KDAMONDS "/nr_kdamonds", "0");
}

void nt_damon_close(struct nt_damon *d)
{
    if (!d)
        return;
    if (d->index != UINT_MAX && d->kd[0]) {
        if (d->on) {
            int r = turn_off(d);
            if (r < 0)
                log_warning("DAMON: cannot stop kdamond %u: %s", d->index, strerror(-r));
        }
        release_slot(d);
        remove_state_file(d->root);
    }
    free(d->root);
    free(d);
}

/* ---- the sampler ops: a worker thread around the kdamond ------------------- */

struct obs {
    pid_t pid;
    struct nt_damon_region r;
};

struct batch {
    struct obs *v;
    size_t n, cap;
    bool failed;                  /* out of memory on the way */
};

struct damon_sampler {
    struct nt_damon *d;
    struct nt_damon_intervals iv;
    uint32_t page_size;
    pid_t self;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t wake;          /* the worker waits for work */
    pthread_cond_t idle;          /* sync waits for the worker */
    /* Under lock. */
    pid_t want[NT_DAMON_MAX_TARGETS];
    size_t nr_want;
    bool dirty, collect, stop, busy, retry;
    struct batch ready;
    bool have_ready;
    int error;
    size_t kernel_targets;
    uint64_t bad_records;
    /* Main thread only. */
    uint64_t samples;
    uint64_t last_delivery_usec;
};

static void batch_add(pid_t pid, const struct nt_damon_region *r, void *userdata)
{
    struct batch *b = userdata;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        struct obs *nv = realloc(b->v, cap * sizeof(*nv));
        if (!nv) {
            b->failed = true;
            return;
        }
        b->v = nv;
        b->cap = cap;
    }
    b->v[b->n++] = (struct obs){ .pid = pid, .r = *r };
}

/* Log a failure once, when it first appears, and its end. */
static void note_error(struct damon_sampler *s, int r, const char *what)
{
    if (r < 0 && r != s->error)
        log_warning("DAMON: %s failed on kdamond %u: %s", what, nt_damon_index(s->d), strerror(-r));
    else if (r >= 0 && s->error < 0)
        log_info("DAMON: kdamond %u works again", nt_damon_index(s->d));
    s->error = r < 0 ? r : 0;
}

/* One round of the worker, without the lock: apply the watched set, then
 * collect if asked. EBUSY (someone's request in flight) just waits for the
 * next round. */
static int worker_round(struct damon_sampler *s, const pid_t *want, size_t n, bool targets, bool collect,
                        struct batch *b, uint64_t *bad, bool *retry, const char **what)
{
    int r = 0;
    *what = "updating targets";
    if (targets) {
        r = nt_damon_set_targets(s->d, want, n);
        *retry = r < 0;
        if (r < 0)
            return r == -EBUSY ? 0 : r;
    }
    if (!collect)
        return 0;
    *what = "reading regions";
    r = nt_damon_collect(s->d, batch_add, b, bad);
    if (r == -ESRCH) {
        *retry = true;                /* restart it with whoever is left */
        return 0;
    }
    return r == -EBUSY ? 0 : r;
}

static void *worker(void *userdata)
{
    struct damon_sampler *s = userdata;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->stop && !s->dirty && !s->collect && !s->retry)
            pthread_cond_wait(&s->wake, &s->lock);
        if (s->stop)
            break;
        pid_t want[NT_DAMON_MAX_TARGETS];
        size_t n = s->nr_want;
        memcpy(want, s->want, n * sizeof(*want));
        bool targets = s->dirty || (s->retry && s->collect), collect = s->collect;
        if (!targets && !collect) {
            pthread_cond_wait(&s->wake, &s->lock);   /* a retry waits for the next drain */
            continue;
        }
        s->dirty = s->collect = false;
        s->busy = true;
        pthread_mutex_unlock(&s->lock);

        struct batch b = { 0 };
        uint64_t bad = 0;
        bool retry = false;
        const char *what;
        int r = worker_round(s, want, n, targets, collect, &b, &bad, &retry, &what);

        pthread_mutex_lock(&s->lock);
        s->retry = retry;
        note_error(s, b.failed ? -ENOMEM : r, what);
        s->bad_records += bad;
        s->kernel_targets = nt_damon_nr_targets(s->d);
        if (collect && r >= 0 && !b.failed) {
            free(s->ready.v);
            s->ready = b;             /* a newer snapshot supersedes one not yet drained */
            s->have_ready = true;
        } else {
            free(b.v);
        }
        s->busy = false;
        pthread_cond_broadcast(&s->idle);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void damon_close(void *state)
{
    struct damon_sampler *s = state;
    if (!s)
        return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_broadcast(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);    /* at most one kernel request away */
    }
    nt_damon_close(s->d);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->idle);
    free(s->ready.v);
    free(s);
}

static inline void damon_closep(struct damon_sampler **s) { damon_close(*s); }

/* Signals stay with the main thread's signalfd. */
static int start_worker(struct damon_sampler *s)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(&s->thread, NULL, worker, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0)
        return -r;
    s->thread_started = true;
    return 0;
}

int nt_sampler_damon_open_with(const struct nt_sampler_env *env, nt_damon_write_hook hook,
                               void *hook_userdata, void **state, char *why, size_t len)
{
    _cleanup_(damon_closep) struct damon_sampler *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->idle, NULL);
    struct nt_damon_params p;
    nt_damon_params_from_config(env->config, &p);
    s->iv = (struct nt_damon_intervals){ .sample_usec = p.sample_usec, .aggr_usec = p.aggr_usec };
    long ps = sysconf(_SC_PAGESIZE);
    s->page_size = ps > 0 ? (uint32_t)ps : 4096;
    s->self = env->self;
    int r = nt_damon_open(env->root, &p, hook, hook_userdata, &s->d, why, len);
    if (r < 0)
        return r;
    r = start_worker(s);
    if (r < 0) {
        why_set(why, len, "cannot start the DAMON worker thread: %s", strerror(-r));
        return r;
    }
    *state = NT_TAKE_PTR(s);
    return 0;
}

static int damon_open(const struct nt_sampler_env *env, void **state, char *why, size_t len)
{
    return nt_sampler_damon_open_with(env, NULL, NULL, state, why, len);
}

static int damon_probe(const struct nt_sampler_env *env, char *why, size_t len)
{
    return nt_damon_probe(env->root, why, len);
}

/* Applied by the worker: DAMON answers a commit only after an aggregation
 * interval. Errors show up in the log and in stats (targets). */
static int damon_watch(void *state, pid_t pid)
{
    struct damon_sampler *s = state;
    if (pid <= 0 || pid == s->self)
        return -EINVAL;
    int r = 0;
    pthread_mutex_lock(&s->lock);
    size_t i = 0;
    while (i < s->nr_want && s->want[i] != pid)
        i++;
    if (i == s->nr_want) {
        if (s->nr_want == NT_DAMON_MAX_TARGETS) {
            r = -ENOSPC;
        } else {
            s->want[s->nr_want++] = pid;
            s->dirty = true;
            pthread_cond_signal(&s->wake);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int damon_unwatch(void *state, pid_t pid)
{
    struct damon_sampler *s = state;
    int r = -ENOENT;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->nr_want; i++)
        if (s->want[i] == pid) {
            s->want[i] = s->want[--s->nr_want];
            s->dirty = true;
            pthread_cond_signal(&s->wake);
            r = 0;
            break;
        }
    pthread_mutex_unlock(&s->lock);
    return r;
}


/* Hand over the newest snapshot and ask for the next one. A snapshot
 * stands for the time since the previous one was handed over. */
static int damon_drain(void *state, uint64_t now_usec, uint64_t own_cpu_usec, nt_access_fn fn, void *userdata)
{
    struct damon_sampler *s = state;
    (void)own_cpu_usec;           /* DAMON's cost is the kdamond's, bounded by its region limits */
    pthread_mutex_lock(&s->lock);
    struct batch b = s->ready;
    bool have = s->have_ready;
    s->ready = (struct batch){ 0 };
    s->have_ready = false;
    s->collect = true;
    pthread_cond_signal(&s->wake);
    /* Who is still watched: a process unwatched since the snapshot must
     * not come back to life in the aggregate. */
    pid_t want[NT_DAMON_MAX_TARGETS];
    size_t nr_want = s->nr_want;
    memcpy(want, s->want, nr_want * sizeof(*want));
    pthread_mutex_unlock(&s->lock);

    _cleanup_free_ struct obs *v = b.v;
    if (!have)
        return 0;
    uint64_t period = s->last_delivery_usec && now_usec > s->last_delivery_usec
                          ? now_usec - s->last_delivery_usec : 0;
    s->last_delivery_usec = now_usec;
    int delivered = 0;
    for (size_t i = 0; i < b.n; i++) {
        struct nt_access a;
        if (!pid_in(want, nr_want, v[i].pid) ||
            !nt_damon_region_to_access(&v[i].r, v[i].pid, &s->iv, period, s->page_size, &a))
            continue;
        fn(&a, userdata);
        delivered++;
    }
    s->samples += (uint64_t)delivered;
    return delivered;
}

static void damon_stats(void *state, struct nt_sampler_stats *out)
{
    struct damon_sampler *s = state;
    *out = (struct nt_sampler_stats){ .samples = s->samples };
    pthread_mutex_lock(&s->lock);
    out->targets = s->kernel_targets;
    out->bad_records = s->bad_records;
    pthread_mutex_unlock(&s->lock);
}

int nt_sampler_damon_sync(void *state)
{
    struct damon_sampler *s = state;
    pthread_mutex_lock(&s->lock);
    while (s->busy || s->dirty || s->collect)
        pthread_cond_wait(&s->idle, &s->lock);
    int r = s->error;
    pthread_mutex_unlock(&s->lock);
    return r;
}

const struct nt_sampler_ops nt_sampler_damon_ops = {
    .name = "damon",
    .probe = damon_probe,
    .open = damon_open,
    .close = damon_close,
    .watch = damon_watch,
    .unwatch = damon_unwatch,
    .drain = damon_drain,
    .stats = damon_stats,
};
