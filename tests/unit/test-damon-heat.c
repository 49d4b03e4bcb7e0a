/* DAMON region -> heat (policy/damon-heat.c): pure arithmetic, fixed inputs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "numatier/damon.h"

/* The defaults: 5 ms sampling, 200 ms aggregation, so nr_accesses 0..40. */
static const struct nt_damon_intervals iv = { .sample_usec = 5000, .aggr_usec = 200000 };

static void test_no_accesses_no_observation(void **state)
{
    (void)state;
    struct nt_damon_heat h;
    struct nt_damon_region r = { .start = 0x1000, .end = 0x5000, .nr_accesses = 0, .age = 7 };
    assert_false(nt_damon_region_heat(&r, &iv, 0, &h));
    struct nt_access a;
    assert_false(nt_damon_region_to_access(&r, 42, &iv, 0, 4096, &a));
}

static void test_junk_is_no_observation(void **state)
{
    (void)state;
    struct nt_damon_heat h;
    struct nt_damon_region empty = { .start = 0x5000, .end = 0x5000, .nr_accesses = 3 };
    struct nt_damon_region backwards = { .start = 0x6000, .end = 0x5000, .nr_accesses = 3 };
    struct nt_damon_region ok = { .start = 0x1000, .end = 0x2000, .nr_accesses = 3 };
    assert_false(nt_damon_region_heat(&empty, &iv, 0, &h));
    assert_false(nt_damon_region_heat(&backwards, &iv, 0, &h));
    assert_false(nt_damon_region_heat(&ok, &(struct nt_damon_intervals){ .sample_usec = 0, .aggr_usec = 1000 }, 0, &h));
    assert_false(nt_damon_region_heat(&ok, &(struct nt_damon_intervals){ .sample_usec = 1000, .aggr_usec = 0 }, 0, &h));
    struct nt_access a;
    assert_false(nt_damon_region_to_access(&ok, 42, &iv, 0, 0, &a));
}

static void test_rate_and_weight(void **state)
{
    (void)state;
    struct nt_damon_heat h;
    /* Touched in half the sampling intervals: 20 accesses in 200 ms. */
    struct nt_damon_region r = { .start = 0x10000, .end = 0x20000, .nr_accesses = 20, .age = 3 };
    assert_true(nt_damon_region_heat(&r, &iv, 0, &h));
    assert_float_equal(h.freq, 0.5, 1e-9);
    assert_float_equal(h.rate, 100.0, 1e-9);
    assert_int_equal(h.span_usec, 200000);          /* period 0: one aggregation interval */
    assert_int_equal(h.weight, 20);

    /* A drain every 100 ms stands for half as much. */
    assert_true(nt_damon_region_heat(&r, &iv, 100000, &h));
    assert_int_equal(h.span_usec, 100000);
    assert_int_equal(h.weight, 10);
}

static void test_saturates_at_every_sample(void **state)
{
    (void)state;
    struct nt_damon_heat h;
    /* More than aggr/sample is junk: clamp to "accessed in every interval". */
    struct nt_damon_region r = { .start = 0, .end = 4096, .nr_accesses = 1000, .age = 0 };
    assert_true(nt_damon_region_heat(&r, &iv, 0, &h));
    assert_float_equal(h.freq, 1.0, 1e-9);
    assert_float_equal(h.rate, 200.0, 1e-9);
    assert_int_equal(h.weight, 40);
}

static void test_age_bounds_extrapolation(void **state)
{
    (void)state;
    struct nt_damon_heat h;
    /* One second since the last drain, but the region turned hot in this
     * aggregation interval (age 0): only 200 ms are credited. */
    struct nt_damon_region fresh = { .start = 0, .end = 4096, .nr_accesses = 20, .age = 0 };
    assert_true(nt_damon_region_heat(&fresh, &iv, 1000000, &h));
    assert_int_equal(h.span_usec, 200000);
    assert_int_equal(h.weight, 20);
    /* Held for 10 intervals (2 s): the whole second counts. */
    struct nt_damon_region steady = { .start = 0, .end = 4096, .nr_accesses = 20, .age = 9 };
    assert_true(nt_damon_region_heat(&steady, &iv, 1000000, &h));
    assert_int_equal(h.span_usec, 1000000);
    assert_int_equal(h.weight, 100);
    /* Held for 3 intervals: 800 ms of the second. */
    struct nt_damon_region mid = { .start = 0, .end = 4096, .nr_accesses = 20, .age = 3 };
    assert_true(nt_damon_region_heat(&mid, &iv, 1000000, &h));
    assert_int_equal(h.span_usec, 800000);
    assert_int_equal(h.weight, 80);
}

static void test_weight_bounds(void **state)
{
    (void)state;
    struct nt_damon_heat h;
    /* Rounds to 0, but an access was seen: at least 1. */
    struct nt_damon_region r = { .start = 0, .end = 4096, .nr_accesses = 1, .age = 0 };
    assert_true(nt_damon_region_heat(&r, &iv, 1000, &h));
    assert_int_equal(h.weight, 1);
    /* Absurd spans clamp instead of wrapping. */
    struct nt_damon_intervals slow = { .sample_usec = 100, .aggr_usec = 10000000 };
    struct nt_damon_region big = { .start = 0, .end = 4096, .nr_accesses = 100000, .age = UINT32_MAX };
    assert_true(nt_damon_region_heat(&big, &slow, UINT64_MAX / 2, &h));
    assert_int_equal(h.weight, UINT32_MAX);
    /* aggr shorter than sample: one access per interval at most. */
    struct nt_damon_intervals odd = { .sample_usec = 5000, .aggr_usec = 1000 };
    assert_true(nt_damon_region_heat(&r, &odd, 0, &h));
    assert_float_equal(h.freq, 1.0, 1e-9);
}

static void test_region_to_access(void **state)
{
    (void)state;
    struct nt_access a;
    struct nt_damon_region r = { .start = 0x7f0000000000, .end = 0x7f0000400000, .nr_accesses = 25, .age = 2 };
    assert_true(nt_damon_region_to_access(&r, 1234, &iv, 0, 4096, &a));
    assert_int_equal(a.pid, 1234);
    assert_int_equal(a.tid, 0);
    assert_int_equal(a.vaddr, 0x7f0000000000);
    assert_int_equal(a.paddr, 0);
    assert_int_equal(a.nr_pages, 1024);            /* 4 MiB */
    assert_int_equal(a.weight, 25);
    assert_int_equal(a.cpu, -1);
    assert_int_equal(a.source, NT_MEM_SRC_UNKNOWN);

    /* Not page aligned (never from DAMON): round outward. */
    struct nt_damon_region odd = { .start = 0x1800, .end = 0x3001, .nr_accesses = 1 };
    assert_true(nt_damon_region_to_access(&odd, 1, &iv, 0, 4096, &a));
    assert_int_equal(a.vaddr, 0x1000);
    assert_int_equal(a.nr_pages, 3);
}

static void test_nr_regions(void **state)
{
    (void)state;
    struct nt_damon_params p = { .min_regions = 10, .max_regions = 1000 };
    unsigned lo, hi;
    nt_damon_nr_regions(&p, 1, &lo, &hi);
    assert_int_equal(lo, 10);
    assert_int_equal(hi, 1000);
    nt_damon_nr_regions(&p, 0, &lo, &hi);           /* no targets yet: as for one */
    assert_int_equal(lo, 10);
    assert_int_equal(hi, 1000);
    /* min is per process; max (the overhead bound) grows only to keep
     * room for splitting. */
    nt_damon_nr_regions(&p, 20, &lo, &hi);
    assert_int_equal(lo, 200);
    assert_int_equal(hi, 1000);
    nt_damon_nr_regions(&p, 64, &lo, &hi);
    assert_int_equal(lo, 640);
    assert_int_equal(hi, 1280);
    /* DAMON's floor of 3. */
    struct nt_damon_params tiny = { .min_regions = 1, .max_regions = 10 };
    nt_damon_nr_regions(&tiny, 1, &lo, &hi);
    assert_int_equal(lo, 3);
    assert_int_equal(hi, 10);
    /* No overflow at the configurable extremes. */
    struct nt_damon_params huge = { .min_regions = 100000, .max_regions = 1000000 };
    nt_damon_nr_regions(&huge, NT_DAMON_MAX_TARGETS, &lo, &hi);
    assert_int_equal(lo, 6400000);
    assert_int_equal(hi, 12800000);
    assert_true(lo <= hi / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_accesses_no_observation),
        cmocka_unit_test(test_junk_is_no_observation),
        cmocka_unit_test(test_rate_and_weight),
        cmocka_unit_test(test_saturates_at_every_sample),
        cmocka_unit_test(test_age_bounds_extrapolation),
        cmocka_unit_test(test_weight_bounds),
        cmocka_unit_test(test_region_to_access),
        cmocka_unit_test(test_nr_regions),
    };
    return cmocka_run_group_tests_name("damon-heat", tests, NULL, NULL);
}
