//! BTF for our own programs: a minimal blob naming each program's function and prototype
//! (`int NAME(struct CTX *ctx)` or `int NAME(void *ctx)`), and the `.BTF.ext` func info
//! records that point each ELF section's program at its function. With them `bpftool prog`
//! shows full names and a program can be traced with fentry/fexit (which needs its BTF).

use std::collections::HashMap;

/// `BTF_KIND_*` values used here.
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_STRUCT: u32 = 4;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
/// `BTF_INT_SIGNED`.
const INT_SIGNED: u32 = 1;
/// `BTF_FUNC_GLOBAL`.
const FUNC_GLOBAL: u32 = 1;
/// `BTF_MAGIC`.
const MAGIC: u16 = 0xeb9f;
/// Size of `struct btf_header` and of `struct btf_ext_header` without CO-RE relocations.
const HEADER_LEN: u32 = 24;
/// Size of one `struct bpf_func_info` record.
pub const FUNC_INFO_SIZE: u32 = 8;

/// The type id of the `FUNC` in a blob of [`func_btf`].
pub const FUNC_TYPE_ID: u32 = 5;

/// What a function's one argument points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ctx<'a> {
    /// `struct NAME *ctx` (e.g. `__sk_buff`, `pt_regs`: the verifier matches the context
    /// type by name).
    Struct(&'a str),
    /// `void *ctx`.
    Void,
}

/// A BTF type section being built: functions of one argument returning `int`. Types and
/// strings are shared (one `int`, one prototype per context type).
#[derive(Clone, Debug)]
pub struct FuncBtf {
    /// Type records as little-endian words, type id 1 first.
    words: Vec<u32>,
    next_id: u32,
    strings: Vec<u8>,
    string_offsets: HashMap<String, u32>,
    int_id: Option<u32>,
    protos: HashMap<Option<String>, u32>,
}

impl Default for FuncBtf {
    fn default() -> Self {
        FuncBtf {
            words: Vec::new(),
            next_id: 1,
            strings: vec![0],
            string_offsets: HashMap::from([(String::new(), 0)]),
            int_id: None,
            protos: HashMap::new(),
        }
    }
}

impl FuncBtf {
    pub fn new() -> Self {
        Self::default()
    }

    /// The offset of `s` in the string section (added once).
    pub fn string(&mut self, s: &str) -> u32 {
        if let Some(&off) = self.string_offsets.get(s) {
            return off;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        self.string_offsets.insert(s.to_string(), off);
        off
    }

    fn push_type(&mut self, words: &[u32]) -> u32 {
        self.words.extend_from_slice(words);
        self.next_id += 1;
        self.next_id - 1
    }

    /// The prototype `int (CTX *ctx)`, added with what it needs the first time.
    fn proto(&mut self, ctx: Ctx<'_>) -> u32 {
        let key = match ctx {
            Ctx::Struct(name) => Some(name.to_string()),
            Ctx::Void => None,
        };
        if let Some(&id) = self.protos.get(&key) {
            return id;
        }
        let int = match self.int_id {
            Some(id) => id,
            None => {
                let name = self.string("int");
                let id = self.push_type(&[name, info(KIND_INT, 0), 4, (INT_SIGNED << 24) | 32]);
                self.int_id = Some(id);
                id
            }
        };
        let pointee = match ctx {
            // No members: only the name matters.
            Ctx::Struct(name) => {
                let name = self.string(name);
                self.push_type(&[name, info(KIND_STRUCT, 0), 0])
            }
            Ctx::Void => 0,
        };
        let ptr = self.push_type(&[0, info(KIND_PTR, 0), pointee]);
        let param = self.string("ctx");
        let id = self.push_type(&[0, info(KIND_FUNC_PROTO, 1), int, param, ptr]);
        self.protos.insert(key, id);
        id
    }

    /// Adds the global function `int name(CTX *ctx)` and returns its `FUNC` type id.
    /// `name` must be a C identifier (the kernel checks; see [`func_name`]).
    pub fn add_func(&mut self, name: &str, ctx: Ctx<'_>) -> u32 {
        let proto = self.proto(ctx);
        let name = self.string(name);
        self.push_type(&[name, info(KIND_FUNC, FUNC_GLOBAL), proto])
    }

    /// The blob (header, types, strings), little-endian, as an ELF `.BTF` section holds it.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let type_bytes: Vec<u8> = self.words.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut blob = Vec::with_capacity(24 + type_bytes.len() + self.strings.len());
        blob.extend_from_slice(&MAGIC.to_le_bytes());
        blob.push(1); // version
        blob.push(0); // flags
        for v in [
            HEADER_LEN,
            0,
            type_bytes.len() as u32,
            type_bytes.len() as u32,
            self.strings.len() as u32,
        ] {
            blob.extend_from_slice(&v.to_le_bytes());
        }
        blob.extend_from_slice(&type_bytes);
        blob.extend_from_slice(&self.strings);
        blob
    }

    /// The blob in host byte order, for `BPF_BTF_LOAD`.
    pub fn to_kernel_bytes(&self) -> Vec<u8> {
        let blob = self.to_le_bytes();
        if cfg!(target_endian = "big") {
            // The kernel reads BTF in host order: re-encode the header and types big-endian.
            return to_big_endian(&blob, self.words.len() * 4);
        }
        blob
    }
}

fn info(kind: u32, vlen: u32) -> u32 {
    (kind << 24) | vlen
}

/// The raw BTF (host order) of one function `int name(struct ctx *ctx)`, e.g.
/// `ctx` = `__sk_buff` for a tc program. The `FUNC` is [`FUNC_TYPE_ID`].
pub fn func_btf(name: &str, ctx: &str) -> Vec<u8> {
    let mut btf = FuncBtf::new();
    btf.add_func(name, Ctx::Struct(ctx));
    btf.to_kernel_bytes()
}

/// A C identifier for a program name (kernel names may hold `.`, BTF names may not):
/// other characters become `_`, and a leading digit gets a `_` before it.
pub fn func_name(program: &str) -> String {
    let mut out: String = program
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' => c,
            _ => '_',
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A little-endian `.BTF.ext` section with func info only: for each (section name offset
/// in the `.BTF` strings, `FUNC` type id), one record for the function at the start of
/// that ELF section. No line info, no CO-RE relocations.
pub fn btf_ext_func_info(sections: &[(u32, u32)]) -> Vec<u8> {
    let mut info: Vec<u32> = vec![FUNC_INFO_SIZE];
    for &(section, func) in sections {
        // btf_ext_info_sec: section name, record count; then insn_off (bytes), type id.
        info.extend_from_slice(&[section, 1, 0, func]);
    }
    let info_len = if sections.is_empty() {
        0
    } else {
        info.len() as u32 * 4
    };
    let mut out = Vec::with_capacity(HEADER_LEN as usize + info_len as usize);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.push(1); // version
    out.push(0); // flags
                 // hdr_len, func_info_off, func_info_len, line_info_off, line_info_len
    for v in [HEADER_LEN, 0, info_len, info_len, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    if info_len > 0 {
        out.extend(info.iter().flat_map(|v| v.to_le_bytes()));
    }
    out
}

/// `blob` (little-endian) with its header words and type words in big-endian order.
fn to_big_endian(blob: &[u8], types_len: usize) -> Vec<u8> {
    let mut out = blob.to_vec();
    out[0..2].copy_from_slice(&MAGIC.to_be_bytes());
    for at in (4..24 + types_len).step_by(4) {
        out[at..at + 4].reverse();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn the_blob_names_the_function_and_its_context() {
        let mut btf = FuncBtf::new();
        assert_eq!(
            btf.add_func("drop_tcp", Ctx::Struct("__sk_buff")),
            FUNC_TYPE_ID
        );
        let b = btf.to_le_bytes();
        assert_eq!(&b[..4], &[0x9f, 0xeb, 1, 0]);
        let (type_len, str_off, str_len) = (word(&b, 12), word(&b, 16), word(&b, 20));
        assert_eq!(type_len, 18 * 4);
        assert_eq!(str_off, type_len);
        let strings = &b[24 + str_off as usize..];
        assert_eq!(strings.len(), str_len as usize);
        assert_eq!(strings, b"\0int\0__sk_buff\0ctx\0drop_tcp\0");
        // The FUNC (5th type, after 4 + 3 + 3 + 5 words) points at the prototype [4].
        let func = 24 + 15 * 4;
        assert_eq!(word(&b, func + 4), (KIND_FUNC << 24) | FUNC_GLOBAL);
        assert_eq!(word(&b, func + 8), 4);
        if cfg!(target_endian = "little") {
            assert_eq!(func_btf("drop_tcp", "__sk_buff"), b);
        }
    }

    #[test]
    fn functions_share_int_prototypes_and_strings() {
        let mut btf = FuncBtf::new();
        let ids = [
            btf.add_func("kp_a", Ctx::Struct("pt_regs")),
            btf.add_func("kp_b", Ctx::Struct("pt_regs")),
            btf.add_func("tp", Ctx::Void),
            btf.add_func("tc", Ctx::Struct("__sk_buff")),
        ];
        // int, struct pt_regs, ptr, proto, FUNC kp_a; FUNC kp_b; ptr void, proto, FUNC tp;
        // struct __sk_buff, ptr, proto, FUNC tc.
        assert_eq!(ids, [5, 6, 9, 13]);
        let b = btf.to_le_bytes();
        let strings = &b[24 + word(&b, 16) as usize..];
        assert_eq!(
            strings,
            b"\0int\0pt_regs\0ctx\0kp_a\0kp_b\0tp\0__sk_buff\0tc\0"
        );
        assert_eq!(btf.string("kp_b"), 22, "strings are added once");
    }

    #[test]
    fn program_names_become_c_identifiers() {
        let table = [
            ("pwru_kprobe", "pwru_kprobe"),
            ("kp.skb", "kp_skb"),
            ("1st", "_1st"),
            ("", "_"),
        ];
        for (program, want) in table {
            assert_eq!(func_name(program), want, "{program}");
        }
    }

    #[test]
    fn btf_ext_has_one_func_record_per_section() {
        let ext = btf_ext_func_info(&[(10, 5), (20, 6)]);
        let words: Vec<u32> = (0..ext.len() / 4)
            .skip(1)
            .map(|i| word(&ext, i * 4))
            .collect();
        assert_eq!(&ext[..4], &[0x9f, 0xeb, 1, 0]);
        // hdr_len, func_info_off/len, line_info_off/len; rec size; two sections.
        assert_eq!(
            words,
            [24, 0, 36, 36, 0, 8, 10, 1, 0, 5, 20, 1, 0, 6],
            "header then func info"
        );
        assert_eq!(btf_ext_func_info(&[]).len(), 24);
    }
}
