//! The kprobe-multi backend: one kprobe_multi link per skb argument position over all its
//! functions (fprobe, 5.18+); the fastest to attach and detach, and `auto`'s first choice.
//! Links are made by ftrace location when tracefs lists them (6.5+), else by name.

use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;

use crate::btf::KernelBtf;
use crate::load::{KprobeMultiOptions, LoadedObject, ObjectError, ProgramSpec};
use crate::probes::KprobeLink;

use super::kprobe::{function_targets, kprobe_program_name, kprobe_programs, NO_KPROBES};
use super::{
    check_stop, close_in_parallel, positions, AttachError, AttachSummary, Backend, BackendKind,
    BackendOptions, BuildFn, Feature, KernelSupport, Locations, Progress, Target, TargetNames,
    Unavailable, KPROBE_DETACH_THREADS,
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
        to: &LinkTo<'_>,
        set: &[MultiTarget],
        summary: &mut AttachSummary,
        progress: &dyn Progress,
        stop: &AtomicBool,
    ) -> Result<(), AttachError> {
        check_stop(stop)?;
        match to
            .obj
            .attach_kprobe_multi(to.program, &multi_options(set, to.link))
        {
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
                self.attach_set(to, a, summary, progress, stop)?;
                self.attach_set(to, b, summary, progress, stop)
            }
        }
    }
}

/// Where a set of functions is linked: the object, its program, and how.
struct LinkTo<'a> {
    obj: &'a LoadedObject,
    program: &'a str,
    link: KprobeLink,
}

/// The id of the target at `index` of the backend's target list, which names its events
/// ([`multi_target_names`]): a link made by name gives it as the function's attach cookie
/// (`bpf_get_attach_cookie`); for a link made by location the output finds it from the
/// function's entry (`bpf_get_func_ip`). 0 is no id.
fn cookie(index: usize) -> u64 {
    index as u64 + 1
}

/// How the links are made: by ftrace location when every target has one
/// (`available_filter_functions_addrs`, 6.5+), which spares the kernel a walk of every
/// kallsyms name per link; else by name, with cookies naming the functions (their entry
/// addresses would need kallsyms to be named).
fn link_kind(targets: &[Target]) -> KprobeLink {
    match !targets.is_empty() && targets.iter().all(|t| t.ftrace_addr.is_some()) {
        true => KprobeLink::MultiByAddress,
        false => KprobeLink::MultiByCookie,
    }
}

/// One function of a link: its name, id and ftrace location when known.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MultiTarget {
    name: String,
    cookie: u64,
    addr: Option<u64>,
}

/// The targets with their skb at argument `arg`, with their ids.
fn cookie_set(targets: &[Target], arg: u16) -> Vec<MultiTarget> {
    targets
        .iter()
        .enumerate()
        .filter(|(_, t)| t.skb_arg == arg)
        .map(|(i, t)| MultiTarget {
            name: t.name.clone(),
            cookie: cookie(i),
            addr: t.ftrace_addr,
        })
        .collect()
}

/// The link options for `set`: its symbols and, aligned with them, their ftrace
/// locations (a link by location) or their cookies (a link by name).
fn multi_options(set: &[MultiTarget], link: KprobeLink) -> KprobeMultiOptions {
    let by_address = link == KprobeLink::MultiByAddress;
    KprobeMultiOptions {
        symbols: set.iter().map(|t| t.name.clone()).collect(),
        addrs: match by_address {
            true => set.iter().filter_map(|t| t.addr).collect(),
            false => Vec::new(),
        },
        cookies: match by_address {
            true => Vec::new(),
            false => set.iter().map(|t| t.cookie).collect(),
        },
        retprobe: false,
    }
}

/// Events name their function by id (no kallsyms needed): the name as kallsyms shows it
/// (`name[module]` for a module's), which is also the key of its drop-reason position.
/// Links made by location add each function's location, by which the output finds the
/// id of an event's entry address.
fn multi_target_names(targets: &[Target]) -> TargetNames {
    let display = |t: &Target| match &t.module {
        Some(m) => format!("{}[{m}]", t.name),
        None => t.name.clone(),
    };
    let mut multi_locations: Vec<(u64, u64)> = match link_kind(targets) {
        KprobeLink::MultiByAddress => targets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((t.ftrace_addr?, cookie(i))))
            .collect(),
        _ => Vec::new(),
    };
    multi_locations.sort_unstable();
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
        multi_locations,
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

    /// The skb functions with their ftrace locations where tracefs lists them, so that
    /// the links can go by location.
    fn targets(
        &self,
        btf: &KernelBtf,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Target>, AttachError> {
        function_targets(btf, keep, Locations::With)
    }

    /// By the id each target's events carry or lead to.
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
        kprobe_programs(link_kind(targets), targets, build)
    }

    fn attach(
        &mut self,
        obj: &mut LoadedObject,
        targets: &[Target],
        progress: &dyn Progress,
        stop: &AtomicBool,
    ) -> Result<AttachSummary, AttachError> {
        let mut summary = AttachSummary::default();
        let link = link_kind(targets);
        for arg in positions(targets) {
            let program = kprobe_program_name(true, arg);
            let to = LinkTo {
                obj,
                program: &program,
                link,
            };
            self.attach_set(&to, &cookie_set(targets, arg), &mut summary, progress, stop)?;
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
    use crate::probes::Attachment;

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

    /// The targets `a` (skb 2), `kfree_skb_reason` (1), `c` (2) and `mod_rcv` of module
    /// veth (1), with ftrace locations when `located`.
    fn four_targets(located: bool) -> Vec<Target> {
        let mut module = target("mod_rcv", 1);
        module.module = Some("veth".into());
        module.drop_reason_arg = Some(2);
        let mut drop = target("kfree_skb_reason", 1);
        drop.drop_reason_arg = Some(2);
        let mut targets = vec![target("a", 2), drop, target("c", 2), module];
        if located {
            // Out of address order, as BTF lists them.
            for (t, at) in targets
                .iter_mut()
                .zip([0x3004, 0x1004, 0x2000, 0xc000_0004])
            {
                t.ftrace_addr = Some(at);
            }
        }
        targets
    }

    #[test]
    fn each_target_is_named_by_its_cookie() {
        let targets = four_targets(false);
        let names = KprobeMultiBackend::default().target_names(&targets);
        let cookies = |arg| cookie_set(&targets, arg);
        // Every cookie a link carries names the target it was given for.
        for arg in positions(&targets) {
            for t in cookies(arg) {
                let shown = &names.probe_names[&t.cookie];
                assert!(shown == &t.name || shown.starts_with(&format!("{}[", t.name)));
            }
        }
        let pairs: Vec<_> = cookies(2).into_iter().map(|t| (t.name, t.cookie)).collect();
        assert_eq!(pairs, [("a".to_string(), 1), ("c".to_string(), 3)]);
        assert_eq!(names.probe_names.len(), 4);
        assert_eq!(names.probe_names[&4], "mod_rcv[veth]");
        assert!(!names.probe_names.contains_key(&0));
        assert_eq!(names.drop_reason_args["kfree_skb_reason"], 2);
        assert_eq!(names.drop_reason_args["mod_rcv[veth]"], 2);
        assert!(names.multi_locations.is_empty(), "named by cookie");
        assert!(!KprobeMultiBackend::default().names_by_address());
    }

    #[test]
    fn located_targets_are_linked_by_location_and_named_from_their_entry() {
        let targets = four_targets(true);
        assert_eq!(link_kind(&targets), KprobeLink::MultiByAddress);
        let names = KprobeMultiBackend::default().target_names(&targets);
        assert_eq!(
            names.multi_locations,
            [(0x1004, 2), (0x2000, 3), (0x3004, 1), (0xc000_0004, 4)],
            "sorted by location, each with its target's id"
        );
        assert_eq!(names.probe_names[&2], "kfree_skb_reason");
        // The programs record the function's entry, not a cookie.
        let mut links = Vec::new();
        KprobeMultiBackend::default()
            .programs(&targets, &mut |a| {
                if let Attachment::Kprobe { link, .. } = a {
                    links.push(*link);
                }
                Ok(Program::default())
            })
            .unwrap();
        assert_eq!(links, [KprobeLink::MultiByAddress; 2]);
        // A link by location carries addresses and no cookies.
        let opts = multi_options(&cookie_set(&targets, 2), KprobeLink::MultiByAddress);
        assert_eq!(opts.symbols, ["a", "c"]);
        assert_eq!(opts.addrs, [0x3004, 0x2000]);
        assert!(opts.cookies.is_empty());
    }

    #[test]
    fn a_target_without_location_links_every_function_by_name() {
        let mut targets = four_targets(true);
        targets[3].ftrace_addr = None;
        assert_eq!(link_kind(&targets), KprobeLink::MultiByCookie);
        assert_eq!(link_kind(&[]), KprobeLink::MultiByCookie);
        let names = KprobeMultiBackend::default().target_names(&targets);
        assert!(names.multi_locations.is_empty());
        let opts = multi_options(&cookie_set(&targets, 1), KprobeLink::MultiByCookie);
        assert!(opts.addrs.is_empty());
        assert_eq!(opts.cookies, [2, 4]);
    }

    #[test]
    fn halving_a_refused_set_keeps_each_cookie_and_location_with_its_symbol() {
        let targets: Vec<Target> = (0..7)
            .map(|i| Target {
                ftrace_addr: Some(0x1000 + i),
                ..target(&format!("f{i}"), 1)
            })
            .collect();
        let set = cookie_set(&targets, 1);
        let (a, b) = set.split_at(set.len() / 2);
        let (aa, ab) = b.split_at(b.len() / 2);
        for part in [&set[..], a, aa, ab] {
            let opts = multi_options(part, KprobeLink::MultiByCookie);
            assert_eq!(opts.symbols.len(), opts.cookies.len());
            for (symbol, cookie) in opts.symbols.iter().zip(&opts.cookies) {
                assert_eq!(*symbol, format!("f{}", cookie - 1));
            }
            let opts = multi_options(part, KprobeLink::MultiByAddress);
            assert_eq!(opts.symbols.len(), opts.addrs.len());
            for (symbol, addr) in opts.symbols.iter().zip(&opts.addrs) {
                assert_eq!(*symbol, format!("f{}", addr - 0x1000));
            }
        }
    }
}
