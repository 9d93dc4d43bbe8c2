//! `--output-tuple` (with `--output-tcp-flags`): addresses, ports and L4 protocol parsed
//! from the packet's IPv4/IPv6 header by the probe, printed as the TUPLE column
//! `saddr:sport->daddr:dport(proto[:FLAGS])` and the JSON `tuple` object.

use crate::bpf;
use crate::btf::{Field, SkBuffLayout};
use crate::events::{Event, RecordPart, ETH_P_IP, ETH_P_IPV6};
use crate::output::json::JsonObject;
use crate::output::text::{pad_ascii_from, push_addr, push_dec};
use crate::output::OutputOptions;
use crate::probes::event::{off, EVENT_SIZE, FLAG_TUPLE};
use crate::probes::ProbeError;

use super::{Cx, JsonAt, RecordSection, RecordStage, Section, TableAt};

/// Bytes from the L3 header copied to parse the tuple: the IPv6 fixed header (40) and
/// the ports and TCP flags after it (14), rounded up. The L4 header of IPv4 without
/// options (at 20) and of IPv6 without extension headers (at 40) is then in the copy,
/// and a matching hit needs no second read for its ports.
const TUPLE_L3_BYTES: i32 = 56;
/// L4 offsets whose first 14 bytes lie in the L3 copy (IPv4 without options, IPv6
/// without extension headers or IPv4 with 20 bytes of options).
const L4_IN_L3_COPY: [i32; 2] = [20, 40];
/// IPv6 extension headers walked to find the L4 header.
const IPV6_EXT_MAX: usize = 4;

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
    fn ip(&self, bytes: &[u8; 16]) -> Option<std::net::IpAddr> {
        match self.l3_proto {
            ETH_P_IP => {
                Some(std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into())
            }
            ETH_P_IPV6 => Some(std::net::Ipv6Addr::from(*bytes).into()),
            _ => None,
        }
    }
    pub fn src_ip(&self) -> Option<std::net::IpAddr> {
        self.ip(&self.saddr)
    }
    pub fn dst_ip(&self) -> Option<std::net::IpAddr> {
        self.ip(&self.daddr)
    }
}

/// Bytes of a tuple block: `l3_proto` .. `daddr`, laid out as in the fixed record
/// (from `off::L3_PROTO`); the tunnel section keeps one after the fixed record.
pub const TUPLE_BLOCK_BYTES: usize = off::DADDR + 16 - off::L3_PROTO;

impl Tuple {
    /// Reads a tuple block (at least [`TUPLE_BLOCK_BYTES`] bytes).
    pub fn read_block(b: &[u8]) -> Self {
        let at = |o: usize| o - off::L3_PROTO;
        let arr = |o: usize| -> [u8; 16] { b[at(o)..at(o) + 16].try_into().expect("16 bytes") };
        Tuple {
            l3_proto: u16::from_ne_bytes([b[at(off::L3_PROTO)], b[at(off::L3_PROTO) + 1]]),
            saddr: arr(off::SADDR),
            daddr: arr(off::DADDR),
            // As in the packet: network order.
            sport: u16::from_be_bytes([b[at(off::SPORT)], b[at(off::SPORT) + 1]]),
            dport: u16::from_be_bytes([b[at(off::DPORT)], b[at(off::DPORT) + 1]]),
            l4_proto: b[at(off::L4_PROTO)],
            tcp_flags: b[at(off::TCP_FLAGS)],
        }
    }

    /// Writes a tuple block as the probe would (at least [`TUPLE_BLOCK_BYTES`] bytes).
    pub fn write_block(&self, b: &mut [u8]) {
        let mut put = |o: usize, v: &[u8]| {
            let o = o - off::L3_PROTO;
            b[o..o + v.len()].copy_from_slice(v)
        };
        put(off::L3_PROTO, &self.l3_proto.to_ne_bytes());
        put(off::SADDR, &self.saddr);
        put(off::DADDR, &self.daddr);
        put(off::SPORT, &self.sport.to_be_bytes());
        put(off::DPORT, &self.dport.to_be_bytes());
        put(off::L4_PROTO, &[self.l4_proto]);
        put(off::TCP_FLAGS, &[self.tcp_flags]);
    }
}

impl RecordPart for Tuple {
    const FLAG: u16 = FLAG_TUPLE;
    fn read(b: &[u8; EVENT_SIZE]) -> Self {
        Tuple::read_block(&b[off::L3_PROTO..])
    }
    fn write(&self, b: &mut [u8; EVENT_SIZE]) {
        self.write_block(&mut b[off::L3_PROTO..]);
    }
}

/// The section; `tcp_flags`: `--output-tcp-flags` (the probe always records the flags
/// byte with the ports; only the printing is optional).
#[derive(Debug)]
pub struct TupleSection {
    tcp_flags: bool,
}

impl RecordSection for TupleSection {
    fn skb_fields(&self, s: &SkBuffLayout) -> Vec<Field> {
        vec![s.head, s.network_header, s.tail]
    }

    fn emit(&self, r: &mut RecordStage<'_>) -> Result<(), ProbeError> {
        let parse = TupleParse {
            header: r.layout.sk_buff.network_header,
            block: off::L3_PROTO,
            found: Found::Flag(FLAG_TUPLE),
            unset_is_none: false,
        };
        emit_tuple(r, &parse)
    }
}

/// What a tuple parse starts from and where it writes.
#[derive(Debug, Clone, Copy)]
pub struct TupleParse {
    /// The skb field holding the L3 header's offset from `head` (one of the section's
    /// [`RecordSection::skb_fields`], with `head` and `tail`).
    pub header: Field,
    /// Record offset of the [`TUPLE_BLOCK_BYTES`] bytes it fills (zeroed beforehand).
    pub block: usize,
    /// How the record says that a tuple was parsed.
    pub found: Found,
    /// A zero `header` means there is no such header (`inner_network_header` of an skb
    /// that carries no encapsulated packet).
    pub unset_is_none: bool,
}

/// How a record marks a parsed tuple.
#[derive(Debug, Clone, Copy)]
pub enum Found {
    /// A `flags` bit of the fixed record.
    Flag(u16),
    /// A byte at this record offset, set to 1.
    Byte(usize),
}

fn mark_found(r: &mut RecordStage<'_>, found: Found) {
    match found {
        Found::Flag(flag) => r.emit_set_flag(flag),
        Found::Byte(at) => bpf!(into r.a; *(u8 *)(r8 + at as i16) = 1;),
    }
}

/// Parses the IPv4/IPv6 header at `head + p.header` and the TCP/UDP/SCTP ports into the
/// block at `p.block`. Uses r9 for the L3 address and the stack below the skb window as a
/// buffer. Nothing past `tail` is used: a header cut there ends the parse (bytes beyond
/// the linear data are not the packet's).
pub fn emit_tuple(r: &mut RecordStage<'_>, p: &TupleParse) -> Result<(), ProbeError> {
    let s = &r.layout.sk_buff;
    // Record offsets of the block's fields.
    let at = |o: usize| (p.block + o - off::L3_PROTO) as i16;
    let [l3_proto, l4_proto, tcp_flags] = [off::L3_PROTO, off::L4_PROTO, off::TCP_FLAGS].map(at);
    let [sport, dport, saddr, daddr] = [off::SPORT, off::DPORT, off::SADDR, off::DADDR].map(at);
    let (l3_len, scratch) = (r.frame.spare, r.frame.scratch);
    let buf = r.frame.below - TUPLE_L3_BYTES as i16 - 8;
    let l4buf = buf - 16;
    let [done, v6, ports, v4_ports] = [(); 4].map(|_| r.a.label());
    let (nh, nh_at) = r.skb_field(&p.header)?;
    let (head, head_at) = r.skb_field(&s.head)?;
    let (tail, tail_at) = r.skb_field(&s.tail)?;
    bpf!(into r.a; r1 = *(nh *)(r10 + nh_at););
    if p.unset_is_none {
        bpf!(into r.a; if r1 == 0 goto (done););
    }
    bpf!(into r.a;
        // r9 = head + header; l3_len = tail - header (>= 20)
        r9 = *(head *)(r10 + head_at);
        r9 += r1;
        r2 = *(tail *)(r10 + tail_at);
        r2 -= r1;
        if r2 s< 20 goto (done);
        *(u32 *)(r10 + l3_len) = r2;
        r3 = r9;
        r1 = r10;
        r1 += buf;
        r2 = TUPLE_L3_BYTES;
        call probe_read_kernel;
        if r0 != 0 goto (done);
        r1 = *(u8 *)(r10 + buf);
        r1 >>= 4;
        if r1 == 6 goto (v6);
        if r1 != 4 goto (done);
        // IPv4
        *(u16 *)(r8 + l3_proto) = 0x0800;
        r1 = *(u8 *)(r10 + buf + 9);
        *(u8 *)(r8 + l4_proto) = r1;
        r1 = *(u32 *)(r10 + buf + 12);
        *(u32 *)(r8 + saddr) = r1;
        r1 = *(u32 *)(r10 + buf + 16);
        *(u32 *)(r8 + daddr) = r1;
        // Only the first fragment carries ports.
        r1 = *(u16 *)(r10 + buf + 6);
        r1 = be16 r1;
        r1 &= 0x1fff;
        if r1 == 0 goto (v4_ports);
    );
    mark_found(r, p.found);
    bpf!(into r.a;
        goto (done);
      (v4_ports):
        r2 = *(u8 *)(r10 + buf);
        r2 &= 0x0f;
        r2 <<= 2;
        if r2 < 20 goto (done); // malformed IHL
        r1 = *(u8 *)(r10 + buf + 9);
        goto (ports);

        // IPv6: r1 = next header, r2 = offset of the next header from r9
      (v6):
        r1 = *(u32 *)(r10 + l3_len);
        if r1 < 40 goto (done);
        *(u16 *)(r8 + l3_proto) = 0x86dd;
    );
    for i in 0..4 {
        bpf!(into r.a;
            r1 = *(u32 *)(r10 + buf + 8 + 4 * i);
            *(u32 *)(r8 + saddr + 4 * i) = r1;
            r1 = *(u32 *)(r10 + buf + 24 + 4 * i);
            *(u32 *)(r8 + daddr + 4 * i) = r1;
        );
    }
    bpf!(into r.a;
        r1 = *(u8 *)(r10 + buf + 6);
        r2 = 40;
    );
    for _ in 0..IPV6_EXT_MAX {
        let [ext, next, not_frag, not_ah] = [(); 4].map(|_| r.a.label());
        for h in [0, 43, 60, 51, 44] {
            bpf!(into r.a; if r1 == h goto (ext););
        }
        bpf!(into r.a;
            goto (ports);
          (ext):
            // An extension header cut at tail: stop here (its number becomes l4_proto).
            r3 = r2;
            r3 += 8;
            r4 = *(u32 *)(r10 + l3_len);
            if r3 > r4 goto (ports);
            // Read the 8-byte extension header start at r9 + r2 into l4buf; keep r2.
            *(u64 *)(r10 + scratch) = r2;
            *(u8 *)(r10 + l4buf + 15) = r1;
            r3 = r9;
            r3 += r2;
            r1 = r10;
            r1 += l4buf;
            r2 = 8;
            call probe_read_kernel;
            if r0 != 0 goto (done);
            r2 = *(u64 *)(r10 + scratch);
            r4 = *(u8 *)(r10 + l4buf + 15);
            r1 = *(u8 *)(r10 + l4buf); // next header
            r3 = *(u8 *)(r10 + l4buf + 1); // length field
            if r4 != 44 goto (not_frag);
            // Fragment header: fixed 8 bytes; a non-first fragment has no ports.
            r3 = *(u16 *)(r10 + l4buf + 2);
            r3 = be16 r3;
            r3 &= 0xfff8;
            r2 += 8;
            if r3 == 0 goto (next);
            *(u8 *)(r8 + l4_proto) = r1;
        );
        mark_found(r, p.found);
        bpf!(into r.a;
            goto (done);
          (not_frag):
            if r4 != 51 goto (not_ah);
            // AH: (len + 2) * 4 bytes
            r3 += 2;
            r3 <<= 2;
            r2 += r3;
            goto (next);
          (not_ah):
            // (len + 1) * 8 bytes
            r3 += 1;
            r3 <<= 3;
            r2 += r3;
          (next):
        );
    }
    // Too many extension headers: record addresses only.

    // r1 = L4 protocol, r2 = L4 offset from r9
    bpf!(into r.a;
      (ports):
        *(u8 *)(r8 + l4_proto) = r1;
    );
    mark_found(r, p.found);
    let [has_ports, flags_in] = [(); 2].map(|_| r.a.label());
    for p in [6, 17, 132, 136] {
        bpf!(into r.a; if r1 == p goto (has_ports););
    }
    bpf!(into r.a;
        goto (done);
      (has_ports):
        // Ports only when both are before tail; TCP flags only when byte 13 is.
        r4 = *(u32 *)(r10 + l3_len);
        r3 = r2;
        r3 += 4;
        if r3 > r4 goto (done);
        *(u8 *)(r10 + l4buf + 15) = r1;
        r3 += 10;
        if r3 <= r4 goto (flags_in);
        *(u8 *)(r10 + l4buf + 15) = 0; // not TCP for the flags test below
      (flags_in):
    );
    let in_copy = L4_IN_L3_COPY.map(|_| r.a.label());
    for (at, label) in L4_IN_L3_COPY.iter().zip(in_copy) {
        bpf!(into r.a; if r2 == (*at) goto (label););
    }
    bpf!(into r.a;
        r3 = r9;
        r3 += r2;
        r1 = r10;
        r1 += l4buf;
        r2 = 14;
        call probe_read_kernel;
        if r0 != 0 goto (done);
    );
    // The ports (and TCP flags) from the L4 header's copy at `base`.
    let ports_from = |a: &mut crate::asm::Asm, base: i16| {
        bpf!(into a;
            r1 = *(u16 *)(r10 + base);
            *(u16 *)(r8 + sport) = r1;
            r1 = *(u16 *)(r10 + base + 2);
            *(u16 *)(r8 + dport) = r1;
            r1 = *(u8 *)(r10 + l4buf + 15);
            if r1 != 6 goto (done);
            r1 = *(u8 *)(r10 + base + 13);
            *(u8 *)(r8 + tcp_flags) = r1;
            goto (done);
        );
    };
    ports_from(r.a, l4buf);
    for (at, label) in L4_IN_L3_COPY.iter().zip(in_copy) {
        bpf!(into r.a; (label):);
        ports_from(r.a, buf + *at as i16);
    }
    bpf!(into r.a;
      (done):
    );
    Ok(())
}

impl Section for TupleSection {
    fn from_options(opts: &OutputOptions) -> Option<Self> {
        opts.tuple.then_some(TupleSection {
            tcp_flags: opts.tcp_flags,
        })
    }
    fn table_at(&self) -> &'static [TableAt] {
        &[TableAt::Columns]
    }
    fn json_at(&self) -> &'static [JsonAt] {
        &[JsonAt::Packet]
    }
    fn header(&self, _at: TableAt, h: &mut String) {
        h.push_str(" TUPLE");
    }
    /// As wide as the widest tuple seen.
    fn table(&self, _at: TableAt, cx: &mut Cx<'_>, ev: &Event, line: &mut String) {
        line.push(' ');
        let start = line.len();
        push_tuple(line, &ev.get::<Tuple>().unwrap_or_default(), self.tcp_flags);
        *cx.width = (*cx.width).max(line.len() - start);
        pad_ascii_from(line, start, *cx.width);
    }
    /// Present whenever tuples are on, `{}` when none was parsed.
    fn json(&self, _at: JsonAt, cx: &mut Cx<'_>, ev: &Event, obj: &mut JsonObject<'_>) {
        let t = ev.get::<Tuple>().unwrap_or_default();
        json_tuple(obj, "tuple", &t, self.tcp_flags, cx.scratch);
    }
}

/// `key: {saddr, daddr, sport, dport, proto[, flags]}` (pwru's shape, zero values left
/// out); `scratch` is a buffer to format into.
pub fn json_tuple(
    obj: &mut JsonObject<'_>,
    key: &str,
    t: &Tuple,
    tcp_flags: bool,
    scratch: &mut String,
) {
    let mut o = obj.object(key);
    for (key, addr) in [("saddr", &t.saddr), ("daddr", &t.daddr)] {
        scratch.clear();
        push_addr(scratch, t.l3_proto, addr);
        o.str(key, scratch);
    }
    o.num("sport", t.sport);
    o.num("dport", t.dport);
    o.num("proto", t.l4_proto);
    if tcp_flags {
        scratch.clear();
        push_tcp_flags(scratch, t.tcp_flags);
        o.str("flags", scratch);
    }
    o.end();
}

/// pwru's name for an L4 protocol number (`""` for others).
pub fn l4_name(proto: u8) -> &'static str {
    match proto {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        58 => "icmp6",
        _ => "",
    }
}

const TCP_FLAG_NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];

/// Appends TCP flags as `SYN|ACK` (lowest bit first, as pwru).
pub fn push_tcp_flags(buf: &mut String, flags: u8) {
    let mut first = true;
    for (i, name) in TCP_FLAG_NAMES.iter().enumerate() {
        if flags & (1 << i) != 0 {
            if !first {
                buf.push('|');
            }
            buf.push_str(name);
            first = false;
        }
    }
}

/// Appends `saddr:sport->daddr:dport(proto)`, with `(tcp:SYN|ACK)` when `tcp_flags` is set.
pub fn push_tuple(buf: &mut String, t: &Tuple, tcp_flags: bool) {
    push_addr(buf, t.l3_proto, &t.saddr);
    buf.push(':');
    push_dec(buf, t.sport);
    buf.push_str("->");
    push_addr(buf, t.l3_proto, &t.daddr);
    buf.push(':');
    push_dec(buf, t.dport);
    buf.push('(');
    buf.push_str(l4_name(t.l4_proto));
    if tcp_flags && t.l4_proto == 6 && t.tcp_flags != 0 {
        buf.push(':');
        push_tcp_flags(buf, t.tcp_flags);
    }
    buf.push(')');
}

/// A tuple from its parts (tests).
#[cfg(test)]
pub(crate) fn tuple(
    l3: u16,
    s: &[u8],
    d: &[u8],
    sport: u16,
    dport: u16,
    l4: u8,
    flags: u8,
) -> Tuple {
    let mut t = Tuple {
        l3_proto: l3,
        sport,
        dport,
        l4_proto: l4,
        tcp_flags: flags,
        ..Tuple::default()
    };
    t.saddr[..s.len()].copy_from_slice(s);
    t.daddr[..d.len()].copy_from_slice(d);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn with(f: impl FnOnce(&mut String)) -> String {
        let mut s = String::new();
        f(&mut s);
        s
    }

    #[test]
    fn tuples() {
        let v6a: [u8; 16] = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        let v6b: [u8; 16] = "2606:4700:4700::1001".parse::<Ipv6Addr>().unwrap().octets();
        let mapped: [u8; 16] = "::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().octets();
        let table: Vec<(Tuple, bool, &str)> = vec![
            (
                tuple(
                    ETH_P_IP,
                    &[10, 0, 2, 15],
                    &[1, 0, 0, 1],
                    43216,
                    8080,
                    6,
                    0x02,
                ),
                false,
                "10.0.2.15:43216->1.0.0.1:8080(tcp)",
            ),
            (
                tuple(
                    ETH_P_IP,
                    &[10, 0, 2, 15],
                    &[1, 0, 0, 1],
                    43216,
                    8080,
                    6,
                    0x12,
                ),
                true,
                "10.0.2.15:43216->1.0.0.1:8080(tcp:SYN|ACK)",
            ),
            (
                tuple(ETH_P_IP, &[10, 0, 2, 15], &[1, 0, 0, 1], 43216, 8080, 6, 0),
                true,
                "10.0.2.15:43216->1.0.0.1:8080(tcp)",
            ),
            (
                tuple(ETH_P_IP, &[10, 0, 0, 1], &[10, 0, 0, 2], 53, 5353, 17, 0xff),
                true,
                "10.0.0.1:53->10.0.0.2:5353(udp)",
            ),
            (
                tuple(ETH_P_IP, &[127, 0, 0, 1], &[127, 0, 0, 1], 0, 0, 1, 0),
                false,
                "127.0.0.1:0->127.0.0.1:0(icmp)",
            ),
            (
                tuple(ETH_P_IPV6, &v6a, &v6b, 51234, 8080, 6, 0),
                false,
                "[fd00::1]:51234->[2606:4700:4700::1001]:8080(tcp)",
            ),
            (
                tuple(ETH_P_IPV6, &v6a, &v6b, 0, 0, 58, 0),
                false,
                "[fd00::1]:0->[2606:4700:4700::1001]:0(icmp6)",
            ),
            (
                tuple(ETH_P_IPV6, &mapped, &v6a, 1, 2, 132, 0),
                false,
                "[10.0.0.1]:1->[fd00::1]:2()",
            ),
            (Tuple::default(), true, ":0->:0()"),
            (
                tuple(0x0806, &[1, 2, 3, 4], &[5, 6, 7, 8], 0, 0, 0, 0),
                false,
                ":0->:0()",
            ),
        ];
        for (t, flags, want) in table {
            assert_eq!(with(|b| push_tuple(b, &t, flags)), want);
        }
        assert_eq!(
            with(|b| push_tcp_flags(b, 0xff)),
            "FIN|SYN|RST|PSH|ACK|URG|ECE|CWR"
        );
    }
}
