//! The fentry backend: one `BPF_PROG_TYPE_TRACING` program per kernel function, loaded
//! with the function's BTF id and attached by a BPF link (5.5+, `bpf_get_func_ip` 5.15+).
//!
//! The kernel verifies each program on its own (a tracing program is bound to one
//! function), so the programs are loaded from several threads; every function with its skb
//! at the same position shares one generated program, its map fds patched in once
//! ([`crate::load::KernelFentry`]). Functions fentry cannot take (a struct
//! passed by value, a module function, or refused by the kernel) are skipped and counted,
//! with the reason for `--debug`. The untrack and clone helpers are the kprobes the kprobe
//! backends use.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::load::{self, LoadError, LoadedObject, ProgKind, ProgramSpec, TracingLink};
use crate::probes::Attachment;

use super::background::{self, Handoff, HandoffError};
use super::{
    check_stop, close_in_parallel, AttachError, AttachSummary, Backend, BackendKind,
    BackendOptions, BuildFn, Feature, KernelSupport, Progress, Target, Unavailable,
    KPROBE_DETACH_THREADS,
};

/// Why a target is not even tried, or `None`.
fn unfit(t: &Target) -> Option<String> {
    if let Some(module) = &t.module {
        return Some(format!(
            "a function of module {module} (fentry on module functions is not supported)"
        ));
    }
    if t.by_value {
        return Some("a struct or union is passed or returned by value".into());
    }
    if t.btf_id == 0 {
        return Some("no BTF id".into());
    }
    None
}

/// The kernel name of the program for functions with their skb at `skb_arg`.
fn program_name(skb_arg: u16) -> String {
    format!("fentry_skb_{skb_arg}")
}

/// A function the kernel refused and why, from the errno and the verifier log's last line.
fn refusal(e: &LoadError) -> String {
    match e {
        LoadError::Rejected { errno, log, .. } => {
            // The verifier's reason is the last line before its statistics.
            let last = log.full().lines().rev().find(|l| {
                let l = l.trim();
                !l.is_empty()
                    && !l.starts_with("processed ")
                    && !l.starts_with("verification time")
                    && !l.starts_with("stack depth")
            });
            // ENOTSUPP (524, kernel-internal): the trampoline cannot take the function.
            let errno = match errno.raw_os_error() {
                Some(524) => "the trampoline cannot take it (ENOTSUPP)".to_string(),
                _ => errno.to_string(),
            };
            match last {
                Some(l) => format!("{errno} ({})", l.trim()),
                None => errno,
            }
        }
        e => e.to_string(),
    }
}

/// Errors that stop attaching: the process or the kernel ran out of something.
fn is_fatal(e: &LoadError) -> Option<&io::Error> {
    match e {
        LoadError::Rejected { errno, .. }
            if matches!(
                errno.raw_os_error(),
                Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EPERM)
            ) =>
        {
            Some(errno)
        }
        _ => None,
    }
}

/// One attached function.
struct Attached {
    function: String,
    link: TracingLink,
}

/// What one attach worker did.
#[derive(Default)]
struct WorkerResult {
    attached: Vec<Attached>,
    skipped: Vec<(String, String)>,
    fatal: Option<(String, LoadError)>,
}

/// One fentry program per function, loaded and attached from several threads.
pub struct FentryBackend {
    attached: Vec<Attached>,
    /// Functions skipped and why.
    skipped: Vec<(String, String)>,
    attach_threads: usize,
    detach_threads: usize,
    /// Never hand the links to a background detacher (`--detach-wait`).
    detach_wait: bool,
}

impl Default for FentryBackend {
    fn default() -> Self {
        FentryBackend {
            attached: Vec::new(),
            skipped: Vec::new(),
            attach_threads: FENTRY_ATTACH_THREADS,
            detach_threads: KPROBE_DETACH_THREADS,
            detach_wait: false,
        }
    }
}

/// Threads that load and attach: each load is a verifier run (CPU-bound), each attach a
/// trampoline update; more threads than CPUs gain nothing.
const FENTRY_ATTACH_THREADS: usize = 8;

impl FentryBackend {
    /// The registry's constructor.
    pub fn create(opts: &BackendOptions) -> Box<dyn Backend> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Box::new(FentryBackend {
            attach_threads: cpus.clamp(1, FENTRY_ATTACH_THREADS),
            detach_threads: opts.detach_threads.max(1),
            detach_wait: opts.detach_wait,
            ..FentryBackend::default()
        })
    }

    /// Functions attached now.
    pub fn attached(&self) -> usize {
        self.attached.len()
    }
}

impl Backend for FentryBackend {
    fn loads_through_aya(&self) -> bool {
        false
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Fentry
    }

    fn noun(&self) -> &'static str {
        "fentry programs"
    }

    fn target_noun(&self) -> &'static str {
        "function"
    }

    fn auto_reason(&self) -> &'static str {
        "fentry available"
    }

    /// Whether fentry loads here is known only by trying ([`Backend::check`]).
    fn available(&self, _kernel: &KernelSupport) -> Result<(), Unavailable> {
        Ok(())
    }

    fn check(&self, targets: &[Target]) -> Result<(), AttachError> {
        let Some(t) = targets.iter().find(|t| unfit(t).is_none()) else {
            return Ok(());
        };
        load::check_kernel_fentry(t.btf_id).map_err(AttachError::FentryUnavailable)
    }

    fn lacks(&self, feature: Feature) -> Option<&'static str> {
        match feature {
            Feature::Caller => {
                Some("an fentry program has no pt_regs to read the return address from")
            }
            Feature::NonSkbFunctions | Feature::BpfHelpers => {
                Some("it probes skb functions by their BTF id")
            }
            Feature::ModuleFunctions => {
                Some("fentry on module functions needs the module's BTF object, not supported")
            }
            Feature::CloneFollowing | Feature::FuncIp => None,
        }
    }

    fn programs(
        &self,
        targets: &[Target],
        build: &mut BuildFn<'_>,
    ) -> Result<Vec<ProgramSpec>, AttachError> {
        let positions: BTreeSet<u16> = targets
            .iter()
            .filter(|t| unfit(t).is_none())
            .map(|t| t.skb_arg)
            .collect();
        positions
            .into_iter()
            .map(|arg| {
                let program = build(&Attachment::Fentry { skb_arg: arg as u8 })?;
                Ok(ProgramSpec {
                    name: program_name(arg),
                    kind: ProgKind::Fentry,
                    program,
                })
            })
            .collect()
    }

    fn attach(
        &mut self,
        obj: &mut LoadedObject,
        targets: &[Target],
        progress: &dyn Progress,
        stop: &AtomicBool,
    ) -> Result<AttachSummary, AttachError> {
        check_stop(stop)?;
        let mut todo = Vec::new();
        for t in targets {
            match unfit(t) {
                Some(why) => {
                    self.skipped.push((t.name.clone(), why));
                    progress.inc(1);
                }
                None => todo.push(t),
            }
        }
        let obj = &*obj;
        let level = load::VerifierLogLevel::default();
        let next = AtomicUsize::new(0);
        let abort = AtomicBool::new(false);
        let worker = || {
            let mut out = WorkerResult::default();
            while !stop.load(Ordering::Relaxed) && !abort.load(Ordering::Relaxed) {
                let Some(t) = todo.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let result = obj
                    .kernel_fentry(&program_name(t.skb_arg))
                    .map_err(|e| LoadError::Rejected {
                        program: t.name.clone(),
                        errno: io::Error::from_raw_os_error(libc::ENOENT),
                        log: load::VerifierLog::new(e.to_string()),
                    })
                    .and_then(|p| p.attach(t.btf_id, level));
                match result {
                    Ok(link) => out.attached.push(Attached {
                        function: t.name.clone(),
                        link,
                    }),
                    Err(e) if is_fatal(&e).is_some() => {
                        out.fatal = Some((t.name.clone(), e));
                        abort.store(true, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => out.skipped.push((t.name.clone(), refusal(&e))),
                }
                progress.inc(1);
            }
            out
        };
        let threads = self.attach_threads.clamp(1, todo.len().max(1));
        let results: Vec<WorkerResult> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..threads)
                .filter_map(|_| {
                    std::thread::Builder::new()
                        .name("pwru-attach".into())
                        .spawn_scoped(s, worker)
                        .ok()
                })
                .collect();
            let mut all = vec![worker()];
            for h in handles {
                all.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            }
            all
        });
        let mut fatal = None;
        for r in results {
            self.attached.extend(r.attached);
            self.skipped.extend(r.skipped);
            fatal = fatal.or(r.fatal);
        }
        self.skipped.sort();
        if let Some((function, e)) = fatal {
            let source = match e {
                LoadError::Rejected { errno, .. } => errno,
                e => io::Error::other(e.to_string()),
            };
            return Err(AttachError::Fentry { function, source });
        }
        check_stop(stop)?;
        Ok(AttachSummary {
            attached: self.attached.len(),
            ignored: self.skipped.len(),
        })
    }

    fn skipped(&self) -> &[(String, String)] {
        &self.skipped
    }

    fn recursion_misses(&self) -> Vec<(String, u64)> {
        self.attached
            .iter()
            .filter_map(|a| {
                let info = load::prog_info(a.link.prog.as_fd()).ok()?;
                (info.recursion_misses > 0)
                    .then(|| (format!("fentry on {}", a.function), info.recursion_misses))
            })
            .collect()
    }

    /// Closing a link takes its function's trampoline down, and the kernel waits for RCU
    /// tasks grace periods under its ftrace lock for each, one function after the other
    /// (about 0.17 s per function under emulation, whatever the threads): unless told to
    /// wait, [`background::BACKGROUND_MIN_KPROBES`] or more go to the detacher process with
    /// the helper programs' kprobes, and the prompt comes back now.
    fn hand_off(&mut self) -> Option<Result<Handoff, HandoffError>> {
        if self.detach_wait || self.attached.len() < background::BACKGROUND_MIN_KPROBES {
            return None;
        }
        let attached = std::mem::take(&mut self.attached);
        let functions = attached.len();
        let mut fds: Vec<OwnedFd> = Vec::with_capacity(functions * 2);
        let mut names = Vec::with_capacity(functions);
        for a in attached {
            fds.push(a.link.link);
            fds.push(a.link.prog);
            names.push(a.function);
        }
        let helpers = background::other_perf_events(&fds);
        let ours = fds.len();
        fds.extend(helpers);
        match background::hand_off(fds) {
            Ok(h) => Some(Ok(Handoff {
                pid: h.pid,
                count: functions,
            })),
            Err((e, mut fds)) => {
                // Ours come back in the order they were sent; the helpers' duplicates go.
                fds.truncate(ours);
                let mut it = fds.into_iter();
                for function in names {
                    let (Some(link), Some(prog)) = (it.next(), it.next()) else {
                        break;
                    };
                    self.attached.push(Attached {
                        function,
                        link: TracingLink { link, prog },
                    });
                }
                Some(Err(e))
            }
        }
    }

    fn detach(&mut self, _obj: &mut LoadedObject, progress: &dyn Progress) {
        let attached = std::mem::take(&mut self.attached);
        // Closing a link takes its function's trampoline down; the program goes with it.
        let mut fds: Vec<OwnedFd> = Vec::with_capacity(attached.len() * 2);
        let mut progs = Vec::with_capacity(attached.len());
        for a in attached {
            fds.push(a.link.link);
            progs.push(a.link.prog);
        }
        progress.set_length(fds.len() as u64);
        close_in_parallel(fds, self.detach_threads, progress);
        drop(progs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::Program;
    use crate::attach::tests::target;

    fn func(name: &str, skb_arg: u16, nargs: u16) -> Target {
        let mut t = target(name, skb_arg);
        t.nargs = nargs;
        t.btf_id = 100;
        t
    }

    #[test]
    fn one_program_per_skb_position() {
        let mut by_value = func("by_value", 1, 2);
        by_value.by_value = true;
        let mut module = func("veth_xmit", 1, 2);
        module.module = Some("veth".into());
        let targets = [
            func("ip_rcv", 1, 4),
            func("kfree_skb_reason", 1, 2),
            func("consume_skb", 1, 1),
            func("ip_output", 3, 3),
            func("dev_queue_xmit_nit", 1, 5),
            func("late", 5, 6),
            by_value,
            module,
        ];
        let mut built = Vec::new();
        let specs = FentryBackend::default()
            .programs(&targets, &mut |a: &Attachment| {
                built.push(a.clone());
                Ok(Program::default())
            })
            .unwrap();
        let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["fentry_skb_1", "fentry_skb_3", "fentry_skb_5"]);
        assert!(specs.iter().all(|s| s.kind == ProgKind::Fentry));
        assert_eq!(
            built,
            [1, 3, 5].map(|skb_arg| Attachment::Fentry { skb_arg })
        );
    }

    #[test]
    fn unfit_functions_say_why() {
        let mut t = func("f", 1, 2);
        assert_eq!(unfit(&t), None);
        t.by_value = true;
        assert_eq!(
            unfit(&t).unwrap(),
            "a struct or union is passed or returned by value"
        );
        let mut t = func("veth_xmit", 1, 2);
        t.module = Some("veth".into());
        assert!(unfit(&t).unwrap().contains("module veth"));
        assert_eq!(unfit(&target("no_id", 1)).unwrap(), "no BTF id");
    }

    #[test]
    fn refusals_name_the_errno_and_the_verifiers_last_line() {
        let e = LoadError::Rejected {
            program: "fentry_skb_1".into(),
            errno: io::Error::from_raw_os_error(524),
            log: load::VerifierLog::new(
                "arg#0 ...\nsome reason\nprocessed 3 insns (limit 1000000)\n\n".into(),
            ),
        };
        assert_eq!(
            refusal(&e),
            "the trampoline cannot take it (ENOTSUPP) (some reason)"
        );
        assert!(is_fatal(&e).is_none());
        let e = LoadError::Rejected {
            program: "p".into(),
            errno: io::Error::from_raw_os_error(libc::EMFILE),
            log: load::VerifierLog::new(String::new()),
        };
        assert!(is_fatal(&e).is_some());
        assert_eq!(
            refusal(&e),
            io::Error::from_raw_os_error(libc::EMFILE).to_string()
        );
    }

    #[test]
    fn what_fentry_cannot_do_is_named() {
        let b = FentryBackend::default();
        assert!(b.lacks(Feature::Caller).is_some());
        assert!(b.lacks(Feature::NonSkbFunctions).is_some());
        assert!(b.lacks(Feature::BpfHelpers).is_some());
        assert!(b.lacks(Feature::ModuleFunctions).is_some());
        assert!(b.supports(Feature::CloneFollowing));
        assert!(b.supports(Feature::FuncIp));
        assert_eq!(b.untrack_points(), crate::attach::kprobe::UNTRACK_POINTS);
    }
}
