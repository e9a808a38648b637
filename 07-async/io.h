/*
 * io.h - socket calls for tasks that read like blocking ones: each returns
 * what read(), send(), accept() ... would, and where one of those would
 * block, the task suspends until the loop sees the socket ready (or the
 * timeout, in ms, passes: 0 is none), and tries again. Nothing else in the
 * program waits meanwhile: the other tasks run.
 *
 * Errors as the system calls give them, and two more: ETIMEDOUT (the
 * timeout passed) and ECANCELED (the task was cancelled).
 */
#ifndef IO_H
#define IO_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "loop.h"

struct task;

/* A socket in the loop, and the tasks waiting on it: one may read and
 * another write at once (a reader and a writer), no more. */
struct io {
    struct watch watch;
    struct loop *loop;
    int readable, writable;     /* epoll said so, and no EAGAIN since */
    struct task *reader, *writer;
    unsigned long long sent;    /* bytes io_write_all() has sent */
    size_t unsent;              /* bytes it waits to send, while it waits */
};

/* Make FD non-blocking and watch it on loop L. Returns 0, or -1 (errno):
 * then FD is left open, for the caller to close. */
int io_open(struct loop *l, struct io *io, int fd);

/* Stop watching the socket, and close it. No task may be waiting on it:
 * in this program the task that closes a socket is the only one using it. */
void io_close(struct io *io);

/* read(): on a socket, recv() without flags; on a pipe or a terminal too. */
ssize_t io_read(struct io *io, void *buf, size_t len, long long timeout);

/* Send all LEN bytes: 0, or -1 (errno) with some of them perhaps sent.
 * TIMEOUT bounds each wait for room, not the whole call. */
int io_write_all(struct io *io, const void *buf, size_t len, long long timeout);

int io_accept(struct io *io, struct sockaddr_storage *ss, socklen_t *len, long long timeout);

ssize_t io_recvmsg(struct io *io, struct msghdr *msg, int flags, long long timeout);

/* connect() to SA: 0 once connected, or -1 (errno: the reason it was not). */
int io_connect(struct io *io, const struct sockaddr *sa, socklen_t len, long long timeout);

#endif
