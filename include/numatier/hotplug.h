/* Memory offlining, onlining and node drains as jobs (issue 7, execution).
 *
 * A request is planned at once (policy/offline-plan.c, over what
 * nt_hotplug_gather read from the system) and, unless refused or a dry
 * run, becomes the one job that runs, in the background of the daemon's
 * sd-event loop, so every other request keeps being answered:
 *
 *   offline:  evacuating (the processes' pages on the target blocks go to
 *             the plan's destinations with the mover, under the migration
 *             budget, one process per loop turn) -> offlining (block by
 *             block in plan order; each write to memoryN/state runs in a
 *             forked worker killed at write_timeout, since the kernel
 *             retries an offline until a signal arrives; state is re-read
 *             after each write; EBUSY retried with backoff) -> done, or on
 *             a failure or the job deadline -> rolling-back (the blocks
 *             this job offlined are onlined again, into their zone from
 *             before), unless rollback is off;
 *   online:   onlining (movable where the plan says) -> done; rebinds
 *             that an offline of the same node made are put back;
 *   drain:    threads running on the node's CPUs move to the plan's
 *             cpu_node, memory leaves the node; no block changes. The
 *             node stays drained (under maintenance) until `online node
 *             N` ends the drain: it gives the processes the drain pinned
 *             their CPU affinity from before.
 *
 * Maintenance: the nodes the running offline or drain job takes out of
 * service, and the nodes drained and not yet back, receive nothing from
 * numatierd: the placer and the tierer read nt_hotplug_maintenance_nodes
 * every cycle and send neither threads nor pages there.
 *
 * Every job is journaled in the ledger (ledger-jobs.h); a daemon restarted
 * mid-job rolls it back or resumes it ([offline] on_restart). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sched.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "numatier/ledger-jobs.h"
#include "numatier/nodeset.h"
#include "numatier/offline-plan.h"

struct json_object;
struct nt_config;
struct nt_mover_params;
struct nt_topology;

enum nt_offline_restart { NT_OFFLINE_RESTART_ROLLBACK, NT_OFFLINE_RESTART_RESUME };

/* What the job manager takes from the configuration. */
struct nt_hotplug_params {
    uint64_t write_timeout_usec;    /* [offline] write_timeout */
    uint64_t timeout_usec;          /* [offline] timeout: the whole job */
    unsigned ebusy_retries;         /* [offline] ebusy_retries */
    uint64_t retry_backoff_usec;    /* [offline] retry_backoff: doubled per retry */
    bool retry_timeouts;            /* [offline] retry_timeouts: a timed-out write counts as EBUSY */
    enum nt_offline_restart on_restart;
    bool allow_slow;                /* [offline] allow_slow */
    unsigned history;               /* [offline] history: finished jobs `jobs` lists */
    double free_watermark_pct;      /* [placement] free_watermark */
    uint64_t migration_budget;      /* [placement] migration_budget, bytes/s */
    struct nt_tier_config tiers;    /* [topology] */
};
void nt_hotplug_params_from_config(struct nt_hotplug_params *p, const struct nt_config *c);

/* ---- the sysfs seam: real by default, fakes in tests ---------------------- */

/* Write value to the file at path (below the root already). In a forked
 * worker this runs in the child, so it must be async-signal-safe (the
 * default is open/write/close). Returns 0 or negative errno. */
typedef int (*nt_hotplug_write_fn)(const char *path, const char *value, void *userdata);
/* Read memory block `block`'s state word ("online", "offline") below root. */
typedef int (*nt_hotplug_read_fn)(const char *root, unsigned block, char *buf, size_t len, void *userdata);

struct nt_hotplug_sysfs {
    nt_hotplug_write_fn write;      /* NULL: the real write */
    nt_hotplug_read_fn read_state;  /* NULL: read memoryN/state below root */
    bool inline_writes;             /* call write in the loop itself, no worker (tests) */
    void *userdata;
};

struct nt_hotplug_options {
    sd_event *event;
    const char *root;               /* "/" or a fixture tree */
    const char *ledger_path;        /* NULL: no journal (jobs in memory only) */
    const struct nt_hotplug_sysfs *sysfs;       /* NULL: the real one */
    const struct nt_mover_params *mover;        /* NULL: real syscalls, budget from params */
};

struct nt_hotplug;

int nt_hotplug_new(const struct nt_hotplug_options *o, const struct nt_hotplug_params *p, struct nt_hotplug **out);
/* A running job's worker is killed; the job stays in the journal as it is,
 * for the next start to recover. NULL ok. */
void nt_hotplug_free(struct nt_hotplug *h);
static inline void nt_hotplug_freep(struct nt_hotplug **h) { nt_hotplug_free(*h); }
void nt_hotplug_reconfigure(struct nt_hotplug *h, const struct nt_hotplug_params *p);

/* At startup: a job the journal says was running or rolling back is rolled
 * back or resumed as on_restart says (a job caught rolling back always
 * rolls back), in the background like any job. Returns 0 (also when there
 * is nothing to recover) or negative errno. */
int nt_hotplug_recover(struct nt_hotplug *h);

/* ---- requests --------------------------------------------------------------- */

enum nt_hotplug_target { NT_TARGET_BLOCKS, NT_TARGET_RANGE, NT_TARGET_NODE };

struct nt_hotplug_request {
    enum nt_offline_op op;
    enum nt_hotplug_target kind;
    unsigned first_block, last_block;   /* NT_TARGET_BLOCKS, inclusive */
    uint64_t range_start, range_end;    /* NT_TARGET_RANGE, bytes, end exclusive */
    int node;                           /* NT_TARGET_NODE */
    bool dry_run, force;
    bool rollback;                      /* default true */
    uint64_t timeout_usec;              /* 0: [offline] timeout */
};

/* "40" or "40-43" -> first, last. 0 or -EINVAL. */
int nt_hotplug_parse_blocks(const char *s, unsigned *first, unsigned *last);
/* "0x100000000-0x120000000" (or decimal), end exclusive and > start. */
int nt_hotplug_parse_range(const char *s, uint64_t *start, uint64_t *end);

/* A request from the control socket's args (protocol: exactly one of
 * "block", "range", "node" -- drain: "node" only -- plus "dry_run",
 * "timeout_sec", "force", "rollback"). Unknown keys are refused. 0, or
 * -EINVAL with why. */
int nt_hotplug_request_from_json(enum nt_offline_op op, struct json_object *args, struct nt_hotplug_request *req,
                                 char *why, size_t len);

/* The outcome of a request, for the control socket. */
struct nt_hotplug_reply {
    struct json_object *result;         /* {"plan":..,"job":..|null} or {"plan":..} on success */
    const char *code;                   /* static: "insufficient-capacity", "busy", ... on failure */
    char message[640];
};

/* Plan the request and start its job (unless dry_run, refused or nothing
 * to do). Returns 0 with reply->result, or negative errno with code and
 * message (a refusal: -EPERM... see protocol: nothing changed); a refusal
 * also sets reply->result to {"plan":..}, the refused plan, for the error. */
int nt_hotplug_submit(struct nt_hotplug *h, const struct nt_hotplug_request *req, struct nt_hotplug_reply *reply);

/* {"jobs":[JOB,...]} newest first (the running one and the recent ones),
 * or with id > 0 just that job; -ENOENT if there is no such job. */
int nt_hotplug_jobs_json(struct nt_hotplug *h, int64_t id, struct json_object **out);
/* For status: {"job": JOB of the running one | null, "journal": path | null}. */
struct json_object *nt_hotplug_status_json(const struct nt_hotplug *h);
/* The running job, NULL if none. */
const struct nt_job *nt_hotplug_current(const struct nt_hotplug *h);

/* ---- maintenance --------------------------------------------------------------- */

/* The nodes under maintenance: those the running offline or drain job
 * targets (whole nodes, and the nodes of the blocks it changes), and those
 * drained by a drain that succeeded and that no `online node N` has ended
 * since (derived from the journal at start, so a restart keeps them). */
void nt_hotplug_maintenance_nodes(const struct nt_hotplug *h, struct nt_nodeset *out);
/* For status: [{"node":N,"why":"drained"|"offline"|"drain","job":ID}, ...]
 * by node: "drained" for a finished drain, else the running job's op. */
struct json_object *nt_hotplug_maintenance_json(const struct nt_hotplug *h);

/* Tells whether mask on pid is an affinity numatierd's placement set (so
 * not the user's): a drain moves such threads like unpinned ones. */
typedef bool (*nt_hotplug_affinity_owner_fn)(pid_t pid, const cpu_set_t *mask, void *userdata);
void nt_hotplug_set_affinity_owner(struct nt_hotplug *h, nt_hotplug_affinity_owner_fn fn, void *userdata);
/* Is mask, pid's CPU affinity (start_time: the instance, 0 unknown), a
 * drain's pin still in force (the running drain's, or one not yet ended by
 * `online node N`)? Then it is not the user's. */
struct nt_hotplug_pin {
    int64_t job;                    /* the drain that set it */
    int node;                       /* the node drained */
};
bool nt_hotplug_drain_pin(const struct nt_hotplug *h, pid_t pid, uint64_t start_time, const cpu_set_t *mask,
                          struct nt_hotplug_pin *out);
/* Bytes the jobs moved since the start: when it grows, what placement
 * knows of where pages are is stale. */
uint64_t nt_hotplug_bytes_moved(const struct nt_hotplug *h);

/* ---- the pieces, exposed for the unit tests ------------------------------------ */

/* A bound process as gathered: what the planner sees, plus how it is bound. */
struct nt_hotplug_proc {
    pid_t pid;
    char comm[16];
    struct nt_nodeset mems;
    bool cpuset;                    /* bound by cpuset (else by a bind mempolicy) */
    char cgroup[256];               /* its cgroup v2 path ("" if unknown) */
};

/* Everything the planner needs, read from the system below root. The
 * arrays in `in` point into this struct. */
struct nt_hotplug_input {
    struct nt_topology *topo;
    struct nt_offline_block *blocks;
    char **unofflinable;            /* per block: its unofflinable_reason (malloc'd) or NULL */
    struct nt_offline_node *nodes;
    struct nt_hotplug_proc *procs;
    struct nt_offline_proc *plan_procs;
    size_t nr_procs;
    bool used_estimated_partial;    /* some target node is only partly targeted */
    struct nt_offline_input in;
};

/* Read blocks, nodes (free, total, watermarks: the larger of the zones'
 * low watermarks in /proc/zoneinfo and free_watermark_pct of the node),
 * used bytes per block (a wholly targeted node's used memory spread over
 * its online blocks; else min(block size, node used), conservative), for
 * an offline the blocks that /proc/iomem shows are not entirely System RAM
 * (the kernel refuses those: unofflinable_reason names the range), and
 * the processes bound by cpuset or a bind mempolicy (kernel threads
 * skipped). req gives the targets (op, target_node or block ids). */
int nt_hotplug_gather(const char *root, const struct nt_hotplug_params *p, const struct nt_offline_request *req,
                      struct nt_hotplug_input *out);
void nt_hotplug_input_done(struct nt_hotplug_input *in);

/* The plan and the job as JSON (protocol.md's PLAN and JOB). */
struct json_object *nt_offline_plan_to_json(const struct nt_offline_plan *plan);
struct json_object *nt_job_to_json(const struct nt_job *j, uint64_t elapsed_usec);

/* Start a job from a plan already made (what nt_hotplug_submit does after
 * planning; tests call it with plans of their own). procs (may be NULL)
 * tells how each rebind's process is bound. Returns 0 and the job's id
 * (0 without a journal), -EBUSY if a job runs, or negative errno. */
int nt_hotplug_start(struct nt_hotplug *h, const struct nt_offline_plan *plan, const struct nt_hotplug_request *req,
                     const struct nt_hotplug_proc *procs, size_t nr_procs, int64_t *id);
