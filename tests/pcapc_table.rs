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
