/*
 * peers.c - the harness's side of a conversation: sockets, echo exchanges
 * that check every byte, and fake peers (a socket of ours with the program
 * under test started against it).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int connect_to(int type, const char *addr, int port)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;

    if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        len = sizeof *a4;
    } else {
        ck_assert(inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        len = sizeof *a6;
    }
    int fd = socket(ss.ss_family, type, 0);
    ck_assert(fd >= 0);
    ck_assert_msg(connect(fd, (struct sockaddr *)&ss, len) == 0, "connect %s port %d: %s",
                  addr, port, strerror(errno));
    return fd;
}

int tcp_connect(int port)
{
    return connect_to(SOCK_STREAM, "127.0.0.1", port);
}

int udp_socket(int port)
{
    return connect_to(SOCK_DGRAM, "127.0.0.1", port);
}

int bound_socket(int type, int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int fd = socket(AF_INET, type, 0);
    ck_assert(fd >= 0);
    ck_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    if (type == SOCK_STREAM)
        ck_assert(listen(fd, 16) == 0);
    ck_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    *port = ntohs(a.sin_port);
    return fd;
}

int closed_port(void)
{
    int port, fd = bound_socket(SOCK_STREAM, &port);
    close(fd);
    return port;
}

/* A non-blocking socket with its connect() to 127.0.0.1:PORT under way. */
int start_connect(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ck_assert_msg(fd >= 0, "socket: %s", strerror(errno));
    ck_assert_msg(connect(fd, (struct sockaddr *)&a, sizeof a) == 0 || errno == EINPROGRESS,
                  "connect to port %d: %s", port, strerror(errno));
    return fd;
}

/* A crowd of clients needs a descriptor each, like the server: take the
 * hard limit (the soft one is often 1024). The test runs in a process of
 * its own, so this ends with it. */
void raise_fd_limit(int need)
{
    struct rlimit rl;
    ck_assert(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = rl.rlim_max;
    ck_assert_msg(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit: %s", strerror(errno));
    ck_assert_msg(rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)need,
                  "this check needs %d descriptors; the hard limit is %llu", need,
                  (unsigned long long)rl.rlim_cur);
}

void send_bytes(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        ck_assert_msg(n > 0, "send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

size_t recv_until(int fd, char *buf, size_t len, long long deadline, int *eof)
{
    size_t got = 0;
    *eof = 0;
    while (got < len && wait_for(fd, POLLIN, deadline) == 1) {
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n <= 0) {
            *eof = 1;
            break;
        }
        got += (size_t)n;
    }
    return got;
}

unsigned char pattern(size_t i, unsigned seed)
{
    return (unsigned char)((i * 7 + seed + i / 997) & 0xff);
}

/* One round of echo_check's poll loop: send what fits, take what came.
 * Returns 1 at EOF. */
static int echo_step(int fd, short revents, const char *out, char *in, size_t size,
                     size_t *sent, size_t *got, int half_close)
{
    if (revents & POLLOUT) {
        ssize_t n = send(fd, out + *sent, size - *sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        ck_assert_msg(n >= 0 || errno == EAGAIN, "send: %s", strerror(errno));
        if (n > 0 && (*sent += (size_t)n) == size && half_close)
            shutdown(fd, SHUT_WR);
    }
    if (!(revents & (POLLIN | POLLHUP | POLLERR)))
        return 0;
    ssize_t n = recv(fd, in + *got, size + 1 - *got, MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN)
        return 0;
    ck_assert_msg(n >= 0, "recv after %zu of %zu bytes: %s", *got, size, strerror(errno));
    if (n == 0) {
        ck_assert_msg(*got == size, "EOF after %zu of %zu echoed bytes", *got, size);
        return 1;
    }
    ck_assert_msg(*got + (size_t)n <= size, "server sent more than it was sent");
    *got += (size_t)n;
    return 0;
}

void echo_check(int fd, size_t size, unsigned seed, int half_close)
{
    char *out = malloc(size + 1), *in = malloc(size + 1);
    size_t sent = 0, got = 0;
    /* Bytes must keep moving: 3 s without any progress is a hang. */
    long long deadline = now_ms() + ms(3000);

    for (size_t i = 0; i < size; i++)
        out[i] = (char)pattern(i, seed);
    if (half_close && size == 0)
        shutdown(fd, SHUT_WR);
    /* Send and read at the same time, so even megabytes never deadlock on
     * full socket buffers. */
    while (got < size || (half_close && got == size)) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (sent < size ? POLLOUT : 0)};
        long long left = deadline - now_ms();
        ck_assert_msg(left > 0 && poll(&p, 1, (int)left) > 0,
                      "echo of %zu bytes: nothing moved for %d ms, with %zu sent and %zu back",
                      size, ms(3000), sent, got);
        size_t moved = sent + got;
        if (echo_step(fd, p.revents, out, in, size, &sent, &got, half_close))
            break;
        if (sent + got != moved)
            deadline = now_ms() + ms(3000);
    }
    for (size_t i = 0; i < size; i++)
        ck_assert_msg(in[i] == out[i], "echoed byte %zu of %zu differs", i, size);
    free(out);
    free(in);
}

void udp_echo_check(int fd, size_t size, unsigned seed)
{
    char *out = malloc(size + 1), *in = malloc(65536);
    for (size_t i = 0; i < size; i++)
        out[i] = (char)pattern(i, seed);
    ssize_t n = -1;
    /* UDP may lose the datagram or its echo: a few tries are allowed. */
    for (int try = 0; try < 3 && n < 0; try++) {
        ck_assert_msg(send(fd, out, size, 0) == (ssize_t)size, "send %zu: %s", size,
                      strerror(errno));
        if (wait_for(fd, POLLIN, now_ms() + ms(2000)) == 1)
            n = recv(fd, in, 65536, 0);
    }
    ck_assert_msg(n == (ssize_t)size, "datagram of %zu bytes came back as %zd", size, n);
    ck_assert_msg(memcmp(in, out, size) == 0, "datagram of %zu bytes came back changed", size);
    free(out);
    free(in);
}

void assert_contains(const char *text, const char *needle, const char *what)
{
    ck_assert_msg(strstr(text, needle) != NULL, "%s: expected '%s' in:\n%.3000s", what,
                  needle, text);
}

void assert_prefix(const char *text, const char *prefix)
{
    ck_assert_msg(strncmp(text, prefix, strlen(prefix)) == 0,
                  "expected '%s' at the start of:\n%.3000s", prefix, text);
}

int count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

struct fake fake_start(int type, const char *dir, const char *prog, const char *const *args,
                       const struct spawn_opts *o)
{
    struct fake f = {.fd = -1};
    const char *argv[MAX_ARGS];
    static char words[MAX_ARGS][256];
    int n = 0;

    f.listen_fd = bound_socket(type, &f.port);
    snprintf(f.portstr, sizeof f.portstr, "%d", f.port);
    for (; args[n] != NULL && n < MAX_ARGS - 1; n++) {
        const char *at = strstr(args[n], "PORT");
        argv[n] = args[n];
        if (at == NULL)
            continue;
        snprintf(words[n], sizeof words[n], "%.*s%s%s", (int)(at - args[n]), args[n],
                 f.portstr, at + 4);
        argv[n] = words[n];
    }
    argv[n] = NULL;
    f.p = spawn(dir, prog, argv, o);
    return f;
}

void fake_accept(struct fake *f)
{
    ck_assert_msg(wait_for(f->listen_fd, POLLIN, now_ms() + ms(5000)) == 1,
                  "the program never connected");
    f->fd = accept(f->listen_fd, NULL, NULL);
    ck_assert_msg(f->fd >= 0, "accept: %s", strerror(errno));
}

int fake_finish(struct fake *f, int timeout, char **out, char **err)
{
    int code = finish(&f->p, timeout);
    if (out != NULL)
        *out = slurp(f->p.out);
    if (err != NULL)
        *err = slurp(f->p.err);
    release(&f->p);
    if (f->fd >= 0)
        close(f->fd);
    close(f->listen_fd);
    return code;
}

int server_progs(const struct stage *st, const char *progs[2])
{
    int n = 0;
    if (st->tcp_server != NULL)
        progs[n++] = st->tcp_server;
    if (st->udp_server != NULL && (n == 0 || strcmp(st->udp_server, progs[0]) != 0))
        progs[n++] = st->udp_server;
    return n;
}

int serves_tcp(const struct stage *st, const char *prog)
{
    return st->tcp_server != NULL && strcmp(prog, st->tcp_server) == 0;
}

void assert_busy(int port, const char *when)
{
    char buf[64];
    int fd = tcp_connect(port), eof;
    size_t n = recv_until(fd, buf, sizeof buf - 1, now_ms() + ms(5000), &eof);
    buf[n] = '\0';
    ck_assert_msg(eof && strcmp(buf, "server busy\n") == 0,
                  "%s: the newcomer got '%s'%s, want 'server busy' and a close", when, buf,
                  eof ? "" : " and no close");
    close(fd);
}
