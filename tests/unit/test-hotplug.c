/* Offline jobs without a kernel: the block state machine (EBUSY retries,
 * failure, rollback into the zone from before, --no-rollback, deadlines),
 * the forked worker and its timeout, --force cpuset rebinds and their
 * restore by `online`, recovery of a job a killed daemon left in the
 * journal (rollback and resume), input gathering from a fixture tree, and
 * request parsing, and the estimate of what a migrate_pages in flight
 * has moved.
 *
 * Each test copies tests/fixtures/hotplug to a temporary root. Writes to
 * block states go through a fake writer that keeps block states in memory
 * and follows a script of return codes per block; the worker tests use the
 * real forked worker on the fixture's state files. */
#include <errno.h>
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
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "numatier/hotplug.h"
#include "numatier/ledger-jobs.h"
#include "numatier/ledger.h"
#include "numatier/mover.h"
#include "numatier/topology.h"
#include "numatier/units.h"
#include "numatier/util.h"
#include "../../daemon/hotplug-internal.h"     /* the progress estimate's seam */

#define MS          UINT64_C(1000)
#define SEC         UINT64_C(1000000)
#define MiB         (UINT64_C(1) << 20)
#define MAX_BLOCK   64
#define MAX_SCRIPT  8
#define MAX_LOG     64

/* ---- the fake sysfs ------------------------------------------------------------ */

struct fake {
    char state[MAX_BLOCK][24];
    int script[MAX_BLOCK][MAX_SCRIPT];      /* return codes of successive writes; past the end: 0 */
    unsigned nscript[MAX_BLOCK], used[MAX_BLOCK];
    struct { unsigned block; char value[24]; } log[MAX_LOG];
    size_t nlog;
};

static unsigned block_of(const char *path)
{
    const char *m = strstr(path, "/memory/memory");
    assert_non_null(m);
    return (unsigned)strtoul(m + strlen("/memory/memory"), NULL, 10);
}

static int fake_write(const char *path, const char *value, void *ud)
{
    struct fake *f = ud;
    unsigned b = block_of(path);
    assert_true(b < MAX_BLOCK);
    assert_true(f->nlog < MAX_LOG);
    f->log[f->nlog].block = b;
    snprintf(f->log[f->nlog++].value, sizeof(f->log[0].value), "%s", value);
    int rc = f->used[b] < f->nscript[b] ? f->script[b][f->used[b]] : 0;
    f->used[b]++;
    if (rc == 0)
        snprintf(f->state[b], sizeof(f->state[b]), "%s", strncmp(value, "online", 6) == 0 ? "online" : value);
    return rc;
}

static int fake_read(const char *root, unsigned block, char *buf, size_t len, void *ud)
{
    (void)root;
    struct fake *f = ud;
    if (block >= MAX_BLOCK || !f->state[block][0])
        return -ENOENT;
    snprintf(buf, len, "%s", f->state[block]);
    return 0;
}

static void script(struct fake *f, unsigned block, unsigned n, ...)
{
    va_list ap;
    va_start(ap, n);
    for (unsigned i = 0; i < n; i++)
        f->script[block][i] = va_arg(ap, int);
    va_end(ap);
    f->nscript[block] = n;
}

/* "35:offline 34:offline 35:online_movable" */
static void log_text(const struct fake *f, char *buf, size_t len)
{
    buf[0] = '\0';
    for (size_t i = 0; i < f->nlog; i++) {
        size_t off = strlen(buf);
        snprintf(buf + off, len - off, "%s%u:%s", i ? " " : "", f->log[i].block, f->log[i].value);
    }
}

/* ---- environment ----------------------------------------------------------------- */

struct env {
    char dir[64];
    char root[PATH_MAX];
    char ledger[PATH_MAX];
    sd_event *event;
    struct nt_hotplug *h;
    struct nt_hotplug_params p;
    struct fake fake;
    struct nt_hotplug_sysfs sysfs;
};

static const char *fixture_dir(void)
{
    static char path[PATH_MAX];
    const char *dir = getenv("NT_FIXTURES");
    char rel[PATH_MAX];
    snprintf(rel, sizeof(rel), "%s/hotplug", dir ? dir : "tests/fixtures");
    if (!realpath(rel, path))
        fail_msg("no fixture %s (run from the repository root or set NT_FIXTURES)", rel);
    return path;
}

static void default_params(struct nt_hotplug_params *p)
{
    *p = (struct nt_hotplug_params){
        .write_timeout_usec = 200 * MS, .timeout_usec = 30 * SEC, .ebusy_retries = 2,
        .retry_backoff_usec = 1 * MS, .on_restart = NT_OFFLINE_RESTART_ROLLBACK, .allow_slow = true,
        .history = 20, .free_watermark_pct = 5.0,
    };
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    snprintf(e->dir, sizeof(e->dir), "/tmp/nt-test-hotplug.XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->root, sizeof(e->root), "%s/root", e->dir);
    snprintf(e->ledger, sizeof(e->ledger), "%s/ledger.db", e->dir);
    char cmd[2 * PATH_MAX];
    snprintf(cmd, sizeof(cmd), "cp -r '%s' '%s'", fixture_dir(), e->root);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(sd_event_new(&e->event), 0);
    default_params(&e->p);
    for (unsigned b = 30; b < 37; b++)
        snprintf(e->fake.state[b], sizeof(e->fake.state[b]), "online");
    snprintf(e->fake.state[36], sizeof(e->fake.state[36]), "offline");
    e->sysfs = (struct nt_hotplug_sysfs){ .write = fake_write, .read_state = fake_read, .inline_writes = true,
                                          .userdata = &e->fake };
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    nt_hotplug_free(e->h);
    sd_event_unref(e->event);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
    assert_int_equal(system(cmd), 0);
    free(e);
    return 0;
}

static void open_hotplug(struct env *e, const struct nt_hotplug_sysfs *sysfs)
{
    nt_hotplug_free(e->h);
    e->h = NULL;
    struct nt_hotplug_options o = { .event = e->event, .root = e->root, .ledger_path = e->ledger, .sysfs = sysfs };
    assert_int_equal(nt_hotplug_new(&o, &e->p, &e->h), 0);
}

/* Run the loop until no job runs (or fail after max_usec). */
static void run_jobs(struct env *e, uint64_t max_usec)
{
    uint64_t end = nt_now_usec() + max_usec;
    while (nt_hotplug_current(e->h)) {
        if (nt_now_usec() > end)
            fail_msg("the job is still %s after %llu ms", nt_job_state_to_string(nt_hotplug_current(e->h)->state),
                     (unsigned long long)(max_usec / MS));
        assert_true(sd_event_run(e->event, 50 * MS) >= 0);
    }
}

/* The job as journaled, through a second handle on the ledger. */
static struct nt_job *journaled(struct env *e, int64_t id)
{
    struct nt_ledger *l = NULL;
    char why[256];
    assert_int_equal(nt_ledger_open(e->ledger, NULL, &l, why, sizeof(why)), 0);
    struct nt_job *j = NULL;
    assert_int_equal(nt_ledger_job_load(l, id, &j), 0);
    nt_ledger_close(l);
    return j;
}

static const struct nt_job_block *block(const struct nt_job *j, unsigned id)
{
    for (size_t i = 0; i < j->nr_blocks; i++)
        if (j->blocks[i].block == id)
            return &j->blocks[i];
    fail_msg("block %u is not in job %lld", id, (long long)j->id);
    abort();                    /* not reached: tells the compiler so */
}

/* A plan over blocks of node 2, in the order given; verdict do unless
 * listed in skip. */
struct plan_spec {
    enum nt_offline_op op;
    unsigned blocks[8];
    size_t n;
    unsigned skip;              /* a block to mark skip, 0 = none */
};

static void make_plan(const struct plan_spec *s, struct nt_offline_plan *plan)
{
    *plan = (struct nt_offline_plan){ .op = s->op, .refusal = NT_OFFLINE_OK, .cpu_node = -1 };
    plan->steps = calloc(s->n, sizeof(*plan->steps));
    assert_non_null(plan->steps);
    plan->nr_steps = s->n;
    for (size_t i = 0; i < s->n; i++) {
        struct nt_offline_step *st = &plan->steps[i];
        *st = (struct nt_offline_step){ .block = s->blocks[i], .node = 2,
                                        .verdict = s->blocks[i] == s->skip ? NT_OFFLINE_SKIP : NT_OFFLINE_DO,
                                        .online_movable = true };
        snprintf(st->reason, sizeof(st->reason), "test");
    }
}

static int64_t start(struct env *e, const struct plan_spec *s, const struct nt_hotplug_request *req)
{
    struct nt_offline_plan plan;
    make_plan(s, &plan);
    struct nt_hotplug_request def = { .op = s->op, .kind = NT_TARGET_BLOCKS, .first_block = 33, .last_block = 35,
                                      .rollback = true };
    int64_t id = 0;
    assert_int_equal(nt_hotplug_start(e->h, &plan, req ? req : &def, NULL, 0, &id), 0);
    nt_offline_plan_free(&plan);
    assert_true(id > 0);
    return id;
}

/* ---- the state machine -------------------------------------------------------------- */

static void test_offline_succeeds(void **state)
{
    struct env *e = *state;
    open_hotplug(e, &e->sysfs);
    int64_t id = start(e, &(struct plan_spec){ NT_OFFLINE_OP_OFFLINE, { 35, 34, 36 }, 3, 36 }, NULL);
    assert_non_null(nt_hotplug_current(e->h));
    run_jobs(e, 5 * SEC);
    char log[512];
    log_text(&e->fake, log, sizeof(log));
    assert_string_equal(log, "35:offline 34:offline");        /* plan order; the skipped block untouched */

    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, id);
    assert_int_equal(j->state, NT_JOB_SUCCEEDED);
    assert_int_equal(j->phase, NT_JOB_DONE);
    assert_true(j->finished_usec >= j->started_usec);
    assert_int_equal(block(j, 35)->result, NT_BLOCK_OFFLINED);
    assert_string_equal(block(j, 35)->now, "offline");
    assert_string_equal(block(j, 35)->before, "online");
    assert_string_equal(block(j, 35)->restore, "online_movable");   /* valid_zones "Movable" */
    assert_string_equal(block(j, 35)->writing, "");                 /* intent closed */
    assert_int_equal(block(j, 34)->result, NT_BLOCK_OFFLINED);
    assert_int_equal(block(j, 36)->result, NT_BLOCK_SKIPPED);
    assert_non_null(strstr(j->message, "offlined 2 block(s)"));
}

static void test_ebusy_retried_then_done(void **state)
{
    struct env *e = *state;
    script(&e->fake, 34, 2, -EBUSY, -EBUSY);
    open_hotplug(e, &e->sysfs);
    int64_t id = start(e, &(struct plan_spec){ NT_OFFLINE_OP_OFFLINE, { 35, 34 }, 2, 0 }, NULL);
    run_jobs(e, 5 * SEC);
    char log[512];
    log_text(&e->fake, log, sizeof(log));
    assert_string_equal(log, "35:offline 34:offline 34:offline 34:offline");
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, id);
    assert_int_equal(j->state, NT_JOB_SUCCEEDED);
    assert_int_equal(block(j, 34)->attempts, 3);
    assert_int_equal(block(j, 34)->result, NT_BLOCK_OFFLINED);
}

static int64_t job_json_int(struct env *e, int64_t id, const char *key)
{
    struct json_object *out = NULL, *arr, *v;
    assert_int_equal(nt_hotplug_jobs_json(e->h, id, &out), 0);
    assert_true(json_object_object_get_ex(out, "jobs", &arr));
    assert_true(json_object_object_get_ex(json_object_array_get_idx(arr, 0), key, &v));
    int64_t n = json_object_get_int64(v);
    json_object_put(out);
    return n;
}

static void test_ebusy_exhausted_rolls_back(void **state)
{
    struct env *e = *state;
    script(&e->fake, 34, 3, -EBUSY, -EBUSY, -EBUSY);
    open_hotplug(e, &e->sysfs);
    int64_t id = start(e, &(struct plan_spec){ NT_OFFLINE_OP_OFFLINE, { 35, 34, 33 }, 3, 0 }, NULL);
    run_jobs(e, 5 * SEC);
    char log[512];
    log_text(&e->fake, log, sizeof(log));
    /* 1 try + ebusy_retries 2, then 35 goes back movable; 33 never tried */
    assert_string_equal(log, "35:offline 34:offline 34:offline 34:offline 35:online_movable");
    assert_string_equal(e->fake.state[35], "online");
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, id);
    assert_int_equal(j->state, NT_JOB_ROLLED_BACK);
    assert_int_equal(block(j, 35)->result, NT_BLOCK_ROLLED_BACK);
    assert_int_equal(block(j, 34)->result, NT_BLOCK_FAILED);
    assert_non_null(strstr(block(j, 34)->reason, "EBUSY"));
    assert_int_equal(block(j, 33)->result, NT_BLOCK_PENDING);
    assert_non_null(strstr(j->message, "block 34 could not be offlined"));
    assert_non_null(strstr(j->message, "rolled back"));
    /* blocks_done counts the blocks the job changed, also once the
     * rollback put them back (35): "1/3 blocks", not "0/3"; not the one
     * that failed unchanged (34), nor the one never tried (33). */
    assert_int_equal(job_json_int(e, id, "blocks_total"), 3);
    assert_int_equal(job_json_int(e, id, "blocks_done"), 1);
    open_hotplug(e, &e->sysfs);                 /* the same from the journal */
    assert_int_equal(job_json_int(e, id, "blocks_done"), 1);
}


/* A block in ZONE_NORMAL goes back with online_kernel, not the default. */
static void test_rollback_restores_kernel_zone(void **state)
{
    struct env *e = *state;
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/sys/devices/system/memory/memory35/valid_zones", e->root);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("Normal\n", f);
    fclose(f);
    script(&e->fake, 34, 3, -EINVAL, 0, 0);       /* EINVAL is not retried */
    open_hotplug(e, &e->sysfs);
    int64_t id = start(e, &(struct plan_spec){ NT_OFFLINE_OP_OFFLINE, { 35, 34 }, 2, 0 }, NULL);
    run_jobs(e, 5 * SEC);
    char log[512];
    log_text(&e->fake, log, sizeof(log));
    assert_string_equal(log, "35:offline 34:offline 35:online_kernel");
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, id);
    assert_int_equal(j->state, NT_JOB_ROLLED_BACK);
    assert_int_equal(block(j, 34)->attempts, 1);
}

static void test_no_rollback_leaves_blocks(void **state)
{
    struct env *e = *state;
    script(&e->fake, 34, 3, -EBUSY, -EBUSY, -EBUSY);
    open_hotplug(e, &e->sysfs);
    struct nt_hotplug_request req = { .op = NT_OFFLINE_OP_OFFLINE, .kind = NT_TARGET_BLOCKS, .first_block = 34,
                                      .last_block = 35, .rollback = false };
    int64_t id = start(e, &(struct plan_spec){ NT_OFFLINE_OP_OFFLINE, { 35, 34 }, 2, 0 }, &req);
    run_jobs(e, 5 * SEC);
    char log[512];
    log_text(&e->fake, log, sizeof(log));
    assert_string_equal(log, "35:offline 34:offline 34:offline 34:offline");
    assert_string_equal(e->fake.state[35], "offline");
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, id);
    assert_int_equal(j->state, NT_JOB_FAILED);
    assert_false(j->rollback);
    assert_int_equal(block(j, 35)->result, NT_BLOCK_OFFLINED);
    assert_non_null(strstr(j->message, "rollback off"));
    assert_non_null(strstr(j->message, "block 35 is offline"));
}

static void test_rollback_failure_is_reported(void **state)
{
    struct env *e = *state;
    script(&e->fake, 35, 2, 0, -ENOMEM);                /* offline works, online back does not */
    script(&e->fake, 34, 1, -EIO);
    open_hotplug(e, &e->sysfs);
    int64_t id = start(e, &(struct plan_spec){ NT_OFFLINE_OP_OFFLINE, { 35, 34 }, 2, 0 }, NULL);
    run_jobs(e, 5 * SEC);
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, id);
    assert_int_equal(j->state, NT_JOB_FAILED);
    assert_int_equal(block(j, 35)->result, NT_BLOCK_ROLLBACK_FAILED);
    assert_string_equal(block(j, 35)->now, "offline");
    assert_non_null(strstr(j->message, "rollback incomplete: block 35 is offline"));
}

/* The deadline passes while a busy block waits for its retry: it times
 * out, and what was offlined goes back. */
static void test_deadline_rolls_back(void **state)
{
    struct env *e = *state;
    e->p.retry_backoff_usec = 60 * SEC;
    script(&e->fake, 34, 1, -EBUSY);
    open_hotplug(e, &e->sysfs);
    struct nt_hotplug_request req = { .op = NT_OFFLINE_OP_OFFLINE, .kind = NT_TARGET_BLOCKS, .first_block = 34,
                                      .last_block = 35, .rollback = true, .timeout_usec = 1 * SEC };
    uint64_t t0 = nt_now_usec();
    int64_t id = start(e, &(struct plan_spec){ NT_OFFLINE_OP_OFFLINE, { 35, 34 }, 2, 0 }, &req);
    run_jobs(e, 5 * SEC);
    assert_true(nt_now_usec() - t0 < 4 * SEC);
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, id);
    assert_int_equal(j->state, NT_JOB_ROLLED_BACK);
    assert_int_equal(block(j, 34)->result, NT_BLOCK_TIMEOUT);
    assert_non_null(strstr(block(j, 34)->reason, "deadline"));
    assert_int_equal(block(j, 35)->result, NT_BLOCK_ROLLED_BACK);
    assert_non_null(strstr(j->message, "deadline"));
}

static void test_one_job_at_a_time(void **state)
{
    struct env *e = *state;
    open_hotplug(e, &e->sysfs);
    start(e, &(struct plan_spec){ NT_OFFLINE_OP_OFFLINE, { 35 }, 1, 0 }, NULL);
    struct nt_offline_plan plan;
    make_plan(&(struct plan_spec){ NT_OFFLINE_OP_OFFLINE, { 34 }, 1, 0 }, &plan);
    struct nt_hotplug_request req = { .op = NT_OFFLINE_OP_OFFLINE, .kind = NT_TARGET_BLOCKS, .first_block = 34,
                                      .last_block = 34, .rollback = true };
    assert_int_equal(nt_hotplug_start(e->h, &plan, &req, NULL, 0, NULL), -EBUSY);
    struct nt_hotplug_reply reply;
    assert_int_equal(nt_hotplug_submit(e->h, &req, &reply), -EBUSY);
    assert_string_equal(reply.code, "busy");
    nt_offline_plan_free(&plan);
    run_jobs(e, 5 * SEC);
}

static void test_online_job(void **state)
{
    struct env *e = *state;
    open_hotplug(e, &e->sysfs);
    struct nt_hotplug_request req = { .op = NT_OFFLINE_OP_ONLINE, .kind = NT_TARGET_BLOCKS, .first_block = 36,
                                      .last_block = 36, .rollback = true };
    int64_t id = start(e, &(struct plan_spec){ NT_OFFLINE_OP_ONLINE, { 36 }, 1, 0 }, &req);
    run_jobs(e, 5 * SEC);
    char log[128];
    log_text(&e->fake, log, sizeof(log));
    assert_string_equal(log, "36:online_movable");
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, id);
    assert_int_equal(j->state, NT_JOB_SUCCEEDED);
    assert_int_equal(block(j, 36)->result, NT_BLOCK_ONLINED);
    assert_string_equal(block(j, 36)->restore, "offline");
}

/* A drain changes no block; with nothing on the node to move it just
 * succeeds (the VM scenario moves real threads and pages). */
/* Start a drain of node 2, its threads to node 0; returns the job id. */
static int64_t start_drain(struct env *e)
{
    struct nt_hotplug_request req = { .op = NT_OFFLINE_OP_DRAIN, .kind = NT_TARGET_NODE, .node = 2 };
    struct nt_offline_plan plan;
    make_plan(&(struct plan_spec){ NT_OFFLINE_OP_DRAIN, { 35, 34 }, 2, 0 }, &plan);
    plan.cpu_node = 0;
    int64_t id = 0;
    assert_int_equal(nt_hotplug_start(e->h, &plan, &req, NULL, 0, &id), 0);
    nt_offline_plan_free(&plan);
    return id;
}

static void test_drain_changes_no_block(void **state)
{
    struct env *e = *state;
    open_hotplug(e, &e->sysfs);
    int64_t id = start_drain(e);
    run_jobs(e, 5 * SEC);
    assert_int_equal(e->fake.nlog, 0);
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, id);
    assert_int_equal(j->state, NT_JOB_SUCCEEDED);
    assert_int_equal(j->op, NT_OFFLINE_OP_DRAIN);
    assert_int_equal(j->nr_blocks, 0);
    assert_int_equal(j->cpu_node, 0);
    assert_non_null(strstr(j->message, "drained node 2"));
}

/* ---- the forked worker ------------------------------------------------------------------ */

static void read_state_file(struct env *e, unsigned b, char *buf, size_t len)
{
    char rel[96];
    snprintf(rel, sizeof(rel), "/sys/devices/system/memory/memory%u/state", b);
    _cleanup_free_ char *s = NULL;
    assert_int_equal(nt_read_file(e->root, rel, &s), 0);
    snprintf(buf, len, "%s", s);
}

/* The real writer in a real child, on the fixture's state files. */
static void test_worker_writes(void **state)
{
    struct env *e = *state;
    open_hotplug(e, NULL);
    int64_t id = start(e, &(struct plan_spec){ NT_OFFLINE_OP_OFFLINE, { 35, 34 }, 2, 0 }, NULL);
    run_jobs(e, 10 * SEC);
    char s[32];
    read_state_file(e, 35, s, sizeof(s));
    assert_string_equal(s, "offline");
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, id);
    assert_int_equal(j->state, NT_JOB_SUCCEEDED);
}

/* Blocks like the kernel's retry loop; only a signal ends it. */
static int hang_write(const char *path, const char *value, void *ud)
{
    (void)path;
    (void)value;
    (void)ud;
    for (;;)
        pause();
    return 0;
}

static int busy_write(const char *path, const char *value, void *ud)
{
    (void)path;
    (void)value;
    (void)ud;
    return -EBUSY;
}

static void test_worker_timeout_interrupts(void **state)
{
    struct env *e = *state;
    struct nt_hotplug_sysfs hang = { .write = hang_write };
    open_hotplug(e, &hang);
    uint64_t t0 = nt_now_usec();
    int64_t id = start(e, &(struct plan_spec){ NT_OFFLINE_OP_OFFLINE, { 35 }, 1, 0 }, NULL);
    assert_non_null(nt_hotplug_current(e->h));      /* the reply does not wait for the write */
    run_jobs(e, 10 * SEC);
    uint64_t took = nt_now_usec() - t0;
    assert_true(took >= 200 * MS && took < 5 * SEC);
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, id);
    assert_int_equal(block(j, 35)->result, NT_BLOCK_TIMEOUT);
    assert_non_null(strstr(block(j, 35)->reason, "write_timeout"));
    assert_int_equal(j->state, NT_JOB_ROLLED_BACK);   /* nothing was changed */
}

/* The errno of the write crosses the process boundary. */
static void test_worker_reports_errno(void **state)
{
    struct env *e = *state;
    e->p.ebusy_retries = 1;
    struct nt_hotplug_sysfs busy = { .write = busy_write };
    open_hotplug(e, &busy);
    int64_t id = start(e, &(struct plan_spec){ NT_OFFLINE_OP_OFFLINE, { 35 }, 1, 0 }, NULL);
    run_jobs(e, 10 * SEC);
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, id);
    assert_int_equal(block(j, 35)->result, NT_BLOCK_FAILED);
    assert_int_equal(block(j, 35)->attempts, 2);
    assert_non_null(strstr(block(j, 35)->reason, "EBUSY"));
}

/* ---- --force rebinds ----------------------------------------------------------------------- */

static void read_mems(struct env *e, char *buf, size_t len)
{
    _cleanup_free_ char *s = NULL;
    assert_int_equal(nt_read_file(e->root, "/sys/fs/cgroup/pinned.slice/cpuset.mems", &s), 0);
    snprintf(buf, len, "%s", s);
}

static void start_forced(struct env *e, int fail_block)
{
    struct nt_offline_plan plan;
    make_plan(&(struct plan_spec){ NT_OFFLINE_OP_OFFLINE, { 35, 34 }, 2, 0 }, &plan);
    plan.rebinds = calloc(1, sizeof(*plan.rebinds));
    assert_non_null(plan.rebinds);
    plan.nr_rebinds = 1;
    plan.rebinds[0] = (struct nt_offline_rebind){ .pid = 100, .comm = "pinned", .to_node = 1 };
    nt_nodeset_set(&plan.rebinds[0].from, 2);
    struct nt_hotplug_proc procs[] = { { .pid = 100, .comm = "pinned", .cpuset = true,
                                         .cgroup = "/pinned.slice/job" } };
    nt_nodeset_set(&procs[0].mems, 2);
    struct nt_hotplug_request req = { .op = NT_OFFLINE_OP_OFFLINE, .kind = NT_TARGET_NODE, .node = 2,
                                      .force = true, .rollback = true };
    if (fail_block)
        script(&e->fake, (unsigned)fail_block, 1, -EIO);
    assert_int_equal(nt_hotplug_start(e->h, &plan, &req, procs, 1, NULL), 0);
    nt_offline_plan_free(&plan);
}

static void test_force_rebind_and_online_restores(void **state)
{
    struct env *e = *state;
    char mems[64];
    open_hotplug(e, &e->sysfs);
    start_forced(e, 0);
    read_mems(e, mems, sizeof(mems));
    assert_string_equal(mems, "1-2");          /* rewritten to allow the destination, before moving */
    run_jobs(e, 5 * SEC);
    read_mems(e, mems, sizeof(mems));
    assert_string_equal(mems, "1-2");          /* kept after success: the node is gone */

    /* online of the same node puts cpuset.mems back */
    struct nt_hotplug_request req = { .op = NT_OFFLINE_OP_ONLINE, .kind = NT_TARGET_NODE, .node = 2,
                                      .rollback = true };
    int64_t id = start(e, &(struct plan_spec){ NT_OFFLINE_OP_ONLINE, { 34, 35 }, 2, 0 }, &req);
    run_jobs(e, 5 * SEC);
    read_mems(e, mems, sizeof(mems));
    assert_string_equal(mems, "2");
    _cleanup_(nt_job_freep) struct nt_job *on = journaled(e, id);
    assert_int_equal(on->state, NT_JOB_SUCCEEDED);
    assert_int_equal(on->nr_rebinds, 1);
    assert_true(on->rebinds[0].restored);
    assert_string_equal(on->rebinds[0].cgroup, "/pinned.slice");
    _cleanup_(nt_job_freep) struct nt_job *off = journaled(e, id - 1);
    assert_true(off->rebinds[0].applied);
    assert_true(off->rebinds[0].restored);
}

static void test_force_rebind_undone_by_rollback(void **state)
{
    struct env *e = *state;
    char mems[64];
    open_hotplug(e, &e->sysfs);
    start_forced(e, 34);
    run_jobs(e, 5 * SEC);
    read_mems(e, mems, sizeof(mems));
    assert_string_equal(mems, "2");
    struct json_object *out = NULL, *arr, *job, *v;
    assert_int_equal(nt_hotplug_jobs_json(e->h, 0, &out), 0);
    assert_true(json_object_object_get_ex(out, "jobs", &arr));
    job = json_object_array_get_idx(arr, 0);
    assert_true(json_object_object_get_ex(job, "state", &v));
    assert_string_equal(json_object_get_string(v), "rolled-back");
    assert_true(json_object_object_get_ex(job, "rebinds", &v));
    assert_true(json_object_get_boolean(json_object_object_get(json_object_array_get_idx(v, 0), "restored")));
    json_object_put(out);
}

/* ---- restart recovery -------------------------------------------------------------------------- */

/* The fixture's job 7, as a killed daemon left it, with its start now. */
static void load_running_fixture(struct env *e)
{
    struct nt_ledger *l = NULL;
    char why[256];
    assert_int_equal(nt_ledger_open(e->ledger, NULL, &l, why, sizeof(why)), 0);
    nt_ledger_close(l);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/ledger-running.sql", fixture_dir());
    _cleanup_free_ char *sql = NULL;
    assert_int_equal(nt_read_file("/", path, &sql), 0);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(e->ledger, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    char upd[128];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(upd, sizeof(upd), "UPDATE jobs SET started_usec = %lld WHERE id = 7",
             (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
    assert_int_equal(sqlite3_exec(db, upd, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    /* the kernel's view: 35 offline, and 34's in-flight offline took */
    snprintf(e->fake.state[35], sizeof(e->fake.state[35]), "offline");
    snprintf(e->fake.state[34], sizeof(e->fake.state[34]), "offline");
}

static void test_recover_rolls_back(void **state)
{
    struct env *e = *state;
    load_running_fixture(e);
    open_hotplug(e, &e->sysfs);
    assert_int_equal(nt_hotplug_recover(e->h), 0);
    assert_non_null(nt_hotplug_current(e->h));
    run_jobs(e, 5 * SEC);
    char log[256];
    log_text(&e->fake, log, sizeof(log));
    /* what this job changed goes back, last changed first; 33 untouched */
    assert_string_equal(log, "34:online_movable 35:online_movable");
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, 7);
    assert_int_equal(j->state, NT_JOB_ROLLED_BACK);
    assert_true(j->resumed);
    assert_non_null(strstr(j->message, "on_restart=rollback"));
    assert_int_equal(block(j, 34)->result, NT_BLOCK_ROLLED_BACK);
    assert_int_equal(block(j, 35)->result, NT_BLOCK_ROLLED_BACK);
    assert_int_equal(block(j, 33)->result, NT_BLOCK_PENDING);
    assert_string_equal(block(j, 34)->writing, "");
    _cleanup_(nt_job_freep) struct nt_job *old = journaled(e, 6);
    assert_int_equal(old->state, NT_JOB_SUCCEEDED);     /* finished jobs are left alone */
    assert_false(old->resumed);
}

static void test_recover_resumes(void **state)
{
    struct env *e = *state;
    load_running_fixture(e);
    e->p.on_restart = NT_OFFLINE_RESTART_RESUME;
    open_hotplug(e, &e->sysfs);
    assert_int_equal(nt_hotplug_recover(e->h), 0);
    run_jobs(e, 5 * SEC);
    char log[256];
    log_text(&e->fake, log, sizeof(log));
    assert_string_equal(log, "33:offline");     /* 34 was found done; only 33 is left */
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, 7);
    assert_int_equal(j->state, NT_JOB_SUCCEEDED);
    assert_true(j->resumed);
    assert_int_equal(block(j, 34)->result, NT_BLOCK_OFFLINED);
    assert_int_equal(block(j, 33)->result, NT_BLOCK_OFFLINED);
    assert_non_null(strstr(j->message, "resumed it (on_restart=resume)"));

    /* jobs lists both, newest first */
    struct json_object *out = NULL, *arr;
    assert_int_equal(nt_hotplug_jobs_json(e->h, 0, &out), 0);
    assert_true(json_object_object_get_ex(out, "jobs", &arr));
    assert_int_equal(json_object_array_length(arr), 2);
    assert_int_equal(json_object_get_int(json_object_object_get(json_object_array_get_idx(arr, 0), "id")), 7);
    assert_true(json_object_get_boolean(json_object_object_get(json_object_array_get_idx(arr, 0), "resumed")));
    assert_int_equal(json_object_get_int(json_object_object_get(json_object_array_get_idx(arr, 1), "id")), 6);
    json_object_put(out);
    assert_int_equal(nt_hotplug_jobs_json(e->h, 99, &out), -ENOENT);
}

/* A job caught rolling back rolls back, whatever on_restart says. */
static void test_recover_rolling_back_stays_rollback(void **state)
{
    struct env *e = *state;
    load_running_fixture(e);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(e->ledger, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE jobs SET state = 'rolling-back', phase = 'rolling-back' WHERE id = 7",
                                  NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    e->p.on_restart = NT_OFFLINE_RESTART_RESUME;
    open_hotplug(e, &e->sysfs);
    assert_int_equal(nt_hotplug_recover(e->h), 0);
    run_jobs(e, 5 * SEC);
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, 7);
    assert_int_equal(j->state, NT_JOB_ROLLED_BACK);
    assert_string_equal(e->fake.state[35], "online");
    assert_non_null(strstr(j->message, "while this job was rolling back"));
}

/* ---- gathering and requests --------------------------------------------------------------------- */

static const struct nt_offline_block *gblock(const struct nt_hotplug_input *in, unsigned id)
{
    for (size_t i = 0; i < in->in.nr_blocks; i++)
        if (in->in.blocks[i].id == id)
            return &in->in.blocks[i];
    fail_msg("no block %u", id);
    abort();
}

static const struct nt_hotplug_proc *gproc(const struct nt_hotplug_input *in, pid_t pid)
{
    for (size_t i = 0; i < in->nr_procs; i++)
        if (in->procs[i].pid == pid)
            return &in->procs[i];
    return NULL;
}

static const struct nt_hotplug_proc *must_proc(const struct nt_hotplug_input *in, pid_t pid)
{
    const struct nt_hotplug_proc *p = gproc(in, pid);
    if (!p) {
        fail_msg("pid %d was not gathered as bound", (int)pid);
        abort();
    }
    return p;
}

static void test_gather_whole_node(void **state)
{
    (void)state;
    struct nt_hotplug_params p;
    default_params(&p);
    p.tiers.cpuless_is_slow = true;
    struct nt_offline_request req = { .op = NT_OFFLINE_OP_OFFLINE, .target_node = 2 };
    struct nt_hotplug_input in;
    assert_int_equal(nt_hotplug_gather(fixture_dir(), &p, &req, &in), 0);
    assert_int_equal(in.in.nr_nodes, 3);
    assert_int_equal(in.in.block_size, 128 * MiB);
    /* node 2: 640 MiB total, 384 MiB free, 4 online blocks: 64 MiB each */
    assert_int_equal(gblock(&in, 32)->used_bytes, 64 * MiB);
    assert_int_equal(gblock(&in, 36)->used_bytes, 0);                /* offline */
    assert_false(gblock(&in, 36)->online);
    assert_string_equal(gblock(&in, 36)->valid_zones, "Normal Movable");
    assert_false(in.used_estimated_partial);
    /* watermarks: node 0's zones sum to 2000 pages, above 5% (51 MiB)? no: 7.8 MiB < 51.2 MiB */
    const struct nt_offline_node *n0 = &in.in.nodes[0], *n1 = &in.in.nodes[1], *n2 = &in.in.nodes[2];
    assert_int_equal(n0->low_watermark_bytes, (uint64_t)(1024 * MiB * 0.05));
    assert_int_equal(n0->free_bytes, 512 * MiB);
    assert_true(n2->slow);
    assert_false(n0->slow);
    assert_int_equal(n2->nr_cpus, 0);
    assert_int_equal(n1->nr_cpus, 1);
    /* the bound processes: 100 by cpuset, 200 by a bind policy on node 2;
     * 300's binding includes node 1; kthreadd and 400 (prefer) are not bound */
    const struct nt_hotplug_proc *p100 = must_proc(&in, 100), *p200 = must_proc(&in, 200),
                                 *p300 = must_proc(&in, 300);
    assert_true(p100->cpuset);
    assert_string_equal(p100->cgroup, "/pinned.slice/job");
    assert_string_equal(p100->comm, "pinned");
    assert_false(p200->cpuset);
    assert_true(nt_nodeset_test(&p200->mems, 2) && !nt_nodeset_test(&p200->mems, 1));
    assert_true(nt_nodeset_test(&p300->mems, 1));
    assert_null(gproc(&in, 2));
    assert_null(gproc(&in, 400));
    assert_int_equal(in.in.nr_procs, in.nr_procs);
    assert_true(in.in.procs[0].bound);
    nt_hotplug_input_done(&in);
}

/* A block of a node that keeps other blocks: its pages on an LRU list are
 * counted in /proc/kpageflags (no estimate); unreadable, the estimate. */
static void test_gather_partial_counts_kpageflags(void **state)
{
    struct env *e = *state;
    unsigned ids[] = { 9 };
    struct nt_offline_request req = { .op = NT_OFFLINE_OP_OFFLINE, .target_node = -1, .block_ids = ids,
                                      .nr_block_ids = 1 };
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), first = 9 * 128 * MiB / page;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/proc/kpageflags", e->root);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (uint64_t i = 0; i < 300; i++) {
        /* every third page LRU (bit 5), the others slab or free (bits 7, 10) */
        uint64_t flags = i % 3 == 0 ? UINT64_C(1) << 5 : i % 3 == 1 ? UINT64_C(1) << 7 : UINT64_C(1) << 10;
        assert_int_equal(fseeko(f, (off_t)((first - 100 + i) * sizeof(flags)), SEEK_SET), 0);
        assert_int_equal(fwrite(&flags, sizeof(flags), 1, f), 1);
    }
    assert_int_equal(fclose(f), 0);
    struct nt_hotplug_input in;
    assert_int_equal(nt_hotplug_gather(e->root, &e->p, &req, &in), 0);
    /* pages first-100 .. first+199 written; of those in block 9 (first ..
     * first+199), i = 100..299, every third is LRU: i = 102, 105, ... 297 */
    assert_int_equal(gblock(&in, 9)->used_bytes, 66 * page);
    assert_false(in.used_estimated_partial);
    nt_hotplug_input_done(&in);

    assert_int_equal(chmod(path, 0), 0);
    if (access(path, R_OK) == 0)        /* root reads it anyway: take it away */
        assert_int_equal(unlink(path), 0);
    assert_int_equal(nt_hotplug_gather(e->root, &e->p, &req, &in), 0);
    assert_int_equal(gblock(&in, 9)->used_bytes, 128 * MiB);
    assert_true(in.used_estimated_partial);
    nt_hotplug_input_done(&in);
}

static void test_gather_partial_and_watermarks(void **state)
{
    (void)state;
    struct nt_hotplug_params p;
    default_params(&p);
    p.free_watermark_pct = 0;           /* now the kernel's low watermarks count */
    unsigned ids[] = { 9 };
    struct nt_offline_request req = { .op = NT_OFFLINE_OP_OFFLINE, .target_node = -1, .block_ids = ids,
                                      .nr_block_ids = 1 };
    struct nt_hotplug_input in;
    assert_int_equal(nt_hotplug_gather(fixture_dir(), &p, &req, &in), 0);
    /* node 1 keeps other blocks: min(block size, node used 256 MiB) */
    assert_int_equal(gblock(&in, 9)->used_bytes, 128 * MiB);
    assert_true(in.used_estimated_partial);
    long page = sysconf(_SC_PAGESIZE);
    assert_int_equal(in.in.nodes[0].low_watermark_bytes, 2000 * (uint64_t)page);
    assert_int_equal(in.in.nodes[1].low_watermark_bytes, 128 * (uint64_t)page);
    /* node 2 is not emptied: its bound processes are still reported (the planner decides) */
    assert_non_null(gproc(&in, 100));
    nt_hotplug_input_done(&in);
}

static void write_root_file(struct env *e, const char *rel, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s%s", e->root, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* ---- progress while a migrate_pages runs --------------------------------------------- */

#define NODE2_FREE_KB   393216      /* the fixture's: 256 MiB of 640 in use */

static void set_node2_free(struct env *e, int64_t delta_mib)
{
    char text[192];
    long long free_kb = NODE2_FREE_KB + delta_mib * 1024;
    snprintf(text, sizeof(text), "Node 2 MemTotal:       655360 kB\nNode 2 MemFree:        %lld kB\n"
             "Node 2 MemUsed:        %lld kB\n", free_kb, 655360 - free_kb);
    write_root_file(e, "/sys/devices/system/node/node2/meminfo", text);
}

static bool job_json_has(struct env *e, int64_t id, const char *key)
{
    struct json_object *out = NULL, *arr;
    assert_int_equal(nt_hotplug_jobs_json(e->h, id, &out), 0);
    assert_true(json_object_object_get_ex(out, "jobs", &arr));
    bool has = json_object_object_get_ex(json_object_array_get_idx(arr, 0), key, NULL);
    json_object_put(out);
    return has;
}

static int64_t start_node2_offline(struct env *e)
{
    struct nt_offline_plan plan;
    make_plan(&(struct plan_spec){ NT_OFFLINE_OP_OFFLINE, { 35, 34, 33, 32 }, 4, 0 }, &plan);
    plan.used_bytes = 256 * MiB;
    nt_nodeset_set(&plan.emptied, 2);
    struct nt_hotplug_request req = { .op = NT_OFFLINE_OP_OFFLINE, .kind = NT_TARGET_NODE, .node = 2,
                                      .rollback = true };
    int64_t id = 0;
    assert_int_equal(nt_hotplug_start(e->h, &plan, &req, NULL, 0, &id), 0);
    nt_offline_plan_free(&plan);
    return id;
}

/* While a migrate_pages runs, bytes_moved is the count so far plus what
 * left the node since the call began, clamped to what the process had
 * there, and never goes back; the journal has only counts; once the
 * evacuation is over the count alone. bytes_to_move is the plan's. */
static void test_progress_while_migrating(void **state)
{
    struct env *e = *state;
    write_root_file(e, "/proc/meminfo", "MemTotal:        2097152 kB\nHugepagesize:       2048 kB\n");
    open_hotplug(e, &e->sysfs);
    int64_t id = start_node2_offline(e);
    assert_int_equal(job_json_int(e, id, "bytes_to_move"), 256 * MiB);
    assert_int_equal(job_json_int(e, id, "bytes_moved"), 0);

    bool done;
    uint64_t delay;
    assert_int_equal(nt_hp_evac_slice(e->h, &done, &delay), 0);     /* the evacuation begins */
    nt_hp_evac_track(e->h, 2, 100 * MiB);                         /* a migrate_pages of 100 MiB starts */
    assert_int_equal(job_json_int(e, id, "bytes_moved"), 0);
    set_node2_free(e, 64);
    assert_int_equal(job_json_int(e, id, "bytes_moved"), 64 * MiB);
    _cleanup_(nt_job_freep) struct nt_job *mid = journaled(e, id);
    assert_int_equal(mid->bytes_moved, 0);                          /* estimates are not journaled */
    set_node2_free(e, -32);                                         /* others allocated there meanwhile */
    assert_int_equal(job_json_int(e, id, "bytes_moved"), 64 * MiB);  /* never back */
    set_node2_free(e, 120);                                         /* more left than the process had */
    assert_int_equal(job_json_int(e, id, "bytes_moved"), 100 * MiB);

    /* It counted 90 MiB; the next process's call starts from here. */
    e->h->job->bytes_moved = 90 * MiB;
    nt_hp_evac_track(e->h, 2, 100 * MiB);
    assert_int_equal(job_json_int(e, id, "bytes_moved"), 100 * MiB);
    set_node2_free(e, 125);
    assert_int_equal(job_json_int(e, id, "bytes_moved"), 100 * MiB);     /* 90 + 5 */
    set_node2_free(e, 160);
    assert_int_equal(job_json_int(e, id, "bytes_moved"), 130 * MiB);     /* 90 + 40 */

    run_jobs(e, 5 * SEC);
    assert_int_equal(job_json_int(e, id, "bytes_moved"), 90 * MiB);
    assert_false(job_json_has(e, id, "bytes_to_move"));
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, id);
    assert_int_equal(j->state, NT_JOB_SUCCEEDED);
    assert_int_equal(j->bytes_moved, 90 * MiB);
}

/* Without the node's meminfo at the start there is no estimate, only counts. */
static void test_progress_without_meminfo(void **state)
{
    struct env *e = *state;
    open_hotplug(e, &e->sysfs);                 /* the fixture has no /proc/meminfo: numastat cannot read */
    int64_t id = start_node2_offline(e);
    bool done;
    uint64_t delay;
    assert_int_equal(nt_hp_evac_slice(e->h, &done, &delay), 0);
    nt_hp_evac_track(e->h, 2, 200 * MiB);
    write_root_file(e, "/proc/meminfo", "Hugepagesize:       2048 kB\n");
    set_node2_free(e, 64);
    assert_int_equal(job_json_int(e, id, "bytes_moved"), 0);
    run_jobs(e, 5 * SEC);
}

static const char *reason_of(struct env *e, enum nt_offline_op op, unsigned id)
{
    static char buf[NT_OFFLINE_REASON_MAX];
    struct nt_hotplug_params p;
    default_params(&p);
    struct nt_offline_request req = { .op = op, .target_node = -1, .block_ids = &id, .nr_block_ids = 1 };
    struct nt_hotplug_input in;
    assert_int_equal(nt_hotplug_gather(e->root, &p, &req, &in), 0);
    const char *r = gblock(&in, id)->unofflinable_reason;
    snprintf(buf, sizeof(buf), "%s", r ? r : "(none)");
    nt_hotplug_input_done(&in);
    return buf;
}

/* /proc/iomem: the kernel offlines only blocks that System RAM covers
 * whole. The fixture has QEMU's reservation at the top of low memory
 * (block 15) and below 4 KiB (block 0); System RAM nested at any depth
 * (a dax device's "System RAM (kmem)", block 35) and what is nested in
 * System RAM (Kernel code, in block 2) are RAM. */
static void test_gather_iomem_holes(void **state)
{
    struct env *e = *state;
    assert_string_equal(reason_of(e, NT_OFFLINE_OP_OFFLINE, 15),
                        "is not entirely System RAM (reserved 0x7ffe0000-0x7fffffff inside): "
                        "the kernel cannot offline it");
    assert_string_equal(reason_of(e, NT_OFFLINE_OP_OFFLINE, 0),
                        "is not entirely System RAM (reserved 0x0-0xfff inside): the kernel cannot offline it");
    assert_string_equal(reason_of(e, NT_OFFLINE_OP_OFFLINE, 2), "(none)");
    assert_string_equal(reason_of(e, NT_OFFLINE_OP_OFFLINE, 14), "(none)");
    assert_string_equal(reason_of(e, NT_OFFLINE_OP_OFFLINE, 35), "(none)");
    assert_string_equal(reason_of(e, NT_OFFLINE_OP_OFFLINE, 36), "(none)");      /* offline: not judged */
    assert_string_equal(reason_of(e, NT_OFFLINE_OP_ONLINE, 15), "(none)");
    assert_string_equal(reason_of(e, NT_OFFLINE_OP_DRAIN, 15), "(none)");

    /* The plan refuses, naming the block and the range; nothing is written. */
    open_hotplug(e, &e->sysfs);
    struct nt_hotplug_request req = { .op = NT_OFFLINE_OP_OFFLINE, .kind = NT_TARGET_BLOCKS, .first_block = 14,
                                      .last_block = 15, .rollback = true };
    struct nt_hotplug_reply reply;
    assert_int_equal(nt_hotplug_submit(e->h, &req, &reply), -EPERM);
    assert_string_equal(reply.code, "infeasible");
    json_object_put(reply.result);
    assert_string_equal(reply.message, "cannot offline blocks 14-15: block 15 is not entirely System RAM "
                                       "(reserved 0x7ffe0000-0x7fffffff inside): the kernel cannot offline it.");
    assert_null(nt_hotplug_current(e->h));
    assert_int_equal(e->fake.nlog, 0);

    /* A hole named by what sits there, or by nothing; it ends where RAM resumes. */
    write_root_file(e, "/proc/iomem", "00000000-3fffffff : System RAM\n"
                                      "40000000-40ffffff : ACPI Tables\n"
                                      "44000000-7fffffff : System RAM\n"
                                      "100000000-107ffffff : System RAM\n");
    assert_string_equal(reason_of(e, NT_OFFLINE_OP_OFFLINE, 8),
                        "is not entirely System RAM (\"ACPI Tables\" 0x40000000-0x43ffffff inside): "
                        "the kernel cannot offline it");
    assert_string_equal(reason_of(e, NT_OFFLINE_OP_OFFLINE, 33),
                        "is not entirely System RAM (no RAM at 0x108000000-0x10fffffff inside): "
                        "the kernel cannot offline it");
    assert_string_equal(reason_of(e, NT_OFFLINE_OP_OFFLINE, 9), "(none)");

    /* Without CAP_SYS_ADMIN every address reads 0: no verdict from that. */
    write_root_file(e, "/proc/iomem", "00000000-00000000 : Reserved\n00000000-00000000 : System RAM\n");
    assert_string_equal(reason_of(e, NT_OFFLINE_OP_OFFLINE, 15), "(none)");
    assert_string_equal(reason_of(e, NT_OFFLINE_OP_OFFLINE, 0), "(none)");
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/proc/iomem", e->root);
    assert_int_equal(unlink(path), 0);          /* no /proc/iomem at all: the same */
    assert_string_equal(reason_of(e, NT_OFFLINE_OP_OFFLINE, 15), "(none)");
}

static void test_parse_requests(void **state)
{
    (void)state;
    unsigned a, b;
    uint64_t s, t;
    assert_int_equal(nt_hotplug_parse_blocks("40", &a, &b), 0);
    assert_true(a == 40 && b == 40);
    assert_int_equal(nt_hotplug_parse_blocks("40-43", &a, &b), 0);
    assert_true(a == 40 && b == 43);
    assert_int_equal(nt_hotplug_parse_blocks("43-40", &a, &b), -EINVAL);
    assert_int_equal(nt_hotplug_parse_blocks("-1", &a, &b), -EINVAL);
    assert_int_equal(nt_hotplug_parse_blocks("4x", &a, &b), -EINVAL);
    assert_int_equal(nt_hotplug_parse_blocks("", &a, &b), -EINVAL);
    assert_int_equal(nt_hotplug_parse_range("0x100000000-0x120000000", &s, &t), 0);
    assert_true(s == UINT64_C(0x100000000) && t == UINT64_C(0x120000000));
    assert_int_equal(nt_hotplug_parse_range("4096-8192", &s, &t), 0);
    assert_int_equal(nt_hotplug_parse_range("8192-4096", &s, &t), -EINVAL);
    assert_int_equal(nt_hotplug_parse_range("0x10", &s, &t), -EINVAL);
    assert_int_equal(nt_hotplug_parse_range("0xg-0x10", &s, &t), -EINVAL);

    struct { enum nt_offline_op op; const char *json; int rc; const char *why; } cases[] = {
        { NT_OFFLINE_OP_OFFLINE, "{\"node\":2}", 0, NULL },
        { NT_OFFLINE_OP_OFFLINE, "{\"block\":\"40-43\",\"dry_run\":true,\"timeout_sec\":1.5}", 0, NULL },
        { NT_OFFLINE_OP_OFFLINE, "{\"block\":40}", 0, NULL },
        { NT_OFFLINE_OP_ONLINE, "{\"range\":\"0x0-0x8000000\",\"force\":false,\"rollback\":false}", 0, NULL },
        { NT_OFFLINE_OP_OFFLINE, "{}", -EINVAL, "exactly one target" },
        { NT_OFFLINE_OP_OFFLINE, "{\"node\":1,\"block\":\"3\"}", -EINVAL, "exactly one target" },
        { NT_OFFLINE_OP_OFFLINE, "{\"node\":-1}", -EINVAL, "node number" },
        { NT_OFFLINE_OP_OFFLINE, "{\"node\":2,\"dry_run\":\"yes\"}", -EINVAL, "dry_run" },
        { NT_OFFLINE_OP_OFFLINE, "{\"node\":2,\"timeout_sec\":-3}", -EINVAL, "timeout_sec" },
        { NT_OFFLINE_OP_OFFLINE, "{\"node\":2,\"bogus\":1}", -EINVAL, "unknown argument \"bogus\"" },
        { NT_OFFLINE_OP_DRAIN, "{\"block\":\"3\"}", -EINVAL, "drain" },
        { NT_OFFLINE_OP_DRAIN, "{\"node\":\"1\"}", 0, NULL },
    };
    for (size_t i = 0; i < NT_ARRAY_SIZE(cases); i++) {
        struct json_object *args = json_tokener_parse(cases[i].json);
        struct nt_hotplug_request req;
        char why[256] = "";
        int rc = nt_hotplug_request_from_json(cases[i].op, args, &req, why, sizeof(why));
        if (rc != cases[i].rc || (cases[i].why && !strstr(why, cases[i].why)))
            fail_msg("%s: got %d \"%s\"", cases[i].json, rc, why);
        json_object_put(args);
        if (i == 1) {
            assert_true(req.dry_run && req.rollback && req.kind == NT_TARGET_BLOCKS);
            assert_true(req.first_block == 40 && req.last_block == 43 && req.timeout_usec == 1500 * MS);
        }
        if (i == 3)
            assert_true(req.kind == NT_TARGET_RANGE && !req.rollback && req.range_end == 0x8000000);
        if (i == 11)
            assert_true(req.kind == NT_TARGET_NODE && req.node == 1);
    }
}

/* submit: a refusal changes nothing and says why; a dry run starts nothing. */
static void test_submit_refusal_and_dry_run(void **state)
{
    struct env *e = *state;
    open_hotplug(e, &e->sysfs);
    struct nt_hotplug_reply reply;
    struct nt_hotplug_request req = { .op = NT_OFFLINE_OP_OFFLINE, .kind = NT_TARGET_NODE, .node = 2,
                                      .rollback = true };
    int r = nt_hotplug_submit(e->h, &req, &reply);       /* pids 100 and 200 are bound to node 2 */
    assert_int_equal(r, -EPERM);
    assert_string_equal(reply.code, "bound-processes");
    assert_non_null(strstr(reply.message, "pinned"));
    /* the refused plan comes with the error, explaining each block */
    struct json_object *refused = json_object_object_get(reply.result, "plan");
    assert_string_equal(json_object_get_string(json_object_object_get(refused, "refusal")), "bound-processes");
    assert_true(json_object_array_length(json_object_object_get(refused, "steps")) > 0);
    json_object_put(reply.result);
    assert_null(nt_hotplug_current(e->h));
    assert_int_equal(e->fake.nlog, 0);

    req = (struct nt_hotplug_request){ .op = NT_OFFLINE_OP_OFFLINE, .kind = NT_TARGET_BLOCKS, .first_block = 0,
                                       .last_block = 0, .rollback = true };
    assert_int_equal(nt_hotplug_submit(e->h, &req, &reply), -EPERM);
    assert_string_equal(reply.code, "infeasible");
    json_object_put(reply.result);

    req = (struct nt_hotplug_request){ .op = NT_OFFLINE_OP_OFFLINE, .kind = NT_TARGET_BLOCKS, .first_block = 9,
                                       .last_block = 9, .rollback = true, .dry_run = true };
    assert_int_equal(nt_hotplug_submit(e->h, &req, &reply), 0);
    struct json_object *plan, *v;
    assert_true(json_object_object_get_ex(reply.result, "plan", &plan));
    assert_false(json_object_object_get_ex(reply.result, "job", &v));
    assert_true(json_object_object_get_ex(plan, "steps", &v));
    assert_int_equal(json_object_array_length(v), 1);
    json_object_put(reply.result);
    assert_null(nt_hotplug_current(e->h));
    assert_int_equal(e->fake.nlog, 0);

    req.first_block = req.last_block = 36;          /* already offline */
    req.dry_run = false;
    assert_int_equal(nt_hotplug_submit(e->h, &req, &reply), 0);
    assert_true(json_object_object_get_ex(reply.result, "job", &v));
    assert_null(v);
    json_object_put(reply.result);
}

/* ---- maintenance ------------------------------------------------------------------------------- */

static bool in_maintenance(struct env *e, int node)
{
    struct nt_nodeset set;
    nt_hotplug_maintenance_nodes(e->h, &set);
    return nt_nodeset_test(&set, node);
}

/* status's "maintenance" entry of node: its why and job, or why NULL. */
static const char *maintenance_why(struct env *e, int node, int64_t *job)
{
    static char why[32];
    struct json_object *arr = nt_hotplug_maintenance_json(e->h);
    const char *found = NULL;
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        struct json_object *m = json_object_array_get_idx(arr, i);
        if (json_object_get_int(json_object_object_get(m, "node")) != node)
            continue;
        snprintf(why, sizeof(why), "%s", json_object_get_string(json_object_object_get(m, "why")));
        *job = json_object_get_int64(json_object_object_get(m, "job"));
        found = why;
    }
    json_object_put(arr);
    return found;
}

/* While an offline of blocks of node 2 runs, node 2 is under maintenance
 * (and only it); once the job is over it is not: offlined memory is gone,
 * not maintained. */
static void test_maintenance_while_offlining(void **state)
{
    struct env *e = *state;
    open_hotplug(e, &e->sysfs);
    assert_false(in_maintenance(e, 2));
    int64_t id = start(e, &(struct plan_spec){ NT_OFFLINE_OP_OFFLINE, { 35, 34 }, 2, 0 }, NULL);
    int64_t job = 0;
    assert_true(in_maintenance(e, 2));
    assert_false(in_maintenance(e, 0));
    assert_false(in_maintenance(e, 1));
    assert_string_equal(maintenance_why(e, 2, &job), "offline");
    assert_int_equal(job, id);
    run_jobs(e, 5 * SEC);
    assert_false(in_maintenance(e, 2));
    assert_null(maintenance_why(e, 2, &job));
}

/* A drain puts its node under maintenance while it runs and after it
 * succeeded; a restarted daemon still knows (the journal says so); `online
 * node 2` with every block online ends it, as a job of its own. */
static void test_drain_keeps_node_in_maintenance(void **state)
{
    struct env *e = *state;
    open_hotplug(e, &e->sysfs);
    int64_t id = start_drain(e), job = 0;
    assert_true(in_maintenance(e, 2));
    assert_string_equal(maintenance_why(e, 2, &job), "drain");
    run_jobs(e, 5 * SEC);
    assert_true(in_maintenance(e, 2));
    assert_string_equal(maintenance_why(e, 2, &job), "drained");
    assert_int_equal(job, id);

    open_hotplug(e, &e->sysfs);                         /* a restart */
    assert_true(in_maintenance(e, 2));
    assert_string_equal(maintenance_why(e, 2, &job), "drained");
    assert_int_equal(job, id);

    /* every block of node 2 online: once nothing to do, now the end of the drain */
    assert_int_equal(nt_write_file(e->root, "/sys/devices/system/memory/memory36/state", "online"), 0);
    snprintf(e->fake.state[36], sizeof(e->fake.state[36]), "online");
    struct nt_hotplug_request on = { .op = NT_OFFLINE_OP_ONLINE, .kind = NT_TARGET_NODE, .node = 2,
                                     .rollback = true, .dry_run = true };
    struct nt_hotplug_reply reply;
    assert_int_equal(nt_hotplug_submit(e->h, &on, &reply), 0);
    struct json_object *v = json_object_object_get(json_object_object_get(reply.result, "plan"), "message");
    assert_non_null(strstr(json_object_get_string(v), "ends the drain of node 2"));
    json_object_put(reply.result);
    assert_null(nt_hotplug_current(e->h));              /* a dry run starts nothing */

    on.dry_run = false;
    assert_int_equal(nt_hotplug_submit(e->h, &on, &reply), 0);
    v = json_object_object_get(reply.result, "job");
    assert_non_null(v);
    int64_t online_id = json_object_get_int64(json_object_object_get(v, "id"));
    json_object_put(reply.result);
    run_jobs(e, 5 * SEC);
    assert_false(in_maintenance(e, 2));
    assert_int_equal(e->fake.nlog, 0);                  /* no block written */
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, online_id);
    assert_int_equal(j->state, NT_JOB_SUCCEEDED);
    assert_non_null(strstr(j->message, "drain of node 2 ended: 0 thread(s) restored"));

    open_hotplug(e, &e->sysfs);                         /* the journal agrees */
    assert_false(in_maintenance(e, 2));
    assert_int_equal(nt_hotplug_submit(e->h, &on, &reply), 0);     /* nothing to do again */
    assert_null(json_object_object_get(reply.result, "job"));
    json_object_put(reply.result);
}

/* The nodes still drained come from the journal alone: a v3 ledger's jobs
 * (tests/fixtures/ledger/v3.sql) leave nodes 1 (job 3) and 2 (job 8). */
static void test_maintenance_from_journal(void **state)
{
    struct env *e = *state;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/../ledger/v3.sql", fixture_dir());
    _cleanup_free_ char *sql = NULL;
    assert_int_equal(nt_read_file("/", path, &sql), 0);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(e->ledger, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    open_hotplug(e, &e->sysfs);
    struct nt_nodeset set;
    nt_hotplug_maintenance_nodes(e->h, &set);
    char list[64];
    nt_format_nodelist(&set, list, sizeof(list));
    assert_string_equal(list, "1-2");
    int64_t job = 0;
    assert_string_equal(maintenance_why(e, 1, &job), "drained");
    assert_int_equal(job, 3);
    assert_string_equal(maintenance_why(e, 2, &job), "drained");
    assert_int_equal(job, 8);
}

/* The fake sched_setaffinity: who got which mask. */
struct aff_log {
    pid_t tid[8];
    cpu_set_t mask[8];
    size_t n;
};

static int fake_setaffinity(pid_t tid, const cpu_set_t *mask, void *ud)
{
    struct aff_log *l = ud;
    assert_true(l->n < 8);
    l->tid[l->n] = tid;
    l->mask[l->n++] = *mask;
    return 0;
}

static uint64_t start_time_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    _cleanup_free_ char *s = NULL;
    assert_int_equal(nt_read_file("/", path, &s), 0);
    char *p = strrchr(s, ')');
    assert_non_null(p);
    unsigned long long v = 0;
    /* field k follows the (k - 2)th blank after the comm's ')' */
    for (int field = 3; p && field <= 22; field++) {
        p = strchr(p + 1, ' ');
        if (p && field == 22)
            v = strtoull(p + 1, NULL, 10);
    }
    return v;
}

/* `online node 2` after a drain that pinned two processes (journaled, as a
 * daemon before a restart left them): the one still there from this boot
 * gets its affinity from before back; the one from another boot is
 * counted gone. Both pins are marked restored; the drain has ended. */
static void test_online_restores_what_a_drain_pinned(void **state)
{
    struct env *e = *state;
    char cmd[2 * PATH_MAX + 96];
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s/proc/sys/kernel/random' && echo this-boot > '%s/proc/sys/kernel/random/"
             "boot_id'", e->root, e->root);
    assert_int_equal(system(cmd), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        for (;;)
            pause();
    }
    cpu_set_t cur;
    assert_int_equal(sched_getaffinity(child, sizeof(cur), &cur), 0);
    struct nt_job_pin pins[2] = {
        { .pid = child, .start_time = start_time_of(child), .boot_id = "this-boot", .comm = "sleeper",
          .cpus_before = "0", .threads = 1 },
        { .pid = getpid(), .start_time = start_time_of(getpid()), .boot_id = "old-boot", .comm = "gone",
          .cpus_before = "0", .cpus_set = "0", .threads = 1 },
    };
    nt_cpuset_format(&cur, pins[0].cpus_set, sizeof(pins[0].cpus_set));   /* as the drain left it */
    struct nt_job drain = { .op = NT_OFFLINE_OP_DRAIN, .target = "node 2", .target_node = 2,
                            .state = NT_JOB_SUCCEEDED, .phase = NT_JOB_DONE, .cpu_node = 0,
                            .timeout_usec = 60 * SEC, .started_usec = 1, .finished_usec = 2,
                            .pins = pins, .nr_pins = 2 };
    struct nt_ledger *l = NULL;
    char why[256];
    assert_int_equal(nt_ledger_open(e->ledger, NULL, &l, why, sizeof(why)), 0);
    assert_int_equal(nt_ledger_job_insert(l, &drain), 0);
    nt_ledger_close(l);

    struct aff_log log = { 0 };
    struct nt_mover_params mp;
    nt_mover_params_init(&mp);
    mp.setaffinity = fake_setaffinity;
    mp.userdata = &log;
    struct nt_hotplug_options o = { .event = e->event, .root = e->root, .ledger_path = e->ledger,
                                    .sysfs = &e->sysfs, .mover = &mp };
    nt_hotplug_free(e->h);
    assert_int_equal(nt_hotplug_new(&o, &e->p, &e->h), 0);
    assert_true(in_maintenance(e, 2));

    struct nt_hotplug_request on = { .op = NT_OFFLINE_OP_ONLINE, .kind = NT_TARGET_NODE, .node = 2,
                                     .rollback = true };
    struct nt_hotplug_reply reply;
    assert_int_equal(nt_hotplug_submit(e->h, &on, &reply), 0);     /* block 36 to online, and the drain */
    json_object_put(reply.result);
    run_jobs(e, 5 * SEC);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);

    assert_int_equal(log.n, 1);
    assert_int_equal(log.tid[0], child);
    assert_int_equal(CPU_COUNT(&log.mask[0]), 1);
    assert_true(CPU_ISSET(0, &log.mask[0]));
    assert_false(in_maintenance(e, 2));
    _cleanup_(nt_job_freep) struct nt_job *old = journaled(e, drain.id);
    assert_true(old->pins[0].restored);
    assert_true(old->pins[1].restored);
    _cleanup_(nt_job_freep) struct nt_job *j = journaled(e, drain.id + 1);
    assert_int_equal(j->op, NT_OFFLINE_OP_ONLINE);
    assert_int_equal(j->state, NT_JOB_SUCCEEDED);
    char want[96];
    snprintf(want, sizeof(want), "drain of node 2 ended: 1 thread(s) restored to their CPU affinity from before "
             "(drain job %lld)", (long long)drain.id);
    assert_non_null(strstr(j->message, want));
    assert_non_null(strstr(j->message, "1 pinned process(es) gone"));
    assert_non_null(strstr(j->message, "onlined 1 block(s) of node 2"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_offline_succeeds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ebusy_retried_then_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ebusy_exhausted_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_restores_kernel_zone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_rollback_leaves_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_failure_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_job_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_online_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_changes_no_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_timeout_interrupts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_reports_errno, setup, teardown),
        cmocka_unit_test_setup_teardown(test_force_rebind_and_online_restores, setup, teardown),
        cmocka_unit_test_setup_teardown(test_force_rebind_undone_by_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_rolling_back_stays_rollback, setup, teardown),
        cmocka_unit_test(test_gather_whole_node),
        cmocka_unit_test(test_gather_partial_and_watermarks),
        cmocka_unit_test_setup_teardown(test_gather_partial_counts_kpageflags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gather_iomem_holes, setup, teardown),
        cmocka_unit_test(test_parse_requests),
        cmocka_unit_test_setup_teardown(test_submit_refusal_and_dry_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_maintenance_while_offlining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_keeps_node_in_maintenance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_maintenance_from_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_online_restores_what_a_drain_pinned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress_while_migrating, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress_without_meminfo, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
