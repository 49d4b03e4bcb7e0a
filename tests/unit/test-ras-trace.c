/* daemon/ras-trace.c without a kernel: format files and header_page as the
 * Debian 6.12 guest kernel wrote them (tests/fixtures/tracefs/6.12), ring-
 * buffer pages synthesized from those layouts, one page captured from the
 * guest's trace_pipe_raw with a real injected MCE, and the instance setup
 * on a temporary copy of the fixture tree. Run from the repository root,
 * or set NT_FIXTURES. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include "numatier/ras-trace.h"
#include "numatier/util.h"

#define KROOT "/sys/kernel/tracing"
#define INST KROOT "/instances/numatier"
#define PAGE 4096
#define DATA 16

static const char *fixtures(void)
{
    const char *d = getenv("NT_FIXTURES");
    return d ? d : "tests/fixtures";
}

static char *fixture_text(const char *rel)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/tracefs/6.12%s", fixtures(), rel);
    char *text = NULL;
    assert_int_equal(nt_read_file(NULL, path, &text), 0);
    return text;
}

static void parse_fixture(const char *ev, struct nt_trace_format *f)
{
    char rel[256], sys[32];
    snprintf(rel, sizeof(rel), KROOT "/events/%s/format", ev);
    snprintf(sys, sizeof(sys), "%.*s", (int)(strchr(ev, '/') - ev), ev);
    _cleanup_free_ char *text = fixture_text(rel);
    assert_int_equal(nt_trace_format_parse(sys, text, f), 0);
}

static void check_field(const struct nt_trace_format *f, const char *name, unsigned off, unsigned size,
                        bool sgn, enum nt_trace_field_kind kind)
{
    const struct nt_trace_field *x = nt_trace_format_field(f, name);
    assert_non_null(x);
    assert_int_equal(x->offset, off);
    assert_int_equal(x->size, size);
    assert_int_equal(x->is_signed, sgn);
    assert_int_equal(x->kind, kind);
}

/* ---- format files ---------------------------------------------------------------- */

static void test_format_mce_record(void **state)
{
    (void)state;
    struct nt_trace_format f;
    parse_fixture("mce/mce_record", &f);
    assert_string_equal(f.system, "mce");
    assert_string_equal(f.name, "mce_record");
    assert_int_equal(f.id, 113);
    assert_int_equal(f.n_fields, 23);
    assert_string_equal(f.fields[0].name, "common_type");
    assert_string_equal(f.fields[0].type, "unsigned short");
    check_field(&f, "common_pid", 4, 4, true, NT_TRACE_FIELD_SCALAR);
    check_field(&f, "status", 24, 8, false, NT_TRACE_FIELD_SCALAR);
    check_field(&f, "addr", 32, 8, false, NT_TRACE_FIELD_SCALAR);
    check_field(&f, "misc", 40, 8, false, NT_TRACE_FIELD_SCALAR);
    check_field(&f, "socketid", 108, 4, false, NT_TRACE_FIELD_SCALAR);
    check_field(&f, "bank", 113, 1, false, NT_TRACE_FIELD_SCALAR);
    check_field(&f, "microcode", 116, 4, false, NT_TRACE_FIELD_SCALAR);
    assert_int_equal(f.min_size, 120);
    assert_null(nt_trace_format_field(&f, "no_such"));
    nt_trace_format_done(&f);
    nt_trace_format_done(&f);                  /* idempotent */
}

static void test_format_data_loc_and_arrays(void **state)
{
    (void)state;
    struct nt_trace_format f;
    parse_fixture("ras/mc_event", &f);
    assert_int_equal(f.id, 1351);
    check_field(&f, "error_type", 8, 4, false, NT_TRACE_FIELD_SCALAR);
    check_field(&f, "msg", 12, 4, false, NT_TRACE_FIELD_DATA_LOC);
    assert_string_equal(nt_trace_format_field(&f, "msg")->type, "__data_loc char[]");
    check_field(&f, "label", 16, 4, false, NT_TRACE_FIELD_DATA_LOC);
    check_field(&f, "top_layer", 23, 1, true, NT_TRACE_FIELD_SCALAR);
    check_field(&f, "address", 32, 8, true, NT_TRACE_FIELD_SCALAR);
    check_field(&f, "grain_bits", 40, 1, false, NT_TRACE_FIELD_SCALAR);
    check_field(&f, "driver_detail", 56, 4, false, NT_TRACE_FIELD_DATA_LOC);
    nt_trace_format_done(&f);

    parse_fixture("cxl/cxl_general_media", &f);
    assert_int_equal(f.id, 1297);
    check_field(&f, "memdev", 8, 4, false, NT_TRACE_FIELD_DATA_LOC);
    check_field(&f, "hdr_uuid", 20, 16, false, NT_TRACE_FIELD_BYTES);
    check_field(&f, "comp_id", 88, 16, false, NT_TRACE_FIELD_BYTES);
    assert_int_equal(nt_trace_format_field(&f, "comp_id")->elems, 16);
    assert_string_equal(nt_trace_format_field(&f, "comp_id")->type, "u8");
    check_field(&f, "hpa", 104, 8, false, NT_TRACE_FIELD_SCALAR);
    check_field(&f, "region_name", 132, 4, false, NT_TRACE_FIELD_DATA_LOC);
    nt_trace_format_done(&f);

    parse_fixture("cxl/cxl_dram", &f);
    check_field(&f, "cor_mask", 96, 32, false, NT_TRACE_FIELD_BYTES);
    check_field(&f, "row", 92, 4, false, NT_TRACE_FIELD_SCALAR);
    nt_trace_format_done(&f);
}

static void test_format_every_fixture(void **state)
{
    (void)state;
    static const char *const evs[] = {
        "mce/mce_record", "ras/mc_event", "ras/memory_failure_event", "cxl/cxl_general_media",
        "cxl/cxl_dram", "ras/aer_event", "ras/extlog_mem_event",
    };
    for (size_t i = 0; i < NT_ARRAY_SIZE(evs); i++) {
        struct nt_trace_format f;
        parse_fixture(evs[i], &f);
        assert_true(f.id > 0);
        assert_non_null(nt_trace_format_field(&f, "common_type"));
        nt_trace_format_done(&f);
    }
}

static void test_format_malformed(void **state)
{
    (void)state;
    struct nt_trace_format f;
    static const char *const bad[] = {
        "",
        "name: x\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n", /* no ID */
        "name: x\nID: 7\nformat:\n\tfield:int v;\toffset:8;\tsize:4;\n",                     /* no common_type */
        "name: x\nID: 7\nformat:\n\tfield:unsigned short common_type;\tsize:2;\n",           /* no offset */
        "name: x\nID: 7\nformat:\n\tfield:common_type;\toffset:0;\tsize:2;\n",                /* no type */
        "name: x\nID: 99999999\nformat:\n\tfield:u16 common_type;\toffset:0;\tsize:2;\n",      /* id too big */
    };
    for (size_t i = 0; i < NT_ARRAY_SIZE(bad); i++)
        assert_int_equal(nt_trace_format_parse("s", bad[i], &f), -EINVAL);
    /* Fields after "print fmt:" are not fields; a missing signed: is unsigned. */
    assert_int_equal(nt_trace_format_parse("s", "name: x\nID: 7\nformat:\n"
                                           "\tfield:u16 common_type;\toffset:0;\tsize:2;\n"
                                           "\tfield:__rel_loc char[] s;\toffset:4;\tsize:4;\n"
                                           "print fmt: \"field:int y;offset:9;size:4;\"\n", &f), 0);
    assert_int_equal(f.n_fields, 2);
    check_field(&f, "s", 4, 4, false, NT_TRACE_FIELD_REL_LOC);
    nt_trace_format_done(&f);
}

static void test_layout_from_fixture(void **state)
{
    (void)state;
    _cleanup_free_ char *hp = fixture_text(KROOT "/events/header_page");
    _cleanup_free_ char *he = fixture_text(KROOT "/events/header_event");
    struct nt_trace_page_layout l;
    assert_int_equal(nt_trace_page_layout_parse(hp, he, &l), 0);
    assert_int_equal(l.ts_offset, 0);
    assert_int_equal(l.ts_size, 8);
    assert_int_equal(l.commit_offset, 8);
    assert_int_equal(l.commit_size, 8);
    assert_int_equal(l.data_offset, 16);
    assert_int_equal(l.page_size, 4096);
    assert_int_equal(l.type_len_bits, 5);
    assert_int_equal(l.delta_bits, 27);
    assert_int_equal(l.type_padding, 29);
    assert_int_equal(l.type_extend, 30);
    assert_int_equal(l.type_stamp, 31);
    assert_int_equal(l.max_data_type_len, 28);

    struct nt_trace_page_layout d;
    assert_int_equal(nt_trace_page_layout_parse(hp, NULL, &d), 0);
    assert_memory_equal(&d, &l, sizeof(l));

    /* A 32-bit kernel's 4-byte commit and 12-byte header; a larger sub-buffer. */
    assert_int_equal(nt_trace_page_layout_parse(
        "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
        "\tfield: local_t commit;\toffset:8;\tsize:4;\tsigned:1;\n"
        "\tfield: char data;\toffset:12;\tsize:8180;\tsigned:0;\n", he, &l), 0);
    assert_int_equal(l.commit_size, 4);
    assert_int_equal(l.data_offset, 12);
    assert_int_equal(l.page_size, 8192);

    assert_int_equal(nt_trace_page_layout_parse("\tfield: u64 timestamp;\toffset:0;\tsize:8;\n", he, &l), -EINVAL);
    assert_int_equal(nt_trace_page_layout_parse(hp, "\ttype_len : 6 bits\n", &l), -EINVAL);
}

/* ---- a fixture tracefs in a temporary directory ------------------------------------- */

struct tree {
    char root[64];
    struct nt_ras_trace *t;
    unsigned bad_calls[NT_RAS_BAD_MAX];
};

static char *tpath(const struct tree *tr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *tpath(const struct tree *tr, const char *fmt, ...)
{
    static char buf[4][PATH_MAX];
    static unsigned k;
    char rel[PATH_MAX - 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof(rel), fmt, ap);
    va_end(ap);
    char *out = buf[k++ % 4];
    snprintf(out, PATH_MAX, "%s%s", tr->root, rel);
    return out;
}

static void mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    mkdir(tmp, 0755);
}

static void put_file(const char *path, const void *data, size_t n)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    mkdir_p(dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void put_str(const char *path, const char *s)
{
    put_file(path, s, strlen(s));
}

static char *get_str(const char *path)
{
    char *text = NULL;
    assert_int_equal(nt_read_file(NULL, path, &text), 0);
    return text;
}

static void expect_content(const char *path, const char *want)
{
    _cleanup_free_ char *got = get_str(path);
    assert_string_equal(got, want);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static const char *const tree_events[] = {
    "mce/mce_record", "ras/mc_event", "ras/memory_failure_event", "cxl/cxl_general_media", "cxl/cxl_dram",
};

/* What the kernel shows after `mkdir instances/numatier`, plus the top level. */
static void tree_build(struct tree *tr, const char *tracefs, bool with_cxl)
{
    _cleanup_free_ char *hp = fixture_text(KROOT "/events/header_page");
    _cleanup_free_ char *he = fixture_text(KROOT "/events/header_event");
    const char *bases[] = { "", "/instances/numatier" };
    for (size_t b = 0; b < 2; b++) {
        put_str(tpath(tr, "%s%s/events/header_page", tracefs, bases[b]), hp);
        put_str(tpath(tr, "%s%s/events/header_event", tracefs, bases[b]), he);
        for (size_t i = 0; i < NT_ARRAY_SIZE(tree_events); i++) {
            if (!with_cxl && strncmp(tree_events[i], "cxl/", 4) == 0)
                continue;
            char rel[128];
            snprintf(rel, sizeof(rel), KROOT "/events/%s/format", tree_events[i]);
            _cleanup_free_ char *fmt = fixture_text(rel);
            put_str(tpath(tr, "%s%s/events/%s/format", tracefs, bases[b], tree_events[i]), fmt);
            put_str(tpath(tr, "%s%s/events/%s/enable", tracefs, bases[b], tree_events[i]), "0\n");
        }
        put_str(tpath(tr, "%s%s/buffer_percent", tracefs, bases[b]), "50\n");
        for (unsigned c = 0; c < 2; c++)
            put_str(tpath(tr, "%s%s/per_cpu/cpu%u/trace_pipe_raw", tracefs, bases[b], c), "");
    }
    put_str(tpath(tr, "/sys/devices/system/cpu/online"), "0-1\n");
}

static void on_bad(enum nt_ras_bad kind, const char *detail, void *userdata)
{
    struct tree *tr = userdata;
    assert_non_null(detail);
    tr->bad_calls[kind]++;
}

static int tree_setup(void **state)
{
    struct tree *tr = calloc(1, sizeof(*tr));
    assert_non_null(tr);
    snprintf(tr->root, sizeof(tr->root), "/tmp/nt-rastrace-XXXXXX");
    assert_non_null(mkdtemp(tr->root));
    *state = tr;
    return 0;
}

static int tree_teardown(void **state)
{
    struct tree *tr = *state;
    nt_ras_trace_close(tr->t, false);
    nftw(tr->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(tr);
    return 0;
}

static void tree_open(struct tree *tr)
{
    tree_build(tr, KROOT, true);
    assert_int_equal(nt_ras_trace_open(tr->root, &tr->t), 0);
    nt_ras_trace_set_bad_handler(tr->t, on_bad, tr);
}

static void test_instance_setup(void **state)
{
    struct tree *tr = *state;
    tree_open(tr);
    struct nt_ras_trace *t = tr->t;
    assert_int_equal(nt_ras_trace_n_events(t), 5);
    assert_int_equal(nt_ras_trace_n_missing(t), 0);
    for (size_t i = 0; i < NT_ARRAY_SIZE(tree_events); i++) {
        const struct nt_trace_format *f = nt_ras_trace_event(t, i);
        char name[64];
        snprintf(name, sizeof(name), "%s/%s", f->system, f->name);
        assert_string_equal(name, tree_events[i]);
        expect_content(tpath(tr, INST "/events/%s/enable", tree_events[i]), "1");
        expect_content(tpath(tr, KROOT "/events/%s/enable", tree_events[i]), "0");  /* never the top level */
    }
    expect_content(tpath(tr, INST "/buffer_percent"), "0");
    expect_content(tpath(tr, KROOT "/buffer_percent"), "50");
    assert_int_equal(nt_ras_trace_layout(t)->page_size, PAGE);

    size_t n;
    const struct nt_ras_cpu_reader *rd = nt_ras_trace_readers(t, &n);
    assert_int_equal(n, 2);
    for (unsigned c = 0; c < 2; c++) {
        assert_int_equal(rd[c].cpu, c);
        assert_true(rd[c].fd >= 0);
        assert_true(fcntl(rd[c].fd, F_GETFL) & O_NONBLOCK);
        assert_true(fcntl(rd[c].fd, F_GETFD) & FD_CLOEXEC);
    }
    assert_int_equal(nt_ras_trace_read(t, 0, 0, NULL, NULL), 0);      /* empty */
    assert_int_equal(nt_ras_trace_read(t, 7, 0, NULL, NULL), -ENOENT);

    nt_ras_trace_close(t, true);   /* a plain directory with files: rmdir fails quietly */
    tr->t = NULL;
    for (size_t i = 0; i < NT_ARRAY_SIZE(tree_events); i++)
        expect_content(tpath(tr, INST "/events/%s/enable", tree_events[i]), "0");
}

static void test_instance_missing_events(void **state)
{
    struct tree *tr = *state;
    /* An older kernel under debugfs, without CXL events. */
    tree_build(tr, "/sys/kernel/debug/tracing", false);
    assert_int_equal(nt_ras_trace_open(tr->root, &tr->t), 0);
    assert_int_equal(nt_ras_trace_n_events(tr->t), 3);
    assert_int_equal(nt_ras_trace_n_missing(tr->t), 2);
    assert_string_equal(nt_ras_trace_missing(tr->t, 0), "cxl/cxl_general_media");
    assert_string_equal(nt_ras_trace_missing(tr->t, 1), "cxl/cxl_dram");
    assert_null(nt_ras_trace_missing(tr->t, 2));
    expect_content(tpath(tr, "/sys/kernel/debug/tracing/instances/numatier/events/mce/mce_record/enable"), "1");
}

static void test_instance_no_tracefs(void **state)
{
    struct tree *tr = *state;
    struct nt_ras_trace *t = NULL;
    assert_int_equal(nt_ras_trace_open(tr->root, &t), -ENOENT);
    assert_null(t);
}

static void test_instance_created(void **state)
{
    struct tree *tr = *state;
    /* No instance yet: it is made; with no format files in it, nothing is enabled. */
    mkdir_p(tpath(tr, KROOT "/instances"));
    put_str(tpath(tr, "/sys/devices/system/cpu/online"), "0\n");
    assert_int_equal(nt_ras_trace_open(tr->root, &tr->t), -ENOENT);   /* no header_page in it */
    struct stat st;
    assert_int_equal(stat(tpath(tr, INST), &st), 0);
    assert_true(S_ISDIR(st.st_mode));
}

/* Open over an existing instance whose trace_clock file reads text. */
static void open_with_clock(struct tree *tr, const char *text)
{
    tree_build(tr, KROOT, false);
    put_str(tpath(tr, INST "/trace_clock"), text);
    assert_int_equal(nt_ras_trace_open(tr->root, &tr->t), 0);
}

/* A reused instance (left by a daemon that died) keeps its clock: changing
 * it would clear the events the buffer held meanwhile. */
static void test_clock_of_reused_instance_kept(void **state)
{
    struct tree *tr = *state;
    open_with_clock(tr, "[local] global counter boot\n");
    assert_false(nt_ras_trace_boot_clock(tr->t));
    expect_content(tpath(tr, INST "/trace_clock"), "[local] global counter boot");
    struct nt_ras_record rec = { .ts = 1 };
    assert_int_equal(nt_ras_trace_record_time_usec(tr->t, &rec), 0);     /* the caller's read time */
}

static uint64_t clock_usec(clockid_t id)
{
    struct timespec ts;
    assert_int_equal(clock_gettime(id, &ts), 0);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000;
}

/* On the boot clock a record's stamp becomes the wall-clock time it was
 * made, however late it is read. */
static void test_clock_boot_times_records(void **state)
{
    struct tree *tr = *state;
    open_with_clock(tr, "local global [boot]\n");
    assert_true(nt_ras_trace_boot_clock(tr->t));
    uint64_t boot = clock_usec(CLOCK_BOOTTIME), real = clock_usec(CLOCK_REALTIME);
    struct nt_ras_record rec = { .ts = (boot - 5000000) * 1000 };          /* 5 s ago */
    uint64_t t = nt_ras_trace_record_time_usec(tr->t, &rec);
    assert_true(t >= real - 5000000 - 200000 && t <= real - 5000000 + 200000);
}

static void test_boot_to_realtime(void **state)
{
    (void)state;
    /* 3 s ago on the boot clock */
    assert_int_equal(nt_boot_ns_to_realtime_usec(5000000000u, 8000000000u, 1000000000u), 997000000u);
    /* a stamp after "now" (read racing the record): now */
    assert_int_equal(nt_boot_ns_to_realtime_usec(9000000000u, 8000000000u, 1000000000u), 1000000000u);
    /* older than the epoch would make it: 0, the caller's read time */
    assert_int_equal(nt_boot_ns_to_realtime_usec(0, 8000000000u, 1000), 0);
}

/* ---- synthesized pages ---------------------------------------------------------------- */

struct page {
    uint8_t b[PAGE];
    size_t off;                    /* into data[] */
};

static void page_init(struct page *p, uint64_t ts)
{
    memset(p->b, 0, sizeof(p->b));
    memcpy(p->b, &ts, 8);
    p->off = 0;
}

static void page_commit(struct page *p, uint64_t flags)
{
    uint64_t c = p->off | flags;
    memcpy(p->b + 8, &c, 8);
}

static void put32(struct page *p, uint32_t v)
{
    assert_true(DATA + p->off + 4 <= PAGE);
    memcpy(p->b + DATA + p->off, &v, 4);
    p->off += 4;
}

static void put_hdr(struct page *p, unsigned type_len, uint32_t delta)
{
    put32(p, type_len | delta << 5);
}

/* A data event: small ones (<= 112 bytes) say their length in type_len,
 * bigger ones in array[0], which counts itself. */
static void put_entry(struct page *p, uint32_t delta, const void *entry, size_t len)
{
    size_t padded = (len + 3) & ~(size_t)3;
    if (padded <= 112) {
        put_hdr(p, (unsigned)(padded / 4), delta);
    } else {
        put_hdr(p, 0, delta);
        put32(p, (uint32_t)padded + 4);
    }
    assert_true(DATA + p->off + padded <= PAGE);
    memcpy(p->b + DATA + p->off, entry, len);
    p->off += padded;
}

/* Entries shaped by the fixture formats (offsets from their format files). */
static size_t mce_entry(uint8_t *e, uint16_t id, uint64_t status, uint64_t addr, uint8_t bank)
{
    memset(e, 0, 120);
    memcpy(e, &id, 2);
    memcpy(e + 24, &status, 8);
    memcpy(e + 32, &addr, 8);
    e[113] = bank;
    return 120;
}

static size_t mf_entry(uint8_t *e, uint16_t id, uint64_t pfn, int32_t type, int32_t result)
{
    memset(e, 0, 24);
    memcpy(e, &id, 2);
    memcpy(e + 8, &pfn, 8);
    memcpy(e + 16, &type, 4);
    memcpy(e + 20, &result, 4);
    return 24;
}

struct seen {
    size_t n;
    char name[16][32];
    uint64_t ts[16];
    uint64_t key[16];              /* addr or pfn */
    unsigned cpu[16];
};

static void collect(const struct nt_ras_record *r, void *userdata)
{
    struct seen *s = userdata;
    size_t k = s->n < 16 ? s->n : 15;      /* past 16, slot 15 holds the last */
    snprintf(s->name[k], sizeof(s->name[0]), "%s", r->fmt->name);
    s->ts[k] = r->ts;
    s->cpu[k] = r->cpu;
    uint64_t v = 0;
    if (nt_ras_record_u64(r, "addr", &v) < 0 && nt_ras_record_u64(r, "pfn", &v) < 0)
        v = UINT64_MAX;
    s->key[k] = v;
    s->n++;
}

static void collect_many(const struct nt_ras_record *r, void *userdata)
{
    (void)r;
    (*(unsigned *)userdata)++;
}

static int decode(struct tree *tr, const struct page *p, struct seen *s)
{
    memset(s, 0, sizeof(*s));
    return nt_ras_trace_decode_page(tr->t, 1, p->b, PAGE, collect, s);
}

static void test_page_records_and_time(void **state)
{
    struct tree *tr = *state;
    tree_open(tr);
    uint8_t e[128];
    struct page p;
    page_init(&p, 1000000);
    put_entry(&p, 5, e, mce_entry(e, 113, 0x9c0000000000009fULL, 0x50000000, 8));
    put_entry(&p, 7, e, mf_entry(e, 1347, 0x50000, 14, 3));
    /* A time extend: delta = array[0] << 27 | time_delta. */
    put_hdr(&p, 30, 3);
    put32(&p, 2);
    put_entry(&p, 0, e, mf_entry(e, 1347, 0x50001, 14, 3));
    /* A discarded event (padding with a length) moves nothing. */
    put_hdr(&p, 29, 9);
    put32(&p, 20);
    p.off += 16;
    put_entry(&p, 1, e, mce_entry(e, 113, 0x9c00000000000090ULL, 0x60000000, 9));
    page_commit(&p, 0);
    struct seen s;
    assert_int_equal(decode(tr, &p, &s), 4);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.name[0], "mce_record");
    assert_int_equal(s.key[0], 0x50000000);
    assert_int_equal(s.ts[0], 1000005);
    assert_string_equal(s.name[1], "memory_failure_event");
    assert_int_equal(s.key[1], 0x50000);
    assert_int_equal(s.ts[1], 1000012);
    assert_int_equal(s.ts[2], 1000012 + (2ULL << 27) + 3);
    assert_int_equal(s.ts[3], 1000012 + (2ULL << 27) + 3 + 1);
    assert_int_equal(s.key[3], 0x60000000);
    assert_int_equal(s.cpu[3], 1);
    for (int k = 0; k < NT_RAS_BAD_MAX; k++)
        assert_int_equal(nt_ras_trace_bad_count(tr->t, (enum nt_ras_bad)k), 0);

    /* An absolute time stamp replaces the clock (59 bits kept, top bits from the page). */
    page_init(&p, 0x0800000000000000ULL | 100);
    put_hdr(&p, 31, 0x1234);
    put32(&p, 1);
    put_entry(&p, 0, e, mf_entry(e, 1347, 1, 0, 0));
    page_commit(&p, 0);
    assert_int_equal(decode(tr, &p, &s), 1);
    assert_int_equal(s.ts[0], 0x0800000000000000ULL | (1ULL << 27) | 0x1234);
}

static void test_page_padding_and_page_end(void **state)
{
    struct tree *tr = *state;
    tree_open(tr);
    uint8_t e[128];
    struct page p;
    page_init(&p, 0);
    put_entry(&p, 0, e, mf_entry(e, 1347, 1, 0, 0));
    /* A null padding (time_delta 0) ends the data, whatever commit says. */
    put_hdr(&p, 29, 0);
    put_entry(&p, 0, e, mf_entry(e, 1347, 2, 0, 0));
    page_commit(&p, 0);
    struct seen s;
    assert_int_equal(decode(tr, &p, &s), 1);

    /* Records filling the page to its last byte: 4080 = 30 x (8 + 120) + (8 + 232). */
    page_init(&p, 0);
    for (int i = 0; i < 30; i++)
        put_entry(&p, 1, e, mce_entry(e, 113, 0, (uint64_t)i << 12, 0));
    uint8_t big[232] = {0};
    mce_entry(big, 113, 0, 0xfff000, 0);
    put_entry(&p, 1, big, sizeof(big));
    assert_int_equal(p.off, PAGE - DATA);
    page_commit(&p, 0);
    assert_int_equal(decode(tr, &p, &s), 31);
    assert_int_equal(s.n, 31);
    assert_int_equal(s.key[15], 0xfff000);      /* the one ending at the last byte */
    assert_int_equal(s.ts[15], 31);
    assert_int_equal(nt_ras_trace_bad_count(tr->t, NT_RAS_BAD_TRUNCATED), 0);
    assert_int_equal(nt_ras_trace_bad_count(tr->t, NT_RAS_BAD_HEADER), 0);
}

static void test_page_bad_records(void **state)
{
    struct tree *tr = *state;
    tree_open(tr);
    struct nt_ras_trace *t = tr->t;
    uint8_t e[128];
    struct page p;
    struct seen s;

    /* An unknown id is skipped and counted; the next record still comes. */
    page_init(&p, 0);
    put_entry(&p, 0, e, mf_entry(e, 999, 1, 0, 0));
    put_entry(&p, 0, e, mf_entry(e, 1347, 2, 0, 0));
    put_entry(&p, 0, e, mf_entry(e, 998, 3, 0, 0));
    page_commit(&p, 0);
    assert_int_equal(decode(tr, &p, &s), 1);
    assert_int_equal(s.key[0], 2);
    assert_int_equal(nt_ras_trace_bad_count(t, NT_RAS_BAD_UNKNOWN_ID), 2);
    assert_int_equal(tr->bad_calls[NT_RAS_BAD_UNKNOWN_ID], 1);    /* told once */

    /* An entry shorter than its format: an mce_record of 16 bytes. */
    page_init(&p, 0);
    put_entry(&p, 0, e, mf_entry(e, 113, 1, 0, 0) - 8);
    put_entry(&p, 0, e, mf_entry(e, 1347, 5, 0, 0));
    page_commit(&p, 0);
    assert_int_equal(decode(tr, &p, &s), 1);
    assert_int_equal(nt_ras_trace_bad_count(t, NT_RAS_BAD_TRUNCATED), 1);

    /* The last record runs past commit: the ones before it are kept. */
    page_init(&p, 0);
    put_entry(&p, 0, e, mf_entry(e, 1347, 6, 0, 0));
    put_entry(&p, 0, e, mce_entry(e, 113, 0, 0, 0));
    p.off -= 40;
    page_commit(&p, 0);
    assert_int_equal(decode(tr, &p, &s), 1);
    assert_int_equal(s.key[0], 6);
    assert_int_equal(nt_ras_trace_bad_count(t, NT_RAS_BAD_TRUNCATED), 2);
    assert_int_equal(tr->bad_calls[NT_RAS_BAD_TRUNCATED], 1);

    /* Garbage: type_len 0 whose length cannot hold itself. */
    page_init(&p, 0);
    put_entry(&p, 0, e, mf_entry(e, 1347, 7, 0, 0));
    put_hdr(&p, 0, 0);
    put32(&p, 2);
    put_entry(&p, 0, e, mf_entry(e, 1347, 8, 0, 0));
    page_commit(&p, 0);
    assert_int_equal(decode(tr, &p, &s), 1);
    assert_int_equal(nt_ras_trace_bad_count(t, NT_RAS_BAD_HEADER), 1);

    /* A commit beyond the page: nothing is decoded from it. */
    page_init(&p, 0);
    put_entry(&p, 0, e, mf_entry(e, 1347, 9, 0, 0));
    p.off = 5000;
    page_commit(&p, 0);
    assert_int_equal(decode(tr, &p, &s), 0);
    assert_int_equal(nt_ras_trace_bad_count(t, NT_RAS_BAD_HEADER), 2);

    /* A short read, shorter than the page header. */
    assert_int_equal(nt_ras_trace_decode_page(t, 0, p.b, 10, NULL, NULL), 0);
    assert_int_equal(nt_ras_trace_bad_count(t, NT_RAS_BAD_HEADER), 3);
    assert_int_equal(tr->bad_calls[NT_RAS_BAD_HEADER], 1);

    /* Random bytes never crash it. */
    srand(42);
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < PAGE; i++)
            p.b[i] = (uint8_t)rand();
        uint64_t c = (uint64_t)rand() % (PAGE - DATA + 1);
        memcpy(p.b + 8, &c, 8);
        unsigned any = 0;
        nt_ras_trace_decode_page(t, 0, p.b, PAGE, collect_many, &any);
    }
}

static void test_page_commit_flags(void **state)
{
    struct tree *tr = *state;
    tree_open(tr);
    uint8_t e[128];
    struct page p;
    struct seen s;
    /* RB_MISSED_EVENTS | RB_MISSED_STORED: the count follows the data. */
    page_init(&p, 0);
    put_entry(&p, 0, e, mf_entry(e, 1347, 1, 0, 0));
    put_entry(&p, 0, e, mf_entry(e, 1347, 2, 0, 0));
    page_commit(&p, (1ULL << 31) | (1ULL << 30));
    uint64_t lost = 17;
    memcpy(p.b + DATA + p.off, &lost, 8);
    assert_int_equal(decode(tr, &p, &s), 2);
    assert_int_equal(nt_ras_trace_lost(tr->t), 17);
    assert_int_equal(nt_ras_trace_bad_count(tr->t, NT_RAS_BAD_LOST), 1);

    /* Missed but not stored: counted as a page with losses, number unknown. */
    page_commit(&p, 1ULL << 31);
    assert_int_equal(decode(tr, &p, &s), 2);
    assert_int_equal(nt_ras_trace_lost(tr->t), 17);
    assert_int_equal(nt_ras_trace_bad_count(tr->t, NT_RAS_BAD_LOST), 2);
    assert_int_equal(tr->bad_calls[NT_RAS_BAD_LOST], 1);

    /* Stray high bits (other kernels' flags) do not change the size. */
    page_commit(&p, 1ULL << 28);
    assert_int_equal(decode(tr, &p, &s), 2);
    assert_int_equal(nt_ras_trace_bad_count(tr->t, NT_RAS_BAD_HEADER), 0);
}

/* ---- field accessors ------------------------------------------------------------------ */

struct acc { int calls; };

static void check_mf(const struct nt_ras_record *r, void *userdata)
{
    struct acc *a = userdata;
    a->calls++;
    uint64_t u;
    int64_t v;
    const uint8_t *b;
    size_t n;
    const char *str;
    assert_int_equal(nt_ras_record_u64(r, "pfn", &u), 0);
    assert_int_equal(u, 0x12345);
    assert_int_equal(nt_ras_record_s64(r, "result", &v), 0);
    assert_int_equal(v, -1);
    assert_int_equal(nt_ras_record_u64(r, "result", &u), 0);
    assert_int_equal(u, 0xffffffffULL);
    assert_int_equal(nt_ras_record_s64(r, "type", &v), 0);
    assert_int_equal(v, 14);
    assert_int_equal(nt_ras_record_u64(r, "common_type", &u), 0);
    assert_int_equal(u, 1347);
    assert_int_equal(nt_ras_record_u64(r, "nope", &u), -ENOENT);
    assert_int_equal(nt_ras_record_bytes(r, "pfn", &b, &n), 0);    /* a scalar's raw bytes */
    assert_int_equal(n, 8);
    assert_int_equal(nt_ras_record_str(r, "pfn", &str), -EINVAL);
}

static void check_mc(const struct nt_ras_record *r, void *userdata)
{
    struct acc *a = userdata;
    a->calls++;
    const char *s;
    uint64_t u;
    int64_t v;
    const uint8_t *b;
    size_t n;
    assert_int_equal(nt_ras_record_str(r, "msg", &s), 0);
    assert_string_equal(s, "corrected");
    assert_int_equal(nt_ras_record_str(r, "label", &s), 0);
    assert_string_equal(s, "DIMM_A1");
    assert_int_equal(nt_ras_record_str(r, "driver_detail", &s), 0);
    assert_string_equal(s, "");
    assert_int_equal(nt_ras_record_u64(r, "msg", &u), -EINVAL);
    assert_int_equal(nt_ras_record_bytes(r, "label", &b, &n), 0);
    assert_int_equal(n, 8);
    assert_int_equal(nt_ras_record_s64(r, "address", &v), 0);
    assert_int_equal(v, 0x7f000000);
    assert_int_equal(nt_ras_record_s64(r, "top_layer", &v), 0);
    assert_int_equal(v, -1);
    assert_int_equal(nt_ras_record_u64(r, "grain_bits", &u), 0);
    assert_int_equal(u, 12);
}

static void check_mc_bad(const struct nt_ras_record *r, void *userdata)
{
    struct acc *a = userdata;
    a->calls++;
    const char *s;
    assert_int_equal(nt_ras_record_str(r, "msg", &s), -EBADMSG);       /* points past the entry */
    assert_int_equal(nt_ras_record_str(r, "label", &s), -EBADMSG);     /* no NUL */
}

static void loc(uint8_t *e, unsigned field_off, unsigned data_off, unsigned len)
{
    uint32_t v = (uint32_t)len << 16 | data_off;
    memcpy(e + field_off, &v, 4);
}

static void test_record_accessors(void **state)
{
    struct tree *tr = *state;
    tree_open(tr);
    uint8_t e[128];
    struct page p;
    struct acc a = {0};
    page_init(&p, 0);
    put_entry(&p, 0, e, mf_entry(e, 1347, 0x12345, 14, -1));
    page_commit(&p, 0);
    assert_int_equal(nt_ras_trace_decode_page(tr->t, 0, p.b, PAGE, check_mf, &a), 1);
    assert_int_equal(a.calls, 1);

    /* mc_event: fixed part 60 bytes, then the strings its data_locs point to. */
    memset(e, 0, sizeof(e));
    uint16_t id = 1351;
    memcpy(e, &id, 2);
    int64_t addr = 0x7f000000;
    memcpy(e + 32, &addr, 8);
    e[23] = 0xff;
    e[40] = 12;
    memcpy(e + 60, "corrected", 10);
    memcpy(e + 70, "DIMM_A1", 8);
    e[78] = '\0';
    loc(e, 12, 60, 10);
    loc(e, 16, 70, 8);
    loc(e, 56, 78, 1);
    page_init(&p, 0);
    put_entry(&p, 0, e, 80);
    page_commit(&p, 0);
    assert_int_equal(nt_ras_trace_decode_page(tr->t, 0, p.b, PAGE, check_mc, &a), 1);
    assert_int_equal(a.calls, 2);

    loc(e, 12, 70, 40);            /* 70 + 40 > 80 */
    memcpy(e + 70, "DIMM_A1X", 8);
    page_init(&p, 0);
    put_entry(&p, 0, e, 80);
    page_commit(&p, 0);
    assert_int_equal(nt_ras_trace_decode_page(tr->t, 0, p.b, PAGE, check_mc_bad, &a), 1);
    assert_int_equal(a.calls, 3);
}

static void test_rel_loc(void **state)
{
    (void)state;
    struct nt_trace_format f;
    assert_int_equal(nt_trace_format_parse("t", "name: r\nID: 5\nformat:\n"
                                           "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
                                           "\tfield:__rel_loc char[] s;\toffset:4;\tsize:4;\tsigned:0;\n", &f), 0);
    uint8_t e[16] = {0};
    /* Relative to the end of the field (offset 8): the string sits at 10. */
    loc(e, 4, 2, 3);
    memcpy(e + 10, "hi", 3);
    struct nt_ras_record r = { .fmt = &f, .data = e, .len = sizeof(e) };
    const char *s;
    assert_int_equal(nt_ras_record_str(&r, "s", &s), 0);
    assert_string_equal(s, "hi");
    r.len = 11;
    assert_int_equal(nt_ras_record_str(&r, "s", &s), -EBADMSG);
    r.len = 6;
    assert_int_equal(nt_ras_record_str(&r, "s", &s), -EBADMSG);       /* the field itself is cut */
    nt_trace_format_done(&f);
}

/* ---- the page captured from the guest kernel ---------------------------------------- */

static size_t load_hex(const char *rel, uint8_t *page, size_t cap)
{
    _cleanup_free_ char *text = fixture_text(rel);
    size_t n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#')
            continue;
        for (char *p = line, *end; *p; p = end) {
            unsigned long v = strtoul(p, &end, 16);
            if (end == p)
                break;
            assert_true(n < cap);
            page[n++] = (uint8_t)v;
        }
    }
    return n;
}

struct mce_seen {
    int n;
    uint64_t ts;
    unsigned cpu;
    uint64_t status, addr, misc, mcgcap, cpuid, walltime, microcode, bank, kcpu, socket;
    int64_t pid;
};

static void get_mce(const struct nt_ras_record *r, void *userdata)
{
    struct mce_seen *m = userdata;
    m->n++;
    assert_string_equal(r->fmt->name, "mce_record");
    m->ts = r->ts;
    m->cpu = r->cpu;
    assert_int_equal(nt_ras_record_u64(r, "status", &m->status), 0);
    assert_int_equal(nt_ras_record_u64(r, "addr", &m->addr), 0);
    assert_int_equal(nt_ras_record_u64(r, "misc", &m->misc), 0);
    assert_int_equal(nt_ras_record_u64(r, "mcgcap", &m->mcgcap), 0);
    assert_int_equal(nt_ras_record_u64(r, "cpuid", &m->cpuid), 0);
    assert_int_equal(nt_ras_record_u64(r, "walltime", &m->walltime), 0);
    assert_int_equal(nt_ras_record_u64(r, "microcode", &m->microcode), 0);
    assert_int_equal(nt_ras_record_u64(r, "bank", &m->bank), 0);
    assert_int_equal(nt_ras_record_u64(r, "cpu", &m->kcpu), 0);
    assert_int_equal(nt_ras_record_u64(r, "socketid", &m->socket), 0);
    assert_int_equal(nt_ras_record_s64(r, "common_pid", &m->pid), 0);
}

static void check_captured(const struct mce_seen *m)
{
    /* What the guest's `trace` printed for the same event:
     * [000] 7.427762: mce_record: CPU: 0, MCGc/s: 100010a/0, MC8: 9c0000000000009f,
     * ADDR: 0000000050000000, MISC: 000000000000008c, CPUID: 60fb1, time: 1795752194,
     * socket: 0, microcode: 1 (kworker/0:0-9) */
    assert_int_equal(m->n, 1);
    assert_int_equal(m->cpu, 0);
    assert_int_equal(m->ts, 0x1babaa5baULL);  /* the page's stamp; delta 0 */
    assert_int_equal((m->ts + 500) / 1000, 7427762);  /* trace rounds to us */
    assert_int_equal(m->status, 0x9c0000000000009fULL);
    assert_int_equal(m->addr, 0x50000000);
    assert_int_equal(m->misc, 0x8c);
    assert_int_equal(m->mcgcap, 0x100010a);
    assert_int_equal(m->cpuid, 0x60fb1);
    assert_int_equal(m->walltime, 1795752194);
    assert_int_equal(m->microcode, 1);
    assert_int_equal(m->bank, 8);
    assert_int_equal(m->kcpu, 0);
    assert_int_equal(m->socket, 0);
    assert_int_equal(m->pid, 9);
}

static void test_captured_mce_page(void **state)
{
    struct tree *tr = *state;
    tree_open(tr);
    uint8_t page[PAGE] = {0};
    size_t n = load_hex("/raw/mce-cpu0.hex", page, sizeof(page));
    assert_int_equal(n, 16 + 128);
    struct mce_seen m = {0};
    assert_int_equal(nt_ras_trace_decode_page(tr->t, 0, page, PAGE, get_mce, &m), 1);
    check_captured(&m);
    for (int k = 0; k < NT_RAS_BAD_MAX; k++)
        assert_int_equal(nt_ras_trace_bad_count(tr->t, (enum nt_ras_bad)k), 0);

    /* The same page through the reader, as trace_pipe_raw hands it out. */
    put_file(tpath(tr, INST "/per_cpu/cpu0/trace_pipe_raw"), page, PAGE);
    nt_ras_trace_close(tr->t, false);
    assert_int_equal(nt_ras_trace_open(tr->root, &tr->t), 0);
    memset(&m, 0, sizeof(m));
    assert_int_equal(nt_ras_trace_read(tr->t, 0, 0, get_mce, &m), 1);
    check_captured(&m);
}

/* ---- CPU hotplug ---------------------------------------------------------------------- */

static void test_cpu_rescan(void **state)
{
    struct tree *tr = *state;
    tree_open(tr);
    uint8_t e[128];
    struct page p;
    page_init(&p, 0);
    put_entry(&p, 0, e, mf_entry(e, 1347, 1, 0, 0));
    put_entry(&p, 0, e, mf_entry(e, 1347, 2, 0, 0));
    page_commit(&p, 0);
    size_t n;
    bool changed = true;
    assert_int_equal(nt_ras_trace_rescan_cpus(tr->t, NULL, NULL, &changed), 0);
    assert_false(changed);

    /* cpu1 goes offline with two records in its buffer: they are drained first. */
    put_file(tpath(tr, INST "/per_cpu/cpu1/trace_pipe_raw"), p.b, PAGE);
    nt_ras_trace_close(tr->t, false);
    assert_int_equal(nt_ras_trace_open(tr->root, &tr->t), 0);
    put_str(tpath(tr, "/sys/devices/system/cpu/online"), "0\n");
    unsigned got = 0;
    assert_int_equal(nt_ras_trace_rescan_cpus(tr->t, collect_many, &got, &changed), 0);
    assert_true(changed);
    assert_int_equal(got, 2);
    const struct nt_ras_cpu_reader *rd = nt_ras_trace_readers(tr->t, &n);
    assert_int_equal(n, 1);
    assert_int_equal(rd[0].cpu, 0);
    assert_int_equal(nt_ras_trace_read(tr->t, 1, 0, NULL, NULL), -ENOENT);

    /* Back online, plus a hot-added cpu2 (its per_cpu dir appears with it). */
    put_str(tpath(tr, INST "/per_cpu/cpu2/trace_pipe_raw"), "");
    put_str(tpath(tr, "/sys/devices/system/cpu/online"), "0-2\n");
    assert_int_equal(nt_ras_trace_rescan_cpus(tr->t, NULL, NULL, &changed), 0);
    assert_true(changed);
    rd = nt_ras_trace_readers(tr->t, &n);
    assert_int_equal(n, 3);
    /* A CPU online without a per_cpu reader is skipped, not fatal. */
    put_str(tpath(tr, "/sys/devices/system/cpu/online"), "0-3\n");
    assert_int_equal(nt_ras_trace_rescan_cpus(tr->t, NULL, NULL, &changed), 0);
    assert_false(changed);
    nt_ras_trace_readers(tr->t, &n);
    assert_int_equal(n, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_mce_record),
        cmocka_unit_test(test_format_data_loc_and_arrays),
        cmocka_unit_test(test_format_every_fixture),
        cmocka_unit_test(test_format_malformed),
        cmocka_unit_test(test_layout_from_fixture),
        cmocka_unit_test(test_rel_loc),
        cmocka_unit_test_setup_teardown(test_instance_setup, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_instance_missing_events, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_instance_no_tracefs, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_instance_created, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_clock_of_reused_instance_kept, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_clock_boot_times_records, tree_setup, tree_teardown),
        cmocka_unit_test(test_boot_to_realtime),
        cmocka_unit_test_setup_teardown(test_page_records_and_time, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_page_padding_and_page_end, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_page_bad_records, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_page_commit_flags, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_record_accessors, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_captured_mce_page, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_cpu_rescan, tree_setup, tree_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
