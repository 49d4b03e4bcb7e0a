/* ECC policy: corrected memory errors -> soft-offline the failing 4 KiB frame,
 * and escalate a memory block that keeps failing (policy/ecc.c, pure).
 *
 * Frame level, a leaky bucket per frame (pfn, 4 KiB):
 *   Each corrected error adds one unit (an EDAC event reporting n errors
 *   adds n); the bucket drains one unit per window W, linearly; a frame is
 *   over the threshold when its bucket holds more than T-1 units.
 *   Consequences, which the unit tests pin down:
 *     - T errors within less than W always put the frame over (the bucket
 *       drains less than one unit between the first and the T-th);
 *     - for T >= 2, errors at least W apart never do (each finds the bucket
 *       empty);
 *     - errors arriving steadily faster than one per W eventually do, even
 *       if no single window holds T of them: a frame that keeps failing for
 *       days is failing. For the default T = 2 this is exactly "2 in 24 h".
 *   The level is kept as an integer, level_usec = units x W, draining 1 per
 *   microsecond, so the math is exact and the state is two integers the
 *   ledger can store. The bucket is capped at T units, so after a storm a
 *   frame is over for at most W more.
 *   A draining rate of T per W (the obvious reading of "T per W") would let
 *   2 errors 1 h apart pass unnoticed; hence one unit per W.
 *
 * One action per frame: a frame over the threshold is soft-offlined once
 * (state PENDING until the outcome is known). Errors on a frame that is
 * pending, offlined, failed or poisoned are counted but never act again.
 *
 * Block level: when K distinct frames of one memory block (phys_addr /
 * block_size) have been over the threshold within the last W, the policy
 * proposes evacuating and offlining the block, once per block. Whether
 * anything acts on the proposal is the caller's business (block_action).
 * Only frames the frame level counts can cross, so escalation needs the
 * frame action to be account or soft.
 *
 * Not counted, only recorded (verdict IGNORE, with the reason): events with
 * an unusable address; events whose grain is coarser than a frame (e.g. an
 * MCE with MISC LSB 21: which of 512 frames failed is unknown, and
 * offlining all of them on one corrected error is out of proportion, so the
 * kernel refuses them too); uncorrected and deferred errors (the kernel's
 * memory_failure() owns them); non-DRAM errors (cache, TLB, bus).
 *
 * Time: now_usec is the event's wall-clock time (CLOCK_REALTIME, in us),
 * because frame states persist in the ledger across reboots and a monotonic
 * clock restarts at boot. A clock that steps back drains nothing. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "numatier/ras.h"

enum nt_ecc_action {
    NT_ECC_ACTION_OFF,          /* ignore the level entirely */
    NT_ECC_ACTION_ACCOUNT,      /* count and record, never act */
    NT_ECC_ACTION_SOFT,         /* frame: soft-offline it; block: propose block offline */
};

struct nt_ecc_params {
    uint32_t threshold;         /* T, 1..NT_ECC_MAX_THRESHOLD; default 2 */
    uint64_t window_usec;       /* W, 1 s..NT_ECC_MAX_WINDOW_USEC; default 24 h */
    enum nt_ecc_action frame_action;    /* default soft */
    enum nt_ecc_action block_action;    /* default account: the proposal is recorded, nothing acts */
    uint32_t block_frames;      /* K distinct frames over the threshold in one block; default 4 */
    uint64_t block_size;        /* bytes, a power of 2 >= 4 KiB (sysfs block_size_bytes); default 128 MiB */
    uint32_t retry_limit;       /* soft-offline attempts in all, >= 1; default 8 */
    uint64_t retry_base_usec;   /* delay after the first EBUSY, doubling; default 10 s */
    uint64_t retry_max_usec;    /* delay cap; default 10 min */
};

#define NT_ECC_MAX_THRESHOLD   1000
#define NT_ECC_MAX_WINDOW_USEC (UINT64_C(366) * 24 * 3600 * 1000000)

void nt_ecc_params_default(struct nt_ecc_params *p);
/* 0, or -EINVAL with *why (static string) naming the bad field. */
int nt_ecc_params_check(const struct nt_ecc_params *p, const char **why);

enum nt_ecc_frame_state {
    NT_ECC_FRAME_OK,            /* counting */
    NT_ECC_FRAME_ACCOUNTED,     /* went over while the frame action was account */
    NT_ECC_FRAME_PENDING,       /* soft offline decided, not done yet (or retrying) */
    NT_ECC_FRAME_OFFLINED,      /* soft-offlined, or found already offline */
    NT_ECC_FRAME_FAILED,        /* soft offline failed for good; the outcome says why */
    NT_ECC_FRAME_POISONED,      /* the kernel poisoned it itself (memory_failure) */
};

/* What the policy remembers about one frame; the caller keeps it (and the
 * ledger persists it). nt_ecc_frame_init() for a frame seen the first time. */
struct nt_ecc_frame {
    uint64_t pfn;
    uint64_t level_usec;        /* bucket: W per error, drains 1 per us; over when > (T-1) x W */
    uint64_t last_usec;         /* when level_usec was last brought up to date */
    uint64_t over_usec;         /* last error that found it over the threshold; 0 never */
    uint64_t errors;            /* errors counted, ever */
    enum nt_ecc_frame_state state;
    uint32_t attempts;          /* soft-offline attempts made */
    uint64_t next_try_usec;     /* PENDING: when to try (again); UINT64_MAX: not scheduled */
    bool reoffline;             /* offlined again after a reboot: EIO is retried like EBUSY */
};

enum nt_ecc_block_state {
    NT_ECC_BLOCK_OK,
    NT_ECC_BLOCK_ACCOUNTED,     /* escalation recorded while block action was account */
    NT_ECC_BLOCK_PROPOSED,      /* block offline proposed (block action soft) */
};

struct nt_ecc_block {
    uint64_t block;             /* memory block number: phys_addr / block_size */
    enum nt_ecc_block_state state;
    uint64_t since_usec;        /* when state was last set */
};

enum nt_ecc_verdict {
    NT_ECC_IGNORE,              /* not counted: why says why */
    NT_ECC_ACCOUNT,             /* counted, nothing to do */
    NT_ECC_SOFT_OFFLINE,        /* write frame_addr to soft_offline_page */
};

enum nt_ecc_block_verdict {
    NT_ECC_BLOCK_NONE,
    NT_ECC_BLOCK_ACCOUNT,       /* K frames reached: record the proposal only */
    NT_ECC_BLOCK_OFFLINE,       /* K frames reached: evacuate and offline the block */
};

struct nt_ecc_decision {
    enum nt_ecc_verdict verdict;
    uint64_t pfn, frame_addr;   /* frame_addr = pfn << 12, what soft_offline_page takes */
    bool over;                  /* the frame is over the threshold after this event */
    double level;               /* bucket level after this event, in errors */
    uint32_t threshold;         /* T */
    uint64_t window_usec;       /* W */
    enum nt_ecc_block_verdict block_verdict;
    uint64_t block;             /* valid when the event named a frame */
    uint32_t block_over;        /* distinct frames of the block over within W (counted when this frame is over) */
    uint32_t block_need;        /* K */
    char why[224];
};

void nt_ecc_frame_init(struct nt_ecc_frame *f, uint64_t pfn);
void nt_ecc_block_init(struct nt_ecc_block *b, uint64_t block);

/* The frame an event is about, when it names exactly one the policy can
 * track: a usable address with a grain of at most 4 KiB. */
bool nt_ecc_event_pfn(const struct nt_ras_event *ev, uint64_t *pfn);
/* The memory block of a frame. */
uint64_t nt_ecc_block_of(const struct nt_ecc_params *p, uint64_t pfn);

/* Decide about one event at now_usec, updating *frame and *block.
 *   frame: the state of the frame nt_ecc_event_pfn() names (pfn must
 *          match), or NULL when it names none.
 *   block: that frame's block state (block must match), or NULL: no
 *          escalation.
 *   peers: the other frames the caller tracks in the same block (frame
 *          itself and frames of other blocks are skipped), for escalation;
 *          NULL when n_peers is 0. Read only.
 * Returns 0, or -EINVAL on bad params or a frame/block that does not match
 * the event (nothing is updated then). */
int nt_ecc_decide(const struct nt_ecc_params *p, const struct nt_ras_event *ev,
                  struct nt_ecc_frame *frame, struct nt_ecc_block *block,
                  const struct nt_ecc_frame *const *peers, size_t n_peers,
                  uint64_t now_usec, struct nt_ecc_decision *d);

/* The bucket level (in errors) of a frame at now, without an event. */
double nt_ecc_frame_level(const struct nt_ecc_params *p, const struct nt_ecc_frame *f, uint64_t now_usec);

/* ---- acting on a soft-offline decision ---------------------------------- */

/* Backoff after attempt n (1-based) ended in EBUSY: the next try is at
 * now + min(base x 2^(n-1), max). False once n attempts reach retry_limit. */
bool nt_ecc_retry_at(const struct nt_ecc_params *p, uint32_t attempt, uint64_t now_usec,
                     uint64_t *at_usec);

/* A PENDING frame whose next try is due. */
bool nt_ecc_frame_due(const struct nt_ecc_frame *f, uint64_t now_usec);

enum nt_ecc_outcome_class {
    NT_ECC_DONE,                /* offline (now or before) */
    NT_ECC_RETRY,               /* busy: try again at retry_at_usec */
    NT_ECC_GIVE_UP,             /* this frame failed for good */
    NT_ECC_FATAL,               /* the actuator cannot work at all (EPERM, no sysfs file):
                                   the frame stays PENDING, unscheduled */
};

struct nt_ecc_outcome {
    enum nt_ecc_outcome_class cls;
    enum nt_ecc_frame_state state;      /* the frame's new state */
    uint64_t retry_at_usec;             /* NT_ECC_RETRY */
    char why[96];
};

/* Classify the result of writing the frame's address to soft_offline_page
 * (err: 0 or -errno) and update the frame (attempts, state, next try).
 * EIO is final for a frame offlined the first time (the kernel cannot move
 * what holds it), but not for a re-offline after a reboot: the frame then
 * holds whatever the new boot put there, often unmovable only for a while
 * (a page being allocated, freed or migrated), and a frame known to fail
 * must not go back into use for that; so it is retried like EBUSY.
 * already_poisoned: the frame was poisoned before the write (the kernel
 * answers 0 then, and nothing was migrated). */
void nt_ecc_outcome(const struct nt_ecc_params *p, struct nt_ecc_frame *f, int err,
                    bool already_poisoned, uint64_t now_usec, struct nt_ecc_outcome *out);

/* Names: "off" "account" "soft"; "ok" "accounted" "pending" "offlined"
 * "failed" "poisoned"; "ok" "accounted" "proposed"; "ignore" "account"
 * "soft-offline"; "none" "account" "offline"; "done" "retry" "give-up"
 * "fatal". "?" for a value out of range. */
const char *nt_ecc_action_name(enum nt_ecc_action a);
const char *nt_ecc_frame_state_name(enum nt_ecc_frame_state s);
const char *nt_ecc_block_state_name(enum nt_ecc_block_state s);
const char *nt_ecc_verdict_name(enum nt_ecc_verdict v);
const char *nt_ecc_block_verdict_name(enum nt_ecc_block_verdict v);
const char *nt_ecc_outcome_class_name(enum nt_ecc_outcome_class c);
/* Parse back (exact, case-sensitive): 0 or -EINVAL. */
int nt_ecc_action_parse(const char *s, enum nt_ecc_action *a);
int nt_ecc_frame_state_parse(const char *s, enum nt_ecc_frame_state *st);
int nt_ecc_block_state_parse(const char *s, enum nt_ecc_block_state *st);
