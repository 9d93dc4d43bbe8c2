# vm-guest-lib.sh - the benchmark scenario, tracer start/stop and BPF statistics
# shared by the guest scripts (bench/vm/vm-*-guest.sh). Sourced from /files in
# the VM; needs bash, $PACKETS for send_udp, $OUT and $FILTER for tracer_start.
# shellcheck shell=bash

# SIGINT/SIGQUIT back to their defaults for background tracers (background jobs
# start with them ignored), as for a Ctrl-C in a terminal.
LAUNCH=''
if env --default-signal=INT,QUIT true 2>/dev/null; then LAUNCH='env --default-signal=INT,QUIT'; fi

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Timing a tracer's start on a 1-vCPU guest: its output goes through `stamp` into its log,
# and the waiting loop reads the log with `stamped_at`, both builtins only. (A loop that
# ran grep, awk and sleep every 0.1 s took about a tenth of the vCPU from the tracer it
# timed: 6.1 attach 23.95 s with it, 21.29 s without, the bare kprobes 20.75-21.80 s.)
# stamp: each line of stdin with the guest's uptime in front.
stamp() {
    local up rest line
    while IFS= read -r line; do
        read -r up rest </proc/uptime
        printf '%s %s\n' "$up" "$line"
    done
}
# stamped_at LOG PATTERN: the stamp of the first line of LOG that matches the glob
# *PATTERN* (nothing if none does yet).
stamped_at() {
    local line
    [[ -r $1 ]] || return 0
    while IFS= read -r line; do
        if [[ $line == *$2* ]]; then echo "${line%% *}"; return; fi
    done <"$1"
}
# wait_stamped LOG PID PATTERN TIMEOUT: polls (every 0.5 s) until LOG has PATTERN; prints
# its stamp, or nothing when PID exited or TIMEOUT seconds went by first.
wait_stamped() {
    local t up rest start
    read -r start rest </proc/uptime
    while :; do
        t=$(stamped_at "$1" "$3")
        if [[ -n $t ]]; then echo "$t"; return; fi
        if ! kill -0 "$2" 2>/dev/null; then return; fi
        read -r up rest </proc/uptime
        if (( ${up%.*} - ${start%.*} > $4 )); then return; fi
        sleep 0.5
    done
}

# guest_aslr: with BENCH_ASLR=0, turns address-space randomization off in the guest
# (kernel.randomize_va_space=0) for every tool the script runs, and says so. Why: the
# emulator (TCG) reuses the code it translated for a program only at the same virtual
# addresses. A position-independent binary, or a shared library, loaded at a new
# random address each run is translated afresh each run; the original's Go executable
# is not position-independent and keeps its translations from one run to the next. A
# real CPU translates nothing. Same 6.12 boot, `pwru --dump-filter` (PIE): 0.121 s a
# run with randomization, 0.020-0.030 s without (BENCHMARKS.md).
guest_aslr() {
    if [[ ${BENCH_ASLR:-} == 0 ]]; then
        echo 0 >/proc/sys/kernel/randomize_va_space
    fi
    echo "guest: kernel.randomize_va_space=$(cat /proc/sys/kernel/randomize_va_space)"
}

# veth between ns1 (10.0.0.1) and ns2 (10.0.0.2); ns2 drops UDP to 5001/5002.
setup() {
    ip netns add ns1 && ip netns add ns2 || return 1
    ip link add veth1 netns ns1 type veth peer name veth2 netns ns2 || return 1
    in_ns ns1 ip addr add 10.0.0.1/24 dev veth1
    in_ns ns2 ip addr add 10.0.0.2/24 dev veth2
    in_ns ns1 ip link set veth1 up
    in_ns ns2 ip link set veth2 up
    in_ns ns1 ip link set lo up
    in_ns ns2 ip link set lo up
    in_ns ns2 nft -f - <<'NFT' || return 1
table inet bench {
    chain input {
        type filter hook input priority filter; policy accept;
        udp dport { 5001, 5002 } counter drop
    }
}
NFT
    in_ns ns1 ping -c 1 -W 5 10.0.0.2 >/dev/null || return 1
}

# send_udp PORT: $PACKETS one-byte UDP datagrams from ns1 to 10.0.0.2:PORT.
send_udp() {
    # shellcheck disable=SC2016  # expanded by the inner bash
    in_ns ns1 bash -c 'exec 3>/dev/udp/10.0.0.2/'"$1"'; for ((i = 0; i < '"$PACKETS"'; i++)); do printf x >&3; done' 2>/dev/null
}

# send_udp_for PORT RATE SECS: one-byte UDP datagrams from ns1 to 10.0.0.2:PORT
# for SECS seconds, RATE per second (paced in 2 ms steps) or as fast as bash
# writes them when RATE is 0; prints "PACKETS MICROSECONDS" (sent, elapsed).
send_udp_for() {
    # shellcheck disable=SC2016  # expanded by the inner bash
    in_ns ns1 bash -c 'exec 3>/dev/udp/10.0.0.2/'"$1"' 4<> <(:)
        r='"$2"' t0=${EPOCHREALTIME/./} n=0 now=0 due=0 i=0
        end=$((t0 + '"$3"' * 1000000))
        while now=${EPOCHREALTIME/./}; ((now < end)); do
            if ((r == 0)); then
                for ((i = 0; i < 50; i++)); do printf x >&3; done
                n=$((n + 50))
                continue
            fi
            due=$(((now - t0) * r / 1000000))
            if ((n >= due)); then read -r -t 0.002 -u 4; continue; fi
            while ((n < due)); do printf x >&3; n=$((n + 1)); done
        done
        echo "$n $((${EPOCHREALTIME/./} - t0))"' 2>/dev/null
}

# Non-empty lines of a file, 0 when missing or empty (grep -c exits 1 on no match).
count_lines() { local n; n=$(grep -c . "$1" 2>/dev/null) || true; echo "${n:-0}"; }

# Size of a file in bytes, 0 when missing.
file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

# drain_trace FILE MAX_SECS: wait until FILE stops growing for 0.5 s (or MAX_SECS).
drain_trace() {
    local prev=-1 cur waited=0
    while :; do
        cur=$(file_size "$1")
        if (( cur == prev || waited >= $2 * 2 )); then break; fi
        prev=$cur; sleep 0.5; waited=$((waited + 1))
    done
}

# tracer_start NAME BINARY ARGS: start a tracer on $FILTER writing $OUT/NAME.trace
# (stderr in $OUT/NAME.err), wait until it listens, save its program ids in
# $OUT/NAME.ids; echo its pid. Run it in a command substitution.
tracer_start() {
    local name=$1 bin=$2 args=$3 pid
    # shellcheck disable=SC2086  # args holds several flags
    $LAUNCH "$bin" $args --output-file="$OUT/$name.trace" "$FILTER" >"$OUT/$name.err" 2>&1 &
    pid=$!
    until grep -q 'Listening for events' "$OUT/$name.err"; do
        if ! kill -0 "$pid" 2>/dev/null; then echo "$name exited:" >&2; tail -n 5 "$OUT/$name.err" >&2; return 1; fi
        sleep 0.2
    done
    prog_ids "$pid" >"$OUT/$name.ids"
    echo "$pid"
}

# tracer_stop PID LOG: SIGINT, wait for the exit and for a background detacher
# named in LOG ("... in the background (pid N)").
tracer_stop() {
    local pid=$1 log=$2 dpid
    kill -INT "$pid"
    # Started from a command substitution: not our child, so no `wait`.
    while [[ -r /proc/$pid/stat ]] && [[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) != Z ]]; do sleep 0.1; done
    dpid=$(sed -n 's/.*in the background (pid \([0-9][0-9]*\)).*/\1/p' "$log" | head -n 1)
    if [[ -n $dpid ]]; then
        while [[ -r /proc/$dpid/stat ]] && [[ $(awk '{ print $3 }' "/proc/$dpid/stat" 2>/dev/null) != Z ]]; do sleep 0.2; done
    fi
}

# BPF program ids held by process $1.
prog_ids() {
    grep -h '^prog_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{ print $2 }' | sort -un
}

# "run_time_ns run_cnt" summed over the programs listed in file $1.
bpf_stats() {
    local id rt=0 rc=0 line
    while read -r id; do
        line=$(bpftool prog show id "$id" 2>/dev/null | head -n 1)
        [[ $line =~ run_time_ns\ ([0-9]+)\ run_cnt\ ([0-9]+) ]] || continue
        rt=$((rt + BASH_REMATCH[1])) rc=$((rc + BASH_REMATCH[2]))
    done <"$1"
    echo "$rt $rc"
}

# per_hit NS COUNT: nanoseconds per run, or n/a.
per_hit() { awk -v t="$1" -v c="$2" 'BEGIN { if (c > 0) printf "%.0f", t / c; else print "n/a" }'; }
