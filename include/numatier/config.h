/* numatierd.conf: the effective configuration, its loader and its dumps.
 *
 * Every key is one row of nt_config_keys[] (daemon/config.c): section, key,
 * type, offset into struct nt_config, range, default and help. Adding a key
 * is a field here plus one row there, one line in etc/numatierd.conf and an
 * entry in numatierd.conf(5); test-config checks that the last two exist. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "numatier/nodeset.h"

struct json_object;

enum nt_mode { NT_MODE_ENFORCE, NT_MODE_ADVISE };
enum nt_sampler_backend { NT_SAMPLER_AUTO, NT_SAMPLER_PERF, NT_SAMPLER_DAMON };
const char *nt_mode_to_string(enum nt_mode m);   /* "enforce" / "advise" */

#define NT_CONFIG_MAIN_PATH   "/etc/numatier/numatierd.conf"
#define NT_CONFIG_DROPIN_DIR  "/etc/numatier/numatierd.conf.d"
#define NT_DEFAULT_SOCKET     "/run/numatier/numatierd.sock"

/* Room for the table to grow; config.c asserts the table fits. */
#define NT_CONFIG_MAX_KEYS    96

struct nt_config {
    /* [daemon] */
    uint64_t cycle_interval_usec;   /* cycle_interval, default 10s, 100ms..1h */
    enum nt_mode mode;              /* mode = enforce|advise (observe = advise), default enforce */
    int log_level;                  /* log_level = debug|info|notice|warning|err, default info (syslog level) */
    /* [control] */
    char *socket_path;              /* socket, absolute path, default NT_DEFAULT_SOCKET */
    unsigned max_clients;           /* max_clients, default 64, 1..4096 */
    uint64_t request_timeout_usec;  /* request_timeout, default 5s, 100ms..5min: a client that has not sent a full line by then is dropped */
    uint64_t max_request_bytes;     /* max_request_size, default 64K, 1K..16M */
    /* [topology] */
    struct nt_tier_config tiers;    /* slow_tier_nodes, fast_tier_nodes (disjoint), cpuless_is_slow */
    /* [sampler] */
    enum nt_sampler_backend sampler_backend;  /* backend = auto|perf|damon */
    uint64_t sample_interval_usec;  /* interval: how often samples are drained and DAMON regions read */
    char *perf_event;               /* perf_event: libpfm4 event string; "" = chosen per PMU */
    unsigned perf_ldlat;            /* perf_ldlat: PEBS load-latency threshold, cycles */
    unsigned perf_period;           /* perf_period: initial sample period (self-tuned) */
    double cpu_budget_pct;          /* cpu_budget: sampling overhead budget, % of one CPU */
    uint64_t damon_sample_usec;     /* damon_sample_interval */
    unsigned damon_min_regions;     /* damon_min_regions */
    unsigned damon_max_regions;     /* damon_max_regions */
    /* [procs] */
    uint64_t min_rss_bytes;         /* min_rss */
    double min_cpu_pct;             /* min_cpu: % of one CPU */
    char *include_comm;             /* include_comm: comma-separated globs; "" = all */
    char *exclude_comm;             /* exclude_comm */
    char *include_cgroup;           /* include_cgroup: globs on the cgroup v2 path */
    char *exclude_cgroup;           /* exclude_cgroup */
    unsigned max_procs;             /* max_procs */
    /* [aggregate] */
    uint64_t heat_half_life_usec;   /* heat_half_life */
    unsigned max_pages;             /* max_pages: hot-page table entries */
    /* [placement] */
    uint64_t horizon_usec;          /* horizon: gain is counted over this long */
    unsigned remote_penalty_ns;     /* remote_penalty: extra ns per remote access per 10 distance units */
    double min_remote_pct;          /* min_remote: below this remote share, nothing to do */
    unsigned hysteresis_cycles;     /* hysteresis */
    uint64_t cooldown_usec;         /* cooldown */
    uint64_t settle_usec;           /* settle */
    double damping_pct;             /* damping, <= 50% */
    uint64_t migration_budget;      /* migration_budget: bytes per second, 0 = unlimited */
    double free_watermark_pct;      /* free_watermark: never fill a node below this free share */
    unsigned c_mem_ns;              /* c_mem: ns per 4 KiB page; 0 = measure */
    unsigned c_thread_us;           /* c_thread: us per thread moved; 0 = measure */
    bool move_bound_pages;          /* move_bound_pages */
    bool restore_on_exit;           /* restore_on_exit */
    bool move_cold;                 /* move_cold: after the hot pages, the rest of the process */
    /* [tiering] */
    bool tiering;                   /* enabled */
    unsigned hot_heat;              /* hot_heat: heat at or above which a page is hot */
    unsigned cold_heat;             /* cold_heat: heat at or below which a page is cold */
    unsigned tier_cycles;           /* cycles: hot (cold) this many cycles in a row before a move */
    uint64_t tier_cooldown_usec;    /* cooldown: a moved page stays put this long */
    unsigned max_promote;           /* max_promote: pages per cycle */
    unsigned max_demote;            /* max_demote: pages per cycle */
    double low_watermark_pct;       /* low_watermark: fast node under pressure below this free share */
    double high_watermark_pct;      /* high_watermark: demote until free reaches this share */
    /* [ras] */
    bool ras;                       /* enabled */
    char *ledger_path;              /* ledger */
    unsigned ecc_threshold;         /* threshold: corrected errors per frame ... */
    uint64_t ecc_window_usec;       /* window: ... within this long */
    int frame_action;               /* frame_action: enum nt_ecc_action */
    int block_action;               /* block_action: enum nt_ecc_action */
    unsigned block_frames;          /* block_frames: K frames over the threshold in one block */
    bool reoffline;                 /* reoffline: offline again at startup what was offlined before */
    uint64_t ledger_retention_usec; /* retention: events older than this are pruned (frames never) */
    unsigned ledger_max_events;     /* max_events */
    /* [offline] */
    uint64_t offline_write_timeout_usec;  /* write_timeout: one write to a block's state */
    uint64_t offline_timeout_usec;        /* timeout: a whole job, unless the request says */
    unsigned offline_ebusy_retries;       /* ebusy_retries */
    uint64_t offline_retry_backoff_usec;  /* retry_backoff: doubled per retry */
    bool offline_retry_timeouts;          /* retry_timeouts: a timed-out write is retried like EBUSY */
    int offline_on_restart;               /* on_restart: enum nt_offline_restart (hotplug.h) */
    bool offline_allow_slow;              /* allow_slow: slow tiers may receive evacuated memory */
    unsigned offline_history;             /* history: finished jobs `jobs` lists */
    /* private: origins[i] is where nt_config_keys[i] was last set, as a
     * malloc'd "path:line"; NULL means "default". */
    char *origins[NT_CONFIG_MAX_KEYS];
};

struct nt_config_error { char message[512]; };   /* "path:line: ..." ready to log */

void nt_config_init(struct nt_config *c);          /* defaults; origins "default" */
void nt_config_done(struct nt_config *c);          /* free owned memory and zero; safe on zeroed or already-done struct */
/* Load defaults, then main_path (if main_required is false a missing main file is fine; NULL = none),
 * then the *.conf files in dropin_dir in lexical (strcmp) order; a missing dropin_dir is fine;
 * NULL dropin_dir = none.
 * *out need not be initialized and is only written at the end. On error returns negative errno
 * (-EINVAL, -ERANGE, -ENOENT, -ENOMEM, ...), fills err (may be NULL), and leaves *out zeroed. */
int nt_config_load(struct nt_config *out, const char *main_path, bool main_required,
                   const char *dropin_dir, struct nt_config_error *err);
/* Effective config, INI form, each key as "key = value    # origin", sections in table order.
 * The output is itself a valid configuration file. */
void nt_config_dump(const struct nt_config *c, FILE *f);
/* Same content as JSON: {"daemon":{"cycle_interval":{"value":"10s","origin":"default"},...},...}.
 * NULL on allocation failure. */
struct json_object *nt_config_to_json(const struct nt_config *c);
/* "default", "path:line", or NULL for a key that does not exist. */
const char *nt_config_origin(const struct nt_config *c, const char *section, const char *key);

/* ---- the key table -------------------------------------------------------- */

enum nt_config_type {
    NT_CONFIG_DURATION,     /* uint64_t, microseconds: "30s" */
    NT_CONFIG_SIZE,         /* uint64_t, bytes: "64K" */
    NT_CONFIG_PERCENT,      /* double, 0..100: "5%" */
    NT_CONFIG_BOOL,         /* bool: yes/no */
    NT_CONFIG_UINT,         /* unsigned: "64" */
    NT_CONFIG_ENUM,         /* an int-sized enum or int: one of .choices */
    NT_CONFIG_PATH,         /* char *, malloc'd, absolute path */
    NT_CONFIG_NODELIST,     /* struct nt_nodeset: "2,3" or "0-3", may be empty */
    NT_CONFIG_STRING,       /* char *, malloc'd, free text, may be empty */
};

/* A name and the value it stores; the first name for a value is the one
 * printed, later ones are accepted aliases. Lists end with { NULL, 0 }. */
struct nt_config_choice {
    const char *name;
    int value;
};

/* A parsed value on its way into struct nt_config. */
union nt_config_value {
    uint64_t u;
    double pct;
    bool b;
    int e;
    char *s;
    struct nt_nodeset set;
};

struct nt_config_key {
    const char *section;
    const char *key;
    enum nt_config_type type;
    size_t offset;                  /* of the field in struct nt_config */
    const char *min, *max;          /* inclusive, in the type's syntax; NULL = no limit */
    const char *def;                /* default, in the type's syntax */
    const char *help;               /* one line, for etc/numatierd.conf and --help-like output */
    const struct nt_config_choice *choices;   /* NT_CONFIG_ENUM only */
    /* Extra validation beyond type and range; sets *why and returns negative errno. */
    int (*check)(const union nt_config_value *v, const char **why);
};

extern const struct nt_config_key nt_config_keys[];
extern const size_t nt_config_nr_keys;

const char *nt_config_type_name(enum nt_config_type t);   /* "duration", "size", ... */
/* Parse text as key k and store it in the struct at base (replacing and
 * freeing an old string). On failure base is untouched and why (of len
 * bytes) says what was wrong. */
int nt_config_key_parse(const struct nt_config_key *k, const char *text, void *base,
                        char *why, size_t len);
/* The value of key k in the struct at base, in the shortest form that
 * parses back to it. */
void nt_config_key_format(const struct nt_config_key *k, const void *base, char *buf, size_t len);
