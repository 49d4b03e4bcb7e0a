/* The control socket: one JSON request and one JSON response per line.
 *
 *   request:  {"cmd":"status"}            (optional "args":{...})
 *   response: {"ok":true,"result":{...}}
 *             {"ok":false,"error":{"code":"permission-denied","message":"..."}}
 *
 * Read-only commands are open to every local user; commands that change
 * anything need uid 0, checked with SO_PEERCRED. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>

struct json_object;
struct nt_ctl_server;

/* A handler returns 0 and sets *result, or a negative errno and sets *error
 * to a human-readable message (static or malloc'd via *error_owned). */
struct nt_ctl_reply {
    struct json_object *result;
    const char *error_code;     /* machine-readable, e.g. "invalid-argument" */
    char *error_message;        /* malloc'd */
    struct json_object *error_detail;   /* owned; its keys join the error object
                                         * (e.g. a refused plan), or NULL */
};

typedef int (*nt_ctl_handler)(void *userdata, struct json_object *args,
                              const struct ucred *peer, struct nt_ctl_reply *reply);

struct nt_ctl_command {
    const char *name;
    bool mutating;              /* needs uid 0 */
    nt_ctl_handler handler;
};

struct nt_ctl_limits {
    unsigned max_clients;
    uint64_t request_timeout_usec;
    uint64_t max_request_bytes;
};

/* Create the runtime directory if missing, bind and listen on path. */
int nt_ctl_server_new(sd_event *event, const char *path, const struct nt_ctl_limits *limits,
                      const struct nt_ctl_command *commands, size_t nr_commands,
                      void *userdata, struct nt_ctl_server **out);
void nt_ctl_server_set_limits(struct nt_ctl_server *s, const struct nt_ctl_limits *limits);
const char *nt_ctl_server_path(const struct nt_ctl_server *s);
unsigned nt_ctl_server_nr_clients(const struct nt_ctl_server *s);
/* Close every client and the listener, and unlink the socket. NULL ok. */
void nt_ctl_server_free(struct nt_ctl_server *s);

/* Helpers for handlers. */
int nt_ctl_reply_error(struct nt_ctl_reply *reply, int err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Client side: connect, send one request, read one response line.
 * Returns 0 and the parsed response, or negative errno. */
int nt_ctl_call(const char *path, const char *cmd, struct json_object *args,
                uint64_t timeout_usec, struct json_object **response);
