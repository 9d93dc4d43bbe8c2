//! Every probe program variant we generate (backends × options × filters) must pass the
//! running kernel's verifier. Needs root and BTF; skips with a printed reason otherwise.

use pwru::attach::{self, BackendKind, Target};
use pwru::btf::{ArchFacts, KernelBtf, Kmods, SkbLayout};
use pwru::load::{self, LoadOptions, MapKind, MapSpec, ObjectSpec};
use pwru::output::sections::bpfmap::BpfMapFields;
use pwru::output::sections::skb_dump::SkbDump;
use pwru::output::OutputOptions;
use pwru::probes::{
    self, maps, skb_expr, Attachment, KprobeLink, MapOp, ProbeOptions, RecordSections,
    StackTracking, TunnelFilters, UntrackOptions, NON_SKB,
};

/// What the probe records for these output options.
fn sections(opts: OutputOptions) -> RecordSections {
    pwru::output::sections::record_sections(&opts)
}

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !std::path::Path::new(pwru::btf::SYS_VMLINUX_BTF).exists() {
        return Some("no /sys/kernel/btf/vmlinux".into());
    }
    None
}

fn all_maps() -> Vec<MapSpec> {
    vec![
        MapSpec::ring_buf(maps::EVENTS, 1 << 16),
        MapSpec::new(maps::LOST, MapKind::PerCpuArray, 4, 8, 1),
        MapSpec::new(maps::TRACKED_SKBS, MapKind::Hash, 8, 4, 64),
        MapSpec::new(maps::STACKID_SKB, MapKind::Hash, 8, 8, 64),
        MapSpec::new(maps::SKB_STACKID, MapKind::Hash, 8, 8, 64),
        MapSpec::new(maps::CLONE_STASH, MapKind::Hash, 8, 8, 64),
        MapSpec::new(maps::CLONE_PARENTS, MapKind::LruHash, 8, 8, 64),
        MapSpec::new(
            maps::STACKS,
            MapKind::StackTrace,
            4,
            maps::STACK_DEPTH * 8,
            64,
        ),
    ]
}

/// The maps for `opts`: all of them, plus the scratch area of variable-length records.
fn maps_for(opts: &ProbeOptions) -> Vec<MapSpec> {
    let mut m = all_maps();
    m.extend(probes::record::scratch_map(&opts.sections).map(|d| d.spec()));
    m
}

/// Every program of `spec` was loaded with BTF of its own: one function record, named as
/// the program (what `bpftool prog` shows and fentry needs).
fn assert_loaded_with_btf(obj: &load::LoadedObject, spec: &ObjectSpec, label: &str) {
    assert_eq!(obj.btf_fallback(), None, "{label}: loaded without BTF");
    for p in &spec.programs {
        let info = obj.info(&p.name).unwrap();
        assert!(info.btf_id != 0, "{label} / {}: no BTF", p.name);
        assert_eq!(info.nr_func_info, 1, "{label} / {}", p.name);
        let fd = obj.program_fd(&p.name).unwrap();
        let func = load::prog_func_name(fd).unwrap();
        assert_eq!(func.as_deref(), Some(p.name.as_str()), "{label}");
    }
}

/// Exercises every code path of the skb expression compiler: pointer chains, `.` into
/// embedded structs, bitfields, signed fields, masks, 64-bit constants, `!`, `&&`, `||`.
const SKB_EXPR: &str = "skb->dev->ifindex == 9 && !(skb->mark & 0xff) \
    || skb->len > 0x100000000 || skb->pkt_type == 3 \
    || skb->sk->__sk_common.skc_family == 10 || skb->dev->ifindex >= -1 \
    || skb->hash & 0xffffffff00 != 0 || skb->dev";

fn option_sets(btf: &KernelBtf) -> Vec<(&'static str, ProbeOptions)> {
    let none = ProbeOptions::new(ArchFacts::resolve(btf).expect("this kernel's pt_regs resolves"));
    let filter = |s: &str| pwru::pcapc::parse(s).expect("test filter parses");
    let skb_expr =
        skb_expr::compile_filter(btf, skb_expr::SKB, SKB_EXPR).expect("skb expression resolves");
    let metadata: Vec<String> = [
        "skb->hash",
        "skb->dev->ifindex",
        "skb->pkt_type",
        "skb->dev",
    ]
    .map(String::from)
    .to_vec();
    let skb_metadata =
        skb_expr::compile_metadata(btf, skb_expr::SKB, &metadata).expect("metadata resolves");
    let skb_id = btf.vmlinux_struct_id("sk_buff").expect("sk_buff id");
    let shinfo_id = btf
        .vmlinux_struct_id("skb_shared_info")
        .expect("skb_shared_info id");
    let skb_dump = SkbDump::new(Some(skb_id), Some(shinfo_id), 4096);
    let task_stack = btf
        .optional_member("task_struct", "stack")
        .expect("BTF readable")
        .expect("task_struct.stack in BTF");
    let by_stack = StackTracking {
        task_stack_offset: Some(task_stack.offset_bytes()),
    };
    let tunnel = TunnelFilters {
        l2: filter("ether proto 0x0800 or vlan"),
        l3: filter("tcp and dst port 8080 and tcp[tcpflags] & tcp-syn != 0"),
    };
    let everything = ProbeOptions {
        arch: none.arch.clone(),
        filter: filter("dst host 10.0.0.2 and tcp and dst port 8080"),
        tunnel: tunnel.clone(),
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
            tunnel: true,
            stack: true,
            caller: true,
            cb: true,
            skb_metadata: skb_metadata.clone(),
            skb_dump,
            // The largest snap length, after the largest other sections.
            pcap_snaplen: Some(pwru::output::sections::pcap::MAX_SNAPLEN),
            ..OutputOptions::default()
        }),
    };
    let mut sets = vec![
        ("bare", none.clone()),
        ("everything", everything.clone()),
        (
            "no func ip",
            ProbeOptions {
                has_get_func_ip: false,
                ..everything.clone()
            },
        ),
        (
            "by stackid only, no task_struct.stack",
            ProbeOptions {
                track_stackid: Some(StackTracking::default()),
                ..none.clone()
            },
        ),
        (
            "by stackid and a filter, no skb tracking",
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
            "skb expr, metadata and dump only",
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
            "tunnel filters and output, no other filter",
            ProbeOptions {
                tunnel: TunnelFilters {
                    l2: None,
                    ..tunnel.clone()
                },
                sections: sections(OutputOptions {
                    tunnel: true,
                    tcp_flags: true,
                    ..OutputOptions::default()
                }),
                ..none.clone()
            },
        ),
        (
            "journey with tracking: clone parents",
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
        ),
        (
            "pcap output with a filter",
            ProbeOptions {
                filter: filter("tcp or icmp"),
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
            "pcap output only, smallest snap length",
            ProbeOptions {
                sections: sections(OutputOptions {
                    pcap_snaplen: Some(pwru::output::sections::pcap::MIN_SNAPLEN),
                    ..OutputOptions::default()
                }),
                ..none.clone()
            },
        ),
        (
            "tunnel l2 filter with the filter",
            ProbeOptions {
                filter: filter("udp dst port 4789"),
                tunnel: TunnelFilters { l3: None, ..tunnel },
                ..none.clone()
            },
        ),
    ];
    for expr in [
        "arp and arp[7] = 1",
        "ip6 protochain 58",
        "tcp[tcpflags] = tcp-syn",
        "ip6[53] & 0x3f = 0x2",
        "(((ip[2:2] - ((ip[0]&0xf)<<2)) - ((tcp[12]&0xf0)>>2)) != 0)",
        "vlan 10 and ip and udp port 53",
        "not (host 10.0.0.1 or net fd00::/64) and greater 100",
        "outbound and ifindex 1 and tcp port 8080",
    ] {
        sets.push((
            expr,
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

#[test]
fn every_probe_variant_passes_the_verifier() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let btf = KernelBtf::open_system(&Kmods::None).expect("open BTF");
    let layout = SkbLayout::resolve(&btf).expect("layout");
    let arch = ArchFacts::resolve(&btf).expect("this kernel's pt_regs resolves");
    let tracepoints: Vec<Target> =
        attach::targets::select_tracepoints(&btf.skb_tracepoints().unwrap(), |_| true);
    assert!(!tracepoints.is_empty());
    let func_targets: Vec<Target> = (1..=5)
        .map(|arg| Target {
            name: format!("f{arg}"),
            module: None,
            skb_arg: arg,
            drop_reason_arg: None,
            nargs: 0,
            btf_id: 0,
            by_value: false,
            ftrace_addr: None,
        })
        .collect();
    // With ftrace locations, kprobe-multi links by location (its programs record the
    // function's entry instead of the cookie).
    let located_targets: Vec<Target> = func_targets
        .iter()
        .map(|t| Target {
            ftrace_addr: Some(0xffff_ffff_8100_0004 + u64::from(t.skb_arg) * 0x100),
            ..t.clone()
        })
        .collect();
    let mut loaded = 0;
    for (label, opts) in option_sets(&btf) {
        for (kind, targets) in [
            (BackendKind::Kprobe, &func_targets),
            (BackendKind::KprobeMulti, &func_targets),
            (BackendKind::KprobeMulti, &located_targets),
            (BackendKind::Tracepoint, &tracepoints),
        ] {
            let backend = attach::backend(kind);
            let mut build = |a: &Attachment| probes::build(&layout, &opts, a);
            let mut programs = backend
                .programs(targets, &mut build)
                .unwrap_or_else(|e| panic!("{label} / {}: build: {e}", kind.name()));
            // --filter-non-skb-funcs: the by-stackid kprobe program.
            if opts.track_stackid.is_some() && kind != BackendKind::Tracepoint {
                let at = Attachment::Kprobe {
                    skb_arg: NON_SKB,
                    link: KprobeLink::Perf,
                    map_op: None,
                };
                programs.push(load::ProgramSpec {
                    name: "non_skb".into(),
                    kind: load::ProgKind::KProbe,
                    program: probes::build(&layout, &opts, &at)
                        .unwrap_or_else(|e| panic!("{label} / non-skb: build: {e}")),
                });
            }
            let n = programs.len();
            let spec = ObjectSpec {
                maps: maps_for(&opts),
                programs,
            };
            match load::load(&spec, &LoadOptions::default()) {
                Ok(obj) => assert_loaded_with_btf(&obj, &spec, label),
                Err(e) => panic!(
                    "{label} / {}: the verifier rejected a program: {e}",
                    kind.name()
                ),
            }
            loaded += n;
        }
        // The BPF_PROG_TEST_RUN variant (SCHED_CLS, r1 = skb); it refuses --output-stack.
        let skb_opts = ProbeOptions {
            sections: opts
                .sections
                .iter()
                .filter(|s| s.check(&Attachment::SkbContext).is_ok())
                .cloned()
                .collect(),
            ..opts.clone()
        };
        let spec = ObjectSpec {
            maps: maps_for(&skb_opts),
            programs: vec![load::ProgramSpec {
                name: "skb_ctx".into(),
                kind: load::ProgKind::SchedCls,
                program: probes::build(&layout, &skb_opts, &Attachment::SkbContext)
                    .unwrap_or_else(|e| panic!("{label} / skb context: build: {e}")),
            }],
        };
        if let Err(e) = load::load(&spec, &LoadOptions::default()) {
            panic!("{label} / skb context: the verifier rejected the program: {e}");
        }
        loaded += 1;
    }
    // The untrack programs too, for each set of maps they clean.
    for a in [
        Attachment::Kprobe {
            skb_arg: 1,
            link: KprobeLink::Perf,
            map_op: None,
        },
        Attachment::Tracepoint {
            id: 0,
            skb_arg: 0,
            nargs: 1,
            drop_reason_arg: None,
        },
        Attachment::SkbContext,
    ] {
        let kind = match a {
            Attachment::Kprobe { .. } => load::ProgKind::KProbe,
            Attachment::Tracepoint { .. } => load::ProgKind::RawTracepoint("kfree_skb".into()),
            Attachment::SkbContext => load::ProgKind::SchedCls,
            // fentry programs cannot load on this host (EPERM); the VM suite loads them.
            Attachment::TcProgram { .. }
            | Attachment::XdpProgram { .. }
            | Attachment::Fentry { .. } => continue,
        };
        let task_stack_offset = btf
            .optional_member("task_struct", "stack")
            .expect("BTF readable")
            .map(|f| f.offset_bytes());
        let by_stack = Some(StackTracking { task_stack_offset });
        let no_task = Some(StackTracking::default());
        for (track_skb, track_stackid) in [
            (true, None),
            (false, by_stack),
            (true, by_stack),
            (false, no_task),
        ] {
            let opts = UntrackOptions {
                track_skb,
                track_stackid,
                clone_parents: track_skb,
            };
            let spec = ObjectSpec {
                maps: all_maps(),
                programs: vec![load::ProgramSpec {
                    name: "untrack".into(),
                    kind: kind.clone(),
                    program: probes::build_untrack_with(&a, &arch, opts).unwrap(),
                }],
            };
            load::load(&spec, &LoadOptions::default())
                .unwrap_or_else(|e| panic!("untrack {a:?} {opts:?}: {e}"));
            loaded += 1;
        }
    }
    // Clone following: the kprobe and the kretprobe on skb_clone and friends.
    let spec = ObjectSpec {
        maps: all_maps(),
        programs: vec![
            load::ProgramSpec {
                name: "clone_entry".into(),
                kind: load::ProgKind::KProbe,
                program: probes::build_clone_entry(&arch.regs).unwrap(),
            },
            load::ProgramSpec {
                name: "clone_return".into(),
                kind: load::ProgKind::KRetProbe,
                program: probes::build_clone_return(&arch.regs, false).unwrap(),
            },
            load::ProgramSpec {
                name: "clone_parents".into(),
                kind: load::ProgKind::KRetProbe,
                program: probes::build_clone_return(&arch.regs, true).unwrap(),
            },
        ],
    };
    load::load(&spec, &LoadOptions::default()).expect("clone programs load");
    loaded += 3;
    eprintln!("{loaded} probe programs accepted by the verifier");
}

/// `--output-bpfmap`: the map operations' record programs (kprobes, and the lookup's
/// kretprobe with its entry kprobe), alone and before `--output-pcap`'s variable bytes.
#[test]
fn bpfmap_programs_pass_the_verifier() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let btf = KernelBtf::open_system(&Kmods::None).expect("kernel BTF");
    let layout = SkbLayout::resolve(&btf).expect("sk_buff layout");
    let arch = ArchFacts::resolve(&btf).expect("pt_regs layout");
    let fields = BpfMapFields::resolve(&btf).expect("struct bpf_map");
    let task_stack_offset = btf
        .optional_member("task_struct", "stack")
        .expect("BTF readable")
        .map(|f| f.offset_bytes());
    for pcap in [None, Some(pwru::output::sections::pcap::MAX_SNAPLEN)] {
        let opts = ProbeOptions {
            track_stackid: Some(StackTracking { task_stack_offset }),
            has_get_func_ip: load::func_ip_available().unwrap_or(false),
            sections: sections(OutputOptions {
                meta: true,
                tuple: true,
                bpfmap: Some(fields),
                pcap_snaplen: pcap,
                ..OutputOptions::default()
            }),
            ..ProbeOptions::new(arch.clone())
        };
        let mut programs = Vec::new();
        for (name, map_op, kind) in [
            ("non_skb", None, load::ProgKind::KProbe),
            ("bpfmap_update", Some(MapOp::Update), load::ProgKind::KProbe),
            ("bpfmap_delete", Some(MapOp::Delete), load::ProgKind::KProbe),
            (
                "bpfmap_lookup_e",
                Some(MapOp::LookupElem),
                load::ProgKind::KRetProbe,
            ),
            (
                "bpfmap_lookup",
                Some(MapOp::Lookup),
                load::ProgKind::KRetProbe,
            ),
        ] {
            let at = Attachment::Kprobe {
                skb_arg: NON_SKB,
                link: KprobeLink::Perf,
                map_op,
            };
            programs.push(load::ProgramSpec {
                name: name.into(),
                kind,
                program: probes::build(&layout, &opts, &at)
                    .unwrap_or_else(|e| panic!("{name}: build: {e}")),
            });
        }
        programs.push(load::ProgramSpec {
            name: "bpfmap_lk_in".into(),
            kind: load::ProgKind::KProbe,
            program: probes::build_map_lookup_entry(&arch.regs).unwrap(),
        });
        let mut maps = maps_for(&opts);
        maps.push(maps::BPFMAP_STASH.spec());
        let spec = ObjectSpec { maps, programs };
        if let Err(e) = load::load(&spec, &LoadOptions::default()) {
            panic!("pcap {pcap:?}: the verifier rejected a bpfmap program: {e}");
        }
    }
}
