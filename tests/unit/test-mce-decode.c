/* RAS decoders: mce:mce_record, ras:mc_event, ras:memory_failure_event. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "numatier/ras.h"

#define T0 UINT64_C(1700000000000000)

/* What QEMU's `mce 0 8 0x9c0000000000009f 0 0x50000000 0x8c` delivers
 * on an Intel CPU model: VAL|EN|MISCV|ADDRV, memory read, channel unknown;
 * MISC physical mode, LSB 12. */
static struct nt_mce_record scenario_record(void)
{
    return (struct nt_mce_record){
        .status = UINT64_C(0x9c0000000000009f),
        .misc = 0x8c,
        .addr = 0x50000000,
        .bank = 8,
        .cpu = 1,
        .socketid = 0,
        .cpuvendor = NT_X86_VENDOR_INTEL,
    };
}

static void assert_contains(const char *s, const char *sub)
{
    if (!strstr(s, sub))
        fail_msg("\"%s\" does not contain \"%s\"", s, sub);
}

static void test_mce_scenario(void **state)
{
    (void)state;
    struct nt_mce_record r = scenario_record();
    struct nt_ras_event ev;
    assert_int_equal(nt_mce_decode(&r, T0, &ev), 0);
    assert_int_equal(ev.source, NT_RAS_MCE);
    assert_int_equal(ev.time_usec, T0);
    assert_true(ev.corrected);
    assert_int_equal(ev.severity, NT_RAS_SEV_CORRECTED);
    assert_true(ev.addr_valid);
    assert_string_equal(ev.why_unusable, "");
    assert_true(nt_ras_event_usable(&ev));
    assert_int_equal(ev.u.mce.addr_mode, NT_MCE_ADDR_PHYSICAL);
    assert_int_equal(ev.u.mce.addr_lsb, 12);
    assert_int_equal(ev.grain_bytes, 4096);
    assert_int_equal(ev.phys_addr, 0x50000000);
    assert_true(ev.memory_error);
    assert_int_equal(ev.mcacod, 0x9f);
    assert_int_equal(ev.u.mce.class_, NT_MCE_CLASS_MEMCTRL);
    assert_int_equal(ev.bank, 8);
    assert_int_equal(ev.cpu, 1);
    assert_int_equal(ev.socket, 0);
    assert_int_equal(ev.node, -1);
    assert_int_equal(ev.count, 1);
    assert_false(ev.u.mce.overflow);
    assert_contains(ev.detail, "memory-controller read channel ?");
    assert_contains(ev.detail, "bank 8");
    assert_contains(ev.detail, "addr 0x50000000/4K");
}

/* platform.md's first try, MISC 0x86: physical, LSB 6 -> a cache line. */
static void test_mce_cacheline_grain(void **state)
{
    (void)state;
    struct nt_mce_record r = scenario_record();
    r.misc = 0x86;
    r.addr = 0x500007c5;
    struct nt_ras_event ev;
    assert_int_equal(nt_mce_decode(&r, T0, &ev), 0);
    assert_true(nt_ras_event_usable(&ev));
    assert_int_equal(ev.grain_bytes, 64);
    assert_int_equal(ev.phys_addr, 0x500007c0);
}

static void test_mce_address_masked_to_lsb(void **state)
{
    (void)state;
    struct nt_mce_record r = scenario_record();
    r.addr = 0x50000abc;
    struct nt_ras_event ev;
    nt_mce_decode(&r, T0, &ev);
    assert_int_equal(ev.phys_addr, 0x50000000);
}

static void test_mce_uncorrected(void **state)
{
    (void)state;
    struct nt_mce_record r = scenario_record();
    r.status |= NT_MCI_STATUS_UC;
    struct nt_ras_event ev;
    assert_int_equal(nt_mce_decode(&r, T0, &ev), 0);
    assert_false(ev.corrected);
    assert_int_equal(ev.severity, NT_RAS_SEV_UNCORRECTED);
    assert_true(ev.addr_valid);             /* the address is fine; the policy ignores UC */
    assert_contains(ev.detail, "MCE uncorrected");

    r.status |= NT_MCI_STATUS_PCC;
    nt_mce_decode(&r, T0, &ev);
    assert_false(ev.corrected);
    assert_int_equal(ev.severity, NT_RAS_SEV_FATAL);
    assert_true(ev.u.mce.pcc);
}

static void test_mce_addrv_clear(void **state)
{
    (void)state;
    struct nt_mce_record r = scenario_record();
    r.status &= ~NT_MCI_STATUS_ADDRV;
    struct nt_ras_event ev;
    assert_int_equal(nt_mce_decode(&r, T0, &ev), 0);
    assert_true(ev.corrected);
    assert_false(ev.addr_valid);
    assert_false(nt_ras_event_usable(&ev));
    assert_contains(ev.why_unusable, "ADDRV clear");
}

static void test_mce_miscv_clear(void **state)
{
    (void)state;
    struct nt_mce_record r = scenario_record();
    r.status &= ~NT_MCI_STATUS_MISCV;
    struct nt_ras_event ev;
    nt_mce_decode(&r, T0, &ev);
    assert_false(nt_ras_event_usable(&ev));
    assert_int_equal(ev.u.mce.addr_mode, NT_MCE_ADDR_UNKNOWN);
    assert_contains(ev.why_unusable, "MISCV clear");
    assert_contains(ev.detail, "(unusable)");
}

static void test_mce_mode_not_physical(void **state)
{
    (void)state;
    static const struct { uint64_t misc; enum nt_mce_addr_mode mode; const char *name; } cases[] = {
        { 0x0c, NT_MCE_ADDR_SEGMENT, "segment" },
        { 0x4c, NT_MCE_ADDR_LINEAR, "linear" },
        { 0xcc, NT_MCE_ADDR_MEMORY, "memory" },
        { 0x1cc, NT_MCE_ADDR_GENERIC, "generic" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct nt_mce_record r = scenario_record();
        r.misc = cases[i].misc;
        struct nt_ras_event ev;
        nt_mce_decode(&r, T0, &ev);
        assert_int_equal(ev.u.mce.addr_mode, cases[i].mode);
        assert_false(ev.addr_valid);
        assert_contains(ev.why_unusable, "not physical");
        assert_contains(ev.why_unusable, cases[i].name);
    }
}

/* LSB 21: the address is right, but only to 2 MiB. Usable; the ECC policy
 * then records it without charging any frame (see test-ecc). */
static void test_mce_coarse_grain(void **state)
{
    (void)state;
    struct nt_mce_record r = scenario_record();
    r.misc = 0x80 | 21;
    r.addr = 0x50123456;
    struct nt_ras_event ev;
    assert_int_equal(nt_mce_decode(&r, T0, &ev), 0);
    assert_true(nt_ras_event_usable(&ev));
    assert_int_equal(ev.u.mce.addr_lsb, 21);
    assert_int_equal(ev.grain_bytes, 2 << 20);
    assert_int_equal(ev.phys_addr, 0x50000000);
    assert_contains(ev.detail, "addr 0x50000000/2M");
}

static void test_mce_val_clear(void **state)
{
    (void)state;
    struct nt_mce_record r = scenario_record();
    r.status &= ~NT_MCI_STATUS_VAL;
    struct nt_ras_event ev;
    assert_int_equal(nt_mce_decode(&r, T0, &ev), -EINVAL);
    assert_false(nt_ras_event_usable(&ev));
    assert_contains(ev.why_unusable, "VAL clear");
}

static void test_mce_overflow_and_fields(void **state)
{
    (void)state;
    struct nt_mce_record r = scenario_record();
    r.status |= NT_MCI_STATUS_OVER | (UINT64_C(0x0123) << 16);
    r.mcgstatus = 0x5;
    r.socketid = 1;
    struct nt_ras_event ev;
    nt_mce_decode(&r, T0, &ev);
    assert_true(ev.corrected);
    assert_true(ev.u.mce.overflow);
    assert_int_equal(ev.u.mce.mscod, 0x0123);
    assert_int_equal(ev.u.mce.status, r.status);
    assert_int_equal(ev.u.mce.mcgstatus, 5);
    assert_int_equal(ev.socket, 1);
    assert_contains(ev.detail, "OVER");
    assert_contains(ev.detail, "mscod 0x0123");
}

static void test_mce_classify(void **state)
{
    (void)state;
    static const struct { uint16_t mcacod; enum nt_mce_class c; } cases[] = {
        { 0x009f, NT_MCE_CLASS_MEMCTRL },       /* read, channel unspecified */
        { 0x109f, NT_MCE_CLASS_MEMCTRL },       /* same with the filter bit */
        { 0x0090, NT_MCE_CLASS_MEMCTRL },       /* read, channel 0 */
        { 0x00c1, NT_MCE_CLASS_MEMCTRL },       /* scrub, channel 1 */
        { 0x0080, NT_MCE_CLASS_MEMCTRL },       /* generic */
        { 0x0150, NT_MCE_CLASS_CACHE },         /* 0000 0001 RRRR TTLL */
        { 0x0136, NT_MCE_CLASS_CACHE },
        { 0x000e, NT_MCE_CLASS_GENERIC_CACHE },
        { 0x0015, NT_MCE_CLASS_TLB },
        { 0x0e0b, NT_MCE_CLASS_BUS },
        { 0x0c8f, NT_MCE_CLASS_BUS },           /* bit 7 set, but a bus error */
        { 0x0400, NT_MCE_CLASS_OTHER },         /* internal timer */
        { 0x0005, NT_MCE_CLASS_OTHER },         /* internal parity */
        { 0x0000, NT_MCE_CLASS_OTHER },
        { 0x409f, NT_MCE_CLASS_OTHER },         /* bit 14 set: not a compound code */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (nt_mce_classify(cases[i].mcacod) != cases[i].c)
            fail_msg("mcacod 0x%04x: got %s, want %s", cases[i].mcacod,
                     nt_mce_class_name(nt_mce_classify(cases[i].mcacod)), nt_mce_class_name(cases[i].c));
    }
}

/* A corrected cache error at a physical address says nothing about DRAM. */
static void test_mce_cache_error_not_memory(void **state)
{
    (void)state;
    struct nt_mce_record r = scenario_record();
    r.status = (r.status & ~UINT64_C(0xffff)) | 0x0136;
    struct nt_ras_event ev;
    nt_mce_decode(&r, T0, &ev);
    assert_true(ev.corrected);
    assert_true(ev.addr_valid);
    assert_false(ev.memory_error);
    assert_int_equal(ev.u.mce.class_, NT_MCE_CLASS_CACHE);
}

static void test_mce_amd(void **state)
{
    (void)state;
    /* SMCA UMC (hwid 0x96, mcatype 0), xec 0: DRAM ECC, but a normalised address. */
    struct nt_mce_record r = {
        .status = UINT64_C(0x9c2040000000011b),
        .misc = 0xd01a000000000000,
        .addr = (UINT64_C(6) << 56) | 0x1234567c0,
        .ipid = UINT64_C(0x0000009600150f00),
        .bank = 17,
        .cpuvendor = NT_X86_VENDOR_AMD,
    };
    struct nt_ras_event ev;
    assert_int_equal(nt_mce_decode(&r, T0, &ev), 0);
    assert_true(ev.corrected);
    assert_int_equal(ev.u.mce.class_, NT_MCE_CLASS_AMD_UMC);
    assert_true(ev.memory_error);
    assert_false(nt_ras_event_usable(&ev));
    assert_int_equal(ev.u.mce.addr_lsb, 6);
    assert_contains(ev.why_unusable, "AMD");

    /* Pre-SMCA: bank 4, extended error code 8. */
    r = (struct nt_mce_record){
        .status = UINT64_C(0x9c08400000000813) | (UINT64_C(0x8) << 16),
        .addr = 0x1000,
        .bank = 4,
        .cpuvendor = NT_X86_VENDOR_HYGON,
    };
    nt_mce_decode(&r, T0, &ev);
    assert_int_equal(ev.u.mce.class_, NT_MCE_CLASS_AMD_NB_DRAM);
    assert_false(nt_ras_event_usable(&ev));

    /* AMD deferred: UC with the deferred bit. */
    r.status |= NT_MCI_STATUS_UC | NT_MCI_STATUS_DEFERRED;
    nt_mce_decode(&r, T0, &ev);
    assert_int_equal(ev.severity, NT_RAS_SEV_DEFERRED);
}

/* Old kernels have no cpuvendor: MISC rules apply, as on Intel. */
static void test_mce_vendor_unknown(void **state)
{
    (void)state;
    struct nt_mce_record r = scenario_record();
    r.cpuvendor = NT_X86_VENDOR_UNKNOWN;
    struct nt_ras_event ev;
    nt_mce_decode(&r, T0, &ev);
    assert_true(nt_ras_event_usable(&ev));
    assert_int_equal(ev.u.mce.vendor, NT_X86_VENDOR_UNKNOWN);
}

/* ---- EDAC --------------------------------------------------------------- */

static void test_edac_corrected(void **state)
{
    (void)state;
    struct nt_edac_record r = {
        .error_type = 0,
        .error_count = 1,
        .mc_index = 0,
        .top_layer = 0, .middle_layer = 1, .lower_layer = -1,
        .address = (UINT64_C(0x12345) << 12) | 0x6c4,
        .grain_bits = 6,
        .syndrome = 0xab,
        .msg = "memory read error",
        .label = "CPU_SrcID#0_MC#0_Chan#1_DIMM#0",
    };
    struct nt_ras_event ev;
    assert_int_equal(nt_edac_decode(&r, T0, &ev), 0);
    assert_int_equal(ev.source, NT_RAS_EDAC);
    assert_true(ev.corrected);
    assert_true(ev.memory_error);
    assert_true(nt_ras_event_usable(&ev));
    assert_int_equal(ev.grain_bytes, 64);
    assert_int_equal(ev.phys_addr, 0x123456c0);
    assert_int_equal(ev.count, 1);
    assert_int_equal(ev.u.edac.layer[1], 1);
    assert_int_equal(ev.u.edac.syndrome, 0xab);
    assert_string_equal(ev.u.edac.label, "CPU_SrcID#0_MC#0_Chan#1_DIMM#0");
    assert_int_equal(ev.cpu, -1);
    assert_int_equal(ev.bank, -1);
    assert_contains(ev.detail, "EDAC corrected x1");
    assert_contains(ev.detail, "addr 0x123456c0/64B");
    assert_contains(ev.detail, "memory read error");
}

static void test_edac_uncorrected_and_others(void **state)
{
    (void)state;
    static const struct { uint32_t type; enum nt_ras_severity sev; } cases[] = {
        { 1, NT_RAS_SEV_UNCORRECTED }, { 2, NT_RAS_SEV_DEFERRED },
        { 3, NT_RAS_SEV_FATAL }, { 4, NT_RAS_SEV_INFO }, { 99, NT_RAS_SEV_INFO },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct nt_edac_record r = { .error_type = cases[i].type, .address = 0x50000000, .grain_bits = 12 };
        struct nt_ras_event ev;
        nt_edac_decode(&r, T0, &ev);
        assert_int_equal(ev.severity, cases[i].sev);
        assert_false(ev.corrected);
        assert_true(ev.addr_valid);
    }
}

static void test_edac_no_address(void **state)
{
    (void)state;
    struct nt_edac_record r = { .error_type = 0, .error_count = 0, .grain_bits = 12 };
    struct nt_ras_event ev;
    nt_edac_decode(&r, T0, &ev);
    assert_true(ev.corrected);
    assert_int_equal(ev.count, 1);          /* 0 reads as 1 */
    assert_false(nt_ras_event_usable(&ev));
    assert_contains(ev.why_unusable, "no address");

    r = (struct nt_edac_record){ .address = 0x50000000, .grain_bits = 64 };
    nt_edac_decode(&r, T0, &ev);
    assert_false(nt_ras_event_usable(&ev));
    assert_contains(ev.why_unusable, "grain_bits 64");
}

static void test_edac_count_and_long_strings(void **state)
{
    (void)state;
    char longs[512];
    memset(longs, 'x', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    struct nt_edac_record r = {
        .error_count = 7, .address = 0x50000000, .grain_bits = 12,
        .msg = longs, .label = longs, .driver_detail = longs,
    };
    struct nt_ras_event ev;
    nt_edac_decode(&r, T0, &ev);
    assert_int_equal(ev.count, 7);
    assert_int_equal(strlen(ev.u.edac.label), sizeof(ev.u.edac.label) - 1);
    assert_true(strlen(ev.detail) < sizeof(ev.detail));
    assert_contains(ev.detail, "x7");
}

/* ---- memory_failure_event ----------------------------------------------- */

static void test_memory_failure(void **state)
{
    (void)state;
    struct nt_memfail_record r = {
        .pfn = 0x50000, .type = 14, .result = NT_MF_RECOVERED, .type_name = "clean LRU page",
    };
    struct nt_ras_event ev;
    assert_int_equal(nt_memfail_decode(&r, T0, &ev), 0);
    assert_int_equal(ev.source, NT_RAS_MEMORY_FAILURE);
    assert_false(ev.corrected);
    assert_true(nt_ras_event_usable(&ev));
    assert_int_equal(ev.phys_addr, 0x50000000);
    assert_int_equal(ev.grain_bytes, 4096);
    assert_int_equal(ev.u.mf.result, NT_MF_RECOVERED);
    assert_string_equal(ev.detail, "memory_failure pfn 0x50000 clean LRU page: Recovered");

    r.type_name = NULL;
    r.result = 42;
    nt_memfail_decode(&r, T0, &ev);
    assert_string_equal(ev.detail, "memory_failure pfn 0x50000 type 14: ?");
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(nt_ras_source_name(NT_RAS_MCE), "mce");
    assert_string_equal(nt_ras_source_name(NT_RAS_EDAC), "edac");
    assert_string_equal(nt_ras_source_name(NT_RAS_MEMORY_FAILURE), "memory_failure");
    assert_string_equal(nt_ras_source_name(NT_RAS_CXL_GENERAL_MEDIA), "cxl_general_media");
    assert_string_equal(nt_ras_source_name(NT_RAS_CXL_DRAM), "cxl_dram");
    assert_string_equal(nt_ras_source_name((enum nt_ras_source)77), "?");
    assert_string_equal(nt_ras_severity_name(NT_RAS_SEV_DEFERRED), "deferred");
    assert_string_equal(nt_mce_addr_mode_name((enum nt_mce_addr_mode)4), "reserved");
    assert_string_equal(nt_mf_result_name(NT_MF_DELAYED), "Delayed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mce_scenario),
        cmocka_unit_test(test_mce_cacheline_grain),
        cmocka_unit_test(test_mce_address_masked_to_lsb),
        cmocka_unit_test(test_mce_uncorrected),
        cmocka_unit_test(test_mce_addrv_clear),
        cmocka_unit_test(test_mce_miscv_clear),
        cmocka_unit_test(test_mce_mode_not_physical),
        cmocka_unit_test(test_mce_coarse_grain),
        cmocka_unit_test(test_mce_val_clear),
        cmocka_unit_test(test_mce_overflow_and_fields),
        cmocka_unit_test(test_mce_classify),
        cmocka_unit_test(test_mce_cache_error_not_memory),
        cmocka_unit_test(test_mce_amd),
        cmocka_unit_test(test_mce_vendor_unknown),
        cmocka_unit_test(test_edac_corrected),
        cmocka_unit_test(test_edac_uncorrected_and_others),
        cmocka_unit_test(test_edac_no_address),
        cmocka_unit_test(test_edac_count_and_long_strings),
        cmocka_unit_test(test_memory_failure),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
