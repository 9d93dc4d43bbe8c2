//! pwru: "packet, where are you?" — an eBPF tracer for `sk_buff`s, in pure Rust.
//!
//! Data flows one way, module by module:
//! `cli` (flags → `settings`, resolved once) → `btf` (kernel facts) → `pcapc` (filter code)
//! → `probes` (programs) → `load` / `attach` (into the kernel, one file per backend)
//! → `events` (ring buffer) → `output` (text).
//! `main` and `app` are the edge that picks the mode; `tracer` sequences a tracing run
//! from `settings`, calling `host` for syscall facts (root, netns, interfaces); `capture`
//! reads pcap files for the filter tools. Only the edge (`main`, `app`) imports `cli`.

// `bpf!` recurses once per statement; see `asm::dsl` ("Length").
#![recursion_limit = "1024"]

pub mod app;
pub mod asm;
pub mod attach;
pub mod btf;
pub mod capture;
pub mod cli;
pub mod events;
pub(crate) mod fasthash;
pub mod host;
pub mod load;
pub mod output;
pub mod pcapc;
pub mod probes;
pub mod settings;
pub mod tracer;
