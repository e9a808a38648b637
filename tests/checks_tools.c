/*
 * checks_tools.c - the harness's own tools get tested too: a load
 * generator that missed a wrong byte would make every benchmark
 * meaningless, and a concurrency check that passed an iterative server
 * (or failed a concurrent one) would make the report card lie.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
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
    ck_assert_int_eq(result_field(out, "unfinished"), 1);
    free(out);
    free(err);
    ck_assert_int_eq(run("tests", "loadgen", NULL, NULL, &err, ARGS("-c", "0")), 2);
    free(err);
    ck_assert_int_eq(run("tests", "loadgen", NULL, NULL, &err, ARGS("-C", "-D", "2")), 2);
    free(err);
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
