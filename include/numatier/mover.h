/* The mover: the one part that changes where a watched process's pages
 * and threads are. Pages move with move_pages(2) in batches, or all at
 * once with migrate_pages(2); threads move with sched_setaffinity(2).
 *
 * Every action is guarded: right before each batch the process is checked
 * to be the same instance (nt_proc_still_same), and a process that exits
 * mid-move is not an error ("exited"). Per-page outcomes are classified:
 * moved or already there; EBUSY retried later with exponential backoff;
 * ENOMEM on the target tried on the fallback nodes; EFAULT/ENOENT dropped;
 * EACCES (shared page) counted. A token bucket (bytes per second) caps the
 * migration bandwidth of every call; time is passed in.
 *
 * The mover remembers each thread's affinity from before its first change,
 * so nt_mover_restore() can put it back, and the masks it set itself, so
 * later code can tell a user's explicit affinity from numatierd's. */
#pragma once

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "numatier/nodeset.h"

struct json_object;
struct nt_proc;
struct nt_procs;

/* move_pages(2) as the kernel has it (nodes == NULL queries): returns 0,
 * the number of pages not moved (> 0), or -1 with errno set. Injectable so
 * tests can simulate per-page failures. */
typedef long (*nt_move_pages_fn)(pid_t pid, unsigned long count, void **pages, const int *nodes,
                                 int *status, int flags, void *userdata);
/* migrate_pages(2): pages not moved (>= 0), or -1 with errno set. */
typedef long (*nt_migrate_pages_fn)(pid_t pid, unsigned long maxnode, const unsigned long *old_nodes,
                                    const unsigned long *new_nodes, void *userdata);
/* sched_setaffinity(2) of one thread: 0 or -1 with errno set. */
typedef int (*nt_setaffinity_fn)(pid_t tid, const cpu_set_t *mask, void *userdata);

struct nt_mover_params {
    uint64_t budget_bytes_per_sec;  /* migration budget; 0 = unlimited */
    uint64_t budget_burst_bytes;    /* bucket size; 0 = one second of budget */
    unsigned batch_pages;           /* pages per move_pages call; 0 = 512 */
    unsigned retry_max;             /* EBUSY attempts before giving up; 0 = 5 */
    uint64_t retry_base_usec;       /* first backoff, doubled per attempt; 0 = 100 ms */
    size_t retry_queue_max;         /* entries; 0 = 4096; beyond it EBUSY pages give up */
    unsigned affinity_passes;       /* task-list passes until no new thread; 0 = 5 */
    bool move_all;                  /* MPOL_MF_MOVE_ALL: shared pages too */
    long page_size;                 /* 0 = sysconf(_SC_PAGESIZE) */
    /* NULL = the real syscalls. */
    nt_move_pages_fn move_pages;
    nt_migrate_pages_fn migrate_pages;
    nt_setaffinity_fn setaffinity;
    void *userdata;
};

/* Failure classes, for counters. */
enum nt_mover_err {
    NT_MOVER_EBUSY,
    NT_MOVER_ENOMEM,
    NT_MOVER_EFAULT,
    NT_MOVER_ENOENT,
    NT_MOVER_EACCES,
    NT_MOVER_ESRCH,
    NT_MOVER_EOTHER,
    NT_MOVER_NR_ERR,
};
const char *nt_mover_err_to_string(enum nt_mover_err e);   /* "EBUSY", ..., "other" */

/* What one call did. Pages vaddrs[0 .. next) were handled, one way or
 * another; vaddrs[next .. n) were not tried (budget, or the process went
 * away) and may be passed again later. */
struct nt_move_result {
    size_t next;
    uint64_t requested;       /* pages asked for */
    uint64_t moved;           /* now on the target or a fallback node */
    uint64_t fallback;        /* of moved: on a fallback node */
    uint64_t already;         /* were on the target already */
    uint64_t queued;          /* EBUSY (or not moved, reason unknown): in the retry queue */
    uint64_t gave_up;         /* retries exhausted or the queue full */
    uint64_t nomem;           /* ENOMEM on the target and every fallback */
    uint64_t dropped;         /* EFAULT / ENOENT: not mapped or never touched */
    uint64_t shared;          /* EACCES: shared page, needs MPOL_MF_MOVE_ALL */
    uint64_t other;           /* any other per-page errno */
    uint64_t deferred;        /* not tried for lack of budget */
    bool exited;              /* stopped: the process exited or is not the same instance */
};

struct nt_mover_pair {
    int from, to;
    uint64_t pages;           /* base pages, or page-size units of migrate_pages */
};

struct nt_mover_stats {
    uint64_t requested, moved, already, fallback, deferred;
    uint64_t fail[NT_MOVER_NR_ERR];   /* per-page failures seen, by class (each sighting) */
    uint64_t retries;                 /* pages retried from the queue */
    uint64_t retry_gave_up;
    uint64_t retry_queued;            /* entries in the queue now */
    uint64_t exited;                  /* calls stopped because the process went away */
    uint64_t migrate_calls, migrate_pages;
    uint64_t threads_moved, threads_restored, threads_failed, threads_exited;
    uint64_t threads_user_changed;    /* restore left alone: changed since we set it */
    const struct nt_mover_pair *pairs;   /* valid until the next mover call */
    size_t nr_pairs;
};

struct nt_mover;

void nt_mover_params_init(struct nt_mover_params *p);     /* the defaults above */
int  nt_mover_new(const struct nt_mover_params *p, struct nt_mover **out);   /* p NULL = defaults */
void nt_mover_free(struct nt_mover *m);                    /* does not restore; NULL ok */
static inline void nt_mover_freep(struct nt_mover **m) { nt_mover_free(*m); }
/* Change the budget (config reload); the bucket keeps its current level,
 * clamped to the new size. */
void nt_mover_set_budget(struct nt_mover *m, uint64_t bytes_per_sec, uint64_t burst_bytes);

/* Move pages vaddrs[0..n) of proc to to_node; pages the target has no
 * memory for go to fallback_nodes in order. Returns 0 (also when the
 * process exited: res->exited), or negative errno for a failure of the
 * whole call (-EPERM, -EINVAL, -ENODEV target offline, -ENOMEM). res is
 * filled in either case. */
int nt_mover_move_pages(struct nt_mover *m, const struct nt_procs *procs, const struct nt_proc *proc,
                        const uint64_t *vaddrs, size_t n, int to_node, const int *fallback_nodes,
                        size_t n_fallback, uint64_t now_usec, struct nt_move_result *res);

/* Retry the queued EBUSY pages that are due, within the budget. Pages of
 * processes no longer watched (or not the same instance) are dropped.
 * res may be NULL. Returns 0 or negative errno as above. */
int nt_mover_retry(struct nt_mover *m, const struct nt_procs *procs, uint64_t now_usec,
                   struct nt_move_result *res);
/* Earliest time a queued retry is due; UINT64_MAX when the queue is empty. */
uint64_t nt_mover_next_retry(const struct nt_mover *m);

/* Whole-process move with migrate_pages(2): every page on from_nodes goes
 * to to_node. What it would move is read from /proc/PID/numa_maps first;
 * the budget is charged that much, and the call is deferred (res->deferred)
 * unless the bucket holds it, or is full (a process bigger than the bucket
 * then moves at once and the budget runs into debt). */
int nt_mover_migrate_all(struct nt_mover *m, const struct nt_procs *procs, const struct nt_proc *proc,
                         const struct nt_nodeset *from_nodes, int to_node, uint64_t now_usec,
                         struct nt_move_result *res);

/* Pin every thread of proc to cpus (a node's CPUs): the task list is read
 * again after each pass until no new thread shows up (at most
 * affinity_passes). The original masks are recorded before the first
 * change. Returns the number of threads set (>= 0; 0 with the process
 * gone), or negative errno (-EINVAL: no usable CPU in cpus). */
int nt_mover_move_threads(struct nt_mover *m, const struct nt_procs *procs, const struct nt_proc *proc,
                          const cpu_set_t *cpus);
/* Put back the recorded affinity of pid's threads (threads created since
 * get the process's original mask); a thread whose mask is no longer the
 * one numatierd set was changed by someone else and is left alone. The
 * record is dropped. Returns threads restored, -ENOENT if nothing is
 * recorded, -ESRCH if pid is now another process (the record is dropped). */
int nt_mover_restore(struct nt_mover *m, pid_t pid);
void nt_mover_restore_all(struct nt_mover *m);     /* at shutdown */
/* After a restart: take back the record of an affinity an earlier run set
 * (ours on every thread of pid, whose start time is start_time; orig the
 * process's mask before), so nt_mover_restore and
 * nt_mover_affinity_is_ours work as if this run had set it. A record this
 * run made for the same instance is kept. Returns 0, -ESRCH if pid is gone
 * or another process now, -ENOMEM. */
int nt_mover_adopt(struct nt_mover *m, pid_t pid, uint64_t start_time, const cpu_set_t *ours,
                   const cpu_set_t *orig);
/* Is current the mask numatierd set on pid (so not the user's choice)? */
bool nt_mover_affinity_is_ours(const struct nt_mover *m, pid_t pid, const cpu_set_t *current);
/* The process left the watched set: drop its retries and affinity record
 * (without restoring: it may be gone). */
void nt_mover_forget(struct nt_mover *m, uint32_t proc_id);

/* "0-3,8" -> set. Returns the count of CPUs or negative errno (-EINVAL). */
int nt_cpuset_parse(const char *cpulist, cpu_set_t *out);
/* set -> "0-3,8" ("" for none); truncated to fit len. */
void nt_cpuset_format(const cpu_set_t *set, char *buf, size_t len);

void nt_mover_get_stats(const struct nt_mover *m, struct nt_mover_stats *out);
/* {"pages":{"requested","moved","already","fallback","deferred"},
 *  "failures":{"EBUSY":N,...,"other":N},"pairs":[{"from","to","pages"}],
 *  "retry":{"queued","retried","gave_up"},"exited":N,
 *  "migrate":{"calls","pages"},
 *  "threads":{"moved","restored","failed","exited","user_changed","procs_pinned"},
 *  "budget":{"bytes_per_sec","burst_bytes","available_bytes"}} */
struct json_object *nt_mover_stats_json(const struct nt_mover *m);
