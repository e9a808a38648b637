/*
 * net.c - start-up, parsing, addresses, connecting and sending: the part
 * of every program that no chapter changes. Read the programs first; come
 * here when they call in.
 */
#include "net.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Where log_line() writes: stderr, or a non-blocking opening of it. */
static int log_fd = STDERR_FILENO;

/* A write to a pipe or a terminal blocks while it is full - a terminal
 * whose user pressed Ctrl-S, a pipe nobody reads - and the server with it.
 * Setting O_NONBLOCK on stderr itself would change it for everybody who
 * shares it (the shell, the other programs of a pipeline). Opening it
 * again through /dev/fd/2 gives us a descriptor of our own (on Linux a new
 * "open file description") whose O_NONBLOCK is ours alone: a write that
 * cannot go through at once fails with EAGAIN instead of waiting. A file
 * on disk never waits that way, and reopening it would lose its offset:
 * it stays as it is. */
static void open_log(void)
{
    struct stat st;

    if (fstat(STDERR_FILENO, &st) < 0 || !(S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)))
        return;
    int fd = open("/dev/fd/2", O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0)
        log_fd = fd;
}

void init_program(const char *prog)
{
    /* Started as `server 2>&-`, a program would get its first socket as
     * descriptor 2, and every log line would go to whoever is on it. */
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
            continue;
        if (open("/dev/null", O_RDWR) != fd)
            exit(1);            /* nowhere left to say so */
    }
    /* Writing to a socket or pipe whose reader has gone raises SIGPIPE,
     * and its default action kills the process. We take the EPIPE error
     * instead: a vanished client costs one connection, and a client whose
     * output reader went away (`client | head -1`) says so and exits 1. */
    struct sigaction sa = {.sa_handler = SIG_IGN};
    if (sigaction(SIGPIPE, &sa, NULL) < 0)
        die_sys(prog, "sigaction", "SIGPIPE");
    open_log();
}

void die_sys(const char *prog, const char *call, const char *what)
{
    fprintf(stderr, "%s: %s %s: %s\n", prog, call, what, strerror(errno));
    exit(1);
}

long long parse_count(const char *s, long long min, long long max)
{
    char *end;

    /* strtoll() alone would also take " 80", "+80", "0x50" and "80abc". */
    for (const char *p = s; *p != '\0'; p++)
        if (!isdigit((unsigned char)*p))
            return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || v < min || v > max)
        return -1;
    return v;
}

int parse_port(const char *s, int min_port)
{
    return (int)parse_count(s, min_port, 65535);
}

int parse_seconds(const char *s, struct timeval *tv)
{
    /* Only "DIGITS" or "DIGITS.DIGITS": strtod() would also take "0x10",
     * "1e-300", "inf" and "nan". */
    size_t whole = strspn(s, "0123456789");
    if (whole == 0 || whole > 7)
        return -1;
    const char *frac = s + whole;
    if (*frac == '.' && (frac[1] == '\0' || strspn(frac + 1, "0123456789") != strlen(frac + 1)))
        return -1;
    if (*frac != '.' && *frac != '\0')
        return -1;
    double v = strtod(s, NULL);
    if (v < 0.001 || v > 1e6)
        return -1;
    tv->tv_sec = (time_t)v;
    tv->tv_usec = (suseconds_t)((v - (double)tv->tv_sec) * 1e6 + 0.5);
    if (tv->tv_usec >= 1000000) {
        tv->tv_sec++;
        tv->tv_usec -= 1000000;
    }
    return 0;
}

int is_numeric_addr(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

void format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    unsigned port;

    /* sockaddr_storage-style code: look at the family, never assume IPv4. */
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        port = ntohs(s6->sin6_port);
        snprintf(buf, len, "[%s]:%u", host, port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        port = ntohs(s4->sin_port);
        snprintf(buf, len, "%s:%u", host, port);
    }
}

struct addrinfo *server_address(const char *prog, const char *addr, const char *port,
                                int type)
{
    struct addrinfo hints = {0}, *res;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = type;
    /* Numeric address and port: a server should never wait on DNS to start. */
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    int rc = getaddrinfo(addr, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "%s: %s:%s: %s\n", prog, addr, port, gai_strerror(rc));
        exit(1);
    }
    return res;
}

/* A descriptor set aside for turn_away(), open on /dev/null; and how
 * many clients it has turned away (read by other threads from 03 on). */
static int spare_fd = -1;
static _Atomic unsigned long long turned;

void raise_fd_limit(const char *prog)
{
    struct rlimit rl;

    /* Every connection is a descriptor, and the soft limit is often 1024
     * while the hard limit allows far more: take what we are allowed. */
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die_sys(prog, "getrlimit", "RLIMIT_NOFILE");
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die_sys(prog, "setrlimit", "RLIMIT_NOFILE");
    if ((spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
        die_sys(prog, "open", "/dev/null, the spare descriptor");
}

int turn_away(int listen_fd)
{
    struct pollfd p = {.fd = listen_fd, .events = POLLIN};

    /* Only if a client is waiting: with none, accept() would block. */
    if (spare_fd < 0 || poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
        return 0;
    close(spare_fd);
    int fd = accept(listen_fd, NULL, NULL);
    if (fd >= 0) {
        send(fd, SERVER_BUSY, strlen(SERVER_BUSY), 0);
        close(fd);
        turned++;
    }
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0;
}

unsigned long long clients_turned_away(void)
{
    return turned;
}

void announce_listening(const char *prog, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char where[ADDR_STRLEN];

    /* With port 0 the kernel chose the port: ask it which. */
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        die_sys(prog, "getsockname", "of the listening socket");
    format_addr((struct sockaddr *)&ss, where, sizeof where);
    printf("listening on %s\n", where);
    /* stdout is a pipe when a test or script starts us: flush, or the line
     * sits in our buffer and the reader waits forever. */
    if (fflush(stdout) != 0)
        die_sys(prog, "write", "the 'listening on' line");
}

static int to_ms(const struct timeval *tv)
{
    return (int)(tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000);
}

/* connect(), giving up after TIMEOUT: a non-blocking connect() returns at
 * once with EINPROGRESS, poll() waits for it to finish, and SO_ERROR says
 * how it went. A black-holed address would otherwise hold us for about
 * two minutes of SYN retries. Fails with ETIMEDOUT when time ran out. */
static int connect_within(int fd, const struct sockaddr *sa, socklen_t len,
                          const struct timeval *timeout)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -1;
    if (connect(fd, sa, len) < 0) {
        if (errno != EINPROGRESS)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n, err;
        socklen_t errlen = sizeof err;
        while ((n = poll(&p, 1, to_ms(timeout))) < 0 && errno == EINTR)
            ;
        if (n <= 0) {
            if (n == 0)
                errno = ETIMEDOUT;
            return -1;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0)
            return -1;
        if (err != 0) {
            errno = err;
            return -1;
        }
    }
    /* Blocking again, but no wait longer than TIMEOUT. */
    if (fcntl(fd, F_SETFL, flags) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, timeout, sizeof *timeout) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, timeout, sizeof *timeout) < 0)
        return -1;
    return 0;
}

int connect_to(const char *prog, const char *host, const char *port, int type,
               const struct timeval *timeout)
{
    struct addrinfo hints = {0}, *res, *ai;
    char what[ADDR_STRLEN] = "";
    int fd = -1, saved_errno = 0;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = type;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, host, gai_strerror(rc));
        return -1;
    }
    /* A name may have several addresses ("localhost" is ::1 and 127.0.0.1):
     * try each in turn, like Beej's "connect to the first we can". */
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        format_addr(ai->ai_addr, what, sizeof what);
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            saved_errno = errno;
            continue;
        }
        rc = timeout != NULL ? connect_within(fd, ai->ai_addr, ai->ai_addrlen, timeout)
                             : connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc == 0)
            break;
        saved_errno = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0 && saved_errno == ETIMEDOUT && timeout != NULL)
        fprintf(stderr, "%s: connect %s: no answer within %g s\n", prog, what,
                (double)to_ms(timeout) / 1000);
    else if (fd < 0)
        fprintf(stderr, "%s: connect %s: %s\n", prog, what, strerror(saved_errno));
    return fd;
}

void report_wait_failure(const char *prog, const char *what, const struct timeval *timeout)
{
    if ((errno == EAGAIN || errno == EWOULDBLOCK) && timeout != NULL)
        fprintf(stderr, "%s: no answer within %g s while waiting for %s\n", prog,
                (double)to_ms(timeout) / 1000, what);
    else
        fprintf(stderr, "%s: recv, waiting for %s: %s\n", prog, what, strerror(errno));
}

char test_byte(unsigned long long i)
{
    /* 251 is prime, so the pattern never lines up with a block or buffer
     * size: a block echoed twice, skipped or out of order shows up. */
    return (char)(i % 251);
}

int send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    /* send() may take only part of the buffer; loop until it took it all.
     * MSG_NOSIGNAL: a vanished peer gives EPIPE here, not a fatal SIGPIPE. */
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
#ifdef BROKEN_short_send
        /* The classic mistake, on purpose (make BROKEN=short-send): one
         * send() and hope it took everything. */
        return 0;
#endif
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Lines the log could not take at once. A process has one stderr, so one
 * counter: like errno, a property of the process. Guarded, like the poll()
 * and write() below, by stderr's own stdio lock (flockfile()), so threads
 * can log at once. */
static unsigned long long dropped_lines;

void log_line(const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (len < (size_t)n)
        line[len - 1] = '\n';          /* cut short, but still a line */
    /* The log descriptor is non-blocking (open_log()): a line that cannot
     * go out at once fails with EAGAIN, and is dropped and counted. A pipe
     * takes a short line whole or not at all (up to PIPE_BUF bytes go in
     * one piece). poll() with timeout 0 - "could a write go through now?" -
     * guards the systems where stderr could not be reopened non-blocking.
     * The lock keeps threads from writing at once and guards the count. */
    struct pollfd p = {.fd = log_fd, .events = POLLOUT};
    flockfile(stderr);
    if (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT) ||
        write(log_fd, line, len) != (ssize_t)len)
        dropped_lines++;
    funlockfile(stderr);
}

void end_program(const char *prog)
{
    if (dropped_lines > 0)
        log_line("%s: %llu log lines dropped (stderr was full)\n", prog, dropped_lines);
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = STDERR_FILENO;
    if (spare_fd >= 0)
        close(spare_fd);
    spare_fd = -1;
}
