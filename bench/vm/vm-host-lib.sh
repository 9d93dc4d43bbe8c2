# vm-host-lib.sh - host-side helpers of the per-hit benchmark scripts
# (bench/vm/vm-perhit.sh, bench/vm/vm-tc-perhit.sh). Sourced.
# shellcheck shell=bash

# perhit_medians TAG: reads the guest's output on stdin; for every line
# "TAG round=N tool=T ns_nomatch=NS ns_match=NS ...", prints the median of each
# metric per tool T.
perhit_medians() {
    awk -v tag="$1" '$1 == tag {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        t = f["tool"]; tools[t] = 1; n[t]++; nm[t, n[t]] = f["ns_nomatch"]; m[t, n[t]] = f["ns_match"]
    }
    function med(arr, t, k,   a, i, j, x) {
        for (i = 1; i <= k; i++) a[i] = arr[t, i] + 0
        for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { x = a[j]; a[j] = a[j - 1]; a[j - 1] = x }
        return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    END { for (t in tools) printf "%-12s ns_nomatch=%s ns_match=%s (rounds=%d)\n", t, med(nm, t, n[t]), med(m, t, n[t]), n[t] }'
}
