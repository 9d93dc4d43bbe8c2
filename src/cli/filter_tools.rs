//! The filter tools of the command line: `--dump-filter` prints the eBPF a filter compiles
//! to (like `tcpdump -d`), `--filter-check` runs it over a capture file in userspace.

use std::collections::hash_map::{Entry, HashMap};
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::asm::disassemble_program;
use crate::capture::{self, LinkType as FileLinkType};
use crate::pcapc::ast::Expr;
use crate::pcapc::run::UserspaceFilter;
use crate::pcapc::{compile_program, LinkType, ProgramKind};

fn parse_required(expr: &str) -> Result<Expr> {
    match crate::pcapc::parse(expr) {
        Ok(Some(e)) => Ok(e),
        Ok(None) => bail!("the filter expression is empty"),
        Err(e) => Err(e.into()),
    }
}

fn link_name(link: LinkType) -> &'static str {
    match link {
        LinkType::Ethernet => "Ethernet (DLT_EN10MB)",
        LinkType::RawIp => "raw IP (DLT_RAW)",
    }
}

/// Prints the filter as the probes run it (the kernel-memory back end: one
/// `bpf_probe_read_kernel` of the header window, then bounded loads), wrapped in a
/// prologue taking the packet start and end from `r1`; an Ethernet start, or raw IP with `l3`.
pub fn dump_filter(expr: &str, l3: bool, out: &mut dyn Write) -> Result<()> {
    let e = parse_required(expr)?;
    let link = if l3 {
        LinkType::RawIp
    } else {
        LinkType::Ethernet
    };
    let program = compile_program(&e, link, ProgramKind::UserKernelMemory)
        .with_context(|| format!("compiling the filter for {}", link_name(link)))?;
    writeln!(
        out,
        "; {} for {}, {} instructions",
        e,
        link_name(link),
        program.len()
    )?;
    out.write_all(disassemble_program(&program).as_bytes())?;
    Ok(())
}

/// Runs `expr` over every frame of a pcap or pcap-ng file: prints `N len` for each matching
/// frame (N is its 1-based position), then a summary line.
pub fn filter_check(path: &Path, expr: &str, out: &mut dyn Write) -> Result<()> {
    let e = parse_required(expr)?;
    let bytes = capture::read_file(path)?;
    let cap = capture::parse(&bytes).with_context(|| format!("reading {}", path.display()))?;
    let mut filters: HashMap<FileLinkType, UserspaceFilter> = HashMap::new();
    let mut matched = 0usize;
    for (i, frame) in cap.frames.iter().enumerate() {
        let filter = match filters.entry(frame.link_type) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let link = match frame.link_type {
                    FileLinkType::ETHERNET => LinkType::Ethernet,
                    t if t.is_raw_ip() => LinkType::RawIp,
                    FileLinkType(t) => bail!(
                        "frame {}: link type {t} is not supported (only Ethernet and raw IP captures)",
                        i + 1
                    ),
                };
                let program = compile_program(&e, link, ProgramKind::UserDirect)
                    .with_context(|| format!("compiling the filter for {}", link_name(link)))?;
                v.insert(UserspaceFilter::from_program(&program))
            }
        };
        if filter
            .matches(frame.data)
            .with_context(|| format!("frame {}", i + 1))?
        {
            matched += 1;
            writeln!(out, "{} {} bytes", i + 1, frame.data.len())?;
        }
    }
    writeln!(out, "matched {matched} of {} frames", cap.frames.len())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name)
    }

    fn run(tool: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<String> {
        let mut out = Vec::new();
        tool(&mut out)?;
        Ok(String::from_utf8(out).expect("the tools print text"))
    }

    #[test]
    fn filter_check_lists_the_matching_frames() {
        let udp = run(|out| filter_check(&data("lo_udp.pcap"), "udp", out)).unwrap();
        assert_eq!(
            udp,
            "1 48 bytes\n2 48 bytes\n3 69 bytes\nmatched 3 of 3 frames\n"
        );
        let tcp = run(|out| filter_check(&data("lo_udp.pcap"), "tcp", out)).unwrap();
        assert_eq!(tcp, "matched 0 of 3 frames\n");
    }

    #[test]
    fn filter_check_refuses_other_link_types() {
        let err = run(|out| filter_check(&data("any_udp_sll2.pcap"), "udp", out)).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "frame 1: link type 276 is not supported (only Ethernet and raw IP captures)"
        );
    }

    #[test]
    fn dump_filter_prints_a_header_and_the_listing() {
        let listing = run(|out| dump_filter("ip", true, out)).unwrap();
        let mut lines = listing.lines();
        let header = lines.next().unwrap();
        assert!(
            header.starts_with("; ip for raw IP (DLT_RAW), ") && header.ends_with(" instructions"),
            "{header}"
        );
        assert!(lines.next().unwrap().starts_with("   0: "), "{listing}");
        assert!(listing.contains("exit"), "{listing}");
    }

    #[test]
    fn bad_filters_say_why() {
        let empty = run(|out| dump_filter("  ", false, out)).unwrap_err();
        assert_eq!(format!("{empty:#}"), "the filter expression is empty");
        let unparsable = run(|out| dump_filter("tcp port", false, out)).unwrap_err();
        assert!(unparsable
            .downcast_ref::<crate::pcapc::ParseError>()
            .is_some());
        let rejected = run(|out| dump_filter("arp", true, out)).unwrap_err();
        assert_eq!(
            format!("{rejected:#}"),
            "compiling the filter for raw IP (DLT_RAW): expression rejects all packets"
        );
        assert!(rejected
            .downcast_ref::<crate::pcapc::CompileError>()
            .is_some());
    }
}
