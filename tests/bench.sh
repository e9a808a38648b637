#!/usr/bin/env bash
# bench.sh - compare the server designs: every bench stage in stages.h,
# under loadgen at 1, 10, 100 and 1,000 connections of 64-byte messages.
#
# usage: tests/bench.sh [SECONDS]       (run from the top of the repo)
#   SECONDS   timed window per run (default 3; `make bench QUICK=1` uses 1)
#   BENCH_PIN=0 in the environment: do not pin server and loadgen to CPUs
#
# Each run gets a fresh server (-p 0, readiness from its "listening on"
# line), so one run's leftovers cannot slow the next. Server on CPU 0,
# loadgen on CPU 1: the two never fight for a core, and runs repeat.
# The server runs under tests/rusage, which writes down its CPU time and
# context switches (all threads) when it exits: what each message cost
# it. Which side was the limit shows in the two CPU columns: a side near
# 100% of its core was. Prints one table; writes it as CSV to
# build/bench.csv.
set -euo pipefail

seconds=${1:-3}
conns_list=(1 10 100 1000)
size=64
out=build
csv=$out/bench.csv
mkdir -p "$out"
work=$(mktemp -d)
server_pid=""

cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

pin_server=() pin_loadgen=()
if [ "${BENCH_PIN:-1}" != 0 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_server=(taskset -c 0) pin_loadgen=(taskset -c 1)
fi

# Start DIR/PROG on a free port; sets server_pid and port.
start_server() {
    local fifo=$work/ready line
    rm -f "$fifo"
    mkfifo "$fifo"
    rm -f "$work/rusage"
    "${pin_server[@]}" tests/rusage "$work/rusage" "$1/$2" -p 0 -q >"$fifo" 2>"$work/server.log" &
    server_pid=$!
    if ! IFS= read -r -t 10 line <"$fifo" || [[ $line != "listening on "*:* ]]; then
        echo "bench: $1/$2 did not start:" >&2
        cat "$work/server.log" >&2
        exit 1
    fi
    port=${line##*:}
}

stop_server() {
    kill -TERM "$server_pid"
    if ! wait "$server_pid"; then
        echo "bench: server did not exit cleanly" >&2
        exit 1
    fi
    server_pid=""
}

# The server's cost per message: CPU µs and context switches, from
# tests/rusage's line, divided by the messages loadgen counted; and its
# CPU use over the window, in % of one core. Prints "cpu% us/msg cs/msg".
server_cost() {
    awk -v msgs="$1" -v secs="$2" '{
        for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        cpu = v["user_s"] + v["sys_s"]; cs = v["vcsw"] + v["ivcsw"]
        if (msgs > 0) printf "%.0f %.1f %.2f\n", 100 * cpu / secs, 1e6 * cpu / msgs, cs / msgs
        else printf "%.0f - -\n", 100 * cpu / secs
    }' "$work/rusage"
}

# Pull KEY=VALUE out of loadgen's RESULT line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

echo "bench: $(uname -sr), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "bench: ${size}-byte messages, ${seconds} s per run${pin_server:+, server on CPU 0, loadgen on CPU 1}"
echo
echo "stage,conns,size,seconds,msgs,msgs_per_s,mib_per_s,p50_us,p99_us,max_us,starved,refused,min_per_conn,max_per_conn,errors,cpu_s,server_cpu_pct,server_us_per_msg,server_cs_per_msg" >"$csv"
printf '%-14s %6s %9s %7s %7s %5s %5s %7s %6s %10s %8s %14s\n' stage conns msgs/s p50_us p99_us srv% gen% us/msg cs/msg starved refused "min..max/conn"
while read -r dir prog; do
    for conns in "${conns_list[@]}"; do
        start_server "$dir" "$prog"
        result=$("${pin_loadgen[@]}" tests/loadgen -a 127.0.0.1 -p "$port" -c "$conns" -s "$size" -d "$seconds" | grep '^RESULT ') || {
            echo "bench: loadgen failed against $dir/$prog with $conns connections" >&2
            exit 1
        }
        stop_server
        secs=$(field seconds "$result")
        read -r srv_pct us_msg cs_msg < <(server_cost "$(field msgs "$result")" "$secs")
        gen_pct=$(awk -v c="$(field cpu_s "$result")" -v s="$secs" 'BEGIN { printf "%.0f", 100 * c / s }')
        row=$dir
        for key in conns size seconds msgs msgs_per_s mib_per_s p50_us p99_us max_us starved refused min_per_conn max_per_conn errors cpu_s; do
            row+=,$(field "$key" "$result")
        done
        echo "$row,$srv_pct,$us_msg,$cs_msg" >>"$csv"
        printf '%-14s %6s %9s %7s %7s %5s %5s %7s %6s %10s %8s %14s\n' "$dir" "$conns" \
            "$(field msgs_per_s "$result")" "$(field p50_us "$result")" "$(field p99_us "$result")" \
            "$srv_pct" "$gen_pct" "$us_msg" "$cs_msg" \
            "$(field starved "$result")/$conns" "$(field refused "$result")" \
            "$(field min_per_conn "$result")..$(field max_per_conn "$result")"
    done
done < <(tests/stages -b)
echo
echo "bench: CSV in $csv. srv%, gen% = the server's and loadgen's CPU over the window, in % of"
echo "bench: one core: a side near 100% was the limit. us/msg, cs/msg = the server's CPU time and"
echo "bench: context switches per message (all its threads, start to exit, from tests/rusage)."
echo "bench: starved = connections that got no reply at all; refused = those the server told"
echo "bench: \"server busy\"."
