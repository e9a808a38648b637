/*
 * fuzz.h - what both libFuzzer targets (fuzz_url.c, fuzz_response.c)
 * share: http_get.c itself, its main() renamed - its functions are
 * static, and this way the fuzzer runs exactly them, not a copy (the
 * directory it comes from is an -I in tests/Makefile, BASICS=, so a
 * mutant copy can be fuzzed too) - and a way to report a finding.
 */
#ifndef FUZZ_H
#define FUZZ_H

#define main http_get_main
#include "http_get.c"
#undef main

#include <stdarg.h>
#include <stdint.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* tests/fuzz.sh runs the targets with -close_fd_mask=2: http_get's own
 * messages ("bad URL", thousands a second) go nowhere, libFuzzer's and
 * the sanitizers' to a copy of stderr it makes. Ours go to a copy we make
 * first (keep_stderr(), from LLVMFuzzerInitialize()), for the same reason. */
static int report_fd = STDERR_FILENO;

static void keep_stderr(void)
{
    int fd = dup(STDERR_FILENO);
    if (fd >= 0)
        report_fd = fd;
}

/* A finding (a broken promise) or our own set-up failing: say what, and
 * abort, so that libFuzzer stops and saves the input as a crash. */
__attribute__((format(printf, 1, 2), noreturn))
static void fuzz_abort(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdprintf(report_fd, fmt, ap);
    va_end(ap);
    abort();
}

#endif
