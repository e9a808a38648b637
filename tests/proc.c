/*
 * proc.c - starting the programs under test, waiting for them, stopping
 * servers; in the ASAN pass, the sanitizers' reports they leave. Every
 * wait here is on a readiness signal (a pidfd, the "listening on" line)
 * bounded by a deadline, never on a sleep.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int ms(int base)
{
    return cfg.pass == VALGRIND ? base * 10
         : cfg.pass == SHORT_IO || cfg.pass == ASAN ? base * 3 : base;
}

long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

int wait_for(int fd, short events, long long deadline)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        long long left = deadline - now_ms();
        int n = poll(&p, 1, left < 0 ? 0 : (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        return n;
    }
}

static int temp_file(void)
{
    FILE *f = tmpfile();
    ck_assert_msg(f != NULL, "tmpfile: %s", strerror(errno));
    int fd = dup(fileno(f));
    fclose(f);
    return fd;
}

char *slurp(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    ssize_t n;

    lseek(fd, 0, SEEK_SET);         /* fails harmlessly on a pipe */
    while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)n;
        if (cap - len < 2)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    return buf;
}

/* ---- the ASAN pass: sanitizer reports ---------------------------------- */

/* This test case's directory of reports (set in its own process). */
static char report_dir[sizeof cfg.reports + 16];

void reports_open(int id)
{
    snprintf(report_dir, sizeof report_dir, "%s/%d", cfg.reports, id);
    ck_assert_msg(mkdir(report_dir, 0700) == 0 || errno == EEXIST, "mkdir %s: %s", report_dir,
                  strerror(errno));
}

/* In the child: each report to a file of its own, report.PID, and exit
 * SANITIZER_EXIT after it - which no program of the course uses, and a
 * check expecting exit 1 cannot mistake for its own. Leaks count: a
 * program frees all it allocated by the time it exits, SIGTERM or not.
 * A use of a function's locals after it returned counts too (chapter
 * 07's stack switches tell AddressSanitizer where each task's are). */
static void sanitizer_env(void)
{
    char opts[sizeof report_dir + 128];
    snprintf(opts, sizeof opts,
             "log_path=%s/report exitcode=%d detect_leaks=1 detect_stack_use_after_return=1",
             report_dir, SANITIZER_EXIT);
    setenv("ASAN_OPTIONS", opts, 1);
    snprintf(opts, sizeof opts, "log_path=%s/report exitcode=%d halt_on_error=1 print_stacktrace=1",
             report_dir, SANITIZER_EXIT);
    setenv("UBSAN_OPTIONS", opts, 1);
}

/* The report in FD from the line that says what went wrong (stderr may
 * have other lines before it), at most 25 lines; caller frees. */
static char *report_head(int fd)
{
    enum { LINES = 25, CHARS = 3000 };
    char *text = slurp(fd), *start = text, *end;
    char *at = strstr(text, "runtime error:");     /* UBSan */
    if (at == NULL)
        at = strstr(text, "ERROR: ");               /* AddressSanitizer, LeakSanitizer */
    if (at != NULL) {
        while (at > text && at[-1] != '\n')
            at--;
        start = at;
    }
    end = start;
    for (int n = 0; n < LINES && end != NULL && *end != '\0'; n++)
        if ((end = strchr(end, '\n')) != NULL)
            end++;
    if (end != NULL)
        *end = '\0';
    /* The shadow memory's bytes say more to AddressSanitizer than to us. */
    if ((end = strstr(start, "Shadow bytes around")) != NULL)
        *end = '\0';
    if (strlen(start) > CHARS)
        start[CHARS] = '\0';
    memmove(text, start, strlen(start) + 1);
    return text;
}

/* P exited SANITIZER_EXIT: fail the test with its report. Where UBSan
 * cannot have its file (a build other than tests/asan.sh's), its report
 * is on stderr. */
static void sanitizer_failed(const struct proc *p)
{
    char path[sizeof report_dir + 32];
    snprintf(path, sizeof path, "%s/report.%d", report_dir, (int)p->pid);
    int fd = open(path, O_RDONLY);
    ck_abort_msg("process %d exited %d: a sanitizer report (%s):\n%s", (int)p->pid,
                 SANITIZER_EXIT, fd >= 0 ? path : "its stderr", report_head(fd >= 0 ? fd : p->err));
}

/* Open the report in directory DIR named NAME (not . or ..): its path in
 * PATH, a descriptor or -1. No ck_assert(): the harness's process calls
 * it too (reports_show()). */
static int open_report(const char *dir, const char *name, char *path, size_t len)
{
    if (name[0] == '.')
        return -1;
    snprintf(path, len, "%s/%s", dir, name);
    return open(path, O_RDONLY);
}

void reports_show(int id, const char *msg)
{
    char dir[sizeof report_dir], path[sizeof report_dir + 300];
    snprintf(dir, sizeof dir, "%s/%d", cfg.reports, id);
    DIR *d = opendir(dir);
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
        int fd = open_report(dir, e->d_name, path, sizeof path);
        if (fd < 0 || (msg != NULL && strstr(msg, path) != NULL)) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        char *head = report_head(fd);
        printf("    %s:\n", path);
        for (char *line = strtok(head, "\n"); line != NULL; line = strtok(NULL, "\n"))
            printf("    %s\n", line);
        free(head);
        close(fd);
    }
    if (d != NULL)
        closedir(d);
}

void reports_assert_none(void)
{
    DIR *d = opendir(report_dir);
    ck_assert_msg(d != NULL, "%s: %s", report_dir, strerror(errno));
    char path[sizeof report_dir + 300];
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        int fd = open_report(report_dir, e->d_name, path, sizeof path);
        if (fd >= 0)
            ck_abort_msg("a sanitizer report (%s):\n%s", path, report_head(fd));
    }
    closedir(d);
}

/* The command line: valgrind in front in that pass, then the program,
 * then the options its stage gives it (OPTS: words split by spaces, in
 * WORDS, which must outlive ARGV), then ARGS. */
static void build_argv(const char *path, char *opts, const char *const *args,
                       const struct spawn_opts *o, const char **argv)
{
    int n = 0;
    if (cfg.pass == VALGRIND) {
        static const char *const vg[] = {"valgrind", "--quiet", "--leak-check=full",
                                         "--errors-for-leak-kinds=definite,indirect,possible",
                                         "--error-exitcode=99"};
        for (size_t i = 0; i < sizeof vg / sizeof vg[0]; i++)
            argv[n++] = vg[i];
        if (o->track_fds)
            argv[n++] = "--track-fds=yes";
    }
    argv[n++] = path;
    for (char *save, *w = strtok_r(opts, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save))
        argv[n++] = w;
    for (int i = 0; args[i] != NULL; i++) {
        ck_assert_msg(n < MAX_ARGS - 1, "too many arguments for %s", path);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
}

/* In the child, before exec: descriptors, environment, signals. */
static void child_setup(const struct spawn_opts *o, int in, int out, int err)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* An ignored signal stays ignored across exec: give the program the
     * default SIGPIPE, so it must protect itself as in real life. */
    signal(SIGPIPE, SIG_DFL);
    if (cfg.pass == SHORT_IO)
        setenv("LD_PRELOAD", cfg.shortio, 1);
    if (cfg.pass == ASAN)
        sanitizer_env();
    if (o->fault != NULL) {
        setenv("LD_PRELOAD", cfg.faults, 1);
        setenv("FAULT", o->fault, 1);
    }
    if (o->out == OUT_PATH && (out = open(o->out_path, O_WRONLY)) < 0)
        _exit(127);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        _exit(127);
    closefrom(3);
    for (int fd = 0; fd <= 2; fd++)
        if (o->closed_fds & (1u << fd))
            close(fd);
}

/* A pseudo-terminal: FDS[1] the terminal side (the program's stderr),
 * FDS[0] the side a terminal window would read - and we never do. */
static void unread_terminal(int fds[2])
{
    fds[0] = posix_openpt(O_RDWR | O_NOCTTY);
    ck_assert_msg(fds[0] >= 0, "posix_openpt: %s", strerror(errno));
    ck_assert(grantpt(fds[0]) == 0 && unlockpt(fds[0]) == 0);
    fds[1] = open(ptsname(fds[0]), O_RDWR | O_NOCTTY);
    ck_assert_msg(fds[1] >= 0, "%s: %s", ptsname(fds[0]), strerror(errno));
}

struct proc spawn(const char *dir, const char *prog, const char *const *args,
                  const struct spawn_opts *o)
{
    static const struct spawn_opts defaults;
    struct proc p = {.status = -1, .in = -1, .out = -1};
    int inp[2], outp[2], errp[2];
    char path[512], opts[128] = "";
    const char *argv[MAX_ARGS];

    if (o == NULL)
        o = &defaults;
    /* "server -e": the program, and options its stage always gives it. */
    size_t name_len = strcspn(prog, " ");
    if (prog[name_len] == ' ')
        snprintf(opts, sizeof opts, "%s", prog + name_len + 1);
    /* The ASAN pass runs the stages' sanitized builds; our tools stay. */
    const char *root = cfg.pass == ASAN && strcmp(dir, "tests") != 0 ? cfg.asan_root : cfg.root;
    snprintf(path, sizeof path, "%s/%s/%.*s", root, dir, (int)name_len, prog);
    ck_assert_msg(access(path, X_OK) == 0, "%s is not built (run make)", path);
    build_argv(path, opts, args, o, argv);
    ck_assert(pipe(inp) == 0);
    if (o->out == OUT_PIPE || o->out == OUT_NO_READER)
        ck_assert(pipe(outp) == 0);
    else
        outp[0] = outp[1] = temp_file();
    if (o->err_unread == ERR_PIPE)
        ck_assert(pipe(errp) == 0);
    else if (o->err_unread == ERR_TERMINAL)
        unread_terminal(errp);
    else
        errp[0] = errp[1] = temp_file();
    if (o->out == OUT_NO_READER) {
        close(outp[0]);
        outp[0] = -1;
    }

    p.pid = fork();
    ck_assert_msg(p.pid >= 0, "fork: %s", strerror(errno));
    if (p.pid == 0) {
        child_setup(o, inp[0], outp[1], errp[1]);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(inp[0]);
    if (o->in != NULL && *o->in != '\0')
        ck_assert(write(inp[1], o->in, strlen(o->in)) == (ssize_t)strlen(o->in));
    if (o->in_open)
        p.in = inp[1];
    else
        close(inp[1]);
    if (outp[1] != outp[0])
        close(outp[1]);
    if (errp[1] != errp[0])
        close(errp[1]);
    p.out = outp[0];
    p.err = errp[0];
    p.pidfd = pidfd_open(p.pid, 0);
    ck_assert_msg(p.pidfd >= 0, "pidfd_open: %s", strerror(errno));
    return p;
}

int finish(struct proc *p, int timeout)
{
    p->hung = wait_for(p->pidfd, POLLIN, now_ms() + timeout) == 0;
    if (p->hung)
        kill(p->pid, SIGKILL);
    while (waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR)
        ;
    close(p->pidfd);
    if (cfg.pass == ASAN && WIFEXITED(p->status) && WEXITSTATUS(p->status) == SANITIZER_EXIT)
        sanitizer_failed(p);
    return WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
}

void release(struct proc *p)
{
    if (p->in >= 0)
        close(p->in);
    if (p->out >= 0)
        close(p->out);
    close(p->err);
}

int run(const char *dir, const char *prog, const char *in, char **out, char **err,
        const char *const *args)
{
    struct spawn_opts o = {.in = in};
    struct proc p = spawn(dir, prog, args, &o);
    int code = finish(&p, ms(10000));
    if (out != NULL)
        *out = slurp(p.out);
    if (err != NULL)
        *err = slurp(p.err);
    release(&p);
    return code;
}

void assert_run_prints(const char *dir, const char *prog, const char *in, const char *want,
                       const char *const *args)
{
    char *out, *err;
    int code = run(dir, prog, in, &out, &err, args);
    ck_assert_msg(code == 0, "%s exited %d; stderr: %s", prog, code, err);
    ck_assert_msg(strcmp(out, want) == 0, "%s printed '%s', want '%s'", prog, out, want);
    free(out);
    free(err);
}

/* Read the first line of FD (at most LEN-1 bytes) before DEADLINE. */
static void read_line(int fd, char *line, size_t len, long long deadline, const char *who,
                      const struct proc *p)
{
    size_t n = 0;
    while (n < len - 1 && (n == 0 || line[n - 1] != '\n')) {
        ck_assert_msg(wait_for(fd, POLLIN, deadline) == 1,
                      "%s: no 'listening on' line within %d ms", who, ms(5000));
        if (read(fd, line + n, 1) <= 0)
            ck_abort_msg("%s exited before it was ready: %s", who, slurp(p->err));
        n++;
    }
    line[n] = '\0';
}

/* The -a value in ARGS, or the default address. */
static const char *addr_in(const char *const *args)
{
    for (int i = 0; args[i] != NULL && args[i + 1] != NULL; i++)
        if (strcmp(args[i], "-a") == 0)
            return args[i + 1];
    return "127.0.0.1";
}

struct server start_server(const char *dir, const char *prog, const char *const *args,
                           const struct spawn_opts *o)
{
    struct server s;
    struct spawn_opts opts = o != NULL ? *o : (struct spawn_opts){0};
    const char *argv[MAX_ARGS] = {"-p", "0"};
    char line[128], prefix[80], who[128];
    int n = 2, port = 0;

    for (int i = 0; args[i] != NULL && n < MAX_ARGS - 1; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    opts.out = OUT_PIPE;
    s.p = spawn(dir, prog, argv, &opts);
    snprintf(who, sizeof who, "%s/%s", dir, prog);
    read_line(s.p.out, line, sizeof line, now_ms() + ms(5000), who, &s.p);
    /* Exactly "listening on ADDR:PORT\n", ADDR as asked for with -a. */
    const char *addr = addr_in(args);
    snprintf(prefix, sizeof prefix, strchr(addr, ':') ? "listening on [%s]:" : "listening on %s:",
             addr);
    char tail = 0;
    ck_assert_msg(strncmp(line, prefix, strlen(prefix)) == 0 &&
                      sscanf(line + strlen(prefix), "%d%c", &port, &tail) == 2 &&
                      tail == '\n' && port > 0 && port < 65536,
                  "%s: bad readiness line '%s'", who, line);
    s.port = port;
    snprintf(s.portstr, sizeof s.portstr, "%d", port);
    return s;
}

char *stop_server(struct server *s)
{
    kill(s->p.pid, SIGTERM);
    int code = finish(&s->p, ms(1000));
    char *err = slurp(s->p.err);
    release(&s->p);
    ck_assert_msg(!s->p.hung, "server still running %d ms after SIGTERM; stderr:\n%.2000s",
                  ms(1000), err);
    ck_assert_msg(code == 0, "server ended with %s %d after SIGTERM%s; stderr:\n%.2000s",
                  code < 0 ? "signal" : "exit", code < 0 ? WTERMSIG(s->p.status) : code,
                  code == 99 && cfg.pass == VALGRIND ? " (valgrind found errors)" : "", err);
    return err;
}

void stop_server_quietly(struct server *s)
{
    free(stop_server(s));
}

/* A number from /proc/PID/status, such as "VmRSS" (in kB there): bytes. */
long long status_bytes(pid_t pid, const char *key)
{
    char path[64], line[256], want[32];
    long long kib = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    snprintf(want, sizeof want, "%s: %%lld kB", key);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    while (kib < 0 && fgets(line, sizeof line, f) != NULL)
        sscanf(line, want, &kib);
    fclose(f);
    ck_assert_msg(kib >= 0, "no %s in %s", key, path);
    return kib * 1024;
}
