/* Heat decay: the formula, lazy values, and the scaled clock. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "numatier/heat.h"

#define HL UINT64_C(30000000)     /* 30 s */
#define EPS 1e-9

static void assert_close(double got, double want)
{
    double tol = EPS * (fabs(want) > 1 ? fabs(want) : 1);
    if (fabs(got - want) > tol)
        fail_msg("got %.17g, want %.17g", got, want);
}

static void test_decay_factor(void **state)
{
    (void)state;
    assert_close(nt_heat_decay_factor(0, HL), 1.0);
    assert_close(nt_heat_decay_factor(HL, HL), 0.5);
    assert_close(nt_heat_decay_factor(2 * HL, HL), 0.25);
    assert_close(nt_heat_decay_factor(10 * HL, HL), 1.0 / 1024);
    assert_close(nt_heat_decay_factor(HL / 2, HL), M_SQRT1_2);
    assert_close(nt_heat_decay_factor(12345, 0), 1.0);          /* half-life 0: never decays */
    assert_true(nt_heat_decay_factor(5000 * HL, HL) == 0.0);    /* underflows cleanly */
}

static void test_tiny_dt(void **state)
{
    (void)state;
    double f = nt_heat_decay_factor(1, HL);                     /* 1 us of 30 s */
    assert_true(f < 1.0);
    assert_close(f, exp2(-1.0 / 30e6));
    struct nt_heat h = { .value = 1e6, .t_usec = 100 };
    double v = nt_heat_value_at(&h, 101, HL);
    assert_true(v < 1e6 && v > 1e6 - 1);
}

static void test_value_at(void **state)
{
    (void)state;
    struct nt_heat h = { 0 };
    nt_heat_add(&h, 8, 1000, HL);
    assert_close(nt_heat_value_at(&h, 1000, HL), 8);
    assert_close(nt_heat_value_at(&h, 1000 + HL, HL), 4);
    assert_close(nt_heat_value_at(&h, 1000 + 3 * HL, HL), 1);
    assert_close(nt_heat_value_at(&h, 500, HL), 8);             /* before t: no growth */
    nt_heat_add(&h, 4, 1000 + HL, HL);                          /* 4 decayed + 4 */
    assert_close(h.value, 8);
    assert_int_equal(h.t_usec, 1000 + HL);
    nt_heat_add(&h, 1, 10, HL);                                 /* earlier now: added at t */
    assert_close(h.value, 9);
    assert_int_equal(h.t_usec, 1000 + HL);
}

static void test_monotonic(void **state)
{
    (void)state;
    struct nt_heat h = { .value = 100, .t_usec = 0 };
    double prev = INFINITY;
    for (uint64_t t = 0; t < 20 * HL; t += HL / 7 + 13) {
        double v = nt_heat_value_at(&h, t, HL);
        assert_true(v <= prev);
        assert_true(v >= 0);
        prev = v;
    }
}

/* The clock must agree with the lazy value, across rebases. */
static void test_clock_matches_lazy(void **state)
{
    (void)state;
    struct nt_heat_clock c;
    nt_heat_clock_init(&c, HL, 0);
    struct nt_heat h = { 0 };
    double stored = 0;
    unsigned rebases = 0;
    for (uint64_t t = 7; t < 200 * HL; t += HL / 3 + 1) {
        double f = nt_heat_clock_advance(&c, t);
        if (f != 1.0)
            rebases++;
        stored = stored * f + nt_heat_clock_stored(&c, 2.5);
        nt_heat_add(&h, 2.5, t, HL);
        assert_close(nt_heat_clock_value(&c, stored), nt_heat_value_at(&h, t, HL));
    }
    assert_true(rebases >= 5);                    /* 200 half-lives, every 32 */
    assert_true(c.scale < exp2(NT_HEAT_REBASE_HALF_LIVES + 1));
}

static void test_clock_same_now_is_cached(void **state)
{
    (void)state;
    struct nt_heat_clock c;
    nt_heat_clock_init(&c, HL, 0);
    assert_true(nt_heat_clock_advance(&c, HL) == 1.0);
    double s = c.scale;
    assert_close(s, 2.0);
    assert_true(nt_heat_clock_advance(&c, HL) == 1.0);
    assert_true(c.scale == s);
    assert_true(nt_heat_clock_advance(&c, HL / 2) == 1.0);       /* backwards: ignored */
    assert_int_equal(c.now_usec, HL);
    assert_true(c.scale == s);
}

static void test_clock_inv_scale_at(void **state)
{
    (void)state;
    struct nt_heat_clock c;
    nt_heat_clock_init(&c, HL, 1000);
    double stored = nt_heat_clock_stored(&c, 16);
    assert_close(stored * nt_heat_clock_inv_scale_at(&c, 1000 + 2 * HL), 4);
    assert_close(stored * nt_heat_clock_inv_scale_at(&c, 10), 16);   /* before now: as of now */
}

static void test_clock_big_jump(void **state)
{
    (void)state;
    struct nt_heat_clock c;
    nt_heat_clock_init(&c, HL, 0);
    double stored = nt_heat_clock_stored(&c, 1e6);
    double f = nt_heat_clock_advance(&c, 100000 * HL);
    assert_true(f == 0.0);                        /* everything is cold now */
    stored *= f;
    assert_true(stored == 0.0);
    assert_close(c.scale, 1.0);
}

static void test_clock_set_half_life(void **state)
{
    (void)state;
    struct nt_heat_clock c;
    nt_heat_clock_init(&c, HL, 0);
    nt_heat_clock_advance(&c, 5 * HL);
    double stored = nt_heat_clock_stored(&c, 10);
    stored *= nt_heat_clock_set_half_life(&c, 2 * HL);
    assert_close(nt_heat_clock_value(&c, stored), 10);          /* heat kept */
    nt_heat_clock_advance(&c, 7 * HL);                          /* one new half-life later */
    assert_close(nt_heat_clock_value(&c, stored), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decay_factor),
        cmocka_unit_test(test_tiny_dt),
        cmocka_unit_test(test_value_at),
        cmocka_unit_test(test_monotonic),
        cmocka_unit_test(test_clock_matches_lazy),
        cmocka_unit_test(test_clock_same_now_is_cached),
        cmocka_unit_test(test_clock_inv_scale_at),
        cmocka_unit_test(test_clock_big_jump),
        cmocka_unit_test(test_clock_set_half_life),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
