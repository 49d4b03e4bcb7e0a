/* numatierctl explain, plan, restore: the placement decisions. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "numatierctl.h"

static double jdbl(struct json_object *o, const char *key)
{
    struct json_object *v;
    return o && json_object_object_get_ex(o, key, &v) && v ? json_object_get_double(v) : 0;
}

static int parse_pid(const char *s, int *pid)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end || v <= 0 || v > INT32_MAX)
        return -1;
    *pid = (int)v;
    return 0;
}

static int call_with_pid(const struct ctl_opts *o, const char *cmd, int pid, struct json_object **resp,
                         struct json_object **result)
{
    struct json_object *args = json_object_new_object();
    json_object_object_add(args, "pid", json_object_new_int(pid));
    int rc = call_daemon_args(o, cmd, args, resp, result);
    json_object_put(args);
    return rc;
}

static void print_numbers(struct json_object *d)
{
    printf("  threads on node %" PRId64 ", hot memory on node %" PRId64 "; %.1f%% of accesses remote\n",
           jint(d, "thread_node"), jint(d, "mem_node"), 100 * jdbl(d, "remote_fraction"));
    printf("  remote penalty %.0f us/s; gain over %.0f s: %.0f us\n", jdbl(d, "penalty_usec_per_sec"),
           jdbl(d, "horizon_sec"), jdbl(d, "gain_usec"));
    printf("  move pages:   H = %" PRId64 " hot remote pages x C_mem %.2f us = %.0f us (to node %" PRId64 ")\n",
           jint(d, "hot_remote_pages"), jdbl(d, "c_mem_per_page_usec"), jdbl(d, "cost_pages_usec"),
           jint(d, "page_dest_node"));
    printf("  move threads: C_thread = %.0f us (%" PRId64 " thread(s))\n", jdbl(d, "cost_threads_usec"),
           jint(d, "threads_to_move"));
}

static void print_explain(struct json_object *r)
{
    printf("pid %" PRId64 " (%s)", jint(r, "pid"), jstr(r, "comm", "?"));
    struct json_object *d, *last;
    if (!json_object_object_get_ex(r, "decision", &d) || !d) {
        printf(": not watched: %s\n", jstr(r, "why_not", "?"));
        return;
    }
    printf(", mode %s\nnow:\n", jstr(r, "mode", "?"));
    print_numbers(d);
    struct json_object *v;
    if (json_object_object_get_ex(r, "threads_pinned", &v) && json_object_get_boolean(v))
        printf("  constraint: threads stay (%s)\n", jstr(r, "threads_pinned_why", "?"));
    if (json_object_object_get_ex(r, "pages_pinned", &v) && json_object_get_boolean(v))
        printf("  constraint: pages stay (%s)\n", jstr(r, "pages_pinned_why", "?"));
    if (json_object_object_get_ex(r, "affinity_set_by", &v) && v)
        printf("  CPU affinity set by %s: not the user's, threads may move\n", json_object_get_string(v));
    printf("  decision: %s", jstr(d, "action", "?"));
    if (jint(d, "dest_node") >= 0)
        printf(" to node %" PRId64, jint(d, "dest_node"));
    printf(" (%s): %s\n", jstr(d, "reason", "?"), jstr(d, "why", ""));
    printf("  hysteresis %" PRId64 "/%" PRId64 ", cooldown %.0f s left, settle %.0f s left\n",
           jint(d, "streak"), jint(d, "streak_needed"), jdbl(d, "cooldown_remaining_usec") / 1e6,
           jdbl(d, "settle_remaining_usec") / 1e6);
    printf("last action: %s", jstr(r, "last_action", "none"));
    if (*jstr(r, "last_result", ""))
        printf(" (%s)", jstr(r, "last_result", ""));
    putchar('\n');
    if (json_object_object_get_ex(r, "last_decision", &last) && last) {
        printf("  decided as: %s to node %" PRId64 " (%s): %s\n", jstr(last, "action", "?"),
               jint(last, "dest_node"), jstr(last, "reason", "?"), jstr(last, "why", ""));
        print_numbers(last);
    }
}

int cmd_explain(const struct ctl_opts *o, int argc, char **argv)
{
    int pid;
    if (argc != 2 || parse_pid(argv[1], &pid) < 0) {
        fprintf(stderr, "numatierctl: usage: explain PID\n");
        return EXIT_USAGE;
    }
    struct json_object *resp = NULL, *result = NULL;
    int rc = call_with_pid(o, "explain", pid, &resp, &result);
    if (rc == EXIT_OK) {
        if (o->json)
            print_json(result);
        else
            print_explain(result);
    }
    json_object_put(resp);
    return rc;
}

static void print_plan(struct json_object *r)
{
    struct json_object *list;
    printf("mode %s\n", jstr(r, "mode", "?"));
    if (!json_object_object_get_ex(r, "actions", &list) || json_object_array_length(list) == 0) {
        printf("(nothing to do)\n");
        return;
    }
    printf("%7s %-15s %-13s %4s  %-10s  %s\n", "PID", "COMMAND", "ACTION", "NODE", "STATE", "WHY");
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        struct json_object *e = json_object_array_get_idx(list, i);
        printf("%7" PRId64 " %-15s %-13s %4" PRId64 "  %-10s  %s\n", jint(e, "pid"), jstr(e, "comm", "?"),
               jstr(e, "action", "?"), jint(e, "node"), jstr(e, "state", "?"), jstr(e, "why", ""));
    }
}

int cmd_plan(const struct ctl_opts *o, int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "numatierctl: usage: plan\n");
        return EXIT_USAGE;
    }
    struct json_object *resp = NULL, *result = NULL;
    int rc = call_daemon_args(o, "plan", NULL, &resp, &result);
    if (rc == EXIT_OK) {
        if (o->json)
            print_json(result);
        else
            print_plan(result);
    }
    json_object_put(resp);
    return rc;
}

int cmd_restore(const struct ctl_opts *o, int argc, char **argv)
{
    int pid;
    if (argc != 2 || parse_pid(argv[1], &pid) < 0) {
        fprintf(stderr, "numatierctl: usage: restore PID\n");
        return EXIT_USAGE;
    }
    struct json_object *resp = NULL, *result = NULL;
    int rc = call_with_pid(o, "restore", pid, &resp, &result);
    if (rc == EXIT_OK) {
        if (o->json)
            print_json(result);
        else
            printf("restored the affinity of %" PRId64 " thread(s) of pid %d\n", jint(result, "threads_restored"), pid);
    }
    json_object_put(resp);
    return rc;
}
