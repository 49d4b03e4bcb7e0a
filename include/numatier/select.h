/* Which processes are watched: the [procs] rules over plain per-process
 * facts (policy/select.c, pure). Every verdict carries a reason, so
 * `explain` can say why a process is or isn't watched.
 *
 * Rules, in the order they are checked (the first that fails is the reason):
 *   1. never kernel threads (PF_KTHREAD, or a child of kthreadd, pid 2);
 *   2. never numatierd itself;
 *   3. exclude_comm, then exclude_cgroup: a match excludes, whatever the
 *      include lists say;
 *   4. include_comm, then include_cgroup: each list that is set must match
 *      (both set: both must match);
 *   5. min_rss, then min_cpu;
 *   6. max_procs: of the processes left, the largest by RSS (ties: lower
 *      pid) are watched.
 *
 * Glob lists are comma-separated fnmatch(3) patterns, blanks around each
 * trimmed; "" or NULL is an empty list. Cgroup globs match the whole v2
 * path and '*' also matches '/': "/system.slice/" followed by '*' covers
 * everything below system.slice. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct nt_config;

#define NT_PF_KTHREAD   0x00200000u     /* stat field 9: a kernel thread */
#define NT_KTHREADD_PID 2

struct nt_select_rules {
    pid_t self;
    uint64_t min_rss_bytes;
    double min_cpu_pct;
    const char *include_comm, *exclude_comm;
    const char *include_cgroup, *exclude_cgroup;
    unsigned max_procs;             /* 0 = no cap */
};

/* The rules of cfg's [procs] section; strings point into cfg. */
void nt_select_rules_from_config(struct nt_select_rules *r, const struct nt_config *cfg, pid_t self);

enum nt_select_reason {
    NT_SELECT_WATCHED = 0,
    NT_SELECT_KERNEL_THREAD,
    NT_SELECT_SELF,
    NT_SELECT_EXCLUDE_COMM,
    NT_SELECT_EXCLUDE_CGROUP,
    NT_SELECT_NOT_INCLUDED_COMM,
    NT_SELECT_NOT_INCLUDED_CGROUP,
    NT_SELECT_MIN_RSS,
    NT_SELECT_MIN_CPU,
    NT_SELECT_MAX_PROCS,
};

/* "watched", "kernel-thread", "self", "exclude-comm", "exclude-cgroup",
 * "not-included-comm", "not-included-cgroup", "min-rss", "min-cpu",
 * "max-procs". */
const char *nt_select_reason_to_string(enum nt_select_reason r);

struct nt_proc_info {
    pid_t pid;
    pid_t ppid;
    const char *comm;
    const char *cgroup;             /* v2 path; NULL if unknown (matches no glob) */
    uint64_t rss_bytes;
    double cpu_pct;                 /* of one CPU */
    bool kernel_thread;             /* PF_KTHREAD was set */
    enum nt_select_reason reason;   /* out: set by nt_select_apply */
};

/* Rules 1-5 for one process. */
enum nt_select_reason nt_select_check(const struct nt_select_rules *r, const struct nt_proc_info *p);

/* Rules 1-6 over a set: sets every procs[i].reason. Returns how many are
 * watched, or -ENOMEM. */
int nt_select_apply(const struct nt_select_rules *r, struct nt_proc_info *procs, size_t n);

/* One line saying why p has its reason, with the numbers or the glob
 * involved, e.g. "RSS 12.0 MiB is below min_rss 64.0 MiB" or
 * "comm \"java\" matches exclude_comm glob \"ja*\"". Truncates to len. */
void nt_select_explain(const struct nt_select_rules *r, const struct nt_proc_info *p, char *buf, size_t len);

/* Does s match any glob of the comma-separated list? If so and matched is
 * not NULL, *matched and *matched_len give the pattern (not NUL-terminated).
 * Patterns of PATH_MAX bytes or more never match. */
bool nt_glob_list_match(const char *list, const char *s, int fnm_flags, const char **matched,
                        size_t *matched_len);
