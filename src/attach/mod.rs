//! Attaching the generated programs: the `Backend` trait, the registry of backends (one file
//! each), the choice `auto` makes, feature checks, and the helper programs every run shares.
//!
//! A backend answers everything the tracer would otherwise decide by matching on its kind:
//! what the kernel must have for it, which features it offers, what it probes (BTF skb
//! functions or skb tracepoints), the programs for its targets, where the helper program
//! that forgets freed skbs goes, how events name their probe, and how it detaches.
//! A new backend is one file implementing [`Backend`], a [`BackendKind`] variant and one
//! [`REGISTRY`] line.

pub mod background;
pub mod bpf_helpers;
pub mod bpf_progs;
pub mod fentry;
pub mod helpers;
pub mod kprobe;
pub mod kprobe_multi;
pub mod targets;
pub mod tracepoint;

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::asm::Program;
use crate::btf::{BtfError, KernelBtf};
use crate::load::{LoadError, LoadedObject, ObjectError, ProgramSpec};
use crate::probes::{Attachment, ProbeError};

pub use background::{Handoff, HandoffError};
pub use bpf_progs::{traced_kind, ProgSync, ProgTracer, TracedKind, TRACED_TC, TRACED_XDP};
pub use fentry::FentryBackend;
pub use helpers::{
    attach_helpers, helper_programs, HelperAttach, HelperNeeds, HelperProgram, HelperWarning, Role,
    UntrackPoint, CLONE_FUNCS,
};
pub use kprobe::{close_kprobes, KprobeBackend};
pub use kprobe_multi::KprobeMultiBackend;
pub use targets::{kprobes_available, ListingScope, Locations, Probeable, ProbeableSource, Target};
pub use tracepoint::{tracepoint_program_name, TracepointBackend};

/// The attach mechanisms we have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    KprobeMulti,
    Kprobe,
    Tracepoint,
    Fentry,
}

impl BackendKind {
    /// The name `--backend` takes and messages use.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::KprobeMulti => "kprobe-multi",
            BackendKind::Kprobe => "kprobe",
            BackendKind::Tracepoint => "tracepoint",
            BackendKind::Fentry => "fentry",
        }
    }

    /// The backend named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        REGISTRY
            .iter()
            .map(|(kind, _)| *kind)
            .find(|k| k.name() == name)
    }
}

/// Makes a backend with the command line's settings.
pub type CreateBackend = fn(&BackendOptions) -> Box<dyn Backend>;

/// Every backend, in `auto`'s order (it takes the first this kernel can run): one line
/// each. fentry comes after tracepoint, which every kernel runs, so `auto` never takes it:
/// it costs less per hit than kprobes but takes seconds to start (BENCHMARKS.md).
pub const REGISTRY: &[(BackendKind, CreateBackend)] = &[
    (BackendKind::KprobeMulti, KprobeMultiBackend::create),
    (BackendKind::Kprobe, KprobeBackend::create),
    (BackendKind::Tracepoint, TracepointBackend::create),
    (BackendKind::Fentry, FentryBackend::create),
];

/// Makes the backend of `kind` with default settings.
pub fn backend(kind: BackendKind) -> Box<dyn Backend> {
    backend_with(kind, BackendOptions::default())
}

/// Makes the backend of `kind` with `opts`.
pub fn backend_with(kind: BackendKind, opts: BackendOptions) -> Box<dyn Backend> {
    let (_, create) = REGISTRY
        .iter()
        .find(|(k, _)| *k == kind)
        .expect("every BackendKind has a REGISTRY line");
    create(&opts)
}

/// Every backend, in registry order, with default settings.
pub fn all_backends() -> impl Iterator<Item = Box<dyn Backend>> {
    REGISTRY
        .iter()
        .map(|(_, create)| create(&BackendOptions::default()))
}

/// Settings of the backends that the command line controls.
#[derive(Clone, Debug)]
pub struct BackendOptions {
    /// Functions per attach chunk of the kprobe backend (`--filter-kprobe-batch`).
    pub kprobe_batch: usize,
    pub attach_threads: usize,
    pub detach_threads: usize,
    /// Never hand probes to a background detacher (`--detach-wait`).
    pub detach_wait: bool,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            kprobe_batch: 10,
            attach_threads: KPROBE_ATTACH_THREADS,
            detach_threads: KPROBE_DETACH_THREADS,
            detach_wait: false,
        }
    }
}

/// Default number of threads that open kprobes; the kernel serializes registration on its
/// mutexes, so more threads only overlap the perf/BPF parts (no gain measured on 1 vCPU).
pub const KPROBE_ATTACH_THREADS: usize = 4;
/// Threads that close kprobe events at detach: each close waits for RCU grace periods
/// outside the kernel's locks, so many closers share the same grace periods.
pub const KPROBE_DETACH_THREADS: usize = 64;

/// Where attaching and detaching report progress: a progress bar at the edge, a counter in
/// tests. Workers on several threads report through the same value.
pub trait Progress: Sync {
    /// The number of steps of the current phase.
    fn set_length(&self, len: u64);
    /// `n` more steps are done.
    fn inc(&self, n: u64);
}

/// Progress nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_length(&self, _len: u64) {}
    fn inc(&self, _n: u64) {}
}

/// What the running kernel offers the backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSupport {
    /// A kprobe PMU (`CONFIG_KPROBES` with perf events).
    pub kprobes: bool,
    /// fprobe (`CONFIG_FPROBE`), which kprobe_multi links need.
    pub fprobe: bool,
}

/// Why this kernel cannot run a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unavailable {
    /// What is missing, e.g. "this kernel has no kprobes (CONFIG_KPROBES)".
    pub kernel_lacks: &'static str,
    /// What to use instead, e.g. "use --backend tracepoint".
    pub hint: &'static str,
    /// The same, in the words of `auto` when it passes this backend over.
    pub auto_reason: &'static str,
}

/// A feature a run can ask of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// `--output-caller`: the address the probed function returns to.
    Caller,
    /// `--filter-non-skb-funcs`: probes on functions that take no skb, by name.
    NonSkbFunctions,
    /// `--filter-track-bpf-helpers`: the helpers BPF programs call, probed like
    /// [`Feature::NonSkbFunctions`].
    BpfHelpers,
    /// `--filter-track-skb` also follows clones and copies (a kprobe and kretprobe pair);
    /// without it tracking still works, so its absence is a note, not an error.
    CloneFollowing,
    /// `bpf_get_func_ip` names the probed function (no flag asks for it).
    FuncIp,
    /// `--kmods` / `--all-kmods`: the skb functions of kernel modules are probed too;
    /// without it only what else the backend finds in the modules is, so its absence is
    /// a warning, not an error.
    ModuleFunctions,
}

/// How the output names the probe of an event and finds its drop reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetNames {
    /// Probe ids that are not kernel text addresses (e.g. tracepoint indexes) -> name.
    pub probe_names: HashMap<u64, String>,
    /// Function name -> 1-based position of its `enum skb_drop_reason` parameter.
    pub drop_reason_args: HashMap<String, u16>,
    /// kprobe-multi links made by ftrace location: (location, probe id), sorted. Their
    /// events carry the function's entry, at or just before its location.
    pub multi_locations: Vec<(u64, u64)>,
}

/// How many targets were attached and how many the kernel refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttachSummary {
    pub attached: usize,
    pub ignored: usize,
}

/// Why attaching failed. The edge prints an error with its chain of sources (`{:#}`):
/// an `io::Error` is a source, not part of the message; the probe, load and object errors
/// already carry their causes in their own message, so they are shown, not chained (that
/// would print each cause twice). Either way the typed error stays reachable.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("interrupted while attaching")]
    Interrupted,
    #[error("building the probe program: {0}")]
    Probe(ProbeError),
    #[error("{0}")]
    Load(LoadError),
    #[error("{0}")]
    Object(ObjectError),
    #[error("no probe could be attached ({0} refused by the kernel)")]
    NothingAttached(usize),
    #[error("the kprobe PMU is unavailable (needs kernel 4.17+ with CONFIG_KPROBE_EVENTS)")]
    KprobePmu(#[source] io::Error),
    #[error("attaching a kprobe to `{function}` failed, giving up")]
    Kprobe {
        function: String,
        #[source]
        source: io::Error,
    },
    #[error("scanning BTF for skb {what}")]
    Btf {
        what: &'static str,
        #[source]
        source: BtfError,
    },
    #[error("backend {backend} is not available: {}; {}", why.kernel_lacks, why.hint)]
    Unavailable {
        backend: &'static str,
        why: Unavailable,
    },
    #[error("no tracing backend can run on this kernel")]
    NoBackend,
    /// A flag that traces BPF programs, on a kernel or host where fentry cannot load.
    #[error("{flag} cannot be used here: {why}")]
    BpfTracing {
        /// The flags, e.g. `--filter-trace-xdp and --filter-xdp-expr`.
        flag: String,
        why: crate::load::TracingUnavailable,
    },
    #[error("listing the loaded BPF programs")]
    ListPrograms(#[source] io::Error),
    /// The fentry backend's trial load failed: fentry cannot load here.
    #[error("--backend fentry cannot be used here: {0}")]
    FentryUnavailable(crate::load::TracingUnavailable),
    #[error("attaching an fentry program to `{function}` failed, giving up")]
    Fentry {
        function: String,
        #[source]
        source: io::Error,
    },
}

impl From<ProbeError> for AttachError {
    fn from(e: ProbeError) -> Self {
        AttachError::Probe(e)
    }
}

impl From<LoadError> for AttachError {
    fn from(e: LoadError) -> Self {
        AttachError::Load(e)
    }
}

impl From<ObjectError> for AttachError {
    fn from(e: ObjectError) -> Self {
        AttachError::Object(e)
    }
}

impl AttachError {
    /// Whether the kernel refused the backend's kind of link altogether (not one target):
    /// `auto` then falls back to [`Backend::fallback`].
    pub fn is_link_kind_refused(&self) -> bool {
        matches!(
            self,
            AttachError::Object(ObjectError::KprobeMultiUnsupported { .. })
        )
    }
}

/// Builds the probe program for one attachment point.
pub type BuildFn<'a> = dyn FnMut(&Attachment) -> Result<Program, ProbeError> + 'a;

/// One way of hooking the probe programs into the kernel.
pub trait Backend {
    fn kind(&self) -> BackendKind;

    /// The backend's name, as `--backend` takes it.
    fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Its probes in messages, plural: "kprobes", "tracepoints".
    fn noun(&self) -> &'static str;

    /// What one target is, in messages and `--list-funcs`: "function", "tracepoint".
    fn target_noun(&self) -> &'static str;

    /// Why `auto` takes this backend when it is the first in [`REGISTRY`] the kernel can
    /// run: what it found ("kprobes and fprobe available").
    fn auto_reason(&self) -> &'static str;

    /// Whether this kernel can run the backend.
    fn available(&self, kernel: &KernelSupport) -> Result<(), Unavailable>;

    /// Whether the backend can load here at all, tried before anything is built (e.g. a
    /// trial load on one of `targets`): fails at once with a one-line reason.
    fn check(&self, _targets: &[Target]) -> Result<(), AttachError> {
        Ok(())
    }

    /// Why the backend cannot provide `feature`, or `None` when it can.
    fn lacks(&self, feature: Feature) -> Option<&'static str>;

    /// Whether the backend provides `feature`.
    fn supports(&self, feature: Feature) -> bool {
        self.lacks(feature).is_none()
    }

    /// The backend `auto` falls back to when the kernel refuses this one's kind of link
    /// at attach time ([`AttachError::is_link_kind_refused`]).
    fn fallback(&self) -> Option<BackendKind> {
        None
    }

    /// Whether its programs load through aya's loader (perf kprobes, raw tracepoints),
    /// which parses the kernel's BTF when made; `false` when they all load through the
    /// raw path (kprobe_multi, fentry) and the maps are made without the loader.
    fn loads_through_aya(&self) -> bool {
        true
    }

    /// Its probe targets in the kernel's BTF that `keep` accepts: by default the skb
    /// functions the kernel can probe (the function backends).
    fn targets(
        &self,
        btf: &KernelBtf,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Target>, AttachError> {
        kprobe::function_targets(btf, keep, Locations::Without)
    }

    /// How the output names the probe of an event from these targets: by default by the
    /// function's address, with drop reasons from its `enum skb_drop_reason` parameter.
    fn target_names(&self, targets: &[Target]) -> TargetNames {
        kprobe::function_target_names(targets)
    }

    /// Whether events name their probe by a kernel address (`bpf_get_func_ip`, a kprobe's
    /// ip), which kallsyms turns into a name; `false` when [`Backend::target_names`] names
    /// every probe (tracepoint ids, kprobe-multi cookies).
    fn names_by_address(&self) -> bool {
        true
    }

    /// What probing `targets` shows and misses, said at start when it is less than every
    /// kernel function a packet passes ("30 tracepoints: ..."); `None` otherwise.
    fn coverage(&self, _targets: &[Target]) -> Option<String> {
        None
    }

    /// Where the program that forgets freed skbs attaches (with skb tracking): by
    /// default a kprobe on `kfree_skbmem`.
    fn untrack_points(&self) -> &'static [UntrackPoint] {
        kprobe::UNTRACK_POINTS
    }

    /// The programs to load for `targets` (their names are what `attach` uses).
    fn programs(
        &self,
        targets: &[Target],
        build: &mut BuildFn<'_>,
    ) -> Result<Vec<ProgramSpec>, AttachError>;

    /// Attaches every target; refusals are counted, not fatal. Checks `stop` often.
    fn attach(
        &mut self,
        obj: &mut LoadedObject,
        targets: &[Target],
        progress: &dyn Progress,
        stop: &AtomicBool,
    ) -> Result<AttachSummary, AttachError>;

    /// Targets `attach` skipped, with the reason (printed with `--debug`; counted in
    /// [`AttachSummary::ignored`]).
    fn skipped(&self) -> &[(String, String)] {
        &[]
    }

    /// Non-zero `recursion_misses` of the backend's own programs (those loaded outside
    /// the object), by name.
    fn recursion_misses(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// The detach policy: hands the attached probes (and the helper programs' kprobes) to
    /// a background process when closing them here would keep the user waiting
    /// ([`background`]). `None`: nothing was handed off, [`Backend::detach`] closes all.
    /// On an error the probes stay with the backend.
    fn hand_off(&mut self) -> Option<Result<Handoff, HandoffError>> {
        None
    }

    /// Detaches everything `attach` attached and did not hand off.
    fn detach(&mut self, obj: &mut LoadedObject, progress: &dyn Progress);
}

/// The backend to use, and why `auto` picked it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    pub kind: BackendKind,
    /// Set when `auto` picked it: the reason, for the "Backend: ..." line.
    pub auto_reason: Option<&'static str>,
    /// What the kernel lacks for the better backends `auto` passed over.
    pub passed_over: Option<Unavailable>,
}

/// The backend `named` (`None`: `auto`, the first in [`REGISTRY`] this kernel can run).
pub fn choose(named: Option<BackendKind>, kernel: &KernelSupport) -> Result<Pick, AttachError> {
    if let Some(kind) = named {
        let b = backend(kind);
        b.available(kernel)
            .map_err(|why| AttachError::Unavailable {
                backend: b.name(),
                why,
            })?;
        return Ok(Pick {
            kind,
            auto_reason: None,
            passed_over: None,
        });
    }
    let mut passed_over: Option<Unavailable> = None;
    for b in all_backends() {
        match b.available(kernel) {
            Ok(()) => {
                return Ok(Pick {
                    kind: b.kind(),
                    auto_reason: Some(match &passed_over {
                        Some(why) => why.auto_reason,
                        None => b.auto_reason(),
                    }),
                    passed_over,
                })
            }
            Err(why) => passed_over = Some(why),
        }
    }
    Err(AttachError::NoBackend)
}

/// A feature the run asks for that its backend cannot provide.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeatureError {
    #[error("--output-caller is not supported with the {backend} backend ({reason}); use --backend {alternatives}")]
    Caller {
        backend: &'static str,
        reason: &'static str,
        alternatives: String,
    },
    /// `flag`: `--filter-non-skb-funcs` or `--filter-track-bpf-helpers`.
    #[error("{flag} needs a kprobe backend (it probes functions by name); the {backend} backend has none: use --backend {alternatives}")]
    NonSkbFunctions {
        flag: &'static str,
        backend: &'static str,
        alternatives: String,
    },
    #[error("--kmods and --all-kmods are not supported with the {backend} backend ({reason}); use --backend {alternatives}")]
    ModuleFunctions {
        backend: &'static str,
        reason: &'static str,
        alternatives: String,
    },
    #[error("{flag} needs a kprobe backend (it probes functions by name), and {kernel_lacks}: the {backend} backend cannot run it")]
    NonSkbFunctionsOnThisKernel {
        flag: &'static str,
        backend: &'static str,
        kernel_lacks: &'static str,
    },
}

/// A feature the run asks for that its backend provides only in part; printed as a note
/// or, when a flag does not do what it says, a warning ([`FeatureNote::is_warning`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeatureNote {
    #[error("with the {backend} backend, --filter-track-skb does not follow clones and copies ({reason})")]
    NoCloneFollowing {
        backend: &'static str,
        reason: &'static str,
    },
    #[error("--kmods and --all-kmods do not apply to the {backend} backend ({reason}): only skb tracepoints that the modules define are added, none of their functions")]
    NoModuleFunctions {
        backend: &'static str,
        reason: &'static str,
    },
}

impl FeatureNote {
    /// Whether a flag of the command line is (mostly) ignored, rather than only weaker.
    pub fn is_warning(&self) -> bool {
        matches!(self, FeatureNote::NoModuleFunctions { .. })
    }
}

/// Checks the features `wanted` against `backend`: the first one the run cannot do without
/// is an error, the ones it runs without are notes. `passed_over` is what the kernel lacks
/// for the backends `auto` passed over (`None` when `--backend` named this one).
pub fn check_features(
    backend: &dyn Backend,
    wanted: &[Feature],
    passed_over: Option<&Unavailable>,
) -> Result<Vec<FeatureNote>, FeatureError> {
    let mut notes = Vec::new();
    for &feature in wanted {
        let Some(reason) = backend.lacks(feature) else {
            continue;
        };
        let name = backend.name();
        match feature {
            Feature::Caller => {
                return Err(FeatureError::Caller {
                    backend: name,
                    reason,
                    alternatives: alternatives(feature),
                })
            }
            Feature::NonSkbFunctions | Feature::BpfHelpers => {
                let flag = match feature {
                    Feature::BpfHelpers => "--filter-track-bpf-helpers",
                    _ => "--filter-non-skb-funcs",
                };
                return Err(match passed_over {
                    Some(why) => FeatureError::NonSkbFunctionsOnThisKernel {
                        flag,
                        backend: name,
                        kernel_lacks: why.kernel_lacks,
                    },
                    None => FeatureError::NonSkbFunctions {
                        flag,
                        backend: name,
                        alternatives: alternatives(feature),
                    },
                });
            }
            Feature::CloneFollowing => notes.push(FeatureNote::NoCloneFollowing {
                backend: name,
                reason,
            }),
            // A backend probing functions that cannot probe module functions ignores the
            // flag entirely: an error. One probing tracepoints still adds the modules'.
            Feature::ModuleFunctions if backend.target_noun() == "function" => {
                return Err(FeatureError::ModuleFunctions {
                    backend: name,
                    reason,
                    alternatives: alternatives(feature),
                })
            }
            Feature::ModuleFunctions => notes.push(FeatureNote::NoModuleFunctions {
                backend: name,
                reason,
            }),
            Feature::FuncIp => {}
        }
    }
    Ok(notes)
}

/// The backends that provide `feature`, as `--backend` values: "kprobe or kprobe-multi".
fn alternatives(feature: Feature) -> String {
    let mut names: Vec<&str> = all_backends()
        .filter(|b| b.supports(feature))
        .map(|b| b.name())
        .collect();
    names.sort_unstable();
    names.join(" or ")
}

/// Distinct skb argument positions among the targets, in order.
fn positions(targets: &[Target]) -> Vec<u16> {
    let mut p: Vec<u16> = targets.iter().map(|t| t.skb_arg).collect();
    p.sort_unstable();
    p.dedup();
    p
}

fn check_stop(stop: &AtomicBool) -> Result<(), AttachError> {
    if stop.load(Ordering::Relaxed) {
        Err(AttachError::Interrupted)
    } else {
        Ok(())
    }
}

/// Closes `fds` from up to `threads` threads, counting each on `progress`.
pub(crate) fn close_in_parallel(mut fds: Vec<OwnedFd>, threads: usize, progress: &dyn Progress) {
    let threads = threads.clamp(1, fds.len().max(1));
    let per_thread = fds.len().div_ceil(threads).max(1);
    let mut parts = Vec::with_capacity(threads);
    while fds.len() > per_thread {
        let tail = fds.split_off(fds.len() - per_thread);
        parts.push(tail);
    }
    parts.push(fds);
    std::thread::scope(|s| {
        for part in parts {
            // When a thread cannot be spawned the closure is dropped here, and with it its
            // share of the fds: they are then closed by this thread, just not in parallel.
            let _ = std::thread::Builder::new()
                .name("pwru-detach".into())
                .stack_size(64 << 10)
                .spawn_scoped(s, || {
                    for fd in part {
                        drop(fd);
                        progress.inc(1);
                    }
                });
        }
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    /// Progress that counts, for asserting what was reported.
    #[derive(Default)]
    pub(crate) struct CountingProgress {
        pub len: AtomicU64,
        pub done: AtomicU64,
    }

    impl Progress for CountingProgress {
        fn set_length(&self, len: u64) {
            self.len.store(len, Ordering::Relaxed);
        }
        fn inc(&self, n: u64) {
            self.done.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn target(name: &str, arg: u16) -> Target {
        Target {
            name: name.into(),
            module: None,
            skb_arg: arg,
            drop_reason_arg: None,
            nargs: 0,
            btf_id: 0,
            by_value: false,
            ftrace_addr: None,
        }
    }

    #[test]
    fn registry_has_every_kind_once_and_names_round_trip() {
        for kind in [
            BackendKind::KprobeMulti,
            BackendKind::Kprobe,
            BackendKind::Tracepoint,
            BackendKind::Fentry,
        ] {
            assert_eq!(REGISTRY.iter().filter(|(k, _)| *k == kind).count(), 1);
            assert_eq!(backend(kind).kind(), kind);
            assert_eq!(BackendKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(BackendKind::from_name("fexit"), None);
    }

    #[test]
    fn auto_takes_the_best_backend_this_kernel_runs() {
        let kernel = |kprobes, fprobe| KernelSupport { kprobes, fprobe };
        let pick = choose(None, &kernel(true, true)).unwrap();
        assert_eq!(
            (pick.kind, pick.auto_reason),
            (
                BackendKind::KprobeMulti,
                Some("kprobes and fprobe available")
            )
        );
        let pick = choose(None, &kernel(true, false)).unwrap();
        assert_eq!(
            (pick.kind, pick.auto_reason),
            (
                BackendKind::Kprobe,
                Some("no fprobe (CONFIG_FPROBE) for kprobe-multi")
            )
        );
        let pick = choose(None, &kernel(false, false)).unwrap();
        assert_eq!(
            (pick.kind, pick.auto_reason),
            (
                BackendKind::Tracepoint,
                Some("no kprobes on this kernel (CONFIG_KPROBES)")
            )
        );
        // fentry comes after tracepoint, which every kernel runs: auto never takes it.
        assert_eq!(REGISTRY.last().map(|(k, _)| *k), Some(BackendKind::Fentry));
        let named = choose(Some(BackendKind::Fentry), &kernel(false, false)).unwrap();
        assert_eq!((named.kind, named.auto_reason), (BackendKind::Fentry, None));
        let named = choose(Some(BackendKind::Kprobe), &kernel(true, false)).unwrap();
        assert_eq!((named.kind, named.auto_reason), (BackendKind::Kprobe, None));
    }

    #[test]
    fn a_named_backend_this_kernel_cannot_run_says_what_is_missing() {
        let none = KernelSupport {
            kprobes: false,
            fprobe: false,
        };
        for (kind, want) in [
            (BackendKind::Kprobe, "backend kprobe is not available: this kernel has no kprobes (CONFIG_KPROBES); use --backend tracepoint"),
            (BackendKind::KprobeMulti, "backend kprobe-multi is not available: this kernel has no kprobes (CONFIG_KPROBES); use --backend tracepoint"),
        ] {
            assert_eq!(choose(Some(kind), &none).unwrap_err().to_string(), want);
        }
        let no_fprobe = KernelSupport {
            kprobes: true,
            fprobe: false,
        };
        assert_eq!(
            choose(Some(BackendKind::KprobeMulti), &no_fprobe).unwrap_err().to_string(),
            "backend kprobe-multi is not available: this kernel has no fprobe (CONFIG_FPROBE, kernel 5.18+); use --backend kprobe"
        );
        assert!(choose(Some(BackendKind::Tracepoint), &none).is_ok());
    }

    #[test]
    fn feature_checks_name_the_flag() {
        let tp = backend(BackendKind::Tracepoint);
        assert_eq!(
            check_features(tp.as_ref(), &[Feature::Caller], None).unwrap_err().to_string(),
            "--output-caller is not supported with the tracepoint backend (a tracepoint has no caller frame to read); use --backend kprobe or kprobe-multi"
        );
        assert_eq!(
            check_features(tp.as_ref(), &[Feature::NonSkbFunctions], None).unwrap_err().to_string(),
            "--filter-non-skb-funcs needs a kprobe backend (it probes functions by name); the tracepoint backend has none: use --backend kprobe or kprobe-multi"
        );
        let no_kprobes = choose(
            None,
            &KernelSupport {
                kprobes: false,
                fprobe: false,
            },
        )
        .unwrap()
        .passed_over;
        assert_eq!(
            check_features(tp.as_ref(), &[Feature::NonSkbFunctions], no_kprobes.as_ref()).unwrap_err().to_string(),
            "--filter-non-skb-funcs needs a kprobe backend (it probes functions by name), and this kernel has no kprobes (CONFIG_KPROBES): the tracepoint backend cannot run it"
        );
        assert_eq!(
            check_features(tp.as_ref(), &[Feature::BpfHelpers], no_kprobes.as_ref()).unwrap_err().to_string(),
            "--filter-track-bpf-helpers needs a kprobe backend (it probes functions by name), and this kernel has no kprobes (CONFIG_KPROBES): the tracepoint backend cannot run it"
        );
        assert_eq!(
            check_features(tp.as_ref(), &[Feature::BpfHelpers], None).unwrap_err().to_string(),
            "--filter-track-bpf-helpers needs a kprobe backend (it probes functions by name); the tracepoint backend has none: use --backend kprobe or kprobe-multi"
        );
        let notes = check_features(tp.as_ref(), &[Feature::CloneFollowing], None).unwrap();
        assert_eq!(
            notes.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            ["with the tracepoint backend, --filter-track-skb does not follow clones and copies (skb_clone, skb_copy need kprobes)"]
        );
        let notes = check_features(tp.as_ref(), &[Feature::ModuleFunctions], None).unwrap();
        assert_eq!(
            notes.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            ["--kmods and --all-kmods do not apply to the tracepoint backend (it probes tracepoints, not functions; module functions need kprobes): only skb tracepoints that the modules define are added, none of their functions"]
        );
        assert!(notes[0].is_warning());
        for kind in [BackendKind::Kprobe, BackendKind::KprobeMulti] {
            let all = [
                Feature::Caller,
                Feature::NonSkbFunctions,
                Feature::BpfHelpers,
                Feature::CloneFollowing,
                Feature::FuncIp,
                Feature::ModuleFunctions,
            ];
            assert_eq!(
                check_features(backend(kind).as_ref(), &all, None),
                Ok(vec![])
            );
        }
        assert!(!tp.supports(Feature::FuncIp));
        // A function backend that cannot probe module functions refuses --kmods.
        let fentry = backend(BackendKind::Fentry);
        assert_eq!(
            check_features(fentry.as_ref(), &[Feature::ModuleFunctions], None).unwrap_err().to_string(),
            "--kmods and --all-kmods are not supported with the fentry backend (fentry on module functions needs the module's BTF object, not supported); use --backend kprobe or kprobe-multi"
        );
        assert_eq!(
            check_features(
                fentry.as_ref(),
                &[Feature::CloneFollowing, Feature::FuncIp],
                None
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn only_the_multi_link_refusal_falls_back() {
        let refused = AttachError::from(ObjectError::KprobeMultiUnsupported {
            program: "kpm_skb_1".into(),
        });
        assert!(refused.is_link_kind_refused());
        assert!(!AttachError::NothingAttached(3).is_link_kind_refused());
        assert_eq!(
            backend(BackendKind::KprobeMulti).fallback(),
            Some(BackendKind::Kprobe)
        );
        assert_eq!(backend(BackendKind::Kprobe).fallback(), None);
    }

    #[test]
    fn the_edge_prints_each_cause_once() {
        let chain = |e: AttachError| format!("{:#}", anyhow::Error::from(e));
        assert_eq!(
            chain(AttachError::Kprobe {
                function: "ip_rcv".into(),
                source: io::Error::from_raw_os_error(libc::EMFILE),
            }),
            "attaching a kprobe to `ip_rcv` failed, giving up: Too many open files (os error 24)"
        );
        assert_eq!(
            chain(AttachError::KprobePmu(io::Error::from_raw_os_error(libc::ENOENT))),
            "the kprobe PMU is unavailable (needs kernel 4.17+ with CONFIG_KPROBE_EVENTS): No such file or directory (os error 2)"
        );
        assert_eq!(
            chain(AttachError::from(ProbeError::Unsupported("x"))),
            "building the probe program: not supported: x"
        );
        let load = AttachError::from(LoadError::NotInObject("p".into()));
        assert_eq!(
            chain(load),
            "program `p` is missing from the object aya parsed (internal error)"
        );
    }

    #[test]
    fn parallel_close_closes_every_fd() {
        for (count, threads) in [(0, 64), (1, 64), (7, 3), (50, 1), (200, 64)] {
            let mut readers = Vec::new();
            let mut writers = Vec::new();
            for _ in 0..count {
                let (r, w) = std::io::pipe().unwrap();
                readers.push(OwnedFd::from(r));
                writers.push(w);
            }
            let progress = CountingProgress::default();
            close_in_parallel(readers, threads, &progress);
            assert_eq!(progress.done.load(Ordering::Relaxed), count as u64);
            for mut w in writers {
                // Every read end is closed: writing fails with EPIPE (SIGPIPE is ignored).
                let err = std::io::Write::write(&mut w, b"x").unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
            }
        }
    }
}
