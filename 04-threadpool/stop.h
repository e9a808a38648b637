/*
 * stop.h - how this chapter's server waits and how it stops: many threads
 * block in accept(), recv() and recvmsg(), and one thread of its own takes
 * every signal. Later chapters wait differently (in select/epoll), and
 * change this file.
 */
#ifndef STOP_H
#define STOP_H

/* What the signal thread does for each signal, in that thread - an
 * ordinary thread, so it may lock mutexes, call log_line() and so on. */
struct signal_actions {
    void (*stop)(void);     /* SIGINT or SIGTERM, once: wake everybody up */
    void (*report)(void);   /* SIGUSR1: one summary line */
    void (*child)(void);    /* SIGCHLD: a child process ended (may be NULL) */
};

/* Block SIGINT, SIGTERM, SIGUSR1 and SIGCHLD in the calling thread - and
 * so in every thread it creates from now on. First thing in main(), before
 * any pthread_create(). Exits 1 if it cannot. */
void block_signals(const char *prog);
/* In a child process (server -f): SIGTERM, which the parent's stop sends,
 * ends it; SIGINT and SIGUSR1 are for the parent and ignored (Ctrl-C
 * sends SIGINT to every process of the group, children too). */
void child_signals(void);

/* Start the thread that takes those signals with sigwait() and does
 * ACTIONS: once everything the actions touch exists. Exits 1 if it
 * cannot. Signals that arrived before wait until then. */
void start_signal_thread(const char *prog, const struct signal_actions *actions);
int stop_requested(void);

/* Stop now if no signal has asked yet (the server's own fatal error), and
 * join the signal thread. */
void end_signal_thread(void);

/* accept() on LISTEN_FD failed with ERR: is the server still fine, so
 * that it should simply call accept() again? Out of descriptors, tells a
 * waiting client "server busy" (turn_away()); pauses first where calling
 * again at once would fail the same way (out of descriptors or memory). */
int can_retry_accept(const char *prog, int listen_fd, int err);

#endif
