/*
 * checks_greet.c - chapter 01's greeting server and client, and resolve.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void check_greeting(const struct stage *st)
{
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"), NULL);
    for (int nth = 1; nth <= 2; nth++) {
        int fd = tcp_connect(s.port), eof;
        struct sockaddr_in me;
        socklen_t len = sizeof me;
        char buf[256], want[256];
        ck_assert(getsockname(fd, (struct sockaddr *)&me, &len) == 0);
        size_t n = recv_until(fd, buf, sizeof buf - 1, now_ms() + ms(5000), &eof);
        buf[n] = '\0';
        snprintf(want, sizeof want, "hello 127.0.0.1:%d, you are client #%d\n",
                 ntohs(me.sin_port), nth);
        ck_assert_str_eq(buf, want);
        ck_assert_msg(eof, "server did not close after the greeting");
        close(fd);
    }
    char *out;
    ck_assert_int_eq(run(st->dir, st->tcp_client, NULL, &out, NULL, ARGS("-p", s.portstr)), 0);
    assert_prefix(out, "hello 127.0.0.1:");
    assert_contains(out, ", you are client #3\n", "client output");
    free(out);
    stop_server_quietly(&s);
}

void check_resolve(const struct stage *st)
{
    char *out, *err;

    ck_assert_int_eq(run(st->dir, "resolve", NULL, &out, &err, ARGS("localhost")), 0);
    ck_assert_msg(strstr(out, "  IPv4 127.0.0.1\n") || strstr(out, "  IPv6 ::1\n"),
                  "resolve localhost printed:\n%s", out);
    free(out);
    free(err);

    ck_assert_int_eq(run(st->dir, "resolve", NULL, &out, &err,
                         ARGS("localhost", "nosuchhost.invalid")), 1);
    assert_prefix(out, "localhost\n");
    assert_prefix(err, "resolve: nosuchhost.invalid: ");
    free(out);
    free(err);

    /* No argument: this host's name, then its addresses - or, where the
     * name does not resolve (a minimal Debian's /etc/hosts knows only
     * localhost), a line that says so, and still exit 0: the answer is
     * about this host, not a failure. Which of the two is right here, we
     * ask getaddrinfo() ourselves. */
    char host[256], want[700];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    ck_assert(gethostname(host, sizeof host) == 0);
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc == 0) {
        freeaddrinfo(res);
        snprintf(want, sizeof want, "this host is called %s\n%s", host, host);
    } else {
        snprintf(want, sizeof want, "this host is called %s\n%s has no addresses (%s)\n", host,
                 host, gai_strerror(rc));
    }
    int code = run(st->dir, "resolve", NULL, &out, &err, NO_ARGS);
    ck_assert_msg(strncmp(out, want, strlen(want)) == 0 && code == 0,
                  "resolve (exit %d) printed:\n%s\nwant it to start:\n%s\nstderr: %s", code,
                  out, want, err);
    free(out);
    free(err);

    ck_assert_int_eq(run(st->dir, "resolve", NULL, NULL, NULL, ARGS("-h")), 2);
}
