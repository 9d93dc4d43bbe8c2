//! Capture reader tests: files written by tcpdump 4.99 on loopback (tests/data), hand-built
//! pcap-ng in both byte orders, every error path, and random bytes (never a panic).

use super::pcap::testutil::write as write_pcap;
use super::*;
use proptest::prelude::*;

const LO_UDP: &[u8] = include_bytes!("../../tests/data/lo_udp.pcap");
const LO_UDP_NANOS: &[u8] = include_bytes!("../../tests/data/lo_udp_nanos.pcap");
const ANY_UDP_SLL2: &[u8] = include_bytes!("../../tests/data/any_udp_sll2.pcap");

#[test]
fn tcpdump_microsecond_capture() {
    let cap = parse(LO_UDP).unwrap();
    assert_eq!(
        cap.format,
        Format::Pcap {
            big_endian: false,
            nanos: false
        }
    );
    let ts: Vec<u64> = cap.frames.iter().map(|f| f.timestamp_ns).collect();
    assert_eq!(
        ts,
        [
            1_795_307_420_219_325_000,
            1_795_307_420_319_528_000,
            1_795_307_420_419_816_000
        ]
    );
    for f in &cap.frames {
        assert_eq!(f.link_type, LinkType::ETHERNET);
        assert_eq!(f.orig_len as usize, f.data.len());
        assert_eq!(f.interface, 0);
    }
    assert_eq!(cap.frames[0].data[12..14], [0x08, 0x00]);
    assert!(cap.frames[0].data.ends_with(b"pwru-0"));
    assert_eq!(cap.frames[2].data[12..14], [0x86, 0xdd]);
    assert!(cap.frames[2].data.ends_with(b"pwru-v6"));
}

#[test]
fn tcpdump_nanosecond_capture() {
    let cap = parse(LO_UDP_NANOS).unwrap();
    assert_eq!(
        cap.format,
        Format::Pcap {
            big_endian: false,
            nanos: true
        }
    );
    let ts: Vec<u64> = cap.frames.iter().map(|f| f.timestamp_ns).collect();
    assert_eq!(ts, [1_795_307_427_415_568_205, 1_795_307_427_516_491_667]);
    assert!(cap.frames[1].data.ends_with(b"pwru-ns-1"));
}

#[test]
fn tcpdump_any_interface_is_linux_sll2() {
    let cap = parse(ANY_UDP_SLL2).unwrap();
    assert_eq!(cap.frames.len(), 3);
    assert!(cap
        .frames
        .iter()
        .all(|f| f.link_type == LinkType::LINUX_SLL2));
    assert!(cap.frames[0].data.ends_with(b"pwru-0"));
}

/// The same file with every header field stored big-endian.
fn to_big_endian(le: &[u8]) -> Vec<u8> {
    let mut out = le.to_vec();
    let swap = |b: &mut [u8]| b.reverse();
    swap(&mut out[0..4]);
    swap(&mut out[4..6]);
    swap(&mut out[6..8]);
    for r in (8..24).step_by(4) {
        swap(&mut out[r..r + 4]);
    }
    let mut pos = 24;
    while pos < out.len() {
        let caplen = u32::from_le_bytes(out[pos + 8..pos + 12].try_into().unwrap()) as usize;
        for r in (pos..pos + 16).step_by(4) {
            swap(&mut out[r..r + 4]);
        }
        pos += 16 + caplen;
    }
    out
}

#[test]
fn big_endian_classic_pcap_reads_the_same_frames() {
    let be = to_big_endian(LO_UDP);
    let cap = parse(&be).unwrap();
    assert_eq!(
        cap.format,
        Format::Pcap {
            big_endian: true,
            nanos: false
        }
    );
    assert_eq!(cap.frames, parse(LO_UDP).unwrap().frames);
}

#[test]
fn written_pcap_round_trips_with_raw_link_types() {
    let pkt: &[u8] = &[
        0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
    ];
    for link in [LinkType::RAW, LinkType::RAW_BSD, LinkType::RAW_OPENBSD] {
        for nanos in [false, true] {
            let file = write_pcap(link, nanos, &[(1_500_000_123_456_789, pkt), (7, &[])]);
            let cap = parse(&file).unwrap();
            assert_eq!(cap.frames.len(), 2);
            assert!(cap.frames[0].link_type.is_raw_ip());
            assert_eq!(cap.frames[0].data, pkt);
            let want = if nanos {
                1_500_000_123_456_789
            } else {
                1_500_000_123_456_000
            };
            assert_eq!(cap.frames[0].timestamp_ns, want);
            assert!(cap.frames[1].data.is_empty());
        }
    }
    assert!(!LinkType::ETHERNET.is_raw_ip());
}

/// Builds pcap-ng blocks in a chosen byte order.
struct NgWriter {
    big: bool,
    out: Vec<u8>,
}

impl NgWriter {
    fn u16(&self, v: u16) -> [u8; 2] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn block(&mut self, block_type: u32, body: &[u8]) {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = body.len() as u32 + 12;
        let (t, l) = (self.u32(block_type), self.u32(len));
        self.out.extend_from_slice(&t);
        self.out.extend_from_slice(&l);
        self.out.extend_from_slice(&body);
        self.out.extend_from_slice(&l);
    }
    fn shb(&mut self) {
        let mut b = self.u32(pcapng::BYTE_ORDER_MAGIC).to_vec();
        b.extend_from_slice(&self.u16(1));
        b.extend_from_slice(&self.u16(0));
        b.extend_from_slice(&(-1i64).to_le_bytes());
        self.block(pcapng::SHB_TYPE, &b);
    }
    fn idb(&mut self, link: u16, snaplen: u32, tsresol: Option<u8>) {
        let mut b = self.u16(link).to_vec();
        b.extend_from_slice(&self.u16(0));
        b.extend_from_slice(&self.u32(snaplen));
        if let Some(r) = tsresol {
            b.extend_from_slice(&self.u16(9));
            b.extend_from_slice(&self.u16(1));
            b.extend_from_slice(&[r, 0, 0, 0]);
            b.extend_from_slice(&self.u16(0));
            b.extend_from_slice(&self.u16(0));
        }
        self.block(pcapng::IDB_TYPE, &b);
    }
    fn epb(&mut self, iface: u32, ticks: u64, data: &[u8], orig: u32) {
        let mut b = self.u32(iface).to_vec();
        b.extend_from_slice(&self.u32((ticks >> 32) as u32));
        b.extend_from_slice(&self.u32(ticks as u32));
        b.extend_from_slice(&self.u32(data.len() as u32));
        b.extend_from_slice(&self.u32(orig));
        b.extend_from_slice(data);
        self.block(pcapng::EPB_TYPE, &b);
    }
    fn spb(&mut self, data: &[u8]) {
        let mut b = self.u32(data.len() as u32).to_vec();
        b.extend_from_slice(data);
        self.block(pcapng::SPB_TYPE, &b);
    }
}

fn sample_ng(big: bool) -> Vec<u8> {
    let mut w = NgWriter {
        big,
        out: Vec::new(),
    };
    w.shb();
    w.idb(1, 0, None); // Ethernet, microseconds
    w.idb(101, 0, Some(9)); // raw IP, nanoseconds
    w.idb(113, 4, Some(0x80 | 10)); // cooked, 1/1024 s, snaplen 4
    w.epb(0, 1_000_001, b"ether-frame", 60);
    w.block(0x0000_0bad, b"custom block, skipped");
    w.epb(1, 5_000_000_007, b"ip-packet", 9);
    w.epb(2, 2048, b"sll", 3);
    w.spb(b"simple");
    w.out
}

#[test]
fn pcapng_in_both_byte_orders() {
    for big in [false, true] {
        let file = sample_ng(big);
        let cap = parse(&file).unwrap();
        assert_eq!(cap.format, Format::PcapNg);
        let got: Vec<(u32, u32, u64, u32, &[u8])> = cap
            .frames
            .iter()
            .map(|f| {
                (
                    f.link_type.0,
                    f.interface,
                    f.timestamp_ns,
                    f.orig_len,
                    f.data,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 0, 1_000_001_000, 60, &b"ether-frame"[..]),
                (101, 1, 5_000_000_007, 9, &b"ip-packet"[..]),
                (113, 2, 2_000_000_000, 3, &b"sll"[..]),
                (1, 0, 0, 6, &b"simple"[..]),
            ],
            "big endian: {big}"
        );
    }
}

#[test]
fn pcapng_sections_renumber_interfaces_and_may_switch_byte_order() {
    let mut file = sample_ng(false);
    let mut w = NgWriter {
        big: true,
        out: Vec::new(),
    };
    w.shb();
    w.idb(228, 0, None);
    w.epb(0, 3, b"v4", 2);
    file.extend_from_slice(&w.out);
    let cap = parse(&file).unwrap();
    let last = cap.frames.last().unwrap();
    assert_eq!(
        (last.link_type, last.interface, last.timestamp_ns),
        (LinkType::IPV4, 0, 3000)
    );
    assert_eq!(cap.frames.len(), 5);
}

#[test]
fn spb_is_cut_at_snaplen() {
    let mut w = NgWriter {
        big: false,
        out: Vec::new(),
    };
    w.shb();
    w.idb(1, 4, None);
    w.spb(b"abcdefgh");
    let cap = parse(&w.out).unwrap();
    assert_eq!(cap.frames[0].data, b"abcd");
    assert_eq!(cap.frames[0].orig_len, 8);
}

fn err_of(bytes: &[u8]) -> CaptureError {
    parse(bytes).expect_err("must be rejected")
}

#[test]
fn classic_pcap_errors() {
    assert!(matches!(err_of(b""), CaptureError::BadMagic(_)));
    assert!(matches!(err_of(b"GIF89a...."), CaptureError::BadMagic(_)));
    assert!(matches!(
        err_of(&LO_UDP[..10]),
        CaptureError::Truncated { offset: 0, .. }
    ));
    assert!(matches!(
        err_of(&LO_UDP[..30]),
        CaptureError::Truncated {
            what: "pcap record header",
            offset: 24
        }
    ));
    assert!(matches!(
        err_of(&LO_UDP[..LO_UDP.len() - 1]),
        CaptureError::Truncated {
            what: "pcap record data",
            ..
        }
    ));
    let mut v3 = LO_UDP.to_vec();
    v3[4] = 3;
    assert!(matches!(
        err_of(&v3),
        CaptureError::UnsupportedVersion {
            format: "pcap",
            major: 3,
            ..
        }
    ));
    let e = err_of(&LO_UDP[..30]).to_string();
    assert_eq!(e, "truncated pcap record header at byte 24");
}

#[test]
fn pcapng_errors() {
    let good = sample_ng(false);
    // Not starting with a section header.
    let mut w = NgWriter {
        big: false,
        out: Vec::new(),
    };
    w.idb(1, 0, None);
    assert!(matches!(err_of(&w.out), CaptureError::BadMagic(_)));
    // Bad byte-order magic.
    let mut bad_bom = good.clone();
    bad_bom[8..12].copy_from_slice(&[1, 2, 3, 4]);
    assert!(matches!(
        err_of(&bad_bom),
        CaptureError::BadByteOrder { offset: 8, .. }
    ));
    // Version 2.
    let mut v2 = good.clone();
    v2[12] = 2;
    assert!(matches!(
        err_of(&v2),
        CaptureError::UnsupportedVersion {
            format: "pcap-ng",
            major: 2,
            ..
        }
    ));
    // Block length not a multiple of 4, and too small.
    let shb_len = 28;
    let mut odd = good.clone();
    odd[shb_len + 4] = 13;
    assert!(matches!(
        err_of(&odd),
        CaptureError::BadBlockLength { len: 13, .. }
    ));
    let mut tiny = good.clone();
    tiny[shb_len + 4..shb_len + 8].copy_from_slice(&8u32.to_le_bytes());
    assert!(matches!(
        err_of(&tiny),
        CaptureError::BadBlockLength { len: 8, .. }
    ));
    // Trailer differs.
    let mut trailer = good.clone();
    trailer[shb_len - 4] = 32;
    assert!(matches!(
        err_of(&trailer),
        CaptureError::BlockLengthMismatch {
            len: 28,
            trailer: 32,
            offset: 0
        }
    ));
    // Cut anywhere inside a block.
    assert!(matches!(
        err_of(&good[..good.len() - 2]),
        CaptureError::Truncated { .. }
    ));
    // Packet on an interface that was never described.
    let mut w = NgWriter {
        big: false,
        out: Vec::new(),
    };
    w.shb();
    w.idb(1, 0, None);
    w.epb(3, 0, b"x", 1);
    assert!(matches!(
        err_of(&w.out),
        CaptureError::UnknownInterface { interface: 3, .. }
    ));
    let mut w = NgWriter {
        big: false,
        out: Vec::new(),
    };
    w.shb();
    w.spb(b"no interface");
    assert!(matches!(
        err_of(&w.out),
        CaptureError::UnknownInterface { interface: 0, .. }
    ));
    // Captured length larger than the block.
    let mut w = NgWriter {
        big: false,
        out: Vec::new(),
    };
    w.shb();
    w.idb(1, 0, None);
    w.epb(0, 0, b"four", 4);
    let caplen_at = w.out.len() - 16; // before trailer, data and orig_len
    w.out[caplen_at..caplen_at + 4].copy_from_slice(&100u32.to_le_bytes());
    assert!(matches!(
        err_of(&w.out),
        CaptureError::BadCapturedLength { caplen: 100, .. }
    ));
    // Timestamp resolution 2^-127 cannot be represented.
    let mut w = NgWriter {
        big: false,
        out: Vec::new(),
    };
    w.shb();
    w.idb(1, 0, Some(0xff));
    assert!(matches!(
        err_of(&w.out),
        CaptureError::BadTimestampResolution { value: 0xff, .. }
    ));
}

#[test]
fn read_file_reports_the_path() {
    let err = read_file(std::path::Path::new("/nonexistent/x.pcap")).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("cannot read /nonexistent/x.pcap"));
    let bytes = read_file(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/lo_udp.pcap"
    )))
    .unwrap();
    assert_eq!(parse(&bytes).unwrap().frames.len(), 3);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random bytes: a result or an error, never a panic.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse(&bytes);
    }

    /// Valid files with one byte changed or cut short: a result or an error, never a panic.
    #[test]
    fn mutated_files_never_panic(which in 0usize..4, pos in any::<prop::sample::Index>(),
                                 byte in any::<u8>(), cut in any::<bool>()) {
        let mut file = match which {
            0 => LO_UDP.to_vec(),
            1 => ANY_UDP_SLL2.to_vec(),
            2 => sample_ng(false),
            _ => sample_ng(true),
        };
        let i = pos.index(file.len());
        if cut {
            file.truncate(i);
        } else {
            file[i] = byte;
        }
        let _ = parse(&file);
    }
}
