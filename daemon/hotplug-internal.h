/* Shared by the hotplug family of files only: hotplug.c (requests, jobs,
 * journal, recovery), hotplug-exec.c (state writes, the block state
 * machine, rollback), hotplug-evac.c (evacuation, drain, rebinds). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "numatier/hotplug.h"
#include "numatier/ledger.h"
#include "numatier/mover.h"
#include "numatier/procs.h"

struct nt_hp_evac;

/* What a running job needs besides its journaled record. */
struct nt_hp_run {
    uint64_t start_mono;            /* monotonic, for elapsed and the deadline */
    sd_event_source *step;          /* one-shot timer that drives the job */
    sd_event_source *deadline;      /* the whole-job deadline */
    bool deadline_passed;
    /* the write in flight */
    bool writing;
    bool write_rollback;            /* it is a rollback write */
    size_t cur;                     /* its block (index in job->blocks) */
    pid_t worker;                   /* forked worker, 0 if none */
    int worker_pidfd;
    sd_event_source *worker_io, *worker_timer;
    bool worker_timed_out;
    /* what the plan said, for evacuation */
    struct nt_nodeset emptied;
    struct nt_offline_dest *dests;
    size_t nr_dests;
    uint64_t *dest_left;            /* bytes each destination may still take */
    struct nt_hotplug_proc *procs;  /* how rebound processes are bound */
    size_t nr_procs;
    struct nt_hp_evac *evac;
    bool to_move_known;             /* started from a plan (not resumed after a restart) */
    uint64_t bytes_to_move;         /* the plan's memory in use on the targets */
    unsigned threads_moved, threads_kept;   /* drain */
    /* online of a drained node: the drain it ended */
    bool undrained;
    int64_t undrained_job;          /* the drain in force, -1 if none was (pins of a failed one) */
    unsigned undrain_threads, undrain_procs, undrain_gone;
    char why[NT_JOB_MESSAGE_MAX];   /* why the job failed (before rollback) */
    char notes[NT_JOB_MESSAGE_MAX]; /* said whatever the outcome (rebinds) */
};

struct nt_hotplug {
    sd_event *event;
    char *root;
    struct nt_hotplug_params p;
    struct nt_hotplug_sysfs sysfs;
    char *ledger_path;
    struct nt_ledger *ledger;       /* NULL: no journal */
    char ledger_why[256];
    struct nt_mover *mover;
    struct nt_procs *procs;         /* for the mover's identity checks only */
    uint32_t next_proc_id;

    struct nt_job *job;             /* the running one, NULL if none */
    struct nt_hp_run run;
    struct nt_job **history;        /* finished jobs, newest first */
    size_t nr_history;

    struct nt_drain_ref *drained;   /* nodes drained, not yet back; by node */
    size_t nr_drained;
    nt_hotplug_affinity_owner_fn affinity_owner;
    void *affinity_owner_ud;
    char boot_id[NT_JOB_BOOT_ID];   /* this boot's, for pins from before a restart */
    uint64_t moved_total;           /* bytes jobs moved since start */
};

/* hotplug.c */
void nt_hp_journal(struct nt_hotplug *h);                  /* the job row */
void nt_hp_journal_block(struct nt_hotplug *h, size_t i);  /* one block row */
void nt_hp_journal_rebind(struct nt_hotplug *h, size_t i);
/* Schedule the next step of the running job after delay_usec. */
void nt_hp_kick(struct nt_hotplug *h, uint64_t delay_usec);
/* End the running job in state (final): journal, log, keep in history. */
void nt_hp_finish(struct nt_hotplug *h, enum nt_job_state state);

/* hotplug-exec.c */
/* The job's next step for the block phases (offlining, onlining,
 * rolling back); called from the step timer. */
void nt_hp_exec_step(struct nt_hotplug *h);
/* A step failed (why, for the job's message): roll back if the job says
 * so, else finish failed. */
void nt_hp_exec_fail(struct nt_hotplug *h, const char *why);
/* The deadline passed: stop what runs and fail. */
void nt_hp_exec_deadline(struct nt_hotplug *h);
/* Kill a worker in flight (shutdown). */
void nt_hp_exec_abort(struct nt_hotplug *h);
int nt_hp_read_state(struct nt_hotplug *h, unsigned block, char *buf, size_t len);
/* What writing `restore` puts a block in, to compare with `before`. */
bool nt_hp_state_is(const char *now, const char *want);

/* hotplug-evac.c */
/* One slice of evacuation (or of a drain): *done when finished, else call
 * again after *delay_usec (UINT64_MAX: a migrate_pages thread runs and
 * kicks the job when it ends). Returns 0 or negative errno. */
int nt_hp_evac_slice(struct nt_hotplug *h, bool *done, uint64_t *delay_usec);
void nt_hp_evac_free(struct nt_hp_evac *e);
/* bytes_moved for the running job's JSON: the journaled count plus, while
 * a migrate_pages runs, an estimate of what it moved so far (from its
 * node's used memory); never less than what it returned before, until the
 * evacuation ends. The journal never holds an estimate. */
uint64_t nt_hp_evac_progress(const struct nt_hotplug *h);
/* A migrate_pages of about expected bytes off node starts: note the node's
 * used memory now, for the estimate (tests call it to fake a task). */
void nt_hp_evac_track(struct nt_hotplug *h, int node, uint64_t expected);
/* --force: rewrite the cpuset.mems of cpuset-bound processes to allow the
 * destination; mempolicy-bound ones are noted (their pages are moved). */
void nt_hp_rebinds_apply(struct nt_hotplug *h);
/* Put back the rebinds this job applied (rollback). */
void nt_hp_rebinds_undo(struct nt_hotplug *h);
/* online of a node: put back what offline jobs of that node rebound;
 * appended to the job's rebinds with restored = true. */
void nt_hp_rebinds_restore_for_node(struct nt_hotplug *h, int node);
/* online of a drained node: end the drain, giving every process a drain
 * of the node pinned its CPU affinity from before (counted in h->run). */
void nt_hp_undrain(struct nt_hotplug *h, int node);

/* hotplug.c */
/* Is node drained (a drain still in force)? *job: that drain's id. */
bool nt_hp_drained(const struct nt_hotplug *h, int node, int64_t *job);
/* A finished job in history by its journal id (NULL if not there). */
struct nt_job *nt_hp_history_job(struct nt_hotplug *h, int64_t id);
void nt_hp_journal_pin(struct nt_hotplug *h, size_t i);      /* one pin row */
