/* The RAS ledger: schema and migrations, the frame state machine, crash
 * safety (children killed between intent and result and in the middle of
 * a transaction), pruning, and refusing files it must not touch.
 *
 * Each test gets its own temporary directory with the ledger at
 * DIR/ledger.db. Raw sqlite3 connections stand in for an older numatierd,
 * a newer one, or another program. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "numatier/ledger.h"
#include "numatier/ledger-jobs.h"
#include "numatier/util.h"

#define T0      UINT64_C(1767225600000000)     /* 2026-01-01, wall clock */
#define SEC     UINT64_C(1000000)
#define DAY     (86400 * SEC)
#define PFN_A   UINT64_C(0x12345)
#define PFN_B   UINT64_C(0x40000)

struct env {
    char dir[64];
    char path[PATH_MAX];
    struct nt_ledger *l;
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    snprintf(e->dir, sizeof(e->dir), "/tmp/nt-test-ledger.XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->path, sizeof(e->path), "%s/ledger.db", e->dir);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    char cmd[PATH_MAX + 16];
    nt_ledger_close(e->l);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
    assert_int_equal(system(cmd), 0);
    free(e);
    return 0;
}

static struct nt_ledger *open_ok(struct env *e)
{
    char why[256] = "";
    nt_ledger_close(e->l);
    e->l = NULL;
    int r = nt_ledger_open(e->path, NULL, &e->l, why, sizeof(why));
    if (r < 0)
        fail_msg("open %s: %s (%d)", e->path, why, r);
    return e->l;
}

static void close_ledger(struct env *e)
{
    nt_ledger_close(e->l);
    e->l = NULL;
}

static struct nt_ledger_event mce(uint64_t t, uint64_t phys)
{
    return (struct nt_ledger_event){
        .time_usec = t, .source = "mce", .addr_valid = true, .phys_addr = phys,
        .fields_json = "{\"bank\":7,\"mcacod\":159}", .action = "soft-offline",
        .node = 0, .memory_block = (int64_t)(phys >> 27),
    };
}

static int64_t add(struct nt_ledger *l, uint64_t t, uint64_t phys)
{
    struct nt_ledger_event ev = mce(t, phys);
    int64_t id = 0;
    assert_int_equal(nt_ledger_add_event(l, &ev, &id), 0);
    assert_true(id > 0);
    return id;
}

static struct nt_ledger_frame frame(struct nt_ledger *l, uint64_t pfn)
{
    struct nt_ledger_frame f;
    assert_int_equal(nt_ledger_frame_get(l, pfn, &f), 0);
    return f;
}

static struct nt_ledger_stats stats(struct nt_ledger *l)
{
    struct nt_ledger_stats st;
    assert_int_equal(nt_ledger_stats(l, &st), 0);
    return st;
}

/* A raw connection, as another program would have. */
static sqlite3 *raw_open(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    return db;
}

static void raw_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
}

static int64_t raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* The whole file, to prove a refused database was not changed. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc((1 << 20) + 1);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static const char *fixture(const char *name)
{
    static char path[PATH_MAX];
    const char *dir = getenv("NT_FIXTURES");
    char rel[PATH_MAX];
    snprintf(rel, sizeof(rel), "%s/ledger/%s", dir ? dir : "tests/fixtures", name);
    if (!realpath(rel, path))
        fail_msg("no fixture %s (run from the repository root or set NT_FIXTURES)", rel);
    return path;
}

/* ---- open, schema ---------------------------------------------------- */

static void test_open_creates_wal_v2(void **state)
{
    struct env *e = *state;
    open_ok(e);
    assert_int_equal(nt_ledger_schema_version(e->l), NT_LEDGER_SCHEMA_VERSION);
    close_ledger(e);

    sqlite3 *db = raw_open(e->path);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");   /* persistent */
    sqlite3_finalize(s);
    assert_int_equal(raw_int(db, "PRAGMA application_id"), NT_LEDGER_APPLICATION_ID);
    assert_int_equal(raw_int(db, "PRAGMA user_version"), NT_LEDGER_SCHEMA_VERSION);
    assert_int_equal(raw_int(db, "PRAGMA auto_vacuum"), 2);                /* incremental */
    sqlite3_close(db);

    open_ok(e);             /* reopening changes nothing */
    assert_int_equal(nt_ledger_schema_version(e->l), NT_LEDGER_SCHEMA_VERSION);
    assert_int_equal(stats(e->l).events, 0);
}

/* sqlite_master's SQL, sorted, as one string. */
static char *schema_of(const char *path)
{
    sqlite3 *db = raw_open(path);
    sqlite3_stmt *s = NULL;
    size_t len = 0, cap = 1 << 16;
    char *out = calloc(1, cap);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"
                                        " ORDER BY name", -1, &s, NULL), SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW)
        len += (size_t)snprintf(out + len, cap - len, "%s;\n", sqlite3_column_text(s, 0));
    assert_true(len < cap);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return out;
}

/* The ledger at e->path (closed) has exactly a fresh database's schema. */
static void assert_schema_is_fresh(struct env *e)
{
    char fresh[PATH_MAX + 8];
    snprintf(fresh, sizeof(fresh), "%s/fresh.db", e->dir);
    struct nt_ledger *f = NULL;
    char why[256];
    assert_int_equal(nt_ledger_open(fresh, NULL, &f, why, sizeof(why)), 0);
    nt_ledger_close(f);
    _cleanup_free_ char *s1 = schema_of(e->path), *s2 = schema_of(fresh);
    assert_string_equal(s1, s2);
}

static void load_sql(const char *db_path, const char *sql_path)
{
    size_t len;
    _cleanup_free_ char *sql = slurp(sql_path, &len);
    sql[len] = '\0';
    sqlite3 *db = raw_open(db_path);
    raw_exec(db, sql);
    sqlite3_close(db);
}

static int collect_action(const struct nt_ledger_action *a, void *ud)
{
    struct nt_ledger_action *out = ud;
    if (out->id != 0)
        return -E2BIG;      /* more than one */
    *out = *a;
    out->kind = out->detail = NULL;   /* not valid after the call */
    assert_string_equal(a->kind, "soft_offline");
    return 0;
}

static void test_migrate_from_v1(void **state)
{
    struct env *e = *state;
    load_sql(e->path, fixture("v1.sql"));
    open_ok(e);
    assert_int_equal(nt_ledger_schema_version(e->l), NT_LEDGER_SCHEMA_VERSION);   /* all the way up */

    /* every row survived */
    struct nt_ledger_stats st = stats(e->l);
    assert_int_equal(st.events, 4);
    assert_int_equal(st.frames[NT_FRAME_OFFLINED], 1);
    assert_int_equal(st.frames[NT_FRAME_OFFLINE_PENDING], 1);
    struct nt_ledger_frame a = frame(e->l, PFN_A);
    assert_int_equal(a.count, 2);
    assert_int_equal(a.memory_block, 2);
    assert_string_equal(a.reason, "2 errors in 24h");
    assert_int_equal(a.updated_usec, a.last_usec);      /* filled by the migration */

    /* the frame a v1 daemon left pending is now a pending intent */
    struct nt_ledger_action pend = { 0 };
    assert_int_equal(nt_ledger_pending(e->l, collect_action, &pend), 0);
    assert_true(pend.has_pfn);
    assert_int_equal(pend.pfn, PFN_B);
    assert_int_equal(nt_ledger_frame_result(e->l, PFN_B, NT_FRAME_OFFLINED, "found offline",
                                            0, 0, T0 + DAY), 0);
    close_ledger(e);

    /* migrating gives exactly a fresh database's schema */
    assert_schema_is_fresh(e);
}

static void test_refuse_newer_schema(void **state)
{
    struct env *e = *state;
    sqlite3 *db = raw_open(e->path);
    raw_exec(db, "PRAGMA application_id = 1314147399; PRAGMA user_version = 99;"
                 "CREATE TABLE future (x); INSERT INTO future VALUES (42);");
    sqlite3_close(db);
    size_t n1, n2;
    _cleanup_free_ char *before = slurp(e->path, &n1);

    char why[256] = "";
    struct nt_ledger *l = NULL;
    assert_int_equal(nt_ledger_open(e->path, NULL, &l, why, sizeof(why)), -EPROTONOSUPPORT);
    assert_null(l);
    assert_non_null(strstr(why, "v99 is newer"));
    _cleanup_free_ char *after = slurp(e->path, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(before, after, n1);
}

static void expect_bad(struct env *e, int want, const char *needle)
{
    char why[256] = "";
    struct nt_ledger *l = NULL;
    assert_int_equal(nt_ledger_open(e->path, NULL, &l, why, sizeof(why)), want);
    assert_null(l);
    print_message("refused: %s\n", why);
    if (!strstr(why, needle))
        fail_msg("'%s' not in '%s'", needle, why);
}

static void write_file(const char *path, const char *data, size_t len, off_t at)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, len, at), (ssize_t)len);
    close(fd);
}

static void test_refuse_garbage(void **state)
{
    struct env *e = *state;
    const char junk[] = "this is not a database, it is a shopping list: eggs, milk, DIMMs\n";
    char text[8192];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = junk[i % (sizeof(junk) - 1)];
    write_file(e->path, text, sizeof(text), 0);
    expect_bad(e, -EBADMSG, "not a database");
    size_t n;
    _cleanup_free_ char *after = slurp(e->path, &n);
    assert_int_equal(n, sizeof(text));
    assert_memory_equal(after, text, n);
}

static void test_refuse_foreign_database(void **state)
{
    struct env *e = *state;
    sqlite3 *db = raw_open(e->path);
    raw_exec(db, "CREATE TABLE moz_places (url TEXT)");
    sqlite3_close(db);
    expect_bad(e, -EBADMSG, "not a numatier ledger");
}

static void test_refuse_corrupt_pages(void **state)
{
    struct env *e = *state;
    open_ok(e);
    for (int i = 0; i < 200; i++)
        add(e->l, T0 + (uint64_t)i, 0x1000 * (uint64_t)i);
    close_ledger(e);        /* checkpoints: everything is in the main file */

    struct stat st;
    assert_int_equal(stat(e->path, &st), 0);
    assert_true(st.st_size >= 4 * 4096);
    char junk[4096];
    memset(junk, 0xa5, sizeof(junk));
    write_file(e->path, junk, sizeof(junk), 2 * 4096);   /* a b-tree page */
    expect_bad(e, -EBADMSG, "database is corrupt");
}

static void test_refuse_unusable_paths(void **state)
{
    struct env *e = *state;
    char why[256];
    struct nt_ledger *l = NULL;
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/missing/ledger.db", e->dir);
    assert_int_equal(nt_ledger_open(path, NULL, &l, why, sizeof(why)), -ENOENT);
    assert_null(l);
    print_message("refused: %s\n", why);
    assert_true(nt_ledger_open(e->dir, NULL, &l, why, sizeof(why)) < 0);   /* a directory */
    assert_null(l);
    print_message("refused: %s\n", why);
    if (geteuid() == 0)
        return;             /* root reads anything */
    write_file(e->path, "", 0, 0);
    assert_int_equal(chmod(e->path, 0), 0);
    assert_true(nt_ledger_open(e->path, NULL, &l, why, sizeof(why)) < 0);
    assert_null(l);
}

/* ---- events ---------------------------------------------------------- */

struct seen {
    int n;
    int64_t ids[8];
    struct nt_ledger_event ev[8];
    char fields[8][64], result[8][32];
};

static int collect_event(int64_t id, const struct nt_ledger_event *ev, void *ud)
{
    struct seen *s = ud;
    assert_true(s->n < 8);
    s->ids[s->n] = id;
    s->ev[s->n] = *ev;
    snprintf(s->fields[s->n], sizeof(s->fields[0]), "%s", ev->fields_json ? ev->fields_json : "-");
    snprintf(s->result[s->n], sizeof(s->result[0]), "%s", ev->result ? ev->result : "-");
    s->ev[s->n].source = s->ev[s->n].action = s->ev[s->n].fields_json = s->ev[s->n].result = NULL;
    s->n++;
    return 0;
}

static void test_events_round_trip(void **state)
{
    struct env *e = *state;
    open_ok(e);
    struct nt_ledger_event batch[3] = {
        mce(T0, 0x12345040),
        { .time_usec = T0 + 1, .source = "edac", .addr_valid = false, .fields_json = "{\"grain\":0}",
          .action = "none", .node = -1, .memory_block = -1 },
        { .time_usec = T0 + 2, .source = NULL, .addr_valid = true, .phys_addr = UINT64_MAX,
          .node = -1, .memory_block = -1, .err = -EIO },
    };
    int64_t ids[3];
    assert_int_equal(nt_ledger_add_events(e->l, batch, 3, ids), 0);
    assert_true(ids[0] < ids[1] && ids[1] < ids[2]);

    struct seen s = { 0 };
    assert_int_equal(nt_ledger_recent_events(e->l, 0, collect_event, &s), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.ids[0], ids[2]);         /* newest first */
    /* an address SQLite cannot hold is kept as unusable, not dropped */
    assert_false(s.ev[0].addr_valid);
    assert_string_equal(s.result[0], "address out of range");
    assert_int_equal(s.ev[0].err, EIO);
    assert_false(s.ev[1].addr_valid);
    assert_int_equal(s.ev[1].node, -1);
    assert_string_equal(s.fields[1], "{\"grain\":0}");
    assert_true(s.ev[2].addr_valid);
    assert_int_equal(s.ev[2].phys_addr, 0x12345040);
    assert_int_equal(s.ev[2].time_usec, T0);
    assert_int_equal(s.ev[2].memory_block, 2);

    s = (struct seen){ 0 };
    assert_int_equal(nt_ledger_recent_events(e->l, 1, collect_event, &s), 0);
    assert_int_equal(s.n, 1);

    /* only the usable address made a frame, in state ok */
    struct nt_ledger_frame f = frame(e->l, PFN_A);
    assert_int_equal(f.state, NT_FRAME_OK);
    assert_int_equal(f.count, 1);
    add(e->l, T0 + 5 * SEC, 0x12345fff);
    f = frame(e->l, PFN_A);
    assert_int_equal(f.count, 2);
    assert_int_equal(f.first_usec, T0);
    assert_int_equal(f.last_usec, T0 + 5 * SEC);
    struct nt_ledger_stats st = stats(e->l);
    assert_int_equal(st.events, 4);
    assert_int_equal(st.frames[NT_FRAME_OK], 1);
}

/* ---- frame state machine --------------------------------------------- */

static void test_intent_then_offlined(void **state)
{
    struct env *e = *state;
    open_ok(e);
    int64_t ev = add(e->l, T0, PFN_A << 12);
    assert_int_equal(nt_ledger_frame_trigger(e->l, PFN_A, "2 errors in 24h", T0), 0);
    assert_int_equal(frame(e->l, PFN_A).state, NT_FRAME_TRIGGERED);
    int64_t act = 0;
    assert_int_equal(nt_ledger_frame_intent(e->l, PFN_A, ev, T0 + 1, &act), 0);
    assert_true(act > 0);
    struct nt_ledger_frame f = frame(e->l, PFN_A);
    assert_int_equal(f.state, NT_FRAME_OFFLINE_PENDING);
    assert_int_equal(f.attempts, 1);
    assert_int_equal(stats(e->l).pending_actions, 1);

    assert_int_equal(nt_ledger_frame_result(e->l, PFN_A, NT_FRAME_OFFLINED, "offlined", 0, 0, T0 + 2), 0);
    f = frame(e->l, PFN_A);
    assert_int_equal(f.state, NT_FRAME_OFFLINED);
    assert_string_equal(f.last_result, "offlined");
    assert_string_equal(f.reason, "2 errors in 24h");
    assert_int_equal(f.updated_usec, T0 + 2);
    assert_int_equal(stats(e->l).pending_actions, 0);

    /* the triggering event now carries the result */
    struct seen s = { 0 };
    assert_int_equal(nt_ledger_recent_events(e->l, 1, collect_event, &s), 0);
    assert_string_equal(s.result[0], "offlined");

    /* the policy repeating itself leaves an offlined frame alone */
    assert_int_equal(nt_ledger_frame_trigger(e->l, PFN_A, "again", T0 + 3), 0);
    assert_int_equal(frame(e->l, PFN_A).state, NT_FRAME_OFFLINED);
}

static void test_intent_then_failed(void **state)
{
    struct env *e = *state;
    open_ok(e);
    int64_t ev = add(e->l, T0, PFN_B << 12);
    assert_int_equal(nt_ledger_frame_intent(e->l, PFN_B, ev, T0, NULL), 0);
    assert_int_equal(nt_ledger_frame_result(e->l, PFN_B, NT_FRAME_FAILED, "EIO: not on LRU",
                                            -EIO, 0, T0 + 1), 0);
    struct nt_ledger_frame f = frame(e->l, PFN_B);
    assert_int_equal(f.state, NT_FRAME_FAILED);
    assert_int_equal(f.last_errno, EIO);
    assert_string_equal(f.last_result, "EIO: not on LRU");
    struct seen s = { 0 };
    assert_int_equal(nt_ledger_recent_events(e->l, 1, collect_event, &s), 0);
    assert_int_equal(s.ev[0].err, EIO);
}

static void test_ebusy_retry(void **state)
{
    struct env *e = *state;
    open_ok(e);
    add(e->l, T0, PFN_A << 12);
    for (unsigned i = 1; i <= 3; i++) {
        uint64_t now = T0 + i * SEC;
        assert_int_equal(nt_ledger_frame_intent(e->l, PFN_A, 0, now, NULL), 0);
        assert_int_equal(nt_ledger_frame_result(e->l, PFN_A, NT_FRAME_TRIGGERED, "EBUSY", EBUSY,
                                                now + (SEC << i), now), 0);
        struct nt_ledger_frame f = frame(e->l, PFN_A);
        assert_int_equal(f.state, NT_FRAME_TRIGGERED);
        assert_int_equal(f.attempts, i);
        assert_int_equal(f.next_retry_usec, now + (SEC << i));
        assert_int_equal(f.last_errno, EBUSY);
    }
    assert_int_equal(stats(e->l).retries_planned, 1);
    assert_int_equal(nt_ledger_frame_intent(e->l, PFN_A, 0, T0 + 20 * SEC, NULL), 0);
    assert_int_equal(nt_ledger_frame_result(e->l, PFN_A, NT_FRAME_OFFLINED, "offlined", 0,
                                            T0 + 99 * SEC, T0 + 21 * SEC), 0);
    struct nt_ledger_frame f = frame(e->l, PFN_A);
    assert_int_equal(f.attempts, 4);
    assert_int_equal(f.next_retry_usec, 0);     /* only a retry state keeps one */
    assert_int_equal(f.last_errno, 0);
    assert_int_equal(stats(e->l).retries_planned, 0);
}

static void test_state_machine_refusals(void **state)
{
    struct env *e = *state;
    open_ok(e);
    add(e->l, T0, PFN_A << 12);
    assert_int_equal(nt_ledger_frame_result(e->l, PFN_B, NT_FRAME_OFFLINED, "x", 0, 0, T0), -ENOENT);
    assert_int_equal(nt_ledger_frame_result(e->l, PFN_A, NT_FRAME_OFFLINED, "x", 0, 0, T0), -EINVAL);
    assert_non_null(strstr(nt_ledger_last_error(e->l), "no open intent"));
    assert_int_equal(nt_ledger_frame_intent(e->l, PFN_A, 0, T0, NULL), 0);
    assert_int_equal(nt_ledger_frame_intent(e->l, PFN_A, 0, T0, NULL), -EALREADY);
    assert_int_equal(nt_ledger_frame_trigger(e->l, PFN_A, "x", T0), -EALREADY);
    assert_int_equal(nt_ledger_frame_result(e->l, PFN_A, NT_FRAME_OK, "x", 0, 0, T0), -EINVAL);
    assert_int_equal(nt_ledger_frame_result(e->l, PFN_A, NT_FRAME_OFFLINE_PENDING, "x", 0, 0, T0), -EINVAL);
    /* an intent on an unknown event is refused whole: no frame change */
    assert_int_equal(nt_ledger_frame_intent(e->l, PFN_B, 999, T0, NULL), -EINVAL);
    struct nt_ledger_frame f;
    assert_int_equal(nt_ledger_frame_get(e->l, PFN_B, &f), -ENOENT);
    /* failed refusals left the one intent as it was */
    assert_int_equal(stats(e->l).pending_actions, 1);
    assert_int_equal(frame(e->l, PFN_A).attempts, 1);
    assert_int_equal(nt_frame_state_from_string("offlined"), NT_FRAME_OFFLINED);
    assert_int_equal(nt_frame_state_from_string("bogus"), -EINVAL);
}

static void test_generic_actions(void **state)
{
    struct env *e = *state;
    open_ok(e);
    int64_t id = 0, fid = 0;
    assert_int_equal(nt_ledger_action_begin(e->l, "offline_block", "{\"block\":18}", T0, &id), 0);
    assert_int_equal(nt_ledger_frame_intent(e->l, PFN_A, 0, T0, &fid), 0);
    assert_int_equal(stats(e->l).pending_actions, 2);
    assert_int_equal(nt_ledger_action_end(e->l, fid, true, "x", 0, T0), -EINVAL);  /* a frame's */
    assert_int_equal(nt_ledger_action_end(e->l, 12345, true, "x", 0, T0), -ENOENT);
    assert_int_equal(nt_ledger_action_end(e->l, id, true, "offline", 0, T0 + 1), 0);
    assert_int_equal(nt_ledger_action_end(e->l, id, true, "offline", 0, T0 + 1), -EINVAL);
    assert_int_equal(nt_ledger_action_begin(e->l, NULL, NULL, T0, NULL), -EINVAL);
    assert_int_equal(stats(e->l).pending_actions, 1);
}

/* ---- crashes --------------------------------------------------------- */

/* The child must not use cmocka: it reports through its exit status. */
#define CHILD_CHECK(cond) do { if (!(cond)) _exit(100 + __LINE__ % 100); } while (0)

static void wait_killed(pid_t pid)
{
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status))
        fail_msg("child exited %d instead of dying", WEXITSTATUS(status));
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
}

static void test_crash_between_intent_and_result(void **state)
{
    struct env *e = *state;
    open_ok(e);
    add(e->l, T0, PFN_B << 12);     /* some history first */
    close_ledger(e);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct nt_ledger *l = NULL;
        char why[256];
        struct nt_ledger_event ev = mce(T0 + SEC, PFN_A << 12);
        int64_t id = 0;
        CHILD_CHECK(nt_ledger_open(e->path, NULL, &l, why, sizeof(why)) == 0);
        CHILD_CHECK(nt_ledger_add_event(l, &ev, &id) == 0);             /* acknowledged */
        CHILD_CHECK(nt_ledger_frame_trigger(l, PFN_A, "threshold", T0 + SEC) == 0);
        CHILD_CHECK(nt_ledger_frame_intent(l, PFN_A, id, T0 + SEC, NULL) == 0);
        /* here the daemon writes soft_offline_page, and dies */
        kill(getpid(), SIGKILL);
        _exit(1);
    }
    wait_killed(pid);

    open_ok(e);
    struct nt_ledger_stats st = stats(e->l);
    assert_int_equal(st.events, 2);                         /* the acknowledged event */
    struct nt_ledger_frame f = frame(e->l, PFN_A);
    assert_int_equal(f.state, NT_FRAME_OFFLINE_PENDING);     /* not offlined */
    assert_int_equal(f.count, 1);
    assert_int_equal(f.attempts, 1);
    struct nt_ledger_action a = { 0 };
    assert_int_equal(nt_ledger_pending(e->l, collect_action, &a), 0);
    assert_int_equal(a.pfn, PFN_A);
    assert_true(a.event_id > 0);
    assert_int_equal(a.started_usec, T0 + SEC);

    /* recovery: the daemon re-checked the frame and found it poisoned */
    assert_int_equal(nt_ledger_frame_result(e->l, PFN_A, NT_FRAME_OFFLINED,
                                            "offline (re-checked after restart)", 0, 0, T0 + DAY), 0);
    assert_int_equal(stats(e->l).pending_actions, 0);
}

/* A writer dies inside BEGIN ... with many inserts; with a one-page cache,
 * SQLite spills the uncommitted pages into the WAL, so recovery must see
 * and ignore them. */
static void test_crash_inside_transaction(void **state)
{
    struct env *e = *state;
    open_ok(e);
    add(e->l, T0, PFN_A << 12);
    close_ledger(e);

    char wal[PATH_MAX + 8];
    snprintf(wal, sizeof(wal), "%s-wal", e->path);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sqlite3 *db = NULL;
        CHILD_CHECK(sqlite3_open(e->path, &db) == SQLITE_OK);
        CHILD_CHECK(sqlite3_exec(db, "PRAGMA cache_size=1; BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
        for (int i = 0; i < 2000; i++) {
            char sql[512];
            snprintf(sql, sizeof(sql), "INSERT INTO events (time_usec, source, addr_valid, phys_addr,"
                     " fields) VALUES (%d, 'mce', 1, %d, '%0300d');"
                     "UPDATE frames SET count = count + 1, state = 'offlined';", i, 0x12345000, i);
            CHILD_CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
        }
        struct stat st;
        CHILD_CHECK(stat(wal, &st) == 0 && st.st_size > 100 * 1024);   /* it did spill */
        kill(getpid(), SIGKILL);
        _exit(1);
    }
    wait_killed(pid);

    open_ok(e);
    struct nt_ledger_stats st = stats(e->l);
    assert_int_equal(st.events, 1);
    struct nt_ledger_frame f = frame(e->l, PFN_A);
    assert_int_equal(f.count, 1);
    assert_int_equal(f.state, NT_FRAME_OK);
    add(e->l, T0 + 1, PFN_A << 12);     /* and the ledger still takes writes */
    assert_int_equal(frame(e->l, PFN_A).count, 2);
}

/* A child killed while nt_ledger_add_events writes a large batch: the
 * batch is all there or not at all, and frame counts match the events. */
static void test_crash_mid_batch(void **state)
{
    struct env *e = *state;
    enum { N = 40000 };
    open_ok(e);
    close_ledger(e);

    char wal[PATH_MAX + 8];
    snprintf(wal, sizeof(wal), "%s-wal", e->path);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct nt_ledger *l = NULL;
        char why[256];
        struct nt_ledger_event *ev = calloc(N, sizeof(*ev));
        CHILD_CHECK(ev && nt_ledger_open(e->path, NULL, &l, why, sizeof(why)) == 0);
        for (int i = 0; i < N; i++)
            ev[i] = mce(T0 + (uint64_t)i, ((PFN_A + (uint64_t)(i % 4)) << 12));
        CHILD_CHECK(nt_ledger_add_events(l, ev, N, NULL) == 0);
        pause();            /* committed: wait to be killed */
        _exit(1);
    }
    /* kill it once the WAL grows, usually before its commit */
    struct stat st;
    for (int i = 0; i < 20000; i++) {
        if (stat(wal, &st) == 0 && st.st_size > 512 * 1024)
            break;
        usleep(500);
    }
    kill(pid, SIGKILL);
    wait_killed(pid);

    open_ok(e);
    uint64_t n = stats(e->l).events;
    assert_true(n == 0 || n == N);
    uint64_t sum = 0;
    for (uint64_t p = PFN_A; p < PFN_A + 4; p++) {
        struct nt_ledger_frame f;
        int r = nt_ledger_frame_get(e->l, p, &f);
        assert_int_equal(r, n ? 0 : -ENOENT);
        sum += r == 0 ? f.count : 0;
    }
    assert_int_equal(sum, n);
    print_message("batch of %d was %s when killed\n", N, n ? "committed" : "uncommitted");
}

/* A second writer holding the lock: the add fails after the busy timeout,
 * cleanly, and succeeds once the lock is gone. */
static void test_busy(void **state)
{
    struct env *e = *state;
    open_ok(e);
    close_ledger(e);
    struct nt_ledger_opts opts = { .busy_timeout_ms = 50 };
    char why[256];
    assert_int_equal(nt_ledger_open(e->path, &opts, &e->l, why, sizeof(why)), 0);
    sqlite3 *db = raw_open(e->path);
    raw_exec(db, "BEGIN IMMEDIATE");
    struct nt_ledger_event ev = mce(T0, 0x1000);
    assert_int_equal(nt_ledger_add_event(e->l, &ev, NULL), -EBUSY);
    raw_exec(db, "ROLLBACK");
    sqlite3_close(db);
    assert_int_equal(nt_ledger_add_event(e->l, &ev, NULL), 0);
    assert_int_equal(stats(e->l).events, 1);
}

/* ---- pruning, iteration, export -------------------------------------- */

static void test_prune_by_age_keeps_frames(void **state)
{
    struct env *e = *state;
    open_ok(e);
    for (uint64_t d = 0; d < 10; d++)
        add(e->l, T0 + d * DAY, (PFN_A + d) << 12);
    int64_t old = add(e->l, T0, PFN_B << 12);
    assert_int_equal(nt_ledger_frame_intent(e->l, PFN_B, old, T0, NULL), 0);
    assert_int_equal(nt_ledger_frame_intent(e->l, PFN_A, 0, T0, NULL), 0);
    assert_int_equal(nt_ledger_frame_result(e->l, PFN_A, NT_FRAME_OFFLINED, "ok", 0, 0, T0), 0);

    /* keep 3 days at T0 + 10 days: events of days 7, 8, 9 */
    assert_int_equal(nt_ledger_prune(e->l, 3 * DAY, 0, T0 + 10 * DAY), 8);
    struct nt_ledger_stats st = stats(e->l);
    assert_int_equal(st.events, 3);
    for (uint64_t d = 0; d < 10; d++)
        assert_int_equal(frame(e->l, PFN_A + d).count, 1);
    assert_int_equal(frame(e->l, PFN_A).state, NT_FRAME_OFFLINED);
    /* the pending intent outlives its pruned event */
    struct nt_ledger_action a = { 0 };
    assert_int_equal(nt_ledger_pending(e->l, collect_action, &a), 0);
    assert_int_equal(a.pfn, PFN_B);
    assert_int_equal(a.event_id, 0);
    assert_int_equal(nt_ledger_frame_result(e->l, PFN_B, NT_FRAME_FAILED, "EIO", EIO, 0, T0), 0);
    assert_int_equal(nt_ledger_prune(e->l, 0, 0, T0 + 10 * DAY), 0);   /* no limits */
}

static void test_prune_by_rows_keeps_frames(void **state)
{
    struct env *e = *state;
    open_ok(e);
    struct nt_ledger_event ev[100];
    for (int i = 0; i < 100; i++)
        ev[i] = mce(T0 + (uint64_t)i, (PFN_A + (uint64_t)(i % 10)) << 12);
    assert_int_equal(nt_ledger_add_events(e->l, ev, 100, NULL), 0);
    assert_int_equal(nt_ledger_prune(e->l, 0, 30, T0 + 100), 70);
    assert_int_equal(stats(e->l).events, 30);
    struct seen s = { 0 };
    assert_int_equal(nt_ledger_recent_events(e->l, 1, collect_event, &s), 0);
    assert_int_equal(s.ev[0].time_usec, T0 + 99);           /* the newest stay */
    for (uint64_t p = PFN_A; p < PFN_A + 10; p++)
        assert_int_equal(frame(e->l, p).count, 10);
    assert_int_equal(nt_ledger_prune(e->l, 0, 30, T0 + 100), 0);
    assert_int_equal(nt_ledger_prune(e->l, DAY, 1000, T0 + 100), 0);
}

struct pfns {
    int n;
    uint64_t pfn[8];
    enum nt_frame_state state[8];
};

static int collect_frame(const struct nt_ledger_frame *f, void *ud)
{
    struct pfns *p = ud;
    assert_true(p->n < 8);
    p->pfn[p->n] = f->pfn;
    p->state[p->n++] = f->state;
    return 0;
}

static void set_state(struct nt_ledger *l, uint64_t pfn, enum nt_frame_state s)
{
    add(l, T0, pfn << 12);
    if (s == NT_FRAME_OK)
        return;
    assert_int_equal(nt_ledger_frame_intent(l, pfn, 0, T0, NULL), 0);
    if (s != NT_FRAME_OFFLINE_PENDING)
        assert_int_equal(nt_ledger_frame_result(l, pfn, s, "r", 0, s == NT_FRAME_TRIGGERED ? T0 + 9 : 0, T0), 0);
}

static void test_frames_offlined(void **state)
{
    struct env *e = *state;
    open_ok(e);
    set_state(e->l, 0x500, NT_FRAME_OFFLINED);
    set_state(e->l, 0x100, NT_FRAME_ALREADY_OFFLINE);
    set_state(e->l, 0x200, NT_FRAME_FAILED);
    set_state(e->l, 0x300, NT_FRAME_OK);
    set_state(e->l, 0x400, NT_FRAME_OFFLINE_PENDING);
    set_state(e->l, 0x050, NT_FRAME_OFFLINED);
    set_state(e->l, 0x600, NT_FRAME_TRIGGERED);

    struct pfns p = { 0 };
    assert_int_equal(nt_ledger_frames_offlined(e->l, collect_frame, &p), 0);
    assert_int_equal(p.n, 3);
    assert_int_equal(p.pfn[0], 0x050);
    assert_int_equal(p.pfn[1], 0x100);
    assert_int_equal(p.state[1], NT_FRAME_ALREADY_OFFLINE);
    assert_int_equal(p.pfn[2], 0x500);

    /* after a reboot: offline again, through the same intent/result steps */
    assert_int_equal(nt_ledger_frame_intent(e->l, 0x500, 0, T0 + DAY, NULL), 0);
    assert_int_equal(nt_ledger_frame_result(e->l, 0x500, NT_FRAME_OFFLINED, "re-offlined", 0, 0, T0 + DAY), 0);
    assert_int_equal(frame(e->l, 0x500).attempts, 2);

    /* a re-offline that gave up: no longer offline, still to try at the
     * next boot; 0x200 failed its first offline and stays failed */
    assert_int_equal(nt_ledger_frame_intent(e->l, 0x050, 0, T0 + DAY, NULL), 0);
    assert_int_equal(nt_ledger_frame_result(e->l, 0x050, NT_FRAME_FAILED, "EIO", EIO, 0, T0 + DAY), 0);
    p = (struct pfns){ 0 };
    assert_int_equal(nt_ledger_frames_offlined(e->l, collect_frame, &p), 0);
    assert_int_equal(p.n, 2);
    assert_int_equal(p.pfn[0], 0x100);
    p = (struct pfns){ 0 };
    assert_int_equal(nt_ledger_frames_to_reoffline(e->l, collect_frame, &p), 0);
    assert_int_equal(p.n, 3);
    assert_int_equal(p.pfn[0], 0x050);
    assert_int_equal(p.state[0], NT_FRAME_FAILED);
    assert_int_equal(p.pfn[1], 0x100);
    assert_int_equal(p.pfn[2], 0x500);

    p = (struct pfns){ 0 };
    assert_int_equal(nt_ledger_frames(e->l, 0, collect_frame, &p), 0);
    assert_int_equal(p.n, 7);
    struct nt_ledger_stats st = stats(e->l);
    assert_int_equal(st.frames[NT_FRAME_OFFLINED], 1);
    assert_int_equal(st.frames[NT_FRAME_FAILED], 2);
    assert_int_equal(st.frames[NT_FRAME_OFFLINE_PENDING], 1);
    assert_int_equal(st.retries_planned, 1);
}

struct groups {
    int n;
    struct nt_ledger_group g[4];
};

static int collect_group(const struct nt_ledger_group *g, void *ud)
{
    struct groups *gs = ud;
    assert_true(gs->n < 4);
    gs->g[gs->n++] = *g;
    return 0;
}

static void test_groups_and_json(void **state)
{
    struct env *e = *state;
    open_ok(e);
    struct nt_ledger_event ev[4] = { mce(T0, 0x1000), mce(T0, 0x1000), mce(T0, 0x2000),
                                     mce(T0, 0x8000000) };       /* block 1 */
    ev[3].node = 1;
    ev[3].fields_json = "not json {";
    assert_int_equal(nt_ledger_add_events(e->l, ev, 4, NULL), 0);
    assert_int_equal(nt_ledger_frame_intent(e->l, 1, 0, T0, NULL), 0);
    assert_int_equal(nt_ledger_frame_result(e->l, 1, NT_FRAME_OFFLINED, "ok", 0, 0, T0), 0);

    struct groups gs = { 0 };
    assert_int_equal(nt_ledger_groups(e->l, collect_group, &gs), 0);
    assert_int_equal(gs.n, 2);
    assert_int_equal(gs.g[0].node, 0);
    assert_int_equal(gs.g[0].memory_block, 0);
    assert_int_equal(gs.g[0].frames, 2);
    assert_int_equal(gs.g[0].errors, 3);
    assert_int_equal(gs.g[0].by_state[NT_FRAME_OFFLINED], 1);
    assert_int_equal(gs.g[0].by_state[NT_FRAME_OK], 1);
    assert_int_equal(gs.g[1].node, 1);
    assert_int_equal(gs.g[1].memory_block, 1);

    json_object *j = NULL;
    assert_int_equal(nt_ledger_to_json(e->l, 2, &j), 0);
    json_object *v;
    assert_true(json_object_object_get_ex(j, "recent_events", &v));
    assert_int_equal(json_object_array_length(v), 2);
    json_object *newest = json_object_array_get_idx(v, 0), *fields;
    assert_true(json_object_object_get_ex(newest, "fields", &fields));
    assert_string_equal(json_object_get_string(fields), "not json {");   /* kept as text */
    assert_true(json_object_object_get_ex(j, "offlined", &v));
    assert_int_equal(json_object_array_length(v), 1);
    assert_true(json_object_object_get_ex(j, "groups", &v));
    assert_int_equal(json_object_array_length(v), 2);
    assert_true(json_object_object_get_ex(j, "stats", &v));
    assert_true(json_object_object_get_ex(v, "events", &v));
    assert_int_equal(json_object_get_int(v), 4);
    json_object_put(j);
}

/* ---- replay and integrity -------------------------------------------- */

struct since {
    int n;
    int64_t id[8];
    uint64_t pfn[8];
};

static int collect_since(int64_t id, const struct nt_ledger_event *ev, void *ud)
{
    struct since *s = ud;
    assert_true(ev->addr_valid);
    if (s->n < 8) {
        s->id[s->n] = id;
        s->pfn[s->n] = ev->phys_addr >> 12;
    }
    s->n++;
    return 0;
}

/* Events since a time, of frames in the given states, oldest first. */
static void test_events_since(void **state)
{
    struct env *e = *state;
    open_ok(e);
    add(e->l, T0, PFN_A << 12);                         /* too old */
    int64_t a1 = add(e->l, T0 + DAY, PFN_A << 12);
    int64_t b1 = add(e->l, T0 + DAY + 1, PFN_B << 12);
    struct nt_ledger_event noaddr = { .time_usec = T0 + DAY + 2, .source = "mce" };
    assert_int_equal(nt_ledger_add_event(e->l, &noaddr, NULL), 0);
    int64_t a2 = add(e->l, T0 + DAY + 3, PFN_A << 12);

    struct since s = { 0 };
    unsigned counting = NT_FRAME_MASK(NT_FRAME_OK) | NT_FRAME_MASK(NT_FRAME_TRIGGERED);
    assert_int_equal(nt_ledger_events_since(e->l, T0 + DAY, counting, collect_since, &s), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.id[0], a1);
    assert_int_equal(s.id[1], b1);
    assert_int_equal(s.id[2], a2);
    assert_int_equal(s.pfn[1], PFN_B);

    /* B offlined: its events no longer count */
    assert_int_equal(nt_ledger_frame_intent(e->l, PFN_B, b1, T0 + DAY + 4, NULL), 0);
    assert_int_equal(nt_ledger_frame_result(e->l, PFN_B, NT_FRAME_OFFLINED, "ok", 0, 0, T0 + DAY + 5), 0);
    s = (struct since){ 0 };
    assert_int_equal(nt_ledger_events_since(e->l, T0 + DAY, counting, collect_since, &s), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.pfn[0], PFN_A);
    assert_int_equal(s.pfn[1], PFN_A);
    s = (struct since){ 0 };
    assert_int_equal(nt_ledger_events_since(e->l, 0, 0, collect_since, &s), 0);
    assert_int_equal(s.n, 4);
}

struct problems {
    int n;
    char text[16][256];
};

static int collect_problem(const char *p, void *ud)
{
    struct problems *ps = ud;
    if (ps->n < 16)
        snprintf(ps->text[ps->n], sizeof(ps->text[0]), "%s", p);
    ps->n++;
    return 0;
}

static void assert_problem(const struct problems *ps, const char *sub)
{
    for (int i = 0; i < ps->n && i < 16; i++)
        if (strstr(ps->text[i], sub))
            return;
    for (int i = 0; i < ps->n && i < 16; i++)
        print_message("problem: %s\n", ps->text[i]);
    fail_msg("no problem mentions \"%s\"", sub);
}

static void offline_in_boot(struct nt_ledger *l, uint64_t pfn, const char *boot, uint64_t t)
{
    char detail[64];
    snprintf(detail, sizeof(detail), "{\"boot_id\":\"%s\"}", boot);
    assert_int_equal(nt_ledger_frame_intent_detail(l, pfn, 0, detail, t, NULL), 0);
    assert_int_equal(nt_ledger_frame_result(l, pfn, NT_FRAME_OFFLINED, "soft-offlined", 0, 0, t + 1), 0);
}

/* A ledger used as the daemon uses it passes, a re-offline in a later
 * boot included. */
static void test_check_clean(void **state)
{
    struct env *e = *state;
    open_ok(e);
    struct problems ps = { 0 };
    struct nt_ledger_check_counts n;
    assert_int_equal(nt_ledger_check(e->l, collect_problem, &ps, &n), 0);
    assert_int_equal(n.offlines_done, 0);

    add(e->l, T0, PFN_A << 12);
    add(e->l, T0 + 1, PFN_A << 12);
    assert_int_equal(nt_ledger_frame_trigger(e->l, PFN_A, "2 errors", T0 + 2), 0);
    assert_int_equal(nt_ledger_frame_intent(e->l, PFN_A, 0, T0 + 3, NULL), 0);
    assert_int_equal(nt_ledger_frame_result(e->l, PFN_A, NT_FRAME_TRIGGERED, "EBUSY", EBUSY, T0 + 10, T0 + 4), 0);
    offline_in_boot(e->l, PFN_A, "one", T0 + 10);
    offline_in_boot(e->l, PFN_A, "two", T0 + DAY);      /* re-offline after a reboot */
    assert_int_equal(nt_ledger_frame_intent(e->l, PFN_B, 0, T0 + DAY, NULL), 0);  /* open intent */
    assert_int_equal(nt_ledger_prune(e->l, 0, 1, T0 + DAY), 1);  /* pruning keeps counts consistent */
    assert_int_equal(nt_ledger_check(e->l, collect_problem, &ps, &n), 0);
    assert_int_equal(ps.n, 0);
    assert_int_equal(n.offlines_done, 2);
    assert_int_equal(n.frames_offline, 1);
}

/* Acting on a frame twice in one boot, through the API itself. */
static void test_check_finds_double_offline(void **state)
{
    struct env *e = *state;
    open_ok(e);
    offline_in_boot(e->l, PFN_A, "one", T0);
    offline_in_boot(e->l, PFN_A, "one", T0 + 10);
    struct problems ps = { 0 };
    assert_int_equal(nt_ledger_check(e->l, collect_problem, &ps, NULL), 1);
    assert_problem(&ps, "frame 0x12345 was soft-offlined 2 times in boot one");
}

/* Damage done behind the ledger's back (foreign keys off, as any other
 * program has them), each kind found and named. */
static void test_check_finds_damage(void **state)
{
    struct env *e = *state;
    open_ok(e);
    add(e->l, T0, PFN_A << 12);
    add(e->l, T0 + 1, PFN_A << 12);
    offline_in_boot(e->l, PFN_B, "one", T0 + 2);
    close_ledger(e);

    sqlite3 *db = raw_open(e->path);
    raw_exec(db, "UPDATE frames SET count = 1 WHERE pfn = 74565");              /* PFN_A: 2 events */
    raw_exec(db, "UPDATE frames SET state = 'offline_pending' WHERE pfn = 74565");
    raw_exec(db, "INSERT INTO actions (kind, pfn, state, started_usec) VALUES ('soft_offline', 4096, 'pending', 1)");
    raw_exec(db, "INSERT INTO actions (kind, state, started_usec, finished_usec)"
                 " VALUES ('soft_offline', 'done', 1, 2)");
    raw_exec(db, "UPDATE actions SET finished_usec = NULL WHERE pfn = 262144");  /* PFN_B */
    raw_exec(db, "UPDATE frames SET attempts = 0 WHERE pfn = 262144");
    sqlite3_close(db);

    open_ok(e);
    struct problems ps = { 0 };
    int found = nt_ledger_check(e->l, collect_problem, &ps, NULL);
    assert_int_equal(found, ps.n);
    assert_problem(&ps, "frame 0x12345: 2 events kept at its address, but a count of 1");
    assert_problem(&ps, "frame 0x12345 is offline_pending without an open intent");
    assert_problem(&ps, "frame 0x1000 has an open intent (action 2) but is not in frames");
    assert_problem(&ps, "actions row 2: the frames row it references is missing");
    assert_problem(&ps, "soft_offline action 3 names no frame");
    assert_problem(&ps, "action 1 is done but has no finish time");
    assert_problem(&ps, "frame 0x40000: 0 attempts, but 1 soft_offline actions kept");
    assert_int_equal(found, 8);         /* action 2 also names a frame not in frames */
}

/* Many problems of one kind: a few spelled out, all counted. */
static void test_check_caps_reports(void **state)
{
    struct env *e = *state;
    open_ok(e);
    for (uint64_t i = 0; i < 9; i++)
        add(e->l, T0 + i, (PFN_A + i) << 12);
    close_ledger(e);
    sqlite3 *db = raw_open(e->path);
    raw_exec(db, "UPDATE frames SET count = 0");
    sqlite3_close(db);
    open_ok(e);
    struct problems ps = { 0 };
    assert_int_equal(nt_ledger_check(e->l, collect_problem, &ps, NULL), 9);
    assert_int_equal(ps.n, 6);
    assert_problem(&ps, "... and 4 more");
}

/* ---- schema v3: offline jobs ------------------------------------------- */

/* A v2 ledger (events, frames, actions, one intent pending) migrates up:
 * every row survives, the job tables work, and the schema is a fresh one's. */
static void test_migrate_from_v2(void **state)
{
    struct env *e = *state;
    load_sql(e->path, fixture("v2.sql"));
    open_ok(e);
    assert_int_equal(nt_ledger_schema_version(e->l), NT_LEDGER_SCHEMA_VERSION);
    struct nt_ledger_stats st = stats(e->l);
    assert_int_equal(st.events, 3);
    assert_int_equal(st.frames[NT_FRAME_OFFLINED], 1);
    assert_int_equal(st.frames[NT_FRAME_OFFLINE_PENDING], 1);
    assert_int_equal(st.pending_actions, 1);
    assert_int_equal(frame(e->l, PFN_A).updated_usec, T0 + 500000);

    struct nt_job_block blocks[] = { { .block = 40, .node = 2, .before = "online", .restore = "online_movable",
                                       .want = "offline", .now = "online", .result = NT_BLOCK_PENDING } };
    struct nt_job job = { .op = NT_OFFLINE_OP_OFFLINE, .target = "block 40", .target_node = -1,
                          .state = NT_JOB_RUNNING, .phase = NT_JOB_OFFLINING, .rollback = true,
                          .timeout_usec = 60 * SEC, .started_usec = T0, .blocks = blocks, .nr_blocks = 1 };
    assert_int_equal(nt_ledger_job_insert(e->l, &job), 0);
    assert_true(job.id > 0);
    snprintf(blocks[0].writing, sizeof(blocks[0].writing), "offline");
    assert_int_equal(nt_ledger_job_block_update(e->l, &job, 0), 0);
    int64_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(nt_ledger_jobs_unfinished(e->l, &ids, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], job.id);
    free(ids);
    struct nt_job *back = NULL;
    assert_int_equal(nt_ledger_job_load(e->l, job.id, &back), 0);
    assert_string_equal(back->blocks[0].writing, "offline");
    assert_string_equal(back->target, "block 40");
    nt_job_free(back);
    close_ledger(e);

    assert_schema_is_fresh(e);
}

/* ---- schema v4: the threads a drain pinned -------------------------------- */

/* A v3 ledger with a history of jobs migrates to v4: the jobs survive, a
 * drain's pins are journaled and read back, the schema is a fresh one's,
 * and the nodes still drained come out of the jobs alone. */
static void test_migrate_from_v3(void **state)
{
    struct env *e = *state;
    load_sql(e->path, fixture("v3.sql"));
    open_ok(e);
    assert_int_equal(nt_ledger_schema_version(e->l), 4);
    assert_int_equal(stats(e->l).events, 3);
    struct nt_job *old = NULL;
    assert_int_equal(nt_ledger_job_load(e->l, 6, &old), 0);
    assert_int_equal(old->op, NT_OFFLINE_OP_ONLINE);
    assert_int_equal(old->state, NT_JOB_ROLLED_BACK);
    assert_int_equal(old->nr_blocks, 1);
    assert_int_equal(old->nr_pins, 0);
    nt_job_free(old);

    struct nt_drain_ref *d = NULL;
    size_t n = 0;
    assert_int_equal(nt_ledger_drains_open(e->l, &d, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(d[0].node, 1);
    assert_int_equal(d[0].job_id, 3);
    assert_int_equal(d[1].node, 2);
    assert_int_equal(d[1].job_id, 8);
    free(d);

    /* a new drain of node 3 with a pin; then `online node 1` ends node 1's */
    struct nt_job_pin pins[] = { { .pid = 4242, .start_time = 777, .boot_id = "b00t", .comm = "memhog",
                                   .cpus_before = "0-1", .cpus_set = "0", .threads = 3 } };
    struct nt_job drain = { .op = NT_OFFLINE_OP_DRAIN, .target = "node 3", .target_node = 3,
                            .state = NT_JOB_RUNNING, .phase = NT_JOB_DRAINING, .cpu_node = 0,
                            .timeout_usec = 60 * SEC, .started_usec = T0 + DAY, .pins = pins, .nr_pins = 1 };
    assert_int_equal(nt_ledger_job_insert(e->l, &drain), 0);
    struct nt_job_pin_ref *refs = NULL;
    assert_int_equal(nt_ledger_pins_open(e->l, 3, &refs, &n), 0);
    assert_int_equal(n, 0);                             /* running: not yet for online to undo */
    free(refs);
    drain.state = NT_JOB_SUCCEEDED;
    drain.phase = NT_JOB_DONE;
    assert_int_equal(nt_ledger_job_update(e->l, &drain), 0);
    assert_int_equal(nt_ledger_pins_open(e->l, 3, &refs, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(refs[0].job_id, drain.id);
    assert_int_equal(refs[0].seq, 0);
    assert_int_equal(refs[0].pin.pid, 4242);
    assert_int_equal(refs[0].pin.start_time, 777);
    assert_string_equal(refs[0].pin.boot_id, "b00t");
    assert_string_equal(refs[0].pin.comm, "memhog");
    assert_string_equal(refs[0].pin.cpus_before, "0-1");
    assert_string_equal(refs[0].pin.cpus_set, "0");
    assert_int_equal(refs[0].pin.threads, 3);
    assert_false(refs[0].pin.restored);
    free(refs);
    assert_int_equal(nt_ledger_pin_mark_restored(e->l, drain.id, 0), 0);
    assert_int_equal(nt_ledger_pins_open(e->l, 3, &refs, &n), 0);
    assert_int_equal(n, 0);
    free(refs);
    struct nt_job *back = NULL;
    assert_int_equal(nt_ledger_job_load(e->l, drain.id, &back), 0);
    assert_int_equal(back->nr_pins, 1);
    assert_true(back->pins[0].restored);
    nt_job_free(back);

    struct nt_job online = { .op = NT_OFFLINE_OP_ONLINE, .target = "node 1", .target_node = 1,
                             .state = NT_JOB_SUCCEEDED, .phase = NT_JOB_DONE, .cpu_node = -1,
                             .timeout_usec = 60 * SEC, .started_usec = T0 + DAY };
    assert_int_equal(nt_ledger_job_insert(e->l, &online), 0);
    assert_int_equal(nt_ledger_drains_open(e->l, &d, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(d[0].node, 2);
    assert_int_equal(d[1].node, 3);
    assert_int_equal(d[1].job_id, drain.id);
    free(d);
    close_ledger(e);

    assert_schema_is_fresh(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_wal_v2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_newer_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_foreign_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_corrupt_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_unusable_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_intent_then_offlined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_intent_then_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ebusy_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_machine_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generic_actions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_between_intent_and_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_inside_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_mid_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_by_age_keeps_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_by_rows_keeps_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frames_offlined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_groups_and_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_since, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_clean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_finds_double_offline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_finds_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_caps_reports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v3, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
