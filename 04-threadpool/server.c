/*
 * server.c - echo over TCP and UDP on one port: a fixed pool of threads
 * takes TCP clients from a bounded queue.
 *
 * Chapter 03 gave every client a thread of its own, made on demand: a
 * thread to create and to join per connection, and as many threads as
 * clients - 10,000 clients, 10,000 stacks. Here the threads are made once:
 * -w WORKERS of them, at start. The main thread accepts and puts each new
 * connection into a queue (queue.c) of at most -Q LEN; each worker takes
 * one out, serves it with chapter 02's serve_client() to the end, and
 * comes back for the next.
 *
 * Everything is bounded: WORKERS threads, LEN waiting connections. When
 * the queue is full the newcomer is told "server busy" and closed, at
 * once - the accept loop never waits for room, since a waiting acceptor
 * would leave every later client in the kernel's backlog with no answer.
 *
 * The catch is the one the Python tutorials warn about: a worker belongs
 * to its client until that client leaves. With long connections, WORKERS
 * clients are served and the next ones wait in the queue, silent, however
 * idle the first ones are. A pool suits many short connections; see the
 * lesson for both, measured.
 *
 * usage: server [-a ADDR] [-p PORT] [-q] [-t SECONDS] [-w WORKERS] [-Q LEN] [-b BYTES]
 */
#include "net.h"
#include "queue.h"
#include "stop.h"
#include "udp.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "server"
#define ECHO_BUF 16384
#define DEFAULT_WORKERS 4
#define DEFAULT_QUEUE 64
/* A worker thread's stack. serve_client() needs its 16 KiB buffer,
 * log_line() a 1 KiB line and the printf machinery under it a few KiB
 * more: 64 KiB leaves room to spare. The default is `ulimit -s`, usually
 * 8 MiB: the kernel backs only the pages a thread touches, but every stack
 * is reserved address space, and 10,000 threads would reserve 80 GiB. */
#define STACK_SIZE (64 * 1024)
/* With -p 0, how often we let the kernel pick a TCP port before giving up
 * on finding one that is free for UDP too. */
#define PORT_TRIES 20

/* The command line: set in main(), read-only once threads run. */
static struct {
    const char *addr, *port;
    int quiet;
    struct timeval idle;
    long long workers, queue_len, udp_size;
} opt = {DEFAULT_ADDR, DEFAULT_PORT, 0, {0, 0}, DEFAULT_WORKERS, DEFAULT_QUEUE, MAX_DATAGRAM};

#ifdef BROKEN_race
/* The classic mistake, put back on request (`make race`): plain counters
 * that many threads bump at once. `count.bytes += n` is a load, an add and
 * a store; two threads can load the same old value, and one update is
 * lost. ThreadSanitizer reports it; see the lesson. */
typedef unsigned long long counter;
#else
/* On an _Atomic variable `+=` is one indivisible read-modify-write, and a
 * plain read is an atomic load. Each counter stands alone (no rule ties
 * two of them together), so atomics are enough; no lock needed. */
typedef _Atomic unsigned long long counter;
#endif
static struct {
    counter served, refused, bytes;
} count;

/* An accepted connection, waiting in the queue or being served. */
struct conn {
    int fd;
    unsigned long nth;
    char peer[ADDR_STRLEN];
};

/* A worker thread, and the connection it is serving (NULL: none). */
struct worker {
    pthread_t thread;
    struct conn *serving;
};

/* The waiting connections (the queue has its own lock), and what the
 * workers are doing, under one lock: the signal thread reads it to wake
 * them. */
static struct queue *waiting;
static struct {
    pthread_mutex_t lock;
    struct worker *workers;
    long long busy;             /* workers serving a client now */
    int stopping;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Our sockets: opened before any thread but UDP's starts, then only read. */
static int listen_fd = -1, udp_fd = -1;
/* Clients accepted so far, to number them in the log: only the accept
 * loop touches it. */
static unsigned long accepted;

static void usage(void)
{
    fprintf(stderr, "usage: %s [-a ADDR] [-p PORT] [-q] [-t SECONDS] [-w WORKERS] [-Q LEN] "
                    "[-b BYTES]\n"
                    "  -a ADDR  numeric IPv4 or IPv6 address to listen on (default %s)\n"
                    "  -p PORT  port for TCP and UDP, 0 = any free port (default %s)\n"
                    "  -q       quiet: no per-connection log lines\n"
                    "  -t SECONDS  close a client that neither sends nor reads for\n"
                    "              that long (default: wait forever)\n"
                    "  -w WORKERS  threads serving TCP clients, 1..10000 (default %d)\n"
                    "  -Q LEN   at most LEN clients wait for a worker, 1..1000000\n"
                    "           (default %d); the next one is told \"server busy\"\n"
                    "  -b BYTES UDP receive buffer, 1..%d (default %d): a larger\n"
                    "           datagram is counted and dropped, never echoed cut\n",
            PROG, DEFAULT_ADDR, DEFAULT_PORT, DEFAULT_WORKERS, DEFAULT_QUEUE, MAX_DATAGRAM,
            MAX_DATAGRAM);
    exit(2);
}

/* socket() -> bind() -> listen(): a socket that takes connections. */
static int open_listener(const char *addr, const char *port)
{
    struct addrinfo *ai = server_address(PROG, addr, port, SOCK_STREAM);
    char where[ADDR_STRLEN];
    int one = 1;

    format_addr(ai->ai_addr, where, sizeof where);
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0)
        die_sys(PROG, "socket", where);
    /* Without SO_REUSEADDR a restarted server cannot bind while connections
     * of its previous run sit in TIME_WAIT. (A second server still cannot
     * bind a port that one is listening on: TCP refuses that anyway.) */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die_sys(PROG, "setsockopt SO_REUSEADDR", where);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        die_sys(PROG, "bind", where);
    /* From here on the kernel completes handshakes by itself and queues
     * the connections, up to the backlog, until we accept() them. */
    if (listen(fd, SOMAXCONN) < 0)
        die_sys(PROG, "listen", where);
    freeaddrinfo(ai);
    return fd;
}

/* Set a client's socket up for echoing; -1 (errno set) if the kernel
 * refuses, and then we close that one connection rather than serve it
 * half-configured.
 *
 * TCP_NODELAY sends each echo at once. With Nagle's algorithm on, TCP
 * holds back a piece smaller than a full segment until the previous one is
 * acknowledged, and the client may delay that ACK by up to 40 ms: a 64 KiB
 * echo sent back as four 16 KiB pieces would stall on every one.
 *
 * SO_RCVTIMEO and SO_SNDTIMEO bound how long recv() and send() may block
 * on this client. Without them, one silent client holds an iterative
 * server for ever. */
static int prepare_client(int fd, const struct timeval *idle)
{
    int one = 1;

    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        return -1;
    if (idle->tv_sec == 0 && idle->tv_usec == 0)
        return 0;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, idle, sizeof *idle) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, idle, sizeof *idle) < 0)
        return -1;
    return 0;
}

/* Say why the conversation ended, in the words a reader would use. */
static const char *why_closed(int err)
{
    if (err == 0)
        return "client closed";
    if (err == EAGAIN || err == EWOULDBLOCK)
        return "idle timeout";
    if (err == EINTR)
        return "server stopping";
    return strerror(err);
}

/* Echo everything the client sends until it closes its sending side
 * (close() or shutdown(SHUT_WR): both read as EOF here), then return. */
static void serve_client(int fd, const char *peer, unsigned long nth, int quiet)
{
    char buf[ECHO_BUF];
    unsigned long long echoed = 0;
    int err = 0;

    if (!quiet)
        log_line("%s: %s connected (client #%lu)\n", PROG, peer, nth);
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR && !stop_requested())
                continue;
            err = errno;
            break;
        }
        /* Send back exactly what arrived, however little or much it was. */
        if (send_all(fd, buf, (size_t)n) < 0) {
            err = errno;
            break;
        }
        echoed += (unsigned long long)n;
        count.bytes += (unsigned long long)n;
    }
    if (stop_requested())
        err = EINTR;
    if (!quiet)
        log_line("%s: %s closed after %llu bytes echoed: %s\n", PROG, peer, echoed,
                 why_closed(err));
}

/* Set up and serve one client. */
static void serve_connection(struct conn *c)
{
    if (prepare_client(c->fd, &opt.idle) == 0)
        serve_client(c->fd, c->peer, c->nth, opt.quiet);
    else
        log_line("%s: %s: setsockopt: %s (closed)\n", PROG, c->peer, strerror(errno));
}

/* Is the server stopping? If not, W is serving C from now on: so the
 * signal thread can wake it with shutdown() on C's socket. Checked and set
 * under the lock wake_everybody() takes: no connection slips past a stop. */
static int begin_serving(struct worker *w, struct conn *c)
{
    pthread_mutex_lock(&pool.lock);
    int stopping = pool.stopping;
    if (!stopping) {
        w->serving = c;
        pool.busy++;
        count.served++;
    }
    pthread_mutex_unlock(&pool.lock);
    return !stopping;
}

/* The socket is closed under the lock: once closed, its number may be
 * handed to the very next accept(), and wake_everybody() must never shut
 * down a socket that belongs to somebody else by then. */
static void end_serving(struct worker *w, struct conn *c)
{
    pthread_mutex_lock(&pool.lock);
    close(c->fd);
    w->serving = NULL;
    pool.busy--;
    pthread_mutex_unlock(&pool.lock);
    free(c);
}

/* A worker: take a connection, serve it to the end, take the next; until
 * the queue is closed. */
static void *worker_thread(void *arg)
{
    struct worker *w = arg;
    struct conn *c;

    while ((c = queue_pop(waiting)) != NULL) {
        if (!begin_serving(w, c)) {
            close(c->fd);
            free(c);
            break;
        }
        serve_connection(c);
        end_serving(w, c);
    }
    return NULL;
}

/* Turn a newcomer away and say so: one line, then close - never a silent
 * close, never a hang. The line goes into a fresh, empty send buffer, so
 * send() cannot block; if it fails, the client has gone already, and
 * there is nobody left to tell. */
static void refuse(int fd, const char *peer, const char *why)
{
    send(fd, SERVER_BUSY, strlen(SERVER_BUSY), 0);
    close(fd);
    count.refused++;
    if (!opt.quiet)
        log_line("%s: %s refused (%s): server busy\n", PROG, peer, why);
}

/* Queue an accepted client for the next free worker, or refuse it: the
 * queue is full, or we are out of memory. Never waits. */
static void start_connection(int fd, const struct sockaddr_storage *ss)
{
    char peer[ADDR_STRLEN];

    format_addr((const struct sockaddr *)ss, peer, sizeof peer);
    struct conn *c = malloc(sizeof *c);
    if (c == NULL) {
        refuse(fd, peer, "out of memory");
        return;
    }
    c->fd = fd;
    c->nth = ++accepted;
    memcpy(c->peer, peer, sizeof peer);
    if (queue_try_push(waiting, c) == 0)
        return;
    free(c);
    if (stop_requested())
        close(fd);
    else
        refuse(fd, peer, "queue full");
}

/* The stop action, run by the signal thread: no new connections, and
 * every blocked call woken - each idle worker by closing the queue (its
 * queue_pop() returns NULL), each worker serving a client by shutdown() on
 * that client's socket (its recv() returns 0), accept() and recvmsg() by
 * shutdown() on their sockets. The queue is closed first, so that a worker
 * let go by its client cannot take one more from it. */
static void wake_everybody(void)
{
    queue_close(waiting);
    pthread_mutex_lock(&pool.lock);
    pool.stopping = 1;
    for (long long i = 0; i < opt.workers; i++)
        if (pool.workers[i].serving != NULL)
            shutdown(pool.workers[i].serving->fd, SHUT_RDWR);
    pthread_mutex_unlock(&pool.lock);
    shutdown(listen_fd, SHUT_RDWR);
    udp_wake();
}

/* SIGUSR1, and the last line at exit: what the counters say. */
static void report(void)
{
    char udp_line[256];
    /* Refused by us, or by turn_away() when out of descriptors. */
    unsigned long long refused = count.refused + clients_turned_away();

    udp_summary(udp_line, sizeof udp_line);
    pthread_mutex_lock(&pool.lock);
    long long busy = pool.busy;
    pthread_mutex_unlock(&pool.lock);
    log_line("%s: %lld connections live, %llu served, %llu refused (server busy), "
             "%llu bytes echoed, %zu waiting in the queue; %s\n", PROG, busy,
             (unsigned long long)count.served, refused, (unsigned long long)count.bytes,
             queue_length(waiting), udp_line);
}

/* The TCP listener and the UDP socket, on one port number. With -p 0 the
 * kernel picks a port free for TCP, which some other program may hold for
 * UDP: then we close both and let it pick again. */
static void open_sockets(void)
{
    int any_port = parse_port(opt.port, 0) == 0;

    for (int tries = 1;; tries++) {
        listen_fd = open_listener(opt.addr, opt.port);
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (getsockname(listen_fd, (struct sockaddr *)&ss, &len) < 0)
            die_sys(PROG, "getsockname", "of our own socket");
        udp_fd = udp_open(PROG, (struct sockaddr *)&ss, len, any_port && tries < PORT_TRIES);
        if (udp_fd >= 0)
            return;
        close(listen_fd);
    }
}

int main(int argc, char **argv)
{
    int opt_char, rc = 0;

    init_program(PROG);
    /* Each option is checked where it is read: "-p 99999 -p 0" is an error
     * too, not "the last one wins". */
    while ((opt_char = getopt(argc, argv, "a:p:qt:w:Q:b:")) != -1) {
        switch (opt_char) {
        case 'a': if (!is_numeric_addr(opt.addr = optarg)) usage(); break;
        case 'p': if (parse_port(opt.port = optarg, 0) < 0) usage(); break;
        case 'q': opt.quiet = 1; break;
        case 't': if (parse_seconds(optarg, &opt.idle) < 0) usage(); break;
        case 'w': if ((opt.workers = parse_count(optarg, 1, 10000)) < 0) usage(); break;
        case 'Q': if ((opt.queue_len = parse_count(optarg, 1, 1000000)) < 0) usage(); break;
        case 'b': if ((opt.udp_size = parse_count(optarg, 1, MAX_DATAGRAM)) < 0) usage(); break;
        default: usage();
        }
    }
    if (optind != argc)
        usage();

    /* Before any thread exists: every thread inherits this signal mask. */
    block_signals(PROG);
    raise_fd_limit(PROG);
    pthread_attr_t attr;
    int err = pthread_attr_init(&attr);
    if (err == 0)
        err = pthread_attr_setstacksize(&attr, STACK_SIZE);
    if (err != 0) {
        errno = err;
        die_sys(PROG, "pthread_attr_setstacksize", "for worker threads");
    }
    waiting = queue_new((size_t)opt.queue_len);
    pool.workers = calloc((size_t)opt.workers, sizeof *pool.workers);
    if (waiting == NULL || pool.workers == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        return 1;
    }
    open_sockets();
    udp_start(PROG, udp_fd, (size_t)opt.udp_size, opt.quiet);
    /* The pool, made once: if a worker cannot be made now, at start, we
     * say so and stop, rather than run with fewer than asked for. */
    for (long long i = 0; i < opt.workers; i++) {
        err = pthread_create(&pool.workers[i].thread, &attr, worker_thread, &pool.workers[i]);
        if (err != 0) {
            errno = err;
            die_sys(PROG, "pthread_create", "for a worker");
        }
    }
    pthread_attr_destroy(&attr);
    start_signal_thread(PROG, &(struct signal_actions){.stop = wake_everybody,
                                                       .report = report});
    announce_listening(PROG, listen_fd);

    while (!stop_requested()) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;

        /* accept() blocks until a client has connected, then hands us a
         * new socket for that one client; listen_fd keeps listening. */
        int fd = accept(listen_fd, (struct sockaddr *)&ss, &len);
        if (fd < 0) {
            if (stop_requested() || can_retry_accept(PROG, listen_fd, errno))
                continue;
            log_line("%s: accept: %s\n", PROG, strerror(errno));
            rc = 1;
            break;
        }
        start_connection(fd, &ss);
    }

    /* Stopping. Every thread has been woken (or is, now, if the loop
     * ended on an error): wait for each to finish, then free what is left.
     * The clients still in the queue were accepted but never served: they
     * are closed here, unanswered - on purpose, since a stopping server
     * starts no new conversation - and counted in the last line. */
    end_signal_thread();
    udp_finish();
    for (long long i = 0; i < opt.workers; i++)
        pthread_join(pool.workers[i].thread, NULL);
    report();
    for (struct conn *c; (c = queue_try_pop(waiting)) != NULL; free(c))
        close(c->fd);
    queue_free(waiting);
    free(pool.workers);
    close(listen_fd);
    end_program(PROG);
    return rc;
}
