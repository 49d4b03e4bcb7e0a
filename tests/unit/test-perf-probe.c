/* PMU detection, probe messages and attr building for the perf backend,
 * on the fixture trees in tests/fixtures/pmu/ (see its README) and on
 * odder trees made here in a temporary directory. Nothing here calls
 * perf_event_open except the probe of this machine's real /sys. Run from
 * the repository root, or set NT_FIXTURES to the fixtures directory. */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>
#include <linux/perf_event.h>

#include "numatier/config.h"
#include "numatier/perf.h"
#include "numatier/sampler.h"

#define DEV "/sys/bus/event_source/devices/"

static const char *fixture(const char *name)
{
    static char path[PATH_MAX];
    const char *dir = getenv("NT_FIXTURES");
    snprintf(path, sizeof(path), "%s/pmu/%s", dir ? dir : "tests/fixtures", name);
    return path;
}

static const struct nt_perf_privs no_caps = { 0 };
static const struct nt_perf_privs perfmon = { .cap_perfmon = true };

/* ---- temporary trees ------------------------------------------------------ */

static void put(const char *root, const char *path, const char *content)
{
    char full[PATH_MAX];
    snprintf(full, sizeof(full), "%s%s", root, path);
    for (char *p = full + strlen(root) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        if (mkdir(full, 0755) < 0 && errno != EEXIST)
            fail_msg("mkdir %s: %s", full, strerror(errno));
        *p = '/';
    }
    FILE *f = fopen(full, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", content);
    fclose(f);
}

static char *mktree(void)
{
    char tmpl[] = "/tmp/nt-pmu-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    put(d, "/sys/devices/system/cpu/online", "0-3");
    return strdup(d);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rmtree(char *d)
{
    nftw(d, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
}

/* ---- detection ------------------------------------------------------------ */

static int detect(const char *root, const struct nt_perf_privs *privs, struct nt_perf_pmu *p, char *why)
{
    memset(p, 0x5a, sizeof(*p));
    why[0] = '\0';
    return nt_perf_detect(root, privs, p, why, 256);
}

static void test_detect_none(void **state)
{
    (void)state;
    struct nt_perf_pmu p;
    char why[256];
    assert_int_equal(detect(fixture("none"), &perfmon, &p, why), -ENODEV);
    assert_string_equal(why, "no PMU with memory sampling (cpu PMU absent: virtual machine?)");
    assert_int_equal(detect("/nonexistent/root", &perfmon, &p, why), -ENODEV);
    assert_string_equal(why, "no PMU with memory sampling (cpu PMU absent: virtual machine?)");
}

static void test_detect_spr(void **state)
{
    (void)state;
    struct nt_perf_pmu p;
    char why[256];
    /* perf_event_paranoid=-1: no capability needed. */
    assert_int_equal(detect(fixture("intel-spr"), &no_caps, &p, why), 0);
    assert_int_equal(p.kind, NT_PERF_PEBS);
    assert_string_equal(p.dir, "cpu");
    assert_string_equal(p.name, "sapphire_rapids");
    assert_int_equal(p.type, 4);
    assert_int_equal(p.paranoid, -1);
    assert_true(p.privileged);
    assert_true(p.phys_addr);
    assert_false(p.hybrid);
    assert_true(p.needs_aux);
    assert_true(p.weight_struct);
    assert_string_equal(p.pfm_names[0], "spr");
    assert_null(p.pfm_names[1]);
    assert_int_equal(p.ldlat.field, 1);
    assert_int_equal(p.ldlat.hi[0], 15);
    assert_true(p.has_sysfs_loads);
    assert_int_equal(p.loads_config[0], 0x1cd);
    assert_int_equal(p.loads_config[1], 3);
}

static void test_detect_skl(void **state)
{
    (void)state;
    struct nt_perf_pmu p;
    char why[256];
    /* perf_event_paranoid=0 allows CPU-wide events without privilege. */
    assert_int_equal(detect(fixture("intel-skl"), &no_caps, &p, why), 0);
    assert_int_equal(p.kind, NT_PERF_PEBS);
    assert_string_equal(p.name, "skylake");
    assert_int_equal(p.paranoid, 0);
    assert_true(p.privileged);
    assert_true(p.phys_addr);
    assert_false(p.needs_aux);
    assert_false(p.weight_struct);
    assert_string_equal(p.pfm_names[0], "skx");
    assert_string_equal(p.pfm_names[1], "skl");
}

static void test_detect_amd(void **state)
{
    (void)state;
    struct nt_perf_pmu p;
    char why[256];
    assert_int_equal(detect(fixture("amd-zen4"), &no_caps, &p, why), -EACCES);
    assert_string_equal(why, "ibs_op PMU present but perf_event_paranoid=2 and no CAP_PERFMON");
    assert_int_equal(detect(fixture("amd-zen4"), &perfmon, &p, why), 0);
    assert_int_equal(p.kind, NT_PERF_IBS);
    assert_string_equal(p.dir, "ibs_op");
    assert_int_equal(p.type, 11);
    assert_true(p.zen4);
    assert_true(p.has_l3missonly);
    assert_int_equal(p.l3missonly.field, 0);
    assert_int_equal(p.l3missonly.lo[0], 16);
    assert_true(p.has_cnt_ctl);
    assert_int_equal(p.cnt_ctl.lo[0], 19);
    assert_false(p.has_swfilt);
    assert_true(p.phys_addr);
    /* CAP_SYS_ADMIN does as well as CAP_PERFMON (kernels before 5.8). */
    assert_int_equal(detect(fixture("amd-zen4"), &(struct nt_perf_privs){ .cap_sys_admin = true }, &p, why), 0);
}

static void test_detect_messages(void **state)
{
    (void)state;
    struct nt_perf_pmu p;
    char why[256];

    /* AMD with Debian's perf_event_paranoid=3. */
    char *t = mktree();
    put(t, DEV "ibs_op/type", "11");
    put(t, "/proc/sys/kernel/perf_event_paranoid", "3");
    assert_int_equal(detect(t, &no_caps, &p, why), -EACCES);
    assert_string_equal(why, "ibs_op PMU present but perf_event_paranoid=3 and no CAP_PERFMON");
    rmtree(t);

    /* An Intel PMU without load latency. */
    t = mktree();
    put(t, DEV "cpu/type", "4");
    put(t, DEV "cpu/caps/pmu_name", "xyz");
    put(t, DEV "cpu/format/event", "config:0-7");
    put(t, "/proc/sys/kernel/perf_event_paranoid", "2");
    assert_int_equal(detect(t, &perfmon, &p, why), -ENODEV);
    assert_string_equal(why, "Intel PMU \"xyz\" has no load-latency (ldlat) format");
    rmtree(t);

    /* A virtual PMU on an AMD host without IBS: a cpu PMU with nothing to offer. */
    t = mktree();
    put(t, DEV "cpu/type", "4");
    put(t, DEV "cpu/format/event", "config:0-7,32-35");
    assert_int_equal(detect(t, &perfmon, &p, why), -ENODEV);
    assert_string_equal(why, "no PMU with memory sampling (cpu PMU has no load-latency format and there "
                             "is no ibs_op PMU)");
    rmtree(t);

    /* Intel with the default paranoid level and no capability. */
    t = mktree();
    put(t, DEV "cpu/type", "4");
    put(t, DEV "cpu/caps/pmu_name", "skylake");
    put(t, DEV "cpu/format/ldlat", "config1:0-15");
    put(t, "/proc/sys/kernel/perf_event_paranoid", "2");
    assert_int_equal(detect(t, &no_caps, &p, why), -EACCES);
    assert_string_equal(why, "Intel PMU \"skylake\" present but perf_event_paranoid=2 and no CAP_PERFMON");
    /* paranoid 1 still refuses CPU-wide events... */
    put(t, "/proc/sys/kernel/perf_event_paranoid", "1");
    assert_int_equal(detect(t, &no_caps, &p, why), -EACCES);
    /* ...and with no paranoid file there is no perf at all. */
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/proc/sys/kernel/perf_event_paranoid", t);
    unlink(path);
    assert_int_equal(detect(t, &perfmon, &p, why), -ENOENT);
    assert_string_equal(why, "Intel PMU \"skylake\" present but /proc/sys/kernel/perf_event_paranoid is "
                             "unreadable: No such file or directory");
    rmtree(t);

    /* A vPMU with the host's formats but no PEBS, and one with a little. */
    t = mktree();
    put(t, DEV "cpu/type", "4");
    put(t, DEV "cpu/caps/pmu_name", "icelake");
    put(t, DEV "cpu/caps/max_precise", "0");
    put(t, DEV "cpu/format/ldlat", "config1:0-15");
    put(t, "/proc/sys/kernel/perf_event_paranoid", "-1");
    assert_int_equal(detect(t, &perfmon, &p, why), -ENODEV);
    assert_string_equal(why, "Intel PMU \"icelake\" has no precise sampling (caps/max_precise=0: PEBS not "
                             "available, virtual machine?)");
    put(t, DEV "cpu/caps/max_precise", "1");
    assert_int_equal(detect(t, &perfmon, &p, why), 0);
    assert_int_equal(p.max_precise, 1);
    struct nt_perf_attrs a;
    const struct nt_perf_settings set = { .ldlat = 30, .period = 20000 };
    assert_int_equal(nt_perf_build_attrs(&p, &set, &a, why, sizeof(why)), 0);
    assert_string_equal(a.event, "icx::MEM_TRANS_RETIRED:LOAD_LATENCY:ldlat=30");
    assert_int_equal(a.sample.precise_ip, 1);
    rmtree(t);

    /* A type file that isn't a number. */
    t = mktree();
    put(t, DEV "ibs_op/type", "eleven");
    put(t, "/proc/sys/kernel/perf_event_paranoid", "-1");
    assert_int_equal(detect(t, &perfmon, &p, why), -EINVAL);
    assert_string_equal(why, "ibs_op PMU: unreadable type: Invalid argument");
    rmtree(t);
}

static void test_detect_hybrid(void **state)
{
    (void)state;
    struct nt_perf_pmu p;
    char why[256];
    char *t = mktree();
    put(t, DEV "cpu_core/type", "4");
    put(t, DEV "cpu_core/cpus", "0-7");
    put(t, DEV "cpu_core/caps/pmu_name", "alderlake_hybrid");
    put(t, DEV "cpu_core/format/event", "config:0-7");
    put(t, DEV "cpu_core/format/umask", "config:8-15");
    put(t, DEV "cpu_core/format/ldlat", "config1:0-15");
    put(t, DEV "cpu_core/events/mem-loads", "event=0xcd,umask=0x1,ldlat=3");
    put(t, DEV "cpu_core/events/mem-loads-aux", "event=0x03,umask=0x82");
    put(t, DEV "cpu_atom/type", "10");
    put(t, DEV "cpu_atom/cpus", "8-15");
    put(t, "/proc/sys/kernel/perf_event_paranoid", "2");
    assert_int_equal(detect(t, &perfmon, &p, why), 0);
    assert_string_equal(p.dir, "cpu_core");
    assert_string_equal(p.name, "alderlake_hybrid");
    assert_true(p.hybrid);
    assert_true(p.needs_aux);               /* from events/mem-loads-aux, not a name list */
    assert_null(p.pfm_names[0]);            /* libpfm4 4.13 has no ADL: sysfs encodes it */
    rmtree(t);
}

/* ---- probe through the ops ------------------------------------------------ */

static int probe(const char *root, char *why)
{
    const struct nt_sampler_env env = { .root = root, .config = NULL, .self = getpid() };
    why[0] = '\0';
    return nt_sampler_perf_ops.probe(&env, why, 256);
}

static void test_probe_fixtures(void **state)
{
    (void)state;
    char why[256];
    struct nt_perf_privs me;
    assert_int_equal(nt_perf_privs_self(&me), 0);

    assert_int_equal(probe(fixture("none"), why), -ENODEV);
    assert_string_equal(why, "no PMU with memory sampling (cpu PMU absent: virtual machine?)");
    assert_int_equal(probe(fixture("intel-spr"), why), 0);
    assert_int_equal(probe(fixture("intel-skl"), why), 0);
    if (me.cap_perfmon || me.cap_sys_admin) {
        assert_int_equal(probe(fixture("amd-zen4"), why), 0);
    } else {
        assert_int_equal(probe(fixture("amd-zen4"), why), -EACCES);
        assert_string_equal(why, "ibs_op PMU present but perf_event_paranoid=2 and no CAP_PERFMON");
    }
    assert_string_equal(nt_sampler_perf_ops.name, "perf");
}

static bool have(const char *path)
{
    return access(path, F_OK) == 0;
}

/* This machine: on the development VMs there is no hardware PMU at all,
 * and the probe must say so rather than fail obscurely. */
static void test_probe_this_machine(void **state)
{
    (void)state;
    char why[256];
    int r = probe("/", why);
    print_message("perf probe on this machine: %d %s\n", r, r < 0 ? why : "(ok)");
    if (!have(DEV "cpu") && !have(DEV "cpu_core") && !have(DEV "ibs_op")) {
        assert_int_equal(r, -ENODEV);
        assert_string_equal(why, "no PMU with memory sampling (cpu PMU absent: virtual machine?)");
    } else if (r < 0) {
        assert_true(strlen(why) > 0);       /* a real PMU that refused: it must say why */
    }
}

/* open() on a fixture tree: the CPUs it lists are this machine's, so on
 * the PMU-less test VMs perf_event_open refuses; the error path must say
 * so and release everything (ASan checks). Where the PMU is real, it may
 * open: then drain and close it. */
static void test_open_fixture(void **state)
{
    (void)state;
    const struct nt_sampler_ops *ops = &nt_sampler_perf_ops;
    const char *trees[] = { "intel-spr", "intel-skl", "amd-zen4" };
    for (size_t i = 0; i < sizeof(trees) / sizeof(trees[0]); i++) {
        const struct nt_sampler_env env = { .root = fixture(trees[i]), .self = getpid() };
        char why[256] = "";
        void *st = NULL;
        int r = ops->open(&env, &st, why, sizeof(why));
        print_message("open on %s: %d %s\n", trees[i], r, r < 0 ? why : "(ok)");
        if (r < 0) {
            assert_null(st);
            assert_true(strlen(why) > 0);
            continue;
        }
        assert_int_equal(ops->watch(st, getpid()), 0);
        assert_true(ops->drain(st, 1, 1, NULL, NULL) >= 0);
        ops->close(st);
    }
}

/* ---- building attrs ------------------------------------------------------- */

static int build(const char *root, const struct nt_perf_privs *privs, const struct nt_perf_settings *set,
                 struct nt_perf_attrs *a, char *why)
{
    struct nt_perf_pmu p;
    int r = detect(root, privs, &p, why);
    if (r < 0)
        return r;
    memset(a, 0x5a, sizeof(*a));
    return nt_perf_build_attrs(&p, set, a, why, 256);
}

static const uint64_t common_type = PERF_SAMPLE_IDENTIFIER | PERF_SAMPLE_TID | PERF_SAMPLE_TIME |
                                    PERF_SAMPLE_ADDR | PERF_SAMPLE_CPU | PERF_SAMPLE_DATA_SRC;

static void test_settings(void **state)
{
    (void)state;
    struct nt_perf_settings s;
    nt_perf_settings_from_config(NULL, &s);
    assert_null(s.event);
    assert_int_equal(s.ldlat, 30);
    assert_int_equal(s.period, 20000);
    assert_true(s.budget_pct == 1.0);
    struct nt_config c;
    memset(&c, 0, sizeof(c));
    c.perf_event = (char *)"MEM_LOAD_RETIRED:L3_MISS";
    c.perf_ldlat = 64;
    c.perf_period = 5000;
    c.cpu_budget_pct = 2.5;
    nt_perf_settings_from_config(&c, &s);
    assert_string_equal(s.event, "MEM_LOAD_RETIRED:L3_MISS");
    assert_int_equal(s.ldlat, 64);
    assert_int_equal(s.period, 5000);
    assert_true(s.budget_pct == 2.5);
}

static void test_attrs_spr(void **state)
{
    (void)state;
    struct nt_perf_attrs a;
    char why[256];
    const struct nt_perf_settings set = { .ldlat = 30, .period = 20000, .budget_pct = 1 };
    assert_int_equal(build(fixture("intel-spr"), &perfmon, &set, &a, why), 0);
    assert_string_equal(a.event, "spr::MEM_TRANS_RETIRED:LOAD_LATENCY:ldlat=30");
    /* The group leader: MEM_LOADS_AUX, counting only. */
    assert_true(a.has_leader);
    assert_int_equal(a.leader.type, 4);
    assert_int_equal(a.leader.config, 0x8203);
    assert_int_equal(a.leader.sample_period, 0);
    assert_int_equal(a.leader.sample_type, 0);
    assert_int_equal(a.leader.size, sizeof(struct perf_event_attr));
    assert_int_equal(a.leader.precise_ip, 0);
    assert_int_equal(a.leader.exclude_kernel, 1);
    /* The sampling member: load latency over 30 cycles, precise. */
    assert_int_equal(a.sample.type, 4);
    assert_int_equal(a.sample.config, 0x1cd);
    assert_int_equal(a.sample.config1, 30);
    assert_int_equal(a.sample.precise_ip, 2);
    assert_int_equal(a.sample.sample_period, 20000);
    assert_int_equal(a.sample.freq, 0);
    assert_int_equal(a.sample.sample_type,
                     common_type | PERF_SAMPLE_WEIGHT_STRUCT | PERF_SAMPLE_PHYS_ADDR);
    assert_int_equal(a.sample.sample_id_all, 1);
    assert_int_equal(a.sample.exclude_kernel, 1);
    assert_int_equal(a.sample.exclude_hv, 1);
    assert_int_equal(a.sample.exclude_guest, 1);
    assert_int_equal(a.sample.disabled, 0);
    assert_int_equal(a.sample.size, sizeof(struct perf_event_attr));
    assert_int_equal(a.limits.align, 1);
    assert_int_equal(nt_perf_sample_size(a.sample.sample_type), 8 * 8);
}

static void test_attrs_skl(void **state)
{
    (void)state;
    struct nt_perf_attrs a;
    char why[256];
    struct nt_perf_settings set = { .ldlat = 64, .period = 50000, .budget_pct = 1 };
    assert_int_equal(build(fixture("intel-skl"), &no_caps, &set, &a, why), 0);
    assert_string_equal(a.event, "skx::MEM_TRANS_RETIRED:LOAD_LATENCY:ldlat=64");
    assert_false(a.has_leader);
    assert_int_equal(a.sample.type, 4);
    assert_int_equal(a.sample.config, 0x1cd);
    assert_int_equal(a.sample.config1, 64);
    assert_int_equal(a.sample.precise_ip, 2);
    assert_int_equal(a.sample.sample_period, 50000);
    assert_int_equal(a.sample.sample_type, common_type | PERF_SAMPLE_WEIGHT | PERF_SAMPLE_PHYS_ADDR);

    /* Without the right to physical addresses, don't ask for them. */
    struct nt_perf_pmu p;
    assert_int_equal(detect(fixture("intel-skl"), &no_caps, &p, why), 0);
    p.phys_addr = false;
    assert_int_equal(nt_perf_build_attrs(&p, &set, &a, why, sizeof(why)), 0);
    assert_int_equal(a.sample.sample_type, common_type | PERF_SAMPLE_WEIGHT);

    /* A very short period the user asked for is kept; a zero one clamps to 1. */
    set.period = 100;
    assert_int_equal(build(fixture("intel-skl"), &no_caps, &set, &a, why), 0);
    assert_int_equal(a.sample.sample_period, 100);
    set.period = 5000000000;
    assert_int_equal(build(fixture("intel-skl"), &no_caps, &set, &a, why), 0);
    assert_int_equal(a.sample.sample_period, 1000000000);
}

static void test_attrs_intel_override(void **state)
{
    (void)state;
    struct nt_perf_attrs a;
    char why[256];
    struct nt_perf_settings set = { .event = "MEM_LOAD_RETIRED:L3_MISS", .ldlat = 30, .period = 20000 };
    assert_int_equal(build(fixture("intel-skl"), &no_caps, &set, &a, why), 0);
    assert_string_equal(a.event, "skx::MEM_LOAD_RETIRED:L3_MISS");
    assert_int_equal(a.sample.config, 0x20d1);
    assert_int_equal(a.sample.precise_ip, 2);          /* no address without PEBS */
    assert_int_equal(a.sample.sample_period, 20000);
    /* A qualified name is taken as given. */
    set.event = "skl::MEM_TRANS_RETIRED:LOAD_LATENCY:ldlat=100:period=7";
    assert_int_equal(build(fixture("intel-skl"), &no_caps, &set, &a, why), 0);
    assert_string_equal(a.event, "skl::MEM_TRANS_RETIRED:LOAD_LATENCY:ldlat=100:period=7");
    assert_int_equal(a.sample.config1, 100);
    assert_int_equal(a.sample.sample_period, 20000);   /* the period is ours to tune */
    assert_int_equal(a.sample.freq, 0);
    /* Nonsense is refused with libpfm4's reason. */
    set.event = "NO_SUCH_EVENT";
    assert_int_equal(build(fixture("intel-skl"), &no_caps, &set, &a, why), -EINVAL);
    assert_string_equal(why, "[sampler] perf_event \"NO_SUCH_EVENT\": libpfm4 cannot encode it for Intel "
                             "PMU \"skylake\": event not found");
}

/* A model libpfm4 does not know: the kernel's events/mem-loads encodes it. */
static void test_attrs_sysfs_fallback(void **state)
{
    (void)state;
    struct nt_perf_attrs a;
    char why[256];
    const struct nt_perf_settings set = { .ldlat = 50, .period = 20000 };
    char *t = mktree();
    put(t, DEV "cpu/type", "4");
    put(t, DEV "cpu/caps/pmu_name", "sierra_forest");
    put(t, DEV "cpu/format/event", "config:0-7");
    put(t, DEV "cpu/format/umask", "config:8-15");
    put(t, DEV "cpu/format/ldlat", "config1:0-15");
    put(t, DEV "cpu/events/mem-loads", "event=0xd0,umask=0x5,ldlat=3");
    put(t, "/proc/sys/kernel/perf_event_paranoid", "2");
    assert_int_equal(build(t, &perfmon, &set, &a, why), 0);
    assert_string_equal(a.event, "cpu/mem-loads,ldlat=50/");
    assert_int_equal(a.sample.type, 4);
    assert_int_equal(a.sample.config, 0x5d0);
    assert_int_equal(a.sample.config1, 50);
    assert_int_equal(a.sample.precise_ip, 2);
    assert_int_equal(a.sample.exclude_kernel, 1);
    assert_true(a.has_leader);                          /* sierra_forest is on the aux list */

    /* Neither libpfm4 nor sysfs can encode it. */
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s" DEV "cpu/events/mem-loads", t);
    unlink(path);
    assert_int_equal(build(t, &perfmon, &set, &a, why), -EOPNOTSUPP);
    assert_string_equal(why, "Intel PMU \"sierra_forest\": libpfm4 cannot encode "
                             "MEM_TRANS_RETIRED:LOAD_LATENCY:ldlat=50 (event not found) and the PMU has no "
                             "events/mem-loads");
    rmtree(t);
}

static void test_attrs_amd(void **state)
{
    (void)state;
    struct nt_perf_attrs a;
    char why[256];
    struct nt_perf_settings set = { .ldlat = 30, .period = 20001 };
    assert_int_equal(build(fixture("amd-zen4"), &perfmon, &set, &a, why), 0);
    assert_string_equal(a.event, "ibs_op/l3missonly=1,cnt_ctl=1/");
    assert_false(a.has_leader);                         /* IBS cannot be grouped */
    assert_int_equal(a.sample.type, 11);
    assert_int_equal(a.sample.config, (1u << 16) | (1u << 19));
    assert_int_equal(a.sample.config1, 0);
    assert_int_equal(a.sample.sample_period, 20000);    /* a multiple of 16 */
    assert_int_equal(a.sample.precise_ip, 0);
    assert_int_equal(a.sample.exclude_kernel, 0);       /* IBS refuses it without swfilt */
    assert_int_equal(a.sample.exclude_guest, 0);
    assert_int_equal(a.sample.sample_type, common_type | PERF_SAMPLE_WEIGHT | PERF_SAMPLE_PHYS_ADDR);
    assert_int_equal(a.limits.align, 16);
    set.period = 10;
    assert_int_equal(build(fixture("amd-zen4"), &perfmon, &set, &a, why), 0);
    assert_int_equal(a.sample.sample_period, 256);
    set.period = 100000000;
    assert_int_equal(build(fixture("amd-zen4"), &perfmon, &set, &a, why), 0);
    assert_int_equal(a.sample.sample_period, 0xFFFF0);

    set.event = "RETIRED_OPS";
    assert_int_equal(build(fixture("amd-zen4"), &perfmon, &set, &a, why), -EINVAL);
    assert_string_equal(why, "[sampler] perf_event \"RETIRED_OPS\" cannot be used with AMD IBS: libpfm4 "
                             "does not encode ibs_op; leave perf_event empty");
}

/* The l3missonly bit comes from the format file, wherever it says. */
static void test_attrs_amd_formats(void **state)
{
    (void)state;
    struct nt_perf_attrs a;
    char why[256];
    const struct nt_perf_settings set = { .period = 4096 };
    char *t = mktree();
    put(t, DEV "ibs_op/type", "12");
    put(t, DEV "ibs_op/format/l3missonly", "config:21");
    put(t, DEV "ibs_op/format/swfilt", "config2:0");
    put(t, "/proc/sys/kernel/perf_event_paranoid", "-1");
    assert_int_equal(build(t, &no_caps, &set, &a, why), 0);
    assert_string_equal(a.event, "ibs_op/l3missonly=1,swfilt=1/");
    assert_int_equal(a.sample.type, 12);
    assert_int_equal(a.sample.config, 1u << 21);
    assert_int_equal(a.sample.config2, 1);
    assert_int_equal(a.sample.exclude_kernel, 1);       /* software filter on */
    assert_int_equal(a.sample.sample_period, 4096);
    rmtree(t);

    /* Zen 3: no l3missonly, no cnt_ctl. */
    t = mktree();
    put(t, DEV "ibs_op/type", "9");
    put(t, "/proc/sys/kernel/perf_event_paranoid", "-1");
    assert_int_equal(build(t, &no_caps, &set, &a, why), 0);
    assert_string_equal(a.event, "ibs_op//");
    assert_int_equal(a.sample.config, 0);
    rmtree(t);
}

/* ---- small parsers -------------------------------------------------------- */

static void test_format_parse(void **state)
{
    (void)state;
    struct nt_perf_format f;
    assert_int_equal(nt_perf_format_parse("config:16", &f), 0);
    assert_int_equal(f.field, 0);
    assert_int_equal(f.nr, 1);
    assert_int_equal(f.lo[0], 16);
    assert_int_equal(f.hi[0], 16);
    assert_int_equal(nt_perf_format_parse("config1:0-15\n", &f), 0);
    assert_int_equal(f.field, 1);
    assert_int_equal(f.hi[0], 15);
    assert_int_equal(nt_perf_format_parse("config:0-7,32-35", &f), 0);
    assert_int_equal(f.nr, 2);

    /* AMD's split event field: 0x1cd -> 0xcd in bits 0-7, 0x1 in 32-35. */
    struct perf_event_attr attr = { .config = UINT64_MAX };
    nt_perf_format_apply(&f, 0x1cd, &attr);
    assert_int_equal(attr.config, (UINT64_MAX & ~UINT64_C(0xf000000ff)) | UINT64_C(0x1000000cd));
    assert_int_equal(nt_perf_format_parse("config2:0-63", &f), 0);
    memset(&attr, 0, sizeof(attr));
    nt_perf_format_apply(&f, 0x123456789abcdef0, &attr);
    assert_int_equal(attr.config2, 0x123456789abcdef0);

    static const char *const bad[] = {
        "config", "config:", "config:64", "config:5-3", "config:1,", "config:1-", "config:a",
        "config:1;2", "config:0,1,2,3,4", "cfg:1", "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (nt_perf_format_parse(bad[i], &f) >= 0)
            fail_msg("\"%s\" parsed", bad[i]);
    assert_int_equal(nt_perf_format_parse("config3:0", &f), -EOPNOTSUPP);
}

static void test_cpulist(void **state)
{
    (void)state;
    int *cpus = NULL;
    size_t n = 0;
    assert_int_equal(nt_perf_cpulist_parse("0-3,8-11\n", &cpus, &n), 0);
    assert_int_equal(n, 8);
    assert_int_equal(cpus[3], 3);
    assert_int_equal(cpus[4], 8);
    free(cpus);
    assert_int_equal(nt_perf_cpulist_parse("5", &cpus, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(cpus[0], 5);
    free(cpus);
    cpus = NULL;
    assert_int_equal(nt_perf_cpulist_parse("", &cpus, &n), 0);
    assert_int_equal(n, 0);
    free(cpus);
    static const char *const bad[] = { "0-", "3-1", "a", "1,,2", "-1", "0-70000" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cpus = NULL;
        if (nt_perf_cpulist_parse(bad[i], &cpus, &n) >= 0)
            fail_msg("\"%s\" parsed", bad[i]);
        assert_null(cpus);
    }
}

static void test_privs_self(void **state)
{
    (void)state;
    struct nt_perf_privs p = { .cap_perfmon = true, .cap_sys_admin = true };
    assert_int_equal(nt_perf_privs_self(&p), 0);
    if (geteuid() != 0)
        assert_false(p.cap_sys_admin);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect_none),
        cmocka_unit_test(test_detect_spr),
        cmocka_unit_test(test_detect_skl),
        cmocka_unit_test(test_detect_amd),
        cmocka_unit_test(test_detect_messages),
        cmocka_unit_test(test_detect_hybrid),
        cmocka_unit_test(test_probe_fixtures),
        cmocka_unit_test(test_probe_this_machine),
        cmocka_unit_test(test_open_fixture),
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_attrs_spr),
        cmocka_unit_test(test_attrs_skl),
        cmocka_unit_test(test_attrs_intel_override),
        cmocka_unit_test(test_attrs_sysfs_fallback),
        cmocka_unit_test(test_attrs_amd),
        cmocka_unit_test(test_attrs_amd_formats),
        cmocka_unit_test(test_format_parse),
        cmocka_unit_test(test_cpulist),
        cmocka_unit_test(test_privs_self),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
