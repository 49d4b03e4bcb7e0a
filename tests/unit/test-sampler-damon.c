/* The DAMON backend against a fake sysfs tree in a temporary directory.
 *
 * The tree is regular files; a write hook plays the kernel's part as
 * observed on 6.12: writing nr_* recreates the directories below, `state`
 * takes on/off/commit/update_schemes_tried_regions with the same errors
 * (EBUSY, EPERM, EINVAL) and `update_schemes_tried_regions` fills each
 * scheme's tried_regions with the regions of the target its filter names,
 * numbering them across schemes. Every write is logged so tests can check
 * the sequence. Run from the repository root, or set NT_FIXTURES. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include "numatier/damon.h"
#include "numatier/log.h"
#include "numatier/util.h"

/* Paths here are a short temp dir plus short sysfs paths; GCC cannot know
 * and would warn at every snprintf into PATH_MAX buffers. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#define K NT_DAMON_KDAMONDS
#define MAX_LOG 4096
#define MAX_REGIONS 16

struct fake_region { pid_t pid; uint64_t start, end; uint32_t nr_accesses, age; };

struct fake {
    char root[PATH_MAX];
    char *log[MAX_LOG];            /* "kdamonds-relative path=value" */
    size_t nr_log;
    int next_kpid;
    struct fake_region regions[MAX_REGIONS];
    size_t nr_regions;
    const char *fixture;           /* copy this tried_regions tree instead */
    bool junk;                     /* add unreadable regions to scheme 0 */
    bool drop_tried;               /* scheme 0's tried_regions vanishes */
    const char *avail;             /* avail_operations of new contexts */
    bool commit_drops;             /* the next commit stops the kdamond */
    const char *fail_suffix;       /* fail the next write to a path ending so */
    int fail_errno;
};

/* ---- files ------------------------------------------------------------------ */

static const char *fixture_dir(const char *name)
{
    static char path[PATH_MAX];
    const char *dir = getenv("NT_FIXTURES");
    snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/fixtures", name);
    return path;
}

static void mkdirs(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    mkdir(buf, 0755);
}

static void put(struct fake *f, const char *value, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(struct fake *f, const char *value, const char *fmt, ...)
{
    char rel[PATH_MAX], path[PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof(rel), fmt, ap);
    va_end(ap);
    snprintf(path, sizeof(path), "%s%s", f->root, rel);
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    mkdirs(dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "%s\n", value);
    fclose(fp);
}

/* Contents (without the newline) of a file below root; "" if missing. */
static const char *get(struct fake *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *get(struct fake *f, const char *fmt, ...)
{
    static char buf[4][256];
    static int slot;
    char rel[PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof(rel), fmt, ap);
    va_end(ap);
    char *out = buf[slot++ % 4];
    _cleanup_free_ char *s = NULL;
    if (nt_read_file(f->root, rel, &s) < 0)
        s = strdup("");
    snprintf(out, 256, "%s", s);
    return out;
}

static bool exists(struct fake *f, const char *rel)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof(path), "%s%s", f->root, rel);
    return stat(path, &st) == 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Remove the numbered subdirectories of dir (below root). */
static void rm_numbered(struct fake *f, const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s%s", f->root, dir);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned id;
        if (!nt_name_with_id(de->d_name, "", &id))
            continue;
        char sub[PATH_MAX + 300];
        snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
        rm_rf(sub);
    }
    closedir(d);
}

static void add_proc(struct fake *f, pid_t pid)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/proc/%d", f->root, (int)pid);
    mkdirs(path);
}

static void kill_proc(struct fake *f, pid_t pid)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/proc/%d", f->root, (int)pid);
    rmdir(path);
}

static bool proc_alive(struct fake *f, const char *pid)
{
    char rel[64];
    snprintf(rel, sizeof(rel), "/proc/%s", pid);
    return exists(f, rel);
}

/* ---- the fake kernel -------------------------------------------------------- */

static void make_kdamond(struct fake *f, unsigned i, bool on, int pid)
{
    put(f, on ? "on" : "off", K "/%u/state", i);
    char p[16];
    snprintf(p, sizeof(p), "%d", on ? pid : -1);
    put(f, p, K "/%u/pid", i);
    put(f, "0", K "/%u/contexts/nr_contexts", i);
}

/* A tree with n kdamonds, all off. */
static void make_tree(struct fake *f, unsigned n)
{
    char nr[16];
    snprintf(nr, sizeof(nr), "%u", n);
    put(f, nr, K "/nr_kdamonds");
    for (unsigned i = 0; i < n; i++)
        make_kdamond(f, i, false, -1);
}

static void make_context(struct fake *f, const char *ctx)
{
    put(f, f->avail ? f->avail : "vaddr\nfvaddr\npaddr", "%s/avail_operations", ctx);
    put(f, "vaddr", "%s/operations", ctx);
    put(f, "5000", "%s/monitoring_attrs/intervals/sample_us", ctx);
    put(f, "100000", "%s/monitoring_attrs/intervals/aggr_us", ctx);
    put(f, "60000000", "%s/monitoring_attrs/intervals/update_us", ctx);
    put(f, "10", "%s/monitoring_attrs/nr_regions/min", ctx);
    put(f, "1000", "%s/monitoring_attrs/nr_regions/max", ctx);
    put(f, "0", "%s/targets/nr_targets", ctx);
    put(f, "0", "%s/schemes/nr_schemes", ctx);
}

static void make_scheme(struct fake *f, const char *dir)
{
    put(f, "stat", "%s/action", dir);
    static const char *const pats[] = { "sz", "nr_accesses", "age" };
    for (size_t k = 0; k < 3; k++) {
        put(f, "0", "%s/access_pattern/%s/min", dir, pats[k]);
        put(f, "0", "%s/access_pattern/%s/max", dir, pats[k]);
    }
    put(f, "0", "%s/filters/nr_filters", dir);
    put(f, "0", "%s/tried_regions/total_bytes", dir);
}

/* nr_* files: recreate every directory below with defaults. */
static void recreate(struct fake *f, const char *path, unsigned n)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    const char *name = strrchr(path, '/') + 1;
    rm_numbered(f, dir);
    for (unsigned i = 0; i < n; i++) {
        char sub[PATH_MAX + 16];
        snprintf(sub, sizeof(sub), "%s/%u", dir, i);
        if (strcmp(name, "nr_kdamonds") == 0)
            make_kdamond(f, i, false, -1);
        else if (strcmp(name, "nr_contexts") == 0)
            make_context(f, sub);
        else if (strcmp(name, "nr_targets") == 0)
            put(f, "0", "%s/pid_target", sub);
        else if (strcmp(name, "nr_schemes") == 0)
            make_scheme(f, sub);
        else if (strcmp(name, "nr_filters") == 0) {
            put(f, "anon", "%s/type", sub);
            put(f, "Y", "%s/matching", sub);
            put(f, "0", "%s/damon_target_idx", sub);
        }
    }
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool any_on(struct fake *f)
{
    unsigned n = (unsigned)atoi(get(f, K "/nr_kdamonds"));
    for (unsigned i = 0; i < n; i++)
        if (strcmp(get(f, K "/%u/state", i), "on") == 0)
            return true;
    return false;
}

/* Would `on` or `commit` find every target alive? */
static bool targets_alive(struct fake *f, const char *kd)
{
    unsigned n = (unsigned)atoi(get(f, "%s/contexts/0/targets/nr_targets", kd));
    for (unsigned i = 0; i < n; i++)
        if (!proc_alive(f, get(f, "%s/contexts/0/targets/%u/pid_target", kd, i)))
            return false;
    return true;
}

static int state_before(struct fake *f, const char *kd, const char *value)
{
    bool on = strcmp(get(f, "%s/state", kd), "on") == 0;
    if (strcmp(value, "on") == 0)
        return on ? -EBUSY : targets_alive(f, kd) ? 0 : -EINVAL;
    if (strcmp(value, "off") == 0)
        return on ? 0 : -EPERM;
    if (strcmp(value, "commit") == 0 || strcmp(value, "update_schemes_tried_regions") == 0)
        return on ? 0 : -EINVAL;
    return -EINVAL;
}

static void set_running(struct fake *f, const char *kd, bool on)
{
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", on ? f->next_kpid++ : -1);
    put(f, on ? "on" : "off", "%s/state", kd);
    put(f, pid, "%s/pid", kd);
}

static void region_dir(struct fake *f, const char *tried, unsigned id, const struct fake_region *r)
{
    char v[32];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)r->start);
    put(f, v, "%s/%u/start", tried, id);
    snprintf(v, sizeof(v), "%llu", (unsigned long long)r->end);
    put(f, v, "%s/%u/end", tried, id);
    snprintf(v, sizeof(v), "%u", r->nr_accesses);
    put(f, v, "%s/%u/nr_accesses", tried, id);
    snprintf(v, sizeof(v), "%u", r->age);
    put(f, v, "%s/%u/age", tried, id);
}

static void add_junk(struct fake *f, const char *tried, unsigned *id)
{
    struct fake_region ok = { .start = 0x1000, .end = 0x2000 };
    unsigned a = (*id)++, b = (*id)++, c = (*id)++, d = (*id)++;
    region_dir(f, tried, a, &ok);
    put(f, "many", "%s/%u/nr_accesses", tried, a);               /* not a number */
    region_dir(f, tried, b, &ok);
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s%s/%u/age", f->root, tried, b);
    unlink(path);                                                   /* missing file */
    region_dir(f, tried, c, &(struct fake_region){ .start = 0x3000, .end = 0x2000 });   /* backwards */
    region_dir(f, tried, d, &ok);
    put(f, "4294967296", "%s/%u/nr_accesses", tried, d);          /* > u32 */
    put(f, "not a region", "%s/stray", tried);
}

static int copy_one(const char *path, const struct stat *st, int flag, struct FTW *ftw);
static const char *copy_from, *copy_to;

static int copy_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)ftw;
    char dst[PATH_MAX * 2];
    snprintf(dst, sizeof(dst), "%s%s", copy_to, path + strlen(copy_from));
    if (flag == FTW_D) {
        mkdirs(dst);
        return 0;
    }
    _cleanup_free_ char *s = NULL;
    if (nt_read_file("/", path, &s) < 0)
        return -1;
    FILE *fp = fopen(dst, "w");
    if (!fp)
        return -1;
    fprintf(fp, "%s\n", s);
    fclose(fp);
    return 0;
}

/* Like the kernel: walk the schemes, give each the regions of the target
 * its filter keeps, number region directories across all schemes. */
static void update_regions(struct fake *f, const char *kd)
{
    char ctx[PATH_MAX];
    snprintf(ctx, sizeof(ctx), "%s/contexts/0", kd);
    unsigned ns = (unsigned)atoi(get(f, "%s/schemes/nr_schemes", ctx)), id = 0;
    for (unsigned s = 0; s < ns; s++) {
        char tried[PATH_MAX + 64];
        snprintf(tried, sizeof(tried), "%s/schemes/%u/tried_regions", ctx, s);
        rm_numbered(f, tried);
        if (f->fixture) {
            char from[PATH_MAX], to[PATH_MAX * 2];
            snprintf(from, sizeof(from), "%s/schemes/%u/tried_regions", fixture_dir(f->fixture), s);
            snprintf(to, sizeof(to), "%s%s", f->root, tried);
            copy_from = from;
            copy_to = to;
            nftw(from, copy_one, 16, FTW_PHYS);
            continue;
        }
        unsigned t = (unsigned)atoi(get(f, "%s/schemes/%u/filters/0/damon_target_idx", ctx, s));
        pid_t pid = (pid_t)atoi(get(f, "%s/targets/%u/pid_target", ctx, t));
        for (size_t i = 0; i < f->nr_regions; i++)
            if (f->regions[i].pid == pid)
                region_dir(f, tried, id++, &f->regions[i]);
        if (f->junk && s == 0)
            add_junk(f, tried, &id);
        if (f->drop_tried && s == 0) {
            char path[PATH_MAX * 2];
            snprintf(path, sizeof(path), "%s%s", f->root, tried);
            rm_rf(path);
        }
    }
}

static void state_after(struct fake *f, const char *kd, const char *value)
{
    if (strcmp(value, "on") == 0)
        /* 6.12: `on` without targets succeeds, yet nothing runs. */
        set_running(f, kd, atoi(get(f, "%s/contexts/0/targets/nr_targets", kd)) > 0);
    else if (strcmp(value, "off") == 0)
        set_running(f, kd, false);
    else if (strcmp(value, "commit") == 0) {
        /* A dead target makes the commit fail inside the kdamond, which
         * then stops, while the write itself reports success. */
        if (f->commit_drops || !targets_alive(f, kd)) {
            f->commit_drops = false;
            set_running(f, kd, false);
        } else {
            put(f, "on", "%s/state", kd);
        }
    } else {
        put(f, "on", "%s/state", kd);
        update_regions(f, kd);
    }
}

static int fake_hook(const char *path, const char *value, bool after, void *userdata)
{
    struct fake *f = userdata;
    char kd[PATH_MAX];
    const char *rel = strncmp(path, K "/", strlen(K "/")) == 0 ? path + strlen(K "/") : path;
    if (!after) {
        assert_true(f->nr_log < MAX_LOG);
        assert_true(asprintf(&f->log[f->nr_log++], "%s=%s", rel, value) > 0);
        if (f->fail_suffix && ends_with(path, f->fail_suffix)) {
            f->fail_suffix = NULL;
            return -f->fail_errno;
        }
        if (ends_with(path, "/nr_kdamonds") && any_on(f))
            return -EBUSY;
        if (ends_with(path, "/nr_contexts") && atoi(value) > 1)
            return -EINVAL;
        if (ends_with(path, "/state")) {
            snprintf(kd, sizeof(kd), "%.*s", (int)(strlen(path) - strlen("/state")), path);
            return state_before(f, kd, value);
        }
        return 0;
    }
    if (ends_with(path, "/state")) {
        snprintf(kd, sizeof(kd), "%.*s", (int)(strlen(path) - strlen("/state")), path);
        state_after(f, kd, value);
    } else {
        static const char *const counts[] = { "/nr_kdamonds", "/nr_contexts", "/nr_targets",
                                              "/nr_schemes", "/nr_filters" };
        for (size_t i = 0; i < NT_ARRAY_SIZE(counts); i++)
            if (ends_with(path, counts[i]))
                recreate(f, path, (unsigned)atoi(value));
    }
    return 0;
}

/* ---- fixture setup ---------------------------------------------------------- */

static int setup(void **state)
{
    struct fake *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->root, sizeof(f->root), "/tmp/nt-damon-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    f->next_kpid = 900;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fake *f = *state;
    rm_rf(f->root);
    for (size_t i = 0; i < f->nr_log; i++)
        free(f->log[i]);
    free(f);
    return 0;
}

static void clear_log(struct fake *f)
{
    for (size_t i = 0; i < f->nr_log; i++)
        free(f->log[i]);
    f->nr_log = 0;
}

/* The log from index from on contains these writes in this order (others
 * may come between). Returns the index after the last match. */
static size_t expect_writes(struct fake *f, size_t from, const char *const *want, size_t n)
{
    size_t i = from;
    for (size_t k = 0; k < n; k++) {
        while (i < f->nr_log && strcmp(f->log[i], want[k]) != 0)
            i++;
        if (i == f->nr_log) {
            for (size_t j = 0; j < f->nr_log; j++)
                print_message("  log[%zu] %s\n", j, f->log[j]);
            fail_msg("write \"%s\" not found (in order) from log[%zu]", want[k], from);
        }
        i++;
    }
    return i;
}
#define EXPECT_WRITES(f, from, ...) \
    expect_writes(f, from, (const char *const[]){ __VA_ARGS__ }, \
                  sizeof((const char *const[]){ __VA_ARGS__ }) / sizeof(const char *))

static bool wrote(struct fake *f, const char *prefix)
{
    for (size_t i = 0; i < f->nr_log; i++)
        if (strncmp(f->log[i], prefix, strlen(prefix)) == 0)
            return true;
    return false;
}

static const struct nt_damon_params params = {
    .sample_usec = 5000, .aggr_usec = 200000, .update_usec = 1000000,
    .min_regions = 10, .max_regions = 1000,
};

static struct nt_damon *open_ok(struct fake *f)
{
    struct nt_damon *d = NULL;
    char why[256] = "";
    int r = nt_damon_open(f->root, &params, fake_hook, f, &d, why, sizeof(why));
    if (r < 0)
        fail_msg("open: %s (%s)", strerror(-r), why);
    return d;
}

/* ---- probe ------------------------------------------------------------------ */

static void test_probe_absent(void **state)
{
    struct fake *f = *state;
    char why[256];
    assert_int_equal(nt_damon_probe(f->root, why, sizeof(why)), -ENODEV);
    assert_string_equal(why, "DAMON sysfs interface absent: no /sys/kernel/mm/damon (kernel built without "
                             "CONFIG_DAMON_SYSFS; Debian 12's 6.1 kernel has none)");
    struct nt_damon *d = NULL;
    assert_int_equal(nt_damon_open(f->root, &params, fake_hook, f, &d, why, sizeof(why)), -ENODEV);
    assert_null(d);
    assert_int_equal(f->nr_log, 0);
}

static void test_probe_incomplete(void **state)
{
    struct fake *f = *state;
    char why[256], path[PATH_MAX];
    snprintf(path, sizeof(path), "%s" NT_DAMON_DIR, f->root);
    mkdirs(path);
    assert_int_equal(nt_damon_probe(f->root, why, sizeof(why)), -ENODEV);
    assert_string_equal(why, "DAMON sysfs interface incomplete: no /sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds");
}

static void test_probe_ok(void **state)
{
    struct fake *f = *state;
    char why[256] = "";
    make_tree(f, 0);
    assert_int_equal(nt_damon_probe(f->root, why, sizeof(why)), 0);
    make_tree(f, 2);
    make_kdamond(f, 0, true, 321);             /* someone else's, but 1 is idle */
    assert_int_equal(nt_damon_probe(f->root, why, sizeof(why)), 0);
    assert_int_equal(f->nr_log, 0);            /* probing writes nothing */
}

/* As a user who may not write nr_kdamonds (root may write anything, so
 * a root test run probes from a child that became nobody). */
static void test_probe_permission(void **state)
{
    struct fake *f = *state;
    static const char want[] = "no permission to write /sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds "
                               "(DAMON needs root)";
    char why[256] = "", path[PATH_MAX];
    make_tree(f, 0);
    snprintf(path, sizeof(path), "%s" K "/nr_kdamonds", f->root);
    chmod(path, 0644);
    chmod(f->root, 0755);
    if (geteuid() != 0) {
        assert_int_equal(nt_damon_probe(f->root, why, sizeof(why)), -EACCES);
        assert_string_equal(why, want);
        return;
    }
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        if (setgid(65534) < 0 || setuid(65534) < 0)
            _exit(2);
        int r = nt_damon_probe(f->root, why, sizeof(why));
        _exit(r == -EACCES && strcmp(why, want) == 0 ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_probe_no_vaddr(void **state)
{
    struct fake *f = *state;
    char why[256];
    make_tree(f, 1);
    make_context(f, K "/0/contexts/0");
    put(f, "paddr", K "/0/contexts/0/avail_operations");
    assert_int_equal(nt_damon_probe(f->root, why, sizeof(why)), -EOPNOTSUPP);
    assert_string_equal(why, "DAMON cannot monitor processes: kdamond 0's avail_operations lacks vaddr "
                             "(kernel built without CONFIG_DAMON_VADDR)");
}

static void test_open_no_vaddr(void **state)
{
    struct fake *f = *state;
    char why[256];
    make_tree(f, 0);
    f->avail = "paddr";
    /* Nothing to ask before a context exists: probe passes, open finds out. */
    assert_int_equal(nt_damon_probe(f->root, why, sizeof(why)), 0);
    struct nt_damon *d = NULL;
    assert_int_equal(nt_damon_open(f->root, &params, fake_hook, f, &d, why, sizeof(why)), -EOPNOTSUPP);
    assert_string_equal(why, "DAMON cannot monitor processes: kdamond 0's avail_operations lacks vaddr "
                             "(kernel built without CONFIG_DAMON_VADDR)");
    assert_false(wrote(f, "0/contexts/0/operations"));
    assert_string_equal(get(f, K "/nr_kdamonds"), "0");     /* the kdamond we made is gone again */
}

static void test_probe_busy(void **state)
{
    struct fake *f = *state;
    char why[256];
    make_tree(f, 1);
    make_kdamond(f, 0, true, 321);
    assert_int_equal(nt_damon_probe(f->root, why, sizeof(why)), -EBUSY);
    assert_string_equal(why, "DAMON busy: kdamond 0 (pid 321) is run by another user and no idle kdamond "
                             "slot exists");
    make_tree(f, 2);
    make_kdamond(f, 0, true, 321);
    make_kdamond(f, 1, true, 322);
    assert_int_equal(nt_damon_probe(f->root, why, sizeof(why)), -EBUSY);
    assert_string_equal(why, "DAMON busy: kdamonds 0 (pid 321), 1 (pid 322) are run by another user and "
                             "no idle kdamond slot exists");
    /* open says the same and touches nothing. */
    struct nt_damon *d = NULL;
    why[0] = '\0';
    assert_int_equal(nt_damon_open(f->root, &params, fake_hook, f, &d, why, sizeof(why)), -EBUSY);
    assert_string_equal(why, "DAMON busy: kdamonds 0 (pid 321), 1 (pid 322) are run by another user and "
                             "no idle kdamond slot exists");
    assert_int_equal(f->nr_log, 0);
}

static void test_probe_busy_with_our_stale(void **state)
{
    struct fake *f = *state;
    char why[256] = "";
    make_tree(f, 1);
    make_kdamond(f, 0, true, 321);
    put(f, "kdamond=0\npid=321", NT_DAMON_STATE_FILE);
    /* Ours, left by a crashed daemon: open will stop it, so not busy. */
    assert_int_equal(nt_damon_probe(f->root, why, sizeof(why)), 0);
}

/* ---- open, targets, close ------------------------------------------------------- */

static void test_open_close_creates_and_releases(void **state)
{
    struct fake *f = *state;
    make_tree(f, 0);
    struct nt_damon *d = open_ok(f);
    EXPECT_WRITES(f, 0, "nr_kdamonds=1", "0/contexts/nr_contexts=1", "0/contexts/0/operations=vaddr",
                  "0/contexts/0/monitoring_attrs/intervals/sample_us=5000",
                  "0/contexts/0/monitoring_attrs/intervals/aggr_us=200000",
                  "0/contexts/0/monitoring_attrs/intervals/update_us=1000000",
                  "0/contexts/0/monitoring_attrs/nr_regions/min=10",
                  "0/contexts/0/monitoring_attrs/nr_regions/max=1000",
                  "0/contexts/0/targets/nr_targets=0", "0/contexts/0/schemes/nr_schemes=0");
    assert_int_equal(nt_damon_index(d), 0);
    assert_false(nt_damon_running(d));
    assert_false(wrote(f, "0/state="));        /* no targets: stays off */
    clear_log(f);
    nt_damon_close(d);
    /* We made the only kdamond: give it back. */
    EXPECT_WRITES(f, 0, "0/contexts/0/targets/nr_targets=0", "0/contexts/0/schemes/nr_schemes=0",
                  "nr_kdamonds=0");
    assert_string_equal(get(f, K "/nr_kdamonds"), "0");
}

static void assert_scheme(struct fake *f, unsigned i)
{
    const char *ctx = K "/0/contexts/0/schemes";
    char idx[16];
    snprintf(idx, sizeof(idx), "%u", i);
    assert_string_equal(get(f, "%s/%u/action", ctx, i), "stat");
    assert_string_equal(get(f, "%s/%u/access_pattern/sz/max", ctx, i), "18446744073709551615");
    assert_string_equal(get(f, "%s/%u/access_pattern/nr_accesses/max", ctx, i), "4294967295");
    assert_string_equal(get(f, "%s/%u/access_pattern/age/max", ctx, i), "4294967295");
    assert_string_equal(get(f, "%s/%u/filters/nr_filters", ctx, i), "1");
    assert_string_equal(get(f, "%s/%u/filters/0/type", ctx, i), "target");
    assert_string_equal(get(f, "%s/%u/filters/0/damon_target_idx", ctx, i), idx);
    assert_string_equal(get(f, "%s/%u/filters/0/matching", ctx, i), "N");
}

static void test_targets_come_and_go(void **state)
{
    struct fake *f = *state;
    const char *T = K "/0/contexts/0/targets";
    make_tree(f, 0);
    add_proc(f, 100);
    add_proc(f, 200);
    add_proc(f, 300);
    _cleanup_(nt_damon_closep) struct nt_damon *d = open_ok(f);
    clear_log(f);

    /* The first target starts the kdamond. */
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100 }, 1), 0);
    EXPECT_WRITES(f, 0, "0/contexts/0/targets/nr_targets=1", "0/contexts/0/targets/0/pid_target=100",
                  "0/contexts/0/schemes/nr_schemes=1", "0/contexts/0/schemes/0/action=stat", "0/state=on");
    assert_true(nt_damon_running(d));
    assert_string_equal(get(f, K "/0/state"), "on");
    assert_scheme(f, 0);
    assert_string_equal(get(f, NT_DAMON_STATE_FILE), "kdamond=0\npid=900");

    /* A second one is committed while on; the first keeps its place. */
    clear_log(f);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 200, 100 }, 2), 0);
    EXPECT_WRITES(f, 0, "0/contexts/0/monitoring_attrs/nr_regions/min=20",
                  "0/contexts/0/targets/nr_targets=2", "0/contexts/0/targets/0/pid_target=100",
                  "0/contexts/0/targets/1/pid_target=200", "0/contexts/0/schemes/nr_schemes=2",
                  "0/state=commit");
    assert_false(wrote(f, "0/state=on"));
    assert_string_equal(get(f, "%s/nr_targets", T), "2");
    assert_string_equal(get(f, "%s/0/pid_target", T), "100");
    assert_string_equal(get(f, "%s/1/pid_target", T), "200");
    assert_scheme(f, 0);
    assert_scheme(f, 1);
    assert_int_equal(nt_damon_nr_targets(d), 2);

    /* Same set again: nothing to do. */
    clear_log(f);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100, 200 }, 2), 0);
    assert_int_equal(f->nr_log, 0);

    /* 100 leaves, 300 comes: 300 takes the free place, 200 stays at 1,
     * the count (and so the schemes) is unchanged. */
    clear_log(f);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 200, 300 }, 2), 0);
    EXPECT_WRITES(f, 0, "0/contexts/0/targets/0/pid_target=300", "0/state=commit");
    assert_false(wrote(f, "0/contexts/0/targets/nr_targets"));
    assert_false(wrote(f, "0/contexts/0/schemes/nr_schemes"));
    assert_false(wrote(f, "0/contexts/0/targets/1/pid_target"));
    assert_int_equal(nt_damon_targets(d)[0], 300);
    assert_int_equal(nt_damon_targets(d)[1], 200);

    /* 300 leaves: the last (200) moves into its place. */
    clear_log(f);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 200 }, 1), 0);
    EXPECT_WRITES(f, 0, "0/contexts/0/targets/nr_targets=1", "0/contexts/0/targets/0/pid_target=200",
                  "0/contexts/0/schemes/nr_schemes=1", "0/state=commit");
    assert_string_equal(get(f, "%s/0/pid_target", T), "200");
    assert_scheme(f, 0);

    /* The last one leaves: off, since DAMON cannot run without targets. */
    clear_log(f);
    assert_int_equal(nt_damon_set_targets(d, NULL, 0), 0);
    EXPECT_WRITES(f, 0, "0/state=off");
    assert_false(nt_damon_running(d));
    assert_string_equal(get(f, K "/0/state"), "off");

    /* And back on. */
    clear_log(f);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100 }, 1), 0);
    EXPECT_WRITES(f, 0, "0/contexts/nr_contexts=1", "0/contexts/0/targets/0/pid_target=100", "0/state=on");
    assert_string_equal(get(f, NT_DAMON_STATE_FILE), "kdamond=0\npid=901");

    /* Close turns it off and cleans up. */
    clear_log(f);
    nt_damon_close(NT_TAKE_PTR(d));
    EXPECT_WRITES(f, 0, "0/state=off", "0/contexts/0/targets/nr_targets=0", "nr_kdamonds=0");
    assert_false(exists(f, NT_DAMON_STATE_FILE));
}

static void test_too_many_targets(void **state)
{
    struct fake *f = *state;
    make_tree(f, 0);
    _cleanup_(nt_damon_closep) struct nt_damon *d = open_ok(f);
    pid_t many[NT_DAMON_MAX_TARGETS + 1] = { 0 };
    assert_int_equal(nt_damon_set_targets(d, many, NT_DAMON_MAX_TARGETS + 1), -E2BIG);
}

static void test_dead_targets_left_out(void **state)
{
    struct fake *f = *state;
    make_tree(f, 0);
    add_proc(f, 100);
    _cleanup_(nt_damon_closep) struct nt_damon *d = open_ok(f);
    /* 200 never existed: `on` would be EINVAL. */
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100, 200 }, 2), 0);
    assert_int_equal(nt_damon_nr_targets(d), 1);
    assert_string_equal(get(f, K "/0/contexts/0/targets/0/pid_target"), "100");
    /* Only dead ones: stays off. */
    kill_proc(f, 100);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100 }, 1), 0);
    assert_false(nt_damon_running(d));
}

static void test_commit_drops_kdamond(void **state)
{
    struct fake *f = *state;
    make_tree(f, 0);
    add_proc(f, 100);
    add_proc(f, 200);
    add_proc(f, 300);
    _cleanup_(nt_damon_closep) struct nt_damon *d = open_ok(f);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100, 200 }, 2), 0);
    /* 200 dies between our check and DAMON's: the commit "succeeds", the
     * kdamond is gone. We notice and start it again without 200. */
    clear_log(f);
    f->commit_drops = true;
    kill_proc(f, 200);
    add_proc(f, 200);                       /* (alive at our check) */
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100, 200, 300 }, 3), 0);
    EXPECT_WRITES(f, 0, "0/state=commit", "0/contexts/nr_contexts=1", "0/state=on");
    assert_true(nt_damon_running(d));
    assert_string_equal(get(f, K "/0/state"), "on");
    assert_int_equal(nt_damon_nr_targets(d), 3);
    assert_string_equal(get(f, NT_DAMON_STATE_FILE), "kdamond=0\npid=901");

    /* A dead pid reaches the commit: the kernel drops the kdamond; the
     * restart leaves the dead one out. */
    clear_log(f);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100, 300 }, 2), 0);
    kill_proc(f, 300);
    add_proc(f, 400);
    f->fail_suffix = NULL;
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100, 300, 400 }, 3), 0);
    assert_true(nt_damon_running(d));
    assert_int_equal(nt_damon_nr_targets(d), 2);
    assert_string_equal(get(f, K "/0/contexts/0/targets/0/pid_target"), "100");
    assert_string_equal(get(f, K "/0/contexts/0/targets/1/pid_target"), "400");
}

static void test_on_einval_retries_without_the_dead(void **state)
{
    struct fake *f = *state;
    make_tree(f, 0);
    add_proc(f, 100);
    _cleanup_(nt_damon_closep) struct nt_damon *d = open_ok(f);
    clear_log(f);
    f->fail_suffix = "/state";
    f->fail_errno = EINVAL;
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100 }, 1), 0);
    EXPECT_WRITES(f, 0, "0/state=on", "0/state=on");
    assert_true(nt_damon_running(d));
}

static void test_commit_busy_keeps_running_set(void **state)
{
    struct fake *f = *state;
    make_tree(f, 0);
    add_proc(f, 100);
    add_proc(f, 200);
    _cleanup_(nt_damon_closep) struct nt_damon *d = open_ok(f);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100 }, 1), 0);
    /* Another DAMON user's request is in flight: try later. */
    f->fail_suffix = "/state";
    f->fail_errno = EBUSY;
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100, 200 }, 2), -EBUSY);
    assert_int_equal(nt_damon_nr_targets(d), 1);
    assert_int_equal(nt_damon_targets(d)[0], 100);
    uint64_t bad = 0;
    assert_int_equal(nt_damon_collect(d, NULL, NULL, &bad), 0);   /* not while files differ */
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100, 200 }, 2), 0);
    assert_int_equal(nt_damon_nr_targets(d), 2);
}

/* ---- collecting ---------------------------------------------------------------- */

struct seen {
    pid_t pid[64];
    struct nt_damon_region r[64];
    size_t n;
};

static void on_region(pid_t pid, const struct nt_damon_region *r, void *userdata)
{
    struct seen *s = userdata;
    assert_true(s->n < 64);
    s->pid[s->n] = pid;
    s->r[s->n++] = *r;
}

static void test_collect_attributes_regions(void **state)
{
    struct fake *f = *state;
    make_tree(f, 0);
    add_proc(f, 100);
    add_proc(f, 200);
    f->regions[f->nr_regions++] = (struct fake_region){ 100, 0x10000, 0x20000, 30, 4 };
    f->regions[f->nr_regions++] = (struct fake_region){ 100, 0x20000, 0x90000, 0, 9 };
    f->regions[f->nr_regions++] = (struct fake_region){ 200, 0x7000, 0x9000, 5, 1 };
    _cleanup_(nt_damon_closep) struct nt_damon *d = open_ok(f);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100, 200 }, 2), 0);
    struct seen s = { 0 };
    uint64_t bad = 0;
    assert_int_equal(nt_damon_collect(d, on_region, &s, &bad), 3);
    assert_int_equal(bad, 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.pid[0], 100);
    assert_int_equal(s.r[0].start, 0x10000);
    assert_int_equal(s.r[0].end, 0x20000);
    assert_int_equal(s.r[0].nr_accesses, 30);
    assert_int_equal(s.r[0].age, 4);
    assert_int_equal(s.pid[1], 100);
    assert_int_equal(s.r[1].start, 0x20000);
    /* Scheme 1's directories are numbered 2.., not 0.. */
    assert_true(exists(f, K "/0/contexts/0/schemes/1/tried_regions/2"));
    assert_int_equal(s.pid[2], 200);
    assert_int_equal(s.r[2].start, 0x7000);
    assert_int_equal(s.r[2].nr_accesses, 5);
}

static void test_collect_real_layout(void **state)
{
    struct fake *f = *state;
    make_tree(f, 0);
    add_proc(f, 168);
    add_proc(f, 173);
    f->fixture = "damon/tried-regions-6.12";
    _cleanup_(nt_damon_closep) struct nt_damon *d = open_ok(f);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 168, 173 }, 2), 0);
    struct seen s = { 0 };
    uint64_t bad = 0;
    assert_int_equal(nt_damon_collect(d, on_region, &s, &bad), 22);
    assert_int_equal(bad, 0);
    size_t n168 = 0, hot = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (s.pid[i] == 168)
            n168++;
        /* The hot quarter of pid 168's 64 MiB buffer. */
        if (s.pid[i] == 168 && s.r[i].start >= 140175220932608ull && s.r[i].end <= 140175237709824ull &&
            s.r[i].nr_accesses >= 19)
            hot++;
    }
    assert_int_equal(n168, 14);
    assert_int_equal(hot, 2);
    /* In address order within a target. */
    for (size_t i = 1; i < s.n; i++)
        if (s.pid[i] == s.pid[i - 1])
            assert_true(s.r[i].start >= s.r[i - 1].end);
    assert_int_equal(s.pid[14], 173);
    assert_int_equal(s.r[18].nr_accesses, 23);
    assert_int_equal(s.r[21].nr_accesses, 11);
}

static void test_collect_skips_junk(void **state)
{
    struct fake *f = *state;
    make_tree(f, 0);
    add_proc(f, 100);
    f->regions[f->nr_regions++] = (struct fake_region){ 100, 0x10000, 0x20000, 3, 1 };
    f->junk = true;
    _cleanup_(nt_damon_closep) struct nt_damon *d = open_ok(f);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100 }, 1), 0);
    struct seen s = { 0 };
    uint64_t bad = 0;
    assert_int_equal(nt_damon_collect(d, on_region, &s, &bad), 1);
    assert_int_equal(bad, 4);
    assert_int_equal(s.r[0].start, 0x10000);
    /* A scheme directory gone missing counts as bad too, not fatal. */
    f->junk = false;
    f->drop_tried = true;
    bad = 0;
    s.n = 0;
    assert_int_equal(nt_damon_collect(d, on_region, &s, &bad), 0);
    assert_int_equal(bad, 1);
}

static void test_collect_kdamond_stopped(void **state)
{
    struct fake *f = *state;
    make_tree(f, 0);
    add_proc(f, 100);
    _cleanup_(nt_damon_closep) struct nt_damon *d = open_ok(f);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100 }, 1), 0);
    /* Its only target exited: DAMON stopped the kdamond by itself. */
    kill_proc(f, 100);
    make_kdamond(f, 0, false, -1);
    uint64_t bad = 0;
    assert_int_equal(nt_damon_collect(d, on_region, NULL, &bad), -ESRCH);
    assert_false(nt_damon_running(d));
    /* Restarting with nobody alive leaves it off without writing `on`. */
    clear_log(f);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100 }, 1), 0);
    assert_false(wrote(f, "0/state="));
    /* Someone else's request in flight: EBUSY, try later. */
    add_proc(f, 100);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100 }, 1), 0);
    f->fail_suffix = "/state";
    f->fail_errno = EBUSY;
    assert_int_equal(nt_damon_collect(d, on_region, NULL, &bad), -EBUSY);
    assert_true(nt_damon_running(d));
}

/* ---- stale kdamonds and other users -------------------------------------------- */

static void test_stale_kdamond_stopped(void **state)
{
    struct fake *f = *state;
    make_tree(f, 2);
    make_kdamond(f, 1, true, 777);
    put(f, "kdamond=1\npid=777", NT_DAMON_STATE_FILE);
    _cleanup_(nt_damon_closep) struct nt_damon *d = open_ok(f);
    EXPECT_WRITES(f, 0, "1/state=off", "1/contexts/nr_contexts=1");
    assert_string_equal(get(f, K "/1/state"), "off");
    assert_int_equal(nt_damon_index(d), 1);           /* its slot is ours again */
    assert_false(wrote(f, "nr_kdamonds"));
    assert_false(wrote(f, "0/"));
    assert_false(exists(f, NT_DAMON_STATE_FILE));     /* until we run */
}

static void test_stale_file_other_pid_left_alone(void **state)
{
    struct fake *f = *state;
    make_tree(f, 2);
    make_kdamond(f, 1, true, 778);              /* restarted by someone else */
    put(f, "kdamond=1\npid=777", NT_DAMON_STATE_FILE);
    _cleanup_(nt_damon_closep) struct nt_damon *d = open_ok(f);
    assert_false(wrote(f, "1/"));
    assert_string_equal(get(f, K "/1/state"), "on");
    assert_int_equal(nt_damon_index(d), 0);
    assert_false(exists(f, NT_DAMON_STATE_FILE));
}

static void test_stale_file_junk(void **state)
{
    struct fake *f = *state;
    make_tree(f, 1);
    make_kdamond(f, 0, true, 777);
    put(f, "kdamond=zero\npid=777", NT_DAMON_STATE_FILE);
    char why[256] = "";
    struct nt_damon *d = NULL;
    /* Unreadable: nothing of ours to stop, and kdamond 0 is not ours. */
    assert_int_equal(nt_damon_open(f->root, &params, fake_hook, f, &d, why, sizeof(why)), -EBUSY);
    assert_false(wrote(f, "0/"));
    assert_false(exists(f, NT_DAMON_STATE_FILE));
}

static void test_stale_file_names_missing_kdamond(void **state)
{
    struct fake *f = *state;
    make_tree(f, 1);
    put(f, "kdamond=5\npid=777", NT_DAMON_STATE_FILE);
    _cleanup_(nt_damon_closep) struct nt_damon *d = open_ok(f);
    assert_int_equal(nt_damon_index(d), 0);
}

static void test_coexists_with_other_user(void **state)
{
    struct fake *f = *state;
    make_tree(f, 3);
    make_kdamond(f, 0, true, 50);               /* someone else's */
    add_proc(f, 100);
    struct nt_damon *d = open_ok(f);
    assert_int_equal(nt_damon_index(d), 2);     /* the highest idle one */
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100 }, 1), 0);
    nt_damon_close(d);
    /* kdamond 0 and nr_kdamonds never touched. */
    for (size_t i = 0; i < f->nr_log; i++)
        assert_true(strncmp(f->log[i], "2/", 2) == 0);
    assert_string_equal(get(f, K "/0/state"), "on");
    assert_string_equal(get(f, K "/nr_kdamonds"), "3");
}

static void test_slot_taken_while_off(void **state)
{
    struct fake *f = *state;
    make_tree(f, 2);
    add_proc(f, 100);
    _cleanup_(nt_damon_closep) struct nt_damon *d = open_ok(f);
    assert_int_equal(nt_damon_index(d), 1);
    /* While we had no targets, someone started kdamond 1. */
    make_kdamond(f, 1, true, 61);
    clear_log(f);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100 }, 1), 0);
    assert_int_equal(nt_damon_index(d), 0);
    assert_false(wrote(f, "1/"));
    assert_string_equal(get(f, K "/0/state"), "on");
    assert_string_equal(get(f, NT_DAMON_STATE_FILE), "kdamond=0\npid=900");
}

static void test_close_leaves_foreign_kdamond(void **state)
{
    struct fake *f = *state;
    make_tree(f, 1);
    add_proc(f, 100);
    struct nt_damon *d = open_ok(f);
    assert_int_equal(nt_damon_set_targets(d, (pid_t[]){ 100 }, 1), 0);
    /* Someone stopped ours and started their own in the same slot. */
    make_kdamond(f, 0, true, 4242);
    clear_log(f);
    nt_damon_close(d);
    assert_int_equal(f->nr_log, 0);
    assert_string_equal(get(f, K "/0/state"), "on");
}

/* ---- the sampler ops and their worker ---------------------------------------- */

struct got {
    struct nt_access a[64];
    size_t n;
};

static void on_access(const struct nt_access *a, void *userdata)
{
    struct got *g = userdata;
    assert_true(g->n < 64);
    g->a[g->n++] = *a;
}

static void test_ops(void **state)
{
    struct fake *f = *state;
    const struct nt_sampler_ops *ops = &nt_sampler_damon_ops;
    assert_string_equal(ops->name, "damon");
    make_tree(f, 0);
    add_proc(f, 100);
    add_proc(f, 200);
    f->regions[f->nr_regions++] = (struct fake_region){ 100, 0x10000, 0x20000, 20, 5 };
    f->regions[f->nr_regions++] = (struct fake_region){ 100, 0x20000, 0x90000, 0, 9 };   /* cold */
    f->regions[f->nr_regions++] = (struct fake_region){ 200, 0x7000, 0x9000, 40, 1 };
    struct nt_sampler_env env = { .root = f->root, .config = NULL, .self = 77 };
    char why[256] = "";
    assert_int_equal(ops->probe(&env, why, sizeof(why)), 0);
    void *s = NULL;
    assert_int_equal(nt_sampler_damon_open_with(&env, fake_hook, f, &s, why, sizeof(why)), 0);

    assert_int_equal(ops->watch(s, 77), -EINVAL);        /* never ourselves */
    assert_int_equal(ops->unwatch(s, 100), -ENOENT);
    assert_int_equal(ops->watch(s, 100), 0);
    assert_int_equal(ops->watch(s, 200), 0);
    assert_int_equal(ops->watch(s, 200), 0);             /* twice is once */
    assert_int_equal(nt_sampler_damon_sync(s), 0);
    struct nt_sampler_stats st;
    ops->stats(s, &st);
    assert_int_equal(st.targets, 2);
    assert_string_equal(get(f, K "/0/state"), "on");

    /* The first drain asks for regions; they arrive with the next. */
    struct got g = { 0 };
    assert_int_equal(ops->drain(s, 1000000, 0, on_access, &g), 0);
    assert_int_equal(nt_sampler_damon_sync(s), 0);
    assert_int_equal(ops->drain(s, 1200000, 0, on_access, &g), 2);
    assert_int_equal(g.n, 2);
    for (size_t i = 0; i < g.n; i++) {
        const struct nt_access *a = &g.a[i];
        if (a->pid == 100) {
            assert_int_equal(a->vaddr, 0x10000);
            assert_int_equal(a->nr_pages, 16);
            assert_int_equal(a->weight, 20);          /* 20 of 40 samples, one aggregation interval */
        } else {
            assert_int_equal(a->pid, 200);
            assert_int_equal(a->nr_pages, 2);
            assert_int_equal(a->weight, 40);
        }
        assert_int_equal(a->tid, 0);
        assert_int_equal(a->cpu, -1);
        assert_int_equal(a->source, NT_MEM_SRC_UNKNOWN);
    }
    /* The next snapshot stands for the 400 ms since; pid 200's region
     * has held only 2 intervals, so it is credited 400 ms at most. */
    assert_int_equal(nt_sampler_damon_sync(s), 0);
    g.n = 0;
    assert_int_equal(ops->drain(s, 1600000, 0, on_access, &g), 2);
    for (size_t i = 0; i < g.n; i++)
        assert_int_equal(g.a[i].weight, g.a[i].pid == 100 ? 40 : 80);
    ops->stats(s, &st);
    assert_int_equal(st.samples, 4);

    /* Unwatched: gone from the kdamond and from what is delivered. */
    assert_int_equal(ops->unwatch(s, 100), 0);
    assert_int_equal(nt_sampler_damon_sync(s), 0);
    ops->stats(s, &st);
    assert_int_equal(st.targets, 1);
    assert_string_equal(get(f, K "/0/contexts/0/targets/0/pid_target"), "200");
    g.n = 0;
    ops->drain(s, 1800000, 0, on_access, &g);
    for (size_t i = 0; i < g.n; i++)
        assert_int_equal(g.a[i].pid, 200);

    /* Full. */
    for (pid_t p = 1000; p < 1000 + NT_DAMON_MAX_TARGETS - 1; p++)
        assert_int_equal(ops->watch(s, p), 0);
    assert_int_equal(ops->watch(s, 5000), -ENOSPC);

    ops->close(s);
    assert_string_equal(get(f, K "/nr_kdamonds"), "0");
    ops->close(NULL);
}

static void test_ops_restart_after_exit(void **state)
{
    struct fake *f = *state;
    const struct nt_sampler_ops *ops = &nt_sampler_damon_ops;
    make_tree(f, 0);
    add_proc(f, 100);
    add_proc(f, 200);
    f->regions[f->nr_regions++] = (struct fake_region){ 200, 0x7000, 0x9000, 10, 3 };
    struct nt_sampler_env env = { .root = f->root, .self = 1 };
    char why[256];
    void *s = NULL;
    assert_int_equal(nt_sampler_damon_open_with(&env, fake_hook, f, &s, why, sizeof(why)), 0);
    assert_int_equal(ops->watch(s, 100), 0);
    assert_int_equal(nt_sampler_damon_sync(s), 0);
    /* 100 exits; DAMON stops the kdamond by itself. 200 arrives. */
    kill_proc(f, 100);
    make_kdamond(f, 0, false, -1);
    struct got g = { 0 };
    ops->drain(s, 1000000, 0, on_access, &g);
    assert_int_equal(nt_sampler_damon_sync(s), 0);
    assert_int_equal(ops->watch(s, 200), 0);
    assert_int_equal(nt_sampler_damon_sync(s), 0);
    assert_string_equal(get(f, K "/0/state"), "on");
    assert_string_equal(get(f, K "/0/contexts/0/targets/0/pid_target"), "200");
    ops->drain(s, 1200000, 0, on_access, &g);
    assert_int_equal(nt_sampler_damon_sync(s), 0);
    assert_int_equal(ops->drain(s, 1400000, 0, on_access, &g), 1);
    assert_int_equal(g.a[0].pid, 200);
    ops->close(s);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_probe_absent),
        T(test_probe_incomplete),
        T(test_probe_ok),
        T(test_probe_permission),
        T(test_probe_no_vaddr),
        T(test_open_no_vaddr),
        T(test_probe_busy),
        T(test_probe_busy_with_our_stale),
        T(test_open_close_creates_and_releases),
        T(test_targets_come_and_go),
        T(test_too_many_targets),
        T(test_dead_targets_left_out),
        T(test_commit_drops_kdamond),
        T(test_on_einval_retries_without_the_dead),
        T(test_commit_busy_keeps_running_set),
        T(test_collect_attributes_regions),
        T(test_collect_real_layout),
        T(test_collect_skips_junk),
        T(test_collect_kdamond_stopped),
        T(test_stale_kdamond_stopped),
        T(test_stale_file_other_pid_left_alone),
        T(test_stale_file_junk),
        T(test_stale_file_names_missing_kdamond),
        T(test_coexists_with_other_user),
        T(test_slot_taken_while_off),
        T(test_close_leaves_foreign_kdamond),
        T(test_ops),
        T(test_ops_restart_after_exit),
    };
    nt_log_set_max_level(LOG_ERR);
    return cmocka_run_group_tests_name("sampler-damon", tests, NULL, NULL);
}
