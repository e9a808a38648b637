/*
 * server.c - the greeting server: the smallest real TCP server.
 *
 * socket() -> bind() -> listen() -> accept() -> send() -> close(), and again.
 * It serves one client at a time ("iterative"): while it talks to one, the
 * others wait in the kernel's listen queue. A greeting is quick, so nobody
 * notices; chapter 02 turns this loop into an echo server and everybody does.
 *
 * usage: server [-a ADDR] [-p PORT] [-q]
 */
#include "net.h"
#include "stop.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "server"

static void usage(void)
{
    fprintf(stderr, "usage: %s [-a ADDR] [-p PORT] [-q]\n"
                    "  -a ADDR  numeric IPv4 or IPv6 address to listen on (default %s)\n"
                    "  -p PORT  port, 0 = any free port (default %s)\n"
                    "  -q       quiet: no per-connection log lines\n",
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

/* Greet one client by the address accept() told us it has. */
static void serve_client(int fd, const char *peer, unsigned long nth, int quiet)
{
    char line[128];
    int n = snprintf(line, sizeof line, "hello %s, you are client #%lu\n", peer, nth);

    if (send_all(fd, line, (size_t)n) < 0) {
        log_line("%s: send to %s: %s\n", PROG, peer, strerror(errno));
        return;
    }
    if (!quiet)
        log_line("%s: greeted %s (client #%lu)\n", PROG, peer, nth);
}

int main(int argc, char **argv)
{
    const char *addr = DEFAULT_ADDR, *port = DEFAULT_PORT;
    int quiet = 0, opt;

    init_program(PROG);
    /* Each option is checked where it is read: "-p 99999 -p 0" is an error
     * too, not "the last one wins". */
    while ((opt = getopt(argc, argv, "a:p:q")) != -1) {
        switch (opt) {
        case 'a': if (!is_numeric_addr(addr = optarg)) usage(); break;
        case 'p': if (parse_port(port = optarg, 0) < 0) usage(); break;
        case 'q': quiet = 1; break;
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
            serve_client(fd, peer, ++served, quiet);
        }
        watch_client(-1);
        close(fd);
    }
    watch_listener(-1);
    close(listen_fd);
    end_program(PROG);
    return rc;
}
