//! What a command line asks for: trace, list the probe targets, print a compiled filter,
//! or run a filter over a capture file. The CLI edge: errors are `anyhow`.

use std::io::Write;

use anyhow::{anyhow, Context, Result};

use crate::attach;
use crate::cli::Config;
use crate::tracer;

/// Runs the mode the config selects.
pub fn run(config: &Config) -> Result<()> {
    if config.list_funcs {
        return list_funcs(config);
    }
    if config.dump_filter {
        return crate::pcapc::tool::dump_filter(
            &config.pcap_filter(),
            config.l3,
            &mut std::io::stdout().lock(),
        );
    }
    if let Some(path) = &config.filter_check {
        let mut out = std::io::stdout().lock();
        return crate::pcapc::tool::filter_check(path, &config.pcap_filter(), &mut out);
    }
    // A bad filter is reported before anything needs privileges.
    let filter = crate::pcapc::parse(&config.pcap_filter())
        .map_err(|e| anyhow!("invalid pcap filter: {e}"))?;
    // pwru's default is the empty expression: no filter.
    if let Some(expr) = config
        .filter_skb_expr
        .as_deref()
        .filter(|e| !e.trim().is_empty())
    {
        crate::probes::skb_expr::parse(expr).map_err(|e| anyhow!("--filter-skb-expr: {e}"))?;
    }
    require_root()?;
    tracer::trace(config, filter)
}

fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(anyhow!(
            "pwru needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN) to load eBPF programs: run it with sudo"
        ));
    }
    Ok(())
}

/// `--list-funcs`: what would be probed, one `name skb-argument [module]` per line, for the
/// kprobe backends and for the tracepoint backend.
fn list_funcs(config: &Config) -> Result<()> {
    let btf = tracer::open_btf(config)?;
    let mut out = std::io::stdout().lock();
    // One list per kind of target: the kprobe backends share theirs.
    let mut listed: Vec<&str> = Vec::new();
    for backend in attach::all_backends() {
        let label = backend.target_noun();
        if listed.contains(&label) {
            continue;
        }
        listed.push(label);
        let targets = match tracer::select_targets(config, &btf, backend.as_ref()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{e:#}");
                continue;
            }
        };
        for t in &targets {
            let module = t
                .module
                .as_deref()
                .map(|m| format!(" [{m}]"))
                .unwrap_or_default();
            writeln!(out, "{label} {} skb-arg={}{module}", t.name, t.skb_arg)
                .context("writing the list")?;
        }
        eprintln!("{} {label}s", targets.len());
    }
    Ok(())
}
