/* The manager: event loop wiring, the periodic cycle, config reload and
 * the control-socket commands. The work itself lives in the helpers. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <json-c/json.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "numatier/config.h"
#include "numatier/ctl.h"
#include "numatier/hotplug.h"
#include "numatier/log.h"
#include "numatier/manager.h"
#include "numatier/topology.h"
#include "numatier/units.h"
#include "numatier/util.h"
#include "numatier/placer.h"
#include "numatier/rasd.h"
#include "numatier/watch.h"

struct nt_manager {
    sd_event *event;
    struct nt_config config;
    char *config_path;
    bool config_required;
    char *dropin_dir;
    char *root;

    struct nt_ctl_server *ctl;
    struct nt_ctl_server *retired_ctl;  /* freed from a defer source, never from its own callback */
    sd_event_source *retire_defer;
    sd_event_source *cycle_timer;
    sd_event_source *sample_timer;
    struct nt_watch *watch;
    struct nt_placer *placer;
    struct nt_rasd *rasd;
    struct nt_hotplug *hotplug;

    struct nt_topology *topology;
    int last_topology_error;
    uint64_t start_usec;
    uint64_t cycles;
    uint64_t job_bytes_seen;        /* nt_hotplug_bytes_moved at the last cycle */
    unsigned reloads_ok, reloads_failed;
    char *last_reload_error;
};

static int cmd_status(void *userdata, struct json_object *args, const struct ucred *peer,
                      struct nt_ctl_reply *reply);
static int cmd_config(void *userdata, struct json_object *args, const struct ucred *peer,
                      struct nt_ctl_reply *reply);
static int cmd_ping(void *userdata, struct json_object *args, const struct ucred *peer,
                    struct nt_ctl_reply *reply);
static int cmd_reload(void *userdata, struct json_object *args, const struct ucred *peer,
                      struct nt_ctl_reply *reply);
static int cmd_top(void *userdata, struct json_object *args, const struct ucred *peer,
                   struct nt_ctl_reply *reply);
static int cmd_mode(void *userdata, struct json_object *args, const struct ucred *peer,
                    struct nt_ctl_reply *reply);
static int cmd_explain(void *userdata, struct json_object *args, const struct ucred *peer,
                       struct nt_ctl_reply *reply);
static int cmd_plan(void *userdata, struct json_object *args, const struct ucred *peer,
                    struct nt_ctl_reply *reply);
static int cmd_restore(void *userdata, struct json_object *args, const struct ucred *peer,
                       struct nt_ctl_reply *reply);
static int cmd_ras(void *userdata, struct json_object *args, const struct ucred *peer,
                   struct nt_ctl_reply *reply);
static int cmd_offline(void *userdata, struct json_object *args, const struct ucred *peer,
                       struct nt_ctl_reply *reply);
static int cmd_online(void *userdata, struct json_object *args, const struct ucred *peer,
                      struct nt_ctl_reply *reply);
static int cmd_drain(void *userdata, struct json_object *args, const struct ucred *peer,
                     struct nt_ctl_reply *reply);
static int cmd_jobs(void *userdata, struct json_object *args, const struct ucred *peer,
                    struct nt_ctl_reply *reply);

static const struct nt_ctl_command ctl_commands[] = {
    { "status", false, cmd_status },
    { "config", false, cmd_config },
    { "ping",   false, cmd_ping },
    { "top",    false, cmd_top },
    { "reload", true,  cmd_reload },
    { "mode",   true,  cmd_mode },
    { "explain", false, cmd_explain },
    { "plan",   false, cmd_plan },
    { "restore", true, cmd_restore },
    { "ras",    false, cmd_ras },
    { "offline", true, cmd_offline },
    { "online", true,  cmd_online },
    { "drain",  true,  cmd_drain },
    { "jobs",   false, cmd_jobs },
};

static struct nt_ctl_limits limits_from_config(const struct nt_config *c)
{
    return (struct nt_ctl_limits){
        .max_clients = c->max_clients,
        .request_timeout_usec = c->request_timeout_usec,
        .max_request_bytes = c->max_request_bytes,
    };
}

static void notify_status(struct nt_manager *m)
{
    char interval[32];
    nt_format_duration(m->config.cycle_interval_usec, interval, sizeof(interval));
    unsigned slow = 0;
    for (unsigned i = 0; m->topology && i < m->topology->nr_nodes; i++)
        slow += m->topology->nodes[i].tier == NT_TIER_SLOW;
    sd_notifyf(0, "STATUS=%s mode, %u nodes (%u slow), cycle %s, %" PRIu64 " cycles",
               nt_mode_to_string(m->config.mode), m->topology ? m->topology->nr_nodes : 0,
               slow, interval, m->cycles);
}

/* Re-read the topology; keep the last good one if the read fails. */
static void refresh_topology(struct nt_manager *m)
{
    struct nt_topology *t = NULL;
    int r = nt_topology_read(m->root, &m->config.tiers, &t);
    if (r < 0) {
        if (r != m->last_topology_error)
            log_warning("topology: cannot read below %s: %s; keeping the last snapshot",
                        m->root, strerror(-r));
        m->last_topology_error = r;
        return;
    }
    if (m->last_topology_error)
        log_notice("topology: readable again");
    m->last_topology_error = 0;
    if (m->topology && (m->topology->nr_nodes != t->nr_nodes || m->topology->nr_blocks != t->nr_blocks))
        log_notice("topology: now %u nodes, %zu memory blocks (was %u, %zu)",
                   t->nr_nodes, t->nr_blocks, m->topology->nr_nodes, m->topology->nr_blocks);
    nt_topology_free(m->topology);
    m->topology = t;
}

/* An offline or drain job moved pages behind placement's back: where the
 * watch thinks each page is may be wrong, so it looks again. */
static void note_job_moves(struct nt_manager *m)
{
    uint64_t moved = nt_hotplug_bytes_moved(m->hotplug);
    if (moved == m->job_bytes_seen)
        return;
    m->job_bytes_seen = moved;
    nt_watch_all_pages_moved(m->watch);
}

static int on_cycle(sd_event_source *s, uint64_t usec, void *userdata)
{
    (void)usec;
    struct nt_manager *m = userdata;
    m->cycles++;
    refresh_topology(m);
    if (m->topology) {
        note_job_moves(m);      /* first: this cycle's lookups then find where pages went */
        int r = nt_watch_cycle(m->watch, &m->config, m->topology, nt_now_usec());
        if (r < 0)
            log_warning("cycle: watching processes failed: %s", strerror(-r));
        struct nt_nodeset maintenance;
        nt_hotplug_maintenance_nodes(m->hotplug, &maintenance);
        r = nt_placer_cycle(m->placer, m->watch, &m->config, m->topology, &maintenance, nt_now_usec());
        if (r < 0)
            log_warning("cycle: placement failed: %s", strerror(-r));
    }
    if (m->rasd)
        nt_rasd_cycle(m->rasd, m->topology, nt_now_usec());
    notify_status(m);
    sd_event_source_set_time_relative(s, m->config.cycle_interval_usec);
    return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int on_sample(sd_event_source *s, uint64_t usec, void *userdata)
{
    (void)usec;
    struct nt_manager *m = userdata;
    if (m->topology) {
        int r = nt_watch_drain(m->watch, m->topology, nt_now_usec());
        if (r < 0)
            log_debug("sampler: drain failed: %s", strerror(-r));
    }
    sd_event_source_set_time_relative(s, m->config.sample_interval_usec);
    return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int on_retire(sd_event_source *s, void *userdata)
{
    struct nt_manager *m = userdata;
    nt_ctl_server_free(m->retired_ctl);
    m->retired_ctl = NULL;
    return sd_event_source_set_enabled(s, SD_EVENT_OFF);
}

/* Move the control socket to a new path; the old server is retired later
 * because this may run inside one of its own client callbacks. */
static int move_socket(struct nt_manager *m, const struct nt_config *next)
{
    struct nt_ctl_limits limits = limits_from_config(next);
    if (strcmp(nt_ctl_server_path(m->ctl), next->socket_path) == 0) {
        nt_ctl_server_set_limits(m->ctl, &limits);
        return 0;
    }
    if (m->retired_ctl)
        return -EBUSY;
    struct nt_ctl_server *fresh;
    int r = nt_ctl_server_new(m->event, next->socket_path, &limits, ctl_commands,
                              NT_ARRAY_SIZE(ctl_commands), m, &fresh);
    if (r < 0)
        return r;
    m->retired_ctl = m->ctl;
    m->ctl = fresh;
    return sd_event_source_set_enabled(m->retire_defer, SD_EVENT_ONESHOT);
}

static void record_reload_failure(struct nt_manager *m, const char *msg)
{
    m->reloads_failed++;
    free(m->last_reload_error);
    m->last_reload_error = strdup(msg);
    log_error("reload: %s; keeping the previous configuration", msg);
}

/* A new backend needs a new pipeline; anything else is a reconfigure. */
static int apply_watch_config(struct nt_manager *m, const struct nt_config *next, char *why, size_t len)
{
    if (next->sampler_backend == m->config.sampler_backend)
        return nt_watch_reconfigure(m->watch, next, m->topology);
    struct nt_watch *fresh = NULL;
    static const char prefix[] = "sampler: ";
    if (len <= sizeof(prefix))
        return -EINVAL;
    memcpy(why, prefix, sizeof(prefix));
    int r = nt_watch_new(m->root, next, m->topology, &fresh, why + strlen(prefix), len - strlen(prefix));
    if (r < 0)
        return r;
    nt_watch_free(m->watch);
    m->watch = fresh;
    return 0;
}

/* Load the whole new configuration, or keep the old one untouched. */
static int manager_reload(struct nt_manager *m, char **error_out)
{
    sd_notify(0, "RELOADING=1");
    struct nt_config next;
    struct nt_config_error err = { { 0 } };
    int r = nt_config_load(&next, m->config_path, m->config_required, m->dropin_dir, &err);
    if (r < 0) {
        record_reload_failure(m, err.message);
    } else if ((r = apply_watch_config(m, &next, err.message, sizeof(err.message))) < 0) {
        record_reload_failure(m, err.message);
        nt_config_done(&next);
    } else if ((r = move_socket(m, &next)) < 0) {
        snprintf(err.message, sizeof(err.message), "cannot listen on %s: %s",
                 next.socket_path, strerror(-r));
        record_reload_failure(m, err.message);
        nt_config_done(&next);
    } else {
        nt_config_done(&m->config);
        m->config = next;
        nt_log_set_max_level(m->config.log_level);
        nt_placer_reconfigure(m->placer, &m->config);
        nt_rasd_reconfigure(m->rasd, &m->config);
        struct nt_hotplug_params hp;
        nt_hotplug_params_from_config(&hp, &m->config);
        nt_hotplug_reconfigure(m->hotplug, &hp);
        m->reloads_ok++;
        free(m->last_reload_error);
        m->last_reload_error = NULL;
        sd_event_source_set_time_relative(m->cycle_timer, m->config.cycle_interval_usec);
        sd_event_source_set_time_relative(m->sample_timer, m->config.sample_interval_usec);
        log_info("reload: configuration applied");
    }
    if (r < 0 && error_out)
        *error_out = strdup(err.message);
    sd_notify(0, "READY=1");
    notify_status(m);
    return r;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
    (void)s;
    struct nt_manager *m = userdata;
    if (si->ssi_signo == SIGHUP) {
        manager_reload(m, NULL);
        return 0;
    }
    log_info("received %s, exiting", strsignal((int)si->ssi_signo));
    sd_notify(0, "STOPPING=1");
    return sd_event_exit(m->event, 0);
}

static struct json_object *reload_stats_json(const struct nt_manager *m)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_int(m->reloads_ok));
    json_object_object_add(o, "failed", json_object_new_int(m->reloads_failed));
    json_object_object_add(o, "last_error",
                           m->last_reload_error ? json_object_new_string(m->last_reload_error) : NULL);
    return o;
}

/* One dump feeds both the table and --json in numatierctl. */
static int cmd_status(void *userdata, struct json_object *args, const struct ucred *peer,
                      struct nt_ctl_reply *reply)
{
    (void)args;
    (void)peer;
    struct nt_manager *m = userdata;
    char interval[32];
    nt_format_duration(m->config.cycle_interval_usec, interval, sizeof(interval));

    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "version", json_object_new_string(NT_VERSION));
    json_object_object_add(o, "pid", json_object_new_int(getpid()));
    json_object_object_add(o, "uptime_usec", json_object_new_uint64(nt_now_usec() - m->start_usec));
    json_object_object_add(o, "mode", json_object_new_string(nt_mode_to_string(m->config.mode)));
    json_object_object_add(o, "cycle_interval", json_object_new_string(interval));
    json_object_object_add(o, "cycle_interval_usec", json_object_new_uint64(m->config.cycle_interval_usec));
    json_object_object_add(o, "cycles", json_object_new_uint64(m->cycles));
    json_object_object_add(o, "root", json_object_new_string(m->root));
    json_object_object_add(o, "clients", json_object_new_int((int)nt_ctl_server_nr_clients(m->ctl)));
    json_object_object_add(o, "reloads", reload_stats_json(m));
    json_object_object_add(o, "topology", m->topology ? nt_topology_to_json(m->topology) : NULL);
    json_object_object_add(o, "watch", nt_watch_status_json(m->watch));
    json_object_object_add(o, "placement", nt_placer_status_json(m->placer));
    json_object_object_add(o, "ras", nt_rasd_status_json(m->rasd));
    json_object_object_add(o, "offline", nt_hotplug_status_json(m->hotplug));
    reply->result = o;
    return 0;
}

static int cmd_config(void *userdata, struct json_object *args, const struct ucred *peer,
                      struct nt_ctl_reply *reply)
{
    (void)args;
    (void)peer;
    struct nt_manager *m = userdata;
    reply->result = nt_config_to_json(&m->config);
    return 0;
}

static int cmd_ping(void *userdata, struct json_object *args, const struct ucred *peer,
                    struct nt_ctl_reply *reply)
{
    (void)userdata;
    (void)args;
    (void)peer;
    reply->result = json_object_new_object();
    json_object_object_add(reply->result, "pong", json_object_new_boolean(1));
    return 0;
}

static int cmd_reload(void *userdata, struct json_object *args, const struct ucred *peer,
                      struct nt_ctl_reply *reply)
{
    (void)args;
    struct nt_manager *m = userdata;
    log_info("reload requested over the control socket by pid %d", (int)peer->pid);
    _cleanup_free_ char *error = NULL;
    int r = manager_reload(m, &error);
    if (r < 0)
        return nt_ctl_reply_error(reply, r, "config-invalid", "%s", error ? error : strerror(-r));
    reply->result = json_object_new_object();
    json_object_object_add(reply->result, "reloaded", json_object_new_boolean(1));
    return 0;
}

/* args: {"mode": "enforce"|"advise"}: switch until the next reload. Reading
 * the mode needs no root: it is in status. */
static int cmd_mode(void *userdata, struct json_object *args, const struct ucred *peer,
                    struct nt_ctl_reply *reply)
{
    struct nt_manager *m = userdata;
    struct json_object *v;
    if (!args || !json_object_object_get_ex(args, "mode", &v) || !json_object_is_type(v, json_type_string))
        return nt_ctl_reply_error(reply, -EINVAL, "invalid-argument", "\"mode\" must be \"enforce\" or \"advise\"");
    const char *want = json_object_get_string(v);
    enum nt_mode mode;
    if (strcmp(want, "enforce") == 0)
        mode = NT_MODE_ENFORCE;
    else if (strcmp(want, "advise") == 0)
        mode = NT_MODE_ADVISE;
    else
        return nt_ctl_reply_error(reply, -EINVAL, "invalid-argument",
                                  "unknown mode \"%s\": use enforce or advise", want);
    if (mode != m->config.mode)
        log_notice("mode %s -> %s, asked by pid %d (uid %d), until the next reload",
                   nt_mode_to_string(m->config.mode), nt_mode_to_string(mode), (int)peer->pid, (int)peer->uid);
    m->config.mode = mode;
    notify_status(m);
    reply->result = json_object_new_object();
    json_object_object_add(reply->result, "mode", json_object_new_string(nt_mode_to_string(mode)));
    return 0;
}

/* {"pid": N}, a positive integer, from args. */
static int pid_arg(struct json_object *args, pid_t *pid, struct nt_ctl_reply *reply)
{
    struct json_object *v;
    int64_t n;
    if (!args || !json_object_object_get_ex(args, "pid", &v) || !json_object_is_type(v, json_type_int) ||
        (n = json_object_get_int64(v)) <= 0 || n > INT32_MAX)
        return nt_ctl_reply_error(reply, -EINVAL, "invalid-argument", "\"pid\" must be a positive integer");
    *pid = (pid_t)n;
    return 0;
}

static int cmd_explain(void *userdata, struct json_object *args, const struct ucred *peer,
                       struct nt_ctl_reply *reply)
{
    (void)peer;
    struct nt_manager *m = userdata;
    pid_t pid;
    int r = pid_arg(args, &pid, reply);
    if (r < 0)
        return r;
    int err = 0;
    reply->result = nt_placer_explain_json(m->placer, m->watch, &m->config, pid, &err);
    return reply->result ? 0 : nt_ctl_reply_error(reply, -ENOMEM, "internal", "cannot build the answer");
}

static int cmd_plan(void *userdata, struct json_object *args, const struct ucred *peer,
                    struct nt_ctl_reply *reply)
{
    (void)args;
    (void)peer;
    struct nt_manager *m = userdata;
    reply->result = nt_placer_plan_json(m->placer);
    json_object_object_add(reply->result, "mode", json_object_new_string(nt_mode_to_string(m->config.mode)));
    return 0;
}

static int cmd_restore(void *userdata, struct json_object *args, const struct ucred *peer,
                       struct nt_ctl_reply *reply)
{
    struct nt_manager *m = userdata;
    pid_t pid;
    int r = pid_arg(args, &pid, reply);
    if (r < 0)
        return r;
    r = nt_placer_restore(m->placer, pid);
    if (r == -ENOENT)
        return nt_ctl_reply_error(reply, r, "not-found", "numatierd did not change the affinity of pid %d", (int)pid);
    if (r == -ESRCH)
        return nt_ctl_reply_error(reply, r, "no-such-process", "pid %d is gone or now another process", (int)pid);
    if (r < 0)
        return nt_ctl_reply_error(reply, r, "failed", "restoring pid %d: %s", (int)pid, strerror(-r));
    log_info("restored the affinity of %d thread(s) of pid %d, asked by pid %d", r, (int)pid, (int)peer->pid);
    reply->result = json_object_new_object();
    json_object_object_add(reply->result, "threads_restored", json_object_new_int(r));
    return 0;
}

/* args: {"events": N} most recent events to include (default 20). */
static int cmd_ras(void *userdata, struct json_object *args, const struct ucred *peer,
                   struct nt_ctl_reply *reply)
{
    (void)peer;
    struct nt_manager *m = userdata;
    int64_t events = 20;
    struct json_object *v;
    if (args && json_object_object_get_ex(args, "events", &v)) {
        if (!json_object_is_type(v, json_type_int) || (events = json_object_get_int64(v)) < 0 || events > 1000)
            return nt_ctl_reply_error(reply, -EINVAL, "invalid-argument", "\"events\" must be an integer from 0 to 1000");
    }
    bool check = false;     /* {"check": true}: the ledger's integrity too (reads it all) */
    if (args && json_object_object_get_ex(args, "check", &v)) {
        if (!json_object_is_type(v, json_type_boolean))
            return nt_ctl_reply_error(reply, -EINVAL, "invalid-argument", "\"check\" must be true or false");
        check = json_object_get_boolean(v);
    }
    int err = 0;
    struct json_object *ledger = nt_rasd_ledger_json(m->rasd, (unsigned)events, &err);
    reply->result = json_object_new_object();
    json_object_object_add(reply->result, "daemon", nt_rasd_status_json(m->rasd));
    json_object_object_add(reply->result, "ledger", ledger);
    if (check)
        json_object_object_add(reply->result, "integrity", nt_rasd_check_json(m->rasd));
    return 0;
}

/* offline, online, drain: args and replies as in the control protocol;
 * the job runs in the background and the reply comes at once. */
static int hotplug_request(struct nt_manager *m, enum nt_offline_op op, struct json_object *args,
                           const struct ucred *peer, struct nt_ctl_reply *reply)
{
    struct nt_hotplug_request req;
    char why[256];
    if (nt_hotplug_request_from_json(op, args, &req, why, sizeof(why)) < 0)
        return nt_ctl_reply_error(reply, -EINVAL, "invalid-argument", "%s", why);
    struct nt_hotplug_reply out;
    int r = nt_hotplug_submit(m->hotplug, &req, &out);
    if (r < 0) {
        reply->error_detail = out.result;   /* a refused plan, or NULL */
        return nt_ctl_reply_error(reply, r, out.code ? out.code : "failed", "%s", out.message);
    }
    if (!req.dry_run)
        log_info("%s requested by pid %d (uid %d)", nt_offline_op_to_string(op), (int)peer->pid, (int)peer->uid);
    reply->result = out.result;
    return 0;
}

static int cmd_offline(void *userdata, struct json_object *args, const struct ucred *peer,
                       struct nt_ctl_reply *reply)
{
    return hotplug_request(userdata, NT_OFFLINE_OP_OFFLINE, args, peer, reply);
}

static int cmd_online(void *userdata, struct json_object *args, const struct ucred *peer,
                      struct nt_ctl_reply *reply)
{
    return hotplug_request(userdata, NT_OFFLINE_OP_ONLINE, args, peer, reply);
}

static int cmd_drain(void *userdata, struct json_object *args, const struct ucred *peer,
                     struct nt_ctl_reply *reply)
{
    return hotplug_request(userdata, NT_OFFLINE_OP_DRAIN, args, peer, reply);
}

/* args: {"id": N} for one job (optional). */
static int cmd_jobs(void *userdata, struct json_object *args, const struct ucred *peer,
                    struct nt_ctl_reply *reply)
{
    (void)peer;
    struct nt_manager *m = userdata;
    int64_t id = 0;
    struct json_object *v;
    if (args && json_object_object_get_ex(args, "id", &v)) {
        if (!json_object_is_type(v, json_type_int) || (id = json_object_get_int64(v)) <= 0)
            return nt_ctl_reply_error(reply, -EINVAL, "invalid-argument", "\"id\" must be a positive integer");
    }
    int r = nt_hotplug_jobs_json(m->hotplug, id, &reply->result);
    if (r == -ENOENT)
        return nt_ctl_reply_error(reply, r, "not-found", "no job %" PRId64, id);
    return r < 0 ? nt_ctl_reply_error(reply, r, "failed", "%s", strerror(-r)) : 0;
}

/* args: {"pages": N} hottest pages per process (default 16, at most 4096). */
static int cmd_top(void *userdata, struct json_object *args, const struct ucred *peer,
                   struct nt_ctl_reply *reply)
{
    (void)peer;
    struct nt_manager *m = userdata;
    int64_t pages = 16;
    struct json_object *v;
    if (args && json_object_object_get_ex(args, "pages", &v)) {
        if (!json_object_is_type(v, json_type_int) || (pages = json_object_get_int64(v)) < 0 || pages > 4096)
            return nt_ctl_reply_error(reply, -EINVAL, "invalid-argument",
                                      "\"pages\" must be an integer from 0 to 4096");
    }
    reply->result = nt_watch_top_json(m->watch, nt_now_usec(), (size_t)pages);
    if (!reply->result)
        return nt_ctl_reply_error(reply, -ENOMEM, "internal", "cannot build the snapshot");
    return 0;
}

static int add_sources(struct nt_manager *m)
{
    static const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
    sigset_t mask;
    sigemptyset(&mask);
    for (size_t i = 0; i < NT_ARRAY_SIZE(sigs); i++)
        sigaddset(&mask, sigs[i]);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        return -errno;
    for (size_t i = 0; i < NT_ARRAY_SIZE(sigs); i++) {
        int r = sd_event_add_signal(m->event, NULL, sigs[i], on_signal, m);
        if (r < 0)
            return r;
    }
    int r = sd_event_add_time_relative(m->event, &m->cycle_timer, CLOCK_MONOTONIC, 0, 0, on_cycle, m);
    if (r < 0)
        return r;
    r = sd_event_add_time_relative(m->event, &m->sample_timer, CLOCK_MONOTONIC,
                                   m->config.sample_interval_usec, 0, on_sample, m);
    if (r < 0)
        return r;
    r = sd_event_add_defer(m->event, &m->retire_defer, on_retire, m);
    if (r < 0)
        return r;
    r = sd_event_source_set_enabled(m->retire_defer, SD_EVENT_OFF);
    if (r < 0)
        return r;
    /* Pings systemd at half of WatchdogSec while the loop is alive. A
     * garbled WATCHDOG_* environment is systemd's problem, not fatal. */
    r = sd_event_set_watchdog(m->event, true);
    if (r < 0)
        log_warning("watchdog: cannot enable: %s", strerror(-r));
    return 0;
}

/* A drain moves threads whose affinity placement set, as if unpinned. */
static bool placement_owns_affinity(pid_t pid, const cpu_set_t *mask, void *userdata)
{
    return nt_placer_affinity_is_ours(userdata, pid, mask);
}

/* ECC escalation with [ras] block_action = soft: an offline job for the
 * failing block, with rollback, planned and checked like a request from
 * root. */
static int offline_failing_block(uint64_t block, int64_t *job, char *msg, size_t len, void *userdata)
{
    struct nt_manager *m = userdata;
    struct nt_hotplug_request req = {
        .op = NT_OFFLINE_OP_OFFLINE, .kind = NT_TARGET_BLOCKS,
        .first_block = (unsigned)block, .last_block = (unsigned)block, .rollback = true,
    };
    struct nt_hotplug_reply out = { 0 };
    struct json_object *j, *id;
    int r = nt_hotplug_submit(m->hotplug, &req, &out);
    *job = 0;
    if (r < 0)
        snprintf(msg, len, "%s", out.message);
    else if (json_object_object_get_ex(out.result, "job", &j) && j && json_object_object_get_ex(j, "id", &id))
        *job = json_object_get_int64(id);
    else
        snprintf(msg, len, "nothing to do: the block is offline already");
    json_object_put(out.result);
    return r;
}

/* A drain's pin is not the user's: placement may still move those
 * threads (never to the drained node, which is under maintenance). */
static bool drain_owns_affinity(pid_t pid, uint64_t start_time, const cpu_set_t *mask, char *why, size_t len,
                                void *userdata)
{
    struct nt_hotplug_pin pin;
    if (!nt_hotplug_drain_pin(userdata, pid, start_time, mask, &pin))
        return false;
    snprintf(why, len, "drain job %" PRId64 " of node %d (until online node %d)", pin.job, pin.node, pin.node);
    return true;
}

/* Offline jobs journal in the ledger even with [ras] off; an unfinished
 * job from before a restart is recovered at once. */
static int start_hotplug(struct nt_manager *m)
{
    struct nt_hotplug_params hp;
    nt_hotplug_params_from_config(&hp, &m->config);
    struct nt_hotplug_options o = { .event = m->event, .root = m->root, .ledger_path = m->config.ledger_path };
    int r = nt_hotplug_new(&o, &hp, &m->hotplug);
    if (r < 0) {
        log_error("offline: %s", strerror(-r));
        return r;
    }
    nt_hotplug_set_affinity_owner(m->hotplug, placement_owns_affinity, m->placer);
    nt_placer_set_pin_owner(m->placer, drain_owns_affinity, m->hotplug);
    r = nt_hotplug_recover(m->hotplug);
    if (r < 0)
        log_error("offline: cannot look for unfinished jobs: %s", strerror(-r));
    return 0;
}

int nt_manager_new(const struct nt_manager_options *opts, struct nt_config *config,
                   struct nt_manager **out)
{
    struct nt_manager *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->config = *config;
    memset(config, 0, sizeof(*config));
    m->config_path = strdup(opts->config_path);
    m->dropin_dir = opts->dropin_dir ? strdup(opts->dropin_dir) : NULL;
    m->root = strdup(opts->root);
    m->config_required = opts->config_required;
    m->start_usec = nt_now_usec();
    int r = -ENOMEM;
    if (!m->config_path || !m->root || (opts->dropin_dir && !m->dropin_dir))
        goto fail;

    r = sd_event_new(&m->event);
    if (r < 0)
        goto fail;
    r = add_sources(m);
    if (r < 0)
        goto fail;
    struct nt_ctl_limits limits = limits_from_config(&m->config);
    r = nt_ctl_server_new(m->event, m->config.socket_path, &limits, ctl_commands,
                          NT_ARRAY_SIZE(ctl_commands), m, &m->ctl);
    if (r < 0) {
        log_error("control socket %s: %s", m->config.socket_path,
                  r == -EADDRINUSE ? "another numatierd is already answering there" : strerror(-r));
        goto fail;
    }
    refresh_topology(m);
    char why[512] = "";
    r = nt_watch_new(m->root, &m->config, m->topology, &m->watch, why, sizeof(why));
    if (r < 0) {
        log_error("sampler: %s", why);
        goto fail;
    }
    r = nt_placer_new(m->root, &m->config, m->topology, &m->placer);
    if (r < 0) {
        log_error("placement: %s", strerror(-r));
        goto fail;
    }
    r = nt_rasd_new(m->event, m->root, &m->config, &m->rasd);
    if (r < 0) {
        log_error("ras: %s", strerror(-r));
        goto fail;
    }
    nt_rasd_cycle(m->rasd, m->topology, nt_now_usec());     /* blocks known from the first event */
    r = start_hotplug(m);
    if (r < 0)
        goto fail;
    nt_rasd_set_block_offliner(m->rasd, offline_failing_block, m);
    *out = m;
    return 0;
fail:
    nt_manager_free(m);
    return r;
}

int nt_manager_run(struct nt_manager *m)
{
    log_info("numatierd %s ready: %u nodes, control socket %s, mode %s",
             NT_VERSION, m->topology ? m->topology->nr_nodes : 0,
             nt_ctl_server_path(m->ctl), nt_mode_to_string(m->config.mode));
    sd_notify(0, "READY=1");
    notify_status(m);
    return sd_event_loop(m->event);
}

void nt_manager_free(struct nt_manager *m)
{
    if (!m)
        return;
    nt_ctl_server_free(m->ctl);
    nt_ctl_server_free(m->retired_ctl);
    sd_event_source_disable_unref(m->cycle_timer);
    sd_event_source_disable_unref(m->sample_timer);
    nt_hotplug_free(m->hotplug);
    nt_rasd_free(m->rasd);
    nt_placer_free(m->placer);
    nt_watch_free(m->watch);
    sd_event_source_disable_unref(m->retire_defer);
    sd_event_unref(m->event);
    nt_topology_free(m->topology);
    nt_config_done(&m->config);
    free(m->config_path);
    free(m->dropin_dir);
    free(m->root);
    free(m->last_reload_error);
    free(m);
}
