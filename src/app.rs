//! What a command line asks for: trace, list the probe targets, print a compiled filter,
//! or run a filter over a capture file. The edge below the CLI: errors are `anyhow`.

use std::io::Write;

use anyhow::{Context, Result};

use crate::attach;
use crate::host;
use crate::settings::{ListSettings, Mode, TraceSettings};
use crate::tracer;

/// Runs the mode the settings select. A closed stdout (`pwru --list-funcs | head`) ends the
/// run normally: whoever read the output has what they wanted.
pub fn run(mode: Mode) -> Result<()> {
    match run_mode(mode) {
        Err(e) if tracer::is_broken_pipe(&e) => Ok(()),
        result => result,
    }
}

fn run_mode(mode: Mode) -> Result<()> {
    match mode {
        Mode::ListFuncs(list) => list_funcs(&list),
        Mode::DumpFilter { filter, l3 } => {
            crate::cli::filter_tools::dump_filter(&filter, l3, &mut std::io::stdout().lock())
        }
        Mode::FilterCheck { capture, filter } => {
            let mut out = std::io::stdout().lock();
            crate::cli::filter_tools::filter_check(&capture, &filter, &mut out)
        }
        Mode::Trace(settings) => trace(&settings),
    }
}

/// A bad filter is reported before anything needs privileges.
fn trace(settings: &TraceSettings) -> Result<()> {
    let filter = crate::pcapc::parse(&settings.filter.pcap).context("invalid pcap filter")?;
    if let Some(expr) = &settings.filter.skb_expr {
        crate::probes::skb_expr::parse(expr).context("--filter-skb-expr")?;
    }
    host::require_root()?;
    tracer::trace(settings, filter)
}

/// `--list-funcs`: what would be probed, one `name skb-argument [module]` per line, for the
/// kprobe backends and for the tracepoint backend.
fn list_funcs(list: &ListSettings) -> Result<()> {
    let btf = tracer::open_btf(&list.kernel)?;
    let mut out = std::io::stdout().lock();
    // One list per kind of target: the kprobe backends share theirs.
    let mut listed: Vec<&str> = Vec::new();
    for backend in attach::all_backends() {
        let label = backend.target_noun();
        if listed.contains(&label) {
            continue;
        }
        listed.push(label);
        let targets = match tracer::select_targets(list.func.as_ref(), &btf, backend.as_ref()) {
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
