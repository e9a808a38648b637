/*
 * client.c - talk to the echo server, and check everything it echoes;
 * with -c, over many connections at once.
 *
 * Interactive: each line typed on stdin goes out, and we wait for exactly
 * that many bytes to come back, compare them with the line, and print them
 * before reading the next line. At the end of stdin we shutdown(SHUT_WR) -
 * "I have nothing more to say" - and keep reading until the server closes
 * too: the TCP half-close.
 *
 * With -n BYTES we send BYTES of generated data instead, a block at a time,
 * and check every echoed byte: the test that short reads and short writes
 * are handled on both ends.
 *
 * With -m COUNT we send COUNT messages, each framed by a 4-byte length,
 * glued together and cut apart at odd places, and put the echoed stream
 * back together into messages: framing, the answer to "sticky packets".
 *
 * With -c N, N connections at once, each in a thread of its own doing -n
 * or -m and checking its own echo, and one line at the end: how many
 * succeeded, how many bytes came back checked, how long it all took.
 * Each thread has its own struct link, so they share nothing but stderr
 * (and stdio locks each fprintf(), so their lines never mix).
 *
 * No wait is unbounded: connect() and each recv() give up after -T seconds.
 *
 * usage: client [-a HOST] [-p PORT] [-T SECONDS] [-c CONNS] [-n BYTES | -m COUNT]
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROG "client"
#define BLOCK 65536
/* Each connection holds 128 KiB of buffers (struct link): 1,000 of them
 * take 128 MiB. */
#define MAX_CONNS 1000
/* The largest message -m sends, and so the largest length it accepts: a
 * length read off the wire is checked before it is trusted. */
#define MAX_MESSAGE 1000

/* One connection to the server, how long we wait for it, and the buffers
 * for what we send and what comes back (no function-static buffers: two
 * threads would share them). NAME starts every message about it; BYTES
 * counts what came back checked; with QUIET it prints no line of its own. */
struct link {
    int fd;
    struct timeval timeout;
    char name[48];
    int quiet;
    unsigned long long bytes;
    char out[BLOCK], in[BLOCK];
};

static void usage(void)
{
    fprintf(stderr, "usage: %s [-a HOST] [-p PORT] [-T SECONDS] [-c CONNS] [-n BYTES | -m COUNT]\n"
                    "  -a HOST     server name or address (default %s)\n"
                    "  -p PORT     server port (default %s)\n"
                    "  -T SECONDS  give up on a server silent that long (default %s)\n"
                    "  -c CONNS    1..%d connections at once, a thread each, each\n"
                    "              doing -n or -m (default 1)\n"
                    "  -n BYTES    send BYTES of test data and check the echo\n"
                    "  -m COUNT    send COUNT length-prefixed messages, glued together\n"
                    "              and cut apart, and check each echoed message\n"
                    "              (default: echo the lines of stdin)\n",
            PROG, DEFAULT_ADDR, DEFAULT_PORT, DEFAULT_TIMEOUT, MAX_CONNS);
    exit(2);
}

/* recv() once, into BUF of LEN bytes, waiting for WHAT. Returns the count,
 * or -1 after saying what went wrong (a close counts as wrong: we only
 * call this while we still expect bytes). */
static ssize_t recv_some(struct link *l, char *buf, size_t len, const char *what)
{
    for (;;) {
        ssize_t n = recv(l->fd, buf, len, 0);
        if (n > 0)
            return n;
        if (n == 0) {
            fprintf(stderr, "%s: server closed the connection while we waited for %s\n",
                    l->name, what);
            return -1;
        }
        if (errno != EINTR) {
            report_wait_failure(l->name, what, &l->timeout);
            return -1;
        }
    }
}

/* A server at its limit answers a newcomer with SERVER_BUSY and closes.
 * After a failed first echo, say so if that is what the GOT bytes in IN
 * were - it is a refusal, not a broken server. */
static void say_if_busy(const struct link *l, const char *in, size_t got)
{
    size_t n = got < strlen(SERVER_BUSY) ? got : strlen(SERVER_BUSY);

    if (l->bytes == 0 && n > 0 && memcmp(in, SERVER_BUSY, n) == 0)
        fprintf(stderr, "%s: the server said \"server busy\": it turned us away\n", l->name);
}

/* recv() until LEN bytes have arrived: TCP may deliver them in any number
 * of pieces. Returns 0, or -1 after saying what went wrong. */
static int recv_exact(struct link *l, char *buf, size_t len)
{
    char what[80];

    for (size_t got = 0; got < len;) {
        snprintf(what, sizeof what, "the echo (%zu of %zu bytes back)", got, len);
        ssize_t n = recv_some(l, buf + got, len - got, what);
        if (n < 0) {
            say_if_busy(l, buf, got);
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

/* After our shutdown(SHUT_WR) the server has nothing left to send: the
 * next recv() must say EOF. Anything else is an error worth reporting. */
static int expect_eof(struct link *l)
{
    char c;
    ssize_t n;

    if (shutdown(l->fd, SHUT_WR) < 0) {
        fprintf(stderr, "%s: shutdown: %s\n", l->name, strerror(errno));
        return -1;
    }
    while ((n = recv(l->fd, &c, 1, 0)) < 0 && errno == EINTR)
        ;
    if (n == 0)
        return 0;
    if (n < 0)
        report_wait_failure(l->name, "the server to close", &l->timeout);
    else
        fprintf(stderr, "%s: server sent more than we sent it\n", l->name);
    return -1;
}

static int send_or_say(struct link *l, const char *buf, size_t len)
{
    if (send_all(l->fd, buf, len) == 0)
        return 0;
    fprintf(stderr, "%s: send: %s\n", l->name, strerror(errno));
    /* A server that turned us away may have said why before it closed;
     * whatever it sent is still there to read, without waiting. */
    ssize_t n = recv(l->fd, l->in, BLOCK, MSG_DONTWAIT);
    if (n > 0)
        say_if_busy(l, l->in, (size_t)n);
    return -1;
}

/* Send LEN bytes (at most BLOCK), read their echo and compare it with what
 * we sent: FIRST is the number of the first byte, for the message. Going a
 * block at a time keeps both sides' socket buffers from filling up: a
 * client that sends megabytes before reading anything deadlocks with an
 * echo server that is blocked sending them back. */
static int round_trip(struct link *l, const char *out, size_t len, unsigned long long first)
{
    char *in = l->in;

    if (send_or_say(l, out, len) < 0 || recv_exact(l, in, len) < 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (in[i] != out[i]) {
            fprintf(stderr, "%s: byte %llu differs: sent 0x%02x, got 0x%02x\n", l->name,
                    first + i, (unsigned char)out[i], (unsigned char)in[i]);
            say_if_busy(l, in, len);
            return -1;
        }
    }
    l->bytes += len;
    return 0;
}

/* Each stdin line out, its echo checked and printed. */
static int echo_lines(struct link *l)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned long long first = 0;
    int rc = 0;

    while (rc == 0 && (len = getline(&line, &cap, stdin)) > 0) {
        for (size_t off = 0; rc == 0 && off < (size_t)len; off += BLOCK) {
            size_t piece = (size_t)len - off < BLOCK ? (size_t)len - off : BLOCK;
            rc = round_trip(l, line + off, piece, first + off);
        }
        first += (unsigned long long)len;
        if (rc == 0 && (fwrite(line, 1, (size_t)len, stdout) != (size_t)len ||
                        fflush(stdout) != 0)) {
            fprintf(stderr, "%s: write to stdout: %s\n", l->name, strerror(errno));
            rc = -1;
        }
    }
    free(line);
    return rc == 0 ? expect_eof(l) : rc;
}

/* Send TOTAL bytes a block at a time and compare each echoed block. */
static int echo_test(struct link *l, unsigned long long total)
{
    for (unsigned long long done = 0; done < total;) {
        size_t len = total - done < BLOCK ? (size_t)(total - done) : BLOCK;
        for (size_t i = 0; i < len; i++)
            l->out[i] = test_byte(done + i);
        if (round_trip(l, l->out, len, done) < 0)
            return -1;
        done += len;
    }
    if (expect_eof(l) < 0)
        return -1;
    if (!l->quiet)
        printf("%s: %llu bytes echoed, all correct\n", l->name, total);
    return 0;
}

/* ---- -m: length-prefixed messages ------------------------------------ */

/* Message I is this long (0 included) and holds test_byte(I + j) at byte j. */
static size_t message_len(unsigned long i)
{
    return (i * 37) % (MAX_MESSAGE + 1);
}

/* Frame messages FIRST.. into OUT (BLOCK bytes): a 4-byte big-endian
 * length, then the bytes. Returns how many messages fit; *LEN is set. */
static unsigned long frame_messages(unsigned long first, unsigned long count, char *out,
                                    size_t *len)
{
    unsigned long i = first;

    *len = 0;
    for (; i < count && *len + 4 + message_len(i) <= BLOCK; i++) {
        uint32_t be = htonl((uint32_t)message_len(i));
        memcpy(out + *len, &be, 4);
        for (size_t j = 0; j < message_len(i); j++)
            out[*len + 4 + j] = test_byte(i + j);
        *len += 4 + message_len(i);
    }
    return i - first;
}

/* Send LEN bytes in pieces of odd sizes, so that message edges and the
 * edges of our send() calls never line up. */
static int send_cut(struct link *l, const char *out, size_t len)
{
    for (size_t off = 0, cut = 1; off < len; off += cut, cut = cut * 7 % 1499 + 1)
        if (send_or_say(l, out + off, len - off < cut ? len - off : cut) < 0)
            return -1;
    return 0;
}

/* The receiving side of framing: what has arrived but is not yet a whole
 * message, and what the reads looked like. */
struct reassembly {
    const char *name;               /* for messages */
    char *buf;                      /* BLOCK bytes */
    size_t have;
    unsigned long next;             /* number of the next message */
    unsigned long glued, split;     /* reads with several messages, part of one */
};

/* Take every whole message out of R's buffer and check it. Returns how
 * many there were, or -1 after saying what was wrong. */
static long take_messages(struct reassembly *r)
{
    size_t off = 0;
    long taken = 0;
    uint32_t be;

    while (r->have - off >= 4) {
        memcpy(&be, r->buf + off, 4);
        size_t len = ntohl(be);
        /* Never trust a length off the wire: check it before waiting for
         * (or allocating) that many bytes. */
        if (len > MAX_MESSAGE || len != message_len(r->next)) {
            fprintf(stderr, "%s: message %lu: length %zu, want %zu\n", r->name, r->next, len,
                    message_len(r->next));
            return -1;
        }
        if (r->have - off - 4 < len)
            break;
        for (size_t j = 0; j < len; j++) {
            if (r->buf[off + 4 + j] != test_byte(r->next + j)) {
                fprintf(stderr, "%s: message %lu: byte %zu differs\n", r->name, r->next, j);
                return -1;
            }
        }
        off += 4 + len;
        r->next++;
        taken++;
    }
    memmove(r->buf, r->buf + off, r->have - off);
    r->have -= off;
    return taken;
}

/* Read echoed bytes until message number UNTIL is complete, counting how
 * the reads fell across message edges. */
static int read_messages(struct link *l, struct reassembly *r, unsigned long until)
{
    char what[64];

    while (r->next < until) {
        snprintf(what, sizeof what, "the echo of message %lu", r->next);
        ssize_t n = recv_some(l, r->buf + r->have, BLOCK - r->have, what);
        if (n < 0)
            return -1;
        r->have += (size_t)n;
        long taken = take_messages(r);
        if (taken < 0)
            return -1;
        r->glued += taken > 1;
        r->split += r->have > 0;
    }
    /* Everything we sent is back: anything more - a whole message or a
     * piece of one - the server made up. */
    if (r->next > until || r->have > 0) {
        fprintf(stderr, "%s: server sent more than we sent it\n", l->name);
        return -1;
    }
    return 0;
}

/* Send COUNT framed messages a block at a time; check every one echoed.
 * What has arrived but is not yet a whole message waits in l->in. */
static int echo_messages(struct link *l, unsigned long count)
{
    struct reassembly r = {.name = l->name, .buf = l->in};
    unsigned long sent = 0;
    size_t len;

    while (sent < count) {
        sent += frame_messages(sent, count, l->out, &len);
        if (send_cut(l, l->out, len) < 0 || read_messages(l, &r, sent) < 0)
            return -1;
        l->bytes += len;
    }
    if (expect_eof(l) < 0)
        return -1;
    if (!l->quiet)
        printf("%s: %lu messages echoed, all correct; %lu reads held more than one message, "
               "%lu ended inside one\n", l->name, count, r.glued, r.split);
    return 0;
}

/* What every connection does, and how it went. */
static struct {
    const char *host, *port;
    struct timeval timeout;
    long long total, messages;
} job;

/* One connection, start to end: connect, echo, close. 0 if all was well. */
static int run_link(struct link *l)
{
    int rc;

    l->timeout = job.timeout;
    l->fd = connect_to(l->name, job.host, job.port, SOCK_STREAM, &l->timeout);
    if (l->fd < 0)
        return -1;
    if (job.total >= 0)
        rc = echo_test(l, (unsigned long long)job.total);
    else if (job.messages >= 0)
        rc = echo_messages(l, (unsigned long)job.messages);
    else
        rc = echo_lines(l);
    close(l->fd);
    return rc;
}

/* A new link named NAME (QUIET: no line of its own), or NULL after
 * saying we are out of memory. */
static struct link *new_link(const char *name, int quiet)
{
    struct link *l = malloc(sizeof *l);
    if (l == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        return NULL;
    }
    snprintf(l->name, sizeof l->name, "%s", name);
    l->quiet = quiet;
    l->bytes = 0;
    return l;
}

/* -c: one thread per connection. A thread returns its result as its
 * "exit value", which pthread_join() hands to whoever joins it. */
static void *link_thread(void *arg)
{
    return run_link(arg) == 0 ? arg : NULL;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* Run CONNS connections at once and print one line about them all.
 * Returns how many failed. */
static long run_many(long conns)
{
    struct link **links = calloc((size_t)conns, sizeof *links);
    pthread_t *threads = calloc((size_t)conns, sizeof *threads);
    long started = 0, ok = 0;
    unsigned long long bytes = 0;
    struct timespec start;

    clock_gettime(CLOCK_MONOTONIC, &start);
    if (links == NULL || threads == NULL)
        fprintf(stderr, "%s: out of memory\n", PROG);
    for (; links != NULL && threads != NULL && started < conns; started++) {
        char name[48];
        snprintf(name, sizeof name, "%s: connection %ld", PROG, started + 1);
        struct link *l = links[started] = new_link(name, 1);
        if (l == NULL)
            break;
        int err = pthread_create(&threads[started], NULL, link_thread, l);
        if (err != 0) {
            fprintf(stderr, "%s: pthread_create: %s (after %ld connections)\n", PROG,
                    strerror(err), started);
            free(l);
            break;
        }
    }
    for (long i = 0; i < started; i++) {
        void *result;
        pthread_join(threads[i], &result);
        ok += result != NULL;
        bytes += links[i]->bytes;
        free(links[i]);
    }
    free(links);
    free(threads);
    printf("%s: %ld connections, %ld succeeded, %llu bytes echoed and checked in %.3f s\n",
           PROG, conns, ok, bytes, seconds_since(&start));
    return conns - ok;
}

int main(int argc, char **argv)
{
    long long conns = 1;
    int opt, rc;

    init_program(PROG);
    job.host = DEFAULT_ADDR;
    job.port = DEFAULT_PORT;
    job.total = job.messages = -1;
    parse_seconds(DEFAULT_TIMEOUT, &job.timeout);
    while ((opt = getopt(argc, argv, "a:p:T:c:n:m:")) != -1) {
        switch (opt) {
        case 'a': job.host = optarg; break;
        case 'p': if (parse_port(job.port = optarg, 1) < 0) usage(); break;
        case 'T': if (parse_seconds(optarg, &job.timeout) < 0) usage(); break;
        case 'c': if ((conns = parse_count(optarg, 1, MAX_CONNS)) < 0) usage(); break;
        case 'n': if ((job.total = parse_count(optarg, 0, 1LL << 40)) < 0) usage(); break;
        case 'm': if ((job.messages = parse_count(optarg, 0, 100000000)) < 0) usage(); break;
        default: usage();
        }
    }
    /* Many connections cannot all read one stdin: -c needs -n or -m. */
    if (optind != argc || (job.total >= 0 && job.messages >= 0) ||
        (conns > 1 && job.total < 0 && job.messages < 0))
        usage();

    if (conns > 1) {
        rc = run_many((long)conns) == 0 ? 0 : -1;
    } else {
        struct link *l = new_link(PROG, 0);
        if (l == NULL)
            return 1;
        rc = run_link(l);
        free(l);
    }
    if (rc == 0 && fflush(stdout) != 0) {
        fprintf(stderr, "%s: write to stdout: %s\n", PROG, strerror(errno));
        rc = -1;
    }
    return rc == 0 ? 0 : 1;
}
