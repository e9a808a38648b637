/*
 * tcp_client.c - talk to the echo server.
 *
 * Interactive: each line typed on stdin goes out, and we wait for exactly
 * that many bytes to come back before reading the next line. At the end of
 * stdin we shutdown(SHUT_WR) - "I have nothing more to say" - and keep
 * reading until the server closes too: the TCP half-close.
 *
 * With -n BYTES we send BYTES of generated data instead, a block at a time,
 * and check every echoed byte: the test that short reads and short writes
 * are handled on both ends.
 *
 * usage: tcp_client [-a HOST] [-p PORT] [-n BYTES]
 */
#include "net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "tcp_client"
#define BLOCK 65536

static void usage(void)
{
    fprintf(stderr, "usage: %s [-a HOST] [-p PORT] [-n BYTES]\n"
                    "  -a HOST  server name or address (default %s)\n"
                    "  -p PORT  server port (default %s)\n"
                    "  -n BYTES send BYTES of test data and check the echo\n"
                    "           (default: echo the lines of stdin)\n",
            PROG, DEFAULT_ADDR, DEFAULT_PORT);
    exit(2);
}

/* recv() until LEN bytes have arrived: TCP may deliver them in any number
 * of pieces. Returns 0, or -1 after saying what went wrong. */
static int recv_exact(int fd, char *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n == 0) {
            fprintf(stderr, "%s: server closed the connection after %zu of %zu bytes\n",
                    PROG, got, len);
            return -1;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "%s: recv: %s\n", PROG, strerror(errno));
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

/* After our shutdown(SHUT_WR) the server has nothing left to send: the
 * next recv() must say EOF. Anything else is an error worth reporting. */
static int expect_eof(int fd)
{
    char c;
    ssize_t n;

    if (shutdown(fd, SHUT_WR) < 0) {
        fprintf(stderr, "%s: shutdown: %s\n", PROG, strerror(errno));
        return -1;
    }
    while ((n = recv(fd, &c, 1, 0)) < 0 && errno == EINTR)
        ;
    if (n == 0)
        return 0;
    if (n < 0)
        fprintf(stderr, "%s: recv: %s\n", PROG, strerror(errno));
    else
        fprintf(stderr, "%s: server sent more than we sent it\n", PROG);
    return -1;
}

/* Send LEN bytes (at most BLOCK) and read their echo into IN. Going a
 * block at a time keeps both sides' socket buffers from filling up: a
 * client that sends megabytes before reading anything deadlocks with an
 * echo server that is blocked sending them back. */
static int round_trip(int fd, const char *out, char *in, size_t len)
{
    if (send_all(fd, out, len) < 0) {
        fprintf(stderr, "%s: send: %s\n", PROG, strerror(errno));
        return -1;
    }
    return recv_exact(fd, in, len);
}

/* Each stdin line out, its echo back to stdout. */
static int echo_lines(int fd)
{
    static char echo[BLOCK];
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;

    while (rc == 0 && (len = getline(&line, &cap, stdin)) > 0) {
        for (size_t off = 0; rc == 0 && off < (size_t)len; off += BLOCK) {
            size_t piece = (size_t)len - off < BLOCK ? (size_t)len - off : BLOCK;
            rc = round_trip(fd, line + off, echo, piece);
            if (rc == 0)
                fwrite(echo, 1, piece, stdout);
        }
        fflush(stdout);
    }
    free(line);
    return rc == 0 ? expect_eof(fd) : rc;
}

/* Byte I of the test data. 251 is prime, so the pattern never lines up with
 * a block size: a block echoed twice, skipped or out of order shows up. */
static unsigned char pattern(unsigned long long i)
{
    return (unsigned char)(i % 251);
}

/* Send TOTAL bytes a block at a time and compare each echoed block. */
static int echo_test(int fd, unsigned long long total)
{
    static char out[BLOCK], in[BLOCK];
    unsigned long long done = 0;

    while (done < total) {
        size_t len = total - done < BLOCK ? (size_t)(total - done) : BLOCK;
        for (size_t i = 0; i < len; i++)
            out[i] = (char)pattern(done + i);
        if (round_trip(fd, out, in, len) < 0)
            return -1;
        for (size_t i = 0; i < len; i++) {
            if (in[i] != out[i]) {
                fprintf(stderr, "%s: byte %llu differs: sent 0x%02x, got 0x%02x\n",
                        PROG, done + i, (unsigned char)out[i], (unsigned char)in[i]);
                return -1;
            }
        }
        done += len;
    }
    if (expect_eof(fd) < 0)
        return -1;
    printf("%s: %llu bytes echoed, all correct\n", PROG, total);
    return 0;
}

int main(int argc, char **argv)
{
    const char *host = DEFAULT_ADDR, *port = DEFAULT_PORT;
    int opt;
    long long total = -1;

    while ((opt = getopt(argc, argv, "a:p:n:")) != -1) {
        switch (opt) {
        case 'a': host = optarg; break;
        case 'p': port = optarg; break;
        case 'n': if ((total = parse_count(optarg, 0, 1LL << 40)) < 0) usage(); break;
        default: usage();
        }
    }
    if (optind != argc || parse_port(port, 1) < 0)
        usage();

    int fd = connect_to(PROG, host, port, SOCK_STREAM);
    if (fd < 0)
        return 1;
    int rc = total >= 0 ? echo_test(fd, (unsigned long long)total) : echo_lines(fd);
    close(fd);
    return rc == 0 && fflush(stdout) == 0 ? 0 : 1;
}
