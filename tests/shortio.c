/*
 * shortio.c - an LD_PRELOAD shim that makes TCP send() and recv() do what
 * they are allowed to do and on loopback almost never do: move fewer bytes
 * than asked, or fail with EINTR before moving any. The harness runs the
 * echo and client checks once more with every program under this shim, so
 * a missing short-read or short-write loop shows up as a failed check
 * instead of a bug that waits for a busy network.
 *
 * Datagram sockets pass through untouched: a datagram is never split.
 */

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef ssize_t (*send_fn)(int, const void *, size_t, int);
typedef ssize_t (*recv_fn)(int, void *, size_t, int);

/* A cheap generator; determinism per process is fine, variety is not
 * needed beyond "sizes other than the one asked for". */
static unsigned next_random(void)
{
    static unsigned state = 2463534242u;
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
}

static int is_stream(int fd)
{
    int type;
    socklen_t len = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

/* Shrink *LEN to 1..97 bytes for a stream socket; or return -1, meaning
 * "fail this call with EINTR" (about one call in 17). */
static int shorten(int fd, size_t *len)
{
    if (*len == 0 || !is_stream(fd))
        return 0;
    unsigned r = next_random();
    if (r % 17 == 0) {
        errno = EINTR;
        return -1;
    }
    size_t cap = 1 + (r >> 8) % 97;
    if (*len > cap)
        *len = cap;
    return 0;
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    static send_fn real;
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "send");
    return shorten(fd, &len) < 0 ? -1 : real(fd, buf, len, flags);
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    static recv_fn real;
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "recv");
    return shorten(fd, &len) < 0 ? -1 : real(fd, buf, len, flags);
}
