//! pcap-ng files: sections in either byte order, several interfaces with their own link
//! types and timestamp resolutions, enhanced/simple/obsolete packet blocks.

use nom::bytes::complete::take;
use nom::number::complete::{u16 as nu16, u32 as nu32};
use nom::number::Endianness;
use nom::IResult;

use super::{offset_of, Capture, CaptureError, Format, Frame, LinkType};

/// Section Header Block type (the same in both byte orders).
pub const SHB_TYPE: u32 = 0x0a0d_0d0a;
/// Interface Description Block.
pub const IDB_TYPE: u32 = 1;
/// Obsolete Packet Block.
pub const OPB_TYPE: u32 = 2;
/// Simple Packet Block.
pub const SPB_TYPE: u32 = 3;
/// Enhanced Packet Block.
pub const EPB_TYPE: u32 = 6;
/// Byte-order magic inside the SHB.
pub const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const OPT_IF_NAME: u16 = 2;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// An interface of the current section.
#[derive(Clone, Copy, Debug)]
struct Interface<'a> {
    name: Option<&'a str>,
    link_type: LinkType,
    snaplen: u32,
    /// Timestamp units per second as (base, exponent): 10^-6 by default.
    resolution: (u8, u8),
    offset_secs: i64,
}

impl Interface<'_> {
    fn timestamp_ns(&self, ticks: u64) -> u64 {
        let ticks = u128::from(ticks);
        let ns = match self.resolution {
            (10, exp) if exp <= 9 => ticks * 10u128.pow(u32::from(9 - exp)),
            (10, exp) => ticks / 10u128.pow(u32::from(exp - 9)),
            (_, exp) => (ticks * 1_000_000_000) >> exp,
        };
        let offset = i128::from(self.offset_secs) * 1_000_000_000;
        u64::try_from((ns as i128 + offset).max(0)).unwrap_or(u64::MAX)
    }
}

fn truncated(what: &'static str, offset: usize) -> CaptureError {
    CaptureError::Truncated { what, offset }
}

/// A raw block: type and body (without the two length fields).
struct Block<'a> {
    block_type: u32,
    body: &'a [u8],
    offset: usize,
}

/// Splits the next block off `rest`, checking both length fields.
fn block<'a>(
    all: &'a [u8],
    rest: &'a [u8],
    endian: Endianness,
) -> Result<(&'a [u8], Block<'a>), CaptureError> {
    let offset = offset_of(all, rest);
    let head: IResult<&[u8], (u32, u32)> = (|i| {
        let (i, t) = nu32(endian)(i)?;
        let (i, l) = nu32(endian)(i)?;
        Ok((i, (t, l)))
    })(rest);
    let (_, (block_type, len)) = head.map_err(|_| truncated("pcap-ng block header", offset))?;
    if len < 12 || len % 4 != 0 {
        return Err(CaptureError::BadBlockLength { len, offset });
    }
    let whole: IResult<&[u8], &[u8]> = take(len as usize)(rest);
    let (after, whole) = whole.map_err(|_| truncated("pcap-ng block", offset))?;
    let body = &whole[8..whole.len() - 4];
    let trailer_bytes = &whole[whole.len() - 4..];
    let trailer: IResult<&[u8], u32> = nu32(endian)(trailer_bytes);
    let (_, trailer) = trailer.map_err(|_| truncated("pcap-ng block trailer", offset))?;
    if trailer != len {
        return Err(CaptureError::BlockLengthMismatch {
            len,
            trailer,
            offset,
        });
    }
    Ok((
        after,
        Block {
            block_type,
            body,
            offset,
        },
    ))
}

/// The SHB's byte order: read from its byte-order magic at offset 8.
fn section_endianness(rest: &[u8], offset: usize) -> Result<Endianness, CaptureError> {
    let magic = rest
        .get(8..12)
        .ok_or_else(|| truncated("pcap-ng section header", offset))?;
    let magic_arr = [magic[0], magic[1], magic[2], magic[3]];
    if u32::from_le_bytes(magic_arr) == BYTE_ORDER_MAGIC {
        Ok(Endianness::Little)
    } else if u32::from_be_bytes(magic_arr) == BYTE_ORDER_MAGIC {
        Ok(Endianness::Big)
    } else {
        Err(CaptureError::BadByteOrder {
            magic: u32::from_le_bytes(magic_arr),
            offset: offset + 8,
        })
    }
}

/// Options list: (code, value) pairs up to `opt_endofopt`; a short list is tolerated.
fn options(body: &[u8], endian: Endianness) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let head: IResult<&[u8], (u16, u16)> = (|i| {
            let (i, c) = nu16(endian)(i)?;
            let (i, l) = nu16(endian)(i)?;
            Ok((i, (c, l)))
        })(rest);
        let Ok((after, (code, len))) = head else {
            break;
        };
        if code == OPT_END {
            break;
        }
        let padded = (usize::from(len) + 3) & !3;
        if after.len() < padded {
            break;
        }
        out.push((code, &after[..usize::from(len)]));
        rest = &after[padded..];
    }
    out
}

fn interface<'a>(block: &Block<'a>, endian: Endianness) -> Result<Interface<'a>, CaptureError> {
    let fields: IResult<&[u8], (u16, u32)> = (|i| {
        let (i, link) = nu16(endian)(i)?;
        let (i, _reserved) = nu16(endian)(i)?;
        let (i, snaplen) = nu32(endian)(i)?;
        Ok((i, (link, snaplen)))
    })(block.body);
    let (opts, (link, snaplen)) =
        fields.map_err(|_| truncated("pcap-ng interface description", block.offset))?;
    let mut iface = Interface {
        name: None,
        link_type: LinkType(u32::from(link)),
        snaplen,
        resolution: (10, 6),
        offset_secs: 0,
    };
    for (code, value) in options(opts, endian) {
        match (code, value) {
            (OPT_IF_TSRESOL, [v, ..]) => {
                let (base, exp) = if v & 0x80 == 0 {
                    (10, *v)
                } else {
                    (2, v & 0x7f)
                };
                // 10^38 and 2^64 ticks per second are the limits of exact u128 arithmetic.
                if (base == 10 && exp > 38) || (base == 2 && exp > 64) {
                    return Err(CaptureError::BadTimestampResolution {
                        value: *v,
                        offset: block.offset,
                    });
                }
                iface.resolution = (base, exp);
            }
            (OPT_IF_NAME, v) => iface.name = std::str::from_utf8(v).ok(),
            (OPT_IF_TSOFFSET, v) if v.len() == 8 => {
                let b = [v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]];
                iface.offset_secs = match endian {
                    Endianness::Big => i64::from_be_bytes(b),
                    _ => i64::from_le_bytes(b),
                };
            }
            _ => {}
        }
    }
    Ok(iface)
}

/// Fields of an enhanced or obsolete packet block: interface, timestamp, lengths, data.
fn packet<'a>(
    block: &Block<'a>,
    endian: Endianness,
    interfaces: &[Interface<'_>],
) -> Result<Frame<'a>, CaptureError> {
    let obsolete = block.block_type == OPB_TYPE;
    let fields: IResult<&[u8], [u32; 5]> = (|i| {
        let (i, iface) = if obsolete {
            let (i, id) = nu16(endian)(i)?;
            let (i, _drops) = nu16(endian)(i)?;
            (i, u32::from(id))
        } else {
            nu32(endian)(i)?
        };
        let (i, hi) = nu32(endian)(i)?;
        let (i, lo) = nu32(endian)(i)?;
        let (i, caplen) = nu32(endian)(i)?;
        let (i, orig) = nu32(endian)(i)?;
        Ok((i, [iface, hi, lo, caplen, orig]))
    })(block.body);
    let (data, [id, hi, lo, caplen, orig_len]) =
        fields.map_err(|_| truncated("pcap-ng packet block", block.offset))?;
    let iface = interfaces
        .get(id as usize)
        .ok_or(CaptureError::UnknownInterface {
            interface: id,
            offset: block.offset,
        })?;
    let packet = data
        .get(..caplen as usize)
        .ok_or(CaptureError::BadCapturedLength {
            caplen,
            offset: block.offset,
        })?;
    let padded = (caplen as usize).div_ceil(4) * 4;
    let comment = options(data.get(padded..).unwrap_or_default(), endian)
        .into_iter()
        .find(|(code, _)| *code == OPT_COMMENT)
        .and_then(|(_, v)| std::str::from_utf8(v).ok());
    Ok(Frame {
        link_type: iface.link_type,
        interface: id,
        timestamp_ns: iface.timestamp_ns((u64::from(hi) << 32) | u64::from(lo)),
        orig_len,
        data: packet,
        comment,
    })
}

/// A simple packet block: interface 0, no timestamp; data is cut at the snaplen.
fn simple_packet<'a>(
    block: &Block<'a>,
    endian: Endianness,
    interfaces: &[Interface<'_>],
) -> Result<Frame<'a>, CaptureError> {
    let field: IResult<&[u8], u32> = nu32(endian)(block.body);
    let (data, orig_len) =
        field.map_err(|_| truncated("pcap-ng simple packet block", block.offset))?;
    let iface = interfaces.first().ok_or(CaptureError::UnknownInterface {
        interface: 0,
        offset: block.offset,
    })?;
    let mut caplen = orig_len as usize;
    if iface.snaplen != 0 {
        caplen = caplen.min(iface.snaplen as usize);
    }
    let data = data.get(..caplen).ok_or(CaptureError::BadCapturedLength {
        caplen: caplen as u32,
        offset: block.offset,
    })?;
    Ok(Frame {
        link_type: iface.link_type,
        interface: 0,
        timestamp_ns: 0,
        orig_len,
        data,
        comment: None,
    })
}

/// Parses a whole pcap-ng file (one or more sections).
pub fn parse(all: &[u8]) -> Result<Capture<'_>, CaptureError> {
    let mut rest = all;
    let mut endian = Endianness::Little;
    let mut interfaces: Vec<Interface<'_>> = Vec::new();
    let mut described = Vec::new();
    let mut frames = Vec::new();
    let mut first = true;
    while !rest.is_empty() {
        let offset = offset_of(all, rest);
        let is_shb = rest.len() >= 4 && rest[..4] == SHB_TYPE.to_le_bytes();
        if first && !is_shb {
            return Err(CaptureError::BadMagic(rest[..rest.len().min(4)].to_vec()));
        }
        first = false;
        if is_shb {
            endian = section_endianness(rest, offset)?;
        }
        let (after, blk) = block(all, rest, endian)?;
        match blk.block_type {
            SHB_TYPE => {
                let version: IResult<&[u8], (u16, u16)> = (|i| {
                    let (i, _bom) = nu32(endian)(i)?;
                    let (i, major) = nu16(endian)(i)?;
                    let (i, minor) = nu16(endian)(i)?;
                    Ok((i, (major, minor)))
                })(blk.body);
                let (_, (major, minor)) =
                    version.map_err(|_| truncated("pcap-ng section header", offset))?;
                if major != 1 {
                    return Err(CaptureError::UnsupportedVersion {
                        format: "pcap-ng",
                        major,
                        minor,
                    });
                }
                // Interface ids are numbered per section.
                interfaces.clear();
            }
            IDB_TYPE => {
                let iface = interface(&blk, endian)?;
                described.push(super::Interface {
                    link_type: iface.link_type,
                    snaplen: iface.snaplen,
                    name: iface.name,
                });
                interfaces.push(iface);
            }
            EPB_TYPE | OPB_TYPE => frames.push(packet(&blk, endian, &interfaces)?),
            SPB_TYPE => frames.push(simple_packet(&blk, endian, &interfaces)?),
            // Name resolution, statistics, secrets, custom blocks: nothing for us.
            _ => {}
        }
        rest = after;
    }
    Ok(Capture {
        format: Format::PcapNg,
        interfaces: described,
        frames,
    })
}
