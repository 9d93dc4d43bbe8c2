//! Filter compiler benchmark: for a corpus of expressions, our eBPF instruction count
//! (direct and kernel-memory back ends) beside libpcap's optimized cBPF count (with
//! `--features oracle`), and our compile time per expression.

use std::hint::black_box;
use std::time::Instant;

use pwru::asm::{Asm, Reg};
use pwru::pcapc::ast::*;
use pwru::pcapc::compile::{
    compile_program, emit_filter_with_stats, FilterEnv, LinkType, PacketSource, ProgramKind,
    DEFAULT_WINDOW,
};

fn p(x: Prim) -> Expr {
    Expr::Prim(x)
}
fn and(a: Expr, b: Expr) -> Expr {
    Expr::And(Box::new(a), Box::new(b))
}
fn or(a: Expr, b: Expr) -> Expr {
    Expr::Or(Box::new(a), Box::new(b))
}
fn not(a: Expr) -> Expr {
    Expr::Not(Box::new(a))
}
fn host(a: [u8; 4], dir: Dir) -> Expr {
    p(Prim::Host4 {
        proto: None,
        dir,
        addr: u32::from_be_bytes(a),
    })
}
fn port(proto: Option<Proto>, dir: Dir, port: u16) -> Expr {
    p(Prim::Port { proto, dir, port })
}
fn proto(x: Proto) -> Expr {
    p(Prim::Proto(x))
}
fn load(pr: Proto, off: u32, size: u8) -> Arith {
    Arith::Load {
        proto: pr,
        offset: Box::new(Arith::Num(off)),
        size,
    }
}
fn rel(op: RelOp, lhs: Arith, rhs: Arith) -> Expr {
    Expr::Rel { op, lhs, rhs }
}
fn bin(op: ArithOp, l: Arith, r: Arith) -> Arith {
    Arith::Bin {
        op,
        lhs: Box::new(l),
        rhs: Box::new(r),
    }
}
fn net(a: [u8; 4], bits: u32, dir: Dir) -> Expr {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    p(Prim::Net4 {
        proto: None,
        dir,
        net: Net4 {
            addr: u32::from_be_bytes(a) & mask,
            mask,
        },
    })
}

fn corpus() -> Vec<Expr> {
    use Dir::*;
    let v6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let mut v6net = v6;
    v6net[15] = 0;
    let syn = rel(
        RelOp::Ne,
        bin(ArithOp::And, load(Proto::Tcp, 13, 1), Arith::Num(2)),
        Arith::Num(0),
    );
    vec![
        proto(Proto::Ip),
        proto(Proto::Ip6),
        proto(Proto::Arp),
        proto(Proto::Tcp),
        proto(Proto::Udp),
        proto(Proto::Icmp),
        proto(Proto::Icmp6),
        host([10, 0, 0, 1], SrcOrDst),
        host([10, 0, 0, 1], Src),
        and(host([10, 0, 0, 1], Src), host([10, 0, 0, 2], Dst)),
        net([10, 0, 0, 0], 8, SrcOrDst),
        p(Prim::Host6 {
            dir: SrcOrDst,
            addr: v6,
        }),
        p(Prim::Net6 {
            dir: Dst,
            net: Net6 {
                addr: v6net,
                prefix: 64,
            },
        }),
        port(None, SrcOrDst, 53),
        port(Some(Proto::Tcp), Dst, 80),
        port(Some(Proto::Udp), Src, 53),
        or(
            port(Some(Proto::Tcp), Dst, 80),
            port(Some(Proto::Tcp), Dst, 443),
        ),
        p(Prim::PortRange {
            proto: Some(Proto::Tcp),
            dir: SrcOrDst,
            lo: 1000,
            hi: 2000,
        }),
        and(
            proto(Proto::Ip),
            and(
                port(Some(Proto::Tcp), Dst, 80),
                not(net([10, 0, 0, 0], 8, SrcOrDst)),
            ),
        ),
        and(
            host([10, 0, 0, 1], SrcOrDst),
            and(proto(Proto::Tcp), port(None, SrcOrDst, 22)),
        ),
        and(proto(Proto::Tcp), syn.clone()),
        syn,
        rel(
            RelOp::Gt,
            bin(
                ArithOp::Sub,
                load(Proto::Ip, 2, 2),
                bin(
                    ArithOp::Lsh,
                    bin(ArithOp::And, load(Proto::Ip, 0, 1), Arith::Num(0xf)),
                    Arith::Num(2),
                ),
            ),
            Arith::Num(100),
        ),
        p(Prim::EtherHost {
            dir: SrcOrDst,
            mac: [0, 1, 2, 3, 4, 5],
        }),
        p(Prim::Broadcast(Proto::Ether)),
        p(Prim::Multicast(Proto::Ip)),
        p(Prim::Less(128)),
        p(Prim::Greater(1000)),
        and(p(Prim::Vlan(Some(10))), host([10, 0, 0, 1], SrcOrDst)),
        and(
            p(Prim::Vlan(None)),
            and(p(Prim::Vlan(None)), port(Some(Proto::Udp), Dst, 4789)),
        ),
        and(p(Prim::Mpls(Some(100))), proto(Proto::Ip)),
        and(p(Prim::Pppoes(Some(7))), proto(Proto::Ip)),
        p(Prim::Protochain {
            under: Some(Proto::Ip6),
            proto: 6,
        }),
        p(Prim::IpProto {
            under: None,
            proto: 47,
        }),
        or(
            proto(Proto::Arp),
            and(proto(Proto::Icmp), host([192, 168, 1, 1], SrcOrDst)),
        ),
        p(Prim::Llc(Llc::Any)),
        and(not(proto(Proto::Arp)), not(port(None, SrcOrDst, 22))),
        rel(RelOp::Eq, load(Proto::Icmp, 0, 1), Arith::Num(8)),
        rel(RelOp::Eq, load(Proto::Icmp6, 0, 1), Arith::Num(135)),
        rel(
            RelOp::Gt,
            Arith::Len,
            bin(ArithOp::Mul, load(Proto::Ip, 9, 1), Arith::Num(10)),
        ),
    ]
}

#[cfg(feature = "oracle")]
fn libpcap_count(text: &str) -> Option<usize> {
    let cap = pcap::Capture::dead(pcap::Linktype::ETHERNET).ok()?;
    cap.compile(text, true)
        .ok()
        .map(|p| p.get_instructions().len())
}

#[cfg(not(feature = "oracle"))]
fn libpcap_count(_: &str) -> Option<usize> {
    None
}

/// Instruction slots of the filter body alone (no prologue/epilogue), per back end.
fn body(e: &Expr, src: PacketSource) -> usize {
    let mut a = Asm::new();
    let (m, r) = (a.label(), a.label());
    emit_filter_with_stats(
        &mut a,
        e,
        LinkType::Ethernet,
        &src,
        &FilterEnv::default(),
        m,
        r,
    )
    .unwrap()
    .insns
}

fn main() {
    let corpus = corpus();
    let direct_src = PacketSource::Direct {
        start: Reg::R6,
        end: Reg::R7,
    };
    let kmem_src = PacketSource::KernelMemory {
        base: Reg::R6,
        len: Reg::R7,
        window: DEFAULT_WINDOW,
    };
    println!(
        "{:>6} {:>6} {:>6} {:>6} {:>8} {:>9}  expression (Ethernet)",
        "prog", "body", "kprog", "kbody", "libpcap", "compile"
    );
    let (mut times, mut not_worse, mut body_not_worse, mut compared) = (vec![], 0, 0, 0);
    for e in &corpus {
        let text = e.to_string();
        let direct = compile_program(e, LinkType::Ethernet, ProgramKind::SchedClsDirect).unwrap();
        let kmem =
            compile_program(e, LinkType::Ethernet, ProgramKind::SchedClsKernelMemory).unwrap();
        let (db, kb) = (body(e, direct_src), body(e, kmem_src));
        // best of 5 batches (the machine is shared)
        let mut best = f64::MAX;
        for _ in 0..5 {
            let iters = 40;
            let t0 = Instant::now();
            for _ in 0..iters {
                black_box(
                    compile_program(
                        black_box(e),
                        LinkType::Ethernet,
                        ProgramKind::SchedClsDirect,
                    )
                    .unwrap(),
                );
            }
            best = best.min(t0.elapsed().as_secs_f64() * 1e6 / iters as f64);
        }
        times.push(best);
        let theirs = libpcap_count(&text);
        if let Some(n) = theirs {
            compared += 1;
            not_worse += (direct.len() <= n) as usize;
            // libpcap's count includes its two `ret` instructions
            body_not_worse += (db <= n.saturating_sub(2)) as usize;
        }
        println!(
            "{:>6} {:>6} {:>6} {:>6} {:>8} {:>7.1}µs  {text}",
            direct.len(),
            db,
            kmem.len(),
            kb,
            theirs.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            best
        );
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{} expressions; compile time median {:.1} µs, max {:.1} µs; program <= libpcap's count on {not_worse}/{compared}, body <= libpcap's minus its 2 rets on {body_not_worse}/{compared}",
        corpus.len(),
        times[times.len() / 2],
        times[times.len() - 1],
    );
}
