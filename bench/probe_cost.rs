//! Benchmark: kernel time of one probe hit. Runs the real probe program (`Attachment::SkbContext`,
//! a SCHED_CLS program under `BPF_PROG_TEST_RUN`) on crafted skbs and prints the kernel's own
//! per-run `duration` for a bare program, and for a filtered one on non-matching and matching packets.
//! Needs root and kernel BTF; prints why and exits 0 otherwise.

use aya::maps::PerCpuArray;
use pwru::asm::{Asm, Reg};
use pwru::btf::{ArchFacts, KernelBtf, Kmods, SkbLayout, SYS_VMLINUX_BTF};
use pwru::load::{self, LoadOptions, LoadedObject, MapKind, MapSpec, ObjectSpec, ProgKind};
use pwru::output::OutputOptions;
use pwru::probes::{self, maps, Attachment, ProbeOptions, RecordSections};

/// What the probe records for these output options.
fn sections(opts: OutputOptions) -> RecordSections {
    pwru::output::sections::record_sections(&opts)
}

/// Runs per `BPF_PROG_TEST_RUN` call.
const BATCH: u32 = 10_000;
/// Calls per round (so 100k runs a round).
const BATCHES: u32 = 10;
/// Rounds per case; the median and the minimum are printed.
const ROUNDS: usize = 5;
/// Ring buffer big enough for one batch of events (168 + 8 header bytes each).
const RING_BYTES: u32 = 4 << 20;
const FILTER: &str = "dst host 10.0.0.2 and tcp and dst port 8080";
const PROG: &str = "probe";

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (BPF_PROG_TEST_RUN of a probe needs CAP_BPF + CAP_PERFMON)".into());
    }
    if !std::path::Path::new(SYS_VMLINUX_BTF).exists() {
        return Some(format!("{SYS_VMLINUX_BTF} is absent"));
    }
    None
}

fn frame(dst: [u8; 4], proto: u8, dport: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let l4_len = if proto == 6 { 20 } else { 8 };
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&dst);
    f.extend_from_slice(&ip);
    let mut l4 = vec![0u8; l4_len];
    l4[0..2].copy_from_slice(&40000u16.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        l4[12] = 5 << 4;
        l4[13] = 0x02;
    }
    f.extend_from_slice(&l4);
    f
}

struct Probe {
    obj: LoadedObject,
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    insns: usize,
}

/// The probe for `opts`, or `r0 = 0; exit` (the test_run loop's own cost) for `None`.
fn load_probe(layout: &SkbLayout, opts: Option<&ProbeOptions>) -> Result<Probe, String> {
    let program = match opts {
        Some(opts) => {
            probes::build(layout, opts, &Attachment::SkbContext).map_err(|e| e.to_string())?
        }
        None => {
            let mut a = Asm::new();
            a.mov64(Reg::R0, 0).exit();
            a.finish().map_err(|e| e.to_string())?
        }
    };
    let insns = program.insns.len();
    let spec = ObjectSpec {
        maps: vec![
            MapSpec::ring_buf(maps::EVENTS, RING_BYTES),
            MapSpec::new(maps::LOST, MapKind::PerCpuArray, 4, 8, 1),
            MapSpec::new(maps::TRACKED_SKBS, MapKind::Hash, 8, 4, 64),
        ],
        programs: vec![load::ProgramSpec {
            name: PROG.into(),
            kind: ProgKind::SchedCls,
            program,
        }],
    };
    let mut obj = load::load(&spec, &LoadOptions::default()).map_err(|e| e.to_string())?;
    let ring = obj.take_ring_buf(maps::EVENTS).map_err(|e| e.to_string())?;
    Ok(Probe { obj, ring, insns })
}

/// Sum of the per-CPU lost-event counters.
fn lost(obj: &LoadedObject) -> u64 {
    let Some(map) = obj.map(maps::LOST) else {
        return 0;
    };
    let Ok(arr) = PerCpuArray::<_, u64>::try_from(map) else {
        return 0;
    };
    arr.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0)
}

/// One round: `BATCHES` calls of `BATCH` runs, the ring drained after each call.
/// Returns (ns per run, events read, events lost).
fn round(p: &mut Probe, data: &[u8]) -> Result<(f64, u64, u64), String> {
    let mut ns = 0f64;
    let mut events = 0u64;
    let lost_before = lost(&p.obj);
    for _ in 0..BATCHES {
        let r = p
            .obj
            .test_run_repeat(PROG, data, BATCH)
            .map_err(|e| e.to_string())?;
        ns += r.duration.as_nanos() as f64;
        while let Some(item) = p.ring.next() {
            drop(item);
            events += 1;
        }
    }
    Ok((ns / BATCHES as f64, events, lost(&p.obj) - lost_before))
}

fn main() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    if let Err(e) = run() {
        eprintln!("probe_cost failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let btf = KernelBtf::open_system(&Kmods::None).map_err(|e| e.to_string())?;
    let layout = SkbLayout::resolve(&btf).map_err(|e| e.to_string())?;
    let bare = ProbeOptions::new(ArchFacts::resolve(&btf).map_err(|e| e.to_string())?);
    let filtered = ProbeOptions {
        filter: pwru::pcapc::parse(FILTER).map_err(|e| e.to_string())?,
        sections: sections(OutputOptions {
            meta: true,
            tuple: true,
            ..OutputOptions::default()
        }),
        ..bare.clone()
    };
    let syn = frame([10, 0, 0, 2], 6, 8080);
    let udp_other_host = frame([10, 0, 0, 9], 17, 53);
    let tcp_other_port = frame([10, 0, 0, 2], 6, 9090);
    // A full-size frame: the filter's packet read is its whole 96-byte window.
    let mut big_other_host = frame([10, 0, 0, 9], 17, 53);
    big_other_host.resize(1514, 0);
    let cases: [(&str, Option<&ProbeOptions>, &[u8]); 6] = [
        (
            "empty program (r0 = 0; exit): test_run's own cost",
            None,
            &syn,
        ),
        (
            "bare (no filter, no outputs), every run emits",
            Some(&bare),
            &syn,
        ),
        (
            "filter+meta+tuple, miss at dst host (udp 10.0.0.9)",
            Some(&filtered),
            &udp_other_host,
        ),
        (
            "filter+meta+tuple, miss at dst port (tcp :9090)",
            Some(&filtered),
            &tcp_other_port,
        ),
        (
            "filter+meta+tuple, miss at dst host, 1514 bytes",
            Some(&filtered),
            &big_other_host,
        ),
        (
            "filter+meta+tuple, match (tcp syn 10.0.0.2:8080)",
            Some(&filtered),
            &syn,
        ),
    ];
    println!("probe_cost: filter {FILTER:?}; kernel ns per run (BPF_PROG_TEST_RUN duration),");
    println!(
        "{ROUNDS} rounds of {} runs, SkbContext program (L3 start: test_run leaves mac_len 0)",
        BATCH * BATCHES
    );
    for (label, opts, data) in cases {
        let mut p = load_probe(&layout, opts)?;
        // Warm-up.
        round(&mut p, data)?;
        let mut per_run = Vec::new();
        let (mut events, mut lost_n) = (0, 0);
        for _ in 0..ROUNDS {
            let (ns, ev, lo) = round(&mut p, data)?;
            per_run.push(ns);
            events += ev;
            lost_n += lo;
        }
        per_run.sort_by(f64::total_cmp);
        println!(
            "  {label:<52} median {:>6.1} ns  min {:>6.1} ns  ({} insns, {events} events, {lost_n} lost)",
            per_run[ROUNDS / 2],
            per_run[0],
            p.insns,
        );
    }
    Ok(())
}
