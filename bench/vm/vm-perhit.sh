#!/usr/bin/env bash
# vm-perhit.sh - per-hit BPF cost of two tracers attached together in the VM
# (bench/vm/vm-perhit-guest.sh): same packets, same functions, same moment.
#
# Usage: vm-perhit.sh KERNEL A B
#
# Environment: PERHIT_ARGS_A, PERHIT_ARGS_B (flags, default --output-tuple;
#   add the same --filter-func to both to compare the same function set),
#   PERHIT_NAME_A, PERHIT_NAME_B, PERHIT_ROUNDS (5), PERHIT_PACKETS (2000),
#   PERHIT_OUT (save the output there), PWRU_VM_* of tests/vm/run-in-vm.sh;
#   PERHIT_FLOOR (the perhit_floor example binary: `cargo build --release
#   --example perhit_floor`) with PERHIT_FLOOR_STAGES ("empty skb packet ring
#   event") and PERHIT_FLOOR_ARGS (--backend=kprobe on 6.1) attaches the floor
#   programs of bench/perhit_floor.rs beside A and B, one tool per stage.
# Prints the PERHIT lines and the median per tool and metric.

set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
# shellcheck source=bench/vm/vm-host-lib.sh
. "$HERE/vm-host-lib.sh"
if (( $# != 3 )); then sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2; exit 2; fi
export PWRU_VM_TIMEOUT=${PWRU_VM_TIMEOUT:-3600}
PWRU_VM_ENV=''
for v in PERHIT_ARGS_A PERHIT_ARGS_B PERHIT_NAME_A PERHIT_NAME_B PERHIT_ROUNDS PERHIT_PACKETS PERHIT_FLOOR_STAGES PERHIT_FLOOR_ARGS; do
    if [[ -n ${!v+set} ]]; then PWRU_VM_ENV+=" $v"; fi
done
export PWRU_VM_ENV
files=("$HERE/vm-guest-lib.sh" "$2:/files/tool-a" "$3:/files/tool-b")
if [[ -n ${PERHIT_FLOOR:-} ]]; then files+=("$PERHIT_FLOOR:/files/floor"); fi
out=$("$HERE/../../tests/vm/run-in-vm.sh" "$1" "$HERE/vm-perhit-guest.sh" "${files[@]}" 2>&1 | tee /dev/stderr)
if [[ -n ${PERHIT_OUT:-} ]]; then mkdir -p "$PERHIT_OUT"; printf '%s\n' "$out" >"$PERHIT_OUT/vm-perhit-$1.txt"; fi
echo "== medians per tool (ns per program run) =="
printf '%s\n' "$out" | perhit_medians PERHIT
