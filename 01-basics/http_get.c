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
 * usage: http_get http://HOST[:PORT]/PATH
 */
#include "net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define PROG "http_get"
#define MAX_HOST 256
#define MAX_LINE 8192        /* longest status, header or chunk-size line */
#define MAX_HEADERS (64 * 1024)

struct url {
    char host[MAX_HOST];    /* without the [] of an IPv6 literal */
    char port[6];
    const char *path;       /* points into argv: "/...", "?...", "#..." or "" */
    size_t path_len;        /* up to a "#fragment", which is not sent */
    const char *authority;  /* "host[:port]" as written, for Host: */
    size_t authority_len;
};

/* A small read buffer: lets us read "a line" or "N bytes" from a stream
 * that arrives in pieces of whatever size the network chose. */
struct reader {
    int fd;
    size_t start, end;
    char buf[16384];
};

static void usage(void)
{
    fprintf(stderr, "usage: %s http://HOST[:PORT]/PATH\n", PROG);
    exit(2);
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
        host_end = strchr(p, ']');
        if (host_end == NULL)
            return -1;
        p++;
        host_len = (size_t)(host_end - p);
        host_end++;
    } else {
        host_end = p + strcspn(p, ":/?#");
        host_len = (size_t)(host_end - p);
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
    } else {
        size_t n = (size_t)(u->authority + u->authority_len - port_start);
        if (n == 0 || n >= sizeof u->port)
            return -1;
        memcpy(u->port, port_start, n);
        u->port[n] = '\0';
        if (parse_port(u->port, 1) < 0)
            return -1;
    }
    return 0;
}

/* Refill the buffer. Returns bytes now buffered, 0 at EOF, -1 on error. */
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
            fprintf(stderr, "%s: recv: %s\n", PROG, strerror(errno));
            return -1;
        }
        r->end += (size_t)n;
        return n == 0 ? 0 : (ssize_t)(r->end - r->start);
    }
}

/* Read one line ending in "\n" (CR stripped) into LINE. Returns its length,
 * or -1 on error, EOF in mid-line, or a line longer than MAX_LINE. */
static ssize_t read_line(struct reader *r, char *line)
{
    for (;;) {
        char *nl = memchr(r->buf + r->start, '\n', r->end - r->start);
        if (nl != NULL) {
            size_t len = (size_t)(nl - (r->buf + r->start));
            if (len >= MAX_LINE)
                break;
            memcpy(line, r->buf + r->start, len);
            r->start += len + 1;
            if (len > 0 && line[len - 1] == '\r')
                len--;
            line[len] = '\0';
            return (ssize_t)len;
        }
        if (r->end - r->start >= MAX_LINE)
            break;
        ssize_t n = reader_fill(r);
        if (n <= 0) {
            if (n == 0)
                fprintf(stderr, "%s: connection closed in the middle of a line\n", PROG);
            return -1;
        }
    }
    fprintf(stderr, "%s: line longer than %d bytes\n", PROG, MAX_LINE);
    return -1;
}

/* Copy the body to stdout: exactly LEN bytes, or (LEN < 0) until EOF. */
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
        fwrite(r->buf + r->start, 1, take, stdout);
        r->start += take;
        copied += (long long)take;
    }
    return 0;
}

/* Transfer-Encoding: chunked is "SIZE-in-hex CRLF data CRLF" repeated,
 * ending with a chunk of size 0 and optional trailer lines. */
static int copy_chunked_body(struct reader *r)
{
    char line[MAX_LINE];

    for (;;) {
        char *end;
        if (read_line(r, line) < 0)
            return -1;
        /* Hex digits only: strtoll() alone would also take "-5" or "0x5". */
        size_t digits = strspn(line, "0123456789abcdefABCDEF");
        errno = 0;
        long long size = strtoll(line, &end, 16);
        if (digits == 0 || end != line + digits || errno != 0 ||
            (*end != '\0' && *end != ';')) {
            fprintf(stderr, "%s: bad chunk size line '%s'\n", PROG, line);
            return -1;
        }
        if (size == 0)
            break;
        if (copy_body(r, size) < 0 || read_line(r, line) < 0)
            return -1;
        if (line[0] != '\0') {
            fprintf(stderr, "%s: chunk not followed by CRLF\n", PROG);
            return -1;
        }
    }
    do {                                    /* trailers, up to an empty line */
        if (read_line(r, line) < 0)
            return -1;
    } while (line[0] != '\0');
    return 0;
}

/* Print the status line and headers; note how the body is framed. */
static int read_head(struct reader *r, int *status, long long *content_length,
                     int *chunked)
{
    char line[MAX_LINE];
    size_t total = 0;
    ssize_t n;

    if (read_line(r, line) < 0)
        return -1;
    if (sscanf(line, "HTTP/%*d.%*d %3d", status) != 1) {
        fprintf(stderr, "%s: not an HTTP response: '%.60s'\n", PROG, line);
        return -1;
    }
    printf("%s\n", line);
    while ((n = read_line(r, line)) > 0) {
        total += (size_t)n;
        if (total > MAX_HEADERS) {
            fprintf(stderr, "%s: headers larger than %d bytes\n", PROG, MAX_HEADERS);
            return -1;
        }
        printf("%s\n", line);
        if (strncasecmp(line, "Content-Length:", 15) == 0) {
            char *end;
            errno = 0;
            *content_length = strtoll(line + 15, &end, 10);
            while (*end == ' ' || *end == '\t')
                end++;
            if (errno != 0 || *content_length < 0 || end == line + 15 || *end != '\0') {
                fprintf(stderr, "%s: bad header '%s'\n", PROG, line);
                return -1;
            }
        } else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 &&
                 strstr(line + 18, "chunked") != NULL)
            *chunked = 1;
    }
    if (n < 0)
        return -1;
    printf("\n");
    return 0;
}

int main(int argc, char **argv)
{
    struct url u;
    char request[MAX_LINE];

    if (argc != 2 || parse_url(argv[1], &u) < 0)
        usage();
    int len = snprintf(request, sizeof request,
                       "GET %s%.*s HTTP/1.1\r\n"
                       "Host: %.*s\r\n"
                       "User-Agent: sockets-step-by-step http_get\r\n"
                       "Accept: */*\r\n"
                       "Connection: close\r\n"
                       "\r\n",
                       u.path[0] == '/' ? "" : "/", (int)u.path_len, u.path,
                       (int)u.authority_len, u.authority);
    if (len < 0 || (size_t)len >= sizeof request) {
        fprintf(stderr, "%s: URL too long\n", PROG);
        return 2;
    }

    int fd = connect_to(PROG, u.host, u.port, SOCK_STREAM);
    if (fd < 0)
        return 1;
    if (send_all(fd, request, (size_t)len) < 0) {
        fprintf(stderr, "%s: send: %s\n", PROG, strerror(errno));
        close(fd);
        return 1;
    }

    struct reader *r = malloc(sizeof *r);
    if (r == NULL) {
        close(fd);
        return 1;
    }
    r->fd = fd;
    r->start = r->end = 0;
    int status = 0, chunked = 0, rc;
    long long content_length = -1;
    /* A 1xx response ("100 Continue", "103 Early Hints") is an interim
     * head without a body: the real response follows it. */
    do
        rc = read_head(r, &status, &content_length, &chunked);
    while (rc == 0 && status >= 100 && status < 200 && status != 101);
    if (rc == 0) {
        /* 101, 204 and 304 responses never have a body. */
        if (status == 101 || status == 204 || status == 304)
            rc = 0;
        else if (chunked)
            rc = copy_chunked_body(r);
        else
            rc = copy_body(r, content_length);
    }
    free(r);
    close(fd);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: write to stdout failed\n", PROG);
        rc = -1;
    }
    return rc == 0 ? 0 : 1;
}
