//! Text assembler: reads the syntax the disassembler prints (the kernel's, see
//! [`super::disasm`]) plus `name:` labels, so listings assemble back to the same bytes.
//!
//! One instruction per line. Accepted around it: a verifier-log prefix `12: (bf) `, a leading
//! `name:` label, and comments from `//` or `;` (so verifier state annotations and trailing
//! DSL-style semicolons are ignored). Jumps take `pc+N` (raw offset) or a label name;
//! `r1 = 0x1234` without ` ll` is a move of a 32-bit immediate, with ` ll` a 64-bit load.

use std::collections::HashMap;

use super::builder::{Asm, Program, Reg};
use super::dsl::{self, MemType, Operand};
use super::insn::{op, Insn};
use super::AsmError;

/// An error in assembly text, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("line {line}: {source}")]
    Asm { line: usize, source: AsmError },
}

/// Assemble `text` into a program.
pub fn assemble(text: &str) -> Result<Program, TextError> {
    let mut a = Asm::new();
    // line of each emitted slot, and of each label's first use
    let mut slot_lines: Vec<usize> = Vec::new();
    let mut label_uses: HashMap<String, usize> = HashMap::new();
    let mut label_defs: HashMap<String, usize> = HashMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let toks = tokenize(strip_prefix(strip_comment(raw)))
            .map_err(|message| TextError::Syntax { line, message })?;
        let mut p = Parser {
            toks,
            pos: 0,
            labels_used: Vec::new(),
        };
        let label = p.leading_label();
        if let Some(l) = &label {
            label_defs.entry(l.clone()).or_insert(line);
            dsl::bind(&mut a, l);
        }
        if !p.at_end() {
            p.statement(&mut a)
                .map_err(|message| TextError::Syntax { line, message })?;
        }
        for l in p.labels_used {
            label_uses.entry(l).or_insert(line);
        }
        if let Some(e) = a.error() {
            return Err(TextError::Asm {
                line,
                source: e.clone(),
            });
        }
        slot_lines.resize(a.pos(), line);
    }
    if let Some((name, &line)) = label_uses
        .iter()
        .filter(|(name, _)| !label_defs.contains_key(*name))
        .min_by_key(|(_, line)| **line)
    {
        return Err(TextError::Asm {
            line,
            source: AsmError::UnknownLabel(name.clone()),
        });
    }
    a.finish().map_err(|e| {
        let line = match &e {
            AsmError::JumpOutOfRange { at, .. } => slot_lines.get(*at).copied().unwrap_or(0),
            _ => 0,
        };
        TextError::Asm { line, source: e }
    })
}

fn strip_comment(line: &str) -> &str {
    let end = [line.find("//"), line.find(';')]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(line.len());
    &line[..end]
}

/// Drop a verifier-log style `N: (code) ` prefix.
fn strip_prefix(line: &str) -> &str {
    let mut s = line.trim_start();
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits > 0 && s[digits..].starts_with(':') {
        s = s[digits + 1..].trim_start();
        let b = s.as_bytes();
        if b.len() >= 4 && b[0] == b'(' && b[3] == b')' && b[1..3].iter().all(u8::is_ascii_hexdigit)
        {
            s = &s[4..];
        }
    }
    s
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Num(i128),
    Punct(&'static str),
}

/// Longest first, so `s>>=` wins over `s>` and `>>=` over `>`.
const PUNCTS: &[&str] = &[
    "s>>=", "s>=", "s<=", "s/=", "s%=", "<<=", ">>=", "s>", "s<", "+=", "-=", "*=", "/=", "%=",
    "|=", "&=", "^=", "==", "!=", ">=", "<=", ">", "<", "=", "&", "*", "(", ")", "[", "]", "+",
    "-", ",", ":", "#",
];

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else {
            return Ok(out);
        };
        if let Some(p) = PUNCTS.iter().find(|p| rest.starts_with(**p)) {
            out.push(Tok::Punct(p));
            rest = &rest[p.len()..];
        } else if c.is_ascii_digit() {
            let len = rest
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(rest.len());
            let word = rest[..len].replace('_', "");
            let value = match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
                Some(hex) => i128::from_str_radix(hex, 16),
                None => word.parse(),
            }
            .map_err(|_| format!("bad number `{}`", &rest[..len]))?;
            out.push(Tok::Num(value));
            rest = &rest[len..];
        } else if c.is_ascii_alphabetic() || c == '_' {
            let len = rest
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(rest.len());
            out.push(Tok::Ident(rest[..len].to_string()));
            rest = &rest[len..];
        } else {
            return Err(format!("unexpected character `{c}`"));
        }
    }
}

fn register(word: &str) -> Option<Operand> {
    let (kind, n) = word.split_at(1);
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    let r = Reg::from_num(n.parse().ok()?)?;
    match kind {
        "r" => Some(Operand::R64(r)),
        "w" => Some(Operand::R32(r)),
        _ => None,
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    labels_used: Vec<String>,
}

type PResult<T> = Result<T, String>;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn peek_at(&self, k: usize) -> Option<&Tok> {
        self.toks.get(self.pos + k)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }

    fn next(&mut self) -> PResult<Tok> {
        let t = self
            .peek()
            .cloned()
            .ok_or_else(|| "unexpected end of line".to_string())?;
        self.pos += 1;
        Ok(t)
    }

    fn describe(&self) -> String {
        match self.peek() {
            None => "end of line".into(),
            Some(Tok::Ident(s)) => format!("`{s}`"),
            Some(Tok::Num(n)) => format!("`{n}`"),
            Some(Tok::Punct(p)) => format!("`{p}`"),
        }
    }

    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(q)) if *q == p)
    }

    fn is_ident(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s == w)
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        let yes = self.is_punct(p);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn expect_punct(&mut self, p: &str) -> PResult<()> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            Err(format!("expected `{p}`, found {}", self.describe()))
        }
    }

    fn expect_ident(&mut self, w: &str) -> PResult<()> {
        if self.is_ident(w) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected `{w}`, found {}", self.describe()))
        }
    }

    fn ident(&mut self) -> PResult<String> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(format!("expected a name, found {}", self.describe())),
        }
    }

    fn end(&self) -> PResult<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err(format!(
                "unexpected {} after the instruction",
                self.describe()
            ))
        }
    }

    /// `name:` at the start of the line.
    fn leading_label(&mut self) -> Option<String> {
        match (self.peek(), self.peek_at(1)) {
            (Some(Tok::Ident(s)), Some(Tok::Punct(":"))) => {
                let s = s.clone();
                self.pos += 2;
                Some(s)
            }
            _ => None,
        }
    }

    /// An integer with an optional sign.
    fn number(&mut self) -> PResult<i128> {
        let neg = self.eat_punct("-");
        if !neg {
            self.eat_punct("+");
        }
        match self.next()? {
            Tok::Num(n) => Ok(if neg { -n } else { n }),
            _ => {
                self.pos -= 1;
                Err(format!("expected a number, found {}", self.describe()))
            }
        }
    }

    fn reg(&mut self) -> PResult<Operand> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let r = register(s).ok_or_else(|| format!("expected a register, found `{s}`"))?;
                self.pos += 1;
                Ok(r)
            }
            _ => Err(format!("expected a register, found {}", self.describe())),
        }
    }

    /// A register or a signed number.
    fn operand(&mut self) -> PResult<Operand> {
        if let Some(Tok::Ident(_)) = self.peek() {
            self.reg()
        } else {
            Ok(Operand::Imm(self.number()?))
        }
    }

    /// `(u32 *)` → the type.
    fn cast(&mut self) -> PResult<MemType> {
        self.expect_punct("(")?;
        let name = self.ident()?;
        let ty = MemType::from_name(&name).ok_or_else(|| format!("unknown type `{name}`"))?;
        self.expect_punct("*")?;
        self.expect_punct(")")?;
        Ok(ty)
    }

    /// `(r6 +128)`, `(r10 -8)`, `(r1)` → base and offset.
    fn mem(&mut self) -> PResult<(Operand, i128)> {
        self.expect_punct("(")?;
        let base = self.reg()?;
        let off = if self.is_punct(")") {
            0
        } else {
            self.number()?
        };
        self.expect_punct(")")?;
        Ok((base, off))
    }

    /// After `goto`/`gotol`/`if ... goto`: `pc+N` or a label.
    fn target(&mut self) -> PResult<Target> {
        if self.is_ident("pc") && matches!(self.peek_at(1), Some(Tok::Punct("+" | "-"))) {
            self.pos += 1;
            return Ok(Target::Pc(self.number()?));
        }
        let l = self.ident()?;
        self.labels_used.push(l.clone());
        Ok(Target::Label(l))
    }

    fn statement(&mut self, a: &mut Asm) -> PResult<()> {
        match self.peek().cloned() {
            Some(Tok::Ident(w)) => match w.as_str() {
                "exit" => {
                    self.pos += 1;
                    self.end()?;
                    dsl::exit(a);
                }
                "call" => {
                    self.pos += 1;
                    self.call(a)?;
                }
                "goto" | "gotol" => {
                    self.pos += 1;
                    let t = self.target()?;
                    self.end()?;
                    match (w.as_str(), t) {
                        ("goto", Target::Label(l)) => dsl::goto(a, &l),
                        (_, Target::Label(l)) => dsl::gotol(a, &l),
                        ("goto", Target::Pc(off)) => {
                            let off = i16::try_from(off)
                                .map_err(|_| format!("offset {off} does not fit 16 bits"))?;
                            a.raw(Insn::new(op::JMP | op::JA, 0, 0, off, 0));
                        }
                        (_, Target::Pc(off)) => {
                            let imm = i32::try_from(off)
                                .map_err(|_| format!("offset {off} does not fit 32 bits"))?;
                            a.raw(Insn::new(op::JMP32 | op::JA, 0, 0, 0, imm));
                        }
                    }
                }
                "if" => {
                    self.pos += 1;
                    let dst = self.reg()?;
                    let c = match self.next()? {
                        Tok::Punct(p) => dsl::cond_from_symbol(p),
                        _ => None,
                    }
                    .ok_or_else(|| "expected a comparison after the register".to_string())?;
                    let src = self.operand()?;
                    self.expect_ident("goto")?;
                    let t = self.target()?;
                    self.end()?;
                    match t {
                        Target::Label(l) => dsl::jump(a, c, dst, src, &l),
                        Target::Pc(off) => dsl::jump_raw(a, c, dst, src, off),
                    }
                }
                "lock" => {
                    self.pos += 1;
                    self.expect_punct("*")?;
                    let ty = self.cast()?;
                    let (base, off) = self.mem()?;
                    let o = match self.next()? {
                        Tok::Punct(p) => dsl::atomic_op_from_symbol(p),
                        _ => None,
                    }
                    .ok_or_else(|| "expected `+=`, `|=`, `&=` or `^=`".to_string())?;
                    let src = self.reg()?;
                    self.end()?;
                    dsl::atomic(a, o, ty, base, off, src);
                }
                _ => self.assignment(a)?,
            },
            Some(Tok::Punct("*")) => {
                self.pos += 1;
                let ty = self.cast()?;
                let (base, off) = self.mem()?;
                self.expect_punct("=")?;
                let src = self.operand()?;
                self.end()?;
                dsl::store(a, ty, base, off, src);
            }
            _ => {
                return Err(format!(
                    "expected an instruction, found {}",
                    self.describe()
                ))
            }
        }
        Ok(())
    }

    /// `call bpf_name#id`, `call name`, `call 113`, `call unknown#id`, `call pc+N`,
    /// `call kernel-function#id`.
    fn call(&mut self, a: &mut Asm) -> PResult<()> {
        if let Some(Tok::Num(_)) = self.peek() {
            let id = self.number()?;
            self.end()?;
            let id = i32::try_from(id).map_err(|_| format!("helper id {id} out of range"))?;
            a.call_id(id);
            return Ok(());
        }
        if self.is_ident("pc") {
            self.pos += 1;
            let off = self.number()?;
            self.end()?;
            let off = i32::try_from(off).map_err(|_| format!("call offset {off} out of range"))?;
            a.raw(Insn::new(op::JMP | op::CALL, 0, op::PSEUDO_CALL, 0, off));
            return Ok(());
        }
        let name = self.ident()?;
        let kfunc = name == "kernel" && self.eat_punct("-") && {
            self.expect_ident("function")?;
            true
        };
        let id = if self.eat_punct("#") {
            let id = self.number()?;
            Some(i32::try_from(id).map_err(|_| format!("helper id {id} out of range"))?)
        } else {
            None
        };
        self.end()?;
        match (kfunc, name.as_str(), id) {
            (true, _, Some(id)) => {
                a.raw(Insn::new(
                    op::JMP | op::CALL,
                    0,
                    op::PSEUDO_KFUNC_CALL,
                    0,
                    id,
                ));
            }
            (true, _, None) => return Err("`call kernel-function` needs `#id`".into()),
            (false, _, Some(id)) => {
                let known = super::Helper(id).name();
                let bare = name.strip_prefix("bpf_").unwrap_or(&name);
                if known == Some(bare) || (known.is_none() && name == "unknown") {
                    a.call_id(id);
                } else {
                    return Err(format!("helper `{name}` does not have id #{id}"));
                }
            }
            (false, _, None) => dsl::call_named(a, &name),
        }
        Ok(())
    }

    /// Everything that starts with a register.
    fn assignment(&mut self, a: &mut Asm) -> PResult<()> {
        let dst = self.reg()?;
        let sym = match self.next()? {
            Tok::Punct(p) => p,
            _ => {
                self.pos -= 1;
                return Err(format!(
                    "expected an assignment after the register, found {}",
                    self.describe()
                ));
            }
        };
        if sym != "=" {
            let o =
                dsl::alu_op_from_symbol(sym).ok_or_else(|| format!("unknown operator `{sym}`"))?;
            let src = self.operand()?;
            self.end()?;
            dsl::alu(a, o, dst, src);
            return Ok(());
        }
        match self.peek().cloned() {
            Some(Tok::Punct("-")) if matches!(self.peek_at(1), Some(Tok::Ident(_))) => {
                self.pos += 1;
                let src = self.reg()?;
                self.end()?;
                dsl::neg(a, dst, src);
            }
            Some(Tok::Punct("*")) => {
                self.pos += 1;
                let ty = self.cast()?;
                if self.is_ident("skb") {
                    self.pos += 1;
                    self.expect_punct("[")?;
                    if let Some(Tok::Ident(_)) = self.peek() {
                        let src = self.reg()?;
                        self.expect_punct("+")?;
                        let k = self.number()?;
                        self.expect_punct("]")?;
                        self.end()?;
                        dsl::ld_ind(a, dst, ty, src, k);
                    } else {
                        let k = self.number()?;
                        self.expect_punct("]")?;
                        self.end()?;
                        dsl::ld_abs(a, dst, ty, k);
                    }
                } else {
                    let (base, off) = self.mem()?;
                    self.end()?;
                    dsl::load(a, dst, ty, base, off);
                }
            }
            Some(Tok::Punct("(")) => {
                self.pos += 1;
                let bits = match self.ident()?.as_str() {
                    "s8" => 8,
                    "s16" => 16,
                    "s32" => 32,
                    other => return Err(format!("unknown cast `({other})`")),
                };
                self.expect_punct(")")?;
                let src = self.reg()?;
                self.end()?;
                dsl::movsx(a, dst, bits, src);
            }
            Some(Tok::Ident(w)) if register(&w).is_none() => {
                self.pos += 1;
                match w.as_str() {
                    "map" => self.map(a, dst)?,
                    "btf_id" | "subprog" => {
                        self.expect_punct("[")?;
                        let k = self.number()?;
                        self.expect_punct("]")?;
                        self.end()?;
                        let src = if w == "btf_id" {
                            op::PSEUDO_BTF_ID
                        } else {
                            op::PSEUDO_FUNC
                        };
                        pseudo_load(a, dst, src, k, 0)?;
                    }
                    _ if w.starts_with("atomic") => {
                        self.expect_punct("(")?;
                        let ty = self.cast()?;
                        let (base, off) = self.mem()?;
                        let mut args = Vec::new();
                        while self.eat_punct(",") {
                            args.push(self.reg()?);
                        }
                        self.expect_punct(")")?;
                        self.end()?;
                        dsl::atomic_call(a, dst, &w, ty, base, off, &args);
                    }
                    _ => {
                        let src = self.reg()?;
                        self.end()?;
                        dsl::endian(a, dst, &w, src);
                    }
                }
            }
            _ => {
                let src = self.operand()?;
                if self.is_ident("ll") {
                    self.pos += 1;
                    self.end()?;
                    match src {
                        Operand::Imm(k) => dsl::ld_imm64(a, dst, k),
                        _ => return Err("` ll` needs a number".into()),
                    }
                } else {
                    self.end()?;
                    dsl::alu(a, super::AluOp::Mov, dst, src);
                }
            }
        }
        Ok(())
    }

    /// After `rN = map`: `[name]`, `[fd:N]`, `[fd:N][0]+off`, `[idx:N]`, `[idx:N]+off`.
    fn map(&mut self, a: &mut Asm, dst: Operand) -> PResult<()> {
        self.expect_punct("[")?;
        let name = self.ident()?;
        if self.eat_punct("]") {
            self.end()?;
            dsl::ld_map(a, dst, &name);
            return Ok(());
        }
        self.expect_punct(":")?;
        let n = self.number()?;
        self.expect_punct("]")?;
        let value_off = match name.as_str() {
            "fd" if self.eat_punct("[") => {
                if self.number()? != 0 {
                    return Err("map value references index element 0 only".into());
                }
                self.expect_punct("]")?;
                Some(self.number()?)
            }
            "idx" if !self.at_end() => Some(self.number()?),
            "fd" | "idx" => None,
            other => return Err(format!("unknown map reference kind `{other}`")),
        };
        self.end()?;
        let src = match (name.as_str(), value_off.is_some()) {
            ("fd", false) => op::PSEUDO_MAP_FD,
            ("fd", true) => op::PSEUDO_MAP_VALUE,
            ("idx", false) => op::PSEUDO_MAP_IDX,
            _ => op::PSEUDO_MAP_IDX_VALUE,
        };
        pseudo_load(a, dst, src, n, value_off.unwrap_or(0))
    }
}

enum Target {
    Pc(i128),
    Label(String),
}

/// `ld_imm64` with a pseudo source: `lo` in the first slot's imm, `hi` (a `u32`) in the second.
fn pseudo_load(a: &mut Asm, dst: Operand, src: u8, lo: i128, hi: i128) -> PResult<()> {
    let Operand::R64(d) = dst else {
        return Err("the destination must be a 64-bit register".into());
    };
    let lo = i32::try_from(lo).map_err(|_| format!("{lo} does not fit 32 bits"))? as u32;
    let hi = u32::try_from(hi).map_err(|_| format!("{hi} does not fit an unsigned 32 bits"))?;
    a.ld_imm64_src(d, src, (hi as u64) << 32 | lo as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_prefixes() {
        let p = assemble(
            "  0: (b7) r0 = 0\n\
             top:\n\
             if r1 == 0x0 goto out ; comment\n\
             r1 -= 1\n\
             goto top\n\
             out: exit",
        )
        .unwrap();
        assert_eq!(p.insns[1].off, 2);
        assert_eq!(p.insns[3].off, -3);
    }

    #[test]
    fn errors_carry_line_numbers() {
        assert_eq!(
            assemble("r0 = 0\ngoto nowhere\nexit").unwrap_err(),
            TextError::Asm {
                line: 2,
                source: AsmError::UnknownLabel("nowhere".into())
            }
        );
        assert!(matches!(
            assemble("exit\nr1 = frob r2").unwrap_err(),
            TextError::Asm { line: 2, .. }
        ));
        assert!(matches!(
            assemble("exit\n\nr1 ?= 2").unwrap_err(),
            TextError::Syntax { line: 3, .. }
        ));
        assert_eq!(
            assemble("l: exit\nl: exit").unwrap_err(),
            TextError::Asm {
                line: 2,
                source: AsmError::LabelRebound("l".into())
            }
        );
        let far = format!("r0 = 0\ngoto end\n{}end: exit\n", "r0 = 0\n".repeat(40_000));
        assert!(matches!(
            assemble(&far).unwrap_err(),
            TextError::Asm {
                line: 2,
                source: AsmError::JumpOutOfRange { at: 1, .. }
            }
        ));
    }

    #[test]
    fn call_forms() {
        let p = assemble(
            "call bpf_ktime_get_ns#5\ncall ktime_get_ns\ncall 5\ncall unknown#999\n\
             call pc-2\ncall kernel-function#42",
        )
        .unwrap();
        let ids: Vec<(u8, i32)> = p.insns.iter().map(|i| (i.src, i.imm)).collect();
        assert_eq!(ids, [(0, 5), (0, 5), (0, 5), (0, 999), (1, -2), (2, 42)]);
        assert!(assemble("call bpf_ktime_get_ns#6").is_err());
        assert!(assemble("call unknown#5").is_err());
    }
}
