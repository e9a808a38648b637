/*
 * fuzz_response.c - libFuzzer target: http_get reading a response, fed
 * any bytes as the server's.
 *
 * The input is everything a server sends: it goes into one end of a real
 * socket (a UNIX-domain stream pair), which is then shut for writing, and
 * http_get reads the other end with its own struct reader and its own
 * read_response(), which main() calls after sending the request: heads
 * (interim 1xx ones too, paid for from one budget), then the body framed by
 * Content-Length, chunked encoding (sizes, extensions, trailers) or the
 * close. The whole input is in the socket before the first recv(), and
 * the end of it is an EOF, so no read ever waits. The functions are
 * http_get.c's own (fuzz.h includes it).
 */
#include "fuzz.h"

#include <sys/socket.h>

/* The send buffer we ask for: the whole input must fit in the socket
 * before http_get reads a byte. The kernel may give less (Linux caps it at
 * twice net.core.wmem_max, 416 KiB by default), still far above
 * tests/fuzz.sh's -max_len of 100,000 bytes. An input that does not fit
 * aborts the run, rather than hang it. */
#define SOCKET_ROOM (1 << 20)

/* Our own set-up failed (not http_get): say so, and stop. */
static void harness_failure(const char *call)
{
    fuzz_abort("fuzz_response: %s: %s\n", call, strerror(errno));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    keep_stderr();
    /* The headers and body http_get prints: once, for every input. */
    if (freopen("/dev/null", "w", stdout) == NULL)
        harness_failure("freopen /dev/null");
    return 0;
}

/* The bytes DATA, SIZE as a server's: in a socket, then its EOF. Returns
 * the end to read from. */
static int serve(const uint8_t *data, size_t size)
{
    int sv[2], room = SOCKET_ROOM;

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        harness_failure("socketpair");
    if (setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &room, sizeof room) < 0)
        harness_failure("setsockopt SO_SNDBUF");
    for (size_t sent = 0; sent < size;) {
        ssize_t n = send(sv[1], data + sent, size - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0)
            harness_failure("send (input larger than the socket holds? lower -max_len)");
        sent += (size_t)n;
    }
    if (shutdown(sv[1], SHUT_WR) < 0 || close(sv[1]) < 0)
        harness_failure("shutdown");
    return sv[0];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Each input starts as the program would: no error left on stdout
     * by the input before (a failed write is sticky until cleared). */
    clearerr(stdout);

    /* Only named in messages: with the input all there, nothing waits. */
    struct timeval timeout = {.tv_sec = 10};
    struct reader r = {.fd = serve(data, size), .timeout = &timeout};

    /* What main() does with a response, by the same function. */
    int rc = read_response(&r);
    if (close(r.fd) < 0)
        harness_failure("close");
    if (rc == 0)
        (void)flush_out();
    return 0;
}
