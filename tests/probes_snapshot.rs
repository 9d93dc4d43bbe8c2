//! Disassembly snapshots of every probe program variant (attachments × options × filters),
//! generated from a fixed kernel BTF so that a rewrite of the generator shows every change.
//!
//! The BTF is `tests/data/vmlinux-6.18.btf.gz` (Debian-built 6.18 x86-64 `vmlinux` BTF), so
//! the listings do not depend on the machine. Listings live in `tests/snapshots/probes/`;
//! `PWRU_BLESS=1 cargo test --test probes_snapshot` rewrites them after an intended change.

use std::io::Read;
use std::path::{Path, PathBuf};

use pwru::asm::{disassemble_program, Program};
use pwru::btf::{ArchFacts, KernelBtf, Kmods, SkbLayout};
use pwru::output::sections::bpfmap::BpfMapFields;
use pwru::output::sections::skb_dump::SkbDump;
use pwru::output::OutputOptions;
use pwru::probes::{
    self, build_clone_entry, build_clone_return, build_map_lookup_entry, build_untrack_with,
    skb_expr, Attachment, KprobeLink, MapOp, ProbeOptions, RecordSections, StackTracking,
    TunnelFilters, UntrackOptions, NON_SKB,
};

/// What the probe records for these output options.
fn sections(opts: OutputOptions) -> RecordSections {
    pwru::output::sections::record_sections(&opts)
}

/// Opens the fixture BTF (decompressed into a temporary file once per test process).
fn fixture_btf() -> KernelBtf {
    let gz = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vmlinux-6.18.btf.gz");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&gz).expect("fixture BTF present"))
        .read_to_end(&mut raw)
        .expect("fixture BTF decompresses");
    let dir = std::env::temp_dir().join(format!("pwru-snapshot-btf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("vmlinux");
    std::fs::write(&path, raw).expect("write fixture BTF");
    let btf = KernelBtf::open(&path, &dir, &Kmods::None).expect("fixture BTF parses");
    std::fs::remove_dir_all(&dir).ok();
    btf
}

/// The fixture's `pt_regs` layout and stack size: x86-64 with 4 KiB pages and, without a
/// kernel configuration, no KASAN (16 KiB stacks).
fn fixture_arch(btf: &KernelBtf) -> ArchFacts {
    ArchFacts::resolve_with(btf, 4096, None).expect("fixture pt_regs resolves")
}

const SKB_EXPR: &str = "skb->dev->ifindex == 9 && !(skb->mark & 0xff) \
    || skb->len > 0x100000000 || skb->pkt_type == 3 \
    || skb->sk->__sk_common.skc_family == 10 || skb->dev";

/// Named option sets: the ones the verifier suite loads, plus filters of each kind.
fn option_sets(btf: &KernelBtf) -> Vec<(&'static str, ProbeOptions)> {
    let none = ProbeOptions::new(fixture_arch(btf));
    let filter = |s: &str| pwru::pcapc::parse(s).expect("test filter parses");
    let skb_expr =
        skb_expr::compile_filter(btf, skb_expr::SKB, SKB_EXPR).expect("skb expression resolves");
    let metadata: Vec<String> = ["skb->hash", "skb->dev->ifindex", "skb->pkt_type"]
        .map(String::from)
        .to_vec();
    let skb_metadata =
        skb_expr::compile_metadata(btf, skb_expr::SKB, &metadata).expect("metadata resolves");
    let skb_id = btf.vmlinux_struct_id("sk_buff").expect("sk_buff id");
    let shinfo_id = btf
        .vmlinux_struct_id("skb_shared_info")
        .expect("skb_shared_info id");
    let task_stack = btf
        .optional_member("task_struct", "stack")
        .expect("BTF readable")
        .expect("task_struct.stack");
    let by_stack = StackTracking {
        task_stack_offset: Some(task_stack.offset_bytes()),
    };
    let everything = ProbeOptions {
        arch: none.arch.clone(),
        filter: filter("dst host 10.0.0.2 and tcp and dst port 8080"),
        tunnel: TunnelFilters::default(),
        mark: Some((0xa00, 0xff00)),
        netns: Some(4026531840),
        ifindex: Some(1),
        track_skb: true,
        track_stackid: Some(by_stack),
        has_get_func_ip: true,
        skb_expr: Some(skb_expr.clone()),
        xdp_expr: None,
        track_xdp: false,
        sections: sections(OutputOptions {
            meta: true,
            tuple: true,
            stack: true,
            caller: true,
            cb: true,
            skb_metadata: skb_metadata.clone(),
            skb_dump: SkbDump::new(Some(skb_id), Some(shinfo_id), 4096),
            ..OutputOptions::default()
        }),
    };
    let mut sets = vec![
        ("bare", none.clone()),
        (
            "defaults",
            ProbeOptions {
                has_get_func_ip: true,
                sections: sections(OutputOptions {
                    meta: true,
                    tuple: true,
                    ..OutputOptions::default()
                }),
                ..none.clone()
            },
        ),
        ("everything", everything.clone()),
        (
            "everything-no-func-ip",
            ProbeOptions {
                has_get_func_ip: false,
                ..everything.clone()
            },
        ),
        (
            "track-skb",
            ProbeOptions {
                filter: filter("icmp"),
                track_skb: true,
                sections: sections(OutputOptions {
                    meta: true,
                    tuple: true,
                    ..OutputOptions::default()
                }),
                ..none.clone()
            },
        ),
        (
            "stackid-no-task-stack",
            ProbeOptions {
                track_stackid: Some(StackTracking::default()),
                ..none.clone()
            },
        ),
        (
            "stackid-filter",
            ProbeOptions {
                filter: filter("icmp"),
                track_stackid: Some(by_stack),
                sections: sections(OutputOptions {
                    meta: true,
                    ..OutputOptions::default()
                }),
                ..none.clone()
            },
        ),
        (
            "skb-expr-metadata-dump",
            ProbeOptions {
                skb_expr: Some(skb_expr),
                sections: sections(OutputOptions {
                    skb_metadata,
                    skb_dump: SkbDump::new(None, Some(shinfo_id), 100),
                    ..OutputOptions::default()
                }),
                ..none.clone()
            },
        ),
        (
            "stack-caller-cb",
            ProbeOptions {
                sections: sections(OutputOptions {
                    stack: true,
                    caller: true,
                    cb: true,
                    ..OutputOptions::default()
                }),
                ..none.clone()
            },
        ),
        (
            "tunnel",
            ProbeOptions {
                filter: filter("udp and dst port 4789"),
                tunnel: TunnelFilters {
                    l2: filter("ether proto 0x0800"),
                    l3: filter("tcp and dst port 8080"),
                },
                sections: sections(OutputOptions {
                    meta: true,
                    tuple: true,
                    tunnel: true,
                    ..OutputOptions::default()
                }),
                ..none.clone()
            },
        ),
        (
            "tunnel-l3-only",
            ProbeOptions {
                tunnel: TunnelFilters {
                    l2: None,
                    l3: filter("ip6 and udp"),
                },
                sections: sections(OutputOptions {
                    tunnel: true,
                    ..OutputOptions::default()
                }),
                ..none.clone()
            },
        ),
        (
            "pcap",
            ProbeOptions {
                filter: filter("tcp"),
                sections: sections(OutputOptions {
                    meta: true,
                    tuple: true,
                    pcap_snaplen: Some(256),
                    ..OutputOptions::default()
                }),
                ..none.clone()
            },
        ),
        (
            "pcap-only",
            ProbeOptions {
                sections: sections(OutputOptions {
                    pcap_snaplen: Some(100),
                    ..OutputOptions::default()
                }),
                ..none.clone()
            },
        ),
    ];
    // The XDP twins: on XDP programs the xdp expression and fields, the skb ones elsewhere;
    // the mark filter and the skb-only sections (cb, dump) leave XDP programs alone.
    let xdp_metadata: Vec<String> = ["xdp->rxq->queue_index", "xdp->rxq->dev->ifindex"]
        .map(String::from)
        .to_vec();
    sets.push((
        "xdp-expr-metadata",
        ProbeOptions {
            filter: filter("udp and dst port 8086"),
            mark: Some((0xa00, 0xff00)),
            ifindex: Some(2),
            skb_expr: Some(
                skb_expr::compile_filter(btf, skb_expr::SKB, "skb->len > 10")
                    .expect("skb expression resolves"),
            ),
            xdp_expr: Some(
                skb_expr::compile_filter(btf, skb_expr::XDP, "xdp->rxq->dev->ifindex == 2")
                    .expect("xdp expression resolves"),
            ),
            sections: sections(OutputOptions {
                meta: true,
                tuple: true,
                cb: true,
                skb_metadata: skb_expr::compile_metadata(btf, skb_expr::SKB, &["skb->hash".into()])
                    .expect("metadata resolves"),
                xdp_metadata: skb_expr::compile_metadata(btf, skb_expr::XDP, &xdp_metadata)
                    .expect("xdp metadata resolves"),
                ..OutputOptions::default()
            }),
            ..none.clone()
        },
    ));
    // --filter-track-skb with --filter-trace-xdp: skb probes look the skb's head up among
    // the XDP buffers that matched; the XDP fexit half records them.
    sets.push((
        "track-xdp",
        ProbeOptions {
            filter: filter("udp"),
            track_skb: true,
            track_xdp: true,
            sections: sections(OutputOptions {
                meta: true,
                tuple: true,
                ..OutputOptions::default()
            }),
            ..none.clone()
        },
    ));
    sets.push((
        "journey-clones",
        ProbeOptions {
            filter: filter("icmp"),
            track_skb: true,
            sections: sections(OutputOptions {
                tuple: true,
                journey: true,
                clone_parents: true,
                ..OutputOptions::default()
            }),
            ..none.clone()
        },
    ));
    for (name, expr) in [
        ("filter-arp", "arp and arp[7] = 1"),
        ("filter-protochain", "ip6 protochain 58"),
        ("filter-tcpflags", "tcp[tcpflags] = tcp-syn"),
        ("filter-vlan", "vlan 10 and ip and udp port 53"),
        (
            "filter-not-net",
            "not (host 10.0.0.1 or net fd00::/64) and greater 100",
        ),
        (
            "filter-outbound",
            "outbound and ifindex 1 and tcp port 8080",
        ),
    ] {
        sets.push((
            name,
            ProbeOptions {
                filter: filter(expr),
                sections: sections(OutputOptions {
                    meta: true,
                    tuple: true,
                    ..OutputOptions::default()
                }),
                ..none.clone()
            },
        ));
    }
    sets
}

/// Attachments: kprobe arguments 1 and 3, kprobe-multi argument 2, a tracepoint with a drop
/// reason and one without, the skb-context (test-run) program, a non-skb kprobe, the
/// fentry and fexit programs on a tc program and on an XDP program, and the fentry
/// backend's program on a kernel function with its skb second.
fn attachments() -> Vec<(&'static str, Attachment)> {
    vec![
        (
            "kprobe1",
            Attachment::Kprobe {
                skb_arg: 1,
                link: KprobeLink::Perf,
                map_op: None,
            },
        ),
        (
            "kprobe3",
            Attachment::Kprobe {
                skb_arg: 3,
                link: KprobeLink::Perf,
                map_op: None,
            },
        ),
        (
            "kpm2",
            Attachment::Kprobe {
                skb_arg: 2,
                link: KprobeLink::MultiByCookie,
                map_op: None,
            },
        ),
        (
            "tp-drop",
            Attachment::Tracepoint {
                id: 7,
                skb_arg: 0,
                nargs: 4,
                drop_reason_arg: Some(2),
            },
        ),
        (
            "tp",
            Attachment::Tracepoint {
                id: 3,
                skb_arg: 1,
                nargs: 2,
                drop_reason_arg: None,
            },
        ),
        ("skbctx", Attachment::SkbContext),
        (
            "nonskb",
            Attachment::Kprobe {
                skb_arg: NON_SKB,
                link: KprobeLink::Perf,
                map_op: None,
            },
        ),
        (
            "tc-entry",
            Attachment::TcProgram {
                prog_id: 42,
                exit: false,
            },
        ),
        (
            "tc-exit",
            Attachment::TcProgram {
                prog_id: 42,
                exit: true,
            },
        ),
        (
            "xdp-entry",
            Attachment::XdpProgram {
                prog_id: 43,
                exit: false,
            },
        ),
        (
            "xdp-exit",
            Attachment::XdpProgram {
                prog_id: 43,
                exit: true,
            },
        ),
        ("fentry2", Attachment::Fentry { skb_arg: 2 }),
    ]
}

/// Every (snapshot name, program) pair.
fn variants() -> Vec<(String, Program)> {
    let btf = fixture_btf();
    let layout = SkbLayout::resolve(&btf).expect("layout");
    let arch = fixture_arch(&btf);
    let mut out = Vec::new();
    for (set, opts) in option_sets(&btf) {
        for (at_name, at) in attachments() {
            let refused = opts.sections.iter().any(|s| s.check(&at).is_err())
                || (matches!(
                    at,
                    Attachment::Kprobe {
                        skb_arg: NON_SKB,
                        ..
                    }
                ) && opts.track_stackid.is_none());
            match probes::build(&layout, &opts, &at) {
                Ok(p) => {
                    assert!(!refused, "{set}/{at_name}: expected a refusal");
                    out.push((format!("probe-{set}-{at_name}"), p));
                }
                Err(e) => assert!(refused, "{set}/{at_name}: build failed: {e}"),
            }
        }
    }
    let stack = StackTracking {
        task_stack_offset: Some(32),
    };
    for (at_name, at) in attachments().into_iter().take(6) {
        for (opt_name, opts) in [
            ("skb", (true, None)),
            ("stackid", (false, Some(stack))),
            ("both", (true, Some(stack))),
            ("stackid-no-task", (false, Some(StackTracking::default()))),
        ] {
            let opts = UntrackOptions {
                track_skb: opts.0,
                track_stackid: opts.1,
                clone_parents: false,
            };
            let p = build_untrack_with(&at, &arch, opts).expect("untrack builds");
            out.push((format!("untrack-{opt_name}-{at_name}"), p));
        }
    }
    out.push(("clone-entry".into(), build_clone_entry(&arch.regs).unwrap()));
    out.push((
        "clone-return".into(),
        build_clone_return(&arch.regs, false).unwrap(),
    ));
    // A kprobe-multi link made by ftrace location: its events carry the function's entry
    // (`bpf_get_func_ip`) where a link by name records its cookie.
    let defaults = option_sets(&btf)
        .into_iter()
        .find(|(set, _)| *set == "defaults")
        .map(|(_, opts)| opts)
        .expect("the defaults set");
    let by_location = Attachment::Kprobe {
        skb_arg: 2,
        link: KprobeLink::MultiByAddress,
        map_op: None,
    };
    out.push((
        "probe-defaults-kpm2-by-location".into(),
        probes::build(&layout, &defaults, &by_location).expect("builds"),
    ));
    // --output-journey with tracking: clones record their parent, which untrack forgets.
    out.push((
        "clone-return-parents".into(),
        build_clone_return(&arch.regs, true).unwrap(),
    ));
    let (at_name, at) = &attachments()[0];
    let opts = UntrackOptions {
        track_skb: true,
        track_stackid: None,
        clone_parents: true,
    };
    out.push((
        format!("untrack-clone-parents-{at_name}"),
        build_untrack_with(at, &arch, opts).expect("untrack builds"),
    ));
    // --output-bpfmap (with helper tracking's by-stackid attribution): the map
    // operations' record programs, a probe that records no map access, and the lookup's
    // entry half.
    let bpfmap = ProbeOptions {
        track_stackid: Some(StackTracking {
            task_stack_offset: Some(32),
        }),
        has_get_func_ip: true,
        sections: sections(OutputOptions {
            tuple: true,
            bpfmap: Some(BpfMapFields::resolve(&btf).expect("struct bpf_map")),
            ..OutputOptions::default()
        }),
        ..ProbeOptions::new(arch.clone())
    };
    for (name, map_op) in [
        ("nonskb", None),
        ("map-update", Some(MapOp::Update)),
        ("map-delete", Some(MapOp::Delete)),
        ("map-lookup", Some(MapOp::Lookup)),
        ("map-lookup-elem", Some(MapOp::LookupElem)),
    ] {
        let at = Attachment::Kprobe {
            skb_arg: NON_SKB,
            link: KprobeLink::Perf,
            map_op,
        };
        let p = probes::build(&layout, &bpfmap, &at).expect("bpfmap probe builds");
        out.push((format!("probe-bpfmap-{name}"), p));
    }
    out.push((
        "map-lookup-entry".into(),
        build_map_lookup_entry(&arch.regs).unwrap(),
    ));
    out
}

fn snapshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/probes")
}

#[test]
fn probe_programs_match_their_snapshots() {
    let bless = std::env::var_os("PWRU_BLESS").is_some();
    let dir = snapshot_dir();
    let mut mismatched = Vec::new();
    let mut names = Vec::new();
    for (name, program) in variants() {
        let listing = disassemble_program(&program);
        let path = dir.join(format!("{name}.txt"));
        names.push(format!("{name}.txt"));
        if bless {
            std::fs::write(&path, &listing).expect("write snapshot");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(want) if want == listing => {}
            Ok(_) => mismatched.push(format!("{name} (differs)")),
            Err(_) => mismatched.push(format!("{name} (no snapshot)")),
        }
    }
    // No stale snapshot files either.
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("snapshot dir")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    names.sort();
    if bless {
        for stale in on_disk.iter().filter(|f| !names.contains(f)) {
            std::fs::remove_file(dir.join(stale)).ok();
        }
        return;
    }
    let stale: Vec<&String> = on_disk.iter().filter(|f| !names.contains(f)).collect();
    assert!(stale.is_empty(), "stale snapshots: {stale:?}");
    assert!(
        mismatched.is_empty(),
        "{} of {} probe listings differ from tests/snapshots/probes (diff the files after \
         PWRU_BLESS=1 to see how; explain every difference): {mismatched:?}",
        mismatched.len(),
        names.len()
    );
    eprintln!("{} probe listings match their snapshots", names.len());
}
