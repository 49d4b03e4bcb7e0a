/* numatierctl offline / online / drain / jobs: the pure parts, exposed so
 * tests/unit/test-cli-offline.c can check them without a daemon.
 *
 * Nothing here talks to the daemon or the terminal: argument parsing, the
 * request's JSON args, the progress line, the per-step lines and the
 * exit-code decisions. cli/offline.c runs the commands around them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct json_object;

enum offline_target {
    OFFLINE_TARGET_BLOCK,       /* first_block..last_block, inclusive */
    OFFLINE_TARGET_RANGE,       /* [range_start, range_end) in bytes */
    OFFLINE_TARGET_NODE,
};

struct offline_args {
    const char *op;             /* "offline", "online" or "drain": argv[0] */
    enum offline_target target;
    unsigned first_block, last_block;
    uint64_t range_start, range_end;
    int node;
    double timeout_sec;         /* whole-job deadline; 0: the daemon's default */
    bool dry_run, detach, force, no_rollback, json;
};

#define OFFLINE_MAX_BLOCK   0x7fffffffu
#define OFFLINE_MAX_TIMEOUT (7 * 86400.0)

/* Parse "OP TARGET VALUE [options]" (argv[0] is the op). Options may come
 * before or after the target. Returns 0, 1 when --help was asked, or
 * -EINVAL with a one-line reason in err. */
int offline_parse_args(int argc, char **argv, struct offline_args *a, char *err, size_t errlen);
/* "jobs [ID] [--wait]": *id is -1 without an ID. Same returns. */
int jobs_parse_args(int argc, char **argv, int64_t *id, bool *wait, bool *json, char *err, size_t errlen);
/* A physical address: decimal or 0x hex, with an optional K, M, G or T
 * suffix (binary, case-insensitive). 0 or -EINVAL / -ERANGE. */
int offline_parse_address(const char *s, uint64_t *out);

/* The request's "args" object, as protocol.md spells it. New reference. */
struct json_object *offline_request_args(const struct offline_args *a);

/* The one progress line a terminal shows for a JOB, at most width - 1
 * columns so it never wraps: target, a bar of blocks done (while memory
 * moves and the job says how much it is to move, bytes_to_move: of MiB
 * moved), MiB moved, elapsed seconds and phase. Returns its length. */
size_t offline_progress_line(struct json_object *job, unsigned width, char *buf, size_t len);
/* For output that is not a terminal: one line per change from prev to cur
 * (phase changes, each block whose result changed). prev may be NULL.
 * Returns the number of lines written. */
unsigned offline_report_changes(FILE *out, struct json_object *prev, struct json_object *cur);

/* The last line that said how much had moved: its elapsed time and bytes. */
struct offline_moved_mark {
    double sec;
    int64_t bytes;
};
#define OFFLINE_PROGRESS_BYTES  (64 * 1048576)     /* a line per 64 MiB moved... */
#define OFFLINE_PROGRESS_SEC    5.0                 /* ...or per 5 s, if any moved */

/* Also for output that is not a terminal, while memory moves (phase
 * evacuating or draining): "[    4.2s] evacuating: 96 MiB moved" when
 * bytes_moved is OFFLINE_PROGRESS_BYTES past *mark, or differs from it and
 * OFFLINE_PROGRESS_SEC have passed; nothing when nothing moved. A phase
 * change from prev (or prev NULL), which offline_report_changes prints with
 * MiB moved, only sets *mark. Start with *mark zeroed. Returns 0 or 1. */
unsigned offline_report_progress(FILE *out, struct offline_moved_mark *mark, struct json_object *prev,
                                 struct json_object *cur);

/* A PLAN in two lines: what the job does, then the daemon's message.
 * "offline node 2: 4 block(s) to change (1 skipped), 256.0 MiB in use to
 * move to node 0 (200.0 MiB), node 1 (56.0 MiB)"; a drain changes no
 * block: "drain node 1: threads to node 0, 80.0 MiB in use to move to
 * node 0 (80.0 MiB); no block changes state". */
void offline_print_plan_summary(FILE *out, struct json_object *plan, const char *target);
/* "offline node 2: nothing to do: every block of node 2 is already
 * offline." (the words once, whether the daemon's message has them). */
void offline_print_nothing_to_do(FILE *out, const char *op, const char *target, struct json_object *plan);

/* The job has reached a final state (succeeded, failed, rolled-back,
 * interrupted). */
bool offline_job_finished(struct json_object *job);
/* Exit code of a finished job: 0 succeeded, 7 rolled back completely,
 * 1 anything else (failed, interrupted, or any block whose rollback failed). */
int offline_exit_for_job(struct json_object *job);
/* Exit code for an error reply's code: 6 for a plan refusal, 4 for
 * permission-denied, 1 otherwise. */
int offline_exit_for_error(const char *code);
bool offline_is_refusal(const char *code);
