/*
 * shortio.c - an LD_PRELOAD shim that makes every call that moves bytes
 * over a TCP socket do what it is allowed to do and on loopback almost
 * never does: move fewer bytes than asked, or fail with EINTR before
 * moving any. send/recv, read/write, readv/writev and sendmsg/recvmsg are
 * all covered, so no program escapes it by choosing another call. The
 * harness runs the I/O checks once more with every program under this
 * shim, so a missing short-read or short-write loop shows up as a failed
 * check instead of a bug that waits for a busy network.
 *
 * Run your own programs under it too:
 *     LD_PRELOAD=tests/shortio.so ./tcp_client -n 100000
 *
 * Anything that is not a stream socket passes through untouched: a
 * datagram is never split, and files and pipes are left alone.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#define MAX_IOV 128

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

/* How many bytes this call may move: LEN for anything but a stream socket,
 * else 1..97; or -1, meaning "fail this call with EINTR" (about one call
 * in 17). */
static long allowance(int fd, size_t len)
{
    if (len == 0 || !is_stream(fd))
        return (long)len;
    unsigned r = next_random();
    if (r % 17 == 0) {
        errno = EINTR;
        return -1;
    }
    size_t cap = 1 + (r >> 8) % 97;
    return (long)(len < cap ? len : cap);
}

/* Copy the first CAP bytes' worth of IOV into OUT; returns the count. */
static int trim_iov(const struct iovec *iov, int n, size_t cap, struct iovec *out)
{
    int k = 0;
    for (int i = 0; i < n && cap > 0 && k < MAX_IOV; i++, k++) {
        out[k] = iov[i];
        if (out[k].iov_len > cap)
            out[k].iov_len = cap;
        cap -= out[k].iov_len;
    }
    return k;
}

static size_t iov_total(const struct iovec *iov, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    return total;
}

/* Look up the real function once: REAL(fn) declares `real` for it. */
#define REAL(fn) \
    static __typeof__(&fn) real; \
    if (real == NULL) \
        *(void **)&real = dlsym(RTLD_NEXT, #fn)

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    REAL(send);
    long n = allowance(fd, len);
    return n < 0 ? -1 : real(fd, buf, (size_t)n, flags);
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    REAL(recv);
    long n = allowance(fd, len);
    return n < 0 ? -1 : real(fd, buf, (size_t)n, flags);
}

ssize_t write(int fd, const void *buf, size_t len)
{
    REAL(write);
    long n = allowance(fd, len);
    return n < 0 ? -1 : real(fd, buf, (size_t)n);
}

ssize_t read(int fd, void *buf, size_t len)
{
    REAL(read);
    long n = allowance(fd, len);
    return n < 0 ? -1 : real(fd, buf, (size_t)n);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    REAL(writev);
    struct iovec mine[MAX_IOV];
    long n = allowance(fd, iov_total(iov, cnt));
    return n < 0 ? -1 : real(fd, mine, trim_iov(iov, cnt, (size_t)n, mine));
}

ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
    REAL(readv);
    struct iovec mine[MAX_IOV];
    long n = allowance(fd, iov_total(iov, cnt));
    return n < 0 ? -1 : real(fd, mine, trim_iov(iov, cnt, (size_t)n, mine));
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    REAL(sendmsg);
    struct iovec mine[MAX_IOV];
    struct msghdr m = *msg;
    long n = allowance(fd, iov_total(msg->msg_iov, (int)msg->msg_iovlen));
    if (n < 0)
        return -1;
    m.msg_iov = mine;
    m.msg_iovlen = (size_t)trim_iov(msg->msg_iov, (int)msg->msg_iovlen, (size_t)n, mine);
    return real(fd, &m, flags);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    REAL(recvmsg);
    struct iovec mine[MAX_IOV], *theirs = msg->msg_iov;
    size_t their_len = msg->msg_iovlen;
    long n = allowance(fd, iov_total(theirs, (int)their_len));
    if (n < 0)
        return -1;
    msg->msg_iov = mine;
    msg->msg_iovlen = (size_t)trim_iov(theirs, (int)their_len, (size_t)n, mine);
    ssize_t got = real(fd, msg, flags);
    msg->msg_iov = theirs;
    msg->msg_iovlen = their_len;
    return got;
}
