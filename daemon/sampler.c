/* Choosing and holding the sampling backend. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "numatier/config.h"
#include "numatier/log.h"
#include "numatier/sampler.h"
#include "numatier/util.h"

struct nt_sampler {
    const struct nt_sampler_ops *ops;
    void *state;
    char perf_unavailable[256];
};

static int try_backend(const struct nt_sampler_ops *ops, const struct nt_sampler_env *env,
                       struct nt_sampler *s, char *why, size_t len)
{
    int r = ops->probe(env, why, len);
    if (r < 0)
        return r;
    r = ops->open(env, &s->state, why, len);
    if (r < 0)
        return r;
    s->ops = ops;
    return 0;
}

int nt_sampler_open(const struct nt_sampler_env *env, int backend, struct nt_sampler **out,
                    char *why, size_t len)
{
    struct nt_sampler *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    char perf_why[256] = "", damon_why[256] = "";
    int r = -ENODEV;

    if (backend != NT_SAMPLER_DAMON) {
        r = try_backend(&nt_sampler_perf_ops, env, s, perf_why, sizeof(perf_why));
        if (r < 0) {
            snprintf(s->perf_unavailable, sizeof(s->perf_unavailable), "%s", perf_why);
            if (backend == NT_SAMPLER_PERF) {
                snprintf(why, len, "perf: %s", perf_why);
                free(s);
                return r;
            }
            log_notice("perf: %s; falling back to damon", perf_why);
        }
    }
    if (r < 0) {
        r = try_backend(&nt_sampler_damon_ops, env, s, damon_why, sizeof(damon_why));
        if (r < 0) {
            if (backend == NT_SAMPLER_DAMON)
                snprintf(why, len, "damon: %s", damon_why);
            else
                snprintf(why, len, "perf: %s; damon: %s", perf_why, damon_why);
            free(s);
            return backend == NT_SAMPLER_AUTO ? -ENODEV : r;
        }
    }
    *out = s;
    return 0;
}

void nt_sampler_free(struct nt_sampler *s)
{
    if (!s)
        return;
    if (s->ops)
        s->ops->close(s->state);
    free(s);
}

const char *nt_sampler_name(const struct nt_sampler *s) { return s->ops->name; }
const char *nt_sampler_perf_unavailable(const struct nt_sampler *s) { return s->perf_unavailable; }
int nt_sampler_watch(struct nt_sampler *s, pid_t pid) { return s->ops->watch(s->state, pid); }
int nt_sampler_unwatch(struct nt_sampler *s, pid_t pid) { return s->ops->unwatch(s->state, pid); }

int nt_sampler_drain(struct nt_sampler *s, uint64_t now_usec, uint64_t own_cpu_usec,
                     nt_access_fn fn, void *userdata)
{
    return s->ops->drain(s->state, now_usec, own_cpu_usec, fn, userdata);
}

void nt_sampler_get_stats(struct nt_sampler *s, struct nt_sampler_stats *out)
{
    memset(out, 0, sizeof(*out));
    s->ops->stats(s->state, out);
}
