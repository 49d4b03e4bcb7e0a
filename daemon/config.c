/* numatierd.conf: the key table, typed values, loading the main file and
 * drop-ins through inih, cross-key checks, and the dumps with origins.
 *
 * inih gives no line numbers to handlers in Debian's build, so the file is
 * fed through our own line reader, which counts lines and also normalizes
 * them (BOM, indentation, comments, section names) before inih sees them. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <ini.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <sys/un.h>
#include <syslog.h>

#include "numatier/ecc.h"
#include "numatier/config.h"
#include "numatier/hotplug.h"
#include "numatier/units.h"
#include "numatier/util.h"

/* ---- the table ------------------------------------------------------------ */

static const struct nt_config_choice mode_choices[] = {
    { "enforce", NT_MODE_ENFORCE },
    { "advise", NT_MODE_ADVISE },
    { "observe", NT_MODE_ADVISE },      /* the name before placement existed */
    { NULL, 0 },
};

static const struct nt_config_choice log_level_choices[] = {
    { "debug", LOG_DEBUG }, { "info", LOG_INFO }, { "notice", LOG_NOTICE },
    { "warning", LOG_WARNING }, { "err", LOG_ERR },
    /* The aliases nt_log_level_from_string() takes too. */
    { "warn", LOG_WARNING }, { "error", LOG_ERR },
    { NULL, 0 },
};

static const struct nt_config_choice ecc_action_choices[] = {
    { "off", NT_ECC_ACTION_OFF }, { "account", NT_ECC_ACTION_ACCOUNT }, { "soft", NT_ECC_ACTION_SOFT },
    { NULL, 0 },
};

static const struct nt_config_choice restart_choices[] = {
    { "rollback", NT_OFFLINE_RESTART_ROLLBACK }, { "resume", NT_OFFLINE_RESTART_RESUME },
    { NULL, 0 },
};

static const struct nt_config_choice backend_choices[] = {
    { "auto", NT_SAMPLER_AUTO }, { "perf", NT_SAMPLER_PERF }, { "damon", NT_SAMPLER_DAMON },
    { NULL, 0 },
};

#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)
_Static_assert(SUN_PATH_MAX == 108, "update the message in check_socket_path()");

static int check_socket_path(const union nt_config_value *v, const char **why)
{
    /* bind() needs the path and its NUL to fit in sockaddr_un. */
    if (strlen(v->s) >= SUN_PATH_MAX) {
        *why = "too long for a socket path (at most 107 characters)";
        return -ERANGE;
    }
    return 0;
}

/* offsetof() that refuses, at compile time, a field whose C type does not
 * match the row's type. */
#define FIELD_TYPE(f) __typeof__(((struct nt_config *)0)->f)
#define IS(f, t) __builtin_types_compatible_p(FIELD_TYPE(f), t)
#define OFFSET(f, ok) \
    (offsetof(struct nt_config, f) + \
     0 * sizeof(struct { _Static_assert(ok, "field " #f " does not fit its row's type"); int x; }))

#define ROW(sec, name, t, f, ok, ...) \
    { .section = sec, .key = name, .type = t, .offset = OFFSET(f, ok), __VA_ARGS__ }
#define DURATION(s, n, f, lo, hi, d, h) \
    ROW(s, n, NT_CONFIG_DURATION, f, IS(f, uint64_t), .min = lo, .max = hi, .def = d, .help = h)
#define SIZE(s, n, f, lo, hi, d, h) \
    ROW(s, n, NT_CONFIG_SIZE, f, IS(f, uint64_t), .min = lo, .max = hi, .def = d, .help = h)
#define PERCENT(s, n, f, lo, hi, d, h) \
    ROW(s, n, NT_CONFIG_PERCENT, f, IS(f, double), .min = lo, .max = hi, .def = d, .help = h)
#define UINT(s, n, f, lo, hi, d, h) \
    ROW(s, n, NT_CONFIG_UINT, f, IS(f, unsigned), .min = lo, .max = hi, .def = d, .help = h)
#define BOOL(s, n, f, d, h) \
    ROW(s, n, NT_CONFIG_BOOL, f, IS(f, bool), .def = d, .help = h)
#define ENUM(s, n, f, c, d, h) \
    ROW(s, n, NT_CONFIG_ENUM, f, sizeof(FIELD_TYPE(f)) == sizeof(int), .choices = c, .def = d, .help = h)
#define PATH(s, n, f, d, chk, h) \
    ROW(s, n, NT_CONFIG_PATH, f, IS(f, char *), .def = d, .check = chk, .help = h)
#define STRING(s, n, f, d, chk, h) \
    ROW(s, n, NT_CONFIG_STRING, f, IS(f, char *), .def = d, .check = chk, .help = h)
#define NODELIST(s, n, f, d, h) \
    ROW(s, n, NT_CONFIG_NODELIST, f, IS(f, struct nt_nodeset), .def = d, .help = h)

/* Rows of one section stay together: dumps print sections in the order
 * they first appear here. */
const struct nt_config_key nt_config_keys[] = {
    DURATION("daemon", "cycle_interval", cycle_interval_usec, "100ms", "1h", "10s",
             "How often the daemon samples, decides and acts."),
    ENUM("daemon", "mode", mode, mode_choices, "enforce",
         "enforce: carry placement decisions out; advise: log and show the plan, move nothing."),
    ENUM("daemon", "log_level", log_level, log_level_choices, "info",
         "Least important messages to log: debug, info, notice, warning or err."),

    PATH("control", "socket", socket_path, NT_DEFAULT_SOCKET, check_socket_path,
         "Unix socket that numatierctl connects to (an absolute path)."),
    UINT("control", "max_clients", max_clients, "1", "4096", "64",
         "Most control connections open at once; further ones are turned away."),
    DURATION("control", "request_timeout", request_timeout_usec, "100ms", "5min", "5s",
             "A client that has not sent a full request line by then is dropped."),
    SIZE("control", "max_request_size", max_request_bytes, "1K", "16M", "64K",
         "Longest request line a client may send."),

    NODELIST("topology", "slow_tier_nodes", tiers.slow_nodes, "",
             "Nodes to treat as slow memory whatever the hardware says, e.g. 2,3 or 2-3."),
    NODELIST("topology", "fast_tier_nodes", tiers.fast_nodes, "",
             "Nodes to treat as fast memory; none may also be in slow_tier_nodes."),
    BOOL("topology", "cpuless_is_slow", tiers.cpuless_is_slow, "yes",
         "Treat nodes that have memory but no CPUs (CXL, PMEM) as slow memory."),

    ENUM("sampler", "backend", sampler_backend, backend_choices, "auto",
         "auto: perf where the PMU samples memory, else DAMON; perf or damon: only that one."),
    DURATION("sampler", "interval", sample_interval_usec, "10ms", "10s", "200ms",
             "How often samples are drained and DAMON regions are read."),
    STRING("sampler", "perf_event", perf_event, "", NULL,
           "libpfm4 event string to sample instead of the one chosen for the PMU."),
    UINT("sampler", "perf_ldlat", perf_ldlat, "3", "65535", "30",
         "Intel PEBS load-latency threshold in cycles: loads faster than this are not sampled."),
    UINT("sampler", "perf_period", perf_period, "16", "1000000000", "20000",
         "Initial perf sample period in events; self-tuned to stay within cpu_budget."),
    PERCENT("sampler", "cpu_budget", cpu_budget_pct, "0.01%", "50%", "1%",
            "Most CPU time sampling may cost, in percent of one CPU."),
    DURATION("sampler", "damon_sample_interval", damon_sample_usec, "100us", "1s", "5ms",
             "DAMON's sampling interval: how often it checks one page per region."),
    UINT("sampler", "damon_min_regions", damon_min_regions, "3", "100000", "10",
         "Fewest regions DAMON splits each process into."),
    UINT("sampler", "damon_max_regions", damon_max_regions, "10", "1000000", "1000",
         "Most regions DAMON keeps in all, over every watched process together."),

    SIZE("procs", "min_rss", min_rss_bytes, "0", "1T", "64M",
         "Watch only processes with at least this much resident memory."),
    PERCENT("procs", "min_cpu", min_cpu_pct, "0%", "100%", "0%",
            "Watch only processes using at least this much CPU, in percent of one CPU."),
    STRING("procs", "include_comm", include_comm, "", NULL,
           "Comma-separated globs; if set, watch only processes whose comm matches one."),
    STRING("procs", "exclude_comm", exclude_comm, "", NULL,
           "Comma-separated globs of comms never to watch."),
    STRING("procs", "include_cgroup", include_cgroup, "", NULL,
           "Comma-separated globs on the cgroup v2 path; if set, watch only matching processes."),
    STRING("procs", "exclude_cgroup", exclude_cgroup, "", NULL,
           "Comma-separated globs on the cgroup v2 path of processes never to watch."),
    UINT("procs", "max_procs", max_procs, "1", "65536", "256",
         "Most processes watched at once; the largest by RSS win."),

    DURATION("aggregate", "heat_half_life", heat_half_life_usec, "1s", "1d", "30s",
             "A page's heat halves after this long without accesses."),
    UINT("aggregate", "max_pages", max_pages, "1024", "268435456", "1048576",
         "Most pages in the hot-page table; the coldest are evicted beyond it."),

    DURATION("placement", "horizon", horizon_usec, "1s", "1h", "30s",
             "A move must pay for itself within this long: gain = remote-access penalty x horizon."),
    UINT("placement", "remote_penalty", remote_penalty_ns, "1", "100000", "100",
         "Extra cost of one remote access, in ns per 10 units of NUMA distance beyond local."),
    PERCENT("placement", "min_remote", min_remote_pct, "0%", "100%", "10%",
            "A process with a smaller share of remote accesses is left alone."),
    UINT("placement", "hysteresis", hysteresis_cycles, "1", "1000", "3",
         "Cycles in a row a decision must come out the same before it is carried out."),
    DURATION("placement", "cooldown", cooldown_usec, "0s", "1d", "1min",
             "After a move, how long the process is left alone."),
    DURATION("placement", "settle", settle_usec, "0s", "1d", "30s",
             "After its threads moved, how long before a process's pages may move."),
    PERCENT("placement", "damping", damping_pct, "1%", "50%", "50%",
            "Share of a load imbalance corrected per step, so corrections never overshoot."),
    SIZE("placement", "migration_budget", migration_budget, "0", "1T", "256M",
         "Most memory moved per second, all moves together; 0: no limit."),
    PERCENT("placement", "free_watermark", free_watermark_pct, "0%", "90%", "5%",
            "Never move pages into a node whose free memory would fall below this share of it."),
    UINT("placement", "c_mem", c_mem_ns, "0", "100000000", "0",
         "Cost of moving one 4 KiB page, in ns; 0: measure it at startup."),
    UINT("placement", "c_thread", c_thread_us, "0", "100000000", "0",
         "Cost of moving one thread (cache and TLB refill plus scheduling), in us; 0: measure."),
    BOOL("placement", "move_bound_pages", move_bound_pages, "no",
         "Move the pages of processes with an explicit memory binding (mbind, numactl) too."),
    BOOL("placement", "restore_on_exit", restore_on_exit, "yes",
         "At exit, give the processes whose threads numatierd pinned their own affinity back."),
    BOOL("placement", "move_cold", move_cold, "yes",
         "A page move takes the hot pages first; then the rest (cold pages too) follows on a later cycle."),

    BOOL("tiering", "enabled", tiering, "yes",
         "Promote hot pages from slow tiers and demote cold pages from fast nodes under pressure."),
    UINT("tiering", "hot_heat", hot_heat, "1", "1000000000", "64",
         "A page with at least this heat (decayed accesses) is hot."),
    UINT("tiering", "cold_heat", cold_heat, "0", "1000000000", "1",
         "A page with at most this heat is cold; must be below hot_heat."),
    UINT("tiering", "cycles", tier_cycles, "1", "1000", "3",
         "Cycles in a row a page must stay hot (or cold) before it moves."),
    DURATION("tiering", "cooldown", tier_cooldown_usec, "0s", "1d", "2min",
             "A page moved up or down stays put this long."),
    UINT("tiering", "max_promote", max_promote, "0", "1048576", "4096",
         "Most pages promoted per cycle."),
    UINT("tiering", "max_demote", max_demote, "0", "1048576", "4096",
         "Most pages demoted per cycle."),
    PERCENT("tiering", "low_watermark", low_watermark_pct, "0%", "90%", "10%",
            "A fast node with less free memory than this share is under pressure; promotion never takes it below."),
    PERCENT("tiering", "high_watermark", high_watermark_pct, "0%", "95%", "20%",
            "Demotion frees a node under pressure up to this share of free memory."),

    BOOL("ras", "enabled", ras, "yes",
         "Read corrected memory errors from tracefs and evacuate failing frames."),
    PATH("ras", "ledger", ledger_path, "/var/lib/numatier/ledger.db", NULL,
         "The SQLite ledger of every event and every frame's state (kept across reboots)."),
    UINT("ras", "threshold", ecc_threshold, "1", "1000", "2",
         "Corrected errors in one 4 KiB frame within window that make it fail."),
    DURATION("ras", "window", ecc_window_usec, "1s", "366d", "1d",
             "The leaky bucket's window: threshold errors within it trigger the frame action."),
    ENUM("ras", "frame_action", frame_action, ecc_action_choices, "soft",
         "off: ignore; account: record only; soft: soft-offline the frame (contents migrated)."),
    ENUM("ras", "block_action", block_action, ecc_action_choices, "account",
         "When block_frames frames of one memory block fail: account records the proposal; "
         "soft starts an offline job for the block."),
    UINT("ras", "block_frames", block_frames, "1", "1000000", "4",
         "Failing frames in one memory block that escalate to the whole block."),
    BOOL("ras", "reoffline", reoffline, "yes",
         "At startup, soft-offline again the frames offlined before (a reboot forgets them)."),
    DURATION("ras", "retention", ledger_retention_usec, "1h", "3660d", "90d",
             "Events older than this are pruned from the ledger; frame states never are."),
    UINT("ras", "max_events", ledger_max_events, "1000", "100000000", "1000000",
         "Most event rows kept in the ledger; the oldest are pruned beyond it."),

    DURATION("offline", "write_timeout", offline_write_timeout_usec, "1s", "1d", "2min",
             "Longest one write to a memory block's state may take before it is interrupted."),
    DURATION("offline", "timeout", offline_timeout_usec, "1s", "7d", "30min",
             "Deadline of a whole offline/online/drain job, unless the request gives one."),
    UINT("offline", "ebusy_retries", offline_ebusy_retries, "0", "100", "3",
         "Retries of a block whose offline returned EBUSY before the job fails."),
    DURATION("offline", "retry_backoff", offline_retry_backoff_usec, "0s", "1h", "2s",
             "Wait before the first retry of a busy block; doubled for each further retry."),
    BOOL("offline", "retry_timeouts", offline_retry_timeouts, "no",
         "Retry a block whose write timed out like a busy one (each retry may take write_timeout again)."),
    ENUM("offline", "on_restart", offline_on_restart, restart_choices, "rollback",
         "A job found unfinished at startup: rollback puts its blocks back, resume carries it on."),
    BOOL("offline", "allow_slow", offline_allow_slow, "yes",
         "Slow tiers (CXL, PMEM) may receive the memory evacuated from offlined blocks."),
    UINT("offline", "history", offline_history, "1", "1000", "20",
         "Finished jobs that numatierctl jobs lists (the ledger keeps them all)."),
};
const size_t nt_config_nr_keys = NT_ARRAY_SIZE(nt_config_keys);
_Static_assert(NT_ARRAY_SIZE(nt_config_keys) <= NT_CONFIG_MAX_KEYS, "raise NT_CONFIG_MAX_KEYS");
_Static_assert(sizeof(enum nt_mode) == sizeof(int), "ENUM rows store an int");

static int find_key(const char *section, const char *key)
{
    for (size_t i = 0; i < nt_config_nr_keys; i++)
        if (strcmp(nt_config_keys[i].section, section) == 0 && strcmp(nt_config_keys[i].key, key) == 0)
            return (int)i;
    return -1;
}

static bool section_exists(const char *name, size_t len)
{
    for (size_t i = 0; i < nt_config_nr_keys; i++) {
        const char *s = nt_config_keys[i].section;
        if (strlen(s) == len && strncmp(s, name, len) == 0)
            return true;
    }
    return false;
}

static const char *choice_name(const struct nt_config_choice *c, int value)
{
    for (; c->name; c++)
        if (c->value == value)
            return c->name;
    return NULL;
}

const char *nt_mode_to_string(enum nt_mode m)
{
    const char *s = choice_name(mode_choices, (int)m);
    return s ? s : "?";
}

const char *nt_config_type_name(enum nt_config_type t)
{
    static const char *const names[] = {
        [NT_CONFIG_DURATION] = "duration", [NT_CONFIG_SIZE] = "size",
        [NT_CONFIG_PERCENT] = "percentage", [NT_CONFIG_BOOL] = "boolean",
        [NT_CONFIG_UINT] = "integer", [NT_CONFIG_ENUM] = "enum",
        [NT_CONFIG_PATH] = "path", [NT_CONFIG_NODELIST] = "node list",
        [NT_CONFIG_STRING] = "string",
    };
    return (size_t)t < NT_ARRAY_SIZE(names) && names[t] ? names[t] : "?";
}

/* ---- typed values --------------------------------------------------------- */

static void *field_of(const struct nt_config_key *k, void *base)
{
    return (char *)base + k->offset;
}

/* Leaves *why NULL for an unknown name: the caller lists the choices. */
static int parse_choice(const struct nt_config_key *k, const char *s, int *out, const char **why)
{
    for (const struct nt_config_choice *c = k->choices; c->name; c++) {
        if (strcmp(c->name, s) == 0) {
            *out = c->value;
            return 0;
        }
    }
    if (!*s)
        *why = "empty value";
    return -EINVAL;
}

/* "must be one of: observe, enforce", aliases left out. */
static void format_choices(const struct nt_config_key *k, char *buf, size_t len)
{
    size_t pos = (size_t)snprintf(buf, len, "must be one of:");
    for (const struct nt_config_choice *c = k->choices; c->name && pos < len; c++)
        if (choice_name(k->choices, c->value) == c->name)
            pos += (size_t)snprintf(buf + pos, len - pos, "%s %s",
                                    c == k->choices ? "" : ",", c->name);
}

static int parse_path(const char *s, char **out, const char **why)
{
    if (!*s) {
        *why = "empty value";
        return -EINVAL;
    }
    if (*s != '/') {
        *why = "must be an absolute path";
        return -EINVAL;
    }
    *out = strdup(s);
    return *out ? 0 : -ENOMEM;
}

static bool owns_string(const struct nt_config_key *k)
{
    return k->type == NT_CONFIG_PATH || k->type == NT_CONFIG_STRING;
}

/* Text to value, no range checks. why may be NULL. */
static int parse_text(const struct nt_config_key *k, const char *s, union nt_config_value *v,
                      const char **why)
{
    const char *ignored;
    if (!why)
        why = &ignored;
    *why = NULL;
    switch (k->type) {
    case NT_CONFIG_DURATION: return nt_parse_duration_why(s, &v->u, why);
    case NT_CONFIG_SIZE:     return nt_parse_size_why(s, &v->u, why);
    case NT_CONFIG_PERCENT:  return nt_parse_percent_why(s, &v->pct, why);
    case NT_CONFIG_BOOL:     return nt_parse_bool_why(s, &v->b, why);
    case NT_CONFIG_NODELIST: return nt_parse_nodelist_why(s, &v->set, why);
    case NT_CONFIG_ENUM:     return parse_choice(k, s, &v->e, why);
    case NT_CONFIG_PATH:     return parse_path(s, &v->s, why);
    case NT_CONFIG_STRING:
        v->s = strdup(s);
        return v->s ? 0 : -ENOMEM;
    case NT_CONFIG_UINT: {
        int r = nt_parse_uint_why(s, &v->u, why);
        if (r == 0 && v->u > UINT_MAX) {
            *why = "number too large";
            r = -ERANGE;
        }
        return r;
    }
    }
    return -EINVAL;
}

/* Is v below (sign < 0) or above (sign > 0) the bound text? */
static bool beyond(const struct nt_config_key *k, const union nt_config_value *v,
                   const char *bound, int sign)
{
    union nt_config_value b;
    if (!bound || parse_text(k, bound, &b, NULL) < 0)
        return false;
    if (k->type == NT_CONFIG_PERCENT)
        return sign < 0 ? v->pct < b.pct : v->pct > b.pct;
    return sign < 0 ? v->u < b.u : v->u > b.u;
}

static int check_range(const struct nt_config_key *k, const union nt_config_value *v,
                       char *why, size_t len)
{
    bool numeric = k->type == NT_CONFIG_DURATION || k->type == NT_CONFIG_SIZE ||
                   k->type == NT_CONFIG_UINT || k->type == NT_CONFIG_PERCENT;
    if (!numeric || (!beyond(k, v, k->min, -1) && !beyond(k, v, k->max, 1)))
        return 0;
    if (k->min && k->max)
        snprintf(why, len, "must be between %s and %s", k->min, k->max);
    else
        snprintf(why, len, "must be at %s %s", k->min ? "least" : "most", k->min ? k->min : k->max);
    return -ERANGE;
}

static void store(const struct nt_config_key *k, void *base, union nt_config_value *v)
{
    void *f = field_of(k, base);
    switch (k->type) {
    case NT_CONFIG_DURATION:
    case NT_CONFIG_SIZE:     *(uint64_t *)f = v->u; break;
    case NT_CONFIG_UINT:     *(unsigned *)f = (unsigned)v->u; break;
    case NT_CONFIG_PERCENT:  *(double *)f = v->pct; break;
    case NT_CONFIG_BOOL:     *(bool *)f = v->b; break;
    case NT_CONFIG_ENUM:     memcpy(f, &v->e, sizeof(int)); break;
    case NT_CONFIG_NODELIST: *(struct nt_nodeset *)f = v->set; break;
    case NT_CONFIG_PATH:
    case NT_CONFIG_STRING:
        free(*(char **)f);
        *(char **)f = NT_TAKE_PTR(v->s);
        break;
    }
}

int nt_config_key_parse(const struct nt_config_key *k, const char *text, void *base,
                        char *why, size_t len)
{
    union nt_config_value v = { 0 };
    const char *w = NULL;
    int r = parse_text(k, text, &v, &w);
    if (r < 0) {
        if (!w && k->type == NT_CONFIG_ENUM)
            format_choices(k, why, len);
        else
            snprintf(why, len, "%s", w ? w : strerror(-r));
        return r;
    }
    r = check_range(k, &v, why, len);
    if (r == 0 && k->check && (r = k->check(&v, &w)) < 0)
        snprintf(why, len, "%s", w ? w : strerror(-r));
    if (r < 0) {
        if (owns_string(k))
            free(v.s);
        return r;
    }
    store(k, base, &v);
    return 0;
}

/* The fewest decimals that read back as the same double. */
static void format_percent(double v, char *buf, size_t len)
{
    char tmp[64];
    for (int prec = 0; prec <= 20; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*f", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    snprintf(buf, len, "%s%%", tmp);
}

void nt_config_key_format(const struct nt_config_key *k, const void *base, char *buf, size_t len)
{
    const void *f = (const char *)base + k->offset;
    switch (k->type) {
    case NT_CONFIG_DURATION: nt_format_duration(*(const uint64_t *)f, buf, len); return;
    case NT_CONFIG_SIZE:     nt_format_size(*(const uint64_t *)f, buf, len); return;
    case NT_CONFIG_UINT:     snprintf(buf, len, "%u", *(const unsigned *)f); return;
    case NT_CONFIG_PERCENT:  format_percent(*(const double *)f, buf, len); return;
    case NT_CONFIG_BOOL:     snprintf(buf, len, "%s", *(const bool *)f ? "yes" : "no"); return;
    case NT_CONFIG_NODELIST: nt_format_nodelist(f, buf, len); return;
    case NT_CONFIG_PATH:
    case NT_CONFIG_STRING: {
        const char *s = *(char *const *)f;
        snprintf(buf, len, "%s", s ? s : "");
        return;
    }
    case NT_CONFIG_ENUM: {
        int e;
        memcpy(&e, f, sizeof(int));
        const char *name = choice_name(k->choices, e);
        if (name)
            snprintf(buf, len, "%s", name);
        else
            snprintf(buf, len, "%d", e);
        return;
    }
    }
    snprintf(buf, len, "?");
}

/* ---- init and done -------------------------------------------------------- */

void nt_config_done(struct nt_config *c)
{
    for (size_t i = 0; i < nt_config_nr_keys; i++)
        if (owns_string(&nt_config_keys[i]))
            free(*(char **)field_of(&nt_config_keys[i], c));
    for (size_t i = 0; i < NT_CONFIG_MAX_KEYS; i++)
        free(c->origins[i]);
    memset(c, 0, sizeof(*c));
}

/* Defaults into a zeroed struct; returns the first error but sets every
 * key it can. Only allocation can fail: test-config proves every default
 * parses. */
static int config_defaults(struct nt_config *c)
{
    char why[128];
    int first = 0;
    for (size_t i = 0; i < nt_config_nr_keys; i++) {
        int r = nt_config_key_parse(&nt_config_keys[i], nt_config_keys[i].def, c, why, sizeof(why));
        if (r < 0 && first == 0)
            first = r;
    }
    return first;
}

void nt_config_init(struct nt_config *c)
{
    memset(c, 0, sizeof(*c));
    /* void by contract: on ENOMEM a string stays NULL, and
     * nt_config_load() is the path that reports it. */
    (void)config_defaults(c);
}

/* ---- loading -------------------------------------------------------------- */

struct load_ctx {
    struct nt_config *cfg;
    struct nt_config_error *err;
    const char *path;           /* file being read */
    FILE *f;
    unsigned line;              /* number of the line last read */
    int read_errno;
    int r;                      /* first error, or 0 */
    unsigned err_line;          /* its line, 0 if not tied to one */
};

static int ctx_fail(struct load_ctx *ctx, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int ctx_fail(struct load_ctx *ctx, int r, const char *fmt, ...)
{
    if (ctx->r < 0)
        return ctx->r;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err->message, sizeof(ctx->err->message), fmt, ap);
    va_end(ap);
    ctx->r = r;
    ctx->err_line = 0;
    return r;
}

/* An error at the current line: "path:line: ...". */
static int ctx_fail_line(struct load_ctx *ctx, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int ctx_fail_line(struct load_ctx *ctx, int r, const char *fmt, ...)
{
    if (ctx->r < 0)
        return ctx->r;
    char *m = ctx->err->message;
    size_t len = sizeof(ctx->err->message);
    int n = snprintf(m, len, "%s:%u: ", ctx->path, ctx->line);
    if (n >= 0 && (size_t)n < len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m + n, len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    ctx->r = r;
    ctx->err_line = ctx->line;
    return r;
}

/* fgets() stopped at the buffer's end rather than at a newline? One more
 * character tells: EOF or the newline itself mean the line was whole. */
static bool line_is_whole(FILE *f, const char *buf)
{
    size_t n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n')
        return true;
    int c = getc(f);
    return c == EOF || c == '\n';
}

/* Drop a BOM, indentation and comments. A comment starts at # or ; that
 * begins the line or follows a blank, so "# origin" tails of our own dump
 * are comments while a path may still contain '#'. Dropping indentation
 * also keeps inih from reading indented keys as continuation lines. */
static void normalize_line(char *buf, bool first)
{
    char *p = buf;
    if (first && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    while (isspace((unsigned char)*p))
        p++;
    for (char *q = p; *q; q++) {
        if ((*q == '#' || *q == ';') && (q == p || isspace((unsigned char)q[-1]))) {
            *q = '\0';
            break;
        }
    }
    memmove(buf, p, strlen(p) + 1);
}

/* A section header must be exactly "[name]" with a name from the table;
 * checked here so that even an empty unknown section is reported. */
static int check_section(struct load_ctx *ctx, const char *buf)
{
    size_t n = strlen(buf);
    while (n > 0 && isspace((unsigned char)buf[n - 1]))
        n--;
    if (n < 2 || buf[n - 1] != ']')
        return ctx_fail_line(ctx, -EINVAL, "syntax error: a section header is [name]");
    if (!section_exists(buf + 1, n - 2))
        return ctx_fail_line(ctx, -EINVAL, "unknown section [%.*s]", (int)(n - 2), buf + 1);
    return 0;
}

/* inih's fgets-style reader. Returning NULL ends the parse. */
static char *read_line(char *buf, int size, void *stream)
{
    struct load_ctx *ctx = stream;
    if (ctx->r < 0)
        return NULL;
    errno = 0;
    if (!fgets(buf, size, ctx->f)) {
        if (ferror(ctx->f))
            ctx->read_errno = errno ? errno : EIO;
        return NULL;
    }
    ctx->line++;
    if (!line_is_whole(ctx->f, buf)) {
        ctx_fail_line(ctx, -EINVAL, "line too long (at most %d characters) or not text", size - 1);
        return NULL;
    }
    normalize_line(buf, ctx->line == 1);
    if (buf[0] == '[' && check_section(ctx, buf) < 0)
        return NULL;
    return buf;
}

static int set_origin(struct load_ctx *ctx, int idx)
{
    char *o;
    if (asprintf(&o, "%s:%u", ctx->path, ctx->line) < 0)
        return -ENOMEM;
    free(ctx->cfg->origins[idx]);
    ctx->cfg->origins[idx] = o;
    return 0;
}

/* inih handler: nonzero means "fine". */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *ctx = user;
    if (ctx->r < 0 || !name)
        return 1;
    if (!value)
        value = "";
    if (!*section)
        return ctx_fail_line(ctx, -EINVAL, "key \"%s\" comes before any [section]", name), 0;
    int idx = find_key(section, name);
    if (idx < 0)
        return ctx_fail_line(ctx, -EINVAL, "[%s] unknown key \"%s\"", section, name), 0;

    char why[160];
    int r = nt_config_key_parse(&nt_config_keys[idx], value, ctx->cfg, why, sizeof(why));
    if (r < 0)
        return ctx_fail_line(ctx, r, "[%s] %s: %s (got \"%s\")", section, name, why, value), 0;
    if (set_origin(ctx, idx) < 0)
        return ctx_fail_line(ctx, -ENOMEM, "out of memory"), 0;
    return 1;
}

static int parse_stream(struct load_ctx *ctx)
{
    int ret = ini_parse_stream(read_line, ctx, on_key, ctx);
    /* inih reports the first failing line, ours included: a smaller one is
     * a syntax error inih found before our error. */
    if (ret > 0 && (ctx->r == 0 || (unsigned)ret < ctx->err_line)) {
        ctx->r = 0;
        ctx->line = (unsigned)ret;
        return ctx_fail_line(ctx, -EINVAL, "syntax error");
    }
    if (ret < 0 && ctx->r == 0)
        return ctx_fail(ctx, -ENOMEM, "%s: out of memory", ctx->path);
    if (ctx->r == 0 && ctx->read_errno)
        return ctx_fail(ctx, -ctx->read_errno, "%s: read error: %s", ctx->path,
                        strerror(ctx->read_errno));
    return ctx->r;
}

static int load_file(struct load_ctx *ctx, const char *path, bool required)
{
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        if (e == ENOENT && !required)
            return 0;
        return ctx_fail(ctx, -e, "%s: cannot open: %s", path, strerror(e));
    }
    ctx->path = path;
    ctx->f = f;
    ctx->line = 0;
    ctx->read_errno = 0;
    int r = parse_stream(ctx);
    ctx->f = NULL;
    ctx->path = NULL;
    return r;
}

static int is_dropin(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return d->d_name[0] != '.' && n > 5 && strcmp(d->d_name + n - 5, ".conf") == 0;
}

/* strcmp, not alphasort's strcoll: the order must not depend on locale. */
static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int load_dropins(struct load_ctx *ctx, const char *dir)
{
    struct dirent **list = NULL;
    int n = scandir(dir, &list, is_dropin, by_name);
    if (n < 0) {
        int e = errno;
        if (e == ENOENT)
            return 0;
        return ctx_fail(ctx, -e, "%s: cannot read directory: %s", dir, strerror(e));
    }
    int r = 0;
    for (int i = 0; i < n; i++) {
        _cleanup_free_ struct dirent *d = list[i];
        _cleanup_free_ char *path = NULL;
        if (r < 0)
            continue;
        if (asprintf(&path, "%s/%s", dir, d->d_name) < 0) {
            path = NULL;
            r = ctx_fail(ctx, -ENOMEM, "%s: out of memory", dir);
            continue;
        }
        /* Not required: a drop-in removed since scandir() is simply gone. */
        r = load_file(ctx, path, false);
    }
    free(list);
    return r;
}

/* ---- checks across keys --------------------------------------------------- */

static const char *origin_of(const struct nt_config *c, const char *section, const char *key)
{
    const char *o = nt_config_origin(c, section, key);
    return o ? o : "default";
}

static int check_tiers(struct load_ctx *ctx)
{
    const struct nt_tier_config *t = &ctx->cfg->tiers;
    for (int n = 0; n < NT_MAX_NODES; n++) {
        if (nt_nodeset_test(&t->fast_nodes, n) && nt_nodeset_test(&t->slow_nodes, n))
            return ctx_fail(ctx, -EINVAL,
                            "%s: [topology] fast_tier_nodes: node %d is also in slow_tier_nodes "
                            "(set at %s); a node belongs to one tier only",
                            origin_of(ctx->cfg, "topology", "fast_tier_nodes"), n,
                            origin_of(ctx->cfg, "topology", "slow_tier_nodes"));
    }
    return 0;
}

static int check_tiering(struct load_ctx *ctx)
{
    const struct nt_config *c = ctx->cfg;
    if (c->cold_heat >= c->hot_heat)
        return ctx_fail(ctx, -EINVAL, "%s: [tiering] cold_heat: %u is not below hot_heat %u (set at %s)",
                        origin_of(c, "tiering", "cold_heat"), c->cold_heat, c->hot_heat,
                        origin_of(c, "tiering", "hot_heat"));
    if (c->low_watermark_pct > c->high_watermark_pct)
        return ctx_fail(ctx, -EINVAL, "%s: [tiering] low_watermark: %g%% is above high_watermark %g%% (set at %s)",
                        origin_of(c, "tiering", "low_watermark"), c->low_watermark_pct, c->high_watermark_pct,
                        origin_of(c, "tiering", "high_watermark"));
    return 0;
}

/* Rules that involve more than one key, run once every file is read so
 * that a later drop-in can still fix an earlier file. */
static int (*const cross_checks[])(struct load_ctx *ctx) = {
    check_tiers,
    check_tiering,
};

static int run_cross_checks(struct load_ctx *ctx)
{
    for (size_t i = 0; i < NT_ARRAY_SIZE(cross_checks); i++) {
        int r = cross_checks[i](ctx);
        if (r < 0)
            return r;
    }
    return 0;
}

int nt_config_load(struct nt_config *out, const char *main_path, bool main_required,
                   const char *dropin_dir, struct nt_config_error *err)
{
    struct nt_config_error ignored;
    _cleanup_(nt_config_done) struct nt_config c = { 0 };
    struct load_ctx ctx = { .cfg = &c, .err = err ? err : &ignored };
    ctx.err->message[0] = '\0';

    int r = config_defaults(&c);
    if (r < 0)
        ctx_fail(&ctx, r, "cannot set defaults: %s", strerror(-r));
    if (ctx.r == 0 && main_path)
        load_file(&ctx, main_path, main_required);
    if (ctx.r == 0 && dropin_dir)
        load_dropins(&ctx, dropin_dir);
    if (ctx.r == 0)
        run_cross_checks(&ctx);
    if (ctx.r < 0) {
        memset(out, 0, sizeof(*out));
        return ctx.r;
    }
    *out = c;
    memset(&c, 0, sizeof(c));   /* moved out: the cleanup now frees nothing */
    return 0;
}

/* ---- output --------------------------------------------------------------- */

const char *nt_config_origin(const struct nt_config *c, const char *section, const char *key)
{
    int idx = find_key(section, key);
    if (idx < 0)
        return NULL;
    return c->origins[idx] ? c->origins[idx] : "default";
}

static bool first_of_section(size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (strcmp(nt_config_keys[j].section, nt_config_keys[i].section) == 0)
            return false;
    return true;
}

static int format_assignment(const struct nt_config *c, size_t i, char *buf, size_t len)
{
    char value[NT_NODELIST_STRLEN];
    nt_config_key_format(&nt_config_keys[i], c, value, sizeof(value));
    return snprintf(buf, len, "%s = %s", nt_config_keys[i].key, value);
}

void nt_config_dump(const struct nt_config *c, FILE *f)
{
    char line[NT_NODELIST_STRLEN + 128];
    int width = 0;
    for (size_t i = 0; i < nt_config_nr_keys; i++) {
        int n = format_assignment(c, i, line, sizeof(line));
        if (n > width)
            width = n;
    }
    for (size_t i = 0; i < nt_config_nr_keys; i++) {
        if (!first_of_section(i))
            continue;
        const char *section = nt_config_keys[i].section;
        fprintf(f, "%s[%s]\n", i ? "\n" : "", section);
        for (size_t j = i; j < nt_config_nr_keys; j++) {
            if (strcmp(nt_config_keys[j].section, section) != 0)
                continue;
            format_assignment(c, j, line, sizeof(line));
            fprintf(f, "%-*s    # %s\n", width, line,
                    c->origins[j] ? c->origins[j] : "default");
        }
    }
}

/* Add val under key; consumes val even on failure. */
static int json_add(struct json_object *obj, const char *key, struct json_object *val)
{
    if (!val)
        return -ENOMEM;
    if (json_object_object_add(obj, key, val) < 0) {
        json_object_put(val);
        return -ENOMEM;
    }
    return 0;
}

static int key_to_json(const struct nt_config *c, size_t i, struct json_object *root)
{
    const struct nt_config_key *k = &nt_config_keys[i];
    struct json_object *section;
    if (!json_object_object_get_ex(root, k->section, &section)) {
        section = json_object_new_object();
        if (json_add(root, k->section, section) < 0)
            return -ENOMEM;
    }
    char value[NT_NODELIST_STRLEN];
    nt_config_key_format(k, c, value, sizeof(value));
    struct json_object *entry = json_object_new_object();
    if (json_add(section, k->key, entry) < 0)
        return -ENOMEM;
    if (json_add(entry, "value", json_object_new_string(value)) < 0)
        return -ENOMEM;
    return json_add(entry, "origin", json_object_new_string(c->origins[i] ? c->origins[i] : "default"));
}

struct json_object *nt_config_to_json(const struct nt_config *c)
{
    struct json_object *root = json_object_new_object();
    if (!root)
        return NULL;
    for (size_t i = 0; i < nt_config_nr_keys; i++) {
        if (key_to_json(c, i, root) < 0) {
            json_object_put(root);
            return NULL;
        }
    }
    return root;
}
