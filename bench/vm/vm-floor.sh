#!/usr/bin/env bash
# vm-floor.sh - the kernel's floor for the kprobe backend, in the 6.1 VM (one boot):
# our tracer, the original and the bare kernel cost of the same perf kprobes.
#
# Usage: vm-floor.sh OURS [ORIGINAL]
#
#   OURS      our pwru binary (target/release/pwru)
#   ORIGINAL  the original pwru (~/.cache/pwru-vm/peer/pwru), optional
#
# Builds examples/kprobe_floor.rs (release) and runs bench/vm/vm-floor-guest.sh in
# the 6.1 VM: ready/attach/exit times of each tracer, the difference between the
# function sets they attach (and why, from BTF), ours restricted to the
# original's set, and FLOOR lines: attach/close times of the same kprobes with a
# trivial program (modes: ATTACH_THREADS:CLOSE_THREADS[:exp], see the example).
#
# Environment: FLOOR_MODES, FLOOR_MODES_ORIG, FLOOR_STEPS, FLOOR_SKIP_PEER (see the guest script),
#   FLOOR_KERNEL (6.1), FLOOR_OUT (save the output there), PWRU_VM_* of
#   tests/vm/run-in-vm.sh.

set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }
case ${1:-} in -h|--help|'') usage; exit 0 ;; esac
ours=$1 orig=${2:-}
(cd "$HERE/../.." && cargo build --release --example kprobe_floor)
floor=$HERE/../../target/release/examples/kprobe_floor
files=("$ours:/files/pwru" "$floor:/files/kprobe_floor" "$HERE/vm-guest-lib.sh")
if [[ -n $orig ]]; then files+=("$orig:/files/peer"); fi
export PWRU_VM_TIMEOUT=${PWRU_VM_TIMEOUT:-3600}
PWRU_VM_ENV=''
for v in FLOOR_MODES FLOOR_MODES_ORIG FLOOR_STEPS FLOOR_SKIP_PEER; do
    if [[ -n ${!v+set} ]]; then PWRU_VM_ENV+=" $v"; fi
done
export PWRU_VM_ENV
out=$("$HERE/../../tests/vm/run-in-vm.sh" "${FLOOR_KERNEL:-6.1}" "$HERE/vm-floor-guest.sh" "${files[@]}" 2>&1 | tee /dev/stderr)
if [[ -n ${FLOOR_OUT:-} ]]; then mkdir -p "$FLOOR_OUT"; printf '%s\n' "$out" >"$FLOOR_OUT/vm-floor.txt"; fi
