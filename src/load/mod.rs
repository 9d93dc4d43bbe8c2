//! Loading assembled programs into the kernel: an [`ObjectSpec`] (maps + named programs) becomes
//! one in-memory ELF handed to aya, plus raw `bpf()` loads for kprobe_multi; all share the maps.
//!
//! ```text
//! ObjectSpec --elf::build--> ELF --aya EbpfLoader--> maps + programs (socket, tc, kprobe, raw_tp, tp_btf)
//!            \--kprobe_multi programs, map fds patched in--> sys::prog_load
//! ObjectSpec with only kprobe_multi/fentry programs --aya MapData::create--> maps (no EbpfLoader)
//! ```
//! Every program is loaded with BTF naming its function (`func_info`, see `func_btf`), so
//! it shows its full name and can itself be traced with fentry; where the kernel or aya
//! refuses that BTF the object is loaded again without it ([`LoadedObject::btf_fallback`]).
//! fentry/fexit programs on BPF programs are loaded later, one target at a time, with the
//! object's maps (`tracing`).

pub mod elf;
pub mod func_btf;
mod info;
mod links;
pub mod perf;
mod sys;
pub mod tracing;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use aya::maps::{Array, HashMap as AyaHashMap, Map, MapData, RingBuf};
use aya::programs::ProgramError;
use aya::{Ebpf, EbpfError, EbpfLoader, Pod};
use std::sync::Mutex;

use crate::asm::Program;

pub use aya::VerifierLogLevel;
pub use elf::ElfError;
pub use info::{
    enable_run_time_stats, func_ip_available, kprobe_multi_links_likely, prog_func_name, prog_info,
    ProgInfo,
};
pub use links::{KprobeMultiOptions, ObjectError};
pub use tracing::{
    bpf_programs, check_kernel_fentry, check_tracing, create_map, load_tracing, load_with_btf,
    load_with_maps, pin_program, prog_id, xlated_insns, xlated_programs, BpfProgram, KernelFentry,
    RawMaps, TraceTarget, TracedProgType, TracingLink, TracingUnavailable, XlatedProgram,
};

/// Kinds of maps a spec can declare (legacy `bpf_map_def` types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapKind {
    Hash,
    Array,
    PerCpuHash,
    PerCpuArray,
    LruHash,
    LruPerCpuHash,
    StackTrace,
    PerfEventArray,
    /// `max_entries` is the buffer size in bytes (aya rounds it up to a power-of-two pages).
    RingBuf,
}

impl MapKind {
    /// The kernel's `enum bpf_map_type` value.
    pub fn kernel_type(self) -> u32 {
        match self {
            MapKind::Hash => 1,
            MapKind::Array => 2,
            MapKind::PerfEventArray => 4,
            MapKind::PerCpuHash => 5,
            MapKind::PerCpuArray => 6,
            MapKind::StackTrace => 7,
            MapKind::LruHash => 9,
            MapKind::LruPerCpuHash => 10,
            MapKind::RingBuf => 27,
        }
    }

    /// Shape rules the kernel would otherwise reject with a bare EINVAL.
    fn check_shape(self, m: &MapSpec) -> Result<(), String> {
        match self {
            MapKind::Array | MapKind::PerCpuArray | MapKind::PerfEventArray if m.key_size != 4 => {
                Err(format!("array keys must be 4 bytes, not {}", m.key_size))
            }
            MapKind::RingBuf if m.key_size != 0 || m.value_size != 0 => {
                Err("ring buffers have no key or value size (use 0)".into())
            }
            MapKind::RingBuf if m.max_entries == 0 => {
                Err("ring buffer size (max_entries) must be non-zero".into())
            }
            MapKind::StackTrace if m.value_size == 0 || !m.value_size.is_multiple_of(8) => {
                Err(format!(
                    "stack trace values must be a non-zero multiple of 8 bytes, not {}",
                    m.value_size
                ))
            }
            MapKind::Hash
            | MapKind::PerCpuHash
            | MapKind::LruHash
            | MapKind::LruPerCpuHash
            | MapKind::Array
            | MapKind::PerCpuArray
            | MapKind::StackTrace
                if m.key_size == 0 || m.value_size == 0 || m.max_entries == 0 =>
            {
                Err("key size, value size and max_entries must be non-zero".into())
            }
            _ => Ok(()),
        }
    }
}

/// One map shared by every program of the object. Programs name it in `Asm::ld_map`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// 1-15 characters of `[A-Za-z0-9_.]`.
    pub name: String,
    pub kind: MapKind,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    /// `BPF_F_*` map flags.
    pub flags: u32,
}

impl MapSpec {
    pub fn new(
        name: &str,
        kind: MapKind,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> Self {
        MapSpec {
            name: name.to_string(),
            kind,
            key_size,
            value_size,
            max_entries,
            flags: 0,
        }
    }

    /// A `BPF_MAP_TYPE_RINGBUF` of `bytes` bytes.
    pub fn ring_buf(name: &str, bytes: u32) -> Self {
        MapSpec::new(name, MapKind::RingBuf, 0, 0, bytes)
    }
}

/// Program types, each with the ELF section prefix aya reads it from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProgKind {
    /// `BPF_PROG_TYPE_SOCKET_FILTER` (`socket`), test-runnable.
    SocketFilter,
    /// `BPF_PROG_TYPE_SCHED_CLS` (`classifier`), test-runnable.
    SchedCls,
    /// Perf-event kprobe (`kprobe`), attached per function.
    KProbe,
    /// Perf-event kretprobe (`kretprobe`).
    KRetProbe,
    /// kprobe_multi: loaded through raw `bpf()` with expected attach type
    /// `BPF_TRACE_KPROBE_MULTI`, attached to many functions by one link.
    KProbeMulti,
    /// Raw tracepoint on the named tracepoint (section `raw_tp/<program>`).
    RawTracepoint(String),
    /// BTF-typed raw tracepoint on the named tracepoint (section `tp_btf/<program>`), needs
    /// kernel BTF.
    TpBtf(String),
    /// fentry on kernel functions: not loaded with the object but kept, with the map fds
    /// patched in, for the fentry backend to load once per function
    /// ([`LoadedObject::kernel_fentry`]).
    Fentry,
}

/// A named program and its kind. The name (1-15 characters of `[A-Za-z0-9_.]`) is the
/// kernel program name and the key for every lookup on [`LoadedObject`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSpec {
    pub name: String,
    pub kind: ProgKind,
    pub program: Program,
}

/// Everything loaded together: the programs share every map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectSpec {
    pub maps: Vec<MapSpec>,
    pub programs: Vec<ProgramSpec>,
}

/// Knobs for [`load`].
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions<'a> {
    /// Log level of the verifier run that is repeated after a rejection to explain it
    /// (default: DEBUG | STATS, as aya).
    pub verifier_log_level: VerifierLogLevel,
    /// Kernel BTF for `tp_btf` programs; read from `/sys/kernel/btf/vmlinux` when `None`.
    pub btf: Option<&'a aya::Btf>,
    /// Load the programs without BTF of their own (no `func_info`): they cannot be traced
    /// with fentry then. Off by default.
    pub without_func_info: bool,
}

/// A verifier log. `Display` shows the last [`VerifierLog::TAIL_LINES`] lines, where the
/// verifier says what it rejected; [`VerifierLog::full`] has everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierLog(String);

impl VerifierLog {
    pub const TAIL_LINES: usize = 40;

    pub fn new(log: String) -> Self {
        VerifierLog(log)
    }

    pub fn full(&self) -> &str {
        &self.0
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> &str {
        let t = self.0.trim_end();
        let mut start = t.len();
        for _ in 0..n {
            match t[..start].rfind('\n') {
                Some(i) => start = i,
                None => return t,
            }
        }
        &t[start + 1..]
    }
}

impl fmt::Display for VerifierLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.trim_end().lines().count();
        if total == 0 {
            return f.write_str("(the verifier log is empty)");
        }
        let shown = total.min(Self::TAIL_LINES);
        if shown < total {
            writeln!(f, "... ({} earlier lines omitted)", total - shown)?;
        }
        f.write_str(self.tail(Self::TAIL_LINES))
    }
}

/// Why [`load`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid object spec: {0}")]
    Spec(#[from] ElfError),
    #[error("loading the object (maps, relocations) failed: {}", links::chain(.0.as_ref()))]
    Object(#[source] Box<EbpfError>),
    #[error("reading kernel BTF (needed for tp_btf programs) failed: {0}")]
    Btf(#[source] aya::BtfError),
    #[error("program `{program}` was rejected by the kernel: {errno}\nverifier log:\n{log}")]
    Rejected {
        program: String,
        errno: io::Error,
        log: VerifierLog,
    },
    #[error("creating map `{map}` failed: {}", links::chain(source.as_ref()))]
    Map {
        map: String,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("reading the number of possible CPUs ({path}) failed")]
    PossibleCpus {
        path: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("program `{0}` is missing from the object aya parsed (internal error)")]
    NotInObject(String),
    #[error("tp_btf program `{0}` needs kernel BTF and none was given")]
    NoBtf(String),
    #[error("loading program `{program}` failed: {}", links::chain(source.as_ref()))]
    Program {
        program: String,
        #[source]
        source: Box<ProgramError>,
    },
}

impl LoadError {
    /// The verifier log, when the kernel rejected a program.
    pub fn verifier_log(&self) -> Option<&VerifierLog> {
        match self {
            LoadError::Rejected { log, .. } => Some(log),
            _ => None,
        }
    }

    /// The program the error is about, if any.
    pub fn program(&self) -> Option<&str> {
        match self {
            LoadError::Rejected { program, .. } | LoadError::Program { program, .. } => {
                Some(program)
            }
            _ => None,
        }
    }
}

fn program_error(program: &str, e: ProgramError) -> LoadError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => LoadError::Rejected {
            program: program.to_string(),
            errno: io_error,
            log: VerifierLog(verifier_log.to_string()),
        },
        source => LoadError::Program {
            program: program.to_string(),
            source: Box::new(source),
        },
    }
}

/// Lift RLIMIT_MEMLOCK and RLIMIT_NOFILE to their hard limits, once per process (later calls
/// return the first result). [`load`] calls it and ignores a failure, which on kernels
/// that still charge memlock shows up as a load error instead.
pub fn raise_rlimits() -> Result<(), String> {
    static ONCE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| sys::raise_rlimits().map_err(|e| e.to_string()))
        .clone()
}

/// Programs and maps living in the kernel. Dropping it detaches and unloads everything
/// (except links and maps that were taken out).
pub struct LoadedObject {
    /// The programs loaded through aya's loader; `None` when every program loads through
    /// the raw path (kprobe_multi, fentry), which spares the loader's BTF parse.
    ebpf: Option<Ebpf>,
    /// Every map of the object, by name, until taken out.
    maps: HashMap<String, Map>,
    kinds: HashMap<String, ProgKind>,
    /// kprobe_multi programs loaded through the raw path.
    multi: HashMap<String, OwnedFd>,
    /// fentry programs waiting to be loaded per function.
    fentry: HashMap<String, KernelFentry>,
    /// Why the programs were loaded without their BTF, when they were.
    btf_fallback: Option<String>,
}

/// A loader made by [`prepare_loader`], waiting for [`load`].
static PREPARED_LOADER: Mutex<Option<EbpfLoader<'static>>> = Mutex::new(None);

/// Makes aya's loader now, while the process holds little memory: making one parses the
/// kernel's BTF (about 20 MB for a moment), which the loader here drops at once as our
/// programs need no relocations. Peak memory is then this parse over a small base
/// instead of over everything set up before loading. Optional: [`load`] makes its own.
pub fn prepare_loader() {
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    if let Ok(mut slot) = PREPARED_LOADER.lock() {
        *slot = Some(loader);
    }
    trim_heap();
}

/// The prepared loader, or a new one, without the kernel's BTF.
fn take_prepared_loader<'a>() -> EbpfLoader<'a> {
    let prepared = PREPARED_LOADER.lock().ok().and_then(|mut slot| slot.take());
    prepared.unwrap_or_else(|| {
        let mut loader = EbpfLoader::new();
        loader.btf(None);
        loader
    })
}

/// Gives freed heap back to the system (glibc keeps it otherwise, and it would count in
/// the tracer's resident memory for its whole run).
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory; no pointer is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Load every program of `spec` (in order) with the maps created once and shared, each
/// with BTF naming its function. Should loading with that BTF fail, everything is loaded
/// again without it (the reason is kept in [`LoadedObject::btf_fallback`]).
/// Fails on the first program the kernel rejects, naming it and carrying its verifier log.
pub fn load(spec: &ObjectSpec, opts: &LoadOptions<'_>) -> Result<LoadedObject, LoadError> {
    if opts.without_func_info {
        return load_object(spec, opts, elf::FuncInfo::Omit);
    }
    match load_object(spec, opts, elf::FuncInfo::Emit) {
        Ok(obj) => Ok(obj),
        Err(
            e @ (LoadError::Spec(_)
            | LoadError::Btf(_)
            | LoadError::NoBtf(_)
            | LoadError::Map { .. }
            | LoadError::PossibleCpus { .. }),
        ) => Err(e),
        Err(with_btf) => {
            let mut obj = load_object(spec, opts, elf::FuncInfo::Omit)?;
            obj.btf_fallback = Some(with_btf.to_string());
            Ok(obj)
        }
    }
}

fn load_object(
    spec: &ObjectSpec,
    opts: &LoadOptions<'_>,
    func_info: elf::FuncInfo,
) -> Result<LoadedObject, LoadError> {
    let all: Vec<&ProgramSpec> = spec.programs.iter().collect();
    elf::validate(&spec.maps, &all)?;
    let _ = raise_rlimits();

    let (fentry_specs, rest): (Vec<&ProgramSpec>, Vec<&ProgramSpec>) =
        all.iter().partition(|p| matches!(p.kind, ProgKind::Fentry));
    let (multi_specs, aya_specs): (Vec<&ProgramSpec>, Vec<&ProgramSpec>) = rest
        .iter()
        .partition(|p| matches!(p.kind, ProgKind::KProbeMulti));
    let (ebpf, maps) = match aya_specs.is_empty() {
        true => (None, create_maps(&spec.maps)?),
        false => {
            let mut ebpf = load_with_loader(&aya_specs, opts, func_info, &spec.maps)?;
            let names: Vec<String> = ebpf.maps().map(|(name, _)| name.to_string()).collect();
            let maps = names
                .into_iter()
                .filter_map(|name| Some((name.clone(), ebpf.take_map(&name)?)))
                .collect();
            (Some(ebpf), maps)
        }
    };

    let mut multi = HashMap::new();
    for p in &multi_specs {
        let fd = load_kprobe_multi(&maps, p, opts.verifier_log_level, func_info)?;
        multi.insert(p.name.clone(), fd);
    }
    let mut fentry = HashMap::new();
    for p in &fentry_specs {
        let prepared = KernelFentry::new(&p.name, &p.program, |m| raw_map_fd(&maps, m))?;
        fentry.insert(p.name.clone(), prepared);
    }

    // What start-up freed (a BTF parse by aya's loader, the text of the kernel's lists,
    // generation buffers) goes back to the system before the trace runs.
    trim_heap();
    Ok(LoadedObject {
        ebpf,
        maps,
        kinds: spec
            .programs
            .iter()
            .map(|p| (p.name.clone(), p.kind.clone()))
            .collect(),
        multi,
        fentry,
        btf_fallback: None,
    })
}

/// The ELF of `aya_specs` and `maps` through aya's loader, each program loaded.
fn load_with_loader(
    aya_specs: &[&ProgramSpec],
    opts: &LoadOptions<'_>,
    func_info: elf::FuncInfo,
    maps: &[MapSpec],
) -> Result<Ebpf, LoadError> {
    let bytes = elf::build(maps, aya_specs, func_info)?;
    let needs_btf = aya_specs
        .iter()
        .any(|p| matches!(p.kind, ProgKind::TpBtf(_)));
    // aya's loader parses the kernel's BTF when it is made: made early by
    // [`prepare_loader`], or here and dropped at once. Only tp_btf programs need a parse
    // (their attach target); our programs have no CO-RE relocations.
    let own_btf;
    let mut loader = take_prepared_loader();
    let btf = match (opts.btf, needs_btf) {
        (None, true) => {
            own_btf = aya::Btf::from_sys_fs().map_err(LoadError::Btf)?;
            Some(&own_btf)
        }
        (given, _) => given,
    };
    loader.verifier_log_level(opts.verifier_log_level);
    loader.btf(btf);
    let mut ebpf = loader
        .load(&bytes)
        .map_err(|e| LoadError::Object(Box::new(e)))?;
    for p in aya_specs {
        load_with_aya(&mut ebpf, p, btf)?;
    }
    Ok(ebpf)
}

/// The maps of an object whose programs all load through the raw path, made through aya
/// one by one (`MapData::create`) without its loader, so the kernel's BTF is not parsed.
/// Sizes follow the loader's rules: a ring buffer is a power-of-two number of pages, a
/// perf event array of size 0 has one slot per possible CPU.
fn create_maps(specs: &[MapSpec]) -> Result<HashMap<String, Map>, LoadError> {
    let page = page_size();
    specs
        .iter()
        .map(|m| {
            let failed = |source| LoadError::Map {
                map: m.name.clone(),
                source: Box::new(source),
            };
            let max_entries = match m.kind {
                MapKind::RingBuf => ring_buf_bytes(m.max_entries, page),
                // 0: one slot per possible CPU, as the loader sizes it.
                MapKind::PerfEventArray if m.max_entries == 0 => aya::util::nr_cpus()
                    .map_err(|(path, source)| LoadError::PossibleCpus { path, source })?
                    as u32,
                _ => m.max_entries,
            };
            let def = aya_obj::maps::bpf_map_def {
                map_type: m.kind.kernel_type(),
                key_size: m.key_size,
                value_size: m.value_size,
                max_entries,
                map_flags: m.flags,
                ..Default::default()
            };
            let obj = aya_obj::Map::Legacy(aya_obj::maps::LegacyMap {
                def,
                inner_def: None,
                section_index: 0,
                section_kind: aya_obj::EbpfSectionKind::Maps,
                symbol_index: None,
                data: Vec::new(),
            });
            let data = MapData::create(obj, &m.name, None).map_err(failed)?;
            Ok((m.name.clone(), Map::from_map_data(data).map_err(failed)?))
        })
        .collect()
}

/// A ring buffer's size as the kernel takes it: `bytes` rounded up to a power-of-two
/// number of pages.
fn ring_buf_bytes(bytes: u32, page: u32) -> u32 {
    let pages = bytes.div_ceil(page).max(1);
    pages.next_power_of_two().saturating_mul(page)
}

/// The system's page size.
fn page_size() -> u32 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(size).unwrap_or(4096)
}

/// The raw fd of map `name` among `maps`.
fn raw_map_fd(maps: &HashMap<String, Map>, name: &str) -> Option<i32> {
    use std::os::fd::AsRawFd;
    maps.get(name)
        .map(|map| map_data(map).fd().as_fd().as_raw_fd())
}

fn load_with_aya(
    ebpf: &mut Ebpf,
    p: &ProgramSpec,
    btf: Option<&aya::Btf>,
) -> Result<(), LoadError> {
    use aya::programs::{BtfTracePoint, KProbe, RawTracePoint, SchedClassifier, SocketFilter};
    let missing = || LoadError::NotInObject(p.name.clone());
    let prog = ebpf.program_mut(&p.name).ok_or_else(missing)?;
    let result = match &p.kind {
        ProgKind::SocketFilter => <&mut SocketFilter>::try_from(prog).and_then(|p| p.load()),
        ProgKind::SchedCls => <&mut SchedClassifier>::try_from(prog).and_then(|p| p.load()),
        ProgKind::KProbe | ProgKind::KRetProbe => {
            <&mut KProbe>::try_from(prog).and_then(|p| p.load())
        }
        ProgKind::RawTracepoint(_) => <&mut RawTracePoint>::try_from(prog).and_then(|p| p.load()),
        ProgKind::TpBtf(tp) => {
            // `load` reads the BTF whenever a tp_btf program is present.
            let btf = btf.ok_or_else(|| LoadError::NoBtf(p.name.clone()))?;
            <&mut BtfTracePoint>::try_from(prog).and_then(|p| p.load(tp, btf))
        }
        ProgKind::KProbeMulti | ProgKind::Fentry => return Err(missing()),
    };
    result.map_err(|e| program_error(&p.name, e))
}

/// The map behind an aya `Map`, whatever its type.
fn map_data(m: &Map) -> &MapData {
    match m {
        Map::Array(d)
        | Map::ArrayOfMaps(d)
        | Map::BloomFilter(d)
        | Map::CgroupArray(d)
        | Map::CgroupStorage(d)
        | Map::CgrpStorage(d)
        | Map::CpuMap(d)
        | Map::DevMap(d)
        | Map::DevMapHash(d)
        | Map::HashMap(d)
        | Map::HashOfMaps(d)
        | Map::InodeStorage(d)
        | Map::LpmTrie(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuCgroupStorage(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d)
        | Map::PerfEventArray(d)
        | Map::ProgramArray(d)
        | Map::Queue(d)
        | Map::ReusePortSockArray(d)
        | Map::RingBuf(d)
        | Map::SockHash(d)
        | Map::SockMap(d)
        | Map::SkStorage(d)
        | Map::Stack(d)
        | Map::StackTraceMap(d)
        | Map::Unsupported(d)
        | Map::XskMap(d) => d,
    }
}

/// Patch the aya-created map fds into a copy of the program and load it as kprobe_multi,
/// with its own one-function BTF unless `func_info` says not to.
fn load_kprobe_multi(
    maps: &HashMap<String, Map>,
    p: &ProgramSpec,
    level: VerifierLogLevel,
    func_info: elf::FuncInfo,
) -> Result<OwnedFd, LoadError> {
    let insns = tracing::with_map_fds(&p.name, &p.program, |m| raw_map_fd(maps, m))?;
    let rejected = |(errno, log): (io::Error, String)| LoadError::Rejected {
        program: p.name.clone(),
        errno,
        log: VerifierLog(log),
    };
    let btf = match func_info {
        elf::FuncInfo::Emit if !elf::has_subprograms(p) => {
            let mut btf = func_btf::FuncBtf::new();
            let type_id = btf.add_func(&func_btf::func_name(&p.name), elf::ctx_type(&p.kind));
            let fd = sys::btf_load(&btf.to_kernel_bytes()).map_err(rejected)?;
            Some((
                fd,
                [sys::FuncInfo {
                    insn_off: 0,
                    type_id,
                }],
            ))
        }
        _ => None,
    };
    sys::prog_load(&sys::RawProgLoad {
        prog_type: sys::PROG_TYPE_KPROBE,
        expected_attach_type: sys::TRACE_KPROBE_MULTI,
        name: &p.name,
        insns: &insns,
        log_level: level.bits(),
        attach: None,
        btf: btf.as_ref().map(|(fd, funcs)| (fd.as_fd(), &funcs[..])),
    })
    .map_err(rejected)
}

impl fmt::Debug for LoadedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut programs: Vec<_> = self.kinds.iter().collect();
        programs.sort_by(|a, b| a.0.cmp(b.0));
        let mut maps: Vec<_> = self.maps.keys().collect();
        maps.sort();
        f.debug_struct("LoadedObject")
            .field("programs", &programs)
            .field("maps", &maps)
            .finish()
    }
}

impl LoadedObject {
    /// The names of the maps still in the object.
    pub fn map_names(&self) -> impl Iterator<Item = &str> {
        self.maps.keys().map(String::as_str)
    }

    /// A map still in the object.
    pub fn map(&self, map: &str) -> Option<&Map> {
        self.maps.get(map)
    }

    /// Take a map out of the object (to own it); the programs keep using it.
    pub fn take_map(&mut self, map: &str) -> Option<Map> {
        self.maps.remove(map)
    }

    /// A program loaded through aya (any kind but kprobe_multi and fentry), to run or
    /// attach it with aya's own types.
    pub fn aya_program_mut(&mut self, program: &str) -> Option<&mut aya::programs::Program> {
        self.ebpf.as_mut()?.program_mut(program)
    }

    /// The fentry program `program`, ready to be loaded on kernel functions (its map fds
    /// are the object's: valid while the object lives).
    pub fn kernel_fentry(&self, program: &str) -> Result<&KernelFentry, ObjectError> {
        self.fentry
            .get(program)
            .ok_or_else(|| ObjectError::UnknownProgram(program.to_string()))
    }

    /// The kind a program was loaded as.
    pub fn kind(&self, program: &str) -> Option<&ProgKind> {
        self.kinds.get(program)
    }

    /// The program's fd (any kind, kprobe_multi included).
    pub fn program_fd(&self, program: &str) -> Result<BorrowedFd<'_>, ObjectError> {
        if let Some(fd) = self.multi.get(program) {
            return Ok(fd.as_fd());
        }
        let p = self
            .ebpf
            .as_ref()
            .and_then(|ebpf| ebpf.program(program))
            .ok_or_else(|| ObjectError::UnknownProgram(program.to_string()))?;
        p.fd()
            .map(|fd| fd.as_fd())
            .map_err(|source| ObjectError::Program {
                program: program.to_string(),
                source: Box::new(source),
            })
    }

    /// Kernel facts about a program (id, run time and count, map ids).
    pub fn info(&self, program: &str) -> Result<ProgInfo, ObjectError> {
        prog_info(self.program_fd(program)?).map_err(|source| ObjectError::Syscall {
            what: "BPF_OBJ_GET_INFO_BY_FD",
            program: program.to_string(),
            source,
        })
    }

    /// Why the programs were loaded without BTF of their own (the error loading them with
    /// it gave), or `None` when they have it (or were asked to go without).
    pub fn btf_fallback(&self) -> Option<&str> {
        self.btf_fallback.as_deref()
    }

    /// Every program's name and `recursion_misses` (runs the kernel skipped because a BPF
    /// program was already running on that CPU), by name; programs whose info cannot be
    /// read are left out.
    pub fn recursion_misses(&self) -> Vec<(String, u64)> {
        let mut names: Vec<&String> = self.kinds.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| Some((name.clone(), self.info(name).ok()?.recursion_misses)))
            .collect()
    }

    /// The kernel ids of the object's programs.
    pub fn program_ids(&self) -> std::collections::HashSet<u32> {
        self.kinds
            .keys()
            .filter_map(|name| self.info(name).ok())
            .map(|info| info.id)
            .collect()
    }

    /// A map's fd (while the map is still in the object).
    pub fn map_fd(&self, map: &str) -> Result<BorrowedFd<'_>, ObjectError> {
        let m = self
            .maps
            .get(map)
            .ok_or_else(|| ObjectError::UnknownMap(map.to_string()))?;
        Ok(map_data(m).fd().as_fd())
    }

    /// Take a ring buffer map out of the object (to own it, e.g. in a tokio `AsyncFd`).
    /// The programs keep writing to it.
    pub fn take_ring_buf(&mut self, map: &str) -> Result<RingBuf<MapData>, ObjectError> {
        let m = self
            .take_map(map)
            .ok_or_else(|| ObjectError::UnknownMap(map.to_string()))?;
        RingBuf::try_from(m).map_err(|source| ObjectError::Map {
            map: map.to_string(),
            source,
        })
    }

    /// An `ARRAY` map with values of type `V`, to read and update.
    pub fn array_mut<V: Pod>(&mut self, map: &str) -> Result<Array<&mut MapData, V>, ObjectError> {
        let m = self
            .maps
            .get_mut(map)
            .ok_or_else(|| ObjectError::UnknownMap(map.to_string()))?;
        Array::try_from(m).map_err(|source| ObjectError::Map {
            map: map.to_string(),
            source,
        })
    }

    /// A `HASH` (or LRU hash) map with keys `K` and values `V`, to read and update.
    pub fn hash_map_mut<K: Pod, V: Pod>(
        &mut self,
        map: &str,
    ) -> Result<AyaHashMap<&mut MapData, K, V>, ObjectError> {
        let m = self
            .maps
            .get_mut(map)
            .ok_or_else(|| ObjectError::UnknownMap(map.to_string()))?;
        AyaHashMap::try_from(m).map_err(|source| ObjectError::Map {
            map: map.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya_obj::generated::bpf_map_type as t;

    #[test]
    fn ring_buffers_are_a_power_of_two_number_of_pages() {
        for (bytes, page, want) in [
            (1, 4096, 4096),
            (4096, 4096, 4096),
            (4097, 4096, 8192),
            (3 * 4096, 4096, 4 * 4096),
            (4 << 20, 4096, 4 << 20),
            ((4 << 20) + 1, 4096, 8 << 20),
            (5000, 16384, 16384),
        ] {
            assert_eq!(
                ring_buf_bytes(bytes, page),
                want,
                "{bytes} bytes, {page}-byte pages"
            );
        }
    }

    #[test]
    fn map_kinds_match_the_uapi() {
        let table = [
            (MapKind::Hash, t::BPF_MAP_TYPE_HASH),
            (MapKind::Array, t::BPF_MAP_TYPE_ARRAY),
            (MapKind::PerfEventArray, t::BPF_MAP_TYPE_PERF_EVENT_ARRAY),
            (MapKind::PerCpuHash, t::BPF_MAP_TYPE_PERCPU_HASH),
            (MapKind::PerCpuArray, t::BPF_MAP_TYPE_PERCPU_ARRAY),
            (MapKind::StackTrace, t::BPF_MAP_TYPE_STACK_TRACE),
            (MapKind::LruHash, t::BPF_MAP_TYPE_LRU_HASH),
            (MapKind::LruPerCpuHash, t::BPF_MAP_TYPE_LRU_PERCPU_HASH),
            (MapKind::RingBuf, t::BPF_MAP_TYPE_RINGBUF),
        ];
        for (k, want) in table {
            assert_eq!(k.kernel_type(), want as u32, "{k:?}");
        }
    }

    #[test]
    fn verifier_log_display_keeps_the_tail() {
        let log: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let shown = VerifierLog::new(log).to_string();
        assert!(shown.starts_with("... (60 earlier lines omitted)\nline 61\n"));
        assert!(shown.ends_with("line 100"));
        assert_eq!(shown.lines().count(), 41);

        let short = VerifierLog::new("R2 !read_ok\n".into());
        assert_eq!(short.to_string(), "R2 !read_ok");
        assert_eq!(short.tail(5), "R2 !read_ok");
        assert_eq!(
            VerifierLog::new(String::new()).to_string(),
            "(the verifier log is empty)"
        );
    }
}
