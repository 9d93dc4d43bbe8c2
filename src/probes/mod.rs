//! BPF programs for the probes and the record they emit.
//! `event` fixes the ring-buffer record layout shared by the generator and the decoder;
//! `program` generates the per-hit program from BTF offsets; `maps` names what they share.

pub mod event;
pub mod maps;
pub mod program;
pub mod skb_dump;
pub mod skb_expr;

pub use program::{
    build, build_clone_entry, build_clone_return, build_untrack, build_untrack_with, Attachment,
    ProbeError, ProbeOptions, StackTracking, UntrackOptions, NON_SKB,
};
