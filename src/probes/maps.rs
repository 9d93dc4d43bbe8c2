//! Names and shapes of the maps the probe programs reference. The attach layer turns
//! these into loader map specs; programs name them in `Asm::ld_map`.

/// Ring buffer of event records.
pub const EVENTS: &str = "events";
/// Per-CPU `u64` count of events the ring buffer had no room for.
pub const LOST: &str = "lost";
/// `--filter-track-skb`: skb address (`u64`) -> `u32` 1.
pub const TRACKED_SKBS: &str = "tracked_skbs";
/// `--filter-track-skb-by-stackid`: stack identity (`u64`) -> skb address (`u64`).
pub const STACKID_SKB: &str = "stackid_skb";
/// `--filter-track-skb-by-stackid`: skb address (`u64`) -> stack identity (`u64`).
pub const SKB_STACKID: &str = "skb_stackid";
/// Clone following: `pid_tgid` (`u64`) -> the tracked skb (`u64`) being cloned or copied.
pub const CLONE_STASH: &str = "clone_stash";
/// `--output-stack`: kernel stacks by id.
pub const STACKS: &str = "stacks";

/// Default ring buffer size (bytes): about 40k events of 200 bytes.
pub const EVENTS_BYTES: u32 = 8 << 20;
/// Unread bytes in the event ring buffer from which a probe wakes the reader up; below,
/// records are submitted without a wakeup and the reader collects them on its own timer
/// (`tracer::RING_POLL_INTERVAL`). A wakeup per record (the kernel's default when the
/// reader keeps up) costs an irq_work self-interrupt on every matching hit: more than
/// the rest of the program under emulation (BENCHMARKS.md).
pub const EVENTS_WAKEUP_BYTES: u32 = 256 << 10;
/// Entries of the tracked-skb hash (pwru: 1024).
pub const TRACKED_SKBS_ENTRIES: u32 = 16384;
/// Entries and depth of the stack map.
pub const STACKS_ENTRIES: u32 = 4096;
pub const STACK_DEPTH: u32 = 127;
/// Entries of each by-stackid map (pwru: 1024; one per kernel stack in use at most for
/// `stackid_skb`, plus skbs whose stack was taken over for `skb_stackid`).
pub const STACKID_ENTRIES: u32 = 4096;
/// Entries of the clone stash: clones in flight at once.
pub const CLONE_STASH_ENTRIES: u32 = 1024;
