//! Field layout from BTF: `member("sk_buff", "a.b.c")` through anonymous
//! unions/structs and typedefs, and `SkbLayout`, every offset the probes read.

use btf_rs::{Btf, BtfType, Struct, Type};

use super::error::BtfError;
use super::kernel::{strip_modifiers, type_size, KernelBtf, MAX_CHAIN};

/// Where a field lives inside its outermost struct.
///
/// To read it: load `size_bytes` bytes at `offset_bytes()`; for a bitfield,
/// shift that little-endian value right by `bit_offset` and keep `bit_size` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Bit offset from the start of the struct (byte-aligned for non-bitfields;
    /// for bitfields, the start of the load unit holding the bits).
    pub offset_bits: u32,
    /// Size of the field's type (for a bitfield: of the load unit, 1/2/4/8).
    pub size_bytes: u32,
    /// Set for bitfields.
    pub bitfield: Option<Bitfield>,
}

/// Position of a bitfield inside the load unit described by its [`Field`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bitfield {
    /// Right shift to apply to the loaded little-endian unit.
    pub bit_offset: u32,
    /// Width in bits.
    pub bit_size: u32,
}

impl Field {
    /// Byte offset of the (load unit of the) field.
    pub fn offset_bytes(&self) -> u32 {
        self.offset_bits / 8
    }
}

/// A member found by name: its absolute bit offset, type id and bitfield width.
struct Found {
    bit_offset: u32,
    type_id: u32,
    bitfield_size: Option<u32>,
}

impl KernelBtf {
    /// Layout of `path` (dot-separated members, e.g. `"__sk_common.skc_net"`)
    /// in the struct, union or typedef of one called `struct_name`.
    /// Anonymous members are searched transparently; pointers are not followed.
    pub fn member(&self, struct_name: &str, path: &str) -> Result<Field, BtfError> {
        self.find_composite(struct_name)?.member(path)
    }

    /// Like [`KernelBtf::member`], but `Ok(None)` when the struct or field is absent.
    pub fn optional_member(
        &self,
        struct_name: &str,
        path: &str,
    ) -> Result<Option<Field>, BtfError> {
        match self.member(struct_name, path) {
            Ok(field) => Ok(Some(field)),
            Err(BtfError::NoSuchField { .. } | BtfError::NoSuchStruct { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Size in bytes of the struct, union or typedef named `name`.
    pub fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        Ok(self.find_composite(name)?.layout.size() as u32)
    }

    /// The first struct/union named `name` (or typedef of one), vmlinux first.
    /// Name lookups scan the whole BTF, so look a struct up once and reuse it.
    pub(super) fn find_composite(&self, name: &str) -> Result<Composite<'_>, BtfError> {
        for src in self.sources() {
            for id in self.ids_by_name(src.btf, name)? {
                match strip_modifiers(src.btf, self.origin(), id)?.1 {
                    Type::Struct(layout) | Type::Union(layout) => {
                        return Ok(Composite {
                            kernel: self,
                            btf: src.btf,
                            name: name.to_string(),
                            layout,
                        })
                    }
                    _ => continue,
                }
            }
        }
        Err(BtfError::NoSuchStruct {
            origin: self.origin().to_string(),
            name: name.to_string(),
        })
    }
}

/// A struct or union found by name, ready for member lookups.
pub(super) struct Composite<'a> {
    kernel: &'a KernelBtf,
    btf: &'a Btf,
    name: String,
    layout: Struct,
}

impl Composite<'_> {
    pub(super) fn member(&self, path: &str) -> Result<Field, BtfError> {
        let origin = self.kernel.origin();
        let struct_name = self.name.as_str();
        let btf = self.btf;
        let mut composite = self.layout.clone();
        let mut bit_offset: u32 = 0;
        let segments: Vec<&str> = path.split('.').collect();
        for (i, segment) in segments.iter().enumerate() {
            let found =
                self.find_member(&composite, segment, 0)?
                    .ok_or_else(|| BtfError::NoSuchField {
                        origin: origin.to_string(),
                        struct_name: struct_name.to_string(),
                        path: path.to_string(),
                        missing: segments[..=i].join("."),
                    })?;
            bit_offset = bit_offset
                .checked_add(found.bit_offset)
                .ok_or_else(|| self.malformed(path))?;
            if i + 1 == segments.len() {
                let size = type_size(btf, origin, found.type_id)?;
                return Ok(match found.bitfield_size.filter(|&bits| bits > 0) {
                    None => Field {
                        offset_bits: bit_offset,
                        size_bytes: size,
                        bitfield: None,
                    },
                    Some(bits) => bitfield_field(bit_offset, bits, size)
                        .ok_or_else(|| self.malformed(path))?,
                });
            }
            composite = match strip_modifiers(btf, origin, found.type_id)?.1 {
                Type::Struct(s) | Type::Union(s) => s,
                _ => {
                    return Err(BtfError::NotComposite {
                        origin: origin.to_string(),
                        struct_name: struct_name.to_string(),
                        path: path.to_string(),
                        segment: segments[..=i].join("."),
                    })
                }
            };
        }
        // `split` yields at least one segment, so the loop always returns.
        Err(self.malformed(path))
    }

    /// `Ok(None)` when the field is absent.
    pub(super) fn optional_member(&self, path: &str) -> Result<Option<Field>, BtfError> {
        match self.member(path) {
            Ok(field) => Ok(Some(field)),
            Err(BtfError::NoSuchField { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Searches `composite` for `name`, descending into anonymous members.
    fn find_member(
        &self,
        composite: &Struct,
        name: &str,
        depth: usize,
    ) -> Result<Option<Found>, BtfError> {
        if depth > MAX_CHAIN {
            return Err(BtfError::TypeChain {
                origin: self.kernel.origin().to_string(),
                id: 0,
                limit: MAX_CHAIN,
            });
        }
        for m in &composite.members {
            let type_id = m.get_type_id().unwrap_or(0);
            let member_name = self.kernel.name_of(self.btf, m)?;
            if member_name == name {
                return Ok(Some(Found {
                    bit_offset: m.bit_offset(),
                    type_id,
                    bitfield_size: m.bitfield_size(),
                }));
            }
            if !member_name.is_empty() {
                continue;
            }
            if let Type::Struct(inner) | Type::Union(inner) =
                strip_modifiers(self.btf, self.kernel.origin(), type_id)?.1
            {
                if let Some(found) = self.find_member(&inner, name, depth + 1)? {
                    return Ok(Some(Found {
                        bit_offset: m.bit_offset().saturating_add(found.bit_offset),
                        ..found
                    }));
                }
            }
        }
        Ok(None)
    }

    fn malformed(&self, path: &str) -> BtfError {
        BtfError::Malformed {
            origin: self.kernel.origin().to_string(),
            reason: format!("impossible layout for `{}.{path}`", self.name),
        }
    }
}

/// Picks the smallest naturally aligned 1/2/4/8-byte unit, no smaller than the
/// declared type, that holds bits `[abs, abs + bits)`.
pub(super) fn bitfield_field(abs: u32, bits: u32, type_size: u32) -> Option<Field> {
    [1u32, 2, 4, 8]
        .into_iter()
        .filter(|&unit| unit >= type_size.min(8))
        .find_map(|unit| {
            let unit_bits = unit * 8;
            let start = abs / unit_bits * unit_bits;
            (abs.checked_add(bits)? <= start.checked_add(unit_bits)?).then_some(Field {
                offset_bits: start,
                size_bytes: unit,
                bitfield: Some(Bitfield {
                    bit_offset: abs - start,
                    bit_size: bits,
                }),
            })
        })
}

/// `sk_buff` fields the probes read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkBuffLayout {
    pub head: Field,
    pub data: Field,
    pub tail: Field,
    pub end: Field,
    pub len: Field,
    /// The paged part of `len` (bytes not between `head` and `tail`).
    pub data_len: Field,
    pub mark: Field,
    pub protocol: Field,
    pub dev: Field,
    pub sk: Field,
    pub mac_header: Field,
    pub network_header: Field,
    pub transport_header: Field,
    pub mac_len: Field,
    pub cb: Field,
    /// A 3-bit bitfield.
    pub pkt_type: Field,
    pub skb_iif: Field,
    pub hash: Field,
    /// `_skb_refdst` (dst pointer with the NOREF bit 0).
    pub skb_refdst: Option<Field>,
    pub inner_network_header: Option<Field>,
    pub inner_mac_header: Option<Field>,
    pub vlan_tci: Option<Field>,
}

/// `net_device` fields the probes read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDeviceLayout {
    pub ifindex: Field,
    pub mtu: Field,
    /// `possible_net_t`.
    pub nd_net: Field,
    /// `char name[IFNAMSIZ]`.
    pub name: Field,
}

/// Path from a device or socket to its network namespace inode number.
/// Absent as a whole on kernels without `CONFIG_NET_NS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsLayout {
    /// `possible_net_t.net` (a `struct net *`).
    pub possible_net_net: Field,
    /// `net.ns.inum`.
    pub net_ns_inum: Field,
    /// `sock.__sk_common.skc_net` (fallback when the skb has no device netns).
    pub sock_skc_net: Field,
}

/// `dst_entry` fields for the MTU as pwru computes it (RTAX_MTU metric, else
/// `dst->dev->mtu`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DstEntryLayout {
    pub dev: Field,
    /// `_metrics`: an `unsigned long` pointer to the metrics array, low bits
    /// used as flags.
    pub metrics: Field,
}

/// `xdp_buff` fields the probes on XDP programs read (`--filter-trace-xdp`): the packet
/// is `data..data_end`, its device `rxq->dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpBuffLayout {
    pub data: Field,
    pub data_end: Field,
    pub rxq: Field,
    /// Where the buffer's memory starts: an skb built from it has it as `head`.
    pub data_hard_start: Field,
    /// `xdp_rxq_info.dev`.
    pub rxq_dev: Field,
}

/// Every offset the probes read, resolved once per kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkbLayout {
    pub sk_buff: SkBuffLayout,
    pub net_device: NetDeviceLayout,
    pub netns: Option<NetnsLayout>,
    pub dst_entry: Option<DstEntryLayout>,
    /// `None` on kernels without XDP.
    pub xdp_buff: Option<XdpBuffLayout>,
}

impl SkbLayout {
    /// Resolves every field; a missing required field is an error naming it.
    pub fn resolve(btf: &KernelBtf) -> Result<Self, BtfError> {
        let skb = btf.find_composite("sk_buff")?;
        let sk_buff = SkBuffLayout {
            head: skb.member("head")?,
            data: skb.member("data")?,
            tail: skb.member("tail")?,
            end: skb.member("end")?,
            len: skb.member("len")?,
            data_len: skb.member("data_len")?,
            mark: skb.member("mark")?,
            protocol: skb.member("protocol")?,
            dev: skb.member("dev")?,
            sk: skb.member("sk")?,
            mac_header: skb.member("mac_header")?,
            network_header: skb.member("network_header")?,
            transport_header: skb.member("transport_header")?,
            mac_len: skb.member("mac_len")?,
            cb: skb.member("cb")?,
            pkt_type: skb.member("pkt_type")?,
            skb_iif: skb.member("skb_iif")?,
            hash: skb.member("hash")?,
            skb_refdst: skb.optional_member("_skb_refdst")?,
            inner_network_header: skb.optional_member("inner_network_header")?,
            inner_mac_header: skb.optional_member("inner_mac_header")?,
            vlan_tci: skb.optional_member("vlan_tci")?,
        };
        let dev = btf.find_composite("net_device")?;
        let net_device = NetDeviceLayout {
            ifindex: dev.member("ifindex")?,
            mtu: dev.member("mtu")?,
            nd_net: dev.member("nd_net")?,
            name: dev.member("name")?,
        };
        let netns = match (
            btf.optional_member("possible_net_t", "net")?,
            btf.optional_member("net", "ns.inum")?,
            btf.optional_member("sock", "__sk_common.skc_net")?,
        ) {
            (Some(possible_net_net), Some(net_ns_inum), Some(sock_skc_net)) => Some(NetnsLayout {
                possible_net_net,
                net_ns_inum,
                sock_skc_net,
            }),
            _ => None,
        };
        let dst_entry = match btf.find_composite("dst_entry") {
            Ok(dst) => match (
                dst.optional_member("dev")?,
                dst.optional_member("_metrics")?,
            ) {
                (Some(dev), Some(metrics)) => Some(DstEntryLayout { dev, metrics }),
                _ => None,
            },
            Err(BtfError::NoSuchStruct { .. }) => None,
            Err(e) => return Err(e),
        };
        let xdp_buff = match (
            btf.optional_member("xdp_buff", "data")?,
            btf.optional_member("xdp_buff", "data_end")?,
            btf.optional_member("xdp_buff", "rxq")?,
            btf.optional_member("xdp_buff", "data_hard_start")?,
            btf.optional_member("xdp_rxq_info", "dev")?,
        ) {
            (Some(data), Some(data_end), Some(rxq), Some(data_hard_start), Some(rxq_dev)) => {
                Some(XdpBuffLayout {
                    data,
                    data_end,
                    rxq,
                    data_hard_start,
                    rxq_dev,
                })
            }
            _ => None,
        };
        Ok(SkbLayout {
            sk_buff,
            net_device,
            netns,
            dst_entry,
            xdp_buff,
        })
    }
}
