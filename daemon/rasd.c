/* RAS: tracefs events -> decoders -> ledger -> ECC policy -> soft offline.
 * See rasd.h. The order around an action is what makes a crash safe: the
 * event is in the ledger (acknowledged) before the policy sees it, the
 * intent is committed before the write to soft_offline_page, and the
 * result is recorded after the kernel answered. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>
#include <systemd/sd-event.h>
#include <systemd/sd-journal.h>

#include "numatier/config.h"
#include "numatier/cxl-decode.h"
#include "numatier/ecc.h"
#include "numatier/ledger.h"
#include "numatier/log.h"
#include "numatier/ras-trace.h"
#include "numatier/ras.h"
#include "numatier/rasd.h"
#include "numatier/strbuf.h"
#include "numatier/topology.h"
#include "numatier/util.h"

#define SOFT_OFFLINE_PATH "/sys/devices/system/memory/soft_offline_page"
#define KPAGEFLAGS_PATH   "/proc/kpageflags"
#define KPF_HWPOISON      19
/* Pages per trace_pipe_raw read in one loop turn: a storm must not starve
 * the control socket; the fd stays readable and we come back. Each turn is
 * one ledger transaction: 2 pages (some 80 MCE records) keep a turn short
 * (in a busy 2-CPU guest 8 pages took up to 650 ms) without an fsync per
 * handful of events. */
#define PAGES_PER_TURN    2
#define TRACE_PRIORITY    (SD_EVENT_PRIORITY_NORMAL + 10)
#define MAX_WAITING_BLOCKS 16
#define BLOCK_RETRY_USEC  (30 * 1000000ull)
#define ACT_BLOCK         "block_offline"
/* A message id for the journal, so operators can filter our actions. */
#define MESSAGE_ID_ACTION "3c1d0ee1a7b54f0e9a3f7f4e2c6a9b10"
/* Why a frame is soft-offlined: the journal's NUMATIER_ACTION, the ledger. */
#define ACT_FIRST         "soft-offline"
#define ACT_RETRY         "soft-offline retry"
#define ACT_REOFFLINE     "re-offline after reboot"
#define LEDGER_JSON_EVENTS_MAX 1000
/* Events replayed into the buckets at startup, the newest kept: a bound on
 * memory when a frame action of account let a storm pile up. */
#define REPLAY_MAX        16384
#define BOOT_ID_PATH      "/proc/sys/kernel/random/boot_id"

struct frame_slot {
    struct nt_ecc_frame f;
    uint64_t block;                   /* its memory block */
};

struct nt_rasd {
    sd_event *event;
    char *root;
    struct nt_ecc_params params;
    bool reoffline;
    uint64_t retention_usec;
    unsigned max_events;
    struct nt_ras_trace *trace;
    char trace_why[160];
    sd_event_source **io;
    size_t nr_io;
    struct nt_ledger *ledger;
    char ledger_why[256];
    struct frame_slot *frames;        /* in memory: the policy's view */
    size_t nr_frames, cap_frames;
    struct nt_ecc_block *blocks;      /* escalation state, one per block with a failing frame */
    size_t nr_blocks_state, cap_blocks_state;
    /* one read's worth of events, recorded in one transaction */
    struct nt_ras_event *batch;
    size_t nr_batch, cap_batch;
    uint64_t events, decoded_bad, offlined, failed, retries, ledger_errors, replayed;
    uint64_t last_prune_usec;
    char coexist[256];                /* other RAS handlers found at startup */
    int *block_node;                  /* [nr_blocks]: node of memory block i, -1 unknown */
    size_t nr_blocks;
    uint64_t block_size;
    char boot_id[40];                 /* with each intent: one offline per frame per boot */
    /* block escalation with block_action = soft: offline jobs */
    nt_rasd_block_offline_fn block_offliner;
    void *block_offliner_ud;
    uint64_t waiting_blocks[MAX_WAITING_BLOCKS];   /* another job was running: try again */
    size_t nr_waiting_blocks;
    uint64_t next_block_try_usec;     /* monotonic */
    uint64_t blocks_started, blocks_refused;
};

/* Which memory block and node an address is in, as of the last cycle. */
static void locate(const struct nt_rasd *r, uint64_t addr, int64_t *block, int *node)
{
    *block = -1;
    *node = -1;
    if (!r->block_size)
        return;
    uint64_t b = addr / r->block_size;
    *block = (int64_t)b;
    if (b < r->nr_blocks)
        *node = r->block_node[b];
}

static void learn_blocks(struct nt_rasd *r, const struct nt_topology *topo)
{
    if (!topo || !topo->nr_blocks || !topo->block_size_bytes)
        return;
    size_t n = topo->blocks[topo->nr_blocks - 1].id + 1;     /* sorted by id */
    int *v = realloc(r->block_node, n * sizeof(*v));
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        v[i] = -1;
    for (size_t i = 0; i < topo->nr_blocks; i++)
        v[topo->blocks[i].id] = topo->blocks[i].node;
    r->block_node = v;
    r->nr_blocks = n;
    r->block_size = topo->block_size_bytes;
    r->params.block_size = topo->block_size_bytes;
}

static void params_from(struct nt_rasd *r, const struct nt_config *cfg)
{
    nt_ecc_params_default(&r->params);
    r->params.threshold = cfg->ecc_threshold;
    r->params.window_usec = cfg->ecc_window_usec;
    r->params.frame_action = (enum nt_ecc_action)cfg->frame_action;
    r->params.block_action = (enum nt_ecc_action)cfg->block_action;
    r->params.block_frames = cfg->block_frames;
    r->reoffline = cfg->reoffline;
    r->retention_usec = cfg->ledger_retention_usec;
    r->max_events = cfg->ledger_max_events;
}

/* ---- frames the policy tracks --------------------------------------------- */

static struct frame_slot *frame_find(struct nt_rasd *r, uint64_t pfn)
{
    for (size_t i = 0; i < r->nr_frames; i++)
        if (r->frames[i].f.pfn == pfn)
            return &r->frames[i];
    return NULL;
}

/* A block's escalation state: proposed once per block, whichever of its
 * frames crosses the line. NULL without memory. */
static struct nt_ecc_block *block_get(struct nt_rasd *r, uint64_t block)
{
    for (size_t i = 0; i < r->nr_blocks_state; i++)
        if (r->blocks[i].block == block)
            return &r->blocks[i];
    if (r->nr_blocks_state == r->cap_blocks_state) {
        size_t cap = r->cap_blocks_state ? 2 * r->cap_blocks_state : 16;
        struct nt_ecc_block *v = realloc(r->blocks, cap * sizeof(*v));
        if (!v)
            return NULL;
        r->blocks = v;
        r->cap_blocks_state = cap;
    }
    struct nt_ecc_block *b = &r->blocks[r->nr_blocks_state++];
    nt_ecc_block_init(b, block);
    return b;
}

/* The frame's policy state; new ones start from what the ledger says, so a
 * frame offlined before a restart is not acted on twice. */
static struct frame_slot *frame_get(struct nt_rasd *r, uint64_t pfn)
{
    struct frame_slot *s = frame_find(r, pfn);
    if (s)
        return s;
    if (r->nr_frames == r->cap_frames) {
        size_t cap = r->cap_frames ? 2 * r->cap_frames : 64;
        struct frame_slot *v = realloc(r->frames, cap * sizeof(*v));
        if (!v)
            return NULL;
        r->frames = v;
        r->cap_frames = cap;
    }
    s = &r->frames[r->nr_frames++];
    nt_ecc_frame_init(&s->f, pfn);
    s->block = nt_ecc_block_of(&r->params, pfn);
    struct nt_ledger_frame lf;
    if (r->ledger && nt_ledger_frame_get(r->ledger, pfn, &lf) == 0) {
        if (lf.state == NT_FRAME_OFFLINED || lf.state == NT_FRAME_ALREADY_OFFLINE)
            s->f.state = NT_ECC_FRAME_OFFLINED;
        else if (lf.state == NT_FRAME_FAILED)
            s->f.state = NT_ECC_FRAME_FAILED;
        s->f.attempts = lf.attempts;
    }
    return s;
}

/* ---- the kernel side of an action ------------------------------------------- */

static bool frame_poisoned(const struct nt_rasd *r, uint64_t pfn)
{
    _cleanup_free_ char *path = nt_path_join(r->root, KPAGEFLAGS_PATH);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return false;
    uint64_t flags = 0;
    ssize_t n = pread(fd, &flags, sizeof(flags), (off_t)(pfn * sizeof(flags)));
    close(fd);
    return n == (ssize_t)sizeof(flags) && (flags >> KPF_HWPOISON & 1);
}

/* 0 or -errno, as the kernel answered the write. */
static int write_soft_offline(const struct nt_rasd *r, uint64_t addr)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "0x%" PRIx64, addr);
    return nt_write_file(r->root, SOFT_OFFLINE_PATH, buf);
}

static enum nt_frame_state ledger_state_of(const struct nt_ecc_outcome *o, bool already)
{
    switch (o->cls) {
    case NT_ECC_DONE:  return already ? NT_FRAME_ALREADY_OFFLINE : NT_FRAME_OFFLINED;
    case NT_ECC_RETRY: return NT_FRAME_TRIGGERED;
    default:           return NT_FRAME_FAILED;
    }
}

static void journal_action(uint64_t pfn, const char *what, const struct nt_ecc_outcome *o, int err)
{
    sd_journal_send("MESSAGE=ras: frame 0x%" PRIx64 " (address 0x%" PRIx64 "): %s: %s", pfn, pfn << 12, what,
                    o->why,
                    "MESSAGE_ID=" MESSAGE_ID_ACTION,
                    "PRIORITY=%d", o->cls == NT_ECC_DONE ? 5 : 4,
                    "NUMATIER_PFN=0x%" PRIx64, pfn,
                    "NUMATIER_PHYS_ADDR=0x%" PRIx64, pfn << 12,
                    "NUMATIER_ACTION=%s", what,
                    "NUMATIER_RESULT=%s", nt_ecc_outcome_class_name(o->cls),
                    "NUMATIER_ERRNO=%d", -err,
                    NULL);
}

static void intent_detail(const struct nt_rasd *r, const char *what, char *buf, size_t len)
{
    struct json_object *o = json_object_new_object();
    if (r->boot_id[0])
        json_object_object_add(o, "boot_id", json_object_new_string(r->boot_id));
    json_object_object_add(o, "why", json_object_new_string(what));
    snprintf(buf, len, "%s", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
}

/* What the ledger says happened: the outcome, and why we acted when it
 * was not a first offline (a retry, a re-offline after a reboot). */
static void result_text(const char *what, const struct nt_ecc_outcome *o, char *buf, size_t len)
{
    if (strcmp(what, ACT_FIRST) == 0)
        snprintf(buf, len, "%s", o->why);
    else
        snprintf(buf, len, "%s: %s", what, o->why);
}

/* Intent (committed) -> write -> result (committed): never "done" before. */
static void soft_offline(struct nt_rasd *r, struct frame_slot *s, int64_t event_id, const char *what)
{
    uint64_t pfn = s->f.pfn, now = nt_realtime_usec();
    char detail[160], result[NT_LEDGER_TEXT_MAX];
    intent_detail(r, what, detail, sizeof(detail));
    if (r->ledger && nt_ledger_frame_intent_detail(r->ledger, pfn, event_id, detail, now, NULL) < 0) {
        r->ledger_errors++;
        log_error("ras: frame 0x%" PRIx64 ": cannot record the intent (%s): not acting without it", pfn,
                  nt_ledger_last_error(r->ledger));
        return;
    }
    bool already = frame_poisoned(r, pfn);
    int err = already ? 0 : write_soft_offline(r, pfn << 12);
    struct nt_ecc_outcome o;
    nt_ecc_outcome(&r->params, &s->f, err, already, nt_realtime_usec(), &o);
    if (o.cls == NT_ECC_DONE)
        r->offlined++;
    else if (o.cls == NT_ECC_RETRY)
        r->retries++;
    else
        r->failed++;
    result_text(what, &o, result, sizeof(result));
    if (r->ledger &&
        nt_ledger_frame_result(r->ledger, pfn, ledger_state_of(&o, already), result, -err,
                               o.cls == NT_ECC_RETRY ? o.retry_at_usec : 0, nt_realtime_usec()) < 0)
        r->ledger_errors++;
    journal_action(pfn, what, &o, err);
    log_notice("ras: frame 0x%" PRIx64 ": %s: %s", pfn, what, o.why);
}

/* ---- block escalation -------------------------------------------------------- */

static void journal_block(uint64_t block, const char *result, const char *outcome, int64_t job)
{
    sd_journal_send("MESSAGE=ras: memory block %" PRIu64 ": %s", block, result,
                    "MESSAGE_ID=" MESSAGE_ID_ACTION,
                    "PRIORITY=%d", job > 0 ? 5 : 4,
                    "NUMATIER_MEMORY_BLOCK=%" PRIu64, block,
                    "NUMATIER_ACTION=" ACT_BLOCK,
                    "NUMATIER_RESULT=%s", outcome,
                    "NUMATIER_JOB=%" PRId64, job,
                    NULL);
}

/* One attempt, journaled in the ledger like a frame's: the intent before
 * the request, the outcome after. Returns false when another job was
 * running and the block should be tried again later. */
static bool offline_block(struct nt_rasd *r, uint64_t block)
{
    char detail[64], msg[NT_LEDGER_TEXT_MAX - 64] = "", result[NT_LEDGER_TEXT_MAX];
    int64_t id = 0, job = 0;
    snprintf(detail, sizeof(detail), "{\"block\": %" PRIu64 "}", block);
    if (r->ledger && nt_ledger_action_begin(r->ledger, ACT_BLOCK, detail, nt_realtime_usec(), &id) < 0) {
        r->ledger_errors++;
        log_error("ras: memory block %" PRIu64 ": cannot record the intent (%s): not acting without it", block,
                  nt_ledger_last_error(r->ledger));
        return true;
    }
    int err = r->block_offliner(block, &job, msg, sizeof(msg), r->block_offliner_ud);
    const char *outcome = err == 0 ? "started" : err == -EBUSY ? "deferred" : "refused";
    if (err == 0 && job == 0)
        snprintf(result, sizeof(result), "%s", msg);
    else if (err == 0)
        snprintf(result, sizeof(result), "offline job %" PRId64 " started (numatierctl jobs %" PRId64 ")", job, job);
    else if (err == -EBUSY)
        snprintf(result, sizeof(result), "deferred: %s; trying again in %llu s", msg, BLOCK_RETRY_USEC / 1000000);
    else
        snprintf(result, sizeof(result), "refused: %s", msg);
    if (r->ledger && nt_ledger_action_end(r->ledger, id, err == 0, result, -err, nt_realtime_usec()) < 0)
        r->ledger_errors++;
    if (err == 0)
        r->blocks_started++;
    else if (err != -EBUSY)
        r->blocks_refused++;
    journal_block(block, result, outcome, job);
    log_notice("ras: memory block %" PRIu64 ": %s", block, result);
    return err != -EBUSY;
}

static void wait_for_block(struct nt_rasd *r, uint64_t block, uint64_t due_mono)
{
    for (size_t i = 0; i < r->nr_waiting_blocks; i++)
        if (r->waiting_blocks[i] == block)
            return;
    if (r->nr_waiting_blocks == MAX_WAITING_BLOCKS) {
        log_warning("ras: memory block %" PRIu64 ": too many blocks wait for an offline job; not retried", block);
        return;
    }
    r->waiting_blocks[r->nr_waiting_blocks++] = block;
    if (r->nr_waiting_blocks == 1 || due_mono < r->next_block_try_usec)
        r->next_block_try_usec = due_mono;
}

/* The policy escalated a block: with block_action soft and the offline
 * machinery wired, start a job that evacuates and offlines it. */
static void escalate_block(struct nt_rasd *r, uint64_t block)
{
    if (r->params.block_action != NT_ECC_ACTION_SOFT)
        return;
    if (!r->block_offliner)
        wait_for_block(r, block, 0);        /* replayed at startup: at the first cycle */
    else if (!offline_block(r, block))
        wait_for_block(r, block, nt_now_usec() + BLOCK_RETRY_USEC);
}

/* Blocks that met a running job: one more try each when due. */
static void retry_blocks(struct nt_rasd *r, uint64_t now_mono)
{
    if (!r->nr_waiting_blocks || now_mono < r->next_block_try_usec || !r->block_offliner)
        return;
    size_t kept = 0;
    for (size_t i = 0; i < r->nr_waiting_blocks; i++)
        if (!offline_block(r, r->waiting_blocks[i]))
            r->waiting_blocks[kept++] = r->waiting_blocks[i];
    r->nr_waiting_blocks = kept;
    r->next_block_try_usec = now_mono + BLOCK_RETRY_USEC;
}

void nt_rasd_set_block_offliner(struct nt_rasd *r, nt_rasd_block_offline_fn fn, void *userdata)
{
    r->block_offliner = fn;
    r->block_offliner_ud = userdata;
}

/* ---- events ----------------------------------------------------------------- */

static void fields_json(const struct nt_ras_event *ev, char *buf, size_t len)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "corrected", json_object_new_boolean(ev->corrected));
    json_object_object_add(o, "count", json_object_new_uint64(ev->count ? ev->count : 1));
    json_object_object_add(o, "grain", json_object_new_uint64(ev->grain_bytes));
    json_object_object_add(o, "cpu", json_object_new_int(ev->cpu));
    json_object_object_add(o, "socket", json_object_new_int(ev->socket));
    json_object_object_add(o, "bank", json_object_new_int(ev->bank));
    json_object_object_add(o, "mcacod", json_object_new_int(ev->mcacod));
    json_object_object_add(o, "memory_error", json_object_new_boolean(ev->memory_error));
    json_object_object_add(o, "detail", json_object_new_string(ev->detail));
    if (ev->why_unusable[0])
        json_object_object_add(o, "unusable", json_object_new_string(ev->why_unusable));
    snprintf(buf, len, "%s", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
}

/* Decide about one recorded event and act. The policy's clock is the
 * event's own time, so replaying the ledger after a restart feeds the
 * buckets exactly as the events did when they came. */
static void decide(struct nt_rasd *r, const struct nt_ras_event *ev, int64_t event_id)
{
    uint64_t when = ev->time_usec ? ev->time_usec : nt_realtime_usec();
    uint64_t pfn;
    struct frame_slot *s = nt_ecc_event_pfn(ev, &pfn) ? frame_get(r, pfn) : NULL;
    const struct nt_ecc_frame *peers[256];
    size_t np = 0;
    for (size_t i = 0; s && i < r->nr_frames && np < 256; i++)
        if (&r->frames[i] != s && r->frames[i].block == s->block)
            peers[np++] = &r->frames[i].f;
    struct nt_ecc_decision d;
    struct nt_ecc_block *b = s ? block_get(r, s->block) : NULL;
    if (nt_ecc_decide(&r->params, ev, s ? &s->f : NULL, b, peers, np, when, &d) < 0)
        return;
    if (d.block_verdict != NT_ECC_BLOCK_NONE)
        log_warning("ras: memory block %" PRIu64 ": %u failing frames: proposing to offline it (%s)", d.block,
                    d.block_over, nt_ecc_block_verdict_name(d.block_verdict));
    if (d.verdict == NT_ECC_SOFT_OFFLINE && s) {
        if (r->ledger)
            nt_ledger_frame_trigger(r->ledger, s->f.pfn, d.why, nt_realtime_usec());
        soft_offline(r, s, event_id, ACT_FIRST);
    }
    if (d.block_verdict == NT_ECC_BLOCK_OFFLINE)
        escalate_block(r, d.block);      /* after the frame: it is isolated first */
}

/* 0, or -EIO when the ledger could not record the batch (then the policy
 * has not seen it: an event is acted on only once acknowledged). */
static int flush_batch(struct nt_rasd *r)
{
    if (!r->nr_batch)
        return 0;
    _cleanup_free_ struct nt_ledger_event *le = calloc(r->nr_batch, sizeof(*le));
    _cleanup_free_ int64_t *ids = calloc(r->nr_batch, sizeof(*ids));
    _cleanup_free_ char *json = malloc(r->nr_batch * 512);
    bool recorded = false;
    if (le && ids && json && r->ledger) {
        for (size_t i = 0; i < r->nr_batch; i++) {
            const struct nt_ras_event *ev = &r->batch[i];
            fields_json(ev, json + i * 512, 512);
            le[i] = (struct nt_ledger_event){
                .time_usec = ev->time_usec, .source = nt_ras_source_name(ev->source),
                .addr_valid = nt_ras_event_usable(ev), .phys_addr = ev->phys_addr,
                .fields_json = json + i * 512, .node = -1, .memory_block = -1,
            };
            if (le[i].addr_valid)
                locate(r, ev->phys_addr, &le[i].memory_block, &le[i].node);
        }
        recorded = nt_ledger_add_events(r->ledger, le, r->nr_batch, ids) == 0;
        if (!recorded) {
            r->ledger_errors++;
            log_error("ras: ledger: %s", nt_ledger_last_error(r->ledger));
        }
    }
    /* The policy sees only what is acknowledged, unless there is no ledger
     * at all (then it runs from memory, and status says so). */
    if (recorded || !r->ledger)
        for (size_t i = 0; i < r->nr_batch; i++)
            decide(r, &r->batch[i], recorded ? ids[i] : 0);
    r->nr_batch = 0;
    return recorded || !r->ledger ? 0 : -EIO;
}

static bool read_u64(struct nt_rasd *r, const struct nt_ras_record *rec, const char *f, uint64_t *v)
{
    if (nt_ras_record_u64(rec, f, v) == 0)
        return true;
    *v = 0;
    nt_ras_trace_note_bad(r->trace, NT_RAS_BAD_FIELD, "%s: no field %s", rec->fmt->name, f);
    return false;
}

/* When the record says the event happened, else now. */
static uint64_t event_time(const struct nt_rasd *r, const struct nt_ras_record *rec)
{
    uint64_t t = nt_ras_trace_record_time_usec(r->trace, rec);
    return t ? t : nt_realtime_usec();
}

static int decode_mce(struct nt_rasd *r, const struct nt_ras_record *rec, struct nt_ras_event *ev)
{
    struct nt_mce_record m = { .cpuvendor = NT_X86_VENDOR_UNKNOWN };
    uint64_t v;
    bool ok = read_u64(r, rec, "status", &m.status) & read_u64(r, rec, "addr", &m.addr) &
              read_u64(r, rec, "misc", &m.misc);
    read_u64(r, rec, "mcgstatus", &m.mcgstatus);
    if (nt_ras_record_u64(rec, "bank", &v) == 0) m.bank = (uint8_t)v;
    if (nt_ras_record_u64(rec, "cpu", &v) == 0) m.cpu = (uint32_t)v;
    if (nt_ras_record_u64(rec, "socketid", &v) == 0) m.socketid = (uint32_t)v;
    if (nt_ras_record_u64(rec, "cpuvendor", &v) == 0) m.cpuvendor = (int)v;
    if (!ok)
        return -EBADMSG;
    nt_mce_decode(&m, event_time(r, rec), ev);
    return 0;
}

static int decode_edac(struct nt_rasd *r, const struct nt_ras_record *rec, struct nt_ras_event *ev)
{
    struct nt_edac_record e = { .top_layer = -1, .middle_layer = -1, .lower_layer = -1 };
    uint64_t v;
    if (!read_u64(r, rec, "error_type", &v))
        return -EBADMSG;
    e.error_type = (uint32_t)v;
    if (nt_ras_record_u64(rec, "error_count", &v) == 0) e.error_count = (uint32_t)v;
    if (nt_ras_record_u64(rec, "address", &v) == 0) e.address = v;
    if (nt_ras_record_u64(rec, "grain_bits", &v) == 0) e.grain_bits = (uint32_t)v;
    nt_ras_record_str(rec, "label", &e.label);
    nt_ras_record_str(rec, "msg", &e.msg);
    nt_edac_decode(&e, event_time(r, rec), ev);
    return 0;
}

static int decode_memfail(struct nt_rasd *r, const struct nt_ras_record *rec, struct nt_ras_event *ev)
{
    struct nt_memfail_record mf = { 0 };
    uint64_t v;
    if (!read_u64(r, rec, "pfn", &mf.pfn))
        return -EBADMSG;
    if (nt_ras_record_u64(rec, "type", &v) == 0) mf.type = (int)v;
    if (nt_ras_record_u64(rec, "result", &v) == 0) mf.result = (int)v;
    nt_memfail_decode(&mf, event_time(r, rec), ev);
    return 0;
}

static int decode_cxl(struct nt_rasd *r, const struct nt_ras_record *rec, struct nt_ras_event *ev)
{
    const char *missing = NULL;
    int ret = nt_cxl_decode_trace(rec, event_time(r, rec), ev, &missing);
    if (ret == -EBADMSG)
        nt_ras_trace_note_bad(r->trace, NT_RAS_BAD_FIELD, "%s: no field %s", rec->fmt->name,
                              missing ? missing : "?");
    return ret;
}

/* The next free batch entry, zeroed; NULL without memory. */
static struct nt_ras_event *batch_slot(struct nt_rasd *r)
{
    if (r->nr_batch == r->cap_batch) {
        size_t cap = r->cap_batch ? 2 * r->cap_batch : 64;
        struct nt_ras_event *v = realloc(r->batch, cap * sizeof(*v));
        if (!v)
            return NULL;
        r->batch = v;
        r->cap_batch = cap;
    }
    struct nt_ras_event *ev = &r->batch[r->nr_batch];
    memset(ev, 0, sizeof(*ev));
    return ev;
}

static void on_record(const struct nt_ras_record *rec, void *userdata)
{
    struct nt_rasd *r = userdata;
    struct nt_ras_event *ev = batch_slot(r);
    if (!ev)
        return;
    int ret = -ENOTSUP;
    if (strcmp(rec->fmt->name, "mce_record") == 0)
        ret = decode_mce(r, rec, ev);
    else if (strcmp(rec->fmt->name, "mc_event") == 0)
        ret = decode_edac(r, rec, ev);
    else if (strcmp(rec->fmt->name, "memory_failure_event") == 0)
        ret = decode_memfail(r, rec, ev);
    else if (strcmp(rec->fmt->system, "cxl") == 0)
        ret = decode_cxl(r, rec, ev);
    if (ret < 0) {
        r->decoded_bad++;
        return;
    }
    r->events++;
    r->nr_batch++;
}

int nt_rasd_handle_event(struct nt_rasd *r, const struct nt_ras_event *ev)
{
    struct nt_ras_event *slot = batch_slot(r);
    if (!slot)
        return -ENOMEM;
    *slot = *ev;
    r->events++;
    r->nr_batch++;
    return flush_batch(r);
}

static int on_trace_fd(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    (void)s;
    (void)fd;
    (void)revents;
    struct nt_rasd *r = userdata;
    const struct nt_ras_cpu_reader *rd;
    size_t n;
    rd = nt_ras_trace_readers(r->trace, &n);
    for (size_t i = 0; i < n; i++)
        if (rd[i].fd == fd) {
            nt_ras_trace_read(r->trace, rd[i].cpu, PAGES_PER_TURN, on_record, r);
            break;
        }
    flush_batch(r);
    return 0;
}

/* ---- setup -------------------------------------------------------------------- */

static void drop_io(struct nt_rasd *r)
{
    for (size_t i = 0; i < r->nr_io; i++)
        sd_event_source_disable_unref(r->io[i]);
    free(r->io);
    r->io = NULL;
    r->nr_io = 0;
}

static int add_io(struct nt_rasd *r)
{
    size_t n;
    const struct nt_ras_cpu_reader *rd = nt_ras_trace_readers(r->trace, &n);
    r->io = calloc(n ? n : 1, sizeof(*r->io));
    if (!r->io)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int ret = sd_event_add_io(r->event, &r->io[i], rd[i].fd, EPOLLIN, on_trace_fd, r);
        if (ret < 0)
            return ret;
        /* In a storm the trace is always readable: requests and timers go
         * first, so `status` is not kept waiting behind a backlog. */
        ret = sd_event_source_set_priority(r->io[i], TRACE_PRIORITY);
        if (ret < 0)
            return ret;
        r->nr_io++;
    }
    return 0;
}

static void open_trace(struct nt_rasd *r)
{
    int ret = nt_ras_trace_open(r->root, &r->trace);
    if (ret < 0) {
        if (ret == -ENOENT)
            snprintf(r->trace_why, sizeof(r->trace_why),
                     "tracefs is not mounted (at /sys/kernel/tracing or /sys/kernel/debug/tracing)");
        else
            snprintf(r->trace_why, sizeof(r->trace_why), "tracefs: %s", strerror(-ret));
        log_warning("ras: %s; corrected errors are not watched", r->trace_why);
        return;
    }
    for (size_t i = 0; i < nt_ras_trace_n_missing(r->trace); i++)
        log_info("ras: event %s is not in this kernel", nt_ras_trace_missing(r->trace, i));
    ret = add_io(r);
    if (ret < 0)
        log_warning("ras: cannot poll trace_pipe_raw: %s", strerror(-ret));
}

static void open_ledger(struct nt_rasd *r, const char *path)
{
    /* The unit's StateDirectory makes the directory; by hand it may not exist. */
    _cleanup_free_ char *dir = strdup(path);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash && slash != dir) {
        *slash = '\0';
        (void)mkdir(dir, 0700);
    }
    int ret = nt_ledger_open(path, NULL, &r->ledger, r->ledger_why, sizeof(r->ledger_why));
    if (ret < 0) {
        log_error("ras: ledger %s: %s; events are handled in memory only", path, r->ledger_why);
        r->ledger = NULL;
    }
}

/* Is a process with this comm running? */
static bool running(const char *root, const char *comm)
{
    _cleanup_closedir_ DIR *d = nt_opendir_below(root, "/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char path[300];
        snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
        _cleanup_free_ char *c = NULL;
        if (nt_read_file(root, path, &c) == 0 && strcmp(c, comm) == 0)
            return true;
    }
    return false;
}

/* Others that handle corrected errors too. None of them stops numatierd:
 * it says what it found and what that means. */
static void detect_coexistence(struct nt_rasd *r)
{
    _cleanup_free_ char *cec = nt_path_join(r->root, "/sys/kernel/debug/ras/cec");
    _cleanup_free_ char *cmdline = NULL;
    bool cec_off = nt_read_file(r->root, "/proc/cmdline", &cmdline) == 0 && strstr(cmdline, "ras=cec_disable");
    if (cec && access(cec, F_OK) == 0 && !cec_off) {
        nt_appendf(r->coexist, sizeof(r->coexist), "%sRAS_CEC", r->coexist[0] ? ", " : "");
        log_warning("ras: the kernel's corrected-errors collector (RAS_CEC) is active: it offlines frames "
                    "itself and hides their errors from tracefs; boot with ras=cec_disable to let numatierd decide");
    }
    static const char *const others[] = { "mcelog", "rasdaemon" };
    for (size_t i = 0; i < NT_ARRAY_SIZE(others); i++)
        if (running(r->root, others[i])) {
            nt_appendf(r->coexist, sizeof(r->coexist), "%s%s", r->coexist[0] ? ", " : "", others[i]);
            log_warning("ras: %s is running: if it also offlines pages, frames may be handled twice "
                        "(see numatierd(8), Corrected memory errors)", others[i]);
        }
}

/* An intent without a result: the daemon died between the two. Look at the
 * frame instead of writing again blindly. */
static int on_pending(const struct nt_ledger_action *a, void *userdata)
{
    struct nt_rasd *r = userdata;
    if (strcmp(a->kind, ACT_BLOCK) == 0) {
        /* The job journal knows whether the job started; the request is over. */
        nt_ledger_action_end(r->ledger, a->id, false, "interrupted by a restart (see numatierctl jobs)", 0,
                             nt_realtime_usec());
        return 0;
    }
    if (!a->has_pfn || strcmp(a->kind, "soft_offline") != 0)
        return 0;
    bool poisoned = frame_poisoned(r, a->pfn);
    log_notice("ras: frame 0x%" PRIx64 ": an offline was under way when numatierd stopped; it is %s", a->pfn,
               poisoned ? "offline" : "not offline: retrying");
    nt_ledger_frame_result(r->ledger, a->pfn, poisoned ? NT_FRAME_OFFLINED : NT_FRAME_TRIGGERED,
                           poisoned ? "found offline after a restart" : "interrupted: retry",
                           0, poisoned ? 0 : nt_realtime_usec(), nt_realtime_usec());
    return 0;
}

static int on_triggered(const struct nt_ledger_frame *f, void *userdata)
{
    struct nt_rasd *r = userdata;
    struct frame_slot *s = frame_get(r, f->pfn);
    if (s && f->next_retry_usec) {
        s->f.state = NT_ECC_FRAME_PENDING;
        s->f.next_try_usec = f->next_retry_usec;
    }
    return 0;
}

static int on_offlined(const struct nt_ledger_frame *f, void *userdata)
{
    struct nt_rasd *r = userdata;
    struct frame_slot *s = frame_get(r, f->pfn);
    if (!s || frame_poisoned(r, f->pfn))
        return 0;
    s->f.state = NT_ECC_FRAME_PENDING;
    s->f.reoffline = true;
    s->f.attempts = 0;                    /* this boot's retry budget; the ledger keeps the total */
    soft_offline(r, s, 0, ACT_REOFFLINE);
    return 0;
}

/* ---- the buckets after a restart ------------------------------------------- */

static bool source_from_name(const char *name, enum nt_ras_source *out)
{
    for (int i = 0; name && strcmp(nt_ras_source_name((enum nt_ras_source)i), "?") != 0; i++)
        if (strcmp(name, nt_ras_source_name((enum nt_ras_source)i)) == 0) {
            *out = (enum nt_ras_source)i;
            return true;
        }
    return false;
}

static int64_t field_int(struct json_object *o, const char *key, int64_t dflt)
{
    struct json_object *v;
    return json_object_object_get_ex(o, key, &v) && v ? json_object_get_int64(v) : dflt;
}

static void field_str(struct json_object *o, const char *key, char *buf, size_t len)
{
    struct json_object *v;
    if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
        snprintf(buf, len, "%s", json_object_get_string(v));
}

/* The event as the policy saw it, from what fields_json() stored. False
 * for a row it cannot read back (then it is not replayed). */
static bool event_from_ledger(const struct nt_ledger_event *le, struct nt_ras_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    struct json_object *f = le->fields_json ? json_tokener_parse(le->fields_json) : NULL;
    if (!f || !json_object_is_type(f, json_type_object) || !source_from_name(le->source, &ev->source)) {
        json_object_put(f);
        return false;
    }
    ev->time_usec = le->time_usec;
    ev->addr_valid = le->addr_valid;
    ev->phys_addr = le->phys_addr;
    ev->corrected = field_int(f, "corrected", 0) != 0;
    ev->severity = ev->corrected ? NT_RAS_SEV_CORRECTED : NT_RAS_SEV_UNCORRECTED;
    ev->count = (uint32_t)field_int(f, "count", 1);
    ev->grain_bytes = (uint64_t)field_int(f, "grain", (int64_t)NT_RAS_PAGE_SIZE);
    ev->cpu = (int)field_int(f, "cpu", -1);
    ev->socket = (int)field_int(f, "socket", -1);
    ev->bank = (int)field_int(f, "bank", -1);
    ev->mcacod = (uint16_t)field_int(f, "mcacod", 0);
    ev->memory_error = field_int(f, "memory_error", 0) != 0;
    ev->node = -1;
    field_str(f, "detail", ev->detail, sizeof(ev->detail));
    field_str(f, "unusable", ev->why_unusable, sizeof(ev->why_unusable));
    json_object_put(f);
    return true;
}

/* The newest REPLAY_MAX events, in a ring, oldest first once unrolled. */
struct replay {
    struct nt_ras_event *ev;
    int64_t *id;
    size_t n, next;
};

static int on_replay_event(int64_t id, const struct nt_ledger_event *le, void *userdata)
{
    struct replay *rp = userdata;
    struct nt_ras_event ev;
    if (!event_from_ledger(le, &ev))
        return 0;
    rp->ev[rp->next] = ev;
    rp->id[rp->next] = id;
    rp->next = (rp->next + 1) % REPLAY_MAX;
    if (rp->n < REPLAY_MAX)
        rp->n++;
    return 0;
}

/* The leaky buckets live in memory: rebuild them from the ledger, so errors
 * below the threshold are not forgotten by a restart or a reboot, and an
 * event acknowledged just before a crash is still acted on. Only frames in
 * state ok or triggered can still cross; the events of the last T x W are
 * all that can still be in a bucket (it holds at most T units and drains
 * one per W). The events are read first and decided after, because
 * deciding writes to the ledger. */
static void replay(struct nt_rasd *r)
{
    struct replay rp = { .ev = calloc(REPLAY_MAX, sizeof(*rp.ev)), .id = calloc(REPLAY_MAX, sizeof(*rp.id)) };
    uint64_t now = nt_realtime_usec(), span = (uint64_t)r->params.threshold * r->params.window_usec;
    int ret = rp.ev && rp.id ? 0 : -ENOMEM;
    if (ret == 0)
        ret = nt_ledger_events_since(r->ledger, now > span ? now - span : 0,
                                     NT_FRAME_MASK(NT_FRAME_OK) | NT_FRAME_MASK(NT_FRAME_TRIGGERED),
                                     on_replay_event, &rp);
    if (ret < 0)
        log_warning("ras: cannot replay recent events (%s): error counts start from zero",
                    ret == -ENOMEM ? strerror(ENOMEM) : nt_ledger_last_error(r->ledger));
    size_t first = rp.n < REPLAY_MAX ? 0 : rp.next;
    for (size_t i = 0; ret == 0 && i < rp.n; i++) {
        size_t k = (first + i) % REPLAY_MAX;
        decide(r, &rp.ev[k], rp.id[k]);
        r->replayed++;
    }
    if (r->replayed)
        log_info("ras: %" PRIu64 " recent event(s) replayed from the ledger into the error counts", r->replayed);
    free(rp.ev);
    free(rp.id);
}

/* A frame the ledger says crossed the threshold counts toward its block's
 * escalation for a window from its last error, across restarts too. */
static int on_over(const struct nt_ledger_frame *f, void *userdata)
{
    struct frame_slot *s = frame_get(userdata, f->pfn);
    if (s && f->last_usec > s->f.over_usec)
        s->f.over_usec = f->last_usec;
    return 0;
}

static void recover(struct nt_rasd *r)
{
    if (!r->ledger)
        return;
    nt_ledger_frames(r->ledger, NT_FRAME_MASK(NT_FRAME_TRIGGERED) | NT_FRAME_MASK(NT_FRAME_OFFLINE_PENDING) |
                     NT_FRAME_MASK(NT_FRAME_OFFLINED) | NT_FRAME_MASK(NT_FRAME_FAILED) |
                     NT_FRAME_MASK(NT_FRAME_ALREADY_OFFLINE), on_over, r);
    nt_ledger_pending(r->ledger, on_pending, r);
    nt_ledger_frames(r->ledger, NT_FRAME_MASK(NT_FRAME_TRIGGERED), on_triggered, r);
    if (r->reoffline)
        nt_ledger_frames_to_reoffline(r->ledger, on_offlined, r);
    replay(r);
}

static void read_boot_id(struct nt_rasd *r)
{
    _cleanup_free_ char *id = NULL;
    if (nt_read_file(r->root, BOOT_ID_PATH, &id) == 0)
        snprintf(r->boot_id, sizeof(r->boot_id), "%.*s", (int)strcspn(id, "\n"), id);
}

int nt_rasd_new(sd_event *ev, const char *root, const struct nt_config *cfg, struct nt_rasd **out)
{
    struct nt_rasd *r = calloc(1, sizeof(*r));
    if (!r || !(r->root = strdup(root ? root : "/"))) {
        free(r);
        return -ENOMEM;
    }
    r->event = sd_event_ref(ev);
    params_from(r, cfg);
    read_boot_id(r);
    if (cfg->ras) {
        detect_coexistence(r);
        open_ledger(r, cfg->ledger_path);
        recover(r);
        open_trace(r);
    } else {
        snprintf(r->trace_why, sizeof(r->trace_why), "disabled by [ras] enabled = no");
    }
    *out = r;
    return 0;
}

void nt_rasd_free(struct nt_rasd *r)
{
    if (!r)
        return;
    drop_io(r);
    nt_ras_trace_close(r->trace, true);
    nt_ledger_close(r->ledger);
    sd_event_unref(r->event);
    free(r->frames);
    free(r->blocks);
    free(r->batch);
    free(r->block_node);
    free(r->root);
    free(r);
}

void nt_rasd_reconfigure(struct nt_rasd *r, const struct nt_config *cfg)
{
    params_from(r, cfg);
    if (r->block_size)
        r->params.block_size = r->block_size;
}

void nt_rasd_cycle(struct nt_rasd *r, const struct nt_topology *topo, uint64_t now_usec)
{
    learn_blocks(r, topo);
    retry_blocks(r, now_usec);
    uint64_t now = nt_realtime_usec();    /* the ledger wants wall time */
    for (size_t i = 0; i < r->nr_frames; i++)
        if (nt_ecc_frame_due(&r->frames[i].f, now))
            soft_offline(r, &r->frames[i], 0, r->frames[i].f.reoffline ? ACT_REOFFLINE : ACT_RETRY);
    if (r->trace) {
        bool changed = false;
        if (nt_ras_trace_rescan_cpus(r->trace, on_record, r, &changed) == 0 && changed) {
            drop_io(r);
            add_io(r);
        }
        flush_batch(r);
    }
    if (r->ledger && now - r->last_prune_usec >= 3600ull * 1000000) {
        nt_ledger_prune(r->ledger, r->retention_usec, r->max_events, now);
        r->last_prune_usec = now;
    }
}

struct json_object *nt_rasd_status_json(const struct nt_rasd *r)
{
    struct json_object *o = json_object_new_object();
    struct json_object *ev = json_object_new_array();
    for (size_t i = 0; r->trace && i < nt_ras_trace_n_events(r->trace); i++) {
        const struct nt_trace_format *f = nt_ras_trace_event(r->trace, i);
        char name[128];
        snprintf(name, sizeof(name), "%s:%s", f->system, f->name);
        json_object_array_add(ev, json_object_new_string(name));
    }
    json_object_object_add(o, "events_enabled", ev);
    json_object_object_add(o, "unavailable", r->trace ? NULL : json_object_new_string(r->trace_why));
    json_object_object_add(o, "ledger", r->ledger ? json_object_new_boolean(1) : json_object_new_string(r->ledger_why));
    json_object_object_add(o, "coexisting", r->coexist[0] ? json_object_new_string(r->coexist) : NULL);
    json_object_object_add(o, "events", json_object_new_uint64(r->events));
    json_object_object_add(o, "undecodable", json_object_new_uint64(r->decoded_bad));
    json_object_object_add(o, "lost", json_object_new_uint64(r->trace ? nt_ras_trace_lost(r->trace) : 0));
    json_object_object_add(o, "offlined", json_object_new_uint64(r->offlined));
    json_object_object_add(o, "blocks_started", json_object_new_uint64(r->blocks_started));
    json_object_object_add(o, "blocks_refused", json_object_new_uint64(r->blocks_refused));
    json_object_object_add(o, "blocks_waiting", json_object_new_uint64(r->nr_waiting_blocks));
    json_object_object_add(o, "failed", json_object_new_uint64(r->failed));
    json_object_object_add(o, "retries", json_object_new_uint64(r->retries));
    json_object_object_add(o, "ledger_errors", json_object_new_uint64(r->ledger_errors));
    json_object_object_add(o, "replayed", json_object_new_uint64(r->replayed));
    return o;
}

struct json_object *nt_rasd_ledger_json(struct nt_rasd *r, unsigned max_events, int *err)
{
    if (!r->ledger) {
        *err = -ENOENT;
        return NULL;
    }
    struct json_object *o = NULL;
    *err = nt_ledger_to_json(r->ledger, max_events > LEDGER_JSON_EVENTS_MAX ? LEDGER_JSON_EVENTS_MAX : max_events,
                             &o);
    return *err < 0 ? NULL : o;
}

static int add_problem(const char *problem, void *userdata)
{
    json_object_array_add(userdata, json_object_new_string(problem));
    return 0;
}

struct json_object *nt_rasd_check_json(struct nt_rasd *r)
{
    struct json_object *o = json_object_new_object(), *problems = json_object_new_array();
    struct nt_ledger_check_counts n = { 0 };
    int found = r->ledger ? nt_ledger_check(r->ledger, add_problem, problems, &n) : -ENOENT;
    if (found < 0) {
        char why[300];
        snprintf(why, sizeof(why), "the check could not run: %s",
                 r->ledger ? nt_ledger_last_error(r->ledger) : r->ledger_why[0] ? r->ledger_why : "no ledger");
        json_object_array_add(problems, json_object_new_string(why));
    } else if (found > 0) {
        log_warning("ras: ledger check: %d problem(s), the first: %s", found,
                    json_object_get_string(json_object_array_get_idx(problems, 0)));
    }
    json_object_object_add(o, "ok", json_object_new_boolean(found == 0));
    json_object_object_add(o, "problems", problems);
    json_object_object_add(o, "offlines_done", json_object_new_uint64(n.offlines_done));
    json_object_object_add(o, "frames_offline", json_object_new_uint64(n.frames_offline));
    return o;
}
