#!/usr/bin/env bash
# vm-perhit.sh - per-hit BPF cost of two tracers attached together in the VM
# (bench/vm/vm-perhit-guest.sh): same packets, same functions, same moment.
#
# Usage: vm-perhit.sh KERNEL A B
#
# Environment: PERHIT_ARGS_A, PERHIT_ARGS_B (flags, default --output-tuple;
#   add the same --filter-func to both to compare the same function set),
#   PERHIT_NAME_A, PERHIT_NAME_B, PERHIT_ROUNDS (5), PERHIT_PACKETS (2000),
#   PERHIT_OUT (save the output there), PWRU_VM_* of tests/vm/run-in-vm.sh.
# Prints the PERHIT lines and the median per tool and metric.

set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
# shellcheck source=bench/vm/vm-host-lib.sh
. "$HERE/vm-host-lib.sh"
if (( $# != 3 )); then sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2; exit 2; fi
export PWRU_VM_TIMEOUT=${PWRU_VM_TIMEOUT:-3600}
PWRU_VM_ENV=''
for v in PERHIT_ARGS_A PERHIT_ARGS_B PERHIT_NAME_A PERHIT_NAME_B PERHIT_ROUNDS PERHIT_PACKETS; do
    if [[ -n ${!v+set} ]]; then PWRU_VM_ENV+=" $v"; fi
done
export PWRU_VM_ENV
out=$("$HERE/../../tests/vm/run-in-vm.sh" "$1" "$HERE/vm-perhit-guest.sh" "$HERE/vm-guest-lib.sh" "$2:/files/tool-a" "$3:/files/tool-b" 2>&1 | tee /dev/stderr)
if [[ -n ${PERHIT_OUT:-} ]]; then mkdir -p "$PERHIT_OUT"; printf '%s\n' "$out" >"$PERHIT_OUT/vm-perhit-$1.txt"; fi
echo "== medians per tool (ns per program run) =="
printf '%s\n' "$out" | perhit_medians PERHIT
