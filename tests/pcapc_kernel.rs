//! Kernel agreement: compiled SCHED_CLS filters (direct packet access and the
//! kernel-memory back end) pass the real verifier and, run with BPF_PROG_TEST_RUN,
//! give the same verdicts as the userspace runner (and libpcap with `oracle`).

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use pwru::load::{self, LoadOptions, ObjectSpec, ProgKind, ProgramSpec};
use pwru::pcapc::ast::*;
use pwru::pcapc::compile::{compile_program, FilterEnv, LinkType, ProgramKind};
use pwru::pcapc::run::UserspaceFilter;

mod pcapc_gen;
use pcapc_gen::{expr, packet, Rng};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn kernel_test_run_agrees_with_userspace() {
    if !is_root() {
        eprintln!("skipped: BPF_PROG_LOAD/BPF_PROG_TEST_RUN need root");
        return;
    }
    let _ = load::raise_rlimits();
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let env = FilterEnv::default();
    let (mut exprs, mut runs, mut refused) = (0, 0, 0);
    let mut attempts = 0;
    let fixed = fixed_corpus();
    while exprs < 60 + fixed.len() && attempts < 2000 {
        attempts += 1;
        let e = match fixed.get(attempts - 1) {
            Some(e) => e.clone(),
            None => expr().new_tree(&mut runner).unwrap().current(),
        };
        for link in [
            LinkType::Ethernet,
            LinkType::RawIp,
            LinkType::LinuxSll,
            LinkType::LinuxSll2,
        ] {
            let Ok(direct) = compile_program(&e, link, ProgramKind::SchedClsDirect) else {
                continue;
            };
            let kmem = compile_program(&e, link, ProgramKind::SchedClsKernelMemory).unwrap();
            let obj = ObjectSpec {
                maps: vec![],
                programs: vec![
                    ProgramSpec {
                        name: "f_direct".into(),
                        kind: ProgKind::SchedCls,
                        program: direct,
                    },
                    ProgramSpec {
                        name: "f_kmem".into(),
                        kind: ProgKind::SchedCls,
                        program: kmem,
                    },
                ],
            };
            let mut loaded = match load::load(&obj, &LoadOptions::default()) {
                Ok(l) => l,
                Err(err) => panic!("verifier rejected `{e}` ({link:?}): {err}"),
            };
            let user = UserspaceFilter::new(&e, link, ProgramKind::UserDirect, &env).unwrap();
            #[cfg(feature = "oracle")]
            let pcap = {
                let lt = match link {
                    LinkType::Ethernet => pcap::Linktype::ETHERNET,
                    LinkType::RawIp => pcap::Linktype(12),
                    LinkType::LinuxSll => pcap::Linktype(113),
                    LinkType::LinuxSll2 => pcap::Linktype(276),
                };
                pcap::Capture::dead(lt)
                    .unwrap()
                    .compile(&e.to_string(), false)
                    .unwrap()
            };
            exprs += 1;
            let mut r = Rng(attempts as u64 * 7919 + 1);
            for _ in 0..20 {
                let pkt = packet(&mut r, link);
                // test_run wants at least an Ethernet header; raw-IP packets go after a
                // 14-byte header that the program skips.
                let frame = match link {
                    LinkType::RawIp => {
                        let mut f = vec![0u8; 12];
                        f.extend_from_slice(&[0x08, 0x00]);
                        f.extend_from_slice(&pkt);
                        f
                    }
                    _ if pkt.len() >= 14 => pkt.clone(),
                    _ => continue,
                };
                let want = user.matches(&pkt).unwrap();
                let d = match loaded.test_run("f_direct", &frame) {
                    Ok(v) => v,
                    Err(err) if err.to_string().contains("Invalid argument") => {
                        // The kernel refuses some frames (e.g. an IP ethertype with a
                        // truncated IP header) before running the program.
                        refused += 1;
                        continue;
                    }
                    Err(err) => panic!("test_run `{e}` {link:?} on {frame:02x?}: {err}"),
                };
                let k = loaded.test_run("f_kmem", &frame).unwrap();
                assert_eq!(d, want as u32, "direct `{e}` {link:?} on {pkt:02x?}");
                assert_eq!(k, want as u32, "kernel-memory `{e}` {link:?} on {pkt:02x?}");
                #[cfg(feature = "oracle")]
                assert_eq!(
                    pcap.filter(&pkt),
                    want,
                    "libpcap (unoptimized) `{e}` on {pkt:02x?}"
                );
                runs += 1;
            }
        }
    }
    eprintln!(
        "kernel: {exprs} filters loaded (2 programs each), {runs} packets run in-kernel on both, {refused} frames refused by test_run"
    );
    assert!(
        exprs >= 40 && runs >= 500,
        "only {exprs} filters / {runs} runs"
    );
}

/// Common filters (transport ports and flags through variable offsets, VLAN, MPLS,
/// protochain, arithmetic) that must always pass the verifier.
fn fixed_corpus() -> Vec<Expr> {
    let p = Expr::Prim;
    let and = |a, b| Expr::And(Box::new(a), Box::new(b));
    let ld = |proto, off, size| Arith::Load {
        proto,
        offset: Box::new(Arith::Num(off)),
        size,
    };
    let flags = Expr::Rel {
        op: RelOp::Ne,
        lhs: Arith::Bin {
            op: ArithOp::And,
            lhs: Box::new(ld(Proto::Tcp, 13, 1)),
            rhs: Box::new(Arith::Num(2)),
        },
        rhs: Arith::Num(0),
    };
    let parse = |s: &str| pwru::pcapc::parse(s).unwrap().unwrap();
    vec![
        // Geneve: inner offsets computed from the outer IP version, the options length
        // and the encapsulated protocol
        parse("geneve and tcp port 80"),
        parse("geneve 7 and ether host 00:01:02:03:04:05 and ip"),
        parse("not (udp and geneve and vlan and ip6 and udp port 53)"),
        parse("geneve and geneve and tcp[13] & 2 != 0"),
        parse("geneve and tcp"),
        // a word at a sum of two loaded lengths (aligned, from the window or the
        // helper), a byte at the wire length, a bit test
        parse("tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420"),
        parse("ip[len] = 1"),
        parse("byte 1 & 2"),
        // four protochain walks share the step budget; the verifier follows them all
        parse("protochain 6 or protochain 17"),
        // LLC, OSI, DECnet, AppleTalk
        parse("l1 or l2 or decnet host 1.2 or stp or atalk or ipx"),
        parse("vlan and (isis proto 15 or iso proto 0x81 or netbeui)"),
        // tests libpcap's optimizer would refuse, kept where their outcome is irrelevant
        parse("(igmp[46:1] / (ip[2] * 0) != 3) or ip"),
        parse("(igmp[46:1] >> (ip[2] * 0 + 40) != 3) or ip"),
        // the checked pointer/index reused across tests
        parse("src or dst port 53 and tcp[13] & 2 != 0"),
        p(Prim::Port {
            proto: None,
            dir: Dir::SrcOrDst,
            port: 53,
        }),
        p(Prim::PortRange {
            proto: Some(Proto::Tcp),
            dir: Dir::Dst,
            lo: 1000,
            hi: 2000,
        }),
        and(p(Prim::Proto(Proto::Tcp)), flags),
        and(
            p(Prim::Vlan(Some(10))),
            p(Prim::Port {
                proto: Some(Proto::Udp),
                dir: Dir::Dst,
                port: 4789,
            }),
        ),
        and(
            p(Prim::Mpls(None)),
            p(Prim::Host4 {
                proto: None,
                dir: Dir::Src,
                addr: 0x0a00_0001,
            }),
        ),
        p(Prim::Protochain {
            under: None,
            proto: 17,
        }),
        Expr::Rel {
            op: RelOp::Gt,
            lhs: ld(Proto::Udp, 4, 2),
            rhs: ld(Proto::Tcp, 2, 2),
        },
        Expr::Rel {
            op: RelOp::Eq,
            lhs: ld(Proto::Icmp6, 0, 1),
            rhs: Arith::Num(135),
        },
        Expr::Rel {
            op: RelOp::Eq,
            lhs: Arith::Load {
                proto: Proto::Ip,
                offset: Box::new(ld(Proto::Ether, 0, 4)),
                size: 4,
            },
            rhs: Arith::Num(1),
        },
    ]
}

/// An allow-list of 3000 hosts (over 32767 instructions: islands of jumps) passes the
/// verifier on both back ends and finds its hosts.
#[test]
fn large_allow_lists_load_and_run() {
    if !is_root() {
        eprintln!("skipped: BPF_PROG_LOAD/BPF_PROG_TEST_RUN need root");
        return;
    }
    let _ = load::raise_rlimits();
    let text = (0..3000u32)
        .map(|i| format!("host 10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff))
        .collect::<Vec<_>>()
        .join(" or ");
    let e = pwru::pcapc::parse(&text).unwrap().unwrap();
    let programs = [
        ("f_direct", ProgramKind::SchedClsDirect),
        ("f_kmem", ProgramKind::SchedClsKernelMemory),
    ]
    .map(|(name, kind)| {
        let program = compile_program(&e, LinkType::Ethernet, kind).unwrap();
        assert!(
            program.len() > 32767,
            "{name}: {} instructions",
            program.len()
        );
        ProgramSpec {
            name: name.into(),
            kind: ProgKind::SchedCls,
            program,
        }
    });
    let obj = ObjectSpec {
        maps: vec![],
        programs: programs.into(),
    };
    let mut loaded = load::load(&obj, &LoadOptions::default())
        .unwrap_or_else(|err| panic!("verifier rejected the allow-list: {err}"));
    let frame = |src: [u8; 4], dst: [u8; 4]| {
        let mut f = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 8, 0];
        f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&[0; 20]);
        f
    };
    for (src, dst, want) in [
        ([10, 0, 0, 0], [192, 168, 0, 1], 1),
        ([192, 168, 0, 1], [10, 0, 11, 183], 1),
        ([192, 168, 0, 1], [10, 0, 11, 184], 0),
    ] {
        for name in ["f_direct", "f_kmem"] {
            assert_eq!(
                loaded.test_run(name, &frame(src, dst)).unwrap(),
                want,
                "{name} {src:?} -> {dst:?}"
            );
        }
    }
}
