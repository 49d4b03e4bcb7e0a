/* numastat-compatible tables: per-node system memory (numastat -m) and
 * per-node process memory (numastat -p). Reading fills a plain table;
 * printing reproduces numastat's layout byte for byte, so scripts written
 * against numastat keep working on numatierctl stat.
 *
 * Known, deliberate differences from numastat 2.0.x:
 *  - "Token X not in hash table." lines (numastat's debug noise on stdout
 *    for meminfo keys it doesn't know) are never printed;
 *  - a hugetlb mapping's size comes from its kernelpagesize_kB, so 1 GiB
 *    pages count as 1 GiB (numastat uses the default huge page size for
 *    every hugetlb mapping). Identical whenever only the default size is used. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

struct json_object;

struct nt_numastat_table {
    char *title;            /* "Per-node system memory usage (in MBs):"; printed after a blank line */
    char *row_header;       /* top-left cell: "PID" in the several-process table, else NULL */
    bool fit_labels;        /* label column sized to fit (16..24 wide), as numastat -p does; else 16 */
    unsigned nr_cols;       /* node columns (Total is computed, not stored) */
    int *node_ids;
    unsigned nr_rows;
    char **row_names;
    double *mb;             /* nr_rows * nr_cols, row-major; NAN = no value (printed blank) */
    int total_row;          /* index of the row printed after a dashes separator, or -1;
                               its cells are filled in: the sum of the rows above */
    pid_t pid;              /* the one process a per-process table is about, else 0 */
    char *comm;             /* its name (status "Name:"), else NULL */
    pid_t *row_pids;        /* several-process table: the pid of each row (0 for Total), else NULL */
    int *row_errors;        /* several-process table: -EACCES for a row numastat would show as
                               zeros because the map was unreadable, else 0; NULL otherwise */
};

/* numastat -m, from nodeN/meminfo below root (and Hugepagesize from
 * /proc/meminfo). Rows are numastat's, in its order, for every key the
 * kernel prints. */
int nt_numastat_system(const char *root, struct nt_numastat_table **out);

/* numastat -p PID: Huge, Heap, Stack, Private and Total from
 * /proc/PID/numa_maps. -ESRCH if the process is gone, -EACCES if its
 * memory map is not ours to read. */
int nt_numastat_process(const char *root, pid_t pid, struct nt_numastat_table **out);

/* numastat -p with several processes (a name that matched more than one):
 * one table, a row of node totals per process, then Total. With n == 1 this
 * is nt_numastat_process(). Processes that exit meanwhile are left out
 * (-ESRCH only if all did); one whose map we may not read keeps a row of
 * zeros, as in numastat, flagged in row_errors (-EACCES if that is every
 * one); any other error fails the whole table. */
int nt_numastat_processes(const char *root, const pid_t *pids, size_t n, struct nt_numastat_table **out);

/* numastat's rule for -p NAME: every /proc/PID whose status Name, a space
 * and its cmdline (NULs as spaces) contain name as a substring, ascending,
 * without ourselves when root is the live /proc. *pids is malloc'd; n may be 0. */
int nt_pids_by_name(const char *root, const char *name, pid_t **pids, size_t *n);

/* Exact numastat layout, unfolded (as numastat prints to a pipe). */
void nt_numastat_print(FILE *f, const struct nt_numastat_table *t);
/* Folded to width columns like numastat on a terminal (NUMASTAT_WIDTH);
 * width 0 = never fold. */
void nt_numastat_print_width(FILE *f, const struct nt_numastat_table *t, unsigned width);

/* {"title":..,"nodes":[0,1],"rows":[{"name":"MemTotal","mb":[..],"total":..}],
 *  "total":{"name":"Total","mb":[..],"total":..} (process tables only),
 *  "pid":1234,"name":"bash" (one process) } ; rows of the several-process
 *  table also carry "pid", and "error" (strerror text) when unreadable.
 *  A missing value is null. */
struct json_object *nt_numastat_to_json(const struct nt_numastat_table *t);

void nt_numastat_free(struct nt_numastat_table *t);   /* NULL ok */
static inline void nt_numastat_freep(struct nt_numastat_table **t) { nt_numastat_free(*t); }

/* Building blocks shared by the system and process readers. */

/* A zeroed table with room for nr_rows x nr_cols cells and names. */
int nt_numastat_table_new(unsigned nr_rows, unsigned nr_cols, struct nt_numastat_table **out);
/* The node<N> directories below root, ascending: numastat's columns. */
int nt_numastat_node_ids(const char *root, int **ids, unsigned *n);
/* Hugepagesize from /proc/meminfo in bytes; 0 if the kernel has no hugetlb. */
int nt_numastat_huge_page_size(const char *root, uint64_t *bytes);

/* The numa_maps arithmetic alone, for tests and for callers that already
 * hold the text: adds each mapping's pages into mb[row * nr_nodes + col]
 * (rows NT_NUMASTAT_HUGE..PRIVATE, col = position of the node in node_ids;
 * pages on other nodes are ignored). Page sizes come from each line's
 * kernelpagesize_kB, else page_size / huge_page_size (bytes). */
enum { NT_NUMASTAT_HUGE, NT_NUMASTAT_HEAP, NT_NUMASTAT_STACK, NT_NUMASTAT_PRIVATE, NT_NUMASTAT_PROC_ROWS };
void nt_numa_maps_tally(const char *numa_maps, const int *node_ids, unsigned nr_nodes,
                        uint64_t page_size, uint64_t huge_page_size, double *mb);
