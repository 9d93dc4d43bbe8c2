#!/bin/bash
# vm-floor-guest.sh - guest side of bench/vm/vm-floor.sh (runs as root in the VM).
#
# 1. each tracer (/files/pwru = ours, /files/peer = the original, when present)
#    once with the default function set: start -> "Listening", a copy of
#    /sys/kernel/debug/kprobes/list while attached, SIGINT -> exit (and, for
#    ours, -> exit of its background detacher);
# 2. the difference between the two attached function sets, with the reason
#    found in the kernel BTF for each function only ours attaches (first
#    struct sk_buff pointer parameter: plain, const-qualified, behind a
#    typedef, or past the 5th argument);
# 3. ours again, restricted with --filter-func to the original's set;
# 4. /files/kprobe_floor (examples/kprobe_floor.rs) on our function set and on
#    the original's: the bare kernel cost of the same perf kprobes with a
#    trivial program, for each mode of $FLOOR_MODES (see the example).
# Prints "FLOORRUN tool=... functions=N ready_s=S attach_s=S exit_s=S detached_s=S",
# "SETDIFF ..." and "FLOOR ..." lines.
#
# Environment: FLOOR_MODES ("1:1 4:64:exp 4:64:exp:addr"), FLOOR_MODES_ORIG (on the
# original's function set: "4:64:exp:addr"), FLOOR_SKIP_PEER=1, FLOOR_STEPS
# ("tracers diff restricted floor").

set -u
export LC_ALL=C
MODES=${FLOOR_MODES:-1:1 4:64:exp 4:64:exp:addr}
MODES_ORIG=${FLOOR_MODES_ORIG:-4:64:exp:addr}
STEPS=${FLOOR_STEPS:-tracers diff restricted floor}
OUT=/tmp/floor
FILTER='dst host 10.0.0.2 and udp dst port 5001'
LIST=/sys/kernel/debug/kprobes/list
mkdir -p "$OUT"

now() { local up rest; read -r up rest </proc/uptime; echo "$up"; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
has_step() { [[ " $STEPS " == *" $1 "* ]]; }
# shellcheck source=bench/vm/vm-guest-lib.sh
. /files/vm-guest-lib.sh
# Function names of a kprobes/list copy, sorted ("ADDR k NAME+0x0 [MOD] [FTRACE]").
list_names() { awk '$2 == "k" { sub(/\+.*/, "", $3); print $3 }' "$1" | sort -u; }

# run_tracer NAME BINARY ARGS...: one run with a copy of the kprobe list while attached.
run_tracer() {
    local name=$1 bin=$2 log pid t0 t_att='' t_ready='' t_int ready_s=n/a attach_s=n/a
    local exit_s=n/a detached_s=n/a dpid n
    shift 2
    log=$OUT/$name.err
    t0=$(now)
    # (stamped, not polled with grep: see vm-guest-lib.sh)
    $LAUNCH "$bin" "$@" "$FILTER" > >(stamp >"$log") 2>&1 &
    pid=$!
    t_ready=$(wait_stamped "$log" "$pid" 'Listening for events' 7200)
    t_att=$(stamped_at "$log" Attaching)
    if [[ -n $t_ready ]]; then
        ready_s=$(sub "$t0" "$t_ready")
        [[ -n $t_att ]] && attach_s=$(sub "$t_att" "$t_ready")
        cp "$LIST" "$OUT/$name.list"
        t_int=$(now)
        kill -INT "$pid"
        wait "$pid"
        exit_s=$(sub "$t_int" "$(now)")
        dpid=$(sed -n 's/.*in the background (pid \([0-9][0-9]*\)).*/\1/p' "$log" | head -n 1)
        if [[ -n $dpid ]]; then
            while [[ -r /proc/$dpid/stat ]] && [[ $(awk '{ print $3 }' "/proc/$dpid/stat") != Z ]]; do sleep 0.1; done
        fi
        detached_s=$(sub "$t_int" "$(now)")
        n=$(list_names "$OUT/$name.list" | grep -c .)
    else
        echo "--- $name did not become ready:"; tail -n 20 "$log"
        wait "$pid"
        n=n/a
    fi
    echo "FLOORRUN tool=$name functions=$n ready_s=$ready_s attach_s=$attach_s exit_s=$exit_s" \
         "detached_s=$detached_s left=$(grep -c . "$LIST")"
}

# Why each function of stdin has its skb argument where pwru 1.0.5 does not look:
# "NAME reason" from the raw BTF dump (PTR -> STRUCT sk_buff is what it accepts).
btf_reasons() {
    bpftool btf dump file /sys/kernel/btf/vmlinux format raw >"$OUT/btf.raw" 2>/dev/null || return
    awk -v want="$OUT/want" '
        BEGIN { while ((getline l < want) > 0) w[l] = 1 }
        /^\[[0-9]+\]/ {
            id = substr($1, 2, length($1) - 2); kind[id] = $2; nm = $3; gsub(/'\''/, "", nm)
            name[id] = nm; cur = id
            for (i = 4; i <= NF; i++) if ($i ~ /^(type_id|ret_type_id)=/) { split($i, kv, "="); tgt[id] = kv[2] }
            if ($2 == "FUNC") fn[nm] = tgt[id]
            np[id] = 0; next
        }
        /^\t/ { for (i = 1; i <= NF; i++) if ($i ~ /^type_id=/) { split($i, kv, "="); par[cur, ++np[cur]] = kv[2] } }
        function skbp(t, path,   k) {
            # Follow one pointer; then const/volatile/typedef until a struct.
            if (kind[t] != "PTR") return ""
            t = tgt[t]; path = ""
            while (kind[t] == "CONST" || kind[t] == "VOLATILE" || kind[t] == "TYPEDEF" || kind[t] == "RESTRICT") {
                path = path tolower(kind[t]) "-"; t = tgt[t]
            }
            return (kind[t] == "STRUCT" && name[t] == "sk_buff") ? (path == "" ? "plain-" : path) : ""
        }
        END {
            for (f in w) {
                p = fn[f]; r = "not-in-vmlinux-btf"
                if (p != "") {
                    r = "no-skb-param"
                    for (i = 1; i <= np[p]; i++) { s = skbp(par[p, i]); if (s != "") { r = s "arg" i; break } }
                }
                print f, r
            }
        }' "$OUT/btf.raw"
}

echo "floor: kernel $(uname -r), $(nproc) CPU(s)"
if has_step tracers; then
    if [[ -x /files/peer && ${FLOOR_SKIP_PEER:-0} != 1 ]]; then run_tracer original /files/peer --output-tuple; fi
    run_tracer ours /files/pwru --output-tuple
fi
# in_a_not_b A B: lines of file A that are not in file B (busybox has no comm).
in_a_not_b() { awk 'NR == FNR { b[$0] = 1; next } !($0 in b)' "$2" "$1"; }
if has_step diff && [[ -r $OUT/ours.list && -r $OUT/original.list ]]; then
    list_names "$OUT/ours.list" >"$OUT/ours.names"
    list_names "$OUT/original.list" >"$OUT/original.names"
    in_a_not_b "$OUT/ours.names" "$OUT/original.names" >"$OUT/want"
    in_a_not_b "$OUT/original.names" "$OUT/ours.names" >"$OUT/only-original"
    echo "SETDIFF ours=$(grep -c . "$OUT/ours.names") original=$(grep -c . "$OUT/original.names")" \
         "only_ours=$(grep -c . "$OUT/want") only_original=$(grep -c . "$OUT/only-original")"
    echo "SETDIFF only-original: $(tr '\n' ' ' <"$OUT/only-original")"
    btf_reasons >"$OUT/reasons"
    echo "SETDIFF reasons of only-ours: $(awk '{ c[$2]++ } END { for (r in c) printf "%s=%d ", r, c[r] }' "$OUT/reasons")"
    echo "SETDIFF only-ours: $(sort -k2 "$OUT/reasons" | awk '{ printf "%s(%s) ", $1, $2 }')"
fi
if has_step restricted && [[ -r $OUT/original.names ]]; then
    re=$(paste -sd'|' "$OUT/original.names")
    run_tracer ours-original-set /files/pwru --output-tuple "--filter-func=($re)"
fi
if has_step floor; then
    # shellcheck disable=SC2086  # MODES holds several words
    /files/kprobe_floor $MODES 2>&1 | sed 's/^FLOOR /FLOOR set=ours /'
    if [[ -r $OUT/original.names ]]; then
        # shellcheck disable=SC2086
        /files/kprobe_floor --names "$OUT/original.names" $MODES_ORIG 2>&1 | sed 's/^FLOOR /FLOOR set=original /'
    fi
fi
echo "floor: left attached at the end: $(grep -c . "$LIST") kprobes"
