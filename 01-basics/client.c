/*
 * client.c - connect to the greeting server and print what it says.
 *
 * The server decides when the conversation ends: it closes, and our recv()
 * returns 0 (end of file). Until then we keep reading, because TCP is a
 * byte stream: one send() over there may arrive here as several pieces.
 * No wait is unbounded: connect() and each recv() give up after -T seconds.
 *
 * usage: client [-a HOST] [-p PORT] [-T SECONDS]
 */
#include "net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "client"

static void usage(void)
{
    fprintf(stderr, "usage: %s [-a HOST] [-p PORT] [-T SECONDS]\n"
                    "  -a HOST     server name or address (default %s)\n"
                    "  -p PORT     server port (default %s)\n"
                    "  -T SECONDS  give up on a server silent that long (default %s)\n",
            PROG, DEFAULT_ADDR, DEFAULT_PORT, DEFAULT_TIMEOUT);
    exit(2);
}

/* Copy everything the server sends to stdout until it closes. */
static int print_until_eof(int fd, const struct timeval *timeout)
{
    char buf[4096];

    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            report_wait_failure(PROG, "the greeting", timeout);
            return -1;
        }
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n || fflush(stdout) != 0) {
            fprintf(stderr, "%s: write to stdout: %s\n", PROG, strerror(errno));
            return -1;
        }
    }
}

int main(int argc, char **argv)
{
    const char *host = DEFAULT_ADDR, *port = DEFAULT_PORT;
    struct timeval timeout;
    int opt;

    init_program(PROG);
    parse_seconds(DEFAULT_TIMEOUT, &timeout);
    while ((opt = getopt(argc, argv, "a:p:T:")) != -1) {
        switch (opt) {
        case 'a': host = optarg; break;
        case 'p': if (parse_port(port = optarg, 1) < 0) usage(); break;
        case 'T': if (parse_seconds(optarg, &timeout) < 0) usage(); break;
        default: usage();
        }
    }
    if (optind != argc)
        usage();

    int fd = connect_to(PROG, host, port, SOCK_STREAM, &timeout);
    if (fd < 0)
        return 1;
    int rc = print_until_eof(fd, &timeout);
    close(fd);
    return rc == 0 ? 0 : 1;
}
