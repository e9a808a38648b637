/*
 * stop.h - how this chapter's servers wait and how they stop: blocking
 * calls, woken up by a stop signal. Later chapters wait differently (in
 * threads, then in select/epoll), and change this file.
 */
#ifndef STOP_H
#define STOP_H

/* SIGINT/SIGTERM ask the server to stop. Exits 1 if it cannot set that up. */
void install_stop_handlers(const char *prog);
int stop_requested(void);

/* Tell the signal handler which sockets a blocking call may be waiting on,
 * so it can wake that call up; -1 forgets a socket. */
void watch_listener(int fd);
void watch_client(int fd);

/* accept() failed with ERR: is the server still fine, so that it should
 * simply call accept() again? Pauses first where calling again at once
 * would fail the same way (out of descriptors or memory). */
int can_retry_accept(const char *prog, int err);

#endif
