/*
 * checks_threads.c - servers that serve many clients at once: hundreds of
 * them byte-exact, a stop with a hundred connected, "server busy" at every
 * limit, counters that add up, and (-f) a process per client with no
 * zombie left behind.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

/* Connect N clients; each sends SIZE bytes of its own pattern before any
 * reads, then every echo is read and compared: a server that mixed up two
 * clients' bytes, or served them one after the other, fails here. */
static void all_at_once(int port, int n, size_t size)
{
    int *fds = malloc((size_t)n * sizeof *fds), eof;
    char *out = malloc(size), *in = malloc(size);

    for (int i = 0; i < n; i++)
        fds[i] = tcp_connect(port);
    for (int i = 0; i < n; i++) {
        for (size_t j = 0; j < size; j++)
            out[j] = (char)pattern(j, (unsigned)i);
        send_bytes(fds[i], out, size);
    }
    for (int i = 0; i < n; i++) {
        size_t got = recv_until(fds[i], in, size, now_ms() + ms(5000), &eof);
        ck_assert_msg(got == size, "client %d of %d: %zu of %zu bytes back", i + 1, n, got, size);
        for (size_t j = 0; j < size; j++)
            ck_assert_msg(in[j] == (char)pattern(j, (unsigned)i),
                          "client %d of %d: echoed byte %zu is another client's", i + 1, n, j);
        close(fds[i]);
    }
    free(fds);
    free(out);
    free(in);
}

/* 200 clients at once, byte-exact; the stage's client with -c 200; then a
 * stop with 100 clients connected and idle, each being served (its thread
 * blocked in recv()): exit 0 within 1 s, and every client sees its
 * connection closed. */
void check_many(const struct stage *st)
{
    enum { MANY = 200, IDLE = 100 };
    int idle[IDLE], eof;
    char c, want[128], *out, *err;

    /* A pool needs a worker for each of them, and room in the queue for
     * the burst: 200 connections arrive faster than 2 cores wake workers. */
    struct server s = start_server(st->dir, st->tcp_server,
                                   st->props & P_POOL ? ARGS("-q", "-w", "250", "-Q", "250")
                                                      : ARGS("-q"),
                                   NULL);
    all_at_once(s.port, MANY, 2000);
    snprintf(want, sizeof want, "%s: %d connections, %d succeeded, %d bytes echoed and checked in ",
             st->tcp_client, MANY, MANY, MANY * 20000);
    int code = run(st->dir, st->tcp_client, NULL, &out, &err,
                   ARGS("-p", s.portstr, "-c", "200", "-n", "20000"));
    ck_assert_msg(code == 0, "%s -c 200: exit %d; stderr:\n%.2000s", st->tcp_client, code, err);
    assert_prefix(out, want);
    free(out);
    free(err);

    for (int i = 0; i < IDLE; i++) {
        idle[i] = tcp_connect(s.port);
        echo_check(idle[i], 1, (unsigned)i, 0);
    }
    stop_server_quietly(&s);
    for (int i = 0; i < IDLE; i++) {
        ck_assert_msg(recv_until(idle[i], &c, 1, now_ms() + ms(1000), &eof) == 0 && eof,
                      "idle client %d not closed by the stop", i + 1);
        close(idle[i]);
    }
}

/* A pool of one worker and a queue of one: the first client is served,
 * the second waits in the queue, the third is told "server busy" - and
 * when the first leaves, the second is served. */
static void pool_busy(const struct stage *st)
{
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-w", "1", "-Q", "1"), NULL);
    int first = tcp_connect(s.port), eof;
    echo_check(first, 100, 1, 0);
    int second = tcp_connect(s.port);
    send_bytes(second, "q", 1);
    assert_busy(s.port, "-w 1 -Q 1, third client");
    echo_check(first, 1000, 2, 1);
    close(first);
    char c;
    ck_assert_msg(recv_until(second, &c, 1, now_ms() + ms(5000), &eof) == 1 && c == 'q',
                  "the queued client was not served when the worker came free");
    close(second);
    char *err = stop_server(&s);
    assert_contains(err, "refused (queue full): server busy", "server log");
    assert_contains(err, " 1 refused (server busy)", "server summary");
    free(err);
}

/* -m MAX: client MAX+1 is told "server busy" and closed, the first MAX go
 * on unaffected, and once one leaves a newcomer is served again. Then, for
 * a server with a thread per client, the thread limit: with its address space capped at what it has mapped, the
 * server cannot map a new thread's stack, so pthread_create() fails - that
 * client too is told "server busy", and the server carries on. (A low
 * RLIMIT_NPROC would do it too, but does not bind root.) A pool has its
 * threads from the start: its limit is the queue. */
void check_busy(const struct stage *st)
{
    enum { MAX = 3 };
    if (st->props & P_POOL) {
        pool_busy(st);
        return;
    }
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-m", "3"), NULL);
    int fds[MAX];
    for (int i = 0; i < MAX; i++) {
        fds[i] = tcp_connect(s.port);
        echo_check(fds[i], 100, (unsigned)i, 0);
    }
    assert_busy(s.port, "-m 3, fourth client");
    for (int i = 0; i < MAX; i++)
        echo_check(fds[i], 1000, (unsigned)i + 10, 0);
    echo_check(fds[0], 10, 20, 1);  /* leaves: the server has closed it */
    close(fds[0]);
    fds[0] = tcp_connect(s.port);
    echo_check(fds[0], 100, 21, 0);
    assert_busy(s.port, "-m 3, after one left and another came");
    /* The chapter's client says what happened, and exits 1. */
    char *out, *cerr;
    int code = run(st->dir, st->tcp_client, NULL, &out, &cerr, ARGS("-p", s.portstr, "-n", "10"));
    ck_assert_msg(code == 1, "%s against a full server: exit %d", st->tcp_client, code);
    assert_contains(cerr, "the server said \"server busy\": it turned us away", st->tcp_client);
    free(out);
    free(cerr);
    for (int i = 0; i < MAX; i++)
        close(fds[i]);
    char *err = stop_server(&s);
    assert_contains(err, "refused (connection limit): server busy", "server log");
    assert_contains(err, " 3 refused (server busy)", "server summary");
    free(err);
    if (!st->threads)
        return;                 /* one thread: no thread to run out of */

    s = start_server(st->dir, st->tcp_server, NO_ARGS, NULL);
    int first = tcp_connect(s.port);
    echo_check(first, 100, 22, 0);
    struct rlimit room, none;
    ck_assert(prlimit(s.p.pid, RLIMIT_AS, NULL, &room) == 0);
    none = room;
    none.rlim_cur = (rlim_t)status_bytes(s.p.pid, "VmSize");
    ck_assert(prlimit(s.p.pid, RLIMIT_AS, &none, NULL) == 0);
    assert_busy(s.port, "no room for a thread");
    echo_check(first, 1000, 23, 0);
    /* The first client leaves: once its thread is joined, its stack is
     * free again (the C library keeps it for the next thread), so the next
     * client is served even with the cap still on - if the server joins
     * finished threads before it creates the next one. */
    echo_check(first, 10, 24, 1);
    close(first);
    int next = tcp_connect(s.port);
    echo_check(next, 100, 25, 0);
    ck_assert(prlimit(s.p.pid, RLIMIT_AS, &room, NULL) == 0);
    close(next);
    err = stop_server(&s);
    assert_contains(err, "refused (Resource temporarily unavailable): server busy",
                    "server log");
    free(err);
}

/* The counters add up: K connections that sent known byte counts and are
 * still connected, a datagram, a refusal. SIGUSR1 prints them with the
 * connections live; the exit line, after SIGTERM, with none. */
void check_counters(const struct stage *st)
{
    enum { K = 5 };
    int pool = (st->props & P_POOL) != 0, queued = -1;
    struct server s = start_server(st->dir, st->tcp_server,
                                   pool ? ARGS("-q", "-w", "5", "-Q", "1") : ARGS("-q", "-m", "5"),
                                   NULL);
    int fds[K];
    unsigned long long bytes = 0;
    for (int i = 0; i < K; i++) {
        fds[i] = tcp_connect(s.port);
        echo_check(fds[i], 1000 + (size_t)i * 333, (unsigned)i, 0);
        bytes += 1000 + (unsigned long long)i * 333;
    }
    if (pool)
        queued = tcp_connect(s.port);   /* waits in the queue: not served */
    assert_busy(s.port, "every worker or connection taken, next client");
    int u = udp_socket(s.port);
    udp_echo_check(u, 100, 30);
    close(u);
    /* Both signals at once: Linux hands a thread's pending signals to
     * sigwait() lowest number first, so SIGUSR1 (10) before SIGTERM (15)
     * even if neither was taken before the other arrived. */
    kill(s.p.pid, SIGUSR1);
    char *err = stop_server(&s);
    char want[256];
    snprintf(want, sizeof want, "server: %d connections live, %d served, 1 refused (server busy), "
             "%llu bytes echoed%s", K, K, bytes, pool ? ", 1 waiting in the queue; " : "; ");
    const char *usr1 = strstr(err, want);
    ck_assert_msg(usr1 != NULL, "SIGUSR1 summary: want '%s' in:\n%s", want, err);
    assert_contains(usr1, " 1 datagrams echoed, ", "SIGUSR1 summary");
    /* At exit every connection has ended; the queued one unserved. */
    snprintf(want, sizeof want, "server: 0 connections live, %d served, 1 refused (server busy), "
             "%llu bytes echoed%s", K, bytes, pool ? ", 1 waiting in the queue; " : "; ");
    ck_assert_msg(strstr(usr1 + 1, want) != NULL, "exit summary after SIGUSR1's: want '%s' in:\n%s",
                  want, err);
    free(err);
    for (int i = 0; i < K; i++)
        close(fds[i]);
    if (queued >= 0) {
        int eof;
        char c;
        ck_assert_msg(recv_until(queued, &c, 1, now_ms() + ms(1000), &eof) == 0 && eof,
                      "the queued client was not closed at the stop");
        close(queued);
    }
}

/* Run process PID on CPU CPU only, if the machine has it. */
static void pin(pid_t pid, int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (cpu < sysconf(_SC_NPROCESSORS_ONLN))
        sched_setaffinity(pid, sizeof set, &set);
}

/* A flood of SIGUSR1 - a process sending it as fast as it can, from a
 * core of its own - must neither starve the clients nor hide a SIGTERM:
 * every echo meanwhile comes back within a second, and a SIGTERM sent
 * into the flood stops the server as usual. (Signal handling that does
 * work per signal received can be kept busy by it for as long as the
 * flood lasts: on one core the flood would only run when the server
 * lets it, hence the pinning.) */
void check_signal_flood(const struct stage *st)
{
    struct server s = start_server(st->dir, st->tcp_server,
                                   st->props & P_POOL ? ARGS("-q", "-w", "2") : ARGS("-q"), NULL);
    int fd = tcp_connect(s.port);
    echo_check(fd, 10, 40, 0);
    pin(s.p.pid, 0);
    pid_t flooder = fork();
    ck_assert(flooder >= 0);
    if (flooder == 0) {
        pin(0, 1);
        long long end = now_ms() + 3000;
        while (now_ms() < end && kill(s.p.pid, SIGUSR1) == 0)
            ;
        _exit(0);
    }
    long long until = now_ms() + 600;
    for (int i = 0; now_ms() < until; i++) {
        long long start = now_ms();
        echo_check(fd, 100, (unsigned)i, 0);
        ck_assert_msg(now_ms() - start < ms(1000), "an echo took %lld ms during a SIGUSR1 flood",
                      now_ms() - start);
    }
    close(fd);
    char *err = stop_server(&s);
    kill(flooder, SIGKILL);
    waitpid(flooder, NULL, 0);
    assert_contains(err, "connections live", "server log");
    free(err);
}

/* The seeds' trap: with long connections a pool of W workers serves W
 * clients, and client W+1 - accepted, queued - gets no echo at all until
 * one of the first W leaves; then it is served, nothing lost. */
void check_pool(const struct stage *st)
{
    enum { W = 2 };
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q", "-w", "2"), NULL);
    int fds[W], eof;
    for (int i = 0; i < W; i++) {
        fds[i] = tcp_connect(s.port);
        echo_check(fds[i], 10, (unsigned)i, 0);
    }
    int next = tcp_connect(s.port);
    send_bytes(next, "n", 1);
    char c;
    /* No readiness signal exists for "nothing happens": 300 ms bounds the
     * wait for an echo that must not come. */
    ck_assert_msg(recv_until(next, &c, 1, now_ms() + 300, &eof) == 0 && !eof,
                  "client %d was served (or closed) by a pool of %d busy workers", W + 1, W);
    echo_check(fds[1], 100, 3, 0);              /* the first W: still served */
    close(fds[0]);                              /* one leaves... */
    ck_assert_msg(recv_until(next, &c, 1, now_ms() + ms(5000), &eof) == 1 && c == 'n',
                  "the queued client was not served when a worker came free");
    echo_check(next, 1000, 4, 1);
    close(next);
    close(fds[1]);
    stop_server_quietly(&s);
}

/* The children of PID, from /proc/PID/task/PID/children; returns how many
 * (at most MAX) and how many of them are zombies in *ZOMBIES. */
static int children_of(pid_t pid, pid_t *kids, int max, int *zombies)
{
    char path[96], state;
    int n = 0, kid;
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    *zombies = 0;
    while (n < max && fscanf(f, "%d", &kid) == 1) {
        kids[n++] = kid;
        snprintf(path, sizeof path, "/proc/%d/stat", kid);
        FILE *st = fopen(path, "r");
        if (st != NULL && fscanf(st, "%*d (%*[^)]) %c", &state) == 1 && state == 'Z')
            ++*zombies;
        if (st != NULL)
            fclose(st);
    }
    fclose(f);
    return n;
}

/* -f, a process per client: clients are served at once, byte-exact; a
 * child that has served its client is reaped (no zombie stays); -m holds;
 * a stop with clients connected ends every child too. */
void check_processes(const struct stage *st)
{
    enum { LIVE = 20 };
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q", "-f", "-m", "20"), NULL);
    all_at_once(s.port, LIVE, 3000);
    second_client(s.port, 1);
    /* Each child has closed its client (the echoes above ended at EOF or
     * a close): the server must reap them all. Nothing signals "reaped"
     * to a third process, so we look, every 10 ms, for at most 3 s. */
    pid_t kids[64];
    int zombies = 0, n;
    long long deadline = now_ms() + ms(3000);
    while ((n = children_of(s.p.pid, kids, 64, &zombies)) > 0 && now_ms() < deadline)
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    ck_assert_msg(n == 0, "%d children (%d zombies) left 3 s after their clients left", n,
                  zombies);

    int fds[LIVE];
    for (int i = 0; i < LIVE; i++) {
        fds[i] = tcp_connect(s.port);
        echo_check(fds[i], 100, (unsigned)i, 0);
    }
    assert_busy(s.port, "-f -m 20, client 21");
    n = children_of(s.p.pid, kids, 64, &zombies);
    ck_assert_msg(n == LIVE, "%d children for %d clients", n, LIVE);
    /* SIGINT and SIGUSR1 are for the parent: a child that gets one (Ctrl-C
     * signals the whole group; `kill -USR1` may pick the wrong process)
     * goes on serving its client. */
    for (int i = 0; i < LIVE; i++) {
        kill(kids[i], SIGUSR1);
        kill(kids[i], SIGINT);
    }
    for (int i = 0; i < LIVE; i++)
        echo_check(fds[i], 100, (unsigned)i + 40, 0);
    /* A stopped child must not hold up the stop: SIGTERM alone would wait
     * until somebody continued it. */
    kill(kids[0], SIGSTOP);
    stop_server_quietly(&s);
    for (int i = 0; i < LIVE; i++) {
        int eof;
        char c;
        ck_assert_msg(recv_until(fds[i], &c, 1, now_ms() + ms(1000), &eof) == 0 && eof,
                      "client %d not closed by the stop", i + 1);
        close(fds[i]);
        ck_assert_msg(kill(kids[i], 0) < 0 && errno == ESRCH,
                      "child %d still exists after the server stopped", (int)kids[i]);
    }
}
