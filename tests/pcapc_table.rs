//! Tricky expressions with known packets, run through our compiled eBPF in rbpf with
//! both back ends (no libpcap needed). Expected verdicts were checked against libpcap.

use pwru::pcapc::ast::*;
use pwru::pcapc::compile::{check, CompileError, FilterEnv, LinkType, ProgramKind};
use pwru::pcapc::run::UserspaceFilter;

fn eth(et: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    p.extend_from_slice(&et.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn ipv4_tcp(sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0; 16]);
    p
}

fn prim(p: Prim) -> Expr {
    Expr::Prim(p)
}
fn and(a: Expr, b: Expr) -> Expr {
    Expr::And(Box::new(a), Box::new(b))
}
fn or(a: Expr, b: Expr) -> Expr {
    Expr::Or(Box::new(a), Box::new(b))
}

/// libpcap's link-layer type for ours.
#[cfg(feature = "oracle")]
fn dlt(link: LinkType) -> pcap::Linktype {
    pcap::Linktype(match link {
        LinkType::Ethernet => 1,
        LinkType::RawIp => 12,
        LinkType::LinuxSll => 113,
        LinkType::LinuxSll2 => 276,
    })
}

fn verdict(e: &Expr, link: LinkType, pkt: &[u8]) -> bool {
    let env = FilterEnv::default();
    let d = UserspaceFilter::new(e, link, ProgramKind::UserDirect, &env).unwrap();
    let k = UserspaceFilter::new(e, link, ProgramKind::UserKernelMemory, &env).unwrap();
    let (a, b) = (d.matches(pkt).unwrap(), k.matches(pkt).unwrap());
    assert_eq!(a, b, "back ends disagree on `{e}`");
    a
}

#[test]
fn tricky_expressions() {
    let port80 = prim(Prim::Port {
        proto: Some(Proto::Tcp),
        dir: Dir::Dst,
        port: 80,
    });
    let vlan_tcp = {
        let mut inner = eth(0x0800, &ipv4_tcp(1, 80));
        inner.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
        inner
    };
    let cases: Vec<(Expr, LinkType, Vec<u8>, bool)> = vec![
        (
            port80.clone(),
            LinkType::Ethernet,
            eth(0x0800, &ipv4_tcp(1, 80)),
            true,
        ),
        (
            port80.clone(),
            LinkType::Ethernet,
            eth(0x0800, &ipv4_tcp(1, 81)),
            false,
        ),
        (port80.clone(), LinkType::RawIp, ipv4_tcp(1, 80), true),
        // vlan shifts everything after it, even across `or`
        (
            and(prim(Prim::Vlan(Some(10))), port80.clone()),
            LinkType::Ethernet,
            vlan_tcp.clone(),
            true,
        ),
        (port80.clone(), LinkType::Ethernet, vlan_tcp.clone(), false),
        (
            or(prim(Prim::Vlan(None)), port80.clone()),
            LinkType::Ethernet,
            eth(0x0800, &ipv4_tcp(1, 80)),
            false,
        ),
        // a load past the end rejects even under `not`
        (
            Expr::Not(Box::new(Expr::Rel {
                op: RelOp::Eq,
                lhs: Arith::Load {
                    proto: Proto::Tcp,
                    offset: Box::new(Arith::Num(100)),
                    size: 1,
                },
                rhs: Arith::Num(1),
            })),
            LinkType::Ethernet,
            eth(0x0800, &ipv4_tcp(1, 80)),
            false,
        ),
        // division by a zero byte at run time rejects
        (
            Expr::Rel {
                op: RelOp::Ne,
                lhs: Arith::Bin {
                    op: ArithOp::Div,
                    lhs: Box::new(Arith::Num(1)),
                    rhs: Box::new(Arith::Load {
                        proto: Proto::Ip,
                        offset: Box::new(Arith::Num(1)),
                        size: 1,
                    }),
                },
                rhs: Arith::Num(7),
            },
            LinkType::RawIp,
            ipv4_tcp(1, 80),
            false,
        ),
        (
            prim(Prim::Less(54)),
            LinkType::Ethernet,
            eth(0x0800, &ipv4_tcp(1, 80)),
            true,
        ),
        (
            prim(Prim::Greater(55)),
            LinkType::Ethernet,
            eth(0x0800, &ipv4_tcp(1, 80)),
            false,
        ),
        (
            prim(Prim::Host4 {
                proto: None,
                dir: Dir::SrcOrDst,
                addr: 0x0a00_0002,
            }),
            LinkType::RawIp,
            ipv4_tcp(1, 80),
            true,
        ),
    ];
    for (e, link, pkt, want) in cases {
        assert_eq!(verdict(&e, link, &pkt), want, "`{e}` on {link:?}");
    }
}

#[test]
fn compile_time_rejections() {
    let env = FilterEnv::default();
    let ip_and_arp = and(prim(Prim::Proto(Proto::Ip)), prim(Prim::Proto(Proto::Arp)));
    assert_eq!(
        check(&ip_and_arp, LinkType::Ethernet, &env),
        Err(CompileError::RejectsAll)
    );
    assert_eq!(
        check(&prim(Prim::Proto(Proto::Arp)), LinkType::RawIp, &env),
        Err(CompileError::RejectsAll)
    );
    assert!(matches!(
        check(
            &prim(Prim::EtherHost {
                dir: Dir::Src,
                mac: [1; 6]
            }),
            LinkType::RawIp,
            &env
        ),
        Err(CompileError::Unsupported { .. })
    ));
    assert!(matches!(
        check(&prim(Prim::Vlan(None)), LinkType::RawIp, &env),
        Err(CompileError::Unsupported { .. })
    ));
    let div0 = Expr::Rel {
        op: RelOp::Eq,
        lhs: Arith::Bin {
            op: ArithOp::Div,
            lhs: Box::new(Arith::Len),
            rhs: Box::new(Arith::Num(0)),
        },
        rhs: Arith::Num(1),
    };
    assert_eq!(
        check(&div0, LinkType::Ethernet, &env),
        Err(CompileError::DivisionByZero)
    );
}

fn rel(op: RelOp, lhs: Arith, rhs: Arith) -> Expr {
    Expr::Rel { op, lhs, rhs }
}
fn ld(proto: Proto, off: u32, size: u8) -> Arith {
    Arith::Load {
        proto,
        offset: Box::new(Arith::Num(off)),
        size,
    }
}
fn bin(op: ArithOp, l: Arith, r: Arith) -> Arith {
    Arith::Bin {
        op,
        lhs: Box::new(l),
        rhs: Box::new(r),
    }
}
fn neg(a: Arith) -> Arith {
    Arith::Neg(Box::new(a))
}
fn not(a: Expr) -> Expr {
    Expr::Not(Box::new(a))
}
const V6_1: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Shrunk cases the libpcap oracle once disagreed on, with our verdict. On short
/// packets libpcap's optimized and unoptimized programs can differ (its optimizer drops
/// loads whose outcome it proves irrelevant); we give the unoptimized answer there.
fn regressions() -> Vec<(Expr, LinkType, Vec<u8>, bool)> {
    vec![
        // The udp and icmp checks contradict; libpcap-optimized matches without loading.
        (
            not(rel(RelOp::Eq, ld(Proto::Udp, 0, 1), ld(Proto::Icmp, 0, 1))),
            LinkType::Ethernet,
            vec![0x01, 0x00, 0x5e],
            false,
        ),
        (
            not(and(
                prim(Prim::IpProto {
                    under: None,
                    proto: 6,
                }),
                prim(Prim::Multicast(Proto::Ip6)),
            )),
            LinkType::RawIp,
            vec![0x45],
            false,
        ),
        (
            or(
                prim(Prim::Pppoed),
                or(
                    not(rel(
                        RelOp::Eq,
                        neg(Arith::Num(0)),
                        bin(ArithOp::And, Arith::Num(41), Arith::Num(1)),
                    )),
                    prim(Prim::EtherProto(0x0800)),
                ),
            ),
            LinkType::Ethernet,
            vec![0xff; 5],
            false,
        ),
        // After `pppoes` the link layer is PPP even on raw IP: `ether proto` tests the
        // PPP protocol field at offset 6, not the IP version.
        (
            and(
                or(
                    prim(Prim::PortRange {
                        proto: None,
                        dir: Dir::Src,
                        lo: 43,
                        hi: 58,
                    }),
                    prim(Prim::Pppoes(None)),
                ),
                prim(Prim::EtherProto(0x86dd)),
            ),
            LinkType::RawIp,
            vec![
                0x60, 0, 0, 0, 0, 0, 0x11, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0x76, 0, 0, 0, 0,
                0x8d, 0xc1, 0, 0, 0x02, 0x20, 0x01, 0x0d, 0xb8, 0, 0x1b, 0, 0x17, 0, 0, 0, 0, 0, 0,
                0, 0x9a, 0, 0x35, 0, 0x6c, 0xc9, 0x9e, 0x8b, 0x90,
            ],
            false,
        ),
    ]
}

#[test]
fn oracle_regressions() {
    for (e, link, pkt, want) in regressions() {
        assert_eq!(verdict(&e, link, &pkt), want, "`{e}` on {link:?}");
        #[cfg(feature = "oracle")]
        {
            let lt = dlt(link);
            let cap = pcap::Capture::dead(lt).unwrap();
            let unopt = cap.compile(&e.to_string(), false).unwrap().filter(&pkt);
            assert_eq!(unopt, want, "libpcap unoptimized `{e}`");
        }
    }
}

#[test]
fn acceptance_regressions() {
    let env = FilterEnv::default();
    let pr = |lo, hi| {
        prim(Prim::PortRange {
            proto: Some(Proto::Tcp),
            dir: Dir::SrcAndDst,
            lo,
            hi,
        })
    };
    // libpcap: "expression rejects all packets" (found through jump threading).
    let rejects = [
        and(
            pr(70, 85),
            prim(Prim::IpProto {
                under: Some(Proto::Ip),
                proto: 44,
            }),
        ),
        and(
            prim(Prim::Net4 {
                proto: Some(Proto::Ip),
                dir: Dir::SrcOrDst,
                net: Net4 {
                    addr: 0x0a00_0000,
                    mask: 0xff00_0000,
                },
            }),
            or(
                not(prim(Prim::Net4 {
                    proto: Some(Proto::Ip),
                    dir: Dir::Src,
                    net: Net4 { addr: 0, mask: 0 },
                })),
                prim(Prim::IpProto {
                    under: Some(Proto::Ip6),
                    proto: 44,
                }),
            ),
        ),
    ];
    for e in rejects {
        assert_eq!(
            check(&e, LinkType::Ethernet, &env),
            Err(CompileError::RejectsAll),
            "`{e}`"
        );
    }
    // libpcap compiles these (its optimizer does not reason across jeq/jgt).
    let ok = [
        and(
            prim(Prim::EtherProto(254)),
            rel(RelOp::Le, ld(Proto::Ip, 51, 1), Arith::Num(48)),
        ),
        and(
            prim(Prim::Host6 {
                dir: Dir::SrcAndDst,
                addr: V6_1,
            }),
            prim(Prim::Llc(Llc::Any)),
        ),
    ];
    for e in ok {
        assert_eq!(check(&e, LinkType::Ethernet, &env), Ok(()), "`{e}`");
    }
    // After `pppoes` the link is PPP: no link-level broadcast/multicast (libpcap errors).
    for p in [Prim::Broadcast(Proto::Ether), Prim::Multicast(Proto::Ether)] {
        let e = and(prim(Prim::Pppoes(None)), prim(p));
        assert!(
            matches!(
                check(&e, LinkType::Ethernet, &env),
                Err(CompileError::Unsupported { .. })
            ),
            "`{e}`"
        );
    }
    // Documented difference: we prove this constant filter unsatisfiable, libpcap
    // compiles a program that matches nothing.
    let stricter = not(or(
        prim(Prim::Greater(84)),
        not(rel(
            RelOp::Ge,
            neg(Arith::Num(57)),
            bin(ArithOp::Xor, Arith::Num(49), neg(Arith::Num(28))),
        )),
    ));
    assert_eq!(
        check(&stricter, LinkType::Ethernet, &env),
        Err(CompileError::RejectsAll)
    );
}

/// libpcap's optimizer folds arithmetic on a constant 0 (`0 * x`, `x & 0`, `0 / x`, ...)
/// to `ld #0` and then drops the now dead loads of `x`: that decides both acceptance
/// ("expression rejects all packets") and, on short packets, the verdict.
#[test]
fn zero_folds() {
    let env = FilterEnv::default();
    let parse = |s: &str| pwru::pcapc::parse(s).unwrap().unwrap();
    let rejects = [
        (
            "(pppoes 7 and ether proto 2054) or (not ((-62 != 0*ip[32:4]) or pppoed))",
            LinkType::RawIp,
        ),
        ("not (0 * ip[32:4] = 0)", LinkType::RawIp),
        ("not (0 & tcp[2:2] = 0)", LinkType::Ethernet),
        ("0 / ip[3] != 0", LinkType::RawIp),
        ("0 % (ip[3] + 1) = 1", LinkType::Ethernet),
        ("(0 << ip[3]) + (0 >> ip[4]) = 7", LinkType::RawIp),
    ];
    for (s, link) in rejects {
        assert_eq!(
            check(&parse(s), link, &env),
            Err(CompileError::RejectsAll),
            "`{s}` on {link:?}"
        );
    }
    // (expression, link, packet, verdict): the folded loads no longer reject short
    // packets, the ones kept still do.
    let verdicts = [
        ("0 * ip[32:4] = 0", LinkType::RawIp, vec![0x45], true),
        ("ip[32:4] * 0 = 0", LinkType::RawIp, vec![0x45], true),
        ("ip[32:4] * 0 = 0", LinkType::RawIp, vec![0x65], false),
        ("0 / ip[40] = 0", LinkType::RawIp, vec![0x45, 0], true),
        ("0 + ip[40] = 0", LinkType::RawIp, vec![0x45, 0], false),
        ("0 - ip[40] = 0", LinkType::RawIp, vec![0x45, 0], false),
        ("0 - ip[1] = 0", LinkType::RawIp, vec![0x45, 0], true),
        ("0 ^ ip[1] = 3", LinkType::RawIp, vec![0x45, 3], true),
        (
            "(0 * ip[40]) / ip[1] = 0",
            LinkType::RawIp,
            vec![0x45, 0],
            true,
        ),
    ];
    for (s, link, pkt, want) in verdicts {
        let e = parse(s);
        assert_eq!(
            verdict(&e, link, &pkt),
            want,
            "`{s}` on {link:?} {pkt:02x?}"
        );
        #[cfg(feature = "oracle")]
        {
            let lt = dlt(link);
            let cap = pcap::Capture::dead(lt).unwrap();
            assert_eq!(
                cap.compile(s, true).unwrap().filter(&pkt),
                want,
                "libpcap `{s}`"
            );
        }
    }
    #[cfg(feature = "oracle")]
    for (s, link) in rejects {
        let lt = dlt(link);
        let cap = pcap::Capture::dead(lt).unwrap();
        assert!(cap.compile(s, true).is_err(), "libpcap accepts `{s}`");
    }
}

/// libpcap's optimizer reports a shift by a computed constant above 31 (or a division
/// by a computed zero) only for tests its jump threading keeps: here the relation's
/// outcome does not matter on the paths that reach it, so libpcap compiles the filter.
#[test]
fn optimizer_errors_only_on_reachable_tests() {
    let env = FilterEnv::default();
    let parse = |s: &str| pwru::pcapc::parse(s).unwrap().unwrap();
    let accepted = [
        "((pppoes or (((21 - ip[35:1]) >> (-16)) != (igmp[46:1] | ip6[0:2]))) or (not mpls 100))",
        "(not (((26 << sctp[29:1]) <= ((-tcp[8:2]) << (-18))) and ip proto 1))",
        "(((udp[28:2] << (-14)) <= (-ip[18:1])) or (not ip6 src and dst host 2001:db8::1))",
        "(((27 > (sctp[2:2] >> (23 ^ 53))) and (igmp[udp[len:1]:2] >= (len / (-40)))) or (((-tcp[3:2]) < icmp[(-udp[18:4]):2]) or vrrp))",
        "(igmp[46:1] >> (ip[2] * 0 + 40) != 3) or ip",
        "(igmp[46:1] / (ip[2] * 0) != 3) or ip",
    ];
    let errors = [
        (
            "(pppoes or (((21 - ip[35:1]) >> (-16)) != (igmp[46:1] | ip6[0:2])))",
            CompileError::ShiftTooLarge,
        ),
        (
            "ip[35:1] >> (20 + 20) != 3 or tcp",
            CompileError::ShiftTooLarge,
        ),
        (
            "(igmp[46:1] >> (ip[2] * 0 + 40) != 3) or tcp",
            CompileError::ShiftTooLarge,
        ),
        (
            "(igmp[46:1] / (ip[2] * 0) != 3) or tcp",
            CompileError::DivisionByZero,
        ),
    ];
    for link in [LinkType::Ethernet, LinkType::RawIp] {
        for s in accepted {
            assert_eq!(check(&parse(s), link, &env), Ok(()), "`{s}` on {link:?}");
        }
        for (s, err) in &errors {
            assert_eq!(
                check(&parse(s), link, &env).as_ref(),
                Err(err),
                "`{s}` on {link:?}"
            );
        }
        #[cfg(feature = "oracle")]
        {
            let lt = dlt(link);
            let cap = pcap::Capture::dead(lt).unwrap();
            for s in accepted {
                assert!(cap.compile(s, true).is_ok(), "libpcap rejects `{s}`");
            }
            for (s, _) in &errors {
                assert!(cap.compile(s, true).is_err(), "libpcap accepts `{s}`");
            }
        }
    }
}

/// `host A or host B or ...` as people generate allow-lists: 3000 alternatives compile
/// (far jumps go through islands), and the program finds the first, the last and no
/// host on both back ends.
#[test]
fn large_allow_lists_compile_and_run() {
    let hosts: Vec<String> = (0..3000u32)
        .map(|i| format!("host 10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff))
        .collect();
    let text = hosts.join(" or ");
    let e = pwru::pcapc::parse(&text).unwrap().unwrap();
    let pkt = |dst: [u8; 4]| {
        let mut ip = ipv4_tcp(1, 80);
        ip[16..20].copy_from_slice(&dst);
        eth(0x0800, &ip)
    };
    let env = FilterEnv::default();
    for kind in [ProgramKind::UserDirect, ProgramKind::UserKernelMemory] {
        let f = UserspaceFilter::new(&e, LinkType::Ethernet, kind, &env).unwrap();
        assert!(f.len() > 32767, "{} instructions", f.len());
        // 10.0.0.1 is the packet's source: every packet matches through it
        assert!(f.matches(&pkt([10, 0, 11, 183])).unwrap());
        let mut other = pkt([10, 0, 11, 183]);
        other[26..30].copy_from_slice(&[192, 168, 0, 1]);
        assert!(f.matches(&other).unwrap(), "the last host");
        other[30..34].copy_from_slice(&[192, 168, 0, 2]);
        assert!(!f.matches(&other).unwrap(), "no host");
        other[30..34].copy_from_slice(&[10, 0, 0, 0]);
        assert!(f.matches(&other).unwrap(), "the first host");
    }
}

/// `protochain` walks as far as the packet goes, up to its documented step budget.
#[test]
fn protochain_walks_long_header_chains() {
    // IPv6, `n` hop-by-hop/destination-options headers (8 bytes each), then TCP
    let chain = |n: usize| {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, 0, 64];
        p.extend_from_slice(&[0; 32]);
        for i in 0..n {
            let next = if i + 1 == n { 6 } else { 60 };
            p.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]);
        }
        p.extend_from_slice(&[0; 20]);
        p
    };
    let e = pwru::pcapc::parse("ip6 protochain 6").unwrap().unwrap();
    let limit = pwru::pcapc::PROTOCHAIN_MAX_HEADERS as usize;
    for (n, want) in [
        (1, true),
        (300, true),
        (limit - 1, true),
        (limit + 10, false),
    ] {
        assert_eq!(verdict(&e, LinkType::RawIp, &chain(n)), want, "{n} headers");
    }
    // two walks share the budget
    let two = pwru::pcapc::parse("ip6 protochain 6 or ip6 protochain 17")
        .unwrap()
        .unwrap();
    assert!(verdict(&two, LinkType::RawIp, &chain(limit / 2 - 1)));
    assert!(!verdict(&two, LinkType::RawIp, &chain(limit / 2 + 10)));
}
