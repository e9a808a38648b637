/*
 * checks_httpd.c - server -H: the framework's second handler, a minimal
 * HTTP/1.1 server for load generators such as wrk. It must answer every
 * request on a kept-alive connection, in order, even several arriving in
 * one piece (pipelining) or one arriving in pieces; close when told to
 * ("Connection: close" - also as one token of several - or an HTTP/1.0
 * request); and turn away what it does not serve - a request with a body
 * (400; two Content-Lengths, "0" and "5", announce one, and so does
 * "Content-Length : 5"), a malformed request line (400), a head longer than it reads (431) - with the answer,
 * then a close that is a FIN, not a reset, even with the client's bytes
 * unread. And -t bounds a whole request head: a client that trickles a
 * byte at a time (slowloris) is cut off, not kept for ever.
 */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define GET "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: harness\r\n\r\n"
#define OK_LINE "HTTP/1.1 200 OK\r\n"
#define BODY "\r\n\r\nHello, world\n"

/* Read from FD until it has sent COUNT whole "200 OK" answers (each ending
 * in the fixed body), or closed, or 5 s passed. Returns how many bytes,
 * in BUF (NUL-terminated); *EOF says if it closed. */
static size_t read_answers(int fd, char *buf, size_t size, int count, int *eof)
{
    size_t got = 0;
    long long deadline = now_ms() + ms(5000);
    *eof = 0;
    while (count_of(buf, BODY) < count && !*eof && got < size - 1) {
        size_t n = recv_until(fd, buf + got, 1, deadline, eof);
        if (n == 0)
            break;
        got += n;
        buf[got] = '\0';
    }
    return got;
}

/* One request on a new connection; the answer must start with STATUS and
 * the server must close after it, with a FIN: after the answer recv()
 * says 0, not ECONNRESET (a reset may destroy an answer not yet read). */
static void assert_answer_then_close(int port, const char *request, size_t len,
                                     const char *status, const char *what)
{
    static char buf[4096];
    size_t n = 0;
    ssize_t r = -1;
    int fd = tcp_connect(port);
    send_bytes(fd, request, len);
    long long deadline = now_ms() + ms(5000);
    while (n < sizeof buf - 1 && wait_for(fd, POLLIN, deadline) == 1 &&
           (r = recv(fd, buf + n, sizeof buf - 1 - n, 0)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    ck_assert_msg(strncmp(buf, status, strlen(status)) == 0, "%s: the answer starts '%.60s', "
                  "want '%s'", what, buf, status);
    ck_assert_msg(r == 0, "%s: after the answer, %s", what,
                  r < 0 ? strerror(errno) : "the connection stays open");
    close(fd);
}

/* Slowloris: with -t 1, a client that sends its head a byte every 300 ms
 * - never idle for a second - must still be cut off once the head has
 * taken a second, not served a byte at a time for ever. We give it 4 s. */
static void check_slow_head(const struct stage *st)
{
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q", "-H", "-t", "1"), NULL);
    int fd = tcp_connect(s.port), eof = 0;
    char c;
    long long start = now_ms();
    for (size_t i = 0; i < strlen(GET) && !eof && now_ms() < start + ms(4000); i++) {
        if (send(fd, GET + i, 1, MSG_NOSIGNAL) != 1)
            break;
        recv_until(fd, &c, 1, now_ms() + 300, &eof);
    }
    long long took = now_ms() - start;
    ck_assert_msg(eof, "a head trickled a byte every 300 ms under -t 1: still open after %lld ms",
                  took);
    ck_assert_msg(took >= 900, "a trickled head was cut off after %lld ms, before -t 1", took);
    close(fd);
    stop_server_quietly(&s);
}

void check_httpd(const struct stage *st)
{
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q", "-H"), NULL);
    static char buf[16384];
    int fd = tcp_connect(s.port), eof;

    /* Three requests in one send, the third cut in two: three answers. */
    char three[3 * sizeof GET];
    snprintf(three, sizeof three, "%s%s%s", GET, GET, GET);
    size_t cut = 2 * strlen(GET) + 10;
    send_bytes(fd, three, cut);
    ck_assert(wait_for(fd, POLLIN, now_ms() + ms(5000)) == 1);
    send_bytes(fd, three + cut, strlen(three) - cut);
    size_t n = read_answers(fd, buf, sizeof buf, 3, &eof);
    ck_assert_msg(count_of(buf, OK_LINE) == 3 && count_of(buf, BODY) == 3 && !eof,
                  "3 pipelined requests: got %zu bytes%s:\n%s", n, eof ? " and a close" : "", buf);
    ck_assert_msg(strncmp(buf, OK_LINE, strlen(OK_LINE)) == 0 &&
                      strstr(buf, "\r\nContent-Length: 13\r\n") != NULL,
                  "the answer does not read '200 OK' with 'Content-Length: 13':\n%s", buf);
    ck_assert_msg(n == 3 * (size_t)(strstr(buf, BODY) + strlen(BODY) - buf),
                  "3 answers of unequal length, or more than 3:\n%s", buf);

    /* Kept alive: one more, then "Connection: close" ends it. */
    memset(buf, 0, sizeof buf);
    send_bytes(fd, GET, strlen(GET));
    read_answers(fd, buf, sizeof buf, 1, &eof);
    ck_assert_msg(count_of(buf, BODY) == 1 && !eof, "a 4th request on the same connection: "
                  "%s%s", buf, eof ? " (closed)" : "");
    static const char bye[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    memset(buf, 0, sizeof buf);
    send_bytes(fd, bye, strlen(bye));
    read_answers(fd, buf, sizeof buf, 2, &eof);
    ck_assert_msg(count_of(buf, BODY) == 1 && eof, "'Connection: close': want one answer and "
                  "the close, got%s:\n%s", eof ? " a close after" : " no close after", buf);
    close(fd);

    static const char old[] = "GET / HTTP/1.0\r\n\r\n";
    assert_answer_then_close(s.port, old, strlen(old), OK_LINE, "an HTTP/1.0 request");
    static const char body[] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    assert_answer_then_close(s.port, body, strlen(body), "HTTP/1.1 400 ", "a request with a body");
    static const char two[] = "POST / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n"
                              "\r\nhello";
    assert_answer_then_close(s.port, two, strlen(two), "HTTP/1.1 400 ",
                             "Content-Length 0 and 5 (request smuggling)");
    static const char owt[] = "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 0\r\n"
                              "\r\nhello";
    assert_answer_then_close(s.port, owt, strlen(owt), "HTTP/1.1 400 ",
                             "Content-Length 5 and 0 (request smuggling)");
    static const char spaced[] = "POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello";
    assert_answer_then_close(s.port, spaced, strlen(spaced), "HTTP/1.1 400 ",
                             "'Content-Length : 5' (a space before the colon)");
    static const char junk[] = "hello there\r\n\r\n";
    assert_answer_then_close(s.port, junk, strlen(junk), "HTTP/1.1 400 ", "a malformed request line");
    static const char tokens[] = "GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n";
    assert_answer_then_close(s.port, tokens, strlen(tokens), OK_LINE,
                             "'Connection: keep-alive, close'");
    static char huge[12000];
    memset(huge, 'h', sizeof huge);
    memcpy(huge, "GET / HTTP/1.1\r\nX-Long: ", 24);
    assert_answer_then_close(s.port, huge, sizeof huge, "HTTP/1.1 431 ", "a 12,000-byte head");

    /* After all that, the server still answers. */
    fd = tcp_connect(s.port);
    send_bytes(fd, GET, strlen(GET));
    memset(buf, 0, sizeof buf);
    read_answers(fd, buf, sizeof buf, 1, &eof);
    ck_assert_msg(count_of(buf, BODY) == 1, "a new client after the bad requests: %s", buf);
    close(fd);
    stop_server_quietly(&s);
    check_slow_head(st);
}
