//! `--output-pcap`: the packet's bytes as the filter saw them (from the L2 start when the
//! skb has a MAC header, else from L3), up to the snap length, at the end of the record.
//!
//! The section's area after the fixed record: `u32` bytes copied, `u32` link type
//! (LINKTYPE_ETHERNET, LINKTYPE_RAW, or 0 when the probe found no packet), `u32` length on
//! the wire from that start (linear bytes plus `data_len`, as the filter's `len`), `u32`
//! zero, then the bytes.
//! They are the record's variable part ([`RecordSection::variable_bytes`]): the record
//! goes to the ring buffer at its used length, so a 60-byte SYN costs 60 bytes, not the
//! snap length. Off, the probes are unchanged. It prints nothing in the table or JSON:
//! `output::pcap` writes the bytes to the pcap-ng file.

use crate::bpf;
use crate::btf::{Field, SkBuffLayout};
use crate::capture::LinkType;
use crate::events::Event;
use crate::output::OutputOptions;
use crate::probes::ProbeError;

use super::{RecordSection, RecordStage, Section};

/// Bytes before the packet bytes: the count, the link type, the wire length.
pub const PACKET_HEAD_BYTES: usize = 16;
/// Smallest and largest `--output-pcap-snaplen`; the largest keeps a record inside the
/// per-CPU area it is built in (`probes::record::MAX_SCRATCH_BYTES`) next to the others.
pub const MIN_SNAPLEN: u32 = 16;
pub const MAX_SNAPLEN: u32 = 16 << 10;
/// `--output-pcap-snaplen`'s default: every header of a packet, most small payloads.
pub const DEFAULT_SNAPLEN: u32 = 256;

/// The packet bytes of one event, as the probe copied them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketBytes<'a> {
    /// Where the bytes start: Ethernet (L2) or raw IP (L3).
    pub link_type: LinkType,
    /// The packet's length on the wire from that start (`data` may be shorter: the snap
    /// length, or paged bytes the probe does not copy).
    pub wire_len: u32,
    pub data: &'a [u8],
}

/// The packet bytes of `ev`, whose section area starts at `tail_at`; `None` when the
/// probe found no packet (or the record is another probe's, shorter).
pub fn packet_bytes(ev: &Event, tail_at: usize) -> Option<PacketBytes<'_>> {
    let area = ev.record.after(tail_at)?;
    let head = area.get(..PACKET_HEAD_BYTES)?;
    let count = u32::from_ne_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let link = u32::from_ne_bytes(head[4..8].try_into().expect("4 bytes"));
    let wire_len = u32::from_ne_bytes(head[8..12].try_into().expect("4 bytes"));
    if link == 0 {
        return None;
    }
    let data = &area[PACKET_HEAD_BYTES..];
    let data = &data[..count.min(data.len())];
    Some(PacketBytes {
        link_type: LinkType(link),
        wire_len: wire_len.max(data.len() as u32),
        data,
    })
}

/// Puts packet bytes in `ev` as the probe would, at `tail_at` (tests, replay): the
/// record's bytes after the fixed part are replaced from there on.
pub fn set_packet_bytes(ev: &mut Event, tail_at: usize, packet: Option<PacketBytes<'_>>) {
    let (count, link, wire_len, data) = match packet {
        Some(p) => (p.data.len() as u32, p.link_type.0, p.wire_len, p.data),
        None => (0, 0, 0, &[][..]),
    };
    let mut mine = Vec::with_capacity(16 + data.len());
    for v in [count, link, wire_len, 0] {
        mine.extend_from_slice(&v.to_ne_bytes());
    }
    mine.extend_from_slice(data);
    ev.record.set_section_bytes(tail_at, &mine);
}

/// The section: copies up to `snaplen` bytes.
#[derive(Debug)]
pub struct PcapSection {
    snaplen: u32,
}

impl PcapSection {
    pub fn new(snaplen: u32) -> Self {
        Self { snaplen }
    }
}

impl RecordSection for PcapSection {
    fn skb_fields(&self, s: &SkBuffLayout) -> Vec<Field> {
        vec![
            s.head,
            s.tail,
            s.data_len,
            s.mac_len,
            s.mac_header,
            s.network_header,
        ]
    }

    fn tail_bytes(&self) -> usize {
        PACKET_HEAD_BYTES
    }

    fn variable_bytes(&self) -> usize {
        (self.snaplen as usize).div_ceil(8) * 8
    }

    /// Picks the start like the pcap filter (`mac_len == 0`: no L2 header, raw IP from
    /// `network_header`), then copies `min(tail - start, snaplen)` linear bytes; a failed
    /// read leaves the count 0 (an empty packet with its length). r9 points
    /// at the section's area (its offset may not fit an instruction's).
    fn emit(&self, r: &mut RecordStage<'_>) -> Result<(), ProbeError> {
        let s = &r.layout.sk_buff;
        let (mac_len, mac_len_at) = r.skb_field(&s.mac_len)?;
        let (mac, mac_at) = r.skb_field(&s.mac_header)?;
        let (nh, nh_at) = r.skb_field(&s.network_header)?;
        let (head, head_at) = r.skb_field(&s.head)?;
        let (tail, tail_at) = r.skb_field(&s.tail)?;
        let (data_len, data_len_at) = r.skb_field(&s.data_len)?;
        let area = r.tail_at as i32;
        let snaplen = self.snaplen as i32;
        let (ethernet, raw) = (LinkType::ETHERNET.0 as i32, LinkType::RAW.0 as i32);
        let [l3, start, copy, done] = [(); 4].map(|_| r.a.label());
        bpf!(into r.a;
            r9 = r8;
            r9 += area;
            *(u64 *)(r9 + 0) = 0;
            *(u64 *)(r9 + 8) = 0;
            r1 = *(mac_len *)(r10 + mac_len_at);
            if r1 == 0 goto (l3);
            r1 = *(mac *)(r10 + mac_at);
            r2 = ethernet;
            goto (start);
          (l3):
            r1 = *(nh *)(r10 + nh_at);
            r2 = raw;
          (start):
            r3 = *(head *)(r10 + head_at);
            r3 += r1;
            r4 = *(tail *)(r10 + tail_at);
            r4 -= r1;
            if r4 s<= 0 goto (done);
            *(u32 *)(r9 + 4) = r2;
            r2 = *(data_len *)(r10 + data_len_at);
            r2 += r4;
            *(u32 *)(r9 + 8) = r2;
            r2 = r4;
            if r2 <= snaplen goto (copy);
            r2 = snaplen;
          (copy):
            *(u32 *)(r9 + 0) = r2;
            r1 = r9;
            r1 += (PACKET_HEAD_BYTES as i32);
            call probe_read_kernel;
            if r0 == 0 goto (done);
            *(u32 *)(r9 + 0) = 0;
          (done):
        );
        Ok(())
    }
}

impl Section for PcapSection {
    fn from_options(opts: &OutputOptions) -> Option<Self> {
        opts.pcap_snaplen.map(PcapSection::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::sections::Sections;
    use crate::probes::event::EVENT_SIZE;

    #[test]
    fn bytes_round_trip_through_the_record() {
        let mut ev = Event::default();
        let frame = [0xaau8; 60];
        let at = EVENT_SIZE + 8;
        for (link, data) in [
            (LinkType::ETHERNET, &frame[..]),
            (LinkType::RAW, &frame[14..]),
        ] {
            let p = PacketBytes {
                link_type: link,
                wire_len: 1500,
                data,
            };
            set_packet_bytes(&mut ev, at, Some(p));
            let back = crate::events::decode(&ev.encode()).unwrap();
            assert_eq!(packet_bytes(&back, at), Some(p));
        }
        set_packet_bytes(&mut ev, at, None);
        assert_eq!(packet_bytes(&ev, at), None, "no packet found");
        assert_eq!(
            packet_bytes(&Event::default(), at),
            None,
            "a shorter record"
        );
    }

    #[test]
    fn a_count_past_the_record_is_cut_to_it() {
        let mut ev = Event::default();
        let p = PacketBytes {
            link_type: LinkType::ETHERNET,
            wire_len: 3,
            data: &[1, 2, 3],
        };
        set_packet_bytes(&mut ev, EVENT_SIZE, Some(p));
        let mut tail = ev.record.after(EVENT_SIZE).unwrap().to_vec();
        tail[..4].copy_from_slice(&1000u32.to_ne_bytes());
        ev.record.set_tail(tail);
        assert_eq!(packet_bytes(&ev, EVENT_SIZE).unwrap().data, &[1, 2, 3]);
    }

    #[test]
    fn the_section_records_last_with_variable_bytes() {
        let opts = OutputOptions {
            tuple: true,
            tunnel: true,
            pcap_snaplen: Some(100),
            ..OutputOptions::default()
        };
        let record = Sections::new(&opts).record();
        let last = record.last().unwrap();
        assert_eq!(
            (last.tail_bytes(), last.variable_bytes()),
            (PACKET_HEAD_BYTES, 104)
        );
        assert!(record[..record.len() - 1]
            .iter()
            .all(|s| s.variable_bytes() == 0));
        let off = Sections::new(&OutputOptions::default()).record();
        assert!(off.iter().all(|s| s.variable_bytes() == 0));
    }
}
