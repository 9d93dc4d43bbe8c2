//! Lowering of the pcap-filter AST to a boolean IR of packet tests, following libpcap
//! 1.10's gencode.c: the same tests in the same order, with its stateful offset shifts.
//!
//! Offsets are libpcap's `bpf_abs_offset`s: a constant plus, after `geneve`, a variable
//! part. libpcap keeps the variable part in a scratch register set where `geneve`
//! matched; here it is the value itself (a [`V`] over packet bytes, with
//! [`V::Select`] where it depends on the IP version or the encapsulated protocol),
//! which the emitter recomputes where a load needs it. Both read the same bytes.

use super::ast::{Arith, ArithOp, Dir, Expr, Llc, Prim, Proto, RelOp};
use super::types::{CompileError, LinkType};

/// A 32-bit value computed from the packet (classic BPF semantics: unsigned, wrapping).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum V {
    K(u32),
    Len,
    /// The packet's direction from the kernel's metadata (`skb->pkt_type`, libpcap's
    /// `SKF_AD_PKTTYPE`), where [`crate::pcapc::FilterEnv::pkt_type`] says how to read it.
    PktType,
    /// The packet's interface from the kernel's metadata (`skb->dev->ifindex`, libpcap's
    /// `SKF_AD_IFINDEX`), where [`crate::pcapc::FilterEnv::ifindex`] says how to read it.
    Ifindex,
    /// Big-endian load of `size` bytes at `idx + k` (no wrap); past the end rejects.
    Load {
        idx: Option<Box<V>>,
        k: u32,
        size: u8,
    },
    Alu(ArithOp, Box<V>, Box<V>),
    Neg(Box<V>),
    /// `then` when `cond` holds, else `other` (Geneve's inner offsets, which depend on
    /// the outer IP version and on the encapsulated protocol).
    Select {
        cond: Box<Test>,
        then: Box<V>,
        other: Box<V>,
    },
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
    fn add(self, k: u32) -> V {
        V::Alu(ArithOp::Add, Box::new(self), Box::new(V::K(k)))
    }
    fn plus(self, other: V) -> V {
        V::Alu(ArithOp::Add, Box::new(self), Box::new(other))
    }
    /// An upper bound of the value that the kernel verifier's range tracking also finds (only
    /// loads, constants, `&`, `|`, `+` and constant shifts, without 32-bit wrap-around).
    pub fn verifier_bound(&self) -> Option<u64> {
        let b = match self {
            V::K(k) => *k as u64,
            V::Load { size, .. } => (1u64 << (8 * *size as u32)) - 1,
            V::Alu(ArithOp::And, a, b) => match (a.verifier_bound(), b.verifier_bound()) {
                (Some(x), Some(y)) => x.min(y),
                (Some(x), None) | (None, Some(x)) => x,
                (None, None) => return None,
            },
            V::Alu(ArithOp::Or, a, b) => {
                let m = a.verifier_bound()?.max(b.verifier_bound()?);
                m.checked_next_power_of_two()?.saturating_mul(2) - 1
            }
            V::Alu(ArithOp::Add, a, b) => a.verifier_bound()? + b.verifier_bound()?,
            V::Alu(ArithOp::Lsh, a, b) => match **b {
                V::K(s) if s < 32 => a.verifier_bound()? << s,
                _ => return None,
            },
            V::Alu(ArithOp::Rsh, a, b) => match **b {
                // `w0 >>= s` (the verifier shifts the bound too); past 31, `w0 = 0`
                V::K(s) if s < 32 => a.verifier_bound()? >> s,
                V::K(_) => 0,
                _ => return None,
            },
            V::Alu(ArithOp::Mul, a, b) => match **b {
                V::K(m) => a.verifier_bound()?.checked_mul(m as u64)?,
                _ => return None,
            },
            V::Select { then, other, .. } => then.verifier_bound()?.max(other.verifier_bound()?),
            _ => return None,
        };
        (b <= u32::MAX as u64).then_some(b)
    }

    /// How many low bits of the value are known to be zero, as the verifier's
    /// `tnum` tracking of the code `emit` writes for it also knows them: constants,
    /// `&`, `|`, `+` and shifts left by constants. Lets a window load at a variable
    /// offset be proven aligned.
    pub fn known_zero_bits(&self) -> u32 {
        // (only with a constant operand: `emit` spills one of two computed operands
        // to the stack, and we don't lean on the verifier tracking it there)
        let z = match self {
            V::K(k) => k.trailing_zeros(),
            V::Alu(op, a, b) => match (op, &**b) {
                (ArithOp::And, V::K(m)) => a.known_zero_bits().max(m.trailing_zeros()),
                (ArithOp::Or | ArithOp::Add, V::K(m)) => {
                    a.known_zero_bits().min(m.trailing_zeros())
                }
                (ArithOp::Lsh, V::K(s)) if *s < 32 => a.known_zero_bits() + s,
                _ => 0,
            },
            _ => 0,
        };
        z.min(32)
    }

    pub fn has_load(&self) -> bool {
        match self {
            V::K(_) | V::Len | V::PktType | V::Ifindex => false,
            V::Load { .. } | V::Select { .. } => true,
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
    Protochain { v6: bool, nl: u32, proto: u32 },
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
const ET_DN: u32 = 0x6003;
const ET_LAT: u32 = 0x6004;
const ET_SCA: u32 = 0x6007;
const ET_MOPDL: u32 = 0x6001;
const ET_MOPRC: u32 = 0x6002;
const ET_NS: u32 = 0x0600;
const ET_TEB: u32 = 0x6558;
const LLCSAP_IP: u32 = 0x06;
const LLCSAP_8021D: u32 = 0x42;
const LLCSAP_IPX: u32 = 0xe0;
const LLCSAP_NETBEUI: u32 = 0xf0;
const LLCSAP_ISONS: u32 = 0xfe;
const ISO8473_CLNP: u32 = 0x81;
const ISO9542_ESIS: u32 = 0x82;
const ISO10589_ISIS: u32 = 0x83;
const ISIS_L1_LAN_IIH: u32 = 15;
const ISIS_L2_LAN_IIH: u32 = 16;
const ISIS_PTP_IIH: u32 = 17;
const ISIS_L1_LSP: u32 = 18;
const ISIS_L2_LSP: u32 = 20;
const ISIS_L1_CSNP: u32 = 24;
const ISIS_L2_CSNP: u32 = 25;
const ISIS_L1_PSNP: u32 = 26;
const ISIS_L2_PSNP: u32 = 27;
/// Linux cooked captures: the protocol field's values for 802.3 and 802.2 frames, and
/// the packet type of outgoing packets.
const SLL_P_802_3: u32 = 0x0001;
const SLL_P_802_2: u32 = 0x0004;
/// `PACKET_OUTGOING`: the packet type of outbound packets, in cooked headers and skbs.
const SLL_OUTGOING: u32 = 4;
const GENEVE_PORT: u16 = 6081;

/// The link layer libpcap's code generator is looking at (`cstate->linktype`): the
/// capture's, then PPP after `pppoes`, Ethernet after `geneve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Ether,
    Raw,
    Sll,
    Sll2,
    Ppp,
}

/// An absolute offset: `var` (a value computed from the packet, after `geneve`) plus `k`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Off {
    var: Option<V>,
    k: u32,
}

impl Off {
    fn at(k: u32) -> Off {
        Off { var: None, k }
    }
    /// The big-endian load of `size` bytes `off` bytes past this offset.
    fn load(&self, off: u32, size: u8) -> V {
        V::Load {
            idx: self.var.clone().map(Box::new),
            k: self.k.wrapping_add(off),
            size,
        }
    }
    /// The load at this offset plus a computed index `i` plus `off`.
    fn load_indexed(&self, i: V, off: u32, size: u8) -> V {
        let idx = match &self.var {
            Some(v) => i.plus(v.clone()),
            None => i,
        };
        V::Load {
            idx: Some(Box::new(idx)),
            k: self.k.wrapping_add(off),
            size,
        }
    }
    /// The offset as a value (variable part plus constant).
    fn value(&self) -> V {
        match &self.var {
            Some(v) if self.k == 0 => v.clone(),
            Some(v) => v.clone().add(self.k),
            None => V::K(self.k),
        }
    }
}

/// libpcap's compiler state that primitives read and `vlan`/`mpls`/`pppoes`/`geneve`
/// change.
pub struct Lowering {
    cur: Link,
    netmask: Option<u32>,
    /// Whether the packet's direction (`pkt_type`) is known on Ethernet and raw IP.
    direction_known: bool,
    /// Whether the packet's interface (`ifindex`) is known on Ethernet and raw IP.
    ifindex_known: bool,
    off_linkhdr: Off,
    off_linktype: Option<Off>,
    off_linkpl: Off,
    off_nl: u32,
    off_nl_nosnap: u32,
    vlan_depth: u32,
    mpls_depth: u32,
    /// After `geneve` (and before the next link-layer push).
    is_geneve: bool,
    /// libpcap turns its optimizer off for `protochain` and `geneve`.
    pub no_optimize: bool,
}

type R<T> = Result<T, CompileError>;

impl Lowering {
    pub fn new(link: LinkType, netmask: Option<u32>) -> Self {
        let (cur, lt, pl, nosnap) = match link {
            LinkType::Ethernet => (Link::Ether, Some(12), 14, 3),
            LinkType::RawIp => (Link::Raw, None, 0, 0),
            LinkType::LinuxSll => (Link::Sll, Some(14), 16, 0),
            LinkType::LinuxSll2 => (Link::Sll2, Some(0), 20, 0),
        };
        Lowering {
            cur,
            netmask,
            direction_known: false,
            ifindex_known: false,
            off_linkhdr: Off::at(0),
            off_linktype: lt.map(Off::at),
            off_linkpl: Off::at(pl),
            off_nl: 0,
            off_nl_nosnap: nosnap,
            vlan_depth: 0,
            mpls_depth: 0,
            is_geneve: false,
            no_optimize: false,
        }
    }

    fn unsupported(&self, what: impl Into<String>) -> CompileError {
        CompileError::Unsupported {
            what: what.into(),
            link: self.cur_name(),
        }
    }

    /// The name of the link type the generator is looking at.
    /// With the packet's direction known from the kernel's metadata (live packets), so
    /// that `inbound`/`outbound` compile on Ethernet and raw IP as libpcap's do on a live
    /// Linux handle.
    pub fn with_direction(mut self, known: bool) -> Self {
        self.direction_known = known;
        self
    }

    /// With the packet's interface known from the kernel's metadata (live packets), so
    /// that `ifindex N` compiles on Ethernet and raw IP as libpcap's does on a live
    /// Linux handle.
    pub fn with_ifindex(mut self, known: bool) -> Self {
        self.ifindex_known = known;
        self
    }

    fn cur_name(&self) -> &'static str {
        match self.cur {
            Link::Ether => LinkType::Ethernet.name(),
            Link::Raw => LinkType::RawIp.name(),
            Link::Sll => LinkType::LinuxSll.name(),
            Link::Sll2 => LinkType::LinuxSll2.name(),
            Link::Ppp => "PPP",
        }
    }

    // --- offsets (gen_load_a) ---

    /// OR_LINKPL: the network layer.
    fn linkpl(&self, off: u32, size: u8) -> V {
        self.off_linkpl.load(self.off_nl.wrapping_add(off), size)
    }
    /// OR_LINKPL_NOSNAP: the network layer of 802.2 frames without SNAP.
    fn nosnap(&self, off: u32, size: u8) -> V {
        self.off_linkpl
            .load(self.off_nl_nosnap.wrapping_add(off), size)
    }
    /// OR_LLC: the link-layer payload.
    fn llc(&self, off: u32, size: u8) -> V {
        self.off_linkpl.load(off, size)
    }
    /// OR_LINKHDR: the link-layer header.
    fn linkhdr(&self, off: u32, size: u8) -> V {
        self.off_linkhdr.load(off, size)
    }
    fn linktype_off(&self) -> R<&Off> {
        self.off_linktype
            .as_ref()
            .ok_or_else(|| self.unsupported("link-layer type test"))
    }
    fn cmp_linktype(&self, off: u32, size: u8, v: u32) -> R<B> {
        Ok(test(self.linktype_off()?.load(off, size), TestOp::Eq, v))
    }
    fn linktype_gt_mtu(&self) -> R<B> {
        Ok(test(self.linktype_off()?.load(0, 2), TestOp::Gt, ETHERMTU))
    }
    fn mcmp(at: V, v: u32, mask: u32) -> B {
        test(at.and(mask), TestOp::Eq, v)
    }
    fn cmp(at: V, v: u32) -> B {
        test(at, TestOp::Eq, v)
    }
    /// gen_loadx_iphdrlen: the IPv4 header length plus the variable part of the
    /// network layer's offset.
    fn iphl(&self) -> V {
        let b = self.linkpl(0, 1);
        let hl = V::Alu(
            ArithOp::Lsh,
            Box::new(V::Alu(ArithOp::And, Box::new(b), Box::new(V::K(0xf)))),
            Box::new(V::K(2)),
        );
        match &self.off_linkpl.var {
            Some(v) => hl.plus(v.clone()),
            None => hl,
        }
    }
    /// OR_TRAN_IPV4: past the IPv4 header (whose length the index holds).
    fn tran4(&self, off: u32, size: u8) -> V {
        V::Load {
            idx: Some(Box::new(self.iphl())),
            k: self
                .off_linkpl
                .k
                .wrapping_add(self.off_nl)
                .wrapping_add(off),
            size,
        }
    }
    /// OR_TRAN_IPV6: past the fixed IPv6 header.
    fn tran6(&self, off: u32, size: u8) -> V {
        self.linkpl(40 + off, size)
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
        self.bcmp(&self.off_linkpl, 0, &b)
    }

    /// gen_bcmp: compare bytes at `base + at`, last word first.
    fn bcmp(&self, base: &Off, at: u32, v: &[u8]) -> B {
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
            push(Self::cmp(base.load(at + size as u32 - 4, 4), k), &mut out);
            size -= 4;
        }
        while size >= 2 {
            let p = &v[size - 2..size];
            let k = u16::from_be_bytes([p[0], p[1]]) as u32;
            push(Self::cmp(base.load(at + size as u32 - 2, 2), k), &mut out);
            size -= 2;
        }
        if size > 0 {
            push(Self::cmp(base.load(at, 1), v[0] as u32), &mut out);
        }
        out.unwrap_or(B::Const(true))
    }

    /// gen_linktype.
    fn linktype(&self, proto: u32) -> R<B> {
        if self.mpls_depth > 0 {
            let bos = Self::mcmp(self.linkpl(0u32.wrapping_sub(2), 1), 1, 1);
            return match proto {
                ET_IP => Ok(and(bos, Self::mcmp(self.linkpl(0, 1), 0x40, 0xf0))),
                ET_IPV6 => Ok(and(bos, Self::mcmp(self.linkpl(0, 1), 0x60, 0xf0))),
                _ => Err(CompileError::Invalid(
                    "unsupported protocol over mpls".into(),
                )),
            };
        }
        match self.cur {
            Link::Ppp => {
                let p = match proto {
                    ET_IP => 0x0021,
                    ET_IPV6 => 0x0057,
                    ET_DN => 0x0027,
                    ET_ATALK => 0x0029,
                    ET_NS => 0x0025,
                    LLCSAP_ISONS => 0x0023,
                    LLCSAP_8021D => 0x0201,
                    LLCSAP_IPX => 0x002b,
                    p => p,
                };
                self.cmp_linktype(0, 2, p)
            }
            Link::Raw => Ok(match proto {
                ET_IP => Self::mcmp(self.linkhdr(0, 1), 0x40, 0xf0),
                ET_IPV6 => Self::mcmp(self.linkhdr(0, 1), 0x60, 0xf0),
                _ => B::Const(false),
            }),
            Link::Ether => self.ether_linktype(proto),
            Link::Sll => self.sll_linktype(proto),
            Link::Sll2 => self.cmp_linktype(0, 2, proto),
        }
    }

    fn ether_linktype(&self, p: u32) -> R<B> {
        let le_mtu = || -> R<B> { Ok(not(self.linktype_gt_mtu()?)) };
        Ok(match p {
            LLCSAP_ISONS | LLCSAP_IP | LLCSAP_NETBEUI => {
                and(le_mtu()?, Self::cmp(self.llc(0, 2), (p << 8) | p))
            }
            LLCSAP_IPX => {
                let b1 = or(
                    Self::cmp(self.llc(0, 1), LLCSAP_IPX),
                    Self::cmp(self.llc(0, 2), 0xffff),
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

    /// gen_linux_sll_linktype: 802.2 frames carry the protocol 4, Novell 802.3 ones 1.
    fn sll_linktype(&self, p: u32) -> R<B> {
        let lt = |v: u32| self.cmp_linktype(0, 2, v);
        Ok(match p {
            LLCSAP_ISONS | LLCSAP_IP | LLCSAP_NETBEUI => {
                and(lt(SLL_P_802_2)?, Self::cmp(self.llc(0, 2), (p << 8) | p))
            }
            LLCSAP_IPX => {
                let b1 = or(Self::cmp(self.llc(0, 1), LLCSAP_IPX), self.snap(0, ET_IPX));
                let b1 = and(lt(SLL_P_802_2)?, b1);
                let b1 = or(lt(SLL_P_802_3)?, b1);
                or(lt(ET_IPX)?, b1)
            }
            ET_ATALK | ET_AARP => {
                let s = if p == ET_ATALK {
                    self.snap(0x080007, ET_ATALK)
                } else {
                    self.snap(0, ET_AARP)
                };
                or(lt(p)?, and(lt(SLL_P_802_2)?, s))
            }
            p if p <= ETHERMTU => and(
                lt(SLL_P_802_2)?,
                Self::cmp(self.linkhdr(self.off_linkpl.k, 1), p),
            ),
            p => lt(p)?,
        })
    }

    /// The one test that tells IPv4 from IPv6 where `linktype(IP)` or
    /// `linktype(IPv6)` held (the last test of `linktype(IP)`).
    fn is_ipv4(&self) -> R<Test> {
        fn last(b: B) -> Option<Test> {
            match b {
                B::Test(t) => Some(t),
                B::And(_, y) => last(*y),
                _ => None,
            }
        }
        last(self.linktype(ET_IP)?)
            .ok_or_else(|| CompileError::Invalid("no IPv4 test on this link type".into()))
    }

    /// The link layer must be Ethernet (libpcap's ethernet-only primitives).
    fn require_ether(&self, what: &str) -> R<()> {
        if self.cur != Link::Ether {
            return Err(self.unsupported(what));
        }
        Ok(())
    }

    /// gen_prevlinkhdr_check: after `geneve`, Ethernet primitives need an inner
    /// Ethernet header (the link header and payload offsets differ).
    fn prevlinkhdr_check(&self, b: B) -> B {
        if !self.is_geneve {
            return b;
        }
        let same = B::Test(Test {
            a: self.off_linkhdr.value(),
            op: TestOp::Eq,
            b: self.off_linkpl.value(),
        });
        and(not(same), b)
    }

    /// gen_proto_abbrev for protocol keywords.
    fn proto_abbrev(&mut self, p: Proto) -> R<B> {
        use Proto::*;
        let isis = |s: &mut Self, types: &[u32]| -> R<B> {
            let mut acc: Option<B> = None;
            for (i, &t) in types.iter().enumerate() {
                let b = s.gen_proto(t, Some(Isis))?;
                acc = Some(match acc {
                    None => b,
                    // libpcap ors the first two, then puts each next one in front
                    Some(prev) if i == 1 => or(prev, b),
                    Some(prev) => or(b, prev),
                });
            }
            Ok(acc.unwrap_or(B::Const(false)))
        };
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
            Atalk => self.linktype(ET_ATALK),
            Aarp => self.linktype(ET_AARP),
            Decnet => self.linktype(ET_DN),
            Sca => self.linktype(ET_SCA),
            Lat => self.linktype(ET_LAT),
            Mopdl => self.linktype(ET_MOPDL),
            Moprc => self.linktype(ET_MOPRC),
            Iso => self.linktype(LLCSAP_ISONS),
            Esis => self.gen_proto(ISO9542_ESIS, Some(Iso)),
            Isis => self.gen_proto(ISO10589_ISIS, Some(Iso)),
            Clnp => self.gen_proto(ISO8473_CLNP, Some(Iso)),
            IsisL1 => isis(
                self,
                &[
                    ISIS_L1_LAN_IIH,
                    ISIS_PTP_IIH,
                    ISIS_L1_LSP,
                    ISIS_L1_CSNP,
                    ISIS_L1_PSNP,
                ],
            ),
            IsisL2 => isis(
                self,
                &[
                    ISIS_L2_LAN_IIH,
                    ISIS_PTP_IIH,
                    ISIS_L2_LSP,
                    ISIS_L2_CSNP,
                    ISIS_L2_PSNP,
                ],
            ),
            IsisIih => isis(self, &[ISIS_L1_LAN_IIH, ISIS_L2_LAN_IIH, ISIS_PTP_IIH]),
            IsisLsp => isis(self, &[ISIS_L1_LSP, ISIS_L2_LSP]),
            IsisSnp => isis(
                self,
                &[ISIS_L1_CSNP, ISIS_L2_CSNP, ISIS_L1_PSNP, ISIS_L2_PSNP],
            ),
            IsisCsnp => isis(self, &[ISIS_L1_CSNP, ISIS_L2_CSNP]),
            IsisPsnp => isis(self, &[ISIS_L1_PSNP, ISIS_L2_PSNP]),
            Stp => self.linktype(LLCSAP_8021D),
            Ipx => self.linktype(LLCSAP_IPX),
            Netbeui => self.linktype(LLCSAP_NETBEUI),
            Ether => Err(CompileError::Invalid(
                "link layer applied in wrong context".into(),
            )),
        }
    }

    /// gen_proto: `[ip|ip6] proto N`, `iso proto N`, `isis proto N`.
    fn gen_proto(&mut self, v: u32, under: Option<Proto>) -> R<B> {
        match under {
            None => {
                let a = self.gen_proto(v, Some(Proto::Ip))?;
                let b = self.gen_proto(v, Some(Proto::Ip6))?;
                Ok(or(a, b))
            }
            Some(Proto::Ip) => Ok(and(self.linktype(ET_IP)?, Self::cmp(self.linkpl(9, 1), v))),
            Some(Proto::Ip6) => {
                let lt = self.linktype(ET_IPV6)?;
                let frag = and(
                    Self::cmp(self.linkpl(6, 1), 44),
                    Self::cmp(self.linkpl(40, 1), v),
                );
                Ok(and(lt, or(Self::cmp(self.linkpl(6, 1), v), frag)))
            }
            Some(Proto::Iso) => Ok(and(
                self.linktype(LLCSAP_ISONS)?,
                Self::cmp(self.nosnap(0, 1), v),
            )),
            Some(Proto::Isis) => {
                let b0 = self.gen_proto(ISO10589_ISIS, Some(Proto::Iso))?;
                Ok(and(b0, Self::cmp(self.nosnap(4, 1), v)))
            }
            Some(p) => Err(CompileError::Invalid(format!(
                "'{}' proto is not supported by this compiler",
                p.keyword()
            ))),
        }
    }

    fn ipfrag(&self) -> B {
        not(test(self.linkpl(6, 2), TestOp::Set, 0x1fff))
    }

    fn hostop(&self, addr: u32, mask: u32, dir: Dir, et: u32, src: u32, dst: u32) -> R<B> {
        match dir {
            Dir::Src | Dir::Dst => {
                let off = if dir == Dir::Src { src } else { dst };
                let lt = self.linktype(et)?;
                Ok(and(lt, Self::mcmp(self.linkpl(off, 4), addr, mask)))
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
                    words[i] = u32::from_be_bytes([
                        addr[4 * i],
                        addr[4 * i + 1],
                        addr[4 * i + 2],
                        addr[4 * i + 3],
                    ]);
                    let bits = pfx.saturating_sub(32 * i as u32).min(32);
                    masks[i] = if bits == 0 {
                        0
                    } else {
                        u32::MAX << (32 - bits)
                    };
                }
                let mut b = Self::mcmp(self.linkpl(off + 12, 4), words[3], masks[3]);
                for i in (0..3).rev() {
                    b = and(
                        Self::mcmp(self.linkpl(off + 4 * i as u32, 4), words[i], masks[i]),
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

    /// gen_ehostop (with the inner-Ethernet check after `geneve`).
    fn ehost(&self, mac: &[u8; 6], dir: Dir) -> R<B> {
        self.require_ether("ethernet addresses")?;
        Ok(self.prevlinkhdr_check(self.ehostop(mac, dir)))
    }

    fn ehostop(&self, mac: &[u8; 6], dir: Dir) -> B {
        let hdr = &self.off_linkhdr;
        match dir {
            Dir::Src => self.bcmp(hdr, 6, mac),
            Dir::Dst => self.bcmp(hdr, 0, mac),
            Dir::SrcAndDst => and(self.ehostop(mac, Dir::Src), self.ehostop(mac, Dir::Dst)),
            Dir::SrcOrDst => or(self.ehostop(mac, Dir::Src), self.ehostop(mac, Dir::Dst)),
        }
    }

    /// gen_dnhostop: a DECnet address behind the short or long route header, with or
    /// without the pad byte. The address is little-endian on the wire; libpcap
    /// compares it with `ntohs(addr)`, which swaps on the little-endian hosts pwru
    /// runs on.
    fn dnhost(&self, addr: u16, dir: Dir) -> R<B> {
        let (sh, lh) = match dir {
            Dir::Dst => (1, 7),
            Dir::Src => (3, 15),
            Dir::SrcAndDst => {
                return Ok(and(
                    self.dnhost(addr, Dir::Src)?,
                    self.dnhost(addr, Dir::Dst)?,
                ))
            }
            Dir::SrcOrDst => {
                return Ok(or(
                    self.dnhost(addr, Dir::Src)?,
                    self.dnhost(addr, Dir::Dst)?,
                ))
            }
        };
        let a = addr.swap_bytes() as u32;
        let b0 = self.linktype(ET_DN)?;
        // pad = 1, long header
        let b1 = and(
            Self::mcmp(self.linkpl(2, 2), 0x8106, 0xff07),
            Self::cmp(self.linkpl(2 + 1 + lh, 2), a),
        );
        // pad = 0, long header
        let b2 = and(
            Self::mcmp(self.linkpl(2, 1), 0x06, 0x07),
            Self::cmp(self.linkpl(2 + lh, 2), a),
        );
        let b1 = or(b2, b1);
        // pad = 1, short header
        let b2 = and(
            Self::mcmp(self.linkpl(2, 2), 0x8102, 0xff07),
            Self::cmp(self.linkpl(2 + 1 + sh, 2), a),
        );
        let b1 = or(b2, b1);
        // pad = 0, short header
        let b2 = and(
            Self::mcmp(self.linkpl(2, 1), 0x02, 0x07),
            Self::cmp(self.linkpl(2 + sh, 2), a),
        );
        let b1 = or(b2, b1);
        Ok(and(b0, b1))
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
            and(Self::cmp(self.linkpl(6, 1), ipp), b1)
        } else {
            and(and(Self::cmp(self.linkpl(9, 1), ipp), self.ipfrag()), b1)
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
        if self.cur != Link::Ether {
            return Err(self.unsupported("'llc'"));
        }
        Ok(and(
            not(self.linktype_gt_mtu()?),
            not(Self::cmp(self.llc(0, 2), 0xffff)),
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
            Prim::EtherHost { dir, mac } => self.ehost(mac, *dir),
            Prim::DecnetHost { dir, addr } => self.dnhost(*addr, *dir),
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
            Prim::IpProto { under, proto } => self.gen_proto(*proto, *under),
            Prim::Protochain { under, proto } => self.protochain(*proto, *under),
            Prim::EtherProto(p) => self.linktype(*p),
            Prim::Broadcast(p) => match p {
                Proto::Ether => {
                    self.require_ether("'broadcast' (not a broadcast link)")?;
                    Ok(self.prevlinkhdr_check(self.ehostop(&[0xff; 6], Dir::Dst)))
                }
                Proto::Ip => {
                    let nm = self.netmask.ok_or_else(|| {
                        CompileError::Invalid(
                            "netmask not known, so 'ip broadcast' not supported".into(),
                        )
                    })?;
                    let hm = !nm;
                    let b0 = self.linktype(ET_IP)?;
                    let b1 = Self::mcmp(self.linkpl(16, 4), 0, hm);
                    let b2 = Self::mcmp(self.linkpl(16, 4), hm, hm);
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
                    let b = test(self.linkhdr(0, 1), TestOp::Set, 1);
                    Ok(self.prevlinkhdr_check(b))
                }
                Proto::Ip => Ok(and(
                    self.linktype(ET_IP)?,
                    test(self.linkpl(16, 1), TestOp::Ge, 224),
                )),
                Proto::Ip6 => Ok(and(
                    self.linktype(ET_IPV6)?,
                    Self::cmp(self.linkpl(24, 1), 255),
                )),
                p => Err(CompileError::Invalid(format!(
                    "'{}' multicast is not supported",
                    p.keyword()
                ))),
            },
            Prim::Less(n) => Ok(not(test(V::Len, TestOp::Gt, *n))),
            Prim::Greater(n) => Ok(test(V::Len, TestOp::Ge, *n)),
            Prim::Outbound(out) => {
                let b = match self.cur {
                    Link::Sll => Self::cmp(self.linkhdr(0, 2), SLL_OUTGOING),
                    Link::Sll2 => Self::cmp(self.linkhdr(10, 1), SLL_OUTGOING),
                    Link::Ether | Link::Raw if self.direction_known => {
                        Self::cmp(V::PktType, SLL_OUTGOING)
                    }
                    // (an error, not Unsupported: the probes take Unsupported for
                    // "never matches at this start", and tracing nothing helps nobody)
                    _ => {
                        return Err(CompileError::Invalid(format!(
                            "'inbound'/'outbound' are not supported on {} packets read from a capture file: only live packets (the tracer's, from skb->pkt_type) and Linux cooked captures record the direction",
                            self.cur_name()
                        )))
                    }
                };
                Ok(if *out { b } else { not(b) })
            }
            Prim::Ifindex(i) => match self.cur {
                Link::Sll2 => Ok(Self::cmp(self.linkhdr(4, 4), *i)),
                Link::Ether | Link::Raw if self.ifindex_known => Ok(Self::cmp(V::Ifindex, *i)),
                _ => Err(CompileError::Invalid(format!(
                    "'ifindex' is not supported on {} packets read from a capture file: only live packets (the tracer's, from skb->dev) and Linux cooked v2 captures record the interface",
                    self.cur_name()
                ))),
            },
            Prim::Vlan(id) => self.vlan(*id),
            Prim::Mpls(label) => self.mpls(*label),
            Prim::Pppoed => self.linktype(ET_PPPOED),
            Prim::Pppoes(sess) => self.pppoes(*sess),
            Prim::Geneve(vni) => self.geneve(*vni),
            Prim::Vxlan(_) => Err(CompileError::Invalid(
                "'vxlan' is not part of libpcap 1.10's filter language".into(),
            )),
            Prim::Llc(l) => {
                let b0 = self.llc_check()?;
                let ctl = self.llc(2, 1);
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

    fn vlan(&mut self, id: Option<u16>) -> R<B> {
        if self.mpls_depth > 0 {
            return Err(CompileError::Invalid("no VLAN match after MPLS".into()));
        }
        if self.cur != Link::Ether {
            return Err(self.unsupported("VLAN"));
        }
        let mut b = or(
            or(self.linktype(0x8100)?, self.linktype(0x88a8)?),
            self.linktype(0x9100)?,
        );
        if let Some(id) = id {
            if id > 0x0fff {
                return Err(CompileError::Invalid(format!(
                    "VLAN tag {id} greater than maximum 4095"
                )));
            }
            b = and(b, Self::mcmp(self.linkpl(0, 2), id as u32, 0x0fff));
        }
        self.off_linkpl.k += 4;
        if let Some(lt) = self.off_linktype.as_mut() {
            lt.k += 4;
        }
        self.vlan_depth += 1;
        Ok(b)
    }

    fn mpls(&mut self, label: Option<u32>) -> R<B> {
        let mut b = if self.mpls_depth > 0 {
            Self::mcmp(self.linkpl(0u32.wrapping_sub(4).wrapping_add(2), 1), 0, 1)
        } else {
            match self.cur {
                Link::Ppp => self.cmp_linktype(0, 2, 0x0281)?,
                Link::Ether => self.linktype(ET_MPLS)?,
                _ => return Err(self.unsupported("MPLS")),
            }
        };
        if let Some(l) = label {
            if l > 0xfffff {
                return Err(CompileError::Invalid(format!(
                    "MPLS label {l} greater than maximum 1048575"
                )));
            }
            b = and(b, Self::mcmp(self.linkpl(0, 4), l << 12, 0xffff_f000));
        }
        self.off_nl_nosnap += 4;
        self.off_nl += 4;
        self.mpls_depth += 1;
        Ok(b)
    }

    fn pppoes(&mut self, sess: Option<u16>) -> R<B> {
        let mut b = self.linktype(ET_PPPOES)?;
        if let Some(s) = sess {
            b = and(b, Self::mcmp(self.linkpl(0, 4), s as u32, 0xffff));
        }
        // PUSH_LINKHDR(DLT_PPP): the PPP protocol field follows the 6-byte PPPoE header.
        let hdr = Off {
            var: self.off_linkpl.var.clone(),
            k: self.off_linkpl.k + self.off_nl + 6,
        };
        self.off_linktype = Some(hdr.clone());
        self.off_linkpl = Off {
            var: hdr.var.clone(),
            k: hdr.k + 2,
        };
        self.off_linkhdr = hdr;
        self.off_nl = 0;
        self.off_nl_nosnap = 0;
        self.cur = Link::Ppp;
        self.is_geneve = false;
        Ok(b)
    }

    /// gen_geneve: UDP to port 6081 over IPv4 or IPv6, version 0, the VNI if given;
    /// then every later offset is the encapsulated frame's. Past the 8-byte Geneve
    /// header and its options (4 * the low 6 bits of its first byte) comes an
    /// Ethernet frame when the Geneve protocol is 0x6558, else the network layer
    /// itself; the link type test reads the Geneve protocol field then.
    fn geneve(&mut self, vni: Option<u32>) -> R<B> {
        let check = |s: &Self, v6: bool| -> R<B> {
            let tran = |off: u32, size: u8| {
                if v6 {
                    s.tran6(off, size)
                } else {
                    s.tran4(off, size)
                }
            };
            let port = s.port(GENEVE_PORT, GENEVE_PORT, Some(Proto::Udp), Dir::Dst, v6)?;
            let mut b = and(port, Self::mcmp(tran(8, 1), 0, 0xc0));
            if let Some(vni) = vni {
                if vni > 0xff_ffff {
                    return Err(CompileError::Invalid(format!(
                        "Geneve VNI {vni} greater than maximum 16777215"
                    )));
                }
                b = and(b, Self::mcmp(tran(12, 4), vni << 8, 0xffff_ff00));
            }
            // libpcap then loads the Geneve protocol field (a short packet rejects)
            Ok(and(b, test(tran(10, 2), TestOp::Ge, 0)))
        };
        let b = or(check(self, false)?, check(self, true)?);
        // The Geneve header's offset: past the IPv4 header (its length, with the
        // variable part of the network offset) or the 40-byte IPv6 header.
        let v6_hdr = match &self.off_linkpl.var {
            Some(v) => V::K(40).plus(v.clone()),
            None => V::K(40),
        };
        let ip_hdr = V::Select {
            cond: Box::new(self.is_ipv4()?),
            then: Box::new(self.iphl()),
            other: Box::new(v6_hdr),
        };
        let gh = ip_hdr.add(self.off_linkpl.k + self.off_nl + 8);
        let opt_words = V::Load {
            idx: Some(Box::new(gh.clone())),
            k: 0,
            size: 1,
        }
        .and(0x3f);
        let gend = V::Alu(ArithOp::Mul, Box::new(opt_words), Box::new(V::K(4)))
            .add(8)
            .plus(gh.clone());
        let teb = Test {
            a: V::Load {
                idx: Some(Box::new(gh.clone())),
                k: 2,
                size: 2,
            },
            op: TestOp::Eq,
            b: V::K(ET_TEB),
        };
        let select = |then: V, other: V| V::Select {
            cond: Box::new(teb.clone()),
            then: Box::new(then),
            other: Box::new(other),
        };
        self.off_linktype = Some(Off {
            var: Some(select(gend.clone().add(12), gh.add(2))),
            k: 0,
        });
        self.off_linkpl = Off {
            var: Some(select(gend.clone().add(14), gend.clone())),
            k: 0,
        };
        self.off_linkhdr = Off {
            var: Some(gend),
            k: 0,
        };
        self.off_nl = 0;
        self.cur = Link::Ether;
        self.is_geneve = true;
        self.no_optimize = true;
        Ok(b)
    }

    fn protochain(&mut self, proto: u32, under: Option<Proto>) -> R<B> {
        match under {
            None => {
                let a = self.protochain(proto, Some(Proto::Ip))?;
                let b = self.protochain(proto, Some(Proto::Ip6))?;
                Ok(or(a, b))
            }
            Some(p @ (Proto::Ip | Proto::Ip6)) => {
                if self.off_linkpl.var.is_some() {
                    return Err(CompileError::Invalid(
                        "'protochain' not supported with variable length headers".into(),
                    ));
                }
                self.no_optimize = true;
                let v6 = p == Proto::Ip6;
                let lt = self.linktype(if v6 { ET_IPV6 } else { ET_IP })?;
                Ok(and(
                    lt,
                    B::Protochain {
                        v6,
                        nl: self.off_linkpl.k.wrapping_add(self.off_nl),
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
            Ether => (self.off_linkhdr.load_indexed(iv, 0, size), ib),
            Ip | Ip6 | Arp | Rarp | Atalk | Decnet | Sca | Lat | Mopdl | Moprc => {
                let v = self.off_linkpl.load_indexed(iv, self.off_nl, size);
                let b = self.proto_abbrev(proto)?;
                (v, Some(with(ib, b)))
            }
            Tcp | Udp | Sctp | Icmp | Igmp | Igrp | Pim | Vrrp | Carp => {
                let v = V::Load {
                    idx: Some(Box::new(iv.plus(self.iphl()))),
                    k: self.off_linkpl.k.wrapping_add(self.off_nl),
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
                let b = and(b, Self::cmp(self.linkpl(6, 1), 58));
                let v = self
                    .off_linkpl
                    .load_indexed(iv, self.off_nl.wrapping_add(40), size);
                (v, Some(b))
            }
            _ => {
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
