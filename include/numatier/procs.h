/* Watched processes: which ones (selection), and holding each one safely
 * (pidfd + start time) so a recycled PID is never mistaken for the old one. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct nt_config;
struct nt_topology;

/* Identity of one process instance. start_time is field 22 of
 * /proc/PID/stat (clock ticks since boot): a recycled PID gets a new one. */
struct nt_proc_key {
    pid_t pid;
    uint64_t start_time;
};

struct nt_thread {
    pid_t tid;
    int cpu;                  /* last CPU it ran on (field 39 of stat) */
    int node;                 /* that CPU's node, -1 if unknown */
};

struct nt_proc {
    struct nt_proc_key key;
    uint32_t id;              /* unique per instance for the daemon's lifetime, never reused */
    int pidfd;                /* -1 when reading a fixture root */
    char comm[16];
    char *cgroup;             /* cgroup v2 path, e.g. "/system.slice/x.service" */
    uint64_t rss_bytes;
    double cpu_pct;           /* of one CPU, since the previous scan (first sight: lifetime average) */
    uint64_t cpu_ticks;       /* utime+stime at the last scan */
    struct nt_thread *threads;
    unsigned nr_threads;
};

struct nt_procs_stats {
    uint64_t scans;
    uint64_t added, removed;
    uint64_t exited_mid_cycle;  /* vanished between listing and reading, or while held */
    uint64_t reused_pids;       /* a watched PID now names another process */
};

struct nt_procs;

int  nt_procs_new(const char *root, pid_t self, struct nt_procs **out);
void nt_procs_free(struct nt_procs *p);    /* closes pidfds; NULL ok */

/* Callbacks for changes to the watched set, so samplers can follow it. */
typedef void (*nt_proc_change_fn)(const struct nt_proc *p, bool added, void *userdata);

/* Rescan /proc below root: apply the [procs] selection, add new processes,
 * drop those that exited or no longer qualify, refresh threads and their
 * nodes (topology maps CPU -> node), and report each change. */
int nt_procs_scan(struct nt_procs *p, const struct nt_config *cfg, const struct nt_topology *topo,
                  uint64_t now_usec, nt_proc_change_fn fn, void *userdata);

/* The watched processes, valid until the next scan. */
const struct nt_proc *nt_procs_list(const struct nt_procs *p, size_t *n);
const struct nt_proc *nt_procs_find(const struct nt_procs *p, pid_t pid);   /* NULL if not watched */
/* By instance id (e.g. the aggregate's pid_of); NULL if not watched. */
const struct nt_proc *nt_procs_find_id(const struct nt_procs *p, uint32_t id);
/* Bitmask of the nodes its threads last ran on (bit n = node n, nodes >= 64
 * left out): the aggregate's thread_nodes. */
uint64_t nt_proc_thread_nodes(const struct nt_proc *proc);
/* Why pid is or isn't watched, as decided by the last scan and worded with
 * cfg's rules (see nt_select_explain). 0, or -ESRCH if the last scan did
 * not see pid. */
int nt_procs_explain(const struct nt_procs *p, const struct nt_config *cfg, pid_t pid, char *buf, size_t len);
/* Is this still the same process (pidfd alive and start time unchanged)?
 * Call right before acting on it. */
bool nt_proc_still_same(const struct nt_procs *p, const struct nt_proc *proc);
void nt_procs_get_stats(const struct nt_procs *p, struct nt_procs_stats *out);
