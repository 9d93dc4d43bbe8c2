//! `--output-pcap`: every printed event as a pcap-ng packet next to the table or JSON, with
//! one interface block per (netns, ifindex) named like the IFACE column and the event's
//! FUNC, skb, CPU, process and netns as the packet's comment.
//!
//! Every interface is Ethernet: libpcap (tcpdump) refuses a pcap-ng file whose interfaces
//! have different link types, and a trace mixes skbs with and without a MAC header. A
//! packet the probe took from L3 (raw IP) gets a made-up Ethernet header: zero addresses
//! and the EtherType of its IP version; its comment says `l3`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::capture::pcapng_write::{PcapngWriteError, PcapngWriter};
use crate::capture::LinkType;
use crate::events::{Event, ETH_P_IP, ETH_P_IPV6};

use super::sections::pcap::packet_bytes;
use super::sections::{Sections, SkbMeta};
use super::text::push_hex_prefixed;
use super::{Names, OutputOptions};

/// Bytes of an Ethernet header.
const ETH_HLEN: u32 = 14;

/// What the file says wrote it.
const APPLICATION: &str = concat!("pwru-rs ", env!("CARGO_PKG_VERSION"));

/// Why the pcap-ng output failed.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("cannot create --output-pcap file {path}: {source}")]
    Create {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Write(#[from] PcapngWriteError),
}

/// The pcap-ng side of the output.
pub struct PcapOutput {
    writer: PcapngWriter<Box<dyn Write + Send>>,
    snaplen: u32,
    /// Record offset of the packet section's bytes.
    tail_at: usize,
    interfaces: HashMap<(u32, u32), u32>,
    /// A raw-IP packet behind its made-up Ethernet header.
    frame: Vec<u8>,
    /// Wall clock minus `CLOCK_MONOTONIC` (`bpf_ktime_get_ns`), in ns.
    boot_offset_ns: i128,
    comment: String,
}

impl PcapOutput {
    /// Writes to `path` (created or truncated), or stdout for `None`.
    pub fn create(path: Option<&Path>, opts: &OutputOptions) -> Result<Self, PcapError> {
        let out: Box<dyn Write + Send> = match path {
            None => Box::new(io::stdout()),
            Some(path) => {
                Box::new(
                    std::fs::File::create(path).map_err(|source| PcapError::Create {
                        path: path.display().to_string(),
                        source,
                    })?,
                )
            }
        };
        Self::new(out, opts, monotonic_to_unix_ns())
    }

    /// Writes to `out` (buffered here); `boot_offset_ns` turns event times into wall-clock
    /// times; `opts` say where the records carry the packet bytes and the snap length.
    pub fn new(
        out: Box<dyn Write + Send>,
        opts: &OutputOptions,
        boot_offset_ns: i128,
    ) -> Result<Self, PcapError> {
        let tail_at = Sections::new(opts)
            .variable_at()
            .unwrap_or(crate::probes::event::EVENT_SIZE);
        let out: Box<dyn Write + Send> = Box::new(BufWriter::with_capacity(1 << 16, out));
        Ok(Self {
            writer: PcapngWriter::new(out, APPLICATION)?,
            snaplen: opts.pcap_snaplen.unwrap_or(0),
            tail_at,
            interfaces: HashMap::new(),
            frame: Vec::new(),
            boot_offset_ns,
            comment: String::with_capacity(160),
        })
    }

    /// Writes `ev` as one packet; `func` is its FUNC column (with the drop reason).
    pub fn write(&mut self, ev: &Event, names: &mut Names, func: &str) -> Result<(), PcapError> {
        let meta = ev.get::<SkbMeta>().unwrap_or_default();
        let packet = packet_bytes(ev, self.tail_at);
        let from_l3 = packet.is_some_and(|p| p.link_type != LinkType::ETHERNET);
        // An event without packet bytes (no header found) still gets its packet: empty.
        let (wire_len, data) = match packet {
            Some(p) if from_l3 => {
                self.frame.clear();
                self.frame.extend_from_slice(&[0; 12]);
                let ethertype = match p.data.first().map(|b| b >> 4) {
                    Some(4) => ETH_P_IP,
                    Some(6) => ETH_P_IPV6,
                    _ => meta.protocol,
                };
                self.frame.extend_from_slice(&ethertype.to_be_bytes());
                self.frame.extend_from_slice(p.data);
                (p.wire_len.saturating_add(ETH_HLEN), &self.frame[..])
            }
            Some(p) => (p.wire_len, p.data),
            None => (0, &[][..]),
        };
        let key = (meta.netns, meta.ifindex);
        let iface = match self.interfaces.get(&key) {
            Some(&id) => id,
            None => {
                let name = names.ifaces.label(meta.netns, meta.ifindex);
                // Room for the made-up header in front of a raw-IP packet's bytes.
                let snaplen = self.snaplen.saturating_add(ETH_HLEN);
                let id = self.writer.interface(LinkType::ETHERNET, snaplen, &name)?;
                self.interfaces.insert(key, id);
                id
            }
        };
        self.comment.clear();
        push_comment(&mut self.comment, ev, names, func, meta.netns);
        if from_l3 {
            self.comment.push_str(" l3");
        }
        let ts = i128::from(ev.ktime_ns) + self.boot_offset_ns;
        let ts = u64::try_from(ts.max(0)).unwrap_or(u64::MAX);
        self.writer
            .packet(iface, ts, wire_len, data, Some(&self.comment))?;
        Ok(())
    }

    /// Writes out what is buffered (the ring buffer was drained, or at exit).
    pub fn flush(&mut self) -> Result<(), PcapError> {
        Ok(self.writer.flush()?)
    }
}

/// `FUNC skb=0x… cpu=N process=… netns=N`.
fn push_comment(out: &mut String, ev: &Event, names: &mut Names, func: &str, netns: u32) {
    out.push_str(func);
    out.push_str(" skb=");
    push_hex_prefixed(out, ev.skb_addr);
    let process = names.processes.get(ev.pid, ev.tid, ev.comm());
    let _ = write!(
        out,
        " cpu={} process={} netns={netns}",
        ev.cpu, process.full
    );
}

/// `CLOCK_REALTIME - CLOCK_MONOTONIC` now, in ns: what turns `bpf_ktime_get_ns` times into
/// wall-clock times (0 if a clock cannot be read).
pub fn monotonic_to_unix_ns() -> i128 {
    let read = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to write to.
        let ok = unsafe { libc::clock_gettime(clock, &mut ts) } == 0;
        ok.then(|| i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec))
    };
    match (read(libc::CLOCK_REALTIME), read(libc::CLOCK_MONOTONIC)) {
        (Some(real), Some(mono)) => real - mono,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::parse;
    use crate::events::EventKind;
    use crate::output::sections::pcap::{set_packet_bytes, PacketBytes};
    use crate::output::tests::Shared;

    fn opts() -> OutputOptions {
        OutputOptions {
            meta: true,
            tuple: true,
            pcap_snaplen: Some(64),
            ..OutputOptions::default()
        }
    }

    fn event(netns: u32, ifindex: u32, packet: Option<PacketBytes<'_>>) -> Event {
        let mut ev = Event {
            kind: EventKind::Tracepoint,
            cpu: 1,
            pid: 42,
            tid: 42,
            skb_addr: 0xffff_8881_0000_1000,
            ktime_ns: 5_000,
            ..Event::default()
        }
        .with(SkbMeta {
            netns,
            ifindex,
            ..SkbMeta::default()
        });
        let at = Sections::new(&opts()).variable_at().unwrap();
        set_packet_bytes(&mut ev, at, packet);
        ev
    }

    #[test]
    fn events_become_packets_on_their_interfaces() {
        let sink = Shared::default();
        let mut pcap = PcapOutput::new(Box::new(sink.clone()), &opts(), 1_000_000).unwrap();
        let mut names = Names::default();
        names.ifaces.insert(7, 2, "eth0");
        let frame: Vec<u8> = (0..80).collect();
        let eth = PacketBytes {
            link_type: LinkType::ETHERNET,
            wire_len: 1514,
            data: &frame[..64],
        };
        let raw = PacketBytes {
            link_type: LinkType::RAW,
            wire_len: 66,
            data: &frame[14..64],
        };
        pcap.write(&event(7, 2, Some(eth)), &mut names, "ip_rcv")
            .unwrap();
        pcap.write(&event(7, 2, Some(eth)), &mut names, "ip_rcv_core")
            .unwrap();
        pcap.write(&event(7, 2, Some(raw)), &mut names, "ip_output")
            .unwrap();
        pcap.write(
            &event(7, 0, None),
            &mut names,
            "kfree_skb(SKB_DROP_REASON_NETFILTER_DROP)",
        )
        .unwrap();
        pcap.flush().unwrap();
        let bytes = sink.bytes();
        let cap = parse(&bytes).unwrap();
        let ifaces: Vec<_> = cap
            .interfaces
            .iter()
            .map(|i| (i.link_type, i.snaplen, i.name))
            .collect();
        assert_eq!(
            ifaces,
            [
                (LinkType::ETHERNET, 78, Some("eth0:2")),
                (LinkType::ETHERNET, 78, Some("0")),
            ],
            "one link type for libpcap; room for a made-up header"
        );
        assert_eq!(cap.frames.len(), 4, "one packet per event");
        let f = cap.frames[0];
        assert_eq!((f.interface, f.orig_len, f.data), (0, 1514, &frame[..64]));
        assert_eq!(f.timestamp_ns, 1_005_000, "ktime plus the boot offset");
        let comment = f.comment.unwrap();
        assert!(
            comment.starts_with("ip_rcv skb=0xffff888100001000 cpu=1 process="),
            "{comment}"
        );
        assert!(comment.ends_with(" netns=7"), "{comment}");
        assert_eq!(cap.frames[1].interface, 0, "the same interface again");
        // From L3: behind zero MACs and the EtherType of the IP version (0 here: the
        // test bytes are no IP header, so the skb's protocol).
        let l3 = cap.frames[2];
        assert_eq!((l3.interface, l3.orig_len), (0, 80));
        assert_eq!(&l3.data[..14], &[0; 14]);
        assert_eq!(&l3.data[14..], &frame[14..64]);
        assert!(l3.comment.unwrap().ends_with(" netns=7 l3"));
        let dropped = cap.frames[3];
        assert_eq!((dropped.interface, dropped.data.len()), (1, 0));
        assert!(dropped
            .comment
            .unwrap()
            .starts_with("kfree_skb(SKB_DROP_REASON_NETFILTER_DROP) skb="));
    }

    #[test]
    fn a_raw_ip_packet_gets_the_ethertype_of_its_version() {
        let sink = Shared::default();
        let mut pcap = PcapOutput::new(Box::new(sink.clone()), &opts(), 0).unwrap();
        let mut names = Names::default();
        for first in [0x45u8, 0x60] {
            let data = [first, 0, 0, 0];
            let raw = PacketBytes {
                link_type: LinkType::RAW,
                wire_len: 4,
                data: &data,
            };
            pcap.write(&event(1, 1, Some(raw)), &mut names, "f")
                .unwrap();
        }
        pcap.flush().unwrap();
        let bytes = sink.bytes();
        let cap = parse(&bytes).unwrap();
        assert_eq!(&cap.frames[0].data[12..15], &[0x08, 0x00, 0x45]);
        assert_eq!(&cap.frames[1].data[12..15], &[0x86, 0xdd, 0x60]);
    }

    #[test]
    fn the_boot_offset_is_about_the_time_since_boot() {
        let offset = monotonic_to_unix_ns();
        // After 2001 and the wall clock ahead of the time since boot.
        assert!(offset > 1_000_000_000 * 1_000_000_000, "{offset}");
    }

    #[test]
    fn an_uncreatable_file_is_a_clear_error() {
        let err = PcapOutput::create(Some(Path::new("/nonexistent-dir/x.pcapng")), &opts())
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("cannot create --output-pcap file /nonexistent-dir/x.pcapng"),
            "{err}"
        );
    }
}
