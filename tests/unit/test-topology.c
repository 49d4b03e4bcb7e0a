/* Topology reading against the fake sysfs trees in tests/fixtures/
 * (made by tests/fixtures/mkfixtures.py). Run from the repository root, or
 * set NT_FIXTURES to the fixtures directory. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <setjmp.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "numatier/topology.h"
#include "numatier/util.h"

static const char *fixture(const char *name)
{
    static char path[PATH_MAX];
    const char *dir = getenv("NT_FIXTURES");
    snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/fixtures", name);
    return path;
}

static struct nt_topology *read_tree(const char *name, const struct nt_tier_config *cfg)
{
    struct nt_topology *t = NULL;
    int r = nt_topology_read(fixture(name), cfg, &t);
    assert_int_equal(r, 0);
    assert_non_null(t);
    return t;
}

static void assert_node(const struct nt_topology *t, int id, const char *cpus, unsigned nr_cpus,
                        uint64_t total_kb, uint64_t free_kb)
{
    const struct nt_node *n = nt_topology_node(t, id);
    assert_non_null(n);
    assert_int_equal(n->id, id);
    assert_string_equal(n->cpulist, cpus);
    assert_int_equal(n->nr_cpus, nr_cpus);
    assert_int_equal(n->mem_total_kb, total_kb);
    assert_int_equal(n->mem_free_kb, free_kb);
}

static void assert_tier(const struct nt_topology *t, int id, enum nt_tier tier, const char *reason)
{
    const struct nt_node *n = nt_topology_node(t, id);
    assert_non_null(n);
    assert_string_equal(nt_tier_to_string(n->tier), nt_tier_to_string(tier));
    assert_string_equal(n->tier_reason, reason);
}

static void assert_blocks(const struct nt_topology *t, int id, unsigned total, unsigned online)
{
    const struct nt_node *n = nt_topology_node(t, id);
    assert_non_null(n);
    assert_int_equal(n->nr_blocks, total);
    assert_int_equal(n->nr_blocks_online, online);
}

static const struct nt_mem_block *block(const struct nt_topology *t, unsigned id)
{
    for (size_t i = 0; i < t->nr_blocks; i++)
        if (t->blocks[i].id == id)
            return &t->blocks[i];
    fail_msg("no memory block %u", id);
    static const struct nt_mem_block none = { .node = -2 };
    return &none;                         /* not reached: fail_msg jumps out */
}

static void test_one_node(void **state)
{
    (void)state;
    _cleanup_(nt_topology_freep) struct nt_topology *t = read_tree("one-node", NULL);
    assert_int_equal(t->nr_nodes, 1);
    assert_node(t, 0, "0-3", 4, 951388, 612040);
    assert_int_equal(nt_topology_distance(t, 0, 0), 10);
    assert_int_equal(t->nodes[0].memory_tier, 4);
    assert_tier(t, 0, NT_TIER_FAST, "default");   /* one kernel tier: nothing to tell apart */
    assert_int_equal(t->block_size_bytes, 128u << 20);
    assert_int_equal(t->nr_blocks, 8);
    assert_blocks(t, 0, 8, 8);
    assert_string_equal(block(t, 0)->valid_zones, "none");
    assert_string_equal(block(t, 1)->valid_zones, "DMA32");
    assert_int_equal(block(t, 7)->removable, 1);
    assert_true(block(t, 7)->online);
}

static void test_two_socket(void **state)
{
    (void)state;
    _cleanup_(nt_topology_freep) struct nt_topology *t = read_tree("two-socket", NULL);
    assert_int_equal(t->nr_nodes, 2);
    assert_node(t, 0, "0-3,8-11", 8, 2013464, 1487220);
    assert_node(t, 1, "4-7,12-15", 8, 2064384, 1710032);
    assert_int_equal(nt_topology_distance(t, 0, 0), 10);
    assert_int_equal(nt_topology_distance(t, 0, 1), 21);
    assert_int_equal(nt_topology_distance(t, 1, 0), 21);
    assert_int_equal(nt_topology_distance(t, 1, 1), 10);
    assert_int_equal(nt_topology_distance(t, 0, 7), 0);
    assert_int_equal(t->nr_cpu_ids, 16);
    assert_int_equal(nt_topology_cpu_node(t, 0), 0);
    assert_int_equal(nt_topology_cpu_node(t, 3), 0);
    assert_int_equal(nt_topology_cpu_node(t, 4), 1);
    assert_int_equal(nt_topology_cpu_node(t, 11), 0);
    assert_int_equal(nt_topology_cpu_node(t, 12), 1);
    assert_int_equal(nt_topology_cpu_node(t, 15), 1);
    assert_int_equal(nt_topology_cpu_node(t, 16), -1);
    assert_int_equal(nt_topology_cpu_node(t, -1), -1);
    assert_null(nt_topology_node(t, 2));
    assert_null(nt_topology_node(t, -1));
    assert_tier(t, 0, NT_TIER_FAST, "default");
    assert_tier(t, 1, NT_TIER_FAST, "default");
    assert_int_equal(t->nr_blocks, 32);
    assert_blocks(t, 0, 16, 16);
    assert_blocks(t, 1, 16, 16);
    assert_int_equal(block(t, 32)->node, 1);
    assert_int_equal(block(t, 15)->node, 0);
    for (size_t i = 1; i < t->nr_blocks; i++)
        assert_true(t->blocks[i - 1].id < t->blocks[i].id);
}

static void test_cxl(void **state)
{
    (void)state;
    _cleanup_(nt_topology_freep) struct nt_topology *t = read_tree("cxl", NULL);
    assert_int_equal(t->nr_nodes, 4);
    assert_node(t, 2, "", 0, 2097152, 2080768);
    assert_node(t, 3, "", 0, 0, 0);           /* hot-plug target without memory: kept */
    static const unsigned dist[4][4] = {
        { 10, 21, 30, 40 }, { 21, 10, 40, 30 }, { 30, 40, 10, 50 }, { 40, 30, 50, 10 },
    };
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            assert_int_equal(nt_topology_distance(t, i, j), dist[i][j]);
    assert_int_equal(nt_topology_node(t, 0)->memory_tier, 4);
    assert_int_equal(nt_topology_node(t, 1)->memory_tier, 4);
    assert_int_equal(nt_topology_node(t, 2)->memory_tier, 22);
    assert_int_equal(nt_topology_node(t, 3)->memory_tier, -1);
    assert_tier(t, 0, NT_TIER_FAST, "memory_tiering");
    assert_tier(t, 1, NT_TIER_FAST, "memory_tiering");
    assert_tier(t, 2, NT_TIER_SLOW, "memory_tiering");
    assert_tier(t, 3, NT_TIER_SLOW, "cpuless");   /* in no kernel tier */
    assert_blocks(t, 2, 16, 16);
    assert_blocks(t, 3, 0, 0);
    assert_string_equal(block(t, 64)->valid_zones, "Movable");
}

static void test_cxl_config_overrides(void **state)
{
    (void)state;
    struct nt_tier_config cfg = { .cpuless_is_slow = false };
    nt_nodeset_set(&cfg.slow_nodes, 1);
    nt_nodeset_set(&cfg.fast_nodes, 2);
    nt_nodeset_set(&cfg.slow_nodes, 0);           /* in both sets: slow wins */
    nt_nodeset_set(&cfg.fast_nodes, 0);
    _cleanup_(nt_topology_freep) struct nt_topology *t = read_tree("cxl", &cfg);
    assert_tier(t, 0, NT_TIER_SLOW, "config");
    assert_tier(t, 1, NT_TIER_SLOW, "config");
    assert_tier(t, 2, NT_TIER_FAST, "config");
    assert_tier(t, 3, NT_TIER_FAST, "default");   /* cpuless_is_slow off */
}

static void test_offline_blocks(void **state)
{
    (void)state;
    /* No "online" file, no memory_tiering, no "removable", and nodes known
     * only from memoryM/nodeK entries. */
    _cleanup_(nt_topology_freep) struct nt_topology *t = read_tree("offline-blocks", NULL);
    assert_int_equal(t->nr_nodes, 2);
    assert_node(t, 0, "0-1", 2, 1950024, 1423876);
    assert_node(t, 1, "2-3", 2, 1310720, 1109116);
    assert_int_equal(nt_topology_distance(t, 0, 1), 20);
    assert_int_equal(t->nodes[0].memory_tier, -1);
    assert_tier(t, 0, NT_TIER_FAST, "default");
    assert_tier(t, 1, NT_TIER_FAST, "default");
    assert_int_equal(t->block_size_bytes, 256u << 20);
    assert_int_equal(t->nr_blocks, 16);
    assert_blocks(t, 0, 8, 8);
    assert_blocks(t, 1, 8, 5);
    const struct nt_mem_block *b = block(t, 18);
    assert_int_equal(b->node, 1);
    assert_false(b->online);
    assert_string_equal(b->state, "offline");
    assert_string_equal(b->valid_zones, "Normal Movable");
    assert_int_equal(b->removable, -1);
    assert_true(block(t, 21)->online);
    assert_string_equal(block(t, 0)->valid_zones, "none");
    assert_true(block(t, 0)->online);
}

static void test_missing_root(void **state)
{
    (void)state;
    struct nt_topology *t = (struct nt_topology *)0x1;
    assert_int_equal(nt_topology_read(fixture("no-such-tree"), NULL, &t), -ENOENT);
    assert_ptr_equal(t, (struct nt_topology *)0x1);   /* untouched on error */
    nt_topology_free(NULL);
    assert_null(nt_topology_node(NULL, 0));
    assert_int_equal(nt_topology_distance(NULL, 0, 0), 0);
}

static void test_cpulist_count(void **state)
{
    (void)state;
    assert_int_equal(nt_cpulist_count(""), 0);
    assert_int_equal(nt_cpulist_count("5"), 1);
    assert_int_equal(nt_cpulist_count("0-3,8-11"), 8);
    assert_int_equal(nt_cpulist_count("0-3\n"), 4);
    assert_int_equal(nt_cpulist_count("0,2,4-5"), 4);
    assert_int_equal(nt_cpulist_count("3-1"), -EINVAL);
    assert_int_equal(nt_cpulist_count("0,,1"), -EINVAL);
    assert_int_equal(nt_cpulist_count("0-"), -EINVAL);
    assert_int_equal(nt_cpulist_count("x"), -EINVAL);
    assert_int_equal(nt_cpulist_count("1 2"), -EINVAL);
}

/* ---- a tree made on the fly for tier edge cases ---- */

static void put(const char *root, const char *rel, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void rm_tree(const char *root)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

static char *make_tmp_root(char *buf, size_t len)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, len, "%s/nt-topology-XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(buf));
    return buf;
}

static void add_node(const char *root, int id, const char *cpus, const char *dist)
{
    char rel[128], mem[256];
    snprintf(rel, sizeof(rel), "sys/devices/system/node/node%d/cpulist", id);
    put(root, rel, cpus);
    snprintf(rel, sizeof(rel), "sys/devices/system/node/node%d/distance", id);
    put(root, rel, dist);
    snprintf(rel, sizeof(rel), "sys/devices/system/node/node%d/meminfo", id);
    snprintf(mem, sizeof(mem), "Node %d MemTotal:        1048576 kB\nNode %d MemFree:          524288 kB\n", id, id);
    put(root, rel, mem);
}

/* HBM (CPU-less, a faster kernel tier than DRAM) stays fast; a CPU-less
 * node in the DRAM tier is fast too; only tiers below the CPUs' are slow. */
static void test_tier_edges(void **state)
{
    (void)state;
    char root[PATH_MAX];
    make_tmp_root(root, sizeof(root));
    put(root, "sys/devices/system/node/online", "0-3\n");
    add_node(root, 0, "0-7\n", "10 12 12 20\n");
    add_node(root, 1, "\n", "12 10 12 20\n");
    add_node(root, 2, "\n", "12 12 10 20\n");
    add_node(root, 3, "\n", "20 20 20 10\n");
    put(root, "sys/devices/virtual/memory_tiering/memory_tier2/nodelist", "1\n");
    put(root, "sys/devices/virtual/memory_tiering/memory_tier4/nodelist", "0,2\n");
    put(root, "sys/devices/virtual/memory_tiering/memory_tier22/nodelist", "3\n");
    put(root, "sys/devices/virtual/memory_tiering/memory_tier30/nodelist", "\n");   /* empty tier */
    struct nt_topology *t = NULL;
    int r = nt_topology_read(root, NULL, &t);
    rm_tree(root);
    assert_int_equal(r, 0);
    assert_int_equal(t->nr_blocks, 0);               /* no memory dir: no blocks, no error */
    assert_int_equal(t->block_size_bytes, 0);
    assert_tier(t, 0, NT_TIER_FAST, "memory_tiering");
    assert_tier(t, 1, NT_TIER_FAST, "memory_tiering");
    assert_tier(t, 2, NT_TIER_FAST, "memory_tiering");
    assert_tier(t, 3, NT_TIER_SLOW, "memory_tiering");
    nt_topology_free(t);
}

static void test_malformed(void **state)
{
    (void)state;
    char root[PATH_MAX];
    make_tmp_root(root, sizeof(root));
    put(root, "sys/devices/system/node/online", "0\n");
    add_node(root, 0, "0-x\n", "10\n");
    struct nt_topology *t = NULL;
    assert_int_equal(nt_topology_read(root, NULL, &t), -EINVAL);
    add_node(root, 0, "0-1\n", "10\n");
    put(root, "sys/devices/system/memory/block_size_bytes", "zz\n");
    assert_int_equal(nt_topology_read(root, NULL, &t), -EINVAL);
    put(root, "sys/devices/system/memory/block_size_bytes", "8000000\n");
    put(root, "sys/devices/system/node/node0/meminfo", "Node 0 MemFree: 1 kB\n");
    assert_int_equal(nt_topology_read(root, NULL, &t), -EINVAL);
    rm_tree(root);
    assert_null(t);
}

static struct json_object *get(struct json_object *o, const char *key)
{
    struct json_object *v = NULL;
    assert_true(json_object_object_get_ex(o, key, &v));
    return v;
}

static void test_to_json(void **state)
{
    (void)state;
    _cleanup_(nt_topology_freep) struct nt_topology *t = read_tree("cxl", NULL);
    struct json_object *j = nt_topology_to_json(t);
    struct json_object *nodes = get(j, "nodes");
    assert_int_equal(json_object_array_length(nodes), 4);
    struct json_object *n2 = json_object_array_get_idx(nodes, 2);
    assert_int_equal(json_object_get_int(get(n2, "id")), 2);
    assert_string_equal(json_object_get_string(get(n2, "tier")), "slow");
    assert_string_equal(json_object_get_string(get(n2, "tier_reason")), "memory_tiering");
    assert_int_equal(json_object_get_int(get(n2, "memory_tier")), 22);
    assert_string_equal(json_object_get_string(get(n2, "cpus")), "");
    assert_int_equal(json_object_get_int(get(n2, "nr_cpus")), 0);
    assert_true(json_object_get_boolean(get(n2, "cpuless")));
    assert_int_equal(json_object_get_int64(get(n2, "mem_total_kb")), 2097152);
    assert_int_equal(json_object_get_int64(get(n2, "mem_free_kb")), 2080768);
    struct json_object *d = get(n2, "distances");
    assert_int_equal(json_object_array_length(d), 4);
    assert_int_equal(json_object_get_int(json_object_array_get_idx(d, 3)), 50);
    assert_int_equal(json_object_get_int(get(n2, "blocks_total")), 16);
    assert_int_equal(json_object_get_int(get(n2, "blocks_online")), 16);
    assert_int_equal(json_object_get_int(get(json_object_array_get_idx(nodes, 3), "memory_tier")), -1);
    assert_int_equal(json_object_get_int64(get(j, "block_size_bytes")), 134217728);
    struct json_object *blocks = get(j, "blocks");
    assert_int_equal(json_object_array_length(blocks), 48);
    struct json_object *b0 = json_object_array_get_idx(blocks, 0);
    assert_int_equal(json_object_get_int(get(b0, "id")), 0);
    assert_int_equal(json_object_get_int(get(b0, "node")), 0);
    assert_string_equal(json_object_get_string(get(b0, "state")), "online");
    assert_string_equal(json_object_get_string(get(b0, "valid_zones")), "none");
    assert_true(json_object_get_boolean(get(b0, "removable")));
    json_object_put(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_node),
        cmocka_unit_test(test_two_socket),
        cmocka_unit_test(test_cxl),
        cmocka_unit_test(test_cxl_config_overrides),
        cmocka_unit_test(test_offline_blocks),
        cmocka_unit_test(test_missing_root),
        cmocka_unit_test(test_cpulist_count),
        cmocka_unit_test(test_tier_edges),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_to_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
