/*
 * rusage.c - run a program and, once it has exited, write down what it
 * cost: CPU seconds (user and system) and context switches (voluntary and
 * involuntary), summed over all its threads and over the children it
 * waited for - what getrusage() counts, and what /proc cannot give once
 * threads have ended. SIGINT and SIGTERM are passed on to the program.
 * bench.sh runs every server under it to tell the cost of each message.
 * Needs only libc.
 *
 * usage: rusage FILE PROGRAM [ARG...]
 *   FILE gets one line: user_s=U sys_s=S vcsw=V ivcsw=I maxrss_kib=M
 *   exits with PROGRAM's exit status (128 + N if a signal N ended it)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t child;

static void pass_on(int sig)
{
    int saved_errno = errno;
    if (child > 0)
        kill(child, sig);
    errno = saved_errno;
}

int main(int argc, char **argv)
{
    struct sigaction sa = {.sa_handler = pass_on};
    sigset_t both, old;

    if (argc < 3) {
        fprintf(stderr, "usage: rusage FILE PROGRAM [ARG...]\n");
        return 2;
    }
    sigemptyset(&both);
    sigaddset(&both, SIGINT);
    sigaddset(&both, SIGTERM);
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) {
        perror("rusage: sigaction");
        return 1;
    }
    /* A signal that came between fork() and `child = pid` would be lost:
     * hold them until the parent knows whom to pass them to. */
    sigprocmask(SIG_BLOCK, &both, &old);
    pid_t pid = fork();
    if (pid < 0) {
        perror("rusage: fork");
        return 1;
    }
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);   /* exec resets the handlers */
        execvp(argv[2], argv + 2);
        fprintf(stderr, "rusage: %s: %s\n", argv[2], strerror(errno));
        _exit(127);
    }
    child = pid;
    sigprocmask(SIG_SETMASK, &old, NULL);

    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("rusage: wait4");
            return 1;
        }
    }
    FILE *f = fopen(argv[1], "w");
    int n = f == NULL ? -1
                      : fprintf(f, "user_s=%ld.%06ld sys_s=%ld.%06ld vcsw=%ld ivcsw=%ld "
                                   "maxrss_kib=%ld\n",
                                (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec,
                                (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec,
                                ru.ru_nvcsw, ru.ru_nivcsw, ru.ru_maxrss);
    if (n < 0 || fclose(f) != 0) {
        fprintf(stderr, "rusage: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
