//! Our eBPF assembler: instruction encoding, a builder with labels and map references,
//! a macro DSL that reads like the verifier's listing, and a disassembler.

pub mod builder;
pub mod disasm;
pub mod dsl;
pub mod helpers;
pub mod insn;
pub mod text;

pub use builder::{AluOp, Asm, AtomicOp, Cond, Label, MapRef, Program, Reg, Size, Src};
pub use disasm::{disassemble, disassemble_insn, disassemble_program};
pub use helpers::Helper;
pub use insn::Insn;
pub use text::{assemble, TextError};

/// Errors found while assembling a program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    #[error("unknown label `{0}`: jumped to but never bound")]
    UnknownLabel(String),
    #[error("label `{0}` bound twice")]
    LabelRebound(String),
    #[error("jump at instruction {at} out of range (offset {offset})")]
    JumpOutOfRange { at: usize, offset: i64 },
    #[error("bad operand: {0}")]
    BadOperand(String),
}
