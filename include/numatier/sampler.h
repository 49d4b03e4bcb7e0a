/* Access sampling: one interface, two backends (perf, DAMON).
 *
 * A backend yields nt_access observations: which process touched which
 * virtual page(s), how often, and, where the hardware says, from where the
 * data came and on which CPU. The manager drains every backend once per
 * [sampler] interval and feeds the observations to the aggregator. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct nt_config;

/* Where a sampled load was served from, as far as the PMU can tell. */
enum nt_mem_source {
    NT_MEM_SRC_UNKNOWN = 0,
    NT_MEM_SRC_CACHE,          /* L1/L2/L3/LFB hit on the local socket: no memory access */
    NT_MEM_SRC_LOCAL_DRAM,
    NT_MEM_SRC_REMOTE_DRAM,    /* another socket's DRAM */
    NT_MEM_SRC_REMOTE_CACHE,   /* another socket's cache (forward or HITM) */
    NT_MEM_SRC_SLOW_MEM,       /* CXL or PMEM (local or remote) */
};
const char *nt_mem_source_to_string(enum nt_mem_source s);   /* "local-dram", ... */

struct nt_access {
    pid_t pid;
    pid_t tid;            /* 0 when unknown (DAMON) */
    uint64_t vaddr;       /* page-aligned start */
    uint64_t paddr;       /* 0 when unknown */
    uint32_t nr_pages;    /* 1 for a sample; the region's length for DAMON */
    uint32_t weight;      /* accesses this stands for, per page (>= 1) */
    int32_t cpu;          /* -1 when unknown */
    uint8_t source;       /* enum nt_mem_source */
};

typedef void (*nt_access_fn)(const struct nt_access *a, void *userdata);

struct nt_sampler_stats {
    uint64_t samples;             /* observations delivered */
    uint64_t lost;                /* PERF_RECORD_LOST: records the kernel dropped */
    uint64_t lost_samples;        /* PERF_RECORD_LOST_SAMPLES */
    uint64_t throttled, unthrottled;
    uint64_t unwatched;           /* samples of processes not watched, dropped early */
    uint64_t bad_records;         /* truncated or garbage records skipped */
    uint64_t period;              /* current sample period (perf), or 0 */
    uint64_t targets;             /* processes being sampled */
};

/* What a backend needs to know about the machine and the configuration. */
struct nt_sampler_env {
    const char *root;                 /* sysfs/procfs root ("/" normally) */
    const struct nt_config *config;
    pid_t self;                       /* numatierd's own pid: never sampled */
};

struct nt_sampler_ops {
    const char *name;                 /* "perf", "damon" */
    /* Can this backend run here? 0, or negative errno and a one-line reason
     * naming exactly what is missing, e.g. "no PMU with memory sampling
     * (cpu PMU absent: virtual machine?)". */
    int (*probe)(const struct nt_sampler_env *env, char *why, size_t len);
    int (*open)(const struct nt_sampler_env *env, void **state, char *why, size_t len);
    void (*close)(void *state);       /* NULL ok; must stop kernel-side work */
    /* The watched set changed. The pid is known alive (held by pidfd). */
    int (*watch)(void *state, pid_t pid);
    int (*unwatch)(void *state, pid_t pid);
    /* Hand every observation gathered since the last call to fn. now_usec is
     * CLOCK_MONOTONIC; own_cpu_usec is the daemon's CPU time so far, for the
     * overhead budget. Returns the number delivered or negative errno. */
    int (*drain)(void *state, uint64_t now_usec, uint64_t own_cpu_usec, nt_access_fn fn, void *userdata);
    void (*stats)(void *state, struct nt_sampler_stats *out);
};

extern const struct nt_sampler_ops nt_sampler_perf_ops;
extern const struct nt_sampler_ops nt_sampler_damon_ops;

/* ---- the backend in use (daemon/sampler.c) ------------------------------- */

struct nt_sampler;

/* Open the configured backend. For auto: perf if its probe passes, else
 * DAMON, logging why perf was passed over. An explicit backend that cannot
 * run is an error. With auto and neither usable, returns -ENODEV; why says
 * what each backend lacks, so the daemon can run on without sampling. */
int  nt_sampler_open(const struct nt_sampler_env *env, int backend, struct nt_sampler **out,
                     char *why, size_t len);
void nt_sampler_free(struct nt_sampler *s);          /* NULL ok; stops kernel-side work */
const char *nt_sampler_name(const struct nt_sampler *s);
/* Why perf is not the backend ("" if it is, or if it was never tried). */
const char *nt_sampler_perf_unavailable(const struct nt_sampler *s);
int  nt_sampler_watch(struct nt_sampler *s, pid_t pid);
int  nt_sampler_unwatch(struct nt_sampler *s, pid_t pid);
int  nt_sampler_drain(struct nt_sampler *s, uint64_t now_usec, uint64_t own_cpu_usec,
                      nt_access_fn fn, void *userdata);
void nt_sampler_get_stats(struct nt_sampler *s, struct nt_sampler_stats *out);
