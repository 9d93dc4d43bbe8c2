//! Using a [`LoadedObject`]: thin attach/detach wrappers over aya (per-function kprobes, raw
//! and BTF tracepoints), the raw kprobe_multi link, and `BPF_PROG_TEST_RUN` for skb programs.

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;

use aya::maps::MapError;
use aya::programs::kprobe::KProbeLinkId;
use aya::programs::raw_trace_point::RawTracePointLinkId;
use aya::programs::tp_btf::BtfTracePointLinkId;
use aya::programs::{
    BtfTracePoint, KProbe, ProgramError, RawTracePoint, SchedClassifier, SocketFilter,
};
use aya::{TestRun, TestRunOptions, TestRunResult};

use super::{sys, LoadedObject, ProgKind};

/// Errors using a loaded object: attaching, detaching, test runs, map and info access.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("no program named `{0}` in the object")]
    UnknownProgram(String),
    #[error("no map named `{0}` in the object (or it was taken out)")]
    UnknownMap(String),
    #[error("program `{program}` is a {actual:?} program; {wanted} needs {expected}")]
    WrongKind {
        program: String,
        actual: ProgKind,
        wanted: &'static str,
        expected: &'static str,
    },
    #[error("attaching `{program}` to `{target}` failed: {}", chain(source.as_ref()))]
    Attach {
        program: String,
        target: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("program `{program}`: {}", chain(source.as_ref()))]
    Program {
        program: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("kprobe_multi links are not supported by this kernel (EOPNOTSUPP: needs CONFIG_FPROBE, 5.18+); program `{program}`")]
    KprobeMultiUnsupported { program: String },
    #[error("kprobe_multi link for `{program}` on {count} function(s) failed: {source}")]
    KprobeMulti {
        program: String,
        count: usize,
        #[source]
        source: io::Error,
    },
    #[error("invalid kprobe_multi request for `{program}`: {reason}")]
    BadKprobeMulti { program: String, reason: String },
    #[error("{what} on program `{program}` failed: {source}")]
    Syscall {
        what: &'static str,
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("map `{map}`: {source}")]
    Map {
        map: String,
        #[source]
        source: MapError,
    },
}

/// An error and its sources, joined by `: ` (aya puts the errno in a source).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// Targets of one kprobe_multi link.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KprobeMultiOptions {
    /// Kernel function names (`kallsyms` names).
    pub symbols: Vec<String>,
    /// Their ftrace locations, aligned with `symbols`, or empty: the link is then made by
    /// name (the kernel resolves each name with a walk over all of kallsyms).
    pub addrs: Vec<u64>,
    /// One cookie per symbol (read with `bpf_get_attach_cookie`), or empty for none.
    pub cookies: Vec<u64>,
    /// Attach to function returns (`BPF_F_KPROBE_MULTI_RETURN`).
    pub retprobe: bool,
}

fn wrong_kind(
    program: &str,
    actual: &ProgKind,
    wanted: &'static str,
    expected: &'static str,
) -> ObjectError {
    ObjectError::WrongKind {
        program: program.to_string(),
        actual: actual.clone(),
        wanted,
        expected,
    }
}

impl LoadedObject {
    fn kind_of(&self, program: &str) -> Result<&ProgKind, ObjectError> {
        self.kinds
            .get(program)
            .ok_or_else(|| ObjectError::UnknownProgram(program.to_string()))
    }

    fn expect_kind(
        &self,
        program: &str,
        wanted: &'static str,
        expected: &'static str,
        ok: impl Fn(&ProgKind) -> bool,
    ) -> Result<(), ObjectError> {
        let kind = self.kind_of(program)?;
        if ok(kind) {
            Ok(())
        } else {
            Err(wrong_kind(program, kind, wanted, expected))
        }
    }

    fn aya_program<'a, T>(&'a mut self, program: &str) -> Result<&'a mut T, ObjectError>
    where
        &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        let p = self
            .aya_program_mut(program)
            .ok_or_else(|| ObjectError::UnknownProgram(program.to_string()))?;
        <&mut T>::try_from(p).map_err(|source| ObjectError::Program {
            program: program.to_string(),
            source: Box::new(source),
        })
    }

    /// Attach a kprobe/kretprobe program to one kernel function (perf-event kprobe). One
    /// program can be attached to many functions; keep the ids to detach.
    pub fn attach_kprobe(
        &mut self,
        program: &str,
        function: &str,
    ) -> Result<KProbeLinkId, ObjectError> {
        self.expect_kind(program, "attach_kprobe", "KProbe or KRetProbe", |k| {
            matches!(k, ProgKind::KProbe | ProgKind::KRetProbe)
        })?;
        self.aya_program::<KProbe>(program)?
            .attach(function, 0)
            .map_err(|source| ObjectError::Attach {
                program: program.to_string(),
                target: function.to_string(),
                source: Box::new(source),
            })
    }

    /// Detach one link made by [`LoadedObject::attach_kprobe`].
    pub fn detach_kprobe(&mut self, program: &str, link: KProbeLinkId) -> Result<(), ObjectError> {
        self.aya_program::<KProbe>(program)?
            .detach(link)
            .map_err(|source| ObjectError::Program {
                program: program.to_string(),
                source: Box::new(source),
            })
    }

    /// Attach a raw tracepoint program to the tracepoint named in its kind.
    pub fn attach_raw_tp(&mut self, program: &str) -> Result<RawTracePointLinkId, ObjectError> {
        let tp = match self.kind_of(program)? {
            ProgKind::RawTracepoint(tp) => tp.clone(),
            other => return Err(wrong_kind(program, other, "attach_raw_tp", "RawTracepoint")),
        };
        self.aya_program::<RawTracePoint>(program)?
            .attach(&tp)
            .map_err(|source| ObjectError::Attach {
                program: program.to_string(),
                target: tp,
                source: Box::new(source),
            })
    }

    pub fn detach_raw_tp(
        &mut self,
        program: &str,
        link: RawTracePointLinkId,
    ) -> Result<(), ObjectError> {
        self.aya_program::<RawTracePoint>(program)?
            .detach(link)
            .map_err(|source| ObjectError::Program {
                program: program.to_string(),
                source: Box::new(source),
            })
    }

    /// Attach a tp_btf program (its tracepoint was fixed at load time).
    pub fn attach_tp_btf(&mut self, program: &str) -> Result<BtfTracePointLinkId, ObjectError> {
        let tp = match self.kind_of(program)? {
            ProgKind::TpBtf(tp) => tp.clone(),
            other => return Err(wrong_kind(program, other, "attach_tp_btf", "TpBtf")),
        };
        self.aya_program::<BtfTracePoint>(program)?
            .attach()
            .map_err(|source| ObjectError::Attach {
                program: program.to_string(),
                target: tp,
                source: Box::new(source),
            })
    }

    pub fn detach_tp_btf(
        &mut self,
        program: &str,
        link: BtfTracePointLinkId,
    ) -> Result<(), ObjectError> {
        self.aya_program::<BtfTracePoint>(program)?
            .detach(link)
            .map_err(|source| ObjectError::Program {
                program: program.to_string(),
                source: Box::new(source),
            })
    }

    /// Attach a kprobe_multi program to every function in `opts` with one
    /// `BPF_LINK_CREATE`. The returned fd is the link: close it to detach. A kernel without
    /// fprobe support gives [`ObjectError::KprobeMultiUnsupported`].
    pub fn attach_kprobe_multi(
        &self,
        program: &str,
        opts: &KprobeMultiOptions,
    ) -> Result<OwnedFd, ObjectError> {
        self.expect_kind(program, "attach_kprobe_multi", "KProbeMulti", |k| {
            matches!(k, ProgKind::KProbeMulti)
        })?;
        let bad = |reason: String| ObjectError::BadKprobeMulti {
            program: program.to_string(),
            reason,
        };
        if opts.symbols.is_empty() {
            return Err(bad("no functions given".into()));
        }
        if !opts.cookies.is_empty() && opts.cookies.len() != opts.symbols.len() {
            return Err(bad(format!(
                "{} cookies for {} functions",
                opts.cookies.len(),
                opts.symbols.len()
            )));
        }
        if !opts.addrs.is_empty() && opts.addrs.len() != opts.symbols.len() {
            return Err(bad(format!(
                "{} addresses for {} functions",
                opts.addrs.len(),
                opts.symbols.len()
            )));
        }
        let symbols = opts
            .symbols
            .iter()
            .map(|s| {
                CString::new(s.as_str()).map_err(|_| bad(format!("symbol {s:?} contains NUL")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let fd = self.program_fd(program)?;
        let cookies = (!opts.cookies.is_empty()).then_some(opts.cookies.as_slice());
        let flags = if opts.retprobe {
            sys::KPROBE_MULTI_RETURN
        } else {
            0
        };
        let targets = match opts.addrs.is_empty() {
            true => sys::MultiTargets::Symbols(&symbols),
            false => sys::MultiTargets::Addrs(&opts.addrs),
        };
        sys::link_create_kprobe_multi(fd, targets, cookies, flags).map_err(|source| {
            if source.raw_os_error() == Some(libc::EOPNOTSUPP) {
                ObjectError::KprobeMultiUnsupported {
                    program: program.to_string(),
                }
            } else {
                ObjectError::KprobeMulti {
                    program: program.to_string(),
                    count: symbols.len(),
                    source,
                }
            }
        })
    }

    /// Run a SchedCls or SocketFilter program once on `data_in` (an Ethernet frame) with
    /// `BPF_PROG_TEST_RUN`; returns the program's return value. `r1` is a real `sk_buff`.
    pub fn test_run(&mut self, program: &str, data_in: &[u8]) -> Result<u32, ObjectError> {
        Ok(self.test_run_repeat(program, data_in, 1)?.return_value)
    }

    /// Like [`LoadedObject::test_run`], `repeat` times in the kernel; the result's
    /// `duration` is the average time of one run (for benchmarks).
    pub fn test_run_repeat(
        &mut self,
        program: &str,
        data_in: &[u8],
        repeat: u32,
    ) -> Result<TestRunResult, ObjectError> {
        let opts = TestRunOptions {
            data_in: Some(data_in),
            repeat: repeat.max(1),
            ..TestRunOptions::new()
        };
        let run_err = |source| ObjectError::Program {
            program: program.to_string(),
            source: Box::new(source),
        };
        match self.kind_of(program)? {
            ProgKind::SchedCls => self
                .aya_program::<SchedClassifier>(program)?
                .test_run(opts)
                .map_err(run_err),
            ProgKind::SocketFilter => self
                .aya_program::<SocketFilter>(program)?
                .test_run(opts)
                .map_err(run_err),
            other => Err(wrong_kind(
                program,
                other,
                "test_run",
                "SchedCls or SocketFilter",
            )),
        }
    }
}
