/* numatierctl top: a live, numatop-like view of the watched processes. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>

#include "numatierctl.h"

enum sort_key { SORT_RMA, SORT_LMA, SORT_RATIO, SORT_PID, SORT_COMM, SORT_RSS, SORT_CPU };

struct top_opts {
    bool once;
    double interval;
    enum sort_key sort;
    int limit;              /* rows shown, 0 = all */
    int pages;              /* hottest pages per process asked of the daemon */
};

static volatile sig_atomic_t stop_requested;

static void on_sigint(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static double jdouble(struct json_object *o, const char *key)
{
    struct json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v) || !v)
        return 0;
    return json_object_get_double(v);
}

/* RMA/LMA, with "no local accesses" sorting above every finite ratio. */
static double ratio_of(struct json_object *p)
{
    struct json_object *v;
    if (json_object_object_get_ex(p, "rma_lma", &v) && v)
        return json_object_get_double(v);
    return jdouble(p, "rma") > 0 ? INFINITY : 0;
}

static enum sort_key current_sort;

static int compare_procs(const void *a, const void *b)
{
    struct json_object *x = *(struct json_object *const *)a, *y = *(struct json_object *const *)b;
    double dx = 0, dy = 0;
    switch (current_sort) {
    case SORT_PID: return (int)(jint(x, "pid") - jint(y, "pid"));
    case SORT_COMM: return strcmp(jstr(x, "comm", ""), jstr(y, "comm", ""));
    case SORT_RMA: dx = jdouble(x, "rma"); dy = jdouble(y, "rma"); break;
    case SORT_LMA: dx = jdouble(x, "lma"); dy = jdouble(y, "lma"); break;
    case SORT_RATIO: dx = ratio_of(x); dy = ratio_of(y); break;
    case SORT_RSS: dx = jdouble(x, "rss_bytes"); dy = jdouble(y, "rss_bytes"); break;
    case SORT_CPU: dx = jdouble(x, "cpu_pct"); dy = jdouble(y, "cpu_pct"); break;
    }
    return dx < dy ? 1 : dx > dy ? -1 : (int)(jint(x, "pid") - jint(y, "pid"));
}

static void sort_procs(struct json_object *procs, enum sort_key key)
{
    current_sort = key;
    json_object_array_sort(procs, compare_procs);
}

static void format_ratio(struct json_object *p, char *buf, size_t len)
{
    double r = ratio_of(p);
    if (isinf(r))
        snprintf(buf, len, "inf");
    else if (jdouble(p, "rma") == 0 && jdouble(p, "lma") == 0)
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%.2f", r);
}

static void format_nodes(struct json_object *arr, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    size_t n = arr ? json_object_array_length(arr) : 0;
    for (size_t i = 0; i < n && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%" PRId64, i ? "," : "",
                                json_object_get_int64(json_object_array_get_idx(arr, i)));
    if (!n)
        snprintf(buf, len, "-");
}

static void print_header(struct json_object *top, int nr_nodes)
{
    printf("numatierd top: sampler %s, %" PRId64 " pages tracked", jstr(top, "sampler", "?"),
           jint(top, "tracked_pages"));
    printf("\n%7s %-15s %12s %12s %8s", "PID", "COMMAND", "RMA", "LMA", "RMA/LMA");
    for (int n = 0; n < nr_nodes; n++) {
        char col[24];
        snprintf(col, sizeof(col), "HOT:N%d", n);
        printf(" %8s", col);
    }
    printf("  %s\n", "NODES");
}

static void print_row(struct json_object *p, int nr_nodes)
{
    char ratio[16], nodes[64];
    format_ratio(p, ratio, sizeof(ratio));
    struct json_object *hot = NULL, *tn = NULL;
    json_object_object_get_ex(p, "hot_pages", &hot);
    json_object_object_get_ex(p, "thread_nodes", &tn);
    format_nodes(tn, nodes, sizeof(nodes));
    printf("%7" PRId64 " %-15.15s %12.1f %12.1f %8s", jint(p, "pid"), jstr(p, "comm", "?"),
           jdouble(p, "rma"), jdouble(p, "lma"), ratio);
    for (int n = 0; n < nr_nodes; n++) {
        struct json_object *v = hot && (size_t)n < json_object_array_length(hot)
                                    ? json_object_array_get_idx(hot, (size_t)n) : NULL;
        printf(" %8" PRId64, v ? json_object_get_int64(v) : 0);
    }
    printf("  %s\n", nodes);
}

static void print_screen(struct json_object *top, const struct top_opts *t)
{
    int nr_nodes = (int)jint(top, "nr_nodes");
    struct json_object *procs;
    print_header(top, nr_nodes);
    if (!json_object_object_get_ex(top, "procs", &procs) || json_object_array_length(procs) == 0) {
        printf("(no watched processes)\n");
        return;
    }
    size_t n = json_object_array_length(procs);
    for (size_t i = 0; i < n && (t->limit == 0 || i < (size_t)t->limit); i++)
        print_row(json_object_array_get_idx(procs, i), nr_nodes);
}

static int fetch_and_show(const struct ctl_opts *o, const struct top_opts *t, bool clear)
{
    struct json_object *args = json_object_new_object();
    json_object_object_add(args, "pages", json_object_new_int(t->pages));
    struct json_object *resp = NULL, *top = NULL;
    int rc = call_daemon_args(o, "top", args, &resp, &top);
    json_object_put(args);
    if (rc == EXIT_OK) {
        struct json_object *procs;
        if (json_object_object_get_ex(top, "procs", &procs))
            sort_procs(procs, t->sort);
        if (o->json) {
            print_json(top);
        } else {
            if (clear)
                fputs("\033[H\033[2J", stdout);
            print_screen(top, t);
        }
        fflush(stdout);
    }
    json_object_put(resp);
    return rc;
}

static int parse_sort(const char *s, enum sort_key *out)
{
    static const char *const names[] = {
        [SORT_RMA] = "rma", [SORT_LMA] = "lma", [SORT_RATIO] = "ratio", [SORT_PID] = "pid",
        [SORT_COMM] = "comm", [SORT_RSS] = "rss", [SORT_CPU] = "cpu",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum sort_key)i;
            return 0;
        }
    return -EINVAL;
}

static int parse_top_opts(int argc, char **argv, struct top_opts *t)
{
    static const struct option opts[] = {
        { "once", no_argument, NULL, 'o' },
        { "interval", required_argument, NULL, 'i' },
        { "sort", required_argument, NULL, 'S' },
        { "limit", required_argument, NULL, 'l' },
        { "pages", required_argument, NULL, 'p' },
        { 0 },
    };
    optind = 1;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "oi:S:l:p:", opts, NULL)) != -1) {
        switch (c) {
        case 'o': t->once = true; break;
        case 'i':
            t->interval = strtod(optarg, &end);
            if (*end || !(t->interval >= 0.1 && t->interval <= 3600))
                goto bad;
            break;
        case 'S':
            if (parse_sort(optarg, &t->sort) < 0)
                goto bad;
            break;
        case 'l':
            t->limit = (int)strtol(optarg, &end, 10);
            if (*end || t->limit < 0)
                goto bad;
            break;
        case 'p':
            t->pages = (int)strtol(optarg, &end, 10);
            if (*end || t->pages < 0 || t->pages > 4096)
                goto bad;
            break;
        default:
            goto bad;
        }
    }
    if (optind == argc)
        return 0;
bad:
    fprintf(stderr, "numatierctl: usage: top [--once] [--interval 0.1-3600] "
                    "[--sort rma|lma|ratio|pid|comm|rss|cpu] [--limit N] [--pages 0-4096]\n");
    return -EINVAL;
}

int cmd_top(const struct ctl_opts *o, int argc, char **argv)
{
    struct top_opts t = { .interval = 2.0, .sort = SORT_RMA, .pages = 16 };
    if (parse_top_opts(argc, argv, &t) < 0)
        return EXIT_USAGE;
    if (t.once)
        return fetch_and_show(o, &t, false);

    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    bool tty = isatty(STDOUT_FILENO);
    while (!stop_requested) {
        int rc = fetch_and_show(o, &t, tty && !o->json);
        if (rc != EXIT_OK)
            return rc;
        if (!tty)
            putchar('\n');
        struct timespec ts = { (time_t)t.interval, (long)((t.interval - (time_t)t.interval) * 1e9) };
        nanosleep(&ts, NULL);
    }
    return EXIT_OK;
}
