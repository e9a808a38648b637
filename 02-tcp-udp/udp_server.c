/*
 * udp_server.c - the UDP echo server.
 *
 * No listen(), no accept(), no connection: one socket receives datagrams
 * from anybody, and recvmsg() tells us who sent each one so we can answer
 * with sendto(). A datagram is a message with edges: it arrives whole or not
 * at all, so there is no read loop here - but it must fit in our buffer. If
 * it does not, the kernel cuts it to the buffer and throws the rest away;
 * MSG_TRUNC tells us so, and we drop it rather than echo a damaged copy.
 *
 * Nothing is promised: a datagram may be lost, duplicated or reordered on a
 * real network, and our reply may be lost too. Recovering is the client's
 * job (see udp_client -t and -r).
 *
 * usage: udp_server [-a ADDR] [-p PORT] [-q] [-b BYTES]
 */
#include "net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "udp_server"
/* The largest UDP payload: 65,507 bytes over IPv4, 65,527 over IPv6. A
 * 64 KiB buffer holds any datagram either can carry. */
#define MAX_DATAGRAM 65536

struct counters {
    unsigned long long echoed, truncated, failed;
};

static void usage(void)
{
    fprintf(stderr, "usage: %s [-a ADDR] [-p PORT] [-q] [-b BYTES]\n"
                    "  -a ADDR   numeric IPv4 or IPv6 address to listen on (default %s)\n"
                    "  -p PORT   port, 0 = any free port (default %s)\n"
                    "  -q        quiet: no per-datagram log lines\n"
                    "  -b BYTES  receive buffer, 1..%d (default %d): a larger\n"
                    "            datagram is counted and dropped, never echoed cut\n",
            PROG, DEFAULT_ADDR, DEFAULT_PORT, MAX_DATAGRAM, MAX_DATAGRAM);
    exit(2);
}

/* Receive one datagram and echo it to its sender. */
static void echo_datagram(int fd, char *buf, size_t size, int quiet,
                          struct counters *count)
{
    struct sockaddr_storage ss;
    struct iovec iov = {.iov_base = buf, .iov_len = size};
    struct msghdr msg = {0};
    char peer[ADDR_STRLEN];

    msg.msg_name = &ss;
    msg.msg_namelen = sizeof ss;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    /* MSG_TRUNC in the flags argument is a Linux extension: recvmsg() then
     * returns the datagram's real length even when it did not fit. The
     * portable signal is MSG_TRUNC in msg.msg_flags, which we test. */
    ssize_t n = recvmsg(fd, &msg, MSG_TRUNC);
    if (n < 0 || stop_requested()) {
        if (n < 0 && errno != EINTR)
            fprintf(stderr, "%s: recvmsg: %s\n", PROG, strerror(errno));
        return;
    }
    format_addr((struct sockaddr *)&ss, peer, sizeof peer);
    if (msg.msg_flags & MSG_TRUNC) {
        count->truncated++;
        if (!quiet)
            fprintf(stderr, "%s: %s sent %zd bytes, more than our %zu-byte buffer: dropped\n",
                    PROG, peer, n, size);
        return;
    }
    /* One sendto() sends the whole datagram or fails: no loop needed. */
    if (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&ss, msg.msg_namelen) < 0) {
        count->failed++;
        fprintf(stderr, "%s: sendto %s: %s\n", PROG, peer, strerror(errno));
        return;
    }
    count->echoed++;
    if (!quiet)
        fprintf(stderr, "%s: echoed %zd bytes to %s\n", PROG, n, peer);
}

int main(int argc, char **argv)
{
    const char *addr = DEFAULT_ADDR, *port = DEFAULT_PORT;
    int quiet = 0, opt;
    long long size = MAX_DATAGRAM;

    while ((opt = getopt(argc, argv, "a:p:qb:")) != -1) {
        switch (opt) {
        case 'a': addr = optarg; break;
        case 'p': port = optarg; break;
        case 'q': quiet = 1; break;
        case 'b': if ((size = parse_count(optarg, 1, MAX_DATAGRAM)) < 0) usage(); break;
        default: usage();
        }
    }
    if (optind != argc || !is_numeric_addr(addr) || parse_port(port, 0) < 0)
        usage();

    char *buf = malloc((size_t)size);
    if (buf == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        return 1;
    }
    install_signal_handlers();
    int fd = open_server_socket(PROG, addr, port, SOCK_DGRAM);
    /* The stop signal's shutdown() wakes a blocked recvmsg() on Linux too;
     * it then returns 0 and echo_datagram() sees the stop flag. */
    watch_listener(fd);
    announce_listening(fd);

    struct counters count = {0, 0, 0};
    while (!stop_requested())
        echo_datagram(fd, buf, (size_t)size, quiet, &count);

    watch_listener(-1);
    close(fd);
    free(buf);
    fprintf(stderr, "%s: %llu datagrams echoed, %llu too large dropped, %llu failed\n",
            PROG, count.echoed, count.truncated, count.failed);
    return 0;
}
