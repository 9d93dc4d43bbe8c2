//! Kernel symbols from /proc/kallsyms, parsed once: exact lookup for probe addresses (FUNC)
//! and nearest-below lookup for return addresses and stack frames (CALLER, --output-stack).

use std::fmt;
use std::io::{self, BufRead};

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

/// Text symbols sorted by address (addresses kept apart for a cache-friendly search).
#[derive(Debug, Clone, Default)]
pub struct Ksyms {
    addrs: Vec<u64>,
    syms: Vec<Ksym>,
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
    /// Reads `/proc/kallsyms`.
    pub fn load() -> Result<Self, KsymsError> {
        let file = std::fs::File::open("/proc/kallsyms")?;
        Self::parse(io::BufReader::with_capacity(1 << 16, file))
    }

    /// Parses kallsyms text (`addr type name [\t[module]]` lines); keeps text symbols
    /// (types t, T, w, W). Symbols at the same address keep their file order.
    pub fn parse(reader: impl BufRead) -> Result<Self, KsymsError> {
        let mut syms = Vec::new();
        let mut any_nonzero = false;
        let mut total = 0usize;
        for (i, line) in reader.lines().enumerate() {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            total += 1;
            let malformed = || KsymsError::Malformed {
                line: i + 1,
                text: line.clone(),
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
        Ok(Self { addrs, syms })
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

    /// The symbol containing `addr`: the last one starting at or below it.
    pub fn nearest(&self, addr: u64) -> Option<&Ksym> {
        let i = self.addrs.partition_point(|a| *a <= addr);
        let found = self.addrs[i.checked_sub(1)?];
        // Several symbols may share that address: return the first of them.
        self.exact(found)
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
            (u64::MAX, Some("nft_other[nf_tables]")),
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
        k.nearest(0xffffffffc0a02001).unwrap().push_to(&mut buf);
        assert_eq!(buf, "nft_other[nf_tables]");
        assert_eq!(k.addresses_of("ip_rcv"), [0xffffffff81002000]);
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
