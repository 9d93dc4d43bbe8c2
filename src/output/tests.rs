//! Exact output lines (table and JSON) for representative events, compared with pwru's format.

use std::sync::{Arc, Mutex};

use super::sections::caller::CallerAddr;
use super::sections::drop_reason::DropReason;
use super::sections::skb_cb::SkbCb;
use super::sections::skb_dump::{set_texts, SkbDump};
use super::sections::skb_metadata::SkbMetadata;
use super::sections::verdict::Verdict;
use super::sections::{SkbMeta, Tuple};
use super::*;
use crate::btf::{Field, ScalarKind};
use crate::events::{NextArgs, ETH_P_IP, ETH_P_IPV6};
use crate::probes::event::COMM_LEN;

const KALLSYMS: &str = "\
ffffffff81a00000 T nf_hook_slow
ffffffff81a01000 T kfree_skb_reason
ffffffff81a02000 T sk_skb_reason_drop
ffffffff81a03000 T ip6_output
ffffffff81a04000 T __ip_local_out
ffffffff81a05000 T arp_rcv
ffffffff81a06000 T ip_output
ffffffffc0a01000 t nft_do_chain\t[nf_tables]
";

const CURL: u32 = 12345;
const NETNS: u32 = 4026531840;
const SKB: u64 = 0xffff8881052b6ee8;

fn names() -> Names {
    let mut names = Names {
        ksyms: Ksyms::parse(KALLSYMS.as_bytes()).unwrap(),
        ..Names::default()
    };
    names
        .processes
        .insert(CURL, &[0; COMM_LEN], Some("/usr/bin/curl"));
    names.processes.insert(0, &[0; COMM_LEN], None);
    names.ifaces.insert(NETNS, 2, "eth0");
    names.ifaces.insert(NETNS, 1, "lo");
    names
        .drop_reasons
        .insert(2, "SKB_DROP_REASON_NOT_SPECIFIED".into());
    names
        .drop_reasons
        .insert(6, "SKB_DROP_REASON_NETFILTER_DROP".into());
    names.probe_names.insert(7, "skb:kfree_skb".into());
    names
}

/// A writer the tests read back (the output module's tests share it).
#[derive(Clone, Default)]
pub(super) struct Shared(Arc<Mutex<Vec<u8>>>);
impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl Shared {
    pub(super) fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
    fn text(&self) -> String {
        String::from_utf8(self.bytes()).unwrap()
    }
}

fn output(opts: OutputOptions) -> (Output, Shared) {
    let sink = Shared::default();
    let out = Output::new(opts, names(), OutputTarget::Writer(Box::new(sink.clone()))).unwrap();
    (out, sink)
}

fn table_opts() -> OutputOptions {
    OutputOptions {
        meta: true,
        tuple: true,
        ..OutputOptions::default()
    }
}

fn v4_tuple(s: [u8; 4], d: [u8; 4], sport: u16, dport: u16, l4: u8, flags: u8) -> Tuple {
    let mut t = Tuple {
        l3_proto: ETH_P_IP,
        sport,
        dport,
        l4_proto: l4,
        tcp_flags: flags,
        ..Tuple::default()
    };
    t.saddr[..4].copy_from_slice(&s);
    t.daddr[..4].copy_from_slice(&d);
    t
}

fn v6_tuple(s: &str, d: &str, sport: u16, dport: u16, l4: u8) -> Tuple {
    Tuple {
        l3_proto: ETH_P_IPV6,
        saddr: s.parse::<std::net::Ipv6Addr>().unwrap().octets(),
        daddr: d.parse::<std::net::Ipv6Addr>().unwrap().octets(),
        sport,
        dport,
        l4_proto: l4,
        tcp_flags: 0,
    }
}

fn meta(ifindex: u32, mark: u32, protocol: u16, mtu: u32, len: u32) -> Option<SkbMeta> {
    Some(SkbMeta {
        netns: NETNS,
        mark,
        ifindex,
        len,
        mtu,
        protocol,
        pkt_type: 0,
    })
}

fn event(func: u64, tuple: Option<Tuple>, meta: Option<SkbMeta>) -> Event {
    let mut ev = Event {
        kind: EventKind::KprobeMulti,
        cpu: 1,
        pid: CURL,
        tid: CURL,
        probe_addr: func,
        skb_addr: SKB,
        ktime_ns: 12345678901234,
        args: Some(NextArgs {
            second: 0,
            third: 0,
        }),
        ..Event::default()
    };
    ev.set(meta);
    ev.set(tuple);
    ev
}

fn ipv4_event(func: u64) -> Event {
    event(
        func,
        Some(v4_tuple([10, 0, 2, 15], [1, 0, 0, 1], 43216, 8080, 6, 0x02)),
        meta(2, 0, ETH_P_IP, 1500, 60),
    )
}

fn lines(out: &mut Output, events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| out.format_event(e, &[]).unwrap().to_string())
        .collect()
}

#[test]
fn default_header_is_pwrus() {
    let table: &[(OutputOptions, &str)] = &[
        (
            table_opts(),
            "SKB                CPU PROCESS          NETNS      MARK/x        IFACE       PROTO  MTU   LEN   TUPLE FUNC\n",
        ),
        (
            OutputOptions { timestamp: TimestampMode::Current, ..table_opts() },
            "SKB                CPU PROCESS          TIMESTAMP        NETNS      MARK/x        IFACE       PROTO  MTU   LEN   TUPLE FUNC\n",
        ),
        (
            OutputOptions { timestamp: TimestampMode::Absolute, caller: true, ..table_opts() },
            "TIME                    SKB                CPU PROCESS          TIMESTAMP        NETNS      MARK/x        IFACE       PROTO  MTU   LEN   TUPLE FUNC CALLER\n",
        ),
        (OutputOptions::default(), "SKB                CPU PROCESS          FUNC\n"),
        (
            OutputOptions { cb: true, ..table_opts() },
            "SKB                CPU PROCESS          NETNS      MARK/x        IFACE       PROTO  MTU   LEN   __sk_buff->cb[]                                          TUPLE FUNC\n",
        ),
    ];
    for (opts, want) in table {
        assert_eq!(header_line(opts), *want, "{opts:?}");
    }
    let (mut out, sink) = output(OutputOptions {
        json: true,
        ..table_opts()
    });
    out.print_header().unwrap();
    out.flush().unwrap();
    assert_eq!(sink.text(), "", "no header for JSON");
}

#[test]
fn table_lines() {
    let mut drop = ipv4_event(0xffffffff81a01000);
    drop.args = Some(NextArgs {
        second: 6,
        third: 0,
    });
    let mut drop_unknown = ipv4_event(0xffffffff81a01000);
    drop_unknown.args = Some(NextArgs {
        second: 77,
        third: 0,
    });
    let mut sk_drop = ipv4_event(0xffffffff81a02000);
    sk_drop.args = Some(NextArgs {
        second: 0xffff888000000000,
        third: 2,
    });
    let mut tracepoint = ipv4_event(7);
    tracepoint.kind = EventKind::Tracepoint;
    tracepoint.set(Some(DropReason(6)));
    let mut tc = ipv4_event(0xffffffffc0a01000);
    tc.kind = EventKind::Tc;
    let tc_exit = tc.clone().with(Verdict(2));
    let mut softirq = event(0xffffffff81a05000, None, meta(1, 0xa00, 0x0806, 65536, 28));
    softirq.pid = 0;
    softirq.cpu = 15;
    let unknown_func = event(0xffffffff81ffff00, None, None);

    let table: Vec<(Event, &str)> = vec![
        (
            ipv4_event(0xffffffff81a00000),
            "0xffff8881052b6ee8 1   ~/bin/curl:12345 4026531840 0             eth0:2      0x0800 1500  60    10.0.2.15:43216->1.0.0.1:8080(tcp) nf_hook_slow\n",
        ),
        (
            drop,
            "0xffff8881052b6ee8 1   ~/bin/curl:12345 4026531840 0             eth0:2      0x0800 1500  60    10.0.2.15:43216->1.0.0.1:8080(tcp) kfree_skb_reason(SKB_DROP_REASON_NETFILTER_DROP)\n",
        ),
        (
            drop_unknown,
            "0xffff8881052b6ee8 1   ~/bin/curl:12345 4026531840 0             eth0:2      0x0800 1500  60    10.0.2.15:43216->1.0.0.1:8080(tcp) kfree_skb_reason (77)\n",
        ),
        (
            sk_drop,
            "0xffff8881052b6ee8 1   ~/bin/curl:12345 4026531840 0             eth0:2      0x0800 1500  60    10.0.2.15:43216->1.0.0.1:8080(tcp) sk_skb_reason_drop(SKB_DROP_REASON_NOT_SPECIFIED)\n",
        ),
        (
            tracepoint,
            "0xffff8881052b6ee8 1   ~/bin/curl:12345 4026531840 0             eth0:2      0x0800 1500  60    10.0.2.15:43216->1.0.0.1:8080(tcp) skb:kfree_skb(SKB_DROP_REASON_NETFILTER_DROP)\n",
        ),
        (
            tc,
            "0xffff8881052b6ee8 1   ~/bin/curl:12345 4026531840 0             eth0:2      0x0800 1500  60    10.0.2.15:43216->1.0.0.1:8080(tcp) nft_do_chain[nf_tables](tc)\n",
        ),
        // The fexit line of a traced tc program: its verdict after the suffix.
        (
            tc_exit,
            "0xffff8881052b6ee8 1   ~/bin/curl:12345 4026531840 0             eth0:2      0x0800 1500  60    10.0.2.15:43216->1.0.0.1:8080(tcp) nft_do_chain[nf_tables](tc)=TC_ACT_SHOT\n",
        ),
        // Non-IP: empty tuple padded to the widest tuple seen so far.
        (
            softirq,
            "0xffff8881052b6ee8 15  <empty>:0        4026531840 a00            lo:1       0x0806 65536 28    :0->:0()                           arp_rcv\n",
        ),
        (
            unknown_func,
            "0xffff8881052b6ee8 1   ~/bin/curl:12345 0          0               0         0x0000 0     0     :0->:0()                           0xffffffff81ffff00\n",
        ),
    ];
    let (mut out, _) = output(table_opts());
    for (ev, want) in table {
        assert_eq!(out.format_event(&ev, &[]).unwrap(), want);
    }
}

#[test]
fn ipv6_with_current_timestamp() {
    let mut ev = event(
        0xffffffff81a03000,
        Some(v6_tuple("fd00::1", "2606:4700:4700::1001", 51234, 8080, 6)),
        meta(1, 0xa00, ETH_P_IPV6, 65536, 80),
    );
    ev.cpu = 0;
    let (mut out, _) = output(OutputOptions {
        timestamp: TimestampMode::Current,
        ..table_opts()
    });
    assert_eq!(
        out.format_event(&ev, &[]).unwrap(),
        "0xffff8881052b6ee8 0   ~/bin/curl:12345 12345678901234   4026531840 a00            lo:1       0x86dd 65536 80    [fd00::1]:51234->[2606:4700:4700::1001]:8080(tcp) ip6_output\n"
    );
}

#[test]
fn tuple_padding_grows_to_the_widest_seen() {
    let short = event(
        0xffffffff81a00000,
        Some(v4_tuple([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, 17, 0)),
        None,
    );
    let long = ipv4_event(0xffffffff81a00000);
    let (mut out, _) = output(OutputOptions {
        tuple: true,
        ..OutputOptions::default()
    });
    let got = lines(&mut out, &[short.clone(), long, short]);
    assert_eq!(
        got[0],
        "0xffff8881052b6ee8 1   ~/bin/curl:12345 1.1.1.1:1->2.2.2.2:2(udp) nf_hook_slow\n"
    );
    assert_eq!(
        got[1],
        "0xffff8881052b6ee8 1   ~/bin/curl:12345 10.0.2.15:43216->1.0.0.1:8080(tcp) nf_hook_slow\n"
    );
    assert_eq!(
        got[2],
        "0xffff8881052b6ee8 1   ~/bin/curl:12345 1.1.1.1:1->2.2.2.2:2(udp)          nf_hook_slow\n"
    );
}

#[test]
fn tcp_flags_caller_stack_and_cb() {
    let mut ev = event(
        0xffffffff81a00000,
        Some(v4_tuple([10, 0, 2, 15], [1, 0, 0, 1], 43216, 8080, 6, 0x12)),
        meta(2, 0, ETH_P_IP, 1500, 60),
    );
    ev.set(Some(CallerAddr(0xffffffff81a04010)));
    ev.set(Some(SkbCb([1, 0xdeadbeef, 0, 0, 0xffffffff])));
    let opts = OutputOptions {
        tcp_flags: true,
        caller: true,
        stack: true,
        cb: true,
        ..table_opts()
    };
    let (mut out, _) = output(opts);
    let frames = [0xffffffff81a00010, 0, 0xffffffff81a04020, 0x10];
    assert_eq!(
        out.format_event(&ev, &frames).unwrap(),
        "0xffff8881052b6ee8 1   ~/bin/curl:12345 4026531840 0             eth0:2      0x0800 1500  60    \
         [0x00000001,0xDEADBEEF,0x00000000,0x00000000,0xFFFFFFFF] \
         10.0.2.15:43216->1.0.0.1:8080(tcp:SYN|ACK) nf_hook_slow __ip_local_out\
         \nnf_hook_slow\n__ip_local_out\n0x10\n"
    );
    // FUNC is padded to the widest function name seen when CALLER is shown.
    let mut drop = ev.clone();
    drop.probe_addr = 0xffffffff81a01000;
    drop.args = Some(NextArgs {
        second: 6,
        third: 0,
    });
    out.format_event(&drop, &[]).unwrap();
    let again = out.format_event(&ev, &[]).unwrap().to_string();
    let width = "kfree_skb_reason(SKB_DROP_REASON_NETFILTER_DROP)".len();
    assert!(
        again.contains(&format!(
            "(tcp:SYN|ACK) {:<width$} __ip_local_out\n",
            "nf_hook_slow"
        )),
        "{again}"
    );
}

#[test]
fn skb_metadata_follows_func_and_caller_in_table_only() {
    let mut ev = event(0xffffffff81a00000, None, None);
    ev.set(Some(CallerAddr(0xffffffff81a04010)));
    ev.set(Some(SkbMetadata([
        0x1234abcd,
        u64::MAX,
        0xffff888000001000,
        0,
    ])));
    let field = |name: &str, kind| FieldPath {
        text: name.to_string(),
        derefs: Vec::new(),
        field: Field {
            offset_bits: 0,
            size_bytes: 8,
            bitfield: None,
        },
        kind,
    };
    let skb_metadata = vec![
        field("skb->hash", ScalarKind::Unsigned),
        field("skb->dev->ifindex", ScalarKind::Signed),
        field("skb->dev", ScalarKind::Pointer),
    ];
    let (mut out, _) = output(OutputOptions {
        caller: true,
        skb_metadata: skb_metadata.clone(),
        ..OutputOptions::default()
    });
    assert_eq!(
        out.format_event(&ev, &[]).unwrap(),
        "0xffff8881052b6ee8 1   ~/bin/curl:12345 nf_hook_slow __ip_local_out \
         skb->hash=305441741 skb->dev->ifindex=-1 skb->dev=0xffff888000001000\n"
    );
    // An event without recorded values prints zeros; JSON leaves them out (as pwru).
    ev.set::<SkbMetadata>(None);
    ev.set::<CallerAddr>(None);
    let (mut out, _) = output(OutputOptions {
        skb_metadata: skb_metadata.clone(),
        ..OutputOptions::default()
    });
    assert!(out
        .format_event(&ev, &[])
        .unwrap()
        .ends_with("nf_hook_slow skb->hash=0 skb->dev->ifindex=0 skb->dev=0x0\n"));
    let (mut out, _) = output(OutputOptions {
        json: true,
        skb_metadata,
        ..OutputOptions::default()
    });
    assert!(!out.format_event(&ev, &[]).unwrap().contains("skb->"));
}

/// `--output-xdp-metadata`: XDP program events print the `xdp->` fields, skb events the
/// `skb->` ones (none when only XDP fields were asked for).
#[test]
fn xdp_metadata_prints_on_xdp_events_only() {
    let field = crate::output::sections::tests::u32_field;
    let opts = |skb: Vec<FieldPath>| OutputOptions {
        skb_metadata: skb,
        xdp_metadata: vec![field("xdp->rxq->queue_index"), field("xdp->frame_sz")],
        ..OutputOptions::default()
    };
    let mut xdp = event(0xffffffff81a00000, None, None);
    xdp.kind = EventKind::Xdp;
    xdp.set(Some(SkbMetadata([3, 4096, 0, 0])));
    let mut skb = event(0xffffffff81a00000, None, None);
    skb.set(Some(SkbMetadata([7, 0, 0, 0])));
    let (mut out, _) = output(opts(Vec::new()));
    let line = out.format_event(&xdp, &[]).unwrap();
    assert!(
        line.ends_with("(xdp) xdp->rxq->queue_index=3 xdp->frame_sz=4096\n"),
        "{line}"
    );
    let line = out.format_event(&skb, &[]).unwrap();
    assert!(line.ends_with("nf_hook_slow\n"), "{line}");
    let (mut out, _) = output(opts(vec![field("skb->hash")]));
    let line = out.format_event(&skb, &[]).unwrap();
    assert!(line.ends_with("nf_hook_slow skb->hash=7\n"), "{line}");
}

#[test]
fn dumps_follow_the_line_and_have_their_json_keys() {
    let mut ev = event(0xffffffff81a00000, None, None);
    set_texts(
        &mut ev,
        Some("(struct sk_buff){\n .len = (unsigned int)60,\n}"),
        Some("(struct skb_shared_info){\n .nr_frags = (__u8)1,\n}\n"),
    );
    let skb_dump = SkbDump::new(Some(1), Some(2), 4096);
    let (mut out, _) = output(OutputOptions {
        stack: true,
        skb_dump,
        ..OutputOptions::default()
    });
    assert_eq!(
        out.format_event(&ev, &[0xffffffff81a04020]).unwrap(),
        "0xffff8881052b6ee8 1   ~/bin/curl:12345 nf_hook_slow\n__ip_local_out\n\
         (struct sk_buff){\n .len = (unsigned int)60,\n}\n\
         (struct skb_shared_info){\n .nr_frags = (__u8)1,\n}\n"
    );
    let (mut out, _) = output(OutputOptions {
        json: true,
        skb_dump,
        ..OutputOptions::default()
    });
    assert_eq!(
        out.format_event(&ev, &[]).unwrap(),
        "{\"skb\":\"0xffff8881052b6ee8\",\
         \"skb_shared_info\":\"(struct skb_shared_info){\\n .nr_frags = (__u8)1,\\n}\\n\",\
         \"cpu\":1,\"process\":\"/usr/bin/curl:12345\",\"func\":\"nf_hook_slow\",\
         \"skb_metadata\":\"(struct sk_buff){\\n .len = (unsigned int)60,\\n}\"}\n"
    );
}

#[test]
fn relative_timestamps_are_per_skb() {
    let (mut out, _) = output(OutputOptions {
        timestamp: TimestampMode::Relative,
        ..OutputOptions::default()
    });
    let (a, b) = (SKB, 0xffff888100000000);
    let mut stamps = Vec::new();
    for (skb, ts) in [(a, 100u64), (b, 120), (a, 250), (b, 125)] {
        let mut ev = event(0xffffffff81a00000, None, None);
        ev.skb_addr = skb;
        ev.ktime_ns = ts;
        let line = out.format_event(&ev, &[]).unwrap().to_string();
        stamps.push(line.split_whitespace().nth(3).unwrap().to_string());
    }
    assert_eq!(stamps, ["0", "0", "150", "5"]);
}

#[test]
fn absolute_timestamp_columns() {
    let (mut out, _) = output(OutputOptions {
        timestamp: TimestampMode::Absolute,
        ..OutputOptions::default()
    });
    let line = out
        .format_event(&event(0xffffffff81a00000, None, None), &[])
        .unwrap()
        .to_string();
    // TIME (23 wide) then the usual columns, then TIMESTAMP.
    assert_eq!(line.as_bytes()[10], b'T', "{line}");
    assert_eq!(
        &line[23..],
        " 0xffff8881052b6ee8 1   ~/bin/curl:12345 12345678901234   nf_hook_slow\n"
    );
}

#[test]
fn json_lines() {
    let mut drop = ipv4_event(0xffffffff81a01000);
    drop.args = Some(NextArgs {
        second: 6,
        third: 0,
    });
    let mut drop_unknown = event(0xffffffff81a01000, None, None);
    drop_unknown.args = Some(NextArgs {
        second: 77,
        third: 0,
    });
    let mut tracepoint = event(7, None, None);
    tracepoint.kind = EventKind::Tracepoint;
    tracepoint.set(Some(DropReason(6)));
    let mut softirq = event(0xffffffff81a05000, None, meta(0, 0, 0x0806, 0, 28));
    softirq.pid = 0;
    softirq.cpu = 0;
    let mut tc_exit = event(0xffffffffc0a01000, None, None).with(Verdict(7));
    tc_exit.kind = EventKind::Tc;
    let v6 = event(
        0xffffffff81a03000,
        Some(v6_tuple("fd00::1", "2606:4700:4700::1001", 51234, 8080, 6)),
        meta(1, 0xa00, ETH_P_IPV6, 65536, 80),
    );
    let table: Vec<(OutputOptions, Event, &str)> = vec![
        (
            table_opts(),
            drop.clone(),
            r#"{"skb":"0xffff8881052b6ee8","cpu":1,"process":"/usr/bin/curl:12345","func":"kfree_skb_reason(SKB_DROP_REASON_NETFILTER_DROP)","drop_reason":"SKB_DROP_REASON_NETFILTER_DROP","netns":4026531840,"iface":"eth0:2","proto":2048,"mtu":1500,"len":60,"tuple":{"saddr":"10.0.2.15","daddr":"1.0.0.1","sport":43216,"dport":8080,"proto":6}}"#,
        ),
        (
            table_opts(),
            softirq,
            r#"{"skb":"0xffff8881052b6ee8","process":"<empty>:0","func":"arp_rcv","netns":4026531840,"iface":"0","proto":2054,"len":28,"tuple":{}}"#,
        ),
        (
            OutputOptions {
                timestamp: TimestampMode::Current,
                tcp_flags: true,
                cb: true,
                ..table_opts()
            },
            v6,
            r#"{"skb":"0xffff8881052b6ee8","cpu":1,"process":"/usr/bin/curl:12345","func":"ip6_output","time":12345678901234,"netns":4026531840,"mark":2560,"iface":"lo:1","proto":34525,"mtu":65536,"len":80,"cb":[0,0,0,0,0],"tuple":{"saddr":"[fd00::1]","daddr":"[2606:4700:4700::1001]","sport":51234,"dport":8080,"proto":6}}"#,
        ),
        (
            OutputOptions {
                timestamp: TimestampMode::Relative,
                ..OutputOptions::default()
            },
            drop.clone(),
            r#"{"skb":"0xffff8881052b6ee8","cpu":1,"process":"/usr/bin/curl:12345","func":"kfree_skb_reason(SKB_DROP_REASON_NETFILTER_DROP)","drop_reason":"SKB_DROP_REASON_NETFILTER_DROP","time":0}"#,
        ),
        // A reason BTF does not name: its number, as FUNC shows it.
        (
            OutputOptions::default(),
            drop_unknown,
            r#"{"skb":"0xffff8881052b6ee8","cpu":1,"process":"/usr/bin/curl:12345","func":"kfree_skb_reason (77)","drop_reason":"77"}"#,
        ),
        // The tracepoint's own reason; `func` stays as the table prints it.
        (
            OutputOptions::default(),
            tracepoint,
            r#"{"skb":"0xffff8881052b6ee8","cpu":1,"process":"/usr/bin/curl:12345","func":"skb:kfree_skb(SKB_DROP_REASON_NETFILTER_DROP)","drop_reason":"SKB_DROP_REASON_NETFILTER_DROP"}"#,
        ),
        // A traced tc program's verdict: in `func` as the table shows it, and on its own.
        (
            OutputOptions::default(),
            tc_exit,
            r#"{"skb":"0xffff8881052b6ee8","cpu":1,"process":"/usr/bin/curl:12345","func":"nft_do_chain[nf_tables](tc)=TC_ACT_REDIRECT","verdict":"TC_ACT_REDIRECT"}"#,
        ),
    ];
    for (opts, ev, want) in table {
        let (mut out, _) = output(OutputOptions { json: true, ..opts });
        assert_eq!(out.format_event(&ev, &[]).unwrap(), format!("{want}\n"));
    }
    // Caller and stack keys.
    let mut ev = drop;
    ev.set(Some(CallerAddr(0xffffffff81a04010)));
    let (mut out, _) = output(OutputOptions {
        json: true,
        caller: true,
        stack: true,
        tcp_flags: true,
        ..table_opts()
    });
    let line = out
        .format_event(&ev, &[0xffffffff81a00001, 0xffffffff81a04001])
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["caller_func"], "__ip_local_out");
    assert_eq!(v["stack"], "\nnf_hook_slow\n__ip_local_out");
    assert_eq!(v["tuple"]["flags"], "SYN");
    let order = [
        "skb",
        "cpu",
        "process",
        "func",
        "caller_func",
        "drop_reason",
        "netns",
        "iface",
        "proto",
        "mtu",
        "len",
        "tuple",
        "stack",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| line.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "key order in {line}"
    );
}

#[test]
fn limit_lines_and_sink_flow() {
    let (mut out, sink) = output(OutputOptions {
        limit_lines: 2,
        ..OutputOptions::default()
    });
    let ev = event(0xffffffff81a00000, None, None);
    assert_eq!(out.event(&ev, None).unwrap(), Flow::Continue);
    assert_eq!(out.event(&ev, None).unwrap(), Flow::Stop);
    assert_eq!(out.event(&ev, None).unwrap(), Flow::Stop);
    assert_eq!(out.printed(), 2);
    assert_eq!(sink.text(), "", "buffered until drained");
    out.drained().unwrap();
    assert_eq!(sink.text().lines().count(), 2);
}

/// `--summary` counts what was printed (up to `--output-limit-lines`) and comes after
/// the events, in the table and as one JSON object.
#[test]
fn summary_follows_the_printed_events() {
    for json in [false, true] {
        let (mut out, sink) = output(OutputOptions {
            limit_lines: 2,
            summary: true,
            json,
            ..OutputOptions::default()
        });
        let mut drop = event(7, None, None);
        drop.set(Some(DropReason(6)));
        for ev in [event(0xffffffff81a00000, None, None), drop.clone(), drop] {
            out.event(&ev, None).unwrap();
        }
        out.finish(KernelCounts {
            lost_events: 3,
            missed: vec![("kprobe_skb_1".into(), 0)],
        })
        .unwrap();
        let text = sink.text();
        let want = if json {
            concat!(
                r#"{"summary":{"packets":1,"events":2,"lost_events":3,"missed_hits":0,"drops":["#,
                r#"{"reason":"SKB_DROP_REASON_NETFILTER_DROP","func":"skb:kfree_skb","count":1}]}}"#,
                "\n"
            )
        } else {
            "\nSummary:\n   DROPS  REASON                          FUNCTION\n       1  SKB_DROP_REASON_NETFILTER_DROP  skb:kfree_skb\n1 packets, 2 events, 1 drops, 3 lost events, 0 missed hits\n"
        };
        assert!(text.ends_with(want), "json={json}: {text}");
        assert_eq!(
            text.lines().count(),
            2 + want.lines().count(),
            "json={json}: {text}"
        );
    }
}

#[test]
fn output_file_is_appended() {
    let dir = std::env::temp_dir().join(format!("pwru-output-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trace.log");
    std::fs::write(&path, "previous\n").unwrap();
    {
        let mut out = Output::new(
            OutputOptions::default(),
            names(),
            OutputTarget::File(path.clone(), RotationPolicy::default()),
        )
        .unwrap();
        out.print_header().unwrap();
        out.print(&event(0xffffffff81a00000, None, None)).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        "previous\nSKB                CPU PROCESS          FUNC\n0xffff8881052b6ee8 1   ~/bin/curl:12345 nf_hook_slow\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let err = Output::new(
        OutputOptions::default(),
        names(),
        OutputTarget::File("/nonexistent/dir/x".into(), RotationPolicy::default()),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("--output-file /nonexistent/dir/x"),
        "{err}"
    );
}

#[test]
fn names_from_this_system() {
    match Names::from_system(true) {
        Ok((names, warnings)) => {
            assert!(names
                .ksyms
                .exact(names.ksyms.addresses_of("ip_rcv")[0])
                .is_some());
            let own = std::os::unix::fs::MetadataExt::ino(
                &std::fs::metadata("/proc/self/ns/net").unwrap(),
            ) as u32;
            assert_eq!(
                names.ifaces.name(own, 1),
                Some("lo"),
                "warnings: {warnings:?}"
            );
        }
        Err(e) => eprintln!("skipped: kallsyms unusable here: {e}"),
    }
}

#[test]
fn netns_name_column_header_table_and_json() {
    const BLUE: u32 = 4026532001;
    let named = |opts: OutputOptions| {
        let mut names = names();
        names.netns.insert(NETNS, "host");
        names.netns.insert(BLUE, "a-rather-long-netns-name");
        Output::new(opts, names, OutputTarget::Writer(Box::new(io::sink()))).unwrap()
    };
    let opts = OutputOptions {
        netns_names: Some(10),
        ..table_opts()
    };
    assert_eq!(
        header_line(&opts),
        "SKB                CPU PROCESS          NETNS      MARK/x        IFACE       PROTO  MTU   LEN   NETNS NAME TUPLE FUNC\n"
    );
    assert_eq!(
        header_line(&OutputOptions {
            netns_names: Some(16),
            ..OutputOptions::default()
        }),
        "SKB                CPU PROCESS          NETNS NAME       FUNC\n"
    );
    let mut in_blue = ipv4_event(0xffffffff81a00000);
    in_blue.set(Some(SkbMeta {
        netns: BLUE,
        ..in_blue.get::<SkbMeta>().unwrap()
    }));
    let mut unnamed = ipv4_event(0xffffffff81a00000);
    unnamed.set(Some(SkbMeta {
        netns: 7,
        ..unnamed.get::<SkbMeta>().unwrap()
    }));
    let mut out = named(opts.clone());
    assert_eq!(
        lines(&mut out, &[ipv4_event(0xffffffff81a00000), in_blue.clone(), unnamed.clone()]),
        [
            "0xffff8881052b6ee8 1   ~/bin/curl:12345 4026531840 0             eth0:2      0x0800 1500  60    host       10.0.2.15:43216->1.0.0.1:8080(tcp) nf_hook_slow\n",
            "0xffff8881052b6ee8 1   ~/bin/curl:12345 4026532001 0               2         0x0800 1500  60    ~etns-name 10.0.2.15:43216->1.0.0.1:8080(tcp) nf_hook_slow\n",
            "0xffff8881052b6ee8 1   ~/bin/curl:12345 7          0               2         0x0800 1500  60               10.0.2.15:43216->1.0.0.1:8080(tcp) nf_hook_slow\n",
        ]
    );
    // Without the meta columns the name still shows (its netns comes from meta collection).
    let mut out = named(OutputOptions {
        netns_names: Some(10),
        ..OutputOptions::default()
    });
    assert_eq!(
        lines(&mut out, &[in_blue.clone()]),
        ["0xffff8881052b6ee8 1   ~/bin/curl:12345 ~etns-name nf_hook_slow\n"]
    );
    // JSON: full name under netns_name, right after netns; omitted when unnamed or off.
    let mut out = named(OutputOptions { json: true, ..opts });
    let json = lines(&mut out, &[in_blue.clone(), unnamed]);
    assert!(
        json[0]
            .contains(r#""netns":4026532001,"netns_name":"a-rather-long-netns-name","iface":"2""#),
        "{}",
        json[0]
    );
    assert!(!json[1].contains("netns_name"), "{}", json[1]);
    let mut out = named(OutputOptions {
        json: true,
        ..table_opts()
    });
    assert!(!lines(&mut out, &[in_blue])[0].contains("netns_name"));
}

#[test]
fn output_file_rotates_without_losing_or_splitting_lines() {
    let dir = std::env::temp_dir().join(format!("pwru-output-rotate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trace.log");
    let policy = RotationPolicy {
        max_size: 1000,
        ..RotationPolicy::default()
    };
    let mut want = String::new();
    {
        let mut out = Output::new(
            table_opts(),
            names(),
            OutputTarget::File(path.clone(), policy),
        )
        .unwrap();
        out.print_header().unwrap();
        want.push_str(&header_line(&table_opts()));
        for i in 0..200u64 {
            let mut ev = ipv4_event(0xffffffff81a00000);
            ev.skb_addr = SKB + i;
            want.push_str(&out.format_event(&ev, &[]).unwrap());
            out.print(&ev).unwrap();
            if i % 50 == 0 {
                out.flush().unwrap();
            }
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    // Backups (`trace-<time>.log`) sort in rotation order; the current file comes last.
    files.sort_by_key(|p| (p == &path, p.clone()));
    assert!(files.len() > 20, "{files:?}");
    let mut got = String::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.len() <= 1000 && text.ends_with('\n'),
            "{}",
            file.display()
        );
        got.push_str(&text);
    }
    assert_eq!(got, want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn process_named_by_recorded_comm_and_whole_in_json() {
    // A process that exited before its line: the name the probe recorded.
    let mut gone = event(0xffffffff81a00000, None, None);
    gone.pid = 4194303;
    gone.tid = 4194303;
    gone.set_comm("ping");
    // A long executable path: cut in the table, whole in JSON.
    let mut long = event(0xffffffff81a00000, None, None);
    long.pid = 4242;
    long.tid = 4242;
    long.set_comm("systemd-resolve");
    let (mut table, _) = output(OutputOptions::default());
    table.names_mut().processes.insert(
        4242,
        long.comm(),
        Some("/usr/lib/systemd/systemd-resolved"),
    );
    assert_eq!(
        table.format_event(&gone, &[]).unwrap(),
        "0xffff8881052b6ee8 1   ping:4194303     nf_hook_slow\n"
    );
    assert_eq!(
        table.format_event(&long, &[]).unwrap(),
        "0xffff8881052b6ee8 1   ~d-resolved:4242 nf_hook_slow\n"
    );
    let (mut json, _) = output(OutputOptions {
        json: true,
        ..OutputOptions::default()
    });
    json.names_mut()
        .processes
        .insert(4242, long.comm(), Some("/usr/lib/systemd/systemd-resolved"));
    assert_eq!(
        json.format_event(&gone, &[]).unwrap(),
        r#"{"skb":"0xffff8881052b6ee8","cpu":1,"process":"ping:4194303","func":"nf_hook_slow"}"#
            .to_owned()
            + "\n"
    );
    assert_eq!(
        json.format_event(&long, &[]).unwrap(),
        r#"{"skb":"0xffff8881052b6ee8","cpu":1,"process":"/usr/lib/systemd/systemd-resolved:4242","func":"nf_hook_slow"}"#
            .to_owned()
            + "\n"
    );
}

#[test]
fn pcap_output_goes_along_with_the_table_and_json() {
    use super::sections::pcap::{set_packet_bytes, PacketBytes};
    use crate::capture::{parse, LinkType};
    for json in [false, true] {
        let opts = OutputOptions {
            json,
            limit_lines: 2,
            pcap_snaplen: Some(64),
            ..table_opts()
        };
        let (mut out, sink) = output(opts.clone());
        let pcap_sink = Shared::default();
        out.set_pcap(PcapOutput::new(Box::new(pcap_sink.clone()), &opts, 0).unwrap());
        let at = Sections::new(&opts).variable_at().unwrap();
        let frame: Vec<u8> = (0..60).collect();
        let mut drop = event(7, None, meta(2, 0, ETH_P_IP, 1500, 60));
        drop.set(Some(DropReason(6)));
        let mut events = vec![ipv4_event(0xffffffff81a00000), drop];
        for ev in &mut events {
            let bytes = PacketBytes {
                link_type: LinkType::ETHERNET,
                wire_len: 60,
                data: &frame,
            };
            set_packet_bytes(ev, at, Some(bytes));
        }
        // The third is past --output-limit-lines: in neither output.
        events.push(events[0].clone());
        for ev in &events {
            out.event(ev, None).unwrap();
        }
        out.finish(KernelCounts::default()).unwrap();
        let text = sink.text();
        let lines = text
            .lines()
            .filter(|l| l.contains("0xffff8881052b6ee8"))
            .count();
        assert_eq!(lines, 2, "json={json}: {text}");
        let bytes = pcap_sink.0.lock().unwrap().clone();
        let cap = parse(&bytes).unwrap();
        assert_eq!(cap.frames.len(), 2, "json={json}");
        assert!(cap.frames.iter().all(|f| f.data == frame));
        assert_eq!(cap.interfaces.len(), 1);
        assert_eq!(cap.interfaces[0].name, Some("eth0:2"));
        let comments: Vec<_> = cap.frames.iter().map(|f| f.comment.unwrap()).collect();
        assert!(
            comments[0].starts_with(
                "nf_hook_slow skb=0xffff8881052b6ee8 cpu=1 process=/usr/bin/curl:12345"
            ),
            "{comments:?}"
        );
        assert!(
            comments[1].starts_with("skb:kfree_skb(SKB_DROP_REASON_NETFILTER_DROP) skb="),
            "{comments:?}"
        );
    }
}

/// kprobe-multi links made by ftrace location: an event carries the function's entry,
/// which is its location or a few bytes before it (x86 IBT's `endbr64`); both name the
/// function and find its drop reason. Other events' addresses are left alone.
#[test]
fn kprobe_multi_events_by_location_are_named_from_their_entry() {
    let mut names = names();
    names.ksyms = Ksyms::default();
    names.probe_names.insert(1, "ip_rcv".into());
    names.probe_names.insert(2, "kfree_skb_reason".into());
    names.probe_names.insert(3, "veth_xmit[veth]".into());
    names.drop_reason_args.insert("kfree_skb_reason".into(), 2);
    names.multi_locations = vec![
        (0xffff_ffff_8100_1004, 2),
        (0xffff_ffff_8100_2000, 1),
        (0xffff_ffff_c000_0004, 3),
    ];
    let ev = |kind, probe_addr| Event {
        kind,
        probe_addr,
        args: Some(NextArgs {
            second: 6,
            third: 0,
        }),
        ..Event::default()
    };
    let table = [
        (0xffff_ffff_8100_1000, Some("kfree_skb_reason")),
        (0xffff_ffff_8100_1004, Some("kfree_skb_reason")),
        (0xffff_ffff_8100_2000, Some("ip_rcv")),
        (0xffff_ffff_8100_1ffc, Some("ip_rcv")),
        (0xffff_ffff_c000_0000, Some("veth_xmit[veth]")),
        (0xffff_ffff_c000_0008, None),
    ];
    for (entry, want) in table {
        let e = ev(EventKind::KprobeMulti, entry);
        assert_eq!(names.probe_key(&e), want, "{entry:#x}");
        let other = ev(EventKind::Kprobe, entry);
        assert_eq!(names.probe_id(&other), entry, "not a kprobe-multi event");
    }
    let e = ev(EventKind::KprobeMulti, 0xffff_ffff_8100_1000);
    assert_eq!(names.drop_reason(&e, names.probe_key(&e).unwrap()), Some(6));
    let mut out = Output::new(
        OutputOptions::default(),
        names,
        OutputTarget::Writer(Box::new(io::sink())),
    )
    .unwrap();
    let line = out.format_event(&e, &[]).unwrap();
    assert!(
        line.contains("kfree_skb_reason(SKB_DROP_REASON_NETFILTER_DROP)"),
        "{line}"
    );
}
