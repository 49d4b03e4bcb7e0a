/* The RAS ledger in SQLite; see include/numatier/ledger.h for the
 * guarantees.
 *
 * Durability: WAL with synchronous=FULL, so COMMIT returns only after the
 * WAL is fsync'd. With NORMAL, WAL survives a process crash but a power
 * loss or kernel panic may roll back the last commits; memory errors are
 * exactly what comes before a machine check panic, so an acknowledged
 * event must already be on disk. The fsync per commit is why events are
 * added in batches (nt_ledger_add_events: one transaction per batch).
 *
 * Every write is one BEGIN IMMEDIATE ... COMMIT; a tx variable with a
 * cleanup attribute rolls back whatever was not committed. */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numatier/ledger.h"
#include "numatier/ledger-jobs.h"
#include "numatier/util.h"

#define DEFAULT_BUSY_MS 5000
#define PAGE_SHIFT      12      /* frames are 4 KiB, as the ECC policy counts them */

struct nt_ledger {
    sqlite3 *db;
    char err[256];
};

static const char *const state_names[NT_FRAME_NR_STATES] = {
    [NT_FRAME_OK] = "ok",
    [NT_FRAME_TRIGGERED] = "triggered",
    [NT_FRAME_OFFLINE_PENDING] = "offline_pending",
    [NT_FRAME_OFFLINED] = "offlined",
    [NT_FRAME_FAILED] = "failed",
    [NT_FRAME_ALREADY_OFFLINE] = "already_offline",
};

const char *nt_frame_state_to_string(enum nt_frame_state s)
{
    return (unsigned)s < NT_FRAME_NR_STATES ? state_names[s] : "invalid";
}

int nt_frame_state_from_string(const char *s)
{
    for (int i = 0; s && i < NT_FRAME_NR_STATES; i++)
        if (strcmp(s, state_names[i]) == 0)
            return i;
    return -EINVAL;
}

/* ---- schema ---------------------------------------------------------- */

/* migrations[i] takes user_version i to i + 1. Released entries are frozen:
 * change the schema only by appending (tests/fixtures/ledger/v1.sql is
 * migration 1 as shipped, and the tests check a migrated copy equals a
 * fresh database). */
static const char *const migrations[] = {
    /* v1: events and frames. */
    "CREATE TABLE events (\n"
    "    id           INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "    time_usec    INTEGER NOT NULL,\n"
    "    source       TEXT NOT NULL,\n"
    "    addr_valid   INTEGER NOT NULL CHECK (addr_valid IN (0, 1)),\n"
    "    phys_addr    INTEGER CHECK (phys_addr IS NULL OR addr_valid = 1),\n"
    "    fields       TEXT,\n"
    "    action       TEXT,\n"
    "    result       TEXT,\n"
    "    errno        INTEGER NOT NULL DEFAULT 0,\n"
    "    node         INTEGER,\n"
    "    memory_block INTEGER\n"
    ");\n"
    "CREATE TABLE frames (\n"
    "    pfn             INTEGER PRIMARY KEY,\n"
    "    state           TEXT NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'triggered',\n"
    "                        'offline_pending', 'offlined', 'failed', 'already_offline')),\n"
    "    count           INTEGER NOT NULL DEFAULT 0,\n"
    "    first_usec      INTEGER NOT NULL,\n"
    "    last_usec       INTEGER NOT NULL,\n"
    "    last_result     TEXT,\n"
    "    attempts        INTEGER NOT NULL DEFAULT 0,\n"
    "    next_retry_usec INTEGER NOT NULL DEFAULT 0,\n"
    "    reason          TEXT,\n"
    "    node            INTEGER,\n"
    "    memory_block    INTEGER\n"
    ");\n",

    /* v2: intents (actions), the last errno and change time per frame,
     * indexes. v1 kept no intents: a frame it left offline_pending gets a
     * pending action, so recovery re-checks it like any other. */
    "ALTER TABLE frames ADD COLUMN last_errno INTEGER NOT NULL DEFAULT 0;\n"
    "ALTER TABLE frames ADD COLUMN updated_usec INTEGER NOT NULL DEFAULT 0;\n"
    "CREATE TABLE actions (\n"
    "    id            INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "    kind          TEXT NOT NULL,\n"
    "    pfn           INTEGER REFERENCES frames (pfn),\n"
    "    event_id      INTEGER REFERENCES events (id) ON DELETE SET NULL,\n"
    "    state         TEXT NOT NULL DEFAULT 'pending'\n"
    "                      CHECK (state IN ('pending', 'done', 'failed')),\n"
    "    started_usec  INTEGER NOT NULL,\n"
    "    finished_usec INTEGER,\n"
    "    detail        TEXT,\n"
    "    result        TEXT,\n"
    "    errno         INTEGER NOT NULL DEFAULT 0\n"
    ");\n"
    "CREATE INDEX events_time ON events (time_usec);\n"
    "CREATE INDEX frames_state ON frames (state);\n"
    "CREATE INDEX actions_event ON actions (event_id);\n"
    "CREATE INDEX actions_pending ON actions (state) WHERE state = 'pending';\n"
    "UPDATE frames SET updated_usec = last_usec;\n"
    "INSERT INTO actions (kind, pfn, state, started_usec, detail)\n"
    "    SELECT 'soft_offline', pfn, 'pending', last_usec, '{\"migrated_from\":1}'\n"
    "    FROM frames WHERE state = 'offline_pending' ORDER BY pfn;\n",

    /* v3: offline/online/drain jobs (daemon/ledger-jobs.c), their blocks in
     * plan order and the processes they rebound. */
    "CREATE TABLE jobs (\n"
    "    id            INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "    op            TEXT NOT NULL CHECK (op IN ('offline', 'online', 'drain')),\n"
    "    target        TEXT NOT NULL,\n"
    "    target_node   INTEGER NOT NULL DEFAULT -1,\n"
    "    state         TEXT NOT NULL CHECK (state IN ('running', 'rolling-back', 'succeeded',\n"
    "                      'failed', 'rolled-back', 'interrupted')),\n"
    "    phase         TEXT NOT NULL,\n"
    "    rollback      INTEGER NOT NULL CHECK (rollback IN (0, 1)),\n"
    "    force         INTEGER NOT NULL DEFAULT 0 CHECK (force IN (0, 1)),\n"
    "    resumed       INTEGER NOT NULL DEFAULT 0 CHECK (resumed IN (0, 1)),\n"
    "    cpu_node      INTEGER NOT NULL DEFAULT -1,\n"
    "    timeout_usec  INTEGER NOT NULL,\n"
    "    started_usec  INTEGER NOT NULL,\n"
    "    finished_usec INTEGER NOT NULL DEFAULT 0,\n"
    "    bytes_moved   INTEGER NOT NULL DEFAULT 0,\n"
    "    message       TEXT,\n"
    "    plan          TEXT\n"
    ");\n"
    "CREATE TABLE job_blocks (\n"
    "    job_id   INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,\n"
    "    seq      INTEGER NOT NULL,\n"
    "    block    INTEGER NOT NULL,\n"
    "    node     INTEGER NOT NULL DEFAULT -1,\n"
    "    before   TEXT NOT NULL,\n"
    "    restore  TEXT NOT NULL,\n"
    "    want     TEXT NOT NULL,\n"
    "    now      TEXT NOT NULL,\n"
    "    writing  TEXT,\n"
    "    result   TEXT NOT NULL DEFAULT 'pending' CHECK (result IN ('pending', 'offlined',\n"
    "                 'onlined', 'skipped', 'failed', 'timeout', 'rolled-back', 'rollback-failed')),\n"
    "    attempts INTEGER NOT NULL DEFAULT 0,\n"
    "    reason   TEXT,\n"
    "    PRIMARY KEY (job_id, seq)\n"
    ");\n"
    "CREATE TABLE job_rebinds (\n"
    "    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,\n"
    "    seq         INTEGER NOT NULL,\n"
    "    pid         INTEGER NOT NULL,\n"
    "    comm        TEXT,\n"
    "    kind        TEXT NOT NULL CHECK (kind IN ('cpuset', 'mempolicy')),\n"
    "    from_nodes  TEXT NOT NULL,\n"
    "    to_node     INTEGER NOT NULL,\n"
    "    cgroup      TEXT,\n"
    "    mems_before TEXT,\n"
    "    applied     INTEGER NOT NULL DEFAULT 0 CHECK (applied IN (0, 1)),\n"
    "    restored    INTEGER NOT NULL DEFAULT 0 CHECK (restored IN (0, 1)),\n"
    "    PRIMARY KEY (job_id, seq)\n"
    ");\n"
    "CREATE INDEX jobs_unfinished ON jobs (state) WHERE state IN ('running', 'rolling-back');\n",

    /* v4: the processes whose threads a drain pinned off its node, for
     * `online node N` to put back when it ends the drain (also after a
     * restart: the instance is told by pid, start time and boot). */
    "CREATE TABLE job_pins (\n"
    "    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,\n"
    "    seq         INTEGER NOT NULL,\n"
    "    pid         INTEGER NOT NULL,\n"
    "    start_time  INTEGER NOT NULL,\n"
    "    boot_id     TEXT,\n"
    "    comm        TEXT,\n"
    "    cpus_before TEXT NOT NULL,\n"
    "    cpus_set    TEXT NOT NULL,\n"
    "    threads     INTEGER NOT NULL DEFAULT 0,\n"
    "    restored    INTEGER NOT NULL DEFAULT 0 CHECK (restored IN (0, 1)),\n"
    "    PRIMARY KEY (job_id, seq)\n"
    ");\n",
};

_Static_assert(NT_ARRAY_SIZE(migrations) == NT_LEDGER_SCHEMA_VERSION,
               "one migration per schema version");

/* ---- errors and statements ------------------------------------------- */

static int errno_of(sqlite3 *db, int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK: case SQLITE_DONE: case SQLITE_ROW: return 0;
    case SQLITE_CORRUPT: case SQLITE_NOTADB: case SQLITE_FORMAT: return -EBADMSG;
    case SQLITE_BUSY: case SQLITE_LOCKED: return -EBUSY;
    case SQLITE_NOMEM: return -ENOMEM;
    case SQLITE_FULL: return -ENOSPC;
    case SQLITE_READONLY: return -EROFS;
    case SQLITE_PERM: case SQLITE_AUTH: return -EACCES;
    case SQLITE_CONSTRAINT: case SQLITE_MISMATCH: case SQLITE_RANGE: return -EINVAL;
    case SQLITE_CANTOPEN: {
        int e = db ? sqlite3_system_errno(db) : 0;
        return e > 0 ? -e : -ENOENT;
    }
    default: return -EIO;
    }
}

static int set_err(struct nt_ledger *l, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int set_err(struct nt_ledger *l, int r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->err, sizeof(l->err), fmt, ap);
    va_end(ap);
    return r;
}

/* Record SQLite's message and map its code to negative errno. */
static int db_fail(struct nt_ledger *l, int rc)
{
    return set_err(l, errno_of(l->db, rc), "%s", sqlite3_errmsg(l->db));
}

const char *nt_ledger_last_error(const struct nt_ledger *l)
{
    return l ? l->err : "no ledger";
}

static void finalizep(sqlite3_stmt **s) { sqlite3_finalize(*s); }
#define _cleanup_stmt_ _cleanup_(finalizep)

static int prepare(struct nt_ledger *l, const char *sql, sqlite3_stmt **out)
{
    int rc = sqlite3_prepare_v2(l->db, sql, -1, out, NULL);
    return rc == SQLITE_OK ? 0 : db_fail(l, rc);
}

static int exec(struct nt_ledger *l, const char *sql)
{
    int rc = sqlite3_exec(l->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : db_fail(l, rc);
}

/* Step a write; reset so the statement can be bound again. */
static int step_done(struct nt_ledger *l, sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    int r = rc == SQLITE_DONE ? 0 : db_fail(l, rc);
    sqlite3_reset(s);
    return r;
}

static int bind_text(sqlite3_stmt *s, int i, const char *v)
{
    return v ? sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(s, i);
}

/* SQLite integers are signed 64-bit; everything we store fits below 2^63. */
static int bind_u64(sqlite3_stmt *s, int i, uint64_t v)
{
    return v > INT64_MAX ? SQLITE_RANGE : sqlite3_bind_int64(s, i, (int64_t)v);
}

static int bind_opt(sqlite3_stmt *s, int i, int64_t v)
{
    return v < 0 ? sqlite3_bind_null(s, i) : sqlite3_bind_int64(s, i, v);
}

static const char *col_text(sqlite3_stmt *s, int i)
{
    return (const char *)sqlite3_column_text(s, i);
}

static int64_t col_opt(sqlite3_stmt *s, int i)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, i);
}

static void copy_text(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
}

/* ---- transactions ---------------------------------------------------- */

static void tx_abortp(struct nt_ledger **l)
{
    if (*l && !sqlite3_get_autocommit((*l)->db))
        sqlite3_exec((*l)->db, "ROLLBACK", NULL, NULL, NULL);
}
#define _cleanup_tx_ _cleanup_(tx_abortp)

/* IMMEDIATE takes the write lock now, so a busy database fails here (after
 * the busy timeout) rather than half-way through. */
static int tx_begin(struct nt_ledger *l, struct nt_ledger **tx)
{
    int r = exec(l, "BEGIN IMMEDIATE");
    if (r == 0)
        *tx = l;
    return r;
}

static int tx_commit(struct nt_ledger **tx)
{
    int r = exec(*tx, "COMMIT");
    if (r == 0)
        *tx = NULL;
    return r;
}

/* ---- open and migrate ------------------------------------------------ */

static int pragma_int(struct nt_ledger *l, const char *sql, int64_t *out)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(l, sql, &s);
    if (r < 0)
        return r;
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? set_err(l, -EIO, "%s: no answer", sql) : db_fail(l, rc);
    *out = sqlite3_column_int64(s, 0);
    return 0;
}

static int count_schema_objects(struct nt_ledger *l, int64_t *n)
{
    return pragma_int(l, "SELECT count(*) FROM sqlite_master", n);
}

/* Is this our file, and can this code read it? Nothing is written yet. */
static int check_identity(struct nt_ledger *l, bool *fresh)
{
    int64_t app = 0, ver = 0, objs = 0;
    int r = pragma_int(l, "PRAGMA application_id", &app);
    if (r == 0)
        r = pragma_int(l, "PRAGMA user_version", &ver);
    if (r == 0)
        r = count_schema_objects(l, &objs);
    if (r < 0)
        return r;
    *fresh = app == 0 && ver == 0 && objs == 0;
    if (*fresh)
        return 0;
    if (app != NT_LEDGER_APPLICATION_ID)
        return set_err(l, -EBADMSG, "not a numatier ledger (application_id 0x%" PRIx64
                       ", %" PRId64 " schema objects)", app, objs);
    if (ver > NT_LEDGER_SCHEMA_VERSION)
        return set_err(l, -EPROTONOSUPPORT, "ledger schema v%" PRId64 " is newer than this "
                       "numatierd (v%d): refusing to touch it", ver, NT_LEDGER_SCHEMA_VERSION);
    return 0;
}

/* Run a PRAGMA that answers one text row; *out lives as long as *s. */
static int pragma_text(struct nt_ledger *l, const char *sql, sqlite3_stmt **s, const char **out)
{
    int r = prepare(l, sql, s);
    if (r < 0)
        return r;
    int rc = sqlite3_step(*s);
    if (rc != SQLITE_ROW)
        return db_fail(l, rc);
    *out = col_text(*s, 0);
    return 0;
}

static int quick_check(struct nt_ledger *l)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    const char *res;
    int r = pragma_text(l, "PRAGMA quick_check(1)", &s, &res);
    if (r < 0)
        return r;
    if (res && strcmp(res, "ok") == 0)
        return 0;
    /* one line for the log: "*** in database main ***\nPage 3: ..." */
    const char *nl = res ? strchr(res, '\n') : NULL;
    set_err(l, -EBADMSG, "database is corrupt (integrity check: %s)", nl ? nl + 1 : res ? res : "?");
    for (char *p = l->err; (p = strchr(p, '\n')); )
        *p = ' ';
    return -EBADMSG;
}

static int set_journal_wal(struct nt_ledger *l)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    const char *mode;
    int r = pragma_text(l, "PRAGMA journal_mode=WAL", &s, &mode);
    if (r < 0)
        return r;
    if (!mode || strcmp(mode, "wal") != 0)
        return set_err(l, -ENOTSUP, "cannot use WAL journal (got %s)", mode ? mode : "?");
    return 0;
}

static int configure(struct nt_ledger *l, bool fresh)
{
    /* auto_vacuum only takes effect before the first table exists; with it,
     * pruning can hand pages back to the file system. */
    int r = fresh ? exec(l, "PRAGMA auto_vacuum=INCREMENTAL") : 0;
    if (r == 0)
        r = set_journal_wal(l);
    if (r == 0)
        r = exec(l, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON");
    return r;
}

static int migrate(struct nt_ledger *l)
{
    _cleanup_tx_ struct nt_ledger *tx = NULL;
    int64_t ver = 0;
    int r = tx_begin(l, &tx);
    if (r == 0)     /* again, under the write lock: another opener may have won */
        r = pragma_int(l, "PRAGMA user_version", &ver);
    if (r < 0)
        return r;
    if (ver > NT_LEDGER_SCHEMA_VERSION)
        return set_err(l, -EPROTONOSUPPORT, "ledger schema v%" PRId64 " is newer than this "
                       "numatierd (v%d)", ver, NT_LEDGER_SCHEMA_VERSION);
    if (ver == NT_LEDGER_SCHEMA_VERSION)
        return 0;
    for (int64_t v = ver; v < NT_LEDGER_SCHEMA_VERSION; v++) {
        r = exec(l, migrations[v]);
        if (r < 0) {
            char msg[sizeof(l->err)];
            copy_text(msg, sizeof(msg), l->err);
            return set_err(l, r, "migration v%" PRId64 " -> v%" PRId64 ": %s", v, v + 1, msg);
        }
    }
    char sql[96];
    snprintf(sql, sizeof(sql), "PRAGMA application_id=%d; PRAGMA user_version=%d",
             NT_LEDGER_APPLICATION_ID, NT_LEDGER_SCHEMA_VERSION);
    r = exec(l, sql);
    return r < 0 ? r : tx_commit(&tx);
}

static int ledger_setup(struct nt_ledger *l, const struct nt_ledger_opts *opts)
{
    bool fresh;
    unsigned ms = opts && opts->busy_timeout_ms ? opts->busy_timeout_ms : DEFAULT_BUSY_MS;
    sqlite3_extended_result_codes(l->db, 1);
    sqlite3_busy_timeout(l->db, (int)ms);
    int r = check_identity(l, &fresh);
    if (r == 0 && !fresh && !(opts && opts->skip_check))
        r = quick_check(l);
    if (r == 0)
        r = configure(l, fresh);
    if (r == 0)
        r = migrate(l);
    return r;
}

int nt_ledger_open(const char *path, const struct nt_ledger_opts *opts, struct nt_ledger **out,
                   char *why, size_t why_len)
{
    struct nt_ledger *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(why, why_len, "out of memory");
        return -ENOMEM;
    }
    int rc = sqlite3_open_v2(path, &l->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                             SQLITE_OPEN_NOFOLLOW, NULL);
    int r = rc == SQLITE_OK ? ledger_setup(l, opts) : db_fail(l, rc);
    if (r < 0) {
        snprintf(why, why_len, "%s: %s", path, l->err);
        nt_ledger_close(l);
        return r;
    }
    l->err[0] = '\0';
    *out = l;
    return 0;
}

void nt_ledger_close(struct nt_ledger *l)
{
    if (!l)
        return;
    sqlite3_close_v2(l->db);    /* NULL is a no-op; the last close checkpoints the WAL */
    free(l);
}

/* For the job journal in ledger-jobs.c, which keeps its SQL to itself. */
struct sqlite3 *nt_ledger_db(struct nt_ledger *l)
{
    return l ? l->db : NULL;
}

int nt_ledger_schema_version(struct nt_ledger *l)
{
    int64_t v;
    int r = pragma_int(l, "PRAGMA user_version", &v);
    return r < 0 ? r : (int)v;
}

/* ---- events ---------------------------------------------------------- */

#define SQL_INSERT_EVENT \
    "INSERT INTO events (time_usec, source, addr_valid, phys_addr, fields, action, result, errno," \
    " node, memory_block) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"

/* An event with an address counts against its frame, in the same
 * transaction, so frame counts survive event pruning and never disagree
 * with what was acknowledged. */
#define SQL_COUNT_FRAME \
    "INSERT INTO frames (pfn, count, first_usec, last_usec, node, memory_block, updated_usec)" \
    " VALUES (?1, 1, ?2, ?2, ?3, ?4, ?2) ON CONFLICT (pfn) DO UPDATE SET count = count + 1," \
    " first_usec = min(first_usec, excluded.first_usec)," \
    " last_usec = max(last_usec, excluded.last_usec)," \
    " node = coalesce(node, excluded.node)," \
    " memory_block = coalesce(memory_block, excluded.memory_block)"

static int bind_event(sqlite3_stmt *s, const struct nt_ledger_event *ev)
{
    int rc = bind_u64(s, 1, ev->time_usec);
    rc = rc ?: bind_text(s, 2, ev->source ? ev->source : "unknown");
    rc = rc ?: sqlite3_bind_int(s, 3, ev->addr_valid);
    rc = rc ?: ev->addr_valid ? bind_u64(s, 4, ev->phys_addr) : sqlite3_bind_null(s, 4);
    rc = rc ?: bind_text(s, 5, ev->fields_json);
    rc = rc ?: bind_text(s, 6, ev->action);
    rc = rc ?: bind_text(s, 7, ev->result);
    rc = rc ?: sqlite3_bind_int(s, 8, ev->err < 0 ? -ev->err : ev->err);
    rc = rc ?: bind_opt(s, 9, ev->node);
    rc = rc ?: bind_opt(s, 10, ev->memory_block);
    return rc;
}

static int bind_frame_count(sqlite3_stmt *s, const struct nt_ledger_event *ev)
{
    int rc = bind_u64(s, 1, ev->phys_addr >> PAGE_SHIFT);
    rc = rc ?: bind_u64(s, 2, ev->time_usec);
    rc = rc ?: bind_opt(s, 3, ev->node);
    rc = rc ?: bind_opt(s, 4, ev->memory_block);
    return rc;
}

/* Odd values must not cost the batch its other events: an address SQLite
 * cannot hold (no real one is that high) is recorded as unusable, as the
 * decoder does with any address it cannot trust, and a time is clamped. */
static struct nt_ledger_event sanitize(const struct nt_ledger_event *in)
{
    struct nt_ledger_event ev = *in;
    if (ev.time_usec > INT64_MAX)
        ev.time_usec = INT64_MAX;
    if (ev.addr_valid && ev.phys_addr > INT64_MAX) {
        ev.addr_valid = false;
        ev.result = ev.result ? ev.result : "address out of range";
    }
    return ev;
}

static int add_one(struct nt_ledger *l, sqlite3_stmt *ins, sqlite3_stmt *frame,
                   const struct nt_ledger_event *in, int64_t *id)
{
    struct nt_ledger_event e = sanitize(in), *ev = &e;
    int rc = bind_event(ins, ev);
    int r = rc ? db_fail(l, rc) : step_done(l, ins);
    if (r < 0)
        return r;
    if (id)
        *id = sqlite3_last_insert_rowid(l->db);
    if (!ev->addr_valid)
        return 0;
    rc = bind_frame_count(frame, ev);
    return rc ? db_fail(l, rc) : step_done(l, frame);
}

int nt_ledger_add_events(struct nt_ledger *l, const struct nt_ledger_event *ev, size_t n, int64_t *ids)
{
    _cleanup_tx_ struct nt_ledger *tx = NULL;
    _cleanup_stmt_ sqlite3_stmt *ins = NULL, *frame = NULL;
    int r = tx_begin(l, &tx);
    r = r ?: prepare(l, SQL_INSERT_EVENT, &ins);
    r = r ?: prepare(l, SQL_COUNT_FRAME, &frame);
    for (size_t i = 0; r == 0 && i < n; i++)
        r = add_one(l, ins, frame, &ev[i], ids ? &ids[i] : NULL);
    return r ?: tx_commit(&tx);
}

int nt_ledger_add_event(struct nt_ledger *l, const struct nt_ledger_event *ev, int64_t *id)
{
    return nt_ledger_add_events(l, ev, 1, id);
}

#define EVENT_COLUMNS \
    "id, time_usec, source, addr_valid, phys_addr, fields, action, result, errno, node," \
    " memory_block"

/* Strings point into the row: valid until the next step. */
static struct nt_ledger_event event_from_row(sqlite3_stmt *s)
{
    return (struct nt_ledger_event){
        .time_usec = (uint64_t)sqlite3_column_int64(s, 1),
        .source = col_text(s, 2),
        .addr_valid = sqlite3_column_int(s, 3) != 0,
        .phys_addr = (uint64_t)sqlite3_column_int64(s, 4),
        .fields_json = col_text(s, 5),
        .action = col_text(s, 6),
        .result = col_text(s, 7),
        .err = sqlite3_column_int(s, 8),
        .node = (int)col_opt(s, 9),
        .memory_block = col_opt(s, 10),
    };
}

int nt_ledger_recent_events(struct nt_ledger *l, size_t limit, nt_ledger_event_cb cb, void *ud)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(l, "SELECT " EVENT_COLUMNS " FROM events ORDER BY id DESC LIMIT ?1", &s);
    if (r < 0)
        return r;
    sqlite3_bind_int64(s, 1, limit && limit <= INT64_MAX ? (int64_t)limit : -1);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct nt_ledger_event ev = event_from_row(s);
        r = cb(sqlite3_column_int64(s, 0), &ev, ud);
        if (r != 0)
            return r;
    }
    return rc == SQLITE_DONE ? 0 : db_fail(l, rc);
}

/* Column 11 is the state of the event's frame (NULL: no frame row). */
int nt_ledger_events_since(struct nt_ledger *l, uint64_t since_usec, unsigned mask,
                           nt_ledger_event_cb cb, void *ud)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(l, "SELECT " EVENT_COLUMNS ", (SELECT state FROM frames WHERE pfn ="
                    " events.phys_addr >> 12) FROM events WHERE addr_valid = 1"
                    " AND time_usec >= ?1 ORDER BY id", &s);
    if (r < 0)
        return r;
    sqlite3_bind_int64(s, 1, since_usec > INT64_MAX ? INT64_MAX : (int64_t)since_usec);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int st = nt_frame_state_from_string(col_text(s, 11));
        if (mask && (st < 0 || !(mask & NT_FRAME_MASK(st))))
            continue;
        struct nt_ledger_event ev = event_from_row(s);
        r = cb(sqlite3_column_int64(s, 0), &ev, ud);
        if (r != 0)
            return r;
    }
    return rc == SQLITE_DONE ? 0 : db_fail(l, rc);
}

/* ---- frames ---------------------------------------------------------- */

#define FRAME_COLUMNS \
    "pfn, state, count, first_usec, last_usec, attempts, next_retry_usec, last_errno, node," \
    " memory_block, updated_usec, last_result, reason"

static void frame_from_row(sqlite3_stmt *s, struct nt_ledger_frame *f)
{
    int st = nt_frame_state_from_string(col_text(s, 1));
    *f = (struct nt_ledger_frame){
        .pfn = (uint64_t)sqlite3_column_int64(s, 0),
        .state = st < 0 ? NT_FRAME_FAILED : (enum nt_frame_state)st,   /* CHECK makes it moot */
        .count = (uint64_t)sqlite3_column_int64(s, 2),
        .first_usec = (uint64_t)sqlite3_column_int64(s, 3),
        .last_usec = (uint64_t)sqlite3_column_int64(s, 4),
        .attempts = (unsigned)sqlite3_column_int(s, 5),
        .next_retry_usec = (uint64_t)sqlite3_column_int64(s, 6),
        .last_errno = sqlite3_column_int(s, 7),
        .node = (int)col_opt(s, 8),
        .memory_block = col_opt(s, 9),
        .updated_usec = (uint64_t)sqlite3_column_int64(s, 10),
    };
    copy_text(f->last_result, sizeof(f->last_result), col_text(s, 11));
    copy_text(f->reason, sizeof(f->reason), col_text(s, 12));
}

int nt_ledger_frame_get(struct nt_ledger *l, uint64_t pfn, struct nt_ledger_frame *out)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(l, "SELECT " FRAME_COLUMNS " FROM frames WHERE pfn = ?1", &s);
    if (r < 0)
        return r;
    if (bind_u64(s, 1, pfn) != SQLITE_OK)
        return set_err(l, -ENOENT, "pfn 0x%" PRIx64 " out of range", pfn);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return set_err(l, -ENOENT, "pfn 0x%" PRIx64 " not in the ledger", pfn);
    if (rc != SQLITE_ROW)
        return db_fail(l, rc);
    frame_from_row(s, out);
    return 0;
}

/* The frame's state inside a transaction; -ENOENT if it has no row. */
static int frame_state(struct nt_ledger *l, uint64_t pfn, enum nt_frame_state *st)
{
    struct nt_ledger_frame f;
    int r = nt_ledger_frame_get(l, pfn, &f);
    if (r == 0)
        *st = f.state;
    return r;
}

/* A frame the ledger never saw an event for (e.g. offlined by hand). */
static int frame_create(struct nt_ledger *l, uint64_t pfn, uint64_t now)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(l, "INSERT INTO frames (pfn, first_usec, last_usec, updated_usec)"
                    " VALUES (?1, ?2, ?2, ?2)", &s);
    if (r < 0)
        return r;
    int rc = bind_u64(s, 1, pfn);
    rc = rc ?: bind_u64(s, 2, now);
    return rc ? db_fail(l, rc) : step_done(l, s);
}

static int frame_state_or_create(struct nt_ledger *l, uint64_t pfn, uint64_t now,
                                 enum nt_frame_state *st)
{
    int r = frame_state(l, pfn, st);
    if (r != -ENOENT)
        return r;
    *st = NT_FRAME_OK;
    return frame_create(l, pfn, now);
}

/* Open a transaction on pfn's frame (created if new) for a state change;
 * -EALREADY while an intent is open: only its result may change it. */
static int frame_change_begin(struct nt_ledger *l, uint64_t pfn, uint64_t now, struct nt_ledger **tx,
                              enum nt_frame_state *st)
{
    int r = tx_begin(l, tx);
    r = r ?: frame_state_or_create(l, pfn, now, st);
    if (r == 0 && *st == NT_FRAME_OFFLINE_PENDING)
        r = set_err(l, -EALREADY, "pfn 0x%" PRIx64 " has an open intent", pfn);
    return r;
}

int nt_ledger_frame_trigger(struct nt_ledger *l, uint64_t pfn, const char *reason, uint64_t now)
{
    _cleanup_tx_ struct nt_ledger *tx = NULL;
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    enum nt_frame_state st;
    int r = frame_change_begin(l, pfn, now, &tx, &st);
    if (r < 0)
        return r;
    if (st != NT_FRAME_OK && st != NT_FRAME_TRIGGERED)
        return 0;       /* already handled: the policy may repeat itself */
    r = prepare(l, "UPDATE frames SET state = 'triggered', reason = ?2, updated_usec = ?3"
                " WHERE pfn = ?1", &s);
    if (r < 0)
        return r;
    int rc = bind_u64(s, 1, pfn);
    rc = rc ?: bind_text(s, 2, reason);
    rc = rc ?: bind_u64(s, 3, now);
    r = rc ? db_fail(l, rc) : step_done(l, s);
    return r ?: tx_commit(&tx);
}

static int insert_action(struct nt_ledger *l, const char *kind, const uint64_t *pfn, int64_t event_id,
                         const char *detail, uint64_t now, int64_t *id)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(l, "INSERT INTO actions (kind, pfn, event_id, started_usec, detail)"
                    " VALUES (?1, ?2, ?3, ?4, ?5)", &s);
    if (r < 0)
        return r;
    int rc = bind_text(s, 1, kind);
    rc = rc ?: pfn ? bind_u64(s, 2, *pfn) : sqlite3_bind_null(s, 2);
    rc = rc ?: event_id > 0 ? sqlite3_bind_int64(s, 3, event_id) : sqlite3_bind_null(s, 3);
    rc = rc ?: bind_u64(s, 4, now);
    rc = rc ?: bind_text(s, 5, detail);
    r = rc ? db_fail(l, rc) : step_done(l, s);
    if (r == 0 && id)
        *id = sqlite3_last_insert_rowid(l->db);
    return r;
}

int nt_ledger_frame_intent(struct nt_ledger *l, uint64_t pfn, int64_t event_id, uint64_t now,
                           int64_t *action_id)
{
    return nt_ledger_frame_intent_detail(l, pfn, event_id, NULL, now, action_id);
}

int nt_ledger_frame_intent_detail(struct nt_ledger *l, uint64_t pfn, int64_t event_id,
                                  const char *detail_json, uint64_t now, int64_t *action_id)
{
    _cleanup_tx_ struct nt_ledger *tx = NULL;
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    enum nt_frame_state st;
    int r = frame_change_begin(l, pfn, now, &tx, &st);
    if (r < 0)
        return r;
    r = prepare(l, "UPDATE frames SET state = 'offline_pending', attempts = attempts + 1,"
                " next_retry_usec = 0, updated_usec = ?2 WHERE pfn = ?1", &s);
    if (r < 0)
        return r;
    int rc = bind_u64(s, 1, pfn);
    rc = rc ?: bind_u64(s, 2, now);
    r = rc ? db_fail(l, rc) : step_done(l, s);
    r = r ?: insert_action(l, "soft_offline", &pfn, event_id, detail_json, now, action_id);
    return r ?: tx_commit(&tx);
}

/* The result goes on the event that led to the action, if not pruned. */
static int set_event_result(struct nt_ledger *l, uint64_t pfn, const char *result, int err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(l, "UPDATE events SET result = ?2, errno = ?3 WHERE id IN (SELECT event_id"
                    " FROM actions WHERE pfn = ?1 AND state = 'pending')", &s);
    if (r < 0)
        return r;
    int rc = bind_u64(s, 1, pfn);
    rc = rc ?: bind_text(s, 2, result);
    rc = rc ?: sqlite3_bind_int(s, 3, err);
    return rc ? db_fail(l, rc) : step_done(l, s);
}

static int close_frame_action(struct nt_ledger *l, uint64_t pfn, bool ok, const char *result,
                              int err, uint64_t now)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(l, "UPDATE actions SET state = ?2, finished_usec = ?3, result = ?4, errno = ?5"
                    " WHERE pfn = ?1 AND state = 'pending'", &s);
    if (r < 0)
        return r;
    int rc = bind_u64(s, 1, pfn);
    rc = rc ?: bind_text(s, 2, ok ? "done" : "failed");
    rc = rc ?: bind_u64(s, 3, now);
    rc = rc ?: bind_text(s, 4, result);
    rc = rc ?: sqlite3_bind_int(s, 5, err);
    return rc ? db_fail(l, rc) : step_done(l, s);
}

static int update_frame_result(struct nt_ledger *l, uint64_t pfn, enum nt_frame_state state,
                               const char *result, int err, uint64_t next_retry, uint64_t now)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(l, "UPDATE frames SET state = ?2, last_result = ?3, last_errno = ?4,"
                    " next_retry_usec = ?5, updated_usec = ?6 WHERE pfn = ?1", &s);
    if (r < 0)
        return r;
    int rc = bind_u64(s, 1, pfn);
    rc = rc ?: bind_text(s, 2, nt_frame_state_to_string(state));
    rc = rc ?: bind_text(s, 3, result);
    rc = rc ?: sqlite3_bind_int(s, 4, err);
    rc = rc ?: bind_u64(s, 5, state == NT_FRAME_TRIGGERED ? next_retry : 0);
    rc = rc ?: bind_u64(s, 6, now);
    return rc ? db_fail(l, rc) : step_done(l, s);
}

static bool is_result_state(enum nt_frame_state s)
{
    return s == NT_FRAME_TRIGGERED || s == NT_FRAME_OFFLINED || s == NT_FRAME_FAILED ||
           s == NT_FRAME_ALREADY_OFFLINE;
}

int nt_ledger_frame_result(struct nt_ledger *l, uint64_t pfn, enum nt_frame_state state,
                           const char *result, int err, uint64_t next_retry_usec, uint64_t now)
{
    _cleanup_tx_ struct nt_ledger *tx = NULL;
    enum nt_frame_state st;
    bool ok = state == NT_FRAME_OFFLINED || state == NT_FRAME_ALREADY_OFFLINE;
    if (!is_result_state(state))
        return set_err(l, -EINVAL, "%s is not a result", nt_frame_state_to_string(state));
    err = err < 0 ? -err : err;
    int r = tx_begin(l, &tx);
    r = r ?: frame_state(l, pfn, &st);
    if (r < 0)
        return r;
    if (st != NT_FRAME_OFFLINE_PENDING)
        return set_err(l, -EINVAL, "pfn 0x%" PRIx64 " has no open intent (state %s)",
                       pfn, nt_frame_state_to_string(st));
    r = set_event_result(l, pfn, result, err);
    r = r ?: close_frame_action(l, pfn, ok, result, err, now);
    r = r ?: update_frame_result(l, pfn, state, result, err, next_retry_usec, now);
    return r ?: tx_commit(&tx);
}

static int each_frame(struct nt_ledger *l, const char *sql, unsigned mask, nt_ledger_frame_cb cb, void *ud)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(l, sql, &s);
    if (r < 0)
        return r;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct nt_ledger_frame f;
        frame_from_row(s, &f);
        if (mask && !(mask & NT_FRAME_MASK(f.state)))
            continue;
        r = cb(&f, ud);
        if (r != 0)
            return r;
    }
    return rc == SQLITE_DONE ? 0 : db_fail(l, rc);
}

int nt_ledger_frames(struct nt_ledger *l, unsigned mask, nt_ledger_frame_cb cb, void *ud)
{
    return each_frame(l, "SELECT " FRAME_COLUMNS " FROM frames ORDER BY pfn", mask, cb, ud);
}

int nt_ledger_frames_offlined(struct nt_ledger *l, nt_ledger_frame_cb cb, void *ud)
{
    return nt_ledger_frames(l, NT_FRAME_MASK(NT_FRAME_OFFLINED) |
                            NT_FRAME_MASK(NT_FRAME_ALREADY_OFFLINE), cb, ud);
}

/* A frame that failed after an offline once succeeded (a re-offline that
 * gave up, say because the kernel had put itself on the frame that boot)
 * is still known bad: every boot tries it again. */
int nt_ledger_frames_to_reoffline(struct nt_ledger *l, nt_ledger_frame_cb cb, void *ud)
{
    return each_frame(l, "SELECT " FRAME_COLUMNS " FROM frames f WHERE f.state IN ('offlined', 'already_offline')"
                      " OR (f.state = 'failed' AND EXISTS (SELECT 1 FROM actions a WHERE a.pfn = f.pfn"
                      " AND a.kind = 'soft_offline' AND a.state = 'done')) ORDER BY pfn", 0, cb, ud);
}

/* ---- actions --------------------------------------------------------- */

int nt_ledger_pending(struct nt_ledger *l, nt_ledger_action_cb cb, void *ud)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(l, "SELECT id, kind, pfn, event_id, started_usec, detail FROM actions"
                    " WHERE state = 'pending' ORDER BY id", &s);
    if (r < 0)
        return r;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct nt_ledger_action a = {
            .id = sqlite3_column_int64(s, 0),
            .kind = col_text(s, 1),
            .has_pfn = sqlite3_column_type(s, 2) != SQLITE_NULL,
            .pfn = (uint64_t)sqlite3_column_int64(s, 2),
            .event_id = sqlite3_column_int64(s, 3),
            .started_usec = (uint64_t)sqlite3_column_int64(s, 4),
            .detail = col_text(s, 5),
        };
        r = cb(&a, ud);
        if (r != 0)
            return r;
    }
    return rc == SQLITE_DONE ? 0 : db_fail(l, rc);
}

int nt_ledger_action_begin(struct nt_ledger *l, const char *kind, const char *detail_json,
                           uint64_t now, int64_t *id)
{
    _cleanup_tx_ struct nt_ledger *tx = NULL;
    if (!kind)
        return set_err(l, -EINVAL, "an action needs a kind");
    int r = tx_begin(l, &tx);
    r = r ?: insert_action(l, kind, NULL, 0, detail_json, now, id);
    return r ?: tx_commit(&tx);
}

/* Frame actions end only with nt_ledger_frame_result, which keeps the
 * frame's state in step with them. */
static int check_generic_pending(struct nt_ledger *l, int64_t id)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(l, "SELECT state, pfn IS NULL FROM actions WHERE id = ?1", &s);
    if (r < 0)
        return r;
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return set_err(l, -ENOENT, "no action %" PRId64, id);
    if (rc != SQLITE_ROW)
        return db_fail(l, rc);
    const char *st = col_text(s, 0);
    if (!st || strcmp(st, "pending") != 0 || !sqlite3_column_int(s, 1))
        return set_err(l, -EINVAL, "action %" PRId64 " is not a pending generic action", id);
    return 0;
}

int nt_ledger_action_end(struct nt_ledger *l, int64_t id, bool ok, const char *result, int err,
                         uint64_t now)
{
    _cleanup_tx_ struct nt_ledger *tx = NULL;
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = tx_begin(l, &tx);
    r = r ?: check_generic_pending(l, id);
    r = r ?: prepare(l, "UPDATE actions SET state = ?2, finished_usec = ?3, result = ?4,"
                     " errno = ?5 WHERE id = ?1", &s);
    if (r < 0)
        return r;
    int rc = sqlite3_bind_int64(s, 1, id);
    rc = rc ?: bind_text(s, 2, ok ? "done" : "failed");
    rc = rc ?: bind_u64(s, 3, now);
    rc = rc ?: bind_text(s, 4, result);
    rc = rc ?: sqlite3_bind_int(s, 5, err < 0 ? -err : err);
    r = rc ? db_fail(l, rc) : step_done(l, s);
    return r ?: tx_commit(&tx);
}

/* ---- summaries ------------------------------------------------------- */

static int count_query(struct nt_ledger *l, const char *sql, uint64_t *out)
{
    int64_t v;
    int r = pragma_int(l, sql, &v);
    if (r == 0)
        *out = (uint64_t)v;
    return r;
}

static int frame_states(struct nt_ledger *l, uint64_t by_state[NT_FRAME_NR_STATES])
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(l, "SELECT state, count(*) FROM frames GROUP BY state", &s);
    if (r < 0)
        return r;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int st = nt_frame_state_from_string(col_text(s, 0));
        if (st >= 0)
            by_state[st] = (uint64_t)sqlite3_column_int64(s, 1);
    }
    return rc == SQLITE_DONE ? 0 : db_fail(l, rc);
}

int nt_ledger_stats(struct nt_ledger *l, struct nt_ledger_stats *out)
{
    *out = (struct nt_ledger_stats){ 0 };
    int r = count_query(l, "SELECT count(*) FROM events", &out->events);
    r = r ?: count_query(l, "SELECT count(*) FROM actions WHERE state = 'pending'",
                         &out->pending_actions);
    r = r ?: count_query(l, "SELECT count(*) FROM frames WHERE state = 'triggered'"
                         " AND next_retry_usec > 0", &out->retries_planned);
    return r ?: frame_states(l, out->frames);
}

int nt_ledger_groups(struct nt_ledger *l, nt_ledger_group_cb cb, void *ud)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(l, "SELECT coalesce(node, -1), coalesce(memory_block, -1), state, count(*),"
                    " sum(count) FROM frames GROUP BY 1, 2, 3 ORDER BY 1, 2", &s);
    if (r < 0)
        return r;
    struct nt_ledger_group g = { 0 };
    bool have = false;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int node = sqlite3_column_int(s, 0);
        int64_t block = sqlite3_column_int64(s, 1);
        if (have && (node != g.node || block != g.memory_block)) {
            if ((r = cb(&g, ud)) != 0)
                return r;
            have = false;
        }
        if (!have)
            g = (struct nt_ledger_group){ .node = node, .memory_block = block };
        have = true;
        int st = nt_frame_state_from_string(col_text(s, 2));
        uint64_t n = (uint64_t)sqlite3_column_int64(s, 3);
        if (st >= 0)
            g.by_state[st] += n;
        g.frames += n;
        g.errors += (uint64_t)sqlite3_column_int64(s, 4);
    }
    if (rc != SQLITE_DONE)
        return db_fail(l, rc);
    return have ? cb(&g, ud) : 0;
}

/* ---- pruning --------------------------------------------------------- */

static int delete_bound(struct nt_ledger *l, const char *sql, uint64_t bound, int64_t *deleted)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(l, sql, &s);
    if (r < 0)
        return r;
    int rc = bind_u64(s, 1, bound);
    r = rc ? db_fail(l, rc) : step_done(l, s);
    if (r == 0 && deleted)
        *deleted += sqlite3_changes(l->db);
    return r;
}

int64_t nt_ledger_prune(struct nt_ledger *l, uint64_t retention_usec, uint64_t max_event_rows,
                        uint64_t now)
{
    _cleanup_tx_ struct nt_ledger *tx = NULL;
    int64_t deleted = 0;
    bool by_age = retention_usec && now > retention_usec;
    int r = tx_begin(l, &tx);
    if (r == 0 && by_age)
        r = delete_bound(l, "DELETE FROM events WHERE time_usec < ?1", now - retention_usec, &deleted);
    if (r == 0 && max_event_rows)   /* id order is arrival order */
        r = delete_bound(l, "DELETE FROM events WHERE id <= (SELECT id FROM events"
                         " ORDER BY id DESC LIMIT 1 OFFSET ?1)", max_event_rows, &deleted);
    if (r == 0 && by_age)
        r = delete_bound(l, "DELETE FROM actions WHERE state != 'pending' AND finished_usec < ?1",
                         now - retention_usec, NULL);
    r = r ?: tx_commit(&tx);
    if (r == 0 && deleted > 0)
        r = exec(l, "PRAGMA incremental_vacuum");
    return r < 0 ? r : deleted;
}

/* ---- JSON ------------------------------------------------------------ */

static json_object *json_u64(uint64_t v)
{
    return json_object_new_int64(v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

static json_object *frame_json(const struct nt_ledger_frame *f)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "pfn", json_u64(f->pfn));
    json_object_object_add(o, "phys_addr", json_u64(f->pfn << PAGE_SHIFT));
    json_object_object_add(o, "state", json_object_new_string(nt_frame_state_to_string(f->state)));
    json_object_object_add(o, "count", json_u64(f->count));
    json_object_object_add(o, "first_usec", json_u64(f->first_usec));
    json_object_object_add(o, "last_usec", json_u64(f->last_usec));
    json_object_object_add(o, "attempts", json_object_new_int((int)f->attempts));
    json_object_object_add(o, "next_retry_usec", json_u64(f->next_retry_usec));
    json_object_object_add(o, "last_result", json_object_new_string(f->last_result));
    json_object_object_add(o, "last_errno", json_object_new_int(f->last_errno));
    json_object_object_add(o, "reason", json_object_new_string(f->reason));
    json_object_object_add(o, "node", json_object_new_int(f->node));
    json_object_object_add(o, "memory_block", json_object_new_int64(f->memory_block));
    return o;
}

static int add_frame_json(const struct nt_ledger_frame *f, void *ud)
{
    json_object_array_add(ud, frame_json(f));
    return 0;
}

static int add_retry_json(const struct nt_ledger_frame *f, void *ud)
{
    return f->next_retry_usec ? add_frame_json(f, ud) : 0;
}

static json_object *json_text(const char *s)
{
    return s ? json_object_new_string(s) : NULL;
}

/* Decoded fields are embedded as JSON; text that does not parse is kept
 * as a string rather than dropped. */
static json_object *fields_json(const char *s)
{
    json_object *o = s ? json_tokener_parse(s) : NULL;
    return o ? o : json_text(s);
}

static int add_event_json(int64_t id, const struct nt_ledger_event *ev, void *ud)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_int64(id));
    json_object_object_add(o, "time_usec", json_u64(ev->time_usec));
    json_object_object_add(o, "source", json_text(ev->source));
    json_object_object_add(o, "phys_addr", ev->addr_valid ? json_u64(ev->phys_addr) : NULL);
    json_object_object_add(o, "fields", fields_json(ev->fields_json));
    json_object_object_add(o, "action", json_text(ev->action));
    json_object_object_add(o, "result", json_text(ev->result));
    json_object_object_add(o, "errno", json_object_new_int(ev->err));
    json_object_object_add(o, "node", json_object_new_int(ev->node));
    json_object_object_add(o, "memory_block", json_object_new_int64(ev->memory_block));
    json_object_array_add(ud, o);
    return 0;
}

static json_object *states_json(const uint64_t by_state[NT_FRAME_NR_STATES])
{
    json_object *o = json_object_new_object();
    for (int i = 0; i < NT_FRAME_NR_STATES; i++)
        json_object_object_add(o, state_names[i], json_u64(by_state[i]));
    return o;
}

static int add_group_json(const struct nt_ledger_group *g, void *ud)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "node", json_object_new_int(g->node));
    json_object_object_add(o, "memory_block", json_object_new_int64(g->memory_block));
    json_object_object_add(o, "frames", json_u64(g->frames));
    json_object_object_add(o, "errors", json_u64(g->errors));
    json_object_object_add(o, "states", states_json(g->by_state));
    json_object_array_add(ud, o);
    return 0;
}

static int add_action_json(const struct nt_ledger_action *a, void *ud)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_int64(a->id));
    json_object_object_add(o, "kind", json_text(a->kind));
    json_object_object_add(o, "pfn", a->has_pfn ? json_u64(a->pfn) : NULL);
    json_object_object_add(o, "event_id", a->event_id ? json_object_new_int64(a->event_id) : NULL);
    json_object_object_add(o, "started_usec", json_u64(a->started_usec));
    json_object_object_add(o, "detail", fields_json(a->detail));
    json_object_array_add(ud, o);
    return 0;
}

/* The latest block escalations (ECC block_action soft), newest first. */
static int add_block_actions_json(struct nt_ledger *l, json_object *arr)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(l, "SELECT id, json_extract(detail, '$.block'), started_usec, state, result, errno"
                    " FROM actions WHERE kind = 'block_offline' ORDER BY id DESC LIMIT 20", &s);
    if (r < 0)
        return r;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_int64(sqlite3_column_int64(s, 0)));
        json_object_object_add(o, "block", json_object_new_int64(sqlite3_column_int64(s, 1)));
        json_object_object_add(o, "started_usec", json_u64((uint64_t)sqlite3_column_int64(s, 2)));
        json_object_object_add(o, "state", json_text(col_text(s, 3)));
        json_object_object_add(o, "result", json_text(col_text(s, 4)));
        json_object_object_add(o, "errno", json_object_new_int(sqlite3_column_int(s, 5)));
        json_object_array_add(arr, o);
    }
    return rc == SQLITE_DONE ? 0 : db_fail(l, rc);
}

static json_object *stats_json(const struct nt_ledger_stats *st)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "events", json_u64(st->events));
    json_object_object_add(o, "frames", states_json(st->frames));
    json_object_object_add(o, "pending_actions", json_u64(st->pending_actions));
    json_object_object_add(o, "retries_planned", json_u64(st->retries_planned));
    return o;
}

static void json_putp(json_object **o) { json_object_put(*o); }

int nt_ledger_to_json(struct nt_ledger *l, size_t max_events, struct json_object **out)
{
    _cleanup_(json_putp) json_object *root = json_object_new_object();
    json_object *groups = json_object_new_array(), *offl = json_object_new_array();
    json_object *retry = json_object_new_array(), *pend = json_object_new_array();
    json_object *events = json_object_new_array(), *blocks = json_object_new_array();
    struct nt_ledger_stats st;
    json_object_object_add(root, "schema", json_object_new_int(NT_LEDGER_SCHEMA_VERSION));
    json_object_object_add(root, "groups", groups);
    json_object_object_add(root, "offlined", offl);
    json_object_object_add(root, "pending_retries", retry);
    json_object_object_add(root, "pending_actions", pend);
    json_object_object_add(root, "recent_events", events);
    json_object_object_add(root, "block_actions", blocks);
    int r = nt_ledger_stats(l, &st);
    r = r ?: nt_ledger_groups(l, add_group_json, groups);
    r = r ?: nt_ledger_frames_offlined(l, add_frame_json, offl);
    r = r ?: nt_ledger_frames(l, NT_FRAME_MASK(NT_FRAME_TRIGGERED), add_retry_json, retry);
    r = r ?: nt_ledger_pending(l, add_action_json, pend);
    r = r ?: nt_ledger_recent_events(l, max_events, add_event_json, events);
    r = r ?: add_block_actions_json(l, blocks);
    if (r < 0)
        return r;
    json_object_object_add(root, "stats", stats_json(&st));
    *out = NT_TAKE_PTR(root);
    return 0;
}

/* ---- integrity ------------------------------------------------------- */

#define CHECK_REPORT_MAX 5      /* problems spelled out per kind; the rest are counted */

/* Each query returns one row per violation: the sentence that says it. */
static const char *const invariants[] = {
    "SELECT 'SQLite integrity check: ' || integrity_check FROM pragma_integrity_check"
    " WHERE integrity_check != 'ok'",
    "SELECT printf('%s row %d: the %s row it references is missing', \"table\", rowid, parent)"
    " FROM pragma_foreign_key_check",
    /* offline_pending <=> exactly one open intent */
    "SELECT printf('frame 0x%x is offline_pending without an open intent', pfn) FROM frames f"
    " WHERE state = 'offline_pending' AND NOT EXISTS (SELECT 1 FROM actions a"
    " WHERE a.pfn = f.pfn AND a.state = 'pending')",
    "SELECT printf('frame 0x%x has an open intent (action %d) but is %s', a.pfn, a.id,"
    " coalesce(f.state, 'not in frames')) FROM actions a LEFT JOIN frames f ON f.pfn = a.pfn"
    " WHERE a.state = 'pending' AND a.pfn IS NOT NULL AND coalesce(f.state, '') != 'offline_pending'",
    "SELECT printf('frame 0x%x has %d open intents', pfn, count(*)) FROM actions"
    " WHERE state = 'pending' AND pfn IS NOT NULL GROUP BY pfn HAVING count(*) > 1",
    /* never acted on twice: a second success is only a re-offline after a reboot */
    "SELECT printf('frame 0x%x was soft-offlined %d times in boot %s', pfn, count(*), boot) FROM"
    " (SELECT pfn, CASE WHEN json_valid(detail) THEN json_extract(detail, '$.boot_id') END AS boot"
    "  FROM actions WHERE kind = 'soft_offline' AND state = 'done')"
    " WHERE boot IS NOT NULL GROUP BY pfn, boot HAVING count(*) > 1",
    "SELECT printf('soft_offline action %d names %s', id, CASE WHEN pfn IS NULL THEN 'no frame'"
    " ELSE printf('frame 0x%x, which is not in frames', pfn) END) FROM actions a"
    " WHERE kind = 'soft_offline' AND (pfn IS NULL OR NOT EXISTS (SELECT 1 FROM frames f WHERE f.pfn = a.pfn))",
    /* counts only grow; pruning only removes rows */
    "SELECT printf('frame 0x%x: %d events kept at its address, but %s', e.pfn, e.n,"
    " CASE WHEN f.pfn IS NULL THEN 'no frame row' ELSE printf('a count of %d', f.count) END)"
    " FROM (SELECT phys_addr >> 12 AS pfn, count(*) AS n FROM events WHERE addr_valid = 1 GROUP BY 1) e"
    " LEFT JOIN frames f ON f.pfn = e.pfn WHERE f.pfn IS NULL OR f.count < e.n",
    "SELECT printf('frame 0x%x: %d attempts, but %d soft_offline actions kept', f.pfn, f.attempts, a.n)"
    " FROM frames f JOIN (SELECT pfn, count(*) AS n FROM actions WHERE kind = 'soft_offline'"
    " GROUP BY pfn) a ON a.pfn = f.pfn WHERE f.attempts < a.n",
    "SELECT printf('action %d is %s but has no finish time', id, state) FROM actions"
    " WHERE state != 'pending' AND finished_usec IS NULL",
};

struct checker {
    struct nt_ledger *l;
    nt_ledger_problem_cb cb;
    void *ud;
    int found;
};

static int report(struct checker *c, const char *text)
{
    c->found++;
    return c->cb ? c->cb(text ? text : "?", c->ud) : 0;
}

/* Run one invariant's query: the first rows are reported, the rest summed up. */
static int check_one(struct checker *c, const char *sql)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(c->l, sql, &s);
    if (r < 0)
        return r;
    int rc, rows = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (++rows > CHECK_REPORT_MAX)
            continue;
        r = report(c, col_text(s, 0));
        if (r != 0)
            return r;
    }
    if (rc != SQLITE_DONE)
        return db_fail(c->l, rc);
    if (rows > CHECK_REPORT_MAX) {
        char more[64];
        snprintf(more, sizeof(more), "... and %d more like the one above", rows - CHECK_REPORT_MAX);
        c->found += rows - CHECK_REPORT_MAX - 1;    /* counted, not reported one by one */
        return report(c, more);
    }
    return 0;
}

static int check_counts(struct nt_ledger *l, struct nt_ledger_check_counts *counts)
{
    struct nt_ledger_check_counts n = { 0 };
    int r = count_query(l, "SELECT count(*) FROM actions WHERE kind = 'soft_offline' AND state = 'done'",
                        &n.offlines_done);
    r = r ?: count_query(l, "SELECT count(*) FROM frames WHERE state IN ('offlined', 'already_offline')",
                         &n.frames_offline);
    if (r == 0 && counts)
        *counts = n;
    return r;
}

int nt_ledger_check(struct nt_ledger *l, nt_ledger_problem_cb cb, void *ud,
                    struct nt_ledger_check_counts *counts)
{
    _cleanup_tx_ struct nt_ledger *snapshot = NULL;
    struct checker c = { .l = l, .cb = cb, .ud = ud };
    /* A deferred transaction: one consistent read, no write lock; the
     * cleanup ends it. */
    int r = exec(l, "BEGIN");
    if (r < 0)
        return r;
    snapshot = l;
    for (size_t i = 0; r == 0 && i < NT_ARRAY_SIZE(invariants); i++)
        r = check_one(&c, invariants[i]);
    r = r ?: check_counts(l, counts);
    return r != 0 ? r : c.found;
}
