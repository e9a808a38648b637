/*
 * udp.h - chapter 02's UDP echo server, as one thread of the server: the
 * TCP side gets a thread per connection, UDP needs just one, since one
 * socket serves every sender.
 */
#ifndef UDP_H
#define UDP_H

#include <stddef.h>
#include <sys/socket.h>

/* A datagram socket bound to SA. If the address is taken and TAKEN_OK,
 * returns -1 (the caller picks another port); any other failure exits 1
 * with a message. */
int udp_open(const char *prog, const struct sockaddr *sa, socklen_t len, int taken_ok);

/* Echo on FD in a thread of its own, into a buffer of SIZE bytes; QUIET:
 * no per-datagram log lines. Exits 1 if it cannot. */
void udp_start(const char *prog, int fd, size_t size, int quiet);

/* Wake the thread up to stop (it must see stop_requested() too); then
 * join it, close the socket and free the buffer. */
void udp_wake(void);
void udp_finish(void);

/* "N datagrams echoed, ..." into BUF: safe while the thread runs. */
void udp_summary(char *buf, size_t len);

#endif
