//! The kprobe-multi backend: one kprobe_multi link per skb argument position over all its
//! functions (fprobe, 5.18+); the fastest to attach and detach, and `auto`'s first choice.

use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;

use crate::load::{KprobeMultiOptions, LoadedObject, ObjectError, ProgramSpec};

use super::kprobe::{kprobe_program_name, kprobe_programs, NO_KPROBES};
use super::{
    check_stop, close_in_parallel, positions, AttachError, AttachSummary, Backend, BackendKind,
    BackendOptions, BuildFn, Feature, KernelSupport, Progress, Target, Unavailable,
    KPROBE_DETACH_THREADS,
};

/// What kprobe-multi needs and lacks on a kernel without fprobe.
const NO_FPROBE: Unavailable = Unavailable {
    kernel_lacks: "this kernel has no fprobe (CONFIG_FPROBE, kernel 5.18+)",
    hint: "use --backend kprobe",
    auto_reason: "no fprobe (CONFIG_FPROBE) for kprobe-multi",
};

/// One kprobe_multi link per skb argument position, over all its functions.
#[derive(Default)]
pub struct KprobeMultiBackend {
    links: Vec<OwnedFd>,
}

impl KprobeMultiBackend {
    /// The registry's constructor (no settings: the links are few and quick to close).
    pub fn create(_opts: &BackendOptions) -> Box<dyn Backend> {
        Box::new(KprobeMultiBackend::default())
    }

    /// Creates a link for `symbols`; when the kernel refuses the set (one function it will
    /// not probe spoils the whole link), halves it to isolate and skip the refused ones.
    fn attach_set(
        &mut self,
        obj: &LoadedObject,
        program: &str,
        symbols: &[String],
        summary: &mut AttachSummary,
        progress: &dyn Progress,
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

    fn noun(&self) -> &'static str {
        "kprobes"
    }

    fn target_noun(&self) -> &'static str {
        "function"
    }

    fn auto_reason(&self) -> &'static str {
        "kprobes and fprobe available"
    }

    fn available(&self, kernel: &KernelSupport) -> Result<(), Unavailable> {
        if !kernel.kprobes {
            Err(NO_KPROBES)
        } else if !kernel.fprobe {
            Err(NO_FPROBE)
        } else {
            Ok(())
        }
    }

    fn lacks(&self, _feature: Feature) -> Option<&'static str> {
        None
    }

    fn fallback(&self) -> Option<BackendKind> {
        Some(BackendKind::Kprobe)
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
        progress: &dyn Progress,
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

    fn detach(&mut self, _obj: &mut LoadedObject, progress: &dyn Progress) {
        // One link per skb position (a handful): each close waits for its own grace
        // periods, so close them side by side.
        let links = std::mem::take(&mut self.links);
        progress.set_length(links.len() as u64);
        close_in_parallel(links, KPROBE_DETACH_THREADS, progress);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::Program;
    use crate::attach::tests::target;
    use crate::load::ProgKind;

    #[test]
    fn one_multi_program_per_argument_position() {
        let targets = [target("a", 2), target("b", 1), target("c", 2)];
        let specs = KprobeMultiBackend::default()
            .programs(&targets, &mut |_| Ok(Program::default()))
            .unwrap();
        let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["kpm_skb_1", "kpm_skb_2"]);
        assert!(specs.iter().all(|s| s.kind == ProgKind::KProbeMulti));
    }
}
