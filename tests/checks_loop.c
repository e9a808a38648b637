/*
 * checks_loop.c - one thread and many connections (chapters 05 and 06):
 * a thousand clients at once, ten thousand where a stage claims it (and
 * select()'s wall where it does not), a client that never reads and must
 * not make the server grow, a flood of connections with no descriptor
 * left, and an idle deadline for every connection on its own.
 *
 * The test side is an event loop too: thousands of blocking clients in
 * one test thread would deadlock on the first full socket buffer.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SERVER_BUSY "server busy\n"

/* ---- helpers ----------------------------------------------------------- */

static void sleep_ms(int n)
{
    nanosleep(&(struct timespec){.tv_sec = n / 1000, .tv_nsec = n % 1000 * 1000000L}, NULL);
}


/* The CPU time PID has used so far, user and system, in seconds (from
 * /proc/PID/stat, in clock ticks: 10 ms steps). */
static double cpu_seconds(pid_t pid)
{
    char path[64];
    unsigned long long user = 0, sys = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    /* pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime */
    int ok = fscanf(f, "%*d (%*[^)]) %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                    &user, &sys) == 2;
    fclose(f);
    ck_assert_msg(ok, "cannot read the CPU times in %s", path);
    return (double)(user + sys) / (double)sysconf(_SC_CLK_TCK);
}

/* What a running server has logged so far. Its stderr is a file we share
 * the offset of: pread() leaves that offset where the server writes. */
static char *log_so_far(const struct server *s)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    ssize_t n;
    while ((n = pread(s->p.err, buf + len, cap - len - 1, (off_t)len)) > 0) {
        len += (size_t)n;
        if (cap - len < 2)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    return buf;
}

/* One counters line of the server (SIGUSR1 or exit): "server: N
 * connections live, S served, R refused (server busy), B bytes echoed;
 * <udp>; Q bytes waiting to be sent". */
struct summary {
    long long live, waiting;
};

#define WAITING " bytes waiting to be sent"

/* The K-th counters line (from 1) in LOG, if there are that many. */
static int nth_summary(const char *log, int k, struct summary *sum)
{
    const char *end = log;
    for (int i = 0; i < k; i++) {
        end = strstr(end, WAITING);
        if (end == NULL)
            return 0;
        end += strlen(WAITING);
    }
    const char *line = end - strlen(WAITING);
    while (line > log && line[-1] != '\n')
        line--;
    const char *q = end - strlen(WAITING);
    while (q > line && q[-1] >= '0' && q[-1] <= '9')
        q--;
    const char *live = strstr(line, ": ");
    ck_assert_msg(live != NULL && live < q && sscanf(live + 2, "%lld connections live",
                                                      &sum->live) == 1 &&
                      sscanf(q, "%lld", &sum->waiting) == 1,
                  "counters line %d does not read 'PROG: N connections live, ...; Q bytes "
                  "waiting to be sent':\n%.*s", k, (int)(end - line), line);
    return 1;
}

/* SIGUSR1 to the server; wait for its K-th counters line and read it. */
static struct summary counters_now(const struct server *s, int k)
{
    struct summary sum;
    kill(s->p.pid, SIGUSR1);
    long long deadline = now_ms() + ms(3000);
    for (;;) {
        char *log = log_so_far(s);
        int found = nth_summary(log, k, &sum);
        if (!found && now_ms() > deadline)
            ck_abort_msg("no counters line number %d within %d ms of SIGUSR1; log:\n%.3000s",
                         k, ms(3000), log);
        free(log);
        if (found)
            return sum;
        sleep_ms(10);
    }
}

/* ---- a crowd of clients, driven by one epoll loop ------------------------ */

enum state {
    CONNECTING, /* connect() under way */
    IDLE,       /* connected, between rounds: any byte or a close is wrong */
    ECHOING,    /* sending its round's bytes, reading them back */
    REFUSING,   /* got something else first: must be "server busy", a close */
    REFUSED,    /* was told "server busy" and closed (closed here too) */
    CLOSING,    /* the server is stopping: its close must come, nothing else */
    GONE,       /* closed by the server's stop (closed here too) */
};

static const char *const state_names[] = {"connecting", "idle", "echoing", "refusing",
                                          "refused", "closing", "gone"};

struct member {
    int fd;
    enum state state;
    int rounds;             /* echo rounds completed */
    size_t sent, got;       /* this round */
    char head[16];          /* the first bytes back, before any round ended */
    size_t head_len;
};

struct crowd {
    int ep, port, n;
    size_t size;            /* bytes each client sends per round */
    int refusals_allowed;   /* "server busy" and a close is an answer too */
    int active;             /* members connecting, echoing or refusing */
    int refused;
    char *out;              /* one round's bytes, for the client now sending */
    struct member *m;
};

/* Byte J of client I's message in round R: its number in the first four
 * bytes of the round, then the test pattern under a seed that changes
 * every 64 bytes - pattern() alone repeats every 256 seeds, and a server
 * that gave client 7's bytes to client 263 must not pass. */
static char crowd_byte(int i, int r, size_t j)
{
    unsigned id = (unsigned)i ^ (unsigned)r << 24;
    if (j < 4)
        return (char)(id >> (8 * (3 - j)));
    unsigned h = id * 2654435761u ^ (unsigned)(j / 64) * 40503u;
    return (char)pattern(j, h ^ h >> 16);
}

static void crowd_init(struct crowd *cr, int port, int n, size_t size)
{
    *cr = (struct crowd){.port = port, .n = n, .size = size};
    cr->ep = epoll_create1(EPOLL_CLOEXEC);
    ck_assert_msg(cr->ep >= 0, "epoll_create1: %s", strerror(errno));
    cr->m = calloc((size_t)n, sizeof *cr->m);
    cr->out = malloc(size);
    for (int i = 0; i < n; i++)
        cr->m[i].fd = -1;
}

static void crowd_free(struct crowd *cr)
{
    for (int i = 0; i < cr->n; i++)
        if (cr->m[i].fd >= 0)
            close(cr->m[i].fd);
    close(cr->ep);
    free(cr->m);
    free(cr->out);
}

static void watch(struct crowd *cr, int i, int op, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.u32 = (unsigned)i};
    ck_assert_msg(epoll_ctl(cr->ep, op, cr->m[i].fd, &ev) == 0, "epoll_ctl: %s",
                  strerror(errno));
}

/* Client I got something other than its echo before its first round was
 * over: with refusals allowed, the server may be telling it "server busy". */
static void refusing(struct crowd *cr, int i, const char *what)
{
    struct member *m = &cr->m[i];
    if (m->state == IDLE && (!cr->refusals_allowed || m->rounds > 0))
        ck_abort_msg("client %d of %d, after %d echo rounds: %s", i + 1, cr->n, m->rounds,
                     what);
    if (!cr->refusals_allowed || m->rounds > 0)
        ck_abort_msg("client %d of %d, echo round %d: %s (%zu of %zu bytes back)%s%.*s",
                     i + 1, cr->n, m->rounds + 1, what, m->got, cr->size,
                     m->rounds == 0 ? "; they began: " : "",
                     m->rounds == 0 ? (int)m->head_len : 0, m->head);
    if (m->state != REFUSING) {
        if (m->state == IDLE)
            cr->active++;
        m->state = REFUSING;
        watch(cr, i, EPOLL_CTL_MOD, EPOLLIN);
    }
}

/* The connection of client I was closed (EOF or a reset). */
static void closed(struct crowd *cr, int i)
{
    struct member *m = &cr->m[i];
    if (m->state != REFUSING)
        refusing(cr, i, "closed by the server");
    ck_assert_msg(m->head_len == strlen(SERVER_BUSY) && !memcmp(m->head, SERVER_BUSY,
                                                                 m->head_len),
                  "client %d of %d: got '%.*s' and a close; want its echo, or '%s' and a close",
                  i + 1, cr->n, (int)m->head_len, m->head, "server busy\\n");
    close(m->fd);
    m->fd = -1;
    m->state = REFUSED;
    cr->active--;
    cr->refused++;
}

/* Read what came for client I and compare it with what it sent. */
static void take_input(struct crowd *cr, int i)
{
    struct member *m = &cr->m[i];
    char buf[4096];
    ssize_t n = recv(m->fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (m->state == CLOSING) {
        ck_assert_msg(n <= 0, "client %d of %d: %zd bytes nobody asked for at the stop", i + 1,
                      cr->n, n);
        close(m->fd);
        m->fd = -1;
        m->state = GONE;
        cr->active--;
        return;
    }
    /* A close with our bytes unread arrives as a reset, after the data. */
    if (n == 0 || (n < 0 && errno == ECONNRESET)) {
        closed(cr, i);
        return;
    }
    ck_assert_msg(n > 0, "client %d of %d: recv: %s", i + 1, cr->n, strerror(errno));
    int wrong = 0;
    for (ssize_t k = 0; k < n; k++, m->got++) {
        if (m->rounds == 0 && m->head_len < sizeof m->head)
            m->head[m->head_len++] = buf[k];
        wrong |= m->state != ECHOING || m->got >= cr->size ||
                 buf[k] != crowd_byte(i, m->rounds, m->got);
    }
    if (wrong || m->state == REFUSING) {
        refusing(cr, i, m->state == IDLE ? "bytes it never sent (another client's?)"
                                         : "echoed bytes differ (another client's?)");
        ck_assert_msg(m->head_len <= strlen(SERVER_BUSY), "client %d of %d: got '%.*s...'",
                      i + 1, cr->n, (int)m->head_len, m->head);
        return;
    }
    if (m->state == ECHOING && m->got == cr->size) {
        m->state = IDLE;
        m->rounds++;
        cr->active--;
        watch(cr, i, EPOLL_CTL_MOD, EPOLLIN);
    }
}

/* Send what fits of client I's round. */
static void give_output(struct crowd *cr, int i)
{
    struct member *m = &cr->m[i];
    for (size_t j = m->sent; j < cr->size; j++)
        cr->out[j] = crowd_byte(i, m->rounds, j);
    ssize_t n = send(m->fd, cr->out + m->sent, cr->size - m->sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
        refusing(cr, i, "closed by the server before it sent its round");
        return;
    }
    ck_assert_msg(n > 0, "client %d of %d: send: %s", i + 1, cr->n, strerror(errno));
    if ((m->sent += (size_t)n) == cr->size)
        watch(cr, i, EPOLL_CTL_MOD, EPOLLIN);
}

/* connect() of client I is over: it must have worked. */
static void connected(struct crowd *cr, int i)
{
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(cr->m[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
    ck_assert_msg(err == 0, "client %d of %d: connect: %s", i + 1, cr->n, strerror(err));
    cr->m[i].state = IDLE;
    cr->active--;
    watch(cr, i, EPOLL_CTL_MOD, EPOLLIN);
}

/* Run the loop until no member is connecting, echoing or being refused.
 * Bytes must keep moving: WHAT is stuck if nothing moved for 5 s. */
static void crowd_run(struct crowd *cr, const char *what)
{
    struct epoll_event ev[512];
    long long deadline = now_ms() + ms(5000);
    while (cr->active > 0) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            int i = 0;
            while (cr->m[i].state == IDLE || cr->m[i].state == REFUSED ||
                   cr->m[i].state == GONE)
                i++;
            ck_abort_msg("%s: %d of %d clients stuck for %d ms; client %d: %s, %zu of %zu "
                         "bytes sent, %zu back", what, cr->active, cr->n, ms(5000), i + 1,
                         state_names[cr->m[i].state], cr->m[i].sent, cr->size, cr->m[i].got);
        }
        int k = epoll_wait(cr->ep, ev, 512, (int)left);
        ck_assert_msg(k >= 0 || errno == EINTR, "epoll_wait: %s", strerror(errno));
        for (int e = 0; e < k; e++) {
            int i = (int)ev[e].data.u32;
            struct member *m = &cr->m[i];
            if (m->state == REFUSED || m->state == GONE)
                continue;       /* closed by an earlier event of this batch */
            if (m->state == CONNECTING) {
                connected(cr, i);
                continue;       /* anything to read comes back level-triggered */
            }
            if (m->state == ECHOING && m->sent < cr->size && (ev[e].events & EPOLLOUT))
                give_output(cr, i);
            if (ev[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                take_input(cr, i);
        }
        if (k > 0)
            deadline = now_ms() + ms(5000);
    }
}

/* Connect clients FROM..TO-1, all at once; wait until every one is. */
static void crowd_connect(struct crowd *cr, int from, int to)
{
    for (int i = from; i < to; i++) {
        cr->m[i].fd = start_connect(cr->port);
        cr->m[i].state = CONNECTING;
        cr->active++;
        watch(cr, i, EPOLL_CTL_ADD, EPOLLOUT);
    }
    crowd_run(cr, "connecting");
}

/* One round: clients FROM..TO-1 (but those refused) each send their
 * bytes, all at once, and read them back. */
static void crowd_echo(struct crowd *cr, int from, int to)
{
    for (int i = from; i < to; i++) {
        struct member *m = &cr->m[i];
        if (m->state != IDLE)
            continue;       /* refused, or being refused */
        m->state = ECHOING;
        m->sent = m->got = 0;
        cr->active++;
        watch(cr, i, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
    }
    crowd_run(cr, "echoing");
}

/* Stop the server with the crowd connected: it must exit 0 within 1 s,
 * and every client still served must see its connection closed. The
 * server closes first, so no client's port is left in TIME_WAIT. */
static void crowd_stop(struct crowd *cr, struct server *s, char **log)
{
    char *err = stop_server(s);
    if (log != NULL)
        *log = err;
    else
        free(err);
    for (int i = 0; i < cr->n; i++) {
        if (cr->m[i].state != IDLE)
            continue;
        cr->m[i].state = CLOSING;
        cr->active++;
    }
    crowd_run(cr, "closed by the stop");
}

/* ---- the checks -------------------------------------------------------- */

/* A thousand clients connected at once, then each sends its own 3,000
 * bytes and reads them back, all at the same time, twice: every byte must
 * come back to the client that sent it. Then a stop with all of them
 * connected. all_at_once() (checks_threads.c) with blocking clients would
 * deadlock here on the first full buffer. A pool serves a client per
 * worker: it gets a worker for each. */
void check_thousand(const struct stage *st)
{
    enum { N = 1000 };
    raise_fd_limit(N + 64);
    struct server s = start_server(st->dir, st->tcp_server,
                                   st->props & P_POOL ? ARGS("-q", "-w", "1000", "-Q", "1000")
                                                      : ARGS("-q"),
                                   NULL);
    struct crowd cr;
    crowd_init(&cr, s.port, N, 3000);
    crowd_connect(&cr, 0, N);
    crowd_echo(&cr, 0, N);
    crowd_echo(&cr, 0, N);
    crowd_stop(&cr, &s, NULL);
    crowd_free(&cr);
}

/* Send up to LIMIT bytes on FD without reading a byte, until sending has
 * made no progress for 1 s (no event says "the server stopped reading for
 * good": 1 s bounds it). Returns how much went out. */
static size_t send_without_reading(int fd, size_t limit)
{
    static char buf[64 * KiB];
    size_t total = 0;
    long long deadline = now_ms() + ms(20000);
    while (total < limit) {
        ssize_t n = send(fd, buf, sizeof buf, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        ck_assert_msg(n < 0 && errno == EAGAIN,
                      "send after %zu bytes: %s: the server dropped a client for not reading, "
                      "where it should stop reading from it", total, strerror(errno));
        ck_assert_msg(now_ms() < deadline, "the server was still reading after %d ms",
                      ms(20000));
        if (wait_for(fd, POLLOUT, now_ms() + 1000) == 0)
            break;
    }
    return total;
}

/* Back-pressure. A client sends without ever reading its echo: the server
 * may hold 64 KiB of output for it, then must stop reading from it - else
 * it buffers all it reads, and one such client grows it without end. So:
 * the sender stalls long before 64 MiB; the server's memory grows by less
 * than 32 MiB; the counters show the bytes it holds for it (> 0, at most
 * 64 KiB); meanwhile another client's 100 KiB echo and a new client are
 * served as usual. Then the sender leaves with its echo unread (a close
 * that resets): the server must drop it and what it held - 1 connection
 * live and 0 bytes waiting, and at exit 0 and 0. */
void check_backpressure(const struct stage *st)
{
    enum { SENT_MAX = 64 * MiB, GROWTH_MAX = 32 * MiB };
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"), NULL);
    int calm = tcp_connect(s.port);
    echo_check(calm, 100 * KiB, 1, 0);
    long long rss = status_bytes(s.p.pid, "VmRSS");

    int hog = tcp_connect(s.port);
    size_t sent = send_without_reading(hog, SENT_MAX);
    ck_assert_msg(sent < SENT_MAX, "the server took all %d MiB from a client that reads none "
                  "of its echo", SENT_MAX / MiB);
    echo_check(calm, 100 * KiB, 2, 0);
    int fresh = tcp_connect(s.port);
    echo_check(fresh, 1000, 3, 1);
    close(fresh);
    long long grew = status_bytes(s.p.pid, "VmRSS") - rss;
    ck_assert_msg(grew < GROWTH_MAX, "the server grew by %lld KiB for a client that sent %zu "
                  "KiB and read none", grew / KiB, sent / KiB);
    struct summary sum = counters_now(&s, 1);
    ck_assert_msg(sum.live == 2, "%lld connections live, want 2 (one reading, one not)",
                  sum.live);
    ck_assert_msg(sum.waiting > 0 && sum.waiting <= 64 * KiB,
                  "%lld bytes waiting to be sent to a client that does not read, want 1 to "
                  "65536", sum.waiting);

    /* Unread data at close(): the kernel sends a reset. The server learns
     * of it the next time it looks at that socket - which no event tells
     * us: we look again every 100 ms, for at most 3 s. */
    close(hog);
    int k = 2;
    long long deadline = now_ms() + ms(3000);
    do {
        echo_check(calm, 10, 4, 0);
        sum = counters_now(&s, k++);
        if (sum.live != 1)
            sleep_ms(100);
    } while (sum.live != 1 && now_ms() < deadline);
    ck_assert_msg(sum.live == 1, "%lld connections live 3 s after the one that did not read "
                  "left, want 1", sum.live);
    ck_assert_msg(sum.waiting == 0, "%lld bytes still waiting once the client that did not "
                  "read has gone, want 0", sum.waiting);
    close(calm);
    char *err = stop_server(&s);
    ck_assert_msg(nth_summary(err, k, &sum), "no counters line at exit:\n%.3000s", err);
    ck_assert_msg(sum.live == 0 && sum.waiting == 0, "at exit: %lld connections live and "
                  "%lld bytes waiting, want 0 and 0", sum.live, sum.waiting);
    free(err);
}

/* A client that is served, once descriptors are free again: it may wait
 * behind dead connections in the backlog, or be told "server busy" (the
 * server still at its limit) and try again - for at most 8 s. */
static void served_again(int port)
{
    long long deadline = now_ms() + ms(8000);
    char got[sizeof SERVER_BUSY];
    for (int tries = 1;; tries++) {
        int fd = tcp_connect(port), eof;
        send_bytes(fd, "x", 1);
        size_t n = recv_until(fd, got, 1, deadline, &eof);
        if (n == 1 && got[0] == 'x') {
            echo_check(fd, 10 * KiB, 30, 1);
            close(fd);
            return;
        }
        n += recv_until(fd, got + n, sizeof got - 1 - n, deadline, &eof);
        got[n] = '\0';
        close(fd);
        ck_assert_msg(strcmp(got, SERVER_BUSY) == 0 && now_ms() < deadline,
                      "try %d: a new client got '%s', and no echo within %d ms of the flood's "
                      "end", tries, got, ms(8000));
        sleep_ms(50);
    }
}

/* What a client of the flood got, read without waiting: 1 if "server
 * busy" (and maybe the close after it), 0 if nothing yet (it is still in
 * the backlog); anything else fails. */
static int told_busy(int fd)
{
    char got[64];
    ssize_t n = recv(fd, got, sizeof got - 1, MSG_DONTWAIT);
    if (n <= 0)
        return 0;
    got[n] = '\0';
    ck_assert_msg(strcmp(got, SERVER_BUSY) == 0, "a client of the flood got '%s'", got);
    return 1;
}

/* Out of descriptors under a flood of connections. The server's limit is
 * lowered to what it has open plus 5; 5 clients take those. Then for 2 s
 * 300 connections wait, and a ring of 20 more churns: 2 of them closed
 * and replaced every 10 ms. accept() fails with EMFILE all the while: the
 * server must tell waiting clients "server busy", rest its listener, and
 * neither spin (its CPU time over the 2 s under 20%) nor stop serving the
 * three clients it had, whose echoes are checked every 250 ms. Every
 * client of the flood got "server busy" or nothing yet, some got it. Once
 * the flood and the 5 have gone, a new client is served again - behind
 * the flood's dead connections in the backlog, and with 5 descriptors. */
void check_flood(const struct stage *st)
{
    enum { FIRST = 3, HOLDERS = 5, FLOOD = 300, RING = 20, CHURN = 2, SECONDS = 2 };
    int first[FIRST], holders[HOLDERS], flood[FLOOD], ring[RING];
    raise_fd_limit(FLOOD + RING + 64);
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"), NULL);
    for (int i = 0; i < FIRST; i++) {
        first[i] = tcp_connect(s.port);
        echo_check(first[i], 1000, (unsigned)i, 0);
    }
    struct rlimit tight;
    ck_assert(prlimit(s.p.pid, RLIMIT_NOFILE, NULL, &tight) == 0);
    tight.rlim_cur = (rlim_t)lowest_free_fd(s.p.pid) + HOLDERS;
    ck_assert(prlimit(s.p.pid, RLIMIT_NOFILE, &tight, NULL) == 0);
    for (int i = 0; i < HOLDERS; i++) {
        holders[i] = tcp_connect(s.port);
        echo_check(holders[i], 100, 10 + (unsigned)i, 0);
    }

    double cpu = cpu_seconds(s.p.pid);
    long long start = now_ms(), next_echo = start;
    for (int i = 0; i < FLOOD; i++)
        flood[i] = start_connect(s.port);
    for (int i = 0; i < RING; i++)
        ring[i] = start_connect(s.port);
    int oldest = 0, connects = FLOOD + RING, told = 0;
    for (unsigned round = 0; now_ms() - start < SECONDS * 1000;) {
        for (int k = 0; k < CHURN; k++, connects++, oldest = (oldest + 1) % RING) {
            told += told_busy(ring[oldest]);
            close(ring[oldest]);
            ring[oldest] = start_connect(s.port);
        }
        if (now_ms() >= next_echo) {
            for (int i = 0; i < FIRST; i++)
                echo_check(first[i], 1000, 20 + round++, 0);
            next_echo += 250;
        }
        sleep_ms(10);
    }
    double used = cpu_seconds(s.p.pid) - cpu, took = (double)(now_ms() - start) / 1000;
    ck_assert_msg(used < 0.2 * took, "the server used %.2f s of CPU in %.2f s of a flood of "
                  "%d connections with no descriptor free (want under 20%%)", used, took,
                  connects);
    for (int i = 0; i < FLOOD; i++) {
        told += told_busy(flood[i]);
        close(flood[i]);
    }
    for (int i = 0; i < RING; i++) {
        told += told_busy(ring[i]);
        close(ring[i]);
    }
    ck_assert_msg(told > 0, "none of the %d clients of the flood was told 'server busy'",
                  connects);
    for (int i = 0; i < FIRST; i++)
        echo_check(first[i], 1000, 40 + (unsigned)i, 0);
    for (int i = 0; i < HOLDERS; i++)
        close(holders[i]);
    served_again(s.port);
    for (int i = 0; i < FIRST; i++)
        close(first[i]);
    char *err = stop_server(&s);
    assert_contains(err, "Too many open files: a waiting client was told \"server busy\"",
                    "server log");
    /* A rest of 100 ms each time: about 20 in the 2 s, and more while the
     * backlog drains; a server that kept trying would log one a try. */
    int rests = count_of(err, "Too many open files (");
    ck_assert_msg(rests >= 1 && rests <= 100, "%d 'Too many open files (...)' lines in a %d s "
                  "flood and the recovery after it:\n%.1000s", rests, SECONDS, err);
    free(err);
}

/* When each of CONNS closed, in ms from START (-1: still open). Client C
 * (conns[2]) echoes a byte every 300 ms until 2.5 s; B (conns[1]) connects
 * at 0.4 s and echoes one byte at 0.8 s; A (conns[0]) says nothing. */
static void idle_schedule(int port, int conns[3], long long start, long long closed_at[3],
                          long long *c_last)
{
    enum { A, B, C };
    long long c_next = 0, b_sent = 0, end = start + 3400 + ms(2000);
    int c_waiting = 0, eof;
    char c;
    while ((closed_at[A] < 0 || closed_at[B] < 0 || closed_at[C] < 0) && now_ms() < end) {
        long long t = now_ms() - start;
        if (conns[B] < 0 && t >= 400)
            conns[B] = tcp_connect(port);
        if (!b_sent && t >= 800 && closed_at[B] < 0) {
            b_sent = t;
            send_bytes(conns[B], "b", 1);
            ck_assert_msg(recv_until(conns[B], &c, 1, now_ms() + ms(1000), &eof) == 1 &&
                              c == 'b', "B's byte at 0.8 s did not come back");
        }
        if (c_next < 2500 && t >= c_next && closed_at[C] < 0) {
            ck_assert_msg(!c_waiting, "C's byte at %lld ms did not come back in 300 ms", *c_last);
            send_bytes(conns[C], &(char){(char)('0' + c_next / 300)}, 1);
            *c_last = t;
            c_waiting = 1;
            c_next += 300;
        }
        struct pollfd p[3];
        for (int i = 0; i < 3; i++)
            p[i] = (struct pollfd){.fd = closed_at[i] < 0 ? conns[i] : -1, .events = POLLIN};
        /* Until the next thing to do, 20 ms at most: a close is timed to
         * within that. */
        long long wake = t + 20;
        if (conns[B] < 0 && wake > 400)
            wake = 400;
        if (!b_sent && wake > 800)
            wake = 800;
        if (c_next < 2500 && wake > c_next)
            wake = c_next;
        poll(p, 3, wake > t ? (int)(wake - t) : 0);
        for (int i = 0; i < 3; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = recv(conns[i], &c, 1, MSG_DONTWAIT);
            if (n == 1 && i == C && c_waiting) {
                ck_assert_msg(c == (char)('0' + (c_next - 300) / 300), "C's echo was '%c'", c);
                c_waiting = 0;
                continue;
            }
            ck_assert_msg(n <= 0, "client %c got a byte it did not send: '%c'", 'A' + i, c);
            if (n == 0 || errno == ECONNRESET)
                closed_at[i] = now_ms() - start;
        }
    }
}

/* -t 1, a deadline for each connection of its own, moved by its traffic:
 * A connects at 0 and stays silent; B connects at 0.4 s, echoes a byte at
 * 0.8 s; C connects at 0 and echoes a byte every 0.3 s until 2.5 s. A
 * must be closed at 1.0 s, before B; B at 1.8 s (its byte moved its
 * deadline); C never while it talks, and 1 s after its last byte. Not
 * before: at least 0.9 s of silence each. A server with one timer for all,
 * or a deadline that traffic does not move, fails. */
void check_idles(const struct stage *st)
{
    enum { A, B, C };
    struct server s = start_server(st->dir, st->tcp_server,
                                   st->props & P_POOL ? ARGS("-t", "1", "-w", "4")
                                                      : ARGS("-t", "1"),
                                   NULL);
    long long closed_at[3] = {-1, -1, -1}, c_last = 0, late = ms(600);
    int conns[3] = {-1, -1, -1};
    long long start = now_ms();
    conns[A] = tcp_connect(s.port);
    conns[C] = tcp_connect(s.port);
    idle_schedule(s.port, conns, start, closed_at, &c_last);
    for (int i = 0; i < 3; i++) {
        if (conns[i] >= 0)
            close(conns[i]);
        ck_assert_msg(closed_at[i] >= 0, "%c was not closed within %lld ms of the start",
                      'A' + i, 3400 + (long long)ms(2000));
    }
    ck_assert_msg(closed_at[A] >= 900 && closed_at[A] <= 1000 + late,
                  "A, silent from 0 s, closed at %lld ms: want 1 s", closed_at[A]);
    ck_assert_msg(closed_at[B] >= 1700 && closed_at[B] <= 1800 + late,
                  "B, connected at 0.4 s, its byte at 0.8 s, closed at %lld ms: want 1.8 s",
                  closed_at[B]);
    ck_assert_msg(closed_at[A] < closed_at[B], "A closed at %lld ms, after B at %lld ms",
                  closed_at[A], closed_at[B]);
    ck_assert_msg(closed_at[C] >= c_last + 900 && closed_at[C] <= c_last + 1000 + late,
                  "C, its last byte at %lld ms, closed at %lld ms: want 1 s after", c_last,
                  closed_at[C]);
    char *err = stop_server(&s);
    ck_assert_msg(count_of(err, "idle timeout") == 3, "want 3 'idle timeout' lines:\n%.2000s",
                  err);
    free(err);
}

/* Ten thousand connections open at once, every one served: they connect
 * 500 at a time, each batch echoing 8 bytes per client (so the backlog
 * never overflows into SYN retries), then all 10,000 echo once more, at
 * the same time, and a stop closes them all within 1 s. -m above 10,000,
 * so the limit is not what is tested. */
void check_c10k(const struct stage *st)
{
    enum { N = 10000, BATCH = 500 };
    raise_fd_limit(N + 64);
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q", "-m", "10050"), NULL);
    long long start = now_ms();
    struct crowd cr;
    crowd_init(&cr, s.port, N, 8);
    for (int b = 0; b < N; b += BATCH) {
        crowd_connect(&cr, b, b + BATCH);
        crowd_echo(&cr, b, b + BATCH);
    }
    crowd_echo(&cr, 0, N);
    long long took = now_ms() - start;
    ck_assert_msg(took < ms(30000), "10,000 connections took %lld ms to open and echo", took);
    crowd_stop(&cr, &s, NULL);
    crowd_free(&cr);
}

/* select()'s wall: an fd_set holds descriptors below FD_SETSIZE (1024),
 * and FD_SET() past it writes out of bounds. Of 1,100 clients the server
 * serves those it can watch - at least 1,000 - and tells each of the rest
 * "server busy" and closes it, saying why in its log. The ones it serves
 * echo once more at the end, together. */
void limit_c10k(const struct stage *st)
{
    enum { N = 1100, BATCH = 100, FD_WALL = 1024 };
    raise_fd_limit(N + 64);
    struct server s = start_server(st->dir, st->tcp_server, NO_ARGS, NULL);
    struct crowd cr;
    crowd_init(&cr, s.port, N, 8);
    cr.refusals_allowed = 1;
    for (int b = 0; b < N; b += BATCH) {
        crowd_connect(&cr, b, b + BATCH);
        crowd_echo(&cr, b, b + BATCH);
    }
    crowd_echo(&cr, 0, N);
    int served = N - cr.refused;
    char *err;
    crowd_stop(&cr, &s, &err);
    crowd_free(&cr);
    ck_assert_msg(cr.refused > 0, "all %d clients served: past FD_SETSIZE (%d), select() "
                  "cannot watch them", N, FD_WALL);
    ck_assert_msg(served >= 1000 && served < FD_WALL, "%d of %d clients served, want 1000 to "
                  "%d", served, N, FD_WALL - 1);
    int logged = count_of(err, "refused (descriptor past FD_SETSIZE): server busy");
    ck_assert_msg(logged == cr.refused, "%d clients told 'server busy', %d log lines say "
                  "'refused (descriptor past FD_SETSIZE): server busy':\n%.1000s",
                  cr.refused, logged, err);
    char want[64];
    snprintf(want, sizeof want, " %d refused (server busy)", cr.refused);
    assert_contains(err, want, "server summary");
    free(err);
}
