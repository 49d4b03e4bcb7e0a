/* File and path helpers shared by the daemon and the CLI. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "numatier/util.h"

char *nt_path_join(const char *root, const char *path)
{
    char *out = NULL;
    if (!root || !*root || strcmp(root, "/") == 0)
        return strdup(path);
    size_t rl = strlen(root);
    while (rl > 1 && root[rl - 1] == '/')
        rl--;
    if (asprintf(&out, "%.*s%s%s", (int)rl, root, path[0] == '/' ? "" : "/", path) < 0)
        return NULL;
    return out;
}

int nt_read_file(const char *root, const char *path, char **out)
{
    _cleanup_free_ char *full = nt_path_join(root, path);
    if (!full)
        return -ENOMEM;
    _cleanup_close_ int fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;

    size_t cap = 4096, len = 0;
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
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    if (len > 0 && buf[len - 1] == '\n')
        buf[len - 1] = '\0';
    *out = NT_TAKE_PTR(buf);
    return 0;
}

int nt_write_file(const char *root, const char *path, const char *value)
{
    _cleanup_free_ char *full = nt_path_join(root, path);
    if (!full)
        return -ENOMEM;
    _cleanup_close_ int fd = open(full, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(value);
    ssize_t n = write(fd, value, len);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

int nt_read_u64(const char *root, const char *path, uint64_t *out)
{
    _cleanup_free_ char *s = NULL;
    int r = nt_read_file(root, path, &s);
    if (r < 0)
        return r;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || (*end && *end != '\n'))
        return -EINVAL;
    *out = v;
    return 0;
}

static uint64_t clock_usec(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t nt_now_usec(void)
{
    return clock_usec(CLOCK_MONOTONIC);
}

uint64_t nt_realtime_usec(void)
{
    return clock_usec(CLOCK_REALTIME);
}

int nt_unix_connect(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    return NT_TAKE_FD(fd);
}

DIR *nt_opendir_below(const char *root, const char *path)
{
    _cleanup_free_ char *full = nt_path_join(root, path);
    if (!full) {
        errno = ENOMEM;
        return NULL;
    }
    return opendir(full);
}

bool nt_name_with_id(const char *name, const char *prefix, unsigned *id)
{
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0 || !isdigit((unsigned char)name[pl]))
        return false;
    char *end;
    errno = 0;
    unsigned long v = strtoul(name + pl, &end, 10);
    if (errno || *end || v > INT32_MAX)
        return false;
    *id = (unsigned)v;
    return true;
}
