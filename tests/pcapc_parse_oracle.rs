//! Compares which pcap-filter expressions our parser accepts with what libpcap accepts
//! (through the `pcap` crate). Run with `cargo test --features oracle --test pcapc_parse_oracle`.
#![cfg(feature = "oracle")]

use pwru::pcapc::{parse, ParseErrorKind};

/// libpcap's verdict: `Ok` or its error message.
fn libpcap(expr: &str) -> Result<(), String> {
    let cap = pcap::Capture::dead(pcap::Linktype::ETHERNET).expect("pcap_open_dead");
    cap.compile(expr, true)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Errors that come from libpcap's optimiser or code generator, not from parsing: the
/// compiler's business, so parse acceptance is not compared for them. Besides "rejects all
/// packets", these depend on the link layer an earlier `pppoes`/`mpls` switched to
/// (e.g. `pppoes and vlan`, `mpls and vlan`, `pppoes and llc`).
fn is_compile_only_error(msg: &str) -> bool {
    [
        "expression rejects all packets",
        "not supported for PPP",
        "not a broadcast link",
        "multicast filters supported only on",
        "no VLAN support for",
        "no VLAN match after MPLS",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Agree,
    /// libpcap accepts, we refuse on purpose (`Unsupported`).
    Unsupported,
    Skipped,
    Disagree(String),
}

fn compare(expr: &str) -> Verdict {
    let lib = libpcap(expr);
    let ours = parse(expr);
    match (&lib, &ours) {
        (Err(m), _) if is_compile_only_error(m) => Verdict::Skipped,
        (Ok(()), Ok(_)) | (Err(_), Err(_)) => Verdict::Agree,
        (Ok(()), Err(e)) if matches!(e.kind, ParseErrorKind::Unsupported { .. }) => {
            Verdict::Unsupported
        }
        _ => Verdict::Disagree(format!(
            "{expr:?}: libpcap {lib:?}, ours {:?}",
            ours.map(|e| e.map(|e| e.to_string()))
                .map_err(|e| e.message())
        )),
    }
}

#[test]
fn corpus_acceptance_matches_libpcap() {
    let corpus = include_str!("data/pcap_filter_corpus.txt");
    let mut disagreements = Vec::new();
    let (mut agree, mut unsupported, mut skipped) = (0, 0, 0);
    for expr in corpus
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        match compare(expr) {
            Verdict::Agree => agree += 1,
            Verdict::Unsupported => unsupported += 1,
            Verdict::Skipped => skipped += 1,
            Verdict::Disagree(d) => disagreements.push(d),
        }
    }
    eprintln!(
        "corpus: {agree} agree, {unsupported} unsupported by pwru, {skipped} compile-only errors"
    );
    assert!(agree > 300, "corpus too small: {agree}");
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// The random tests' seed: fixed, or `PCAPC_ORACLE_SEED` to explore other sequences.
fn seed(default: u64) -> u64 {
    std::env::var("PCAPC_ORACLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s != 0)
        .unwrap_or(default)
}

/// Small deterministic PRNG (xorshift) so the random corpus is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// Token soup from pcap-filter's vocabulary: mostly nonsense, which is the point: both
/// parsers must refuse the same nonsense and accept the same sense.
#[test]
fn random_token_sequences_match_libpcap() {
    const TOKENS: &[&str] = &[
        "host",
        "net",
        "port",
        "portrange",
        "src",
        "dst",
        "or",
        "and",
        "not",
        "!",
        "&&",
        "||",
        "(",
        ")",
        "tcp",
        "udp",
        "ip",
        "ip6",
        "arp",
        "icmp",
        "ether",
        "proto",
        "protochain",
        "broadcast",
        "multicast",
        "less",
        "greater",
        "len",
        "vlan",
        "mpls",
        "pppoes",
        "llc",
        "10",
        "0x10",
        "010",
        "1.2.3.4",
        "10.1",
        "10.0.0.0/8",
        "255.0.0.0",
        "mask",
        "::1",
        "2001:db8::/32",
        "aa:bb:cc:dd:ee:ff",
        "80",
        "20-30",
        "http",
        "domain",
        "\\tcp",
        "tcp[13]",
        "ip[0:2]",
        "[",
        "]",
        ":",
        "=",
        "!=",
        "<",
        ">",
        "<=",
        ">=",
        "+",
        "-",
        "*",
        "/",
        "%",
        "&",
        "|",
        "^",
        "<<",
        ">>",
        "tcp-syn",
        "tcpflags",
        "icmp-echo",
        "localhost",
        "gateway",
        "inbound",
        "ifname",
        "eth0",
        "decnet",
        "iso",
        "ra",
        "type",
        "mgt",
        "byte",
        "1.2.3.4/24",
        "0x800",
        "\\ip",
        "i",
        "rnr",
        "geneve",
        "pppoed",
        "icmp6",
        "ah",
        "link",
        "001122334455",
        "aa-bb-cc-dd-ee-ff",
        "::",
        "fe80::1",
        "$1",
        "vxlan",
        "5-3",
        "len-1",
    ];
    let mut rng = Rng(seed(0x9e37_79b9_7f4a_7c15));
    let mut disagreements = Vec::new();
    let mut accepted = 0;
    for _ in 0..30_000 {
        let n = 1 + rng.next() % 7;
        let expr: Vec<&str> = (0..n).map(|_| rng.pick(TOKENS)).collect();
        let expr = expr.join(" ");
        match compare(&expr) {
            Verdict::Disagree(d) => disagreements.push(d),
            Verdict::Agree if parse(&expr).is_ok() => accepted += 1,
            _ => {}
        }
    }
    eprintln!("random: {accepted} accepted by both");
    disagreements.truncate(40);
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// Mostly well-formed expressions: random qualifiers over random values, joined by
/// random boolean operators, bare values (inheritance) and parentheses, with an
/// occasional dropped or doubled token.
#[test]
fn random_structured_expressions_match_libpcap() {
    const PROTOS: &[&str] = &[
        "", "", "", "ip ", "ip6 ", "arp ", "rarp ", "tcp ", "udp ", "sctp ", "icmp ", "ether ",
        "link ",
    ];
    const DIRS: &[&str] = &[
        "",
        "",
        "src ",
        "dst ",
        "src or dst ",
        "src and dst ",
        "dst or src ",
    ];
    const TYPES: &[&str] = &[
        "",
        "host ",
        "net ",
        "port ",
        "portrange ",
        "proto ",
        "protochain ",
    ];
    const VALUES: &[&str] = &[
        "1.2.3.4",
        "10",
        "10.1",
        "10.1.2",
        "10.0.0.0/8",
        "10.0.0.0 mask 255.0.0.0",
        "::1",
        "2001:db8::/32",
        "fe80::",
        "aa:bb:cc:dd:ee:ff",
        "aabb.ccdd.eeff",
        "80",
        "65536",
        "20-30",
        "http",
        "domain",
        "ntp",
        "\\tcp",
        "\\udp",
        "\\ip",
        "\\ip6",
        "localhost",
        "0",
        "(1)",
        "1.2.3.4/32",
        "255",
    ];
    const STANDALONE: &[&str] = &[
        "tcp",
        "udp",
        "icmp",
        "icmp6",
        "ip",
        "ip6",
        "arp",
        "broadcast",
        "ip broadcast",
        "multicast",
        "ip6 multicast",
        "less 100",
        "greater 64",
        "vlan",
        "vlan 10",
        "mpls 5",
        "pppoed",
        "pppoes 3",
        "geneve",
        "llc",
        "llc u",
        "tcp[13] & 2 != 0",
        "len > 60",
        "ip[0] & 0xf != 5",
        "icmp[icmptype] = icmp-echo",
        "tcp[tcpflags] & tcp-syn != 0",
        "len % 3 + 1 = 2",
        "byte 0 = 1",
    ];
    let mut rng = Rng(seed(0x2545_f491_4f6c_dd1d));
    let mut disagreements = Vec::new();
    let mut accepted = 0;
    for _ in 0..3_000 {
        let mut parts: Vec<String> = Vec::new();
        let terms = 1 + rng.next() % 4;
        for t in 0..terms {
            if t > 0 {
                parts.push(
                    rng.pick(&["and", "or", "&&", "||", "and not", "or not"])
                        .to_string(),
                );
            }
            let open = rng.next().is_multiple_of(5);
            if open {
                parts.push("(".into());
            }
            match rng.next() % 4 {
                0 => parts.push(rng.pick(STANDALONE).to_string()),
                1 if t > 0 => parts.push(rng.pick(VALUES).to_string()),
                _ => parts.push(format!(
                    "{}{}{}{}",
                    rng.pick(PROTOS),
                    rng.pick(DIRS),
                    rng.pick(TYPES),
                    rng.pick(VALUES)
                )),
            }
            if open {
                parts.push(")".into());
            }
        }
        let mut expr = parts.join(" ");
        if rng.next().is_multiple_of(10) {
            let words: Vec<&str> = expr.split(' ').collect();
            let i = (rng.next() % words.len() as u64) as usize;
            let mut w: Vec<&str> = words.clone();
            if rng.next().is_multiple_of(2) {
                w.remove(i);
            } else {
                w.insert(i, words[i]);
            }
            expr = w.join(" ");
        }
        match compare(&expr) {
            Verdict::Disagree(d) => disagreements.push(d),
            Verdict::Agree if parse(&expr).is_ok() => accepted += 1,
            _ => {}
        }
    }
    eprintln!("structured: {accepted} accepted by both");
    disagreements.truncate(40);
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
