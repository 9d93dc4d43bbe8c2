//! The raw `bpf(2)` and `setrlimit(2)` calls aya 0.14 has no API for (kprobe_multi load and
//! link, fentry/fexit on BPF programs, BTF load, program ids and info, helper probes). The
//! only module of `load` with `unsafe`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::asm::Insn;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_BTF_LOAD: libc::c_long = 18;
const BPF_BTF_GET_FD_BY_ID: libc::c_long = 19;
const BPF_LINK_CREATE: libc::c_long = 28;

/// `BPF_PROG_TYPE_SCHED_CLS`.
pub const PROG_TYPE_SCHED_CLS: u32 = 3;
/// `BPF_PROG_TYPE_XDP`.
pub const PROG_TYPE_XDP: u32 = 6;
/// `BPF_PROG_TYPE_TRACING`.
pub const PROG_TYPE_TRACING: u32 = 26;
/// `BPF_TRACE_FENTRY` and `BPF_TRACE_FEXIT`: expected attach types and link attach types.
pub const TRACE_FENTRY: u32 = 24;
pub const TRACE_FEXIT: u32 = 25;

/// `BPF_PROG_TYPE_KPROBE`.
pub const PROG_TYPE_KPROBE: u32 = 2;
/// `BPF_TRACE_KPROBE_MULTI`: expected attach type and link attach type of kprobe_multi.
pub const TRACE_KPROBE_MULTI: u32 = 42;
/// `BPF_F_KPROBE_MULTI_RETURN`: attach to function returns instead of entries.
pub const KPROBE_MULTI_RETURN: u32 = 1;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to `log_true_size` (kernel 6.4+ layout;
/// older kernels accept it as long as the fields they do not know are zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_prog_fd: u32,
    core_relo_cnt: u32,
    fd_array: u64,
    core_relos: u64,
    core_relo_rec_size: u32,
    log_true_size: u32,
}

/// The `BPF_LINK_CREATE` part of `union bpf_attr` with its `kprobe_multi` member.
#[repr(C)]
#[derive(Default)]
struct LinkCreateKprobeMultiAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    kprobe_multi_flags: u32,
    cnt: u32,
    syms: u64,
    addrs: u64,
    cookies: u64,
}

/// The `BPF_LINK_CREATE` part of `union bpf_attr` for a tracing program (no target).
#[repr(C)]
#[derive(Default)]
struct LinkCreateTracingAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    target_btf_id: u32,
    _pad: u32,
    cookie: u64,
}

/// The `BPF_RAW_TRACEPOINT_OPEN` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct RawTracepointOpenAttr {
    name: u64,
    prog_fd: u32,
    _pad: u32,
}

/// The `BPF_PROG_GET_NEXT_ID` / `BPF_PROG_GET_FD_BY_ID` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct GetIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// The `BPF_BTF_LOAD` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BtfLoadAttr {
    btf: u64,
    btf_log_buf: u64,
    btf_size: u32,
    btf_log_size: u32,
    btf_log_level: u32,
    _pad: u32,
}

/// `struct bpf_func_info`: the BTF `FUNC` type of the function starting at `insn_off`.
#[repr(C)]
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncInfo {
    pub insn_off: u32,
    pub type_id: u32,
}

/// The `BPF_OBJ_GET_INFO_BY_FD` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct InfoByFdAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_btf_info`: a loaded BTF object's raw bytes (when `btf` points at a buffer).
#[repr(C)]
#[derive(Default)]
struct RawBtfInfo {
    btf: u64,
    btf_size: u32,
    id: u32,
    name: u64,
    name_len: u32,
    kernel_btf: u32,
}

/// `struct bpf_prog_info` up to `attach_btf_id` (kernel 5.x/6.x layout; the kernel fills what
/// it knows and leaves the rest zero).
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct RawProgInfo {
    pub prog_type: u32,
    pub id: u32,
    pub tag: [u8; 8],
    pub jited_prog_len: u32,
    pub xlated_prog_len: u32,
    pub jited_prog_insns: u64,
    pub xlated_prog_insns: u64,
    pub load_time: u64,
    pub created_by_uid: u32,
    pub nr_map_ids: u32,
    pub map_ids: u64,
    pub name: [u8; 16],
    pub ifindex: u32,
    pub gpl_compatible: u32,
    pub netns_dev: u64,
    pub netns_ino: u64,
    pub nr_jited_ksyms: u32,
    pub nr_jited_func_lens: u32,
    pub jited_ksyms: u64,
    pub jited_func_lens: u64,
    pub btf_id: u32,
    pub func_info_rec_size: u32,
    pub func_info: u64,
    pub nr_func_info: u32,
    pub nr_line_info: u32,
    pub line_info: u64,
    pub jited_line_info: u64,
    pub nr_jited_line_info: u32,
    pub line_info_rec_size: u32,
    pub jited_line_info_rec_size: u32,
    pub nr_prog_tags: u32,
    pub prog_tags: u64,
    pub run_time_ns: u64,
    pub run_cnt: u64,
    pub recursion_misses: u64,
    pub verified_insns: u32,
    pub attach_btf_obj_id: u32,
    pub attach_btf_id: u32,
    _pad: u32,
}

/// `bpf(cmd, attr, sizeof attr)`, returning the non-negative result or `errno`.
///
/// # Safety
/// `attr` must be the attr layout `cmd` expects, and every pointer stored in it must be
/// valid (for reads, or writes where the kernel writes) for the duration of the call.
unsafe fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller guarantees the attr layout and the pointers inside it; the size
    // passed is exactly the size of the attr we own.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned_fd(ret: libc::c_long) -> OwnedFd {
    // SAFETY: the commands we call this for (PROG_LOAD, LINK_CREATE) return a fresh file
    // descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(ret as i32) }
}

/// What to load through the raw path.
pub struct RawProgLoad<'a> {
    pub prog_type: u32,
    pub expected_attach_type: u32,
    pub name: &'a str,
    /// Instruction slots with map fds already filled in.
    pub insns: &'a [Insn],
    /// Verifier log level used on the retry after a failure (the first try runs without a log).
    pub log_level: u32,
    /// Tracing programs: what they attach to.
    pub attach: Option<AttachTo<'a>>,
    /// The program's own BTF and its function records.
    pub btf: Option<(BorrowedFd<'a>, &'a [FuncInfo])>,
}

/// What a tracing program attaches to (`attach_prog_fd`, `attach_btf_id`).
#[derive(Clone, Copy, Debug)]
pub enum AttachTo<'a> {
    /// A loaded BPF program and its function's BTF type id in that program's BTF.
    Program(BorrowedFd<'a>, u32),
    /// A kernel function by its BTF id in vmlinux (no `attach_prog_fd`).
    Kernel(u32),
}

/// Largest verifier log buffer every kernel accepts (`UINT_MAX >> 8` before 5.2).
const MAX_LOG: usize = (16 << 20) - 1;

/// `BPF_PROG_LOAD`. On failure returns the errno and the verifier log of a retry with a log
/// buffer (64 KiB, 1 MiB, then 16 MiB on `ENOSPC`).
pub fn prog_load(p: &RawProgLoad<'_>) -> Result<OwnedFd, (io::Error, String)> {
    let bytes = crate::asm::insn::to_bytecode(p.insns);
    let license = c"GPL";
    let mut name = [0u8; 16];
    let n = p.name.len().min(15);
    name[..n].copy_from_slice(&p.name.as_bytes()[..n]);

    let mut log: Vec<u8> = Vec::new();
    let mut first_error = None;
    loop {
        let mut attr = ProgLoadAttr {
            prog_type: p.prog_type,
            insn_cnt: p.insns.len() as u32,
            insns: bytes.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            expected_attach_type: p.expected_attach_type,
            ..Default::default()
        };
        match p.attach {
            Some(AttachTo::Program(target, btf_id)) => {
                attr.attach_prog_fd = target.as_raw_fd() as u32;
                attr.attach_btf_id = btf_id;
            }
            Some(AttachTo::Kernel(btf_id)) => attr.attach_btf_id = btf_id,
            None => {}
        }
        if let Some((btf, funcs)) = p.btf {
            attr.prog_btf_fd = btf.as_raw_fd() as u32;
            attr.func_info_rec_size = std::mem::size_of::<FuncInfo>() as u32;
            attr.func_info = funcs.as_ptr() as u64;
            attr.func_info_cnt = funcs.len() as u32;
        }
        if !log.is_empty() {
            attr.log_level = p.log_level.max(1);
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
        }
        // SAFETY: `attr` is the PROG_LOAD layout; `bytes`, `license`, `log` and the func
        // records outlive the call, `insn_cnt`/`log_size`/`func_info_cnt` match their
        // lengths, the fds are borrowed for the call, and only `log` is written to.
        match unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) } {
            Ok(fd) => return Ok(owned_fd(fd)),
            Err(e) => {
                let grow = log.is_empty() || e.raw_os_error() == Some(libc::ENOSPC);
                if grow && log.len() < MAX_LOG {
                    first_error.get_or_insert(e);
                    log = vec![0u8; (log.len() * 16).clamp(64 << 10, MAX_LOG)];
                    continue;
                }
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]).into_owned();
                // Report the errno of the real failure, not an ENOSPC of a short log buffer.
                let e = if e.raw_os_error() == Some(libc::ENOSPC) {
                    first_error.unwrap_or(e)
                } else {
                    e
                };
                return Err((e, text));
            }
        }
    }
}

/// Where a kprobe_multi link goes: kernel function names, or their ftrace locations (the
/// kernel then skips resolving each name by a walk over all of kallsyms).
pub enum MultiTargets<'a> {
    Symbols(&'a [CString]),
    Addrs(&'a [u64]),
}

impl MultiTargets<'_> {
    fn len(&self) -> usize {
        match self {
            MultiTargets::Symbols(s) => s.len(),
            MultiTargets::Addrs(a) => a.len(),
        }
    }
}

/// `BPF_LINK_CREATE` for kprobe_multi: attach `prog` to every target, with one optional
/// cookie per target. Returns the link fd; closing it detaches.
pub fn link_create_kprobe_multi(
    prog: BorrowedFd<'_>,
    targets: MultiTargets<'_>,
    cookies: Option<&[u64]>,
    flags: u32,
) -> io::Result<OwnedFd> {
    if cookies.is_some_and(|c| c.len() != targets.len()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "one cookie per function is needed",
        ));
    }
    let ptrs: Vec<*const libc::c_char> = match &targets {
        MultiTargets::Symbols(symbols) => symbols.iter().map(|s| s.as_ptr()).collect(),
        MultiTargets::Addrs(_) => Vec::new(),
    };
    let mut attr = LinkCreateKprobeMultiAttr {
        prog_fd: prog.as_raw_fd() as u32,
        attach_type: TRACE_KPROBE_MULTI,
        kprobe_multi_flags: flags,
        cnt: targets.len() as u32,
        cookies: cookies.map_or(0, |c| c.as_ptr() as u64),
        ..Default::default()
    };
    match &targets {
        MultiTargets::Symbols(_) => attr.syms = ptrs.as_ptr() as u64,
        MultiTargets::Addrs(addrs) => attr.addrs = addrs.as_ptr() as u64,
    }
    // SAFETY: `attr` is the LINK_CREATE layout; `syms` points at `cnt` NUL-terminated strings
    // owned by the caller's symbols, or `addrs` at `cnt` u64s; `cookies` (when set) holds
    // `cnt` u64s; all outlive the call and the kernel only reads them.
    let fd = unsafe { sys_bpf(BPF_LINK_CREATE, &mut attr)? };
    Ok(owned_fd(fd))
}

/// `BPF_LINK_CREATE` for a tracing (fentry/fexit) program, whose target was fixed at load
/// time; kernels before 5.13 refuse it (EINVAL), then `BPF_RAW_TRACEPOINT_OPEN` without a
/// name attaches it. Returns the link fd; closing it detaches.
pub fn link_create_tracing(prog: BorrowedFd<'_>, attach_type: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateTracingAttr {
        prog_fd: prog.as_raw_fd() as u32,
        attach_type,
        ..Default::default()
    };
    // SAFETY: `attr` is the LINK_CREATE layout and holds no pointers.
    match unsafe { sys_bpf(BPF_LINK_CREATE, &mut attr) } {
        Ok(fd) => Ok(owned_fd(fd)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let mut attr = RawTracepointOpenAttr {
                prog_fd: prog.as_raw_fd() as u32,
                ..Default::default()
            };
            // SAFETY: `attr` is the RAW_TRACEPOINT_OPEN layout; `name` 0 is no name.
            let fd = unsafe { sys_bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr)? };
            Ok(owned_fd(fd))
        }
        Err(e) => Err(e),
    }
}

/// The `BPF_MAP_CREATE` part of `union bpf_attr`, up to `map_name`.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `BPF_MAP_CREATE` of a plain map (no BTF) named `name` (at most 15 bytes kept).
pub fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut map_name = [0u8; 16];
    let n = name.len().min(15);
    map_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_name,
        ..Default::default()
    };
    // SAFETY: `attr` is the MAP_CREATE layout and holds no pointers.
    let fd = unsafe { sys_bpf(BPF_MAP_CREATE, &mut attr)? };
    Ok(owned_fd(fd))
}

/// The `BPF_OBJ_PIN` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ObjPinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// `BPF_OBJ_PIN`: pins the object behind `fd` at `path` in a bpffs.
pub fn obj_pin(fd: BorrowedFd<'_>, path: &std::ffi::CStr) -> io::Result<()> {
    let mut attr = ObjPinAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        file_flags: 0,
    };
    // SAFETY: `attr` is the OBJ_PIN layout; `path` is NUL-terminated and outlives the call.
    unsafe { sys_bpf(BPF_OBJ_PIN, &mut attr)? };
    Ok(())
}

/// `BPF_PROG_GET_NEXT_ID`: the id of the loaded program after `start` (0: the first);
/// `None` after the last.
pub fn prog_next_id(start: u32) -> io::Result<Option<u32>> {
    let mut attr = GetIdAttr {
        id: start,
        ..Default::default()
    };
    // SAFETY: `attr` is the GET_NEXT_ID layout and holds no pointers; the kernel writes
    // `next_id` inside it.
    match unsafe { sys_bpf(BPF_PROG_GET_NEXT_ID, &mut attr) } {
        Ok(_) => Ok(Some(attr.next_id)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `BPF_PROG_GET_FD_BY_ID`: a new fd for program `id` (ENOENT when it is gone).
pub fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetIdAttr {
        id,
        ..Default::default()
    };
    // SAFETY: `attr` is the GET_FD_BY_ID layout and holds no pointers.
    let fd = unsafe { sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)? };
    Ok(owned_fd(fd))
}

/// The raw bytes (host order) of the loaded BTF object `id`, e.g. a program's `btf_id`.
pub fn btf_bytes(id: u32) -> io::Result<Vec<u8>> {
    let mut attr = GetIdAttr {
        id,
        ..Default::default()
    };
    // SAFETY: `attr` is the GET_FD_BY_ID layout and holds no pointers.
    let fd = owned_fd(unsafe { sys_bpf(BPF_BTF_GET_FD_BY_ID, &mut attr)? });
    let mut info = RawBtfInfo::default();
    let mut get = InfoByFdAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<RawBtfInfo>() as u32,
        info: &mut info as *mut RawBtfInfo as u64,
    };
    // SAFETY: `get` is the GET_INFO_BY_FD layout; `info` is writable for `info_len` bytes
    // and holds no pointers yet (the kernel only reports the size).
    unsafe { sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut get)? };
    let mut bytes = vec![0u8; info.btf_size as usize];
    let mut info = RawBtfInfo {
        btf: bytes.as_mut_ptr() as u64,
        btf_size: bytes.len() as u32,
        ..Default::default()
    };
    get.info = &mut info as *mut RawBtfInfo as u64;
    // SAFETY: as above; the kernel writes at most `btf_size` bytes to `bytes`, which holds
    // exactly that many.
    unsafe { sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut get)? };
    bytes.truncate(info.btf_size.min(bytes.len() as u32) as usize);
    Ok(bytes)
}

/// `BPF_BTF_LOAD` of a raw BTF blob; on failure the errno and the kernel's BTF log.
pub fn btf_load(blob: &[u8]) -> Result<OwnedFd, (io::Error, String)> {
    let mut log = vec![0u8; 64 << 10];
    let mut attr = BtfLoadAttr {
        btf: blob.as_ptr() as u64,
        btf_size: blob.len() as u32,
        ..Default::default()
    };
    // SAFETY: `attr` is the BTF_LOAD layout; `blob` outlives the call and is only read.
    match unsafe { sys_bpf(BPF_BTF_LOAD, &mut attr) } {
        Ok(fd) => Ok(owned_fd(fd)),
        Err(first) => {
            attr.btf_log_buf = log.as_mut_ptr() as u64;
            attr.btf_log_size = log.len() as u32;
            attr.btf_log_level = 1;
            // SAFETY: as above, and `log` is writable for `btf_log_size` bytes.
            let _ = unsafe { sys_bpf(BPF_BTF_LOAD, &mut attr) };
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err((first, String::from_utf8_lossy(&log[..end]).into_owned()))
        }
    }
}

/// The first function record of the program behind `fd` (its main function), when the
/// program was loaded with BTF.
pub fn prog_main_func(fd: BorrowedFd<'_>) -> io::Result<Option<FuncInfo>> {
    let mut first = FuncInfo::default();
    let mut info = RawProgInfo {
        nr_func_info: 1,
        func_info_rec_size: std::mem::size_of::<FuncInfo>() as u32,
        func_info: &mut first as *mut FuncInfo as u64,
        ..Default::default()
    };
    // SAFETY: the kernel writes at most `nr_func_info` (1) records of
    // `func_info_rec_size` bytes to `first`.
    unsafe { get_prog_info(fd, &mut info)? };
    Ok((info.nr_func_info > 0 && info.btf_id != 0).then_some(first))
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a program fd into `info`.
///
/// # Safety
/// Every pointer set in `info` must point to memory the kernel may write for as many
/// records or bytes as the matching count or length in `info` says.
unsafe fn get_prog_info(fd: BorrowedFd<'_>, info: &mut RawProgInfo) -> io::Result<()> {
    let mut attr = InfoByFdAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<RawProgInfo>() as u32,
        info: info as *mut RawProgInfo as u64,
    };
    // SAFETY: `attr` is the GET_INFO_BY_FD layout and `info` is writable for `info_len`
    // bytes; what the kernel writes through `info`'s pointers is the caller's promise.
    unsafe { sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)? };
    Ok(())
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a program fd: its info without the arrays.
pub fn prog_info_only(fd: BorrowedFd<'_>) -> io::Result<RawProgInfo> {
    let mut info = RawProgInfo::default();
    // SAFETY: no pointer is set in `info`: the kernel writes nothing through one.
    unsafe { get_prog_info(fd, &mut info)? };
    Ok(info)
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a program fd, plus the ids of the maps it uses.
pub fn prog_info(fd: BorrowedFd<'_>) -> io::Result<(RawProgInfo, Vec<u32>)> {
    let info = prog_info_only(fd)?;
    let n = info.nr_map_ids;
    if n == 0 {
        return Ok((info, Vec::new()));
    }
    let mut ids = vec![0u32; n as usize];
    let mut second = RawProgInfo {
        nr_map_ids: n,
        map_ids: ids.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: the kernel writes at most `nr_map_ids` u32s to `ids`, which holds exactly
    // that many.
    unsafe { get_prog_info(fd, &mut second)? };
    ids.truncate(second.nr_map_ids.min(n) as usize);
    Ok((info, ids))
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a program fd for its translated (post-verifier)
/// instructions, as `bpftool prog dump xlated` reads them. Helper calls carry the helper's
/// address less `__bpf_call_base` only when the caller may see kernel addresses; otherwise
/// the kernel zeroes them.
pub fn prog_xlated_insns(fd: BorrowedFd<'_>) -> io::Result<Vec<Insn>> {
    let info = prog_info_only(fd)?;
    let len = info.xlated_prog_len as usize;
    if len == 0 {
        return Ok(Vec::new());
    }
    let mut bytes = vec![0u8; len];
    let mut second = RawProgInfo {
        xlated_prog_len: len as u32,
        xlated_prog_insns: bytes.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: the kernel writes at most `xlated_prog_len` bytes to `bytes`, which holds
    // exactly that many.
    unsafe { get_prog_info(fd, &mut second)? };
    bytes.truncate((second.xlated_prog_len as usize).min(len) / 8 * 8);
    Ok(crate::asm::insn::from_bytecode(&bytes))
}

#[cfg(target_env = "gnu")]
type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type RlimitResource = libc::c_int;

/// Raise the soft limit of `resource` to its hard limit (or to `want` when the hard limit
/// allows it); returns the new soft limit.
fn raise_rlimit(resource: RlimitResource, want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let target = want.min(lim.rlim_max);
    if lim.rlim_cur >= target {
        return Ok(lim.rlim_cur);
    }
    lim.rlim_cur = target;
    // SAFETY: `lim` is a valid rlimit with cur <= max.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(target)
}

/// Lift RLIMIT_MEMLOCK (pre-5.11 kernels charge BPF memory to it) and RLIMIT_NOFILE (each
/// kprobe costs one or two fds) as far as the hard limits allow.
pub fn raise_rlimits() -> io::Result<()> {
    raise_rlimit(libc::RLIMIT_MEMLOCK, libc::RLIM_INFINITY)?;
    raise_rlimit(libc::RLIMIT_NOFILE, libc::RLIM_INFINITY)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya_obj::generated as g;
    use std::mem::{offset_of, size_of};

    #[test]
    fn prog_info_layout_matches_the_uapi() {
        assert_eq!(size_of::<RawProgInfo>(), size_of::<g::bpf_prog_info>());
        assert_eq!(
            offset_of!(RawProgInfo, id),
            offset_of!(g::bpf_prog_info, id)
        );
        assert_eq!(
            offset_of!(RawProgInfo, name),
            offset_of!(g::bpf_prog_info, name)
        );
        assert_eq!(
            offset_of!(RawProgInfo, map_ids),
            offset_of!(g::bpf_prog_info, map_ids)
        );
        assert_eq!(
            offset_of!(RawProgInfo, run_time_ns),
            offset_of!(g::bpf_prog_info, run_time_ns)
        );
        assert_eq!(
            offset_of!(RawProgInfo, recursion_misses),
            offset_of!(g::bpf_prog_info, recursion_misses)
        );
        assert_eq!(
            offset_of!(RawProgInfo, attach_btf_id),
            offset_of!(g::bpf_prog_info, attach_btf_id)
        );
    }

    #[test]
    fn attr_layouts_match_the_uapi() {
        assert_eq!(offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(offset_of!(ProgLoadAttr, fd_array), 120);
        assert_eq!(size_of::<ProgLoadAttr>(), 144);
        assert!(size_of::<ProgLoadAttr>() <= size_of::<g::bpf_attr>());
        assert_eq!(
            offset_of!(LinkCreateKprobeMultiAttr, kprobe_multi_flags),
            16
        );
        assert_eq!(offset_of!(LinkCreateKprobeMultiAttr, syms), 24);
        assert_eq!(offset_of!(LinkCreateKprobeMultiAttr, cookies), 40);
        assert_eq!(
            TRACE_KPROBE_MULTI,
            g::bpf_attach_type::BPF_TRACE_KPROBE_MULTI as u32
        );
        assert_eq!(TRACE_FENTRY, g::bpf_attach_type::BPF_TRACE_FENTRY as u32);
        assert_eq!(TRACE_FEXIT, g::bpf_attach_type::BPF_TRACE_FEXIT as u32);
        assert_eq!(
            PROG_TYPE_TRACING,
            g::bpf_prog_type::BPF_PROG_TYPE_TRACING as u32
        );
        assert_eq!(
            PROG_TYPE_SCHED_CLS,
            g::bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS as u32
        );
        assert_eq!(offset_of!(ProgLoadAttr, prog_btf_fd), 72);
        assert_eq!(offset_of!(ProgLoadAttr, attach_btf_id), 108);
        assert_eq!(offset_of!(ProgLoadAttr, attach_prog_fd), 112);
        assert_eq!(offset_of!(LinkCreateTracingAttr, target_btf_id), 16);
        assert_eq!(offset_of!(BtfLoadAttr, btf_log_level), 24);
        assert_eq!(size_of::<RawBtfInfo>(), size_of::<g::bpf_btf_info>());
        assert_eq!(offset_of!(RawBtfInfo, kernel_btf), 28);
        assert_eq!(offset_of!(MapCreateAttr, map_name), 28);
        assert_eq!(size_of::<FuncInfo>(), size_of::<g::bpf_func_info>());
    }
}
