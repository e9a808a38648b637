/*
 * client.c - connect to the greeting server and print what it says.
 *
 * The server decides when the conversation ends: it closes, and our recv()
 * returns 0 (end of file). Until then we keep reading, because TCP is a
 * byte stream: one send() over there may arrive here as several pieces.
 *
 * usage: client [-a HOST] [-p PORT]
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
    fprintf(stderr, "usage: %s [-a HOST] [-p PORT]\n"
                    "  -a HOST  server name or address (default %s)\n"
                    "  -p PORT  server port (default %s)\n",
            PROG, DEFAULT_ADDR, DEFAULT_PORT);
    exit(2);
}

/* Copy everything the server sends to stdout until it closes. */
static int print_until_eof(int fd)
{
    char buf[4096];

    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "%s: recv: %s\n", PROG, strerror(errno));
            return -1;
        }
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) {
            fprintf(stderr, "%s: write to stdout failed\n", PROG);
            return -1;
        }
    }
}

int main(int argc, char **argv)
{
    const char *host = DEFAULT_ADDR, *port = DEFAULT_PORT;
    int opt;

    while ((opt = getopt(argc, argv, "a:p:")) != -1) {
        switch (opt) {
        case 'a': host = optarg; break;
        case 'p': port = optarg; break;
        default: usage();
        }
    }
    if (optind != argc || parse_port(port, 1) < 0)
        usage();

    int fd = connect_to(PROG, host, port, SOCK_STREAM);
    if (fd < 0)
        return 1;
    int rc = print_until_eof(fd);
    close(fd);
    return rc == 0 && fflush(stdout) == 0 ? 0 : 1;
}
