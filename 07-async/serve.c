/*
 * serve.c - the framework: chapter 06's server without its conversation.
 * What is left is what every server needs - the sockets, the accepting,
 * the limits, the signals, the counters - written as tasks: the accept
 * loop, a task per client, the UDP socket's task and a task for signals,
 * each a plain loop that reads top to bottom.
 */
#include "serve.h"
#include "stop.h"
#include "task.h"
#include "udp.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* With -p 0, how often we let the kernel pick a TCP port before giving up
 * on finding one that is free for UDP too. */
#define PORT_TRIES 20

/* Everything the framework knows. One thread: nothing here needs a lock. */
static struct {
    const struct service *svc;
    struct loop *loop;
    int listen_fd, udp_fd;
    struct io listener, udp;
    struct watch signals;       /* the signal pipe, level-triggered */
    struct task *signal_task;
    struct client *first;       /* every client being served */
    long long live;
    unsigned long accepted;
    unsigned long long served, refused, bytes;
    int failed;                 /* the server cannot go on: exit 1 */
} srv;

/* socket() -> bind() -> listen(): a socket that takes connections. */
static int open_listener(const char *prog, const char *addr, const char *port)
{
    struct addrinfo *ai = server_address(prog, addr, port, SOCK_STREAM);
    char where[ADDR_STRLEN];
    int one = 1;

    format_addr(ai->ai_addr, where, sizeof where);
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0)
        die_sys(prog, "socket", where);
    /* Without SO_REUSEADDR a restarted server cannot bind while connections
     * of its previous run sit in TIME_WAIT. (A second server still cannot
     * bind a port that one is listening on: TCP refuses that anyway.) */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die_sys(prog, "setsockopt SO_REUSEADDR", where);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        die_sys(prog, "bind", where);
    /* From here on the kernel completes handshakes by itself and queues
     * the connections, up to the backlog, until we accept() them. */
    if (listen(fd, SOMAXCONN) < 0)
        die_sys(prog, "listen", where);
    freeaddrinfo(ai);
    return fd;
}

/* The TCP listener and the UDP socket, on one port number. With -p 0 the
 * kernel picks a port free for TCP, which some other program may hold for
 * UDP: then we close both and let it pick again. */
static void open_sockets(const struct service *svc)
{
    int any_port = parse_port(svc->port, 0) == 0;

    for (int tries = 1;; tries++) {
        srv.listen_fd = open_listener(svc->prog, svc->addr, svc->port);
        if (svc->udp_handler == NULL)
            return;
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (getsockname(srv.listen_fd, (struct sockaddr *)&ss, &len) < 0)
            die_sys(svc->prog, "getsockname", "of our own socket");
        srv.udp_fd = udp_open(svc->prog, (struct sockaddr *)&ss, len,
                              any_port && tries < PORT_TRIES);
        if (srv.udp_fd >= 0)
            return;
        close(srv.listen_fd);
    }
}

/* Say why the conversation ended, in the words a reader would use. */
static const char *why_closed(int err)
{
    if (err == 0)
        return "client closed";
    if (err == ETIMEDOUT)
        return "idle timeout";
    if (err == ECANCELED)
        return "server stopping";
    return strerror(err);
}

/* ---- a task per client --------------------------------------------------- */

/* Bytes sent to a client are counted where they go out (io_write_all());
 * the framework adds them up. */
static void link_client(struct client *c)
{
    c->prev = NULL;
    c->next = srv.first;
    if (srv.first != NULL)
        srv.first->prev = c;
    srv.first = c;
    srv.live++;
}

static void unlink_client(struct client *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv.first = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    srv.live--;
}

/* The life of one connection: the handler's conversation, then the close,
 * on the task's own stack - after a cancellation too. */
static void client_task(void *arg)
{
    struct client *c = arg;
    const struct service *svc = srv.svc;

    int err = svc->handler(c);
    if (!svc->quiet)
        log_line("%s: %s closed after %llu bytes %s: %s\n", svc->prog, c->peer, c->io.sent,
                 svc->verb, why_closed(err));
    srv.bytes += c->io.sent;
    unlink_client(c);
    io_close(&c->io);
    free(c);
}

/* Turn a newcomer away and say so: one line, then close - never a silent
 * close, never a hang. The line goes into a fresh, empty send buffer, so
 * send() cannot block; if it fails, the client has gone already, and
 * there is nobody left to tell. */
static void refuse(int fd, const char *peer, const char *why)
{
    send(fd, SERVER_BUSY, strlen(SERVER_BUSY), MSG_NOSIGNAL);
    close(fd);
    srv.refused++;
    if (!srv.svc->quiet)
        log_line("%s: %s refused (%s): server busy\n", srv.svc->prog, peer, why);
}

/* A new client: a task of its own from now on, or refused at one of our
 * limits. TCP_NODELAY sends each answer at once (with Nagle's algorithm a
 * small piece waits for the ACK of the previous one, and the client may
 * delay that by 40 ms). */
static void start_client(int fd, const struct sockaddr_storage *ss)
{
    const struct service *svc = srv.svc;
    char peer[ADDR_STRLEN];
    int one = 1;

    format_addr((const struct sockaddr *)ss, peer, sizeof peer);
    if (srv.live >= svc->max_conns) {
        refuse(fd, peer, "connection limit");
        return;
    }
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) {
        log_line("%s: %s: setsockopt TCP_NODELAY: %s (closed)\n", svc->prog, peer,
                 strerror(errno));
        close(fd);
        return;
    }
    struct client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        refuse(fd, peer, "out of memory");
        return;
    }
    if (io_open(srv.loop, &c->io, fd) < 0) {
        refuse(fd, peer, strerror(errno));
        free(c);
        return;
    }
    /* The task's stack: a mapping, which the kernel may refuse
     * (vm.max_map_count, or memory). */
    if (task_spawn(client_task, c) == NULL) {
        const char *why = strerror(errno);
        loop_unwatch(srv.loop, &c->io.watch);
        free(c);
        refuse(fd, peer, why);
        return;
    }
    c->nth = ++srv.accepted;
    memcpy(c->peer, peer, sizeof peer);
    link_client(c);
    srv.served++;
    if (!svc->quiet)
        log_line("%s: %s connected (client #%lu)\n", svc->prog, peer, c->nth);
}

/* The listener's task: accept, and start a task per client. Out of
 * descriptors, accept_pause_ms() turns a few waiting clients away, and we
 * sleep: a task that sleeps costs the loop nothing. */
static void accept_task(void *arg)
{
    (void)arg;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = io_accept(&srv.listener, &ss, &len, 0);
        if (fd >= 0) {
            start_client(fd, &ss);
            continue;
        }
        if (errno == ECANCELED)
            break;              /* the server is stopping */
        int pause = accept_pause_ms(srv.svc->prog, srv.listen_fd, errno);
        if (pause < 0) {
            log_line("%s: accept: %s\n", srv.svc->prog, strerror(errno));
            srv.failed = 1;
            tasks_cancel_all();
            break;
        }
        if (pause > 0 && task_sleep(pause) < 0)
            break;
    }
    io_close(&srv.listener);
}

/* ---- the rest: UDP, signals, the counters -------------------------------- */

static void udp_task(void *arg)
{
    (void)arg;
    srv.svc->udp_handler(&srv.udp);
    io_close(&srv.udp);
}

/* SIGUSR1, and the last line at exit: what the counters say. */
static void report(void *arg)
{
    const struct service *svc = arg;
    char udp_line[256] = "no UDP";
    unsigned long long sent = srv.bytes, held = 0;

    for (const struct client *c = srv.first; c != NULL; c = c->next) {
        sent += c->io.sent;
        held += c->io.unsent;
    }
    if (svc->udp_summary != NULL)
        svc->udp_summary(udp_line, sizeof udp_line);
    /* Refused by us, or by turn_away() when out of descriptors. */
    log_line("%s: %lld connections live, %llu served, %llu refused (server busy), "
             "%llu bytes %s; %s; %llu bytes waiting to be sent\n", svc->prog, srv.live,
             srv.served, srv.refused + clients_turned_away(), sent, svc->verb, udp_line, held);
}

/* The signal pipe: its task is woken, level-triggered (a byte left in the
 * pipe wakes it again next turn), and reads it. */
static void on_signal_pipe(struct watch *w, uint32_t events)
{
    (void)w;
    (void)events;
    task_wake(srv.signal_task);
}

/* Signals, as a task: SIGUSR1 reports; SIGINT or SIGTERM cancel every
 * other task, whose pending call fails with ECANCELED: each cleans up
 * and returns, and when the last has, tasks_run() returns. */
static void signal_task(void *arg)
{
    (void)arg;
    while (!stop_requested() && !srv.failed) {
        if (task_suspend(0) < 0)
            break;
        take_signals(report, (void *)srv.svc);
    }
    tasks_cancel_all();
    loop_unwatch(srv.loop, &srv.signals);
}

int serve(const struct service *svc)
{
    srv.svc = svc;
    raise_fd_limit(svc->prog);
    open_sockets(svc);
    if ((srv.loop = loop_new()) == NULL)
        die_sys(svc->prog, "epoll_create1", "for the loop");
    tasks_init(srv.loop, svc->stack_size);
    if (io_open(srv.loop, &srv.listener, srv.listen_fd) < 0)
        die_sys(svc->prog, "epoll_ctl", "the listener");
    if (svc->udp_handler != NULL && io_open(srv.loop, &srv.udp, srv.udp_fd) < 0)
        die_sys(svc->prog, "epoll_ctl", "the UDP socket");
    srv.signals = (struct watch){.fd = open_signal_pipe(svc->prog), .on_event = on_signal_pipe};
    if (loop_watch(srv.loop, &srv.signals, EPOLLIN) < 0)
        die_sys(svc->prog, "epoll_ctl", "the signal pipe");
    if (task_spawn(accept_task, NULL) == NULL ||
        (svc->udp_handler != NULL && task_spawn(udp_task, NULL) == NULL) ||
        (srv.signal_task = task_spawn(signal_task, NULL)) == NULL)
        die_sys(svc->prog, "mmap", "a task's stack");
    announce_listening(svc->prog, srv.listen_fd);

    if (tasks_run() < 0) {
        log_line("%s: epoll_wait: %s\n", svc->prog, strerror(errno));
        srv.failed = 1;
    }

    /* Every task has returned, its socket closed: the counters, then the
     * rest. */
    report((void *)svc);
    close_signal_pipe();
    tasks_finish();
    loop_free(srv.loop);
    end_program(svc->prog);
    return srv.failed;
}
