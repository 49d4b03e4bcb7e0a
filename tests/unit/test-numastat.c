/* numastat-compatible tables against the fixture trees. The golden files
 * in tests/fixtures/golden/ are the real numastat's output on those same
 * trees (tests/fixtures/mkgolden.sh), so "equal to golden" means "what
 * numastat would print". Run from the repository root, or set NT_FIXTURES. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "numatier/numastat.h"
#include "numatier/util.h"

static const char *fixture(const char *name)
{
    static char path[PATH_MAX];
    const char *dir = getenv("NT_FIXTURES");
    snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/fixtures", name);
    return path;
}

static char *golden(const char *name)
{
    char rel[128];
    char *text = NULL;
    snprintf(rel, sizeof(rel), "golden/%s", name);
    assert_int_equal(nt_read_file(NULL, fixture(rel), &text), 0);
    /* nt_read_file drops the final newline; the printer writes it. */
    size_t len = strlen(text);
    char *full = malloc(len + 2);
    assert_non_null(full);
    memcpy(full, text, len);
    strcpy(full + len, "\n");
    free(text);
    return full;
}

static char *printed(const struct nt_numastat_table *t, unsigned width)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    nt_numastat_print_width(f, t, width);
    fclose(f);
    return buf;
}

static void assert_prints(const struct nt_numastat_table *t, unsigned width, const char *golden_name)
{
    _cleanup_free_ char *want = golden(golden_name);
    _cleanup_free_ char *got = printed(t, width);
    assert_string_equal(got, want);
}

static double cell(const struct nt_numastat_table *t, const char *row, unsigned col)
{
    for (unsigned i = 0; i < t->nr_rows; i++)
        if (strcmp(t->row_names[i], row) == 0)
            return t->mb[i * t->nr_cols + col];
    fail_msg("no row %s", row);
    return NAN;
}

/* ---- numastat -m ---- */

static void check_system_golden(const char *tree)
{
    char name[64];
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *t = NULL;
    assert_int_equal(nt_numastat_system(fixture(tree), &t), 0);
    snprintf(name, sizeof(name), "%s-m.txt", tree);
    assert_prints(t, 0, name);
}

static void test_system_golden(void **state)
{
    (void)state;
    check_system_golden("one-node");
    check_system_golden("two-socket");
    check_system_golden("cxl");
    check_system_golden("offline-blocks");
}

static void test_system_values(void **state)
{
    (void)state;
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *t = NULL;
    assert_int_equal(nt_numastat_system(fixture("cxl"), &t), 0);
    assert_string_equal(t->title, "Per-node system memory usage (in MBs):");
    assert_int_equal(t->nr_cols, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(t->node_ids[i], i);
    assert_int_equal(t->total_row, -1);
    assert_null(t->row_header);
    assert_false(t->fit_labels);
    /* numastat's rows in numastat's order; keys it doesn't know are gone. */
    assert_int_equal(t->nr_rows, 32);
    assert_string_equal(t->row_names[0], "MemTotal");
    assert_string_equal(t->row_names[1], "MemFree");
    assert_string_equal(t->row_names[2], "MemUsed");
    assert_string_equal(t->row_names[3], "Active");
    assert_string_equal(t->row_names[31], "KReclaimable");
    for (unsigned i = 0; i < t->nr_rows; i++) {
        assert_string_not_equal(t->row_names[i], "SwapCached");
        assert_string_not_equal(t->row_names[i], "FileHugePages");
    }
    assert_true(cell(t, "MemTotal", 0) == 2013464 / 1024.0);
    assert_true(cell(t, "MemFree", 2) == 2080768 / 1024.0);
    assert_true(cell(t, "MemUsed", 3) == 0);
    /* HugePages_* are page counts: 64 pages of 2 MiB. */
    assert_true(cell(t, "HugePages_Total", 0) == 128.0);
    assert_true(cell(t, "HugePages_Free", 0) == 120.0);
}

static void test_system_folded(void **state)
{
    (void)state;
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *t = NULL;
    assert_int_equal(nt_numastat_system(fixture("cxl"), &t), 0);
    assert_prints(t, 60, "cxl-m-width60.txt");   /* NUMASTAT_WIDTH=60 */
}

static void test_system_errors(void **state)
{
    (void)state;
    struct nt_numastat_table *t = NULL;
    assert_int_equal(nt_numastat_system(fixture("no-such-tree"), &t), -ENOENT);
    assert_null(t);
}

/* ---- numastat -p ---- */

static void check_process_golden(pid_t pid)
{
    char name[64];
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *t = NULL;
    assert_int_equal(nt_numastat_process(fixture("proc-sample"), pid, &t), 0);
    snprintf(name, sizeof(name), "proc-sample-p-%d.txt", (int)pid);
    assert_prints(t, 0, name);
}

static void test_process_golden(void **state)
{
    (void)state;
    check_process_golden(1234);
    check_process_golden(2345);
    check_process_golden(2346);
    check_process_golden(2);       /* kernel thread: empty numa_maps, all zeros */
}

static void test_process_values(void **state)
{
    (void)state;
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *t = NULL;
    assert_int_equal(nt_numastat_process(fixture("proc-sample"), 2345, &t), 0);
    assert_string_equal(t->title, "Per-node process memory usage (in MBs) for PID 2345 (python3)");
    assert_int_equal(t->pid, 2345);
    assert_string_equal(t->comm, "python3");
    assert_int_equal(t->nr_rows, 5);
    assert_int_equal(t->total_row, 4);
    assert_true(t->fit_labels);
    assert_string_equal(t->row_names[0], "Huge");
    assert_string_equal(t->row_names[4], "Total");
    /* The hugetlb mapping: N0=5 N1=3 pages of 2 MiB. */
    assert_true(cell(t, "Huge", 0) == 10.0);
    assert_true(cell(t, "Huge", 1) == 6.0);
    /* heap anon=386 N0=386, stack N0=2 N1=7 (4 KiB pages). */
    assert_true(cell(t, "Heap", 0) == 386 * 4 / 1024.0);
    assert_true(cell(t, "Heap", 1) == 0);
    for (unsigned c = 0; c < 2; c++)
        assert_true(cell(t, "Total", c) ==
                    cell(t, "Huge", c) + cell(t, "Heap", c) + cell(t, "Stack", c) + cell(t, "Private", c));
}

static void test_process_errors(void **state)
{
    (void)state;
    struct nt_numastat_table *t = NULL;
    assert_int_equal(nt_numastat_process(fixture("proc-sample"), 999, &t), -ESRCH);
    assert_null(t);
    const pid_t gone[] = { 999, 998 };
    assert_int_equal(nt_numastat_processes(fixture("proc-sample"), gone, 2, &t), -ESRCH);
    assert_int_equal(nt_numastat_processes(fixture("proc-sample"), gone, 0, &t), -EINVAL);
    assert_null(t);
}

/* A /proc/PID without numa_maps is a kernel without NUMA, not a dead pid. */
static void test_process_no_numa(void **state)
{
    (void)state;
    char root[PATH_MAX], cmd[3 * PATH_MAX + 128];
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof(root), "%s/nt-numastat-XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(root));
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s/sys/devices/system/node/node0' '%s/proc/77' && "
             "printf 'Name:\\tinit\\n' > '%s/proc/77/status'", root, root, root);
    assert_int_equal(system(cmd), 0);
    struct nt_numastat_table *t = NULL;
    int r = nt_numastat_process(root, 77, &t);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(r, -EOPNOTSUPP);
    assert_null(t);
}

/* numastat shows an unreadable process as zeros; we do too, and say why.
 * Root reads anything, so this only runs unprivileged (as in CI). */
static void test_several_unreadable(void **state)
{
    (void)state;
    if (geteuid() == 0)
        skip();
    char root[PATH_MAX], cmd[4 * PATH_MAX + 256];
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof(root), "%s/nt-numastat-XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(root));
    snprintf(cmd, sizeof(cmd), "cd '%s' && mkdir -p sys/devices/system/node/node0 proc/10 proc/11 && "
             "printf 'Name:\\ta\\n' > proc/10/status && printf 'Name:\\tb\\n' > proc/11/status && "
             "echo '7f0 default anon=256 N0=256 kernelpagesize_kB=4' > proc/10/numa_maps && "
             "cp proc/10/numa_maps proc/11/numa_maps && cp -a proc/11 proc/12 && "
             "chmod 000 proc/11/numa_maps proc/12/numa_maps", root);
    assert_int_equal(system(cmd), 0);
    const pid_t pids[] = { 10, 11 }, unreadable[] = { 11, 12 };
    struct nt_numastat_table *t = NULL;
    assert_int_equal(nt_numastat_processes(root, unreadable, 2, &t), -EACCES);
    assert_int_equal(nt_numastat_process(root, 11, &t), -EACCES);
    int r = nt_numastat_processes(root, pids, 2, &t);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(r, 0);
    assert_int_equal(t->nr_rows, 3);
    assert_string_equal(t->row_names[1], "11 (b)");
    assert_int_equal(t->row_errors[0], 0);
    assert_int_equal(t->row_errors[1], -EACCES);
    assert_true(t->mb[0] == 1.0);
    assert_true(t->mb[1] == 0.0);
    struct json_object *j = nt_numastat_to_json(t), *rows, *err;
    assert_true(json_object_object_get_ex(j, "rows", &rows));
    assert_true(json_object_object_get_ex(json_object_array_get_idx(rows, 1), "error", &err));
    assert_false(json_object_object_get_ex(json_object_array_get_idx(rows, 0), "error", NULL));
    json_object_put(j);
    nt_numastat_free(t);
}

static void test_pids_by_name(void **state)
{
    (void)state;
    static const struct { const char *name; size_t n; pid_t pids[4]; } cases[] = {
        { "python3", 2, { 2345, 2346 } },
        { "bash", 1, { 1234 } },
        { "kthreadd", 1, { 2 } },
        { "sleep", 2, { 2345, 2346 } },      /* found in the cmdline, not the name */
        { "MADV_HUGEPAGE", 1, { 2345 } },
        { "thon3 -c", 2, { 2345, 2346 } },   /* NULs of cmdline read as spaces */
        { "nothing-like-this", 0, { 0 } },
        { "", 4, { 2, 1234, 2345, 2346 } },
    };
    for (size_t i = 0; i < NT_ARRAY_SIZE(cases); i++) {
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 99;
        assert_int_equal(nt_pids_by_name(fixture("proc-sample"), cases[i].name, &pids, &n), 0);
        assert_int_equal(n, cases[i].n);
        for (size_t k = 0; k < n; k++)
            assert_int_equal(pids[k], cases[i].pids[k]);
    }
    pid_t *pids = NULL;
    size_t n = 0;
    assert_int_equal(nt_pids_by_name(fixture("no-such-tree"), "x", &pids, &n), -ENOENT);
}

static void check_several_golden(const char *pattern, unsigned width, const char *golden_name)
{
    _cleanup_free_ pid_t *pids = NULL;
    size_t n = 0;
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *t = NULL;
    assert_int_equal(nt_pids_by_name(fixture("proc-sample"), pattern, &pids, &n), 0);
    assert_int_equal(nt_numastat_processes(fixture("proc-sample"), pids, n, &t), 0);
    assert_prints(t, width, golden_name);
}

static void test_several_golden(void **state)
{
    (void)state;
    check_several_golden("python3", 0, "proc-sample-p-python3.txt");
    check_several_golden("sleep", 0, "proc-sample-p-sleep.txt");
    check_several_golden("python3", 40, "proc-sample-p-python3-width40.txt");
    /* One match is numastat's one-process table. */
    check_several_golden("bash", 0, "proc-sample-p-1234.txt");
}

static void test_several_values(void **state)
{
    (void)state;
    const pid_t pids[] = { 2346, 1234, 999, 2346 };   /* unsorted, a duplicate, one gone */
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *t = NULL;
    assert_int_equal(nt_numastat_processes(fixture("proc-sample"), pids, 4, &t), 0);
    assert_string_equal(t->title, "Per-node process memory usage (in MBs)");
    assert_string_equal(t->row_header, "PID");
    assert_int_equal(t->nr_rows, 3);
    assert_int_equal(t->total_row, 2);
    assert_string_equal(t->row_names[0], "1234 (bash)");
    assert_string_equal(t->row_names[1], "2346 (python3)");
    assert_string_equal(t->row_names[2], "Total");
    assert_int_equal(t->row_pids[0], 1234);
    assert_int_equal(t->row_pids[1], 2346);
    assert_int_equal(t->pid, 0);
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *one = NULL;
    assert_int_equal(nt_numastat_process(fixture("proc-sample"), 2346, &one), 0);
    for (unsigned c = 0; c < 2; c++)
        assert_true(cell(t, "2346 (python3)", c) == cell(one, "Total", c));
}

/* ---- numa_maps arithmetic ---- */

static void test_tally(void **state)
{
    (void)state;
    static const int ids[] = { 0, 2 };
    double mb[NT_NUMASTAT_PROC_ROWS * 2] = { 0 };
    const char *maps =
        "55713d657000 default heap anon=256 dirty=256 N0=256 kernelpagesize_kB=4\n"
        "7ffc15057000 default stack anon=5 dirty=5 N0=1 N2=4 kernelpagesize_kB=4\n"
        "7ffc15000000 default stack:4242 anon=256 N2=256 kernelpagesize_kB=4\n"
        "7f0000000000 default file=/anon_hugepage\\040(deleted) huge anon=2 dirty=2 N0=2\n"
        "7f4000000000 bind:2 file=/dev/hugepages/db huge dirty=1 N2=1 kernelpagesize_kB=1048576\n"
        "7fe805dd2000 default file=/usr/lib/x86_64-linux-gnu/libc.so.6 mapped=38 mapmax=7 N0=38 kernelpagesize_kB=4\n"
        "7fe805cf0000 interleave:0-2 anon=512 dirty=512 N0=256 N1=128 N2=128 kernelpagesize_kB=4\n"
        "7fe805ff4000 default\n"
        "7fe805ff5000 default anon=256 N0=256\n"
        "7fe805ff6000 default Nx=1 N3 N0=oops\n";
    nt_numa_maps_tally(maps, ids, 2, 4096, 2 << 20, mb);
    assert_true(mb[NT_NUMASTAT_HEAP * 2 + 0] == 1.0);
    assert_true(mb[NT_NUMASTAT_HEAP * 2 + 1] == 0.0);
    assert_true(mb[NT_NUMASTAT_STACK * 2 + 0] == 4 / 1024.0);
    assert_true(mb[NT_NUMASTAT_STACK * 2 + 1] == 16 / 1024.0 + 1.0);   /* "stack:TID" of old kernels */
    /* No kernelpagesize_kB: the default huge page size; 1 GiB pages count as 1 GiB. */
    assert_true(mb[NT_NUMASTAT_HUGE * 2 + 0] == 4.0);
    assert_true(mb[NT_NUMASTAT_HUGE * 2 + 1] == 1024.0);
    /* File mappings are Private too; node 1 is not a column and is dropped;
     * a line without kernelpagesize_kB uses the base page size. */
    assert_true(mb[NT_NUMASTAT_PRIVATE * 2 + 0] == (38 + 256 + 256) * 4 / 1024.0);
    assert_true(mb[NT_NUMASTAT_PRIVATE * 2 + 1] == 128 * 4 / 1024.0);
}

/* ---- layout details and JSON ---- */

static struct nt_numastat_table *hand_table(void)
{
    struct nt_numastat_table *t = NULL;
    assert_int_equal(nt_numastat_table_new(2, 2, &t), 0);
    t->title = strdup("Per-node system memory usage (in MBs):");
    t->node_ids[0] = 0;
    t->node_ids[1] = 12;
    t->row_names[0] = strdup("MemTotal");
    t->row_names[1] = strdup("HugePages_Total");
    t->mb[0] = 1.5;
    t->mb[1] = NAN;                 /* a key node 12 didn't print */
    t->mb[2] = 0;
    t->mb[3] = 123456.125;
    return t;
}

static void test_print_blank_cell(void **state)
{
    (void)state;
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *t = hand_table();
    _cleanup_free_ char *got = printed(t, 0);
    assert_string_equal(got,
        "\n"
        "Per-node system memory usage (in MBs):\n"
        "                          Node 0         Node 12           Total\n"
        "                 --------------- --------------- ---------------\n"
        "MemTotal                    1.50                            1.50\n"
        "HugePages_Total             0.00       123456.12       123456.12\n");
}

static void test_print_no_data(void **state)
{
    (void)state;
    struct nt_numastat_table *t = NULL;
    assert_int_equal(nt_numastat_table_new(0, 1, &t), 0);
    t->title = strdup("Per-node system memory usage (in MBs):");
    _cleanup_free_ char *got = printed(t, 0);
    assert_string_equal(got, "\nPer-node system memory usage (in MBs):\nTable has no data.\n");
    nt_numastat_free(t);
    nt_numastat_free(NULL);
}

static void test_print_long_label(void **state)
{
    (void)state;
    /* Labels widen the column up to 24 and are cut there, like numastat. */
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *t = NULL;
    assert_int_equal(nt_numastat_table_new(2, 1, &t), 0);
    t->title = strdup("Per-node process memory usage (in MBs)");
    t->row_header = strdup("PID");
    t->fit_labels = true;
    t->total_row = 1;
    t->row_names[0] = strdup("4194304 (a-very-long-name)");
    t->row_names[1] = strdup("Total");
    t->mb[0] = t->mb[1] = 2.25;
    _cleanup_free_ char *got = printed(t, 0);
    assert_string_equal(got,
        "\n"
        "Per-node process memory usage (in MBs)\n"
        "PID                               Node 0           Total\n"
        "-----------------------  --------------- ---------------\n"
        "4194304 (a-very-long-nam            2.25            2.25\n"
        "-----------------------  --------------- ---------------\n"
        "Total                               2.25            2.25\n");
}

static struct json_object *get(struct json_object *o, const char *key)
{
    struct json_object *v = NULL;
    assert_true(json_object_object_get_ex(o, key, &v));
    return v;
}

static void test_json_system(void **state)
{
    (void)state;
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *t = hand_table();
    struct json_object *j = nt_numastat_to_json(t);
    assert_string_equal(json_object_get_string(get(j, "title")), t->title);
    struct json_object *nodes = get(j, "nodes");
    assert_int_equal(json_object_array_length(nodes), 2);
    assert_int_equal(json_object_get_int(json_object_array_get_idx(nodes, 1)), 12);
    struct json_object *rows = get(j, "rows");
    assert_int_equal(json_object_array_length(rows), 2);
    struct json_object *r0 = json_object_array_get_idx(rows, 0);
    assert_string_equal(json_object_get_string(get(r0, "name")), "MemTotal");
    struct json_object *mb = get(r0, "mb");
    assert_true(json_object_get_double(json_object_array_get_idx(mb, 0)) == 1.5);
    assert_null(json_object_array_get_idx(mb, 1));        /* no value: null */
    assert_true(json_object_get_double(get(r0, "total")) == 1.5);
    assert_false(json_object_object_get_ex(j, "total", NULL));
    assert_false(json_object_object_get_ex(j, "pid", NULL));
    json_object_put(j);
}

static void test_json_process(void **state)
{
    (void)state;
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *t = NULL;
    assert_int_equal(nt_numastat_process(fixture("proc-sample"), 2345, &t), 0);
    struct json_object *j = nt_numastat_to_json(t);
    assert_int_equal(json_object_get_int(get(j, "pid")), 2345);
    assert_string_equal(json_object_get_string(get(j, "name")), "python3");
    struct json_object *rows = get(j, "rows");
    assert_int_equal(json_object_array_length(rows), 4);
    struct json_object *huge = json_object_array_get_idx(rows, 0);
    assert_string_equal(json_object_get_string(get(huge, "name")), "Huge");
    assert_true(json_object_get_double(get(huge, "total")) == 16.0);
    struct json_object *total = get(j, "total");
    assert_string_equal(json_object_get_string(get(total, "name")), "Total");
    assert_true(json_object_get_double(get(total, "total")) ==
                cell(t, "Total", 0) + cell(t, "Total", 1));
    json_object_put(j);

    _cleanup_free_ pid_t *pids = NULL;
    size_t n = 0;
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *several = NULL;
    assert_int_equal(nt_pids_by_name(fixture("proc-sample"), "python3", &pids, &n), 0);
    assert_int_equal(nt_numastat_processes(fixture("proc-sample"), pids, n, &several), 0);
    j = nt_numastat_to_json(several);
    rows = get(j, "rows");
    assert_int_equal(json_object_array_length(rows), 2);
    assert_int_equal(json_object_get_int(get(json_object_array_get_idx(rows, 1), "pid")), 2346);
    assert_false(json_object_object_get_ex(get(j, "total"), "pid", NULL));
    json_object_put(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_system_golden),
        cmocka_unit_test(test_system_values),
        cmocka_unit_test(test_system_folded),
        cmocka_unit_test(test_system_errors),
        cmocka_unit_test(test_process_golden),
        cmocka_unit_test(test_process_values),
        cmocka_unit_test(test_process_errors),
        cmocka_unit_test(test_process_no_numa),
        cmocka_unit_test(test_several_unreadable),
        cmocka_unit_test(test_pids_by_name),
        cmocka_unit_test(test_several_golden),
        cmocka_unit_test(test_several_values),
        cmocka_unit_test(test_tally),
        cmocka_unit_test(test_print_blank_cell),
        cmocka_unit_test(test_print_no_data),
        cmocka_unit_test(test_print_long_label),
        cmocka_unit_test(test_json_system),
        cmocka_unit_test(test_json_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
