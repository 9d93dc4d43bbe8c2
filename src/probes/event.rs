//! The fixed-size binary event record our BPF programs write to the ring buffer.
//! Owns the byte layout (named offsets the probe generator stores at); `crate::events` decodes it.
//!
//! Layout (216 bytes, every field naturally aligned, host byte order unless noted):
//!
//! | offset | size | field          | notes                                                        |
//! |-------:|-----:|----------------|--------------------------------------------------------------|
//! |      0 |    2 | `kind`         | [`EventKind`] as u16                                         |
//! |      2 |    2 | `flags`        | `FLAG_*` bits: which optional parts were filled              |
//! |      4 |    4 | `cpu`          | `bpf_get_smp_processor_id()`                                 |
//! |      8 |    8 | `pid_tgid`     | `bpf_get_current_pid_tgid()`: tgid in the high 32 bits       |
//! |     16 |    8 | `probe_addr`   | function address; tracepoint id, kprobe-multi attach cookie  |
//! |     24 |    8 | `skb_addr`     | `struct sk_buff *`                                           |
//! |     32 |    8 | `ktime_ns`     | `bpf_ktime_get_ns()`                                         |
//! |     40 |    8 | `caller_addr`  | return address at entry (`FLAG_CALLER`)                      |
//! |     48 |    8 | `stack_id`     | i64 from `bpf_get_stackid` (`FLAG_STACK`)                    |
//! |     56 |    8 | `param_second` | 2nd probed-function argument (`FLAG_ARGS`)                   |
//! |     64 |    8 | `param_third`  | 3rd probed-function argument (`FLAG_ARGS`)                   |
//! |     72 |    8 | `drop_reason`  | `enum skb_drop_reason` value (`FLAG_DROP_REASON`), or the    |
//! |        |      |                | traced BPF program's return value (`FLAG_VERDICT`, fexit)    |
//! |     80 |    4 | `netns`        | netns inode (`FLAG_META`, all meta fields)                   |
//! |     84 |    4 | `mark`         | `skb->mark`                                                  |
//! |     88 |    4 | `ifindex`      | `skb->dev->ifindex` (0 without a device)                     |
//! |     92 |    4 | `len`          | `skb->len`                                                   |
//! |     96 |    4 | `mtu`          | route MTU, else `dev->mtu`                                   |
//! |    100 |    2 | `protocol`     | `skb->protocol` bytes as in the skb (network order)          |
//! |    102 |    1 | `pkt_type`     | `skb->pkt_type`                                              |
//! |    103 |    1 | reserved       | zero                                                         |
//! |    104 |    2 | `l3_proto`     | EtherType in host order: 0x0800, 0x86dd (`FLAG_TUPLE`)       |
//! |    106 |    1 | `l4_proto`     | IP protocol (IPv6: after up to 4 extension headers)          |
//! |    107 |    1 | `tcp_flags`    | TCP header byte 13 (FIN=0x01 .. CWR=0x80)                    |
//! |    108 |    2 | `sport`        | bytes as in the packet (network order)                       |
//! |    110 |    2 | `dport`        | bytes as in the packet (network order)                       |
//! |    112 |   16 | `saddr`        | IPv4 in the first 4 bytes, or IPv6                           |
//! |    128 |   16 | `daddr`        | same                                                         |
//! |    144 |   20 | `cb`           | 5 x u32 `qdisc_skb_cb->data` (`FLAG_CB`)                     |
//! |    164 |    4 | `shinfo_text`  | record offset of the shared-info text (`FLAG_SHINFO_DUMP`)   |
//! |    168 |   32 | `skb_metadata` | 4 x u64 `--output-skb-metadata` values (`FLAG_SKB_METADATA`) |
//! |    200 |   16 | `comm`         | `bpf_get_current_comm()`: the task's name, NUL-padded        |
//!
//! `comm` names the process even when it has exited before its events are printed (the
//! PROCESS column). With `FLAG_SKB_DUMP` the record continues with the `--output-skb`
//! text at 216; with `FLAG_SHINFO_DUMP` the `--output-skb-shared-info` text is at
//! `shinfo_text` (see `output::sections::skb_dump`). The fixed part is complete: a section added later puts
//! its bytes after it (`probes::record::RecordSection::tail_bytes`), each section's area
//! following the previous one's in registry order.

/// Size in bytes of one event record.
pub const EVENT_SIZE: usize = 216;

/// Size of the `comm` field (the kernel's `TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// Byte offsets of every field inside the record (see the module table).
pub mod off {
    pub const KIND: usize = 0;
    pub const FLAGS: usize = 2;
    pub const CPU: usize = 4;
    pub const PID_TGID: usize = 8;
    pub const PROBE_ADDR: usize = 16;
    pub const SKB_ADDR: usize = 24;
    pub const KTIME_NS: usize = 32;
    pub const CALLER_ADDR: usize = 40;
    pub const STACK_ID: usize = 48;
    pub const PARAM_SECOND: usize = 56;
    pub const PARAM_THIRD: usize = 64;
    pub const DROP_REASON: usize = 72;
    pub const NETNS: usize = 80;
    pub const MARK: usize = 84;
    pub const IFINDEX: usize = 88;
    pub const LEN: usize = 92;
    pub const MTU: usize = 96;
    pub const PROTOCOL: usize = 100;
    pub const PKT_TYPE: usize = 102;
    pub const L3_PROTO: usize = 104;
    pub const L4_PROTO: usize = 106;
    pub const TCP_FLAGS: usize = 107;
    pub const SPORT: usize = 108;
    pub const DPORT: usize = 110;
    pub const SADDR: usize = 112;
    pub const DADDR: usize = 128;
    pub const CB: usize = 144;
    pub const SHINFO_TEXT: usize = 164;
    pub const SKB_METADATA: usize = 168;
    pub const COMM: usize = 200;
}

/// `flags` bit: the meta block (netns .. pkt_type) was filled.
pub const FLAG_META: u16 = 1 << 0;
/// `flags` bit: the tuple block was filled (an IPv4/IPv6 header was parsed).
pub const FLAG_TUPLE: u16 = 1 << 1;
/// `flags` bit: `stack_id` holds a `bpf_get_stackid` result.
pub const FLAG_STACK: u16 = 1 << 2;
/// `flags` bit: `caller_addr` was read.
pub const FLAG_CALLER: u16 = 1 << 3;
/// `flags` bit: `param_second` / `param_third` were read.
pub const FLAG_ARGS: u16 = 1 << 4;
/// `flags` bit: `drop_reason` holds a drop reason the program read itself (tracepoint).
pub const FLAG_DROP_REASON: u16 = 1 << 5;
/// `flags` bit: `cb` was read.
pub const FLAG_CB: u16 = 1 << 6;
/// `flags` bit: `skb_metadata` holds the `--output-skb-metadata` values.
pub const FLAG_SKB_METADATA: u16 = 1 << 7;
/// `flags` bit: the record is longer than [`EVENT_SIZE`]; the bytes after the event hold
/// the `--output-skb` text (`bpf_snprintf_btf`), NUL-terminated.
pub const FLAG_SKB_DUMP: u16 = 1 << 8;
/// `flags` bit: the `--output-skb-shared-info` text is at record offset `shinfo_text`.
pub const FLAG_SHINFO_DUMP: u16 = 1 << 9;
/// `flags` bit: `drop_reason` holds the return value of the traced BPF program (its
/// verdict: `TC_ACT_*`, `XDP_*`), recorded by the fexit program.
pub const FLAG_VERDICT: u16 = 1 << 10;
/// Every defined flag bit.
pub const FLAGS_ALL: u16 = FLAG_SKB_DUMP
    | FLAG_VERDICT
    | FLAG_SHINFO_DUMP
    | FLAG_META
    | FLAG_TUPLE
    | FLAG_STACK
    | FLAG_CALLER
    | FLAG_ARGS
    | FLAG_DROP_REASON
    | FLAG_CB
    | FLAG_SKB_METADATA;

/// What kind of program produced an event (`kind` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum EventKind {
    Kprobe = 0,
    KprobeMulti = 1,
    Tracepoint = 2,
    /// fentry on a tc BPF program: FUNC gets the `(tc)` suffix.
    Tc = 3,
    /// fentry on an XDP BPF program: FUNC gets the `(xdp)` suffix.
    Xdp = 4,
    /// fentry on a kernel function (the fentry backend).
    Fentry = 5,
}

impl EventKind {
    /// The kind for a raw `kind` value, `None` when unknown.
    pub fn from_raw(raw: u16) -> Option<Self> {
        Some(match raw {
            0 => Self::Kprobe,
            1 => Self::KprobeMulti,
            2 => Self::Tracepoint,
            3 => Self::Tc,
            4 => Self::Xdp,
            5 => Self::Fentry,
            _ => return None,
        })
    }
}

/// Bit set in the `probe_addr` of events from BPF programs traced with fentry/fexit: the
/// low 32 bits are the traced program's id (kernel addresses and tracepoint indexes never
/// look like this).
pub const BPF_PROG_PROBE_TAG: u64 = 1 << 48;

/// The `probe_addr` events of traced BPF program `prog_id` carry.
pub const fn bpf_prog_probe_addr(prog_id: u32) -> u64 {
    BPF_PROG_PROBE_TAG | prog_id as u64
}

/// Mirror of the record as a C struct; only used to prove the offsets above are the
/// natural `repr(C)` layout (see the test), so a C or BPF reader sees the same thing.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEvent {
    pub kind: u16,
    pub flags: u16,
    pub cpu: u32,
    pub pid_tgid: u64,
    pub probe_addr: u64,
    pub skb_addr: u64,
    pub ktime_ns: u64,
    pub caller_addr: u64,
    pub stack_id: i64,
    pub param_second: u64,
    pub param_third: u64,
    pub drop_reason: u64,
    pub netns: u32,
    pub mark: u32,
    pub ifindex: u32,
    pub len: u32,
    pub mtu: u32,
    /// Network byte order (as stored in the skb).
    pub protocol: [u8; 2],
    pub pkt_type: u8,
    pub reserved0: u8,
    pub l3_proto: u16,
    pub l4_proto: u8,
    pub tcp_flags: u8,
    /// Network byte order.
    pub sport: [u8; 2],
    /// Network byte order.
    pub dport: [u8; 2],
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub cb: [u32; 5],
    /// Record offset of the `--output-skb-shared-info` text.
    pub shinfo_text: u32,
    /// `--output-skb-metadata` values, zero-/sign-extended to 64 bits.
    pub skb_metadata: [u64; 4],
    /// The task's name, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_ne_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_ne_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_ne_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}
fn arr<const N: usize>(b: &[u8], o: usize) -> [u8; N] {
    b[o..o + N].try_into().expect("N bytes")
}

impl RawEvent {
    /// Reads a record from its bytes; `None` when `bytes` is shorter than [`EVENT_SIZE`].
    /// Extra trailing bytes (ring-buffer padding) are ignored.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let b = bytes.get(..EVENT_SIZE)?;
        let mut cb = [0u32; 5];
        for (i, v) in cb.iter_mut().enumerate() {
            *v = u32_at(b, off::CB + 4 * i);
        }
        let mut skb_metadata = [0u64; 4];
        for (i, v) in skb_metadata.iter_mut().enumerate() {
            *v = u64_at(b, off::SKB_METADATA + 8 * i);
        }
        Some(Self {
            kind: u16_at(b, off::KIND),
            flags: u16_at(b, off::FLAGS),
            cpu: u32_at(b, off::CPU),
            pid_tgid: u64_at(b, off::PID_TGID),
            probe_addr: u64_at(b, off::PROBE_ADDR),
            skb_addr: u64_at(b, off::SKB_ADDR),
            ktime_ns: u64_at(b, off::KTIME_NS),
            caller_addr: u64_at(b, off::CALLER_ADDR),
            stack_id: u64_at(b, off::STACK_ID) as i64,
            param_second: u64_at(b, off::PARAM_SECOND),
            param_third: u64_at(b, off::PARAM_THIRD),
            drop_reason: u64_at(b, off::DROP_REASON),
            netns: u32_at(b, off::NETNS),
            mark: u32_at(b, off::MARK),
            ifindex: u32_at(b, off::IFINDEX),
            len: u32_at(b, off::LEN),
            mtu: u32_at(b, off::MTU),
            protocol: arr(b, off::PROTOCOL),
            pkt_type: b[off::PKT_TYPE],
            reserved0: 0,
            l3_proto: u16_at(b, off::L3_PROTO),
            l4_proto: b[off::L4_PROTO],
            tcp_flags: b[off::TCP_FLAGS],
            sport: arr(b, off::SPORT),
            dport: arr(b, off::DPORT),
            saddr: arr(b, off::SADDR),
            daddr: arr(b, off::DADDR),
            cb,
            shinfo_text: u32_at(b, off::SHINFO_TEXT),
            skb_metadata,
            comm: arr(b, off::COMM),
        })
    }

    /// The record's bytes, exactly as a BPF program would have written them.
    pub fn to_bytes(&self) -> [u8; EVENT_SIZE] {
        let mut b = [0u8; EVENT_SIZE];
        let mut put = |o: usize, v: &[u8]| b[o..o + v.len()].copy_from_slice(v);
        put(off::KIND, &self.kind.to_ne_bytes());
        put(off::FLAGS, &self.flags.to_ne_bytes());
        put(off::CPU, &self.cpu.to_ne_bytes());
        put(off::PID_TGID, &self.pid_tgid.to_ne_bytes());
        put(off::PROBE_ADDR, &self.probe_addr.to_ne_bytes());
        put(off::SKB_ADDR, &self.skb_addr.to_ne_bytes());
        put(off::KTIME_NS, &self.ktime_ns.to_ne_bytes());
        put(off::CALLER_ADDR, &self.caller_addr.to_ne_bytes());
        put(off::STACK_ID, &self.stack_id.to_ne_bytes());
        put(off::PARAM_SECOND, &self.param_second.to_ne_bytes());
        put(off::PARAM_THIRD, &self.param_third.to_ne_bytes());
        put(off::DROP_REASON, &self.drop_reason.to_ne_bytes());
        put(off::NETNS, &self.netns.to_ne_bytes());
        put(off::MARK, &self.mark.to_ne_bytes());
        put(off::IFINDEX, &self.ifindex.to_ne_bytes());
        put(off::LEN, &self.len.to_ne_bytes());
        put(off::MTU, &self.mtu.to_ne_bytes());
        put(off::PROTOCOL, &self.protocol);
        put(off::PKT_TYPE, &[self.pkt_type]);
        put(off::L3_PROTO, &self.l3_proto.to_ne_bytes());
        put(off::L4_PROTO, &[self.l4_proto]);
        put(off::TCP_FLAGS, &[self.tcp_flags]);
        put(off::SPORT, &self.sport);
        put(off::DPORT, &self.dport);
        put(off::SADDR, &self.saddr);
        put(off::DADDR, &self.daddr);
        for (i, v) in self.cb.iter().enumerate() {
            put(off::CB + 4 * i, &v.to_ne_bytes());
        }
        put(off::SHINFO_TEXT, &self.shinfo_text.to_ne_bytes());
        for (i, v) in self.skb_metadata.iter().enumerate() {
            put(off::SKB_METADATA + 8 * i, &v.to_ne_bytes());
        }
        put(off::COMM, &self.comm);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn offsets_match_the_repr_c_layout() {
        let table = [
            (off::KIND, offset_of!(RawEvent, kind)),
            (off::FLAGS, offset_of!(RawEvent, flags)),
            (off::CPU, offset_of!(RawEvent, cpu)),
            (off::PID_TGID, offset_of!(RawEvent, pid_tgid)),
            (off::PROBE_ADDR, offset_of!(RawEvent, probe_addr)),
            (off::SKB_ADDR, offset_of!(RawEvent, skb_addr)),
            (off::KTIME_NS, offset_of!(RawEvent, ktime_ns)),
            (off::CALLER_ADDR, offset_of!(RawEvent, caller_addr)),
            (off::STACK_ID, offset_of!(RawEvent, stack_id)),
            (off::PARAM_SECOND, offset_of!(RawEvent, param_second)),
            (off::PARAM_THIRD, offset_of!(RawEvent, param_third)),
            (off::DROP_REASON, offset_of!(RawEvent, drop_reason)),
            (off::NETNS, offset_of!(RawEvent, netns)),
            (off::MARK, offset_of!(RawEvent, mark)),
            (off::IFINDEX, offset_of!(RawEvent, ifindex)),
            (off::LEN, offset_of!(RawEvent, len)),
            (off::MTU, offset_of!(RawEvent, mtu)),
            (off::PROTOCOL, offset_of!(RawEvent, protocol)),
            (off::PKT_TYPE, offset_of!(RawEvent, pkt_type)),
            (off::L3_PROTO, offset_of!(RawEvent, l3_proto)),
            (off::L4_PROTO, offset_of!(RawEvent, l4_proto)),
            (off::TCP_FLAGS, offset_of!(RawEvent, tcp_flags)),
            (off::SPORT, offset_of!(RawEvent, sport)),
            (off::DPORT, offset_of!(RawEvent, dport)),
            (off::SADDR, offset_of!(RawEvent, saddr)),
            (off::DADDR, offset_of!(RawEvent, daddr)),
            (off::CB, offset_of!(RawEvent, cb)),
            (off::SHINFO_TEXT, offset_of!(RawEvent, shinfo_text)),
            (off::SKB_METADATA, offset_of!(RawEvent, skb_metadata)),
            (off::COMM, offset_of!(RawEvent, comm)),
        ];
        for (i, (ours, c)) in table.iter().enumerate() {
            assert_eq!(ours, c, "field #{i}");
        }
        assert_eq!(size_of::<RawEvent>(), EVENT_SIZE);
        assert_eq!(
            EVENT_SIZE % 8,
            0,
            "records stay 8-byte aligned in the ring buffer"
        );
    }

    #[test]
    fn decode_reads_each_field_at_its_offset() {
        let mut b = [0u8; EVENT_SIZE];
        b[off::KIND..off::KIND + 2].copy_from_slice(&2u16.to_ne_bytes());
        b[off::FLAGS..off::FLAGS + 2].copy_from_slice(&(FLAG_META | FLAG_TUPLE).to_ne_bytes());
        b[off::PID_TGID..off::PID_TGID + 8].copy_from_slice(&((42u64 << 32) | 43).to_ne_bytes());
        b[off::SKB_ADDR..off::SKB_ADDR + 8]
            .copy_from_slice(&0xffff_8881_0000_1000u64.to_ne_bytes());
        b[off::STACK_ID..off::STACK_ID + 8].copy_from_slice(&(-14i64).to_ne_bytes());
        b[off::PROTOCOL] = 0x08;
        b[off::PROTOCOL + 1] = 0x00;
        b[off::SPORT] = 0x1f;
        b[off::SPORT + 1] = 0x90;
        b[off::SADDR..off::SADDR + 4].copy_from_slice(&[10, 0, 2, 15]);
        b[off::CB + 16..off::CB + 20].copy_from_slice(&7u32.to_ne_bytes());
        b[off::SKB_METADATA + 24..off::SKB_METADATA + 32].copy_from_slice(&9u64.to_ne_bytes());
        b[off::SHINFO_TEXT..off::SHINFO_TEXT + 4].copy_from_slice(&4296u32.to_ne_bytes());
        b[off::COMM..off::COMM + 4].copy_from_slice(b"ping");
        let raw = RawEvent::from_bytes(&b).unwrap();
        assert_eq!(raw.kind, 2);
        assert_eq!(raw.flags, FLAG_META | FLAG_TUPLE);
        assert_eq!(raw.pid_tgid >> 32, 42);
        assert_eq!(raw.skb_addr, 0xffff_8881_0000_1000);
        assert_eq!(raw.stack_id, -14);
        assert_eq!(u16::from_be_bytes(raw.protocol), 0x0800);
        assert_eq!(u16::from_be_bytes(raw.sport), 8080);
        assert_eq!(&raw.saddr[..4], &[10, 0, 2, 15]);
        assert_eq!(raw.cb, [0, 0, 0, 0, 7]);
        assert_eq!(raw.skb_metadata, [0, 0, 0, 9]);
        assert_eq!(raw.shinfo_text, 4296);
        assert_eq!(&raw.comm, b"ping\0\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(raw.to_bytes(), b, "encode is the inverse of decode");
    }

    #[test]
    fn short_records_are_rejected_and_padding_ignored() {
        assert!(RawEvent::from_bytes(&[0u8; EVENT_SIZE - 1]).is_none());
        assert!(RawEvent::from_bytes(&[0u8; EVENT_SIZE + 8]).is_some());
    }

    #[test]
    fn kinds_round_trip() {
        for k in [
            EventKind::Kprobe,
            EventKind::KprobeMulti,
            EventKind::Tracepoint,
            EventKind::Tc,
            EventKind::Xdp,
            EventKind::Fentry,
        ] {
            assert_eq!(EventKind::from_raw(k as u16), Some(k));
        }
        assert_eq!(EventKind::from_raw(6), None);
    }
}
