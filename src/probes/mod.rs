//! BPF programs for the probes and the record they emit.
//! `event` fixes the ring-buffer record layout shared by the generator and the decoder;
//! `program` generates the per-hit program from BTF offsets; `maps` names what they share.

pub mod event;
pub mod maps;
pub mod program;

pub use program::{build, build_untrack, Attachment, ProbeError, ProbeOptions};
