#!/bin/bash
# vm-perhit-guest.sh - guest side of bench/vm/vm-perhit.sh (runs as root in the VM).
#
# Per-hit BPF cost of two tracers attached AT THE SAME TIME to the same
# functions: every probed function runs both programs back to back on each
# packet, so host scheduling noise (TCG on a shared host) hits both alike,
# which alternating runs cannot promise. Scenario as bench/vm/vm-bench-guest.sh:
# ns1 10.0.0.1 -> ns2 10.0.0.2, UDP to port 5002 (filter does not match)
# then 5001 (matches), $PERHIT_ROUNDS rounds of $PERHIT_PACKETS each.
# Prints per round and tool:
#   PERHIT round=N tool=T ns_nomatch=NS ns_match=NS hits_nomatch=N hits_match=N
# and the median per tool. Binaries /files/tool-a and /files/tool-b, flags
# PERHIT_ARGS_A / PERHIT_ARGS_B, names PERHIT_NAME_A / PERHIT_NAME_B.

set -u
export LC_ALL=C
ROUNDS=${PERHIT_ROUNDS:-5}
PACKETS=${PERHIT_PACKETS:-2000}
NAME_A=${PERHIT_NAME_A:-a}
NAME_B=${PERHIT_NAME_B:-b}
ARGS_A=${PERHIT_ARGS_A:---output-tuple}
ARGS_B=${PERHIT_ARGS_B:---output-tuple}
FILTER='dst host 10.0.0.2 and udp dst port 5001'
OUT=/tmp/perhit
mkdir -p "$OUT"

# shellcheck source=bench/vm/vm-guest-lib.sh
. /files/vm-guest-lib.sh
flood() { send_udp "$1"; }

echo 1 >/proc/sys/kernel/bpf_stats_enabled
setup || { echo "perhit: setup failed"; exit 1; }
flood 5001   # warm-up
pa=$(tracer_start "$NAME_A" /files/tool-a "$ARGS_A") || exit 1
pb=$(tracer_start "$NAME_B" /files/tool-b "$ARGS_B") || exit 1
echo "perhit: kernel $(uname -r); $NAME_A [$ARGS_A] and $NAME_B [$ARGS_B] attached together; $ROUNDS rounds of $PACKETS packets"
for ((r = 1; r <= ROUNDS; r++)); do
    read -r -a a0 <<<"$(bpf_stats "$OUT/$NAME_A.ids")"; read -r -a b0 <<<"$(bpf_stats "$OUT/$NAME_B.ids")"
    flood 5002
    read -r -a a1 <<<"$(bpf_stats "$OUT/$NAME_A.ids")"; read -r -a b1 <<<"$(bpf_stats "$OUT/$NAME_B.ids")"
    flood 5001
    sleep 1
    read -r -a a2 <<<"$(bpf_stats "$OUT/$NAME_A.ids")"; read -r -a b2 <<<"$(bpf_stats "$OUT/$NAME_B.ids")"
    echo "PERHIT round=$r tool=$NAME_A ns_nomatch=$(per_hit $((a1[0] - a0[0])) $((a1[1] - a0[1])))" \
         "ns_match=$(per_hit $((a2[0] - a1[0])) $((a2[1] - a1[1]))) hits_nomatch=$((a1[1] - a0[1])) hits_match=$((a2[1] - a1[1]))"
    echo "PERHIT round=$r tool=$NAME_B ns_nomatch=$(per_hit $((b1[0] - b0[0])) $((b1[1] - b0[1])))" \
         "ns_match=$(per_hit $((b2[0] - b1[0])) $((b2[1] - b1[1]))) hits_nomatch=$((b1[1] - b0[1])) hits_match=$((b2[1] - b1[1]))"
done
tracer_stop "$pb" "$OUT/$NAME_B.err"
tracer_stop "$pa" "$OUT/$NAME_A.err"
echo "perhit: events written: $NAME_A $(grep -c '^0x' "$OUT/$NAME_A.trace") $NAME_B $(grep -c '^0x' "$OUT/$NAME_B.trace")"
