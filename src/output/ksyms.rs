//! Kernel symbols from /proc/kallsyms, parsed once: exact lookup for probe addresses (FUNC)
//! and nearest-below lookup for return addresses and stack frames (CALLER, --output-stack).
//!
//! kallsyms gives no symbol sizes, so an address is only given to the symbol below it when
//! it lies in that symbol's known text: vmlinux symbols inside kernel text (`_text`..`_etext`,
//! `_sinittext`..`_einittext`), module symbols inside their module (`/proc/modules`), and
//! never past the last symbol. BPF programs are the kernel's `[bpf]` symbols
//! (`bpf_prog_<tag>_<name>`), bounded by the next symbol.

use std::fmt;
use std::io::{self, BufRead};
use std::ops::Range;

/// One text symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ksym {
    pub addr: u64,
    pub name: Box<str>,
    /// Module name for module symbols (`[nf_tables]` in kallsyms).
    pub module: Option<Box<str>>,
}

impl fmt::Display for Ksym {
    /// `name`, or `name[module]` as pwru prints module symbols.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.module {
            Some(m) => write!(f, "{}[{}]", self.name, m),
            None => f.write_str(&self.name),
        }
    }
}

impl Ksym {
    /// Whether the symbol is a BPF program, trampoline or dispatcher (`[bpf]` in kallsyms).
    pub fn is_bpf(&self) -> bool {
        self.module.as_deref() == Some(BPF_OWNER)
    }

    /// Appends the display form to `buf`.
    pub fn push_to(&self, buf: &mut String) {
        buf.push_str(&self.name);
        if let Some(m) = &self.module {
            buf.push('[');
            buf.push_str(m);
            buf.push(']');
        }
    }
}

/// The module name kallsyms gives BPF programs' symbols.
pub const BPF_OWNER: &str = "bpf";

/// Text symbols sorted by address (addresses kept apart for a cache-friendly search), and
/// the text ranges that bound them.
#[derive(Debug, Clone, Default)]
pub struct Ksyms {
    addrs: Vec<u64>,
    syms: Vec<Ksym>,
    /// vmlinux text: `[_text, _etext)` and `[_sinittext, _einittext)` (when kallsyms has
    /// those markers; empty otherwise, and vmlinux symbols are bounded by the next symbol).
    kernel_text: Vec<Range<u64>>,
    /// Each loaded module's memory (`/proc/modules`: base and size).
    modules: Vec<(Box<str>, Range<u64>)>,
}

/// Why kallsyms could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KsymsError {
    #[error("reading /proc/kallsyms: {0}")]
    Io(#[from] io::Error),
    #[error("line {line} of kallsyms is malformed: {text:?}")]
    Malformed { line: usize, text: String },
    #[error("/proc/kallsyms shows only zero addresses (kptr_restrict); run pwru as root")]
    HiddenAddresses,
}

impl Ksyms {
    /// Reads `/proc/kallsyms`, and `/proc/modules` for the modules' extents (without it,
    /// kernels built without modules, module symbols are bounded by the next symbol).
    pub fn load() -> Result<Self, KsymsError> {
        let file = std::fs::File::open("/proc/kallsyms")?;
        let ksyms = Self::parse(io::BufReader::with_capacity(1 << 16, file))?;
        Ok(match std::fs::File::open("/proc/modules") {
            Ok(modules) => ksyms.with_modules(io::BufReader::new(modules))?,
            Err(_) => ksyms,
        })
    }

    /// Adds module extents from `/proc/modules` text (`name size refs deps state base ...`
    /// lines); modules shown at address 0 (addresses hidden) are left out.
    pub fn with_modules(mut self, reader: impl BufRead) -> Result<Self, KsymsError> {
        for (i, line) in reader.lines().enumerate() {
            let line = line?;
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let (Some(name), Some(size), Some(base)) =
                (fields.first(), fields.get(1), fields.get(5))
            else {
                if line.trim().is_empty() {
                    continue;
                }
                return Err(KsymsError::Malformed {
                    line: i + 1,
                    text: line.clone(),
                });
            };
            let size: Option<u64> = size.parse().ok();
            let base = base
                .strip_prefix("0x")
                .and_then(|b| u64::from_str_radix(b, 16).ok());
            let (Some(size), Some(base)) = (size, base) else {
                return Err(KsymsError::Malformed {
                    line: i + 1,
                    text: line.clone(),
                });
            };
            if base != 0 {
                self.modules
                    .push(((*name).into(), base..base.saturating_add(size)));
            }
        }
        Ok(self)
    }

    /// Parses kallsyms text (`addr type name [\t[module]]` lines); keeps text symbols
    /// (types t, T, w, W). Symbols at the same address keep their file order.
    pub fn parse(reader: impl BufRead) -> Result<Self, KsymsError> {
        let mut syms = Vec::new();
        let mut any_nonzero = false;
        let mut total = 0usize;
        let mut reader = reader;
        let mut buf = String::new();
        for i in 0.. {
            buf.clear();
            if reader.read_line(&mut buf)? == 0 {
                break;
            }
            let line = buf.trim_end_matches('\n');
            if line.is_empty() {
                continue;
            }
            total += 1;
            let malformed = || KsymsError::Malformed {
                line: i + 1,
                text: line.to_string(),
            };
            let mut fields = line.split_ascii_whitespace();
            let (Some(addr), Some(kind), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(malformed());
            };
            let addr = u64::from_str_radix(addr, 16).map_err(|_| malformed())?;
            any_nonzero |= addr != 0;
            if !matches!(kind, "t" | "T" | "w" | "W") {
                continue;
            }
            let module = fields
                .next()
                .and_then(|m| m.strip_prefix('[').and_then(|m| m.strip_suffix(']')))
                .map(Box::from);
            syms.push(Ksym {
                addr,
                name: name.into(),
                module,
            });
        }
        if total > 0 && !any_nonzero {
            return Err(KsymsError::HiddenAddresses);
        }
        syms.sort_by_key(|s| s.addr);
        let addrs = syms.iter().map(|s| s.addr).collect();
        let kernel_text = kernel_text(&syms);
        Ok(Self {
            addrs,
            syms,
            kernel_text,
            modules: Vec::new(),
        })
    }

    /// Number of text symbols.
    pub fn len(&self) -> usize {
        self.syms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// The first symbol exactly at `addr`.
    pub fn exact(&self, addr: u64) -> Option<&Ksym> {
        let i = self.addrs.partition_point(|a| *a < addr);
        self.syms.get(i).filter(|s| s.addr == addr)
    }

    /// The symbol containing `addr`: the last one starting at or below it, when `addr` is
    /// in that symbol's text (see the module notes): below the next symbol, inside kernel
    /// text for vmlinux symbols, inside the module for module symbols.
    pub fn nearest(&self, addr: u64) -> Option<&Ksym> {
        let above = self.addrs.partition_point(|a| *a <= addr);
        let found = self.addrs[above.checked_sub(1)?];
        // Several symbols may share that address: the first of them.
        let sym = self.exact(found)?;
        let last = above == self.addrs.len();
        let inside = match &sym.module {
            None if !self.kernel_text.is_empty() => self
                .kernel_text
                .iter()
                .any(|t| t.contains(&sym.addr) && t.contains(&addr)),
            None => !last,
            Some(module) => match self.modules.iter().find(|(m, _)| m == module) {
                Some((_, extent)) => extent.contains(&addr),
                None => !last,
            },
        };
        inside.then_some(sym)
    }

    /// Every address of the symbols named `name` (static functions may repeat).
    /// The address of each of `names` that names exactly one text symbol (a name found
    /// twice, e.g. static functions of two files or of a module and vmlinux, is left out).
    /// One pass over the symbols.
    pub fn unique_addresses<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> std::collections::HashMap<String, u64> {
        use std::collections::HashMap;
        let mut found: HashMap<&str, Option<u64>> = names.into_iter().map(|n| (n, None)).collect();
        let mut twice = std::collections::HashSet::new();
        for s in &self.syms {
            if let Some(slot) = found.get_mut(&*s.name) {
                if slot.replace(s.addr).is_some() {
                    twice.insert(&*s.name);
                }
            }
        }
        found
            .into_iter()
            .filter(|(n, _)| !twice.contains(n))
            .filter_map(|(n, a)| Some((n.to_string(), a?)))
            .collect()
    }

    pub fn addresses_of(&self, name: &str) -> Vec<u64> {
        self.syms
            .iter()
            .filter(|s| &*s.name == name)
            .map(|s| s.addr)
            .collect()
    }
}

/// vmlinux text ranges from kallsyms' section markers: `[_text, _etext)` (or from `_stext`)
/// and `[_sinittext, _einittext)`; each only when both its ends are known.
fn kernel_text(syms: &[Ksym]) -> Vec<Range<u64>> {
    let at = |name: &str| {
        syms.iter()
            .find(|s| s.module.is_none() && &*s.name == name)
            .map(|s| s.addr)
    };
    let core = (at("_text").or(at("_stext")), at("_etext"));
    let init = (at("_sinittext"), at("_einittext"));
    [core, init]
        .into_iter()
        .filter_map(|(start, end)| Some(start?..end?))
        .filter(|r| !r.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_addresses_leave_out_names_found_twice() {
        let text = "ffffffff81000100 T ip_rcv\nffffffff81000200 t dup\nffffffff81000300 t dup\nffffffffc0000100 t veth_xmit\t[veth]\nffffffff81000400 D data_sym\n";
        let k = Ksyms::parse(text.as_bytes()).unwrap();
        let a = k.unique_addresses(["ip_rcv", "dup", "veth_xmit", "data_sym", "missing"]);
        assert_eq!(a.len(), 2, "{a:?}");
        assert_eq!(a["ip_rcv"], 0xffffffff81000100);
        assert_eq!(a["veth_xmit"], 0xffffffffc0000100);
    }

    const SAMPLE: &str = "\
ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81001000 t ip_rcv_core
ffffffff81002000 T ip_rcv
ffffffff81003000 D some_data
ffffffff81004000 W weak_fn
ffffffffc0a01000 t nft_do_chain\t[nf_tables]
ffffffffc0a02000 t nft_other\t[nf_tables]
";

    fn sample() -> Ksyms {
        Ksyms::parse(SAMPLE.as_bytes()).unwrap()
    }

    #[test]
    fn exact_lookup() {
        let k = sample();
        let table: &[(u64, Option<&str>)] = &[
            (0xffffffff81002000, Some("ip_rcv")),
            (0xffffffff81001000, Some("ip_rcv_core")),
            (0xffffffff81000000, Some("_stext")),
            (0xffffffff81002001, None),
            (0xffffffff81003000, None),
            (0xffffffffc0a01000, Some("nft_do_chain[nf_tables]")),
            (0, None),
        ];
        for (addr, want) in table {
            assert_eq!(
                k.exact(*addr).map(|s| s.to_string()).as_deref(),
                *want,
                "{addr:#x}"
            );
        }
        assert_eq!(k.len(), 7);
    }

    #[test]
    fn nearest_lookup() {
        let k = sample();
        let table: &[(u64, Option<&str>)] = &[
            (0xffffffff81002abc, Some("ip_rcv")),
            (0xffffffff81001fff, Some("ip_rcv_core")),
            (0xffffffff81003010, Some("ip_rcv")),
            (0xffffffff81000010, Some("_stext")),
            (0xffffffffc0a01010, Some("nft_do_chain[nf_tables]")),
            // Past the last symbol: no size known, not attributed.
            (u64::MAX, None),
            (0xffffffff80ffffff, None),
        ];
        for (addr, want) in table {
            assert_eq!(
                k.nearest(*addr).map(|s| s.to_string()).as_deref(),
                *want,
                "{addr:#x}"
            );
        }
        let mut buf = String::new();
        k.nearest(0xffffffffc0a01001).unwrap().push_to(&mut buf);
        assert_eq!(buf, "nft_do_chain[nf_tables]");
        assert_eq!(k.addresses_of("ip_rcv"), [0xffffffff81002000]);
    }

    /// A kernel as /proc/kallsyms shows it: core text, init text (its end marker is the
    /// last vmlinux text symbol), BPF programs in the module area, a module, data.
    const LAYOUT: &str = "\
ffffffff81000000 T _text
ffffffff81000000 T _stext
ffffffff81100000 T ip_rcv
ffffffff81100400 T ip_rcv_finish
ffffffff82200000 T _etext
ffffffff83700000 T _sinittext
ffffffff83700100 t some_init_fn
ffffffff837f26a0 T _einittext
ffffffff838e5ba0 D __start_mcount_loc
ffffffffa0001000 t bpf_prog_6deef7357e7b4530_pwru_tp\t[bpf]
ffffffffa0003000 t bpf_trampoline_6442463456\t[bpf]
ffffffffc0a01000 t nft_do_chain\t[nf_tables]
ffffffffc0a02000 t nft_other\t[nf_tables]
";

    const MODULES: &str = "\
nf_tables 360448 0 - Live 0xffffffffc0a00000
hidden 4096 0 - Live 0x0000000000000000
";

    #[test]
    fn nearest_is_bounded_by_known_text() {
        let k = Ksyms::parse(LAYOUT.as_bytes())
            .unwrap()
            .with_modules(MODULES.as_bytes())
            .unwrap();
        let table: &[(&str, u64, Option<&str>)] = &[
            ("normal frame", 0xffffffff81100410, Some("ip_rcv_finish")),
            ("start of text", 0xffffffff81000000, Some("_text")),
            ("core text end", 0xffffffff82200000, None),
            ("between core and init text", 0xffffffff83000000, None),
            ("init text", 0xffffffff83700180, Some("some_init_fn")),
            // What used to print as `_einittext`: a frame in a BPF program's JIT image.
            (
                "bpf frame",
                0xffffffffa0001234,
                Some("bpf_prog_6deef7357e7b4530_pwru_tp[bpf]"),
            ),
            (
                "bpf trampoline",
                0xffffffffa0003010,
                Some("bpf_trampoline_6442463456[bpf]"),
            ),
            ("past init text, before any bpf", 0xffffffff9fffff00, None),
            (
                "module frame",
                0xffffffffc0a01010,
                Some("nft_do_chain[nf_tables]"),
            ),
            (
                "module's last symbol, inside the module",
                0xffffffffc0a50000,
                Some("nft_other[nf_tables]"),
            ),
            (
                "past the module and the last symbol",
                0xffffffffc0b00000,
                None,
            ),
            ("past the last text symbol", u64::MAX, None),
        ];
        for (what, addr, want) in table {
            assert_eq!(
                k.nearest(*addr).map(|s| s.to_string()).as_deref(),
                *want,
                "{what}: {addr:#x}"
            );
        }
        assert!(k.nearest(0xffffffffa0001234).unwrap().is_bpf());
        assert!(!k.nearest(0xffffffffc0a01010).unwrap().is_bpf());
        // Without /proc/modules the module's last symbol is not extended past itself.
        let bare = Ksyms::parse(LAYOUT.as_bytes()).unwrap();
        assert_eq!(bare.nearest(0xffffffffc0a50000), None);
        assert_eq!(
            bare.nearest(0xffffffffc0a01010).map(|s| s.to_string()),
            Some("nft_do_chain[nf_tables]".into())
        );
        assert!(matches!(
            Ksyms::default().with_modules("nf_tables 12 0 - Live".as_bytes()),
            Err(KsymsError::Malformed { line: 1, .. })
        ));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(matches!(
            Ksyms::parse("zz T x\n".as_bytes()),
            Err(KsymsError::Malformed { line: 1, .. })
        ));
        assert!(matches!(
            Ksyms::parse("ffff T\n".as_bytes()),
            Err(KsymsError::Malformed { .. })
        ));
        let hidden = "0000000000000000 T a\n0000000000000000 T b\n";
        assert!(matches!(
            Ksyms::parse(hidden.as_bytes()),
            Err(KsymsError::HiddenAddresses)
        ));
        assert!(Ksyms::parse("".as_bytes()).unwrap().is_empty());
    }

    #[test]
    fn real_kallsyms_resolves_a_known_function() {
        let k = match Ksyms::load() {
            Ok(k) => k,
            Err(e) => {
                eprintln!("skipped: /proc/kallsyms unusable here: {e}");
                return;
            }
        };
        let addrs = k.addresses_of("ip_rcv");
        assert!(!addrs.is_empty(), "ip_rcv in kallsyms");
        assert_eq!(&*k.exact(addrs[0]).unwrap().name, "ip_rcv");
        assert_eq!(&*k.nearest(addrs[0] + 1).unwrap().name, "ip_rcv");
    }
}
