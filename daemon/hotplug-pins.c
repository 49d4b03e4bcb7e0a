/* Which CPU affinities are a drain's, not the user's. A drain narrows the
 * affinity of every thread that could run on the drained node's CPUs; to
 * placement such a mask looks like an explicit pin, and the process would
 * be held in place until `online node N`. Asking here lets placement treat
 * it as free (a node under maintenance still receives nothing). */
#include <stdlib.h>

#include "hotplug-internal.h"

/* The pin is pid's (this instance) and still in force: its mask is what
 * the drain set, not something the user set since. */
static bool pin_matches(const struct nt_job_pin *pin, pid_t pid, uint64_t start_time, const cpu_set_t *mask)
{
    cpu_set_t set;
    if (pin->restored || pin->pid != pid || (pin->start_time && start_time && pin->start_time != start_time))
        return false;
    return nt_cpuset_parse(pin->cpus_set, &set) > 0 && CPU_EQUAL(&set, mask);
}

static bool running_drain_pin(const struct nt_hotplug *h, pid_t pid, uint64_t start_time, const cpu_set_t *mask,
                              struct nt_hotplug_pin *out)
{
    const struct nt_job *j = h->job;
    if (!j || j->op != NT_OFFLINE_OP_DRAIN)
        return false;
    for (size_t i = 0; i < j->nr_pins; i++)
        if (pin_matches(&j->pins[i], pid, start_time, mask)) {
            *out = (struct nt_hotplug_pin){ .job = j->id, .node = j->target_node };
            return true;
        }
    return false;
}

static bool finished_drain_pin(const struct nt_hotplug *h, pid_t pid, uint64_t start_time, const cpu_set_t *mask,
                               struct nt_hotplug_pin *out)
{
    bool found = false;
    for (size_t d = 0; h->ledger && d < h->nr_drained && !found; d++) {
        struct nt_job_pin_ref *refs = NULL;
        size_t n = 0;
        if (nt_ledger_pins_open(h->ledger, h->drained[d].node, &refs, &n) < 0)
            continue;
        for (size_t i = 0; i < n && !found; i++)
            if (pin_matches(&refs[i].pin, pid, start_time, mask)) {
                *out = (struct nt_hotplug_pin){ .job = refs[i].job_id, .node = h->drained[d].node };
                found = true;
            }
        free(refs);
    }
    return found;
}

bool nt_hotplug_drain_pin(const struct nt_hotplug *h, pid_t pid, uint64_t start_time, const cpu_set_t *mask,
                          struct nt_hotplug_pin *out)
{
    if (!h)
        return false;
    return running_drain_pin(h, pid, start_time, mask, out) || finished_drain_pin(h, pid, start_time, mask, out);
}
