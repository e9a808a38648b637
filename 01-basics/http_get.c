/*
 * http_get.c - an HTTP/1.1 GET over a plain TCP socket.
 *
 * The tutorials' first example sends a request and calls recv(1024) once.
 * That prints the first piece of the answer and drops the rest: TCP hands
 * you bytes as they arrive, not "the response". Here we read the way the
 * protocol says: the status line and headers up to the empty line, then the
 * body framed by Content-Length, by chunked encoding, or by the server
 * closing the connection - however many recv() calls that takes.
 *
 * The server is a stranger, so we trust nothing it sends: every line and
 * all heads of a response together have a size limit, every number is
 * read digit by digit as RFC 9112 writes it, and no wait lasts longer
 * than -T seconds.
 *
 * usage: http_get [-T SECONDS] http://HOST[:PORT]/PATH
 */
#include "net.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define PROG "http_get"
#define MAX_HOST 256
#define MAX_LINE 8192        /* longest status, header or chunk-size line */
/* All heads of one response together: the interim 1xx heads, the final
 * head and the trailers after a chunked body. Without one budget for all
 * of them, a server sending "100 Continue" forever keeps us reading (and
 * printing) forever. */
#define MAX_HEADS (64 * 1024)

#define DIGITS "0123456789"
#define HEX_DIGITS "0123456789abcdefABCDEF"
#define OWS " \t"            /* "optional white space" around values */
/* The characters of a header name (a "token" in RFC 9110). */
#define TOKEN_CHARS "!#$%&'*+-.^_`|~" DIGITS \
                    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

struct url {
    char host[MAX_HOST];    /* without the [] of an IPv6 literal */
    char port[6];           /* "80" even if the URL said "000080" */
    const char *path;       /* points into argv: "/...", "?...", "#..." or "" */
    size_t path_len;        /* up to a "#fragment", which is not sent */
    const char *authority;  /* "host[:port]" as written, for Host: */
    size_t authority_len;
};

/* A small read buffer: lets us read "a line" or "N bytes" from a stream
 * that arrives in pieces of whatever size the network chose. */
struct reader {
    int fd;
    const struct timeval *timeout;  /* how long one recv() may wait */
    const char *waiting_for;        /* "the body": for error messages */
    size_t start, end;
    char buf[16384];
};

/* What one head says about the body after it. */
struct framing {
    int status;
    long long content_length;   /* -1: no Content-Length */
    int transfer_encoding;      /* a Transfer-Encoding header came */
    int chunked;                /* ...and its last coding is chunked */
};

static void usage(void)
{
    fprintf(stderr, "usage: %s [-T SECONDS] http://HOST[:PORT]/PATH\n"
                    "  -T SECONDS  give up on a server silent that long (default %s)\n",
            PROG, DEFAULT_TIMEOUT);
    exit(2);
}

/* Our output can fail too: a full disk, or a reader that went away
 * (`http_get URL | head -c 10`). Downloading on would be pointless, so
 * every write is checked, and the first failure ends the work. */
static int output_failed(void)
{
    fprintf(stderr, "%s: write to stdout: %s\n", PROG, strerror(errno));
    return -1;
}

static int write_out(const char *buf, size_t len)
{
    return fwrite(buf, 1, len, stdout) == len ? 0 : output_failed();
}

static int print_line(const char *line)
{
    return printf("%s\n", line) < 0 ? output_failed() : 0;
}

static int flush_out(void)
{
    return fflush(stdout) == 0 ? 0 : output_failed();
}

/* The port by the same rule as everywhere else in the course, leading
 * zeros and all: parse_port() wants the digits on their own, and
 * "000080" is as much a port as "80", so there is no fixed-size copy. */
static int parse_url_port(const char *s, size_t len, char *port, size_t size)
{
    char *digits = strndup(s, len);
    if (digits == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        exit(1);
    }
    int n = parse_port(digits, 1);
    free(digits);
    if (n < 0)
        return -1;
    int w = snprintf(port, size, "%d", n);
    return w > 0 && (size_t)w < size ? 0 : -1;
}

/* Split "http://host:port/path". Returns 0, or -1 if it is not such a URL. */
static int parse_url(const char *s, struct url *u)
{
    const char *p, *host_end, *port_start = NULL;
    size_t host_len;

    if (strncasecmp(s, "https://", 8) == 0) {
        fprintf(stderr, "%s: https is not supported: TLS needs a library such as "
                        "OpenSSL on top of the socket\n", PROG);
        exit(2);
    }
    if (strncasecmp(s, "http://", 7) != 0)
        return -1;
    /* Spaces and control characters would let a URL write its own request
     * lines ("request smuggling"): a real URL has them %-encoded. */
    for (p = s; *p != '\0'; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return -1;
    p = s + 7;
    u->authority = p;
    if (*p == '[') {                        /* [IPv6 literal] */
        /* Its "]" comes before any of the URL's delimiters: neither
         * "[::1/x]" nor "[a#b]" is a literal (the fuzzer found them taken
         * as hosts "::1/x" and "a#b"). */
        p++;
        host_len = strcspn(p, "]/?#@[");
        if (p[host_len] != ']')
            return -1;
        host_end = p + host_len + 1;
    } else {
        host_end = p + strcspn(p, ":/?#");
        host_len = (size_t)(host_end - p);
        /* Nor is "user@host" a host (we take no user names in a URL:
         * "http://bank.example@evil.example/" is a classic trick), nor
         * anything with a stray bracket. */
        if (strcspn(p, "@[]") < host_len)
            return -1;
    }
    if (host_len == 0 || host_len >= sizeof u->host)
        return -1;
    memcpy(u->host, p, host_len);
    u->host[host_len] = '\0';

    p = host_end;
    if (*p == ':')
        port_start = ++p;
    else if (*p != '\0' && *p != '/' && *p != '?' && *p != '#')
        return -1;                          /* e.g. "[::1]junk" */
    p += strcspn(p, "/?#");
    u->authority_len = (size_t)(p - u->authority);
    u->path = p;
    u->path_len = strcspn(p, "#");

    if (port_start == NULL) {
        strcpy(u->port, "80");
        return 0;
    }
    return parse_url_port(port_start, (size_t)(p - port_start), u->port, sizeof u->port);
}

/* The request: one GET, and "Connection: close", so that the server's
 * closing is never news to us. Returns its length, or -1 if too long. */
static int build_request(const struct url *u, char *buf, size_t size)
{
    int len = snprintf(buf, size,
                       "GET %s%.*s HTTP/1.1\r\n"
                       "Host: %.*s\r\n"
                       "User-Agent: sockets-step-by-step http_get\r\n"
                       "Accept: */*\r\n"
                       "Connection: close\r\n"
                       "\r\n",
                       u->path[0] == '/' ? "" : "/", (int)u->path_len, u->path,
                       (int)u->authority_len, u->authority);
    return len < 0 || (size_t)len >= size ? -1 : len;
}

/* Refill the buffer. Returns bytes now buffered, 0 at EOF, -1 on error
 * (after saying what we were waiting for when it happened). */
static ssize_t reader_fill(struct reader *r)
{
    if (r->start == r->end)
        r->start = r->end = 0;
    if (r->end == sizeof r->buf) {          /* compact the unread tail */
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    for (;;) {
        ssize_t n = recv(r->fd, r->buf + r->end, sizeof r->buf - r->end, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            report_wait_failure(PROG, r->waiting_for, r->timeout);
            return -1;
        }
        r->end += (size_t)n;
        return n == 0 ? 0 : (ssize_t)(r->end - r->start);
    }
}

/* Read one line ending in "\n" (CR stripped) into LINE, and if RAW is not
 * NULL, say how many bytes of the stream it took. Returns its length, or
 * -1 on error, EOF before the "\n", a line longer than MAX_LINE, or a NUL. */
static ssize_t read_line(struct reader *r, char *line, size_t *raw)
{
    for (;;) {
        char *nl = memchr(r->buf + r->start, '\n', r->end - r->start);
        if (nl != NULL) {
            size_t len = (size_t)(nl - (r->buf + r->start));
            if (len >= MAX_LINE)
                break;
            memcpy(line, r->buf + r->start, len);
            r->start += len + 1;
            if (raw != NULL)
                *raw = len + 1;
            if (len > 0 && line[len - 1] == '\r')
                len--;
            /* A C string ends at its first NUL: "Content-Length: 3\0 000"
             * would read as 3 here and as garbage to a stricter reader.
             * HTTP lines never hold a NUL, so such a line is refused. */
            if (memchr(line, '\0', len) != NULL) {
                fprintf(stderr, "%s: malformed line: it contains a NUL byte\n", PROG);
                return -1;
            }
            /* Likewise a CR that does not end the line: some readers take
             * it for a line break, some for a character (RFC 9112 2.2). */
            if (memchr(line, '\r', len) != NULL) {
                fprintf(stderr, "%s: malformed line: a CR inside it\n", PROG);
                return -1;
            }
            line[len] = '\0';
            return (ssize_t)len;
        }
        if (r->end - r->start >= MAX_LINE)
            break;
        ssize_t n = reader_fill(r);
        if (n <= 0) {
            if (n == 0)
                fprintf(stderr, "%s: connection closed while waiting for %s\n", PROG,
                        r->waiting_for);
            return -1;
        }
    }
    fprintf(stderr, "%s: line longer than %d bytes\n", PROG, MAX_LINE);
    return -1;
}

/* A line of a head or of the trailers, paid for from ROOM: what all the
 * heads of this response may still take. */
static ssize_t read_head_line(struct reader *r, char *line, size_t *room)
{
    size_t raw;
    ssize_t n = read_line(r, line, &raw);
    if (n < 0)
        return -1;
    if (raw > *room) {
        fprintf(stderr, "%s: response heads larger than %d bytes\n", PROG, MAX_HEADS);
        return -1;
    }
    *room -= raw;
    return n;
}

/* Copy the body to stdout: exactly LEN bytes, or (LEN < 0) until EOF.
 * Each piece is flushed as it comes: a stream shows up as it arrives, and
 * a reader that went away stops us now, not after the whole download. */
static int copy_body(struct reader *r, long long len)
{
    long long copied = 0;

    while (len < 0 || copied < len) {
        if (r->start == r->end) {
            ssize_t n = reader_fill(r);
            if (n < 0)
                return -1;
            if (n == 0) {
                if (len < 0)
                    return 0;       /* close-delimited body: EOF is the end */
                fprintf(stderr, "%s: connection closed after %lld of %lld body bytes\n",
                        PROG, copied, len);
                return -1;
            }
        }
        size_t take = r->end - r->start;
        if (len >= 0 && (long long)take > len - copied)
            take = (size_t)(len - copied);
        if (write_out(r->buf + r->start, take) < 0 || flush_out() < 0)
            return -1;
        r->start += take;
        copied += (long long)take;
    }
    return 0;
}

/* "1a", "1a;name=value" or "1a ;ext": hex digits, then either the end, or
 * spaces or tabs and a ';' that starts an extension we ignore. strtoll()
 * alone would also take "-5", " 5" and "0x5". Returns the size, or -1. */
static long long parse_chunk_size(const char *line)
{
    size_t digits = strspn(line, HEX_DIGITS);
    const char *rest = line + digits + strspn(line + digits, OWS);

    if (digits == 0 || (line[digits] != '\0' && *rest != ';'))
        return -1;
    errno = 0;
    long long size = strtoll(line, NULL, 16);
    return errno == 0 ? size : -1;
}

/* Transfer-Encoding: chunked is "SIZE-in-hex CRLF data CRLF" repeated,
 * ending with a chunk of size 0 and optional trailer lines. The trailers
 * are a head after the body, so they are paid for from ROOM as well: a
 * server could otherwise send them forever. */
static int copy_chunked_body(struct reader *r, size_t *room)
{
    char line[MAX_LINE];
    ssize_t n;

    for (;;) {
        r->waiting_for = "a chunk";
        if (read_line(r, line, NULL) < 0)
            return -1;
        long long size = parse_chunk_size(line);
        if (size < 0) {
            fprintf(stderr, "%s: bad chunk size line '%s'\n", PROG, line);
            return -1;
        }
        if (size == 0)
            break;
        if (copy_body(r, size) < 0 || read_line(r, line, NULL) < 0)
            return -1;
        if (line[0] != '\0') {
            fprintf(stderr, "%s: chunk not followed by CRLF\n", PROG);
            return -1;
        }
    }
    r->waiting_for = "the trailers";
    while ((n = read_head_line(r, line, room)) > 0)
        ;                                   /* trailers, up to an empty line */
    return n < 0 ? -1 : 0;
}

/* "HTTP/1.1 200 OK": a version, a space, exactly three digits, then a
 * space and a reason, or nothing. sscanf("%3d") would read "1004" as 100
 * and take "-12", so we look at each character. Returns 0, or -1. */
static int parse_status_line(const char *line, int *status)
{
    if (strncmp(line, "HTTP/", 5) != 0 || strspn(line + 5, DIGITS) != 1 ||
        line[6] != '.' || strspn(line + 7, DIGITS) != 1 || line[8] != ' ' ||
        strspn(line + 9, DIGITS) != 3 || (line[12] != '\0' && line[12] != ' '))
        return -1;
    *status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    /* RFC 9110: every valid status code is in 100..599. */
    return *status >= 100 && *status <= 599 ? 0 : -1;
}

/* The value of header LINE if its name is NAME (in any case), with the
 * spaces and tabs before it skipped; NULL if LINE is another header. */
static const char *value_of(const char *line, const char *name)
{
    size_t len = strlen(name);

    if (strncasecmp(line, name, len) != 0 || line[len] != ':')
        return NULL;
    return line + len + 1 + strspn(line + len + 1, OWS);
}

/* The number the N decimal digits at S write; -1 if there are none, or
 * if it is too big for a long long. */
static long long parse_decimal(const char *s, size_t n)
{
    long long v = 0;

    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (v > (LLONG_MAX - (s[i] - '0')) / 10)
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Content-Length is decimal digits - strtoll() would also take "+3" and
 * "-0". The same value may come more than once ("3, 3", or two lines
 * saying 3: a proxy may have joined two copies), but two different values
 * leave two places where the body could end - the stuff of response
 * splitting attacks - so they are an error. Every head starts afresh. */
static int note_content_length(const char *line, const char *v, struct framing *f)
{
    for (;;) {
        size_t digits = strspn(v, DIGITS);
        long long len = parse_decimal(v, digits);
        if (len < 0)
            break;
        if (f->content_length >= 0 && f->content_length != len) {
            fprintf(stderr, "%s: two different Content-Length values: %lld and %lld\n",
                    PROG, f->content_length, len);
            return -1;
        }
        f->content_length = len;
        v += digits + strspn(v + digits, OWS);
        if (*v == '\0')
            return 0;
        if (*v != ',')
            break;
        v += 1 + strspn(v + 1, OWS);
    }
    fprintf(stderr, "%s: bad header '%s'\n", PROG, line);
    return -1;
}

/* Transfer-Encoding lists the codings in the order the server applied
 * them, so the body is chunked only if "chunked" (in any case) is the
 * last of the list: "gzip, chunked" is, "notchunked-gzip" is not. */
static int ends_in_chunked(const char *v)
{
    size_t end = strlen(v), start;

    while (end > 0 && strchr(OWS ",", v[end - 1]) != NULL)
        end--;
    if (end == 0)
        return 0;
    for (start = end; start > 0 && v[start - 1] != ','; start--)
        ;
    start += strspn(v + start, OWS);
    return end - start == 7 && strncasecmp(v + start, "chunked", 7) == 0;
}

/* Note what header LINE says about the framing of the body. A line that
 * is not "name: value" - no name, a space before the colon, or a line
 * folded onto the one before (obsolete since 2014) - is refused: readers
 * that disagree on what such a line means disagree on the framing. */
static int note_header(const char *line, struct framing *f)
{
    size_t name_len = strspn(line, TOKEN_CHARS);
    const char *v;

    if (name_len == 0 || line[name_len] != ':') {
        fprintf(stderr, "%s: bad header '%s'\n", PROG, line);
        return -1;
    }
    if ((v = value_of(line, "Content-Length")) != NULL)
        return note_content_length(line, v, f);
    if ((v = value_of(line, "Transfer-Encoding")) != NULL) {
        f->transfer_encoding = 1;
        f->chunked = ends_in_chunked(v);
    }
    return 0;
}

/* Read one head: print its status line and headers, and note how the body
 * after it is framed. Each head starts from nothing: what a "103 Early
 * Hints" said about its (absent) body is no part of the "200" after it. */
static int read_head(struct reader *r, struct framing *f, size_t *room)
{
    char line[MAX_LINE];
    ssize_t n;

    *f = (struct framing){.content_length = -1};
    r->waiting_for = "the response head";
    if (read_head_line(r, line, room) < 0)
        return -1;
    if (parse_status_line(line, &f->status) < 0) {
        fprintf(stderr, "%s: not an HTTP response: '%.60s'\n", PROG, line);
        return -1;
    }
    if (print_line(line) < 0)
        return -1;
    while ((n = read_head_line(r, line, room)) > 0)
        if (print_line(line) < 0 || note_header(line, f) < 0)
            return -1;
    if (n < 0)
        return -1;
    /* Flushed now: after an interim head the real one may be a while. */
    return print_line("") < 0 || flush_out() < 0 ? -1 : 0;
}

/* Copy the body after the final head, framed as RFC 9112 (6.3) says. */
static int copy_response_body(struct reader *r, const struct framing *f, size_t *room)
{
    /* 101 (the only 1xx that gets here), 204 and 304 never have a body. */
    if (f->status < 200 || f->status == 204 || f->status == 304)
        return 0;
    if (f->chunked)
        return copy_chunked_body(r, room);
    r->waiting_for = "the body";
    /* With Transfer-Encoding, Content-Length is ignored: the coding wins.
     * A body whose last coding is not chunked ("gzip") has no length of
     * its own and ends when the server closes. Both headers together may
     * mean someone is trying to split the response; since we read this one
     * response and close, no byte can pass for the start of another. */
    return copy_body(r, f->transfer_encoding ? -1 : f->content_length);
}

/* The whole response from R: its head, then its body, printed. A 1xx
 * response ("100 Continue", "103 Early Hints") is an interim head without
 * a body: the real response follows it. Each one is paid for from ROOM,
 * so a server cannot send them forever. Returns 0, or -1 (said). */
static int read_response(struct reader *r)
{
    struct framing f;
    size_t room = MAX_HEADS;
    int rc;

    do
        rc = read_head(r, &f, &room);
    while (rc == 0 && f.status < 200 && f.status != 101);
    return rc == 0 ? copy_response_body(r, &f, &room) : rc;
}

int main(int argc, char **argv)
{
    struct timeval timeout;
    struct url u;
    char request[MAX_LINE];
    int opt;

    init_program(PROG);
    parse_seconds(DEFAULT_TIMEOUT, &timeout);
    while ((opt = getopt(argc, argv, "T:")) != -1)
        if (opt != 'T' || parse_seconds(optarg, &timeout) < 0)
            usage();
    if (optind != argc - 1 || parse_url(argv[optind], &u) < 0)
        usage();
    int len = build_request(&u, request, sizeof request);
    if (len < 0) {
        fprintf(stderr, "%s: URL too long\n", PROG);
        return 2;
    }

    int fd = connect_to(PROG, u.host, u.port, SOCK_STREAM, &timeout);
    if (fd < 0)
        return 1;
    if (send_all(fd, request, (size_t)len) < 0) {
        fprintf(stderr, "%s: send: %s\n", PROG, strerror(errno));
        close(fd);
        return 1;
    }

    struct reader r = {.fd = fd, .timeout = &timeout};
    int rc = read_response(&r);
    if (close(fd) < 0 && rc == 0) {
        fprintf(stderr, "%s: close: %s\n", PROG, strerror(errno));
        rc = -1;
    }
    if (rc == 0)
        rc = flush_out();
    return rc == 0 ? 0 : 1;
}
