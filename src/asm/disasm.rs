//! Disassembler: prints instructions in the kernel's own syntax (`kernel/bpf/disasm.c`, as the
//! verifier log and `bpftool prog dump xlated` show them), so our listings read like the kernel's.
//!
//! Differences from the kernel, all so that the text assembles back to the same bytes:
//! a plain 64-bit immediate load prints as `r1 = 0x1234 ll` (the kernel omits ` ll`), map
//! references print as `map[name]` (by name) or `map[fd:N]` instead of `map[id:N]`, and an
//! encoding the kernel would reject (reserved fields set, unknown opcode) prints `invalid insn`.

use std::fmt::Write;

use super::builder::Program;
use super::helpers::Helper;
use super::insn::{op, Insn};

/// What the listing shows for a slot that is not a valid instruction.
pub const INVALID: &str = "invalid insn";

/// Listing of `insns`, one line per instruction, prefixed `   N: (code) ` like the verifier
/// log. A 16-byte `ld_imm64` takes one line and two indices.
pub fn disassemble(insns: &[Insn]) -> String {
    listing(insns, |_| None)
}

/// Listing of a program, with its map references printed by name (`r1 = map[events]`).
pub fn disassemble_program(p: &Program) -> String {
    listing(&p.insns, |i| {
        p.map_refs
            .iter()
            .find(|r| r.insn_index == i)
            .map(|r| r.map.as_str())
    })
}

/// Text of one instruction without the prefix, or [`INVALID`]. `next` is the following slot,
/// needed for `ld_imm64`.
pub fn disassemble_insn(insn: &Insn, next: Option<&Insn>) -> String {
    insn_text(insn, next, None).unwrap_or_else(|| INVALID.to_string())
}

/// Text of one instruction, `None` when it is not a valid encoding. `map_name` names the map
/// of a `ld_imm64` map-fd reference.
pub fn insn_text(insn: &Insn, next: Option<&Insn>, map_name: Option<&str>) -> Option<String> {
    if insn.dst > 10 || insn.src > 10 {
        return None;
    }
    match insn.class() {
        op::ALU | op::ALU64 => alu_text(insn),
        op::JMP | op::JMP32 => jmp_text(insn),
        op::LDX => ldx_text(insn),
        op::ST => st_text(insn),
        op::STX => stx_text(insn),
        _ => ld_text(insn, next, map_name),
    }
}

fn listing<'a>(insns: &'a [Insn], map_name: impl Fn(usize) -> Option<&'a str>) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < insns.len() {
        let insn = &insns[i];
        let text = insn_text(insn, insns.get(i + 1), map_name(i));
        let _ = writeln!(
            out,
            "{i:>4}: ({:02x}) {}",
            insn.code,
            text.as_deref().unwrap_or(INVALID)
        );
        i += if text.is_some() && insn.is_ld_imm64() {
            2
        } else {
            1
        };
    }
    out
}

/// `u8`/`u16`/`u32`/`u64` for the size bits of `code`.
fn unsigned_type(code: u8) -> &'static str {
    match code & 0x18 {
        op::W => "u32",
        op::H => "u16",
        op::B => "u8",
        _ => "u64",
    }
}

fn signed_type(code: u8) -> Option<&'static str> {
    match code & 0x18 {
        op::W => Some("s32"),
        op::H => Some("s16"),
        op::B => Some("s8"),
        _ => None,
    }
}

/// The compound assignment the kernel prints for an ALU operation.
fn alu_symbol(bits: u8) -> Option<&'static str> {
    Some(match bits {
        op::ADD => "+=",
        op::SUB => "-=",
        op::MUL => "*=",
        op::DIV => "/=",
        op::OR => "|=",
        op::AND => "&=",
        op::LSH => "<<=",
        op::RSH => ">>=",
        op::MOD => "%=",
        op::XOR => "^=",
        op::MOV => "=",
        op::ARSH => "s>>=",
        _ => return None,
    })
}

/// The comparison the kernel prints for a conditional jump.
fn jmp_symbol(bits: u8) -> Option<&'static str> {
    Some(match bits {
        op::JEQ => "==",
        op::JGT => ">",
        op::JGE => ">=",
        op::JSET => "&",
        op::JNE => "!=",
        op::JSGT => "s>",
        op::JSGE => "s>=",
        op::JLT => "<",
        op::JLE => "<=",
        op::JSLT => "s<",
        op::JSLE => "s<=",
        _ => return None,
    })
}

/// `(r6 +128)`: the kernel prints offsets with an explicit sign.
fn mem(reg: u8, off: i16) -> String {
    format!("(r{reg} {off:+})")
}

fn alu_text(i: &Insn) -> Option<String> {
    let is64 = i.class() == op::ALU64;
    let r = if is64 { 'r' } else { 'w' };
    let bits = i.code & 0xf0;
    let x = i.code & op::X != 0;
    let (d, s) = (i.dst, i.src);
    match bits {
        op::END => {
            if i.src != 0 || i.off != 0 || !matches!(i.imm, 16 | 32 | 64) || (is64 && x) {
                return None;
            }
            let kind = match (is64, x) {
                (true, _) => "bswap",
                (false, true) => "be",
                (false, false) => "le",
            };
            Some(format!("r{d} = {kind}{} r{d}", i.imm))
        }
        op::NEG => {
            (!x && i.src == 0 && i.off == 0 && i.imm == 0).then(|| format!("{r}{d} = -{r}{d}"))
        }
        _ => {
            let plain = alu_symbol(bits)?;
            let (symbol, cast) = match (bits, i.off) {
                (_, 0) => (plain, ""),
                (op::DIV, 1) => ("s/=", ""),
                (op::MOD, 1) => ("s%=", ""),
                (op::MOV, 8) if x => ("=", "(s8)"),
                (op::MOV, 16) if x => ("=", "(s16)"),
                (op::MOV, 32) if x && is64 => ("=", "(s32)"),
                _ => return None,
            };
            if x {
                (i.imm == 0).then(|| format!("{r}{d} {symbol} {cast}{r}{s}"))
            } else {
                (i.src == 0).then(|| format!("{r}{d} {symbol} {}", i.imm))
            }
        }
    }
}

fn jmp_text(i: &Insn) -> Option<String> {
    let is32 = i.class() == op::JMP32;
    let r = if is32 { 'w' } else { 'r' };
    let bits = i.code & 0xf0;
    let x = i.code & op::X != 0;
    let (d, s) = (i.dst, i.src);
    match bits {
        op::CALL => {
            if is32 || x || i.dst != 0 || i.off != 0 {
                return None;
            }
            match i.src {
                0 => {
                    let name = Helper(i.imm)
                        .name()
                        .map(|n| format!("bpf_{n}"))
                        .unwrap_or_else(|| "unknown".into());
                    Some(format!("call {name}#{}", i.imm))
                }
                op::PSEUDO_CALL => Some(format!("call pc{:+}", i.imm)),
                op::PSEUDO_KFUNC_CALL => Some(format!("call kernel-function#{}", i.imm)),
                _ => None,
            }
        }
        op::EXIT => (!is32 && !x && i.dst == 0 && i.src == 0 && i.off == 0 && i.imm == 0)
            .then(|| "exit".to_string()),
        op::JA => {
            if x || i.dst != 0 || i.src != 0 {
                None
            } else if is32 {
                (i.off == 0).then(|| format!("gotol pc{:+}", i.imm))
            } else {
                (i.imm == 0).then(|| format!("goto pc{:+}", i.off))
            }
        }
        _ => {
            let symbol = jmp_symbol(bits)?;
            if x {
                (i.imm == 0).then(|| format!("if {r}{d} {symbol} {r}{s} goto pc{:+}", i.off))
            } else {
                (i.src == 0)
                    .then(|| format!("if {r}{d} {symbol} {:#x} goto pc{:+}", i.imm as u32, i.off))
            }
        }
    }
}

fn ldx_text(i: &Insn) -> Option<String> {
    let ty = match i.code & 0xe0 {
        op::MEM => unsigned_type(i.code),
        op::MEMSX => signed_type(i.code)?,
        _ => return None,
    };
    (i.imm == 0).then(|| format!("r{} = *({ty} *){}", i.dst, mem(i.src, i.off)))
}

fn st_text(i: &Insn) -> Option<String> {
    (i.code & 0xe0 == op::MEM && i.src == 0).then(|| {
        format!(
            "*({} *){} = {}",
            unsigned_type(i.code),
            mem(i.dst, i.off),
            i.imm
        )
    })
}

fn stx_text(i: &Insn) -> Option<String> {
    let ty = unsigned_type(i.code);
    let (d, s) = (i.dst, i.src);
    let at = mem(d, i.off);
    match i.code & 0xe0 {
        op::MEM => (i.imm == 0).then(|| format!("*({ty} *){at} = r{s}")),
        op::ATOMIC => {
            let width = match i.code & 0x18 {
                op::W => "",
                op::DW => "64",
                _ => return None,
            };
            let imm = i.imm;
            let alu = u8::try_from(imm & !op::FETCH).ok();
            let simple = matches!(alu, Some(op::ADD | op::OR | op::AND | op::XOR));
            if simple && imm & op::FETCH == 0 {
                Some(format!("lock *({ty} *){at} {} r{s}", alu_symbol(alu?)?))
            } else if simple {
                let name = match alu? {
                    op::ADD => "add",
                    op::OR => "or",
                    op::AND => "and",
                    _ => "xor",
                };
                Some(format!(
                    "r{s} = atomic{width}_fetch_{name}(({ty} *){at}, r{s})"
                ))
            } else if imm == op::XCHG {
                Some(format!("r{s} = atomic{width}_xchg(({ty} *){at}, r{s})"))
            } else if imm == op::CMPXCHG {
                Some(format!(
                    "r0 = atomic{width}_cmpxchg(({ty} *){at}, r0, r{s})"
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn ld_text(i: &Insn, next: Option<&Insn>, map_name: Option<&str>) -> Option<String> {
    let ty = unsigned_type(i.code);
    match i.code & 0xe0 {
        op::ABS if i.code & 0x18 != op::DW && i.dst == 0 && i.src == 0 && i.off == 0 => {
            Some(format!("r0 = *({ty} *)skb[{}]", i.imm))
        }
        op::IND if i.code & 0x18 != op::DW && i.dst == 0 && i.off == 0 => {
            Some(format!("r0 = *({ty} *)skb[r{} + {}]", i.src, i.imm))
        }
        op::IMM if i.is_ld_imm64() && i.off == 0 => {
            let hi = next.filter(|n| n.code == 0 && n.dst == 0 && n.src == 0 && n.off == 0)?;
            let value = match i.src {
                0 => format!(
                    "{:#x} ll",
                    (hi.imm as u32 as u64) << 32 | i.imm as u32 as u64
                ),
                op::PSEUDO_MAP_FD if hi.imm == 0 => match map_name {
                    Some(name) => format!("map[{name}]"),
                    None => format!("map[fd:{}]", i.imm),
                },
                op::PSEUDO_MAP_VALUE => format!("map[fd:{}][0]+{}", i.imm, hi.imm as u32),
                op::PSEUDO_MAP_IDX if hi.imm == 0 => format!("map[idx:{}]", i.imm),
                op::PSEUDO_MAP_IDX_VALUE => format!("map[idx:{}]+{}", i.imm, hi.imm as u32),
                op::PSEUDO_BTF_ID if hi.imm == 0 => format!("btf_id[{}]", i.imm),
                op::PSEUDO_FUNC if hi.imm == 0 => format!("subprog[{:+}]", i.imm),
                _ => return None,
            };
            Some(format!("r{} = {value}", i.dst))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_kernel_forms() {
        let cases = [
            (Insn::new(0x61, 1, 6, 128, 0), "r1 = *(u32 *)(r6 +128)"),
            (Insn::new(0x7b, 10, 1, -8, 0), "*(u64 *)(r10 -8) = r1"),
            (Insn::new(0x25, 1, 0, 3, 5), "if r1 > 0x5 goto pc+3"),
            (Insn::new(0xb7, 0, 0, 0, 1), "r0 = 1"),
            (Insn::new(0x0c, 1, 2, 0, 0), "w1 += w2"),
            (Insn::new(0xdc, 1, 0, 0, 16), "r1 = be16 r1"),
            (
                Insn::new(0x85, 0, 0, 0, 113),
                "call bpf_probe_read_kernel#113",
            ),
        ];
        for (insn, want) in cases {
            assert_eq!(disassemble_insn(&insn, None), want);
        }
    }

    #[test]
    fn unknown_opcode_is_invalid_not_a_panic() {
        assert_eq!(
            disassemble(&[Insn::new(0xff, 0, 0, 0, 0)]),
            "   0: (ff) invalid insn\n"
        );
        // ld_imm64 missing its second slot
        assert_eq!(
            disassemble_insn(&Insn::new(0x18, 1, 0, 0, 1), None),
            INVALID
        );
    }
}
