#!/bin/bash
# vm-start-guest.sh - start and detach time of one pwru binary with two flag sets, in one
# boot (run with tests/vm/run-in-vm.sh KERNEL bench/vm/vm-start-guest.sh
# bench/vm/vm-guest-lib.sh BINARY).
#
# For each flag set ($START_ARGS_A, then $START_ARGS_B; names START_NAME_A/B), $START_RUNS
# times (default 3; $START_RUNS_B for B): start the tracer on a filter nothing matches, time start ->
# "Listening for events", send SIGINT, time SIGINT -> exit and SIGINT -> the background
# detacher's exit (everything detached). Prints per run:
#   START tool=T run=N listening=S exit=S detached=S
#   DEBUG tool=T run=N <line>   (with --debug in the flags: each start-up stage's time
#                                and the memory line)
# Runs alternate, A B A B; each starts only after every probe of the one before is gone.
# $START_BIN_B (a path in the guest, e.g. /files/pwru-b given as BINARY_B:/files/pwru-b to
# run-in-vm.sh) runs B with another binary: two builds, or ours and the original, compared
# in one boot. The tracer's lines are stamped as they come (vm-guest-lib.sh): nothing
# polls the log while it starts. BENCH_ASLR=0 (in PWRU_VM_ENV) turns address-space
# randomization off in the guest (guest_aslr in vm-guest-lib.sh).

set -u
export LC_ALL=C
RUNS=${START_RUNS:-3}
RUNS_B=${START_RUNS_B:-$RUNS}
OUT=/tmp/start
mkdir -p "$OUT"
# shellcheck source=bench/vm/vm-guest-lib.sh
. /files/vm-guest-lib.sh
guest_aslr
now() { read -r up _ </proc/uptime; echo "$up"; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
gone() { [[ ! -r /proc/$1/stat ]] || [[ $(awk '{ print $3 }' "/proc/$1/stat") == Z ]]; }
bin_a=$(command -v pwru)
bin_b=${START_BIN_B:-$bin_a}

one() {
    local name=$1 args=$2 run=$3 bin=$4 t0 t1 tk t2 t3 pid dpid err=$OUT/$1.$3.err
    t0=$(now)
    # shellcheck disable=SC2086  # args holds several flags
    $LAUNCH "$bin" $args --output-file="$OUT/$name.trace" 'host 10.99.99.99' > >(stamp >"$err") 2>&1 &
    pid=$!
    t1=$(wait_stamped "$err" "$pid" 'Listening for events' 120)
    if [[ -z $t1 ]]; then echo "start: $name did not listen:"; tail -n 5 "$err"; return 1; fi
    # The signal goes when the wait sees the line (within 0.5 s): exit and detach are
    # timed from the signal.
    tk=$(now)
    kill -INT "$pid"
    wait "$pid"
    t2=$(now)
    sleep 0.2 # the stamp loop writes the tracer's last lines
    dpid=$(sed -n 's/.*in the background (pid \([0-9][0-9]*\)).*/\1/p' "$err" | head -n 1)
    t3=$t2
    if [[ -n $dpid ]]; then
        while ! gone "$dpid"; do sleep 0.1; done
        t3=$(now)
    fi
    echo "START tool=$name run=$run listening=$(sub "$t0" "$t1") exit=$(sub "$tk" "$t2") detached=$(sub "$tk" "$t3")"
    # With --debug: the start-up stages and memory the tracer printed.
    grep -E '^[0-9.]+ (start-up|memory:)' "$err" | cut -d' ' -f2- | sed "s/^/DEBUG tool=$name run=$run /"
}

echo "start: kernel $(uname -r), $(nproc) CPU(s); ${START_NAME_A:-a} [${START_ARGS_A:-}] then ${START_NAME_B:-b} [${START_ARGS_B:-}]"
# A and B alternate (A B A B ...), so that a drift in the boot weighs on both.
for ((r = 1; r <= RUNS || r <= RUNS_B; r++)); do
    if ((r <= RUNS)); then one "${START_NAME_A:-a}" "${START_ARGS_A:-}" "$r" "$bin_a" || exit 1; fi
    if ((r <= RUNS_B)); then one "${START_NAME_B:-b}" "${START_ARGS_B:-}" "$r" "$bin_b" || exit 1; fi
done
