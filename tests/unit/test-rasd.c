/* The RAS daemon side over a fixture root and a real ledger: what survives
 * a restart. The leaky buckets are rebuilt from the ledger's recent events
 * (one error before a restart and one after cross the threshold of 2), an
 * event acknowledged just before a crash is still acted on, events the
 * policy never counts stay uncounted, and a re-offline after a reboot is
 * told apart from acting twice, and tried again at the next boot when it
 * gave up.
 *
 * The root is a temporary directory: soft_offline_page is a plain file
 * (O_TRUNC: it holds the last address written), /proc/kpageflags a sparse
 * file whose HWPOISON bits say which frames the "kernel" has offline, and
 * boot_id names the boot. There is no tracefs, so events come in through
 * nt_rasd_handle_event(). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <systemd/sd-event.h>

#include "numatier/config.h"
#include "numatier/ecc.h"
#include "numatier/ledger.h"
#include "numatier/ras.h"
#include "numatier/rasd.h"
#include "numatier/util.h"

#define SEC       UINT64_C(1000000)
#define HOUR      (3600 * SEC)
#define DAY       (24 * HOUR)
#define ADDR_A    UINT64_C(0x3f638000)
#define ADDR_B    UINT64_C(0x3f700000)
#define KPF_HWPOISON 19

struct env {
    char root[64];
    char ledger[PATH_MAX];
    sd_event *event;
    struct nt_config cfg;
    struct nt_rasd *rasd;
};

static uint64_t now_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec / 1000;
}

static void put_file(struct env *e, const char *rel, const char *text)
{
    char path[PATH_MAX], cmd[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s%s", e->root, rel);
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", path);
    *strrchr(cmd, '/') = '\0';
    strcat(cmd, "'");
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static char *get_file(struct env *e, const char *rel)
{
    char *s = NULL;
    assert_int_equal(nt_read_file(e->root, rel, &s), 0);
    return s;
}

static void boot(struct env *e, const char *id)
{
    put_file(e, "/proc/sys/kernel/random/boot_id", id);
}

/* The "kernel" has the frame at addr poisoned (offline). */
static void poison(struct env *e, uint64_t addr)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/proc/kpageflags", e->root);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    uint64_t flags = UINT64_C(1) << KPF_HWPOISON;
    assert_int_equal(pwrite(fd, &flags, sizeof(flags), (off_t)((addr >> 12) * sizeof(flags))), sizeof(flags));
    close(fd);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    snprintf(e->root, sizeof(e->root), "/tmp/nt-test-rasd.XXXXXX");
    assert_non_null(mkdtemp(e->root));
    snprintf(e->ledger, sizeof(e->ledger), "%s/ledger.db", e->root);
    put_file(e, "/sys/devices/system/memory/soft_offline_page", "");
    boot(e, "boot-one\n");
    nt_config_init(&e->cfg);
    e->cfg.ras = true;
    free(e->cfg.ledger_path);
    e->cfg.ledger_path = strdup(e->ledger);
    assert_non_null(e->cfg.ledger_path);
    assert_int_equal(sd_event_new(&e->event), 0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    char cmd[PATH_MAX + 16];
    nt_rasd_free(e->rasd);
    nt_config_done(&e->cfg);
    sd_event_unref(e->event);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->root);
    assert_int_equal(system(cmd), 0);
    free(e);
    return 0;
}

/* Start (or restart) the daemon's RAS side on the same ledger. */
static struct nt_rasd *start(struct env *e)
{
    nt_rasd_free(e->rasd);
    e->rasd = NULL;
    assert_int_equal(nt_rasd_new(e->event, e->root, &e->cfg, &e->rasd), 0);
    return e->rasd;
}

static uint64_t status_u64(struct env *e, const char *key)
{
    struct json_object *st = nt_rasd_status_json(e->rasd), *v;
    assert_true(json_object_object_get_ex(st, key, &v));
    uint64_t n = (uint64_t)json_object_get_int64(v);
    json_object_put(st);
    return n;
}

/* A corrected memory-read MCE at addr, as the guest's mce_record gives it
 * (VAL|EN|MISCV|ADDRV, MISC 0x8c: physical address, LSB 12), or with a
 * coarser LSB. */
static struct nt_ras_event mce(uint64_t addr, uint64_t t, unsigned lsb)
{
    struct nt_mce_record m = {
        .status = UINT64_C(0x9c0000000000009f), .misc = 0x80 | lsb, .addr = addr,
        .bank = 8, .cpuvendor = NT_X86_VENDOR_INTEL,
    };
    struct nt_ras_event ev;
    assert_int_equal(nt_mce_decode(&m, t, &ev), 0);
    return ev;
}

static void error_at(struct env *e, uint64_t addr, uint64_t t)
{
    struct nt_ras_event ev = mce(addr, t, 12);
    assert_int_equal(nt_rasd_handle_event(e->rasd, &ev), 0);
}

/* The address last written to soft_offline_page, 0 if none since cleared. */
static uint64_t offlined_addr(struct env *e)
{
    _cleanup_free_ char *s = get_file(e, "/sys/devices/system/memory/soft_offline_page");
    return *s ? strtoull(s, NULL, 0) : 0;
}

static void clear_offlined(struct env *e)
{
    put_file(e, "/sys/devices/system/memory/soft_offline_page", "");
}

/* The frame as the ledger has it, read through a connection of its own. */
static struct nt_ledger_frame ledger_frame(struct env *e, uint64_t addr)
{
    struct nt_ledger *l = NULL;
    struct nt_ledger_frame f;
    char why[256];
    assert_int_equal(nt_ledger_open(e->ledger, NULL, &l, why, sizeof(why)), 0);
    assert_int_equal(nt_ledger_frame_get(l, addr >> 12, &f), 0);
    nt_ledger_close(l);
    return f;
}

static bool check_ok(struct env *e, uint64_t *offlines_done)
{
    struct json_object *c = nt_rasd_check_json(e->rasd), *v;
    assert_true(json_object_object_get_ex(c, "ok", &v));
    bool ok = json_object_get_boolean(v);
    if (!ok)
        printf("# ledger check: %s\n", json_object_to_json_string(c));
    assert_true(json_object_object_get_ex(c, "offlines_done", &v));
    *offlines_done = (uint64_t)json_object_get_int64(v);
    json_object_put(c);
    return ok;
}

static void test_one_error_alone_is_not_enough(void **state)
{
    struct env *e = *state;
    start(e);
    error_at(e, ADDR_A, now_usec());
    assert_int_equal(offlined_addr(e), 0);
    assert_int_equal(ledger_frame(e, ADDR_A).state, NT_FRAME_OK);
}

/* One error, a restart, one more error: 2 within 24 h, the frame goes. */
static void test_bucket_survives_restart(void **state)
{
    struct env *e = *state;
    uint64_t now = now_usec(), done;
    start(e);
    error_at(e, ADDR_A, now - HOUR);
    assert_int_equal(offlined_addr(e), 0);

    start(e);
    assert_int_equal(status_u64(e, "replayed"), 1);
    assert_int_equal(offlined_addr(e), 0);          /* replaying one error acts on nothing */
    error_at(e, ADDR_A, now);
    assert_int_equal(offlined_addr(e), ADDR_A);
    struct nt_ledger_frame f = ledger_frame(e, ADDR_A);
    assert_int_equal(f.state, NT_FRAME_OFFLINED);
    assert_int_equal(f.count, 2);
    assert_int_equal(f.attempts, 1);
    assert_true(check_ok(e, &done));
    assert_int_equal(done, 1);
}

/* An error old enough to have drained away is not brought back. */
static void test_drained_error_stays_forgotten(void **state)
{
    struct env *e = *state;
    uint64_t now = now_usec();
    start(e);
    error_at(e, ADDR_A, now - 3 * DAY);
    start(e);
    assert_int_equal(status_u64(e, "replayed"), 0);
    error_at(e, ADDR_A, now);
    assert_int_equal(offlined_addr(e), 0);
    assert_int_equal(ledger_frame(e, ADDR_A).state, NT_FRAME_OK);
}

static int copy_first_event(int64_t id, const struct nt_ledger_event *ev, void *ud)
{
    (void)id;
    struct nt_ledger_event *out = ud;
    *out = *ev;
    out->source = strdup(ev->source);
    out->fields_json = strdup(ev->fields_json);
    out->action = out->result = NULL;
    return 1;
}

/* The ledger's last event once more at time t, written behind the daemon's
 * back: acknowledged, as if it crashed before acting on it. */
static void ledger_repeat_last(struct env *e, uint64_t t)
{
    struct nt_ledger *l = NULL;
    struct nt_ledger_event ev;
    char why[256];
    assert_int_equal(nt_ledger_open(e->ledger, NULL, &l, why, sizeof(why)), 0);
    assert_int_equal(nt_ledger_recent_events(l, 1, copy_first_event, &ev), 1);
    ev.time_usec = t;
    assert_int_equal(nt_ledger_add_event(l, &ev, NULL), 0);
    free((char *)ev.source);
    free((char *)ev.fields_json);
    nt_ledger_close(l);
}

/* Two errors acknowledged, then a crash before the policy saw the second
 * (the ledger got it, nothing acted): the restart acts on it. */
static void test_acknowledged_event_acted_on_after_crash(void **state)
{
    struct env *e = *state;
    uint64_t now = now_usec();
    start(e);
    error_at(e, ADDR_A, now - 2 * HOUR);
    nt_rasd_free(e->rasd);
    e->rasd = NULL;

    ledger_repeat_last(e, now - HOUR);
    assert_int_equal(offlined_addr(e), 0);

    start(e);
    assert_int_equal(status_u64(e, "replayed"), 2);
    assert_int_equal(offlined_addr(e), ADDR_A);
    assert_int_equal(ledger_frame(e, ADDR_A).state, NT_FRAME_OFFLINED);
}

/* Errors the policy never counts (grain 2 MiB: which frame failed is
 * unknown) stay uncounted when replayed. */
static void test_replay_counts_what_the_policy_counts(void **state)
{
    struct env *e = *state;
    uint64_t now = now_usec();
    start(e);
    for (int i = 0; i < 3; i++) {
        struct nt_ras_event ev = mce(ADDR_B, now - (uint64_t)(3 - i) * HOUR, 21);
        assert_int_equal(nt_rasd_handle_event(e->rasd, &ev), 0);
    }
    assert_int_equal(offlined_addr(e), 0);
    start(e);
    assert_int_equal(status_u64(e, "replayed"), 3);
    assert_int_equal(offlined_addr(e), 0);
    error_at(e, ADDR_B, now);                       /* one counted error */
    assert_int_equal(offlined_addr(e), 0);
}

/* After a reboot the frame is offlined again, once; a second restart in
 * the same boot finds it offline and leaves it. The check tells the two
 * successful offlines (two boots) from acting twice. */
static void test_reoffline_once_per_boot(void **state)
{
    struct env *e = *state;
    uint64_t now = now_usec(), done;
    start(e);
    error_at(e, ADDR_A, now - 2 * SEC);
    error_at(e, ADDR_A, now - SEC);
    assert_int_equal(offlined_addr(e), ADDR_A);
    clear_offlined(e);

    boot(e, "boot-two\n");                          /* the kernel forgot its soft offlines */
    start(e);
    assert_int_equal(offlined_addr(e), ADDR_A);
    struct nt_ledger_frame f = ledger_frame(e, ADDR_A);
    assert_int_equal(f.state, NT_FRAME_OFFLINED);
    assert_int_equal(f.attempts, 2);
    assert_non_null(strstr(f.last_result, "re-offline after reboot"));
    assert_true(check_ok(e, &done));
    assert_int_equal(done, 2);

    poison(e, ADDR_A);
    clear_offlined(e);
    start(e);                                       /* same boot: nothing to do */
    assert_int_equal(offlined_addr(e), 0);
    assert_int_equal(ledger_frame(e, ADDR_A).attempts, 2);
    assert_true(check_ok(e, &done));
    assert_int_equal(done, 2);
}

/* A re-offline that gives up (here the write fails with EISDIR: the
 * fixture's soft_offline_page is a directory for that boot) leaves the
 * frame failed, and the next boot tries it again: it is still known bad. */
static void test_failed_reoffline_tried_next_boot(void **state)
{
    struct env *e = *state;
    uint64_t now = now_usec(), done;
    char cmd[PATH_MAX + 64];
    start(e);
    error_at(e, ADDR_A, now - 2 * SEC);
    error_at(e, ADDR_A, now - SEC);
    assert_int_equal(offlined_addr(e), ADDR_A);

    boot(e, "boot-two\n");
    snprintf(cmd, sizeof(cmd), "rm '%s/sys/devices/system/memory/soft_offline_page' && mkdir '%s/sys/devices/system/memory/soft_offline_page'",
             e->root, e->root);
    assert_int_equal(system(cmd), 0);
    start(e);
    struct nt_ledger_frame f = ledger_frame(e, ADDR_A);
    assert_int_equal(f.state, NT_FRAME_FAILED);
    assert_int_equal(f.attempts, 2);

    boot(e, "boot-three\n");
    snprintf(cmd, sizeof(cmd), "rmdir '%s/sys/devices/system/memory/soft_offline_page'", e->root);
    assert_int_equal(system(cmd), 0);
    clear_offlined(e);
    start(e);
    assert_int_equal(offlined_addr(e), ADDR_A);
    f = ledger_frame(e, ADDR_A);
    assert_int_equal(f.state, NT_FRAME_OFFLINED);
    assert_int_equal(f.attempts, 3);
    assert_true(check_ok(e, &done));
    assert_int_equal(done, 2);
}

/* ---- block escalation ---------------------------------------------------------- */

struct offliner {
    unsigned calls;
    uint64_t block;
    int answer;                     /* what the next call returns */
};

static int fake_offliner(uint64_t block, int64_t *job, char *msg, size_t len, void *userdata)
{
    struct offliner *o = userdata;
    o->calls++;
    o->block = block;
    *job = o->answer == 0 ? 42 : 0;
    snprintf(msg, len, "%s", o->answer == -EBUSY ? "offline job 7 is running" : "planned");
    return o->answer;
}

/* The ledger's block_offline actions: count, and "state:result|..." by id. */
static int block_actions(struct env *e, char *out, size_t len)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int n = 0;
    out[0] = '\0';
    assert_int_equal(sqlite3_open_v2(e->ledger, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT state, result FROM actions WHERE kind = 'block_offline'"
                                        " ORDER BY id", -1, &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        size_t at = strlen(out);
        snprintf(out + at, len - at, "%s%s:%s", n++ ? "|" : "", (const char *)sqlite3_column_text(st, 0),
                 (const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* block_action = soft, block_frames = 2: the second failing frame of a
 * block starts an offline job for it, after the frame's own offline; a job
 * already running defers it, and the daemon's cycle tries again 30 s on. */
static void test_block_escalation_starts_offline_job(void **state)
{
    struct env *e = *state;
    struct offliner o = { .answer = -EBUSY };
    char rows[1024];
    uint64_t now = now_usec();
    e->cfg.block_action = NT_ECC_ACTION_SOFT;
    e->cfg.block_frames = 2;
    start(e);
    nt_rasd_set_block_offliner(e->rasd, fake_offliner, &o);
    error_at(e, ADDR_A, now - 4 * SEC);
    error_at(e, ADDR_A, now - 3 * SEC);               /* frame A offlined; one frame is not a block */
    assert_int_equal(o.calls, 0);
    error_at(e, ADDR_B, now - 2 * SEC);
    error_at(e, ADDR_B, now - SEC);                   /* frame B: two frames of block 7 */
    assert_int_equal(offlined_addr(e), ADDR_B);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.block, ADDR_A / (128u << 20));
    assert_int_equal(status_u64(e, "blocks_waiting"), 1);
    assert_int_equal(block_actions(e, rows, sizeof(rows)), 1);
    assert_non_null(strstr(rows, "failed:deferred: offline job 7 is running"));

    nt_rasd_cycle(e->rasd, NULL, nt_now_usec() + 10 * SEC);  /* not yet due */
    assert_int_equal(o.calls, 1);
    o.answer = 0;
    nt_rasd_cycle(e->rasd, NULL, nt_now_usec() + 31 * SEC);
    assert_int_equal(o.calls, 2);
    assert_int_equal(status_u64(e, "blocks_waiting"), 0);
    assert_int_equal(status_u64(e, "blocks_started"), 1);
    assert_int_equal(block_actions(e, rows, sizeof(rows)), 2);
    assert_non_null(strstr(rows, "|done:offline job 42 started"));
    nt_rasd_cycle(e->rasd, NULL, nt_now_usec() + 62 * SEC);  /* nothing left to retry */
    assert_int_equal(o.calls, 2);
}

/* An escalation reached while replaying the ledger at startup (frame B's
 * second error was acknowledged just before a crash; frame A was offlined
 * before it, and counts from the ledger) comes before the offline machinery
 * is wired: it is started at the first cycle. */
static void test_block_escalation_at_startup(void **state)
{
    struct env *e = *state;
    struct offliner o = { .answer = 0 };
    uint64_t now = now_usec();
    e->cfg.block_action = NT_ECC_ACTION_SOFT;
    e->cfg.block_frames = 2;
    start(e);
    error_at(e, ADDR_A, now - 4 * SEC);
    error_at(e, ADDR_A, now - 3 * SEC);
    error_at(e, ADDR_B, now - 2 * SEC);
    nt_rasd_free(e->rasd);
    e->rasd = NULL;

    ledger_repeat_last(e, now - SEC);                /* B's second error */

    poison(e, ADDR_A);                              /* the same boot: A stays offline */
    start(e);
    assert_int_equal(offlined_addr(e), ADDR_B);
    assert_int_equal(status_u64(e, "blocks_waiting"), 1);
    nt_rasd_set_block_offliner(e->rasd, fake_offliner, &o);
    nt_rasd_cycle(e->rasd, NULL, nt_now_usec());
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.block, ADDR_B / (128u << 20));
    assert_int_equal(status_u64(e, "blocks_started"), 1);
}

/* With block_action account (the default) nothing is asked of the offline
 * machinery; a refusal is final. */
static void test_block_escalation_account_or_refused(void **state)
{
    struct env *e = *state;
    struct offliner o = { .answer = -EPERM };
    char rows[1024];
    uint64_t now = now_usec();
    e->cfg.block_frames = 2;
    start(e);
    nt_rasd_set_block_offliner(e->rasd, fake_offliner, &o);
    error_at(e, ADDR_A, now - 4 * SEC);
    error_at(e, ADDR_A, now - 3 * SEC);
    error_at(e, ADDR_B, now - 2 * SEC);
    error_at(e, ADDR_B, now - SEC);
    assert_int_equal(o.calls, 0);
    assert_int_equal(block_actions(e, rows, sizeof(rows)), 0);

    nt_rasd_free(e->rasd);
    e->rasd = NULL;
    e->cfg.block_action = NT_ECC_ACTION_SOFT;
    const uint64_t addr_c = ADDR_A + 0x10000, addr_d = ADDR_A + 0x20000;
    start(e);
    nt_rasd_set_block_offliner(e->rasd, fake_offliner, &o);
    error_at(e, addr_c, now - 2 * SEC);
    error_at(e, addr_c, now - SEC);
    assert_int_equal(o.calls, 1);                     /* block 7 again, now with soft */
    assert_int_equal(status_u64(e, "blocks_refused"), 1);
    assert_int_equal(status_u64(e, "blocks_waiting"), 0);
    error_at(e, addr_d, now - SEC);
    error_at(e, addr_d, now);
    assert_int_equal(o.calls, 1);                     /* proposed once per block */
    assert_int_equal(block_actions(e, rows, sizeof(rows)), 1);
    assert_non_null(strstr(rows, "failed:refused: planned"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_error_alone_is_not_enough, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bucket_survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drained_error_stays_forgotten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acknowledged_event_acted_on_after_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_counts_what_the_policy_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reoffline_once_per_boot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_reoffline_tried_next_boot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block_escalation_starts_offline_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block_escalation_account_or_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block_escalation_at_startup, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
