//! Which kernel functions to probe: BTF's skb functions ∩ what the kernel lets us probe
//! (`available_filter_functions[_addrs]` when readable, else kallsyms), narrowed by `--filter-func`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use crate::btf::{SkbFunc, SkbTracepoint};

/// One probe target: a function (kprobe backends) or a tracepoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub module: Option<String>,
    /// 1-based skb argument position for functions, 0-based for tracepoints.
    pub skb_arg: u16,
    /// Position of an `enum skb_drop_reason` argument (same numbering as `skb_arg`).
    pub drop_reason_arg: Option<u16>,
    /// Number of arguments.
    pub nargs: u16,
    /// Functions: the FUNC's BTF id (in its module's BTF for a module), 0 for tracepoints.
    pub btf_id: u32,
    /// Functions: a struct or union is passed or returned by value (the argument slots of
    /// an fentry program then do not follow the parameter positions).
    pub by_value: bool,
    /// Functions: the ftrace location (`available_filter_functions_addrs`, 6.5+). A
    /// kprobe-multi link given addresses skips the kernel's walk of every kallsyms name
    /// that a link given names costs.
    pub ftrace_addr: Option<u64>,
}

impl Target {
    pub fn from_func(f: &SkbFunc) -> Self {
        Target {
            name: f.name.clone(),
            module: f.module.clone(),
            skb_arg: f.skb_arg,
            drop_reason_arg: f.drop_reason_arg,
            nargs: f.nargs,
            btf_id: f.btf_id,
            by_value: f.by_value,
            ftrace_addr: None,
        }
    }

    pub fn from_tracepoint(t: &SkbTracepoint) -> Self {
        Target {
            name: t.name.clone(),
            module: t.module.clone(),
            skb_arg: t.skb_arg,
            drop_reason_arg: t.drop_reason_arg,
            nargs: t.nargs,
            btf_id: 0,
            by_value: false,
            ftrace_addr: None,
        }
    }
}

/// Where the list of probeable functions came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeableSource {
    /// tracefs `available_filter_functions_addrs` (6.5+): the same with each function's
    /// ftrace location.
    FilterFunctionAddrs(String),
    /// tracefs `available_filter_functions` (what ftrace, hence kprobe-multi, accepts).
    FilterFunctions(String),
    /// `/proc/kallsyms` text symbols (tracefs unreadable).
    Kallsyms,
    /// Neither could be read: every BTF function is tried; the kernel refuses some.
    Unchecked,
}

/// The function names the running kernel can probe (among those asked about), with their
/// ftrace locations when the source gives them.
#[derive(Clone, Debug)]
pub struct Probeable {
    pub source: ProbeableSource,
    names: HashMap<String, Option<u64>>,
}

/// Whether the probeable functions are wanted with their ftrace locations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locations {
    /// `available_filter_functions_addrs` first (6.5+): the kernel prints it about 60 %
    /// more slowly than the list without addresses.
    With,
    /// Only the list without addresses.
    Without,
}

/// Which functions of a tracefs listing a run asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListingScope {
    /// vmlinux's only. The kernel lists its own functions first and the modules' after
    /// them, so the read stops at the first module line: the kernel restarts its walk at
    /// the first record for every page it prints, and a module's lines are the dearest.
    Vmlinux,
    /// The modules' too (module BTF is loaded): the whole listing.
    WithModules,
}

/// tracefs (new path first, then debugfs): with addresses, then without.
const FILTER_FUNCTION_FILES: [(&str, bool); 4] = [
    ("/sys/kernel/tracing/available_filter_functions_addrs", true),
    (
        "/sys/kernel/debug/tracing/available_filter_functions_addrs",
        true,
    ),
    ("/sys/kernel/tracing/available_filter_functions", false),
    (
        "/sys/kernel/debug/tracing/available_filter_functions",
        false,
    ),
];

/// The tracefs lists to try, in order, for `locations`.
fn filter_function_files(locations: Locations) -> impl Iterator<Item = (&'static str, bool)> {
    FILTER_FUNCTION_FILES
        .into_iter()
        .filter(move |&(_, with_addrs)| !with_addrs || locations == Locations::With)
}

impl Probeable {
    /// Reads tracefs (with addresses first when `locations` asks for them), then
    /// kallsyms; keeps only the names `wanted` accepts (a few thousand skb functions of
    /// some 40 000 lines).
    pub fn discover(
        wanted: &dyn Fn(&str) -> bool,
        locations: Locations,
        scope: ListingScope,
    ) -> Self {
        for (path, with_addrs) in filter_function_files(locations) {
            let (source, line): (_, LineParser) = match with_addrs {
                true => (
                    ProbeableSource::FilterFunctionAddrs(path.to_string()),
                    filter_function_addrs_line,
                ),
                false => (
                    ProbeableSource::FilterFunctions(path.to_string()),
                    filter_function_line,
                ),
            };
            if let Ok(names) = read_listing(path, line, wanted, scope) {
                return Probeable { source, names };
            }
        }
        match read_listing(
            "/proc/kallsyms",
            kallsyms_text_line,
            wanted,
            ListingScope::WithModules,
        ) {
            Ok(names) => Probeable {
                source: ProbeableSource::Kallsyms,
                names,
            },
            Err(_) => Probeable {
                source: ProbeableSource::Unchecked,
                names: HashMap::new(),
            },
        }
    }

    pub fn from_names(source: ProbeableSource, names: HashSet<String>) -> Self {
        let names = names.into_iter().map(|n| (n, None)).collect();
        Probeable { source, names }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.source == ProbeableSource::Unchecked || self.names.contains_key(name)
    }

    /// The ftrace location of `name` (its first, as the kernel's own name lookup takes).
    pub fn ftrace_addr(&self, name: &str) -> Option<u64> {
        self.names.get(name).copied().flatten()
    }

    pub fn describe(&self) -> String {
        match &self.source {
            ProbeableSource::FilterFunctionAddrs(p) | ProbeableSource::FilterFunctions(p) => {
                p.clone()
            }
            ProbeableSource::Kallsyms => "/proc/kallsyms (tracefs not readable)".into(),
            ProbeableSource::Unchecked => "nothing (tracefs and kallsyms unreadable)".into(),
        }
    }
}

/// One line of a kernel listing: the function name it gives and the hex text of its
/// address (`None` where the listing has none), or `None` for a line that names no
/// function. The address is parsed only for the names kept.
type LineParser = fn(&str) -> Option<(&str, Option<&str>)>;

/// `available_filter_functions` lines: `name` or `name [module]`.
fn filter_function_line(line: &str) -> Option<(&str, Option<&str>)> {
    Some((line.split_ascii_whitespace().next()?, None))
}

/// `available_filter_functions_addrs` lines: `addr name` or `addr name [module]`. A
/// name can appear more than once (static functions of the same name).
fn filter_function_addrs_line(line: &str) -> Option<(&str, Option<&str>)> {
    let mut fields = line.split_ascii_whitespace();
    let (addr, name) = (fields.next()?, fields.next()?);
    Some((name, Some(addr)))
}

/// `/proc/kallsyms` lines `addr type name [module]`: names of text symbols (their
/// addresses are function starts, not ftrace locations: not kept).
fn kallsyms_text_line(line: &str) -> Option<(&str, Option<&str>)> {
    let mut fields = line.split_ascii_whitespace();
    let (_addr, ty, name) = (fields.next()?, fields.next()?, fields.next()?);
    matches!(ty, "t" | "T").then_some((name, None))
}

/// The listing at `path` as [`parse_listing`] reads it, in 64 KiB reads.
fn read_listing(
    path: &str,
    line: LineParser,
    wanted: &dyn Fn(&str) -> bool,
    scope: ListingScope,
) -> io::Result<HashMap<String, Option<u64>>> {
    parse_listing(
        BufReader::with_capacity(1 << 16, File::open(path)?),
        line,
        wanted,
        scope,
    )
}

/// A tracefs listing line of a module's function: `... name [module]`.
fn is_module_line(line: &[u8]) -> bool {
    line.trim_ascii_end().ends_with(b"]")
}

/// The names `wanted` accepts in a listing, each with the address of its first line (the
/// one the kernel's own name lookup takes). Parsed line by line as the kernel prints it:
/// the 1-3 MB of text are never held whole. (The kernel's printing sets the time, 0.35-0.45 s
/// in the 6.12 guest, whatever the buffer: each read returns one page at most and restarts
/// the kernel's walk at the first record.) In [`ListingScope::Vmlinux`], the first line of a
/// module's function ends it.
fn parse_listing(
    mut reader: impl BufRead,
    line: LineParser,
    wanted: &dyn Fn(&str) -> bool,
    scope: ListingScope,
) -> io::Result<HashMap<String, Option<u64>>> {
    let until_modules = scope == ListingScope::Vmlinux;
    let mut names = HashMap::new();
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 || (until_modules && is_module_line(&buf)) {
            return Ok(names);
        }
        let Some((name, addr)) = std::str::from_utf8(&buf).ok().and_then(line) else {
            continue;
        };
        if wanted(name) && !names.contains_key(name) {
            let addr = addr.and_then(|hex| u64::from_str_radix(hex, 16).ok());
            names.insert(name.to_string(), addr);
        }
    }
}

/// The kprobe targets: skb functions the kernel can probe and `keep` accepts.
pub fn select_functions(
    funcs: &[SkbFunc],
    probeable: &Probeable,
    keep: impl Fn(&str) -> bool,
) -> Vec<Target> {
    funcs
        .iter()
        .filter(|f| keep(&f.name) && probeable.contains(&f.name))
        .map(|f| Target {
            ftrace_addr: probeable.ftrace_addr(&f.name),
            ..Target::from_func(f)
        })
        .collect()
}

/// The tracepoint targets `keep` accepts.
pub fn select_tracepoints(tps: &[SkbTracepoint], keep: impl Fn(&str) -> bool) -> Vec<Target> {
    tps.iter()
        .filter(|t| keep(&t.name))
        .map(Target::from_tracepoint)
        .collect()
}

/// Whether a kprobe PMU exists (`CONFIG_KPROBES` with perf events).
pub fn kprobes_available() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_functions_with_modules() {
        let text = "ip_rcv\nveth_xmit [veth]\n\n__netif_receive_skb\n";
        let parse = |wanted: &dyn Fn(&str) -> bool| {
            parse_listing(
                text.as_bytes(),
                filter_function_line,
                wanted,
                ListingScope::WithModules,
            )
            .unwrap()
        };
        let names = parse(&|_| true);
        assert!(names.contains_key("ip_rcv"));
        assert!(names.contains_key("veth_xmit"));
        assert_eq!(names.len(), 3);
        let names = parse(&|n| n.starts_with("ip"));
        assert_eq!(names.keys().collect::<Vec<_>>(), ["ip_rcv"]);
    }

    #[test]
    fn a_vmlinux_scope_stops_reading_at_the_first_module_line() {
        // After the first module line, the reader fails: a read that stops there never
        // reaches it.
        struct Fails;
        impl io::Read for Fails {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("read past the kernel's own functions"))
            }
        }
        let text = "ffffffff81000104 ip_rcv\nffffffff81000204 dup\n\
                    ffffffffc0000004 veth_xmit [veth]\nffffffffc0000104 dup [veth]\n";
        let listing = || BufReader::with_capacity(8, io::Read::chain(text.as_bytes(), Fails));
        let names = parse_listing(
            listing(),
            filter_function_addrs_line,
            &|_| true,
            ListingScope::Vmlinux,
        )
        .unwrap();
        assert_eq!(names.len(), 2);
        assert_eq!(names.get("dup"), Some(&Some(0xffffffff81000204)));
        assert!(!names.contains_key("veth_xmit"));
        // The whole listing is read when module functions are asked about.
        assert!(parse_listing(
            listing(),
            filter_function_addrs_line,
            &|_| true,
            ListingScope::WithModules
        )
        .is_err());
        let plain = "ip_rcv\nveth_xmit [veth]\nudp_rcv\n";
        let names = parse_listing(
            plain.as_bytes(),
            filter_function_line,
            &|_| true,
            ListingScope::Vmlinux,
        )
        .unwrap();
        assert_eq!(names.keys().collect::<Vec<_>>(), ["ip_rcv"]);
        assert!(is_module_line(b"veth_xmit [veth]\n"));
        assert!(!is_module_line(b"ffffffff81000104 ip_rcv\n"));
    }

    #[test]
    fn listings_parse_across_read_boundaries_and_skip_bad_lines() {
        let text = b"ffffffff81000104 ip_rcv\n\xff\xfe bad\nffffffffc0000004 veth_xmit [veth]\n";
        // a 5-byte buffer splits every line over several reads
        let names = parse_listing(
            BufReader::with_capacity(5, &text[..]),
            filter_function_addrs_line,
            &|_| true,
            ListingScope::WithModules,
        )
        .unwrap();
        assert_eq!(names.len(), 2);
        assert_eq!(names.get("ip_rcv"), Some(&Some(0xffffffff81000104)));
        assert_eq!(names.get("veth_xmit"), Some(&Some(0xffffffffc0000004)));
        // a file that cannot be opened is an error (the next source is tried)
        assert!(read_listing(
            "/nonexistent/listing",
            filter_function_line,
            &|_| true,
            ListingScope::WithModules
        )
        .is_err());
    }

    #[test]
    fn only_kprobe_multi_reads_the_slower_list_with_addresses() {
        let with: Vec<_> = filter_function_files(Locations::With).collect();
        assert_eq!(with.len(), 4);
        assert!(with[0].1 && with[0].0.ends_with("available_filter_functions_addrs"));
        let without: Vec<_> = filter_function_files(Locations::Without).collect();
        assert_eq!(without.len(), 2);
        assert!(without
            .iter()
            .all(|&(path, addrs)| !addrs && path.ends_with("available_filter_functions")));
    }

    #[test]
    fn filter_function_addrs_keep_the_first_address_of_a_name() {
        let text = "ffffffff81000104 ip_rcv\nffffffff81000204 dup\nffffffff81000304 dup\n\
                    ffffffffc0000004 veth_xmit [veth]\nnot-hex other\n";
        let names = parse_listing(
            text.as_bytes(),
            filter_function_addrs_line,
            &|n| n != "other",
            ListingScope::WithModules,
        )
        .unwrap();
        assert_eq!(names.get("ip_rcv"), Some(&Some(0xffffffff81000104)));
        assert_eq!(names.get("dup"), Some(&Some(0xffffffff81000204)));
        assert_eq!(names.get("veth_xmit"), Some(&Some(0xffffffffc0000004)));
        assert_eq!(names.len(), 3);
        let probeable = Probeable {
            source: ProbeableSource::FilterFunctionAddrs("f".into()),
            names,
        };
        assert_eq!(probeable.ftrace_addr("dup"), Some(0xffffffff81000204));
        assert_eq!(probeable.ftrace_addr("absent"), None);
    }

    #[test]
    fn kallsyms_text_symbols_only() {
        let text = "ffffffff81000000 T _text\nffffffff82000000 D some_data\n\
                    ffffffffc0000000 t veth_xmit\t[veth]\n";
        let names = parse_listing(
            text.as_bytes(),
            kallsyms_text_line,
            &|_| true,
            ListingScope::WithModules,
        )
        .unwrap();
        assert!(names.contains_key("_text"));
        assert!(names.contains_key("veth_xmit"));
        assert!(!names.contains_key("some_data"));
        assert!(names.values().all(Option::is_none));
    }

    #[test]
    fn selection_intersects_and_filters() {
        let f = |name: &str, arg| SkbFunc {
            name: name.into(),
            skb_arg: arg,
            drop_reason_arg: None,
            module: None,
            btf_id: 1,
            nargs: 2,
            by_value: false,
        };
        let funcs = vec![f("ip_rcv", 1), f("ip_output", 3), f("inlined_away", 1)];
        let probeable = Probeable::from_names(
            ProbeableSource::Kallsyms,
            ["ip_rcv", "ip_output"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        let t = select_functions(&funcs, &probeable, |n| n.starts_with("ip_"));
        assert_eq!(
            t.iter()
                .map(|t| (t.name.as_str(), t.skb_arg))
                .collect::<Vec<_>>(),
            vec![("ip_rcv", 1), ("ip_output", 3)]
        );
        let unchecked = Probeable::from_names(ProbeableSource::Unchecked, HashSet::new());
        assert_eq!(select_functions(&funcs, &unchecked, |_| true).len(), 3);
    }
}
