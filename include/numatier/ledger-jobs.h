/* Offline, online and drain jobs as the daemon runs them and as the ledger
 * journals them (schema v3: tables jobs, job_blocks, job_rebinds; v4:
 * job_pins).
 *
 * The journal follows the ledger's rule: intent before action, result
 * after. Before each write to a block's state file the block's row gets
 * `writing` (the value about to be written) committed; after the kernel
 * answered, the row gets the state read back and the result, and
 * `writing` is cleared. A daemon killed in between finds the row with
 * `writing` set and re-reads the block instead of guessing.
 *
 * Functions return 0 or negative errno (SQLite's message is in
 * nt_ledger_last_error() only for the ledger's own functions; these log
 * nothing and say what failed in their return value). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "numatier/offline-plan.h"

struct nt_ledger;
struct sqlite3;

enum nt_job_state {
    NT_JOB_RUNNING,
    NT_JOB_ROLLING_BACK,
    NT_JOB_SUCCEEDED,
    NT_JOB_FAILED,          /* a step failed and rollback was off, or rollback failed */
    NT_JOB_ROLLED_BACK,     /* every block this job changed is back as before */
    NT_JOB_INTERRUPTED,     /* restarted mid-job and the restart action could not complete */
    NT_JOB_NR_STATES,
};
const char *nt_job_state_to_string(enum nt_job_state s);     /* "running", "rolling-back", ... */
int nt_job_state_from_string(const char *s);                  /* state or -EINVAL */
static inline bool nt_job_state_final(enum nt_job_state s) { return s >= NT_JOB_SUCCEEDED; }

enum nt_job_phase {
    NT_JOB_PLANNING,
    NT_JOB_EVACUATING,
    NT_JOB_OFFLINING,
    NT_JOB_ONLINING,
    NT_JOB_DRAINING,
    NT_JOB_ROLLING_BACK_PHASE,
    NT_JOB_DONE,
    NT_JOB_NR_PHASES,
};
const char *nt_job_phase_to_string(enum nt_job_phase p);     /* "planning", ..., "rolling-back", "done" */
int nt_job_phase_from_string(const char *s);

enum nt_job_result {
    NT_BLOCK_PENDING,
    NT_BLOCK_OFFLINED,
    NT_BLOCK_ONLINED,
    NT_BLOCK_SKIPPED,
    NT_BLOCK_FAILED,
    NT_BLOCK_TIMEOUT,
    NT_BLOCK_ROLLED_BACK,
    NT_BLOCK_ROLLBACK_FAILED,
    NT_BLOCK_NR_RESULTS,
};
const char *nt_job_result_to_string(enum nt_job_result r);   /* "pending", "offlined", ... */
int nt_job_result_from_string(const char *s);

#define NT_JOB_WORD 24          /* a kernel state word or a value written to state */
#define NT_JOB_REASON_MAX 192
#define NT_JOB_MESSAGE_MAX 512

struct nt_job_block {
    unsigned block;
    int node;
    char before[NT_JOB_WORD];   /* state when the job started: "online", "offline" */
    char restore[NT_JOB_WORD];  /* what puts it back: "online_movable", "online_kernel", "online", "offline" */
    char want[NT_JOB_WORD];     /* what the job writes: "offline", "online", "online_movable"; "" = skip */
    char now[NT_JOB_WORD];      /* state as last read */
    char writing[NT_JOB_WORD];  /* a write in flight (journaled intent); "" = none */
    enum nt_job_result result;
    unsigned attempts;          /* writes of `want` so far */
    char reason[NT_JOB_REASON_MAX];
};

struct nt_job_rebind {
    pid_t pid;
    char comm[16];
    char kind[12];              /* "cpuset" (cpuset.mems rewritten) or "mempolicy" (pages moved only) */
    char from[64];              /* its mems before, "0-1" */
    int to_node;
    char cgroup[256];           /* cpuset: the cgroup v2 path whose cpuset.mems was rewritten */
    char mems_before[64];       /* cpuset: that file's text before ("" = it was empty) */
    bool applied;               /* cpuset.mems was rewritten */
    bool restored;
};

#define NT_JOB_CPULIST 128      /* a CPU list as text, "0-3,8" */
#define NT_JOB_BOOT_ID 40

/* A process whose threads a drain moved off the drained node's CPUs: what
 * `online node N` puts back when it ends the drain. */
struct nt_job_pin {
    pid_t pid;
    uint64_t start_time;        /* /proc/PID/stat field 22: which instance */
    char boot_id[NT_JOB_BOOT_ID];   /* the boot it was set in ("" unknown) */
    char comm[16];
    char cpus_before[NT_JOB_CPULIST];   /* its CPU affinity before the drain */
    char cpus_set[NT_JOB_CPULIST];      /* what the drain set */
    unsigned threads;           /* threads moved */
    bool restored;
};

struct nt_job {
    int64_t id;                 /* 0 until journaled */
    enum nt_offline_op op;
    char target[64];            /* "node 2", "block 40-43", "range 0x..-0x.." */
    int target_node;            /* -1: blocks or a range */
    enum nt_job_state state;
    enum nt_job_phase phase;
    bool rollback, force, resumed;
    int cpu_node;               /* drain: where threads go; -1 otherwise */
    uint64_t timeout_usec;      /* whole-job deadline, from the start */
    uint64_t started_usec;      /* CLOCK_REALTIME */
    uint64_t finished_usec;     /* 0 while running */
    uint64_t bytes_moved;
    char message[NT_JOB_MESSAGE_MAX];
    char *plan_json;            /* malloc'd, the plan as the reply showed it; may be NULL */
    struct nt_job_block *blocks;    /* malloc'd, plan order */
    size_t nr_blocks;
    struct nt_job_rebind *rebinds;  /* malloc'd */
    size_t nr_rebinds;
    struct nt_job_pin *pins;        /* malloc'd; drain: threads it moved */
    size_t nr_pins;
};

void nt_job_free(struct nt_job *j);         /* frees the arrays and j itself; NULL ok */
static inline void nt_job_freep(struct nt_job **j) { nt_job_free(*j); }
/* A deep copy; NULL on ENOMEM. */
struct nt_job *nt_job_dup(const struct nt_job *j);

/* The ledger's SQLite handle, for the job functions (ledger-jobs.c). */
struct sqlite3 *nt_ledger_db(struct nt_ledger *l);

/* Journal a new job with its blocks, rebinds and pins, in one
 * transaction; sets j->id. */
int nt_ledger_job_insert(struct nt_ledger *l, struct nt_job *j);
/* The job row: state, phase, bytes, message, times, resumed. */
int nt_ledger_job_update(struct nt_ledger *l, const struct nt_job *j);
/* One block row (index i of j->blocks): intent (writing set) or result. */
int nt_ledger_job_block_update(struct nt_ledger *l, const struct nt_job *j, size_t i);
/* One rebind row (index i of j->rebinds), added if new: applied, restored. */
int nt_ledger_job_rebind_update(struct nt_ledger *l, const struct nt_job *j, size_t i);
/* One pin row (index i of j->pins), added if new. */
int nt_ledger_job_pin_update(struct nt_ledger *l, const struct nt_job *j, size_t i);

/* Load job id (-ENOENT if none). *out is malloc'd: nt_job_free. */
int nt_ledger_job_load(struct nt_ledger *l, int64_t id, struct nt_job **out);
/* Ids of jobs not final (running, rolling-back), oldest first; *ids malloc'd. */
int nt_ledger_jobs_unfinished(struct nt_ledger *l, int64_t **ids, size_t *n);
/* Ids of the newest jobs, newest first, at most limit (0 = all). */
int nt_ledger_jobs_recent(struct nt_ledger *l, size_t limit, int64_t **ids, size_t *n);

/* Rebinds of finished offline jobs on node that were applied and not yet
 * restored: what `online node N` puts back. *out malloc'd. */
struct nt_job_rebind_ref {
    int64_t job_id;
    size_t seq;                 /* index in that job's rebinds */
    struct nt_job_rebind rb;
};
int nt_ledger_rebinds_open(struct nt_ledger *l, int node, struct nt_job_rebind_ref **out, size_t *n);
/* Mark rebind seq of job_id restored. */
int nt_ledger_rebind_mark_restored(struct nt_ledger *l, int64_t job_id, size_t seq);

/* Nodes drained and not yet back in service: for each node, the newest
 * drain job of it that succeeded, when no `online node N` job succeeded
 * after it (ids are in journal order). Sorted by node. *out malloc'd. */
struct nt_drain_ref {
    int node;
    int64_t job_id;
};
int nt_ledger_drains_open(struct nt_ledger *l, struct nt_drain_ref **out, size_t *n);

/* Pins of finished drain jobs of node (any outcome: what a failed drain
 * pinned is pinned all the same) not yet restored. *out malloc'd. */
struct nt_job_pin_ref {
    int64_t job_id;
    size_t seq;                 /* index in that job's pins */
    struct nt_job_pin pin;
};
int nt_ledger_pins_open(struct nt_ledger *l, int node, struct nt_job_pin_ref **out, size_t *n);
/* Mark pin seq of job_id restored. */
int nt_ledger_pin_mark_restored(struct nt_ledger *l, int64_t job_id, size_t seq);
