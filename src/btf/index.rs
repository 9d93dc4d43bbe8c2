//! A table over raw BTF from one walk of its type section: each type's kind and a hash of
//! its name. btf-rs finds a name by parsing every type and has no lookup by kind; the
//! skb-function scan and the layout's name lookups would pay that walk many times over.

use super::error::BtfError;

/// BTF kinds the scans look for (`BTF_KIND_*`).
pub(crate) const KIND_PTR: u8 = 2;
pub(crate) const KIND_STRUCT: u8 = 4;
pub(crate) const KIND_UNION: u8 = 5;
pub(crate) const KIND_TYPEDEF: u8 = 8;
pub(crate) const KIND_VOLATILE: u8 = 9;
pub(crate) const KIND_CONST: u8 = 10;
pub(crate) const KIND_RESTRICT: u8 = 11;
pub(crate) const KIND_FUNC: u8 = 12;
pub(crate) const KIND_FUNC_PROTO: u8 = 13;
pub(crate) const KIND_TYPE_TAG: u8 = 18;

/// Kind and name hash of each type of one BTF object (vmlinux, or a module's own types).
#[derive(Debug, Default)]
pub(crate) struct TypeIndex {
    /// Id of the first type the object defines (1 for vmlinux; after its base for a module).
    first_id: u32,
    kinds: Vec<u8>,
    name_hashes: Vec<u32>,
    /// Each type's third header word: the type it refers to (FUNC: its prototype;
    /// FUNC_PROTO: its return type), or its size.
    size_or_type: Vec<u32>,
    /// The parameter types of every FUNC_PROTO, in id order: type `i`'s are
    /// `proto_params[params_at[i]..params_at[i + 1]]` (none for other kinds), so that the
    /// skb-function scan classifies prototypes without parsing them.
    proto_params: Vec<u32>,
    params_at: Vec<u32>,
    /// Length of the string section (a split BTF's names start after its base's).
    pub(crate) str_len: u32,
}

impl TypeIndex {
    /// Walks the type section of checked raw BTF (`raw` passed the header check);
    /// `first_id` is the id of its first type. For split BTF, `base_str_len` is its base's
    /// string section length: name offsets below it are the base's strings, not hashed
    /// here, and such types are candidates for every name.
    pub(crate) fn build(
        raw: &[u8],
        first_id: u32,
        base_str_len: u32,
        origin: &str,
    ) -> Result<Self, BtfError> {
        let bad = |reason: String| BtfError::Malformed {
            origin: origin.to_string(),
            reason,
        };
        let little = raw.len() >= 2 && raw[0] == 0x9f && raw[1] == 0xeb;
        let word = |at: usize| -> Option<u32> {
            let b: [u8; 4] = raw.get(at..at + 4)?.try_into().ok()?;
            Some(match little {
                true => u32::from_le_bytes(b),
                false => u32::from_be_bytes(b),
            })
        };
        let header = |at| {
            word(at)
                .map(|w| w as usize)
                .ok_or_else(|| bad("short header".into()))
        };
        let (hdr_len, type_off, type_len) = (header(4)?, header(8)?, header(12)?);
        let (str_off, str_len) = (header(16)?, header(20)?);
        let types = hdr_len + type_off..hdr_len + type_off + type_len;
        let strings = raw
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or_else(|| bad("string section out of bounds".into()))?;

        let mut index = TypeIndex {
            first_id,
            str_len: str_len as u32,
            ..TypeIndex::default()
        };
        let mut at = types.start;
        while at < types.end {
            let (Some(name_off), Some(info), Some(third)) = (word(at), word(at + 4), word(at + 8))
            else {
                return Err(bad(format!("type header at byte {at} is cut off")));
            };
            let kind = ((info >> 24) & 0x1f) as u8;
            let vlen = (info & 0xffff) as usize;
            let trailing = match kind {
                1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
                3 => 12,                      // ARRAY
                4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
                6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
                2 | 7..=12 | 16 | 18 => 0,    // PTR, FWD, modifiers, FUNC, FLOAT, TYPE_TAG
                _ => return Err(bad(format!("unknown BTF kind {kind} at byte {at}"))),
            };
            index.kinds.push(kind);
            index.size_or_type.push(third);
            index.params_at.push(index.proto_params.len() as u32);
            if kind == KIND_FUNC_PROTO {
                for p in 0..vlen {
                    let ty = word(at + 12 + 8 * p + 4)
                        .ok_or_else(|| bad(format!("prototype at byte {at} is cut off")))?;
                    index.proto_params.push(ty);
                }
            }
            index
                .name_hashes
                .push(match name_off.checked_sub(base_str_len) {
                    Some(own) => name_hash(name_at(strings, own)),
                    None => ANY_NAME,
                });
            at += 12 + trailing;
        }
        if at != types.end {
            return Err(bad("the last type runs past the type section".into()));
        }
        index.params_at.push(index.proto_params.len() as u32);
        Ok(index)
    }

    /// Ids of the types of `kind`, in id order.
    pub(crate) fn ids_of_kind(&self, kind: u8) -> impl Iterator<Item = u32> + '_ {
        self.kinds
            .iter()
            .enumerate()
            .filter(move |&(_, &k)| k == kind)
            .map(|(i, _)| self.first_id + i as u32)
    }

    /// The FUNCs, each with its prototype's id, in id order.
    pub(crate) fn funcs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.ids_of_kind(KIND_FUNC)
            .map(|id| (id, self.size_or_type[(id - self.first_id) as usize]))
    }

    /// The kind and third header word (referred type or size) of type `id`, when this
    /// object defines it.
    pub(crate) fn entry(&self, id: u32) -> Option<(u8, u32)> {
        let i = id.checked_sub(self.first_id)? as usize;
        Some((*self.kinds.get(i)?, *self.size_or_type.get(i)?))
    }

    /// The parameter types of FUNC_PROTO `id` (a variadic one ends with type 0), when
    /// this object defines it.
    pub(crate) fn proto_params(&self, id: u32) -> Option<&[u32]> {
        let i = id.checked_sub(self.first_id)? as usize;
        if *self.kinds.get(i)? != KIND_FUNC_PROTO {
            return None;
        }
        let (start, end) = (*self.params_at.get(i)?, *self.params_at.get(i + 1)?);
        self.proto_params.get(start as usize..end as usize)
    }

    /// Ids whose name may be `name` (same hash), in id order: confirm each by its name.
    pub(crate) fn ids_maybe_named(&self, name: &str) -> impl Iterator<Item = u32> + '_ {
        let hash = name_hash(name.as_bytes());
        self.name_hashes
            .iter()
            .enumerate()
            .filter(move |&(_, &h)| h == hash || h == ANY_NAME)
            .map(|(i, _)| self.first_id + i as u32)
    }
}

/// The NUL-terminated name at `offset` of the string section (empty when out of bounds).
fn name_at(strings: &[u8], offset: u32) -> &[u8] {
    let rest = strings.get(offset as usize..).unwrap_or_default();
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    &rest[..end]
}

/// The hash of a name in the base's strings (split BTF): it matches every name.
const ANY_NAME: u32 = u32::MAX;

/// FNV-1a, 32 bits (never [`ANY_NAME`]): cheap, and collisions only cost a confirming
/// lookup.
fn name_hash(name: &[u8]) -> u32 {
    let hash = name.iter().fold(0x811c_9dc5, |h: u32, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash.min(ANY_NAME - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::testenc::{BtfBuilder, M};

    #[test]
    fn kinds_and_names_follow_the_type_section() {
        let mut b = BtfBuilder::new();
        let int = b.int("int", 4, true);
        let skb = b.structure("sk_buff", 8, &[M("len", int, 0, 0), M("mark", int, 32, 0)]);
        let arr = b.array(int, int, 4);
        let reason = b.enumeration("skb_drop_reason", false, &[("A", 1), ("B", 2)]);
        let ptr = b.ptr(skb);
        let proto = b.func_proto(int, &[("skb", ptr), ("x", arr), ("r", reason)]);
        let func = b.func("ip_rcv", proto);
        let tdef = b.typedef("btf_trace_x", ptr);
        let wide = b.enum64("wide", &[("W", 1 << 40)]);
        let raw = b.bytes();
        let index = TypeIndex::build(&raw, 1, 0, "test").unwrap();
        assert_eq!(index.kinds.len() as u32, wide);
        assert_eq!(index.ids_of_kind(KIND_FUNC).collect::<Vec<_>>(), [func]);
        assert_eq!(index.funcs().collect::<Vec<_>>(), [(func, proto)]);
        assert_eq!(index.ids_of_kind(KIND_TYPEDEF).collect::<Vec<_>>(), [tdef]);
        assert_eq!(index.ids_maybe_named("sk_buff").collect::<Vec<_>>(), [skb]);
        assert_eq!(index.ids_maybe_named("ip_rcv").collect::<Vec<_>>(), [func]);
        assert_eq!(index.ids_maybe_named("absent").count(), 0);
        assert_eq!(index.proto_params(proto), Some(&[ptr, arr, reason][..]));
        assert_eq!(
            index.entry(proto),
            Some((KIND_FUNC_PROTO, int)),
            "its return type"
        );
        assert_eq!(index.entry(ptr), Some((KIND_PTR, skb)));
        assert_eq!(index.proto_params(func), None, "not a prototype");
        assert_eq!(index.entry(0), None);
        assert_eq!(index.entry(wide + 1), None);
        let split = TypeIndex::build(&raw, 100, 0, "test").unwrap();
        assert_eq!(
            split.ids_of_kind(KIND_FUNC).collect::<Vec<_>>(),
            [func + 99]
        );
    }

    #[test]
    fn a_cut_or_unknown_type_is_an_error() {
        let mut b = BtfBuilder::new();
        let int = b.int("int", 4, true);
        b.ptr(int);
        let raw = b.bytes();
        let type_len = u32::from_le_bytes(raw[12..16].try_into().unwrap());
        let mut cut = raw.clone();
        // A type section 4 bytes longer: the walk ends off the section's end.
        cut[12..16].copy_from_slice(&(type_len + 4).to_le_bytes());
        assert!(TypeIndex::build(&cut, 1, 0, "test").is_err());
        let mut unknown = raw.clone();
        let hdr_len = u32::from_le_bytes(raw[4..8].try_into().unwrap()) as usize;
        unknown[hdr_len + 7] = 30; // first type's kind byte (info's top byte, little endian)
        let err = TypeIndex::build(&unknown, 1, 0, "test").unwrap_err();
        assert!(err.to_string().contains("unknown BTF kind 30"), "{err}");
    }

    proptest::proptest! {
        /// Any bytes behind a BTF header give an index or an error, never a panic.
        #[test]
        fn arbitrary_type_sections_never_panic(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            type_len in 0u32..600,
            str_len in 0u32..600,
            base_str_len in 0u32..64,
        ) {
            let mut raw = vec![0x9f, 0xeb, 1, 0];
            for v in [24, 0, type_len, type_len, str_len] {
                raw.extend_from_slice(&u32::to_le_bytes(v));
            }
            raw.extend_from_slice(&body);
            if let Ok(index) = TypeIndex::build(&raw, 1, base_str_len, "fuzz") {
                let _ = index.funcs().count();
                let _ = index.ids_maybe_named("sk_buff").count();
                for id in 0..index.kinds.len() as u32 + 2 {
                    let _ = (index.entry(id), index.proto_params(id));
                }
            }
        }
    }
}
