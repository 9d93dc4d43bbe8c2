#!/usr/bin/env bash
# vm-flood.sh - load test of two pwru binaries (ours vs the original) in the
# test VM: one boot per vCPU count, both tools one after the other
# (bench/vm/vm-flood-guest.sh has the scenario, the phases and the line format).
#
# Usage: vm-flood.sh [6.1|6.12] OURS ORIGINAL      (kernel default 6.12)
#
# Per vCPU count and tool it prints:
#   no-loss rate   the paced step with the most packets/s sent and every event
#                  written (none reported lost): packets/s sent, events/s written
#   first loss     the paced step with the fewest packets/s sent that lost
#                  events, and its loss
#   overload       full-speed senders: events expected (packets sent x events
#                  per packet), written, reported lost by the tool, loss %
#   throughput     full-speed packets/s with no tracer (mean of the runs just
#                  before and after the tool), with the tracer and a filter
#                  that does not match, and one that matches (% of none)
#
# Environment: FLOOD_SMP (vCPU counts, "1 2"), FLOOD_OUT (save the raw output
#   there), the FLOOD_* variables of bench/vm/vm-flood-guest.sh,
#   PWRU_VM_TIMEOUT (per boot, default 3600), PWRU_VM_MEM (2048) and the other PWRU_VM_* variables
#   of tests/vm/run-in-vm.sh.

set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }
kernel=6.12
case ${1:-} in
    -h|--help) usage; exit 0 ;;
    6.1|6.12) kernel=$1; shift ;;
esac
if (( $# != 2 )); then usage >&2; exit 2; fi
for b in "$1" "$2"; do
    [[ -f $b && -x $b ]] || { echo "error: $b is not an executable file" >&2; exit 2; }
done

export PWRU_VM_TIMEOUT=${PWRU_VM_TIMEOUT:-3600}
# The traces (hundreds of MB) live in the guest's tmpfs.
export PWRU_VM_MEM=${PWRU_VM_MEM:-2048}
PWRU_VM_ENV=''
for v in FLOOD_NAME_A FLOOD_NAME_B FLOOD_ARGS_A FLOOD_ARGS_B FLOOD_SECS FLOOD_SENDERS FLOOD_RATE0 \
         FLOOD_CAL_RATE FLOOD_TOLERANCE_PCT FLOOD_BISECT FLOOD_MAX_STEPS FLOOD_DRAIN_SECS; do
    if [[ -n ${!v+set} ]]; then PWRU_VM_ENV+=" $v"; fi
done
export PWRU_VM_ENV

# summary: the FLOOD lines on stdin -> one block per tool.
summary() {
    awk -v tol="${FLOOD_TOLERANCE_PCT:-0.5}" '$1 == "FLOOD" {
        delete f
        for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        t = f["tool"]; p = f["phase"]
        # The baselines around a tool: the one before it and the one after it.
        if (p == "none") { if (last != "" && nb[last] < 2) { nb[last]++; base[last] += f["pps"] / 2 } else none = f["pps"]; next }
        if (!(t in seen)) { seen[t] = 1; order[++nt] = t; nb[t] = 1; base[t] = none / 2; last = t }
        if (p == "nomatch") nomatch[t] = f["pps"]
        if (p == "overload") {
            match_pps[t] = f["pps"]
            ov[t] = sprintf("sent %s pkt/s: expected %s events, written %s, reported lost %s, loss %s %%", f["pps"], f["expected"], f["written"], f["reported"], f["loss_pct"])
        }
        if (p == "step") {
            ok = f["loss_pct"] + 0 <= tol + 0 && f["reported"] == 0
            # By the rate actually sent: a stalled VM can send far less than the target.
            if (ok && f["pps"] + 0 > gpps[t] + 0) {
                good[t] = f["target"]; gpps[t] = f["pps"]; geps[t] = f["events_per_s"]
            }
            if (!ok && (bad[t] == "" || f["pps"] + 0 < bpps[t] + 0)) {
                bad[t] = f["target"]; bpps[t] = f["pps"]; bloss[t] = f["loss_pct"]; brep[t] = f["reported"]
            }
        }
    }
    function pct(a, b) { return b > 0 ? sprintf("%.0f %%", 100 * a / b) : "n/a" }
    END {
        for (i = 1; i <= nt; i++) {
            t = order[i]
            printf "%s:\n", t
            if (good[t] != "") printf "  no-loss rate   target %s pkt/s: sent %s pkt/s, written %s events/s\n", good[t], gpps[t], geps[t]
            else printf "  no-loss rate   none of the paced rates\n"
            if (bad[t] != "") printf "  first loss     target %s pkt/s: sent %s pkt/s, loss %s %%, reported lost %s\n", bad[t], bpps[t], bloss[t], brep[t]
            else printf "  first loss     none up to the highest rate tried\n"
            printf "  overload       %s\n", ov[t]
            if (nb[t] < 2) base[t] *= 2
            printf "  throughput     none %.0f pkt/s, not matching %s (%s), matching %s (%s)\n", base[t], nomatch[t], pct(nomatch[t], base[t]), match_pps[t], pct(match_pps[t], base[t])
        }
    }'
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pwru-vm-flood.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
status=0
for smp in ${FLOOD_SMP:-1 2}; do
    rc=0
    PWRU_VM_SMP=$smp "$HERE/../../tests/vm/run-in-vm.sh" "$kernel" "$HERE/vm-flood-guest.sh" "$HERE/vm-guest-lib.sh" \
        "$1:/files/tool-a" "$2:/files/tool-b" | tee "$tmp/$smp.out" || rc=$?
    if (( rc != 0 )); then echo "$smp vCPU(s): VM run failed (exit status $rc)" >&2; status=1; fi
    { printf '\n== kernel %s, %s vCPU(s) ==\n' "$kernel" "$smp"; summary <"$tmp/$smp.out"; } | tee -a "$tmp/summary.txt"
    if [[ -n ${FLOOD_OUT:-} ]]; then mkdir -p "$FLOOD_OUT"; cp "$tmp/$smp.out" "$FLOOD_OUT/vm-flood-$kernel-smp$smp.txt"; fi
done
if [[ -n ${FLOOD_OUT:-} ]]; then cp "$tmp/summary.txt" "$FLOOD_OUT/vm-flood-summary.txt"; fi
exit "$status"
