/*
 * udp.h - chapter 02's UDP echo server, as one more task on the server's
 * loop.
 */
#ifndef UDP_H
#define UDP_H

#include <stddef.h>
#include <sys/socket.h>

#include "io.h"

/* A datagram socket bound to SA. If the address is taken and TAKEN_OK,
 * returns -1 (the caller picks another port); any other failure exits 1
 * with a message. */
int udp_open(const char *prog, const struct sockaddr *sa, socklen_t len, int taken_ok);

/* Echo the datagrams that come to IO's socket, into a buffer of SIZE
 * bytes (a larger one is dropped); QUIET: no per-datagram log lines. A
 * task: returns when cancelled. */
void udp_echo(const char *prog, struct io *io, size_t size, int quiet);

/* "N datagrams echoed, ..." into BUF. */
void udp_summary(char *buf, size_t len);

#endif
