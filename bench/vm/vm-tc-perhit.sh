#!/usr/bin/env bash
# vm-tc-perhit.sh - per-hit BPF cost of our fentry program on a tc program beside our
# kprobe program on kernel functions, in one VM boot (bench/vm/vm-tc-perhit-guest.sh).
#
# Usage: vm-tc-perhit.sh KERNEL PWRU E2E_FIXTURE
#   (E2E_FIXTURE: cargo build --release --example e2e_fixture)
#
# Environment: PERHIT_ROUNDS (5), PERHIT_PACKETS (2000), PERHIT_FUNCS (the kernel
#   functions probed beside the tc program), PWRU_VM_* of tests/vm/run-in-vm.sh.
# Prints the TCPERHIT lines and the median per kind (tool=tc-fentry, tc-fexit,
# kprobe) and metric.

set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
# shellcheck source=bench/vm/vm-host-lib.sh
. "$HERE/vm-host-lib.sh"
if (( $# != 3 )); then sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2; exit 2; fi
export PWRU_VM_TIMEOUT=${PWRU_VM_TIMEOUT:-3600}
PWRU_VM_ENV=''
for v in PERHIT_ROUNDS PERHIT_PACKETS PERHIT_FUNCS; do
    if [[ -n ${!v+set} ]]; then PWRU_VM_ENV+=" $v"; fi
done
export PWRU_VM_ENV
out=$("$HERE/../../tests/vm/run-in-vm.sh" "$1" "$HERE/vm-tc-perhit-guest.sh" "$HERE/vm-guest-lib.sh" \
    "$2:/files/pwru" "$3:/files/e2e_fixture" 2>&1 | tee /dev/stderr)
echo "== medians per kind (ns per program run) =="
printf '%s\n' "$out" | perhit_medians TCPERHIT
