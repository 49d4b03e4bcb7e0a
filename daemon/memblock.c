/* Memory block devices (/sys/devices/system/memory/memoryN): the unit the
 * kernel onlines and offlines, and the unit hot-remove works in. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "numatier/topology.h"
#include "numatier/util.h"

#define MEMORY_DIR "/sys/devices/system/memory"
#define NODE_DIR   "/sys/devices/system/node"

/* block_size_bytes is hex without a 0x prefix: "8000000" is 128 MiB. */
static int read_block_size(const char *root, uint64_t *out)
{
    _cleanup_free_ char *s = NULL;
    int r = nt_read_file(root, MEMORY_DIR "/block_size_bytes", &s);
    if (r < 0)
        return r;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 16);
    if (errno || end == s || *end || v == 0)
        return -EINVAL;
    *out = v;
    return 0;
}

static int cmp_block(const void *a, const void *b)
{
    unsigned x = ((const struct nt_mem_block *)a)->id, y = ((const struct nt_mem_block *)b)->id;
    return (x > y) - (x < y);
}

static int list_block_ids(const char *root, struct nt_mem_block **out, size_t *n)
{
    _cleanup_closedir_ DIR *d = nt_opendir_below(root, MEMORY_DIR);
    if (!d)
        return -errno;
    _cleanup_free_ struct nt_mem_block *v = NULL;
    size_t len = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned id;
        if (!nt_name_with_id(de->d_name, "memory", &id))
            continue;
        if (len == cap) {
            cap = cap ? cap * 2 : 256;
            struct nt_mem_block *nv = realloc(v, cap * sizeof(*v));
            if (!nv)
                return -ENOMEM;
            v = nv;
        }
        v[len++] = (struct nt_mem_block){ .id = id, .node = -1, .removable = -1 };
    }
    if (len)
        qsort(v, len, sizeof(*v), cmp_block);
    *n = len;
    *out = NT_TAKE_PTR(v);
    return 0;
}

/* Read one attribute into a fixed buffer. Attributes a kernel may lack
 * (valid_zones, removable) are optional: -ENOENT leaves buf empty. */
static int read_attr(const char *root, unsigned id, const char *attr, char *buf, size_t len)
{
    char path[96];
    snprintf(path, sizeof(path), MEMORY_DIR "/memory%u/%s", id, attr);
    _cleanup_free_ char *s = NULL;
    int r = nt_read_file(root, path, &s);
    if (r < 0)
        return r;
    snprintf(buf, len, "%s", s);
    return 0;
}

/* Returns -ENOENT if the block vanished (hot-remove) while we read it. */
static int read_block(const char *root, struct nt_mem_block *b)
{
    int r = read_attr(root, b->id, "state", b->state, sizeof(b->state));
    if (r < 0)
        return r;
    b->online = strcmp(b->state, "online") == 0;
    r = read_attr(root, b->id, "valid_zones", b->valid_zones, sizeof(b->valid_zones));
    if (r < 0 && r != -ENOENT)
        return r;
    char rem[8] = "";
    r = read_attr(root, b->id, "removable", rem, sizeof(rem));
    if (r < 0 && r != -ENOENT)
        return r;
    if (r == 0)
        b->removable = rem[0] == '1';
    return 0;
}

static struct nt_mem_block *find_block(struct nt_mem_block *v, size_t n, unsigned id)
{
    struct nt_mem_block key = { .id = id };
    return bsearch(&key, v, n, sizeof(*v), cmp_block);
}

/* Each nodeK directory links the blocks it owns as memoryM; one directory
 * scan per node is far cheaper than one per block on a large machine. */
static int blocks_from_node_dir(const char *root, unsigned node, struct nt_mem_block *v, size_t n)
{
    char path[64];
    snprintf(path, sizeof(path), NODE_DIR "/node%u", node);
    _cleanup_closedir_ DIR *d = nt_opendir_below(root, path);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned id;
        struct nt_mem_block *b;
        if (nt_name_with_id(de->d_name, "memory", &id) && (b = find_block(v, n, id)))
            b->node = (int)node;
    }
    return 0;
}

static int assign_nodes_from_node_dirs(const char *root, struct nt_mem_block *v, size_t n)
{
    _cleanup_closedir_ DIR *d = nt_opendir_below(root, NODE_DIR);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned node;
        if (!nt_name_with_id(de->d_name, "node", &node))
            continue;
        int r = blocks_from_node_dir(root, node, v, n);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Fallback for a block no node claimed: its own memoryM/nodeK link. */
static int assign_node_from_block_dir(const char *root, struct nt_mem_block *b)
{
    char path[96];
    snprintf(path, sizeof(path), MEMORY_DIR "/memory%u", b->id);
    _cleanup_closedir_ DIR *d = nt_opendir_below(root, path);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned node;
        if (nt_name_with_id(de->d_name, "node", &node)) {
            b->node = (int)node;
            break;
        }
    }
    return 0;
}

/* Drop blocks that vanished between listing and reading them. */
static int read_all_blocks(const char *root, struct nt_mem_block *v, size_t *n)
{
    size_t kept = 0;
    for (size_t i = 0; i < *n; i++) {
        int r = read_block(root, &v[i]);
        if (r == -ENOENT)
            continue;
        if (r < 0)
            return r;
        v[kept++] = v[i];
    }
    *n = kept;
    return 0;
}

int nt_memblocks_read(const char *root, struct nt_mem_block **blocks, size_t *n, uint64_t *block_size)
{
    uint64_t size;
    int r = read_block_size(root, &size);
    if (r == -ENOENT) {            /* no CONFIG_MEMORY_HOTPLUG: no blocks to manage */
        *blocks = NULL;
        *n = 0;
        *block_size = 0;
        return 0;
    }
    if (r < 0)
        return r;
    _cleanup_free_ struct nt_mem_block *v = NULL;
    size_t len = 0;
    if ((r = list_block_ids(root, &v, &len)) < 0 ||
        (r = read_all_blocks(root, v, &len)) < 0 ||
        (r = assign_nodes_from_node_dirs(root, v, len)) < 0)
        return r;
    for (size_t i = 0; i < len; i++)
        if (v[i].node < 0 && (r = assign_node_from_block_dir(root, &v[i])) < 0)
            return r;
    *blocks = NT_TAKE_PTR(v);
    *n = len;
    *block_size = size;
    return 0;
}
