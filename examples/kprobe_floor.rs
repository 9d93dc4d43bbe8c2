//! The kernel's floor for the kprobe backend: how long registering and unregistering the
//! same perf kprobes as the tracer takes when user space does nothing else.
//!
//! Run as root on a kernel with kprobes (in the VM: `bench/vm/vm-floor.sh`):
//!
//! ```text
//! kprobe_floor [--filter-func REGEX] [--names FILE] MODE...
//! ```
//!
//! The targets are the tracer's (same BTF scan, same probeable-function check, same
//! `--filter-func`); `--names FILE` keeps only the functions named in FILE (one per line,
//! first word, e.g. a copy of `/sys/kernel/debug/kprobes/list` taken while another tracer
//! was attached). One trivial kprobe program (`r0 = 0; exit`) is loaded once; each MODE
//! `A:C[:exp]` then opens one perf kprobe per function with it from A threads, closes them
//! all from C threads, with `/sys/kernel/rcu_expedited` = 1 throughout when `:exp` is
//! given, by kernel text address instead of by name when `:addr` is given (functions whose
//! kallsyms name is unique, as the tracer does), and prints
//!
//! ```text
//! FLOOR mode=A:C[:exp] functions=N attached=N refused=N attach_s=S close_s=S
//! ```
//!
//! `1:1` is the kernel's own cost of one-by-one registration by name (what a simple tracer
//! pays), `4:64:exp:addr` the settings of our kprobe backend.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

use pwru::asm::{Asm, Reg};
use pwru::attach::BackendKind;
use pwru::btf::Kmods;
use pwru::load::perf::{self, ExpeditedRcu, KprobePoint};
use pwru::load::{self, LoadOptions, ObjectSpec, ProgKind, ProgramSpec};
use pwru::settings::{FuncFilter, KernelSettings};

struct Mode {
    text: String,
    attach_threads: usize,
    close_threads: usize,
    expedite: bool,
    by_address: bool,
}

fn parse_mode(text: &str) -> Result<Mode> {
    let mut parts = text.split(':');
    let (Some(a), Some(c)) = (parts.next(), parts.next()) else {
        bail!("mode {text:?}: want ATTACH_THREADS:CLOSE_THREADS[:exp][:addr]");
    };
    let mut mode = Mode {
        text: text.to_string(),
        attach_threads: a.parse::<usize>().context("attach threads")?.max(1),
        close_threads: c.parse::<usize>().context("close threads")?.max(1),
        expedite: false,
        by_address: false,
    };
    for p in parts {
        match p {
            "exp" => mode.expedite = true,
            "addr" => mode.by_address = true,
            _ => bail!("mode {text:?}: unknown option {p:?} (exp, addr)"),
        }
    }
    Ok(mode)
}

/// Runs `work(i)` for every i in 0..n from `threads` threads.
fn parallel(n: usize, threads: usize, work: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.min(n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                work(i);
            });
        }
    });
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kprobe_floor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut func = None;
    let mut names_file = None;
    let mut modes = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--filter-func" => {
                let re = args.next().ok_or_else(|| anyhow!("--filter-func REGEX"))?;
                func = Some(FuncFilter::new(&re).with_context(|| format!("--filter-func {re:?}"))?);
            }
            "--names" => names_file = Some(args.next().ok_or_else(|| anyhow!("--names FILE"))?),
            _ => modes.push(parse_mode(&arg)?),
        }
    }
    if modes.is_empty() {
        bail!("usage: kprobe_floor [--filter-func REGEX] [--names FILE] A:C[:exp]...");
    }
    let btf = pwru::tracer::open_btf(&KernelSettings {
        btf: None,
        kmods: Kmods::Named(Vec::new()),
    })?;
    let backend = pwru::attach::backend(BackendKind::Kprobe);
    let mut targets = pwru::tracer::select_targets(func.as_ref(), &btf, backend.as_ref())?;
    if let Some(path) = names_file {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        // kprobes/list lines: "ADDR  k  FUNCTION+0x0    [FTRACE]"; plain lists: "FUNCTION".
        let names: HashSet<&str> = text
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let f = if w.len() >= 3 && w[1] == "k" {
                    w[2]
                } else {
                    *w.first()?
                };
                Some(f.split('+').next().unwrap_or(f))
            })
            .collect();
        targets.retain(|t| names.contains(t.name.as_str()));
    }
    let ksyms = pwru::output::Ksyms::load()?;
    let addresses = ksyms.unique_addresses(targets.iter().map(|t| t.name.as_str()));
    let addrs: Vec<Option<u64>> = targets
        .iter()
        .map(|t| addresses.get(&t.name).copied())
        .collect();
    let names: Vec<CString> = targets
        .iter()
        .map(|t| CString::new(t.name.as_str()))
        .collect::<Result<_, _>>()?;

    let mut a = Asm::new();
    a.mov64(Reg::R0, 0).exit();
    let spec = ObjectSpec {
        maps: Vec::new(),
        programs: vec![ProgramSpec {
            name: "floor".into(),
            kind: ProgKind::KProbe,
            program: a.finish()?,
        }],
    };
    let obj = load::load(&spec, &LoadOptions::default()).map_err(|e| anyhow!("{e}"))?;
    let prog = obj.program_fd("floor")?;
    let pmu = perf::kprobe_pmu_type().context("kprobe PMU")?;
    eprintln!(
        "kprobe_floor: {} functions ({} with a unique address), kernel {}",
        names.len(),
        addresses.len(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );

    for mode in &modes {
        let rcu = mode.expedite.then(ExpeditedRcu::enable);
        let events: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::with_capacity(names.len()));
        let refused = AtomicUsize::new(0);
        let t0 = Instant::now();
        parallel(names.len(), mode.attach_threads, |i| {
            let point = match addrs[i] {
                Some(a) if mode.by_address => KprobePoint::Address(a),
                _ => KprobePoint::Symbol(&names[i]),
            };
            let opened = perf::open_kprobe(pmu, point).and_then(|ev| {
                perf::attach_bpf(ev.as_fd(), prog)?;
                Ok(ev)
            });
            match opened {
                Ok(ev) => events.lock().unwrap_or_else(|p| p.into_inner()).push(ev),
                Err(_) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let attach_s = t0.elapsed().as_secs_f64();
        let events: Vec<Mutex<Option<OwnedFd>>> = events
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .into_iter()
            .map(|e| Mutex::new(Some(e)))
            .collect();
        let attached = events.len();
        let t1 = Instant::now();
        parallel(events.len(), mode.close_threads, |i| {
            drop(events[i].lock().unwrap_or_else(|p| p.into_inner()).take());
        });
        let close_s = t1.elapsed().as_secs_f64();
        drop(rcu);
        println!(
            "FLOOR mode={} functions={} attached={attached} refused={} attach_s={attach_s:.2} close_s={close_s:.2}",
            mode.text,
            names.len(),
            refused.load(Ordering::Relaxed),
        );
    }
    Ok(())
}
