/*
 * client.c - talk to the echo server, and check everything it echoes;
 * with -c, over many connections at once, all in one select() loop.
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
 * New in this chapter: -n and -m run in one thread, in one select() loop,
 * however many connections there are - one, or a thousand. Chapter 04 gave
 * each connection a thread, which could simply block in connect(), send()
 * and recv(): where it was in its work was where it was in its code. With
 * one thread nothing may block but select(), so every socket is
 * non-blocking, and where each connection is lives in data instead: a
 * struct link, whose enum phase says what it waits for - the handshake,
 * room to send its block, the echo of that block, the server's close after
 * ours. select() says which sockets can move; each moves as far as it can
 * without waiting, and the loop goes back to select().
 *
 * connect() must not block either. To an address that does not answer, it
 * would hold the one thread - and every other connection with it - for the
 * kernel's two minutes of SYN retries. On a non-blocking socket it returns
 * at once (EINPROGRESS); the socket turns writable when the handshake is
 * over, and SO_ERROR says how it went.
 *
 * No wait is unbounded: each one - the connect, every echo, the final
 * close - gives up after -T seconds, counted from when it began and again
 * from whenever bytes move. A thread had SO_RCVTIMEO for that; one thread
 * serving many connections keeps a deadline per connection, and sleeps in
 * select() no longer than until the earliest.
 *
 * Interactive mode has one connection and one person typing, so it stays
 * blocking, with chapter 04's connect_to() and its SO_RCVTIMEO; it drives
 * the loop's own send and receive steps, one at a time.
 *
 * usage: client [-a HOST] [-p PORT] [-T SECONDS] [-c CONNS] [-n BYTES | -m COUNT]
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#define PROG "client"
/* What goes out at a time: -n's BLOCK bytes, as many -m messages as fit, a
 * line (or a piece of a long one). */
#define BLOCK 65536
/* Echoed bytes are checked as they arrive, so they need a smaller buffer:
 * big enough for an -m message and its length, not all back yet. */
#define ECHO_BUF 16384
/* Each connection holds 80 KiB of buffers (struct link): 1,000 of them
 * take 80 MiB. select() could not watch many more anyway (FD_SETSIZE). */
#define MAX_CONNS 1000
/* The largest message -m sends, and so the largest length it accepts: a
 * length read off the wire is checked before it is trusted. */
#define MAX_MESSAGE 1000

_Static_assert(ECHO_BUF >= 4 + MAX_MESSAGE, "ECHO_BUF must hold a whole -m message");

/* What every connection does: set in main(), read-only after. */
struct job {
    const char *host, *port;
    struct timeval timeout;
    long long timeout_ms;           /* the same, for deadlines */
    long long total, messages;      /* -n, -m; -1 if not given */
};

/* Where a connection is in its work, and so what it waits for. */
enum phase {
    CONNECTING,     /* the handshake: the socket turns writable when it is over */
    SENDING,        /* room to send the rest of the block; and its echo */
    RECEIVING,      /* the block is all sent: the rest of its echo */
    CLOSING,        /* we have shut down our side: the server's EOF */
    DONE,           /* all echoed, checked and closed */
    FAILED          /* given up, after saying why */
};

/* The receiving side of -m's framing: what has arrived but is not yet a
 * whole message (at the start of the link's IN), and what the reads
 * looked like. */
struct reassembly {
    size_t have;
    unsigned long next;             /* number of the next message */
    unsigned long glued, split;     /* reads with several messages, part of one */
};

/* One connection to the server, and all it must remember between two
 * turns of the loop: a thread kept this on its stack. NAME starts every
 * message about it; with QUIET it prints no line of its own. BYTES counts
 * what came back checked, a block at a time. The current block is OUT[0,
 * LEN): SENT bytes of it have gone, GOT have come back. */
struct link {
    char name[48];
    int quiet;
    int fd;
    enum phase phase;
    long long deadline;             /* this wait gives up then (ms, monotonic) */
    const struct addrinfo *ai;      /* the address we connect to */
    size_t len, sent, got;
    size_t piece_end, cut;          /* where this piece ends, how long the next */
    unsigned long framed;           /* -m: messages put into blocks so far */
    struct reassembly r;
    unsigned long long bytes;
    unsigned long long received;    /* every byte the server sent us */
    char first[sizeof SERVER_BUSY - 1];  /* the first of them */
    char out[BLOCK], in[ECHO_BUF];
};

static void usage(void)
{
    fprintf(stderr, "usage: %s [-a HOST] [-p PORT] [-T SECONDS] [-c CONNS] [-n BYTES | -m COUNT]\n"
                    "  -a HOST     server name or address (default %s)\n"
                    "  -p PORT     server port (default %s)\n"
                    "  -T SECONDS  give up on a server silent that long (default %s)\n"
                    "  -c CONNS    1..%d connections at once, all in one select()\n"
                    "              loop, each doing -n or -m (default 1)\n"
                    "  -n BYTES    send BYTES of test data and check the echo\n"
                    "  -m COUNT    send COUNT length-prefixed messages, glued together\n"
                    "              and cut apart, and check each echoed message\n"
                    "              (default: echo the lines of stdin)\n",
            PROG, DEFAULT_ADDR, DEFAULT_PORT, DEFAULT_TIMEOUT, MAX_CONNS);
    exit(2);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- what came back, and what to say about it -------------------------- */

/* Keep the first bytes the server sends aside: if they turn out to be
 * SERVER_BUSY, they explain whatever goes wrong next. */
static void note_arrival(struct link *l, const char *buf, size_t n)
{
    if (l->received < sizeof l->first) {
        size_t keep = sizeof l->first - (size_t)l->received;
        memcpy(l->first + l->received, buf, n < keep ? n : keep);
    }
    l->received += n;
}

/* A server at its limit answers a newcomer with SERVER_BUSY and closes.
 * If what went wrong in our first block came after those words, say so:
 * it is a refusal, not a broken server. */
static void say_if_busy(const struct link *l)
{
    size_t n = l->received < sizeof l->first ? (size_t)l->received : sizeof l->first;

    if (l->bytes == 0 && n > 0 && memcmp(l->first, SERVER_BUSY, n) == 0)
        fprintf(stderr, "%s: the server said \"server busy\": it turned us away\n", l->name);
}

/* What L is waiting for, for a message that says so. */
static void describe_wait(const struct link *l, const struct job *job, char *what, size_t size)
{
    if (l->phase == CLOSING)
        snprintf(what, size, "the server to close");
    else if (job->messages >= 0)
        snprintf(what, size, "the echo of message %lu", l->r.next);
    else
        snprintf(what, size, "the echo (%zu of %zu bytes back)", l->got, l->len);
}

/* recv() returned N, 0 or less, while L still waited for bytes: say what
 * became of the wait - the server closed, or an error (errno EAGAIN: -T
 * ran out). */
static void report_lost(const struct link *l, const struct job *job, ssize_t n)
{
    char what[80];

    describe_wait(l, job, what, sizeof what);
    if (n == 0)
        fprintf(stderr, "%s: server closed the connection while we waited for %s\n", l->name,
                what);
    else
        report_wait_failure(l->name, what, &job->timeout);
}

/* L waited -T and nothing moved. A recv() whose SO_RCVTIMEO runs out
 * fails with EAGAIN, and report_wait_failure() words that as a timeout;
 * our own deadline is the same news, so it gets the same words. */
static void report_timeout(const struct link *l, const struct job *job)
{
    errno = EAGAIN;
    report_lost(l, job, -1);
}

static void close_socket(struct link *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
}

/* Give up on L, once what went wrong has been said. */
static void fail(struct link *l)
{
    say_if_busy(l);
    close_socket(l);
    l->phase = FAILED;
}

/* ---- -n and lines: bytes compared as they come ------------------------- */

/* Compare N echoed bytes at IN with the part of the block they echo. */
static int check_bytes(const struct link *l, const char *in, size_t n)
{
    const char *out = l->out + l->got;

    if (memcmp(in, out, n) == 0)
        return 0;               /* nearly always: no need to look closer */
    for (size_t i = 0; i < n; i++) {
        if (in[i] != out[i]) {
            fprintf(stderr, "%s: byte %llu differs: sent 0x%02x, got 0x%02x\n", l->name,
                    l->bytes + l->got + i, (unsigned char)out[i], (unsigned char)in[i]);
            return -1;
        }
    }
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

/* N more bytes have arrived behind what IN held: take every whole message
 * out of it, check each, and count how this read fell across message
 * edges. Returns 0, or -1 after saying what was wrong. */
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
        if (len > MAX_MESSAGE || len != message_len(r->next)) {
            fprintf(stderr, "%s: message %lu: length %zu, want %zu\n", l->name, r->next, len,
                    message_len(r->next));
            return -1;
        }
        if (r->have - off - 4 < len)
            break;
        for (size_t j = 0; j < len; j++) {
            if (l->in[off + 4 + j] != test_byte(r->next + j)) {
                fprintf(stderr, "%s: message %lu: byte %zu differs\n", l->name, r->next, j);
                return -1;
            }
        }
        off += 4 + len;
        r->next++;
        taken++;
    }
    memmove(l->in, l->in + off, r->have - off);
    r->have -= off;
    r->glued += taken > 1;
    r->split += r->have > 0;
    return 0;
}

/* ---- one connection's steps --------------------------------------------- */

/* Where the piece of the block that starts at L->sent ends. -n and lines
 * hand send() the whole rest of the block. -m cuts it at odd places - 1,
 * 8, 57, 400 ... bytes - so that message edges and the edges of our
 * send() calls never line up. */
static void next_piece(struct link *l, const struct job *job)
{
    size_t piece = l->len - l->sent;

    if (job->messages >= 0) {
        if (piece > l->cut)
            piece = l->cut;
        l->cut = l->cut * 7 % 1499 + 1;
    }
    l->piece_end = l->sent + piece;
}

/* OUT holds a new block of LEN bytes: nothing of it sent or back yet. */
static void begin_block(struct link *l, const struct job *job, size_t len)
{
    l->len = len;
    l->sent = l->got = 0;
    l->cut = 1;
    next_piece(l, job);
}

/* Put the test's next block into L's OUT: -n's next BLOCK bytes, or as
 * many -m messages as fit. Returns its length: 0 once all is sent. */
static size_t fill_block(struct link *l, const struct job *job)
{
    size_t len;

    if (job->messages >= 0) {
        l->framed += frame_messages(l->framed, (unsigned long)job->messages, l->out, &len);
        return len;
    }
    unsigned long long done = l->bytes, total = (unsigned long long)job->total;
    len = total - done < BLOCK ? (size_t)(total - done) : BLOCK;
    for (size_t i = 0; i < len; i++)
        l->out[i] = test_byte(done + i);
    return len;
}

/* The socket failed a send(): say so. A server that turned us away may
 * have said why before it closed; whatever it sent is still there to
 * read, without waiting, for say_if_busy(). */
static void report_send_failure(struct link *l)
{
    fprintf(stderr, "%s: send: %s\n", l->name, strerror(errno));
    ssize_t n = recv(l->fd, l->in, sizeof l->in, MSG_DONTWAIT);
    if (n > 0)
        note_arrival(l, l->in, (size_t)n);
}

/* Send what the socket takes of L's block, one send() per piece; when it
 * takes less than a piece, the rest of that piece goes next. Returns 1 if
 * bytes went out, 0 if none could (non-blocking: it is full; blocking: -T
 * ran out), -1 after saying what went wrong. */
static int send_some(struct link *l, const struct job *job)
{
    int moved = 0;

    while (l->sent < l->len) {
        ssize_t n = send(l->fd, l->out + l->sent, l->piece_end - l->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            report_send_failure(l);
            return -1;
        }
        l->sent += (size_t)n;
        moved = 1;
        if (l->sent == l->piece_end)
            next_piece(l, job);
    }
    return moved;
}

/* Read what has come back of L's block, no more than the rest of it, and
 * check it at once. Returns 1 if bytes came, 0 if none did (non-blocking:
 * none yet; blocking: -T ran out), -1 after saying what went wrong. */
static int receive_echo(struct link *l, const struct job *job)
{
    int moved = 0;

    while (l->got < l->len) {
        char *at = l->in + l->r.have;
        size_t room = sizeof l->in - l->r.have;
        if (room > l->len - l->got)
            room = l->len - l->got;
        ssize_t n = recv(l->fd, at, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            report_lost(l, job, n);
            return -1;
        }
        note_arrival(l, at, (size_t)n);
        /* An echo cannot be ahead of what it echoes. */
        if (l->got + (size_t)n > l->sent) {
            fprintf(stderr, "%s: server sent more than we sent it\n", l->name);
            return -1;
        }
        if ((job->messages >= 0 ? take_messages(l, (size_t)n) : check_bytes(l, at, (size_t)n)) < 0)
            return -1;
        l->got += (size_t)n;
        moved = 1;
    }
    return moved;
}

/* "I have nothing more to say": the server reads EOF once it has read
 * everything we sent. Returns 0, or -1 after saying why not. */
static int half_close(const struct link *l)
{
    if (shutdown(l->fd, SHUT_WR) == 0)
        return 0;
    fprintf(stderr, "%s: shutdown: %s\n", l->name, strerror(errno));
    return -1;
}

/* After our shutdown(SHUT_WR) the server has nothing left to send: the
 * next recv() must say EOF. Returns 1 at EOF, 0 if nothing has come
 * (non-blocking: not yet; blocking: -T ran out), -1 after saying what
 * came instead. */
static int receive_eof(struct link *l, const struct job *job)
{
    char c;
    ssize_t n;

    while ((n = recv(l->fd, &c, 1, 0)) < 0 && errno == EINTR)
        ;
    if (n == 0)
        return 1;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n > 0)
        fprintf(stderr, "%s: server sent more than we sent it\n", l->name);
    else
        report_lost(l, job, n);
    return -1;
}

/* ---- the loop's side: a state machine per connection ------------------ */

/* L now waits in PHASE: for at most -T from NOW. */
static void wait_in(struct link *l, enum phase phase, const struct job *job, long long now)
{
    l->phase = phase;
    l->deadline = now + job->timeout_ms;
}

/* Every call on FD returns at once from now on: EAGAIN where it would
 * have waited. A new socket has no other status flags, so no F_GETFL. */
static int set_nonblocking(int fd)
{
    return fcntl(fd, F_SETFL, O_NONBLOCK);
}

static void connect_failed(struct link *l, const struct job *job, int err, long long now);

/* Start connecting L to its address: a non-blocking socket, so connect()
 * returns at once. EINPROGRESS says the handshake is under way; a 0 (it
 * can finish at once, on loopback) needs no other path, as the socket is
 * then writable and SO_ERROR 0. */
static void start_connect(struct link *l, const struct job *job, long long now)
{
    const struct addrinfo *ai = l->ai;

    if ((l->fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol)) < 0) {
        connect_failed(l, job, errno, now);
        return;
    }
    /* FD_SET() on a descriptor past FD_SETSIZE writes past the end of the
     * fd_set: memory corruption, not an error. The wall is select()'s. */
    if (l->fd >= FD_SETSIZE) {
        fprintf(stderr, "%s: descriptor %d is past what select() can watch (FD_SETSIZE %d)\n",
                l->name, l->fd, FD_SETSIZE);
        fail(l);
        return;
    }
    if (set_nonblocking(l->fd) < 0) {
        fprintf(stderr, "%s: fcntl O_NONBLOCK: %s\n", l->name, strerror(errno));
        fail(l);
        return;
    }
    if (connect(l->fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        connect_failed(l, job, errno, now);
        return;
    }
    wait_in(l, CONNECTING, job, now);
}

/* Connecting to L's address failed with ERR (ETIMEDOUT: -T ran out). Like
 * connect_to(), try the next address the name has ("localhost" is ::1 and
 * 127.0.0.1); after the last, say how it failed. */
static void connect_failed(struct link *l, const struct job *job, int err, long long now)
{
    char where[ADDR_STRLEN];

    close_socket(l);
    if (l->ai->ai_next != NULL) {
        l->ai = l->ai->ai_next;
        start_connect(l, job, now);
        return;
    }
    format_addr(l->ai->ai_addr, where, sizeof where);
    if (err == ETIMEDOUT)
        fprintf(stderr, "%s: connect %s: no answer within %g s\n", l->name, where,
                (double)job->timeout_ms / 1000);
    else
        fprintf(stderr, "%s: connect %s: %s\n", l->name, where, strerror(err));
    fail(l);
}

/* L's last block is all back, or L has just connected: send the next
 * block; or, with none left, shut down our side and wait for the
 * server's EOF. */
static void next_block(struct link *l, const struct job *job, long long now)
{
    size_t len = fill_block(l, job);

    if (len > 0) {
        begin_block(l, job, len);
        wait_in(l, SENDING, job, now);
    } else if (half_close(l) == 0) {
        wait_in(l, CLOSING, job, now);
    } else {
        fail(l);
    }
}

/* The server's EOF came: L is done. Alone, it says how it went. */
static void finish(struct link *l, const struct job *job)
{
    close_socket(l);
    l->phase = DONE;
    if (l->quiet)
        return;
    if (job->messages >= 0)
        printf("%s: %lld messages echoed, all correct; %lu reads held more than one message, "
               "%lu ended inside one\n", l->name, job->messages, l->r.glued, l->r.split);
    else
        printf("%s: %lld bytes echoed, all correct\n", l->name, job->total);
}

/* The handshake is over, one way or the other: SO_ERROR says which. */
static void finish_connect(struct link *l, const struct job *job, long long now)
{
    int err;
    socklen_t len = sizeof err;

    if (getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
        fprintf(stderr, "%s: getsockopt SO_ERROR: %s\n", l->name, strerror(errno));
        fail(l);
    } else if (err != 0) {
        connect_failed(l, job, err, now);
    } else {
        next_block(l, job, now);
    }
}

/* Send what we can, and take in the echo that has come back - in the same
 * turn: a client that only read once all was sent could fill both sides'
 * buffers and wait for a server that waits for it. Any bytes moved start
 * the wait again; a block all back makes way for the next. */
static void exchange(struct link *l, const struct job *job, int readable, int writable,
                     long long now)
{
    int moved = 0, rc;

    if (writable && l->phase == SENDING) {
        if ((rc = send_some(l, job)) < 0) {
            fail(l);
            return;
        }
        moved |= rc;
    }
    if (readable) {
        if ((rc = receive_echo(l, job)) < 0) {
            fail(l);
            return;
        }
        moved |= rc;
    }
    if (l->got == l->len) {
        l->bytes += l->len;
        next_block(l, job, now);
    } else if (moved) {
        wait_in(l, l->sent < l->len ? SENDING : RECEIVING, job, now);
    }
}

/* select() says L's socket is ready: move L on as far as it goes. */
static void step(struct link *l, const struct job *job, int readable, int writable,
                 long long now)
{
    int rc;

    switch (l->phase) {
    case CONNECTING:
        finish_connect(l, job, now);
        break;
    case SENDING:
    case RECEIVING:
        exchange(l, job, readable, writable, now);
        break;
    case CLOSING:
        if ((rc = receive_eof(l, job)) > 0)
            finish(l, job);
        else if (rc < 0)
            fail(l);
        break;
    case DONE:
    case FAILED:
        break;
    }
}

/* L's deadline has passed and nothing moved. */
static void time_out(struct link *l, const struct job *job, long long now)
{
    if (l->phase == CONNECTING) {
        connect_failed(l, job, ETIMEDOUT, now);
        return;
    }
    report_timeout(l, job);
    fail(l);
}

static int wants_read(const struct link *l)
{
    return l->phase == SENDING || l->phase == RECEIVING || l->phase == CLOSING;
}

/* A connect() in progress says it is over by turning writable. */
static int wants_write(const struct link *l)
{
    return l->phase == CONNECTING || l->phase == SENDING;
}

/*
 * Wait until some link can move or some deadline is due. select() takes
 * the sets of descriptors to watch and overwrites them with the ready
 * ones, so the sets are made again before every call, from each link's
 * phase; its timeout is the time left to the earliest deadline. Returns
 * select()'s count of ready descriptors (0: a deadline is due), -1 with
 * errno set, or -2 if no link is left to wait for.
 */
static int wait_for_links(struct link *links, long count, fd_set *rd, fd_set *wr)
{
    int maxfd = -1;
    long long now = now_ms(), wake = LLONG_MAX;

    FD_ZERO(rd);
    FD_ZERO(wr);
    for (long i = 0; i < count; i++) {
        const struct link *l = &links[i];
        if (l->phase == DONE || l->phase == FAILED)
            continue;
        /* start_connect() kept no descriptor past FD_SETSIZE. */
        if (wants_read(l))
            FD_SET(l->fd, rd);
        if (wants_write(l))
            FD_SET(l->fd, wr);
        if (l->fd > maxfd)
            maxfd = l->fd;
        if (l->deadline < wake)
            wake = l->deadline;
    }
    if (maxfd < 0)
        return -2;
    long long wait = wake > now ? wake - now : 0;
    struct timeval tv = {.tv_sec = (time_t)(wait / 1000),
                         .tv_usec = (suseconds_t)(wait % 1000 * 1000)};
    return select(maxfd + 1, rd, wr, NULL, &tv);
}

/*
 * Run every link to its end, DONE or FAILED: the one loop of this program.
 * After select(), the links are walked again: a ready one moves on, and
 * one that is not ready and past its deadline gives up. A link is looked
 * at once per turn, so a descriptor it closes or opens in this turn is
 * never mistaken for one select() saw. Should select() itself fail, every
 * link still open is given up.
 */
static void run_links(struct link *links, long count, const struct job *job)
{
    fd_set rd, wr;
    int n;

    while ((n = wait_for_links(links, count, &rd, &wr)) != -2) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "%s: select: %s\n", PROG, strerror(errno));
            for (long i = 0; i < count; i++)
                if (links[i].phase != DONE && links[i].phase != FAILED)
                    fail(&links[i]);
            return;
        }
        long long now = now_ms();
        for (long i = 0; i < count; i++) {
            struct link *l = &links[i];
            if (l->phase == DONE || l->phase == FAILED)
                continue;
            int readable = FD_ISSET(l->fd, &rd), writable = FD_ISSET(l->fd, &wr);
            if (readable || writable)
                step(l, job, readable, writable, now);
            else if (l->deadline <= now)
                time_out(l, job, now);
        }
    }
}

/* ---- the two modes ------------------------------------------------------ */

/* COUNT links, all zeroes, or NULL after saying we are out of memory. */
static struct link *new_links(long count)
{
    struct link *links = calloc((size_t)count, sizeof *links);
    if (links == NULL)
        fprintf(stderr, "%s: out of memory\n", PROG);
    return links;
}

/* L is NAME in every message about it; QUIET: no line of its own. */
static void init_link(struct link *l, const char *name, int quiet)
{
    snprintf(l->name, sizeof l->name, "%s", name);
    l->quiet = quiet;
    l->fd = -1;
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

/* -n or -m over CONNS connections, all in one loop. One connection says
 * how it went in a line of its own; more say it in one line together.
 * Returns 0 if every one succeeded. */
static int run_test(long conns, const struct job *job)
{
    struct addrinfo *addrs = resolve(job);
    struct link *links = addrs != NULL ? new_links(conns) : NULL;
    unsigned long long bytes = 0;
    long ok = 0;
    long long start = now_ms();

    for (long i = 0; links != NULL && i < conns; i++) {
        char name[48];
        snprintf(name, sizeof name, "%s: connection %ld", PROG, i + 1);
        init_link(&links[i], conns > 1 ? name : PROG, conns > 1);
        links[i].ai = addrs;
        start_connect(&links[i], job, start);
    }
    if (links != NULL)
        run_links(links, conns, job);
    for (long i = 0; links != NULL && i < conns; i++) {
        ok += links[i].phase == DONE;
        bytes += links[i].bytes;
    }
    if (conns > 1)
        printf("%s: %ld connections, %ld succeeded, %llu bytes echoed and checked in %.3f s\n",
               PROG, conns, ok, bytes, (double)(now_ms() - start) / 1000);
    free(links);
    if (addrs != NULL)
        freeaddrinfo(addrs);
    return ok == conns ? 0 : -1;
}

/* One line of stdin into BUF, at most CAP bytes of it (a longer line comes
 * in pieces). Returns its length: 0 at the end of stdin. */
static size_t read_line(char *buf, size_t cap)
{
    size_t len = 0;
    int c;

    while (len < cap && (c = getchar()) != EOF) {
        buf[len++] = (char)c;
        if (c == '\n')
            break;
    }
    return len;
}

/* Send the LEN bytes in L's OUT and take in their echo, on a blocking
 * socket: each step waits at most -T (connect_to() set SO_RCVTIMEO and
 * SO_SNDTIMEO), so a step that moves nothing means the time ran out.
 * Sending all before reading is safe here, as a block is never more than
 * both sides' buffers hold. Returns 0, or -1 after saying why not. */
static int echo_block(struct link *l, const struct job *job, size_t len)
{
    begin_block(l, job, len);
    l->phase = SENDING;
    while (l->got < l->len) {
        int rc = l->sent < l->len ? send_some(l, job) : receive_echo(l, job);
        if (rc == 0)
            report_timeout(l, job);
        if (rc <= 0)
            return -1;
    }
    l->bytes += len;
    return 0;
}

/* Each stdin line out, its echo checked and printed; then the half-close,
 * and the server's EOF. Returns 0, or -1 after saying what went wrong. */
static int echo_lines(struct link *l, const struct job *job)
{
    size_t len;

    while ((len = read_line(l->out, BLOCK)) > 0) {
        if (echo_block(l, job, len) < 0)
            return -1;
        if (fwrite(l->out, 1, len, stdout) != len || fflush(stdout) != 0) {
            fprintf(stderr, "%s: write to stdout: %s\n", l->name, strerror(errno));
            return -1;
        }
    }
    if (ferror(stdin)) {
        fprintf(stderr, "%s: read stdin: %s\n", l->name, strerror(errno));
        return -1;
    }
    if (half_close(l) < 0)
        return -1;
    l->phase = CLOSING;
    int rc = receive_eof(l, job);
    if (rc == 0)
        report_timeout(l, job);
    return rc > 0 ? 0 : -1;
}

/* Interactive: one connection, blocking. Returns 0 if all went well. */
static int run_lines(const struct job *job)
{
    struct link *l = new_links(1);
    if (l == NULL)
        return -1;
    init_link(l, PROG, 0);
    l->fd = connect_to(PROG, job->host, job->port, SOCK_STREAM, &job->timeout);
    int rc = l->fd >= 0 ? echo_lines(l, job) : -1;
    if (rc < 0)
        fail(l);
    else
        close_socket(l);
    free(l);
    return rc;
}

int main(int argc, char **argv)
{
    struct job job = {.host = DEFAULT_ADDR, .port = DEFAULT_PORT, .total = -1, .messages = -1};
    long long conns = 1;
    int opt, rc;

    init_program(PROG);
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
    /* Whole milliseconds, rounded up, as net.c's messages count them. */
    job.timeout_ms = (long long)job.timeout.tv_sec * 1000 + (job.timeout.tv_usec + 999) / 1000;

    if (job.total >= 0 || job.messages >= 0)
        rc = run_test((long)conns, &job);
    else
        rc = run_lines(&job);
    if (rc == 0 && fflush(stdout) != 0) {
        fprintf(stderr, "%s: write to stdout: %s\n", PROG, strerror(errno));
        rc = -1;
    }
    return rc == 0 ? 0 : 1;
}
