/* Shared by the numatierctl commands. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct json_object;

enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_UNREACHABLE = 3,
    EXIT_DENIED = 4,
    EXIT_NO_PROCESS = 5,
    EXIT_REFUSED = 6,           /* offline/online/drain: the plan refused; nothing changed */
    EXIT_ROLLED_BACK = 7,       /* the job failed or timed out and was rolled back completely */
    EXIT_INTERRUPTED = 130,     /* Ctrl-C while following a job; the job goes on */
};

struct ctl_opts {
    const char *socket;
    const char *root;
    bool json;
    uint64_t timeout_usec;
};

void print_json(struct json_object *o);
/* Send one request; on success *result borrows from *response. Returns an
 * exit code, having printed any error. */
int call_daemon_args(const struct ctl_opts *o, const char *cmd, struct json_object *args,
                     struct json_object **response, struct json_object **result);
/* Members of a JSON object, with a default when absent or null. */
const char *jstr(struct json_object *o, const char *key, const char *dflt);
int64_t jint(struct json_object *o, const char *key);

int cmd_top(const struct ctl_opts *o, int argc, char **argv);
int cmd_explain(const struct ctl_opts *o, int argc, char **argv);
int cmd_plan(const struct ctl_opts *o, int argc, char **argv);
int cmd_restore(const struct ctl_opts *o, int argc, char **argv);
int cmd_ras(const struct ctl_opts *o, int argc, char **argv);
/* offline | online | drain (argv[0] says which), and jobs: cli/offline.c */
int cmd_offline(const struct ctl_opts *o, int argc, char **argv);
int cmd_jobs(const struct ctl_opts *o, int argc, char **argv);
