/* The perf sampling backend's internal contracts.
 *
 * daemon/sampler-perf.c glues these together behind nt_sampler_perf_ops;
 * each piece is split out so it can be tested without a PMU:
 *   - data_src decoding and period tuning are pure (policy/datasrc.c,
 *     policy/period.c);
 *   - the ring reader and sample decoder work on any memory that looks like
 *     a perf mmap (daemon/perf-ring.c);
 *   - PMU detection reads a sysfs/procfs root, and building attrs never
 *     calls perf_event_open (daemon/sampler-perf.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/perf_event.h>

#include "numatier/sampler.h"

struct nt_config;

/* ---- data_src decoding (policy/datasrc.c, pure) --------------------------- */

/* Classify a PERF_SAMPLE_DATA_SRC value (union perf_mem_data_src) as
 * Intel PEBS or AMD IBS fill it in. Uses mem_lvl_num/mem_remote/mem_hops
 * where set and the legacy mem_lvl bits otherwise, and knows the Intel
 * quirk of remote DRAM reported as lvl_num L3/ANY_CACHE + LVL_REM_RAM1. */
enum nt_mem_source nt_mem_source_from_data_src(uint64_t data_src);

/* ---- sample period tuning (policy/period.c, pure) ------------------------- */

struct nt_period_limits {
    uint64_t min, max;      /* inclusive */
    uint64_t align;         /* period is a multiple of this: 16 for IBS, else 1 (0 = 1) */
};

/* What one tuning window measured. */
struct nt_period_window {
    uint64_t cpu_usec;      /* the daemon's own CPU time spent in the window */
    uint64_t wall_usec;     /* the window's length */
    uint64_t samples;       /* samples read (watched or not: all of them cost) */
    uint64_t overflows;     /* throttle and lost records: the kernel could not keep up */
};

/* Round down to the alignment and clamp into the limits. */
uint64_t nt_period_clamp(uint64_t period, const struct nt_period_limits *lim);
/* The next period: multiplicative increase when over budget_pct (% of one
 * CPU) or when the kernel throttled or lost records, a gentle decrease when
 * well under budget, otherwise unchanged; always clamped. */
uint64_t nt_period_next(uint64_t period, const struct nt_period_window *w, double budget_pct,
                        const struct nt_period_limits *lim);

/* ---- PERF_RECORD_SAMPLE decoding (daemon/perf-ring.c) --------------------- */

/* The sample_type bits the decoder understands: every one of them is one
 * u64 in the record (TID and CPU are two u32s), so a record's size is fixed
 * by its sample_type. Variable-size fields (READ, CALLCHAIN, RAW, BRANCH_STACK,
 * REGS_*, STACK_USER, AUX) are not supported. */
#define NT_PERF_SAMPLE_DECODABLE                                                   \
    (PERF_SAMPLE_IDENTIFIER | PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | \
     PERF_SAMPLE_ADDR | PERF_SAMPLE_ID | PERF_SAMPLE_STREAM_ID | PERF_SAMPLE_CPU |  \
     PERF_SAMPLE_PERIOD | PERF_SAMPLE_WEIGHT | PERF_SAMPLE_WEIGHT_STRUCT |          \
     PERF_SAMPLE_DATA_SRC | PERF_SAMPLE_TRANSACTION | PERF_SAMPLE_PHYS_ADDR |       \
     PERF_SAMPLE_CGROUP | PERF_SAMPLE_DATA_PAGE_SIZE | PERF_SAMPLE_CODE_PAGE_SIZE)

struct nt_perf_sample {
    uint64_t sample_type;       /* which fields below are valid */
    uint64_t id, ip, time, addr, stream_id, period;
    uint64_t data_src, transaction, phys_addr, cgroup, data_page_size, code_page_size;
    uint64_t weight;            /* PERF_SAMPLE_WEIGHT: the whole u64 */
    uint32_t latency;           /* load latency in cycles: weight, or var1_dw of WEIGHT_STRUCT */
    uint16_t ins_latency;       /* WEIGHT_STRUCT var2_w (instruction latency), else 0 */
    uint32_t pid, tid, cpu;
};

/* Body bytes (after the header) of a sample of this type, or -EOPNOTSUPP
 * (an undecodable field) / -EINVAL (WEIGHT and WEIGHT_STRUCT together). */
int nt_perf_sample_size(uint64_t sample_type);
/* Decode a record body; the body may be unaligned. -EBADMSG if too short. */
int nt_perf_sample_decode(const void *body, size_t len, uint64_t sample_type, struct nt_perf_sample *out);

/* ---- the ring buffer reader (daemon/perf-ring.c) -------------------------- */

struct nt_perf_ring_stats {
    uint64_t records;           /* records consumed, of any type */
    uint64_t samples;           /* PERF_RECORD_SAMPLE decoded and handed on */
    uint64_t lost;              /* sum of PERF_RECORD_LOST.lost */
    uint64_t lost_samples;      /* sum of PERF_RECORD_LOST_SAMPLES.lost */
    uint64_t throttled, unthrottled;
    uint64_t bad_records;       /* malformed records, and resyncs to data_head */
    uint64_t other;             /* well-formed records of types we skip */
};

/* Enough for any record we decode: the largest sample is 8 + 17 * 8 bytes. */
#define NT_PERF_BOUNCE_SIZE 256

struct nt_perf_ring {
    struct perf_event_mmap_page *meta;
    const uint8_t *data;
    uint64_t size, mask;        /* size is a power of two */
    uint64_t sample_type;
    size_t sample_bytes;        /* header + body of every PERF_RECORD_SAMPLE */
    uint8_t bounce[NT_PERF_BOUNCE_SIZE] __attribute__((aligned(8)));   /* wrapped records */
};

typedef void (*nt_perf_sample_fn)(const struct nt_perf_sample *s, void *userdata);

/* Attach to a perf mmap (or a test buffer shaped like one): base is the
 * header page; the data area is data_offset/data_size from the header, or
 * the pages after the first when those are 0 (kernels before 4.1). */
int nt_perf_ring_init(struct nt_perf_ring *r, void *base, size_t map_len, uint64_t sample_type);
/* Consume every record between data_tail and data_head, calling fn (may be
 * NULL) for each sample, then release data_tail. Malformed framing skips to
 * data_head. Returns the number of records consumed. */
size_t nt_perf_ring_read(struct nt_perf_ring *r, nt_perf_sample_fn fn, void *userdata,
                         struct nt_perf_ring_stats *st);

/* ---- PMU detection (daemon/sampler-perf.c) -------------------------------- */

/* One sysfs format attribute: "config1:0-15", "config:0-7,32-35". */
struct nt_perf_format {
    int field;                  /* 0 config, 1 config1, 2 config2 */
    unsigned nr;                /* ranges */
    uint8_t lo[4], hi[4];
};
int nt_perf_format_parse(const char *text, struct nt_perf_format *f);
/* Put value's low bits into the format's ranges of attr (lowest range first). */
void nt_perf_format_apply(const struct nt_perf_format *f, uint64_t value, struct perf_event_attr *attr);

enum nt_perf_kind {
    NT_PERF_PEBS = 1,           /* Intel load latency */
    NT_PERF_IBS,                /* AMD IBS op */
};

struct nt_perf_privs {
    bool cap_perfmon, cap_sys_admin;
};
/* The calling process's effective capabilities. */
int nt_perf_privs_self(struct nt_perf_privs *out);

#define NT_PERF_MAX_PFM_NAMES 3

struct nt_perf_pmu {
    enum nt_perf_kind kind;
    char dir[16];               /* below /sys/bus/event_source/devices: "cpu", "cpu_core", "ibs_op" */
    char name[64];              /* caps/pmu_name ("sapphire_rapids"), or "ibs_op" */
    uint32_t type;              /* its perf type */
    int paranoid;               /* /proc/sys/kernel/perf_event_paranoid */
    bool privileged;            /* may open CPU-wide events */
    bool phys_addr;             /* may ask for PERF_SAMPLE_PHYS_ADDR */
    bool hybrid;                /* cpu_core: sample only the CPUs in its cpus file */
    /* Intel */
    bool needs_aux;             /* mem-loads-aux (0x8203) must lead the group */
    int max_precise;            /* caps/max_precise, -1 when the kernel doesn't say */
    bool weight_struct;         /* PEBS that splits load and instruction latency */
    const char *pfm_names[NT_PERF_MAX_PFM_NAMES];   /* libpfm4 PMU models to try, NULL-ended */
    struct nt_perf_format ldlat;
    bool has_sysfs_loads;       /* events/mem-loads, encoded through the format files */
    uint64_t loads_config[3];
    /* AMD IBS op */
    bool zen4;                  /* caps/zen4_ibs_extensions */
    bool has_l3missonly, has_cnt_ctl, has_swfilt;
    struct nt_perf_format l3missonly, cnt_ctl, swfilt;
};

/* Find a PMU that samples memory loads below root and check that we may
 * use it. 0, or negative errno with a one-line reason in why. */
int nt_perf_detect(const char *root, const struct nt_perf_privs *privs, struct nt_perf_pmu *out,
                   char *why, size_t len);

/* ---- building attrs (daemon/sampler-perf.c; libpfm4, no perf_event_open) -- */

struct nt_perf_settings {
    const char *event;          /* [sampler] perf_event; "" or NULL: chosen per PMU */
    unsigned ldlat;             /* [sampler] perf_ldlat */
    uint64_t period;            /* [sampler] perf_period */
    double budget_pct;          /* [sampler] cpu_budget */
};
/* From the config, or the shipped defaults when c is NULL. */
void nt_perf_settings_from_config(const struct nt_config *c, struct nt_perf_settings *out);

#define NT_PERF_MEM_LOADS_AUX 0x8203   /* Intel MEM_LOADS_AUX: event 0x03, umask 0x82 */

struct nt_perf_attrs {
    struct perf_event_attr leader;      /* valid when has_leader: counting, not sampling */
    struct perf_event_attr sample;      /* the sampling event */
    bool has_leader;
    char event[192];                    /* what was encoded, for logs */
    struct nt_period_limits limits;
};

int nt_perf_build_attrs(const struct nt_perf_pmu *pmu, const struct nt_perf_settings *s,
                        struct nt_perf_attrs *out, char *why, size_t len);

/* ---- the backend's state (daemon/sampler-perf.c) -------------------------- */

/* A small open-addressing set of pids (the watched processes). */
struct nt_pidset {
    pid_t *slots;
    size_t cap, used, tombs;
};
int nt_pidset_add(struct nt_pidset *s, pid_t pid);          /* 0 (also if present) or -ENOMEM/-EINVAL */
bool nt_pidset_remove(struct nt_pidset *s, pid_t pid);      /* true if it was there */
bool nt_pidset_contains(const struct nt_pidset *s, pid_t pid);
void nt_pidset_done(struct nt_pidset *s);

/* A sample as the aggregator sees it: the page, weight 1 (see the source
 * for why not the PMU's weight). False when the sample has no user-space
 * data address. */
bool nt_perf_sample_to_access(const struct nt_perf_sample *s, uint64_t page_size, struct nt_access *out);

/* "0-3,8-11" -> malloc'd sorted array of CPU ids. */
int nt_perf_cpulist_parse(const char *text, int **cpus, size_t *n);

/* The state behind nt_sampler_perf_ops' void *state. open() builds one from
 * real perf fds; tests build one from plain buffers with these two. */
struct nt_perf_sampler;
int nt_perf_sampler_new(const struct nt_perf_attrs *attrs, double budget_pct, pid_t self,
                        struct nt_perf_sampler **out);
/* Hand over one CPU's fds (may be -1) and ring mapping; munmap'd on close
 * when unmap is true. */
int nt_perf_sampler_add_ring(struct nt_perf_sampler *s, int cpu, int leader_fd, int fd,
                             void *map, size_t map_len, bool unmap);
/* Open attrs as a CPU-wide event group with its own ring on each CPU
 * listed, skipping CPUs that went offline meanwhile; the first CPU may
 * relax the attrs (no PHYS_ADDR, WEIGHT for WEIGHT_STRUCT, less precise)
 * for all. open() does this for the detected PMU; tests do it with
 * software events, which need no PMU. */
int nt_perf_sampler_open(const struct nt_perf_attrs *attrs, const int *cpus, size_t n, double budget_pct,
                         pid_t self, struct nt_perf_sampler **out, char *why, size_t len);

/* How long a tuning window lasts: shorter windows are too noisy. */
#define NT_PERF_TUNE_WINDOW_USEC 1000000u
