//! What a command line asks for: trace, list the probe targets, print a compiled filter,
//! or run a filter over a capture file. The edge below the CLI: errors are `anyhow`.

use std::io::Write;

use anyhow::{Context, Result};

use crate::attach::{self, Feature};
use crate::host;
use crate::settings::{BackendChoice, ListSettings, Mode, TraceSettings};
use crate::tracer::{self, KallsymsReader};

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
        Mode::DumpFilter { filter, link } => {
            crate::cli::filter_tools::dump_filter(&filter, link, &mut std::io::stdout().lock())
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
    let filters = tracer::parse_filters(&settings.filter)?;
    if let Some(expr) = &settings.filter.skb_expr {
        crate::probes::skb_expr::parse(expr).context("--filter-skb-expr")?;
    }
    host::require_root()?;
    tracer::trace(settings, filters)
}

/// `--list-funcs`: what the chosen backend (`--backend`, or auto's choice) would probe, one
/// `kind name skb-argument [module]` line per target.
fn list_funcs(list: &ListSettings) -> Result<()> {
    let btf = tracer::open_btf(&list.kernel)?;
    let kernel = tracer::kernel_support(&list.kernel, &btf, &mut KallsymsReader::default())?;
    // A named backend is listed even where this kernel cannot run it (e.g. for the kernel
    // of --kernel-btf), with a note.
    let kind = match list.backend {
        BackendChoice::Named(kind) => {
            if let Err(e) = attach::choose(Some(kind), &kernel) {
                eprintln!("note: {e}; listing what it would probe");
            }
            kind
        }
        BackendChoice::Auto => tracer::choose_backend(BackendChoice::Auto, &kernel)?.kind,
    };
    let backend = attach::backend(kind);
    if list.kernel.wants_modules() {
        let wanted = [Feature::ModuleFunctions];
        for note in attach::check_features(backend.as_ref(), &wanted, None)? {
            tracer::print_note(&note);
        }
    }
    let targets = tracer::select_targets(list.func.as_ref(), &btf, backend.as_ref())?;
    let label = backend.target_noun();
    let mut out = std::io::stdout().lock();
    for t in &targets {
        let module = t
            .module
            .as_deref()
            .map(|m| format!(" [{m}]"))
            .unwrap_or_default();
        writeln!(out, "{label} {} skb-arg={}{module}", t.name, t.skb_arg)
            .context("writing the list")?;
    }
    out.flush().context("writing the list")?;
    eprintln!(
        "{} {label}s for the {} backend",
        targets.len(),
        backend.name()
    );
    Ok(())
}
