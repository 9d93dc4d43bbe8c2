//! BTF for our own programs: a minimal blob naming one function and its prototype
//! (`int NAME(struct CTX *ctx)`), for `BPF_PROG_LOAD`'s `func_info`.
//! A program loaded with it can be traced with fentry/fexit (which needs the target's BTF).

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

/// The type id of the `FUNC` in a blob of [`func_btf`].
pub const FUNC_TYPE_ID: u32 = 5;

/// The raw BTF (header, types, strings) of one function `int name(struct ctx *ctx)`, e.g.
/// `ctx` = `__sk_buff` for a tc program (the verifier matches the context by that name).
/// `name` must be a C identifier (the kernel checks); the `FUNC` is [`FUNC_TYPE_ID`].
pub fn func_btf(name: &str, ctx: &str) -> Vec<u8> {
    let mut strings = vec![0u8];
    let mut str_off = |s: &str| {
        let off = strings.len() as u32;
        strings.extend_from_slice(s.as_bytes());
        strings.push(0);
        off
    };
    let int = str_off("int");
    let ctx_struct = str_off(ctx);
    let ctx_param = str_off("ctx");
    let func = str_off(name);
    let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
    let types: Vec<u32> = vec![
        // [1] int
        int,
        info(KIND_INT, 0),
        4,
        (INT_SIGNED << 24) | 32,
        // [2] struct ctx {} (no members: only its name matters)
        ctx_struct,
        info(KIND_STRUCT, 0),
        0,
        // [3] struct ctx *
        0,
        info(KIND_PTR, 0),
        2,
        // [4] int (struct ctx *ctx)
        0,
        info(KIND_FUNC_PROTO, 1),
        1,
        ctx_param,
        3,
        // [5] int name(struct ctx *ctx)
        func,
        info(KIND_FUNC, FUNC_GLOBAL),
        4,
    ];
    let type_bytes: Vec<u8> = types.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut blob = Vec::with_capacity(24 + type_bytes.len() + strings.len());
    blob.extend_from_slice(&0xeb9fu16.to_le_bytes());
    blob.push(1); // version
    blob.push(0); // flags
    for v in [
        24u32,
        0,
        type_bytes.len() as u32,
        type_bytes.len() as u32,
        strings.len() as u32,
    ] {
        blob.extend_from_slice(&v.to_le_bytes());
    }
    blob.extend_from_slice(&type_bytes);
    blob.extend_from_slice(&strings);
    if cfg!(target_endian = "big") {
        // The kernel reads BTF in host order: re-encode the header and types big-endian.
        return to_big_endian(&blob, type_bytes.len());
    }
    blob
}

/// `blob` (little-endian) with its header words and type words in big-endian order.
fn to_big_endian(blob: &[u8], types_len: usize) -> Vec<u8> {
    let mut out = blob.to_vec();
    out[0..2].copy_from_slice(&0xeb9fu16.to_be_bytes());
    for at in (4..24 + types_len).step_by(4) {
        out[at..at + 4].reverse();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blob_names_the_function_and_its_context() {
        let b = func_btf("drop_tcp", "__sk_buff");
        assert_eq!(&b[..4], &[0x9f, 0xeb, 1, 0]);
        let word = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let (type_len, str_off, str_len) = (word(12), word(16), word(20));
        assert_eq!(type_len, 18 * 4);
        assert_eq!(str_off, type_len);
        let strings = &b[24 + str_off as usize..];
        assert_eq!(strings.len(), str_len as usize);
        assert_eq!(strings, b"\0int\0__sk_buff\0ctx\0drop_tcp\0");
        // The FUNC (5th type, after 4 + 3 + 3 + 5 words) points at the prototype [4].
        let func = 24 + 15 * 4;
        assert_eq!(word(func + 4), (KIND_FUNC << 24) | FUNC_GLOBAL);
        assert_eq!(word(func + 8), 4);
    }
}
