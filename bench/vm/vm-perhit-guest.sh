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
# PERHIT_ARGS_A / PERHIT_ARGS_B, names PERHIT_NAME_A / PERHIT_NAME_B. With
# PERHIT_FLOOR_STAGES (e.g. "empty skb packet ring event") and /files/floor
# (bench/perhit_floor.rs), one floor program set per stage is attached too, as
# tool floor-STAGE, with PERHIT_FLOOR_ARGS (e.g. --backend=kprobe).

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
# The tools: A, B, then one per floor stage (bench/perhit_floor.rs as /files/floor).
names=("$NAME_A" "$NAME_B") bins=(/files/tool-a /files/tool-b) args=("$ARGS_A" "$ARGS_B")
for stage in ${PERHIT_FLOOR_STAGES:-}; do
    names+=("floor-$stage") bins+=(/files/floor) args+=("--stage=$stage ${PERHIT_FLOOR_ARGS:-}")
done
pids=()
for i in "${!names[@]}"; do
    pids[i]=$(tracer_start "${names[i]}" "${bins[i]}" "${args[i]}") || exit 1
done
echo "perhit: kernel $(uname -r); attached together: $(for i in "${!names[@]}"; do printf '%s [%s]; ' "${names[i]}" "${args[i]}"; done)$ROUNDS rounds of $PACKETS packets"
stats() { for n in "${names[@]}"; do bpf_stats "$OUT/$n.ids"; done; }
for ((r = 1; r <= ROUNDS; r++)); do
    mapfile -t s0 < <(stats)
    flood 5002
    mapfile -t s1 < <(stats)
    flood 5001
    sleep 1
    mapfile -t s2 < <(stats)
    for i in "${!names[@]}"; do
        read -r t0 c0 <<<"${s0[i]}"; read -r t1 c1 <<<"${s1[i]}"; read -r t2 c2 <<<"${s2[i]}"
        echo "PERHIT round=$r tool=${names[i]} ns_nomatch=$(per_hit $((t1 - t0)) $((c1 - c0)))" \
             "ns_match=$(per_hit $((t2 - t1)) $((c2 - c1))) hits_nomatch=$((c1 - c0)) hits_match=$((c2 - c1))"
    done
done
for ((i = ${#names[@]} - 1; i >= 0; i--)); do tracer_stop "${pids[i]}" "$OUT/${names[i]}.err"; done
echo "perhit: events written: $NAME_A $(grep -c '^0x' "$OUT/$NAME_A.trace") $NAME_B $(grep -c '^0x' "$OUT/$NAME_B.trace")"
