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

/* Where the head of a request (its lines up to the empty one) ends in
 * BUF[0, LEN): just past "\r\n\r\n", or 0 if it has not all come yet. */
static size_t head_end(const char *buf, size_t len)
{
    for (size_t i = 3; i < len; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            return i + 1;
    return 0;
}

/* Does the head HEAD[0, LEN) have a header line NAME (lower case, with its
 * colon) whose value starts with VALUE (any case)? */
static int has_header(const char *head, size_t len, const char *name, const char *value)
{
    size_t nlen = strlen(name), vlen = strlen(value);
    for (const char *p = head, *end = head + len; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            break;
        const char *v = p + nlen;
        if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0) {
            while (v < eol && *v == ' ')
                v++;
            if ((size_t)(eol - v) >= vlen && strncasecmp(v, value, vlen) == 0)
                return 1;
        }
        p = eol + 1;
    }
    return 0;
}

/* Is the request in HEAD[0, LEN) an HTTP/1.0 one (its first line ends so)? */
static int is_http10(const char *head, size_t len)
{
    const char *eol = memchr(head, '\n', len);
    return eol != NULL && eol - head >= 9 && memcmp(eol - 9, "HTTP/1.0\r", 9) == 0;
}

/*
 * -H: each request on the connection gets the same small answer, for as
 * long as the client keeps it open (HTTP/1.1 keeps connections alive
 * unless told "Connection: close"; HTTP/1.0 closes them unless told
 * "keep-alive" - we close). Requests may come glued together
 * (pipelining): each is answered in order. A request with a body is not
 * for this server: 400, and close; a head longer than HTTP_HEAD_MAX: 431.
 */
static int answer_http(struct client *c)
{
    char buf[HTTP_HEAD_MAX];
    size_t have = 0, end;

    for (;;) {
        while ((end = head_end(buf, have)) == 0) {
            if (have == sizeof buf)
                return io_write_all(&c->io, HTTP_TOO_LONG, strlen(HTTP_TOO_LONG), opt.idle_ms) < 0
                           ? errno : 0;
            ssize_t n = io_read(&c->io, buf + have, sizeof buf - have, opt.idle_ms);
            if (n <= 0)
                return n == 0 ? 0 : errno;
            have += (size_t)n;
        }
        int body = (has_header(buf, end, "content-length:", "") &&
                    !has_header(buf, end, "content-length:", "0\r")) ||
                   has_header(buf, end, "transfer-encoding:", "");
        if (body)
            return io_write_all(&c->io, HTTP_BAD, strlen(HTTP_BAD), opt.idle_ms) < 0 ? errno : 0;
        if (io_write_all(&c->io, HTTP_OK, strlen(HTTP_OK), opt.idle_ms) < 0)
            return errno;
        if (has_header(buf, end, "connection:", "close") || is_http10(buf, end))
            return 0;
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
