//! The registry as a whole: what turns each section on, that the probe gets the recording
//! ones in registry order, and that their flag bits and record areas do not collide.

use super::*;
use crate::btf::{Field, FieldPath, ScalarKind};

/// A 4-byte unsigned field at offset 0 named `text`, for metadata options in tests.
pub(crate) fn u32_field(text: &str) -> FieldPath {
    FieldPath {
        text: text.into(),
        derefs: Vec::new(),
        field: Field {
            offset_bits: 0,
            size_bytes: 4,
            bitfield: None,
        },
        kind: ScalarKind::Unsigned,
    }
}

fn everything() -> OutputOptions {
    let path = u32_field("skb->len");
    OutputOptions {
        meta: true,
        tuple: true,
        tcp_flags: true,
        tunnel: true,
        caller: true,
        stack: true,
        cb: true,
        netns_names: Some(16),
        skb_metadata: vec![path],
        skb_dump: skb_dump::SkbDump::new(Some(1), Some(2), 4096),
        journey: true,
        clone_parents: true,
        pcap_snaplen: Some(256),
        bpfmap: Some(bpfmap::BpfMapFields {
            id: 48,
            name: 96,
            key_size: 28,
            value_size: 32,
            htab_elem_key: Some(48),
        }),
        ..OutputOptions::default()
    }
}

fn names(sections: &Sections) -> Vec<String> {
    sections
        .iter()
        .map(|s| {
            let debug = format!("{s:?}");
            debug
                .split([' ', '{'])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[test]
fn every_section_turns_on_and_records_in_registry_order() {
    let all = Sections::new(&everything());
    assert_eq!(all.iter().count(), REGISTRY.len(), "{:?}", names(&all));
    assert_eq!(
        names(&all),
        [
            "CallerSection",
            "DropReasonSection",
            "VerdictSection",
            "MetaSection",
            "SkbCbSection",
            "NetnsNameSection",
            "StackSection",
            "SkbMetadataSection",
            "TupleSection",
            "SkbDumpSection",
            "TunnelSection",
            "CloneParentSection",
            "BpfMapSection",
            "PcapSection",
        ]
    );
    let record: Vec<String> = all.record().iter().map(|s| format!("{s:?}")).collect();
    assert_eq!(record.len(), 11, "{record:?}: not the print-only ones");
    let tunnel = all.iter().nth(10).unwrap().tail_bytes();
    let clone_parent = all.iter().nth(11).unwrap().tail_bytes();
    let bpfmap = all.iter().nth(12).unwrap().tail_bytes();
    assert_eq!(
        all.variable_at(),
        Some(EVENT_SIZE + 2 * 4096 + tunnel + clone_parent + bpfmap),
        "the packet bytes end the record"
    );
    assert_eq!(
        all.maps().len(),
        3,
        "the stack map, the clone parents, the lookup stash"
    );
    let dump = all.iter().nth(9).unwrap();
    assert_eq!(dump.tail_bytes(), 2 * 4096);
    let lines = all.table_at(TableAt::Lines);
    assert_eq!(lines.len(), 4, "stack, dump, tunnel, bpfmap");
    assert_eq!(
        lines[1].tail_at, EVENT_SIZE,
        "the first area after the fixed record"
    );
    assert_eq!(
        lines[2].tail_at,
        EVENT_SIZE + 2 * 4096,
        "the tunnel's bytes follow the dumps'"
    );
    // an output mode finds a section's bytes by its type
    assert_eq!(
        all.tail_at_of::<tunnel::TunnelSection>(),
        Some(lines[2].tail_at)
    );
    assert!(
        all.tail_at_of::<clone_parent::CloneParentSection>()
            .unwrap()
            > lines[2].tail_at
    );
    assert_eq!(
        Sections::new(&OutputOptions::default()).tail_at_of::<tunnel::TunnelSection>(),
        None
    );
}

#[test]
fn a_clone_parent_round_trips_through_the_record() {
    let all = Sections::new(&everything());
    let at = all
        .tail_at_of::<clone_parent::CloneParentSection>()
        .unwrap();
    let mut ev = crate::events::Event::default();
    clone_parent::set_parent(&mut ev, at, Some(0xffff_8881_0000_1000));
    assert_eq!(clone_parent::parent(&ev, at), Some(0xffff_8881_0000_1000));
    clone_parent::set_parent(&mut ev, at, None);
    assert_eq!(clone_parent::parent(&ev, at), None);
}

#[test]
fn pcap_output_records_the_meta_without_printing_it() {
    let pcap = Sections::new(&OutputOptions {
        pcap_snaplen: Some(64),
        ..OutputOptions::default()
    });
    assert_eq!(
        names(&pcap),
        [
            "DropReasonSection",
            "VerdictSection",
            "MetaSection",
            "PcapSection"
        ]
    );
    assert_eq!(pcap.record().len(), 2);
    assert!(pcap.table_at(TableAt::Columns).is_empty());
    assert!(pcap.json_at(JsonAt::Netns).is_empty());
    assert_eq!(pcap.variable_at(), Some(EVENT_SIZE));
    assert_eq!(Sections::new(&OutputOptions::default()).variable_at(), None);
}

#[test]
fn defaults_print_the_drop_reason_and_verdict_only() {
    let none = Sections::new(&OutputOptions::default());
    assert_eq!(names(&none), ["DropReasonSection", "VerdictSection"]);
    assert!(none.record().is_empty(), "nothing for the probe to record");
    assert!(none.maps().is_empty());
    // The NETNS NAME column needs the meta record, not its columns.
    let named = Sections::new(&OutputOptions {
        netns_names: Some(16),
        ..OutputOptions::default()
    });
    assert_eq!(
        names(&named),
        [
            "DropReasonSection",
            "VerdictSection",
            "MetaSection",
            "NetnsNameSection"
        ]
    );
    assert_eq!(named.record().len(), 1);
    let meta = named.iter().nth(2).unwrap();
    assert!(meta.table_at().is_empty() && meta.json_at().is_empty());
}

#[test]
fn parts_use_distinct_flag_bits_inside_the_fixed_record() {
    use crate::events::RecordPart;
    use crate::probes::event::{FLAGS_ALL, FLAG_ARGS, FLAG_SHINFO_DUMP, FLAG_SKB_DUMP};
    let flags = [
        caller::CallerAddr::FLAG,
        drop_reason::DropReason::FLAG,
        verdict::Verdict::FLAG,
        meta::SkbMeta::FLAG,
        skb_cb::SkbCb::FLAG,
        stack::StackId::FLAG,
        skb_metadata::SkbMetadata::FLAG,
        tuple::Tuple::FLAG,
        FLAG_SKB_DUMP,
        FLAG_SHINFO_DUMP,
        FLAG_ARGS,
    ];
    let mut seen = 0u16;
    for f in flags {
        assert_eq!(f.count_ones(), 1, "{f:#x}");
        assert_eq!(seen & f, 0, "{f:#x} used twice");
        seen |= f;
    }
    assert_eq!(seen, FLAGS_ALL);
}

#[test]
fn parts_round_trip_through_the_record() {
    use crate::events::{decode, ETH_P_IP};
    let mut t = Tuple {
        l3_proto: ETH_P_IP,
        sport: 43216,
        dport: 8080,
        l4_proto: 6,
        tcp_flags: 0x12,
        ..Tuple::default()
    };
    t.saddr[..4].copy_from_slice(&[10, 0, 2, 15]);
    let m = SkbMeta {
        netns: 4026531840,
        mark: 0xa00,
        ifindex: 2,
        len: 60,
        mtu: 1500,
        protocol: ETH_P_IP,
        pkt_type: 4,
    };
    let ev = Event::default()
        .with(t)
        .with(m)
        .with(caller::CallerAddr(0xffff_ffff_8100_0040))
        .with(stack::StackId(-14))
        .with(skb_cb::SkbCb([1, 2, 3, 4, 5]))
        .with(skb_metadata::SkbMetadata([1, u64::MAX, 0, 7]))
        .with(drop_reason::DropReason(6));
    let bytes = ev.encode();
    // Network-order fields are stored as packet bytes.
    use crate::probes::event::off;
    assert_eq!(&bytes[off::PROTOCOL..off::PROTOCOL + 2], &[0x08, 0x00]);
    assert_eq!(&bytes[off::DPORT..off::DPORT + 2], &[0x1f, 0x90]);
    let back = decode(&bytes).unwrap();
    assert_eq!(back, ev);
    assert_eq!(back.get::<Tuple>(), Some(t));
    assert_eq!(back.get::<SkbMeta>(), Some(m));
    assert_eq!(back.get::<stack::StackId>(), Some(stack::StackId(-14)));
    assert_eq!(
        back.get::<Tuple>().unwrap().src_ip(),
        Some("10.0.2.15".parse().unwrap())
    );
}
