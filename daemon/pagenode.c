/* Where pages live: move_pages(2) in query mode (nodes == NULL) moves
 * nothing and fills status[] with each page's node or a negative errno. */
#include <errno.h>
#include <stdint.h>
#include <numaif.h>

#include "numatier/heat.h"

/* Pages per call: the kernel walks status in chunks of 16 anyway, and this
 * keeps the stack arrays small and the mmap lock hold short. */
#define QUERY_BATCH 1024

static int query_chunk(pid_t pid, size_t n, const uint64_t *vaddrs, int *nodes)
{
    void *pages[QUERY_BATCH];
    for (size_t i = 0; i < n; i++)
        pages[i] = (void *)(uintptr_t)vaddrs[i];
    if (move_pages(pid, (unsigned long)n, pages, NULL, nodes, 0) < 0)
        return -errno;
    return 0;
}

int nt_page_nodes_query(pid_t pid, size_t n, const uint64_t *vaddrs, int *nodes, void *userdata)
{
    (void)userdata;
    for (size_t done = 0; done < n;) {
        size_t chunk = n - done < QUERY_BATCH ? n - done : QUERY_BATCH;
        int r = query_chunk(pid, chunk, vaddrs + done, nodes + done);
        if (r < 0)
            return r;
        done += chunk;
    }
    return 0;
}
