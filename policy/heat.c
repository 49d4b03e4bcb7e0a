/* Heat decay math: pure, no clock reads (time comes in as arguments). */
#include <math.h>

#include "numatier/heat.h"

double nt_heat_decay_factor(uint64_t dt_usec, uint64_t half_life_usec)
{
    if (dt_usec == 0 || half_life_usec == 0)
        return 1.0;
    return exp2(-(double)dt_usec / (double)half_life_usec);
}

double nt_heat_value_at(const struct nt_heat *h, uint64_t now_usec, uint64_t half_life_usec)
{
    if (now_usec <= h->t_usec || h->value == 0)
        return h->value;
    return h->value * nt_heat_decay_factor(now_usec - h->t_usec, half_life_usec);
}

void nt_heat_add(struct nt_heat *h, double w, uint64_t now_usec, uint64_t half_life_usec)
{
    if (now_usec > h->t_usec) {
        h->value = nt_heat_value_at(h, now_usec, half_life_usec);
        h->t_usec = now_usec;
    }
    h->value += w;
}

void nt_heat_clock_init(struct nt_heat_clock *c, uint64_t half_life_usec, uint64_t now_usec)
{
    *c = (struct nt_heat_clock){
        .half_life_usec = half_life_usec,
        .epoch_usec = now_usec,
        .now_usec = now_usec,
        .scale = 1.0,
        .inv_scale = 1.0,
    };
}

/* Whole half-lives between the epoch and now, as a rebase would skip. */
static uint64_t half_lives_since_epoch(const struct nt_heat_clock *c, uint64_t now_usec)
{
    return (now_usec - c->epoch_usec) / c->half_life_usec;
}

double nt_heat_clock_advance_slow(struct nt_heat_clock *c, uint64_t now_usec)
{
    double factor = 1.0;
    c->now_usec = now_usec;
    if (c->half_life_usec == 0)
        return factor;
    uint64_t k = half_lives_since_epoch(c, now_usec);
    if (k >= NT_HEAT_REBASE_HALF_LIVES) {
        /* Move the epoch by whole half-lives so the factor is exact. A
         * jump of more than ~1100 half-lives underflows to 0: all cold. */
        factor = k > 2000 ? 0.0 : exp2(-(double)k);
        c->epoch_usec += k * c->half_life_usec;
    }
    double e = (double)(now_usec - c->epoch_usec) / (double)c->half_life_usec;
    c->scale = exp2(e);
    c->inv_scale = 1.0 / c->scale;
    return factor;
}

double nt_heat_clock_inv_scale_at(const struct nt_heat_clock *c, uint64_t now_usec)
{
    if (now_usec <= c->now_usec || c->half_life_usec == 0)
        return c->inv_scale;
    return exp2(-(double)(now_usec - c->epoch_usec) / (double)c->half_life_usec);
}

double nt_heat_clock_set_half_life(struct nt_heat_clock *c, uint64_t half_life_usec)
{
    double factor = c->inv_scale;     /* stored -> heat at now, i.e. epoch = now */
    nt_heat_clock_init(c, half_life_usec, c->now_usec);
    return factor;
}
