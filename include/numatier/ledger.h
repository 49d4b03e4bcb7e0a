/* The RAS ledger: a SQLite database (WAL, synchronous=FULL) of every
 * memory-error event, every frame's state and every action taken on it,
 * kept across crashes and reboots.
 *
 * Guarantees, which is why the API is shaped this way:
 * - an event is acknowledged when nt_ledger_add_event(s) returns 0; it is
 *   then on disk (fsync'd), even if the machine dies next;
 * - an action is never recorded as done before it happened: the daemon
 *   records an intent (committed) before it writes to the kernel, and the
 *   result after; a crash in between leaves a pending intent that
 *   nt_ledger_pending() reports at the next open, so the daemon re-checks
 *   the frame instead of acting twice or trusting a guess;
 * - every write is one transaction: a crash mid-way leaves nothing of it.
 *
 * Times are wall-clock (CLOCK_REALTIME) microseconds, passed in: the
 * ledger outlives boots, so monotonic time means nothing in it.
 *
 * The database is versioned (PRAGMA user_version) and migrated in order,
 * in one transaction, at open; one newer than this code is refused and
 * left untouched. Later tables (e.g. offline jobs) are new migrations.
 *
 * Functions return 0 (or a count) or negative errno; after a failure,
 * nt_ledger_last_error() says what SQLite said. Not thread-safe: one
 * ledger per thread (the daemon's event loop). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_object;
struct nt_ledger;

#define NT_LEDGER_SCHEMA_VERSION 4
#define NT_LEDGER_APPLICATION_ID 0x4e544c47     /* "NTLG", in the file header */
#define NT_LEDGER_TEXT_MAX 128                  /* frame text fields, truncated */

struct nt_ledger_opts {
    unsigned busy_timeout_ms;   /* wait for another writer; 0 = 5000 */
    bool skip_check;            /* skip PRAGMA quick_check at open */
};

/* Open (creating if missing) and migrate the ledger at path. Errors, with
 * a sentence in why:
 *   -EBADMSG          corrupt, not a database, or not a numatier ledger:
 *                     the caller may move it aside (it is never changed);
 *   -EPROTONOSUPPORT  written by a newer numatierd (schema too new): it is
 *                     left untouched, and must not be moved aside blindly;
 *   -EBUSY            locked by another process past the busy timeout;
 *   -ENOTSUP          the file system cannot do WAL;
 *   other negative errno (-ENOENT, -EACCES, -EROFS, -ENOSPC, -EIO, ...):
 *                     the path or the file system. */
int nt_ledger_open(const char *path, const struct nt_ledger_opts *opts, struct nt_ledger **out,
                   char *why, size_t why_len);
void nt_ledger_close(struct nt_ledger *l);                      /* NULL is fine */
static inline void nt_ledger_closep(struct nt_ledger **l) { nt_ledger_close(*l); }
#define _cleanup_ledger_ __attribute__((cleanup(nt_ledger_closep)))

const char *nt_ledger_last_error(const struct nt_ledger *l);
int nt_ledger_schema_version(struct nt_ledger *l);             /* user_version */

/* ---- events ---------------------------------------------------------- */

/* One decoded event, as the RAS reader hands it over. Strings may be NULL
 * (source: "unknown"). With addr_valid, the event also counts against its
 * frame (phys_addr >> 12), created in state ok if new, with node and
 * memory_block (-1: unknown) filled in if they were unknown. */
struct nt_ledger_event {
    uint64_t time_usec;
    const char *source;         /* "mce", "edac", "memory_failure", "cxl_dram", ... */
    bool addr_valid;
    uint64_t phys_addr;         /* ignored unless addr_valid; >= 2^63 is kept as unusable */
    const char *fields_json;    /* decoded fields, a JSON object (stored as text) */
    const char *action;         /* what the policy decided: "none", "account", "soft-offline" */
    const char *result;         /* known at once, or set later by nt_ledger_frame_result */
    int err;                    /* positive errno of the result, 0 if none */
    int node;                   /* -1: unknown */
    int64_t memory_block;       /* -1: unknown */
};

/* Record events, all in one transaction (one fsync): the batch is
 * acknowledged as a whole or not at all. ids (may be NULL) gets each
 * event's id. */
int nt_ledger_add_events(struct nt_ledger *l, const struct nt_ledger_event *ev, size_t n, int64_t *ids);
int nt_ledger_add_event(struct nt_ledger *l, const struct nt_ledger_event *ev, int64_t *id);

/* The newest events first, at most limit (0 = all). Strings in ev are
 * valid during the call only. A non-zero return from cb stops the walk
 * and is returned. */
typedef int (*nt_ledger_event_cb)(int64_t id, const struct nt_ledger_event *ev, void *ud);
int nt_ledger_recent_events(struct nt_ledger *l, size_t limit, nt_ledger_event_cb cb, void *ud);

/* Events at or after since_usec that name a frame (addr_valid) whose state
 * is in mask (NT_FRAME_MASK bits; 0 = any), oldest first: what restarts the
 * ECC policy's leaky buckets. Read only. */
int nt_ledger_events_since(struct nt_ledger *l, uint64_t since_usec, unsigned mask,
                           nt_ledger_event_cb cb, void *ud);

/* ---- frames ---------------------------------------------------------- */

/* ok -> triggered -> offline_pending -> offlined | failed | already_offline,
 * and offline_pending -> triggered again for a retry (EBUSY). */
enum nt_frame_state {
    NT_FRAME_OK,                /* errors seen, below the threshold */
    NT_FRAME_TRIGGERED,         /* threshold crossed: wants (or waits to retry) an action */
    NT_FRAME_OFFLINE_PENDING,   /* intent committed, result not yet recorded */
    NT_FRAME_OFFLINED,          /* soft_offline_page succeeded */
    NT_FRAME_FAILED,            /* gave up (EIO, EINVAL, retries exhausted) */
    NT_FRAME_ALREADY_OFFLINE,   /* the kernel had it poisoned already */
    NT_FRAME_NR_STATES,
};
const char *nt_frame_state_to_string(enum nt_frame_state s);   /* "ok", "offline_pending", ... */
int nt_frame_state_from_string(const char *s);                   /* state or -EINVAL */
#define NT_FRAME_MASK(s) (1u << (s))

struct nt_ledger_frame {
    uint64_t pfn;
    enum nt_frame_state state;
    uint64_t count;             /* events with this frame's address, ever (pruning keeps it) */
    uint64_t first_usec, last_usec;     /* first and last event */
    unsigned attempts;          /* intents recorded */
    uint64_t next_retry_usec;   /* 0: none planned */
    int last_errno;             /* positive errno of the last result */
    int node;                   /* -1: unknown */
    int64_t memory_block;       /* -1: unknown */
    uint64_t updated_usec;      /* last state change */
    char last_result[NT_LEDGER_TEXT_MAX];
    char reason[NT_LEDGER_TEXT_MAX];    /* why it was triggered */
};

/* -ENOENT if the frame was never seen. */
int nt_ledger_frame_get(struct nt_ledger *l, uint64_t pfn, struct nt_ledger_frame *out);

/* The policy crossed the threshold: state -> triggered, with the reason.
 * Creates the frame if needed; -EALREADY while an intent is open. A frame
 * already offlined or failed is left alone (returns 0): the policy may say
 * it again on every new event. */
int nt_ledger_frame_trigger(struct nt_ledger *l, uint64_t pfn, const char *reason, uint64_t now);

/* Commit the intent to act on pfn (kind "soft_offline") BEFORE writing to
 * the kernel: state -> offline_pending, attempts + 1, and a pending action
 * linked to event_id (0: none). Allowed from any other state (offlined too:
 * that is the re-offline after a reboot). -EALREADY if an intent is already
 * open; -EINVAL if event_id names no event. */
int nt_ledger_frame_intent(struct nt_ledger *l, uint64_t pfn, int64_t event_id, uint64_t now,
                           int64_t *action_id);
/* The same, keeping detail_json (a JSON object, or NULL) with the intent;
 * numatierd puts its boot id there, which lets nt_ledger_check() tell a
 * re-offline after a reboot from acting on a frame twice. */
int nt_ledger_frame_intent_detail(struct nt_ledger *l, uint64_t pfn, int64_t event_id,
                                  const char *detail_json, uint64_t now, int64_t *action_id);

/* Record what the kernel answered, AFTER it answered, closing the open
 * intent: state is offlined, already_offline, failed, or triggered (retry
 * at next_retry_usec). err is the positive errno (0: success). Also sets
 * the result of the event linked to the intent, if it is still there.
 * -ENOENT: no such frame; -EINVAL: no open intent, or a bad state. */
int nt_ledger_frame_result(struct nt_ledger *l, uint64_t pfn, enum nt_frame_state state,
                           const char *result, int err, uint64_t next_retry_usec, uint64_t now);

/* Frames whose state is in mask (NT_FRAME_MASK bits; 0 = all), by pfn. */
typedef int (*nt_ledger_frame_cb)(const struct nt_ledger_frame *f, void *ud);
int nt_ledger_frames(struct nt_ledger *l, unsigned mask, nt_ledger_frame_cb cb, void *ud);
/* offlined and already_offline: what is offline now (this boot, or before
 * a reboot). */
int nt_ledger_frames_offlined(struct nt_ledger *l, nt_ledger_frame_cb cb, void *ud);
/* What to offline again after a reboot: the offlined frames above, and the
 * failed ones whose soft offline succeeded at least once before. */
int nt_ledger_frames_to_reoffline(struct nt_ledger *l, nt_ledger_frame_cb cb, void *ud);

/* ---- actions (intents) ----------------------------------------------- */

struct nt_ledger_action {
    int64_t id;
    const char *kind;           /* "soft_offline", ... */
    bool has_pfn;
    uint64_t pfn;
    int64_t event_id;           /* 0: none (or pruned) */
    uint64_t started_usec;
    const char *detail;         /* JSON text or NULL */
};

/* Actions begun but never ended: after a crash, each was perhaps done,
 * perhaps not. Re-check the system, then end them (for frames, with
 * nt_ledger_frame_result). Oldest first. */
typedef int (*nt_ledger_action_cb)(const struct nt_ledger_action *a, void *ud);
int nt_ledger_pending(struct nt_ledger *l, nt_ledger_action_cb cb, void *ud);

/* The generic form, for actions on things other than frames: begin
 * commits the intent; end closes it (ok: done, else failed). */
int nt_ledger_action_begin(struct nt_ledger *l, const char *kind, const char *detail_json,
                           uint64_t now, int64_t *id);
int nt_ledger_action_end(struct nt_ledger *l, int64_t id, bool ok, const char *result, int err,
                         uint64_t now);

/* ---- summaries, pruning, export -------------------------------------- */

struct nt_ledger_stats {
    uint64_t events;            /* rows now (after pruning) */
    uint64_t frames[NT_FRAME_NR_STATES];
    uint64_t pending_actions;
    uint64_t retries_planned;   /* triggered frames with a next_retry */
};
int nt_ledger_stats(struct nt_ledger *l, struct nt_ledger_stats *out);

/* Per (node, memory block) of the frames, ordered by node then block. */
struct nt_ledger_group {
    int node;                   /* -1: unknown */
    int64_t memory_block;       /* -1: unknown */
    uint64_t frames;
    uint64_t errors;            /* sum of the frames' counts */
    uint64_t by_state[NT_FRAME_NR_STATES];
};
typedef int (*nt_ledger_group_cb)(const struct nt_ledger_group *g, void *ud);
int nt_ledger_groups(struct nt_ledger *l, nt_ledger_group_cb cb, void *ud);

/* Delete events older than now - retention_usec (0: no age limit), then
 * the oldest beyond max_event_rows (0: no count limit), and finished
 * actions older than the retention, in one transaction. Frames and pending
 * actions are never deleted. Returns the number of events deleted, or
 * negative errno. */
int64_t nt_ledger_prune(struct nt_ledger *l, uint64_t retention_usec, uint64_t max_event_rows,
                        uint64_t now);

/* For `numatierctl ras --json`: {schema, stats, groups, offlined,
 * pending_retries, pending_actions, recent_events (newest max_events)}. */
int nt_ledger_to_json(struct nt_ledger *l, size_t max_events, struct json_object **out);

/* ---- integrity ------------------------------------------------------- */

/* Check the ledger: SQLite's PRAGMA integrity_check and foreign_key_check,
 * then the invariants the API promises:
 *   - a frame is offline_pending exactly when it has one open intent;
 *   - a frame has at most one successful soft_offline per boot (intents
 *     recorded with a "boot_id" in their detail; others are not compared);
 *   - every soft_offline action names a frame that exists;
 *   - a frame counts at least the events kept for its address, and at
 *     least as many attempts as actions kept for it;
 *   - a finished action has its finish time.
 * Each problem found is passed to cb as one sentence (at most a few per
 * kind); a non-zero return from cb stops the check and is returned. The
 * whole check reads one snapshot and writes nothing; it reads every row,
 * so it is for on-demand use, not every cycle. Returns the number of
 * problems found, or negative errno if the check could not run. */
struct nt_ledger_check_counts {
    uint64_t offlines_done;     /* successful soft_offline actions kept */
    uint64_t frames_offline;    /* frames offlined or already_offline */
};
typedef int (*nt_ledger_problem_cb)(const char *problem, void *ud);
int nt_ledger_check(struct nt_ledger *l, nt_ledger_problem_cb cb, void *ud,
                    struct nt_ledger_check_counts *counts);
