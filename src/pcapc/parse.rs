//! Parses pcap-filter expressions (libpcap 1.10's language) with the pest grammar in
//! `grammar.pest` into the typed AST, applying libpcap's qualifier inheritance and checks.

use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

use pest::iterators::Pair;
use pest::Parser as _;

use super::ast::{Arith, ArithOp, Dir, Expr, Llc, Net4, Net6, Prim, Proto, RelOp};
use super::names;

#[derive(pest_derive::Parser)]
#[grammar = "pcapc/grammar.pest"]
struct FilterGrammar;

/// Longest expression accepted, in bytes.
pub const MAX_EXPR_LEN: usize = 64 * 1024;
/// Deepest nesting of parentheses and brackets accepted.
pub const MAX_NESTING: usize = 100;
/// Most operators that nest the AST without parentheses (`not`, `!`, `-`, `%`, `^`).
pub const MAX_NESTING_OPERATORS: usize = 1000;

/// Where names come from: host names only from `hosts_file` (no DNS), Ethernet host names
/// from `ethers_file`, network names from `networks_file`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    pub hosts_file: PathBuf,
    pub ethers_file: PathBuf,
    pub networks_file: PathBuf,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            hosts_file: PathBuf::from("/etc/hosts"),
            ethers_file: PathBuf::from("/etc/ethers"),
            networks_file: PathBuf::from("/etc/networks"),
        }
    }
}

/// A rejected filter expression: what went wrong and where (1-based column, in characters).
/// `Display` gives the message, then the expression with a caret under the column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} at column {column}: {kind}\n  {expr}\n  {}^", .kind.title(), " ".repeat(.column.saturating_sub(1)))]
pub struct ParseError {
    pub expr: String,
    pub column: usize,
    pub kind: ParseErrorKind,
}

impl ParseError {
    /// The one-line message, without the caret picture.
    pub fn message(&self) -> String {
        format!(
            "{} at column {}: {}",
            self.kind.title(),
            self.column,
            self.kind
        )
    }
}

/// The kinds of parse errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The text does not fit the grammar.
    #[error("{0}")]
    Syntax(String),
    /// A valid pcap-filter keyword or form that pwru does not support.
    #[error("'{keyword}' is not supported: {reason}")]
    Unsupported { keyword: String, reason: String },
    /// A name that does not resolve (host, port, protocol ...).
    #[error("unknown {what} '{name}'{hint}")]
    UnknownName {
        what: &'static str,
        name: String,
        hint: String,
    },
    /// A well-formed expression that libpcap rejects too (bad value, wrong qualifier).
    #[error("{0}")]
    Invalid(String),
    /// Longer or deeper than we accept.
    #[error("{0}")]
    TooComplex(String),
}

impl ParseErrorKind {
    fn title(&self) -> &'static str {
        match self {
            ParseErrorKind::Syntax(_) => "syntax error",
            ParseErrorKind::Unsupported { .. } => "unsupported",
            ParseErrorKind::UnknownName { .. } => "unknown name",
            ParseErrorKind::Invalid(_) => "invalid filter",
            ParseErrorKind::TooComplex(_) => "filter too complex",
        }
    }
}

/// Parses a pcap-filter expression, resolving host names from /etc/hosts only.
/// `Ok(None)` for an empty or blank expression, which matches every packet.
pub fn parse(expr: &str) -> Result<Option<Expr>, ParseError> {
    parse_with(expr, &ParseOptions::default())
}

/// [`parse`] with explicit options (e.g. another hosts file).
pub fn parse_with(expr: &str, opts: &ParseOptions) -> Result<Option<Expr>, ParseError> {
    let cx = Cx { src: expr, opts };
    cx.check_size()?;
    let mut pairs = FilterGrammar::parse(Rule::filter, expr).map_err(|e| cx.syntax_error(e))?;
    let filter = pairs.next().expect("pest returns the filter rule");
    match filter.into_inner().find(|p| p.as_rule() == Rule::expr) {
        None => Ok(None),
        Some(e) => cx.expr(e, None).map(Some),
    }
}

type Res<T> = Result<T, ParseError>;

/// Address-type qualifier (`host`, `net`, ...); `Default` when none was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AddrQual {
    Default,
    Host,
    Net,
    Port,
    PortRange,
    Proto,
    Protochain,
    /// `gateway NAME`: a name in both the ethers and the hosts file.
    Gateway,
}

/// Qualifiers a bare value inherits (libpcap's `struct qual`); `None` stands for
/// libpcap's `qerr`: the previous term (a protocol, a relation ...) has none to give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Qual {
    proto: Option<Proto>,
    dir: Option<Dir>,
    addr: AddrQual,
}

impl Qual {
    fn dir(&self) -> Dir {
        self.dir.unwrap_or(Dir::SrcOrDst)
    }
}

/// One conversion run: the source text (for columns) and the options.
struct Cx<'a> {
    src: &'a str,
    opts: &'a ParseOptions,
}

fn boxed(e: Expr) -> Box<Expr> {
    Box::new(e)
}

fn or_all(prims: Vec<Prim>) -> Option<Expr> {
    let mut it = prims.into_iter().map(Expr::Prim);
    let first = it.next()?;
    Some(it.fold(first, |a, b| Expr::Or(boxed(a), boxed(b))))
}

fn wrap_not(mut e: Expr, count: usize) -> Expr {
    for _ in 0..count {
        e = Expr::Not(boxed(e));
    }
    e
}

impl<'a> Cx<'a> {
    fn err_at(&self, byte_pos: usize, kind: ParseErrorKind) -> ParseError {
        let pos = byte_pos.min(self.src.len());
        let column = self.src.get(..pos).map_or(pos, |s| s.chars().count()) + 1;
        ParseError {
            expr: self.src.to_string(),
            column,
            kind,
        }
    }

    fn err(&self, pair: &Pair<Rule>, kind: ParseErrorKind) -> ParseError {
        self.err_at(pair.as_span().start(), kind)
    }

    fn invalid(&self, pair: &Pair<Rule>, msg: impl Into<String>) -> ParseError {
        self.err(pair, ParseErrorKind::Invalid(msg.into()))
    }

    fn unsupported(&self, pair: &Pair<Rule>, keyword: &str, reason: &str) -> ParseError {
        self.err(
            pair,
            ParseErrorKind::Unsupported {
                keyword: keyword.to_string(),
                reason: reason.to_string(),
            },
        )
    }

    fn unknown(&self, pair: &Pair<Rule>, what: &'static str, name: &str, hint: &str) -> ParseError {
        self.err(
            pair,
            ParseErrorKind::UnknownName {
                what,
                name: name.to_string(),
                hint: hint.to_string(),
            },
        )
    }

    /// Refuses inputs that would make the recursive descent (or the AST) too deep.
    fn check_size(&self) -> Res<()> {
        if self.src.len() > MAX_EXPR_LEN {
            return Err(self.err_at(
                MAX_EXPR_LEN,
                ParseErrorKind::TooComplex(format!("expression longer than {MAX_EXPR_LEN} bytes")),
            ));
        }
        let mut depth = 0usize;
        let mut operators = self.src.matches("not").count();
        for (i, c) in self.src.char_indices() {
            match c {
                '(' | '[' => depth += 1,
                ')' | ']' => depth = depth.saturating_sub(1),
                '-' | '!' | '%' | '^' => operators += 1,
                _ => {}
            }
            if depth > MAX_NESTING {
                return Err(self.err_at(
                    i,
                    ParseErrorKind::TooComplex(format!(
                        "parentheses and brackets nested deeper than {MAX_NESTING}"
                    )),
                ));
            }
            if operators > MAX_NESTING_OPERATORS {
                return Err(self.err_at(
                    i,
                    ParseErrorKind::TooComplex(format!(
                        "more than {MAX_NESTING_OPERATORS} of 'not', '!', '-', '%', '^'"
                    )),
                ));
            }
        }
        Ok(())
    }

    fn syntax_error(&self, e: pest::error::Error<Rule>) -> ParseError {
        let pos = match e.location {
            pest::error::InputLocation::Pos(p) => p,
            pest::error::InputLocation::Span((s, _)) => s,
        };
        let mut expected: Vec<&'static str> = Vec::new();
        if let pest::error::ErrorVariant::ParsingError { positives, .. } = &e.variant {
            for r in positives {
                let name = rule_description(*r);
                if !expected.contains(&name) {
                    expected.push(name);
                }
            }
        }
        let rest = &self.src[pos.min(self.src.len())..];
        let found: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace())
            .take(24)
            .collect();
        let found = if found.is_empty() {
            if rest.is_empty() {
                "unexpected end of expression".to_string()
            } else {
                "unexpected character".to_string()
            }
        } else {
            format!("unexpected '{found}'")
        };
        let hint = match found.as_str() {
            "unexpected 'vxlan'" | "unexpected 'batadv'" => " (not a keyword in libpcap 1.10)",
            _ => "",
        };
        let found = format!("{found}{hint}");
        let mut msg = match expected.len() {
            0 => found,
            1 => format!("{found}, expected {}", expected[0]),
            n => format!(
                "{found}, expected {} or {}",
                expected[..n - 1].join(", "),
                expected[n - 1]
            ),
        };
        // A typo of a keyword: the word here, or the one before (taken for a host name).
        let here: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
        let before = self.src[..pos.min(self.src.len())]
            .split_whitespace()
            .next_back()
            .unwrap_or("");
        if let Some((word, typo)) = [here.as_str(), before]
            .into_iter()
            .find_map(|w| suggest::keyword_hint(w).map(|h| (w, h)))
        {
            msg.push_str(&format!(" ('{word}': {typo})"));
        }
        self.err_at(pos, ParseErrorKind::Syntax(msg))
    }

    // ---- boolean structure and qualifier inheritance ----

    /// `expr`: terms and bare values joined by `and`/`or`, left to right, equal precedence.
    /// `incoming` is the qualifier that a leading parenthesis would pass on.
    fn expr(&self, pair: Pair<Rule>, incoming: Option<Qual>) -> Res<Expr> {
        let mut it = pair.into_inner();
        let first = it.next().expect("expr starts with a term");
        let (mut acc, mut last_q) = self.term(first, incoming)?;
        while let Some(op) = it.next() {
            let rhs_pair = it.next().expect("operator is followed by an operand");
            let rhs = match rhs_pair.as_rule() {
                Rule::term => {
                    let (e, q) = self.term(rhs_pair, last_q)?;
                    last_q = q;
                    e
                }
                _ => self.id(rhs_pair, last_q)?,
            };
            acc = combine(&op, acc, rhs);
        }
        Ok(acc)
    }

    /// `term`: `not* rterm`; returns the qualifier the next bare value inherits.
    fn term(&self, pair: Pair<Rule>, incoming: Option<Qual>) -> Res<(Expr, Option<Qual>)> {
        let mut nots = 0;
        let mut result = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::not_op => nots += 1,
                Rule::relation => result = Some((self.relation(p)?, None)),
                Rule::qualified => {
                    let mut inner = p.into_inner();
                    let q = self.head(inner.next().expect("head"))?;
                    let e = self.id(inner.next().expect("id"), Some(q))?;
                    result = Some((e, Some(q)));
                }
                Rule::paren_expr => {
                    let inner = p.into_inner().next().expect("expr in parentheses");
                    result = Some((self.expr(inner, incoming)?, incoming));
                }
                Rule::other => result = Some((self.other(p)?, None)),
                Rule::pname => result = Some((self.bare_proto(&p)?, None)),
                r => unreachable!("term child {r:?}"),
            }
        }
        let (e, q) = result.expect("term has a body");
        Ok((wrap_not(e, nots), q))
    }

    fn head(&self, pair: Pair<Rule>) -> Res<Qual> {
        let mut q = Qual {
            proto: None,
            dir: None,
            addr: AddrQual::Default,
        };
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::pname => q.proto = Some(self.proto(&p)?),
                Rule::dqual => q.dir = Some(self.dqual(p)?),
                Rule::aqual => {
                    let kw = p.into_inner().next().expect("aqual keyword");
                    q.addr = match kw.as_rule() {
                        Rule::kw_host => AddrQual::Host,
                        Rule::kw_net => AddrQual::Net,
                        Rule::kw_port => AddrQual::Port,
                        _ => AddrQual::PortRange,
                    };
                }
                Rule::kw_proto => q.addr = AddrQual::Proto,
                Rule::kw_protochain => q.addr = AddrQual::Protochain,
                Rule::kw_gateway => q.addr = AddrQual::Gateway,
                r => unreachable!("head child {r:?}"),
            }
        }
        Ok(q)
    }

    fn dqual(&self, pair: Pair<Rule>) -> Res<Dir> {
        let p = pair.into_inner().next().expect("dqual child");
        Ok(match p.as_rule() {
            Rule::kw_src => Dir::Src,
            Rule::kw_dst => Dir::Dst,
            Rule::dir_src_or_dst => Dir::SrcOrDst,
            Rule::dir_src_and_dst => Dir::SrcAndDst,
            _ => {
                return Err(self.unsupported(
                    &p,
                    p.as_str(),
                    "802.11 address qualifiers need 802.11 frames; pwru sees Ethernet or IP",
                ))
            }
        })
    }

    /// `id`: `not* atom`, resolved with the inherited qualifier.
    fn id(&self, pair: Pair<Rule>, q: Option<Qual>) -> Res<Expr> {
        let mut nots = 0;
        let mut result = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::not_op => nots += 1,
                _ => result = Some(self.id_atom(p, q)?),
            }
        }
        Ok(wrap_not(result.expect("id has a value"), nots))
    }

    fn id_atom(&self, p: Pair<Rule>, q: Option<Qual>) -> Res<Expr> {
        match p.as_rule() {
            Rule::paren_pid => self.pid(p.into_inner().next().expect("pid"), q),
            _ => {
                let Some(q) = q else {
                    let word = p.as_str();
                    let typo = suggest::keyword_hint(word)
                        .map(|h| format!("; {h}"))
                        .unwrap_or_default();
                    return Err(self.err(
                        &p,
                        ParseErrorKind::Syntax(format!(
                            "'{word}' has no qualifier to inherit (write e.g. 'host {word}' or 'port {word}'){typo}"
                        )),
                    ));
                };
                self.value(p, q)
            }
        }
    }

    /// `( value op value ... )`: every value inherits the same qualifier.
    fn pid(&self, pair: Pair<Rule>, q: Option<Qual>) -> Res<Expr> {
        let mut it = pair.into_inner();
        let first = it.next().expect("pid_first");
        let mut nots = 0;
        let mut acc = None;
        for p in first.into_inner() {
            match p.as_rule() {
                Rule::not_op => nots += 1,
                _ => acc = Some(self.id_atom(p, q)?),
            }
        }
        let mut acc = wrap_not(acc.expect("pid_first value"), nots);
        while let Some(op) = it.next() {
            let rhs = self.id(it.next().expect("pid operand"), q)?;
            acc = combine(&op, acc, rhs);
        }
        Ok(acc)
    }

    // ---- values under qualifiers ----

    fn value(&self, p: Pair<Rule>, q: Qual) -> Res<Expr> {
        match p.as_rule() {
            Rule::pnum => {
                let v = self.pnum(p.clone())?;
                self.number_value(&p, v, q)
            }
            Rule::v4_addr => {
                self.reject_addr_on_port(&p, q, "IP address")?;
                if q.proto == Some(Proto::Decnet) {
                    return Ok(Expr::Prim(Prim::DecnetHost {
                        dir: q.dir(),
                        addr: self.decnet_addr(&p)?,
                    }));
                }
                let (addr, mask) = self.dotted(&p)?;
                self.host4(&p, q, addr, mask).map(Expr::Prim)
            }
            Rule::v4_prefix | Rule::v4_mask => self.v4_network(p, q),
            Rule::v6_addr => {
                if let Some(mac) = parse_colon_mac(p.as_str()) {
                    return self.ether_value(&p, q, mac);
                }
                self.reject_addr_on_port(&p, q, "IP address")?;
                let addr = self.v6(&p)?;
                self.host6(&p, q, addr, 128).map(Expr::Prim)
            }
            Rule::v6_prefix => {
                self.reject_addr_on_port(&p, q, "IP address and prefix length")?;
                let mut inner = p.clone().into_inner();
                let a = inner.next().expect("v6 address");
                let len_pair = inner.next().expect("prefix length");
                let addr = self.v6(&a)?;
                let len = self.num(&len_pair)?;
                if len > 128 {
                    return Err(self.invalid(&len_pair, "mask length must be <= 128"));
                }
                let len = len as u8;
                let bits = u128::from_be_bytes(addr);
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                if bits & !mask != 0 {
                    return Err(self.invalid(
                        &p,
                        format!(
                            "non-network bits set in \"{}\"",
                            p.as_str().replace(' ', "")
                        ),
                    ));
                }
                self.host6(&p, q, addr, len).map(Expr::Prim)
            }
            Rule::mac_addr => {
                let mac = parse_mac(p.as_str()).expect("grammar only accepts MAC shapes");
                self.ether_value(&p, q, mac)
            }
            Rule::arcnet_addr => Err(self.unsupported(
                &p,
                p.as_str(),
                "ARCnet addresses need ARCnet frames; pwru sees Ethernet or IP",
            )),
            Rule::escaped_name => self.name_value(&p, &p.as_str()[1..], q),
            Rule::name => self.name_value(&p, p.as_str(), q),
            r => unreachable!("value {r:?}"),
        }
    }

    fn reject_addr_on_port(&self, p: &Pair<Rule>, q: Qual, what: &str) -> Res<()> {
        let kw = match q.addr {
            AddrQual::Port => "port",
            AddrQual::PortRange => "portrange",
            AddrQual::Proto => "proto",
            AddrQual::Protochain => "protochain",
            _ => return Ok(()),
        };
        Err(self.invalid(p, format!("'{kw}' modifier applied to {what}")))
    }

    /// `AREA.NODE` as libpcap's `__pcap_atodn` reads it (`%d.%d`, the rest ignored):
    /// `(area << 10) & 0xfc00 | node & 0x3ff`.
    fn decnet_addr(&self, p: &Pair<Rule>) -> Res<u16> {
        let s = p.as_str();
        let mut parts = s.split('.');
        let mut decimal = || -> Option<u32> {
            let t = parts.next()?;
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(t.parse::<u32>().unwrap_or(u32::MAX))
        };
        match (decimal(), decimal()) {
            (Some(area), Some(node)) => Ok((((area << 10) & 0xfc00) | (node & 0x3ff)) as u16),
            _ => Err(self.invalid(p, format!("malformed decnet address '{s}'"))),
        }
    }

    /// A plain number under qualifiers (`host 10`, `port 80`, `proto 6`, `net 10`).
    fn number_value(&self, p: &Pair<Rule>, v: u32, q: Qual) -> Res<Expr> {
        let prim = match q.addr {
            AddrQual::Gateway => return Err(self.invalid(p, "'gateway' requires a name")),
            AddrQual::Default | AddrQual::Host | AddrQual::Net
                if q.proto == Some(Proto::Decnet) =>
            {
                // a DECnet address as a number, cut to 16 bits
                Prim::DecnetHost {
                    dir: q.dir(),
                    addr: v as u16,
                }
            }
            AddrQual::Default | AddrQual::Host | AddrQual::Net => {
                if q.proto == Some(Proto::Ether) {
                    return Err(self.invalid(p, "illegal link layer address"));
                }
                let (mut addr, mut mask) = (v, u32::MAX);
                if q.addr == AddrQual::Net {
                    // `net 10` means 10.0.0.0/8: shift the number up to the first octet.
                    while addr != 0 && addr & 0xff00_0000 == 0 {
                        addr <<= 8;
                        mask <<= 8;
                    }
                }
                self.host4(p, q, addr, mask)?
            }
            AddrQual::Port | AddrQual::PortRange => {
                let proto = self.port_proto(p, q)?;
                if v > 65535 {
                    return Err(self.invalid(p, format!("illegal port number {v} > 65535")));
                }
                let port = v as u16;
                if q.addr == AddrQual::Port {
                    Prim::Port {
                        proto,
                        dir: q.dir(),
                        port,
                    }
                } else {
                    Prim::PortRange {
                        proto,
                        dir: q.dir(),
                        lo: port,
                        hi: port,
                    }
                }
            }
            AddrQual::Proto => self.proto_prim(p, q.proto, v)?,
            AddrQual::Protochain => self.protochain_prim(p, q.proto, v)?,
        };
        Ok(Expr::Prim(prim))
    }

    /// `a.b[.c[.d]]`: address and mask as libpcap's `__pcap_atoin` reads them (`10.1` is
    /// 10.1.0.0 with mask 255.255.0.0).
    fn dotted(&self, p: &Pair<Rule>) -> Res<(u32, u32)> {
        let s = p.as_str();
        let mut v: u32 = 0;
        let mut bits = 0;
        for part in s.split('.') {
            let n: u32 = match part.parse::<u16>() {
                Ok(n) if n <= 255 && part.bytes().all(|b| b.is_ascii_digit()) => n as u32,
                _ => return Err(self.invalid(p, format!("invalid IPv4 address '{s}'"))),
            };
            v = (v << 8) | n;
            bits += 8;
        }
        let shift = 32 - bits;
        let addr = if shift == 32 { 0 } else { v << shift };
        let mask = if shift == 32 { 0 } else { u32::MAX << shift };
        Ok((addr, mask))
    }

    /// `net A/len` and `net A mask M`.
    fn v4_network(&self, p: Pair<Rule>, q: Qual) -> Res<Expr> {
        let is_mask = p.as_rule() == Rule::v4_mask;
        let what = if is_mask {
            "IP address and netmask"
        } else {
            "IP address and prefix length"
        };
        self.reject_addr_on_port(&p, q, what)?;
        let mut inner = p.clone().into_inner();
        let a = inner.next().expect("address");
        let (addr, _) = self.dotted(&a)?;
        let mask = if is_mask {
            let m = inner.nth(1).expect("mask address");
            self.dotted(&m)?.0
        } else {
            let len_pair = inner.next().expect("prefix length");
            let len = self.num(&len_pair)?;
            if len > 32 {
                return Err(self.invalid(&len_pair, "mask length must be <= 32"));
            }
            if len == 0 {
                0
            } else {
                u32::MAX << (32 - len)
            }
        };
        if addr & !mask != 0 {
            let shown = p.as_str().split_whitespace().collect::<Vec<_>>().join(" ");
            return Err(self.invalid(&p, format!("non-network bits set in \"{shown}\"")));
        }
        if q.addr != AddrQual::Net {
            return Err(self.invalid(&p, "Mask syntax for networks only"));
        }
        if q.proto == Some(Proto::Decnet) {
            // libpcap takes the IPv4 number's low 16 bits as the DECnet address
            return Ok(Expr::Prim(Prim::DecnetHost {
                dir: q.dir(),
                addr: addr as u16,
            }));
        }
        Ok(Expr::Prim(self.net4_checked(&p, q, addr, mask)?))
    }

    fn check_v4_proto(&self, p: &Pair<Rule>, q: Qual) -> Res<()> {
        let what = if q.addr == AddrQual::Net {
            "net"
        } else {
            "host"
        };
        match q.proto {
            None | Some(Proto::Ip) | Some(Proto::Arp) | Some(Proto::Rarp) => Ok(()),
            Some(Proto::Ether) => {
                Err(self.invalid(p, format!("link-layer modifier applied to {what}")))
            }
            Some(Proto::Ip6) => Err(self.invalid(p, "'ip6' modifier applied to ip host")),
            Some(other) => Err(self.invalid(
                p,
                format!("'{}' modifier applied to {what}", other.keyword()),
            )),
        }
    }

    fn net4_checked(&self, p: &Pair<Rule>, q: Qual, addr: u32, mask: u32) -> Res<Prim> {
        self.check_v4_proto(p, q)?;
        Ok(Prim::Net4 {
            proto: q.proto,
            dir: q.dir(),
            net: Net4 { addr, mask },
        })
    }

    /// An IPv4 host (or, for `net` and partial addresses, a network).
    fn host4(&self, p: &Pair<Rule>, q: Qual, addr: u32, mask: u32) -> Res<Prim> {
        if q.addr == AddrQual::Gateway {
            return Err(self.invalid(p, "'gateway' requires a name"));
        }
        if q.addr == AddrQual::Net || mask != u32::MAX {
            return self.net4_checked(p, q, addr, mask);
        }
        self.check_v4_proto(p, q)?;
        Ok(Prim::Host4 {
            proto: q.proto,
            dir: q.dir(),
            addr,
        })
    }

    fn v6(&self, p: &Pair<Rule>) -> Res<[u8; 16]> {
        let s = p.as_str();
        s.parse::<Ipv6Addr>().map(|a| a.octets()).map_err(|_| {
            let colon_groups = s.split(':').count();
            let kind = if !s.contains("::") && colon_groups < 8 {
                "ethernet"
            } else {
                "IPv6"
            };
            self.invalid(p, format!("bogus {kind} address {s}"))
        })
    }

    /// An IPv6 host or network (`prefix` < 128 only under `net`).
    fn host6(&self, p: &Pair<Rule>, q: Qual, addr: [u8; 16], prefix: u8) -> Res<Prim> {
        let is_net = match q.addr {
            AddrQual::Net => true,
            AddrQual::Default | AddrQual::Host => {
                if prefix != 128 {
                    return Err(self.invalid(p, "Mask syntax for networks only"));
                }
                false
            }
            _ => return Err(self.invalid(p, "invalid qualifier against IPv6 address")),
        };
        let what = if is_net { "net" } else { "host" };
        match q.proto {
            None | Some(Proto::Ip6) => {}
            Some(Proto::Ip) => return Err(self.invalid(p, "'ip' modifier applied to ip6 host")),
            Some(Proto::Ether) => {
                return Err(self.invalid(p, format!("link-layer modifier applied to ip6 {what}")))
            }
            Some(other) => {
                return Err(self.invalid(
                    p,
                    format!("'{}' modifier applied to ip6 {what}", other.keyword()),
                ))
            }
        }
        Ok(if is_net {
            Prim::Net6 {
                dir: q.dir(),
                net: Net6 { addr, prefix },
            }
        } else {
            Prim::Host6 { dir: q.dir(), addr }
        })
    }

    fn ether_value(&self, p: &Pair<Rule>, q: Qual, mac: [u8; 6]) -> Res<Expr> {
        if q.proto == Some(Proto::Ether) && matches!(q.addr, AddrQual::Default | AddrQual::Host) {
            Ok(Expr::Prim(Prim::EtherHost { dir: q.dir(), mac }))
        } else {
            Err(self.invalid(p, "ethernet address used in non-ether expression"))
        }
    }

    /// A name under qualifiers: host (from the hosts file), port/portrange (services),
    /// proto/protochain (protocols, ethertypes).
    fn name_value(&self, p: &Pair<Rule>, name: &str, q: Qual) -> Res<Expr> {
        match q.addr {
            AddrQual::Net => {
                let path = &self.opts.networks_file;
                let net = names::networks_lookup(path, name)
                    .map_err(|e| self.unknown(p, "network", name, &format!(" ({e})")))?
                    .ok_or_else(|| {
                        self.unknown(p, "network", name, &format!(" (not in {})", path.display()))
                    })?;
                // libpcap: the number as getnetbyname gives it, moved up to the top byte,
                // with a mask of the bytes it had.
                let (mut addr, mut mask) = (net, u32::MAX);
                while addr != 0 && addr & 0xff00_0000 == 0 {
                    addr <<= 8;
                    mask <<= 8;
                }
                Ok(Expr::Prim(self.host4(p, q, addr, mask)?))
            }
            AddrQual::Gateway => self.gateway(p, name, q),
            AddrQual::Default | AddrQual::Host => {
                if q.proto == Some(Proto::Ether) {
                    let path = &self.opts.ethers_file;
                    let mac = names::ethers_lookup(path, name)
                        .map_err(|e| self.unknown(p, "ether host", name, &format!(" ({e})")))?
                        .ok_or_else(|| {
                            self.unknown(
                                p,
                                "ether host",
                                name,
                                &format!(" (not in {})", path.display()),
                            )
                        })?;
                    return self.ether_value(p, q, mac);
                }
                if q.proto == Some(Proto::Decnet) {
                    return Err(self.invalid(
                        p,
                        format!("decnet name support not included, '{name}' cannot be translated"),
                    ));
                }
                self.resolve_host(p, name, q)
            }
            AddrQual::Port => {
                let proto = self.port_proto(p, q)?;
                let Some(sp) = service_port_or_number(name) else {
                    return Err(self.unknown(p, "port", name, ""));
                };
                let proto = self.reconcile_port_proto(p, proto, sp.ip_proto, name, "port")?;
                Ok(Expr::Prim(Prim::Port {
                    proto,
                    dir: q.dir(),
                    port: sp.port,
                }))
            }
            AddrQual::PortRange => {
                let proto = self.port_proto(p, q)?;
                let (a, b, real) = self.port_range(p, name)?;
                let proto = self.reconcile_port_proto(p, proto, real, name, "port in range")?;
                Ok(Expr::Prim(Prim::PortRange {
                    proto,
                    dir: q.dir(),
                    lo: a.min(b),
                    hi: a.max(b),
                }))
            }
            AddrQual::Proto | AddrQual::Protochain => {
                let v = match q.proto {
                    None | Some(Proto::Ip) | Some(Proto::Ip6) => names::ip_proto_number(name)
                        .map(u32::from)
                        .ok_or_else(|| self.unknown(p, "ip proto", name, ""))?,
                    Some(Proto::Ether) if q.addr == AddrQual::Proto => {
                        names::ether_proto_number(name)
                            .map(u32::from)
                            .ok_or_else(|| self.unknown(p, "ether proto", name, ""))?
                    }
                    Some(Proto::Iso) if q.addr == AddrQual::Proto => match name {
                        "esis" => 0x82,
                        "isis" => 0x83,
                        "clnp" => 0x81,
                        _ => return Err(self.unknown(p, "osi proto", name, "")),
                    },
                    _ => return Err(self.unknown(p, "protocol", name, "")),
                };
                let prim = if q.addr == AddrQual::Proto {
                    self.proto_prim(p, q.proto, v)?
                } else {
                    self.protochain_prim(p, q.proto, v)?
                };
                Ok(Expr::Prim(prim))
            }
        }
    }

    /// `gateway NAME` as libpcap means it: frames to or from NAME's MAC address (ethers
    /// file) whose IPv4 source and destination are not NAME's addresses (hosts file): the
    /// packets NAME forwards.
    fn gateway(&self, p: &Pair<Rule>, name: &str, q: Qual) -> Res<Expr> {
        match q.proto {
            None | Some(Proto::Ip) | Some(Proto::Arp) | Some(Proto::Rarp) => {}
            Some(_) => return Err(self.invalid(p, "illegal modifier of 'gateway'")),
        }
        if q.dir.is_some() {
            return Err(self.invalid(p, "illegal modifier of 'gateway'"));
        }
        let ether = Qual {
            proto: Some(Proto::Ether),
            dir: None,
            addr: AddrQual::Host,
        };
        let via = self.name_value(p, name, ether)?;
        // Its IPv4 addresses only, as libpcap's name lookup returns them.
        let path = &self.opts.hosts_file;
        let addrs = names::hosts_lookup(path, name)
            .map_err(|e| self.unknown(p, "host", name, &format!(" ({e})")))?;
        let host = Qual {
            proto: q.proto,
            dir: None,
            addr: AddrQual::Host,
        };
        let mut own = Vec::new();
        for a in addrs {
            if let IpAddr::V4(v4) = a {
                own.push(self.host4(p, host, u32::from(v4), u32::MAX)?);
            }
        }
        let own = or_all(own).ok_or_else(|| {
            self.unknown(
                p,
                "host",
                name,
                &format!(" (no IPv4 address in {})", path.display()),
            )
        })?;
        Ok(Expr::And(boxed(via), boxed(Expr::Not(boxed(own)))))
    }

    fn resolve_host(&self, p: &Pair<Rule>, name: &str, q: Qual) -> Res<Expr> {
        let path = &self.opts.hosts_file;
        // `host \1.2.3.4`: an escaped literal is an address, as getaddrinfo reads it.
        let literal = name.parse::<IpAddr>().ok().map(|a| vec![a]);
        let addrs = literal
            .map(Ok)
            .unwrap_or_else(|| names::hosts_lookup(path, name))
            .map_err(|e| {
                self.unknown(
                    p,
                    "host",
                    name,
                    &format!(" ({e}; only the hosts file is consulted)"),
                )
            })?;
        if addrs.is_empty() {
            let typo = suggest::keyword_hint(name)
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            return Err(self.unknown(
                p,
                "host",
                name,
                &format!(" (not in {}; DNS is not used){typo}", path.display()),
            ));
        }
        let mut prims = Vec::new();
        for a in addrs {
            match a {
                IpAddr::V4(v4) => {
                    if q.proto == Some(Proto::Ip6) {
                        continue;
                    }
                    prims.push(self.host4(p, q, u32::from(v4), u32::MAX)?);
                }
                IpAddr::V6(v6) => {
                    if q.proto == Some(Proto::Ip) {
                        continue;
                    }
                    prims.push(self.host6(p, q, v6.octets(), 128)?);
                }
            }
        }
        or_all(prims).ok_or_else(|| self.unknown(p, "host", name, " for specified address family"))
    }

    fn port_proto(&self, p: &Pair<Rule>, q: Qual) -> Res<Option<Proto>> {
        match q.proto {
            None | Some(Proto::Tcp) | Some(Proto::Udp) | Some(Proto::Sctp) => Ok(q.proto),
            Some(_) => {
                let kw = if q.addr == AddrQual::Port {
                    "port"
                } else {
                    "portrange"
                };
                Err(self.invalid(p, format!("illegal qualifier of '{kw}'")))
            }
        }
    }

    /// libpcap's check that a service's protocol agrees with the written one.
    fn reconcile_port_proto(
        &self,
        p: &Pair<Rule>,
        written: Option<Proto>,
        real: Option<u8>,
        name: &str,
        what: &str,
    ) -> Res<Option<Proto>> {
        let real = match real {
            Some(names::IPPROTO_TCP) => Some(Proto::Tcp),
            Some(names::IPPROTO_UDP) => Some(Proto::Udp),
            _ => None,
        };
        match (written, real) {
            (None, r) => Ok(r),
            (Some(w), Some(r)) if w != r => {
                Err(self.invalid(p, format!("{what} '{name}' is {}", r.keyword())))
            }
            (Some(w), _) => Ok(Some(w)),
        }
    }

    /// `portrange A-B` with numbers or service names (libpcap's `pcap_nametoportrange`).
    fn port_range(&self, p: &Pair<Rule>, name: &str) -> Res<(u16, u16, Option<u8>)> {
        let check = |v: u64| -> Res<u16> {
            u16::try_from(v)
                .map_err(|_| self.invalid(p, format!("illegal port number {v} > 65535")))
        };
        if let Some((a, b)) = numeric_range(name) {
            return Ok((check(a)?, check(b)?, None));
        }
        let unknown = || self.unknown(p, "port in range", name, "");
        let (a, b) = name.split_once('-').ok_or_else(unknown)?;
        let pa = service_port_or_number(a).ok_or_else(unknown)?;
        let pb = service_port_or_number(b).ok_or_else(unknown)?;
        let proto = if pa.ip_proto == pb.ip_proto {
            pa.ip_proto
        } else {
            None
        };
        Ok((pa.port, pb.port, proto))
    }

    fn proto_prim(&self, p: &Pair<Rule>, under: Option<Proto>, v: u32) -> Res<Prim> {
        match under {
            // (numbers past the field's width never match, as in libpcap)
            None | Some(Proto::Ip | Proto::Ip6 | Proto::Iso | Proto::Isis) => {
                Ok(Prim::IpProto { under, proto: v })
            }
            Some(Proto::Ether) => Ok(Prim::EtherProto(v)),
            Some(Proto::Arp) | Some(Proto::Rarp) => Err(self.invalid(
                p,
                format!(
                    "{} does not encapsulate another protocol",
                    under.map_or("", |x| x.keyword())
                ),
            )),
            Some(Proto::Atalk) => {
                Err(self.invalid(p, "AppleTalk encapsulation is not specifiable"))
            }
            Some(Proto::Decnet) => Err(self.invalid(p, "DECNET encapsulation is not specifiable")),
            Some(x @ (Proto::Lat | Proto::Sca | Proto::Moprc | Proto::Mopdl)) => Err(self.invalid(
                p,
                format!(
                    "{} does not encapsulate another protocol",
                    x.keyword().to_ascii_uppercase()
                ),
            )),
            Some(Proto::Clnp) => Err(self.invalid(p, "'clnp proto' is not supported")),
            Some(other) => Err(self.invalid(p, format!("'{} proto' is bogus", other.keyword()))),
        }
    }

    fn protochain_prim(&self, p: &Pair<Rule>, under: Option<Proto>, v: u32) -> Res<Prim> {
        match under {
            None | Some(Proto::Ip) | Some(Proto::Ip6) => Ok(Prim::Protochain { under, proto: v }),
            _ => Err(self.invalid(p, "bad protocol applied for 'protochain'")),
        }
    }

    // ---- protocol names and stand-alone primitives ----

    /// A protocol keyword as an AST protocol (libpcap's scanner makes `ppp`, `slip`,
    /// `fddi`, `tr` and `wlan` the same token as `ether` and `link`).
    fn proto(&self, p: &Pair<Rule>) -> Res<Proto> {
        let kw = p.as_str();
        Ok(match kw {
            "ether" | "link" | "ppp" | "slip" | "fddi" | "tr" | "wlan" => Proto::Ether,
            "ip" => Proto::Ip,
            "ip6" => Proto::Ip6,
            "arp" => Proto::Arp,
            "rarp" => Proto::Rarp,
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "sctp" => Proto::Sctp,
            "icmp" => Proto::Icmp,
            "icmp6" => Proto::Icmp6,
            "igmp" => Proto::Igmp,
            "igrp" => Proto::Igrp,
            "pim" => Proto::Pim,
            "vrrp" => Proto::Vrrp,
            "carp" => Proto::Carp,
            "ah" => Proto::Ah,
            "esp" => Proto::Esp,
            "atalk" => Proto::Atalk,
            "aarp" => Proto::Aarp,
            "decnet" => Proto::Decnet,
            "lat" => Proto::Lat,
            "sca" => Proto::Sca,
            "mopdl" => Proto::Mopdl,
            "moprc" => Proto::Moprc,
            "iso" => Proto::Iso,
            "clnp" => Proto::Clnp,
            "esis" | "es-is" => Proto::Esis,
            "isis" | "is-is" => Proto::Isis,
            "l1" => Proto::IsisL1,
            "l2" => Proto::IsisL2,
            "iih" => Proto::IsisIih,
            "lsp" => Proto::IsisLsp,
            "snp" => Proto::IsisSnp,
            "csnp" => Proto::IsisCsnp,
            "psnp" => Proto::IsisPsnp,
            "stp" => Proto::Stp,
            "ipx" => Proto::Ipx,
            "netbeui" => Proto::Netbeui,
            // `radio`: 802.11 radio headers, which Ethernet and IP captures never have
            _ => return Err(self.invalid(p, "'radio' is not a valid protocol type")),
        })
    }

    fn bare_proto(&self, p: &Pair<Rule>) -> Res<Expr> {
        match self.proto(p)? {
            Proto::Ether => Err(self.invalid(p, "link layer applied in wrong context")),
            proto => Ok(Expr::Prim(Prim::Proto(proto))),
        }
    }

    fn other(&self, pair: Pair<Rule>) -> Res<Expr> {
        let p = pair.into_inner().next().expect("other child");
        let prim = match p.as_rule() {
            Rule::broadcast | Rule::multicast => {
                let is_bcast = p.as_rule() == Rule::broadcast;
                let mut proto = None;
                for c in p.clone().into_inner() {
                    if c.as_rule() == Rule::pname {
                        proto = Some(self.proto(&c)?);
                    }
                }
                match (is_bcast, proto) {
                    (true, None | Some(Proto::Ether)) => Prim::Broadcast(Proto::Ether),
                    (true, Some(Proto::Ip)) => Prim::Broadcast(Proto::Ip),
                    (true, _) => {
                        return Err(
                            self.invalid(&p, "only link-layer/IP broadcast filters supported")
                        )
                    }
                    (false, None | Some(Proto::Ether)) => Prim::Multicast(Proto::Ether),
                    (false, Some(x @ (Proto::Ip | Proto::Ip6))) => Prim::Multicast(x),
                    (false, _) => {
                        return Err(
                            self.invalid(&p, "only link-layer/IP/IPv6 multicast filters supported")
                        )
                    }
                }
            }
            Rule::less | Rule::greater => {
                let is_less = p.as_rule() == Rule::less;
                let n = self.num(&p.clone().into_inner().nth(1).expect("number"))?;
                if is_less {
                    Prim::Less(n)
                } else {
                    Prim::Greater(n)
                }
            }
            Rule::byte_cmp => return self.byte_cmp(p),
            Rule::vlan => Prim::Vlan(self.opt_limited(&p, 4095, "VLAN tag")?.map(|v| v as u16)),
            Rule::mpls => Prim::Mpls(self.opt_limited(&p, 1_048_575, "MPLS label")?),
            Rule::pppoed => Prim::Pppoed,
            Rule::pppoes => Prim::Pppoes(
                self.opt_limited(&p, 65535, "PPPoE session number")?
                    .map(|v| v as u16),
            ),
            Rule::geneve => Prim::Geneve(self.opt_limited(&p, 16_777_215, "Geneve VNI")?),
            Rule::llc => Prim::Llc(self.llc(p)?),
            Rule::inbound => Prim::Outbound(false),
            Rule::outbound => Prim::Outbound(true),
            Rule::ifindex => {
                Prim::Ifindex(self.num(&p.clone().into_inner().nth(1).expect("number"))?)
            }
            Rule::unsupported_prim => {
                let kw = p.into_inner().next().expect("keyword");
                return Err(self.unsupported(
                    &kw,
                    kw.as_str(),
                    unsupported_keyword_reason(kw.as_str()),
                ));
            }
            r => unreachable!("other child {r:?}"),
        };
        Ok(Expr::Prim(prim))
    }

    /// The optional number after `vlan`, `mpls`, `pppoes`, `geneve`, checked against `max`.
    fn opt_limited(&self, p: &Pair<Rule>, max: u32, what: &str) -> Res<Option<u32>> {
        let Some(n) = p.clone().into_inner().find(|c| c.as_rule() == Rule::pnum) else {
            return Ok(None);
        };
        let v = self.pnum(n.clone())?;
        if v > max {
            return Err(self.invalid(&n, format!("{what} {v} greater than maximum {max}")));
        }
        Ok(Some(v))
    }

    fn llc(&self, p: Pair<Rule>) -> Res<Llc> {
        let Some(sub) = p.into_inner().nth(1) else {
            return Ok(Llc::Any);
        };
        let s = sub.as_str().to_ascii_lowercase();
        let find = |table: &[(&str, u8)]| table.iter().find(|(n, _)| *n == s).map(|(_, v)| *v);
        Ok(match s.as_str() {
            "i" => Llc::I,
            "s" => Llc::S,
            "u" => Llc::U,
            _ => {
                if let Some(v) = find(super::ast::LLC_S_SUBTYPES) {
                    Llc::SSubtype(v)
                } else if let Some(v) = find(super::ast::LLC_U_SUBTYPES) {
                    Llc::USubtype(v)
                } else {
                    return Err(self.unknown(&sub, "LLC type name", sub.as_str(), ""));
                }
            }
        })
    }

    /// `byte N op V`: libpcap compares the byte at link-layer offset N.
    fn byte_cmp(&self, p: Pair<Rule>) -> Res<Expr> {
        let mut it = p.into_inner().skip(1);
        let idx = self.num(&it.next().expect("index"))?;
        let op = it.next().expect("byte op").as_str().to_string();
        let val = self.num(&it.next().expect("value"))?;
        let load = Arith::Load {
            proto: Proto::Ether,
            offset: Box::new(Arith::Num(idx)),
            size: 1,
        };
        let masked = |aop| Arith::Bin {
            op: aop,
            lhs: Box::new(load.clone()),
            rhs: Box::new(Arith::Num(val)),
        };
        let (op, lhs, rhs) = match op.as_str() {
            "=" => (RelOp::Eq, load, Arith::Num(val)),
            "<" => (RelOp::Lt, load, Arith::Num(val)),
            ">" => (RelOp::Gt, load, Arith::Num(val)),
            "&" => (RelOp::Ne, masked(ArithOp::And), Arith::Num(0)),
            _ => (RelOp::Ne, masked(ArithOp::Or), Arith::Num(0)),
        };
        Ok(Expr::Rel { op, lhs, rhs })
    }

    // ---- numbers and arithmetic ----

    fn pnum(&self, p: Pair<Rule>) -> Res<u32> {
        let inner = p.into_inner().next().expect("pnum child");
        match inner.as_rule() {
            Rule::pnum => self.pnum(inner),
            _ => self.num(&inner),
        }
    }

    /// A NUM token: decimal, 0x hex, 0 octal (as libpcap's `stou`), or a named constant.
    fn num(&self, p: &Pair<Rule>) -> Res<u32> {
        let s = p.as_str();
        if p.as_rule() == Rule::num_const {
            return Ok(named_constant(s).expect("grammar lists only known constants"));
        }
        let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))
        {
            (h, 16)
        } else if s.len() > 1 && s.starts_with('0') {
            if s.bytes().any(|b| b == b'8' || b == b'9') {
                return Err(self.invalid(p, format!("number {s} contains non-octal digit")));
            }
            (&s[1..], 8)
        } else {
            (s, 10)
        };
        u32::from_str_radix(digits, radix)
            .map_err(|_| self.invalid(p, format!("number {s} overflows 32 bits")))
    }

    fn relation(&self, p: Pair<Rule>) -> Res<Expr> {
        let mut it = p.into_inner();
        let lhs = self.arith(it.next().expect("lhs"))?;
        let op = match it.next().expect("relop").as_str() {
            ">" => RelOp::Gt,
            ">=" => RelOp::Ge,
            "<" => RelOp::Lt,
            "<=" => RelOp::Le,
            "!=" => RelOp::Ne,
            _ => RelOp::Eq,
        };
        let rhs = self.arith(it.next().expect("rhs"))?;
        Ok(Expr::Rel { op, lhs, rhs })
    }

    /// Arithmetic with libpcap's precedence: `|` < `&` < shifts < `+ -` < `* /` < unary minus.
    /// `%` and `^` have no declared precedence in grammar.y, so bison always shifts them:
    /// they bind to the operand just before and take everything after as their right side.
    fn arith(&self, p: Pair<Rule>) -> Res<Arith> {
        let mut items = Vec::new();
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::arith_op => items.push(ArithItem::Op(arith_op(c.as_str()))),
                _ => {
                    let mut negs = 0;
                    let mut atom = None;
                    for u in c.into_inner() {
                        match u.as_rule() {
                            Rule::neg => negs += 1,
                            _ => atom = Some(self.arith_atom(u)?),
                        }
                    }
                    items.push(ArithItem::Operand {
                        negs,
                        atom: atom.expect("operand has an atom"),
                    });
                }
            }
        }
        let mut seq = ArithSeq { items, pos: 0 };
        Ok(seq.climb(0))
    }

    fn arith_atom(&self, p: Pair<Rule>) -> Res<Arith> {
        match p.as_rule() {
            Rule::kw_len => Ok(Arith::Len),
            Rule::num | Rule::num_const => Ok(Arith::Num(self.num(&p)?)),
            Rule::arith => self.arith(p),
            Rule::load => {
                let mut it = p.clone().into_inner();
                let pn = it.next().expect("pname");
                let proto = self.proto(&pn)?;
                if matches!(proto, Proto::Ah | Proto::Esp) {
                    return Err(self.invalid(
                        &pn,
                        format!("unsupported index operation on '{}'", proto.keyword()),
                    ));
                }
                let offset = self.arith(it.next().expect("offset"))?;
                let size = match it.next() {
                    None => 1,
                    Some(sz) => match self.num(&sz)? {
                        v @ (1 | 2 | 4) => v as u8,
                        _ => return Err(self.invalid(&sz, "data size must be 1, 2, or 4")),
                    },
                };
                Ok(Arith::Load {
                    proto,
                    offset: Box::new(offset),
                    size,
                })
            }
            r => unreachable!("arith atom {r:?}"),
        }
    }
}

fn combine(op: &Pair<Rule>, a: Expr, b: Expr) -> Expr {
    match op.as_rule() {
        Rule::and_op => Expr::And(boxed(a), boxed(b)),
        _ => Expr::Or(boxed(a), boxed(b)),
    }
}

enum ArithItem {
    Operand { negs: usize, atom: Arith },
    Op(ArithOp),
}

/// Operator-precedence parsing of a flat `operand (op operand)*` list.
struct ArithSeq {
    items: Vec<ArithItem>,
    pos: usize,
}

fn precedence(op: ArithOp) -> u8 {
    match op {
        ArithOp::Or => 1,
        ArithOp::And => 2,
        ArithOp::Lsh | ArithOp::Rsh => 3,
        ArithOp::Add | ArithOp::Sub => 4,
        ArithOp::Mul | ArithOp::Div => 5,
        // Never compared: `%` and `^` are absorbed by the operand before them.
        ArithOp::Mod | ArithOp::Xor => 6,
    }
}

impl ArithSeq {
    fn peek_op(&self) -> Option<ArithOp> {
        match self.items.get(self.pos) {
            Some(ArithItem::Op(op)) => Some(*op),
            _ => None,
        }
    }

    fn climb(&mut self, min: u8) -> Arith {
        let mut lhs = self.operand();
        while let Some(op) = self.peek_op() {
            let prec = precedence(op);
            if prec < min {
                break;
            }
            self.pos += 1;
            let rhs = self.climb(prec + 1);
            lhs = Arith::Bin {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
        lhs
    }

    fn operand(&mut self) -> Arith {
        let item = std::mem::replace(&mut self.items[self.pos], ArithItem::Op(ArithOp::Add));
        self.pos += 1;
        let ArithItem::Operand { negs, atom } = item else {
            unreachable!("grammar alternates operands and operators")
        };
        let mut a = atom;
        if let Some(op @ (ArithOp::Mod | ArithOp::Xor)) = self.peek_op() {
            self.pos += 1;
            let rhs = self.climb(0);
            a = Arith::Bin {
                op,
                lhs: Box::new(a),
                rhs: Box::new(rhs),
            };
        }
        for _ in 0..negs {
            a = Arith::Neg(Box::new(a));
        }
        a
    }
}

fn arith_op(s: &str) -> ArithOp {
    match s {
        "+" => ArithOp::Add,
        "-" => ArithOp::Sub,
        "*" => ArithOp::Mul,
        "/" => ArithOp::Div,
        "%" => ArithOp::Mod,
        "&" => ArithOp::And,
        "|" => ArithOp::Or,
        "^" => ArithOp::Xor,
        "<<" => ArithOp::Lsh,
        _ => ArithOp::Rsh,
    }
}

/// A service name, or a decimal number as getaddrinfo reads a numeric service.
fn service_port_or_number(s: &str) -> Option<names::ServicePort> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u16>().ok().map(|port| names::ServicePort {
            port,
            ip_proto: None,
        });
    }
    names::service_port(s)
}

/// `N-M` as `sscanf("%d-%d")` reads it (trailing text ignored).
fn numeric_range(s: &str) -> Option<(u64, u64)> {
    let digits = |t: &str| -> (Option<u64>, usize) {
        let n = t.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return (None, 0);
        }
        (Some(t[..n].parse::<u64>().unwrap_or(u64::MAX)), n)
    };
    let (a, n) = digits(s);
    let a = a?;
    let rest = s[n..].strip_prefix('-')?;
    let (rest, negative) = match rest.strip_prefix('-') {
        Some(r) => (r, true),
        None => (rest.strip_prefix('+').unwrap_or(rest), false),
    };
    let (b, _) = digits(rest);
    let b = b?;
    // A negative second number wraps to a huge unsigned value in libpcap.
    Some((a, if negative && b != 0 { u64::MAX } else { b }))
}

/// `aa:bb:cc:dd:ee:ff` with 1 or 2 hex digits per byte.
fn parse_colon_mac(s: &str) -> Option<[u8; 6]> {
    parse_separated_mac(s, ':')
}

fn parse_separated_mac(s: &str, sep: char) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(sep).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *m = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// The MAC forms libpcap's scanner knows: `:`/`-`/`.` separated bytes, `xxxx.xxxx.xxxx`,
/// and 12 hex digits.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    for sep in [':', '-', '.'] {
        if let Some(m) = parse_separated_mac(s, sep) {
            return Some(m);
        }
    }
    let hex: String = s.chars().filter(|c| *c != '.').collect();
    if hex.len() != 12 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, m) in mac.iter_mut().enumerate() {
        *m = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(mac)
}

/// Values of libpcap's named constants (`tcp-syn`, `icmp-echo`, `tcpflags` ...).
pub fn named_constant(s: &str) -> Option<u32> {
    NAMED_CONSTANTS
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, v)| *v)
}

/// libpcap 1.10's named numeric constants.
pub const NAMED_CONSTANTS: &[(&str, u32)] = &[
    ("icmptype", 0),
    ("icmpcode", 1),
    ("icmp-echoreply", 0),
    ("icmp-unreach", 3),
    ("icmp-sourcequench", 4),
    ("icmp-redirect", 5),
    ("icmp-echo", 8),
    ("icmp-routeradvert", 9),
    ("icmp-routersolicit", 10),
    ("icmp-timxceed", 11),
    ("icmp-paramprob", 12),
    ("icmp-tstamp", 13),
    ("icmp-tstampreply", 14),
    ("icmp-ireq", 15),
    ("icmp-ireqreply", 16),
    ("icmp-maskreq", 17),
    ("icmp-maskreply", 18),
    ("icmp6type", 0),
    ("icmp6code", 1),
    ("icmp6-destinationunreach", 1),
    ("icmp6-packettoobig", 2),
    ("icmp6-timeexceeded", 3),
    ("icmp6-parameterproblem", 4),
    ("icmp6-echo", 128),
    ("icmp6-echoreply", 129),
    ("icmp6-multicastlistenerquery", 130),
    ("icmp6-multicastlistenerreportv1", 131),
    ("icmp6-multicastlistenerdone", 132),
    ("icmp6-routersolicit", 133),
    ("icmp6-routeradvert", 134),
    ("icmp6-neighborsolicit", 135),
    ("icmp6-neighboradvert", 136),
    ("icmp6-redirect", 137),
    ("icmp6-routerrenum", 138),
    ("icmp6-nodeinformationquery", 139),
    ("icmp6-nodeinformationresponse", 140),
    ("icmp6-ineighbordiscoverysolicit", 141),
    ("icmp6-ineighbordiscoveryadvert", 142),
    ("icmp6-multicastlistenerreportv2", 143),
    ("icmp6-homeagentdiscoveryrequest", 144),
    ("icmp6-homeagentdiscoveryreply", 145),
    ("icmp6-mobileprefixsolicit", 146),
    ("icmp6-mobileprefixadvert", 147),
    ("icmp6-certpathsolicit", 148),
    ("icmp6-certpathadvert", 149),
    ("icmp6-multicastrouteradvert", 151),
    ("icmp6-multicastroutersolicit", 152),
    ("icmp6-multicastrouterterm", 153),
    ("tcpflags", 13),
    ("tcp-fin", 0x01),
    ("tcp-syn", 0x02),
    ("tcp-rst", 0x04),
    ("tcp-push", 0x08),
    ("tcp-ack", 0x10),
    ("tcp-urg", 0x20),
    ("tcp-ece", 0x40),
    ("tcp-cwr", 0x80),
];

fn unsupported_keyword_reason(kw: &str) -> &'static str {
    match kw {
        "ifname" | "on" => {
            "interface matching is pwru's --filter-ifname, not part of the packet filter"
        }
        "rset" | "ruleset" | "rnr" | "rulenum" | "srnr" | "subrulenum" | "reason" | "action" => {
            "pf rule fields only exist in pflog captures"
        }
        "type" | "subtype" | "dir" | "direction" => "802.11 frame fields need 802.11 frames",
        "lane" | "metac" | "bcc" | "oam" | "oamf4" | "oamf4ec" | "oamf4sc" | "sc" | "ilmic"
        | "vpi" | "vci" | "connectmsg" | "metaconnect" => "ATM fields need ATM captures",
        _ => "SS7 MTP2/MTP3 fields need SS7 captures",
    }
}

/// A readable name for a grammar rule, for "expected ..." messages.
fn rule_description(r: Rule) -> &'static str {
    match r {
        Rule::EOI => "end of expression",
        Rule::expr | Rule::term | Rule::paren_expr | Rule::qualified | Rule::other => "a primitive",
        Rule::id | Rule::pid | Rule::pid_first | Rule::paren_pid | Rule::name => "a value",
        Rule::and_op | Rule::or_op => "'and' or 'or'",
        Rule::not_op => "'not'",
        Rule::relop => "a comparison (=, !=, <, <=, >, >=)",
        Rule::arith | Rule::arith_unary | Rule::load => "an arithmetic expression",
        Rule::arith_op => "an arithmetic operator",
        Rule::num | Rule::num_const | Rule::pnum => "a number",
        Rule::pname => "a protocol",
        Rule::filter => "a primitive",
        Rule::head
        | Rule::dqual
        | Rule::aqual
        | Rule::kw_proto
        | Rule::kw_protochain
        | Rule::kw_gateway
        | Rule::kw_broadcast
        | Rule::kw_multicast => "a qualifier",
        Rule::v4_addr | Rule::v6_addr | Rule::mac_addr => "an address",
        Rule::kw_mask => "'mask'",
        Rule::byte_op => "one of & | < > =",
        _ => "a token",
    }
}

mod suggest;

#[cfg(test)]
mod tests;
