/*
 * stop.h - how this chapter's server waits and how it stops: one thread
 * waits in one place (select(), from chapter 06 on epoll_wait()), so a
 * signal must become something that place can wait for - a readable
 * descriptor, the self-pipe.
 */
#ifndef STOP_H
#define STOP_H

/* Install the handlers for SIGINT, SIGTERM and SIGUSR1 and return the
 * descriptor to watch: readable when a signal has arrived. Exits 1 if it
 * cannot. */
int open_signal_pipe(const char *prog);
/* The descriptor is readable: take every signal that has arrived. For
 * SIGUSR1 call REPORT(ARG) - in the loop's own thread, never in a signal
 * handler, so it may log and walk lists; SIGINT and SIGTERM make
 * stop_requested() true, and the loop ends. */
void take_signals(void (*report)(void *arg), void *arg);
int stop_requested(void);
/* Close the pipe (at exit). */
void close_signal_pipe(void);

/* accept() on LISTEN_FD failed with ERR. Returns 0 if the loop should
 * simply go on (a client gave up while queued), the milliseconds to stop
 * watching the listener for (out of descriptors or memory: the next
 * accept() would fail the same way at once), or -1 if the error is one
 * the server cannot carry on after. Out of descriptors, it first tells the
 * waiting clients "server busy" (turn_away()). */
int accept_pause_ms(const char *prog, int listen_fd, int err);

#endif
