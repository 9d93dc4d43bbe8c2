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
//! - `ring`: then `bpf_ringbuf_reserve` of an event's size and `bpf_ringbuf_discard`
//!   (the ring's cost without a reader: nothing is submitted);
//! - `event`: then the helpers every event calls (CPU, pid, time, task name, function
//!   address) into the reserved record before the discard.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use pwru::asm::{Asm, Program};
use pwru::attach::{self, BackendKind, BackendOptions, NoProgress};
use pwru::bpf;
use pwru::btf::{ArchFacts, KernelBtf, Kmods, SkbLayout};
use pwru::load::{self, LoadOptions, MapKind, MapSpec, ObjectSpec};
use pwru::probes::event::EVENT_SIZE;
use pwru::probes::{Attachment, ProbeError};

/// The ring buffer of the `ring` and `event` stages.
const RING: &str = "floor_ring";
/// Bytes of packet the `packet` stage reads: Ethernet (14), IPv4 (20), UDP ports (4).
const PACKET_BYTES: i32 = 38;
/// Stack slots: the skb fields, then the packet bytes.
const SKB_SLOT: i16 = -160;
const PACKET_SLOT: i16 = -224;

#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Stage {
    Empty,
    Skb,
    Packet,
    Ring,
    Event,
}

impl Stage {
    fn from_name(name: &str) -> Option<Stage> {
        Some(match name {
            "empty" => Stage::Empty,
            "skb" => Stage::Skb,
            "packet" => Stage::Packet,
            "ring" => Stage::Ring,
            "event" => Stage::Event,
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
        bpf!(into &mut a;
            r1 = r8;
            r2 = 0;
            call ringbuf_discard;
        );
    }
    bpf!(into &mut a;
      (out):
        r0 = 0;
        exit;
    );
    Ok(a.finish()?)
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
        stage: stage.ok_or("--stage=empty|skb|packet|ring|event is required")?,
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

fn run(args: &Args, signals: &libc::sigset_t) -> Result<(), String> {
    if let Some(path) = &args.output_file {
        std::fs::write(path, "").map_err(|e| format!("{path}: {e}"))?;
    }
    let btf = KernelBtf::open_system(&Kmods::default()).map_err(|e| e.to_string())?;
    let arch = ArchFacts::resolve(&btf).map_err(|e| e.to_string())?;
    let layout = SkbLayout::resolve(&btf).map_err(|e| e.to_string())?;
    let offsets = Offsets::new(&layout)?;
    let mut backend = attach::backend_with(args.backend, BackendOptions::default());
    let targets = backend
        .targets(&btf, &|_| true)
        .map_err(|e| e.to_string())?;
    let mut build = |at: &Attachment| program(args.stage, &arch, &offsets, at);
    let programs = backend
        .programs(&targets, &mut build)
        .map_err(|e| e.to_string())?;
    let maps = match args.stage >= Stage::Ring {
        true => vec![MapSpec::new(RING, MapKind::RingBuf, 0, 0, 1 << 20)],
        false => Vec::new(),
    };
    let spec = ObjectSpec { maps, programs };
    let mut obj = load::load(&spec, &LoadOptions::default()).map_err(|e| format!("{e:#}"))?;
    let stop = AtomicBool::new(false);
    let summary = backend
        .attach(&mut obj, &targets, &NoProgress, &stop)
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
    Ok(())
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
