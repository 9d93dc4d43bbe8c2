//! Output sections: each optional part of an event (meta, tuple, stack, ...) is one module
//! owning its record code, its decoding and its printing; [`REGISTRY`] lists them.
//!
//! A section is a [`Section`]: the probe side ([`RecordSection`]: maps, the code it emits
//! into the probe's record stage, what it needs from the rest of the probe) plus how it
//! prints. Its decoded value is a [`crate::events::RecordPart`] read from the record
//! (`event.get::<Tuple>()`). Adding a section: a file here and a line in [`REGISTRY`].
//!
//! Where sections print, in pwru's order (within a place, registry order):
//! - table: `[TIME] SKB CPU PROCESS [TIMESTAMP]` [`TableAt::Columns`] `FUNC` [`TableAt::Func`]
//!   [`TableAt::AfterFunc`], then [`TableAt::Lines`];
//! - JSON: `skb` [`JsonAt::Head`] `cpu process func` [`JsonAt::Func`] `time`
//!   [`JsonAt::Netns`] [`JsonAt::Packet`] [`JsonAt::Text`].

pub mod bpfmap;
pub mod caller;
pub mod clone_parent;
pub mod drop_reason;
pub mod meta;
pub mod netns_name;
pub mod pcap;
pub mod skb_cb;
pub mod skb_dump;
pub mod skb_metadata;
pub mod stack;
pub mod tunnel;
pub mod tuple;
pub mod verdict;

use std::sync::Arc;

use super::json::JsonObject;
use super::{Names, OutputOptions};
use crate::events::Event;
use crate::probes::event::EVENT_SIZE;
use crate::probes::maps::MapDef;
pub use crate::probes::record::{RecordSection, RecordSections, RecordStage};

pub use meta::SkbMeta;
pub use tuple::Tuple;

/// Every section, in the order the probe emits them into the record (the order of the
/// snapshots in `tests/snapshots/probes`); within each print place they print in this
/// order too.
pub const REGISTRY: &[Activate] = &[
    activate::<caller::CallerSection>,
    activate::<drop_reason::DropReasonSection>,
    activate::<verdict::VerdictSection>,
    activate::<meta::MetaSection>,
    activate::<skb_cb::SkbCbSection>,
    activate::<netns_name::NetnsNameSection>,
    activate::<stack::StackSection>,
    activate::<skb_metadata::SkbMetadataSection>,
    activate::<tuple::TupleSection>,
    activate::<skb_dump::SkbDumpSection>,
    activate::<tunnel::TunnelSection>,
    activate::<clone_parent::CloneParentSection>,
    activate::<bpfmap::BpfMapSection>,
    // Last: its bytes are the record's variable end.
    activate::<pcap::PcapSection>,
];

/// A registry entry: the section when `opts` turn it on.
pub type Activate = fn(&OutputOptions) -> Option<Arc<dyn Section>>;

fn activate<S: Section + 'static>(opts: &OutputOptions) -> Option<Arc<dyn Section>> {
    S::from_options(opts).map(|s| Arc::new(s) as Arc<dyn Section>)
}

/// A place in a table line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableAt {
    /// A column before FUNC (its title in the header).
    Columns,
    /// Text appended to FUNC; the JSON `func` is the same text.
    Func,
    /// After FUNC on the same line (a titled column, or text).
    AfterFunc,
    /// Lines after the event's line.
    Lines,
}

/// A place among the keys of a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonAt {
    /// After `skb`.
    Head,
    /// After `func`.
    Func,
    /// After `time`: the netns.
    Netns,
    /// The packet and its device.
    Packet,
    /// Multi-line text.
    Text,
}

/// What a section's print hooks get besides the event (its settings it took in
/// [`Section::from_options`]).
pub struct Cx<'a> {
    pub names: &'a mut Names,
    /// This section's running column width (a column that grows to the widest value seen).
    pub width: &'a mut usize,
    /// Where FUNC starts in the line (table, [`TableAt::AfterFunc`]).
    pub func_start: usize,
    /// The event's kernel stack frames, when the reader looked them up.
    pub frames: &'a [u64],
    /// Record offset of this section's bytes after the fixed record.
    pub tail_at: usize,
    /// A buffer to format into (JSON values); empty on entry.
    pub scratch: &'a mut String,
}

/// One optional part of the output: the probe side and how it prints.
pub trait Section: RecordSection + std::any::Any {
    /// The section when the output options ask for it.
    fn from_options(opts: &OutputOptions) -> Option<Self>
    where
        Self: Sized;
    /// Whether the probe records anything for it (else it only prints what others record).
    fn records(&self) -> bool {
        true
    }
    /// The table places it prints at.
    fn table_at(&self) -> &'static [TableAt] {
        &[]
    }
    /// The JSON places it writes keys at.
    fn json_at(&self) -> &'static [JsonAt] {
        &[]
    }
    /// Its header titles at `at` (`Columns`, `AfterFunc`), each after a space.
    fn header(&self, _at: TableAt, _h: &mut String) {}
    /// Its text at `at` (not `Func`).
    fn table(&self, _at: TableAt, _cx: &mut Cx<'_>, _ev: &Event, _line: &mut String) {}
    /// Appends to FUNC; `name` is the function's name (for BTF facts about it).
    fn func(&self, _names: &Names, _ev: &Event, _name: &str, _func: &mut String) {}
    /// Its keys at `at`.
    fn json(&self, _at: JsonAt, _cx: &mut Cx<'_>, _ev: &Event, _obj: &mut JsonObject<'_>) {}
}

/// The sections `opts` turn on, in registry order, with where each prints.
pub struct Sections {
    active: Vec<Arc<dyn Section>>,
    /// Record offset of each active section's bytes after the fixed record.
    tail_at: Vec<usize>,
}

impl Sections {
    pub fn new(opts: &OutputOptions) -> Self {
        let active: Vec<Arc<dyn Section>> = REGISTRY.iter().filter_map(|on| on(opts)).collect();
        let mut at = EVENT_SIZE;
        let tail_at = active
            .iter()
            .map(|s| {
                let mine = at;
                if s.records() {
                    at += s.tail_bytes();
                }
                mine
            })
            .collect();
        Self { active, tail_at }
    }

    /// Record offset of the bytes of the active section of type `S`, if it is on (for
    /// the output modes that read a section's bytes, e.g. the journey's clone parents).
    pub fn tail_at_of<S: Section>(&self) -> Option<usize> {
        self.tail_at_where(|s| (s as &dyn std::any::Any).is::<S>())
    }

    /// Record offset of the variable bytes' section (`--output-pcap`), when one is active.
    pub fn variable_at(&self) -> Option<usize> {
        self.tail_at_where(|s| s.records() && s.variable_bytes() != 0)
    }

    /// Record offset of the first active section `wanted` picks.
    fn tail_at_where(&self, wanted: impl Fn(&dyn Section) -> bool) -> Option<usize> {
        self.active
            .iter()
            .zip(&self.tail_at)
            .find(|(s, _)| wanted(&***s))
            .map(|(_, &at)| at)
    }

    /// The active sections.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Section>> {
        self.active.iter()
    }

    /// What the probe records, in emit order (`ProbeOptions::sections`).
    pub fn record(&self) -> RecordSections {
        self.active
            .iter()
            .filter(|s| s.records())
            .map(|s| Arc::clone(s) as Arc<dyn RecordSection>)
            .collect()
    }

    /// The maps the recording sections use.
    pub fn maps(&self) -> Vec<&'static MapDef> {
        self.active
            .iter()
            .filter(|s| s.records())
            .flat_map(|s| s.maps())
            .collect()
    }

    /// The sections printing at table place `at`.
    pub(crate) fn table_at(&self, at: TableAt) -> Vec<Placed> {
        self.placed(|s| s.table_at().contains(&at))
    }

    /// The sections writing JSON keys at `at`.
    pub(crate) fn json_at(&self, at: JsonAt) -> Vec<Placed> {
        self.placed(|s| s.json_at().contains(&at))
    }

    fn placed(&self, wanted: impl Fn(&dyn Section) -> bool) -> Vec<Placed> {
        self.active
            .iter()
            .zip(&self.tail_at)
            .filter(|(s, _)| wanted(&***s))
            .map(|(s, &tail_at)| Placed {
                section: Arc::clone(s),
                tail_at,
                width: 0,
            })
            .collect()
    }
}

/// A section at one print place, with its state there.
pub(crate) struct Placed {
    pub section: Arc<dyn Section>,
    /// Record offset of its bytes after the fixed record.
    pub tail_at: usize,
    /// Its running column width.
    pub width: usize,
}

/// A header title after a space, padded to `width` characters.
pub fn push_title(h: &mut String, title: &str, width: usize) {
    h.push(' ');
    let start = h.len();
    h.push_str(title);
    super::text::pad_from(h, start, width);
}

/// What the probe records for `opts`: `ProbeOptions::sections`.
pub fn record_sections(opts: &OutputOptions) -> RecordSections {
    Sections::new(opts).record()
}

#[cfg(test)]
pub(crate) mod tests;
