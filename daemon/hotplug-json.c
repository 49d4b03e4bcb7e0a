/* PLAN and JOB as the control protocol has them (one dump feeds the CLI's
 * tables, its progress bar and --json). */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numatier/hotplug.h"
#include "numatier/units.h"

static void add_str(struct json_object *o, const char *k, const char *v)
{
    json_object_object_add(o, k, json_object_new_string(v ? v : ""));
}

static void add_int(struct json_object *o, const char *k, int64_t v)
{
    json_object_object_add(o, k, json_object_new_int64(v));
}

static void add_u64(struct json_object *o, const char *k, uint64_t v)
{
    json_object_object_add(o, k, json_object_new_uint64(v));
}

static void add_bool(struct json_object *o, const char *k, bool v)
{
    json_object_object_add(o, k, json_object_new_boolean(v));
}

static struct json_object *step_json(const struct nt_offline_step *s)
{
    struct json_object *o = json_object_new_object();
    add_int(o, "block", s->block);
    add_int(o, "node", s->node);
    add_str(o, "verdict", nt_offline_verdict_to_string(s->verdict));
    add_bool(o, "online_movable", s->online_movable);
    add_u64(o, "used_bytes", s->used_bytes);
    add_str(o, "reason", s->reason);
    return o;
}

static struct json_object *plan_rebind_json(const struct nt_offline_rebind *r)
{
    struct json_object *o = json_object_new_object();
    char from[NT_NODELIST_STRLEN];
    nt_format_nodelist(&r->from, from, sizeof(from));
    add_int(o, "pid", r->pid);
    add_str(o, "comm", r->comm);
    add_str(o, "from", from);
    add_int(o, "to", r->to_node);
    return o;
}

struct json_object *nt_offline_plan_to_json(const struct nt_offline_plan *plan)
{
    struct json_object *o = json_object_new_object();
    struct json_object *steps = json_object_new_array(), *dests = json_object_new_array(),
                       *rebinds = json_object_new_array();
    add_str(o, "op", nt_offline_op_to_string(plan->op));
    add_str(o, "refusal", nt_offline_refusal_to_string(plan->refusal));
    add_str(o, "message", plan->message);
    add_u64(o, "used_bytes", plan->used_bytes);
    add_u64(o, "room_bytes", plan->room_bytes);
    add_int(o, "cpu_node", plan->cpu_node);
    for (size_t i = 0; i < plan->nr_steps; i++)
        json_object_array_add(steps, step_json(&plan->steps[i]));
    for (size_t i = 0; i < plan->nr_dests; i++) {
        struct json_object *d = json_object_new_object();
        add_int(d, "node", plan->dests[i].node);
        add_u64(d, "bytes", plan->dests[i].bytes);
        json_object_array_add(dests, d);
    }
    for (size_t i = 0; i < plan->nr_rebinds; i++)
        json_object_array_add(rebinds, plan_rebind_json(&plan->rebinds[i]));
    json_object_object_add(o, "steps", steps);
    json_object_object_add(o, "destinations", dests);
    json_object_object_add(o, "rebinds", rebinds);
    return o;
}

static struct json_object *block_json(const struct nt_job_block *b)
{
    struct json_object *o = json_object_new_object();
    add_int(o, "block", b->block);
    add_int(o, "node", b->node);
    add_str(o, "before", b->before);
    add_str(o, "now", b->now);
    add_str(o, "result", nt_job_result_to_string(b->result));
    add_str(o, "reason", b->reason);
    add_int(o, "attempts", b->attempts);
    return o;
}

static struct json_object *job_rebind_json(const struct nt_job_rebind *r)
{
    struct json_object *o = json_object_new_object();
    add_int(o, "pid", r->pid);
    add_str(o, "comm", r->comm);
    add_str(o, "from", r->from);
    add_int(o, "to", r->to_node);
    add_bool(o, "restored", r->restored);
    add_str(o, "kind", r->kind);
    add_bool(o, "applied", r->applied);
    if (r->cgroup[0])
        add_str(o, "cgroup", r->cgroup);
    return o;
}

static struct json_object *job_pin_json(const struct nt_job_pin *p)
{
    struct json_object *o = json_object_new_object();
    add_int(o, "pid", p->pid);
    add_str(o, "comm", p->comm);
    add_str(o, "cpus_before", p->cpus_before);
    add_str(o, "cpus_set", p->cpus_set);
    add_int(o, "threads", p->threads);
    add_bool(o, "restored", p->restored);
    return o;
}

/* A block whose state this job changed: offlined or onlined, or found
 * changed by the rollback, which put it back or could not. */
static bool block_changed(const struct nt_job_block *b)
{
    switch (b->result) {
    case NT_BLOCK_OFFLINED:
    case NT_BLOCK_ONLINED:
    case NT_BLOCK_ROLLED_BACK:
    case NT_BLOCK_ROLLBACK_FAILED:
        return true;
    default:
        return false;
    }
}

/* blocks_total counts the blocks the job changes (skipped ones are not
 * work); blocks_done those it changed, rolled back or not, so the count
 * never runs backwards and a rolled-back job still says how far it got. */
static void count_blocks(const struct nt_job *j, uint64_t *total, uint64_t *done)
{
    *total = *done = 0;
    for (size_t i = 0; i < j->nr_blocks; i++) {
        const struct nt_job_block *b = &j->blocks[i];
        if (b->result == NT_BLOCK_SKIPPED || !b->want[0])
            continue;
        (*total)++;
        *done += block_changed(b);
    }
}

struct json_object *nt_job_to_json(const struct nt_job *j, uint64_t elapsed_usec)
{
    struct json_object *o = json_object_new_object();
    struct json_object *blocks = json_object_new_array(), *rebinds = json_object_new_array();
    struct json_object *pins = json_object_new_array();
    uint64_t total, done;
    count_blocks(j, &total, &done);
    add_int(o, "id", j->id);
    add_str(o, "op", nt_offline_op_to_string(j->op));
    add_str(o, "target", j->target);
    add_str(o, "state", nt_job_state_to_string(j->state));
    add_str(o, "phase", nt_job_phase_to_string(j->phase));
    add_u64(o, "blocks_total", total);
    add_u64(o, "blocks_done", done);
    add_u64(o, "bytes_moved", j->bytes_moved);     /* as journaled; the running job's: hotplug.c */
    add_u64(o, "started_usec", j->started_usec);
    add_u64(o, "finished_usec", j->finished_usec);
    json_object_object_add(o, "elapsed_sec", json_object_new_double((double)elapsed_usec / 1e6));
    json_object_object_add(o, "timeout_sec", json_object_new_double((double)j->timeout_usec / 1e6));
    add_bool(o, "rollback", j->rollback);
    add_bool(o, "force", j->force);
    add_str(o, "message", j->message);
    add_bool(o, "resumed", j->resumed);
    for (size_t i = 0; i < j->nr_blocks; i++)
        json_object_array_add(blocks, block_json(&j->blocks[i]));
    for (size_t i = 0; i < j->nr_rebinds; i++)
        json_object_array_add(rebinds, job_rebind_json(&j->rebinds[i]));
    json_object_object_add(o, "blocks", blocks);
    json_object_object_add(o, "rebinds", rebinds);
    for (size_t i = 0; i < j->nr_pins; i++)
        json_object_array_add(pins, job_pin_json(&j->pins[i]));
    json_object_object_add(o, "pins", pins);
    return o;
}

/* ---- requests ------------------------------------------------------------------------ */

static int bad(char *why, size_t len, const char *text)
{
    snprintf(why, len, "%s", text);
    return -EINVAL;
}

static int get_bool(struct json_object *v, bool *out)
{
    if (!json_object_is_type(v, json_type_boolean))
        return -EINVAL;
    *out = json_object_get_boolean(v);
    return 0;
}

/* A node id: an integer, or a string of digits. */
static int get_node(struct json_object *v, int *node)
{
    int64_t n;
    if (json_object_is_type(v, json_type_int))
        n = json_object_get_int64(v);
    else if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        char *end;
        if (!*s || *s == '-' || *s == '+')
            return -EINVAL;
        n = strtoll(s, &end, 10);
        if (*end)
            return -EINVAL;
    } else
        return -EINVAL;
    if (n < 0 || n >= NT_MAX_NODES)
        return -EINVAL;
    *node = (int)n;
    return 0;
}

static int get_timeout(struct json_object *v, uint64_t *usec)
{
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
        return -EINVAL;
    double d = json_object_get_double(v);
    if (!(d >= 0) || d > 7 * 86400.0)
        return -EINVAL;
    *usec = (uint64_t)(d * 1e6);
    return 0;
}

static int set_target(struct nt_hotplug_request *req, const char *key, struct json_object *v, unsigned *targets,
                      char *why, size_t len)
{
    (*targets)++;
    if (strcmp(key, "node") == 0) {
        req->kind = NT_TARGET_NODE;
        return get_node(v, &req->node) < 0 ? bad(why, len, "\"node\" must be a node number") : 0;
    }
    if (strcmp(key, "block") == 0) {
        req->kind = NT_TARGET_BLOCKS;
        char buf[32];
        if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0)
            snprintf(buf, sizeof(buf), "%" PRId64, json_object_get_int64(v));
        else if (json_object_is_type(v, json_type_string))
            snprintf(buf, sizeof(buf), "%s", json_object_get_string(v));
        else
            buf[0] = '\0';
        if (nt_hotplug_parse_blocks(buf, &req->first_block, &req->last_block) < 0)
            return bad(why, len, "\"block\" must be a memory block number N or a range N-M (N <= M)");
        return 0;
    }
    req->kind = NT_TARGET_RANGE;
    if (!json_object_is_type(v, json_type_string) ||
        nt_hotplug_parse_range(json_object_get_string(v), &req->range_start, &req->range_end) < 0)
        return bad(why, len, "\"range\" must be START-END, physical addresses (0x hex or decimal), END > START");
    return 0;
}

static int set_option(struct nt_hotplug_request *req, const char *key, struct json_object *v, char *why, size_t len)
{
    if (strcmp(key, "dry_run") == 0)
        return get_bool(v, &req->dry_run) < 0 ? bad(why, len, "\"dry_run\" must be true or false") : 0;
    if (strcmp(key, "force") == 0)
        return get_bool(v, &req->force) < 0 ? bad(why, len, "\"force\" must be true or false") : 0;
    if (strcmp(key, "rollback") == 0)
        return get_bool(v, &req->rollback) < 0 ? bad(why, len, "\"rollback\" must be true or false") : 0;
    if (strcmp(key, "timeout_sec") == 0)
        return get_timeout(v, &req->timeout_usec) < 0 ?
               bad(why, len, "\"timeout_sec\" must be a number of seconds from 0 to 604800") : 0;
    snprintf(why, len, "unknown argument \"%s\"", key);
    return -EINVAL;
}

int nt_hotplug_request_from_json(enum nt_offline_op op, struct json_object *args, struct nt_hotplug_request *req,
                                 char *why, size_t len)
{
    *req = (struct nt_hotplug_request){ .op = op, .rollback = true, .node = -1 };
    if (args && !json_object_is_type(args, json_type_object))
        return bad(why, len, "\"args\" must be an object");
    unsigned targets = 0;
    if (args) {
        json_object_object_foreach(args, key, v) {
            bool is_target = strcmp(key, "node") == 0 || strcmp(key, "block") == 0 || strcmp(key, "range") == 0;
            int r = is_target ? set_target(req, key, v, &targets, why, len) : set_option(req, key, v, why, len);
            if (r < 0)
                return r;
        }
    }
    if (targets != 1)
        return bad(why, len, op == NT_OFFLINE_OP_DRAIN ? "drain needs \"node\"" :
                   "give exactly one target: \"block\", \"range\" or \"node\"");
    if (op == NT_OFFLINE_OP_DRAIN && req->kind != NT_TARGET_NODE)
        return bad(why, len, "drain takes a whole node: \"node\"");
    return 0;
}
