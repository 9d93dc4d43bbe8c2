//! Reading packet captures (classic pcap and pcap-ng) into frames with their link type, so
//! filters can be tested on real traffic without libpcap; writing pcap-ng (`--output-pcap`). Parsing is nom-based and total:
//! bad or truncated files give a typed error, never a panic.

pub mod pcap;
pub mod pcapng;
pub mod pcapng_write;

use std::path::Path;

/// A link-layer header type (LINKTYPE_* number as stored in the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkType(pub u32);

impl LinkType {
    /// LINKTYPE_ETHERNET (DLT_EN10MB).
    pub const ETHERNET: LinkType = LinkType(1);
    /// DLT_RAW as BSD numbers it (raw IPv4/IPv6, no link header).
    pub const RAW_BSD: LinkType = LinkType(12);
    /// DLT_RAW as OpenBSD numbers it.
    pub const RAW_OPENBSD: LinkType = LinkType(14);
    /// LINKTYPE_RAW: raw IPv4/IPv6, no link header.
    pub const RAW: LinkType = LinkType(101);
    /// LINKTYPE_LINUX_SLL: Linux "cooked" capture, 16-byte header.
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// LINKTYPE_IPV4: raw IPv4 only.
    pub const IPV4: LinkType = LinkType(228);
    /// LINKTYPE_IPV6: raw IPv6 only.
    pub const IPV6: LinkType = LinkType(229);
    /// LINKTYPE_LINUX_SLL2: Linux "cooked" capture v2, 20-byte header.
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// True when packets start with an IP header (every raw-IP numbering).
    pub fn is_raw_ip(self) -> bool {
        matches!(
            self,
            Self::RAW | Self::RAW_BSD | Self::RAW_OPENBSD | Self::IPV4 | Self::IPV6
        )
    }
}

/// Which container the frames came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap; `nanos` for the nanosecond-timestamp magic.
    Pcap {
        big_endian: bool,
        nanos: bool,
    },
    PcapNg,
}

/// One captured packet, borrowing its bytes from the file contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub link_type: LinkType,
    /// Interface index (pcap-ng interface id; always 0 in classic pcap).
    pub interface: u32,
    /// Capture time in nanoseconds since the Unix epoch (saturating).
    pub timestamp_ns: u64,
    /// Length of the packet on the wire (may exceed `data.len()` when truncated by snaplen).
    pub orig_len: u32,
    pub data: &'a [u8],
    /// The pcap-ng packet block's first `opt_comment` (UTF-8), if any.
    pub comment: Option<&'a str>,
}

/// An interface a capture describes (pcap-ng: one per interface block, in file order;
/// classic pcap: the file's one link type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interface<'a> {
    pub link_type: LinkType,
    /// 0 when unlimited.
    pub snaplen: u32,
    /// pcap-ng `if_name` (UTF-8), if any.
    pub name: Option<&'a str>,
}

/// A parsed capture file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture<'a> {
    pub format: Format,
    pub interfaces: Vec<Interface<'a>>,
    pub frames: Vec<Frame<'a>>,
}

/// Why a capture could not be read. Offsets are byte positions in the file.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not a pcap or pcap-ng file (first bytes {0:02x?})")]
    BadMagic(Vec<u8>),
    #[error("truncated {what} at byte {offset}")]
    Truncated { what: &'static str, offset: usize },
    #[error("unsupported {format} version {major}.{minor}")]
    UnsupportedVersion {
        format: &'static str,
        major: u16,
        minor: u16,
    },
    #[error("bad pcap-ng byte-order magic {magic:#010x} at byte {offset}")]
    BadByteOrder { magic: u32, offset: usize },
    #[error("bad pcap-ng block length {len} at byte {offset}")]
    BadBlockLength { len: u32, offset: usize },
    #[error("pcap-ng block at byte {offset}: trailing length {trailer} differs from {len}")]
    BlockLengthMismatch {
        len: u32,
        trailer: u32,
        offset: usize,
    },
    #[error("packet block at byte {offset} refers to unknown interface {interface}")]
    UnknownInterface { interface: u32, offset: usize },
    #[error("packet at byte {offset}: captured length {caplen} does not fit its record")]
    BadCapturedLength { caplen: u32, offset: usize },
    #[error("interface at byte {offset}: unsupported timestamp resolution {value:#04x}")]
    BadTimestampResolution { value: u8, offset: usize },
}

/// Parses a capture held in memory, telling pcap from pcap-ng by its first bytes.
pub fn parse(bytes: &[u8]) -> Result<Capture<'_>, CaptureError> {
    if bytes.len() >= 4 && bytes[..4] == pcapng::SHB_TYPE.to_le_bytes() {
        return pcapng::parse(bytes);
    }
    pcap::parse(bytes)
}

/// Reads a capture file into memory (parse it with [`parse`]).
pub fn read_file(path: &Path) -> Result<Vec<u8>, CaptureError> {
    std::fs::read(path).map_err(|source| CaptureError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Nanoseconds from seconds and nanoseconds, saturating at `u64::MAX`.
fn nanos(secs: u64, sub_ns: u64) -> u64 {
    secs.saturating_mul(1_000_000_000).saturating_add(sub_ns)
}

/// Where `rest` starts inside `all` (both slices of the same file).
fn offset_of(all: &[u8], rest: &[u8]) -> usize {
    all.len() - rest.len()
}

#[cfg(test)]
mod tests;
