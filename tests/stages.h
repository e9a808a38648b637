/*
 * stages.h - the stage table: the one place that says what each chapter's
 * programs are called and what they claim. The harness (harness.c) runs
 * every check whose property a stage claims; for a property a stage lacks
 * where the check has a "limitation" test, it asserts the documented
 * limitation instead. `make bench` runs every stage marked bench, with
 * as many connections as it says.
 *
 * Adding a chapter is its directory (NN-name/ with a Makefile, found by
 * pattern) plus one row here; a new kind of check is a function in a
 * checks_*.c file and a row in the check table of harness.c.
 */
#ifndef STAGES_H
#define STAGES_H

#include <stddef.h>

enum property {
    P_GREETING     = 1 << 0,  /* server sends one greeting line and closes */
    P_RESOLVE      = 1 << 1,  /* has `resolve` */
    P_HTTP_GET     = 1 << 2,  /* has `http_get` */
    P_TCP_ECHO     = 1 << 3,  /* every TCP byte comes back, in order */
    P_UDP_ECHO     = 1 << 4,  /* every datagram comes back whole */
    P_IDLE_TIMEOUT = 1 << 5,  /* -t SECONDS closes a silent client */
    P_CONCURRENT   = 1 << 6,  /* serves a second client while a first stays */
    P_MAX_CONNS    = 1 << 7,  /* -m MAX connections; beyond, or without a
                                 thread for it: "server busy" */
    P_COUNTERS     = 1 << 8,  /* SIGUSR1 and exit print the counters */
    P_FORK         = 1 << 9,  /* -f: a process per connection */
    P_POOL         = 1 << 10, /* -w WORKERS take clients from a queue of
                                 -Q LEN; a full queue: "server busy" */
    P_BACKPRESSURE = 1 << 11, /* a bounded output buffer per connection:
                                 a client that does not read is not read
                                 from, cannot grow the server, and holds
                                 nobody else up; the counters end with
                                 "Q bytes waiting to be sent" */
    P_C10K         = 1 << 12, /* 10,000 connections at once, every one
                                 served */
    P_HTTPD        = 1 << 13, /* server -H answers HTTP/1.1 requests,
                                 keep-alive and pipelined, with a fixed 200 */
    P_REDIAL       = 1 << 14, /* client -k SECONDS: heartbeats on a quiet
                                 connection, a dead one detected; client -R:
                                 reconnects when the server comes back */
    P_IDLERS       = 1 << 15, /* a thousand peers that never send and a
                                 hundred that trickle a byte a second delay
                                 no newcomer: echoed within 100 ms */
    P_CLIENT_CONNS = 1 << 16, /* client -c N: N connections at once, one
                                 failing does not fail the others */
};

struct stage {
    const char *name;         /* the stage's name, or NULL: dir is its name */
    const char *dir;
    const char *tcp_server;   /* program serving TCP, or NULL; options may
                                 follow its name ("server -e"): every start
                                 of it passes them first */
    const char *udp_server;   /* program serving UDP, or NULL; from 03 on
                                 the same program as tcp_server */
    const char *tcp_client;   /* the TCP client (greeting or echo) */
    const char *udp_client;   /* or NULL */
    unsigned props;
    int bench;                /* compared by `make bench`, at up to this many
                                 connections (1,000, 10,000, or as many as
                                 the descriptor limit allows); 0: not */
    const char *bench_opts;   /* options the bench adds to its server (its
                                 own limits lifted), or NULL */
    int threads;              /* has threads: ThreadSanitizer checks it */
};

static const struct stage stages[] = {
    {.dir = "01-basics", .tcp_server = "server", .tcp_client = "client",
     .props = P_GREETING | P_RESOLVE | P_HTTP_GET},
    {.dir = "02-tcp-udp", .tcp_server = "tcp_server", .udp_server = "udp_server",
     .tcp_client = "tcp_client", .udp_client = "udp_client",
     .props = P_TCP_ECHO | P_UDP_ECHO | P_IDLE_TIMEOUT, .bench = 1000},
    {.dir = "03-threads", .tcp_server = "server", .udp_server = "server",
     .tcp_client = "client", .udp_client = "udp_client",
     .props = P_TCP_ECHO | P_UDP_ECHO | P_IDLE_TIMEOUT | P_CONCURRENT | P_MAX_CONNS |
              P_COUNTERS | P_FORK | P_IDLERS | P_CLIENT_CONNS, .bench = 10000, .threads = 1},
    {.dir = "04-threadpool", .tcp_server = "server", .udp_server = "server",
     .tcp_client = "client", .udp_client = "udp_client",
     .props = P_TCP_ECHO | P_UDP_ECHO | P_IDLE_TIMEOUT | P_CONCURRENT | P_POOL | P_COUNTERS |
              P_CLIENT_CONNS,
     .bench = 1000, .threads = 1},
    {.dir = "05-select", .tcp_server = "server", .udp_server = "server",
     .tcp_client = "client", .udp_client = "udp_client",
     .props = P_TCP_ECHO | P_UDP_ECHO | P_IDLE_TIMEOUT | P_CONCURRENT | P_MAX_CONNS |
              P_COUNTERS | P_BACKPRESSURE | P_IDLERS | P_CLIENT_CONNS, .bench = 1000},
    {.dir = "06-epoll", .tcp_server = "server", .udp_server = "server",
     .tcp_client = "client", .udp_client = "udp_client",
     .props = P_TCP_ECHO | P_UDP_ECHO | P_IDLE_TIMEOUT | P_CONCURRENT | P_MAX_CONNS |
              P_COUNTERS | P_BACKPRESSURE | P_C10K | P_IDLERS | P_CLIENT_CONNS, .bench = 50000, .bench_opts = "-m 100000"},
    {.name = "06-epoll-et", .dir = "06-epoll", .tcp_server = "server -e",
     .udp_server = "server -e", .tcp_client = "client", .udp_client = "udp_client",
     .props = P_TCP_ECHO | P_UDP_ECHO | P_IDLE_TIMEOUT | P_CONCURRENT | P_MAX_CONNS |
              P_COUNTERS | P_BACKPRESSURE | P_C10K | P_IDLERS | P_CLIENT_CONNS, .bench = 50000, .bench_opts = "-m 100000"},
    {.dir = "07-async", .tcp_server = "server", .udp_server = "server",
     .tcp_client = "client", .udp_client = "udp_client",
     .props = P_TCP_ECHO | P_UDP_ECHO | P_IDLE_TIMEOUT | P_CONCURRENT | P_MAX_CONNS |
              P_COUNTERS | P_BACKPRESSURE | P_C10K | P_HTTPD | P_REDIAL | P_IDLERS |
              P_CLIENT_CONNS, .bench = 50000,
     .bench_opts = "-m 100000"},
};

/* The name reports, -s and the bench use. */
static inline const char *stage_name(const struct stage *st)
{
    return st->name != NULL ? st->name : st->dir;
}

#define NSTAGES ((int)(sizeof stages / sizeof stages[0]))

#endif
