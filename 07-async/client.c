/*
 * client.c - talk to the echo server, and check everything it echoes;
 * with -c, over many connections at once, each a task of its own.
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
 * With -c N, N connections at once, each doing -n or -m and checking its
 * own echo, and one line at the end: how many succeeded, how many bytes
 * came back checked, how long it all took.
 *
 * New in this chapter, tasks. Chapter 04 gave each connection a thread,
 * and its code read top to bottom: connect, send a block, wait for its
 * echo, check it, send the next - where a connection was in its work was
 * where its thread was in the code. Chapters 05 and 06 ran a thousand
 * connections in one thread and paid for it in the code: where each one
 * was moved into data (a struct link and its enum phase), and the work
 * into steps a select() loop drove one at a time. Here each connection is
 * a task (task.c): round_trip(), echo_test() and echo_lines() below are
 * chapter 04's again, with io_read() and io_write_all() where 04 called
 * recv() and send(). Where 04's thread would have blocked, the task
 * suspends and the loop runs the others; -c 10000 is ten thousand of them
 * in one thread, each a few pages of stack.
 *
 * And timers, for the question a blocking client cannot answer: is the
 * server slow, or gone? A connection that nobody uses tells you nothing
 * either way - TCP sends nothing on it, and a server that crashed, was
 * stopped, or lost its network looks exactly like one with nothing to
 * say. Two answers, both made of waits with a time limit:
 *
 * -k SECONDS, heartbeats. When no byte has moved for that long, we send a
 * probe: one byte, which the echo server echoes like any other. We know
 * where in the stream it sits - everything sent before it has come back -
 * so its echo is the next byte to arrive, which we take out and never
 * print. No echo within as long again, and the connection is dead.
 * (TCP's own keepalive, SO_KEEPALIVE, would not see it: it waits two
 * hours by default, and the kernel of a server whose program hangs or is
 * stopped still answers its probes. Only the program can answer ours.)
 *
 * -R, reconnecting. When the connection is lost - the server closed it or
 * reset it, did not answer, or refused a new one - we dial again after a
 * pause that doubles each time, from 0.1 s up to 5 s, and take a random
 * part of it off (jitter), so that the thousand clients of a server that
 * restarts do not all come back in the same millisecond. Then we go on
 * where we stopped: -n from the first byte not yet echoed and checked,
 * -m from the first message not yet all back, lines with the line that
 * had no answer. We give up when no connection has worked (answered us)
 * for -T seconds since the loss.
 *
 * No wait for the server is unbounded: each connect and each read give
 * up after -T seconds, a heartbeat's after -k, and reconnecting after -T.
 *
 * usage: client [-a HOST] [-p PORT] [-T SECONDS] [-c CONNS] [-n BYTES | -m COUNT]
 *               [-k SECONDS] [-R]
 */
#include "io.h"
#include "loop.h"
#include "net.h"
#include "task.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROG "client"
/* What goes out at a time: -n's BLOCK bytes, as many -m messages as fit, a
 * line (or a piece of a long one). */
#define BLOCK 65536
/* Echoed bytes are checked as they arrive, so they need a smaller buffer:
 * big enough for an -m message and its length, not all back yet. */
#define ECHO_BUF 16384
/* Each connection holds 80 KiB of buffers (struct link, on the heap) and
 * a task's stack, of which it touches a few pages. Memory is committed
 * as it is touched, so 10,000 connections cost what their test touches:
 * about 140 MiB in all with -n 1000, 800 MiB once each sends a whole
 * block. epoll has no FD_SETSIZE wall; descriptors are the limit now,
 * and main() raises ours to the hard limit. */
#define MAX_CONNS 10000
/* A task's stack holds only frames: its buffers are in struct link. The
 * deepest it goes is stdio formatting a message, a few KiB: every client
 * check of the harness passed with 16 KiB stacks. 64 KiB is four times
 * that, and costs only the pages touched (task.c). */
#define STACK_SIZE (64 * 1024)
/* The largest message -m sends, and so the largest length it accepts: a
 * length read off the wire is checked before it is trusted. */
#define MAX_MESSAGE 1000
/* -R: the first pause before dialling again, and the longest. */
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
/* What one read of stdin takes at most. */
#define STDIN_BUF 4096

_Static_assert(ECHO_BUF >= 4 + MAX_MESSAGE, "ECHO_BUF must hold a whole -m message");

/* How a step ended. LOST: the connection is gone - closed, reset, silent
 * - which -R mends by dialling again. FAILED: what no new connection
 * mends (wrong bytes came back, stdout failed). Either has been said. */
enum { OK = 0, FAILED = -1, LOST = -2 };

/* What every connection does: set in main(), read-only after. */
struct job {
    const char *host, *port;
    struct addrinfo *addrs;         /* HOST:PORT, looked up once */
    struct loop *loop;
    long long timeout_ms;           /* -T */
    long long heartbeat_ms;         /* -k; 0: none */
    int redial;                     /* -R */
    long long total, messages;      /* -n, -m; -1 if not given */
};

/* The receiving side of -m's framing: what has arrived but is not yet a
 * whole message (at the start of the link's IN), and what the reads
 * looked like. */
struct reassembly {
    size_t have;
    unsigned long next;             /* number of the next message */
    unsigned long glued, split;     /* reads with several messages, part of one */
};

/* stdin, read by a task: see open_input(). */
struct input {
    struct io io;                   /* its descriptor, and the loop's news of it */
    int watched;                    /* in the loop; else a plain read() never waits */
    int eof;
    size_t pos, have;               /* BUF[pos, have) is read and not yet taken */
    char buf[STDIN_BUF];
};

/*
 * One connection to the server, and what it must remember when it dials
 * again (-R). NAME starts every message about it; with QUIET it prints no
 * line of its own; WHY is the last thing that went wrong. The progress
 * outlives a connection: BYTES echoed and checked (-m: of whole
 * messages), the message reassembly, the line being sent. The rest is
 * about the connection now open.
 */
struct link {
    const struct job *job;
    char name[48];
    int quiet;
    int ok;                         /* all echoed, checked and closed */
    struct input *input;            /* interactive: stdin */
    char why[200];
    /* progress */
    unsigned long long bytes;
    struct reassembly r;
    size_t len;                     /* lines: OUT[0, len) is the line so far */
    int line_ready;                 /* ...and it is whole: send it */
    /* this connection */
    struct io io;
    char where[ADDR_STRLEN];
    size_t got;                     /* of this round trip: back and checked */
    unsigned long long checked;     /* on this connection */
    unsigned long long received;    /* every byte it brought */
    char first[sizeof SERVER_BUSY - 1];  /* the first of them */
    long long quiet_since;          /* when a byte last came */
    int probing;                    /* the round trip is a heartbeat */
    /* reconnecting */
    unsigned connections, tries;
    long long lost_since;           /* 0: the server answers */
    long long backoff;              /* the next pause, before jitter */
    unsigned seed;                  /* for the jitter */
    char out[BLOCK], in[ECHO_BUF];
};

static void usage(void)
{
    fprintf(stderr, "usage: %s [-a HOST] [-p PORT] [-T SECONDS] [-c CONNS] [-n BYTES | -m COUNT]\n"
                    "              [-k SECONDS] [-R]\n"
                    "  -a HOST     server name or address (default %s)\n"
                    "  -p PORT     server port (default %s)\n"
                    "  -T SECONDS  give up on a server silent that long (default %s);\n"
                    "              with -R, on one gone that long\n"
                    "  -c CONNS    1..%d connections at once, a task each, all in\n"
                    "              one thread, each doing -n or -m (default 1)\n"
                    "  -n BYTES    send BYTES of test data and check the echo\n"
                    "  -m COUNT    send COUNT length-prefixed messages, glued together\n"
                    "              and cut apart, and check each echoed message\n"
                    "              (default: echo the lines of stdin)\n"
                    "  -k SECONDS  heartbeat: on a connection quiet that long (no echo\n"
                    "              awaited: -T bounds that), send a probe the server\n"
                    "              echoes; no echo within as long again: it is dead\n"
                    "  -R          when the connection is lost, dial again (pauses from\n"
                    "              %g s doubling to %g s, with jitter) and go on where\n"
                    "              it stopped\n",
            PROG, DEFAULT_ADDR, DEFAULT_PORT, DEFAULT_TIMEOUT, MAX_CONNS,
            BACKOFF_FIRST_MS / 1000.0, BACKOFF_MAX_MS / 1000.0);
    exit(2);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds in a message: "0.5", "10". */
static double seconds(long long ms)
{
    return (double)ms / 1000;
}

/* ---- what went wrong, and saying so --------------------------------------- */

static void keep_why(struct link *l, const char *fmt, va_list ap)
{
    vsnprintf(l->why, sizeof l->why, fmt, ap);
}

/* Note why L's connection went wrong, without saying it yet (a try of
 * -R's says nothing until it gives up). Returns CODE. */
__attribute__((format(printf, 3, 4)))
static int note(struct link *l, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    keep_why(l, fmt, ap);
    va_end(ap);
    return code;
}

/* Say what was noted, in one line: "client: ..." or "client: connection
 * 7: ...". */
static void tell(const struct link *l)
{
    fprintf(stderr, "%s: %s\n", l->name, l->why);
}

/* Note and say. Returns CODE. */
__attribute__((format(printf, 3, 4)))
static int say(struct link *l, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    keep_why(l, fmt, ap);
    va_end(ap);
    tell(l);
    return code;
}

/* ---- what came back ------------------------------------------------------- */

/* N bytes came: the connection is not quiet. Keep its first bytes aside:
 * if they turn out to be SERVER_BUSY, they explain whatever goes wrong
 * next. */
static void note_arrival(struct link *l, const char *buf, size_t n)
{
    if (l->received < sizeof l->first) {
        size_t keep = sizeof l->first - (size_t)l->received;
        memcpy(l->first + l->received, buf, n < keep ? n : keep);
    }
    l->received += n;
    l->quiet_since = loop_now(l->job->loop);
}

/* N echoed bytes were right: the server answers on this connection, so
 * -R's count of time and tries since a loss starts again. */
static void server_answered(struct link *l, size_t n)
{
    l->checked += n;
    l->lost_since = 0;
    l->tries = 0;
    l->backoff = BACKOFF_FIRST_MS;
}

/* A server at its limit answers a newcomer with SERVER_BUSY and closes.
 * If what went wrong came before any echo, and after those words, say so:
 * it is a refusal, not a broken server. Returns 1 if it was. */
static int say_if_busy(struct link *l)
{
    size_t n = l->received < sizeof l->first ? (size_t)l->received : sizeof l->first;

    if (l->checked > 0 || n == 0 || memcmp(l->first, SERVER_BUSY, n) != 0)
        return 0;
    say(l, LOST, "the server said \"server busy\": it turned us away");
    return 1;
}

/* Wrong bytes came back, and that has been said: FAILED - unless they
 * were "server busy", a refusal that -R may try again later. */
static int failed_or_busy(struct link *l)
{
    return say_if_busy(l) ? LOST : FAILED;
}

/* A wait for WHAT ended without it, TIMEOUT being its limit: N is 0 if
 * the server closed, else errno says why. Say so: the connection is lost. */
static int say_lost(struct link *l, ssize_t n, const char *what, long long timeout)
{
    if (n == 0)
        return say(l, LOST, "server closed the connection while we waited for %s", what);
    if (errno == ETIMEDOUT && l->probing)
        return say(l, LOST, "no answer to a heartbeat within %g s: the connection is dead",
                   seconds(timeout));
    if (errno == ETIMEDOUT)
        return say(l, LOST, "no answer within %g s while waiting for %s", seconds(timeout), what);
    return say(l, LOST, "recv, waiting for %s: %s", what, strerror(errno));
}

/* How long a heartbeat waits for its echo: -k; or -T for the one -R sends
 * to try a new connection, when there is no -k. */
static long long heartbeat_wait(const struct job *job)
{
    return job->heartbeat_ms > 0 ? job->heartbeat_ms : job->timeout_ms;
}

/* Read once, at most LEN bytes into BUF, waiting for WHAT: the count, or
 * LOST after saying why none came. */
static ssize_t recv_some(struct link *l, char *buf, size_t len, const char *what)
{
    long long timeout = l->probing ? heartbeat_wait(l->job) : l->job->timeout_ms;
    ssize_t n = io_read(&l->io, buf, len, timeout);

    if (n > 0)
        note_arrival(l, buf, (size_t)n);
    return n > 0 ? n : say_lost(l, n, what, timeout);
}

/* ---- a round trip: send a block, read its echo, check it ------------------ */

static int send_or_say(struct link *l, const char *buf, size_t len)
{
    if (io_write_all(&l->io, buf, len, l->job->timeout_ms) == 0)
        return OK;
    if (errno == ETIMEDOUT)
        say(l, LOST, "no answer within %g s while waiting for room to send",
            seconds(l->job->timeout_ms));
    else
        say(l, LOST, "send: %s", strerror(errno));
    /* A server that turned us away may have said why before it closed;
     * whatever it sent is still there to read, without waiting. */
    ssize_t n = recv(l->io.watch.fd, l->in, sizeof l->in, MSG_DONTWAIT);
    if (n > 0)
        note_arrival(l, l->in, (size_t)n);
    say_if_busy(l);
    return LOST;
}

/* Compare N echoed bytes at IN with OUT, what they echo; FIRST numbers
 * OUT[0] in the message. Returns OK, or FAILED after saying where they
 * differ. */
static int check_bytes(struct link *l, const char *out, const char *in, size_t n,
                       unsigned long long first)
{
    size_t i = 0;

    if (memcmp(in, out, n) == 0)
        return OK;              /* nearly always: no need to look closer */
    while (in[i] == out[i])
        i++;
    if (l->probing)
        return say(l, FAILED, "a heartbeat came back changed: sent 0x%02x, got 0x%02x",
                   (unsigned char)out[i], (unsigned char)in[i]);
    return say(l, FAILED, "byte %llu differs: sent 0x%02x, got 0x%02x", first + i,
               (unsigned char)out[i], (unsigned char)in[i]);
}

/* What L waits for, for a message that says so. */
static void describe_echo(const struct link *l, size_t len, char *what, size_t size)
{
    if (l->probing)
        snprintf(what, size, "the echo of a heartbeat");
    else
        snprintf(what, size, "the echo (%zu of %zu bytes back)", l->got, len);
}

/* Read the echo of OUT[0, LEN) - TCP may bring it in any number of pieces
 * - and check each piece as it comes: L->got bytes are back and right. */
static int recv_echo(struct link *l, const char *out, size_t len, unsigned long long first)
{
    char what[80];

    while (l->got < len) {
        size_t room = len - l->got < sizeof l->in ? len - l->got : sizeof l->in;
        describe_echo(l, len, what, sizeof what);
        ssize_t n = recv_some(l, l->in, room, what);
        if (n < 0)
            return (int)n;
        if (check_bytes(l, out + l->got, l->in, (size_t)n, first + l->got) < 0)
            return failed_or_busy(l);
        l->got += (size_t)n;
        server_answered(l, (size_t)n);
    }
    return OK;
}

/* Send LEN bytes (at most BLOCK) and read their echo: FIRST is the number
 * of the first byte, for messages. Going a block at a time keeps both
 * sides' socket buffers from filling up: a client that sends megabytes
 * before reading anything deadlocks with an echo server that is blocked
 * sending them back. */
static int round_trip(struct link *l, const char *out, size_t len, unsigned long long first)
{
    l->got = 0;
    int rc = send_or_say(l, out, len);
    return rc < 0 ? rc : recv_echo(l, out, len, first);
}

/* "I have nothing more to say": the server reads EOF once it has read
 * everything we sent, and closes too. The next read must say EOF. */
static int expect_eof(struct link *l)
{
    char c;

    if (shutdown(l->io.watch.fd, SHUT_WR) < 0)
        return say(l, LOST, "shutdown: %s", strerror(errno));
    ssize_t n = io_read(&l->io, &c, 1, l->job->timeout_ms);
    if (n == 0)
        return OK;
    if (n > 0)
        return say(l, FAILED, "server sent more than we sent it");
    return say_lost(l, n, "the server to close", l->job->timeout_ms);
}

/* -n: send TOTAL bytes a block at a time and check each echoed block;
 * after a loss, go on from the first byte not yet back. */
static int echo_test(struct link *l, unsigned long long total)
{
    while (l->bytes < total) {
        unsigned long long done = l->bytes;
        size_t len = total - done < BLOCK ? (size_t)(total - done) : BLOCK;
        for (size_t i = 0; i < len; i++)
            l->out[i] = test_byte(done + i);
        int rc = round_trip(l, l->out, len, done);
        l->bytes += l->got;     /* checked, even if the rest was lost */
        if (rc < 0)
            return rc;
    }
    int rc = expect_eof(l);
    if (rc == OK && !l->quiet)
        printf("%s: %llu bytes echoed, all correct\n", l->name, total);
    return rc;
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
            return LOST;
    return OK;
}

/* N more bytes have arrived behind what IN held: take every whole message
 * out of it, check each, and count how this read fell across message
 * edges. Returns OK, or FAILED after saying what was wrong. */
static int take_messages(struct link *l, size_t n)
{
    struct reassembly *r = &l->r;
    size_t off = 0;
    long taken = 0;
    uint32_t be;

    r->have += n;
    while (r->have - off >= 4) {
        memcpy(&be, l->in + off, 4);
        size_t len = ntohl(be);
        /* Never trust a length off the wire: check it before waiting for
         * (or allocating) that many bytes. */
        if (len > MAX_MESSAGE || len != message_len(r->next))
            return say(l, FAILED, "message %lu: length %zu, want %zu", r->next, len,
                       message_len(r->next));
        if (r->have - off - 4 < len)
            break;
        for (size_t j = 0; j < len; j++)
            if (l->in[off + 4 + j] != test_byte(r->next + j))
                return say(l, FAILED, "message %lu: byte %zu differs", r->next, j);
        off += 4 + len;
        l->bytes += 4 + len;
        server_answered(l, 4 + len);
        r->next++;
        taken++;
    }
    memmove(l->in, l->in + off, r->have - off);
    r->have -= off;
    r->glued += taken > 1;
    r->split += r->have > 0;
    return OK;
}

/* Read echoed bytes until message number UNTIL is complete. */
static int read_messages(struct link *l, unsigned long until)
{
    char what[64];

    while (l->r.next < until) {
        snprintf(what, sizeof what, "the echo of message %lu", l->r.next);
        ssize_t n = recv_some(l, l->in + l->r.have, sizeof l->in - l->r.have, what);
        if (n < 0)
            return (int)n;
        if (take_messages(l, (size_t)n) < 0)
            return failed_or_busy(l);
    }
    /* Everything we sent is back: anything more - a whole message or a
     * piece of one - the server made up. */
    if (l->r.next > until || l->r.have > 0)
        return say(l, FAILED, "server sent more than we sent it");
    return OK;
}

/* -m: send COUNT framed messages a block at a time; check every one
 * echoed. After a loss, go on from the first message not yet all back:
 * what had come of it is dropped, and it is sent again. */
static int echo_messages(struct link *l, unsigned long count)
{
    unsigned long sent = l->r.next;
    size_t len;
    int rc;

    l->r.have = 0;
    while (sent < count) {
        sent += frame_messages(sent, count, l->out, &len);
        if ((rc = send_cut(l, l->out, len)) < 0 || (rc = read_messages(l, sent)) < 0)
            return rc;
    }
    if ((rc = expect_eof(l)) == OK && !l->quiet)
        printf("%s: %lu messages echoed, all correct; %lu reads held more than one message, "
               "%lu ended inside one\n", l->name, count, l->r.glued, l->r.split);
    return rc;
}

/* ---- heartbeats ------------------------------------------------------------ */

/* The probe: one byte, echoed like any other. Everything we sent before
 * it has come back when we send it, so its echo is the next byte to
 * arrive: we take it out, and never print it. */
static const char probe[1] = {0};

/* Is the server there? Send the probe and wait for its echo: -k, or -T
 * (heartbeat_wait()). */
static int heartbeat(struct link *l)
{
    l->probing = 1;
    int rc = round_trip(l, probe, sizeof probe, 0);
    l->probing = 0;
    return rc;
}

/* When the next heartbeat is due: -k after the last byte came (0: none). */
static long long heartbeat_due(const struct link *l)
{
    return l->job->heartbeat_ms > 0 ? l->quiet_since + l->job->heartbeat_ms : 0;
}

/* ---- stdin, for a task ------------------------------------------------------ */

/*
 * A task waiting for a line must not hold up the loop - its heartbeat's
 * timer has to fire meanwhile - so stdin is read the way sockets are:
 * non-blocking, watched by the loop. But O_NONBLOCK belongs to the open
 * file, which stdin shares with the shell and every program started from
 * it: set there, it would break them, and stay set if we were killed. So,
 * as net.c's open_log() does for stderr, we open stdin again through
 * /dev/fd/0 - for a pipe or a terminal that is a new open file, whose
 * flags are ours alone - and watch that. A file, or /dev/null, is read as
 * it is: read() never waits on them, and epoll refuses them (EPERM). (A
 * socket cannot be opened again: it too is read as it is, blocking - and
 * heartbeats wait while it does.)
 */
static struct input *open_input(struct loop *loop)
{
    struct input *in = calloc(1, sizeof *in);
    struct stat st;

    if (in == NULL)
        return NULL;
    in->io.watch.fd = STDIN_FILENO;
    if (fstat(STDIN_FILENO, &st) < 0 || !(S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)))
        return in;
    int fd = open("/dev/fd/0", O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return in;
    if (io_open(loop, &in->io, fd) < 0) {
        close(fd);
        in->io.watch.fd = STDIN_FILENO;
        return in;
    }
    in->watched = 1;
    return in;
}

static void close_input(struct input *in)
{
    if (in->watched)
        io_close(&in->io);
    free(in);
}

/* Read what stdin has into IN's buffer, waiting until DEADLINE at most
 * (0: no limit): the count, 0 at the end of stdin, or -1 with errno
 * (ETIMEDOUT: the deadline came first). */
static ssize_t fill_input(struct input *in, const struct loop *loop, long long deadline)
{
    long long timeout = 0;

    if (in->eof)
        return 0;
    if (deadline > 0 && (timeout = deadline - loop_now(loop)) <= 0) {
        errno = ETIMEDOUT;
        return -1;
    }
    ssize_t n = io_read(&in->io, in->buf, sizeof in->buf, timeout);
    if (n >= 0) {
        in->pos = 0;
        in->have = (size_t)n;
        in->eof = n == 0;
    }
    return n;
}

/* Read stdin into L's OUT until it holds a line: through its '\n', BLOCK
 * bytes of a longer one, or what is left at the end of stdin. Returns 1
 * when it does, 0 at the end with nothing left, -1 with errno (ETIMEDOUT:
 * a heartbeat is due first; the line so far stays in OUT). */
static int read_line(struct link *l)
{
    struct input *in = l->input;

    while (l->len < BLOCK) {
        if (in->pos == in->have) {
            ssize_t n = fill_input(in, l->job->loop, heartbeat_due(l));
            if (n <= 0)
                return n < 0 ? -1 : l->len > 0;
        }
        char c = in->buf[in->pos++];
        l->out[l->len++] = c;
        if (c == '\n')
            break;
    }
    return 1;
}

/* The line's echo is back and right: print it, and make way for the next. */
static int print_line(struct link *l)
{
    size_t len = l->len;

    l->len = 0;
    l->line_ready = 0;
    if (fwrite(l->out, 1, len, stdout) == len && fflush(stdout) == 0)
        return OK;
    return say(l, FAILED, "write to stdout: %s", strerror(errno));
}

/* Interactive: each stdin line out, its echo checked and printed; while
 * the user types nothing, a heartbeat every -k; then the half-close. -R
 * has just dialled again if the server has not answered since a loss:
 * a line left without an answer goes again, and with none, a heartbeat
 * says at once whether this connection works. */
static int echo_lines(struct link *l)
{
    int rc = l->lost_since != 0 && !l->line_ready ? heartbeat(l) : OK;

    while (rc == OK) {
        if (!l->line_ready) {
            int got = read_line(l);
            if (got < 0 && errno == ETIMEDOUT) {
                rc = heartbeat(l);
                continue;
            }
            if (got < 0)
                return say(l, FAILED, "read stdin: %s", strerror(errno));
            if (got == 0)
                return expect_eof(l);
            l->line_ready = 1;
        }
        if ((rc = round_trip(l, l->out, l->len, l->bytes)) == OK) {
            l->bytes += l->len;
            rc = print_line(l);
        }
    }
    return rc;
}

/* ---- connecting, and connecting again ----------------------------------- */

/* A new socket, ready for the loop. TCP_NODELAY for -m, whose point is
 * that message edges fall at odd places: with Nagle's algorithm the
 * kernel would hold each small piece send_cut() hands it until the last
 * one is acknowledged, and glue them back together. (A line or a
 * heartbeat goes out on a quiet connection, which Nagle never holds.)
 * Returns OK, or FAILED after saying why. */
static int set_up_socket(struct link *l, int fd)
{
    int one = 1;

    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        return say(l, FAILED, "setsockopt TCP_NODELAY: %s", strerror(errno));
    if (io_open(l->job->loop, &l->io, fd) < 0)
        return say(l, FAILED, "epoll_ctl: %s", strerror(errno));
    return OK;
}

/* Connect L to AI, waiting -T at most. Returns OK, LOST (why noted), or
 * FAILED (said). */
static int dial_address(struct link *l, const struct addrinfo *ai)
{
    format_addr(ai->ai_addr, l->where, sizeof l->where);
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0)
        return note(l, LOST, "socket: %s", strerror(errno));
    if (set_up_socket(l, fd) < 0) {
        close(fd);
        return FAILED;
    }
    if (io_connect(&l->io, ai->ai_addr, ai->ai_addrlen, l->job->timeout_ms) == 0)
        return OK;
    int err = errno;
    io_close(&l->io);
    if (err == ETIMEDOUT)
        return note(l, LOST, "connect %s: no answer within %g s", l->where,
                    seconds(l->job->timeout_ms));
    return note(l, LOST, "connect %s: %s", l->where, strerror(err));
}

/* Connect to the server: a name may have several addresses ("localhost"
 * is ::1 and 127.0.0.1), tried in turn; after the last, why it failed is
 * noted. A new connection has brought nothing yet. */
static int dial(struct link *l)
{
    int rc = LOST;

    for (const struct addrinfo *ai = l->job->addrs; ai != NULL && rc == LOST; ai = ai->ai_next)
        rc = dial_address(l, ai);
    if (rc == OK) {
        l->connections++;
        l->received = l->checked = 0;
        l->quiet_since = loop_now(l->job->loop);
    }
    return rc;
}

/* MS, less a random part of up to half of it: the jitter. */
static long long jittered(struct link *l, long long ms)
{
    return ms - rand_r(&l->seed) % (ms / 2 + 1);
}

/* Where L goes on from, in its mode's words. */
static void describe_resume(const struct link *l, char *buf, size_t size)
{
    if (l->job->total >= 0)
        snprintf(buf, size, "going on from byte %llu of %lld", l->bytes, l->job->total);
    else if (l->job->messages >= 0)
        snprintf(buf, size, "going on from message %lu of %lld", l->r.next, l->job->messages);
    else
        snprintf(buf, size, "%s", l->line_ready ? "sending the unanswered line again"
                                                : "going on");
}

/* Say that L is connected (again, if it was before), and where it goes
 * on from. */
static void say_redialled(const struct link *l)
{
    char resume[80];
    int again = l->connections > 1;

    describe_resume(l, resume, sizeof resume);
    fprintf(stderr, "%s: %s to %s (try %u, %.1f s after the %s); %s\n", l->name,
            again ? "reconnected" : "connected", l->where, l->tries,
            seconds(loop_now(l->job->loop) - l->lost_since), again ? "loss" : "first try",
            resume);
}

/*
 * -R: the connection is lost (or never came). Pause, dial again, and
 * again, until a connection is made, or -T has passed since the loss
 * without the server answering on any. Each pause is twice the last, from
 * BACKOFF_FIRST_MS up to BACKOFF_MAX_MS: a server back in a moment is
 * found in a moment, one down for long is not asked ten times a second.
 * And each is cut by a random part of up to half (jittered()), so that
 * the clients of a server that restarts spread out instead of all
 * knocking in the same millisecond. The pauses are never under 50 ms, so
 * -T bounds their number too. Returns OK (said), or FAILED (said).
 */
static int redial(struct link *l)
{
    long long give_up = l->lost_since + l->job->timeout_ms;
    int rc = LOST;

    while (rc == LOST) {
        long long left = give_up - loop_now(l->job->loop);
        if (left <= 0) {
            fprintf(stderr, "%s: giving up: no connection has worked for %g s "
                    "(%u tries; the last: %s)\n", l->name, seconds(l->job->timeout_ms), l->tries,
                    l->why);
            return FAILED;
        }
        long long pause = jittered(l, l->backoff);
        l->backoff = 2 * l->backoff < BACKOFF_MAX_MS ? 2 * l->backoff : BACKOFF_MAX_MS;
        if (task_sleep(pause < left ? pause : left) < 0)
            return say(l, FAILED, "sleep: %s", strerror(errno));
        l->tries++;
        rc = dial(l);
    }
    if (rc == OK)
        say_redialled(l);
    return rc;
}

/* ---- a connection's life ---------------------------------------------------- */

/* What L does with a connection: its mode, from where it stands. */
static int converse(struct link *l)
{
    if (l->job->total >= 0)
        return echo_test(l, (unsigned long long)l->job->total);
    if (l->job->messages >= 0)
        return echo_messages(l, (unsigned long)l->job->messages);
    return echo_lines(l);
}

/* One link, start to end, as chapter 04's thread did it: connect, echo,
 * close. With -R, a loss is followed by a new connection, for as long as
 * redial() does not give up. */
static int run_link(struct link *l)
{
    int rc = dial(l);

    if (rc == LOST) {
        tell(l);
        l->tries = 1;           /* with -R, the first of them */
    }
    for (;;) {
        if (rc == OK) {
            rc = converse(l);
            io_close(&l->io);
        }
        if (rc != LOST || !l->job->redial)
            return rc;
        if (l->lost_since == 0)
            l->lost_since = loop_now(l->job->loop);
        rc = redial(l);
    }
}

/* A link's task: run it, and keep how it went. */
static void link_task(void *arg)
{
    struct link *l = arg;
    l->ok = run_link(l) == OK;
}

/* L is NAME in every message about it; QUIET: no line of its own. */
static void init_link(struct link *l, const struct job *job, const char *name, int quiet,
                      unsigned seed)
{
    l->job = job;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->quiet = quiet;
    l->backoff = BACKOFF_FIRST_MS;
    l->seed = seed;
}

/* ---- the run ---------------------------------------------------------------- */

/* CONNS links, each a task; with INPUT (interactive), one. Returns how
 * many links started (the rest could not get a task: said). */
static long start_links(struct link *links, long conns, const struct job *job,
                        struct input *input)
{
    unsigned seed = (unsigned)now_ms() ^ (unsigned)getpid();

    for (long i = 0; i < conns; i++) {
        char name[48];
        snprintf(name, sizeof name, "%s: connection %ld", PROG, i + 1);
        init_link(&links[i], job, conns > 1 ? name : PROG, conns > 1, seed + (unsigned)i * 7919);
        links[i].input = input;
        if (task_spawn(link_task, &links[i]) == NULL) {
            fprintf(stderr, "%s: task_spawn: %s (after %ld connections)\n", PROG,
                    strerror(errno), i);
            return i;
        }
    }
    return conns;
}

/* Run every link to its end, all in one loop. One connection says how it
 * went in a line of its own; more say it in one line together. Returns
 * OK if every one succeeded. */
static int run_links(const struct job *job, long conns, struct input *input)
{
    struct link *links = calloc((size_t)conns, sizeof *links);
    unsigned long long bytes = 0;
    long long start = now_ms();
    long ok = 0;

    if (links == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        return FAILED;
    }
    long started = start_links(links, conns, job, input);
    if (tasks_run() < 0)
        fprintf(stderr, "%s: epoll_wait: %s\n", PROG, strerror(errno));
    for (long i = 0; i < started; i++) {
        ok += links[i].ok;
        bytes += links[i].bytes;
    }
    if (conns > 1)
        printf("%s: %ld connections, %ld succeeded, %llu bytes echoed and checked in %.3f s\n",
               PROG, conns, ok, bytes, seconds(now_ms() - start));
    free(links);
    return ok == conns ? OK : FAILED;
}

/* HOST:PORT's addresses, or NULL after saying why there are none. Looked
 * up once, before the loop, for every connection: getaddrinfo() may ask
 * a DNS server and wait for its answer, and in the loop that wait would
 * stop everything. */
static struct addrinfo *resolve(const struct job *job)
{
    struct addrinfo hints = {0}, *res;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(job->host, job->port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "%s: %s: %s\n", PROG, job->host, gai_strerror(rc));
        return NULL;
    }
    return res;
}

/* Whole milliseconds, rounded up, as net.c's messages count them. */
static long long to_ms(const struct timeval *tv)
{
    return (long long)tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000;
}

/* The loop, the tasks, stdin if we read it, and the links: run, then
 * free it all. Returns OK if every link succeeded. */
static int run(const struct job *job, long conns)
{
    int interactive = job->total < 0 && job->messages < 0;
    struct input *input = NULL;
    int rc = FAILED;

    tasks_init(job->loop, STACK_SIZE);
    if (interactive && (input = open_input(job->loop)) == NULL)
        fprintf(stderr, "%s: out of memory\n", PROG);
    else
        rc = run_links(job, conns, input);
    if (input != NULL)
        close_input(input);
    tasks_finish();
    return rc;
}

int main(int argc, char **argv)
{
    struct job job = {.host = DEFAULT_ADDR, .port = DEFAULT_PORT, .total = -1, .messages = -1};
    struct timeval tv;
    long long conns = 1;
    int opt, rc;

    init_program(PROG);
    parse_seconds(DEFAULT_TIMEOUT, &tv);
    job.timeout_ms = to_ms(&tv);
    while ((opt = getopt(argc, argv, "a:p:T:c:n:m:k:R")) != -1) {
        switch (opt) {
        case 'a': job.host = optarg; break;
        case 'p': if (parse_port(job.port = optarg, 1) < 0) usage(); break;
        case 'T': if (parse_seconds(optarg, &tv) < 0) usage(); job.timeout_ms = to_ms(&tv); break;
        case 'c': if ((conns = parse_count(optarg, 1, MAX_CONNS)) < 0) usage(); break;
        case 'n': if ((job.total = parse_count(optarg, 0, 1LL << 40)) < 0) usage(); break;
        case 'm': if ((job.messages = parse_count(optarg, 0, 100000000)) < 0) usage(); break;
        case 'k': if (parse_seconds(optarg, &tv) < 0) usage(); job.heartbeat_ms = to_ms(&tv); break;
        case 'R': job.redial = 1; break;
        default: usage();
        }
    }
    /* Many connections cannot all read one stdin: -c needs -n or -m. */
    if (optind != argc || (job.total >= 0 && job.messages >= 0) ||
        (conns > 1 && job.total < 0 && job.messages < 0))
        usage();

    /* A connection is a descriptor: -c 10000 needs more than the usual
     * soft limit of 1,024. net.c's raise_fd_limit() takes what the hard
     * limit allows (and keeps a spare descriptor we do not need); past
     * it, the connections say "socket: Too many open files". */
    raise_fd_limit(PROG);
    if ((job.addrs = resolve(&job)) == NULL)
        return 1;
    if ((job.loop = loop_new()) == NULL) {
        fprintf(stderr, "%s: epoll_create1: %s\n", PROG, strerror(errno));
        freeaddrinfo(job.addrs);
        return 1;
    }
    rc = run(&job, (long)conns);
    loop_free(job.loop);
    freeaddrinfo(job.addrs);
    if (rc == OK && fflush(stdout) != 0) {
        fprintf(stderr, "%s: write to stdout: %s\n", PROG, strerror(errno));
        rc = FAILED;
    }
    return rc == OK ? 0 : 1;
}
