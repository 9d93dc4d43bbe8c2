//! The kprobe-multi backend: one kprobe_multi link per skb argument position over all its
//! functions (fprobe, 5.18+); the fastest to attach and detach, and `auto`'s first choice.

use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;

use crate::load::{KprobeMultiOptions, LoadedObject, ObjectError, ProgramSpec};

use super::kprobe::{kprobe_program_name, kprobe_programs, NO_KPROBES};
use super::{
    check_stop, close_in_parallel, positions, AttachError, AttachSummary, Backend, BackendKind,
    BackendOptions, BuildFn, Feature, KernelSupport, Progress, Target, TargetNames, Unavailable,
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

    /// Creates a link for `set`; when the kernel refuses it (one function it will not probe
    /// spoils the whole link), halves it to isolate and skip the refused ones.
    fn attach_set(
        &mut self,
        obj: &LoadedObject,
        program: &str,
        set: &[(String, u64)],
        summary: &mut AttachSummary,
        progress: &dyn Progress,
        stop: &AtomicBool,
    ) -> Result<(), AttachError> {
        check_stop(stop)?;
        match obj.attach_kprobe_multi(program, &multi_options(set)) {
            Ok(link) => {
                self.links.push(link);
                summary.attached += set.len();
                progress.inc(set.len() as u64);
                Ok(())
            }
            Err(e @ ObjectError::KprobeMultiUnsupported { .. }) => Err(e.into()),
            Err(_) if set.len() == 1 => {
                summary.ignored += 1;
                progress.inc(1);
                Ok(())
            }
            Err(_) => {
                let (a, b) = set.split_at(set.len() / 2);
                self.attach_set(obj, program, a, summary, progress, stop)?;
                self.attach_set(obj, program, b, summary, progress, stop)
            }
        }
    }
}

/// The cookie of the target at `index` of the backend's target list: its events carry it
/// (`bpf_get_attach_cookie`) and [`multi_target_names`] names it. 0 is no cookie.
fn cookie(index: usize) -> u64 {
    index as u64 + 1
}

/// The targets with their skb at argument `arg`, with their cookies.
fn cookie_set(targets: &[Target], arg: u16) -> Vec<(String, u64)> {
    targets
        .iter()
        .enumerate()
        .filter(|(_, t)| t.skb_arg == arg)
        .map(|(i, t)| (t.name.clone(), cookie(i)))
        .collect()
}

/// The link options for `set`: its symbols and, aligned with them, their cookies.
fn multi_options(set: &[(String, u64)]) -> KprobeMultiOptions {
    KprobeMultiOptions {
        symbols: set.iter().map(|(name, _)| name.clone()).collect(),
        addrs: Vec::new(),
        cookies: set.iter().map(|&(_, cookie)| cookie).collect(),
        retprobe: false,
    }
}

/// Events name their function by cookie (no kallsyms needed): the name as kallsyms shows
/// it (`name[module]` for a module's), which is also the key of its drop-reason position.
fn multi_target_names(targets: &[Target]) -> TargetNames {
    let display = |t: &Target| match &t.module {
        Some(m) => format!("{}[{m}]", t.name),
        None => t.name.clone(),
    };
    TargetNames {
        probe_names: targets
            .iter()
            .enumerate()
            .map(|(i, t)| (cookie(i), display(t)))
            .collect(),
        drop_reason_args: targets
            .iter()
            .filter_map(|t| Some((display(t), t.drop_reason_arg?)))
            .collect(),
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

    fn loads_through_aya(&self) -> bool {
        false
    }

    /// By the attach cookie each target's events carry.
    fn target_names(&self, targets: &[Target]) -> TargetNames {
        multi_target_names(targets)
    }

    fn names_by_address(&self) -> bool {
        false
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
            self.attach_set(
                obj,
                &kprobe_program_name(true, arg),
                &cookie_set(targets, arg),
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

    #[test]
    fn each_target_is_named_by_its_cookie() {
        let mut module = target("mod_rcv", 1);
        module.module = Some("veth".into());
        module.drop_reason_arg = Some(2);
        let mut drop = target("kfree_skb_reason", 1);
        drop.drop_reason_arg = Some(2);
        let targets = [target("a", 2), drop, target("c", 2), module];
        let names = KprobeMultiBackend::default().target_names(&targets);
        let cookies = |arg| cookie_set(&targets, arg);
        // Every cookie a link carries names the target it was given for.
        for arg in positions(&targets) {
            for (name, cookie) in cookies(arg) {
                let shown = &names.probe_names[&cookie];
                assert!(shown == &name || shown.starts_with(&format!("{name}[")));
            }
        }
        assert_eq!(cookies(2), [("a".to_string(), 1), ("c".to_string(), 3)]);
        assert_eq!(names.probe_names.len(), 4);
        assert_eq!(names.probe_names[&4], "mod_rcv[veth]");
        assert!(!names.probe_names.contains_key(&0));
        assert_eq!(names.drop_reason_args["kfree_skb_reason"], 2);
        assert_eq!(names.drop_reason_args["mod_rcv[veth]"], 2);
        assert!(!KprobeMultiBackend::default().names_by_address());
    }

    #[test]
    fn halving_a_refused_set_keeps_each_cookie_with_its_symbol() {
        let targets: Vec<Target> = (0..7).map(|i| target(&format!("f{i}"), 1)).collect();
        let set = cookie_set(&targets, 1);
        let (a, b) = set.split_at(set.len() / 2);
        let (aa, ab) = b.split_at(b.len() / 2);
        for part in [&set[..], a, aa, ab] {
            let opts = multi_options(part);
            assert_eq!(opts.symbols.len(), opts.cookies.len());
            for (symbol, cookie) in opts.symbols.iter().zip(&opts.cookies) {
                assert_eq!(*symbol, format!("f{}", cookie - 1));
            }
        }
    }
}
