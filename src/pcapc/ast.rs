//! The typed syntax tree of a pcap-filter expression, with qualifiers already resolved
//! (the parser applies libpcap's qualifier inheritance). It is the contract between the
//! parser (`parse`) and the eBPF compiler (`compile`). `Display` prints pcap-filter syntax
//! that libpcap reads back with the same meaning (fully parenthesised).

use std::fmt;

/// A boolean filter expression. `and`/`or` are kept binary and left-associative as parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Prim(Prim),
    /// `lhs op rhs` over packet bytes and numbers, e.g. `tcp[13] & 2 != 0`.
    Rel {
        op: RelOp,
        lhs: Arith,
        rhs: Arith,
    },
}

/// Direction qualifier. Default is `SrcOrDst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    Src,
    Dst,
    SrcOrDst,
    SrcAndDst,
}

/// Protocol qualifiers that can stand before a primitive or index packet bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// `ether` (also spelled `link` for byte access).
    Ether,
    Ip,
    Ip6,
    Arp,
    Rarp,
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmp6,
    Igmp,
    Igrp,
    Pim,
    Vrrp,
    Carp,
    Ah,
    Esp,
    /// AppleTalk (`atalk`) and its ARP (`aarp`).
    Atalk,
    Aarp,
    /// DECnet Phase IV (`decnet`) and DEC's LAT, SCA, MOP dump/load and remote console.
    Decnet,
    Lat,
    Sca,
    Mopdl,
    Moprc,
    /// OSI: `iso` (802.2 SAP 0xfe), its network protocols `clnp`, `esis`, `isis`, and the
    /// IS-IS PDU groups `l1`, `l2`, `iih`, `lsp`, `snp`, `csnp`, `psnp`.
    Iso,
    Clnp,
    Esis,
    Isis,
    IsisL1,
    IsisL2,
    IsisIih,
    IsisLsp,
    IsisSnp,
    IsisCsnp,
    IsisPsnp,
    /// 802.2 LLC protocols: spanning tree, IPX, NetBEUI.
    Stp,
    Ipx,
    Netbeui,
}

impl Proto {
    pub fn keyword(self) -> &'static str {
        match self {
            Proto::Ether => "ether",
            Proto::Ip => "ip",
            Proto::Ip6 => "ip6",
            Proto::Arp => "arp",
            Proto::Rarp => "rarp",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
            Proto::Icmp => "icmp",
            Proto::Icmp6 => "icmp6",
            Proto::Igmp => "igmp",
            Proto::Igrp => "igrp",
            Proto::Pim => "pim",
            Proto::Vrrp => "vrrp",
            Proto::Carp => "carp",
            Proto::Ah => "ah",
            Proto::Esp => "esp",
            Proto::Atalk => "atalk",
            Proto::Aarp => "aarp",
            Proto::Decnet => "decnet",
            Proto::Lat => "lat",
            Proto::Sca => "sca",
            Proto::Mopdl => "mopdl",
            Proto::Moprc => "moprc",
            Proto::Iso => "iso",
            Proto::Clnp => "clnp",
            Proto::Esis => "esis",
            Proto::Isis => "isis",
            Proto::IsisL1 => "l1",
            Proto::IsisL2 => "l2",
            Proto::IsisIih => "iih",
            Proto::IsisLsp => "lsp",
            Proto::IsisSnp => "snp",
            Proto::IsisCsnp => "csnp",
            Proto::IsisPsnp => "psnp",
            Proto::Stp => "stp",
            Proto::Ipx => "ipx",
            Proto::Netbeui => "netbeui",
        }
    }
}

/// An IPv4 network (`net 10`, `net 10.0.0.0/8`, `net 10.0.0.0 mask 255.0.0.0`).
/// libpcap allows non-contiguous masks for IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Net4 {
    pub addr: u32,
    pub mask: u32,
}

/// An IPv6 network (`net 2001:db8::/32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Net6 {
    pub addr: [u8; 16],
    pub prefix: u8,
}

/// `llc` subtypes (`llc i`, `llc s`, `llc u`, and the named S/U frame kinds) as a raw check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Llc {
    /// Any 802.2 LLC frame.
    Any,
    /// Information frames.
    I,
    /// Supervisory frames.
    S,
    /// Unnumbered frames.
    U,
    /// A supervisory subtype: control byte & 0x0f == value (`rr`, `rnr`, `rej`).
    SSubtype(u8),
    /// An unnumbered subtype: control byte & 0xef == value (`ui`, `ua`, `disc`, `dm`, `sabme`, `test`, `xid`, `frmr`).
    USubtype(u8),
}

/// A primitive with its qualifiers resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prim {
    /// `[ip|ip6|arp|rarp] [dir] host ADDR` with an IPv4 address. `proto: None` means
    /// libpcap's default: IPv4 in ip, arp or rarp.
    Host4 {
        proto: Option<Proto>,
        dir: Dir,
        addr: u32,
    },
    /// `[ip6] [dir] host ADDR` with an IPv6 address.
    Host6 { dir: Dir, addr: [u8; 16] },
    /// `ether [dir] host MAC` (also `ether src/dst MAC`).
    EtherHost { dir: Dir, mac: [u8; 6] },
    /// `[ip|arp|rarp] [dir] net ...` IPv4.
    Net4 {
        proto: Option<Proto>,
        dir: Dir,
        net: Net4,
    },
    /// `[ip6] [dir] net ...` IPv6.
    Net6 { dir: Dir, net: Net6 },
    /// `[tcp|udp|sctp] [dir] port N` over IPv4 and IPv6. `proto: None` means tcp, udp or sctp.
    Port {
        proto: Option<Proto>,
        dir: Dir,
        port: u16,
    },
    /// `[tcp|udp|sctp] [dir] portrange LO-HI` (LO <= HI after normalisation).
    PortRange {
        proto: Option<Proto>,
        dir: Dir,
        lo: u16,
        hi: u16,
    },
    /// A bare protocol: `ip`, `ip6`, `arp`, `rarp`, `tcp`, `udp`, `icmp`, `decnet`,
    /// `stp`, `isis`, ...; `ether` is not one.
    Proto(Proto),
    /// `ip proto N`, `ip6 proto N`, or `proto N` (`under: None`: IPv4 or IPv6); also
    /// `iso proto N` (the OSI NLPID) and `isis proto N` (the IS-IS PDU type).
    IpProto { under: Option<Proto>, proto: u32 },
    /// `decnet [dir] host AREA.NODE` (the 16-bit DECnet address `area << 10 | node`).
    DecnetHost { dir: Dir, addr: u16 },
    /// `inbound` (`false`) or `outbound` (`true`): the capture direction of Linux
    /// cooked captures, or of live packets (`skb->pkt_type`).
    Outbound(bool),
    /// `ifindex N`: the interface index of Linux cooked v2 captures, or of live packets
    /// (`skb->dev->ifindex`).
    Ifindex(u32),
    /// `ip protochain N`, `ip6 protochain N`, `protochain N`.
    Protochain { under: Option<Proto>, proto: u32 },
    /// `ether proto N` (and `ether proto \ip`, ...).
    EtherProto(u32),
    /// `ether broadcast`, `ip broadcast` (`broadcast` alone is `ether broadcast`).
    Broadcast(Proto),
    /// `ether multicast`, `ip multicast`, `ip6 multicast` (`multicast` alone is ether).
    Multicast(Proto),
    /// `less N`: `len <= N`.
    Less(u32),
    /// `greater N`: `len >= N`.
    Greater(u32),
    /// `vlan [ID]`: 802.1Q/802.1ad tag; shifts later link-layer offsets by 4.
    Vlan(Option<u16>),
    /// `mpls [LABEL]`: shifts later offsets by 4.
    Mpls(Option<u32>),
    /// `pppoed`: PPPoE discovery frames.
    Pppoed,
    /// `pppoes [SESSION]`: PPPoE session frames; later offsets see the PPP payload.
    Pppoes(Option<u16>),
    /// `geneve [VNI]`: UDP port 6081; later offsets see the inner frame.
    Geneve(Option<u32>),
    /// `vxlan [VNI]`: UDP port 4789; later offsets see the inner frame.
    Vxlan(Option<u32>),
    /// `llc [subtype]`.
    Llc(Llc),
}

/// Comparison operators of relations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl RelOp {
    pub fn symbol(self) -> &'static str {
        match self {
            RelOp::Eq => "=",
            RelOp::Ne => "!=",
            RelOp::Lt => "<",
            RelOp::Le => "<=",
            RelOp::Gt => ">",
            RelOp::Ge => ">=",
        }
    }
}

/// Binary arithmetic operators. All arithmetic is unsigned 32-bit, as in classic BPF;
/// division or modulo by zero makes the whole filter reject the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    And,
    Or,
    Xor,
    Lsh,
    Rsh,
}

impl ArithOp {
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Mod => "%",
            ArithOp::And => "&",
            ArithOp::Or => "|",
            ArithOp::Xor => "^",
            ArithOp::Lsh => "<<",
            ArithOp::Rsh => ">>",
        }
    }
}

/// Arithmetic over packet bytes (unsigned 32-bit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arith {
    Num(u32),
    /// `len`: the packet length.
    Len,
    /// `proto[offset : size]`, size 1, 2 or 4, big-endian; offset relative to the
    /// start of that protocol's header. A load past the packet end rejects the packet.
    Load {
        proto: Proto,
        offset: Box<Arith>,
        size: u8,
    },
    Bin {
        op: ArithOp,
        lhs: Box<Arith>,
        rhs: Box<Arith>,
    },
    /// Unary minus (two's complement, 32-bit).
    Neg(Box<Arith>),
}

impl fmt::Display for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dir::Src => "src",
            Dir::Dst => "dst",
            Dir::SrcOrDst => "src or dst",
            Dir::SrcAndDst => "src and dst",
        })
    }
}

fn fmt_ip6(a: &[u8; 16]) -> String {
    std::net::Ipv6Addr::from(*a).to_string()
}

fn fmt_ip4(a: u32) -> String {
    std::net::Ipv4Addr::from(a).to_string()
}

impl fmt::Display for Prim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pq = |p: &Option<Proto>| p.map(|p| format!("{} ", p.keyword())).unwrap_or_default();
        match self {
            Prim::Host4 { proto, dir, addr } => {
                write!(f, "{}{dir} host {}", pq(proto), fmt_ip4(*addr))
            }
            Prim::Host6 { dir, addr } => write!(f, "ip6 {dir} host {}", fmt_ip6(addr)),
            Prim::EtherHost { dir, mac } => write!(
                f,
                "ether {dir} host {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
            ),
            Prim::Net4 { proto, dir, net } => write!(
                f,
                "{}{dir} net {} mask {}",
                pq(proto),
                fmt_ip4(net.addr),
                fmt_ip4(net.mask)
            ),
            Prim::Net6 { dir, net } => {
                write!(f, "ip6 {dir} net {}/{}", fmt_ip6(&net.addr), net.prefix)
            }
            Prim::Port { proto, dir, port } => write!(f, "{}{dir} port {port}", pq(proto)),
            Prim::PortRange { proto, dir, lo, hi } => {
                write!(f, "{}{dir} portrange {lo}-{hi}", pq(proto))
            }
            Prim::Proto(p) => write!(f, "{}", p.keyword()),
            Prim::IpProto { under, proto } => write!(f, "{}proto {proto}", pq(under)),
            Prim::DecnetHost { dir, addr } => {
                write!(f, "decnet {dir} host {}.{}", addr >> 10, addr & 0x3ff)
            }
            Prim::Outbound(false) => write!(f, "inbound"),
            Prim::Outbound(true) => write!(f, "outbound"),
            Prim::Ifindex(i) => write!(f, "ifindex {i}"),
            Prim::Protochain { under, proto } => write!(f, "{}protochain {proto}", pq(under)),
            Prim::EtherProto(p) => write!(f, "ether proto {p}"),
            Prim::Broadcast(p) => write!(f, "{} broadcast", p.keyword()),
            Prim::Multicast(p) => write!(f, "{} multicast", p.keyword()),
            Prim::Less(n) => write!(f, "less {n}"),
            Prim::Greater(n) => write!(f, "greater {n}"),
            Prim::Vlan(id) => opt(f, "vlan", id),
            Prim::Mpls(l) => opt(f, "mpls", l),
            Prim::Pppoed => write!(f, "pppoed"),
            Prim::Pppoes(s) => opt(f, "pppoes", s),
            Prim::Geneve(v) => opt(f, "geneve", v),
            Prim::Vxlan(v) => opt(f, "vxlan", v),
            Prim::Llc(l) => match l {
                Llc::Any => write!(f, "llc"),
                Llc::I => write!(f, "llc i"),
                Llc::S => write!(f, "llc s"),
                Llc::U => write!(f, "llc u"),
                Llc::SSubtype(v) => write!(f, "llc {}", llc_s_name(*v)),
                Llc::USubtype(v) => write!(f, "llc {}", llc_u_name(*v)),
            },
        }
    }
}

/// Names of supervisory LLC subtypes, by control-field value.
pub const LLC_S_SUBTYPES: &[(&str, u8)] = &[("rr", 0x01), ("rnr", 0x05), ("rej", 0x09)];
/// Names of unnumbered LLC subtypes, by control-field value (P/F bit masked).
pub const LLC_U_SUBTYPES: &[(&str, u8)] = &[
    ("ui", 0x03),
    ("ua", 0x63),
    ("disc", 0x43),
    ("dm", 0x0f),
    ("sabme", 0x6f),
    ("test", 0xe3),
    ("xid", 0xaf),
    ("frmr", 0x87),
];

fn llc_s_name(v: u8) -> &'static str {
    LLC_S_SUBTYPES
        .iter()
        .find(|(_, x)| *x == v)
        .map(|(n, _)| *n)
        .unwrap_or("rr")
}

fn llc_u_name(v: u8) -> &'static str {
    LLC_U_SUBTYPES
        .iter()
        .find(|(_, x)| *x == v)
        .map(|(n, _)| *n)
        .unwrap_or("ui")
}

fn opt<T: fmt::Display>(f: &mut fmt::Formatter<'_>, kw: &str, v: &Option<T>) -> fmt::Result {
    match v {
        Some(v) => write!(f, "{kw} {v}"),
        None => write!(f, "{kw}"),
    }
}

impl fmt::Display for Arith {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arith::Num(n) => write!(f, "{n}"),
            Arith::Len => write!(f, "len"),
            Arith::Load {
                proto,
                offset,
                size,
            } => write!(f, "{}[{offset}:{size}]", proto.keyword()),
            Arith::Bin { op, lhs, rhs } => write!(f, "({lhs} {} {rhs})", op.symbol()),
            Arith::Neg(a) => write!(f, "(-{a})"),
        }
    }
}

impl Expr {
    /// Whether the expression tests the packet's interface (`ifindex N`), which Ethernet
    /// and raw IP packets carry only in the kernel's metadata.
    pub fn reads_ifindex(&self) -> bool {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => a.reads_ifindex() || b.reads_ifindex(),
            Expr::Not(a) => a.reads_ifindex(),
            Expr::Prim(Prim::Ifindex(_)) => true,
            Expr::Prim(_) | Expr::Rel { .. } => false,
        }
    }

    /// Whether the expression tests the packet's direction (`inbound`, `outbound`),
    /// which Ethernet and raw IP packets carry only in the kernel's metadata.
    pub fn reads_direction(&self) -> bool {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => a.reads_direction() || b.reads_direction(),
            Expr::Not(a) => a.reads_direction(),
            Expr::Prim(Prim::Outbound(_)) => true,
            Expr::Prim(_) | Expr::Rel { .. } => false,
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(a, b) => write!(f, "({a} and {b})"),
            Expr::Or(a, b) => write!(f, "({a} or {b})"),
            Expr::Not(a) => write!(f, "(not {a})"),
            Expr::Prim(p) => write!(f, "{p}"),
            Expr::Rel { op, lhs, rhs } => write!(f, "({lhs} {} {rhs})", op.symbol()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_prints_pcap_syntax() {
        let e = Expr::And(
            Box::new(Expr::Prim(Prim::Host4 {
                proto: None,
                dir: Dir::Dst,
                addr: 0x0a00_0002,
            })),
            Box::new(Expr::Not(Box::new(Expr::Rel {
                op: RelOp::Ne,
                lhs: Arith::Bin {
                    op: ArithOp::And,
                    lhs: Box::new(Arith::Load {
                        proto: Proto::Tcp,
                        offset: Box::new(Arith::Num(13)),
                        size: 1,
                    }),
                    rhs: Box::new(Arith::Num(2)),
                },
                rhs: Arith::Num(0),
            }))),
        );
        assert_eq!(
            e.to_string(),
            "(dst host 10.0.0.2 and (not ((tcp[13:1] & 2) != 0)))"
        );
    }
}
