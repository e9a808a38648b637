/*
 * net.h - what every program of the course needs and no chapter changes:
 * start-up, parsing the command line, addresses, connecting with a time
 * limit, sending everything, and logging that never blocks.
 *
 * Each chapter carries an identical copy (`make test` checks that it is
 * identical), so a chapter reads on its own and a fix reaches every copy.
 * What a chapter teaches - how its server waits and stops - is in stop.c.
 */
#ifndef NET_H
#define NET_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>

#define DEFAULT_ADDR "127.0.0.1"
#define DEFAULT_PORT "9000"
/* How long a client waits for the server (connect, and each reply), -T. */
#define DEFAULT_TIMEOUT "10"

/* "203.0.113.7:80" or "[2001:db8::1]:80" plus the terminating NUL. */
#define ADDR_STRLEN 64

/* The largest UDP payload: 65,507 bytes over IPv4, 65,527 over IPv6. A
 * 64 KiB buffer holds any datagram either can carry. */
#define MAX_DATAGRAM 65536

/* First thing in every main(): standard descriptors that are not open are
 * opened on /dev/null, and SIGPIPE is ignored. Exits 1 if it cannot. */
void init_program(const char *prog);

/* Start-up failure: print "PROG: CALL WHAT: strerror(errno)" and exit 1. */
void die_sys(const char *prog, const char *call, const char *what);

/* Parse a decimal count in [min, max] (digits only, no sign, no spaces);
 * -1 if S is not one. */
long long parse_count(const char *s, long long min, long long max);

/* Parse a decimal port in [min_port, 65535]; -1 if S is not one. Servers
 * allow 0 ("pick a free port"), clients do not. */
int parse_port(const char *s, int min_port);

/* Parse seconds written as "2", "0.5" or "10.25" (decimal digits and at
 * most one point) in [0.001, 1000000] into a timeval; -1 if S is not. */
int parse_seconds(const char *s, struct timeval *tv);

/* Is S a numeric IPv4 or IPv6 address? */
int is_numeric_addr(const char *s);

/* Render a socket address as "ADDR:PORT" ("[ADDR]:PORT" for IPv6). */
void format_addr(const struct sockaddr *sa, char *buf, size_t len);

/* The address a server binds to: numeric ADDR and PORT, for a socket of
 * TYPE. Exits 1 with a message if getaddrinfo() fails. Free the result
 * with freeaddrinfo(). */
struct addrinfo *server_address(const char *prog, const char *addr, const char *port,
                                int type);

/* Raise this process's soft limit on open descriptors to the hard limit:
 * a server's connections are descriptors. And set one descriptor aside,
 * for turn_away(). Exits 1 if it cannot. */
void raise_fd_limit(const char *prog);

/* What a server at a limit tells a newcomer before it closes. */
#define SERVER_BUSY "server busy\n"

/* Out of descriptors, accept() fails (EMFILE, ENFILE) and the client it
 * could not take waits unanswered. If one is waiting, free the spare
 * descriptor for a moment: accept that client with it, tell it
 * SERVER_BUSY, close it, and set the spare aside again. Returns 1 if a
 * client was turned away, 0 if none was waiting (or no spare is left). */
int turn_away(int listen_fd);
/* How many clients turn_away() has turned away. */
unsigned long long clients_turned_away(void);

/* Print "listening on ADDR:PORT" with the port the kernel really gave FD,
 * and flush it. Exits 1 if it cannot. */
void announce_listening(const char *prog, int fd);

/* Connect a socket of TYPE to HOST:PORT, trying every address the name
 * resolves to, each for at most TIMEOUT (NULL: as long as the kernel
 * tries). With a TIMEOUT, every later recv() and send() on the socket
 * waits at most that long too, then fails with EAGAIN. Returns the socket,
 * or -1 after printing why. */
int connect_to(const char *prog, const char *host, const char *port, int type,
               const struct timeval *timeout);

/* After a recv() failed: say why, naming WHAT we were waiting for - "no
 * answer within T s" when the TIMEOUT ran out (errno EAGAIN). */
void report_wait_failure(const char *prog, const char *what, const struct timeval *timeout);

/* Byte I of the clients' test data. */
char test_byte(unsigned long long i);

/* send() until all LEN bytes are gone. Returns 0, or -1 with errno set. */
int send_all(int fd, const void *buf, size_t len);

/* A server's log line on stderr, written only if it can be written at
 * once: a full pipe or a stopped terminal never stops service. A line
 * that cannot be written is dropped and counted. */
void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The last call of a server, every other thread gone: say how many log
 * lines were dropped, if any, and close the descriptors init_program()
 * and raise_fd_limit() opened - a server that stops closes everything it
 * opened (valgrind --track-fds=yes checks that). */
void end_program(const char *prog);

#endif
