/*
 * faults.c - an LD_PRELOAD shim that makes one kind of call fail, so the
 * harness can see that a program checks it: FAULT=setsockopt (or
 * getsockname, getpeername) in the environment fails every such call
 * with ENOBUFS; FAULT=setsockopt@3 lets the first two through. A program
 * that ignores the result goes on half set up - a timeout that is not
 * there, an address it never learnt - which the checks then catch.
 * FAULT=connect fails connect() on sockets not bound to an address of
 * their own with EADDRNOTAVAIL, as when the ephemeral ports run out.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Should this call of NAME fail? */
static int should_fail(const char *name, unsigned *calls)
{
    const char *f = getenv("FAULT");
    size_t len = strlen(name);
    if (f == NULL || strncmp(f, name, len) != 0 || (f[len] != '\0' && f[len] != '@'))
        return 0;
    unsigned from = f[len] == '@' ? (unsigned)atoi(f + len + 1) : 1;
    if (++*calls < from)
        return 0;
    errno = ENOBUFS;
    return 1;
}

/* Fail this call if FAULT says so; else look up the real one (once). */
#define REAL(fn) \
    static __typeof__(&fn) real; \
    static unsigned calls; \
    if (should_fail(#fn, &calls)) \
        return -1; \
    if (real == NULL) \
        *(void **)&real = dlsym(RTLD_NEXT, #fn)

int setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
    REAL(setsockopt);
    return real(fd, level, opt, val, len);
}

int getsockname(int fd, struct sockaddr *sa, socklen_t *len)
{
    REAL(getsockname);
    return real(fd, sa, len);
}

int getpeername(int fd, struct sockaddr *sa, socklen_t *len)
{
    REAL(getpeername);
    return real(fd, sa, len);
}

/* Out of ports, connect() says EADDRNOTAVAIL - unless the socket was bound
 * to a source address first, and that address still has ports. */
int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    static __typeof__(&connect) real;
    static unsigned calls;
    struct sockaddr_in me;
    socklen_t n = sizeof me;
    int bound = getsockname(fd, (struct sockaddr *)&me, &n) == 0 && me.sin_family == AF_INET &&
                me.sin_addr.s_addr != htonl(INADDR_ANY);
    if (!bound && should_fail("connect", &calls)) {
        errno = EADDRNOTAVAIL;
        return -1;
    }
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "connect");
    return real(fd, sa, len);
}
