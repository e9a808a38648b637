/*
 * stop.c - signals in a threaded program, and accepting safely. Read
 * server.c first; come here when it calls in.
 */
#include "stop.h"
#include "net.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

/*
 * Chapter 02's handler set a flag and called shutdown() on the one or two
 * sockets the server could be blocked on. With threads that is not
 * enough: there are as many blocked calls as connections, a signal sent to
 * the process lands in whichever thread happens not to block it, and a
 * handler may not take a mutex (the thread it interrupted may hold it) -
 * so it could not even walk the list of connections safely.
 *
 * So no handler at all. Every thread blocks the signals (a new thread
 * inherits its creator's mask, so blocking them once, first thing, covers
 * them all), and one thread waits for them with sigwait(). A signal then
 * is no longer an interruption but an event that an ordinary thread picks
 * up, and that thread may do anything: take locks, log, walk lists.
 */
static sigset_t taken;                  /* the signals the thread takes */
static pthread_t signal_thread;
static struct signal_actions actions;
static atomic_int stop_flag;            /* read by every thread */

static void *take_signals(void *unused)
{
    (void)unused;
    for (;;) {
        int sig;
        if (sigwait(&taken, &sig) != 0)
            continue;           /* only EINVAL, for a bad set: not ours */
        if (sig == SIGUSR1) {
            actions.report();
        } else if (sig == SIGCHLD) {
            if (actions.child != NULL)
                actions.child();
        } else {                /* SIGINT, SIGTERM: stop, once */
            atomic_store(&stop_flag, 1);
            actions.stop();
            return NULL;
        }
    }
}

void block_signals(const char *prog)
{
    sigemptyset(&taken);
    sigaddset(&taken, SIGINT);
    sigaddset(&taken, SIGTERM);
    sigaddset(&taken, SIGUSR1);
    sigaddset(&taken, SIGCHLD);
    /* pthread_* functions return the error instead of setting errno. */
    int err = pthread_sigmask(SIG_BLOCK, &taken, NULL);
    if (err != 0) {
        errno = err;
        die_sys(prog, "pthread_sigmask", "SIGINT/SIGTERM/SIGUSR1/SIGCHLD");
    }
    /* Started in the background of a terminal set to `stty tostop`, a
     * server would be stopped (SIGTTOU) by its first log line - and a
     * stopped process does not even see SIGTERM. Ignored, the write fails
     * with EIO instead, and log_line() drops the line. */
    struct sigaction sa = {.sa_handler = SIG_IGN};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTTOU, &sa, NULL) < 0)
        die_sys(prog, "sigaction", "SIGTTOU");
}

void child_signals(void)
{
    struct sigaction sa = {.sa_handler = SIG_IGN};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    pthread_sigmask(SIG_UNBLOCK, &taken, NULL);
}

void start_signal_thread(const char *prog, const struct signal_actions *a)
{
    actions = *a;
    int err = pthread_create(&signal_thread, NULL, take_signals, NULL);
    if (err != 0) {
        errno = err;
        die_sys(prog, "pthread_create", "for the signal thread");
    }
}

int stop_requested(void)
{
    return atomic_load(&stop_flag);
}

void end_signal_thread(void)
{
    /* A signal sent to one thread stays pending for that thread until its
     * sigwait() takes it - even one sent a moment before sigwait() runs. */
    if (!stop_requested())
        pthread_kill(signal_thread, SIGTERM);
    pthread_join(signal_thread, NULL);
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

int can_retry_accept(const char *prog, int listen_fd, int err)
{
    if (is_per_connection_error(err))
        return 1;
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
        return 0;
    /* Out of file descriptors, with a client waiting: tell it so. */
    if ((err == EMFILE || err == ENFILE) && turn_away(listen_fd)) {
        log_line("%s: accept: %s: a waiting client was told \"server busy\"\n", prog,
                 strerror(err));
        return 1;
    }
    /* Out of file descriptors or memory: the next accept() would fail the
     * same way at once, so pause instead of spinning, and retry. */
    log_line("%s: accept: %s (retrying)\n", prog, strerror(err));
    nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
    return 1;
}
