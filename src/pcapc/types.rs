//! The vocabulary shared by the filter compiler, its callers and the probes: link types,
//! packet sources, the compile environment, errors, limits and the stack footprint.

use crate::asm::{AsmError, Reg};

/// The link layer at the packet start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// `DLT_EN10MB`: the packet starts at the Ethernet header.
    Ethernet,
    /// `DLT_RAW`: the packet starts at an IPv4 or IPv6 header.
    RawIp,
    /// `DLT_LINUX_SLL`: Linux cooked capture v1 (`tcpdump -i any`), a 16-byte header
    /// with the packet type at 0 and the protocol at 14.
    LinuxSll,
    /// `DLT_LINUX_SLL2`: Linux cooked capture v2, a 20-byte header with the protocol
    /// at 0, the interface index at 4 and the packet type at 10.
    LinuxSll2,
}

impl LinkType {
    /// The name libpcap gives the link type in its messages.
    pub fn name(self) -> &'static str {
        match self {
            LinkType::Ethernet => "Ethernet",
            LinkType::RawIp => "Raw IP",
            LinkType::LinuxSll => "Linux cooked v1",
            LinkType::LinuxSll2 => "Linux cooked v2",
        }
    }
}

/// Where packet bytes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketSource {
    /// `start`/`end` pointers (tc packet pointers, or host pointers in the userspace
    /// runner); every load is bounds-checked against `end`. `len` is `end - start`.
    Direct { start: Reg, end: Reg },
    /// `base` is a kernel address, `len` the packet length: one
    /// `bpf_probe_read_kernel` of `min(len, window)` bytes into a stack buffer, and
    /// loads past the window read on demand.
    KernelMemory { base: Reg, len: Reg, window: u16 },
}

/// Where `len`, `greater` and `less` find the packet's length on the wire, which can
/// exceed the bytes the filter may load (a capture's snap length, an skb's paged data).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WireLength {
    /// The wire length is the captured length of the [`PacketSource`].
    #[default]
    Captured,
    /// A register (among R6-R9, distinct from the packet source's) holds it.
    Reg(Reg),
    /// A u32 at `R10 + offset`, outside the filter's stack area (4-byte aligned).
    Stack(i16),
}

/// Where a live packet's kernel metadata is found on Ethernet and raw IP: its direction
/// for `inbound`/`outbound` (libpcap's `SKF_AD_PKTTYPE`, the skb's `pkt_type`,
/// `PACKET_OUTGOING` = 4 for outbound) and its interface for `ifindex N`
/// (`SKF_AD_IFINDEX`, `skb->dev->ifindex`). libpcap reads them on live Linux captures and
/// refuses them on savefiles, which record neither.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetaSource {
    /// Not known (a savefile): the primitives that need it are refused there.
    #[default]
    Unknown,
    /// In the context of a whole program ([`ProgramKind`]): the userspace kinds' mbuff
    /// (u32 at byte 20 for the packet type, 24 for the ifindex), the SCHED_CLS kinds'
    /// `__sk_buff` (`pkt_type`, `ifindex`). `--dump-filter`'s listing reads them there.
    Mbuff,
    /// A register (among R6-R9, distinct from the packet source's and the wire length's).
    Reg(Reg),
    /// On the stack (e.g. the skb's `pkt_type` bitfield in a copy of the skb): a
    /// `size`-byte little-endian unit at `R10 + offset`, shifted right by `shift`, `bits`
    /// wide.
    Stack {
        offset: i16,
        size: u8,
        shift: u8,
        bits: u8,
    },
}

/// Compile-time environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterEnv {
    /// The filter's stack area ends here (an offset from R10, `<= 0`).
    pub stack_top: i16,
    /// Netmask for `ip broadcast` (libpcap's `netmask` argument); `None` = unknown.
    pub netmask: Option<u32>,
    /// The packet's length on the wire (libpcap's `wirelen`, `skb->len`).
    pub wire_len: WireLength,
    /// The packet's direction for `inbound`/`outbound` on Ethernet and raw IP.
    pub pkt_type: MetaSource,
    /// The packet's interface for `ifindex N` on Ethernet and raw IP.
    pub ifindex: MetaSource,
}

impl Default for FilterEnv {
    fn default() -> Self {
        FilterEnv {
            stack_top: 0,
            netmask: Some(0),
            wire_len: WireLength::Captured,
            pkt_type: MetaSource::Unknown,
            ifindex: MetaSource::Unknown,
        }
    }
}

/// Why an expression can't be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("{what} is not supported on {link} packets")]
    Unsupported { what: String, link: &'static str },
    #[error("{0}")]
    Invalid(String),
    #[error("expression rejects all packets")]
    RejectsAll,
    #[error("division by zero")]
    DivisionByZero,
    #[error("modulus by zero")]
    ModulusByZero,
    #[error("shift by more than 31 bits")]
    ShiftTooLarge,
    #[error("expression too complex: arithmetic nested deeper than {0} operands")]
    TooComplex(usize),
    #[error("packet source registers must be among r6-r9 and distinct, got {0}")]
    BadRegisters(String),
    #[error("stack area does not fit: {0}")]
    Stack(String),
    #[error("the filter needs {insns} instructions, more than the kernel loads in one program (BPF_COMPLEXITY_LIMIT_INSNS = {limit})")]
    TooLarge { insns: usize, limit: usize },
    #[error("assembler: {0}")]
    Asm(#[from] AsmError),
}

/// Spill slots for intermediate arithmetic values.
pub const SPILL_SLOTS: usize = 8;
/// Most headers the `protochain` walks of one filter step over, shared evenly among
/// its walks (each gets at least [`PROTOCHAIN_MIN_HEADERS`]); a walk that would go
/// further rejects the packet. libpcap has no limit (and loops forever on some AH
/// headers); the kernel verifier follows every step of every walk within its budget of
/// 1,000,000 instructions, and a probe holds the filter twice (from the MAC and from
/// the network header).
pub const PROTOCHAIN_MAX_HEADERS: i32 = 2048;
/// The fewest headers one `protochain` walk steps over before giving up.
pub const PROTOCHAIN_MIN_HEADERS: i32 = 16;
/// Direct back end: loads must end within this many bytes of `start` (else the filter
/// rejects), so that the verifier's packet-range tracking (offsets below 64 KiB,
/// `start` itself possibly offset) can prove every access.
pub const DIRECT_MAX_END: i32 = 0xff00;
/// Default kernel-memory window.
pub const DEFAULT_WINDOW: u16 = 128;

/// Stack bytes the filter uses below `env.stack_top`.
pub fn stack_bytes(src: &PacketSource) -> usize {
    let base = 8 * SPILL_SLOTS + 8 + 24;
    match src {
        PacketSource::Direct { .. } => base,
        PacketSource::KernelMemory { window, .. } => base + 8 + (*window as usize).div_ceil(8) * 8,
    }
}

/// What the compiler produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterStats {
    /// Decision nodes after pruning.
    pub nodes: usize,
    /// Instruction slots emitted by `emit_filter`.
    pub insns: usize,
    /// Of those, the kernel-memory back end's read of the packet window (0 when the
    /// filter reads no packet bytes, and for the direct back end).
    pub window_read_insns: usize,
    /// Whether the code can jump to `on_match` / `on_reject` (the verifier refuses
    /// unreachable instructions, so don't emit a block nobody jumps to).
    pub uses_match: bool,
    pub uses_reject: bool,
}

/// Standalone program shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramKind {
    /// SCHED_CLS for BPF_PROG_TEST_RUN: direct access via `__sk_buff` data/data_end.
    /// For [`LinkType::RawIp`] the packet starts after the 14-byte Ethernet header of
    /// the test frame (the network header). The wire length is `__sk_buff->len`.
    SchedClsDirect,
    /// SCHED_CLS using the kernel-memory back end on `data` (`__sk_buff->len` as length;
    /// RawIp skips 14 bytes as above).
    SchedClsKernelMemory,
    /// Userspace ([`crate::pcapc::interp`]): r1 = mbuff `{u64 start, u64 end, u64
    /// wire_len}`, direct loads.
    UserDirect,
    /// Userspace: same mbuff, kernel-memory back end through a probe_read helper.
    UserKernelMemory,
}

impl ProgramKind {
    /// Both userspace back ends.
    pub const USER: [ProgramKind; 2] = [ProgramKind::UserDirect, ProgramKind::UserKernelMemory];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_footprint_follows_the_layout() {
        // 8 spill slots, the read-on-demand slot, 3 protochain slots
        let direct = PacketSource::Direct {
            start: Reg::R6,
            end: Reg::R7,
        };
        assert_eq!(stack_bytes(&direct), 64 + 8 + 24);
        // kernel memory adds the 8-byte pad and the window, rounded up to 8 bytes
        for (window, bytes) in [(DEFAULT_WINDOW, 128), (64, 64), (13, 16)] {
            let km = PacketSource::KernelMemory {
                base: Reg::R6,
                len: Reg::R7,
                window,
            };
            assert_eq!(stack_bytes(&km), 64 + 8 + 24 + 8 + bytes, "window {window}");
        }
    }
}
