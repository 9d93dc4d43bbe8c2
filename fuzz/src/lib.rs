//! Shared by the fuzz targets: parsing that never depends on the machine, the link types
//! and program kinds every filter is compiled for, and which compile failures are allowed.

use pwru::asm::AsmError;
use pwru::pcapc::ast::Expr;
use pwru::pcapc::compile::{CompileError, LinkType, ProgramKind};
use pwru::pcapc::{parse_with, ParseOptions};

/// Both packet starts the compiler supports.
pub const LINK_TYPES: [LinkType; 2] = [LinkType::Ethernet, LinkType::RawIp];

/// Every program kind: the direct and the kernel-memory back end, each with the
/// SCHED_CLS prologue (as loaded by the kernel suites) and the userspace one.
pub const PROGRAM_KINDS: [ProgramKind; 4] = [
    ProgramKind::SchedClsDirect,
    ProgramKind::SchedClsKernelMemory,
    ProgramKind::UserDirect,
    ProgramKind::UserKernelMemory,
];

/// The filter in `text`, or `None` when the parser rejects it or it is empty. Host
/// names are looked up in a file that never exists, so runs do not depend on the machine.
pub fn parse_filter(text: &str) -> Option<Expr> {
    let opts = ParseOptions {
        hosts_file: "/nonexistent/pwru-fuzz-hosts".into(),
        ethers_file: "/nonexistent/pwru-fuzz-ethers".into(),
        networks_file: "/nonexistent/pwru-fuzz-networks".into(),
    };
    parse_with(text, &opts).ok().flatten()
}

/// Panics when `err` says the compiler itself went wrong rather than the filter being
/// unsupported, rejecting everything or too big: wrong registers or stack for a
/// [`ProgramKind`] it chose itself, or assembler misuse (labels). A jump out of range is
/// a size limit and allowed.
pub fn assert_filter_error(expr: &Expr, link: LinkType, kind: ProgramKind, err: &CompileError) {
    let internal = match err {
        CompileError::BadRegisters(_) | CompileError::Stack(_) => true,
        CompileError::Asm(AsmError::JumpOutOfRange { .. }) => false,
        CompileError::Asm(_) => true,
        _ => false,
    };
    assert!(
        !internal,
        "internal compile error for `{expr}` ({link:?}, {kind:?}): {err}"
    );
}

/// Splits a `compile_run` input: the filter text up to the first newline, then the
/// packet bytes. `None` when the filter is not UTF-8 or there is no newline.
pub fn split_filter_and_packet(data: &[u8]) -> Option<(&str, &[u8])> {
    let nl = data.iter().position(|&b| b == b'\n')?;
    let text = std::str::from_utf8(&data[..nl]).ok()?;
    Some((text, &data[nl + 1..]))
}
