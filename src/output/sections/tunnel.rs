//! `--output-tunnel`: the inner tuple of encapsulated traffic (VXLAN, Geneve), parsed by the
//! probe at `head + inner_network_header` like the outer one; pwru's TUNNEL text and JSON
//! `tunnel_tuple`.

use crate::bpf;
use crate::btf::{Field, SkBuffLayout};
use crate::events::Event;
use crate::output::json::JsonObject;
use crate::output::OutputOptions;
use crate::probes::ProbeError;

use super::tuple::TUPLE_BLOCK_BYTES;
use super::tuple::{emit_tuple, json_tuple, push_tuple, Found, Tuple, TupleParse};
use super::{Cx, JsonAt, RecordSection, RecordStage, Section, TableAt};

/// The section's bytes after the fixed record: a tuple block, then a byte set to 1 when
/// the probe parsed an inner tuple, padded to 8 bytes.
const TUNNEL_BYTES: usize = (TUPLE_BLOCK_BYTES + 1).div_ceil(8) * 8;
/// Offset of the "parsed" byte in the section's bytes.
const FOUND_AT: usize = TUPLE_BLOCK_BYTES;

/// The inner tuple of the record whose section bytes start at `tail_at`; `None` when the
/// skb had no inner headers (or they did not parse).
pub fn inner_tuple(ev: &Event, tail_at: usize) -> Option<Tuple> {
    let bytes = ev.record.after(tail_at)?.get(..TUNNEL_BYTES)?;
    (bytes[FOUND_AT] != 0).then(|| Tuple::read_block(bytes))
}

/// Puts an inner tuple in `ev` as the probe would, at `tail_at` (tests, replay): the
/// record's bytes after the fixed part are replaced up to the end of this section's.
pub fn set_inner_tuple(ev: &mut Event, tail_at: usize, tuple: Option<&Tuple>) {
    let mut mine = [0u8; TUNNEL_BYTES];
    if let Some(t) = tuple {
        t.write_block(&mut mine);
        mine[FOUND_AT] = 1;
    }
    ev.record.set_section_bytes(tail_at, &mine);
}

/// The section; `tcp_flags`: `--output-tcp-flags` applies to the inner tuple too.
#[derive(Debug)]
pub struct TunnelSection {
    tcp_flags: bool,
}

impl RecordSection for TunnelSection {
    fn skb_fields(&self, s: &SkBuffLayout) -> Vec<Field> {
        let mut fields = vec![s.head, s.tail];
        fields.extend(s.inner_network_header);
        fields
    }

    fn tail_bytes(&self) -> usize {
        TUNNEL_BYTES
    }

    /// Zeroes its bytes, then parses the inner packet when `inner_network_header` is set
    /// (pwru's `set_tunnel`).
    fn emit(&self, r: &mut RecordStage<'_>) -> Result<(), ProbeError> {
        let header = r
            .layout
            .sk_buff
            .inner_network_header
            .ok_or(ProbeError::Unsupported(
                "--output-tunnel: this kernel's sk_buff has no inner_network_header",
            ))?;
        for at in (r.tail_at..r.tail_at + TUNNEL_BYTES).step_by(8) {
            bpf!(into r.a; *(u64 *)(r8 + at as i16) = 0;);
        }
        let parse = TupleParse {
            header,
            block: r.tail_at,
            found: Found::Byte(r.tail_at + FOUND_AT),
            unset_is_none: true,
        };
        emit_tuple(r, &parse)
    }
}

impl Section for TunnelSection {
    fn from_options(opts: &OutputOptions) -> Option<Self> {
        opts.tunnel.then_some(TunnelSection {
            tcp_flags: opts.tcp_flags,
        })
    }
    /// Its title goes after FUNC (and CALLER) in the header; its text ends the event's
    /// text, after the stack and the dumps, as pwru prints it.
    fn table_at(&self) -> &'static [TableAt] {
        &[TableAt::AfterFunc, TableAt::Lines]
    }
    fn json_at(&self) -> &'static [JsonAt] {
        &[JsonAt::Packet]
    }
    fn header(&self, _at: TableAt, h: &mut String) {
        h.push_str(" TUNNEL");
    }
    /// ` saddr:sport->daddr:dport(proto)`, `:0->:0()` for an skb without inner headers.
    fn table(&self, at: TableAt, cx: &mut Cx<'_>, ev: &Event, line: &mut String) {
        if at == TableAt::Lines {
            line.push(' ');
            let inner = inner_tuple(ev, cx.tail_at).unwrap_or_default();
            push_tuple(line, &inner, self.tcp_flags);
        }
    }
    /// Present whenever the tunnel output is on, `{}` without an inner tuple.
    fn json(&self, _at: JsonAt, cx: &mut Cx<'_>, ev: &Event, obj: &mut JsonObject<'_>) {
        let inner = inner_tuple(ev, cx.tail_at).unwrap_or_default();
        json_tuple(obj, "tunnel_tuple", &inner, self.tcp_flags, cx.scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventKind, ETH_P_IP, ETH_P_IPV6};
    use crate::output::sections::tuple::tuple;
    use crate::output::sections::Sections;
    use crate::output::{header_line, Names, Output, OutputTarget};
    use crate::probes::event::EVENT_SIZE;

    fn v4(s: [u8; 4], d: [u8; 4], (sport, dport): (u16, u16), l4: u8, flags: u8) -> Tuple {
        tuple(ETH_P_IP, &s, &d, sport, dport, l4, flags)
    }

    fn outer() -> Tuple {
        v4([192, 168, 1, 1], [192, 168, 1, 2], (40000, 4789), 17, 0)
    }

    fn inner() -> Tuple {
        v4([10, 1, 1, 1], [10, 1, 1, 2], (43216, 8080), 6, 0x02)
    }

    fn opts(json: bool, tcp_flags: bool) -> OutputOptions {
        OutputOptions {
            tuple: true,
            tunnel: true,
            tcp_flags,
            json,
            ..OutputOptions::default()
        }
    }

    /// Where the section's bytes start for `opts`.
    fn tail_at(opts: &OutputOptions) -> usize {
        let sections = Sections::new(opts);
        let placed = sections.json_at(JsonAt::Packet);
        placed
            .iter()
            .find(|p| p.section.tail_bytes() == TUNNEL_BYTES)
            .map(|p| p.tail_at)
            .expect("the tunnel section is on")
    }

    fn event(opts: &OutputOptions, inner: Option<&Tuple>) -> Event {
        let mut ev = Event {
            kind: EventKind::Tracepoint,
            probe_addr: 7,
            skb_addr: 0xffff8881052b6ee8,
            ..Event::default()
        }
        .with(outer());
        set_inner_tuple(&mut ev, tail_at(opts), inner);
        ev
    }

    fn line(opts: OutputOptions, ev: &Event) -> String {
        let mut names = Names::default();
        names.probe_names.insert(7, "net:net_dev_xmit".into());
        let sink = OutputTarget::Writer(Box::new(std::io::sink()));
        let mut out = Output::new(opts, names, sink).unwrap();
        out.format_event(ev, &[]).unwrap()
    }

    #[test]
    fn bytes_follow_the_fixed_record_and_round_trip() {
        let o = opts(false, false);
        assert_eq!(
            tail_at(&o),
            EVENT_SIZE,
            "the only section with bytes after it"
        );
        assert_eq!(TUNNEL_BYTES % 8, 0);
        let v6 = tuple(
            ETH_P_IPV6,
            &"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
            &"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets(),
            1,
            2,
            17,
            0,
        );
        for t in [inner(), v6] {
            assert_eq!(inner_tuple(&event(&o, Some(&t)), EVENT_SIZE), Some(t));
        }
        assert_eq!(inner_tuple(&event(&o, None), EVENT_SIZE), None);
        // A record too short for the section (another probe's) has none either.
        assert_eq!(inner_tuple(&Event::default(), EVENT_SIZE), None);
    }

    #[test]
    fn table_prints_pwrus_tunnel_text_after_func() {
        let table: &[(bool, Option<Tuple>, &str)] = &[
            (
                false,
                Some(inner()),
                "192.168.1.1:40000->192.168.1.2:4789(udp) net:net_dev_xmit 10.1.1.1:43216->10.1.1.2:8080(tcp)\n",
            ),
            (
                true,
                Some(inner()),
                "192.168.1.1:40000->192.168.1.2:4789(udp) net:net_dev_xmit 10.1.1.1:43216->10.1.1.2:8080(tcp:SYN)\n",
            ),
            (
                false,
                None,
                "192.168.1.1:40000->192.168.1.2:4789(udp) net:net_dev_xmit :0->:0()\n",
            ),
        ];
        for (flags, inner, want) in table {
            let o = opts(false, *flags);
            let text = line(o.clone(), &event(&o, inner.as_ref()));
            assert!(text.ends_with(want), "{text:?} does not end with {want:?}");
        }
        let o = OutputOptions {
            caller: true,
            ..opts(false, false)
        };
        assert!(
            header_line(&o).ends_with(" TUPLE FUNC CALLER TUNNEL\n"),
            "{}",
            header_line(&o)
        );
    }

    #[test]
    fn json_has_pwrus_tunnel_tuple_after_tuple() {
        let o = opts(true, true);
        let text = line(o.clone(), &event(&o, Some(&inner())));
        assert!(
            text.ends_with(
                "\"tuple\":{\"saddr\":\"192.168.1.1\",\"daddr\":\"192.168.1.2\",\"sport\":40000,\"dport\":4789,\"proto\":17},\
                 \"tunnel_tuple\":{\"saddr\":\"10.1.1.1\",\"daddr\":\"10.1.1.2\",\"sport\":43216,\"dport\":8080,\"proto\":6,\"flags\":\"SYN\"}}\n"
            ),
            "{text}"
        );
        let text = line(o.clone(), &event(&o, None));
        assert!(text.ends_with(",\"tunnel_tuple\":{}}\n"), "{text}");
    }
}
