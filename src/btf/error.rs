//! `BtfError`: every way reading kernel BTF facts can fail, each naming the
//! file or kernel and the missing piece so the CLI can print it as is.

use std::path::PathBuf;

/// Errors from opening BTF and resolving facts in it.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The file could not be read.
    #[error("cannot read BTF file {}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The kernel exposes no BTF (no `/sys/kernel/btf/vmlinux`).
    #[error("no kernel BTF at {path}: the kernel needs CONFIG_DEBUG_INFO_BTF=y, or pass a BTF file with --kernel-btf")]
    NoKernelBtf { path: PathBuf },
    /// A requested module has no BTF file.
    #[error(
        "kernel module `{module}` has no BTF at {path} (module not loaded, or built without BTF)"
    )]
    NoModuleBtf { module: String, path: PathBuf },
    /// The bytes are neither raw BTF nor an ELF file with a `.BTF` section.
    #[error("{origin}: not a BTF file ({reason})")]
    NotBtf { origin: String, reason: String },
    /// The BTF header or sections are inconsistent (truncated or garbage file).
    #[error("{origin}: malformed BTF: {reason}")]
    Malformed { origin: String, reason: String },
    /// btf-rs rejected the data or a type reference in it.
    #[error("{origin}: invalid BTF data: {source}")]
    Parse {
        origin: String,
        source: btf_rs::Error,
    },
    /// No struct, union or typedef of one with this name.
    #[error("{origin}: no struct or union named `{name}` in BTF")]
    NoSuchStruct { origin: String, name: String },
    /// A field path names a member that does not exist.
    #[error(
        "{origin}: `{struct_name}` has no field `{missing}` (looking up `{struct_name}.{path}`)"
    )]
    NoSuchField {
        origin: String,
        struct_name: String,
        path: String,
        missing: String,
    },
    /// A field path descends into a member that is not a struct or union.
    #[error("{origin}: `{struct_name}.{path}`: `{segment}` is not a struct or union (paths do not follow pointers)")]
    NotComposite {
        origin: String,
        struct_name: String,
        path: String,
        segment: String,
    },
    /// No enum with this name.
    #[error("{origin}: no enum named `{name}` in BTF")]
    NoSuchEnum { origin: String, name: String },
    /// A type reference chain is cyclic or absurdly deep (garbage BTF).
    #[error("{origin}: type chain starting at BTF id {id} is cyclic or deeper than {limit}")]
    TypeChain {
        origin: String,
        id: u32,
        limit: usize,
    },
    /// A type has no defined size (void, function, forward declaration).
    #[error("{origin}: BTF type {id} ({kind}) has no size")]
    Unsized {
        origin: String,
        id: u32,
        kind: &'static str,
    },
}
