//! Kernel facts the tracer and benchmarks ask about: per-program statistics and BTF by fd,
//! whether `bpf_get_func_ip` works in kprobes and whether kprobe_multi links exist (each
//! probed once with a tiny program).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use crate::asm::{Asm, Helper, Reg};

use super::sys;

/// What `BPF_OBJ_GET_INFO_BY_FD` says about a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgInfo {
    pub id: u32,
    /// The kernel's copy of the name (at most 15 bytes).
    pub name: String,
    /// `enum bpf_prog_type`.
    pub prog_type: u32,
    /// Total time spent in the program; counted only while run-time stats are enabled
    /// (see [`enable_run_time_stats`]).
    pub run_time_ns: u64,
    pub run_cnt: u64,
    /// Runs skipped because the program was already running on that CPU.
    pub recursion_misses: u64,
    pub verified_insns: u32,
    /// Ids of the maps the program uses.
    pub map_ids: Vec<u32>,
    /// Id of the program's own BTF; 0 when it was loaded without.
    pub btf_id: u32,
    /// Number of BTF function records (one per function) it was loaded with.
    pub nr_func_info: u32,
}

/// Ask the kernel about the program behind `fd` (any program, aya-loaded or raw).
pub fn prog_info(fd: BorrowedFd<'_>) -> io::Result<ProgInfo> {
    let (raw, map_ids) = sys::prog_info(fd)?;
    let end = raw.name.iter().position(|&b| b == 0).unwrap_or(16);
    Ok(ProgInfo {
        id: raw.id,
        name: String::from_utf8_lossy(&raw.name[..end]).into_owned(),
        prog_type: raw.prog_type,
        run_time_ns: raw.run_time_ns,
        run_cnt: raw.run_cnt,
        recursion_misses: raw.recursion_misses,
        verified_insns: raw.verified_insns,
        map_ids,
        btf_id: raw.btf_id,
        nr_func_info: raw.nr_func_info,
    })
}

/// The name of the program's main function in its own BTF (the full name, where the
/// kernel's program name stops at 15 bytes); `None` when it was loaded without BTF.
pub fn prog_func_name(fd: BorrowedFd<'_>) -> io::Result<Option<String>> {
    let Some(main) = sys::prog_main_func(fd)? else {
        return Ok(None);
    };
    let btf_id = sys::prog_info(fd)?.0.btf_id;
    let bad = |e: btf_rs::Error| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
    let btf = btf_rs::Btf::from_bytes(&sys::btf_bytes(btf_id)?).map_err(bad)?;
    match btf.resolve_type_by_id(main.type_id).map_err(bad)? {
        btf_rs::Type::Func(func) => Ok(Some(btf.resolve_name(&func).map_err(bad)?)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("BTF type {} is not a function", main.type_id),
        )),
    }
}

/// Turn on `run_time_ns`/`run_cnt` accounting for all programs until the returned fd is
/// closed (`BPF_ENABLE_STATS`, kernel 5.8+).
pub fn enable_run_time_stats() -> io::Result<OwnedFd> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| e.io_error)
}

/// Whether kprobe programs may call `bpf_get_func_ip` (kernel 5.15+). The first call
/// loads a three-instruction kprobe program; the answer is cached. Errors other than the
/// verifier's refusal (e.g. EPERM without CAP_BPF) are returned and not cached.
pub fn func_ip_available() -> io::Result<bool> {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    if let Some(&a) = ANSWER.get() {
        return Ok(a);
    }
    let mut a = Asm::new();
    a.call(Helper::GET_FUNC_IP);
    a.mov64(Reg::R0, 0);
    a.exit();
    let answer = match load_kprobe_probe(a, 0, "probe_func_ip")? {
        Ok(_fd) => true,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => false,
        Err(e) => return Err(e),
    };
    Ok(*ANSWER.get_or_init(|| answer))
}

/// Whether this kernel makes kprobe_multi links (fprobe, 5.18+), as libbpf probes it: a
/// two-instruction kprobe_multi program is linked to address 0, which a kernel with them
/// refuses with EINVAL; without fprobe the answer is EOPNOTSUPP, and 5.15-5.17 take the
/// link for a perf one (EBADF). A guess only: kernels before 5.15 answer EINVAL too. The
/// answer is cached; a load refused for lack of privilege is returned as an error.
pub fn kprobe_multi_links_likely() -> io::Result<bool> {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    if let Some(&a) = ANSWER.get() {
        return Ok(a);
    }
    let mut a = Asm::new();
    a.mov64(Reg::R0, 0);
    a.exit();
    let fd = match load_kprobe_probe(a, sys::TRACE_KPROBE_MULTI, "probe_kpm_link")? {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            return Ok(*ANSWER.get_or_init(|| false))
        }
        Err(e) => return Err(e),
    };
    let answer = match sys::link_create_kprobe_multi(
        std::os::fd::AsFd::as_fd(&fd),
        sys::MultiTargets::Addrs(&[0]),
        None,
        0,
    ) {
        Ok(_link) => true,
        Err(e) => e.raw_os_error() == Some(libc::EINVAL),
    };
    Ok(*ANSWER.get_or_init(|| answer))
}

/// Loads the feature probe `a` as a kprobe program: the outer error is one of assembling
/// it, the inner one the kernel's answer to the load.
fn load_kprobe_probe(
    a: Asm,
    expected_attach_type: u32,
    name: &str,
) -> io::Result<io::Result<OwnedFd>> {
    let prog = a
        .finish()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    Ok(sys::prog_load(&sys::RawProgLoad {
        prog_type: sys::PROG_TYPE_KPROBE,
        expected_attach_type,
        name,
        insns: &prog.insns,
        log_level: 0,
        attach: None,
        btf: None,
    })
    .map_err(|(e, _log)| e))
}
