//! pcapc: the pcap-filter language (tcpdump's filter syntax) parsed with pest and
//! compiled straight to eBPF with our assembler, for Ethernet and raw-IP packet starts.
//!
//! The data flow: `parse` (text → `ast`) → `lower` (AST → tests on packet values) →
//! `paths` (path-sensitive generation of a pruned `dag`) → `emit` (eBPF into an `Asm`).
//! `compile` holds the entry points that tie them together, `types` the vocabulary they
//! and the probes share, `run` the userspace runner on `interp`, an eBPF interpreter.
//! Each module imports only from the ones before it in this list (no cycle): ast, names,
//! parse, types, lower, dag, paths, emit, compile, interp, run.

pub mod ast;
pub mod compile;
mod dag;
mod emit;
pub mod interp;
pub mod lower;
pub mod names;
pub mod parse;
mod paths;
pub mod run;
pub mod types;

pub use compile::{
    check, compile_program, compile_program_env, compile_program_opt, emit_filter,
    emit_filter_with_stats,
};
pub use parse::{parse, parse_with, ParseError, ParseErrorKind, ParseOptions};
pub use types::{
    stack_bytes, CompileError, FilterEnv, FilterStats, LinkType, MetaSource, PacketSource,
    ProgramKind, WireLength, DEFAULT_WINDOW, DIRECT_MAX_END, PROTOCHAIN_MAX_HEADERS,
    PROTOCHAIN_MIN_HEADERS, SPILL_SLOTS,
};
