/*
 * harness.h - what the parts of the harness share.
 *
 *   proc.c        starting programs, waiting for them, stopping servers
 *   peers.c       sockets, byte-checked echo exchanges, fake peers
 *   checks_*.c    the checks, grouped by what they test
 *   harness.c     the check table, the passes, the report card, main()
 *
 * A check is a function `void check_x(const struct stage *st)` that uses
 * Check's ck_assert*() and fails the test case on the first wrong thing.
 */
#ifndef HARNESS_H
#define HARNESS_H

#include "stages.h"

#include <check.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#define KiB 1024
#define MiB (1024 * 1024)
#define MAX_ARGS 24

/* The passes: every check once as is, then the ones marked for it again
 * with every program under the short-I/O shim (shortio.c), then under
 * valgrind, then (with -A) built with AddressSanitizer and UBSan. */
enum pass { PLAIN, SHORT_IO, VALGRIND, ASAN, NPASSES };

/* Set by main() before any test forks, read-only after. */
struct config {
    const char *root;               /* where the chapter directories are */
    const char *asan_root;          /* -A: the same, built with the sanitizers */
    enum pass pass;                 /* the pass now running */
    char shortio[4096], faults[4096];   /* absolute paths of the shims */
    char reports[4096];             /* the ASAN pass: a directory per test
                                       case for its programs' reports */
};
extern struct config cfg;

/* ---- proc.c: time and processes ------------------------------------ */

/* A base timeout in ms, stretched for the slow passes: valgrind runs
 * programs many times slower, the short-I/O shim makes many more calls,
 * AddressSanitizer's builds run about twice as slow. */
int ms(int base);
long long now_ms(void);
/* poll() one fd for EVENTS until DEADLINE (a now_ms() value): 1 ready, 0 not. */
int wait_for(int fd, short events, long long deadline);

enum out_kind {
    OUT_FILE,           /* stdout to a temp file, read after exit (default) */
    OUT_PIPE,           /* stdout to a pipe we read as it comes (servers) */
    OUT_PATH,           /* stdout opened from out_path (e.g. /dev/full) */
    OUT_NO_READER,      /* stdout a pipe whose reader has already gone */
};

enum { ERR_PIPE = 1, ERR_TERMINAL = 2 };

/* How to start a program; zero values are the ordinary choices. */
struct spawn_opts {
    const char *in;         /* stdin's whole contents (NULL: empty) */
    int in_open;            /* instead, stdin a pipe left open: proc.in */
    enum out_kind out;
    const char *out_path;   /* with OUT_PATH */
    int err_unread;         /* ERR_PIPE or ERR_TERMINAL that nobody reads */
    unsigned closed_fds;    /* standard descriptors to start closed: 1<<fd */
    const char *fault;      /* run under faults.so with FAULT=this */
    int track_fds;          /* in the valgrind pass: --track-fds=yes, and
                               valgrind lists on stderr what is open at exit */
};

struct proc {
    pid_t pid;
    int pidfd;      /* readable when the process has exited */
    int in;         /* with in_open, stdin's write end (close it: EOF), else -1 */
    int out;        /* stdout: a pipe or a temp file (-1 if none) */
    int err;        /* stderr: a temp file, or the unread pipe */
    int status;     /* wait status once reaped */
    int hung;       /* killed by finish() for not exiting in time */
};

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NO_ARGS ((const char *const[]){NULL})

/* Start DIR/PROG with ARGS (NULL-terminated). The child dies with the
 * test process, so a failed check leaks nothing. */
struct proc spawn(const char *dir, const char *prog, const char *const *args,
                  const struct spawn_opts *o);
/* Wait until P exits, at most TIMEOUT ms; kill it if it does not. Returns
 * its exit code, or -1 if it hung or died of a signal. */
int finish(struct proc *p, int timeout);
void release(struct proc *p);

/* The ASAN pass. The programs are built to stop at the first error
 * (UBSan's too) or leak with this exit code, the report in a file. */
#define SANITIZER_EXIT 66
/* In the test case's own process, before its first program: a fresh
 * directory for the reports of its programs, named after ID. */
void reports_open(int id);
/* Fail the test case if any of its programs left a report. */
void reports_assert_none(void);
/* In the harness's own process, once test case ID has failed with
 * message MSG: print its programs' reports that MSG does not show (a
 * check may fail on what a program's crash did, such as a server that
 * stopped answering, before it sees the exit). */
void reports_show(int id, const char *msg);

/* A figure from /proc/PID/status given in kB there, such as "VmRSS" or
 * "VmSize" (how much address space PID has mapped), in bytes. */
long long status_bytes(pid_t pid, const char *key);
/* Read a whole file or pipe from its start into a NUL-terminated buffer
 * (caller frees). */
char *slurp(int fd);

/* Run a program to the end. Returns its exit code; *OUT and *ERR (if not
 * NULL) get its stdout and stderr (caller frees). */
int run(const char *dir, const char *prog, const char *in, char **out, char **err,
        const char *const *args);
/* Run a program to the end; it must exit 0 and print exactly WANT. */
void assert_run_prints(const char *dir, const char *prog, const char *in, const char *want,
                       const char *const *args);

/* A running server and the port it told us it listens on. */
struct server {
    struct proc p;
    int port;
    char portstr[8];
};

/* Start a server with -p 0 (unless ARGS has its own -p) and ARGS, and
 * check and read its readiness line. O may be NULL. */
struct server start_server(const char *dir, const char *prog, const char *const *args,
                           const struct spawn_opts *o);
/* SIGTERM the server, assert it exits 0 within 1 s, return its stderr. */
char *stop_server(struct server *s);
void stop_server_quietly(struct server *s);

/* ---- peers.c: sockets, echo checks, fake peers ------------------------ */

/* A socket of TYPE connected to numeric ADDR and PORT. */
int connect_to(int type, const char *addr, int port);
int tcp_connect(int port);
int udp_socket(int port);
/* A socket bound to a free port on 127.0.0.1 (listening, for TCP). */
int bound_socket(int type, int *port);
/* A port nothing listens on. */
int closed_port(void);
/* A non-blocking TCP socket with its connect() to 127.0.0.1:PORT under way. */
int start_connect(int port);
/* Take the hard limit of descriptors (asserting it is at least NEED): a
 * crowd of clients needs one each. */
void raise_fd_limit(int need);
void send_bytes(int fd, const void *buf, size_t len);
/* Receive up to LEN bytes before DEADLINE; stops early at EOF (*EOF set). */
size_t recv_until(int fd, char *buf, size_t len, long long deadline, int *eof);
/* Send SIZE pattern bytes and read the echo at the same time; with
 * HALF_CLOSE, shutdown(SHUT_WR) after the last byte and require EOF after
 * the last echoed one. Asserts every byte. */
void echo_check(int fd, size_t size, unsigned seed, int half_close);
/* Byte I of the test pattern number SEED. */
unsigned char pattern(size_t i, unsigned seed);
/* Send a datagram of SIZE pattern bytes and require it back whole. */
void udp_echo_check(int fd, size_t size, unsigned seed);

/* A new client on PORT must get exactly "server busy\n", then the close;
 * WHEN says in which situation, for the message. */
void assert_busy(int port, const char *when);
void assert_contains(const char *text, const char *needle, const char *what);
void assert_prefix(const char *text, const char *prefix);
/* How many times NEEDLE occurs in TEXT. */
int count_of(const char *text, const char *needle);

/* A fake peer: a socket of TYPE on a free port, and the program under test
 * started against it. In ARGS, "PORT" stands for that port. For
 * TCP, fake_accept() waits for the program to connect. */
struct fake {
    int listen_fd;      /* the bound (TCP: listening) socket */
    int fd;             /* TCP: the accepted connection, else -1 */
    int port;
    char portstr[8];
    struct proc p;
};
struct fake fake_start(int type, const char *dir, const char *prog, const char *const *args,
                       const struct spawn_opts *o);
void fake_accept(struct fake *f);
/* Wait for the program to exit (at most TIMEOUT ms), close the peer's
 * sockets; returns the exit code, stdout and stderr in *OUT, *ERR. */
int fake_finish(struct fake *f, int timeout, char **out, char **err);

/* Which server programs a stage has: one, two, or the same one twice. */
int server_progs(const struct stage *st, const char *progs[2]);
/* Does PROG of stage ST serve TCP? */
int serves_tcp(const struct stage *st, const char *prog);

/* ---- the checks ------------------------------------------------------- */

typedef void check_fn(const struct stage *st);

/* checks_server.c: what every server does, whatever it serves */
check_fn check_bad_args, check_port_in_use, check_signals, check_restart, check_ipv6,
    check_fd_limit, check_std_fds, check_full_log, check_faults;
/* checks_greet.c and checks_http.c: chapter 01's programs */
check_fn check_greeting, check_resolve, check_http_get;
/* checks_echo.c: TCP echo */
check_fn check_tcp_echo, check_half_close, check_reset, check_idle_timeout, check_framing,
    check_concurrent, limit_concurrent, check_load;
/* checks_udp.c: UDP echo */
check_fn check_udp_echo, check_udp_self;
/* checks_threads.c: many clients at once, limits, counters, processes */
check_fn check_many, check_busy, check_pool, check_counters, check_signal_flood,
    check_processes;
/* checks_loop.c: one thread, many connections: a thousand at once, ten
 * thousand (or select()'s wall), back-pressure, a flood past the
 * descriptor limit, an idle deadline per connection */
check_fn check_thousand, check_backpressure, check_flood, check_idles, check_c10k, limit_c10k;
/* checks_httpd.c: server -H, chapter 07's HTTP/1.1 handler */
check_fn check_httpd;
/* checks_redial.c: client -k heartbeats and -R reconnection, chapter 07's */
check_fn check_redial;
/* checks_storms.c: storms and hostile peers, at scale */
check_fn check_resets, check_idlers, limit_idlers, check_burst, check_termall, check_badsrv;
/* checks_clients.c: the clients against bad servers */
check_fn check_clients, check_client_timeouts, check_client_output;
/* checks_tools.c: the harness's own tools (no stage: ST is NULL) */
check_fn check_loadgen_catches, check_loadgen_modes, check_concurrent_is_proven, check_rusage;

/* Used by check_concurrent and by the tools check that proves it. */
void second_client(int port, int expect_served);
/* loadgen's RESULT line field KEY; asserts it is there. */
long long result_field(const char *out, const char *key);
double result_number(const char *out, const char *key);
/* The lowest descriptor number PID does not have open (below 1024). */
int lowest_free_fd(pid_t pid);
/* Can this process forge packets (raw sockets)? */
int can_forge(void);

#endif
