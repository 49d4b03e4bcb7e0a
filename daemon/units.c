/* Unit parsers and printers for config values: sizes, durations,
 * percentages, booleans and node lists. Everything works on a trimmed
 * [b, e) span so that inner whitespace rules stay in one place. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "numatier/units.h"
#include "numatier/util.h"

struct unit {
    const char *name;
    uint64_t mult;
};

/* Suffixes match whole and case-insensitively: "64KiB", "64kb", "64K". */
static const struct unit size_units[] = {
    { "", 1 }, { "b", 1 },
    { "k", UINT64_C(1) << 10 }, { "kb", UINT64_C(1) << 10 }, { "kib", UINT64_C(1) << 10 },
    { "m", UINT64_C(1) << 20 }, { "mb", UINT64_C(1) << 20 }, { "mib", UINT64_C(1) << 20 },
    { "g", UINT64_C(1) << 30 }, { "gb", UINT64_C(1) << 30 }, { "gib", UINT64_C(1) << 30 },
    { "t", UINT64_C(1) << 40 }, { "tb", UINT64_C(1) << 40 }, { "tib", UINT64_C(1) << 40 },
};

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC  (UINT64_C(1000) * USEC_PER_MSEC)
#define USEC_PER_MIN  (UINT64_C(60) * USEC_PER_SEC)
#define USEC_PER_HOUR (UINT64_C(60) * USEC_PER_MIN)
#define USEC_PER_DAY  (UINT64_C(24) * USEC_PER_HOUR)

static const struct unit duration_units[] = {
    { "us", 1 }, { "ms", USEC_PER_MSEC }, { "s", USEC_PER_SEC },
    { "m", USEC_PER_MIN }, { "min", USEC_PER_MIN },
    { "h", USEC_PER_HOUR }, { "d", USEC_PER_DAY },
};

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static void trim(const char **b, const char **e)
{
    while (*b < *e && is_space(**b))
        (*b)++;
    while (*e > *b && is_space((*e)[-1]))
        (*e)--;
}

static const char *skip_space(const char *p, const char *e)
{
    while (p < e && is_space(*p))
        p++;
    return p;
}

static bool span_eq(const char *b, const char *e, const char *lit, bool nocase)
{
    size_t n = (size_t)(e - b);
    if (strlen(lit) != n)
        return false;
    return nocase ? strncasecmp(b, lit, n) == 0 : strncmp(b, lit, n) == 0;
}

static int fail(const char **why, const char *msg, int err)
{
    if (why)
        *why = msg;
    return err;
}

/* Leading decimal digits of [*p, e) into *v; advances *p. */
static int parse_digits(const char **p, const char *e, uint64_t *v, const char **why)
{
    if (*p >= e || !is_digit(**p))
        return fail(why, *p < e && **p == '-' ? "must not be negative" : "not a number", -EINVAL);
    uint64_t acc = 0;
    for (; *p < e && is_digit(**p); (*p)++) {
        unsigned d = (unsigned)(**p - '0');
        if (acc > (UINT64_MAX - d) / 10)
            return fail(why, "number too large", -ERANGE);
        acc = acc * 10 + d;
    }
    *v = acc;
    return 0;
}

static const struct unit *find_unit(const struct unit *units, size_t n,
                                    const char *b, const char *e, bool nocase)
{
    for (size_t i = 0; i < n; i++)
        if (span_eq(b, e, units[i].name, nocase))
            return &units[i];
    return NULL;
}

/* A whole number, optional blanks, then a unit from the table. */
static int parse_with_unit(const char *s, const struct unit *units, size_t n, bool nocase,
                           const char *bad_unit, const char *fraction, uint64_t *out,
                           const char **why)
{
    const char *b = s, *e = s + strlen(s);
    trim(&b, &e);
    if (b == e)
        return fail(why, "empty value", -EINVAL);
    uint64_t v;
    int r = parse_digits(&b, e, &v, why);
    if (r < 0)
        return r;
    if (b < e && *b == '.')
        return fail(why, fraction, -EINVAL);
    b = skip_space(b, e);
    const struct unit *u = find_unit(units, n, b, e, nocase);
    if (!u)
        return fail(why, b == e ? "missing unit, e.g. 30s" : bad_unit, -EINVAL);
    if (v > UINT64_MAX / u->mult)
        return fail(why, "number too large", -ERANGE);
    *out = v * u->mult;
    return 0;
}

int nt_parse_size_why(const char *s, uint64_t *bytes, const char **why)
{
    return parse_with_unit(s, size_units, NT_ARRAY_SIZE(size_units), true,
                           "unknown unit, use K, M, G or T (optionally with B or iB)",
                           "must be a whole number, e.g. 1536K rather than 1.5M",
                           bytes, why);
}

int nt_parse_duration_why(const char *s, uint64_t *usec, const char **why)
{
    return parse_with_unit(s, duration_units, NT_ARRAY_SIZE(duration_units), false,
                           "unknown unit, use us, ms, s, min, h or d",
                           "must be a whole number, e.g. 1500ms rather than 1.5s",
                           usec, why);
}

int nt_parse_uint_why(const char *s, uint64_t *v, const char **why)
{
    const char *b = s, *e = s + strlen(s);
    trim(&b, &e);
    if (b == e)
        return fail(why, "empty value", -EINVAL);
    uint64_t tmp;
    int r = parse_digits(&b, e, &tmp, why);
    if (r < 0)
        return r;
    if (b != e)
        return fail(why, "not a whole number", -EINVAL);
    *v = tmp;
    return 0;
}

/* Digits with at most one '.', and at least one digit: no sign, exponent,
 * hex or "inf" that strtod would take. */
static bool is_plain_decimal(const char *b, const char *e)
{
    bool digit = false, dot = false;
    for (const char *p = b; p < e; p++) {
        if (is_digit(*p))
            digit = true;
        else if (*p == '.' && !dot)
            dot = true;
        else
            return false;
    }
    return digit;
}

int nt_parse_percent_why(const char *s, double *pct, const char **why)
{
    const char *b = s, *e = s + strlen(s);
    trim(&b, &e);
    if (b == e)
        return fail(why, "empty value", -EINVAL);
    if (e[-1] == '%') {
        e--;
        trim(&b, &e);
    }
    if (b < e && *b == '-')
        return fail(why, "must not be negative", -EINVAL);
    char num[64];
    if (!is_plain_decimal(b, e) || (size_t)(e - b) >= sizeof(num))
        return fail(why, "not a percentage, e.g. 5% or 12.5%", -EINVAL);
    memcpy(num, b, (size_t)(e - b));
    num[e - b] = '\0';
    double v = strtod(num, NULL);
    if (v > 100.0)
        return fail(why, "must be between 0 and 100", -ERANGE);
    *pct = v;
    return 0;
}

int nt_parse_bool_why(const char *s, bool *b, const char **why)
{
    static const char *const yes[] = { "yes", "true", "on", "1" };
    static const char *const no[] = { "no", "false", "off", "0" };
    const char *sb = s, *se = s + strlen(s);
    trim(&sb, &se);
    for (size_t i = 0; i < NT_ARRAY_SIZE(yes); i++) {
        if (span_eq(sb, se, yes[i], true)) {
            *b = true;
            return 0;
        }
        if (span_eq(sb, se, no[i], true)) {
            *b = false;
            return 0;
        }
    }
    return fail(why, sb == se ? "empty value" : "not a boolean, use yes/no, true/false, on/off or 1/0",
                -EINVAL);
}

/* One node number inside a list element. */
static int parse_node(const char **p, const char *e, uint64_t *node, const char **why)
{
    int r = parse_digits(p, e, node, why);
    if (r == -ERANGE || (r == 0 && *node >= NT_MAX_NODES))
        return fail(why, "node number too large (nodes are 0 to 1023)", -ERANGE);
    return r;
}

/* "N" or "N-M", with optional blanks around the dash. */
static int parse_node_range(const char *b, const char *e, struct nt_nodeset *set, const char **why)
{
    trim(&b, &e);
    if (b == e)
        return fail(why, "empty element in node list", -EINVAL);
    uint64_t lo, hi;
    int r = parse_node(&b, e, &lo, why);
    if (r < 0)
        return r;
    hi = lo;
    b = skip_space(b, e);
    if (b < e && *b == '-') {
        b = skip_space(b + 1, e);
        r = parse_node(&b, e, &hi, why);
        if (r < 0)
            return r;
        if (hi < lo)
            return fail(why, "range ends before it starts", -EINVAL);
    }
    if (b != e)
        return fail(why, "not a node list, e.g. 2,3 or 0-3", -EINVAL);
    for (uint64_t n = lo; n <= hi; n++)
        nt_nodeset_set(set, (int)n);
    return 0;
}

int nt_parse_nodelist_why(const char *s, struct nt_nodeset *set, const char **why)
{
    struct nt_nodeset tmp = { { 0 } };
    const char *b = s, *e = s + strlen(s);
    trim(&b, &e);
    while (b < e) {
        const char *comma = memchr(b, ',', (size_t)(e - b));
        const char *end = comma ? comma : e;
        int r = parse_node_range(b, end, &tmp, why);
        if (r < 0)
            return r;
        if (comma && comma + 1 == e)
            return fail(why, "empty element in node list", -EINVAL);
        b = comma ? comma + 1 : e;
    }
    *set = tmp;
    return 0;
}

int nt_parse_size(const char *s, uint64_t *bytes) { return nt_parse_size_why(s, bytes, NULL); }
int nt_parse_duration(const char *s, uint64_t *usec) { return nt_parse_duration_why(s, usec, NULL); }
int nt_parse_percent(const char *s, double *pct) { return nt_parse_percent_why(s, pct, NULL); }
int nt_parse_bool(const char *s, bool *b) { return nt_parse_bool_why(s, b, NULL); }
int nt_parse_uint(const char *s, uint64_t *v) { return nt_parse_uint_why(s, v, NULL); }
int nt_parse_nodelist(const char *s, struct nt_nodeset *set)
{
    return nt_parse_nodelist_why(s, set, NULL);
}

/* The largest unit that divides v exactly; units sorted largest first. */
static void format_exact(uint64_t v, const struct unit *units, size_t n, char *buf, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (v % units[i].mult == 0) {
            snprintf(buf, len, "%" PRIu64 "%s", v / units[i].mult, units[i].name);
            return;
        }
    }
    snprintf(buf, len, "%" PRIu64, v);
}

void nt_format_size(uint64_t bytes, char *buf, size_t len)
{
    static const struct unit out[] = {
        { "T", UINT64_C(1) << 40 }, { "G", UINT64_C(1) << 30 },
        { "M", UINT64_C(1) << 20 }, { "K", UINT64_C(1) << 10 }, { "", 1 },
    };
    if (bytes == 0) {
        snprintf(buf, len, "0");
        return;
    }
    format_exact(bytes, out, NT_ARRAY_SIZE(out), buf, len);
}

void nt_format_duration(uint64_t usec, char *buf, size_t len)
{
    static const struct unit out[] = {
        { "d", USEC_PER_DAY }, { "h", USEC_PER_HOUR }, { "min", USEC_PER_MIN },
        { "s", USEC_PER_SEC }, { "ms", USEC_PER_MSEC }, { "us", 1 },
    };
    /* "0" alone would not parse back: a duration needs a unit. */
    if (usec == 0) {
        snprintf(buf, len, "0s");
        return;
    }
    format_exact(usec, out, NT_ARRAY_SIZE(out), buf, len);
}

/* snprintf at *pos; stops adding once the buffer is full. */
static void append(char *buf, size_t len, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
    if (*pos >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *pos, len - *pos, fmt, ap);
    va_end(ap);
    *pos = n < 0 ? len : *pos + (size_t)n;
}

void nt_format_nodelist(const struct nt_nodeset *set, char *buf, size_t len)
{
    if (len == 0)
        return;
    buf[0] = '\0';
    size_t pos = 0;
    for (int n = 0; n < NT_MAX_NODES; n++) {
        if (!nt_nodeset_test(set, n))
            continue;
        int last = n;
        while (last + 1 < NT_MAX_NODES && nt_nodeset_test(set, last + 1))
            last++;
        const char *sep = pos ? "," : "";
        if (last > n)
            append(buf, len, &pos, "%s%d-%d", sep, n, last);
        else
            append(buf, len, &pos, "%s%d", sep, n);
        n = last;
    }
}
