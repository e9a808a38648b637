/*
 * checks_storms.c - what a real network and a hostile peer do to a
 * server, many times over: ten thousand connections reset in the middle of
 * their echo, a thousand peers that never speak and a hundred that trickle,
 * a burst of datagrams of every size, SIGTERM in the middle of a hundred
 * transfers; and every client against servers that go silent, hang up,
 * reset or lie. Each check is bounded in count and time, and talks to
 * 127.0.0.1 only.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <linux/sock_diag.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ----------------------------------------------------------- */

static void sleep_ms(int n)
{
    nanosleep(&(struct timespec){.tv_sec = n / 1000, .tv_nsec = n % 1000 * 1000000L}, NULL);
}

/* How many descriptors PID has open, from /proc/PID/fd. */
static int open_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    ck_assert_msg(d != NULL, "%s: %s", path, strerror(errno));
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int still_running(const struct server *s)
{
    return wait_for(s->p.pidfd, POLLIN, now_ms()) == 0;
}

/* Close FD with a reset (RST) instead of a FIN: SO_LINGER on, time 0. */
static void reset_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    ck_assert(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    close(fd);
}

/* Wait until the non-blocking connect() on FD is over; it must have worked. */
static void connected(int fd, int i, int n)
{
    int err = 0;
    socklen_t len = sizeof err;
    ck_assert_msg(wait_for(fd, POLLOUT, now_ms() + ms(5000)) == 1,
                  "peer %d of %d: connect() not done within %d ms", i + 1, n, ms(5000));
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    ck_assert_msg(err == 0, "peer %d of %d: connect: %s", i + 1, n, strerror(err));
}

/* A new client: connect, send 64 bytes, take their echo before DEADLINE
 * (a now_ms() value). Returns the milliseconds it took, or -1 if the echo
 * was not all back by then; the socket is closed either way. If BUSY is
 * not NULL, "server busy" and a close is an answer too: *BUSY is set. */
static long long newcomer(int port, long long deadline, int *busy)
{
    long long start = now_ms();
    char out[64], in[64];
    int eof, fd = start_connect(port);
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (char)pattern(i, 77);
    if (wait_for(fd, POLLOUT, deadline) != 1) {
        close(fd);
        return -1;
    }
    ck_assert_msg(send(fd, out, sizeof out, MSG_NOSIGNAL) == (ssize_t)sizeof out,
                  "newcomer: send: %s", strerror(errno));
    size_t got = recv_until(fd, in, sizeof in, deadline, &eof);
    close(fd);
    if (busy != NULL && got == strlen("server busy\n") && eof &&
        memcmp(in, "server busy\n", got) == 0) {
        *busy = 1;
        return now_ms() - start;
    }
    if (got < sizeof out)
        ck_assert_msg(!eof, "newcomer: the server closed after %zu of %zu bytes back: '%.*s'",
                      got, sizeof out, (int)got, in);
    else
        ck_assert_msg(memcmp(in, out, sizeof out) == 0, "newcomer: its echo differs");
    return got == sizeof out ? now_ms() - start : -1;
}

/* ---- resets: 10,000 connections reset mid-echo --------------------------- */

enum { RESETS = 10000, RESET_BATCH = 100, RESET_BYTES = 64 * KiB };

/* Start the server quiet, and able to take a batch at once: a pool's
 * queue holds the whole batch, so that the check tests resets, not
 * "server busy". */
static struct server start_roomy(const struct stage *st, const struct spawn_opts *o)
{
    static const char *const pool[] = {"-q", "-Q", "256", NULL}, *const other[] = {"-q", NULL};
    return start_server(st->dir, st->tcp_server, st->props & P_POOL ? pool : other, o);
}

/* 100 at a time, connections send 64 KiB, wait for the first byte of
 * their echo - the server is now writing to them - and reset (SO_LINGER
 * 0), so that the server's next send() or recv() fails with ECONNRESET or
 * EPIPE; every tenth resets at once, before its first byte, perhaps before
 * the server accepted it. After every batch a well-behaved client must be
 * served (on a connection held from the start where the design can
 * serve two at once, on a new one otherwise). At the end the server must
 * still be the same process, and its descriptors back to what it had
 * before the storm: nothing leaked per reset. */
void check_resets(const struct stage *st)
{
    static char junk[RESET_BYTES];
    raise_fd_limit(RESET_BATCH + 64);
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)pattern(i, 5);
    struct server s = start_roomy(st, NULL);
    int base = open_fds(s.p.pid);
    int steady = st->props & P_CONCURRENT ? tcp_connect(s.port) : -1;

    for (int done = 0; done < RESETS; done += RESET_BATCH) {
        int fds[RESET_BATCH];
        for (int i = 0; i < RESET_BATCH; i++)
            fds[i] = start_connect(s.port);
        for (int i = 0; i < RESET_BATCH; i++) {
            connected(fds[i], done + i, RESETS);
            /* What fits in the socket buffers: at least a byte. */
            ck_assert_msg(send(fds[i], junk, sizeof junk, MSG_NOSIGNAL) > 0,
                          "peer %d: send: %s", done + i + 1, strerror(errno));
        }
        for (int i = 0; i < RESET_BATCH; i++) {
            if (i % 10 != 9) {
                char c;
                ck_assert_msg(wait_for(fds[i], POLLIN, now_ms() + ms(5000)) == 1 &&
                                  recv(fds[i], &c, 1, 0) == 1 && c == junk[0],
                              "peer %d of %d: no first echoed byte, or a wrong one, within %d "
                              "ms (server %s)", done + i + 1,
                              RESETS, ms(5000), still_running(&s) ? "running" : "gone");
            }
            reset_close(fds[i]);
        }
        if (steady >= 0) {
            echo_check(steady, 1000, (unsigned)done, 0);
        } else {
            int fd = tcp_connect(s.port);
            echo_check(fd, 1000, (unsigned)done, 1);
            close(fd);
        }
        ck_assert_msg(still_running(&s), "server gone after %d resets", done + RESET_BATCH);
    }
    if (steady >= 0)
        close(steady);

    /* Nothing tells us when the server has noticed the last resets and
     * closes: poll its descriptor count, for a bounded time. */
    long long deadline = now_ms() + ms(5000);
    int fds;
    while ((fds = open_fds(s.p.pid)) > base && now_ms() < deadline)
        sleep_ms(10);
    ck_assert_msg(fds <= base, "after %d resets the server has %d descriptors open, %d before",
                  RESETS, fds, base);
    char *err = stop_server(&s);
    if (st->props & P_COUNTERS)
        assert_contains(err, ": 0 connections live", "the counters after the storm");
    free(err);
}

/* ---- idlers: a thousand silent peers, a hundred slow ones ------------------ */

enum { SILENT = 1000, SLOW = 100, IDLE_SECONDS = 3 };

struct idlers {
    int n, silent;          /* peers, the first SILENT of them silent */
    int fds[SILENT + SLOW];
    int sent[SILENT + SLOW], got[SILENT + SLOW];
};

/* Connect the crowd: SILENT peers (fewer on a select() loop, which can
 * watch only FD_SETSIZE descriptors: c10k shows that wall, this check
 * shows what idle peers do below it), then SLOW ones. */
static void idlers_connect(struct idlers *c, const struct stage *st, int port)
{
    int select_loop = (st->props & P_BACKPRESSURE) && !(st->props & P_C10K);
    c->silent = select_loop ? SILENT - SLOW : SILENT;
    c->n = c->silent + SLOW;
    raise_fd_limit(c->n + 64);
    /* A server that serves one client at a time leaves the crowd in its
     * listen queue, which the kernel caps at net.core.somaxconn (4096
     * since Linux 5.4, 128 before): past it, connect() would not end. */
    if (!(st->props & P_CONCURRENT)) {
        FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
        int max = 0;
        ck_assert_msg(f != NULL && fscanf(f, "%d", &max) == 1,
                      "cannot read /proc/sys/net/core/somaxconn");
        fclose(f);
        ck_assert_msg(max >= c->n + IDLE_SECONDS, "this check needs a listen queue of %d; "
                      "net.core.somaxconn is %d (sysctl -w net.core.somaxconn=4096)",
                      c->n + IDLE_SECONDS, max);
    }
    for (int i = 0; i < c->n; i++) {
        c->fds[i] = start_connect(port);
        c->sent[i] = c->got[i] = 0;
    }
    for (int i = 0; i < c->n; i++)
        connected(c->fds[i], i, c->n);
}

/* Read what came back to slow peer I: with SERVED, its own bytes. */
static void idlers_drain(struct idlers *c, int i, int served)
{
    char in[64];
    ssize_t n;
    while ((n = recv(c->fds[i], in, sizeof in, MSG_DONTWAIT)) > 0) {
        for (ssize_t k = 0; served && k < n; k++, c->got[i]++)
            if (in[k] != (char)('a' + c->got[i] % 26))
                ck_abort_msg("slow peer %d: byte %d of its echo differs", i + 1, c->got[i]);
    }
}

/* IDLE_SECONDS of the slow peers each sending a byte a second (where the
 * server SERVES them: else they are queued or turned away, and only wait),
 * with a newcomer every second, given DEADLINE_MS for its echo. Returns
 * the fastest newcomer's time in ms (-1: none was echoed); the slowest
 * in *SLOWEST (DEADLINE_MS for one never echoed), how many were told
 * "server busy" in *BUSY. */
static long long idlers_run(struct idlers *c, int port, int served, int deadline_ms,
                            long long *slowest, int *busy)
{
    long long best = -1, start = now_ms();
    *slowest = 0;
    *busy = 0;
    for (int tick = 0; tick < IDLE_SECONDS * SLOW; tick++) {
        int i = c->silent + tick % SLOW;
        if (served && send(c->fds[i], &(char){(char)('a' + c->sent[i] % 26)}, 1,
                           MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
            c->sent[i]++;
        if (served)
            idlers_drain(c, i, served);
        if (tick % SLOW == SLOW / 2) {
            int was_busy = 0;
            long long t = newcomer(port, now_ms() + deadline_ms, &was_busy);
            *busy += was_busy;
            if (t >= 0 && !was_busy && (best < 0 || t < best))
                best = t;
            if (t < 0 || t > *slowest)
                *slowest = t < 0 ? deadline_ms : t;
        }
        /* The next tick one second / SLOW after the start of this one. */
        long long wait = start + (long long)(tick + 1) * 1000 / SLOW - now_ms();
        if (wait > 0)
            sleep_ms((int)wait);
    }
    return best;
}

/* No silent peer heard anything (no "server busy", no close): they are
 * all still held. */
static void assert_silent_held(const struct idlers *c)
{
    for (int i = 0; i < c->silent; i++) {
        char b;
        ck_assert_msg(recv(c->fds[i], &b, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN,
                      "silent peer %d of %d was sent something or closed", i + 1, c->silent);
    }
}

static void idlers_close(struct idlers *c)
{
    for (int i = 0; i < c->n; i++)
        close(c->fds[i]);
}

/* The claim: the silent and slow peers hold up nobody. Every newcomer is
 * echoed, the fastest within 100 ms (a design that queues newcomers
 * behind idle peers never echoes one at all; the best of three keeps a
 * noisy machine's stall out of the verdict), every slow peer gets its
 * bytes back, every silent one is still connected. */
void check_idlers(const struct stage *st)
{
    static struct idlers c;
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"), NULL);
    idlers_connect(&c, st, s.port);
    long long slowest;
    int busy;
    long long best = idlers_run(&c, s.port, 1, ms(1000), &slowest, &busy);
    ck_assert_msg(busy == 0, "%d of %d newcomers told 'server busy' among %d silent and %d "
                  "slow peers", busy, IDLE_SECONDS, c.silent, SLOW);
    ck_assert_msg(best >= 0 && best <= ms(100) && slowest < ms(1000),
                  "among %d silent and %d slow peers newcomers took %lld to %lld ms for an "
                  "echo of 64 bytes; want the fastest within %d ms, all within %d", c.silent,
                  SLOW, best, slowest, ms(100), ms(1000));
    /* The slow peers' last bytes come back soon after they were sent. */
    for (int i = c.silent; i < c.n; i++) {
        long long deadline = now_ms() + ms(2000);
        while (c.got[i] < c.sent[i] && wait_for(c.fds[i], POLLIN, deadline) == 1)
            idlers_drain(&c, i, 1);
        ck_assert_msg(c.got[i] == c.sent[i] && c.sent[i] >= IDLE_SECONDS - 1,
                      "slow peer %d: %d bytes sent, %d echoed", i + 1, c.sent[i], c.got[i]);
    }
    assert_silent_held(&c);
    idlers_close(&c);
    stop_server_quietly(&s);
}

/* The documented outcomes where the claim is not made. An iterative
 * server (02) serves the first silent peer forever (no -t): a newcomer
 * waits in the queue and is served once the crowd has gone. A pool (04)
 * has its workers held by idle peers and its queue filled by the next:
 * everyone past workers + queue, newcomers too, is told "server busy".
 * So that the count is exact, the workers' peers come first, each waiting
 * for one echo (a worker has it) before going silent. */
void limit_idlers(const struct stage *st)
{
    static struct idlers c;
    enum { WORKERS = 4, QUEUE = 64 };
    int pool = (st->props & P_POOL) != 0, held[WORKERS];
    struct server s = start_server(st->dir, st->tcp_server,
                                   pool ? ARGS("-q", "-w", "4", "-Q", "64") : ARGS("-q"), NULL);
    for (int i = 0; pool && i < WORKERS; i++) {
        char b;
        held[i] = tcp_connect(s.port);
        send_bytes(held[i], "h", 1);
        ck_assert_msg(wait_for(held[i], POLLIN, now_ms() + ms(5000)) == 1 &&
                      recv(held[i], &b, 1, 0) == 1 && b == 'h',
                      "worker peer %d of %d: no echo", i + 1, WORKERS);
    }
    idlers_connect(&c, st, s.port);
    long long slowest;
    int busy;
    long long best = idlers_run(&c, s.port, 0, ms(300), &slowest, &busy);
    if (pool) {
        ck_assert_msg(busy == IDLE_SECONDS, "%d of %d newcomers told 'server busy' with the "
                      "workers held and the queue full", busy, IDLE_SECONDS);
        /* Which peers were turned away: all but the QUEUE that fit. */
        int turned = 0;
        for (int i = 0; i < c.n; i++) {
            char in[16];
            int eof;
            /* Those told have been told for seconds: no need to wait. */
            size_t got = recv_until(c.fds[i], in, sizeof in, now_ms(), &eof);
            turned += got == strlen("server busy\n") && eof &&
                      memcmp(in, "server busy\n", got) == 0;
        }
        ck_assert_msg(turned == c.n - QUEUE, "%d of %d idle peers told 'server busy' with "
                      "the %d workers held: want all but the %d queued", turned, c.n, WORKERS,
                      QUEUE);
    } else {
        ck_assert_msg(best < 0 && busy == 0, "a newcomer was echoed within %d ms behind %d "
                      "silent peers (in %lld ms): an iterative server cannot", ms(300),
                      c.silent, best);
    }
    idlers_close(&c);
    for (int i = 0; pool && i < WORKERS; i++)
        close(held[i]);
    /* The crowd gone, the server is free again. */
    long long t = newcomer(s.port, now_ms() + ms(5000), NULL);
    ck_assert_msg(t >= 0, "no echo within %d ms once the idle peers had gone", ms(5000));
    stop_server_quietly(&s);
}

/* ---- burst: 10,000 datagrams of every size -------------------------------- */

enum { BURST_SOCKS = 100, BURST_EACH = 100, MAX_DGRAM = 65507 };

/* The size of datagram J of socket K: the extremes 0 and 65,507 once
 * each, then a mix - a tenth empty, four tenths small, three tenths up to
 * 9,000, the rest up to the largest. */
static size_t burst_size(int k, int j)
{
    if (k == 0 && j < 2)
        return j == 0 ? 0 : MAX_DGRAM;
    unsigned h = ((unsigned)k * 131u + (unsigned)j) * 2654435761u;
    h ^= h >> 15;
    switch (h % 10) {
    case 0: return 0;
    case 1: case 2: case 3: case 4: return 1 + (h >> 8) % 100;
    case 5: case 6: case 7: return 101 + (h >> 8) % 8900;
    default: return 9001 + (h >> 8) % (MAX_DGRAM - 9000);
    }
}

/* Byte I of a datagram of LEN bytes from socket K: a cut datagram is not
 * a shorter one's prefix, since the seed depends on the length. */
static char burst_byte(int k, size_t len, size_t i)
{
    unsigned h = ((unsigned)k << 17 ^ (unsigned)len) * 2654435761u ^ (unsigned)(i / 64) * 40503u;
    return (char)pattern(i, h ^ h >> 16);
}

/* The drops the kernel counted on the UDP socket bound to 127.0.0.1:PORT
 * (the last field of its line in /proc/net/udp), or -1 if there is none;
 * its receive queue's bytes in *QUEUED. */
static long long udp_drops_once(int port, long long *queued)
{
    FILE *f = fopen("/proc/net/udp", "r");
    ck_assert_msg(f != NULL, "/proc/net/udp: %s", strerror(errno));
    char line[512];
    long long drops = -1;
    unsigned want = (unsigned)port;
    while (drops < 0 && fgets(line, sizeof line, f) != NULL) {
        unsigned addr, lport, rx;
        int end;
        if (sscanf(line, " %*d: %8X:%4X %*X:%*X %*X %*X:%X%n", &addr, &lport, &rx, &end) != 3 ||
            lport != want || addr != 0x0100007F)
            continue;
        /* The last field: the line ends in spaces and a newline. */
        size_t len = strlen(line);
        while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\n'))
            line[--len] = '\0';
        const char *last = strrchr(line, ' ');
        ck_assert_msg(last != NULL, "no drops field in /proc/net/udp: %s", line);
        drops = atoll(last + 1);
        if (queued != NULL)
            *queued = rx;
    }
    fclose(f);
    return drops;
}

/* The kernel writes /proc/net/udp a page at a time, walking its table
 * of sockets: one added or removed meanwhile (by any program) can make a
 * line go missing from one reading. Three readings, then it is gone. */
static long long udp_drops(int port, long long *queued)
{
    long long drops = -1;
    for (int tries = 0; drops < 0 && tries < 3; tries++)
        drops = udp_drops_once(port, queued);
    return drops;
}

/* The drops the kernel counted on our socket FD (SO_MEMINFO, exact). */
static long long socket_drops(int fd)
{
    uint32_t m[SK_MEMINFO_VARS];
    socklen_t len = sizeof m;
    ck_assert_msg(getsockopt(fd, SOL_SOCKET, SO_MEMINFO, m, &len) == 0,
                  "getsockopt SO_MEMINFO: %s", strerror(errno));
    return m[SK_MEMINFO_DROPS];
}

/* Packets the kernel dropped before any socket saw them, all CPUs: a
 * loopback packet waits in a per-CPU queue (net.core.netdev_max_backlog
 * long), and a busy machine can overflow it. The second column of
 * /proc/net/softnet_stat, a line per CPU, in hex. */
static long long backlog_drops(void)
{
    FILE *f = fopen("/proc/net/softnet_stat", "r");
    ck_assert_msg(f != NULL, "/proc/net/softnet_stat: %s", strerror(errno));
    long long total = 0;
    unsigned processed, dropped;
    char line[512];
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "%x %x", &processed, &dropped) == 2)
            total += dropped;
    fclose(f);
    return total;
}

struct burst {
    int fds[BURST_SOCKS];
    int left[BURST_SOCKS][BURST_EACH];  /* the sizes sent and not back, else -1 */
    long long sent, back, markers_back;
    char buf[MAX_DGRAM + 1];
};

/* Take every datagram waiting on socket K: each must be whole - the
 * length of one we sent from it and still missing, with its bytes. */
static void burst_take(struct burst *b, int k)
{
    ssize_t n;
    while ((n = recv(b->fds[k], b->buf, sizeof b->buf, MSG_DONTWAIT | MSG_TRUNC)) >= 0) {
        if (n == 5 && memcmp(b->buf, "mark!", 5) == 0) {
            b->markers_back++;
            b->back++;
            continue;
        }
        int j = 0;
        while (j < BURST_EACH && b->left[k][j] != n)
            j++;
        ck_assert_msg(j < BURST_EACH, "socket %d got a %zd-byte datagram it has no such "
                      "datagram outstanding for: cut, or not ours", k, n);
        for (ssize_t i = 0; i < n; i++)
            if (b->buf[i] != burst_byte(k, (size_t)n, (size_t)i))
                ck_abort_msg("socket %d: byte %zd of a %zd-byte reply differs", k, i, n);
        b->left[k][j] = -1;
        b->back++;
    }
    ck_assert_msg(errno == EAGAIN, "socket %d: recv: %s", k, strerror(errno));
}

static void burst_take_all(struct burst *b)
{
    for (int k = 0; k < BURST_SOCKS; k++)
        burst_take(b, k);
}

/* Sent from 100 sockets, 100 datagrams each, as fast as they go: more
 * than any receive buffer holds, so some are dropped - by the kernel at
 * the server's socket, or at ours, or by a server whose sendto() failed.
 * What must hold: the server lives; every reply is whole; and the
 * numbers add up. Sent = what the server received + the kernel's drops
 * at its socket (/proc/net/udp); received = echoed + too large + from
 * itself + failed (the server's counters at exit); echoed = what came
 * back + the drops at our sockets (SO_MEMINFO). On a busy machine the
 * kernel may also drop loopback packets before any socket (its per-CPU
 * backlog): those, counted for the whole machine, are the only slack
 * allowed. To know the server has taken everything, we wait for its
 * receive queue to empty and then for the echo of one last "marker"
 * datagram, sent after all the others. */
void check_burst(const struct stage *st)
{
    static struct burst b;
    struct server s = start_server(st->dir, st->udp_server, ARGS("-q"), NULL);
    long long backlog_before = backlog_drops();
    memset(&b, 0, sizeof b);
    memset(b.left, 0xff, sizeof b.left);    /* -1: not sent (yet), or back */
    char *out = malloc(MAX_DGRAM);
    ck_assert(out != NULL);
    for (int k = 0; k < BURST_SOCKS; k++)
        b.fds[k] = udp_socket(s.port);
    for (int j = 0; j < BURST_EACH; j++) {
        for (int k = 0; k < BURST_SOCKS; k++) {
            size_t len = burst_size(k, j);
            for (size_t i = 0; i < len; i++)
                out[i] = burst_byte(k, len, i);
            ck_assert_msg(send(b.fds[k], out, len, 0) == (ssize_t)len, "send %zu bytes: %s",
                          len, strerror(errno));
            b.left[k][j] = (int)len;
            b.sent++;
        }
        burst_take_all(&b);
    }
    free(out);
    ck_assert_msg(still_running(&s), "server gone during the burst");

    long long queued = 1, deadline = now_ms() + ms(10000);
    while (queued > 0 && now_ms() < deadline) {
        ck_assert_msg(udp_drops(s.port, &queued) >= 0, "no UDP socket on port %d", s.port);
        burst_take_all(&b);
        /* Nothing signals an empty queue over there: poll, briefly. */
        if (queued > 0)
            sleep_ms(1);
    }
    ck_assert_msg(queued == 0, "the server's receive queue still holds %lld bytes after %d ms",
                  queued, ms(10000));
    for (int tries = 0; b.markers_back == 0 && tries < 5; tries++) {
        ck_assert(send(b.fds[0], "mark!", 5, 0) == 5);
        b.sent++;
        long long until = now_ms() + ms(1000);
        while (b.markers_back == 0 && wait_for(b.fds[0], POLLIN, until) == 1)
            burst_take(&b, 0);
    }
    ck_assert_msg(b.markers_back > 0, "no marker echoed in 5 tries after the burst");
    burst_take_all(&b);

    long long server_drops = udp_drops(s.port, NULL);
    char *err = stop_server(&s);
    unsigned long long echoed, large, looped, failed;
    const char *sum = strstr(err, " datagrams echoed, ");
    while (sum != NULL && sum > err && sum[-1] >= '0' && sum[-1] <= '9')
        sum--;
    ck_assert_msg(sum != NULL && sscanf(sum, "%llu datagrams echoed, %llu too large dropped, "
                                        "%llu from ourselves dropped, %llu failed", &echoed,
                                        &large, &looped, &failed) == 4,
                  "no 'N datagrams echoed, T too large dropped, L from ourselves dropped, F "
                  "failed' at exit:\n%.2000s", err);
    ck_assert_msg(large == 0 && looped == 0, "%llu too large, %llu from itself: all were at "
                  "most %d bytes, from us", large, looped, MAX_DGRAM);
    long long received = (long long)(echoed + large + looped + failed);
    long long lost_out = b.sent - received - server_drops;
    ck_assert_msg(lost_out >= 0, "sent %lld datagrams; the server received %lld and the kernel "
                  "dropped %lld at its socket: more than were sent", b.sent, received,
                  server_drops);
    /* Replies sent before the marker's may still be on their way (two
     * CPUs, two queues): until the figures meet, for a bounded time. */
    long long our_drops, lost_back, slack, until = now_ms() + ms(1000);
    for (;;) {
        burst_take_all(&b);
        our_drops = 0;
        for (int k = 0; k < BURST_SOCKS; k++)
            our_drops += socket_drops(b.fds[k]);
        lost_back = (long long)echoed - b.back - our_drops;
        slack = backlog_drops() - backlog_before;
        if (lost_out + lost_back <= slack || now_ms() > until)
            break;
        sleep_ms(10);
    }
    ck_assert_msg(lost_back >= 0 && lost_out + lost_back <= slack,
                  "sent %lld datagrams: the server received %lld, the kernel dropped %lld at its "
                  "socket; it echoed %llu: %lld came back whole, the kernel dropped %lld at our "
                  "sockets; %lld unaccounted for, %lld dropped meanwhile by the kernel before "
                  "any socket", b.sent, received, server_drops, echoed, b.back, our_drops,
                  lost_out + lost_back, slack);
    ck_assert_msg(b.back > BURST_SOCKS, "only %lld of %lld datagrams came back", b.back,
                  b.sent);
    free(err);
    for (int k = 0; k < BURST_SOCKS; k++)
        close(b.fds[k]);
}

/* ---- termall: SIGTERM in the middle of 100 transfers ------------------------ */

enum { TERM_CONNS = 100, TERM_CHUNK = 16 * KiB, TERM_WARM = 64 * KiB };

struct transfer {
    int fd;
    size_t sent, got;
    int done;               /* the server closed (or reset) it */
};

/* Move bytes on every transfer still open: send what fits, read what
 * came, every byte checked. Waits at most WAIT ms for something to move. */
static void pump(struct transfer *t, int n, int wait)
{
    struct pollfd p[TERM_CONNS];
    char buf[TERM_CHUNK];
    for (int i = 0; i < n; i++)
        p[i] = (struct pollfd){.fd = t[i].done ? -1 : t[i].fd, .events = POLLIN | POLLOUT};
    if (poll(p, (nfds_t)n, wait) <= 0)
        return;
    for (int i = 0; i < n; i++) {
        if (p[i].revents & POLLOUT) {
            for (size_t j = 0; j < sizeof buf; j++)
                buf[j] = (char)pattern(t[i].sent + j, (unsigned)i);
            ssize_t m = send(t[i].fd, buf, sizeof buf, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (m > 0)
                t[i].sent += (size_t)m;
        }
        if (p[i].revents & (POLLIN | POLLERR | POLLHUP)) {
            ssize_t m = recv(t[i].fd, buf, sizeof buf, MSG_DONTWAIT);
            if (m == 0 || (m < 0 && errno != EAGAIN)) {
                t[i].done = 1;
                continue;
            }
            for (ssize_t j = 0; j < m; j++, t[i].got++)
                if (buf[j] != (char)pattern(t[i].got, (unsigned)i))
                    ck_abort_msg("transfer %d: byte %zu of the echo differs", i + 1, t[i].got);
        }
    }
}

/* Under valgrind --track-fds=yes, the descriptors the program left open at
 * exit are listed on stderr, a record each: "Open file descriptor N: ..."
 * for a file or pipe, "Open AF_INET socket N: ..." (AF_INET6, AF_UNIX)
 * for a socket, followed by where it was opened, or by "<inherited from
 * parent>" (ours, not its). With --quiet, a program that closed everything
 * gets no list at all. */
static const char *next_record(const char *p)
{
    const char *file = strstr(p, "Open file descriptor "), *sock = strstr(p, "Open AF_");
    return file == NULL ? sock : sock == NULL || file < sock ? file : sock;
}

static void assert_no_fds_left(const char *err)
{
    for (const char *p = next_record(err); p != NULL; p = next_record(p + 1)) {
        const char *next = next_record(p + 1);
        const char *inherited = strstr(p, "<inherited from parent>");
        if (inherited != NULL && (next == NULL || inherited < next))
            continue;
        ck_abort_msg("the server left a descriptor open at exit:\n%.600s", p);
    }
}

/* 100 connections each sending and reading as fast as they can; once
 * bytes flow (on all of them where the design serves them all at once),
 * SIGTERM: the server must exit 0 within 1 s - not wait for the transfers
 * to end - with every echoed byte right up to the stop. Under valgrind,
 * with --track-fds=yes: no descriptor left open, nothing leaked. */
void check_termall(const struct stage *st)
{
    static struct transfer t[TERM_CONNS];
    struct spawn_opts o = {.track_fds = 1};
    raise_fd_limit(TERM_CONNS + 64);
    struct server s = start_roomy(st, &o);
    for (int i = 0; i < TERM_CONNS; i++)
        t[i] = (struct transfer){.fd = start_connect(s.port)};
    for (int i = 0; i < TERM_CONNS; i++)
        connected(t[i].fd, i, TERM_CONNS);
    /* Until TERM_WARM bytes came back on every connection the server
     * serves at once: all of them, or (one at a time, or a pool) one. */
    int all = (st->props & P_CONCURRENT) && !(st->props & P_POOL), warm = 0;
    long long deadline = now_ms() + ms(10000);
    while (warm < (all ? TERM_CONNS : 1) && now_ms() < deadline) {
        pump(t, TERM_CONNS, 100);
        warm = 0;
        for (int i = 0; i < TERM_CONNS; i++) {
            ck_assert_msg(!t[i].done, "transfer %d closed by the server before the stop "
                          "(%zu bytes back)", i + 1, t[i].got);
            warm += t[i].got >= TERM_WARM;
        }
    }
    ck_assert_msg(warm >= (all ? TERM_CONNS : 1), "only %d transfers under way after %d ms, "
                  "want %d", warm, ms(10000), all ? TERM_CONNS : 1);

    kill(s.p.pid, SIGTERM);
    long long stop = now_ms();
    while (now_ms() - stop < ms(1000) && wait_for(s.p.pidfd, POLLIN, now_ms()) == 0)
        pump(t, TERM_CONNS, 10);
    int code = finish(&s.p, 0);
    char *err = slurp(s.p.err);
    release(&s.p);
    ck_assert_msg(!s.p.hung, "server still running %d ms after SIGTERM amid %d transfers; "
                  "stderr:\n%.2000s", ms(1000), TERM_CONNS, err);
    ck_assert_msg(code == 0, "server ended with %s %d after SIGTERM amid %d transfers; "
                  "stderr:\n%.3000s", code < 0 ? "signal" : "exit",
                  code < 0 ? WTERMSIG(s.p.status) : code, TERM_CONNS, err);
    if (cfg.pass == VALGRIND)
        assert_no_fds_left(err);
    free(err);
    for (int i = 0; i < TERM_CONNS; i++)
        close(t[i].fd);
}

/* ---- badsrv: the clients against servers that misbehave ------------------- */

enum behaviour { SILENT_PEER, HANG_UP, RESET_MID_ECHO, WRONG_BYTES, NBEHAVIOURS };

static const struct {
    const char *what;       /* for messages */
    const char *complaints[3];  /* what the client may say; one must appear */
} behaviours[] = {
    [SILENT_PEER] = {"accepts and says nothing", {"no answer within 1 s while waiting for "}},
    [HANG_UP] = {"closes at once",
                 {"server closed the connection", "Connection reset by peer", "Broken pipe"}},
    [RESET_MID_ECHO] = {"resets mid-echo", {"Connection reset by peer", "Broken pipe"}},
    [WRONG_BYTES] = {"sends wrong bytes", {"differs: sent 0x"}},
};

enum { BAD_CONNS = 4, BAD_BYTES = 100000 };

/* A fake server: connection 0 misbehaves as B says, the others get an
 * honest echo until their client half-closes. */
struct peer {
    int fd, eof;
    size_t got;
};

static void serve_peer(struct peer *p, int honest, enum behaviour b, char *buf)
{
    ssize_t n = recv(p->fd, buf, TERM_CHUNK, MSG_DONTWAIT);
    if (n == 0)
        shutdown(p->fd, SHUT_WR);
    if (n <= 0) {
        p->eof = n == 0 || errno != EAGAIN;
        return;
    }
    size_t before = p->got;
    p->got += (size_t)n;
    if (!honest) {
        if (b == SILENT_PEER)
            return;
        if (b == RESET_MID_ECHO && p->got > BAD_BYTES / 2) {
            reset_close(p->fd);
            p->fd = -1;
            p->eof = 1;
            return;
        }
        if (b == WRONG_BYTES && before <= BAD_BYTES / 3 && p->got > BAD_BYTES / 3)
            buf[BAD_BYTES / 3 - before] ^= 0x10;
    }
    /* A blocking send (with a time limit, set at accept): the client reads
     * as it sends. A client that has given up on this connection resets
     * it: then we are done with it too. */
    for (ssize_t off = 0, m; off < n; off += m) {
        if ((m = send(p->fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL)) <= 0) {
            p->eof = 1;
            return;
        }
    }
}

static void client_vs(const struct stage *st, enum behaviour b, int conns)
{
    char nstr[16], cstr[8], *out, *err, buf[TERM_CHUNK];
    snprintf(nstr, sizeof nstr, "%d", BAD_BYTES);
    snprintf(cstr, sizeof cstr, "%d", conns);
    long long start = now_ms();
    struct fake f = fake_start(SOCK_STREAM, st->dir, st->tcp_client,
                               conns > 1 ? ARGS("-p", "PORT", "-T", "1", "-c", cstr, "-n", nstr)
                                         : ARGS("-p", "PORT", "-T", "1", "-n", nstr), NULL);
    struct peer p[BAD_CONNS];
    for (int i = 0; i < conns; i++) {
        ck_assert_msg(wait_for(f.listen_fd, POLLIN, now_ms() + ms(5000)) == 1,
                      "%s -c %d: connection %d never came", st->tcp_client, conns, i + 1);
        p[i] = (struct peer){.fd = accept(f.listen_fd, NULL, NULL)};
        ck_assert(p[i].fd >= 0);
        ck_assert(setsockopt(p[i].fd, SOL_SOCKET, SO_SNDTIMEO, &(struct timeval){.tv_sec = 5},
                             sizeof(struct timeval)) == 0);
        if (i == 0 && b == HANG_UP) {
            close(p[i].fd);
            p[i] = (struct peer){.fd = -1, .eof = 1};
        }
    }
    /* Serve until every client connection is over, or the client exits. */
    long long deadline = now_ms() + ms(10000);
    for (;;) {
        struct pollfd pf[BAD_CONNS + 1];
        int live = 0;
        for (int i = 0; i < conns; i++) {
            pf[i] = (struct pollfd){.fd = p[i].eof ? -1 : p[i].fd, .events = POLLIN};
            live += !p[i].eof;
        }
        pf[conns] = (struct pollfd){.fd = f.p.pidfd, .events = POLLIN};
        long long left = deadline - now_ms();
        if (live == 0 || left <= 0 || poll(pf, (nfds_t)conns + 1, (int)left) <= 0 ||
            pf[conns].revents)
            break;
        for (int i = 0; i < conns; i++)
            if (pf[i].revents)
                serve_peer(&p[i], i != 0, b, buf);
    }
    for (int i = 0; i < conns; i++)
        if (p[i].fd >= 0)
            close(p[i].fd);
    close(f.listen_fd);
    f.listen_fd = -1;
    int code = finish(&f.p, ms(5000));
    out = slurp(f.p.out);
    err = slurp(f.p.err);
    release(&f.p);
    long long took = now_ms() - start;
    ck_assert_msg(!f.p.hung && code == 1, "%s against a server that %s: %s %d after %lld ms; "
                  "stderr:\n%.1500s", st->tcp_client, behaviours[b].what,
                  f.p.hung ? "hung, killed" : code < 0 ? "killed, status" : "exit",
                  code < 0 ? f.p.status : code, took, err);
    /* -T 1 is the longest any one wait may last; the silent server costs
     * one such wait, the others less. */
    ck_assert_msg(took <= ms(3000), "%s against a server that %s took %lld ms with -T 1",
                  st->tcp_client, behaviours[b].what, took);
    /* The honest connections really were served to the end - all their
     * bytes echoed and their half-close answered - not just counted as
     * such by the client. */
    for (int i = 1; i < conns; i++)
        ck_assert_msg(p[i].eof && p[i].got == BAD_BYTES, "%s -c %d: honest connection %d "
                      "ended after %zu of %d bytes", st->tcp_client, conns, i + 1, p[i].got,
                      BAD_BYTES);
    int said = 0;
    for (int k = 0; k < 3 && behaviours[b].complaints[k] != NULL; k++)
        said |= strstr(err, behaviours[b].complaints[k]) != NULL;
    ck_assert_msg(said, "%s against a server that %s: no clear error (want '%s'); stderr:\n"
                  "%.1500s", st->tcp_client, behaviours[b].what, behaviours[b].complaints[0], err);
    if (conns > 1) {
        char want[96];
        snprintf(want, sizeof want, ": %d connections, %d succeeded, ", conns, conns - 1);
        ck_assert_msg(strstr(out, want) != NULL, "%s -c %d against a server where one "
                      "connection %s: want '%s' (the others unaffected); stdout:\n%s\nstderr:\n"
                      "%.1500s", st->tcp_client, conns, behaviours[b].what, want, out, err);
        ck_assert_msg(count_of(err, ": connection ") == 1, "%s -c %d: one connection failed, "
                      "but stderr says:\n%.1500s", st->tcp_client, conns, err);
    }
    free(out);
    free(err);
}

/* Each client against a server that accepts and then says nothing, closes
 * at once, resets mid-echo, or sends wrong bytes: exit 1 with a clear
 * error, within its -T of 1 s (and our margin), never a crash or a hang.
 * With -c, only one of the connections meets the bad server: the others
 * must all succeed. */
void check_badsrv(const struct stage *st)
{
    for (enum behaviour b = 0; b < NBEHAVIOURS; b++)
        client_vs(st, b, st->props & P_CLIENT_CONNS ? BAD_CONNS : 1);
}
