/*
 * serve.h - the framework: one call that does what every server in this
 * course does around its conversation with a client - listen on TCP, and
 * UDP on the same port; accept; a task per client, within a limit; the
 * descriptor limit; SIGUSR1's counters; SIGINT and SIGTERM - so that a
 * server is its handler and a main() of a few lines. Python's
 * asyncio.start_server() and socketserver are this, for Python.
 */
#ifndef SERVE_H
#define SERVE_H

#include <stddef.h>

#include "io.h"
#include "net.h"

/* One client, as its handler sees it. */
struct client {
    struct io io;
    char peer[ADDR_STRLEN];
    unsigned long nth;
    struct client *prev, *next;
};

struct service {
    const char *prog;
    const char *addr, *port;
    int quiet;                  /* no line per client */
    long long max_conns;        /* the next one is told "server busy" */
    size_t stack_size;          /* each task's */
    /* The conversation with C, in a task of its own. Returns 0 when the
     * client has closed, else an errno value: why it ended (ETIMEDOUT:
     * idle; ECANCELED: the server is stopping). The framework logs it and
     * closes the socket. */
    int (*handler)(struct client *c);
    const char *verb;           /* "echoed": what the log says of bytes sent */
    /* If set, the UDP socket's own task, and what to add to the counters. */
    void (*udp_handler)(struct io *io);
    void (*udp_summary)(char *buf, size_t len);
};

/* Serve until SIGINT or SIGTERM; then cancel every task, let each clean
 * up, free everything. Returns the exit status: 0, or 1 if the server
 * could not go on. Set-up failures exit at once, saying why. */
int serve(const struct service *svc);

#endif
