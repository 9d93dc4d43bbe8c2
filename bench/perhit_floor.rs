//! The per-hit floor: minimal probe programs attached like pwru's (same backend, same skb
//! functions), each doing one step more, so `bench/vm/vm-perhit.sh` can say what a hit costs.
//!
//! Usage (as root): `perhit_floor --stage=STAGE [--backend=kprobe-multi|kprobe]
//! [--output-file=F] [FILTER]`. It prints "Listening for events" once attached and detaches
//! on SIGINT or SIGTERM; `--output-file` is created empty and the filter is ignored, so the
//! VM benchmark scripts start it like a tracer. The stages add up:
//!
//! - `empty`: `r0 = 0; exit` (what the kernel spends running any program);
//! - `skb`: the skb pointer from the context and one `bpf_probe_read_kernel` of the skb
//!   fields a filter needs (`len` … `head`, the span pwru's probes read first);
//! - `packet`: then a second read, of the packet's first 38 bytes from the MAC header (an
//!   Ethernet, IPv4 and UDP header: what the benchmark filter decides on);
//! - `ring`: then `bpf_ringbuf_reserve` of an event's size and `bpf_ringbuf_submit`
//!   (adaptive wakeup, as ours); a thread drains the ring the way our reader does under a
//!   flood (everything, then 1 ms off), so reserves succeed;
//! - `event`: then the helpers every event calls (CPU, pid, time, task name, function
//!   address) into the reserved record before the submit;
//! - `meta`: then the fewest reads the default columns need (NETNS, IFACE, MTU): the
//!   skb's `dev` and `_skb_refdst` in one read, `ifindex` … `nd_net` in one,
//!   `net->ns.inum`, `dst->dev` … `dst->_metrics` in one, and the RTAX_MTU metric.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use aya::maps::RingBuf;

use pwru::asm::{Asm, Program};
use pwru::attach::{self, Backend, BackendKind, BackendOptions, NoProgress, Target};
use pwru::bpf;
use pwru::btf::{ArchFacts, KernelBtf, Kmods, SkbLayout};
use pwru::load::{self, LoadOptions, LoadedObject, MapKind, MapSpec, ObjectSpec};
use pwru::probes::event::EVENT_SIZE;
use pwru::probes::{Attachment, ProbeError};

/// The ring buffer of the `ring` and `event` stages.
const RING: &str = "floor_ring";
/// Bytes of packet the `packet` stage reads: Ethernet (14), IPv4 (20), UDP ports (4).
const PACKET_BYTES: i32 = 38;
/// Stack slots: the skb fields, then the packet bytes.
const SKB_SLOT: i16 = -160;
const PACKET_SLOT: i16 = -224;
/// The `meta` stage's copies: skb `dev` … `_skb_refdst`, net_device, dst_entry.
const META_SKB_SLOT: i16 = -320;
const META_DEV_SLOT: i16 = -384;
const META_DST_SLOT: i16 = -416;

#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
enum Stage {
    Empty,
    Skb,
    Packet,
    Ring,
    Event,
    Meta,
}

impl Stage {
    fn from_name(name: &str) -> Option<Stage> {
        Some(match name {
            "empty" => Stage::Empty,
            "skb" => Stage::Skb,
            "packet" => Stage::Packet,
            "ring" => Stage::Ring,
            "event" => Stage::Event,
            "meta" => Stage::Meta,
            _ => return None,
        })
    }
}

/// Where the fields the `skb` and `packet` stages use lie.
struct Offsets {
    /// Start and length of the span read from the skb.
    span: (i32, i32),
    /// Offsets inside the span of `head` (u64) and `mac_header` (u16).
    head: i16,
    mac_header: i16,
    meta: MetaOffsets,
}

/// What the `meta` stage reads, as (struct offset, length) spans and offsets in them.
struct MetaOffsets {
    /// skb `dev` … `_skb_refdst`; where `dev` and `_skb_refdst` are in it.
    skb_span: (i32, i32),
    dev: i16,
    refdst: i16,
    /// net_device `ifindex` … `nd_net.net` in one read when they are close (6.12), else
    /// each on its own (6.1: 1 KiB apart), as the probes do: (span, stack slot) each;
    /// `ifindex` lands at [`META_DEV_SLOT`], the `struct net *` at `net`.
    dev_reads: Vec<((i32, i32), i16)>,
    net: i16,
    inum: i32,
    /// dst_entry `dev` … `_metrics`; where `_metrics` is in it.
    dst_span: (i32, i32),
    metrics: i16,
}

impl MetaOffsets {
    fn new(layout: &SkbLayout) -> Result<MetaOffsets, String> {
        let s = &layout.sk_buff;
        let d = &layout.net_device;
        let (Some(refdst), Some(dst), Some(ns)) = (&s.skb_refdst, &layout.dst_entry, &layout.netns)
        else {
            return Err("the meta stage needs _skb_refdst, dst_entry and the netns fields".into());
        };
        let span = |a: u32, b: u32, size: u32| {
            let lo = a.min(b);
            (lo as i32, (a.max(b) + size - lo) as i32)
        };
        let skb_span = span(s.dev.offset_bytes(), refdst.offset_bytes(), 8);
        let net_at = d.nd_net.offset_bytes() + ns.possible_net_net.offset_bytes();
        let ifindex_at = d.ifindex.offset_bytes();
        let dev_span = span(ifindex_at, net_at, 8);
        let (dev_reads, net) = match dev_span.1 <= i32::from(META_SKB_SLOT - META_DEV_SLOT) {
            true => (
                vec![(dev_span, META_DEV_SLOT)],
                META_DEV_SLOT + (net_at as i32 - dev_span.0) as i16,
            ),
            false => (
                vec![
                    ((ifindex_at as i32, 4), META_DEV_SLOT),
                    ((net_at as i32, 8), META_DEV_SLOT + 8),
                ],
                META_DEV_SLOT + 8,
            ),
        };
        let dst_span = span(dst.dev.offset_bytes(), dst.metrics.offset_bytes(), 8);
        let fits = [
            (skb_span, PACKET_SLOT - META_SKB_SLOT),
            (dst_span, META_DEV_SLOT - META_DST_SLOT),
        ];
        if fits.iter().any(|((_, len), room)| *len > i32::from(*room)) {
            return Err(format!(
                "the meta spans {skb_span:?} {dst_span:?} are too long"
            ));
        }
        Ok(MetaOffsets {
            skb_span,
            dev: META_SKB_SLOT + (s.dev.offset_bytes() as i32 - skb_span.0) as i16,
            refdst: META_SKB_SLOT + (refdst.offset_bytes() as i32 - skb_span.0) as i16,
            dev_reads,
            net,
            inum: ns.net_ns_inum.offset_bytes() as i32,
            dst_span,
            metrics: META_DST_SLOT + (dst.metrics.offset_bytes() as i32 - dst_span.0) as i16,
        })
    }
}

impl Offsets {
    fn new(layout: &SkbLayout) -> Result<Offsets, String> {
        let s = &layout.sk_buff;
        let fields = [&s.len, &s.mac_header, &s.network_header, &s.head, &s.data];
        let start = fields.iter().map(|f| f.offset_bytes()).min().unwrap_or(0);
        let end = fields
            .iter()
            .map(|f| f.offset_bytes() + f.size_bytes)
            .max()
            .unwrap_or(0);
        let at = |f: &pwru::btf::Field| SKB_SLOT + (f.offset_bytes() - start) as i16;
        if end - start > SKB_SLOT.unsigned_abs() as u32 {
            return Err(format!("the skb fields span {} bytes", end - start));
        }
        Ok(Offsets {
            span: (start as i32, (end - start) as i32),
            head: at(&s.head),
            mac_header: at(&s.mac_header),
            meta: MetaOffsets::new(layout)?,
        })
    }
}

/// The stage's program for one attachment (the skb's register differs by position).
fn program(
    stage: Stage,
    arch: &ArchFacts,
    offsets: &Offsets,
    at: &Attachment,
) -> Result<Program, ProbeError> {
    let mut a = Asm::new();
    let out = a.label();
    let Attachment::Kprobe { skb_arg, .. } = at else {
        return Err(ProbeError::Unsupported(
            "a floor stage on a non-kprobe attachment",
        ));
    };
    if stage >= Stage::Skb {
        let arg = arch.regs.args[usize::from(*skb_arg).clamp(1, arch.regs.args.len()) - 1];
        let (start, len) = offsets.span;
        bpf!(into &mut a;
            r6 = r1;
            r7 = *(u64 *)(r1 + arg);
            if r7 == 0 goto (out);
            r1 = r10;
            r1 += (SKB_SLOT);
            r2 = len;
            r3 = r7;
            r3 += start;
            call probe_read_kernel;
            if r0 != 0 goto (out);
        );
    }
    if stage >= Stage::Packet {
        bpf!(into &mut a;
            r3 = *(u64 *)(r10 + (offsets.head));
            r1 = *(u16 *)(r10 + (offsets.mac_header));
            r3 += r1;
            r1 = r10;
            r1 += (PACKET_SLOT);
            r2 = (PACKET_BYTES);
            call probe_read_kernel;
            if r0 != 0 goto (out);
        );
    }
    if stage >= Stage::Ring {
        bpf!(into &mut a;
            r1 = map[(RING)];
            r2 = (EVENT_SIZE as i32);
            r3 = 0;
            call ringbuf_reserve;
            if r0 == 0 goto (out);
            r8 = r0;
        );
        if stage >= Stage::Event {
            bpf!(into &mut a;
                call get_smp_processor_id;
                *(u32 *)(r8 + 4) = r0;
                call get_current_pid_tgid;
                *(u64 *)(r8 + 8) = r0;
                call ktime_get_ns;
                *(u64 *)(r8 + 32) = r0;
                r1 = r8;
                r1 += 200;
                r2 = 16;
                call get_current_comm;
                r1 = r6;
                call get_func_ip;
                *(u64 *)(r8 + 16) = r0;
            );
        }
        if stage >= Stage::Meta {
            meta_reads(&mut a, &offsets.meta);
        }
        bpf!(into &mut a;
            r1 = r8;
            r2 = 0;
            call ringbuf_submit;
        );
    }
    bpf!(into &mut a;
      (out):
        r0 = 0;
        exit;
    );
    Ok(a.finish()?)
}

/// The `meta` stage's reads, into the record at r8 (r7: the skb).
fn meta_reads(a: &mut Asm, m: &MetaOffsets) {
    let [no_dev, done] = [a.label(), a.label()];
    let read = |a: &mut Asm, slot: i16, (start, len): (i32, i32)| {
        bpf!(into a;
            r3 += start;
            r1 = r10;
            r1 += slot;
            r2 = len;
            call probe_read_kernel;
        );
    };
    bpf!(into a; r3 = r7;);
    read(a, META_SKB_SLOT, m.skb_span);
    bpf!(into a;
        r3 = *(u64 *)(r10 + (m.dev));
        if r3 == 0 goto (no_dev);
    );
    for (span, slot) in &m.dev_reads {
        bpf!(into a; r3 = *(u64 *)(r10 + (m.dev)););
        read(a, *slot, *span);
    }
    bpf!(into a;
        r1 = *(u32 *)(r10 + (META_DEV_SLOT));
        *(u32 *)(r8 + 88) = r1;
        r3 = *(u64 *)(r10 + (m.net));
        if r3 == 0 goto (no_dev);
        r3 += (m.inum);
        r1 = r8;
        r1 += 80;
        r2 = 4;
        call probe_read_kernel;
      (no_dev):
        r3 = *(u64 *)(r10 + (m.refdst));
        r3 &= -2;
        if r3 == 0 goto (done);
    );
    read(a, META_DST_SLOT, m.dst_span);
    bpf!(into a;
        r3 = *(u64 *)(r10 + (m.metrics));
        r3 &= -4;
        if r3 == 0 goto (done);
        r3 += 4;
        r1 = r8;
        r1 += 96;
        r2 = 4;
        call probe_read_kernel;
      (done):
    );
}

struct Args {
    stage: Stage,
    backend: BackendKind,
    output_file: Option<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut stage = None;
    let mut backend = BackendKind::KprobeMulti;
    let mut output_file = None;
    for arg in args {
        if let Some(v) = arg.strip_prefix("--stage=") {
            stage = Some(Stage::from_name(v).ok_or(format!("unknown stage {v}"))?);
        } else if let Some(v) = arg.strip_prefix("--backend=") {
            backend = match BackendKind::from_name(v) {
                Some(k @ (BackendKind::KprobeMulti | BackendKind::Kprobe)) => k,
                _ => return Err(format!("backend {v}: kprobe-multi or kprobe")),
            };
        } else if let Some(v) = arg.strip_prefix("--output-file=") {
            output_file = Some(v.to_string());
        } else if arg.starts_with("--") {
            return Err(format!("unknown flag {arg}"));
        }
        // Anything else is the tracer's filter: ignored.
    }
    Ok(Args {
        stage: stage.ok_or("--stage=empty|skb|packet|ring|event|meta is required")?,
        backend,
        output_file,
    })
}

/// Blocks SIGINT and SIGTERM (before any thread starts) and returns the set to wait on.
fn block_signals() -> libc::sigset_t {
    // SAFETY: the set is initialised by sigemptyset before use; sigprocmask only reads it.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for(set: &libc::sigset_t) {
    let mut sig = 0;
    // SAFETY: `set` is a valid signal set and `sig` a valid out-pointer.
    unsafe { libc::sigwait(set, &mut sig) };
}

/// A stage's backend, its loaded programs and the functions they are for.
type LoadedStage = (Box<dyn Backend>, LoadedObject, Vec<Target>);

/// The stage's programs for `kind`'s skb functions, loaded (not attached).
fn load_stage(stage: Stage, kind: BackendKind, btf: &KernelBtf) -> Result<LoadedStage, String> {
    let arch = ArchFacts::resolve(btf).map_err(|e| e.to_string())?;
    let layout = SkbLayout::resolve(btf).map_err(|e| e.to_string())?;
    let offsets = Offsets::new(&layout)?;
    let backend = attach::backend_with(kind, BackendOptions::default());
    let targets = backend.targets(btf, &|_| true).map_err(|e| e.to_string())?;
    let mut build = |at: &Attachment| program(stage, &arch, &offsets, at);
    let programs = backend
        .programs(&targets, &mut build)
        .map_err(|e| e.to_string())?;
    let maps = match stage >= Stage::Ring {
        true => vec![MapSpec::new(RING, MapKind::RingBuf, 0, 0, 1 << 20)],
        false => Vec::new(),
    };
    let spec = ObjectSpec { maps, programs };
    let obj = load::load(&spec, &LoadOptions::default()).map_err(|e| format!("{e:#}"))?;
    Ok((backend, obj, targets))
}

fn run(args: &Args, signals: &libc::sigset_t) -> Result<(), String> {
    if let Some(path) = &args.output_file {
        std::fs::write(path, "").map_err(|e| format!("{path}: {e}"))?;
    }
    let btf = KernelBtf::open_system(&Kmods::default()).map_err(|e| e.to_string())?;
    let (mut backend, mut obj, targets) = load_stage(args.stage, args.backend, &btf)?;
    let stop = Arc::new(AtomicBool::new(false));
    let drainer = match args.stage >= Stage::Ring {
        true => Some(drain_ring(&mut obj, stop.clone())?),
        false => None,
    };
    let summary = backend
        .attach(&mut obj, &targets, &NoProgress, &AtomicBool::new(false))
        .map_err(|e| e.to_string())?;
    eprintln!(
        "Attached {} (ignored {}) with the floor stage's programs",
        summary.attached, summary.ignored
    );
    eprintln!("Listening for events.. (Ctrl-C to stop)");
    wait_for(signals);
    if let Some(Ok(h)) = backend.hand_off() {
        eprintln!(
            "Detaching {} kprobes in the background (pid {}).",
            h.count, h.pid
        );
    }
    backend.detach(&mut obj, &NoProgress);
    stop.store(true, Ordering::Relaxed);
    if let Some(drainer) = drainer {
        drainer.join().map_err(|_| "the ring's reader failed")?;
    }
    Ok(())
}

/// Reads the ring on a thread like our reader under a flood: all records, then 1 ms off.
fn drain_ring(obj: &mut LoadedObject, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>, String> {
    let map = obj
        .take_map(RING)
        .ok_or("the ring buffer is not in the object")?;
    let mut ring = RingBuf::try_from(map).map_err(|e| e.to_string())?;
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            while ring.next().is_some() {}
            std::thread::sleep(Duration::from_millis(1));
        }
    }))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // The kprobe backend hands its probes to `/proc/self/exe` as the detacher.
    if argv.first().map(String::as_str) == Some(attach::background::DETACHER_ARG) {
        return attach::background::detacher_main(&argv[1..]);
    }
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("perhit_floor: {e}");
            return ExitCode::from(2);
        }
    };
    let signals = block_signals();
    match run(&args, &signals) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perhit_floor: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAGES: [Stage; 6] = [
        Stage::Empty,
        Stage::Skb,
        Stage::Packet,
        Stage::Ring,
        Stage::Event,
        Stage::Meta,
    ];

    #[test]
    fn stage_names_round_trip_and_bad_input_is_refused() {
        for (name, stage) in ["empty", "skb", "packet", "ring", "event", "meta"]
            .iter()
            .zip(STAGES)
        {
            assert_eq!(Stage::from_name(name), Some(stage));
        }
        let args = |a: &[&str]| parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(args(&["--stage=meta", "--output-file=/x", "udp"]).is_ok());
        for bad in [
            &[][..],
            &["--stage=all"],
            &["--stage=skb", "--backend=fentry"],
            &["--stage=skb", "--x"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }

    /// Every stage passes the verifier on both kprobe backends (loaded, not attached:
    /// this host's kernel has no kprobes).
    #[test]
    fn every_stage_loads_on_both_kprobe_backends() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: loading BPF programs needs root");
            return;
        }
        let btf = KernelBtf::open_system(&Kmods::default()).expect("the kernel has BTF");
        for kind in [BackendKind::KprobeMulti, BackendKind::Kprobe] {
            for stage in STAGES {
                let (_, obj, targets) = load_stage(stage, kind, &btf)
                    .unwrap_or_else(|e| panic!("{stage:?} on {kind:?}: {e}"));
                assert!(!targets.is_empty());
                assert!(
                    !obj.program_ids().is_empty(),
                    "{stage:?}: no program loaded"
                );
            }
        }
    }
}
