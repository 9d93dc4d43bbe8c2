//! Raw eBPF instructions: the 8-byte slot the kernel reads, and the opcode constants.
//! Everything else in `asm` builds or reads these.

use std::fmt;

/// One 8-byte eBPF instruction slot (`struct bpf_insn`). `ld_imm64` spans two slots.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// The little-endian encoding the kernel expects.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.dst & 0x0f) | ((self.src & 0x0f) << 4);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }

    pub fn from_bytes(b: [u8; 8]) -> Self {
        Insn {
            code: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    pub fn class(self) -> u8 {
        self.code & 0x07
    }

    /// True for the first slot of a 16-byte `ld_imm64`.
    pub fn is_ld_imm64(self) -> bool {
        self.code == op::LD | op::IMM | op::DW
    }
}

impl fmt::Debug for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Insn {{ code: {:#04x}, dst: {}, src: {}, off: {}, imm: {} }}",
            self.code, self.dst, self.src, self.off, self.imm
        )
    }
}

/// Serialize a program to the byte stream `BPF_PROG_LOAD` takes.
pub fn to_bytecode(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

/// Parse a byte stream (length must be a multiple of 8) back into slots.
pub fn from_bytecode(bytes: &[u8]) -> Vec<Insn> {
    bytes
        .chunks_exact(8)
        .map(|c| Insn::from_bytes(c.try_into().expect("chunk of 8")))
        .collect()
}

/// Opcode bits, named as in `linux/bpf.h` / `linux/bpf_common.h`.
pub mod op {
    // classes
    pub const LD: u8 = 0x00;
    pub const LDX: u8 = 0x01;
    pub const ST: u8 = 0x02;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const JMP32: u8 = 0x06;
    pub const ALU64: u8 = 0x07;
    // sizes
    pub const W: u8 = 0x00;
    pub const H: u8 = 0x08;
    pub const B: u8 = 0x10;
    pub const DW: u8 = 0x18;
    // modes
    pub const IMM: u8 = 0x00;
    pub const ABS: u8 = 0x20;
    pub const IND: u8 = 0x40;
    pub const MEM: u8 = 0x60;
    pub const MEMSX: u8 = 0x80;
    pub const ATOMIC: u8 = 0xc0;
    // source
    pub const K: u8 = 0x00;
    pub const X: u8 = 0x08;
    // alu ops
    pub const ADD: u8 = 0x00;
    pub const SUB: u8 = 0x10;
    pub const MUL: u8 = 0x20;
    pub const DIV: u8 = 0x30;
    pub const OR: u8 = 0x40;
    pub const AND: u8 = 0x50;
    pub const LSH: u8 = 0x60;
    pub const RSH: u8 = 0x70;
    pub const NEG: u8 = 0x80;
    pub const MOD: u8 = 0x90;
    pub const XOR: u8 = 0xa0;
    pub const MOV: u8 = 0xb0;
    pub const ARSH: u8 = 0xc0;
    pub const END: u8 = 0xd0;
    // byte order for END
    pub const TO_LE: u8 = 0x00;
    pub const TO_BE: u8 = 0x08;
    // jmp ops
    pub const JA: u8 = 0x00;
    pub const JEQ: u8 = 0x10;
    pub const JGT: u8 = 0x20;
    pub const JGE: u8 = 0x30;
    pub const JSET: u8 = 0x40;
    pub const JNE: u8 = 0x50;
    pub const JSGT: u8 = 0x60;
    pub const JSGE: u8 = 0x70;
    pub const CALL: u8 = 0x80;
    pub const EXIT: u8 = 0x90;
    pub const JLT: u8 = 0xa0;
    pub const JLE: u8 = 0xb0;
    pub const JSLT: u8 = 0xc0;
    pub const JSLE: u8 = 0xd0;
    // atomic op immediates
    pub const FETCH: i32 = 0x01;
    pub const XCHG: i32 = 0xe0 | FETCH;
    pub const CMPXCHG: i32 = 0xf0 | FETCH;
    // ld_imm64 src_reg values
    pub const PSEUDO_MAP_FD: u8 = 1;
    pub const PSEUDO_MAP_VALUE: u8 = 2;
    pub const PSEUDO_BTF_ID: u8 = 3;
    pub const PSEUDO_FUNC: u8 = 4;
    pub const PSEUDO_MAP_IDX: u8 = 5;
    pub const PSEUDO_MAP_IDX_VALUE: u8 = 6;
    // call src_reg values
    pub const PSEUDO_CALL: u8 = 1;
    pub const PSEUDO_KFUNC_CALL: u8 = 2;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let i = Insn::new(0x61, 1, 6, -128, 0x1234_5678);
        assert_eq!(Insn::from_bytes(i.to_bytes()), i);
        assert_eq!(
            i.to_bytes(),
            [0x61, 0x61, 0x80, 0xff, 0x78, 0x56, 0x34, 0x12]
        );
    }
}
