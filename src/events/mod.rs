//! Events read from the ring buffer: the header every record has, decoded, plus the record
//! bytes the output sections read their parts from; the lost-event counter; `EventSink`.
//!
//! A section's part of the record is a [`RecordPart`] (its type lives with the section, in
//! `output::sections`): `event.get::<Tuple>()` reads it when the probe set its flag bit.

pub mod ring;

use std::io;

pub use crate::probes::event::EventKind;
use crate::probes::event::{off, COMM_LEN, EVENT_SIZE, FLAGS_ALL, FLAG_ARGS};

/// EtherType of IPv4, as found in the tuple's `l3_proto` and the meta's `protocol`.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;

/// One probe hit: the header fields every record carries, and the record itself.
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
    /// The 2nd and 3rd arguments of the probed function (drop reasons live there).
    pub args: Option<NextArgs>,
    /// The record as the probe wrote it; the sections' parts are read from it.
    pub record: Record,
}

impl Default for Event {
    fn default() -> Self {
        Self {
            kind: EventKind::Kprobe,
            cpu: 0,
            pid: 0,
            tid: 0,
            probe_addr: 0,
            skb_addr: 0,
            ktime_ns: 0,
            args: None,
            record: Record::default(),
        }
    }
}

/// The 2nd and 3rd arguments of the probed function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NextArgs {
    pub second: u64,
    pub third: u64,
}

/// The bytes of one ring-buffer record: the fixed part (`probes::event`) and whatever a
/// section wrote after it (`RecordSection::tail_bytes`).
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    fixed: [u8; EVENT_SIZE],
    tail: Vec<u8>,
}

impl Default for Record {
    fn default() -> Self {
        Self {
            fixed: [0; EVENT_SIZE],
            tail: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("flags", &format_args!("{:#x}", self.flags()))
            .field("tail_bytes", &self.tail.len())
            .finish()
    }
}

impl Record {
    /// The fixed part.
    pub fn fixed(&self) -> &[u8; EVENT_SIZE] {
        &self.fixed
    }

    /// The record's bytes from offset `at` (`>= EVENT_SIZE`, past the fixed part) to its
    /// end; `None` when `at` is inside the fixed part or past the end.
    pub fn after(&self, at: usize) -> Option<&[u8]> {
        self.tail.get(at.checked_sub(EVENT_SIZE)?..)
    }

    /// The `flags` field: which parts the probe filled.
    pub fn flags(&self) -> u16 {
        u16::from_ne_bytes([self.fixed[off::FLAGS], self.fixed[off::FLAGS + 1]])
    }

    fn set_flags(&mut self, flags: u16) {
        self.fixed[off::FLAGS..off::FLAGS + 2].copy_from_slice(&flags.to_ne_bytes());
    }

    /// Replaces the bytes after the fixed part (tests, replay).
    pub fn set_tail(&mut self, tail: Vec<u8>) {
        self.tail = tail;
    }

    /// Writes a section's `bytes` at record offset `at` (`>= EVENT_SIZE`) as the probe
    /// would (tests, replay): the bytes before it are kept (zero-filled where the record
    /// was shorter), the ones after it dropped.
    pub fn set_section_bytes(&mut self, at: usize, bytes: &[u8]) {
        let start = at - EVENT_SIZE;
        self.tail.resize(start, 0);
        self.tail.extend_from_slice(bytes);
    }

    /// Sets or clears `flag` (tests, replay; a section's part sets its own via
    /// [`Event::set`]).
    pub fn set_flag(&mut self, flag: u16, on: bool) {
        let flags = self.flags();
        self.set_flags(if on { flags | flag } else { flags & !flag });
    }

    /// Writes `bytes` into the fixed part at `at` (tests, replay).
    pub fn put(&mut self, at: usize, bytes: &[u8]) {
        self.fixed[at..at + bytes.len()].copy_from_slice(bytes);
    }
}

/// A section's typed part of the fixed record, present when its flag bit is set.
pub trait RecordPart: Sized {
    /// The `flags` bit the probe sets when it filled the part.
    const FLAG: u16;
    /// Reads the part from the fixed record (its flag is set).
    fn read(fixed: &[u8; EVENT_SIZE]) -> Self;
    /// Writes the part where the probe would (tests, benches, replay).
    fn write(&self, fixed: &mut [u8; EVENT_SIZE]);
}

impl Event {
    /// The part `P` when the probe filled it.
    pub fn get<P: RecordPart>(&self) -> Option<P> {
        (self.record.flags() & P::FLAG != 0).then(|| P::read(&self.record.fixed))
    }

    /// Writes part `P` and sets its flag, or clears the flag for `None`.
    pub fn set<P: RecordPart>(&mut self, part: Option<P>) {
        if let Some(p) = &part {
            p.write(&mut self.record.fixed);
        }
        self.record.set_flag(P::FLAG, part.is_some());
    }

    /// The task's name as the probe recorded it (`comm`, NUL-padded; all zero when the
    /// program could not read it).
    pub fn comm(&self) -> &[u8; COMM_LEN] {
        self.record.fixed[off::COMM..off::COMM + COMM_LEN]
            .try_into()
            .expect("COMM_LEN bytes")
    }

    /// Sets the task's name (tests, benches, replay), cut to 15 bytes as the kernel does.
    pub fn set_comm(&mut self, comm: &str) {
        let mut raw = [0u8; COMM_LEN];
        let len = comm.len().min(COMM_LEN - 1);
        raw[..len].copy_from_slice(&comm.as_bytes()[..len]);
        self.record.put(off::COMM, &raw);
    }

    /// [`Event::set`] by value, for building events.
    pub fn with<P: RecordPart>(mut self, part: P) -> Self {
        self.set(Some(part));
        self
    }

    /// The record bytes a BPF program would write for this event (tests, benches, replay).
    pub fn encode(&self) -> Vec<u8> {
        let mut fixed = self.record.fixed;
        let mut put = |o: usize, v: &[u8]| fixed[o..o + v.len()].copy_from_slice(v);
        put(off::KIND, &(self.kind as u16).to_ne_bytes());
        put(off::CPU, &self.cpu.to_ne_bytes());
        let pid_tgid = (u64::from(self.pid) << 32) | u64::from(self.tid);
        put(off::PID_TGID, &pid_tgid.to_ne_bytes());
        put(off::PROBE_ADDR, &self.probe_addr.to_ne_bytes());
        put(off::SKB_ADDR, &self.skb_addr.to_ne_bytes());
        put(off::KTIME_NS, &self.ktime_ns.to_ne_bytes());
        let a = self.args.unwrap_or_default();
        put(off::PARAM_SECOND, &a.second.to_ne_bytes());
        put(off::PARAM_THIRD, &a.third.to_ne_bytes());
        let flags =
            self.record.flags() & !FLAG_ARGS | if self.args.is_some() { FLAG_ARGS } else { 0 };
        put(off::FLAGS, &flags.to_ne_bytes());
        let mut bytes = fixed.to_vec();
        bytes.extend_from_slice(&self.record.tail);
        bytes
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

fn u32_at(b: &[u8; EVENT_SIZE], o: usize) -> u32 {
    u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8; EVENT_SIZE], o: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[o..o + 8]);
    u64::from_ne_bytes(v)
}

/// Decodes one ring-buffer record: the header; the rest stays bytes for the sections.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let (head, tail) = bytes
        .split_first_chunk::<EVENT_SIZE>()
        .ok_or(DecodeError::Short(bytes.len()))?;
    let record = Record {
        fixed: *head,
        tail: tail.to_vec(),
    };
    let b = &record.fixed;
    let raw_kind = u16::from_ne_bytes([b[off::KIND], b[off::KIND + 1]]);
    let kind = EventKind::from_raw(raw_kind).ok_or(DecodeError::UnknownKind(raw_kind))?;
    let flags = record.flags();
    if flags & !FLAGS_ALL != 0 {
        return Err(DecodeError::UnknownFlags(flags & !FLAGS_ALL));
    }
    let pid_tgid = u64_at(b, off::PID_TGID);
    Ok(Event {
        kind,
        cpu: u32_at(b, off::CPU),
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        probe_addr: u64_at(b, off::PROBE_ADDR),
        skb_addr: u64_at(b, off::SKB_ADDR),
        ktime_ns: u64_at(b, off::KTIME_NS),
        args: (flags & FLAG_ARGS != 0).then(|| NextArgs {
            second: u64_at(b, off::PARAM_SECOND),
            third: u64_at(b, off::PARAM_THIRD),
        }),
        record,
    })
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
    /// The ring buffer was drained (or, once a second when [`EventSink::holds_back_by_time`],
    /// a quiet trace): a good moment to flush buffered output and what is held back by time.
    fn drained(&mut self) -> io::Result<()>;
    /// Whether the sink holds output back until some time has passed (and so needs
    /// [`EventSink::drained`] once a second on a quiet trace).
    fn holds_back_by_time(&self) -> bool {
        false
    }
    /// `newly_lost` events were dropped by the kernel since the last call (`total` since start).
    fn lost(&mut self, newly_lost: u64, total: u64) -> io::Result<()>;
    /// A probe attached while the loop runs: its events carry `addr` as their probe
    /// address, and FUNC shows `name`.
    fn probe_named(&mut self, _addr: u64, _name: String) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A part at a fixed offset, to test the record plumbing without a real section.
    #[derive(Debug, PartialEq)]
    struct Cb([u32; 5]);
    impl RecordPart for Cb {
        const FLAG: u16 = crate::probes::event::FLAG_CB;
        fn read(fixed: &[u8; EVENT_SIZE]) -> Self {
            Cb(std::array::from_fn(|i| u32_at(fixed, off::CB + 4 * i)))
        }
        fn write(&self, fixed: &mut [u8; EVENT_SIZE]) {
            for (i, v) in self.0.iter().enumerate() {
                fixed[off::CB + 4 * i..off::CB + 4 * i + 4].copy_from_slice(&v.to_ne_bytes());
            }
        }
    }

    fn sample() -> Event {
        Event {
            kind: EventKind::KprobeMulti,
            cpu: 3,
            pid: 1234,
            tid: 1240,
            probe_addr: 0xffff_ffff_8100_0000,
            skb_addr: 0xffff_8881_052b_6ee8,
            ktime_ns: 123_456_789,
            args: Some(NextArgs {
                second: 2,
                third: 3,
            }),
            ..Event::default()
        }
        .with(Cb([1, 2, 3, 4, 5]))
    }

    #[test]
    fn encode_decode_round_trip() {
        let ev = sample();
        let bytes = ev.encode();
        assert_eq!(bytes.len(), EVENT_SIZE);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.get::<Cb>(), Some(Cb([1, 2, 3, 4, 5])));
        assert_eq!(back.encode(), bytes);
        assert_eq!(
            (back.kind, back.cpu, back.pid, back.tid, back.args),
            (ev.kind, ev.cpu, ev.pid, ev.tid, ev.args)
        );
        assert_eq!(
            (back.probe_addr, back.skb_addr, back.ktime_ns),
            (ev.probe_addr, ev.skb_addr, ev.ktime_ns)
        );
        // The header sits at its documented offsets.
        assert_eq!(&bytes[off::CPU..off::CPU + 4], &3u32.to_ne_bytes());
        assert_eq!(
            &bytes[off::PID_TGID..off::PID_TGID + 8],
            &((1234u64 << 32) | 1240).to_ne_bytes()
        );
    }

    #[test]
    fn comm_is_carried_and_cut_like_the_kernels() {
        let mut ev = sample();
        assert_eq!(ev.comm(), &[0u8; COMM_LEN], "not recorded: zero");
        ev.set_comm("ping");
        let back = decode(&ev.encode()).unwrap();
        assert_eq!(&back.comm()[..5], b"ping\0");
        assert_eq!(&back.encode()[off::COMM..off::COMM + 4], b"ping");
        ev.set_comm("a-very-long-thread-name");
        assert_eq!(ev.comm(), b"a-very-long-thr\0");
    }

    #[test]
    fn optional_parts_follow_flags() {
        let mut ev = sample();
        ev.args = None;
        ev.set::<Cb>(None);
        let back = decode(&ev.encode()).unwrap();
        assert_eq!(back.args, None);
        assert_eq!(
            back.get::<Cb>(),
            None,
            "the bytes stay, the flag says absent"
        );
        assert_eq!(back, decode(&back.encode()).unwrap());
    }

    #[test]
    fn bytes_after_the_fixed_record_are_kept() {
        let mut bytes = sample().encode();
        bytes.extend_from_slice(b"text\0");
        let ev = decode(&bytes).unwrap();
        assert_eq!(ev.record.after(EVENT_SIZE), Some(&b"text\0"[..]));
        assert_eq!(ev.record.after(EVENT_SIZE + 2), Some(&b"xt\0"[..]));
        assert_eq!(ev.record.after(EVENT_SIZE + 6), None);
        assert_eq!(ev.record.after(off::CPU), None, "inside the fixed part");
        assert_eq!(ev.encode(), bytes);
    }

    #[test]
    fn bad_records_are_typed_errors() {
        assert_eq!(decode(&[0u8; 10]), Err(DecodeError::Short(10)));
        let mut bytes = sample().encode();
        bytes[off::KIND..off::KIND + 2].copy_from_slice(&99u16.to_ne_bytes());
        assert_eq!(decode(&bytes), Err(DecodeError::UnknownKind(99)));
        let mut ev = sample();
        ev.record.set_flag(0x8000, true);
        assert_eq!(decode(&ev.encode()), Err(DecodeError::UnknownFlags(0x8000)));
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
