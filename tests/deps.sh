#!/bin/sh
# deps.sh - make sure what a make target needs is installed. On
# Debian/Ubuntu we install what is missing with apt-get, saying so first;
# elsewhere we say what to install.
#
# usage: tests/deps.sh [test | bench | fuzz]
#   test   (default) Check (the unit test library, found through
#          pkg-config), valgrind, ThreadSanitizer's run-time library
#          (libtsan, for tests/tsan.sh), and AddressSanitizer's and
#          UBSan's (libasan, libubsan, for tests/asan.sh); without them
#          `make test` stops.
#   bench  gnuplot (the charts), libuv (the libuv reference server),
#          python3 (the Python reference servers), strace (system calls per
#          message, where perf cannot count them), valgrind (callgrind:
#          instructions per message) and wrk (an HTTP load generator that
#          is not ours: it cross-checks loadgen on chapter 07's server -H).
#          `make bench` goes on without any of them, leaving out what needs
#          it and saying so.
#   fuzz   clang and its libFuzzer run-time (libclang_rt.fuzzer, which
#          Debian ships in libclang-rt-dev, not with clang itself), for
#          tests/fuzz.sh: `make fuzz`, and `make test`, which runs it too.
set -eu
mode=${1:-test}

# Can ${CC:-cc} build and link a program with -fsanitize=thread?
has_tsan() {
    dir=$(mktemp -d)
    echo 'int main(void) { return 0; }' >"$dir/t.c"
    ok=0
    "${CC:-cc}" -fsanitize=thread -o "$dir/t" "$dir/t.c" >/dev/null 2>&1 || ok=1
    rm -rf "$dir"
    return $ok
}
# Can ${CC:-cc} link a program with AddressSanitizer and UBSan, as
# tests/asan.sh does (their run-times linked in)?
has_asan() {
    dir=$(mktemp -d)
    echo 'int main(void) { return 0; }' >"$dir/t.c"
    ok=0
    "${CC:-cc}" -fsanitize=address,undefined -static-libasan -static-libubsan \
        -o "$dir/t" "$dir/t.c" >/dev/null 2>&1 || ok=1
    rm -rf "$dir"
    return $ok
}
has() { command -v "$1" >/dev/null 2>&1; }

# Can clang build and link a libFuzzer target with ASan and UBSan?
has_fuzzer() {
    dir=$(mktemp -d)
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
        >"$dir/t.c"
    ok=0
    clang -fsanitize=fuzzer,address,undefined -o "$dir/t" "$dir/t.c" >/dev/null 2>&1 || ok=1
    rm -rf "$dir"
    return $ok
}

missing=""
case $mode in
test)
    has pkg-config || missing="$missing pkg-config"
    if ! has pkg-config || ! pkg-config --exists check; then missing="$missing check"; fi
    has valgrind || missing="$missing valgrind"
    has_tsan || missing="$missing libtsan2"
    has_asan || missing="$missing libasan8 libubsan1"
    ;;
bench)
    has gnuplot || missing="$missing gnuplot-nox"
    has pkg-config || missing="$missing pkg-config"
    if ! has pkg-config || ! pkg-config --exists libuv; then missing="$missing libuv1-dev"; fi
    has python3 || missing="$missing python3"
    has strace || missing="$missing strace"
    has valgrind || missing="$missing valgrind"
    has wrk || missing="$missing wrk"
    ;;
fuzz)
    has clang || missing="$missing clang"
    has_fuzzer || missing="$missing libclang-rt-dev"
    ;;
*)
    echo "usage: tests/deps.sh [test | bench | fuzz]" >&2
    exit 2
    ;;
esac
[ -z "$missing" ] && exit 0

# What to do when we cannot install: `make test` and `make fuzz` stop,
# `make bench` goes on.
cannot() {
    if [ "$mode" != bench ]; then
        echo "make $mode needs:$missing; $1" >&2
        exit 1
    fi
    echo "make bench: going on without:$missing ($1)" >&2
    exit 0
}
has apt-get || cannot "install them with your package manager"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    has sudo || cannot "as root: apt-get install$missing"
    sudo="sudo"
fi
echo "make $mode: installing$missing with ${sudo:+sudo }apt-get"
export DEBIAN_FRONTEND=noninteractive
if ! { $sudo apt-get update -q >/dev/null &&
       # shellcheck disable=SC2086 # word splitting of the package list is wanted
       $sudo apt-get install -y -q $missing >/dev/null; }; then
    cannot "apt-get failed"
fi
echo "make $mode: installed$missing"
