/* numastat -p: per-node memory of processes from /proc/PID/numa_maps, and
 * numastat's rule for finding processes by name.
 *
 * Categories follow numactl's numastat.c: a mapping is Huge, Heap or Stack
 * if any of its tokens starts with "huge", "heap" or "stack" (the first such
 * token wins), and Private otherwise -- file mappings included. Each
 * "N<node>=<pages>" token adds pages times the mapping's page size. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "numatier/numastat.h"
#include "numatier/util.h"

#define MEGABYTE (1024.0 * 1024.0)
#define CMDLINE_MAX 2047            /* numastat matches within its 2048-byte buffer */

static const char *const proc_rows[NT_NUMASTAT_PROC_ROWS] = { "Huge", "Heap", "Stack", "Private" };
static const char *const category_prefix[NT_NUMASTAT_PRIVATE] = { "huge", "heap", "stack" };

static int category_of(const char *tok)
{
    for (int c = 0; c < NT_NUMASTAT_PRIVATE; c++)
        if (strncmp(tok, category_prefix[c], strlen(category_prefix[c])) == 0)
            return c;
    return NT_NUMASTAT_PRIVATE;
}

static int node_col(const int *ids, unsigned n, long node)
{
    for (unsigned i = 0; i < n; i++)
        if (ids[i] == node)
            return (int)i;
    return -1;
}

/* "N3=128" -> node 3, 128 pages. */
static bool parse_node_pages(const char *tok, long *node, double *pages)
{
    char *end;
    if (tok[0] != 'N' || !isdigit((unsigned char)tok[1]))
        return false;
    *node = strtol(tok + 1, &end, 10);
    if (*end != '=')
        return false;
    *pages = (double)strtoll(end + 1, NULL, 10);
    return true;
}

/* The next whitespace-separated token of a line, or NULL at its end. */
static const char *next_token(const char *p, size_t *len)
{
    p += strspn(p, " \t\r");
    *len = strcspn(p, " \t\r\n");
    return *len ? p : NULL;
}

/* One mapping. Two passes over its tokens, because the page size
 * (kernelpagesize_kB=) is printed after the N<node>= counts. */
static void tally_line(const char *line, const int *ids, unsigned nr_nodes, uint64_t page_size,
                       uint64_t huge_page_size, double *mb)
{
    int cat = NT_NUMASTAT_PRIVATE;
    double bytes = 0;
    size_t len;
    for (const char *t = next_token(line, &len); t; t = next_token(t + len, &len)) {
        if (cat == NT_NUMASTAT_PRIVATE)
            cat = category_of(t);
        if (strncmp(t, "kernelpagesize_kB=", 18) == 0)
            bytes = (double)strtoull(t + 18, NULL, 10) * 1024.0;
    }
    if (bytes == 0)
        bytes = (double)(cat == NT_NUMASTAT_HUGE ? huge_page_size : page_size);
    for (const char *t = next_token(line, &len); t; t = next_token(t + len, &len)) {
        long node;
        double pages;
        int col;
        if (parse_node_pages(t, &node, &pages) && (col = node_col(ids, nr_nodes, node)) >= 0)
            mb[cat * nr_nodes + (unsigned)col] += pages * bytes / MEGABYTE;
    }
}

void nt_numa_maps_tally(const char *numa_maps, const int *node_ids, unsigned nr_nodes,
                        uint64_t page_size, uint64_t huge_page_size, double *mb)
{
    for (const char *line = numa_maps; *line;) {
        tally_line(line, node_ids, nr_nodes, page_size, huge_page_size, mb);
        const char *eol = strchr(line, '\n');
        if (!eol)
            break;
        line = eol + 1;
    }
}

/* A vanished process shows up as ENOENT (or ESRCH mid-read). */
static int proc_errno(int r)
{
    if (r == -ENOENT || r == -ESRCH)
        return -ESRCH;
    if (r == -EPERM)
        return -EACCES;
    return r;
}

/* The "Name:" field of a status file, as numastat takes it: the rest of
 * the line after the blanks. NULL if absent (or out of memory). */
static char *status_name(const char *status)
{
    const char *p = strncmp(status, "Name:", 5) == 0 ? status : strstr(status, "\nName:");
    if (!p)
        return NULL;
    p += p == status ? 5 : 6;
    p += strspn(p, " \t");
    return strndup(p, strcspn(p, "\n"));
}

static int read_proc_name(const char *root, pid_t pid, char **name)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    _cleanup_free_ char *s = NULL;
    int r = nt_read_file(root, path, &s);
    if (r < 0)
        return proc_errno(r);
    *name = status_name(s);
    return *name ? 0 : -EINVAL;
}

/* numa_maps is missing while /proc/PID is there only on kernels without
 * NUMA support; say so rather than "no such process". */
static int read_numa_maps(const char *root, pid_t pid, char **text)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/numa_maps", (int)pid);
    int r = nt_read_file(root, path, text);
    if (r != -ENOENT)
        return proc_errno(r);
    snprintf(path, sizeof(path), "/proc/%d", (int)pid);
    _cleanup_free_ char *dir = nt_path_join(root, path);
    if (!dir)
        return -ENOMEM;
    return access(dir, F_OK) == 0 ? -EOPNOTSUPP : -ESRCH;
}

struct proc_ctx {
    const char *root;
    int *ids;
    unsigned nr_nodes;
    uint64_t page_size, huge_page_size;
};

static void proc_ctx_done(struct proc_ctx *c)
{
    free(c->ids);
}

static int proc_ctx_init(struct proc_ctx *c, const char *root)
{
    *c = (struct proc_ctx){ .root = root, .page_size = (uint64_t)sysconf(_SC_PAGESIZE) };
    int r = nt_numastat_node_ids(root, &c->ids, &c->nr_nodes);
    if (r < 0)
        return r;
    /* Only a fallback for lines without kernelpagesize_kB: never fatal. */
    if (nt_numastat_huge_page_size(root, &c->huge_page_size) < 0)
        c->huge_page_size = 0;
    return 0;
}

/* Name and per-category MB (NT_NUMASTAT_PROC_ROWS x nr_nodes) of one pid.
 * *name is set (caller frees) even when only numa_maps failed. */
static int read_process(const struct proc_ctx *c, pid_t pid, char **name, double *mb)
{
    _cleanup_free_ char *text = NULL;
    int r = read_proc_name(c->root, pid, name);
    if (r < 0 || (r = read_numa_maps(c->root, pid, &text)) < 0)
        return r;
    nt_numa_maps_tally(text, c->ids, c->nr_nodes, c->page_size, c->huge_page_size, mb);
    return 0;
}

static void sum_rows_into(struct nt_numastat_table *t, unsigned total)
{
    for (unsigned c = 0; c < t->nr_cols; c++) {
        double sum = 0;
        for (unsigned row = 0; row < total; row++)
            sum += t->mb[row * t->nr_cols + c];
        t->mb[total * t->nr_cols + c] = sum;
    }
}

static int new_process_table(const struct proc_ctx *c, unsigned nr_rows, struct nt_numastat_table **out)
{
    int r = nt_numastat_table_new(nr_rows, c->nr_nodes, out);
    if (r < 0)
        return r;
    memcpy((*out)->node_ids, c->ids, c->nr_nodes * sizeof(*c->ids));
    (*out)->fit_labels = true;
    (*out)->total_row = (int)nr_rows - 1;
    return 0;
}

static int process_table(const struct proc_ctx *c, pid_t pid, struct nt_numastat_table **out)
{
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *t = NULL;
    int r = new_process_table(c, NT_NUMASTAT_PROC_ROWS + 1, &t);
    if (r < 0 || (r = read_process(c, pid, &t->comm, t->mb)) < 0)
        return r;
    t->pid = pid;
    if (asprintf(&t->title, "Per-node process memory usage (in MBs) for PID %d (%s)", (int)pid, t->comm) < 0) {
        t->title = NULL;
        return -ENOMEM;
    }
    for (unsigned row = 0; row < NT_NUMASTAT_PROC_ROWS; row++)
        if (!(t->row_names[row] = strdup(proc_rows[row])))
            return -ENOMEM;
    if (!(t->row_names[NT_NUMASTAT_PROC_ROWS] = strdup("Total")))
        return -ENOMEM;
    sum_rows_into(t, NT_NUMASTAT_PROC_ROWS);
    *out = NT_TAKE_PTR(t);
    return 0;
}

int nt_numastat_process(const char *root, pid_t pid, struct nt_numastat_table **out)
{
    _cleanup_(proc_ctx_done) struct proc_ctx c = { 0 };
    int r = proc_ctx_init(&c, root);
    return r < 0 ? r : process_table(&c, pid, out);
}

/* One row of the several-process table: the process's node totals,
 * labelled "PID (name)" cut to 63 characters as numastat's buffer cuts it.
 * A process whose memory map we may not read keeps a row of zeros, as in
 * numastat, and its error in row_errors so the caller can say why. */
static int add_process_row(const struct proc_ctx *c, struct nt_numastat_table *t, unsigned row, pid_t pid)
{
    _cleanup_free_ char *name = NULL;
    _cleanup_free_ double *mb = calloc((size_t)NT_NUMASTAT_PROC_ROWS * c->nr_nodes + 1, sizeof(*mb));
    if (!mb)
        return -ENOMEM;
    int r = read_process(c, pid, &name, mb);
    if (r < 0 && (r != -EACCES || !name))
        return r;
    t->row_errors[row] = r;
    char label[64];
    snprintf(label, sizeof(label), "%d (%s)", (int)pid, name);
    if (!(t->row_names[row] = strdup(label)))
        return -ENOMEM;
    t->row_pids[row] = pid;
    for (unsigned cat = 0; cat < NT_NUMASTAT_PROC_ROWS; cat++)
        for (unsigned col = 0; col < c->nr_nodes; col++)
            t->mb[row * c->nr_nodes + col] += mb[cat * c->nr_nodes + col];
    return 0;
}

static int several_table(const struct proc_ctx *c, const pid_t *pids, size_t n, struct nt_numastat_table **out)
{
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *t = NULL;
    int r = new_process_table(c, (unsigned)n + 1, &t);
    if (r < 0)
        return r;
    if (!(t->title = strdup("Per-node process memory usage (in MBs)")) || !(t->row_header = strdup("PID")) ||
        !(t->row_pids = calloc(n + 1, sizeof(*t->row_pids))) ||
        !(t->row_errors = calloc(n + 1, sizeof(*t->row_errors))))
        return -ENOMEM;
    unsigned rows = 0, readable = 0;
    for (size_t i = 0; i < n; i++) {
        r = add_process_row(c, t, rows, pids[i]);
        if (r == -ESRCH)
            continue;                     /* exited since it was listed */
        if (r < 0)
            return r;
        readable += t->row_errors[rows] == 0;
        rows++;
    }
    if (rows == 0)
        return -ESRCH;
    if (readable == 0)
        return -EACCES;                   /* a table of nothing but zeros would mislead */
    t->nr_rows = rows + 1;                /* rows of vanished processes stay unused */
    t->total_row = (int)rows;
    if (!(t->row_names[rows] = strdup("Total")))
        return -ENOMEM;
    sum_rows_into(t, rows);
    *out = NT_TAKE_PTR(t);
    return 0;
}

static int cmp_pid(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return (x > y) - (x < y);
}

/* numastat sorts and de-duplicates its pid list before showing it. */
static size_t sort_unique(pid_t *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_pid);
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (v[i] != v[k - 1])
            v[k++] = v[i];
    return k;
}

int nt_numastat_processes(const char *root, const pid_t *pids, size_t n, struct nt_numastat_table **out)
{
    if (n == 0)
        return -EINVAL;
    _cleanup_free_ pid_t *v = malloc(n * sizeof(*v));
    if (!v)
        return -ENOMEM;
    memcpy(v, pids, n * sizeof(*v));
    n = sort_unique(v, n);
    _cleanup_(proc_ctx_done) struct proc_ctx c = { 0 };
    int r = proc_ctx_init(&c, root);
    if (r < 0)
        return r;
    return n == 1 ? process_table(&c, v[0], out) : several_table(&c, v, n, out);
}

/* ---- -p NAME --------------------------------------------------------------- */

/* What numastat searches: "Name cmdline-with-spaces", within its buffer. */
static int match_text(const char *root, const char *pid_dir, char **out)
{
    char path[300];
    _cleanup_free_ char *name = NULL, *status = NULL;
    snprintf(path, sizeof(path), "/proc/%s/status", pid_dir);
    if (nt_read_file(root, path, &status) == 0)
        name = status_name(status);
    snprintf(path, sizeof(path), "/proc/%s/cmdline", pid_dir);
    _cleanup_free_ char *full = nt_path_join(root, path);
    _cleanup_fclose_ FILE *f = full ? fopen(full, "re") : NULL;
    _cleanup_free_ char *buf = malloc(CMDLINE_MAX + 1);
    if (!buf)
        return -ENOMEM;
    snprintf(buf, CMDLINE_MAX + 1, "%s", name ? name : "");
    size_t len = strlen(buf);
    if (f && len < CMDLINE_MAX) {
        buf[len++] = ' ';
        size_t got = fread(buf + len, 1, CMDLINE_MAX - len, f);
        for (size_t i = 0; i < got; i++)
            if (buf[len + i] == '\0')
                buf[len + i] = ' ';
        len += got;
    }
    buf[len] = '\0';
    *out = NT_TAKE_PTR(buf);
    return 0;
}

static int push_pid(pid_t **v, size_t *n, size_t *cap, pid_t pid)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        pid_t *nv = realloc(*v, nc * sizeof(**v));
        if (!nv)
            return -ENOMEM;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = pid;
    return 0;
}

int nt_pids_by_name(const char *root, const char *name, pid_t **pids, size_t *n)
{
    _cleanup_free_ char *proc = nt_path_join(root, "/proc");
    if (!proc)
        return -ENOMEM;
    _cleanup_closedir_ DIR *d = opendir(proc);
    if (!d)
        return -errno;
    bool live = !root || !*root || strcmp(root, "/") == 0;
    _cleanup_free_ pid_t *v = NULL;
    size_t len = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        pid_t pid = (pid_t)atoi(de->d_name);
        _cleanup_free_ char *text = NULL;
        int r = match_text(root, de->d_name, &text);
        if (r < 0)
            return r;
        if (strstr(text, name) && !(live && pid == getpid()) && (r = push_pid(&v, &len, &cap, pid)) < 0)
            return r;
    }
    *n = sort_unique(v, len);
    *pids = NT_TAKE_PTR(v);
    return 0;
}
