/* The RAS side of the daemon: corrected-error events from the tracefs
 * instance -> decoders -> ledger -> ECC policy -> soft offline, with every
 * step in the ledger and the journal. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct json_object;
struct nt_config;
struct nt_rasd;
typedef struct sd_event sd_event;

/* Starts reading events. A machine without tracefs or the events, or a
 * ledger that cannot be opened, is not fatal: RAS runs degraded and says
 * why (status). At startup it settles what a crash left open, re-offlines
 * frames after a reboot, and replays the ledger's recent events into the
 * policy's error counts. Returns 0 or -ENOMEM. */
int  nt_rasd_new(sd_event *ev, const char *root, const struct nt_config *cfg, struct nt_rasd **out);
void nt_rasd_free(struct nt_rasd *r);
static inline void nt_rasd_freep(struct nt_rasd **r) { nt_rasd_free(*r); }
void nt_rasd_reconfigure(struct nt_rasd *r, const struct nt_config *cfg);
/* Per cycle: due retries, CPU hotplug, pruning; topo (may be NULL) names
 * the memory block and node of each address from now on. */
struct nt_topology;
void nt_rasd_cycle(struct nt_rasd *r, const struct nt_topology *topo, uint64_t now_usec);

/* Block escalation with [ras] block_action = soft: start a job that
 * evacuates and offlines memory block `block`. 0 with *job set, -EBUSY
 * when another job runs (tried again every 30 s), other negative errno
 * when refused; msg says why. Without one, escalations are recorded only. */
typedef int (*nt_rasd_block_offline_fn)(uint64_t block, int64_t *job, char *msg, size_t len, void *userdata);
void nt_rasd_set_block_offliner(struct nt_rasd *r, nt_rasd_block_offline_fn fn, void *userdata);

struct json_object *nt_rasd_status_json(const struct nt_rasd *r);
/* `numatierctl ras`: the ledger's view (summary, offlined frames, recent
 * events, pending retries). NULL with *err set on failure. */
struct json_object *nt_rasd_ledger_json(struct nt_rasd *r, unsigned max_events, int *err);
/* `numatierctl ras --check`: nt_ledger_check() as {ok, problems: [...],
 * offlines_done, frames_offline}; a check that cannot run is not ok. It
 * reads the whole ledger: on demand only. */
struct json_object *nt_rasd_check_json(struct nt_rasd *r);

/* Record one decoded event and act on it, exactly as if the tracefs
 * instance had delivered it (for other event sources, and tests). 0, or
 * negative errno when the ledger could not record it: the policy does not
 * see an event that is not acknowledged. */
struct nt_ras_event;
int nt_rasd_handle_event(struct nt_rasd *r, const struct nt_ras_event *ev);
