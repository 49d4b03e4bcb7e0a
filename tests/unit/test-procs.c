/* Watched processes over the fake /proc trees in tests/fixtures/procs/
 * (scan1 and scan2: the same machine ten seconds apart, made by
 * mkprocs.py), and once over this machine's real /proc.
 *
 * The root handed to nt_procs_new is a symlink in a temporary directory;
 * pointing it at scan2 between scans is how time passes. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "numatier/config.h"
#include "numatier/procs.h"
#include "numatier/topology.h"
#include "numatier/util.h"

#define MiB (UINT64_C(1) << 20)
#define SELF 100                      /* numatierd in the fixtures */
#define NOW1 UINT64_C(50000000000)
#define NOW2 (NOW1 + 10000000)        /* scan2 is 10 s later */

struct env {
    char dir[64];                     /* temporary directory */
    char root[PATH_MAX];              /* dir/root -> a fixture tree */
    struct nt_config cfg;
    struct nt_topology topo;
    int cpu_node[8];
    struct nt_procs *procs;
    /* what the change callback saw, in order */
    struct change {
        pid_t pid;
        uint32_t id;
        bool added;
    } changes[32];
    size_t nr_changes;
};

static const char *fixture(const char *name)
{
    static char path[PATH_MAX];
    const char *dir = getenv("NT_FIXTURES");
    char rel[PATH_MAX];
    snprintf(rel, sizeof(rel), "%s/procs/%s", dir ? dir : "tests/fixtures", name);
    if (!realpath(rel, path))
        fail_msg("no fixture %s (run from the repository root or set NT_FIXTURES)", rel);
    return path;
}

static void point_root_at(struct env *e, const char *tree)
{
    unlink(e->root);
    assert_int_equal(symlink(fixture(tree), e->root), 0);
}

static void set_str(char **field, const char *value)
{
    free(*field);
    *field = strdup(value);
    assert_non_null(*field);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    snprintf(e->dir, sizeof(e->dir), "/tmp/nt-test-procs.XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->root, sizeof(e->root), "%s/root", e->dir);
    point_root_at(e, "scan1");

    nt_config_init(&e->cfg);
    e->cfg.min_rss_bytes = 64 * MiB;
    e->cfg.min_cpu_pct = 0;
    e->cfg.max_procs = 256;
    /* two nodes: CPUs 0-3 and 4-7 */
    for (int c = 0; c < 8; c++)
        e->cpu_node[c] = c / 4;
    e->topo = (struct nt_topology){ .nr_nodes = 2, .cpu_node = e->cpu_node, .nr_cpu_ids = 8 };
    assert_int_equal(nt_procs_new(e->root, SELF, &e->procs), 0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    nt_procs_free(e->procs);
    nt_config_done(&e->cfg);
    unlink(e->root);
    rmdir(e->dir);
    free(e);
    return 0;
}

static void on_change(const struct nt_proc *p, bool added, void *ud)
{
    struct env *e = ud;
    assert_true(e->nr_changes < NT_ARRAY_SIZE(e->changes));
    e->changes[e->nr_changes++] = (struct change){ p->key.pid, p->id, added };
}

static void scan(struct env *e, uint64_t now)
{
    e->nr_changes = 0;
    assert_int_equal(nt_procs_scan(e->procs, &e->cfg, &e->topo, now, on_change, e), 0);
}

/* The watched pids, in order, as "1234 2000". */
static const char *watched(const struct env *e)
{
    static char buf[256];
    size_t n, len = 0;
    const struct nt_proc *l = nt_procs_list(e->procs, &n);
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%d", i ? " " : "", (int)l[i].key.pid);
    return buf;
}

static const struct nt_proc *find(const struct env *e, pid_t pid)
{
    const struct nt_proc *p = nt_procs_find(e->procs, pid);
    if (!p)
        fail_msg("pid %d is not watched", (int)pid);
    static const struct nt_proc none = { .pidfd = -1 };
    return p ? p : &none;
}

static void assert_change(const struct env *e, size_t i, pid_t pid, uint32_t id, bool added)
{
    assert_true(i < e->nr_changes);
    const struct change *c = &e->changes[i];
    if (c->pid != pid || c->id != id || c->added != added)
        fail_msg("change %zu: got %s pid %d id %u, want %s pid %d id %u", i, c->added ? "add" : "remove",
                 (int)c->pid, c->id, added ? "add" : "remove", (int)pid, id);
}

/* ---- fixture scans --------------------------------------------------------- */

static void test_first_scan(void **state)
{
    struct env *e = *state;
    scan(e, NOW1);
    /* not: 1 (12 MiB), 2 3 45 (kernel threads), 100 (self), 3000 (4 MiB),
     * 5000 (vanished), 6000 (zombie) */
    assert_string_equal(watched(e), "1234 2000 4000 7000");
    assert_int_equal(e->nr_changes, 4);
    assert_change(e, 0, 1234, 1, true);
    assert_change(e, 1, 2000, 2, true);
    assert_change(e, 2, 4000, 3, true);
    assert_change(e, 3, 7000, 4, true);

    const struct nt_proc *pg = find(e, 1234);
    assert_int_equal(pg->key.start_time, 100);
    assert_string_equal(pg->comm, "postgres");
    assert_string_equal(pg->cgroup, "/system.slice/postgresql.service");
    assert_int_equal(pg->rss_bytes, 512 * MiB);
    assert_int_equal(pg->cpu_ticks, 49950);
    assert_int_equal(pg->pidfd, -1);                  /* fixture root: no pidfds */
    assert_true(pg->cpu_pct > 49.99 && pg->cpu_pct < 50.01);   /* lifetime average */

    struct nt_procs_stats st;
    nt_procs_get_stats(e->procs, &st);
    assert_int_equal(st.scans, 1);
    assert_int_equal(st.added, 4);
    assert_int_equal(st.removed, 0);
    assert_int_equal(st.exited_mid_cycle, 1);         /* 5000 */
    assert_int_equal(st.reused_pids, 0);
    assert_null(nt_procs_find(e->procs, 100));
    assert_null(nt_procs_find(e->procs, 2));
}

static void test_threads_to_nodes(void **state)
{
    struct env *e = *state;
    scan(e, NOW1);
    const struct nt_proc *java = find(e, 2000);
    assert_int_equal(java->nr_threads, 3);
    const int tids[] = { 2000, 2001, 2002 }, cpus[] = { 2, 3, 4 }, nodes[] = { 0, 0, 1 };
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(java->threads[i].tid, tids[i]);
        assert_int_equal(java->threads[i].cpu, cpus[i]);
        assert_int_equal(java->threads[i].node, nodes[i]);
    }
    assert_int_equal(nt_proc_thread_nodes(java), 0x3);
    const struct nt_proc *pg = find(e, 1234);
    assert_int_equal(pg->nr_threads, 2);
    assert_int_equal(pg->threads[1].tid, 1240);
    assert_int_equal(pg->threads[1].node, 1);         /* CPU 5 */
    assert_int_equal(nt_proc_thread_nodes(find(e, 4000)), 0x2);   /* CPU 6 */
    assert_int_equal(nt_proc_thread_nodes(find(e, 7000)), 0x1);   /* CPU 1 */

    /* without a topology, nodes are unknown */
    struct nt_procs *p = NULL;
    assert_int_equal(nt_procs_new(e->root, SELF, &p), 0);
    assert_int_equal(nt_procs_scan(p, &e->cfg, NULL, NOW1, NULL, NULL), 0);
    const struct nt_proc *j = nt_procs_find(p, 2000);
    assert_non_null(j);
    assert_int_equal(j->threads[2].cpu, 4);
    assert_int_equal(j->threads[2].node, -1);
    assert_int_equal(nt_proc_thread_nodes(j), 0);
    nt_procs_free(p);
}

/* scan2: java exited, pid 1234 was recycled, newproc appeared. */
static void test_pid_reuse_and_exit(void **state)
{
    struct env *e = *state;
    scan(e, NOW1);
    assert_true(nt_proc_still_same(e->procs, find(e, 1234)));
    point_root_at(e, "scan2");
    /* before the rescan, the held instances are seen to be stale */
    assert_false(nt_proc_still_same(e->procs, find(e, 1234)));    /* start time changed */
    assert_false(nt_proc_still_same(e->procs, find(e, 2000)));    /* gone */
    assert_true(nt_proc_still_same(e->procs, find(e, 4000)));

    scan(e, NOW2);
    assert_string_equal(watched(e), "1234 4000 7000 8000");
    /* removals first, so a sampler unwatches the old 1234 before watching the new */
    assert_int_equal(e->nr_changes, 4);
    assert_change(e, 0, 1234, 1, false);
    assert_change(e, 1, 2000, 2, false);
    assert_change(e, 2, 1234, 5, true);
    assert_change(e, 3, 8000, 6, true);

    const struct nt_proc *pg = find(e, 1234);
    assert_int_equal(pg->id, 5);
    assert_int_equal(pg->key.start_time, 500);
    assert_int_equal(pg->rss_bytes, 600 * MiB);
    assert_true(pg->cpu_pct < 0.1);                   /* fresh: its own lifetime, not the old ticks */
    assert_int_equal(pg->threads[0].node, 1);
    assert_true(nt_proc_still_same(e->procs, pg));

    const struct nt_proc *batch = find(e, 4000);
    assert_int_equal(batch->id, 3);                   /* kept: same id */
    assert_true(batch->cpu_pct > 99.9 && batch->cpu_pct < 100.1);   /* 1000 ticks in 10 s */
    assert_int_equal(batch->nr_threads, 2);
    assert_int_equal(nt_proc_thread_nodes(batch), 0x3);

    const struct nt_proc *np = find(e, 8000);
    assert_true(np->cpu_pct > 9.99 && np->cpu_pct < 10.01);          /* 6 s over 60 s of life */

    assert_non_null(nt_procs_find_id(e->procs, 5));
    assert_int_equal(nt_procs_find_id(e->procs, 5)->key.pid, 1234);
    assert_int_equal(nt_procs_find_id(e->procs, 6)->key.pid, 8000);
    assert_null(nt_procs_find_id(e->procs, 1));       /* the old instance */
    assert_null(nt_procs_find_id(e->procs, 2));

    struct nt_procs_stats st;
    nt_procs_get_stats(e->procs, &st);
    assert_int_equal(st.scans, 2);
    assert_int_equal(st.added, 6);
    assert_int_equal(st.removed, 2);
    assert_int_equal(st.reused_pids, 1);
    assert_int_equal(st.exited_mid_cycle, 2);         /* 5000 in scan1, java since */

    /* a third look at the same tree changes nothing */
    scan(e, NOW2 + 10000000);
    assert_int_equal(e->nr_changes, 0);
    assert_string_equal(watched(e), "1234 4000 7000 8000");
    assert_true(find(e, 4000)->cpu_pct < 0.01);       /* no ticks since */
}

static void test_min_cpu(void **state)
{
    struct env *e = *state;
    e->cfg.min_cpu_pct = 5;
    scan(e, NOW1);
    /* java ~2%, redis 0% (lifetime averages on first sight) */
    assert_string_equal(watched(e), "1234 4000");
    char why[256];
    assert_int_equal(nt_procs_explain(e->procs, &e->cfg, 2000, why, sizeof(why)), 0);
    assert_string_equal(why, "CPU 2.0% is below min_cpu 5.0%");
}

static void test_globs(void **state)
{
    struct env *e = *state;
    set_str(&e->cfg.include_comm, "post*, java");
    set_str(&e->cfg.exclude_cgroup, "/user.slice/*");
    scan(e, NOW1);
    assert_string_equal(watched(e), "1234");          /* java is in user.slice */

    struct nt_procs *p = NULL;
    set_str(&e->cfg.include_comm, "");
    set_str(&e->cfg.exclude_cgroup, "");
    set_str(&e->cfg.include_cgroup, "/system.slice/*");
    set_str(&e->cfg.exclude_comm, "redis*");
    assert_int_equal(nt_procs_new(e->root, SELF, &p), 0);
    assert_int_equal(nt_procs_scan(p, &e->cfg, &e->topo, NOW1, NULL, NULL), 0);
    size_t n;
    const struct nt_proc *l = nt_procs_list(p, &n);
    assert_int_equal(n, 1);
    assert_int_equal(l[0].key.pid, 1234);
    nt_procs_free(p);
}

/* A process that stops qualifying is removed, not counted as exited. */
static void test_no_longer_qualifies(void **state)
{
    struct env *e = *state;
    scan(e, NOW1);
    set_str(&e->cfg.exclude_comm, "java");
    scan(e, NOW1 + 1000000);
    assert_string_equal(watched(e), "1234 4000 7000");
    assert_int_equal(e->nr_changes, 1);
    assert_change(e, 0, 2000, 2, false);
    struct nt_procs_stats st;
    nt_procs_get_stats(e->procs, &st);
    assert_int_equal(st.exited_mid_cycle, 2);         /* 5000, once per scan */
    assert_int_equal(st.removed, 1);
    /* and comes back as a new instance when it qualifies again */
    set_str(&e->cfg.exclude_comm, "");
    scan(e, NOW1 + 2000000);
    assert_int_equal(e->nr_changes, 1);
    assert_change(e, 0, 2000, 5, true);
}

static void test_max_procs(void **state)
{
    struct env *e = *state;
    e->cfg.max_procs = 2;
    scan(e, NOW1);
    assert_string_equal(watched(e), "2000 4000");     /* 2 GiB and 1 GiB win */
    char why[256];
    assert_int_equal(nt_procs_explain(e->procs, &e->cfg, 1234, why, sizeof(why)), 0);
    assert_string_equal(why, "RSS 512.0 MiB: max_procs 2 larger processes are watched");
}

static void test_explain(void **state)
{
    struct env *e = *state;
    scan(e, NOW1);
    char why[256];
    const struct { pid_t pid; const char *want; } cases[] = {
        { 1234, "watched: RSS 512.0 MiB, CPU 50.0%" },
        { 1, "RSS 12.0 MiB is below min_rss 64.0 MiB" },
        { 2, "kernel thread: never watched" },
        { 3, "kernel thread: never watched" },
        { 45, "kernel thread: never watched" },        /* child of kthreadd, no PF_KTHREAD */
        { SELF, "numatierd itself: never watched" },
        { 3000, "RSS 4.0 MiB is below min_rss 64.0 MiB" },
    };
    for (size_t i = 0; i < NT_ARRAY_SIZE(cases); i++) {
        assert_int_equal(nt_procs_explain(e->procs, &e->cfg, cases[i].pid, why, sizeof(why)), 0);
        assert_string_equal(why, cases[i].want);
    }
    assert_int_equal(nt_procs_explain(e->procs, &e->cfg, 5000, why, sizeof(why)), -ESRCH);
    assert_int_equal(nt_procs_explain(e->procs, &e->cfg, 6000, why, sizeof(why)), -ESRCH);   /* zombie */
}

static void test_bad_root(void **state)
{
    struct env *e = *state;
    struct nt_procs *p = NULL;
    assert_int_equal(nt_procs_new("/nonexistent/numatier", SELF, &p), 0);
    assert_int_equal(nt_procs_scan(p, &e->cfg, NULL, NOW1, NULL, NULL), -ENOENT);
    size_t n = 99;
    (void)nt_procs_list(p, &n);
    assert_int_equal(n, 0);
    assert_null(nt_procs_find(p, 1));
    assert_null(nt_procs_find_id(p, 1));
    nt_procs_free(p);
    nt_procs_free(NULL);
}

/* ---- the real /proc ----------------------------------------------------------- */

static unsigned open_fds(void)
{
    unsigned n = 0;
    _cleanup_closedir_ DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    while (readdir(d))
        n++;
    return n;
}

static void test_real_proc(void **state)
{
    struct env *e = *state;
    e->cfg.min_rss_bytes = 0;
    /* a child to watch and then lose */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        pause();
        _exit(0);
    }
    struct nt_topology *topo = NULL;
    if (nt_topology_read("/", NULL, &topo) < 0)
        topo = NULL;
    unsigned fds = open_fds();
    struct nt_procs *p = NULL;
    assert_int_equal(nt_procs_new("/", getpid(), &p), 0);
    assert_int_equal(nt_procs_scan(p, &e->cfg, topo, 1000000, NULL, NULL), 0);

    size_t n;
    const struct nt_proc *l = nt_procs_list(p, &n);
    assert_true(n >= 2);
    assert_null(nt_procs_find(p, getpid()));          /* itself excluded */
    assert_null(nt_procs_find(p, 2));                 /* kthreadd */
    for (size_t i = 0; i < n; i++) {
        assert_true(l[i].key.pid > 0);
        assert_true(l[i].key.start_time > 0 || l[i].key.pid == 1);
        assert_true(l[i].nr_threads >= 1);
        assert_true(l[i].pidfd >= 0);
        assert_true(l[i].id > 0);
        assert_true(i == 0 || l[i].key.pid > l[i - 1].key.pid);
    }
    const struct nt_proc *init = nt_procs_find(p, 1);
    if (init) {                                       /* pid 1 may be a kernel-less stub in odd sandboxes */
        assert_true(nt_proc_still_same(p, init));
        assert_true(init->rss_bytes > 0);
    }
    const struct nt_proc *c = nt_procs_find(p, child);
    assert_non_null(c);
    assert_true(nt_proc_still_same(p, c));
    if (topo)
        for (unsigned i = 0; i < c->nr_threads; i++)
            assert_true(c->threads[i].node >= 0);

    kill(child, SIGKILL);
    assert_int_equal(waitpid(child, NULL, 0), child);
    assert_false(nt_proc_still_same(p, c));           /* pidfd says exited */
    assert_int_equal(nt_procs_scan(p, &e->cfg, topo, 2000000, NULL, NULL), 0);
    assert_null(nt_procs_find(p, child));
    struct nt_procs_stats st;
    nt_procs_get_stats(p, &st);
    assert_true(st.removed >= 1);
    assert_true(open_fds() > fds);                    /* pidfds held */
    nt_procs_free(p);
    assert_int_equal(open_fds(), fds);                /* and all closed */
    nt_topology_free(topo);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_to_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pid_reuse_and_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_min_cpu, setup, teardown),
        cmocka_unit_test_setup_teardown(test_globs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_longer_qualifies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_procs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_explain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_proc, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
