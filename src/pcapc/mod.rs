//! pcapc: the pcap-filter language (tcpdump's filter syntax) parsed with pest and
//! compiled straight to eBPF with our assembler, for Ethernet and raw-IP packet starts.

pub mod ast;
pub mod compile;
pub mod lower;
pub mod names;
pub mod parse;
pub mod run;
pub mod tool;

pub use parse::{parse, parse_with, ParseError, ParseErrorKind, ParseOptions};
