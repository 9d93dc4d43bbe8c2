#!/bin/sh
# scenarios.sh - end-to-end scenarios for a pwru binary, run as root inside the
# test VM (POSIX sh). All traffic stays inside the VM, between two network
# namespaces joined by a veth pair (or on lo):
#
#   ns1: veth1 10.0.0.1/24 fd00::1/64  <---- veth ---->  ns2: veth2 10.0.0.2/24 fd00::2/64
#
# Executed, it runs the whole suite (or $E2E_TESTS) and exits non-zero when a
# test failed. Sourced, it only defines the e2e_* functions (e2e_main runs them).
#
# For each test: set up a firewall rule or listener, start
#   $E2E_PWRU --output-tuple --output-file=LOG --ready-file=READY FLAGS... FILTER
# wait for READY, generate traffic, send SIGINT, time the exit, grep -E the
# expected pattern in LOG and check that nothing stays attached (kprobes,
# ftrace entries, kprobe_events, BPF programs/links, pinned objects).
#
# Output: one "PASS name" / "FAIL name: why" / "SKIP name: why" line per test,
# one "TIME name ready=S exit=S detached=S rc=N events=N" line per tracer run
# (detached: SIGINT -> exit of the background kprobe detacher, n/a without
# one; the leak checks run after it has exited), and a final
# "N passed, M failed, K skipped" line.
#
# Environment:
#   E2E_PWRU           binary under test (default: pwru from PATH)
#   E2E_TESTS          space separated test names to run (default: all)
#   E2E_OUT            directory for logs (/tmp/e2e)
#   E2E_READY_TIMEOUT  seconds to wait for the ready file (900)
#   E2E_EXIT_TIMEOUT   seconds to wait for the exit after SIGINT (600)
#   E2E_EXTRA_ARGS     extra flags for every tracer run (e.g. --filter-func '...')
#   E2E_SCENARIO_ONLY=1  no tracer: check that the scenario's rules count drops
#   E2E_VERBOSE=1      print every log, not only those of failed tests
#   E2E_NS1, E2E_NS2   names of the two namespaces (ns1, ns2)
#   E2E_FIXTURE        the e2e_fixture example (BPF programs to trace), for
#                      trace-tc and trace-xdp (/files/e2e_fixture, shipped by run-vm-suite.sh)
#   E2E_GLOBAL_LEAK_CHECK=0  only check the BPF objects the tracer owned (for
#                      hosts where other processes load BPF programs); the
#                      default also compares system-wide counts before/after

E2E_PWRU=${E2E_PWRU:-pwru}
E2E_OUT=${E2E_OUT:-/tmp/e2e}
E2E_TESTS=${E2E_TESTS:-all}
E2E_READY_TIMEOUT=${E2E_READY_TIMEOUT:-900}
E2E_EXIT_TIMEOUT=${E2E_EXIT_TIMEOUT:-600}
E2E_EXTRA_ARGS=${E2E_EXTRA_ARGS:-}
E2E_VERBOSE=${E2E_VERBOSE:-0}
E2E_NS1=${E2E_NS1:-ns1}
E2E_NS2=${E2E_NS2:-ns2}
E2E_GLOBAL_LEAK_CHECK=${E2E_GLOBAL_LEAK_CHECK:-1}
E2E_FIXTURE=${E2E_FIXTURE:-/files/e2e_fixture}

E2E_ALL_TESTS="basic-ipv4 basic-ipv6 advanced-ipv4 advanced-ipv6 pcap-filter-stack \
filter-track-skb filter-track-skb-clones filter-track-skb-by-stackid filter-non-skb-funcs \
filter-arp filter-ifname \
filter-nomatch kprobe-multi-basic tunnel-vxlan tunnel-geneve summary journey journey-clones pcap-output trace-tc trace-tc-later \
own-btf bpf-helpers bpfmap trace-xdp xdp-expr xdp-expr-nomatch xdp-track-skb \
fentry-basic fentry-track"

# Tests for a host kernel without kprobes (tracepoint backend), run by
# tests/e2e/host-suite.sh: the drop must carry its reason.
E2E_HOST_TESTS="host-basic-ipv4 host-basic-ipv6 host-nomatch host-skb-expr host-skb-expr-nomatch host-output-skb \
host-track-by-stackid host-legacy-flags host-summary host-summary-json host-journey host-tunnel-vxlan host-pcap"

# Functions through which a dropped skb leaves the stack (6.12 inlines
# kfree_skb_reason into sk_skb_reason_drop).
E2E_DROP_RE='(^|[^a-z_])(kfree_skb_reason|kfree_skb|sk_skb_reason_drop)([^a-z_]|$)'

# Asynchronous commands of a non-interactive shell start with SIGINT and
# SIGQUIT ignored; coreutils env resets them so that the tracer sees SIGINT
# exactly as after a Ctrl-C in a terminal (run-in-vm.sh copies the host's env).
E2E_LAUNCH=''
if env --default-signal=INT,QUIT true 2>/dev/null; then E2E_LAUNCH='env --default-signal=INT,QUIT'; fi

E2E_PASSED=0 E2E_FAILED=0 E2E_SKIPPED=0
E2E_LOG='' E2E_WHY='' E2E_EVENTS=0 E2E_TRAFFIC_RAN=0

e2e_now() { read -r _e2e_up _e2e_rest </proc/uptime; echo "$_e2e_up"; }
e2e_sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
e2e_gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }
e2e_in() { _e2e_ns=$1; shift; ip netns exec "$_e2e_ns" "$@"; }

e2e_pass() { E2E_PASSED=$((E2E_PASSED + 1)); echo "PASS $1"; }
e2e_fail() { E2E_FAILED=$((E2E_FAILED + 1)); echo "FAIL $1: $2"; }
e2e_skip() { E2E_SKIPPED=$((E2E_SKIPPED + 1)); echo "SKIP $1: $2"; }

# --- topology -------------------------------------------------------------------
e2e_net_up() {
    ip netns add "$E2E_NS1" && ip netns add "$E2E_NS2" || return 1
    ip link add veth1 netns "$E2E_NS1" type veth peer name veth2 netns "$E2E_NS2" || return 1
    e2e_in "$E2E_NS1" ip addr add 10.0.0.1/24 dev veth1
    e2e_in "$E2E_NS2" ip addr add 10.0.0.2/24 dev veth2
    e2e_in "$E2E_NS1" ip addr add fd00::1/64 dev veth1 nodad
    e2e_in "$E2E_NS2" ip addr add fd00::2/64 dev veth2 nodad
    for _e2e_ns in "$E2E_NS1" "$E2E_NS2"; do e2e_in "$_e2e_ns" ip link set lo up; done
    e2e_in "$E2E_NS1" ip link set veth1 up
    e2e_in "$E2E_NS2" ip link set veth2 up
    # Control: both address families reach ns2 before any rule exists.
    e2e_in "$E2E_NS1" ping -c 1 -W 5 10.0.0.2 >/dev/null || { echo "setup: ping 10.0.0.2 failed"; return 1; }
    e2e_in "$E2E_NS1" ping -6 -c 1 -W 5 fd00::2 >/dev/null || { echo "setup: ping fd00::2 failed"; return 1; }
    _e2e_out=$(e2e_in "$E2E_NS1" timeout 10 nc -w 3 10.0.0.2 8080 </dev/null 2>&1)
    case $_e2e_out in
        *refused*) ;;
        *) echo "setup: TCP to 10.0.0.2:8080 was not refused: $_e2e_out"; return 1 ;;
    esac
    echo "setup: $E2E_NS1 (10.0.0.1, fd00::1) <-> $E2E_NS2 (10.0.0.2, fd00::2) over veth1/veth2"
}

e2e_net_down() {
    ip netns del "$E2E_NS1" 2>/dev/null
    ip netns del "$E2E_NS2" 2>/dev/null
    return 0
}

# e2e_fw_drop MATCH: nftables rule in ns1's output hook dropping MATCH.
e2e_fw_drop() {
    e2e_in "$E2E_NS1" nft -f - <<EOF
table inet e2e {
    chain output {
        type filter hook output priority filter; policy accept;
        $1 counter drop
    }
}
EOF
}

# Packets counted by the rules of table inet e2e in ns1 (summed).
e2e_fw_count() {
    e2e_in "$E2E_NS1" nft list table inet e2e 2>/dev/null |
        awk '{ for (i = 1; i < NF; i++) if ($i == "packets") n += $(i + 1) } END { print n + 0 }'
}

e2e_fw_clear() {
    e2e_in "$E2E_NS1" nft delete table inet e2e 2>/dev/null
    e2e_in "$E2E_NS1" nft delete table ip e2enat 2>/dev/null
    return 0
}

# --- traffic --------------------------------------------------------------------
# e2e_connect ADDR PORT: one TCP connection attempt from ns1 (1 s).
e2e_connect() { e2e_in "$E2E_NS1" timeout 5 nc -w 1 "$1" "$2" </dev/null >/dev/null 2>&1; return 0; }

# --- attachment state -----------------------------------------------------------
e2e_count() { if [ -r "$1" ]; then grep -c . "$1"; else echo 0; fi; }
e2e_bpftool_count() {
    if command -v bpftool >/dev/null 2>&1; then
        bpftool "$1" show 2>/dev/null | grep -c '^[0-9][0-9]*:'
    else
        echo n/a
    fi
}
# One line describing everything a tracer may leave behind.
e2e_attach_state() {
    echo "kprobes=$(e2e_count /sys/kernel/debug/kprobes/list)" \
         "ftrace=$(e2e_count /sys/kernel/tracing/enabled_functions)" \
         "kprobe_events=$(e2e_count /sys/kernel/tracing/kprobe_events)" \
         "uprobe_events=$(e2e_count /sys/kernel/tracing/uprobe_events)" \
         "progs=$(e2e_bpftool_count prog)" \
         "links=$(e2e_bpftool_count link)" \
         "pinned=$(find /sys/fs/bpf -mindepth 1 2>/dev/null | grep -c .)"
}

# BPF objects (as "prog N", "link N", "map N") held open by process $1.
e2e_owned_ids() {
    for _e2e_f in /proc/"$1"/fdinfo/*; do
        [ -r "$_e2e_f" ] && echo "$_e2e_f"
    done | xargs -r grep -h -E '^(prog_id|link_id|map_id):' 2>/dev/null |
        sed -E 's/^(prog|link|map)_id:[[:space:]]*([0-9]+).*/\1 \2/' | sort -u
}

# BPF objects that currently exist (same format); empty without bpftool.
e2e_live_ids() {
    command -v bpftool >/dev/null 2>&1 || return 0
    for _e2e_k in prog link map; do
        bpftool "$_e2e_k" show 2>/dev/null | sed -n -E "s/^([0-9]+):.*/$_e2e_k \\1/p"
    done
}

# --- one tracer run -------------------------------------------------------------
# e2e_trace NAME TRAFFIC_FN TRACER_ARGS...: run the tracer around TRAFFIC_FN.
# Sets E2E_LOG (the --output-file), E2E_EVENTS (number of event lines) and
# E2E_WHY (empty when the tracer's life cycle was correct).
e2e_trace() {
    _t_name=$1 _t_traffic=$2
    shift 2
    E2E_LOG=$E2E_OUT/$_t_name.log E2E_WHY='' E2E_EVENTS=0
    _t_ready=$E2E_OUT/$_t_name.ready _t_err=$E2E_OUT/$_t_name.stderr
    rm -f "$E2E_LOG" "$_t_ready" "$_t_err"
    _t_before=''
    if [ "$E2E_GLOBAL_LEAK_CHECK" = 1 ]; then _t_before=$(e2e_attach_state); fi
    E2E_TRAFFIC_RAN=0

    _t0=$(e2e_now)
    # shellcheck disable=SC2086  # E2E_LAUNCH and E2E_EXTRA_ARGS hold several words
    $E2E_LAUNCH "$E2E_PWRU" --output-tuple --output-file="$E2E_LOG" --ready-file="$_t_ready" \
        $E2E_EXTRA_ARGS "$@" >"$_t_err" 2>&1 &
    _t_pid=$!

    _t_state=starting
    while :; do
        if [ -e "$_t_ready" ]; then _t_state=ready; break; fi
        if e2e_exited "$_t_pid"; then _t_state=exited; break; fi
        if e2e_gt "$(e2e_sub "$_t0" "$(e2e_now)")" "$E2E_READY_TIMEOUT"; then _t_state=timeout; break; fi
        sleep 0.1
    done
    _t_ready_s=$(e2e_sub "$_t0" "$(e2e_now)")

    _t_exit_s=n/a _t_owned='' _t_int=$(e2e_now)
    if [ "$_t_state" = ready ]; then
        "$_t_traffic"
        E2E_TRAFFIC_RAN=1
        sleep 1                                   # let the events drain
        _t_owned=$(e2e_owned_ids "$_t_pid" | tee "$E2E_OUT/$_t_name.owned")
        _t_int=$(e2e_now)
        kill -INT "$_t_pid" 2>/dev/null
        while ! e2e_exited "$_t_pid"; do
            if e2e_gt "$(e2e_sub "$_t_int" "$(e2e_now)")" "$E2E_EXIT_TIMEOUT"; then
                E2E_WHY="no exit within ${E2E_EXIT_TIMEOUT}s of SIGINT"
                kill -KILL "$_t_pid" 2>/dev/null
                break
            fi
            sleep 0.1
        done
        _t_exit_s=$(e2e_sub "$_t_int" "$(e2e_now)")s
    else
        kill -KILL "$_t_pid" 2>/dev/null
        case $_t_state in
            exited) E2E_WHY="tracer exited before it was ready" ;;
            timeout) E2E_WHY="no ready file after ${E2E_READY_TIMEOUT}s" ;;
        esac
    fi
    wait "$_t_pid"
    _t_rc=$?
    if [ -z "$E2E_WHY" ] && [ "$_t_rc" -ne 0 ]; then E2E_WHY="exit status $_t_rc after SIGINT"; fi

    # With the kprobe backend the tracer may leave the kprobes to a background
    # detacher ("Detaching N kprobes in the background (pid P)..."): everything
    # must be gone once that process has exited (bounded wait).
    _t_detached_s=n/a
    _t_dpid=$(sed -n 's/.*in the background (pid \([0-9][0-9]*\)).*/\1/p' "$_t_err" 2>/dev/null | head -n 1)
    if [ -n "$_t_dpid" ]; then
        while ! e2e_exited "$_t_dpid"; do
            if e2e_gt "$(e2e_sub "$_t_int" "$(e2e_now)")" "$E2E_EXIT_TIMEOUT"; then
                E2E_WHY="${E2E_WHY:+$E2E_WHY; }background detacher $_t_dpid still running ${E2E_EXIT_TIMEOUT}s after SIGINT"
                break
            fi
            sleep 0.1
        done
        _t_detached_s=$(e2e_sub "$_t_int" "$(e2e_now)")s
    fi

    # BPF objects are released asynchronously (RCU): allow a few seconds.
    _t_tries=0
    while :; do
        _t_left=''
        if [ -n "$_t_owned" ]; then
            _t_left=$(e2e_live_ids | grep -Fx -f "$E2E_OUT/$_t_name.owned" | tr '\n' ' ')
        fi
        _t_after=$_t_before
        if [ "$E2E_GLOBAL_LEAK_CHECK" = 1 ]; then _t_after=$(e2e_attach_state); fi
        if [ -z "$_t_left" ] && [ "$_t_after" = "$_t_before" ]; then break; fi
        if [ "$_t_tries" -ge 20 ]; then break; fi
        sleep 0.5
        _t_tries=$((_t_tries + 1))
    done
    if [ -z "$E2E_WHY" ] && [ -n "$_t_left" ]; then
        E2E_WHY="BPF objects of the tracer still exist after its exit: $_t_left"
    elif [ -z "$E2E_WHY" ] && [ "$_t_after" != "$_t_before" ]; then
        E2E_WHY="left attached after exit: before [$_t_before] after [$_t_after]"
    fi

    if [ -r "$E2E_LOG" ]; then E2E_EVENTS=$(grep -c '^0x' "$E2E_LOG"); fi
    echo "TIME $_t_name ready=${_t_ready_s}s exit=${_t_exit_s} detached=${_t_detached_s} rc=$_t_rc events=$E2E_EVENTS" \
         "owned_bpf_objects=$(printf '%s' "$_t_owned" | grep -c .)"
    if [ -n "$E2E_WHY" ] || [ "$E2E_VERBOSE" = 1 ]; then e2e_show_logs "$_t_name" "$_t_err"; fi
    [ -z "$E2E_WHY" ]
}

# A child has exited when its /proc entry is gone or it is a zombie.
e2e_exited() {
    [ -r "/proc/$1/stat" ] || return 0
    _e2e_st=$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null)
    [ "$_e2e_st" = Z ] || [ -z "$_e2e_st" ]
}

e2e_show_logs() {
    echo "--- $1: tracer stdout+stderr (last 30 lines) ---"
    tr '\r' '\n' <"$2" 2>/dev/null | tail -n 30
    echo "--- $1: trace (last 40 lines of $E2E_LOG) ---"
    tail -n 40 "$E2E_LOG" 2>/dev/null
    echo "--- end of $1 ---"
}

# e2e_match REGEX...: some line of the trace matches every REGEX (in any
# order on the line: the tuple column comes before or after the function).
e2e_match() {
    _e2e_m=$(grep -E -e "$1" "$E2E_LOG" 2>/dev/null)
    shift
    for _e2e_re in "$@"; do
        _e2e_m=$(printf '%s\n' "$_e2e_m" | grep -E -e "$_e2e_re")
    done
    [ -n "$_e2e_m" ]
}

# e2e_verdict NAME REGEX...: PASS when the run was clean and a trace line
# matches every REGEX.
e2e_verdict() {
    _e2e_name=$1; shift
    if [ -n "$E2E_WHY" ]; then
        e2e_fail "$_e2e_name" "$E2E_WHY"
    elif e2e_match "$@"; then
        e2e_pass "$_e2e_name"
    else
        e2e_fail "$_e2e_name" "no line matches all of: $* ($E2E_EVENTS event lines)"
        [ "$E2E_VERBOSE" = 1 ] || tail -n 20 "$E2E_LOG" 2>/dev/null | sed 's/^/    /'
    fi
}

# e2e_reason_verdict NAME: the drop line carries SKB_DROP_REASON_NETFILTER_DROP,
# required when the kernel's BTF knows that reason.
e2e_reason_verdict() {
    if ! grep -q SKB_DROP_REASON_NETFILTER_DROP /sys/kernel/btf/vmlinux 2>/dev/null; then
        e2e_skip "$1" "kernel BTF has no SKB_DROP_REASON_NETFILTER_DROP"
    elif [ -n "$E2E_WHY" ]; then
        e2e_fail "$1" "$E2E_WHY"
    elif e2e_match "$E2E_DROP_RE" NETFILTER_DROP; then
        e2e_pass "$1"
    else
        e2e_fail "$1" "no drop line with NETFILTER_DROP"
    fi
}

# e2e_scenario_check NAME MIN: the firewall counted at least MIN packets
# (else the scenario, not the tracer, is broken).
e2e_scenario_check() {
    [ "$E2E_TRAFFIC_RAN" = 1 ] || return 0
    _e2e_n=$(e2e_fw_count)
    if [ "$_e2e_n" -lt "$2" ]; then
        E2E_WHY="${E2E_WHY:+$E2E_WHY; }scenario broken: firewall counted $_e2e_n packets"
    fi
}

# --- the tests ------------------------------------------------------------------
e2e_traffic_v4_8080() { e2e_connect 10.0.0.2 8080; }
e2e_traffic_v6_8080() { e2e_connect fd00::2 8080; }
e2e_traffic_v4_8082() { e2e_connect 10.0.0.2 8082; }
e2e_traffic_v6_8083() { e2e_connect fd00::2 8083; }

e2e_basic_v4() {
    _name=$1; shift
    e2e_fw_drop "ip daddr 10.0.0.2 tcp dport 8080" || { e2e_fail "$_name" "cannot install nft rule"; return; }
    e2e_trace "$_name" e2e_traffic_v4_8080 "$@" 'dst host 10.0.0.2 and port 8080'
    e2e_scenario_check "$_name" 1
    e2e_verdict "$_name" "10\\.0\\.0\\.2:8080([^0-9]|$)" "$E2E_DROP_RE"
    e2e_reason_verdict "$_name-drop-reason"
    e2e_fw_clear
}

e2e_test_basic_ipv4() { e2e_basic_v4 basic-ipv4; }

e2e_test_basic_ipv6() {
    e2e_fw_drop "ip6 daddr fd00::2 tcp dport 8080" || { e2e_fail basic-ipv6 "cannot install nft rule"; return; }
    e2e_trace basic-ipv6 e2e_traffic_v6_8080 'dst host fd00::2 and port 8080'
    e2e_scenario_check basic-ipv6 1
    e2e_verdict basic-ipv6 "\\[fd00::2\\]:8080([^0-9]|$)" "$E2E_DROP_RE"
    e2e_reason_verdict basic-ipv6-drop-reason
    e2e_fw_clear
}

e2e_test_advanced_ipv4() {
    e2e_fw_drop "ip daddr 10.0.0.2 tcp dport 8082" || { e2e_fail advanced-ipv4 "cannot install nft rule"; return; }
    e2e_trace advanced-ipv4 e2e_traffic_v4_8082 'tcp[tcpflags] = tcp-syn'
    e2e_scenario_check advanced-ipv4 1
    e2e_verdict advanced-ipv4 "10\\.0\\.0\\.2:8082([^0-9]|$)" "$E2E_DROP_RE"
    e2e_fw_clear
}

e2e_test_advanced_ipv6() {
    # IPv6 header (40 bytes) + TCP flags at offset 13: SYN only.
    e2e_fw_drop "ip6 daddr fd00::2 tcp dport 8083" || { e2e_fail advanced-ipv6 "cannot install nft rule"; return; }
    e2e_trace advanced-ipv6 e2e_traffic_v6_8083 'ip6[53] & 0x3f = 0x2'
    e2e_scenario_check advanced-ipv6 1
    e2e_verdict advanced-ipv6 "\\[fd00::2\\]:8083([^0-9]|$)" "$E2E_DROP_RE"
    e2e_fw_clear
}

# A TCP segment with payload: listener in ns2 on port 80, client sends data.
e2e_traffic_payload() {
    e2e_in "$E2E_NS2" timeout 10 nc -l -p 80 >"$E2E_OUT/payload.received" 2>&1 &
    _e2e_lpid=$!
    sleep 1
    echo "hello from ns1" | e2e_in "$E2E_NS1" timeout 5 nc -w 1 10.0.0.2 80 >/dev/null 2>&1
    wait "$_e2e_lpid"
}

e2e_test_pcap_filter_stack() {
    e2e_trace pcap-filter-stack e2e_traffic_payload \
        '(((ip[2:2] - ((ip[0]&0xf)<<2)) - ((tcp[12]&0xf0)>>2)) != 0)'
    if [ "$E2E_TRAFFIC_RAN" = 1 ] && ! grep -q 'hello from ns1' "$E2E_OUT/payload.received" 2>/dev/null; then
        E2E_WHY="${E2E_WHY:+$E2E_WHY; }scenario broken: the listener received no data"
    fi
    e2e_verdict pcap-filter-stack '10\.0\.0\.2:80([^0-9]|$)'
}

# DNAT in ns1's output hook: 10.0.0.99:80 -> 10.0.0.2:80 (refused by ns2).
e2e_install_dnat() {
    e2e_in "$E2E_NS1" nft -f - <<'EOF'
table ip e2enat {
    chain output {
        type nat hook output priority -100; policy accept;
        ip daddr 10.0.0.99 tcp dport 80 counter dnat to 10.0.0.2
    }
}
EOF
}
e2e_test_filter_track_skb() {
    if ! e2e_install_dnat; then e2e_fail filter-track-skb "cannot install the DNAT rule"; return; fi
    e2e_trace filter-track-skb e2e_traffic_dnat --filter-track-skb 'dst host 10.0.0.99'
    _e2e_n=$(e2e_in "$E2E_NS1" nft list table ip e2enat | sed -n 's/.*packets \([0-9]*\).*/\1/p')
    if [ "$E2E_TRAFFIC_RAN" = 1 ] && [ "${_e2e_n:-0}" -lt 1 ]; then E2E_WHY="${E2E_WHY:+$E2E_WHY; }scenario broken: DNAT rule counted 0"; fi
    # The skb is still followed after its destination was rewritten.
    e2e_verdict filter-track-skb '->10\.0\.0\.2:80([^0-9]|$)'
    e2e_fw_clear
}
e2e_traffic_dnat() { e2e_connect 10.0.0.99 80; }

# The DNAT scenario with a packet socket (tcpdump) on veth1: dev_queue_xmit_nit
# hands tpacket_rcv/packet_rcv an skb_clone of the tracked skb. The clone's
# destination is 10.0.0.2, which the filter does not match: it shows up only
# when --filter-track-skb follows clones (kprobe + kretprobe on skb_clone).
e2e_test_filter_track_skb_clones() {
    if ! command -v tcpdump >/dev/null 2>&1; then
        e2e_skip filter-track-skb-clones "no tcpdump in the guest (install it on the host)"
        return
    fi
    if ! e2e_install_dnat; then e2e_fail filter-track-skb-clones "cannot install the DNAT rule"; return; fi
    e2e_trace filter-track-skb-clones e2e_traffic_dnat_tapped --filter-track-skb 'dst host 10.0.0.99'
    if [ "$E2E_TRAFFIC_RAN" = 1 ] && ! grep -q 'listening on' "$E2E_OUT/tcpdump.err" 2>/dev/null; then
        E2E_WHY="${E2E_WHY:+$E2E_WHY; }scenario broken: tcpdump did not run: $(tail -n 3 "$E2E_OUT/tcpdump.err" 2>/dev/null)"
    fi
    e2e_verdict filter-track-skb-clones '(^|[^a-z_])t?packet_rcv([^a-z_]|$)' '->10\.0\.0\.2:80([^0-9]|$)'
    e2e_fw_clear
}
e2e_traffic_dnat_tapped() {
    e2e_in "$E2E_NS1" tcpdump -Z root -n -i veth1 -w /dev/null tcp >/dev/null 2>"$E2E_OUT/tcpdump.err" &
    _e2e_tpid=$!
    # tcpdump says "listening on" once its socket is bound.
    for _e2e_i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        grep -q 'listening on' "$E2E_OUT/tcpdump.err" 2>/dev/null && break
        sleep 0.5
    done
    e2e_connect 10.0.0.99 80
    sleep 1
    # SIGTERM: a background job of a non-interactive shell ignores SIGINT.
    kill -TERM "$_e2e_tpid" 2>/dev/null
    wait "$_e2e_tpid"
    return 0
}

# --output-journey with --filter-track-skb: the clone tcpdump's packet socket gets of
# the DNATed SYN (dev_queue_xmit_nit) prints inside its packet's block, indented and
# headed "clone 0x...", with the packet socket's step.
e2e_test_journey_clones() {
    if ! command -v tcpdump >/dev/null 2>&1; then
        e2e_skip journey-clones "no tcpdump in the guest (install it on the host)"
        return
    fi
    if ! e2e_install_dnat; then e2e_fail journey-clones "cannot install the DNAT rule"; return; fi
    e2e_trace journey-clones e2e_traffic_dnat_tapped --filter-track-skb --output-journey 'dst host 10.0.0.99'
    if [ "$E2E_TRAFFIC_RAN" = 1 ] && ! grep -q 'listening on' "$E2E_OUT/tcpdump.err" 2>/dev/null; then
        E2E_WHY="${E2E_WHY:+$E2E_WHY; }scenario broken: tcpdump did not run: $(tail -n 3 "$E2E_OUT/tcpdump.err" 2>/dev/null)"
    elif [ -z "$E2E_WHY" ] && ! grep -qE '^    clone 0x[0-9a-f]+ ' "$E2E_LOG"; then
        E2E_WHY="no clone block inside a packet's journey"
    fi
    e2e_verdict journey-clones '^ {6,}\+[0-9]+\.[0-9]{3}us  t?packet_rcv$'
    e2e_fw_clear
}

# --filter-track-skb-by-stackid: the RST that tcp_v4_send_reset builds for the
# refused SYN is a new skb going the other way (the filter does not match it),
# created and sent on the stack where the SYN was recorded while the SYN is
# still alive: it is attributed to that stack.
e2e_test_filter_track_skb_by_stackid() {
    e2e_trace filter-track-skb-by-stackid e2e_traffic_v4_8080 --filter-track-skb-by-stackid \
        'dst host 10.0.0.2 and tcp dst port 8080'
    e2e_verdict filter-track-skb-by-stackid '10\.0\.0\.2:8080->10\.0\.0\.1:[0-9]+\(tcp\)'
}

# --filter-non-skb-funcs: __inet_lookup_established takes no skb; tcp_v4_rcv
# calls it for the SYN on the stack that just recorded the SYN, so the hit is
# reported with the SYN's tuple (no listener: the connection is refused). An
# unknown function is only counted as ignored, like pwru.
e2e_test_filter_non_skb_funcs() {
    e2e_trace filter-non-skb-funcs e2e_traffic_v4_8080 \
        --filter-non-skb-funcs __inet_lookup_established,pwru_no_such_function \
        'dst host 10.0.0.2 and port 8080'
    e2e_verdict filter-non-skb-funcs '(^|[^a-z_])__inet_lookup_established([^a-z_]|$)' \
        '10\.0\.0\.2:8080([^0-9]|$)'
}

# ARP request "who has 10.0.0.2" (op 1, target protocol address at offset 24).
e2e_traffic_arp() {
    e2e_in "$E2E_NS1" ip neigh flush dev veth1
    e2e_in "$E2E_NS2" ip neigh flush dev veth2
    e2e_in "$E2E_NS1" ping -c 1 -W 2 10.0.0.2 >/dev/null 2>&1
    return 0
}

e2e_test_filter_arp() {
    e2e_trace filter-arp e2e_traffic_arp \
        'arp and arp[7] = 1 and arp[24] = 10 and arp[25] = 0 and arp[26] = 0 and arp[27] = 2'
    e2e_verdict filter-arp 'arp_rcv'
}

e2e_traffic_ping_lo() { ping -c 1 -W 2 127.0.0.1 >/dev/null 2>&1; return 0; }

e2e_test_filter_ifname() {
    e2e_trace filter-ifname e2e_traffic_ping_lo --filter-ifname lo icmp
    e2e_verdict filter-ifname '127\.0\.0\.1' 'icmp'
}

# A filter that matches none of the generated packets: no event at all.
e2e_nomatch() {
    e2e_fw_drop "ip daddr 10.0.0.2 tcp dport 8080" || { e2e_fail "$1" "cannot install nft rule"; return; }
    e2e_trace "$1" e2e_traffic_v4_8080 'dst host 10.0.0.2 and udp port 9999'
    e2e_scenario_check "$1" 1
    if [ -n "$E2E_WHY" ]; then
        e2e_fail "$1" "$E2E_WHY"
    elif [ ! -e "$E2E_LOG" ]; then
        e2e_fail "$1" "no output file written"
    elif grep -qE '^0x|10\.0\.0\.|fd00:' "$E2E_LOG"; then
        e2e_fail "$1" "$E2E_EVENTS events for a filter that matches nothing"
    else
        e2e_pass "$1"
    fi
    e2e_fw_clear
}
e2e_test_filter_nomatch() { e2e_nomatch filter-nomatch; }

e2e_test_kprobe_multi_basic() {
    if ! grep -q '^CONFIG_FPROBE=y' "/boot/config-$(uname -r)" 2>/dev/null; then
        e2e_skip kprobe-multi-basic "kernel $(uname -r) has no CONFIG_FPROBE (no kprobe-multi)"
        return
    fi
    e2e_basic_v4 kprobe-multi-basic --backend=kprobe-multi
}

# --- the fentry backend: one tracing program per kernel function ------------------
# The basic drop scenario (dropped in ns1's output hook): the packet is seen on its
# way out (ip_local_out) and where it is dropped, with the drop reason read from the
# function's argument.
e2e_test_fentry_basic() {
    e2e_fw_drop "ip daddr 10.0.0.2 tcp dport 8080" || { e2e_fail fentry-basic "cannot install nft rule"; return; }
    e2e_trace fentry-basic e2e_traffic_v4_8080 --backend=fentry 'dst host 10.0.0.2 and port 8080'
    e2e_scenario_check fentry-basic 1
    e2e_verdict fentry-basic "10\\.0\\.0\\.2:8080([^0-9]|$)" "$E2E_DROP_RE"
    e2e_verdict fentry-basic-ip-local-out "10\\.0\\.0\\.2:8080([^0-9]|$)" '(^|[^a-z_])ip_local_out([^a-z_]|$)'
    e2e_reason_verdict fentry-basic-drop-reason
    e2e_fw_clear
}

# --filter-track-skb with fentry: the skb is followed after DNAT rewrote its
# destination (the untrack helper forgets it when freed).
e2e_test_fentry_track() {
    if ! e2e_install_dnat; then e2e_fail fentry-track "cannot install the DNAT rule"; return; fi
    e2e_trace fentry-track e2e_traffic_dnat --backend=fentry --filter-track-skb 'dst host 10.0.0.99'
    _e2e_n=$(e2e_in "$E2E_NS1" nft list table ip e2enat | sed -n 's/.*packets \([0-9]*\).*/\1/p')
    if [ "$E2E_TRAFFIC_RAN" = 1 ] && [ "${_e2e_n:-0}" -lt 1 ]; then E2E_WHY="${E2E_WHY:+$E2E_WHY; }scenario broken: DNAT rule counted 0"; fi
    e2e_verdict fentry-track '->10\.0\.0\.2:80([^0-9]|$)'
    e2e_fw_clear
}

# --- BPF programs traced with fentry/fexit ---------------------------------------
# e2e_tc_fixture_up PORT: the fixture tc program (our assembler, with BTF) dropping
# TCP to PORT on veth2's ingress in ns2, attached with tc from a pin in a private
# bpffs (ip netns exec remounts /sys, not /run); the pin is gone once attached.
E2E_BPFFS=/run/e2e-bpf
e2e_tc_fixture_up() {
    [ -x "$E2E_FIXTURE" ] || { echo "no fixture binary $E2E_FIXTURE (cargo build --example e2e_fixture)"; return 1; }
    mkdir -p "$E2E_BPFFS" && mount -t bpf bpf "$E2E_BPFFS" || return 1
    "$E2E_FIXTURE" tc-drop-tcp "$1" "$E2E_BPFFS/drop_tcp" >/dev/null || return 1
    e2e_in "$E2E_NS2" tc qdisc add dev veth2 clsact || return 1
    e2e_in "$E2E_NS2" tc filter add dev veth2 ingress bpf object-pinned "$E2E_BPFFS/drop_tcp" da || return 1
    rm -f "$E2E_BPFFS/drop_tcp"
}
e2e_tc_fixture_down() {
    e2e_in "$E2E_NS2" tc qdisc del dev veth2 clsact 2>/dev/null
    rm -f "$E2E_BPFFS/drop_tcp"
    umount "$E2E_BPFFS" 2>/dev/null
    return 0
}
e2e_traffic_v4_8084() { e2e_connect 10.0.0.2 8084; }

# The fixture's drops show inside the program, by name with (tc), with the tuple,
# and its fexit line with the verdict; nothing of ours stays attached (e2e_trace).
e2e_test_trace_tc() {
    if ! e2e_tc_fixture_up 8084; then
        e2e_fail trace-tc "cannot attach the tc fixture"
        e2e_tc_fixture_down
        return
    fi
    e2e_trace trace-tc e2e_traffic_v4_8084 --filter-trace-tc --filter-func 'kfree_skb.*|sk_skb_reason_drop' \
        'dst host 10.0.0.2 and tcp dst port 8084'
    _e2e_tuple='10\.0\.0\.1:[0-9]+->10\.0\.0\.2:8084\(tcp\)'
    e2e_verdict trace-tc "$_e2e_tuple" 'e2e_drop_tcp\(tc\)([^=]|$)'
    e2e_verdict trace-tc-verdict "$_e2e_tuple" 'e2e_drop_tcp\(tc\)=TC_ACT_SHOT'
    e2e_tc_fixture_down
}

# A tc program loaded after the tracer is ready is traced too (the tracer polls
# the program list every second); it is detached again before the tracer exits.
e2e_traffic_tc_later() {
    if ! e2e_tc_fixture_up 8085; then
        echo "trace-tc-later: cannot attach the tc fixture"
        e2e_tc_fixture_down
        return 0
    fi
    sleep 3
    e2e_connect 10.0.0.2 8085
    sleep 1
    e2e_tc_fixture_down
}
e2e_test_trace_tc_later() {
    e2e_trace trace-tc-later e2e_traffic_tc_later --filter-trace-tc --filter-func 'kfree_skb.*|sk_skb_reason_drop' \
        'dst host 10.0.0.2 and tcp dst port 8085'
    e2e_verdict trace-tc-later '10\.0\.0\.1:[0-9]+->10\.0\.0\.2:8085\(tcp\)' 'e2e_drop_tcp\(tc\)=TC_ACT_SHOT'
}

# Our own programs carry BTF (a function record naming each): while the tracer
# runs, every program it holds shows a btf_id in bpftool (what fentry on them needs).
e2e_traffic_own_btf() {
    E2E_OWN_PROGS=0 E2E_OWN_BTF=0
    for _e2e_id in $(e2e_owned_ids "$_t_pid" | sed -n 's/^prog //p'); do
        E2E_OWN_PROGS=$((E2E_OWN_PROGS + 1))
        if bpftool prog show id "$_e2e_id" 2>/dev/null | grep -q 'btf_id [1-9]'; then
            E2E_OWN_BTF=$((E2E_OWN_BTF + 1))
        fi
    done
    e2e_connect 10.0.0.2 8080
}
e2e_test_own_btf() {
    if ! command -v bpftool >/dev/null 2>&1; then
        e2e_skip own-btf "no bpftool"
        return
    fi
    e2e_trace own-btf e2e_traffic_own_btf 'dst host 10.0.0.2 and tcp dst port 8080'
    if [ -n "$E2E_WHY" ]; then
        e2e_fail own-btf "$E2E_WHY"
    elif [ "$E2E_OWN_PROGS" -gt 0 ] && [ "$E2E_OWN_BTF" -eq "$E2E_OWN_PROGS" ]; then
        e2e_pass own-btf
    else
        e2e_fail own-btf "$E2E_OWN_BTF of the tracer's $E2E_OWN_PROGS programs have BTF"
    fi
}

# --filter-track-bpf-helpers reads the fixture's helpers from its translated
# instructions (the verifier made its map update a call of htab_map_update_elem),
# lists them with --debug and probes them: the helper's line carries the dropped
# packet's tuple (attributed by stack).
e2e_traffic_v4_8091() { e2e_connect 10.0.0.2 8091; }
e2e_test_bpf_helpers() {
    if ! e2e_tc_fixture_up 8091; then
        e2e_fail bpf-helpers "cannot attach the tc fixture"
        e2e_tc_fixture_down
        return
    fi
    e2e_trace bpf-helpers e2e_traffic_v4_8091 --filter-track-bpf-helpers --debug \
        --filter-func 'tcf_classify|__netif_receive_skb|kfree_skb.*|sk_skb_reason_drop' \
        'dst host 10.0.0.2 and tcp dst port 8091'
    _e2e_err=$E2E_OUT/bpf-helpers.stderr
    if ! grep -qE '^Tracking [1-9][0-9]* BPF helpers called by [1-9][0-9]* BPF programs' "$_e2e_err"; then
        e2e_fail bpf-helpers-listed "no helper count at start"
        sed 's/^/    /' "$_e2e_err" | head -n 20
    elif ! grep -qE 'bpf helper htab_map_update_elem \(called by .*e2e_drop_tcp' "$_e2e_err"; then
        e2e_fail bpf-helpers-listed "htab_map_update_elem not listed as a helper of e2e_drop_tcp"
        grep 'bpf helper' "$_e2e_err" | sed 's/^/    /'
    else
        e2e_pass bpf-helpers-listed
    fi
    e2e_verdict bpf-helpers '10\.0\.0\.1:[0-9]+->10\.0\.0\.2:8091\(tcp\)' 'htab_map_update_elem'
    e2e_tc_fixture_down
}

# --output-bpfmap with the helpers: the fixture's update of its drop counter
# shows with the map's name and the key (the port, a little-endian u32), on the
# line of htab_map_update_elem carrying the dropped packet's tuple.
e2e_traffic_v4_8092() { e2e_connect 10.0.0.2 8092; e2e_connect 10.0.0.2 8092; }
e2e_test_bpfmap() {
    if ! e2e_tc_fixture_up 8092; then
        e2e_fail bpfmap "cannot attach the tc fixture"
        e2e_tc_fixture_down
        return
    fi
    e2e_trace bpfmap e2e_traffic_v4_8092 --filter-track-bpf-helpers --output-bpfmap \
        --filter-func 'tcf_classify|__netif_receive_skb|kfree_skb.*|sk_skb_reason_drop' \
        'dst host 10.0.0.2 and tcp dst port 8092'
    e2e_verdict bpfmap '10\.0\.0\.1:[0-9]+->10\.0\.0\.2:8092\(tcp\)' 'htab_map_update_elem'
    if [ -n "$E2E_WHY" ]; then
        e2e_fail bpfmap-update "$E2E_WHY"
    elif grep -A 6 'htab_map_update_elem' "$E2E_LOG" | grep -q '^map_name: e2e_tc_drops$' &&
        grep -A 1 '^key(4):$' "$E2E_LOG" | grep -q '^00000000  9c 1f 00 00 '; then
        e2e_pass bpfmap-update
    else
        e2e_fail bpfmap-update "no map_name e2e_tc_drops with key 9c 1f 00 00 (port 8092)"
        [ "$E2E_VERBOSE" = 1 ] || tail -n 30 "$E2E_LOG" 2>/dev/null | sed 's/^/    /'
    fi
    # The second connection's lookup (a kretprobe) finds the first one's count: the
    # value after the key in the element __htab_map_lookup_elem returns.
    if [ -n "$E2E_WHY" ]; then
        e2e_fail bpfmap-lookup "$E2E_WHY"
    elif grep -A 8 '__htab_map_lookup_elem' "$E2E_LOG" | grep -A 1 '^value(8):$' |
        grep -qE '^00000000  0[1-9] 00 00 00 00 00 00 00 '; then
        e2e_pass bpfmap-lookup
    else
        e2e_fail bpfmap-lookup "no __htab_map_lookup_elem value with a count of drops"
        [ "$E2E_VERBOSE" = 1 ] || grep -A 8 '__htab_map_lookup_elem' "$E2E_LOG" | tail -n 30 | sed 's/^/    /'
    fi
    e2e_tc_fixture_down
}

# e2e_xdp_fixture_up PORT: the fixture XDP program (our assembler, with BTF) dropping
# UDP to PORT on veth2 in ns2 (native veth XDP, else generic), attached with ip from a
# pin (as for tc); the pin is gone once attached.
e2e_xdp_fixture_up() {
    [ -x "$E2E_FIXTURE" ] || { echo "no fixture binary $E2E_FIXTURE (cargo build --example e2e_fixture)"; return 1; }
    mkdir -p "$E2E_BPFFS" && mount -t bpf bpf "$E2E_BPFFS" || return 1
    "$E2E_FIXTURE" xdp-drop-udp "$1" "$E2E_BPFFS/drop_udp" >/dev/null || return 1
    e2e_in "$E2E_NS2" ip link set dev veth2 xdp pinned "$E2E_BPFFS/drop_udp" ||
        e2e_in "$E2E_NS2" ip link set dev veth2 xdpgeneric pinned "$E2E_BPFFS/drop_udp" || return 1
    rm -f "$E2E_BPFFS/drop_udp"
}
e2e_xdp_fixture_down() {
    e2e_in "$E2E_NS2" ip link set dev veth2 xdp off 2>/dev/null
    e2e_in "$E2E_NS2" ip link set dev veth2 xdpgeneric off 2>/dev/null
    rm -f "$E2E_BPFFS/drop_udp"
    umount "$E2E_BPFFS" 2>/dev/null
    return 0
}
# Two UDP datagrams from ns1 to 10.0.0.2:8086 (bash's /dev/udp: busybox nc has no -u).
e2e_traffic_udp_8086() {
    for _e2e_i in 1 2; do
        e2e_in "$E2E_NS1" bash -c 'echo pwru >/dev/udp/10.0.0.2/8086' 2>/dev/null
        sleep 0.2
    done
    return 0
}
# veth2's ifindex (in ns2).
e2e_veth2_ifindex() { e2e_in "$E2E_NS2" cat /sys/class/net/veth2/ifindex; }

# The XDP fixture's drops show inside the program, by name with (xdp), with the tuple,
# and its fexit line with the verdict; nothing of ours stays attached (e2e_trace).
e2e_test_trace_xdp() {
    if ! e2e_xdp_fixture_up 8086; then
        e2e_fail trace-xdp "cannot attach the XDP fixture"
        e2e_xdp_fixture_down
        return
    fi
    e2e_trace trace-xdp e2e_traffic_udp_8086 --filter-trace-xdp --filter-func 'kfree_skb.*|sk_skb_reason_drop' \
        'dst host 10.0.0.2 and udp dst port 8086'
    _e2e_tuple='10\.0\.0\.1:[0-9]+->10\.0\.0\.2:8086\(udp\)'
    e2e_verdict trace-xdp "$_e2e_tuple" 'e2e_drop_udp\(xdp\)([^=]|$)'
    e2e_verdict trace-xdp-verdict "$_e2e_tuple" 'e2e_drop_udp\(xdp\)=XDP_DROP'
    e2e_xdp_fixture_down
}

# --filter-xdp-expr on veth2's ifindex keeps the XDP events, and --output-xdp-metadata
# prints the buffer's fields after FUNC (the device's ifindex, the rx queue).
e2e_test_xdp_expr() {
    if ! e2e_xdp_fixture_up 8086; then
        e2e_fail xdp-expr "cannot attach the XDP fixture"
        e2e_xdp_fixture_down
        return
    fi
    _e2e_idx=$(e2e_veth2_ifindex)
    e2e_trace xdp-expr e2e_traffic_udp_8086 --filter-trace-xdp --filter-func 'kfree_skb.*|sk_skb_reason_drop' \
        --filter-xdp-expr "xdp->rxq->dev->ifindex == $_e2e_idx" \
        --output-xdp-metadata 'xdp->rxq->dev->ifindex,xdp->rxq->queue_index' \
        'dst host 10.0.0.2 and udp dst port 8086'
    _e2e_tuple='10\.0\.0\.1:[0-9]+->10\.0\.0\.2:8086\(udp\)'
    e2e_verdict xdp-expr "$_e2e_tuple" 'e2e_drop_udp\(xdp\)=XDP_DROP'
    e2e_verdict xdp-metadata "$_e2e_tuple" \
        "e2e_drop_udp\\(xdp\\)([^ ]*) xdp->rxq->dev->ifindex=$_e2e_idx xdp->rxq->queue_index=0\$"
    e2e_xdp_fixture_down
}

# An expression no XDP buffer satisfies (another ifindex): the drops happen, no XDP
# event is shown.
e2e_test_xdp_expr_nomatch() {
    if ! e2e_xdp_fixture_up 8086; then
        e2e_fail xdp-expr-nomatch "cannot attach the XDP fixture"
        e2e_xdp_fixture_down
        return
    fi
    _e2e_idx=$(e2e_veth2_ifindex)
    e2e_trace xdp-expr-nomatch e2e_traffic_udp_8086 --filter-trace-xdp --filter-func 'kfree_skb.*|sk_skb_reason_drop' \
        --filter-xdp-expr "xdp->rxq->dev->ifindex == $((_e2e_idx + 1000))" \
        'dst host 10.0.0.2 and udp dst port 8086'
    if [ -n "$E2E_WHY" ]; then
        e2e_fail xdp-expr-nomatch "$E2E_WHY"
    elif grep -q '(xdp)' "$E2E_LOG"; then
        e2e_fail xdp-expr-nomatch "an XDP event passed an expression no buffer satisfies"
    elif ! grep -q 'Tracing 1 xdp programs' "$E2E_OUT/xdp-expr-nomatch.stderr"; then
        e2e_fail xdp-expr-nomatch "the XDP fixture was not traced"
    else
        e2e_pass xdp-expr-nomatch
    fi
    e2e_xdp_fixture_down
}

# Two UDP datagrams from ns1 to 10.0.0.2:8087 (the XDP fixture lets them pass; no
# socket listens, so the stack drops them).
e2e_traffic_udp_8087() {
    for _e2e_i in 1 2; do
        e2e_in "$E2E_NS1" bash -c 'echo pwru >/dev/udp/10.0.0.2/8087' 2>/dev/null
        sleep 0.2
    done
    return 0
}

# --filter-track-skb follows the skb built from a traced XDP buffer: the mark filter
# (which XDP buffers skip, as in pwru) rejects every skb, so the drop of the datagram
# after XDP_PASS shows only through the buffer's data_hard_start (the skb's head).
e2e_test_xdp_track_skb() {
    if ! e2e_xdp_fixture_up 8086; then
        e2e_fail xdp-track-skb "cannot attach the XDP fixture"
        e2e_xdp_fixture_down
        return
    fi
    e2e_trace xdp-track-skb e2e_traffic_udp_8087 --filter-trace-xdp --filter-track-skb --filter-mark 0x1 \
        --filter-func 'kfree_skb.*|sk_skb_reason_drop' 'dst host 10.0.0.2 and udp dst port 8087'
    _e2e_tuple='10\.0\.0\.1:[0-9]+->10\.0\.0\.2:8087\(udp\)'
    e2e_verdict xdp-track-skb "$_e2e_tuple" 'e2e_drop_udp\(xdp\)=XDP_PASS'
    e2e_verdict xdp-track-skb-drop "$_e2e_tuple" '(kfree_skb_reason|sk_skb_reason_drop)\('
    e2e_xdp_fixture_down
}

# Host variants: the drop is reported with its reason (which function or
# tracepoint reports it depends on the backend).
e2e_test_host_basic_ipv4() {
    e2e_fw_drop "ip daddr 10.0.0.2 tcp dport 8080" || { e2e_fail host-basic-ipv4 "cannot install nft rule"; return; }
    e2e_trace host-basic-ipv4 e2e_traffic_v4_8080 'dst host 10.0.0.2 and port 8080'
    e2e_scenario_check host-basic-ipv4 1
    e2e_verdict host-basic-ipv4 '10\.0\.0\.2:8080([^0-9]|$)' 'NETFILTER_DROP'
    e2e_fw_clear
}

e2e_test_host_basic_ipv6() {
    e2e_fw_drop "ip6 daddr fd00::2 tcp dport 8080" || { e2e_fail host-basic-ipv6 "cannot install nft rule"; return; }
    e2e_trace host-basic-ipv6 e2e_traffic_v6_8080 'dst host fd00::2 and port 8080'
    e2e_scenario_check host-basic-ipv6 1
    e2e_verdict host-basic-ipv6 '\[fd00::2\]:8080([^0-9]|$)' 'NETFILTER_DROP'
    e2e_fw_clear
}

e2e_test_host_nomatch() { e2e_nomatch host-nomatch; }

# --filter-skb-expr on top of the pcap filter, with --output-skb-metadata values
# printed after FUNC; then an expression no packet satisfies.
e2e_test_host_skb_expr() {
    e2e_fw_drop "ip daddr 10.0.0.2 tcp dport 8080" || { e2e_fail host-skb-expr "cannot install nft rule"; return; }
    e2e_trace host-skb-expr e2e_traffic_v4_8080 --filter-skb-expr 'skb->len > 0 && skb->len < 100000' \
        --output-skb-metadata 'skb->len,skb->mark' 'dst host 10.0.0.2 and port 8080'
    e2e_scenario_check host-skb-expr 1
    e2e_verdict host-skb-expr '10\.0\.0\.2:8080([^0-9]|$)' ' skb->len=[1-9][0-9]* skb->mark=0$'
    e2e_fw_clear
}

# --output-skb/--output-skb-shared-info: the BTF dumps follow the event line.
e2e_test_host_output_skb() {
    e2e_fw_drop "ip daddr 10.0.0.2 tcp dport 8080" || { e2e_fail host-output-skb "cannot install nft rule"; return; }
    e2e_trace host-output-skb e2e_traffic_v4_8080 --output-skb --output-skb-shared-info \
        'dst host 10.0.0.2 and port 8080'
    e2e_scenario_check host-output-skb 1
    if [ -z "$E2E_WHY" ] && ! grep -qE '^ \.len = \(unsigned int\)[1-9]' "$E2E_LOG"; then
        E2E_WHY="no '.len = (unsigned int)N' line of a struct sk_buff dump"
    elif [ -z "$E2E_WHY" ] && ! grep -qE '^\(struct skb_shared_info\)\{$' "$E2E_LOG"; then
        E2E_WHY="no struct skb_shared_info dump"
    fi
    e2e_verdict host-output-skb '^\(struct sk_buff\)\{$'
    e2e_fw_clear
}

# Tracking on the tracepoint backend: by skb and by stack identity (named from
# the address of the tracepoint's argument array on the kernel stack). Clones
# are not followed there, and the tracer says so at start.
e2e_test_host_track_by_stackid() {
    e2e_fw_drop "ip daddr 10.0.0.2 tcp dport 8080" || { e2e_fail host-track-by-stackid "cannot install nft rule"; return; }
    e2e_trace host-track-by-stackid e2e_traffic_v4_8080 --filter-track-skb \
        --filter-track-skb-by-stackid 'dst host 10.0.0.2 and port 8080'
    e2e_scenario_check host-track-by-stackid 1
    if [ -z "$E2E_WHY" ] && ! grep -q 'does not follow clones' "$E2E_OUT/host-track-by-stackid.stderr"; then
        E2E_WHY="no note that clones are not followed on the tracepoint backend"
    fi
    e2e_verdict host-track-by-stackid '10\.0\.0\.2:8080([^0-9]|$)' 'NETFILTER_DROP'
    e2e_fw_clear
}

# The original's first interface, as its scripts wrote it: Go's single-dash flags and
# no pcap expression. The same drop is traced, with relative timestamps, and pwru names
# today's command.
e2e_test_host_legacy_flags() {
    e2e_fw_drop "ip daddr 10.0.0.2 tcp dport 8080" || { e2e_fail host-legacy-flags "cannot install nft rule"; return; }
    e2e_trace host-legacy-flags e2e_traffic_v4_8080 -filter-dst-ip 10.0.0.2 -filter-dst-port 8080 \
        -filter-proto tcp -output-relative-timestamp
    e2e_scenario_check host-legacy-flags 1
    if [ -z "$E2E_WHY" ] && ! grep -q "today's command: pwru .*'dst host 10.0.0.2 and tcp and dst port 8080'" \
        "$E2E_OUT/host-legacy-flags.stderr"; then
        E2E_WHY="no note giving today's command"
    elif [ -z "$E2E_WHY" ] && ! grep -q ' TIMESTAMP ' "$E2E_LOG"; then
        E2E_WHY="-output-relative-timestamp: no TIMESTAMP column"
    fi
    e2e_verdict host-legacy-flags '10\.0\.0\.2:8080([^0-9]|$)' 'NETFILTER_DROP'
    e2e_fw_clear
}

# --summary: after the events, a table of drops by reason and function whose
# NETFILTER_DROP count is the number of packets the firewall dropped, then the totals.
# e2e_summary NAME [PWRU_ARGS...]
e2e_summary() {
    _s_name=$1; shift
    e2e_fw_drop "ip daddr 10.0.0.2 tcp dport 8080" || { e2e_fail "$_s_name" "cannot install nft rule"; return; }
    e2e_trace "$_s_name" e2e_traffic_v4_8080 "$@" --summary 'dst host 10.0.0.2 and port 8080'
    e2e_scenario_check "$_s_name" 1
    _s_dropped=$(e2e_fw_count)
    if [ -z "$E2E_WHY" ] && ! grep -qE '^Summary:$' "$E2E_LOG"; then
        E2E_WHY="no Summary: block after the events"
    elif [ -z "$E2E_WHY" ] && ! grep -qE "^ +$_s_dropped  SKB_DROP_REASON_NETFILTER_DROP +[a-z_:]+$" "$E2E_LOG"; then
        E2E_WHY="no summary row '$_s_dropped  SKB_DROP_REASON_NETFILTER_DROP FUNCTION' (the firewall dropped $_s_dropped)"
    fi
    e2e_verdict "$_s_name" '^[1-9][0-9]* packets, [1-9][0-9]* events, [1-9][0-9]* drops, 0 lost events, [0-9]+ missed hits$'
    e2e_fw_clear
}
e2e_test_host_summary() { e2e_summary host-summary; }
e2e_test_summary() { e2e_summary summary; }

# --summary with --output-json: the last line is one JSON object with the drop row.
e2e_test_host_summary_json() {
    e2e_fw_drop "ip daddr 10.0.0.2 tcp dport 8080" || { e2e_fail host-summary-json "cannot install nft rule"; return; }
    e2e_trace host-summary-json e2e_traffic_v4_8080 --summary --output-json 'dst host 10.0.0.2 and port 8080'
    e2e_scenario_check host-summary-json 1
    _s_dropped=$(e2e_fw_count)
    if [ -z "$E2E_WHY" ] && ! tail -n 1 "$E2E_LOG" | grep -qE '^\{"summary":\{"packets":[1-9]'; then
        E2E_WHY="the last line is not the summary object"
    fi
    e2e_verdict host-summary-json '^\{"summary":' "\"reason\":\"SKB_DROP_REASON_NETFILTER_DROP\",\"func\":\"[a-z_:]+\",\"count\":$_s_dropped\}"
    e2e_fw_clear
}

# --output-journey: the dropped SYN is one block: its tuple, its steps, and the end
# "dropped by FUNC: SKB_DROP_REASON_NETFILTER_DROP"; no per-event lines. With
# ORDERED=1 (kprobe backends, which see every function) each dropped journey passes
# the output path in the stack's order: ip_local_out or __ip_local_out, then
# nf_hook_slow, then the drop (and the free path after it).
# e2e_journey NAME ORDERED [PWRU_ARGS...]
e2e_journey() {
    _j_name=$1 _j_ordered=$2; shift 2
    e2e_fw_drop "ip daddr 10.0.0.2 tcp dport 8080" || { e2e_fail "$_j_name" "cannot install nft rule"; return; }
    e2e_trace "$_j_name" e2e_traffic_v4_8080 "$@" --output-journey 'dst host 10.0.0.2 and port 8080'
    e2e_scenario_check "$_j_name" 1
    _j_blocks=$(grep -cE '^0x[0-9a-f]+ 10\.0\.0\.1:[0-9]+->10\.0\.0\.2:8080\(tcp\)$' "$E2E_LOG" 2>/dev/null || true)
    _j_drops=$(grep -cE '^  dropped by [a-z_:]+: SKB_DROP_REASON_NETFILTER_DROP$' "$E2E_LOG" 2>/dev/null || true)
    _s_dropped=$(e2e_fw_count)
    if [ -z "$E2E_WHY" ] && [ "${_j_drops:-0}" != "$_s_dropped" ]; then
        E2E_WHY="$_j_drops journeys end in the drop, the firewall dropped $_s_dropped"
    elif [ -z "$E2E_WHY" ] && [ "${_j_blocks:-0}" -lt "$_s_dropped" ]; then
        E2E_WHY="$_j_blocks journeys start with the SYN's tuple, the firewall dropped $_s_dropped"
    elif [ -z "$E2E_WHY" ] && grep -q '^SKB ' "$E2E_LOG"; then
        E2E_WHY="a table header in journey output"
    elif [ -z "$E2E_WHY" ] && [ "$_j_ordered" = 1 ]; then
        # per block: the step numbers of the output path, and whether the drop came last
        _j_bad=$(awk '
            /^0x/ { n = 0; out = 0; hook = 0; drop = 0; next }
            /^ +\+[0-9]+\.[0-9]+us  / {
                n++; f = $2
                if (f == "ip_local_out" || f == "__ip_local_out") { if (!out) out = n }
                else if (f == "nf_hook_slow") { if (!hook) hook = n }
                if (f ~ /SKB_DROP_REASON_NETFILTER_DROP/ && !drop) drop = n
                next
            }
            /^  dropped by / {
                if (!(out && hook && out < hook && hook < drop)) bad++
            }
            END { print bad + 0 }' "$E2E_LOG")
        if [ "$_j_bad" != 0 ]; then
            E2E_WHY="$_j_bad dropped journeys do not pass ip_local_out, then nf_hook_slow, then the drop"
        fi
    fi
    e2e_verdict "$_j_name" '^ +\+[0-9]+\.[0-9]{3}us  [a-z_:]+\(SKB_DROP_REASON_NETFILTER_DROP\)$'
    e2e_fw_clear
}
e2e_test_host_journey() { e2e_journey host-journey 0; }
e2e_test_journey() { e2e_journey journey 1; }

# A ping to 10.0.0.2, then the SYN to 8080 the firewall drops.
e2e_traffic_ping_v4_8080() {
    e2e_in "$E2E_NS1" ping -c 1 -W 2 10.0.0.2 >/dev/null 2>&1
    e2e_connect 10.0.0.2 8080
}

# e2e_pcap NAME TOOLS: --output-pcap next to the table, around a ping and the SYN to
# 8080 the firewall drops. The file holds as many packets as the table has events
# (`pwru --filter-check`, and tcpdump when present), among them the ICMP echo and the
# SYNs; --filter-check agrees with tcpdump on the SYNs; each packet's comment names its
# function, and the drop's carries NETFILTER_DROP (read by tshark when present, else
# found in the file's bytes). TOOLS=required: tcpdump and tshark must be there (host).
e2e_pcap() {
    _p_name=$1
    _p_tcpdump=0 _p_tshark=0
    command -v tcpdump >/dev/null 2>&1 && _p_tcpdump=1
    command -v tshark >/dev/null 2>&1 && _p_tshark=1
    if [ "$2" = required ] && [ $((_p_tcpdump * _p_tshark)) = 0 ]; then
        e2e_skip "$_p_name" "tcpdump and tshark are needed"
        return
    fi
    e2e_fw_drop "ip daddr 10.0.0.2 tcp dport 8080" || { e2e_fail "$_p_name" "cannot install nft rule"; return; }
    _p_file=$E2E_OUT/$_p_name.pcapng
    rm -f "$_p_file"
    e2e_trace "$_p_name" e2e_traffic_ping_v4_8080 --output-pcap "$_p_file" \
        'host 10.0.0.2 and (icmp or tcp port 8080)'
    e2e_scenario_check "$_p_name" 1
    _p_dropped=$(e2e_fw_count)
    # "matched N of M frames"
    _p_all=$("$E2E_PWRU" --filter-check "$_p_file" 'ip or not ip' 2>&1 | tail -n 1)
    _p_packets=$(echo "$_p_all" | sed -n 's/^matched [0-9]* of \([0-9]*\) frames$/\1/p')
    _p_check=$("$E2E_PWRU" --filter-check "$_p_file" 'tcp[tcpflags] & tcp-syn != 0' 2>&1 | tail -n 1)
    _p_syns=$(echo "$_p_check" | sed -n 's/^matched \([0-9]*\) of [0-9]* frames$/\1/p')
    _p_echo=$("$E2E_PWRU" --filter-check "$_p_file" 'icmp[icmptype] = icmp-echo' 2>&1 | tail -n 1)
    _p_comments=$E2E_OUT/$_p_name.comments
    _p_start='^'
    if [ "$_p_tshark" = 1 ]; then
        tshark -r "$_p_file" -T fields -e frame.comment >"$_p_comments" 2>/dev/null
    else
        # The comments are UTF-8 text inside the packet blocks (after a length that may
        # read as a letter: no anchor).
        tr -c ' -~' '\n' <"$_p_file" | grep -E ' skb=0x[0-9a-f]+ cpu=' >"$_p_comments"
        _p_start=''
    fi
    _p_ncomments=$(grep -c . "$_p_comments" || true)
    if [ -n "$E2E_WHY" ]; then
        :
    elif [ ! -s "$_p_file" ] || [ -z "$_p_packets" ]; then
        E2E_WHY="no readable pcap-ng file: $_p_all"
    elif [ "$_p_packets" != "$E2E_EVENTS" ]; then
        E2E_WHY="the file holds $_p_packets packets, the table has $E2E_EVENTS events"
    elif [ "$_p_tcpdump" = 1 ] && [ "$(tcpdump -Z root -nr "$_p_file" 2>/dev/null | grep -c .)" != "$_p_packets" ]; then
        E2E_WHY="tcpdump reads $(tcpdump -Z root -nr "$_p_file" 2>/dev/null | grep -c .) packets, --filter-check $_p_packets: $(tcpdump -Z root -nr "$_p_file" 2>&1 >/dev/null | tail -n 1)"
    elif [ "${_p_syns:-0}" -lt "$_p_dropped" ]; then
        E2E_WHY="$_p_check: fewer SYNs than the $_p_dropped the firewall dropped"
    elif [ "$_p_tcpdump" = 1 ] && [ "$(tcpdump -Z root -nr "$_p_file" 'tcp[tcpflags] & tcp-syn != 0' 2>/dev/null | grep -c .)" != "$_p_syns" ]; then
        E2E_WHY="tcpdump and --filter-check ($_p_check) disagree on the SYNs"
    elif case $_p_echo in "matched 0 "*) true ;; *) false ;; esac; then
        E2E_WHY="no ICMP echo request in the file"
    elif [ "$_p_ncomments" != "$_p_packets" ]; then
        E2E_WHY="$_p_ncomments packet comments for $_p_packets packets"
    elif ! grep -qE "$_p_start[a-z_:]+\\(SKB_DROP_REASON_NETFILTER_DROP\\) skb=0x[0-9a-f]+ cpu=[0-9]+ process=.* netns=[0-9]+" \
        "$_p_comments"; then
        E2E_WHY="no packet comment with the function and SKB_DROP_REASON_NETFILTER_DROP"
    fi
    [ -z "$E2E_WHY" ] || sed 's/^/    comment: /' "$_p_comments" 2>/dev/null | tail -n 10
    e2e_verdict "$_p_name" '10\.0\.0\.2:8080([^0-9]|$)' 'NETFILTER_DROP'
    e2e_fw_clear
}

e2e_test_host_pcap() { e2e_pcap host-pcap required; }
e2e_test_pcap_output() { e2e_pcap pcap-output optional; }

e2e_test_host_skb_expr_nomatch() {
    e2e_fw_drop "ip daddr 10.0.0.2 tcp dport 8080" || { e2e_fail host-skb-expr-nomatch "cannot install nft rule"; return; }
    e2e_trace host-skb-expr-nomatch e2e_traffic_v4_8080 --filter-skb-expr 'skb->len > 100000' \
        'dst host 10.0.0.2 and port 8080'
    e2e_scenario_check host-skb-expr-nomatch 1
    if [ -n "$E2E_WHY" ]; then
        e2e_fail host-skb-expr-nomatch "$E2E_WHY"
    elif [ ! -e "$E2E_LOG" ]; then
        e2e_fail host-skb-expr-nomatch "no output file written"
    elif grep -qE '^0x' "$E2E_LOG"; then
        e2e_fail host-skb-expr-nomatch "$E2E_EVENTS events for an expression no packet satisfies"
    else
        e2e_pass host-skb-expr-nomatch
    fi
    e2e_fw_clear
}

# --- overlays ---------------------------------------------------------------------
# e2e_overlay_up KIND PORT: a KIND (vxlan, geneve) overlay over the veth underlay,
# ns1 tun1 10.42.0.1/24 <-> ns2 tun2 10.42.0.2/24, VNI 42, outer UDP port PORT.
e2e_overlay_up() {
    _e2e_opts="id 42 remote 10.0.0.2 dstport $2"
    [ "$1" = vxlan ] && _e2e_opts="$_e2e_opts local 10.0.0.1 dev veth1"
    # shellcheck disable=SC2086  # the options are several words
    e2e_in "$E2E_NS1" ip link add tun1 type "$1" $_e2e_opts || return 1
    _e2e_opts="id 42 remote 10.0.0.1 dstport $2"
    [ "$1" = vxlan ] && _e2e_opts="$_e2e_opts local 10.0.0.2 dev veth2"
    # shellcheck disable=SC2086
    e2e_in "$E2E_NS2" ip link add tun2 type "$1" $_e2e_opts || return 1
    e2e_in "$E2E_NS1" ip addr add 10.42.0.1/24 dev tun1
    e2e_in "$E2E_NS2" ip addr add 10.42.0.2/24 dev tun2
    e2e_in "$E2E_NS1" ip link set tun1 up
    e2e_in "$E2E_NS2" ip link set tun2 up
    # Control: the overlay carries traffic (this also resolves the inner ARP).
    e2e_in "$E2E_NS1" ping -c 1 -W 5 10.42.0.2 >/dev/null || { echo "setup: ping 10.42.0.2 over $1 failed"; return 1; }
}

e2e_overlay_down() {
    e2e_in "$E2E_NS1" ip link del tun1 2>/dev/null
    e2e_in "$E2E_NS2" ip link del tun2 2>/dev/null
    return 0
}

# A SYN to 10.42.0.2:8080 and one to 10.42.0.2:9090 across the overlay (both refused).
e2e_traffic_overlay() { e2e_connect 10.42.0.2 8080; e2e_connect 10.42.0.2 9090; }

# e2e_tunnel NAME KIND PORT: with the outer filter on the overlay's UDP port and the
# inner one on TCP to 8080, the encapsulated SYN to 8080 shows with the outer tuple
# (UDP to PORT) and the inner one in the TUNNEL text; the SYN to 9090, encapsulated
# the same way, is not shown.
e2e_tunnel() {
    _name=$1 _kind=$2 _port=$3
    shift 3
    if ! e2e_overlay_up "$_kind" "$_port"; then
        e2e_overlay_down
        e2e_skip "$_name" "cannot set up a $_kind overlay on $(uname -r)"
        return
    fi
    e2e_trace "$_name" e2e_traffic_overlay "$@" --output-tunnel \
        --filter-tunnel-pcap-l3 'tcp and dst port 8080' "udp and dst port $_port"
    if [ -z "$E2E_WHY" ] && grep -q '10\.42\.0\.2:9090' "$E2E_LOG"; then
        E2E_WHY="the SYN to 9090 is shown: the tunnel filter did not apply"
    elif [ -z "$E2E_WHY" ] && ! grep -q ' TUNNEL$' "$E2E_LOG"; then
        E2E_WHY="no TUNNEL column in the header"
    fi
    e2e_verdict "$_name" "10\\.0\\.0\\.1:[0-9]+->10\\.0\\.0\\.2:$_port\\(udp\\)" \
        ' 10\.42\.0\.1:[0-9]+->10\.42\.0\.2:8080\(tcp\)$'
    e2e_overlay_down
}

e2e_test_tunnel_vxlan() { e2e_tunnel tunnel-vxlan vxlan 4789; }
e2e_test_tunnel_geneve() { e2e_tunnel tunnel-geneve geneve 6081; }
e2e_test_host_tunnel_vxlan() { e2e_tunnel host-tunnel-vxlan vxlan 4789; }

# Scenario self-check without a tracer: the rules count the generated drops.
e2e_scenario_selftest() {
    _e2e_rc=0
    for _e2e_case in "ip daddr 10.0.0.2 tcp dport 8080|e2e_traffic_v4_8080" \
                     "ip6 daddr fd00::2 tcp dport 8080|e2e_traffic_v6_8080"; do
        e2e_fw_drop "${_e2e_case%%|*}" || { echo "FAIL scenario: cannot install nft rule"; return 1; }
        "${_e2e_case#*|}"
        _e2e_n=$(e2e_fw_count)
        if [ "$_e2e_n" -ge 1 ]; then
            echo "PASS scenario: '${_e2e_case%%|*} drop' counted $_e2e_n packet(s)"
        else
            echo "FAIL scenario: '${_e2e_case%%|*} drop' counted nothing"; _e2e_rc=1
        fi
        e2e_fw_clear
    done
    return "$_e2e_rc"
}

# --- driver ---------------------------------------------------------------------
e2e_main() {
    mkdir -p "$E2E_OUT"
    if [ "${E2E_SCENARIO_ONLY:-0}" = 1 ]; then
        e2e_net_up || { e2e_net_down; echo "FAIL scenario: network setup"; return 1; }
        e2e_scenario_selftest
        _e2e_rc=$?
        e2e_net_down
        return "$_e2e_rc"
    fi
    command -v "$E2E_PWRU" >/dev/null 2>&1 || { echo "FAIL setup: tracer '$E2E_PWRU' not found"; return 1; }
    _e2e_list=$E2E_ALL_TESTS
    if [ "$E2E_TESTS" != all ]; then
        _e2e_list=$E2E_TESTS
        for _e2e_t in $E2E_TESTS; do
            case " $E2E_ALL_TESTS $E2E_HOST_TESTS " in
                *" $_e2e_t "*) ;;
                *) echo "FAIL setup: unknown test '$_e2e_t' (known: $E2E_ALL_TESTS $E2E_HOST_TESTS)"; return 1 ;;
            esac
        done
    fi
    echo "suite: $E2E_PWRU on $(uname -r), $(nproc) CPU(s); tests: $E2E_TESTS"
    if ! command -v bpftool >/dev/null 2>&1; then echo "suite: no bpftool, BPF program/link leak checks disabled"; fi
    if [ -z "$E2E_LAUNCH" ]; then echo "suite: no 'env --default-signal' (coreutils): the tracer starts with SIGINT ignored"; fi
    e2e_net_up || { e2e_net_down; echo "FAIL setup: network scenario"; echo "0 passed, 1 failed, 0 skipped"; return 1; }
    _e2e_t0=$(e2e_now)
    for _e2e_test in $_e2e_list; do
        echo "=== $_e2e_test"
        "e2e_test_$(echo "$_e2e_test" | tr '-' '_')"
    done
    e2e_net_down
    echo "suite time: $(e2e_sub "$_e2e_t0" "$(e2e_now)")s"
    echo "$E2E_PASSED passed, $E2E_FAILED failed, $E2E_SKIPPED skipped"
    [ "$E2E_FAILED" -eq 0 ] && [ "$E2E_PASSED" -gt 0 ]
}

case $0 in
    *scenarios.sh) e2e_main; exit $? ;;
esac
