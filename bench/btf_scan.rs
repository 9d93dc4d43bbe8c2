//! Benchmark: open the running kernel's BTF and list every skb function,
//! several times; prints the median time and the peak RSS (target: <150 ms, <40 MB).
//!
//! Peak RSS is this image's `VmHWM`: `ru_maxrss` is printed too, but Linux
//! carries the parent's peak across fork+exec, so under `cargo bench` it
//! reports cargo's own footprint.

use std::time::{Duration, Instant};

use pwru::btf::{KernelBtf, Kmods, SkbLayout, SYS_VMLINUX_BTF};

const ROUNDS: usize = 7;

fn peak_rss_kib() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes into the rusage struct we pass.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return -1;
    }
    // SAFETY: getrusage succeeded, so the struct is initialised.
    unsafe { usage.assume_init() }.ru_maxrss
}

/// Peak resident set of this process image, from /proc/self/status.
fn vm_hwm_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(-1)
}

fn main() {
    if !std::path::Path::new(SYS_VMLINUX_BTF).exists() {
        eprintln!("skipped: {SYS_VMLINUX_BTF} is absent");
        return;
    }
    let mut open_times = Vec::new();
    let mut scan_times = Vec::new();
    let mut totals = Vec::new();
    let mut count = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let btf = KernelBtf::open_system(&Kmods::None).expect("open kernel BTF");
        let opened = Instant::now();
        let funcs = btf.skb_functions().expect("scan skb functions");
        let done = Instant::now();
        count = funcs.len();
        open_times.push(opened - start);
        scan_times.push(done - opened);
        totals.push(done - start);
    }
    let btf = KernelBtf::open_system(&Kmods::None).expect("open kernel BTF");
    let start = Instant::now();
    SkbLayout::resolve(&btf).expect("resolve skb layout");
    let layout = start.elapsed();

    let hwm = vm_hwm_kib();
    let maxrss = peak_rss_kib();
    // For comparison: btf-rs' default (cached) backend, which parses all types up front.
    let start = Instant::now();
    let cached = btf_rs::Btf::from_file(SYS_VMLINUX_BTF).expect("cached open");
    let cached_open = start.elapsed();
    drop(cached);

    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e3
    };
    println!(
        "btf_scan: open+skb_functions median {:.1} ms (open {:.1} ms, scan {:.1} ms) over {ROUNDS} rounds, {count} skb functions; SkbLayout::resolve {:.1} ms; peak RSS {:.1} MB (VmHWM; ru_maxrss {:.1} MB)",
        median(&mut totals),
        median(&mut open_times),
        median(&mut scan_times),
        layout.as_secs_f64() * 1e3,
        hwm as f64 / 1024.0,
        maxrss as f64 / 1024.0,
    );
    println!(
        "btf_scan: for comparison, btf-rs Backend::Cache open alone: {:.1} ms",
        cached_open.as_secs_f64() * 1e3
    );
}
