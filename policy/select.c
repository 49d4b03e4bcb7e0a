/* Process selection: [procs] rules over plain facts. Pure: no syscalls,
 * no globals, no clock. */
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numatier/config.h"
#include "numatier/select.h"

#define MIB (1024.0 * 1024.0)

static const char *const reason_names[] = {
    [NT_SELECT_WATCHED] = "watched",
    [NT_SELECT_KERNEL_THREAD] = "kernel-thread",
    [NT_SELECT_SELF] = "self",
    [NT_SELECT_EXCLUDE_COMM] = "exclude-comm",
    [NT_SELECT_EXCLUDE_CGROUP] = "exclude-cgroup",
    [NT_SELECT_NOT_INCLUDED_COMM] = "not-included-comm",
    [NT_SELECT_NOT_INCLUDED_CGROUP] = "not-included-cgroup",
    [NT_SELECT_MIN_RSS] = "min-rss",
    [NT_SELECT_MIN_CPU] = "min-cpu",
    [NT_SELECT_MAX_PROCS] = "max-procs",
};

const char *nt_select_reason_to_string(enum nt_select_reason r)
{
    if ((unsigned)r >= sizeof(reason_names) / sizeof(reason_names[0]))
        return "unknown";
    return reason_names[r];
}

void nt_select_rules_from_config(struct nt_select_rules *r, const struct nt_config *cfg, pid_t self)
{
    *r = (struct nt_select_rules){
        .self = self,
        .min_rss_bytes = cfg->min_rss_bytes,
        .min_cpu_pct = cfg->min_cpu_pct,
        .include_comm = cfg->include_comm,
        .exclude_comm = cfg->exclude_comm,
        .include_cgroup = cfg->include_cgroup,
        .exclude_cgroup = cfg->exclude_cgroup,
        .max_procs = cfg->max_procs,
    };
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The next trimmed, non-empty token of a comma list, or NULL at its end. */
static const char *next_glob(const char **cursor, size_t *len)
{
    const char *p = *cursor;
    while (*p) {
        const char *end = strchrnul(p, ',');
        const char *b = p, *e = end;
        while (b < e && is_blank(*b))
            b++;
        while (e > b && is_blank(e[-1]))
            e--;
        p = *end ? end + 1 : end;
        if (e > b) {
            *cursor = p;
            *len = (size_t)(e - b);
            return b;
        }
    }
    *cursor = p;
    return NULL;
}

bool nt_glob_list_match(const char *list, const char *s, int fnm_flags, const char **matched,
                        size_t *matched_len)
{
    if (!list || !s)
        return false;
    size_t len;
    for (const char *g = next_glob(&list, &len); g; g = next_glob(&list, &len)) {
        char pat[PATH_MAX];
        if (len >= sizeof(pat))
            continue;
        memcpy(pat, g, len);
        pat[len] = '\0';
        if (fnmatch(pat, s, fnm_flags) == 0) {
            if (matched) {
                *matched = g;
                *matched_len = len;
            }
            return true;
        }
    }
    return false;
}

static bool list_empty(const char *list)
{
    size_t len;
    return !list || !next_glob(&list, &len);
}

enum nt_select_reason nt_select_check(const struct nt_select_rules *r, const struct nt_proc_info *p)
{
    if (p->kernel_thread || p->ppid == NT_KTHREADD_PID)
        return NT_SELECT_KERNEL_THREAD;
    if (p->pid == r->self)
        return NT_SELECT_SELF;
    if (nt_glob_list_match(r->exclude_comm, p->comm, 0, NULL, NULL))
        return NT_SELECT_EXCLUDE_COMM;
    if (nt_glob_list_match(r->exclude_cgroup, p->cgroup, 0, NULL, NULL))
        return NT_SELECT_EXCLUDE_CGROUP;
    if (!list_empty(r->include_comm) && !nt_glob_list_match(r->include_comm, p->comm, 0, NULL, NULL))
        return NT_SELECT_NOT_INCLUDED_COMM;
    if (!list_empty(r->include_cgroup) && !nt_glob_list_match(r->include_cgroup, p->cgroup, 0, NULL, NULL))
        return NT_SELECT_NOT_INCLUDED_CGROUP;
    if (p->rss_bytes < r->min_rss_bytes)
        return NT_SELECT_MIN_RSS;
    if (p->cpu_pct < r->min_cpu_pct)
        return NT_SELECT_MIN_CPU;
    return NT_SELECT_WATCHED;
}

/* Larger RSS first; ties go to the lower (usually older) pid. */
static int by_rss_desc(const void *a, const void *b)
{
    const struct nt_proc_info *x = *(const struct nt_proc_info *const *)a;
    const struct nt_proc_info *y = *(const struct nt_proc_info *const *)b;
    if (x->rss_bytes != y->rss_bytes)
        return x->rss_bytes > y->rss_bytes ? -1 : 1;
    return (x->pid > y->pid) - (x->pid < y->pid);
}

int nt_select_apply(const struct nt_select_rules *r, struct nt_proc_info *procs, size_t n)
{
    size_t passed = 0;
    for (size_t i = 0; i < n; i++) {
        procs[i].reason = nt_select_check(r, &procs[i]);
        passed += procs[i].reason == NT_SELECT_WATCHED;
    }
    if (r->max_procs == 0 || passed <= r->max_procs)
        return (int)passed;

    struct nt_proc_info **order = malloc(passed * sizeof(*order));
    if (!order)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (procs[i].reason == NT_SELECT_WATCHED)
            order[k++] = &procs[i];
    qsort(order, k, sizeof(*order), by_rss_desc);
    for (size_t i = r->max_procs; i < k; i++)
        order[i]->reason = NT_SELECT_MAX_PROCS;
    free(order);
    return (int)r->max_procs;
}

static void explain_glob(const char *what, const char *value, const char *key, const char *list,
                         bool include, char *buf, size_t len)
{
    const char *g = NULL;
    size_t glen = 0;
    if (!value)
        snprintf(buf, len, "%s unknown, so it matches no %s glob", what, key);
    else if (!include && nt_glob_list_match(list, value, 0, &g, &glen))
        snprintf(buf, len, "%s \"%s\" matches %s glob \"%.*s\"", what, value, key, (int)glen, g);
    else
        snprintf(buf, len, "%s \"%s\" matches no %s glob (\"%s\")", what, value, key, list ? list : "");
}

void nt_select_explain(const struct nt_select_rules *r, const struct nt_proc_info *p, char *buf, size_t len)
{
    double rss = (double)p->rss_bytes / MIB;
    switch (p->reason) {
    case NT_SELECT_WATCHED:
        snprintf(buf, len, "watched: RSS %.1f MiB, CPU %.1f%%", rss, p->cpu_pct);
        break;
    case NT_SELECT_KERNEL_THREAD:
        snprintf(buf, len, "kernel thread: never watched");
        break;
    case NT_SELECT_SELF:
        snprintf(buf, len, "numatierd itself: never watched");
        break;
    case NT_SELECT_EXCLUDE_COMM:
        explain_glob("comm", p->comm, "exclude_comm", r->exclude_comm, false, buf, len);
        break;
    case NT_SELECT_EXCLUDE_CGROUP:
        explain_glob("cgroup", p->cgroup, "exclude_cgroup", r->exclude_cgroup, false, buf, len);
        break;
    case NT_SELECT_NOT_INCLUDED_COMM:
        explain_glob("comm", p->comm, "include_comm", r->include_comm, true, buf, len);
        break;
    case NT_SELECT_NOT_INCLUDED_CGROUP:
        explain_glob("cgroup", p->cgroup, "include_cgroup", r->include_cgroup, true, buf, len);
        break;
    case NT_SELECT_MIN_RSS:
        snprintf(buf, len, "RSS %.1f MiB is below min_rss %.1f MiB", rss, (double)r->min_rss_bytes / MIB);
        break;
    case NT_SELECT_MIN_CPU:
        snprintf(buf, len, "CPU %.1f%% is below min_cpu %.1f%%", p->cpu_pct, r->min_cpu_pct);
        break;
    case NT_SELECT_MAX_PROCS:
        snprintf(buf, len, "RSS %.1f MiB: max_procs %u larger processes are watched", rss, r->max_procs);
        break;
    default:
        snprintf(buf, len, "unknown reason %d", (int)p->reason);
        break;
    }
}
