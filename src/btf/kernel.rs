//! `KernelBtf`: the kernel's BTF (vmlinux plus optional module split BTF),
//! opened once and checked up front so later lookups never hit garbage blindly.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use btf_rs::{Backend, Btf, BtfType, Type};

use super::error::BtfError;
use super::index::TypeIndex;

/// Where the running kernel exposes its BTF.
pub const SYS_BTF_DIR: &str = "/sys/kernel/btf";
/// The running kernel's own (base) BTF.
pub const SYS_VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Longest typedef/const/volatile chain (or nesting) we follow before calling
/// the BTF cyclic. Real kernels stay well under 10.
pub(crate) const MAX_CHAIN: usize = 32;

/// Size of a pointer in the traced kernel: only 64-bit kernels are supported.
pub(crate) const POINTER_SIZE: u32 = 8;

const BTF_MAGIC: u16 = 0xeb9f;
const BTF_HEADER_LEN: usize = 24;

/// Which kernel modules' BTF to load next to vmlinux.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Kmods {
    /// vmlinux only.
    #[default]
    None,
    /// These modules (`<module dir>/<name>`); a missing one is an error.
    Named(Vec<String>),
    /// Every entry of the module directory except `vmlinux`.
    All,
}

/// One loaded BTF object: vmlinux (`module == None`) or a module's split BTF.
pub(crate) struct BtfSource<'a> {
    pub module: Option<&'a str>,
    pub btf: &'a Btf,
    /// Ids defined by this object (a module's own ids, not its base's).
    pub first_id: u32,
    pub last_id: u32,
    /// Kinds and name hashes of those ids (none for BTF built from a parsed `Btf`).
    pub index: Option<&'a TypeIndex>,
}

/// Kernel BTF: vmlinux plus the split BTF of the selected modules.
pub struct KernelBtf {
    origin: String,
    vmlinux: Btf,
    vmlinux_index: Option<TypeIndex>,
    modules: Vec<(String, Btf, Option<TypeIndex>)>,
}

impl std::fmt::Debug for KernelBtf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelBtf")
            .field("origin", &self.origin)
            .field("modules", &self.module_names().collect::<Vec<_>>())
            .finish()
    }
}

impl KernelBtf {
    /// Opens the running kernel's BTF from `/sys/kernel/btf`.
    pub fn open_system(kmods: &Kmods) -> Result<Self, BtfError> {
        Self::open(Path::new(SYS_VMLINUX_BTF), Path::new(SYS_BTF_DIR), kmods)
    }

    /// Opens `vmlinux` (raw BTF, or an ELF file with a `.BTF` section) and the
    /// split BTF files of `kmods` found in `module_dir`.
    pub fn open(vmlinux: &Path, module_dir: &Path, kmods: &Kmods) -> Result<Self, BtfError> {
        let origin = if vmlinux == Path::new(SYS_VMLINUX_BTF) {
            match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
                Ok(release) => format!("kernel {}", release.trim()),
                Err(_) => format!("kernel BTF {}", vmlinux.display()),
            }
        } else {
            format!("BTF file {}", vmlinux.display())
        };
        let (base, index) = open_base(vmlinux, &origin)?;
        let mut kernel = KernelBtf {
            origin,
            vmlinux: base,
            vmlinux_index: Some(index),
            modules: Vec::new(),
        };
        for (name, path) in module_files(module_dir, kmods)? {
            let bytes = std::fs::read(&path).map_err(|source| BtfError::Io {
                path: path.clone(),
                source,
            })?;
            kernel.add_module_bytes(&name, &bytes)?;
        }
        Ok(kernel)
    }

    /// Builds from in-memory vmlinux BTF (raw or ELF); `origin` names it in errors.
    pub fn from_bytes(vmlinux: &[u8], origin: &str) -> Result<Self, BtfError> {
        let raw = raw_btf_bytes(vmlinux, origin)?;
        let index = TypeIndex::build(&raw, 1, 0, origin)?;
        let vmlinux = Btf::from_bytes(&raw).map_err(|source| BtfError::Parse {
            origin: origin.to_string(),
            source,
        })?;
        Ok(KernelBtf {
            origin: origin.to_string(),
            vmlinux,
            vmlinux_index: Some(index),
            modules: Vec::new(),
        })
    }

    #[cfg(test)]
    pub(crate) fn from_btf(vmlinux: Btf, origin: &str) -> Self {
        KernelBtf {
            origin: origin.to_string(),
            vmlinux,
            vmlinux_index: None,
            modules: Vec::new(),
        }
    }

    /// Adds a module's split BTF (raw bytes, based on this vmlinux).
    pub fn add_module_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), BtfError> {
        let origin = format!("{} module {name}", self.origin);
        let raw = raw_btf_bytes(bytes, &origin)?;
        let btf = Btf::from_split_bytes(&raw, &self.vmlinux).map_err(|source| BtfError::Parse {
            origin: origin.clone(),
            source,
        })?;
        let first_id = btf.split().map_or(1, |s| s.type_id_range().0);
        // Without vmlinux's index its string length is unknown: every name is a candidate.
        let base_str_len = self.vmlinux_index.as_ref().map_or(u32::MAX, |i| i.str_len);
        let index = TypeIndex::build(&raw, first_id, base_str_len, &origin)?;
        self.modules.push((name.to_string(), btf, Some(index)));
        Ok(())
    }

    /// What this BTF describes, for messages (e.g. `kernel 6.18.0`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Names of the loaded modules, in load order.
    pub fn module_names(&self) -> impl Iterator<Item = &str> {
        self.modules.iter().map(|(name, _, _)| name.as_str())
    }

    /// Whether a BTF FUNC with this name exists (vmlinux or loaded modules).
    pub fn has_func(&self, name: &str) -> bool {
        self.sources().any(|src| {
            self.ids_by_name(src.btf, name).is_ok_and(|ids| {
                ids.into_iter()
                    .any(|id| matches!(src.btf.resolve_type_by_id(id), Ok(Type::Func(_))))
            })
        })
    }

    /// Values of enum `name` (ENUM or ENUM64) mapped to their names. Signed
    /// enums are sign-extended; when values alias, the first name is kept.
    pub fn enum_values(&self, name: &str) -> Result<BTreeMap<i64, String>, BtfError> {
        for src in self.sources() {
            for id in self.ids_by_name(src.btf, name)? {
                let (_, ty) = strip_modifiers(src.btf, &self.origin, id)?;
                let mut values = BTreeMap::new();
                match ty {
                    Type::Enum(e) => {
                        for m in &e.members {
                            let v = if e.is_signed() {
                                i64::from(m.val() as i32)
                            } else {
                                i64::from(m.val())
                            };
                            let n = self.name_of(src.btf, m)?;
                            values.entry(v).or_insert(n);
                        }
                    }
                    Type::Enum64(e) => {
                        for m in &e.members {
                            let n = self.name_of(src.btf, m)?;
                            values.entry(m.val() as i64).or_insert(n);
                        }
                    }
                    _ => continue,
                }
                return Ok(values);
            }
        }
        Err(BtfError::NoSuchEnum {
            origin: self.origin.clone(),
            name: name.to_string(),
        })
    }

    /// vmlinux first, then modules in load order.
    pub(crate) fn sources(&self) -> impl Iterator<Item = BtfSource<'_>> {
        let (first, last) = self.vmlinux.base().type_id_range();
        std::iter::once(BtfSource {
            module: None,
            btf: &self.vmlinux,
            first_id: first,
            last_id: last,
            index: self.vmlinux_index.as_ref(),
        })
        .chain(self.modules.iter().map(|(name, btf, index)| {
            let (first, last) = btf.split().map_or((1, 0), |s| s.type_id_range());
            BtfSource {
                module: Some(name.as_str()),
                btf,
                first_id: first,
                last_id: last,
                index: index.as_ref(),
            }
        }))
    }

    /// Ids of the types named `name` in `btf` (one of ours): a module's own first, then
    /// vmlinux's, as btf-rs orders them; through the type indexes when they exist.
    pub(crate) fn ids_by_name(&self, btf: &Btf, name: &str) -> Result<Vec<u32>, BtfError> {
        let src = self.sources().find(|s| std::ptr::eq(s.btf, btf));
        let (Some(src), Some(base_index), false) =
            (src, self.vmlinux_index.as_ref(), name.is_empty())
        else {
            return btf.resolve_ids_by_name(name).map_err(|e| self.parse_err(e));
        };
        let own = match (src.module, src.index) {
            (None, _) => None,
            (Some(_), Some(index)) => Some(index),
            (Some(_), None) => return btf.resolve_ids_by_name(name).map_err(|e| self.parse_err(e)),
        };
        let mut ids = Vec::new();
        for id in own
            .into_iter()
            .chain([base_index])
            .flat_map(|i| i.ids_maybe_named(name))
        {
            let ty = resolve(btf, &self.origin, id)?;
            let named = match ty.as_btf_type() {
                Some(t) => self.name_of(btf, t)? == name,
                None => false,
            };
            if named {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    pub(crate) fn name_of(&self, btf: &Btf, ty: &dyn BtfType) -> Result<String, BtfError> {
        btf.resolve_name(ty).map_err(|e| self.parse_err(e))
    }

    /// The ids `src` defines of BTF `kind`: through its index, else every id.
    pub(crate) fn ids_of_kind<'s>(
        &self,
        src: &BtfSource<'s>,
        kind: u8,
    ) -> Box<dyn Iterator<Item = u32> + 's> {
        match src.index {
            Some(index) => Box::new(index.ids_of_kind(kind)),
            None => Box::new(src.first_id..=src.last_id),
        }
    }

    pub(crate) fn parse_err(&self, source: btf_rs::Error) -> BtfError {
        BtfError::Parse {
            origin: self.origin.clone(),
            source,
        }
    }
}

/// Follows typedef/const/volatile/restrict/type-tag links from `id` and returns
/// the first other type with its id.
pub(crate) fn strip_modifiers(btf: &Btf, origin: &str, id: u32) -> Result<(u32, Type), BtfError> {
    let mut cur = id;
    for _ in 0..MAX_CHAIN {
        let ty = resolve(btf, origin, cur)?;
        let next = match &ty {
            Type::Typedef(t) => t.get_type_id(),
            Type::Const(t) | Type::Volatile(t) | Type::Restrict(t) => t.get_type_id(),
            Type::TypeTag(t) => t.get_type_id(),
            _ => return Ok((cur, ty)),
        };
        cur = next.unwrap_or(0);
    }
    Err(BtfError::TypeChain {
        origin: origin.to_string(),
        id,
        limit: MAX_CHAIN,
    })
}

/// The type with this id, or a `Parse` error naming `origin`.
pub(crate) fn resolve(btf: &Btf, origin: &str, id: u32) -> Result<Type, BtfError> {
    btf.resolve_type_by_id(id)
        .map_err(|source| BtfError::Parse {
            origin: origin.to_string(),
            source,
        })
}

/// Size in bytes of the type with this id (through modifiers and arrays).
pub(crate) fn type_size(btf: &Btf, origin: &str, id: u32) -> Result<u32, BtfError> {
    let mut count: u64 = 1;
    let mut cur = id;
    for _ in 0..MAX_CHAIN {
        let (tid, ty) = strip_modifiers(btf, origin, cur)?;
        let unit = match &ty {
            Type::Int(t) => t.size() as u64,
            Type::Ptr(_) => u64::from(POINTER_SIZE),
            Type::Struct(t) | Type::Union(t) => t.size() as u64,
            Type::Enum(t) => t.size() as u64,
            Type::Enum64(t) => t.size() as u64,
            Type::Float(t) => t.size() as u64,
            Type::Array(a) => {
                count = count.saturating_mul(a.len() as u64);
                cur = a.get_type_id().unwrap_or(0);
                continue;
            }
            other => {
                return Err(BtfError::Unsized {
                    origin: origin.to_string(),
                    id: tid,
                    kind: other.name(),
                })
            }
        };
        return u32::try_from(count.saturating_mul(unit)).map_err(|_| BtfError::Malformed {
            origin: origin.to_string(),
            reason: format!("type {id} is larger than 4 GiB"),
        });
    }
    Err(BtfError::TypeChain {
        origin: origin.to_string(),
        id,
        limit: MAX_CHAIN,
    })
}

/// Lists `(module, file)` pairs for `kmods` under `dir`.
fn module_files(dir: &Path, kmods: &Kmods) -> Result<Vec<(String, PathBuf)>, BtfError> {
    match kmods {
        Kmods::None => Ok(Vec::new()),
        Kmods::Named(names) => {
            let mut out: Vec<(String, PathBuf)> = Vec::new();
            for name in names {
                if name == "vmlinux" || out.iter().any(|(n, _)| n == name) {
                    continue;
                }
                let path = dir.join(name);
                if name.contains('/') || !path.is_file() {
                    return Err(BtfError::NoModuleBtf {
                        module: name.clone(),
                        path,
                    });
                }
                out.push((name.clone(), path));
            }
            Ok(out)
        }
        Kmods::All => {
            let entries = std::fs::read_dir(dir).map_err(|source| BtfError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            let mut out = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|source| BtfError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name != "vmlinux" && entry.path().is_file() {
                    out.push((name, entry.path()));
                }
            }
            out.sort();
            Ok(out)
        }
    }
}

/// Opens base BTF from a file. Raw BTF is memory-mapped and never copied into the heap:
/// the file itself where it can be mapped, else a memfd its reads fill. ELF input and a
/// size the metadata lies about are read whole instead.
fn open_base(path: &Path, origin: &str) -> Result<(Btf, TypeIndex), BtfError> {
    let io_err = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound && path == Path::new(SYS_VMLINUX_BTF) {
            BtfError::NoKernelBtf {
                path: path.to_path_buf(),
            }
        } else {
            BtfError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let mut file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let mut head = Vec::with_capacity(BTF_HEADER_LEN);
    (&mut file)
        .take(BTF_HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(io_err)?;
    if is_btf_magic(&head) && len > 0 {
        check_header(&head, len, origin)?;
        if let Some(mapped) = map_raw(path, &mut file, len) {
            let index = TypeIndex::build(&mapped.bytes, 1, 0, origin)?;
            return Ok((mapped.btf, index));
        }
    }
    let bytes = std::fs::read(path).map_err(io_err)?;
    let raw = raw_btf_bytes(&bytes, origin)?;
    let index = TypeIndex::build(&raw, 1, 0, origin)?;
    if let Some(btf) = mmap_copy(&raw) {
        return Ok((btf, index));
    }
    // The cached backend parses everything now and reports precise errors.
    let btf = Btf::from_bytes(&raw).map_err(|source| BtfError::Parse {
        origin: origin.to_string(),
        source,
    })?;
    Ok((btf, index))
}

/// Raw BTF opened with btf-rs's memory-mapped backend, and a mapping of the same bytes
/// for the type index (both share the file's pages).
pub(crate) struct MappedBtf {
    pub(crate) btf: Btf,
    pub(crate) bytes: memmap2::Mmap,
}

/// Maps `len` bytes of raw BTF at `path`: the file itself (a regular file, or sysfs from
/// 6.16), else a memfd filled by reading `file` (sysfs before 6.16 refuses mmap). `None`
/// where neither works or the file is shorter than its metadata says.
pub(crate) fn map_raw(path: &Path, file: &mut File, len: u64) -> Option<MappedBtf> {
    // SAFETY: a read-only private mapping; kernel BTF files do not change under it, and
    // a file that did would only give the checks below other bytes to reject.
    if let Ok(bytes) = unsafe { memmap2::MmapOptions::new().map_copy_read_only(&*file) } {
        if bytes.len() as u64 == len {
            let btf = Btf::from_file_with_backend(path, Backend::Mmap).ok()?;
            return Some(MappedBtf { btf, bytes });
        }
    }
    let len = usize::try_from(len).ok()?;
    file.seek(SeekFrom::Start(0)).ok()?;
    memfd_btf(len, |buf| file.read_exact(buf))
}

/// Opens checked raw BTF with the memory-mapped backend through an anonymous memfd
/// copy: ~1 ms instead of ~200 ms for the cached backend on vmlinux.
pub(crate) fn mmap_copy(raw: &[u8]) -> Option<Btf> {
    memfd_btf(raw.len(), |buf| {
        buf.copy_from_slice(raw);
        Ok(())
    })
    .map(|mapped| mapped.btf)
}

/// A memfd of `len` bytes that `fill` writes through a shared mapping (its pages made
/// in one call, not one fault each), opened with btf-rs's memory-mapped backend.
pub(crate) fn memfd_btf(
    len: usize,
    fill: impl FnOnce(&mut [u8]) -> std::io::Result<()>,
) -> Option<MappedBtf> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns
    // a new fd we own, or -1.
    let fd = unsafe { libc::memfd_create(c"pwru-btf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let memfd = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    memfd.set_len(len as u64).ok()?;
    // SAFETY: the memfd is ours alone and sized to `len`; nothing else writes it.
    let mut map = unsafe { memmap2::MmapOptions::new().populate().map_mut(&memfd) }.ok()?;
    fill(&mut map).ok()?;
    let bytes = map.make_read_only().ok()?;
    // btf-rs's own mapping keeps the memfd alive after `memfd` is closed.
    let btf = Btf::from_file_with_backend(
        format!("/proc/self/fd/{}", memfd.as_raw_fd()),
        Backend::Mmap,
    )
    .ok()?;
    Some(MappedBtf { btf, bytes })
}

/// Returns checked raw BTF: the input itself, or the `.BTF` section of an ELF file.
fn raw_btf_bytes<'a>(
    bytes: &'a [u8],
    origin: &str,
) -> Result<std::borrow::Cow<'a, [u8]>, BtfError> {
    let raw = if bytes.starts_with(b"\x7fELF") {
        elf_btf_section(bytes, origin)?
    } else if is_btf_magic(bytes) {
        std::borrow::Cow::Borrowed(bytes)
    } else {
        let shown: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(BtfError::NotBtf {
            origin: origin.to_string(),
            reason: format!(
                "starts with [{}], expected BTF magic 9f eb or an ELF header",
                shown.join(" ")
            ),
        });
    };
    check_header(&raw, raw.len() as u64, origin)?;
    Ok(raw)
}

fn elf_btf_section<'a>(
    bytes: &'a [u8],
    origin: &str,
) -> Result<std::borrow::Cow<'a, [u8]>, BtfError> {
    use object::{Object, ObjectSection};
    let not_btf = |reason: String| BtfError::NotBtf {
        origin: origin.to_string(),
        reason,
    };
    let elf =
        object::File::parse(bytes).map_err(|e| not_btf(format!("unreadable ELF file: {e}")))?;
    let section = elf
        .section_by_name(".BTF")
        .ok_or_else(|| not_btf("ELF file has no .BTF section".to_string()))?;
    section
        .uncompressed_data()
        .map_err(|e| not_btf(format!("cannot read the ELF .BTF section: {e}")))
}

fn is_btf_magic(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && matches!([bytes[0], bytes[1]], [0x9f, 0xeb] | [0xeb, 0x9f])
}

/// Checks the BTF header against the data length, so btf-rs never reads past
/// the end (it would loop on a truncated string section or slice out of bounds).
fn check_header(bytes: &[u8], total_len: u64, origin: &str) -> Result<(), BtfError> {
    let bad = |reason: String| BtfError::Malformed {
        origin: origin.to_string(),
        reason,
    };
    if bytes.len() < BTF_HEADER_LEN || total_len < BTF_HEADER_LEN as u64 {
        return Err(bad(format!(
            "{} bytes, shorter than the {BTF_HEADER_LEN}-byte header",
            total_len.min(bytes.len() as u64)
        )));
    }
    let little = u16::from_le_bytes([bytes[0], bytes[1]]) == BTF_MAGIC;
    let word = |at: usize| {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        u64::from(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    if bytes[2] != 1 {
        return Err(bad(format!("unsupported BTF version {}", bytes[2])));
    }
    if bytes[3] != 0 {
        return Err(bad(format!("unsupported BTF flags {:#x}", bytes[3])));
    }
    let (hdr_len, type_off, type_len, str_off, str_len) =
        (word(4), word(8), word(12), word(16), word(20));
    if hdr_len < BTF_HEADER_LEN as u64 {
        return Err(bad(format!(
            "header length {hdr_len} is below {BTF_HEADER_LEN}"
        )));
    }
    let type_end = hdr_len + type_off + type_len;
    let str_end = hdr_len + str_off + str_len;
    if type_end > total_len || str_end > total_len {
        return Err(bad(format!(
            "truncated: sections end at byte {} but the data has {total_len} bytes",
            type_end.max(str_end)
        )));
    }
    if str_len == 0 {
        return Err(bad("empty string section".to_string()));
    }
    Ok(())
}
