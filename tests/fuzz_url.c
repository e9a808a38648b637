/*
 * fuzz_url.c - libFuzzer target: http_get's URL parsing, fed any bytes.
 *
 * A fuzzer runs a function millions of times on inputs it keeps mutating,
 * and keeps the ones that reach code no input reached before; built with
 * AddressSanitizer and UBSan, any out-of-bounds access or undefined
 * behaviour stops it with a report and the input that did it.
 *
 * Here the input is the URL argument of `http_get URL`: parse_url()
 * splits it and, when it is accepted, build_request() writes the request
 * from it, as main() does. On top of the sanitizers we check the promise
 * the URL check makes: whatever the URL, the request is our own six lines
 * ("GET ...", Host, User-Agent, Accept, Connection, the empty one) - no
 * control character of the URL's gets in to write a line of its own, and
 * no host spans one of the URL's delimiters. The functions are
 * http_get.c's own (fuzz.h includes it).
 */
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    keep_stderr();
    return 0;
}

/* A broken promise is a finding: say which, and abort, so that libFuzzer
 * saves the input as a crash. */
static void broken_promise(const char *what, const char *url, const char *request)
{
    fuzz_abort("fuzz_url: %s\n  URL: '%s'\n  request: '%s'\n", what, url,
               request != NULL ? request : "(none)");
}

/* What parse_url() and build_request() promise about an accepted URL. */
static void check_request(const char *url, const struct url *u, const char *request,
                          int len)
{
    const char *target = request + 4, *target_end = strchr(target, ' ');
    size_t controls = 0;

    if (u->host[0] == '\0' || strnlen(u->host, sizeof u->host) == sizeof u->host)
        broken_promise("empty or unterminated host", url, request);
    /* A host is what lies between the URL's delimiters, never across one
     * ("[a#b]" once came out as host "a#b"). */
    if (u->host[strcspn(u->host, "/?#@[]")] != '\0')
        broken_promise("a delimiter of the URL inside the host", url, request);
    if (parse_port(u->port, 1) < 0)
        broken_promise("port not a number in 1..65535", url, request);
    if ((size_t)len != strlen(request))
        broken_promise("the length returned is not the request's", url, request);
    /* "GET /TARGET HTTP/1.1": the target starts with '/', has no space
     * and no #fragment, and the version follows it. */
    if (strncmp(request, "GET /", 5) != 0 || target_end == NULL ||
        strncmp(target_end, " HTTP/1.1\r\n", 11) != 0 ||
        memchr(target, '#', (size_t)(target_end - target)) != NULL)
        broken_promise("the request line is not 'GET /TARGET HTTP/1.1'", url, request);
    /* Six CRLFs, the last two ending the request, and no other control
     * character anywhere. */
    for (const char *p = request; *p != '\0'; p++)
        if ((unsigned char)*p < ' ' || *p == 0x7f)
            controls++;
    if (controls != 12 || strstr(request, "\r\n\r\n") != request + len - 4)
        broken_promise("control characters beyond our own six CRLFs", url, request);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* argv strings end at a NUL: the URL is the bytes up to the first. */
    char *url = strndup((const char *)data, size);
    struct url u;
    char request[MAX_LINE];

    if (url == NULL)
        return 0;
    /* parse_url() refuses https:// with exit(2): right for the program,
     * a "crash" to libFuzzer. That one line is not worth fuzzing. */
    if (strncasecmp(url, "https://", 8) != 0 && parse_url(url, &u) == 0) {
        int len = build_request(&u, request, sizeof request);
        if (len >= 0)
            check_request(url, &u, request, len);
    }
    free(url);
    return 0;
}
