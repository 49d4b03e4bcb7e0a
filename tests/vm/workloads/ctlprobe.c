/* ctlprobe: how long numatierd takes to answer a control request, without
 * the cost of starting a client.
 *
 *   ctlprobe [--socket PATH] [--cmd NAME] [--interval-ms N] --until FILE
 *
 * Until FILE exists: connect to the control socket, send {"cmd": NAME},
 * read the one-line reply, close; then sleep N ms. Each round is timed from
 * connect() to the reply's newline, so it measures what the daemon does
 * (accept, dispatch, answer) and not exec() and dynamic linking, which under
 * an emulated CPU that a storm keeps busy cost a numatierctl 150-300 ms
 * before it sends anything. Prints one line per round ("ms N") and a
 * summary ("rounds N slowest MS"); exits 1 if a round failed or took over
 * 5 s, 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define ROUND_LIMIT_MS 5000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for fd to be ready for events, up to the round's deadline. */
static bool wait_ready(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return false;
        struct pollfd p = { .fd = fd, .events = events };
        int r = poll(&p, 1, (int)left);
        if (r > 0)
            return true;
        if (r < 0 && errno != EINTR)
            return false;
    }
}

/* Does the reply begin {"ok": true ...? The daemon puts "ok" first. */
static bool answered_ok(const char *head)
{
    const char *p = strstr(head, "\"ok\"");
    if (!p)
        return false;
    p += 4;
    while (*p == ' ' || *p == ':')
        p++;
    return strncmp(p, "true", 4) == 0;
}

/* One request; its time in ms, or -1 with a message on stderr. */
static int64_t one_round(const char *path, const char *request)
{
    int64_t t0 = now_ms(), deadline = t0 + ROUND_LIMIT_MS;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd < 0 || (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS &&
                   errno != EAGAIN)) {
        fprintf(stderr, "ctlprobe: connect %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t len = strlen(request), off = 0;
    while (off < len) {
        if (!wait_ready(fd, POLLOUT, deadline))
            goto timeout;
        ssize_t n = send(fd, request + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            fprintf(stderr, "ctlprobe: send: %s\n", strerror(errno));
            close(fd);
            return -1;
        }
        off += n > 0 ? (size_t)n : 0;
    }
    char head[256] = "", buf[4096];
    size_t got = 0;
    for (;;) {
        if (!wait_ready(fd, POLLIN, deadline))
            goto timeout;
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            fprintf(stderr, "ctlprobe: the daemon closed the connection before answering\n");
            close(fd);
            return -1;
        }
        if (n > 0 && got + 1 < sizeof(head)) {
            size_t take = (size_t)n < sizeof(head) - 1 - got ? (size_t)n : sizeof(head) - 1 - got;
            memcpy(head + got, buf, take);
            got += take;
            head[got] = '\0';
        }
        if (n > 0 && memchr(buf, '\n', (size_t)n))
            break;
    }
    close(fd);
    int64_t ms = now_ms() - t0;
    if (!answered_ok(head)) {
        fprintf(stderr, "ctlprobe: the daemon refused: %.200s\n", head);
        return -1;
    }
    return ms;
timeout:
    fprintf(stderr, "ctlprobe: no answer within %d ms\n", ROUND_LIMIT_MS);
    close(fd);
    return -1;
}

int main(int argc, char **argv)
{
    const char *path = "/run/numatier/numatierd.sock", *cmd = "status", *until = NULL;
    long interval_ms = 200;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--socket") == 0)
            path = argv[i + 1];
        else if (strcmp(argv[i], "--cmd") == 0)
            cmd = argv[i + 1];
        else if (strcmp(argv[i], "--interval-ms") == 0)
            interval_ms = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--until") == 0)
            until = argv[i + 1];
        else {
            fprintf(stderr, "ctlprobe: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!until || (argc - 1) % 2 || interval_ms < 0) {
        fprintf(stderr, "usage: ctlprobe [--socket PATH] [--cmd NAME] [--interval-ms N] --until FILE\n");
        return 2;
    }
    char request[128];
    snprintf(request, sizeof(request), "{\"cmd\": \"%s\"}\n", cmd);
    int64_t slowest = 0;
    unsigned rounds = 0;
    bool failed = false;
    while (access(until, F_OK) != 0) {
        int64_t ms = one_round(path, request);
        if (ms < 0) {
            failed = true;
            break;
        }
        printf("ms %lld\n", (long long)ms);
        slowest = ms > slowest ? ms : slowest;
        rounds++;
        usleep((useconds_t)interval_ms * 1000);
    }
    printf("rounds %u slowest %lld\n", rounds, (long long)slowest);
    return failed ? 1 : 0;
}
