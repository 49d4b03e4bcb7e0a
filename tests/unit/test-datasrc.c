/* data_src decoding: the values Intel PEBS and AMD IBS put in
 * PERF_SAMPLE_DATA_SRC, built with the uapi macros the way the kernel's
 * tables build them (arch/x86/events/intel/ds.c, arch/x86/events/amd/ibs.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <linux/perf_event.h>

#include "numatier/perf.h"
#include "numatier/sampler.h"

#ifndef PERF_MEM_LVLNUM_UNC
#define PERF_MEM_LVLNUM_UNC 0x08
#endif

#define P(a, b)   PERF_MEM_S(a, b)
#define LEVEL(x)  P(LVLNUM, x)
#define REM       P(REMOTE, REMOTE)
#define HOPS(x)   P(HOPS, x)
#define OP_LH     (P(OP, LOAD) | P(LVL, HIT))
/* The TLB and lock bits the kernel adds to every load: must not matter. */
#define TLB_HIT   (P(TLB, HIT) | P(TLB, L1) | P(TLB, L2))
/* AMD IBS: a level with its hit bit. */
#define L(x)      (P(LVL, x) | P(LVL, HIT))
#define LN(x)     LEVEL(x)

struct expect {
    const char *what;
    uint64_t data_src;
    enum nt_mem_source source;
};

static void check(const struct expect *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        enum nt_mem_source got = nt_mem_source_from_data_src(e[i].data_src);
        if (got != e[i].source)
            fail_msg("%s (%#llx): got %s, want %s", e[i].what, (unsigned long long)e[i].data_src,
                     nt_mem_source_to_string(got), nt_mem_source_to_string(e[i].source));
    }
}

#define CHECK(table) check(table, sizeof(table) / sizeof(table[0]))

/* Sandy Bridge and later: the base PEBS data source table. */
static void test_intel_snb(void **state)
{
    (void)state;
    static const struct expect t[] = {
        { "0x00 unknown L3 miss", P(OP, LOAD) | P(LVL, MISS) | LEVEL(L3) | P(SNOOP, NA), NT_MEM_SRC_UNKNOWN },
        { "0x01 L1 hit", OP_LH | P(LVL, L1) | LEVEL(L1) | P(SNOOP, NONE) | TLB_HIT, NT_MEM_SRC_CACHE },
        { "0x02 LFB hit", OP_LH | P(LVL, LFB) | LEVEL(LFB) | P(SNOOP, NONE), NT_MEM_SRC_CACHE },
        { "0x03 L2 hit", OP_LH | P(LVL, L2) | LEVEL(L2) | P(SNOOP, NONE), NT_MEM_SRC_CACHE },
        { "0x04 L3 hit", OP_LH | P(LVL, L3) | LEVEL(L3) | P(SNOOP, NONE), NT_MEM_SRC_CACHE },
        { "0x06 L3 hit, snoop hit", OP_LH | P(LVL, L3) | LEVEL(L3) | P(SNOOP, HIT), NT_MEM_SRC_CACHE },
        { "0x07 L3 hit, local HITM", OP_LH | P(LVL, L3) | LEVEL(L3) | P(SNOOP, HITM), NT_MEM_SRC_CACHE },
        { "0x08 remote cache, snoop hit",
          OP_LH | P(LVL, REM_CCE1) | REM | LEVEL(L3) | P(SNOOP, HIT), NT_MEM_SRC_REMOTE_CACHE },
        { "0x09 remote cache HITM",
          OP_LH | P(LVL, REM_CCE1) | REM | LEVEL(L3) | P(SNOOP, HITM), NT_MEM_SRC_REMOTE_CACHE },
        { "0x0a local DRAM, shared", OP_LH | P(LVL, LOC_RAM) | LEVEL(RAM) | P(SNOOP, HIT), NT_MEM_SRC_LOCAL_DRAM },
        /* The quirk: remote DRAM with lvl_num L3, only the legacy bit knows. */
        { "0x0b remote DRAM as L3 + REM_RAM1",
          OP_LH | P(LVL, REM_RAM1) | REM | LEVEL(L3) | P(SNOOP, HIT), NT_MEM_SRC_REMOTE_DRAM },
        { "0x0c local DRAM, exclusive",
          OP_LH | P(LVL, LOC_RAM) | LEVEL(RAM) | P(SNOOP, NONE) | P(SNOOP, MISS) | TLB_HIT, NT_MEM_SRC_LOCAL_DRAM },
        { "0x0d remote DRAM, exclusive",
          OP_LH | P(LVL, REM_RAM1) | LEVEL(RAM) | REM | P(SNOOP, NONE) | P(SNOOP, MISS), NT_MEM_SRC_REMOTE_DRAM },
        { "0x0e I/O", OP_LH | P(LVL, IO) | LEVEL(NA) | P(SNOOP, NONE), NT_MEM_SRC_UNKNOWN },
        { "0x0f uncached", OP_LH | P(LVL, UNC) | LEVEL(NA) | P(SNOOP, NONE), NT_MEM_SRC_UNKNOWN },
    };
    CHECK(t);
}

/* Skylake server and later patch entries 0x08-0x0d (lvl_num only). */
static void test_intel_skx(void **state)
{
    (void)state;
    static const struct expect t[] = {
        { "0x08 PMEM (Optane)", OP_LH | LEVEL(PMEM) | P(SNOOP, HIT), NT_MEM_SRC_SLOW_MEM },
        { "0x09 remote PMEM", OP_LH | LEVEL(PMEM) | REM | P(SNOOP, HIT), NT_MEM_SRC_SLOW_MEM },
        { "0x08 L4 without PMEM", OP_LH | LEVEL(L4) | P(SNOOP, HIT), NT_MEM_SRC_CACHE },
        { "0x0b remote DRAM", OP_LH | LEVEL(RAM) | REM | P(SNOOP, NONE), NT_MEM_SRC_REMOTE_DRAM },
        { "0x0c remote cache forward", OP_LH | LEVEL(ANY_CACHE) | REM | P(SNOOPX, FWD), NT_MEM_SRC_REMOTE_CACHE },
        { "0x0d remote cache HITM", OP_LH | LEVEL(ANY_CACHE) | REM | P(SNOOP, HITM), NT_MEM_SRC_REMOTE_CACHE },
        { "remote DRAM as ANY_CACHE + REM_RAM1",
          OP_LH | P(LVL, REM_RAM1) | LEVEL(ANY_CACHE) | REM, NT_MEM_SRC_REMOTE_DRAM },
        { "CXL memory", OP_LH | LEVEL(CXL), NT_MEM_SRC_SLOW_MEM },
        { "remote CXL memory", OP_LH | LEVEL(CXL) | REM | HOPS(2), NT_MEM_SRC_SLOW_MEM },
        { "remote DRAM, two hops", OP_LH | P(LVL, REM_RAM2) | LEVEL(RAM) | REM | HOPS(2), NT_MEM_SRC_REMOTE_DRAM },
    };
    CHECK(t);
}

/* Kernels and events that fill only the legacy mem_lvl mask. */
static void test_legacy_only(void **state)
{
    (void)state;
    static const struct expect t[] = {
        { "nothing at all", 0, NT_MEM_SRC_UNKNOWN },
        { "all N/A", P(OP, NA) | P(LVL, NA) | P(SNOOP, NA) | P(LOCK, NA) | P(TLB, NA), NT_MEM_SRC_UNKNOWN },
        { "L1 hit", P(OP, LOAD) | P(LVL, HIT) | P(LVL, L1), NT_MEM_SRC_CACHE },
        { "L1 miss", P(OP, LOAD) | P(LVL, MISS) | P(LVL, L1), NT_MEM_SRC_UNKNOWN },
        { "L3 hit", P(OP, LOAD) | P(LVL, HIT) | P(LVL, L3), NT_MEM_SRC_CACHE },
        { "local DRAM", P(OP, LOAD) | P(LVL, HIT) | P(LVL, LOC_RAM), NT_MEM_SRC_LOCAL_DRAM },
        { "remote DRAM 1 hop", P(OP, LOAD) | P(LVL, HIT) | P(LVL, REM_RAM1), NT_MEM_SRC_REMOTE_DRAM },
        { "remote DRAM 2 hops", P(OP, LOAD) | P(LVL, HIT) | P(LVL, REM_RAM2), NT_MEM_SRC_REMOTE_DRAM },
        { "remote cache 2 hops", P(OP, LOAD) | P(LVL, HIT) | P(LVL, REM_CCE2), NT_MEM_SRC_REMOTE_CACHE },
        { "I/O", P(OP, LOAD) | P(LVL, HIT) | P(LVL, IO), NT_MEM_SRC_UNKNOWN },
    };
    CHECK(t);
}

/* Zen 4 IBS (g_zen4_data_src) with and without the remote-node bit. */
static void test_amd_zen4(void **state)
{
    (void)state;
    static const struct expect t[] = {
        { "L1 hit", P(OP, LOAD) | L(L1) | LN(L1), NT_MEM_SRC_CACHE },
        { "L2 hit", P(OP, LOAD) | L(L2) | LN(L2), NT_MEM_SRC_CACHE },
        { "local L3", P(OP, LOAD) | L(L3) | LN(L3), NT_MEM_SRC_CACHE },
        { "near CCX (same node)", P(OP, LOAD) | L(REM_CCE1) | LN(ANY_CACHE) | REM | HOPS(0), NT_MEM_SRC_CACHE },
        { "far CCX (other node)", P(OP, LOAD) | L(REM_CCE2) | LN(ANY_CACHE) | REM | HOPS(1),
          NT_MEM_SRC_REMOTE_CACHE },
        { "local DRAM", P(OP, LOAD) | L(LOC_RAM) | LN(RAM) | P(TLB, HIT) | P(TLB, L1), NT_MEM_SRC_LOCAL_DRAM },
        { "remote DRAM", P(OP, LOAD) | L(REM_RAM1) | LN(RAM) | REM | HOPS(1), NT_MEM_SRC_REMOTE_DRAM },
        { "local PMEM", P(OP, LOAD) | LN(PMEM), NT_MEM_SRC_SLOW_MEM },
        { "remote PMEM", P(OP, LOAD) | LN(PMEM) | REM | HOPS(1), NT_MEM_SRC_SLOW_MEM },
        { "extension memory (CXL)", P(OP, LOAD) | LN(CXL), NT_MEM_SRC_SLOW_MEM },
        { "remote CXL", P(OP, LOAD) | LN(CXL) | REM | HOPS(1), NT_MEM_SRC_SLOW_MEM },
        { "I/O", P(OP, LOAD) | L(IO) | LN(IO), NT_MEM_SRC_UNKNOWN },
        { "uncached", P(OP, LOAD) | L(UNC) | LN(UNC), NT_MEM_SRC_UNKNOWN },
        { "MAB (fill buffer)", P(OP, LOAD) | L(LFB) | LN(LFB), NT_MEM_SRC_CACHE },
        { "no data source", P(OP, LOAD) | P(LVL, NA) | LN(NA), NT_MEM_SRC_UNKNOWN },
        { "store, L1 hit", P(OP, STORE) | L(L1) | LN(L1), NT_MEM_SRC_CACHE },
    };
    CHECK(t);
}

/* Pre-Zen 4 IBS (g_data_src): coarser sources. */
static void test_amd_zen3(void **state)
{
    (void)state;
    static const struct expect t[] = {
        { "local cache", P(OP, LOAD) | L(L3) | L(REM_CCE1) | LN(ANY_CACHE) | HOPS(0), NT_MEM_SRC_CACHE },
        { "remote cache", P(OP, LOAD) | L(REM_CCE2) | LN(ANY_CACHE) | REM | HOPS(1), NT_MEM_SRC_REMOTE_CACHE },
        { "DRAM", P(OP, LOAD) | L(LOC_RAM) | LN(RAM), NT_MEM_SRC_LOCAL_DRAM },
        { "remote DRAM", P(OP, LOAD) | L(REM_RAM1) | LN(RAM) | REM | HOPS(1), NT_MEM_SRC_REMOTE_DRAM },
    };
    CHECK(t);
}

static void test_to_string(void **state)
{
    (void)state;
    assert_string_equal(nt_mem_source_to_string(NT_MEM_SRC_UNKNOWN), "unknown");
    assert_string_equal(nt_mem_source_to_string(NT_MEM_SRC_CACHE), "cache");
    assert_string_equal(nt_mem_source_to_string(NT_MEM_SRC_LOCAL_DRAM), "local-dram");
    assert_string_equal(nt_mem_source_to_string(NT_MEM_SRC_REMOTE_DRAM), "remote-dram");
    assert_string_equal(nt_mem_source_to_string(NT_MEM_SRC_REMOTE_CACHE), "remote-cache");
    assert_string_equal(nt_mem_source_to_string(NT_MEM_SRC_SLOW_MEM), "slow-mem");
    assert_string_equal(nt_mem_source_to_string((enum nt_mem_source)42), "unknown");
    assert_string_equal(nt_mem_source_to_string((enum nt_mem_source)-1), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intel_snb),
        cmocka_unit_test(test_intel_skx),
        cmocka_unit_test(test_legacy_only),
        cmocka_unit_test(test_amd_zen4),
        cmocka_unit_test(test_amd_zen3),
        cmocka_unit_test(test_to_string),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
