//! Attaching the generated programs: one trait, three backends (kprobe-multi links,
//! per-function perf-event kprobes, raw tracepoints), and the choice `auto` makes.

pub mod background;
pub mod targets;

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aya::programs::raw_trace_point::RawTracePointLinkId;
use indicatif::ProgressBar;

use crate::asm::Program;
use crate::load::perf::{self, KprobePoint};
use crate::load::{KprobeMultiOptions, LoadedObject, ObjectError, ProgKind, ProgramSpec};
use crate::probes::{Attachment, ProbeError};

pub use targets::{kprobes_available, Probeable, ProbeableSource, Target};

/// The attach mechanisms we have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    KprobeMulti,
    Kprobe,
    Tracepoint,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::KprobeMulti => "kprobe-multi",
            BackendKind::Kprobe => "kprobe",
            BackendKind::Tracepoint => "tracepoint",
        }
    }
}

/// How many targets were attached and how many the kernel refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttachSummary {
    pub attached: usize,
    pub ignored: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("interrupted while attaching")]
    Interrupted,
    #[error("building the probe program: {0}")]
    Probe(#[from] ProbeError),
    #[error("{0}")]
    Object(#[from] ObjectError),
    #[error("no probe could be attached ({0} refused by the kernel)")]
    NothingAttached(usize),
    #[error("the kprobe PMU is unavailable (needs kernel 4.17+ with CONFIG_KPROBE_EVENTS): {0}")]
    KprobePmu(#[source] io::Error),
    #[error("attaching a kprobe to `{function}` failed, giving up: {source}")]
    Kprobe {
        function: String,
        #[source]
        source: io::Error,
    },
}

/// Builds the probe program for one attachment point.
pub type BuildFn<'a> = dyn FnMut(&Attachment) -> Result<Program, ProbeError> + 'a;

/// One way of hooking the probe programs into the kernel.
pub trait Backend {
    fn kind(&self) -> BackendKind;
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
        progress: &ProgressBar,
        stop: &AtomicBool,
    ) -> Result<AttachSummary, AttachError>;
    /// Detaches everything `attach` attached.
    fn detach(&mut self, obj: &mut LoadedObject, progress: &ProgressBar);
    /// Takes the attached per-function kprobe events out of the backend, for a caller that
    /// closes them elsewhere ([`background::hand_off`]); backends whose links are few and
    /// fast to close keep them and return none.
    fn take_kprobe_events(&mut self) -> Vec<OwnedFd> {
        Vec::new()
    }
}

/// Makes the backend of `kind` with default settings.
pub fn backend(kind: BackendKind) -> Box<dyn Backend> {
    backend_with(kind, BackendOptions::default())
}

/// Settings of the backends that the command line controls.
#[derive(Clone, Debug)]
pub struct BackendOptions {
    /// Functions per attach chunk of the kprobe backend (`--filter-kprobe-batch`).
    pub kprobe_batch: usize,
    pub attach_threads: usize,
    pub detach_threads: usize,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            kprobe_batch: 10,
            attach_threads: KPROBE_ATTACH_THREADS,
            detach_threads: KPROBE_DETACH_THREADS,
        }
    }
}

/// Makes the backend of `kind` with `opts`.
pub fn backend_with(kind: BackendKind, opts: BackendOptions) -> Box<dyn Backend> {
    match kind {
        BackendKind::KprobeMulti => Box::new(KprobeMultiBackend::default()),
        BackendKind::Kprobe => Box::new(
            KprobeBackend::new(opts.kprobe_batch)
                .with_threads(opts.attach_threads, opts.detach_threads),
        ),
        BackendKind::Tracepoint => Box::new(TracepointBackend::default()),
    }
}

fn kprobe_program_name(multi: bool, arg: u16) -> String {
    if multi {
        format!("kpm_skb_{arg}")
    } else {
        format!("kprobe_skb_{arg}")
    }
}

/// Distinct skb argument positions among the targets, in order.
fn positions(targets: &[Target]) -> Vec<u16> {
    let mut p: Vec<u16> = targets.iter().map(|t| t.skb_arg).collect();
    p.sort_unstable();
    p.dedup();
    p
}

fn kprobe_programs(
    multi: bool,
    targets: &[Target],
    build: &mut BuildFn<'_>,
) -> Result<Vec<ProgramSpec>, AttachError> {
    positions(targets)
        .into_iter()
        .map(|arg| {
            let program = build(&Attachment::Kprobe {
                skb_arg: arg as u8,
                multi,
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

fn check_stop(stop: &AtomicBool) -> Result<(), AttachError> {
    if stop.load(Ordering::Relaxed) {
        Err(AttachError::Interrupted)
    } else {
        Ok(())
    }
}

/// One kprobe_multi link per skb argument position, over all its functions.
#[derive(Default)]
pub struct KprobeMultiBackend {
    links: Vec<OwnedFd>,
}

impl KprobeMultiBackend {
    /// Creates a link for `symbols`; when the kernel refuses the set (one function it will
    /// not probe spoils the whole link), halves it to isolate and skip the refused ones.
    fn attach_set(
        &mut self,
        obj: &LoadedObject,
        program: &str,
        symbols: &[String],
        summary: &mut AttachSummary,
        progress: &ProgressBar,
        stop: &AtomicBool,
    ) -> Result<(), AttachError> {
        check_stop(stop)?;
        let opts = KprobeMultiOptions {
            symbols: symbols.to_vec(),
            cookies: Vec::new(),
            retprobe: false,
        };
        match obj.attach_kprobe_multi(program, &opts) {
            Ok(link) => {
                self.links.push(link);
                summary.attached += symbols.len();
                progress.inc(symbols.len() as u64);
                Ok(())
            }
            Err(e @ ObjectError::KprobeMultiUnsupported { .. }) => Err(e.into()),
            Err(_) if symbols.len() == 1 => {
                summary.ignored += 1;
                progress.inc(1);
                Ok(())
            }
            Err(_) => {
                let (a, b) = symbols.split_at(symbols.len() / 2);
                self.attach_set(obj, program, a, summary, progress, stop)?;
                self.attach_set(obj, program, b, summary, progress, stop)
            }
        }
    }
}

impl Backend for KprobeMultiBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::KprobeMulti
    }

    fn programs(
        &self,
        targets: &[Target],
        build: &mut BuildFn<'_>,
    ) -> Result<Vec<ProgramSpec>, AttachError> {
        kprobe_programs(true, targets, build)
    }

    fn attach(
        &mut self,
        obj: &mut LoadedObject,
        targets: &[Target],
        progress: &ProgressBar,
        stop: &AtomicBool,
    ) -> Result<AttachSummary, AttachError> {
        let mut summary = AttachSummary::default();
        for arg in positions(targets) {
            let symbols: Vec<String> = targets
                .iter()
                .filter(|t| t.skb_arg == arg)
                .map(|t| t.name.clone())
                .collect();
            self.attach_set(
                obj,
                &kprobe_program_name(true, arg),
                &symbols,
                &mut summary,
                progress,
                stop,
            )?;
        }
        Ok(summary)
    }

    fn detach(&mut self, _obj: &mut LoadedObject, progress: &ProgressBar) {
        // One link per skb position (a handful): each close waits for its own grace
        // periods, so close them side by side.
        let links = std::mem::take(&mut self.links);
        progress.set_length(links.len() as u64);
        close_in_parallel(links, KPROBE_DETACH_THREADS, progress);
    }
}

/// Default number of threads that open kprobes; the kernel serializes registration on its
/// mutexes, so more threads only overlap the perf/BPF parts (no gain measured on 1 vCPU).
pub const KPROBE_ATTACH_THREADS: usize = 4;
/// Threads that close kprobe events at detach: each close waits for RCU grace periods
/// outside the kernel's locks, so many closers share the same grace periods.
pub const KPROBE_DETACH_THREADS: usize = 64;

/// One perf-event kprobe per function (raw `perf_event_open` on the kprobe PMU with the
/// program set by `PERF_EVENT_IOC_SET_BPF`), opened in parallel chunks.
pub struct KprobeBackend {
    /// The open kprobe events; closing one unregisters its kprobe.
    events: Vec<OwnedFd>,
    /// Targets per chunk (`--filter-kprobe-batch`), the unit threads take work in; `stop`
    /// is checked between chunks and before each kprobe.
    batch: usize,
    attach_threads: usize,
    detach_threads: usize,
}

impl Default for KprobeBackend {
    fn default() -> Self {
        KprobeBackend::new(10)
    }
}

impl KprobeBackend {
    /// A backend attaching `batch` functions per chunk.
    pub fn new(batch: usize) -> Self {
        KprobeBackend {
            events: Vec::new(),
            batch: batch.max(1),
            attach_threads: KPROBE_ATTACH_THREADS,
            detach_threads: KPROBE_DETACH_THREADS,
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

/// Closes `fds` from up to `threads` threads, counting each on `progress`.
pub(crate) fn close_in_parallel(mut fds: Vec<OwnedFd>, threads: usize, progress: &ProgressBar) {
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

impl Backend for KprobeBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Kprobe
    }

    fn programs(
        &self,
        targets: &[Target],
        build: &mut BuildFn<'_>,
    ) -> Result<Vec<ProgramSpec>, AttachError> {
        kprobe_programs(false, targets, build)
    }

    fn attach(
        &mut self,
        obj: &mut LoadedObject,
        targets: &[Target],
        progress: &ProgressBar,
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

    fn take_kprobe_events(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.events)
    }

    fn detach(&mut self, _obj: &mut LoadedObject, progress: &ProgressBar) {
        let events = std::mem::take(&mut self.events);
        close_kprobes(events, self.detach_threads, progress);
    }
}

/// Closes perf kprobe events from `threads` threads with expedited RCU grace periods.
pub fn close_kprobes(events: Vec<OwnedFd>, threads: usize, progress: &ProgressBar) {
    if events.is_empty() {
        return;
    }
    {
        progress.set_length(events.len() as u64);
        // Closing a perf kprobe waits for RCU grace periods while holding the kernel's
        // event_mutex, one kprobe after the other: expedited grace periods and parallel
        // closes (which overlap the waits outside that mutex) more than halve the time.
        // (PERF_EVENT_IOC_DISABLE first was measured: no faster, and BPF programs on
        // kprobe events keep running while disabled, so it buys nothing.)
        let _rcu = perf::ExpeditedRcu::enable();
        close_in_parallel(events, threads, progress);
    }
}

/// One raw tracepoint program per tracepoint that carries an skb.
#[derive(Default)]
pub struct TracepointBackend {
    links: Vec<(String, RawTracePointLinkId)>,
}

/// Program name of the tracepoint target at `index` (the event's probe id).
pub fn tracepoint_program_name(index: usize) -> String {
    format!("tp_skb_{index}")
}

impl Backend for TracepointBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Tracepoint
    }

    fn programs(
        &self,
        targets: &[Target],
        build: &mut BuildFn<'_>,
    ) -> Result<Vec<ProgramSpec>, AttachError> {
        targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let program = build(&Attachment::Tracepoint {
                    id: i as u32,
                    skb_arg: t.skb_arg,
                    nargs: t.nargs,
                    drop_reason_arg: t.drop_reason_arg,
                })?;
                Ok(ProgramSpec {
                    name: tracepoint_program_name(i),
                    kind: ProgKind::RawTracepoint(t.name.clone()),
                    program,
                })
            })
            .collect()
    }

    fn attach(
        &mut self,
        obj: &mut LoadedObject,
        targets: &[Target],
        progress: &ProgressBar,
        stop: &AtomicBool,
    ) -> Result<AttachSummary, AttachError> {
        let mut summary = AttachSummary::default();
        for i in 0..targets.len() {
            check_stop(stop)?;
            let program = tracepoint_program_name(i);
            match obj.attach_raw_tp(&program) {
                Ok(id) => {
                    self.links.push((program, id));
                    summary.attached += 1;
                }
                Err(_) => summary.ignored += 1,
            }
            progress.inc(1);
        }
        Ok(summary)
    }

    fn detach(&mut self, obj: &mut LoadedObject, progress: &ProgressBar) {
        progress.set_length(self.links.len() as u64);
        for (program, id) in self.links.drain(..) {
            let _ = obj.detach_raw_tp(&program, id);
            progress.inc(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, arg: u16) -> Target {
        Target {
            name: name.into(),
            module: None,
            skb_arg: arg,
            drop_reason_arg: None,
            nargs: 0,
        }
    }

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
                    multi: false
                },
                Attachment::Kprobe {
                    skb_arg: 3,
                    multi: false
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
    fn parallel_close_closes_every_fd() {
        for (count, threads) in [(0, 64), (1, 64), (7, 3), (50, 1), (200, 64)] {
            let mut readers = Vec::new();
            let mut writers = Vec::new();
            for _ in 0..count {
                let (r, w) = std::io::pipe().unwrap();
                readers.push(OwnedFd::from(r));
                writers.push(w);
            }
            let pb = ProgressBar::hidden();
            close_in_parallel(readers, threads, &pb);
            assert_eq!(pb.position(), count as u64);
            for mut w in writers {
                // Every read end is closed: writing fails with EPIPE (SIGPIPE is ignored).
                let err = std::io::Write::write(&mut w, b"x").unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
            }
        }
    }

    #[test]
    fn kprobe_backend_settings() {
        let b = KprobeBackend::new(0).with_threads(0, 0);
        assert_eq!((b.batch, b.attach_threads, b.detach_threads), (1, 1, 1));
        let b = KprobeBackend::default();
        assert_eq!(b.batch, 10);
        assert_eq!(b.attached(), 0);
    }

    #[test]
    fn one_tracepoint_program_per_tracepoint() {
        let targets = [target("kfree_skb", 0), target("consume_skb", 0)];
        let specs = TracepointBackend::default()
            .programs(&targets, &mut |_: &Attachment| Ok(Program::default()))
            .unwrap();
        assert_eq!(specs[1].name, "tp_skb_1");
        assert_eq!(specs[1].kind, ProgKind::RawTracepoint("consume_skb".into()));
    }
}
