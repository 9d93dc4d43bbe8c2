//! C-like access paths through kernel structs (`skb->dev->ifindex`, `skb->hash`):
//! resolved through BTF into the pointer reads and the final integer load a probe emits.

use btf_rs::{BtfType, Struct, Type};

use super::error::BtfError;
use super::kernel::{strip_modifiers, KernelBtf, MAX_CHAIN, POINTER_SIZE};
use super::layout::{bitfield_field, Field};

/// How one path segment is reached from the value before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `->name`: the value before is a pointer to a struct or union.
    Arrow,
    /// `.name`: the value before is a struct or union.
    Dot,
}

/// One `->name` or `.name` segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub access: Access,
    pub name: String,
}

/// What the final member of a path is, as far as reading and printing it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    Unsigned,
    Signed,
    /// A pointer (printed in hex).
    Pointer,
}

/// A resolved path: start from the root pointer, for each `derefs` offset read the
/// pointer stored there (stop when NULL), then load `field` relative to the last pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    /// The path as written, e.g. `skb->dev->ifindex`.
    pub text: String,
    /// Byte offsets of the pointers to follow, each relative to the previous pointer.
    pub derefs: Vec<u32>,
    /// The final scalar, relative to the last pointer (1, 2, 4 or 8 bytes, or a bitfield).
    pub field: Field,
    pub kind: ScalarKind,
}

/// Errors resolving a path.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error("`{path}`: `{type_name}` has no field `{field}`")]
    NoSuchField {
        path: String,
        type_name: String,
        field: String,
    },
    #[error(
        "`{path}`: `{prefix}` is not a pointer to a struct or union, so `->{field}` does not apply"
    )]
    NotPointer {
        path: String,
        prefix: String,
        field: String,
    },
    #[error("`{path}`: `{prefix}` is not a struct or union, so `.{field}` does not apply (use `->` for pointers)")]
    NotStruct {
        path: String,
        prefix: String,
        field: String,
    },
    #[error("`{path}` is not an integer, enum or pointer (a struct, union, array or function can not be compared or printed)")]
    NotScalar { path: String },
    #[error("`{path}` is {size} bytes; at most 8 bytes are supported")]
    TooBig { path: String, size: u32 },
    #[error("`{path}`: empty path")]
    Empty { path: String },
}

/// The type of the value reached so far (after typedefs and modifiers).
struct Current {
    ty: Type,
}

impl KernelBtf {
    /// Resolves `segments` starting from a pointer to the struct `root` (e.g. `sk_buff`).
    /// `text` is the path as written, for messages.
    pub fn resolve_path(
        &self,
        root: &str,
        segments: &[Segment],
        text: &str,
    ) -> Result<FieldPath, PathError> {
        let origin = self.origin().to_string();
        let btf = self
            .sources()
            .next()
            .map(|s| s.btf)
            .ok_or_else(|| BtfError::NoSuchStruct {
                origin: origin.clone(),
                name: root.to_string(),
            })?;
        let root_ty = self
            .ids_by_name(btf, root)?
            .into_iter()
            .find_map(|id| match strip_modifiers(btf, &origin, id) {
                Ok((_, Type::Struct(s) | Type::Union(s))) => Some(s),
                _ => None,
            })
            .ok_or_else(|| BtfError::NoSuchStruct {
                origin: origin.clone(),
                name: root.to_string(),
            })?;
        if segments.is_empty() {
            return Err(PathError::Empty {
                path: text.to_string(),
            });
        }
        let path = text.to_string();
        let mut derefs: Vec<u32> = Vec::new();
        // The value before the next segment: `pointer` when the root pointer itself.
        let mut cur: Option<Current> = None;
        let mut offset_bits: u32 = 0;
        let mut bitfield_size: Option<u32> = None;
        // Messages name prefixes as written (`skb->dev`), starting with the root's name.
        let mut prefix: String = text
            .trim()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        for seg in segments {
            let composite: Struct = match (seg.access, cur.take()) {
                (Access::Arrow, None) => root_ty.clone(),
                (Access::Arrow, Some(c)) => {
                    let pointee = match (&c.ty, bitfield_size) {
                        (Type::Ptr(p), None) => p.get_type_id(),
                        _ => None,
                    };
                    let target = match pointee {
                        Some(id) => Some(strip_modifiers(btf, &origin, id)?.1),
                        None => None,
                    };
                    match target {
                        Some(Type::Struct(s) | Type::Union(s)) => {
                            derefs.push(offset_bits / 8);
                            offset_bits = 0;
                            s
                        }
                        _ => {
                            return Err(PathError::NotPointer {
                                path,
                                prefix,
                                field: seg.name.clone(),
                            })
                        }
                    }
                }
                (Access::Dot, None) => {
                    return Err(PathError::NotStruct {
                        path,
                        prefix,
                        field: seg.name.clone(),
                    })
                }
                (Access::Dot, Some(c)) => match c.ty {
                    Type::Struct(s) | Type::Union(s) if bitfield_size.is_none() => s,
                    _ => {
                        return Err(PathError::NotStruct {
                            path,
                            prefix,
                            field: seg.name.clone(),
                        })
                    }
                },
            };
            let found = self
                .find_path_member(btf, &composite, &seg.name, 0)?
                .ok_or_else(|| PathError::NoSuchField {
                    path: path.clone(),
                    type_name: prefix.clone(),
                    field: seg.name.clone(),
                })?;
            offset_bits = offset_bits.saturating_add(found.0);
            bitfield_size = found.2.filter(|&b| b > 0);
            cur = Some(Current {
                ty: strip_modifiers(btf, &origin, found.1)?.1,
            });
            prefix.push_str(match seg.access {
                Access::Arrow => "->",
                Access::Dot => ".",
            });
            prefix.push_str(&seg.name);
        }
        let ty = cur
            .map(|c| c.ty)
            .ok_or_else(|| PathError::Empty { path: path.clone() })?;
        let (size, kind) = match &ty {
            Type::Int(i) => (
                i.size() as u32,
                if i.is_signed() {
                    ScalarKind::Signed
                } else {
                    ScalarKind::Unsigned
                },
            ),
            Type::Enum(e) => (
                e.size() as u32,
                if e.is_signed() {
                    ScalarKind::Signed
                } else {
                    ScalarKind::Unsigned
                },
            ),
            Type::Enum64(e) => (
                e.size() as u32,
                if e.is_signed() {
                    ScalarKind::Signed
                } else {
                    ScalarKind::Unsigned
                },
            ),
            Type::Ptr(_) => (POINTER_SIZE, ScalarKind::Pointer),
            _ => return Err(PathError::NotScalar { path }),
        };
        if size > 8 || size == 0 {
            return Err(PathError::TooBig { path, size });
        }
        let field = match bitfield_size {
            None => Field {
                offset_bits,
                size_bytes: size,
                bitfield: None,
            },
            Some(bits) => bitfield_field(offset_bits, bits, size).ok_or(PathError::TooBig {
                path: path.clone(),
                size,
            })?,
        };
        if field.bitfield.is_none() && !matches!(field.size_bytes, 1 | 2 | 4 | 8) {
            return Err(PathError::TooBig { path, size });
        }
        Ok(FieldPath {
            text: path,
            derefs,
            field,
            kind,
        })
    }

    /// The vmlinux BTF id of the struct or union `name` (what `bpf_snprintf_btf` expects).
    pub fn vmlinux_struct_id(&self, name: &str) -> Result<u32, BtfError> {
        let origin = self.origin().to_string();
        if let Some(src) = self.sources().find(|s| s.module.is_none()) {
            for id in self.ids_by_name(src.btf, name)? {
                if let (id, Type::Struct(_) | Type::Union(_)) =
                    strip_modifiers(src.btf, &origin, id)?
                {
                    return Ok(id);
                }
            }
        }
        Err(BtfError::NoSuchStruct {
            origin,
            name: name.to_string(),
        })
    }

    /// `(bit offset, type id, bitfield size)` of `name` in `composite`, through anonymous members.
    fn find_path_member(
        &self,
        btf: &btf_rs::Btf,
        composite: &Struct,
        name: &str,
        depth: usize,
    ) -> Result<Option<(u32, u32, Option<u32>)>, BtfError> {
        if depth > MAX_CHAIN {
            return Err(BtfError::TypeChain {
                origin: self.origin().to_string(),
                id: 0,
                limit: MAX_CHAIN,
            });
        }
        for m in &composite.members {
            let type_id = m.get_type_id().unwrap_or(0);
            let member_name = self.name_of(btf, m)?;
            if member_name == name {
                return Ok(Some((m.bit_offset(), type_id, m.bitfield_size())));
            }
            if !member_name.is_empty() {
                continue;
            }
            if let Type::Struct(inner) | Type::Union(inner) =
                strip_modifiers(btf, self.origin(), type_id)?.1
            {
                if let Some((off, id, bits)) =
                    self.find_path_member(btf, &inner, name, depth + 1)?
                {
                    return Ok(Some((m.bit_offset().saturating_add(off), id, bits)));
                }
            }
        }
        Ok(None)
    }
}

/// Splits `skb->a.b->c` after the root name into segments; `None` when malformed.
/// Returns the root name and the segments.
pub fn split_path(text: &str) -> Option<(&str, Vec<Segment>)> {
    let ident_end = |s: &str| {
        s.char_indices()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(s.len(), |(i, _)| i)
    };
    let s = text.trim();
    let n = ident_end(s);
    if n == 0 || s.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    let (root, mut rest) = s.split_at(n);
    let mut segments = Vec::new();
    while !rest.is_empty() {
        let (access, after) = if let Some(r) = rest.strip_prefix("->") {
            (Access::Arrow, r)
        } else if let Some(r) = rest.strip_prefix('.') {
            (Access::Dot, r)
        } else {
            return None;
        };
        let n = ident_end(after);
        if n == 0 || after.as_bytes()[0].is_ascii_digit() {
            return None;
        }
        segments.push(Segment {
            access,
            name: after[..n].to_string(),
        });
        rest = &after[n..];
    }
    Some((root, segments))
}
