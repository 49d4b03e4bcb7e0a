/* Self-tuned sample period: keep the daemon's sampling overhead within
 * [sampler] cpu_budget. Pure: the caller measures, we decide.
 *
 * Shape: multiplicative increase when over budget (fast, because overhead
 * hurts the workload), a gentle decrease when well under (slow, because a
 * short period is what floods the ring), and a dead band in between so the
 * period doesn't oscillate. */
#include <stdint.h>

#include "numatier/perf.h"

#define GROW_MIN        1.25    /* over budget: grow at least this much... */
#define GROW_MAX        8.0     /* ...and at most this much per window */
#define GROW_OVERFLOW   2.0     /* the kernel throttled or lost records */
#define SHRINK          0.875   /* well under budget */
#define UNDER_FRACTION  0.5     /* "well under" is below half the budget */

static uint64_t align_of(const struct nt_period_limits *lim)
{
    return lim->align ? lim->align : 1;
}

uint64_t nt_period_clamp(uint64_t period, const struct nt_period_limits *lim)
{
    uint64_t a = align_of(lim);
    uint64_t lo = lim->min ? lim->min : 1;
    lo = (lo + a - 1) / a * a;              /* the smallest aligned value >= min */
    uint64_t hi = lim->max / a * a;
    if (hi < lo)
        hi = lo;
    period = period / a * a;
    if (period < lo)
        return lo;
    if (period > hi)
        return hi;
    return period;
}

static double grow_factor(double used_pct, double budget_pct, bool overflowed)
{
    double f = used_pct / budget_pct;
    if (f < GROW_MIN)
        f = GROW_MIN;
    if (overflowed && f < GROW_OVERFLOW)
        f = GROW_OVERFLOW;
    return f > GROW_MAX ? GROW_MAX : f;
}

/* Scale without overflowing uint64_t. */
static uint64_t scale(uint64_t period, double f)
{
    double v = (double)period * f;
    if (v >= 18446744073709551615.0)
        return UINT64_MAX;
    return v < 1.0 ? 1 : (uint64_t)v;
}

uint64_t nt_period_next(uint64_t period, const struct nt_period_window *w, double budget_pct,
                        const struct nt_period_limits *lim)
{
    if (!w->wall_usec || !(budget_pct > 0))
        return nt_period_clamp(period, lim);
    double used = 100.0 * (double)w->cpu_usec / (double)w->wall_usec;
    bool overflowed = w->overflows > 0;

    /* Without samples the overhead isn't ours to tune away: growing the
     * period would only blind us, shrinking it would set up a flood for
     * when the workload wakes. */
    if (w->samples == 0 && !overflowed)
        return nt_period_clamp(period, lim);
    if (used > budget_pct || overflowed) {
        uint64_t next = scale(period, grow_factor(used, budget_pct, overflowed));
        /* Small periods must still move once rounded to the alignment. */
        if (next < period + align_of(lim) && period <= UINT64_MAX - align_of(lim))
            next = period + align_of(lim);
        return nt_period_clamp(next, lim);
    }
    if (used < budget_pct * UNDER_FRACTION)
        return nt_period_clamp(scale(period, SHRINK), lim);
    return nt_period_clamp(period, lim);
}
