//! Property tests: random valid instruction streams survive disassemble → text-assemble
//! byte for byte; random bytes and random text never panic the disassembler or assembler.

use proptest::prelude::*;
use pwru::asm::disasm::insn_text;
use pwru::asm::insn::op;
use pwru::asm::{assemble, disassemble, Insn};

const ALU_OPS: [u8; 12] = [
    op::ADD,
    op::SUB,
    op::MUL,
    op::DIV,
    op::OR,
    op::AND,
    op::LSH,
    op::RSH,
    op::MOD,
    op::XOR,
    op::MOV,
    op::ARSH,
];
const JMP_OPS: [u8; 11] = [
    op::JEQ,
    op::JGT,
    op::JGE,
    op::JSET,
    op::JNE,
    op::JSGT,
    op::JSGE,
    op::JLT,
    op::JLE,
    op::JSLT,
    op::JSLE,
];
const SIZES: [u8; 4] = [op::B, op::H, op::W, op::DW];
const ATOMIC_IMMS: [i32; 10] = [0x00, 0x40, 0x50, 0xa0, 0x01, 0x41, 0x51, 0xa1, 0xe1, 0xf1];

fn imm() -> impl Strategy<Value = i32> {
    prop_oneof![any::<i32>(), -16i32..16]
}

fn off() -> impl Strategy<Value = i16> {
    prop_oneof![any::<i16>(), -16i16..16]
}

fn one(i: Insn) -> Vec<Insn> {
    vec![i]
}

/// One valid instruction (one slot, or two for `ld_imm64`), any class.
fn valid_insn() -> impl Strategy<Value = Vec<Insn>> {
    let alu = (
        prop::bool::ANY,
        0..ALU_OPS.len(),
        prop::bool::ANY,
        0u8..=9,
        0u8..=10,
        imm(),
        prop::bool::ANY,
        0usize..3,
    )
        .prop_map(|(is64, o, x, dst, src, imm, signed, sx)| {
            let class = if is64 { op::ALU64 } else { op::ALU };
            let bits = ALU_OPS[o];
            let off = match bits {
                op::DIV | op::MOD if signed => 1,
                op::MOV if x && signed => [8, 16, if is64 { 32 } else { 8 }][sx],
                _ => 0,
            };
            let code = class | bits | if x { op::X } else { op::K };
            one(if x {
                Insn::new(code, dst, src, off, 0)
            } else {
                Insn::new(code, dst, 0, off, imm)
            })
        });
    let neg = (prop::bool::ANY, 0u8..=10).prop_map(|(is64, dst)| {
        let class = if is64 { op::ALU64 } else { op::ALU };
        one(Insn::new(class | op::NEG, dst, 0, 0, 0))
    });
    let end = (0usize..3, 0u8..=10, prop::sample::select(vec![16, 32, 64])).prop_map(
        |(kind, dst, bits)| {
            let code = [
                op::ALU | op::END | op::TO_LE,
                op::ALU | op::END | op::TO_BE,
                op::ALU64 | op::END,
            ][kind];
            one(Insn::new(code, dst, 0, 0, bits))
        },
    );
    let ldx = (0usize..4, prop::bool::ANY, 0u8..=10, 0u8..=10, off()).prop_map(
        |(size, sx, dst, src, off)| {
            let mode = if sx && size < 3 { op::MEMSX } else { op::MEM };
            one(Insn::new(op::LDX | mode | SIZES[size], dst, src, off, 0))
        },
    );
    let st = (0usize..4, 0u8..=10, off(), imm()).prop_map(|(size, dst, off, imm)| {
        one(Insn::new(op::ST | op::MEM | SIZES[size], dst, 0, off, imm))
    });
    let stx = (0usize..4, 0u8..=10, 0u8..=10, off()).prop_map(|(size, dst, src, off)| {
        one(Insn::new(op::STX | op::MEM | SIZES[size], dst, src, off, 0))
    });
    let atomic = (
        prop::bool::ANY,
        0u8..=10,
        0u8..=10,
        off(),
        prop::sample::select(ATOMIC_IMMS.to_vec()),
    )
        .prop_map(|(dw, dst, src, off, imm)| {
            let size = if dw { op::DW } else { op::W };
            one(Insn::new(op::STX | op::ATOMIC | size, dst, src, off, imm))
        });
    let legacy = (prop::bool::ANY, 0usize..3, 0u8..=10, imm()).prop_map(|(ind, size, src, imm)| {
        one(if ind {
            Insn::new(op::LD | op::IND | SIZES[size], 0, src, 0, imm)
        } else {
            Insn::new(op::LD | op::ABS | SIZES[size], 0, 0, 0, imm)
        })
    });
    let wide = (0u8..=6, 0u8..=10, imm(), imm()).prop_map(|(src, dst, lo, hi)| {
        let hi = if matches!(src, 0 | 2 | 6) { hi } else { 0 };
        vec![
            Insn::new(op::LD | op::IMM | op::DW, dst, src, 0, lo),
            Insn::new(0, 0, 0, 0, hi),
        ]
    });
    let jcc = (
        prop::bool::ANY,
        0..JMP_OPS.len(),
        prop::bool::ANY,
        0u8..=10,
        0u8..=10,
        off(),
        imm(),
    )
        .prop_map(|(is32, c, x, dst, src, off, imm)| {
            let class = if is32 { op::JMP32 } else { op::JMP };
            let code = class | JMP_OPS[c] | if x { op::X } else { op::K };
            one(if x {
                Insn::new(code, dst, src, off, 0)
            } else {
                Insn::new(code, dst, 0, off, imm)
            })
        });
    let other = (0usize..6, off(), imm(), 0u8..3).prop_map(|(kind, off, imm, src)| {
        one(match kind {
            0 => Insn::new(op::JMP | op::JA, 0, 0, off, 0),
            1 => Insn::new(op::JMP32 | op::JA, 0, 0, 0, imm),
            2 => Insn::new(op::JMP | op::CALL, 0, src, 0, imm),
            3 => Insn::new(op::JMP | op::CALL, 0, 0, 0, imm.rem_euclid(220)),
            _ => Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0),
        })
    });
    prop_oneof![alu, neg, end, ldx, st, stx, atomic, legacy, wide, jcc, other]
}

/// A slot with fields biased towards valid-looking values.
fn random_slot() -> impl Strategy<Value = Insn> {
    (any::<u8>(), 0u8..16, 0u8..16, off(), imm())
        .prop_map(|(code, dst, src, off, imm)| Insn::new(code, dst, src, off, imm))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_streams_round_trip(parts in prop::collection::vec(valid_insn(), 1..40)) {
        let insns: Vec<Insn> = parts.into_iter().flatten().collect();
        let listing = disassemble(&insns);
        prop_assert!(!listing.contains("invalid insn"), "{}", listing);
        let back = assemble(&listing).map_err(|e| TestCaseError::fail(format!("{e}\n{listing}")))?;
        prop_assert_eq!(back.insns, insns, "{}", listing);
    }

    #[test]
    fn random_slots_never_panic_and_valid_ones_round_trip(
        insns in prop::collection::vec(random_slot(), 0..32),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = disassemble(&pwru::asm::insn::from_bytecode(&bytes));
        let _ = disassemble(&insns);
        for (i, insn) in insns.iter().enumerate() {
            if let Some(text) = insn_text(insn, insns.get(i + 1), None) {
                let n = if insn.is_ld_imm64() { 2 } else { 1 };
                match assemble(&text) {
                    Ok(p) => prop_assert_eq!(&p.insns[..], &insns[i..i + n], "{}", text),
                    // The kernel prints writes to r10; the assembler refuses them.
                    Err(e) => prop_assert!(insn.dst == 10, "{text}: {e}"),
                }
            }
        }
    }

    #[test]
    fn random_text_never_panics(text in "[ -~\n]{0,200}") {
        let _ = assemble(&text);
    }

    #[test]
    fn token_soup_never_panics(words in prop::collection::vec(prop::sample::select(vec![
        "r1", "w2", "r10", "=", "+=", "s>>=", "-", "*", "(", ")", "u32", "s8", "[", "]", "skb",
        "map", "fd", ":", "if", "goto", "pc", "+", "0x10", "5", "-3", "ll", "lock", "call",
        "atomic64_fetch_add", ",", "exit", "be16", "gotol", "#", "l", "\n",
    ]), 0..30)) {
        let _ = assemble(&words.join(" "));
    }
}
