//! The `bpf!` macro: programs written like the verifier's listing, checked and emitted through
//! [`Asm`]. The emit functions below are shared with the text assembler ([`super::text`]).
//!
//! # Syntax
//!
//! One statement per `;`, labels as `name:`. `rN` are 64-bit registers, `wN` their low 32 bits
//! (ALU32 and JMP32 forms). Immediates and offsets are integer literals (`5`, `-8`, `0xff`) or
//! any Rust expression in parentheses or braces (`(layout.len)`, `{off + 4}`); a bare
//! identifier that is not a register is a Rust variable.
//!
//! | statement | instruction |
//! |---|---|
//! | `r0 = 1;` `r6 = r1;` `w0 = w1;` `r0 = -1;` | mov (ALU64 / ALU32) |
//! | `r1 += r2;` `w1 -= 4;` `*= /= %= \|= &= ^= <<= >>=` | ALU |
//! | `r1 s>>= 3;` `r1 s/= r2;` `r1 s%= 7;` | arsh, sdiv, smod |
//! | `r1 = -r1;` `w1 = -w1;` | neg |
//! | `r1 = (s8)r2;` `(s16)` `(s32)`, `w1 = (s8)w2;` | movsx |
//! | `r1 = be16 r1;` `le32`, `bswap64` | byte swaps |
//! | `r1 = *(u32 *)(r6 + 128);` `(s8 *)` ... | load (sign-extending for `sN`) |
//! | `*(u64 *)(r10 - 8) = r1;` `*(u32 *)(r10 - 4) = 7;` | store register / immediate |
//! | `lock *(u64 *)(r1 + 0) += r2;` `\|= &= ^=` | atomic op |
//! | `r2 = atomic64_fetch_add((u64 *)(r1 + 0), r2);` `_or _and _xor`, `atomic_…` for u32 | atomic fetch |
//! | `r2 = atomic64_xchg((u64 *)(r1 + 0), r2);` `r0 = atomic64_cmpxchg((u64 *)(r1 + 0), r0, r2);` | xchg, cmpxchg |
//! | `r0 = *(u16 *)skb[12];` `r0 = *(u8 *)skb[r7 + 14];` | legacy packet loads |
//! | `r1 = 0x1234 ll;` | 64-bit immediate (`ld_imm64`) |
//! | `r1 = map[events];` `r1 = map[(name_expr)];` | map reference for the loader |
//! | `if r1 > 5 goto done;` `if w1 s< -1 goto l;` `if r1 & r2 goto l;` | `== != > >= < <= s> s>= s< s<= &` |
//! | `goto done;` `gotol done;` | jump, long jump (cpu v4) |
//! | `call probe_read_kernel;` `call bpf_ktime_get_ns;` `call (Helper::LOOP);` `call 113;` | helper call |
//! | `exit;` | exit |
//!
//! `bpf! { ... }` returns `Result<Program, AsmError>`; `bpf!(into asm; ...)` appends to an
//! existing `&mut Asm` (labels are shared by name with other `into` blocks on the same `Asm`)
//! and errors come back from `asm.finish()`. Unknown labels, jumps out of range, offsets that do
//! not fit 16 bits, mixed `r`/`w` operands and unknown helpers are all `AsmError`s.
//! Suffixed literals (`5u8`) must be parenthesized. Each statement is one macro recursion, so
//! bodies over ~120 statements need a larger `#![recursion_limit]`.
//!
//! ```
//! use pwru::bpf;
//! let off = 128;
//! let prog = bpf! {
//!     r6 = r1;
//!     r1 = *(u32 *)(r6 + (off));
//!     if r1 > 5 goto done;
//!     w0 = 0;
//!     exit;
//!   done:
//!     r0 = 1;
//!     exit;
//! }
//! .unwrap();
//! assert_eq!(prog.len(), 7);
//! ```
//!
//! ```
//! use pwru::{asm::Asm, bpf};
//! let mut asm = Asm::new();
//! asm.mov64(pwru::asm::Reg::R0, 0);
//! bpf!(into &mut asm; if r1 == 0 goto out; r0 = 1; out: exit;);
//! assert_eq!(asm.finish().unwrap().len(), 4);
//! ```

use super::builder::{AluOp, Asm, AtomicOp, Cond, Reg, Size, Src};
use super::helpers::Helper;
use super::insn::{op, Insn};
use super::AsmError;

/// A DSL or text operand: a 64-bit register, its 32-bit half, or an immediate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operand {
    R64(Reg),
    R32(Reg),
    Imm(i128),
    /// Something that cannot be an operand (e.g. `-r1` where only `-imm` fits), with its text.
    Invalid(String),
}

impl Operand {
    /// `-operand`: negates an immediate; a negated register is invalid.
    pub fn negated(self) -> Operand {
        match self {
            Operand::Imm(k) => Operand::Imm(-k),
            Operand::R64(r) => Operand::Invalid(format!("-r{}", r.num())),
            Operand::R32(r) => Operand::Invalid(format!("-w{}", r.num())),
            Operand::Invalid(s) => Operand::Invalid(format!("-{s}")),
        }
    }

    fn describe(&self) -> String {
        match self {
            Operand::R64(r) => format!("r{}", r.num()),
            Operand::R32(r) => format!("w{}", r.num()),
            Operand::Imm(k) => k.to_string(),
            Operand::Invalid(s) => s.clone(),
        }
    }
}

/// Integer types usable as DSL immediates and offsets.
pub trait DslImm {
    fn dsl_imm(self) -> i128;
}

macro_rules! impl_dsl_imm {
    ($($t:ty),*) => {$(
        impl DslImm for $t {
            fn dsl_imm(self) -> i128 {
                self as i128
            }
        }
        impl DslImm for &$t {
            fn dsl_imm(self) -> i128 {
                *self as i128
            }
        }
    )*};
}
impl_dsl_imm!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, usize);

/// An immediate operand from any integer expression.
pub fn imm(v: impl DslImm) -> Operand {
    Operand::Imm(v.dsl_imm())
}

/// What `call` accepts besides a helper name: a [`Helper`] or a raw id.
pub trait DslHelper {
    fn helper_id(self) -> i32;
}

impl DslHelper for Helper {
    fn helper_id(self) -> i32 {
        self.id()
    }
}

impl DslHelper for i32 {
    fn helper_id(self) -> i32 {
        self
    }
}

/// Memory access types as written in `*(u32 *)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    U8,
    U16,
    U32,
    U64,
    S8,
    S16,
    S32,
}

impl MemType {
    pub fn from_name(name: &str) -> Option<MemType> {
        Some(match name {
            "u8" => MemType::U8,
            "u16" => MemType::U16,
            "u32" => MemType::U32,
            "u64" => MemType::U64,
            "s8" => MemType::S8,
            "s16" => MemType::S16,
            "s32" => MemType::S32,
            _ => return None,
        })
    }

    pub fn size(self) -> Size {
        match self {
            MemType::U8 | MemType::S8 => Size::B,
            MemType::U16 | MemType::S16 => Size::H,
            MemType::U32 | MemType::S32 => Size::W,
            MemType::U64 => Size::DW,
        }
    }

    pub fn is_signed(self) -> bool {
        matches!(self, MemType::S8 | MemType::S16 | MemType::S32)
    }
}

/// The ALU operation of a compound assignment (`+=`, `s>>=`, `=`, ...).
pub fn alu_op_from_symbol(s: &str) -> Option<AluOp> {
    Some(match s {
        "+=" => AluOp::Add,
        "-=" => AluOp::Sub,
        "*=" => AluOp::Mul,
        "/=" => AluOp::Div,
        "s/=" => AluOp::Sdiv,
        "|=" => AluOp::Or,
        "&=" => AluOp::And,
        "<<=" => AluOp::Lsh,
        ">>=" => AluOp::Rsh,
        "%=" => AluOp::Mod,
        "s%=" => AluOp::Smod,
        "^=" => AluOp::Xor,
        "=" => AluOp::Mov,
        "s>>=" => AluOp::Arsh,
        _ => return None,
    })
}

/// The jump condition of a comparison (`==`, `s<=`, `&`, ...).
pub fn cond_from_symbol(s: &str) -> Option<Cond> {
    Some(match s {
        "==" => Cond::Eq,
        "!=" => Cond::Ne,
        ">" => Cond::Gt,
        ">=" => Cond::Ge,
        "<" => Cond::Lt,
        "<=" => Cond::Le,
        "s>" => Cond::Sgt,
        "s>=" => Cond::Sge,
        "s<" => Cond::Slt,
        "s<=" => Cond::Sle,
        "&" => Cond::Set,
        _ => return None,
    })
}

/// The non-fetching atomic operation of `lock *(..) op= r`.
pub fn atomic_op_from_symbol(s: &str) -> Option<AtomicOp> {
    Some(match s {
        "+=" => AtomicOp::Add,
        "|=" => AtomicOp::Or,
        "&=" => AtomicOp::And,
        "^=" => AtomicOp::Xor,
        _ => return None,
    })
}

fn bad(a: &mut Asm, msg: String) {
    a.record_error(AsmError::BadOperand(msg));
}

fn reg64(a: &mut Asm, o: &Operand, what: &str) -> Option<Reg> {
    match o {
        Operand::R64(r) => Some(*r),
        other => {
            bad(
                a,
                format!(
                    "{what} must be a 64-bit register, not `{}`",
                    other.describe()
                ),
            );
            None
        }
    }
}

/// A 32-bit immediate: `i32`, or with `allow_u32` also `0x80000000..=0xffffffff` (its bits).
fn imm32(a: &mut Asm, k: i128, allow_u32: bool) -> Option<i32> {
    if let Ok(v) = i32::try_from(k) {
        return Some(v);
    }
    if allow_u32 {
        if let Ok(v) = u32::try_from(k) {
            return Some(v as i32);
        }
    }
    bad(a, format!("immediate {k} does not fit 32 bits"));
    None
}

fn off16(a: &mut Asm, k: i128) -> Option<i16> {
    i16::try_from(k)
        .map_err(|_| bad(a, format!("offset {k} does not fit 16 bits")))
        .ok()
}

/// `dst op= src` (also `dst = src` for `AluOp::Mov`). `r` operands give ALU64, `w` ALU32.
pub fn alu(a: &mut Asm, o: AluOp, dst: Operand, src: Operand) {
    match (&dst, &src) {
        (Operand::R64(d), Operand::R64(s)) => {
            a.alu64(o, *d, *s);
        }
        (Operand::R32(d), Operand::R32(s)) => {
            a.alu32(o, *d, *s);
        }
        (Operand::R64(d), Operand::Imm(k)) => {
            if let Some(k) = imm32(a, *k, false) {
                a.alu64(o, *d, k);
            }
        }
        (Operand::R32(d), Operand::Imm(k)) => {
            if let Some(k) = imm32(a, *k, true) {
                a.alu32(o, *d, k);
            }
        }
        _ => bad(
            a,
            format!(
                "bad operands for {o:?}: `{}`, `{}` (registers must both be r or both w)",
                dst.describe(),
                src.describe()
            ),
        ),
    }
}

/// `dst = -src`: negation when `src` is `dst` itself, a move of `-k` when it is an immediate.
pub fn neg(a: &mut Asm, dst: Operand, src: Operand) {
    match (&dst, &src) {
        (Operand::R64(d), Operand::R64(s)) if d == s => {
            a.neg64(*d);
        }
        (Operand::R32(d), Operand::R32(s)) if d == s => {
            a.neg32(*d);
        }
        (_, Operand::Imm(_)) => alu(a, AluOp::Mov, dst, src.negated()),
        _ => bad(
            a,
            format!(
                "negation must be `rN = -rN`, not `{} = -{}`",
                dst.describe(),
                src.describe()
            ),
        ),
    }
}

/// `dst = (sN)src` sign-extending move (cpu v4); `bits` is 8, 16 or 32 (64-bit only).
pub fn movsx(a: &mut Asm, dst: Operand, bits: u8, src: Operand) {
    let o = match bits {
        8 => AluOp::Movsx8,
        16 => AluOp::Movsx16,
        32 => AluOp::Movsx32,
        _ => return bad(a, format!("sign extension from {bits} bits")),
    };
    match (&dst, &src) {
        (Operand::R64(_), Operand::R64(_)) => alu(a, o, dst, src),
        (Operand::R32(_), Operand::R32(_)) if bits != 32 => alu(a, o, dst, src),
        _ => bad(
            a,
            format!(
                "bad operands for (s{bits}) move: `{}`, `{}`",
                dst.describe(),
                src.describe()
            ),
        ),
    }
}

/// `dst = be16 dst`, `le32`, `bswap64`, ... (`func` is the word as written).
pub fn endian(a: &mut Asm, dst: Operand, func: &str, src: Operand) {
    let (kind, width) = func.split_at(func.find(|c: char| c.is_ascii_digit()).unwrap_or(0));
    let bits = match width {
        "16" => 16,
        "32" => 32,
        "64" => 64,
        _ => return bad(a, format!("unknown byte swap `{func}`")),
    };
    let Some(d) = reg64(a, &dst, "byte swap destination") else {
        return;
    };
    if src != dst {
        return bad(a, format!("`{func}` must read its destination register"));
    }
    match kind {
        "be" => {
            a.to_be(d, bits);
        }
        "le" => {
            a.to_le(d, bits);
        }
        "bswap" => {
            a.bswap(d, bits);
        }
        _ => bad(a, format!("unknown byte swap `{func}`")),
    }
}

/// `dst = *(ty *)(base + off)`.
pub fn load(a: &mut Asm, dst: Operand, ty: MemType, base: Operand, off: i128) {
    let (Some(d), Some(b), Some(off)) = (
        reg64(a, &dst, "load destination"),
        reg64(a, &base, "load base"),
        off16(a, off),
    ) else {
        return;
    };
    if ty.is_signed() {
        a.ldxs(ty.size(), d, b, off);
    } else {
        a.ldx(ty.size(), d, b, off);
    }
}

/// `*(ty *)(base + off) = src` with a register or an immediate.
pub fn store(a: &mut Asm, ty: MemType, base: Operand, off: i128, src: Operand) {
    if ty.is_signed() {
        return bad(a, format!("store through a signed type {ty:?}"));
    }
    let (Some(b), Some(off)) = (reg64(a, &base, "store base"), off16(a, off)) else {
        return;
    };
    match src {
        Operand::R64(s) => {
            a.stx(ty.size(), b, off, s);
        }
        Operand::Imm(k) => {
            if let Some(k) = imm32(a, k, ty != MemType::U64) {
                a.st(ty.size(), b, off, k);
            }
        }
        other => bad(
            a,
            format!(
                "stored value must be r-register or immediate, not `{}`",
                other.describe()
            ),
        ),
    }
}

/// `lock *(ty *)(base + off) op= src`.
pub fn atomic(a: &mut Asm, o: AtomicOp, ty: MemType, base: Operand, off: i128, src: Operand) {
    if !matches!(ty, MemType::U32 | MemType::U64) {
        return bad(a, format!("atomic access of {ty:?}"));
    }
    let (Some(b), Some(off), Some(s)) = (
        reg64(a, &base, "atomic base"),
        off16(a, off),
        reg64(a, &src, "atomic operand"),
    ) else {
        return;
    };
    a.atomic(o, ty.size(), b, off, s);
}

/// `dst = atomic64_fetch_add((u64 *)(base + off), src)` and the other fetching forms:
/// `atomic[64]_fetch_{add,or,and,xor}`, `atomic[64]_xchg` (args: `src`, the same register as
/// `dst`) and `atomic[64]_cmpxchg` (`dst` and the first arg are `r0`).
pub fn atomic_call(
    a: &mut Asm,
    dst: Operand,
    func: &str,
    ty: MemType,
    base: Operand,
    off: i128,
    args: &[Operand],
) {
    let (width, name) = if let Some(n) = func.strip_prefix("atomic64_") {
        (MemType::U64, n)
    } else if let Some(n) = func.strip_prefix("atomic_") {
        (MemType::U32, n)
    } else {
        return bad(a, format!("unknown function `{func}`"));
    };
    if ty != width {
        return bad(a, format!("`{func}` on a {ty:?} operand"));
    }
    let o = match name {
        "fetch_add" => AtomicOp::FetchAdd,
        "fetch_or" => AtomicOp::FetchOr,
        "fetch_and" => AtomicOp::FetchAnd,
        "fetch_xor" => AtomicOp::FetchXor,
        "xchg" => AtomicOp::Xchg,
        "cmpxchg" => AtomicOp::Cmpxchg,
        _ => return bad(a, format!("unknown atomic function `{func}`")),
    };
    let r0 = Operand::R64(Reg::R0);
    let src = match (o, args) {
        (AtomicOp::Cmpxchg, [old, src]) if dst == r0 && *old == r0 => src,
        (AtomicOp::Cmpxchg, _) => {
            return bad(
                a,
                format!("`{func}` is written `r0 = {func}((..), r0, rN)`"),
            );
        }
        (_, [src]) if *src == dst => src,
        _ => return bad(a, format!("`{func}` is written `rN = {func}((..), rN)`")),
    };
    atomic(a, o, ty, base, off, src.clone());
}

/// `r0 = *(ty *)skb[k]`: legacy absolute packet load.
pub fn ld_abs(a: &mut Asm, dst: Operand, ty: MemType, k: i128) {
    if dst != Operand::R64(Reg::R0) || ty.is_signed() || ty == MemType::U64 {
        return bad(a, "packet loads are `r0 = *(u8|u16|u32 *)skb[k]`".into());
    }
    if let Some(k) = imm32(a, k, false) {
        a.ld_abs(ty.size(), k);
    }
}

/// `r0 = *(ty *)skb[src + k]`: legacy indirect packet load.
pub fn ld_ind(a: &mut Asm, dst: Operand, ty: MemType, src: Operand, k: i128) {
    if dst != Operand::R64(Reg::R0) || ty.is_signed() || ty == MemType::U64 {
        return bad(
            a,
            "packet loads are `r0 = *(u8|u16|u32 *)skb[rN + k]`".into(),
        );
    }
    let (Some(s), Some(k)) = (reg64(a, &src, "packet load index"), imm32(a, k, false)) else {
        return;
    };
    a.ld_ind(ty.size(), s, k);
}

/// `dst = k ll`: 64-bit immediate, any value in `i64::MIN..=u64::MAX`.
pub fn ld_imm64(a: &mut Asm, dst: Operand, k: i128) {
    let Some(d) = reg64(a, &dst, "64-bit load destination") else {
        return;
    };
    let v = match (u64::try_from(k), i64::try_from(k)) {
        (Ok(v), _) => v,
        (_, Ok(v)) => v as u64,
        _ => return bad(a, format!("immediate {k} does not fit 64 bits")),
    };
    a.ld_imm64(d, v);
}

/// `dst = map[name]`: map reference the loader resolves.
pub fn ld_map(a: &mut Asm, dst: Operand, name: &str) {
    if let Some(d) = reg64(a, &dst, "map reference destination") {
        a.ld_map(d, name);
    }
}

/// Class (JMP or JMP32), dst register and source of a conditional jump.
pub(crate) fn jump_operands(a: &mut Asm, dst: &Operand, src: &Operand) -> Option<(u8, Reg, Src)> {
    match (dst, src) {
        (Operand::R64(d), Operand::R64(s)) => Some((op::JMP, *d, Src::Reg(*s))),
        (Operand::R32(d), Operand::R32(s)) => Some((op::JMP32, *d, Src::Reg(*s))),
        (Operand::R64(d), Operand::Imm(k)) => Some((op::JMP, *d, Src::Imm(imm32(a, *k, true)?))),
        (Operand::R32(d), Operand::Imm(k)) => Some((op::JMP32, *d, Src::Imm(imm32(a, *k, true)?))),
        _ => {
            bad(
                a,
                format!(
                    "bad comparison operands `{}`, `{}` (registers must both be r or both w)",
                    dst.describe(),
                    src.describe()
                ),
            );
            None
        }
    }
}

/// `if dst cond src goto target`. Immediates may be written as `u32` (`0xffffffff`), as the
/// kernel prints them.
pub fn jump(a: &mut Asm, c: Cond, dst: Operand, src: Operand, target: &str) {
    if let Some((class, d, s)) = jump_operands(a, &dst, &src) {
        let l = a.label_named(target);
        if class == op::JMP {
            a.jmp(c, d, s, l);
        } else {
            a.jmp32(c, d, s, l);
        }
    }
}

/// `if dst cond src goto pc+off` with a raw offset (text assembler).
pub(crate) fn jump_raw(a: &mut Asm, c: Cond, dst: Operand, src: Operand, off: i128) {
    let Some((class, d, s)) = jump_operands(a, &dst, &src) else {
        return;
    };
    let Some(off) = off16(a, off) else { return };
    let i = match s {
        Src::Reg(s) => Insn::new(class | c.bits() | op::X, d.num(), s.num(), off, 0),
        Src::Imm(k) => Insn::new(class | c.bits() | op::K, d.num(), 0, off, k),
    };
    a.raw(i);
}

/// `goto target`.
pub fn goto(a: &mut Asm, target: &str) {
    let l = a.label_named(target);
    a.ja(l);
}

/// `gotol target` (32-bit offset, cpu v4).
pub fn gotol(a: &mut Asm, target: &str) {
    let l = a.label_named(target);
    a.ja_long(l);
}

/// `target:` binds the label here.
pub fn bind(a: &mut Asm, target: &str) {
    let l = a.label_named(target);
    a.bind(l);
}

/// `call name` with or without the `bpf_` prefix.
pub fn call_named(a: &mut Asm, name: &str) {
    match Helper::by_name(name) {
        Some(h) => {
            a.call(h);
        }
        None => bad(a, format!("unknown helper `{name}`")),
    }
}

/// `call (expr)` with a [`Helper`] or a raw helper id.
pub fn call(a: &mut Asm, h: impl DslHelper) {
    a.call_id(h.helper_id());
}

pub fn exit(a: &mut Asm) {
    a.exit();
}

/// Write a program like the verifier's listing; see the [module docs](crate::asm::dsl).
#[macro_export]
macro_rules! bpf {
    (into $asm:expr ; $($body:tt)*) => {{
        let __bpf_asm: &mut $crate::asm::Asm = $asm;
        $crate::__bpf_stmts!(__bpf_asm; $($body)*);
    }};
    ($($body:tt)*) => {{
        let mut __bpf_prog = $crate::asm::Asm::new();
        {
            let __bpf_asm: &mut $crate::asm::Asm = &mut __bpf_prog;
            $crate::__bpf_stmts!(__bpf_asm; $($body)*);
        }
        __bpf_prog.finish()
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bpf_stmts {
    ($a:ident ;) => {};
    ($a:ident ; $l:ident : $($rest:tt)*) => {
        $crate::asm::dsl::bind($a, stringify!($l));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    ($a:ident ; exit ; $($rest:tt)*) => {
        $crate::asm::dsl::exit($a);
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    ($a:ident ; call $h:ident ; $($rest:tt)*) => {
        $crate::asm::dsl::call_named($a, stringify!($h));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    ($a:ident ; call $h:tt ; $($rest:tt)*) => {
        $crate::asm::dsl::call($a, $h);
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    ($a:ident ; goto $l:ident ; $($rest:tt)*) => {
        $crate::asm::dsl::goto($a, stringify!($l));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    ($a:ident ; gotol $l:ident ; $($rest:tt)*) => {
        $crate::asm::dsl::gotol($a, stringify!($l));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    // if dst s> src goto l;  (signed comparisons are two tokens)
    ($a:ident ; if $d:ident s $c:tt - $s:tt goto $l:ident ; $($rest:tt)*) => {
        $crate::asm::dsl::jump($a, $crate::__bpf_scond!($c), $crate::__bpf_operand!($d),
            $crate::__bpf_operand!($s).negated(), stringify!($l));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    ($a:ident ; if $d:ident s $c:tt $s:tt goto $l:ident ; $($rest:tt)*) => {
        $crate::asm::dsl::jump($a, $crate::__bpf_scond!($c), $crate::__bpf_operand!($d),
            $crate::__bpf_operand!($s), stringify!($l));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    ($a:ident ; if $d:ident $c:tt - $s:tt goto $l:ident ; $($rest:tt)*) => {
        $crate::asm::dsl::jump($a, $crate::__bpf_cond!($c), $crate::__bpf_operand!($d),
            $crate::__bpf_operand!($s).negated(), stringify!($l));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    ($a:ident ; if $d:ident $c:tt $s:tt goto $l:ident ; $($rest:tt)*) => {
        $crate::asm::dsl::jump($a, $crate::__bpf_cond!($c), $crate::__bpf_operand!($d),
            $crate::__bpf_operand!($s), stringify!($l));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    // lock *(u64 *)(r1 + 0) += r2;
    ($a:ident ; lock * ( $t:ident * ) ( $p:ident $($off:tt)* ) $o:tt $s:tt ; $($rest:tt)*) => {
        $crate::asm::dsl::atomic($a, $crate::__bpf_atomic_op!($o), $crate::__bpf_type!($t),
            $crate::__bpf_operand!($p), $crate::__bpf_off!($($off)*), $crate::__bpf_operand!($s));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    // *(u64 *)(r10 - 8) = src;
    ($a:ident ; * ( $t:ident * ) ( $p:ident $($off:tt)* ) = - $s:tt ; $($rest:tt)*) => {
        $crate::asm::dsl::store($a, $crate::__bpf_type!($t), $crate::__bpf_operand!($p),
            $crate::__bpf_off!($($off)*), $crate::__bpf_operand!($s).negated());
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    ($a:ident ; * ( $t:ident * ) ( $p:ident $($off:tt)* ) = $s:tt ; $($rest:tt)*) => {
        $crate::asm::dsl::store($a, $crate::__bpf_type!($t), $crate::__bpf_operand!($p),
            $crate::__bpf_off!($($off)*), $crate::__bpf_operand!($s));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    // r1 = 0x1234 ll;
    ($a:ident ; $d:ident = - $k:tt ll ; $($rest:tt)*) => {
        $crate::asm::dsl::ld_imm64($a, $crate::__bpf_operand!($d), -$crate::__bpf_imm!($k));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    ($a:ident ; $d:ident = $k:tt ll ; $($rest:tt)*) => {
        $crate::asm::dsl::ld_imm64($a, $crate::__bpf_operand!($d), $crate::__bpf_imm!($k));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    // r1 = map[events];
    ($a:ident ; $d:ident = map [ $m:ident ] ; $($rest:tt)*) => {
        $crate::asm::dsl::ld_map($a, $crate::__bpf_operand!($d), stringify!($m));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    ($a:ident ; $d:ident = map [ $m:tt ] ; $($rest:tt)*) => {
        $crate::asm::dsl::ld_map($a, $crate::__bpf_operand!($d),
            ::core::convert::AsRef::<str>::as_ref(&$m));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    // r0 = *(u16 *)skb[r1 + 12];  r0 = *(u16 *)skb[12];
    ($a:ident ; $d:ident = * ( $t:ident * ) skb [ $s:ident + $k:tt ] ; $($rest:tt)*) => {
        $crate::asm::dsl::ld_ind($a, $crate::__bpf_operand!($d), $crate::__bpf_type!($t),
            $crate::__bpf_operand!($s), $crate::__bpf_imm!($k));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    ($a:ident ; $d:ident = * ( $t:ident * ) skb [ $k:tt ] ; $($rest:tt)*) => {
        $crate::asm::dsl::ld_abs($a, $crate::__bpf_operand!($d), $crate::__bpf_type!($t),
            $crate::__bpf_imm!($k));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    // r1 = *(u32 *)(r6 + 128);
    ($a:ident ; $d:ident = * ( $t:ident * ) ( $p:ident $($off:tt)* ) ; $($rest:tt)*) => {
        $crate::asm::dsl::load($a, $crate::__bpf_operand!($d), $crate::__bpf_type!($t),
            $crate::__bpf_operand!($p), $crate::__bpf_off!($($off)*));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    // r2 = atomic64_fetch_add((u64 *)(r1 + 0), r2);
    ($a:ident ; $d:ident = $f:ident ( ( $t:ident * ) ( $p:ident $($off:tt)* ) $(, $arg:tt)* ) ;
        $($rest:tt)*) => {
        $crate::asm::dsl::atomic_call($a, $crate::__bpf_operand!($d), stringify!($f),
            $crate::__bpf_type!($t), $crate::__bpf_operand!($p), $crate::__bpf_off!($($off)*),
            &[$($crate::__bpf_operand!($arg)),*]);
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    // r1 = (s8)r2;
    ($a:ident ; $d:ident = ( $t:ident ) $s:ident ; $($rest:tt)*) => {
        $crate::asm::dsl::movsx($a, $crate::__bpf_operand!($d), $crate::__bpf_sx!($t),
            $crate::__bpf_operand!($s));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    // r1 = be16 r1;
    ($a:ident ; $d:ident = $f:ident $s:ident ; $($rest:tt)*) => {
        $crate::asm::dsl::endian($a, $crate::__bpf_operand!($d), stringify!($f),
            $crate::__bpf_operand!($s));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    // r1 = -r1;  r0 = -1;
    ($a:ident ; $d:ident = - $s:tt ; $($rest:tt)*) => {
        $crate::asm::dsl::neg($a, $crate::__bpf_operand!($d), $crate::__bpf_operand!($s));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    // r1 s>>= 3;  r1 s/= r2;  r1 s%= -3;
    ($a:ident ; $d:ident s $o:tt - $s:tt ; $($rest:tt)*) => {
        $crate::asm::dsl::alu($a, $crate::__bpf_salu!($o), $crate::__bpf_operand!($d),
            $crate::__bpf_operand!($s).negated());
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    ($a:ident ; $d:ident s $o:tt $s:tt ; $($rest:tt)*) => {
        $crate::asm::dsl::alu($a, $crate::__bpf_salu!($o), $crate::__bpf_operand!($d),
            $crate::__bpf_operand!($s));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    // r1 += r2;  r0 = 1;  w1 &= -8;
    ($a:ident ; $d:ident $o:tt - $s:tt ; $($rest:tt)*) => {
        $crate::asm::dsl::alu($a, $crate::__bpf_alu!($o), $crate::__bpf_operand!($d),
            $crate::__bpf_operand!($s).negated());
        $crate::__bpf_stmts!($a; $($rest)*);
    };
    ($a:ident ; $d:ident $o:tt $s:tt ; $($rest:tt)*) => {
        $crate::asm::dsl::alu($a, $crate::__bpf_alu!($o), $crate::__bpf_operand!($d),
            $crate::__bpf_operand!($s));
        $crate::__bpf_stmts!($a; $($rest)*);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bpf_operand {
    (r0) => {
        $crate::asm::dsl::Operand::R64($crate::asm::Reg::R0)
    };
    (r1) => {
        $crate::asm::dsl::Operand::R64($crate::asm::Reg::R1)
    };
    (r2) => {
        $crate::asm::dsl::Operand::R64($crate::asm::Reg::R2)
    };
    (r3) => {
        $crate::asm::dsl::Operand::R64($crate::asm::Reg::R3)
    };
    (r4) => {
        $crate::asm::dsl::Operand::R64($crate::asm::Reg::R4)
    };
    (r5) => {
        $crate::asm::dsl::Operand::R64($crate::asm::Reg::R5)
    };
    (r6) => {
        $crate::asm::dsl::Operand::R64($crate::asm::Reg::R6)
    };
    (r7) => {
        $crate::asm::dsl::Operand::R64($crate::asm::Reg::R7)
    };
    (r8) => {
        $crate::asm::dsl::Operand::R64($crate::asm::Reg::R8)
    };
    (r9) => {
        $crate::asm::dsl::Operand::R64($crate::asm::Reg::R9)
    };
    (r10) => {
        $crate::asm::dsl::Operand::R64($crate::asm::Reg::R10)
    };
    (w0) => {
        $crate::asm::dsl::Operand::R32($crate::asm::Reg::R0)
    };
    (w1) => {
        $crate::asm::dsl::Operand::R32($crate::asm::Reg::R1)
    };
    (w2) => {
        $crate::asm::dsl::Operand::R32($crate::asm::Reg::R2)
    };
    (w3) => {
        $crate::asm::dsl::Operand::R32($crate::asm::Reg::R3)
    };
    (w4) => {
        $crate::asm::dsl::Operand::R32($crate::asm::Reg::R4)
    };
    (w5) => {
        $crate::asm::dsl::Operand::R32($crate::asm::Reg::R5)
    };
    (w6) => {
        $crate::asm::dsl::Operand::R32($crate::asm::Reg::R6)
    };
    (w7) => {
        $crate::asm::dsl::Operand::R32($crate::asm::Reg::R7)
    };
    (w8) => {
        $crate::asm::dsl::Operand::R32($crate::asm::Reg::R8)
    };
    (w9) => {
        $crate::asm::dsl::Operand::R32($crate::asm::Reg::R9)
    };
    (w10) => {
        $crate::asm::dsl::Operand::R32($crate::asm::Reg::R10)
    };
    ($k:tt) => {
        $crate::asm::dsl::Operand::Imm($crate::__bpf_imm!($k))
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bpf_imm {
    ($l:literal) => {{
        let v: i128 = $l;
        v
    }};
    ($e:tt) => {
        $crate::asm::dsl::DslImm::dsl_imm($e)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bpf_off {
    () => {
        0i128
    };
    (+ $k:tt) => {
        $crate::__bpf_imm!($k)
    };
    (- $k:tt) => {
        -$crate::__bpf_imm!($k)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bpf_type {
    (u8) => {
        $crate::asm::dsl::MemType::U8
    };
    (u16) => {
        $crate::asm::dsl::MemType::U16
    };
    (u32) => {
        $crate::asm::dsl::MemType::U32
    };
    (u64) => {
        $crate::asm::dsl::MemType::U64
    };
    (s8) => {
        $crate::asm::dsl::MemType::S8
    };
    (s16) => {
        $crate::asm::dsl::MemType::S16
    };
    (s32) => {
        $crate::asm::dsl::MemType::S32
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bpf_sx {
    (s8) => {
        8u8
    };
    (s16) => {
        16u8
    };
    (s32) => {
        32u8
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bpf_alu {
    (=) => {
        $crate::asm::AluOp::Mov
    };
    (+=) => {
        $crate::asm::AluOp::Add
    };
    (-=) => {
        $crate::asm::AluOp::Sub
    };
    (*=) => {
        $crate::asm::AluOp::Mul
    };
    (/=) => {
        $crate::asm::AluOp::Div
    };
    (%=) => {
        $crate::asm::AluOp::Mod
    };
    (|=) => {
        $crate::asm::AluOp::Or
    };
    (&=) => {
        $crate::asm::AluOp::And
    };
    (^=) => {
        $crate::asm::AluOp::Xor
    };
    (<<=) => {
        $crate::asm::AluOp::Lsh
    };
    (>>=) => {
        $crate::asm::AluOp::Rsh
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bpf_salu {
    (>>=) => {
        $crate::asm::AluOp::Arsh
    };
    (/=) => {
        $crate::asm::AluOp::Sdiv
    };
    (%=) => {
        $crate::asm::AluOp::Smod
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bpf_cond {
    (==) => {
        $crate::asm::Cond::Eq
    };
    (!=) => {
        $crate::asm::Cond::Ne
    };
    (>) => {
        $crate::asm::Cond::Gt
    };
    (>=) => {
        $crate::asm::Cond::Ge
    };
    (<) => {
        $crate::asm::Cond::Lt
    };
    (<=) => {
        $crate::asm::Cond::Le
    };
    (&) => {
        $crate::asm::Cond::Set
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bpf_scond {
    (>) => {
        $crate::asm::Cond::Sgt
    };
    (>=) => {
        $crate::asm::Cond::Sge
    };
    (<) => {
        $crate::asm::Cond::Slt
    };
    (<=) => {
        $crate::asm::Cond::Sle
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bpf_atomic_op {
    (+=) => {
        $crate::asm::AtomicOp::Add
    };
    (|=) => {
        $crate::asm::AtomicOp::Or
    };
    (&=) => {
        $crate::asm::AtomicOp::And
    };
    (^=) => {
        $crate::asm::AtomicOp::Xor
    };
}

#[cfg(test)]
mod tests {
    use crate::asm::{disassemble_program, AsmError};

    #[test]
    fn example_program_matches_listing() {
        let p = crate::bpf! {
            r6 = r1;
            r1 = *(u32 *)(r6 + 128);
            if r1 > 5 goto done;
            w0 = 0;
            call probe_read_kernel;
            exit;
          done:
            r0 = 1;
            exit;
        }
        .unwrap();
        assert_eq!(
            disassemble_program(&p),
            "   0: (bf) r6 = r1\n\
             \x20  1: (61) r1 = *(u32 *)(r6 +128)\n\
             \x20  2: (25) if r1 > 0x5 goto pc+3\n\
             \x20  3: (b4) w0 = 0\n\
             \x20  4: (85) call bpf_probe_read_kernel#113\n\
             \x20  5: (95) exit\n\
             \x20  6: (b7) r0 = 1\n\
             \x20  7: (95) exit\n"
        );
    }

    #[test]
    fn unknown_label_is_reported_by_finish() {
        let e = crate::bpf! { goto nowhere; exit; }.unwrap_err();
        assert_eq!(e, AsmError::UnknownLabel("nowhere".into()));
    }
}
