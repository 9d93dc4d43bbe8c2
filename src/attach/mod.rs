//! Attaching the generated programs: one trait, three backends (kprobe-multi links,
//! per-function perf-event kprobes, raw tracepoints), and the choice `auto` makes.

pub mod targets;

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use aya::programs::kprobe::KProbeLinkId;
use aya::programs::raw_trace_point::RawTracePointLinkId;
use indicatif::ProgressBar;

use crate::asm::Program;
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
}

/// Makes the backend of `kind`.
pub fn backend(kind: BackendKind) -> Box<dyn Backend> {
    match kind {
        BackendKind::KprobeMulti => Box::new(KprobeMultiBackend::default()),
        BackendKind::Kprobe => Box::new(KprobeBackend::default()),
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
        progress.set_length(self.links.len() as u64);
        for link in self.links.drain(..) {
            drop(link);
            progress.inc(1);
        }
    }
}

/// One perf-event kprobe per function.
#[derive(Default)]
pub struct KprobeBackend {
    links: Vec<(String, KProbeLinkId)>,
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
        let mut summary = AttachSummary::default();
        for t in targets {
            check_stop(stop)?;
            let program = kprobe_program_name(false, t.skb_arg);
            match obj.attach_kprobe(&program, &t.name) {
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
            // A failed detach leaves nothing we could do better: the fd closes at exit.
            let _ = obj.detach_kprobe(&program, id);
            progress.inc(1);
        }
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
    fn one_tracepoint_program_per_tracepoint() {
        let targets = [target("kfree_skb", 0), target("consume_skb", 0)];
        let specs = TracepointBackend::default()
            .programs(&targets, &mut |_: &Attachment| Ok(Program::default()))
            .unwrap();
        assert_eq!(specs[1].name, "tp_skb_1");
        assert_eq!(specs[1].kind, ProgKind::RawTracepoint("consume_skb".into()));
    }
}
