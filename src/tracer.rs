//! The tracing run as a sequence: settings → BTF facts → backend and targets → probe
//! programs → load and attach → events → output → detach. Each step is a call into the
//! module that owns it; this file only orders them and reports progress.

mod probe_setup;
mod progress;

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokio::sync::Notify;

use crate::attach::{
    self, AttachError, AttachSummary, Backend, BackendOptions, Feature, HelperNeeds, Pick, Target,
    TargetNames,
};
use crate::btf::{KernelBtf, SkbLayout};
use crate::events::ring;
use crate::host;
use crate::load::{self, LoadOptions, LoadedObject, ObjectSpec};
use crate::output::{IfaceNames, Ksyms, Names, NetnsNames, Output, OutputOptions, OutputTarget};
use crate::pcapc::ast::Expr;
use crate::probes::{self, Attachment, ProbeOptions, UntrackOptions};
use crate::settings::{
    BackendChoice, BackendSettings, FuncFilter, KernelSettings, OutputSettings, TraceSettings,
};

/// A tracing run (not the `--list-funcs`/filter tools), from resolved settings and the
/// parsed pcap filter (`None`: every packet), until a signal or the line limit.
pub fn trace(settings: &TraceSettings, filter: Option<Expr>) -> Result<()> {
    let started = Instant::now();
    // What the kernel is.
    let btf = open_btf(&settings.kernel)?;
    let layout = SkbLayout::resolve(&btf).context("reading sk_buff layout from BTF")?;
    let kallsyms = Ksyms::load().context("reading /proc/kallsyms")?;

    // Which backend probes what, and whether it can do what the settings ask.
    let pick = choose_backend(&settings.backend, &kallsyms)?;
    let mut backend = attach::backend_with(pick.kind, backend_options(&settings.backend));
    let wanted = settings.wanted_features();
    for note in attach::check_features(backend.as_ref(), &wanted, pick.passed_over.as_ref())? {
        eprintln!("note: {note}");
    }
    let targets = select_targets(settings.filter.func.as_ref(), &btf, backend.as_ref())?;

    // The probe programs' input.
    let output_opts = probe_setup::output_options(&settings.output, &btf)?;
    let opts = probe_setup::probe_options(settings, filter, &btf, backend.as_ref(), &output_opts)?;

    // Load and attach; a signal from here on ends the run.
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Notify::new());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the event loop")?;
    rt.spawn(watch_signals(stop.clone(), wake.clone()));
    let run = Loader {
        settings,
        layout: &layout,
        opts: &opts,
        targets: &targets,
        stop: &stop,
    };
    let (mut obj, summary) = match run.load_and_attach(backend.as_mut()) {
        Ok(v) => v,
        Err(e) if pick.auto_reason.is_some() && is_link_kind_refused(&e) => {
            let Some(fallback) = backend.fallback() else {
                return Err(e);
            };
            let refused = backend.name();
            backend = attach::backend_with(fallback, backend_options(&settings.backend));
            eprintln!(
                "{refused} links are refused by this kernel; falling back to {}",
                backend.noun()
            );
            run.load_and_attach(backend.as_mut())?
        }
        Err(e) => return Err(e),
    };
    if stop.load(Ordering::Relaxed) {
        detach(backend.as_mut(), &mut obj, settings.debug);
        eprintln!("Received signal, exiting program..");
        return Ok(());
    }
    eprintln!("Attached (ignored {})", summary.ignored);
    if settings.debug {
        eprintln!("start-up took {:.3}s", started.elapsed().as_secs_f64());
    }

    // Events to output, until a signal or the line limit; then detach.
    let names = output_names(
        &settings.output,
        kallsyms,
        &btf,
        backend.target_names(&targets),
    );
    let mut output = open_output(&settings.output, output_opts, names)?;
    eprintln!("Listening for events..");
    if let Some(path) = &settings.ready_file {
        fs::write(path, b"")
            .with_context(|| format!("creating --ready-file {}", path.display()))?;
    }
    output.print_header()?;
    let result = rt.block_on(ring::event_loop(&mut obj, &mut output, &stop, &wake));
    output.flush().ok();
    detach(backend.as_mut(), &mut obj, settings.debug);
    let lost = result?;
    if lost > 0 {
        eprintln!("warning: {lost} events in all were lost: the ring buffer was full");
    }
    if output.limit_reached() {
        eprintln!(
            "Printed events, exiting program.. (count={})",
            output.printed()
        );
    } else {
        eprintln!("Received signal, exiting program..");
    }
    Ok(())
}

/// Opens `--kernel-btf` or the running kernel's BTF, plus `--kmods`/`--all-kmods` modules.
pub fn open_btf(kernel: &KernelSettings) -> Result<KernelBtf> {
    let btf = match &kernel.btf {
        Some(path) => KernelBtf::open(
            path,
            std::path::Path::new(crate::btf::SYS_BTF_DIR),
            &kernel.kmods,
        ),
        None => KernelBtf::open_system(&kernel.kmods),
    };
    btf.context(
        "opening kernel BTF (pass --kernel-btf FILE on kernels without /sys/kernel/btf/vmlinux)",
    )
}

/// `--backend`, or the best backend this kernel runs; `auto` says which and why.
fn choose_backend(backend: &BackendSettings, kallsyms: &Ksyms) -> Result<Pick> {
    let named = match backend.choice {
        BackendChoice::Auto => None,
        BackendChoice::Named(kind) => Some(kind),
    };
    let pick = attach::choose(named, &host::kernel_support(kallsyms))?;
    if let Some(why) = pick.auto_reason {
        eprintln!("Backend: {} (auto: {why})", pick.kind.name());
    }
    Ok(pick)
}

fn backend_options(backend: &BackendSettings) -> BackendOptions {
    BackendOptions {
        kprobe_batch: backend.kprobe_batch,
        detach_wait: backend.detach_wait,
        ..BackendOptions::default()
    }
}

/// The functions or tracepoints `backend` probes, narrowed by `--filter-func`.
pub fn select_targets(
    func: Option<&FuncFilter>,
    btf: &KernelBtf,
    backend: &dyn Backend,
) -> Result<Vec<Target>> {
    let keep = |name: &str| func.is_none_or(|f| f.is_match(name));
    let targets = backend.targets(btf, &keep)?;
    if targets.is_empty() {
        match func {
            Some(f) => bail!(
                "no skb {} matches --filter-func {:?}; see `pwru --list-funcs`",
                backend.target_noun(),
                f.pattern
            ),
            None => bail!("cannot find a kernel function or tracepoint to probe"),
        }
    }
    Ok(targets)
}

/// Whether the kernel refused the backend's kind of link (the typed error, kept to here).
fn is_link_kind_refused(e: &anyhow::Error) -> bool {
    e.downcast_ref::<AttachError>()
        .is_some_and(AttachError::is_link_kind_refused)
}

/// What loading and attaching a backend's programs needs.
struct Loader<'a> {
    settings: &'a TraceSettings,
    layout: &'a SkbLayout,
    opts: &'a ProbeOptions,
    targets: &'a [Target],
    stop: &'a AtomicBool,
}

impl Loader<'_> {
    /// Builds the backend's programs and the helper programs, loads them with their maps,
    /// and attaches them; on failure nothing stays attached.
    fn load_and_attach(&self, backend: &mut dyn Backend) -> Result<(LoadedObject, AttachSummary)> {
        let mut build = |a: &Attachment| probes::build(self.layout, self.opts, a);
        let mut programs = backend.programs(self.targets, &mut build)?;
        let (non_skb, skipped) =
            probe_setup::non_skb_functions(&self.settings.filter, self.targets);
        let needs = HelperNeeds {
            arch: &self.opts.arch,
            untrack: UntrackOptions {
                track_skb: self.opts.track_skb,
                track_stackid: self.opts.track_stackid,
            },
            non_skb: &non_skb,
        };
        let helpers = attach::helper_programs(backend, &needs, &mut build)?;
        programs.extend(helpers.iter().map(|x| x.spec.clone()));
        let follows_clones = self.opts.track_skb && backend.supports(Feature::CloneFollowing);
        let spec = ObjectSpec {
            maps: probe_setup::map_specs(self.opts, follows_clones),
            programs,
        };
        let mut obj = load::load(&spec, &LoadOptions::default()).map_err(AttachError::Load)?;

        eprintln!("Attaching {} (via {})...", backend.noun(), backend.name());
        let bar = progress::bar(self.targets.len() as u64, "Attaching");
        let attach_started = Instant::now();
        let attached = backend.attach(&mut obj, self.targets, &bar, self.stop);
        bar.finish();
        if self.settings.debug {
            eprintln!(
                "attaching took {:.3}s",
                attach_started.elapsed().as_secs_f64()
            );
        }
        let summary = match attached {
            Ok(s) => s,
            Err(AttachError::Interrupted) => return Ok((obj, AttachSummary::default())),
            Err(e) => {
                detach(backend, &mut obj, self.settings.debug);
                return Err(e.into());
            }
        };
        if summary.attached == 0 {
            detach(backend, &mut obj, self.settings.debug);
            return Err(AttachError::NothingAttached(summary.ignored).into());
        }
        let helpers = attach::attach_helpers(&mut obj, &helpers);
        for w in &helpers.warnings {
            eprintln!("warning: {w}");
        }
        let summary = AttachSummary {
            attached: summary.attached + helpers.attached,
            ignored: summary.ignored + helpers.ignored + skipped,
        };
        Ok((obj, summary))
    }
}

/// Detaches everything, handing slow probes to a background process when the backend's
/// policy says so.
fn detach(backend: &mut dyn Backend, obj: &mut LoadedObject, debug: bool) {
    let started = Instant::now();
    match backend.hand_off() {
        Some(Ok(h)) => eprintln!(
            "Detaching {} kprobes in the background (pid {}); they are gone when it exits.",
            h.count, h.pid
        ),
        Some(Err(e)) => {
            eprintln!("pwru: warning: detaching in the foreground: {e}");
            eprintln!("Detaching {}...", backend.noun());
        }
        None => eprintln!("Detaching {}...", backend.noun()),
    }
    let bar = progress::bar(0, "Detaching");
    backend.detach(obj, &bar);
    bar.finish();
    if debug {
        eprintln!("detaching took {:.3}s", started.elapsed().as_secs_f64());
    }
}

/// The name sources of the output: kernel symbols, drop reasons from BTF, the backend's
/// probe names, and the interfaces and netns names the columns need.
fn output_names(
    out: &OutputSettings,
    ksyms: Ksyms,
    btf: &KernelBtf,
    targets: TargetNames,
) -> Names {
    let mut names = Names {
        ksyms,
        drop_reasons: btf
            .enum_values("skb_drop_reason")
            .unwrap_or_default()
            .into_iter()
            .map(|(v, n)| (v as u64, n))
            .collect(),
        probe_names: targets.probe_names,
        drop_reason_args: targets.drop_reason_args,
        ..Names::default()
    };
    if out.meta {
        names.ifaces = IfaceNames::scan().0;
    }
    if out.netns_names.is_some() {
        let (netns, warnings) = NetnsNames::scan();
        warnings
            .iter()
            .for_each(|w| eprintln!("pwru: warning: {w}"));
        names.netns = netns;
    }
    names
}

/// The output the settings ask for.
fn open_output(out: &OutputSettings, opts: OutputOptions, names: Names) -> Result<Output> {
    Output::new(opts, names, OutputTarget::from_settings(out)).context("opening the output")
}

async fn watch_signals(stop: Arc<AtomicBool>, wake: Arc<Notify>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    stop.store(true, Ordering::Relaxed);
    wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::ObjectError;

    #[test]
    fn the_multi_link_refusal_stays_typed_to_the_fallback() {
        let refused = anyhow::Error::from(AttachError::from(ObjectError::KprobeMultiUnsupported {
            program: "kpm_skb_1".into(),
        }));
        assert!(is_link_kind_refused(&refused));
        assert!(!is_link_kind_refused(&anyhow::Error::from(
            AttachError::NothingAttached(1)
        )));
    }
}
