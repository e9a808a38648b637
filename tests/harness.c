/*
 * harness.c - the same checks, run against every stage of the course.
 *
 * Every check starts the real programs (servers with -p 0, so parallel runs
 * never collide), waits for the "listening on ADDR:PORT" line - never a
 * sleep - talks to them over 127.0.0.1, then stops them with SIGTERM and
 * asserts a clean exit 0. The stage table in stages.h says what each stage
 * claims; a check a stage does not claim either does not apply ("-") or,
 * where the course documents the limitation, asserts it ("limit").
 *
 * Suites: one per stage; "tools", which checks that loadgen catches a bad
 * server; "short", which runs the I/O checks again with every program
 * under shortio.so (short reads and writes, EINTR); "valgrind", the same
 * under memcheck. The report card at the end has a row per stage and a
 * column per check, plus one per extra pass.
 *
 * To add a chapter: a row in stages.h. To add a check: a START_TEST
 * function below and a row in the table in checks().
 *
 * usage: harness [-r ROOT] [-s STAGE] [-c CHECK] [-V]
 */
#include "stages.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ARGS 24
#define KiB 1024
#define MiB (1024 * 1024)

/* The passes: every check once as is, then the ones marked for it again
 * with every program under the short-I/O shim (shortio.c), then under
 * valgrind. */
enum pass { PLAIN, SHORT_IO, VALGRIND, NPASSES };

/* Set in main, before any test forks: where the chapters are, which pass
 * is running, and where the shim is. */
static const char *root = "..";
static int mode;
/* Set by a check before it starts a program: that program's descriptor
 * limit (0: unchanged), and a file to take its stdout (NULL: captured). */
static rlim_t child_nofile;
static const char *child_stdout;
static char shim_path[PATH_MAX];

/* ---------------------------------------------------------------- time */

/* Deadlines are generous: they only bound a hang. Valgrind runs programs
 * many times slower, and the short-I/O shim makes many more system calls,
 * so they stretch every one of them. */
static int ms(int base)
{
    return mode == VALGRIND ? base * 10 : mode == SHORT_IO ? base * 3 : base;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* poll() one fd for EVENTS until DEADLINE (a now_ms() value). */
static int wait_for(int fd, short events, long long deadline)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        long long left = deadline - now_ms();
        if (left < 0)
            left = 0;
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        return n;           /* 1 ready, 0 timed out */
    }
}

/* ------------------------------------------------------------ processes */

struct proc {
    pid_t pid;
    int pidfd;      /* readable when the process has exited */
    int out;        /* stdout: a pipe (servers) or a temp file (clients) */
    int err;        /* stderr: always a temp file, read after exit */
    int status;     /* wait status once reaped */
    int hung;       /* killed by finish() for not exiting in time */
};

static int temp_file(void)
{
    FILE *f = tmpfile();
    ck_assert_msg(f != NULL, "tmpfile: %s", strerror(errno));
    int fd = dup(fileno(f));
    fclose(f);
    return fd;
}

/* Read a whole temp file into a NUL-terminated buffer (caller frees). */
static char *slurp(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    ssize_t n;

    lseek(fd, 0, SEEK_SET);
    while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)n;
        if (cap - len < 2)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    return buf;
}

/* Start DIR/PROG with ARGS (NULL-terminated), stdin from IN (NULL: empty).
 * The child dies with the test process, so a failed check leaks nothing. */
static struct proc spawn(const char *dir, const char *prog, const char *in,
                         int out_is_pipe, const char *const *args)
{
    struct proc p = {.status = -1};
    int outp[2], inp[2];
    char path[512];
    const char *argv[MAX_ARGS];
    int n = 0;

    snprintf(path, sizeof path, "%s/%s/%s", root, dir, prog);
    ck_assert_msg(access(path, X_OK) == 0, "%s is not built (run make)", path);
    if (mode == VALGRIND) {
        argv[n++] = "valgrind";
        argv[n++] = "--quiet";
        argv[n++] = "--leak-check=full";
        argv[n++] = "--errors-for-leak-kinds=definite,indirect";
        argv[n++] = "--error-exitcode=99";
    }
    argv[n++] = path;
    for (int i = 0; args[i] != NULL && n < MAX_ARGS - 1; i++)
        argv[n++] = args[i];
    argv[n] = NULL;

    ck_assert(pipe(inp) == 0);
    if (out_is_pipe)
        ck_assert(pipe(outp) == 0);
    else
        outp[0] = outp[1] = temp_file();
    p.err = temp_file();

    pid_t parent = getpid();
    p.pid = fork();
    ck_assert_msg(p.pid >= 0, "fork: %s", strerror(errno));
    if (p.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* An ignored signal stays ignored across exec: give the program
         * the default SIGPIPE, so it must protect itself as in real life. */
        signal(SIGPIPE, SIG_DFL);
        if (mode == SHORT_IO)
            setenv("LD_PRELOAD", shim_path, 1);
        if (child_nofile != 0) {
            struct rlimit rl;
            getrlimit(RLIMIT_NOFILE, &rl);
            rl.rlim_cur = child_nofile;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        if (getppid() != parent)
            _exit(127);
        dup2(inp[0], 0);
        dup2(outp[1], 1);
        if (child_stdout != NULL) {
            int fd = open(child_stdout, O_WRONLY);
            if (fd < 0 || dup2(fd, 1) < 0)
                _exit(127);
        }
        dup2(p.err, 2);
        closefrom(3);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(inp[0]);
    if (in != NULL && *in != '\0')
        ck_assert(write(inp[1], in, strlen(in)) == (ssize_t)strlen(in));
    close(inp[1]);
    if (out_is_pipe)
        close(outp[1]);
    p.out = outp[0];
    p.pidfd = pidfd_open(p.pid, 0);
    ck_assert_msg(p.pidfd >= 0, "pidfd_open: %s", strerror(errno));
    return p;
}

/* Wait until P exits, at most TIMEOUT ms; kill it if it does not. Returns
 * its exit code, or -1 if it hung or died of a signal. */
static int finish(struct proc *p, int timeout)
{
    p->hung = wait_for(p->pidfd, POLLIN, now_ms() + timeout) == 0;
    if (p->hung)
        kill(p->pid, SIGKILL);
    while (waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR)
        ;
    close(p->pidfd);
    return WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
}

static void release(struct proc *p)
{
    close(p->out);
    close(p->err);
}

/* Run a program to the end. Returns its exit code; *OUT and *ERR (if not
 * NULL) get its stdout and stderr (caller frees). */
static int run(const char *dir, const char *prog, const char *in, char **out,
               char **err, const char *const *args)
{
    struct proc p = spawn(dir, prog, in, 0, args);
    int code = finish(&p, ms(10000));
    if (out != NULL)
        *out = slurp(p.out);
    if (err != NULL)
        *err = slurp(p.err);
    release(&p);
    return code;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* A running server and the port it told us it listens on. */
struct server {
    struct proc p;
    int port;
    char portstr[8];
};

/* Start a server with -p 0 and ARGS, and read its readiness line. */
static struct server start_server(const char *dir, const char *prog,
                                  const char *const *args)
{
    struct server s;
    const char *argv[MAX_ARGS] = {"-p", "0"};
    int n = 2;
    char line[128];
    size_t len = 0;

    for (int i = 0; args[i] != NULL && n < MAX_ARGS - 1; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    s.p = spawn(dir, prog, NULL, 1, argv);

    long long deadline = now_ms() + ms(5000);
    while (len < sizeof line - 1 && (len == 0 || line[len - 1] != '\n')) {
        ck_assert_msg(wait_for(s.p.out, POLLIN, deadline) == 1,
                      "%s/%s: no 'listening on' line within %d ms", dir, prog, ms(5000));
        ssize_t r = read(s.p.out, line + len, 1);
        if (r <= 0) {
            char *e = slurp(s.p.err);
            ck_abort_msg("%s/%s exited before it was ready: %s", dir, prog, e);
        }
        len++;
    }
    line[len] = '\0';
    /* Exactly "listening on ADDR:PORT\n", ADDR as asked for with -a. */
    const char *addr = "127.0.0.1";
    for (int i = 0; args[i] != NULL && args[i + 1] != NULL; i++)
        if (strcmp(args[i], "-a") == 0)
            addr = args[i + 1];
    char prefix[80];
    snprintf(prefix, sizeof prefix, strchr(addr, ':') ? "listening on [%s]:" : "listening on %s:",
             addr);
    int port = 0;
    char tail = 0;
    ck_assert_msg(strncmp(line, prefix, strlen(prefix)) == 0 &&
                      sscanf(line + strlen(prefix), "%d%c", &port, &tail) == 2 &&
                      tail == '\n' && port > 0 && port < 65536,
                  "%s/%s: bad readiness line '%s'", dir, prog, line);
    s.port = port;
    snprintf(s.portstr, sizeof s.portstr, "%d", port);
    return s;
}

/* SIGTERM the server, assert it exits 0 in time, return its stderr. */
static char *stop_server(struct server *s)
{
    kill(s->p.pid, SIGTERM);
    int code = finish(&s->p, ms(1000));
    char *err = slurp(s->p.err);
    release(&s->p);
    ck_assert_msg(!s->p.hung, "server still running %d ms after SIGTERM; stderr:\n%s",
                  ms(1000), err);
    ck_assert_msg(code == 0, "server ended with %s %d after SIGTERM%s; stderr:\n%s",
                  code < 0 ? "signal" : "exit", code < 0 ? WTERMSIG(s->p.status) : code,
                  code == 99 && mode == VALGRIND ? " (valgrind found errors)" : "", err);
    return err;
}

static void stop_server_quietly(struct server *s)
{
    free(stop_server(s));
}

/* ------------------------------------------------------------- sockets */

/* A socket of TYPE connected to ADDR (numeric, IPv4 or IPv6) and PORT. */
static int connect_to(int type, const char *addr, int port)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;

    if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        len = sizeof *a4;
    } else {
        ck_assert(inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        len = sizeof *a6;
    }
    int fd = socket(ss.ss_family, type, 0);
    ck_assert(fd >= 0);
    ck_assert_msg(connect(fd, (struct sockaddr *)&ss, len) == 0, "connect %s port %d: %s",
                  addr, port, strerror(errno));
    return fd;
}

static int tcp_connect(int port)
{
    return connect_to(SOCK_STREAM, "127.0.0.1", port);
}

static int udp_socket(int port)
{
    return connect_to(SOCK_DGRAM, "127.0.0.1", port);
}

/* A socket bound to a free port on 127.0.0.1 (a listener for TCP). */
static int bound_socket(int type, int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int fd = socket(AF_INET, type, 0);
    ck_assert(fd >= 0);
    ck_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    if (type == SOCK_STREAM)
        ck_assert(listen(fd, 16) == 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

/* A port nothing listens on: bind one, note it, close it. */
static int closed_port(void)
{
    int port, fd = bound_socket(SOCK_STREAM, &port);
    close(fd);
    return port;
}

static void send_bytes(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        ck_assert_msg(n > 0, "send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

/* Receive up to LEN bytes before DEADLINE. Returns the count; stops early
 * at EOF (*eof set) or at the deadline. */
static size_t recv_until(int fd, char *buf, size_t len, long long deadline, int *eof)
{
    size_t got = 0;
    *eof = 0;
    while (got < len && wait_for(fd, POLLIN, deadline) == 1) {
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n <= 0) {
            *eof = 1;
            break;
        }
        got += (size_t)n;
    }
    return got;
}

static unsigned char pattern(size_t i, unsigned seed)
{
    return (unsigned char)((i * 7 + seed + i / 997) & 0xff);
}

/*
 * Send SIZE pattern bytes and read the echo at the same time (poll on both
 * directions), so even megabytes never deadlock on full socket buffers.
 * With HALF_CLOSE, shutdown(SHUT_WR) after the last byte and require EOF
 * after the last echoed one. Asserts every byte.
 */
static void echo_check(int fd, size_t size, unsigned seed, int half_close)
{
    char *out = malloc(size + 1), *in = malloc(size + 1);
    size_t sent = 0, got = 0;
    long long deadline = now_ms() + ms(20000);

    for (size_t i = 0; i < size; i++)
        out[i] = (char)pattern(i, seed);
    if (half_close && size == 0)
        shutdown(fd, SHUT_WR);
    while (got < size || (half_close && got == size)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (sent < size)
            p.events |= POLLOUT;
        long long left = deadline - now_ms();
        ck_assert_msg(left > 0 && poll(&p, 1, (int)left) > 0,
                      "echo of %zu bytes: timed out with %zu sent, %zu back", size, sent, got);
        if (p.revents & POLLOUT) {
            ssize_t n = send(fd, out + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            ck_assert_msg(n >= 0 || errno == EAGAIN, "send: %s", strerror(errno));
            if (n > 0 && (sent += (size_t)n) == size && half_close)
                shutdown(fd, SHUT_WR);
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(fd, in + got, size + 1 - got, MSG_DONTWAIT);
            if (n < 0 && errno == EAGAIN)
                continue;
            ck_assert_msg(n >= 0, "recv after %zu of %zu bytes: %s", got, size, strerror(errno));
            if (n == 0) {
                ck_assert_msg(got == size, "EOF after %zu of %zu echoed bytes", got, size);
                break;      /* half-close: the server closed after echoing all */
            }
            ck_assert_msg(got + (size_t)n <= size, "server sent more than it was sent");
            got += (size_t)n;
        }
    }
    for (size_t i = 0; i < size; i++)
        ck_assert_msg(in[i] == out[i], "echoed byte %zu of %zu differs", i, size);
    free(out);
    free(in);
}

/* Send a datagram and wait for its echo; UDP may lose either, so a few
 * tries are allowed. Asserts the echo is the datagram, whole. */
static void udp_echo_check(int fd, size_t size, unsigned seed)
{
    char *out = malloc(size + 1), *in = malloc(65536);
    for (size_t i = 0; i < size; i++)
        out[i] = (char)pattern(i, seed);
    ssize_t n = -1;
    for (int try = 0; try < 3 && n < 0; try++) {
        ck_assert_msg(send(fd, out, size, 0) == (ssize_t)size, "send %zu: %s", size,
                      strerror(errno));
        if (wait_for(fd, POLLIN, now_ms() + ms(2000)) == 1)
            n = recv(fd, in, 65536, 0);
    }
    ck_assert_msg(n == (ssize_t)size, "datagram of %zu bytes came back as %zd", size, n);
    ck_assert_msg(memcmp(in, out, size) == 0, "datagram of %zu bytes came back changed", size);
    free(out);
    free(in);
}

/* Assert that TEXT (a program's output) contains NEEDLE. */
static void assert_contains(const char *text, const char *needle, const char *what)
{
    ck_assert_msg(strstr(text, needle) != NULL, "%s: expected '%s' in:\n%s", what,
                  needle, text);
}

static void assert_prefix(const char *text, const char *prefix)
{
    ck_assert_msg(strncmp(text, prefix, strlen(prefix)) == 0, "expected '%s' at the start of:\n%s",
                  prefix, text);
}

/* Run a program to the end; it must exit 0 and print exactly WANT. */
static void assert_run_prints(const char *dir, const char *prog, const char *in,
                              const char *want, const char *const *args)
{
    char *out, *err;
    int code = run(dir, prog, in, &out, &err, args);
    ck_assert_msg(code == 0, "%s exited %d; stderr: %s", prog, code, err);
    ck_assert_msg(strcmp(out, want) == 0, "%s printed '%s', want '%s'", prog, out, want);
    free(out);
    free(err);
}

/* -------------------------------------------------------------- checks */

#define STAGE (&stages[_i])

/* Each server program of a stage (one, two, or the same one twice). */
static int server_progs(const struct stage *st, const char *progs[2])
{
    int n = 0;
    if (st->tcp_server != NULL)
        progs[n++] = st->tcp_server;
    if (st->udp_server != NULL && (n == 0 || strcmp(st->udp_server, progs[0]) != 0))
        progs[n++] = st->udp_server;
    return n;
}

START_TEST(check_bad_args)
{
    static const char *const bad[][3] = {
        {"-x", NULL}, {"-p", "http", NULL}, {"-p", "65536", NULL}, {"-p", "-1", NULL},
        {"-p", "80x", NULL}, {"-a", "not-an-address", NULL}, {"extra", NULL},
    };
    const char *progs[2];
    for (int k = server_progs(STAGE, progs) - 1; k >= 0; k--) {
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            char *err;
            int code = run(STAGE->dir, progs[k], NULL, NULL, &err, bad[b]);
            ck_assert_msg(code == 2, "%s %s %s: exit %d, want 2", progs[k], bad[b][0],
                          bad[b][1] ? bad[b][1] : "", code);
            assert_contains(err, "usage:", progs[k]);
            free(err);
        }
    }
    const char *clients[2] = {STAGE->tcp_client, STAGE->udp_client};
    for (int k = 0; k < 2; k++) {
        if (clients[k] == NULL)
            continue;
        char *err;
        ck_assert_int_eq(run(STAGE->dir, clients[k], NULL, NULL, &err, ARGS("-p", "0")), 2);
        assert_contains(err, "usage:", clients[k]);
        free(err);
    }
}
END_TEST

START_TEST(check_port_in_use)
{
    const char *progs[2];
    for (int k = server_progs(STAGE, progs) - 1; k >= 0; k--) {
        int udp_only = STAGE->tcp_server == NULL || strcmp(progs[k], STAGE->tcp_server) != 0;
        int port, fd = bound_socket(udp_only ? SOCK_DGRAM : SOCK_STREAM, &port);
        char portstr[8], want[128], *err;
        snprintf(portstr, sizeof portstr, "%d", port);
        int code = run(STAGE->dir, progs[k], NULL, NULL, &err, ARGS("-p", portstr));
        snprintf(want, sizeof want, "%s: bind 127.0.0.1:%d: Address already in use\n",
                 progs[k], port);
        ck_assert_msg(code == 1, "%s on a busy port: exit %d, want 1", progs[k], code);
        ck_assert_str_eq(err, want);
        free(err);
        close(fd);
    }
}
END_TEST

/* Send to an echo server without ever reading, until the send buffers on
 * both sides are full: the server is then blocked in send() to us. */
static void flood_without_reading(int fd)
{
    static char buf[64 * KiB];
    size_t total = 0;

    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    while (total < 256 * MiB) {
        ssize_t n = send(fd, buf, sizeof buf, MSG_NOSIGNAL);
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        /* Full: wait a moment in case the server drains some more. No
         * readiness signal says "it stopped for good"; 200 ms bounds it. */
        ck_assert_msg(n < 0 && errno == EAGAIN, "send: %s", strerror(errno));
        if (wait_for(fd, POLLOUT, now_ms() + 200) == 0)
            return;
    }
    ck_abort_msg("the server read 256 MiB without sending any back");
}

/* SIGTERM while the server is busy with a client - waiting for it to send,
 * and blocked sending to it - and SIGINT while idle: each must end the
 * server with exit 0 within 1 s. */
START_TEST(check_signals)
{
    const struct stage *st = STAGE;
    const char *progs[2];
    for (int k = server_progs(st, progs) - 1; k >= 0; k--) {
        int is_tcp = st->tcp_server != NULL && strcmp(progs[k], st->tcp_server) == 0;
        int echo = is_tcp && (st->props & P_TCP_ECHO);
        for (int busy = 0; busy <= echo; busy++) {
            struct server s = start_server(st->dir, progs[k], ARGS("-q"));
            int fd = is_tcp ? tcp_connect(s.port) : udp_socket(s.port);
            if (echo)
                echo_check(fd, 1, 1, 0);    /* now it is surely serving us */
            else if (!is_tcp)
                udp_echo_check(fd, 1, 1);
            if (busy)
                flood_without_reading(fd);
            stop_server_quietly(&s);
            close(fd);
        }
        struct server s = start_server(st->dir, progs[k], ARGS("-q"));
        kill(s.p.pid, SIGINT);
        ck_assert_msg(finish(&s.p, ms(1000)) == 0, "%s: SIGINT did not exit 0", progs[k]);
        release(&s.p);
    }
}
END_TEST

/* SO_REUSEADDR: a server restarted on its port right after a stop binds at
 * once, although the last run's connection sits in TIME_WAIT (the server
 * closed first: after its greeting, or when SIGTERM ended the echo). */
START_TEST(check_restart)
{
    const struct stage *st = STAGE;
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"));
    int fd = tcp_connect(s.port), eof;
    char buf[256];
    if (st->props & P_TCP_ECHO)
        echo_check(fd, 1, 10, 0);
    else
        recv_until(fd, buf, sizeof buf, now_ms() + ms(5000), &eof);
    stop_server_quietly(&s);
    recv_until(fd, buf, sizeof buf, now_ms() + ms(5000), &eof);
    ck_assert_msg(eof, "the server did not close the connection");
    close(fd);
    int port = s.port;
    s = start_server(st->dir, st->tcp_server, ARGS("-q", "-p", s.portstr));
    ck_assert_int_eq(s.port, port);
    stop_server_quietly(&s);
}
END_TEST

/* The same servers and clients over IPv6 (::1): nothing in the code may
 * assume IPv4. A datagram of 65,527 bytes, the IPv6 maximum, comes back. */
START_TEST(check_ipv6)
{
    const struct stage *st = STAGE;
    if (st->tcp_server != NULL) {
        struct server s = start_server(st->dir, st->tcp_server, ARGS("-q", "-a", "::1"));
        int fd = connect_to(SOCK_STREAM, "::1", s.port), eof;
        if (st->props & P_TCP_ECHO) {
            echo_check(fd, 64 * KiB + 1, 11, 1);
            assert_run_prints(st->dir, st->tcp_client, "over IPv6\n", "over IPv6\n",
                              ARGS("-a", "::1", "-p", s.portstr));
        } else {
            char buf[128];
            size_t n = recv_until(fd, buf, sizeof buf - 1, now_ms() + ms(5000), &eof);
            buf[n] = '\0';
            assert_prefix(buf, "hello [::1]:");
        }
        close(fd);
        stop_server_quietly(&s);
    }
    if (st->udp_server != NULL) {
        struct server s = start_server(st->dir, st->udp_server, ARGS("-q", "-a", "::1"));
        int fd = connect_to(SOCK_DGRAM, "::1", s.port);
        udp_echo_check(fd, 65527, 12);
        close(fd);
        assert_run_prints(st->dir, st->udp_client, NULL,
                          "udp_client: 65527-byte datagram echoed, all correct\n",
                          ARGS("-a", "::1", "-p", s.portstr, "-n", "65527"));
        stop_server_quietly(&s);
    }
}
END_TEST

/* Out of file descriptors, accept() fails with EMFILE at once, again and
 * again: the server must neither exit nor spin, but pause and retry, and
 * serve the waiting client once descriptors are free again. The server
 * starts with room for stdin, stdout, stderr and its listener only; once
 * it is waiting, prlimit() gives it room again. */
START_TEST(check_fd_limit)
{
    const struct stage *st = STAGE;
    child_nofile = 4;
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"));
    child_nofile = 0;

    int fd = tcp_connect(s.port), eof;
    char buf[128];
    if (st->props & P_TCP_ECHO)
        send_bytes(fd, "x", 1);
    /* "Not served" has no readiness signal: 500 ms bounds the wait. */
    ck_assert_msg(recv_until(fd, buf, 1, now_ms() + 500, &eof) == 0 && !eof,
                  "served although the server had no descriptor left");
    struct rlimit room;
    ck_assert(prlimit(s.p.pid, RLIMIT_NOFILE, NULL, &room) == 0);
    room.rlim_cur = room.rlim_max < 64 ? room.rlim_max : 64;
    ck_assert(prlimit(s.p.pid, RLIMIT_NOFILE, &room, NULL) == 0);
    ck_assert_msg(recv_until(fd, buf, 1, now_ms() + ms(5000), &eof) == 1,
                  "not served once descriptors were free again");
    close(fd);

    char *err = stop_server(&s), *line = err;
    int retries = 0;
    while ((line = strstr(line, "Too many open files (retrying)")) != NULL) {
        retries++;
        line++;
    }
    /* A pause of 100 ms between tries means about 5 in 500 ms; a server
     * that spun would have logged thousands. */
    ck_assert_msg(retries >= 1 && retries <= 50, "%d 'retrying' lines in about 0.5 s:\n%.500s",
                  retries, err);
    free(err);
}
END_TEST

START_TEST(check_greeting)
{
    const struct stage *st = STAGE;
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"));
    for (int nth = 1; nth <= 2; nth++) {
        int fd = tcp_connect(s.port), eof;
        struct sockaddr_in me;
        socklen_t len = sizeof me;
        char buf[256], want[256];
        getsockname(fd, (struct sockaddr *)&me, &len);
        size_t n = recv_until(fd, buf, sizeof buf - 1, now_ms() + ms(5000), &eof);
        buf[n] = '\0';
        snprintf(want, sizeof want, "hello 127.0.0.1:%d, you are client #%d\n",
                 ntohs(me.sin_port), nth);
        ck_assert_str_eq(buf, want);
        ck_assert_msg(eof, "server did not close after the greeting");
        close(fd);
    }
    char *out;
    ck_assert_int_eq(run(st->dir, st->tcp_client, NULL, &out, NULL, ARGS("-p", s.portstr)), 0);
    assert_prefix(out, "hello 127.0.0.1:");
    assert_contains(out, ", you are client #3\n", "client output");
    free(out);
    stop_server_quietly(&s);
}
END_TEST

START_TEST(check_resolve)
{
    const char *dir = STAGE->dir;
    char *out, *err;

    ck_assert_int_eq(run(dir, "resolve", NULL, &out, &err, ARGS("localhost")), 0);
    ck_assert_msg(strstr(out, "  IPv4 127.0.0.1\n") || strstr(out, "  IPv6 ::1\n"),
                  "resolve localhost printed:\n%s", out);
    free(out);
    free(err);

    ck_assert_int_eq(run(dir, "resolve", NULL, &out, &err,
                         ARGS("localhost", "nosuchhost.invalid")), 1);
    assert_prefix(out, "localhost\n");
    assert_prefix(err, "resolve: nosuchhost.invalid: ");
    free(out);
    free(err);

    /* No argument: this host's name, then its addresses if it has any. */
    char host[256], first[600];
    gethostname(host, sizeof host);
    int code = run(dir, "resolve", NULL, &out, NULL, (const char *const[]){NULL});
    snprintf(first, sizeof first, "this host is called %s\n%s\n", host, host);
    ck_assert_msg(strncmp(out, first, strlen(first)) == 0 && code == 0,
                  "resolve (exit %d) printed:\n%s", code, out);
    free(out);

    ck_assert_int_eq(run(dir, "resolve", NULL, NULL, NULL, ARGS("-h")), 2);
}
END_TEST

/* ------------------------------------------------------ http_get check */

/* Start http_get on a URL naming our listener and PATH, check that it asks
 * for TARGET, answer with the response pieces in RESP (NULL-terminated),
 * close if CLOSE_AFTER, and return http_get's exit code with its output in
 * *OUT and *ERR. */
static int http_exchange(const char *dir, const char *path, const char *target,
                         const char *const *resp, int close_after, char **out, char **err)
{
    int port, lfd = bound_socket(SOCK_STREAM, &port), eof;
    char url[128], req[4096] = "", want[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    struct proc p = spawn(dir, "http_get", NULL, 0, ARGS(url));

    ck_assert_msg(wait_for(lfd, POLLIN, now_ms() + ms(5000)) == 1, "http_get never connected");
    int fd = accept(lfd, NULL, NULL);
    ck_assert(fd >= 0);
    size_t n = 0;
    long long deadline = now_ms() + ms(5000);
    while (!strstr(req, "\r\n\r\n")) {
        size_t got = recv_until(fd, req + n, 1, deadline, &eof);
        ck_assert_msg(got == 1 && n < sizeof req - 2, "incomplete request: %.*s", (int)n, req);
        req[++n] = '\0';
    }
    snprintf(want, sizeof want, "GET %s HTTP/1.1\r\n", target);
    ck_assert_msg(strncmp(req, want, strlen(want)) == 0, "request: %s", req);
    snprintf(want, sizeof want, "\r\nHost: 127.0.0.1:%d\r\n", port);
    assert_contains(req, want, "request");

    /* Dribble the response out in small separate pieces, so http_get has to
     * put it back together from many recv() calls. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int gone = 0;           /* http_get may give up on a bad response early */
    for (int i = 0; resp[i] != NULL && !gone; i++) {
        for (size_t off = 0, len = strlen(resp[i]); off < len && !gone; off += 7) {
            size_t piece = len - off < 7 ? len - off : 7;
            gone = send(fd, resp[i] + off, piece, MSG_NOSIGNAL) != (ssize_t)piece;
            nanosleep(&(struct timespec){0, 200000}, NULL);
        }
    }
    if (close_after)
        close(fd);
    /* Otherwise the connection stays open: http_get must know from the
     * framing alone that the response is complete. */
    int code = finish(&p, ms(5000));
    *out = slurp(p.out);
    *err = slurp(p.err);
    release(&p);
    ck_assert_msg(!p.hung, "http_get %s did not finish within %d ms: does it stop where "
                           "the framing says the response ends?", path, ms(5000));
    if (!close_after)
        close(fd);
    close(lfd);
    return code;
}

/* What the responder sends, and what http_get must make of it. */
struct http_case {
    const char *what, *path;
    const char *target;     /* the request line must ask for this */
    const char *resp[4];    /* pieces of the response, NULL-terminated */
    int close_after;        /* close after the response, or keep it open */
    int want_code;
    const char *want_out;   /* exact stdout, if not NULL */
    const char *want_err;   /* part of stderr, if not NULL */
};

static const struct http_case http_cases[] = {
    {"Content-Length, connection left open", "/a/b?c=d", "/a/b?c=d",
     {"HTTP/1.1 200 OK\r\nContent-Length: 26\r\nContent-Type: text/plain\r\n\r\n",
      "abcdefghijklmnopqrstuvwxyz"}, 0, 0,
     "HTTP/1.1 200 OK\nContent-Length: 26\nContent-Type: text/plain\n\n"
     "abcdefghijklmnopqrstuvwxyz", NULL},
    {"no Content-Length: the body ends when the server closes", "", "/",
     {"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", "until ", "the end"}, 1, 0,
     "HTTP/1.1 200 OK\nConnection: close\n\nuntil the end", NULL},
    {"chunked, connection left open; no path, a query and a fragment", "?q=1#top", "/?q=1",
     {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
      "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"}, 0, 0,
     "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\nhello, world", NULL},
    {"an interim 103 before the real response", "/", "/",
     {"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}, 0, 0,
     "HTTP/1.1 103 Early Hints\nLink: </a.css>\n\nHTTP/1.1 200 OK\nContent-Length: 2\n\nok",
     NULL},
    {"a 404 is a complete answer: printed, exit 0 (like curl without -f)", "/missing",
     "/missing", {"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"}, 0, 0,
     "HTTP/1.1 404 Not Found\nContent-Length: 9\n\nnot found", NULL},
    {"the server closes before the promised body arrived", "/", "/",
     {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "only ten.."}, 1, 1,
     NULL, "closed after 10 of 100 body bytes"},
    {"not HTTP at all", "/", "/", {"SSH-2.0-OpenSSH\r\n"}, 1, 1, NULL, "not an HTTP response"},
    {"a Content-Length that is not a length", "/", "/",
     {"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nabc"}, 1, 1, NULL,
     "bad header 'Content-Length: -5'"},
    {"a chunk size that is not hex digits", "/", "/",
     {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"},
     1, 1, NULL, "bad chunk size line '0x5'"},
};

START_TEST(check_http_get)
{
    const char *dir = STAGE->dir;
    char *out, *err;

    for (size_t i = 0; i < sizeof http_cases / sizeof http_cases[0]; i++) {
        const struct http_case *c = &http_cases[i];
        int code = http_exchange(dir, c->path, c->target, c->resp, c->close_after, &out, &err);
        ck_assert_msg(code == c->want_code, "%s: exit %d, want %d; stderr: %s", c->what, code,
                      c->want_code, err);
        if (c->want_out != NULL)
            ck_assert_msg(strcmp(out, c->want_out) == 0, "%s: printed\n%s", c->what, out);
        if (c->want_err != NULL)
            assert_contains(err, c->want_err, c->what);
        free(out);
        free(err);
    }

    /* Output that cannot be written is an error too, not exit 0. */
    child_stdout = "/dev/full";
    int code = http_exchange(dir, "/", "/", http_cases[0].resp, 0, &out, &err);
    child_stdout = NULL;
    ck_assert_msg(code == 1, "http_get with stdout on /dev/full: exit %d", code);
    assert_contains(err, "write to stdout failed", "http_get to /dev/full");
    free(out);
    free(err);

    static const char *const bad_urls[] = {"https://127.0.0.1/", "ftp://x/", "http://",
                                           "http://host:99999/", "http://host:80x/", "nothing",
                                           "http://h/a b", "http://[::1]\r\nX-Evil: 1\r\n/",
                                           "http://[::1]junk/"};
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        ck_assert_msg(run(dir, "http_get", NULL, NULL, &err, ARGS(bad_urls[i])) == 2,
                      "http_get %s: want exit 2", bad_urls[i]);
        free(err);
    }
    char url[64], want[96];
    int port = closed_port();
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    snprintf(want, sizeof want, "http_get: connect 127.0.0.1:%d: Connection refused\n", port);
    ck_assert_int_eq(run(dir, "http_get", NULL, NULL, &err, ARGS(url)), 1);
    ck_assert_str_eq(err, want);
    free(err);
}
END_TEST

/* ------------------------------------------------------ TCP echo checks */

START_TEST(check_tcp_echo)
{
    const struct stage *st = STAGE;
    struct server s = start_server(st->dir, st->tcp_server, ARGS("-q"));
    static const size_t sizes[] = {1, 64 * KiB + 1, 4 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (mode != PLAIN && sizes[i] > MiB)
            continue;
        int fd = tcp_connect(s.port);
        echo_check(fd, sizes[i], (unsigned)i, 0);
        close(fd);
    }
    /* The course's own client: checked data, then interactive lines. */
    assert_run_prints(st->dir, st->tcp_client, NULL,
                      "tcp_client: 300001 bytes echoed, all correct\n",
                      ARGS("-p", s.portstr, "-n", "300001"));
    assert_run_prints(st->dir, st->tcp_client, "first line\n\nthird, no newline",
                      "first line\n\nthird, no newline", ARGS("-p", s.portstr));
    stop_server_quietly(&s);
}
END_TEST

START_TEST(check_half_close)
{
    struct server s = start_server(STAGE->dir, STAGE->tcp_server, ARGS("-q"));
    int fd = tcp_connect(s.port);
    echo_check(fd, 100 * KiB, 3, 1);
    close(fd);
    fd = tcp_connect(s.port);
    echo_check(fd, 0, 4, 1);            /* shutdown with nothing sent */
    close(fd);
    stop_server_quietly(&s);
}
END_TEST

/* A client that vanishes with a reset while the server still has data for
 * it must cost only its own connection. Rounds: reset at once; reset once
 * the echo has started; and (three times) half-close, then reset while the
 * server is still sending - its next send() fails with EPIPE, which kills
 * a server that lets SIGPIPE through. After each, a new client is served. */
START_TEST(check_reset)
{
    struct server s = start_server(STAGE->dir, STAGE->tcp_server, ARGS("-q"));
    static char junk[100 * KiB];
    memset(junk, 'r', sizeof junk);
    for (int round = 0; round < 5; round++) {
        int fd = tcp_connect(s.port);
        send_bytes(fd, junk, round < 2 ? 32 * KiB : sizeof junk);
        if (round >= 2)
            shutdown(fd, SHUT_WR);
        if (round >= 1)
            ck_assert(wait_for(fd, POLLIN, now_ms() + ms(5000)) == 1);
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);                  /* linger 0: close sends RST */
        fd = tcp_connect(s.port);
        echo_check(fd, 64 * KiB + 1, 5, 0);
        close(fd);
    }
    stop_server_quietly(&s);
}
END_TEST

START_TEST(check_idle_timeout)
{
    struct server s = start_server(STAGE->dir, STAGE->tcp_server, ARGS("-t", "0.5"));
    int idle = tcp_connect(s.port), eof;
    long long start = now_ms();
    echo_check(idle, 1, 6, 0);          /* it is being served, then goes quiet */
    int next = tcp_connect(s.port);
    send_bytes(next, "x", 1);
    char c;
    ck_assert_msg(recv_until(idle, &c, 1, now_ms() + ms(5000), &eof) == 0 && eof,
                  "silent client was not closed");
    long long waited = now_ms() - start;
    ck_assert_msg(waited >= 400, "closed after %lld ms, before the 0.5 s timeout", waited);
    ck_assert_msg(recv_until(next, &c, 1, now_ms() + ms(5000), &eof) == 1 && c == 'x',
                  "the next client was not served after the idle one was closed");
    close(idle);
    close(next);
    char *err = stop_server(&s);
    assert_contains(err, "idle timeout", "server log");
    free(err);
}
END_TEST

/* Concurrency: does a second client get served while a first one stays
 * connected? Stages that claim it must; the iterative ones must not, and
 * the queued client must be served (not lost) once the first leaves. */
static void second_client(int _i, int expect_served)
{
    struct server s = start_server(STAGE->dir, STAGE->tcp_server, ARGS("-q"));
    int first = tcp_connect(s.port), eof;
    echo_check(first, 1, 7, 0);
    int second = tcp_connect(s.port);
    send_bytes(second, "b", 1);
    char c;
    /* No readiness signal exists for "nothing happens": 300 ms bounds the
     * wait for an echo that must not come. */
    size_t n = recv_until(second, &c, 1, now_ms() + (expect_served ? ms(5000) : 300), &eof);
    if (expect_served) {
        ck_assert_msg(n == 1 && c == 'b', "second client not served while first connected");
        echo_check(first, 1000, 8, 0);
    } else {
        ck_assert_msg(n == 0 && !eof, "an iterative server served a second client");
        close(first);
        first = -1;
        ck_assert_msg(recv_until(second, &c, 1, now_ms() + ms(5000), &eof) == 1 && c == 'b',
                      "queued client lost after the first one left");
    }
    if (first >= 0)
        close(first);
    close(second);
    stop_server_quietly(&s);
}

START_TEST(check_concurrent)
{
    second_client(_i, 1);
}
END_TEST

START_TEST(limit_concurrent)
{
    second_client(_i, 0);
}
END_TEST

/* ------------------------------------------------------ UDP echo checks */

START_TEST(check_udp_echo)
{
    const struct stage *st = STAGE;
    struct server s = start_server(st->dir, st->udp_server, ARGS("-q"));
    int fd = udp_socket(s.port);
    static const size_t sizes[] = {0, 1, 512, 65507};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        udp_echo_check(fd, sizes[i], (unsigned)i);
    close(fd);
    assert_run_prints(st->dir, st->udp_client, NULL,
                      "udp_client: 65507-byte datagram echoed, all correct\n",
                      ARGS("-p", s.portstr, "-n", "65507"));
    assert_run_prints(st->dir, st->udp_client, "one\ntwo\n", "one\ntwo\n",
                      ARGS("-p", s.portstr));
    assert_run_prints(st->dir, st->udp_client, NULL, "\nnot empty\n",
                      ARGS("-p", s.portstr, "", "not empty"));
    stop_server_quietly(&s);

    /* A datagram bigger than the server's buffer is dropped, never echoed
     * cut short; the next one that fits is echoed as usual. */
    s = start_server(st->dir, st->udp_server, ARGS("-b", "512"));
    fd = udp_socket(s.port);
    char big[513];
    memset(big, 'X', sizeof big);
    ck_assert(send(fd, big, sizeof big, 0) == (ssize_t)sizeof big);
    udp_echo_check(fd, 512, 9);
    close(fd);
    char *err = stop_server(&s);
    assert_contains(err, "sent 513 bytes, more than our 512-byte buffer: dropped", "log");
    assert_contains(err, "1 too large dropped", "summary");
    free(err);
}
END_TEST

/* A UDP peer for udp_client: it answers datagram number ANSWER_FROM and
 * every one after (0: never answers), with a changed copy if CORRUPT. Runs
 * `udp_client -r 2 ping` against it; returns the exit code, and how many
 * datagrams arrived in *COUNT. */
static int udp_client_vs_peer(const struct stage *st, int answer_from, int corrupt,
                              int *count, char **err)
{
    int port, fd = bound_socket(SOCK_DGRAM, &port);
    char portstr[8], buf[64];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct proc p = spawn(st->dir, st->udp_client, NULL, 0,
                          ARGS("-p", portstr, "-t", mode == VALGRIND ? "2" : "0.3", "-r", "2",
                               "ping"));
    *count = 0;
    /* Every datagram arrives within one client timeout of the last. */
    while (*count < 3 && wait_for(fd, POLLIN, now_ms() + ms(3000)) == 1) {
        struct sockaddr_storage from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n <= 0)
            break;
        if (++*count < answer_from || answer_from == 0)
            continue;
        if (corrupt)
            buf[0] ^= 0x20;
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, len);
        if (!corrupt)
            break;
    }
    int code = finish(&p, ms(5000));
    *err = slurp(p.err);
    release(&p);
    close(fd);
    return code;
}

/* A TCP peer for tcp_client -n 1000: it reads the 1000 bytes, then sends
 * them back with byte 500 changed (BAD == 0), only 400 of them and hangs
 * up (BAD == 1), or all of them and one more (BAD == 2). The client must
 * notice, say so and exit 1. */
static void tcp_client_vs_bad_peer(const struct stage *st, int bad)
{
    int port, lfd = bound_socket(SOCK_STREAM, &port), eof;
    char portstr[8], buf[1000];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct proc p = spawn(st->dir, st->tcp_client, NULL, 0, ARGS("-p", portstr, "-n", "1000"));
    ck_assert_msg(wait_for(lfd, POLLIN, now_ms() + ms(5000)) == 1, "client never connected");
    int fd = accept(lfd, NULL, NULL);
    ck_assert_int_eq(recv_until(fd, buf, sizeof buf, now_ms() + ms(5000), &eof), sizeof buf);
    if (bad == 0)
        buf[500] ^= 0x01;
    send_bytes(fd, buf, bad == 1 ? 400 : sizeof buf);
    if (bad == 2) {
        send_bytes(fd, "+", 1);
        /* Read until the client's half-close, so our close sends no reset
         * that could overtake the extra byte. */
        recv_until(fd, buf, sizeof buf, now_ms() + ms(5000), &eof);
    }
    close(fd);
    int code = finish(&p, ms(5000));
    char *err = slurp(p.err);
    release(&p);
    close(lfd);
    ck_assert_msg(code == 1, "tcp_client exit %d against a bad echo; stderr: %s", code, err);
    static const char *const complaint[] = {
        "byte 500 differs: sent 0xf9, got 0xf8",
        "server closed the connection after 400 of 1000 bytes",
        "server sent more than we sent it",
    };
    assert_contains(err, complaint[bad], "tcp_client");
    free(err);
}

START_TEST(check_clients)
{
    const struct stage *st = STAGE;
    char want[128], portstr[8], *err;
    int port = closed_port();
    snprintf(portstr, sizeof portstr, "%d", port);
    snprintf(want, sizeof want, "%s: connect 127.0.0.1:%d: Connection refused\n",
             st->tcp_client, port);
    ck_assert_int_eq(run(st->dir, st->tcp_client, NULL, NULL, &err, ARGS("-p", portstr)), 1);
    ck_assert_str_eq(err, want);
    free(err);
    if (st->props & P_TCP_ECHO) {
        for (int bad = 0; bad < 3; bad++)
            tcp_client_vs_bad_peer(st, bad);
    }
    if (st->udp_client == NULL)
        return;

    /* Nobody there: the kernel's ICMP "port unreachable" reaches the
     * connected UDP socket as ECONNREFUSED. */
    ck_assert_int_eq(run(st->dir, st->udp_client, NULL, NULL, &err,
                         ARGS("-p", portstr, "-t", "2", "x")), 1);
    assert_contains(err, "Connection refused", "udp_client to a closed port");
    free(err);

    int count;
    ck_assert_int_eq(udp_client_vs_peer(st, 0, 0, &count, &err), 1);
    ck_assert_msg(count == 3, "client sent %d datagrams, want 1 + 2 retries", count);
    assert_contains(err, "after 3 tries: lost", "lost reply");
    free(err);

    ck_assert_int_eq(udp_client_vs_peer(st, 2, 0, &count, &err), 0);
    assert_contains(err, "sending again (retry 1 of 2)", "retry");
    free(err);

    /* Replies that are not what we sent do not count as replies. */
    ck_assert_int_eq(udp_client_vs_peer(st, 1, 1, &count, &err), 1);
    assert_contains(err, "ignoring a 4-byte reply that does not match", "wrong reply");
    assert_contains(err, "after 3 tries: lost", "wrong reply");
    free(err);
}
END_TEST

/* ---------------------------------------------------- loadgen checks */

/* KEY=NUMBER from loadgen's RESULT line; asserts it is there. */
static long long result_field(const char *out, const char *key)
{
    const char *line = strstr(out, "RESULT "), *p;
    char pat[32];
    snprintf(pat, sizeof pat, " %s=", key);
    ck_assert_msg(line != NULL && (p = strstr(line, pat)) != NULL, "no %s in:\n%s", key, out);
    return strtoll(p + strlen(pat), NULL, 10);
}

/* The load generator against the stage's server: every message of every
 * connection comes back intact, and fairness is what the stage claims. */
START_TEST(check_load)
{
    struct server s = start_server(STAGE->dir, STAGE->tcp_server, ARGS("-q"));
    char *out;
    /* Under the short-I/O shim, every split send can wait out Nagle and a
     * delayed ACK (~40 ms): fewer messages keep the check quick. */
    int per_conn = mode == SHORT_IO ? 20 : 200;
    char nstr[8];
    snprintf(nstr, sizeof nstr, "%d", per_conn);
    ck_assert_int_eq(run("tests", "loadgen", NULL, &out, NULL,
                         ARGS("-p", s.portstr, "-c", "4", "-n", nstr, "-s", "1000", "-d", "30")), 0);
    ck_assert_int_eq(result_field(out, "msgs"), 4 * per_conn);
    ck_assert_int_eq(result_field(out, "errors"), 0);
    free(out);
    ck_assert_int_eq(run("tests", "loadgen", NULL, &out, NULL,
                         ARGS("-p", s.portstr, "-c", "4", "-d", "0.5")), 0);
    long long starved = result_field(out, "starved");
    if (STAGE->props & P_CONCURRENT)
        ck_assert_msg(starved == 0, "%lld of 4 connections starved", starved);
    else
        ck_assert_msg(starved == 3, "iterative server: %lld of 4 starved, want 3", starved);
    free(out);
    /* Short connections (a new one per message): even an iterative server
     * serves everybody in turn, since nobody holds it for long. */
    ck_assert_int_eq(run("tests", "loadgen", NULL, &out, NULL,
                         ARGS("-p", s.portstr, "-c", "4", "-n", "25", "-C", "-d", "30")), 0);
    ck_assert_int_eq(result_field(out, "msgs"), 100);
    ck_assert_int_eq(result_field(out, "short"), 1);
    ck_assert_int_eq(result_field(out, "min_per_conn"), 25);
    free(out);
    stop_server_quietly(&s);
}
END_TEST

/* loadgen itself: a server that corrupts one byte, or hangs up mid-run,
 * must make it fail, and say where. The bad server is this test. */
START_TEST(check_loadgen_catches)
{
    for (int mode = 0; mode < 2; mode++) {
        int port, lfd = bound_socket(SOCK_STREAM, &port), eof;
        char portstr[8], buf[64];
        snprintf(portstr, sizeof portstr, "%d", port);
        struct proc p = spawn("tests", "loadgen", NULL, 0,
                              ARGS("-p", portstr, "-c", "1", "-n", "5", "-s", "64"));
        ck_assert(wait_for(lfd, POLLIN, now_ms() + ms(5000)) == 1);
        int fd = accept(lfd, NULL, NULL);
        ck_assert_int_eq(recv_until(fd, buf, sizeof buf, now_ms() + ms(5000), &eof), 64);
        if (mode == 0) {
            buf[10] ^= 0x20;
            send_bytes(fd, buf, sizeof buf);
        }
        close(fd);
        int code = finish(&p, ms(5000));
        char *out = slurp(p.out), *err = slurp(p.err);
        release(&p);
        close(lfd);
        ck_assert_msg(code == 1, "loadgen exit %d against a bad server", code);
        if (mode == 0)
            assert_contains(err, "wrong data on connection 1 of 1, message 1, byte offset 10",
                            "loadgen");
        else
            assert_contains(err, "closed by the server", "loadgen");
        ck_assert_int_eq(result_field(out, "errors"), 1);
        free(out);
        free(err);
    }
    char *err;
    ck_assert_int_eq(run("tests", "loadgen", NULL, NULL, &err, ARGS("-c", "0")), 2);
    free(err);
}
END_TEST

/* ------------------------------------------------------ the check table */

#define IN_SHORT_IO (1 << SHORT_IO)
#define IN_VALGRIND (1 << VALGRIND)

struct check {
    const char *name;       /* column of the report card */
    unsigned needs;         /* the stage must have all of these... */
    unsigned claims;        /* ...and this, or else the limitation runs */
    const TTest *test;
    const TTest *limitation;/* NULL: the check does not apply */
    unsigned passes;        /* also run in these passes */
};

static const struct check *checks(int *n)
{
    static struct check table[] = {
        {"args", 0, 0, NULL, NULL, 0},
        {"inuse", 0, 0, NULL, NULL, 0},
        {"signal", 0, 0, NULL, NULL, IN_VALGRIND},
        {"restart", 0, 0, NULL, NULL, 0},
        {"ipv6", 0, 0, NULL, NULL, 0},
        {"nofd", 0, 0, NULL, NULL, 0},
        {"greet", 0, P_GREETING, NULL, NULL, IN_SHORT_IO | IN_VALGRIND},
        {"resolve", 0, P_RESOLVE, NULL, NULL, IN_VALGRIND},
        {"http", 0, P_HTTP_GET, NULL, NULL, IN_SHORT_IO | IN_VALGRIND},
        {"echo", 0, P_TCP_ECHO, NULL, NULL, IN_SHORT_IO | IN_VALGRIND},
        {"halfcl", 0, P_TCP_ECHO, NULL, NULL, IN_SHORT_IO | IN_VALGRIND},
        {"reset", 0, P_TCP_ECHO, NULL, NULL, IN_SHORT_IO | IN_VALGRIND},
        {"idle", 0, P_IDLE_TIMEOUT, NULL, NULL, 0},
        {"udp", 0, P_UDP_ECHO, NULL, NULL, IN_SHORT_IO | IN_VALGRIND},
        {"client", 0, 0, NULL, NULL, IN_SHORT_IO | IN_VALGRIND},
        {"concur", P_TCP_ECHO, P_CONCURRENT, NULL, NULL, 0},
        {"load", 0, P_TCP_ECHO, NULL, NULL, IN_SHORT_IO | IN_VALGRIND},
    };
    /* TTest pointers are not constant expressions: fill them in here. */
    const TTest *tests[] = {check_bad_args, check_port_in_use, check_signals, check_restart,
                            check_ipv6, check_fd_limit, check_greeting, check_resolve, check_http_get, check_tcp_echo,
                            check_half_close, check_reset, check_idle_timeout, check_udp_echo,
                            check_clients, check_concurrent, check_load};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        table[i].test = tests[i];
        if (tests[i] == check_concurrent)
            table[i].limitation = limit_concurrent;
    }
    *n = (int)(sizeof table / sizeof table[0]);
    return table;
}

#define MAX_CHECKS 24

enum verdict { NOT_RUN, NOT_APPLICABLE, PASSED, FAILED, LIMIT_OK, LIMIT_FAILED };

/* Which test (if any) a check means for a stage. */
static const TTest *test_for(const struct check *c, const struct stage *st, int *is_limit)
{
    *is_limit = 0;
    if ((st->props & c->needs) != c->needs)
        return NULL;
    if (c->claims == 0 || (st->props & c->claims))
        return c->test;
    *is_limit = c->limitation != NULL;
    return c->limitation;
}

/* ---------------------------------------------------------- the runner */

/* The report card: a column per check, then one per extra pass, which
 * passes only if every check run in that pass passed. */
struct card {
    int nchecks;
    const struct check *tbl;
    enum verdict v[NSTAGES][MAX_CHECKS + NPASSES];
    char names[NPASSES][NSTAGES][MAX_CHECKS][48];   /* test case names */
    int passed, failed;
};

static const char *const pass_names[NPASSES] = {"", "short", "valgrind"};

/* Run one suite in its own runner (so Check prints a summary for it) and
 * file each result in the report card. */
static void run_suite(Suite *s, struct card *card)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int n = srunner_ntests_run(sr);
    TestResult **res = srunner_results(sr);
    for (int r = 0; r < n; r++) {
        const char *name = tr_tcname(res[r]);
        int ok = tr_rtype(res[r]) == CK_PASS;
        *(ok ? &card->passed : &card->failed) += 1;
        for (int pass = 0; pass < NPASSES; pass++) {
            for (int si = 0; si < NSTAGES; si++) {
                for (int ci = 0; ci < card->nchecks; ci++) {
                    if (strcmp(name, card->names[pass][si][ci]) != 0)
                        continue;
                    int is_limit;
                    test_for(&card->tbl[ci], &stages[si], &is_limit);
                    enum verdict *v = &card->v[si][pass == PLAIN ? ci : card->nchecks + pass - 1];
                    if (pass != PLAIN)
                        *v = (*v == FAILED || !ok) ? FAILED : PASSED;
                    else
                        *v = is_limit ? (ok ? LIMIT_OK : LIMIT_FAILED) : (ok ? PASSED : FAILED);
                }
            }
        }
    }
    free(res);
    srunner_free(sr);
}

static void print_report_card(const struct card *card)
{
    static const char *const word[] = {".", "-", "pass", "FAIL", "limit", "FAIL"};
    int ncols = card->nchecks + NPASSES - 1;
    printf("\nreport card   ");
    for (int ci = 0; ci < ncols; ci++)
        printf(" %-7s", ci < card->nchecks ? card->tbl[ci].name
                                           : pass_names[ci - card->nchecks + 1]);
    printf("\n");
    for (int si = 0; si < NSTAGES; si++) {
        printf("%-13s ", stages[si].dir);
        for (int ci = 0; ci < ncols; ci++)
            printf(" %-7s", word[card->v[si][ci]]);
        printf("\n");
    }
    printf("pass: claimed and shown; limit: a documented limitation shown to hold;\n"
           "-: does not apply; .: not run (filtered out, or valgrind missing);\n"
           "short: the marked checks again with short reads/writes and EINTR injected;\n"
           "valgrind: the marked checks again under memcheck\n\n");
}

/* Add the test case for check CI of stage SI in PASS to suite S. */
static void add_case(Suite *s, struct card *card, enum pass pass, int si, int ci)
{
    int is_limit;
    const TTest *t = test_for(&card->tbl[ci], &stages[si], &is_limit);
    char *name = card->names[pass][si][ci];
    snprintf(name, sizeof card->names[0][0][0], "%s:%s%s%s%s", stages[si].dir,
             card->tbl[ci].name, is_limit ? " (limitation)" : "", pass ? " in " : "",
             pass_names[pass]);
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, pass == VALGRIND ? 300 : 60);
    tcase_add_loop_test(tc, t, si, si + 1);
    suite_add_tcase(s, tc);
}

static void usage(void)
{
    fprintf(stderr, "usage: harness [-r ROOT] [-s STAGE] [-c CHECK] [-V]\n"
                    "  -r ROOT   where the chapter directories are (default ..)\n"
                    "  -s STAGE  run only this stage (e.g. 02-tcp-udp)\n"
                    "  -c CHECK  run only this check (a report card column, or tools)\n"
                    "  -V        skip the valgrind pass\n");
    exit(2);
}

static int have_valgrind(void)
{
    return system("valgrind --version >/dev/null 2>&1") == 0;
}

int main(int argc, char **argv)
{
    const char *only_stage = NULL, *only_check = NULL;
    int opt, skip_valgrind = 0;
    static struct card card;

    card.tbl = checks(&card.nchecks);
    while ((opt = getopt(argc, argv, "r:s:c:V")) != -1) {
        switch (opt) {
        case 'r': root = optarg; break;
        case 's': only_stage = optarg; break;
        case 'c': only_check = optarg; break;
        case 'V': skip_valgrind = 1; break;
        default: usage();
        }
    }
    signal(SIGPIPE, SIG_IGN);
    char shim[PATH_MAX];
    snprintf(shim, sizeof shim, "%s/tests/shortio.so", root);
    if (realpath(shim, shim_path) == NULL) {
        fprintf(stderr, "harness: %s: %s (run make)\n", shim, strerror(errno));
        return 1;
    }
    if (!skip_valgrind && !have_valgrind()) {
        printf("NOTICE: valgrind not found: the valgrind pass is skipped\n");
        skip_valgrind = 1;
    }

    for (mode = PLAIN; mode < NPASSES; mode++) {
        if (mode == VALGRIND && skip_valgrind)
            break;
        Suite *extra = NULL;    /* the one suite of an extra pass */
        for (int si = 0; si < NSTAGES; si++) {
            if (only_stage != NULL && strcmp(only_stage, stages[si].dir) != 0)
                continue;
            Suite *s = NULL;
            for (int ci = 0; ci < card.nchecks; ci++) {
                int is_limit;
                const TTest *t = test_for(&card.tbl[ci], &stages[si], &is_limit);
                if (mode == PLAIN && t == NULL)
                    card.v[si][ci] = NOT_APPLICABLE;
                if (t == NULL || (mode != PLAIN && !(card.tbl[ci].passes & (1u << mode))) ||
                    (only_check != NULL && strcmp(only_check, card.tbl[ci].name) != 0))
                    continue;
                if (mode != PLAIN && extra == NULL)
                    extra = suite_create(pass_names[mode]);
                if (s == NULL)
                    s = mode != PLAIN ? extra : suite_create(stages[si].dir);
                add_case(s, &card, mode, si, ci);
            }
            if (mode == PLAIN && s != NULL)
                run_suite(s, &card);
        }
        if (mode == PLAIN && only_stage == NULL &&
            (only_check == NULL || strcmp(only_check, "tools") == 0)) {
            /* The test tools get tested too: a load generator that missed
             * a wrong byte would make every benchmark meaningless. */
            Suite *s = suite_create("tools");
            TCase *tc = tcase_create("tools:loadgen");
            tcase_add_test(tc, check_loadgen_catches);
            suite_add_tcase(s, tc);
            run_suite(s, &card);
        }
        if (extra != NULL)
            run_suite(extra, &card);
    }
    print_report_card(&card);
    printf("harness: %d passed, %d failed\n", card.passed, card.failed);
    return card.failed == 0 && card.passed > 0 ? 0 : 1;
}
