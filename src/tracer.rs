//! The tracer run: config → BTF facts → filter → probe programs → load → attach →
//! ring-buffer events → output, and the teardown that leaves nothing attached.

use std::collections::HashMap;
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

use crate::attach::{self, background, AttachError, Backend, BackendKind, Probeable, Target};
use crate::btf::{KernelBtf, Kmods, SkbLayout};
use crate::cli::{Backend as BackendChoice, Config, NetnsSpec};
use crate::events::{self, EventSink, Flow, LostEvents};
use crate::load::{
    self, LoadOptions, LoadedObject, MapKind, MapSpec, ObjectSpec, ProgKind, ProgramSpec,
};
use crate::output::sections::skb_dump::{self, SkbDump};
use crate::output::sections::{self, stack::StackId};
use crate::output::{IfaceNames, Ksyms, Names, NetnsNames, Output, OutputOptions, OutputTarget};
use crate::pcapc::ast::Expr;
use crate::probes::{
    self, maps, skb_expr, Attachment, ProbeOptions, StackTracking, UntrackOptions, NON_SKB,
};

/// Entry point of a tracing run (not the `--list-funcs`/filter tools).
/// `filter` is the parsed pcap filter (`None`: every packet).
pub fn trace(config: &Config, filter: Option<Expr>) -> Result<()> {
    let started = Instant::now();
    let btf = open_btf(config)?;
    let layout = SkbLayout::resolve(&btf).context("reading sk_buff layout from BTF")?;
    let kallsyms = Ksyms::load().context("reading /proc/kallsyms")?;

    let kind = choose_backend(config, &kallsyms)?;
    if config.output_caller && kind == BackendKind::Tracepoint {
        bail!("--output-caller is not supported with the tracepoint backend (a tracepoint has no caller frame to read); use --backend kprobe or kprobe-multi");
    }
    if !config.filter_non_skb_funcs.is_empty() && kind == BackendKind::Tracepoint {
        // `--backend tracepoint` was refused by `Config::validate`; this is `auto`.
        bail!("--filter-non-skb-funcs needs a kprobe backend (it probes functions by name), and this kernel has no kprobes (CONFIG_KPROBES): the tracepoint backend cannot run it");
    }
    if config.filter_track_skb && kind == BackendKind::Tracepoint {
        eprintln!("note: with the tracepoint backend, --filter-track-skb does not follow clones and copies (skb_clone, skb_copy need kprobes)");
    }
    let targets = select_targets(config, &btf, kind)?;
    let mut output_opts = OutputOptions::from_config(config);
    output_opts.skb_metadata = skb_expr::compile_metadata(&btf, &config.output_skb_metadata)
        .context("--output-skb-metadata")?;
    output_opts.skb_dump = skb_dump_options(config, &btf)?;
    let opts = ProbeOptions {
        filter,
        mark: config
            .filter_mark
            .is_active()
            .then_some((config.filter_mark.mark, config.filter_mark.mask)),
        netns: netns_filter(config)?,
        ifindex: ifindex_filter(config)?,
        track_skb: config.filter_track_skb,
        track_stackid: config
            .filter_track_skb_by_stackid
            .then(|| stack_tracking(&btf)),
        has_get_func_ip: kind != BackendKind::Tracepoint
            && load::func_ip_available().unwrap_or(false),
        skb_expr: match config
            .filter_skb_expr
            .as_deref()
            .filter(|e| !e.trim().is_empty())
        {
            Some(text) => Some(skb_expr::compile_filter(&btf, text).context("--filter-skb-expr")?),
            None => None,
        },
        sections: sections::record_sections(&output_opts),
    };

    let backend_opts = backend_options(config);
    let mut backend = attach::backend_with(kind, backend_opts.clone());
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
            Err(e)
                if kind == BackendKind::KprobeMulti
                    && is_multi_unsupported(&e)
                    && config.backend == BackendChoice::Auto =>
            {
                eprintln!("kprobe-multi links are refused by this kernel; falling back to kprobes");
                backend = attach::backend_with(BackendKind::Kprobe, backend_opts);
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
        probe_names: HashMap::new(),
        ..Names::default()
    };
    if kind != BackendKind::Tracepoint {
        names.drop_reason_args = targets
            .iter()
            .filter_map(|t| Some((t.name.clone(), t.drop_reason_arg?)))
            .collect();
    }
    if kind == BackendKind::Tracepoint {
        names.probe_names = targets
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u64, t.name.clone()))
            .collect();
    }
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
                skb_dump::MIN_DUMP_BYTES,
                skb_dump::MAX_DUMP_BYTES
            )
        })
}

/// Backend settings from the command line.
fn backend_options(config: &Config) -> attach::BackendOptions {
    attach::BackendOptions {
        kprobe_batch: config.filter_kprobe_batch as usize,
        ..Default::default()
    }
}

fn is_multi_unsupported(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<AttachError>(),
        Some(AttachError::Object(
            load::ObjectError::KprobeMultiUnsupported { .. }
        ))
    )
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

/// `auto`: kprobe-multi where the kernel has fprobe, else kprobes, else tracepoints.
fn choose_backend(config: &Config, kallsyms: &Ksyms) -> Result<BackendKind> {
    let kprobes = attach::kprobes_available();
    let fprobe = !kallsyms.addresses_of("register_fprobe").is_empty();
    let kind = match config.backend {
        BackendChoice::KprobeMulti | BackendChoice::Kprobe if !kprobes => bail!(
            "backend {} is not available: this kernel has no kprobes (CONFIG_KPROBES); use --backend tracepoint",
            config.backend.as_str()
        ),
        BackendChoice::KprobeMulti if !fprobe => bail!(
            "backend kprobe-multi is not available: this kernel has no fprobe (CONFIG_FPROBE, kernel 5.18+); use --backend kprobe"
        ),
        BackendChoice::KprobeMulti => BackendKind::KprobeMulti,
        BackendChoice::Kprobe => BackendKind::Kprobe,
        BackendChoice::Tracepoint => BackendKind::Tracepoint,
        BackendChoice::Auto => {
            let (kind, why) = if kprobes && fprobe {
                (BackendKind::KprobeMulti, "kprobes and fprobe available")
            } else if kprobes {
                (BackendKind::Kprobe, "no fprobe (CONFIG_FPROBE) for kprobe-multi")
            } else {
                (BackendKind::Tracepoint, "no kprobes on this kernel (CONFIG_KPROBES)")
            };
            eprintln!("Backend: {} (auto: {why})", kind.name());
            kind
        }
    };
    Ok(kind)
}

/// Functions (kprobe backends) or tracepoints (tracepoint backend) to probe.
pub fn select_targets(config: &Config, btf: &KernelBtf, kind: BackendKind) -> Result<Vec<Target>> {
    let keep = |name: &str| config.filter_func.as_ref().is_none_or(|f| f.is_match(name));
    let targets = match kind {
        BackendKind::Tracepoint => {
            let tps = btf
                .skb_tracepoints()
                .context("scanning BTF for skb tracepoints")?;
            attach::targets::select_tracepoints(&tps, keep)
        }
        _ => {
            let funcs = btf
                .skb_functions()
                .context("scanning BTF for skb functions")?;
            let probeable = Probeable::discover();
            attach::targets::select_functions(&funcs, &probeable, keep)
        }
    };
    if targets.is_empty() {
        match &config.filter_func {
            Some(f) => bail!(
                "no {} matches --filter-func {:?}; see `pwru --list-funcs`",
                if kind == BackendKind::Tracepoint {
                    "skb tracepoint"
                } else {
                    "skb function"
                },
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

fn map_specs(opts: &ProbeOptions, kind: BackendKind) -> Vec<MapSpec> {
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
    if follows_clones(opts, kind) {
        m.push(MapSpec::new(
            maps::CLONE_STASH,
            MapKind::Hash,
            8,
            8,
            maps::CLONE_STASH_ENTRIES,
        ));
    }
    m.extend(
        opts.sections
            .iter()
            .flat_map(|s| s.maps())
            .map(MapSpec::from),
    );
    m
}

/// Whether clones and copies of tracked skbs are followed (kprobe + kretprobe pairs).
fn follows_clones(opts: &ProbeOptions, kind: BackendKind) -> bool {
    opts.track_skb && kind != BackendKind::Tracepoint
}

/// Functions whose return value is a clone or copy of their first argument.
const CLONE_FUNCS: [&str; 3] = ["skb_clone", "skb_copy", "__pskb_copy_fclone"];

/// What a helper program is for, which says how its attach failures are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Forgets freed skbs (`--filter-track-skb`, `--filter-track-skb-by-stackid`).
    Untrack,
    /// Clone following, entry or return half.
    Clone,
    /// `--filter-non-skb-funcs`.
    NonSkb,
}

/// A program besides the backend's, and where it goes.
struct Extra {
    spec: ProgramSpec,
    role: Role,
    /// Kernel functions for a (ret)kprobe program; empty for a raw tracepoint.
    functions: Vec<String>,
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

/// Programs that forget freed skbs, follow clones and probe the non-skb functions.
fn extra_programs(
    layout: &SkbLayout,
    opts: &ProbeOptions,
    kind: BackendKind,
    non_skb: &[String],
) -> Result<Vec<Extra>> {
    let mut v = Vec::new();
    let untrack = UntrackOptions {
        track_skb: opts.track_skb,
        track_stackid: opts.track_stackid,
    };
    if untrack.track_skb || untrack.track_stackid.is_some() {
        match kind {
            BackendKind::Tracepoint => {
                for (i, tp) in ["kfree_skb", "consume_skb"].into_iter().enumerate() {
                    let program = probes::build_untrack_with(
                        &Attachment::Tracepoint {
                            id: 0,
                            skb_arg: 0,
                            nargs: 1,
                            drop_reason_arg: None,
                        },
                        untrack,
                    )?;
                    v.push(Extra {
                        spec: ProgramSpec {
                            name: format!("untrack_{i}"),
                            kind: ProgKind::RawTracepoint(tp.into()),
                            program,
                        },
                        role: Role::Untrack,
                        functions: Vec::new(),
                    });
                }
            }
            _ => {
                let program = probes::build_untrack_with(
                    &Attachment::Kprobe {
                        skb_arg: 1,
                        multi: false,
                    },
                    untrack,
                )?;
                v.push(Extra {
                    spec: ProgramSpec {
                        name: "untrack".into(),
                        kind: ProgKind::KProbe,
                        program,
                    },
                    role: Role::Untrack,
                    functions: vec!["kfree_skbmem".into()],
                });
            }
        }
    }
    if follows_clones(opts, kind) {
        let functions: Vec<String> = CLONE_FUNCS.iter().map(|f| f.to_string()).collect();
        v.push(Extra {
            spec: ProgramSpec {
                name: "clone_entry".into(),
                kind: ProgKind::KProbe,
                program: probes::build_clone_entry()?,
            },
            role: Role::Clone,
            functions: functions.clone(),
        });
        v.push(Extra {
            spec: ProgramSpec {
                name: "clone_return".into(),
                kind: ProgKind::KRetProbe,
                program: probes::build_clone_return()?,
            },
            role: Role::Clone,
            functions,
        });
    }
    if !non_skb.is_empty() {
        let program = probes::build(
            layout,
            opts,
            &Attachment::Kprobe {
                skb_arg: NON_SKB,
                multi: false,
            },
        )?;
        v.push(Extra {
            spec: ProgramSpec {
                name: "non_skb".into(),
                kind: ProgKind::KProbe,
                program,
            },
            role: Role::NonSkb,
            functions: non_skb.to_vec(),
        });
    }
    Ok(v)
}

/// Attaches the helper programs; returns (attached, ignored) non-skb functions.
fn attach_extras(obj: &mut LoadedObject, extras: &[Extra]) -> (usize, usize) {
    let (mut attached, mut ignored) = (0, 0);
    let mut clone_errors = Vec::new();
    let mut clone_ok = 0;
    for x in extras {
        let name = &x.spec.name;
        if x.functions.is_empty() {
            if let Err(e) = obj.attach_raw_tp(name) {
                eprintln!("warning: tracked skbs cannot be forgotten when freed: {e}");
            }
            continue;
        }
        for f in &x.functions {
            match (obj.attach_kprobe(name, f), x.role) {
                (Ok(_), Role::NonSkb) => attached += 1,
                (Ok(_), Role::Clone) => clone_ok += 1,
                (Ok(_), Role::Untrack) => {}
                (Err(e), Role::Untrack) => {
                    eprintln!("warning: tracked skbs cannot be forgotten when freed: {e}")
                }
                (Err(e), Role::Clone) => clone_errors.push(e),
                (Err(e), Role::NonSkb) => {
                    ignored += 1;
                    eprintln!("warning: --filter-non-skb-funcs: cannot probe {f}: {e}");
                }
            }
        }
    }
    if clone_ok == 0 {
        if let Some(e) = clone_errors.first() {
            eprintln!("warning: --filter-track-skb cannot follow clones and copies: {e}");
        }
    }
    (attached, ignored)
}

fn progress_bar(len: u64, message: &str) -> ProgressBar {
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
    pb
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
    let extras = extra_programs(layout, opts, backend.kind(), &non_skb)?;
    programs.extend(extras.iter().map(|x| x.spec.clone()));
    let spec = ObjectSpec {
        maps: map_specs(opts, backend.kind()),
        programs,
    };
    let mut obj = load::load(&spec, &LoadOptions::default()).map_err(|e| anyhow!("{e}"))?;
    let what = match backend.kind() {
        BackendKind::Tracepoint => "tracepoints",
        _ => "kprobes",
    };
    eprintln!("Attaching {what} (via {})...", backend.kind().name());
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
            pb.finish_and_clear();
            return Ok((obj, attach::AttachSummary::default()));
        }
        Err(e) => {
            pb.finish_and_clear();
            detach(backend, &mut obj, config);
            return Err(e.into());
        }
    };
    pb.finish_and_clear();
    if summary.attached == 0 {
        detach(backend, &mut obj, config);
        return Err(AttachError::NothingAttached(summary.ignored).into());
    }
    let (attached, ignored) = attach_extras(&mut obj, &extras);
    let summary = attach::AttachSummary {
        attached: summary.attached + attached,
        ignored: summary.ignored + ignored + skipped,
    };
    Ok((obj, summary))
}

fn detach(backend: &mut dyn Backend, obj: &mut LoadedObject, config: &Config) {
    let started = Instant::now();
    // A large kprobe set takes the kernel many seconds to unregister: unless asked to
    // wait, hand it to a detacher process and give the prompt back now.
    let mut events = if config.detach_wait {
        Vec::new()
    } else {
        backend.take_kprobe_events()
    };
    let mut handed_off = false;
    if events.len() >= background::BACKGROUND_MIN_KPROBES {
        let helpers = background::other_perf_events(&events);
        events.extend(helpers);
        events = match background::hand_off(events) {
            Ok(h) => {
                eprintln!(
                    "Detaching {} kprobes in the background (pid {}); they are gone when it exits.",
                    h.count, h.pid
                );
                handed_off = true;
                Vec::new()
            }
            Err((e, events)) => {
                eprintln!("pwru: warning: detaching in the foreground: {e}");
                events
            }
        };
    }
    let pb = progress_bar(0, "Detaching");
    if !handed_off {
        eprintln!(
            "Detaching {}...",
            match backend.kind() {
                BackendKind::Tracepoint => "tracepoints",
                _ => "kprobes",
            }
        );
    }
    attach::close_kprobes(events, attach::KPROBE_DETACH_THREADS, &pb);
    backend.detach(obj, &pb);
    pb.finish_and_clear();
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
        if let (Some(id), Some(stacks)) = (event.get::<StackId>().map(|s| s.0), stacks) {
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

    #[test]
    fn extra_programs_per_backend_and_options() {
        let extras = |kind, opts: &ProbeOptions| -> Vec<(String, Role, Vec<String>)> {
            let l = crate::btf::SkbLayout::resolve(
                &crate::btf::KernelBtf::open_system(&crate::btf::Kmods::None)
                    .expect("kernel BTF for the layout"),
            )
            .expect("layout");
            extra_programs(&l, opts, kind, &[])
                .unwrap()
                .into_iter()
                .map(|x| (x.spec.name, x.role, x.functions))
                .collect()
        };
        if !std::path::Path::new(crate::btf::SYS_VMLINUX_BTF).exists() {
            eprintln!("skipped: no kernel BTF");
            return;
        }
        let track = ProbeOptions {
            track_skb: true,
            ..ProbeOptions::default()
        };
        let kprobe = extras(BackendKind::Kprobe, &track);
        let names: Vec<&str> = kprobe.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["untrack", "clone_entry", "clone_return"]);
        assert_eq!(kprobe[0].2, ["kfree_skbmem"]);
        assert_eq!(kprobe[1].2, CLONE_FUNCS);
        // Tracepoints: the two free tracepoints, no clone following.
        let tp = extras(BackendKind::Tracepoint, &track);
        let names: Vec<&str> = tp.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["untrack_0", "untrack_1"]);
        // By-stackid alone still needs the untrack program, but no clone following.
        let stackid = ProbeOptions {
            track_stackid: Some(StackTracking::default()),
            ..ProbeOptions::default()
        };
        let multi = extras(BackendKind::KprobeMulti, &stackid);
        assert_eq!(multi.len(), 1);
        assert_eq!(multi[0].1, Role::Untrack);
        assert!(extras(BackendKind::Kprobe, &ProbeOptions::default()).is_empty());
    }
}
