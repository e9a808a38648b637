/*
 * udp.c - the UDP echo server of chapter 02, as one more task on the
 * server's loop.
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
 * What the tasks change: udp_echo() is chapter 02's loop again - receive,
 * echo, receive - with io_recvmsg() where it waited in recvmsg(): the
 * task waits, the loop does not. A datagram the kernel cannot take at
 * once (our send buffer is full) is dropped and counted, as in chapter 05:
 * UDP promises no delivery. A flood of datagrams cannot starve the TCP
 * clients: io_recvmsg() yields every few calls (task_spent()). One thread
 * does everything: the counters are plain numbers.
 */
#include "udp.h"
#include "net.h"
#include "task.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct counters {
    unsigned long long echoed, truncated, looped, failed;
};

/* What udp_echo() was told, and its counters. */
static struct {
    const char *prog;
    int quiet;
    struct counters count;
} udp;

/* socket() -> bind(): a datagram socket needs no listen() and no accept().
 * And no SO_REUSEADDR: for UDP it would let a second server - anybody's -
 * bind the same port and take our traffic. TCP needs it for TIME_WAIT;
 * UDP has no TIME_WAIT. */
int udp_open(const char *prog, const struct sockaddr *sa, socklen_t len, int taken_ok)
{
    char where[ADDR_STRLEN];

    format_addr(sa, where, sizeof where);
    int fd = socket(sa->sa_family, SOCK_DGRAM, 0);
    if (fd < 0)
        die_sys(prog, "socket", where);
    if (bind(fd, sa, len) < 0) {
        if (errno == EADDRINUSE && taken_ok) {
            close(fd);
            return -1;
        }
        die_sys(prog, "bind", where);
    }
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

/* Receive one datagram and echo it to its sender. Returns 0, or -1 when
 * there was none left to receive. */
static int echo_datagram(struct io *io, const struct sockaddr_storage *self, char *buf,
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
    ssize_t n = io_recvmsg(io, &msg, MSG_TRUNC, 0);
    if (n < 0) {
        if (errno == ECANCELED)
            return -1;
        /* Anything else (a pending ICMP error, say) is about one
         * datagram: say so, and go on with the next. */
        log_line("%s: recvmsg: %s\n", udp.prog, strerror(errno));
        return 0;
    }
    format_addr((struct sockaddr *)&ss, peer, sizeof peer);
    if (msg.msg_flags & MSG_TRUNC) {
        count->truncated++;
        if (!quiet)
            log_line("%s: %s sent %zd bytes, more than our %zu-byte buffer: dropped\n",
                     udp.prog, peer, n, size);
        return 0;
    }
    if (is_self(&ss, self)) {
        count->looped++;
        if (!quiet)
            log_line("%s: a datagram claims to come from us (%s): dropped\n", udp.prog,
                     peer);
        return 0;
    }
    /* One sendto() sends the whole datagram or fails: no loop needed. On
     * a non-blocking socket it fails with EAGAIN when the send buffer is
     * full: the datagram is dropped, as a router would drop it. */
    if (sendto(io->watch.fd, buf, (size_t)n, 0, (struct sockaddr *)&ss, msg.msg_namelen) < 0) {
        count->failed++;
        log_line("%s: sendto %s: %s\n", udp.prog, peer, strerror(errno));
        return 0;
    }
    count->echoed++;
    if (!quiet)
        log_line("%s: echoed %zd bytes to %s\n", udp.prog, n, peer);
    return 0;
}

void udp_echo(const char *prog, struct io *io, size_t size, int quiet)
{
    struct sockaddr_storage self;
    socklen_t self_len = sizeof self;

    udp.prog = prog;
    udp.quiet = quiet;
    char *buf = malloc(size);
    if (buf == NULL) {
        log_line("%s: out of memory for the UDP buffer: no UDP echo\n", prog);
        return;
    }
    if (getsockname(io->watch.fd, (struct sockaddr *)&self, &self_len) < 0)
        log_line("%s: getsockname: %s: no UDP echo\n", prog, strerror(errno));
    else
        while (echo_datagram(io, &self, buf, size, quiet, &udp.count) == 0)
            ;
    free(buf);
}

void udp_summary(char *buf, size_t len)
{
    snprintf(buf, len, "%llu datagrams echoed, %llu too large dropped, %llu from ourselves "
             "dropped, %llu failed", udp.count.echoed, udp.count.truncated,
             udp.count.looped, udp.count.failed);
}
