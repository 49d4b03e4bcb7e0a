/* numatierctl offline/online/drain/jobs: argument parsing, the request's
 * JSON, the progress line, the per-step lines and the exit codes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "numatier/util.h"
#include "numatierctl.h"
#include "offline.h"

#define MiB (UINT64_C(1) << 20)

static void assert_contains(const char *s, const char *sub)
{
    if (!strstr(s, sub))
        fail_msg("\"%s\" does not contain \"%s\"", s, sub);
}

/* Split a command line on spaces into argv (at most 16 words). */
struct words {
    char buf[256];
    char *argv[16];
    int argc;
};

static struct words *split(struct words *w, const char *line)
{
    snprintf(w->buf, sizeof(w->buf), "%s", line);
    w->argc = 0;
    for (char *save = NULL, *t = strtok_r(w->buf, " ", &save); t; t = strtok_r(NULL, " ", &save))
        w->argv[w->argc++] = t;
    return w;
}

static int parse(const char *line, struct offline_args *a, char *err, size_t errlen)
{
    static struct words w;      /* static: a->op points into it */
    split(&w, line);
    err[0] = '\0';
    return offline_parse_args(w.argc, w.argv, a, err, errlen);
}

static void test_parse_targets(void **state)
{
    (void)state;
    struct offline_args a;
    char err[256];

    assert_int_equal(parse("offline block 5", &a, err, sizeof(err)), 0);
    assert_int_equal(a.target, OFFLINE_TARGET_BLOCK);
    assert_int_equal(a.first_block, 5);
    assert_int_equal(a.last_block, 5);
    assert_string_equal(a.op, "offline");
    assert_false(a.dry_run || a.detach || a.force || a.no_rollback || a.json);
    assert_true(a.timeout_sec == 0);

    assert_int_equal(parse("online block 40-43", &a, err, sizeof(err)), 0);
    assert_int_equal(a.first_block, 40);
    assert_int_equal(a.last_block, 43);
    assert_string_equal(a.op, "online");

    assert_int_equal(parse("offline range 0x100000000-0x120000000", &a, err, sizeof(err)), 0);
    assert_int_equal(a.target, OFFLINE_TARGET_RANGE);
    assert_int_equal(a.range_start, UINT64_C(0x100000000));
    assert_int_equal(a.range_end, UINT64_C(0x120000000));

    assert_int_equal(parse("offline range 4G-4608M", &a, err, sizeof(err)), 0);
    assert_int_equal(a.range_start, UINT64_C(4) << 30);
    assert_int_equal(a.range_end, UINT64_C(4608) << 20);

    assert_int_equal(parse("offline node 2", &a, err, sizeof(err)), 0);
    assert_int_equal(a.target, OFFLINE_TARGET_NODE);
    assert_int_equal(a.node, 2);

    assert_int_equal(parse("drain node 1", &a, err, sizeof(err)), 0);
    assert_string_equal(a.op, "drain");
    assert_int_equal(a.node, 1);
}

static void test_parse_options(void **state)
{
    (void)state;
    struct offline_args a;
    char err[256];

    /* Options before, between and after the target words. */
    assert_int_equal(parse("offline --dry-run node --force 2 --no-rollback --timeout 90 --json", &a, err,
                           sizeof(err)), 0);
    assert_true(a.dry_run && a.force && a.no_rollback && a.json);
    assert_false(a.detach);
    assert_true(a.timeout_sec == 90);
    assert_int_equal(a.node, 2);

    assert_int_equal(parse("offline block 7 --timeout=2.5 --detach", &a, err, sizeof(err)), 0);
    assert_true(a.timeout_sec == 2.5);
    assert_true(a.detach);

    assert_int_equal(parse("online node 0 --wait -j", &a, err, sizeof(err)), 0);
    assert_false(a.detach);
    assert_true(a.json);

    assert_int_equal(parse("offline --help", &a, err, sizeof(err)), 1);
    assert_int_equal(parse("drain node 1 -h", &a, err, sizeof(err)), 1);
}

struct bad_case {
    const char *line;
    const char *why;        /* part of the message */
};

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        { "offline", "needs a target" },
        { "offline block", "needs a target" },
        { "drain", "needs a target: node N" },
        { "offline block 5-3", "ends before it starts" },
        { "offline block 5-4", "ends before it starts" },
        { "offline block 5-", "not a memory block id" },
        { "offline block -5", "unknown option \"-5\"" },
        { "offline block 1x", "not a memory block id" },
        { "offline block 1-2-3", "not a memory block id" },
        { "offline block 99999999999", "not a memory block id" },
        { "offline block 2147483648", "not a memory block id" },
        { "offline block +1", "not a memory block id" },
        { "offline range 0x1000", "needs START-END" },
        { "offline range 0x2000-0x1000", "ends before it starts" },
        { "offline range 0x1000-0x1000", "is empty" },
        { "offline range -0x1000", "unknown option" },
        { "offline range 0x1000-", "addresses are bytes" },
        { "offline range 1Q-2G", "addresses are bytes" },
        { "offline range 0x-0x10", "addresses are bytes" },
        { "offline range 0-0x1ffffffffffffffff", "too large" },
        { "offline range 0-16777216T", "too large" },
        { "offline node two", "not a node id" },
        { "offline node 1024", "not a node id" },
        { "offline node -1", "unknown option" },
        { "offline nodes 1", "unknown target \"nodes\"" },
        { "offline node 1 2", "unexpected argument \"2\"" },
        { "offline node 1 --bogus", "unknown option \"--bogus\"" },
        { "offline node 1 --dry-runs", "unknown option" },
        { "offline node 1 --timeout", "--timeout needs SECONDS" },
        { "offline node 1 --timeout 0", "--timeout wants seconds" },
        { "offline node 1 --timeout -5", "--timeout wants seconds" },
        { "offline node 1 --timeout 5s", "--timeout wants seconds" },
        { "offline node 1 --timeout=nan", "--timeout wants seconds" },
        { "offline node 1 --timeout 1e9", "--timeout wants seconds" },
        { "offline node 1 --timeout 1e2", "--timeout wants seconds" },
        { "offline node 1 --timeout 0x10", "--timeout wants seconds" },
        { "offline node 1 --timeout=inf", "--timeout wants seconds" },
        { "offline node 1 --timeout=", "--timeout needs SECONDS" },
        { "offline node 1 --wait --detach", "exclude each other" },
        { "offline node 1 --dry-run --detach", "--dry-run starts no job" },
        { "drain block 5", "drain takes only \"node N\"" },
        { "drain range 0-4096", "drain takes only" },
        { "drain node 1 --no-rollback", "does not apply to drain" },
    };
    for (size_t i = 0; i < NT_ARRAY_SIZE(cases); i++) {
        struct offline_args a;
        char err[256];
        int r = parse(cases[i].line, &a, err, sizeof(err));
        if (r != -EINVAL)
            fail_msg("\"%s\": got %d, want -EINVAL", cases[i].line, r);
        if (!strstr(err, cases[i].why))
            fail_msg("\"%s\": message \"%s\" lacks \"%s\"", cases[i].line, err, cases[i].why);
    }
}

static void test_parse_address(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int r;
        uint64_t want;
    } cases[] = {
        { "0", 0, 0 }, { "4096", 0, 4096 }, { "0x1000", 0, 0x1000 }, { "0X1000", 0, 0x1000 },
        { "0xdeadBEEF", 0, 0xdeadbeef }, { "0x1b", 0, 0x1b }, { "1k", 0, 1024 }, { "1K", 0, 1024 },
        { "128M", 0, 128 * MiB }, { "4g", 0, UINT64_C(4) << 30 }, { "1T", 0, UINT64_C(1) << 40 },
        { "0x2G", 0, UINT64_C(2) << 30 }, { "18446744073709551615", 0, UINT64_MAX },
        { "0xffffffffffffffff", 0, UINT64_MAX },
        { "", -EINVAL, 0 }, { "0x", -EINVAL, 0 }, { "K", -EINVAL, 0 }, { "12KB", -EINVAL, 0 },
        { "12 K", -EINVAL, 0 }, { " 12", -EINVAL, 0 }, { "1.5G", -EINVAL, 0 }, { "-1", -EINVAL, 0 },
        { "0x10g0", -EINVAL, 0 }, { "12P", -EINVAL, 0 }, { "0b101", -EINVAL, 0 },
        { "18446744073709551616", -ERANGE, 0 }, { "0x10000000000000000", -ERANGE, 0 },
        { "16777216T", -ERANGE, 0 }, { "17179869184G", -ERANGE, 0 },
    };
    for (size_t i = 0; i < NT_ARRAY_SIZE(cases); i++) {
        uint64_t v = 12345;
        int r = offline_parse_address(cases[i].in, &v);
        uint64_t want = cases[i].r == 0 ? cases[i].want : 12345;
        if (r != cases[i].r || v != want)
            fail_msg("\"%s\": got r=%d v=%ju, want r=%d v=%ju", cases[i].in, r, (uintmax_t)v, cases[i].r,
                     (uintmax_t)want);
    }
}

static void assert_request(const char *line, const char *want_json)
{
    struct offline_args a;
    char err[256];
    if (parse(line, &a, err, sizeof(err)) != 0)
        fail_msg("\"%s\": %s", line, err);
    struct json_object *args = offline_request_args(&a);
    const char *got = json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN);
    if (strcmp(got, want_json) != 0)
        fail_msg("\"%s\": sent %s, want %s", line, got, want_json);
    json_object_put(args);
}

static void test_request_args(void **state)
{
    (void)state;
    assert_request("offline block 5", "{\"block\":\"5\",\"dry_run\":false,\"force\":false,\"rollback\":true}");
    assert_request("offline block 40-43 --dry-run --no-rollback",
                   "{\"block\":\"40-43\",\"dry_run\":true,\"force\":false,\"rollback\":false}");
    assert_request("offline block 7-7", "{\"block\":\"7\",\"dry_run\":false,\"force\":false,\"rollback\":true}");
    /* The daemon takes hex or decimal bytes only: suffixes are resolved here. */
    assert_request("online range 4G-4608M --force",
                   "{\"range\":\"0x100000000-0x120000000\",\"dry_run\":false,\"force\":true,\"rollback\":true}");
    assert_request("offline node 2 --timeout 90",
                   "{\"node\":2,\"dry_run\":false,\"force\":false,\"rollback\":true,\"timeout_sec\":90.0}");
    /* drain has no rollback option in the protocol. */
    assert_request("drain node 1 --force --dry-run", "{\"node\":1,\"dry_run\":true,\"force\":true}");
}

static void test_parse_jobs(void **state)
{
    (void)state;
    struct words w;
    int64_t id;
    bool wait, json = false;
    char err[256];

    assert_int_equal(jobs_parse_args(split(&w, "jobs")->argc, w.argv, &id, &wait, &json, err, sizeof(err)), 0);
    assert_int_equal(id, -1);
    assert_false(wait);
    assert_int_equal(jobs_parse_args(split(&w, "jobs 12 --wait --json")->argc, w.argv, &id, &wait, &json, err,
                                     sizeof(err)), 0);
    assert_int_equal(id, 12);
    assert_true(wait && json);
    assert_int_equal(jobs_parse_args(split(&w, "jobs --wait")->argc, w.argv, &id, &wait, &json, err, sizeof(err)),
                     -EINVAL);
    assert_contains(err, "needs a job ID");
    assert_int_equal(jobs_parse_args(split(&w, "jobs x1")->argc, w.argv, &id, &wait, &json, err, sizeof(err)),
                     -EINVAL);
    assert_contains(err, "not a job id");
    assert_int_equal(jobs_parse_args(split(&w, "jobs 0")->argc, w.argv, &id, &wait, &json, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(jobs_parse_args(split(&w, "jobs 1 2")->argc, w.argv, &id, &wait, &json, err, sizeof(err)),
                     -EINVAL);
    assert_contains(err, "unexpected argument");
    assert_int_equal(jobs_parse_args(split(&w, "jobs --all")->argc, w.argv, &id, &wait, &json, err, sizeof(err)),
                     -EINVAL);
    assert_contains(err, "unknown option");
}

static struct json_object *job_json(const char *text)
{
    struct json_object *j = json_tokener_parse(text);
    if (!j)
        fail_msg("bad fixture JSON: %s", text);
    return j;
}

#define JOB_RUNNING \
    "{\"id\":3,\"op\":\"offline\",\"target\":\"node 2\",\"state\":\"running\",\"phase\":\"offlining\"," \
    "\"blocks_total\":4,\"blocks_done\":2,\"bytes_moved\":201326592,\"elapsed_sec\":12.34,"           \
    "\"blocks\":[{\"block\":43,\"node\":2,\"result\":\"offlined\"},{\"block\":42,\"node\":2,"        \
    "\"result\":\"offlined\"},{\"block\":41,\"node\":2,\"result\":\"pending\"},"                      \
    "{\"block\":40,\"node\":2,\"result\":\"pending\"}]}"

static size_t count_char(const char *s, char c)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static void test_progress_line(void **state)
{
    (void)state;
    struct json_object *job = job_json(JOB_RUNNING);
    char line[512];

    size_t n = offline_progress_line(job, 120, line, sizeof(line));
    assert_int_equal(n, strlen(line));
    assert_true(n <= 119);
    assert_contains(line, "offline node 2 [");
    assert_contains(line, "2/4 blocks");
    assert_contains(line, "192 MiB moved");
    assert_contains(line, "12.3s");
    assert_contains(line, "offlining");
    assert_null(strchr(line, '\r'));
    assert_null(strchr(line, '\n'));
    /* Half the blocks done: half the bar filled (40 wide at most). */
    assert_int_equal(count_char(line, '#'), 20);
    assert_int_equal(count_char(line, '.'), 20 + 1);   /* "12.3s" has a dot too */

    /* Narrower: a shorter bar, still half full. */
    n = offline_progress_line(job, 90, line, sizeof(line));
    assert_true(n <= 89);
    size_t hashes = count_char(line, '#'), dots = count_char(line, '.') - 1;
    assert_true(hashes >= 5 && hashes < 20);
    assert_true(hashes == dots || hashes + 1 == dots);
    /* The bar keeps its width while the numbers after it grow. */
    json_object_object_add(job, "bytes_moved", json_object_new_int64(INT64_C(8191) << 20));
    json_object_object_add(job, "elapsed_sec", json_object_new_double(1234.5));
    char longer[512];
    offline_progress_line(job, 90, longer, sizeof(longer));
    assert_int_equal(strchr(longer, ']') - longer, strchr(line, ']') - line);
    assert_contains(longer, "8191 MiB moved  1234.5s");

    /* Too narrow for a bar: the numbers, cut to fit. */
    n = offline_progress_line(job, 30, line, sizeof(line));
    assert_int_equal(n, 29);
    assert_null(strchr(line, '['));
    assert_contains(line, "offline node 2 2/4");

    /* A finished job fills the bar; a job of 0 blocks draws it empty. */
    json_object_object_add(job, "blocks_done", json_object_new_int(4));
    offline_progress_line(job, 120, line, sizeof(line));
    assert_int_equal(count_char(line, '#'), 40);
    json_object_object_add(job, "blocks_total", json_object_new_int(0));
    json_object_object_add(job, "blocks_done", json_object_new_int(0));
    offline_progress_line(job, 100, line, sizeof(line));
    assert_int_equal(count_char(line, '#'), 0);
    assert_contains(line, "0/0 blocks");

    /* The buffer bounds the output too. */
    n = offline_progress_line(job, 100, line, 10);
    assert_int_equal(n, 9);
    json_object_put(job);
}

/* Output written to a FILE, as a string to free. */
struct capture {
    char *buf;
    size_t len;
    FILE *f;
};

static FILE *capture_start(struct capture *c)
{
    *c = (struct capture){ 0 };
    c->f = open_memstream(&c->buf, &c->len);
    assert_non_null(c->f);
    return c->f;
}

static char *capture_end(struct capture *c)
{
    assert_int_equal(fclose(c->f), 0);
    return c->buf;
}

static char *report(struct json_object *prev, struct json_object *cur, unsigned *lines)
{
    struct capture c;
    *lines = offline_report_changes(capture_start(&c), prev, cur);
    return capture_end(&c);
}

static void test_report_changes(void **state)
{
    (void)state;
    struct json_object *cur = job_json(JOB_RUNNING);
    unsigned lines;

    /* Nothing seen before: the phase, and every block that is not pending. */
    char *out = report(NULL, cur, &lines);
    assert_int_equal(lines, 3);
    assert_string_equal(out, "[   12.3s] phase offlining: 2/4 blocks, 192 MiB moved\n"
                             "[   12.3s] block 43 (node 2): offlined\n"
                             "[   12.3s] block 42 (node 2): offlined\n");
    free(out);

    /* The same again: nothing to say. */
    out = report(cur, cur, &lines);
    assert_int_equal(lines, 0);
    assert_string_equal(out, "");
    free(out);

    /* Block 41 fails, rollback starts, block 43 is onlined again: the failure
     * comes before the phase it causes, the rest after. */
    struct json_object *next = job_json(
        "{\"state\":\"rolling-back\",\"phase\":\"rolling-back\",\"blocks_total\":4,\"blocks_done\":2,"
        "\"bytes_moved\":201326592,\"elapsed_sec\":20,\"blocks\":[{\"block\":43,\"node\":2,"
        "\"result\":\"rolled-back\"},{\"block\":42,\"node\":2,\"result\":\"offlined\"},"
        "{\"block\":41,\"node\":2,\"result\":\"failed\",\"reason\":\"EBUSY after 5 tries\"},"
        "{\"block\":40,\"node\":2,\"result\":\"pending\"}]}");
    out = report(cur, next, &lines);
    assert_int_equal(lines, 3);
    assert_string_equal(out, "[   20.0s] block 41 (node 2): failed: EBUSY after 5 tries\n"
                             "[   20.0s] phase rolling-back: 2/4 blocks, 192 MiB moved\n"
                             "[   20.0s] block 43 (node 2): rolled-back\n");
    assert_null(strchr(out, '\r'));
    free(out);

    /* The last block and "done" in one poll: the block first. */
    struct json_object *last = job_json(
        "{\"state\":\"succeeded\",\"phase\":\"done\",\"blocks_total\":1,\"blocks_done\":1,"
        "\"bytes_moved\":0,\"elapsed_sec\":3,\"blocks\":[{\"block\":40,\"node\":2,\"result\":\"offlined\"}]}");
    out = report(cur, last, &lines);
    assert_int_equal(lines, 2);
    assert_string_equal(out, "[    3.0s] block 40 (node 2): offlined\n"
                             "[    3.0s] phase done: 1/1 blocks, 0 MiB moved\n");
    free(out);
    json_object_put(last);
    json_object_put(next);
    json_object_put(cur);
}

/* A job in phase at sec seconds with mib MiB moved (of 256 to move). */
static struct json_object *moving_job(const char *phase, double sec, unsigned mib)
{
    char text[256];
    snprintf(text, sizeof(text), "{\"state\":\"running\",\"phase\":\"%s\",\"blocks_total\":4,\"blocks_done\":0,"
             "\"bytes_moved\":%llu,\"bytes_to_move\":268435456,\"elapsed_sec\":%.1f,\"blocks\":[]}", phase,
             (unsigned long long)mib * MiB, sec);
    return job_json(text);
}

/* One poll of the evacuation as a pipe sees it: prev -> (phase, sec, mib). */
static char *progress(struct offline_moved_mark *mark, struct json_object **prev, const char *phase, double sec,
                      unsigned mib, unsigned *lines)
{
    struct json_object *cur = moving_job(phase, sec, mib);
    struct capture c;
    *lines = offline_report_progress(capture_start(&c), mark, *prev, cur);
    json_object_put(*prev);
    *prev = cur;
    return capture_end(&c);
}

static void expect_progress(struct offline_moved_mark *mark, struct json_object **prev, const char *phase,
                            double sec, unsigned mib, const char *want)
{
    unsigned lines;
    char *out = progress(mark, prev, phase, sec, mib, &lines);
    assert_string_equal(out, want);
    assert_int_equal(lines, *want ? 1 : 0);
    free(out);
}

/* Every 64 MiB, or after 5 s if anything moved; quiet otherwise, and
 * outside the phases that move memory. */
static void test_report_progress(void **state)
{
    (void)state;
    struct offline_moved_mark mark = { 0 };
    struct json_object *prev = moving_job("evacuating", 0.1, 0);      /* as the start reply showed it */
    expect_progress(&mark, &prev, "evacuating", 0.4, 0, "");
    expect_progress(&mark, &prev, "evacuating", 1.0, 40, "");
    expect_progress(&mark, &prev, "evacuating", 2.1, 64, "[    2.1s] evacuating: 64 MiB moved\n");
    expect_progress(&mark, &prev, "evacuating", 3.0, 100, "");
    expect_progress(&mark, &prev, "evacuating", 4.0, 127, "");
    expect_progress(&mark, &prev, "evacuating", 4.2, 128, "[    4.2s] evacuating: 128 MiB moved\n");
    expect_progress(&mark, &prev, "evacuating", 9.1, 128, "");       /* nothing moved: no line */
    expect_progress(&mark, &prev, "evacuating", 9.3, 130, "[    9.3s] evacuating: 130 MiB moved\n");
    expect_progress(&mark, &prev, "evacuating", 12.0, 150, "");
    /* a new phase: report_changes says it, with MiB moved; the mark follows */
    expect_progress(&mark, &prev, "offlining", 12.4, 256, "");
    assert_int_equal(mark.bytes, 256 * (int64_t)MiB);
    expect_progress(&mark, &prev, "offlining", 20.0, 400, "");       /* not a phase that moves memory */
    json_object_put(prev);

    /* jobs --wait: nothing seen before, a drain already under way */
    mark = (struct offline_moved_mark){ 0 };
    prev = NULL;
    expect_progress(&mark, &prev, "draining", 30.0, 200, "");
    expect_progress(&mark, &prev, "draining", 31.0, 263, "");
    expect_progress(&mark, &prev, "draining", 31.5, 264, "[   31.5s] draining: 264 MiB moved\n");
    json_object_put(prev);
}

/* While memory moves, the bar is MiB moved of bytes_to_move; without that
 * number, or in other phases, blocks. */
static void test_progress_bar_mib(void **state)
{
    (void)state;
    char line[512];
    struct json_object *job = moving_job("evacuating", 4.2, 64);
    offline_progress_line(job, 120, line, sizeof(line));
    assert_int_equal(count_char(line, '#'), 10);                    /* 64 of 256 MiB, 40 wide */
    assert_contains(line, "0/4 blocks  64 MiB moved  4.2s  evacuating");
    json_object_object_add(job, "bytes_moved", json_object_new_int64(300 * (int64_t)MiB));
    offline_progress_line(job, 120, line, sizeof(line));
    assert_int_equal(count_char(line, '#'), 40);                    /* more than planned: full, no more */
    json_object_object_del(job, "bytes_to_move");
    offline_progress_line(job, 120, line, sizeof(line));
    assert_int_equal(count_char(line, '#'), 0);                     /* blocks: 0 of 4 */
    json_object_put(job);
    job = moving_job("offlining", 9.0, 256);
    json_object_object_add(job, "blocks_done", json_object_new_int(1));
    offline_progress_line(job, 120, line, sizeof(line));
    assert_int_equal(count_char(line, '#'), 10);                    /* 1 of 4 blocks */
    json_object_put(job);
}

/* What offline_print_plan_summary writes for a plan given as JSON text. */
static char *summary(const char *plan_text, const char *target)
{
    struct json_object *plan = job_json(plan_text);
    struct capture c;
    offline_print_plan_summary(capture_start(&c), plan, target);
    json_object_put(plan);
    return capture_end(&c);
}

static void test_plan_summary(void **state)
{
    (void)state;
    char *out = summary(
        "{\"op\":\"offline\",\"refusal\":\"ok\",\"message\":\"ready to offline node 2.\",\"used_bytes\":268435456,"
        "\"cpu_node\":-1,\"steps\":[{\"block\":35,\"verdict\":\"may-fail\"},{\"block\":34,\"verdict\":\"do\"},"
        "{\"block\":33,\"verdict\":\"do\"},{\"block\":36,\"verdict\":\"skip\"}],\"destinations\":["
        "{\"node\":0,\"bytes\":209715200},{\"node\":1,\"bytes\":58720256}]}", "node 2");
    assert_string_equal(out, "offline node 2: 3 block(s) to change (1 skipped), 256.0 MiB in use to move "
                             "to node 0 (200.0 MiB), node 1 (56.0 MiB)\nready to offline node 2.\n");
    free(out);

    /* A drain changes no block: it says where threads and memory go. */
    out = summary(
        "{\"op\":\"drain\",\"refusal\":\"ok\",\"message\":\"ready to drain node 1.\",\"used_bytes\":83886080,"
        "\"cpu_node\":0,\"steps\":[{\"block\":9,\"verdict\":\"do\"},{\"block\":8,\"verdict\":\"do\"}],"
        "\"destinations\":[{\"node\":0,\"bytes\":83886080}]}", "node 1");
    assert_string_equal(out, "drain node 1: threads to node 0, 80.0 MiB in use to move to node 0 (80.0 MiB); "
                             "no block changes state\nready to drain node 1.\n");
    assert_null(strstr(out, "block(s)"));
    free(out);
    out = summary("{\"op\":\"drain\",\"refusal\":\"ok\",\"message\":\"m\",\"used_bytes\":0,\"cpu_node\":-1,"
                  "\"steps\":[],\"destinations\":[]}", "node 2");
    assert_string_equal(out, "drain node 2: no threads to move (no CPUs), no memory in use to move; "
                             "no block changes state\nm\n");
    free(out);
    out = summary("{\"op\":\"drain\",\"refusal\":\"no-cpu-destination\",\"message\":\"m\",\"used_bytes\":0,"
                  "\"cpu_node\":-1}", "node 0");
    assert_string_equal(out, "drain node 0: no other node to take its threads, no memory in use to move; "
                             "no block changes state\nm\n");
    free(out);
}

static char *nothing_to_do(const char *message)
{
    struct json_object *plan = json_object_new_object();
    json_object_object_add(plan, "message", json_object_new_string(message));
    struct capture c;
    offline_print_nothing_to_do(capture_start(&c), "offline", "node 2", plan);
    json_object_put(plan);
    return capture_end(&c);
}

/* The daemon's message starts with "nothing to do": said once. */
static void test_nothing_to_do(void **state)
{
    (void)state;
    char *out = nothing_to_do("nothing to do: every block of node 2 is already offline.");
    assert_string_equal(out, "offline node 2: nothing to do: every block of node 2 is already offline.\n");
    free(out);
    out = nothing_to_do("every block is offline.");
    assert_string_equal(out, "offline node 2: nothing to do: every block is offline.\n");
    free(out);
    out = nothing_to_do("");
    assert_string_equal(out, "offline node 2: nothing to do\n");
    free(out);
}

static int exit_for(const char *state_name, const char *block_result)
{
    char text[256];
    snprintf(text, sizeof(text), "{\"state\":\"%s\",\"blocks\":[{\"block\":1,\"result\":\"offlined\"},"
             "{\"block\":2,\"result\":\"%s\"}]}", state_name, block_result);
    struct json_object *job = job_json(text);
    int rc = offline_exit_for_job(job);
    json_object_put(job);
    return rc;
}

static void test_exit_codes(void **state)
{
    (void)state;
    assert_int_equal(exit_for("succeeded", "offlined"), EXIT_OK);
    assert_int_equal(exit_for("succeeded", "skipped"), EXIT_OK);
    assert_int_equal(exit_for("rolled-back", "rolled-back"), EXIT_ROLLED_BACK);
    assert_int_equal(exit_for("failed", "failed"), EXIT_FAILED);
    assert_int_equal(exit_for("interrupted", "pending"), EXIT_FAILED);
    /* A block that could not be onlined again is never "as before". */
    assert_int_equal(exit_for("rolled-back", "rollback-failed"), EXIT_FAILED);
    assert_int_equal(exit_for("bogus", "offlined"), EXIT_FAILED);
    assert_int_equal(EXIT_REFUSED, 6);
    assert_int_equal(EXIT_ROLLED_BACK, 7);

    struct json_object *job = job_json(JOB_RUNNING);
    assert_false(offline_job_finished(job));
    json_object_object_add(job, "state", json_object_new_string("rolling-back"));
    assert_false(offline_job_finished(job));
    static const char *const finals[] = { "succeeded", "failed", "rolled-back", "interrupted" };
    for (size_t i = 0; i < NT_ARRAY_SIZE(finals); i++) {
        json_object_object_add(job, "state", json_object_new_string(finals[i]));
        assert_true(offline_job_finished(job));
    }
    json_object_put(job);

    static const char *const refusals[] = {
        "insufficient-capacity", "bound-processes", "infeasible", "no-targets", "no-cpu-destination",
    };
    for (size_t i = 0; i < NT_ARRAY_SIZE(refusals); i++)
        assert_int_equal(offline_exit_for_error(refusals[i]), EXIT_REFUSED);
    assert_int_equal(offline_exit_for_error("permission-denied"), EXIT_DENIED);
    assert_int_equal(offline_exit_for_error("busy"), EXIT_FAILED);
    assert_int_equal(offline_exit_for_error("not-found"), EXIT_FAILED);
    assert_int_equal(offline_exit_for_error("nothing-to-do"), EXIT_FAILED);
    assert_int_equal(offline_exit_for_error(""), EXIT_FAILED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_targets),
        cmocka_unit_test(test_parse_options),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_address),
        cmocka_unit_test(test_request_args),
        cmocka_unit_test(test_parse_jobs),
        cmocka_unit_test(test_progress_line),
        cmocka_unit_test(test_report_changes),
        cmocka_unit_test(test_report_progress),
        cmocka_unit_test(test_progress_bar_mib),
        cmocka_unit_test(test_plan_summary),
        cmocka_unit_test(test_nothing_to_do),
        cmocka_unit_test(test_exit_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
