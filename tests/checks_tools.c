/*
 * checks_tools.c - the harness's own tools get tested too: a load
 * generator that missed a wrong byte would make every benchmark
 * meaningless, and a concurrency check that passed an iterative server
 * (or failed a concurrent one) would make the report card lie.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* loadgen against a server that corrupts one byte, or hangs up mid-run:
 * it must fail, and say where. The bad server is this test. */
void check_loadgen_catches(const struct stage *st)
{
    (void)st;
    for (int corrupt = 1; corrupt >= 0; corrupt--) {
        struct fake f = fake_start(SOCK_STREAM, "tests", "loadgen",
                                   ARGS("-p", "PORT", "-c", "1", "-n", "5", "-s", "64"), NULL);
        char buf[64], *out, *err;
        int eof;
        fake_accept(&f);
        ck_assert_int_eq(recv_until(f.fd, buf, sizeof buf, now_ms() + ms(5000), &eof), 64);
        if (corrupt) {
            buf[10] ^= 0x20;
            send_bytes(f.fd, buf, sizeof buf);
        }
        close(f.fd);
        f.fd = -1;
        int code = fake_finish(&f, ms(5000), &out, &err);
        ck_assert_msg(code == 1, "loadgen exit %d against a bad server", code);
        assert_contains(err, corrupt ? "wrong data on connection 1 of 1, message 1, byte offset 10"
                                     : "closed by the server", "loadgen");
        ck_assert_int_eq(result_field(out, "errors"), 1);
        free(out);
        free(err);
    }
    /* Sixteen messages in flight (-D 16) arrive as one stream: a byte
     * flipped in the sixth must be found in the sixth, at its offset. */
    struct fake f = fake_start(SOCK_STREAM, "tests", "loadgen",
                               ARGS("-p", "PORT", "-c", "1", "-n", "16", "-s", "64", "-D", "16"),
                               NULL);
    static char all[16 * 64];
    char *out, *err;
    int eof;
    fake_accept(&f);
    ck_assert_int_eq(recv_until(f.fd, all, sizeof all, now_ms() + ms(5000), &eof), sizeof all);
    all[5 * 64 + 10] ^= 0x01;
    send_bytes(f.fd, all, sizeof all);
    close(f.fd);
    f.fd = -1;
    int code = fake_finish(&f, ms(5000), &out, &err);
    ck_assert_msg(code == 1, "loadgen -D 16 exit %d against a server that flips a byte", code);
    assert_contains(err, "wrong data on connection 1 of 1, message 6, byte offset 10", "loadgen");
    free(out);
    free(err);
    /* A server at its limit says "server busy" and closes: a refusal,
     * counted apart, not wrong data - and that connection's quota stays
     * unfinished. */
    f = fake_start(SOCK_STREAM, "tests", "loadgen", ARGS("-p", "PORT", "-c", "1", "-n", "5"),
                   NULL);
    fake_accept(&f);
    ck_assert_int_eq(recv_until(f.fd, all, 64, now_ms() + ms(5000), &eof), 64);
    send_bytes(f.fd, "server busy\n", 12);
    close(f.fd);
    f.fd = -1;
    code = fake_finish(&f, ms(5000), &out, &err);
    ck_assert_msg(code == 0, "loadgen exit %d when refused; stderr: %s", code, err);
    ck_assert_int_eq(result_field(out, "refused"), 1);
    ck_assert_int_eq(result_field(out, "errors"), 0);
    ck_assert_int_eq(result_field(out, "unfinished"), 0);   /* refused, not late */
    free(out);
    free(err);
    /* A server that never answers: the quota is still owed when -d ends. */
    f = fake_start(SOCK_STREAM, "tests", "loadgen", ARGS("-p", "PORT", "-n", "1", "-d", "0.3"),
                   NULL);
    fake_accept(&f);
    code = fake_finish(&f, ms(5000), &out, &err);
    ck_assert_msg(code == 0, "loadgen exit %d against a silent server; stderr: %s", code, err);
    ck_assert_int_eq(result_field(out, "unfinished"), 1);
    assert_contains(out, "1 still waiting when -d 0.3 s ran out", "loadgen");
    free(out);
    free(err);
    ck_assert_int_eq(run("tests", "loadgen", NULL, NULL, &err, ARGS("-c", "0")), 2);
    free(err);
    ck_assert_int_eq(run("tests", "loadgen", NULL, NULL, &err, ARGS("-C", "-D", "2")), 2);
    free(err);
    /* 127.0.0.x sources need a server on loopback; -P a process to read. */
    ck_assert_int_eq(run("tests", "loadgen", NULL, NULL, &err, ARGS("-a", "::1", "-S", "2")), 2);
    assert_contains(err, "-S needs a server on 127.0.0.0/8", "loadgen -S");
    free(err);
    ck_assert_int_eq(run("tests", "loadgen", NULL, NULL, &err, ARGS("-P", "2147483646")), 2);
    assert_contains(err, "cannot read that process's CPU clock", "loadgen -P");
    free(err);
}

/* Accept N connections on F's listener and echo one SIZE-byte message on
 * each; the last byte of each client's address goes to SRC[i], the socket
 * to FDS[i] (left open for the caller). */
static void echo_one_each(struct fake *f, int n, size_t size, int *src, int *fds)
{
    for (int i = 0; i < n; i++) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        char buf[64];
        int eof;
        ck_assert_msg(wait_for(f->listen_fd, POLLIN, now_ms() + ms(5000)) == 1,
                      "loadgen made %d connections, not %d", i, n);
        fds[i] = accept(f->listen_fd, (struct sockaddr *)&peer, &len);
        ck_assert_msg(fds[i] >= 0, "accept: %s", strerror(errno));
        ck_assert_int_eq(recv_until(fds[i], buf, size, now_ms() + ms(5000), &eof), size);
        send_bytes(fds[i], buf, size);
        src[i] = (int)(ntohl(peer.sin_addr.s_addr) & 0xff);
    }
}

/* Echo everything loadgen sends on FD until it closes; returns the bytes. */
static long long echo_until_eof(int fd)
{
    char buf[4096];
    long long echoed = 0;
    for (;;) {
        ck_assert_msg(wait_for(fd, POLLIN, now_ms() + ms(5000)) == 1, "loadgen went quiet");
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got <= 0)
            return echoed;
        send_bytes(fd, buf, (size_t)got);
        echoed += got;
    }
}

/* How many of the N connections came from 127.0.0.K. */
static int from(const int *src, int n, int k)
{
    int count = 0;
    for (int i = 0; i < n; i++)
        count += src[i] == k;
    return count;
}

/* loadgen -P: the CPU time of another process over the window, read from
 * /proc - a process that spins must show, one that sleeps must not (though
 * it spun for 0.3 s before the window: only the window counts). */
static void loadgen_reads_cpu(void)
{
    for (int spin = 1; spin >= 0; spin--) {
        int ready[2];
        ck_assert(pipe(ready) == 0);
        pid_t pid = fork();
        ck_assert(pid >= 0);
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            for (long long end = now_ms() + 300; now_ms() < end;)
                ;
            if (write(ready[1], "", 1) != 1)
                _exit(1);
            for (volatile unsigned long i = 0; spin; i++)
                ;
            pause();
            _exit(0);
        }
        close(ready[1]);
        ck_assert(wait_for(ready[0], POLLIN, now_ms() + ms(5000)) == 1);
        close(ready[0]);
        char pidstr[16], *out, *err;
        snprintf(pidstr, sizeof pidstr, "%d", (int)pid);
        struct fake f = fake_start(SOCK_STREAM, "tests", "loadgen",
                                   ARGS("-p", "PORT", "-d", "0.5", "-P", pidstr), NULL);
        fake_accept(&f);
        echo_until_eof(f.fd);       /* until loadgen's window is over */
        int code = fake_finish(&f, ms(5000), &out, &err);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        ck_assert_msg(code == 0, "loadgen -P exit %d: %s", code, err);
        /* /proc counts in 10 ms ticks; over 0.5 s a spinning process
         * has (at least) dozens, a sleeping one none. */
        double cpu = result_number(out, "server_cpu_s");
        ck_assert_msg(spin ? cpu >= 0.1 : cpu < 0.05, "loadgen -P: a %s process used %.2f s of "
                      "CPU in a 0.5 s window", spin ? "spinning" : "sleeping", cpu);
        free(out);
        free(err);
    }
}

/* The modes bench.sh relies on: source addresses (-S, and by themselves
 * when ports run short), the warm-up (-W), another process's CPU (-P),
 * holding connections open (-H). */
void check_loadgen_modes(const struct stage *st)
{
    (void)st;
    int src[4], fds[4];
    char *out, *err;

    struct fake f = fake_start(SOCK_STREAM, "tests", "loadgen",
                               ARGS("-p", "PORT", "-c", "3", "-n", "1", "-S", "3"), NULL);
    echo_one_each(&f, 3, 64, src, fds);
    int code = fake_finish(&f, ms(5000), &out, &err);
    ck_assert_msg(code == 0, "loadgen -S 3: exit %d: %s", code, err);
    ck_assert_msg(from(src, 3, 1) == 1 && from(src, 3, 2) == 1 && from(src, 3, 3) == 1,
                  "loadgen -S 3: connections from 127.0.0.%d, .%d, .%d", src[0], src[1], src[2]);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    free(out);
    free(err);

    /* From the third connection on, connect() finds no port left. */
    struct spawn_opts o = {.fault = "connect@3"};
    f = fake_start(SOCK_STREAM, "tests", "loadgen", ARGS("-p", "PORT", "-c", "4", "-n", "1"), &o);
    echo_one_each(&f, 4, 64, src, fds);
    code = fake_finish(&f, ms(5000), &out, &err);
    ck_assert_msg(code == 0, "loadgen out of ports: exit %d: %s", code, err);
    ck_assert_msg(from(src, 4, 1) == 2 && from(src, 4, 2) == 2,
                  "loadgen out of ports: connections from 127.0.0.%d, .%d, .%d, .%d",
                  src[0], src[1], src[2], src[3]);
    assert_contains(err, "connecting from 127.0.0.2 from now on", "loadgen out of ports");
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    free(out);
    free(err);

    /* -W: what the warm-up exchanged, plus the window's quota, is all
     * that crossed; only the quota is counted as the window's. */
    f = fake_start(SOCK_STREAM, "tests", "loadgen",
                   ARGS("-p", "PORT", "-n", "3", "-W", "0.2", "-s", "64"), NULL);
    fake_accept(&f);
    long long echoed = echo_until_eof(f.fd);
    code = fake_finish(&f, ms(5000), &out, &err);
    ck_assert_msg(code == 0, "loadgen -W: exit %d: %s", code, err);
    long long warm = result_field(out, "warm_msgs");
    ck_assert_int_eq(result_field(out, "msgs"), 3);
    ck_assert_msg(warm > 0, "loadgen -W 0.2: no message in the warm-up");
    ck_assert_msg(echoed == 64 * (warm + 3), "loadgen -W: %lld bytes echoed, but %lld warm-up "
                  "messages and 3 counted", echoed, warm);
    free(out);
    free(err);

    /* -H: once every echo is back the connections stay open, and say so,
     * until standard input ends. */
    struct spawn_opts hold = {.out = OUT_PIPE, .in_open = 1};
    f = fake_start(SOCK_STREAM, "tests", "loadgen", ARGS("-p", "PORT", "-c", "2", "-n", "1", "-H"),
                   &hold);
    echo_one_each(&f, 2, 64, src, fds);
    char buf[4096] = "";
    size_t n = 0;
    while (strstr(buf, "holding ") == NULL) {
        ck_assert_msg(n < sizeof buf - 1 && wait_for(f.p.out, POLLIN, now_ms() + ms(5000)) == 1,
                      "loadgen -H never said it holds the connections: '%s'", buf);
        ssize_t got = read(f.p.out, buf + n, sizeof buf - 1 - n);
        ck_assert_msg(got > 0, "loadgen -H ended before holding: '%s'", buf);
        buf[n += (size_t)got] = '\0';
    }
    assert_contains(buf, "holding 2 connections open", "loadgen -H");
    for (int i = 0; i < 2; i++)
        ck_assert_msg(wait_for(fds[i], POLLIN, now_ms()) == 0,
                      "loadgen -H closed connection %d while it said it held it", i + 1);
    close(f.p.in);
    f.p.in = -1;
    code = fake_finish(&f, ms(5000), &out, &err);
    ck_assert_msg(code == 0, "loadgen -H: exit %d: %s", code, err);
    for (int i = 0; i < 2; i++) {
        int eof;
        ck_assert_int_eq(recv_until(fds[i], buf, 1, now_ms() + ms(5000), &eof), 0);
        ck_assert_msg(eof, "loadgen -H: connection %d still open after stdin ended", i + 1);
        close(fds[i]);
    }
    free(out);
    free(err);
    loadgen_reads_cpu();
}

/* rusage, which bench.sh reads each server's cost from: it passes SIGTERM
 * on, exits as its program did, and writes the program's usage down. */
void check_rusage(const struct stage *st)
{
    (void)st;
    char path[] = "/tmp/harness-rusage-XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    close(fd);
    /* The child says "ready" once it runs: rusage is past its fork(). */
    struct spawn_opts o = {.out = OUT_PIPE};
    struct proc p = spawn("tests", "rusage", ARGS(path, "sh", "-c", "echo ready; exec sleep 30"),
                          &o);
    char ready[8];
    ck_assert(wait_for(p.out, POLLIN, now_ms() + ms(5000)) == 1);
    ck_assert(read(p.out, ready, sizeof ready) > 0);
    kill(p.pid, SIGTERM);
    int code = finish(&p, ms(1000));
    release(&p);
    ck_assert_msg(!p.hung && code == 128 + SIGTERM, "rusage with SIGTERM: exit %d, want %d",
                  code, 128 + SIGTERM);
    char *err;
    ck_assert_int_eq(run("tests", "rusage", NULL, NULL, &err, ARGS(path, "sh", "-c", "exit 3")), 3);
    free(err);
    fd = open(path, O_RDONLY);
    char *line = slurp(fd);
    close(fd);
    unlink(path);
    ck_assert_msg(strncmp(line, "user_s=", 7) == 0 && strstr(line, " vcsw=") != NULL,
                  "rusage wrote '%s'", line);
    free(line);
}

/* A concurrent echo server in a few lines: one poll() over the listener
 * and every connection. Runs in a child process until killed; it uses no
 * ck_assert (a failure there would be reported as this test's). */
static void fake_concurrent_server(int lfd)
{
    struct pollfd p[64] = {{.fd = lfd, .events = POLLIN}};
    int n = 1;
    char buf[4096];

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (;;) {
        if (poll(p, (nfds_t)n, -1) < 0)
            _exit(1);
        if ((p[0].revents & POLLIN) && n < 64)
            p[n++] = (struct pollfd){.fd = accept(lfd, NULL, NULL), .events = POLLIN};
        for (int i = 1; i < n; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t got = recv(p[i].fd, buf, sizeof buf, 0);
            if (got <= 0 || send(p[i].fd, buf, (size_t)got, MSG_NOSIGNAL) != got) {
                close(p[i].fd);
                p[i--] = p[--n];
            }
        }
    }
}

/* check_concurrent's logic, proven against a server known to be
 * concurrent before any stage relies on it. */
void check_concurrent_is_proven(const struct stage *st)
{
    (void)st;
    int port, lfd = bound_socket(SOCK_STREAM, &port);
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0)
        fake_concurrent_server(lfd);
    close(lfd);
    second_client(port, 1);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}
