//! fentry/fexit on BPF programs: the loaded programs a tracer can attach to (ids, type,
//! name, main function's BTF id), loading our tracing programs against one, and their links.
//! aya has no API for `attach_prog_fd`; everything here goes through `sys`.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::asm::Program;

use super::func_btf::{func_btf, FUNC_TYPE_ID};
use super::{sys, ElfError, LoadError, LoadedObject, ObjectError, VerifierLog, VerifierLogLevel};

/// `BPF_PROG_TYPE_SCHED_CLS`: tc programs (classic and tcx).
pub const PROG_TYPE_SCHED_CLS: u32 = sys::PROG_TYPE_SCHED_CLS;
/// `BPF_PROG_TYPE_XDP`.
pub const PROG_TYPE_XDP: u32 = sys::PROG_TYPE_XDP;

/// The program types traced with fentry/fexit (and that our fixtures load with BTF).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TracedProgType {
    /// tc programs.
    SchedCls,
    Xdp,
}

impl TracedProgType {
    /// `enum bpf_prog_type`.
    pub fn prog_type(self) -> u32 {
        match self {
            TracedProgType::SchedCls => PROG_TYPE_SCHED_CLS,
            TracedProgType::Xdp => PROG_TYPE_XDP,
        }
    }

    /// The UAPI context struct of its programs' function (the verifier matches it by name).
    pub fn ctx_struct(self) -> &'static str {
        match self {
            TracedProgType::SchedCls => "__sk_buff",
            TracedProgType::Xdp => "xdp_md",
        }
    }
}

/// A loaded BPF program as the tracer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BpfProgram {
    pub id: u32,
    /// `enum bpf_prog_type`.
    pub prog_type: u32,
    /// The kernel's copy of its name (at most 15 bytes).
    pub name: String,
    /// The BTF type id of its main function in its own BTF; `None` without BTF.
    pub main_func: Option<u32>,
}

/// Every loaded program, in id order, with its fd, its info and its name; programs that
/// go away while they are listed are left out.
fn each_program(
    mut visit: impl FnMut(u32, BorrowedFd<'_>, &sys::RawProgInfo, String) -> io::Result<()>,
) -> io::Result<()> {
    let mut id = 0;
    while let Some(next) = sys::prog_next_id(id)? {
        id = next;
        let fd = match sys::prog_fd_by_id(id) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        let info = sys::prog_info_only(fd.as_fd())?;
        let end = info.name.iter().position(|&b| b == 0).unwrap_or(16);
        let name = String::from_utf8_lossy(&info.name[..end]).into_owned();
        visit(id, fd.as_fd(), &info, name)?;
    }
    Ok(())
}

/// The loaded programs of type `prog_type`, by id. Programs that go away while they are
/// listed are left out.
pub fn bpf_programs(prog_type: u32) -> io::Result<Vec<BpfProgram>> {
    let mut out = Vec::new();
    each_program(|id, fd, info, name| {
        if info.prog_type == prog_type {
            out.push(BpfProgram {
                id,
                prog_type: info.prog_type,
                name,
                main_func: sys::prog_main_func(fd)?.map(|f| f.type_id),
            });
        }
        Ok(())
    })?;
    Ok(out)
}

/// A loaded BPF program's translated instructions (`BPF_OBJ_GET_INFO_BY_FD`'s
/// `xlated_prog_insns`: the program after the verifier's rewrites).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XlatedProgram {
    pub id: u32,
    /// `enum bpf_prog_type`.
    pub prog_type: u32,
    pub name: String,
    pub insns: Vec<crate::asm::Insn>,
}

/// Every loaded program whose type `keep` accepts, with its translated instructions.
/// Programs that go away while they are listed are left out.
pub fn xlated_programs(keep: impl Fn(u32) -> bool) -> io::Result<Vec<XlatedProgram>> {
    let mut out = Vec::new();
    each_program(|id, fd, info, name| {
        if keep(info.prog_type) {
            out.push(XlatedProgram {
                id,
                prog_type: info.prog_type,
                name,
                insns: sys::prog_xlated_insns(fd)?,
            });
        }
        Ok(())
    })?;
    Ok(out)
}

/// The translated instructions of the program behind `fd`.
pub fn xlated_insns(fd: BorrowedFd<'_>) -> io::Result<Vec<crate::asm::Insn>> {
    sys::prog_xlated_insns(fd)
}

/// Map fds for programs loaded after the object (duplicates: the object's maps may be
/// taken out of it, e.g. the ring buffer by the event loop).
#[derive(Debug)]
pub struct RawMaps(HashMap<String, OwnedFd>);

impl LoadedObject {
    /// Duplicates of every map fd of the object, for [`load_tracing`].
    pub fn raw_maps(&self) -> Result<RawMaps, ObjectError> {
        let mut fds = HashMap::new();
        for name in self.map_names() {
            let fd =
                self.map_fd(name)?
                    .try_clone_to_owned()
                    .map_err(|source| ObjectError::Syscall {
                        what: "dup of a map fd",
                        program: name.to_string(),
                        source,
                    })?;
            fds.insert(name.to_string(), fd);
        }
        Ok(RawMaps(fds))
    }
}

/// The instructions of `program` with the fds of the maps it references patched in.
pub(super) fn with_map_fds(
    name: &str,
    program: &Program,
    fd_of: impl Fn(&str) -> Option<i32>,
) -> Result<Vec<crate::asm::Insn>, ElfError> {
    let mut insns = program.insns.clone();
    for r in &program.map_refs {
        let fd = fd_of(&r.map).ok_or_else(|| ElfError::UnknownMap {
            program: name.to_string(),
            map: r.map.clone(),
        })?;
        insns[r.insn_index].src = crate::asm::insn::op::PSEUDO_MAP_FD;
        insns[r.insn_index].imm = fd;
        insns[r.insn_index + 1].imm = 0;
    }
    Ok(insns)
}

/// What to trace: a program by id and its main function's BTF type id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceTarget {
    pub prog_id: u32,
    pub main_func: u32,
}

/// A tracing program attached to its target: closing it (drop) detaches and unloads.
#[derive(Debug)]
pub struct TracingLink {
    pub link: OwnedFd,
    pub prog: OwnedFd,
}

/// Loads `program` as fentry (`exit` false) or fexit on `target` with `maps`, and
/// attaches it. A target that went away is `LoadError::Rejected` with ENOENT.
pub fn load_tracing(
    maps: &RawMaps,
    name: &str,
    program: &Program,
    target: TraceTarget,
    exit: bool,
    level: VerifierLogLevel,
) -> Result<TracingLink, LoadError> {
    let insns = with_map_fds(name, program, |m| maps.0.get(m).map(|fd| fd.as_raw_fd()))?;
    let rejected = |errno: io::Error, log: String| LoadError::Rejected {
        program: name.to_string(),
        errno,
        log: VerifierLog::new(log),
    };
    let target_fd = sys::prog_fd_by_id(target.prog_id).map_err(|e| rejected(e, String::new()))?;
    let attach_type = if exit {
        sys::TRACE_FEXIT
    } else {
        sys::TRACE_FENTRY
    };
    let prog = sys::prog_load(&sys::RawProgLoad {
        prog_type: sys::PROG_TYPE_TRACING,
        expected_attach_type: attach_type,
        name,
        insns: &insns,
        log_level: level.bits(),
        attach: Some(sys::AttachTo::Program(target_fd.as_fd(), target.main_func)),
        btf: None,
    })
    .map_err(|(e, log)| rejected(e, log))?;
    let link = sys::link_create_tracing(prog.as_fd(), attach_type)
        .map_err(|e| rejected(e, String::new()))?;
    Ok(TracingLink { link, prog })
}

/// Loads `program` (no maps) as a program of type `ty` with BTF naming its function
/// `name` with a pointer to its context struct as argument (`struct __sk_buff *`,
/// `struct xdp_md *`), so that fentry/fexit can trace it.
pub fn load_with_btf(
    ty: TracedProgType,
    name: &str,
    program: &Program,
) -> Result<OwnedFd, LoadError> {
    load_with_maps(ty, name, program, &[])
}

/// Creates a map of `spec` on its own (for programs loaded with [`load_with_maps`]);
/// closing the fd frees it once no program uses it.
pub fn create_map(spec: &super::MapSpec) -> io::Result<OwnedFd> {
    sys::map_create(
        spec.kind.kernel_type(),
        spec.key_size,
        spec.value_size,
        spec.max_entries,
        &spec.name,
    )
}

/// [`load_with_btf`] for a program referencing maps: `maps` gives the fd of each map it
/// names.
pub fn load_with_maps(
    ty: TracedProgType,
    name: &str,
    program: &Program,
    maps: &[(&str, BorrowedFd<'_>)],
) -> Result<OwnedFd, LoadError> {
    let insns = with_map_fds(name, program, |m| {
        maps.iter()
            .find(|(n, _)| *n == m)
            .map(|(_, fd)| fd.as_raw_fd())
    })?;
    let rejected = |errno: io::Error, log: String| LoadError::Rejected {
        program: name.to_string(),
        errno,
        log: VerifierLog::new(log),
    };
    let btf =
        sys::btf_load(&func_btf(name, ty.ctx_struct())).map_err(|(e, log)| rejected(e, log))?;
    let funcs = [sys::FuncInfo {
        insn_off: 0,
        type_id: FUNC_TYPE_ID,
    }];
    sys::prog_load(&sys::RawProgLoad {
        prog_type: ty.prog_type(),
        expected_attach_type: 0,
        name,
        insns: &insns,
        log_level: 1,
        attach: None,
        btf: Some((btf.as_fd(), &funcs)),
    })
    .map_err(|(e, log)| rejected(e, log))
}

/// Pins the program behind `fd` at `path` (in a bpffs), e.g. for `tc filter ... object-pinned`.
pub fn pin_program(fd: BorrowedFd<'_>, path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    sys::obj_pin(fd, &path)
}

/// The id of the program behind `fd`.
pub fn prog_id(fd: BorrowedFd<'_>) -> io::Result<u32> {
    Ok(sys::prog_info(fd)?.0.id)
}

/// Why fentry/fexit on BPF programs cannot be used here.
#[derive(Debug, thiserror::Error)]
pub enum TracingUnavailable {
    #[error("loading a tracing (fentry) program is denied ({0})")]
    Denied(io::Error),
    #[error("this kernel cannot trace BPF programs with fentry/fexit (needs 5.5+ with BTF): {0}")]
    KernelTooOld(String),
    #[error(
        "this kernel cannot attach fentry programs to its functions (needs 5.5+ with BTF): {0}"
    )]
    NoKernelFentry(String),
}

/// The two-instruction program (`r0 = 0; exit`) the trial loads use.
fn trial_program() -> Result<Program, crate::asm::AsmError> {
    let mut a = crate::asm::Asm::new();
    a.mov64(crate::asm::Reg::R0, 0);
    a.exit();
    a.finish()
}

/// Trial: loads a two-instruction tc program with BTF and an fentry program on it, then
/// unloads both. Tells whether [`load_tracing`] can work on this kernel.
pub fn check_tracing() -> Result<(), TracingUnavailable> {
    let _ = super::raise_rlimits();
    let prog = trial_program().map_err(|e| TracingUnavailable::KernelTooOld(e.to_string()))?;
    let denied = |e: &io::Error| matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES));
    let target = match load_with_btf(TracedProgType::SchedCls, "pwru_trial", &prog) {
        Ok(fd) => fd,
        Err(LoadError::Rejected { errno, .. }) if denied(&errno) => {
            return Err(TracingUnavailable::Denied(errno))
        }
        Err(e) => {
            return Err(TracingUnavailable::KernelTooOld(format!(
                "a tc program with BTF: {e}"
            )))
        }
    };
    let main_func = sys::prog_main_func(target.as_fd())
        .ok()
        .flatten()
        .map(|f| f.type_id)
        .ok_or_else(|| {
            TracingUnavailable::KernelTooOld("no BTF function info on a loaded program".into())
        })?;
    match sys::prog_load(&sys::RawProgLoad {
        prog_type: sys::PROG_TYPE_TRACING,
        expected_attach_type: sys::TRACE_FENTRY,
        name: "pwru_trial",
        insns: &prog.insns,
        log_level: 1,
        attach: Some(sys::AttachTo::Program(target.as_fd(), main_func)),
        btf: None,
    }) {
        Ok(_) => Ok(()),
        Err((e, _)) if denied(&e) => Err(TracingUnavailable::Denied(e)),
        Err((e, log)) => Err(TracingUnavailable::KernelTooOld(format!(
            "{e}{}",
            log.lines()
                .last()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default()
        ))),
    }
}

/// A probe program ready to be loaded as fentry on kernel functions, one load per function
/// ([`KernelFentry::attach`]): the map fds are patched in once, so every load of the same
/// program shares these instructions.
#[derive(Debug)]
pub struct KernelFentry {
    name: String,
    insns: Vec<crate::asm::Insn>,
}

impl KernelFentry {
    /// `program` (named `name` in the kernel) with the map fds `fd_of` gives, which must
    /// stay open while it is loaded.
    pub(super) fn new(
        name: &str,
        program: &Program,
        fd_of: impl Fn(&str) -> Option<i32>,
    ) -> Result<Self, LoadError> {
        let insns = with_map_fds(name, program, fd_of)?;
        Ok(KernelFentry {
            name: name.to_string(),
            insns,
        })
    }

    /// The kernel name of its programs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Loads it as fentry on the vmlinux function of BTF id `btf_id` and attaches it.
    /// A refusal is `LoadError::Rejected` with the errno and the verifier log.
    pub fn attach(&self, btf_id: u32, level: VerifierLogLevel) -> Result<TracingLink, LoadError> {
        let rejected = |errno: io::Error, log: String| LoadError::Rejected {
            program: self.name.clone(),
            errno,
            log: VerifierLog::new(log),
        };
        let prog = sys::prog_load(&sys::RawProgLoad {
            prog_type: sys::PROG_TYPE_TRACING,
            expected_attach_type: sys::TRACE_FENTRY,
            name: &self.name,
            insns: &self.insns,
            log_level: level.bits(),
            attach: Some(sys::AttachTo::Kernel(btf_id)),
            btf: None,
        })
        .map_err(|(e, log)| rejected(e, log))?;
        let link = sys::link_create_tracing(prog.as_fd(), sys::TRACE_FENTRY)
            .map_err(|e| rejected(e, String::new()))?;
        Ok(TracingLink { link, prog })
    }
}

/// Trial: loads a two-instruction fentry program on the vmlinux function of BTF id
/// `btf_id` (not attached), then unloads it. Tells whether [`KernelFentry::attach`] can
/// work on this kernel at all.
pub fn check_kernel_fentry(btf_id: u32) -> Result<(), TracingUnavailable> {
    let _ = super::raise_rlimits();
    let prog = trial_program().map_err(|e| TracingUnavailable::NoKernelFentry(e.to_string()))?;
    match sys::prog_load(&sys::RawProgLoad {
        prog_type: sys::PROG_TYPE_TRACING,
        expected_attach_type: sys::TRACE_FENTRY,
        name: "pwru_trial",
        insns: &prog.insns,
        log_level: 1,
        attach: Some(sys::AttachTo::Kernel(btf_id)),
        btf: None,
    }) {
        Ok(_) => Ok(()),
        Err((e, _)) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
            Err(TracingUnavailable::Denied(e))
        }
        Err((e, log)) => Err(TracingUnavailable::NoKernelFentry(format!(
            "{e}{}",
            log.lines()
                .last()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default()
        ))),
    }
}
