/* Control socket server: line-delimited JSON over a Unix stream socket,
 * driven entirely by sd-event so one slow or hostile client never blocks
 * the loop or the other clients. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <json-c/json.h>

#include "numatier/ctl.h"
#include "numatier/log.h"
#include "numatier/util.h"

/* A response larger than this means a client that never reads; drop it. */
#define NT_CTL_MAX_OUTPUT (8u << 20)

struct nt_ctl_client {
    struct nt_ctl_server *server;
    struct nt_ctl_client *next;
    int fd;
    struct ucred peer;
    sd_event_source *io;
    sd_event_source *timer;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off;
    bool closing;               /* flush the output, then close */
    bool peer_eof;              /* the peer shut down its side */
    bool draining;              /* we shut down ours; discard input until EOF */
};

struct nt_ctl_server {
    sd_event *event;
    char *path;
    int fd;
    sd_event_source *listen_io;
    struct nt_ctl_limits limits;
    const struct nt_ctl_command *commands;
    size_t nr_commands;
    void *userdata;
    struct nt_ctl_client *clients;
    unsigned nr_clients;
};

static void client_free(struct nt_ctl_client *c)
{
    struct nt_ctl_server *s = c->server;
    for (struct nt_ctl_client **p = &s->clients; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            s->nr_clients--;
            break;
        }
    }
    sd_event_source_disable_unref(c->io);
    sd_event_source_disable_unref(c->timer);
    if (c->fd >= 0)
        close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

static int client_arm_timer(struct nt_ctl_client *c)
{
    uint64_t now;
    sd_event_now(c->server->event, CLOCK_MONOTONIC, &now);
    return sd_event_source_set_time(c->timer, now + c->server->limits.request_timeout_usec);
}

static int client_append_output(struct nt_ctl_client *c, const char *data, size_t len)
{
    if (c->out_len - c->out_off + len > NT_CTL_MAX_OUTPUT)
        return -ENOBUFS;
    if (c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    char *n = realloc(c->out, c->out_len + len);
    if (!n)
        return -ENOMEM;
    memcpy(n + c->out_len, data, len);
    c->out = n;
    c->out_len += len;
    return 0;
}

static int client_send_json(struct nt_ctl_client *c, struct json_object *resp)
{
    size_t len;
    const char *text = json_object_to_json_string_length(resp, JSON_C_TO_STRING_PLAIN, &len);
    int r = client_append_output(c, text, len);
    if (r >= 0)
        r = client_append_output(c, "\n", 1);
    return r;
}

static struct json_object *make_error(const char *code, const char *message)
{
    struct json_object *resp = json_object_new_object();
    struct json_object *err = json_object_new_object();
    json_object_object_add(err, "code", json_object_new_string(code));
    json_object_object_add(err, "message", json_object_new_string(message));
    json_object_object_add(resp, "ok", json_object_new_boolean(0));
    json_object_object_add(resp, "error", err);
    return resp;
}

/* The handler's extra error fields (never code or message) join the error. */
static void add_error_detail(struct json_object *resp, struct json_object *detail)
{
    struct json_object *err;
    if (!detail || !json_object_object_get_ex(resp, "error", &err))
        return;
    json_object_object_foreach(detail, key, val) {
        if (strcmp(key, "code") != 0 && strcmp(key, "message") != 0)
            json_object_object_add(err, key, json_object_get(val));
    }
}

int nt_ctl_reply_error(struct nt_ctl_reply *reply, int err, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    free(reply->error_message);
    if (vasprintf(&reply->error_message, fmt, ap) < 0)
        reply->error_message = NULL;
    va_end(ap);
    reply->error_code = code;
    return err < 0 ? err : -err;
}

static const struct nt_ctl_command *find_command(const struct nt_ctl_server *s, const char *name)
{
    for (size_t i = 0; i < s->nr_commands; i++)
        if (strcmp(s->commands[i].name, name) == 0)
            return &s->commands[i];
    return NULL;
}

/* Validate the request envelope and run its handler. Always returns a response. */
static struct json_object *dispatch(struct nt_ctl_server *s, const struct ucred *peer,
                                    const char *line, size_t len)
{
    struct json_tokener *tok = json_tokener_new();
    if (!tok)
        return make_error("internal", "out of memory");
    struct json_object *req = json_tokener_parse_ex(tok, line, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t parsed = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);

    if (!req || jerr != json_tokener_success || parsed != len) {
        json_object_put(req);
        return make_error("malformed-request", "request is not one complete JSON object");
    }

    struct json_object *cmd_obj, *args = NULL, *resp;
    if (!json_object_is_type(req, json_type_object) ||
        !json_object_object_get_ex(req, "cmd", &cmd_obj) ||
        !json_object_is_type(cmd_obj, json_type_string)) {
        resp = make_error("malformed-request", "request needs a string member \"cmd\"");
        goto out;
    }
    if (json_object_object_get_ex(req, "args", &args) && !json_object_is_type(args, json_type_object)) {
        resp = make_error("malformed-request", "\"args\" must be an object");
        goto out;
    }

    const char *name = json_object_get_string(cmd_obj);
    const struct nt_ctl_command *cmd = find_command(s, name);
    if (!cmd) {
        char msg[160];
        snprintf(msg, sizeof(msg), "unknown command \"%.64s\"", name);
        resp = make_error("unknown-command", msg);
        goto out;
    }
    if (cmd->mutating && peer->uid != 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "\"%s\" changes the daemon's state and needs root (your uid is %u)",
                 cmd->name, (unsigned)peer->uid);
        log_notice("ctl: refused \"%s\" from uid %u pid %d", cmd->name, (unsigned)peer->uid, (int)peer->pid);
        resp = make_error("permission-denied", msg);
        goto out;
    }

    struct nt_ctl_reply reply = { 0 };
    int r = cmd->handler(s->userdata, args, peer, &reply);
    if (r < 0) {
        json_object_put(reply.result);
        resp = make_error(reply.error_code ? reply.error_code : "failed",
                          reply.error_message ? reply.error_message : strerror(-r));
        add_error_detail(resp, reply.error_detail);
    } else {
        resp = json_object_new_object();
        json_object_object_add(resp, "ok", json_object_new_boolean(1));
        json_object_object_add(resp, "result", reply.result ? reply.result : json_object_new_object());
    }
    free(reply.error_message);
    json_object_put(reply.error_detail);
out:
    json_object_put(req);
    return resp;
}

static int client_update_events(struct nt_ctl_client *c)
{
    uint32_t ev = c->closing && !c->draining ? 0 : EPOLLIN;
    if (c->out_len > c->out_off)
        ev |= EPOLLOUT;
    return sd_event_source_set_io_events(c->io, ev);
}

/* Handle every complete line in the input buffer. */
static int client_process_lines(struct nt_ctl_client *c)
{
    size_t start = 0;
    for (;;) {
        char *nl = memchr(c->in + start, '\n', c->in_len - start);
        if (!nl)
            break;
        size_t len = (size_t)(nl - (c->in + start));
        if (len > 0 && c->in[start + len - 1] == '\r')
            len--;
        struct json_object *resp = dispatch(c->server, &c->peer, c->in + start, len);
        int r = client_send_json(c, resp);
        json_object_put(resp);
        if (r < 0)
            return r;
        start = (size_t)(nl - c->in) + 1;
        client_arm_timer(c);
    }
    memmove(c->in, c->in + start, c->in_len - start);
    c->in_len -= start;
    if (c->in_len > c->server->limits.max_request_bytes) {
        struct json_object *resp = make_error("request-too-large", "request exceeds max_request_size");
        client_send_json(c, resp);
        json_object_put(resp);
        c->closing = true;
    }
    return 0;
}

static int client_read(struct nt_ctl_client *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < 4096) {
            size_t cap = c->in_cap ? c->in_cap * 2 : 8192;
            char *n = realloc(c->in, cap);
            if (!n)
                return -ENOMEM;
            c->in = n;
            c->in_cap = cap;
        }
        ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -errno;
        }
        if (n == 0) {
            /* Peer closed its side: answer what it sent, then close. */
            c->closing = c->peer_eof = true;
            return c->draining ? -ECONNRESET : 0;
        }
        if (c->draining)
            return 0;   /* one discard per wakeup: a flood cannot hog the loop */
        c->in_len += (size_t)n;
        int r = client_process_lines(c);
        if (r < 0 || c->closing)
            return r;
        /* Fairness: one read burst per wakeup, leave the rest for the loop. */
        if (c->in_len < c->in_cap)
            return 0;
    }
}

static int client_write(struct nt_ctl_client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -errno;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    if (!c->closing || c->draining)
        return 0;
    if (c->peer_eof)
        return -ECONNRESET;
    /* Closing with unread input would reset the connection and the peer
     * could lose our error reply; half-close and drain instead. The
     * request timer bounds how long we wait for the peer's EOF. */
    shutdown(c->fd, SHUT_WR);
    c->draining = true;
    return 0;
}

static int on_client_io(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
    (void)src;
    (void)fd;
    struct nt_ctl_client *c = userdata;
    int r = 0;
    if (revents & EPOLLIN)
        r = client_read(c);
    if (r >= 0)
        r = client_write(c);
    if (r >= 0 && (revents & (EPOLLHUP | EPOLLERR)) && !(revents & EPOLLIN))
        r = -ECONNRESET;
    if (r >= 0)
        r = client_update_events(c);
    if (r < 0) {
        if (r != -ECONNRESET && r != -EPIPE)
            log_debug("ctl: dropping client pid %d: %s", (int)c->peer.pid, strerror(-r));
        client_free(c);
    }
    return 0;
}

static int on_client_timeout(sd_event_source *src, uint64_t usec, void *userdata)
{
    (void)src;
    (void)usec;
    struct nt_ctl_client *c = userdata;
    log_debug("ctl: client pid %d idle or half-sent for too long, closing", (int)c->peer.pid);
    client_free(c);
    return 0;
}

static void reject_busy(int fd)
{
    static const char msg[] =
        "{\"ok\":false,\"error\":{\"code\":\"busy\",\"message\":\"too many clients\"}}\n";
    (void)!send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

static int client_new(struct nt_ctl_server *s, int fd)
{
    struct nt_ctl_client *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->server = s;
    c->fd = fd;
    c->next = s->clients;
    s->clients = c;
    s->nr_clients++;

    socklen_t len = sizeof(c->peer);
    int r = -errno;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->peer, &len) < 0)
        goto fail;
    r = sd_event_add_io(s->event, &c->io, fd, EPOLLIN, on_client_io, c);
    if (r < 0)
        goto fail;
    r = sd_event_add_time(s->event, &c->timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_client_timeout, c);
    if (r < 0)
        goto fail;
    return client_arm_timer(c);
fail:
    client_free(c);
    return r;
}

static int on_listen_io(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
    (void)src;
    (void)revents;
    struct nt_ctl_server *s = userdata;
    for (int i = 0; i < 64; i++) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno != EAGAIN && errno != EINTR)
                log_warning("ctl: accept failed: %m");
            return 0;
        }
        if (s->nr_clients >= s->limits.max_clients) {
            reject_busy(cfd);
            continue;
        }
        int r = client_new(s, cfd);
        if (r < 0)
            log_warning("ctl: cannot set up client: %s", strerror(-r));
    }
    return 0;
}

static int make_runtime_dir(const char *path)
{
    _cleanup_free_ char *dir = strdup(path);
    if (!dir)
        return -ENOMEM;
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    /* mkdir -p, world-searchable so unprivileged users can read status. */
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int listen_on(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);

    /* Never steal the socket of a daemon that is still answering. */
    _cleanup_close_ int probe = nt_unix_connect(path);
    if (probe >= 0)
        return -EADDRINUSE;

    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* A socket left by a crashed instance would make bind fail. */
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    /* Everyone may connect; each request is authorised by peer credentials. */
    if (chmod(path, 0666) < 0)
        return -errno;
    if (listen(fd, 128) < 0)
        return -errno;
    return NT_TAKE_FD(fd);
}

int nt_ctl_server_new(sd_event *event, const char *path, const struct nt_ctl_limits *limits,
                      const struct nt_ctl_command *commands, size_t nr_commands,
                      void *userdata, struct nt_ctl_server **out)
{
    int r = make_runtime_dir(path);
    if (r < 0)
        return r;
    struct nt_ctl_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->event = event;
    s->fd = -1;
    s->limits = *limits;
    s->commands = commands;
    s->nr_commands = nr_commands;
    s->userdata = userdata;
    s->path = strdup(path);
    if (!s->path) {
        free(s);
        return -ENOMEM;
    }
    s->fd = listen_on(path);
    if (s->fd < 0) {
        r = s->fd;
        free(s->path);
        free(s);
        return r;
    }
    r = sd_event_add_io(event, &s->listen_io, s->fd, EPOLLIN, on_listen_io, s);
    if (r < 0) {
        nt_ctl_server_free(s);
        return r;
    }
    *out = s;
    return 0;
}

void nt_ctl_server_set_limits(struct nt_ctl_server *s, const struct nt_ctl_limits *limits)
{
    s->limits = *limits;
}

const char *nt_ctl_server_path(const struct nt_ctl_server *s) { return s->path; }
unsigned nt_ctl_server_nr_clients(const struct nt_ctl_server *s) { return s->nr_clients; }

void nt_ctl_server_free(struct nt_ctl_server *s)
{
    if (!s)
        return;
    while (s->clients)
        client_free(s->clients);
    sd_event_source_disable_unref(s->listen_io);
    if (s->fd >= 0) {
        close(s->fd);
        unlink(s->path);
    }
    free(s->path);
    free(s);
}
