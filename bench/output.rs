//! Output formatting throughput: N synthetic events formatted as table lines (and JSON) into
//! io::sink and a file. Run: `cargo bench --bench output` (PWRU_BENCH_EVENTS=N to resize).

use std::collections::BTreeMap;
use std::io;
use std::time::Instant;

use pwru::events::{Event, EventKind, NextArgs, ETH_P_IP, ETH_P_IPV6};
use pwru::output::sections::caller::CallerAddr;
use pwru::output::sections::{SkbMeta, Tuple};
use pwru::output::{Ksyms, Names, Output, OutputOptions, OutputTarget, RotationPolicy};
use pwru::settings::TimestampMode;

const NETNS: u32 = 4026531840;
const BASE: u64 = 0xffff_ffff_8100_0000;

fn names() -> Names {
    let mut kallsyms = String::new();
    for i in 0..20_000u64 {
        kallsyms.push_str(&format!(
            "{:016x} T synthetic_function_{i}\n",
            BASE + i * 0x100
        ));
    }
    kallsyms.push_str(&format!(
        "{:016x} T kfree_skb_reason\n",
        BASE + 20_000 * 0x100
    ));
    let mut names = Names {
        ksyms: Ksyms::parse(kallsyms.as_bytes()).expect("synthetic kallsyms"),
        drop_reasons: BTreeMap::from([(6, "SKB_DROP_REASON_NETFILTER_DROP".to_string())]),
        ..Names::default()
    };
    for pid in 0..64 {
        names.processes.insert(pid, &[0; 16], Some("/usr/bin/curl"));
    }
    for ifindex in 1..8 {
        names
            .ifaces
            .insert(NETNS, ifindex, &format!("eth{ifindex}"));
    }
    names.netns.insert(NETNS, "bench-netns");
    names
}

fn events() -> Vec<Event> {
    (0..4096u64)
        .map(|i| {
            let v6 = i % 4 == 0;
            let mut t = Tuple {
                l3_proto: if v6 { ETH_P_IPV6 } else { ETH_P_IP },
                sport: 40000 + (i % 20000) as u16,
                dport: 8080,
                l4_proto: if i % 3 == 0 { 17 } else { 6 },
                tcp_flags: 0x12,
                ..Tuple::default()
            };
            if v6 {
                t.saddr = [
                    0xfd,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    (i % 250) as u8,
                ];
                t.daddr = [
                    0x26, 0x06, 0x47, 0, 0x47, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x01,
                ];
            } else {
                t.saddr[..4].copy_from_slice(&[10, 0, (i % 250) as u8, 15]);
                t.daddr[..4].copy_from_slice(&[1, 0, 0, 1]);
            }
            let drop = i % 16 == 0;
            Event {
                kind: EventKind::KprobeMulti,
                cpu: (i % 16) as u32,
                pid: (i % 64) as u32,
                tid: (i % 64) as u32,
                probe_addr: if drop {
                    BASE + 20_000 * 0x100
                } else {
                    BASE + (i % 20_000) * 0x100
                },
                skb_addr: 0xffff_8881_0000_0000 + (i % 512) * 0x100,
                ktime_ns: 1_000_000_000 + i * 1000,
                args: Some(NextArgs {
                    second: 6,
                    third: 0,
                }),
                ..Event::default()
            }
            .with(CallerAddr(BASE + ((i * 7) % 20_000) * 0x100 + 0x42))
            .with(SkbMeta {
                netns: NETNS,
                mark: (i % 3) as u32 * 0xa00,
                ifindex: (i % 8) as u32,
                len: 60 + (i % 1400) as u32,
                mtu: 1500,
                protocol: if v6 { ETH_P_IPV6 } else { ETH_P_IP },
                pkt_type: 0,
            })
            .with(t)
        })
        .collect()
}

/// CPU time of this thread: unlike wall time, unaffected by other processes on a busy host.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn run(
    label: &str,
    opts: OutputOptions,
    target: OutputTarget,
    n: usize,
    events: &[Event],
) -> io::Result<()> {
    let mut out = Output::new(opts, names(), target)?;
    out.print_header()?;
    let start = Instant::now();
    let cpu_start = thread_cpu_secs();
    for i in 0..n {
        out.print(&events[i % events.len()])?;
        if i % 256 == 255 {
            out.flush()?; // as the reader does when the ring buffer is drained
        }
    }
    out.flush()?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = thread_cpu_secs() - cpu_start;
    println!(
        "{label:<42} {n} lines: wall {secs:.3} s = {:.2} M lines/s; cpu {cpu:.3} s = {:.2} M lines/s",
        n as f64 / secs / 1e6,
        n as f64 / cpu / 1e6
    );
    Ok(())
}

fn main() -> io::Result<()> {
    let n: usize = std::env::var("PWRU_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let events = events();
    let table = OutputOptions {
        meta: true,
        tuple: true,
        ..OutputOptions::default()
    };
    let wide = OutputOptions {
        timestamp: TimestampMode::Current,
        tcp_flags: true,
        caller: true,
        ..table.clone()
    };
    let json = OutputOptions {
        json: true,
        ..table.clone()
    };
    let named = OutputOptions {
        netns_names: Some(16),
        ..table.clone()
    };
    let rotate_dir = std::env::temp_dir().join(format!("pwru-bench-rotate-{}", std::process::id()));
    std::fs::create_dir_all(&rotate_dir)?;
    let file = std::env::temp_dir().join(format!("pwru-bench-output-{}.log", std::process::id()));
    let open = || -> io::Result<OutputTarget> {
        let f = std::fs::File::create(&file)?;
        Ok(OutputTarget::Writer(Box::new(f)))
    };

    run(
        "table (default columns) -> io::sink",
        table.clone(),
        OutputTarget::Writer(Box::new(io::sink())),
        n,
        &events,
    )?;
    run(
        "table (default columns) -> file",
        table,
        open()?,
        n,
        &events,
    )?;
    run(
        "table +netns-name -> file rotated at 16 MB",
        named,
        OutputTarget::File(
            rotate_dir.join("pwru.log"),
            RotationPolicy {
                max_size: 16 << 20,
                max_backups: 2,
                ..RotationPolicy::default()
            },
        ),
        n,
        &events,
    )?;
    run(
        "table +timestamp+tcp-flags+caller -> sink",
        wide,
        OutputTarget::Writer(Box::new(io::sink())),
        n,
        &events,
    )?;
    run(
        "json -> io::sink",
        json,
        OutputTarget::Writer(Box::new(io::sink())),
        n / 4,
        &events,
    )?;
    std::fs::remove_file(&file)?;
    std::fs::remove_dir_all(&rotate_dir)?;
    Ok(())
}
