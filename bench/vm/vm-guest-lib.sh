# vm-guest-lib.sh - the benchmark scenario and BPF statistics shared by the
# guest scripts (bench/vm/vm-bench-guest.sh, bench/vm/vm-perhit-guest.sh). Sourced
# from /files in the VM; needs bash and $PACKETS.
# shellcheck shell=bash

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# veth between ns1 (10.0.0.1) and ns2 (10.0.0.2); ns2 drops UDP to 5001/5002.
setup() {
    ip netns add ns1 && ip netns add ns2 || return 1
    ip link add veth1 netns ns1 type veth peer name veth2 netns ns2 || return 1
    in_ns ns1 ip addr add 10.0.0.1/24 dev veth1
    in_ns ns2 ip addr add 10.0.0.2/24 dev veth2
    in_ns ns1 ip link set veth1 up
    in_ns ns2 ip link set veth2 up
    in_ns ns1 ip link set lo up
    in_ns ns2 ip link set lo up
    in_ns ns2 nft -f - <<'NFT' || return 1
table inet bench {
    chain input {
        type filter hook input priority filter; policy accept;
        udp dport { 5001, 5002 } counter drop
    }
}
NFT
    in_ns ns1 ping -c 1 -W 5 10.0.0.2 >/dev/null || return 1
}

# send_udp PORT: $PACKETS one-byte UDP datagrams from ns1 to 10.0.0.2:PORT.
send_udp() {
    # shellcheck disable=SC2016  # expanded by the inner bash
    in_ns ns1 bash -c 'exec 3>/dev/udp/10.0.0.2/'"$1"'; for ((i = 0; i < '"$PACKETS"'; i++)); do printf x >&3; done' 2>/dev/null
}

# BPF program ids held by process $1.
prog_ids() {
    grep -h '^prog_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{ print $2 }' | sort -un
}

# "run_time_ns run_cnt" summed over the programs listed in file $1.
bpf_stats() {
    local id rt=0 rc=0 line
    while read -r id; do
        line=$(bpftool prog show id "$id" 2>/dev/null | head -n 1)
        [[ $line =~ run_time_ns\ ([0-9]+)\ run_cnt\ ([0-9]+) ]] || continue
        rt=$((rt + BASH_REMATCH[1])) rc=$((rc + BASH_REMATCH[2]))
    done <"$1"
    echo "$rt $rc"
}

# per_hit NS COUNT: nanoseconds per run, or n/a.
per_hit() { awk -v t="$1" -v c="$2" 'BEGIN { if (c > 0) printf "%.0f", t / c; else print "n/a" }'; }
