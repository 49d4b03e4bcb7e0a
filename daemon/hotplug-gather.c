/* The offline planner's input, read from the system below a root: memory
 * blocks, nodes with their free memory and watermarks, an estimate of the
 * memory in use per block, and the processes bound to nodes by cpuset or
 * by a bind memory policy. Everything here only reads. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <fcntl.h>

#include "numatier/hotplug.h"
#include "numatier/select.h"
#include "numatier/topology.h"
#include "numatier/units.h"
#include "numatier/util.h"

/* ---- blocks and nodes ------------------------------------------------------ */

static bool is_target_block(const struct nt_offline_request *req, unsigned id)
{
    for (size_t i = 0; i < req->nr_block_ids; i++)
        if (req->block_ids[i] == id)
            return true;
    return false;
}

/* Nodes whose every online block is a target: their used memory must go
 * elsewhere as a whole. */
static void whole_nodes(const struct nt_topology *t, const struct nt_offline_request *req, struct nt_nodeset *whole)
{
    *whole = (struct nt_nodeset){ { 0 } };
    if (req->target_node >= 0) {
        nt_nodeset_set(whole, req->target_node);
        return;
    }
    struct nt_nodeset partly = { { 0 } }, some = { { 0 } };
    for (size_t i = 0; i < t->nr_blocks; i++) {
        const struct nt_mem_block *b = &t->blocks[i];
        if (!b->online || b->node < 0)
            continue;
        if (is_target_block(req, b->id))
            nt_nodeset_set(&some, b->node);
        else
            nt_nodeset_set(&partly, b->node);
    }
    for (int n = 0; n < NT_MAX_NODES; n++)
        if (nt_nodeset_test(&some, n) && !nt_nodeset_test(&partly, n))
            nt_nodeset_set(whole, n);
}

static uint64_t node_used_bytes(const struct nt_node *n)
{
    uint64_t total = n->mem_total_kb * 1024, free_b = n->mem_free_kb * 1024;
    return total > free_b ? total - free_b : 0;
}

/* Without walking a block's page frames the kernel cannot say how much of
 * it is in use; this estimate errs on the side of refusing. */
static uint64_t block_used(const struct nt_topology *t, const struct nt_mem_block *b, const struct nt_nodeset *whole)
{
    const struct nt_node *n = b->node >= 0 ? nt_topology_node(t, b->node) : NULL;
    if (!b->online || !n)
        return 0;
    uint64_t used = node_used_bytes(n);
    if (nt_nodeset_test(whole, b->node))
        return n->nr_blocks_online ? used / n->nr_blocks_online : used;
    return used < t->block_size_bytes ? used : t->block_size_bytes;
}

#define KPF_LRU 5
#define KPAGEFLAGS_CHUNK 4096

/* The block's pages on an LRU list (process and page-cache memory: what
 * evacuation and the kernel's offline migrate), counted in /proc/kpageflags
 * (root only). Negative errno when it cannot be read. Reads 8 bytes per
 * page: 256 KiB for a 128 MiB block, done for partly targeted nodes only. */
static int64_t block_lru_bytes(const char *root, unsigned block, uint64_t block_size)
{
    _cleanup_free_ char *path = nt_path_join(root, "/proc/kpageflags");
    _cleanup_close_ int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return path ? -errno : -ENOMEM;
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), first = block * block_size / page, n = block_size / page;
    uint64_t flags[KPAGEFLAGS_CHUNK], lru = 0;
    for (uint64_t done = 0; done < n;) {
        size_t want = n - done < KPAGEFLAGS_CHUNK ? (size_t)(n - done) : KPAGEFLAGS_CHUNK;
        ssize_t got = pread(fd, flags, want * sizeof(*flags), (off_t)((first + done) * sizeof(*flags)));
        if (got < 0)
            return -errno;
        if (got == 0)
            break;                      /* past the end: no such frames */
        for (size_t i = 0; i < (size_t)got / sizeof(*flags); i++)
            lru += flags[i] >> KPF_LRU & 1;
        done += (uint64_t)got / sizeof(*flags);
    }
    return (int64_t)(lru * page);
}

/* ---- /proc/iomem: blocks with holes ------------------------------------------ */

/* The kernel offlines a block only if System RAM covers all of it
 * (offline_pages: "memory holes", EINVAL). Firmware reservations inside
 * boot memory, such as QEMU's at the top of low memory, make such holes. */

struct iomem_range {
    uint64_t start, end;            /* end inclusive, as /proc/iomem prints it */
    char name[40];
};

struct iomem {
    struct iomem_range *ram;        /* System RAM at any depth, by start */
    size_t nr_ram;
    struct iomem_range *other;      /* the rest, in file order: parents first */
    size_t nr_other;
};

static void iomem_free(struct iomem *m)
{
    free(m->ram);
    free(m->other);
    *m = (struct iomem){ 0 };
}

static int cmp_range_start(const void *a, const void *b)
{
    const struct iomem_range *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

static int iomem_push(struct iomem_range **v, size_t *n, const struct iomem_range *r)
{
    struct iomem_range *nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (!nv)
        return -ENOMEM;
    nv[(*n)++] = *r;
    *v = nv;
    return 0;
}

/* Every "start-end : name" line, at any depth: System RAM may be nested (a
 * dax device's "System RAM (kmem)"), and what is nested inside System RAM
 * (Kernel code, ...) is RAM all the same. Unreadable, or all zeros (what
 * a reader without CAP_SYS_ADMIN sees): empty, so no block is judged. */
static int iomem_read(const char *root, struct iomem *m)
{
    _cleanup_free_ char *text = NULL;
    bool real = false;
    *m = (struct iomem){ 0 };
    if (nt_read_file(root, "/proc/iomem", &text) < 0)
        return 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        struct iomem_range r;
        int name_at = 0;
        if (sscanf(line, " %" SCNx64 "-%" SCNx64 " : %n", &r.start, &r.end, &name_at) != 2 || !name_at ||
            r.end < r.start)
            continue;
        snprintf(r.name, sizeof(r.name), "%s", line + name_at);
        bool ram = strncmp(line + name_at, "System RAM", 10) == 0;
        real |= ram && r.end > 0;
        int err = ram ? iomem_push(&m->ram, &m->nr_ram, &r) : iomem_push(&m->other, &m->nr_other, &r);
        if (err < 0) {
            iomem_free(m);
            return err;
        }
    }
    if (!real)
        iomem_free(m);
    if (m->nr_ram)
        qsort(m->ram, m->nr_ram, sizeof(*m->ram), cmp_range_start);
    return 0;
}

/* The first stretch [*from, *to) of [start, end) that no System RAM
 * covers; false if there is none. */
static bool first_hole(const struct iomem *m, uint64_t start, uint64_t end, uint64_t *from, uint64_t *to)
{
    uint64_t pos = start;
    for (size_t i = 0; i < m->nr_ram && pos < end; i++) {
        const struct iomem_range *r = &m->ram[i];
        if (r->end < pos)
            continue;
        if (r->start > pos) {
            *from = pos;
            *to = r->start < end ? r->start : end;
            return true;
        }
        pos = r->end == UINT64_MAX ? end : r->end + 1;
    }
    *from = pos;
    *to = end;
    return pos < end;
}

/* "is not entirely System RAM (reserved 0x5ffe0000-0x5fffffff inside): ..." */
static char *hole_reason(const struct iomem *m, uint64_t from, uint64_t to)
{
    const struct iomem_range *what = NULL;
    for (size_t i = 0; i < m->nr_other && !what; i++)
        if (m->other[i].start <= from && from <= m->other[i].end)
            what = &m->other[i];
    char kind[48], *reason = NULL;
    if (!what)
        snprintf(kind, sizeof(kind), "no RAM at");
    else if (strcasecmp(what->name, "Reserved") == 0)
        snprintf(kind, sizeof(kind), "reserved");
    else
        snprintf(kind, sizeof(kind), "\"%s\"", what->name);
    if (asprintf(&reason, "is not entirely System RAM (%s 0x%" PRIx64 "-0x%" PRIx64 " inside): "
                 "the kernel cannot offline it", kind, from, to - 1) < 0)
        return NULL;
    return reason;
}

/* An offline's online blocks that /proc/iomem shows with a hole get an
 * unofflinable_reason, so the plan refuses them instead of the kernel. */
static int mark_holes(const char *root, struct nt_hotplug_input *out, const struct nt_offline_request *req)
{
    const struct nt_topology *t = out->topo;
    if (req->op != NT_OFFLINE_OP_OFFLINE || !t->block_size_bytes)
        return 0;
    struct iomem m;
    int r = iomem_read(root, &m);
    if (r < 0 || !m.nr_ram)
        return r;
    for (size_t i = 0; i < t->nr_blocks && r == 0; i++) {
        uint64_t start = (uint64_t)t->blocks[i].id * t->block_size_bytes, from, to;
        if (!t->blocks[i].online || !first_hole(&m, start, start + t->block_size_bytes, &from, &to))
            continue;
        out->unofflinable[i] = hole_reason(&m, from, to);
        if (!out->unofflinable[i])
            r = -ENOMEM;
        out->blocks[i].unofflinable_reason = out->unofflinable[i];
    }
    iomem_free(&m);
    return r;
}

static int make_blocks(const char *root, struct nt_hotplug_input *out, const struct nt_offline_request *req)
{
    const struct nt_topology *t = out->topo;
    struct nt_nodeset whole;
    whole_nodes(t, req, &whole);
    out->blocks = calloc(t->nr_blocks ? t->nr_blocks : 1, sizeof(*out->blocks));
    out->unofflinable = calloc(t->nr_blocks ? t->nr_blocks : 1, sizeof(*out->unofflinable));
    if (!out->blocks || !out->unofflinable)
        return -ENOMEM;
    for (size_t i = 0; i < t->nr_blocks; i++) {
        const struct nt_mem_block *b = &t->blocks[i];
        out->blocks[i] = (struct nt_offline_block){
            .id = b->id, .node = b->node, .online = b->online, .state = b->state,
            .valid_zones = b->valid_zones, .used_bytes = block_used(t, b, &whole),
        };
        bool target = req->target_node >= 0 ? b->node == req->target_node : is_target_block(req, b->id);
        if (!b->online || !target || nt_nodeset_test(&whole, b->node))
            continue;
        int64_t counted = block_lru_bytes(root, b->id, t->block_size_bytes);
        if (counted >= 0)
            out->blocks[i].used_bytes = (uint64_t)counted;
        else
            out->used_estimated_partial = true;
    }
    return 0;
}

/* Sum of the "low" watermarks (pages) of each node's zones. */
static void zoneinfo_low(const char *root, uint64_t *low_pages, const struct nt_topology *t)
{
    _cleanup_free_ char *text = NULL;
    if (nt_read_file(root, "/proc/zoneinfo", &text) < 0)
        return;
    int node = -1;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        int n;
        char key[32];
        unsigned long long v;
        if (sscanf(line, "Node %d, zone", &n) == 1) {
            node = n;
            continue;
        }
        if (node < 0 || sscanf(line, " %31s %llu", key, &v) != 2 || strcmp(key, "low") != 0)
            continue;
        for (unsigned i = 0; i < t->nr_nodes; i++)
            if (t->nodes[i].id == node)
                low_pages[i] += v;
    }
}

static int make_nodes(const char *root, const struct nt_hotplug_params *p, struct nt_hotplug_input *out)
{
    const struct nt_topology *t = out->topo;
    _cleanup_free_ uint64_t *low = calloc(t->nr_nodes ? t->nr_nodes : 1, sizeof(*low));
    out->nodes = calloc(t->nr_nodes ? t->nr_nodes : 1, sizeof(*out->nodes));
    if (!low || !out->nodes)
        return -ENOMEM;
    zoneinfo_low(root, low, t);
    long page = sysconf(_SC_PAGESIZE);
    for (unsigned i = 0; i < t->nr_nodes; i++) {
        const struct nt_node *n = &t->nodes[i];
        uint64_t total = n->mem_total_kb * 1024;
        uint64_t by_config = (uint64_t)((double)total * p->free_watermark_pct / 100.0);
        uint64_t by_kernel = low[i] * (uint64_t)(page > 0 ? page : 4096);
        out->nodes[i] = (struct nt_offline_node){
            .id = n->id, .nr_cpus = n->nr_cpus, .online = total > 0, .slow = n->tier == NT_TIER_SLOW,
            .free_bytes = n->mem_free_kb * 1024, .total_bytes = total,
            .low_watermark_bytes = by_kernel > by_config ? by_kernel : by_config,
        };
    }
    return 0;
}

/* ---- bound processes --------------------------------------------------------- */

/* "Key:\tvalue" lines of /proc/PID/status. */
static void status_field(const char *status, const char *key, char *buf, size_t len)
{
    size_t klen = strlen(key);
    buf[0] = '\0';
    for (const char *line = status; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t n = eol ? (size_t)(eol - line) : strlen(line);
        if (n > klen && strncmp(line, key, klen) == 0 && line[klen] == ':') {
            const char *v = line + klen + 1;
            v += strspn(v, " \t");
            snprintf(buf, len, "%.*s", (int)(n - (size_t)(v - line)), v);
            return;
        }
        line = eol ? eol + 1 : NULL;
    }
}

/* Kernel threads have no user memory and are never ours to move. */
static bool kernel_thread(const char *root, pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    _cleanup_free_ char *s = NULL;
    if (nt_read_file(root, path, &s) < 0)
        return true;                /* gone: nothing to do either */
    const char *p = strrchr(s, ')');
    if (!p)
        return true;
    unsigned field = 2, flags = 0;
    long ppid = -1;
    for (char *save = NULL, *tok = strtok_r((char *)p + 1, " ", &save); tok && field < 9;
         tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 4)
            ppid = strtol(tok, NULL, 10);
        if (field == 9)
            flags = (unsigned)strtoul(tok, NULL, 10);
    }
    return (flags & NT_PF_KTHREAD) || ppid == NT_KTHREADD_PID || pid == NT_KTHREADD_PID;
}

/* The node sets of a process's "bind" VMAs in numa_maps ("bind:0-1",
 * "bind=static:2"); prefer and interleave leave memory a way out. */
static size_t bind_sets(const char *maps, struct nt_nodeset *sets, size_t max)
{
    size_t n = 0;
    for (const char *line = maps; line && *line;) {
        const char *eol = strchr(line, '\n');
        const char *sp = strchr(line, ' ');
        if (sp && (!eol || sp < eol) && strncmp(sp + 1, "bind", 4) == 0) {
            const char *colon = strchr(sp + 1, ':');
            char list[256];
            size_t len = colon ? strcspn(colon + 1, " \n") : 0;
            struct nt_nodeset set;
            snprintf(list, sizeof(list), "%.*s", (int)len, colon ? colon + 1 : "");
            if (colon && (!eol || colon < eol) && nt_parse_nodelist(list, &set) == 0) {
                bool seen = false;
                for (size_t i = 0; i < n && !seen; i++)
                    seen = memcmp(&sets[i], &set, sizeof(set)) == 0;
                if (!seen && n < max)
                    sets[n++] = set;
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    return n;
}

static bool subset(const struct nt_nodeset *a, const struct nt_nodeset *b)
{
    for (unsigned i = 0; i < NT_MAX_NODES / 64; i++)
        if (a->bits[i] & ~b->bits[i])
            return false;
    return true;
}

static void intersect(struct nt_nodeset *a, const struct nt_nodeset *b)
{
    for (unsigned i = 0; i < NT_MAX_NODES / 64; i++)
        a->bits[i] &= b->bits[i];
}

static void cgroup_of(const char *root, pid_t pid, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    _cleanup_free_ char *s = NULL;
    buf[0] = '\0';
    if (nt_read_file(root, path, &s) < 0)
        return;
    for (const char *line = s; line && *line;) {
        const char *eol = strchr(line, '\n');
        if (strncmp(line, "0::", 3) == 0) {
            snprintf(buf, len, "%.*s", (int)(eol ? eol - line - 3 : (long)strlen(line + 3)), line + 3);
            return;
        }
        line = eol ? eol + 1 : NULL;
    }
}

struct gather_ctx {
    const char *root;
    struct nt_nodeset mem_nodes;    /* nodes with memory */
    struct nt_nodeset emptied;      /* nodes the request empties */
};

/* The binding that matters for this request: one inside the emptied nodes
 * first (that is what the planner refuses), cpuset before mempolicy. */
static bool pick_binding(const struct gather_ctx *g, const struct nt_nodeset *cpuset, bool cpuset_narrow,
                         const struct nt_nodeset *binds, size_t nb, struct nt_hotplug_proc *out)
{
    if (cpuset_narrow && subset(cpuset, &g->emptied)) {
        out->mems = *cpuset;
        out->cpuset = true;
        return true;
    }
    for (size_t i = 0; i < nb; i++)
        if (subset(&binds[i], &g->emptied)) {
            out->mems = binds[i];
            return true;
        }
    if (cpuset_narrow) {
        out->mems = *cpuset;
        out->cpuset = true;
        return true;
    }
    if (nb) {
        out->mems = binds[0];
        return true;
    }
    return false;
}

/* One process: bound or not (*found). Vanished processes are not errors. */
static int read_binding(const struct gather_ctx *g, pid_t pid, struct nt_hotplug_proc *out, bool *found)
{
    char path[64], mems[256], name[64];
    *found = false;
    if (kernel_thread(g->root, pid))
        return 0;
    _cleanup_free_ char *status = NULL, *maps = NULL;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (nt_read_file(g->root, path, &status) < 0)
        return 0;
    status_field(status, "Mems_allowed_list", mems, sizeof(mems));
    status_field(status, "Name", name, sizeof(name));
    struct nt_nodeset cpuset = { { 0 } }, binds[8];
    bool narrow = false;
    if (*mems && nt_parse_nodelist(mems, &cpuset) == 0) {
        intersect(&cpuset, &g->mem_nodes);
        narrow = !subset(&g->mem_nodes, &cpuset);
    }
    snprintf(path, sizeof(path), "/proc/%d/numa_maps", (int)pid);
    size_t nb = nt_read_file(g->root, path, &maps) == 0 ? bind_sets(maps, binds, NT_ARRAY_SIZE(binds)) : 0;
    *out = (struct nt_hotplug_proc){ .pid = pid };
    if (!pick_binding(g, &cpuset, narrow, binds, nb, out))
        return 0;
    snprintf(out->comm, sizeof(out->comm), "%.15s", name);
    cgroup_of(g->root, pid, out->cgroup, sizeof(out->cgroup));
    *found = true;
    return 0;
}

static int push_proc(struct nt_hotplug_input *out, size_t *cap, const struct nt_hotplug_proc *p)
{
    if (out->nr_procs == *cap) {
        size_t ncap = *cap ? 2 * *cap : 16;
        struct nt_hotplug_proc *nv = realloc(out->procs, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        out->procs = nv;
        *cap = ncap;
    }
    out->procs[out->nr_procs++] = *p;
    return 0;
}

static int make_procs(const char *root, struct nt_hotplug_input *out, const struct gather_ctx *g)
{
    _cleanup_closedir_ DIR *d = nt_opendir_below(root, "/proc");
    if (!d)
        return errno == ENOENT ? 0 : -errno;    /* a fixture without /proc: no processes */
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned pid;
        struct nt_hotplug_proc p;
        bool found;
        if (!nt_name_with_id(de->d_name, "", &pid) || pid == 0 || pid > INT32_MAX)
            continue;
        int r = read_binding(g, (pid_t)pid, &p, &found);
        if (r == 0 && found)
            r = push_proc(out, &cap, &p);
        if (r < 0)
            return r;
    }
    out->plan_procs = calloc(out->nr_procs ? out->nr_procs : 1, sizeof(*out->plan_procs));
    if (!out->plan_procs)
        return -ENOMEM;
    for (size_t i = 0; i < out->nr_procs; i++)
        out->plan_procs[i] = (struct nt_offline_proc){
            .pid = out->procs[i].pid, .comm = out->procs[i].comm, .mems = out->procs[i].mems, .bound = true,
        };
    return 0;
}

static void gather_ctx_init(struct gather_ctx *g, const char *root, const struct nt_hotplug_input *in,
                            const struct nt_offline_request *req)
{
    *g = (struct gather_ctx){ .root = root };
    const struct nt_topology *t = in->topo;
    for (unsigned i = 0; i < t->nr_nodes; i++)
        if (t->nodes[i].mem_total_kb > 0)
            nt_nodeset_set(&g->mem_nodes, t->nodes[i].id);
    if (req->op != NT_OFFLINE_OP_ONLINE)
        whole_nodes(t, req, &g->emptied);
}

int nt_hotplug_gather(const char *root, const struct nt_hotplug_params *p, const struct nt_offline_request *req,
                      struct nt_hotplug_input *out)
{
    *out = (struct nt_hotplug_input){ 0 };
    int r = nt_topology_read(root, &p->tiers, &out->topo);
    if (r < 0)
        return r;
    struct gather_ctx g;
    gather_ctx_init(&g, root, out, req);
    if ((r = make_blocks(root, out, req)) < 0 || (r = mark_holes(root, out, req)) < 0 ||
        (r = make_nodes(root, p, out)) < 0 ||
        (req->op != NT_OFFLINE_OP_ONLINE && (r = make_procs(root, out, &g)) < 0)) {
        nt_hotplug_input_done(out);
        return r;
    }
    out->in = (struct nt_offline_input){
        .blocks = out->blocks, .nr_blocks = out->topo->nr_blocks, .block_size = out->topo->block_size_bytes,
        .nodes = out->nodes, .nr_nodes = out->topo->nr_nodes, .distance = out->topo->distance,
        .procs = out->plan_procs, .nr_procs = out->nr_procs,
    };
    return 0;
}

void nt_hotplug_input_done(struct nt_hotplug_input *in)
{
    for (size_t i = 0; in->unofflinable && in->topo && i < in->topo->nr_blocks; i++)
        free(in->unofflinable[i]);
    free(in->unofflinable);
    nt_topology_free(in->topo);
    free(in->blocks);
    free(in->nodes);
    free(in->procs);
    free(in->plan_procs);
    *in = (struct nt_hotplug_input){ 0 };
}
