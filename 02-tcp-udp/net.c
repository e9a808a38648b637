/*
 * net.c - address handling, socket set-up and clean shutdown, shared by the
 * programs of this chapter. Read tcp_server.c first; come here when it calls in.
 */
#include "net.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void die_sys(const char *prog, const char *call, const char *what)
{
    fprintf(stderr, "%s: %s %s: %s\n", prog, call, what, strerror(errno));
    exit(1);
}

long long parse_count(const char *s, long long min, long long max)
{
    char *end;

    /* strtoll() alone would also take " 80", "+80" and "80abc". */
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    return v;
}

int parse_port(const char *s, int min_port)
{
    return (int)parse_count(s, min_port, 65535);
}

int parse_seconds(const char *s, struct timeval *tv)
{
    char *end;

    if (!isdigit((unsigned char)s[0]) && s[0] != '.')
        return -1;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v > 0) || v > 1e6)
        return -1;
    tv->tv_sec = (time_t)v;
    tv->tv_usec = (suseconds_t)((v - (double)tv->tv_sec) * 1e6);
    if (tv->tv_sec == 0 && tv->tv_usec == 0)
        tv->tv_usec = 1;                /* a zero timeval means "never" */
    return 0;
}

int is_numeric_addr(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

void format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    unsigned port;

    /* sockaddr_storage-style code: look at the family, never assume IPv4. */
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        port = ntohs(s6->sin6_port);
        snprintf(buf, len, "[%s]:%u", host, port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        port = ntohs(s4->sin_port);
        snprintf(buf, len, "%s:%u", host, port);
    }
}

int open_server_socket(const char *prog, const char *addr, const char *port,
                       int type)
{
    struct addrinfo hints = {0}, *res;
    char what[ADDR_STRLEN];

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = type;
    /* Numeric address and port: a server should never wait on DNS to start. */
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    int rc = getaddrinfo(addr, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "%s: %s:%s: %s\n", prog, addr, port, gai_strerror(rc));
        exit(1);
    }
    format_addr(res->ai_addr, what, sizeof what);

    int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd < 0)
        die_sys(prog, "socket", what);
    /* Without SO_REUSEADDR a restarted server cannot bind while old
     * connections of the previous run sit in TIME_WAIT. */
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die_sys(prog, "setsockopt SO_REUSEADDR", what);
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
        die_sys(prog, "bind", what);
    if (type == SOCK_STREAM && listen(fd, SOMAXCONN) < 0)
        die_sys(prog, "listen", what);
    freeaddrinfo(res);
    return fd;
}

void announce_listening(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char where[ADDR_STRLEN];

    /* With port 0 the kernel chose the port: ask it which. */
    getsockname(fd, (struct sockaddr *)&ss, &len);
    format_addr((struct sockaddr *)&ss, where, sizeof where);
    printf("listening on %s\n", where);
    /* stdout is a pipe when a test or script starts us: flush, or the line
     * sits in our buffer and the reader waits forever. */
    fflush(stdout);
}

/* Errors accept() returns for one connection that failed before we took
 * it (the client gave up while queued, or the network between us broke):
 * accept(2) says to treat them like "try again". */
static int is_per_connection_error(int err)
{
    switch (err) {
    case EINTR: case ECONNABORTED: case EPROTO: case ENETDOWN: case ENOPROTOOPT:
    case EHOSTUNREACH: case EOPNOTSUPP: case ENETUNREACH:
#ifdef ENONET                   /* Linux's extras, not in POSIX */
    case ENONET: case EHOSTDOWN:
#endif
        return 1;
    default:
        return 0;
    }
}

int accept_client(const char *prog, int listen_fd, struct sockaddr_storage *peer)
{
    for (;;) {
        socklen_t len = sizeof *peer;
        int fd = accept(listen_fd, (struct sockaddr *)peer, &len);
        if (fd >= 0 || stop_requested())
            return fd;
        if (is_per_connection_error(errno))
            continue;
        if (errno != EMFILE && errno != ENFILE && errno != ENOBUFS && errno != ENOMEM)
            return -1;
        /* Out of file descriptors or memory: the next accept() would fail
         * the same way at once, so pause instead of spinning, and retry. */
        fprintf(stderr, "%s: accept: %s (retrying)\n", prog, strerror(errno));
        nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
    }
}

int connect_to(const char *prog, const char *host, const char *port, int type)
{
    struct addrinfo hints = {0}, *res, *ai;
    char what[ADDR_STRLEN] = "";
    int fd = -1, saved_errno = 0;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = type;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, host, gai_strerror(rc));
        return -1;
    }
    /* A name may have several addresses ("localhost" is ::1 and 127.0.0.1):
     * try each in turn, like Beej's "connect to the first we can". */
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        format_addr(ai->ai_addr, what, sizeof what);
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            saved_errno = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        saved_errno = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        fprintf(stderr, "%s: connect %s: %s\n", prog, what, strerror(saved_errno));
    return fd;
}

int send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    /* send() may take only part of the buffer; loop until it took it all.
     * MSG_NOSIGNAL: a vanished peer gives EPIPE here, not a fatal SIGPIPE. */
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR && !stop_requested())
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Stopping cleanly. The handler may only touch what is async-signal-safe:
 * a flag, and shutdown() (POSIX lists it as safe). We install it without
 * SA_RESTART, so a blocking accept()/recv() returns EINTR and the loop sees
 * the flag. That alone has a race: a signal that lands just after the loop
 * checked the flag but before it blocked would be missed, and the server
 * would sleep until the next client. So the handler also shuts down the
 * sockets the loop may block on: on Linux that wakes a blocked accept() or
 * recv() at once, and makes a later one return immediately.
 */
static volatile sig_atomic_t stop_flag;
static volatile sig_atomic_t watched_listener = -1;
static volatile sig_atomic_t watched_client = -1;

static void on_stop_signal(int sig)
{
    int saved_errno = errno;

    (void)sig;
    stop_flag = 1;
    if (watched_listener >= 0)
        shutdown(watched_listener, SHUT_RDWR);
    if (watched_client >= 0)
        shutdown(watched_client, SHUT_RDWR);
    errno = saved_errno;
}

void install_signal_handlers(void)
{
    struct sigaction sa = {0};

    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: blocking calls return EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* Writing to a peer that has gone raises SIGPIPE, whose default action
     * kills the whole server. One client's bad luck must cost only its own
     * connection, so we take the EPIPE error instead. */
    signal(SIGPIPE, SIG_IGN);
}

int stop_requested(void)
{
    return stop_flag;
}

void watch_listener(int fd)
{
    watched_listener = fd;
}

void watch_client(int fd)
{
    watched_client = fd;
}
