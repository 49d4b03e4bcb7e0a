/* Heat: access counts that decay with a half-life,
 *
 *     heat(t) = heat(t0) * 2^(-(t - t0) / half_life)
 *
 * The math (policy/heat.c) is pure. Two ways to keep a decaying value:
 *
 *  - struct nt_heat: value plus last-update time, decayed lazily when it
 *    is touched or read. One exp2 per touch (none when dt == 0).
 *  - struct nt_heat_clock: many values that share one half-life are
 *    stored pre-scaled by 2^((t - epoch) / half_life). Adding at time t is
 *    a multiply, decay costs nothing, and stored values compare like the
 *    heats they stand for. The clock caches its scale per distinct "now",
 *    so a burst of samples with one timestamp costs a single exp2. Every
 *    NT_HEAT_REBASE_HALF_LIVES half-lives the owner multiplies all stored
 *    values by the factor the clock hands back, so nothing overflows.
 *
 * A half-life of 0 means "never decay".
 *
 * The page -> node query used by the aggregator (daemon/pagenode.c) is
 * declared at the end: it is the one syscall-backed piece that goes with
 * heat, since pages are placed by how hot they are where they live. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* 2^(-dt / half_life); 1 when dt == 0 or half_life == 0. */
double nt_heat_decay_factor(uint64_t dt_usec, uint64_t half_life_usec);

/* ---- one lazily decayed value --------------------------------------------- */

struct nt_heat {
    double value;             /* heat as of t_usec */
    uint64_t t_usec;
};

/* The value decayed to now (a time before t_usec reads as t_usec). */
double nt_heat_value_at(const struct nt_heat *h, uint64_t now_usec, uint64_t half_life_usec);
/* Decay to now, then add w. Time never runs backwards: an earlier now adds
 * at the stored time. */
void nt_heat_add(struct nt_heat *h, double w, uint64_t now_usec, uint64_t half_life_usec);

/* ---- many values on one clock --------------------------------------------- */

/* Stored values grow by at most 2^this before a rebase: float storage has
 * room for heats up to ~2^90 on top of it. */
#define NT_HEAT_REBASE_HALF_LIVES 32

struct nt_heat_clock {
    uint64_t half_life_usec;
    uint64_t epoch_usec;      /* stored = heat * 2^((t - epoch) / half_life) */
    uint64_t now_usec;        /* the time scale and inv_scale are for */
    double scale;             /* heat added at now -> stored */
    double inv_scale;         /* stored -> heat at now */
};

void nt_heat_clock_init(struct nt_heat_clock *c, uint64_t half_life_usec, uint64_t now_usec);

/* The slow part of nt_heat_clock_advance. */
double nt_heat_clock_advance_slow(struct nt_heat_clock *c, uint64_t now_usec);

/* Move the clock to now (never backwards). Returns the factor every stored
 * value must be multiplied by because the epoch moved: 1.0 almost always. */
static inline double nt_heat_clock_advance(struct nt_heat_clock *c, uint64_t now_usec)
{
    if (__builtin_expect(now_usec <= c->now_usec, 1))
        return 1.0;
    return nt_heat_clock_advance_slow(c, now_usec);
}

/* Weight w added at the clock's now, in stored units. */
static inline double nt_heat_clock_stored(const struct nt_heat_clock *c, double w)
{
    return w * c->scale;
}

/* A stored value as a heat at the clock's now. */
static inline double nt_heat_clock_value(const struct nt_heat_clock *c, double stored)
{
    return stored * c->inv_scale;
}

/* stored -> heat factor at a time at or after the clock's now, without
 * moving the clock (for read-only snapshots). */
double nt_heat_clock_inv_scale_at(const struct nt_heat_clock *c, uint64_t now_usec);

/* Switch half-life at the clock's now: heats are kept, the epoch restarts.
 * Returns the factor every stored value must be multiplied by. */
double nt_heat_clock_set_half_life(struct nt_heat_clock *c, uint64_t half_life_usec);

/* ---- where pages live (daemon/pagenode.c) --------------------------------- */

/* An nt_page_node_fn (aggregate.h) backed by move_pages(2) in query mode
 * (nodes == NULL), at most 1024 pages per call. nodes[i] is the node of
 * vaddrs[i], or a negative errno for that page (-ENOENT not present,
 * -EFAULT not mapped, ...). Returns 0, or the negative errno of the call
 * itself (-ESRCH gone, -EPERM not allowed). userdata is unused. */
int nt_page_nodes_query(pid_t pid, size_t n, const uint64_t *vaddrs, int *nodes, void *userdata);
