//! The tracer run: config → BTF facts → filter → probe programs → load → attach →
//! ring-buffer events → output, and the teardown that leaves nothing attached.

use std::fs;
use std::io::IsTerminal;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf, StackTraceMap};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use crate::attach::{
    self, AttachError, Backend, BackendKind, Feature, HelperNeeds, KernelSupport, Pick, Target,
};
use crate::btf::{KernelBtf, Kmods, SkbLayout};
use crate::cli::{Backend as BackendChoice, Config, NetnsSpec};
use crate::events::{self, EventSink, Flow, LostEvents};
use crate::load::{self, LoadOptions, LoadedObject, MapKind, MapSpec, ObjectSpec};
use crate::output::{
    IfaceNames, Ksyms, MetadataField, Names, NetnsNames, Output, OutputOptions, OutputTarget,
};
use crate::pcapc::ast::Expr;
use crate::probes::skb_dump::SkbDump;
use crate::probes::{
    self, maps, skb_expr, Attachment, ProbeOptions, StackTracking, UntrackOptions,
};

/// Entry point of a tracing run (not the `--list-funcs`/filter tools).
/// `filter` is the parsed pcap filter (`None`: every packet).
pub fn trace(config: &Config, filter: Option<Expr>) -> Result<()> {
    let started = Instant::now();
    let btf = open_btf(config)?;
    let layout = SkbLayout::resolve(&btf).context("reading sk_buff layout from BTF")?;
    let kallsyms = Ksyms::load().context("reading /proc/kallsyms")?;

    let pick = choose_backend(config, &kallsyms)?;
    let backend_opts = backend_options(config);
    let mut backend = attach::backend_with(pick.kind, backend_opts.clone());
    for note in attach::check_features(
        backend.as_ref(),
        &wanted_features(config),
        pick.passed_over.as_ref(),
    )? {
        eprintln!("note: {note}");
    }
    let targets = select_targets(config, &btf, backend.as_ref())?;
    let opts = ProbeOptions {
        filter,
        mark: config
            .filter_mark
            .is_active()
            .then_some((config.filter_mark.mark, config.filter_mark.mask)),
        netns: netns_filter(config)?,
        ifindex: ifindex_filter(config)?,
        output_meta: config.output_meta || config.output_netns_names,
        output_tuple: config.output_tuple,
        output_stack: config.output_stack,
        output_caller: config.output_caller,
        output_skb_cb: config.shows_cb(),
        track_skb: config.filter_track_skb,
        track_stackid: config
            .filter_track_skb_by_stackid
            .then(|| stack_tracking(&btf)),
        has_get_func_ip: backend.supports(Feature::FuncIp)
            && load::func_ip_available().unwrap_or(false),
        skb_expr: match config
            .filter_skb_expr
            .as_deref()
            .filter(|e| !e.trim().is_empty())
        {
            Some(text) => Some(skb_expr::compile_filter(&btf, text).context("--filter-skb-expr")?),
            None => None,
        },
        skb_metadata: skb_expr::compile_metadata(&btf, &config.output_skb_metadata)
            .context("--output-skb-metadata")?,
        skb_dump: skb_dump_options(config, &btf)?,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Notify::new());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the event loop")?;
    rt.spawn(watch_signals(stop.clone(), wake.clone()));

    let (mut obj, summary) =
        match load_and_attach(config, &layout, &opts, backend.as_mut(), &targets, &stop) {
            Ok(v) => v,
            Err(e) if pick.auto_reason.is_some() && is_link_kind_refused(&e) => {
                let Some(fallback) = backend.fallback() else {
                    return Err(e);
                };
                let previous = backend.name();
                backend = attach::backend_with(fallback, backend_opts);
                eprintln!(
                    "{previous} links are refused by this kernel; falling back to {}",
                    backend.noun()
                );
                load_and_attach(config, &layout, &opts, backend.as_mut(), &targets, &stop)?
            }
            Err(e) => return Err(e),
        };
    if stop.load(Ordering::Relaxed) {
        detach(backend.as_mut(), &mut obj, config);
        eprintln!("Received signal, exiting program..");
        return Ok(());
    }
    eprintln!("Attached (ignored {})", summary.ignored);
    if config.debug {
        eprintln!("start-up took {:.3}s", started.elapsed().as_secs_f64());
    }

    let mut names = Names {
        ksyms: kallsyms,
        drop_reasons: btf
            .enum_values("skb_drop_reason")
            .unwrap_or_default()
            .into_iter()
            .map(|(v, n)| (v as u64, n))
            .collect(),
        ..Names::default()
    };
    let target_names = backend.target_names(&targets);
    names.probe_names = target_names.probe_names;
    names.drop_reason_args = target_names.drop_reason_args;
    if config.output_meta {
        names.ifaces = IfaceNames::scan().0;
    }
    if config.output_netns_names {
        let (netns, warnings) = NetnsNames::scan();
        warnings
            .iter()
            .for_each(|w| eprintln!("pwru: warning: {w}"));
        names.netns = netns;
    }
    let mut output_opts = OutputOptions::from_config(config);
    output_opts.skb_metadata = opts
        .skb_metadata
        .iter()
        .map(|p| MetadataField {
            name: p.text.clone(),
            kind: p.kind,
        })
        .collect();
    let mut output = Output::new(output_opts, names, OutputTarget::from_config(config))
        .context("opening the output")?;
    eprintln!("Listening for events..");
    if let Some(path) = &config.ready_file {
        fs::write(path, b"")
            .with_context(|| format!("creating --ready-file {}", path.display()))?;
    }
    output.print_header()?;

    let result = rt.block_on(event_loop(&mut obj, &mut output, &stop, &wake));
    output.flush().ok();
    detach(backend.as_mut(), &mut obj, config);
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

/// `--output-skb`/`--output-skb-shared-info`: the BTF ids of the structs to render and
/// the `--set-percpu-buf` text size.
fn skb_dump_options(config: &Config, btf: &KernelBtf) -> Result<Option<SkbDump>> {
    if !config.output_skb && !config.output_shinfo {
        return Ok(None);
    }
    let id = |wanted: bool, name: &str, flag: &str| -> Result<Option<u32>> {
        if !wanted {
            return Ok(None);
        }
        btf.vmlinux_struct_id(name)
            .map(Some)
            .with_context(|| format!("{flag} needs struct {name} in the kernel BTF"))
    };
    let skb = id(config.output_skb, "sk_buff", "--output-skb")?;
    let shinfo = id(
        config.output_shinfo,
        "skb_shared_info",
        "--output-skb-shared-info",
    )?;
    SkbDump::new(skb, shinfo, config.set_percpu_buf)
        .map(Some)
        .ok_or_else(|| {
            anyhow!(
                "--set-percpu-buf {} is out of range ({}..={} bytes)",
                config.set_percpu_buf,
                probes::skb_dump::MIN_DUMP_BYTES,
                probes::skb_dump::MAX_DUMP_BYTES
            )
        })
}

/// Backend settings from the command line.
fn backend_options(config: &Config) -> attach::BackendOptions {
    attach::BackendOptions {
        kprobe_batch: config.filter_kprobe_batch as usize,
        detach_wait: config.detach_wait,
        ..Default::default()
    }
}

/// The backend features the command line asks for.
fn wanted_features(config: &Config) -> Vec<Feature> {
    let mut wanted = Vec::new();
    if config.output_caller {
        wanted.push(Feature::Caller);
    }
    if !config.filter_non_skb_funcs.is_empty() {
        wanted.push(Feature::NonSkbFunctions);
    }
    if config.filter_track_skb {
        wanted.push(Feature::CloneFollowing);
    }
    wanted
}

/// Whether the kernel refused the backend's kind of link (the typed error, kept to here).
fn is_link_kind_refused(e: &anyhow::Error) -> bool {
    e.downcast_ref::<AttachError>()
        .is_some_and(AttachError::is_link_kind_refused)
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

/// Opens `--kernel-btf` or the running kernel's BTF, plus `--kmods`/`--all-kmods` modules.
pub fn open_btf(config: &Config) -> Result<KernelBtf> {
    let kmods = if config.all_kmods {
        Kmods::All
    } else {
        Kmods::Named(config.kmods.clone())
    };
    let btf = match &config.kernel_btf {
        Some(path) => KernelBtf::open(path, std::path::Path::new(crate::btf::SYS_BTF_DIR), &kmods),
        None => KernelBtf::open_system(&kmods),
    };
    btf.context(
        "opening kernel BTF (pass --kernel-btf FILE on kernels without /sys/kernel/btf/vmlinux)",
    )
}

/// `--backend`, or the best backend this kernel runs; `auto` says which and why.
fn choose_backend(config: &Config, kallsyms: &Ksyms) -> Result<Pick> {
    let kernel = KernelSupport {
        kprobes: attach::kprobes_available(),
        fprobe: !kallsyms.addresses_of("register_fprobe").is_empty(),
    };
    let named = match config.backend {
        BackendChoice::Auto => None,
        BackendChoice::KprobeMulti => Some(BackendKind::KprobeMulti),
        BackendChoice::Kprobe => Some(BackendKind::Kprobe),
        BackendChoice::Tracepoint => Some(BackendKind::Tracepoint),
    };
    let pick = attach::choose(named, &kernel)?;
    if let Some(why) = pick.auto_reason {
        eprintln!("Backend: {} (auto: {why})", pick.kind.name());
    }
    Ok(pick)
}

/// The functions or tracepoints `backend` probes, narrowed by `--filter-func`.
pub fn select_targets(
    config: &Config,
    btf: &KernelBtf,
    backend: &dyn Backend,
) -> Result<Vec<Target>> {
    let keep = |name: &str| config.filter_func.as_ref().is_none_or(|f| f.is_match(name));
    let targets = backend.targets(btf, &keep)?;
    if targets.is_empty() {
        match &config.filter_func {
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

fn netns_filter(config: &Config) -> Result<Option<u32>> {
    config
        .filter_netns
        .as_ref()
        .map(|ns| ns.inode().with_context(|| format!("--filter-netns {ns:?}")))
        .transpose()
}

/// `--filter-ifname`, resolved to an ifindex inside `--filter-netns` (or ours).
fn ifindex_filter(config: &Config) -> Result<Option<u32>> {
    let Some(name) = &config.filter_ifname else {
        return Ok(None);
    };
    let netns = match &config.filter_netns {
        Some(NetnsSpec::Path(p)) => Some(p.clone()),
        _ => None,
    };
    let index = ifindex_in_netns(name, netns)?;
    Ok(Some(index))
}

fn ifindex_in_netns(name: &str, netns: Option<PathBuf>) -> Result<u32> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| anyhow!("--filter-ifname {name:?} contains NUL"))?;
    let name = name.to_string();
    let lookup = move || -> Result<u32> {
        if let Some(path) = &netns {
            let f = fs::File::open(path)
                .with_context(|| format!("opening netns {}", path.display()))?;
            // SAFETY: setns on a valid fd in a thread of our own that does nothing else.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error()).context("entering --filter-netns");
            }
        }
        // SAFETY: cname is a valid NUL-terminated string.
        match unsafe { libc::if_nametoindex(cname.as_ptr()) } {
            0 => bail!("--filter-ifname: no interface {name:?} in that network namespace"),
            i => Ok(i),
        }
    };
    std::thread::spawn(lookup)
        .join()
        .map_err(|_| anyhow!("interface lookup thread panicked"))?
}

/// How the programs name the kernel stack they run on (`task_struct.stack` from BTF).
fn stack_tracking(btf: &KernelBtf) -> StackTracking {
    StackTracking {
        task_stack_offset: btf
            .optional_member("task_struct", "stack")
            .ok()
            .flatten()
            .map(|f| f.offset_bytes()),
    }
}

/// The maps the programs share; `follows_clones`: the clone stash of the clone probes.
fn map_specs(opts: &ProbeOptions, follows_clones: bool) -> Vec<MapSpec> {
    let mut m = vec![
        MapSpec::ring_buf(maps::EVENTS, maps::EVENTS_BYTES),
        MapSpec::new(maps::LOST, MapKind::PerCpuArray, 4, 8, 1),
    ];
    if opts.track_skb {
        m.push(MapSpec::new(
            maps::TRACKED_SKBS,
            MapKind::Hash,
            8,
            4,
            maps::TRACKED_SKBS_ENTRIES,
        ));
    }
    if opts.track_stackid.is_some() {
        for name in [maps::STACKID_SKB, maps::SKB_STACKID] {
            m.push(MapSpec::new(
                name,
                MapKind::Hash,
                8,
                8,
                maps::STACKID_ENTRIES,
            ));
        }
    }
    if follows_clones {
        m.push(MapSpec::new(
            maps::CLONE_STASH,
            MapKind::Hash,
            8,
            8,
            maps::CLONE_STASH_ENTRIES,
        ));
    }
    if opts.output_stack {
        m.push(MapSpec::new(
            maps::STACKS,
            MapKind::StackTrace,
            4,
            maps::STACK_DEPTH * 8,
            maps::STACKS_ENTRIES,
        ));
    }
    m
}

/// The `--filter-non-skb-funcs` functions to probe: sorted, deduplicated, without the
/// ones already probed as skb functions and without BPF programs (`[bpf]`), which are
/// counted as ignored like pwru does.
fn non_skb_functions(config: &Config, targets: &[Target]) -> (Vec<String>, usize) {
    let mut funcs: Vec<String> = config
        .filter_non_skb_funcs
        .iter()
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect();
    funcs.sort();
    funcs.dedup();
    let before = funcs.len();
    funcs.retain(|f| !f.ends_with("[bpf]") && !targets.iter().any(|t| t.name == *f));
    let skipped = before - funcs.len();
    (funcs, skipped)
}

/// The attach and detach progress, drawn on a terminal.
struct Bar(ProgressBar);

impl attach::Progress for Bar {
    fn set_length(&self, len: u64) {
        self.0.set_length(len);
    }
    fn inc(&self, n: u64) {
        self.0.inc(n);
    }
}

fn progress_bar(len: u64, message: &str) -> Bar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if std::io::stderr().is_terminal() {
        pb.set_style(
            ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    } else {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_message(message.to_string());
    Bar(pb)
}

fn load_and_attach(
    config: &Config,
    layout: &SkbLayout,
    opts: &ProbeOptions,
    backend: &mut dyn Backend,
    targets: &[Target],
    stop: &AtomicBool,
) -> Result<(LoadedObject, attach::AttachSummary)> {
    let mut build = |a: &Attachment| probes::build(layout, opts, a);
    let mut programs = backend.programs(targets, &mut build)?;
    let (non_skb, skipped) = non_skb_functions(config, targets);
    let needs = HelperNeeds {
        untrack: UntrackOptions {
            track_skb: opts.track_skb,
            track_stackid: opts.track_stackid,
        },
        non_skb: &non_skb,
    };
    let helpers = attach::helper_programs(backend, &needs, &mut build)?;
    programs.extend(helpers.iter().map(|x| x.spec.clone()));
    let spec = ObjectSpec {
        maps: map_specs(
            opts,
            opts.track_skb && backend.supports(Feature::CloneFollowing),
        ),
        programs,
    };
    let mut obj = load::load(&spec, &LoadOptions::default()).map_err(|e| anyhow!("{e}"))?;
    eprintln!("Attaching {} (via {})...", backend.noun(), backend.name());
    let pb = progress_bar(targets.len() as u64, "Attaching");
    let attach_started = Instant::now();
    let attached = backend.attach(&mut obj, targets, &pb, stop);
    if config.debug {
        eprintln!(
            "attaching took {:.3}s",
            attach_started.elapsed().as_secs_f64()
        );
    }
    let summary = match attached {
        Ok(s) => s,
        Err(AttachError::Interrupted) => {
            pb.0.finish_and_clear();
            return Ok((obj, attach::AttachSummary::default()));
        }
        Err(e) => {
            pb.0.finish_and_clear();
            detach(backend, &mut obj, config);
            return Err(e.into());
        }
    };
    pb.0.finish_and_clear();
    if summary.attached == 0 {
        detach(backend, &mut obj, config);
        return Err(AttachError::NothingAttached(summary.ignored).into());
    }
    let helpers = attach::attach_helpers(&mut obj, &helpers);
    for w in &helpers.warnings {
        eprintln!("warning: {w}");
    }
    let summary = attach::AttachSummary {
        attached: summary.attached + helpers.attached,
        ignored: summary.ignored + helpers.ignored + skipped,
    };
    Ok((obj, summary))
}

/// Detaches everything, in the background when the backend's policy says so.
fn detach(backend: &mut dyn Backend, obj: &mut LoadedObject, config: &Config) {
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
    let pb = progress_bar(0, "Detaching");
    backend.detach(obj, &pb);
    pb.0.finish_and_clear();
    if config.debug {
        eprintln!("detaching took {:.3}s", started.elapsed().as_secs_f64());
    }
}

/// Reads the ring buffer into `sink` until a signal, the sink says stop, or an error;
/// returns the number of events the kernel could not queue.
async fn event_loop(
    obj: &mut LoadedObject,
    sink: &mut dyn EventSink,
    stop: &AtomicBool,
    wake: &Notify,
) -> Result<u64> {
    let ring: RingBuf<MapData> = obj.take_ring_buf(maps::EVENTS)?;
    // SAFETY: the AsyncFd owns the RingBuf, which owns the fd, so the fd stays open for
    // as long as it is registered.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| anyhow!("polling the ring buffer: {e}"))?;
    let stacks: Option<StackTraceMap<MapData>> = obj
        .ebpf_mut()
        .take_map(maps::STACKS)
        .map(StackTraceMap::try_from)
        .transpose()
        .context("opening the stack map")?;
    let lost_map: PerCpuArray<MapData, u64> = PerCpuArray::try_from(
        obj.ebpf_mut()
            .take_map(maps::LOST)
            .ok_or_else(|| anyhow!("lost-events map missing"))?,
    )?;
    let mut lost = LostEvents::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Probes wake us only once a batch is waiting (maps::EVENTS_WAKEUP_BYTES): collect
    // the rest on this timer.
    let mut poll = tokio::time::interval(RING_POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut frames: Vec<u64> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                drain_ring(guard.get_inner_mut(), stacks.as_ref(), &mut frames, sink, stop)?;
                guard.clear_ready();
                sink.drained()?;
            }
            _ = poll.tick() => {
                if drain_ring(ring.get_mut(), stacks.as_ref(), &mut frames, sink, stop)? > 0 {
                    sink.drained()?;
                }
            }
            _ = tick.tick() => {
                let newly = observe_lost(&lost_map, &mut lost);
                sink.lost(newly, lost.total())?;
            }
            _ = wake.notified() => {}
        }
    }
    // What the probes wrote since the last poll.
    drain_ring(ring.get_mut(), stacks.as_ref(), &mut frames, sink, stop)?;
    let newly = observe_lost(&lost_map, &mut lost);
    sink.lost(newly, lost.total())?;
    sink.drained()?;
    Ok(lost.total())
}

/// How often the event loop reads the ring buffer without being woken up.
pub const RING_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Hands every record in the ring buffer to `sink` (until it says stop); returns how
/// many were read.
fn drain_ring(
    rb: &mut RingBuf<MapData>,
    stacks: Option<&StackTraceMap<MapData>>,
    frames: &mut Vec<u64>,
    sink: &mut dyn EventSink,
    stop: &AtomicBool,
) -> Result<usize> {
    let mut n = 0;
    while let Some(item) = rb.next() {
        let event = events::decode(&item)?;
        drop(item);
        n += 1;
        frames.clear();
        if let (Some(id), Some(stacks)) = (event.stack_id, stacks) {
            if let Ok(trace) = u32::try_from(id).map(|id| stacks.get(&id, 0)) {
                frames.extend(
                    trace
                        .iter()
                        .flat_map(|t| t.frames())
                        .map(|f| f.ip)
                        .filter(|ip| *ip != 0),
                );
            }
        }
        if sink.event(&event, Some(frames))? == Flow::Stop {
            stop.store(true, Ordering::Relaxed);
            break;
        }
    }
    Ok(n)
}

fn observe_lost(map: &PerCpuArray<MapData, u64>, lost: &mut LostEvents) -> u64 {
    match map.get(&0, 0) {
        Ok(values) => lost.observe(&values.iter().copied().collect::<Vec<u64>>()),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn target(name: &str) -> Target {
        Target {
            name: name.into(),
            module: None,
            skb_arg: 1,
            drop_reason_arg: None,
            nargs: 0,
        }
    }

    #[test]
    fn non_skb_functions_skip_skb_functions_and_bpf_programs() {
        let config = Config::try_parse_from([
            "pwru",
            "--filter-non-skb-funcs",
            "b,a,ip_rcv",
            "--filter-non-skb-funcs=a,bpf_prog_x_f[bpf],,c",
        ])
        .unwrap();
        let (funcs, skipped) = non_skb_functions(&config, &[target("ip_rcv")]);
        assert_eq!(funcs, ["a", "b", "c"]);
        // ip_rcv is probed as an skb function already; the [bpf] name is a program.
        assert_eq!(skipped, 2);
    }
}
