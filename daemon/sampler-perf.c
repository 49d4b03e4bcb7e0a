/* The perf sampling backend: hardware-sampled loads with their data source.
 *
 * Intel: PEBS load latency (MEM_TRANS_RETIRED.LOAD_LATENCY, encoded by
 * libpfm4), led by the mem-loads-aux event where the kernel requires it.
 * AMD: the IBS op PMU, whose attr we build by hand (libpfm4 cannot).
 * One CPU-wide event per online CPU, each with its own ring buffer; drain
 * reads them all, keeps the watched processes' samples and tunes the
 * sample period to the CPU budget.
 *
 * Detection only reads the sysfs/procfs root, and building attrs never
 * opens an event, so both run on fixture trees. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

#include "numatier/config.h"
#include "numatier/log.h"
#include "numatier/perf.h"
#include "numatier/sampler.h"
#include "numatier/util.h"

/* After <linux/perf_event.h> (via perf.h): libpfm4's copy of the perf
 * ABI then steps aside instead of clashing with the kernel's. */
#include <perfmon/pfmlib_perf_event.h>

#define PMU_DEVICES "/sys/bus/event_source/devices"
#define PARANOID_PATH "/proc/sys/kernel/perf_event_paranoid"

/* Shipped defaults (etc/numatierd.conf) for when there is no config. */
#define DEFAULT_LDLAT 30
#define DEFAULT_PERIOD 20000
#define DEFAULT_BUDGET_PCT 1.0

/* Period limits. Below PEBS_PERIOD_MIN the PMI rate, not the budget, is
 * what hurts; IBS takes multiples of 16 up to its 16-bit MaxCnt << 4, and
 * recent kernels refuse very small IBS periods. */
#define PEBS_PERIOD_MIN 1000
#define PEBS_PERIOD_MAX 1000000000u
#define IBS_PERIOD_MIN 256
#define IBS_PERIOD_MAX 0xFFFF0u

#define RING_DATA_PAGES 16      /* 64 KiB per CPU with 4 KiB pages */

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif

/* ---- small helpers -------------------------------------------------------- */

static void set_why(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_why(char *why, size_t len, const char *fmt, ...)
{
    if (!why || !len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
}

/* Read PMU_DEVICES/<dir>/<leaf> below root. */
static int pmu_read(const char *root, const char *dir, const char *leaf, char **out)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), PMU_DEVICES "/%s/%s", dir, leaf);
    return nt_read_file(root, path, out);
}

static bool pmu_has(const char *root, const char *dir, const char *leaf)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), PMU_DEVICES "/%s/%s", dir, leaf);
    _cleanup_free_ char *full = nt_path_join(root, path);
    return full && access(full, F_OK) == 0;
}

static int pmu_read_u32(const char *root, const char *dir, const char *leaf, uint32_t *out)
{
    char path[PATH_MAX];
    uint64_t v;
    snprintf(path, sizeof(path), PMU_DEVICES "/%s/%s", dir, leaf);
    int r = nt_read_u64(root, path, &v);
    if (r < 0)
        return r;
    if (v > UINT32_MAX)
        return -ERANGE;
    *out = (uint32_t)v;
    return 0;
}

/* ---- sysfs format attributes ---------------------------------------------- */

static int format_field(const char *name, size_t n)
{
    static const char *const fields[] = { "config", "config1", "config2" };
    for (int i = 0; i < 3; i++)
        if (strlen(fields[i]) == n && strncmp(name, fields[i], n) == 0)
            return i;
    return -1;
}

static int parse_bit(const char **p, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(*p, &end, 10);
    if (end == *p || errno || v > 63)
        return -EINVAL;
    *out = (unsigned)v;
    *p = end;
    return 0;
}

int nt_perf_format_parse(const char *text, struct nt_perf_format *f)
{
    const char *colon = strchr(text, ':');
    if (!colon)
        return -EINVAL;
    *f = (struct nt_perf_format){ .field = format_field(text, (size_t)(colon - text)) };
    if (f->field < 0)
        return -EOPNOTSUPP;
    const char *p = colon + 1;
    for (;;) {
        unsigned lo, hi;
        if (f->nr == NT_ARRAY_SIZE(f->lo) || parse_bit(&p, &lo) < 0)
            return -EINVAL;
        hi = lo;
        if (*p == '-' && (p++, parse_bit(&p, &hi) < 0 || hi < lo))
            return -EINVAL;
        f->lo[f->nr] = (uint8_t)lo;
        f->hi[f->nr] = (uint8_t)hi;
        f->nr++;
        if (*p == '\0' || *p == '\n')
            return 0;
        if (*p++ != ',')
            return -EINVAL;
    }
}

static __u64 *format_target(int field, struct perf_event_attr *attr)
{
    switch (field) {
    case 0: return &attr->config;
    case 1: return &attr->config1;
    default: return &attr->config2;
    }
}

void nt_perf_format_apply(const struct nt_perf_format *f, uint64_t value, struct perf_event_attr *attr)
{
    __u64 *dst = format_target(f->field, attr);
    for (unsigned i = 0; i < f->nr; i++) {
        unsigned width = f->hi[i] - f->lo[i] + 1u;
        uint64_t mask = width >= 64 ? UINT64_MAX : (UINT64_C(1) << width) - 1;
        *dst = (*dst & ~(mask << f->lo[i])) | ((value & mask) << f->lo[i]);
        value = width >= 64 ? 0 : value >> width;
    }
}

/* PMU_DEVICES/<dir>/format/<name>: -ENOENT when the PMU lacks it. */
static int format_read(const char *root, const char *dir, const char *name, struct nt_perf_format *f)
{
    char leaf[128];
    _cleanup_free_ char *text = NULL;
    snprintf(leaf, sizeof(leaf), "format/%s", name);
    int r = pmu_read(root, dir, leaf, &text);
    return r < 0 ? r : nt_perf_format_parse(text, f);
}

/* An events/<name> string ("event=0xcd,umask=0x1,ldlat=3") through the
 * PMU's format files into config words. */
static int sysfs_event_encode(const char *root, const char *dir, const char *name, uint64_t config[3])
{
    char leaf[128];
    _cleanup_free_ char *text = NULL;
    snprintf(leaf, sizeof(leaf), "events/%s", name);
    int r = pmu_read(root, dir, leaf, &text);
    if (r < 0)
        return r;
    struct perf_event_attr attr = { 0 };
    char *save = NULL;
    for (char *term = strtok_r(text, ",", &save); term; term = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(term, '=');
        uint64_t value = 1;             /* a bare term is a flag */
        if (eq) {
            *eq = '\0';
            char *end;
            errno = 0;
            value = strtoull(eq + 1, &end, 0);
            if (errno || end == eq + 1 || *end)
                return -EINVAL;
        }
        struct nt_perf_format f;
        r = format_read(root, dir, term, &f);
        if (r < 0)
            return r;
        nt_perf_format_apply(&f, value, &attr);
    }
    config[0] = attr.config;
    config[1] = attr.config1;
    config[2] = attr.config2;
    return 0;
}

/* ---- privileges ----------------------------------------------------------- */

int nt_perf_privs_self(struct nt_perf_privs *out)
{
    struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
    memset(d, 0, sizeof(d));
    if (syscall(SYS_capget, &h, d) < 0)
        return -errno;
    out->cap_sys_admin = d[CAP_SYS_ADMIN / 32].effective & (UINT32_C(1) << (CAP_SYS_ADMIN % 32));
    out->cap_perfmon = d[CAP_PERFMON / 32].effective & (UINT32_C(1) << (CAP_PERFMON % 32));
    return 0;
}

static int read_paranoid(const char *root, int *out)
{
    _cleanup_free_ char *s = NULL;
    int r = nt_read_file(root, PARANOID_PATH, &s);
    if (r < 0)
        return r;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || v < INT_MIN || v > INT_MAX)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

/* ---- PMU detection -------------------------------------------------------- */

/* Kernel caps/pmu_name -> libpfm4 PMU models with the same load-latency
 * event, most likely first. Unknown names fall back to events/mem-loads. */
static const struct {
    const char *pmu_name;
    const char *pfm[NT_PERF_MAX_PFM_NAMES];
} pfm_models[] = {
    { "sandybridge", { "snb_ep", "snb" } },
    { "ivybridge", { "ivb_ep", "ivb" } },
    { "haswell", { "hsw_ep", "hsw" } },
    { "broadwell", { "bdw_ep", "bdw" } },
    { "skylake", { "skx", "skl" } },
    { "icelake", { "icx", "icl" } },
    { "sapphire_rapids", { "spr" } },
    { "emerald_rapids", { "spr" } },
    { "granite_rapids", { "gnr", "spr" } },
};

/* Models whose load-latency event needs the 0x8203 group leader, for
 * kernels that predate the events/mem-loads-aux file that says so. */
static const char *const aux_models[] = {
    "sapphire_rapids", "emerald_rapids", "granite_rapids", "sierra_forest",
};

static bool name_in(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, list[i]) == 0)
            return true;
    return false;
}

static void pfm_names_for(const char *pmu_name, const char **out)
{
    for (size_t i = 0; i < NT_ARRAY_SIZE(pfm_models); i++)
        if (strcmp(pmu_name, pfm_models[i].pmu_name) == 0) {
            memcpy(out, pfm_models[i].pfm, sizeof(pfm_models[i].pfm));
            return;
        }
}

/* The core PMU has no load-latency sampling: say which kind of machine. */
static int no_ldlat(const struct nt_perf_pmu *p, bool named, char *why, size_t len)
{
    if (named)
        set_why(why, len, "Intel PMU \"%s\" has no load-latency (ldlat) format", p->name);
    else
        set_why(why, len, "no PMU with memory sampling (%s PMU has no load-latency format and "
                "there is no ibs_op PMU)", p->dir);
    return -ENODEV;
}

static int detect_intel(const char *root, const char *dir, struct nt_perf_pmu *p, char *why, size_t len)
{
    _cleanup_free_ char *name = NULL;
    p->kind = NT_PERF_PEBS;
    snprintf(p->dir, sizeof(p->dir), "%s", dir);
    p->hybrid = strcmp(dir, "cpu_core") == 0;
    bool named = pmu_read(root, dir, "caps/pmu_name", &name) >= 0 && *name;
    snprintf(p->name, sizeof(p->name), "%s", named ? name : dir);
    if (format_read(root, dir, "ldlat", &p->ldlat) < 0)
        return no_ldlat(p, named, why, len);
    /* A vPMU can show the host's formats without passing PEBS through. */
    uint32_t max_precise;
    p->max_precise = pmu_read_u32(root, dir, "caps/max_precise", &max_precise) < 0 ? -1 : (int)max_precise;
    if (p->max_precise == 0) {
        set_why(why, len, "Intel PMU \"%s\" has no precise sampling (caps/max_precise=0: PEBS not "
                "available, virtual machine?)", p->name);
        return -ENODEV;
    }
    p->needs_aux = pmu_has(root, dir, "events/mem-loads-aux") ||
                   name_in(p->name, aux_models, NT_ARRAY_SIZE(aux_models));
    /* The PMUs that need the aux leader are the ones with adaptive PEBS
     * that report load and instruction latency apart. */
    p->weight_struct = p->needs_aux;
    p->has_sysfs_loads = sysfs_event_encode(root, dir, "mem-loads", p->loads_config) >= 0;
    pfm_names_for(p->name, p->pfm_names);
    return 0;
}

static void detect_ibs(const char *root, struct nt_perf_pmu *p)
{
    p->kind = NT_PERF_IBS;
    snprintf(p->dir, sizeof(p->dir), "ibs_op");
    snprintf(p->name, sizeof(p->name), "ibs_op");
    p->zen4 = pmu_has(root, "ibs_op", "caps/zen4_ibs_extensions");
    p->has_l3missonly = format_read(root, "ibs_op", "l3missonly", &p->l3missonly) >= 0;
    p->has_cnt_ctl = format_read(root, "ibs_op", "cnt_ctl", &p->cnt_ctl) >= 0;
    p->has_swfilt = format_read(root, "ibs_op", "swfilt", &p->swfilt) >= 0;
}

/* Which PMU, if any, samples memory loads here. */
static int detect_pmu(const char *root, struct nt_perf_pmu *p, char *why, size_t len)
{
    /* On AMD the "cpu" PMU exists too, but only IBS knows data sources. */
    if (pmu_has(root, "ibs_op", "type")) {
        detect_ibs(root, p);
        return 0;
    }
    if (pmu_has(root, "cpu_core", "type"))
        return detect_intel(root, "cpu_core", p, why, len);
    if (pmu_has(root, "cpu", "type"))
        return detect_intel(root, "cpu", p, why, len);
    set_why(why, len, "no PMU with memory sampling (cpu PMU absent: virtual machine?)");
    return -ENODEV;
}

static const char *pmu_desc(const struct nt_perf_pmu *p, char *buf, size_t len)
{
    if (p->kind == NT_PERF_IBS)
        snprintf(buf, len, "ibs_op PMU");
    else
        snprintf(buf, len, "Intel PMU \"%s\"", p->name);
    return buf;
}

/* CPU-wide events need perf_event_paranoid <= 0 or CAP_PERFMON (or
 * CAP_SYS_ADMIN on kernels before 5.8); physical addresses need <= 1. */
static int check_privileges(const char *root, const struct nt_perf_privs *privs, struct nt_perf_pmu *p,
                            char *why, size_t len)
{
    char desc[96];
    int r = read_paranoid(root, &p->paranoid);
    if (r < 0) {
        set_why(why, len, "%s present but " PARANOID_PATH " is unreadable: %s",
                pmu_desc(p, desc, sizeof(desc)), strerror(-r));
        return r;
    }
    bool capable = privs->cap_perfmon || privs->cap_sys_admin;
    p->privileged = capable || p->paranoid <= 0;
    p->phys_addr = capable || p->paranoid <= 1;
    if (!p->privileged) {
        set_why(why, len, "%s present but perf_event_paranoid=%d and no CAP_PERFMON",
                pmu_desc(p, desc, sizeof(desc)), p->paranoid);
        return -EACCES;
    }
    return 0;
}

int nt_perf_detect(const char *root, const struct nt_perf_privs *privs, struct nt_perf_pmu *out,
                   char *why, size_t len)
{
    struct nt_perf_pmu p = { 0 };
    char desc[96];
    int r = detect_pmu(root, &p, why, len);
    if (r < 0)
        return r;
    r = pmu_read_u32(root, p.dir, "type", &p.type);
    if (r < 0) {
        set_why(why, len, "%s: unreadable type: %s", pmu_desc(&p, desc, sizeof(desc)), strerror(-r));
        return r;
    }
    r = check_privileges(root, privs, &p, why, len);
    if (r < 0)
        return r;
    *out = p;
    return 0;
}

/* ---- settings and attrs --------------------------------------------------- */

void nt_perf_settings_from_config(const struct nt_config *c, struct nt_perf_settings *out)
{
    *out = (struct nt_perf_settings){
        .event = c ? c->perf_event : NULL,
        .ldlat = c ? c->perf_ldlat : DEFAULT_LDLAT,
        .period = c ? c->perf_period : DEFAULT_PERIOD,
        .budget_pct = c ? c->cpu_budget_pct : DEFAULT_BUDGET_PCT,
    };
}

/* libpfm4 is process-global; initialize it once. Encoding for models it
 * did not detect is allowed because we pick the model from the kernel's
 * pmu_name, which knows newer steppings (EMR reports sapphire_rapids)
 * than libpfm4's CPUID table does. */
static int pfm_ready(char *why, size_t len)
{
    static int status = 1;      /* 1: not tried; else a PFM_ code */
    if (status == 1) {
        setenv("LIBPFM_ENCODE_INACTIVE", "1", 0);
        status = pfm_initialize();
    }
    if (status != PFM_SUCCESS) {
        set_why(why, len, "libpfm4 initialization failed: %s", pfm_strerror(status));
        return -EIO;
    }
    return 0;
}

static int pfm_encode(const char *event, struct perf_event_attr *attr)
{
    pfm_perf_encode_arg_t arg;
    memset(&arg, 0, sizeof(arg));
    memset(attr, 0, sizeof(*attr));
    arg.attr = attr;
    arg.size = sizeof(arg);
    /* User level only: kernel addresses are no use for page placement. */
    return pfm_get_os_event_encoding(event, PFM_PLM3, PFM_OS_PERF_EVENT_EXT, &arg);
}

/* Try "<model>::<event>" for each libpfm4 model of this PMU, then the
 * event as given (it may name its own model, or be a generic event). */
static int pfm_encode_any(const struct nt_perf_pmu *p, const char *event, struct perf_event_attr *attr,
                          char *name, size_t name_len, int *last)
{
    bool qualified = strstr(event, "::") != NULL;
    for (size_t i = 0; !qualified && i < NT_PERF_MAX_PFM_NAMES && p->pfm_names[i]; i++) {
        snprintf(name, name_len, "%s::%s", p->pfm_names[i], event);
        if ((*last = pfm_encode(name, attr)) == PFM_SUCCESS)
            return 0;
    }
    snprintf(name, name_len, "%s", event);
    *last = pfm_encode(event, attr);
    return *last == PFM_SUCCESS ? 0 : -EINVAL;
}

static uint64_t base_sample_type(const struct nt_perf_pmu *p)
{
    uint64_t t = PERF_SAMPLE_IDENTIFIER | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_ADDR |
                 PERF_SAMPLE_CPU | PERF_SAMPLE_DATA_SRC;
    t |= p->weight_struct ? PERF_SAMPLE_WEIGHT_STRUCT : PERF_SAMPLE_WEIGHT;
    if (p->phys_addr)
        t |= PERF_SAMPLE_PHYS_ADDR;
    return t;
}

static void finish_sample_attr(const struct nt_perf_pmu *p, uint64_t period, struct nt_perf_attrs *a)
{
    struct perf_event_attr *s = &a->sample;
    s->size = sizeof(*s);
    s->freq = 0;
    s->sample_period = nt_period_clamp(period, &a->limits);
    s->sample_type = base_sample_type(p);
    s->sample_id_all = 1;
    s->disabled = 0;
}

/* The default event, or the sysfs mem-loads event when libpfm4 does not
 * know this model. */
static int intel_default_event(const struct nt_perf_pmu *p, unsigned ldlat, struct nt_perf_attrs *a,
                               char *why, size_t len)
{
    char event[96];
    int last = PFM_ERR_NOTFOUND;
    snprintf(event, sizeof(event), "MEM_TRANS_RETIRED:LOAD_LATENCY:ldlat=%u", ldlat);
    if (p->pfm_names[0] && pfm_encode_any(p, event, &a->sample, a->event, sizeof(a->event), &last) == 0)
        return 0;
    if (!p->has_sysfs_loads) {
        set_why(why, len, "Intel PMU \"%s\": libpfm4 cannot encode %s (%s) and the PMU has no "
                "events/mem-loads", p->name, event, pfm_strerror(last));
        return -EOPNOTSUPP;
    }
    memset(&a->sample, 0, sizeof(a->sample));
    a->sample.type = p->type;
    a->sample.config = p->loads_config[0];
    a->sample.config1 = p->loads_config[1];
    a->sample.config2 = p->loads_config[2];
    nt_perf_format_apply(&p->ldlat, ldlat, &a->sample);
    a->sample.exclude_kernel = 1;
    a->sample.exclude_hv = 1;
    snprintf(a->event, sizeof(a->event), "%s/mem-loads,ldlat=%u/", p->dir, ldlat);
    return 0;
}

static void intel_leader(const struct nt_perf_pmu *p, struct nt_perf_attrs *a)
{
    /* Only its presence matters; it counts, it does not sample. */
    struct perf_event_attr *l = &a->leader;
    memset(l, 0, sizeof(*l));
    l->size = sizeof(*l);
    l->type = p->type;
    l->config = NT_PERF_MEM_LOADS_AUX;
    l->exclude_kernel = a->sample.exclude_kernel;
    l->exclude_hv = a->sample.exclude_hv;
    l->exclude_guest = 1;
    a->has_leader = true;
}

static int build_intel(const struct nt_perf_pmu *p, const struct nt_perf_settings *s,
                       struct nt_perf_attrs *a, char *why, size_t len)
{
    int r = pfm_ready(why, len);
    if (r < 0)
        return r;
    a->limits = (struct nt_period_limits){
        .min = s->period < PEBS_PERIOD_MIN ? (s->period ? s->period : 1) : PEBS_PERIOD_MIN,
        .max = PEBS_PERIOD_MAX, .align = 1,
    };
    if (s->event && *s->event) {
        int last;
        if (pfm_encode_any(p, s->event, &a->sample, a->event, sizeof(a->event), &last) < 0) {
            set_why(why, len, "[sampler] perf_event \"%s\": libpfm4 cannot encode it for Intel PMU "
                    "\"%s\": %s", s->event, p->name, pfm_strerror(last));
            return -EINVAL;
        }
    } else if ((r = intel_default_event(p, s->ldlat, a, why, len)) < 0)
        return r;
    /* Hybrid parts number their core PMU apart from PERF_TYPE_RAW. */
    if (a->sample.type == PERF_TYPE_RAW)
        a->sample.type = p->type;
    /* Without PEBS there is no data address: insist on precise, as far
     * as the PMU says it goes. */
    if (a->sample.precise_ip < 2)
        a->sample.precise_ip = p->max_precise == 1 ? 1 : 2;
    a->sample.exclude_guest = 1;        /* older kernels refuse PEBS otherwise */
    a->sample.exclude_hv = 1;           /* libpfm4 leaves it to the PMU's default */
    finish_sample_attr(p, s->period, a);
    if (p->needs_aux)
        intel_leader(p, a);
    return 0;
}

static int build_ibs(const struct nt_perf_pmu *p, const struct nt_perf_settings *s,
                     struct nt_perf_attrs *a, char *why, size_t len)
{
    if (s->event && *s->event) {
        set_why(why, len, "[sampler] perf_event \"%s\" cannot be used with AMD IBS: libpfm4 does not "
                "encode ibs_op; leave perf_event empty", s->event);
        return -EINVAL;
    }
    a->limits = (struct nt_period_limits){ .min = IBS_PERIOD_MIN, .max = IBS_PERIOD_MAX, .align = 16 };
    struct perf_event_attr *e = &a->sample;
    memset(e, 0, sizeof(*e));
    e->type = p->type;
    int n = snprintf(a->event, sizeof(a->event), "ibs_op/");
    /* Only loads that missed L3 (Zen 4+): what placement cares about. */
    if (p->has_l3missonly) {
        nt_perf_format_apply(&p->l3missonly, 1, e);
        n += snprintf(a->event + n, sizeof(a->event) - (size_t)n, "l3missonly=1,");
    }
    /* Count dispatched ops rather than cycles, so the period is in events. */
    if (p->has_cnt_ctl) {
        nt_perf_format_apply(&p->cnt_ctl, 1, e);
        n += snprintf(a->event + n, sizeof(a->event) - (size_t)n, "cnt_ctl=1,");
    }
    /* IBS refuses exclude_kernel unless software filtering is on. */
    if (p->has_swfilt) {
        nt_perf_format_apply(&p->swfilt, 1, e);
        e->exclude_kernel = 1;
        n += snprintf(a->event + n, sizeof(a->event) - (size_t)n, "swfilt=1,");
    }
    if (a->event[n - 1] == ',')
        n--;
    snprintf(a->event + n, sizeof(a->event) - (size_t)n, "/");
    finish_sample_attr(p, s->period, a);
    return 0;
}

int nt_perf_build_attrs(const struct nt_perf_pmu *p, const struct nt_perf_settings *s,
                        struct nt_perf_attrs *out, char *why, size_t len)
{
    struct nt_perf_attrs a;
    memset(&a, 0, sizeof(a));
    int r = p->kind == NT_PERF_IBS ? build_ibs(p, s, &a, why, len) : build_intel(p, s, &a, why, len);
    if (r < 0)
        return r;
    *out = a;
    return 0;
}

/* ---- the watched set ------------------------------------------------------ */

#define PID_EMPTY 0
#define PID_TOMB (-1)

/* Mix all bits down (murmur3's finalizer): pids come in runs and
 * strides, and the table index takes only the low bits. */
static size_t pid_hash(pid_t pid, size_t cap)
{
    uint32_t h = (uint32_t)pid;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h & (cap - 1);
}

bool nt_pidset_contains(const struct nt_pidset *s, pid_t pid)
{
    if (!s->cap || pid <= 0)
        return false;
    for (size_t i = pid_hash(pid, s->cap), n = 0; n < s->cap; i = (i + 1) & (s->cap - 1), n++) {
        if (s->slots[i] == pid)
            return true;
        if (s->slots[i] == PID_EMPTY)
            return false;
    }
    return false;
}

static void pidset_put(pid_t *slots, size_t cap, pid_t pid)
{
    size_t i = pid_hash(pid, cap);
    while (slots[i] != PID_EMPTY && slots[i] != PID_TOMB)
        i = (i + 1) & (cap - 1);
    slots[i] = pid;
}

/* Keep at most 1/2 of the slots used or tombstoned, so probes stay short. */
static int pidset_grow(struct nt_pidset *s)
{
    size_t cap = s->cap ? s->cap : 16;
    while ((s->used + 1) * 2 > cap)
        cap *= 2;
    pid_t *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i] > 0)
            pidset_put(slots, cap, s->slots[i]);
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
    s->tombs = 0;
    return 0;
}

int nt_pidset_add(struct nt_pidset *s, pid_t pid)
{
    if (pid <= 0)
        return -EINVAL;
    if (nt_pidset_contains(s, pid))
        return 0;
    if ((s->used + s->tombs + 1) * 2 > s->cap) {
        int r = pidset_grow(s);
        if (r < 0)
            return r;
    }
    size_t i = pid_hash(pid, s->cap);
    while (s->slots[i] != PID_EMPTY && s->slots[i] != PID_TOMB)
        i = (i + 1) & (s->cap - 1);
    if (s->slots[i] == PID_TOMB)
        s->tombs--;
    s->slots[i] = pid;
    s->used++;
    return 0;
}

bool nt_pidset_remove(struct nt_pidset *s, pid_t pid)
{
    if (!s->cap || pid <= 0)
        return false;
    for (size_t i = pid_hash(pid, s->cap), n = 0; n < s->cap; i = (i + 1) & (s->cap - 1), n++) {
        if (s->slots[i] == PID_EMPTY)
            return false;
        if (s->slots[i] == pid) {
            s->slots[i] = PID_TOMB;     /* keeps later entries of the chain reachable */
            s->used--;
            s->tombs++;
            return true;
        }
    }
    return false;
}

void nt_pidset_done(struct nt_pidset *s)
{
    free(s->slots);
    *s = (struct nt_pidset){ 0 };
}

/* ---- samples to accesses -------------------------------------------------- */

bool nt_perf_sample_to_access(const struct nt_perf_sample *s, uint64_t page_size, struct nt_access *a)
{
    uint64_t page_mask = ~(page_size - 1);
    /* No address, or a kernel one (top bit set on x86-64 and arm64). */
    if (!(s->sample_type & PERF_SAMPLE_ADDR) || s->addr == 0 || (s->addr >> 63))
        return false;
    *a = (struct nt_access){
        .pid = (pid_t)s->pid,
        .tid = (pid_t)s->tid,
        .vaddr = s->addr & page_mask,
        .paddr = (s->sample_type & PERF_SAMPLE_PHYS_ADDR) ? s->phys_addr & page_mask : 0,
        .nr_pages = 1,
        /* One sample is one observation. The PMU's weight is a latency in
         * cycles, not a count: using it would let one slow load outweigh
         * hundreds of fast ones, and the source already says "remote". */
        .weight = 1,
        .cpu = (s->sample_type & PERF_SAMPLE_CPU) ? (int32_t)s->cpu : -1,
        .source = (uint8_t)((s->sample_type & PERF_SAMPLE_DATA_SRC)
                                ? nt_mem_source_from_data_src(s->data_src) : NT_MEM_SRC_UNKNOWN),
    };
    return true;
}

/* ---- CPU lists ------------------------------------------------------------ */

static int cpus_append(int **cpus, size_t *n, size_t *cap, int cpu)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        int *p = realloc(*cpus, nc * sizeof(*p));
        if (!p)
            return -ENOMEM;
        *cpus = p;
        *cap = nc;
    }
    (*cpus)[(*n)++] = cpu;
    return 0;
}

static int parse_cpu(const char **p, unsigned long *out)
{
    char *end;
    errno = 0;
    *out = strtoul(*p, &end, 10);
    if (end == *p || errno || *out > 65535)
        return -EINVAL;
    *p = end;
    return 0;
}

int nt_perf_cpulist_parse(const char *text, int **cpus, size_t *n)
{
    _cleanup_free_ int *out = NULL;
    size_t count = 0, cap = 0;
    const char *p = text;
    while (*p && *p != '\n') {
        unsigned long lo, hi;
        if (parse_cpu(&p, &lo) < 0)
            return -EINVAL;
        hi = lo;
        if (*p == '-' && (p++, parse_cpu(&p, &hi) < 0 || hi < lo))
            return -EINVAL;
        for (unsigned long c = lo; c <= hi; c++)
            if (cpus_append(&out, &count, &cap, (int)c) < 0)
                return -ENOMEM;
        if (*p == ',')
            p++;
        else if (*p && *p != '\n')
            return -EINVAL;
    }
    *cpus = NT_TAKE_PTR(out);
    *n = count;
    return 0;
}

static int read_cpulist(const char *root, const char *path, int **cpus, size_t *n)
{
    _cleanup_free_ char *s = NULL;
    int r = nt_read_file(root, path, &s);
    return r < 0 ? r : nt_perf_cpulist_parse(s, cpus, n);
}

static bool cpu_in(const int *cpus, size_t n, int cpu)
{
    for (size_t i = 0; i < n; i++)
        if (cpus[i] == cpu)
            return true;
    return false;
}

/* Online CPUs this PMU covers: a hybrid part's cpu_core PMU only its own. */
static int pmu_cpus(const char *root, const struct nt_perf_pmu *p, int **cpus, size_t *n)
{
    int r = read_cpulist(root, "/sys/devices/system/cpu/online", cpus, n);
    if (r < 0 || !p->hybrid)
        return r;
    char path[PATH_MAX];
    _cleanup_free_ int *own = NULL;
    size_t nown = 0, k = 0;
    snprintf(path, sizeof(path), PMU_DEVICES "/%s/cpus", p->dir);
    if (read_cpulist(root, path, &own, &nown) < 0)
        return 0;                       /* no cpus file: assume all */
    for (size_t i = 0; i < *n; i++)
        if (cpu_in(own, nown, (*cpus)[i]))
            (*cpus)[k++] = (*cpus)[i];
    *n = k;
    return 0;
}

/* ---- the backend's state -------------------------------------------------- */

struct perf_cpu {
    int cpu;
    int leader_fd, fd;
    void *map;
    size_t map_len;
    bool unmap;
    struct nt_perf_ring ring;
};

struct nt_perf_sampler {
    struct nt_perf_attrs attrs;
    struct perf_cpu *cpus;
    size_t nr_cpus, cap_cpus;
    struct nt_pidset watched;
    pid_t self;
    uint64_t page_size;
    double budget_pct;
    uint64_t period;
    struct nt_sampler_stats st;         /* samples, unwatched; the rest from rs */
    struct nt_perf_ring_stats rs;       /* summed over all rings */
    uint64_t no_addr;                   /* watched samples without a user address */
    bool period_failed;                 /* warned once about IOC_PERIOD */
    /* the current tuning window */
    bool window_open;
    uint64_t win_start_usec, win_start_cpu, win_seen, win_overflows_at_start;
    /* during one drain */
    nt_access_fn fn;
    void *userdata;
    uint64_t seen, delivered;
};

int nt_perf_sampler_new(const struct nt_perf_attrs *attrs, double budget_pct, pid_t self,
                        struct nt_perf_sampler **out)
{
    struct nt_perf_sampler *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    long page = sysconf(_SC_PAGESIZE);
    s->attrs = *attrs;
    s->self = self;
    s->page_size = page > 0 ? (uint64_t)page : 4096;
    s->budget_pct = budget_pct;
    s->period = attrs->sample.sample_period;
    *out = s;
    return 0;
}

int nt_perf_sampler_add_ring(struct nt_perf_sampler *s, int cpu, int leader_fd, int fd, void *map,
                             size_t map_len, bool unmap)
{
    if (s->nr_cpus == s->cap_cpus) {
        size_t nc = s->cap_cpus ? s->cap_cpus * 2 : 8;
        struct perf_cpu *p = realloc(s->cpus, nc * sizeof(*p));
        if (!p)
            return -ENOMEM;
        s->cpus = p;
        s->cap_cpus = nc;
    }
    struct perf_cpu *c = &s->cpus[s->nr_cpus];
    *c = (struct perf_cpu){ .cpu = cpu, .leader_fd = leader_fd, .fd = fd, .map = map,
                            .map_len = map_len, .unmap = unmap };
    int r = nt_perf_ring_init(&c->ring, map, map_len, s->attrs.sample.sample_type);
    if (r < 0)
        return r;
    s->nr_cpus++;
    return 0;
}

static void perf_close(void *state)
{
    struct nt_perf_sampler *s = state;
    if (!s)
        return;
    if (s->no_addr)
        log_debug("perf: %" PRIu64 " watched samples had no user-space address", s->no_addr);
    for (size_t i = 0; i < s->nr_cpus; i++) {
        struct perf_cpu *c = &s->cpus[i];
        if (c->unmap && c->map)
            munmap(c->map, c->map_len);
        if (c->fd >= 0)
            close(c->fd);               /* the member before its leader */
        if (c->leader_fd >= 0)
            close(c->leader_fd);
    }
    free(s->cpus);
    nt_pidset_done(&s->watched);
    free(s);
}

static void perf_closep(struct nt_perf_sampler **s)
{
    perf_close(*s);
}

/* ---- opening events ------------------------------------------------------- */

static int event_open(struct perf_event_attr *attr, int cpu, int group_fd)
{
    int fd = (int)syscall(SYS_perf_event_open, attr, -1, cpu, group_fd, PERF_FLAG_FD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static const char *open_hint(int err)
{
    switch (err) {
    case -EOPNOTSUPP: return " (precise sampling not available: PEBS/IBS not exposed to this VM?)";
    case -ENODATA:    return " (the load-latency event needs its mem-loads-aux leader)";
    case -ENOENT:     return " (no such PMU or event in this kernel)";
    case -EACCES:
    case -EPERM:      return " (not permitted)";
    default:          return "";
    }
}

static int group_open(struct nt_perf_attrs *a, int cpu, int *leader_fd, int *fd)
{
    _cleanup_close_ int lfd = -1;
    if (a->has_leader) {
        lfd = event_open(&a->leader, cpu, -1);
        if (lfd < 0)
            return lfd;
    }
    int r = event_open(&a->sample, cpu, lfd);
    if (r < 0)
        return r;
    *fd = r;
    *leader_fd = NT_TAKE_FD(lfd);
    return 0;
}

/* "perf_event_open(EVENT) on cpu N: error (hint)", naming the leader when
 * it was the one refused. */
static void open_failed(const struct nt_perf_attrs *a, int cpu, int err, char *why, size_t len)
{
    set_why(why, len, "perf_event_open(%s%s) on cpu %d: %s%s", a->has_leader ? "mem-loads-aux + " : "",
            a->event, cpu, strerror(-err), open_hint(err));
}

/* What a kernel or VM may refuse, and what we can live without. One step
 * per call, in order; false when nothing is left to give up. */
static bool relax(struct perf_event_attr *e, int err)
{
    if ((e->sample_type & PERF_SAMPLE_PHYS_ADDR) && (err == -EACCES || err == -EPERM)) {
        e->sample_type &= ~(uint64_t)PERF_SAMPLE_PHYS_ADDR;    /* lockdown, LSM */
        return true;
    }
    if ((e->sample_type & PERF_SAMPLE_WEIGHT_STRUCT) && err == -EINVAL) {
        e->sample_type = (e->sample_type & ~(uint64_t)PERF_SAMPLE_WEIGHT_STRUCT) | PERF_SAMPLE_WEIGHT;
        return true;                                            /* before 5.12 */
    }
    if (e->precise_ip > 1 && (err == -EINVAL || err == -EOPNOTSUPP)) {
        e->precise_ip--;
        return true;
    }
    return false;
}

/* Open the group on one CPU, relaxing attrs until the kernel takes them. */
static int group_open_relaxed(struct nt_perf_attrs *a, int cpu, int *leader_fd, int *fd)
{
    for (;;) {
        int r = group_open(a, cpu, leader_fd, fd);
        if (r >= 0 || !relax(&a->sample, r))
            return r;
        log_debug("perf: cpu %d refused %s (%s), retrying with sample_type %#" PRIx64 " precise %u",
                  cpu, a->event, strerror(-r), (uint64_t)a->sample.sample_type,
                  (unsigned)a->sample.precise_ip);
    }
}

static int ring_map(int fd, uint64_t page_size, void **map, size_t *len)
{
    /* Fall back to smaller rings when the mlock limit says no. */
    for (size_t pages = RING_DATA_PAGES; pages >= 1; pages /= 4) {
        size_t l = (1 + pages) * (size_t)page_size;
        void *m = mmap(NULL, l, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) {
            *map = m;
            *len = l;
            return 0;
        }
        if (errno != EPERM && errno != ENOMEM)
            return -errno;
    }
    return -ENOMEM;
}

/* One CPU: open (the first CPU may relax the attrs for all), map, attach.
 * 0 on success, 1 when the CPU went away (skipped), negative on error. */
static int open_cpu(struct nt_perf_sampler *s, int cpu, char *why, size_t len)
{
    _cleanup_close_ int lfd = -1, fd = -1;
    int r = s->nr_cpus == 0 ? group_open_relaxed(&s->attrs, cpu, &lfd, &fd)
                            : group_open(&s->attrs, cpu, &lfd, &fd);
    if (r == -ENODEV || r == -ENXIO) {
        log_warning("perf: cpu %d is not online any more, not sampling it", cpu);
        return 1;
    }
    if (r < 0) {
        open_failed(&s->attrs, cpu, r, why, len);
        return r;
    }
    void *map = NULL;
    size_t map_len = 0;
    r = ring_map(fd, s->page_size, &map, &map_len);
    if (r < 0) {
        set_why(why, len, "mmap of the perf ring buffer on cpu %d: %s", cpu, strerror(-r));
        return r;
    }
    r = nt_perf_sampler_add_ring(s, cpu, lfd, fd, map, map_len, true);
    if (r < 0) {
        munmap(map, map_len);
        set_why(why, len, "perf ring buffer on cpu %d: %s", cpu, strerror(-r));
        return r;
    }
    lfd = fd = -1;                      /* the sampler owns them now */
    return 0;
}

static int open_all(struct nt_perf_sampler *s, const int *cpus, size_t n, char *why, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        int r = open_cpu(s, cpus[i], why, len);
        if (r < 0)
            return r;
    }
    if (s->nr_cpus == 0) {
        set_why(why, len, "perf: no online CPU could be sampled");
        return -ENODEV;
    }
    s->period = s->attrs.sample.sample_period;
    return 0;
}

int nt_perf_sampler_open(const struct nt_perf_attrs *attrs, const int *cpus, size_t n, double budget_pct,
                         pid_t self, struct nt_perf_sampler **out, char *why, size_t len)
{
    _cleanup_(perf_closep) struct nt_perf_sampler *s = NULL;
    int r = nt_perf_sampler_new(attrs, budget_pct, self, &s);
    if (r < 0)
        return r;
    r = open_all(s, cpus, n, why, len);
    if (r < 0)
        return r;
    *out = NT_TAKE_PTR(s);
    return 0;
}

/* Detect, check privileges and build attrs: what probe and open share. */
static int prepare(const struct nt_sampler_env *env, struct nt_perf_pmu *pmu, struct nt_perf_attrs *a,
                   struct nt_perf_settings *set, char *why, size_t len)
{
    struct nt_perf_privs privs = { 0 };
    int r = nt_perf_privs_self(&privs);
    if (r < 0) {
        set_why(why, len, "cannot read own capabilities: %s", strerror(-r));
        return r;
    }
    nt_perf_settings_from_config(env->config, set);
    r = nt_perf_detect(env->root, &privs, pmu, why, len);
    return r < 0 ? r : nt_perf_build_attrs(pmu, set, a, why, len);
}

static bool real_root(const char *root)
{
    return !root || !*root || strcmp(root, "/") == 0;
}

/* On the real machine, sysfs can promise what the kernel or hypervisor
 * then refuses (a VM with a vPMU but no PEBS): try one CPU. */
static int probe_open(const char *root, const struct nt_perf_pmu *pmu, struct nt_perf_attrs *a,
                      char *why, size_t len)
{
    _cleanup_free_ int *cpus = NULL;
    size_t n = 0;
    int r = pmu_cpus(root, pmu, &cpus, &n);
    if (r < 0 || n == 0) {
        set_why(why, len, "cannot read the online CPUs: %s", r < 0 ? strerror(-r) : "none");
        return r < 0 ? r : -ENODEV;
    }
    _cleanup_close_ int lfd = -1, fd = -1;
    r = group_open_relaxed(a, cpus[0], &lfd, &fd);
    if (r < 0)
        open_failed(a, cpus[0], r, why, len);
    return r < 0 ? r : 0;
}

/* ---- the ops -------------------------------------------------------------- */

static int perf_probe(const struct nt_sampler_env *env, char *why, size_t len)
{
    struct nt_perf_pmu pmu;
    struct nt_perf_attrs a;
    struct nt_perf_settings set;
    int r = prepare(env, &pmu, &a, &set, why, len);
    if (r < 0)
        return r;
    return real_root(env->root) ? probe_open(env->root, &pmu, &a, why, len) : 0;
}

static int perf_open(const struct nt_sampler_env *env, void **state, char *why, size_t len)
{
    struct nt_perf_pmu pmu;
    struct nt_perf_attrs a;
    struct nt_perf_settings set;
    int r = prepare(env, &pmu, &a, &set, why, len);
    if (r < 0)
        return r;
    _cleanup_free_ int *cpus = NULL;
    size_t n = 0;
    r = pmu_cpus(env->root, &pmu, &cpus, &n);
    if (r < 0) {
        set_why(why, len, "cannot read the online CPUs: %s", strerror(-r));
        return r;
    }
    struct nt_perf_sampler *s = NULL;
    r = nt_perf_sampler_open(&a, cpus, n, set.budget_pct, env->self, &s, why, len);
    if (r < 0)
        return r;
    log_info("perf: sampling %s on %zu CPUs, period %" PRIu64 "%s%s", s->attrs.event, s->nr_cpus,
             s->period, s->attrs.has_leader ? ", led by mem-loads-aux" : "",
             (s->attrs.sample.sample_type & PERF_SAMPLE_PHYS_ADDR) ? ", with physical addresses" : "");
    *state = s;
    return 0;
}

static int perf_watch(void *state, pid_t pid)
{
    struct nt_perf_sampler *s = state;
    if (pid == s->self)
        return 0;                       /* never sampled */
    return nt_pidset_add(&s->watched, pid);
}

static int perf_unwatch(void *state, pid_t pid)
{
    struct nt_perf_sampler *s = state;
    nt_pidset_remove(&s->watched, pid);
    return 0;
}

static void on_sample(const struct nt_perf_sample *smp, void *userdata)
{
    struct nt_perf_sampler *s = userdata;
    struct nt_access a;
    pid_t pid = (pid_t)smp->pid;
    s->seen++;
    if (pid <= 0 || pid == s->self || !nt_pidset_contains(&s->watched, pid)) {
        s->st.unwatched++;
        return;
    }
    if (!nt_perf_sample_to_access(smp, s->page_size, &a)) {
        s->no_addr++;
        return;
    }
    s->delivered++;
    if (s->fn)
        s->fn(&a, s->userdata);
}

static void apply_period(struct nt_perf_sampler *s, uint64_t period)
{
    for (size_t i = 0; i < s->nr_cpus; i++) {
        if (s->cpus[i].fd < 0 || ioctl(s->cpus[i].fd, PERF_EVENT_IOC_PERIOD, &period) >= 0)
            continue;
        if (!s->period_failed)
            log_warning("perf: cannot set the sample period to %" PRIu64 " on cpu %d: %m",
                        period, s->cpus[i].cpu);
        s->period_failed = true;
    }
    log_debug("perf: sample period %" PRIu64 " -> %" PRIu64, s->period, period);
    s->period = period;
}

static uint64_t overflows(const struct nt_perf_sampler *s)
{
    return s->rs.throttled + s->rs.lost + s->rs.lost_samples;
}

/* Once per window, move the period toward the CPU budget. */
static void tune(struct nt_perf_sampler *s, uint64_t now_usec, uint64_t own_cpu_usec)
{
    if (!s->window_open || now_usec < s->win_start_usec || own_cpu_usec < s->win_start_cpu) {
        s->window_open = true;          /* first drain, or a clock went backwards */
        goto restart;
    }
    s->win_seen += s->seen;
    if (now_usec - s->win_start_usec < NT_PERF_TUNE_WINDOW_USEC)
        return;
    struct nt_period_window w = {
        .cpu_usec = own_cpu_usec - s->win_start_cpu,
        .wall_usec = now_usec - s->win_start_usec,
        .samples = s->win_seen,
        .overflows = overflows(s) - s->win_overflows_at_start,
    };
    uint64_t next = nt_period_next(s->period, &w, s->budget_pct, &s->attrs.limits);
    if (next != s->period)
        apply_period(s, next);
restart:
    s->win_start_usec = now_usec;
    s->win_start_cpu = own_cpu_usec;
    s->win_seen = 0;
    s->win_overflows_at_start = overflows(s);
}

static int perf_drain(void *state, uint64_t now_usec, uint64_t own_cpu_usec, nt_access_fn fn, void *userdata)
{
    struct nt_perf_sampler *s = state;
    s->fn = fn;
    s->userdata = userdata;
    s->seen = s->delivered = 0;
    for (size_t i = 0; i < s->nr_cpus; i++)
        nt_perf_ring_read(&s->cpus[i].ring, on_sample, s, &s->rs);
    s->st.samples += s->delivered;
    tune(s, now_usec, own_cpu_usec);
    s->fn = NULL;
    s->userdata = NULL;
    return s->delivered > INT_MAX ? INT_MAX : (int)s->delivered;
}

static void perf_stats(void *state, struct nt_sampler_stats *out)
{
    const struct nt_perf_sampler *s = state;
    *out = s->st;
    out->lost = s->rs.lost;
    out->lost_samples = s->rs.lost_samples;
    out->throttled = s->rs.throttled;
    out->unthrottled = s->rs.unthrottled;
    out->bad_records = s->rs.bad_records;
    out->period = s->period;
    out->targets = s->watched.used;
}

const struct nt_sampler_ops nt_sampler_perf_ops = {
    .name = "perf",
    .probe = perf_probe,
    .open = perf_open,
    .close = perf_close,
    .watch = perf_watch,
    .unwatch = perf_unwatch,
    .drain = perf_drain,
    .stats = perf_stats,
};
