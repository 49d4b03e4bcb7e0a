/* The cost model's arithmetic (include/numatier/cost.h): pure. */
#include <math.h>

#include "numatier/cost.h"

int nt_cost_node_index(const struct nt_cost_model *m, int node)
{
    for (unsigned i = 0; i < m->nr_nodes; i++)
        if (m->node_ids[i] == node)
            return (int)i;
    return -1;
}

/* One base page from -> to: the measured pair if there is one. */
static double mem_usec_per_page(const struct nt_cost_model *m, int from, int to)
{
    int i = nt_cost_node_index(m, from);
    int j = nt_cost_node_index(m, to);
    if (i < 0 || j < 0 || !m->c_mem_usec)
        return m->c_mem_default_usec;
    double c = m->c_mem_usec[(unsigned)i * m->nr_nodes + (unsigned)j];
    return c >= 0 ? c : m->c_mem_default_usec;
}

double nt_cost_mem(const struct nt_cost_model *m, int from, int to, uint64_t pages)
{
    if (from == to || pages == 0)
        return 0;
    return (double)pages * mem_usec_per_page(m, from, to);
}

double nt_cost_thread(const struct nt_cost_model *m, unsigned threads, double idle_cpus,
                      double horizon_sec)
{
    double per_thread = m->c_thread_refill_usec + m->c_thread_sched_usec;
    /* A fraction of an idle CPU is no room for a whole thread. */
    double room = idle_cpus > 0 ? floor(idle_cpus) : 0;
    double queued = threads > room ? threads - room : 0;
    double horizon = horizon_sec > 0 ? horizon_sec : 0;
    return threads * per_thread + queued * m->queue_usec_per_sec * horizon;
}

const char *nt_cost_origin_to_string(enum nt_cost_origin o)
{
    switch (o) {
    case NT_COST_DEFAULT:  return "default";
    case NT_COST_MEASURED: return "measured";
    case NT_COST_CONFIG:   return "config";
    }
    return "unknown";
}
