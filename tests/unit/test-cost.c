/* The cost model: per-page and per-thread costs, fallbacks, queueing. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "numatier/cost.h"

static void assert_close(double got, double want)
{
    if (fabs(got - want) > 1e-9 * (fabs(want) > 1 ? fabs(want) : 1))
        fail_msg("got %.17g, want %.17g", got, want);
}

/* Sparse node ids, as on a machine with node 1 offline. */
static const int ids[] = { 0, 2 };
/* 0 -> 2 measured at 1.5 us per page; 2 -> 0 not measured. */
static const double c_mem[] = { -1, 1.5, -1, -1 };

static const struct nt_cost_model model = {
    .nr_nodes = 2,
    .node_ids = ids,
    .c_mem_usec = c_mem,
    .c_mem_default_usec = 3.0,
    .c_mem_huge_usec = -1,
    .mem_origin = NT_COST_MEASURED,
    .c_thread_refill_usec = 100,
    .c_thread_sched_usec = 20,
    .thread_origin = NT_COST_DEFAULT,
    .queue_usec_per_sec = 1e5,
};

static void test_node_index(void **state)
{
    (void)state;
    assert_int_equal(nt_cost_node_index(&model, 0), 0);
    assert_int_equal(nt_cost_node_index(&model, 2), 1);
    assert_int_equal(nt_cost_node_index(&model, 1), -1);     /* a gap in the ids */
    assert_int_equal(nt_cost_node_index(&model, -1), -1);
}

static void test_mem(void **state)
{
    (void)state;
    assert_close(nt_cost_mem(&model, 0, 2, 1000), 1500);     /* measured pair */
    assert_close(nt_cost_mem(&model, 2, 0, 1000), 3000);     /* unknown pair: default */
    assert_close(nt_cost_mem(&model, 0, 7, 1000), 3000);     /* unknown node: default */
    assert_close(nt_cost_mem(&model, 2, 2, 1000), 0);        /* same node: free */
    assert_close(nt_cost_mem(&model, 0, 2, 0), 0);

    struct nt_cost_model unmeasured = model;
    unmeasured.c_mem_usec = NULL;
    assert_close(nt_cost_mem(&unmeasured, 0, 2, 10), 30);
}

static void test_thread(void **state)
{
    (void)state;
    /* Room for all: refill + sched per thread. */
    assert_close(nt_cost_thread(&model, 4, 8, 10), 4 * 120);
    /* 2.5 idle CPUs seat 2 threads; the other 2 queue for 10 s each. */
    assert_close(nt_cost_thread(&model, 4, 2.5, 10), 4 * 120 + 2 * 1e5 * 10);
    /* A busy node (no idle CPU, or load reading above capacity). */
    assert_close(nt_cost_thread(&model, 3, 0, 1), 3 * 120 + 3 * 1e5);
    assert_close(nt_cost_thread(&model, 3, -0.5, 1), 3 * 120 + 3 * 1e5);
    /* 0.9 of an idle CPU is no room for a thread. */
    assert_close(nt_cost_thread(&model, 1, 0.9, 2), 120 + 2e5);
    assert_close(nt_cost_thread(&model, 0, 0, 10), 0);
    /* A zero horizon has no time to queue in. */
    assert_close(nt_cost_thread(&model, 2, 0, 0), 240);
}

static void test_origin_strings(void **state)
{
    (void)state;
    assert_string_equal(nt_cost_origin_to_string(NT_COST_DEFAULT), "default");
    assert_string_equal(nt_cost_origin_to_string(NT_COST_MEASURED), "measured");
    assert_string_equal(nt_cost_origin_to_string(NT_COST_CONFIG), "config");
    assert_string_equal(nt_cost_origin_to_string((enum nt_cost_origin)42), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_index),
        cmocka_unit_test(test_mem),
        cmocka_unit_test(test_thread),
        cmocka_unit_test(test_origin_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
