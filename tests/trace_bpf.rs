//! Tracing BPF programs (`--filter-trace-tc`, `--filter-trace-xdp`) on this host: finding
//! the tc and XDP programs and their main function's BTF id, our fixtures loaded with BTF,
//! and the clear error where fentry programs cannot load; the helpers programs call
//! (`--filter-track-bpf-helpers`). Needs root; skips with a printed reason otherwise.

#[path = "e2e_common/fixtures.rs"]
mod fixtures;

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd};
use std::process::Command;

use pwru::attach::bpf_helpers;
use pwru::attach::{ProgTracer, TracedKind, TRACED_TC, TRACED_XDP};
use pwru::btf::{ArchFacts, KernelBtf, Kmods, SkbLayout};
use pwru::load::{
    self, LoadOptions, ObjectSpec, ProgKind, ProgramSpec, TracedProgType, VerifierLogLevel,
};
use pwru::probes::{self, maps, Attachment, ProbeOptions};

/// The tests load tc programs that the others would see: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn skip_reason() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root");
    }
    if !std::path::Path::new(pwru::btf::SYS_VMLINUX_BTF).exists() {
        return Some("no /sys/kernel/btf/vmlinux");
    }
    None
}

/// A tc program without BTF (through aya, from an ELF without `.BTF`), with the maps the
/// tracing programs use.
fn object_without_btf() -> load::LoadedObject {
    let spec = ObjectSpec {
        maps: vec![
            maps::EVENTS.with_entries(1 << 16).spec(),
            maps::LOST.spec(),
            maps::TC_MATCHED.spec(),
            fixtures::tc_drops_map(),
            maps::XDP_MATCHED.spec(),
        ],
        programs: vec![ProgramSpec {
            name: "no_btf_tc".into(),
            kind: ProgKind::SchedCls,
            program: fixtures::tc_drop_tcp(9),
        }],
    };
    let opts = LoadOptions {
        without_func_info: true,
        ..LoadOptions::default()
    };
    load::load(&spec, &opts).expect("a tc program loads")
}

#[test]
fn xdp_fixture_loads_with_btf_and_is_listed_as_xdp() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = serial();
    let prog = fixtures::xdp_drop_udp(8086);
    let fd = load::load_with_btf(TracedProgType::Xdp, fixtures::XDP_DROP_UDP_NAME, &prog)
        .expect("the XDP fixture loads with BTF");
    let id = load::prog_id(fd.as_fd()).unwrap();
    let found = load::bpf_programs(load::tracing::PROG_TYPE_XDP).unwrap();
    let ours = found.iter().find(|p| p.id == id).expect("listed");
    assert_eq!(ours.name, fixtures::XDP_DROP_UDP_NAME);
    assert_eq!(ours.main_func, Some(load::func_btf::FUNC_TYPE_ID));
    assert!(found
        .iter()
        .all(|p| p.prog_type == load::tracing::PROG_TYPE_XDP));
    let tc = load::bpf_programs(load::tracing::PROG_TYPE_SCHED_CLS).unwrap();
    assert!(tc.iter().all(|p| p.id != id), "not a tc program");
}

#[test]
fn tc_programs_are_found_with_their_main_function() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = serial();
    let (with_btf, _drops) = fixtures::load_tc_drop_tcp(8081).expect("the fixture loads with BTF");
    let with_id = load::prog_id(with_btf.as_fd()).unwrap();
    let obj = object_without_btf();
    let without_id = obj.info("no_btf_tc").unwrap().id;

    let found = load::bpf_programs(load::tracing::PROG_TYPE_SCHED_CLS).unwrap();
    let by_id = |id| found.iter().find(|p| p.id == id).cloned();
    let ours = by_id(with_id).expect("the fixture is listed");
    assert_eq!(ours.name, fixtures::TC_DROP_TCP_NAME);
    assert_eq!(ours.main_func, Some(load::func_btf::FUNC_TYPE_ID));
    let plain = by_id(without_id).expect("the program without BTF is listed");
    assert_eq!((plain.name.as_str(), plain.main_func), ("no_btf_tc", None));
    assert!(found
        .iter()
        .all(|p| p.prog_type == load::tracing::PROG_TYPE_SCHED_CLS));
}

/// The XDP tracer finds the XDP fixture (traced, or refused where fentry cannot load) and
/// never the tc programs.
#[test]
fn the_xdp_tracer_sees_xdp_programs_only() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = serial();
    let btf = KernelBtf::open_system(&Kmods::None).unwrap();
    let layout = SkbLayout::resolve(&btf).unwrap();
    let opts = ProbeOptions::new(ArchFacts::resolve(&btf).unwrap());
    let prog = fixtures::xdp_drop_udp(8086);
    let xdp = load::load_with_btf(TracedProgType::Xdp, fixtures::XDP_DROP_UDP_NAME, &prog).unwrap();
    let xdp_id = load::prog_id(xdp.as_fd()).unwrap();
    let obj = object_without_btf();
    let maps = obj.raw_maps().unwrap();
    let mut tracer = ProgTracer::new(
        &TRACED_XDP,
        maps,
        HashSet::new(),
        VerifierLogLevel::default(),
    );
    let mut build = |a: &Attachment| probes::build(&layout, &opts, a);
    let sync = tracer.sync(&mut build).unwrap();
    assert!(!sync.no_btf.iter().any(|n| n == "no_btf_tc"), "{sync:?}");
    let name = fixtures::XDP_DROP_UDP_NAME.to_string();
    match load::check_tracing() {
        Err(_) => assert!(sync.refused.iter().any(|(n, _)| *n == name), "{sync:?}"),
        Ok(()) => {
            let addr = pwru::probes::event::bpf_prog_probe_addr(xdp_id);
            assert!(sync.added.contains(&(addr, name)), "{sync:?}");
        }
    }
    tracer.detach();
}

#[test]
fn the_tracer_skips_programs_without_btf_and_reports_refusals() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = serial();
    let btf = KernelBtf::open_system(&Kmods::None).unwrap();
    let layout = SkbLayout::resolve(&btf).unwrap();
    let opts = ProbeOptions::new(ArchFacts::resolve(&btf).unwrap());
    let (with_btf, _drops) = fixtures::load_tc_drop_tcp(8081).unwrap();
    let with_id = load::prog_id(with_btf.as_fd()).unwrap();
    let obj = object_without_btf();
    let maps = obj.raw_maps().unwrap();
    let mut tc = ProgTracer::new(
        &TRACED_TC,
        maps,
        HashSet::new(),
        VerifierLogLevel::default(),
    );
    let mut build = |a: &Attachment| probes::build(&layout, &opts, a);
    let sync = tc.sync(&mut build).unwrap();
    assert!(sync.no_btf.iter().any(|n| n == "no_btf_tc"), "{sync:?}");
    match load::check_tracing() {
        // This host refuses fentry: the fixture is reported, not traced.
        Err(_) => {
            assert!(
                sync.refused
                    .iter()
                    .any(|(n, _)| n == fixtures::TC_DROP_TCP_NAME),
                "{sync:?}"
            );
            assert_eq!(tc.traced(), 0);
        }
        Ok(()) => {
            let addr = pwru::probes::event::bpf_prog_probe_addr(with_id);
            assert!(sync
                .added
                .contains(&(addr, fixtures::TC_DROP_TCP_NAME.into())));
        }
    }
    // Seen once: a second sync reports nothing new.
    let again = tc.sync(&mut build).unwrap();
    assert!(again.no_btf.is_empty() && again.refused.is_empty() && again.added.is_empty());
    // Unloaded programs are forgotten.
    let seen = tc.untraceable();
    drop(with_btf);
    drop(obj);
    let after = tc.sync(&mut build).unwrap();
    assert!(after.added.is_empty(), "{after:?}");
    assert_eq!(tc.untraceable(), seen - 2);
    tc.detach();
    assert_eq!(tc.traced(), 0);
}

/// Each flag tracing BPF programs, alone or with the XDP flags, and the flags the error
/// line names.
const BPF_TRACING_FLAGS: &[(&[&str], &str)] = &[
    (&["--filter-trace-tc", "tcp"], "--filter-trace-tc"),
    (&["--filter-trace-xdp", "udp"], "--filter-trace-xdp"),
    (
        &[
            "--filter-trace-xdp",
            "--filter-xdp-expr",
            "xdp->rxq->dev->ifindex == 1",
            "udp",
        ],
        "--filter-trace-xdp and --filter-xdp-expr",
    ),
    (
        &[
            "--filter-trace-xdp",
            "--output-xdp-metadata",
            "xdp->rxq->queue_index",
        ],
        "--filter-trace-xdp and --output-xdp-metadata",
    ),
];

#[test]
fn bpf_tracing_flags_fail_with_one_line_naming_them_where_fentry_cannot_load() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let why = match load::check_tracing() {
        Err(why) => why,
        Ok(()) => {
            eprintln!(
                "skipped: this host loads fentry programs; the VM suite (trace-tc, trace-xdp) runs the flags"
            );
            return;
        }
    };
    for (args, flags) in BPF_TRACING_FLAGS {
        let out = Command::new(env!("CARGO_BIN_EXE_pwru"))
            .args(*args)
            .output()
            .expect("pwru runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!("pwru: error: {flags} cannot be used here: {why}"),
            "{args:?}"
        );
        // On this CI host the kernel denies loading tracing programs to root (EPERM).
        if matches!(why, load::TracingUnavailable::Denied(_)) {
            assert!(stderr.contains("denied"), "{stderr}");
        }
    }
}

/// `--backend fentry` where fentry on kernel functions cannot load (this host: EPERM): one
/// line naming the backend and why, exit code 1, before anything is built or attached.
#[test]
fn the_fentry_backend_fails_with_one_line_where_fentry_cannot_load() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let btf = KernelBtf::open_system(&Kmods::None).expect("open BTF");
    let funcs = btf.skb_functions().expect("skb functions");
    let ip_rcv = funcs
        .iter()
        .find(|f| f.name == "ip_rcv")
        .expect("ip_rcv in BTF");
    let why = match load::check_kernel_fentry(ip_rcv.btf_id) {
        Err(why) => why,
        Ok(()) => {
            eprintln!(
                "skipped: this host loads fentry programs; the VM suite (fentry-basic, fentry-track) runs the backend"
            );
            return;
        }
    };
    for args in [
        &["--backend", "fentry"][..],
        &["--backend=fentry", "--filter-func", "^ip_rcv$", "tcp"],
    ] {
        let started = std::time::Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_pwru"))
            .args(args)
            .output()
            .expect("pwru runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!("pwru: error: --backend fentry cannot be used here: {why}"),
            "{args:?}"
        );
        if matches!(why, load::TracingUnavailable::Denied(_)) {
            assert!(stderr.contains("denied"), "{stderr}");
        }
        // At once: no program was built or loaded.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}

/// `--filter-track-bpf-helpers`: the helpers of programs loaded here, read back from
/// their translated instructions with our decoder and named through kallsyms. The
/// verifier has turned map helpers on a hash map into calls of its operations.
#[test]
fn helpers_are_read_from_translated_instructions() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = serial();
    let (tc, _drops) = fixtures::load_tc_drop_tcp(8082).expect("the fixture loads");
    let tc_id = load::prog_id(tc.as_fd()).unwrap();
    let spec = ObjectSpec {
        maps: vec![load::MapSpec::new(
            "helper_hash",
            load::MapKind::Hash,
            4,
            8,
            4,
        )],
        programs: vec![ProgramSpec {
            name: "helper_kprobe".into(),
            kind: ProgKind::KProbe,
            program: pwru::bpf! {
                *(u32 *)(r10 - 4) = 7;
                r1 = map[helper_hash];
                r2 = r10;
                r2 += -4;
                call map_delete_elem;
                call ktime_get_ns;
                r0 = 0;
                exit;
            }
            .unwrap(),
        }],
    };
    let obj = load::load(&spec, &LoadOptions::default()).expect("a kprobe program loads");
    let kprobe_id = obj.info("helper_kprobe").unwrap().id;

    let ksyms = pwru::output::Ksyms::load().unwrap();
    let base = ksyms.addresses_of(bpf_helpers::CALL_BASE_SYMBOL)[0];
    let name_at = |addr| {
        ksyms
            .exact(addr)
            .filter(|s| !s.is_bpf())
            .map(|s| s.name.to_string())
    };
    let table: &[(BorrowedFd<'_>, &[&str])] = &[
        (
            tc.as_fd(),
            &["__htab_map_lookup_elem", "htab_map_update_elem"],
        ),
        (
            obj.program_fd("helper_kprobe").unwrap(),
            &["bpf_ktime_get_ns", "htab_map_delete_elem"],
        ),
    ];
    for (fd, want) in table {
        let program = load::XlatedProgram {
            id: 0,
            prog_type: 0,
            name: "p".into(),
            insns: load::xlated_insns(*fd).unwrap(),
        };
        let found = bpf_helpers::collect(&[program], base, name_at);
        assert_eq!(found.names(), *want);
        assert_eq!(found.hidden, 0);
    }
    // Listing the programs on a packet's path finds the tc fixture, not the kprobe.
    let listed = load::xlated_programs(bpf_helpers::on_packet_path).unwrap();
    assert!(listed.iter().any(|p| p.id == tc_id));
    assert!(listed.iter().all(|p| p.id != kprobe_id));
    let found = bpf_helpers::collect(&listed, base, name_at);
    assert!(found.functions["htab_map_update_elem"].contains(fixtures::TC_DROP_TCP_NAME));
}

/// The flags' kinds name the flags the error lines name.
#[test]
fn traced_kinds_name_their_flags() {
    let kinds: [&TracedKind; 2] = [&TRACED_TC, &TRACED_XDP];
    assert_eq!(
        kinds.map(|k| k.flag),
        ["--filter-trace-tc", "--filter-trace-xdp"]
    );
    assert_eq!(
        kinds.map(|k| k.prog_type.ctx_struct()),
        ["__sk_buff", "xdp_md"]
    );
}
