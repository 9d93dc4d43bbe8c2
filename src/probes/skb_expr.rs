//! `--filter-skb-expr` and `--output-skb-metadata` (and their XDP twins on `xdp`): a small
//! C-like expression language on the fields of a root struct (`skb->dev->ifindex == 9 &&
//! skb->mark & 0xff != 0`), resolved through BTF and compiled to chains of
//! `bpf_probe_read_kernel` reads plus comparisons.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char, multispace0};
use nom::combinator::{all_consuming, map, not, opt, recognize};
use nom::multi::many0;
use nom::sequence::{delimited, pair, preceded, terminated};
use nom::{IResult, Parser};

use crate::asm::{Asm, Cond, Label, Reg, Size};
use crate::bpf;
use crate::btf::{split_path, FieldPath, KernelBtf, PathError, ScalarKind};

/// What an expression's root names: its name in the text, the struct it points to, and
/// the flags taking expressions on it (for messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExprRoot {
    pub name: &'static str,
    pub btf_struct: &'static str,
    pub metadata_flag: &'static str,
}

/// `skb`: `--filter-skb-expr`, `--output-skb-metadata`.
pub const SKB: ExprRoot = ExprRoot {
    name: "skb",
    btf_struct: "sk_buff",
    metadata_flag: "--output-skb-metadata",
};

/// `xdp`, an XDP program's `xdp_buff`: `--filter-xdp-expr`, `--output-xdp-metadata`.
pub const XDP: ExprRoot = ExprRoot {
    name: "xdp",
    btf_struct: "xdp_buff",
    metadata_flag: "--output-xdp-metadata",
};
/// Most fields `--output-skb-metadata` records.
pub const MAX_METADATA: usize = 4;

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// An expression over fields; `P` is the field: its text once parsed, a [`FieldPath`]
/// once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkbExpr<P> {
    Or(Box<SkbExpr<P>>, Box<SkbExpr<P>>),
    And(Box<SkbExpr<P>>, Box<SkbExpr<P>>),
    Not(Box<SkbExpr<P>>),
    /// `field [& mask] op value`; a bare field means `field != 0`.
    Cmp {
        field: P,
        mask: Option<u64>,
        op: CmpOp,
        /// The constant as 64 bits (negative numbers in two's complement).
        value: u64,
    },
}

/// A resolved filter, ready for code generation.
pub type SkbFilter = SkbExpr<FieldPath>;

/// Errors parsing or resolving an expression.
#[derive(Debug, thiserror::Error)]
pub enum SkbExprError {
    #[error(
        "cannot parse expression `{expr}` at `{rest}` (expected e.g. `skb->dev->ifindex == 9`)"
    )]
    Syntax { expr: String, rest: String },
    #[error("`{path}`: expressions start at `{root}` (e.g. `{root}->len`)")]
    Root { path: String, root: &'static str },
    #[error("malformed field path `{path}` (expected e.g. `skb->dev->ifindex`)")]
    BadPath { path: String },
    #[error("at most {MAX_METADATA} {flag} fields, got {got}")]
    TooManyFields { flag: &'static str, got: usize },
    #[error(transparent)]
    Path(#[from] PathError),
}

fn ws<'a, O>(
    inner: impl Parser<&'a str, Output = O, Error = nom::error::Error<&'a str>>,
) -> impl Parser<&'a str, Output = O, Error = nom::error::Error<&'a str>> {
    delimited(multispace0, inner, multispace0)
}

fn ident(i: &str) -> IResult<&str, &str> {
    recognize(pair(
        take_while1(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_'),
    ))
    .parse(i)
}

fn path_text(i: &str) -> IResult<&str, &str> {
    recognize(pair(ident, many0(pair(alt((tag("->"), tag("."))), ident)))).parse(i)
}

fn number(i: &str) -> IResult<&str, u64> {
    let (rest, neg) = opt(char('-')).parse(i)?;
    let (rest, digits) =
        take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_').parse(rest)?;
    let parsed = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        u64::from_str_radix(hex, 16).ok()
    } else {
        digits.parse::<u64>().ok()
    };
    let fail = || nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Digit));
    let v = parsed.ok_or_else(fail)?;
    let v = match neg {
        Some(_) if v > 1 << 63 => return Err(fail()),
        Some(_) => (v as i64).wrapping_neg() as u64,
        None => v,
    };
    Ok((rest, v))
}

fn cmp_op(i: &str) -> IResult<&str, CmpOp> {
    alt((
        map(tag("=="), |_| CmpOp::Eq),
        map(tag("!="), |_| CmpOp::Ne),
        map(tag("<="), |_| CmpOp::Le),
        map(tag(">="), |_| CmpOp::Ge),
        map(tag("<"), |_| CmpOp::Lt),
        map(tag(">"), |_| CmpOp::Gt),
    ))
    .parse(i)
}

fn comparison(i: &str) -> IResult<&str, SkbExpr<String>> {
    let (i, field) = ws(path_text).parse(i)?;
    let (i, mask) = opt(preceded(terminated(char('&'), not(char('&'))), ws(number))).parse(i)?;
    let (i, rhs) = opt(pair(ws(cmp_op), ws(number))).parse(i)?;
    let (op, value) = rhs.unwrap_or((CmpOp::Ne, 0));
    Ok((
        i,
        SkbExpr::Cmp {
            field: field.to_string(),
            mask,
            op,
            value,
        },
    ))
}

fn unary(i: &str) -> IResult<&str, SkbExpr<String>> {
    alt((
        map(
            preceded(ws(terminated(char('!'), not(char('=')))), unary),
            |e| SkbExpr::Not(Box::new(e)),
        ),
        delimited(ws(char('(')), or_expr, ws(char(')'))),
        comparison,
    ))
    .parse(i)
}

fn and_expr(i: &str) -> IResult<&str, SkbExpr<String>> {
    let (i, first) = unary(i)?;
    let (i, rest) = many0(preceded(ws(tag("&&")), unary)).parse(i)?;
    Ok((
        i,
        rest.into_iter()
            .fold(first, |l, r| SkbExpr::And(Box::new(l), Box::new(r))),
    ))
}

fn or_expr(i: &str) -> IResult<&str, SkbExpr<String>> {
    let (i, first) = and_expr(i)?;
    let (i, rest) = many0(preceded(ws(tag("||")), and_expr)).parse(i)?;
    Ok((
        i,
        rest.into_iter()
            .fold(first, |l, r| SkbExpr::Or(Box::new(l), Box::new(r))),
    ))
}

/// Parses an expression such as `skb->dev->ifindex == 9 && !(skb->mark & 0xff)`.
pub fn parse(text: &str) -> Result<SkbExpr<String>, SkbExprError> {
    match all_consuming(or_expr).parse(text) {
        Ok((_, e)) => Ok(e),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(SkbExprError::Syntax {
            expr: text.to_string(),
            rest: if e.input.is_empty() {
                "end of input".to_string()
            } else {
                e.input.to_string()
            },
        }),
        Err(nom::Err::Incomplete(_)) => Err(SkbExprError::Syntax {
            expr: text.to_string(),
            rest: "end of input".to_string(),
        }),
    }
}

/// Resolves one `skb->...` (`root`) field path through BTF.
pub fn resolve_field(
    btf: &KernelBtf,
    root_of: ExprRoot,
    text: &str,
) -> Result<FieldPath, SkbExprError> {
    let text = text.trim();
    let (root, segments) = split_path(text).ok_or_else(|| SkbExprError::BadPath {
        path: text.to_string(),
    })?;
    if root != root_of.name {
        return Err(SkbExprError::Root {
            path: text.to_string(),
            root: root_of.name,
        });
    }
    Ok(btf.resolve_path(root_of.btf_struct, &segments, text)?)
}

impl SkbExpr<String> {
    /// Resolves every field through BTF, from `root`.
    pub fn resolve(&self, btf: &KernelBtf, root: ExprRoot) -> Result<SkbFilter, SkbExprError> {
        let sub = |e: &SkbExpr<String>| e.resolve(btf, root).map(Box::new);
        Ok(match self {
            SkbExpr::Or(l, r) => SkbExpr::Or(sub(l)?, sub(r)?),
            SkbExpr::And(l, r) => SkbExpr::And(sub(l)?, sub(r)?),
            SkbExpr::Not(e) => SkbExpr::Not(sub(e)?),
            SkbExpr::Cmp {
                field,
                mask,
                op,
                value,
            } => SkbExpr::Cmp {
                field: resolve_field(btf, root, field)?,
                mask: *mask,
                op: *op,
                value: *value,
            },
        })
    }
}

/// Parses and resolves `--filter-skb-expr` (`root` [`SKB`]) or `--filter-xdp-expr` ([`XDP`]).
pub fn compile_filter(
    btf: &KernelBtf,
    root: ExprRoot,
    text: &str,
) -> Result<SkbFilter, SkbExprError> {
    parse(text)?.resolve(btf, root)
}

/// Resolves the `--output-skb-metadata` (`--output-xdp-metadata`) fields of `root` (at
/// most [`MAX_METADATA`]; blank entries, e.g. from `--output-skb-metadata ''`, are skipped).
pub fn compile_metadata(
    btf: &KernelBtf,
    root: ExprRoot,
    fields: &[String],
) -> Result<Vec<FieldPath>, SkbExprError> {
    let fields: Vec<&String> = fields.iter().filter(|f| !f.trim().is_empty()).collect();
    if fields.len() > MAX_METADATA {
        return Err(SkbExprError::TooManyFields {
            flag: root.metadata_flag,
            got: fields.len(),
        });
    }
    fields
        .into_iter()
        .map(|f| resolve_field(btf, root, f))
        .collect()
}

/// Emits code leaving `path`'s value (zero- or sign-extended to 64 bits) in r1, reading
/// from the pointer in `root`. A NULL pointer or failed read jumps to `fail`.
/// Clobbers r0-r5 and the 8-byte stack slot at `r10 + slot`.
pub fn emit_load(a: &mut Asm, path: &FieldPath, root: Reg, slot: i16, fail: Label) {
    bpf!(into a; r3 = (root););
    for &off in &path.derefs {
        bpf!(into a;
            r3 += off;
            r1 = r10;
            r1 += slot;
            r2 = 8;
            call probe_read_kernel;
            if r0 != 0 goto (fail);
            r3 = *(u64 *)(r10 + slot);
            if r3 == 0 goto (fail);
        );
    }
    let f = path.field;
    let ty = Size::from_bytes(f.size_bytes as usize).unwrap_or(Size::DW);
    bpf!(into a;
        r3 += (f.offset_bytes());
        r1 = r10;
        r1 += slot;
        r2 = (f.size_bytes);
        call probe_read_kernel;
        if r0 != 0 goto (fail);
        r1 = *(ty *)(r10 + slot);
    );
    let signed = path.kind == ScalarKind::Signed;
    // Shift the field to the top of r1, then back down, extending its sign if it has one.
    let (left, right) = match f.bitfield {
        Some(b) => (
            64 - b.bit_offset as i32 - b.bit_size as i32,
            64 - b.bit_size as i32,
        ),
        None if signed && f.size_bytes < 8 => {
            let bits = 64 - 8 * f.size_bytes as i32;
            (bits, bits)
        }
        None => (0, 0),
    };
    if left > 0 {
        bpf!(into a; r1 <<= left;);
    }
    match (right > 0, signed) {
        (true, true) => bpf!(into a; r1 s>>= right;),
        (true, false) => bpf!(into a; r1 >>= right;),
        (false, _) => {}
    }
}

/// Emits the filter: falls through when `expr` holds for the skb in `root`, else jumps to
/// `fail`. A NULL pointer on any field's path makes the whole expression false.
/// Clobbers r0-r5 and the 8-byte stack slot at `r10 + slot`.
pub fn emit_filter(a: &mut Asm, expr: &SkbFilter, root: Reg, slot: i16, fail: Label) {
    let matched = a.label();
    emit_branch(a, expr, root, slot, matched, fail, fail);
    bpf!(into a; (matched):);
}

fn emit_branch(
    a: &mut Asm,
    e: &SkbFilter,
    root: Reg,
    slot: i16,
    yes: Label,
    no: Label,
    null: Label,
) {
    match e {
        SkbExpr::Or(l, r) => {
            let next = a.label();
            emit_branch(a, l, root, slot, yes, next, null);
            bpf!(into a; (next):);
            emit_branch(a, r, root, slot, yes, no, null);
        }
        SkbExpr::And(l, r) => {
            let next = a.label();
            emit_branch(a, l, root, slot, next, no, null);
            bpf!(into a; (next):);
            emit_branch(a, r, root, slot, yes, no, null);
        }
        SkbExpr::Not(inner) => emit_branch(a, inner, root, slot, no, yes, null),
        SkbExpr::Cmp {
            field,
            mask,
            op,
            value,
        } => {
            emit_load(a, field, root, slot, null);
            if let Some(m) = *mask {
                match fits_imm(m) {
                    Some(imm) => bpf!(into a; r1 &= imm;),
                    None => bpf!(into a;
                        r2 = m ll;
                        r1 &= r2;
                    ),
                }
            }
            let signed = field.kind == ScalarKind::Signed;
            let cond = match (op, signed) {
                (CmpOp::Eq, _) => Cond::Eq,
                (CmpOp::Ne, _) => Cond::Ne,
                (CmpOp::Lt, false) => Cond::Lt,
                (CmpOp::Le, false) => Cond::Le,
                (CmpOp::Gt, false) => Cond::Gt,
                (CmpOp::Ge, false) => Cond::Ge,
                (CmpOp::Lt, true) => Cond::Slt,
                (CmpOp::Le, true) => Cond::Sle,
                (CmpOp::Gt, true) => Cond::Sgt,
                (CmpOp::Ge, true) => Cond::Sge,
            };
            let value = *value;
            match fits_imm(value) {
                Some(imm) => bpf!(into a; if r1 (cond) imm goto (yes);),
                None => bpf!(into a;
                    r2 = value ll;
                    if r1 (cond) r2 goto (yes);
                ),
            }
            bpf!(into a; goto (no););
        }
    }
}

/// `v` as a jump/ALU immediate: only 0..=i32::MAX, the values every reading of the
/// 32-bit immediate agrees on (the kernel sign-extends it; rbpf zero-extends some).
/// Anything else goes through a register loaded with `ld_imm64`.
fn fits_imm(v: u64) -> Option<i32> {
    i32::try_from(v).ok().filter(|i| *i >= 0)
}

/// Emits code storing each metadata field as a u64 at `r8 + event_off + 8 * i`
/// (left zero when a pointer on its path is NULL). Clobbers r0-r5 and the slot.
pub fn emit_metadata(a: &mut Asm, fields: &[FieldPath], root: Reg, slot: i16, event_off: usize) {
    for (i, path) in fields.iter().take(MAX_METADATA).enumerate() {
        let skip = a.label();
        emit_load(a, path, root, slot, skip);
        let at = event_off + 8 * i;
        bpf!(into a;
            *(u64 *)(r8 + at) = r1;
          (skip):
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(field: &str, mask: Option<u64>, op: CmpOp, value: u64) -> SkbExpr<String> {
        SkbExpr::Cmp {
            field: field.to_string(),
            mask,
            op,
            value,
        }
    }

    #[test]
    fn parses_the_grammar() {
        use CmpOp::*;
        let b = Box::new;
        let table: Vec<(&str, SkbExpr<String>)> = vec![
            (
                "skb->dev->ifindex == 9",
                cmp("skb->dev->ifindex", None, Eq, 9),
            ),
            ("skb->len>0", cmp("skb->len", None, Gt, 0)),
            (
                "  skb->mark & 0xff00 != 0x0a00 ",
                cmp("skb->mark", Some(0xff00), Ne, 0xa00),
            ),
            ("skb->len <= 100", cmp("skb->len", None, Le, 100)),
            ("skb->len >= 100", cmp("skb->len", None, Ge, 100)),
            ("skb->len < 100", cmp("skb->len", None, Lt, 100)),
            ("skb->hash", cmp("skb->hash", None, Ne, 0)),
            ("skb->a.b->c == -1", cmp("skb->a.b->c", None, Eq, u64::MAX)),
            (
                "skb->x == 0xFFFFFFFFFFFFFFFF",
                cmp("skb->x", None, Eq, u64::MAX),
            ),
            ("!skb->mark", SkbExpr::Not(b(cmp("skb->mark", None, Ne, 0)))),
            (
                "skb->len > 1 && skb->mark == 2 || skb->hash",
                SkbExpr::Or(
                    b(SkbExpr::And(
                        b(cmp("skb->len", None, Gt, 1)),
                        b(cmp("skb->mark", None, Eq, 2)),
                    )),
                    b(cmp("skb->hash", None, Ne, 0)),
                ),
            ),
            (
                "skb->len > 1 && !(skb->mark == 2 || skb->hash)",
                SkbExpr::And(
                    b(cmp("skb->len", None, Gt, 1)),
                    b(SkbExpr::Not(b(SkbExpr::Or(
                        b(cmp("skb->mark", None, Eq, 2)),
                        b(cmp("skb->hash", None, Ne, 0)),
                    )))),
                ),
            ),
            (
                "skb->mark&1&&skb->len",
                SkbExpr::And(
                    b(cmp("skb->mark", Some(1), Ne, 0)),
                    b(cmp("skb->len", None, Ne, 0)),
                ),
            ),
        ];
        for (text, want) in table {
            assert_eq!(parse(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn rejects_bad_syntax() {
        for text in [
            "",
            "skb->",
            "skb->len ==",
            "skb->len == 0x",
            "skb->len = 3",
            "skb->len == 99999999999999999999",
            "(skb->len == 1",
            "skb->len == 1 &&",
            "skb->len == 1 garbage",
            "skb->1x == 1",
            "skb..len",
            "skb->len == --1",
        ] {
            let err = parse(text).unwrap_err();
            assert!(matches!(err, SkbExprError::Syntax { .. }), "{text}: {err}");
        }
    }

    #[test]
    fn immediates_avoid_sign_extension() {
        assert_eq!(fits_imm(5), Some(5));
        assert_eq!(fits_imm(0x7fff_ffff), Some(i32::MAX));
        assert_eq!(fits_imm(0xffff_ffff), None);
        assert_eq!(fits_imm(u64::MAX), None);
        assert_eq!(fits_imm(1 << 40), None);
    }

    fn system_btf() -> Option<KernelBtf> {
        if !std::path::Path::new(crate::btf::SYS_VMLINUX_BTF).exists() {
            eprintln!("skipped: no /sys/kernel/btf/vmlinux");
            return None;
        }
        Some(KernelBtf::open_system(&crate::btf::Kmods::None).expect("system BTF opens"))
    }

    #[test]
    fn resolves_paths_through_the_running_kernels_btf() {
        let Some(btf) = system_btf() else { return };
        let len = btf.member("sk_buff", "len").unwrap();
        let p = resolve_field(&btf, SKB, "skb->len").unwrap();
        assert_eq!(
            (p.derefs.clone(), p.field, p.kind),
            (vec![], len, ScalarKind::Unsigned)
        );

        let dev = btf.member("sk_buff", "dev").unwrap();
        let ifindex = btf.member("net_device", "ifindex").unwrap();
        let p = resolve_field(&btf, SKB, "skb->dev->ifindex").unwrap();
        assert_eq!(p.derefs, vec![dev.offset_bytes()]);
        assert_eq!(p.field, ifindex);
        assert_eq!(p.kind, ScalarKind::Signed, "ifindex is an int");

        // Anonymous unions and a bitfield.
        let p = resolve_field(&btf, SKB, "skb->pkt_type").unwrap();
        assert!(p.field.bitfield.is_some());
        assert_eq!(p.field, btf.member("sk_buff", "pkt_type").unwrap());

        // `.` into an embedded struct, then `->` through a pointer.
        let p = resolve_field(&btf, SKB, "skb->sk->__sk_common.skc_family").unwrap();
        assert_eq!(
            p.derefs,
            vec![btf.member("sk_buff", "sk").unwrap().offset_bytes()]
        );
        assert_eq!(p.field.size_bytes, 2);

        let p = resolve_field(&btf, SKB, "skb->dev").unwrap();
        assert_eq!((p.kind, p.field.size_bytes), (ScalarKind::Pointer, 8));
    }

    #[test]
    fn path_errors_name_the_problem() {
        let Some(btf) = system_btf() else { return };
        let table = [
            ("skb->nope", "has no field `nope`"),
            ("skb->len->x", "`skb->len` is not a pointer"),
            ("skb->dev.ifindex", "`skb->dev` is not a struct"),
            ("skb->cb", "is not an integer"),
            ("skb->dev->name", "is not an integer"),
            ("sk->len", "start at `skb`"),
            ("skb->", "malformed field path"),
        ];
        for (text, want) in table {
            let err = resolve_field(&btf, SKB, text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let too_many: Vec<String> = (0..5).map(|_| "skb->len".to_string()).collect();
        let err = compile_metadata(&btf, SKB, &too_many)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at most 4 --output-skb-metadata fields"),
            "{err}"
        );
        let blank = vec![String::new(), "skb->mark".to_string(), " ".to_string()];
        assert_eq!(compile_metadata(&btf, SKB, &blank).unwrap().len(), 1);
        assert!(compile_filter(&btf, SKB, "skb->dev->ifindex == 1 && skb->len > 0").is_ok());
    }

    #[test]
    fn xdp_paths_start_at_xdp_and_resolve_in_xdp_buff() {
        let Some(btf) = system_btf() else { return };
        let rxq = btf.member("xdp_buff", "rxq").unwrap();
        let dev = btf.member("xdp_rxq_info", "dev").unwrap();
        let p = resolve_field(&btf, XDP, "xdp->rxq->dev->ifindex").unwrap();
        assert_eq!(p.derefs, vec![rxq.offset_bytes(), dev.offset_bytes()]);
        assert_eq!(p.field, btf.member("net_device", "ifindex").unwrap());
        let p = resolve_field(&btf, XDP, "xdp->rxq->queue_index").unwrap();
        assert_eq!(p.field, btf.member("xdp_rxq_info", "queue_index").unwrap());
        let err = resolve_field(&btf, XDP, "skb->len")
            .unwrap_err()
            .to_string();
        assert!(err.contains("start at `xdp`"), "{err}");
        let too_many: Vec<String> = (0..5).map(|_| "xdp->frame_sz".to_string()).collect();
        let err = compile_metadata(&btf, XDP, &too_many)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--output-xdp-metadata"), "{err}");
        assert!(compile_filter(&btf, XDP, "xdp->rxq->dev->ifindex == 9").is_ok());
    }

    mod interpreted {
        //! The generated code run in rbpf over a fake `sk_buff` with hand-made paths.
        use super::super::*;
        use crate::asm::Helper;
        use crate::asm::Reg::*;
        use crate::btf::{Bitfield, Field};
        use std::cell::Cell;

        thread_local! {
            static READABLE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
        }

        /// `bpf_probe_read_kernel` over the fake memory only; anything else faults.
        fn fake_probe_read(dst: u64, size: u64, src: u64, _: u64, _: u64) -> u64 {
            let (lo, hi) = READABLE.with(|r| r.get());
            let ok = src >= lo && src.checked_add(size).is_some_and(|e| e <= hi);
            // SAFETY: rbpf passes `dst` inside its stack (the program reads at most 8
            // bytes into an 8-byte slot); `src..src+size` lies in the registered blob.
            unsafe {
                if ok {
                    std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, size as usize);
                    0
                } else {
                    std::ptr::write_bytes(dst as *mut u8, 0, size as usize);
                    (-14i64) as u64
                }
            }
        }

        fn plain(offset: u32, size: u32) -> Field {
            Field {
                offset_bits: offset * 8,
                size_bytes: size,
                bitfield: None,
            }
        }

        /// Field paths of the fake layout, by name.
        fn path(name: &str) -> FieldPath {
            let (derefs, field, kind) = match name {
                "skb->len" => (vec![], plain(0x10, 4), ScalarKind::Unsigned),
                "skb->mark" => (vec![], plain(0x14, 4), ScalarKind::Unsigned),
                "skb->s32" => (vec![], plain(0x18, 4), ScalarKind::Signed),
                "skb->s8" => (vec![], plain(0x1d, 1), ScalarKind::Signed),
                "skb->bits" => (
                    vec![],
                    Field {
                        offset_bits: 0x1c * 8,
                        size_bytes: 1,
                        bitfield: Some(Bitfield {
                            bit_offset: 1,
                            bit_size: 3,
                        }),
                    },
                    ScalarKind::Unsigned,
                ),
                "skb->sbits" => (
                    vec![],
                    Field {
                        offset_bits: 0x1c * 8,
                        size_bytes: 1,
                        bitfield: Some(Bitfield {
                            bit_offset: 4,
                            bit_size: 4,
                        }),
                    },
                    ScalarKind::Signed,
                ),
                "skb->u64" => (vec![], plain(0x20, 8), ScalarKind::Unsigned),
                "skb->dev->ifindex" => (vec![0x28], plain(8, 4), ScalarKind::Signed),
                "skb->null->ifindex" => (vec![0x30], plain(8, 4), ScalarKind::Signed),
                "skb->wild->ifindex" => (vec![0x38], plain(8, 4), ScalarKind::Signed),
                "skb->dev->next->ifindex" => (vec![0x28, 0x10], plain(8, 4), ScalarKind::Signed),
                other => panic!("no fake field {other}"),
            };
            FieldPath {
                text: name.to_string(),
                derefs,
                field,
                kind,
            }
        }

        fn resolve_fake(e: &SkbExpr<String>) -> SkbFilter {
            match e {
                SkbExpr::Or(l, r) => {
                    SkbExpr::Or(Box::new(resolve_fake(l)), Box::new(resolve_fake(r)))
                }
                SkbExpr::And(l, r) => {
                    SkbExpr::And(Box::new(resolve_fake(l)), Box::new(resolve_fake(r)))
                }
                SkbExpr::Not(x) => SkbExpr::Not(Box::new(resolve_fake(x))),
                SkbExpr::Cmp {
                    field,
                    mask,
                    op,
                    value,
                } => SkbExpr::Cmp {
                    field: path(field),
                    mask: *mask,
                    op: *op,
                    value: *value,
                },
            }
        }

        fn run(text: &str, mem: &mut [u8]) -> bool {
            let expr = resolve_fake(&parse(text).unwrap());
            let mut a = Asm::new();
            let fail = a.label();
            a.mov64(R7, R1);
            emit_filter(&mut a, &expr, R7, -8, fail);
            a.mov64(R0, 1).exit();
            a.bind(fail);
            a.mov64(R0, 0).exit();
            let code = a.finish().unwrap().bytecode();
            let mut vm = rbpf::EbpfVmRaw::new(Some(&code)).unwrap();
            vm.register_helper(Helper::PROBE_READ_KERNEL.id() as u32, fake_probe_read)
                .unwrap();
            let start = mem.as_ptr() as u64;
            READABLE.with(|r| r.set((start, start + mem.len() as u64)));
            let res = vm.execute_program(mem).unwrap();
            READABLE.with(|r| r.set((0, 0)));
            res == 1
        }

        #[test]
        fn metadata_is_stored_as_u64s_and_zero_past_a_null() {
            let mut mem = vec![0u8; 256];
            let base = mem.as_ptr() as u64;
            mem[0x10..0x14].copy_from_slice(&1500u32.to_le_bytes());
            mem[0x18..0x1c].copy_from_slice(&(-5i32).to_le_bytes());
            mem[0x28..0x30].copy_from_slice(&(base + 0x80).to_le_bytes());
            mem[0x88..0x8c].copy_from_slice(&9i32.to_le_bytes());
            // Stale bytes where the record goes: the record is zeroed before this code runs.
            mem[0xe0..0x100].fill(0);
            let fields: Vec<FieldPath> = [
                "skb->len",
                "skb->s32",
                "skb->null->ifindex",
                "skb->dev->ifindex",
            ]
            .iter()
            .map(|n| path(n))
            .collect();
            let mut a = Asm::new();
            a.mov64(R7, R1).mov64(R8, R1).add64(R8, 0xe0);
            emit_metadata(&mut a, &fields, R7, -8, 0);
            a.mov64(R0, 0).exit();
            let code = a.finish().unwrap().bytecode();
            let mut vm = rbpf::EbpfVmRaw::new(Some(&code)).unwrap();
            vm.register_helper(Helper::PROBE_READ_KERNEL.id() as u32, fake_probe_read)
                .unwrap();
            READABLE.with(|r| r.set((base, base + 256)));
            vm.execute_program(&mut mem).unwrap();
            READABLE.with(|r| r.set((0, 0)));
            let got: Vec<u64> = (0..4)
                .map(|i| u64::from_le_bytes(mem[0xe0 + 8 * i..0xe8 + 8 * i].try_into().unwrap()))
                .collect();
            assert_eq!(got, [1500, -5i64 as u64, 0, 9]);
        }

        #[test]
        fn expressions_evaluate_like_c() {
            let mut mem = vec![0u8; 256];
            let base = mem.as_ptr() as u64;
            let put =
                |m: &mut Vec<u8>, off: usize, v: &[u8]| m[off..off + v.len()].copy_from_slice(v);
            put(&mut mem, 0x10, &1500u32.to_le_bytes());
            put(&mut mem, 0x14, &0xa0bu32.to_le_bytes());
            put(&mut mem, 0x18, &(-5i32).to_le_bytes());
            put(&mut mem, 0x1c, &[0b1010_0110]); // bits(1..4) = 3, sbits(4..8) = -6
            put(&mut mem, 0x1d, &[0xfe]); // s8 = -2
            put(&mut mem, 0x20, &0x1_0000_0005u64.to_le_bytes());
            put(&mut mem, 0x28, &(base + 0x80).to_le_bytes()); // dev
            put(&mut mem, 0x38, &0xdead_0000u64.to_le_bytes()); // a pointer we cannot read
            put(&mut mem, 0x88, &9i32.to_le_bytes()); // dev->ifindex
            put(&mut mem, 0x90, &(base + 0xc0).to_le_bytes()); // dev->next
            put(&mut mem, 0xc8, &(-1i32).to_le_bytes()); // dev->next->ifindex
            let table: &[(&str, bool)] = &[
                ("skb->len == 1500", true),
                ("skb->len != 1500", false),
                ("skb->len > 1499 && skb->len < 1501", true),
                ("skb->len >= 1501 || skb->len <= 1499", false),
                ("skb->len", true),
                ("!skb->len", false),
                ("skb->mark & 0xff == 0x0b", true),
                ("skb->mark & 0xf00 == 0xa00", true),
                ("skb->mark & 0xf00", true),
                ("!(skb->mark & 0xf000)", true),
                ("skb->s32 == -5", true),
                ("skb->s32 < 0", true),
                ("skb->s32 > -6 && skb->s32 < -4", true),
                ("skb->s32 > 0", false),
                ("skb->s8 == -2", true),
                ("skb->s8 < -1", true),
                ("skb->bits == 3", true),
                ("skb->bits > 3", false),
                ("skb->sbits == -6", true),
                ("skb->sbits < 0", true),
                ("skb->u64 == 0x100000005", true),
                ("skb->u64 > 0xffffffff", true),
                ("skb->u64 & 0xffffffff == 5", true),
                ("skb->u64 & 0xff00000000 == 0x100000000", true),
                ("skb->dev->ifindex == 9", true),
                ("skb->dev->ifindex == 10", false),
                ("skb->dev->next->ifindex == -1", true),
                ("skb->dev->next->ifindex < 0", true),
                // A NULL or unreadable pointer makes the whole expression false.
                ("skb->null->ifindex == 0", false),
                ("!(skb->null->ifindex == 1)", false),
                ("skb->null->ifindex == 0 || skb->len == 1500", false),
                ("skb->wild->ifindex != 7", false),
                (
                    "skb->len == 1 || (skb->mark == 0xa0b && skb->dev->ifindex == 9)",
                    true,
                ),
                (
                    "skb->len == 1500 && !(skb->mark == 0xa0b || skb->dev->ifindex == 9)",
                    false,
                ),
            ];
            for (text, want) in table {
                assert_eq!(run(text, &mut mem), *want, "{text}");
            }
        }
    }
}
