/* ECC policy: the leaky bucket, one action per frame, block escalation,
 * action levels, retry backoff and outcome classification; fixed clock. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "numatier/ecc.h"
#include "numatier/ras.h"

#define SEC   UINT64_C(1000000)
#define HOUR  (3600 * SEC)
#define DAY   (24 * HOUR)
#define T0    UINT64_C(1700000000000000)        /* wall clock, us */
#define BLOCK (UINT64_C(128) << 20)
#define FRAMES_PER_BLOCK (BLOCK >> 12)

static void assert_contains(const char *s, const char *sub)
{
    if (!strstr(s, sub))
        fail_msg("\"%s\" does not contain \"%s\"", s, sub);
}

/* A corrected DRAM error at phys, known to 64 bytes. */
static struct nt_ras_event ce(uint64_t phys)
{
    struct nt_ras_event ev = {
        .source = NT_RAS_EDAC, .severity = NT_RAS_SEV_CORRECTED, .corrected = true,
        .count = 1, .addr_valid = true, .phys_addr = phys, .grain_bytes = 64,
        .memory_error = true, .cpu = -1, .socket = -1, .bank = -1, .node = -1,
    };
    return ev;
}

static struct nt_ecc_params params(void)
{
    struct nt_ecc_params p;
    nt_ecc_params_default(&p);
    return p;
}

/* One tracked frame with its block, as the caller keeps them. */
struct frame_ctx {
    struct nt_ecc_frame f;
    struct nt_ecc_block b;
};

static void ctx_init(struct frame_ctx *c, const struct nt_ecc_params *p, uint64_t phys)
{
    nt_ecc_frame_init(&c->f, phys >> 12);
    nt_ecc_block_init(&c->b, nt_ecc_block_of(p, phys >> 12));
}

static struct nt_ecc_decision hit(const struct nt_ecc_params *p, struct frame_ctx *c, uint64_t now)
{
    struct nt_ras_event ev = ce((c->f.pfn << 12) + 0x40);
    struct nt_ecc_decision d;
    assert_int_equal(nt_ecc_decide(p, &ev, &c->f, &c->b, NULL, 0, now, &d), 0);
    return d;
}

static void test_params(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    const char *why = "x";
    assert_int_equal(p.threshold, 2);
    assert_int_equal(p.window_usec, DAY);
    assert_int_equal(p.frame_action, NT_ECC_ACTION_SOFT);
    assert_int_equal(p.block_action, NT_ECC_ACTION_ACCOUNT);
    assert_int_equal(nt_ecc_params_check(&p, &why), 0);
    assert_null(why);

    struct nt_ecc_params bad = p;
    bad.threshold = 0;
    assert_int_equal(nt_ecc_params_check(&bad, &why), -EINVAL);
    assert_contains(why, "threshold");
    bad = p;
    bad.window_usec = 0;
    assert_int_equal(nt_ecc_params_check(&bad, &why), -EINVAL);
    bad = p;
    bad.block_size = 3 << 20;
    assert_int_equal(nt_ecc_params_check(&bad, &why), -EINVAL);
    assert_contains(why, "block_size");
    bad = p;
    bad.frame_action = (enum nt_ecc_action)9;
    assert_int_equal(nt_ecc_params_check(&bad, NULL), -EINVAL);

    /* Bad params: nothing decided, nothing touched. */
    struct frame_ctx c;
    ctx_init(&c, &p, 0x50000000);
    struct nt_ras_event ev = ce(0x50000000);
    struct nt_ecc_decision d;
    bad = p;
    bad.threshold = 0;
    assert_int_equal(nt_ecc_decide(&bad, &ev, &c.f, &c.b, NULL, 0, T0, &d), -EINVAL);
    assert_int_equal(c.f.errors, 0);
}

/* Default 2 per 24 h: the first error accounts, the second within the day
 * soft-offlines the frame. */
static void test_below_at_threshold(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    struct frame_ctx c;
    ctx_init(&c, &p, 0x50000000);

    struct nt_ecc_decision d = hit(&p, &c, T0);
    assert_int_equal(d.verdict, NT_ECC_ACCOUNT);
    assert_false(d.over);
    assert_true(d.level == 1.0);
    assert_int_equal(d.threshold, 2);
    assert_int_equal(d.window_usec, DAY);
    assert_int_equal(d.pfn, 0x50000);
    assert_int_equal(c.f.state, NT_ECC_FRAME_OK);
    assert_contains(d.why, "level 1.00 <= 1 (threshold 2 per 24h)");

    d = hit(&p, &c, T0 + 6 * HOUR);
    assert_int_equal(d.verdict, NT_ECC_SOFT_OFFLINE);
    assert_true(d.over);
    assert_true(d.level == 1.75);
    assert_int_equal(d.frame_addr, 0x50000000);
    assert_int_equal(c.f.state, NT_ECC_FRAME_PENDING);
    assert_int_equal(c.f.errors, 2);
    assert_int_equal(c.f.over_usec, T0 + 6 * HOUR);
    assert_true(nt_ecc_frame_due(&c.f, T0 + 6 * HOUR));
    assert_contains(d.why, "soft-offline: level 1.75 > 1");
}

/* T = 3: two errors are below, the third within W crosses, a fourth is
 * above but acts no more. */
static void test_above_threshold(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    p.threshold = 3;
    struct frame_ctx c;
    ctx_init(&c, &p, 0x50000000);
    assert_int_equal(hit(&p, &c, T0).verdict, NT_ECC_ACCOUNT);
    assert_int_equal(hit(&p, &c, T0 + 10 * HOUR).verdict, NT_ECC_ACCOUNT);
    struct nt_ecc_decision d = hit(&p, &c, T0 + 20 * HOUR);
    assert_int_equal(d.verdict, NT_ECC_SOFT_OFFLINE);
    d = hit(&p, &c, T0 + 21 * HOUR);
    assert_int_equal(d.verdict, NT_ECC_ACCOUNT);
    assert_true(d.over);
    assert_contains(d.why, "frame already pending");
    /* The bucket is capped at T units. */
    assert_true(nt_ecc_frame_level(&p, &c.f, T0 + 21 * HOUR) <= 3.0);
}

/* T errors within just under W always cross; exactly W apart never. */
static void test_window_edges(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    struct frame_ctx c;
    ctx_init(&c, &p, 0x50000000);
    uint64_t t = T0;
    for (int i = 0; i < 20; i++, t += DAY) {
        struct nt_ecc_decision d = hit(&p, &c, t);
        assert_int_equal(d.verdict, NT_ECC_ACCOUNT);
        assert_true(d.level == 1.0);
    }
    assert_int_equal(c.f.over_usec, 0);
    struct nt_ecc_decision d = hit(&p, &c, t - DAY + DAY - 1);   /* 1 us inside the window */
    assert_int_equal(d.verdict, NT_ECC_SOFT_OFFLINE);

    /* T = 4, spread evenly over just under W. */
    p.threshold = 4;
    ctx_init(&c, &p, 0x60000000);
    for (int i = 0; i < 3; i++)
        assert_int_equal(hit(&p, &c, T0 + (uint64_t)i * (DAY / 3)).verdict, NT_ECC_ACCOUNT);
    assert_int_equal(hit(&p, &c, T0 + DAY - 1).verdict, NT_ECC_SOFT_OFFLINE);
}

/* Errors that leak away: spread beyond the window they never trigger. */
static void test_leak_over_time(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    p.threshold = 3;
    struct frame_ctx c;
    ctx_init(&c, &p, 0x50000000);
    /* Pairs 1 h apart, pairs 2 days apart: never 3 within a day. */
    for (int i = 0; i < 10; i++) {
        uint64_t t = T0 + (uint64_t)i * 2 * DAY;
        assert_int_equal(hit(&p, &c, t).verdict, NT_ECC_ACCOUNT);
        struct nt_ecc_decision d = hit(&p, &c, t + HOUR);
        assert_int_equal(d.verdict, NT_ECC_ACCOUNT);
        assert_false(d.over);
    }
    assert_int_equal(c.f.errors, 20);
    double level = nt_ecc_frame_level(&p, &c.f, T0 + 18 * DAY + HOUR);
    assert_true(level > 2.0 - 1.0 / 24 - 1e-12 && level < 2.0 - 1.0 / 24 + 1e-12);
    assert_true(nt_ecc_frame_level(&p, &c.f, T0 + 30 * DAY) == 0.0);
}

/* A frame that keeps failing faster than once per W gets there, even when
 * no single window holds T errors (documented in ecc.h). */
static void test_sustained_rate(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    p.threshold = 3;
    struct frame_ctx c;
    ctx_init(&c, &p, 0x50000000);
    assert_int_equal(hit(&p, &c, T0).verdict, NT_ECC_ACCOUNT);             /* 1.0 */
    assert_int_equal(hit(&p, &c, T0 + DAY / 2 + 1).verdict, NT_ECC_ACCOUNT);    /* 1.5 */
    assert_int_equal(hit(&p, &c, T0 + DAY + 2).verdict, NT_ECC_ACCOUNT);        /* 2.0 */
    assert_int_equal(hit(&p, &c, T0 + 3 * DAY / 2 + 3).verdict, NT_ECC_SOFT_OFFLINE); /* 2.5 */
}

static void test_clock_backwards(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    struct frame_ctx c;
    ctx_init(&c, &p, 0x50000000);
    hit(&p, &c, T0 + DAY);
    struct nt_ecc_decision d = hit(&p, &c, T0);   /* earlier: drains nothing */
    assert_int_equal(d.verdict, NT_ECC_SOFT_OFFLINE);
    assert_int_equal(c.f.last_usec, T0 + DAY);
}

/* An EDAC event reporting several errors adds them all. */
static void test_multi_error_event(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    struct frame_ctx c;
    ctx_init(&c, &p, 0x50000000);
    struct nt_ras_event ev = ce(0x50000000);
    ev.count = 5000;
    struct nt_ecc_decision d;
    assert_int_equal(nt_ecc_decide(&p, &ev, &c.f, &c.b, NULL, 0, T0, &d), 0);
    assert_int_equal(d.verdict, NT_ECC_SOFT_OFFLINE);
    assert_true(d.level == 2.0);            /* capped at T */
    assert_int_equal(c.f.errors, 5000);
}

/* One action per frame, whatever its state after the first. */
static void test_one_trigger_per_frame(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    static const enum nt_ecc_frame_state done[] = {
        NT_ECC_FRAME_PENDING, NT_ECC_FRAME_OFFLINED, NT_ECC_FRAME_FAILED, NT_ECC_FRAME_POISONED,
    };
    for (size_t i = 0; i < sizeof(done) / sizeof(done[0]); i++) {
        struct frame_ctx c;
        ctx_init(&c, &p, 0x50000000);
        c.f.state = done[i];
        for (int k = 0; k < 5; k++) {
            struct nt_ecc_decision d = hit(&p, &c, T0 + (uint64_t)k * SEC);
            assert_int_equal(d.verdict, NT_ECC_ACCOUNT);
            assert_contains(d.why, "frame already");
            assert_contains(d.why, nt_ecc_frame_state_name(done[i]));
        }
        assert_int_equal(c.f.state, done[i]);
        assert_int_equal(c.f.errors, 5);
    }

    /* The full path: decide, offline, more errors (patrol scrub). */
    struct frame_ctx c;
    ctx_init(&c, &p, 0x50000000);
    hit(&p, &c, T0);
    assert_int_equal(hit(&p, &c, T0 + SEC).verdict, NT_ECC_SOFT_OFFLINE);
    struct nt_ecc_outcome o;
    nt_ecc_outcome(&p, &c.f, 0, false, T0 + 2 * SEC, &o);
    assert_int_equal(c.f.state, NT_ECC_FRAME_OFFLINED);
    assert_int_equal(hit(&p, &c, T0 + 3 * SEC).verdict, NT_ECC_ACCOUNT);
    assert_int_equal(hit(&p, &c, T0 + 4 * SEC).verdict, NT_ECC_ACCOUNT);
}

/* ---- escalation --------------------------------------------------------- */

/* Push frame c over the threshold at t. */
static struct nt_ecc_decision cross(const struct nt_ecc_params *p, struct nt_ecc_frame *f,
                                    struct nt_ecc_block *b, const struct nt_ecc_frame *const *peers,
                                    size_t n, uint64_t t)
{
    struct nt_ras_event ev = ce(f->pfn << 12);
    struct nt_ecc_decision d;
    assert_int_equal(nt_ecc_decide(p, &ev, f, b, peers, n, t, &d), 0);
    assert_int_equal(nt_ecc_decide(p, &ev, f, b, peers, n, t + SEC, &d), 0);
    assert_true(d.over);
    return d;
}

static void test_escalation_in_one_block(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    p.block_frames = 3;
    p.block_action = NT_ECC_ACTION_SOFT;
    uint64_t base = 2 * FRAMES_PER_BLOCK;       /* block 2 */
    struct nt_ecc_frame f[4];
    const struct nt_ecc_frame *peers[4];
    struct nt_ecc_block b;
    nt_ecc_block_init(&b, 2);
    for (int i = 0; i < 4; i++) {
        nt_ecc_frame_init(&f[i], base + 17 * (uint64_t)i);
        peers[i] = &f[i];
    }
    struct nt_ecc_decision d = cross(&p, &f[0], &b, peers, 4, T0);
    assert_int_equal(d.block_verdict, NT_ECC_BLOCK_NONE);
    assert_int_equal(d.block_over, 1);
    assert_int_equal(d.block_need, 3);
    assert_int_equal(d.block, 2);
    d = cross(&p, &f[1], &b, peers, 4, T0 + HOUR);
    assert_int_equal(d.block_verdict, NT_ECC_BLOCK_NONE);
    assert_int_equal(d.block_over, 2);
    d = cross(&p, &f[2], &b, peers, 4, T0 + 2 * HOUR);
    assert_int_equal(d.verdict, NT_ECC_SOFT_OFFLINE);   /* the frame still goes */
    assert_int_equal(d.block_verdict, NT_ECC_BLOCK_OFFLINE);
    assert_int_equal(d.block_over, 3);
    assert_int_equal(b.state, NT_ECC_BLOCK_PROPOSED);
    assert_int_equal(b.since_usec, T0 + 2 * HOUR + SEC);
    assert_contains(d.why, "block 2: 3 frames over");
    /* Once per block. */
    d = cross(&p, &f[3], &b, peers, 4, T0 + 3 * HOUR);
    assert_int_equal(d.block_over, 4);
    assert_int_equal(d.block_verdict, NT_ECC_BLOCK_NONE);
}

static void test_escalation_not_across_blocks(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    p.block_frames = 3;
    p.block_action = NT_ECC_ACTION_SOFT;
    struct nt_ecc_frame f[3];
    const struct nt_ecc_frame *peers[3] = { &f[0], &f[1], &f[2] };
    nt_ecc_frame_init(&f[0], 2 * FRAMES_PER_BLOCK + 1);     /* block 2 */
    nt_ecc_frame_init(&f[1], 3 * FRAMES_PER_BLOCK);         /* block 3 */
    nt_ecc_frame_init(&f[2], 2 * FRAMES_PER_BLOCK + 5);     /* block 2 */
    struct nt_ecc_block b2, b3;
    nt_ecc_block_init(&b2, 2);
    nt_ecc_block_init(&b3, 3);
    cross(&p, &f[0], &b2, peers, 3, T0);
    struct nt_ecc_decision d = cross(&p, &f[1], &b3, peers, 3, T0 + SEC * 10);
    assert_int_equal(d.block_over, 1);
    d = cross(&p, &f[2], &b2, peers, 3, T0 + SEC * 20);     /* peers include block 3's frame */
    assert_int_equal(d.block_over, 2);
    assert_int_equal(d.block_verdict, NT_ECC_BLOCK_NONE);
    assert_int_equal(b2.state, NT_ECC_BLOCK_OK);
}

/* Frames that went over more than W ago no longer count. */
static void test_escalation_window(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    p.block_frames = 2;
    p.block_action = NT_ECC_ACTION_SOFT;
    struct nt_ecc_frame f[2];
    const struct nt_ecc_frame *peers[2] = { &f[0], &f[1] };
    nt_ecc_frame_init(&f[0], 100);
    nt_ecc_frame_init(&f[1], 200);
    struct nt_ecc_block b;
    nt_ecc_block_init(&b, 0);
    cross(&p, &f[0], &b, peers, 2, T0);
    struct nt_ecc_decision d = cross(&p, &f[1], &b, peers, 2, T0 + 2 * DAY);
    assert_int_equal(d.block_over, 1);
    assert_int_equal(d.block_verdict, NT_ECC_BLOCK_NONE);
}

static void test_escalation_levels(void **state)
{
    (void)state;
    static const struct {
        enum nt_ecc_action action;
        enum nt_ecc_block_verdict verdict;
        enum nt_ecc_block_state st;
    } cases[] = {
        { NT_ECC_ACTION_OFF, NT_ECC_BLOCK_NONE, NT_ECC_BLOCK_OK },
        { NT_ECC_ACTION_ACCOUNT, NT_ECC_BLOCK_ACCOUNT, NT_ECC_BLOCK_ACCOUNTED },
        { NT_ECC_ACTION_SOFT, NT_ECC_BLOCK_OFFLINE, NT_ECC_BLOCK_PROPOSED },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct nt_ecc_params p = params();
        p.block_frames = 2;
        p.block_action = cases[i].action;
        struct nt_ecc_frame f[2];
        const struct nt_ecc_frame *peers[2] = { &f[0], &f[1] };
        nt_ecc_frame_init(&f[0], 100);
        nt_ecc_frame_init(&f[1], 200);
        struct nt_ecc_block b;
        nt_ecc_block_init(&b, 0);
        cross(&p, &f[0], &b, peers, 2, T0);
        struct nt_ecc_decision d = cross(&p, &f[1], &b, peers, 2, T0 + HOUR);
        assert_int_equal(d.block_verdict, cases[i].verdict);
        assert_int_equal(b.state, cases[i].st);
        if (cases[i].action == NT_ECC_ACTION_ACCOUNT)
            assert_contains(d.why, "not acted on");
    }

    /* An accounted block is still offlined once the block action becomes soft. */
    struct nt_ecc_params p = params();
    p.block_frames = 1;
    struct nt_ecc_frame f;
    nt_ecc_frame_init(&f, 100);
    struct nt_ecc_block b;
    nt_ecc_block_init(&b, 0);
    assert_int_equal(cross(&p, &f, &b, NULL, 0, T0).block_verdict, NT_ECC_BLOCK_ACCOUNT);
    p.block_action = NT_ECC_ACTION_SOFT;
    struct nt_ras_event ev = ce(100 << 12);
    struct nt_ecc_decision d;
    nt_ecc_decide(&p, &ev, &f, &b, NULL, 0, T0 + HOUR, &d);
    assert_int_equal(d.block_verdict, NT_ECC_BLOCK_OFFLINE);
}

/* ---- action levels ------------------------------------------------------ */

static void test_frame_action_levels(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    struct frame_ctx c;

    p.frame_action = NT_ECC_ACTION_OFF;
    ctx_init(&c, &p, 0x50000000);
    for (int i = 0; i < 3; i++) {
        struct nt_ecc_decision d = hit(&p, &c, T0 + (uint64_t)i);
        assert_int_equal(d.verdict, NT_ECC_IGNORE);
        assert_contains(d.why, "frame action off");
    }
    assert_int_equal(c.f.errors, 0);

    p.frame_action = NT_ECC_ACTION_ACCOUNT;
    ctx_init(&c, &p, 0x50000000);
    hit(&p, &c, T0);
    struct nt_ecc_decision d = hit(&p, &c, T0 + SEC);
    assert_int_equal(d.verdict, NT_ECC_ACCOUNT);
    assert_true(d.over);
    assert_contains(d.why, "frame action account");
    assert_int_equal(c.f.state, NT_ECC_FRAME_ACCOUNTED);
    assert_int_equal(hit(&p, &c, T0 + 2 * SEC).verdict, NT_ECC_ACCOUNT);

    /* Switched to soft (a reload): the frame still over acts now. */
    p.frame_action = NT_ECC_ACTION_SOFT;
    assert_int_equal(hit(&p, &c, T0 + 3 * SEC).verdict, NT_ECC_SOFT_OFFLINE);
}

/* ---- what is never counted ---------------------------------------------- */

static void expect_ignored(const struct nt_ras_event *ev, const char *why)
{
    struct nt_ecc_params p = params();
    struct nt_ecc_frame f, *fp = NULL;
    uint64_t pfn;
    if (nt_ecc_event_pfn(ev, &pfn)) {
        nt_ecc_frame_init(&f, pfn);
        fp = &f;
    }
    for (int i = 0; i < 4; i++) {
        struct nt_ecc_decision d;
        assert_int_equal(nt_ecc_decide(&p, ev, fp, NULL, NULL, 0, T0 + (uint64_t)i, &d), 0);
        assert_int_equal(d.verdict, NT_ECC_IGNORE);
        assert_contains(d.why, why);
    }
    if (fp)
        assert_int_equal(fp->errors, 0);
}

static void test_unusable_never_triggers(void **state)
{
    (void)state;
    struct nt_mce_record r = {
        .status = UINT64_C(0x980000000000009f),     /* ADDRV clear */
        .misc = 0x8c, .addr = 0x50000000, .bank = 8,
    };
    struct nt_ras_event ev;
    nt_mce_decode(&r, T0, &ev);
    uint64_t pfn;
    assert_false(nt_ecc_event_pfn(&ev, &pfn));
    expect_ignored(&ev, "ADDRV clear");

    r.status = UINT64_C(0x9c0000000000009f);
    r.misc = 0x4c;                                  /* linear */
    nt_mce_decode(&r, T0, &ev);
    expect_ignored(&ev, "not physical");

    r.misc = 0x80 | 21;                             /* 2 MiB grain */
    nt_mce_decode(&r, T0, &ev);
    assert_true(nt_ras_event_usable(&ev));
    assert_false(nt_ecc_event_pfn(&ev, &pfn));
    expect_ignored(&ev, "coarser than a 4K frame");

    struct nt_edac_record er = { .error_type = 0, .grain_bits = 12 };   /* no address */
    nt_edac_decode(&er, T0, &ev);
    expect_ignored(&ev, "no address");
}

static void test_not_counted_kinds(void **state)
{
    (void)state;
    struct nt_ras_event ev = ce(0x50000000);
    ev.corrected = false;
    ev.severity = NT_RAS_SEV_UNCORRECTED;
    expect_ignored(&ev, "uncorrected error: the kernel's memory_failure handles it");
    ev.severity = NT_RAS_SEV_DEFERRED;
    expect_ignored(&ev, "deferred");

    ev = ce(0x50000000);
    ev.memory_error = false;                        /* e.g. a cache error */
    expect_ignored(&ev, "not a DRAM error");
}

/* memory_failure: the kernel poisoned the frame; remember, never act. */
static void test_memory_failure_poisons(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    struct frame_ctx c;
    ctx_init(&c, &p, 0x50000000);
    hit(&p, &c, T0);
    struct nt_memfail_record r = { .pfn = 0x50000, .result = NT_MF_RECOVERED };
    struct nt_ras_event ev;
    nt_memfail_decode(&r, T0 + SEC, &ev);
    struct nt_ecc_decision d;
    assert_int_equal(nt_ecc_decide(&p, &ev, &c.f, &c.b, NULL, 0, T0 + SEC, &d), 0);
    assert_int_equal(d.verdict, NT_ECC_IGNORE);
    assert_contains(d.why, "memory_failure: Recovered");
    assert_int_equal(c.f.state, NT_ECC_FRAME_POISONED);
    assert_int_equal(hit(&p, &c, T0 + 2 * SEC).verdict, NT_ECC_ACCOUNT);
}

static void test_state_mismatch(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    struct frame_ctx c;
    ctx_init(&c, &p, 0x60000000);
    struct nt_ras_event ev = ce(0x50000000);
    struct nt_ecc_decision d;
    assert_int_equal(nt_ecc_decide(&p, &ev, &c.f, NULL, NULL, 0, T0, &d), -EINVAL);
    assert_int_equal(nt_ecc_decide(&p, &ev, NULL, NULL, NULL, 0, T0, &d), -EINVAL);
    ctx_init(&c, &p, 0x50000000);
    c.b.block = 7;
    assert_int_equal(nt_ecc_decide(&p, &ev, &c.f, &c.b, NULL, 0, T0, &d), -EINVAL);
    assert_int_equal(c.f.errors, 0);
}

/* The scenario end to end: QEMU's injection, decoded, twice. */
static void test_scenario_mce(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    struct nt_mce_record r = {
        .status = UINT64_C(0x9c0000000000009f), .misc = 0x8c, .addr = 0x50000000, .bank = 8,
    };
    struct nt_ras_event ev;
    nt_mce_decode(&r, T0, &ev);
    uint64_t pfn;
    assert_true(nt_ecc_event_pfn(&ev, &pfn));
    struct frame_ctx c;
    ctx_init(&c, &p, pfn << 12);
    struct nt_ecc_decision d;
    nt_ecc_decide(&p, &ev, &c.f, &c.b, NULL, 0, T0, &d);
    assert_int_equal(d.verdict, NT_ECC_ACCOUNT);
    nt_ecc_decide(&p, &ev, &c.f, &c.b, NULL, 0, T0 + 5 * SEC, &d);
    assert_int_equal(d.verdict, NT_ECC_SOFT_OFFLINE);
    assert_int_equal(d.frame_addr, 0x50000000);
    assert_int_equal(d.block, 0x50000000 / BLOCK);
}

/* ---- retry and outcomes ------------------------------------------------- */

static void test_retry_backoff(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();        /* 10 s doubling, cap 10 min, 8 attempts */
    static const uint64_t want[] = { 10, 20, 40, 80, 160, 320, 600 };
    uint64_t at;
    for (uint32_t n = 1; n <= 7; n++) {
        assert_true(nt_ecc_retry_at(&p, n, T0, &at));
        assert_int_equal(at - T0, want[n - 1] * SEC);
    }
    assert_false(nt_ecc_retry_at(&p, 8, T0, &at));
    assert_false(nt_ecc_retry_at(&p, 9, T0, &at));

    p.retry_limit = 1000;                      /* huge n: no shift overflow */
    assert_true(nt_ecc_retry_at(&p, 999, T0, &at));
    assert_int_equal(at - T0, 600 * SEC);
    assert_true(nt_ecc_retry_at(&p, 5, UINT64_MAX - 1, &at));
    assert_int_equal(at, UINT64_MAX);
}

static struct nt_ecc_frame pending_frame(void)
{
    struct nt_ecc_frame f;
    nt_ecc_frame_init(&f, 0x50000);
    f.state = NT_ECC_FRAME_PENDING;
    f.next_try_usec = T0;
    return f;
}

static void test_outcome_busy_until_limit(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    p.retry_limit = 3;
    struct nt_ecc_frame f = pending_frame();
    struct nt_ecc_outcome o;
    uint64_t now = T0;
    assert_true(nt_ecc_frame_due(&f, now));

    nt_ecc_outcome(&p, &f, -EBUSY, false, now, &o);
    assert_int_equal(o.cls, NT_ECC_RETRY);
    assert_int_equal(o.state, NT_ECC_FRAME_PENDING);
    assert_int_equal(o.retry_at_usec, now + 10 * SEC);
    assert_int_equal(f.next_try_usec, now + 10 * SEC);
    assert_int_equal(f.attempts, 1);
    assert_false(nt_ecc_frame_due(&f, now + 10 * SEC - 1));
    assert_true(nt_ecc_frame_due(&f, now + 10 * SEC));
    assert_string_equal(o.why, "EBUSY: retry 1 of 2");

    now += 10 * SEC;
    nt_ecc_outcome(&p, &f, -EBUSY, false, now, &o);
    assert_int_equal(o.cls, NT_ECC_RETRY);
    assert_int_equal(o.retry_at_usec, now + 20 * SEC);

    now += 20 * SEC;
    nt_ecc_outcome(&p, &f, -EBUSY, false, now, &o);
    assert_int_equal(o.cls, NT_ECC_GIVE_UP);
    assert_int_equal(f.state, NT_ECC_FRAME_FAILED);
    assert_string_equal(o.why, "EBUSY: still busy after 3 attempts");
    assert_false(nt_ecc_frame_due(&f, UINT64_MAX));
}

/* After a reboot the frame's new occupant may be unmovable for a while:
 * EIO is retried then, and only then. */
static void test_outcome_reoffline_retries_eio(void **state)
{
    (void)state;
    struct nt_ecc_params p = params();
    p.retry_limit = 2;
    struct nt_ecc_frame f = pending_frame();
    struct nt_ecc_outcome o;
    f.reoffline = true;
    nt_ecc_outcome(&p, &f, -EIO, false, T0, &o);
    assert_int_equal(o.cls, NT_ECC_RETRY);
    assert_int_equal(f.state, NT_ECC_FRAME_PENDING);
    assert_int_equal(f.next_try_usec, T0 + 10 * SEC);
    assert_string_equal(o.why, "EIO: retry 1 of 1");
    nt_ecc_outcome(&p, &f, -EIO, false, T0 + 10 * SEC, &o);
    assert_int_equal(o.cls, NT_ECC_GIVE_UP);
    assert_int_equal(f.state, NT_ECC_FRAME_FAILED);
    assert_string_equal(o.why, "EIO: still unmovable after 2 attempts");

    f = pending_frame();
    f.reoffline = true;
    nt_ecc_outcome(&p, &f, -EINVAL, false, T0, &o);      /* other errors stay final */
    assert_int_equal(o.cls, NT_ECC_GIVE_UP);
    f = pending_frame();
    f.reoffline = true;
    nt_ecc_outcome(&p, &f, 0, false, T0, &o);
    assert_int_equal(o.cls, NT_ECC_DONE);
}

static void test_outcome_classification(void **state)
{
    (void)state;
    static const struct {
        int err;
        bool poisoned;
        enum nt_ecc_outcome_class cls;
        enum nt_ecc_frame_state st;
        const char *why;
    } cases[] = {
        { 0, false, NT_ECC_DONE, NT_ECC_FRAME_OFFLINED, "soft-offlined" },
        { 0, true, NT_ECC_DONE, NT_ECC_FRAME_OFFLINED, "already offline" },
        { -EIO, false, NT_ECC_GIVE_UP, NT_ECC_FRAME_FAILED, "EIO" },
        { -ENXIO, false, NT_ECC_GIVE_UP, NT_ECC_FRAME_FAILED, "ENXIO" },
        { -EINVAL, false, NT_ECC_GIVE_UP, NT_ECC_FRAME_FAILED, "EINVAL" },
        { EIO, false, NT_ECC_GIVE_UP, NT_ECC_FRAME_FAILED, "EIO" },     /* positive errno too */
        { -ENOMEM, false, NT_ECC_GIVE_UP, NT_ECC_FRAME_FAILED, "error 12" },
        { -EPERM, false, NT_ECC_FATAL, NT_ECC_FRAME_PENDING, "EPERM" },
        { -ENOENT, false, NT_ECC_FATAL, NT_ECC_FRAME_PENDING, "soft_offline_page" },
    };
    struct nt_ecc_params p = params();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct nt_ecc_frame f = pending_frame();
        struct nt_ecc_outcome o;
        nt_ecc_outcome(&p, &f, cases[i].err, cases[i].poisoned, T0, &o);
        assert_int_equal(o.cls, cases[i].cls);
        assert_int_equal(o.state, cases[i].st);
        assert_int_equal(f.state, cases[i].st);
        assert_contains(o.why, cases[i].why);
        assert_int_equal(f.next_try_usec, UINT64_MAX);
        assert_false(nt_ecc_frame_due(&f, T0 + DAY));
        assert_int_equal(f.attempts, cases[i].cls == NT_ECC_FATAL ? 0 : 1);
    }
}

static void test_names(void **state)
{
    (void)state;
    enum nt_ecc_action a;
    assert_int_equal(nt_ecc_action_parse("account", &a), 0);
    assert_int_equal(a, NT_ECC_ACTION_ACCOUNT);
    assert_int_equal(nt_ecc_action_parse("hard", &a), -EINVAL);
    assert_int_equal(nt_ecc_action_parse(NULL, &a), -EINVAL);
    for (int s = NT_ECC_FRAME_OK; s <= NT_ECC_FRAME_POISONED; s++) {
        enum nt_ecc_frame_state st;
        assert_int_equal(nt_ecc_frame_state_parse(nt_ecc_frame_state_name(s), &st), 0);
        assert_int_equal(st, s);
    }
    enum nt_ecc_block_state bs;
    assert_int_equal(nt_ecc_block_state_parse("proposed", &bs), 0);
    assert_int_equal(bs, NT_ECC_BLOCK_PROPOSED);
    assert_string_equal(nt_ecc_action_name(NT_ECC_ACTION_SOFT), "soft");
    assert_string_equal(nt_ecc_verdict_name(NT_ECC_SOFT_OFFLINE), "soft-offline");
    assert_string_equal(nt_ecc_block_verdict_name(NT_ECC_BLOCK_OFFLINE), "offline");
    assert_string_equal(nt_ecc_outcome_class_name(NT_ECC_GIVE_UP), "give-up");
    assert_string_equal(nt_ecc_frame_state_name((enum nt_ecc_frame_state)42), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_below_at_threshold),
        cmocka_unit_test(test_above_threshold),
        cmocka_unit_test(test_window_edges),
        cmocka_unit_test(test_leak_over_time),
        cmocka_unit_test(test_sustained_rate),
        cmocka_unit_test(test_clock_backwards),
        cmocka_unit_test(test_multi_error_event),
        cmocka_unit_test(test_one_trigger_per_frame),
        cmocka_unit_test(test_escalation_in_one_block),
        cmocka_unit_test(test_escalation_not_across_blocks),
        cmocka_unit_test(test_escalation_window),
        cmocka_unit_test(test_escalation_levels),
        cmocka_unit_test(test_frame_action_levels),
        cmocka_unit_test(test_unusable_never_triggers),
        cmocka_unit_test(test_not_counted_kinds),
        cmocka_unit_test(test_memory_failure_poisons),
        cmocka_unit_test(test_state_mismatch),
        cmocka_unit_test(test_scenario_mce),
        cmocka_unit_test(test_retry_backoff),
        cmocka_unit_test(test_outcome_busy_until_limit),
        cmocka_unit_test(test_outcome_reoffline_retries_eio),
        cmocka_unit_test(test_outcome_classification),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
