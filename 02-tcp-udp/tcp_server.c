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

#include <errno.h>
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

/* Bound how long recv() and send() may block on this client. Without it,
 * one silent client holds an iterative server for ever. */
static void set_idle_timeout(int fd, const struct timeval *idle)
{
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, idle, sizeof *idle);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, idle, sizeof *idle);
}

/* Send each echo at once. With Nagle's algorithm on, TCP holds back a
 * piece smaller than a full segment until the previous one is
 * acknowledged, and the client may delay that ACK by up to 40 ms: a
 * 64 KiB echo sent back as four 16 KiB pieces would stall on every one. */
static void disable_nagle(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
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
        fprintf(stderr, "%s: %s connected (client #%lu)\n", PROG, peer, nth);
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
        fprintf(stderr, "%s: %s closed after %llu bytes echoed: %s\n", PROG, peer,
                echoed, why_closed(err));
}

int main(int argc, char **argv)
{
    const char *addr = DEFAULT_ADDR, *port = DEFAULT_PORT;
    int quiet = 0, opt;
    struct timeval idle = {0, 0};

    while ((opt = getopt(argc, argv, "a:p:qt:")) != -1) {
        switch (opt) {
        case 'a': addr = optarg; break;
        case 'p': port = optarg; break;
        case 'q': quiet = 1; break;
        case 't': if (parse_seconds(optarg, &idle) < 0) usage(); break;
        default: usage();
        }
    }
    if (optind != argc || !is_numeric_addr(addr) || parse_port(port, 0) < 0)
        usage();

    install_signal_handlers();
    int listen_fd = open_server_socket(PROG, addr, port, SOCK_STREAM);
    watch_listener(listen_fd);
    announce_listening(listen_fd);

    unsigned long served = 0;
    while (!stop_requested()) {
        struct sockaddr_storage ss;
        char peer[ADDR_STRLEN];

        /* accept() blocks until a client has connected, then hands us a
         * new socket for that one client; listen_fd keeps listening. */
        int fd = accept_client(PROG, listen_fd, &ss);
        if (fd < 0) {
            if (stop_requested())
                break;
            fprintf(stderr, "%s: accept: %s\n", PROG, strerror(errno));
            close(listen_fd);
            return 1;
        }
        watch_client(fd);
        if (!stop_requested()) {
            format_addr((struct sockaddr *)&ss, peer, sizeof peer);
            disable_nagle(fd);
            if (idle.tv_sec != 0 || idle.tv_usec != 0)
                set_idle_timeout(fd, &idle);
            serve_client(fd, peer, ++served, quiet);
        }
        watch_client(-1);
        close(fd);
    }
    watch_listener(-1);
    close(listen_fd);
    return 0;
}
