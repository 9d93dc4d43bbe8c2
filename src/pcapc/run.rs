//! Userspace runner: executes compiled filters in the rbpf interpreter (used by
//! `--filter-check` and the tests), with a fake `bpf_probe_read_kernel` over the packet.

use std::cell::Cell;

use super::ast::Expr;
use super::compile::compile_program_opt;
use super::types::{CompileError, FilterEnv, LinkType, ProgramKind};
use crate::asm::{Helper, Program};

/// Failures while running a filter program.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("compile: {0}")]
    Compile(#[from] CompileError),
    #[error("rbpf: {0}")]
    Vm(String),
    #[error("program returned {0}, expected 0 or 1")]
    BadReturn(u64),
}

thread_local! {
    /// The host memory range the fake probe_read may copy from (the current packet).
    static READABLE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Fake `bpf_probe_read_kernel(dst, size, src)`: copies from the current packet;
/// anything outside it faults (-EFAULT, zeroed destination) like the kernel helper.
fn fake_probe_read(dst: u64, size: u64, src: u64, _: u64, _: u64) -> u64 {
    let (lo, hi) = READABLE.with(|r| r.get());
    let ok = src >= lo && src.checked_add(size).is_some_and(|e| e <= hi);
    // SAFETY: rbpf passes `dst` pointing into its own stack frame, sized by the
    // program (at most the filter window); `src..src+size` was checked to lie inside
    // the packet slice registered by `run` for the duration of the call.
    unsafe {
        if ok {
            std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, size as usize);
            0
        } else {
            std::ptr::write_bytes(dst as *mut u8, 0, size as usize);
            (-14i64) as u64
        }
    }
}

/// A filter compiled for the userspace interpreter.
pub struct UserspaceFilter {
    bytecode: Vec<u8>,
    insns: usize,
}

impl UserspaceFilter {
    /// Compile `expr` for `link` with the given back end (`UserDirect` or
    /// `UserKernelMemory`).
    pub fn new(
        expr: &Expr,
        link: LinkType,
        kind: ProgramKind,
        env: &FilterEnv,
    ) -> Result<Self, CompileError> {
        Self::for_filter(Some(expr), link, kind, env)
    }

    /// [`Self::new`] for a filter that may be the empty expression (`None`: matches
    /// every packet).
    pub fn for_filter(
        expr: Option<&Expr>,
        link: LinkType,
        kind: ProgramKind,
        env: &FilterEnv,
    ) -> Result<Self, CompileError> {
        let p = compile_program_opt(expr, link, kind, env)?;
        Ok(Self::from_program(&p))
    }

    pub fn from_program(p: &Program) -> Self {
        UserspaceFilter {
            bytecode: p.bytecode(),
            insns: p.len(),
        }
    }

    /// Instruction slots of the whole program.
    pub fn len(&self) -> usize {
        self.insns
    }

    pub fn is_empty(&self) -> bool {
        self.insns == 0
    }

    /// Run on one packet, whole (its wire length is `pkt.len()`); true when the filter
    /// matches.
    pub fn matches(&self, pkt: &[u8]) -> Result<bool, RunError> {
        self.matches_wire(pkt, pkt.len() as u32)
    }

    /// Run on the captured bytes `pkt` of a packet `wire_len` bytes long on the wire
    /// (`len`, `greater` and `less` use `wire_len`; loads past `pkt` reject).
    pub fn matches_wire(&self, pkt: &[u8], wire_len: u32) -> Result<bool, RunError> {
        let mut vm = rbpf::EbpfVmMbuff::new(Some(&self.bytecode))
            .map_err(|e| RunError::Vm(e.to_string()))?;
        vm.register_helper(Helper::PROBE_READ_KERNEL.id() as u32, fake_probe_read)
            .map_err(|e| RunError::Vm(e.to_string()))?;
        let start = pkt.as_ptr() as u64;
        let end = start + pkt.len() as u64;
        let mut mbuff = [0u8; 24];
        mbuff[..8].copy_from_slice(&start.to_le_bytes());
        mbuff[8..16].copy_from_slice(&end.to_le_bytes());
        mbuff[16..].copy_from_slice(&u64::from(wire_len).to_le_bytes());
        READABLE.with(|r| r.set((start, end)));
        let res = vm.execute_program(pkt, &mbuff);
        READABLE.with(|r| r.set((0, 0)));
        match res.map_err(|e| RunError::Vm(e.to_string()))? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(RunError::BadReturn(v)),
        }
    }
}
