//! Parsing rules of the command line, as tables of arguments and expected results.

use super::*;
use crate::attach::{BackendKind, FeatureError};
use crate::btf::Kmods;
use crate::output::{OutputOptions, OutputTarget, RotationPolicy};
use crate::settings::BackendSettings;
use crate::settings::{DumpLinkType, Mode};
use clap::error::ErrorKind;

fn parse(args: &[&str]) -> Result<Args, clap::Error> {
    Args::try_parse_args(std::iter::once("pwru").chain(args.iter().copied()))
}

fn ok(args: &[&str]) -> Args {
    parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Parses and resolves `args`, which must be a valid tracing command line.
fn trace(args: &[&str]) -> crate::settings::TraceSettings {
    match ok(args).resolve() {
        Ok(Mode::Trace(t)) => *t,
        other => panic!("{args:?}: not a trace: {other:?}"),
    }
}

/// Whether `args` resolve, or the usage error.
fn check(args: &[&str]) -> Result<(), ConfigError> {
    ok(args).resolve().map(|_| ())
}

#[test]
fn defaults_match_pwru() {
    let c = ok(&[]);
    assert_eq!(c.kernel_btf, None);
    assert!(c.kmods.is_empty() && !c.all_kmods);
    assert_eq!(c.backend, BackendChoice::Auto);
    assert!(c.filter_func.is_none());
    assert_eq!(c.filter_mark, MarkFilter { mark: 0, mask: 0 });
    assert!(!c.filter_mark.is_active());
    assert_eq!(c.filter_kprobe_batch, 10);
    assert_eq!(c.timestamp, TimestampMode::None);
    assert!(c.output_meta && c.output_tuple);
    assert!(!c.output_json && !c.output_caller && !c.output_stack && !c.output_tcp_flags);
    assert_eq!(c.output_limit_lines, 0);
    assert_eq!(c.netns_names_max_length, 16);
    assert_eq!(c.set_percpu_buf, 4096);
    assert_eq!(c.output_file_max_size, 100);
    assert_eq!(c.pcap_filter(), "");
    assert!(c.unsupported_flags().is_empty());
    assert_eq!(check(&[]), Ok(()));
}

#[test]
fn booleans_follow_pflag() {
    type Get = fn(&Args) -> bool;
    let table: &[(&[&str], Get, bool)] = &[
        (&["--output-meta=false"], |c| c.output_meta, false),
        (&["--output-meta"], |c| c.output_meta, true),
        (&["--output-meta=true"], |c| c.output_meta, true),
        (&["--output-tuple=0"], |c| c.output_tuple, false),
        (&["--output-tuple=F"], |c| c.output_tuple, false),
        (&["--debug"], |c| c.debug, true),
        (&["--debug=1"], |c| c.debug, true),
        (&["--debug=T"], |c| c.debug, true),
        (&["--output-json"], |c| c.output_json, true),
        (
            &["--output-json", "--output-json=false"],
            |c| c.output_json,
            false,
        ),
        (&["--all-kmods"], |c| c.all_kmods, true),
        (&["--filter-track-skb"], |c| c.filter_track_skb, true),
        (&["--output-skb-cb"], |c| c.output_skb_cb, true),
        (&["--output-tcp-flags"], |c| c.output_tcp_flags, true),
        (&["--output-caller"], |c| c.output_caller, true),
        (&["--output-stack"], |c| c.output_stack, true),
        (&["--list-funcs"], |c| c.list_funcs, true),
        (&["--l3"], |c| c.l3, true),
    ];
    for (args, get, want) in table {
        assert_eq!(get(&ok(args)), *want, "{args:?}");
    }
    // A separate word after a boolean is not its value (as in pflag): it joins the filter.
    let c = ok(&["--output-meta", "false"]);
    assert!(c.output_meta);
    assert_eq!(c.pcap_filter(), "false");
    assert!(parse(&["--debug=maybe"]).is_err());
}

#[test]
fn mark_parsing() {
    let table: &[(&str, Option<(u32, u32)>)] = &[
        ("0xa00/0xf00", Some((0xa00, 0xf00))),
        ("0XA00/0XF00", Some((0xa00, 0xf00))),
        ("0xaf/0x0f", Some((0xaf, 0x0f))),
        ("10", Some((10, u32::MAX))),
        ("0x10", Some((0x10, u32::MAX))),
        ("0", Some((0, u32::MAX))),
        ("0/0", Some((0, 0))),
        ("4294967295", Some((u32::MAX, u32::MAX))),
        ("256/255", Some((256, 255))),
        ("1/2/3", None),
        ("4294967296", None),
        ("0x", None),
        ("", None),
        ("abc", None),
        ("-1", None),
        ("+1", None),
        ("1/", None),
        ("0x1g", None),
    ];
    for (text, want) in table {
        let got = parse_mark(text).ok().map(|m| (m.mark, m.mask));
        assert_eq!(got, *want, "{text:?}");
        let via_cli = parse(&["--filter-mark", text])
            .ok()
            .map(|c| (c.filter_mark.mark, c.filter_mark.mask));
        assert_eq!(via_cli, *want, "--filter-mark {text:?}");
    }
    assert_eq!(MarkFilter { mark: 0, mask: 0 }.to_string(), "0x0/0x0");
    let m = parse_mark("0xa00/0xf00").unwrap();
    assert!(m.matches(0x1a00) && !m.matches(0x1b00));
    let exact_zero = parse_mark("0").unwrap();
    assert!(exact_zero.is_active() && exact_zero.matches(0) && !exact_zero.matches(1));
}

#[test]
fn netns_parsing() {
    assert!(parse_netns("4026531840")
        .unwrap_err()
        .contains("inode:4026531840"));
    let table: &[(&str, Option<NetnsSpec>)] = &[
        (
            "/proc/1/ns/net",
            Some(NetnsSpec::Path("/proc/1/ns/net".into())),
        ),
        (
            "/run/netns/blue",
            Some(NetnsSpec::Path("/run/netns/blue".into())),
        ),
        ("inode:4026531840", Some(NetnsSpec::Inode(4026531840))),
        ("inode:", None),
        ("inode:abc", None),
        ("inode:-1", None),
        ("inode:4294967296", None),
        ("proc/1/ns/net", None),
        ("4026531840", None),
        ("blue", Some(NetnsSpec::Path("/run/netns/blue".into()))),
        ("ns-1.a", Some(NetnsSpec::Path("/run/netns/ns-1.a".into()))),
        ("", None),
        ("..", None),
    ];
    for (text, want) in table {
        assert_eq!(parse_netns(text).ok(), *want, "{text:?}");
        assert_eq!(
            parse(&["--filter-netns", text])
                .ok()
                .and_then(|c| c.filter_netns),
            *want
        );
    }
}

#[test]
fn timestamp_modes() {
    let table = [
        ("none", Some(TimestampMode::None)),
        ("current", Some(TimestampMode::Current)),
        ("relative", Some(TimestampMode::Relative)),
        ("absolute", Some(TimestampMode::Absolute)),
        ("now", None),
        ("", None),
    ];
    for (text, want) in table {
        assert_eq!(
            parse(&["--timestamp", text]).ok().map(|c| c.timestamp),
            want,
            "{text:?}"
        );
    }
    assert_eq!(
        ok(&["--timestamp=relative"]).timestamp,
        TimestampMode::Relative
    );
}

#[test]
fn backends() {
    let table = [
        ("", Some(BackendChoice::Auto)),
        ("auto", Some(BackendChoice::Auto)),
        (
            "kprobe-multi",
            Some(BackendChoice::Named(BackendKind::KprobeMulti)),
        ),
        ("kprobe", Some(BackendChoice::Named(BackendKind::Kprobe))),
        ("fentry", Some(BackendChoice::Named(BackendKind::Fentry))),
        (
            "tracepoint",
            Some(BackendChoice::Named(BackendKind::Tracepoint)),
        ),
        ("fexit", None),
        ("KPROBE", None),
    ];
    for (text, want) in table {
        assert_eq!(
            parse(&["--backend", text]).ok().map(|c| c.backend),
            want,
            "{text:?}"
        );
        assert_eq!(parse_backend(text).ok(), want);
    }
    assert_eq!(
        ok(&["--backend=kprobe-multi"]).backend.as_str(),
        "kprobe-multi"
    );
}

#[test]
fn kprobe_batch() {
    let table = [
        ("1", Some(1)),
        ("10", Some(10)),
        ("250", Some(250)),
        ("0", None),
        ("-1", None),
        ("x", None),
    ];
    for (text, want) in table {
        assert_eq!(
            parse(&["--filter-kprobe-batch", text])
                .ok()
                .map(|c| c.filter_kprobe_batch),
            want,
            "{text:?}"
        );
    }
    let err = parse(&["--filter-kprobe-batch", "0"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 1"), "{err}");
}

#[test]
fn filter_func_matches_whole_names() {
    let table: &[(&str, &str, bool)] = &[
        ("ip_rcv", "ip_rcv", true),
        ("ip_rcv", "ip_rcv_core", false),
        ("ip_rcv", "xip_rcv", false),
        ("ip_.*", "ip_rcv_core", true),
        (".*xmit.*", "dev_hard_start_xmit", true),
        ("ip|ip_rcv", "ip_rcv", true),
        ("a|b", "ab", false),
        ("tcp_v4_.*|udp_.*", "udp_rcv", true),
    ];
    for (pattern, name, want) in table {
        let f = parse_func_filter(pattern).unwrap();
        assert_eq!(f.is_match(name), *want, "{pattern:?} vs {name:?}");
    }
    let c = ok(&["--filter-func", "ip_.*"]);
    assert_eq!(c.filter_func.as_ref().unwrap().pattern, "ip_.*");
    for bad in ["ip_(", "[a-", "*x", "a{2,1}"] {
        let e = parse_func_filter(bad).unwrap_err();
        assert!(
            !e.contains('\n') && e.starts_with("invalid regex"),
            "{bad:?}: {e}"
        );
        assert!(parse(&["--filter-func", bad]).is_err());
    }
}

#[test]
fn lists_and_positionals() {
    let c = ok(&[
        "--kmods",
        "veth,nf_tables",
        "--kmods=br_netfilter",
        "tcp",
        "and",
        "port",
        "80",
    ]);
    assert_eq!(c.kmods, ["veth", "nf_tables", "br_netfilter"]);
    assert_eq!(c.pcap_filter(), "tcp and port 80");
    // Flags may come after filter words, as with pflag.
    let c = ok(&["host", "1.0.0.1", "--output-json", "and", "udp"]);
    assert!(c.output_json);
    assert_eq!(c.pcap_filter(), "host 1.0.0.1 and udp");
    let c = ok(&["dst host 1.0.0.1 and port 8080"]);
    assert_eq!(c.pcap_filter(), "dst host 1.0.0.1 and port 8080");
    let c = ok(&["--output-skb-metadata", "skb->hash,skb->mark"]);
    assert_eq!(c.output_skb_metadata, ["skb->hash", "skb->mark"]);
}

#[test]
fn scalar_flags() {
    let c = ok(&[
        "--output-limit-lines",
        "100",
        "--output-file",
        "/tmp/x.log",
        "--kernel-btf",
        "/tmp/vmlinux",
        "--ready-file",
        "/tmp/ready",
        "--filter-ifname",
        "eth0",
        "--filter-check",
        "a.pcap",
        "--set-percpu-buf",
        "8192",
    ]);
    assert_eq!(c.output_limit_lines, 100);
    assert_eq!(
        c.output_file.as_deref(),
        Some(std::path::Path::new("/tmp/x.log"))
    );
    assert_eq!(
        c.kernel_btf.as_deref(),
        Some(std::path::Path::new("/tmp/vmlinux"))
    );
    assert_eq!(
        c.ready_file.as_deref(),
        Some(std::path::Path::new("/tmp/ready"))
    );
    assert_eq!(c.filter_ifname.as_deref(), Some("eth0"));
    assert_eq!(
        c.filter_check.as_deref(),
        Some(std::path::Path::new("a.pcap"))
    );
    assert_eq!(c.set_percpu_buf, 8192);
    assert!(parse(&["--output-limit-lines", "-1"]).is_err());
    assert!(parse(&["--no-such-flag"]).is_err());
}

#[test]
fn implied_settings() {
    assert!(
        trace(&["--filter-non-skb-funcs", "foo"])
            .filter
            .track_by_stackid
    );
    let helpers = trace(&["--filter-track-bpf-helpers"]).filter;
    assert!(helpers.track_by_stackid && helpers.track_bpf_helpers);
    assert!(
        trace(&["--output-bpfmap", "--filter-track-bpf-helpers"])
            .output
            .bpfmap
    );
    assert!(!trace(&[]).filter.track_by_stackid);
    assert!(
        trace(&["--filter-track-skb-by-stackid"])
            .filter
            .track_by_stackid
    );
    // Comma-separated and repeatable, like pwru's string slice.
    let t = trace(&["--filter-non-skb-funcs", "a,b", "--filter-non-skb-funcs=c"]);
    assert_eq!(t.filter.non_skb_funcs, ["a", "b", "c"]);
    let width = |n: &str| {
        trace(&["--output-netns-names", "--netns-names-max-length", n])
            .output
            .netns_names
    };
    assert_eq!(width("3"), Some(10));
    assert_eq!(width("20"), Some(20));
    assert_eq!(
        trace(&["--netns-names-max-length", "20"])
            .output
            .netns_names,
        None
    );
    assert!(ok(&["--filter-trace-tc"]).output_settings().skb_cb);
    assert!(trace(&["--output-skb-cb"]).output.skb_cb);
    assert!(!trace(&[]).output.skb_cb);
    // The empty skb expression is no filter, and mark 0/0 no mark filter.
    assert_eq!(trace(&["--filter-skb-expr", " "]).filter.skb_expr, None);
    assert_eq!(trace(&["--filter-mark", "0/0"]).filter.mark, None);
    assert_eq!(
        trace(&["--filter-mark", "0x1/0x3"]).filter.mark,
        Some(MarkFilter { mark: 1, mask: 3 })
    );
}

#[test]
fn modes() {
    assert!(matches!(
        ok(&["--list-funcs"]).resolve(),
        Ok(Mode::ListFuncs(_))
    ));
    assert_eq!(
        ok(&["--dump-filter", "--l3", "tcp", "port", "80"]).resolve(),
        Ok(Mode::DumpFilter {
            filter: "tcp port 80".into(),
            link: DumpLinkType::RawIp
        })
    );
    for (args, link) in [
        (&["--dump-filter", "tcp"][..], DumpLinkType::Ethernet),
        (
            &["--dump-filter", "--link-type", "linux_sll", "tcp"][..],
            DumpLinkType::LinuxSll,
        ),
        (
            &["--dump-filter", "--link-type=LINUX_SLL2", "tcp"][..],
            DumpLinkType::LinuxSll2,
        ),
        (
            &["--dump-filter", "--link-type", "276", "tcp"][..],
            DumpLinkType::LinuxSll2,
        ),
        (
            &["--dump-filter", "--link-type", "RAW", "--l3", "tcp"][..],
            DumpLinkType::RawIp,
        ),
        (
            &["--dump-filter", "--link-type", "EN10MB", "tcp"][..],
            DumpLinkType::Ethernet,
        ),
    ] {
        assert_eq!(
            ok(args).resolve(),
            Ok(Mode::DumpFilter {
                filter: "tcp".into(),
                link
            }),
            "{args:?}"
        );
    }
    assert_eq!(
        ok(&["--link-type", "RAW", "tcp"]).resolve(),
        Err(ConfigError::LinkTypeWithoutDumpFilter)
    );
    assert_eq!(
        ok(&["--dump-filter", "--l3", "--link-type", "LINUX_SLL", "tcp"]).resolve(),
        Err(ConfigError::L3AndLinkType("LINUX_SLL"))
    );
    assert_eq!(
        ok(&["--filter-check", "a.pcap", "udp"]).resolve(),
        Ok(Mode::FilterCheck {
            capture: "a.pcap".into(),
            filter: "udp".into(),
        })
    );
    let t = trace(&[
        "--backend",
        "kprobe",
        "--filter-kprobe-batch",
        "7",
        "--detach-wait",
        "--kmods",
        "veth",
        "--debug",
        "icmp",
    ]);
    assert_eq!(
        t.backend,
        BackendSettings {
            choice: BackendChoice::Named(BackendKind::Kprobe),
            kprobe_batch: 7,
            detach_wait: true
        }
    );
    assert_eq!(t.kernel.kmods, Kmods::Named(vec!["veth".into()]));
    assert_eq!(trace(&["--all-kmods"]).kernel.kmods, Kmods::All);
    assert_eq!(t.filter.pcap, "icmp");
    assert!(t.debug);
}

#[test]
fn output_options_from_flags() {
    let t = trace(&[
        "--output-json",
        "--output-skb-cb",
        "--timestamp",
        "relative",
        "--output-limit-lines",
        "5",
    ]);
    assert_eq!(
        OutputOptions::from_settings(&t.output),
        OutputOptions {
            timestamp: TimestampMode::Relative,
            meta: true,
            tuple: true,
            tcp_flags: false,
            tunnel: false,
            caller: false,
            stack: false,
            cb: true,
            json: true,
            netns_names: None,
            limit_lines: 5,
            skb_metadata: Vec::new(),
            xdp_metadata: Vec::new(),
            skb_dump: None,
            summary: false,
            journey: false,
            clone_parents: false,
            pcap_snaplen: None,
            bpfmap: None,
        }
    );
    assert!(matches!(
        OutputTarget::from_settings(&t.output),
        OutputTarget::Stdout
    ));
    let netns_names = |args: &[&str]| OutputOptions::from_settings(&trace(args).output).netns_names;
    assert_eq!(netns_names(&[]), None);
    assert_eq!(netns_names(&["--output-netns-names"]), Some(16));
    assert_eq!(
        netns_names(&["--output-netns-names", "--netns-names-max-length=3"]),
        Some(10)
    );
    assert_eq!(
        netns_names(&["--output-netns-names", "--netns-names-max-length=40"]),
        Some(40)
    );
    let summary = |args: &[&str]| OutputOptions::from_settings(&trace(args).output).summary;
    assert!(!summary(&[]));
    assert!(summary(&["--summary"]));
    assert!(summary(&["--summary=true", "--output-json"]));
    assert!(!summary(&["-summary=false"]));
    let journey = |args: &[&str]| {
        let opts = OutputOptions::from_settings(&trace(args).output);
        (opts.journey, opts.tuple)
    };
    assert_eq!(journey(&["--output-tuple=false"]), (false, false));
    assert_eq!(
        journey(&["--output-journey", "--output-tuple=false"]),
        (true, true),
        "a journey records the tuple"
    );
}

#[test]
fn rotation_policy_from_flags() {
    const MEGABYTE: u64 = 1024 * 1024;
    let policy = |args: &[&str]| {
        let mut all = vec!["--output-file", "/tmp/pwru.log"];
        all.extend_from_slice(args);
        match OutputTarget::from_settings(&trace(&all).output) {
            OutputTarget::File(path, policy) => {
                assert_eq!(path, std::path::Path::new("/tmp/pwru.log"));
                policy
            }
            _ => panic!("{args:?}: not a file target"),
        }
    };
    assert_eq!(policy(&[]), RotationPolicy::default());
    assert_eq!(
        policy(&[
            "--output-file-max-size=3",
            "--output-file-max-backups=2",
            "--output-file-max-age=7",
            "--output-file-compress"
        ]),
        RotationPolicy {
            max_size: 3 * MEGABYTE,
            max_backups: 2,
            max_age_days: 7,
            compress: true
        }
    );
    assert_eq!(
        policy(&["--output-file-max-size=0"]).max_size,
        100 * MEGABYTE
    );
}

#[test]
fn validation() {
    let table: &[(&[&str], Result<(), ConfigError>)] = &[
        (&["--filter-ifname", "lo"], Ok(())),
        (
            &["--filter-ifname", "lo", "--filter-netns", "/proc/1/ns/net"],
            Ok(()),
        ),
        (
            &["--filter-ifname", "lo", "--filter-netns", "inode:5"],
            Err(ConfigError::IfnameWithInodeNetns),
        ),
        (
            &["--output-skb-metadata", "a,b,c,d,e"],
            Err(ConfigError::TooManyMetadataFields {
                flag: "--output-skb-metadata",
                count: 5,
            }),
        ),
        (
            &[
                "--output-xdp-metadata",
                "a,b",
                "--output-xdp-metadata",
                "c,d,e",
            ],
            Err(ConfigError::TooManyMetadataFields {
                flag: "--output-xdp-metadata",
                count: 5,
            }),
        ),
        (
            &["--filter-xdp-expr", "xdp->rxq->dev->ifindex == 9"],
            Err(ConfigError::XdpWithoutTraceXdp("--filter-xdp-expr")),
        ),
        (
            &["--output-xdp-metadata", "xdp->rxq->queue_index"],
            Err(ConfigError::XdpWithoutTraceXdp("--output-xdp-metadata")),
        ),
        (
            &["--filter-xdp-expr", " ", "--output-xdp-metadata="],
            Ok(()),
        ),
        (
            &[
                "--filter-trace-xdp",
                "--filter-xdp-expr",
                "xdp->rxq->dev->ifindex == 9",
                "--output-xdp-metadata",
                "xdp->rxq->queue_index",
            ],
            Ok(()),
        ),
        (&["--l3"], Err(ConfigError::L3WithoutFilterTool)),
        (&["--l3", "--dump-filter", "tcp"], Ok(())),
        (&["--dump-filter"], Err(ConfigError::MissingDumpFilter)),
        (
            &["--filter-check", "x.pcap"],
            Err(ConfigError::MissingCheckFilter("x.pcap".into())),
        ),
        (&["--filter-check", "x.pcap", "--l3", "udp"], Ok(())),
        (
            &["--list-funcs", "--dump-filter", "tcp"],
            Err(ConfigError::ConflictingModes),
        ),
        (&["--list-funcs"], Ok(())),
        (
            &["--output-bpfmap"],
            Err(ConfigError::BpfmapWithoutMapFunctions),
        ),
        (&["--output-bpfmap", "--filter-track-bpf-helpers"], Ok(())),
        (
            &[
                "--output-bpfmap",
                "--filter-non-skb-funcs",
                "htab_map_update_elem",
            ],
            Ok(()),
        ),
        (
            &["--backend", "tracepoint", "--filter-non-skb-funcs", "f"],
            Err(ConfigError::Backend(FeatureError::NonSkbFunctions {
                flag: "--filter-non-skb-funcs",
                backend: "tracepoint",
                alternatives: "kprobe or kprobe-multi".into(),
            })),
        ),
        (
            &["--backend", "tracepoint", "--filter-track-bpf-helpers"],
            Err(ConfigError::Backend(FeatureError::NonSkbFunctions {
                flag: "--filter-track-bpf-helpers",
                backend: "tracepoint",
                alternatives: "kprobe or kprobe-multi".into(),
            })),
        ),
        (
            &["--backend", "tracepoint", "--output-caller"],
            Err(ConfigError::Backend(FeatureError::Caller {
                backend: "tracepoint",
                reason: "a tracepoint has no caller frame to read",
                alternatives: "kprobe or kprobe-multi".into(),
            })),
        ),
        (
            &["--backend", "fentry", "--output-caller"],
            Err(ConfigError::Backend(FeatureError::Caller {
                backend: "fentry",
                reason: "an fentry program has no pt_regs to read the return address from",
                alternatives: "kprobe or kprobe-multi".into(),
            })),
        ),
        (
            &["--backend", "fentry", "--filter-non-skb-funcs", "f"],
            Err(ConfigError::Backend(FeatureError::NonSkbFunctions {
                flag: "--filter-non-skb-funcs",
                backend: "fentry",
                alternatives: "kprobe or kprobe-multi".into(),
            })),
        ),
        (&["--backend", "fentry", "--filter-track-skb"], Ok(())),
        // Without clone following, tracking still works: not an error.
        (&["--backend", "tracepoint", "--filter-track-skb"], Ok(())),
        (&["--output-caller", "--filter-non-skb-funcs", "f"], Ok(())),
        (
            &["--backend", "kprobe", "--filter-non-skb-funcs", "f"],
            Ok(()),
        ),
    ];
    for (args, want) in table {
        assert_eq!(ok(args).validate(), *want, "{args:?}");
    }
    for (args, _) in table {
        if let Err(e) = ok(args).validate() {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
}

#[test]
fn unsupported_flags_are_reported_not_ignored() {
    for implemented in [
        &["--filter-skb-expr", "skb->len > 0"][..],
        &["--output-skb-metadata", "skb->hash,skb->mark"][..],
        &["--output-skb", "--output-skb-shared-info"][..],
        &[
            "--filter-tunnel-pcap-l2",
            "udp",
            "--filter-tunnel-pcap-l3=tcp",
            "--output-tunnel",
        ][..],
    ] {
        assert!(
            ok(implemented).unsupported_flags().is_empty(),
            "{implemented:?}"
        );
    }
    let table: &[(&[&str], &[&str])] = &[
        (&["--filter-trace-xdp"], &[]),
        (
            &[
                "--filter-trace-xdp",
                "--filter-track-bpf-helpers",
                "--output-bpfmap",
            ],
            &[],
        ),
        (
            &[
                "--filter-trace-xdp",
                "--filter-xdp-expr",
                "xdp->rxq->dev->ifindex == 9",
                "--output-xdp-metadata",
                "xdp->rxq->queue_index",
            ],
            &[],
        ),
        (&["--filter-track-bpf-helpers"], &[]),
        (&["--filter-track-skb-by-stackid"], &[]),
        (
            &["--filter-non-skb-funcs", "a,b", "--filter-non-skb-funcs=c"],
            &[],
        ),
        (
            &[
                "--output-netns-names",
                "--netns-names-max-length=12",
                "--output-file=/tmp/x",
                "--output-file-max-size",
                "5",
                "--output-file-compress",
                "--output-file-max-age=3",
                "--output-file-max-backups=2",
            ],
            &[],
        ),
        (
            &[
                "--output-json",
                "--output-caller",
                "--timestamp",
                "absolute",
                "tcp",
            ],
            &[],
        ),
    ];
    for (args, want) in table {
        let c = ok(args);
        assert_eq!(c.unsupported_flags(), *want, "{args:?}");
        match c.resolve().map(|_| ()) {
            Ok(()) => assert!(want.is_empty()),
            Err(e) => assert_eq!(e, ConfigError::Unsupported(want.join(", "))),
        }
    }
}

#[test]
fn negative_rotation_values_are_rejected() {
    for (args, flag, value) in [
        (&["--output-file-max-size=-1"], "--output-file-max-size", -1),
        (
            &["--output-file-max-backups=-2"],
            "--output-file-max-backups",
            -2,
        ),
        (&["--output-file-max-age=-3"], "--output-file-max-age", -3),
    ] {
        assert_eq!(
            check(&args[..]),
            Err(ConfigError::Negative { flag, value }),
            "{args:?}"
        );
    }
    assert_eq!(check(&["--output-file-max-size=0"]), Ok(()));
}

#[test]
fn pcap_output_flags() {
    use crate::settings::{PcapSettings, PcapTarget};
    let pcap = |args: &[&str]| trace(args).output.pcap;
    assert_eq!(pcap(&[]), None);
    assert_eq!(
        pcap(&["--output-pcap", "/tmp/x.pcapng"]),
        Some(PcapSettings {
            target: PcapTarget::File("/tmp/x.pcapng".into()),
            snaplen: 256,
        })
    );
    assert_eq!(
        pcap(&["--output-pcap", "-", "--output-pcap-snaplen", "16384"]),
        Some(PcapSettings {
            target: PcapTarget::Stdout,
            snaplen: 16384,
        })
    );
    let opts =
        OutputOptions::from_settings(&trace(&["--output-pcap", "x", "--output-meta=false"]).output);
    assert_eq!((opts.pcap_snaplen, opts.meta), (Some(256), false));
    // `-`: the table goes to stderr, unless --output-file names a file.
    let target = |args: &[&str]| OutputTarget::from_settings(&trace(args).output);
    assert!(matches!(
        target(&["--output-pcap", "-"]),
        OutputTarget::Stderr
    ));
    assert!(matches!(
        target(&["--output-pcap", "x"]),
        OutputTarget::Stdout
    ));
    assert!(matches!(
        target(&["--output-pcap", "-", "--output-file", "/tmp/t"]),
        OutputTarget::File(..)
    ));
    for (args, err) in [
        (
            &["--output-pcap", "x", "--output-pcap-snaplen", "15"][..],
            ConfigError::PcapSnaplen(15),
        ),
        (
            &["--output-pcap", "x", "--output-pcap-snaplen", "16385"],
            ConfigError::PcapSnaplen(16385),
        ),
        (
            &["--output-pcap-snaplen", "64"],
            ConfigError::SnaplenWithoutPcap,
        ),
        (
            &["--output-pcap", "/tmp/a", "--output-file", "/tmp/a"],
            ConfigError::PcapIsOutputFile("/tmp/a".into()),
        ),
    ] {
        assert_eq!(check(args), Err(err), "{args:?}");
    }
    assert_eq!(
        ConfigError::PcapSnaplen(15).to_string(),
        "--output-pcap-snaplen must be 16..=16384 bytes, got 15"
    );
}

#[test]
fn version_and_help() {
    let e = parse(&["--version"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DisplayVersion);
    assert_eq!(
        e.to_string(),
        format!("pwru {}\n", env!("CARGO_PKG_VERSION"))
    );

    let e = parse(&["--help"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DisplayHelp);
    let help = e.to_string();
    for needle in [
        "pwru [options] [pcap-filter]",
        "--output-meta",
        "--filter-mark",
        "Examples:",
        "--output-meta=false",
    ] {
        assert!(help.contains(needle), "help lacks {needle:?}");
    }
    assert!(!help.contains("--ready-file"), "--ready-file stays hidden");
    assert_eq!(parse(&["-h"]).unwrap_err().kind(), ErrorKind::DisplayHelp);
}

/// Every flag that stops with "not supported yet" says so in its help, and no other flag
/// does; both `--help` and `-h` show the mark.
#[test]
fn help_marks_the_flags_not_supported_yet() {
    let pending = resolve::pending_flag_names();
    let cmd = command();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let flag = format!("--{long}");
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        assert_eq!(
            help.starts_with(PENDING_MARK),
            pending.contains(&flag.as_str()),
            "{flag}: {help}"
        );
    }
    assert_eq!(pending.len(), 0, "every flag of pwru works");
    assert!(ok(&["--filter-trace-tc"]).unsupported_flags().is_empty());
    assert!(ok(&["--filter-trace-xdp"]).unsupported_flags().is_empty());
    for help_flag in ["--help", "-h"] {
        let text = parse(&[help_flag]).unwrap_err().to_string();
        assert_eq!(text.matches(PENDING_MARK).count(), pending.len(), "{text}");
    }
}

#[test]
fn tunnel_flags_resolve_to_settings() {
    let c = ok(&[
        "--filter-tunnel-pcap-l2",
        "ether proto 0x0800",
        "--filter-tunnel-pcap-l3= ",
        "--output-tunnel",
        "udp",
    ]);
    let Mode::Trace(t) = c.resolve().unwrap() else {
        panic!("a trace")
    };
    assert_eq!(t.filter.tunnel.l2.as_deref(), Some("ether proto 0x0800"));
    // A blank expression is no filter, like pwru's empty one.
    assert_eq!(t.filter.tunnel.l3, None);
    assert!(t.output.tunnel);
    assert_eq!(t.filter.pcap, "udp");
    let Mode::Trace(t) = ok(&[]).resolve().unwrap() else {
        panic!("a trace")
    };
    assert_eq!(t.filter.tunnel, Default::default());
    assert!(!t.output.tunnel);
}
