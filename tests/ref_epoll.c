/*
 * ref_epoll.c - the tightest epoll TCP echo server we know how to write:
 * a reference row for tests/bench.sh ("epoll-floor"), not a stage of the
 * course.
 *
 * Why it is here: chapter 06's performance target (issue 8) is a ratio to
 * this program, measured in the same bench run: at 100 connections x 64 B,
 * 06 should reach at least 0.95x its msgs/s and spend at most 1.1x its
 * server CPU per message, at depth 1 and at depth 16.
 *
 * Why it is the floor: per message it makes the two system calls an echo
 * cannot do without, one recv() and one send(), plus a share of one
 * epoll_wait() that hands back up to MAX_EVENTS ready sockets at once.
 * Nothing else happens per message: no epoll_ctl() (interest stays EPOLLIN
 * on the fast path), no timer, no malloc, no copy, no log line, one thread.
 *
 * Why level-triggered: a socket stays reported while unread bytes wait,
 * so one recv() per wake-up is enough - whatever one 64 KiB recv() left
 * behind comes back in the next epoll_wait(). Edge-triggered would need a
 * further recv() until EAGAIN on every wake-up: a third call per message.
 *
 * Why it still cannot lose data: a send() that takes less than all (the
 * client is not reading, its window is full) is rare, and handled the
 * slow way: the rest is copied into a buffer of that connection's own
 * (struct slot), and its interest switches from EPOLLIN to EPOLLOUT. Not
 * reading it until the rest is out keeps the bytes in order and bounds
 * memory at one 64 KiB leftover per connection; once it is out, back to
 * EPOLLIN. Two epoll_ctl() calls and a malloc, only when a send() is short.
 *
 * Connections are known by descriptor: epoll hands back data.fd, and a
 * table indexed by it (grown as descriptors grow) says which are open
 * and holds any leftover. SIGTERM or SIGINT arrive through a signalfd in
 * the same epoll set; we close everything, free everything and exit 0.
 * TCP only: bench.sh measures TCP, so no UDP here.
 *
 * usage: ref_epoll [-a ADDR] [-p PORT] [-q]
 * build: make -C tests ref_epoll   (libc only)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROG "ref_epoll"
#define BACKLOG 4096
#define BUF_SIZE (64 * 1024)
#define MAX_EVENTS 1024
#define ADDR_STRLEN 64
#define SERVER_BUSY "server busy\n"

/* What send() did not take, waiting for EPOLLOUT. */
struct leftover {
    size_t off, len;
    char data[];
};

/* One per descriptor number, open or not. */
struct slot {
    bool open;
    struct leftover *rest;      /* NULL: none, interest is EPOLLIN */
};

/* Everything the loop knows: one thread, so no locks, and no globals. */
struct server {
    int epfd, listen_fd, signal_fd;
    int spare_fd;               /* /dev/null, given up to refuse a client at EMFILE */
    bool quiet;
    struct slot *slots;         /* indexed by descriptor */
    size_t nslots;
    struct epoll_event events[MAX_EVENTS];
    char buf[BUF_SIZE];         /* every recv() lands here; sent back at once */
};

static void usage(void)
{
    fprintf(stderr, "usage: %s [-a ADDR] [-p PORT] [-q]\n", PROG);
    exit(2);
}

static void die_sys(const char *call, const char *what)
{
    fprintf(stderr, "%s: %s %s: %s\n", PROG, call, what, strerror(errno));
    exit(1);
}

static void format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";

    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        snprintf(buf, len, "[%s]:%u", host, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        snprintf(buf, len, "%s:%u", host, ntohs(s4->sin_port));
    }
}

static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die_sys("getrlimit", "RLIMIT_NOFILE");
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die_sys("setrlimit", "RLIMIT_NOFILE");
}

/* A non-blocking listener on ADDR:PORT (numeric both); writes where it is. */
static int open_listener(const char *addr, const char *port, char *where, size_t len)
{
    struct addrinfo hints = {0}, *ai;
    int one = 1;

    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    int rc = getaddrinfo(addr, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "%s: %s:%s: %s\n", PROG, addr, port, gai_strerror(rc));
        exit(1);
    }
    format_addr(ai->ai_addr, where, len);
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die_sys("socket", where);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die_sys("setsockopt SO_REUSEADDR", where);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        die_sys("bind", where);
    if (listen(fd, BACKLOG) < 0)
        die_sys("listen", where);
    freeaddrinfo(ai);

    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0)
        die_sys("getsockname", where);
    format_addr((struct sockaddr *)&ss, where, len);
    return fd;
}

/* Nothing moved, but nothing wrong: the socket is not ready after all, or
 * (under tests/shortio.so; here signals wait in the signalfd) EINTR. */
static bool try_later(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

static int watch(struct server *s, int op, int fd, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.fd = fd};
    return epoll_ctl(s->epfd, op, fd, &ev);
}

/* The slot of descriptor FD, the table grown to hold it; NULL if out of memory. */
static struct slot *slot_for(struct server *s, int fd)
{
    size_t need = (size_t)fd + 1;

    if (need > s->nslots) {
        size_t n = s->nslots ? s->nslots : 1024;
        while (n < need)
            n *= 2;
        struct slot *t = realloc(s->slots, n * sizeof *t);
        if (t == NULL)
            return NULL;
        memset(t + s->nslots, 0, (n - s->nslots) * sizeof *t);
        s->slots = t;
        s->nslots = n;
    }
    return &s->slots[fd];
}

static void close_client(struct server *s, int fd, const char *why)
{
    struct slot *sl = &s->slots[fd];

    free(sl->rest);
    sl->rest = NULL;
    sl->open = false;
    close(fd);                  /* also takes it out of the epoll set */
    if (!s->quiet)
        fprintf(stderr, "%s: fd %d closed: %s\n", PROG, fd, why);
}

/* Out of descriptors, the listener would stay readable for ever and the
 * loop would spin: give up the spare one, take the client, tell it, and
 * close it. Returns false if even that failed. */
static bool turn_away(struct server *s)
{
    if (s->spare_fd < 0)
        return false;
    close(s->spare_fd);
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd >= 0) {
        send(fd, SERVER_BUSY, strlen(SERVER_BUSY), MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
    }
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0;
}

static void accept_clients(struct server *s)
{
    int one = 1;

    for (;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(s->listen_fd, (struct sockaddr *)&ss, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == ECONNABORTED || errno == EINTR || errno == EPROTO)
                continue;       /* that client is gone; the next may be there */
            if ((errno == EMFILE || errno == ENFILE) && turn_away(s))
                continue;
            fprintf(stderr, "%s: accept: %s\n", PROG, strerror(errno));
            return;             /* level-triggered: we are called again */
        }
        struct slot *sl = slot_for(s, fd);
        /* Echo each reply at once, not held back by Nagle for an ACK. */
        if (sl == NULL || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
            watch(s, EPOLL_CTL_ADD, fd, EPOLLIN) < 0) {
            fprintf(stderr, "%s: setting up fd %d: %s (closed)\n", PROG, fd,
                    sl == NULL ? "out of memory" : strerror(errno));
            close(fd);
            continue;
        }
        sl->open = true;
        if (!s->quiet) {
            char peer[ADDR_STRLEN];
            format_addr((struct sockaddr *)&ss, peer, sizeof peer);
            fprintf(stderr, "%s: %s connected (fd %d)\n", PROG, peer, fd);
        }
    }
}

/* send() took only SENT of N bytes: keep the rest, stop reading, wait for
 * EPOLLOUT. 0, or -1 (errno set) to close the connection. */
static int keep_rest(struct server *s, int fd, const char *buf, size_t sent, size_t n)
{
    struct leftover *r = malloc(sizeof *r + (n - sent));

    if (r == NULL) {
        errno = ENOMEM;
        return -1;
    }
    r->off = 0;
    r->len = n - sent;
    memcpy(r->data, buf + sent, r->len);
    s->slots[fd].rest = r;
    return watch(s, EPOLL_CTL_MOD, fd, EPOLLOUT);
}

/* EPOLLOUT: send what is left; once it is all out, read again. */
static int flush_rest(struct server *s, int fd)
{
    struct leftover *r = s->slots[fd].rest;
    ssize_t n = send(fd, r->data + r->off, r->len - r->off, MSG_NOSIGNAL);

    if (n < 0)
        return try_later(errno) ? 0 : -1;
    r->off += (size_t)n;
    if (r->off < r->len)
        return 0;
    free(r);
    s->slots[fd].rest = NULL;
    return watch(s, EPOLL_CTL_MOD, fd, EPOLLIN);
}

/* The fast path: one recv(), one send(). 0, 1 for end of file, or -1
 * (errno set) to close the connection. MSG_NOSIGNAL: a client that has
 * gone gives EPIPE, not a SIGPIPE that would kill us. */
static int echo(struct server *s, int fd)
{
    ssize_t n = recv(fd, s->buf, sizeof s->buf, 0);

    if (n <= 0) {
        if (n == 0)
            return 1;
        return try_later(errno) ? 0 : -1;
    }
    ssize_t sent = send(fd, s->buf, (size_t)n, MSG_NOSIGNAL);
    if (sent == n)
        return 0;
    if (sent < 0) {
        if (!try_later(errno))
            return -1;
        sent = 0;
    }
    return keep_rest(s, fd, s->buf, (size_t)sent, (size_t)n);
}

static void serve(struct server *s, int fd)
{
    int rc = s->slots[fd].rest ? flush_rest(s, fd) : echo(s, fd);

    if (rc != 0)
        close_client(s, fd, rc < 0 ? strerror(errno) : "client closed");
}

static void run(struct server *s)
{
    for (;;) {
        int n = epoll_wait(s->epfd, s->events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die_sys("epoll_wait", "the loop");
        }
        for (int i = 0; i < n; i++) {
            int fd = s->events[i].data.fd;
            if (fd == s->listen_fd)
                accept_clients(s);
            else if (fd == s->signal_fd)
                return;         /* SIGTERM or SIGINT: no need to read which */
            else
                serve(s, fd);
        }
    }
}

int main(int argc, char **argv)
{
    struct server s = {.spare_fd = -1};
    const char *addr = "127.0.0.1", *port = "9000";
    char where[ADDR_STRLEN];
    int opt;

    while ((opt = getopt(argc, argv, "a:p:q")) != -1) {
        switch (opt) {
        case 'a': addr = optarg; break;
        case 'p': port = optarg; break;
        case 'q': s.quiet = true; break;
        default: usage();
        }
    }
    size_t digits = strspn(port, "0123456789");
    if (optind != argc || digits == 0 || digits > 5 || port[digits] != '\0' || atol(port) > 65535)
        usage();

    /* Blocked, so that they wait in the signalfd instead of killing us. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        die_sys("sigprocmask", "SIGTERM and SIGINT");
    raise_fd_limit();
    if ((s.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
        die_sys("open", "/dev/null");
    s.listen_fd = open_listener(addr, port, where, sizeof where);
    if ((s.signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
        die_sys("signalfd", "SIGTERM and SIGINT");
    if ((s.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        die_sys("epoll_create1", "the loop");
    if (watch(&s, EPOLL_CTL_ADD, s.listen_fd, EPOLLIN) < 0 ||
        watch(&s, EPOLL_CTL_ADD, s.signal_fd, EPOLLIN) < 0)
        die_sys("epoll_ctl", "the listener and the signalfd");

    printf("listening on %s\n", where);
    if (fflush(stdout) != 0)
        die_sys("write", "the 'listening on' line");

    run(&s);

    for (size_t fd = 0; fd < s.nslots; fd++)
        if (s.slots[fd].open)
            close_client(&s, (int)fd, "server stopping");
    free(s.slots);
    close(s.epfd);
    close(s.signal_fd);
    close(s.listen_fd);
    if (s.spare_fd >= 0)
        close(s.spare_fd);
    return 0;
}
