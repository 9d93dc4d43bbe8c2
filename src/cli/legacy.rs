//! The original's first command line, still accepted: the flags of its first README
//! (`--filter-dst-ip`, `--output-relative-timestamp`, ...) and Go's single-dash spelling of
//! long flags (`-filter-dst-ip`), rewritten into today's flags and pcap filter before clap
//! parses them, together with the command line a user would write today.

use std::ffi::OsString;
use std::net::IpAddr;

use clap::Command;

/// Why a legacy flag cannot be translated. Messages say what the flag takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyError {
    #[error("{flag} needs a value, e.g. {flag} {example}")]
    MissingValue { flag: String, example: &'static str },
    #[error("invalid value '{value}' for {flag}: expected an IPv4 or IPv6 address")]
    BadAddress { flag: String, value: String },
    #[error(
        "invalid value '{value}' for {flag}: expected a port number from 0 to 65535 (0: any port)"
    )]
    BadPort { flag: String, value: String },
    #[error("invalid value '{value}' for {flag}: expected tcp, udp, icmp or icmp6")]
    BadProto { flag: String, value: String },
    #[error("invalid value '{value}' for {flag}: use true or false")]
    BadBool { flag: String, value: String },
    #[error("--filter-src-ip {src} and --filter-dst-ip {dst} are of different IP versions: no packet has both")]
    MixedVersions { src: IpAddr, dst: IpAddr },
}

/// A command line after translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// What clap parses (the input itself when nothing needed translating).
    pub args: Vec<OsString>,
    /// The one-line note naming the translated flags and today's command, when any flag
    /// was of the original's first interface or in Go's single-dash spelling.
    pub note: Option<String>,
}

/// The flags of the original's first README that are not flags of today's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LegacyFlag {
    SrcIp,
    DstIp,
    SrcPort,
    DstPort,
    Proto,
    RelativeTimestamp,
}

impl LegacyFlag {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "filter-src-ip" => Self::SrcIp,
            "filter-dst-ip" => Self::DstIp,
            "filter-src-port" => Self::SrcPort,
            "filter-dst-port" => Self::DstPort,
            "filter-proto" => Self::Proto,
            "output-relative-timestamp" => Self::RelativeTimestamp,
            _ => return None,
        })
    }

    /// A value for the "needs a value" message; `None` for the boolean flag.
    fn example(self) -> Option<&'static str> {
        match self {
            Self::SrcIp | Self::DstIp => Some("10.0.0.2"),
            Self::SrcPort | Self::DstPort => Some("8080"),
            Self::Proto => Some("tcp"),
            Self::RelativeTimestamp => None,
        }
    }
}

/// The legacy filters of one command line (a repeated flag: the last one counts, as in Go).
#[derive(Debug, Default)]
struct LegacyFilter {
    src_ip: Option<IpAddr>,
    dst_ip: Option<IpAddr>,
    proto: Option<&'static str>,
    src_port: Option<u16>,
    dst_port: Option<u16>,
}

impl LegacyFilter {
    /// Records `flag`'s `value` (spelled `written` on the command line). Empty addresses and
    /// protocols and port 0 were the original's "no filter" defaults.
    fn set(&mut self, flag: LegacyFlag, written: &str, value: &str) -> Result<(), LegacyError> {
        let ip = |value: &str| -> Result<Option<IpAddr>, LegacyError> {
            if value.is_empty() {
                return Ok(None);
            }
            value
                .parse()
                .map(Some)
                .map_err(|_| LegacyError::BadAddress {
                    flag: written.to_string(),
                    value: value.to_string(),
                })
        };
        let port = |value: &str| -> Result<Option<u16>, LegacyError> {
            match value.parse::<u16>() {
                Ok(0) => Ok(None),
                Ok(p) => Ok(Some(p)),
                Err(_) => Err(LegacyError::BadPort {
                    flag: written.to_string(),
                    value: value.to_string(),
                }),
            }
        };
        match flag {
            LegacyFlag::SrcIp => self.src_ip = ip(value)?,
            LegacyFlag::DstIp => self.dst_ip = ip(value)?,
            LegacyFlag::SrcPort => self.src_port = port(value)?,
            LegacyFlag::DstPort => self.dst_port = port(value)?,
            LegacyFlag::Proto => {
                self.proto = match value.to_ascii_lowercase().as_str() {
                    "" => None,
                    "tcp" => Some("tcp"),
                    "udp" => Some("udp"),
                    "icmp" => Some("icmp"),
                    "icmp6" => Some("icmp6"),
                    _ => {
                        return Err(LegacyError::BadProto {
                            flag: written.to_string(),
                            value: value.to_string(),
                        })
                    }
                }
            }
            LegacyFlag::RelativeTimestamp => {}
        }
        Ok(())
    }

    /// The pcap-filter primitives, joined with `and` ("" when none is set).
    fn pcap(&self) -> Result<String, LegacyError> {
        if let (Some(src), Some(dst)) = (self.src_ip, self.dst_ip) {
            if src.is_ipv4() != dst.is_ipv4() {
                return Err(LegacyError::MixedVersions { src, dst });
            }
        }
        let mut parts = Vec::new();
        if let Some(ip) = self.src_ip {
            parts.push(format!("src host {ip}"));
        }
        if let Some(ip) = self.dst_ip {
            parts.push(format!("dst host {ip}"));
        }
        if let Some(proto) = self.proto {
            parts.push(proto.to_string());
        }
        if let Some(port) = self.src_port {
            parts.push(format!("src port {port}"));
        }
        if let Some(port) = self.dst_port {
            parts.push(format!("dst port {port}"));
        }
        Ok(parts.join(" and "))
    }
}

/// The pcap filter of the legacy primitives `legacy` and the positional expression
/// `words`, joined with `and`; the expression is parenthesized when it has several words
/// (pcap's `and` and `or` bind equally, left to right).
fn join_filters(legacy: &str, words: &str) -> String {
    match (legacy.is_empty(), words.trim().is_empty()) {
        (true, _) => words.to_string(),
        (false, true) => legacy.to_string(),
        (false, false) if words.trim().contains(char::is_whitespace) => {
            format!("{legacy} and ({})", words.trim())
        }
        (false, false) => format!("{legacy} and {}", words.trim()),
    }
}

/// Whether each long flag of `cmd` takes its value from the next argument (`--flag VALUE`);
/// flags whose value must follow `=` (the booleans) do not.
fn long_flags(cmd: &Command) -> Vec<(String, bool)> {
    let mut cmd = cmd.clone();
    cmd.build();
    cmd.get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            let takes_next = arg.get_action().takes_values() && !arg.is_require_equals_set();
            Some((long.to_string(), takes_next))
        })
        .collect()
}

/// A word for the note's command line, quoted for a POSIX shell when it needs to be.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=,@%+".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Rewrites `args` (program name first) for `cmd`: the original's first flags become
/// today's flags and pcap filter, `-long-flag` becomes `--long-flag`. Short flags (`-h`,
/// `-V`), values and the words after `--` are left alone; a command line without anything
/// to translate comes back unchanged.
pub fn translate(args: Vec<OsString>, cmd: &Command) -> Result<Translated, LegacyError> {
    let flags = long_flags(cmd);
    let takes_next = |name: &str| flags.iter().find(|(l, _)| l == name).map(|(_, t)| *t);

    let mut out: Vec<OsString> = args.iter().take(1).cloned().collect();
    let mut words: Vec<String> = Vec::new();
    let mut legacy = LegacyFilter::default();
    let mut translated: Vec<String> = Vec::new();
    let mut rest = args.iter().skip(1);
    let mut only_words = false;
    while let Some(arg) = rest.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg.clone());
            continue;
        };
        if only_words {
            words.push(text.to_string());
            continue;
        }
        if text == "--" {
            only_words = true;
            continue;
        }
        let (dashes, body) = match (text.strip_prefix("--"), text.strip_prefix('-')) {
            (Some(body), _) => ("--", body),
            (None, Some(body)) => ("-", body),
            (None, None) => {
                words.push(text.to_string());
                continue;
            }
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        if let Some(flag) = LegacyFlag::from_name(name) {
            let written = format!("{dashes}{name}");
            translated.push(written.clone());
            match flag.example() {
                Some(example) => {
                    let value = match inline {
                        Some(v) => v.to_string(),
                        None => rest
                            .next()
                            .and_then(|v| v.to_str())
                            .ok_or_else(|| LegacyError::MissingValue {
                                flag: written.clone(),
                                example,
                            })?
                            .to_string(),
                    };
                    legacy.set(flag, &written, &value)?;
                }
                None => {
                    let on = match inline {
                        None => true,
                        Some(v) => super::parse_go_bool(v).map_err(|_| LegacyError::BadBool {
                            flag: written.clone(),
                            value: v.to_string(),
                        })?,
                    };
                    if on {
                        out.push("--timestamp=relative".into());
                    }
                }
            }
            continue;
        }
        match takes_next(name) {
            // Go's single dash before a long flag (one-letter names are clap's short flags).
            Some(next) if dashes == "--" || name.len() > 1 => {
                if dashes == "-" {
                    translated.push(format!("-{name}"));
                }
                out.push(format!("--{body}").into());
                if next && inline.is_none() {
                    if let Some(value) = rest.next() {
                        out.push(value.clone());
                    }
                }
            }
            // Short and unknown flags: clap judges them.
            _ => out.push(arg.clone()),
        }
    }
    if translated.is_empty() {
        return Ok(Translated { args, note: None });
    }

    let filter = join_filters(&legacy.pcap()?, &words.join(" "));
    let mut modern: Vec<String> = vec!["pwru".to_string()];
    modern.extend(out.iter().skip(1).map(|a| shell_word(&a.to_string_lossy())));
    if !filter.is_empty() {
        if filter.starts_with('-') {
            out.push("--".into());
            modern.push("--".to_string());
        }
        modern.push(shell_word(&filter));
        out.push(filter.into());
    }
    let note = format!(
        "pwru: note: {} {} the original's old spelling; today's command: {}",
        translated.join(", "),
        if translated.len() == 1 { "is" } else { "are" },
        modern.join(" ")
    );
    Ok(Translated {
        args: out,
        note: Some(note),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Translated, LegacyError> {
        let args = std::iter::once("pwru")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        translate(args, &super::super::command())
    }

    /// (command line, what clap gets after the program name, today's command line).
    const TRANSLATED: &[(&[&str], &[&str], &str)] = &[
        (
            &[
                "--filter-dst-ip",
                "10.0.0.2",
                "--filter-dst-port=8080",
                "--filter-proto",
                "TCP",
            ],
            &["dst host 10.0.0.2 and tcp and dst port 8080"],
            "pwru 'dst host 10.0.0.2 and tcp and dst port 8080'",
        ),
        (
            &[
                "-filter-src-ip",
                "fd00::1",
                "-filter-dst-ip=fd00::2",
                "-output-tuple",
                "icmp6",
            ],
            &[
                "--output-tuple",
                "src host fd00::1 and dst host fd00::2 and icmp6",
            ],
            "pwru --output-tuple 'src host fd00::1 and dst host fd00::2 and icmp6'",
        ),
        (
            &["--filter-src-port", "53", "udp or tcp"],
            &["src port 53 and (udp or tcp)"],
            "pwru 'src port 53 and (udp or tcp)'",
        ),
        (
            &[
                "--output-relative-timestamp",
                "-output-meta=false",
                "-filter-mark",
                "42",
                "arp",
            ],
            &[
                "--timestamp=relative",
                "--output-meta=false",
                "--filter-mark",
                "42",
                "arp",
            ],
            "pwru --timestamp=relative --output-meta=false --filter-mark 42 arp",
        ),
        (
            &[
                "--output-relative-timestamp=false",
                "--filter-func",
                "-x",
                "--filter-proto",
                "udp",
            ],
            &["--filter-func", "-x", "udp"],
            "pwru --filter-func -x udp",
        ),
        (
            &["-kmods", "veth", "--", "-filter-proto"],
            &["--kmods", "veth", "--", "-filter-proto"],
            "pwru --kmods veth -- -filter-proto",
        ),
        (
            &[
                "--filter-dst-ip",
                "",
                "--filter-dst-port",
                "0",
                "-output-skb",
            ],
            &["--output-skb"],
            "pwru --output-skb",
        ),
    ];

    #[test]
    fn legacy_flags_become_todays_flags_and_filter() {
        for (args, expected, modern) in TRANSLATED {
            let t = run(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let got: Vec<String> = t.args[1..]
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            assert_eq!(got, *expected, "{args:?}");
            let note = t.note.unwrap();
            assert!(
                note.ends_with(&format!("today's command: {modern}")),
                "{note}"
            );
            assert_eq!(note.lines().count(), 1);
        }
        let note = run(&["-filter-dst-ip", "1.2.3.4", "-output-tuple"])
            .unwrap()
            .note
            .unwrap();
        assert!(
            note.starts_with(
                "pwru: note: -filter-dst-ip, -output-tuple are the original's old spelling;"
            ),
            "{note}"
        );
    }

    #[test]
    fn todays_command_lines_are_left_alone() {
        for args in [
            &["-h"][..],
            &["-V"],
            &[
                "--output-meta=false",
                "--filter-func",
                "ip_.*",
                "tcp",
                "port",
                "80",
            ],
            &["--kmods", "-filter-dst-ip"],
            &["--", "-filter-dst-ip"],
            &["-x", "--unknown-flag"],
        ] {
            let t = run(args).unwrap();
            assert_eq!(t.note, None, "{args:?}");
            assert_eq!(t.args.len(), args.len() + 1);
        }
    }

    #[test]
    fn bad_legacy_values_say_what_the_flag_takes() {
        let table: &[(&[&str], &str)] = &[
            (
                &["--filter-dst-ip"],
                "--filter-dst-ip needs a value, e.g. --filter-dst-ip 10.0.0.2",
            ),
            (
                &["-filter-src-ip", "1.2.3"],
                "invalid value '1.2.3' for -filter-src-ip: expected an IPv4 or IPv6 address",
            ),
            (
                &["--filter-dst-port", "http"],
                "invalid value 'http' for --filter-dst-port",
            ),
            (
                &["--filter-src-port=70000"],
                "invalid value '70000' for --filter-src-port",
            ),
            (
                &["--filter-proto", "sctp"],
                "invalid value 'sctp' for --filter-proto: expected tcp, udp, icmp or icmp6",
            ),
            (&["--output-relative-timestamp=yes"], "use true or false"),
            (
                &["--filter-src-ip", "::1", "--filter-dst-ip", "1.2.3.4"],
                "different IP versions",
            ),
        ];
        for (args, needle) in table {
            let e = run(args).unwrap_err().to_string();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word("--output-meta=false"), "--output-meta=false");
        assert_eq!(shell_word("tcp port 80"), "'tcp port 80'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("skb->len"), "'skb->len'");
    }
}
