//! Test-only BTF encoder: builds small raw BTF blobs (base or split) so the
//! parser, scans and layout walker can be tested without a kernel.

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_ENUM64: u32 = 19;

/// A struct/union member: name, type id, bit offset, bitfield width (0 = none).
pub(crate) struct M<'a>(pub &'a str, pub u32, pub u32, pub u32);

/// Appends types and strings, handing out type ids in order.
pub(crate) struct BtfBuilder {
    types: Vec<u8>,
    strings: Vec<u8>,
    next_id: u32,
    str_base: u32,
}

impl BtfBuilder {
    /// A base BTF (ids from 1).
    pub(crate) fn new() -> Self {
        BtfBuilder {
            types: Vec::new(),
            strings: vec![0],
            next_id: 1,
            str_base: 0,
        }
    }

    /// A split BTF over a base built by `base`.
    pub(crate) fn split_over(base: &BtfBuilder) -> Self {
        BtfBuilder {
            types: Vec::new(),
            strings: vec![0],
            next_id: base.next_id,
            str_base: base.str_base + base.strings.len() as u32,
        }
    }

    fn str(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let off = self.str_base + self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }

    fn u32(&mut self, v: u32) {
        self.types.extend_from_slice(&v.to_le_bytes());
    }

    fn head(
        &mut self,
        name: &str,
        kind: u32,
        kind_flag: bool,
        vlen: u32,
        size_or_type: u32,
    ) -> u32 {
        let name_off = self.str(name);
        self.u32(name_off);
        self.u32((u32::from(kind_flag) << 31) | (kind << 24) | vlen);
        self.u32(size_or_type);
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(crate) fn int(&mut self, name: &str, size: u32, signed: bool) -> u32 {
        let id = self.head(name, KIND_INT, false, 0, size);
        self.u32((u32::from(signed) << 24) | (size * 8));
        id
    }

    pub(crate) fn ptr(&mut self, target: u32) -> u32 {
        self.head("", KIND_PTR, false, 0, target)
    }

    pub(crate) fn typedef(&mut self, name: &str, target: u32) -> u32 {
        self.head(name, KIND_TYPEDEF, false, 0, target)
    }

    pub(crate) fn constant(&mut self, target: u32) -> u32 {
        self.head("", KIND_CONST, false, 0, target)
    }

    pub(crate) fn volatile(&mut self, target: u32) -> u32 {
        self.head("", KIND_VOLATILE, false, 0, target)
    }

    pub(crate) fn array(&mut self, elem: u32, index: u32, len: u32) -> u32 {
        let id = self.head("", KIND_ARRAY, false, 0, 0);
        self.u32(elem);
        self.u32(index);
        self.u32(len);
        id
    }

    pub(crate) fn structure(&mut self, name: &str, size: u32, members: &[M<'_>]) -> u32 {
        self.composite(KIND_STRUCT, name, size, members)
    }

    pub(crate) fn union(&mut self, name: &str, size: u32, members: &[M<'_>]) -> u32 {
        self.composite(KIND_UNION, name, size, members)
    }

    fn composite(&mut self, kind: u32, name: &str, size: u32, members: &[M<'_>]) -> u32 {
        let bitfields = members.iter().any(|m| m.3 != 0);
        let id = self.head(name, kind, bitfields, members.len() as u32, size);
        for M(name, ty, bit_offset, bits) in members {
            let name_off = self.str(name);
            self.u32(name_off);
            self.u32(*ty);
            self.u32(if bitfields {
                (bits << 24) | bit_offset
            } else {
                *bit_offset
            });
        }
        id
    }

    pub(crate) fn func_proto(&mut self, ret: u32, params: &[(&str, u32)]) -> u32 {
        let id = self.head("", KIND_FUNC_PROTO, false, params.len() as u32, ret);
        for (name, ty) in params {
            let name_off = self.str(name);
            self.u32(name_off);
            self.u32(*ty);
        }
        id
    }

    pub(crate) fn func(&mut self, name: &str, proto: u32) -> u32 {
        // vlen 1 = BTF_FUNC_GLOBAL
        self.head(name, KIND_FUNC, false, 1, proto)
    }

    pub(crate) fn enumeration(&mut self, name: &str, signed: bool, values: &[(&str, i32)]) -> u32 {
        let id = self.head(name, KIND_ENUM, signed, values.len() as u32, 4);
        for (name, value) in values {
            let name_off = self.str(name);
            self.u32(name_off);
            self.u32(*value as u32);
        }
        id
    }

    pub(crate) fn enum64(&mut self, name: &str, values: &[(&str, u64)]) -> u32 {
        let id = self.head(name, KIND_ENUM64, false, values.len() as u32, 8);
        for (name, value) in values {
            let name_off = self.str(name);
            self.u32(name_off);
            self.u32(*value as u32);
            self.u32((*value >> 32) as u32);
        }
        id
    }

    /// Header + type section + string section.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&0xeb9fu16.to_le_bytes());
        out.push(1); // version
        out.push(0); // flags
        for v in [
            24,
            0,
            self.types.len() as u32,
            self.types.len() as u32,
            self.strings.len() as u32,
        ] {
            out.extend_from_slice(&u32::to_le_bytes(v));
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}
