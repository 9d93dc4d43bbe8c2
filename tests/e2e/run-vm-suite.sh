#!/usr/bin/env bash
# run-vm-suite.sh - run the e2e scenario suite (tests/e2e/scenarios.sh) with a
# pwru binary inside the test VM, booting each kernel once.
#
# Usage: run-vm-suite.sh [6.1|6.12|all] PWRU_BINARY
#
#   6.1   kprobe backend (no kprobe-multi on this kernel)
#   6.12  kprobe-multi available (auto-detected by the tracer; the
#         kprobe-multi-basic test forces it)
#   all   6.12 then 6.1 (default)
#
# Prints the guest output (PASS/FAIL/SKIP/TIME lines) and a summary per
# kernel; exits 0 only when every kernel's suite passed. Exit status 2 on
# usage errors, 125 when the VM harness failed.
#
# Environment (passed into the guest, see scenarios.sh):
#   E2E_TESTS, E2E_EXTRA_ARGS, E2E_READY_TIMEOUT, E2E_EXIT_TIMEOUT, E2E_VERBOSE
#   E2E_TESTS_6_1, E2E_TESTS_6_12   test selection for one kernel only
#   E2E_LOG_DIR       also save each kernel's full output as LOG_DIR/vm-suite-<kernel>.log
#   E2E_PARALLEL=1    boot the kernels concurrently (needs >= 2 free host CPUs)
#   E2E_FIXTURE       the e2e_fixture example binary (default: examples/e2e_fixture
#                     next to PWRU_BINARY, when built), shipped for trace-tc
#   PWRU_VM_TIMEOUT   limit per VM boot in seconds (default 3600)
#   and the PWRU_VM_* variables of tests/vm/run-in-vm.sh

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly RUN_IN_VM=$HERE/../vm/run-in-vm.sh

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }

kernels=(6.12 6.1)
case ${1:-} in
    -h|--help) usage; exit 0 ;;
    6.1|6.12) kernels=("$1"); shift ;;
    all) shift ;;
esac
if (( $# != 1 )); then usage >&2; exit 2; fi
pwru=$1
[[ -f $pwru && -x $pwru ]] || { echo "error: $pwru is not an executable file" >&2; exit 2; }

export PWRU_VM_TIMEOUT=${PWRU_VM_TIMEOUT:-3600}
export E2E_PWRU=/files/pwru
export PWRU_VM_ENV="E2E_PWRU E2E_TESTS E2E_EXTRA_ARGS E2E_READY_TIMEOUT E2E_EXIT_TIMEOUT E2E_VERBOSE"
# Only forward what the caller set (run-in-vm.sh warns about unset names).
for v in E2E_TESTS E2E_EXTRA_ARGS E2E_READY_TIMEOUT E2E_EXIT_TIMEOUT E2E_VERBOSE; do
    [[ -n ${!v+set} ]] || PWRU_VM_ENV=${PWRU_VM_ENV/ $v/}
done

# tcpdump (when the host has it) for the packet-socket clone scenario.
extra_files=()
if command -v tcpdump >/dev/null 2>&1; then extra_files+=("$(command -v tcpdump)"); fi
# The BPF programs the trace-tc scenario traces (cargo build --example e2e_fixture).
fixture=${E2E_FIXTURE:-$(dirname "$pwru")/examples/e2e_fixture}
if [[ -x $fixture ]]; then extra_files+=("$fixture:/files/e2e_fixture"); fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pwru-vm-suite.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# run_kernel K: run the suite on kernel K, output to $tmp/K.out, status to $tmp/K.rc.
run_kernel() {
    local k=$1 rc=0 per_kernel=E2E_TESTS_${1//./_}
    if [[ -n ${!per_kernel:-} ]]; then
        export E2E_TESTS=${!per_kernel}
        [[ " $PWRU_VM_ENV " == *" E2E_TESTS "* ]] || PWRU_VM_ENV+=" E2E_TESTS"
    fi
    "$RUN_IN_VM" "$k" "$HERE/scenarios.sh" "$pwru:/files/pwru" "${extra_files[@]}" >>"$tmp/$k.out" 2>&1 || rc=$?
    echo "$rc" >"$tmp/$k.rc"
}

t0=$EPOCHREALTIME
for k in "${kernels[@]}"; do : >"$tmp/$k.out"; done
if [[ ${E2E_PARALLEL:-0} == 1 && ${#kernels[@]} -gt 1 ]]; then
    for k in "${kernels[@]}"; do run_kernel "$k" & done
    wait
    for k in "${kernels[@]}"; do cat "$tmp/$k.out"; done
else
    for k in "${kernels[@]}"; do
        # Stream this kernel's output while it runs.
        run_kernel "$k" &
        pid=$!
        tail -n +1 -f --pid="$pid" "$tmp/$k.out" 2>/dev/null || true
        wait "$pid" || true
    done
fi

status=0
echo "===== e2e VM suite summary ($(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')s) ====="
for k in "${kernels[@]}"; do
    rc=$(<"$tmp/$k.rc")
    if [[ -n ${E2E_LOG_DIR:-} ]]; then
        mkdir -p "$E2E_LOG_DIR"
        cp "$tmp/$k.out" "$E2E_LOG_DIR/vm-suite-$k.log"
    fi
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$tmp/$k.out" | tail -n1 || true)
    timing=$(sed -n 's/^===== pwru-vm: END rc=[0-9]* | //p' "$tmp/$k.out" | sed 's/ =====$//' || true)
    printf '%-5s rc=%-3s %s | %s\n' "$k" "$rc" "${summary:-no summary}" "${timing:-no timing}"
    grep -E '^FAIL ' "$tmp/$k.out" | sed "s/^/  $k: /" || true
    if (( rc != 0 )); then
        if (( rc >= 124 )); then status=125; elif (( status == 0 )); then status=1; fi
    fi
done
exit "$status"
