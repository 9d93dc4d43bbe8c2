//! Kernel BTF facts (built on btf-rs): which functions and tracepoints take an `sk_buff`, field
//! offsets the probes read, enum values such as drop reasons, `pt_regs` registers and stack size.

mod arch;
mod error;
mod funcs;
mod index;
mod kconfig;
mod kernel;
mod layout;
mod path;
#[cfg(test)]
mod testenc;
#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) use arch::test_facts;
pub use arch::{ArchError, ArchFacts, KernelArch, PtRegsLayout, ReturnAddress, ARG_REGS};
pub use error::BtfError;
pub use funcs::{SkbFunc, SkbFuncScan, SkbTracepoint, MAX_PROBE_ARG};
pub use kconfig::{thread_size, KernelConfig, PROC_CONFIG_GZ};
pub use kernel::{KernelBtf, Kmods, SYS_BTF_DIR, SYS_VMLINUX_BTF};
pub use layout::{
    Bitfield, DstEntryLayout, Field, NetDeviceLayout, NetnsLayout, SkBuffLayout, SkbLayout,
    XdpBuffLayout,
};
pub use path::{split_path, Access, FieldPath, PathError, ScalarKind, Segment};
