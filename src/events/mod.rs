//! Typed events decoded from ring-buffer records, the lost-event counter, and the
//! `EventSink` interface the reading loop feeds (output formatting implements it).

pub mod ring;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use crate::probes::event::EventKind;
use crate::probes::event::{
    RawEvent, EVENT_SIZE, FLAGS_ALL, FLAG_ARGS, FLAG_CALLER, FLAG_CB, FLAG_DROP_REASON, FLAG_META,
    FLAG_SHINFO_DUMP, FLAG_SKB_DUMP, FLAG_SKB_METADATA, FLAG_STACK, FLAG_TUPLE,
};
use crate::probes::skb_dump::dump_text;

/// EtherType of IPv4, as found in [`Tuple::l3_proto`] and [`SkbMeta::protocol`].
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;

/// One decoded probe hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub cpu: u32,
    /// Process id (the kernel's tgid) of the current task.
    pub pid: u32,
    /// Thread id (the kernel's pid) of the current task.
    pub tid: u32,
    /// Probed function address (kallsyms), or a probe id for tracepoints.
    pub probe_addr: u64,
    pub skb_addr: u64,
    pub ktime_ns: u64,
    pub caller_addr: Option<u64>,
    pub stack_id: Option<i64>,
    pub args: Option<NextArgs>,
    /// Drop reason read by the program itself (tracepoints); see [`Event::drop_reason_for`].
    pub drop_reason: Option<u64>,
    pub meta: Option<SkbMeta>,
    pub tuple: Option<Tuple>,
    pub cb: Option<[u32; 5]>,
    /// `--output-skb-metadata` values in the order of the flag's fields (unused slots 0).
    pub skb_metadata: Option<[u64; 4]>,
    /// `--output-skb` text of `struct sk_buff` (carried after the record, see [`decode`]).
    pub skb_dump: Option<String>,
    /// `--output-skb-shared-info` text of `struct skb_shared_info` (also after the record).
    pub shinfo_dump: Option<String>,
}

/// The 2nd and 3rd arguments of the probed function (drop reasons live there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NextArgs {
    pub second: u64,
    pub third: u64,
}

/// Per-skb metadata (the NETNS .. LEN columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SkbMeta {
    pub netns: u32,
    pub mark: u32,
    pub ifindex: u32,
    pub len: u32,
    pub mtu: u32,
    /// `skb->protocol` converted to host order (0x0800 for IPv4).
    pub protocol: u16,
    pub pkt_type: u8,
}

/// The L3/L4 tuple parsed from the packet headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tuple {
    /// [`ETH_P_IP`], [`ETH_P_IPV6`], or another value when no address was parsed.
    pub l3_proto: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Host order.
    pub sport: u16,
    /// Host order.
    pub dport: u16,
    pub l4_proto: u8,
    pub tcp_flags: u8,
}

impl Tuple {
    fn ip(&self, bytes: &[u8; 16]) -> Option<IpAddr> {
        match self.l3_proto {
            ETH_P_IP => Some(IpAddr::V4(Ipv4Addr::new(
                bytes[0], bytes[1], bytes[2], bytes[3],
            ))),
            ETH_P_IPV6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
            _ => None,
        }
    }
    pub fn src_ip(&self) -> Option<IpAddr> {
        self.ip(&self.saddr)
    }
    pub fn dst_ip(&self) -> Option<IpAddr> {
        self.ip(&self.daddr)
    }
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("event record of {0} bytes is shorter than the {EVENT_SIZE}-byte layout")]
    Short(usize),
    #[error("event record has unknown kind {0}")]
    UnknownKind(u16),
    #[error("event record has unknown flag bits {0:#x}")]
    UnknownFlags(u16),
}

/// Decodes one ring-buffer record (trailing padding is ignored).
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let raw = RawEvent::from_bytes(bytes).ok_or(DecodeError::Short(bytes.len()))?;
    let mut event = Event::from_raw(&raw)?;
    if raw.flags & FLAG_SKB_DUMP != 0 {
        event.skb_dump = dump_text(bytes, EVENT_SIZE);
    }
    if raw.flags & FLAG_SHINFO_DUMP != 0 {
        let start = raw.shinfo_text as usize;
        event.shinfo_dump = (start >= EVENT_SIZE)
            .then(|| dump_text(bytes, start))
            .flatten();
    }
    Ok(event)
}

impl Event {
    /// Converts the raw record into a typed event.
    pub fn from_raw(raw: &RawEvent) -> Result<Self, DecodeError> {
        let kind = EventKind::from_raw(raw.kind).ok_or(DecodeError::UnknownKind(raw.kind))?;
        if raw.flags & !FLAGS_ALL != 0 {
            return Err(DecodeError::UnknownFlags(raw.flags & !FLAGS_ALL));
        }
        let has = |bit: u16| raw.flags & bit != 0;
        Ok(Self {
            kind,
            cpu: raw.cpu,
            pid: (raw.pid_tgid >> 32) as u32,
            tid: raw.pid_tgid as u32,
            probe_addr: raw.probe_addr,
            skb_addr: raw.skb_addr,
            ktime_ns: raw.ktime_ns,
            caller_addr: has(FLAG_CALLER).then_some(raw.caller_addr),
            stack_id: has(FLAG_STACK).then_some(raw.stack_id),
            args: has(FLAG_ARGS).then_some(NextArgs {
                second: raw.param_second,
                third: raw.param_third,
            }),
            drop_reason: has(FLAG_DROP_REASON).then_some(raw.drop_reason),
            meta: has(FLAG_META).then_some(SkbMeta {
                netns: raw.netns,
                mark: raw.mark,
                ifindex: raw.ifindex,
                len: raw.len,
                mtu: raw.mtu,
                protocol: u16::from_be_bytes(raw.protocol),
                pkt_type: raw.pkt_type,
            }),
            tuple: has(FLAG_TUPLE).then_some(Tuple {
                l3_proto: raw.l3_proto,
                saddr: raw.saddr,
                daddr: raw.daddr,
                sport: u16::from_be_bytes(raw.sport),
                dport: u16::from_be_bytes(raw.dport),
                l4_proto: raw.l4_proto,
                tcp_flags: raw.tcp_flags,
            }),
            cb: has(FLAG_CB).then_some(raw.cb),
            skb_metadata: has(FLAG_SKB_METADATA).then_some(raw.skb_metadata),
            // Only [`decode`] sees the bytes after the record.
            skb_dump: has(FLAG_SKB_DUMP).then(String::new),
            shinfo_dump: has(FLAG_SHINFO_DUMP).then(String::new),
        })
    }

    /// The raw record a BPF program would write for this event (tests, benches, replay);
    /// the `--output-skb` text is not part of it.
    pub fn to_raw(&self) -> RawEvent {
        let mut raw = RawEvent {
            kind: self.kind as u16,
            cpu: self.cpu,
            pid_tgid: (u64::from(self.pid) << 32) | u64::from(self.tid),
            probe_addr: self.probe_addr,
            skb_addr: self.skb_addr,
            ktime_ns: self.ktime_ns,
            ..RawEvent::default()
        };
        if let Some(a) = self.caller_addr {
            raw.flags |= FLAG_CALLER;
            raw.caller_addr = a;
        }
        if let Some(id) = self.stack_id {
            raw.flags |= FLAG_STACK;
            raw.stack_id = id;
        }
        if let Some(a) = self.args {
            raw.flags |= FLAG_ARGS;
            raw.param_second = a.second;
            raw.param_third = a.third;
        }
        if let Some(r) = self.drop_reason {
            raw.flags |= FLAG_DROP_REASON;
            raw.drop_reason = r;
        }
        if let Some(m) = self.meta {
            raw.flags |= FLAG_META;
            raw.netns = m.netns;
            raw.mark = m.mark;
            raw.ifindex = m.ifindex;
            raw.len = m.len;
            raw.mtu = m.mtu;
            raw.protocol = m.protocol.to_be_bytes();
            raw.pkt_type = m.pkt_type;
        }
        if let Some(t) = self.tuple {
            raw.flags |= FLAG_TUPLE;
            raw.l3_proto = t.l3_proto;
            raw.saddr = t.saddr;
            raw.daddr = t.daddr;
            raw.sport = t.sport.to_be_bytes();
            raw.dport = t.dport.to_be_bytes();
            raw.l4_proto = t.l4_proto;
            raw.tcp_flags = t.tcp_flags;
        }
        if let Some(cb) = self.cb {
            raw.flags |= FLAG_CB;
            raw.cb = cb;
        }
        if self.skb_dump.is_some() {
            raw.flags |= FLAG_SKB_DUMP;
        }
        if self.shinfo_dump.is_some() {
            raw.flags |= FLAG_SHINFO_DUMP;
            raw.shinfo_text = EVENT_SIZE as u32;
        }
        if let Some(values) = self.skb_metadata {
            raw.flags |= FLAG_SKB_METADATA;
            raw.skb_metadata = values;
        }
        raw
    }

    /// The record bytes for this event.
    pub fn encode(&self) -> [u8; EVENT_SIZE] {
        self.to_raw().to_bytes()
    }

    /// The drop reason to show for this event when its function is `func`, whose
    /// `enum skb_drop_reason` parameter (from BTF) is at `reason_arg` (1-based): the reason
    /// the program read itself, else the 2nd or 3rd argument it recorded. Without BTF
    /// knowledge, pwru's two functions: `kfree_skb_reason` (2nd) and `sk_skb_reason_drop` (3rd).
    pub fn drop_reason_for(&self, func: &str, reason_arg: Option<u16>) -> Option<u64> {
        if self.drop_reason.is_some() {
            return self.drop_reason;
        }
        let arg = reason_arg.or(match func {
            "kfree_skb_reason" => Some(2),
            "sk_skb_reason_drop" => Some(3),
            _ => None,
        });
        match arg {
            Some(2) => self.args.map(|a| a.second),
            Some(3) => self.args.map(|a| a.third),
            _ => None,
        }
    }
}

/// Sums a per-CPU array of lost-event counters and reports how many were lost since the
/// previous reading (the BPF side increments its CPU's slot when `bpf_ringbuf_output` fails).
#[derive(Debug, Default, Clone)]
pub struct LostEvents {
    total: u64,
}

impl LostEvents {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one reading of every CPU's counter; returns the number lost since the last call.
    pub fn observe(&mut self, per_cpu: &[u64]) -> u64 {
        let sum = per_cpu.iter().fold(0u64, |acc, v| acc.wrapping_add(*v));
        let new = sum.saturating_sub(self.total);
        self.total = self.total.max(sum);
        new
    }

    /// Events lost since start.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// Whether the reading loop should keep going after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop tracing (e.g. `--output-limit-lines` reached).
    Stop,
}

/// Receives decoded events from the reading loop.
pub trait EventSink {
    /// One event; `stack` holds the kernel stack frames when the event has a stack id and the
    /// reader looked it up.
    fn event(&mut self, event: &Event, stack: Option<&[u64]>) -> io::Result<Flow>;
    /// The ring buffer was drained: a good moment to flush buffered output.
    fn drained(&mut self) -> io::Result<()>;
    /// `newly_lost` events were dropped by the kernel since the last call (`total` since start).
    fn lost(&mut self, newly_lost: u64, total: u64) -> io::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[10, 0, 2, 15]);
        let mut daddr = [0u8; 16];
        daddr[..4].copy_from_slice(&[1, 0, 0, 1]);
        Event {
            kind: EventKind::KprobeMulti,
            cpu: 3,
            pid: 1234,
            tid: 1240,
            probe_addr: 0xffff_ffff_8100_0000,
            skb_addr: 0xffff_8881_052b_6ee8,
            ktime_ns: 123_456_789,
            caller_addr: Some(0xffff_ffff_8100_0040),
            stack_id: Some(7),
            args: Some(NextArgs {
                second: 2,
                third: 3,
            }),
            drop_reason: None,
            meta: Some(SkbMeta {
                netns: 4026531840,
                mark: 0xa00,
                ifindex: 2,
                len: 60,
                mtu: 1500,
                protocol: ETH_P_IP,
                pkt_type: 4,
            }),
            tuple: Some(Tuple {
                l3_proto: ETH_P_IP,
                saddr,
                daddr,
                sport: 43216,
                dport: 8080,
                l4_proto: 6,
                tcp_flags: 0x12,
            }),
            cb: Some([1, 2, 3, 4, 5]),
            skb_metadata: Some([1, u64::MAX, 0, 7]),
            skb_dump: None,
            shinfo_dump: None,
        }
    }

    #[test]
    fn skb_dump_text_follows_the_record() {
        let mut ev = sample();
        ev.skb_dump = Some(String::new());
        let mut bytes = ev.encode().to_vec();
        assert_eq!(decode(&bytes), Ok(ev.clone()), "flag set, no text");
        bytes.extend_from_slice(b"(struct sk_buff){\n .len = (unsigned int)60,\n}\0\0\0");
        ev.skb_dump = Some("(struct sk_buff){\n .len = (unsigned int)60,\n}".into());
        assert_eq!(decode(&bytes), Ok(ev));
        let mut both = sample();
        both.skb_dump = Some(String::new());
        both.shinfo_dump = Some(String::new());
        let mut raw = both.to_raw();
        raw.shinfo_text = (EVENT_SIZE + 8) as u32;
        let mut bytes = raw.to_bytes().to_vec();
        bytes.extend_from_slice(b"skb\0\0\0\0\0shinfo\0");
        both.skb_dump = Some("skb".into());
        both.shinfo_dump = Some("shinfo".into());
        assert_eq!(decode(&bytes), Ok(both));
        raw.shinfo_text = 12; // inside the event: not trusted
        assert_eq!(decode(&raw.to_bytes()).unwrap().shinfo_dump, None);
        let mut plain = sample().encode().to_vec();
        plain.extend_from_slice(b"ignored without the flag\0");
        assert_eq!(decode(&plain).unwrap().skb_dump, None);
    }

    #[test]
    fn encode_decode_round_trip() {
        let ev = sample();
        let bytes = ev.encode();
        assert_eq!(decode(&bytes), Ok(ev.clone()));
        // Network-order fields are stored as packet bytes.
        use crate::probes::event::off;
        assert_eq!(&bytes[off::PROTOCOL..off::PROTOCOL + 2], &[0x08, 0x00]);
        assert_eq!(&bytes[off::DPORT..off::DPORT + 2], &[0x1f, 0x90]);
        assert_eq!(
            ev.tuple.unwrap().src_ip(),
            Some("10.0.2.15".parse().unwrap())
        );
    }

    #[test]
    fn optional_parts_follow_flags() {
        let mut ev = sample();
        ev.meta = None;
        ev.tuple = None;
        ev.caller_addr = None;
        ev.stack_id = None;
        ev.args = None;
        ev.cb = None;
        let back = decode(&ev.encode()).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn bad_records_are_typed_errors() {
        assert_eq!(decode(&[0u8; 10]), Err(DecodeError::Short(10)));
        let mut raw = sample().to_raw();
        raw.kind = 99;
        assert_eq!(decode(&raw.to_bytes()), Err(DecodeError::UnknownKind(99)));
        let mut raw = sample().to_raw();
        raw.flags |= 0x8000;
        assert_eq!(
            decode(&raw.to_bytes()),
            Err(DecodeError::UnknownFlags(0x8000))
        );
    }

    #[test]
    fn drop_reason_source_depends_on_function() {
        let mut ev = sample();
        let table = [
            ("kfree_skb_reason", Some(2)),
            ("sk_skb_reason_drop", Some(3)),
            ("ip_rcv", None),
        ];
        for (func, want) in table {
            assert_eq!(ev.drop_reason_for(func, None), want, "{func}");
        }
        // BTF knowledge wins: a function with its reason as 3rd argument.
        assert_eq!(ev.drop_reason_for("tcp_drop_reason", Some(3)), Some(3));
        assert_eq!(ev.drop_reason_for("ip_rcv", Some(5)), None);
        ev.drop_reason = Some(9);
        assert_eq!(ev.drop_reason_for("skb:kfree_skb", None), Some(9));
    }

    #[test]
    fn lost_events_are_summed_over_cpus_and_reported_once() {
        let mut lost = LostEvents::new();
        assert_eq!(lost.observe(&[0, 0]), 0);
        assert_eq!(lost.observe(&[3, 4]), 7);
        assert_eq!(lost.observe(&[3, 4]), 0);
        assert_eq!(lost.observe(&[5, 4]), 2);
        assert_eq!(lost.total(), 9);
    }
}
