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
use crate::pcapc::{compile_program_opt, FilterEnv, LinkType, MetaSource, ProgramKind};
use crate::settings::DumpLinkType;

/// The filter, `None` for the empty expression (which matches every packet).
fn parse_filter(expr: &str) -> Result<Option<Expr>> {
    Ok(crate::pcapc::parse(expr)?)
}

fn link_name(link: LinkType) -> &'static str {
    match link {
        LinkType::Ethernet => "Ethernet (DLT_EN10MB)",
        LinkType::RawIp => "raw IP (DLT_RAW)",
        LinkType::LinuxSll => "Linux cooked v1 (DLT_LINUX_SLL)",
        LinkType::LinuxSll2 => "Linux cooked v2 (DLT_LINUX_SLL2)",
    }
}

/// Prints the filter as the probes run it (the kernel-memory back end: one
/// `bpf_probe_read_kernel` of the header window, then bounded loads), wrapped in a
/// prologue taking the packet start, end, wire length and (for `inbound`/`outbound`,
/// `ifindex N`) the packet type and interface from `r1`, for packets of `link`.
pub fn dump_filter(expr: &str, link: DumpLinkType, out: &mut dyn Write) -> Result<()> {
    let link = match link {
        DumpLinkType::Ethernet => LinkType::Ethernet,
        DumpLinkType::RawIp => LinkType::RawIp,
        DumpLinkType::LinuxSll => LinkType::LinuxSll,
        DumpLinkType::LinuxSll2 => LinkType::LinuxSll2,
    };
    dump_filter_for(expr, link, out)
}

/// [`dump_filter`] for packets of any link type the compiler knows (Linux cooked
/// captures too).
pub fn dump_filter_for(expr: &str, link: LinkType, out: &mut dyn Write) -> Result<()> {
    let e = parse_filter(expr)?;
    // live packets, as the probes see them: their direction (skb->pkt_type) and
    // interface (skb->dev->ifindex) are known
    let env = FilterEnv {
        pkt_type: MetaSource::Mbuff,
        ifindex: MetaSource::Mbuff,
        ..FilterEnv::default()
    };
    let program = compile_program_opt(e.as_ref(), link, ProgramKind::UserKernelMemory, &env)
        .with_context(|| format!("compiling the filter for {}", link_name(link)))?;
    let shown = e.map_or_else(|| "(empty: every packet)".to_string(), |e| e.to_string());
    writeln!(
        out,
        "; {} for {}, {} instructions",
        shown,
        link_name(link),
        program.len()
    )?;
    out.write_all(disassemble_program(&program).as_bytes())?;
    Ok(())
}

/// The compiler's link type for a capture's, if it has one.
fn filter_link(t: FileLinkType) -> Option<LinkType> {
    match t {
        FileLinkType::ETHERNET => Some(LinkType::Ethernet),
        FileLinkType::LINUX_SLL => Some(LinkType::LinuxSll),
        FileLinkType::LINUX_SLL2 => Some(LinkType::LinuxSll2),
        t if t.is_raw_ip() => Some(LinkType::RawIp),
        _ => None,
    }
}

/// Runs `expr` over every frame of a pcap or pcap-ng file: prints `N len bytes` for each
/// matching frame (N is its 1-based position, len its captured length, followed by
/// `of W` when the frame was W bytes on the wire), then a summary line. `len`,
/// `greater` and `less` see the wire length; loads past the captured bytes reject.
pub fn filter_check(path: &Path, expr: &str, out: &mut dyn Write) -> Result<()> {
    let e = parse_filter(expr)?;
    let bytes = capture::read_file(path)?;
    let cap = capture::parse(&bytes).with_context(|| format!("reading {}", path.display()))?;
    let mut filters: HashMap<FileLinkType, UserspaceFilter> = HashMap::new();
    let mut matched = 0usize;
    for (i, frame) in cap.frames.iter().enumerate() {
        let filter = match filters.entry(frame.link_type) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let Some(link) = filter_link(frame.link_type) else {
                    bail!(
                        "frame {}: link type {} is not supported (only Ethernet, raw IP and Linux cooked captures)",
                        i + 1,
                        frame.link_type.0
                    );
                };
                let program = compile_program_opt(
                    e.as_ref(),
                    link,
                    ProgramKind::UserDirect,
                    &FilterEnv::default(),
                )
                .with_context(|| format!("compiling the filter for {}", link_name(link)))?;
                v.insert(UserspaceFilter::from_program(&program))
            }
        };
        // a capture never holds more than the packet, whatever its header says
        let wire = frame.orig_len.max(frame.data.len() as u32);
        if filter
            .matches_wire(frame.data, wire)
            .with_context(|| format!("frame {}", i + 1))?
        {
            matched += 1;
            if wire as usize == frame.data.len() {
                writeln!(out, "{} {} bytes", i + 1, frame.data.len())?;
            } else {
                writeln!(out, "{} {} of {} bytes", i + 1, frame.data.len(), wire)?;
            }
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

    /// The 1-based numbers of the frames `filter_check` lists.
    fn matching(file: &str, expr: &str) -> Vec<usize> {
        let text = run(|out| filter_check(&data(file), expr, out)).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        let summary = lines.pop().unwrap();
        assert!(summary.starts_with("matched "), "{summary}");
        lines
            .iter()
            .map(|l| l.split(' ').next().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn filter_check_reads_linux_cooked_captures() {
        // `tcpdump -i any -y LINUX_SLL[2] -s 90` of a veth: ARP, UDP to a closed port
        // (one 344 bytes long on the wire), their ICMP errors, IPv6 and a TCP SYN/RST.
        // The expected frames are tcpdump's (libpcap 1.10.3) on the same files.
        let cases: &[(&str, &[usize])] = &[
            ("outbound", &[1, 3, 5, 8, 10]),
            ("inbound", &[2, 4, 6, 7, 9, 11]),
            ("udp", &[3, 5, 8]),
            ("greater 100", &[5, 6, 9]),
            ("less 60", &[1, 2, 3, 11]),
            ("len > 300", &[5, 6]),
            ("icmp and inbound", &[4, 6]),
            ("ip6", &[7, 8, 9]),
            ("arp", &[1, 2]),
            ("ether proto 0x806", &[1, 2]),
            ("tcp[13] & 2 != 0", &[10]),
            ("not ip[300] = 0", &[1, 2, 7, 8, 9]),
            ("udp[8:4] = 0x78787878", &[5]),
            ("ip6 and outbound", &[8]),
            ("", &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
        ];
        for file in ["veth_sll_snap90.pcap", "veth_sll2_snap90.pcap"] {
            for (expr, want) in cases {
                assert_eq!(matching(file, expr), *want, "{file} `{expr}`");
            }
        }
        let all: Vec<usize> = (1..=11).collect();
        assert_eq!(matching("veth_sll2_snap90.pcap", "ifindex 12"), all);
        assert!(matching("veth_sll2_snap90.pcap", "ifindex 13").is_empty());
        let err =
            run(|out| filter_check(&data("veth_sll_snap90.pcap"), "ifindex 12", out)).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "compiling the filter for Linux cooked v1 (DLT_LINUX_SLL): 'ifindex' is not supported on Linux cooked v1 packets read from a capture file: only live packets (the tracer's, from skb->dev) and Linux cooked v2 captures record the interface"
        );
    }

    #[test]
    fn filter_check_shows_wire_lengths_of_truncated_frames() {
        let text = run(|out| filter_check(&data("veth_sll_snap90.pcap"), "len > 300", out));
        assert_eq!(
            text.unwrap(),
            "5 90 of 344 bytes\n6 90 of 372 bytes\nmatched 2 of 11 frames\n"
        );
    }

    #[test]
    fn filter_check_refuses_other_link_types() {
        // a classic pcap of one 802.11 frame (link type 105)
        let mut file = Vec::new();
        for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 105] {
            file.extend_from_slice(&word.to_le_bytes());
        }
        file.truncate(20);
        file.extend_from_slice(&105u32.to_le_bytes());
        for word in [0u32, 0, 4, 4] {
            file.extend_from_slice(&word.to_le_bytes());
        }
        file.extend_from_slice(&[0x80, 0, 0, 0]);
        let path = std::env::temp_dir().join(format!("pwru-80211-{}.pcap", std::process::id()));
        std::fs::write(&path, &file).unwrap();
        let err = run(|out| filter_check(&path, "udp", out)).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            format!("{err:#}"),
            "frame 1: link type 105 is not supported (only Ethernet, raw IP and Linux cooked captures)"
        );
    }

    #[test]
    fn dump_filter_prints_a_header_and_the_listing() {
        let listing = run(|out| dump_filter("ip", DumpLinkType::RawIp, out)).unwrap();
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
    fn the_empty_filter_matches_every_packet() {
        let all = run(|out| filter_check(&data("lo_udp.pcap"), " ", out)).unwrap();
        assert_eq!(
            all,
            "1 48 bytes\n2 48 bytes\n3 69 bytes\nmatched 3 of 3 frames\n"
        );
        let listing = run(|out| dump_filter("", DumpLinkType::Ethernet, out)).unwrap();
        assert!(
            listing.starts_with("; (empty: every packet) for Ethernet (DLT_EN10MB), "),
            "{listing}"
        );
        assert!(listing.contains("r0 = 1"), "{listing}");
        assert!(!listing.contains("r0 = 0"), "{listing}");
    }

    #[test]
    fn dump_filter_knows_linux_cooked_captures() {
        let listing = run(|out| dump_filter_for("outbound", LinkType::LinuxSll2, out)).unwrap();
        assert!(
            listing.starts_with("; outbound for Linux cooked v2 (DLT_LINUX_SLL2), "),
            "{listing}"
        );
    }

    #[test]
    fn bad_filters_say_why() {
        let unparsable =
            run(|out| dump_filter("tcp port", DumpLinkType::Ethernet, out)).unwrap_err();
        assert!(unparsable
            .downcast_ref::<crate::pcapc::ParseError>()
            .is_some());
        let rejected = run(|out| dump_filter("arp", DumpLinkType::RawIp, out)).unwrap_err();
        assert_eq!(
            format!("{rejected:#}"),
            "compiling the filter for raw IP (DLT_RAW): expression rejects all packets"
        );
        assert!(rejected
            .downcast_ref::<crate::pcapc::CompileError>()
            .is_some());
    }
}
