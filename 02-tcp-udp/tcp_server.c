/*
 * tcp_server.c - the iterative TCP echo server.
 *
 * Chapter 01's loop, but each client now gets a conversation instead of a
 * greeting: every byte it sends comes back, in order, until it closes its
 * side. TCP is a byte stream, so recv() returns whatever has arrived (one
 * byte or many "messages" glued together) and send() may take only part of
 * a buffer: we loop on both and never assume a message boundary.
 *
 * Still one client at a time. While one client is connected, the next one
 * is accepted by the kernel into the listen queue and then waits, however
 * long the first one stays: that limitation is this chapter's lesson, and
 * -t (idle timeout) is the only defence an iterative server has.
 *
 * usage: tcp_server [-a ADDR] [-p PORT] [-q] [-t SECONDS]
 */
#include "net.h"
#include "stop.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "tcp_server"
#define ECHO_BUF 16384

static void usage(void)
{
    fprintf(stderr, "usage: %s [-a ADDR] [-p PORT] [-q] [-t SECONDS]\n"
                    "  -a ADDR  numeric IPv4 or IPv6 address to listen on (default %s)\n"
                    "  -p PORT  port, 0 = any free port (default %s)\n"
                    "  -q       quiet: no per-connection log lines\n"
                    "  -t SECONDS  close a client that neither sends nor reads for\n"
                    "              that long (default: wait forever)\n",
            PROG, DEFAULT_ADDR, DEFAULT_PORT);
    exit(2);
}

/* socket() -> bind() -> listen(): a socket that takes connections. */
static int open_listener(const char *addr, const char *port)
{
    struct addrinfo *ai = server_address(PROG, addr, port, SOCK_STREAM);
    char where[ADDR_STRLEN];
    int one = 1;

    format_addr(ai->ai_addr, where, sizeof where);
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0)
        die_sys(PROG, "socket", where);
    /* Without SO_REUSEADDR a restarted server cannot bind while connections
     * of its previous run sit in TIME_WAIT. (A second server still cannot
     * bind a port that one is listening on: TCP refuses that anyway.) */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die_sys(PROG, "setsockopt SO_REUSEADDR", where);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        die_sys(PROG, "bind", where);
    /* From here on the kernel completes handshakes by itself and queues
     * the connections, up to the backlog, until we accept() them. */
    if (listen(fd, SOMAXCONN) < 0)
        die_sys(PROG, "listen", where);
    freeaddrinfo(ai);
    return fd;
}

/* Set a client's socket up for echoing; -1 (errno set) if the kernel
 * refuses, and then we close that one connection rather than serve it
 * half-configured.
 *
 * TCP_NODELAY sends each echo at once. With Nagle's algorithm on, TCP
 * holds back a piece smaller than a full segment until the previous one is
 * acknowledged, and the client may delay that ACK by up to 40 ms: a 64 KiB
 * echo sent back as four 16 KiB pieces would stall on every one.
 *
 * SO_RCVTIMEO and SO_SNDTIMEO bound how long recv() and send() may block
 * on this client. Without them, one silent client holds an iterative
 * server for ever. */
static int prepare_client(int fd, const struct timeval *idle)
{
    int one = 1;

    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        return -1;
    if (idle->tv_sec == 0 && idle->tv_usec == 0)
        return 0;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, idle, sizeof *idle) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, idle, sizeof *idle) < 0)
        return -1;
    return 0;
}

/* Say why the conversation ended, in the words a reader would use. */
static const char *why_closed(int err)
{
    if (err == 0)
        return "client closed";
    if (err == EAGAIN || err == EWOULDBLOCK)
        return "idle timeout";
    if (err == EINTR)
        return "server stopping";
    return strerror(err);
}

/* Echo everything the client sends until it closes its sending side
 * (close() or shutdown(SHUT_WR): both read as EOF here), then return. */
static void serve_client(int fd, const char *peer, unsigned long nth, int quiet)
{
    char buf[ECHO_BUF];
    unsigned long long echoed = 0;
    int err = 0;

    if (!quiet)
        log_line("%s: %s connected (client #%lu)\n", PROG, peer, nth);
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR && !stop_requested())
                continue;
            err = errno;
            break;
        }
        /* Send back exactly what arrived, however little or much it was. */
        if (send_all(fd, buf, (size_t)n) < 0) {
            err = errno;
            break;
        }
        echoed += (unsigned long long)n;
    }
    if (stop_requested())
        err = EINTR;
    if (!quiet)
        log_line("%s: %s closed after %llu bytes echoed: %s\n", PROG, peer, echoed,
                 why_closed(err));
}

int main(int argc, char **argv)
{
    const char *addr = DEFAULT_ADDR, *port = DEFAULT_PORT;
    int quiet = 0, opt;
    struct timeval idle = {0, 0};

    init_program(PROG);
    /* Each option is checked where it is read: "-p 99999 -p 0" is an error
     * too, not "the last one wins". */
    while ((opt = getopt(argc, argv, "a:p:qt:")) != -1) {
        switch (opt) {
        case 'a': if (!is_numeric_addr(addr = optarg)) usage(); break;
        case 'p': if (parse_port(port = optarg, 0) < 0) usage(); break;
        case 'q': quiet = 1; break;
        case 't': if (parse_seconds(optarg, &idle) < 0) usage(); break;
        default: usage();
        }
    }
    if (optind != argc)
        usage();

    install_stop_handlers(PROG);
    raise_fd_limit(PROG);
    int listen_fd = open_listener(addr, port);
    watch_listener(listen_fd);
    announce_listening(PROG, listen_fd);

    unsigned long served = 0;
    int rc = 0;
    while (!stop_requested()) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        char peer[ADDR_STRLEN];

        /* accept() blocks until a client has connected, then hands us a
         * new socket for that one client; listen_fd keeps listening. */
        int fd = accept(listen_fd, (struct sockaddr *)&ss, &len);
        if (fd < 0) {
            if (stop_requested() || can_retry_accept(PROG, errno))
                continue;
            log_line("%s: accept: %s\n", PROG, strerror(errno));
            rc = 1;
            break;
        }
        watch_client(fd);
        if (!stop_requested()) {
            format_addr((struct sockaddr *)&ss, peer, sizeof peer);
            if (prepare_client(fd, &idle) == 0)
                serve_client(fd, peer, ++served, quiet);
            else
                log_line("%s: %s: setsockopt: %s (closed)\n", PROG, peer, strerror(errno));
        }
        watch_client(-1);
        close(fd);
    }
    watch_listener(-1);
    close(listen_fd);
    end_program(PROG);
    return rc;
}
