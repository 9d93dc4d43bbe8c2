//! Parsers for flags with their own syntax (mark[/mask], netns, timestamp,
//! backend, function regex, Go-style booleans), written to accept what pwru accepts; the
//! values are the clap-free types of `settings`.

use std::path::{Path, PathBuf};

use clap::builder::PossibleValue;

use crate::attach::BackendKind;
use crate::output::netns::RUN_NETNS;
use crate::settings::{
    BackendChoice, DumpLinkType, FuncFilter, MarkFilter, NetnsSpec, TimestampMode,
};

fn parse_u32_hex_or_dec(s: &str, what: &str) -> Result<u32, String> {
    let (digits, radix) = match s.get(..2) {
        Some("0x") | Some("0X") => (&s[2..], 16),
        _ => (s, 10),
    };
    if digits.is_empty() || digits.starts_with('+') {
        return Err(format!(
            "invalid {what} {s:?}: expected a decimal or 0x-prefixed hex u32"
        ));
    }
    u32::from_str_radix(digits, radix).map_err(|e| {
        format!("invalid {what} {s:?}: {e} (expected a decimal or 0x-prefixed hex u32)")
    })
}

/// Parses `mark[/mask]`; without a mask the match is exact (mask 0xffffffff).
pub fn parse_mark(s: &str) -> Result<MarkFilter, String> {
    let parts: Vec<&str> = s.split('/').collect();
    if parts.len() > 2 {
        return Err(format!(
            "invalid mark value {s:?}: expected mark[/mask], e.g. 0xa00/0xf00"
        ));
    }
    let mark = parse_u32_hex_or_dec(parts[0], "mark")?;
    let mask = match parts.get(1) {
        Some(m) => parse_u32_hex_or_dec(m, "mask")?,
        None => u32::MAX,
    };
    Ok(MarkFilter { mark, mask })
}

/// Parses `/path/to/netns`, `inode:<n>`, or the NAME of `/run/netns/NAME` (as `ip netns`
/// names it).
pub fn parse_netns(s: &str) -> Result<NetnsSpec, String> {
    if let Some(n) = s.strip_prefix("inode:") {
        return n.parse::<u32>().map(NetnsSpec::Inode).map_err(|e| {
            format!("invalid netns inode '{n}': {e} (expected inode:<decimal number>)")
        });
    }
    if s.starts_with('/') {
        return Ok(NetnsSpec::Path(PathBuf::from(s)));
    }
    let usage = "use a name from `ip netns list`, a path such as /proc/<pid>/ns/net, or inode:<n>";
    if s.is_empty() || s == "." || s == ".." || s.contains('/') {
        return Err(format!("invalid netns '{s}': {usage}"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid netns '{s}': write inode:{s} for a netns inode ({usage})"
        ));
    }
    Ok(NetnsSpec::Path(Path::new(RUN_NETNS).join(s)))
}

/// `--timestamp` values, with the help text of each.
impl clap::ValueEnum for TimestampMode {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            TimestampMode::None,
            TimestampMode::Current,
            TimestampMode::Relative,
            TimestampMode::Absolute,
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            TimestampMode::None => PossibleValue::new("none").help("No time column"),
            TimestampMode::Current => PossibleValue::new("current")
                .help("TIMESTAMP: monotonic ns since boot (bpf_ktime_get_ns)"),
            TimestampMode::Relative => PossibleValue::new("relative")
                .help("TIMESTAMP: ns since the previous event of the same skb (0 for the first)"),
            TimestampMode::Absolute => PossibleValue::new("absolute")
                .help("TIME: wall clock at print time, plus TIMESTAMP"),
        })
    }
}

/// Parses a backend name; `""` means auto.
pub fn parse_backend(s: &str) -> Result<BackendChoice, String> {
    match s {
        "" | "auto" => Ok(BackendChoice::Auto),
        _ => BackendKind::from_name(s)
            .map(BackendChoice::Named)
            .ok_or_else(|| {
                format!(
                    "invalid tracing backend {s:?}: use auto, kprobe-multi, kprobe, tracepoint or fentry"
                )
            }),
    }
}

/// `--link-type`: tcpdump's `-y` names (any case) or the LINKTYPE_ numbers.
pub fn parse_link_type(s: &str) -> Result<DumpLinkType, String> {
    match s.to_ascii_uppercase().as_str() {
        "EN10MB" | "ETHERNET" | "1" => Ok(DumpLinkType::Ethernet),
        "RAW" | "IPV4" | "IPV6" | "101" | "12" | "228" | "229" => Ok(DumpLinkType::RawIp),
        "LINUX_SLL" | "113" => Ok(DumpLinkType::LinuxSll),
        "LINUX_SLL2" | "276" => Ok(DumpLinkType::LinuxSll2),
        _ => Err(format!(
            "unknown link type '{s}': use EN10MB, RAW, LINUX_SLL or LINUX_SLL2"
        )),
    }
}

/// Compiles a `--filter-func` pattern anchored at both ends; errors are one line.
pub fn parse_func_filter(s: &str) -> Result<FuncFilter, String> {
    match FuncFilter::new(s) {
        Ok(filter) => Ok(filter),
        Err(e) => {
            let text = e.to_string();
            let reason = text
                .lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix("error:"))
                .map(str::trim)
                .unwrap_or_else(|| text.lines().last().unwrap_or("").trim())
                .to_string();
            Err(format!(
                "invalid regex {s:?}: {reason} (it must match whole function names, e.g. 'ip_.*' or '.*xmit.*')"
            ))
        }
    }
}

/// Go `strconv.ParseBool` spellings, as pflag accepts for `--flag=value`.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid boolean {s:?}: use true or false")),
    }
}

/// `--filter-kprobe-batch`: a positive count.
pub fn parse_batch(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("batch size must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("invalid batch size {s:?}: {e}")),
    }
}
