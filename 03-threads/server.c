/*
 * server.c - echo over TCP and UDP on one port: a thread per TCP client.
 *
 * Chapter 02's iterative server served one client at a time: the next one
 * waited in the listen queue for as long as the first one stayed. Here the
 * main thread only accepts, and hands each connection to a new thread of
 * its own, which runs chapter 02's serve_client(): blocking recv() and
 * send(), one conversation, top to bottom. While one thread waits for its
 * client, the kernel runs the others. UDP gets one thread (udp.c), and
 * signals get one (stop.c).
 *
 * What threads cost, and what this file does about each:
 *   memory   every thread has a stack: we ask for STACK_SIZE, not 8 MiB
 *   limits   -m MAX live connections; a newcomer beyond it, or one we
 *            cannot give a thread to, is told "server busy" and closed
 *   sharing  the acceptor, the connection threads and the signal thread
 *            all touch the list of connections: one mutex guards it; the
 *            counters are atomic
 *   ending   a finished thread must be joined, or its stack stays (like a
 *            zombie process); stopping must wake every blocked recv()
 *
 * With -f, a process per connection instead (fork()): the classic design
 * from before threads, kept to measure threads against.
 *
 * usage: server [-a ADDR] [-p PORT] [-q] [-t SECONDS] [-m MAX] [-b BYTES] [-f]
 */
#include "net.h"
#include "stop.h"
#include "udp.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROG "server"
#define ECHO_BUF 16384
#define DEFAULT_MAX 10000
/* A connection thread's stack. serve_client() needs its 16 KiB buffer,
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
    int quiet, forking;
    struct timeval idle;
    long long max, udp_size;
} opt = {DEFAULT_ADDR, DEFAULT_PORT, 0, 0, {0, 0}, DEFAULT_MAX, MAX_DATAGRAM};

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

/* A connection being served: by a thread, or (-f) by a child process. */
struct conn {
    struct conn *prev, *next;
    int fd;                 /* the client's socket; -1 once closed */
    pid_t pid;              /* -f: the child serving it; else 0 */
    pthread_t thread;
    unsigned long nth;
    char peer[ADDR_STRLEN];
};

/* What the threads share, all under one lock. A connection is on the
 * live list while it is served, then its thread moves it to the done list,
 * where the accept loop finds it to join. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t finished;    /* a thread moved its connection to done */
    struct conn *live, *done;
    long long nlive;
    int stopping;
} conns = {.lock = PTHREAD_MUTEX_INITIALIZER, .finished = PTHREAD_COND_INITIALIZER};

/* Our sockets: opened before any thread but UDP's starts, then only read. */
static int listen_fd = -1, udp_fd = -1;

static void usage(void)
{
    fprintf(stderr, "usage: %s [-a ADDR] [-p PORT] [-q] [-t SECONDS] [-m MAX] [-b BYTES] [-f]\n"
                    "  -a ADDR  numeric IPv4 or IPv6 address to listen on (default %s)\n"
                    "  -p PORT  port for TCP and UDP, 0 = any free port (default %s)\n"
                    "  -q       quiet: no per-connection log lines\n"
                    "  -t SECONDS  close a client that neither sends nor reads for\n"
                    "              that long (default: wait forever)\n"
                    "  -m MAX   serve at most MAX TCP clients at once (default %d);\n"
                    "           the next one is told \"server busy\" and closed\n"
                    "  -b BYTES UDP receive buffer, 1..%d (default %d): a larger\n"
                    "           datagram is counted and dropped, never echoed cut\n"
                    "  -f       a process per TCP client (fork) instead of a thread\n",
            PROG, DEFAULT_ADDR, DEFAULT_PORT, DEFAULT_MAX, MAX_DATAGRAM, MAX_DATAGRAM);
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

/* Set up and serve one client, in its thread or its child process. */
static void serve_connection(struct conn *c)
{
    if (prepare_client(c->fd, &opt.idle) == 0)
        serve_client(c->fd, c->peer, c->nth, opt.quiet);
    else
        log_line("%s: %s: setsockopt: %s (closed)\n", PROG, c->peer, strerror(errno));
}

/* Doubly linked lists: unlinking from the middle is O(1). */
static void push(struct conn **list, struct conn *c)
{
    c->prev = NULL;
    c->next = *list;
    if (*list != NULL)
        (*list)->prev = c;
    *list = c;
}

static void unlink_conn(struct conn **list, struct conn *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        *list = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
}

/* A connection thread: serve, then hand the connection in to be joined.
 * The socket is closed under the lock: once it is closed its number may
 * be handed to the very next accept(), and wake_everybody() must never
 * shut down a socket that belongs to somebody else by then. */
static void *connection_thread(void *arg)
{
    struct conn *c = arg;

    serve_connection(c);
    pthread_mutex_lock(&conns.lock);
    close(c->fd);
    c->fd = -1;
    unlink_conn(&conns.live, c);
    push(&conns.done, c);
    conns.nlive--;
    pthread_cond_signal(&conns.finished);
    pthread_mutex_unlock(&conns.lock);
    return NULL;
}

/* Join every thread that has finished; with ALL, wait until every one has
 * (we are stopping, and every thread was woken). pthread_join() frees
 * what the thread still holds - its stack, its thread descriptor. */
static void join_finished(int all)
{
    pthread_mutex_lock(&conns.lock);
    while (all && conns.live != NULL)
        pthread_cond_wait(&conns.finished, &conns.lock);
    struct conn *c = conns.done;
    conns.done = NULL;
    pthread_mutex_unlock(&conns.lock);
    while (c != NULL) {
        struct conn *next = c->next;
        pthread_join(c->thread, NULL);      /* it has returned, or nearly */
        free(c);
        c = next;
    }
}

/* -f: collect every child process that has ended. Under the lock, so that
 * a pid we have reaped - which the kernel may give to a new process at
 * once - is never still on the list for wake_everybody() to kill. */
static void reap_children(void)
{
    pid_t pid;
    int status;

    pthread_mutex_lock(&conns.lock);
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (struct conn *c = conns.live; c != NULL; c = c->next) {
            if (c->pid != pid)
                continue;
            if (WIFSIGNALED(status) && WTERMSIG(status) != SIGTERM)
                log_line("%s: the process serving %s died of signal %d\n", PROG, c->peer,
                         WTERMSIG(status));
            unlink_conn(&conns.live, c);
            conns.nlive--;
            free(c);
            break;
        }
    }
    pthread_mutex_unlock(&conns.lock);
}

/* -f: wait until every child has ended. waitid(WNOWAIT) sleeps until one
 * has, without reaping it: reap_children() does that, under the lock. */
static void wait_children(void)
{
    siginfo_t info;

    pthread_mutex_lock(&conns.lock);
    while (conns.live != NULL) {
        pthread_mutex_unlock(&conns.lock);
        if (waitid(P_ALL, 0, &info, WEXITED | WNOWAIT) < 0 && errno == ECHILD)
            return;                         /* none left: cannot happen */
        reap_children();
        pthread_mutex_lock(&conns.lock);
    }
    pthread_mutex_unlock(&conns.lock);
}

/* -f: serve C in a child process. The child is a copy of this thread
 * alone: the other threads are not there, and a lock one of them held at
 * the fork stays locked for ever in the child. So the child touches none
 * of our locks - it only serves, then _exit()s (exit() would run the
 * parent's stdio flushes and atexit handlers a second time). (log_line()
 * takes stderr's stdio lock: glibc resets those in a forked child.)
 * Returns 0 or an errno value. */
static int fork_child(struct conn *c)
{
    pid_t pid = fork();
    if (pid < 0)
        return errno;
    if (pid == 0) {
        child_signals();            /* so that SIGTERM ends the child */
        close(listen_fd);
        close(udp_fd);
        serve_connection(c);
        close(c->fd);
        _exit(0);
    }
    c->pid = pid;
    close(c->fd);                   /* the child has its own copy */
    c->fd = -1;
    return 0;
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

/* Give an accepted client a thread (or a process) of its own, or refuse
 * it. The new connection is on the live list before its thread runs, and
 * the list is checked for "stopping" under the same lock that
 * wake_everybody() sets it under: no connection can slip past a stop. */
static void start_connection(int fd, const struct sockaddr_storage *ss,
                             const pthread_attr_t *attr)
{
    char peer[ADDR_STRLEN];

    format_addr((const struct sockaddr *)ss, peer, sizeof peer);
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        refuse(fd, peer, "out of memory");
        return;
    }
    c->fd = fd;
    memcpy(c->peer, peer, sizeof peer);
    pthread_mutex_lock(&conns.lock);
    int stopping = conns.stopping, full = conns.nlive >= opt.max, err = 0;
    if (!stopping && !full) {
        c->nth = (unsigned long)count.served + 1;
        push(&conns.live, c);
        conns.nlive++;
        err = opt.forking ? fork_child(c)
                          : pthread_create(&c->thread, attr, connection_thread, c);
        if (err != 0) {
            unlink_conn(&conns.live, c);
            conns.nlive--;
        }
    }
    pthread_mutex_unlock(&conns.lock);
    if (!stopping && !full && err == 0) {
        count.served++;     /* only this thread writes it */
        return;
    }
    free(c);
    if (stopping)
        close(fd);
    else
        refuse(fd, peer, full ? "connection limit" : strerror(err));
}

/* The stop action, run by the signal thread: no new connections, and
 * every blocked call woken - accept() and recvmsg() by shutdown() on their
 * sockets, each connection thread by shutdown() on its client's socket
 * (its recv() returns 0), each child process (-f) by SIGTERM - and
 * SIGCONT, for a child somebody stopped (a stopped process does not act
 * on SIGTERM until it runs again). */
static void wake_everybody(void)
{
    pthread_mutex_lock(&conns.lock);
    conns.stopping = 1;
    for (struct conn *c = conns.live; c != NULL; c = c->next) {
        if (c->pid > 0) {
            kill(c->pid, SIGTERM);
            kill(c->pid, SIGCONT);
        } else if (c->fd >= 0) {
            shutdown(c->fd, SHUT_RDWR);
        }
    }
    pthread_mutex_unlock(&conns.lock);
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
    pthread_mutex_lock(&conns.lock);
    long long live = conns.nlive;
    pthread_mutex_unlock(&conns.lock);
    if (opt.forking)
        log_line("%s: %lld connections live, %llu served, %llu refused (server busy); "
                 "%s\n", PROG, live, (unsigned long long)count.served, refused, udp_line);
    else
        log_line("%s: %lld connections live, %llu served, %llu refused (server busy), "
                 "%llu bytes echoed; %s\n", PROG, live, (unsigned long long)count.served,
                 refused, (unsigned long long)count.bytes, udp_line);
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
    while ((opt_char = getopt(argc, argv, "a:p:qt:m:b:f")) != -1) {
        switch (opt_char) {
        case 'a': if (!is_numeric_addr(opt.addr = optarg)) usage(); break;
        case 'p': if (parse_port(opt.port = optarg, 0) < 0) usage(); break;
        case 'q': opt.quiet = 1; break;
        case 't': if (parse_seconds(optarg, &opt.idle) < 0) usage(); break;
        case 'm': if ((opt.max = parse_count(optarg, 1, 1000000)) < 0) usage(); break;
        case 'b': if ((opt.udp_size = parse_count(optarg, 1, MAX_DATAGRAM)) < 0) usage(); break;
        case 'f': opt.forking = 1; break;
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
        die_sys(PROG, "pthread_attr_setstacksize", "for connection threads");
    }
    open_sockets();
    udp_start(PROG, udp_fd, (size_t)opt.udp_size, opt.quiet);
    start_signal_thread(PROG, &(struct signal_actions){
        .stop = wake_everybody, .report = report, .child = opt.forking ? reap_children : NULL});
    announce_listening(PROG, listen_fd);

    while (!stop_requested()) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;

        /* accept() blocks until a client has connected, then hands us a
         * new socket for that one client; listen_fd keeps listening. */
        int fd = accept(listen_fd, (struct sockaddr *)&ss, &len);
        /* Threads that finished while we waited: joined now, before the
         * new one is made, so their stacks are free for it. */
        join_finished(0);
        if (fd < 0) {
            if (stop_requested() || can_retry_accept(PROG, listen_fd, errno))
                continue;
            log_line("%s: accept: %s\n", PROG, strerror(errno));
            rc = 1;
            break;
        }
        start_connection(fd, &ss, &attr);
    }

    /* Stopping. Every thread has been woken (or is, now, if the loop
     * ended on an error): wait for each to finish, then free what is left. */
    end_signal_thread();
    udp_finish();
    if (opt.forking)
        wait_children();
    else
        join_finished(1);
    pthread_attr_destroy(&attr);
    close(listen_fd);
    report();
    end_program(PROG);
    return rc;
}
