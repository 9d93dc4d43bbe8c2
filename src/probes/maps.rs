//! The maps the probe programs share, as typed definitions: name, kind, key and value
//! sizes, entries. Programs name them in `bpf!` (`r1 = map[maps::EVENTS];`) and the loader's
//! [`MapSpec`]s come from the same constants, so no name or size is written twice.

use std::ops::Deref;

use crate::load::{MapKind, MapSpec};

/// A map definition: everything the loader needs to create it and the name programs use to
/// reference it. The constants below are `&'static MapDef`, so they are cheap typed handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MapDef {
    /// The kernel map name (1-15 characters of `[A-Za-z0-9_.]`), also the name in
    /// `ld_map` references.
    pub name: &'static str,
    pub kind: MapKind,
    pub key_size: u32,
    pub value_size: u32,
    /// Entries (bytes for a ring buffer).
    pub max_entries: u32,
}

impl MapDef {
    /// The same map with `max_entries` entries (tests use small maps).
    pub const fn with_entries(self, max_entries: u32) -> MapDef {
        MapDef {
            max_entries,
            ..self
        }
    }

    /// The loader's spec for this map.
    pub fn spec(&self) -> MapSpec {
        MapSpec::new(
            self.name,
            self.kind,
            self.key_size,
            self.value_size,
            self.max_entries,
        )
    }
}

impl From<&MapDef> for MapSpec {
    fn from(m: &MapDef) -> MapSpec {
        m.spec()
    }
}

/// What `bpf!`'s `map[(expr)]` and `map[maps::EVENTS]` read: the name.
impl AsRef<str> for MapDef {
    fn as_ref(&self) -> &str {
        self.name
    }
}

/// Transitional: the map constants used to be `&str` names, and code that passes them where
/// a name is expected (`MapSpec::new(maps::LOST, ...)`, `take_ring_buf(maps::EVENTS)`) keeps
/// compiling through this. New code says `maps::EVENTS.name` or `MapSpec::from(maps::EVENTS)`.
impl Deref for MapDef {
    type Target = str;

    fn deref(&self) -> &str {
        self.name
    }
}

/// Ring buffer size (bytes): about 19k events of 216 bytes, 20 ms of a flood at a
/// million events a second. The reader maps its data pages twice (the kernel's
/// wrap-around view), so this counts double in the tracer's resident memory.
pub const EVENTS_BYTES: u32 = 4 << 20;
/// Entries of the tracked-skb hash (pwru: 1024).
pub const TRACKED_SKBS_ENTRIES: u32 = 16 << 10;
/// Entries and depth of the stack map.
pub const STACKS_ENTRIES: u32 = 4096;
pub const STACK_DEPTH: u32 = 127;
/// Entries of each by-stackid map (pwru: 1024; one per kernel stack in use at most for
/// `stackid_skb`, plus skbs whose stack was taken over for `skb_stackid`).
pub const STACKID_ENTRIES: u32 = 4096;
/// Entries of the clone stash: clones in flight at once.
pub const CLONE_STASH_ENTRIES: u32 = 1024;

/// Ring buffer of event records.
pub const EVENTS: &MapDef = &MapDef {
    name: "events",
    kind: MapKind::RingBuf,
    key_size: 0,
    value_size: 0,
    max_entries: EVENTS_BYTES,
};
/// Per-CPU `u64` count of events the ring buffer had no room for (key `u32` 0).
pub const LOST: &MapDef = &MapDef {
    name: "lost",
    kind: MapKind::PerCpuArray,
    key_size: 4,
    value_size: 8,
    max_entries: 1,
};
/// `--filter-track-skb`: skb address (`u64`) -> `u32` 1.
pub const TRACKED_SKBS: &MapDef = &MapDef {
    name: "tracked_skbs",
    kind: MapKind::Hash,
    key_size: 8,
    value_size: 4,
    max_entries: TRACKED_SKBS_ENTRIES,
};
/// `--filter-track-skb-by-stackid`: stack identity (`u64`) -> skb address (`u64`).
pub const STACKID_SKB: &MapDef = &MapDef {
    name: "stackid_skb",
    kind: MapKind::Hash,
    key_size: 8,
    value_size: 8,
    max_entries: STACKID_ENTRIES,
};
/// `--filter-track-skb-by-stackid`: skb address (`u64`) -> stack identity (`u64`).
pub const SKB_STACKID: &MapDef = &MapDef {
    name: "skb_stackid",
    kind: MapKind::Hash,
    key_size: 8,
    value_size: 8,
    max_entries: STACKID_ENTRIES,
};
/// Clone following: `pid_tgid` (`u64`) -> the tracked skb (`u64`) being cloned or copied.
pub const CLONE_STASH: &MapDef = &MapDef {
    name: "clone_stash",
    kind: MapKind::Hash,
    key_size: 8,
    value_size: 8,
    max_entries: CLONE_STASH_ENTRIES,
};
/// `--output-bpfmap`: per CPU (key `u32` 0), the map (`u64`) and key (`u64`) pointers a
/// map lookup was entered with, for the record program on its return.
pub const BPFMAP_STASH: &MapDef = &MapDef {
    name: "bpfmap_stash",
    kind: MapKind::PerCpuArray,
    key_size: 4,
    value_size: 16,
    max_entries: 1,
};
/// `--output-journey` with `--filter-track-skb`: a followed clone or copy (`u64`) -> the
/// tracked skb it was made from (`u64`), so that its journey joins its packet's. The
/// clone probe sets it, the untrack program forgets it with the skb; LRU, so that a
/// clone whose free went unseen cannot fill it.
pub const CLONE_PARENTS: &MapDef = &MapDef {
    name: "clone_parents",
    kind: MapKind::LruHash,
    key_size: 8,
    value_size: 8,
    max_entries: TRACKED_SKBS_ENTRIES,
};
/// `--output-stack`: kernel stacks by id (`u32`), `STACK_DEPTH` addresses each.
pub const STACKS: &MapDef = &MapDef {
    name: "stacks",
    kind: MapKind::StackTrace,
    key_size: 4,
    value_size: STACK_DEPTH * 8,
    max_entries: STACKS_ENTRIES,
};

/// Variable-length records (`--output-pcap`): the per-CPU area a probe builds its record
/// in before `bpf_ringbuf_output` copies the used part; the value size is set per run
/// ([`crate::probes::record::scratch_map`]), the one here is a placeholder.
pub const RECORD_SCRATCH: &MapDef = &MapDef {
    name: "record_scratch",
    kind: MapKind::PerCpuArray,
    key_size: 4,
    value_size: 8,
    max_entries: 1,
};

/// `--filter-trace-tc`: per CPU, the skb (`u64`) the fentry program on a tc program
/// matched, for its fexit half (key `u32` 0; 0 when none).
pub const TC_MATCHED: &MapDef = &MapDef {
    name: "tc_matched",
    kind: MapKind::PerCpuArray,
    key_size: 4,
    value_size: 8,
    max_entries: 1,
};

/// `--filter-trace-xdp`: per CPU, the `xdp_buff` (`u64`) the fentry program on an XDP
/// program matched, for its fexit half (as [`TC_MATCHED`] for tc programs).
pub const XDP_MATCHED: &MapDef = &MapDef {
    name: "xdp_matched",
    kind: MapKind::PerCpuArray,
    key_size: 4,
    value_size: 8,
    max_entries: 1,
};

/// `--filter-track-skb` with `--filter-trace-xdp`: `data_hard_start` (`u64`) of the XDP
/// buffers that matched -> 1 (`u32`); the skb built from one (its `head`) is tracked.
pub const XDP_HEADS: &MapDef = &MapDef {
    name: "xdp_heads",
    kind: MapKind::Hash,
    key_size: 8,
    value_size: 4,
    max_entries: 1024,
};

impl MapDef {
    /// The same map with values of `value_size` bytes.
    pub const fn with_value_size(self, value_size: u32) -> MapDef {
        MapDef { value_size, ..self }
    }
}

/// Every map a probe program may reference.
pub const ALL: [&MapDef; 12] = [
    EVENTS,
    LOST,
    TRACKED_SKBS,
    STACKID_SKB,
    SKB_STACKID,
    CLONE_STASH,
    STACKS,
    RECORD_SCRATCH,
    TC_MATCHED,
    XDP_MATCHED,
    XDP_HEADS,
    CLONE_PARENTS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_kernel_map_names() {
        for (i, m) in ALL.iter().enumerate() {
            assert!((1..=15).contains(&m.name.len()), "{}", m.name);
            assert!(m
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.'));
            assert!(ALL[..i].iter().all(|o| o.name != m.name), "{}", m.name);
        }
    }

    #[test]
    fn specs_carry_the_shapes() {
        assert_eq!(
            MapSpec::from(EVENTS),
            MapSpec::ring_buf("events", EVENTS_BYTES)
        );
        assert_eq!(
            LOST.spec(),
            MapSpec::new("lost", MapKind::PerCpuArray, 4, 8, 1)
        );
        assert_eq!(
            TRACKED_SKBS.with_entries(64).spec(),
            MapSpec::new("tracked_skbs", MapKind::Hash, 8, 4, 64)
        );
        assert_eq!(
            STACKS.spec(),
            MapSpec::new("stacks", MapKind::StackTrace, 4, 127 * 8, 4096)
        );
        // The transitional `&str` view is the name.
        let name: &str = CLONE_STASH;
        assert_eq!(name, "clone_stash");
    }
}
