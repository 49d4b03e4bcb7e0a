/* Sample period self-tuning (policy/period.c): pure arithmetic on what a
 * window measured. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "numatier/perf.h"

static const struct nt_period_limits pebs = { .min = 1000, .max = 1000000000, .align = 1 };
static const struct nt_period_limits ibs = { .min = 256, .max = 0xFFFF0, .align = 16 };

/* One second of wall time with cpu_ms of our CPU time and some samples. */
static struct nt_period_window win(uint64_t cpu_ms, uint64_t samples)
{
    return (struct nt_period_window){ .cpu_usec = cpu_ms * 1000, .wall_usec = 1000000, .samples = samples };
}

static void test_over_budget_grows(void **state)
{
    (void)state;
    struct nt_period_window w = win(30, 5000);          /* 3% against 1% */
    assert_int_equal(nt_period_next(20000, &w, 1.0, &pebs), 60000);
    w = win(11, 5000);                                  /* 1.1%: at least x1.25 */
    assert_int_equal(nt_period_next(20000, &w, 1.0, &pebs), 25000);
    w = win(500, 5000);                                 /* 50%: at most x8 */
    assert_int_equal(nt_period_next(20000, &w, 1.0, &pebs), 160000);
}

static void test_under_budget_shrinks_gently(void **state)
{
    (void)state;
    struct nt_period_window w = win(2, 100);            /* 0.2% of a 1% budget */
    assert_int_equal(nt_period_next(20000, &w, 1.0, &pebs), 17500);
    w = win(0, 100);                                    /* no measurable CPU at all */
    assert_int_equal(nt_period_next(20000, &w, 1.0, &pebs), 17500);
}

static void test_dead_band_holds(void **state)
{
    (void)state;
    struct nt_period_window w = win(7, 100);            /* 0.7%: between half and all of it */
    assert_int_equal(nt_period_next(20000, &w, 1.0, &pebs), 20000);
    w = win(10, 100);                                   /* exactly on budget */
    assert_int_equal(nt_period_next(20000, &w, 1.0, &pebs), 20000);
}

static void test_no_samples_holds(void **state)
{
    (void)state;
    /* Over budget with no samples: the CPU went elsewhere, not to us. */
    struct nt_period_window w = win(300, 0);
    assert_int_equal(nt_period_next(20000, &w, 1.0, &pebs), 20000);
    /* Under budget with no samples: don't creep toward a flood. */
    w = win(0, 0);
    assert_int_equal(nt_period_next(20000, &w, 1.0, &pebs), 20000);
}

static void test_overflow_grows(void **state)
{
    (void)state;
    /* The kernel throttled us: grow even though the CPU budget is fine. */
    struct nt_period_window w = win(1, 100);
    w.overflows = 3;
    assert_int_equal(nt_period_next(20000, &w, 1.0, &pebs), 40000);
    /* ... and with no samples read at all (they were all lost). */
    w = win(1, 0);
    w.overflows = 1;
    assert_int_equal(nt_period_next(20000, &w, 1.0, &pebs), 40000);
    /* Over budget by more than the overflow factor: the bigger one wins. */
    w = win(50, 100);
    w.overflows = 1;
    assert_int_equal(nt_period_next(20000, &w, 1.0, &pebs), 100000);
}

static void test_clamps(void **state)
{
    (void)state;
    struct nt_period_window w = win(500, 5000);
    assert_int_equal(nt_period_next(900000000, &w, 1.0, &pebs), 1000000000);
    w = win(0, 5000);
    assert_int_equal(nt_period_next(1100, &w, 1.0, &pebs), 1000);
    assert_int_equal(nt_period_next(1000, &w, 1.0, &pebs), 1000);
    /* Overflowing uint64_t saturates at max. */
    w = win(500, 5000);
    assert_int_equal(nt_period_next(UINT64_MAX / 2, &w, 1.0, &pebs), 1000000000);
    assert_int_equal(nt_period_clamp(0, &pebs), 1000);
    assert_int_equal(nt_period_clamp(UINT64_MAX, &pebs), 1000000000);
    /* Nothing to go on: only clamp. */
    w = (struct nt_period_window){ .cpu_usec = 5, .samples = 3 };
    assert_int_equal(nt_period_next(20000, &w, 1.0, &pebs), 20000);
    w = win(500, 5000);
    assert_int_equal(nt_period_next(20000, &w, 0.0, &pebs), 20000);
    assert_int_equal(nt_period_next(5, &w, 0.0, &pebs), 1000);
}

static void test_ibs_multiple_of_16(void **state)
{
    (void)state;
    assert_int_equal(nt_period_clamp(20001, &ibs), 20000);
    assert_int_equal(nt_period_clamp(10, &ibs), 256);
    assert_int_equal(nt_period_clamp(UINT64_MAX, &ibs), 0xFFFF0);
    /* A min that isn't a multiple of 16 rounds up, a max rounds down. */
    const struct nt_period_limits odd = { .min = 250, .max = 1000, .align = 16 };
    assert_int_equal(nt_period_clamp(1, &odd), 256);
    assert_int_equal(nt_period_clamp(5000, &odd), 992);

    struct nt_period_window over = win(13, 100), under = win(1, 100);
    uint64_t p = 20000;
    for (int i = 0; i < 40; i++) {
        p = nt_period_next(p, i % 3 ? &under : &over, 1.0, &ibs);
        assert_int_equal(p % 16, 0);
        assert_in_range(p, 256, 0xFFFF0);
    }
    /* The smallest period still grows once rounded to 16. */
    const struct nt_period_limits tiny = { .min = 16, .max = 1024, .align = 16 };
    assert_int_equal(nt_period_next(16, &over, 1.0, &tiny), 32);
    assert_int_equal(nt_period_next(1, &over, 1.0, &(struct nt_period_limits){ .min = 1, .max = 10 }), 2);
}

/* A workload that raises a fixed number of sampled events per second and
 * costs a fixed CPU time per sample: the tuner must bring the overhead
 * under budget within a few windows and then hold steady. */
static void test_converges(void **state)
{
    (void)state;
    const double events_per_sec = 4e9, usec_per_sample = 2.0, budget = 1.0;
    uint64_t p = 20000, last = 0;
    unsigned changes_late = 0;
    for (int i = 0; i < 60; i++) {
        double samples = events_per_sec / (double)p;
        struct nt_period_window w = {
            .cpu_usec = (uint64_t)(samples * usec_per_sample),
            .wall_usec = 1000000,
            .samples = (uint64_t)samples,
        };
        last = p;
        p = nt_period_next(p, &w, budget, &pebs);
        if (i >= 20 && p != last)
            changes_late++;
    }
    double used = 100.0 * (events_per_sec / (double)p) * usec_per_sample / 1e6;
    assert_true(used <= budget);
    assert_true(used >= budget * 0.5 * 0.875);         /* not starved either */
    assert_int_equal(changes_late, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_over_budget_grows),
        cmocka_unit_test(test_under_budget_shrinks_gently),
        cmocka_unit_test(test_dead_band_holds),
        cmocka_unit_test(test_no_samples_holds),
        cmocka_unit_test(test_overflow_grows),
        cmocka_unit_test(test_clamps),
        cmocka_unit_test(test_ibs_multiple_of_16),
        cmocka_unit_test(test_converges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
