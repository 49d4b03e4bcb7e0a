/* numatierctl ras: corrected memory errors and what numatierd did. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <json-c/json.h>

#include "numatierctl.h"

static struct json_object *member(struct json_object *o, const char *key)
{
    struct json_object *v;
    return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static size_t length(struct json_object *a)
{
    return a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
}

static void print_daemon(struct json_object *d)
{
    const char *why = jstr(d, "unavailable", NULL);
    if (why)
        printf("RAS: not watching corrected errors: %s\n", why);
    else
        printf("RAS: %" PRId64 " events (%" PRId64 " undecodable, %" PRId64 " lost); %" PRId64 " frames offlined, %"
               PRId64 " failed, %" PRId64 " retries\n", jint(d, "events"), jint(d, "undecodable"), jint(d, "lost"),
               jint(d, "offlined"), jint(d, "failed"), jint(d, "retries"));
    const char *others = jstr(d, "coexisting", NULL);
    if (others)
        printf("Also handling corrected errors here: %s (see numatierd(8))\n", others);
    struct json_object *ledger = member(d, "ledger");
    if (ledger && json_object_is_type(ledger, json_type_string))
        printf("Ledger: unavailable: %s\n", json_object_get_string(ledger));
}

static void print_groups(struct json_object *groups)
{
    if (!length(groups))
        return;
    printf("\n%5s %8s %8s %8s\n", "Node", "Block", "Frames", "Errors");
    for (size_t i = 0; i < length(groups); i++) {
        struct json_object *g = json_object_array_get_idx(groups, i);
        printf("%5" PRId64 " %8" PRId64 " %8" PRId64 " %8" PRId64 "\n", jint(g, "node"), jint(g, "memory_block"),
               jint(g, "frames"), jint(g, "errors"));
    }
}

static void print_frames(const char *title, struct json_object *frames)
{
    if (!length(frames))
        return;
    printf("\n%s:\n%18s %-16s %6s %8s  %s\n", title, "Address", "State", "Errors", "Attempts", "Result");
    for (size_t i = 0; i < length(frames); i++) {
        struct json_object *f = json_object_array_get_idx(frames, i);
        printf("  0x%014" PRIx64 " %-16s %6" PRId64 " %8" PRId64 "  %s\n", (uint64_t)jint(f, "phys_addr"),
               jstr(f, "state", "?"), jint(f, "count"), jint(f, "attempts"), jstr(f, "last_result", ""));
    }
}

static void print_events(struct json_object *events)
{
    if (!length(events))
        return;
    printf("\nRecent events:\n");
    for (size_t i = 0; i < length(events); i++) {
        struct json_object *e = json_object_array_get_idx(events, i);
        struct json_object *addr = member(e, "phys_addr");
        printf("  #%-6" PRId64 " %-14s ", jint(e, "id"), jstr(e, "source", "?"));
        if (addr)
            printf("0x%014" PRIx64, (uint64_t)json_object_get_int64(addr));
        else
            printf("%16s", "(no address)");
        printf("  %s\n", jstr(member(e, "fields"), "detail", ""));
    }
}

/* ECC block escalations: each request for an offline job, and its fate. */
static void print_block_actions(struct json_object *actions)
{
    if (!length(actions))
        return;
    printf("\nMemory blocks escalated (block_action soft):\n");
    for (size_t i = 0; i < length(actions); i++) {
        struct json_object *a = json_object_array_get_idx(actions, i);
        printf("  block %-6" PRId64 " %-8s %s\n", jint(a, "block"), jstr(a, "state", "?"), jstr(a, "result", ""));
    }
}

/* The integrity verdict; false when the ledger has problems. */
static bool print_integrity(struct json_object *c)
{
    struct json_object *ok = member(c, "ok"), *problems = member(c, "problems");
    bool good = ok && json_object_get_boolean(ok);
    if (!c)
        printf("\nLedger check: the daemon did not check the ledger (an older numatierd?)\n");
    else if (good)
        printf("\nLedger check: ok (%" PRId64 " frames offline, %" PRId64 " successful soft offlines kept)\n",
               jint(c, "frames_offline"), jint(c, "offlines_done"));
    else
        printf("\nLedger check: %zu problem(s):\n", length(problems));
    for (size_t i = 0; i < length(problems); i++)
        printf("  %s\n", json_object_get_string(json_object_array_get_idx(problems, i)));
    return good;
}

int cmd_ras(const struct ctl_opts *o, int argc, char **argv)
{
    bool check = argc == 2 && strcmp(argv[1], "--check") == 0;
    if (argc != 1 && !check) {
        fprintf(stderr, "numatierctl: usage: ras [--check]\n");
        return EXIT_USAGE;
    }
    struct json_object *args = json_object_new_object(), *resp = NULL, *result = NULL;
    if (check)
        json_object_object_add(args, "check", json_object_new_boolean(1));
    int rc = call_daemon_args(o, "ras", args, &resp, &result);
    json_object_put(args);
    if (rc == EXIT_OK) {
        if (o->json) {
            print_json(result);
        } else {
            print_daemon(member(result, "daemon"));
            struct json_object *l = member(result, "ledger");
            print_groups(member(l, "groups"));
            print_frames("Offlined frames", member(l, "offlined"));
            print_frames("Pending retries", member(l, "pending_retries"));
            print_block_actions(member(l, "block_actions"));
            print_events(member(l, "recent_events"));
        }
        /* A ledger with problems is a failure a script can see. */
        struct json_object *integrity = member(result, "integrity");
        if (check && !(o->json ? json_object_get_boolean(member(integrity, "ok")) : print_integrity(integrity)))
            rc = EXIT_FAILED;
    }
    json_object_put(resp);
    return rc;
}
