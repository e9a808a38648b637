/*
 * checks_redial.c - the client's answers to "is the server slow, or
 * gone?": heartbeats on a quiet connection (-k), whose echoes it takes
 * out; a server that stops answering found dead; and reconnecting (-R)
 * across a restart of the server, going on exactly where it stopped, with
 * pauses that grow, and an end to them.
 */
#include "harness.h"

#include <ctype.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* -n for the restart: enough that the client is far from done when the
 * server is killed (a fraction of a second after the first MiB came
 * back), little enough to finish in a second or two. */
#define RESTART_BYTES 200000000ULL

/* A server's log, read from its stderr pipe as it comes, a line at a time. */
struct log {
    int fd;
    size_t len;
    char buf[4096];
    char line[1024];
};

/* The next whole line of the log that contains NEEDLE (the lines before
 * it are skipped), waiting for it until DEADLINE. */
static const char *next_line_with(struct log *lg, const char *needle, long long deadline)
{
    for (;;) {
        char *nl;
        while ((nl = memchr(lg->buf, '\n', lg->len)) != NULL) {
            size_t n = (size_t)(nl + 1 - lg->buf);
            snprintf(lg->line, sizeof lg->line, "%.*s", (int)n, lg->buf);
            memmove(lg->buf, nl + 1, lg->len - n);
            lg->len -= n;
            if (strstr(lg->line, needle) != NULL)
                return lg->line;
        }
        ck_assert_msg(lg->len < sizeof lg->buf && wait_for(lg->fd, POLLIN, deadline) == 1,
                      "no line with '%s' in the server's log in time", needle);
        ssize_t n = read(lg->fd, lg->buf + lg->len, sizeof lg->buf - lg->len);
        ck_assert_msg(n > 0, "the server's log ended before a line with '%s'", needle);
        lg->len += (size_t)n;
    }
}

/* The number just before the first NEEDLE in TEXT ("123 bytes echoed"). */
static unsigned long long number_before(const char *text, const char *needle)
{
    const char *at = strstr(text, needle);
    ck_assert_msg(at != NULL, "no '%s' in:\n%.2000s", needle, text);
    while (at > text && isdigit((unsigned char)at[-1]))
        at--;
    return strtoull(at, NULL, 10);
}

/* Read from the pipe FD until LEN bytes have come, or DEADLINE. */
static size_t read_until(int fd, char *buf, size_t len, long long deadline)
{
    size_t got = 0;
    while (got < len && wait_for(fd, POLLIN, deadline) == 1) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

/* A quiet connection gets heartbeats. A fake echo peer: the client sends
 * a line and prints its echo; then, with stdin open and silent, a probe
 * comes - not before -k of quiet - and after its echo, another -k later.
 * At the end of stdin the client half-closes and exits 0, having printed
 * the line and nothing else: the probes' echoes were taken out. */
static void heartbeats_flow(const struct stage *st)
{
    struct spawn_opts o = {.in_open = 1};
    struct fake f = fake_start(SOCK_STREAM, st->dir, st->tcp_client,
                               ARGS("-p", "PORT", "-k", "0.5"), &o);
    char buf[64], *out, *err;
    int eof;

    fake_accept(&f);
    ck_assert(write(f.p.in, "line\n", 5) == 5);
    ck_assert_int_eq(recv_until(f.fd, buf, 5, now_ms() + ms(3000), &eof), 5);
    send_bytes(f.fd, buf, 5);
    for (int beat = 1; beat <= 2; beat++) {
        long long quiet = now_ms();
        ck_assert_msg(wait_for(f.fd, POLLIN, quiet + ms(3000)) == 1,
                      "no heartbeat %d within %d ms of quiet with -k 0.5", beat, ms(3000));
        long long waited = now_ms() - quiet;
        ssize_t n = recv(f.fd, buf, sizeof buf, 0);
        ck_assert_msg(n > 0, "heartbeat %d: the client closed instead", beat);
        ck_assert_msg(waited >= 400, "heartbeat %d after %lld ms of quiet, before -k 0.5", beat,
                      waited);
        send_bytes(f.fd, buf, (size_t)n);
    }
    close(f.p.in);
    f.p.in = -1;
    ck_assert_msg(recv_until(f.fd, buf, sizeof buf, now_ms() + ms(3000), &eof) == 0 && eof,
                  "no half-close after the end of stdin");
    close(f.fd);
    f.fd = -1;
    int code = fake_finish(&f, ms(5000), &out, &err);
    ck_assert_msg(code == 0, "client -k 0.5 with heartbeats answered: exit %d; stderr: %s", code,
                  err);
    ck_assert_msg(strcmp(out, "line\n") == 0, "client -k 0.5 printed '%s', want 'line\\n' only",
                  out);
    free(out);
    free(err);
}

/* A server that stops answering - SIGSTOP: its kernel still ACKs, as a
 * hung program's does, so TCP sees nothing wrong - is found dead by the
 * heartbeat: -k of quiet, then -k with no echo. The client says so and
 * exits 1, about 1 s after the last echo, long before its -T of 10 s. */
static void dead_detected(const struct stage *st)
{
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"), NULL);
    struct spawn_opts o = {.in_open = 1, .out = OUT_PIPE};
    struct proc c = spawn(st->dir, st->tcp_client, ARGS("-p", s.portstr, "-k", "0.5"), &o);
    char buf[4];

    ck_assert(write(c.in, "hi\n", 3) == 3);
    ck_assert_msg(read_until(c.out, buf, 3, now_ms() + ms(3000)) == 3 && !memcmp(buf, "hi\n", 3),
                  "the client did not print the echo of its line");
    kill(s.p.pid, SIGSTOP);
    long long stopped = now_ms();
    int code = finish(&c, ms(5000));
    long long took = now_ms() - stopped;
    char *err = slurp(c.err);
    release(&c);
    kill(s.p.pid, SIGCONT);
    ck_assert_msg(!c.hung, "client -k 0.5 still running %d ms after the server stopped",
                  ms(5000));
    ck_assert_msg(code == 1, "client -k 0.5 against a stopped server: exit %d; stderr: %s", code,
                  err);
    ck_assert_msg(took < ms(2000), "a dead connection found after %lld ms with -k 0.5", took);
    assert_contains(err, "no answer to a heartbeat within 0.5 s", "client -k 0.5");
    free(err);
    stop_server_quietly(&s);
}

/* SIGUSR1 to the server: how many bytes it has echoed, from its counters. */
static unsigned long long echoed_so_far(struct log *lg, pid_t pid, long long deadline)
{
    kill(pid, SIGUSR1);
    return number_before(next_line_with(lg, " bytes echoed;", deadline), " bytes echoed;");
}

/* The server is killed in the middle of a client -R -n, once a MiB has
 * come back, and started again on the same port. The client reconnects
 * (saying so, once), goes on from the first byte not yet echoed, and ends
 * as ever: all bytes echoed, exit 0. The new server echoed exactly the
 * rest - not the whole again. */
static void redial_across_restart(const struct stage *st)
{
    struct spawn_opts logged = {.err_unread = ERR_PIPE};
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"), &logged);
    struct log lg = {.fd = s.p.err};
    char total[24], want[96], *out, *err;
    snprintf(total, sizeof total, "%llu", RESTART_BYTES);
    struct proc c = spawn(st->dir, st->tcp_client, ARGS("-p", s.portstr, "-R", "-n", total), NULL);

    long long deadline = now_ms() + ms(5000);
    for (int k = 0; echoed_so_far(&lg, s.p.pid, deadline) < MiB; k++)
        ck_assert_msg(k < 10000, "the client's first MiB never came back");
    kill(s.p.pid, SIGKILL);
    finish(&s.p, ms(1000));
    release(&s.p);
    struct server again = start_server(st->dir, st->tcp_server, ARGS("-q", "-p", s.portstr), NULL);
    int code = finish(&c, ms(20000));
    out = slurp(c.out);
    err = slurp(c.err);
    release(&c);
    char *log = stop_server(&again);

    snprintf(want, sizeof want, "%s: %s bytes echoed, all correct\n", st->tcp_client, total);
    ck_assert_msg(code == 0 && strcmp(out, want) == 0, "client -R across a restart: exit %d, "
                  "stdout '%s'; stderr:\n%s", code, out, err);
    ck_assert_msg(count_of(err, "reconnected") == 1, "want one 'reconnected' line:\n%s", err);
    const char *resume = strstr(err, "going on from byte ");
    ck_assert_msg(resume != NULL, "no 'going on from byte' in:\n%s", err);
    unsigned long long from = strtoull(resume + strlen("going on from byte "), NULL, 10);
    ck_assert_msg(from >= MiB && from < RESTART_BYTES, "went on from byte %llu:\n%s", from, err);
    unsigned long long rest = number_before(log, " bytes echoed;");
    ck_assert_msg(rest == RESTART_BYTES - from, "the restarted server echoed %llu bytes; the "
                  "client went on from byte %llu of %llu", rest, from, RESTART_BYTES);
    free(out);
    free(err);
    free(log);
}

/* With no server coming back, -R gives up once -T has passed since the
 * loss, and says so; the pauses between tries double (from 0.1 s, less
 * jitter of up to half), so 1 s holds a few tries - not one, and not the
 * ten of a fixed 0.1 s or the thousands of none. */
static void redial_gives_up(const struct stage *st)
{
    char port[8], *err;
    snprintf(port, sizeof port, "%d", closed_port());
    long long start = now_ms();
    int code = run(st->dir, st->tcp_client, NULL, NULL, &err,
                   ARGS("-p", port, "-R", "-T", "1", "-n", "10"));
    long long took = now_ms() - start;
    ck_assert_msg(code == 1, "client -R -T 1 with no server: exit %d; stderr: %s", code, err);
    ck_assert_msg(took >= 900 && took < ms(2500), "client -R -T 1 gave up after %lld ms", took);
    assert_contains(err, "giving up", "client -R -T 1");
    unsigned long long tries = number_before(err, " tries;");
    ck_assert_msg(tries >= 2 && tries <= 8, "%llu tries in 1 s; want 2 to 8 (doubling pauses "
                  "from 0.1 s):\n%s", tries, err);
    free(err);
}

void check_redial(const struct stage *st)
{
    heartbeats_flow(st);
    dead_detected(st);
    redial_across_restart(st);
    redial_gives_up(st);
}
