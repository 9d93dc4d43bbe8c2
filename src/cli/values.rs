//! Value types and parsers for flags with their own syntax (mark[/mask], netns, timestamp,
//! backend, function regex, Go-style booleans), written to accept what pwru accepts.

use std::fmt;
use std::path::PathBuf;

use regex::Regex;

/// `--filter-mark mark[/mask]`: keep packets where `(skb->mark & mask) == (mark & mask)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MarkFilter {
    pub mark: u32,
    /// 0 means "no mark filtering" (the default).
    pub mask: u32,
}

impl MarkFilter {
    /// Whether this filter restricts anything.
    pub fn is_active(&self) -> bool {
        self.mask != 0
    }
    /// Whether a packet with `mark` passes.
    pub fn matches(&self, mark: u32) -> bool {
        mark & self.mask == self.mark & self.mask
    }
}

impl fmt::Display for MarkFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}/{:#x}", self.mark, self.mask)
    }
}

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

/// `--filter-netns`: a netns file path or a bare inode number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsSpec {
    /// Any netns path such as `/proc/<pid>/ns/net` or `/run/netns/<name>`.
    Path(PathBuf),
    /// `inode:<n>`.
    Inode(u32),
}

impl NetnsSpec {
    /// The netns inode: stat of the path, or the given inode.
    pub fn inode(&self) -> std::io::Result<u32> {
        match self {
            Self::Inode(n) => Ok(*n),
            Self::Path(p) => {
                use std::os::unix::fs::MetadataExt;
                let ino = std::fs::metadata(p)?.ino();
                u32::try_from(ino).map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "netns inode {ino} of {} does not fit in 32 bits",
                            p.display()
                        ),
                    )
                })
            }
        }
    }
}

/// Parses `/path/to/netns` or `inode:<n>`.
pub fn parse_netns(s: &str) -> Result<NetnsSpec, String> {
    if let Some(n) = s.strip_prefix("inode:") {
        return n.parse::<u32>().map(NetnsSpec::Inode).map_err(|e| {
            format!("invalid netns inode {n:?}: {e} (expected inode:<decimal number>)")
        });
    }
    if s.starts_with('/') {
        return Ok(NetnsSpec::Path(PathBuf::from(s)));
    }
    Err(format!(
        "invalid netns specifier {s:?}: use a path such as /proc/<pid>/ns/net or inode:<n>"
    ))
}

/// `--timestamp`: which time columns to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TimestampMode {
    /// No time column.
    #[default]
    None,
    /// TIMESTAMP: monotonic ns since boot (bpf_ktime_get_ns).
    Current,
    /// TIMESTAMP: ns since the previous event of the same skb (0 for the first).
    Relative,
    /// TIME: wall clock at print time, plus TIMESTAMP.
    Absolute,
}

/// `--backend`: how probes attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Pick the best available (also spelled as the empty string).
    #[default]
    Auto,
    KprobeMulti,
    Kprobe,
    Tracepoint,
}

impl Backend {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::KprobeMulti => "kprobe-multi",
            Self::Kprobe => "kprobe",
            Self::Tracepoint => "tracepoint",
        }
    }
}

/// Parses a backend name; `""` means auto.
pub fn parse_backend(s: &str) -> Result<Backend, String> {
    Ok(match s {
        "" | "auto" => Backend::Auto,
        "kprobe-multi" => Backend::KprobeMulti,
        "kprobe" => Backend::Kprobe,
        "tracepoint" => Backend::Tracepoint,
        _ => {
            return Err(format!(
                "invalid tracing backend {s:?}: use auto, kprobe-multi, kprobe or tracepoint"
            ))
        }
    })
}

/// `--filter-func`: a regex that must match the whole function name.
#[derive(Debug, Clone)]
pub struct FuncFilter {
    /// The pattern as given.
    pub pattern: String,
    anchored: Regex,
}

impl FuncFilter {
    /// Whether `name` matches the pattern as a whole.
    pub fn is_match(&self, name: &str) -> bool {
        self.anchored.is_match(name)
    }
}

impl PartialEq for FuncFilter {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

/// Compiles a `--filter-func` pattern anchored at both ends; errors are one line.
pub fn parse_func_filter(s: &str) -> Result<FuncFilter, String> {
    match Regex::new(&format!("^(?:{s})$")) {
        Ok(anchored) => Ok(FuncFilter {
            pattern: s.to_string(),
            anchored,
        }),
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
