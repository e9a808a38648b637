/*
 * checks_tools.c - the harness's own tools get tested too: a load
 * generator that missed a wrong byte would make every benchmark
 * meaningless, and a concurrency check that passed an iterative server
 * (or failed a concurrent one) would make the report card lie.
 */
#include "harness.h"

#include <errno.h>
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
    ck_assert_int_eq(run("tests", "loadgen", NULL, NULL, &err, ARGS("-c", "0")), 2);
    free(err);
    ck_assert_int_eq(run("tests", "loadgen", NULL, NULL, &err, ARGS("-C", "-D", "2")), 2);
    free(err);
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
