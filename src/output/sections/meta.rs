//! `--output-meta`: the skb's netns inode, mark, interface, protocol, MTU and length (the
//! NETNS .. LEN columns, JSON `netns` .. `len`). The probe copies them from its skb window
//! and from the device facts the filter chain computes.

use crate::bpf;
use crate::btf::{Field, SkBuffLayout};
use crate::events::{Event, RecordPart};
use crate::output::json::JsonObject;
use crate::output::text::{pad_ascii_from, push_dec, push_hex, push_hex_digits};
use crate::output::OutputOptions;
use crate::probes::event::{off, EVENT_SIZE, FLAG_META};
use crate::probes::ProbeError;

use super::{push_title, Cx, JsonAt, RecordSection, RecordStage, Section, TableAt};

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

fn u32_at(b: &[u8; EVENT_SIZE], o: usize) -> u32 {
    u32::from_ne_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

impl RecordPart for SkbMeta {
    const FLAG: u16 = FLAG_META;
    fn read(b: &[u8; EVENT_SIZE]) -> Self {
        SkbMeta {
            netns: u32_at(b, off::NETNS),
            mark: u32_at(b, off::MARK),
            ifindex: u32_at(b, off::IFINDEX),
            len: u32_at(b, off::LEN),
            mtu: u32_at(b, off::MTU),
            // As in the skb: network order.
            protocol: u16::from_be_bytes([b[off::PROTOCOL], b[off::PROTOCOL + 1]]),
            pkt_type: b[off::PKT_TYPE],
        }
    }
    fn write(&self, b: &mut [u8; EVENT_SIZE]) {
        let mut put = |o: usize, v: &[u8]| b[o..o + v.len()].copy_from_slice(v);
        put(off::NETNS, &self.netns.to_ne_bytes());
        put(off::MARK, &self.mark.to_ne_bytes());
        put(off::IFINDEX, &self.ifindex.to_ne_bytes());
        put(off::LEN, &self.len.to_ne_bytes());
        put(off::MTU, &self.mtu.to_ne_bytes());
        put(off::PROTOCOL, &self.protocol.to_be_bytes());
        put(off::PKT_TYPE, &[self.pkt_type]);
    }
}

/// The section: recorded for `--output-meta`, for the NETNS NAME column (which names
/// this netns) and for `--output-pcap` (its interfaces); printed for `--output-meta`.
#[derive(Debug)]
pub struct MetaSection {
    columns: bool,
}

impl RecordSection for MetaSection {
    fn skb_fields(&self, s: &SkBuffLayout) -> Vec<Field> {
        vec![s.mark, s.len, s.protocol, s.pkt_type]
    }
    fn device_facts(&self) -> bool {
        true
    }
    fn emit(&self, r: &mut RecordStage<'_>) -> Result<(), ProbeError> {
        let layout = r.layout;
        let s = &layout.sk_buff;
        r.set_flag(FLAG_META);
        let (mark, mark_at) = r.skb_field(&s.mark)?;
        let (len, len_at) = r.skb_field(&s.len)?;
        let (proto, proto_at) = r.skb_field(&s.protocol)?;
        let (pkt_type, pkt_type_at) = r.skb_field(&s.pkt_type)?;
        bpf!(into r.a;
            r1 = *(mark *)(r10 + mark_at);
            *(u32 *)(r8 + off::MARK) = r1;
            r1 = *(len *)(r10 + len_at);
            *(u32 *)(r8 + off::LEN) = r1;
            r1 = *(proto *)(r10 + proto_at);
            *(u16 *)(r8 + off::PROTOCOL) = r1;
            r1 = *(pkt_type *)(r10 + pkt_type_at);
        );
        if let Some(b) = s.pkt_type.bitfield {
            let mask = (1u32 << b.bit_size) - 1;
            bpf!(into r.a;
                r1 >>= (b.bit_offset);
                r1 &= mask;
            );
        }
        let d = r.frame.device;
        bpf!(into r.a;
            *(u8 *)(r8 + off::PKT_TYPE) = r1;
            r1 = *(u32 *)(r10 + d.netns);
            *(u32 *)(r8 + off::NETNS) = r1;
            r1 = *(u32 *)(r10 + d.ifindex);
            *(u32 *)(r8 + off::IFINDEX) = r1;
            r1 = *(u32 *)(r10 + d.mtu);
            *(u32 *)(r8 + off::MTU) = r1;
        );
        Ok(())
    }
}

impl Section for MetaSection {
    fn from_options(opts: &OutputOptions) -> Option<Self> {
        (opts.meta || opts.netns_names.is_some() || opts.pcap_snaplen.is_some())
            .then_some(MetaSection { columns: opts.meta })
    }
    fn table_at(&self) -> &'static [TableAt] {
        if self.columns {
            &[TableAt::Columns]
        } else {
            &[]
        }
    }
    fn json_at(&self) -> &'static [JsonAt] {
        if self.columns {
            &[JsonAt::Netns, JsonAt::Packet]
        } else {
            &[]
        }
    }
    fn header(&self, _at: TableAt, h: &mut String) {
        push_title(h, "NETNS", 10);
        push_title(h, "MARK/x", 8);
        h.push(' ');
        crate::output::text::push_centered(h, "IFACE", 16);
        push_title(h, "PROTO", 6);
        push_title(h, "MTU", 5);
        push_title(h, "LEN", 5);
    }
    fn table(&self, _at: TableAt, cx: &mut Cx<'_>, ev: &Event, line: &mut String) {
        let m = ev.get::<SkbMeta>().unwrap_or_default();
        line.push(' ');
        let start = line.len();
        push_dec(line, m.netns);
        pad_ascii_from(line, start, 10);
        line.push(' ');
        let start = line.len();
        push_hex(line, u64::from(m.mark));
        pad_ascii_from(line, start, 8);
        line.push(' ');
        line.push_str(cx.names.ifaces.centered(m.netns, m.ifindex));
        line.push_str(" 0x");
        push_hex_digits(line, u64::from(m.protocol), 4, false);
        line.push(' ');
        let start = line.len();
        push_dec(line, m.mtu);
        pad_ascii_from(line, start, 5);
        line.push(' ');
        let start = line.len();
        push_dec(line, m.len);
        pad_ascii_from(line, start, 5);
    }
    fn json(&self, at: JsonAt, cx: &mut Cx<'_>, ev: &Event, obj: &mut JsonObject<'_>) {
        let m = ev.get::<SkbMeta>().unwrap_or_default();
        if at == JsonAt::Netns {
            obj.num("netns", m.netns);
            return;
        }
        obj.num("mark", m.mark);
        obj.str("iface", &cx.names.ifaces.label(m.netns, m.ifindex));
        obj.num("proto", m.protocol);
        obj.num("mtu", m.mtu);
        obj.num("len", m.len);
    }
}
