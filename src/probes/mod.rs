//! BPF programs for the probes and the record they emit.
//! `event` fixes the ring-buffer record layout shared by the generator and the decoder;
//! `program` generates the per-hit program from BTF offsets, `record` its event-record
//! stage (the sections' code comes from `output::sections`); `maps` names what they share.

pub mod event;
pub mod maps;
pub mod program;
pub mod record;
pub mod skb_expr;

pub use program::{
    build, build_clone_entry, build_clone_return, build_map_lookup_entry, build_untrack,
    build_untrack_with, Attachment, BpfProgKind, KprobeLink, MapOp, ProbeError, ProbeOptions,
    StackTracking, TunnelFilters, UntrackOptions, NON_SKB,
};
pub use record::{RecordSection, RecordSections};
