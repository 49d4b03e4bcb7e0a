/* Writing memory block states, one block at a time, and the state machine
 * around it: retries with backoff on EBUSY, failure, rollback.
 *
 * The kernel retries an offline until it succeeds or a signal arrives, so
 * each write runs in a forked worker with a timer: at write_timeout the
 * worker gets SIGKILL, the kernel gives up (and undoes the isolation), and
 * the worker's exit is seen through its pidfd. The worker dies with the
 * daemon (PR_SET_PDEATHSIG), so a killed daemon leaves no write running.
 * Whatever the write returned, the block's state is read back: that, not
 * the return value, decides the result. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hotplug-internal.h"
#include "numatier/log.h"
#include "numatier/units.h"
#include "numatier/util.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define MEMORY_DIR "/sys/devices/system/memory"

/* ---- sysfs ------------------------------------------------------------------- */

int nt_hp_read_state(struct nt_hotplug *h, unsigned block, char *buf, size_t len)
{
    buf[0] = '\0';
    if (h->sysfs.read_state)
        return h->sysfs.read_state(h->root, block, buf, len, h->sysfs.userdata);
    char path[96];
    snprintf(path, sizeof(path), MEMORY_DIR "/memory%u/state", block);
    _cleanup_free_ char *s = NULL;
    int r = nt_read_file(h->root, path, &s);
    if (r == 0)
        snprintf(buf, len, "%s", s);
    return r;
}

/* "online_movable" and "online_kernel" both read back as "online". */
bool nt_hp_state_is(const char *now, const char *want)
{
    if (strncmp(want, "online", 6) == 0)
        return strcmp(now, "online") == 0;
    return strcmp(now, want) == 0;
}

/* ---- the worker ---------------------------------------------------------------- */

static void worker_close(struct nt_hotplug *h)
{
    struct nt_hp_run *run = &h->run;
    run->worker_io = sd_event_source_disable_unref(run->worker_io);
    run->worker_timer = sd_event_source_disable_unref(run->worker_timer);
    if (run->worker_pidfd >= 0)
        close(run->worker_pidfd);
    run->worker_pidfd = -1;
    run->worker = 0;
}

static void write_done(struct nt_hotplug *h, int r);

/* The worker exited: its exit code is the errno of the write. */
static int on_worker_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    (void)s;
    (void)fd;
    (void)revents;
    struct nt_hotplug *h = userdata;
    int status = 0, r;
    if (waitpid(h->run.worker, &status, 0) < 0)
        r = -errno;
    else if (WIFEXITED(status))
        r = -WEXITSTATUS(status);
    else
        r = h->run.worker_timed_out ? -ETIMEDOUT : -EINTR;
    worker_close(h);
    write_done(h, r);
    return 0;
}

static int on_worker_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
    (void)s;
    (void)usec;
    struct nt_hotplug *h = userdata;
    h->run.worker_timed_out = true;
    log_warning("%s job %" PRId64 ": writing block %u's state takes too long; interrupting it",
                nt_offline_op_to_string(h->job->op), h->job->id, h->job->blocks[h->run.cur].block);
    if (h->run.worker > 0)
        kill(h->run.worker, SIGKILL);
    return 0;
}

/* Only async-signal-safe calls after fork(): the daemon has threads. */
static __attribute__((noreturn)) void worker_main(nt_hotplug_write_fn write, void *userdata, pid_t parent,
                                                  const char *path, const char *value)
{
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(ESRCH);
    int r = write(path, value, userdata);
    _exit(r < 0 ? (-r > 255 ? EIO : -r) : 0);
}

static int worker_start(struct nt_hotplug *h, nt_hotplug_write_fn write, const char *path, const char *value)
{
    struct nt_hp_run *run = &h->run;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0)
        worker_main(write, h->sysfs.userdata, parent, path, value);
    run->worker = pid;
    run->worker_timed_out = false;
    run->worker_pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int r = run->worker_pidfd < 0 ? -errno : 0;
    if (r == 0)
        r = sd_event_add_io(h->event, &run->worker_io, run->worker_pidfd, EPOLLIN, on_worker_exit, h);
    if (r == 0)
        r = sd_event_add_time_relative(h->event, &run->worker_timer, CLOCK_MONOTONIC, h->p.write_timeout_usec,
                                       1000, on_worker_timeout, h);
    if (r < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        worker_close(h);
    }
    return r;
}

void nt_hp_exec_abort(struct nt_hotplug *h)
{
    if (h->run.worker > 0) {
        kill(h->run.worker, SIGKILL);
        waitpid(h->run.worker, NULL, WNOHANG);
    }
    worker_close(h);
}

/* The default writer: one write(), as sysfs takes it. Safe in the worker. */
static int real_write(const char *path, const char *value, void *userdata)
{
    (void)userdata;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(value);
    ssize_t n = write(fd, value, len);
    int r = n < 0 ? -errno : (size_t)n == len ? 0 : -EIO;
    close(fd);
    return r;
}

/* Start writing value to block i's state. The journal has the intent
 * before the kernel sees the write. */
static void start_write(struct nt_hotplug *h, size_t i, const char *value, bool rollback)
{
    struct nt_job_block *b = &h->job->blocks[i];
    struct nt_hp_run *run = &h->run;
    snprintf(b->writing, sizeof(b->writing), "%s", value);
    if (!rollback)
        b->attempts++;
    nt_hp_journal_block(h, i);
    run->writing = true;
    run->write_rollback = rollback;
    run->cur = i;
    log_info("%s job %" PRId64 ": block %u: writing \"%s\"%s", nt_offline_op_to_string(h->job->op), h->job->id,
             b->block, value,
             rollback ? " (rollback)" : "");
    char rel[96];
    snprintf(rel, sizeof(rel), MEMORY_DIR "/memory%u/state", b->block);
    _cleanup_free_ char *path = nt_path_join(h->root, rel);
    nt_hotplug_write_fn write = h->sysfs.write ? h->sysfs.write : real_write;
    int r;
    if (!path)
        r = -ENOMEM;
    else if (h->sysfs.inline_writes)
        r = write(path, value, h->sysfs.userdata);
    else {
        r = worker_start(h, write, path, value);
        if (r == 0)
            return;             /* on_worker_exit takes it from here */
    }
    write_done(h, r);
}

/* ---- results ------------------------------------------------------------------- */

static const char *errno_word(int r)
{
    switch (-r) {
    case 0: return "no error";
    case EBUSY: return "EBUSY (pages in use could not be moved)";
    case EAGAIN: return "EAGAIN";
    case ETIMEDOUT: return "timed out";
    case EINTR: return "interrupted";
    case EINVAL: return "EINVAL (not possible in this state or zone)";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT (no such block)";
    default: return strerror(-r);
    }
}

static bool retryable(const struct nt_hotplug *h, int r)
{
    if (r == -EBUSY || r == -EAGAIN)
        return true;
    return h->p.retry_timeouts && (r == -ETIMEDOUT || r == -EINTR);
}

static uint64_t backoff_usec(const struct nt_hotplug *h, unsigned attempts)
{
    unsigned shift = attempts > 1 ? attempts - 1 : 0;
    return h->p.retry_backoff_usec << (shift > 10 ? 10 : shift);
}

static void rollback_done(struct nt_hotplug *h, struct nt_job_block *b, int r)
{
    if (nt_hp_state_is(b->now, b->before)) {
        b->result = NT_BLOCK_ROLLED_BACK;
        snprintf(b->reason, sizeof(b->reason), "back %s (\"%s\")", b->before, b->restore);
        return;
    }
    b->result = NT_BLOCK_ROLLBACK_FAILED;
    snprintf(b->reason, sizeof(b->reason), "rollback write of \"%s\" failed: %s; the block is %s",
             b->restore, errno_word(r ? r : -EIO), b->now[0] ? b->now : "unreadable");
    log_error("%s job %" PRId64 ": block %u: %s", nt_offline_op_to_string(h->job->op), h->job->id, b->block, b->reason);
}

/* A forward write that did not take: retry it, or fail the job. */
static void forward_failed(struct nt_hotplug *h, size_t i, int r)
{
    struct nt_job_block *b = &h->job->blocks[i];
    char why[NT_JOB_MESSAGE_MAX];
    if (r == 0)
        r = -EIO;                   /* accepted, yet the state did not change */
    if (!h->run.deadline_passed && retryable(h, r) && b->attempts <= h->p.ebusy_retries) {
        uint64_t wait = backoff_usec(h, b->attempts);
        char d[NT_DURATION_STRLEN];
        nt_format_duration(wait, d, sizeof(d));
        snprintf(b->reason, sizeof(b->reason), "%s; retry %u of %u in %s", errno_word(r), b->attempts,
                 h->p.ebusy_retries, d);
        log_notice("%s job %" PRId64 ": block %u: %s", nt_offline_op_to_string(h->job->op), h->job->id, b->block,
                   b->reason);
        nt_hp_journal_block(h, i);
        nt_hp_kick(h, wait);
        return;
    }
    bool timed_out = r == -ETIMEDOUT || h->run.deadline_passed;
    b->result = timed_out ? NT_BLOCK_TIMEOUT : NT_BLOCK_FAILED;
    if (h->run.deadline_passed)
        snprintf(b->reason, sizeof(b->reason), "the job's deadline passed while writing \"%s\"", b->want);
    else if (r == -ETIMEDOUT) {
        char d[NT_DURATION_STRLEN];
        nt_format_duration(h->p.write_timeout_usec, d, sizeof(d));
        snprintf(b->reason, sizeof(b->reason), "writing \"%s\" did not finish within write_timeout %s "
                 "(interrupted; the block is %s)", b->want, d, b->now[0] ? b->now : "unreadable");
    } else
        snprintf(b->reason, sizeof(b->reason), "%s after %u attempt%s; the block is %s", errno_word(r),
                 b->attempts, b->attempts == 1 ? "" : "s", b->now[0] ? b->now : "unreadable");
    nt_hp_journal_block(h, i);
    snprintf(why, sizeof(why), "block %u could not be %s: %s", b->block,
             strcmp(b->want, "offline") == 0 ? "offlined" : "onlined", b->reason);
    log_warning("%s job %" PRId64 ": %s", nt_offline_op_to_string(h->job->op), h->job->id, why);
    nt_hp_exec_fail(h, why);
}

static void write_done(struct nt_hotplug *h, int r)
{
    struct nt_hp_run *run = &h->run;
    size_t i = run->cur;
    struct nt_job_block *b = &h->job->blocks[i];
    run->writing = false;
    b->writing[0] = '\0';
    if (nt_hp_read_state(h, b->block, b->now, sizeof(b->now)) < 0)
        b->now[0] = '\0';
    if (run->write_rollback) {
        rollback_done(h, b, r);
        nt_hp_journal_block(h, i);
        nt_hp_kick(h, 0);
        return;
    }
    if (!nt_hp_state_is(b->now, b->want)) {
        forward_failed(h, i, r);
        return;
    }
    b->result = strcmp(b->want, "offline") == 0 ? NT_BLOCK_OFFLINED : NT_BLOCK_ONLINED;
    snprintf(b->reason, sizeof(b->reason), "%s%s", b->want,
             b->attempts > 1 ? " (after retries)" : "");
    nt_hp_journal_block(h, i);
    log_info("%s job %" PRId64 ": block %u is %s", nt_offline_op_to_string(h->job->op), h->job->id, b->block, b->now);
    nt_hp_kick(h, 0);
}

/* ---- the phases ------------------------------------------------------------------ */

static bool next_pending(const struct nt_job *j, size_t *i)
{
    for (size_t k = 0; k < j->nr_blocks; k++)
        if (j->blocks[k].result == NT_BLOCK_PENDING && j->blocks[k].want[0]) {
            *i = k;
            return true;
        }
    return false;
}

/* A block this job may have changed and that is not as before. Reverse
 * order: the last changed goes back first. States are read again, since
 * a timed-out write may still have taken. */
static bool next_rollback(struct nt_hotplug *h, size_t *i)
{
    struct nt_job *j = h->job;
    for (size_t k = j->nr_blocks; k-- > 0;) {
        struct nt_job_block *b = &j->blocks[k];
        if (b->result == NT_BLOCK_SKIPPED || b->result == NT_BLOCK_ROLLED_BACK ||
            b->result == NT_BLOCK_ROLLBACK_FAILED || !b->want[0])
            continue;
        if (b->result == NT_BLOCK_PENDING && b->attempts == 0)
            continue;           /* never written */
        if (nt_hp_read_state(h, b->block, b->now, sizeof(b->now)) < 0)
            b->now[0] = '\0';
        if (nt_hp_state_is(b->now, b->before)) {
            if (b->result == NT_BLOCK_OFFLINED || b->result == NT_BLOCK_ONLINED) {
                b->result = NT_BLOCK_ROLLED_BACK;      /* someone else put it back */
                nt_hp_journal_block(h, k);
            }
            continue;
        }
        *i = k;
        return true;
    }
    return false;
}

/* Every block this job touched is as before: rolled back. */
static enum nt_job_state rollback_outcome(const struct nt_job *j)
{
    for (size_t k = 0; k < j->nr_blocks; k++)
        if (j->blocks[k].result == NT_BLOCK_ROLLBACK_FAILED)
            return NT_JOB_FAILED;
    for (size_t k = 0; k < j->nr_rebinds; k++)
        if (j->rebinds[k].applied && !j->rebinds[k].restored)
            return NT_JOB_FAILED;
    return NT_JOB_ROLLED_BACK;
}

void nt_hp_exec_step(struct nt_hotplug *h)
{
    struct nt_job *j = h->job;
    size_t i;
    switch (j->phase) {
    case NT_JOB_OFFLINING:
    case NT_JOB_ONLINING:
        if (next_pending(j, &i)) {
            start_write(h, i, j->blocks[i].want, false);
            return;
        }
        if (j->op == NT_OFFLINE_OP_ONLINE) {
            nt_hp_rebinds_restore_for_node(h, j->target_node);
            nt_hp_undrain(h, j->target_node);
        }
        nt_hp_finish(h, NT_JOB_SUCCEEDED);
        return;
    case NT_JOB_ROLLING_BACK_PHASE:
        if (next_rollback(h, &i)) {
            start_write(h, i, j->blocks[i].restore, true);
            return;
        }
        nt_hp_rebinds_undo(h);
        nt_hp_finish(h, rollback_outcome(j));
        return;
    default:
        return;
    }
}

static void append_message(struct nt_job *j, const char *text)
{
    size_t len = strlen(j->message);
    snprintf(j->message + len, sizeof(j->message) - len, "%s", text);
}

void nt_hp_exec_fail(struct nt_hotplug *h, const char *why)
{
    struct nt_job *j = h->job;
    snprintf(h->run.why, sizeof(h->run.why), "%s", why);
    snprintf(j->message, sizeof(j->message), "%s", why);
    if (j->op == NT_OFFLINE_OP_DRAIN || !j->rollback) {
        nt_hp_finish(h, NT_JOB_FAILED);
        return;
    }
    append_message(j, "; rolling back");
    j->state = NT_JOB_ROLLING_BACK;
    j->phase = NT_JOB_ROLLING_BACK_PHASE;
    nt_hp_journal(h);
    log_notice("%s job %" PRId64 ": %s", nt_offline_op_to_string(j->op), j->id, j->message);
    nt_hp_kick(h, 0);
}

void nt_hp_exec_deadline(struct nt_hotplug *h)
{
    struct nt_job *j = h->job;
    struct nt_hp_run *run = &h->run;
    if (!j || nt_job_state_final(j->state) || j->phase == NT_JOB_ROLLING_BACK_PHASE)
        return;                 /* a rollback runs to its end, each write under write_timeout */
    run->deadline_passed = true;
    char d[NT_DURATION_STRLEN];
    nt_format_duration(j->timeout_usec, d, sizeof(d));
    log_warning("%s job %" PRId64 ": the deadline (%s) passed in phase %s", nt_offline_op_to_string(j->op), j->id, d,
                nt_job_phase_to_string(j->phase));
    if (run->writing) {
        if (run->worker > 0)
            kill(run->worker, SIGKILL);     /* write_done sees deadline_passed */
        return;
    }
    size_t i;
    if (next_pending(j, &i) && j->blocks[i].attempts > 0) {     /* waiting to retry */
        j->blocks[i].result = NT_BLOCK_TIMEOUT;
        snprintf(j->blocks[i].reason, sizeof(j->blocks[i].reason),
                 "the job's deadline passed while waiting to retry \"%s\"", j->blocks[i].want);
        nt_hp_journal_block(h, i);
    }
    char why[160];
    snprintf(why, sizeof(why), "the job's deadline (%s) passed while %s", d, nt_job_phase_to_string(j->phase));
    nt_hp_exec_fail(h, why);
}
