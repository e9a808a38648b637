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
 * job (see udp_client -t and -r). And a datagram's source address is only
 * what the sender wrote into it: we never echo to ourselves.
 *
 * usage: udp_server [-a ADDR] [-p PORT] [-q] [-b BYTES]
 */
#include "net.h"
#include "stop.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "udp_server"

struct counters {
    unsigned long long echoed, truncated, looped, failed;
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

/* socket() -> bind(): a datagram socket needs no listen() and no accept().
 * And no SO_REUSEADDR: for UDP it would let a second server - anybody's -
 * bind the same port and take our traffic. TCP needs it for TIME_WAIT;
 * UDP has no TIME_WAIT. */
static int open_udp_socket(const char *addr, const char *port)
{
    struct addrinfo *ai = server_address(PROG, addr, port, SOCK_DGRAM);
    char where[ADDR_STRLEN];

    format_addr(ai->ai_addr, where, sizeof where);
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0)
        die_sys(PROG, "socket", where);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        die_sys(PROG, "bind", where);
    freeaddrinfo(ai);
    return fd;
}

/* Is FROM our own address (SELF)? A datagram forged to come from us would
 * make us echo to ourselves, and then echo that, for ever. With a wildcard
 * address (0.0.0.0, ::) any local address with our port may be us. */
static int is_self(const struct sockaddr_storage *from, const struct sockaddr_storage *self)
{
    if (from->ss_family != self->ss_family)
        return 0;
    if (from->ss_family == AF_INET) {
        const struct sockaddr_in *f = (const void *)from, *s = (const void *)self;
        return f->sin_port == s->sin_port && (s->sin_addr.s_addr == htonl(INADDR_ANY) ||
                                              f->sin_addr.s_addr == s->sin_addr.s_addr);
    }
    const struct sockaddr_in6 *f = (const void *)from, *s = (const void *)self;
    return f->sin6_port == s->sin6_port &&
           (IN6_IS_ADDR_UNSPECIFIED(&s->sin6_addr) ||
            memcmp(&f->sin6_addr, &s->sin6_addr, sizeof s->sin6_addr) == 0);
}

/* Receive one datagram and echo it to its sender. */
static void echo_datagram(int fd, const struct sockaddr_storage *self, char *buf,
                          size_t size, int quiet, struct counters *count)
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
            log_line("%s: recvmsg: %s\n", PROG, strerror(errno));
        return;
    }
    format_addr((struct sockaddr *)&ss, peer, sizeof peer);
    if (msg.msg_flags & MSG_TRUNC) {
        count->truncated++;
        if (!quiet)
            log_line("%s: %s sent %zd bytes, more than our %zu-byte buffer: dropped\n",
                     PROG, peer, n, size);
        return;
    }
    if (is_self(&ss, self)) {
        count->looped++;
        if (!quiet)
            log_line("%s: a datagram claims to come from us (%s): dropped\n", PROG, peer);
        return;
    }
    /* One sendto() sends the whole datagram or fails: no loop needed. */
    if (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&ss, msg.msg_namelen) < 0) {
        count->failed++;
        log_line("%s: sendto %s: %s\n", PROG, peer, strerror(errno));
        return;
    }
    count->echoed++;
    if (!quiet)
        log_line("%s: echoed %zd bytes to %s\n", PROG, n, peer);
}

int main(int argc, char **argv)
{
    const char *addr = DEFAULT_ADDR, *port = DEFAULT_PORT;
    int quiet = 0, opt;
    long long size = MAX_DATAGRAM;

    init_program(PROG);
    /* Each option is checked where it is read: "-p 99999 -p 0" is an error
     * too, not "the last one wins". */
    while ((opt = getopt(argc, argv, "a:p:qb:")) != -1) {
        switch (opt) {
        case 'a': if (!is_numeric_addr(addr = optarg)) usage(); break;
        case 'p': if (parse_port(port = optarg, 0) < 0) usage(); break;
        case 'q': quiet = 1; break;
        case 'b': if ((size = parse_count(optarg, 1, MAX_DATAGRAM)) < 0) usage(); break;
        default: usage();
        }
    }
    if (optind != argc)
        usage();

    char *buf = malloc((size_t)size);
    if (buf == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        return 1;
    }
    install_stop_handlers(PROG);
    raise_fd_limit(PROG);
    int fd = open_udp_socket(addr, port);
    struct sockaddr_storage self;
    socklen_t self_len = sizeof self;
    if (getsockname(fd, (struct sockaddr *)&self, &self_len) < 0)
        die_sys(PROG, "getsockname", "of our own socket");
    /* The stop signal's shutdown() wakes a blocked recvmsg() on Linux too;
     * it then returns 0 and echo_datagram() sees the stop flag. */
    watch_listener(fd);
    announce_listening(PROG, fd);

    struct counters count = {0, 0, 0, 0};
    while (!stop_requested())
        echo_datagram(fd, &self, buf, (size_t)size, quiet, &count);

    watch_listener(-1);
    close(fd);
    free(buf);
    log_line("%s: %llu datagrams echoed, %llu too large dropped, %llu from ourselves "
             "dropped, %llu failed\n", PROG, count.echoed, count.truncated, count.looped,
             count.failed);
    end_program(PROG);
    return 0;
}
