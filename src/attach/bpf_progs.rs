//! `--filter-trace-tc` and `--filter-trace-xdp`: fentry and fexit programs on every loaded
//! BPF program of one kind (tc `SCHED_CLS`, XDP), next to the backend's probes; the set
//! follows programs loaded and unloaded later. One [`ProgTracer`] per kind.
//!
//! The fentry program is the probe program of [`Attachment::TcProgram`] /
//! [`Attachment::XdpProgram`] (the filter chain on the program's skb or `xdp_buff`); its
//! fexit twin reports the verdict of the runs it matched. Programs without BTF cannot be
//! traced (fentry needs their function's type) and are counted; our own programs are
//! never traced.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::AsFd;

use crate::load::{self, BpfProgram, LoadError, RawMaps, TraceTarget, TracedProgType, TracingLink};
use crate::probes::event::bpf_prog_probe_addr;
use crate::probes::BpfProgKind;

use super::{AttachError, BuildFn};

/// A kind of BPF program traced with fentry/fexit: its type, our programs' kernel names,
/// its noun in messages and the flag asking for it.
#[derive(Debug, PartialEq, Eq)]
pub struct TracedKind {
    pub kind: BpfProgKind,
    pub prog_type: TracedProgType,
    entry_name: &'static str,
    exit_name: &'static str,
    /// `tc`, `xdp`.
    pub noun: &'static str,
    /// As pwru's `Attaching tc-bpf progs...` / `Attaching xdp progs...` say.
    pub progs: &'static str,
    pub flag: &'static str,
}

/// tc programs (`--filter-trace-tc`).
pub const TRACED_TC: TracedKind = TracedKind {
    kind: BpfProgKind::Tc,
    prog_type: TracedProgType::SchedCls,
    entry_name: "pwru_tc_entry",
    exit_name: "pwru_tc_exit",
    noun: "tc",
    progs: "tc-bpf progs",
    flag: "--filter-trace-tc",
};

/// XDP programs (`--filter-trace-xdp`).
pub const TRACED_XDP: TracedKind = TracedKind {
    kind: BpfProgKind::Xdp,
    prog_type: TracedProgType::Xdp,
    entry_name: "pwru_xdp_entry",
    exit_name: "pwru_xdp_exit",
    noun: "xdp",
    progs: "xdp progs",
    flag: "--filter-trace-xdp",
};

/// What is traced for `kind`.
pub fn traced_kind(kind: BpfProgKind) -> &'static TracedKind {
    match kind {
        BpfProgKind::Tc => &TRACED_TC,
        BpfProgKind::Xdp => &TRACED_XDP,
    }
}

/// A traced tc program: its name and the two attached programs (dropping them detaches).
#[derive(Debug)]
struct Traced {
    name: String,
    entry: TracingLink,
    exit: TracingLink,
}

impl Traced {
    /// (`pwru_tc_entry on NAME`, misses) and the same for the exit program (the names of
    /// `kind`); programs whose info cannot be read are left out.
    fn recursion_misses(&self, kind: &TracedKind) -> Vec<(String, u64)> {
        [(kind.entry_name, &self.entry), (kind.exit_name, &self.exit)]
            .into_iter()
            .filter_map(|(ours, l)| {
                let info = load::prog_info(l.prog.as_fd()).ok()?;
                Some((format!("{ours} on {}", self.name), info.recursion_misses))
            })
            .collect()
    }
}

/// What one [`ProgTracer::sync`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ProgSync {
    /// Programs traced from now on: (probe address of their events, FUNC name).
    pub added: Vec<(u64, String)>,
    /// Names of traced programs that were unloaded.
    pub gone: Vec<String>,
    /// Names of programs skipped for lack of BTF, seen for the first time.
    pub no_btf: Vec<String>,
    /// Programs the kernel refused to trace, seen for the first time, with the reason.
    pub refused: Vec<(String, String)>,
}

/// The programs of one kind traced, and those that could not be.
#[derive(Debug)]
pub struct ProgTracer {
    kind: &'static TracedKind,
    maps: RawMaps,
    /// Our own programs' ids.
    own: HashSet<u32>,
    traced: BTreeMap<u32, Traced>,
    /// Programs seen and not traced (no BTF, or refused): not tried again.
    untraceable: HashSet<u32>,
    /// Non-zero `recursion_misses` of our programs on targets that were unloaded.
    gone_misses: Vec<(String, u64)>,
    level: load::VerifierLogLevel,
}

impl ProgTracer {
    /// A tracer of the programs of `kind` loading its programs with `maps`, never tracing
    /// the programs in `own`.
    pub fn new(
        kind: &'static TracedKind,
        maps: RawMaps,
        own: HashSet<u32>,
        level: load::VerifierLogLevel,
    ) -> Self {
        ProgTracer {
            kind,
            maps,
            own,
            traced: BTreeMap::new(),
            untraceable: HashSet::new(),
            gone_misses: Vec::new(),
            level,
        }
    }

    /// The kind of programs it traces.
    pub fn kind(&self) -> &'static TracedKind {
        self.kind
    }

    /// Programs traced now.
    pub fn traced(&self) -> usize {
        self.traced.len()
    }

    /// Programs seen that cannot be traced.
    pub fn untraceable(&self) -> usize {
        self.untraceable.len()
    }

    /// Attaches to every program of its kind not traced yet and forgets the ones no longer
    /// listed (a traced program stays listed: our link holds it until [`ProgTracer::detach`]).
    /// A program the kernel refuses is reported and skipped; failing to list the programs
    /// or to build our own is an error.
    pub fn sync(&mut self, build: &mut BuildFn<'_>) -> Result<ProgSync, AttachError> {
        let programs = load::bpf_programs(self.kind.prog_type.prog_type())
            .map_err(AttachError::ListPrograms)?;
        let mut out = ProgSync::default();
        let live: HashSet<u32> = programs.iter().map(|p| p.id).collect();
        let gone: Vec<u32> = self
            .traced
            .keys()
            .copied()
            .filter(|id| !live.contains(id))
            .collect();
        for id in gone {
            if let Some(t) = self.traced.remove(&id) {
                // Only counts that say something: Cilium may reload its programs often.
                let missed = t
                    .recursion_misses(self.kind)
                    .into_iter()
                    .filter(|(_, n)| *n > 0);
                self.gone_misses.extend(missed);
                out.gone.push(t.name);
            }
        }
        self.untraceable.retain(|id| live.contains(id));
        for p in programs {
            if self.own.contains(&p.id)
                || self.traced.contains_key(&p.id)
                || self.untraceable.contains(&p.id)
            {
                continue;
            }
            let Some(main_func) = p.main_func else {
                self.untraceable.insert(p.id);
                out.no_btf.push(p.name);
                continue;
            };
            match self.trace(&p, main_func, build) {
                Ok(t) => {
                    out.added.push((bpf_prog_probe_addr(p.id), t.name.clone()));
                    self.traced.insert(p.id, t);
                }
                // Unloaded between listing and loading: gone, not refused.
                Err(AttachError::Load(LoadError::Rejected { errno, .. }))
                    if errno.raw_os_error() == Some(libc::ENOENT) => {}
                Err(AttachError::Load(e)) => {
                    self.untraceable.insert(p.id);
                    out.refused.push((p.name, e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn trace(
        &self,
        p: &BpfProgram,
        main_func: u32,
        build: &mut BuildFn<'_>,
    ) -> Result<Traced, AttachError> {
        let target = TraceTarget {
            prog_id: p.id,
            main_func,
        };
        let mut half = |exit: bool, name: &str| -> Result<TracingLink, AttachError> {
            let program = build(&self.kind.kind.attachment(p.id, exit))?;
            Ok(load::load_tracing(
                &self.maps, name, &program, target, exit, self.level,
            )?)
        };
        // fexit first: an fentry match never waits for a fexit that is not there yet.
        let exit = half(true, self.kind.exit_name)?;
        let entry = half(false, self.kind.entry_name)?;
        Ok(Traced {
            name: p.name.clone(),
            entry,
            exit,
        })
    }

    /// Runs of our programs the kernel skipped because a BPF program was already running
    /// on that CPU (their `recursion_misses`), by program: `pwru_tc_entry on NAME` and
    /// `pwru_tc_exit on NAME` for every traced program, those unloaded since included.
    pub fn recursion_misses(&self) -> Vec<(String, u64)> {
        let mut out = self.gone_misses.clone();
        for t in self.traced.values() {
            out.extend(t.recursion_misses(self.kind));
        }
        out
    }

    /// Detaches and unloads every tracing program.
    pub fn detach(&mut self) {
        self.traced.clear();
    }
}
