#!/bin/bash
# vm-bench-guest.sh - guest side of bench/vm/vm-bench.sh (runs as root in the VM).
#
# Runs two tracers alternately, A B A B ... ($BENCH_PAIRS pairs), on the same
# scenario and prints one "METRIC kernel=K tool=T run=N key=value..." line per
# run. Binaries: /files/bench-a (tool "$BENCH_NAME_A") and /files/bench-b.
#
# Scenario: ns1 veth1 10.0.0.1 <-> ns2 veth2 10.0.0.2; ns2 drops UDP to ports
# 5001/5002 in its input hook (so no ICMP errors flow back). The tracer runs
# with the filter 'dst host 10.0.0.2 and udp dst port 5001':
#   idle phase     nothing happens for $BENCH_IDLE_SECS: CPU used by the tracer
#   nomatch phase  $BENCH_PACKETS UDP packets to port 5002: probes fire, the
#                  filter rejects every packet
#   match phase    $BENCH_PACKETS UDP packets to port 5001: every packet matches
# Metrics per run:
#   ready_s        start -> "Listening for events" on stderr
#   attach_s       first line matching $BENCH_ATTACH_RE -> "Listening" (n/a if absent)
#   exit_s         SIGINT -> process exit
#   detached_s     SIGINT -> every kprobe gone: the exit of the background
#                  detacher the tracer names on stderr ("... in the background
#                  (pid N)"), else exit_s
#   hwm_kb         VmHWM before SIGINT
#   idle_cpu_pct   user+sys CPU of the tracer during the idle phase
#   ns_hit_nomatch, ns_hit_match
#                  BPF run time per program run (kernel.bpf_stats_enabled) of
#                  the tracer's programs during each phase
#   hits_nomatch, hits_match  BPF program runs during each phase
#   pps_none, pps_nomatch, pps_match
#                  sender rate (packets/s) without a tracer and in each phase
#   tput_nomatch_pct, tput_match_pct  pps of the phase in % of pps_none
#   events         trace lines written during the match phase (incl. drain)
#   events_per_s   events / (match phase + drain time)
#   pkts_seen      distinct packets seen (lines of function $BENCH_COUNT_FUNC)
#   loss_pct       100 * (1 - pkts_seen / packets sent)
#
# Environment: BENCH_PAIRS (3), BENCH_PACKETS (5000), BENCH_IDLE_SECS (5),
# BENCH_ARGS (extra tracer flags, default --output-tuple), BENCH_ARGS_A/B (the
# same for one tool only, default BENCH_ARGS), BENCH_NAME_A/B,
# BENCH_ATTACH_RE ("Attaching"), BENCH_COUNT_FUNC (ip_send_skb: once per UDP packet),
# BENCH_READY_TIMEOUT (1800), BENCH_DRAIN_SECS (10), BENCH_ASLR (0: randomization off
# in the guest, see guest_aslr in vm-guest-lib.sh).

set -u
export LC_ALL=C

PAIRS=${BENCH_PAIRS:-3}
PACKETS=${BENCH_PACKETS:-5000}
IDLE_SECS=${BENCH_IDLE_SECS:-5}
ARGS=${BENCH_ARGS:---output-tuple}
# Per-tool overrides (e.g. to compare our own flag variants side by side).
ARGS_A=${BENCH_ARGS_A:-$ARGS}
ARGS_B=${BENCH_ARGS_B:-$ARGS}
NAME_A=${BENCH_NAME_A:-ours}
NAME_B=${BENCH_NAME_B:-original}
ATTACH_RE=${BENCH_ATTACH_RE:-Attaching}
COUNT_FUNC=${BENCH_COUNT_FUNC:-ip_send_skb}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-1800}
DRAIN_SECS=${BENCH_DRAIN_SECS:-10}
FILTER='dst host 10.0.0.2 and udp dst port 5001'
KERNEL=${PWRU_VM_KERNEL:-$(uname -r)}
OUT=/tmp/bench
now() { local up rest; read -r up rest </proc/uptime; echo "$up"; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# shellcheck source=bench/vm/vm-guest-lib.sh
. /files/vm-guest-lib.sh
guest_aslr

# flood PORT: send $PACKETS one-byte UDP datagrams from ns1; print packets/s.
flood() {
    local port=$1 t0 t1
    t0=$(now)
    send_udp "$port"
    t1=$(now)
    awk -v n="$PACKETS" -v d="$(sub "$t0" "$t1")" 'BEGIN { if (d > 0) printf "%.0f", n / d; else print "n/a" }'
}

# "name=count" of the 12 most frequent kernel functions in a trace on stdin:
# per line, the first field that looks like a function name (the process
# column is bracketed or a path, the tuple has digits and colons).
func_histogram() {
    awk '{ for (i = 2; i <= NF; i++) { t = $i; sub(/\(.*$/, "", t)
                if (t ~ /^[a-z_][a-z0-9_.]*$/ && t != "0x") { c[t]++; break } } }
         END { for (f in c) print c[f], f }' | sort -rn | head -n 12 | awk '{ printf "%s=%s ", $2, $1 }'
}

# pct A B: 100 * A / B, or n/a.
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b > 0) printf "%.0f", 100 * a / b; else print "n/a" }'; }

# run_tool TOOL_NAME BINARY RUN_NUMBER
run_tool() {
    local name=$1 bin=$2 run=$3 args=$4
    local log=$OUT/$name.$run.err trace=$OUT/$name.$run.trace ids=$OUT/$name.$run.ids
    local pid t0 t_attach='' t_ready='' state=starting ready_s=n/a attach_s=n/a exit_s=n/a
    local detached_s=n/a idle_cpu=n/a hwm=n/a c0 c1 s0 s1 s2 pps_none pps_nomatch=n/a pps_match=n/a
    local ns_nomatch=n/a ns_match=n/a hits_nomatch=n/a hits_match=n/a
    local events=n/a events_per_s=n/a seen=n/a loss=n/a t_m0 t_m1 rc

    pps_none=$(flood 5001)
    t0=$(now)
    # SIGINT/SIGQUIT back to their defaults (background jobs start with them
    # ignored), as for a Ctrl-C in a terminal.
    # shellcheck disable=SC2086  # args holds several flags
    $LAUNCH "$bin" $args --output-file="$trace" "$FILTER" > >(stamp >"$log") 2>&1 &
    pid=$!
    t_ready=$(wait_stamped "$log" "$pid" 'Listening for events' "$READY_TIMEOUT")
    if [[ -n $t_ready ]]; then
        state=ready
        t_attach=$(grep -m1 -E "$ATTACH_RE" "$log" | cut -d' ' -f1)
    elif kill -0 "$pid" 2>/dev/null; then
        state=timeout
    else
        state=exited
    fi
    if [[ $state == ready ]]; then
        ready_s=$(sub "$t0" "$t_ready")
        if [[ -n $t_attach ]]; then attach_s=$(sub "$t_attach" "$t_ready"); fi
        prog_ids "$pid" >"$ids"

        c0=$(cpu_ticks "$pid"); sleep "$IDLE_SECS"; c1=$(cpu_ticks "$pid")
        idle_cpu=$(awk -v d=$((c1 - c0)) -v s="$IDLE_SECS" 'BEGIN { printf "%.0f", d / s }')

        read -r -a s0 <<<"$(bpf_stats "$ids")"
        pps_nomatch=$(flood 5002)
        read -r -a s1 <<<"$(bpf_stats "$ids")"
        local lines0
        lines0=$(count_lines "$trace")
        t_m0=$(now)
        pps_match=$(flood 5001)
        read -r -a s2 <<<"$(bpf_stats "$ids")"
        drain_trace "$trace" "$DRAIN_SECS"
        t_m1=$(now)
        ns_nomatch=$(per_hit $((s1[0] - s0[0])) $((s1[1] - s0[1])))
        hits_nomatch=$((s1[1] - s0[1]))
        ns_match=$(per_hit $((s2[0] - s1[0])) $((s2[1] - s1[1])))
        hits_match=$((s2[1] - s1[1]))
        events=$(( $(count_lines "$trace") - lines0 ))
        events_per_s=$(awk -v e="$events" -v d="$(sub "$t_m0" "$t_m1")" 'BEGIN { if (d > 0) printf "%.0f", e / d; else print "n/a" }')
        seen=$(tail -n +"$((lines0 + 1))" "$trace" | awk -v f="$COUNT_FUNC" '
            { for (i = 1; i <= NF; i++) { t = $i; sub(/\(.*$/, "", t); if (t == f) { n++; next } } }
            END { print n + 0 }')
        if (( seen > 0 )); then
            loss=$(awk -v s="$seen" -v n="$PACKETS" 'BEGIN { printf "%.1f", 100 * (1 - s / n) }')
        else
            seen=n/a
        fi
        # Most frequent functions of the match phase (what one packet passes through).
        echo "FUNCS tool=$name run=$run $(tail -n +"$((lines0 + 1))" "$trace" | func_histogram)"
        hwm=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status")

        local t_int
        t_int=$(now)
        kill -INT "$pid"
        wait "$pid"
        rc=$?
        exit_s=$(sub "$t_int" "$(now)")
        # A background kprobe detacher (ours, kprobe backend): wait for it, so that the
        # next run starts on a quiet kernel, and report when the kprobes were gone.
        local dpid
        dpid=$(sed -n 's/.*in the background (pid \([0-9][0-9]*\)).*/\1/p' "$log" | head -n 1)
        if [[ -n $dpid ]]; then
            while [[ -r /proc/$dpid/stat ]] && [[ $(awk '{ print $3 }' "/proc/$dpid/stat" 2>/dev/null) != Z ]]; do
                sleep 0.1
            done
            detached_s=$(sub "$t_int" "$(now)")
        else
            detached_s=$exit_s
        fi
    else
        kill -KILL "$pid" 2>/dev/null
        wait "$pid"
        rc=$?
        echo "--- $name run $run did not become ready ($state); its output:"
        tr '\r' '\n' <"$log" | tail -n 20
    fi
    echo "METRIC kernel=$KERNEL tool=$name run=$run state=$state ready_s=$ready_s attach_s=$attach_s" \
         "exit_s=$exit_s detached_s=$detached_s rc=$rc hwm_kb=$hwm idle_cpu_pct=$idle_cpu ns_hit_nomatch=$ns_nomatch" \
         "ns_hit_match=$ns_match hits_nomatch=$hits_nomatch hits_match=$hits_match pps_none=$pps_none" \
         "pps_nomatch=$pps_nomatch pps_match=$pps_match events=$events events_per_s=$events_per_s" \
         "pkts_seen=$seen loss_pct=$loss tput_nomatch_pct=$(pct "$pps_nomatch" "$pps_none")" \
         "tput_match_pct=$(pct "$pps_match" "$pps_none")"
}

mkdir -p "$OUT"
echo "bench: kernel $(uname -r), $(nproc) CPU(s); A=$NAME_A B=$NAME_B; $PAIRS pairs; $PACKETS packets per phase"
command -v bpftool >/dev/null || echo "bench: no bpftool in the guest: BPF cost metrics are n/a"
echo 1 >/proc/sys/kernel/bpf_stats_enabled || echo "bench: cannot enable kernel.bpf_stats_enabled"
setup || { echo "bench: scenario setup failed"; exit 1; }
# Warm-up: the first flood of a boot is slow (cold TCG translation cache).
echo "bench: warm-up flood: $(flood 5001) packets/s"
for ((pair = 1; pair <= PAIRS; pair++)); do
    run_tool "$NAME_A" /files/bench-a "$pair" "$ARGS_A"
    run_tool "$NAME_B" /files/bench-b "$pair" "$ARGS_B"
done
echo "bench: done"
