/* Calibration on this machine (one node: no pairs for C_mem, a probe
 * moved between two CPUs of node 0 for C_thread), and its pure pieces. */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "numatier/calibrate.h"
#include "numatier/topology.h"
#include "numatier/util.h"

static void test_median(void **state)
{
    (void)state;
    double a[] = { 5, 1, 3 };
    assert_true(nt_median(a, 3) == 3);
    double b[] = { 4, 1, 3, 2 };
    assert_true(nt_median(b, 4) == 2.5);
    double c[] = { 7 };
    assert_true(nt_median(c, 1) == 7);
    assert_true(isnan(nt_median(NULL, 0)));
}

/* A fake sysfs root with only the THP switch. */
static void thp_case(const char *text, bool want)
{
    char dir[] = "/tmp/nt-test-thp.XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/sys/kernel/mm/transparent_hugepage", dir);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", path);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof(path), "%s/sys/kernel/mm/transparent_hugepage/enabled", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", text);
    fclose(f);
    assert_int_equal(nt_thp_enabled(dir), want);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_thp_enabled(void **state)
{
    (void)state;
    thp_case("always [madvise] never", true);
    thp_case("[always] madvise never", true);
    thp_case("always madvise [never]", false);
    assert_false(nt_thp_enabled("/nonexistent/numatier"));
}

static const char *str_at(struct json_object *o, const char *a, const char *b)
{
    struct json_object *x, *y;
    assert_true(json_object_object_get_ex(o, a, &x));
    assert_true(json_object_object_get_ex(x, b, &y));
    return json_object_get_string(y);
}

static void test_calibrate_this_host(void **state)
{
    (void)state;
    struct nt_topology *topo = NULL;
    assert_int_equal(nt_topology_read("/", NULL, &topo), 0);
    struct nt_calibration c;
    uint64_t t0 = nt_now_usec();
    assert_int_equal(nt_calibrate(topo, NULL, &c), 0);
    uint64_t took = nt_now_usec() - t0;
    print_message("calibration: %s; %s; refill %.2f us, sched %.2f us (%s) in %.1f ms\n", c.mem_reason,
                  c.huge_reason, c.c_thread_refill_usec, c.c_thread_sched_usec, c.thread_reason, (double)took / 1e3);
    assert_true(took < 2000000);
    assert_true(c.elapsed_usec <= took);
    assert_int_equal(c.nr_nodes, topo->nr_nodes);

    unsigned with_mem = 0;
    for (unsigned i = 0; i < topo->nr_nodes; i++)
        with_mem += topo->nodes[i].mem_total_kb > 0;
    if (with_mem < 2) {
        assert_int_equal(c.mem_origin, NT_COST_DEFAULT);
        assert_string_equal(c.mem_reason, "no node pairs: nothing to measure");
        assert_int_equal(c.huge_origin, NT_COST_DEFAULT);
        for (unsigned i = 0; i < c.nr_nodes * c.nr_nodes; i++)
            assert_true(c.c_mem_usec[i] < 0);
    } else {
        assert_int_equal(c.mem_origin, NT_COST_MEASURED);
        assert_true(c.mem_pairs >= 2);
    }

    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus >= 2) {
        assert_int_equal(c.thread_origin, NT_COST_MEASURED);
        assert_true(c.c_thread_refill_usec >= 0);
        assert_true(c.c_thread_sched_usec > 0);
        assert_true(c.probe_cpu_from >= 0 && c.probe_cpu_to >= 0 && c.probe_cpu_from != c.probe_cpu_to);
        assert_true(c.probe_bytes >= 64 * 1024);
    } else {
        assert_int_equal(c.thread_origin, NT_COST_DEFAULT);
    }
    assert_true(c.thread_reason[0] != '\0');

    /* into a cost model: measured values replace defaults, the rest stays */
    struct nt_cost_model m = { .c_mem_default_usec = 2.0, .c_mem_huge_usec = 300, .c_thread_refill_usec = 50,
                               .c_thread_sched_usec = 5 };
    nt_calibration_apply(&c, &m);
    assert_int_equal(m.nr_nodes, topo->nr_nodes);
    assert_ptr_equal(m.c_mem_usec, c.c_mem_usec);
    assert_int_equal(m.node_ids[0], topo->nodes[0].id);
    assert_true(m.c_mem_default_usec == 2.0);
    if (c.huge_origin != NT_COST_MEASURED)
        assert_true(m.c_mem_huge_usec == 300);
    if (c.thread_origin == NT_COST_MEASURED) {
        assert_true(m.c_thread_refill_usec == c.c_thread_refill_usec);
        assert_int_equal(m.thread_origin, NT_COST_MEASURED);
    }

    struct json_object *j = nt_calibration_to_json(&c);
    assert_non_null(j);
    assert_string_equal(str_at(j, "c_mem", "reason"), c.mem_reason);
    assert_string_equal(str_at(j, "c_mem", "origin"), c.mem_origin == NT_COST_MEASURED ? "measured" : "default");
    assert_string_equal(str_at(j, "c_thread", "origin"),
                        c.thread_origin == NT_COST_MEASURED ? "measured" : "default");
    json_object_put(j);
    nt_calibration_done(&c);
    nt_calibration_done(&c);                    /* twice is fine */
    nt_topology_free(topo);
}

/* Options off, a sched constant, and a fake two-node topology whose second
 * node has no memory: still no pairs. */
static void test_calibrate_options(void **state)
{
    (void)state;
    struct nt_node nodes[2] = {
        { .id = 0, .cpulist = (char *)"0", .mem_total_kb = 1 << 20, .mem_free_kb = 1 << 20 },
        { .id = 1, .cpulist = (char *)"", .mem_total_kb = 0 },
    };
    int cpu_node[1] = { 0 };
    struct nt_topology topo = { .nr_nodes = 2, .nodes = nodes, .cpu_node = cpu_node, .nr_cpu_ids = 1 };
    struct nt_calibrate_params p;
    nt_calibrate_params_init(&p);
    p.thp = false;
    p.sched_usec = 7.5;
    p.repeats = 3;
    struct nt_calibration c;
    assert_int_equal(nt_calibrate(&topo, &p, &c), 0);
    assert_string_equal(c.mem_reason, "no node pairs: nothing to measure");
    assert_string_equal(c.huge_reason, "not asked for");
    if (c.thread_origin == NT_COST_MEASURED)
        assert_true(c.c_thread_sched_usec == 7.5);
    assert_int_equal(c.nr_nodes, 2);
    assert_true(c.c_mem_usec[1] < 0);
    nt_calibration_done(&c);

    /* both nodes with memory, but node 1 does not exist here: the
     * failure is a reason, not an error (on a one-node host) */
    if (nt_thp_enabled("/") && access("/sys/devices/system/node/node1", F_OK) != 0) {
        nodes[1].mem_total_kb = nodes[1].mem_free_kb = 1 << 20;
        p.thp = true;
        p.thread = false;
        assert_int_equal(nt_calibrate(&topo, &p, &c), 0);
        assert_int_equal(c.mem_origin, NT_COST_DEFAULT);
        assert_int_equal(strncmp(c.mem_reason, "move_pages failed", 17), 0);
        assert_int_equal(c.huge_origin, NT_COST_DEFAULT);
        print_message("fake pair: %s; %s\n", c.mem_reason, c.huge_reason);
        nt_calibration_done(&c);
    }

    p.thread = false;
    assert_int_equal(nt_calibrate(NULL, &p, &c), 0);
    assert_string_equal(c.thread_reason, "not asked for");
    assert_int_equal(c.thread_origin, NT_COST_DEFAULT);
    assert_string_equal(c.mem_reason, "no topology");
    assert_int_equal(c.nr_nodes, 0);
    nt_calibration_done(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_median),
        cmocka_unit_test(test_thp_enabled),
        cmocka_unit_test(test_calibrate_this_host),
        cmocka_unit_test(test_calibrate_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
