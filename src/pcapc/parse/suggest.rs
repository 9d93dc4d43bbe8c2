//! Keyword suggestions for typos: a word that breaks the parse or fails to resolve as a
//! host name, yet is one or two keystrokes from a pcap-filter keyword (`hots` → `host`).

/// The keywords people type, the ones a typo is most likely aimed at.
const KEYWORDS: &[&str] = &[
    "host",
    "net",
    "port",
    "portrange",
    "src",
    "dst",
    "proto",
    "protochain",
    "gateway",
    "broadcast",
    "multicast",
    "less",
    "greater",
    "len",
    "length",
    "vlan",
    "mpls",
    "geneve",
    "and",
    "or",
    "not",
    "ether",
    "ip",
    "ip6",
    "arp",
    "rarp",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "sctp",
    "igmp",
];

/// "did you mean 'host'?" when `word` is not a keyword but close to one: a different case,
/// or a one-letter slip (two for keywords longer than four letters). Addresses, numbers
/// and names with punctuation get none.
pub(super) fn keyword_hint(word: &str) -> Option<String> {
    let plain = word.len() >= 2
        && word.starts_with(|c: char| c.is_ascii_alphabetic())
        && word.chars().all(|c| c.is_ascii_alphanumeric());
    if !plain || KEYWORDS.contains(&word) {
        return None;
    }
    let lower = word.to_ascii_lowercase();
    if KEYWORDS.contains(&lower.as_str()) {
        return Some(format!("keywords are lowercase: did you mean '{lower}'?"));
    }
    let mut best: Vec<&str> = Vec::new();
    let mut best_distance = usize::MAX;
    for keyword in KEYWORDS {
        let allowed = if keyword.len() > 4 { 2 } else { 1 };
        let d = edit_distance(&lower, keyword);
        if d > allowed || d > best_distance {
            continue;
        }
        if d < best_distance {
            best.clear();
            best_distance = d;
        }
        best.push(keyword);
    }
    match best.as_slice() {
        [] => None,
        [one] => Some(format!("did you mean '{one}'?")),
        [first, rest @ ..] => Some(format!(
            "did you mean '{first}'{}?",
            rest.iter()
                .map(|k| format!(" or '{k}'"))
                .collect::<String>()
        )),
    }
}

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between the first i chars of a and the first j of b.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitution = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + substitution);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_of_keywords_get_the_keyword() {
        let table: &[(&str, Option<&str>)] = &[
            ("hots", Some("did you mean 'host'?")),
            ("prot", Some("did you mean 'port' or 'proto'?")),
            ("dts", Some("did you mean 'dst'?")),
            ("protcol", Some("did you mean 'proto'?")),
            ("protocahin", Some("did you mean 'protochain'?")),
            ("udpp", Some("did you mean 'udp'?")),
            ("TCP", Some("keywords are lowercase: did you mean 'tcp'?")),
            ("host", None),
            ("webserver", None),
            ("10.0.0.1", None),
            ("fe80::1", None),
            ("x", None),
            ("db-1", None),
        ];
        for (word, hint) in table {
            assert_eq!(keyword_hint(word).as_deref(), *hint, "{word}");
        }
    }

    #[test]
    fn edit_distance_counts_a_swap_as_one() {
        assert_eq!(edit_distance("hots", "host"), 1);
        assert_eq!(edit_distance("prot", "proto"), 1);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
