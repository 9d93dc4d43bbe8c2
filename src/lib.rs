//! pwru: "packet, where are you?" — an eBPF tracer for `sk_buff`s, in pure Rust.
//!
//! Data flows one way, module by module:
//! `cli` (config) → `btf` (kernel facts) → `pcapc` (filter code) → `probes` (programs)
//! → `load` / `attach` (into the kernel) → `events` (ring buffer) → `output` (text).
//! `app` and `tracer` tie the stages together for a command line; `capture` reads pcap
//! files for the filter tools.

// `bpf!` recurses once per statement; see `asm::dsl` ("Length").
#![recursion_limit = "1024"]

pub mod app;
pub mod asm;
pub mod attach;
pub mod btf;
pub mod capture;
pub mod cli;
pub mod events;
pub mod load;
pub mod output;
pub mod pcapc;
pub mod probes;
pub mod tracer;
