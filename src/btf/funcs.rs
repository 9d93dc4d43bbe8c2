//! Which kernel functions and tracepoints take a `struct sk_buff *`, found by
//! walking every BTF FUNC prototype and every `btf_trace_<name>` typedef.

use btf_rs::{Btf, BtfType, Type};

use super::error::BtfError;
use super::index::{
    TypeIndex, KIND_CONST, KIND_PTR, KIND_RESTRICT, KIND_STRUCT, KIND_TYPEDEF, KIND_TYPE_TAG,
    KIND_UNION, KIND_VOLATILE,
};
use super::kernel::{resolve, strip_modifiers, BtfSource, KernelBtf, MAX_CHAIN};
use crate::fasthash::FastMap;

/// Highest 1-based argument position a kprobe program reads (PT_REGS_PARM1..5).
pub const MAX_PROBE_ARG: u16 = 5;

const TRACEPOINT_PREFIX: &str = "btf_trace_";
const SKB_STRUCT: &str = "sk_buff";
const DROP_REASON_ENUM: &str = "skb_drop_reason";

/// A kernel function taking a `struct sk_buff *`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkbFunc {
    pub name: String,
    /// 1-based position of the FIRST `struct sk_buff *` parameter.
    pub skb_arg: u16,
    /// 1-based position of an `enum skb_drop_reason` parameter, if any.
    pub drop_reason_arg: Option<u16>,
    /// Defining module; `None` for vmlinux.
    pub module: Option<String>,
    /// BTF id of the FUNC (in its module's split BTF for modules).
    pub btf_id: u32,
    /// Number of parameters.
    pub nargs: u16,
    /// A parameter or the return value is a struct or union passed by value: it takes
    /// more than one u64 slot (or none) in a tracing program's argument array.
    pub by_value: bool,
}

/// Result of scanning for skb functions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkbFuncScan {
    /// Functions whose first skb parameter is at position 1..=[`MAX_PROBE_ARG`].
    pub probeable: Vec<SkbFunc>,
    /// Functions whose first skb parameter is further: a kprobe cannot read it.
    pub beyond_max_arg: Vec<SkbFunc>,
}

/// A tracepoint with a `struct sk_buff *` argument (from `btf_trace_<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkbTracepoint {
    /// Tracepoint name without the `btf_trace_` prefix, e.g. `kfree_skb`.
    pub name: String,
    /// Number of tracepoint arguments (the leading `void *` excluded).
    pub nargs: u16,
    /// 0-based index of the first skb argument among the tracepoint arguments.
    pub skb_arg: u16,
    /// 0-based index of an `enum skb_drop_reason` argument, if any.
    pub drop_reason_arg: Option<u16>,
    /// Defining module; `None` for vmlinux.
    pub module: Option<String>,
    /// BTF id of the `btf_trace_<name>` typedef (needed to load tp_btf programs).
    pub btf_id: u32,
}

/// What a parameter type is, as far as we care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParamKind {
    Skb,
    DropReason,
    /// A struct or union passed by value.
    ByValue,
    Other,
}

/// Positions found in one prototype (0-based indexes into its parameters).
#[derive(Debug, Clone, Copy)]
struct ProtoFacts {
    skb: Option<usize>,
    drop_reason: Option<usize>,
    /// Parameters after the skipped ones.
    nargs: usize,
    by_value: bool,
}

/// Classifies parameter types of one BTF object, memoizing per type id
/// (thousands of FUNCs share a few prototypes and parameter types). With the object's
/// type index, prototypes and type chains are read from it; btf-rs parses only what the
/// index does not hold (a module's types from its base).
struct Classifier<'a> {
    btf: &'a Btf,
    index: Option<&'a TypeIndex>,
    origin: &'a str,
    skb_ids: Vec<u32>,
    drop_reason_ids: Vec<u32>,
    params: FastMap<u32, ParamKind>,
    protos: FastMap<(u32, usize), Option<ProtoFacts>>,
}

impl<'a> Classifier<'a> {
    fn new(kernel: &'a KernelBtf, src: &BtfSource<'a>) -> Result<Self, BtfError> {
        let btf = src.btf;
        let ids_of = |name: &str| -> Result<Vec<u32>, BtfError> {
            Ok(kernel
                .ids_by_name(btf, name)?
                .into_iter()
                .filter(|&id| {
                    matches!(
                        btf.resolve_type_by_id(id),
                        Ok(Type::Struct(_) | Type::Fwd(_) | Type::Enum(_) | Type::Enum64(_))
                    )
                })
                .collect())
        };
        Ok(Classifier {
            btf,
            index: src.index,
            origin: kernel.origin(),
            skb_ids: ids_of(SKB_STRUCT)?,
            drop_reason_ids: ids_of(DROP_REASON_ENUM)?,
            params: FastMap::default(),
            protos: FastMap::default(),
        })
    }

    /// `id` through typedefs and qualifiers, read from the index: the id it ends at, its
    /// kind and third header word; `None` when the chain leaves the index (a module's
    /// type from its base) or is too long (btf-rs then answers, or names the error).
    fn strip_indexed(&self, mut id: u32) -> Option<(u32, u8, u32)> {
        let index = self.index?;
        for _ in 0..MAX_CHAIN {
            if id == 0 {
                return Some((0, 0, 0));
            }
            match index.entry(id)? {
                (
                    KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG,
                    next,
                ) => id = next,
                (kind, third) => return Some((id, kind, third)),
            }
        }
        None
    }

    /// [`Self::param_kind`] from the index alone, when it holds the whole chain.
    fn param_kind_indexed(&self, type_id: u32) -> Option<ParamKind> {
        let (id, kind, third) = self.strip_indexed(type_id)?;
        Some(match kind {
            KIND_PTR => match self.skb_ids.contains(&self.strip_indexed(third)?.0) {
                true => ParamKind::Skb,
                false => ParamKind::Other,
            },
            _ if self.drop_reason_ids.contains(&id) => ParamKind::DropReason,
            KIND_STRUCT | KIND_UNION => ParamKind::ByValue,
            _ => ParamKind::Other,
        })
    }

    fn param_kind(&mut self, type_id: u32) -> Result<ParamKind, BtfError> {
        if let Some(&kind) = self.params.get(&type_id) {
            return Ok(kind);
        }
        if let Some(kind) = self.param_kind_indexed(type_id) {
            self.params.insert(type_id, kind);
            return Ok(kind);
        }
        let (id, ty) = strip_modifiers(self.btf, self.origin, type_id)?;
        let kind = match ty {
            Type::Ptr(p) => {
                let pointee = p.get_type_id().unwrap_or(0);
                let (target, _) = strip_modifiers(self.btf, self.origin, pointee)?;
                if self.skb_ids.contains(&target) {
                    ParamKind::Skb
                } else {
                    ParamKind::Other
                }
            }
            _ if self.drop_reason_ids.contains(&id) => ParamKind::DropReason,
            Type::Struct(_) | Type::Union(_) => ParamKind::ByValue,
            _ => ParamKind::Other,
        };
        self.params.insert(type_id, kind);
        Ok(kind)
    }

    /// Facts about a prototype returning `ret` with parameters of `types` (`None`: the
    /// variadic end), skipping the first `skip`; `None` when no parameter is an skb.
    fn proto_facts(
        &mut self,
        ret: u32,
        types: impl Iterator<Item = Option<u32>>,
        skip: usize,
    ) -> Result<Option<ProtoFacts>, BtfError> {
        let mut facts = ProtoFacts {
            skb: None,
            drop_reason: None,
            nargs: 0,
            by_value: ret != 0 && self.param_kind(ret)? == ParamKind::ByValue,
        };
        for (i, ty) in types.enumerate().skip(skip) {
            let Some(ty) = ty else { break };
            facts.nargs += 1;
            match self.param_kind(ty)? {
                ParamKind::Skb if facts.skb.is_none() => facts.skb = Some(i - skip),
                ParamKind::DropReason if facts.drop_reason.is_none() => {
                    facts.drop_reason = Some(i - skip)
                }
                ParamKind::ByValue => facts.by_value = true,
                _ => {}
            }
        }
        Ok(facts.skb.map(|_| facts))
    }

    /// Facts about the FUNC_PROTO `proto_id`, skipping its first `skip` params.
    fn proto(&mut self, proto_id: u32, skip: usize) -> Result<Option<ProtoFacts>, BtfError> {
        if let Some(&facts) = self.protos.get(&(proto_id, skip)) {
            return Ok(facts);
        }
        let indexed = self.index.and_then(|index| {
            let params = index.proto_params(proto_id)?;
            Some((params, index.entry(proto_id)?.1))
        });
        let facts = match indexed {
            // A variadic prototype's last parameter has type 0 (and no name).
            Some((params, ret)) => {
                let types = params.iter().map(|&t| (t != 0).then_some(t));
                self.proto_facts(ret, types, skip)?
            }
            None => match resolve(self.btf, self.origin, proto_id)? {
                Type::FuncProto(proto) => {
                    let types = proto
                        .parameters
                        .iter()
                        .map(|p| (!p.is_variadic()).then(|| p.get_type_id().unwrap_or(0)));
                    self.proto_facts(proto.return_type_id(), types, skip)?
                }
                _ => None,
            },
        };
        self.protos.insert((proto_id, skip), facts);
        Ok(facts)
    }
}

fn position(index: usize) -> u16 {
    u16::try_from(index).unwrap_or(u16::MAX)
}

impl KernelBtf {
    /// Functions taking a `struct sk_buff *` with its first such parameter at
    /// position 1..=5, sorted by name, one entry per name (vmlinux wins, then
    /// modules in load order). See [`KernelBtf::scan_skb_functions`].
    pub fn skb_functions(&self) -> Result<Vec<SkbFunc>, BtfError> {
        Ok(self.scan_skb_functions()?.probeable)
    }

    /// All BTF FUNCs whose prototype takes a `struct sk_buff *` (through
    /// typedefs/const/volatile), split by whether a kprobe can read the skb.
    /// With several skb parameters the first one's position is recorded.
    pub fn scan_skb_functions(&self) -> Result<SkbFuncScan, BtfError> {
        let mut all = Vec::new();
        for src in self.sources() {
            self.scan_funcs_in(&src, &mut all)?;
        }
        let all = sorted_unique(all, |f| &f.name);
        let (probeable, beyond_max_arg) = all.into_iter().partition(|f| f.skb_arg <= MAX_PROBE_ARG);
        Ok(SkbFuncScan {
            probeable,
            beyond_max_arg,
        })
    }

    fn scan_funcs_in(&self, src: &BtfSource<'_>, out: &mut Vec<SkbFunc>) -> Result<(), BtfError> {
        let mut classifier = Classifier::new(self, src)?;
        if classifier.skb_ids.is_empty() {
            return Ok(());
        }
        // The index knows each FUNC's prototype: only the few thousand skb ones are parsed.
        let funcs: Box<dyn Iterator<Item = Result<(u32, u32), BtfError>>> = match src.index {
            Some(index) => Box::new(index.funcs().map(Ok)),
            None => Box::new((src.first_id..=src.last_id).filter_map(|id| {
                match resolve(src.btf, self.origin(), id) {
                    Ok(Type::Func(func)) => Some(Ok((id, func.get_type_id().unwrap_or(0)))),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                }
            })),
        };
        for func in funcs {
            let (id, proto) = func?;
            let Some(facts) = classifier.proto(proto, 0)? else {
                continue;
            };
            let Type::Func(func) = resolve(src.btf, self.origin(), id)? else {
                continue;
            };
            let skb = facts.skb.unwrap_or_default();
            out.push(SkbFunc {
                name: self.name_of(src.btf, &func)?,
                skb_arg: position(skb + 1),
                drop_reason_arg: facts.drop_reason.map(|i| position(i + 1)),
                module: src.module.map(str::to_string),
                btf_id: id,
                nargs: position(facts.nargs),
                by_value: facts.by_value,
            });
        }
        Ok(())
    }

    /// Whether function `name` takes a map first, as the map operations do: a
    /// `struct bpf_map *`, or (a helper defined with `BPF_CALL_x`) an integer named
    /// `…map`. `false` when BTF has no such function.
    pub fn takes_bpf_map_first(&self, name: &str) -> Result<bool, BtfError> {
        for src in self.sources() {
            let Ok(ids) = self.ids_by_name(src.btf, name) else {
                continue;
            };
            for id in ids {
                let Type::Func(func) = resolve(src.btf, self.origin(), id)? else {
                    continue;
                };
                let Type::FuncProto(proto) =
                    resolve(src.btf, self.origin(), func.get_type_id().unwrap_or(0))?
                else {
                    continue;
                };
                let Some(first) = proto.parameters.first() else {
                    return Ok(false);
                };
                let (_, ty) =
                    strip_modifiers(src.btf, self.origin(), first.get_type_id().unwrap_or(0))?;
                return Ok(match ty {
                    Type::Ptr(p) => {
                        let (_, target) =
                            strip_modifiers(src.btf, self.origin(), p.get_type_id().unwrap_or(0))?;
                        match target {
                            Type::Struct(st) => self.name_of(src.btf, &st)? == "bpf_map",
                            _ => false,
                        }
                    }
                    Type::Int(_) => self.name_of(src.btf, first)?.ends_with("map"),
                    _ => false,
                });
            }
        }
        Ok(false)
    }

    /// Tracepoints (`btf_trace_<name>` typedefs) with a `struct sk_buff *`
    /// argument, sorted by name, one entry per name.
    pub fn skb_tracepoints(&self) -> Result<Vec<SkbTracepoint>, BtfError> {
        let mut all = Vec::new();
        for src in self.sources() {
            let mut classifier = Classifier::new(self, &src)?;
            if classifier.skb_ids.is_empty() {
                continue;
            }
            for id in self.ids_of_kind(&src, KIND_TYPEDEF) {
                let Type::Typedef(typedef) = resolve(src.btf, self.origin(), id)? else {
                    continue;
                };
                let name = self.name_of(src.btf, &typedef)?;
                let Some(tp_name) = name.strip_prefix(TRACEPOINT_PREFIX) else {
                    continue;
                };
                let Type::Ptr(ptr) =
                    resolve(src.btf, self.origin(), typedef.get_type_id().unwrap_or(0))?
                else {
                    continue;
                };
                let proto_id = ptr.get_type_id().unwrap_or(0);
                let Type::FuncProto(proto) = resolve(src.btf, self.origin(), proto_id)? else {
                    continue;
                };
                if !self.is_void_ptr(src.btf, proto.parameters.first())? {
                    continue;
                }
                let Some(facts) = classifier.proto(proto_id, 1)? else {
                    continue;
                };
                all.push(SkbTracepoint {
                    name: tp_name.to_string(),
                    nargs: position(proto.parameters.len() - 1),
                    skb_arg: position(facts.skb.unwrap_or_default()),
                    drop_reason_arg: facts.drop_reason.map(position),
                    module: src.module.map(str::to_string),
                    btf_id: id,
                });
            }
        }
        Ok(sorted_unique(all, |t| &t.name))
    }

    fn is_void_ptr(&self, btf: &Btf, param: Option<&btf_rs::Parameter>) -> Result<bool, BtfError> {
        let Some(param) = param else {
            return Ok(false);
        };
        let (_, ty) = strip_modifiers(btf, self.origin(), param.get_type_id().unwrap_or(0))?;
        let Type::Ptr(ptr) = ty else {
            return Ok(false);
        };
        let (_, pointee) = strip_modifiers(btf, self.origin(), ptr.get_type_id().unwrap_or(0))?;
        Ok(matches!(pointee, Type::Void))
    }
}

/// Stable sort by name, keeping the first entry of each name.
fn sorted_unique<T>(mut items: Vec<T>, name: impl Fn(&T) -> &String) -> Vec<T> {
    items.sort_by(|a, b| name(a).cmp(name(b)));
    items.dedup_by(|b, a| name(a) == name(b));
    items
}
