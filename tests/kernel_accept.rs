//! Kernel acceptance of `pwru::load`: programs built with our assembler are loaded by the
//! real verifier, test-run on real `sk_buff`s, attached to tracepoints and read back.
//! Needs root and bpf(); prints `skipped: <reason>` and returns otherwise.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use pwru::asm::{Asm, Cond, Helper, Program, Reg::*, Size};
use pwru::load::{
    self, KprobeMultiOptions, LoadError, LoadOptions, MapSpec, ObjectError, ObjectSpec, ProgKind,
    ProgramSpec,
};

fn spec(name: &str, kind: ProgKind, program: Program) -> ProgramSpec {
    ProgramSpec {
        name: name.into(),
        kind,
        program,
    }
}

fn one(name: &str, kind: ProgKind, program: Program) -> ObjectSpec {
    ObjectSpec {
        maps: vec![],
        programs: vec![spec(name, kind, program)],
    }
}

/// `None` when the kernel lets us load programs, else why the test is skipped.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    let mut a = Asm::new();
    a.mov64(R0, 0);
    a.exit();
    let probe = one("probe", ProgKind::SocketFilter, a.finish().unwrap());
    match load::load(&probe, &LoadOptions::default()) {
        Ok(_) => None,
        Err(LoadError::Rejected { errno, .. })
            if matches!(errno.raw_os_error(), Some(libc::EPERM | libc::ENOSYS)) =>
        {
            Some(format!("bpf() refused: {errno}"))
        }
        Err(e) => {
            let text = e.to_string();
            if text.contains("Operation not permitted") || text.contains("not implemented") {
                Some(format!("bpf() refused: {text}"))
            } else {
                panic!("loading a trivial socket filter failed: {e}")
            }
        }
    }
}

macro_rules! require_kernel {
    () => {
        if let Some(reason) = skip_reason() {
            eprintln!("skipped: {reason}");
            return;
        }
    };
}

/// Ethernet + IPv4 (protocol `proto`) + 8 bytes of L4 header + payload.
fn ipv4_frame(proto: u8) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    let total_len: u16 = 20 + 8 + 4;
    f.extend_from_slice(&[0x45, 0, (total_len >> 8) as u8, total_len as u8]);
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&[0x30, 0x39, 0, 80, 0, 12, 0, 0]);
    f.extend_from_slice(b"ping");
    f
}

fn frame_with_ethertype(ethertype: u16, payload_len: usize) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.resize(14 + payload_len, 0);
    if ethertype == 0x86dd {
        f[14] = 0x60; // IPv6 version nibble
    }
    f
}

/// tc program: classify by ethertype (legacy packet loads, ctx in r6), and for IPv4 by
/// protocol. Returns 4 TCP, 5 UDP, 3 other IPv4, 6 IPv6, 7 ARP, 1 anything else.
fn classify_program() -> Program {
    let mut a = Asm::new();
    let ipv4 = a.label();
    let ipv6 = a.label();
    let arp = a.label();
    let tcp = a.label();
    let udp = a.label();
    a.mov64(R6, R1);
    a.ld_abs(Size::H, 12);
    a.jmp(Cond::Eq, R0, 0x0800, ipv4);
    a.jmp(Cond::Eq, R0, 0x86dd, ipv6);
    a.jmp(Cond::Eq, R0, 0x0806, arp);
    a.mov64(R0, 1);
    a.exit();
    a.bind(ipv4);
    a.ld_abs(Size::B, 14 + 9);
    a.jmp(Cond::Eq, R0, 6, tcp);
    a.jmp(Cond::Eq, R0, 17, udp);
    a.mov64(R0, 3);
    a.exit();
    a.bind(tcp);
    a.mov64(R0, 4);
    a.exit();
    a.bind(udp);
    a.mov64(R0, 5);
    a.exit();
    a.bind(ipv6);
    a.mov64(R0, 6);
    a.exit();
    a.bind(arp);
    a.mov64(R0, 7);
    a.exit();
    a.finish().unwrap()
}

/// Socket filter returning `__sk_buff.protocol` in host order.
fn protocol_program() -> Program {
    let mut a = Asm::new();
    a.ldx(Size::W, R0, R1, 16);
    a.to_be(R0, 16);
    a.exit();
    a.finish().unwrap()
}

#[test]
fn a_ethertype_classifier_runs_on_crafted_frames() {
    require_kernel!();
    let obj = ObjectSpec {
        maps: vec![],
        programs: vec![
            spec("classify", ProgKind::SchedCls, classify_program()),
            spec("proto", ProgKind::SocketFilter, protocol_program()),
        ],
    };
    let mut loaded = load::load(&obj, &LoadOptions::default()).expect("load");
    let cases: [(&str, Vec<u8>, u32); 6] = [
        ("ipv4/tcp", ipv4_frame(6), 4),
        ("ipv4/udp", ipv4_frame(17), 5),
        ("ipv4/icmp", ipv4_frame(1), 3),
        ("ipv6", frame_with_ethertype(0x86dd, 40), 6),
        ("arp", frame_with_ethertype(0x0806, 28), 7),
        ("other", frame_with_ethertype(0x88cc, 30), 1),
    ];
    let _stats = load::enable_run_time_stats().ok();
    let before = loaded.info("classify").unwrap().run_cnt;
    for (what, frame, want) in &cases {
        let got = loaded.test_run("classify", frame).expect("test run");
        assert_eq!(got, *want, "classify {what}");
    }
    let info = loaded.info("classify").unwrap();
    assert_eq!(info.name, "classify");
    assert_eq!(info.prog_type, 3, "BPF_PROG_TYPE_SCHED_CLS");
    assert!(info.id > 0);
    if _stats.is_some() {
        assert!(
            info.run_cnt >= before + cases.len() as u64,
            "run_cnt {} after {} runs from {before}",
            info.run_cnt,
            cases.len()
        );
    }

    for (frame, want) in [
        (ipv4_frame(6), 0x0800),
        (frame_with_ethertype(0x86dd, 40), 0x86dd),
    ] {
        assert_eq!(loaded.test_run("proto", &frame).unwrap(), want);
    }

    let wrong = loaded.attach_raw_tp("classify").unwrap_err();
    assert!(matches!(wrong, ObjectError::WrongKind { .. }), "{wrong}");
}

/// Offset of `sk_buff.len` from the kernel's BTF.
fn sk_buff_len_offset() -> Option<i32> {
    let btf = btf_rs::Btf::from_file("/sys/kernel/btf/vmlinux").ok()?;
    for t in btf.resolve_types_by_name("sk_buff").ok()? {
        if let btf_rs::Type::Struct(s) = t {
            for m in &s.members {
                if btf.resolve_name(m).ok()? == "len" {
                    return Some((m.bit_offset() / 8) as i32);
                }
            }
        }
    }
    None
}

#[test]
fn b_probe_read_kernel_reads_the_real_skb_len() {
    require_kernel!();
    let Some(len_off) = sk_buff_len_offset() else {
        eprintln!("skipped: no /sys/kernel/btf/vmlinux or no sk_buff.len in it");
        return;
    };
    let mut a = Asm::new();
    let fail = a.label();
    a.mov64(R6, R1);
    a.st(Size::W, R10, -8, 0);
    a.mov64(R1, R10);
    a.add64(R1, -8);
    a.mov64(R2, 4);
    a.mov64(R3, R6);
    a.add64(R3, len_off);
    a.call(Helper::PROBE_READ_KERNEL);
    a.jmp(Cond::Ne, R0, 0, fail);
    a.ldx(Size::W, R0, R10, -8);
    a.exit();
    a.bind(fail);
    a.mov64(R0, 0xffff);
    a.exit();
    let skb_len = a.finish().unwrap();

    let mut a = Asm::new();
    a.ldx(Size::W, R0, R1, 0); // __sk_buff.len, rewritten by the verifier
    a.exit();
    let ctx_len = a.finish().unwrap();

    let obj = ObjectSpec {
        maps: vec![],
        programs: vec![
            spec("skb_len", ProgKind::SchedCls, skb_len),
            spec("ctx_len", ProgKind::SchedCls, ctx_len),
        ],
    };
    let mut loaded = load::load(&obj, &LoadOptions::default()).expect("verifier accepts");
    for size in [60usize, 98, 1514] {
        let mut frame = ipv4_frame(17);
        frame.resize(size, 0xaa);
        let via_probe = loaded.test_run("skb_len", &frame).unwrap();
        let via_ctx = loaded.test_run("ctx_len", &frame).unwrap();
        assert_eq!(
            via_probe, size as u32,
            "skb->len read through the kernel pointer"
        );
        assert_eq!(via_ctx, size as u32, "__sk_buff.len");
    }
}

/// The kprobe body of (c)/(d): helpers, an array lookup and both ring buffer APIs.
fn kprobe_body() -> Program {
    let mut a = Asm::new();
    let out = a.label();
    a.mov64(R6, R1);
    a.call(Helper::GET_CURRENT_PID_TGID);
    a.stx(Size::DW, R10, -8, R0);
    a.call(Helper::KTIME_GET_NS);
    a.stx(Size::DW, R10, -16, R0);
    a.call(Helper::GET_SMP_PROCESSOR_ID);
    a.stx(Size::W, R10, -20, R0);
    a.st(Size::W, R10, -24, 0);
    // Read 8 bytes at the first argument (pt_regs->di on x86_64) into the stack.
    a.mov64(R1, R10);
    a.add64(R1, -32);
    a.mov64(R2, 8);
    a.ldx(Size::DW, R3, R6, 112);
    a.call(Helper::PROBE_READ_KERNEL);
    // config[0]
    a.st(Size::W, R10, -36, 0);
    a.ld_map(R1, "config");
    a.mov64(R2, R10);
    a.add64(R2, -36);
    a.call(Helper::MAP_LOOKUP_ELEM);
    a.jmp(Cond::Eq, R0, 0, out);
    a.ldx(Size::DW, R7, R0, 0);
    // ringbuf_output(events, fp-32, 32, 0)
    a.ld_map(R1, "events");
    a.mov64(R2, R10);
    a.add64(R2, -32);
    a.mov64(R3, 32);
    a.mov64(R4, 0);
    a.call(Helper::RINGBUF_OUTPUT);
    // reserve 16 bytes, fill, submit
    a.ld_map(R1, "events");
    a.mov64(R2, 16);
    a.mov64(R3, 0);
    a.call(Helper::RINGBUF_RESERVE);
    a.jmp(Cond::Eq, R0, 0, out);
    a.stx(Size::DW, R0, 0, R7);
    a.ldx(Size::DW, R1, R10, -8);
    a.stx(Size::DW, R0, 8, R1);
    a.mov64(R1, R0);
    a.mov64(R2, 0);
    a.call(Helper::RINGBUF_SUBMIT);
    a.bind(out);
    a.mov64(R0, 0);
    a.exit();
    a.finish().unwrap()
}

fn tracing_maps() -> Vec<MapSpec> {
    vec![
        MapSpec::ring_buf("events", 1 << 16),
        MapSpec::new("config", load::MapKind::Array, 4, 8, 1),
    ]
}

/// An object of kprobe_multi programs alone makes its maps through aya without aya's
/// loader (which would parse the kernel's BTF): the maps are there, shared, sized as the
/// loader sizes them (a ring buffer rounded up to a power-of-two number of pages), and
/// usable as aya maps.
#[test]
fn kprobe_multi_only_objects_make_their_maps_without_the_loader() {
    require_kernel!();
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u32;
    let obj = ObjectSpec {
        maps: vec![
            MapSpec::ring_buf("events", 3 * page + 1),
            MapSpec::new("config", load::MapKind::Array, 4, 8, 1),
            MapSpec::new("perf", load::MapKind::PerfEventArray, 4, 4, 0),
        ],
        programs: vec![
            spec("kpm_a", ProgKind::KProbeMulti, kprobe_body()),
            spec("kpm_b", ProgKind::KProbeMulti, kprobe_body()),
        ],
    };
    let mut loaded = load::load(&obj, &LoadOptions::default()).expect("verifier accepts both");
    let (a, b) = (loaded.info("kpm_a").unwrap(), loaded.info("kpm_b").unwrap());
    assert_eq!(a.map_ids.len(), 2);
    let (mut a_ids, mut b_ids) = (a.map_ids.clone(), b.map_ids.clone());
    a_ids.sort();
    b_ids.sort();
    assert_eq!(a_ids, b_ids, "one set of maps, shared");
    assert!(loaded.aya_program_mut("kpm_a").is_none(), "no aya object");
    let mut names: Vec<&str> = loaded.map_names().collect();
    names.sort();
    assert_eq!(names, ["config", "events", "perf"]);
    let max_entries = |name: &str| match loaded.map(name) {
        Some(aya::maps::Map::RingBuf(d) | aya::maps::Map::PerfEventArray(d)) => {
            d.info().expect("map info").max_entries()
        }
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(
        max_entries("events"),
        4 * page,
        "3 pages and a byte: 4 pages"
    );
    let cpus = aya::util::nr_cpus().expect("possible CPUs") as u32;
    assert_eq!(max_entries("perf"), cpus, "0: one slot per possible CPU");
    let mut config = loaded.array_mut::<u64>("config").expect("an array");
    config.set(0, 7, 0).unwrap();
    assert_eq!(config.get(&0, 0).unwrap(), 7);
    loaded.take_ring_buf("events").expect("a ring buffer");
    assert!(loaded.map_fd("events").is_err(), "taken out");
    assert!(loaded.map_fd("config").is_ok());
}

#[test]
fn c_d_kprobe_and_kprobe_multi_load_and_share_maps() {
    require_kernel!();
    let obj = ObjectSpec {
        maps: tracing_maps(),
        programs: vec![
            spec("kp", ProgKind::KProbe, kprobe_body()),
            spec("kpm", ProgKind::KProbeMulti, kprobe_body()),
        ],
    };
    let mut loaded = load::load(&obj, &LoadOptions::default()).expect("verifier accepts both");
    let kp = loaded.info("kp").unwrap();
    let kpm = loaded.info("kpm").unwrap();
    assert_eq!(
        (kp.prog_type, kpm.prog_type),
        (2, 2),
        "BPF_PROG_TYPE_KPROBE"
    );
    assert_eq!(kpm.name, "kpm");
    let (mut a, mut b) = (kp.map_ids.clone(), kpm.map_ids.clone());
    a.sort();
    b.sort();
    assert_eq!(a.len(), 2);
    assert_eq!(a, b, "kprobe and kprobe_multi programs use the same maps");

    let opts = KprobeMultiOptions {
        symbols: vec!["kfree_skb_reason".into(), "sk_skb_reason_drop".into()],
        cookies: vec![1, 2],
        addrs: Vec::new(),
        retprobe: false,
    };
    match loaded.attach_kprobe_multi("kpm", &opts) {
        Err(e @ ObjectError::KprobeMultiUnsupported { .. }) => {
            eprintln!("kprobe_multi link: {e}");
            assert!(e.to_string().contains("not supported"), "{e}");
            assert!(e.to_string().contains("kpm"), "{e}");
        }
        // One of the two symbols may be missing on other kernels (ENOENT/ESRCH); fine too.
        Err(ObjectError::KprobeMulti { source, .. })
            if matches!(source.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => {}
        Ok(link) => drop(link),
        Err(e) => panic!("unexpected kprobe_multi error: {e}"),
    }
    let bad = loaded
        .attach_kprobe_multi(
            "kpm",
            &KprobeMultiOptions {
                symbols: vec!["a".into()],
                cookies: vec![1, 2],
                addrs: Vec::new(),
                retprobe: false,
            },
        )
        .unwrap_err();
    assert!(matches!(bad, ObjectError::BadKprobeMulti { .. }), "{bad}");
    let bad = loaded
        .attach_kprobe_multi(
            "kpm",
            &KprobeMultiOptions {
                symbols: vec!["a".into(), "b".into()],
                cookies: Vec::new(),
                addrs: vec![0xffff_ffff_8100_0004],
                retprobe: false,
            },
        )
        .unwrap_err();
    assert!(
        bad.to_string().contains("1 addresses for 2 functions"),
        "{bad}"
    );

    let have_kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists();
    match loaded.attach_kprobe("kp", "kfree_skb_reason") {
        Ok(id) => {
            assert!(have_kprobes);
            loaded.detach_kprobe("kp", id).unwrap();
        }
        Err(e) => {
            eprintln!("kprobe attach: {e}");
            assert!(!have_kprobes, "kprobe attach failed with a kprobe PMU: {e}");
            assert!(matches!(e, ObjectError::Attach { .. }), "{e}");
        }
    }

    let mut config = loaded.array_mut::<u64>("config").unwrap();
    config.set(0, 42, 0).unwrap();
    assert_eq!(config.get(&0, 0).unwrap(), 42);
}

#[test]
fn helper_probe_and_func_ip() {
    require_kernel!();
    let first = load::func_ip_available().expect("probe runs");
    assert_eq!(load::func_ip_available().unwrap(), first, "cached");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if (major, minor) >= (5, 15) {
        assert!(
            first,
            "bpf_get_func_ip should work in kprobes on {major}.{minor}"
        );
    }
}

/// Send UDP datagrams to a closed port on loopback: each is dropped (no socket).
fn provoke_drops() {
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..5 {
        let _ = s.send_to(b"where are you?", ("127.0.0.1", port));
    }
}

/// Drain events of `size` bytes from the ring buffer for up to two seconds, provoking
/// drops between polls.
fn collect_events(rb: &mut aya::maps::RingBuf<aya::maps::MapData>, size: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut events = Vec::new();
    while events.is_empty() && Instant::now() < deadline {
        provoke_drops();
        std::thread::sleep(Duration::from_millis(20));
        while let Some(item) = rb.next() {
            assert_eq!(item.len(), size);
            events.push(item.to_vec());
        }
    }
    events
}

#[test]
fn e_raw_tp_kfree_skb_reports_a_real_drop() {
    require_kernel!();
    let mut a = Asm::new();
    a.ldx(Size::DW, R7, R1, 0); // skb
    a.ldx(Size::DW, R8, R1, 16); // reason
    a.stx(Size::DW, R10, -16, R7);
    a.stx(Size::DW, R10, -8, R8);
    a.ld_map(R1, "events");
    a.mov64(R2, R10);
    a.add64(R2, -16);
    a.mov64(R3, 16);
    a.mov64(R4, 0);
    a.call(Helper::RINGBUF_OUTPUT);
    a.mov64(R0, 0);
    a.exit();
    let obj = ObjectSpec {
        maps: vec![MapSpec::ring_buf("events", 1 << 16)],
        programs: vec![spec(
            "drops",
            ProgKind::RawTracepoint("kfree_skb".into()),
            a.finish().unwrap(),
        )],
    };
    let mut loaded = load::load(&obj, &LoadOptions::default()).expect("load raw_tp");
    let link = loaded
        .attach_raw_tp("drops")
        .expect("attach raw_tp kfree_skb");
    let mut rb = loaded.take_ring_buf("events").unwrap();
    let events = collect_events(&mut rb, 16);
    assert!(!events.is_empty(), "no kfree_skb event within 2 s");
    let skb = u64::from_le_bytes(events[0][..8].try_into().unwrap());
    assert_ne!(skb, 0, "skb pointer");
    loaded.detach_raw_tp("drops", link).unwrap();
}

#[test]
fn g_tp_btf_kfree_skb_reads_skb_len_through_btf() {
    require_kernel!();
    let Some(len_off) = sk_buff_len_offset() else {
        eprintln!("skipped: no kernel BTF");
        return;
    };
    let mut a = Asm::new();
    a.ldx(Size::DW, R2, R1, 0); // skb (PTR_TO_BTF_ID)
    a.ldx(Size::W, R3, R2, len_off as i16); // skb->len, a BTF-checked load
    a.ldx(Size::DW, R4, R1, 16); // reason
    a.stx(Size::W, R10, -8, R3);
    a.stx(Size::W, R10, -4, R4);
    a.ld_map(R1, "events");
    a.mov64(R2, R10);
    a.add64(R2, -8);
    a.mov64(R3, 8);
    a.mov64(R4, 0);
    a.call(Helper::RINGBUF_OUTPUT);
    a.mov64(R0, 0);
    a.exit();
    let obj = ObjectSpec {
        maps: vec![MapSpec::ring_buf("events", 1 << 16)],
        programs: vec![spec(
            "btfdrops",
            ProgKind::TpBtf("kfree_skb".into()),
            a.finish().unwrap(),
        )],
    };
    let mut loaded = match load::load(&obj, &LoadOptions::default()) {
        Ok(l) => l,
        Err(LoadError::Btf(e)) => {
            eprintln!("skipped: no kernel BTF for tp_btf: {e}");
            return;
        }
        Err(e) => panic!("tp_btf load: {e}"),
    };
    let link = loaded.attach_tp_btf("btfdrops").expect("attach tp_btf");
    let mut rb = loaded.take_ring_buf("events").unwrap();
    let events = collect_events(&mut rb, 8);
    assert!(!events.is_empty(), "no tp_btf kfree_skb event within 2 s");
    let len = u32::from_le_bytes(events[0][..4].try_into().unwrap());
    assert!(len > 0, "dropped skb has a length");
    loaded.detach_tp_btf("btfdrops", link).unwrap();
}

#[test]
fn f_verifier_rejection_names_program_and_reason() {
    require_kernel!();
    let mut a = Asm::new();
    a.mov64(R0, R2); // r2 is not initialised at entry
    a.exit();
    let err = match load::load(
        &one("bad", ProgKind::SocketFilter, a.finish().unwrap()),
        &LoadOptions::default(),
    ) {
        Ok(_) => panic!("the verifier accepted a read of uninitialised r2"),
        Err(e) => e,
    };
    let text = err.to_string();
    eprintln!("{text}");
    assert!(text.contains("R2 !read_ok"), "{text}");
    assert!(text.contains("`bad`"), "{text}");
    assert_eq!(err.program(), Some("bad"));
    assert!(err.verifier_log().unwrap().full().contains("R2 !read_ok"));

    // Same through the raw kprobe_multi path.
    let mut a = Asm::new();
    a.mov64(R0, R3);
    a.exit();
    let err = match load::load(
        &one("badmulti", ProgKind::KProbeMulti, a.finish().unwrap()),
        &LoadOptions::default(),
    ) {
        Ok(_) => panic!("the verifier accepted a read of uninitialised r3"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("R3 !read_ok"), "{err}");
    assert_eq!(err.program(), Some("badmulti"));

    // A log far longer than the first 64 KiB buffer: the error must still be the verifier's
    // (not ENOSPC), and the displayed tail must end with its message.
    let mut a = Asm::new();
    for i in 0..20_000 {
        a.mov64(R0, i);
    }
    a.mov64(R0, R4);
    a.exit();
    let err = match load::load(
        &one("longlog", ProgKind::KProbeMulti, a.finish().unwrap()),
        &LoadOptions::default(),
    ) {
        Ok(_) => panic!("the verifier accepted a read of uninitialised r4"),
        Err(e) => e,
    };
    let LoadError::Rejected { errno, log, .. } = &err else {
        panic!("expected a verifier rejection, got {err}");
    };
    assert_ne!(errno.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(
        log.full().len() > 64 << 10,
        "log of {} bytes",
        log.full().len()
    );
    assert!(log.tail(5).contains("R4 !read_ok"), "{}", log.tail(5));
    assert!(err.to_string().lines().count() <= 45);
}

#[test]
fn h_recursion_misses_are_read_for_every_program_and_zero_prints_nothing() {
    require_kernel!();
    let mut a = Asm::new();
    a.mov64(R0, 0);
    a.exit();
    let ret0 = a.finish().unwrap();
    let obj = ObjectSpec {
        maps: tracing_maps(),
        programs: vec![
            spec("kp", ProgKind::KProbe, kprobe_body()),
            spec("kpm", ProgKind::KProbeMulti, kprobe_body()),
            spec("drops", ProgKind::RawTracepoint("kfree_skb".into()), ret0),
        ],
    };
    let mut loaded = load::load(&obj, &LoadOptions::default()).expect("load");
    // A raw tracepoint that runs: its count is read from a program that ran.
    let link = loaded.attach_raw_tp("drops").expect("attach raw_tp");
    provoke_drops();
    let runs = loaded.info("drops").unwrap().run_cnt;
    loaded.detach_raw_tp("drops", link).unwrap();

    let missed = loaded.recursion_misses();
    let names: Vec<&str> = missed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["drops", "kp", "kpm"],
        "every program, kprobe_multi too"
    );
    assert!(
        missed.iter().all(|(_, n)| *n == 0),
        "nothing nests here: {missed:?} (runs: {runs})"
    );
    let kernel = pwru::output::KernelCounts {
        lost_events: 0,
        missed,
    };
    assert_eq!(kernel.missed_hits(), 0);
    assert!(kernel.missed_hit_lines().is_empty());
}

/// The kprobe_multi link probe (the guess that decides whether aya's loader is made
/// early) agrees with the fact `auto` goes by: fprobe's `register_fprobe` in the running
/// kernel's BTF (both false on a kernel without fprobe, both true with it).
#[test]
fn the_kprobe_multi_link_probe_agrees_with_btf() {
    require_kernel!();
    let btf = pwru::btf::KernelBtf::open_system(&pwru::btf::Kmods::None).expect("kernel BTF");
    let likely = load::kprobe_multi_links_likely().expect("the probe runs as root");
    assert_eq!(likely, btf.has_func("register_fprobe"));
    assert_eq!(load::kprobe_multi_links_likely().unwrap(), likely, "cached");
}
