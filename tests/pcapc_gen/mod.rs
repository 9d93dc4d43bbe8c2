//! Shared generators for the pcapc tests: pcap-filter ASTs (proptest strategies) and
//! structured packets (Ethernet and Linux cooked headers, VLAN, MPLS, PPPoE, LLC/SNAP
//! with STP, IPX, NetBEUI and OSI/IS-IS, DECnet, AppleTalk, DEC LAT/SCA/MOP, ARP,
//! IPv4/IPv6 with options, extension headers and fragments, TCP/UDP/SCTP/ICMP, Geneve
//! with options and inner frames, truncation with a longer wire length, garbage).
#![allow(dead_code)]

use proptest::prelude::*;
use pwru::pcapc::ast::*;
use pwru::pcapc::compile::LinkType;

pub const ADDRS4: [u32; 3] = [0x0a00_0001, 0x0a00_0002, 0xc0a8_0101];
pub const ADDRS6: [[u8; 16]; 2] = [
    [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
];
pub const MACS: [[u8; 6]; 2] = [[0, 1, 2, 3, 4, 5], [0xff; 6]];
pub const PORTS: [u16; 3] = [53, 80, 443];

pub fn dir() -> impl Strategy<Value = Dir> {
    prop_oneof![
        Just(Dir::Src),
        Just(Dir::Dst),
        Just(Dir::SrcOrDst),
        Just(Dir::SrcAndDst)
    ]
}

pub fn load_proto() -> impl Strategy<Value = Proto> {
    prop_oneof![
        Just(Proto::Ether),
        Just(Proto::Ip),
        Just(Proto::Ip6),
        Just(Proto::Arp),
        Just(Proto::Tcp),
        Just(Proto::Udp),
        Just(Proto::Icmp),
        Just(Proto::Icmp6),
        Just(Proto::Sctp),
        Just(Proto::Igmp),
        Just(Proto::Decnet),
        Just(Proto::Atalk),
    ]
}

pub fn arith() -> impl Strategy<Value = Arith> {
    let leaf = prop_oneof![
        3 => (0u32..64).prop_map(Arith::Num),
        1 => Just(Arith::Len),
        4 => (load_proto(), 0u32..48, prop_oneof![Just(1u8), Just(2), Just(4)]).prop_map(|(p, o, s)| Arith::Load {
            proto: p,
            offset: Box::new(Arith::Num(o)),
            size: s
        }),
    ];
    leaf.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            (
                prop_oneof![
                    Just(ArithOp::Add),
                    Just(ArithOp::Sub),
                    Just(ArithOp::Mul),
                    Just(ArithOp::Div),
                    Just(ArithOp::Mod),
                    Just(ArithOp::And),
                    Just(ArithOp::Or),
                    Just(ArithOp::Xor),
                    Just(ArithOp::Lsh),
                    Just(ArithOp::Rsh)
                ],
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(op, l, r)| Arith::Bin {
                    op,
                    lhs: Box::new(l),
                    rhs: Box::new(r)
                }),
            inner.clone().prop_map(|a| Arith::Neg(Box::new(a))),
            (load_proto(), inner, prop_oneof![Just(1u8), Just(2)]).prop_map(|(p, o, s)| {
                Arith::Load {
                    proto: p,
                    offset: Box::new(o),
                    size: s,
                }
            }),
        ]
    })
}

pub fn prim() -> impl Strategy<Value = Prim> {
    let proto4 = prop_oneof![Just(None), Just(Some(Proto::Ip)), Just(Some(Proto::Arp))];
    let l4 = prop_oneof![
        Just(None),
        Just(Some(Proto::Tcp)),
        Just(Some(Proto::Udp)),
        Just(Some(Proto::Sctp))
    ];
    prop_oneof![
        (proto4.clone(), dir(), 0usize..3).prop_map(|(proto, dir, i)| Prim::Host4 {
            proto,
            dir,
            addr: ADDRS4[i]
        }),
        (dir(), 0usize..2).prop_map(|(dir, i)| Prim::Host6 {
            dir,
            addr: ADDRS6[i]
        }),
        (dir(), 0usize..2).prop_map(|(dir, i)| Prim::EtherHost { dir, mac: MACS[i] }),
        (
            proto4,
            dir(),
            prop_oneof![Just(0xff00_0000u32), Just(0xffff_ff00), Just(0)]
        )
            .prop_map(|(proto, dir, mask)| Prim::Net4 {
                proto,
                dir,
                net: Net4 {
                    addr: ADDRS4[0] & mask,
                    mask
                }
            }),
        (dir(), prop_oneof![Just(32u8), Just(64), Just(128)]).prop_map(|(dir, prefix)| {
            Prim::Net6 {
                dir,
                net: Net6 {
                    addr: ADDRS6[0],
                    prefix,
                },
            }
        }),
        (l4.clone(), dir(), 0usize..3).prop_map(|(proto, dir, i)| Prim::Port {
            proto,
            dir,
            port: PORTS[i]
        }),
        (l4, dir(), 0usize..3).prop_map(|(proto, dir, i)| Prim::PortRange {
            proto,
            dir,
            lo: PORTS[i] - 10,
            hi: PORTS[i] + 5
        }),
        prop_oneof![
            Just(Proto::Ip),
            Just(Proto::Ip6),
            Just(Proto::Arp),
            Just(Proto::Rarp),
            Just(Proto::Tcp),
            Just(Proto::Udp),
            Just(Proto::Sctp),
            Just(Proto::Icmp),
            Just(Proto::Icmp6),
            Just(Proto::Igmp),
            Just(Proto::Pim),
            Just(Proto::Vrrp),
            Just(Proto::Ah),
            Just(Proto::Esp)
        ]
        .prop_map(Prim::Proto),
        (
            prop_oneof![Just(None), Just(Some(Proto::Ip)), Just(Some(Proto::Ip6))],
            prop_oneof![Just(6u32), Just(17), Just(1), Just(58), Just(44), Just(256)]
        )
            .prop_map(|(under, proto)| Prim::IpProto { under, proto }),
        (
            prop_oneof![Just(None), Just(Some(Proto::Ip)), Just(Some(Proto::Ip6))],
            prop_oneof![Just(6u32), Just(17), Just(58)]
        )
            .prop_map(|(under, proto)| Prim::Protochain { under, proto }),
        prop_oneof![
            Just(0x0800u32),
            Just(0x86dd),
            Just(0x0806),
            Just(0x8100),
            Just(0x42),
            Just(0xfe),
            Just(0xe0),
            Just(0x809b)
        ]
        .prop_map(Prim::EtherProto),
        prop_oneof![Just(Proto::Ether), Just(Proto::Ip)].prop_map(Prim::Broadcast),
        prop_oneof![Just(Proto::Ether), Just(Proto::Ip), Just(Proto::Ip6)]
            .prop_map(Prim::Multicast),
        (40u32..200).prop_map(Prim::Less),
        (40u32..200).prop_map(Prim::Greater),
        prop_oneof![Just(None), Just(Some(10u16)), Just(Some(20))].prop_map(Prim::Vlan),
        prop_oneof![Just(None), Just(Some(100u32))].prop_map(Prim::Mpls),
        Just(Prim::Pppoed),
        prop_oneof![Just(None), Just(Some(7u16))].prop_map(Prim::Pppoes),
        prop_oneof![
            Just(Llc::Any),
            Just(Llc::I),
            Just(Llc::S),
            Just(Llc::U),
            Just(Llc::USubtype(3))
        ]
        .prop_map(Prim::Llc),
        new_proto().prop_map(Prim::Proto),
        (dir(), 0usize..DECNET_ADDRS.len()).prop_map(|(dir, i)| Prim::DecnetHost {
            dir,
            addr: DECNET_ADDRS[i]
        }),
        prop_oneof![
            (
                Just(Proto::Iso),
                prop_oneof![Just(0x81u32), Just(0x82), Just(0x83)]
            ),
            (
                Just(Proto::Isis),
                prop_oneof![Just(15u32), Just(18), Just(20), Just(24)]
            ),
        ]
        .prop_map(|(p, proto)| Prim::IpProto {
            under: Some(p),
            proto
        }),
        any::<bool>().prop_map(Prim::Outbound),
        prop_oneof![Just(2u32), Just(12)].prop_map(Prim::Ifindex),
    ]
}

/// DECnet addresses the packets use (1.2, 1.5, 63.1023).
pub const DECNET_ADDRS: [u16; 3] = [(1 << 10) | 2, (1 << 10) | 5, (63 << 10) | 1023];

/// The protocol keywords of libpcap's legacy families (LLC, OSI, DECnet, AppleTalk).
pub fn new_proto() -> impl Strategy<Value = Proto> {
    prop_oneof![
        Just(Proto::Stp),
        Just(Proto::Ipx),
        Just(Proto::Netbeui),
        Just(Proto::Iso),
        Just(Proto::Clnp),
        Just(Proto::Esis),
        Just(Proto::Isis),
        Just(Proto::IsisL1),
        Just(Proto::IsisL2),
        Just(Proto::IsisIih),
        Just(Proto::IsisLsp),
        Just(Proto::IsisSnp),
        Just(Proto::IsisCsnp),
        Just(Proto::IsisPsnp),
        Just(Proto::Atalk),
        Just(Proto::Aarp),
        Just(Proto::Decnet),
        Just(Proto::Lat),
        Just(Proto::Sca),
        Just(Proto::Mopdl),
        Just(Proto::Moprc),
    ]
}

/// `pre and (geneve [VNI] and post)`, maybe negated: `geneve` moves every later
/// offset into the encapsulated frame, and libpcap keeps those offsets in scratch
/// memory that only a matching `geneve` sets (reading them on another path reads
/// uninitialised memory), so the tests after it only run where it matched.
pub fn geneve_expr() -> impl Strategy<Value = Expr> {
    (
        expr(),
        prop_oneof![Just(None), Just(Some(7u32)), Just(Some(0x123456))],
        expr(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(pre, vni, post, with_pre, negate)| {
            let g = Expr::And(Box::new(Expr::Prim(Prim::Geneve(vni))), Box::new(post));
            let e = if with_pre {
                Expr::And(Box::new(pre), Box::new(g))
            } else {
                g
            };
            if negate {
                Expr::Not(Box::new(e))
            } else {
                e
            }
        })
}

pub fn expr() -> impl Strategy<Value = Expr> {
    let relop = prop_oneof![
        Just(RelOp::Eq),
        Just(RelOp::Ne),
        Just(RelOp::Lt),
        Just(RelOp::Le),
        Just(RelOp::Gt),
        Just(RelOp::Ge)
    ];
    let leaf = prop_oneof![
        5 => prim().prop_map(Expr::Prim),
        2 => (relop, arith(), arith()).prop_map(|(op, lhs, rhs)| Expr::Rel { op, lhs, rhs }),
    ];
    leaf.prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Expr::Not(Box::new(a))),
        ]
    })
}

/// xorshift PRNG for packet generation.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

pub fn l4(r: &mut Rng, proto: u8) -> Vec<u8> {
    l4_in(r, proto, 0)
}

/// A transport header and payload; at `depth` 0 a UDP datagram may carry Geneve.
fn l4_in(r: &mut Rng, proto: u8, depth: u32) -> Vec<u8> {
    let mut v = vec![];
    match proto {
        17 if depth == 0 && r.below(3) == 0 => {
            v.extend_from_slice(&r.pick(&[1234u16, 6081]).to_be_bytes());
            v.extend_from_slice(&r.pick(&[6081u16, 6081, 6082]).to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, 0]);
            v.extend(geneve(r, depth + 1));
        }
        6 | 17 | 132 => {
            v.extend_from_slice(&r.pick(&PORTS).to_be_bytes());
            v.extend_from_slice(&r.pick(&[PORTS[0], PORTS[1], 1234, 88]).to_be_bytes());
            let n = if proto == 6 { 16 } else { 4 };
            v.extend((0..n).map(|_| r.next() as u8));
        }
        _ => v.extend((0..8).map(|_| r.next() as u8)),
    }
    v
}

/// A Geneve header (version 0 or 1, 0-2 option words, a VNI from a small set) and the
/// frame it carries: Ethernet (protocol 0x6558) or an IP packet.
fn geneve(r: &mut Rng, depth: u32) -> Vec<u8> {
    let opt_words = r.below(3) as u8;
    let version = if r.below(8) == 0 { 0x40 } else { 0 };
    let proto: u16 = r.pick(&[0x6558, 0x6558, 0x0800, 0x86dd, 0x1234]);
    let vni: u32 = r.pick(&[7, 0x123456, 8]);
    let mut v = vec![version | opt_words, 0];
    v.extend_from_slice(&proto.to_be_bytes());
    v.extend_from_slice(&(vni << 8).to_be_bytes());
    v.extend((0..4 * opt_words as usize).map(|_| r.next() as u8));
    match proto {
        0x6558 => v.extend(ethernet(r, depth)),
        0x0800 => v.extend(ipv4_in(r, depth)),
        0x86dd => v.extend(ipv6_in(r, depth)),
        _ => v.extend((0..20).map(|_| r.next() as u8)),
    }
    v
}

pub fn ipv4(r: &mut Rng) -> Vec<u8> {
    ipv4_in(r, 0)
}

fn ipv4_in(r: &mut Rng, depth: u32) -> Vec<u8> {
    let opts = if r.below(4) == 0 {
        4 * r.below(3) as usize
    } else {
        0
    };
    let proto = r.pick(&[6u8, 17, 17, 132, 1, 2, 103, 112, 50, 58]);
    let mut h = vec![0x45 + (opts / 4) as u8, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
    h.push(0);
    let frag: u16 = r.pick(&[0, 0, 0, 0x2000, 0x0010, 0x4000]);
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    let src = r.pick(&[
        ADDRS4[0],
        ADDRS4[1],
        ADDRS4[2],
        0xe000_0001,
        0xffff_ffff,
        0x0a00_0105,
    ]);
    let dst = r.pick(&[ADDRS4[0], ADDRS4[1], ADDRS4[2], 0xe000_0001, 0xffff_ffff, 0]);
    h.extend_from_slice(&src.to_be_bytes());
    h.extend_from_slice(&dst.to_be_bytes());
    h.extend((0..opts).map(|_| 1u8));
    h.extend(l4_in(r, proto, depth));
    h
}

pub fn ipv6(r: &mut Rng) -> Vec<u8> {
    ipv6_in(r, 0)
}

fn ipv6_in(r: &mut Rng, depth: u32) -> Vec<u8> {
    let mut exts: Vec<u8> = vec![];
    for _ in 0..r.below(3) {
        exts.push(r.pick(&[0u8, 60, 43, 44]));
    }
    let proto = r.pick(&[6u8, 17, 17, 132, 58, 59, 103]);
    let first = *exts.first().unwrap_or(&proto);
    let mut h = vec![0x60, 0, 0, 0, 0, 0, first, 64];
    let mut a = |h: &mut Vec<u8>| {
        let x = r.below(3);
        if x < 2 {
            h.extend_from_slice(&ADDRS6[x as usize]);
        } else {
            let mut m = [0u8; 16];
            m[0] = 0xff;
            m[15] = 1;
            h.extend_from_slice(&m);
        }
    };
    a(&mut h);
    a(&mut h);
    for (i, _) in exts.iter().enumerate() {
        let nh = *exts.get(i + 1).unwrap_or(&proto);
        h.extend_from_slice(&[nh, 0, 0, 0, 0, 0, 0, 0]);
    }
    // a UDP payload right after the fixed header can be Geneve
    let d = if exts.is_empty() { depth } else { depth + 1 };
    h.extend(l4_in(r, proto, d));
    h
}

pub fn l3(r: &mut Rng) -> (u16, Vec<u8>) {
    l3_in(r, 0)
}

/// A network-layer packet and its ethertype.
fn l3_in(r: &mut Rng, depth: u32) -> (u16, Vec<u8>) {
    match r.below(12) {
        0..=3 => (0x0800, ipv4_in(r, depth)),
        4..=5 => (0x86dd, ipv6_in(r, depth)),
        6 => {
            let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
            a.extend_from_slice(&MACS[0]);
            a.extend_from_slice(&r.pick(&ADDRS4).to_be_bytes());
            a.extend_from_slice(&[0; 6]);
            a.extend_from_slice(&r.pick(&ADDRS4).to_be_bytes());
            (r.pick(&[0x0806, 0x8035]), a)
        }
        7 => (r.pick(&[0x8863, 0x8864]), {
            let mut p = vec![0x11, 0, 0, 7, 0, 40];
            p.extend_from_slice(&r.pick(&[0x0021u16, 0x0057]).to_be_bytes());
            p.extend(ipv4_in(r, depth));
            p
        }),
        8..=9 => (0x6003, decnet(r)),
        _ => (
            r.pick(&[0x809b, 0x80f3, 0x8137, 0x6001, 0x6002, 0x6004, 0x6007]),
            (0..24).map(|_| r.next() as u8).collect(),
        ),
    }
}

/// A DECnet routing header (after its 2-byte length): long or short, with or without
/// the pad byte, addresses from [`DECNET_ADDRS`] (little-endian on the wire).
fn decnet(r: &mut Rng) -> Vec<u8> {
    let mut v = vec![40, 0];
    if r.below(2) == 0 {
        v.push(0x81);
    }
    let long = r.below(2) == 0;
    let flags = if long { 0x06 } else { 0x02 } | r.pick(&[0u8, 0x20, 0x08]);
    v.push(flags);
    let addr = |r: &mut Rng| r.pick(&DECNET_ADDRS).to_le_bytes();
    if long {
        // dst area, subarea, id (HIORD + address), then the same for the source
        for _ in 0..2 {
            v.extend_from_slice(&[0, 0, 0xaa, 0, 4, 0]);
            v.extend_from_slice(&addr(r));
        }
        v.extend_from_slice(&[0, 0, 0]);
    } else {
        v.extend_from_slice(&addr(r));
        v.extend_from_slice(&addr(r));
        v.push(0);
    }
    v.extend((0..8).map(|_| r.next() as u8));
    v
}

/// An 802.2 frame (after the 802.3 length or the cooked protocol 4): LLC with STP, IPX,
/// NetBEUI or OSI (IS-IS PDU types, CLNP, ES-IS), or SNAP with AppleTalk, AARP or IPX.
fn llc_frame(r: &mut Rng) -> Vec<u8> {
    let mut v = vec![];
    match r.below(4) {
        0 => {
            v.extend_from_slice(&[0xfe, 0xfe, 0x03]);
            let nlpid = r.pick(&[0x83u8, 0x83, 0x81, 0x82]);
            let pdu = r.pick(&[15u8, 16, 17, 18, 20, 24, 25, 26, 27, 4]);
            v.extend_from_slice(&[nlpid, 27, 1, 0, pdu, 1, 0, 0]);
        }
        1 => {
            let org: u32 = r.pick(&[0x080007, 0]);
            let ty: u16 = r.pick(&[0x809b, 0x80f3, 0x8137]);
            v.extend_from_slice(&[0xaa, 0xaa, 0x03]);
            v.extend_from_slice(&org.to_be_bytes()[1..]);
            v.extend_from_slice(&ty.to_be_bytes());
        }
        _ => {
            let sap = r.pick(&[0x42u8, 0xe0, 0xf0, 0x06, 0xaa]);
            v.extend_from_slice(&[sap, r.pick(&[sap, 0x42]), r.pick(&[3u8, 1, 0, 0xaf, 0x63])]);
        }
    }
    v.extend((0..20).map(|_| r.next() as u8));
    v
}

/// An Ethernet frame: maybe VLAN-tagged, with MPLS, 802.3 (LLC or raw IPX), or a
/// network-layer packet.
fn ethernet(r: &mut Rng, depth: u32) -> Vec<u8> {
    let mut p = vec![];
    p.extend_from_slice(&r.pick(&[MACS[0], MACS[1], [1, 0, 0x5e, 0, 0, 1]]));
    p.extend_from_slice(&r.pick(&[MACS[0], [2, 2, 2, 2, 2, 2]]));
    let mut tags = vec![];
    for _ in 0..r.below(3) {
        tags.push(r.pick(&[0x8100u16, 0x88a8]));
    }
    for t in tags {
        p.extend_from_slice(&t.to_be_bytes());
        p.extend_from_slice(&r.pick(&[10u16, 20, 0x2014]).to_be_bytes());
    }
    match r.below(7) {
        0 => {
            p.extend_from_slice(&0x8847u16.to_be_bytes());
            let n = 1 + r.below(2);
            for i in 0..n {
                let lbl: u32 = r.pick(&[100u32, 200]);
                let w = (lbl << 12) | if i + 1 == n { 0x100 } else { 0 } | 64;
                p.extend_from_slice(&w.to_be_bytes());
            }
            let (_, l3) = l3_in(r, depth);
            p.extend(l3);
        }
        1..=2 => {
            // 802.3: LLC, or a raw IPX frame
            p.extend_from_slice(&100u16.to_be_bytes());
            if r.below(6) == 0 {
                p.extend_from_slice(&[0xff, 0xff]);
                p.extend((0..20).map(|_| r.next() as u8));
            } else {
                p.extend(llc_frame(r));
            }
        }
        _ => {
            let (et, l3) = l3_in(r, depth);
            p.extend_from_slice(&et.to_be_bytes());
            p.extend(l3);
        }
    }
    p
}

/// The payload of a Linux cooked capture and its protocol field: a network-layer
/// packet (its ethertype), an 802.2 frame (4) or a raw IPX frame (1).
fn cooked_payload(r: &mut Rng) -> (u16, Vec<u8>) {
    match r.below(6) {
        0 => (4, llc_frame(r)),
        1 => (1, {
            let mut v = vec![0xff, 0xff];
            v.extend((0..20).map(|_| r.next() as u8));
            v
        }),
        _ => l3_in(r, 0),
    }
}

/// A whole packet (wire length = its length), truncated or garbled now and then.
pub fn packet(r: &mut Rng, link: LinkType) -> Vec<u8> {
    let mut p = match link {
        LinkType::RawIp => {
            if r.below(2) == 0 {
                ipv4(r)
            } else {
                ipv6(r)
            }
        }
        LinkType::Ethernet => ethernet(r, 0),
        LinkType::LinuxSll => {
            let (proto, payload) = cooked_payload(r);
            let mut p = vec![0, r.pick(&[0u8, 4, 4, 1, 3]), 0, 1, 0, 6];
            p.extend_from_slice(&MACS[0]);
            p.extend_from_slice(&[0, 0]);
            p.extend_from_slice(&proto.to_be_bytes());
            p.extend(payload);
            p
        }
        LinkType::LinuxSll2 => {
            let (proto, payload) = cooked_payload(r);
            let mut p = proto.to_be_bytes().to_vec();
            p.extend_from_slice(&[0, 0]);
            p.extend_from_slice(&r.pick(&[2u32, 12, 3]).to_be_bytes());
            p.extend_from_slice(&[0, 1, r.pick(&[0u8, 4, 4, 1, 3]), 6]);
            p.extend_from_slice(&MACS[0]);
            p.extend_from_slice(&[0, 0]);
            p.extend(payload);
            p
        }
    };
    match r.below(10) {
        0 => {
            let n = r.below(p.len() as u64 + 1) as usize;
            p.truncate(n);
        }
        1 => {
            for b in p.iter_mut().skip(12) {
                if r.below(8) == 0 {
                    *b = r.next() as u8;
                }
            }
        }
        _ => {}
    }
    // libpcap's protochain loops forever on some AH headers; keep AH out.
    for b in p.iter_mut() {
        if *b == 51 {
            *b = 52;
        }
    }
    p
}

/// A packet as a capture holds it: the captured bytes and the length on the wire, which
/// often exceeds them (a snap length cut the packet, or it was longer to begin with).
pub fn packet_wire(r: &mut Rng, link: LinkType) -> (Vec<u8>, u32) {
    let mut p = packet(r, link);
    let mut wire = p.len() as u32;
    match r.below(4) {
        0 => {
            let cap = r.below(p.len() as u64 + 1) as usize;
            p.truncate(cap);
        }
        1 => wire += r.pick(&[1u32, 40, 1400, 65000]),
        _ => {}
    }
    (p, wire)
}

/// libpcap's `struct bpf_insn` (what `pcap::BpfInstruction` wraps).
#[cfg(feature = "oracle")]
#[repr(C)]
struct BpfInsn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[cfg(feature = "oracle")]
extern "C" {
    /// libpcap's interpreter: the program on `buflen` captured bytes of a packet that
    /// was `wirelen` bytes long; non-zero when it matches.
    fn bpf_filter(pc: *const BpfInsn, pkt: *const u8, wirelen: u32, buflen: u32) -> u32;
}

/// libpcap's verdict on `pkt`, captured from a packet `wire` bytes long.
#[cfg(feature = "oracle")]
pub fn libpcap_matches(prog: &pcap::BpfProgram, pkt: &[u8], wire: u32) -> bool {
    let insns = prog.get_instructions();
    // SAFETY: `pcap::BpfInstruction` is `repr(transparent)` over libpcap's
    // `struct bpf_insn`, which `BpfInsn` mirrors field for field; the program (and so
    // `insns`) outlives the call, ends with a return as pcap_compile makes it, and
    // `pkt` is valid for `pkt.len()` bytes, the length passed as `buflen`.
    unsafe {
        bpf_filter(
            insns.as_ptr() as *const BpfInsn,
            pkt.as_ptr(),
            wire,
            pkt.len() as u32,
        ) != 0
    }
}

/// libpcap's link-layer type for ours.
#[cfg(feature = "oracle")]
pub fn dlt(link: LinkType) -> pcap::Linktype {
    pcap::Linktype(match link {
        LinkType::Ethernet => 1,
        LinkType::RawIp => 12,
        LinkType::LinuxSll => 113,
        LinkType::LinuxSll2 => 276,
    })
}
