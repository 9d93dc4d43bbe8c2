//! The kprobe backend: one perf-event kprobe per function (raw `perf_event_open` on the
//! kprobe PMU, program set by `PERF_EVENT_IOC_SET_BPF`), opened in parallel chunks; a large
//! set is handed to a background detacher. Also what both kprobe backends share.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::btf::KernelBtf;
use crate::fasthash::FastSet;
use crate::load::perf::{self, KprobePoint};
use crate::load::{LoadedObject, ProgKind, ProgramSpec};
use crate::probes::{Attachment, KprobeLink};

use super::background::{self, Handoff, HandoffError};
use super::{
    check_stop, close_in_parallel, positions, AttachError, AttachSummary, Backend, BackendKind,
    BackendOptions, BuildFn, Feature, KernelSupport, ListingScope, Locations, Probeable, Progress,
    Target, TargetNames, Unavailable, UntrackPoint,
};

/// What the kprobe backends need and lack on a kernel without kprobes.
pub(super) const NO_KPROBES: Unavailable = Unavailable {
    kernel_lacks: "this kernel has no kprobes (CONFIG_KPROBES)",
    hint: "use --backend tracepoint",
    auto_reason: "no kprobes on this kernel (CONFIG_KPROBES)",
};

/// The kprobe backends forget freed skbs in `kfree_skbmem`, where every skb ends.
pub(super) const UNTRACK_POINTS: &[UntrackPoint] = &[UntrackPoint::Kprobe("kfree_skbmem")];

/// Program name for the skb at argument `arg`.
pub(super) fn kprobe_program_name(multi: bool, arg: u16) -> String {
    if multi {
        format!("kpm_skb_{arg}")
    } else {
        format!("kprobe_skb_{arg}")
    }
}

/// One program per skb argument position among the targets, attached as `link` says.
pub(super) fn kprobe_programs(
    link: KprobeLink,
    targets: &[Target],
    build: &mut BuildFn<'_>,
) -> Result<Vec<ProgramSpec>, AttachError> {
    let multi = link.is_multi();
    positions(targets)
        .into_iter()
        .map(|arg| {
            let program = build(&Attachment::Kprobe {
                skb_arg: arg as u8,
                link,
                map_op: None,
            })?;
            Ok(ProgramSpec {
                name: kprobe_program_name(multi, arg),
                kind: if multi {
                    ProgKind::KProbeMulti
                } else {
                    ProgKind::KProbe
                },
                program,
            })
        })
        .collect()
}

/// The skb functions in BTF that the kernel can probe and `keep` accepts, with their
/// ftrace locations when `locations` asks for them (the kernel prints that list more
/// slowly: only kprobe-multi links use them).
pub(super) fn function_targets(
    btf: &KernelBtf,
    keep: &dyn Fn(&str) -> bool,
    locations: Locations,
) -> Result<Vec<Target>, AttachError> {
    let funcs = btf.skb_functions().map_err(|source| AttachError::Btf {
        what: "functions",
        source,
    })?;
    // (looked up once per line of a list of some 60 000)
    let names: FastSet<&str> = funcs.iter().map(|f| f.name.as_str()).collect();
    let scope = match funcs.iter().any(|f| f.module.is_some()) {
        true => ListingScope::WithModules,
        false => ListingScope::Vmlinux,
    };
    let probeable = Probeable::discover(&|name| names.contains(name), locations, scope);
    Ok(super::targets::select_functions(&funcs, &probeable, keep))
}

/// Events carry the function's address (kallsyms names it); drop reasons are read from
/// the function's `enum skb_drop_reason` parameter.
pub(super) fn function_target_names(targets: &[Target]) -> TargetNames {
    TargetNames {
        drop_reason_args: targets
            .iter()
            .filter_map(|t| Some((t.name.clone(), t.drop_reason_arg?)))
            .collect(),
        ..TargetNames::default()
    }
}

/// One perf-event kprobe per function, opened in parallel chunks.
pub struct KprobeBackend {
    /// The open kprobe events; closing one unregisters its kprobe.
    events: Vec<OwnedFd>,
    /// Targets per chunk (`--filter-kprobe-batch`), the unit threads take work in; `stop`
    /// is checked between chunks and before each kprobe.
    batch: usize,
    attach_threads: usize,
    detach_threads: usize,
    /// Never hand the kprobes to a background detacher.
    detach_wait: bool,
}

impl Default for KprobeBackend {
    fn default() -> Self {
        KprobeBackend::new(10)
    }
}

impl KprobeBackend {
    /// The registry's constructor.
    pub fn create(opts: &BackendOptions) -> Box<dyn Backend> {
        let mut b = KprobeBackend::new(opts.kprobe_batch)
            .with_threads(opts.attach_threads, opts.detach_threads);
        b.detach_wait = opts.detach_wait;
        Box::new(b)
    }

    /// A backend attaching `batch` functions per chunk.
    pub fn new(batch: usize) -> Self {
        KprobeBackend {
            events: Vec::new(),
            batch: batch.max(1),
            attach_threads: super::KPROBE_ATTACH_THREADS,
            detach_threads: super::KPROBE_DETACH_THREADS,
            detach_wait: false,
        }
    }

    /// Threads used to attach and to detach (at least 1 each).
    pub fn with_threads(mut self, attach: usize, detach: usize) -> Self {
        self.attach_threads = attach.max(1);
        self.detach_threads = detach.max(1);
        self
    }

    /// Number of kprobe events currently open.
    pub fn attached(&self) -> usize {
        self.events.len()
    }

    /// Opens the kprobe of one target and hooks `prog` to it.
    fn attach_one(pmu: u32, prog: BorrowedFd<'_>, t: &Target) -> io::Result<OwnedFd> {
        // A name with a NUL cannot be a kernel symbol: refused like an unknown one.
        let name = CString::new(t.name.as_str())
            .map_err(|_| io::Error::from_raw_os_error(libc::ENOENT))?;
        let event = perf::open_kprobe(pmu, KprobePoint::Symbol(&name))?;
        perf::attach_bpf(event.as_fd(), prog)?;
        Ok(event)
    }
}

/// Errors that stop attaching altogether: the process or the kernel ran out of something,
/// so later kprobes would fail the same way. Everything else (ENOENT, EADDRNOTAVAIL,
/// EINVAL for blacklisted functions, EBUSY ...) skips one function.
fn kprobe_error_is_fatal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
    )
}

/// What one attach worker did.
#[derive(Default)]
struct WorkerResult {
    events: Vec<OwnedFd>,
    ignored: usize,
    fatal: Option<(String, io::Error)>,
}

impl Backend for KprobeBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Kprobe
    }

    fn noun(&self) -> &'static str {
        "kprobes"
    }

    fn target_noun(&self) -> &'static str {
        "function"
    }

    fn auto_reason(&self) -> &'static str {
        "kprobes available"
    }

    fn available(&self, kernel: &KernelSupport) -> Result<(), Unavailable> {
        if kernel.kprobes {
            Ok(())
        } else {
            Err(NO_KPROBES)
        }
    }

    fn lacks(&self, _feature: Feature) -> Option<&'static str> {
        None
    }

    fn programs(
        &self,
        targets: &[Target],
        build: &mut BuildFn<'_>,
    ) -> Result<Vec<ProgramSpec>, AttachError> {
        kprobe_programs(KprobeLink::Perf, targets, build)
    }

    fn attach(
        &mut self,
        obj: &mut LoadedObject,
        targets: &[Target],
        progress: &dyn Progress,
        stop: &AtomicBool,
    ) -> Result<AttachSummary, AttachError> {
        check_stop(stop)?;
        let pmu = perf::kprobe_pmu_type().map_err(AttachError::KprobePmu)?;
        let mut programs: HashMap<u16, BorrowedFd<'_>> = HashMap::new();
        for arg in positions(targets) {
            programs.insert(arg, obj.program_fd(&kprobe_program_name(false, arg))?);
        }
        let chunks: Vec<&[Target]> = targets.chunks(self.batch).collect();
        let next = AtomicUsize::new(0);
        let abort = AtomicBool::new(false);
        let threads = self.attach_threads.clamp(1, chunks.len().max(1));
        // Each kprobe's teardown on a failed attach, and each RCU wait while registering,
        // is a grace period: expedite them for the duration.
        let _rcu = perf::ExpeditedRcu::enable();
        let worker = || {
            let mut out = WorkerResult::default();
            while !stop.load(Ordering::Relaxed) && !abort.load(Ordering::Relaxed) {
                let Some(chunk) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                for t in *chunk {
                    // Ctrl-C should not wait for the rest of a chunk (tens of ms per kprobe).
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match Self::attach_one(pmu, programs[&t.skb_arg], t) {
                        Ok(fd) => out.events.push(fd),
                        Err(e) if kprobe_error_is_fatal(&e) => {
                            out.fatal = Some((t.name.clone(), e));
                            abort.store(true, Ordering::Relaxed);
                            break;
                        }
                        Err(_) => out.ignored += 1,
                    }
                    progress.inc(1);
                }
            }
            out
        };
        let results: Vec<WorkerResult> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..threads)
                .filter_map(|_| {
                    std::thread::Builder::new()
                        .name("pwru-attach".into())
                        .spawn_scoped(s, worker)
                        .ok()
                })
                .collect();
            // This thread works too, so a failed spawn only means fewer helpers.
            let mut all = vec![worker()];
            for h in handles {
                all.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            }
            all
        });
        let mut summary = AttachSummary::default();
        let mut fatal = None;
        for r in results {
            summary.attached += r.events.len();
            summary.ignored += r.ignored;
            self.events.extend(r.events);
            fatal = fatal.or(r.fatal);
        }
        if let Some((function, source)) = fatal {
            return Err(AttachError::Kprobe { function, source });
        }
        check_stop(stop)?;
        Ok(summary)
    }

    /// A large kprobe set takes the kernel many seconds to unregister: unless told to wait,
    /// [`background::BACKGROUND_MIN_KPROBES`] or more go to a detacher process, with the
    /// helper programs' kprobes, and the prompt comes back now.
    fn hand_off(&mut self) -> Option<Result<Handoff, HandoffError>> {
        if self.detach_wait || self.events.len() < background::BACKGROUND_MIN_KPROBES {
            return None;
        }
        let mut events = std::mem::take(&mut self.events);
        let helpers = background::other_perf_events(&events);
        events.extend(helpers);
        match background::hand_off(events) {
            Ok(handoff) => Some(Ok(handoff)),
            Err((e, events)) => {
                self.events = events;
                Some(Err(e))
            }
        }
    }

    fn detach(&mut self, _obj: &mut LoadedObject, progress: &dyn Progress) {
        let events = std::mem::take(&mut self.events);
        close_kprobes(events, self.detach_threads, progress);
    }
}

/// Closes perf kprobe events from `threads` threads with expedited RCU grace periods.
pub fn close_kprobes(events: Vec<OwnedFd>, threads: usize, progress: &dyn Progress) {
    if events.is_empty() {
        return;
    }
    progress.set_length(events.len() as u64);
    // Closing a perf kprobe waits for RCU grace periods while holding the kernel's
    // event_mutex, one kprobe after the other: expedited grace periods and parallel
    // closes (which overlap the waits outside that mutex) more than halve the time.
    // (PERF_EVENT_IOC_DISABLE first was measured: no faster, and BPF programs on
    // kprobe events keep running while disabled, so it buys nothing.)
    let _rcu = perf::ExpeditedRcu::enable();
    close_in_parallel(events, threads, progress);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::Program;
    use crate::attach::tests::target;

    #[test]
    fn one_kprobe_program_per_argument_position() {
        let targets = [target("a", 1), target("b", 3), target("c", 1)];
        let mut built = Vec::new();
        let specs = KprobeBackend::default()
            .programs(&targets, &mut |a: &Attachment| {
                built.push(a.clone());
                Ok(Program::default())
            })
            .unwrap();
        let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["kprobe_skb_1", "kprobe_skb_3"]);
        assert_eq!(
            built,
            [
                Attachment::Kprobe {
                    skb_arg: 1,
                    link: KprobeLink::Perf,
                    map_op: None,
                },
                Attachment::Kprobe {
                    skb_arg: 3,
                    link: KprobeLink::Perf,
                    map_op: None,
                }
            ]
        );
    }

    #[test]
    fn resource_exhaustion_stops_attaching_other_errors_skip_a_function() {
        for (errno, fatal) in [
            (libc::EMFILE, true),
            (libc::ENFILE, true),
            (libc::ENOMEM, true),
            (libc::ENOENT, false),
            (libc::EADDRNOTAVAIL, false),
            (libc::EINVAL, false),
            (libc::EBUSY, false),
            (libc::EEXIST, false),
        ] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(kprobe_error_is_fatal(&e), fatal, "{e}");
        }
    }

    #[test]
    fn kprobe_backend_settings() {
        let b = KprobeBackend::new(0).with_threads(0, 0);
        assert_eq!((b.batch, b.attach_threads, b.detach_threads), (1, 1, 1));
        let b = KprobeBackend::default();
        assert_eq!(b.batch, 10);
        assert_eq!(b.attached(), 0);
        assert!(!b.detach_wait);
    }

    #[test]
    fn few_kprobes_or_detach_wait_stay_in_the_foreground() {
        let mut b = KprobeBackend::default();
        assert!(
            b.hand_off().is_none(),
            "nothing attached: nothing to hand off"
        );
        b.detach_wait = true;
        assert!(b.hand_off().is_none());
    }

    #[test]
    fn drop_reasons_are_read_from_function_parameters() {
        let mut t = target("kfree_skb_reason", 1);
        t.drop_reason_arg = Some(2);
        let names = KprobeBackend::default().target_names(&[t, target("ip_rcv", 1)]);
        assert!(names.probe_names.is_empty());
        assert_eq!(
            names.drop_reason_args,
            HashMap::from([("kfree_skb_reason".to_string(), 2)])
        );
    }
}
