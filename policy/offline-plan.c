/* Offline planner: the rules are spelled out in include/numatier/offline-plan.h.
 * Pure: no syscalls, no globals, no clock. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numatier/offline-plan.h"
#include "numatier/strbuf.h"
#include "numatier/util.h"

#define MIB (UINT64_C(1) << 20)
#define DISTANCE_LOCAL 10
#define DISTANCE_REMOTE 20
#define MAX_NAMED 8             /* items one message names before "and N more" */

const char *nt_offline_op_to_string(enum nt_offline_op op)
{
    switch (op) {
    case NT_OFFLINE_OP_OFFLINE: return "offline";
    case NT_OFFLINE_OP_ONLINE:  return "online";
    case NT_OFFLINE_OP_DRAIN:   return "drain";
    }
    return "unknown";
}

const char *nt_offline_verdict_to_string(enum nt_offline_verdict v)
{
    switch (v) {
    case NT_OFFLINE_DO:          return "do";
    case NT_OFFLINE_DO_MAY_FAIL: return "may-fail";
    case NT_OFFLINE_SKIP:        return "skip";
    case NT_OFFLINE_IMPOSSIBLE:  return "impossible";
    }
    return "unknown";
}

const char *nt_offline_refusal_to_string(enum nt_offline_refusal r)
{
    static const char *const names[] = {
        [NT_OFFLINE_OK] = "ok",
        [NT_OFFLINE_NOTHING_TO_DO] = "nothing-to-do",
        [NT_OFFLINE_NO_TARGETS] = "no-targets",
        [NT_OFFLINE_INFEASIBLE] = "infeasible",
        [NT_OFFLINE_INSUFFICIENT_CAPACITY] = "insufficient-capacity",
        [NT_OFFLINE_BOUND_PROCESSES] = "bound-processes",
        [NT_OFFLINE_NO_CPU_DESTINATION] = "no-cpu-destination",
    };
    if ((unsigned)r < NT_ARRAY_SIZE(names) && names[r])
        return names[r];
    return "unknown";
}

void nt_offline_plan_free(struct nt_offline_plan *plan)
{
    if (!plan)
        return;
    free(plan->steps);
    free(plan->dests);
    free(plan->rebinds);
    plan->steps = NULL;
    plan->dests = NULL;
    plan->rebinds = NULL;
    plan->nr_steps = plan->nr_dests = plan->nr_rebinds = 0;
}

/* ---- small helpers -------------------------------------------------------- */

/* Amounts to move round up, room rounds down: the message never promises
 * more room than there is, and used - room adds up on screen. */
static uint64_t mib_up(uint64_t bytes) { return bytes / MIB + (bytes % MIB != 0); }
static uint64_t mib_down(uint64_t bytes) { return bytes / MIB; }

__attribute__((format(printf, 2, 3)))
static void set_message(struct nt_offline_plan *plan, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(plan->message, sizeof(plan->message), fmt, ap);
    va_end(ap);
}

static void refuse(struct nt_offline_plan *plan, enum nt_offline_refusal why)
{
    plan->refusal = why;
}

/* A whole word of valid_zones: "Normal Movable" has "Movable". */
static bool has_zone(const char *zones, const char *zone)
{
    size_t len = strlen(zone);
    for (const char *p = zones ? zones : ""; (p = strstr(p, zone)); p += len) {
        bool starts = p == zones || p[-1] == ' ';
        bool ends = p[len] == '\0' || p[len] == ' ' || p[len] == '\n';
        if (starts && ends)
            return true;
    }
    return false;
}

static int cmp_unsigned(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return (x > y) - (x < y);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* "5", "32-35, 40": sorted, unique ids as ranges, at most MAX_NAMED of them. */
static void append_id_ranges(char *buf, size_t size, const unsigned *ids, size_t n)
{
    size_t ranges = 0;
    for (size_t i = 0; i < n; ranges++) {
        size_t j = i;
        while (j + 1 < n && ids[j + 1] == ids[j] + 1)
            j++;
        if (ranges == MAX_NAMED) {
            nt_appendf(buf, size, " and %zu more", n - i);
            return;
        }
        nt_appendf(buf, size, "%s%u", ranges ? ", " : "", ids[i]);
        if (j > i)
            nt_appendf(buf, size, "-%u", ids[j]);
        i = j + 1;
    }
}

/* "block 5" / "blocks 32-35, 40". */
static void append_blocks(char *buf, size_t size, const unsigned *ids, size_t n)
{
    nt_appendf(buf, size, "block%s ", n == 1 ? "" : "s");
    append_id_ranges(buf, size, ids, n);
}

/* "node 0" / "nodes 0, 1"; ids ascending. */
static void append_nodes(char *buf, size_t size, const int *ids, size_t n)
{
    nt_appendf(buf, size, "node%s ", n == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++)
        nt_appendf(buf, size, "%s%d", i ? ", " : "", ids[i]);
}

/* ---- the planner's working state ------------------------------------------ */

struct planner {
    const struct nt_offline_input *in;
    const struct nt_offline_request *req;
    struct nt_offline_plan *plan;
    bool *is_target;            /* by block position */
    char what[160];              /* "node 2" or "blocks 32-35", for messages */
    size_t nr_do, nr_may_fail, nr_skip, nr_impossible;
};

static int node_pos(const struct nt_offline_input *in, int node)
{
    for (size_t i = 0; i < in->nr_nodes; i++)
        if (in->nodes[i].id == node)
            return (int)i;
    return -1;
}

static unsigned distance(const struct nt_offline_input *in, int from_node, size_t to_pos)
{
    int from = node_pos(in, from_node);
    unsigned d = from >= 0 && in->distance ? in->distance[(size_t)from * in->nr_nodes + to_pos] : 0;
    if (d)
        return d;
    return in->nodes[to_pos].id == from_node ? DISTANCE_LOCAL : DISTANCE_REMOTE;
}

static bool step_evacuates(const struct nt_offline_step *s)
{
    return s->verdict == NT_OFFLINE_DO || s->verdict == NT_OFFLINE_DO_MAY_FAIL;
}

/* ---- validation ----------------------------------------------------------- */

struct id_pos {
    unsigned id;
    size_t pos;
};

static int cmp_id_pos(const void *a, const void *b)
{
    const struct id_pos *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static bool arrays_malformed(const struct nt_offline_input *in, const struct nt_offline_request *req)
{
    return (!in->blocks && in->nr_blocks) || (!in->nodes && in->nr_nodes) ||
           (!in->procs && in->nr_procs) || (!req->block_ids && req->nr_block_ids);
}

static const char *request_malformed(const struct nt_offline_request *req)
{
    if ((unsigned)req->op > NT_OFFLINE_OP_DRAIN)
        return "unknown operation";
    if (req->target_node < -1 || req->target_node >= NT_MAX_NODES)
        return "target node out of range";
    if (req->target_node >= 0 && req->nr_block_ids)
        return "both a node and block ids given";
    if (req->target_node < 0 && !req->nr_block_ids)
        return "neither a node nor block ids given";
    if (req->op == NT_OFFLINE_OP_DRAIN && req->target_node < 0)
        return "drain takes a node, not blocks";
    return NULL;
}

static const char *nodes_malformed(const struct nt_offline_input *in)
{
    struct nt_nodeset seen = { 0 };
    for (size_t i = 0; i < in->nr_nodes; i++) {
        int id = in->nodes[i].id;
        if (id < 0 || id >= NT_MAX_NODES)
            return "node id out of range";
        if (nt_nodeset_test(&seen, id))
            return "node listed twice";
        nt_nodeset_set(&seen, id);
    }
    return NULL;
}

static const char *blocks_malformed(const struct nt_offline_input *in, const struct id_pos *sorted)
{
    if (!in->block_size)
        return "block size is 0";
    for (size_t i = 0; i < in->nr_blocks; i++) {
        int node = in->blocks[i].node;
        if (node < -1 || node >= NT_MAX_NODES)
            return "block node out of range";
        if (i && sorted[i].id == sorted[i - 1].id)
            return "block listed twice";
    }
    return NULL;
}

/* Fills *sorted (blocks by id, for look-ups) on success. */
static int validate(const struct nt_offline_input *in, const struct nt_offline_request *req,
                    struct nt_offline_plan *plan, struct id_pos **sorted)
{
    if (arrays_malformed(in, req)) {
        set_message(plan, "malformed request: an array is missing but its count is not 0.");
        return -EINVAL;
    }
    const char *why = request_malformed(req);
    if (!why)
        why = nodes_malformed(in);
    if (why) {
        set_message(plan, "malformed request: %s.", why);
        return -EINVAL;
    }
    struct id_pos *s = calloc(in->nr_blocks ? in->nr_blocks : 1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    for (size_t i = 0; i < in->nr_blocks; i++)
        s[i] = (struct id_pos){ .id = in->blocks[i].id, .pos = i };
    qsort(s, in->nr_blocks, sizeof(*s), cmp_id_pos);
    why = blocks_malformed(in, s);
    if (why) {
        free(s);
        set_message(plan, "malformed request: %s.", why);
        return -EINVAL;
    }
    *sorted = s;
    return 0;
}

/* ---- rule 1: targets and their verdicts ----------------------------------- */

__attribute__((format(printf, 3, 4)))
static void set_step(struct nt_offline_step *s, enum nt_offline_verdict v, const char *fmt, ...)
{
    s->verdict = v;
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(s->reason, sizeof(s->reason), fmt, ap);
    va_end(ap);
}

static void classify_skip(const struct nt_offline_block *b, const char *wanted,
                          struct nt_offline_step *s)
{
    if (b->state && strcmp(b->state, wanted))
        set_step(s, NT_OFFLINE_SKIP, "already %s (state \"%s\")", wanted, b->state);
    else
        set_step(s, NT_OFFLINE_SKIP, "already %s", wanted);
}

static void classify_offline(const struct nt_offline_block *b, struct nt_offline_step *s)
{
    const char *zones = b->valid_zones ? b->valid_zones : "";
    uint64_t mib = mib_up(b->used_bytes);
    if (!b->online)
        classify_skip(b, "offline", s);
    else if (b->node < 0)
        set_step(s, NT_OFFLINE_IMPOSSIBLE, "belongs to no NUMA node, so its evacuation cannot be planned");
    else if (b->unofflinable_reason && *b->unofflinable_reason)
        set_step(s, NT_OFFLINE_IMPOSSIBLE, "%s", b->unofflinable_reason);
    else if (has_zone(zones, "none"))
        set_step(s, NT_OFFLINE_IMPOSSIBLE,
                 "spans several zones (valid_zones \"none\"): the kernel cannot offline it");
    else if (!*zones)
        set_step(s, NT_OFFLINE_DO_MAY_FAIL,
                 "zone unknown (valid_zones unreadable): unmovable kernel allocations may pin it; "
                 "%" PRIu64 " MiB in use", mib);
    else if (!has_zone(zones, "Movable"))
        set_step(s, NT_OFFLINE_DO_MAY_FAIL,
                 "not in ZONE_MOVABLE (valid_zones \"%s\"): unmovable kernel allocations may pin it; "
                 "%" PRIu64 " MiB in use", zones, mib);
    else
        set_step(s, NT_OFFLINE_DO, "in ZONE_MOVABLE; %" PRIu64 " MiB in use to evacuate", mib);
}

/* Drain moves memory but offlines nothing, so zones cannot stop it. */
static void classify_drain(const struct nt_offline_block *b, struct nt_offline_step *s)
{
    if (!b->online)
        set_step(s, NT_OFFLINE_SKIP, "offline: nothing to evacuate");
    else
        set_step(s, NT_OFFLINE_DO, "%" PRIu64 " MiB in use to evacuate; the block stays online",
                 mib_up(b->used_bytes));
}

static void classify_online(const struct nt_offline_block *b, struct nt_offline_step *s)
{
    const char *zones = b->valid_zones ? b->valid_zones : "";
    if (b->online) {
        classify_skip(b, "online", s);
        return;
    }
    s->online_movable = has_zone(zones, "Movable");
    if (s->online_movable)
        set_step(s, NT_OFFLINE_DO, "offline; to be onlined into ZONE_MOVABLE");
    else
        set_step(s, NT_OFFLINE_DO, "offline; to be onlined into the kernel's default zone "
                 "(valid_zones \"%s\")", *zones ? zones : "unknown");
}

static void add_step(struct planner *p, size_t pos)
{
    const struct nt_offline_block *b = &p->in->blocks[pos];
    struct nt_offline_step *s = &p->plan->steps[p->plan->nr_steps++];
    *s = (struct nt_offline_step){ .block = b->id, .node = b->node };
    p->is_target[pos] = true;
    if (p->req->op == NT_OFFLINE_OP_ONLINE)
        classify_online(b, s);
    else if (p->req->op == NT_OFFLINE_OP_DRAIN)
        classify_drain(b, s);
    else
        classify_offline(b, s);
    if (step_evacuates(s) && p->req->op != NT_OFFLINE_OP_ONLINE)
        s->used_bytes = b->used_bytes;
}

static unsigned node_cpus(const struct nt_offline_input *in, int node)
{
    int pos = node_pos(in, node);
    return pos >= 0 ? in->nodes[pos].nr_cpus : 0;
}

static void collect_node(struct planner *p)
{
    int node = p->req->target_node;
    snprintf(p->what, sizeof(p->what), "node %d", node);
    for (size_t i = 0; i < p->in->nr_blocks; i++)
        if (p->in->blocks[i].node == node)
            add_step(p, i);
    if (p->plan->nr_steps)
        return;
    /* A CPU-only node still has threads to drain. */
    if (p->req->op == NT_OFFLINE_OP_DRAIN && node_cpus(p->in, node))
        return;
    refuse(p->plan, NT_OFFLINE_NO_TARGETS);
    if (p->req->op == NT_OFFLINE_OP_DRAIN)
        set_message(p->plan, "cannot drain node %d: it has neither memory blocks nor CPUs.", node);
    else
        set_message(p->plan, "cannot %s node %d: it has no memory blocks.",
                    nt_offline_op_to_string(p->req->op), node);
}

/* Requested ids, sorted and unique, in *ids; returns how many. */
static size_t unique_ids(const struct nt_offline_request *req, unsigned *ids)
{
    memcpy(ids, req->block_ids, req->nr_block_ids * sizeof(*ids));
    qsort(ids, req->nr_block_ids, sizeof(*ids), cmp_unsigned);
    size_t n = 0;
    for (size_t i = 0; i < req->nr_block_ids; i++)
        if (!n || ids[n - 1] != ids[i])
            ids[n++] = ids[i];
    return n;
}

static const struct id_pos *find_block(const struct id_pos *sorted, size_t n, unsigned id)
{
    struct id_pos key = { .id = id };
    return bsearch(&key, sorted, n, sizeof(*sorted), cmp_id_pos);
}

/* Every named block must exist: a typo must not offline the rest. */
static int collect_ids(struct planner *p, const struct id_pos *sorted)
{
    _cleanup_free_ unsigned *ids = malloc(p->req->nr_block_ids * sizeof(*ids));
    _cleanup_free_ unsigned *missing = malloc(p->req->nr_block_ids * sizeof(*missing));
    if (!ids || !missing)
        return -ENOMEM;
    size_t n = unique_ids(p->req, ids), nr_missing = 0;
    append_blocks(p->what, sizeof(p->what), ids, n);
    for (size_t i = 0; i < n; i++) {
        const struct id_pos *hit = find_block(sorted, p->in->nr_blocks, ids[i]);
        if (hit)
            add_step(p, hit->pos);
        else
            missing[nr_missing++] = ids[i];
    }
    if (nr_missing) {
        refuse(p->plan, NT_OFFLINE_NO_TARGETS);
        set_message(p->plan, "cannot %s %s: no memory ", nt_offline_op_to_string(p->req->op), p->what);
        append_blocks(p->plan->message, sizeof(p->plan->message), missing, nr_missing);
        nt_appendf(p->plan->message, sizeof(p->plan->message), " on this system.");
    }
    return 0;
}

static int collect_targets(struct planner *p, const struct id_pos *sorted)
{
    size_t max = p->req->target_node >= 0 ? p->in->nr_blocks : p->req->nr_block_ids;
    p->plan->steps = calloc(max ? max : 1, sizeof(*p->plan->steps));
    p->is_target = calloc(p->in->nr_blocks ? p->in->nr_blocks : 1, sizeof(*p->is_target));
    if (!p->plan->steps || !p->is_target)
        return -ENOMEM;
    if (p->req->target_node >= 0) {
        collect_node(p);
        return 0;
    }
    return collect_ids(p, sorted);
}

/* ---- rule 4: order -------------------------------------------------------- */

static int step_rank(const struct nt_offline_step *s)
{
    switch (s->verdict) {
    case NT_OFFLINE_DO_MAY_FAIL: return 0;
    case NT_OFFLINE_DO:          return 1;
    case NT_OFFLINE_IMPOSSIBLE:  return 2;
    case NT_OFFLINE_SKIP:        return 3;
    }
    return 4;
}

/* May-fail first (fail fast, least to roll back), then from the top of
 * the address space, where hot-added memory sits. */
static int cmp_offline_order(const void *a, const void *b)
{
    const struct nt_offline_step *x = a, *y = b;
    int rx = step_rank(x), ry = step_rank(y);
    if (rx != ry)
        return rx - ry;
    return (x->block < y->block) - (x->block > y->block);
}

/* Onlining goes bottom up, as the kernel onlines hot-added memory. */
static int cmp_online_order(const void *a, const void *b)
{
    const struct nt_offline_step *x = a, *y = b;
    int rx = step_rank(x), ry = step_rank(y);
    if (rx != ry)
        return rx - ry;
    return (x->block > y->block) - (x->block < y->block);
}

static void order_and_count(struct planner *p)
{
    struct nt_offline_plan *plan = p->plan;
    qsort(plan->steps, plan->nr_steps, sizeof(*plan->steps),
          p->req->op == NT_OFFLINE_OP_ONLINE ? cmp_online_order : cmp_offline_order);
    for (size_t i = 0; i < plan->nr_steps; i++) {
        switch (plan->steps[i].verdict) {
        case NT_OFFLINE_DO:          p->nr_do++; break;
        case NT_OFFLINE_DO_MAY_FAIL: p->nr_may_fail++; break;
        case NT_OFFLINE_SKIP:        p->nr_skip++; break;
        case NT_OFFLINE_IMPOSSIBLE:  p->nr_impossible++; break;
        }
        plan->used_bytes += plan->steps[i].used_bytes;
    }
}

/* ---- refusals from the blocks themselves ---------------------------------- */

static void refuse_impossible(struct planner *p)
{
    struct nt_offline_plan *plan = p->plan;
    size_t named = 0;
    refuse(plan, NT_OFFLINE_INFEASIBLE);
    set_message(plan, "cannot %s %s: ", nt_offline_op_to_string(p->req->op), p->what);
    for (size_t i = 0; i < plan->nr_steps; i++) {
        const struct nt_offline_step *s = &plan->steps[i];
        if (s->verdict != NT_OFFLINE_IMPOSSIBLE)
            continue;
        if (named++ == MAX_NAMED) {
            nt_appendf(plan->message, sizeof(plan->message), "; and %zu more such blocks",
                       p->nr_impossible - MAX_NAMED);
            break;
        }
        nt_appendf(plan->message, sizeof(plan->message), "%sblock %u %s",
                   named > 1 ? "; " : "", s->block, s->reason);
    }
    nt_appendf(plan->message, sizeof(plan->message), ".");
}

static void refuse_may_fail(struct planner *p)
{
    _cleanup_free_ unsigned *ids = calloc(p->nr_may_fail, sizeof(*ids));
    size_t n = 0;
    refuse(p->plan, NT_OFFLINE_INFEASIBLE);
    set_message(p->plan, "refusing to offline %s: ", p->what);
    for (size_t i = 0; ids && i < p->plan->nr_steps; i++)
        if (p->plan->steps[i].verdict == NT_OFFLINE_DO_MAY_FAIL)
            ids[n++] = p->plan->steps[i].block;
    qsort(ids, n, sizeof(*ids), cmp_unsigned);
    append_blocks(p->plan->message, sizeof(p->plan->message), ids, n);
    nt_appendf(p->plan->message, sizeof(p->plan->message),
               " %s not in ZONE_MOVABLE, so unmovable kernel allocations may pin %s; "
               "allow blocks that may fail to try anyway.",
               p->nr_may_fail == 1 ? "is" : "are", p->nr_may_fail == 1 ? "it" : "them");
}

static void nothing_to_do(struct planner *p)
{
    const char *state = p->req->op == NT_OFFLINE_OP_ONLINE ? "online" : "offline";
    refuse(p->plan, NT_OFFLINE_NOTHING_TO_DO);
    if (p->req->op == NT_OFFLINE_OP_DRAIN)
        set_message(p->plan, "nothing to do: %s has no online memory and no CPUs.", p->what);
    else if (p->req->target_node >= 0)
        set_message(p->plan, "nothing to do: every block of %s is already %s.", p->what, state);
    else
        set_message(p->plan, "nothing to do: %s %s already %s.", p->what,
                    p->plan->nr_steps == 1 ? "is" : "are", state);
}

/* ---- rule 2: capacity ------------------------------------------------------ */

/* Nodes that keep no online memory: a target on them is evacuated and no
 * block outside the targets stays online. */
static void find_emptied(struct planner *p)
{
    struct nt_nodeset *emptied = &p->plan->emptied;
    for (size_t i = 0; i < p->plan->nr_steps; i++)
        if (step_evacuates(&p->plan->steps[i]))
            nt_nodeset_set(emptied, p->plan->steps[i].node);
    for (size_t i = 0; i < p->in->nr_blocks; i++) {
        const struct nt_offline_block *b = &p->in->blocks[i];
        if (b->online && !p->is_target[i])
            nt_nodeset_clear(emptied, b->node);
    }
}

static bool node_usable(const struct planner *p, size_t pos, bool with_slow)
{
    const struct nt_offline_node *n = &p->in->nodes[pos];
    return n->online && !n->maintenance && !nt_nodeset_test(&p->plan->emptied, n->id) && (!n->slow || with_slow);
}

static bool node_considered(const struct planner *p, size_t pos)
{
    return node_usable(p, pos, p->req->allow_slow);
}

/* Free bytes above the low watermark, less the free space inside target
 * blocks on the node (that space leaves with them). */
static uint64_t node_room(const struct planner *p, size_t pos)
{
    const struct nt_offline_node *n = &p->in->nodes[pos];
    uint64_t free_bytes = n->free_bytes, leaving = 0;
    for (size_t i = 0; i < p->plan->nr_steps; i++) {
        const struct nt_offline_step *s = &p->plan->steps[i];
        if (s->node == n->id && step_evacuates(s))
            leaving += p->in->block_size - (s->used_bytes < p->in->block_size ? s->used_bytes
                                                                                : p->in->block_size);
    }
    free_bytes = free_bytes > leaving ? free_bytes - leaving : 0;
    return free_bytes > n->low_watermark_bytes ? free_bytes - n->low_watermark_bytes : 0;
}

/* Does a go before b as a destination for memory from node `from`?
 * Fast tiers first, then nearest, then lowest id. */
static bool goes_before(const struct nt_offline_input *in, int from, size_t a, size_t b)
{
    const struct nt_offline_node *na = &in->nodes[a], *nb = &in->nodes[b];
    if (na->slow != nb->slow)
        return !na->slow;
    unsigned da = distance(in, from, a), db = distance(in, from, b);
    if (da != db)
        return da < db;
    return na->id < nb->id;
}

/* Considered nodes in preference order from node `from`; returns count. */
static size_t candidates(const struct planner *p, int from, size_t *order)
{
    size_t n = 0;
    for (size_t i = 0; i < p->in->nr_nodes; i++) {
        if (!node_considered(p, i))
            continue;
        size_t j = n++;
        for (; j > 0 && goes_before(p->in, from, i, order[j - 1]); j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    return n;
}

static void add_dest(struct nt_offline_plan *plan, int node, uint64_t bytes)
{
    for (size_t i = 0; i < plan->nr_dests; i++)
        if (plan->dests[i].node == node) {
            plan->dests[i].bytes += bytes;
            return;
        }
    plan->dests[plan->nr_dests++] = (struct nt_offline_dest){ .node = node, .bytes = bytes };
}

static uint64_t used_on(const struct nt_offline_plan *plan, int node)
{
    uint64_t used = 0;
    for (size_t i = 0; i < plan->nr_steps; i++)
        if (plan->steps[i].node == node)
            used += plan->steps[i].used_bytes;
    return used;
}

/* Each source node's memory goes nearest-first from that node; all of
 * them draw on the same room. */
static void fill_dests(struct planner *p, uint64_t *room_left, size_t *order)
{
    for (int src = 0; src < NT_MAX_NODES; src++) {
        uint64_t need = used_on(p->plan, src);
        if (!need)
            continue;
        size_t n = candidates(p, src, order);
        for (size_t k = 0; k < n && need; k++) {
            size_t pos = order[k];
            uint64_t take = need < room_left[pos] ? need : room_left[pos];
            if (!take)
                continue;
            add_dest(p->plan, p->in->nodes[pos].id, take);
            room_left[pos] -= take;
            need -= take;
        }
    }
}

static void refuse_capacity(struct planner *p)
{
    struct nt_offline_plan *plan = p->plan;
    _cleanup_free_ int *ids = calloc(p->in->nr_nodes ? p->in->nr_nodes : 1, sizeof(*ids));
    _cleanup_free_ int *slow = calloc(p->in->nr_nodes ? p->in->nr_nodes : 1, sizeof(*slow));
    size_t nr_ids = 0, nr_slow = 0;
    for (size_t i = 0; ids && slow && i < p->in->nr_nodes; i++) {
        if (node_considered(p, i))
            ids[nr_ids++] = p->in->nodes[i].id;
        else if (node_usable(p, i, true))
            slow[nr_slow++] = p->in->nodes[i].id;
    }
    qsort(ids, nr_ids, sizeof(*ids), cmp_int);
    qsort(slow, nr_slow, sizeof(*slow), cmp_int);
    uint64_t used = mib_up(plan->used_bytes), room = mib_down(plan->room_bytes);
    refuse(plan, NT_OFFLINE_INSUFFICIENT_CAPACITY);
    set_message(plan, "cannot %s %s: %" PRIu64 " MiB in use, ", nt_offline_op_to_string(p->req->op),
                p->what, used);
    if (nr_ids) {
        nt_appendf(plan->message, sizeof(plan->message), "only %" PRIu64 " MiB free above the "
                   "watermarks on ", room);
        append_nodes(plan->message, sizeof(plan->message), ids, nr_ids);
        nt_appendf(plan->message, sizeof(plan->message), " (short by %" PRIu64 " MiB).", used - room);
    } else {
        nt_appendf(plan->message, sizeof(plan->message), "and no other node can take it.");
    }
    if (nr_slow) {
        nt_appendf(plan->message, sizeof(plan->message), " Slow-tier ");
        append_nodes(plan->message, sizeof(plan->message), slow, nr_slow);
        nt_appendf(plan->message, sizeof(plan->message), " %s left out because slow tiers may not "
                   "receive evacuated memory.", nr_slow == 1 ? "was" : "were");
    }
}

static int place_memory(struct planner *p)
{
    struct nt_offline_plan *plan = p->plan;
    size_t nr = p->in->nr_nodes ? p->in->nr_nodes : 1;
    _cleanup_free_ uint64_t *room_left = calloc(nr, sizeof(*room_left));
    _cleanup_free_ size_t *order = calloc(nr, sizeof(*order));
    plan->dests = calloc(nr, sizeof(*plan->dests));
    if (!room_left || !order || !plan->dests)
        return -ENOMEM;
    for (size_t i = 0; i < p->in->nr_nodes; i++) {
        room_left[i] = node_considered(p, i) ? node_room(p, i) : 0;
        plan->room_bytes += room_left[i];
    }
    if (plan->used_bytes > plan->room_bytes) {
        refuse_capacity(p);
        return 0;
    }
    fill_dests(p, room_left, order);
    return 0;
}

/* ---- rule 3: bound processes ---------------------------------------------- */

static bool bound_to_emptied(const struct nt_offline_proc *proc, const struct nt_nodeset *emptied)
{
    if (!proc->bound || nt_nodeset_empty(&proc->mems))
        return false;
    for (size_t w = 0; w < NT_ARRAY_SIZE(proc->mems.bits); w++)
        if (proc->mems.bits[w] & ~emptied->bits[w])
            return false;
    return true;
}

/* Where rebound processes go: the first destination, or with nothing to
 * move, the node the first emptied node's memory would go to first. */
static int first_destination(const struct planner *p)
{
    if (p->plan->nr_dests)
        return p->plan->dests[0].node;
    int from = 0;
    while (from < NT_MAX_NODES && !nt_nodeset_test(&p->plan->emptied, from))
        from++;
    int best = -1;
    for (size_t i = 0; i < p->in->nr_nodes; i++)
        if (node_considered(p, i) && (best < 0 || goes_before(p->in, from, i, (size_t)best)))
            best = (int)i;
    return best >= 0 ? p->in->nodes[best].id : -1;
}

static void refuse_bound(struct planner *p, size_t nr_bound, int to_node)
{
    struct nt_offline_plan *plan = p->plan;
    size_t named = 0;
    refuse(plan, NT_OFFLINE_BOUND_PROCESSES);
    set_message(plan, "cannot %s %s: %zu process%s bound only to memory being emptied: ",
                nt_offline_op_to_string(p->req->op), p->what, nr_bound, nr_bound == 1 ? " is" : "es are");
    for (size_t i = 0; i < p->in->nr_procs; i++) {
        const struct nt_offline_proc *proc = &p->in->procs[i];
        if (!bound_to_emptied(proc, &plan->emptied))
            continue;
        if (named++ == MAX_NAMED) {
            nt_appendf(plan->message, sizeof(plan->message), " and %zu more", nr_bound - MAX_NAMED);
            break;
        }
        nt_appendf(plan->message, sizeof(plan->message), "%s%d (%s)", named > 1 ? ", " : "",
                   (int)proc->pid, proc->comm ? proc->comm : "?");
    }
    if (to_node >= 0)
        nt_appendf(plan->message, sizeof(plan->message), "; use --force to rebind %s to node %d.",
                   nr_bound == 1 ? "it" : "them", to_node);
    else
        nt_appendf(plan->message, sizeof(plan->message), "; no other node is left to rebind %s to.",
                   nr_bound == 1 ? "it" : "them");
}

static int rebind(struct planner *p, int to_node)
{
    struct nt_offline_plan *plan = p->plan;
    plan->rebinds = calloc(p->in->nr_procs, sizeof(*plan->rebinds));
    if (!plan->rebinds)
        return -ENOMEM;
    for (size_t i = 0; i < p->in->nr_procs; i++) {
        const struct nt_offline_proc *proc = &p->in->procs[i];
        if (!bound_to_emptied(proc, &plan->emptied))
            continue;
        struct nt_offline_rebind *r = &plan->rebinds[plan->nr_rebinds++];
        *r = (struct nt_offline_rebind){ .pid = proc->pid, .from = proc->mems, .to_node = to_node };
        snprintf(r->comm, sizeof(r->comm), "%s", proc->comm ? proc->comm : "?");
    }
    return 0;
}

static int check_bound(struct planner *p)
{
    size_t nr_bound = 0;
    for (size_t i = 0; i < p->in->nr_procs; i++)
        nr_bound += bound_to_emptied(&p->in->procs[i], &p->plan->emptied);
    if (!nr_bound)
        return 0;
    int to_node = first_destination(p);
    if (!p->req->force || to_node < 0) {
        refuse_bound(p, nr_bound, to_node);
        return 0;
    }
    return rebind(p, to_node);
}

/* ---- rule 5: where a drained node's threads go ----------------------------- */

static void choose_cpu_node(struct planner *p)
{
    const struct nt_offline_input *in = p->in;
    int target = p->req->target_node, best = -1;
    bool closed = false;
    if (!node_cpus(in, target))
        return;
    for (size_t i = 0; i < in->nr_nodes; i++) {
        const struct nt_offline_node *n = &in->nodes[i];
        closed |= n->id != target && n->nr_cpus && n->maintenance;
        if (n->id == target || !n->nr_cpus || n->maintenance)
            continue;
        if (best < 0 || distance(in, target, i) < distance(in, target, (size_t)best) ||
            (distance(in, target, i) == distance(in, target, (size_t)best) && n->id < in->nodes[best].id))
            best = (int)i;
    }
    if (best >= 0) {
        p->plan->cpu_node = in->nodes[best].id;
        return;
    }
    refuse(p->plan, NT_OFFLINE_NO_CPU_DESTINATION);
    set_message(p->plan, "cannot drain node %d: no other node has CPUs to run its threads%s.", target,
                closed ? " (nodes under maintenance take none)" : "");
}

/* ---- the go-ahead message ------------------------------------------------- */

static void append_dests(struct nt_offline_plan *plan)
{
    char *m = plan->message;
    size_t size = sizeof(plan->message);
    if (!plan->nr_dests) {
        nt_appendf(m, size, "; no memory in use to move");
        return;
    }
    nt_appendf(m, size, "; %" PRIu64 " MiB in use goes to ", mib_up(plan->used_bytes));
    for (size_t i = 0; i < plan->nr_dests; i++)
        nt_appendf(m, size, "%snode %d (%" PRIu64 " MiB)", i ? ", " : "", plan->dests[i].node,
                   mib_up(plan->dests[i].bytes));
}

static void append_counts(const struct planner *p)
{
    char *m = p->plan->message;
    size_t size = sizeof(p->plan->message);
    size_t nr = p->nr_do + p->nr_may_fail;
    nt_appendf(m, size, "%zu block%s", nr, nr == 1 ? "" : "s");
    if (p->nr_may_fail)
        nt_appendf(m, size, ", %zu of them not in ZONE_MOVABLE and may fail", p->nr_may_fail);
    if (p->nr_skip)
        nt_appendf(m, size, " (%zu more already %s)", p->nr_skip,
                   p->req->op == NT_OFFLINE_OP_ONLINE ? "online" : "offline");
}

static void go_ahead(struct planner *p)
{
    struct nt_offline_plan *plan = p->plan;
    char *m = plan->message;
    size_t size = sizeof(plan->message);
    set_message(plan, "ready to %s %s: ", nt_offline_op_to_string(p->req->op), p->what);
    if (p->req->op == NT_OFFLINE_OP_DRAIN && plan->cpu_node >= 0)
        nt_appendf(m, size, "threads move to node %d; ", plan->cpu_node);
    if (p->req->op == NT_OFFLINE_OP_DRAIN && !(p->nr_do + p->nr_may_fail))
        nt_appendf(m, size, "no online memory to move");
    else
        append_counts(p);
    if (p->req->op != NT_OFFLINE_OP_ONLINE && p->nr_do + p->nr_may_fail)
        append_dests(plan);
    if (plan->nr_rebinds)
        nt_appendf(m, size, "; %zu bound process%s rebound to node %d", plan->nr_rebinds,
                   plan->nr_rebinds == 1 ? " is" : "es are", plan->rebinds[0].to_node);
    nt_appendf(m, size, ".");
}

/* ---- the rules in order ----------------------------------------------------- */

static bool nothing_left(const struct planner *p)
{
    if (p->nr_do + p->nr_may_fail)
        return false;
    return p->req->op != NT_OFFLINE_OP_DRAIN || !node_cpus(p->in, p->req->target_node);
}

static void check_blocks(struct planner *p)
{
    if (p->nr_impossible)
        refuse_impossible(p);
    else if (p->nr_may_fail && p->req->refuse_may_fail && p->req->op == NT_OFFLINE_OP_OFFLINE)
        refuse_may_fail(p);
    else if (nothing_left(p))
        nothing_to_do(p);
}

static int plan_moves(struct planner *p)
{
    find_emptied(p);
    int r = place_memory(p);
    if (r < 0 || p->plan->refusal)
        return r;
    r = check_bound(p);
    if (r < 0 || p->plan->refusal)
        return r;
    if (p->req->op == NT_OFFLINE_OP_DRAIN)
        choose_cpu_node(p);
    return 0;
}

static int run(struct planner *p, const struct id_pos *sorted)
{
    int r = collect_targets(p, sorted);
    if (r < 0 || p->plan->refusal)
        return r;
    order_and_count(p);
    check_blocks(p);
    if (p->plan->refusal)
        return 0;
    if (p->req->op != NT_OFFLINE_OP_ONLINE) {
        r = plan_moves(p);
        if (r < 0 || p->plan->refusal)
            return r;
    }
    go_ahead(p);
    return 0;
}

int nt_offline_plan(const struct nt_offline_input *in, const struct nt_offline_request *req,
                    struct nt_offline_plan *plan)
{
    if (!in || !req || !plan)
        return -EINVAL;
    *plan = (struct nt_offline_plan){ .op = req->op, .cpu_node = -1 };
    _cleanup_free_ struct id_pos *sorted = NULL;
    int r = validate(in, req, plan, &sorted);
    if (r < 0)
        return r;
    struct planner p = { .in = in, .req = req, .plan = plan };
    r = run(&p, sorted);
    free(p.is_target);
    if (r < 0) {
        nt_offline_plan_free(plan);
        set_message(plan, "out of memory while planning.");
    }
    return r;
}
