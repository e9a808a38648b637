/*
 * io.c - blocking-looking socket calls for tasks.
 *
 * Each socket is registered with epoll once, when it opens, for input
 * and output, edge-triggered: epoll reports it when it *becomes* readable
 * or writable, and we keep what it said in two flags. No epoll_ctl() after
 * that, whatever the task does: the call that would have blocked
 * (EAGAIN) clears the flag, the task suspends, and the next edge sets the
 * flag and wakes it. Chapter 06's rule for edge-triggered sockets - go on
 * until EAGAIN, since nothing else will tell you - is kept by the shape of
 * the calls: a task only ever waits after an EAGAIN.
 *
 * Where a task never has to wait - a client that keeps sending, a flood of
 * datagrams - it would never give the loop back, and every other task
 * would wait for it. So each call counts against the task's budget
 * (task_spent()), which makes it yield now and then: 06's READ_BUDGET,
 * for every task.
 */
#include "io.h"
#include "task.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

/* epoll's report for IO's socket: keep it, wake whoever waits for it. A
 * hang-up or an error wakes both: their next call meets it. */
static void on_event(struct watch *w, uint32_t events)
{
    struct io *io = container_of(w, struct io, watch);

    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        io->readable = 1;
        if (io->reader != NULL)
            task_wake(io->reader);
    }
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
        io->writable = 1;
        if (io->writer != NULL)
            task_wake(io->writer);
    }
}

int io_open(struct loop *l, struct io *io, int fd)
{
    *io = (struct io){.watch = {.fd = fd, .on_event = on_event}, .loop = l};
    /* Sockets are born with no other status flags: no F_GETFL needed. */
    if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
        return -1;
    /* Readable and writable until a call says EAGAIN: try first, wait after. */
    io->readable = io->writable = 1;
    return loop_watch(l, &io->watch, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
}

void io_close(struct io *io)
{
    /* Out of epoll first: see chapter 06's close_conn(). */
    loop_unwatch(io->loop, &io->watch);
    close(io->watch.fd);
    io->watch.fd = -1;
}

/*
 * A call on IO's socket failed. If it was EAGAIN - it would have blocked
 * - the socket is not READY after all: suspend as *WAITER until epoll
 * says it is (or the timeout passes, or the task is cancelled). Returns 1
 * to try the call again (after EINTR too), 0 to give up, with errno set.
 */
static inline int wait_ready(struct io *io, int *ready, struct task **waiter,
                             long long timeout)
{
    if (errno == EINTR)
        return 1;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
        return 0;
    long long until = timeout > 0 ? loop_now(io->loop) + timeout : 0, left = timeout;
    *ready = 0;
    for (;;) {
        *waiter = task_self();
        int rc = task_suspend(left);
        *waiter = NULL;
        if (rc < 0)
            return 0;
        if (*ready)
            return 1;
        /* Woken for nothing (a task_wake() not meant for this wait): the
         * rest of the time, not all of it again. */
        if (until != 0 && (left = until - loop_now(io->loop)) <= 0) {
            errno = ETIMEDOUT;
            return 0;
        }
    }
}

ssize_t io_read(struct io *io, void *buf, size_t len, long long timeout)
{
    ssize_t n;

    if (task_spent() < 0)
        return -1;
    while ((n = read(io->watch.fd, buf, len)) < 0 &&
           wait_ready(io, &io->readable, &io->reader, timeout))
        ;
    return n;
}

int io_write_all(struct io *io, const void *buf, size_t len, long long timeout)
{
    const char *p = buf;

    if (task_spent() < 0)
        return -1;
    while (len > 0) {
        ssize_t n = send(io->watch.fd, p, len, MSG_NOSIGNAL);
        if (n >= 0) {
            p += n;
            len -= (size_t)n;
            io->sent += (size_t)n;
            continue;
        }
        /* While it waits, what it holds back is on the record (SIGUSR1). */
        io->unsent = len;
        int again = wait_ready(io, &io->writable, &io->writer, timeout);
        io->unsent = 0;
        if (!again)
            return -1;
    }
    return 0;
}

int io_accept(struct io *io, struct sockaddr_storage *ss, socklen_t *len, long long timeout)
{
    int fd;
    socklen_t size = *len;

    if (task_spent() < 0)
        return -1;
    while ((fd = accept(io->watch.fd, (struct sockaddr *)ss, len)) < 0 &&
           wait_ready(io, &io->readable, &io->reader, timeout))
        *len = size;
    return fd;
}

ssize_t io_recvmsg(struct io *io, struct msghdr *msg, int flags, long long timeout)
{
    ssize_t n;
    socklen_t size = msg->msg_namelen;

    if (task_spent() < 0)
        return -1;
    while ((n = recvmsg(io->watch.fd, msg, flags)) < 0 &&
           wait_ready(io, &io->readable, &io->reader, timeout))
        msg->msg_namelen = size;
    return n;
}

int io_connect(struct io *io, const struct sockaddr *sa, socklen_t len, long long timeout)
{
    int err;
    socklen_t size = sizeof err;

    if (task_spent() < 0)
        return -1;
    if (connect(io->watch.fd, sa, len) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return -1;
    /* The handshake goes on without us: the socket turns writable when it
     * is over, and SO_ERROR says how it went. */
    errno = EAGAIN;
    if (!wait_ready(io, &io->writable, &io->writer, timeout))
        return -1;
    if (getsockopt(io->watch.fd, SOL_SOCKET, SO_ERROR, &err, &size) < 0)
        return -1;
    if (err != 0) {
        errno = err;
        return -1;
    }
    return 0;
}
