/*
 * checks_clients.c - the clients against servers that misbehave: nobody
 * there, wrong or short or extra echoes, lost and stray datagrams, a
 * server that accepts and says nothing, one that never answers a SYN, and
 * an output nobody reads.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* What a bad TCP echo peer does to the bytes it got before sending them
 * back, and what the client must then say (and exit 1). */
static const struct bad_echo {
    const char *opt, *val;      /* tcp_client's mode (NULL: stdin lines) */
    const char *in;             /* its stdin */
    size_t len;                 /* bytes the peer reads before answering */
    enum { FLIP, CUT, EXTRA, GLUED } how;  /* GLUED: one extra byte in the same send */
    size_t at;                  /* FLIP: byte changed (xor MASK); CUT: bytes sent back */
    unsigned char mask;
    const char *complaint;
} bad_echoes[] = {
    {"-n", "1000", NULL, 1000, FLIP, 500, 0x01, "byte 500 differs: sent 0xf9, got 0xf8"},
    {"-n", "1000", NULL, 1000, CUT, 400, 0,
     "server closed the connection while we waited for the echo (400 of 1000 bytes back)"},
    {"-n", "1000", NULL, 1000, EXTRA, 0, 0, "server sent more than we sent it"},
    {NULL, NULL, "upper case\n", 11, FLIP, 0, 0x20, "byte 0 differs: sent 0x75, got 0x55"},
    {"-m", "3", NULL, 123, FLIP, 0, 0x01, "message 0: length 16777216, want 0"},
    {"-m", "3", NULL, 123, GLUED, 0, 0, "server sent more than we sent it"},
};

static void tcp_client_vs_bad_peer(const struct stage *st, const struct bad_echo *b)
{
    struct spawn_opts o = {.in = b->in};
    struct fake f = fake_start(SOCK_STREAM, st->dir, st->tcp_client,
                               b->opt ? ARGS("-p", "PORT", b->opt, b->val) : ARGS("-p", "PORT"),
                               &o);
    char buf[1001], *err;
    int eof;
    fake_accept(&f);
    ck_assert_int_eq(recv_until(f.fd, buf, b->len, now_ms() + ms(5000), &eof), b->len);
    if (b->how == FLIP)
        buf[b->at] ^= (char)b->mask;
    buf[b->len] = '+';
    send_bytes(f.fd, buf, b->how == CUT ? b->at : b->how == GLUED ? b->len + 1 : b->len);
    if (b->how == EXTRA || b->how == GLUED) {
        if (b->how == EXTRA)
            send_bytes(f.fd, "+", 1);
        /* Read until the client's half-close, so our close sends no reset
         * that could overtake the extra byte. */
        recv_until(f.fd, buf, sizeof buf, now_ms() + ms(5000), &eof);
    }
    close(f.fd);
    f.fd = -1;
    int code = fake_finish(&f, ms(5000), NULL, &err);
    ck_assert_msg(code == 1, "%s exit %d against a bad echo; stderr: %s", st->tcp_client, code,
                  err);
    assert_contains(err, b->complaint, st->tcp_client);
    free(err);
}

/* A UDP peer for udp_client: it answers datagram number ANSWER_FROM and
 * every one after (0: never answers), with a changed copy if CORRUPT. Runs
 * `udp_client -r 2 ping` against it; returns the exit code, and how many
 * datagrams arrived in *COUNT. */
static int udp_client_vs_peer(const struct stage *st, int answer_from, int corrupt,
                              int *count, char **err)
{
    struct fake f = fake_start(SOCK_DGRAM, st->dir, st->udp_client,
                               ARGS("-p", "PORT", "-t", cfg.pass == VALGRIND ? "2" : "0.3",
                                    "-r", "2", "ping"), NULL);
    char buf[64];
    *count = 0;
    /* Every datagram arrives within one client timeout of the last. */
    while (*count < 3 && wait_for(f.listen_fd, POLLIN, now_ms() + ms(3000)) == 1) {
        struct sockaddr_storage from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(f.listen_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n <= 0)
            break;
        if (++*count < answer_from || answer_from == 0)
            continue;
        if (corrupt)
            buf[0] ^= 0x20;
        sendto(f.listen_fd, buf, (size_t)n, 0, (struct sockaddr *)&from, len);
        if (!corrupt)
            break;
    }
    return fake_finish(&f, ms(5000), NULL, err);
}

void check_clients(const struct stage *st)
{
    char want[128], portstr[8], *err;
    int port = closed_port();
    snprintf(portstr, sizeof portstr, "%d", port);
    snprintf(want, sizeof want, "%s: connect 127.0.0.1:%d: Connection refused\n",
             st->tcp_client, port);
    ck_assert_int_eq(run(st->dir, st->tcp_client, NULL, NULL, &err, ARGS("-p", portstr)), 1);
    ck_assert_str_eq(err, want);
    free(err);
    if (st->props & P_TCP_ECHO)
        for (size_t b = 0; b < sizeof bad_echoes / sizeof bad_echoes[0]; b++)
            tcp_client_vs_bad_peer(st, &bad_echoes[b]);
    if (st->udp_client == NULL)
        return;

    /* Nobody there: the kernel's ICMP "port unreachable" reaches the
     * connected UDP socket as ECONNREFUSED. */
    ck_assert_int_eq(run(st->dir, st->udp_client, NULL, NULL, &err,
                         ARGS("-p", portstr, "-t", "2", "x")), 1);
    assert_contains(err, "Connection refused", "udp_client to a closed port");
    free(err);

    int count;
    ck_assert_int_eq(udp_client_vs_peer(st, 0, 0, &count, &err), 1);
    ck_assert_msg(count == 3, "client sent %d datagrams, want 1 + 2 retries", count);
    assert_contains(err, "after 3 tries: lost", "lost reply");
    free(err);

    ck_assert_int_eq(udp_client_vs_peer(st, 2, 0, &count, &err), 0);
    assert_contains(err, "sending again (retry 1 of 2)", "retry");
    free(err);

    /* Replies that are not what we sent do not count as replies. */
    ck_assert_int_eq(udp_client_vs_peer(st, 1, 1, &count, &err), 1);
    assert_contains(err, "ignoring a 4-byte reply that does not match", "wrong reply");
    assert_contains(err, "after 3 tries: lost", "wrong reply");
    free(err);
}

/* Run a TCP client of ST against a peer that accepts and then says
 * nothing: it must give up after its -T and say what it waited for. */
static void client_vs_silent_server(const struct stage *st)
{
    struct spawn_opts o = {.in = "hello?\n"};
    struct fake f = fake_start(SOCK_STREAM, st->dir, st->tcp_client,
                               ARGS("-p", "PORT", "-T", "0.5"), &o);
    char *err;
    fake_accept(&f);
    int code = fake_finish(&f, ms(5000), NULL, &err);
    ck_assert_msg(!f.p.hung, "%s waited more than %d ms for a silent server", st->tcp_client,
                  ms(5000));
    ck_assert_msg(code == 1, "%s against a silent server: exit %d; stderr: %s", st->tcp_client,
                  code, err);
    assert_contains(err, "no answer within 0.5 s while waiting for ", st->tcp_client);
    free(err);
}

/* A listener whose queue is full drops every further SYN unanswered, as a
 * black-holed address would: connect() would retry for about two minutes.
 * The client must give up after its -T. */
static void client_vs_black_hole(const struct stage *st)
{
    int port, lfd = bound_socket(SOCK_STREAM, &port), queued[4], n = 0;
    char portstr[8], want[96], *err;
    ck_assert(listen(lfd, 0) == 0);
    /* Fill the queue: connections that complete at once, until one does
     * not (its SYN was dropped). */
    for (; n < 4; n++) {
        queued[n] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        connect(queued[n], (struct sockaddr *)&a, sizeof a);
        if (wait_for(queued[n], POLLOUT, now_ms() + 200) == 0)
            break;
    }
    ck_assert_msg(n < 4, "the listen queue never filled");
    snprintf(portstr, sizeof portstr, "%d", port);
    int code = run(st->dir, st->tcp_client, NULL, NULL, &err, ARGS("-p", portstr, "-T", "0.5"));
    snprintf(want, sizeof want, "connect 127.0.0.1:%d: no answer within 0.5 s", port);
    ck_assert_msg(code == 1, "%s against a black hole: exit %d; stderr: %s", st->tcp_client,
                  code, err);
    assert_contains(err, want, st->tcp_client);
    free(err);
    for (int i = 0; i <= n && i < 4; i++)
        close(queued[i]);
    close(lfd);
}

/* A UDP peer that answers every datagram with strays - datagrams that are
 * not the echo - a little faster than the client's timeout. Each try has
 * its own deadline: the strays must not stretch it. */
static void udp_client_vs_strays(const struct stage *st)
{
    long long start = now_ms();
    struct fake f = fake_start(SOCK_DGRAM, st->dir, st->udp_client,
                               ARGS("-p", "PORT", "-t", "0.3", "-r", "2", "ping"), NULL);
    struct sockaddr_storage from;
    socklen_t len = sizeof from;
    char buf[64], *err;
    ck_assert(wait_for(f.listen_fd, POLLIN, now_ms() + ms(3000)) == 1);
    ck_assert(recvfrom(f.listen_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len) > 0);
    /* One stray every 250 ms, until the client is done (at most 15 s). */
    while (wait_for(f.p.pidfd, POLLIN, now_ms() + 250) == 0 && now_ms() - start < 15000)
        sendto(f.listen_fd, "zzzz", 4, 0, (struct sockaddr *)&from, len);
    int code = fake_finish(&f, ms(5000), NULL, &err);
    long long took = now_ms() - start;
    ck_assert_msg(code == 1, "udp_client with only strays: exit %d; stderr: %s", code, err);
    /* 3 tries of 0.3 s: 0.9 s, not 3 times a new 0.3 s after each stray. */
    ck_assert_msg(took < ms(2500), "udp_client -t 0.3 -r 2 took %lld ms among strays:\n%s",
                  took, err);
    assert_contains(err, "after 3 tries: lost", "udp_client");
    free(err);
}

void check_client_timeouts(const struct stage *st)
{
    client_vs_silent_server(st);
    client_vs_black_hole(st);
    if (st->udp_client != NULL)
        udp_client_vs_strays(st);
}

/* Run PROG with its stdout a pipe whose reader has gone: it must exit 1
 * and say so, not die of SIGPIPE. */
static void assert_output_error(const char *dir, const char *prog, const char *in,
                                const char *const *args)
{
    struct spawn_opts o = {.in = in, .out = OUT_NO_READER};
    struct proc p = spawn(dir, prog, args, &o);
    int code = finish(&p, ms(5000));
    char *err = slurp(p.err);
    release(&p);
    ck_assert_msg(code == 1, "%s with nobody reading its output: %s %d; stderr: %s", prog,
                  code < 0 ? "killed, status" : "exit", code < 0 ? p.status : code, err);
    assert_contains(err, "write to stdout: Broken pipe", prog);
    free(err);
}

void check_client_output(const struct stage *st)
{
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"), NULL);
    assert_output_error(st->dir, st->tcp_client, "a line\n", ARGS("-p", s.portstr));
    stop_server_quietly(&s);
    if (st->udp_server == NULL)
        return;
    s = start_server(st->dir, st->udp_server, ARGS("-q"), NULL);
    assert_output_error(st->dir, st->udp_client, NULL, ARGS("-p", s.portstr, "x"));
    stop_server_quietly(&s);
}
