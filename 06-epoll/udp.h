/*
 * udp.h - chapter 02's UDP echo server, as one more descriptor of the
 * server's loop: when the socket is readable, the loop calls udp_ready().
 */
#ifndef UDP_H
#define UDP_H

#include <stddef.h>
#include <sys/socket.h>

/* A datagram socket bound to SA. If the address is taken and TAKEN_OK,
 * returns -1 (the caller picks another port); any other failure exits 1
 * with a message. */
int udp_open(const char *prog, const struct sockaddr *sa, socklen_t len, int taken_ok);

/* Get ready to echo on FD (made non-blocking), into a buffer of SIZE
 * bytes; QUIET: no per-datagram log lines. Exits 1 if it cannot. */
void udp_start(const char *prog, int fd, size_t size, int quiet);

/* The socket is readable: echo the datagrams waiting, a bounded number of
 * them, so that a flood of datagrams cannot starve the TCP clients. */
void udp_ready(void);

/* Close the socket and free the buffer. */
void udp_finish(void);

/* "N datagrams echoed, ..." into BUF. */
void udp_summary(char *buf, size_t len);

#endif
