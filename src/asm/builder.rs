//! The builder API: typed operands, labels resolved at `finish`, map references left
//! for the loader. Generated code (filters, probes) is written against this.

use super::helpers::Helper;
use super::insn::{op, Insn};
use super::AsmError;

/// The eleven eBPF registers. `R10` is the read-only frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
}

impl Reg {
    pub const ALL: [Reg; 11] = [
        Reg::R0,
        Reg::R1,
        Reg::R2,
        Reg::R3,
        Reg::R4,
        Reg::R5,
        Reg::R6,
        Reg::R7,
        Reg::R8,
        Reg::R9,
        Reg::R10,
    ];

    pub fn num(self) -> u8 {
        self as u8
    }

    pub fn from_num(n: u8) -> Option<Reg> {
        Reg::ALL.get(n as usize).copied()
    }
}

/// Second operand of ALU and jump instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    Reg(Reg),
    Imm(i32),
}

impl From<Reg> for Src {
    fn from(r: Reg) -> Self {
        Src::Reg(r)
    }
}

impl From<i32> for Src {
    fn from(i: i32) -> Self {
        Src::Imm(i)
    }
}

/// Memory access width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Size {
    B,
    H,
    W,
    DW,
}

impl Size {
    pub fn bits(self) -> u8 {
        match self {
            Size::B => op::B,
            Size::H => op::H,
            Size::W => op::W,
            Size::DW => op::DW,
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }

    pub fn from_bytes(n: usize) -> Option<Size> {
        match n {
            1 => Some(Size::B),
            2 => Some(Size::H),
            4 => Some(Size::W),
            8 => Some(Size::DW),
            _ => None,
        }
    }
}

/// ALU operations. `Sdiv`/`Smod` and the `Movsx*` forms are cpu v4 (kernel 6.6+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    Add,
    Sub,
    Mul,
    Div,
    Sdiv,
    Or,
    And,
    Lsh,
    Rsh,
    Mod,
    Smod,
    Xor,
    Mov,
    /// Sign-extending move from the low 8, 16 or 32 bits.
    Movsx8,
    Movsx16,
    Movsx32,
    Arsh,
}

impl AluOp {
    /// (opcode bits, `off` field)
    fn encode(self) -> (u8, i16) {
        match self {
            AluOp::Add => (op::ADD, 0),
            AluOp::Sub => (op::SUB, 0),
            AluOp::Mul => (op::MUL, 0),
            AluOp::Div => (op::DIV, 0),
            AluOp::Sdiv => (op::DIV, 1),
            AluOp::Or => (op::OR, 0),
            AluOp::And => (op::AND, 0),
            AluOp::Lsh => (op::LSH, 0),
            AluOp::Rsh => (op::RSH, 0),
            AluOp::Mod => (op::MOD, 0),
            AluOp::Smod => (op::MOD, 1),
            AluOp::Xor => (op::XOR, 0),
            AluOp::Mov => (op::MOV, 0),
            AluOp::Movsx8 => (op::MOV, 8),
            AluOp::Movsx16 => (op::MOV, 16),
            AluOp::Movsx32 => (op::MOV, 32),
            AluOp::Arsh => (op::ARSH, 0),
        }
    }
}

/// Jump conditions (`if dst <cond> src goto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cond {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Sgt,
    Sge,
    Slt,
    Sle,
    /// `dst & src != 0`
    Set,
}

impl Cond {
    pub fn bits(self) -> u8 {
        match self {
            Cond::Eq => op::JEQ,
            Cond::Ne => op::JNE,
            Cond::Gt => op::JGT,
            Cond::Ge => op::JGE,
            Cond::Lt => op::JLT,
            Cond::Le => op::JLE,
            Cond::Sgt => op::JSGT,
            Cond::Sge => op::JSGE,
            Cond::Slt => op::JSLT,
            Cond::Sle => op::JSLE,
            Cond::Set => op::JSET,
        }
    }

    /// The condition that holds exactly when `self` does not (`Set` has none).
    pub fn negate(self) -> Option<Cond> {
        Some(match self {
            Cond::Eq => Cond::Ne,
            Cond::Ne => Cond::Eq,
            Cond::Gt => Cond::Le,
            Cond::Ge => Cond::Lt,
            Cond::Lt => Cond::Ge,
            Cond::Le => Cond::Gt,
            Cond::Sgt => Cond::Sle,
            Cond::Sge => Cond::Slt,
            Cond::Slt => Cond::Sge,
            Cond::Sle => Cond::Sgt,
            Cond::Set => return None,
        })
    }
}

/// Atomic read-modify-write operations (`lock *(u64 *)(r1 + 0) += r2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomicOp {
    Add,
    Or,
    And,
    Xor,
    FetchAdd,
    FetchOr,
    FetchAnd,
    FetchXor,
    Xchg,
    Cmpxchg,
}

impl AtomicOp {
    pub fn imm(self) -> i32 {
        match self {
            AtomicOp::Add => op::ADD as i32,
            AtomicOp::Or => op::OR as i32,
            AtomicOp::And => op::AND as i32,
            AtomicOp::Xor => op::XOR as i32,
            AtomicOp::FetchAdd => op::ADD as i32 | op::FETCH,
            AtomicOp::FetchOr => op::OR as i32 | op::FETCH,
            AtomicOp::FetchAnd => op::AND as i32 | op::FETCH,
            AtomicOp::FetchXor => op::XOR as i32 | op::FETCH,
            AtomicOp::Xchg => op::XCHG,
            AtomicOp::Cmpxchg => op::CMPXCHG,
        }
    }

    pub fn from_imm(imm: i32) -> Option<AtomicOp> {
        [
            AtomicOp::Add,
            AtomicOp::Or,
            AtomicOp::And,
            AtomicOp::Xor,
            AtomicOp::FetchAdd,
            AtomicOp::FetchOr,
            AtomicOp::FetchAnd,
            AtomicOp::FetchXor,
            AtomicOp::Xchg,
            AtomicOp::Cmpxchg,
        ]
        .into_iter()
        .find(|a| a.imm() == imm)
    }
}

/// A jump target. Created by [`Asm::label`], placed by [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Label(usize);

/// A `ld_imm64` that must be pointed at a map by the loader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapRef {
    /// Index of the first slot of the `ld_imm64`.
    pub insn_index: usize,
    /// Name of the map, as given to the loader.
    pub map: String,
}

/// An assembled program: instruction slots plus the map references the loader resolves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Program {
    pub insns: Vec<Insn>,
    pub map_refs: Vec<MapRef>,
}

impl Program {
    pub fn bytecode(&self) -> Vec<u8> {
        super::insn::to_bytecode(&self.insns)
    }

    /// Number of instruction slots (what the kernel counts).
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }
}

#[derive(Clone, Copy, Debug)]
enum Fixup {
    /// 16-bit `off` of a jump (JMP/JMP32 class).
    Off16,
    /// 32-bit `imm` of `gotol` (JMP32 JA).
    Imm32,
}

/// The program builder. Emit instructions in order; jumps take labels, which may be
/// bound before or after the jump. `finish` resolves and range-checks every jump.
#[derive(Default)]
pub struct Asm {
    insns: Vec<Insn>,
    map_refs: Vec<MapRef>,
    labels: Vec<Option<usize>>,
    label_names: Vec<Option<String>>,
    fixups: Vec<(usize, Label, Fixup)>,
    error: Option<AsmError>,
}

impl Asm {
    pub fn new() -> Self {
        Self::default()
    }

    /// Current instruction index (where the next instruction goes).
    pub fn pos(&self) -> usize {
        self.insns.len()
    }

    /// A fresh, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        self.label_names.push(None);
        Label(self.labels.len() - 1)
    }

    /// A fresh label with a name, used in error messages (the DSL names its labels).
    pub fn named_label(&mut self, name: &str) -> Label {
        let l = self.label();
        self.label_names[l.0] = Some(name.to_string());
        l
    }

    /// Place `l` at the current position. Binding twice is an error.
    pub fn bind(&mut self, l: Label) -> &mut Self {
        if self.labels[l.0].is_some() {
            self.fail(AsmError::LabelRebound(self.label_name(l)));
        } else {
            self.labels[l.0] = Some(self.insns.len());
        }
        self
    }

    /// The label called `name`, created on first use. The DSL and the text assembler
    /// refer to labels by name, so a forward `goto done` and a later `done:` meet here.
    pub fn label_named(&mut self, name: &str) -> Label {
        match self
            .label_names
            .iter()
            .position(|n| n.as_deref() == Some(name))
        {
            Some(i) => Label(i),
            None => self.named_label(name),
        }
    }

    /// Record an error found while emitting; `finish` returns the first one recorded.
    pub fn record_error(&mut self, e: AsmError) -> &mut Self {
        self.fail(e);
        self
    }

    /// The first error recorded so far, if any.
    pub fn error(&self) -> Option<&AsmError> {
        self.error.as_ref()
    }

    pub fn is_bound(&self, l: Label) -> bool {
        self.labels[l.0].is_some()
    }

    fn label_name(&self, l: Label) -> String {
        self.label_names[l.0]
            .clone()
            .unwrap_or_else(|| format!("#{}", l.0))
    }

    fn fail(&mut self, e: AsmError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Take back the instruction at `at` if it is the last one and neither a jump nor
    /// part of a map reference: labels bound after it move back onto what is emitted
    /// next. For peephole fusion, where the next instruction does its work too.
    pub fn retract_last(&mut self, at: usize) -> bool {
        if at + 1 != self.insns.len()
            || self.fixups.iter().any(|f| f.0 == at)
            || self
                .map_refs
                .iter()
                .any(|m| (m.insn_index..=m.insn_index + 1).contains(&at))
        {
            return false;
        }
        self.insns.pop();
        for l in self.labels.iter_mut().flatten() {
            if *l > at {
                *l = at;
            }
        }
        true
    }

    /// Append a raw instruction slot.
    pub fn raw(&mut self, i: Insn) -> &mut Self {
        self.insns.push(i);
        self
    }

    fn alu_insn(&mut self, class: u8, o: AluOp, dst: Reg, src: Src) -> &mut Self {
        if dst == Reg::R10 {
            self.fail(AsmError::BadOperand(format!(
                "r10 is read-only (destination of {o:?})"
            )));
        }
        let (bits, off) = o.encode();
        let i = match src {
            Src::Reg(s) => Insn::new(class | bits | op::X, dst.num(), s.num(), off, 0),
            Src::Imm(k) => {
                if off != 0 && bits == op::MOV {
                    self.fail(AsmError::BadOperand(format!(
                        "{o:?} takes a register source"
                    )));
                }
                Insn::new(class | bits | op::K, dst.num(), 0, off, k)
            }
        };
        self.raw(i)
    }

    /// 64-bit ALU: `dst op= src`.
    pub fn alu64(&mut self, o: AluOp, dst: Reg, src: impl Into<Src>) -> &mut Self {
        self.alu_insn(op::ALU64, o, dst, src.into())
    }

    /// 32-bit ALU: `wdst op= wsrc` (zero-extends the result).
    pub fn alu32(&mut self, o: AluOp, dst: Reg, src: impl Into<Src>) -> &mut Self {
        self.alu_insn(op::ALU, o, dst, src.into())
    }

    pub fn mov64(&mut self, dst: Reg, src: impl Into<Src>) -> &mut Self {
        self.alu64(AluOp::Mov, dst, src)
    }

    pub fn mov32(&mut self, dst: Reg, src: impl Into<Src>) -> &mut Self {
        self.alu32(AluOp::Mov, dst, src)
    }

    pub fn add64(&mut self, dst: Reg, src: impl Into<Src>) -> &mut Self {
        self.alu64(AluOp::Add, dst, src)
    }

    pub fn neg64(&mut self, dst: Reg) -> &mut Self {
        self.raw(Insn::new(op::ALU64 | op::NEG, dst.num(), 0, 0, 0))
    }

    pub fn neg32(&mut self, dst: Reg) -> &mut Self {
        self.raw(Insn::new(op::ALU | op::NEG, dst.num(), 0, 0, 0))
    }

    /// `dst = be16/be32/be64 dst` (host to big endian; a swap on x86).
    pub fn to_be(&mut self, dst: Reg, bits: u8) -> &mut Self {
        self.endian(op::ALU | op::END | op::TO_BE, dst, bits)
    }

    /// `dst = le16/le32/le64 dst` (truncates on little-endian hosts).
    pub fn to_le(&mut self, dst: Reg, bits: u8) -> &mut Self {
        self.endian(op::ALU | op::END | op::TO_LE, dst, bits)
    }

    /// `dst = bswap16/32/64 dst` unconditional swap (cpu v4).
    pub fn bswap(&mut self, dst: Reg, bits: u8) -> &mut Self {
        self.endian(op::ALU64 | op::END | op::TO_LE, dst, bits)
    }

    fn endian(&mut self, code: u8, dst: Reg, bits: u8) -> &mut Self {
        if !matches!(bits, 16 | 32 | 64) {
            self.fail(AsmError::BadOperand(format!(
                "byte swap width must be 16, 32 or 64, not {bits}"
            )));
        }
        self.raw(Insn::new(code, dst.num(), 0, 0, bits as i32))
    }

    /// `dst = *(size *)(src + off)`
    pub fn ldx(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.raw(Insn::new(
            op::LDX | op::MEM | size.bits(),
            dst.num(),
            src.num(),
            off,
            0,
        ))
    }

    /// `dst = *(s8/s16/s32 *)(src + off)` sign-extending load (cpu v4).
    pub fn ldxs(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        if size == Size::DW {
            self.fail(AsmError::BadOperand(
                "sign-extending load of a double word".into(),
            ));
        }
        self.raw(Insn::new(
            op::LDX | op::MEMSX | size.bits(),
            dst.num(),
            src.num(),
            off,
            0,
        ))
    }

    /// `*(size *)(dst + off) = src`
    pub fn stx(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.raw(Insn::new(
            op::STX | op::MEM | size.bits(),
            dst.num(),
            src.num(),
            off,
            0,
        ))
    }

    /// `*(size *)(dst + off) = imm`
    pub fn st(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Self {
        self.raw(Insn::new(
            op::ST | op::MEM | size.bits(),
            dst.num(),
            0,
            off,
            imm,
        ))
    }

    /// Atomic operation on `*(size *)(dst + off)` with `src` (W or DW only).
    pub fn atomic(&mut self, o: AtomicOp, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        if !matches!(size, Size::W | Size::DW) {
            self.fail(AsmError::BadOperand(format!(
                "atomic {o:?} needs a 32- or 64-bit operand, not {size:?}"
            )));
        }
        self.raw(Insn::new(
            op::STX | op::ATOMIC | size.bits(),
            dst.num(),
            src.num(),
            off,
            o.imm(),
        ))
    }

    /// Legacy packet load `r0 = ntoh(*(size *)(skb->data + imm))` (socket filters).
    pub fn ld_abs(&mut self, size: Size, imm: i32) -> &mut Self {
        self.raw(Insn::new(op::LD | op::ABS | size.bits(), 0, 0, 0, imm))
    }

    /// Legacy packet load `r0 = ntoh(*(size *)(skb->data + src + imm))`.
    pub fn ld_ind(&mut self, size: Size, src: Reg, imm: i32) -> &mut Self {
        self.raw(Insn::new(
            op::LD | op::IND | size.bits(),
            0,
            src.num(),
            0,
            imm,
        ))
    }

    /// `dst = imm64 ll` (two slots).
    pub fn ld_imm64(&mut self, dst: Reg, imm: u64) -> &mut Self {
        self.ld_imm64_src(dst, 0, imm)
    }

    /// `ld_imm64` with a pseudo source (map fd, map value, BTF id, ...).
    pub fn ld_imm64_src(&mut self, dst: Reg, src: u8, imm: u64) -> &mut Self {
        self.raw(Insn::new(
            op::LD | op::IMM | op::DW,
            dst.num(),
            src,
            0,
            imm as u32 as i32,
        ));
        self.raw(Insn::new(0, 0, 0, 0, (imm >> 32) as u32 as i32))
    }

    /// `dst = map[name]`: a map fd reference the loader fills in.
    pub fn ld_map(&mut self, dst: Reg, map: &str) -> &mut Self {
        self.map_refs.push(MapRef {
            insn_index: self.insns.len(),
            map: map.to_string(),
        });
        self.ld_imm64_src(dst, op::PSEUDO_MAP_FD, 0)
    }

    /// Call a kernel helper.
    pub fn call(&mut self, h: Helper) -> &mut Self {
        self.call_id(h.id())
    }

    pub fn call_id(&mut self, id: i32) -> &mut Self {
        self.raw(Insn::new(op::JMP | op::CALL, 0, 0, 0, id))
    }

    pub fn exit(&mut self) -> &mut Self {
        self.raw(Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0))
    }

    /// Unconditional jump (`goto`).
    pub fn ja(&mut self, target: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), target, Fixup::Off16));
        self.raw(Insn::new(op::JMP | op::JA, 0, 0, 0, 0))
    }

    /// Long unconditional jump (`gotol`, 32-bit offset, cpu v4).
    pub fn ja_long(&mut self, target: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), target, Fixup::Imm32));
        self.raw(Insn::new(op::JMP32 | op::JA, 0, 0, 0, 0))
    }

    fn jcc(&mut self, class: u8, c: Cond, dst: Reg, src: Src, target: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), target, Fixup::Off16));
        let i = match src {
            Src::Reg(s) => Insn::new(class | c.bits() | op::X, dst.num(), s.num(), 0, 0),
            Src::Imm(k) => Insn::new(class | c.bits() | op::K, dst.num(), 0, 0, k),
        };
        self.raw(i)
    }

    /// `if dst <c> src goto target` on 64-bit values.
    pub fn jmp(&mut self, c: Cond, dst: Reg, src: impl Into<Src>, target: Label) -> &mut Self {
        self.jcc(op::JMP, c, dst, src.into(), target)
    }

    /// `if wdst <c> wsrc goto target` on the low 32 bits.
    pub fn jmp32(&mut self, c: Cond, dst: Reg, src: impl Into<Src>, target: Label) -> &mut Self {
        self.jcc(op::JMP32, c, dst, src.into(), target)
    }

    /// Resolve labels and return the program. Fails on the first error recorded while
    /// building, an unbound label, or a jump that does not fit its offset field.
    pub fn finish(self) -> Result<Program, AsmError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut insns = self.insns;
        for &(at, label, kind) in &self.fixups {
            let target = self.labels[label.0].ok_or_else(|| {
                AsmError::UnknownLabel(
                    self.label_names[label.0]
                        .clone()
                        .unwrap_or_else(|| format!("#{}", label.0)),
                )
            })?;
            let delta = target as i64 - at as i64 - 1;
            match kind {
                Fixup::Off16 => {
                    insns[at].off = i16::try_from(delta)
                        .map_err(|_| AsmError::JumpOutOfRange { at, offset: delta })?;
                }
                Fixup::Imm32 => {
                    insns[at].imm = i32::try_from(delta)
                        .map_err(|_| AsmError::JumpOutOfRange { at, offset: delta })?;
                }
            }
        }
        Ok(Program {
            insns,
            map_refs: self.map_refs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Reg::*;
    use super::*;

    #[test]
    fn forward_and_backward_jumps_resolve() {
        let mut a = Asm::new();
        let top = a.label();
        let out = a.label();
        a.bind(top);
        a.mov64(R0, 1);
        a.jmp(Cond::Eq, R1, 0, out);
        a.ja(top);
        a.bind(out);
        a.exit();
        let p = a.finish().unwrap();
        assert_eq!(p.insns[1].off, 1);
        assert_eq!(p.insns[2].off, -3);
    }

    #[test]
    fn retracting_the_last_instruction_moves_labels_after_it() {
        let mut a = Asm::new();
        let (before, after) = (a.label(), a.label());
        a.mov64(R0, 1);
        a.jmp(Cond::Eq, R1, 0, before);
        a.jmp(Cond::Eq, R1, 1, after);
        a.bind(before);
        let at = a.pos();
        a.alu64(AluOp::Or, R0, 0);
        a.bind(after);
        // a jump is never taken back, nor an index that is not the last one
        assert!(!a.retract_last(at - 1));
        assert!(!a.retract_last(at + 1));
        assert!(a.retract_last(at));
        a.mov64(R0, 2);
        a.exit();
        let p = a.finish().unwrap();
        assert_eq!(p.len(), 5);
        // both jumps now land on `r0 = 2`
        assert_eq!((p.insns[1].off, p.insns[2].off), (1, 0));
    }

    #[test]
    fn unbound_label_is_an_error() {
        let mut a = Asm::new();
        let l = a.named_label("nowhere");
        a.ja(l);
        assert_eq!(
            a.finish().unwrap_err(),
            AsmError::UnknownLabel("nowhere".into())
        );
    }

    #[test]
    fn jump_out_of_range_is_an_error() {
        let mut a = Asm::new();
        let l = a.label();
        a.ja(l);
        for _ in 0..40_000 {
            a.mov64(R0, 0);
        }
        a.bind(l);
        a.exit();
        assert!(matches!(
            a.finish(),
            Err(AsmError::JumpOutOfRange { at: 0, .. })
        ));
    }

    #[test]
    fn writing_r10_is_rejected() {
        let mut a = Asm::new();
        a.mov64(R10, 0);
        assert!(matches!(a.finish(), Err(AsmError::BadOperand(_))));
    }

    #[test]
    fn map_reference_is_recorded() {
        let mut a = Asm::new();
        a.mov64(R0, 0);
        a.ld_map(R1, "events");
        a.exit();
        let p = a.finish().unwrap();
        assert_eq!(
            p.map_refs,
            vec![MapRef {
                insn_index: 1,
                map: "events".into()
            }]
        );
        assert_eq!(p.insns[1].src, op::PSEUDO_MAP_FD);
        assert_eq!(p.len(), 4);
    }
}
