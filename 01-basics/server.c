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

#include <errno.h>
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

/* Greet one client by the address accept() told us it has. */
static void serve_client(int fd, const char *peer, unsigned long nth, int quiet)
{
    char line[128];
    int n = snprintf(line, sizeof line, "hello %s, you are client #%lu\n", peer, nth);

    if (send_all(fd, line, (size_t)n) < 0) {
        fprintf(stderr, "%s: send to %s: %s\n", PROG, peer, strerror(errno));
        return;
    }
    if (!quiet)
        fprintf(stderr, "%s: greeted %s (client #%lu)\n", PROG, peer, nth);
}

int main(int argc, char **argv)
{
    const char *addr = DEFAULT_ADDR, *port = DEFAULT_PORT;
    int quiet = 0, opt;

    while ((opt = getopt(argc, argv, "a:p:q")) != -1) {
        switch (opt) {
        case 'a': addr = optarg; break;
        case 'p': port = optarg; break;
        case 'q': quiet = 1; break;
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
            serve_client(fd, peer, ++served, quiet);
        }
        watch_client(-1);
        close(fd);
    }
    watch_listener(-1);
    close(listen_fd);
    return 0;
}
