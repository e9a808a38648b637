#!/usr/bin/env bash
# bench.sh - the course's measuring instrument: every bench stage of
# tests/stages.h, and reference servers written with other tools, under the
# same load generator (tests/loadgen), in the same run.
#
# usage: tests/bench.sh [--quick]        (from the top of the repo; `make bench`)
#   --quick        a smoke run of a few cells, one round each (`make bench QUICK=1`)
#   BENCH_PIN=0    in the environment: do not pin server and loadgen to CPUs
#
# What it measures, for each row (a stage or a reference):
#   throughput  msgs/s at 1, 10, 100, 1,000 connections (10,000 where the
#               row claims them, and past that as far as the descriptor
#               limit lets both ends go, for a row that claims it), 64-byte and 4 KiB messages, 1 and 16 in
#               flight per connection; p50/p99 round trips; the server's and
#               loadgen's CPU over the timed window (a side near 100% of its
#               core was the limit); the server's CPU µs and context
#               switches per message; how many connections were refused or
#               did not finish.
#   syscalls    system calls per message: perf where it can count them here,
#               else strace
#   instr       user-space instructions per message, under callgrind
#   memory      the server's RSS per idle connection at 1,000 (and 10,000),
#               and the kernel's slab per connection (both ends: on
#               loopback the load generator's sockets are in it too)
#   target      chapter 06 against the epoll floor (tests/ref_epoll.c, the
#               tightest epoll echo loop: one recv() and one send() per
#               message), issue 8's benchmark figure: at 100 connections x
#               64 B, depth 1 and 16, msgs/s at least 0.95x the floor's and
#               server CPU per message at most 1.1x, each `met` or `MISSED`
#               (a miss is reported; it does not change the exit status)
#
# Method: server on CPU 0, loadgen on CPU 1 (taskset). Each run has a fresh
# server on a free port: ready once it printed "listening on" and echoed
# one message. Connections are set up first, then a warm-up (-W), then the
# timed window, in quota mode: every connection sends its share of
# messages and closes, and the window ends when the last is back, so a
# server that serves a few connections at a time still finishes, and its
# unfairness shows in when the first and the last finished. Every cell runs
# ROUNDS times, the rows interleaved (A B C A B C ...), and shows the
# median, the spread between rounds, and the ratio to the base row (06-epoll
# once it exists, the libuv reference until then) taken round by round:
# absolute numbers drift by 2x between days on a shared machine, paired
# ratios hold within a few per cent.
#
# Output: the tables and the target; build/bench-runs.csv (every run),
# build/bench.csv (the medians), build/bench-costs.csv (system calls,
# instructions and memory per row), build/bench-target.txt (the target
# lines as printed), build/bench-*.png (gnuplot charts).
set -euo pipefail
shopt -s inherit_errexit

quick=""
case ${1:-} in
--quick) quick=1 ;;
"") ;;
*) echo "usage: tests/bench.sh [--quick]" >&2; exit 2 ;;
esac

out=build
mkdir -p "$out"
work=$(mktemp -d)
server_pid=""
loadgen_pid=""

# The server itself too: SIGKILL cannot be passed on by a wrapper.
cleanup() {
    [ -n "$loadgen_pid" ] && kill "$loadgen_pid" 2>/dev/null || true
    [ -n "$server_pid" ] && kill -KILL "$(leaf_pid "$server_pid")" "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
say() { echo "bench: $*" >&2; }

if [ -n "$quick" ]; then
    window=0.2 warmup=0.1 rounds=1
    cells=("100 64 1" "100 64 16" "1000 4096 1")
    idle_counts=(100)
    trace_msgs=(200 600) callgrind_msgs=(100 300)
else
    window=0.8 warmup=0.2 rounds=3
    cells=()
    for size in 64 4096; do
        for depth in 1 16; do
            for conns in 1 10 100 1000; do cells+=("$conns $size $depth"); done
        done
    done
    cells+=("10000 64 1")   # for the rows that claim 10,000
    # Past C10K, for the rows that claim more: as far as the descriptor
    # limit lets both ends go (each holds one per connection, plus a few),
    # in thousands, at most 50,000.
    hard=$(ulimit -Hn)
    [ "$hard" = unlimited ] && hard=1000000
    beyond=$(( (hard - 1000) / 1000 * 1000 ))
    [ "$beyond" -gt 50000 ] && beyond=50000
    [ "$beyond" -gt 10000 ] && cells+=("$beyond 64 1")
    idle_counts=(1000 10000)
    trace_msgs=(1000 4000) callgrind_msgs=(500 2000)
fi

pin_server=() pin_loadgen=()
if [ "${BENCH_PIN:-1}" != 0 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_server=(taskset -c 0) pin_loadgen=(taskset -c 1)
fi

# ---- the rows: every bench stage, then the references --------------------
# name, command (run from the top of the repo; its words separated by US,
# the ASCII unit separator, so that a path may hold spaces), most connections
US=$'\x1f'
names=() cmds=() maxconns=()
while read -r name dir most prog opts; do
    names+=("$name") cmds+=("$dir/$prog${opts:+$US${opts// /$US}}") maxconns+=("$most")
done < <(tests/stages -b)
base=""
for n in "${names[@]}"; do [[ -z $base && $n == 06-* ]] && base=$n; done

# References: not stages (the harness does not check them). The epoll
# floor first: the tightest echo loop we can write (tests/ref_epoll.c), the
# yardstick of the target section; libc only, so always there.
floor=epoll-floor
if ! make -s -C tests ref_epoll >/dev/null; then
    say "cannot build tests/ref_epoll, the epoll floor"
    exit 1
fi
names+=("$floor") cmds+=(tests/ref_epoll) maxconns+=(10000)
# The others are left out when their runtime is missing.
if pkg-config --exists libuv 2>/dev/null && make -s -C tests ref_libuv >/dev/null; then
    names+=(libuv) cmds+=(tests/ref_libuv) maxconns+=(10000)
    [ -z "$base" ] && base=libuv
else
    say "no libuv (libuv1-dev): the libuv reference row is left out"
fi
# The interpreter itself, not a wrapper script that runs it (pyenv's
# shims are), so that callgrind and /proc see Python.
if python=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) && [ -n "$python" ]; then
    for design in asyncio selectors threadpool; do
        names+=("py-$design") cmds+=("$python${US}tests/ref_python.py${US}$design")
        # the seeds' thread pool has 5 workers: 10,000 clients wait in line
        maxconns+=("$([ $design = threadpool ] && echo 1000 || echo 10000)")
    done
else
    say "no python3: the Python reference rows are left out"
fi
[ -z "$base" ] && base=$floor
nrows=${#names[@]}

# ---- starting and stopping servers ---------------------------------------

# The process that really serves: the last of the chain WRAPPER -> ... ->
# server (rusage, perf and strace fork it; taskset, valgrind and python exec).
leaf_pid() {
    local pid=$1 kids
    while kids=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null) && [ -n "$kids" ]; do
        pid=${kids%% *}
    done
    echo "$pid"
}

# A row that failed is reported, and left out from then on; the bench goes
# on with the others, and exits 1 at the end.
declare -A dead
failures=0
fail_row() {   # ROW WHAT [LOG]
    progress_done
    say "${names[$1]}: $2; left out from here on"
    if [ -n "${3:-}" ] && [ -s "$3" ]; then tail -n 5 "$3" | sed 's/^/    /' >&2; fi
    dead[$1]=1
    failures=$((failures + 1))
    kill_server
}
kill_server() {
    if [ -n "$server_pid" ]; then
        kill -KILL "$(leaf_pid "$server_pid")" "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
    exec 9<&-
}

# start_server ROW [WRAPPER...]: ROW's server on a free port, pinned, under
# WRAPPER (default: tests/rusage, which writes its CPU time and context
# switches, all threads, to $work/rusage when it exits). Sets server_pid
# (what we started), leaf (the server itself) and port; returns 1 (the row
# failed) if it does not start or does not echo.
start_server() {
    local row=$1 fifo=$work/ready line
    shift
    local wrap=("$@") cmd
    [ ${#wrap[@]} -eq 0 ] && wrap=(tests/rusage "$work/rusage")
    IFS=$US read -ra cmd <<<"${cmds[$row]}"
    rm -f "$fifo" "$work/rusage"
    mkfifo "$fifo"
    "${pin_server[@]}" "${wrap[@]}" "${cmd[@]}" -p 0 -q >"$fifo" 2>"$work/server.log" &
    server_pid=$!
    # Kept open until the server stops: a line it printed later must not
    # kill it with SIGPIPE.
    exec 9<"$fifo"
    if ! IFS= read -r -t 30 -u 9 line || [[ $line != "listening on "*:* ]]; then
        fail_row "$row" "did not start" "$work/server.log"
        return 1
    fi
    port=${line##*:}
    leaf=$(leaf_pid "$server_pid")
    if [ "$leaf" = "$server_pid" ] && [ "${wrap[0]}" != valgrind ]; then
        say "cannot find the server under ${wrap[0]} (no /proc/PID/task/PID/children?)"
        exit 1
    fi
    # Ready means serving: one real echo (it also pages the echo path in).
    if ! tests/loadgen -p "$port" -n 1 -d 30 >"$work/ready.out" 2>&1; then
        fail_row "$row" "does not echo" "$work/ready.out"
        return 1
    fi
}

# SIGTERM goes to the server itself: the wrappers pass it on, or (perf)
# would end without writing what they counted. The end of its standard
# output says it and its wrapper have exited; one that has not 10 s later
# is killed, and its row fails.
stop_server() {   # ROW
    local status=0 rc line deadline=$((SECONDS + 10))
    kill -TERM "$leaf" 2>/dev/null || true
    while :; do
        rc=0
        IFS= read -r -t 10 -u 9 line || rc=$?
        [ "$rc" -eq 0 ] && [ "$SECONDS" -lt "$deadline" ] || break
    done
    if [ "$rc" -ne 1 ]; then    # 1: end of file; over 128: timed out
        fail_row "$1" "still running 10 s after SIGTERM" "$work/server.log"
        return 1
    fi
    wait "$server_pid" || status=$?
    server_pid=""
    exec 9<&-
    if [ "$status" -ne 0 ]; then
        fail_row "$1" "exit status $status after SIGTERM" "$work/server.log"
        return 1
    fi
}

# Pull KEY=VALUE out of a line of KEY=VALUE words.
field() { sed -n "s/.*\<$1=\([^ ]*\).*/\1/p" <<<"$2"; }

loadgen() {
    "${pin_loadgen[@]}" tests/loadgen -p "$port" "$@"
}

# ---- progress -------------------------------------------------------------
started=$SECONDS
# CPU time the hypervisor gave to other machines: "steal" in /proc/stat.
steal() { awk '$1 == "cpu" { print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
read -r steal0 total0 < <(steal)
step=0 steps=0
# One line per step; on a terminal each overwrites the one before.
if [ -t 2 ]; then eol='\r'; else eol='\n'; fi
progress() {
    step=$((step + 1))
    local used=$((SECONDS - started)) left="?"
    [ "$step" -gt 1 ] && left=$(( used * (steps - step + 1) / (step - 1) ))
    printf "bench: [%3d/%d] %-58s about %s s left $eol" "$step" "$steps" "$*" "$left" >&2
}
progress_done() { [ "$eol" = '\n' ] || printf '\r%*s\r' 110 "" >&2; }

# ---- throughput -----------------------------------------------------------
runs=$out/bench-runs.csv
echo "row,conns,size,depth,round,msgs,msgs_per_s,p50_us,p99_us,srv_pct,gen_pct,us_per_msg,cs_per_msg,starved,refused,unfinished,first_done_ms,last_done_ms" >"$runs"

# How many messages each connection sends in a window: about WINDOW
# seconds' worth at the rate this row reached in this cell before, shared
# among the connections it served (those refused send nothing). The first
# time, a short timed run (-d) against the same server measures the rate.
declare -A rate served
quota() {   # KEY DEPTH
    awk -v r="${rate[$1]}" -v s="${served[$1]}" -v w="$window" -v d="$2" \
        'BEGIN { n = int(r * w / (s > 0 ? s : 1) + 0.5); print (n < d ? d : n < 2 ? 2 : n) }'
}
# (It adds its messages to run_cell's `extra`: the server echoed them too.)
calibrate() {   # KEY CONNS SIZE DEPTH
    local result
    result=$(loadgen -c "$2" -s "$3" -D "$4" -d "$warmup" -T 30 2>/dev/null | grep '^RESULT ') || return 1
    extra=$((extra + $(field msgs "$result")))
    rate[$1]=$(field msgs_per_s "$result")
    served[$1]=$(($2 - $(field refused "$result")))
}

run_cell() {   # ROW CONNS SIZE DEPTH ROUND -> 1 if the row failed
    local row=$1 conns=$2 size=$3 depth=$4 round=$5 key="$1,$2,$3,$4" n result extra=1
    start_server "$row" || return 1
    if [ -z "${rate[$key]:-}" ] && ! calibrate "$key" "$conns" "$size" "$depth"; then
        fail_row "$row" "loadgen failed (a short run at $conns connections, $size B, depth $depth)"
        return 1
    fi
    n=$(quota "$key" "$depth")
    if ! result=$(loadgen -c "$conns" -s "$size" -D "$depth" -n "$n" -W "$warmup" \
                          -d "$(awk -v w="$window" 'BEGIN { print 20 * w + 10 }')" \
                          -T 30 -P "$leaf" 2>"$work/loadgen.err" | grep '^RESULT '); then
        fail_row "$row" "loadgen failed at $conns connections, $size B, depth $depth" "$work/loadgen.err"
        return 1
    fi
    stop_server "$row" || return 1
    local r=$result secs msgs all cs
    secs=$(field seconds "$r") msgs=$(field msgs "$r")
    # Every message the server echoed in its life: the ready check, the
    # short run, the warm-up, the window.
    all=$((msgs + $(field warm_msgs "$r") + extra))
    cs=$(awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                print v["vcsw"] + v["ivcsw"] }' "$work/rusage")
    if [ "$msgs" -gt 0 ]; then
        rate[$key]=$(field msgs_per_s "$r")
        served[$key]=$((conns - $(field refused "$r")))
    fi
    awk -v FS=, -v OFS=, -v msgs="$msgs" -v all="$all" -v secs="$secs" -v cs="$cs" \
        -v scpu="$(field server_cpu_s "$r")" -v gcpu="$(field cpu_s "$r")" '
        function per(x, m, f) { return m > 0 ? sprintf(f, x / m) : "" }
        BEGIN { printf "%.0f,%.0f,%s,%s\n", 100 * scpu / secs, 100 * gcpu / secs,
                       per(1e6 * scpu, msgs, "%.2f"), per(cs, all, "%.3f") }' >"$work/cost"
    echo "${names[$row]},$conns,$size,$depth,$round,$msgs,$(field msgs_per_s "$r"),$(field p50_us "$r"),$(field p99_us "$r"),$(cat "$work/cost"),$(field starved "$r"),$(field refused "$r"),$(field unfinished "$r"),$(field first_done_ms "$r"),$(field last_done_ms "$r")" >>"$runs"
}

for cell in "${cells[@]}"; do
    read -r conns size depth <<<"$cell"
    for ((row = 0; row < nrows; row++)); do
        [ "$conns" -le "${maxconns[$row]}" ] && steps=$((steps + rounds))
    done
done
steps=$((steps + 3 * nrows))   # memory, syscalls, instructions

echo "bench: $(uname -sr), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "bench: $(date -u '+%Y-%m-%d %H:%M UTC'); ${window} s windows after ${warmup} s of warm-up, ${rounds} round(s) per cell${pin_server:+; server on CPU 0, loadgen on CPU 1}"
echo "bench: rows: ${names[*]}${base:+; ratios (xbase) to $base}"
for cell in "${cells[@]}"; do
    read -r conns size depth <<<"$cell"
    for ((round = 1; round <= rounds; round++)); do
        for ((row = 0; row < nrows; row++)); do
            [ "$conns" -le "${maxconns[$row]}" ] && [ -z "${dead[$row]:-}" ] || continue
            progress "${names[$row]}: $conns conns, $size B, depth $depth, round $round/$rounds"
            run_cell "$row" "$conns" "$size" "$depth" "$round" || true
        done
    done
done

# ---- system calls and instructions per message ----------------------------
# Both from the difference between two runs of different message counts
# (10 connections, 64 B, one in flight), so start-up and connection set-up
# cancel out. System calls: perf's raw_syscalls:sys_enter tracepoint counts
# them in the kernel, every thread, at full speed, but needs root (or a
# lax perf_event_paranoid and a readable tracefs); strace -f -c counts the
# same, stopping the server at every call.
counter=""
if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -x, -o /dev/null true 2>/dev/null; then
    counter=perf
elif command -v strace >/dev/null; then
    counter=strace
else
    say "neither perf nor strace can count system calls here: that column is left out"
fi
has_callgrind=""
if command -v valgrind >/dev/null; then has_callgrind=1; else
    say "no valgrind: the instructions-per-message column is left out"
fi

# count ROW MESSAGES TOOL: run ROW's server under TOOL (perf, strace or
# callgrind) while 10 connections echo MESSAGES in all; sets $count, or
# returns 1 (and says why).
count() {
    local f=$work/count line
    rm -f "$f"
    case $3 in
    perf) start_server "$1" perf stat -e raw_syscalls:sys_enter -x, -o "$f" -- || return 1 ;;
    strace) start_server "$1" strace -f -c -U calls -o "$f" || return 1 ;;
    callgrind) start_server "$1" valgrind --tool=callgrind --callgrind-out-file="$f" -q || return 1 ;;
    esac
    if ! loadgen -c 10 -n $(($2 / 10)) -d 120 -T 30 >"$work/count.out" 2>&1; then
        progress_done
        say "${names[$1]}: loadgen failed under $3; no count"
        kill_server
        return 1
    fi
    stop_server "$1" || return 1
    case $3 in
    perf) line=$(awk -F, '/raw_syscalls/ { print $1 }' "$f") ;;
    strace) line=$(awk '$2 == "total" { print $1 }' "$f") ;;
    callgrind) line=$(awk '/^(summary|totals):/ { print $2; exit }' "$f") ;;
    esac
    count=$line
    [ -n "$count" ]
}
# per_message ROW TOOL MSGS1 MSGS2: sets $per, the count per message, from
# two runs; returns 1 if either failed.
per_message() {
    local a b
    per=""
    count "$1" "$3" "$2" && a=$count && count "$1" "$4" "$2" && b=$count || return 1
    per=$(awk -v a="$a" -v b="$b" -v m="$3" -v n="$4" 'BEGIN { printf "%.1f", (b - a) / (n - m) }')
}
declare -A syscalls instrs
for ((row = 0; row < nrows; row++)); do
    [ -z "${dead[$row]:-}" ] || { step=$((step + 2)); continue; }
    progress "${names[$row]}: system calls per message ($counter)"
    if [ -n "$counter" ]; then
        if per_message "$row" "$counter" "${trace_msgs[@]}"; then syscalls[$row]=$per; fi
    fi
    progress "${names[$row]}: instructions per message (callgrind)"
    # Valgrind takes seconds to start: the quick run does the first row only.
    if [ -n "$has_callgrind" ] && { [ -z "$quick" ] || [ "$row" = 0 ]; }; then
        if per_message "$row" callgrind "${callgrind_msgs[@]}"; then instrs[$row]=$per; fi
    fi
done

# ---- memory per idle connection --------------------------------------------
# loadgen -H: every connection does one echo, then stays open, idle, until
# we close loadgen's standard input. Before and after: the server's RSS
# (all its threads share one address space) and the kernel's slab.
meminfo() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }
rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }
per_conn() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.1f", (b - a) / n }'; }
declare -A mem_rss mem_slab
for ((row = 0; row < nrows; row++)); do
    [ -z "${dead[$row]:-}" ] || { step=$((step + 1)); continue; }
    progress "${names[$row]}: memory per idle connection"
    for idle in "${idle_counts[@]}"; do
        [ "$idle" -le "${maxconns[$row]}" ] || continue
        start_server "$row" || break
        rss0=$(rss_kib "$leaf") slab0=$(meminfo Slab)
        mkfifo "$work/hold-in" "$work/hold-out"
        # A server that serves a few at a time leaves the rest waiting: -d
        # gives up on them after a few seconds (then "-": not held).
        "${pin_loadgen[@]}" tests/loadgen -p "$port" -c "$idle" -n 1 -H -d $((2 + idle / 1000)) -T 30 \
            <"$work/hold-in" >"$work/hold-out" 2>"$work/loadgen.err" &
        loadgen_pid=$!
        exec 7>"$work/hold-in" 8<"$work/hold-out"
        result=""
        while IFS= read -r -t 90 line <&8; do
            [[ $line == RESULT* ]] && result=$line
            [[ $line == holding* ]] && break
        done
        rss1=$(rss_kib "$leaf") slab1=$(meminfo Slab)
        exec 7>&- 8<&-
        wait "$loadgen_pid" || true
        loadgen_pid=""
        rm -f "$work/hold-in" "$work/hold-out"
        stop_server "$row" || break
        mem_rss[$row,$idle]="-" mem_slab[$row,$idle]="-"
        if [ "$(field unfinished "$result")" = 0 ] && [ "$(field refused "$result")" = 0 ] &&
           [ "$(field errors "$result")" = 0 ]; then
            mem_rss[$row,$idle]=$(per_conn "$rss0" "$rss1" "$idle")
            mem_slab[$row,$idle]=$(per_conn "$slab0" "$slab1" "$idle")
        fi
    done
done
progress_done

# ---- the report -------------------------------------------------------------
costs=$out/bench-costs.csv
for ((row = 0; row < nrows; row++)); do
    echo "${names[$row]},${syscalls[$row]:-},${instrs[$row]:-},${mem_rss[$row,${idle_counts[0]}]:-},${mem_slab[$row,${idle_counts[0]}]:-},${mem_rss[$row,10000]:-},${mem_slab[$row,10000]:-}"
done >"$costs"

awk -F, -v OFS=, -v base="$base" -v out="$out" -v idle="${idle_counts[0]}" '
# Sort idx[1..n] by val[idx[i]] (a few values: insertion sort).
function order(idx, n, val,    i, j, t) {
    for (i = 1; i <= n; i++) idx[i] = i
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && val[idx[j - 1]] + 0 > val[idx[j]] + 0; j--) {
            t = idx[j]; idx[j] = idx[j - 1]; idx[j - 1] = t
        }
}
function median(val, n,    idx) {
    order(idx, n, val)
    return n % 2 ? val[idx[(n + 1) / 2]] : (val[idx[n / 2]] + val[idx[n / 2 + 1]]) / 2
}
function dash(x) { return x == "" ? "-" : x }
# The run of KEY whose msgs/s is the median (the lower middle one), split into F.
function median_run(key, f,    i, n, idx, val) {
    n = runs[key]
    for (i = 1; i <= n; i++) val[i] = rate[key, i]
    order(idx, n, val)
    split(run[key, idx[int((n + 1) / 2)]], f, ",")
}
FNR == 1 && FILENAME !~ /costs/ { next }
FILENAME ~ /costs/ { cost[$1] = $0; next }
{
    cell = $3 " " $4
    key = $1 SUBSEP $2 SUBSEP cell
    if (!(cell in seen_cell)) { seen_cell[cell] = 1; cells[++ncells] = cell }
    if (!($1 in seen_row)) { seen_row[$1] = 1; rows[++nrows] = $1 }
    if (!($2 in seen_conns)) { seen_conns[$2] = 1; conns[++nconns] = $2 }
    n = ++runs[key]
    run[key, n] = $0
    rate[key, n] = $7
    by_round[key, $5] = $7
}
END {
    order(ci, nconns, conns)        # connection counts, fewest first
    csv = out "/bench.csv"
    print "row,conns,size,depth,rounds,msgs_per_s,spread_pct,ratio_to_base,p50_us,p99_us,srv_pct,gen_pct,us_per_msg,cs_per_msg,starved,refused,unfinished,first_done_ms,last_done_ms" >csv
    fmt = "%-14s %6s %9s %5s %6s %7s %8s %5s %5s %7s %7s %6s %7s %17s\n"
    for (c = 1; c <= ncells; c++) {
        split(cells[c], sd, " ")
        printf "\n%s-byte messages, %s in flight per connection%s\n", sd[1], sd[2],
               (sd[2] > 1 ? "" : " (ping-pong)")
        printf fmt, "row", "conns", "msgs/s", "+-%", "xbase", "p50_us", "p99_us", "srv%",
               "gen%", "us/msg", "cs/msg", "unfin", "refused", "done ms 1st..last"
        for (k = 1; k <= nconns; k++) {
            cn = conns[ci[k]]
            for (r = 1; r <= nrows; r++) {
                key = rows[r] SUBSEP cn SUBSEP cells[c]
                if (!(n = runs[key])) continue
                delete list
                for (i = 1; i <= n; i++) list[i] = rate[key, i]
                order(idx, n, list)
                med = median(list, n)
                spread = med > 0 ? sprintf("%.0f", 100 * (list[idx[n]] - list[idx[1]]) / med / 2) : "-"
                ratio = "-"
                bkey = base SUBSEP cn SUBSEP cells[c]
                if (base != "" && runs[bkey]) {
                    m = 0
                    delete ratios
                    for (i = 1; i <= n; i++)
                        if (by_round[bkey, i] > 0) ratios[++m] = by_round[key, i] / by_round[bkey, i]
                    if (m) ratio = sprintf("%.2f", median(ratios, m))
                }
                median_run(key, f)
                gmed[rows[r], cn, cells[c]] = sprintf("%.0f", med)
                gcpu[rows[r], cn, cells[c]] = f[12]
                printf fmt, rows[r], cn, sprintf("%.0f", med), spread, ratio, f[8], f[9], f[10],
                       f[11], dash(f[12]), dash(f[13]), f[16], f[15], f[17] ".." f[18]
                print rows[r], cn, sd[1], sd[2], n, sprintf("%.0f", med), spread, ratio,
                      f[8], f[9], f[10], f[11], f[12], f[13], f[14], f[15], f[16], f[17], f[18] >csv
            }
        }
    }
    printf "\nWhat a message and an idle connection cost the server\n"
    fmt = "%-14s %7s %7s %9s %9s %10s %10s %10s %10s\n"
    printf fmt, "row", "us/msg", "cs/msg", "syscalls", "instr", "rss/conn", "slab/conn",
           "rss/conn", "slab/conn"
    printf fmt, "", "(100c)", "(100c)", "/msg", "/msg", "KiB @" idle, "KiB @" idle,
           "KiB @10k", "KiB @10k"
    for (r = 1; r <= nrows; r++) {
        split(cost[rows[r]], cst, ",")
        key = rows[r] SUBSEP 100 SUBSEP "64 1"
        delete f
        if (runs[key]) median_run(key, f)
        printf fmt, rows[r], dash(f[12]), dash(f[13]), dash(cst[2]), dash(cst[3]), dash(cst[4]),
               dash(cst[5]), dash(cst[6]), dash(cst[7])
    }
    # gnuplot data: a column per row, a line per connection count
    for (g = 1; g <= 3; g++) {
        file = out "/bench-" (g == 1 ? "depth1" : g == 2 ? "depth16" : "cpu") ".dat"
        cell = g == 2 ? "64 16" : "64 1"
        line = "conns"
        for (r = 1; r <= nrows; r++) line = line " " rows[r]
        print line >file
        for (k = 1; k <= nconns; k++) {
            cn = conns[ci[k]]
            line = cn
            for (r = 1; r <= nrows; r++) {
                v = g == 3 ? gcpu[rows[r], cn, cell] : gmed[rows[r], cn, cell]
                line = line " " (v == "" ? "-" : v)
            }
            print line >file
        }
        close(file)
    }
}' "$runs" "$costs"

cat <<EOF

Reading the tables: msgs/s is the median of the rounds, +-% half the spread between the
fastest and the slowest round, xbase the ratio to ${base:-the base row} taken round by round;
the other columns come from the median round.
p50/p99 come from a closed-loop generator, which waits for each answer before sending
the next: while a server stalls no message is sent, so the stall is timed once, not for
every message that should have gone out meanwhile (coordinated omission): tails are
under-reported. srv%, gen% = the server's and loadgen's CPU in the window, in % of one
core: a side near 100% was the limit. us/msg = the server's CPU per message in the window
(all its threads: its CPU clock); cs/msg = its context switches over its whole life
(tests/rusage) per message it echoed (warm-up and all).
unfin = connections whose quota was not back in time; refused = told "server busy";
done ms = when the first and the last connection had all their messages back.
syscalls/msg counted by ${counter:-nothing} and instr/msg (user space) by callgrind, each the
difference between two runs (10 connections, 64 B, ping-pong). rss/conn, slab/conn: the
server's resident memory and the kernel's slab (both ends of each loopback connection)
per idle connection; - where the server did not hold them all.
CSV: $out/bench.csv (medians), $runs (every run), $costs.
EOF

# ---- the target (issue 8) -----------------------------------------------
# A benchmark figure, not a test: at 100 connections x 64 B, depth 1 and
# 16, every 06-* row against the epoll floor, each a median of ratios
# taken round by round (as xbase): msgs/s at least 0.95x the floor's, and
# server CPU per message at most 1.1x (at depth 16 msgs/s flatters a
# slower server that batches more: its CPU per message is the honest
# figure). A miss is reported, MISSED, and leaves the exit status alone.
target=$out/bench-target.txt
targets=()
for n in "${names[@]}"; do [[ $n == 06-* ]] && targets+=("$n"); done
awk -F, -v floor="$floor" -v targets="${targets[*]}" -v quick="$quick" '
function median(v, n,    i, j, t) {
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
# Median of the per-round ratios of column COL, ROW over the floor, at
# DEPTH; sets got (how many rounds paired), a and b (the medians of each).
function ratio(row, depth, col,    r, n, na, nb, q, x, y) {
    n = na = nb = 0
    delete q; delete x; delete y
    for (r = 1; r <= rounds; r++) {
        if ((row, depth, r, col) in val) x[++na] = val[row, depth, r, col]
        if ((floor, depth, r, col) in val) y[++nb] = val[floor, depth, r, col]
        if (((row, depth, r, col) in val) && ((floor, depth, r, col) in val) &&
            val[floor, depth, r, col] > 0)
            q[++n] = val[row, depth, r, col] / val[floor, depth, r, col]
    }
    got = n
    a = na ? median(x, na) : 0
    b = nb ? median(y, nb) : 0
    return n ? median(q, n) : 0
}
# Judged on the ratio as printed: 0.949 shows as 0.95, and meets 0.95.
function verdict(x, op, limit) {
    x = sprintf("%.2f", x) + 0
    return (op == ">=" ? x >= limit : x <= limit) ? "met" : "MISSED"
}
FILENAME ~ /costs/ { crow[++ncost] = $1; syscalls[$1] = $2; next }
FNR == 1 { next }
# Runs at 100 x 64 B that moved messages: msgs/s (7) and CPU us/msg (12).
$2 == 100 && $3 == 64 && ($4 == 1 || $4 == 16) && $6 > 0 {
    val[$1, $4, $5, 7] = $7
    if ($12 != "") val[$1, $4, $5, 12] = $12
    if ($5 > rounds) rounds = $5
    ran[$4] = 1
}
END {
    printf "\nTarget (issue 8): each 06 row against %s at 100 connections x 64 B: the median\n", floor
    printf "of the ratios taken round by round, then (in brackets) the medians of the row and\n"
    printf "of the floor. A benchmark figure: a miss is reported, not a failure.\n"
    if (quick)
        printf "(--quick: one short round per cell, too noisy to judge by; run make bench.)\n"
    nt = split(targets, t, " ")
    if (nt == 0)
        print "  no 06-* row yet: nothing to hold to the target"
    for (i = 1; i <= nt; i++)
        for (d = 1; d <= 16; d += 15) {
            if (!ran[d]) {
                printf "  %-12s depth %2d: not measured (not a cell of this%s run)\n", t[i], d,
                       quick ? " --quick" : ""
                continue
            }
            m = ratio(t[i], d, 7); ma = a; mb = b; mn = got
            c = ratio(t[i], d, 12); ca = a; cb = b; cn = got
            if (!mn) {
                printf "  %-12s depth %2d: not measured (this row or the floor failed)\n", t[i], d
                continue
            }
            printf "  %-12s depth %2d: msgs/s %.2fx >= 0.95 %-6s (%.0f vs %.0f)", t[i], d, m,
                   verdict(m, ">=", 0.95), ma, mb
            if (cn)
                printf "; CPU/msg %.2fx <= 1.1 %-6s (%.2f vs %.2f us)\n", c, verdict(c, "<=", 1.1), ca, cb
            else
                printf "; CPU/msg not measured\n"
        }
    line = ""
    for (i = 1; i <= ncost; i++)
        if (syscalls[crow[i]] != "" && (crow[i] == floor || crow[i] ~ /^0[56]-/))
            line = line sprintf("%s%s %s", line == "" ? "" : ", ", crow[i], syscalls[crow[i]])
    if (line != "") {
        print "System calls per message (10 connections, 64 B, ping-pong): " line
        print "  Two are the recv() and the send(); the rest is the wait (select(), epoll_wait()),"
        print "  shared by the sockets one call found ready: the more found ready per call (a"
        print "  slower loop finds more), the fewer per message - a count, not a cost. Edge-"
        print "  triggered adds a recv() per wake-up, the one that finds EAGAIN."
    }
}' "$runs" "$costs" | tee "$target"
echo "Target: $target"

if command -v gnuplot >/dev/null; then
    for g in depth1 depth16 cpu; do
        case $g in
        depth1) title="64-byte messages, ping-pong (1 in flight)" ylabel="messages per second" ;;
        depth16) title="64-byte messages, 16 in flight per connection" ylabel="messages per second" ;;
        cpu) title="Server CPU per message, 64-byte ping-pong" ylabel="CPU microseconds per message" ;;
        esac
        gnuplot 2>"$work/gnuplot.err" <<EOF || { cat "$work/gnuplot.err" >&2; exit 1; }
set terminal pngcairo size 900,540 noenhanced
set output "$out/bench-$g.png"
set title "$title"
set xlabel "connections"
set ylabel "$ylabel"
set logscale x
set key outside right
set grid
set datafile missing "-"
plot for [i=2:$((nrows + 1))] "$out/bench-$g.dat" using 1:i with linespoints title columnheader(i)
EOF
    done
    echo "Charts: $out/bench-depth1.png, $out/bench-depth16.png, $out/bench-cpu.png"
else
    say "no gnuplot (gnuplot-nox): no charts"
fi
read -r steal1 total1 < <(steal)
echo "bench: done in $((SECONDS - started)) s; $(awk -v s=$((steal1 - steal0)) -v t=$((total1 - total0)) \
    'BEGIN { printf "%.1f", (t > 0 ? 100 * s / t : 0) }')% of the CPU time was stolen by the hypervisor"
if [ "$failures" -gt 0 ]; then
    say "$failures row(s) failed and were left out (see above)"
    exit 1
fi

