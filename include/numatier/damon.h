/* The DAMON backend's internals: region -> heat (pure, policy/damon-heat.c)
 * and one kdamond of ours driven through the DAMON sysfs interface
 * (daemon/sampler-damon.c). The sampler ops (nt_sampler_damon_ops) wrap the
 * synchronous kdamond functions below with a worker thread, because DAMON
 * answers `commit` and `update_schemes_tried_regions` only after one or two
 * aggregation intervals, and the event loop must not wait that long.
 *
 * Layout, one kdamond for every watched process (checked on 6.12):
 *
 *   kdamonds/K/contexts/0           operations vaddr (a kdamond has at most
 *                                   one context: nr_contexts 2 is EINVAL)
 *     targets/I/pid_target          one target per watched process
 *     schemes/I                     one `stat` scheme per target, access
 *                                   pattern wide open, and one filter
 *                                   {type target, damon_target_idx I,
 *                                   matching N}: so schemes/I/tried_regions
 *                                   holds the regions of target I only.
 *                                   tried_regions/N carry no target index,
 *                                   and their N count across all schemes.
 *
 * One kdamond, not one per process: a tried-regions update holds the
 * kernel's global damon_sysfs_lock for one or two aggregation intervals and
 * only one request may be pending at a time, so N kdamonds would take N
 * such waits per drain. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "numatier/sampler.h"

struct nt_config;

#define NT_DAMON_DIR        "/sys/kernel/mm/damon"
#define NT_DAMON_KDAMONDS   "/sys/kernel/mm/damon/admin/kdamonds"
/* Which kdamond is ours ("kdamond=K\npid=P\n"), so a restarted daemon can
 * stop the one a crashed daemon left running. */
#define NT_DAMON_STATE_FILE "/run/numatier/damon.kdamond"

/* Most processes one kdamond watches. Each target brings a scheme, and
 * the kernel finds a target's index by walking the target list for every
 * (region, scheme) pair, so the cost of an aggregation grows as
 * regions x targets^2. */
#define NT_DAMON_MAX_TARGETS 64

/* ---- region -> heat (pure) ------------------------------------------------ */

/* One line of schemes/I/tried_regions: [start, end), the number of
 * sampling intervals of the last aggregation interval in which DAMON found
 * the region accessed, and for how many aggregation intervals the region's
 * access pattern has held. */
struct nt_damon_region {
    uint64_t start, end;
    uint32_t nr_accesses;
    uint32_t age;
};

struct nt_damon_intervals {
    uint64_t sample_usec;     /* sample_us */
    uint64_t aggr_usec;       /* aggr_us */
};

struct nt_damon_heat {
    double freq;              /* nr_accesses / (aggr / sample): 0..1 */
    double rate;              /* accesses per second on each page of the region */
    uint64_t span_usec;       /* how much time the observation stands for */
    uint32_t weight;          /* rate x span, rounded, >= 1 */
};

/* The access rate of the region's pages and the weight of one observation
 * that stands for period_usec (the time since the previous one; 0 = one
 * aggregation interval). False when there is nothing to report: no
 * accesses, an empty region, or zero intervals. */
bool nt_damon_region_heat(const struct nt_damon_region *r, const struct nt_damon_intervals *iv,
                          uint64_t period_usec, struct nt_damon_heat *out);

/* The same as an nt_access of process pid (tid 0, cpu -1, source
 * unknown). page_size is a power of two. False as above. */
bool nt_damon_region_to_access(const struct nt_damon_region *r, pid_t pid,
                               const struct nt_damon_intervals *iv, uint64_t period_usec,
                               uint32_t page_size, struct nt_access *out);

/* ---- one kdamond of ours (synchronous) ------------------------------------ */

struct nt_damon_params {
    uint64_t sample_usec;     /* damon_sample_interval */
    uint64_t aggr_usec;       /* [sampler] interval */
    uint64_t update_usec;     /* how often vaddr re-reads the mappings */
    unsigned min_regions;     /* per process */
    unsigned max_regions;     /* for the whole kdamond (it bounds DAMON's overhead) */
};

/* From [sampler]; the defaults if cfg is NULL. */
void nt_damon_params_from_config(const struct nt_config *cfg, struct nt_damon_params *out);
/* nr_regions/min and max for n targets: min is per process, so it grows
 * with n; max is at least twice min, or DAMON would never split. */
void nt_damon_nr_regions(const struct nt_damon_params *p, size_t n, unsigned *min, unsigned *max);

/* 0, or negative errno and one line naming what is missing: -ENODEV
 * (no DAMON sysfs), -EOPNOTSUPP (no vaddr), -EACCES, -EBUSY (every
 * kdamond run by someone else). Writes nothing. */
int nt_damon_probe(const char *root, char *why, size_t len);

struct nt_damon;

/* Every sysfs write goes through here first when set (tests use it to play
 * the kernel). A negative return fails the write with that errno. after
 * is false before the write and true after it succeeded. */
typedef int (*nt_damon_write_hook)(const char *path, const char *value, bool after, void *userdata);

/* Stop a kdamond a previous numatierd left on, pick a kdamond slot (idle,
 * or a new one if there are none at all) and set up its context. The
 * kdamond stays off until it has targets: DAMON refuses to start without. */
int  nt_damon_open(const char *root, const struct nt_damon_params *p, nt_damon_write_hook hook,
                   void *hook_userdata, struct nt_damon **out, char *why, size_t len);
/* Turn our kdamond off, clear its targets and schemes, give back the slot
 * if we created it, remove the state file. NULL ok. */
void nt_damon_close(struct nt_damon *d);
static inline void nt_damon_closep(struct nt_damon **d) { nt_damon_close(*d); }

/* Make the kdamond watch exactly these processes (at most
 * NT_DAMON_MAX_TARGETS, else -E2BIG): commit while on, start when the
 * first arrives, stop when the last goes. Processes that no longer exist
 * (no /proc/PID below root) are left out. If DAMON drops the kdamond on
 * commit (a target died in between), the target list is rebuilt without
 * the dead and the kdamond started again. */
int  nt_damon_set_targets(struct nt_damon *d, const pid_t *pids, size_t n);

typedef void (*nt_damon_region_fn)(pid_t pid, const struct nt_damon_region *r, void *userdata);

/* Ask DAMON for the regions of its next aggregation interval and hand
 * each one to fn with its process. Blocks for one or two aggregation
 * intervals. Returns the number of regions, -EBUSY if another DAMON user's
 * request is in flight (try later), -ESRCH if the kdamond stopped (all its
 * targets exited, or someone turned it off: call nt_damon_set_targets to
 * restart it), or another negative errno. *bad counts unreadable regions. */
int  nt_damon_collect(struct nt_damon *d, nt_damon_region_fn fn, void *userdata, uint64_t *bad);

unsigned nt_damon_index(const struct nt_damon *d);
bool     nt_damon_running(const struct nt_damon *d);
size_t   nt_damon_nr_targets(const struct nt_damon *d);
/* The processes in kernel target order (index I is schemes/I). */
const pid_t *nt_damon_targets(const struct nt_damon *d);

/* ---- the sampler ops' worker, for tests ----------------------------------- */

/* nt_sampler_damon_ops.open with a write hook. */
int nt_sampler_damon_open_with(const struct nt_sampler_env *env, nt_damon_write_hook hook,
                               void *hook_userdata, void **state, char *why, size_t len);
/* Wait until the worker has applied every watch/unwatch and finished the
 * collection it was asked for. Returns its last error or 0. */
int nt_sampler_damon_sync(void *state);
