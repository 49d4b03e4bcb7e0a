/* The placer: each cycle, turns the watch pipeline's per-process heat into
 * placement decisions (policy/placement.c) and, in enforce mode, into moves
 * (daemon/mover.c). A page move takes the process's known hot pages first
 * (move_pages, hottest first) and, with [placement] move_cold, the rest of
 * its memory on the other fast nodes a cycle or more later (migrate_pages).
 * It keeps the last decision per process for `explain`, the cycle's
 * actions for `plan`, and the costs it decided with. */
#pragma once

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct json_object;
struct nt_config;
struct nt_nodeset;
struct nt_topology;
struct nt_watch;
struct nt_placer;

int  nt_placer_new(const char *root, const struct nt_config *cfg, const struct nt_topology *topo,
                   struct nt_placer **out);
/* Puts back the affinities it changed when [placement] restore_on_exit. */
void nt_placer_free(struct nt_placer *p);
static inline void nt_placer_freep(struct nt_placer **p) { nt_placer_free(*p); }
void nt_placer_reconfigure(struct nt_placer *p, const struct nt_config *cfg);

/* Decide for every watched process; act unless cfg->mode is advise.
 * Nodes in maintenance (offline jobs, drains; may be NULL) receive
 * neither threads nor pages, from placement or from tiering. */
int nt_placer_cycle(struct nt_placer *p, struct nt_watch *w, const struct nt_config *cfg,
                    const struct nt_topology *topo, const struct nt_nodeset *maintenance, uint64_t now_usec);

/* {"costs":{...},"counters":{...},"mover":{...}} for status. */
struct json_object *nt_placer_status_json(const struct nt_placer *p);
/* The last decision about pid with every number behind it, and
 * "pending_rest" ({"node","thread_node","since_usec","hot_pages_moved"},
 * or null): the rest of a page move whose hot pages went first. NULL with
 * *err set (-ESRCH: not watched) when there is none. */
struct json_object *nt_placer_explain_json(const struct nt_placer *p, const struct nt_watch *w,
                                           const struct nt_config *cfg, pid_t pid, int *err);
/* The actions of the last cycle, those waiting on hysteresis, and the
 * rests of page moves still to come (state "rest"). */
struct json_object *nt_placer_plan_json(const struct nt_placer *p);
/* Put pid's original affinity back; returns threads restored or -errno. */
int nt_placer_restore(struct nt_placer *p, pid_t pid);
/* Is mask on pid the affinity placement set (not the user's)? */
bool nt_placer_affinity_is_ours(const struct nt_placer *p, pid_t pid, const cpu_set_t *mask);

/* Tells whether mask on pid (start_time: the instance) is an affinity
 * someone else in the daemon set for a while (a drain), not the user's;
 * if so, writes who into why. Such threads are not treated as pinned. */
typedef bool (*nt_placer_pin_owner_fn)(pid_t pid, uint64_t start_time, const cpu_set_t *mask, char *why,
                                       size_t len, void *userdata);
void nt_placer_set_pin_owner(struct nt_placer *p, nt_placer_pin_owner_fn fn, void *userdata);
