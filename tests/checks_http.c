/*
 * checks_http.c - chapter 01's http_get against a fake HTTP server that
 * plays each row of http_cases.h, then URLs, output and connection errors.
 */
#include "harness.h"
#include "http_cases.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Read the request up to its empty line; check it asks for TARGET with a
 * Host header naming our port. */
static void check_request(struct fake *f, const char *target)
{
    char req[4096] = "", want[256];
    size_t n = 0;
    int eof;
    long long deadline = now_ms() + ms(5000);
    while (!strstr(req, "\r\n\r\n")) {
        size_t got = recv_until(f->fd, req + n, 1, deadline, &eof);
        ck_assert_msg(got == 1 && n < sizeof req - 2, "incomplete request: %.*s", (int)n, req);
        req[++n] = '\0';
    }
    snprintf(want, sizeof want, "GET %s HTTP/1.1\r\n", target);
    ck_assert_msg(strncmp(req, want, strlen(want)) == 0, "request: %s", req);
    snprintf(want, sizeof want, "\r\nHost: 127.0.0.1:%d\r\n", f->port);
    assert_contains(req, want, "request");
}

/* Send PIECE in small separate bits, so http_get has to put the response
 * back together from many recv() calls. Returns 0 if http_get hung up. */
static int dribble(int fd, const char *piece)
{
    for (size_t off = 0, len = strlen(piece); off < len; off += 7) {
        size_t bit = len - off < 7 ? len - off : 7;
        if (send(fd, piece + off, bit, MSG_NOSIGNAL) != (ssize_t)bit)
            return 0;
        nanosleep(&(struct timespec){0, 200000}, NULL);
    }
    return 1;
}

/* Send the response of case C: each piece dribbled, a repeated piece
 * whole, as many times as C says or until http_get hangs up. */
static void respond(int fd, const struct http_case *c)
{
    int one = 1, alive = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (int i = 0; c->resp[i] != NULL && alive; i++) {
        unsigned times = i == 1 && c->repeat > 0 ? c->repeat : 1;
        for (unsigned t = 0; t < times && alive; t++)
            alive = times > 1 ? send(fd, c->resp[i], strlen(c->resp[i]), MSG_NOSIGNAL) > 0
                              : dribble(fd, c->resp[i]);
    }
}

/* Play case C against http_get (started with options O); return its exit
 * code, with its output in *OUT and *ERR. */
static int http_exchange(const struct stage *st, const struct http_case *c,
                         const struct spawn_opts *o, char **out, char **err)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:PORT%s", c->path);
    struct fake f = fake_start(SOCK_STREAM, st->dir, "http_get",
                               c->timeout ? ARGS("-T", c->timeout, url) : ARGS(url), o);
    fake_accept(&f);
    check_request(&f, c->target);
    respond(f.fd, c);
    if (c->close_after) {
        close(f.fd);
        f.fd = -1;
    }
    /* Otherwise the connection stays open: http_get must know from the
     * framing alone that the response is complete. */
    int code = fake_finish(&f, ms(5000), out, err);
    ck_assert_msg(!f.p.hung, "http_get %s (%s) did not finish within %d ms: does it stop "
                             "where the framing says the response ends?", c->path, c->what,
                  ms(5000));
    return code;
}

static void check_cases(const struct stage *st)
{
    char *out, *err;
    for (size_t i = 0; i < sizeof http_cases / sizeof http_cases[0]; i++) {
        const struct http_case *c = &http_cases[i];
        int code = http_exchange(st, c, NULL, &out, &err);
        ck_assert_msg(code == c->want_code, "%s: exit %d, want %d; stderr: %s", c->what, code,
                      c->want_code, err);
        if (c->want_out != NULL)
            ck_assert_msg(strcmp(out, c->want_out) == 0, "%s: printed\n%.2000s", c->what, out);
        if (c->want_err != NULL)
            assert_contains(err, c->want_err, c->what);
        free(out);
        free(err);
    }
}

/* Output that cannot be written is an error too: on a full disk, and when
 * the reader of a pipe has gone (`http_get URL | head -c 10`), which must
 * not kill http_get with SIGPIPE. */
static void check_output_errors(const struct stage *st)
{
    static const struct spawn_opts full = {.out = OUT_PATH, .out_path = "/dev/full"},
                                   gone = {.out = OUT_NO_READER};
    const struct spawn_opts *opts[] = {&full, &gone};
    for (int k = 0; k < 2; k++) {
        char *out, *err;
        int code = http_exchange(st, &http_cases[0], opts[k], &out, &err);
        ck_assert_msg(code == 1, "http_get with stdout %s: exit %d, want 1; stderr: %s",
                      k == 0 ? "/dev/full" : "a pipe nobody reads", code, err);
        assert_contains(err, "http_get: write to stdout: ", "http_get");
        free(out);
        free(err);
    }
}

void check_http_get(const struct stage *st)
{
    char *err;
    check_cases(st);
    check_output_errors(st);

    static const char *const bad_urls[] = {"https://127.0.0.1/", "ftp://x/", "http://",
                                           "http://host:99999/", "http://host:80x/",
                                           "http://host:/", "http://host:+80/", "nothing",
                                           "http://h/a b", "http://[::1]\r\nX-Evil: 1\r\n/",
                                           "http://[::1]junk/", "http://[::1/x]",
                                           "http://[a#b]/", "http://[::1",
                                           "http://user@127.0.0.1/", "http://a[b/"};
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        ck_assert_msg(run(st->dir, "http_get", NULL, NULL, &err, ARGS(bad_urls[i])) == 2,
                      "http_get %s: want exit 2", bad_urls[i]);
        free(err);
    }
    /* A port with leading zeros is a port, as everywhere else. */
    char url[64], want[96];
    int port = closed_port();
    snprintf(url, sizeof url, "http://127.0.0.1:000%d/", port);
    snprintf(want, sizeof want, "http_get: connect 127.0.0.1:%d: Connection refused\n", port);
    ck_assert_int_eq(run(st->dir, "http_get", NULL, NULL, &err, ARGS(url)), 1);
    ck_assert_str_eq(err, want);
    free(err);
}
