/* ECC policy: leaky bucket per frame, block escalation, outcome handling.
 * Pure: the caller keeps the state and passes the time. See ecc.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "numatier/strbuf.h"
#include "numatier/ecc.h"

#define USEC_PER_SEC UINT64_C(1000000)

void nt_ecc_params_default(struct nt_ecc_params *p)
{
    *p = (struct nt_ecc_params){
        .threshold = 2,
        .window_usec = UINT64_C(24) * 3600 * USEC_PER_SEC,
        .frame_action = NT_ECC_ACTION_SOFT,
        .block_action = NT_ECC_ACTION_ACCOUNT,
        .block_frames = 4,
        .block_size = UINT64_C(128) << 20,
        .retry_limit = 8,
        .retry_base_usec = 10 * USEC_PER_SEC,
        .retry_max_usec = 600 * USEC_PER_SEC,
    };
}

static bool action_valid(enum nt_ecc_action a)
{
    return a == NT_ECC_ACTION_OFF || a == NT_ECC_ACTION_ACCOUNT || a == NT_ECC_ACTION_SOFT;
}

int nt_ecc_params_check(const struct nt_ecc_params *p, const char **why)
{
    const char *w = NULL;
    if (p->threshold < 1 || p->threshold > NT_ECC_MAX_THRESHOLD)
        w = "threshold must be 1..1000";
    else if (p->window_usec < USEC_PER_SEC || p->window_usec > NT_ECC_MAX_WINDOW_USEC)
        w = "window must be 1s..366d";
    else if (!action_valid(p->frame_action) || !action_valid(p->block_action))
        w = "action must be off, account or soft";
    else if (p->block_frames < 1)
        w = "block_frames must be at least 1";
    else if (p->block_size < NT_RAS_PAGE_SIZE || (p->block_size & (p->block_size - 1)))
        w = "block_size must be a power of 2, at least 4K";
    else if (p->retry_limit < 1)
        w = "retry_limit must be at least 1";
    else if (p->retry_max_usec < p->retry_base_usec)
        w = "retry_max must be at least retry_base";
    if (why)
        *why = w;
    return w ? -EINVAL : 0;
}

void nt_ecc_frame_init(struct nt_ecc_frame *f, uint64_t pfn)
{
    *f = (struct nt_ecc_frame){ .pfn = pfn, .state = NT_ECC_FRAME_OK, .next_try_usec = UINT64_MAX };
}

void nt_ecc_block_init(struct nt_ecc_block *b, uint64_t block)
{
    *b = (struct nt_ecc_block){ .block = block, .state = NT_ECC_BLOCK_OK };
}

bool nt_ecc_event_pfn(const struct nt_ras_event *ev, uint64_t *pfn)
{
    if (!nt_ras_event_usable(ev) || ev->grain_bytes > NT_RAS_PAGE_SIZE)
        return false;
    *pfn = ev->phys_addr >> NT_RAS_PAGE_SHIFT;
    return true;
}

uint64_t nt_ecc_block_of(const struct nt_ecc_params *p, uint64_t pfn)
{
    uint64_t frames = p->block_size >> NT_RAS_PAGE_SHIFT;
    return frames ? pfn / frames : 0;
}

/* ---- the bucket --------------------------------------------------------- */

/* The level drained up to now; a clock that stepped back drains nothing. */
static uint64_t drained_level(const struct nt_ecc_frame *f, uint64_t now_usec)
{
    if (now_usec <= f->last_usec)
        return f->level_usec;
    uint64_t dt = now_usec - f->last_usec;
    return f->level_usec > dt ? f->level_usec - dt : 0;
}

double nt_ecc_frame_level(const struct nt_ecc_params *p, const struct nt_ecc_frame *f, uint64_t now_usec)
{
    return p->window_usec ? (double)drained_level(f, now_usec) / (double)p->window_usec : 0;
}

/* Add n errors at now. Capping n and the level at T units keeps the
 * arithmetic far from overflow (T x W < 2^55) and bounds how long a storm
 * keeps a frame over the threshold. */
static void bucket_add(const struct nt_ecc_params *p, struct nt_ecc_frame *f, uint32_t n, uint64_t now_usec)
{
    uint64_t cap = (uint64_t)p->threshold * p->window_usec;
    uint64_t units = n < p->threshold ? n : p->threshold;
    uint64_t level = drained_level(f, now_usec) + units * p->window_usec;
    f->level_usec = level < cap ? level : cap;
    if (now_usec > f->last_usec)
        f->last_usec = now_usec;
    f->errors += n;
}

static bool bucket_over(const struct nt_ecc_params *p, const struct nt_ecc_frame *f)
{
    return f->level_usec > (uint64_t)(p->threshold - 1) * p->window_usec;
}

/* ---- strings ------------------------------------------------------------ */


#define WHY(d, ...) nt_appendf((d)->why, sizeof((d)->why), __VA_ARGS__)

/* An exact rendering of a duration in the largest unit up to hours, as
 * admins say it: "24h", "90s", "1500ms". */
static void duration_str(uint64_t usec, char *buf, size_t size)
{
    static const struct { uint64_t us; const char *unit; } units[] = {
        { UINT64_C(3600000000), "h" },
        { UINT64_C(60000000), "min" }, { 1000000, "s" }, { 1000, "ms" },
    };
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (usec >= units[i].us && usec % units[i].us == 0) {
            snprintf(buf, size, "%" PRIu64 "%s", usec / units[i].us, units[i].unit);
            return;
        }
    }
    snprintf(buf, size, "%" PRIu64 "us", usec);
}

static void why_level(const struct nt_ecc_params *p, struct nt_ecc_decision *d)
{
    char w[32];
    duration_str(p->window_usec, w, sizeof(w));
    WHY(d, "level %.2f %s %u (threshold %u per %s)", d->level, d->over ? ">" : "<=",
        p->threshold - 1, p->threshold, w);
}

/* ---- deciding ----------------------------------------------------------- */

/* Why an event is not counted at all; NULL when it is. */
static const char *not_counted(const struct nt_ras_event *ev, char *buf, size_t size)
{
    if (!ev->memory_error)
        return "not a DRAM error";
    if (!ev->corrected) {
        snprintf(buf, size, "%s error: the kernel's memory_failure handles it",
                 nt_ras_severity_name(ev->severity));
        return buf;
    }
    if (!nt_ras_event_usable(ev))
        return ev->why_unusable[0] ? ev->why_unusable : "no address";
    if (ev->grain_bytes > NT_RAS_PAGE_SIZE) {
        snprintf(buf, size, "grain %" PRIu64 " bytes is coarser than a 4K frame: "
                 "which frame failed is unknown", ev->grain_bytes);
        return buf;
    }
    return NULL;
}

/* The kernel poisoned the frame itself: remember it, never act on it. */
static void on_memory_failure(const struct nt_ras_event *ev, struct nt_ecc_frame *frame,
                              struct nt_ecc_decision *d)
{
    d->verdict = NT_ECC_IGNORE;
    WHY(d, "the kernel poisoned the frame (memory_failure: %s)", nt_mf_result_name(ev->u.mf.result));
    if (frame && frame->state != NT_ECC_FRAME_OFFLINED) {
        frame->state = NT_ECC_FRAME_POISONED;
        frame->next_try_usec = UINT64_MAX;
    }
}

static bool frame_done(enum nt_ecc_frame_state s)
{
    return s == NT_ECC_FRAME_PENDING || s == NT_ECC_FRAME_OFFLINED ||
           s == NT_ECC_FRAME_FAILED || s == NT_ECC_FRAME_POISONED;
}

/* The frame-level verdict for a counted event. */
static void frame_verdict(const struct nt_ecc_params *p, struct nt_ecc_frame *f,
                          uint64_t now_usec, struct nt_ecc_decision *d)
{
    d->verdict = NT_ECC_ACCOUNT;
    if (frame_done(f->state)) {
        WHY(d, "frame already %s; ", nt_ecc_frame_state_name(f->state));
    } else if (d->over && p->frame_action == NT_ECC_ACTION_SOFT) {
        d->verdict = NT_ECC_SOFT_OFFLINE;
        f->state = NT_ECC_FRAME_PENDING;
        f->attempts = 0;
        f->next_try_usec = now_usec;
        WHY(d, "soft-offline: ");
    } else if (d->over) {
        f->state = NT_ECC_FRAME_ACCOUNTED;
        WHY(d, "over, frame action account: ");
    }
    why_level(p, d);
}

static bool peer_over(const struct nt_ecc_params *p, const struct nt_ecc_frame *f, uint64_t now_usec)
{
    if (f->over_usec == 0)
        return false;
    return f->over_usec >= now_usec || now_usec - f->over_usec < p->window_usec;
}

/* Distinct frames of the block over the threshold within W, this one included. */
static uint32_t block_count(const struct nt_ecc_params *p, const struct nt_ecc_frame *self,
                            const struct nt_ecc_frame *const *peers, size_t n_peers,
                            uint64_t block, uint64_t now_usec)
{
    uint32_t n = 1;
    for (size_t i = 0; i < n_peers; i++) {
        const struct nt_ecc_frame *f = peers[i];
        if (!f || f->pfn == self->pfn || nt_ecc_block_of(p, f->pfn) != block)
            continue;
        if (peer_over(p, f, now_usec))
            n++;
    }
    return n;
}

static void escalate(const struct nt_ecc_params *p, const struct nt_ecc_frame *f, struct nt_ecc_block *b,
                     const struct nt_ecc_frame *const *peers, size_t n_peers,
                     uint64_t now_usec, struct nt_ecc_decision *d)
{
    if (!b || !d->over || p->block_action == NT_ECC_ACTION_OFF)
        return;
    d->block_over = block_count(p, f, peers, n_peers, b->block, now_usec);
    if (d->block_over < p->block_frames)
        return;
    if (p->block_action == NT_ECC_ACTION_SOFT && b->state != NT_ECC_BLOCK_PROPOSED) {
        d->block_verdict = NT_ECC_BLOCK_OFFLINE;
        b->state = NT_ECC_BLOCK_PROPOSED;
    } else if (p->block_action == NT_ECC_ACTION_ACCOUNT && b->state == NT_ECC_BLOCK_OK) {
        d->block_verdict = NT_ECC_BLOCK_ACCOUNT;
        b->state = NT_ECC_BLOCK_ACCOUNTED;
    } else {
        return;
    }
    b->since_usec = now_usec;
    WHY(d, "; block %" PRIu64 ": %u frames over within the window (>= %u): %s",
        b->block, d->block_over, p->block_frames,
        d->block_verdict == NT_ECC_BLOCK_OFFLINE ? "offline the block" : "block offline proposed, not acted on");
}

static int check_state(const struct nt_ecc_params *p, const struct nt_ras_event *ev,
                       const struct nt_ecc_frame *frame, const struct nt_ecc_block *block,
                       uint64_t *pfn, bool *has_pfn)
{
    *has_pfn = nt_ecc_event_pfn(ev, pfn);
    if (!*has_pfn)
        return 0;
    if (!frame || frame->pfn != *pfn)
        return -EINVAL;
    if (block && block->block != nt_ecc_block_of(p, *pfn))
        return -EINVAL;
    return 0;
}

int nt_ecc_decide(const struct nt_ecc_params *p, const struct nt_ras_event *ev,
                  struct nt_ecc_frame *frame, struct nt_ecc_block *block,
                  const struct nt_ecc_frame *const *peers, size_t n_peers,
                  uint64_t now_usec, struct nt_ecc_decision *d)
{
    uint64_t pfn = 0;
    bool has_pfn;
    char buf[128];

    memset(d, 0, sizeof(*d));
    if (nt_ecc_params_check(p, NULL) < 0 || check_state(p, ev, frame, block, &pfn, &has_pfn) < 0)
        return -EINVAL;
    d->threshold = p->threshold;
    d->window_usec = p->window_usec;
    d->block_need = p->block_frames;
    if (!has_pfn)
        frame = NULL;
    if (has_pfn) {
        d->pfn = pfn;
        d->frame_addr = pfn << NT_RAS_PAGE_SHIFT;
        d->block = nt_ecc_block_of(p, pfn);
    }
    if (ev->source == NT_RAS_MEMORY_FAILURE) {
        on_memory_failure(ev, frame, d);
        return 0;
    }
    const char *skip = not_counted(ev, buf, sizeof(buf));
    if (!skip && p->frame_action == NT_ECC_ACTION_OFF)
        skip = "frame action off";
    if (skip) {
        d->verdict = NT_ECC_IGNORE;
        WHY(d, "%s", skip);
        return 0;
    }
    bucket_add(p, frame, ev->count ? ev->count : 1, now_usec);
    d->over = bucket_over(p, frame);
    d->level = nt_ecc_frame_level(p, frame, now_usec);
    if (d->over)
        frame->over_usec = now_usec;
    frame_verdict(p, frame, now_usec, d);
    escalate(p, frame, block, peers, n_peers, now_usec, d);
    return 0;
}

/* ---- acting ------------------------------------------------------------- */

bool nt_ecc_retry_at(const struct nt_ecc_params *p, uint32_t attempt, uint64_t now_usec,
                     uint64_t *at_usec)
{
    if (attempt >= p->retry_limit)
        return false;
    uint64_t delay = p->retry_base_usec;
    for (uint32_t i = 1; i < attempt && delay < p->retry_max_usec; i++)
        delay = delay > UINT64_MAX / 2 ? UINT64_MAX : delay * 2;
    if (delay > p->retry_max_usec)
        delay = p->retry_max_usec;
    *at_usec = now_usec > UINT64_MAX - delay ? UINT64_MAX : now_usec + delay;
    return true;
}

bool nt_ecc_frame_due(const struct nt_ecc_frame *f, uint64_t now_usec)
{
    return f->state == NT_ECC_FRAME_PENDING && f->next_try_usec <= now_usec;
}

static void outcome_set(struct nt_ecc_frame *f, struct nt_ecc_outcome *out,
                        enum nt_ecc_outcome_class cls, enum nt_ecc_frame_state st)
{
    out->cls = cls;
    out->state = st;
    f->state = st;
    if (cls != NT_ECC_RETRY)
        f->next_try_usec = UINT64_MAX;
}

/* The kernel's reasons, from mm/memory-failure.c soft_offline_page(). */
static const char *errno_reason(int e)
{
    switch (e) {
    case EIO: return "EIO: the frame could not be isolated or migrated (or is not online)";
    case ENXIO: return "ENXIO: no such frame (pfn not valid)";
    case EINVAL: return "EINVAL: the kernel refused the address";
    case EOPNOTSUPP: return "EOPNOTSUPP: the frame's type cannot be soft-offlined";
    case EPERM: return "EPERM: not permitted (CAP_SYS_ADMIN, lockdown?)";
    case EACCES: return "EACCES: not permitted";
    case ENOENT: return "ENOENT: no soft_offline_page in sysfs";
    case EROFS: return "EROFS: sysfs is read-only";
    }
    return NULL;
}

static bool errno_fatal(int e)
{
    return e == EPERM || e == EACCES || e == ENOENT || e == EROFS;
}

/* EBUSY, or EIO on a re-offline: try again later, up to the limit. */
static void outcome_busy(const struct nt_ecc_params *p, struct nt_ecc_frame *f, int e, uint64_t now_usec,
                         struct nt_ecc_outcome *out)
{
    const char *name = e == EBUSY ? "EBUSY" : "EIO";
    if (nt_ecc_retry_at(p, f->attempts, now_usec, &out->retry_at_usec)) {
        f->next_try_usec = out->retry_at_usec;
        outcome_set(f, out, NT_ECC_RETRY, NT_ECC_FRAME_PENDING);
        snprintf(out->why, sizeof(out->why), "%s: retry %u of %u", name, f->attempts, p->retry_limit - 1);
    } else {
        outcome_set(f, out, NT_ECC_GIVE_UP, NT_ECC_FRAME_FAILED);
        snprintf(out->why, sizeof(out->why), "%s: still %s after %u attempts", name,
                 e == EBUSY ? "busy" : "unmovable", f->attempts);
    }
}

void nt_ecc_outcome(const struct nt_ecc_params *p, struct nt_ecc_frame *f, int err,
                    bool already_poisoned, uint64_t now_usec, struct nt_ecc_outcome *out)
{
    int e = err < 0 ? -err : err;
    memset(out, 0, sizeof(*out));
    if (f->attempts < UINT32_MAX)
        f->attempts++;
    if (e == 0) {
        outcome_set(f, out, NT_ECC_DONE, NT_ECC_FRAME_OFFLINED);
        snprintf(out->why, sizeof(out->why), "%s",
                 already_poisoned ? "already offline (poisoned before the write)" : "soft-offlined");
    } else if (e == EBUSY || (e == EIO && f->reoffline)) {
        outcome_busy(p, f, e, now_usec, out);
    } else if (errno_fatal(e)) {
        /* Not this frame's fault: keep it pending for when the actuator works. */
        f->attempts--;
        outcome_set(f, out, NT_ECC_FATAL, NT_ECC_FRAME_PENDING);
        snprintf(out->why, sizeof(out->why), "%s", errno_reason(e));
    } else {
        const char *r = errno_reason(e);
        outcome_set(f, out, NT_ECC_GIVE_UP, NT_ECC_FRAME_FAILED);
        if (r)
            snprintf(out->why, sizeof(out->why), "%s", r);
        else
            snprintf(out->why, sizeof(out->why), "error %d", e);
    }
}

/* ---- names -------------------------------------------------------------- */

static const char *const action_names[] = { "off", "account", "soft" };
static const char *const frame_state_names[] = {
    "ok", "accounted", "pending", "offlined", "failed", "poisoned",
};
static const char *const block_state_names[] = { "ok", "accounted", "proposed" };
static const char *const verdict_names[] = { "ignore", "account", "soft-offline" };
static const char *const block_verdict_names[] = { "none", "account", "offline" };
static const char *const outcome_names[] = { "done", "retry", "give-up", "fatal" };

#define NAME(tbl, v) ((unsigned)(v) < sizeof(tbl) / sizeof(tbl[0]) ? tbl[v] : "?")

const char *nt_ecc_action_name(enum nt_ecc_action a) { return NAME(action_names, a); }
const char *nt_ecc_frame_state_name(enum nt_ecc_frame_state s) { return NAME(frame_state_names, s); }
const char *nt_ecc_block_state_name(enum nt_ecc_block_state s) { return NAME(block_state_names, s); }
const char *nt_ecc_verdict_name(enum nt_ecc_verdict v) { return NAME(verdict_names, v); }
const char *nt_ecc_block_verdict_name(enum nt_ecc_block_verdict v) { return NAME(block_verdict_names, v); }
const char *nt_ecc_outcome_class_name(enum nt_ecc_outcome_class c) { return NAME(outcome_names, c); }

static int parse_name(const char *s, const char *const *names, size_t n, int *out)
{
    for (size_t i = 0; s && i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    return -EINVAL;
}

#define PARSE(s, tbl, out, type) __extension__({                              \
    int v_, r_ = parse_name(s, tbl, sizeof(tbl) / sizeof(tbl[0]), &v_);      \
    if (r_ == 0)                                                             \
        *(out) = (type)v_;                                                   \
    r_; })

int nt_ecc_action_parse(const char *s, enum nt_ecc_action *a)
{
    return PARSE(s, action_names, a, enum nt_ecc_action);
}

int nt_ecc_frame_state_parse(const char *s, enum nt_ecc_frame_state *st)
{
    return PARSE(s, frame_state_names, st, enum nt_ecc_frame_state);
}

int nt_ecc_block_state_parse(const char *s, enum nt_ecc_block_state *st)
{
    return PARSE(s, block_state_names, st, enum nt_ecc_block_state);
}
