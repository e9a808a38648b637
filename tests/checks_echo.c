/*
 * checks_echo.c - the TCP echo servers: every byte back in order, half
 * close, resets, the idle timeout, framing, concurrency and load.
 */
#include "harness.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void check_tcp_echo(const struct stage *st)
{
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"), NULL);
    static const size_t sizes[] = {1, 64 * KiB + 1, 4 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if ((cfg.pass == SHORT_IO || cfg.pass == VALGRIND) && sizes[i] > MiB)
            continue;
        int fd = tcp_connect(s.port);
        echo_check(fd, sizes[i], (unsigned)i, 0);
        close(fd);
    }
    /* The course's own client: checked data, then interactive lines. */
    char want[128];
    snprintf(want, sizeof want, "%s: 300001 bytes echoed, all correct\n", st->tcp_client);
    assert_run_prints(st->dir, st->tcp_client, NULL, want,
                      ARGS("-p", s.portstr, "-n", "300001"));
    assert_run_prints(st->dir, st->tcp_client, "first line\n\nthird, no newline",
                      "first line\n\nthird, no newline", ARGS("-p", s.portstr));
    stop_server_quietly(&s);
}

void check_half_close(const struct stage *st)
{
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"), NULL);
    int fd = tcp_connect(s.port);
    echo_check(fd, 100 * KiB, 3, 1);
    close(fd);
    fd = tcp_connect(s.port);
    echo_check(fd, 0, 4, 1);            /* shutdown with nothing sent */
    close(fd);
    stop_server_quietly(&s);
}

/* A client that vanishes with a reset while the server still has data for
 * it must cost only its own connection. Rounds: reset at once; reset once
 * the echo has started; and (three times) half-close, then reset while the
 * server is still sending - its next send() fails with EPIPE, which kills
 * a server that lets SIGPIPE through. After each, a new client is served. */
void check_reset(const struct stage *st)
{
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"), NULL);
    static char junk[100 * KiB];
    memset(junk, 'r', sizeof junk);
    for (int round = 0; round < 5; round++) {
        int fd = tcp_connect(s.port);
        send_bytes(fd, junk, round < 2 ? 32 * KiB : sizeof junk);
        if (round >= 2)
            shutdown(fd, SHUT_WR);
        if (round >= 1)
            ck_assert(wait_for(fd, POLLIN, now_ms() + ms(5000)) == 1);
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);                  /* linger 0: close sends RST */
        fd = tcp_connect(s.port);
        echo_check(fd, 64 * KiB + 1, 5, 0);
        close(fd);
    }
    stop_server_quietly(&s);
}

void check_idle_timeout(const struct stage *st)
{
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-t", "0.5"), NULL);
    int idle = tcp_connect(s.port), eof;
    long long start = now_ms();
    echo_check(idle, 1, 6, 0);          /* it is being served, then goes quiet */
    int next = tcp_connect(s.port);
    send_bytes(next, "x", 1);
    char c;
    ck_assert_msg(recv_until(idle, &c, 1, now_ms() + ms(5000), &eof) == 0 && eof,
                  "silent client was not closed");
    long long waited = now_ms() - start;
    ck_assert_msg(waited >= 400, "closed after %lld ms, before the 0.5 s timeout", waited);
    ck_assert_msg(recv_until(next, &c, 1, now_ms() + ms(5000), &eof) == 1 && c == 'x',
                  "the next client was not served after the idle one was closed");
    close(idle);
    close(next);
    char *err = stop_server(&s);
    assert_contains(err, "idle timeout", "server log");
    free(err);
}

/* Framing: the client's length-prefixed messages, sent glued together and
 * cut apart, come back and are put together again, every one checked. */
void check_framing(const struct stage *st)
{
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"), NULL);
    char *out, *err;
    int code = run(st->dir, st->tcp_client, NULL, &out, &err,
                   ARGS("-p", s.portstr, "-m", "2000"));
    char want[128];
    snprintf(want, sizeof want, "%s: 2000 messages echoed, all correct; ", st->tcp_client);
    ck_assert_msg(code == 0, "%s -m 2000: exit %d; stderr: %s", st->tcp_client, code, err);
    assert_prefix(out, want);
    free(out);
    free(err);
    stop_server_quietly(&s);
}

/* Concurrency: does a second client get served while a first one stays
 * connected? Stages that claim it must; the iterative ones must not, and
 * the queued client must be served (not lost) once the first leaves. */
void second_client(int port, int expect_served)
{
    int first = tcp_connect(port), eof;
    echo_check(first, 1, 7, 0);
    int second = tcp_connect(port);
    send_bytes(second, "b", 1);
    char c;
    /* No readiness signal exists for "nothing happens": 300 ms bounds the
     * wait for an echo that must not come. */
    size_t n = recv_until(second, &c, 1, now_ms() + (expect_served ? ms(5000) : 300), &eof);
    if (expect_served) {
        ck_assert_msg(n == 1 && c == 'b', "second client not served while first connected");
        echo_check(first, 1000, 8, 0);
    } else {
        ck_assert_msg(n == 0 && !eof, "an iterative server served a second client");
        close(first);
        first = -1;
        ck_assert_msg(recv_until(second, &c, 1, now_ms() + ms(5000), &eof) == 1 && c == 'b',
                      "queued client lost after the first one left");
    }
    if (first >= 0)
        close(first);
    close(second);
}

static void second_client_of(const struct stage *st, int expect_served)
{
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"), NULL);
    second_client(s.port, expect_served);
    stop_server_quietly(&s);
}

void check_concurrent(const struct stage *st)
{
    second_client_of(st, 1);
}

void limit_concurrent(const struct stage *st)
{
    second_client_of(st, 0);
}

double result_number(const char *out, const char *key)
{
    const char *line = strstr(out, "RESULT "), *p;
    char pat[32];
    snprintf(pat, sizeof pat, " %s=", key);
    ck_assert_msg(line != NULL && (p = strstr(line, pat)) != NULL, "no %s in:\n%s", key, out);
    return strtod(p + strlen(pat), NULL);
}

long long result_field(const char *out, const char *key)
{
    return (long long)result_number(out, key);
}

/* The load generator against the stage's server: every message of every
 * connection comes back intact, and fairness is what the stage claims. */
void check_load(const struct stage *st)
{
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"), NULL);
    char *out, nstr[8];
    /* Under the short-I/O shim, every split send can wait out Nagle and a
     * delayed ACK (~40 ms): fewer messages keep the check quick. */
    int per_conn = cfg.pass == SHORT_IO ? 20 : 200;
    snprintf(nstr, sizeof nstr, "%d", per_conn);
    ck_assert_int_eq(run("tests", "loadgen", NULL, &out, NULL,
                         ARGS("-p", s.portstr, "-c", "4", "-n", nstr, "-s", "1000", "-d", "30")),
                     0);
    ck_assert_int_eq(result_field(out, "msgs"), 4 * per_conn);
    ck_assert_int_eq(result_field(out, "errors"), 0);
    /* A quota run ends when every connection has its messages back: even
     * an iterative server, serving them one after the other, gets there. */
    ck_assert_int_eq(result_field(out, "unfinished"), 0);
    free(out);
    /* Pipelined: 16 messages in flight on each connection, every byte
     * back in order. */
    ck_assert_int_eq(run("tests", "loadgen", NULL, &out, NULL,
                         ARGS("-p", s.portstr, "-c", "4", "-n", nstr, "-s", "1000", "-D", "16",
                              "-d", "30")),
                     0);
    ck_assert_int_eq(result_field(out, "msgs"), 4 * per_conn);
    ck_assert_int_eq(result_field(out, "errors"), 0);
    free(out);
    ck_assert_int_eq(run("tests", "loadgen", NULL, &out, NULL,
                         ARGS("-p", s.portstr, "-c", "4", "-d", "0.5")), 0);
    long long starved = result_field(out, "starved");
    if (st->props & P_CONCURRENT)
        ck_assert_msg(starved == 0, "%lld of 4 connections starved", starved);
    else
        ck_assert_msg(starved == 3, "iterative server: %lld of 4 starved, want 3", starved);
    free(out);
    /* Short connections (a new one per message): even an iterative server
     * serves everybody in turn, since nobody holds it for long. */
    ck_assert_int_eq(run("tests", "loadgen", NULL, &out, NULL,
                         ARGS("-p", s.portstr, "-c", "4", "-n", "25", "-C", "-d", "30")), 0);
    ck_assert_int_eq(result_field(out, "msgs"), 100);
    ck_assert_int_eq(result_field(out, "short"), 1);
    ck_assert_int_eq(result_field(out, "min_per_conn"), 25);
    free(out);
    stop_server_quietly(&s);
}
