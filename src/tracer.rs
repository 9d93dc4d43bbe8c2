//! The tracing run as a sequence: settings → BTF facts → backend and targets → probe
//! programs → load and attach → events → output → detach. Each step is a call into the
//! module that owns it; this file only orders them and reports progress.

mod kallsyms;
mod probe_setup;
mod progress;
mod signals;
mod stages;

use kallsyms::{kallsyms_need, KallsymsUse};
use stages::StageClock;

pub use kallsyms::KallsymsReader;
pub use probe_setup::{parse_filters, PcapFilters};

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokio::sync::Notify;

use crate::attach::{
    self, bpf_helpers, AttachError, AttachSummary, Backend, BackendOptions, Feature, FeatureNote,
    HelperNeeds, KernelSupport, Pick, ProgSync, ProgTracer, Target, TargetNames, TracedKind,
};
use crate::btf::{KernelBtf, SkbLayout};
use crate::events::ring::{self, NoPeriodic, Periodic, RingError};
use crate::host::{self, FprobeSource};
use crate::load::{self, LoadOptions, LoadedObject, ObjectSpec};
use crate::output::{
    IfaceNames, KernelCounts, Ksyms, Names, NetnsNames, Output, OutputOptions, OutputTarget,
    PcapOutput,
};
use crate::probes::{self, Attachment, BpfProgKind, ProbeOptions, UntrackOptions};
use crate::settings::{
    BackendChoice, BackendSettings, FilterSettings, FuncFilter, KernelSettings, OutputSettings,
    PcapTarget, TraceSettings,
};

/// A tracing run (not the `--list-funcs`/filter tools), from resolved settings and the
/// parsed pcap filters ([`parse_filters`]), until a signal or the line limit.
pub fn trace(settings: &TraceSettings, filters: PcapFilters) -> Result<()> {
    let mut clock = StageClock::start(settings.debug);
    // kallsyms takes the kernel a while to print: when the flags or a named backend need
    // it, it is read on another CPU meanwhile; `auto`'s choice may ask for it later.
    let mut kallsyms = KallsymsReader::default();
    let named = match settings.backend.choice {
        BackendChoice::Named(kind) => Some(attach::backend(kind)),
        BackendChoice::Auto => None,
    };
    start_kallsyms(&mut kallsyms, named.as_deref(), settings);
    // aya's loader parses the kernel's BTF when made: now, while little memory is in use,
    // if the run will need it.
    if loads_through_aya(settings) {
        load::prepare_loader();
        clock.mark("aya's loader (it parses the kernel's BTF)");
    }
    // What the kernel is.
    let btf = open_btf(&settings.kernel)?;
    clock.mark("kernel BTF");
    // Tracing BPF programs needs fentry: a trial load says now whether it can work here.
    let traced = traced_kinds(&settings.filter);
    for kind in &traced {
        check_bpf_tracing(kind, settings)?;
    }
    let layout = SkbLayout::resolve(&btf).context("reading sk_buff layout from BTF")?;
    clock.mark("skb layout");

    // Which backend probes what, and whether it can do what the settings ask.
    let kernel = kernel_support(&settings.kernel, &btf, &mut kallsyms)?;
    let pick = choose_backend(settings.backend.choice, &kernel)?;
    let mut backend = attach::backend_with(pick.kind, backend_options(&settings.backend));
    start_kallsyms(&mut kallsyms, Some(backend.as_ref()), settings);
    let wanted = settings.wanted_features();
    for note in attach::check_features(backend.as_ref(), &wanted, pick.passed_over.as_ref())? {
        print_note(&note);
    }
    clock.mark("backend");
    let targets = select_targets(settings.filter.func.as_ref(), &btf, backend.as_ref())?;
    backend.check(&targets)?;
    clock.mark("targets (BTF scan, probeable functions)");
    if let Some(coverage) = backend.coverage(&targets) {
        eprintln!("Probing {coverage}");
    }
    // Read before our own programs load: the helpers of the programs already there.
    let bpf_helpers = match settings.filter.track_bpf_helpers {
        true => bpf_helper_functions(kallsyms.get()?, settings.debug)?,
        false => Vec::new(),
    };

    // The probe programs' input.
    let output_opts = probe_setup::output_options(settings, &btf)?;
    let opts = probe_setup::probe_options(settings, filters, &btf, backend.as_ref(), &output_opts)?;
    clock.mark("probe options (filters compiled)");

    // The output, before anything is attached: an --output-file that cannot be created
    // fails here.
    let ksyms = kallsyms.take()?;
    clock.mark("kallsyms (when needed)");
    let names = output_names(
        &settings.output,
        ksyms,
        &btf,
        backend.target_names(&targets),
    );
    let mut output = open_output(&settings.output, output_opts, names)?;
    clock.mark("output");

    // Load and attach; a signal from here on ends the run.
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Notify::new());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the event loop")?;
    rt.spawn(signals::watch_signals(stop.clone(), wake.clone()));
    let run = Loader {
        settings,
        layout: &layout,
        opts: &opts,
        targets: &targets,
        bpf_helpers: &bpf_helpers,
        btf: &btf,
        stop: &stop,
    };
    let (mut obj, summary) = match run.load_and_attach(backend.as_mut(), &mut clock) {
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
            let attached = run.load_and_attach(backend.as_mut(), &mut clock)?;
            let fallback_names = backend.target_names(&targets);
            let names = output.names_mut();
            names.probe_names = fallback_names.probe_names;
            names.drop_reason_args = fallback_names.drop_reason_args;
            names.multi_locations = fallback_names.multi_locations;
            // Its events carry addresses: kallsyms names them.
            if backend.names_by_address() && names.ksyms.is_empty() {
                names.ksyms = Ksyms::load().context("reading /proc/kallsyms")?;
            }
            attached
        }
        Err(e) => return Err(e),
    };
    if stop.load(Ordering::Relaxed) {
        detach(backend.as_mut(), &mut obj, settings.debug);
        eprintln!("Received signal, exiting program..");
        return Ok(());
    }
    let mut tracers = Vec::new();
    for kind in traced {
        match trace_bpf_programs(kind, &obj, &layout, &opts, settings.debug, &mut output) {
            Ok(tracer) => tracers.push(tracer),
            Err(e) => {
                tracers.iter_mut().for_each(ProgTracer::detach);
                detach(backend.as_mut(), &mut obj, settings.debug);
                return Err(e);
            }
        }
    }
    eprintln!("Attached (ignored {})", summary.ignored);
    if settings.debug {
        eprintln!("start-up took {:.3}s", clock.total());
        if let Some((peak, now)) = host::memory_kib() {
            eprintln!(
                "memory: peak {:.1} MB, now {:.1} MB (the ring buffer's mapping comes next)",
                peak as f64 / 1024.0,
                now as f64 / 1024.0
            );
        }
    }

    // Stack frames in the programs just loaded resolve to their `[bpf]` symbols: kallsyms
    // is read again now.
    if settings.output.stack {
        if let Ok(ksyms) = Ksyms::load() {
            output.names_mut().ksyms = ksyms;
        }
    }

    // Events to output, until a signal, the line limit or a closed output; then detach.
    eprintln!("Listening for events.. (Ctrl-C to stop)");
    let mut poll: Box<dyn Periodic + '_> = match tracers.is_empty() {
        false => Box::new(ProgPoll {
            tracers: &mut tracers,
            layout: &layout,
            opts: &opts,
            debug: settings.debug,
            failed: false,
        }),
        true => Box::new(NoPeriodic),
    };
    let result = listen(
        settings,
        &rt,
        &mut obj,
        &mut output,
        &stop,
        &wake,
        poll.as_mut(),
    );
    drop(poll);
    let mut missed = obj.recursion_misses();
    missed.extend(backend.recursion_misses());
    for tracer in &tracers {
        missed.extend(tracer.recursion_misses());
    }
    output.flush().ok();
    for tracer in &mut tracers {
        eprintln!("Detaching {}...", tracer.kind().progs);
        tracer.detach();
    }
    detach(backend.as_mut(), &mut obj, settings.debug);
    let lost = result?;
    if lost > 0 {
        eprintln!("warning: {lost} events in all were lost: the ring buffer was full");
    }
    let kernel = KernelCounts {
        lost_events: lost,
        missed,
    };
    for line in kernel.missed_hit_lines() {
        eprintln!("warning: {line}");
    }
    output.finish(kernel).map_err(RingError::Io)?;
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

/// `--filter-track-bpf-helpers`: the kernel functions that the BPF programs loaded now
/// (those on a packet's path) call, read from their translated instructions. Says how
/// many (and, with `--debug`, which, with their callers).
fn bpf_helper_functions(kallsyms: &Ksyms, debug: bool) -> Result<Vec<String>> {
    let flag = "--filter-track-bpf-helpers";
    let Some(&base) = kallsyms.addresses_of(bpf_helpers::CALL_BASE_SYMBOL).first() else {
        bail!(
            "{flag}: /proc/kallsyms has no {}, which helper calls are relative to",
            bpf_helpers::CALL_BASE_SYMBOL
        );
    };
    let programs = load::xlated_programs(bpf_helpers::on_packet_path)
        .map_err(AttachError::ListPrograms)
        .context(flag)?;
    let found = bpf_helpers::collect(&programs, base, |addr| {
        kallsyms
            .exact(addr)
            .filter(|s| !s.is_bpf())
            .map(|s| s.name.to_string())
    });
    if found.hidden > 0 && found.functions.is_empty() {
        bail!("{flag}: the kernel hides the helper addresses in the BPF programs' translated instructions (it shows them to a reader who may see kernel addresses: root, with kernel.kptr_restrict below 2)");
    }
    eprintln!(
        "Tracking {} BPF helpers called by {} BPF programs",
        found.functions.len(),
        found.programs
    );
    if debug {
        for (name, callers) in &found.functions {
            let callers: Vec<&str> = callers.iter().map(String::as_str).collect();
            eprintln!("  bpf helper {name} (called by {})", callers.join(", "));
        }
        if found.unresolved > 0 {
            eprintln!(
                "  {} helper calls go to no kernel function start (tail calls)",
                found.unresolved
            );
        }
    }
    Ok(found.names())
}

/// The BPF program kinds the settings trace with fentry/fexit.
fn traced_kinds(f: &FilterSettings) -> Vec<&'static TracedKind> {
    let mut kinds = Vec::new();
    if f.trace_tc {
        kinds.push(&attach::TRACED_TC);
    }
    if f.trace_xdp {
        kinds.push(&attach::TRACED_XDP);
    }
    kinds
}

/// Fails with a one-line error naming the flags when fentry cannot load here (a trial
/// load); `kind`'s own flags (`--filter-xdp-expr`, `--output-xdp-metadata`) are named too.
fn check_bpf_tracing(kind: &TracedKind, settings: &TraceSettings) -> Result<(), AttachError> {
    load::check_tracing().map_err(|why| {
        let mut flags = vec![kind.flag];
        if kind.kind == BpfProgKind::Xdp {
            if settings.filter.xdp_expr.is_some() {
                flags.push("--filter-xdp-expr");
            }
            if settings
                .output
                .xdp_metadata
                .iter()
                .any(|f| !f.trim().is_empty())
            {
                flags.push("--output-xdp-metadata");
            }
        }
        AttachError::BpfTracing {
            flag: flags.join(" and "),
            why,
        }
    })
}

/// `--filter-trace-tc` / `--filter-trace-xdp`: fentry/fexit on every program of `kind`
/// loaded now; their names go to the output. Says how many were traced and skipped
/// (their names with `--debug`).
fn trace_bpf_programs(
    kind: &'static TracedKind,
    obj: &LoadedObject,
    layout: &SkbLayout,
    opts: &ProbeOptions,
    debug: bool,
    output: &mut Output,
) -> Result<ProgTracer> {
    eprintln!("Attaching {}...", kind.progs);
    let maps = obj.raw_maps().map_err(AttachError::Object)?;
    let mut tracer = ProgTracer::new(
        kind,
        maps,
        obj.program_ids(),
        load::VerifierLogLevel::default(),
    );
    let mut build = |a: &Attachment| probes::build(layout, opts, a);
    let sync = tracer.sync(&mut build)?;
    report_prog_sync(kind, &sync, debug);
    output.names_mut().probe_names.extend(sync.added);
    eprintln!(
        "Tracing {} {} programs ({} skipped)",
        tracer.traced(),
        kind.noun,
        tracer.untraceable()
    );
    Ok(tracer)
}

/// `--filter-trace-tc` / `--filter-trace-xdp` while events are read: programs loaded after
/// the start are traced too (Cilium reloads its programs). A traced program stays loaded
/// until we exit, even once detached from its hook: the kernel holds the target of a
/// tracing link.
struct ProgPoll<'a> {
    tracers: &'a mut [ProgTracer],
    layout: &'a SkbLayout,
    opts: &'a ProbeOptions,
    debug: bool,
    /// A failure was reported (once).
    failed: bool,
}

impl Periodic for ProgPoll<'_> {
    fn tick(&mut self) -> Vec<(u64, String)> {
        let (layout, opts) = (self.layout, self.opts);
        let mut build = |a: &Attachment| probes::build(layout, opts, a);
        let mut added = Vec::new();
        for tracer in self.tracers.iter_mut() {
            let kind = tracer.kind();
            match tracer.sync(&mut build) {
                Ok(sync) => {
                    report_prog_sync(kind, &sync, self.debug);
                    if !self.debug {
                        for (_, name) in &sync.added {
                            eprintln!(
                                "Tracing {} program {name} (loaded after the start)",
                                kind.noun
                            );
                        }
                    }
                    added.extend(sync.added);
                }
                Err(e) => {
                    if !self.failed {
                        let e = anyhow::Error::from(e);
                        eprintln!(
                            "pwru: warning: following the loaded {} programs: {e:#}",
                            kind.noun
                        );
                        self.failed = true;
                    }
                }
            }
        }
        added
    }
}

/// What a sync of the traced programs of `kind` did, beyond the programs it added.
fn report_prog_sync(kind: &TracedKind, sync: &ProgSync, debug: bool) {
    let noun = kind.noun;
    if !sync.no_btf.is_empty() {
        eprintln!(
            "note: {} {noun} programs have no BTF and cannot be traced with fentry",
            sync.no_btf.len()
        );
        if debug {
            eprintln!("  without BTF: {}", sync.no_btf.join(", "));
        }
    }
    for (name, why) in &sync.refused {
        let first = why.lines().next().unwrap_or("");
        eprintln!("pwru: warning: cannot trace {noun} program {name}: {first}");
    }
    if debug {
        for (_, name) in &sync.added {
            eprintln!("tracing {noun} program {name}");
        }
        for name in &sync.gone {
            eprintln!("{noun} program {name} was unloaded");
        }
    }
}

/// Announces readiness (`--ready-file`), prints the header, and runs the event loop;
/// returns the number of events lost. Every error comes back here, with the probes still
/// attached: the caller detaches them.
fn listen(
    settings: &TraceSettings,
    rt: &tokio::runtime::Runtime,
    obj: &mut LoadedObject,
    output: &mut Output,
    stop: &AtomicBool,
    wake: &Notify,
    periodic: &mut dyn Periodic,
) -> Result<u64> {
    if let Some(path) = &settings.ready_file {
        fs::write(path, b"")
            .with_context(|| format!("creating --ready-file {}", path.display()))?;
    }
    // Out at once, so that a closed stdout shows before the first event.
    output
        .print_header()
        .and_then(|()| output.flush())
        .map_err(RingError::Io)?;
    Ok(rt.block_on(ring::event_loop(obj, output, stop, wake, periodic))?)
}

/// Whether `e` comes from writing to a closed pipe (`pwru … | head` once head exited):
/// the reader is gone, the run ends normally.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let io = match cause.downcast_ref::<RingError>() {
            Some(RingError::Io(io)) => Some(io),
            _ => cause.downcast_ref::<std::io::Error>(),
        };
        io.is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
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
    // The errors name the file or module; the one for a kernel without BTF says what to do.
    btf.context("opening kernel BTF")
}

/// A feature note: a warning when a flag does not do what it says.
pub fn print_note(note: &FeatureNote) {
    if note.is_warning() {
        eprintln!("pwru: warning: {note}");
    } else {
        eprintln!("note: {note}");
    }
}

/// Starts reading kallsyms when `backend` (`None`: not chosen yet) or the flags need it.
fn start_kallsyms(kallsyms: &mut KallsymsReader, backend: Option<&dyn Backend>, s: &TraceSettings) {
    let used = KallsymsUse {
        by_address: backend.is_some_and(|b| b.names_by_address()),
        other_btf: s.kernel.btf.is_some(),
    };
    if let Some(why) = kallsyms_need(used, &s.filter, &s.output) {
        if s.debug && !kallsyms.started() {
            eprintln!("reading /proc/kallsyms: {why}");
        }
        kallsyms.start();
    }
}

/// What the running kernel offers the backends: fprobe from its BTF, or from kallsyms
/// when the BTF may be another kernel's (`--kernel-btf`).
pub fn kernel_support(
    kernel: &KernelSettings,
    btf: &KernelBtf,
    kallsyms: &mut KallsymsReader,
) -> Result<KernelSupport> {
    Ok(host::kernel_support(match kernel.btf {
        None => FprobeSource::Btf(btf),
        Some(_) => FprobeSource::Kallsyms(kallsyms.get()?),
    }))
}

/// Whether this run will load a program through aya's loader, guessed before the kernel's
/// BTF is read (the loader is best made first, see [`load::prepare_loader`]): a helper
/// program does, a backend's programs may. `auto`'s choice is guessed from kprobes and
/// a probe for kprobe_multi links instead of BTF. A wrong guess costs a BTF parse made
/// for nothing or made later (higher peak memory), never a failure.
fn loads_through_aya(settings: &TraceSettings) -> bool {
    if settings.asks_for_helper_programs() {
        return true;
    }
    let kind = match settings.backend.choice {
        BackendChoice::Named(kind) => kind,
        BackendChoice::Auto => {
            let kprobes = attach::kprobes_available();
            let guess = KernelSupport {
                kprobes,
                // (no probe load where kprobe-multi cannot be picked anyway)
                fprobe: kprobes && load::kprobe_multi_links_likely().unwrap_or(false),
            };
            match attach::choose(None, &guess) {
                Ok(pick) => pick.kind,
                Err(_) => return true,
            }
        }
    };
    attach::backend(kind).loads_through_aya()
}

/// `--backend`, or the best backend this kernel runs; `auto` says which and why.
pub fn choose_backend(choice: BackendChoice, kernel: &KernelSupport) -> Result<Pick> {
    let named = match choice {
        BackendChoice::Auto => None,
        BackendChoice::Named(kind) => Some(kind),
    };
    let pick = attach::choose(named, kernel)?;
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
                "no skb {} matches --filter-func '{}'; see `pwru --list-funcs`",
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
    /// `--filter-track-bpf-helpers`: probed as non-skb functions.
    bpf_helpers: &'a [String],
    btf: &'a KernelBtf,
    stop: &'a AtomicBool,
}

impl Loader<'_> {
    /// Builds the backend's programs and the helper programs, loads them with their maps,
    /// and attaches them; on failure nothing stays attached.
    fn load_and_attach(
        &self,
        backend: &mut dyn Backend,
        clock: &mut StageClock,
    ) -> Result<(LoadedObject, AttachSummary)> {
        let mut build = |a: &Attachment| probes::build(self.layout, self.opts, a);
        let mut programs = backend.programs(self.targets, &mut build)?;
        let (non_skb, skipped) =
            probe_setup::non_skb_functions(&self.settings.filter, self.bpf_helpers, self.targets);
        let (map_funcs, non_skb) = match self.settings.output.bpfmap {
            true => probe_setup::map_functions(self.btf, non_skb)?,
            false => (Vec::new(), non_skb),
        };
        let needs = HelperNeeds {
            arch: &self.opts.arch,
            untrack: UntrackOptions {
                track_skb: self.opts.track_skb,
                track_stackid: self.opts.track_stackid,
                clone_parents: self.settings.records_clone_parents(),
            },
            non_skb: &non_skb,
            map_funcs: &map_funcs,
        };
        let helpers = attach::helper_programs(backend, &needs, &mut build)?;
        programs.extend(helpers.iter().map(|x| x.spec.clone()));
        let follows_clones = self.opts.track_skb && backend.supports(Feature::CloneFollowing);
        let spec = ObjectSpec {
            maps: probe_setup::map_specs(
                self.opts,
                follows_clones,
                &traced_kinds(&self.settings.filter)
                    .iter()
                    .map(|k| k.kind)
                    .collect::<Vec<_>>(),
            ),
            programs,
        };
        clock.mark("programs generated");
        let mut obj = load::load(&spec, &LoadOptions::default()).map_err(AttachError::Load)?;
        clock.mark("programs loaded (the verifier)");
        if let (true, Some(why)) = (self.settings.debug, obj.btf_fallback()) {
            let first = why.lines().next().unwrap_or("");
            eprintln!(
                "our programs were loaded without their BTF (loading with it failed: {first})"
            );
        }

        eprintln!("Attaching {} (via {})...", backend.noun(), backend.name());
        let bar = progress::bar(self.targets.len() as u64, "Attaching");
        let attached = backend.attach(&mut obj, self.targets, &bar, self.stop);
        bar.finish();
        clock.mark("attached");
        if self.settings.debug {
            for (target, why) in backend.skipped() {
                eprintln!("skipped {target}: {why}");
            }
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
            "Detaching {} {} in the background (pid {}); they are gone when it exits.",
            h.count,
            backend.noun(),
            h.pid
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
        multi_locations: targets.multi_locations,
        ..Names::default()
    };
    if out.meta || out.pcap.is_some() {
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

/// The output the settings ask for (with `--output-pcap`'s file).
fn open_output(out: &OutputSettings, opts: OutputOptions, names: Names) -> Result<Output> {
    let pcap = match &out.pcap {
        Some(p) => {
            let path = match &p.target {
                PcapTarget::Stdout => None,
                PcapTarget::File(path) => Some(path.as_path()),
            };
            Some(PcapOutput::create(path, &opts)?)
        }
        None => None,
    };
    let mut output =
        Output::new(opts, names, OutputTarget::from_settings(out)).context("opening the output")?;
    if let Some(pcap) = pcap {
        output.set_pcap(pcap);
    }
    Ok(output)
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
