//! The skb a followed clone or copy was made from (`--output-journey` with
//! `--filter-track-skb`), so that a packet's journey groups its clones with it.

use crate::bpf;
use crate::events::Event;
use crate::output::OutputOptions;
use crate::probes::maps::{self, MapDef};
use crate::probes::ProbeError;

use super::{RecordSection, RecordStage, Section};

/// The section's bytes after the fixed record: the parent skb's address, 0 for none.
const PARENT_BYTES: usize = 8;

/// The skb that the record's skb was cloned or copied from (its section bytes start at
/// `tail_at`); `None` for an skb that is not a followed clone.
pub fn parent(ev: &Event, tail_at: usize) -> Option<u64> {
    let bytes = ev.record.after(tail_at)?.get(..PARENT_BYTES)?;
    let skb = u64::from_ne_bytes(bytes.try_into().ok()?);
    (skb != 0).then_some(skb)
}

/// Puts a parent in `ev` as the probe would, at `tail_at` (tests, replay).
pub fn set_parent(ev: &mut Event, tail_at: usize, parent: Option<u64>) {
    ev.record
        .set_section_bytes(tail_at, &parent.unwrap_or(0).to_ne_bytes());
}

/// The section: recorded for the journey, which prints it (nothing per event).
#[derive(Debug)]
pub struct CloneParentSection;

impl RecordSection for CloneParentSection {
    fn maps(&self) -> Vec<&'static MapDef> {
        vec![maps::CLONE_PARENTS]
    }

    fn tail_bytes(&self) -> usize {
        PARENT_BYTES
    }

    /// `clone_parents[skb]` (set by the clone probe when it followed this skb), else 0.
    fn emit(&self, r: &mut RecordStage<'_>) -> Result<(), ProbeError> {
        let (key, at) = (r.frame.scratch, r.tail_at as i16);
        let store = r.a.label();
        bpf!(into r.a;
            *(u64 *)(r10 + key) = r7;
            r1 = map[maps::CLONE_PARENTS];
            r2 = r10;
            r2 += key;
            call map_lookup_elem;
            r1 = 0;
            if r0 == 0 goto (store);
            r1 = *(u64 *)(r0 + 0);
          (store):
            *(u64 *)(r8 + at) = r1;
        );
        Ok(())
    }
}

impl Section for CloneParentSection {
    fn from_options(opts: &OutputOptions) -> Option<Self> {
        opts.clone_parents.then_some(CloneParentSection)
    }
}
