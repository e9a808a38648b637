/*
 * server.c - echo over TCP and UDP on one port, every client served by
 * one thread: an epoll loop.
 *
 * Chapter 05's loop, with select() replaced by epoll. select() is told the
 * whole list of descriptors on every call, and scans all of them, ready or
 * not: each turn of the loop costs in proportion to the connections open.
 * epoll keeps the list in the kernel instead: a descriptor is added once
 * (epoll_ctl ADD), changed when what we wait for changes (MOD), removed
 * when it closes (DEL), and epoll_wait() returns only the ready ones -
 * the kernel puts a descriptor on a ready list when its socket wakes, so
 * the cost of a turn follows the clients who spoke, not the clients open.
 * The rest of this file keeps pace: no walk over every connection is left
 * in the loop, the idle timeouts included. And there is no FD_SETSIZE:
 * -m MAX (default 10,000) is the only limit, then the descriptor limit.
 *
 * -e makes the connections edge-triggered: epoll reports a socket when new
 * bytes arrive, not for as long as some are waiting (level-triggered, the
 * default and select()'s way). Then every read must go on until EAGAIN,
 * since bytes left behind bring no new event. See on_readable().
 *
 * As in chapter 05: one thread serves everybody, and never blocks on any
 * one of them. Its sockets are non-blocking: a recv() with nothing to
 * read, or a send() with no room, fails at once with EAGAIN instead of
 * waiting. The only place the thread waits is epoll_wait(), which
 * returns when some sockets are ready: readable (bytes arrived, a client
 * connected, the client closed) or writable (room in the send buffer
 * again). Then the loop does what each ready socket allows, without
 * waiting, and goes back to epoll_wait().
 *
 * What a thread kept on its stack - where it was in its loop, what it had
 * read and not yet sent - now lives in a struct conn, between calls. A
 * short send() keeps the rest in the connection's output buffer and asks
 * epoll for writability. That buffer is bounded (OUT_MAX): when a client
 * sends and does not read, its buffer fills, and the loop stops reading
 * from it - back-pressure, passed on to the client by TCP's own flow
 * control - instead of growing without end. Every other client goes on.
 *
 * usage: server [-a ADDR] [-p PORT] [-q] [-t SECONDS] [-m MAX] [-e] [-b BYTES]
 */
#include "net.h"
#include "stop.h"
#include "udp.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define PROG "server"
/* The most one recv() reads. */
#define ECHO_BUF 16384
/* The most we hold for one client that does not read what we echo. */
#define OUT_MAX 65536
/* Connections accepted per turn of the loop at most: a burst of new
 * clients must not keep the loop from the connected ones. */
#define ACCEPT_BATCH 64
/* Events taken per epoll_wait() at most; more stay ready for the next. */
#define MAX_EVENTS 256
/* Edge-triggered, the most recv() calls one connection makes in a row
 * before the others get their turn (then it waits at the end of the
 * turn, on the unread list). */
#define READ_BUDGET 16
#define DEFAULT_MAX_CONNS 10000
/* With -p 0, how often we let the kernel pick a TCP port before giving up
 * on finding one that is free for UDP too. */
#define PORT_TRIES 20

/* The command line: set in main(), read-only after. */
static struct {
    const char *addr, *port;
    int quiet;
    long long idle_ms;          /* -t in milliseconds; 0: wait forever */
    long long max_conns, udp_size;
    int edge;                   /* -e: connections edge-triggered */
} opt = {DEFAULT_ADDR, DEFAULT_PORT, 0, 0, DEFAULT_MAX_CONNS, MAX_DATAGRAM, 0};

/* One client, and where its conversation stands between two calls. */
struct conn {
    int fd;
    int eof;                    /* the client has shut down its sending side */
    char *out;                  /* read, not yet echoed: NULL, or OUT_MAX bytes */
    size_t out_start, out_end;  /* the bytes still to send are [start, end) */
    long long deadline;         /* idle past this (ms, monotonic clock): closed */
    uint32_t events;            /* what epoll watches for it now */
    unsigned long nth;
    unsigned long long echoed;
    char peer[ADDR_STRLEN];
    /* Every connection; with -t, the least recently active first: all
     * have the same idle time, so the first is always the next to time
     * out. (Without -t, in the order they came.) */
    struct conn *prev, *next;
    /* Edge-triggered: on the loop's list of connections left with input
     * unread (READ_BUDGET), whose next edge may never come. */
    struct conn *unread_prev, *unread_next;
    int unread;
};

/* Everything the loop knows. One thread: nothing here needs a lock. */
struct loop {
    int epfd, listen_fd, udp_fd, signal_fd;
    long long accept_again;     /* not accepting until then (ms); 0: accepting */
    struct conn *first, *last;
    struct conn *unread;        /* edge-triggered: come back to these */
    long long live;
    unsigned long accepted;
    unsigned long long served, refused, bytes;
    char buf[ECHO_BUF];         /* where recv() reads: one thread, one buffer */
};

static void usage(void)
{
    fprintf(stderr, "usage: %s [-a ADDR] [-p PORT] [-q] [-t SECONDS] [-m MAX] [-e] [-b BYTES]\n"
                    "  -a ADDR  numeric IPv4 or IPv6 address to listen on (default %s)\n"
                    "  -p PORT  port for TCP and UDP, 0 = any free port (default %s)\n"
                    "  -q       quiet: no per-connection log lines\n"
                    "  -t SECONDS  close a client that neither sends nor reads for\n"
                    "              that long (default: wait forever)\n"
                    "  -m MAX   at most MAX clients at once, 1..1000000 (default %d);\n"
                    "           the next one is told \"server busy\"\n"
                    "  -e       edge-triggered: a connection is reported when bytes\n"
                    "           arrive, not while they wait (default: level-triggered)\n"
                    "  -b BYTES UDP receive buffer, 1..%d (default %d): a larger\n"
                    "           datagram is counted and dropped, never echoed cut\n",
            PROG, DEFAULT_ADDR, DEFAULT_PORT, DEFAULT_MAX_CONNS, MAX_DATAGRAM, MAX_DATAGRAM);
    exit(2);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Every call on FD returns at once from now on: EAGAIN where it would
 * have waited. A new socket has no other status flags, so no F_GETFL. */
static int set_nonblocking(int fd)
{
    return fcntl(fd, F_SETFL, O_NONBLOCK);
}

/* socket() -> bind() -> listen(): a socket that takes connections. */
static int open_listener(const char *addr, const char *port)
{
    struct addrinfo *ai = server_address(PROG, addr, port, SOCK_STREAM);
    char where[ADDR_STRLEN];
    int one = 1;

    format_addr(ai->ai_addr, where, sizeof where);
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0)
        die_sys(PROG, "socket", where);
    /* Without SO_REUSEADDR a restarted server cannot bind while connections
     * of its previous run sit in TIME_WAIT. (A second server still cannot
     * bind a port that one is listening on: TCP refuses that anyway.) */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die_sys(PROG, "setsockopt SO_REUSEADDR", where);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        die_sys(PROG, "bind", where);
    /* From here on the kernel completes handshakes by itself and queues
     * the connections, up to the backlog, until we accept() them. */
    if (listen(fd, SOMAXCONN) < 0)
        die_sys(PROG, "listen", where);
    /* Non-blocking too: epoll said a client was waiting, but it may
     * have given up (and been dropped from the queue) before our accept(),
     * which would then block the whole loop until the next client came. */
    if (set_nonblocking(fd) < 0)
        die_sys(PROG, "fcntl O_NONBLOCK", where);
    freeaddrinfo(ai);
    return fd;
}

/* Set a client's socket up: non-blocking, and TCP_NODELAY, which sends
 * each echo at once (with Nagle's algorithm a small piece waits for the
 * ACK of the previous one, and the client may delay that by 40 ms).
 * Returns NULL, or the call the kernel refused (errno set): we close that
 * one connection rather than serve it half-configured. */
static const char *prepare_client(int fd)
{
    int one = 1;

    if (set_nonblocking(fd) < 0)
        return "fcntl O_NONBLOCK";
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        return "setsockopt TCP_NODELAY";
    return NULL;
}

/* Say why the conversation ended, in the words a reader would use. */
static const char *why_closed(int err)
{
    if (err == 0)
        return "client closed";
    if (err == ETIMEDOUT)
        return "idle timeout";
    if (err == EINTR)
        return "server stopping";
    return strerror(err);
}

/* ---- connections ------------------------------------------------------ */

static size_t pending(const struct conn *c)
{
    return c->out_end - c->out_start;
}

/* Read from a client only while there is room to keep what we read: a
 * client that does not read its echo stops being read from. And never
 * after its EOF. */
static int wants_read(const struct conn *c)
{
    return !c->eof && pending(c) < OUT_MAX;
}

static int wants_write(const struct conn *c)
{
    return pending(c) > 0;
}

static void link_conn(struct loop *l, struct conn *c)
{
    c->prev = l->last;
    c->next = NULL;
    if (l->last != NULL)
        l->last->next = c;
    else
        l->first = c;
    l->last = c;
    l->live++;
}

static void unlink_conn(struct loop *l, struct conn *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        l->first = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        l->last = c->prev;
    l->live--;
}

/* The client did something: its idle deadline starts again, and it goes
 * to the end of the list - which so stays in deadline order, and the
 * loop finds the next timeout at its head, never by a walk. */
static void touch(struct loop *l, struct conn *c)
{
    if (opt.idle_ms > 0) {
        c->deadline = now_ms() + opt.idle_ms;
        unlink_conn(l, c);
        link_conn(l, c);
    }
}

/* Edge-triggered: C still has input we did not read. */
static void mark_unread(struct loop *l, struct conn *c)
{
    if (c->unread)
        return;
    c->unread = 1;
    c->unread_prev = NULL;
    c->unread_next = l->unread;
    if (l->unread != NULL)
        l->unread->unread_prev = c;
    l->unread = c;
}

static void unmark_unread(struct loop *l, struct conn *c)
{
    if (!c->unread)
        return;
    c->unread = 0;
    if (c->unread_prev != NULL)
        c->unread_prev->unread_next = c->unread_next;
    else
        l->unread = c->unread_next;
    if (c->unread_next != NULL)
        c->unread_next->unread_prev = c->unread_prev;
}

/* The end of a conversation: ERR says why (see why_closed()).
 *
 * Out of the interest set first, then closed. close() alone removes a
 * descriptor from epoll only when the last reference to its socket goes:
 * if the descriptor had been duplicated (dup(), or a fork()ed child), the
 * registration would live on, and report events carrying a pointer to the
 * struct we are about to free. */
static void close_conn(struct loop *l, struct conn *c, int err)
{
    if (!opt.quiet)
        log_line("%s: %s closed after %llu bytes echoed: %s\n", PROG, c->peer, c->echoed,
                 why_closed(err));
    /* It fails only for a descriptor we never registered: a bug, and
     * nothing more to do about it at a close. */
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    unlink_conn(l, c);
    unmark_unread(l, c);
    close(c->fd);
    free(c->out);
    free(c);
}

/* send() as much of BUF as the kernel takes now, without waiting: on
 * until all of it went or send() says EAGAIN. A short send alone does not
 * mean the socket is full - only EAGAIN does, and only after EAGAIN will
 * the socket report that it has room again. Returns how much went (0:
 * nothing, no room at all), or -1 with errno set. */
static ssize_t send_now(struct loop *l, struct conn *c, const char *buf, size_t len)
{
    size_t sent = 0;

    while (sent < len) {
        ssize_t n = send(c->fd, buf + sent, len - sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        sent += (size_t)n;
    }
    if (sent > 0) {
        c->echoed += sent;
        l->bytes += sent;
        touch(l, c);
    }
    return (ssize_t)sent;
}

/* Send what C's output buffer holds, as far as the kernel takes it. Once
 * it is empty, the buffer goes back: an idle connection costs no more
 * than its struct. Returns 0, or -1 with errno set. */
static int flush_output(struct loop *l, struct conn *c)
{
    ssize_t n = send_now(l, c, c->out + c->out_start, pending(c));
    if (n < 0)
        return -1;
    c->out_start += (size_t)n;
    if (pending(c) > 0)
        return 0;               /* full: we hear when there is room */
    free(c->out);
    c->out = NULL;
    c->out_start = c->out_end = 0;
    return 0;
}

/* Echo LEN bytes of BUF to C's client: straight from BUF if nothing is
 * waiting (nearly always, and nearly always all of it), and what the
 * kernel does not take now into the output buffer, behind what waits
 * there already. The caller read no more than there is room for. */
static int echo(struct loop *l, struct conn *c, const char *buf, size_t len)
{
    if (c->out == NULL) {
        ssize_t n = send_now(l, c, buf, len);
        if (n < 0)
            return -1;
        if ((size_t)n == len)
            return 0;
        if ((c->out = malloc(OUT_MAX)) == NULL)
            return -1;
        buf += n;
        len -= (size_t)n;
        c->out_start = c->out_end = 0;
    }
    if (c->out_end + len > OUT_MAX) {
        memmove(c->out, c->out + c->out_start, pending(c));
        c->out_end -= c->out_start;
        c->out_start = 0;
    }
    memcpy(c->out + c->out_end, buf, len);
    c->out_end += len;
    return 0;
}

/*
 * C's socket is readable: bytes, the client's EOF, or an error.
 * Level-triggered, one recv() per turn: bytes left in the socket keep it
 * ready, and epoll reports it again next turn, after the others had
 * theirs. Edge-triggered, epoll reports it again only when more bytes
 * arrive: whatever we leave now may never be reported. So we read until
 * recv() says EAGAIN - the rule of edge-triggered I/O. But "until EAGAIN"
 * from a client that sends as fast as we read is "for ever", and every
 * other client waits: so we stop after READ_BUDGET reads, put C on the
 * unread list, and come back to it at the end of the turn ourselves.
 * Either way, we stop when C's output buffer is full (back-pressure);
 * set_interest() then stops watching C's input, and watching it again once
 * the buffer drains makes epoll look at the socket anew, edge or not.
 * Returns -1 if C was closed (and freed).
 */
static int on_readable(struct loop *l, struct conn *c)
{
    for (int reads = 0; wants_read(c); reads++) {
#ifdef BROKEN_no_drain
        /* The classic mistake, on purpose (make BROKEN=no-drain): one read
         * per event, edge-triggered too - and bytes left behind. */
        if (reads == 1)
            return 0;
#endif
        if (reads == (opt.edge ? READ_BUDGET : 1)) {
            if (opt.edge)
                mark_unread(l, c);
            return 0;
        }
        size_t room = OUT_MAX - pending(c);
        ssize_t n;
        while ((n = recv(c->fd, l->buf, room < ECHO_BUF ? room : ECHO_BUF, 0)) < 0 &&
               errno == EINTR)
            ;
        if (n > 0) {
            touch(l, c);
            if (echo(l, c, l->buf, (size_t)n) == 0)
                continue;
        } else if (n == 0) {
            /* The client will send no more. Echo what is still waiting,
             * then close: the half-close of chapter 02, one state of
             * the struct. */
            c->eof = 1;
            if (pending(c) > 0)
                return 0;
            errno = 0;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        }
        close_conn(l, c, errno);
        return -1;
    }
    return 0;
}

/* C's socket has room again for what waits in its output buffer. Returns
 * -1 if C was closed (and freed). */
static int on_writable(struct loop *l, struct conn *c)
{
    if (flush_output(l, c) == 0) {
        if (!c->eof || pending(c) > 0)
            return 0;
        errno = 0;
    }
    close_conn(l, c, errno);
    return -1;
}

/* What epoll should watch C for now: input while we can take it (and
 * EPOLLRDHUP, the client's half-close), output only while some waits - a
 * socket with room in its send buffer is writable nearly always, and
 * level-triggered, watching it with nothing to send would wake the loop
 * at once, every turn. One epoll_ctl() when that changes, none when not
 * (the usual case: an echo that goes out at once changes nothing). */
static int set_interest(struct loop *l, struct conn *c)
{
    uint32_t want = (wants_read(c) ? EPOLLIN | EPOLLRDHUP : 0) |
                    (wants_write(c) ? EPOLLOUT : 0) | (opt.edge ? EPOLLET : 0);
    if (want == c->events)
        return 0;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        return -1;
    c->events = want;
    return 0;
}

/* ---- accepting -------------------------------------------------------- */

/* Turn a newcomer away and say so: one line, then close - never a silent
 * close, never a hang. The line goes into a fresh, empty send buffer, so
 * send() cannot block; if it fails, the client has gone already, and
 * there is nobody left to tell. */
static void refuse(struct loop *l, int fd, const char *peer, const char *why)
{
    send(fd, SERVER_BUSY, strlen(SERVER_BUSY), MSG_NOSIGNAL);
    close(fd);
    l->refused++;
    if (!opt.quiet)
        log_line("%s: %s refused (%s): server busy\n", PROG, peer, why);
}

/* A new client: served from now on, or refused at one of our limits. */
static void start_connection(struct loop *l, int fd, const struct sockaddr_storage *ss)
{
    char peer[ADDR_STRLEN];

    format_addr((const struct sockaddr *)ss, peer, sizeof peer);
    if (l->live >= opt.max_conns) {
        refuse(l, fd, peer, "connection limit");
        return;
    }
    const char *failed = prepare_client(fd);
    if (failed != NULL) {
        log_line("%s: %s: %s: %s (closed)\n", PROG, peer, failed, strerror(errno));
        close(fd);
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        refuse(l, fd, peer, "out of memory");
        return;
    }
    c->fd = fd;
    c->nth = ++l->accepted;
    memcpy(c->peer, peer, sizeof peer);
    /* Registered once, with a pointer to its struct: every event for this
     * socket comes back carrying it (data.ptr), so no lookup by number. */
    c->events = EPOLLIN | EPOLLRDHUP | (opt.edge ? EPOLLET : 0);
    struct epoll_event ev = {.events = c->events, .data.ptr = c};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        refuse(l, fd, peer, strerror(errno));
        free(c);
        return;
    }
    c->deadline = now_ms() + opt.idle_ms;
    link_conn(l, c);
    l->served++;
    if (!opt.quiet)
        log_line("%s: %s connected (client #%lu)\n", PROG, peer, c->nth);
}

/* Watch the listener for clients (ON), or rest it: epoll would report it
 * ready for as long as a client waits that we cannot accept. */
static int watch_listener(struct loop *l, int on)
{
    struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.ptr = &l->listen_fd};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, l->listen_fd, &ev) == 0)
        return 0;
    log_line("%s: epoll_ctl: %s\n", PROG, strerror(errno));
    return -1;
}

/* The listener is readable: take the clients waiting, a batch at most.
 * Returns -1 on an error the server cannot go on after. */
static int accept_clients(struct loop *l)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept(l->listen_fd, (struct sockaddr *)&ss, &len);
        if (fd >= 0) {
            start_connection(l, fd, &ss);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;           /* nobody left waiting */
        int pause = accept_pause_ms(PROG, l->listen_fd, errno);
        if (pause < 0) {
            log_line("%s: accept: %s\n", PROG, strerror(errno));
            return -1;
        }
        if (pause > 0) {
            l->accept_again = now_ms() + pause;
            return watch_listener(l, 0);
        }
    }
    return 0;
}

/* ---- the loop --------------------------------------------------------- */

/* The earlier of two deadlines, 0 meaning none. */
static long long earlier(long long a, long long b)
{
    return a == 0 || (b != 0 && b < a) ? b : a;
}

/*
 * Wait until something can be done, and say what: epoll_wait() fills
 * EVENTS with the ready descriptors only, each with the pointer we
 * registered it with. Nothing to build before the call, as select()
 * needed; the timeouts cost no walk either: the connections are in
 * deadline order, so those that timed out are at the head of the list,
 * and the next deadline is the first one left. Edge-triggered, with
 * connections left unread, we only look for events (timeout 0): those
 * connections must not wait. Returns how many events (0: a deadline
 * passed), or -1 with errno set.
 */
static int wait_for_events(struct loop *l, struct epoll_event *events)
{
    long long now = now_ms(), wake = 0;

    if (l->accept_again != 0 && l->accept_again <= now) {
        l->accept_again = 0;
        if (watch_listener(l, 1) < 0)
            return -1;
    }
    wake = l->accept_again;
    if (opt.idle_ms > 0) {
        while (l->first != NULL && l->first->deadline <= now)
            close_conn(l, l->first, ETIMEDOUT);
        if (l->first != NULL)
            wake = earlier(wake, l->first->deadline);
    }
    int timeout = wake == 0 ? -1 : (int)(wake - now);
    if (l->unread != NULL)
        timeout = 0;
    return epoll_wait(l->epfd, events, MAX_EVENTS, timeout);
}

/*
 * What to do for one event of C's. EPOLLHUP, EPOLLRDHUP and EPOLLERR may
 * come together with the client's last bytes, or after them: read first,
 * always - recv() hands over the bytes, then says 0 (the end) or the
 * error. A loop that closed at the sight of the flag would lose those
 * bytes. (HUP and ERR come even when we do not watch for input: then the
 * output buffer is what waits, and send() meets the error.) Returns -1
 * if C was closed (and freed).
 */
static int on_events(struct loop *l, struct conn *c, uint32_t events)
{
#ifdef BROKEN_hup_first
    /* The classic mistake, on purpose (make BROKEN=hup-first): close at the
     * sight of a hang-up, and lose the bytes that came with it. */
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        close_conn(l, c, 0);
        return -1;
    }
#endif
    if ((events & EPOLLOUT) && on_writable(l, c) < 0)
        return -1;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        int rc = wants_read(c) ? on_readable(l, c) : on_writable(l, c);
        if (rc < 0)
            return -1;
    }
    if (set_interest(l, c) == 0)
        return 0;
    close_conn(l, c, errno);
    return -1;
}

static void report(void *arg);

/*
 * One turn of the loop: wait, then serve the ready descriptors, without
 * waiting on any. Each event comes with the pointer it was registered
 * with: one of the loop's own descriptors, or a connection's struct. A
 * connection closed in this turn appears in no later event of the turn
 * (epoll reports a descriptor once per call), so no event ever carries a
 * pointer to a struct already freed. Then, edge-triggered, the
 * connections left with input unread get their next turn.
 * Returns -1 if the server cannot go on.
 */
static int run_once(struct loop *l)
{
    struct epoll_event events[MAX_EVENTS];

    int n = wait_for_events(l, events);
    if (n < 0) {
        if (errno == EINTR)
            return 0;           /* a signal: the pipe says which, next turn */
        log_line("%s: epoll_wait: %s\n", PROG, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        void *ptr = events[i].data.ptr;
        if (ptr == &l->signal_fd) {
            take_signals(report, l);
            if (stop_requested())
                return 0;
        } else if (ptr == &l->udp_fd) {
            udp_ready();
        } else if (ptr == &l->listen_fd) {
            if (l->accept_again == 0 && accept_clients(l) < 0)
                return -1;
        } else {
            on_events(l, ptr, events[i].events);
        }
    }
    struct conn *unread = l->unread;
    l->unread = NULL;
    for (struct conn *c = unread, *next; c != NULL; c = next) {
        next = c->unread_next;
        c->unread = 0;
        on_events(l, c, EPOLLIN);
    }
    return 0;
}

/* SIGUSR1, and the last line at exit: what the counters say. */
static void report(void *arg)
{
    struct loop *l = arg;
    char udp_line[256];
    unsigned long long held = 0;

    for (struct conn *c = l->first; c != NULL; c = c->next)
        held += pending(c);
    udp_summary(udp_line, sizeof udp_line);
    /* Refused by us, or by turn_away() when out of descriptors. */
    log_line("%s: %lld connections live, %llu served, %llu refused (server busy), "
             "%llu bytes echoed; %s; %llu bytes waiting to be sent\n", PROG, l->live, l->served,
             l->refused + clients_turned_away(), l->bytes, udp_line, held);
}

/* The descriptors the loop always watches: once, each with a pointer to
 * its own number, which tells its events from a connection's. */
static void watch_own(struct loop *l, int *fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = fd};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, *fd, &ev) < 0)
        die_sys(PROG, "epoll_ctl", "ADD");
}

/* The TCP listener and the UDP socket, on one port number. With -p 0 the
 * kernel picks a port free for TCP, which some other program may hold for
 * UDP: then we close both and let it pick again. */
static void open_sockets(struct loop *l)
{
    int any_port = parse_port(opt.port, 0) == 0;

    for (int tries = 1;; tries++) {
        l->listen_fd = open_listener(opt.addr, opt.port);
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (getsockname(l->listen_fd, (struct sockaddr *)&ss, &len) < 0)
            die_sys(PROG, "getsockname", "of our own socket");
        l->udp_fd = udp_open(PROG, (struct sockaddr *)&ss, len, any_port && tries < PORT_TRIES);
        if (l->udp_fd >= 0)
            return;
        close(l->listen_fd);
    }
}

int main(int argc, char **argv)
{
    static struct loop loop;    /* static: its buffer is too big for a stack frame we share */
    struct timeval idle;
    int opt_char, rc = 0;

    init_program(PROG);
    /* Each option is checked where it is read: "-p 99999 -p 0" is an error
     * too, not "the last one wins". */
    while ((opt_char = getopt(argc, argv, "a:p:qt:m:eb:")) != -1) {
        switch (opt_char) {
        case 'a': if (!is_numeric_addr(opt.addr = optarg)) usage(); break;
        case 'p': if (parse_port(opt.port = optarg, 0) < 0) usage(); break;
        case 'q': opt.quiet = 1; break;
        case 't':
            if (parse_seconds(optarg, &idle) < 0)
                usage();
            opt.idle_ms = (long long)idle.tv_sec * 1000 + (idle.tv_usec + 999) / 1000;
            break;
        case 'm': if ((opt.max_conns = parse_count(optarg, 1, 1000000)) < 0) usage(); break;
        case 'e': opt.edge = 1; break;
        case 'b': if ((opt.udp_size = parse_count(optarg, 1, MAX_DATAGRAM)) < 0) usage(); break;
        default: usage();
        }
    }
    if (optind != argc)
        usage();

    raise_fd_limit(PROG);
    open_sockets(&loop);
    udp_start(PROG, loop.udp_fd, (size_t)opt.udp_size, opt.quiet);
    loop.signal_fd = open_signal_pipe(PROG);
    /* The interest set: a kernel object of its own, with a descriptor. */
    if ((loop.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        die_sys(PROG, "epoll_create1", "for the loop");
    watch_own(&loop, &loop.listen_fd);
    watch_own(&loop, &loop.udp_fd);
    watch_own(&loop, &loop.signal_fd);
    announce_listening(PROG, loop.listen_fd);

    while (!stop_requested()) {
        if (run_once(&loop) < 0) {
            rc = 1;
            break;
        }
    }

    /* Stopping. A SIGUSR1 that came with the stop still gets its report,
     * with the clients still connected. Then every client is closed,
     * unanswered bytes and all - a stopping server starts no new
     * conversation - then the rest. */
    take_signals(report, &loop);
    while (loop.first != NULL)
        close_conn(&loop, loop.first, EINTR);
    report(&loop);
    udp_finish();
    close(loop.listen_fd);
    close_signal_pipe();
    close(loop.epfd);
    end_program(PROG);
    return rc;
}
