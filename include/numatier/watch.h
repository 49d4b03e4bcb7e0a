/* The watch pipeline: which processes are watched (procs), how their
 * accesses are observed (sampler) and what that adds up to (aggregate).
 * The manager drives it from two timers: drain every [sampler] interval,
 * rescan every cycle. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct json_object;
struct nt_config;
struct nt_topology;
struct nt_watch;

/* Fails only for what an operator must fix (an explicit backend that cannot
 * run: why says exactly what is missing). With backend = auto and no
 * backend usable, the pipeline runs without sampling and says why. */
int  nt_watch_new(const char *root, const struct nt_config *cfg, const struct nt_topology *topo,
                  struct nt_watch **out, char *why, size_t len);
void nt_watch_free(struct nt_watch *w);     /* NULL ok; stops the sampler */
static inline void nt_watch_freep(struct nt_watch **w) { nt_watch_free(*w); }

/* Per cycle: rescan processes, follow them in the sampler, look up the
 * nodes of the hottest pages. */
int nt_watch_cycle(struct nt_watch *w, const struct nt_config *cfg, const struct nt_topology *topo,
                   uint64_t now_usec);
/* Per sampler interval: move observations into the aggregate. */
int nt_watch_drain(struct nt_watch *w, const struct nt_topology *topo, uint64_t now_usec);
/* New config or topology: half-life, table cap, node count. */
int nt_watch_reconfigure(struct nt_watch *w, const struct nt_config *cfg, const struct nt_topology *topo);

/* For placement: the watched processes, and the heat per process now (with
 * each process's top_pages hottest pages); free with nt_heat_snapshot_free. */
struct nt_procs;
struct nt_heat_snapshot;
const struct nt_procs *nt_watch_procs(const struct nt_watch *w);
int nt_watch_snapshot(struct nt_watch *w, uint64_t now_usec, size_t top_pages,
                      struct nt_heat_snapshot **out);
/* Pages of this process moved: forget where they were. */
void nt_watch_pages_moved(struct nt_watch *w, uint32_t proc_id);
/* Just these pages of it moved (move_pages): forget where they were. */
void nt_watch_some_pages_moved(struct nt_watch *w, uint32_t proc_id, const uint64_t *vaddrs, size_t n);
/* Pages of any process may have moved (an offline or drain job): forget
 * where every page was. */
void nt_watch_all_pages_moved(struct nt_watch *w);

/* {"sampler":{...},"procs":{...},"aggregate":{...}} for status. */
struct json_object *nt_watch_status_json(struct nt_watch *w);
/* The `top` view: one entry per watched process, plus its top_pages
 * hottest pages. */
struct json_object *nt_watch_top_json(struct nt_watch *w, uint64_t now_usec, size_t top_pages);
