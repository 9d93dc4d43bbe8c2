//! pwru: "packet, where are you?" — an eBPF tracer for `sk_buff`s, in pure Rust.
pub mod asm;
pub mod cli;
pub mod events;
pub mod output;
pub mod pcapc;
pub mod probes;
