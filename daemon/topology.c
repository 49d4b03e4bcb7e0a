/* Topology snapshot: nodes, CPUs, distances, per-node memory and tiers,
 * read from sysfs below a root so tests can point it at fixture trees.
 * Memory blocks live in memblock.c.
 *
 * libnuma only tells a kernel without NUMA apart from a broken root: its
 * parsers and bitmasks read the live /sys and are sized for the running
 * machine, so they cannot describe a fixture tree. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <numa.h>
#include <json-c/json.h>

#include "numatier/topology.h"
#include "numatier/util.h"

#define NODE_DIR  "/sys/devices/system/node"
#define TIER_DIR  "/sys/devices/virtual/memory_tiering"

const char *nt_tier_to_string(enum nt_tier t)
{
    return t == NT_TIER_SLOW ? "slow" : "fast";
}

/* Walk a kernel list like "0-3,8-11" range by range. The kernel prints
 * an empty line for an empty set, so "" is valid and calls fn never. */
static int list_for_each_range(const char *s, int (*fn)(unsigned lo, unsigned hi, void *ud), void *ud)
{
    while (*s && *s != '\n') {
        char *end;
        if (!isdigit((unsigned char)*s))
            return -EINVAL;
        unsigned long lo = strtoul(s, &end, 10), hi = lo;
        if (*end == '-') {
            if (!isdigit((unsigned char)end[1]))
                return -EINVAL;
            hi = strtoul(end + 1, &end, 10);
        }
        if (hi < lo || hi > INT32_MAX)
            return -EINVAL;
        int r = fn((unsigned)lo, (unsigned)hi, ud);
        if (r < 0)
            return r;
        if (*end == ',')
            end++;
        else if (*end && *end != '\n')
            return -EINVAL;
        s = end;
    }
    return 0;
}

static int count_range(unsigned lo, unsigned hi, void *ud)
{
    *(unsigned *)ud += hi - lo + 1;
    return 0;
}

int nt_cpulist_count(const char *list)
{
    unsigned n = 0;
    int r = list_for_each_range(list, count_range, &n);
    return r < 0 ? r : (int)n;
}

static int set_range(unsigned lo, unsigned hi, void *ud)
{
    if (hi >= NT_MAX_NODES)
        return -ERANGE;
    for (unsigned i = lo; i <= hi; i++)
        nt_nodeset_set(ud, (int)i);
    return 0;
}

static int parse_nodelist(const char *s, struct nt_nodeset *set)
{
    *set = (struct nt_nodeset){ 0 };
    return list_for_each_range(s, set_range, set);
}

/* Without an "online" file (very old kernels, hand-made trees) the node
 * directories are the list. */
static int scan_node_dirs(const char *root, struct nt_nodeset *set)
{
    _cleanup_free_ char *path = nt_path_join(root, NODE_DIR);
    if (!path)
        return -ENOMEM;
    _cleanup_closedir_ DIR *d = opendir(path);
    if (!d)
        return -errno;
    *set = (struct nt_nodeset){ 0 };
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned id;
        if (nt_name_with_id(de->d_name, "node", &id) && id < NT_MAX_NODES)
            nt_nodeset_set(set, (int)id);
    }
    return 0;
}

static int read_online_nodes(const char *root, struct nt_nodeset *set)
{
    _cleanup_free_ char *s = NULL;
    int r = nt_read_file(root, NODE_DIR "/online", &s);
    if (r == -ENOENT)
        return scan_node_dirs(root, set);
    if (r < 0)
        return r;
    return parse_nodelist(s, set);
}

static int read_cpus(const char *root, struct nt_node *n)
{
    char path[96];
    snprintf(path, sizeof(path), NODE_DIR "/node%d/cpulist", n->id);
    int r = nt_read_file(root, path, &n->cpulist);
    if (r < 0)
        return r;
    r = nt_cpulist_count(n->cpulist);
    if (r < 0)
        return r;
    n->nr_cpus = (unsigned)r;
    return 0;
}

/* "Node 0 MemTotal:        4286240 kB": we need two lines; a node
 * without memory still prints them, as 0. */
static int read_node_meminfo(const char *root, struct nt_node *n)
{
    char path[96];
    snprintf(path, sizeof(path), NODE_DIR "/node%d/meminfo", n->id);
    _cleanup_free_ char *s = NULL;
    int r = nt_read_file(root, path, &s);
    if (r < 0)
        return r;
    bool have_total = false, have_free = false;
    char *save = NULL;
    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char key[32];
        uint64_t v;
        if (sscanf(line, "Node %*d %31[^:]: %" SCNu64, key, &v) != 2)
            continue;
        if (strcmp(key, "MemTotal") == 0)
            n->mem_total_kb = v, have_total = true;
        else if (strcmp(key, "MemFree") == 0)
            n->mem_free_kb = v, have_free = true;
    }
    return have_total && have_free ? 0 : -EINVAL;
}

/* One row of the matrix. The kernel prints a value per online node, in
 * node order, which is the order of nodes[]; missing values stay 0. */
static int read_distance_row(const char *root, const struct nt_topology *t, unsigned i)
{
    char path[96];
    snprintf(path, sizeof(path), NODE_DIR "/node%d/distance", t->nodes[i].id);
    _cleanup_free_ char *s = NULL;
    int r = nt_read_file(root, path, &s);
    if (r < 0)
        return r;
    const char *p = s;
    for (unsigned j = 0; j < t->nr_nodes; j++) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p || v > UINT32_MAX)
            return -EINVAL;
        t->distance[i * t->nr_nodes + j] = (unsigned)v;
        p = end;
    }
    return 0;
}

static int read_nodes(const char *root, struct nt_topology *t)
{
    struct nt_nodeset online;
    int r = read_online_nodes(root, &online);
    if (r < 0)
        return r;
    for (int id = 0; id < NT_MAX_NODES; id++)
        t->nr_nodes += nt_nodeset_test(&online, id);
    if (t->nr_nodes == 0)
        return -ENOENT;
    t->nodes = calloc(t->nr_nodes, sizeof(*t->nodes));
    t->distance = calloc((size_t)t->nr_nodes * t->nr_nodes, sizeof(*t->distance));
    if (!t->nodes || !t->distance)
        return -ENOMEM;
    unsigned i = 0;
    for (int id = 0; id < NT_MAX_NODES; id++)
        if (nt_nodeset_test(&online, id))
            t->nodes[i++] = (struct nt_node){ .id = id, .memory_tier = -1 };
    for (i = 0; i < t->nr_nodes; i++) {
        if ((r = read_cpus(root, &t->nodes[i])) < 0 ||
            (r = read_node_meminfo(root, &t->nodes[i])) < 0 ||
            (r = read_distance_row(root, t, i)) < 0)
            return r;
    }
    return 0;
}

static struct nt_node *node_by_id(struct nt_topology *t, int id)
{
    return (struct nt_node *)nt_topology_node(t, id);
}

/* memory_tierN/nodelist; returns how many tiers hold at least one node. */
static int read_memory_tiers(const char *root, struct nt_topology *t)
{
    _cleanup_free_ char *dir = nt_path_join(root, TIER_DIR);
    if (!dir)
        return -ENOMEM;
    _cleanup_closedir_ DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;   /* kernels before 6.1, or no tiering */
    int tiers = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned tier;
        if (!nt_name_with_id(de->d_name, "memory_tier", &tier))
            continue;
        char path[96];
        snprintf(path, sizeof(path), TIER_DIR "/memory_tier%u/nodelist", tier);
        _cleanup_free_ char *s = NULL;
        struct nt_nodeset set;
        int r = nt_read_file(root, path, &s);
        if (r == -ENOENT)
            continue;                           /* tier went away while we looked */
        if (r < 0 || (r = parse_nodelist(s, &set)) < 0)
            return r;
        if (nt_nodeset_empty(&set))
            continue;
        tiers++;
        for (unsigned i = 0; i < t->nr_nodes; i++)
            if (nt_nodeset_test(&set, t->nodes[i].id))
                t->nodes[i].memory_tier = (int)tier;
    }
    return tiers;
}

/* The kernel's tier of the fastest CPU node: the tier "local" memory is in.
 * -1 if no CPU node is in any tier. */
static int cpu_tier(const struct nt_topology *t)
{
    int best = -1;
    for (unsigned i = 0; i < t->nr_nodes; i++) {
        const struct nt_node *n = &t->nodes[i];
        if (n->nr_cpus > 0 && n->memory_tier >= 0 && (best < 0 || n->memory_tier < best))
            best = n->memory_tier;
    }
    return best;
}

static void set_tier(struct nt_node *n, enum nt_tier tier, const char *reason)
{
    n->tier = tier;
    n->tier_reason = reason;
}

/* Config first (the admin knows best), then the kernel's own tiering, then
 * the CPU-less heuristic. Nodes the kernel left out of every tier (no
 * memory) fall through to the heuristic. */
static void classify_tiers(struct nt_topology *t, const struct nt_tier_config *cfg, int nr_tiers)
{
    int fast_tier = nr_tiers > 1 ? cpu_tier(t) : -1;
    for (unsigned i = 0; i < t->nr_nodes; i++) {
        struct nt_node *n = &t->nodes[i];
        if (nt_nodeset_test(&cfg->slow_nodes, n->id))
            set_tier(n, NT_TIER_SLOW, "config");
        else if (nt_nodeset_test(&cfg->fast_nodes, n->id))
            set_tier(n, NT_TIER_FAST, "config");
        else if (fast_tier >= 0 && n->memory_tier >= 0)
            set_tier(n, n->memory_tier <= fast_tier ? NT_TIER_FAST : NT_TIER_SLOW, "memory_tiering");
        else if (n->nr_cpus == 0 && cfg->cpuless_is_slow)
            set_tier(n, NT_TIER_SLOW, "cpuless");
        else
            set_tier(n, NT_TIER_FAST, "default");
    }
}

static int read_blocks(const char *root, struct nt_topology *t)
{
    int r = nt_memblocks_read(root, &t->blocks, &t->nr_blocks, &t->block_size_bytes);
    if (r < 0)
        return r;
    for (size_t b = 0; b < t->nr_blocks; b++) {
        struct nt_node *n = node_by_id(t, t->blocks[b].node);
        if (!n)
            continue;
        n->nr_blocks++;
        n->nr_blocks_online += t->blocks[b].online;
    }
    return 0;
}

struct cpu_map_fill {
    struct nt_topology *t;
    int node;
};

static int note_range_max(unsigned lo, unsigned hi, void *ud)
{
    (void)lo;
    unsigned *max = ud;
    if (hi + 1 > *max)
        *max = hi + 1;
    return 0;
}

static int fill_cpu_range(unsigned lo, unsigned hi, void *ud)
{
    struct cpu_map_fill *f = ud;
    for (unsigned c = lo; c <= hi && c < f->t->nr_cpu_ids; c++)
        f->t->cpu_node[c] = f->node;
    return 0;
}

/* CPU -> node, so a sample's or a thread's CPU names its node in O(1). */
static int build_cpu_map(struct nt_topology *t)
{
    unsigned max = 0;
    for (unsigned i = 0; i < t->nr_nodes; i++)
        if (list_for_each_range(t->nodes[i].cpulist, note_range_max, &max) < 0)
            return -EINVAL;
    t->cpu_node = malloc((max ? max : 1) * sizeof(int));
    if (!t->cpu_node)
        return -ENOMEM;
    t->nr_cpu_ids = max;
    for (unsigned c = 0; c < max; c++)
        t->cpu_node[c] = -1;
    for (unsigned i = 0; i < t->nr_nodes; i++) {
        struct cpu_map_fill f = { t, t->nodes[i].id };
        list_for_each_range(t->nodes[i].cpulist, fill_cpu_range, &f);
    }
    return 0;
}

int nt_topology_cpu_node(const struct nt_topology *t, int cpu)
{
    return cpu >= 0 && (unsigned)cpu < t->nr_cpu_ids ? t->cpu_node[cpu] : -1;
}

static bool is_live_root(const char *root)
{
    return !root || !*root || strcmp(root, "/") == 0;
}

int nt_topology_read(const char *root, const struct nt_tier_config *tiers, struct nt_topology **out)
{
    static const struct nt_tier_config no_overrides = { .cpuless_is_slow = true };
    _cleanup_(nt_topology_freep) struct nt_topology *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    int r = read_nodes(root, t);
    if (r == -ENOENT && is_live_root(root) && numa_available() < 0)
        return -EOPNOTSUPP;                 /* CONFIG_NUMA=n: no node directory at all */
    if (r < 0)
        return r;
    int nr_tiers = read_memory_tiers(root, t);
    if (nr_tiers < 0)
        return nr_tiers;
    if ((r = read_blocks(root, t)) < 0)
        return r;
    classify_tiers(t, tiers ? tiers : &no_overrides, nr_tiers);
    if ((r = build_cpu_map(t)) < 0)
        return r;
    *out = NT_TAKE_PTR(t);
    return 0;
}

void nt_topology_free(struct nt_topology *t)
{
    if (!t)
        return;
    for (unsigned i = 0; t->nodes && i < t->nr_nodes; i++)
        free(t->nodes[i].cpulist);
    free(t->nodes);
    free(t->distance);
    free(t->blocks);
    free(t->cpu_node);
    free(t);
}

static int node_index(const struct nt_topology *t, int id)
{
    unsigned lo = 0, hi = t->nr_nodes;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (t->nodes[mid].id == id)
            return (int)mid;
        if (t->nodes[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

const struct nt_node *nt_topology_node(const struct nt_topology *t, int id)
{
    int i = t ? node_index(t, id) : -1;
    return i < 0 ? NULL : &t->nodes[i];
}

unsigned nt_topology_distance(const struct nt_topology *t, int from, int to)
{
    int i = t ? node_index(t, from) : -1, j = t ? node_index(t, to) : -1;
    if (i < 0 || j < 0)
        return 0;
    return t->distance[(unsigned)i * t->nr_nodes + (unsigned)j];
}

static struct json_object *node_to_json(const struct nt_topology *t, unsigned i)
{
    const struct nt_node *n = &t->nodes[i];
    struct json_object *o = json_object_new_object();
    struct json_object *dist = json_object_new_array();
    for (unsigned j = 0; j < t->nr_nodes; j++)
        json_object_array_add(dist, json_object_new_int64(t->distance[i * t->nr_nodes + j]));
    json_object_object_add(o, "id", json_object_new_int(n->id));
    json_object_object_add(o, "tier", json_object_new_string(nt_tier_to_string(n->tier)));
    json_object_object_add(o, "tier_reason", json_object_new_string(n->tier_reason));
    json_object_object_add(o, "memory_tier", json_object_new_int(n->memory_tier));
    json_object_object_add(o, "cpus", json_object_new_string(n->cpulist ? n->cpulist : ""));
    json_object_object_add(o, "nr_cpus", json_object_new_int64(n->nr_cpus));
    json_object_object_add(o, "cpuless", json_object_new_boolean(n->nr_cpus == 0));
    json_object_object_add(o, "mem_total_kb", json_object_new_int64((int64_t)n->mem_total_kb));
    json_object_object_add(o, "mem_free_kb", json_object_new_int64((int64_t)n->mem_free_kb));
    json_object_object_add(o, "distances", dist);
    json_object_object_add(o, "blocks_total", json_object_new_int64(n->nr_blocks));
    json_object_object_add(o, "blocks_online", json_object_new_int64(n->nr_blocks_online));
    return o;
}

static struct json_object *block_to_json(const struct nt_mem_block *b)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_int64(b->id));
    json_object_object_add(o, "node", json_object_new_int(b->node));
    json_object_object_add(o, "state", json_object_new_string(b->state));
    json_object_object_add(o, "valid_zones", json_object_new_string(b->valid_zones));
    json_object_object_add(o, "removable", b->removable < 0 ? NULL : json_object_new_boolean(b->removable));
    return o;
}

struct json_object *nt_topology_to_json(const struct nt_topology *t)
{
    struct json_object *o = json_object_new_object();
    struct json_object *nodes = json_object_new_array();
    struct json_object *blocks = json_object_new_array();
    for (unsigned i = 0; i < t->nr_nodes; i++)
        json_object_array_add(nodes, node_to_json(t, i));
    for (size_t b = 0; b < t->nr_blocks; b++)
        json_object_array_add(blocks, block_to_json(&t->blocks[b]));
    json_object_object_add(o, "nodes", nodes);
    json_object_object_add(o, "block_size_bytes", json_object_new_int64((int64_t)t->block_size_bytes));
    json_object_object_add(o, "blocks", blocks);
    return o;
}
