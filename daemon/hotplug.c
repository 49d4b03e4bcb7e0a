/* The job manager for offline, online and drain: requests are planned,
 * become the one running job, are driven from the sd-event loop a step at
 * a time, journaled in the ledger, and recovered after a restart. See
 * include/numatier/hotplug.h; the steps live in hotplug-exec.c and
 * hotplug-evac.c. */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-journal.h>

#include "hotplug-internal.h"
#include "numatier/config.h"
#include "numatier/log.h"
#include "numatier/strbuf.h"
#include "numatier/topology.h"
#include "numatier/units.h"
#include "numatier/util.h"

/* A message id for the journal, so operators can follow offline jobs. */
#define MESSAGE_ID_JOB "8f0a4cb1f1f94e4c9b0de6e5b1a7d2c3"
#define MIB (UINT64_C(1) << 20)

/* ---- parameters and parsing ------------------------------------------------------ */

void nt_hotplug_params_from_config(struct nt_hotplug_params *p, const struct nt_config *c)
{
    *p = (struct nt_hotplug_params){
        .write_timeout_usec = c->offline_write_timeout_usec,
        .timeout_usec = c->offline_timeout_usec,
        .ebusy_retries = c->offline_ebusy_retries,
        .retry_backoff_usec = c->offline_retry_backoff_usec,
        .retry_timeouts = c->offline_retry_timeouts,
        .on_restart = (enum nt_offline_restart)c->offline_on_restart,
        .allow_slow = c->offline_allow_slow,
        .history = c->offline_history,
        .free_watermark_pct = c->free_watermark_pct,
        .migration_budget = c->migration_budget,
        .tiers = c->tiers,
    };
}

static int parse_u64(const char *s, int base, uint64_t *v, const char **end)
{
    if (!s || *s == '-' || *s == '+' || *s == ' ' || !*s)
        return -EINVAL;
    char *e;
    errno = 0;
    unsigned long long x = strtoull(s, &e, base);
    if (errno || e == s)
        return -EINVAL;
    *v = x;
    *end = e;
    return 0;
}

int nt_hotplug_parse_blocks(const char *s, unsigned *first, unsigned *last)
{
    uint64_t a, b;
    const char *end;
    if (parse_u64(s, 10, &a, &end) < 0 || a > UINT32_MAX)
        return -EINVAL;
    b = a;
    if (*end == '-' && (parse_u64(end + 1, 10, &b, &end) < 0 || b > UINT32_MAX || b < a))
        return -EINVAL;
    if (*end)
        return -EINVAL;
    *first = (unsigned)a;
    *last = (unsigned)b;
    return 0;
}

/* Hex with 0x, else decimal. */
static int parse_addr(const char *s, uint64_t *v, const char **end)
{
    if (s && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        return parse_u64(s + 2, 16, v, end);
    return parse_u64(s, 10, v, end);
}

int nt_hotplug_parse_range(const char *s, uint64_t *start, uint64_t *end)
{
    uint64_t a, b;
    const char *p;
    if (parse_addr(s, &a, &p) < 0 || *p != '-' || parse_addr(p + 1, &b, &p) < 0 || *p || b <= a)
        return -EINVAL;
    *start = a;
    *end = b;
    return 0;
}


/* ---- the journal -------------------------------------------------------------------- */

static void journal_failed(struct nt_hotplug *h, const char *what, int r)
{
    log_error("%s job %" PRId64 ": cannot journal %s in %s: %s", h->job ? nt_offline_op_to_string(h->job->op) : "offline",
              h->job ? h->job->id : 0, what,
              h->ledger_path ? h->ledger_path : "?", strerror(-r));
}

void nt_hp_journal(struct nt_hotplug *h)
{
    int r = h->ledger && h->job->id ? nt_ledger_job_update(h->ledger, h->job) : 0;
    if (r < 0)
        journal_failed(h, "the job", r);
}

void nt_hp_journal_block(struct nt_hotplug *h, size_t i)
{
    int r = h->ledger && h->job->id ? nt_ledger_job_block_update(h->ledger, h->job, i) : 0;
    if (r < 0)
        journal_failed(h, "a block", r);
}

void nt_hp_journal_rebind(struct nt_hotplug *h, size_t i)
{
    int r = h->ledger && h->job->id ? nt_ledger_job_rebind_update(h->ledger, h->job, i) : 0;
    if (r < 0)
        journal_failed(h, "a rebind", r);
}

void nt_hp_journal_pin(struct nt_hotplug *h, size_t i)
{
    int r = h->ledger && h->job->id ? nt_ledger_job_pin_update(h->ledger, h->job, i) : 0;
    if (r < 0)
        journal_failed(h, "a pinned process", r);
}

/* ---- maintenance: drained nodes ---------------------------------------------------- */

bool nt_hp_drained(const struct nt_hotplug *h, int node, int64_t *job)
{
    for (size_t i = 0; i < h->nr_drained; i++)
        if (h->drained[i].node == node) {
            if (job)
                *job = h->drained[i].job_id;
            return true;
        }
    return false;
}

static void drained_set(struct nt_hotplug *h, int node, int64_t job)
{
    for (size_t i = 0; i < h->nr_drained; i++)
        if (h->drained[i].node == node) {
            h->drained[i].job_id = job;
            return;
        }
    struct nt_drain_ref *nv = realloc(h->drained, (h->nr_drained + 1) * sizeof(*nv));
    if (!nv) {
        log_error("node %d is drained, but there is no memory to remember it: placement may use it", node);
        return;
    }
    h->drained = nv;
    size_t at = h->nr_drained;
    while (at > 0 && h->drained[at - 1].node > node)
        at--;
    memmove(&h->drained[at + 1], &h->drained[at], (h->nr_drained - at) * sizeof(*nv));
    h->drained[at] = (struct nt_drain_ref){ .node = node, .job_id = job };
    h->nr_drained++;
}

static void drained_clear(struct nt_hotplug *h, int node)
{
    for (size_t i = 0; i < h->nr_drained; i++)
        if (h->drained[i].node == node) {
            memmove(&h->drained[i], &h->drained[i + 1], (h->nr_drained - i - 1) * sizeof(*h->drained));
            h->nr_drained--;
            return;
        }
}

/* What the journal says is drained: the same rule nt_hp_finish applies as
 * jobs end (a drain succeeded, no `online node N` succeeded since). */
static void drained_load(struct nt_hotplug *h)
{
    if (!h->ledger)
        return;
    int r = nt_ledger_drains_open(h->ledger, &h->drained, &h->nr_drained);
    if (r < 0) {
        log_error("offline: cannot read the drained nodes from %s: %s; placement may use them", h->ledger_path,
                  strerror(-r));
        return;
    }
    for (size_t i = 0; i < h->nr_drained; i++)
        log_notice("node %d is drained (job %" PRId64 "): numatierd sends it nothing until "
                   "`numatierctl online node %d`", h->drained[i].node, h->drained[i].job_id, h->drained[i].node);
}

/* A job ended: a drain that succeeded puts its node in maintenance, an
 * online of a node that succeeded ends it. */
static void drained_after(struct nt_hotplug *h, const struct nt_job *j)
{
    if (j->state != NT_JOB_SUCCEEDED || j->target_node < 0)
        return;
    if (j->op == NT_OFFLINE_OP_DRAIN) {
        drained_set(h, j->target_node, j->id);
        log_notice("node %d is drained: numatierd sends it nothing until `numatierctl online node %d`",
                   j->target_node, j->target_node);
    } else if (j->op == NT_OFFLINE_OP_ONLINE && nt_hp_drained(h, j->target_node, NULL)) {
        drained_clear(h, j->target_node);
        log_notice("node %d is back in service: its drain ended", j->target_node);
    }
}

/* The nodes the running job takes out of service: a whole node's, and
 * the node of every block it changes (its plan's emptied nodes are those
 * too; a recovered job has only its blocks). An online takes none. */
static void job_nodes(const struct nt_hotplug *h, struct nt_nodeset *out)
{
    const struct nt_job *j = h->job;
    if (!j || j->op == NT_OFFLINE_OP_ONLINE)
        return;
    for (size_t w = 0; w < NT_ARRAY_SIZE(out->bits); w++)
        out->bits[w] |= h->run.emptied.bits[w];
    nt_nodeset_set(out, j->target_node);
    for (size_t i = 0; i < j->nr_blocks; i++)
        if (j->blocks[i].want[0] && j->blocks[i].result != NT_BLOCK_SKIPPED)
            nt_nodeset_set(out, j->blocks[i].node);
}

void nt_hotplug_maintenance_nodes(const struct nt_hotplug *h, struct nt_nodeset *out)
{
    *out = (struct nt_nodeset){ 0 };
    if (!h)
        return;
    job_nodes(h, out);
    for (size_t i = 0; i < h->nr_drained; i++)
        nt_nodeset_set(out, h->drained[i].node);
}

struct json_object *nt_hotplug_maintenance_json(const struct nt_hotplug *h)
{
    struct json_object *arr = json_object_new_array();
    struct nt_nodeset all, running = { 0 };
    nt_hotplug_maintenance_nodes(h, &all);
    if (h)
        job_nodes(h, &running);
    for (int node = 0; node < NT_MAX_NODES; node++) {
        if (!nt_nodeset_test(&all, node))
            continue;
        int64_t drain = 0;
        bool drained = nt_hp_drained(h, node, &drain);
        bool in_job = nt_nodeset_test(&running, node);
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "node", json_object_new_int(node));
        json_object_object_add(o, "why", json_object_new_string(in_job ? nt_offline_op_to_string(h->job->op)
                                                                       : "drained"));
        json_object_object_add(o, "job", json_object_new_int64(in_job ? h->job->id : drain));
        if (in_job && drained)
            json_object_object_add(o, "drained_by", json_object_new_int64(drain));
        json_object_array_add(arr, o);
    }
    return arr;
}

uint64_t nt_hotplug_bytes_moved(const struct nt_hotplug *h)
{
    return h ? h->moved_total : 0;
}

void nt_hotplug_set_affinity_owner(struct nt_hotplug *h, nt_hotplug_affinity_owner_fn fn, void *userdata)
{
    h->affinity_owner = fn;
    h->affinity_owner_ud = userdata;
}

/* ---- history --------------------------------------------------------------------------- */

static void history_trim(struct nt_hotplug *h)
{
    size_t keep = h->p.history ? h->p.history : 1;
    while (h->nr_history > keep)
        nt_job_free(h->history[--h->nr_history]);
}

static void history_push(struct nt_hotplug *h, struct nt_job *j)
{
    struct nt_job **nv = realloc(h->history, (h->nr_history + 1) * sizeof(*nv));
    if (!nv) {
        nt_job_free(j);
        return;
    }
    h->history = nv;
    memmove(&h->history[1], &h->history[0], h->nr_history * sizeof(*nv));
    h->history[0] = j;
    h->nr_history++;
    history_trim(h);
}

struct nt_job *nt_hp_history_job(struct nt_hotplug *h, int64_t id)
{
    for (size_t i = 0; id && i < h->nr_history; i++)
        if (h->history[i]->id == id)
            return h->history[i];
    return NULL;
}

static void history_load(struct nt_hotplug *h)
{
    _cleanup_free_ int64_t *ids = NULL;
    size_t n = 0;
    if (!h->ledger || nt_ledger_jobs_recent(h->ledger, h->p.history, &ids, &n) < 0)
        return;
    for (size_t i = n; i-- > 0;) {         /* oldest first, so the newest ends up in front */
        struct nt_job *j = NULL;
        if (nt_ledger_job_load(h->ledger, ids[i], &j) == 0 && nt_job_state_final(j->state))
            history_push(h, j);
        else
            nt_job_free(j);
    }
}

/* ---- driving the job --------------------------------------------------------------------- */

static void run_reset(struct nt_hotplug *h)
{
    struct nt_hp_run *run = &h->run;
    nt_hp_exec_abort(h);
    sd_event_source_disable_unref(run->step);
    sd_event_source_disable_unref(run->deadline);
    nt_hp_evac_free(run->evac);
    free(run->dests);
    free(run->dest_left);
    free(run->procs);
    *run = (struct nt_hp_run){ .worker_pidfd = -1 };
}

void nt_hp_kick(struct nt_hotplug *h, uint64_t delay_usec)
{
    sd_event_source *s = h->run.step;
    if (!s)
        return;
    (void)sd_event_source_set_time_relative(s, delay_usec);
    (void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static uint64_t elapsed_usec(const struct nt_hotplug *h, const struct nt_job *j)
{
    if (j == h->job && !nt_job_state_final(j->state))
        return nt_now_usec() - h->run.start_mono;
    return j->finished_usec > j->started_usec ? j->finished_usec - j->started_usec : 0;
}

/* An online that ended a drain says so first: it is what the operator asked. */
static void undrain_summary(struct nt_hotplug *h, unsigned done, double sec, char *buf, size_t len)
{
    const struct nt_hp_run *run = &h->run;
    int node = h->job->target_node;
    buf[0] = '\0';
    if (run->undrained_job > 0)
        nt_appendf(buf, len, "drain of node %d ended: %u thread(s) restored to their CPU affinity from before "
                   "(drain job %" PRId64 ")", node, run->undrain_threads, run->undrained_job);
    else
        nt_appendf(buf, len, "node %d was not drained; %u thread(s) an earlier drain of it pinned restored",
                   node, run->undrain_threads);
    if (run->undrain_gone)
        nt_appendf(buf, len, "; %u pinned process(es) gone meanwhile", run->undrain_gone);
    if (done)
        nt_appendf(buf, len, "; onlined %u block(s) of %s", done, h->job->target);
    nt_appendf(buf, len, ", in %.1f s", sec);
}

static void summary(struct nt_hotplug *h, char *buf, size_t len)
{
    const struct nt_job *j = h->job;
    unsigned done = 0;
    for (size_t i = 0; i < j->nr_blocks; i++)
        done += j->blocks[i].result == NT_BLOCK_OFFLINED || j->blocks[i].result == NT_BLOCK_ONLINED;
    double sec = (double)elapsed_usec(h, j) / 1e6;
    uint64_t mib = (j->bytes_moved + MIB / 2) / MIB;
    if (j->op == NT_OFFLINE_OP_DRAIN)
        snprintf(buf, len, "drained node %d: %u thread(s) moved to node %d, %" PRIu64 " MiB moved off, "
                 "%u process(es) kept their own CPU affinity, in %.1f s", j->target_node,
                 h->run.threads_moved, j->cpu_node, mib, h->run.threads_kept, sec);
    else if (j->op == NT_OFFLINE_OP_OFFLINE)
        snprintf(buf, len, "offlined %u block(s) of %s, %" PRIu64 " MiB moved beforehand, in %.1f s", done,
                 j->target, mib, sec);
    else if (!h->run.undrained)
        snprintf(buf, len, "onlined %u block(s) of %s in %.1f s", done, j->target, sec);
    else
        undrain_summary(h, done, sec, buf, len);
}

/* Which blocks a failed job left changed, for its message. */
static void describe_left(const struct nt_job *j, char *buf, size_t len)
{
    size_t off = 0;
    for (size_t i = 0; i < j->nr_blocks && off < len; i++) {
        const struct nt_job_block *b = &j->blocks[i];
        if (b->result == NT_BLOCK_SKIPPED || !b->want[0] || nt_hp_state_is(b->now, b->before))
            continue;
        int n = snprintf(buf + off, len - off, "%sblock %u is %s", off ? ", " : "", b->block,
                         b->now[0] ? b->now : "unknown");
        off += n > 0 ? (size_t)n : 0;
    }
    if (!off)
        snprintf(buf, len, "no block was changed");
}

static void final_message(struct nt_hotplug *h, enum nt_job_state state)
{
    struct nt_job *j = h->job;
    char *m = j->message;
    size_t size = sizeof(j->message);
    char left[NT_JOB_MESSAGE_MAX];
    describe_left(j, left, sizeof(left));
    m[0] = '\0';
    switch (state) {
    case NT_JOB_SUCCEEDED:
        summary(h, m, size);
        break;
    case NT_JOB_ROLLED_BACK:
        nt_appendf(m, size, "%s; rolled back: every block this job changed is as before", h->run.why);
        break;
    default:
        if (j->op == NT_OFFLINE_OP_DRAIN || !j->rollback)
            nt_appendf(m, size, "%s%s; left as is: %s", h->run.why,
                       j->op == NT_OFFLINE_OP_DRAIN ? "" : " (rollback off)", left);
        else
            nt_appendf(m, size, "%s; rollback incomplete: %s", h->run.why, left);
        break;
    }
    if (h->run.notes[0])
        nt_appendf(m, size, ". %s", h->run.notes);
}

void nt_hp_finish(struct nt_hotplug *h, enum nt_job_state state)
{
    struct nt_job *j = h->job;
    if (j->resumed && state == NT_JOB_FAILED)
        state = NT_JOB_INTERRUPTED;    /* the restart action could not complete */
    final_message(h, state);
    j->state = state;
    j->phase = NT_JOB_DONE;
    j->finished_usec = nt_realtime_usec();
    nt_hp_journal(h);
    int prio = state == NT_JOB_SUCCEEDED ? LOG_INFO : state == NT_JOB_ROLLED_BACK ? LOG_NOTICE : LOG_ERR;
    nt_log(prio, "%s job %" PRId64 " (%s) %s: %s", nt_offline_op_to_string(j->op), j->id, j->target,
           nt_job_state_to_string(state), j->message);
    sd_journal_send("MESSAGE=%s job %" PRId64 " (%s) %s", nt_offline_op_to_string(j->op), j->id, j->target,
                    nt_job_state_to_string(state), "MESSAGE_ID=" MESSAGE_ID_JOB, "PRIORITY=%d", prio,
                    "NUMATIER_JOB=%" PRId64, j->id, "NUMATIER_JOB_STATE=%s", nt_job_state_to_string(state),
                    NULL);
    drained_after(h, j);
    h->job = NULL;
    run_reset(h);
    history_push(h, j);
}

static void after_evacuation(struct nt_hotplug *h)
{
    struct nt_job *j = h->job;
    nt_hp_evac_free(h->run.evac);
    h->run.evac = NULL;
    if (j->op == NT_OFFLINE_OP_DRAIN) {
        nt_hp_finish(h, NT_JOB_SUCCEEDED);
        return;
    }
    log_info("%s job %" PRId64 ": %" PRIu64 " MiB moved off the target blocks; offlining", nt_offline_op_to_string(j->op),
             j->id, j->bytes_moved / MIB);
    j->phase = NT_JOB_OFFLINING;
    nt_hp_journal(h);
    nt_hp_kick(h, 0);
}

static void evacuation_step(struct nt_hotplug *h)
{
    bool done;
    uint64_t delay;
    int r = nt_hp_evac_slice(h, &done, &delay);
    if (r < 0) {
        /* a head start only: the kernel's offline migrates what is left */
        log_warning("%s job %" PRId64 ": evacuation stopped: %s", nt_offline_op_to_string(h->job->op), h->job->id,
                    strerror(-r));
        done = true;
    }
    if (done)
        after_evacuation(h);
    else if (delay != UINT64_MAX)       /* UINT64_MAX: a thread kicks us when it is done */
        nt_hp_kick(h, delay);
}

static int on_step(sd_event_source *s, uint64_t usec, void *userdata)
{
    (void)s;
    (void)usec;
    struct nt_hotplug *h = userdata;
    if (!h->job || h->run.writing)
        return 0;
    if (h->job->phase == NT_JOB_EVACUATING || h->job->phase == NT_JOB_DRAINING)
        evacuation_step(h);
    else
        nt_hp_exec_step(h);
    return 0;
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata)
{
    (void)s;
    (void)usec;
    nt_hp_exec_deadline(userdata);
    return 0;
}

/* Timers for a job that starts (or restarts) now; remaining is what is
 * left of its deadline. */
static int run_begin(struct nt_hotplug *h, uint64_t remaining_usec)
{
    struct nt_hp_run *run = &h->run;
    uint64_t now = nt_realtime_usec(), mono = nt_now_usec();
    uint64_t spent = now > h->job->started_usec ? now - h->job->started_usec : 0;
    run->start_mono = mono > spent ? mono - spent : 0;
    /* accuracy 1 us: 0 would mean sd-event's default of 250 ms per step */
    int r = sd_event_add_time_relative(h->event, &run->step, CLOCK_MONOTONIC, 0, 1, on_step, h);
    if (r == 0)
        r = sd_event_add_time_relative(h->event, &run->deadline, CLOCK_MONOTONIC, remaining_usec, 0,
                                       on_deadline, h);
    if (r == 0)
        r = sd_event_source_set_enabled(run->step, SD_EVENT_OFF);
    return r;
}

/* ---- building a job from a plan ---------------------------------------------------------------- */

static void describe_target(const struct nt_hotplug_request *req, char *buf, size_t len)
{
    switch (req->kind) {
    case NT_TARGET_NODE:
        snprintf(buf, len, "node %d", req->node);
        break;
    case NT_TARGET_RANGE:
        snprintf(buf, len, "range 0x%" PRIx64 "-0x%" PRIx64, req->range_start, req->range_end);
        break;
    case NT_TARGET_BLOCKS:
        if (req->first_block == req->last_block)
            snprintf(buf, len, "block %u", req->first_block);
        else
            snprintf(buf, len, "block %u-%u", req->first_block, req->last_block);
        break;
    }
}

/* What writing puts an online block back into its zone from before: an
 * online block's valid_zones names the zone it is in. */
static void restore_word(struct nt_hotplug *h, unsigned block, char *buf, size_t len)
{
    char path[96];
    snprintf(path, sizeof(path), "/sys/devices/system/memory/memory%u/valid_zones", block);
    _cleanup_free_ char *zones = NULL;
    const char *w = "online";
    if (nt_read_file(h->root, path, &zones) == 0) {
        if (strncmp(zones, "Movable", 7) == 0)
            w = "online_movable";
        else if (strncmp(zones, "Normal", 6) == 0 || strncmp(zones, "DMA", 3) == 0)
            w = "online_kernel";
    }
    snprintf(buf, len, "%s", w);
}

static void fill_block(struct nt_hotplug *h, const struct nt_offline_step *s, enum nt_offline_op op,
                       struct nt_job_block *b)
{
    *b = (struct nt_job_block){ .block = s->block, .node = s->node, .result = NT_BLOCK_PENDING };
    snprintf(b->reason, sizeof(b->reason), "%s", s->reason);
    if (nt_hp_read_state(h, s->block, b->before, sizeof(b->before)) < 0)
        snprintf(b->before, sizeof(b->before), "%s", op == NT_OFFLINE_OP_OFFLINE ? "online" : "offline");
    snprintf(b->now, sizeof(b->now), "%s", b->before);
    if (s->verdict == NT_OFFLINE_SKIP || s->verdict == NT_OFFLINE_IMPOSSIBLE) {
        b->result = NT_BLOCK_SKIPPED;
        return;
    }
    if (op == NT_OFFLINE_OP_OFFLINE) {
        snprintf(b->want, sizeof(b->want), "offline");
        restore_word(h, s->block, b->restore, sizeof(b->restore));
    } else {
        snprintf(b->want, sizeof(b->want), "%s", s->online_movable ? "online_movable" : "online");
        snprintf(b->restore, sizeof(b->restore), "offline");
    }
}

static const struct nt_hotplug_proc *find_proc(const struct nt_hotplug_proc *procs, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (procs[i].pid == pid)
            return &procs[i];
    return NULL;
}

static int fill_rebinds(struct nt_job *j, const struct nt_offline_plan *plan, const struct nt_hotplug_proc *procs,
                        size_t nr_procs)
{
    if (!plan->nr_rebinds || plan->op != NT_OFFLINE_OP_OFFLINE)
        return 0;
    j->rebinds = calloc(plan->nr_rebinds, sizeof(*j->rebinds));
    if (!j->rebinds)
        return -ENOMEM;
    j->nr_rebinds = plan->nr_rebinds;
    for (size_t i = 0; i < plan->nr_rebinds; i++) {
        const struct nt_offline_rebind *r = &plan->rebinds[i];
        const struct nt_hotplug_proc *p = find_proc(procs, nr_procs, r->pid);
        struct nt_job_rebind *rb = &j->rebinds[i];
        *rb = (struct nt_job_rebind){ .pid = r->pid, .to_node = r->to_node };
        snprintf(rb->comm, sizeof(rb->comm), "%s", r->comm);
        nt_format_nodelist(&r->from, rb->from, sizeof(rb->from));
        snprintf(rb->kind, sizeof(rb->kind), "%s", p && p->cpuset ? "cpuset" : "mempolicy");
    }
    return 0;
}

static int build_job(struct nt_hotplug *h, const struct nt_offline_plan *plan, const struct nt_hotplug_request *req,
                     const struct nt_hotplug_proc *procs, size_t nr_procs, struct nt_job **out)
{
    _cleanup_(nt_job_freep) struct nt_job *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    *j = (struct nt_job){
        .op = plan->op, .target_node = req->kind == NT_TARGET_NODE ? req->node : -1, .state = NT_JOB_RUNNING,
        .phase = plan->op == NT_OFFLINE_OP_OFFLINE ? NT_JOB_EVACUATING :
                 plan->op == NT_OFFLINE_OP_ONLINE ? NT_JOB_ONLINING : NT_JOB_DRAINING,
        .rollback = req->rollback, .force = req->force, .cpu_node = plan->cpu_node,
        .timeout_usec = req->timeout_usec ? req->timeout_usec : h->p.timeout_usec,
        .started_usec = nt_realtime_usec(),
    };
    describe_target(req, j->target, sizeof(j->target));
    struct json_object *pj = nt_offline_plan_to_json(plan);
    j->plan_json = pj ? strdup(json_object_to_json_string_ext(pj, JSON_C_TO_STRING_PLAIN)) : NULL;
    json_object_put(pj);
    if (plan->op != NT_OFFLINE_OP_DRAIN && plan->nr_steps) {
        if (!(j->blocks = calloc(plan->nr_steps, sizeof(*j->blocks))))
            return -ENOMEM;
        j->nr_blocks = plan->nr_steps;
        for (size_t i = 0; i < plan->nr_steps; i++)
            fill_block(h, &plan->steps[i], plan->op, &j->blocks[i]);
    }
    int r = fill_rebinds(j, plan, procs, nr_procs);
    if (r < 0)
        return r;
    *out = NT_TAKE_PTR(j);
    return 0;
}

static int copy_plan_moves(struct nt_hotplug *h, const struct nt_offline_plan *plan, const struct nt_hotplug_proc *procs,
                           size_t nr_procs)
{
    struct nt_hp_run *run = &h->run;
    run->emptied = plan->emptied;
    size_t nd = plan->nr_dests;
    run->dests = calloc(nd ? nd : 1, sizeof(*run->dests));
    run->dest_left = calloc(nd ? nd : 1, sizeof(*run->dest_left));
    run->procs = calloc(nr_procs ? nr_procs : 1, sizeof(*run->procs));
    if (!run->dests || !run->dest_left || !run->procs)
        return -ENOMEM;
    for (size_t i = 0; i < nd; i++) {
        run->dests[i] = plan->dests[i];
        run->dest_left[i] = plan->dests[i].bytes;
    }
    run->nr_dests = nd;
    if (nr_procs)
        memcpy(run->procs, procs, nr_procs * sizeof(*procs));
    run->nr_procs = nr_procs;
    run->to_move_known = true;
    run->bytes_to_move = plan->used_bytes;
    if (plan->op == NT_OFFLINE_OP_DRAIN && h->job->target_node >= 0)
        nt_nodeset_set(&run->emptied, h->job->target_node);
    return 0;
}

static void log_start(struct nt_hotplug *h)
{
    const struct nt_job *j = h->job;
    char d[NT_DURATION_STRLEN];
    nt_format_duration(j->timeout_usec, d, sizeof(d));
    log_notice("%s job %" PRId64 " started: %s, %zu block(s), deadline %s, rollback %s%s",
               nt_offline_op_to_string(j->op), j->id, j->target, j->nr_blocks, d, j->rollback ? "on" : "off",
               h->ledger ? "" : " (not journaled: no ledger)");
    sd_journal_send("MESSAGE=%s job %" PRId64 " (%s) started", nt_offline_op_to_string(j->op), j->id, j->target,
                    "MESSAGE_ID=" MESSAGE_ID_JOB, "PRIORITY=%d", LOG_NOTICE, "NUMATIER_JOB=%" PRId64, j->id,
                    "NUMATIER_JOB_STATE=running", NULL);
}

int nt_hotplug_start(struct nt_hotplug *h, const struct nt_offline_plan *plan, const struct nt_hotplug_request *req,
                     const struct nt_hotplug_proc *procs, size_t nr_procs, int64_t *id)
{
    if (h->job)
        return -EBUSY;
    struct nt_job *j = NULL;
    int r = build_job(h, plan, req, procs, nr_procs, &j);
    if (r < 0)
        return r;
    if (h->ledger && (r = nt_ledger_job_insert(h->ledger, j)) < 0) {
        log_error("offline: cannot journal a new job in %s: %s", h->ledger_path, strerror(-r));
        nt_job_free(j);
        return r;
    }
    h->job = j;
    r = copy_plan_moves(h, plan, procs, nr_procs);
    if (r == 0)
        r = run_begin(h, j->timeout_usec);
    if (r < 0) {
        snprintf(h->run.why, sizeof(h->run.why), "could not start: %s", strerror(-r));
        nt_hp_finish(h, NT_JOB_FAILED);
        return r;
    }
    log_start(h);
    if (j->op == NT_OFFLINE_OP_OFFLINE && j->force)
        nt_hp_rebinds_apply(h);
    if (id)
        *id = j->id;
    nt_hp_kick(h, 0);
    return 0;
}

/* ---- requests ----------------------------------------------------------------------------------------- */

static int request_blocks(const struct nt_hotplug_request *req, uint64_t block_size, unsigned **ids, size_t *n)
{
    uint64_t first, last;
    if (req->kind == NT_TARGET_BLOCKS) {
        first = req->first_block;
        last = req->last_block;
    } else {
        if (!block_size)
            return -EOPNOTSUPP;
        first = req->range_start / block_size;
        last = (req->range_end - 1) / block_size;
    }
    if (last - first >= 65536)
        return -E2BIG;
    *n = (size_t)(last - first + 1);
    if (!(*ids = calloc(*n, sizeof(**ids))))
        return -ENOMEM;
    for (size_t i = 0; i < *n; i++)
        (*ids)[i] = (unsigned)(first + i);
    return 0;
}

static int reply_error(struct nt_hotplug_reply *reply, int r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int reply_error(struct nt_hotplug_reply *reply, int r, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reply->message, sizeof(reply->message), fmt, ap);
    va_end(ap);
    reply->code = code;
    return r;
}

/* Block size without reading everything else. */
static uint64_t block_size_of(const char *root)
{
    _cleanup_free_ char *s = NULL;
    if (nt_read_file(root, "/sys/devices/system/memory/block_size_bytes", &s) < 0)
        return 0;
    return strtoull(s, NULL, 16);
}

static int plan_request(struct nt_hotplug *h, const struct nt_hotplug_request *req, struct nt_hotplug_input *in,
                        struct nt_offline_plan *plan, struct nt_hotplug_reply *reply)
{
    _cleanup_free_ unsigned *ids = NULL;
    size_t n = 0;
    if (req->kind != NT_TARGET_NODE) {
        int r = request_blocks(req, block_size_of(h->root), &ids, &n);
        if (r == -EOPNOTSUPP)
            return reply_error(reply, r, "no-targets", "this kernel has no memory block devices "
                               "(/sys/devices/system/memory)");
        if (r < 0)
            return reply_error(reply, r, "invalid-argument", "the target is too large (%s)", strerror(-r));
    }
    struct nt_offline_request preq = {
        .op = req->op, .target_node = req->kind == NT_TARGET_NODE ? req->node : -1,
        .block_ids = ids, .nr_block_ids = n, .force = req->force, .allow_slow = h->p.allow_slow,
    };
    int r = nt_hotplug_gather(h->root, &h->p, &preq, in);
    if (r < 0)
        return reply_error(reply, r, "failed", "cannot read the memory layout below %s: %s", h->root, strerror(-r));
    struct nt_nodeset maintenance;
    nt_hotplug_maintenance_nodes(h, &maintenance);
    for (size_t i = 0; i < in->in.nr_nodes; i++)
        in->nodes[i].maintenance = nt_nodeset_test(&maintenance, in->nodes[i].id);
    r = nt_offline_plan(&in->in, &preq, plan);
    if (r < 0)
        return reply_error(reply, r, "failed", "planning failed: %s", plan->message[0] ? plan->message : strerror(-r));
    if (in->used_estimated_partial)
        for (size_t i = 0; i < plan->nr_steps; i++)
            if (plan->steps[i].verdict == NT_OFFLINE_DO || plan->steps[i].verdict == NT_OFFLINE_DO_MAY_FAIL)
                nt_appendf(plan->steps[i].reason, sizeof(plan->steps[i].reason),
                           " (in use: estimated as min(block size, node's used memory))");
    return 0;
}

/* What only the running job has, from its run rather than the journal:
 * bytes_moved with the estimate of a migrate_pages in flight, and
 * bytes_to_move, the plan's memory in use on the targets: an estimate too,
 * and more than evacuation moves where the kernel holds some of it (that
 * goes when the block goes offline). Finished jobs show what was journaled. */
static void add_run_progress(const struct nt_hotplug *h, struct json_object *o)
{
    if (h->job->op == NT_OFFLINE_OP_ONLINE)
        return;
    json_object_object_add(o, "bytes_moved", json_object_new_uint64(nt_hp_evac_progress(h)));
    if (h->run.to_move_known)
        json_object_object_add(o, "bytes_to_move", json_object_new_uint64(h->run.bytes_to_move));
}

static struct json_object *job_json_of(const struct nt_hotplug *h, const struct nt_job *j)
{
    struct json_object *o = nt_job_to_json(j, elapsed_usec(h, j));
    if (o && j == h->job)
        add_run_progress(h, o);
    return o;
}

/* `online node N` of a drained node ends the drain, even with every block
 * online already: then it is that, not nothing to do. */
static void note_undrain(const struct nt_hotplug *h, const struct nt_hotplug_request *req, struct nt_offline_plan *plan)
{
    int64_t drain;
    if (req->op != NT_OFFLINE_OP_ONLINE || req->kind != NT_TARGET_NODE || !nt_hp_drained(h, req->node, &drain))
        return;
    if (plan->refusal == NT_OFFLINE_NOTHING_TO_DO) {
        plan->refusal = NT_OFFLINE_OK;
        snprintf(plan->message, sizeof(plan->message), "ready to online node %d: every block is online already; "
                 "ends the drain of node %d (job %" PRId64 "): the threads it pinned get their CPU affinity "
                 "from before.", req->node, req->node, drain);
    } else if (plan->refusal == NT_OFFLINE_OK) {
        nt_appendf(plan->message, sizeof(plan->message), " Then ends the drain of node %d (job %" PRId64 ").",
                   req->node, drain);
    }
}

int nt_hotplug_submit(struct nt_hotplug *h, const struct nt_hotplug_request *req, struct nt_hotplug_reply *reply)
{
    *reply = (struct nt_hotplug_reply){ 0 };
    if (h->job && !req->dry_run)
        return reply_error(reply, -EBUSY, "busy", "%s job %" PRId64 " (%s) is %s; one job at a time",
                           nt_offline_op_to_string(h->job->op), h->job->id, h->job->target,
                           nt_job_state_to_string(h->job->state));
    struct nt_hotplug_input in;
    struct nt_offline_plan plan = { 0 };
    int r = plan_request(h, req, &in, &plan, reply);
    if (r < 0) {
        nt_offline_plan_free(&plan);
        return r;
    }
    note_undrain(h, req, &plan);
    if (plan.refusal != NT_OFFLINE_OK && plan.refusal != NT_OFFLINE_NOTHING_TO_DO) {
        r = reply_error(reply, -EPERM, nt_offline_refusal_to_string(plan.refusal), "%s", plan.message);
        /* The refused plan still explains each block: it goes with the error. */
        reply->result = json_object_new_object();
        json_object_object_add(reply->result, "plan", nt_offline_plan_to_json(&plan));
        log_info("%s refused (%s): %s", nt_offline_op_to_string(req->op), reply->code, plan.message);
        goto out;
    }
    reply->result = json_object_new_object();
    json_object_object_add(reply->result, "plan", nt_offline_plan_to_json(&plan));
    if (req->dry_run)
        goto out;
    if (plan.refusal == NT_OFFLINE_NOTHING_TO_DO) {
        json_object_object_add(reply->result, "job", NULL);
        goto out;
    }
    r = nt_hotplug_start(h, &plan, req, in.procs, in.nr_procs, NULL);
    if (r < 0) {
        json_object_put(reply->result);
        reply->result = NULL;
        r = reply_error(reply, r, r == -EBUSY ? "busy" : "failed", "cannot start the job: %s", strerror(-r));
        goto out;
    }
    json_object_object_add(reply->result, "job", job_json_of(h, h->job));
out:
    nt_offline_plan_free(&plan);
    nt_hotplug_input_done(&in);
    return r;
}

/* ---- queries ---------------------------------------------------------------------------------------------- */

const struct nt_job *nt_hotplug_current(const struct nt_hotplug *h)
{
    return h ? h->job : NULL;
}

static const struct nt_job *find_job(const struct nt_hotplug *h, int64_t id)
{
    if (h->job && h->job->id == id)
        return h->job;
    for (size_t i = 0; i < h->nr_history; i++)
        if (h->history[i]->id == id)
            return h->history[i];
    return NULL;
}

int nt_hotplug_jobs_json(struct nt_hotplug *h, int64_t id, struct json_object **out)
{
    struct json_object *arr = json_object_new_array();
    if (id > 0) {
        const struct nt_job *j = find_job(h, id);
        _cleanup_(nt_job_freep) struct nt_job *loaded = NULL;
        if (!j && h->ledger && nt_ledger_job_load(h->ledger, id, &loaded) == 0)
            j = loaded;
        if (!j) {
            json_object_put(arr);
            return -ENOENT;
        }
        json_object_array_add(arr, job_json_of(h, j));
    } else {
        size_t limit = h->p.history ? h->p.history : 1;
        if (h->job)
            json_object_array_add(arr, job_json_of(h, h->job));
        for (size_t i = 0; i < h->nr_history && json_object_array_length(arr) < limit; i++)
            json_object_array_add(arr, job_json_of(h, h->history[i]));
    }
    *out = json_object_new_object();
    json_object_object_add(*out, "jobs", arr);
    return 0;
}

struct json_object *nt_hotplug_status_json(const struct nt_hotplug *h)
{
    struct json_object *o = json_object_new_object();
    if (!h)
        return o;
    json_object_object_add(o, "job", h->job ? job_json_of(h, h->job) : NULL);
    json_object_object_add(o, "journal", h->ledger ? json_object_new_string(h->ledger_path) : NULL);
    json_object_object_add(o, "maintenance", nt_hotplug_maintenance_json(h));
    if (!h->ledger && h->ledger_why[0])
        json_object_object_add(o, "journal_error", json_object_new_string(h->ledger_why));
    return o;
}

/* ---- restart recovery ---------------------------------------------------------------------------------------- */

/* Look at every block again: what the journal says may be one write behind. */
static void reread_blocks(struct nt_hotplug *h)
{
    struct nt_job *j = h->job;
    for (size_t i = 0; i < j->nr_blocks; i++) {
        struct nt_job_block *b = &j->blocks[i];
        if (nt_hp_read_state(h, b->block, b->now, sizeof(b->now)) < 0)
            snprintf(b->now, sizeof(b->now), "gone");
        if (b->writing[0])
            snprintf(b->reason, sizeof(b->reason), "writing \"%s\" was under way when numatierd stopped; "
                     "the block is %s", b->writing, b->now);
        b->writing[0] = '\0';
        if (b->result == NT_BLOCK_PENDING && b->want[0] && nt_hp_state_is(b->now, b->want)) {
            b->result = strcmp(b->want, "offline") == 0 ? NT_BLOCK_OFFLINED : NT_BLOCK_ONLINED;
            if (!b->attempts)
                b->attempts = 1;
        }
        nt_hp_journal_block(h, i);
    }
}

static uint64_t remaining_usec(const struct nt_job *j)
{
    uint64_t now = nt_realtime_usec();
    uint64_t spent = now > j->started_usec ? now - j->started_usec : 0;     /* the clock may step back */
    return spent < j->timeout_usec ? j->timeout_usec - spent : 0;
}

/* Roll back or resume the job h->job left unfinished. */
static void recover_job(struct nt_hotplug *h)
{
    struct nt_job *j = h->job;
    bool was_rolling_back = j->state == NT_JOB_ROLLING_BACK;
    bool rollback = was_rolling_back || h->p.on_restart == NT_OFFLINE_RESTART_ROLLBACK;
    j->resumed = true;
    reread_blocks(h);
    if (was_rolling_back)
        snprintf(h->run.why, sizeof(h->run.why), "numatierd restarted while this job was rolling back "
                 "(a rollback is always finished, whatever on_restart says)");
    else if (rollback)
        snprintf(h->run.why, sizeof(h->run.why), "numatierd restarted during this job (on_restart=rollback)");
    else
        snprintf(h->run.notes, sizeof(h->run.notes), "numatierd restarted during this job and resumed it "
                 "(on_restart=resume).");
    log_notice("%s job %" PRId64 " (%s) was %s when numatierd stopped: %s", nt_offline_op_to_string(j->op), j->id,
               j->target, nt_job_state_to_string(j->state), rollback ? "rolling it back" : "resuming it");
    if (run_begin(h, rollback ? UINT64_MAX / 4 : remaining_usec(j)) < 0) {
        snprintf(h->run.why, sizeof(h->run.why), "numatierd restarted during this job and could not %s it",
                 rollback ? "roll back" : "resume");
        nt_hp_finish(h, NT_JOB_INTERRUPTED);
        return;
    }
    if (rollback && (j->op == NT_OFFLINE_OP_DRAIN || !j->rollback)) {
        snprintf(h->run.why, sizeof(h->run.why), "numatierd restarted during this job; on_restart=rollback, but %s",
                 j->op == NT_OFFLINE_OP_DRAIN ? "a drain cannot be rolled back (what moved stays moved)"
                                              : "the job had rollback off");
        nt_hp_finish(h, NT_JOB_INTERRUPTED);
        return;
    }
    if (rollback) {
        j->state = NT_JOB_ROLLING_BACK;
        j->phase = NT_JOB_ROLLING_BACK_PHASE;
    } else {
        j->state = NT_JOB_RUNNING;
        j->phase = j->op == NT_OFFLINE_OP_OFFLINE ? NT_JOB_OFFLINING :
                   j->op == NT_OFFLINE_OP_ONLINE ? NT_JOB_ONLINING : NT_JOB_DRAINING;
    }
    snprintf(j->message, sizeof(j->message), "%s", rollback ? h->run.why : h->run.notes);
    nt_hp_journal(h);
    nt_hp_kick(h, 0);
}

int nt_hotplug_recover(struct nt_hotplug *h)
{
    _cleanup_free_ int64_t *ids = NULL;
    size_t n = 0;
    if (!h->ledger)
        return 0;
    int r = nt_ledger_jobs_unfinished(h->ledger, &ids, &n);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        struct nt_job *j = NULL;
        if ((r = nt_ledger_job_load(h->ledger, ids[i], &j)) < 0) {
            log_error("offline: cannot load unfinished job %" PRId64 " from the journal: %s", ids[i], strerror(-r));
            continue;
        }
        if (h->job) {           /* one job at a time, even after a crash: later ones wait for nothing */
            j->resumed = true;
            j->state = NT_JOB_INTERRUPTED;
            j->phase = NT_JOB_DONE;
            j->finished_usec = nt_realtime_usec();
            snprintf(j->message, sizeof(j->message), "numatierd restarted during this job, while job %" PRId64
                     " was unfinished too; left as is", h->job->id);
            if (nt_ledger_job_update(h->ledger, j) < 0)
                log_error("offline: cannot journal job %" PRId64, j->id);
            history_push(h, j);
            continue;
        }
        h->job = j;
        recover_job(h);
    }
    return 0;
}

/* ---- construction ---------------------------------------------------------------------------------------------- */

static void open_journal(struct nt_hotplug *h)
{
    if (!h->ledger_path)
        return;
    _cleanup_free_ char *dir = strdup(h->ledger_path);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash && slash != dir) {
        *slash = '\0';
        (void)mkdir(dir, 0700);     /* the unit's StateDirectory makes it; by hand it may not exist */
    }
    int r = nt_ledger_open(h->ledger_path, NULL, &h->ledger, h->ledger_why, sizeof(h->ledger_why));
    if (r < 0) {
        log_error("offline: journal %s: %s; jobs run unjournaled and a restart cannot recover them",
                  h->ledger_path, h->ledger_why);
        h->ledger = NULL;
    }
}

static void read_boot_id(struct nt_hotplug *h)
{
    _cleanup_free_ char *id = NULL;
    if (nt_read_file(h->root, "/proc/sys/kernel/random/boot_id", &id) == 0)
        snprintf(h->boot_id, sizeof(h->boot_id), "%.*s", (int)strcspn(id, "\n"), id);
}

static int make_mover(struct nt_hotplug *h, const struct nt_mover_params *mp)
{
    struct nt_mover_params p;
    if (mp)
        p = *mp;
    else
        nt_mover_params_init(&p);
    if (!mp)
        p.budget_bytes_per_sec = h->p.migration_budget;
    return nt_mover_new(&p, &h->mover);
}

int nt_hotplug_new(const struct nt_hotplug_options *o, const struct nt_hotplug_params *p, struct nt_hotplug **out)
{
    _cleanup_(nt_hotplug_freep) struct nt_hotplug *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->event = sd_event_ref(o->event);
    h->p = *p;
    h->run.worker_pidfd = -1;
    h->root = strdup(o->root ? o->root : "/");
    h->ledger_path = o->ledger_path ? strdup(o->ledger_path) : NULL;
    if (o->sysfs)
        h->sysfs = *o->sysfs;
    if (!h->root || (o->ledger_path && !h->ledger_path))
        return -ENOMEM;
    int r = make_mover(h, o->mover);
    if (r == 0)
        r = nt_procs_new(h->root, getpid(), &h->procs);
    if (r < 0)
        return r;
    read_boot_id(h);
    open_journal(h);
    history_load(h);
    drained_load(h);
    *out = NT_TAKE_PTR(h);
    return 0;
}

void nt_hotplug_reconfigure(struct nt_hotplug *h, const struct nt_hotplug_params *p)
{
    if (!h)
        return;
    h->p = *p;
    nt_mover_set_budget(h->mover, p->migration_budget, 0);
    history_trim(h);
}

void nt_hotplug_free(struct nt_hotplug *h)
{
    if (!h)
        return;
    if (h->job)
        log_notice("%s job %" PRId64 " (%s) is %s at shutdown; the next start recovers it",
                   nt_offline_op_to_string(h->job->op), h->job->id, h->job->target,
                   nt_job_state_to_string(h->job->state));
    run_reset(h);
    nt_job_free(h->job);
    for (size_t i = 0; i < h->nr_history; i++)
        nt_job_free(h->history[i]);
    free(h->history);
    free(h->drained);
    nt_mover_free(h->mover);
    nt_procs_free(h->procs);
    nt_ledger_close(h->ledger);
    sd_event_unref(h->event);
    free(h->root);
    free(h->ledger_path);
    free(h);
}
