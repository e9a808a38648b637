/*
 * udp_client.c - send datagrams to the echo server and wait for replies.
 *
 * UDP promises nothing: the request or the reply may be lost and nobody
 * tells us. So a UDP client must decide how long to wait (-t) and how often
 * to send again (-r), and must recognise a reply that is not the one it is
 * waiting for (a late answer to an earlier try).
 *
 * We connect() the socket even though UDP has no connection: it fixes the
 * peer, so recv() accepts datagrams only from the server, and an ICMP "port
 * unreachable" comes back to us as ECONNREFUSED instead of a silent timeout.
 *
 * usage: udp_client [-a HOST] [-p PORT] [-t SECONDS] [-r RETRIES]
 *                   [-n BYTES | MESSAGE...]
 */
#include "net.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROG "udp_client"

struct exchange {
    int fd;
    int retries;
    int timeout_ms;         /* how long one try waits for its reply */
    char peer[ADDR_STRLEN];
    char reply[MAX_DATAGRAM];
};

static void usage(void)
{
    fprintf(stderr, "usage: %s [-a HOST] [-p PORT] [-t SECONDS] [-r RETRIES] [-n BYTES | MESSAGE...]\n"
                    "  -a HOST     server name or address (default %s)\n"
                    "  -p PORT     server port (default %s)\n"
                    "  -t SECONDS  how long to wait for each reply (default 1)\n"
                    "  -r RETRIES  how often to send again when no reply came (default 2)\n"
                    "  -n BYTES    send one datagram of BYTES test bytes and check the echo\n"
                    "  MESSAGE     each one is a datagram; without any, each stdin line is\n",
            PROG, DEFAULT_ADDR, DEFAULT_PORT);
    exit(2);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Wait until DEADLINE (a now_ms() value) for the datagram MSG to come
 * back. Returns 1 when it came, 0 when the deadline passed, -1 on error
 * (said). Other datagrams are reported and ignored; poll() is given only
 * the time that is left, so however many come, we stop at the deadline. */
static int wait_for_echo(struct exchange *x, const char *msg, size_t len, long long deadline)
{
    struct pollfd p = {.fd = x->fd, .events = POLLIN};

    for (long long left; (left = deadline - now_ms()) > 0;) {
        int ready = poll(&p, 1, (int)left);
        if (ready == 0 || (ready < 0 && errno == EINTR))
            continue;
        ssize_t n = ready < 0 ? -1 : recv(x->fd, x->reply, sizeof x->reply, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n < 0) {
            fprintf(stderr, "%s: recv from %s: %s\n", PROG, x->peer, strerror(errno));
            return -1;
        }
        if ((size_t)n == len && memcmp(x->reply, msg, len) == 0)
            return 1;
        fprintf(stderr, "%s: ignoring a %zd-byte reply that does not match\n", PROG, n);
    }
    return 0;
}

/* Send MSG and wait for the identical datagram to come back, trying again
 * after each timeout. Returns 0 when it came, -1 after saying why not. */
static int send_and_wait(struct exchange *x, const char *msg, size_t len)
{
    for (int try = 0; try <= x->retries; try++) {
        if (send(x->fd, msg, len, 0) < 0) {
            fprintf(stderr, "%s: send to %s: %s\n", PROG, x->peer, strerror(errno));
            return -1;
        }
        int got = wait_for_echo(x, msg, len, now_ms() + x->timeout_ms);
        if (got != 0)
            return got > 0 ? 0 : -1;
        if (try < x->retries)
            fprintf(stderr, "%s: no reply from %s, sending again (retry %d of %d)\n",
                    PROG, x->peer, try + 1, x->retries);
    }
    fprintf(stderr, "%s: no reply from %s after %d tries: lost\n", PROG, x->peer,
            x->retries + 1);
    return -1;
}

/* Echo one text message; print the reply. */
static int echo_message(struct exchange *x, const char *msg, size_t len)
{
    if (send_and_wait(x, msg, len) < 0)
        return -1;
    if (fwrite(x->reply, 1, len, stdout) != len || putchar('\n') == EOF ||
        fflush(stdout) != 0) {
        fprintf(stderr, "%s: write to stdout: %s\n", PROG, strerror(errno));
        return -1;
    }
    return 0;
}

/* Each line of stdin, without its newline, is one datagram. */
static int echo_lines(struct exchange *x)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;

    while (rc == 0 && (len = getline(&line, &cap, stdin)) > 0) {
        if (line[len - 1] == '\n')
            len--;
        rc = echo_message(x, line, (size_t)len);
    }
    free(line);
    return rc;
}

/* One datagram of SIZE test bytes; send_and_wait compares them. */
static int echo_test(struct exchange *x, size_t size)
{
    char *msg = malloc(size + 1);
    int rc;

    if (msg == NULL)
        return -1;
    for (size_t i = 0; i < size; i++)
        msg[i] = test_byte(i);
    rc = send_and_wait(x, msg, size);
    free(msg);
    if (rc == 0)
        printf("%s: %zu-byte datagram echoed, all correct\n", PROG, size);
    return rc;
}

int main(int argc, char **argv)
{
    const char *host = DEFAULT_ADDR, *port = DEFAULT_PORT;
    struct timeval timeout = {1, 0};
    long long retries = 2, size = -1;
    int opt, rc = 0;

    init_program(PROG);
    while ((opt = getopt(argc, argv, "a:p:t:r:n:")) != -1) {
        switch (opt) {
        case 'a': host = optarg; break;
        case 'p': if (parse_port(port = optarg, 1) < 0) usage(); break;
        case 't': if (parse_seconds(optarg, &timeout) < 0) usage(); break;
        case 'r': if ((retries = parse_count(optarg, 0, 100)) < 0) usage(); break;
        case 'n': if ((size = parse_count(optarg, 0, MAX_DATAGRAM - 1)) < 0) usage(); break;
        default: usage();
        }
    }
    if (size >= 0 && optind != argc)
        usage();

    struct exchange *x = malloc(sizeof *x);
    if (x == NULL)
        return 1;
    /* connect() on a UDP socket sends nothing and so waits for nothing:
     * no timeout to give it. */
    x->fd = connect_to(PROG, host, port, SOCK_DGRAM, NULL);
    if (x->fd < 0) {
        free(x);
        return 1;
    }
    x->retries = (int)retries;
    x->timeout_ms = (int)(timeout.tv_sec * 1000 + timeout.tv_usec / 1000);
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;
    if (getpeername(x->fd, (struct sockaddr *)&ss, &sslen) < 0) {
        fprintf(stderr, "%s: getpeername: %s\n", PROG, strerror(errno));
        close(x->fd);
        free(x);
        return 1;
    }
    format_addr((struct sockaddr *)&ss, x->peer, sizeof x->peer);

    if (size >= 0)
        rc = echo_test(x, (size_t)size);
    else if (optind < argc)
        for (int i = optind; rc == 0 && i < argc; i++)
            rc = echo_message(x, argv[i], strlen(argv[i]));
    else
        rc = echo_lines(x);

    close(x->fd);
    free(x);
    if (rc == 0 && fflush(stdout) != 0) {
        fprintf(stderr, "%s: write to stdout: %s\n", PROG, strerror(errno));
        rc = -1;
    }
    return rc == 0 ? 0 : 1;
}
