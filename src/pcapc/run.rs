//! Userspace runner: executes compiled filters in the eBPF interpreter of `interp` (used
//! by `--filter-check` and the tests), the mbuff giving the packet and its wire length.

use super::ast::Expr;
use super::compile::compile_program_opt;
use super::interp::{self, InterpError, PACKET_BASE};
use super::types::{CompileError, FilterEnv, LinkType, ProgramKind};
use crate::asm::{Insn, Program};

/// Bytes after the packet that the interpreter's memory holds: the least an skb has
/// behind its data (`struct skb_shared_info`), more than any filter window.
const TAILROOM: usize = 320;

/// Failures while running a filter program.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("compile: {0}")]
    Compile(#[from] CompileError),
    #[error("interpreter: {0}")]
    Vm(#[from] InterpError),
    #[error("program returned {0}, expected 0 or 1")]
    BadReturn(u64),
}

/// A filter compiled for the userspace interpreter.
pub struct UserspaceFilter {
    insns: Vec<Insn>,
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
            insns: p.insns.clone(),
        }
    }

    /// Instruction slots of the whole program.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Run on one packet, whole (its wire length is `pkt.len()`); true when the filter
    /// matches.
    pub fn matches(&self, pkt: &[u8]) -> Result<bool, RunError> {
        self.matches_wire(pkt, pkt.len() as u32)
    }

    /// Run on the captured bytes `pkt` of a packet `wire_len` bytes long on the wire
    /// (`len`, `greater` and `less` use `wire_len`; loads past `pkt` reject).
    pub fn matches_wire(&self, pkt: &[u8], wire_len: u32) -> Result<bool, RunError> {
        self.matches_live(pkt, wire_len, 0, 0)
    }

    /// [`Self::matches_wire`] on a live packet of type `pkt_type` (`PACKET_HOST` 0 ..
    /// `PACKET_OUTGOING` 4) received or sent on interface `ifindex`, what
    /// `inbound`/`outbound` and `ifindex N` test when the filter was compiled with
    /// [`crate::pcapc::MetaSource::Mbuff`].
    pub fn matches_live(
        &self,
        pkt: &[u8],
        wire_len: u32,
        pkt_type: u32,
        ifindex: u32,
    ) -> Result<bool, RunError> {
        // the mbuff: packet start, end, wire length, packet type, interface
        let mut mbuff = [0u8; 32];
        mbuff[..8].copy_from_slice(&PACKET_BASE.to_le_bytes());
        mbuff[8..16].copy_from_slice(&(PACKET_BASE + pkt.len() as u64).to_le_bytes());
        mbuff[16..20].copy_from_slice(&wire_len.to_le_bytes());
        mbuff[20..24].copy_from_slice(&pkt_type.to_le_bytes());
        mbuff[24..28].copy_from_slice(&ifindex.to_le_bytes());
        // Behind the packet, like an skb's tailroom and shared info: the kernel-memory
        // window read may copy these bytes (never used unchecked; not zeros, so that
        // a filter that did use them would show it).
        let mut memory = Vec::with_capacity(pkt.len() + TAILROOM);
        memory.extend_from_slice(pkt);
        memory.resize(pkt.len() + TAILROOM, 0xa5);
        match interp::run(&self.insns, &mbuff, &memory)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(RunError::BadReturn(v)),
        }
    }
}
