//! pwru: "packet, where are you?" — an eBPF tracer for `sk_buff`s, in pure Rust.
pub mod asm;
pub mod load;
pub mod pcapc;
