//! pwru: "packet, where are you?" — an eBPF tracer for `sk_buff`s, in pure Rust.
pub mod asm;
pub mod capture;
pub mod pcapc;
