//! Lowering of the pcap-filter AST to a boolean IR of packet tests, following libpcap
//! 1.10's gencode.c: the same tests in the same order, with its stateful offset shifts.

use super::ast::{Arith, ArithOp, Dir, Expr, Llc, Prim, Proto, RelOp};
use super::types::{CompileError, LinkType};

/// A 32-bit value computed from the packet (classic BPF semantics: unsigned, wrapping).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum V {
    K(u32),
    Len,
    /// Big-endian load of `size` bytes at `idx + k` (no wrap); past the end rejects.
    Load {
        idx: Option<Box<V>>,
        k: u32,
        size: u8,
    },
    Alu(ArithOp, Box<V>, Box<V>),
    Neg(Box<V>),
}

impl V {
    pub fn load(k: u32, size: u8) -> V {
        V::Load { idx: None, k, size }
    }
    fn and(self, m: u32) -> V {
        if m == 0xffff_ffff {
            self
        } else {
            V::Alu(ArithOp::And, Box::new(self), Box::new(V::K(m)))
        }
    }
    pub fn has_load(&self) -> bool {
        match self {
            V::K(_) | V::Len => false,
            V::Load { .. } => true,
            V::Alu(_, a, b) => a.has_load() || b.has_load(),
            V::Neg(a) => a.has_load(),
        }
    }
}

/// Jump kinds of classic BPF (`jeq`, `jgt`, `jge`, `jset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TestOp {
    Eq,
    Gt,
    Ge,
    Set,
}

/// `a op b`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Test {
    pub a: V,
    pub op: TestOp,
    pub b: V,
}

/// Boolean IR. `Protochain` is libpcap's header-chain walk.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum B {
    Const(bool),
    Test(Test),
    And(Box<B>, Box<B>),
    Or(Box<B>, Box<B>),
    Not(Box<B>),
    Protochain { v6: bool, nl: u32, proto: u8 },
}

fn and(a: B, b: B) -> B {
    B::And(Box::new(a), Box::new(b))
}
fn or(a: B, b: B) -> B {
    B::Or(Box::new(a), Box::new(b))
}
fn not(a: B) -> B {
    B::Not(Box::new(a))
}
fn test(a: V, op: TestOp, k: u32) -> B {
    B::Test(Test { a, op, b: V::K(k) })
}

const ETHERMTU: u32 = 1500;
const ET_IP: u32 = 0x0800;
const ET_IPV6: u32 = 0x86dd;
const ET_ARP: u32 = 0x0806;
const ET_REVARP: u32 = 0x8035;
const ET_MPLS: u32 = 0x8847;
const ET_PPPOED: u32 = 0x8863;
const ET_PPPOES: u32 = 0x8864;
const ET_ATALK: u32 = 0x809b;
const ET_AARP: u32 = 0x80f3;
const ET_IPX: u32 = 0x8137;

/// libpcap's compiler state that primitives read and `vlan`/`mpls`/`pppoes` change.
pub struct Lowering {
    link: LinkType,
    netmask: Option<u32>,
    off_linkhdr: u32,
    off_linktype: Option<u32>,
    off_linkpl: u32,
    off_nl: u32,
    off_nl_nosnap: u32,
    vlan_depth: u32,
    mpls_depth: u32,
    /// After `pppoes`: the link layer is PPP (libpcap's PUSH_LINKHDR(DLT_PPP)).
    ppp: bool,
    pub uses_protochain: bool,
}

type R<T> = Result<T, CompileError>;

fn link_name(l: LinkType) -> &'static str {
    match l {
        LinkType::Ethernet => "Ethernet",
        LinkType::RawIp => "Raw IP",
    }
}

impl Lowering {
    pub fn new(link: LinkType, netmask: Option<u32>) -> Self {
        let (lt, pl, nosnap) = match link {
            LinkType::Ethernet => (Some(12), 14, 3),
            LinkType::RawIp => (None, 0, 0),
        };
        Lowering {
            link,
            netmask,
            off_linkhdr: 0,
            off_linktype: lt,
            off_linkpl: pl,
            off_nl: 0,
            off_nl_nosnap: nosnap,
            vlan_depth: 0,
            mpls_depth: 0,
            ppp: false,
            uses_protochain: false,
        }
    }

    fn unsupported(&self, what: impl Into<String>) -> CompileError {
        CompileError::Unsupported {
            what: what.into(),
            link: link_name(self.link),
        }
    }

    // --- offsets (gen_load_a) ---
    fn linkpl(&self, off: u32) -> u32 {
        self.off_linkpl.wrapping_add(self.off_nl).wrapping_add(off)
    }
    fn llc(&self, off: u32) -> u32 {
        self.off_linkpl + off
    }
    fn cmp_linktype(&self, off: u32, size: u8, v: u32) -> R<B> {
        let lt = self
            .off_linktype
            .ok_or_else(|| self.unsupported("link-layer type test"))?;
        Ok(test(V::load(lt + off, size), TestOp::Eq, v))
    }
    fn linktype_gt_mtu(&self) -> R<B> {
        let lt = self
            .off_linktype
            .ok_or_else(|| self.unsupported("link-layer type test"))?;
        Ok(test(V::load(lt, 2), TestOp::Gt, ETHERMTU))
    }
    fn mcmp(&self, at: u32, size: u8, v: u32, mask: u32) -> B {
        test(V::load(at, size).and(mask), TestOp::Eq, v)
    }
    fn cmp(&self, at: u32, size: u8, v: u32) -> B {
        test(V::load(at, size), TestOp::Eq, v)
    }
    fn iphl(&self) -> V {
        let b = V::load(self.linkpl(0), 1);
        V::Alu(
            ArithOp::Lsh,
            Box::new(V::Alu(ArithOp::And, Box::new(b), Box::new(V::K(0xf)))),
            Box::new(V::K(2)),
        )
    }
    fn tran4(&self, off: u32, size: u8) -> V {
        V::Load {
            idx: Some(Box::new(self.iphl())),
            k: self.linkpl(off),
            size,
        }
    }
    fn tran6(&self, off: u32, size: u8) -> V {
        V::load(self.linkpl(40 + off), size)
    }

    fn snap(&self, org: u32, ptype: u32) -> B {
        let b = [
            0xaa,
            0xaa,
            0x03,
            (org >> 16) as u8,
            (org >> 8) as u8,
            org as u8,
            (ptype >> 8) as u8,
            ptype as u8,
        ];
        self.bcmp(self.llc(0), &b)
    }

    /// gen_bcmp: compare bytes, last word first.
    fn bcmp(&self, at: u32, v: &[u8]) -> B {
        let mut size = v.len();
        let mut out: Option<B> = None;
        let push = |t: B, out: &mut Option<B>| {
            *out = Some(match out.take() {
                Some(prev) => and(prev, t),
                None => t,
            })
        };
        while size >= 4 {
            let p = &v[size - 4..size];
            let k = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
            push(self.cmp(at + size as u32 - 4, 4, k), &mut out);
            size -= 4;
        }
        while size >= 2 {
            let p = &v[size - 2..size];
            push(
                self.cmp(
                    at + size as u32 - 2,
                    2,
                    u16::from_be_bytes([p[0], p[1]]) as u32,
                ),
                &mut out,
            );
            size -= 2;
        }
        if size > 0 {
            push(self.cmp(at, 1, v[0] as u32), &mut out);
        }
        out.unwrap_or(B::Const(true))
    }

    /// gen_linktype.
    fn linktype(&self, proto: u32) -> R<B> {
        if self.mpls_depth > 0 {
            let bos = self.mcmp(self.linkpl(0).wrapping_sub(2), 1, 1, 1);
            return match proto {
                ET_IP => Ok(and(bos, self.mcmp(self.linkpl(0), 1, 0x40, 0xf0))),
                ET_IPV6 => Ok(and(bos, self.mcmp(self.linkpl(0), 1, 0x60, 0xf0))),
                _ => Err(self.unsupported(format!("protocol {proto:#x} over MPLS"))),
            };
        }
        if self.ppp {
            let p = match proto {
                ET_IP => 0x0021,
                ET_IPV6 => 0x0057,
                0x6003 => 0x0027,
                ET_ATALK => 0x0029,
                0x0600 => 0x0025,
                0xfe => 0x0023,
                0x42 => 0x0201,
                0xe0 => 0x002b,
                p => p,
            };
            return self.cmp_linktype(0, 2, p);
        }
        match self.link {
            LinkType::RawIp => Ok(match proto {
                ET_IP => self.mcmp(0, 1, 0x40, 0xf0),
                ET_IPV6 => self.mcmp(0, 1, 0x60, 0xf0),
                _ => B::Const(false),
            }),
            LinkType::Ethernet => self.ether_linktype(proto),
        }
    }

    fn ether_linktype(&self, p: u32) -> R<B> {
        let le_mtu = || -> R<B> { Ok(not(self.linktype_gt_mtu()?)) };
        Ok(match p {
            0xfe | 0x06 | 0xf0 => and(le_mtu()?, self.cmp(self.llc(0), 2, (p << 8) | p)),
            0xe0 => {
                let b1 = or(
                    self.cmp(self.llc(0), 1, 0xe0),
                    self.cmp(self.llc(0), 2, 0xffff),
                );
                let b1 = or(self.snap(0, ET_IPX), b1);
                let b1 = and(le_mtu()?, b1);
                or(self.cmp_linktype(0, 2, ET_IPX)?, b1)
            }
            ET_ATALK | ET_AARP => {
                let s = if p == ET_ATALK {
                    self.snap(0x080007, ET_ATALK)
                } else {
                    self.snap(0, ET_AARP)
                };
                or(self.cmp_linktype(0, 2, p)?, and(le_mtu()?, s))
            }
            p if p <= ETHERMTU => and(le_mtu()?, self.cmp_linktype(2, 1, p)?),
            p => self.cmp_linktype(0, 2, p)?,
        })
    }

    fn require_ether(&self, what: &str) -> R<()> {
        if self.link != LinkType::Ethernet || self.ppp {
            return Err(self.unsupported(what));
        }
        Ok(())
    }

    /// gen_proto_abbrev for protocol keywords.
    fn proto_abbrev(&mut self, p: Proto) -> R<B> {
        use Proto::*;
        match p {
            Ip => self.linktype(ET_IP),
            Ip6 => self.linktype(ET_IPV6),
            Arp => self.linktype(ET_ARP),
            Rarp => self.linktype(ET_REVARP),
            Tcp => self.gen_proto(6, None),
            Udp => self.gen_proto(17, None),
            Sctp => self.gen_proto(132, None),
            Icmp => self.gen_proto(1, Some(Ip)),
            Igmp => self.gen_proto(2, Some(Ip)),
            Igrp => self.gen_proto(9, Some(Ip)),
            Pim => self.gen_proto(103, None),
            Vrrp | Carp => self.gen_proto(112, Some(Ip)),
            Icmp6 => self.gen_proto(58, Some(Ip6)),
            Ah => self.gen_proto(51, None),
            Esp => self.gen_proto(50, None),
            Ether => Err(CompileError::Invalid(
                "link layer applied in wrong context".into(),
            )),
        }
    }

    /// gen_proto: `[ip|ip6] proto N`.
    fn gen_proto(&mut self, v: u32, under: Option<Proto>) -> R<B> {
        match under {
            None => {
                let a = self.gen_proto(v, Some(Proto::Ip))?;
                let b = self.gen_proto(v, Some(Proto::Ip6))?;
                Ok(or(a, b))
            }
            Some(Proto::Ip) => Ok(and(self.linktype(ET_IP)?, self.cmp(self.linkpl(9), 1, v))),
            Some(Proto::Ip6) => {
                let lt = self.linktype(ET_IPV6)?;
                let frag = and(
                    self.cmp(self.linkpl(6), 1, 44),
                    self.cmp(self.linkpl(40), 1, v),
                );
                Ok(and(lt, or(self.cmp(self.linkpl(6), 1, v), frag)))
            }
            Some(p) => Err(CompileError::Invalid(format!(
                "'{}' proto is not supported by this compiler",
                p.keyword()
            ))),
        }
    }

    fn ipfrag(&self) -> B {
        not(test(V::load(self.linkpl(6), 2), TestOp::Set, 0x1fff))
    }

    fn hostop(&self, addr: u32, mask: u32, dir: Dir, et: u32, src: u32, dst: u32) -> R<B> {
        match dir {
            Dir::Src | Dir::Dst => {
                let off = if dir == Dir::Src { src } else { dst };
                let lt = self.linktype(et)?;
                Ok(and(lt, self.mcmp(self.linkpl(off), 4, addr, mask)))
            }
            Dir::SrcAndDst => Ok(and(
                self.hostop(addr, mask, Dir::Src, et, src, dst)?,
                self.hostop(addr, mask, Dir::Dst, et, src, dst)?,
            )),
            Dir::SrcOrDst => Ok(or(
                self.hostop(addr, mask, Dir::Src, et, src, dst)?,
                self.hostop(addr, mask, Dir::Dst, et, src, dst)?,
            )),
        }
    }

    fn host4(&self, addr: u32, mask: u32, proto: Option<Proto>, dir: Dir) -> R<B> {
        match proto {
            None => {
                let b0 = self.host4(addr, mask, Some(Proto::Ip), dir)?;
                if self.mpls_depth == 0 {
                    let b1 = self.host4(addr, mask, Some(Proto::Arp), dir)?;
                    let b2 = self.host4(addr, mask, Some(Proto::Rarp), dir)?;
                    Ok(or(or(b0, b1), b2))
                } else {
                    Ok(b0)
                }
            }
            Some(Proto::Ip) => self.hostop(addr, mask, dir, ET_IP, 12, 16),
            Some(Proto::Arp) => self.hostop(addr, mask, dir, ET_ARP, 14, 24),
            Some(Proto::Rarp) => self.hostop(addr, mask, dir, ET_REVARP, 14, 24),
            Some(p) => Err(CompileError::Invalid(format!(
                "'{}' modifier applied to host",
                p.keyword()
            ))),
        }
    }

    fn host6(&self, addr: &[u8; 16], prefix: u8, dir: Dir) -> R<B> {
        match dir {
            Dir::Src | Dir::Dst => {
                let off = if dir == Dir::Src { 8 } else { 24 };
                let pfx = prefix.min(128) as u32;
                let mut words = [0u32; 4];
                let mut masks = [0u32; 4];
                for i in 0..4 {
                    words[i] = u32::from_be_bytes(addr[4 * i..4 * i + 4].try_into().unwrap());
                    let bits = pfx.saturating_sub(32 * i as u32).min(32);
                    masks[i] = if bits == 0 {
                        0
                    } else {
                        u32::MAX << (32 - bits)
                    };
                }
                let mut b = self.mcmp(self.linkpl(off + 12), 4, words[3], masks[3]);
                for i in (0..3).rev() {
                    b = and(
                        self.mcmp(self.linkpl(off + 4 * i as u32), 4, words[i], masks[i]),
                        b,
                    );
                }
                Ok(and(self.linktype(ET_IPV6)?, b))
            }
            Dir::SrcAndDst => Ok(and(
                self.host6(addr, prefix, Dir::Src)?,
                self.host6(addr, prefix, Dir::Dst)?,
            )),
            Dir::SrcOrDst => Ok(or(
                self.host6(addr, prefix, Dir::Src)?,
                self.host6(addr, prefix, Dir::Dst)?,
            )),
        }
    }

    fn ehost(&self, mac: &[u8; 6], dir: Dir) -> R<B> {
        Ok(match dir {
            Dir::Src => self.bcmp(6, mac),
            Dir::Dst => self.bcmp(0, mac),
            Dir::SrcAndDst => and(self.ehost(mac, Dir::Src)?, self.ehost(mac, Dir::Dst)?),
            Dir::SrcOrDst => or(self.ehost(mac, Dir::Src)?, self.ehost(mac, Dir::Dst)?),
        })
    }

    /// Ports (and ranges, `lo..=hi`) over IPv4 (`v6 == false`) or IPv6.
    fn portop(&self, lo: u16, hi: u16, ipp: u32, dir: Dir, v6: bool) -> B {
        let atom = |off: u32| -> B {
            let v = |s: &Self| {
                if v6 {
                    s.tran6(off, 2)
                } else {
                    s.tran4(off, 2)
                }
            };
            if lo == hi {
                test(v(self), TestOp::Eq, lo as u32)
            } else {
                and(
                    test(v(self), TestOp::Ge, lo as u32),
                    not(test(v(self), TestOp::Gt, hi as u32)),
                )
            }
        };
        let b1 = match dir {
            Dir::Src => atom(0),
            Dir::Dst => atom(2),
            Dir::SrcAndDst => and(atom(0), atom(2)),
            Dir::SrcOrDst => or(atom(0), atom(2)),
        };
        if v6 {
            and(self.cmp(self.linkpl(6), 1, ipp), b1)
        } else {
            and(and(self.cmp(self.linkpl(9), 1, ipp), self.ipfrag()), b1)
        }
    }

    fn port(&self, lo: u16, hi: u16, proto: Option<Proto>, dir: Dir, v6: bool) -> R<B> {
        let lt = self.linktype(if v6 { ET_IPV6 } else { ET_IP })?;
        let b1 = match proto {
            Some(Proto::Tcp) => self.portop(lo, hi, 6, dir, v6),
            Some(Proto::Udp) => self.portop(lo, hi, 17, dir, v6),
            Some(Proto::Sctp) => self.portop(lo, hi, 132, dir, v6),
            None => or(
                or(
                    self.portop(lo, hi, 6, dir, v6),
                    self.portop(lo, hi, 17, dir, v6),
                ),
                self.portop(lo, hi, 132, dir, v6),
            ),
            Some(p) => {
                return Err(CompileError::Invalid(format!(
                    "illegal qualifier of 'port': {}",
                    p.keyword()
                )))
            }
        };
        Ok(and(lt, b1))
    }

    fn llc_check(&self) -> R<B> {
        if self.link != LinkType::Ethernet || self.ppp {
            return Err(self.unsupported("'llc'"));
        }
        Ok(and(
            not(self.linktype_gt_mtu()?),
            not(self.cmp(self.llc(0), 2, 0xffff)),
        ))
    }

    pub fn expr(&mut self, e: &Expr) -> R<B> {
        Ok(match e {
            Expr::And(a, b) => {
                let a = self.expr(a)?;
                and(a, self.expr(b)?)
            }
            Expr::Or(a, b) => {
                let a = self.expr(a)?;
                or(a, self.expr(b)?)
            }
            Expr::Not(a) => not(self.expr(a)?),
            Expr::Prim(p) => self.prim(p)?,
            Expr::Rel { op, lhs, rhs } => self.relation(*op, lhs, rhs)?,
        })
    }

    fn prim(&mut self, p: &Prim) -> R<B> {
        match p {
            Prim::Host4 { proto, dir, addr } => self.host4(*addr, u32::MAX, *proto, *dir),
            Prim::Net4 { proto, dir, net } => {
                if net.addr & !net.mask != 0 {
                    return Err(CompileError::Invalid(format!(
                        "non-network bits set in \"{p}\""
                    )));
                }
                self.host4(net.addr, net.mask, *proto, *dir)
            }
            Prim::Host6 { dir, addr } => self.host6(addr, 128, *dir),
            Prim::Net6 { dir, net } => {
                let a = u128::from_be_bytes(net.addr);
                let m = if net.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - net.prefix.min(128) as u32)
                };
                if a & !m != 0 {
                    return Err(CompileError::Invalid(format!(
                        "non-network bits set in \"{p}\""
                    )));
                }
                self.host6(&net.addr, net.prefix, *dir)
            }
            Prim::EtherHost { dir, mac } => {
                if self.link != LinkType::Ethernet || self.ppp {
                    return Err(self.unsupported("ethernet addresses"));
                }
                self.ehost(mac, *dir)
            }
            Prim::Port { proto, dir, port } => {
                let b6 = self.port(*port, *port, *proto, *dir, true)?;
                let b4 = self.port(*port, *port, *proto, *dir, false)?;
                Ok(or(b6, b4))
            }
            Prim::PortRange { proto, dir, lo, hi } => {
                let (lo, hi) = if lo <= hi { (*lo, *hi) } else { (*hi, *lo) };
                let b6 = self.port(lo, hi, *proto, *dir, true)?;
                let b4 = self.port(lo, hi, *proto, *dir, false)?;
                Ok(or(b6, b4))
            }
            Prim::Proto(p) => self.proto_abbrev(*p),
            Prim::IpProto { under, proto } => self.gen_proto(*proto as u32, *under),
            Prim::Protochain { under, proto } => self.protochain(*proto, *under),
            Prim::EtherProto(p) => self.linktype(*p as u32),
            Prim::Broadcast(p) => match p {
                Proto::Ether => {
                    self.require_ether("'broadcast' (not a broadcast link)")?;
                    self.ehost(&[0xff; 6], Dir::Dst)
                }
                Proto::Ip => {
                    let nm = self.netmask.ok_or_else(|| {
                        CompileError::Invalid(
                            "netmask not known, so 'ip broadcast' not supported".into(),
                        )
                    })?;
                    let hm = !nm;
                    let b0 = self.linktype(ET_IP)?;
                    let b1 = self.mcmp(self.linkpl(16), 4, 0, hm);
                    let b2 = self.mcmp(self.linkpl(16), 4, hm, hm);
                    Ok(and(b0, or(b1, b2)))
                }
                p => Err(CompileError::Invalid(format!(
                    "only link-layer/IP broadcast filters supported, not '{}'",
                    p.keyword()
                ))),
            },
            Prim::Multicast(p) => match p {
                Proto::Ether => {
                    self.require_ether("link-layer multicast filters")?;
                    Ok(test(V::load(0, 1), TestOp::Set, 1))
                }
                Proto::Ip => Ok(and(
                    self.linktype(ET_IP)?,
                    test(V::load(self.linkpl(16), 1), TestOp::Ge, 224),
                )),
                Proto::Ip6 => Ok(and(
                    self.linktype(ET_IPV6)?,
                    self.cmp(self.linkpl(24), 1, 255),
                )),
                p => Err(CompileError::Invalid(format!(
                    "'{}' multicast is not supported",
                    p.keyword()
                ))),
            },
            Prim::Less(n) => Ok(not(test(V::Len, TestOp::Gt, *n))),
            Prim::Greater(n) => Ok(test(V::Len, TestOp::Ge, *n)),
            Prim::Vlan(id) => {
                if self.mpls_depth > 0 {
                    return Err(CompileError::Invalid("no VLAN match after MPLS".into()));
                }
                if self.link != LinkType::Ethernet || self.ppp {
                    return Err(self.unsupported("VLAN"));
                }
                let mut b = or(
                    or(self.linktype(0x8100)?, self.linktype(0x88a8)?),
                    self.linktype(0x9100)?,
                );
                if let Some(id) = id {
                    if *id > 0x0fff {
                        return Err(CompileError::Invalid(format!(
                            "VLAN tag {id} greater than maximum 4095"
                        )));
                    }
                    b = and(b, self.mcmp(self.linkpl(0), 2, *id as u32, 0x0fff));
                }
                self.off_linkpl += 4;
                self.off_linktype = self.off_linktype.map(|o| o + 4);
                self.vlan_depth += 1;
                Ok(b)
            }
            Prim::Mpls(label) => {
                let mut b = if self.mpls_depth > 0 {
                    self.mcmp(self.linkpl(0).wrapping_sub(4).wrapping_add(2), 1, 0, 1)
                } else {
                    if self.ppp {
                        self.cmp_linktype(0, 2, 0x0281)?
                    } else if self.link != LinkType::Ethernet {
                        return Err(self.unsupported("MPLS"));
                    } else {
                        self.linktype(ET_MPLS)?
                    }
                };
                if let Some(l) = label {
                    if *l > 0xfffff {
                        return Err(CompileError::Invalid(format!(
                            "MPLS label {l} greater than maximum 1048575"
                        )));
                    }
                    b = and(b, self.mcmp(self.linkpl(0), 4, l << 12, 0xffff_f000));
                }
                self.off_nl_nosnap += 4;
                self.off_nl += 4;
                self.mpls_depth += 1;
                Ok(b)
            }
            Prim::Pppoed => self.linktype(ET_PPPOED),
            Prim::Pppoes(sess) => {
                let mut b = self.linktype(ET_PPPOES)?;
                if let Some(s) = sess {
                    b = and(b, self.mcmp(self.linkpl(0), 4, *s as u32, 0xffff));
                }
                // PUSH_LINKHDR(DLT_PPP): the PPP protocol field follows the
                // 6-byte PPPoE header.
                let hdr = self.linkpl(6);
                self.off_linkhdr = hdr;
                self.off_linktype = Some(hdr);
                self.off_linkpl = hdr + 2;
                self.off_nl = 0;
                self.ppp = true;
                Ok(b)
            }
            Prim::Geneve(_) => Err(self.unsupported(
                "'geneve' (variable-length offsets are not implemented by this compiler)",
            )),
            Prim::Vxlan(_) => Err(CompileError::Invalid(
                "'vxlan' is not part of libpcap 1.10's filter language".into(),
            )),
            Prim::Llc(l) => {
                let b0 = self.llc_check()?;
                let ctl = V::load(self.llc(2), 1);
                let b1 = match l {
                    Llc::Any => return Ok(b0),
                    Llc::I => not(test(ctl, TestOp::Set, 1)),
                    Llc::S => test(ctl.and(3), TestOp::Eq, 1),
                    Llc::U => test(ctl.and(3), TestOp::Eq, 3),
                    Llc::SSubtype(v) => test(ctl.and(0x0f), TestOp::Eq, *v as u32),
                    Llc::USubtype(v) => test(ctl.and(0xef), TestOp::Eq, *v as u32),
                };
                Ok(and(b0, b1))
            }
        }
    }

    fn protochain(&mut self, proto: u8, under: Option<Proto>) -> R<B> {
        match under {
            None => {
                let a = self.protochain(proto, Some(Proto::Ip))?;
                let b = self.protochain(proto, Some(Proto::Ip6))?;
                Ok(or(a, b))
            }
            Some(p @ (Proto::Ip | Proto::Ip6)) => {
                self.uses_protochain = true;
                let v6 = p == Proto::Ip6;
                let lt = self.linktype(if v6 { ET_IPV6 } else { ET_IP })?;
                Ok(and(
                    lt,
                    B::Protochain {
                        v6,
                        nl: self.linkpl(0),
                        proto,
                    },
                ))
            }
            Some(_) => Err(CompileError::Invalid(
                "bad protocol applied for 'protochain'".into(),
            )),
        }
    }

    /// gen_load_internal: a `proto[idx:size]` value and the checks that guard it.
    fn load(&mut self, proto: Proto, idx: &Arith, size: u8) -> R<(V, Option<B>)> {
        if !matches!(size, 1 | 2 | 4) {
            return Err(CompileError::Invalid("data size must be 1, 2, or 4".into()));
        }
        let (iv, ib) = self.arith(idx)?;
        use Proto::*;
        let with = |ib: Option<B>, b: B| match ib {
            Some(ib) => and(ib, b),
            None => b,
        };
        Ok(match proto {
            Ether => (
                V::Load {
                    idx: Some(Box::new(iv)),
                    k: self.off_linkhdr,
                    size,
                },
                ib,
            ),
            Ip | Ip6 | Arp | Rarp => {
                let v = V::Load {
                    idx: Some(Box::new(iv)),
                    k: self.linkpl(0),
                    size,
                };
                let b = self.proto_abbrev(proto)?;
                (v, Some(with(ib, b)))
            }
            Tcp | Udp | Sctp | Icmp | Igmp | Igrp | Pim | Vrrp | Carp => {
                let v = V::Load {
                    idx: Some(Box::new(V::Alu(
                        ArithOp::Add,
                        Box::new(iv),
                        Box::new(self.iphl()),
                    ))),
                    k: self.linkpl(0),
                    size,
                };
                let pb = self.proto_abbrev(proto)?;
                let b = and(pb, self.ipfrag());
                let b = with(ib, b);
                let ipb = self.proto_abbrev(Ip)?;
                (v, Some(and(ipb, b)))
            }
            Icmp6 => {
                let b = with(ib, self.proto_abbrev(Ip6)?);
                let b = and(b, self.cmp(self.linkpl(6), 1, 58));
                let v = V::Load {
                    idx: Some(Box::new(iv)),
                    k: self.linkpl(40),
                    size,
                };
                (v, Some(b))
            }
            Ah | Esp => {
                return Err(CompileError::Invalid(format!(
                    "unsupported index operation on '{}'",
                    proto.keyword()
                )))
            }
        })
    }

    fn arith(&mut self, a: &Arith) -> R<(V, Option<B>)> {
        Ok(match a {
            Arith::Num(n) => (V::K(*n), None),
            Arith::Len => (V::Len, None),
            Arith::Load {
                proto,
                offset,
                size,
            } => self.load(*proto, offset, *size)?,
            Arith::Neg(x) => {
                let (v, b) = self.arith(x)?;
                (V::Neg(Box::new(v)), b)
            }
            Arith::Bin { op, lhs, rhs } => {
                let (lv, lb) = self.arith(lhs)?;
                let (rv, _rb_dropped_like_libpcap) = self.arith(rhs)?;
                // gen_arth's checks on the literal that starts the right operand.
                if let Some(k) = first_literal(rhs) {
                    match op {
                        ArithOp::Div if k == 0 => return Err(CompileError::DivisionByZero),
                        ArithOp::Mod if k == 0 => return Err(CompileError::ModulusByZero),
                        ArithOp::Lsh | ArithOp::Rsh if k > 31 => {
                            return Err(CompileError::ShiftTooLarge)
                        }
                        _ => {}
                    }
                }
                (V::Alu(*op, Box::new(lv), Box::new(rv)), lb)
            }
        })
    }

    fn relation(&mut self, op: RelOp, lhs: &Arith, rhs: &Arith) -> R<B> {
        let (a, ab) = self.arith(lhs)?;
        let (b, bb) = self.arith(rhs)?;
        let (top, rev) = match op {
            RelOp::Eq => (TestOp::Eq, false),
            RelOp::Ne => (TestOp::Eq, true),
            RelOp::Gt => (TestOp::Gt, false),
            RelOp::Le => (TestOp::Gt, true),
            RelOp::Ge => (TestOp::Ge, false),
            RelOp::Lt => (TestOp::Ge, true),
        };
        let mut t = B::Test(Test { a, op: top, b });
        if rev {
            t = not(t);
        }
        let checks = match (ab, bb) {
            (Some(x), Some(y)) => Some(and(x, y)),
            (Some(x), None) | (None, Some(x)) => Some(x),
            (None, None) => None,
        };
        Ok(match checks {
            Some(c) => and(c, t),
            None => t,
        })
    }
}

/// The constant libpcap's gen_arth inspects: the first statement of the operand's code
/// (for a load, the literal that starts its index).
fn first_literal(a: &Arith) -> Option<u32> {
    match a {
        Arith::Num(n) => Some(*n),
        Arith::Len => None,
        Arith::Load { offset, .. } => first_literal(offset),
        Arith::Bin { lhs, .. } => first_literal(lhs),
        Arith::Neg(x) => first_literal(x),
    }
}
