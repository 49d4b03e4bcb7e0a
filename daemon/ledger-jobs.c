/* The job journal: offline/online/drain jobs in the ledger (schema v3;
 * v4 adds the threads a drain pinned).
 * See include/numatier/ledger-jobs.h. Every write is one transaction;
 * the ledger's synchronous=FULL makes each commit durable, which is what
 * lets a restarted daemon trust the intent rows. */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numatier/ledger-jobs.h"
#include "numatier/ledger.h"
#include "numatier/util.h"

/* ---- names ------------------------------------------------------------ */

static const char *const state_names[NT_JOB_NR_STATES] = {
    [NT_JOB_RUNNING] = "running", [NT_JOB_ROLLING_BACK] = "rolling-back",
    [NT_JOB_SUCCEEDED] = "succeeded", [NT_JOB_FAILED] = "failed",
    [NT_JOB_ROLLED_BACK] = "rolled-back", [NT_JOB_INTERRUPTED] = "interrupted",
};

static const char *const phase_names[NT_JOB_NR_PHASES] = {
    [NT_JOB_PLANNING] = "planning", [NT_JOB_EVACUATING] = "evacuating",
    [NT_JOB_OFFLINING] = "offlining", [NT_JOB_ONLINING] = "onlining",
    [NT_JOB_DRAINING] = "draining", [NT_JOB_ROLLING_BACK_PHASE] = "rolling-back",
    [NT_JOB_DONE] = "done",
};

static const char *const result_names[NT_BLOCK_NR_RESULTS] = {
    [NT_BLOCK_PENDING] = "pending", [NT_BLOCK_OFFLINED] = "offlined",
    [NT_BLOCK_ONLINED] = "onlined", [NT_BLOCK_SKIPPED] = "skipped",
    [NT_BLOCK_FAILED] = "failed", [NT_BLOCK_TIMEOUT] = "timeout",
    [NT_BLOCK_ROLLED_BACK] = "rolled-back", [NT_BLOCK_ROLLBACK_FAILED] = "rollback-failed",
};

static int index_of(const char *const *names, int n, const char *s)
{
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -EINVAL;
}

const char *nt_job_state_to_string(enum nt_job_state s)
{
    return (unsigned)s < NT_JOB_NR_STATES ? state_names[s] : "invalid";
}

int nt_job_state_from_string(const char *s)
{
    return index_of(state_names, NT_JOB_NR_STATES, s);
}

const char *nt_job_phase_to_string(enum nt_job_phase p)
{
    return (unsigned)p < NT_JOB_NR_PHASES ? phase_names[p] : "invalid";
}

int nt_job_phase_from_string(const char *s)
{
    return index_of(phase_names, NT_JOB_NR_PHASES, s);
}

const char *nt_job_result_to_string(enum nt_job_result r)
{
    return (unsigned)r < NT_BLOCK_NR_RESULTS ? result_names[r] : "invalid";
}

int nt_job_result_from_string(const char *s)
{
    return index_of(result_names, NT_BLOCK_NR_RESULTS, s);
}

static int op_from_string(const char *s)
{
    static const char *const ops[] = { "offline", "online", "drain" };
    return index_of(ops, 3, s);
}

/* ---- the job struct ---------------------------------------------------- */

void nt_job_free(struct nt_job *j)
{
    if (!j)
        return;
    free(j->plan_json);
    free(j->blocks);
    free(j->rebinds);
    free(j->pins);
    free(j);
}

static void *dup_array(const void *src, size_t n, size_t size, bool *failed)
{
    if (!n)
        return NULL;
    void *p = malloc(n * size);
    if (!p)
        *failed = true;
    else
        memcpy(p, src, n * size);
    return p;
}

struct nt_job *nt_job_dup(const struct nt_job *j)
{
    struct nt_job *c = malloc(sizeof(*c));
    if (!c)
        return NULL;
    *c = *j;
    bool failed = false;
    c->plan_json = j->plan_json ? strdup(j->plan_json) : NULL;
    failed |= j->plan_json && !c->plan_json;
    c->blocks = dup_array(j->blocks, j->nr_blocks, sizeof(*j->blocks), &failed);
    c->rebinds = dup_array(j->rebinds, j->nr_rebinds, sizeof(*j->rebinds), &failed);
    c->pins = dup_array(j->pins, j->nr_pins, sizeof(*j->pins), &failed);
    if (failed) {
        nt_job_free(c);
        return NULL;
    }
    return c;
}

/* ---- statements ---------------------------------------------------------- */

static void finalizep(sqlite3_stmt **s) { sqlite3_finalize(*s); }
#define _cleanup_stmt_ _cleanup_(finalizep)

static int errno_of(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK: case SQLITE_DONE: case SQLITE_ROW: return 0;
    case SQLITE_BUSY: case SQLITE_LOCKED: return -EBUSY;
    case SQLITE_NOMEM: return -ENOMEM;
    case SQLITE_FULL: return -ENOSPC;
    case SQLITE_READONLY: return -EROFS;
    case SQLITE_CONSTRAINT: case SQLITE_MISMATCH: case SQLITE_RANGE: return -EINVAL;
    case SQLITE_CORRUPT: case SQLITE_NOTADB: return -EBADMSG;
    default: return -EIO;
    }
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **s)
{
    if (!db)
        return -EINVAL;
    return errno_of(sqlite3_prepare_v2(db, sql, -1, s, NULL));
}

static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : errno_of(rc) ? errno_of(rc) : -EIO;
}

static int exec(sqlite3 *db, const char *sql)
{
    return errno_of(sqlite3_exec(db, sql, NULL, NULL, NULL));
}

static void rollbackp(sqlite3 **db)
{
    if (*db && !sqlite3_get_autocommit(*db))
        sqlite3_exec(*db, "ROLLBACK", NULL, NULL, NULL);
}
#define _cleanup_tx_ _cleanup_(rollbackp)

static int tx_begin(sqlite3 *db, sqlite3 **tx)
{
    int r = db ? exec(db, "BEGIN IMMEDIATE") : -EINVAL;
    if (r == 0)
        *tx = db;
    return r;
}

static int tx_commit(sqlite3 **tx)
{
    int r = exec(*tx, "COMMIT");
    if (r == 0)
        *tx = NULL;
    return r;
}

static int bind_text(sqlite3_stmt *s, int i, const char *v)
{
    return v ? sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(s, i);
}

/* An empty word is stored as NULL where NULL means "none". */
static int bind_word(sqlite3_stmt *s, int i, const char *v)
{
    return bind_text(s, i, v && *v ? v : NULL);
}

static int bind_u64(sqlite3_stmt *s, int i, uint64_t v)
{
    return sqlite3_bind_int64(s, i, v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

static void col_copy(sqlite3_stmt *s, int i, char *dst, size_t len)
{
    const char *t = (const char *)sqlite3_column_text(s, i);
    snprintf(dst, len, "%s", t ? t : "");
}

static uint64_t col_u64(sqlite3_stmt *s, int i)
{
    int64_t v = sqlite3_column_int64(s, i);
    return v < 0 ? 0 : (uint64_t)v;
}

/* Bind every parameter, then step; any bind failure is the step's. */
static int check_binds(int rc)
{
    return rc == SQLITE_OK ? 0 : errno_of(rc) ? errno_of(rc) : -EINVAL;
}

/* ---- writing ------------------------------------------------------------- */

#define SQL_INSERT_JOB \
    "INSERT INTO jobs (op, target, target_node, state, phase, rollback, force, resumed, cpu_node," \
    " timeout_usec, started_usec, finished_usec, bytes_moved, message, plan)" \
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"

#define SQL_INSERT_BLOCK \
    "INSERT INTO job_blocks (job_id, seq, block, node, before, restore, want, now, writing, result," \
    " attempts, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"

#define SQL_INSERT_REBIND \
    "INSERT INTO job_rebinds (job_id, seq, pid, comm, kind, from_nodes, to_node, cgroup, mems_before," \
    " applied, restored) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"

#define SQL_PIN_COLS "pid, start_time, boot_id, comm, cpus_before, cpus_set, threads, restored"
#define SQL_UPSERT_PIN \
    "INSERT OR REPLACE INTO job_pins (job_id, seq, " SQL_PIN_COLS ")" \
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"

static int insert_job_row(sqlite3 *db, const struct nt_job *j, int64_t *id)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(db, SQL_INSERT_JOB, &s);
    if (r < 0)
        return r;
    int rc = sqlite3_bind_text(s, 1, nt_offline_op_to_string(j->op), -1, SQLITE_STATIC);
    rc |= bind_text(s, 2, j->target);
    rc |= sqlite3_bind_int(s, 3, j->target_node);
    rc |= sqlite3_bind_text(s, 4, nt_job_state_to_string(j->state), -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(s, 5, nt_job_phase_to_string(j->phase), -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int(s, 6, j->rollback);
    rc |= sqlite3_bind_int(s, 7, j->force);
    rc |= sqlite3_bind_int(s, 8, j->resumed);
    rc |= sqlite3_bind_int(s, 9, j->cpu_node);
    rc |= bind_u64(s, 10, j->timeout_usec);
    rc |= bind_u64(s, 11, j->started_usec);
    rc |= bind_u64(s, 12, j->finished_usec);
    rc |= bind_u64(s, 13, j->bytes_moved);
    rc |= bind_text(s, 14, j->message);
    rc |= bind_text(s, 15, j->plan_json);
    if ((r = check_binds(rc)) < 0 || (r = step_done(s)) < 0)
        return r;
    *id = sqlite3_last_insert_rowid(db);
    return 0;
}

static int bind_block(sqlite3_stmt *s, int64_t job_id, size_t seq, const struct nt_job_block *b)
{
    int rc = sqlite3_bind_int64(s, 1, job_id);
    rc |= sqlite3_bind_int64(s, 2, (int64_t)seq);
    rc |= sqlite3_bind_int64(s, 3, b->block);
    rc |= sqlite3_bind_int(s, 4, b->node);
    rc |= bind_text(s, 5, b->before);
    rc |= bind_text(s, 6, b->restore);
    rc |= bind_text(s, 7, b->want);
    rc |= bind_text(s, 8, b->now);
    rc |= bind_word(s, 9, b->writing);
    rc |= sqlite3_bind_text(s, 10, nt_job_result_to_string(b->result), -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int64(s, 11, b->attempts);
    rc |= bind_word(s, 12, b->reason);
    return check_binds(rc);
}

static int bind_rebind(sqlite3_stmt *s, int64_t job_id, size_t seq, const struct nt_job_rebind *b)
{
    int rc = sqlite3_bind_int64(s, 1, job_id);
    rc |= sqlite3_bind_int64(s, 2, (int64_t)seq);
    rc |= sqlite3_bind_int64(s, 3, b->pid);
    rc |= bind_text(s, 4, b->comm);
    rc |= bind_text(s, 5, b->kind);
    rc |= bind_text(s, 6, b->from);
    rc |= sqlite3_bind_int(s, 7, b->to_node);
    rc |= bind_word(s, 8, b->cgroup);
    rc |= bind_text(s, 9, b->mems_before);
    rc |= sqlite3_bind_int(s, 10, b->applied);
    rc |= sqlite3_bind_int(s, 11, b->restored);
    return check_binds(rc);
}

static int bind_pin(sqlite3_stmt *s, int64_t job_id, size_t seq, const struct nt_job_pin *p)
{
    int rc = sqlite3_bind_int64(s, 1, job_id);
    rc |= sqlite3_bind_int64(s, 2, (int64_t)seq);
    rc |= sqlite3_bind_int64(s, 3, p->pid);
    rc |= bind_u64(s, 4, p->start_time);
    rc |= bind_word(s, 5, p->boot_id);
    rc |= bind_text(s, 6, p->comm);
    rc |= bind_text(s, 7, p->cpus_before);
    rc |= bind_text(s, 8, p->cpus_set);
    rc |= sqlite3_bind_int64(s, 9, p->threads);
    rc |= sqlite3_bind_int(s, 10, p->restored);
    return check_binds(rc);
}

static int insert_children(sqlite3 *db, const struct nt_job *j, int64_t id)
{
    _cleanup_stmt_ sqlite3_stmt *bs = NULL, *rs = NULL, *ps = NULL;
    int r = prepare(db, SQL_INSERT_BLOCK, &bs);
    if (r == 0)
        r = prepare(db, SQL_INSERT_REBIND, &rs);
    if (r == 0)
        r = prepare(db, SQL_UPSERT_PIN, &ps);
    for (size_t i = 0; r == 0 && i < j->nr_blocks; i++)
        if ((r = bind_block(bs, id, i, &j->blocks[i])) == 0)
            r = step_done(bs);
    for (size_t i = 0; r == 0 && i < j->nr_rebinds; i++)
        if ((r = bind_rebind(rs, id, i, &j->rebinds[i])) == 0)
            r = step_done(rs);
    for (size_t i = 0; r == 0 && i < j->nr_pins; i++)
        if ((r = bind_pin(ps, id, i, &j->pins[i])) == 0)
            r = step_done(ps);
    return r;
}

int nt_ledger_job_insert(struct nt_ledger *l, struct nt_job *j)
{
    sqlite3 *db = nt_ledger_db(l);
    _cleanup_tx_ sqlite3 *tx = NULL;
    int64_t id = 0;
    int r = tx_begin(db, &tx);
    if (r == 0)
        r = insert_job_row(db, j, &id);
    if (r == 0)
        r = insert_children(db, j, id);
    if (r == 0)
        r = tx_commit(&tx);
    if (r == 0)
        j->id = id;
    return r;
}

/* One UPDATE in its own transaction (the statement is its own). */
static int run_update(sqlite3 *db, sqlite3_stmt *s)
{
    _cleanup_tx_ sqlite3 *tx = NULL;
    int r = tx_begin(db, &tx);
    if (r == 0)
        r = step_done(s);
    if (r == 0 && sqlite3_changes(db) != 1)
        r = -ENOENT;
    return r == 0 ? tx_commit(&tx) : r;
}

int nt_ledger_job_update(struct nt_ledger *l, const struct nt_job *j)
{
    sqlite3 *db = nt_ledger_db(l);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(db, "UPDATE jobs SET state = ?2, phase = ?3, resumed = ?4, finished_usec = ?5,"
                        " bytes_moved = ?6, message = ?7 WHERE id = ?1", &s);
    if (r < 0)
        return r;
    int rc = sqlite3_bind_int64(s, 1, j->id);
    rc |= sqlite3_bind_text(s, 2, nt_job_state_to_string(j->state), -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(s, 3, nt_job_phase_to_string(j->phase), -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int(s, 4, j->resumed);
    rc |= bind_u64(s, 5, j->finished_usec);
    rc |= bind_u64(s, 6, j->bytes_moved);
    rc |= bind_text(s, 7, j->message);
    if ((r = check_binds(rc)) < 0)
        return r;
    return run_update(db, s);
}

int nt_ledger_job_block_update(struct nt_ledger *l, const struct nt_job *j, size_t i)
{
    if (i >= j->nr_blocks)
        return -EINVAL;
    sqlite3 *db = nt_ledger_db(l);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(db, "UPDATE job_blocks SET block = ?3, node = ?4, before = ?5, restore = ?6,"
                        " want = ?7, now = ?8, writing = ?9, result = ?10, attempts = ?11, reason = ?12"
                        " WHERE job_id = ?1 AND seq = ?2", &s);
    if (r == 0)
        r = bind_block(s, j->id, i, &j->blocks[i]);
    return r < 0 ? r : run_update(db, s);
}

int nt_ledger_job_rebind_update(struct nt_ledger *l, const struct nt_job *j, size_t i)
{
    if (i >= j->nr_rebinds)
        return -EINVAL;
    sqlite3 *db = nt_ledger_db(l);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    /* an upsert: online jobs add the rebinds they restore as they go */
    int r = prepare(db, "INSERT OR REPLACE INTO job_rebinds (job_id, seq, pid, comm, kind, from_nodes, to_node,"
                        " cgroup, mems_before, applied, restored)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)", &s);
    if (r == 0)
        r = bind_rebind(s, j->id, i, &j->rebinds[i]);
    return r < 0 ? r : run_update(db, s);
}

int nt_ledger_job_pin_update(struct nt_ledger *l, const struct nt_job *j, size_t i)
{
    if (i >= j->nr_pins)
        return -EINVAL;
    sqlite3 *db = nt_ledger_db(l);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(db, SQL_UPSERT_PIN, &s);
    if (r == 0)
        r = bind_pin(s, j->id, i, &j->pins[i]);
    return r < 0 ? r : run_update(db, s);
}

/* UPDATE table SET restored = 1 for one (job_id, seq). */
static int mark_restored(struct nt_ledger *l, const char *sql, int64_t job_id, size_t seq)
{
    sqlite3 *db = nt_ledger_db(l);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(db, sql, &s);
    if (r < 0)
        return r;
    int rc = sqlite3_bind_int64(s, 1, job_id) | sqlite3_bind_int64(s, 2, (int64_t)seq);
    if ((r = check_binds(rc)) < 0)
        return r;
    return run_update(db, s);
}

int nt_ledger_rebind_mark_restored(struct nt_ledger *l, int64_t job_id, size_t seq)
{
    return mark_restored(l, "UPDATE job_rebinds SET restored = 1 WHERE job_id = ?1 AND seq = ?2", job_id, seq);
}

int nt_ledger_pin_mark_restored(struct nt_ledger *l, int64_t job_id, size_t seq)
{
    return mark_restored(l, "UPDATE job_pins SET restored = 1 WHERE job_id = ?1 AND seq = ?2", job_id, seq);
}

/* ---- reading -------------------------------------------------------------- */

static int load_job_row(sqlite3 *db, int64_t id, struct nt_job *j)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(db, "SELECT op, target, target_node, state, phase, rollback, force, resumed, cpu_node,"
                        " timeout_usec, started_usec, finished_usec, bytes_moved, message, plan"
                        " FROM jobs WHERE id = ?1", &s);
    if (r < 0)
        return r;
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? -ENOENT : errno_of(rc);
    int op = op_from_string((const char *)sqlite3_column_text(s, 0));
    int st = nt_job_state_from_string((const char *)sqlite3_column_text(s, 3));
    int ph = nt_job_phase_from_string((const char *)sqlite3_column_text(s, 4));
    if (op < 0 || st < 0 || ph < 0)
        return -EBADMSG;
    j->id = id;
    j->op = (enum nt_offline_op)op;
    col_copy(s, 1, j->target, sizeof(j->target));
    j->target_node = sqlite3_column_int(s, 2);
    j->state = (enum nt_job_state)st;
    j->phase = (enum nt_job_phase)ph;
    j->rollback = sqlite3_column_int(s, 5);
    j->force = sqlite3_column_int(s, 6);
    j->resumed = sqlite3_column_int(s, 7);
    j->cpu_node = sqlite3_column_int(s, 8);
    j->timeout_usec = col_u64(s, 9);
    j->started_usec = col_u64(s, 10);
    j->finished_usec = col_u64(s, 11);
    j->bytes_moved = col_u64(s, 12);
    col_copy(s, 13, j->message, sizeof(j->message));
    const char *plan = (const char *)sqlite3_column_text(s, 14);
    if (plan && !(j->plan_json = strdup(plan)))
        return -ENOMEM;
    return 0;
}

/* Every row of s through fn into a malloc'd array of elements of size
 * bytes, each zeroed first; an error from fn stops it. */
static int collect_rows(sqlite3_stmt *s, size_t size, int (*fn)(sqlite3_stmt *s, void *elem), void **out,
                        size_t *n)
{
    _cleanup_free_ char *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? 2 * cap : 8;
            char *nv = realloc(v, cap * size);
            if (!nv)
                return -ENOMEM;
            v = nv;
        }
        memset(v + len * size, 0, size);
        int r = fn(s, v + len++ * size);
        if (r < 0)
            return r;
    }
    if (rc != SQLITE_DONE)
        return errno_of(rc) ? errno_of(rc) : -EIO;
    *out = NT_TAKE_PTR(v);
    *n = len;
    return 0;
}

/* One job's child rows (blocks, rebinds, pins), ordered by seq. */
static int load_children(sqlite3 *db, int64_t job_id, const char *table, const char *cols, size_t elem,
                         int (*row)(sqlite3_stmt *s, void *elem), void **out, size_t *n)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT %s FROM %s WHERE job_id = ?1 ORDER BY seq", cols, table);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(db, sql, &s);
    if (r < 0)
        return r;
    sqlite3_bind_int64(s, 1, job_id);
    return collect_rows(s, elem, row, out, n);
}


static int block_from_row(sqlite3_stmt *s, struct nt_job_block *b)
{
    int res = nt_job_result_from_string((const char *)sqlite3_column_text(s, 7));
    if (res < 0)
        return -EBADMSG;
    b->block = (unsigned)sqlite3_column_int64(s, 0);
    b->node = sqlite3_column_int(s, 1);
    col_copy(s, 2, b->before, sizeof(b->before));
    col_copy(s, 3, b->restore, sizeof(b->restore));
    col_copy(s, 4, b->want, sizeof(b->want));
    col_copy(s, 5, b->now, sizeof(b->now));
    col_copy(s, 6, b->writing, sizeof(b->writing));
    b->result = (enum nt_job_result)res;
    b->attempts = (unsigned)sqlite3_column_int(s, 8);
    col_copy(s, 9, b->reason, sizeof(b->reason));
    return 0;
}

static int block_row(sqlite3_stmt *s, void *elem)
{
    return block_from_row(s, elem);
}

static int load_blocks(sqlite3 *db, struct nt_job *j)
{
    void *v = NULL;
    int r = load_children(db, j->id, "job_blocks",
                          "block, node, before, restore, want, now, writing, result, attempts, reason",
                          sizeof(*j->blocks), block_row, &v, &j->nr_blocks);
    j->blocks = v;
    return r;
}

#define SQL_REBIND_COLS "pid, comm, kind, from_nodes, to_node, cgroup, mems_before, applied, restored"

static void rebind_from_row(sqlite3_stmt *s, int first, struct nt_job_rebind *b)
{
    b->pid = (pid_t)sqlite3_column_int64(s, first);
    col_copy(s, first + 1, b->comm, sizeof(b->comm));
    col_copy(s, first + 2, b->kind, sizeof(b->kind));
    col_copy(s, first + 3, b->from, sizeof(b->from));
    b->to_node = sqlite3_column_int(s, first + 4);
    col_copy(s, first + 5, b->cgroup, sizeof(b->cgroup));
    col_copy(s, first + 6, b->mems_before, sizeof(b->mems_before));
    b->applied = sqlite3_column_int(s, first + 7);
    b->restored = sqlite3_column_int(s, first + 8);
}

static int rebind_row(sqlite3_stmt *s, void *elem)
{
    rebind_from_row(s, 0, elem);
    return 0;
}

static int load_rebinds(sqlite3 *db, struct nt_job *j)
{
    void *v = NULL;
    int r = load_children(db, j->id, "job_rebinds", SQL_REBIND_COLS, sizeof(*j->rebinds), rebind_row, &v,
                          &j->nr_rebinds);
    j->rebinds = v;
    return r;
}

static void pin_from_row(sqlite3_stmt *s, int first, struct nt_job_pin *p)
{
    p->pid = (pid_t)sqlite3_column_int64(s, first);
    p->start_time = col_u64(s, first + 1);
    col_copy(s, first + 2, p->boot_id, sizeof(p->boot_id));
    col_copy(s, first + 3, p->comm, sizeof(p->comm));
    col_copy(s, first + 4, p->cpus_before, sizeof(p->cpus_before));
    col_copy(s, first + 5, p->cpus_set, sizeof(p->cpus_set));
    p->threads = (unsigned)sqlite3_column_int64(s, first + 6);
    p->restored = sqlite3_column_int(s, first + 7);
}

static int pin_row(sqlite3_stmt *s, void *elem)
{
    pin_from_row(s, 0, elem);
    return 0;
}

static int load_pins(sqlite3 *db, struct nt_job *j)
{
    void *v = NULL;
    int r = load_children(db, j->id, "job_pins", SQL_PIN_COLS, sizeof(*j->pins), pin_row, &v, &j->nr_pins);
    j->pins = v;
    return r;
}

int nt_ledger_job_load(struct nt_ledger *l, int64_t id, struct nt_job **out)
{
    sqlite3 *db = nt_ledger_db(l);
    _cleanup_(nt_job_freep) struct nt_job *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    int r = load_job_row(db, id, j);
    if (r == 0)
        r = load_blocks(db, j);
    if (r == 0)
        r = load_rebinds(db, j);
    if (r == 0)
        r = load_pins(db, j);
    if (r < 0)
        return r;
    *out = NT_TAKE_PTR(j);
    return 0;
}

static int collect_ids(sqlite3 *db, const char *sql, int64_t limit, int64_t **ids, size_t *n)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(db, sql, &s);
    if (r < 0)
        return r;
    sqlite3_bind_int64(s, 1, limit);
    _cleanup_free_ int64_t *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *nv = realloc(v, cap * sizeof(*nv));
            if (!nv)
                return -ENOMEM;
            v = nv;
        }
        v[len++] = sqlite3_column_int64(s, 0);
    }
    if (rc != SQLITE_DONE)
        return errno_of(rc) ? errno_of(rc) : -EIO;
    *ids = NT_TAKE_PTR(v);
    *n = len;
    return 0;
}

int nt_ledger_jobs_unfinished(struct nt_ledger *l, int64_t **ids, size_t *n)
{
    return collect_ids(nt_ledger_db(l), "SELECT id FROM jobs WHERE state IN ('running', 'rolling-back')"
                                        " ORDER BY id LIMIT ?1", -1, ids, n);
}

int nt_ledger_jobs_recent(struct nt_ledger *l, size_t limit, int64_t **ids, size_t *n)
{
    int64_t lim = limit ? (int64_t)limit : -1;
    return collect_ids(nt_ledger_db(l), "SELECT id FROM jobs ORDER BY id DESC LIMIT ?1", lim, ids, n);
}


/* sql (?1 bound to node unless node < 0) into a malloc'd array. */
static int query_rows(struct nt_ledger *l, const char *sql, int node, size_t size,
                      int (*fn)(sqlite3_stmt *s, void *elem), void **out, size_t *n)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = prepare(nt_ledger_db(l), sql, &s);
    if (r < 0)
        return r;
    if (node >= 0)
        sqlite3_bind_int(s, 1, node);
    return collect_rows(s, size, fn, out, n);
}

static int rebind_ref_row(sqlite3_stmt *s, void *elem)
{
    struct nt_job_rebind_ref *ref = elem;
    ref->job_id = sqlite3_column_int64(s, 0);
    ref->seq = (size_t)sqlite3_column_int64(s, 1);
    rebind_from_row(s, 2, &ref->rb);
    return 0;
}

int nt_ledger_rebinds_open(struct nt_ledger *l, int node, struct nt_job_rebind_ref **out, size_t *n)
{
    void *v = NULL;
    int r = query_rows(l, "SELECT r.job_id, r.seq, " SQL_REBIND_COLS " FROM job_rebinds r JOIN jobs j"
                          " ON j.id = r.job_id WHERE j.op = 'offline' AND j.target_node = ?1"
                          " AND j.state NOT IN ('running', 'rolling-back') AND r.applied = 1"
                          " AND r.restored = 0 ORDER BY r.job_id, r.seq",
                          node, sizeof(**out), rebind_ref_row, &v, n);
    if (r == 0)
        *out = v;
    return r;
}

static int drain_ref_row(sqlite3_stmt *s, void *elem)
{
    struct nt_drain_ref *ref = elem;
    ref->node = sqlite3_column_int(s, 0);
    ref->job_id = sqlite3_column_int64(s, 1);
    return 0;
}

int nt_ledger_drains_open(struct nt_ledger *l, struct nt_drain_ref **out, size_t *n)
{
    void *v = NULL;
    int r = query_rows(l, "SELECT d.target_node, max(d.id) FROM jobs d WHERE d.op = 'drain'"
                          " AND d.state = 'succeeded' AND d.target_node >= 0 AND NOT EXISTS"
                          " (SELECT 1 FROM jobs o WHERE o.op = 'online' AND o.state = 'succeeded'"
                          " AND o.target_node = d.target_node AND o.id > d.id)"
                          " GROUP BY d.target_node ORDER BY d.target_node",
                          -1, sizeof(**out), drain_ref_row, &v, n);
    if (r == 0)
        *out = v;
    return r;
}

static int pin_ref_row(sqlite3_stmt *s, void *elem)
{
    struct nt_job_pin_ref *ref = elem;
    ref->job_id = sqlite3_column_int64(s, 0);
    ref->seq = (size_t)sqlite3_column_int64(s, 1);
    pin_from_row(s, 2, &ref->pin);
    return 0;
}

int nt_ledger_pins_open(struct nt_ledger *l, int node, struct nt_job_pin_ref **out, size_t *n)
{
    void *v = NULL;
    int r = query_rows(l, "SELECT p.job_id, p.seq, " SQL_PIN_COLS " FROM job_pins p JOIN jobs j"
                          " ON j.id = p.job_id WHERE j.op = 'drain' AND j.target_node = ?1"
                          " AND j.state NOT IN ('running', 'rolling-back') AND p.restored = 0"
                          " ORDER BY p.job_id, p.seq",
                          node, sizeof(**out), pin_ref_row, &v, n);
    if (r == 0)
        *out = v;
    return r;
}
