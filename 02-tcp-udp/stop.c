/*
 * stop.c - stopping cleanly and accepting safely, for servers that block
 * in accept() and recv(). Read server.c first; come here when it calls in.
 */
#include "stop.h"
#include "net.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/*
 * Stopping cleanly. The handler may only touch what is async-signal-safe:
 * a flag, and shutdown() (POSIX lists it as safe). We install it without
 * SA_RESTART, so a blocking accept()/recv() returns EINTR and the loop sees
 * the flag. That alone has a race: a signal that lands just after the loop
 * checked the flag but before it blocked would be missed, and the server
 * would sleep until the next client. So the handler also shuts down the
 * sockets the loop may block on: on Linux that wakes a blocked accept() or
 * recv() at once, and makes a later one return immediately.
 */
static volatile sig_atomic_t stop_flag;
static volatile sig_atomic_t watched_listener = -1;
static volatile sig_atomic_t watched_client = -1;

static void on_stop_signal(int sig)
{
    int saved_errno = errno;

    (void)sig;
    stop_flag = 1;
    if (watched_listener >= 0)
        shutdown(watched_listener, SHUT_RDWR);
    if (watched_client >= 0)
        shutdown(watched_client, SHUT_RDWR);
    errno = saved_errno;
}

void install_stop_handlers(const char *prog)
{
    struct sigaction sa = {0};

    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: blocking calls return EINTR */
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
        die_sys(prog, "sigaction", "SIGINT/SIGTERM");
    /* Started in the background of a terminal set to `stty tostop`, a
     * server would be stopped (SIGTTOU) by its first log line - and a
     * stopped process does not even see SIGTERM. Ignored, the write fails
     * with EIO instead, and log_line() drops the line. */
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGTTOU, &sa, NULL) < 0)
        die_sys(prog, "sigaction", "SIGTTOU");
}

int stop_requested(void)
{
    return stop_flag;
}

void watch_listener(int fd)
{
    watched_listener = fd;
}

void watch_client(int fd)
{
    watched_client = fd;
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

int can_retry_accept(const char *prog, int err)
{
    if (is_per_connection_error(err))
        return 1;
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
        return 0;
    /* Out of file descriptors, with a client waiting: tell it so. */
    if ((err == EMFILE || err == ENFILE) && turn_away(watched_listener)) {
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
