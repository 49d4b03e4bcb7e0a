/* Unit parsers and printers: valid forms, limits, junk, round trips. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "numatier/units.h"
#include "numatier/util.h"

#define SENTINEL UINT64_C(0xdeadbeef)

struct u64_case {
    const char *in;
    int r;
    uint64_t want;
};

/* Failing parses must leave the output alone. */
static void run_u64_cases(int (*parse)(const char *, uint64_t *), const struct u64_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t v = SENTINEL;
        int r = parse(c[i].in, &v);
        if (r != c[i].r || v != (c[i].r == 0 ? c[i].want : SENTINEL))
            fail_msg("\"%s\": got r=%d v=%ju, want r=%d v=%ju", c[i].in, r, (uintmax_t)v, c[i].r,
                     (uintmax_t)(c[i].r == 0 ? c[i].want : SENTINEL));
    }
}

static void test_size(void **state)
{
    (void)state;
    static const struct u64_case cases[] = {
        { "0", 0, 0 }, { "512", 0, 512 }, { "512B", 0, 512 }, { "512b", 0, 512 },
        { "1K", 0, 1024 }, { "1k", 0, 1024 }, { "1KB", 0, 1024 }, { "1KiB", 0, 1024 },
        { "1kib", 0, 1024 }, { "1kIB", 0, 1024 }, { "512M", 0, 512ull << 20 },
        { "512MiB", 0, 512ull << 20 }, { "2G", 0, 2ull << 30 }, { "2gb", 0, 2ull << 30 },
        { "1T", 0, 1ull << 40 }, { "3TiB", 0, 3ull << 40 },
        { " 64K ", 0, 64 << 10 }, { "64 K", 0, 64 << 10 }, { "\t1M\n", 0, 1 << 20 },
        { "007", 0, 7 },
        /* limits */
        { "18446744073709551615", 0, UINT64_MAX },
        { "18446744073709551616", -ERANGE, 0 },
        { "99999999999999999999999", -ERANGE, 0 },
        { "16777215T", 0, 16777215ull << 40 },
        { "16777216T", -ERANGE, 0 },
        { "17179869184G", -ERANGE, 0 },
        /* junk */
        { "", -EINVAL, 0 }, { "   ", -EINVAL, 0 }, { "K", -EINVAL, 0 }, { "12X", -EINVAL, 0 },
        { "12KX", -EINVAL, 0 }, { "12iB", -EINVAL, 0 }, { "12 K B", -EINVAL, 0 },
        { "12P", -EINVAL, 0 }, { "1.5M", -EINVAL, 0 }, { "0x10", -EINVAL, 0 },
        { "1e3", -EINVAL, 0 }, { "1 2", -EINVAL, 0 },
        /* signs */
        { "-1", -EINVAL, 0 }, { "-0", -EINVAL, 0 }, { "+1", -EINVAL, 0 }, { " -5M", -EINVAL, 0 },
    };
    run_u64_cases(nt_parse_size, cases, NT_ARRAY_SIZE(cases));
}

static void test_duration(void **state)
{
    (void)state;
    static const struct u64_case cases[] = {
        { "0s", 0, 0 }, { "5us", 0, 5 }, { "100ms", 0, 100000 }, { "30s", 0, 30000000 },
        { "1m", 0, 60000000 }, { "5min", 0, 300000000 }, { "2h", 0, 7200000000ull },
        { "1d", 0, 86400000000ull }, { " 30s ", 0, 30000000 }, { "30 s", 0, 30000000 },
        { "\t10ms\n", 0, 10000 },
        /* limits */
        { "18446744073709551615us", 0, UINT64_MAX },
        { "18446744073709551616us", -ERANGE, 0 },
        { "213503982d", 0, 213503982ull * 86400000000ull },
        { "213503983d", -ERANGE, 0 },
        { "18446744073709552s", -ERANGE, 0 },
        /* a bare number has no unit */
        { "30", -EINVAL, 0 }, { "0", -EINVAL, 0 },
        /* junk and wrong units */
        { "", -EINVAL, 0 }, { " ", -EINVAL, 0 }, { "s", -EINVAL, 0 }, { "30S", -EINVAL, 0 },
        { "30M", -EINVAL, 0 }, { "30sec", -EINVAL, 0 }, { "30ss", -EINVAL, 0 },
        { "1.5s", -EINVAL, 0 }, { "1m30s", -EINVAL, 0 }, { "30 s x", -EINVAL, 0 },
        { "0x1s", -EINVAL, 0 },
        { "-1s", -EINVAL, 0 }, { "+1s", -EINVAL, 0 },
    };
    run_u64_cases(nt_parse_duration, cases, NT_ARRAY_SIZE(cases));
}

static void test_uint(void **state)
{
    (void)state;
    static const struct u64_case cases[] = {
        { "0", 0, 0 }, { "42", 0, 42 }, { " 7 ", 0, 7 },
        { "18446744073709551615", 0, UINT64_MAX }, { "18446744073709551616", -ERANGE, 0 },
        { "", -EINVAL, 0 }, { "-1", -EINVAL, 0 }, { "+1", -EINVAL, 0 }, { "1x", -EINVAL, 0 },
        { "1 2", -EINVAL, 0 }, { "0x10", -EINVAL, 0 }, { "1K", -EINVAL, 0 },
    };
    run_u64_cases(nt_parse_uint, cases, NT_ARRAY_SIZE(cases));
}

static void test_why(void **state)
{
    (void)state;
    uint64_t v;
    const char *why = NULL;
    assert_int_equal(nt_parse_duration_why("30", &v, &why), -EINVAL);
    assert_string_equal(why, "missing unit, e.g. 30s");
    assert_int_equal(nt_parse_duration_why("30x", &v, &why), -EINVAL);
    assert_non_null(strstr(why, "unknown unit"));
    assert_int_equal(nt_parse_duration_why("1.5s", &v, &why), -EINVAL);
    assert_non_null(strstr(why, "whole number"));
    assert_int_equal(nt_parse_size_why("-1", &v, &why), -EINVAL);
    assert_string_equal(why, "must not be negative");
    assert_int_equal(nt_parse_size_why("99999999999999999999", &v, &why), -ERANGE);
    assert_string_equal(why, "number too large");
    assert_int_equal(nt_parse_size_why("", &v, &why), -EINVAL);
    assert_string_equal(why, "empty value");
    bool b;
    assert_int_equal(nt_parse_bool_why("maybe", &b, &why), -EINVAL);
    assert_non_null(strstr(why, "yes/no"));
    struct nt_nodeset set;
    assert_int_equal(nt_parse_nodelist_why("3-2", &set, &why), -EINVAL);
    assert_string_equal(why, "range ends before it starts");
    double pct;
    assert_int_equal(nt_parse_percent_why("101", &pct, &why), -ERANGE);
    assert_string_equal(why, "must be between 0 and 100");
    /* why is optional */
    assert_int_equal(nt_parse_size_why("x", &v, NULL), -EINVAL);
}

static void test_percent(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int r;
        double want;
    } cases[] = {
        { "5%", 0, 5 }, { "5", 0, 5 }, { "0", 0, 0 }, { "0%", 0, 0 }, { "100", 0, 100 },
        { "100%", 0, 100 }, { "12.5%", 0, 12.5 }, { "0.5", 0, 0.5 }, { ".5", 0, 0.5 },
        { "5.", 0, 5 }, { " 5 % ", 0, 5 }, { "5 %", 0, 5 }, { "100.0", 0, 100 },
        { "100.1", -ERANGE, 0 }, { "101%", -ERANGE, 0 }, { "1000000", -ERANGE, 0 },
        { "-1", -EINVAL, 0 }, { "-0", -EINVAL, 0 }, { "+5", -EINVAL, 0 }, { "5%%", -EINVAL, 0 },
        { "%", -EINVAL, 0 }, { "", -EINVAL, 0 }, { "abc", -EINVAL, 0 }, { "1e2", -EINVAL, 0 },
        { "inf", -EINVAL, 0 }, { "nan", -EINVAL, 0 }, { "0x10", -EINVAL, 0 }, { "1.2.3", -EINVAL, 0 },
        { ".", -EINVAL, 0 }, { "5 5", -EINVAL, 0 }, { "%5", -EINVAL, 0 },
        { "1234567890123456789012345678901234567890123456789012345678901234567890", -EINVAL, 0 },
    };
    for (size_t i = 0; i < NT_ARRAY_SIZE(cases); i++) {
        double v = -1;
        int r = nt_parse_percent(cases[i].in, &v);
        if (r != cases[i].r || v != (r == 0 ? cases[i].want : -1))
            fail_msg("\"%s\": got r=%d v=%g, want r=%d v=%g", cases[i].in, r, v, cases[i].r, cases[i].want);
    }
}

static void test_bool(void **state)
{
    (void)state;
    static const char *const yes[] = { "yes", "YES", "Yes", "true", "TRUE", "on", "On", "1", " yes ", "\ttrue\n" };
    static const char *const no[] = { "no", "NO", "false", "False", "off", "OFF", "0", " no " };
    static const char *const bad[] = { "", " ", "2", "yess", "y", "n", "ye s", "enable", "-1", "00", "10" };
    for (size_t i = 0; i < NT_ARRAY_SIZE(yes); i++) {
        bool b = false;
        assert_int_equal(nt_parse_bool(yes[i], &b), 0);
        assert_true(b);
    }
    for (size_t i = 0; i < NT_ARRAY_SIZE(no); i++) {
        bool b = true;
        assert_int_equal(nt_parse_bool(no[i], &b), 0);
        assert_false(b);
    }
    for (size_t i = 0; i < NT_ARRAY_SIZE(bad); i++) {
        bool b = true;
        if (nt_parse_bool(bad[i], &b) != -EINVAL || !b)
            fail_msg("\"%s\" accepted as a boolean", bad[i]);
    }
}

static void assert_nodelist(const char *in, const char *want_formatted)
{
    struct nt_nodeset set;
    memset(&set, 0xff, sizeof(set));
    if (nt_parse_nodelist(in, &set) != 0)
        fail_msg("\"%s\" rejected", in);
    char buf[NT_NODELIST_STRLEN];
    nt_format_nodelist(&set, buf, sizeof(buf));
    if (strcmp(buf, want_formatted) != 0)
        fail_msg("\"%s\" formats as \"%s\", want \"%s\"", in, buf, want_formatted);
}

static void test_nodelist(void **state)
{
    (void)state;
    assert_nodelist("", "");
    assert_nodelist("   ", "");
    assert_nodelist("2", "2");
    assert_nodelist("2,3", "2-3");
    assert_nodelist("2-3", "2-3");
    assert_nodelist("0-3,8", "0-3,8");
    assert_nodelist(" 1 , 3 - 5 ", "1,3-5");
    assert_nodelist("5,1,3", "1,3,5");
    assert_nodelist("1-3,2,2", "1-3");
    assert_nodelist("4-4", "4");
    assert_nodelist("1023", "1023");
    assert_nodelist("0-1023", "0-1023");
    assert_nodelist("0,1022-1023", "0,1022-1023");

    static const struct {
        const char *in;
        int r;
    } bad[] = {
        { "1024", -ERANGE }, { "0-1024", -ERANGE }, { "99999999999999999999999", -ERANGE },
        { "3-2", -EINVAL }, { "2,", -EINVAL }, { ",2", -EINVAL }, { "2,,3", -EINVAL },
        { ",", -EINVAL }, { "a", -EINVAL }, { "-1", -EINVAL }, { "2-", -EINVAL },
        { "-", -EINVAL }, { "1 2", -EINVAL }, { "1-2-3", -EINVAL }, { "2;3", -EINVAL },
        { "0x1", -EINVAL }, { "+1", -EINVAL }, { "1-+2", -EINVAL },
    };
    for (size_t i = 0; i < NT_ARRAY_SIZE(bad); i++) {
        struct nt_nodeset set = { { 0 } };
        nt_nodeset_set(&set, 7);
        int r = nt_parse_nodelist(bad[i].in, &set);
        if (r != bad[i].r)
            fail_msg("\"%s\": got %d, want %d", bad[i].in, r, bad[i].r);
        /* untouched on failure, even after a valid first element */
        assert_true(nt_nodeset_test(&set, 7));
        assert_false(nt_nodeset_test(&set, 2));
    }
}

static void test_format_size(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        const char *want;
    } cases[] = {
        { 0, "0" }, { 1, "1" }, { 1023, "1023" }, { 1024, "1K" }, { 1536, "1536" },
        { 65536, "64K" }, { 1025ull << 10, "1025K" }, { 512ull << 20, "512M" },
        { 1ull << 30, "1G" }, { 3ull << 40, "3T" }, { 1024ull << 40, "1024T" },
        { UINT64_MAX, "18446744073709551615" },
    };
    char buf[NT_SIZE_STRLEN];
    for (size_t i = 0; i < NT_ARRAY_SIZE(cases); i++) {
        nt_format_size(cases[i].v, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].want);
    }
}

static void test_format_duration(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        const char *want;
    } cases[] = {
        { 0, "0s" }, { 1, "1us" }, { 1500, "1500us" }, { 1000, "1ms" },
        { 1500000, "1500ms" }, { 30000000, "30s" }, { 60000000, "1min" }, { 90000000, "90s" },
        { 3600000000ull, "1h" }, { 5400000000ull, "90min" }, { 86400000000ull, "1d" },
        { 172800000000ull, "2d" }, { UINT64_MAX, "18446744073709551615us" },
    };
    char buf[NT_DURATION_STRLEN];
    for (size_t i = 0; i < NT_ARRAY_SIZE(cases); i++) {
        nt_format_duration(cases[i].v, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].want);
    }
}

/* Deterministic values spread over all magnitudes and unit boundaries. */
static uint64_t next_value(uint64_t *seed)
{
    *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t x = *seed >> 11;
    unsigned shift = (unsigned)(*seed >> 58);     /* 0..63 */
    uint64_t v = x >> (shift % 53);
    /* Round to multiples of units some of the time. */
    static const uint64_t mults[] = { 1, 1000, 1024, 1000000, 60000000, 1ull << 30, 86400000000ull };
    uint64_t m = mults[(*seed >> 20) % NT_ARRAY_SIZE(mults)];
    return v / m * m;
}

static void test_round_trips(void **state)
{
    (void)state;
    uint64_t seed = 42;
    char buf[NT_NODELIST_STRLEN];
    for (int i = 0; i < 20000; i++) {
        uint64_t v = next_value(&seed), back = 0;
        nt_format_size(v, buf, sizeof(buf));
        assert_int_equal(nt_parse_size(buf, &back), 0);
        assert_true(back == v);
        nt_format_duration(v, buf, sizeof(buf));
        assert_int_equal(nt_parse_duration(buf, &back), 0);
        assert_true(back == v);
    }
    for (int i = 0; i < 2000; i++) {
        struct nt_nodeset set = { { 0 } }, back;
        unsigned density = (unsigned)(next_value(&seed) % 4) + 1;
        for (int n = 0; n < NT_MAX_NODES; n++)
            if (next_value(&seed) % density == 0)
                nt_nodeset_set(&set, n);
        nt_format_nodelist(&set, buf, sizeof(buf));
        assert_int_equal(nt_parse_nodelist(buf, &back), 0);
        assert_memory_equal(&set, &back, sizeof(set));
    }
}

static void test_nodelist_worst_case_and_truncation(void **state)
{
    (void)state;
    /* Every other node gives the longest list. */
    struct nt_nodeset set = { { 0 } }, back;
    for (int n = 0; n < NT_MAX_NODES; n += 2)
        nt_nodeset_set(&set, n);
    char buf[NT_NODELIST_STRLEN];
    nt_format_nodelist(&set, buf, sizeof(buf));
    assert_true(strlen(buf) < sizeof(buf) - 1);
    assert_int_equal(nt_parse_nodelist(buf, &back), 0);
    assert_memory_equal(&set, &back, sizeof(set));

    char small[6];
    memset(small, 'x', sizeof(small));
    nt_format_nodelist(&set, small, sizeof(small));
    assert_string_equal(small, "0,2,4");
    char none = 'x';
    nt_format_nodelist(&set, &none, 0);
    assert_int_equal(none, 'x');
    char one[1];
    nt_format_nodelist(&set, one, sizeof(one));
    assert_int_equal(one[0], '\0');

    char tiny[3];
    nt_format_size(512ull << 20, tiny, sizeof(tiny));
    assert_string_equal(tiny, "51");
    nt_format_duration(1500000, tiny, sizeof(tiny));
    assert_string_equal(tiny, "15");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_uint),
        cmocka_unit_test(test_why),
        cmocka_unit_test(test_percent),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_nodelist),
        cmocka_unit_test(test_format_size),
        cmocka_unit_test(test_format_duration),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_nodelist_worst_case_and_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
