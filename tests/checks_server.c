/*
 * checks_server.c - what every server does, whatever it serves: arguments,
 * a busy port, signals, restarts, IPv6, running out of descriptors,
 * starting without standard descriptors, a log nobody reads, and failing
 * system calls.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Run PROG with ARGS; it must exit 2 with a usage message. */
static void assert_usage(const char *dir, const char *prog, const char *const *args)
{
    char *err;
    int code = run(dir, prog, NULL, NULL, &err, args);
    ck_assert_msg(code == 2, "%s %s %s %s %s: exit %d, want 2", prog, args[0],
                  args[1] ? args[1] : "", args[1] && args[2] ? args[2] : "",
                  args[1] && args[2] && args[3] ? args[3] : "", code);
    assert_contains(err, "usage:", prog);
    free(err);
}

/* Every occurrence of an option is checked, and numbers are decimal. */
void check_bad_args(const struct stage *st)
{
    static const char *const bad[][5] = {
        {"-x"}, {"-p", "http"}, {"-p", "65536"}, {"-p", "-1"}, {"-p", "+80"},
        {"-p", "80x"}, {"-p", "65536", "-p", "0"}, {"-p", "0", "-p", "65536"},
        {"-a", "not-an-address"}, {"-a", "nope", "-a", "127.0.0.1"}, {"extra"},
        {"-t", "0x10"}, {"-t", "1e-300"}, {"-t", "0"}, {"-t", "nan"},
    };
    const char *progs[2];
    for (int k = server_progs(st, progs) - 1; k >= 0; k--)
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++)
            assert_usage(st->dir, progs[k], bad[b]);

    static const char *const bad_client[][5] = {
        {"-p", "0"}, {"-p", "65536", "-p", "1"}, {"-T", "0x10"}, {"-T", "1e-300"},
        {"-T", "-1"}, {"-x"},
    };
    const char *clients[2] = {st->tcp_client, st->udp_client};
    for (int k = 0; k < 2; k++)
        for (size_t b = 0; clients[k] != NULL && b < sizeof bad_client / sizeof bad_client[0]; b++)
            assert_usage(st->dir, clients[k], bad_client[b]);

    /* One port rule everywhere: leading zeros are still a decimal port. */
    char port[16], *err;
    snprintf(port, sizeof port, "000%d", closed_port());
    ck_assert_int_eq(run(st->dir, st->tcp_client, NULL, NULL, &err, ARGS("-p", port)), 1);
    assert_contains(err, "Connection refused", st->tcp_client);
    free(err);
}

/* A second server on a port the first one has: exit 1, and the message
 * names the call, the address and the cause. For UDP this holds only
 * without SO_REUSEADDR, which would let the second one in to take the
 * first one's traffic. */
void check_port_in_use(const struct stage *st)
{
    const char *progs[2];
    for (int k = server_progs(st, progs) - 1; k >= 0; k--) {
        struct server first = start_server(st->dir, progs[k], ARGS("-q"), NULL);
        char want[128], *err;
        int code = run(st->dir, progs[k], NULL, NULL, &err, ARGS("-p", first.portstr));
        /* The program's name, without the options its stage gives it. */
        snprintf(want, sizeof want, "%.*s: bind 127.0.0.1:%d: Address already in use\n",
                 (int)strcspn(progs[k], " "), progs[k], first.port);
        ck_assert_msg(code == 1, "a second %s on a busy port: exit %d, want 1", progs[k], code);
        ck_assert_str_eq(err, want);
        free(err);
        stop_server_quietly(&first);
    }
}

/* Send to an echo server without ever reading, until the send buffers on
 * both sides are full: the server is then blocked in send() to us. */
static void flood_without_reading(int fd)
{
    static char buf[64 * KiB];
    size_t total = 0;

    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    while (total < 256 * MiB) {
        ssize_t n = send(fd, buf, sizeof buf, MSG_NOSIGNAL);
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        /* Full: wait a moment in case the server drains some more. No
         * readiness signal says "it stopped for good"; 200 ms bounds it. */
        ck_assert_msg(n < 0 && errno == EAGAIN, "send: %s", strerror(errno));
        if (wait_for(fd, POLLOUT, now_ms() + 200) == 0)
            return;
    }
    ck_abort_msg("the server read 256 MiB without sending any back");
}

/* SIGTERM while the server is busy with a client - waiting for it to send,
 * and blocked sending to it - and SIGINT while idle: each must end the
 * server with exit 0 within 1 s. */
void check_signals(const struct stage *st)
{
    const char *progs[2];
    for (int k = server_progs(st, progs) - 1; k >= 0; k--) {
        int is_tcp = serves_tcp(st, progs[k]);
        int echo = is_tcp && (st->props & P_TCP_ECHO);
        for (int busy = 0; busy <= echo; busy++) {
            struct server s = start_server(st->dir, progs[k], ARGS("-q"), NULL);
            int fd = is_tcp ? tcp_connect(s.port) : udp_socket(s.port);
            if (echo)
                echo_check(fd, 1, 1, 0);    /* now it is surely serving us */
            else if (!is_tcp)
                udp_echo_check(fd, 1, 1);
            if (busy)
                flood_without_reading(fd);
            stop_server_quietly(&s);
            close(fd);
        }
        struct server s = start_server(st->dir, progs[k], ARGS("-q"), NULL);
        kill(s.p.pid, SIGINT);
        ck_assert_msg(finish(&s.p, ms(1000)) == 0, "%s: SIGINT did not exit 0", progs[k]);
        release(&s.p);
    }
}

/* SO_REUSEADDR: a server restarted on its port right after a stop binds at
 * once, although the last run's connection sits in TIME_WAIT (the server
 * closed first: after its greeting, or when SIGTERM ended the echo). */
void check_restart(const struct stage *st)
{
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"), NULL);
    int fd = tcp_connect(s.port), eof;
    char buf[256];
    if (st->props & P_TCP_ECHO)
        echo_check(fd, 1, 10, 0);
    else
        recv_until(fd, buf, sizeof buf, now_ms() + ms(5000), &eof);
    stop_server_quietly(&s);
    recv_until(fd, buf, sizeof buf, now_ms() + ms(5000), &eof);
    ck_assert_msg(eof, "the server did not close the connection");
    close(fd);
    int port = s.port;
    s = start_server(st->dir, st->tcp_server, ARGS("-q", "-p", s.portstr), NULL);
    ck_assert_int_eq(s.port, port);
    stop_server_quietly(&s);
}

/* The same servers and clients over IPv6 (::1): nothing in the code may
 * assume IPv4. A datagram of 65,527 bytes, the IPv6 maximum, comes back. */
void check_ipv6(const struct stage *st)
{
    if (st->tcp_server != NULL) {
        struct server s = start_server(st->dir, st->tcp_server, ARGS("-q", "-a", "::1"), NULL);
        int fd = connect_to(SOCK_STREAM, "::1", s.port), eof;
        if (st->props & P_TCP_ECHO) {
            echo_check(fd, 64 * KiB + 1, 11, 1);
            assert_run_prints(st->dir, st->tcp_client, "over IPv6\n", "over IPv6\n",
                              ARGS("-a", "::1", "-p", s.portstr));
        } else {
            char buf[128];
            size_t n = recv_until(fd, buf, sizeof buf - 1, now_ms() + ms(5000), &eof);
            buf[n] = '\0';
            assert_prefix(buf, "hello [::1]:");
        }
        close(fd);
        stop_server_quietly(&s);
    }
    if (st->udp_server != NULL) {
        struct server s = start_server(st->dir, st->udp_server, ARGS("-q", "-a", "::1"), NULL);
        int fd = connect_to(SOCK_DGRAM, "::1", s.port);
        udp_echo_check(fd, 65527, 12);
        close(fd);
        assert_run_prints(st->dir, st->udp_client, NULL,
                          "udp_client: 65527-byte datagram echoed, all correct\n",
                          ARGS("-a", "::1", "-p", s.portstr, "-n", "65527"));
        stop_server_quietly(&s);
    }
}

/* The lowest descriptor number PID does not have open: the one its next
 * accept() would get. */
int lowest_free_fd(pid_t pid)
{
    char path[64], seen[1024] = {0};
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    ck_assert_msg(d != NULL, "%s: %s", path, strerror(errno));
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd >= 0 && fd < (int)sizeof seen)
            seen[fd] = 1;
    }
    closedir(d);
    int fd = 0;
    while (fd < (int)sizeof seen && seen[fd])
        fd++;
    return fd;
}

/* One client served and gone: an echo of one byte, or a greeting. */
static void one_client(const struct stage *st, int port)
{
    int fd = tcp_connect(port), eof;
    char buf[128];
    if (st->props & P_TCP_ECHO)
        echo_check(fd, 1, 15, 1);
    else
        ck_assert(recv_until(fd, buf, sizeof buf, now_ms() + ms(5000), &eof) > 0 && eof);
    close(fd);
}

/* The system call PID's main thread is blocked in, or -1: the first
 * number in /proc/PID/syscall. */
static long blocked_in(pid_t pid)
{
    char path[64];
    long nr = -1;
    snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    if (fscanf(f, "%ld", &nr) != 1)
        nr = -1;
    fclose(f);
    return nr;
}

static int is_accept(long nr)
{
#ifdef SYS_accept
    if (nr == SYS_accept)
        return 1;
#endif
    return nr == SYS_accept4;
}

/* Is NR a call a server waits for its next client in: accept() (a thread
 * per client, or one at a time), or the call an event loop waits in? */
static int is_waiting(long nr)
{
    static const long waits[] = {
#ifdef SYS_select
        SYS_select,
#endif
#ifdef SYS_poll
        SYS_poll,
#endif
#ifdef SYS_epoll_wait
        SYS_epoll_wait,
#endif
#ifdef SYS_epoll_pwait2
        SYS_epoll_pwait2,
#endif
        SYS_pselect6, SYS_ppoll, SYS_epoll_pwait,
    };
    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++)
        if (nr == waits[i])
            return 1;
    return is_accept(nr);
}

/* Out of file descriptors, accept() fails with EMFILE at once, again and
 * again: the server must neither exit nor spin, nor leave the waiting
 * client hanging - it tells it "server busy" (with a descriptor it set
 * aside for that) - and serves again once descriptors are free. Once the
 * server waits for clients, prlimit() lowers its limit to exactly what it
 * has open (however many sockets that is), then gives it room again. (Any
 * sooner, and a server still starting would fail to open its own sockets:
 * the wait, which no event signals, looks every 10 ms, for at most 5 s.)
 * An accept() already waiting has its descriptor number reserved (Linux
 * picks it before it sleeps): one client takes that, and the next accept()
 * has none. An event loop waits in select(), poll() or epoll_wait()
 * instead, with nothing reserved: its first client is already one too
 * many. */
void check_fd_limit(const struct stage *st)
{
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"), NULL);
    long long deadline = now_ms() + ms(5000);
    long nr;
    while (!is_waiting(nr = blocked_in(s.p.pid)) && now_ms() < deadline)
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    ck_assert_msg(is_waiting(nr), "the server never blocked in accept(), select(), poll() or "
                  "epoll_wait() (system call %ld)", nr);
    struct rlimit room, none;
    ck_assert(prlimit(s.p.pid, RLIMIT_NOFILE, NULL, &room) == 0);
    none = room;
    none.rlim_cur = (rlim_t)lowest_free_fd(s.p.pid);
    ck_assert(prlimit(s.p.pid, RLIMIT_NOFILE, &none, NULL) == 0);
    if (is_accept(nr))
        one_client(st, s.port);

    for (int i = 0; i < 3; i++)
        assert_busy(s.port, "out of descriptors");
    /* At the limit with nobody waiting, a blocking accept() still fails at
     * once: the server must pause, not spin. "Not spinning" signals
     * nothing, so we give it 300 ms and count its tries below. */
    nanosleep(&(struct timespec){.tv_nsec = 300 * 1000 * 1000}, NULL);
    ck_assert(prlimit(s.p.pid, RLIMIT_NOFILE, &room, NULL) == 0);
    one_client(st, s.port);

    char *err = stop_server(&s);
    int busy = count_of(err, "Too many open files: a waiting client was told \"server busy\"");
    int rests = count_of(err, "Too many open files (");
    ck_assert_msg(busy == 3, "%d clients told 'server busy' in the log, want 3:\n%.500s", busy,
                  err);
    /* A pause of 100 ms between tries: threads that retry accept() log
     * about 3 "(retrying)" in 300 ms, a loop one "(not accepting for 100
     * ms)" per client turned away; a server that spun would log thousands. */
    ck_assert_msg(rests >= 1 && rests <= 30, "%d 'Too many open files (...)' lines in about "
                  "0.3 s:\n%.500s", rests, err);
    free(err);
}

/* Read what the server sends until it closes; it must be exactly WANT. */
static void assert_receives(int fd, const char *want)
{
    char buf[512];
    int eof;
    size_t n = recv_until(fd, buf, sizeof buf - 1, now_ms() + ms(5000), &eof);
    buf[n] = '\0';
    ck_assert_msg(eof, "the server did not close after '%s'", buf);
    ck_assert_str_eq(buf, want);
}

/* Started with stdin and stderr closed (`server <&- 2>&-`), a server that
 * does not open them on /dev/null gets its listening socket as fd 0 and
 * its first client as fd 2 - and writes its log lines to the client. The
 * client must get its echo or greeting and nothing else. */
void check_std_fds(const struct stage *st)
{
    struct spawn_opts o = {.closed_fds = 1u << 0 | 1u << 2};
    struct server s = start_server(st->dir, st->tcp_server, NO_ARGS, &o);
    int fd = tcp_connect(s.port);
    if (st->props & P_TCP_ECHO) {
        echo_check(fd, 1000, 13, 1);
    } else {
        struct sockaddr_storage me;
        socklen_t len = sizeof me;
        char want[128];
        ck_assert(getsockname(fd, (struct sockaddr *)&me, &len) == 0);
        snprintf(want, sizeof want, "hello 127.0.0.1:%d, you are client #1\n",
                 ntohs(((struct sockaddr_in *)&me)->sin_port));
        assert_receives(fd, want);
    }
    close(fd);
    stop_server_quietly(&s);
}

/* Serve N clients (TCP) or datagrams (UDP) one after the other. */
static void serve_many(const struct stage *st, const char *prog, int port, int n)
{
    for (int i = 0; i < n; i++) {
        int fd = serves_tcp(st, prog) ? tcp_connect(port) : udp_socket(port);
        if (!serves_tcp(st, prog))
            udp_echo_check(fd, 8, (unsigned)i);
        else if (st->props & P_TCP_ECHO)
            echo_check(fd, 8, (unsigned)i, 1);
        else {
            char buf[128];
            int eof;
            ck_assert_msg(recv_until(fd, buf, sizeof buf, now_ms() + ms(5000), &eof) > 0 && eof,
                          "client %d of %d not greeted", i + 1, n);
        }
        close(fd);
    }
}

/* With stderr a pipe or a terminal that nobody reads (a terminal after
 * Ctrl-S), the log fills it after a few hundred lines. Logging must never
 * stop service: every client is still served, and SIGTERM still ends the
 * server within 1 s. */
void check_full_log(const struct stage *st)
{
    const char *progs[2];
    for (int k = server_progs(st, progs) - 1; k >= 0; k--) {
        for (int kind = ERR_PIPE; kind <= ERR_TERMINAL; kind++) {
            struct spawn_opts o = {.err_unread = kind};
            struct server s = start_server(st->dir, progs[k], NO_ARGS, &o);
            serve_many(st, progs[k], s.port, 2000);
            stop_server_quietly(&s);
        }
    }
}

/* Run PROG under faults.so failing FAULT; it must exit 1 and say CALL. */
static void assert_fails_with(const char *dir, const char *prog, const char *fault,
                              const char *call, const char *const *args)
{
    struct spawn_opts o = {.fault = fault};
    struct proc p = spawn(dir, prog, args, &o);
    int code = finish(&p, ms(5000));
    char *err = slurp(p.err);
    release(&p);
    ck_assert_msg(code == 1, "%s with %s failing: exit %d, want 1; stderr: %s", prog, fault,
                  code, err);
    assert_contains(err, call, prog);
    free(err);
}

/* Every setsockopt(), getsockname() and getpeername() result is checked:
 * made to fail, each stops the program with a message naming it (at
 * start), or closes the one connection it was for - never goes on half
 * set up, which here would mean a client the idle timeout cannot drop. */
void check_faults(const struct stage *st)
{
    const char *progs[2];
    int port, listener = bound_socket(SOCK_STREAM, &port);
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    for (int k = server_progs(st, progs) - 1; k >= 0; k--) {
        if (serves_tcp(st, progs[k]))
            assert_fails_with(st->dir, progs[k], "setsockopt", "setsockopt", ARGS("-p", "0"));
        assert_fails_with(st->dir, progs[k], "getsockname", "getsockname", ARGS("-p", "0"));
    }
    assert_fails_with(st->dir, st->tcp_client, "setsockopt", "No buffer space available",
                      ARGS("-p", portstr));
    if (st->udp_client != NULL)
        assert_fails_with(st->dir, st->udp_client, "getpeername", "getpeername",
                          ARGS("-p", portstr, "x"));
    close(listener);
    if (!(st->props & P_IDLE_TIMEOUT))
        return;
    /* A server sets a new client up with TCP_NODELAY (its second call of
     * the run), and a threaded one then with SO_RCVTIMEO and SO_SNDTIMEO;
     * an event loop keeps its timeouts itself. */
    int last = st->threads ? 3 : 2;
    for (int from = 2; from <= last; from++) {
        char fault[32], c;
        int eof;
        snprintf(fault, sizeof fault, "setsockopt@%d", from);
        struct spawn_opts o = {.fault = fault};
        struct server s = start_server(st->dir, st->tcp_server, ARGS("-t", "0.3"), &o);
        int fd = tcp_connect(s.port);
        send_bytes(fd, "x", 1);
        recv_until(fd, &c, 1, now_ms() + ms(3000), &eof);
        if (!eof)
            recv_until(fd, &c, 1, now_ms() + ms(3000), &eof);
        ck_assert_msg(eof, "%s: a client the server could not set up was neither closed "
                           "nor dropped by the idle timeout", fault);
        close(fd);
        char *err = stop_server(&s);
        assert_contains(err, "setsockopt", "server log");
        free(err);
    }
}
