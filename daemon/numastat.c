/* numastat-compatible tables: the table type, numastat -m (per-node system
 * memory), and the printer that reproduces numastat's layout. The process
 * side (numastat -p) is in procnuma.c.
 *
 * The layout rules mirror numactl's numastat.c (display_table and
 * friends): a 16-wide left-justified label column (fitted to 16..24 for
 * process tables), 16-wide right-justified data columns holding "%.2f",
 * dashes one short of the column width, and column folding by width. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "numatier/numastat.h"
#include "numatier/util.h"

#define NODE_DIR   "/sys/devices/system/node"
#define COL_WIDTH  16u
#define MEGABYTE   (1024.0 * 1024.0)

/* numastat's system_meminfo[]: these rows, in this order, whenever the
 * kernel prints them. Keys it lacks (SwapCached, SecPageTables, ...) are
 * not shown, as numastat doesn't show them. */
static const char *const system_rows[] = {
    "MemTotal", "MemFree", "MemUsed", "HighTotal", "HighFree", "LowTotal", "LowFree",
    "Active", "Inactive", "Active(anon)", "Inactive(anon)", "Active(file)", "Inactive(file)",
    "Unevictable", "Mlocked", "Dirty", "Writeback", "FilePages", "Mapped", "AnonPages",
    "Shmem", "KernelStack", "PageTables", "NFS_Unstable", "Bounce", "WritebackTmp",
    "Slab", "SReclaimable", "SUnreclaim", "AnonHugePages", "ShmemHugePages",
    "ShmemPmdMapped", "HugePages_Total", "HugePages_Free", "HugePages_Surp", "KReclaimable",
};
#define NR_SYSTEM_ROWS NT_ARRAY_SIZE(system_rows)

void nt_numastat_free(struct nt_numastat_table *t)
{
    if (!t)
        return;
    for (unsigned i = 0; t->row_names && i < t->nr_rows; i++)
        free(t->row_names[i]);
    free(t->row_names);
    free(t->title);
    free(t->row_header);
    free(t->node_ids);
    free(t->mb);
    free(t->comm);
    free(t->row_pids);
    free(t->row_errors);
    free(t);
}

int nt_numastat_table_new(unsigned nr_rows, unsigned nr_cols, struct nt_numastat_table **out)
{
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->nr_rows = nr_rows;
    t->nr_cols = nr_cols;
    t->total_row = -1;
    t->row_names = calloc(nr_rows ? nr_rows : 1, sizeof(*t->row_names));
    t->node_ids = calloc(nr_cols ? nr_cols : 1, sizeof(*t->node_ids));
    t->mb = calloc((size_t)nr_rows * nr_cols + 1, sizeof(*t->mb));
    if (!t->row_names || !t->node_ids || !t->mb)
        return -ENOMEM;
    *out = NT_TAKE_PTR(t);
    return 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* "node" followed by digits only, as numastat's node_and_digits(). */
static bool is_node_dir(const char *name, int *id)
{
    if (strncmp(name, "node", 4) != 0 || !name[4])
        return false;
    for (const char *p = name + 4; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    long v = strtol(name + 4, NULL, 10);
    if (v > INT32_MAX)
        return false;
    *id = (int)v;
    return true;
}

int nt_numastat_node_ids(const char *root, int **ids, unsigned *n)
{
    _cleanup_free_ char *path = nt_path_join(root, NODE_DIR);
    if (!path)
        return -ENOMEM;
    _cleanup_closedir_ DIR *d = opendir(path);
    if (!d)
        return -errno;
    _cleanup_free_ int *v = NULL;
    unsigned len = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        int id;
        if (!is_node_dir(de->d_name, &id))
            continue;
        if (len == cap) {
            cap = cap ? cap * 2 : 16;
            int *nv = realloc(v, cap * sizeof(*v));
            if (!nv)
                return -ENOMEM;
            v = nv;
        }
        v[len++] = id;
    }
    if (len == 0)
        return -ENOENT;
    qsort(v, len, sizeof(*v), cmp_int);
    *ids = NT_TAKE_PTR(v);
    *n = len;
    return 0;
}

int nt_numastat_huge_page_size(const char *root, uint64_t *bytes)
{
    _cleanup_free_ char *s = NULL;
    int r = nt_read_file(root, "/proc/meminfo", &s);
    if (r < 0)
        return r;
    *bytes = 0;
    const char *p = strstr(s, "\nHugepagesize:");
    unsigned long long kb;
    if (p && sscanf(p, "\nHugepagesize: %llu kB", &kb) == 1)
        *bytes = kb * 1024;
    return 0;
}

static int system_row_index(const char *key)
{
    for (unsigned i = 0; i < NR_SYSTEM_ROWS; i++)
        if (strcmp(system_rows[i], key) == 0)
            return (int)i;
    return -1;
}

/* One "Node 3 Inactive:  210680 kB" line into vals[row]. The unit rules
 * are numastat's: HugePages_* count pages of the default huge size, "kB"
 * means KiB, anything else is taken as bytes. */
static void parse_meminfo_line(char *line, double huge_bytes, double *vals)
{
    char *tok[6], *save = NULL;
    unsigned n = 0;
    for (char *p = strtok_r(line, " \t\r:", &save); p && n < NT_ARRAY_SIZE(tok);
         p = strtok_r(NULL, " \t\r:", &save))
        tok[n++] = p;
    if (n < 4)
        return;
    int row = system_row_index(tok[2]);
    if (row < 0)
        return;
    double mult = 1.0;
    if (strncmp(tok[2], "HugePages", 9) == 0)
        mult = huge_bytes;
    else if (n >= 5 && strncmp(tok[4], "kB", 2) == 0)
        mult = 1024.0;
    vals[row] = (double)strtoll(tok[3], NULL, 10) * mult / MEGABYTE;
}

/* vals has NR_SYSTEM_ROWS entries, NAN until the kernel prints that key. */
static int read_node_meminfo(const char *root, int node, double huge_bytes, double *vals)
{
    char path[64];
    snprintf(path, sizeof(path), NODE_DIR "/node%d/meminfo", node);
    _cleanup_free_ char *s = NULL;
    int r = nt_read_file(root, path, &s);
    if (r < 0)
        return r;
    char *save = NULL;
    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        parse_meminfo_line(line, huge_bytes, vals);
    return 0;
}

static bool row_seen(const double *vals, unsigned nr_nodes, unsigned row)
{
    for (unsigned c = 0; c < nr_nodes; c++)
        if (!isnan(vals[c * NR_SYSTEM_ROWS + row]))
            return true;
    return false;
}

/* Keep the rows some node printed, in numastat's order. */
static int system_table_from(const double *vals, const int *ids, unsigned nr_nodes,
                             struct nt_numastat_table **out)
{
    unsigned nr_rows = 0;
    for (unsigned row = 0; row < NR_SYSTEM_ROWS; row++)
        nr_rows += row_seen(vals, nr_nodes, row);
    _cleanup_(nt_numastat_freep) struct nt_numastat_table *t = NULL;
    int r = nt_numastat_table_new(nr_rows, nr_nodes, &t);
    if (r < 0)
        return r;
    if (!(t->title = strdup("Per-node system memory usage (in MBs):")))
        return -ENOMEM;
    memcpy(t->node_ids, ids, nr_nodes * sizeof(*ids));
    unsigned i = 0;
    for (unsigned row = 0; row < NR_SYSTEM_ROWS; row++) {
        if (!row_seen(vals, nr_nodes, row))
            continue;
        if (!(t->row_names[i] = strdup(system_rows[row])))
            return -ENOMEM;
        for (unsigned c = 0; c < nr_nodes; c++)
            t->mb[i * nr_nodes + c] = vals[c * NR_SYSTEM_ROWS + row];
        i++;
    }
    *out = NT_TAKE_PTR(t);
    return 0;
}

int nt_numastat_system(const char *root, struct nt_numastat_table **out)
{
    _cleanup_free_ int *ids = NULL;
    unsigned n = 0;
    uint64_t huge = 0;
    int r = nt_numastat_node_ids(root, &ids, &n);
    if (r < 0 || (r = nt_numastat_huge_page_size(root, &huge)) < 0)
        return r;
    _cleanup_free_ double *vals = malloc((size_t)n * NR_SYSTEM_ROWS * sizeof(*vals));
    if (!vals)
        return -ENOMEM;
    for (size_t i = 0; i < (size_t)n * NR_SYSTEM_ROWS; i++)
        vals[i] = NAN;
    for (unsigned c = 0; c < n; c++)
        if ((r = read_node_meminfo(root, ids[c], (double)huge, vals + (size_t)c * NR_SYSTEM_ROWS)) < 0)
            return r;
    return system_table_from(vals, ids, n, out);
}

/* ---- printing ------------------------------------------------------------ */

/* The cells of one printed line: a label, nr_cols node values and the
 * row total. kind says how to draw it. */
enum line_kind { LINE_NAMES, LINE_DASHES_UNDER_NAMES, LINE_DATA, LINE_ALL_DASHES };

static double row_total(const struct nt_numastat_table *t, unsigned row)
{
    double sum = 0;
    bool any = false;
    for (unsigned c = 0; c < t->nr_cols; c++) {
        double v = t->mb[row * t->nr_cols + c];
        if (!isnan(v))
            sum += v, any = true;
    }
    return any ? sum : NAN;
}

/* numastat's auto_set_col_width(col 0, 16, 24) for process tables. */
static unsigned label_width(const struct nt_numastat_table *t)
{
    if (!t->fit_labels)
        return COL_WIDTH;
    size_t w = t->row_header ? strlen(t->row_header) : 0;
    for (unsigned i = 0; i < t->nr_rows; i++) {
        size_t l = strlen(t->row_names[i]);
        w = l > w ? l : w;
    }
    w = (w < 16 ? 16 : w) + 1;
    return w > 24 ? 24 : (unsigned)w;
}

/* A cell's text, cut to the column width as numastat cuts it. */
static void put_cell(FILE *f, const char *s, unsigned width, bool left)
{
    int w = (int)width;
    if (left)
        fprintf(f, "%-*.*s", w, w, s);
    else
        fprintf(f, "%*.*s", w, w, s);
}

static void put_dashes(FILE *f, unsigned width, bool left)
{
    if (!left)
        fputc(' ', f);
    for (unsigned i = 0; i + 1 < width; i++)
        fputc('-', f);
    if (left)
        fputc(' ', f);
}

static void put_data_cell(FILE *f, const struct nt_numastat_table *t, enum line_kind kind,
                          unsigned row, unsigned col)
{
    char buf[64] = "";
    if (kind == LINE_DASHES_UNDER_NAMES || kind == LINE_ALL_DASHES) {
        put_dashes(f, COL_WIDTH, false);
        return;
    }
    if (kind == LINE_NAMES) {
        if (col < t->nr_cols)
            snprintf(buf, sizeof(buf), "Node %d", t->node_ids[col]);
        else
            snprintf(buf, sizeof(buf), "Total");
    } else {
        double v = col < t->nr_cols ? t->mb[row * t->nr_cols + col] : row_total(t, row);
        if (!isnan(v))
            snprintf(buf, sizeof(buf), "%.2f", v);
    }
    put_cell(f, buf, COL_WIDTH, false);
}

static void put_label_cell(FILE *f, const struct nt_numastat_table *t, enum line_kind kind,
                           unsigned row, unsigned width)
{
    if (kind == LINE_ALL_DASHES || (kind == LINE_DASHES_UNDER_NAMES && t->row_header))
        put_dashes(f, width, true);
    else if (kind == LINE_NAMES)
        put_cell(f, t->row_header ? t->row_header : "", width, true);
    else if (kind == LINE_DATA)
        put_cell(f, t->row_names[row], width, true);
    else
        put_cell(f, "", width, true);
}

/* One line of a section: the label, then data columns from first on while
 * they fit. Returns the first column left for the next section. */
static unsigned put_line(FILE *f, const struct nt_numastat_table *t, enum line_kind kind,
                         unsigned row, unsigned first, unsigned width)
{
    unsigned lw = label_width(t), used = lw, col = first, ncols = t->nr_cols + 1;
    put_label_cell(f, t, kind, row, lw);
    for (;;) {
        put_data_cell(f, t, kind, row, col);
        used += COL_WIDTH;
        col++;
        if (col >= ncols || (width && used + COL_WIDTH > width))
            break;
    }
    fputc('\n', f);
    return col;
}

static unsigned put_section(FILE *f, const struct nt_numastat_table *t, unsigned first, unsigned width)
{
    unsigned next = put_line(f, t, LINE_NAMES, 0, first, width);
    put_line(f, t, LINE_DASHES_UNDER_NAMES, 0, first, width);
    for (unsigned row = 0; row < t->nr_rows; row++) {
        if ((int)row == t->total_row)
            put_line(f, t, LINE_ALL_DASHES, row, first, width);
        put_line(f, t, LINE_DATA, row, first, width);
    }
    return next;
}

void nt_numastat_print_width(FILE *f, const struct nt_numastat_table *t, unsigned width)
{
    fprintf(f, "\n%s\n", t->title ? t->title : "");
    if (t->nr_rows == 0) {
        fputs("Table has no data.\n", f);
        return;
    }
    if (width && width < 32)
        width = 32;                      /* numastat's floor */
    for (unsigned col = 0; col < t->nr_cols + 1;) {
        if (col > 0)
            fputc('\n', f);
        col = put_section(f, t, col, width);
    }
}

void nt_numastat_print(FILE *f, const struct nt_numastat_table *t)
{
    nt_numastat_print_width(f, t, 0);
}

/* ---- JSON ------------------------------------------------------------- */

static struct json_object *mb_to_json(double v)
{
    return isnan(v) ? NULL : json_object_new_double(v);
}

static struct json_object *row_to_json(const struct nt_numastat_table *t, unsigned row)
{
    struct json_object *o = json_object_new_object();
    struct json_object *mb = json_object_new_array();
    for (unsigned c = 0; c < t->nr_cols; c++)
        json_object_array_add(mb, mb_to_json(t->mb[row * t->nr_cols + c]));
    json_object_object_add(o, "name", json_object_new_string(t->row_names[row]));
    if (t->row_pids && (int)row != t->total_row)
        json_object_object_add(o, "pid", json_object_new_int(t->row_pids[row]));
    if (t->row_errors && t->row_errors[row] < 0)
        json_object_object_add(o, "error", json_object_new_string(strerror(-t->row_errors[row])));
    json_object_object_add(o, "mb", mb);
    json_object_object_add(o, "total", mb_to_json(row_total(t, row)));
    return o;
}

struct json_object *nt_numastat_to_json(const struct nt_numastat_table *t)
{
    struct json_object *o = json_object_new_object();
    struct json_object *nodes = json_object_new_array();
    struct json_object *rows = json_object_new_array();
    json_object_object_add(o, "title", json_object_new_string(t->title ? t->title : ""));
    if (t->pid > 0) {
        json_object_object_add(o, "pid", json_object_new_int(t->pid));
        json_object_object_add(o, "name", t->comm ? json_object_new_string(t->comm) : NULL);
    }
    for (unsigned c = 0; c < t->nr_cols; c++)
        json_object_array_add(nodes, json_object_new_int(t->node_ids[c]));
    json_object_object_add(o, "nodes", nodes);
    for (unsigned row = 0; row < t->nr_rows; row++)
        if ((int)row != t->total_row)
            json_object_array_add(rows, row_to_json(t, row));
    json_object_object_add(o, "rows", rows);
    if (t->total_row >= 0)
        json_object_object_add(o, "total", row_to_json(t, (unsigned)t->total_row));
    return o;
}
