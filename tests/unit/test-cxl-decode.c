/* CXL media-error decoder (policy/cxl-decode.c): the rules on plain
 * records, the ECC policy's verdict on what it produces, and whole
 * cxl_general_media / cxl_dram entries synthesized from the format files
 * the Debian 6.12 guest kernel wrote (tests/fixtures/tracefs/6.12) and a
 * pre-6.9 layout without hpa (tests/fixtures/cxl-trace). Run from the
 * repository root, or set NT_FIXTURES. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "numatier/cxl-decode.h"
#include "numatier/ecc.h"
#include "numatier/ras-trace.h"
#include "numatier/ras.h"
#include "numatier/util.h"

#define T0 UINT64_C(1700000000000000)
#define HPA UINT64_C(0x2080001234)      /* inside a CXL window; not 64-byte aligned on purpose */
#define HPA_LINE UINT64_C(0x2080001200)
#define DPA UINT64_C(0x40001200)

static void assert_contains(const char *s, const char *sub)
{
    if (!strstr(s, sub))
        fail_msg("\"%s\" does not contain \"%s\"", s, sub);
}

static void assert_lacks(const char *s, const char *sub)
{
    if (strstr(s, sub))
        fail_msg("\"%s\" contains \"%s\"", s, sub);
}

/* A corrected ECC error a host read hit, in region0, location valid. */
static struct nt_cxl_record gm_record(void)
{
    return (struct nt_cxl_record){
        .kind = NT_RAS_CXL_GENERAL_MEDIA,
        .memdev = "mem0",
        .region = "region0",
        .serial = 0x1f,
        .log = NT_CXL_LOG_INFO,
        .dpa = DPA,
        .type = NT_CXL_GM_ECC_ERROR,
        .transaction_type = 1,
        .validity_flags = NT_CXL_VALID_CHANNEL | NT_CXL_VALID_RANK | NT_CXL_GM_VALID_DEVICE,
        .channel = 1,
        .rank = 0,
        .device = 0x2a,
        .has_hpa = true,
        .hpa = HPA,
    };
}

static struct nt_cxl_record dram_record(void)
{
    struct nt_cxl_record r = gm_record();
    r.kind = NT_RAS_CXL_DRAM;
    r.device = 0;
    r.validity_flags = NT_CXL_VALID_CHANNEL | NT_CXL_VALID_RANK | NT_CXL_DRAM_VALID_BANK_GROUP |
                       NT_CXL_DRAM_VALID_BANK | NT_CXL_DRAM_VALID_ROW | NT_CXL_DRAM_VALID_COLUMN;
    r.bank_group = 2;
    r.bank = 3;
    r.row = 0x1234;
    r.column = 64;
    return r;
}

/* ---- the decoding rules ------------------------------------------------------------ */

static void test_gm_corrected_with_hpa(void **state)
{
    (void)state;
    struct nt_cxl_record r = gm_record();
    struct nt_ras_event ev;
    assert_int_equal(nt_cxl_decode(&r, T0, &ev), 0);
    assert_int_equal(ev.source, NT_RAS_CXL_GENERAL_MEDIA);
    assert_int_equal(ev.time_usec, T0);
    assert_int_equal(ev.severity, NT_RAS_SEV_CORRECTED);
    assert_true(ev.corrected);
    assert_true(ev.memory_error);
    assert_int_equal(ev.count, 1);
    assert_true(nt_ras_event_usable(&ev));
    assert_string_equal(ev.why_unusable, "");
    assert_int_equal(ev.grain_bytes, 64);
    assert_int_equal(ev.phys_addr, HPA_LINE);
    assert_int_equal(ev.cpu, -1);
    assert_int_equal(ev.socket, -1);
    assert_int_equal(ev.bank, -1);
    assert_int_equal(ev.node, -1);
    assert_int_equal(ev.u.cxl.dpa, DPA);
    assert_int_equal(ev.u.cxl.hpa, HPA);
    assert_int_equal(ev.u.cxl.serial, 0x1f);
    assert_int_equal(ev.u.cxl.channel, 1);
    assert_int_equal(ev.u.cxl.rank, 0);
    assert_int_equal(ev.u.cxl.device, 0x2a);
    assert_int_equal(ev.u.cxl.bank, -1);
    assert_int_equal(ev.u.cxl.row, -1);
    assert_string_equal(ev.u.cxl.memdev, "mem0");
    assert_string_equal(ev.u.cxl.region, "region0");
    assert_contains(ev.detail, "cxl_general_media corrected ECC Error (Host Read) mem0 dpa 0x40001200 "
                               "hpa 0x2080001200/64B region0");
    assert_contains(ev.detail, " ch 1 rank 0 dev 0x2a");
    assert_contains(ev.detail, "serial 0x1f");

    uint64_t pfn;
    assert_true(nt_ecc_event_pfn(&ev, &pfn));
    assert_int_equal(pfn, HPA >> 12);
}

/* What the ECC policy makes of it: the second corrected error on the
 * frame (default 2 per 24 h) soft-offlines the frame the hpa is in. */
static void test_policy_acts_on_hpa_frame(void **state)
{
    (void)state;
    struct nt_ecc_params p;
    nt_ecc_params_default(&p);
    struct nt_cxl_record r = gm_record();
    struct nt_ras_event ev;
    struct nt_ecc_frame f;
    struct nt_ecc_block b;
    struct nt_ecc_decision d;
    uint64_t pfn;
    assert_int_equal(nt_cxl_decode(&r, T0, &ev), 0);
    assert_true(nt_ecc_event_pfn(&ev, &pfn));
    nt_ecc_frame_init(&f, pfn);
    nt_ecc_block_init(&b, nt_ecc_block_of(&p, pfn));
    assert_int_equal(nt_ecc_decide(&p, &ev, &f, &b, NULL, 0, T0, &d), 0);
    assert_int_equal(d.verdict, NT_ECC_ACCOUNT);
    r.hpa = HPA + 0x100;                /* another line of the same frame */
    assert_int_equal(nt_cxl_decode(&r, T0 + 1000000, &ev), 0);
    assert_int_equal(nt_ecc_decide(&p, &ev, &f, &b, NULL, 0, T0 + 1000000, &d), 0);
    assert_int_equal(d.verdict, NT_ECC_SOFT_OFFLINE);
    assert_int_equal(d.frame_addr, HPA & ~UINT64_C(0xfff));
}

static void test_uncorrectable(void **state)
{
    (void)state;
    struct nt_cxl_record r = gm_record();
    r.descriptor = NT_CXL_DESC_UNCORRECTABLE;
    r.log = NT_CXL_LOG_FAIL;
    struct nt_ras_event ev;
    assert_int_equal(nt_cxl_decode(&r, T0, &ev), 0);
    assert_false(ev.corrected);
    assert_int_equal(ev.severity, NT_RAS_SEV_UNCORRECTED);
    assert_true(nt_ras_event_usable(&ev));          /* recorded with its address... */
    assert_contains(ev.detail, "cxl_general_media uncorrected ECC Error");

    struct nt_ecc_params p;
    nt_ecc_params_default(&p);
    struct nt_ecc_decision d;
    struct nt_ecc_frame f;
    nt_ecc_frame_init(&f, HPA >> 12);
    assert_int_equal(nt_ecc_decide(&p, &ev, &f, NULL, NULL, 0, T0, &d), 0);
    assert_int_equal(d.verdict, NT_ECC_IGNORE);     /* ...but memory_failure owns it */

    r.log = NT_CXL_LOG_FATAL;
    assert_int_equal(nt_cxl_decode(&r, T0, &ev), 0);
    assert_int_equal(ev.severity, NT_RAS_SEV_FATAL);
    assert_false(ev.corrected);

    /* The log alone does not make a corrected error uncorrected. */
    r.descriptor = NT_CXL_DESC_THRESHOLD;
    assert_int_equal(nt_cxl_decode(&r, T0, &ev), 0);
    assert_true(ev.corrected);
    assert_contains(ev.detail, " threshold");
}

static void test_hpa_invalid_is_unusable(void **state)
{
    (void)state;
    struct nt_cxl_record r = gm_record();
    r.hpa = NT_CXL_HPA_INVALID;         /* what the kernel gives when no region maps the DPA */
    r.region = "";
    struct nt_ras_event ev;
    assert_int_equal(nt_cxl_decode(&r, T0, &ev), 0);
    assert_true(ev.corrected);
    assert_true(ev.memory_error);
    assert_false(ev.addr_valid);
    assert_false(nt_ras_event_usable(&ev));
    assert_contains(ev.why_unusable, "DPA 0x40001200 is in no CXL region");
    assert_int_equal(ev.u.cxl.hpa, NT_CXL_HPA_INVALID);
    assert_int_equal(ev.u.cxl.dpa, DPA);
    assert_lacks(ev.detail, "hpa");
    assert_contains(ev.detail, "mem0 dpa 0x40001200");
    uint64_t pfn;
    assert_false(nt_ecc_event_pfn(&ev, &pfn));

    struct nt_ecc_params p;
    nt_ecc_params_default(&p);
    struct nt_ecc_decision d;
    assert_int_equal(nt_ecc_decide(&p, &ev, NULL, NULL, NULL, 0, T0, &d), 0);
    assert_int_equal(d.verdict, NT_ECC_IGNORE);
    assert_contains(d.why, "no CXL region");
}

static void test_no_hpa_field_is_unusable(void **state)
{
    (void)state;
    struct nt_cxl_record r = gm_record();
    r.has_hpa = false;
    r.hpa = 0;
    r.region = NULL;
    struct nt_ras_event ev;
    assert_int_equal(nt_cxl_decode(&r, T0, &ev), 0);
    assert_false(nt_ras_event_usable(&ev));
    assert_contains(ev.why_unusable, "only the device address");
    assert_int_equal(ev.u.cxl.hpa, NT_CXL_HPA_INVALID);   /* not the 0 the record held */
    assert_string_equal(ev.u.cxl.region, "");
}

static void test_dram_vs_general_media(void **state)
{
    (void)state;
    struct nt_cxl_record r = dram_record();
    struct nt_ras_event ev;
    assert_int_equal(nt_cxl_decode(&r, T0, &ev), 0);
    assert_int_equal(ev.source, NT_RAS_CXL_DRAM);
    assert_true(nt_ras_event_usable(&ev));
    assert_int_equal(ev.u.cxl.bank_group, 2);
    assert_int_equal(ev.u.cxl.bank, 3);
    assert_int_equal(ev.u.cxl.row, 0x1234);
    assert_int_equal(ev.u.cxl.column, 64);
    assert_int_equal(ev.u.cxl.device, -1);          /* no such field in a DRAM record */
    assert_contains(ev.detail, "cxl_dram corrected ECC Error");
    assert_contains(ev.detail, " ch 1 rank 0 bg 2 bank 3 row 4660 col 64");

    /* The two records number their types differently. */
    r.type = 1;
    assert_int_equal(nt_cxl_decode(&r, T0, &ev), 0);
    assert_true(ev.memory_error);                   /* DRAM 1: Scrub Media ECC Error */
    assert_contains(ev.detail, "Scrub Media ECC Error");
    struct nt_cxl_record g = gm_record();
    g.type = 1;
    assert_int_equal(nt_cxl_decode(&g, T0, &ev), 0);
    assert_false(ev.memory_error);                  /* general media 1: Invalid Address */
    assert_contains(ev.detail, "Invalid Address");
    g.type = NT_CXL_GM_SCRUB_MEDIA_ECC_ERROR;
    assert_int_equal(nt_cxl_decode(&g, T0, &ev), 0);
    assert_true(ev.memory_error);

    static const uint8_t not_cells_dram[] = { 2, 3, 4, 5, 6, 7, 0xff };
    for (size_t i = 0; i < NT_ARRAY_SIZE(not_cells_dram); i++) {
        r.type = not_cells_dram[i];
        assert_int_equal(nt_cxl_decode(&r, T0, &ev), 0);
        assert_false(ev.memory_error);
    }
}

static void test_location_needs_validity(void **state)
{
    (void)state;
    struct nt_cxl_record r = dram_record();
    r.validity_flags = NT_CXL_DRAM_VALID_ROW;
    struct nt_ras_event ev;
    assert_int_equal(nt_cxl_decode(&r, T0, &ev), 0);
    assert_int_equal(ev.u.cxl.channel, -1);
    assert_int_equal(ev.u.cxl.rank, -1);
    assert_int_equal(ev.u.cxl.bank, -1);
    assert_int_equal(ev.u.cxl.row, 0x1234);
    assert_lacks(ev.detail, " ch ");
    assert_lacks(ev.detail, " bank ");
    assert_contains(ev.detail, " row 4660");
}

static void test_flags_names_and_truncation(void **state)
{
    (void)state;
    struct nt_cxl_record r = dram_record();
    r.memdev = "mem0123456789012345678901234567890123456789";      /* longer than the field */
    r.descriptor = NT_CXL_DESC_POISON_OVERFLOW;
    r.hdr_flags = NT_CXL_HDR_MAINTENANCE_NEEDED;
    r.transaction_type = 0;
    struct nt_ras_event ev;
    assert_int_equal(nt_cxl_decode(&r, T0, &ev), 0);
    assert_int_equal(strlen(ev.u.cxl.memdev), sizeof(ev.u.cxl.memdev) - 1);
    assert_true(strlen(ev.detail) < sizeof(ev.detail));
    assert_lacks(ev.detail, "(Unknown)");            /* transaction 0 says nothing */
    assert_contains(ev.detail, " poison-list-overflow maintenance-needed");

    r.memdev = NULL;
    assert_int_equal(nt_cxl_decode(&r, T0, &ev), 0);
    assert_contains(ev.detail, " mem? dpa ");

    assert_string_equal(nt_cxl_log_name(NT_CXL_LOG_WARN), "Warning");
    assert_string_equal(nt_cxl_log_name(-1), "?");
    assert_string_equal(nt_cxl_log_name(4), "?");
    assert_string_equal(nt_cxl_type_name(NT_RAS_CXL_GENERAL_MEDIA, 2), "Data Path Error");
    assert_string_equal(nt_cxl_type_name(NT_RAS_CXL_DRAM, 2), "Invalid Address");
    assert_string_equal(nt_cxl_type_name(NT_RAS_CXL_DRAM, 7), "?");
    assert_string_equal(nt_cxl_type_name(NT_RAS_MCE, 0), "?");
    assert_string_equal(nt_cxl_transaction_name(4), "Host Inject Poison");
    assert_string_equal(nt_cxl_transaction_name(9), "?");
}

static void test_not_a_cxl_kind(void **state)
{
    (void)state;
    struct nt_cxl_record r = gm_record();
    r.kind = NT_RAS_MCE;
    struct nt_ras_event ev;
    assert_int_equal(nt_cxl_decode(&r, T0, &ev), -EINVAL);
    assert_false(nt_ras_event_usable(&ev));
    assert_false(ev.memory_error);
    assert_contains(ev.why_unusable, "not a CXL media event");
}

/* ---- whole records, laid out by the kernel's format files ---------------------------- */

static const char *fixtures(void)
{
    const char *d = getenv("NT_FIXTURES");
    return d ? d : "tests/fixtures";
}

static void parse_format(const char *rel, struct nt_trace_format *f)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", fixtures(), rel);
    _cleanup_free_ char *text = NULL;
    assert_int_equal(nt_read_file(NULL, path, &text), 0);
    assert_int_equal(nt_trace_format_parse("cxl", text, f), 0);
}

#define GM_612   "tracefs/6.12/sys/kernel/tracing/events/cxl/cxl_general_media/format"
#define DRAM_612 "tracefs/6.12/sys/kernel/tracing/events/cxl/cxl_dram/format"
#define GM_68    "cxl-trace/6.8/cxl/cxl_general_media/format"

/* An entry under construction: fields go where the format says. */
struct entry {
    const struct nt_trace_format *f;
    uint8_t b[512];
    size_t tail;                        /* where the next data_loc string goes */
};

static void entry_init(struct entry *e, const struct nt_trace_format *f)
{
    memset(e, 0, sizeof(*e));
    e->f = f;
    e->tail = f->min_size;
    uint16_t id = (uint16_t)f->id;
    memcpy(e->b, &id, sizeof(id));
}

/* A little-endian scalar of the field's size (x86, as the kernel wrote it). */
static void put(struct entry *e, const char *name, uint64_t v)
{
    const struct nt_trace_field *x = nt_trace_format_field(e->f, name);
    if (!x)
        fail_msg("no field %s in %s", name, e->f->name);
    assert_int_equal(x->kind, NT_TRACE_FIELD_SCALAR);
    assert_true(x->size <= 8 && x->offset + x->size <= sizeof(e->b));
    for (unsigned i = 0; i < x->size; i++)
        e->b[x->offset + i] = (uint8_t)(v >> (8 * i));
}

static void put_str(struct entry *e, const char *name, const char *s)
{
    const struct nt_trace_field *x = nt_trace_format_field(e->f, name);
    if (!x)
        fail_msg("no field %s in %s", name, e->f->name);
    assert_int_equal(x->kind, NT_TRACE_FIELD_DATA_LOC);
    size_t n = strlen(s) + 1;
    assert_true(e->tail + n <= sizeof(e->b));
    memcpy(e->b + e->tail, s, n);
    uint32_t loc = (uint32_t)n << 16 | (uint32_t)e->tail;
    memcpy(e->b + x->offset, &loc, sizeof(loc));
    e->tail += n;
}

static struct nt_ras_record as_record(const struct entry *e)
{
    return (struct nt_ras_record){ .fmt = e->f, .cpu = 0, .data = e->b, .len = (e->tail + 3) & ~(size_t)3 };
}

/* What the kernel's TP_fast_assign writes for a corrected error: the
 * common header, the media fields, and (6.9+) hpa and region. */
static void fill_common(struct entry *e, uint8_t descriptor, uint8_t type)
{
    put(e, "log", NT_CXL_LOG_WARN);
    put(e, "serial", 0xabcdef);
    put(e, "hdr_flags", NT_CXL_HDR_PERMANENT);
    put(e, "hdr_handle", 7);
    put(e, "hdr_timestamp", UINT64_C(1700000000123456789));
    put(e, "hdr_length", 128);
    put(e, "dpa", DPA);
    put(e, "dpa_flags", 1);             /* VOLATILE */
    put(e, "descriptor", descriptor);
    put(e, "type", type);
    put(e, "transaction_type", 5);      /* Internal Media Scrub */
    put(e, "channel", 3);
    put(e, "rank", 1);
    put_str(e, "memdev", "mem1");
    put_str(e, "host", "0000:0d:00.0");
}

static void test_trace_general_media_612(void **state)
{
    (void)state;
    struct nt_trace_format f;
    parse_format(GM_612, &f);
    struct entry e;
    entry_init(&e, &f);
    fill_common(&e, 0, NT_CXL_GM_ECC_ERROR);
    put(&e, "validity_flags", NT_CXL_VALID_CHANNEL | NT_CXL_VALID_RANK | NT_CXL_GM_VALID_DEVICE);
    put(&e, "device", 0x123456);
    put(&e, "hpa", HPA_LINE);
    put_str(&e, "region_name", "region4");
    struct nt_ras_record rec = as_record(&e);

    struct nt_cxl_record r;
    const char *missing = "x";
    assert_int_equal(nt_cxl_record_from_trace(&rec, &r, &missing), 0);
    assert_null(missing);
    assert_int_equal(r.kind, NT_RAS_CXL_GENERAL_MEDIA);
    assert_string_equal(r.memdev, "mem1");
    assert_string_equal(r.region, "region4");
    assert_int_equal(r.log, NT_CXL_LOG_WARN);
    assert_int_equal(r.serial, 0xabcdef);
    assert_int_equal(r.dpa, DPA);
    assert_int_equal(r.dpa_flags, 1);
    assert_int_equal(r.transaction_type, 5);
    assert_int_equal(r.device, 0x123456);
    assert_true(r.has_hpa);
    assert_int_equal(r.hpa, HPA_LINE);

    struct nt_ras_event ev;
    assert_int_equal(nt_cxl_decode_trace(&rec, T0, &ev, &missing), 0);
    assert_int_equal(ev.source, NT_RAS_CXL_GENERAL_MEDIA);
    assert_true(ev.corrected);
    assert_true(ev.memory_error);
    assert_true(nt_ras_event_usable(&ev));
    assert_int_equal(ev.phys_addr, HPA_LINE);
    assert_int_equal(ev.u.cxl.channel, 3);
    assert_int_equal(ev.u.cxl.rank, 1);
    assert_int_equal(ev.u.cxl.device, 0x123456);
    assert_string_equal(ev.u.cxl.memdev, "mem1");
    assert_string_equal(ev.u.cxl.region, "region4");
    assert_contains(ev.detail, "cxl_general_media corrected ECC Error (Internal Media Scrub) mem1 "
                               "dpa 0x40001200 hpa 0x2080001200/64B region4 permanent");
    nt_trace_format_done(&f);
}

/* The kernel's record for an error outside any region: hpa ULLONG_MAX,
 * region_name "" -- recorded, never acted on. */
static void test_trace_general_media_no_region(void **state)
{
    (void)state;
    struct nt_trace_format f;
    parse_format(GM_612, &f);
    struct entry e;
    entry_init(&e, &f);
    fill_common(&e, 0, NT_CXL_GM_ECC_ERROR);
    put(&e, "hpa", UINT64_MAX);
    put_str(&e, "region_name", "");
    struct nt_ras_record rec = as_record(&e);
    struct nt_ras_event ev;
    assert_int_equal(nt_cxl_decode_trace(&rec, T0, &ev, NULL), 0);
    assert_true(ev.corrected);
    assert_false(nt_ras_event_usable(&ev));
    assert_contains(ev.why_unusable, "no CXL region");
    assert_string_equal(ev.u.cxl.region, "");
    nt_trace_format_done(&f);
}

static void test_trace_dram_612(void **state)
{
    (void)state;
    struct nt_trace_format f;
    parse_format(DRAM_612, &f);
    struct entry e;
    entry_init(&e, &f);
    fill_common(&e, NT_CXL_DESC_UNCORRECTABLE, NT_CXL_DRAM_SCRUB_MEDIA_ECC_ERROR);
    put(&e, "validity_flags", NT_CXL_VALID_CHANNEL | NT_CXL_DRAM_VALID_BANK_GROUP |
                              NT_CXL_DRAM_VALID_BANK | NT_CXL_DRAM_VALID_ROW | NT_CXL_DRAM_VALID_COLUMN);
    put(&e, "bank_group", 1);
    put(&e, "bank", 2);
    put(&e, "row", 0xabcde);
    put(&e, "column", 0x3ff);
    put(&e, "nibble_mask", 0x5);
    put(&e, "hpa", HPA);
    put_str(&e, "region_name", "region0");
    struct nt_ras_record rec = as_record(&e);

    struct nt_ras_event ev;
    assert_int_equal(nt_cxl_decode_trace(&rec, T0, &ev, NULL), 0);
    assert_int_equal(ev.source, NT_RAS_CXL_DRAM);
    assert_int_equal(ev.severity, NT_RAS_SEV_UNCORRECTED);
    assert_false(ev.corrected);
    assert_true(ev.memory_error);
    assert_int_equal(ev.phys_addr, HPA_LINE);
    assert_int_equal(ev.u.cxl.channel, 3);
    assert_int_equal(ev.u.cxl.rank, -1);            /* RANK not in validity_flags */
    assert_int_equal(ev.u.cxl.bank_group, 1);
    assert_int_equal(ev.u.cxl.bank, 2);
    assert_int_equal(ev.u.cxl.row, 0xabcde);
    assert_int_equal(ev.u.cxl.column, 0x3ff);
    assert_int_equal(ev.u.cxl.device, -1);
    assert_contains(ev.detail, "cxl_dram uncorrected Scrub Media ECC Error");
    nt_trace_format_done(&f);
}

/* A kernel before 6.9: the same event without hpa and region fields, its
 * location fields at other offsets. Decoded by name; unusable. */
static void test_trace_general_media_pre_hpa(void **state)
{
    (void)state;
    struct nt_trace_format f;
    parse_format(GM_68, &f);
    assert_null(nt_trace_format_field(&f, "hpa"));
    assert_int_equal(nt_trace_format_field(&f, "validity_flags")->offset, 104);
    struct entry e;
    entry_init(&e, &f);
    fill_common(&e, 0, NT_CXL_GM_ECC_ERROR);
    put(&e, "validity_flags", NT_CXL_VALID_CHANNEL | NT_CXL_VALID_RANK);
    struct nt_ras_record rec = as_record(&e);

    struct nt_cxl_record r;
    assert_int_equal(nt_cxl_record_from_trace(&rec, &r, NULL), 0);
    assert_false(r.has_hpa);
    assert_null(r.region);
    struct nt_ras_event ev;
    assert_int_equal(nt_cxl_decode_trace(&rec, T0, &ev, NULL), 0);
    assert_true(ev.corrected);
    assert_true(ev.memory_error);
    assert_false(nt_ras_event_usable(&ev));
    assert_contains(ev.why_unusable, "only the device address");
    assert_int_equal(ev.u.cxl.channel, 3);
    assert_int_equal(ev.u.cxl.rank, 1);
    assert_int_equal(ev.u.cxl.dpa, DPA);
    nt_trace_format_done(&f);
}

static void test_trace_bad_records(void **state)
{
    (void)state;
    struct nt_trace_format f;
    parse_format(GM_612, &f);
    struct entry e;
    entry_init(&e, &f);
    fill_common(&e, 0, NT_CXL_GM_ECC_ERROR);
    struct nt_ras_record rec = as_record(&e);
    struct nt_ras_event ev;
    const char *missing = NULL;

    rec.len = 76;                       /* cut inside dpa (72..80) */
    assert_int_equal(nt_cxl_decode_trace(&rec, T0, &ev, &missing), -EBADMSG);
    assert_string_equal(missing, "dpa");
    rec.len = 80;                       /* dpa whole, descriptor cut */
    assert_int_equal(nt_cxl_decode_trace(&rec, T0, &ev, &missing), -EBADMSG);
    assert_string_equal(missing, "descriptor");
    nt_trace_format_done(&f);

    /* A layout without descriptor cannot say corrected from uncorrected. */
    assert_int_equal(nt_trace_format_parse("cxl", "name: cxl_dram\nID: 9\nformat:\n"
                                           "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
                                           "\tfield:u64 dpa;\toffset:8;\tsize:8;\tsigned:0;\n", &f), 0);
    uint8_t b[16] = {9};
    rec = (struct nt_ras_record){ .fmt = &f, .data = b, .len = sizeof(b) };
    assert_int_equal(nt_cxl_decode_trace(&rec, T0, &ev, &missing), -EBADMSG);
    assert_string_equal(missing, "descriptor");
    nt_trace_format_done(&f);
}

static void test_trace_not_cxl(void **state)
{
    (void)state;
    struct nt_trace_format f;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/tracefs/6.12/sys/kernel/tracing/events/mce/mce_record/format", fixtures());
    _cleanup_free_ char *text = NULL;
    assert_int_equal(nt_read_file(NULL, path, &text), 0);
    assert_int_equal(nt_trace_format_parse("mce", text, &f), 0);
    uint8_t b[256] = {0};
    struct nt_ras_record rec = { .fmt = &f, .data = b, .len = sizeof(b) };
    struct nt_ras_event ev;
    struct nt_cxl_record r;
    assert_int_equal(nt_cxl_record_from_trace(&rec, &r, NULL), -EINVAL);
    assert_int_equal(nt_cxl_decode_trace(&rec, T0, &ev, NULL), -EINVAL);
    nt_trace_format_done(&f);

    /* Another event of the cxl system is not a media event either. */
    assert_int_equal(nt_trace_format_parse("cxl", "name: cxl_poison\nID: 9\nformat:\n"
                                           "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
                                           "\tfield:u64 dpa;\toffset:8;\tsize:8;\tsigned:0;\n"
                                           "\tfield:u8 descriptor;\toffset:16;\tsize:1;\tsigned:0;\n", &f), 0);
    rec.fmt = &f;
    assert_int_equal(nt_cxl_decode_trace(&rec, T0, &ev, NULL), -EINVAL);
    nt_trace_format_done(&f);

    /* The name alone is not enough: it must be the cxl system's event. */
    parse_format(GM_612, &f);
    free(f.system);
    f.system = strdup("ras");
    assert_non_null(f.system);
    rec.fmt = &f;
    assert_int_equal(nt_cxl_decode_trace(&rec, T0, &ev, NULL), -EINVAL);
    nt_trace_format_done(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gm_corrected_with_hpa),
        cmocka_unit_test(test_policy_acts_on_hpa_frame),
        cmocka_unit_test(test_uncorrectable),
        cmocka_unit_test(test_hpa_invalid_is_unusable),
        cmocka_unit_test(test_no_hpa_field_is_unusable),
        cmocka_unit_test(test_dram_vs_general_media),
        cmocka_unit_test(test_location_needs_validity),
        cmocka_unit_test(test_flags_names_and_truncation),
        cmocka_unit_test(test_not_a_cxl_kind),
        cmocka_unit_test(test_trace_general_media_612),
        cmocka_unit_test(test_trace_general_media_no_region),
        cmocka_unit_test(test_trace_dram_612),
        cmocka_unit_test(test_trace_general_media_pre_hpa),
        cmocka_unit_test(test_trace_bad_records),
        cmocka_unit_test(test_trace_not_cxl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
