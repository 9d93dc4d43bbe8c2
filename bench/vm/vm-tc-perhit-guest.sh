#!/bin/bash
# vm-tc-perhit-guest.sh - guest side of bench/vm/vm-tc-perhit.sh (runs as root in the VM).
#
# Per-hit BPF cost of our fentry program on a tc program beside our kprobe program on
# kernel functions, one tracer, the same packets: the tc fixture (our assembler,
# /files/e2e_fixture) on veth2's ingress passes the UDP packets of the benchmark
# scenario (bench/vm/vm-guest-lib.sh), and `pwru --filter-trace-tc` traces it and
# the functions of $PERHIT_FUNCS. Per round (non-matching UDP to 5002, then matching
# to 5001):
#   TCPERHIT round=N tool=K ns_nomatch=NS ns_match=NS hits_nomatch=N hits_match=N
# with K = tc-fentry (pwru_tc_entry), tc-fexit (pwru_tc_exit) and kprobe (the rest).

set -u
export LC_ALL=C
ROUNDS=${PERHIT_ROUNDS:-5}
PACKETS=${PERHIT_PACKETS:-2000}
FUNCS=${PERHIT_FUNCS:-'^(ip_rcv|ip_rcv_core|ip_local_deliver|udp_rcv|__udp4_lib_rcv)$'}
FILTER='dst host 10.0.0.2 and udp dst port 5001'
OUT=/tmp/tcperhit
BPFFS=/run/bench-bpf
mkdir -p "$OUT" "$BPFFS"

# shellcheck source=bench/vm/vm-guest-lib.sh
. /files/vm-guest-lib.sh

echo 1 >/proc/sys/kernel/bpf_stats_enabled
setup || { echo "tcperhit: setup failed"; exit 1; }
mount -t bpf bpf "$BPFFS" || exit 1
/files/e2e_fixture tc-drop-tcp 5999 "$BPFFS/fixture" >/dev/null || { echo "tcperhit: fixture failed"; exit 1; }
in_ns ns2 tc qdisc add dev veth2 clsact || exit 1
in_ns ns2 tc filter add dev veth2 ingress bpf object-pinned "$BPFFS/fixture" da || exit 1
send_udp 5001   # warm-up

/files/pwru --filter-trace-tc --filter-func "$FUNCS" --output-tuple \
    --output-file="$OUT/trace" "$FILTER" >"$OUT/err" 2>&1 &
pid=$!
until grep -q 'Listening for events' "$OUT/err"; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "tcperhit: pwru exited:"; tail -n 5 "$OUT/err"; exit 1; fi
    sleep 0.2
done
# Our programs by kind: the tc tracing programs by name, the rest are kprobes.
: >"$OUT/tc-fentry.ids"; : >"$OUT/tc-fexit.ids"; : >"$OUT/kprobe.ids"
for id in $(prog_ids "$pid"); do
    name=$(bpftool prog show id "$id" 2>/dev/null | head -n 1 | sed -n 's/.* name \([^ ]*\) .*/\1/p')
    case $name in
        pwru_tc_entry) echo "$id" >>"$OUT/tc-fentry.ids" ;;
        pwru_tc_exit) echo "$id" >>"$OUT/tc-fexit.ids" ;;
        *) echo "$id" >>"$OUT/kprobe.ids" ;;
    esac
done
echo "tcperhit: kernel $(uname -r); $(wc -l <"$OUT/kprobe.ids") kprobe programs on [$FUNCS], tc fentry/fexit on the fixture; $ROUNDS rounds of $PACKETS packets"
kinds="tc-fentry tc-fexit kprobe"
for ((r = 1; r <= ROUNDS; r++)); do
    declare -A s0 s1 s2
    for k in $kinds; do s0[$k]=$(bpf_stats "$OUT/$k.ids"); done
    send_udp 5002
    for k in $kinds; do s1[$k]=$(bpf_stats "$OUT/$k.ids"); done
    send_udp 5001
    sleep 1
    for k in $kinds; do s2[$k]=$(bpf_stats "$OUT/$k.ids"); done
    for k in $kinds; do
        read -r t0 c0 <<<"${s0[$k]}"; read -r t1 c1 <<<"${s1[$k]}"; read -r t2 c2 <<<"${s2[$k]}"
        echo "TCPERHIT round=$r tool=$k ns_nomatch=$(per_hit $((t1 - t0)) $((c1 - c0))) ns_match=$(per_hit $((t2 - t1)) $((c2 - c1))) hits_nomatch=$((c1 - c0)) hits_match=$((c2 - c1))"
    done
done
kill -INT "$pid"
wait "$pid"
echo "tcperhit: events written: $(grep -c '^0x' "$OUT/trace"), in the tc program: $(grep -c '(tc)' "$OUT/trace")"
