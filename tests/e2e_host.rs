//! End-to-end test of the `pwru` binary on this host's own kernel (no kprobes:
//! tracepoint backend) through `tests/e2e/host-suite.sh`; runs only with `PWRU_E2E=1`.

mod e2e_common;

use e2e_common::{e2e_enabled, pwru_binary, repo_path, run_script, ScriptOutcome};

/// Drop of TCP to 10.0.0.2:8080 (IPv4 and IPv6) with its NETFILTER_DROP reason,
/// a filter that must match nothing, `--filter-skb-expr`/`--output-skb-metadata`, and a
/// VXLAN overlay traced with `--filter-tunnel-pcap-l3` and `--output-tunnel`.
#[test]
fn host_suite_reports_netfilter_drops() {
    if let Err(reason) = e2e_enabled() {
        eprintln!("skipped: {reason}");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the host e2e suite needs root (network namespaces, BPF)");
        return;
    }
    let script = repo_path("tests/e2e/host-suite.sh");
    match run_script(&script, &[pwru_binary().as_os_str()], &[]) {
        ScriptOutcome::Passed => {}
        ScriptOutcome::Skipped(reason) => eprintln!("skipped: {reason}"),
        ScriptOutcome::Failed(summary) => panic!("host e2e suite failed: {summary}"),
    }
}
