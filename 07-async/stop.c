/*
 * stop.c - signals in a single-threaded event loop, and accepting safely.
 * Read server.c first; come here when it calls in.
 */
#include "stop.h"
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/*
 * Chapter 04 had a thread of its own wait for signals with sigwait(). A
 * single-threaded server has no thread to spare: its one thread waits in
 * select(), and a signal must wake select() up. It does - select() fails
 * with EINTR - but only if the signal arrives while select() waits. One
 * that arrives a moment before, while the loop is busy echoing, would be
 * noticed only at the next event, maybe never.
 *
 * The self-pipe trick (D. J. Bernstein's) closes that gap: the handler
 * sets a flag and writes a byte into a pipe, and the loop watches the
 * pipe's read end like any socket. A byte in the pipe stays there until
 * the loop reads it, so no signal goes unnoticed, whenever it comes. The
 * handler does nothing else: setting a volatile sig_atomic_t and write()
 * are async-signal-safe, and the real work (logging, closing, freeing)
 * happens in the loop, where it is safe.
 *
 * (pselect() is the other answer: signals blocked everywhere but inside
 * pselect(), which unblocks them atomically while it waits. It works for
 * select(), but epoll_pwait() aside, not every wait has such a twin; the
 * pipe works with any of them, which is why chapter 06 keeps this file.)
 */
static int pipe_fds[2] = {-1, -1};      /* [0] read end, [1] write end */

/* What has arrived, set by the handler: a flag per kind of signal, so a
 * flood of one kind can never crowd out another. The pipe's bytes only
 * wake the loop; the flags say what for. volatile sig_atomic_t is the
 * one type a handler may write and the program then read safely. */
static volatile sig_atomic_t got_stop, got_report;

static void on_signal(int sig)
{
    int saved = errno;                  /* the interrupted code may look at it */
    unsigned char b = (unsigned char)sig;

    if (sig == SIGUSR1)
        got_report = 1;
    else
        got_stop = 1;
    /* Non-blocking: with the pipe full, the byte is dropped rather than
     * block the handler - the loop, with a full pipe to read, will look
     * at the flags anyway. */
    (void)!write(pipe_fds[1], &b, 1);
    errno = saved;
}

/* Non-blocking, and closed in any program we might exec. */
static int set_flags(int fd)
{
    int fl = fcntl(fd, F_GETFL), fd_fl = fcntl(fd, F_GETFD);

    if (fl < 0 || fd_fl < 0)
        return -1;
    if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, fd_fl | FD_CLOEXEC) < 0)
        return -1;
    return 0;
}

int open_signal_pipe(const char *prog)
{
    if (pipe(pipe_fds) < 0)
        die_sys(prog, "pipe", "for signals");
    if (set_flags(pipe_fds[0]) < 0 || set_flags(pipe_fds[1]) < 0)
        die_sys(prog, "fcntl", "O_NONBLOCK on the signal pipe");
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    /* SA_RESTART: a signal in the middle of a call we make elsewhere
     * (a write() of the log) resumes it instead of failing it with EINTR.
     * select() is never restarted, whatever the flag says. */
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0 ||
        sigaction(SIGUSR1, &sa, NULL) < 0)
        die_sys(prog, "sigaction", "SIGINT/SIGTERM/SIGUSR1");
    /* Started in the background of a terminal set to `stty tostop`, a
     * server would be stopped (SIGTTOU) by its first log line - and a
     * stopped process does not even see SIGTERM. Ignored, the write fails
     * with EIO instead, and log_line() drops the line. */
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigemptyset(&ign.sa_mask);
    if (sigaction(SIGTTOU, &ign, NULL) < 0)
        die_sys(prog, "sigaction", "SIGTTOU");
    return pipe_fds[0];
}

void take_signals(void (*report)(void *arg), void *arg)
{
    unsigned char sigs[256];

    /* Take the wake-up bytes (one read: whatever is left keeps the pipe
     * readable, for the next turn), then act once on what the flags say.
     * However many SIGUSR1s came, one report: a report per byte, each
     * making system calls that more signals interrupt, could keep the
     * loop here for as long as somebody sends them. */
    (void)!read(pipe_fds[0], sigs, sizeof sigs);
    if (got_report) {
        got_report = 0;
        report(arg);
    }
}

int stop_requested(void)
{
    return got_stop;
}

void close_signal_pipe(void)
{
    close(pipe_fds[0]);
    close(pipe_fds[1]);
}

/* Errors accept() returns for one connection that failed before we took
 * it (the client gave up while queued, or the network between us broke):
 * accept(2) says to treat them like "try again". */
static int is_per_connection_error(int err)
{
    switch (err) {
    case EINTR: case ECONNABORTED: case EPROTO: case ENETDOWN: case ENOPROTOOPT:
    case EHOSTUNREACH: case EOPNOTSUPP: case ENETUNREACH:
#ifdef ENONET                   /* Linux's extras, not in POSIX */
    case ENONET: case EHOSTDOWN:
#endif
        return 1;
    default:
        return 0;
    }
}

/* How long the listener rests after accept() ran out of descriptors or
 * memory, and how many waiting clients we turn away each time. */
#define ACCEPT_PAUSE_MS 100
#define TURN_AWAY_BATCH 16

/*
 * Out of descriptors, accept() fails at once, and the listener stays
 * readable: the client it could not take is still waiting. A loop that
 * simply watches the listener again spins - select() returns at once,
 * accept() fails at once - at 100% CPU, and its connected clients share
 * that CPU with the spin. Two remedies, and we use both:
 *
 * - The spare descriptor (turn_away() in net.c): free it, accept the
 *   waiting client with it, say "server busy", close. The client gets an
 *   answer instead of a hang, and leaves the backlog.
 * - A rest: stop watching the listener for ACCEPT_PAUSE_MS (a deadline in
 *   the loop, like the idle timeouts). Connected clients are served all
 *   the while; a flood of new ones costs at most a few turn_away()s every
 *   100 ms, not a core.
 *
 * The spare alone leaves the loop spinning wherever it cannot help: out
 * of memory (ENOBUFS, ENOMEM) nothing can be accepted at all, and once
 * /dev/null cannot be opened again (ENFILE: the whole system is out)
 * there is no spare left; under a flood it costs two accept()s per
 * newcomer, as fast as they come. The rest alone leaves newcomers
 * waiting unanswered. Together: bounded work, and an answer.
 */
int accept_pause_ms(const char *prog, int listen_fd, int err)
{
    if (is_per_connection_error(err))
        return 0;
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
        return -1;
    if (err == EMFILE || err == ENFILE)
        for (int i = 0; i < TURN_AWAY_BATCH && turn_away(listen_fd); i++)
            log_line("%s: accept: %s: a waiting client was told \"server busy\"\n", prog,
                     strerror(err));
    log_line("%s: accept: %s (not accepting for %d ms)\n", prog, strerror(err),
             ACCEPT_PAUSE_MS);
    return ACCEPT_PAUSE_MS;
}
