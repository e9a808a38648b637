#!/usr/bin/env bash
# tsan.sh - the ThreadSanitizer pass. Every stage with threads (stages -t)
# is built with -fsanitize=thread in a scratch copy, and the checks that
# drive its threads hardest run against that build: echo, concurrency,
# many clients, stops and counters. TSan makes a program that races or
# deadlocks stop with exit 66 and a report on stderr, which fails the
# check (the harness shows the stderr). Then the proof that this pass can
# fail: 03's BROKEN=race (counters without atomics) must be caught.
#
# usage: tests/tsan.sh        (from the top of the repo; needs gcc's libtsan)
set -euo pipefail

checks=(echo concur many signal counts)
. tests/scratch.sh
# Reports go to files, report.PID, so they can be shown and counted.
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 log_path=$scratch/report"
tsan_flags="-g -O1 -fsanitize=thread"

# Build chapter $1 in the scratch tree with TSan (and BROKEN=$2 if given).
build() {
    scratch_build "$1" CFLAGS="$tsan_flags" ${2:+BROKEN=$2}
}

# Run check $2 of stage $1 (plain pass only): true if it passed and
# ThreadSanitizer reported nothing. The harness's log is in $scratch/log.
run_check() {
    rm -f "$scratch"/report.*
    CK_FORK=yes tests/harness -r "$scratch" -s "$1" -c "$2" -V -P >"$scratch/log" 2>&1 &&
        ! compgen -G "$scratch/report.*" >/dev/null
}

show_failure() {
    grep -E '^[a-z_]+\.c:[0-9]+:[FE]:' "$scratch/log" | head -n 3 | sed 's/^/    /'
    cat "$scratch"/report.* 2>/dev/null | head -n 25 | sed 's/^/    /'
}

failed=0
while read -r _ ch _; do
    build "$ch"
    for check in "${checks[@]}"; do
        if run_check "$ch" "$check"; then
            echo "tsan: $ch $check: no report"
        else
            echo "tsan: $ch $check FAILED under ThreadSanitizer:" >&2
            show_failure >&2
            failed=$((failed + 1))
        fi
    done
done < <(tests/stages -t)

# The proof: a real race must be reported.
build 03-threads race
if run_check 03-threads counts || ! compgen -G "$scratch/report.*" >/dev/null; then
    echo "tsan: 03-threads BROKEN=race: no ThreadSanitizer report: the pass cannot catch a race" >&2
    failed=$((failed + 1))
else
    echo "tsan: 03-threads BROKEN=race caught:"
    grep -h -m 2 -E 'WARNING: ThreadSanitizer|^SUMMARY' "$scratch"/report.* | sed 's/^/    /'
fi
echo "tsan: $failed failed"
[ "$failed" = 0 ]
