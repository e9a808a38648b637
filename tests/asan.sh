#!/usr/bin/env bash
# asan.sh - the build for the harness's asan pass. Every chapter is copied
# fresh into build/asan/ and built there with AddressSanitizer and UBSan;
# `tests/harness -A ../build/asan` (make test's run, from tests/) then runs
# the checks marked IN_ASAN against those programs, and any report - a bad
# read or write, a leak at exit (after SIGTERM too), undefined behaviour -
# fails the check. Chapter 07's tasks run on stacks of their own: task.c
# tells AddressSanitizer of every switch (it sees __SANITIZE_ADDRESS__).
# Then the proof that the pass can fail: chapter 02's udp_server with its
# buffer one byte short, in a scratch copy, must fail the udp check with
# AddressSanitizer's report.
#
# usage: tests/asan.sh        (from the top of the repo; needs gcc's libasan
#                              and libubsan, which tests/deps.sh installs)
# then, to look closer:  tests/harness -r . -A build/asan -p asan -s 07-async -c echo
set -euo pipefail

out=build/asan
# -fno-sanitize-recover=all: UBSan stops the program at its first report,
# as AddressSanitizer does. -static-lib*san: as two shared libraries,
# gcc's run-times share the one function that says where reports go, and
# UBSan's went to stderr instead of a file; linked in, each has its own.
flags="-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"
flags="$flags -static-libasan -static-libubsan"

# A fresh copy of chapter $1 in directory $2, nothing built.
copy() {
    rm -rf "${2:?}/$1"
    cp -r "$1" "$2/$1"
    make -s -C "$2/$1" clean >/dev/null
}

# Build the copy of chapter $1 in $2 with the sanitizers.
build() {
    make -s -C "$2/$1" CFLAGS="$flags" >/dev/null
}

rm -rf "$out"
mkdir -p "$out"
for dir in [0-9][0-9]-*/; do
    copy "${dir%/}" "$out"
    build "${dir%/}" "$out"
done
echo "asan: every chapter built with AddressSanitizer + UBSan in $out"

# The proof. The mutant is a classic: a buffer allocated one byte short
# of what recvmsg() is told it may fill.
make -s -C tests harness shortio.so faults.so
mutant=$(mktemp -d)
trap 'rm -rf "$mutant"' EXIT
copy 02-tcp-udp "$mutant"
sed -i 's/malloc((size_t)size)/malloc((size_t)size - 1)/' "$mutant/02-tcp-udp/udp_server.c"
if cmp -s 02-tcp-udp/udp_server.c "$mutant/02-tcp-udp/udp_server.c"; then
    echo "asan: no 'malloc((size_t)size)' in 02-tcp-udp/udp_server.c to plant the" \
         "mutant in: update tests/asan.sh" >&2
    exit 1
fi
build 02-tcp-udp "$mutant"
# TMPDIR: the harness keeps the reports it found there, removed with it.
if TMPDIR=$mutant CK_FORK=yes tests/harness -r . -A "$mutant" -p asan -s 02-tcp-udp -c udp \
        >"$mutant/log" 2>&1 ||
    ! grep -q 'ERROR: AddressSanitizer: heap-buffer-overflow' "$mutant/log"; then
    echo "asan: udp_server's buffer one byte short passed the udp check in the asan pass:" \
         "the pass cannot catch it" >&2
    sed 's/^/    /' "$mutant/log" | head -n 30 >&2
    exit 1
fi
echo "asan: 02-tcp-udp udp_server with its buffer one byte short caught:"
grep -E '^[a-z_]+\.c:[0-9]+:[FE]:|ERROR: AddressSanitizer|in echo_datagram|is located' \
    "$mutant/log" | head -n 4 | sed 's/^ *//; s/^/    /'
