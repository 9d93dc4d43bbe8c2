//! Kernel BTF facts (built on btf-rs): which functions and tracepoints take an
//! `sk_buff`, field offsets the probes read, enum values such as drop reasons.

mod error;
mod funcs;
mod kernel;
mod layout;
#[cfg(test)]
mod testenc;
#[cfg(test)]
mod tests;

pub use error::BtfError;
pub use funcs::{SkbFunc, SkbFuncScan, SkbTracepoint, MAX_PROBE_ARG};
pub use kernel::{KernelBtf, Kmods, SYS_BTF_DIR, SYS_VMLINUX_BTF};
pub use layout::{
    Bitfield, DstEntryLayout, Field, NetDeviceLayout, NetnsLayout, SkBuffLayout, SkbLayout,
};
