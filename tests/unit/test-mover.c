/* The mover against a forked child on this machine (one NUMA node: real
 * move_pages calls find every page on node 0), and against a fake
 * move_pages that simulates other nodes, EBUSY, ENOMEM and EACCES. Runs
 * as root: it sets the child's thread affinity. */
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <numaif.h>
#include <cmocka.h>

#include "numatier/config.h"
#include "numatier/mover.h"
#include "numatier/procs.h"
#include "numatier/util.h"

#define KID_COMM    "nt-mover-kid"
#define KID_PAGES   1024                /* 4 MiB mapped ... */
#define KID_TOUCHED 512                 /* ... of which the first half touched */
#define MiB         (UINT64_C(1) << 20)
#define SEC         UINT64_C(1000000)

/* ---- the child -------------------------------------------------------------- */

struct kid {
    pid_t pid;
    int cmd, ack;               /* pipes: commands to it, answers from it */
    uint64_t base;              /* its region */
    long page;
};

/* Each thread tells its tid on the ack pipe, then sleeps. */
static void *kid_thread(void *arg)
{
    int ack = (int)(intptr_t)arg;
    pid_t tid = (pid_t)syscall(SYS_gettid);
    if (write(ack, &tid, sizeof(tid)) != sizeof(tid))
        _exit(3);
    for (;;)
        pause();
    return NULL;
}

/* A thread with mask (NULL: inherit the creator's). */
static void kid_spawn(int ack, const cpu_set_t *mask)
{
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    if (mask)
        pthread_attr_setaffinity_np(&attr, sizeof(*mask), mask);
    if (pthread_create(&t, &attr, kid_thread, (void *)(intptr_t)ack) != 0)
        _exit(3);
    pthread_attr_destroy(&attr);
}

/* Two extra threads at start: one pinned to the first allowed CPU, one
 * inheriting; then 'T' spawns a thread with the full mask, 'I' one that
 * inherits the main thread's. */
static void kid_main(int cmd, int ack, long page)
{
    prctl(PR_SET_NAME, KID_COMM);
    char *p = mmap(NULL, KID_PAGES * (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        _exit(2);
    /* base pages only, so the untouched half stays unpopulated */
    madvise(p, KID_PAGES * (size_t)page, MADV_NOHUGEPAGE);
    for (int i = 0; i < KID_TOUCHED; i++)
        p[(size_t)i * (size_t)page] = 1;
    cpu_set_t all, first;
    sched_getaffinity(0, sizeof(all), &all);
    CPU_ZERO(&first);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &all)) {
            CPU_SET(c, &first);
            break;
        }
    pid_t dummy;
    int tmp[2];
    if (pipe(tmp) < 0)
        _exit(2);
    kid_spawn(tmp[1], &first);
    kid_spawn(tmp[1], NULL);
    if (read(tmp[0], &dummy, sizeof(dummy)) < 0 || read(tmp[0], &dummy, sizeof(dummy)) < 0)
        _exit(2);
    uint64_t base = (uintptr_t)p;
    if (write(ack, &base, sizeof(base)) != sizeof(base))
        _exit(2);
    for (char c; read(cmd, &c, 1) == 1;) {
        if (c == 'T')
            kid_spawn(ack, &all);
        else if (c == 'I')
            kid_spawn(ack, NULL);
    }
    _exit(0);
}

static void kid_start(struct kid *k)
{
    int cmd[2], ack[2];
    assert_int_equal(pipe(cmd), 0);
    assert_int_equal(pipe(ack), 0);
    k->page = sysconf(_SC_PAGESIZE);
    k->pid = fork();
    assert_true(k->pid >= 0);
    if (k->pid == 0) {
        close(cmd[1]);
        close(ack[0]);
        kid_main(cmd[0], ack[1], k->page);
    }
    close(cmd[0]);
    close(ack[1]);
    k->cmd = cmd[1];
    k->ack = ack[0];
    assert_int_equal(read(k->ack, &k->base, sizeof(k->base)), sizeof(k->base));
}

static pid_t kid_command(struct kid *k, char c)
{
    pid_t tid = 0;
    assert_int_equal(write(k->cmd, &c, 1), 1);
    assert_int_equal(read(k->ack, &tid, sizeof(tid)), sizeof(tid));
    return tid;
}

static void kid_stop(struct kid *k)
{
    if (k->pid > 0) {
        kill(k->pid, SIGKILL);
        waitpid(k->pid, NULL, 0);
        k->pid = 0;
    }
    close(k->cmd);
    close(k->ack);
}

/* ---- fake move_pages ----------------------------------------------------------- */

#define FAKE_BASE UINT64_C(0x7f0000000000)

struct fake_page {
    int node;
    int busy_left;              /* moves that fail with EBUSY; -1 = always */
    int fixed;                  /* a status every move gets (-EACCES), 0 = none */
};

struct fake {
    struct fake_page pages[1024];
    size_t n;
    uint64_t nomem_nodes;       /* bit n: node n has no free memory */
    bool abort_style;           /* kernels >= 4.17: a failed page leaves status[] untouched */
    bool enomem_whole;          /* ENOMEM fails the whole call */
    unsigned queries, moves;
};

static uint64_t fake_addr(size_t i) { return FAKE_BASE + i * 4096; }

static struct fake_page *fake_find(struct fake *f, const void *addr)
{
    uint64_t a = (uintptr_t)addr;
    if (a < FAKE_BASE || (a - FAKE_BASE) % 4096 || (a - FAKE_BASE) / 4096 >= f->n)
        return NULL;
    return &f->pages[(a - FAKE_BASE) / 4096];
}

/* One page's outcome: its node, or -errno. */
static int fake_move_one(struct fake *f, struct fake_page *p, int node)
{
    if (!p)
        return -EFAULT;
    if (p->fixed)
        return p->fixed;
    if (p->busy_left) {
        if (p->busy_left > 0)
            p->busy_left--;
        return -EBUSY;
    }
    if (node < 64 && (f->nomem_nodes >> node) & 1)
        return -ENOMEM;
    p->node = node;
    return node;
}

static long fake_move_pages(pid_t pid, unsigned long count, void **pages, const int *nodes, int *status,
                            int flags, void *ud)
{
    struct fake *f = ud;
    (void)pid;
    (void)flags;
    if (!nodes) {
        f->queries++;
        for (unsigned long i = 0; i < count; i++) {
            struct fake_page *p = fake_find(f, pages[i]);
            status[i] = p ? p->node : -EFAULT;
        }
        return 0;
    }
    f->moves++;
    long failed = 0;
    bool nomem = false;
    for (unsigned long i = 0; i < count; i++) {
        int s = fake_move_one(f, fake_find(f, pages[i]), nodes[i]);
        failed += s < 0;
        nomem |= s == -ENOMEM;
        if (!f->abort_style && !(f->enomem_whole && nomem))
            status[i] = s;
    }
    if (f->enomem_whole && nomem) {
        errno = ENOMEM;
        return -1;
    }
    return failed;
}

static void fake_init(struct fake *f, size_t n, int node)
{
    memset(f, 0, sizeof(*f));
    f->n = n;
    for (size_t i = 0; i < n; i++)
        f->pages[i].node = node;
}

/* ---- fixture -------------------------------------------------------------------- */

struct env {
    struct kid kid;
    struct nt_config cfg;
    struct nt_procs *procs;
    const struct nt_proc *proc;
    struct nt_mover *mover;
    struct fake fake;
    /* hooks */
    unsigned real_calls;
    int kill_on_call;           /* kill the child before this real move_pages call; 0 = never */
    bool reap;                  /* and reap it (ESRCH), or leave a zombie */
    unsigned setaff_calls;
    bool spawn_on_setaff;       /* the first setaffinity makes the child start a thread */
    pid_t spawned;
};

static void scan(struct env *e)
{
    assert_int_equal(nt_procs_scan(e->procs, &e->cfg, NULL, 1000000, NULL, NULL), 0);
    e->proc = nt_procs_find(e->procs, e->kid.pid);
    assert_non_null(e->proc);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    kid_start(&e->kid);
    nt_config_init(&e->cfg);
    e->cfg.min_rss_bytes = 0;
    e->cfg.min_cpu_pct = 0;
    free(e->cfg.include_comm);
    e->cfg.include_comm = strdup(KID_COMM);
    assert_int_equal(nt_procs_new("/", getpid(), &e->procs), 0);
    scan(e);
    assert_int_equal(nt_mover_new(NULL, &e->mover), 0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    nt_mover_free(e->mover);
    kid_stop(&e->kid);
    nt_procs_free(e->procs);
    nt_config_done(&e->cfg);
    free(e);
    return 0;
}

static void new_mover(struct env *e, struct nt_mover_params *p)
{
    nt_mover_free(e->mover);
    e->mover = NULL;
    assert_int_equal(nt_mover_new(p, &e->mover), 0);
}

static void use_fake(struct env *e, uint64_t budget)
{
    struct nt_mover_params p;
    nt_mover_params_init(&p);
    p.move_pages = fake_move_pages;
    p.userdata = &e->fake;
    p.budget_bytes_per_sec = budget;
    p.retry_max = 3;
    p.page_size = 4096;
    new_mover(e, &p);
}

/* The real syscall, counted, and able to kill the child on a given call. */
static long counting_move_pages(pid_t pid, unsigned long count, void **pages, const int *nodes, int *status,
                                int flags, void *ud)
{
    struct env *e = ud;
    if (++e->real_calls == (unsigned)e->kill_on_call) {
        kill(e->kid.pid, SIGKILL);
        if (e->reap) {
            waitpid(e->kid.pid, NULL, 0);
            e->kid.pid = 0;
        } else {
            /* until the kernel has made it a zombie */
            for (int i = 0; i < 1000 && nt_proc_still_same(e->procs, e->proc); i++)
                usleep(1000);
        }
    }
    return move_pages(pid, count, pages, nodes, status, flags);
}

static void use_counting(struct env *e, unsigned batch)
{
    struct nt_mover_params p;
    nt_mover_params_init(&p);
    p.move_pages = counting_move_pages;
    p.userdata = e;
    p.batch_pages = batch;
    new_mover(e, &p);
}

static uint64_t *kid_vaddrs(const struct kid *k, size_t first, size_t n)
{
    uint64_t *v = calloc(n, sizeof(*v));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = k->base + (first + i) * (uint64_t)k->page;
    return v;
}

static uint64_t *fake_vaddrs(size_t n)
{
    uint64_t *v = calloc(n, sizeof(*v));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = fake_addr(i);
    return v;
}

static struct nt_mover_stats stats(const struct env *e)
{
    struct nt_mover_stats s;
    nt_mover_get_stats(e->mover, &s);
    return s;
}

/* ---- real move_pages on the child ------------------------------------------------- */

static void test_touched_pages_already_there(void **state)
{
    struct env *e = *state;
    _cleanup_free_ uint64_t *v = kid_vaddrs(&e->kid, 0, KID_TOUCHED);
    struct nt_move_result r;
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v, KID_TOUCHED, 0, NULL, 0, 0, &r), 0);
    assert_false(r.exited);
    assert_int_equal(r.next, KID_TOUCHED);
    assert_int_equal(r.requested, KID_TOUCHED);
    assert_int_equal(r.already, KID_TOUCHED);     /* one node: all on node 0 */
    assert_int_equal(r.moved + r.dropped + r.queued + r.deferred + r.other, 0);
    assert_int_equal(stats(e).already, KID_TOUCHED);
}

static void test_untouched_pages_enoent(void **state)
{
    struct env *e = *state;
    _cleanup_free_ uint64_t *v = kid_vaddrs(&e->kid, KID_TOUCHED, KID_PAGES - KID_TOUCHED);
    struct nt_move_result r;
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v, KID_PAGES - KID_TOUCHED, 0, NULL, 0, 0, &r), 0);
    assert_int_equal(r.dropped, KID_PAGES - KID_TOUCHED);
    assert_int_equal(r.next, KID_PAGES - KID_TOUCHED);
    assert_int_equal(stats(e).fail[NT_MOVER_ENOENT], KID_PAGES - KID_TOUCHED);
    assert_int_equal(stats(e).retry_queued, 0);
}

static void test_bogus_address_efault(void **state)
{
    struct env *e = *state;
    uint64_t v[3] = { 0x1000, e->kid.base, UINT64_C(0x10000) };
    struct nt_move_result r;
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v, 3, 0, NULL, 0, 0, &r), 0);
    assert_int_equal(r.dropped, 2);
    assert_int_equal(r.already, 1);
    assert_int_equal(stats(e).fail[NT_MOVER_EFAULT], 2);
}

/* A target node that does not exist fails the whole call. */
static void test_offline_target(void **state)
{
    struct env *e = *state;
    if (access("/sys/devices/system/node/node1", F_OK) == 0)
        skip();
    _cleanup_free_ uint64_t *v = kid_vaddrs(&e->kid, 0, 8);
    struct nt_move_result r;
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v, 8, 1, NULL, 0, 0, &r), -ENODEV);
    assert_false(r.exited);
    assert_int_equal(r.moved, 0);
}

static void test_exited_before(void **state)
{
    struct env *e = *state;
    use_counting(e, 64);
    kid_stop(&e->kid);
    e->kid.cmd = e->kid.ack = -1;
    _cleanup_free_ uint64_t *v = kid_vaddrs(&e->kid, 0, 16);
    struct nt_move_result r;
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v, 16, 0, NULL, 0, 0, &r), 0);
    assert_true(r.exited);
    assert_int_equal(r.next, 0);
    assert_int_equal(e->real_calls, 0);
    assert_int_equal(stats(e).exited, 1);
    /* and the thread and whole-process moves say the same */
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(0, &cpus);
    assert_int_equal(nt_mover_move_threads(e->mover, e->procs, e->proc, &cpus), 0);
    struct nt_nodeset from = { 0 };
    nt_nodeset_set(&from, 1);
    assert_int_equal(nt_mover_migrate_all(e->mover, e->procs, e->proc, &from, 0, 0, &r), 0);
    assert_true(r.exited);
}

/* Killed and reaped right before the third call: the syscall says ESRCH. */
static void test_exited_mid_move_esrch(void **state)
{
    struct env *e = *state;
    use_counting(e, 64);
    e->kill_on_call = 3;        /* query 1, (no move: all there), query 2, ... */
    e->reap = true;
    _cleanup_free_ uint64_t *v = kid_vaddrs(&e->kid, 0, KID_TOUCHED);
    struct nt_move_result r;
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v, KID_TOUCHED, 0, NULL, 0, 0, &r), 0);
    assert_true(r.exited);
    assert_int_equal(r.next, 128);
    assert_int_equal(r.already, 128);
    assert_int_equal(r.deferred, 0);
    assert_int_equal(stats(e).fail[NT_MOVER_ESRCH], 1);
    assert_int_equal(stats(e).exited, 1);
}

/* Killed but not reaped: the zombie is caught by the guard before the
 * next batch (move_pages itself would say EINVAL for it). */
static void test_exited_mid_move_zombie(void **state)
{
    struct env *e = *state;
    use_counting(e, 64);
    e->kill_on_call = 2;
    _cleanup_free_ uint64_t *v = kid_vaddrs(&e->kid, 0, KID_TOUCHED);
    struct nt_move_result r;
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v, KID_TOUCHED, 0, NULL, 0, 0, &r), 0);
    assert_true(r.exited);
    assert_true(r.next <= 128);
    assert_int_equal(stats(e).exited, 1);
}

static void test_pid_reuse_guard(void **state)
{
    struct env *e = *state;
    use_counting(e, 64);
    struct nt_proc other = *e->proc;
    other.key.start_time++;     /* as if the pid now named another process */
    _cleanup_free_ uint64_t *v = kid_vaddrs(&e->kid, 0, 16);
    struct nt_move_result r;
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, &other, v, 16, 0, NULL, 0, 0, &r), 0);
    assert_true(r.exited);
    assert_int_equal(e->real_calls, 0);
    cpu_set_t before, after, cpus;
    assert_int_equal(sched_getaffinity(e->kid.pid, sizeof(before), &before), 0);
    CPU_ZERO(&cpus);
    CPU_SET(0, &cpus);
    assert_int_equal(nt_mover_move_threads(e->mover, e->procs, &other, &cpus), 0);
    assert_int_equal(sched_getaffinity(e->kid.pid, sizeof(after), &after), 0);
    assert_true(CPU_EQUAL(&before, &after));
    assert_false(nt_mover_affinity_is_ours(e->mover, e->kid.pid, &cpus));
}

/* ---- budget ------------------------------------------------------------------------ */

static void test_budget(void **state)
{
    struct env *e = *state;
    fake_init(&e->fake, 1024, 1);
    use_fake(e, 1 * MiB);       /* 256 pages a second, bucket of one second */
    _cleanup_free_ uint64_t *v = fake_vaddrs(1024);
    struct nt_move_result r;
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v, 1024, 0, NULL, 0, 0, &r), 0);
    assert_int_equal(r.moved, 256);
    assert_int_equal(r.next, 256);
    assert_int_equal(r.deferred, 768);
    /* nothing more at the same instant */
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v + 256, 768, 0, NULL, 0, 0, &r), 0);
    assert_int_equal(r.moved, 0);
    assert_int_equal(r.deferred, 768);
    /* half a second later, half a bucket */
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v + 256, 768, 0, NULL, 0, SEC / 2, &r), 0);
    assert_int_equal(r.moved, 128);
    assert_int_equal(r.next, 128);
    /* pages already in place cost nothing: the moved ones ride along free */
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v, 384, 0, NULL, 0, SEC / 2, &r), 0);
    assert_int_equal(r.already, 384);
    assert_int_equal(r.deferred, 0);
    /* a long pause refills only one bucket */
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v + 384, 640, 0, NULL, 0, 100 * SEC, &r), 0);
    assert_int_equal(r.moved, 256);
    struct nt_mover_stats s = stats(e);
    assert_int_equal(s.moved, 640);
    assert_int_equal(s.nr_pairs, 1);
    assert_int_equal(s.pairs[0].from, 1);
    assert_int_equal(s.pairs[0].to, 0);
    assert_int_equal(s.pairs[0].pages, 640);
    /* unlimited */
    nt_mover_set_budget(e->mover, 0, 0);
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v, 1024, 0, NULL, 0, 100 * SEC, &r), 0);
    assert_int_equal(r.moved, 384);
    assert_int_equal(r.already, 640);
    assert_int_equal(r.deferred, 0);
}

/* ---- EBUSY, ENOMEM, EACCES (fake) ------------------------------------------------------ */

static void ebusy_retry(struct env *e, bool abort_style)
{
    fake_init(&e->fake, 10, 1);
    e->fake.abort_style = abort_style;
    e->fake.pages[3].busy_left = 2;
    e->fake.pages[5].busy_left = -1;
    use_fake(e, 0);             /* retry base 100 ms, max 3 retries */
    _cleanup_free_ uint64_t *v = fake_vaddrs(10);
    struct nt_move_result r;
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v, 10, 0, NULL, 0, 0, &r), 0);
    assert_int_equal(r.moved, 8);
    assert_int_equal(r.queued, 2);
    assert_int_equal(stats(e).retry_queued, 2);
    assert_int_equal(nt_mover_next_retry(e->mover), 100000);
    assert_true(stats(e).fail[NT_MOVER_EBUSY] >= 2);

    /* not due yet */
    assert_int_equal(nt_mover_retry(e->mover, e->procs, 50000, &r), 0);
    assert_int_equal(r.requested, 0);
    /* first retry: page 3 has one more EBUSY in per-page style; the
     * abort style spent it on the immediate resubmission */
    assert_int_equal(nt_mover_retry(e->mover, e->procs, 100000, &r), 0);
    assert_int_equal(r.requested, 2);
    assert_int_equal(r.moved, abort_style ? 1 : 0);
    assert_int_equal(stats(e).retry_queued, abort_style ? 1 : 2);
    assert_int_equal(nt_mover_next_retry(e->mover), 300000);     /* backoff doubled */
    assert_int_equal(nt_mover_retry(e->mover, e->procs, 300000, &r), 0);
    assert_int_equal(r.moved, abort_style ? 0 : 1);
    assert_int_equal(e->fake.pages[3].node, 0);
    assert_int_equal(stats(e).retry_queued, 1);
    assert_int_equal(nt_mover_next_retry(e->mover), 700000);
    /* third retry of page 5 fails: that was the last */
    assert_int_equal(nt_mover_retry(e->mover, e->procs, 700000, &r), 0);
    assert_int_equal(r.gave_up, 1);
    assert_int_equal(stats(e).retry_queued, 0);
    assert_int_equal(stats(e).retry_gave_up, 1);
    assert_int_equal(stats(e).moved, 9);
    assert_int_equal(nt_mover_next_retry(e->mover), UINT64_MAX);
    assert_int_equal(e->fake.pages[5].node, 1);
}

static void test_ebusy_retry_per_page(void **state) { ebusy_retry(*state, false); }
static void test_ebusy_retry_abort_style(void **state) { ebusy_retry(*state, true); }

static void test_forget(void **state)
{
    struct env *e = *state;
    fake_init(&e->fake, 4, 1);
    e->fake.pages[0].busy_left = -1;
    e->fake.pages[1].busy_left = -1;
    use_fake(e, 0);
    _cleanup_free_ uint64_t *v = fake_vaddrs(4);
    struct nt_move_result r;
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v, 4, 0, NULL, 0, 0, &r), 0);
    assert_int_equal(stats(e).retry_queued, 2);
    nt_mover_forget(e->mover, e->proc->id);
    assert_int_equal(stats(e).retry_queued, 0);
    /* retries of a process the procs set does not know are dropped */
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v, 4, 0, NULL, 0, 0, &r), 0);
    assert_int_equal(stats(e).retry_queued, 2);
    kid_stop(&e->kid);
    e->kid.cmd = e->kid.ack = -1;
    assert_int_equal(nt_procs_scan(e->procs, &e->cfg, NULL, 2000000, NULL, NULL), 0);
    assert_int_equal(nt_mover_retry(e->mover, e->procs, 10 * SEC, &r), 0);
    assert_int_equal(stats(e).retry_queued, 0);
    assert_int_equal(r.moved, 0);
    e->proc = NULL;
}

static void enomem_fallback(struct env *e, bool whole)
{
    fake_init(&e->fake, 10, 1);
    e->fake.enomem_whole = whole;
    e->fake.nomem_nodes = (1u << 0) | (1u << 2);
    e->fake.pages[9].node = 3;  /* already on the last fallback: stays */
    use_fake(e, 0);
    _cleanup_free_ uint64_t *v = fake_vaddrs(10);
    struct nt_move_result r;
    const int fb[] = { 2, 3 };
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v, 10, 0, fb, 2, 0, &r), 0);
    assert_int_equal(r.moved, 9);
    assert_int_equal(r.fallback, 9);
    assert_int_equal(r.nomem, 1);
    for (int i = 0; i < 10; i++)
        assert_int_equal(e->fake.pages[i].node, 3);
    struct nt_mover_stats s = stats(e);
    assert_int_equal(s.nr_pairs, 1);
    assert_int_equal(s.pairs[0].from, 1);
    assert_int_equal(s.pairs[0].to, 3);
    assert_int_equal(s.fallback, 9);
    assert_true(s.fail[NT_MOVER_ENOMEM] >= 10);

    /* no fallback left: given up */
    fake_init(&e->fake, 4, 1);
    e->fake.enomem_whole = whole;
    e->fake.nomem_nodes = 1u << 0;
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v, 4, 0, NULL, 0, 0, &r), 0);
    assert_int_equal(r.nomem, 4);
    assert_int_equal(r.moved, 0);
    assert_int_equal(stats(e).retry_queued, 0);
}

static void test_enomem_fallback_per_page(void **state) { enomem_fallback(*state, false); }
static void test_enomem_fallback_whole_call(void **state) { enomem_fallback(*state, true); }

static void test_eacces_shared(void **state)
{
    struct env *e = *state;
    fake_init(&e->fake, 8, 1);
    e->fake.pages[7].fixed = -EACCES;
    e->fake.pages[2].fixed = -EIO;
    use_fake(e, 0);
    _cleanup_free_ uint64_t *v = fake_vaddrs(9);     /* the 9th is unmapped */
    struct nt_move_result r;
    assert_int_equal(nt_mover_move_pages(e->mover, e->procs, e->proc, v, 9, 0, NULL, 0, 0, &r), 0);
    assert_int_equal(r.moved, 6);
    assert_int_equal(r.shared, 1);
    assert_int_equal(r.other, 1);
    assert_int_equal(r.dropped, 1);
    struct nt_mover_stats s = stats(e);
    assert_int_equal(s.fail[NT_MOVER_EACCES], 1);
    assert_int_equal(s.fail[NT_MOVER_EOTHER], 1);
    assert_int_equal(s.fail[NT_MOVER_EFAULT], 1);
    assert_int_equal(s.retry_queued, 0);

    struct json_object *j = nt_mover_stats_json(e->mover);
    assert_non_null(j);
    struct json_object *pages, *moved, *fails, *eacces, *pairs;
    assert_true(json_object_object_get_ex(j, "pages", &pages));
    assert_true(json_object_object_get_ex(pages, "moved", &moved));
    assert_int_equal(json_object_get_int64(moved), 6);
    assert_true(json_object_object_get_ex(j, "failures", &fails));
    assert_true(json_object_object_get_ex(fails, "EACCES", &eacces));
    assert_int_equal(json_object_get_int64(eacces), 1);
    assert_true(json_object_object_get_ex(j, "pairs", &pairs));
    assert_int_equal(json_object_array_length(pairs), 1);
    json_object_put(j);
}

/* ---- migrate_pages ------------------------------------------------------------------- */

struct migrate_log {
    unsigned calls;
    unsigned long old0, new0;
};

static long fake_migrate(pid_t pid, unsigned long maxnode, const unsigned long *o, const unsigned long *n, void *ud)
{
    struct migrate_log *l = ud;
    (void)pid;
    assert_true(maxnode > 64);
    l->calls++;
    l->old0 = o[0];
    l->new0 = n[0];
    return 0;
}

static void test_migrate_all(void **state)
{
    struct env *e = *state;
    struct nt_nodeset from = { 0 };
    struct nt_move_result r;
    /* for real: node 0 to node 0 is nothing to do */
    nt_nodeset_set(&from, 0);
    assert_int_equal(nt_mover_migrate_all(e->mover, e->procs, e->proc, &from, 0, 0, &r), 0);
    assert_int_equal(r.requested, 0);
    assert_false(r.exited);

    struct migrate_log log = { 0 };
    struct nt_mover_params p;
    nt_mover_params_init(&p);
    p.migrate_pages = fake_migrate;
    p.userdata = &log;
    p.budget_bytes_per_sec = 1 * MiB;
    new_mover(e, &p);
    /* node 0 -> 1 (simulated): the child holds well over a bucket */
    assert_int_equal(nt_mover_migrate_all(e->mover, e->procs, e->proc, &from, 1, 0, &r), 0);
    assert_true(r.requested >= KID_TOUCHED);
    assert_int_equal(log.calls, 1);             /* a full bucket lets it go, into debt */
    assert_int_equal(log.old0, 1);
    assert_int_equal(log.new0, 2);
    assert_int_equal(r.deferred, 0);
    assert_int_equal(r.moved, 0);               /* the fake moved nothing */
    assert_int_equal(nt_mover_migrate_all(e->mover, e->procs, e->proc, &from, 1, SEC, &r), 0);
    assert_int_equal(log.calls, 1);
    assert_int_equal(r.deferred, r.requested);
    assert_int_equal(nt_mover_migrate_all(e->mover, e->procs, e->proc, &from, 1, 600 * SEC, &r), 0);
    assert_int_equal(log.calls, 2);
    assert_int_equal(stats(e).migrate_calls, 2);
}

/* ---- threads ---------------------------------------------------------------------------- */

static void task_cpus(pid_t pid, pid_t tid, char *buf, size_t len)
{
    char path[96];
    _cleanup_free_ char *text = NULL;
    snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, (int)tid);
    assert_int_equal(nt_read_file("/", path, &text), 0);
    const char *l = strstr(text, "Cpus_allowed_list:");
    assert_non_null(l);
    l += strlen("Cpus_allowed_list:");
    l += strspn(l, " \t");
    snprintf(buf, len, "%.*s", (int)strcspn(l, "\n"), l);
}

/* The tids of pid's task list. */
static size_t all_tasks(pid_t pid, pid_t *tids, size_t max)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    _cleanup_closedir_ DIR *d = opendir(path);
    assert_non_null(d);
    size_t n = 0;
    for (struct dirent *de; (de = readdir(d));)
        if (de->d_name[0] != '.' && n < max)
            tids[n++] = (pid_t)atoi(de->d_name);
    return n;
}

static int spawning_setaffinity(pid_t tid, const cpu_set_t *mask, void *ud)
{
    struct env *e = ud;
    if (e->spawn_on_setaff && e->setaff_calls++ == 0)
        e->spawned = kid_command(&e->kid, 'T');    /* born with the full mask, mid-pass */
    return sched_setaffinity(tid, sizeof(*mask), mask);
}

/* Two CPUs we may use, or skip. */
static bool two_cpus(int *a, int *b)
{
    cpu_set_t all;
    assert_int_equal(sched_getaffinity(0, sizeof(all), &all), 0);
    *a = *b = -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &all)) {
            if (*a < 0)
                *a = c;
            else if (*b < 0)
                *b = c;
        }
    return *b >= 0;
}

static void test_threads(void **state)
{
    struct env *e = *state;
    int a, b;
    if (!two_cpus(&a, &b))
        skip();
    struct nt_mover_params p;
    nt_mover_params_init(&p);
    p.setaffinity = spawning_setaffinity;
    p.userdata = e;
    new_mover(e, &p);
    e->spawn_on_setaff = true;

    pid_t tids[16];
    char before[16][64], got[64], want_b[16];
    size_t n0 = all_tasks(e->kid.pid, tids, 16);
    assert_int_equal(n0, 3);
    for (size_t i = 0; i < n0; i++)
        task_cpus(e->kid.pid, tids[i], before[i], sizeof(before[i]));

    cpu_set_t target;
    CPU_ZERO(&target);
    CPU_SET(b, &target);
    snprintf(want_b, sizeof(want_b), "%d", b);
    int moved = nt_mover_move_threads(e->mover, e->procs, e->proc, &target);
    assert_true(moved >= 3);                    /* 3, plus the newcomer unless it inherited b */
    assert_true(e->spawned > 0);
    pid_t now[16];
    size_t n1 = all_tasks(e->kid.pid, now, 16);
    assert_int_equal(n1, 4);
    for (size_t i = 0; i < n1; i++) {
        task_cpus(e->kid.pid, now[i], got, sizeof(got));
        assert_string_equal(got, want_b);       /* the re-scan caught the newcomer */
    }
    assert_true(nt_mover_affinity_is_ours(e->mover, e->kid.pid, &target));
    cpu_set_t other;
    CPU_ZERO(&other);
    CPU_SET(a, &other);
    assert_false(nt_mover_affinity_is_ours(e->mover, e->kid.pid, &other));
    assert_int_equal(stats(e).threads_moved, (uint64_t)moved);

    /* born after the move: inherits b, restored to the process's original */
    pid_t late = kid_command(&e->kid, 'I');
    task_cpus(e->kid.pid, late, got, sizeof(got));
    assert_string_equal(got, want_b);

    assert_int_equal(nt_mover_restore(e->mover, e->kid.pid), 5);
    for (size_t i = 0; i < n0; i++) {
        task_cpus(e->kid.pid, tids[i], got, sizeof(got));
        assert_string_equal(got, before[i]);
    }
    task_cpus(e->kid.pid, e->kid.pid, got, sizeof(got));
    char main_orig[64];
    snprintf(main_orig, sizeof(main_orig), "%s", got);
    task_cpus(e->kid.pid, late, got, sizeof(got));
    assert_string_equal(got, main_orig);
    task_cpus(e->kid.pid, e->spawned, got, sizeof(got));
    assert_string_equal(got, main_orig);        /* it was born with the full mask */
    assert_false(nt_mover_affinity_is_ours(e->mover, e->kid.pid, &target));
    assert_int_equal(nt_mover_restore(e->mover, e->kid.pid), -ENOENT);
}

/* A thread the user re-pinned after us is left alone on restore. */
static void test_restore_respects_user(void **state)
{
    struct env *e = *state;
    int a, b;
    if (!two_cpus(&a, &b))
        skip();
    cpu_set_t target, user;
    CPU_ZERO(&target);
    CPU_SET(b, &target);
    CPU_ZERO(&user);
    CPU_SET(a, &user);
    assert_int_equal(nt_mover_move_threads(e->mover, e->procs, e->proc, &target), 3);
    /* moving again to the same CPUs changes nothing */
    assert_int_equal(nt_mover_move_threads(e->mover, e->procs, e->proc, &target), 0);
    pid_t tids[16];
    size_t n = all_tasks(e->kid.pid, tids, 16);
    pid_t t = tids[n - 1] == e->kid.pid ? tids[0] : tids[n - 1];
    assert_int_equal(sched_setaffinity(t, sizeof(user), &user), 0);
    assert_int_equal(nt_mover_restore(e->mover, e->kid.pid), 2);
    char got[64], want[16];
    task_cpus(e->kid.pid, t, got, sizeof(got));
    snprintf(want, sizeof(want), "%d", a);
    assert_string_equal(got, want);
    assert_int_equal(stats(e).threads_user_changed, 1);

    /* restore_all after a move; then the child is gone: nothing to do */
    assert_int_equal(nt_mover_move_threads(e->mover, e->procs, e->proc, &target), 3);
    nt_mover_restore_all(e->mover);
    task_cpus(e->kid.pid, e->kid.pid, got, sizeof(got));
    assert_string_not_equal(got, "");
    assert_false(nt_mover_affinity_is_ours(e->mover, e->kid.pid, &target));
    assert_int_equal(nt_mover_move_threads(e->mover, e->procs, e->proc, &target), 3);
    kid_stop(&e->kid);
    e->kid.cmd = e->kid.ack = -1;
    assert_int_equal(nt_mover_restore(e->mover, e->proc->key.pid), -ESRCH);
}

/* After a restart the mover knows nothing of what an earlier run pinned:
 * nt_mover_adopt takes the record back (pid, start time, the mask set, the
 * mask before), so it counts as ours and restore puts it back. */
static void test_adopt_after_restart(void **state)
{
    struct env *e = *state;
    int a, b;
    if (!two_cpus(&a, &b))
        skip();
    cpu_set_t orig, target;
    assert_int_equal(sched_getaffinity(e->kid.pid, sizeof(orig), &orig), 0);
    CPU_ZERO(&target);
    CPU_SET(b, &target);
    assert_int_equal(nt_mover_move_threads(e->mover, e->procs, e->proc, &target), 3);

    struct nt_mover *fresh = NULL;                      /* the next run's mover */
    assert_int_equal(nt_mover_new(NULL, &fresh), 0);
    assert_false(nt_mover_affinity_is_ours(fresh, e->kid.pid, &target));
    assert_int_equal(nt_mover_restore(fresh, e->kid.pid), -ENOENT);
    assert_int_equal(nt_mover_adopt(fresh, e->kid.pid, e->proc->key.start_time + 1, &target, &orig), -ESRCH);
    assert_int_equal(nt_mover_adopt(fresh, e->kid.pid, e->proc->key.start_time, &target, &orig), 0);
    assert_true(nt_mover_affinity_is_ours(fresh, e->kid.pid, &target));
    assert_int_equal(nt_mover_restore(fresh, e->kid.pid), 3);
    pid_t tids[16];
    size_t n = all_tasks(e->kid.pid, tids, 16);
    for (size_t i = 0; i < n; i++) {
        cpu_set_t now;
        assert_int_equal(sched_getaffinity(tids[i], sizeof(now), &now), 0);
        assert_true(CPU_EQUAL(&now, &orig));
    }
    nt_mover_free(fresh);

    /* the run that made a record keeps its own, per thread */
    assert_int_equal(nt_mover_move_threads(e->mover, e->procs, e->proc, &target), 3);
    assert_int_equal(nt_mover_adopt(e->mover, e->kid.pid, e->proc->key.start_time, &target, &target), 0);
    assert_int_equal(nt_mover_restore(e->mover, e->kid.pid), 3);
    cpu_set_t now;
    assert_int_equal(sched_getaffinity(e->kid.pid, sizeof(now), &now), 0);
    assert_true(CPU_EQUAL(&now, &orig));
}

static void test_cpuset_parse(void **state)
{
    (void)state;
    cpu_set_t s;
    assert_int_equal(nt_cpuset_parse("0-3,8", &s), 5);
    assert_true(CPU_ISSET(8, &s) && CPU_ISSET(2, &s) && !CPU_ISSET(4, &s));
    assert_int_equal(nt_cpuset_parse("", &s), 0);
    assert_int_equal(nt_cpuset_parse("1\n", &s), 1);
    assert_int_equal(nt_cpuset_parse("3-1", &s), -EINVAL);
    assert_int_equal(nt_cpuset_parse("x", &s), -EINVAL);
    assert_int_equal(nt_cpuset_parse("1,,2", &s), -EINVAL);
    assert_int_equal(nt_cpuset_parse("99999", &s), -EINVAL);
    char text[32];
    assert_int_equal(nt_cpuset_parse("0-3,8,10-11", &s), 7);
    nt_cpuset_format(&s, text, sizeof(text));
    assert_string_equal(text, "0-3,8,10-11");
    CPU_ZERO(&s);
    nt_cpuset_format(&s, text, sizeof(text));
    assert_string_equal(text, "");
    assert_string_equal(nt_mover_err_to_string(NT_MOVER_EBUSY), "EBUSY");
    assert_string_equal(nt_mover_err_to_string(NT_MOVER_EOTHER), "other");
}

static void test_empty_mask(void **state)
{
    struct env *e = *state;
    cpu_set_t none;
    CPU_ZERO(&none);
    assert_int_equal(nt_mover_move_threads(e->mover, e->procs, e->proc, &none), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_touched_pages_already_there, setup, teardown),
        cmocka_unit_test_setup_teardown(test_untouched_pages_enoent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bogus_address_efault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offline_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exited_before, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exited_mid_move_esrch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exited_mid_move_zombie, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pid_reuse_guard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ebusy_retry_per_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ebusy_retry_abort_style, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enomem_fallback_per_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enomem_fallback_whole_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eacces_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_respects_user, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt_after_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_mask, setup, teardown),
        cmocka_unit_test(test_cpuset_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
