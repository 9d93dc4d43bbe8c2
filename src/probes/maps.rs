//! Names and shapes of the maps the probe programs reference. The attach layer turns
//! these into loader map specs; programs name them in `Asm::ld_map`.

/// Ring buffer of event records.
pub const EVENTS: &str = "events";
/// Per-CPU `u64` count of events the ring buffer had no room for.
pub const LOST: &str = "lost";
/// `--filter-track-skb`: skb address (`u64`) -> `u32` 1.
pub const TRACKED_SKBS: &str = "tracked_skbs";
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
