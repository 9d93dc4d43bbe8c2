#!/usr/bin/env bash
# vm-bench.sh - side-by-side benchmark of two pwru binaries (ours vs the
# original) inside the test VM: one boot per kernel, runs alternating
# A B A B ... (BENCH_PAIRS pairs, >= 3 recommended) on the same UDP scenario.
#
# Usage: vm-bench.sh [6.1|6.12|all] OURS ORIGINAL
#
# The original pwru is only a comparison peer, e.g. Debian's package:
#   tests/vm/fetch-kernels.sh peer-pwru   # -> ~/.cache/pwru-vm/peer/pwru
#
# Prints the guest's METRIC lines and, per kernel, a table of the median of
# each metric for both tools and the ratio ours/original (see
# bench/vm/vm-bench-guest.sh for the metrics and the scenario).
#
# Environment: BENCH_PAIRS (3), BENCH_PACKETS (5000), BENCH_IDLE_SECS (5),
#   BENCH_ARGS, BENCH_ARGS_A / BENCH_ARGS_B (per tool), BENCH_NAME_A / BENCH_NAME_B
#   (labels, default ours / original; the table's ratio is A/B), BENCH_ATTACH_RE, BENCH_COUNT_FUNC, BENCH_READY_TIMEOUT,
#   BENCH_DRAIN_SECS, BENCH_ASLR (passed to the guest; BENCH_ASLR=0 turns address-space
#   randomization off in the guest for both tools: see guest_aslr in
#   vm-guest-lib.sh), BENCH_OUT (save raw outputs
#   there), PWRU_VM_TIMEOUT (per boot, default 5400) and the other PWRU_VM_*
#   variables of tests/vm/run-in-vm.sh.

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly RUN_IN_VM=$HERE/../../tests/vm/run-in-vm.sh

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }

kernels=(6.12 6.1)
case ${1:-} in
    -h|--help) usage; exit 0 ;;
    6.1|6.12) kernels=("$1"); shift ;;
    all) shift ;;
esac
if (( $# != 2 )); then usage >&2; exit 2; fi
ours=$1 orig=$2
for b in "$ours" "$orig"; do
    [[ -f $b && -x $b ]] || { echo "error: $b is not an executable file" >&2; exit 2; }
done

export PWRU_VM_TIMEOUT=${PWRU_VM_TIMEOUT:-5400}
export BENCH_NAME_A=${BENCH_NAME_A:-ours} BENCH_NAME_B=${BENCH_NAME_B:-original}
PWRU_VM_ENV="BENCH_NAME_A BENCH_NAME_B"
for v in BENCH_PAIRS BENCH_PACKETS BENCH_IDLE_SECS BENCH_ARGS BENCH_ARGS_A BENCH_ARGS_B BENCH_ATTACH_RE \
         BENCH_COUNT_FUNC BENCH_READY_TIMEOUT BENCH_DRAIN_SECS BENCH_ASLR; do
    if [[ -n ${!v+set} ]]; then PWRU_VM_ENV+=" $v"; fi
done
export PWRU_VM_ENV

readonly METRICS="ready_s attach_s exit_s detached_s hwm_kb idle_cpu_pct ns_hit_nomatch ns_hit_match
    hits_nomatch hits_match pps_none pps_nomatch pps_match tput_nomatch_pct tput_match_pct
    events events_per_s pkts_seen loss_pct"

# table FILE KERNEL: medians per tool and ratio ours/original.
table() {
    local file=$1 kernel=$2
    printf '\n== kernel %s: medians over the runs (ratio = %s / %s) ==\n' "$kernel" "$BENCH_NAME_A" "$BENCH_NAME_B"
    printf '%-16s %14s %14s %10s\n' metric "$BENCH_NAME_A" "$BENCH_NAME_B" ratio
    for m in $METRICS; do
        awk -v m="$m" -v na_="$BENCH_NAME_A" -v nb_="$BENCH_NAME_B" '
            function median(arr, n,   i, j, t) {
                for (i = 2; i <= n; i++) for (j = i; j > 1 && arr[j - 1] > arr[j]; j--) {
                    t = arr[j]; arr[j] = arr[j - 1]; arr[j - 1] = t
                }
                return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
            }
            /^METRIC / {
                tool = ""; v = ""
                for (i = 2; i <= NF; i++) {
                    split($i, kv, "=")
                    if (kv[1] == "tool") tool = kv[2]
                    if (kv[1] == m) v = kv[2]
                }
                if (v ~ /^-?[0-9.]+$/) {
                    if (tool == na_) a[++na] = v + 0
                    else if (tool == nb_) b[++nb] = v + 0
                }
            }
            END {
                ma = na ? median(a, na) : "n/a"; mb = nb ? median(b, nb) : "n/a"
                r = (na && nb && mb != 0) ? sprintf("%.2f", ma / mb) : "n/a"
                printf "%-16s %14s %14s %10s\n", m, ma, mb, r
            }' "$file"
    done
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pwru-vm-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
status=0
for k in "${kernels[@]}"; do
    rc=0
    "$RUN_IN_VM" "$k" "$HERE/vm-bench-guest.sh" "$HERE/vm-guest-lib.sh" "$ours:/files/bench-a" "$orig:/files/bench-b" |
        tee "$tmp/$k.out" || rc=$?
    if [[ -n ${BENCH_OUT:-} ]]; then
        mkdir -p "$BENCH_OUT"
        cp "$tmp/$k.out" "$BENCH_OUT/vm-bench-$k.txt"
    fi
    if (( rc != 0 )); then echo "kernel $k: VM run failed (exit status $rc)" >&2; status=1; fi
    table "$tmp/$k.out" "$k" | tee -a "$tmp/tables.txt"
done
if [[ -n ${BENCH_OUT:-} ]]; then cp "$tmp/tables.txt" "$BENCH_OUT/vm-bench-tables.txt"; fi
exit "$status"
