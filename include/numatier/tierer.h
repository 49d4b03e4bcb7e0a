/* The tierer: each cycle, hot pages on slow tiers up, cold pages on fast
 * nodes under pressure down (policy/tiering.c decides, the mover moves).
 * It keeps each page's streaks and cooldown between cycles, and looks for
 * cold pages the hot-page table does not list on nodes under pressure. */
#pragma once

#include <stdint.h>

struct json_object;
struct nt_config;
struct nt_mover;
struct nt_nodeset;
struct nt_topology;
struct nt_watch;
struct nt_tierer;

int  nt_tierer_new(const char *root, struct nt_tierer **out);
void nt_tierer_free(struct nt_tierer *t);
static inline void nt_tierer_freep(struct nt_tierer **t) { nt_tierer_free(*t); }

/* One cycle; moves only when cfg->mode is enforce. Processes with an
 * explicit memory binding are skipped unless [placement] move_bound_pages:
 * pinned(proc_id) says which. No page goes to a node in maintenance (may
 * be NULL). */
int nt_tierer_cycle(struct nt_tierer *t, struct nt_mover *mover, struct nt_watch *w,
                    const struct nt_config *cfg, const struct nt_topology *topo,
                    const struct nt_nodeset *maintenance, uint64_t now_usec,
                    bool (*pinned)(uint32_t proc_id, void *ud), void *ud);

/* {"enabled","cycles","promoted","demoted","move_failures","tracked_pages",
 *  "last":{"pages","pressured_nodes","demote_needed","promote":{...},"demote":{...}}} */
struct json_object *nt_tierer_status_json(const struct nt_tierer *t);
