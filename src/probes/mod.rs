//! BPF programs for the probes and the record they emit.
//! `event` fixes the ring-buffer record layout shared by the generator and the decoder.

pub mod event;
