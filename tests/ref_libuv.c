/*
 * ref_libuv.c - a TCP echo server on libuv: a reference row for
 * tests/bench.sh, not a stage of the course.
 *
 * One thread, one libuv loop (epoll underneath). Every read lands in the
 * loop's one read buffer; on_read() sends it straight back with
 * uv_try_write(), and only what the socket does not take at once is copied
 * into a write request that owns it (on_write() frees both): the usual
 * fast path, one read and one write per echo, no malloc.
 * A client that sends but does not read stops being read from once
 * HIGH_WATER bytes wait to go back to it, so memory stays bounded.
 * SIGTERM or SIGINT closes every handle (uv_walk), the loop runs until
 * the last close callback, and we exit 0 with everything freed.
 *
 * usage: ref_libuv [-a ADDR] [-p PORT] [-q]
 * build: make -C tests ref_libuv   (needs libuv1-dev and pkg-config)
 */
#include <uv.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define PROG "ref_libuv"
#define BACKLOG 4096
#define HIGH_WATER (1 << 20)
#define ADDR_STRLEN 64

struct client {
    uv_tcp_t tcp;           /* first: a uv_handle_t * to it is a struct client * */
    bool paused;            /* reading stopped: too much waiting to be written */
    char peer[ADDR_STRLEN];
};

struct echo {
    uv_write_t req;         /* req.handle: the client it goes to */
    char *base;             /* the bytes read, and now written back */
};

static uv_loop_t loop;
static uv_tcp_t server;
static uv_signal_t sigterm, sigint;
static bool quiet;

static void usage(void)
{
    fprintf(stderr, "usage: %s [-a ADDR] [-p PORT] [-q]\n", PROG);
    exit(2);
}

/* libuv's error codes are -errno on Unix: strerror() reads like the C stages. */
static void die(const char *call, const char *what, int err)
{
    fprintf(stderr, "%s: %s %s: %s\n", PROG, call, what, strerror(-err));
    exit(1);
}

static void format_addr(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";

    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(s6, host, sizeof host);
        snprintf(buf, len, "[%s]:%u", host, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        uv_ip4_name(s4, host, sizeof host);
        snprintf(buf, len, "%s:%u", host, ntohs(s4->sin_port));
    }
}

static void on_client_closed(uv_handle_t *h)
{
    struct client *c = (struct client *)h;
    if (!quiet)
        fprintf(stderr, "%s: %s closed\n", PROG, c->peer);
    free(c);
}

static void close_client(uv_stream_t *s)
{
    /* A read error and a failed write can both ask: close once. Writes
     * still queued come back to on_write() with UV_ECANCELED first. */
    if (!uv_is_closing((uv_handle_t *)s))
        uv_close((uv_handle_t *)s, on_client_closed);
}

/* One thread reads one stream at a time, and on_read() is done with the
 * bytes before the next read: one buffer serves every client. */
static void alloc_buffer(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char shared[64 * 1024];
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(shared, sizeof shared);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
    struct echo *e = (struct echo *)req;
    struct client *c = (struct client *)req->handle;

    free(e->base);
    free(e);
    if (status < 0)
        close_client((uv_stream_t *)c);
    else if (c->paused && uv_stream_get_write_queue_size((uv_stream_t *)c) < HIGH_WATER / 2
             && !uv_is_closing((uv_handle_t *)c)) {
        c->paused = false;
        uv_read_start((uv_stream_t *)c, alloc_buffer, on_read);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct client *c = (struct client *)s;

    if (nread <= 0) {                       /* 0: nothing this time; < 0: EOF or error */
        if (nread < 0)
            close_client(s);
        return;
    }
    /* Straight back if the socket takes it; uv_try_write() refuses while
     * earlier writes are queued, so the order holds. */
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
    int sent = uv_try_write(s, &out, 1);
    if (sent == nread)
        return;
    if (sent < 0 && sent != UV_EAGAIN) {
        close_client(s);
        return;
    }
    size_t done = sent > 0 ? (size_t)sent : 0, rest = (size_t)nread - done;
    /* The rest is copied into a request that owns it: on_write() frees both. */
    struct echo *e = malloc(sizeof *e);
    if (e != NULL && (e->base = malloc(rest)) != NULL) {
        memcpy(e->base, buf->base + done, rest);
        out = uv_buf_init(e->base, (unsigned)rest);
        if (uv_write(&e->req, s, &out, 1, on_write) == 0) {
            if (uv_stream_get_write_queue_size(s) > HIGH_WATER) {
                c->paused = true;
                uv_read_stop(s);
            }
            return;
        }
        free(e->base);
    }
    free(e);
    close_client(s);
}

static void on_connection(uv_stream_t *srv, int status)
{
    if (status < 0) {
        fprintf(stderr, "%s: accept: %s\n", PROG, strerror(-status));
        return;
    }
    struct client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        exit(1);
    }
    uv_tcp_init(&loop, &c->tcp);
    if (uv_accept(srv, (uv_stream_t *)c) < 0) {
        uv_close((uv_handle_t *)c, on_client_closed);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        format_addr(&ss, c->peer, sizeof c->peer);
    else                                    /* reset already: no peer to name */
        strcpy(c->peer, "?");
    if (!quiet)
        fprintf(stderr, "%s: %s connected\n", PROG, c->peer);
    if (uv_read_start((uv_stream_t *)c, alloc_buffer, on_read) < 0)
        close_client((uv_stream_t *)c);
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    if (h == (uv_handle_t *)&server || h->type == UV_SIGNAL)
        uv_close(h, NULL);                  /* static: nothing to free */
    else
        close_client((uv_stream_t *)h);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    (void)signum;
    uv_walk(sig->loop, close_handle, NULL);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit", "RLIMIT_NOFILE", uv_translate_sys_error(errno));
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("setrlimit", "RLIMIT_NOFILE", uv_translate_sys_error(errno));
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1", *port = "9000";
    struct sockaddr_storage ss;
    char where[ADDR_STRLEN];
    int opt, err;

    while ((opt = getopt(argc, argv, "a:p:q")) != -1) {
        switch (opt) {
        case 'a': addr = optarg; break;
        case 'p': port = optarg; break;
        case 'q': quiet = true; break;
        default: usage();
        }
    }
    size_t digits = strspn(port, "0123456789");
    long portnum = digits > 0 && digits <= 5 && port[digits] == '\0' ? atol(port) : -1;
    if (optind != argc || portnum < 0 || portnum > 65535)
        usage();
    if (uv_ip4_addr(addr, (int)portnum, (struct sockaddr_in *)&ss) != 0
        && uv_ip6_addr(addr, (int)portnum, (struct sockaddr_in6 *)&ss) != 0)
        usage();
    format_addr(&ss, where, sizeof where);

    /* A write to a client that has gone raises SIGPIPE: take EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if ((err = uv_loop_init(&loop)) < 0)
        die("uv_loop_init", "the loop", err);
    uv_tcp_init(&loop, &server);
    /* libuv sets SO_REUSEADDR itself, and keeps bind()'s EADDRINUSE until
     * uv_listen(): report that one as bind's, as the C stages do. */
    if ((err = uv_tcp_bind(&server, (const struct sockaddr *)&ss, 0)) < 0)
        die("bind", where, err);
    if ((err = uv_listen((uv_stream_t *)&server, BACKLOG, on_connection)) < 0)
        die(err == UV_EADDRINUSE ? "bind" : "listen", where, err);
    uv_signal_init(&loop, &sigterm);
    uv_signal_init(&loop, &sigint);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);

    int len = sizeof ss;
    if ((err = uv_tcp_getsockname(&server, (struct sockaddr *)&ss, &len)) < 0)
        die("getsockname", where, err);
    format_addr(&ss, where, sizeof where);
    printf("listening on %s\n", where);
    if (fflush(stdout) != 0)
        die("write", "the 'listening on' line", uv_translate_sys_error(errno));

    uv_run(&loop, UV_RUN_DEFAULT);          /* returns once every handle is closed */
    if ((err = uv_loop_close(&loop)) < 0)
        die("uv_loop_close", "the loop", err);
    uv_library_shutdown();
    return 0;
}
