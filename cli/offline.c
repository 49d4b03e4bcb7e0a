/* numatierctl offline / online / drain / jobs: take memory out of service
 * (or back) through numatierd, and follow the job it starts.
 *
 * The daemon plans and runs the job in the background (protocol in
 * /tmp/prompts/protocol.md); this side parses, asks once, then polls
 * "jobs" with short separate requests until the job ends, drawing one
 * progress line on a terminal or one line per step elsewhere.
 *
 * This file links only against libnumatier and json-c (not numatierctl.c)
 * so the unit test can link it; hence its own small JSON accessors. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>

#include "numatier/ctl.h"
#include "numatier/nodeset.h"
#include "numatier/util.h"
#include "numatierctl.h"
#include "offline.h"

#define POLL_INTERVAL_NSEC  (250 * 1000 * 1000L)
#define POLL_TIMEOUT_USEC   UINT64_C(2000000)     /* one poll; the daemon answers at once */
#define LOST_CONTACT_USEC   UINT64_C(30000000)    /* give up following after this long unanswered */
#define MIB                 1048576.0
#define TAIL_ALLOWANCE      50      /* " 12/64 blocks  8192 MiB moved  1234.5s  offlining" */

/* ---- JSON accessors ------------------------------------------------------ */

static struct json_object *field(struct json_object *o, const char *key)
{
    struct json_object *v;
    return o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static const char *field_str(struct json_object *o, const char *key, const char *dflt)
{
    struct json_object *v = field(o, key);
    return v ? json_object_get_string(v) : dflt;
}

static int64_t field_int(struct json_object *o, const char *key)
{
    struct json_object *v = field(o, key);
    return v ? json_object_get_int64(v) : 0;
}

static double field_num(struct json_object *o, const char *key)
{
    struct json_object *v = field(o, key);
    return v ? json_object_get_double(v) : 0;
}

static bool field_bool(struct json_object *o, const char *key)
{
    struct json_object *v = field(o, key);
    return v && json_object_get_boolean(v);
}

static size_t array_len(struct json_object *a)
{
    return a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
}

static struct json_object *array_at(struct json_object *a, size_t i)
{
    return json_object_array_get_idx(a, i);
}

static bool str_is(const char *s, const char *word)
{
    return s && word && strcmp(s, word) == 0;
}

static void show_json(struct json_object *o)
{
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
}

/* ---- argument parsing (pure) ---------------------------------------------- */

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* Exactly n decimal digits, no sign or spaces, at most max. */
static bool parse_decimal(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static int digit_value(char c, unsigned base)
{
    int d = c >= '0' && c <= '9' ? c - '0' :
            c >= 'a' && c <= 'f' ? c - 'a' + 10 :
            c >= 'A' && c <= 'F' ? c - 'A' + 10 : 99;
    return d < (int)base ? d : -1;
}

static unsigned suffix_shift(char c)
{
    switch (c) {
    case 'k': case 'K': return 10;
    case 'm': case 'M': return 20;
    case 'g': case 'G': return 30;
    case 't': case 'T': return 40;
    default: return 0;
    }
}

int offline_parse_address(const char *s, uint64_t *out)
{
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    uint64_t v = 0;
    size_t digits = 0;
    for (int d; (d = digit_value(*s, base)) >= 0; s++, digits++) {
        if (v > (UINT64_MAX - (unsigned)d) / base)
            return -ERANGE;
        v = v * base + (unsigned)d;
    }
    if (digits == 0)
        return -EINVAL;
    unsigned shift = 0;
    if (*s && ((shift = suffix_shift(*s)) == 0 || s[1]))
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = v << shift;
    return 0;
}

static int parse_block_target(const char *s, struct offline_args *a, char *err, size_t errlen)
{
    const char *dash = strchr(s, '-');
    size_t n1 = dash ? (size_t)(dash - s) : strlen(s);
    uint64_t first, last;
    if (!parse_decimal(s, n1, OFFLINE_MAX_BLOCK, &first) ||
        (dash && !parse_decimal(dash + 1, strlen(dash + 1), OFFLINE_MAX_BLOCK, &last)))
        return fail(err, errlen, "\"%s\" is not a memory block id N or range N-M", s);
    if (!dash)
        last = first;
    if (first > last)
        return fail(err, errlen, "block range %s ends before it starts", s);
    a->first_block = (unsigned)first;
    a->last_block = (unsigned)last;
    return 0;
}

static int parse_one_address(const char *s, size_t n, uint64_t *out)
{
    char buf[64];
    if (n == 0 || n >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return offline_parse_address(buf, out);
}

static int parse_range_target(const char *s, struct offline_args *a, char *err, size_t errlen)
{
    const char *dash = strchr(s, '-');
    if (!dash)
        return fail(err, errlen, "range \"%s\" needs START-END (END exclusive), e.g. 0x100000000-0x120000000", s);
    int r = parse_one_address(s, (size_t)(dash - s), &a->range_start);
    if (r == 0)
        r = parse_one_address(dash + 1, strlen(dash + 1), &a->range_end);
    if (r == -ERANGE)
        return fail(err, errlen, "range \"%s\": address too large", s);
    if (r < 0)
        return fail(err, errlen, "range \"%s\": addresses are bytes, decimal or 0x hex, with an optional "
                    "K, M, G or T suffix", s);
    if (a->range_start >= a->range_end)
        return fail(err, errlen, "range %s is empty or ends before it starts (END is exclusive)", s);
    return 0;
}

static int parse_target(const char *kind, const char *value, struct offline_args *a, char *err, size_t errlen)
{
    uint64_t node;
    if (str_is(a->op, "drain") && !str_is(kind, "node"))
        return fail(err, errlen, "drain takes only \"node N\", not \"%s\"", kind);
    if (str_is(kind, "block")) {
        a->target = OFFLINE_TARGET_BLOCK;
        return parse_block_target(value, a, err, errlen);
    }
    if (str_is(kind, "range")) {
        a->target = OFFLINE_TARGET_RANGE;
        return parse_range_target(value, a, err, errlen);
    }
    if (str_is(kind, "node")) {
        if (!parse_decimal(value, strlen(value), NT_MAX_NODES - 1, &node))
            return fail(err, errlen, "\"%s\" is not a node id (0 to %d)", value, NT_MAX_NODES - 1);
        a->target = OFFLINE_TARGET_NODE;
        a->node = (int)node;
        return 0;
    }
    return fail(err, errlen, "unknown target \"%s\": block N[-M], range START-END or node N", kind);
}

static int parse_timeout(const char *value, double *secs, char *err, size_t errlen)
{
    char *end;
    if (!value || !*value)
        return fail(err, errlen, "--timeout needs SECONDS");
    errno = 0;
    double v = strtod(value, &end);
    /* Plain decimal only: strtod would also take " 5", "0x10", "1e3" and "inf". */
    if (*end || errno || !(v > 0 && v <= OFFLINE_MAX_TIMEOUT) || value[strspn(value, "0123456789.")])
        return fail(err, errlen, "--timeout wants seconds above 0 and at most %.0f, not \"%s\"",
                    OFFLINE_MAX_TIMEOUT, value);
    *secs = v;
    return 0;
}

/* Flags without a value: 1 when arg is one (and was applied), else 0. */
static int parse_flag(const char *arg, struct offline_args *a, bool *waited)
{
    if (str_is(arg, "--dry-run"))
        a->dry_run = true;
    else if (str_is(arg, "--wait"))
        *waited = true;
    else if (str_is(arg, "--detach"))
        a->detach = true;
    else if (str_is(arg, "--force"))
        a->force = true;
    else if (str_is(arg, "--no-rollback"))
        a->no_rollback = true;
    else if (str_is(arg, "--json") || str_is(arg, "-j"))
        a->json = true;
    else
        return 0;
    return 1;
}

static int check_combination(const struct offline_args *a, bool waited, char *err, size_t errlen)
{
    if (waited && a->detach)
        return fail(err, errlen, "--wait and --detach exclude each other");
    if (a->dry_run && a->detach)
        return fail(err, errlen, "--detach has nothing to detach from: --dry-run starts no job");
    if (a->no_rollback && str_is(a->op, "drain"))
        return fail(err, errlen, "--no-rollback does not apply to drain, which changes no block's state");
    return 0;
}

int offline_parse_args(int argc, char **argv, struct offline_args *a, char *err, size_t errlen)
{
    *a = (struct offline_args){ .op = argv[0], .node = -1 };
    const char *pos[2];
    int npos = 0, r;
    bool waited = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (str_is(arg, "--help") || str_is(arg, "-h"))
            return 1;
        if ((r = parse_flag(arg, a, &waited)) != 0)
            continue;
        if (str_is(arg, "--timeout")) {
            if ((r = parse_timeout(i + 1 < argc ? argv[++i] : NULL, &a->timeout_sec, err, errlen)) < 0)
                return r;
        } else if (strncmp(arg, "--timeout=", 10) == 0) {
            if ((r = parse_timeout(arg + 10, &a->timeout_sec, err, errlen)) < 0)
                return r;
        } else if (arg[0] == '-') {
            return fail(err, errlen, "unknown option \"%s\"", arg);
        } else if (npos == 2) {
            return fail(err, errlen, "unexpected argument \"%s\"", arg);
        } else {
            pos[npos++] = arg;
        }
    }
    if (npos < 2)
        return fail(err, errlen, str_is(a->op, "drain") ? "needs a target: node N" :
                    "needs a target: block N[-M], range START-END or node N");
    if ((r = parse_target(pos[0], pos[1], a, err, errlen)) < 0)
        return r;
    return check_combination(a, waited, err, errlen);
}

int jobs_parse_args(int argc, char **argv, int64_t *id, bool *wait, bool *json, char *err, size_t errlen)
{
    uint64_t v;
    *id = -1;
    *wait = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (str_is(arg, "--help") || str_is(arg, "-h"))
            return 1;
        if (str_is(arg, "--wait"))
            *wait = true;
        else if (str_is(arg, "--json") || str_is(arg, "-j"))
            *json = true;
        else if (arg[0] == '-')
            return fail(err, errlen, "unknown option \"%s\"", arg);
        else if (*id >= 0)
            return fail(err, errlen, "unexpected argument \"%s\"", arg);
        else if (!parse_decimal(arg, strlen(arg), INT64_MAX, &v) || v == 0)
            return fail(err, errlen, "\"%s\" is not a job id (1, 2, ...)", arg);
        else
            *id = (int64_t)v;
    }
    if (*wait && *id < 0)
        return fail(err, errlen, "--wait needs a job ID");
    return 0;
}

static void add_target(struct json_object *args, const struct offline_args *a)
{
    char buf[64];
    switch (a->target) {
    case OFFLINE_TARGET_BLOCK:
        if (a->first_block == a->last_block)
            snprintf(buf, sizeof(buf), "%u", a->first_block);
        else
            snprintf(buf, sizeof(buf), "%u-%u", a->first_block, a->last_block);
        json_object_object_add(args, "block", json_object_new_string(buf));
        break;
    case OFFLINE_TARGET_RANGE:
        snprintf(buf, sizeof(buf), "0x%" PRIx64 "-0x%" PRIx64, a->range_start, a->range_end);
        json_object_object_add(args, "range", json_object_new_string(buf));
        break;
    case OFFLINE_TARGET_NODE:
        json_object_object_add(args, "node", json_object_new_int(a->node));
        break;
    }
}

struct json_object *offline_request_args(const struct offline_args *a)
{
    struct json_object *args = json_object_new_object();
    add_target(args, a);
    json_object_object_add(args, "dry_run", json_object_new_boolean(a->dry_run));
    json_object_object_add(args, "force", json_object_new_boolean(a->force));
    if (!str_is(a->op, "drain"))
        json_object_object_add(args, "rollback", json_object_new_boolean(!a->no_rollback));
    if (a->timeout_sec > 0)
        json_object_object_add(args, "timeout_sec", json_object_new_double(a->timeout_sec));
    return args;
}

/* ---- job state (pure) ----------------------------------------------------- */

bool offline_job_finished(struct json_object *job)
{
    const char *s = field_str(job, "state", "");
    return str_is(s, "succeeded") || str_is(s, "failed") || str_is(s, "rolled-back") || str_is(s, "interrupted");
}

static bool any_block_result(struct json_object *job, const char *result)
{
    struct json_object *blocks = field(job, "blocks");
    for (size_t i = 0; i < array_len(blocks); i++)
        if (str_is(field_str(array_at(blocks, i), "result", ""), result))
            return true;
    return false;
}

int offline_exit_for_job(struct json_object *job)
{
    const char *s = field_str(job, "state", "");
    /* A block left offline by a failed rollback is never "as before". */
    if (any_block_result(job, "rollback-failed"))
        return EXIT_FAILED;
    if (str_is(s, "succeeded"))
        return EXIT_OK;
    if (str_is(s, "rolled-back"))
        return EXIT_ROLLED_BACK;
    return EXIT_FAILED;
}

bool offline_is_refusal(const char *code)
{
    static const char *const refusals[] = {
        "insufficient-capacity", "bound-processes", "infeasible", "no-targets", "no-cpu-destination",
    };
    for (size_t i = 0; i < NT_ARRAY_SIZE(refusals); i++)
        if (str_is(code, refusals[i]))
            return true;
    return false;
}

int offline_exit_for_error(const char *code)
{
    if (offline_is_refusal(code))
        return EXIT_REFUSED;
    if (str_is(code, "permission-denied"))
        return EXIT_DENIED;
    return EXIT_FAILED;
}

/* ---- progress rendering (pure) --------------------------------------------- */

static void format_bar(char *bar, size_t len, size_t width, int64_t done, int64_t total)
{
    size_t fill = total > 0 && done > 0 ? (size_t)((done > total ? total : done) * (int64_t)width / total) : 0;
    if (len < width + 4) {
        bar[0] = '\0';
        return;
    }
    bar[0] = ' ';
    bar[1] = '[';
    for (size_t i = 0; i < width; i++)
        bar[2 + i] = i < fill ? '#' : '.';
    bar[2 + width] = ']';
    bar[3 + width] = '\0';
}

static bool moving_memory(struct json_object *job)
{
    const char *phase = field_str(job, "phase", "");
    return str_is(phase, "evacuating") || str_is(phase, "draining");
}

/* The bar's fraction: blocks, but while memory moves (no block is done
 * yet, and a drain has none) MiB moved of the plan's, when the job says. */
static void bar_fraction(struct json_object *job, int64_t *done, int64_t *total)
{
    int64_t to_move = field_int(job, "bytes_to_move");
    if (moving_memory(job) && to_move > 0) {
        *done = field_int(job, "bytes_moved") / (int64_t)MIB;
        *total = (to_move + (int64_t)MIB - 1) / (int64_t)MIB;
        return;
    }
    *done = field_int(job, "blocks_done");
    *total = field_int(job, "blocks_total");
}

size_t offline_progress_line(struct json_object *job, unsigned width, char *buf, size_t len)
{
    char head[96], tail[128], bar[48] = "";
    if (len == 0)
        return 0;
    int64_t done = field_int(job, "blocks_done"), total = field_int(job, "blocks_total"), bar_done, bar_total;
    bar_fraction(job, &bar_done, &bar_total);
    snprintf(head, sizeof(head), "%s %s", field_str(job, "op", "?"), field_str(job, "target", "?"));
    snprintf(tail, sizeof(tail), " %" PRId64 "/%" PRId64 " blocks  %.0f MiB moved  %.1fs  %s", done, total,
             (double)field_int(job, "bytes_moved") / MIB, field_num(job, "elapsed_sec"),
             field_str(job, "phase", "?"));
    size_t room = width > 1 ? width - 1 : 0;     /* the last column would wrap on some terminals */
    /* Room for the usual tail, not this one, so the bar keeps its width as numbers grow. */
    size_t fixed = strlen(head) + (strlen(tail) > TAIL_ALLOWANCE ? strlen(tail) : TAIL_ALLOWANCE) + 3;
    size_t bar_width = room > fixed ? room - fixed : 0;
    if (bar_width > 40)
        bar_width = 40;
    if (bar_width >= 5)
        format_bar(bar, sizeof(bar), bar_width, bar_done, bar_total);
    snprintf(buf, len, "%s%s%s", head, bar, tail);
    size_t n = strlen(buf);
    if (n > room)
        buf[n = room] = '\0';
    return n;
}

static struct json_object *find_block(struct json_object *blocks, int64_t id)
{
    for (size_t i = 0; i < array_len(blocks); i++)
        if (field_int(array_at(blocks, i), "block") == id)
            return array_at(blocks, i);
    return NULL;
}

static bool is_failure(const char *result)
{
    return str_is(result, "failed") || str_is(result, "timeout") || str_is(result, "rollback-failed");
}

/* Blocks whose result changed; failures (want_failures) or the rest. */
static unsigned report_blocks(FILE *out, struct json_object *prev, struct json_object *cur, bool want_failures)
{
    struct json_object *blocks = field(cur, "blocks"), *before = field(prev, "blocks");
    unsigned n = 0;
    for (size_t i = 0; i < array_len(blocks); i++) {
        struct json_object *b = array_at(blocks, i);
        const char *result = field_str(b, "result", "pending");
        const char *was = field_str(find_block(before, field_int(b, "block")), "result", "pending");
        if (str_is(result, was) || is_failure(result) != want_failures)
            continue;
        const char *reason = field_str(b, "reason", "");
        fprintf(out, "[%7.1fs] block %" PRId64 " (node %" PRId64 "): %s%s%s\n", field_num(cur, "elapsed_sec"),
                field_int(b, "block"), field_int(b, "node"), result, *reason ? ": " : "", reason);
        n++;
    }
    return n;
}

static unsigned report_phase(FILE *out, struct json_object *prev, struct json_object *cur)
{
    const char *phase = field_str(cur, "phase", "?");
    if (prev && str_is(phase, field_str(prev, "phase", "")))
        return 0;
    fprintf(out, "[%7.1fs] phase %s: %" PRId64 "/%" PRId64 " blocks, %.0f MiB moved\n", field_num(cur, "elapsed_sec"),
            phase, field_int(cur, "blocks_done"), field_int(cur, "blocks_total"),
            (double)field_int(cur, "bytes_moved") / MIB);
    return 1;
}

/* Within one poll, the order things most likely happened in: failures
 * (which start a rollback), then the new phase and the blocks it moved on,
 * except "done", which comes after the last block. */
unsigned offline_report_changes(FILE *out, struct json_object *prev, struct json_object *cur)
{
    unsigned n = report_blocks(out, prev, cur, true);
    bool done = str_is(field_str(cur, "phase", ""), "done");
    if (!done)
        n += report_phase(out, prev, cur);
    n += report_blocks(out, prev, cur, false);
    if (done)
        n += report_phase(out, prev, cur);
    return n;
}

unsigned offline_report_progress(FILE *out, struct offline_moved_mark *mark, struct json_object *prev,
                                 struct json_object *cur)
{
    const char *phase = field_str(cur, "phase", "?");
    struct offline_moved_mark now = { field_num(cur, "elapsed_sec"), field_int(cur, "bytes_moved") };
    if (!prev || !str_is(phase, field_str(prev, "phase", ""))) {
        *mark = now;                    /* the phase line has just said it */
        return 0;
    }
    if (!moving_memory(cur) || now.bytes == mark->bytes)
        return 0;
    int64_t step = now.bytes > mark->bytes ? now.bytes - mark->bytes : mark->bytes - now.bytes;
    if (step < OFFLINE_PROGRESS_BYTES && now.sec - mark->sec < OFFLINE_PROGRESS_SEC)
        return 0;
    fprintf(out, "[%7.1fs] %s: %.0f MiB moved\n", now.sec, phase, (double)now.bytes / MIB);
    *mark = now;
    return 1;
}

/* ---- printing plans and jobs ---------------------------------------------- */

static void describe_target(const struct offline_args *a, char *buf, size_t len)
{
    if (a->target == OFFLINE_TARGET_NODE)
        snprintf(buf, len, "node %d", a->node);
    else if (a->target == OFFLINE_TARGET_RANGE)
        snprintf(buf, len, "range 0x%" PRIx64 "-0x%" PRIx64, a->range_start, a->range_end);
    else if (a->first_block == a->last_block)
        snprintf(buf, len, "block %u", a->first_block);
    else
        snprintf(buf, len, "block %u-%u", a->first_block, a->last_block);
}

static void print_steps(struct json_object *steps)
{
    printf("\n%6s %5s  %-10s %9s  %s\n", "BLOCK", "NODE", "VERDICT", "USED_MiB", "REASON");
    for (size_t i = 0; i < array_len(steps); i++) {
        struct json_object *s = array_at(steps, i);
        printf("%6" PRId64 " %5" PRId64 "  %-10s %9.1f  %s\n", field_int(s, "block"), field_int(s, "node"),
               field_str(s, "verdict", "?"), (double)field_int(s, "used_bytes") / MIB, field_str(s, "reason", ""));
    }
}

static void print_destinations(struct json_object *dests)
{
    if (!array_len(dests))
        return;
    printf("\nDestinations:\n%6s %9s\n", "NODE", "MiB");
    for (size_t i = 0; i < array_len(dests); i++)
        printf("%6" PRId64 " %9.1f\n", field_int(array_at(dests, i), "node"),
               (double)field_int(array_at(dests, i), "bytes") / MIB);
}

static void print_rebinds(struct json_object *rebinds, bool with_restored)
{
    if (!array_len(rebinds))
        return;
    printf("\nRebinds:\n%7s %-16s %-10s %4s%s\n", "PID", "COMMAND", "FROM", "TO", with_restored ? "  RESTORED" : "");
    for (size_t i = 0; i < array_len(rebinds); i++) {
        struct json_object *r = array_at(rebinds, i);
        printf("%7" PRId64 " %-16s %-10s %4" PRId64 "%s\n", field_int(r, "pid"), field_str(r, "comm", "?"),
               field_str(r, "from", "?"), field_int(r, "to"),
               !with_restored ? "" : field_bool(r, "restored") ? "  yes" : "  no");
    }
}

/* Processes a drain pinned off its node: `online node N` gives them back. */
static void print_pins(struct json_object *pins)
{
    if (!array_len(pins))
        return;
    printf("\nPinned by the drain:\n%7s %-16s %7s %-12s %-12s %s\n", "PID", "COMMAND", "THREADS", "CPUS_BEFORE",
           "CPUS_SET", "RESTORED");
    for (size_t i = 0; i < array_len(pins); i++) {
        struct json_object *p = array_at(pins, i);
        printf("%7" PRId64 " %-16s %7" PRId64 " %-12s %-12s %s\n", field_int(p, "pid"), field_str(p, "comm", "?"),
               field_int(p, "threads"), field_str(p, "cpus_before", "?"), field_str(p, "cpus_set", "?"),
               field_bool(p, "restored") ? "yes" : "no");
    }
}

static size_t count_verdicts(struct json_object *steps, const char *v1, const char *v2)
{
    size_t n = 0;
    for (size_t i = 0; i < array_len(steps); i++) {
        const char *v = field_str(array_at(steps, i), "verdict", "");
        n += str_is(v, v1) || str_is(v, v2);
    }
    return n;
}

/* ", 256.0 MiB in use to move to node 0 (200.0 MiB), node 1 (56.0 MiB)" */
static void print_memory_moves(FILE *out, struct json_object *plan)
{
    struct json_object *dests = field(plan, "destinations");
    if (field_int(plan, "used_bytes") <= 0) {
        if (str_is(field_str(plan, "op", ""), "drain"))
            fprintf(out, ", no memory in use to move");
        return;
    }
    fprintf(out, ", %.1f MiB in use to move", (double)field_int(plan, "used_bytes") / MIB);
    for (size_t i = 0; i < array_len(dests); i++)
        fprintf(out, "%s node %" PRId64 " (%.1f MiB)", i ? "," : " to", field_int(array_at(dests, i), "node"),
                (double)field_int(array_at(dests, i), "bytes") / MIB);
}

/* A drain changes no block: it moves threads to cpu_node, memory to the
 * destinations. */
static void print_drain_threads(FILE *out, struct json_object *plan)
{
    int64_t cpu_node = field(plan, "cpu_node") ? field_int(plan, "cpu_node") : -1;
    if (cpu_node >= 0)
        fprintf(out, "threads to node %" PRId64, cpu_node);
    else if (str_is(field_str(plan, "refusal", ""), "no-cpu-destination"))
        fprintf(out, "no other node to take its threads");
    else
        fprintf(out, "no threads to move (no CPUs)");
}

void offline_print_plan_summary(FILE *out, struct json_object *plan, const char *target)
{
    struct json_object *steps = field(plan, "steps");
    const char *op = field_str(plan, "op", "?");
    fprintf(out, "%s %s: ", op, target);
    if (str_is(op, "drain")) {
        print_drain_threads(out, plan);
        print_memory_moves(out, plan);
        fprintf(out, "; no block changes state");
    } else {
        size_t skipped = count_verdicts(steps, "skip", NULL);
        fprintf(out, "%zu block(s) to change", count_verdicts(steps, "do", "may-fail"));
        if (skipped)
            fprintf(out, " (%zu skipped)", skipped);
        print_memory_moves(out, plan);
    }
    fprintf(out, "\n%s\n", field_str(plan, "message", ""));
}

void offline_print_nothing_to_do(FILE *out, const char *op, const char *target, struct json_object *plan)
{
    static const char words[] = "nothing to do";
    const char *msg = field_str(plan, "message", "");
    if (strncmp(msg, words, strlen(words)) == 0)
        fprintf(out, "%s %s: %s\n", op, target, msg);
    else
        fprintf(out, "%s %s: %s%s%s\n", op, target, words, *msg ? ": " : "", msg);
}

static void print_plan(struct json_object *plan, const char *target)
{
    printf("Plan: ");
    offline_print_plan_summary(stdout, plan, target);
    printf("Verdict: %s; %.1f MiB in use, %.1f MiB of room on the destinations\n",
           field_str(plan, "refusal", "?"), (double)field_int(plan, "used_bytes") / MIB,
           (double)field_int(plan, "room_bytes") / MIB);
    print_steps(field(plan, "steps"));
    print_destinations(field(plan, "destinations"));
    print_rebinds(field(plan, "rebinds"), false);
}

static void format_wall_time(int64_t usec, char *buf, size_t len)
{
    time_t t = (time_t)(usec / 1000000);
    struct tm tm;
    if (usec <= 0 || !localtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(buf, len, "-");
}

static void print_job_blocks(struct json_object *blocks)
{
    if (!array_len(blocks))
        return;
    printf("\n%6s %5s  %-9s %-9s %-15s %s\n", "BLOCK", "NODE", "BEFORE", "NOW", "RESULT", "REASON");
    for (size_t i = 0; i < array_len(blocks); i++) {
        struct json_object *b = array_at(blocks, i);
        const char *reason = field_str(b, "reason", "");
        printf("%6" PRId64 " %5" PRId64 "  %-9s %-9s %-*s%s%s\n", field_int(b, "block"), field_int(b, "node"),
               field_str(b, "before", "?"), field_str(b, "now", "?"), *reason ? 15 : 0,
               field_str(b, "result", "?"), *reason ? " " : "", reason);
    }
}

/* What the exit code means for the machine, in one line. */
static const char *outcome_note(struct json_object *job)
{
    switch (offline_exit_for_job(job)) {
    case EXIT_OK: return NULL;
    case EXIT_ROLLED_BACK: return "Rolled back: every block this job changed is in its state from before.";
    default: return "Not everything is as before: see each block's state below.";
    }
}

static void print_job_detail(struct json_object *job)
{
    char started[32];
    format_wall_time(field_int(job, "started_usec"), started, sizeof(started));
    printf("job %" PRId64 ": %s %s: %s", field_int(job, "id"), field_str(job, "op", "?"),
           field_str(job, "target", "?"), field_str(job, "state", "?"));
    if (!offline_job_finished(job))
        printf(" (phase %s)", field_str(job, "phase", "?"));
    printf("\n  started %s, %.1f s elapsed (timeout %.0f s), %" PRId64 "/%" PRId64 " blocks, %.1f MiB moved, "
           "rollback %s%s\n", started, field_num(job, "elapsed_sec"), field_num(job, "timeout_sec"),
           field_int(job, "blocks_done"), field_int(job, "blocks_total"),
           (double)field_int(job, "bytes_moved") / MIB, field_bool(job, "rollback") ? "on" : "off",
           field_bool(job, "resumed") ? ", resumed by a restarted numatierd" : "");
    printf("  %s\n", field_str(job, "message", ""));
    if (offline_job_finished(job) && outcome_note(job))
        printf("  %s\n", outcome_note(job));
    print_job_blocks(field(job, "blocks"));
    print_rebinds(field(job, "rebinds"), true);
    print_pins(field(job, "pins"));
}

static void print_jobs_table(struct json_object *jobs)
{
    if (!array_len(jobs)) {
        printf("(no jobs)\n");
        return;
    }
    printf("%5s  %-7s  %-22s %-12s %9s %9s %9s  %-19s  %s\n", "ID", "OP", "TARGET", "STATE", "BLOCKS",
           "MiB", "ELAPSED", "STARTED", "MESSAGE");
    for (size_t i = 0; i < array_len(jobs); i++) {
        struct json_object *j = array_at(jobs, i);
        char started[32], blocks[32];
        format_wall_time(field_int(j, "started_usec"), started, sizeof(started));
        snprintf(blocks, sizeof(blocks), "%" PRId64 "/%" PRId64, field_int(j, "blocks_done"),
                 field_int(j, "blocks_total"));
        printf("%5" PRId64 "  %-7s  %-22s %-12s %9s %9.1f %8.1fs  %-19s  %s\n", field_int(j, "id"),
               field_str(j, "op", "?"), field_str(j, "target", "?"), field_str(j, "state", "?"), blocks,
               (double)field_int(j, "bytes_moved") / MIB, field_num(j, "elapsed_sec"), started,
               field_str(j, "message", ""));
    }
}

/* ---- talking to the daemon ------------------------------------------------ */

static int report_error(const char *cmd, struct json_object *resp, bool json)
{
    struct json_object *err = field(resp, "error");
    const char *code = field_str(err, "code", "failed"), *msg = field_str(err, "message", "unknown error");
    if (json)
        show_json(resp);
    else if (field(err, "plan"))        /* a refused plan still explains each block */
        print_steps(field(field(err, "plan"), "steps"));
    if (offline_is_refusal(code))
        fprintf(stderr, "numatierctl: %s refused (%s): %s\n", cmd, code, msg);
    else if (str_is(code, "unknown-command"))
        fprintf(stderr, "numatierctl: %s: %s: this numatierd is older than numatierctl\n", cmd, msg);
    else if (str_is(code, "busy"))
        fprintf(stderr, "numatierctl: %s: %s (see numatierctl jobs)\n", cmd, msg);
    else
        fprintf(stderr, "numatierctl: %s: %s\n", cmd, msg);
    return offline_exit_for_error(code);
}

/* One request; on EXIT_OK *result borrows from *resp. Prints any error. */
static int request(const struct ctl_opts *o, const char *cmd, struct json_object *args, bool json,
                   struct json_object **resp, struct json_object **result)
{
    int r = nt_ctl_call(o->socket, cmd, args, o->timeout_usec, resp);
    if (r < 0) {
        fprintf(stderr, "numatierctl: cannot reach numatierd at %s: %s%s\n", o->socket, strerror(-r),
                r == -ENOENT || r == -ECONNREFUSED ? " (is the daemon running?)" : "");
        return EXIT_UNREACHABLE;
    }
    if (field_bool(*resp, "ok")) {
        *result = field(*resp, "result");
        return EXIT_OK;
    }
    return report_error(cmd, *resp, json);
}

static struct json_object *id_args(int64_t id)
{
    struct json_object *args = json_object_new_object();
    json_object_object_add(args, "id", json_object_new_int64(id));
    return args;
}

/* A reply about one job: {"jobs":[JOB]} as protocol.md has it; {"job":JOB}
 * is read too, so a daemon that answers that way still works. */
static struct json_object *single_job(struct json_object *result)
{
    struct json_object *jobs = field(result, "jobs"), *job = field(result, "job");
    if (array_len(jobs) == 1)
        job = array_at(jobs, 0);
    return job && json_object_is_type(job, json_type_object) ? job : NULL;
}

enum poll_outcome { POLL_OK, POLL_RETRY, POLL_FATAL };

/* One "jobs {id}" poll; quiet on failures worth retrying. *job is a new
 * reference on POLL_OK. */
static enum poll_outcome poll_job(const struct ctl_opts *o, int64_t id, struct json_object **job, int *why)
{
    struct json_object *args = id_args(id), *resp = NULL;
    uint64_t timeout = o->timeout_usec < POLL_TIMEOUT_USEC ? o->timeout_usec : POLL_TIMEOUT_USEC;
    int r = nt_ctl_call(o->socket, "jobs", args, timeout, &resp);
    json_object_put(args);
    *why = r;
    if (r < 0)
        return POLL_RETRY;
    enum poll_outcome out = POLL_OK;
    struct json_object *one = single_job(field(resp, "result"));
    if (one && field_int(one, "id") != id)
        one = NULL;
    if (!field_bool(resp, "ok")) {
        /* "busy" here means too many clients at this instant. */
        if (str_is(field_str(field(resp, "error"), "code", ""), "busy"))
            out = POLL_RETRY;
        else
            out = (report_error("jobs", resp, false), POLL_FATAL);
    } else if (!one) {
        fprintf(stderr, "numatierctl: jobs: no job %" PRId64 " in the daemon's reply\n", id);
        out = POLL_FATAL;
    } else {
        *job = json_object_get(one);
    }
    json_object_put(resp);
    return out;
}

/* ---- following a job -------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

struct follower {
    int64_t id;
    bool tty, json, line_drawn;
    unsigned width;
    uint64_t lost_since;        /* when polls began to fail; 0 while in contact */
    struct json_object *prev;   /* the last job seen */
    struct offline_moved_mark mark;     /* not a terminal: the last line with MiB moved */
};

static unsigned terminal_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 80;
}

/* Anything printed to stderr must start on a line of its own. */
static void end_progress_line(struct follower *f)
{
    if (f->line_drawn) {
        putchar('\n');
        fflush(stdout);
        f->line_drawn = false;
    }
}

static void show_progress(struct follower *f, struct json_object *job)
{
    if (f->json)
        return;
    if (f->tty) {
        char line[512];
        offline_progress_line(job, terminal_width(), line, sizeof(line));
        printf("\r%s\033[K", line);
        f->line_drawn = true;
    } else {
        offline_report_changes(stdout, f->prev, job);
        offline_report_progress(stdout, &f->mark, f->prev, job);
    }
    fflush(stdout);
}

/* Returns -1 to go on polling, or an exit code. */
static int contact_lost(struct follower *f, int why)
{
    uint64_t now = nt_now_usec();
    if (f->lost_since == 0) {
        f->lost_since = now;
        end_progress_line(f);
        fprintf(stderr, "numatierctl: numatierd does not answer (%s); trying for %.0f s\n",
                why < 0 ? strerror(-why) : "busy", LOST_CONTACT_USEC / 1e6);
    }
    if (now - f->lost_since < LOST_CONTACT_USEC)
        return -1;
    fprintf(stderr, "numatierctl: lost contact with numatierd; job %" PRId64 " may go on when it is back: "
            "numatierctl jobs %" PRId64 "\n", f->id, f->id);
    return EXIT_UNREACHABLE;
}

static int stop_following(struct follower *f)
{
    end_progress_line(f);
    fprintf(stderr, "numatierctl: stopped following job %" PRId64 "; it goes on in numatierd. "
            "Follow it again with: numatierctl jobs %" PRId64 " --wait\n", f->id, f->id);
    return EXIT_INTERRUPTED;
}

static void finish(struct follower *f, struct json_object *job)
{
    end_progress_line(f);
    if (f->json) {
        show_json(job);
        return;
    }
    if (!f->tty)
        putchar('\n');
    print_job_detail(job);
}

/* One poll and what follows from it: -1 to go on, or an exit code. */
static int follow_step(const struct ctl_opts *o, struct follower *f)
{
    struct json_object *job = NULL;
    int why;
    enum poll_outcome p = poll_job(o, f->id, &job, &why);
    if (p == POLL_FATAL)
        return (end_progress_line(f), EXIT_FAILED);
    if (p == POLL_RETRY)
        return contact_lost(f, why);
    if (f->lost_since) {
        f->lost_since = 0;
        fprintf(stderr, "numatierctl: numatierd answers again\n");
    }
    show_progress(f, job);
    json_object_put(f->prev);
    f->prev = job;
    if (!offline_job_finished(job))
        return -1;
    finish(f, job);
    return offline_exit_for_job(job);
}

/* Poll job id until it ends, Ctrl-C or lost contact. initial (may be NULL)
 * is the job as the start reply showed it. */
static int follow_job(const struct ctl_opts *o, int64_t id, struct json_object *initial, bool json)
{
    struct follower f = { .id = id, .json = json, .tty = !json && isatty(STDOUT_FILENO) };
    struct sigaction sa = { .sa_handler = on_sigint }, old;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);      /* no SA_RESTART: Ctrl-C cuts the sleep short */
    if (initial) {
        f.prev = json_object_get(initial);
        if (f.tty)
            show_progress(&f, initial);
    }
    int rc = -1;
    while (rc < 0) {
        if (interrupted)
            rc = stop_following(&f);
        else if ((rc = follow_step(o, &f)) < 0)
            nanosleep(&(struct timespec){ .tv_nsec = POLL_INTERVAL_NSEC }, NULL);
    }
    sigaction(SIGINT, &old, NULL);
    json_object_put(f.prev);
    return rc;
}

/* ---- the commands ------------------------------------------------------------ */

static void offline_usage(FILE *out, const char *op)
{
    if (str_is(op, "drain"))
        fprintf(out, "usage: numatierctl drain node N [--dry-run] [--timeout SECONDS] [--wait|--detach] "
                "[--force] [--json]\n");
    else
        fprintf(out, "usage: numatierctl %s block N[-M] | range START-END | node N\n"
                "           [--dry-run] [--timeout SECONDS] [--wait|--detach] [--force] [--no-rollback] "
                "[--json]\n", op);
}

static int show_dry_run(struct json_object *result, const char *target, bool json)
{
    struct json_object *plan = field(result, "plan");
    const char *refusal = field_str(plan, "refusal", "ok");
    if (json)
        show_json(plan);
    else
        print_plan(plan, target);
    /* The daemon refuses with an error reply; a refused plan here is read the same way. */
    return offline_is_refusal(refusal) ? EXIT_REFUSED : EXIT_OK;
}

static int start_job(const struct ctl_opts *o, const struct offline_args *a, struct json_object *result,
                     const char *target, bool json)
{
    struct json_object *job = field(result, "job");
    if (job && !json_object_is_type(job, json_type_object)) {
        fprintf(stderr, "numatierctl: %s: the daemon's reply has no job object\n", a->op);
        return EXIT_FAILED;
    }
    if (!job) {
        if (json)
            show_json(result);
        else
            offline_print_nothing_to_do(stdout, a->op, target, field(result, "plan"));
        return EXIT_OK;
    }
    int64_t id = field_int(job, "id");
    if (!json) {
        offline_print_plan_summary(stdout, field(result, "plan"), target);
        printf("job %" PRId64 " started%s\n", id, a->detach ? "" : "; Ctrl-C stops following, not the job");
        fflush(stdout);
    }
    if (!a->detach)
        return follow_job(o, id, job, json);
    if (json)
        show_json(job);
    else
        printf("follow it with: numatierctl jobs %" PRId64 " --wait\n", id);
    return EXIT_OK;
}

int cmd_offline(const struct ctl_opts *o, int argc, char **argv)
{
    struct offline_args a;
    char err[256], target[96];
    int r = offline_parse_args(argc, argv, &a, err, sizeof(err));
    if (r != 0) {
        if (r < 0)
            fprintf(stderr, "numatierctl: %s: %s\n", argv[0], err);
        offline_usage(r < 0 ? stderr : stdout, argv[0]);
        return r < 0 ? EXIT_USAGE : EXIT_OK;
    }
    bool json = o->json || a.json;
    describe_target(&a, target, sizeof(target));
    struct json_object *args = offline_request_args(&a), *resp = NULL, *result = NULL;
    int rc = request(o, a.op, args, json, &resp, &result);
    json_object_put(args);
    if (rc == EXIT_OK)
        rc = a.dry_run ? show_dry_run(result, target, json) : start_job(o, &a, result, target, json);
    json_object_put(resp);
    return rc;
}

static int show_jobs(const struct ctl_opts *o, int64_t id, bool json)
{
    struct json_object *args = id >= 0 ? id_args(id) : NULL, *resp = NULL, *result = NULL;
    int rc = request(o, "jobs", args, json, &resp, &result);
    json_object_put(args);
    struct json_object *one = id >= 0 ? single_job(result) : NULL;
    if (rc == EXIT_OK && id >= 0 && !one) {
        fprintf(stderr, "numatierctl: jobs: no job %" PRId64 "\n", id);
        rc = EXIT_FAILED;
    } else if (rc == EXIT_OK) {
        if (json)
            show_json(one ? one : result);
        else if (one)
            print_job_detail(one);
        else
            print_jobs_table(field(result, "jobs"));
    }
    json_object_put(resp);
    return rc;
}

int cmd_jobs(const struct ctl_opts *o, int argc, char **argv)
{
    int64_t id;
    bool wait, json = o->json;
    char err[256];
    int r = jobs_parse_args(argc, argv, &id, &wait, &json, err, sizeof(err));
    if (r != 0) {
        if (r < 0)
            fprintf(stderr, "numatierctl: jobs: %s\n", err);
        fprintf(r < 0 ? stderr : stdout, "usage: numatierctl jobs [ID [--wait]] [--json]\n");
        return r < 0 ? EXIT_USAGE : EXIT_OK;
    }
    return wait ? follow_job(o, id, NULL, json) : show_jobs(o, id, json);
}
