//! pcapc: the pcap-filter language (tcpdump's filter syntax) parsed with pest and
//! compiled straight to eBPF with our assembler, for Ethernet and raw-IP packet starts.

pub mod ast;
pub mod compile;
mod dag;
mod emit;
pub mod lower;
pub mod names;
pub mod parse;
mod paths;
pub mod run;
pub mod types;

pub use compile::{
    check, compile_program, compile_program_env, emit_filter, emit_filter_with_stats,
};
pub use parse::{parse, parse_with, ParseError, ParseErrorKind, ParseOptions};
pub use types::{
    stack_bytes, CompileError, FilterEnv, FilterStats, LinkType, PacketSource, ProgramKind,
    DEFAULT_WINDOW, DIRECT_MAX_END, PROTOCHAIN_MAX_HEADERS, SPILL_SLOTS,
};
