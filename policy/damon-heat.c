/* DAMON region -> heat: pure arithmetic on what tried_regions reports.
 *
 * In every sampling interval DAMON checks one page of each region (its
 * accessed bit); nr_accesses counts the intervals of the last aggregation
 * interval in which that page had been touched, so it runs from 0 to
 * aggr / sample. DAMON assumes the pages of a region are alike, so each
 * page saw at least nr_accesses accesses during aggr_usec: that is the
 * rate. It is a lower bound, since the accessed bit says "one or more".
 *
 * age counts the aggregation intervals for which the region's pattern has
 * held. An observation may have to stand for more time than one
 * aggregation interval (drains that came late, snapshots that were
 * superseded); it is extrapolated back only as far as the pattern is known
 * to have held, so a region that just turned hot is not credited with
 * accesses from before it did. */
#include <math.h>

#include "numatier/damon.h"

bool nt_damon_region_heat(const struct nt_damon_region *r, const struct nt_damon_intervals *iv,
                          uint64_t period_usec, struct nt_damon_heat *out)
{
    if (iv->sample_usec == 0 || iv->aggr_usec == 0 || r->end <= r->start || r->nr_accesses == 0)
        return false;
    /* The kernel's own bound (damon_max_nr_accesses); more is junk. */
    uint64_t max_acc = iv->aggr_usec / iv->sample_usec;
    if (max_acc == 0)
        max_acc = 1;
    uint64_t n = r->nr_accesses < max_acc ? r->nr_accesses : max_acc;

    uint64_t held = ((uint64_t)r->age + 1) * iv->aggr_usec;
    uint64_t span = period_usec ? period_usec : iv->aggr_usec;
    if (span > held)
        span = held;

    double rate = (double)n * 1e6 / (double)iv->aggr_usec;
    double w = round(rate * (double)span / 1e6);
    *out = (struct nt_damon_heat){
        .freq = (double)n / (double)max_acc,
        .rate = rate,
        .span_usec = span,
        .weight = w < 1 ? 1 : w > UINT32_MAX ? UINT32_MAX : (uint32_t)w,
    };
    return true;
}

bool nt_damon_region_to_access(const struct nt_damon_region *r, pid_t pid,
                               const struct nt_damon_intervals *iv, uint64_t period_usec,
                               uint32_t page_size, struct nt_access *out)
{
    struct nt_damon_heat h;
    if (page_size == 0 || !nt_damon_region_heat(r, iv, period_usec, &h))
        return false;
    /* DAMON aligns regions to pages; round outward if junk does not. */
    uint64_t start = r->start & ~((uint64_t)page_size - 1);
    uint64_t pages = (r->end - start + page_size - 1) / page_size;
    *out = (struct nt_access){
        .pid = pid,
        .tid = 0,
        .vaddr = start,
        /* A hot region of 16 TiB cannot happen: DAMON splits long before. */
        .nr_pages = pages > UINT32_MAX ? UINT32_MAX : (uint32_t)pages,
        .weight = h.weight,
        .cpu = -1,
        .source = NT_MEM_SRC_UNKNOWN,
    };
    return true;
}

void nt_damon_nr_regions(const struct nt_damon_params *p, size_t n, unsigned *min, unsigned *max)
{
    uint64_t lo = (uint64_t)(p->min_regions ? p->min_regions : 3) * (n ? n : 1);
    if (lo < 3)
        lo = 3;                       /* DAMON's floor */
    uint64_t hi = p->max_regions > 2 * lo ? p->max_regions : 2 * lo;
    if (hi > UINT32_MAX)
        hi = UINT32_MAX;
    if (lo > hi / 2)
        lo = hi / 2;
    *min = (unsigned)lo;
    *max = (unsigned)hi;
}
