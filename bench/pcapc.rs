//! Filter compiler benchmark: over the pcap-filter corpus (`tests/data/pcap_filter_corpus.txt`)
//! on Ethernet and raw IP, our eBPF instruction count beside libpcap's optimized cBPF
//! count (with `--features oracle`), the ratios, and our compile time per expression.
//!
//! Columns, per expression and link type:
//! - `embed`: what a probe embeds for the filter (`emit_filter`, kernel-memory back end
//!   as in the probes: the window read, the decisions, the jumps to the probe's exits);
//! - `decide`: `embed` without the window read (the decision code proper);
//! - `direct`: `emit_filter` on direct packet pointers (tc programs, no window read);
//! - `lib`: libpcap's optimized program, its `ret`s included (`pcap_compile`, optimize on);
//! - `lib-ret`: the same without its `ret` instructions (our exits are jumps).
//!
//! `byte N & V` and `byte N | V` are compared with libpcap's program for what they mean
//! (see [`libpcap_text`]): libpcap 1.10's own never loads the byte.

use std::hint::black_box;
use std::time::Instant;

use pwru::asm::{Asm, Reg};
use pwru::pcapc::ast::Expr;
use pwru::pcapc::compile::{
    emit_filter_with_stats, FilterEnv, FilterStats, LinkType, PacketSource,
};

const CORPUS: &str = include_str!("../tests/data/pcap_filter_corpus.txt");

/// The expression libpcap compiles for the comparison: `text`, but for `byte N & V`
/// and `byte N | V` the test they mean, `ether[N] & V != 0` (`|` alike). libpcap 1.10
/// never loads the byte there (it tests its accumulator, so `byte 1 & 2` is one `ret #0`
/// that rejects every packet); later libpcap loads it (commit 82724cc7), as we do, and
/// then compiles the same program as for `ether[N] & V != 0`.
fn libpcap_text(text: &str) -> String {
    let t: Vec<&str> = text.split_whitespace().collect();
    match t.as_slice() {
        ["byte", n, op @ ("&" | "|"), v] => format!("ether[{n}] {op} {v} != 0"),
        _ => text.to_string(),
    }
}

#[cfg(feature = "oracle")]
/// libpcap's optimized count and its `ret` instructions, or `None` if it refuses.
fn libpcap_count(text: &str, link: LinkType) -> Option<(usize, usize)> {
    let lt = match link {
        LinkType::Ethernet => pcap::Linktype::ETHERNET,
        LinkType::RawIp => pcap::Linktype(12), // DLT_RAW
        _ => return None,
    };
    let cap = pcap::Capture::dead(lt).ok()?;
    let prog = cap.compile(text, true).ok()?;
    let insns = prog.get_instructions();
    let rets = insns
        .iter()
        .filter(|i| {
            let code: u16 = i
                .to_string()
                .split(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            code & 7 == 6 // BPF_RET
        })
        .count();
    Some((insns.len(), rets))
}

#[cfg(not(feature = "oracle"))]
fn libpcap_count(_: &str, _: LinkType) -> Option<(usize, usize)> {
    None
}

fn emit(e: &Expr, link: LinkType, src: PacketSource) -> Option<FilterStats> {
    let mut a = Asm::new();
    let (m, r) = (a.label(), a.label());
    emit_filter_with_stats(&mut a, e, link, &src, &FilterEnv::default(), m, r).ok()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

struct Row {
    embed: usize,
    decide: usize,
    lib: Option<(usize, usize)>,
}

fn main() {
    let direct = PacketSource::Direct {
        start: Reg::R6,
        end: Reg::R7,
    };
    let kmem = PacketSource::KernelMemory {
        base: Reg::R8,
        len: Reg::R9,
        window: pwru::probes::program::FILTER_WINDOW,
    };
    let exprs: Vec<&str> = CORPUS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut times = vec![];
    for (link, name) in [
        (LinkType::Ethernet, "Ethernet"),
        (LinkType::RawIp, "raw IP"),
    ] {
        println!(
            "{:>6} {:>6} {:>6} {:>5} {:>7} {:>6} {:>6}  expression ({name})",
            "embed", "decide", "direct", "lib", "lib-ret", "e/lib", "d/l-r"
        );
        let mut rows = vec![];
        for text in &exprs {
            let Ok(Some(e)) = pwru::pcapc::parse(text) else {
                continue;
            };
            let (Some(k), Some(d)) = (emit(&e, link, kmem), emit(&e, link, direct)) else {
                continue;
            };
            if link == LinkType::Ethernet {
                let mut best = f64::MAX;
                for _ in 0..3 {
                    let t0 = Instant::now();
                    for _ in 0..10 {
                        black_box(emit(black_box(&e), link, kmem));
                    }
                    best = best.min(t0.elapsed().as_secs_f64() * 1e6 / 10.0);
                }
                times.push(best);
            }
            let lib = libpcap_count(&libpcap_text(text), link);
            let row = Row {
                embed: k.insns,
                decide: k.insns - k.window_read_insns,
                lib,
            };
            let ratio = |a: usize, b: usize| a as f64 / b.max(1) as f64;
            let (r1, r2) = match lib {
                Some((n, rets)) => (
                    format!("{:.2}", ratio(row.embed, n)),
                    format!("{:.2}", ratio(row.decide, n - rets)),
                ),
                None => ("-".into(), "-".into()),
            };
            println!(
                "{:>6} {:>6} {:>6} {:>5} {:>7} {:>6} {:>6}  {text}",
                row.embed,
                row.decide,
                d.insns,
                lib.map(|l| l.0.to_string()).unwrap_or_else(|| "-".into()),
                lib.map(|l| (l.0 - l.1).to_string())
                    .unwrap_or_else(|| "-".into()),
                r1,
                r2
            );
            rows.push(row);
        }
        let compared: Vec<&Row> = rows.iter().filter(|r| r.lib.is_some()).collect();
        let mut e_lib: Vec<f64> = compared
            .iter()
            .map(|r| r.embed as f64 / r.lib.unwrap().0.max(1) as f64)
            .collect();
        let mut d_lib: Vec<f64> = compared
            .iter()
            .map(|r| {
                let (n, rets) = r.lib.unwrap();
                r.decide as f64 / (n - rets).max(1) as f64
            })
            .collect();
        let over = |v: &[f64]| v.iter().filter(|&&x| x > 3.0).count();
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        println!(
            "{name}: {} expressions compiled, {} compared with libpcap",
            rows.len(),
            compared.len()
        );
        println!(
            "{name}: embed / lib: median {:.2}, max {:.2}, over 3x: {}",
            median(&mut e_lib.clone()),
            max(&e_lib),
            over(&e_lib)
        );
        println!(
            "{name}: decide / (lib - rets): median {:.2}, max {:.2}, over 3x: {}",
            median(&mut d_lib.clone()),
            max(&d_lib),
            over(&d_lib)
        );
        e_lib.clear();
        d_lib.clear();
        println!();
    }
    println!(
        "(`byte N & V`, `byte N | V`: libpcap's count is for `ether[N] & V != 0`, \
         `ether[N] | V != 0`; see libpcap_text)"
    );
    println!(
        "compile time (Ethernet, kernel memory): median {:.1} µs, max {:.1} µs",
        median(&mut times.clone()),
        times.iter().copied().fold(0.0, f64::max)
    );
}
