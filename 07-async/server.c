/*
 * server.c - echo over TCP and UDP on one port, every client served by
 * one thread: tasks on an event loop.
 *
 * Chapter 06 served every client from one loop, and paid for it: what a
 * thread kept on its stack - where it was in the conversation, what it
 * had read and not yet sent - became a struct conn, and the conversation
 * itself was cut into callbacks (on_readable, on_writable) that pick up
 * from the struct where the last one left off. This chapter gives each
 * client a stack again, without giving it a thread: a task. echo() below
 * is chapter 02's blocking loop, line for line - read, write all of it,
 * read again - and yet one thread serves ten thousand clients at 06's
 * pace. Where 02's recv() would block, io_read() suspends the task and
 * the loop runs the others (io.c, task.c); the loop itself is 06's, with
 * echo taken out (loop.c).
 *
 * Everything around the conversation - listening, accepting, the limits,
 * signals, counters - is the framework's (serve.c): this file is the two
 * conversations it can hold (echo, and with -H a minimal HTTP/1.1 answer
 * for load generators such as wrk) and a main() that picks one.
 *
 * usage: server [-a ADDR] [-p PORT] [-q] [-t SECONDS] [-m MAX] [-b BYTES] [-s KIB] [-H]
 */
#include "net.h"
#include "serve.h"
#include "task.h"
#include "udp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define PROG "server"
/* The most one read takes: on the task's stack. */
#define ECHO_BUF 16384
#define DEFAULT_MAX_CONNS 10000
/* -H: the longest request head we read; a longer one gets 431. */
#define HTTP_HEAD_MAX 8192

/* The command line: set in main(), read-only after. */
static struct {
    long long idle_ms;          /* -t in milliseconds; 0: wait forever */
    long long udp_size;
    int quiet;
} opt = {0, MAX_DATAGRAM, 0};

static void usage(void)
{
    fprintf(stderr, "usage: %s [-a ADDR] [-p PORT] [-q] [-t SECONDS] [-m MAX] [-b BYTES] "
                    "[-s KIB] [-H]\n"
                    "  -a ADDR  numeric IPv4 or IPv6 address to listen on (default %s)\n"
                    "  -p PORT  port for TCP and UDP, 0 = any free port (default %s)\n"
                    "  -q       quiet: no per-connection log lines\n"
                    "  -t SECONDS  close a client that neither sends nor reads for\n"
                    "              that long (default: wait forever)\n"
                    "  -m MAX   at most MAX clients at once, 1..1000000 (default %d);\n"
                    "           the next one is told \"server busy\"\n"
                    "  -b BYTES UDP receive buffer, 1..%d (default %d): a larger\n"
                    "           datagram is counted and dropped, never echoed cut\n"
                    "  -s KIB   each task's stack, %d..8192 KiB (default %d)\n"
                    "  -H       answer HTTP/1.1 requests with a fixed 200 instead of\n"
                    "           echoing (for load generators such as wrk)\n",
            PROG, DEFAULT_ADDR, DEFAULT_PORT, DEFAULT_MAX_CONNS, MAX_DATAGRAM, MAX_DATAGRAM,
            TASK_STACK_MIN / 1024, TASK_STACK_DEFAULT / 1024);
    exit(2);
}

#ifdef BROKEN_blocking
/* The classic mistake, on purpose (make BROKEN=blocking): a blocking call
 * inside a task - recv() on a blocking socket, where io_read() belongs.
 * The task never suspends: the thread waits in recv(), and every other
 * client waits with it. (asyncio's version: time.sleep() or a blocking
 * socket call inside a coroutine.) */
#include <fcntl.h>
static ssize_t blocking_read(struct io *io, void *buf, size_t len, long long timeout)
{
    (void)timeout;
    fcntl(io->watch.fd, F_SETFL, 0);
    return recv(io->watch.fd, buf, len, 0);
}
#define io_read blocking_read
#endif

/*
 * One client's whole conversation: chapter 02's echo loop. Every byte
 * read is written back, all of it, before the next read - so a client
 * that does not read its echo finds us blocked in io_write_all(), not
 * reading it either: back-pressure, with no buffer to bound but the one
 * on this stack. -t bounds each wait: a client silent that long, or not
 * reading that long, is idle. The client's EOF ends the loop after all
 * it sent has gone back (the half-close of chapter 02). Returns 0, or
 * why it ended (errno).
 */
static int echo(struct client *c)
{
    char buf[ECHO_BUF];
    ssize_t n;

    while ((n = io_read(&c->io, buf, sizeof buf, opt.idle_ms)) > 0)
        if (io_write_all(&c->io, buf, (size_t)n, opt.idle_ms) < 0)
            return errno;
    return n == 0 ? 0 : errno;
}

/* ---- -H: a minimal HTTP/1.1 server ---------------------------------------- */

#define HTTP_OK "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n" \
                "Hello, world\n"
#define HTTP_BAD "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
#define HTTP_TOO_LONG "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n" \
                      "Connection: close\r\n\r\n"

/* A 400 or a 431 closes the connection: the client's lingering bytes are
 * read and dropped this long at most first (see answer_and_close()). */
#define LINGER_MS 1000

/* What the head of a request says that this server acts on. */
struct request {
    int bad;                    /* no "METHOD TARGET HTTP/1.x" line: 400 */
    int body;                   /* a body announced: 400 (not for this server) */
    int close;                  /* "Connection: close", or HTTP/1.0: close after */
};

/* Where the head of a request (its lines up to the empty one) ends in
 * BUF[0, LEN): just past "\r\n\r\n", or 0 if it has not all come yet.
 * BUF[0, FROM) was looked at before: a head that arrives a byte at a time
 * costs one pass, not one per byte. */
static size_t head_end(const char *buf, size_t from, size_t len)
{
    for (size_t i = from < 3 ? 3 : from; i < len; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            return i + 1;
    return 0;
}

/* Is P[0, LEN) a field name: one or more characters, none of them a
 * space, a tab or a control character? */
static int is_token(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f)
            return 0;
    return len > 0;
}

/* Is the field named P[0, LEN) NAME (any case)? */
static int is_field(const char *p, size_t len, const char *name)
{
    return len == strlen(name) && strncasecmp(p, name, len) == 0;
}

/* Does the field value V[0, LEN), a comma-separated list, hold TOKEN (any
 * case)? "Connection: keep-alive, close" holds "close". */
static int has_token(const char *v, size_t len, const char *token)
{
    for (const char *end = v + len, *comma; v < end; v = comma + 1) {
        if ((comma = memchr(v, ',', (size_t)(end - v))) == NULL)
            comma = end;
        const char *a = v, *b = comma;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (is_field(a, (size_t)(b - a), token))
            return 1;
    }
    return 0;
}

/* Read the head HEAD[0, LEN), which ends with its empty line. Its first
 * line must be "METHOD TARGET HTTP/1.0" or "HTTP/1.1", every other line a
 * field, "NAME: value" with no space before the colon; a body is announced
 * by any Content-Length but 0 - two of them, "0" and "5", announce one:
 * the request smuggler's trick - or by Transfer-Encoding. Anything we
 * might read differently from a proxy in front of us is a 400. */
static struct request parse_head(const char *head, size_t len)
{
    struct request r = {0};
    const char *end = head + len, *eol = memchr(head, '\n', len);
    const char *sp1 = memchr(head, ' ', (size_t)(eol - head));
    const char *sp2 = sp1 == NULL ? NULL : memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));

    if (sp1 == NULL || sp1 == head || sp2 == NULL || sp2 == sp1 + 1 || eol - sp2 != 10 ||
        memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '0' && sp2[8] != '1') || sp2[9] != '\r')
        r.bad = 1;
    else
        r.close = sp2[8] == '0';
    for (const char *p = eol + 1; p < end; p = eol + 1) {
        eol = memchr(p, '\n', (size_t)(end - p));
        const char *colon = memchr(p, ':', (size_t)(eol - p)), *v, *w = eol;
        if (eol - p <= 1)
            continue;           /* the empty line */
        if (colon == NULL || !is_token(p, (size_t)(colon - p))) {
            r.bad = 1;          /* "Content-Length : 5" is no field of ours: */
            continue;           /* ignored, its body would be a request */
        }
        for (v = colon + 1; v < w && (*v == ' ' || *v == '\t'); v++)
            ;
        while (w > v && (w[-1] == '\r' || w[-1] == ' ' || w[-1] == '\t'))
            w--;
        size_t name = (size_t)(colon - p);
        if (is_field(p, name, "content-length") && !(w - v == 1 && *v == '0'))
            r.body = 1;
        else if (is_field(p, name, "transfer-encoding"))
            r.body = 1;
        else if (is_field(p, name, "connection") && has_token(v, (size_t)(w - v), "close"))
            r.close = 1;
    }
    return r;
}

/* What is left of a wait that must end at UNTIL (0: never), as a timeout
 * for one call: ms, or 0 for none; -1 once it has passed. */
static long long time_left(const struct client *c, long long until)
{
    if (until == 0)
        return 0;
    long long left = until - loop_now(c->io.loop);
    return left > 0 ? left : -1;
}

/* Send ANSWER and close - gently. A close() with bytes of the client's
 * still unread sends a reset, and a reset may destroy our answer before
 * the client has read it. So we shut down our side, then read and drop
 * what the client still sends until it closes too, LINGER_MS at most. */
static int answer_and_close(struct client *c, const char *answer)
{
    char sink[1024];
    long long until = loop_now(c->io.loop) + LINGER_MS, left;

    ssize_t n = 1;

    if (io_write_all(&c->io, answer, strlen(answer), opt.idle_ms) < 0)
        return errno;
    shutdown(c->io.watch.fd, SHUT_WR);
    while ((left = time_left(c, until)) > 0 && (n = io_read(&c->io, sink, sizeof sink, left)) > 0)
        ;
    return n < 0 && errno == ECANCELED ? ECANCELED : 0;
}

/*
 * -H: each request on the connection gets the same small answer, for as
 * long as the client keeps it open (HTTP/1.1 keeps connections alive
 * unless told "Connection: close"; HTTP/1.0 closes them unless told
 * "keep-alive" - we close). Requests may come glued together
 * (pipelining): each is answered in order. A request with a body is not
 * for this server, nor is a malformed one: 400; a head longer than
 * HTTP_HEAD_MAX: 431.
 *
 * -t bounds the whole head here, not each read as in echo(): a client
 * that trickles a byte a second would otherwise hold its connection - and
 * one of the -m places - for ever ("slowloris"). One deadline, and each
 * read waits for what is left of it: asyncio.wait_for() around the whole
 * read, not around each piece.
 */
static int answer_http(struct client *c)
{
    char buf[HTTP_HEAD_MAX];
    size_t have = 0, end, seen;

    for (;;) {
        long long until = opt.idle_ms > 0 ? loop_now(c->io.loop) + opt.idle_ms : 0, left;
        for (seen = 0; (end = head_end(buf, seen, have)) == 0;) {
            if (have == sizeof buf)
                return answer_and_close(c, HTTP_TOO_LONG);
            if ((left = time_left(c, until)) < 0)
                return ETIMEDOUT;
            seen = have;
            ssize_t n = io_read(&c->io, buf + have, sizeof buf - have, left);
            if (n <= 0)
                return n == 0 ? 0 : errno;
            have += (size_t)n;
        }
        struct request r = parse_head(buf, end);
        if (r.bad || r.body)
            return answer_and_close(c, HTTP_BAD);
        if (r.close)
            return answer_and_close(c, HTTP_OK);
        if (io_write_all(&c->io, HTTP_OK, strlen(HTTP_OK), opt.idle_ms) < 0)
            return errno;
        have -= end;
        memmove(buf, buf + end, have);
    }
}

/* ---- main ----------------------------------------------------------------- */

static void serve_udp(struct io *io)
{
    udp_echo(PROG, io, (size_t)opt.udp_size, opt.quiet);
}

int main(int argc, char **argv)
{
    struct service svc = {.prog = PROG, .addr = DEFAULT_ADDR, .port = DEFAULT_PORT,
                          .max_conns = DEFAULT_MAX_CONNS, .stack_size = TASK_STACK_DEFAULT,
                          .handler = echo, .verb = "echoed", .udp_handler = serve_udp,
                          .udp_summary = udp_summary};
    struct timeval idle;
    long long kib;
    int opt_char;

    init_program(PROG);
    /* Each option is checked where it is read: "-p 99999 -p 0" is an error
     * too, not "the last one wins". */
    while ((opt_char = getopt(argc, argv, "a:p:qt:m:b:s:H")) != -1) {
        switch (opt_char) {
        case 'a': if (!is_numeric_addr(svc.addr = optarg)) usage(); break;
        case 'p': if (parse_port(svc.port = optarg, 0) < 0) usage(); break;
        case 'q': svc.quiet = opt.quiet = 1; break;
        case 't':
            if (parse_seconds(optarg, &idle) < 0)
                usage();
            opt.idle_ms = (long long)idle.tv_sec * 1000 + (idle.tv_usec + 999) / 1000;
            break;
        case 'm': if ((svc.max_conns = parse_count(optarg, 1, 1000000)) < 0) usage(); break;
        case 'b': if ((opt.udp_size = parse_count(optarg, 1, MAX_DATAGRAM)) < 0) usage(); break;
        case 's':
            if ((kib = parse_count(optarg, TASK_STACK_MIN / 1024, 8192)) < 0)
                usage();
            svc.stack_size = (size_t)kib * 1024;
            break;
        case 'H': svc.handler = answer_http; svc.verb = "sent"; break;
        default: usage();
        }
    }
    if (optind != argc)
        usage();
    return serve(&svc);
}
