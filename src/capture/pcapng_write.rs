//! Writing pcap-ng (`--output-pcap`): a section header, interface description blocks with
//! a name and nanosecond timestamps, and enhanced packet blocks with a comment; what
//! tcpdump, tshark and Wireshark read. Little-endian, one section.

use std::io::{self, Write};

use super::pcapng::{BYTE_ORDER_MAGIC, EPB_TYPE, IDB_TYPE, SHB_TYPE};
use super::LinkType;

const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
/// `if_tsresol` 9: timestamps count nanoseconds.
const NANOSECONDS: u8 = 9;
/// Longest option value (its length is a u16).
const MAX_OPTION: usize = u16::MAX as usize;

/// Why a block could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PcapngWriteError {
    #[error("writing the pcap-ng output: {0}")]
    Io(#[from] io::Error),
    #[error("pcap-ng link type {0} does not fit the interface block's 16 bits")]
    LinkType(u32),
    #[error("packet block for interface {0}, which was not described")]
    UnknownInterface(u32),
}

/// An interface as described in the file: what its packets need.
#[derive(Debug, Clone, Copy)]
struct Described {
    snaplen: u32,
}

/// Writes one pcap-ng section to `W`, block by block (each block is one `write_all`).
pub struct PcapngWriter<W: Write> {
    out: W,
    interfaces: Vec<Described>,
    block: Vec<u8>,
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the section header block, naming `application` (`shb_userappl`).
    pub fn new(out: W, application: &str) -> Result<Self, PcapngWriteError> {
        let mut w = Self {
            out,
            interfaces: Vec::new(),
            block: Vec::with_capacity(512),
        };
        w.begin(SHB_TYPE);
        w.u32(BYTE_ORDER_MAGIC);
        w.u16(1);
        w.u16(0);
        // Section length: not given.
        w.block.extend_from_slice(&u64::MAX.to_le_bytes());
        w.option(SHB_USERAPPL, application.as_bytes());
        w.end_options();
        w.finish()?;
        Ok(w)
    }

    /// Describes an interface (`if_name` `name`, nanosecond timestamps); returns its id for
    /// [`PcapngWriter::packet`]. `snaplen` 0 means no limit.
    pub fn interface(
        &mut self,
        link_type: LinkType,
        snaplen: u32,
        name: &str,
    ) -> Result<u32, PcapngWriteError> {
        let link =
            u16::try_from(link_type.0).map_err(|_| PcapngWriteError::LinkType(link_type.0))?;
        self.begin(IDB_TYPE);
        self.u16(link);
        self.u16(0);
        self.u32(snaplen);
        if !name.is_empty() {
            self.option(IF_NAME, name.as_bytes());
        }
        self.option(IF_TSRESOL, &[NANOSECONDS]);
        self.end_options();
        self.finish()?;
        self.interfaces.push(Described { snaplen });
        Ok(self.interfaces.len() as u32 - 1)
    }

    /// Writes an enhanced packet block: `data` (cut to the interface's snap length) taken
    /// at `timestamp_ns` since the Unix epoch, `orig_len` bytes on the wire (at least the
    /// bytes kept), with an optional comment.
    pub fn packet(
        &mut self,
        interface: u32,
        timestamp_ns: u64,
        orig_len: u32,
        data: &[u8],
        comment: Option<&str>,
    ) -> Result<(), PcapngWriteError> {
        let iface = *self
            .interfaces
            .get(interface as usize)
            .ok_or(PcapngWriteError::UnknownInterface(interface))?;
        let mut kept = data;
        if iface.snaplen != 0 && kept.len() > iface.snaplen as usize {
            kept = &kept[..iface.snaplen as usize];
        }
        self.begin(EPB_TYPE);
        self.u32(interface);
        self.u32((timestamp_ns >> 32) as u32);
        self.u32(timestamp_ns as u32);
        self.u32(kept.len() as u32);
        self.u32(orig_len.max(data.len() as u32));
        self.block.extend_from_slice(kept);
        self.pad();
        if let Some(text) = comment.filter(|c| !c.is_empty()) {
            self.option(OPT_COMMENT, text.as_bytes());
            self.end_options();
        }
        self.finish()
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> Result<(), PcapngWriteError> {
        Ok(self.out.flush()?)
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn begin(&mut self, block_type: u32) {
        self.block.clear();
        self.u32(block_type);
        // Total length, patched in `finish`.
        self.u32(0);
    }

    fn finish(&mut self) -> Result<(), PcapngWriteError> {
        let len = (self.block.len() + 4) as u32;
        self.block[4..8].copy_from_slice(&len.to_le_bytes());
        self.u32(len);
        self.out.write_all(&self.block)?;
        Ok(())
    }

    fn u16(&mut self, v: u16) {
        self.block.extend_from_slice(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.block.extend_from_slice(&v.to_le_bytes());
    }

    fn pad(&mut self) {
        while !self.block.len().is_multiple_of(4) {
            self.block.push(0);
        }
    }

    /// One option; a value longer than an option holds is cut (at a UTF-8 boundary for
    /// text, which is all we write).
    fn option(&mut self, code: u16, value: &[u8]) {
        let mut value = value;
        if value.len() > MAX_OPTION {
            let mut end = MAX_OPTION;
            while end > 0 && (value[end] & 0xc0) == 0x80 {
                end -= 1;
            }
            value = &value[..end];
        }
        self.u16(code);
        self.u16(value.len() as u16);
        self.block.extend_from_slice(value);
        self.pad();
    }

    fn end_options(&mut self) {
        self.u16(OPT_END);
        self.u16(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{parse, Format};

    fn write(f: impl FnOnce(&mut PcapngWriter<Vec<u8>>)) -> Vec<u8> {
        let mut w = PcapngWriter::new(Vec::new(), "pwru-rs test").unwrap();
        f(&mut w);
        w.into_inner()
    }

    #[test]
    fn an_empty_section_reads_back_empty() {
        let bytes = write(|_| {});
        assert_eq!(bytes.len() % 4, 0);
        let cap = parse(&bytes).unwrap();
        assert_eq!(cap.format, Format::PcapNg);
        assert!(cap.frames.is_empty() && cap.interfaces.is_empty());
    }

    #[test]
    fn interfaces_packets_and_comments_round_trip() {
        let eth: Vec<u8> = (0..60).collect();
        let ip: Vec<u8> = (0..41).collect();
        let bytes = write(|w| {
            let a = w.interface(LinkType::ETHERNET, 256, "eth0:2").unwrap();
            let b = w.interface(LinkType::RAW, 256, "").unwrap();
            let c = w.interface(LinkType::ETHERNET, 16, "lo:1").unwrap();
            assert_eq!((a, b, c), (0, 1, 2));
            w.packet(
                a,
                1_700_000_000_123_456_789,
                1514,
                &eth,
                Some("ip_rcv skb=0x1"),
            )
            .unwrap();
            w.packet(b, 5, 0, &ip, None).unwrap();
            // Cut to the interface's snap length; a comment of odd length is padded.
            w.packet(
                c,
                6,
                60,
                &eth,
                Some("kfree_skb(SKB_DROP_REASON_NETFILTER_DROP) é"),
            )
            .unwrap();
        });
        let cap = parse(&bytes).unwrap();
        let names: Vec<_> = cap.interfaces.iter().map(|i| i.name).collect();
        assert_eq!(names, [Some("eth0:2"), None, Some("lo:1")]);
        let links: Vec<_> = cap.interfaces.iter().map(|i| i.link_type).collect();
        assert_eq!(
            links,
            [LinkType::ETHERNET, LinkType::RAW, LinkType::ETHERNET]
        );
        assert_eq!(cap.interfaces[2].snaplen, 16);
        let [f0, f1, f2] = cap.frames[..] else {
            panic!("three frames, got {}", cap.frames.len());
        };
        assert_eq!(
            (
                f0.interface,
                f0.link_type,
                f0.timestamp_ns,
                f0.orig_len,
                f0.data
            ),
            (
                0,
                LinkType::ETHERNET,
                1_700_000_000_123_456_789,
                1514,
                &eth[..]
            )
        );
        assert_eq!(f0.comment, Some("ip_rcv skb=0x1"));
        assert_eq!(
            (
                f1.link_type,
                f1.timestamp_ns,
                f1.orig_len,
                f1.data,
                f1.comment
            ),
            (LinkType::RAW, 5, 41, &ip[..], None),
            "the original length is at least the bytes kept"
        );
        assert_eq!((f2.data, f2.orig_len), (&eth[..16], 60));
        assert_eq!(
            f2.comment,
            Some("kfree_skb(SKB_DROP_REASON_NETFILTER_DROP) é")
        );
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let mut w = PcapngWriter::new(Vec::new(), "t").unwrap();
        assert!(matches!(
            w.packet(0, 0, 0, &[], None),
            Err(PcapngWriteError::UnknownInterface(0))
        ));
        assert!(matches!(
            w.interface(LinkType(70_000), 0, "x"),
            Err(PcapngWriteError::LinkType(70_000))
        ));
    }

    #[test]
    fn an_overlong_comment_is_cut_at_a_character() {
        let text = "é".repeat(40_000);
        let bytes = write(|w| {
            let i = w.interface(LinkType::RAW, 0, "x").unwrap();
            w.packet(i, 0, 0, &[0x45], Some(&text)).unwrap();
        });
        let cap = parse(&bytes).unwrap();
        let comment = cap.frames[0].comment.unwrap();
        assert!(comment.len() <= MAX_OPTION && text.starts_with(comment));
    }
}
