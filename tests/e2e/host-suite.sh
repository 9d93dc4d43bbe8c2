#!/usr/bin/env bash
# host-suite.sh - e2e tests of a pwru binary on THIS host's kernel (as root),
# for hosts without kprobes where the tracer uses its tracepoint backend.
#
# Usage: host-suite.sh PWRU_BINARY
#        host-suite.sh --scenario-only     (no tracer: check the scenario itself)
#
# Two network namespaces created for this run (unique names) joined by a veth
# pair, 10.0.0.1/fd00::1 <-> 10.0.0.2/fd00::2, an nftables rule in the first
# one's output hook dropping TCP to port 8080, one connection attempt:
#   host-basic-ipv4  a line with 10.0.0.2:8080 and the NETFILTER_DROP reason
#   host-basic-ipv6  the same with [fd00::2]:8080
#   host-nomatch     a filter that matches none of the traffic: no event
#   host-skb-expr    --filter-skb-expr plus --output-skb-metadata values
#   host-skb-expr-nomatch  an skb expression no packet satisfies: no event
#   host-output-skb  --output-skb(-shared-info): struct dumps after the event line
#   host-track-by-stackid  --filter-track-skb + --filter-track-skb-by-stackid on tracepoints
#   host-legacy-flags  the original's first flags in Go's spelling (-filter-dst-ip ...)
#   host-summary     --summary: drops by reason with the firewall's count, and totals
#   host-summary-json  the same as one final JSON object (--output-json)
#   host-journey     --output-journey: the dropped SYN as one block ending in its reason
#   host-pcap        --output-pcap: a ping and the dropped SYN as pcap-ng that tcpdump,
#                    tshark and --filter-check read (packets = events, the SYNs, the
#                    function and drop reason in the comments)
#   host-tunnel-vxlan  a VXLAN overlay over the veth pair: --filter-tunnel-pcap-l3 and
#                    --output-tunnel show the encapsulated SYN to 8080 with both
#                    tuples, not the one to 9090
# Each run also checks that the BPF objects the tracer held are gone after
# its exit (system-wide counters are not compared: other processes on the host
# may load BPF programs). Namespaces are removed on exit (trap).
#
# Output: PASS/FAIL/SKIP/TIME lines and "N passed, M failed, K skipped"; exit
# status 0 when all passed, 1 on failures, 2 on usage errors, 77 when the host
# cannot run it (not root, tools missing).
#
# Environment: E2E_TESTS (subset of the three names), E2E_READY_TIMEOUT (120),
# E2E_EXIT_TIMEOUT (60), E2E_EXTRA_ARGS, E2E_VERBOSE, E2E_OUT (log directory,
# default a temporary directory that is removed).

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }
skip() { echo "SKIP host-suite: $*"; exit 77; }

scenario_only=0
case ${1:-} in
    -h|--help) usage; exit 0 ;;
    --scenario-only) scenario_only=1 ;;
    '') usage >&2; exit 2 ;;
    *) pwru=$(realpath "$1")
       [[ -f $pwru && -x $pwru ]] || { echo "error: $1 is not an executable file" >&2; exit 2; } ;;
esac

[[ $(id -u) -eq 0 ]] || skip "needs root"
for tool in ip nft busybox; do
    command -v "$tool" >/dev/null || skip "$tool not found"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/pwru-host-e2e.XXXXXX")
ns1=pwru-e2e-$$-a ns2=pwru-e2e-$$-b
keep_logs=${E2E_OUT:+1}
# shellcheck disable=SC2317  # called by the trap
cleanup() {
    ip netns del "$ns1" 2>/dev/null || true
    ip netns del "$ns2" 2>/dev/null || true
    if [[ -z $keep_logs ]]; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The scenarios use busybox nc semantics (nc -w SECS HOST PORT, nc -l -p PORT).
mkdir -p "$work/bin"
for applet in nc timeout; do ln -s "$(command -v busybox)" "$work/bin/$applet"; done
if ! command -v ping >/dev/null; then ln -s "$(command -v busybox)" "$work/bin/ping"; fi

export PATH=$work/bin:$PATH
export E2E_NS1=$ns1 E2E_NS2=$ns2 E2E_GLOBAL_LEAK_CHECK=0
export E2E_OUT=${E2E_OUT:-$work/out}
export E2E_TESTS=${E2E_TESTS:-host-basic-ipv4 host-basic-ipv6 host-nomatch host-skb-expr host-skb-expr-nomatch host-output-skb host-track-by-stackid host-legacy-flags host-summary host-summary-json host-journey host-tunnel-vxlan host-pcap}
export E2E_READY_TIMEOUT=${E2E_READY_TIMEOUT:-120} E2E_EXIT_TIMEOUT=${E2E_EXIT_TIMEOUT:-60}
if (( scenario_only )); then
    export E2E_SCENARIO_ONLY=1
else
    export E2E_PWRU=$pwru
fi

rc=0
sh "$HERE/scenarios.sh" || rc=$?
exit "$rc"
