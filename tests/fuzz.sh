#!/usr/bin/env bash
# fuzz.sh - the fuzzing pass: http_get's parsers under libFuzzer, with
# AddressSanitizer and UBSan. Two targets, each http_get.c's own functions
# (tests/fuzz_url.c, tests/fuzz_response.c):
#   url       the URL argument: parse_url(), build_request()
#   response  the server's bytes, through a socket: heads and 1xx heads,
#             Content-Length, chunked sizes and trailers, close-delimited
# For each: first every file of tests/corpus/TARGET/ is run once - the
# seeds and the regression cases, inputs that once crashed - and any crash
# fails; then the fuzzer runs SECONDS from a scratch copy of that corpus.
# What it finds is never written into tests/corpus: a crash fails the run
# and names the input, kept in a temporary directory, for you to add.
#
# usage: tests/fuzz.sh [SECONDS]   (from the top of the repo; default 60;
#                                   make fuzz: 60, make test: 10)
set -euo pipefail

seconds=${1:-60}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: tests/fuzz.sh [SECONDS]" >&2
    exit 2
fi
# The longest input each target gets: a request line past MAX_LINE, and
# all heads past MAX_HEADS (64 KiB), with room to spare.
declare -A max_len=([url]=10000 [response]=100000)

tests/deps.sh fuzz
make -s -C tests fuzz_url fuzz_response

scratch=$(mktemp -d)
# Where libFuzzer writes a crashing input; kept if it holds one.
found=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-found.XXXXXX")
trap 'rm -rf "$scratch"; rmdir "$found"/* "$found" 2>/dev/null || true' EXIT
# -close_fd_mask=2: http_get's messages about bad input (thousands a
# second) go nowhere; libFuzzer and the sanitizers keep a stderr of their
# own. -timeout: the input is all there, so one that takes 10 s is a hang.
common=(-close_fd_mask=2 -timeout=10)
# -use_value_profile=1: a comparison that comes closer to flipping counts
# as progress, so "len >= MAX_LINE" pulls lengths towards 8192 - without
# it, an off-by-one there (planted on purpose) went unfound in 60 s.
fuzzing=(-use_value_profile=1)

# The report in a libFuzzer log, indented: from the sanitizer's (or the
# target's) first word to its summary, at most 30 lines; failing that, the
# log's last lines.
show_log() {
    awk '/ERROR: |runtime error: |^fuzz_[a-z]+: / { on = 1 }
         on && n++ < 30 { print }
         on && /^SUMMARY: / { exit }' "$1" >"$1.report"
    [ -s "$1.report" ] || tail -n 20 "$1" >"$1.report"
    sed 's/^/    /' "$1.report" >&2
}

passed=0 failed=0
for target in url response; do
    fuzzer=tests/fuzz_$target
    corpus=tests/corpus/$target
    log=$scratch/$target.log

    # The regression cases: every file once. A crash stops the run; the
    # log's last "Running:" line names the file.
    inputs=("$corpus"/*)
    if ! "$fuzzer" "${common[@]}" -artifact_prefix="$scratch/" "${inputs[@]}" >"$log" 2>&1; then
        input=$(grep -E '^Running: ' "$log" | tail -n 1)
        echo "fuzz: $target FAILED: corpus input ${input#Running: } crashes $fuzzer:" >&2
        show_log "$log"
        failed=$((failed + 1))
        continue
    fi
    echo "fuzz: $target: ${#inputs[@]} corpus inputs replayed: no crash"

    # Fuzzing, from a scratch copy of the corpus, for $seconds.
    mkdir -p "$scratch/$target" "$found/$target"
    cp "$corpus"/* "$scratch/$target/"
    if "$fuzzer" "${common[@]}" -max_total_time="$seconds" -max_len="${max_len[$target]}" \
        -artifact_prefix="$found/$target/" "${fuzzing[@]}" \
        "$scratch/$target" >"$log" 2>&1; then
        # "#123456 DONE cov: 312 ft: 1024 corp: 90/3Kb lim: 4096 exec/s: 20576 rss: 40Mb"
        done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE ' "$log" | tail -n 1 || true)
        runs=${done_line%%[[:space:]]*}
        grown=("$scratch/$target"/*)
        echo "fuzz: $target: $seconds s, ${runs#\#} runs," \
            "$(grep -oE 'exec/s: [0-9]+' <<<"$done_line" || true)," \
            "$(grep -oE 'cov: [0-9]+ ft: [0-9]+' <<<"$done_line" || true)," \
            "corpus ${#inputs[@]} -> ${#grown[@]} inputs: no crash"
        passed=$((passed + 1))
        continue
    fi
    failed=$((failed + 1))
    echo "fuzz: $target FAILED: libFuzzer found an input that breaks http_get:" >&2
    show_log "$log"
    for input in "$found/$target"/*; do
        if ! [ -e "$input" ]; then
            echo "fuzz: $target: libFuzzer saved no input (see its report above)" >&2
            break
        fi
        echo "fuzz: $target: the input is $input" >&2
        echo "    see it: $fuzzer $input" >&2
        echo "    fix http_get.c, then keep it as a regression case:" \
            "cp $input $corpus/regress-WHAT-IT-IS" >&2
    done
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
