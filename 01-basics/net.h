/*
 * net.h - the few helpers every program in this chapter shares.
 *
 * Each chapter carries its own copy of this file, so a chapter reads on its
 * own; the next chapter adds to it and `make diff` shows what was added.
 */
#ifndef NET_H
#define NET_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#define DEFAULT_ADDR "127.0.0.1"
#define DEFAULT_PORT "9000"

/* "203.0.113.7:80" or "[2001:db8::1]:80" plus the terminating NUL. */
#define ADDR_STRLEN 64

/* Start-up failure: print "PROG: CALL WHAT: strerror(errno)" and exit 1. */
void die_sys(const char *prog, const char *call, const char *what);

/* Parse a decimal port. Returns the port, or -1 if S is not a number in
 * [min_port, 65535]. Servers allow 0 ("pick a free port"), clients do not. */
int parse_port(const char *s, int min_port);

/* Is S a numeric IPv4 or IPv6 address? */
int is_numeric_addr(const char *s);

/* Render a socket address as "ADDR:PORT" ("[ADDR]:PORT" for IPv6). */
void format_addr(const struct sockaddr *sa, char *buf, size_t len);

/* Create a socket of TYPE (SOCK_STREAM or SOCK_DGRAM) bound to ADDR:PORT;
 * a stream socket is also put in listening state. Exits 1 on failure. */
int open_server_socket(const char *prog, const char *addr, const char *port,
                       int type);

/* Print "listening on ADDR:PORT" with the port the kernel really gave us. */
void announce_listening(int fd);

/* accept() the next client, skipping errors that belong to one would-be
 * client. Returns the new socket, or -1 when the server is stopping or
 * accept() failed for good (errno says why). */
int accept_client(const char *prog, int listen_fd, struct sockaddr_storage *peer);

/* Connect a socket of TYPE to HOST:PORT, trying every address the name
 * resolves to. Returns the socket, or -1 after printing why. */
int connect_to(const char *prog, const char *host, const char *port, int type);

/* send() until all LEN bytes are gone. Returns 0, or -1 with errno set. */
int send_all(int fd, const void *buf, size_t len);

/* SIGINT/SIGTERM ask the server to stop; SIGPIPE is ignored. */
void install_signal_handlers(void);
int stop_requested(void);

/* Tell the signal handler which sockets a blocking call may be waiting on,
 * so it can wake that call up; -1 forgets a socket. */
void watch_listener(int fd);
void watch_client(int fd);

#endif
