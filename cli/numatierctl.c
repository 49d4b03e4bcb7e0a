/* numatierctl: the operator's view of numatierd.
 *
 * Exit codes: 0 success, 1 the request failed, 2 usage error,
 * 3 the daemon cannot be reached, 4 permission denied, 5 no such process,
 * 6 an offline/online/drain plan was refused, 7 a job failed and was
 * rolled back completely, 130 Ctrl-C while following a job. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "numatier/config.h"
#include "numatier/ctl.h"
#include "numatier/numastat.h"
#include "numatier/util.h"
#include "numatierctl.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: numatierctl [OPTIONS] COMMAND [ARGS]\n\n"
            "Commands:\n"
            "  status               daemon state, nodes, tiers and distances\n"
            "  stat                 per-node system memory (like numastat -m)\n"
            "  stat -p PID|NAME     per-node memory of a process (like numastat -p)\n"
            "  top [--once] [--interval SECS] [--sort KEY] [--limit N] [--pages N]\n"
            "                       live per-process view: remote/local accesses, hot pages\n"
            "                       per node, thread nodes; KEY: rma lma ratio pid comm rss cpu\n"
            "  explain PID          the last placement decision about PID, with its numbers\n"
            "  plan                 placement actions this cycle and those waiting\n"
            "  ras [--check]        corrected memory errors: per node and block, offlined frames, recent events;\n"
            "                       --check also verifies the ledger (exit 1 if it has problems)\n"
            "  restore PID          give PID back the CPU affinity numatierd changed (root only)\n"
            "  offline TARGET [OPTS] take memory out of service: plan, evacuate, offline, roll back\n"
            "                       on failure (root only); TARGET: block N[-M] | range START-END | node N\n"
            "  online TARGET [OPTS] bring the blocks back online, restoring rebinds (root only)\n"
            "  drain node N [OPTS]  move threads and memory off node N for maintenance (root only)\n"
            "                       OPTS: --dry-run (show the plan, change nothing), --timeout SECS\n"
            "                       (whole job), --wait (default) | --detach, --force (rebind processes\n"
            "                       bound to the target), --no-rollback (offline/online)\n"
            "  jobs [ID [--wait]]   running and recent offline/online/drain jobs; one in detail\n"
            "  mode [enforce|advise] show the mode, or switch it until the next reload (root only)\n"
            "  config               the daemon's effective configuration\n"
            "  reload               re-read the configuration (root only)\n\n"
            "Options:\n"
            "  -s, --socket PATH    control socket (default %s, or $NUMATIER_SOCKET)\n"
            "  -j, --json           print JSON instead of tables\n"
            "      --root DIR       read /proc and /sys below DIR (stat only)\n"
            "  -t, --timeout SECS   how long to wait for the daemon (default 5)\n"
            "  -h, --help           show this help\n"
            "      --version        show the version\n\n"
            "Exit status: 0 success, 1 request failed, 2 usage error,\n"
            "3 daemon unreachable, 4 permission denied, 5 no such process,\n"
            "6 refused by the plan (nothing changed), 7 job failed and fully rolled back,\n"
            "130 stopped following a job with Ctrl-C (the job goes on).\n",
            NT_DEFAULT_SOCKET);
}

void print_json(struct json_object *o)
{
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
}

static int exit_for_error_code(const char *code)
{
    if (strcmp(code, "permission-denied") == 0)
        return EXIT_DENIED;
    if (strcmp(code, "no-such-process") == 0)
        return EXIT_NO_PROCESS;
    return EXIT_FAILED;
}

/* Send one request; on success *result borrows from *response. */
int call_daemon_args(const struct ctl_opts *o, const char *cmd, struct json_object *args,
                            struct json_object **response, struct json_object **result)
{
    int r = nt_ctl_call(o->socket, cmd, args, o->timeout_usec, response);
    if (r < 0) {
        fprintf(stderr, "numatierctl: cannot reach numatierd at %s: %s%s\n", o->socket, strerror(-r),
                r == -ENOENT || r == -ECONNREFUSED ? " (is the daemon running?)" : "");
        return EXIT_UNREACHABLE;
    }
    struct json_object *ok, *err;
    if (json_object_object_get_ex(*response, "ok", &ok) && json_object_get_boolean(ok)) {
        if (!json_object_object_get_ex(*response, "result", result))
            *result = NULL;
        return EXIT_OK;
    }
    if (o->json) {
        print_json(*response);
    }
    const char *code = "failed", *msg = "unknown error";
    if (json_object_object_get_ex(*response, "error", &err)) {
        struct json_object *c, *m;
        if (json_object_object_get_ex(err, "code", &c))
            code = json_object_get_string(c);
        if (json_object_object_get_ex(err, "message", &m))
            msg = json_object_get_string(m);
    }
    fprintf(stderr, "numatierctl: %s: %s\n", cmd, msg);
    return exit_for_error_code(code);
}

static int call_daemon(const struct ctl_opts *o, const char *cmd, struct json_object **response,
                       struct json_object **result)
{
    return call_daemon_args(o, cmd, NULL, response, result);
}

const char *jstr(struct json_object *o, const char *key, const char *dflt)
{
    struct json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v) || !v)
        return dflt;
    return json_object_get_string(v);
}

int64_t jint(struct json_object *o, const char *key)
{
    struct json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v) || !v)
        return 0;
    return json_object_get_int64(v);
}

static void format_uptime(uint64_t usec, char *buf, size_t len)
{
    uint64_t s = usec / 1000000;
    if (s < 60)
        snprintf(buf, len, "%" PRIu64 "s", s);
    else if (s < 3600)
        snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s / 60 % 60);
    else
        snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s / 3600 % 24);
}

static void print_node_row(struct json_object *node)
{
    const char *cpus = jstr(node, "cpus", "");
    printf("%4" PRId64 "  %-4s  %-12s %12.2f %11.2f  %3" PRId64 "/%-3" PRId64 " ",
           jint(node, "id"), jstr(node, "tier", "?"), *cpus ? cpus : "-",
           (double)jint(node, "mem_total_kb") / 1024.0, (double)jint(node, "mem_free_kb") / 1024.0,
           jint(node, "blocks_online"), jint(node, "blocks_total"));
    struct json_object *dist;
    if (json_object_object_get_ex(node, "distances", &dist))
        for (size_t i = 0; i < json_object_array_length(dist); i++)
            printf(" %" PRId64, json_object_get_int64(json_object_array_get_idx(dist, i)));
    putchar('\n');
}

/* "Sampler: damon, 1234 samples, 0 lost; 3 processes watched" or why none runs. */
static void print_watch(struct json_object *st)
{
    struct json_object *w, *smp, *procs;
    if (!json_object_object_get_ex(st, "watch", &w) || !w ||
        !json_object_object_get_ex(w, "sampler", &smp) || !json_object_object_get_ex(w, "procs", &procs))
        return;
    const char *backend = jstr(smp, "backend", NULL);
    if (!backend)
        printf("Sampler: none (%s)", jstr(smp, "unavailable", "?"));
    else
        printf("Sampler: %s, %" PRId64 " samples, %" PRId64 " lost", backend, jint(smp, "samples"),
               jint(smp, "lost") + jint(smp, "lost_samples"));
    printf("; %" PRId64 " processes watched, %" PRId64 " exited mid-cycle\n", jint(procs, "watched"),
           jint(procs, "exited_mid_cycle"));
    const char *perf_why = backend ? jstr(smp, "perf_unavailable", NULL) : NULL;
    if (perf_why)
        printf("perf unavailable: %s\n", perf_why);
}

static double jnum(struct json_object *o, const char *key)
{
    struct json_object *v;
    return o && json_object_object_get_ex(o, key, &v) && v ? json_object_get_double(v) : 0;
}

/* "Costs: C_mem 2.10 us/page (measured), C_thread 205 us (measured)" and
 * "Moves: ..." lines. */
static void print_placement(struct json_object *st)
{
    struct json_object *pl, *costs;
    if (!json_object_object_get_ex(st, "placement", &pl) || !pl ||
        !json_object_object_get_ex(pl, "costs", &costs))
        return;
    double c_mem = jnum(costs, "c_mem_usec");
    struct json_object *pairs;
    size_t np = json_object_object_get_ex(costs, "c_mem_pairs", &pairs) ? json_object_array_length(pairs) : 0;
    if (np) {          /* one figure for the line: the mean over the measured pairs */
        c_mem = 0;
        for (size_t i = 0; i < np; i++)
            c_mem += jnum(json_object_array_get_idx(pairs, i), "usec_per_page") / (double)np;
    }
    printf("Costs: C_mem %.2f us/page (%s%s), C_thread %.0f us (%s)\n", c_mem, jstr(costs, "c_mem_origin", "?"),
           np ? ", mean of the node pairs" : "", jnum(costs, "c_thread_usec"), jstr(costs, "c_thread_origin", "?"));
    printf("Moves: %" PRId64 " thread moves (%" PRId64 " threads), %" PRId64 " page moves (%" PRId64
           " pages), %" PRId64 " advised, %" PRId64 " failed\n",
           jint(pl, "thread_moves"), jint(pl, "threads_moved"), jint(pl, "page_moves"), jint(pl, "pages_moved"),
           jint(pl, "advised"), jint(pl, "failed"));
}

/* "Maintenance: node 1 drained (job 3); ..." when any node is out of
 * service, so an operator sees why a node gets nothing. */
static void print_maintenance(struct json_object *st)
{
    struct json_object *off, *list;
    if (!json_object_object_get_ex(st, "offline", &off) || !off ||
        !json_object_object_get_ex(off, "maintenance", &list) || !list)
        return;
    size_t n = json_object_array_length(list);
    if (!n)
        return;
    printf("Maintenance:");
    for (size_t i = 0; i < n; i++) {
        struct json_object *m = json_object_array_get_idx(list, i);
        const char *why = jstr(m, "why", "?");
        const char *what = strcmp(why, "drained") == 0 ? "drained" : strcmp(why, "drain") == 0 ? "being drained"
                         : strcmp(why, "offline") == 0 ? "being offlined" : why;
        printf("%s node %" PRId64 " %s (job %" PRId64 ")", i ? "," : "", jint(m, "node"), what, jint(m, "job"));
    }
    printf("; numatierd sends %s no threads or pages\n", n == 1 ? "it" : "them");
}

static void print_status(struct json_object *st)
{
    char up[32];
    format_uptime((uint64_t)jint(st, "uptime_usec"), up, sizeof(up));
    printf("numatierd %s, up %s, mode %s, cycle %s\n", jstr(st, "version", "?"), up,
           jstr(st, "mode", "?"), jstr(st, "cycle_interval", "?"));

    struct json_object *topo, *nodes;
    if (!json_object_object_get_ex(st, "topology", &topo) || !topo ||
        !json_object_object_get_ex(topo, "nodes", &nodes)) {
        printf("topology: not read yet\n");
        return;
    }
    printf("Node  Tier  CPUs          MemTotal_MB  MemFree_MB  Blocks   Distances\n");
    size_t n = json_object_array_length(nodes);
    for (size_t i = 0; i < n; i++)
        print_node_row(json_object_array_get_idx(nodes, i));

    printf("Tiers:");
    for (size_t i = 0; i < n; i++) {
        struct json_object *node = json_object_array_get_idx(nodes, i);
        printf("%s node %" PRId64 " %s (%s)", i ? "," : "", jint(node, "id"),
               jstr(node, "tier", "?"), jstr(node, "tier_reason", "?"));
    }
    putchar('\n');
    print_watch(st);
    print_placement(st);
    print_maintenance(st);

    struct json_object *rl;
    if (json_object_object_get_ex(st, "reloads", &rl) && jint(rl, "failed") > 0)
        printf("Reloads: %" PRId64 " ok, %" PRId64 " failed, last error: %s\n",
               jint(rl, "ok"), jint(rl, "failed"), jstr(rl, "last_error", "-"));
}

static int cmd_status(const struct ctl_opts *o)
{
    struct json_object *resp = NULL, *result = NULL;
    int rc = call_daemon(o, "status", &resp, &result);
    if (rc == EXIT_OK) {
        if (o->json)
            print_json(result);
        else
            print_status(result);
    }
    json_object_put(resp);
    return rc;
}

static int cmd_simple(const struct ctl_opts *o, const char *cmd, const char *done_msg)
{
    struct json_object *resp = NULL, *result = NULL;
    int rc = call_daemon(o, cmd, &resp, &result);
    if (rc == EXIT_OK) {
        if (o->json || !done_msg)
            print_json(result);
        else
            puts(done_msg);
    }
    json_object_put(resp);
    return rc;
}

/* mode: print it (from status, any user); mode enforce|advise: set it (root). */
static int cmd_mode(const struct ctl_opts *o, int argc, char **argv)
{
    struct json_object *resp = NULL, *result = NULL;
    int rc;
    if (argc == 1) {
        rc = call_daemon(o, "status", &resp, &result);
    } else if (strcmp(argv[1], "enforce") == 0 || strcmp(argv[1], "advise") == 0) {
        struct json_object *args = json_object_new_object();
        json_object_object_add(args, "mode", json_object_new_string(argv[1]));
        rc = call_daemon_args(o, "mode", args, &resp, &result);
        json_object_put(args);
    } else {
        fprintf(stderr, "numatierctl: usage: mode [enforce|advise]\n");
        return EXIT_USAGE;
    }
    if (rc == EXIT_OK) {
        if (o->json) {
            struct json_object *j = json_object_new_object();
            json_object_object_add(j, "mode", json_object_new_string(jstr(result, "mode", "?")));
            print_json(j);
            json_object_put(j);
        } else {
            puts(jstr(result, "mode", "?"));
        }
    }
    json_object_put(resp);
    return rc;
}

static int stat_error(int r, const char *what)
{
    fprintf(stderr, "numatierctl: stat %s: %s\n", what, strerror(-r));
    return r == -ESRCH ? EXIT_NO_PROCESS : EXIT_FAILED;
}

static int print_table(const struct ctl_opts *o, struct nt_numastat_table *t)
{
    if (o->json) {
        struct json_object *j = nt_numastat_to_json(t);
        print_json(j);
        json_object_put(j);
    } else {
        nt_numastat_print(stdout, t);
    }
    nt_numastat_free(t);
    return EXIT_OK;
}

static int stat_system(const struct ctl_opts *o)
{
    struct nt_numastat_table *t = NULL;
    int r = nt_numastat_system(o->root, &t);
    if (r < 0)
        return stat_error(r, "system");
    return print_table(o, t);
}

/* Resolve a PID or a process name, as numastat -p takes them. */
static int resolve_pids(const struct ctl_opts *o, const char *spec, pid_t **pids, size_t *n)
{
    char *end;
    long pid = strtol(spec, &end, 10);
    if (*spec && !*end && pid > 0) {
        *pids = malloc(sizeof(**pids));
        if (!*pids)
            return -ENOMEM;
        (*pids)[0] = (pid_t)pid;
        *n = 1;
        return 0;
    }
    return nt_pids_by_name(o->root, spec, pids, n);
}

/* One process gets the Huge/Heap/Stack/Private table; several get one
 * combined table with a row per PID, as numastat prints them. */
static int stat_process(const struct ctl_opts *o, const char *spec)
{
    _cleanup_free_ pid_t *pids = NULL;
    size_t n = 0;
    int r = resolve_pids(o, spec, &pids, &n);
    if (r < 0)
        return stat_error(r, spec);
    if (n == 0) {
        fprintf(stderr, "numatierctl: stat: no process matches \"%s\"\n", spec);
        return EXIT_NO_PROCESS;
    }
    struct nt_numastat_table *t = NULL;
    r = nt_numastat_processes(o->root, pids, n, &t);
    if (r < 0)
        return stat_error(r, spec);
    for (unsigned i = 0; t->row_errors && t->row_pids && i < t->nr_rows; i++)
        if (t->row_errors[i] < 0)
            fprintf(stderr, "numatierctl: stat: pid %d: %s\n", (int)t->row_pids[i],
                    strerror(-t->row_errors[i]));
    return print_table(o, t);
}

static int cmd_stat(const struct ctl_opts *o, int argc, char **argv)
{
    if (argc == 1)
        return stat_system(o);
    if (argc == 3 && strcmp(argv[1], "-p") == 0)
        return stat_process(o, argv[2]);
    if (argc == 2 && strncmp(argv[1], "-p", 2) == 0 && argv[1][2])
        return stat_process(o, argv[1] + 2);
    fprintf(stderr, "numatierctl: usage: stat [-p PID|NAME]\n");
    return EXIT_USAGE;
}

static int parse_opts(int argc, char **argv, struct ctl_opts *o)
{
    enum { OPT_ROOT = 256, OPT_VERSION };
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' },
        { "root", required_argument, NULL, OPT_ROOT },
        { "timeout", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, OPT_VERSION },
        { 0 },
    };
    int c;
    /* "+" stops at the command, so "stat -p" reaches the command. */
    while ((c = getopt_long(argc, argv, "+s:jt:h", opts, NULL)) != -1) {
        switch (c) {
        case 's': o->socket = optarg; break;
        case 'j': o->json = true; break;
        case OPT_ROOT: o->root = optarg; break;
        case 't': {
            char *end;
            double secs = strtod(optarg, &end);
            if (*end || secs <= 0 || secs > 3600) {
                fprintf(stderr, "numatierctl: --timeout wants seconds between 0 and 3600\n");
                return EXIT_USAGE;
            }
            o->timeout_usec = (uint64_t)(secs * 1e6);
            break;
        }
        case 'h': usage(stdout); return EXIT_OK;
        case OPT_VERSION: printf("numatierctl %s\n", NT_VERSION); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    return -1;
}

/* "--json" is accepted after the command too: numatierctl status --json. */
static int strip_json_flag(int argc, char **argv, struct ctl_opts *o)
{
    int out = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0)
            o->json = true;
        else
            argv[out++] = argv[i];
    }
    return out;
}

int main(int argc, char **argv)
{
    const char *env_socket = getenv("NUMATIER_SOCKET");
    struct ctl_opts o = {
        .socket = env_socket && *env_socket ? env_socket : NT_DEFAULT_SOCKET,
        .root = "/",
        .timeout_usec = 5000000,
    };
    int rc = parse_opts(argc, argv, &o);
    if (rc >= 0)
        return rc;
    argc -= optind;
    argv += optind;
    argc = strip_json_flag(argc, argv, &o);
    if (argc < 1) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[0];
    if (strcmp(cmd, "status") == 0 && argc == 1)
        return cmd_status(&o);
    if (strcmp(cmd, "stat") == 0)
        return cmd_stat(&o, argc, argv);
    if (strcmp(cmd, "top") == 0)
        return cmd_top(&o, argc, argv);
    if (strcmp(cmd, "explain") == 0)
        return cmd_explain(&o, argc, argv);
    if (strcmp(cmd, "plan") == 0)
        return cmd_plan(&o, argc, argv);
    if (strcmp(cmd, "ras") == 0)
        return cmd_ras(&o, argc, argv);
    if (strcmp(cmd, "restore") == 0)
        return cmd_restore(&o, argc, argv);
    if (strcmp(cmd, "offline") == 0 || strcmp(cmd, "online") == 0 || strcmp(cmd, "drain") == 0)
        return cmd_offline(&o, argc, argv);
    if (strcmp(cmd, "jobs") == 0)
        return cmd_jobs(&o, argc, argv);
    if (strcmp(cmd, "mode") == 0 && argc <= 2)
        return cmd_mode(&o, argc, argv);
    if (strcmp(cmd, "config") == 0 && argc == 1)
        return cmd_simple(&o, "config", NULL);
    if (strcmp(cmd, "reload") == 0 && argc == 1)
        return cmd_simple(&o, "reload", "numatierd: configuration reloaded");
    if (strcmp(cmd, "ping") == 0 && argc == 1)
        return cmd_simple(&o, "ping", "pong");
    fprintf(stderr, "numatierctl: unknown command or arguments: %s (see --help)\n", cmd);
    return EXIT_USAGE;
}
