/* Control socket client: one request, one response, under a deadline. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <json-c/json.h>

#include "numatier/ctl.h"
#include "numatier/util.h"

static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = nt_now_usec();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd p = { .fd = fd, .events = events };
        int r = poll(&p, 1, (int)((deadline - now + 999) / 1000));
        if (r < 0 && errno != EINTR)
            return -errno;
        if (r > 0)
            return 0;
    }
}

static int send_all(int fd, const char *buf, size_t len, uint64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) {
                int r = wait_fd(fd, POLLOUT, deadline);
                if (r < 0)
                    return r;
                continue;
            }
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read until the first newline; the response is one line. */
static int recv_line(int fd, uint64_t deadline, char **out)
{
    size_t cap = 65536, len = 0;
    _cleanup_free_ char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        if (len + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                return -ENOMEM;
            buf = nb;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0) {
            if (errno == EAGAIN) {
                int r = wait_fd(fd, POLLIN, deadline);
                if (r < 0)
                    return r;
                continue;
            }
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -ECONNRESET;
        char *nl = memchr(buf + len, '\n', (size_t)n);
        len += (size_t)n;
        if (nl) {
            *nl = '\0';
            *out = NT_TAKE_PTR(buf);
            return 0;
        }
    }
}

int nt_ctl_call(const char *path, const char *cmd, struct json_object *args,
                uint64_t timeout_usec, struct json_object **response)
{
    uint64_t deadline = nt_now_usec() + timeout_usec;
    _cleanup_close_ int fd = nt_unix_connect(path);
    if (fd < 0)
        return fd;

    struct json_object *req = json_object_new_object();
    json_object_object_add(req, "cmd", json_object_new_string(cmd));
    if (args)
        json_object_object_add(req, "args", json_object_get(args));
    size_t len;
    const char *text = json_object_to_json_string_length(req, JSON_C_TO_STRING_PLAIN, &len);
    int r = send_all(fd, text, len, deadline);
    if (r >= 0)
        r = send_all(fd, "\n", 1, deadline);
    json_object_put(req);
    if (r < 0)
        return r;

    _cleanup_free_ char *line = NULL;
    r = recv_line(fd, deadline, &line);
    if (r < 0)
        return r;
    struct json_object *resp = json_tokener_parse(line);
    if (!resp || !json_object_is_type(resp, json_type_object)) {
        json_object_put(resp);
        return -EBADMSG;
    }
    *response = resp;
    return 0;
}
