/* Process selection: each rule and its reason, globs, exclude over
 * include, and the max_procs cap by RSS. Plain structs only. */
#include <errno.h>
#include <fnmatch.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "numatier/config.h"
#include "numatier/select.h"
#include "numatier/util.h"

#define MiB (UINT64_C(1) << 20)
#define SELF 4242

/* A process that passes the rules below; PROC(.field = x) overrides one
 * default, which is what -Woverride-init would complain about. */
#pragma GCC diagnostic ignored "-Woverride-init"
#define PROC(...) ((struct nt_proc_info){ .pid = 1000, .ppid = 1, .comm = "postgres", \
    .cgroup = "/system.slice/postgresql.service", .rss_bytes = 512 * MiB, .cpu_pct = 20, __VA_ARGS__ })

static const struct nt_select_rules base = { .self = SELF, .min_rss_bytes = 64 * MiB, .min_cpu_pct = 5 };

static void expect(const struct nt_select_rules *r, struct nt_proc_info p, enum nt_select_reason want)
{
    enum nt_select_reason got = nt_select_check(r, &p);
    if (got != want)
        fail_msg("pid %d comm %s cgroup %s: got %s, want %s", (int)p.pid, p.comm, p.cgroup ? p.cgroup : "(null)",
                 nt_select_reason_to_string(got), nt_select_reason_to_string(want));
}

static void test_watched(void **state)
{
    (void)state;
    expect(&base, PROC(), NT_SELECT_WATCHED);
}

static void test_kernel_threads(void **state)
{
    (void)state;
    expect(&base, PROC(.kernel_thread = true), NT_SELECT_KERNEL_THREAD);
    expect(&base, PROC(.ppid = NT_KTHREADD_PID), NT_SELECT_KERNEL_THREAD);
    /* kernel threads lose even if an include glob names them */
    struct nt_select_rules r = base;
    r.include_comm = "kworker*";
    expect(&r, PROC(.comm = "kworker/0:1", .kernel_thread = true, .rss_bytes = 0), NT_SELECT_KERNEL_THREAD);
}

static void test_self(void **state)
{
    (void)state;
    expect(&base, PROC(.pid = SELF, .comm = "numatierd"), NT_SELECT_SELF);
}

static void test_thresholds(void **state)
{
    (void)state;
    expect(&base, PROC(.rss_bytes = 64 * MiB - 1), NT_SELECT_MIN_RSS);
    expect(&base, PROC(.rss_bytes = 64 * MiB), NT_SELECT_WATCHED);      /* "at least" */
    expect(&base, PROC(.cpu_pct = 4.99), NT_SELECT_MIN_CPU);
    expect(&base, PROC(.cpu_pct = 5), NT_SELECT_WATCHED);
    /* RSS is checked before CPU */
    expect(&base, PROC(.rss_bytes = 1, .cpu_pct = 0), NT_SELECT_MIN_RSS);
    struct nt_select_rules zero = { .self = SELF };
    expect(&zero, PROC(.rss_bytes = 0, .cpu_pct = 0), NT_SELECT_WATCHED);
}

static void test_comm_globs(void **state)
{
    (void)state;
    struct nt_select_rules r = base;
    r.include_comm = " java ,  post* ,nginx";
    expect(&r, PROC(), NT_SELECT_WATCHED);
    expect(&r, PROC(.comm = "java"), NT_SELECT_WATCHED);
    expect(&r, PROC(.comm = "nginx"), NT_SELECT_WATCHED);
    expect(&r, PROC(.comm = "javac"), NT_SELECT_NOT_INCLUDED_COMM);
    expect(&r, PROC(.comm = "redis-server"), NT_SELECT_NOT_INCLUDED_COMM);

    r = base;
    r.exclude_comm = "redis-*,sshd";
    expect(&r, PROC(.comm = "redis-server"), NT_SELECT_EXCLUDE_COMM);
    expect(&r, PROC(.comm = "sshd"), NT_SELECT_EXCLUDE_COMM);
    expect(&r, PROC(.comm = "sshd2"), NT_SELECT_WATCHED);
    expect(&r, PROC(), NT_SELECT_WATCHED);
}

static void test_empty_lists(void **state)
{
    (void)state;
    struct nt_select_rules r = base;
    r.include_comm = "";
    r.include_cgroup = " , ,";           /* only blanks and commas: no globs */
    r.exclude_comm = NULL;
    expect(&r, PROC(), NT_SELECT_WATCHED);
}

static void test_cgroup_globs(void **state)
{
    (void)state;
    struct nt_select_rules r = base;
    r.include_cgroup = "/system.slice/*";
    expect(&r, PROC(), NT_SELECT_WATCHED);
    expect(&r, PROC(.cgroup = "/system.slice/a.service/sub/deeper"), NT_SELECT_WATCHED);  /* '*' crosses '/' */
    expect(&r, PROC(.cgroup = "/user.slice/user-1000.slice/session-1.scope"), NT_SELECT_NOT_INCLUDED_CGROUP);
    expect(&r, PROC(.cgroup = NULL), NT_SELECT_NOT_INCLUDED_CGROUP);     /* unknown matches nothing */

    r = base;
    r.exclude_cgroup = "/user.slice/*";
    expect(&r, PROC(.cgroup = "/user.slice/user-1000.slice/session-1.scope"), NT_SELECT_EXCLUDE_CGROUP);
    expect(&r, PROC(.cgroup = NULL), NT_SELECT_WATCHED);
    expect(&r, PROC(), NT_SELECT_WATCHED);
}

/* Both include lists set: both must match. */
static void test_comm_and_cgroup(void **state)
{
    (void)state;
    struct nt_select_rules r = base;
    r.include_comm = "postgres";
    r.include_cgroup = "/db.slice/*";
    expect(&r, PROC(.cgroup = "/db.slice/pg.service"), NT_SELECT_WATCHED);
    expect(&r, PROC(), NT_SELECT_NOT_INCLUDED_CGROUP);
    expect(&r, PROC(.comm = "java", .cgroup = "/db.slice/pg.service"), NT_SELECT_NOT_INCLUDED_COMM);
}

static void test_exclude_wins(void **state)
{
    (void)state;
    struct nt_select_rules r = base;
    r.include_comm = "post*";
    r.exclude_comm = "postgres";
    expect(&r, PROC(), NT_SELECT_EXCLUDE_COMM);
    expect(&r, PROC(.comm = "postmaster"), NT_SELECT_WATCHED);

    r = base;
    r.include_cgroup = "/system.slice/*";
    r.exclude_cgroup = "/system.slice/postgresql.service";
    expect(&r, PROC(), NT_SELECT_EXCLUDE_CGROUP);

    r = base;                            /* exclude by cgroup beats include by comm */
    r.include_comm = "postgres";
    r.exclude_cgroup = "/system.slice/*";
    expect(&r, PROC(), NT_SELECT_EXCLUDE_CGROUP);
    /* exclusion comes before the thresholds */
    r.exclude_comm = "postgres";
    expect(&r, PROC(.rss_bytes = 0), NT_SELECT_EXCLUDE_COMM);
}

static void test_glob_list_match(void **state)
{
    (void)state;
    const char *g = NULL;
    size_t len = 0;
    assert_true(nt_glob_list_match("a*, b?c ,[xy]z", "bcc", 0, &g, &len));
    assert_int_equal(len, 3);
    assert_memory_equal(g, "b?c", 3);
    assert_true(nt_glob_list_match("a*, b?c ,[xy]z", "yz", 0, NULL, NULL));
    assert_false(nt_glob_list_match("a*, b?c ,[xy]z", "zz", 0, NULL, NULL));
    assert_false(nt_glob_list_match(NULL, "a", 0, NULL, NULL));
    assert_false(nt_glob_list_match("a", NULL, 0, NULL, NULL));
    assert_false(nt_glob_list_match("/a/*", "/a/b/c", FNM_PATHNAME, NULL, NULL));
    assert_true(nt_glob_list_match("/a/*", "/a/b/c", 0, NULL, NULL));
}

static void test_cap_by_rss(void **state)
{
    (void)state;
    struct nt_select_rules r = base;
    r.max_procs = 3;
    struct nt_proc_info p[] = {
        PROC(.pid = 10, .rss_bytes = 100 * MiB),
        PROC(.pid = 11, .rss_bytes = 900 * MiB),
        PROC(.pid = 12, .rss_bytes = 10 * MiB),           /* below min_rss: not counted */
        PROC(.pid = 13, .rss_bytes = 300 * MiB),
        PROC(.pid = 14, .rss_bytes = 100 * MiB),          /* ties 10: lower pid wins */
        PROC(.pid = 15, .rss_bytes = 2000 * MiB, .kernel_thread = true),
        PROC(.pid = 16, .rss_bytes = 80 * MiB),
    };
    assert_int_equal(nt_select_apply(&r, p, NT_ARRAY_SIZE(p)), 3);
    const enum nt_select_reason want[] = {
        NT_SELECT_WATCHED, NT_SELECT_WATCHED, NT_SELECT_MIN_RSS, NT_SELECT_WATCHED,
        NT_SELECT_MAX_PROCS, NT_SELECT_KERNEL_THREAD, NT_SELECT_MAX_PROCS,
    };
    for (size_t i = 0; i < NT_ARRAY_SIZE(p); i++)
        if (p[i].reason != want[i])
            fail_msg("pid %d: got %s, want %s", (int)p[i].pid, nt_select_reason_to_string(p[i].reason),
                     nt_select_reason_to_string(want[i]));

    r.max_procs = 0;                                     /* no cap */
    assert_int_equal(nt_select_apply(&r, p, NT_ARRAY_SIZE(p)), 5);
    r.max_procs = 5;
    assert_int_equal(nt_select_apply(&r, p, NT_ARRAY_SIZE(p)), 5);
    assert_int_equal(nt_select_apply(&r, NULL, 0), 0);
}

static void test_reason_strings(void **state)
{
    (void)state;
    assert_string_equal(nt_select_reason_to_string(NT_SELECT_WATCHED), "watched");
    assert_string_equal(nt_select_reason_to_string(NT_SELECT_KERNEL_THREAD), "kernel-thread");
    assert_string_equal(nt_select_reason_to_string(NT_SELECT_SELF), "self");
    assert_string_equal(nt_select_reason_to_string(NT_SELECT_EXCLUDE_COMM), "exclude-comm");
    assert_string_equal(nt_select_reason_to_string(NT_SELECT_EXCLUDE_CGROUP), "exclude-cgroup");
    assert_string_equal(nt_select_reason_to_string(NT_SELECT_NOT_INCLUDED_COMM), "not-included-comm");
    assert_string_equal(nt_select_reason_to_string(NT_SELECT_NOT_INCLUDED_CGROUP), "not-included-cgroup");
    assert_string_equal(nt_select_reason_to_string(NT_SELECT_MIN_RSS), "min-rss");
    assert_string_equal(nt_select_reason_to_string(NT_SELECT_MIN_CPU), "min-cpu");
    assert_string_equal(nt_select_reason_to_string(NT_SELECT_MAX_PROCS), "max-procs");
    assert_string_equal(nt_select_reason_to_string((enum nt_select_reason)99), "unknown");
}

static void explain_is(const struct nt_select_rules *r, struct nt_proc_info p, const char *want)
{
    char buf[256];
    p.reason = nt_select_check(r, &p);
    nt_select_explain(r, &p, buf, sizeof(buf));
    assert_string_equal(buf, want);
}

static void test_explain(void **state)
{
    (void)state;
    struct nt_select_rules r = base;
    explain_is(&r, PROC(), "watched: RSS 512.0 MiB, CPU 20.0%");
    explain_is(&r, PROC(.kernel_thread = true), "kernel thread: never watched");
    explain_is(&r, PROC(.pid = SELF), "numatierd itself: never watched");
    explain_is(&r, PROC(.rss_bytes = 12 * MiB), "RSS 12.0 MiB is below min_rss 64.0 MiB");
    explain_is(&r, PROC(.cpu_pct = 0.5), "CPU 0.5% is below min_cpu 5.0%");
    r.exclude_comm = "redis*, post*";
    explain_is(&r, PROC(), "comm \"postgres\" matches exclude_comm glob \"post*\"");
    r = base;
    r.exclude_cgroup = "/system.slice/*";
    explain_is(&r, PROC(), "cgroup \"/system.slice/postgresql.service\" matches exclude_cgroup glob \"/system.slice/*\"");
    r = base;
    r.include_comm = "java";
    explain_is(&r, PROC(), "comm \"postgres\" matches no include_comm glob (\"java\")");
    r = base;
    r.include_cgroup = "/db.slice/*";
    explain_is(&r, PROC(.cgroup = NULL), "cgroup unknown, so it matches no include_cgroup glob");

    struct nt_proc_info p = PROC(.reason = NT_SELECT_MAX_PROCS);
    char buf[128];
    r = base;
    r.max_procs = 256;
    nt_select_explain(&r, &p, buf, sizeof(buf));
    assert_string_equal(buf, "RSS 512.0 MiB: max_procs 256 larger processes are watched");
    nt_select_explain(&r, &p, buf, 8);                 /* truncates */
    assert_string_equal(buf, "RSS 512");
}

static void test_rules_from_config(void **state)
{
    (void)state;
    struct nt_config c;
    nt_config_init(&c);
    struct nt_select_rules r;
    nt_select_rules_from_config(&r, &c, SELF);
    assert_int_equal(r.self, SELF);
    assert_int_equal(r.min_rss_bytes, c.min_rss_bytes);
    assert_int_equal(r.max_procs, c.max_procs);
    assert_ptr_equal(r.include_comm, c.include_comm);
    assert_ptr_equal(r.exclude_cgroup, c.exclude_cgroup);
    expect(&r, PROC(), NT_SELECT_WATCHED);              /* the defaults watch a big process */
    nt_config_done(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watched),
        cmocka_unit_test(test_kernel_threads),
        cmocka_unit_test(test_self),
        cmocka_unit_test(test_thresholds),
        cmocka_unit_test(test_comm_globs),
        cmocka_unit_test(test_empty_lists),
        cmocka_unit_test(test_cgroup_globs),
        cmocka_unit_test(test_comm_and_cgroup),
        cmocka_unit_test(test_exclude_wins),
        cmocka_unit_test(test_glob_list_match),
        cmocka_unit_test(test_cap_by_rss),
        cmocka_unit_test(test_reason_strings),
        cmocka_unit_test(test_explain),
        cmocka_unit_test(test_rules_from_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
