//! Classic pcap files (libpcap's format): both byte orders, micro- and nanosecond
//! timestamps, one link type per file.

use nom::bytes::complete::take;
use nom::number::complete::{u16 as nu16, u32 as nu32};
use nom::number::Endianness;
use nom::IResult;

use super::{nanos, offset_of, Capture, CaptureError, Format, Frame, Interface, LinkType};

/// Magic of microsecond files, as stored by a little-endian writer.
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Magic of nanosecond files.
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;

const HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

/// The fixed file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileHeader {
    endian: Endianness,
    nanos: bool,
    snaplen: u32,
    link_type: LinkType,
}

fn header(input: &[u8]) -> Result<(&[u8], FileHeader), CaptureError> {
    if input.len() < 4 {
        return Err(CaptureError::BadMagic(input.to_vec()));
    }
    let magic_le = u32::from_le_bytes([input[0], input[1], input[2], input[3]]);
    let magic_be = u32::from_be_bytes([input[0], input[1], input[2], input[3]]);
    let (endian, nanos) = match (magic_le, magic_be) {
        (MAGIC_MICROS, _) => (Endianness::Little, false),
        (MAGIC_NANOS, _) => (Endianness::Little, true),
        (_, MAGIC_MICROS) => (Endianness::Big, false),
        (_, MAGIC_NANOS) => (Endianness::Big, true),
        _ => return Err(CaptureError::BadMagic(input[..4].to_vec())),
    };
    let fields = |i| -> IResult<&[u8], (u16, u16, u32, u32)> {
        let (i, _magic) = take(4usize)(i)?;
        let (i, major) = nu16(endian)(i)?;
        let (i, minor) = nu16(endian)(i)?;
        let (i, _zone_sigfigs) = take(8usize)(i)?;
        let (i, snaplen) = nu32(endian)(i)?;
        let (i, network) = nu32(endian)(i)?;
        Ok((i, (major, minor, snaplen, network)))
    };
    let (rest, (major, minor, snaplen, network)) =
        fields(input).map_err(|_| CaptureError::Truncated {
            what: "pcap file header",
            offset: 0,
        })?;
    if major != 2 {
        return Err(CaptureError::UnsupportedVersion {
            format: "pcap",
            major,
            minor,
        });
    }
    debug_assert_eq!(input.len() - rest.len(), HEADER_LEN);
    Ok((
        rest,
        FileHeader {
            endian,
            nanos,
            snaplen,
            // The upper bits carry FCS information; the link type is the low 16 bits.
            link_type: LinkType(network & 0xffff),
        },
    ))
}

/// One record header: seconds, fraction, captured and original length.
fn record_header(endian: Endianness) -> impl Fn(&[u8]) -> IResult<&[u8], [u32; 4]> {
    move |i| {
        let (i, secs) = nu32(endian)(i)?;
        let (i, frac) = nu32(endian)(i)?;
        let (i, caplen) = nu32(endian)(i)?;
        let (i, orig) = nu32(endian)(i)?;
        Ok((i, [secs, frac, caplen, orig]))
    }
}

/// Parses a whole classic pcap file.
pub fn parse(all: &[u8]) -> Result<Capture<'_>, CaptureError> {
    let (mut rest, hdr) = header(all)?;
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let offset = offset_of(all, rest);
        let (after, [secs, frac, caplen, orig_len]) =
            record_header(hdr.endian)(rest).map_err(|_| CaptureError::Truncated {
                what: "pcap record header",
                offset,
            })?;
        let data_result: IResult<&[u8], &[u8]> = take(caplen as usize)(after);
        let (after, data) = data_result.map_err(|_| CaptureError::Truncated {
            what: "pcap record data",
            offset: offset + RECORD_HEADER_LEN,
        })?;
        let sub_ns = if hdr.nanos {
            u64::from(frac)
        } else {
            u64::from(frac).saturating_mul(1000)
        };
        frames.push(Frame {
            link_type: hdr.link_type,
            interface: 0,
            timestamp_ns: nanos(u64::from(secs), sub_ns),
            orig_len,
            data,
            comment: None,
        });
        rest = after;
    }
    Ok(Capture {
        format: Format::Pcap {
            big_endian: hdr.endian == Endianness::Big,
            nanos: hdr.nanos,
        },
        interfaces: vec![Interface {
            link_type: hdr.link_type,
            snaplen: hdr.snaplen,
            name: None,
        }],
        frames,
    })
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// Writes a classic pcap file (little-endian) — for tests and fixtures.
    pub(crate) fn write(link_type: LinkType, nanos: bool, frames: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let magic = if nanos { MAGIC_NANOS } else { MAGIC_MICROS };
        out.extend_from_slice(&magic.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&262_144u32.to_le_bytes());
        out.extend_from_slice(&link_type.0.to_le_bytes());
        for (ts, data) in frames {
            let secs = (ts / 1_000_000_000) as u32;
            let sub = (ts % 1_000_000_000) as u32;
            let frac = if nanos { sub } else { sub / 1000 };
            for v in [secs, frac, data.len() as u32, data.len() as u32] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(data);
        }
        out
    }
}
