//! The emitter: walks a planned decision DAG and writes its tests as eBPF for either
//! packet source (direct packet pointers, or kernel memory through a stack window).
//!
//! Stack layout, downwards from `env.stack_top`: 8 spill slots (64 B), an 8-byte
//! read-on-demand slot, 3 protochain slots (24 B), then (kernel memory only) 8 B pad and
//! the window buffer (moved up by 0-3 bytes into the pad so that the network header is
//! 4-byte aligned). See [`stack_bytes`].

use std::collections::{HashMap, HashSet};

use super::ast::{ArithOp, Expr};
use super::dag::{reachable_order, Dag, Node, NodeId, MATCH, REJECT};
use super::lower::{TestOp, V};
use super::paths::{plan, Plan};
use super::types::{
    stack_bytes, CompileError, FilterEnv, FilterStats, LinkType, MetaSource, PacketSource,
    WireLength, DIRECT_MAX_END, PROTOCHAIN_MAX_HEADERS, PROTOCHAIN_MIN_HEADERS, SPILL_SLOTS,
};
use crate::asm::{Asm, Cond, Helper, Label, Reg, Size};

/// One filter to emit: the expression and its link type, where its packet bytes come
/// from, its stack area, and the labels control leaves through.
pub(super) struct FilterSpec<'e> {
    /// `None`: the empty expression, which matches every packet.
    pub(super) expr: Option<&'e Expr>,
    pub(super) link: LinkType,
    pub(super) src: PacketSource,
    pub(super) env: FilterEnv,
    pub(super) on_match: Label,
    pub(super) on_reject: Label,
    /// The caller binds `on_reject` right after the filter (jumps to it are left out).
    pub(super) reject_follows: bool,
}

/// Jumps reach 32767 instructions forward. A filter longer than this (a dry run
/// says) routes its far jumps through islands of `ja`s placed every
/// [`ISLAND_SPACING`] instructions.
const JUMP_RANGE: usize = i16::MAX as usize;
const ISLAND_SPACING: usize = JUMP_RANGE - 4096;
/// The verifier follows one path at a time and keeps the other side of each branch on
/// a stack of at most 8192 (`BPF_COMPLEXITY_LIMIT_JMP_SEQ`). In a filter longer than
/// this many instructions, a test with an exit on one side jumps to its other side and
/// falls through to a `ja` to the exit, so the verifier finishes the short side first
/// and the stack stays shallow along a long chain of alternatives.
const EXITS_FIRST_FROM: usize = 8192;
/// Dry runs that choose the values to compute once (see [`cache_candidates`]).
const CACHE_ROUNDS: usize = 4;
/// Filters with fewer decision nodes are always short enough not to need islands.
const SHORT_FILTER_NODES: usize = 64;
/// The most instructions the kernel loads in one program (`BPF_COMPLEXITY_LIMIT_INSNS`).
pub(super) const KERNEL_MAX_INSNS: usize = 1_000_000;

fn describe(src: &PacketSource) -> String {
    match src {
        PacketSource::Direct { start, end } => format!("start {start:?}, end {end:?}"),
        PacketSource::KernelMemory { base, len, .. } => format!("base {base:?}, length {len:?}"),
    }
    .to_lowercase()
}

/// Check the register and stack contract, plan the filter, and emit it into `asm`.
pub(super) fn emit(asm: &mut Asm, spec: &FilterSpec) -> Result<FilterStats, CompileError> {
    let (src, env) = (&spec.src, &spec.env);
    let callee_saved = |r: Reg| matches!(r, Reg::R6 | Reg::R7 | Reg::R8 | Reg::R9);
    let (r1, r2) = match *src {
        PacketSource::Direct { start, end } => (start, end),
        PacketSource::KernelMemory { base, len, .. } => (base, len),
    };
    if !callee_saved(r1) || !callee_saved(r2) || r1 == r2 {
        return Err(CompileError::BadRegisters(describe(src)));
    }
    if let WireLength::Reg(w) = env.wire_len {
        if !callee_saved(w) || w == r1 || w == r2 {
            return Err(CompileError::BadRegisters(format!(
                "{}, wire length {}",
                describe(src),
                format!("{w:?}").to_lowercase()
            )));
        }
    }
    if let MetaSource::Reg(p) = env.pkt_type {
        let wire = match env.wire_len {
            WireLength::Reg(w) => Some(w),
            _ => None,
        };
        if !callee_saved(p) || p == r1 || p == r2 || Some(p) == wire {
            return Err(CompileError::BadRegisters(format!(
                "{}, packet type {}",
                describe(src),
                format!("{p:?}").to_lowercase()
            )));
        }
    }
    if env.stack_top > 0 || (env.stack_top as i32 - stack_bytes(src) as i32) < -512 {
        return Err(CompileError::Stack(format!(
            "{} bytes below r10{:+} exceed the 512-byte frame",
            stack_bytes(src),
            env.stack_top
        )));
    }
    let max_end = match src {
        PacketSource::Direct { .. } => DIRECT_MAX_END as u64,
        PacketSource::KernelMemory { .. } => 0x7fff_ffff,
    };
    let mut p = plan(spec.expr, spec.link, env, max_end)?;
    p.root = p.dag.prune_dead(p.root);
    let order = reachable_order(&p.dag, p.root);
    // Values worth computing once: a dry run keeps those that some path reuses.
    // (a value no path reuses is dropped, and the choice made again without it: the
    // values inside it may be reused)
    let mut banned = HashSet::new();
    let mut cache = vec![];
    for _ in 0..CACHE_ROUNDS {
        cache = cache_candidates(&p.dag, &order, &banned);
        if cache.is_empty() {
            break;
        }
        let (_, hit) = dry_run(&p, &order, spec, &cache)?;
        let unused: Vec<V> = cache
            .iter()
            .filter(|v| !hit.contains(*v))
            .cloned()
            .collect();
        if unused.is_empty() {
            break;
        }
        banned.extend(unused);
        cache.retain(|v| hit.contains(v));
    }
    let layout = if order.len() < SHORT_FILTER_NODES {
        Layout::default()
    } else {
        let (st, _) = dry_run(&p, &order, spec, &cache)?;
        // laying exits out first adds at most a `ja` per node
        Layout {
            islands: st.insns + order.len() > ISLAND_SPACING,
            exits_first: st.insns > EXITS_FIRST_FROM,
        }
    };
    let (st, _) = emit_plan(
        asm,
        &p,
        &order,
        spec,
        (spec.on_match, spec.on_reject),
        layout,
        &cache,
    )?;
    if st.insns > KERNEL_MAX_INSNS {
        return Err(CompileError::TooLarge {
            insns: st.insns,
            limit: KERNEL_MAX_INSNS,
        });
    }
    Ok(st)
}

/// How long filters are laid out (short ones: neither).
#[derive(Clone, Copy, Debug, Default)]
struct Layout {
    /// Far jumps go through islands (see [`ISLAND_SPACING`]).
    islands: bool,
    /// Exits are reached by falling through (see [`EXITS_FIRST_FROM`]).
    exits_first: bool,
}

/// Emit a planned filter laid out as `layout` says, computing each value of `cache` once
/// per path (kept in a spill slot). Returns the statistics and the cached values that
/// were reused somewhere.
/// Emits the plan into a throwaway program with the default layout: its size, and which
/// of the `cache` values a path reused.
fn dry_run(
    p: &Plan,
    order: &[NodeId],
    spec: &FilterSpec,
    cache: &[V],
) -> Result<(FilterStats, HashSet<V>), CompileError> {
    let mut scratch = Asm::new();
    let exits = (scratch.label(), scratch.label());
    emit_plan(
        &mut scratch,
        p,
        order,
        spec,
        exits,
        Layout::default(),
        cache,
    )
}

fn emit_plan(
    asm: &mut Asm,
    p: &Plan,
    order: &[NodeId],
    spec: &FilterSpec,
    (on_match, on_reject): (Label, Label),
    layout: Layout,
    cache: &[V],
) -> Result<(FilterStats, HashSet<V>), CompileError> {
    let long = layout.islands;
    let (src, env) = (&spec.src, &spec.env);
    let max_end = match src {
        PacketSource::Direct { .. } => DIRECT_MAX_END as u64,
        PacketSource::KernelMemory { .. } => 0x7fff_ffff,
    };
    // With islands the exits are reached through trampolines after the last node.
    let fall = (spec.reject_follows && !long).then_some(REJECT);
    let start = asm.pos();
    let exit_alias = |asm: &mut Asm, l: Label| if long { asm.label() } else { l };
    let (match_alias, reject_alias) = (exit_alias(asm, on_match), exit_alias(asm, on_reject));
    let mut e = Emitter {
        asm,
        src: *src,
        wire_len: env.wire_len,
        pkt_type: env.pkt_type,
        ifindex: env.ifindex,
        top: env.stack_top as i32,
        labels: HashMap::from([(MATCH, match_alias), (REJECT, reject_alias)]),
        first_use: HashMap::new(),
        used: HashSet::new(),
        long,
        exits_first: layout.exits_first,
        falls_through: false,
        chain_steps: {
            let walks = order
                .iter()
                .filter(|&&n| matches!(p.dag.node(n), Node::Chain { .. }))
                .count()
                .max(1) as i32;
            (PROTOCHAIN_MAX_HEADERS / walks).max(PROTOCHAIN_MIN_HEADERS)
        },
        proven: 0,
        need: 0,
        r4: None,
        buf_shift: 0,
        multi_idx: HashSet::new(),
        cache: HashMap::new(),
        avail: 0,
        edge_avail: HashMap::new(),
        unlink_at: None,
        hit: HashSet::new(),
        preds: {
            let mut preds: HashMap<NodeId, usize> = HashMap::new();
            for &n in order {
                if let Node::Test { yes, no, .. } | Node::Chain { yes, no, .. } = p.dag.node(n) {
                    *preds.entry(*yes).or_default() += 1;
                    *preds.entry(*no).or_default() += 1;
                }
            }
            preds
        },
    };
    // the cached values take the spill slots no evaluation reaches, from the top one down
    for (j, v) in cache.iter().enumerate() {
        let off = e.slot(SPILL_SLOTS - 1 - j);
        e.cache.insert(v.clone(), (off, 1 << j));
    }
    // Kernel memory: read only as much of the window as the loads can reach.
    if let PacketSource::KernelMemory { base, len, window } = e.src {
        let window = read_extent(&p.dag, order, window);
        e.src = PacketSource::KernelMemory { base, len, window };
    }
    // Kernel memory: place the window (inside its 8-byte pad) so that the network
    // header starts 4-byte aligned: IPv4/IPv6 address words then load in one go.
    let net = match spec.link {
        LinkType::Ethernet => 14,
        LinkType::RawIp => 0,
        LinkType::LinuxSll => 16,
        LinkType::LinuxSll2 => 20,
    };
    e.buf_shift = (-(e.buf_off() as i32 + net)).rem_euclid(4) as i16;
    // (a filter of lengths and directions alone reads no packet bytes)
    let need = need_lengths(&p.dag, order, max_end);
    let (mut proven_at_root, mut window_read_insns) = (0, 0);
    if reads_packet(&p.dag, order) {
        (proven_at_root, window_read_insns) = e.prologue(need.get(&p.root).copied().unwrap_or(0));
    }
    e.multi_idx = repeated_indexes(&p.dag, order);
    // Per node, over all its predecessors: the packet length already proven (bounds
    // checks to skip) and the value R0 certainly holds on entry (a load to skip).
    let mut proven_in: HashMap<NodeId, u64> = HashMap::new();
    let mut r0_in: HashMap<NodeId, Option<(V, bool)>> = HashMap::new();
    // and what R4 holds (direct back end: a checked packet pointer)
    let mut r4_in: HashMap<NodeId, Option<PktPtr>> = HashMap::new();
    // and which cached values their slots hold
    let mut avail_in: HashMap<NodeId, u8> = HashMap::new();
    proven_in.insert(p.root, proven_at_root);
    r0_in.insert(p.root, None);
    for (i, &n) in order.iter().enumerate() {
        if long {
            e.island_if_due();
        }
        let next = order.get(i + 1).copied().or(fall);
        e.proven = proven_in.get(&n).copied().unwrap_or(0);
        e.need = need.get(&n).copied().unwrap_or(0);
        let r0 = r0_in.get(&n).cloned().flatten();
        e.r4 = r4_in.get(&n).cloned().flatten();
        e.avail = avail_in.remove(&n).unwrap_or(0);
        e.edge_avail.clear();
        let out_r0 = e.node(p.dag.node(n), n, next, r0.as_ref())?;
        let succ = match p.dag.node(n) {
            Node::Test { yes, no, .. } | Node::Chain { yes, no, .. } => vec![*yes, *no],
            _ => vec![],
        };
        for c in succ {
            let pv = proven_in.entry(c).or_insert(e.proven);
            *pv = (*pv).min(e.proven);
            let rv = r0_in.entry(c).or_insert_with(|| out_r0.clone());
            if *rv != out_r0 {
                *rv = None;
            }
            let r4 = r4_in.entry(c).or_insert_with(|| e.r4.clone());
            if *r4 != e.r4 {
                *r4 = None;
            }
            if c > REJECT && !e.cache.is_empty() {
                // what the slots held when the jump to `c` was emitted (or at the end)
                let out = e.edge_avail.get(&c).copied().unwrap_or(e.avail);
                *avail_in.entry(c).or_insert(out) &= out;
            }
        }
    }
    if order.is_empty() && Some(p.root) != fall {
        let l = e.target(p.root);
        e.asm.ja(l);
    }
    let reaches = |target: NodeId| {
        p.root == target
            || order.iter().any(|&n| match p.dag.node(n) {
                Node::Test { yes, no, .. } => *yes == target || *no == target,
                Node::Chain { yes, no, .. } => *yes == target || *no == target,
                _ => false,
            })
    };
    let jumped_to = |e: &Emitter, target: NodeId| e.used.contains(&target);
    let (uses_match, uses_reject) = if long {
        // the trampolines to the exits that something jumped to
        let used: Vec<(NodeId, Label)> = [(MATCH, on_match), (REJECT, on_reject)]
            .into_iter()
            .filter(|(n, _)| jumped_to(&e, *n))
            .collect();
        for &(n, exit) in &used {
            let alias = e.labels[&n];
            e.asm.bind(alias);
            e.asm.ja(exit);
        }
        (jumped_to(&e, MATCH), jumped_to(&e, REJECT))
    } else {
        (
            reaches(MATCH) || jumped_to(&e, MATCH),
            (fall == Some(REJECT) && reaches(REJECT)) || jumped_to(&e, REJECT),
        )
    };
    let stats = FilterStats {
        nodes: order.len(),
        insns: e.asm.pos() - start,
        window_read_insns,
        uses_match,
        uses_reject,
    };
    Ok((stats, e.hit))
}

/// The packet length each node's bounds check may demand: the largest `n` such that every
/// path from the node to a match loads byte `n - 1` or beyond. A shorter packet can
/// only be rejected from there (by that load, if not before), so checking `n` up front
/// gives the same verdict and spares the later checks.
fn need_lengths(dag: &Dag, order: &[NodeId], max_end: u64) -> HashMap<NodeId, u64> {
    fn ends(v: &V) -> u64 {
        match v {
            V::K(_) | V::Len | V::PktType | V::Ifindex => 0,
            V::Load { idx, k, size } => {
                let own = *k as u64 + *size as u64;
                own.max(idx.as_deref().map_or(0, ends))
            }
            V::Alu(_, a, b) => ends(a).max(ends(b)),
            V::Neg(a) => ends(a),
            V::Select { cond, then, other } => ends(&cond.a)
                .max(ends(&cond.b))
                .max(ends(then).min(ends(other))),
        }
    }
    let mut need: HashMap<NodeId, u64> = HashMap::new();
    let get = |need: &HashMap<NodeId, u64>, n: NodeId| match n {
        MATCH => 0,
        REJECT => u64::MAX,
        n => need.get(&n).copied().unwrap_or(0),
    };
    for &n in order.iter().rev() {
        let (own, yes, no) = match dag.node(n) {
            Node::Test { t, yes, no } => (ends(&t.a).max(ends(&t.b)), *yes, *no),
            Node::Chain {
                v6, nl, yes, no, ..
            } => (*nl as u64 + if *v6 { 7 } else { 10 }, *yes, *no),
            Node::Match | Node::Reject => continue,
        };
        let after = get(&need, yes).min(get(&need, no));
        need.insert(n, own.max(after).min(max_end));
    }
    need
}

/// The kernel-memory window bytes the reachable loads can touch (at most `window`, a
/// multiple of 8): the end of each constant load, of each variable load with a bound
/// (see [`V::verifier_bound`]), the whole window for the others and `protochain`.
fn read_extent(dag: &Dag, order: &[NodeId], window: u16) -> u16 {
    fn ends(v: &V, window: u64) -> u64 {
        match v {
            V::K(_) | V::Len | V::PktType | V::Ifindex => 0,
            V::Load { idx, k, size } => {
                let own = match idx {
                    None => *k as u64 + *size as u64,
                    Some(i) => i
                        .verifier_bound()
                        .map_or(window, |b| b + *k as u64 + *size as u64),
                };
                own.max(idx.as_deref().map_or(0, |i| ends(i, window)))
            }
            V::Alu(_, a, b) => ends(a, window).max(ends(b, window)),
            V::Neg(a) => ends(a, window),
            V::Select { cond, then, other } => ends(&cond.a, window)
                .max(ends(&cond.b, window))
                .max(ends(then, window))
                .max(ends(other, window)),
        }
    }
    let w = window as u64;
    let end = order
        .iter()
        .map(|&n| match dag.node(n) {
            Node::Test { t, .. } => ends(&t.a, w).max(ends(&t.b, w)),
            Node::Chain { .. } => w,
            Node::Match | Node::Reject => 0,
        })
        .max()
        .unwrap_or(0);
    (end.min(w).div_ceil(8) * 8).min(w) as u16
}

/// Whether a reachable node loads packet bytes (else the kernel-memory window is not read).
fn reads_packet(dag: &Dag, order: &[NodeId]) -> bool {
    fn loads(v: &V) -> bool {
        match v {
            V::K(_) | V::Len | V::PktType | V::Ifindex => false,
            V::Load { .. } => true,
            V::Alu(_, a, b) => loads(a) || loads(b),
            V::Neg(a) => loads(a),
            V::Select { cond, then, other } => {
                loads(&cond.a) || loads(&cond.b) || loads(then) || loads(other)
            }
        }
    }
    order.iter().any(|&n| match dag.node(n) {
        Node::Test { t, .. } => loads(&t.a) || loads(&t.b),
        Node::Chain { .. } => true,
        Node::Match | Node::Reject => false,
    })
}

/// The variable load indexes that the reachable tests use more than once.
fn repeated_indexes(dag: &Dag, order: &[NodeId]) -> HashSet<V> {
    fn walk(v: &V, seen: &mut HashSet<V>, multi: &mut HashSet<V>) {
        match v {
            V::K(_) | V::Len | V::PktType | V::Ifindex => {}
            V::Load { idx, .. } => {
                if let Some(i) = idx.as_deref() {
                    if !seen.insert(i.clone()) {
                        multi.insert(i.clone());
                    }
                    walk(i, seen, multi);
                }
            }
            V::Alu(_, a, b) => {
                walk(a, seen, multi);
                walk(b, seen, multi);
            }
            V::Neg(a) => walk(a, seen, multi),
            V::Select { cond, then, other } => {
                walk(&cond.a, seen, multi);
                walk(&cond.b, seen, multi);
                walk(then, seen, multi);
                walk(other, seen, multi);
            }
        }
    }
    let (mut seen, mut multi) = (HashSet::new(), HashSet::new());
    for &n in order {
        if let Node::Test { t, .. } = dag.node(n) {
            walk(&t.a, &mut seen, &mut multi);
            walk(&t.b, &mut seen, &mut multi);
        }
    }
    multi
}

/// Instructions [`Emitter::eval`] spends on `v`, roughly (to choose what to cache).
fn eval_cost(v: &V) -> usize {
    let operand = |b: &V| match b {
        V::K(_) => 1,
        b => eval_cost(b) + 3,
    };
    match v {
        V::K(_) | V::Len | V::PktType | V::Ifindex => 1,
        V::Load { idx: None, .. } => 2,
        V::Load { idx: Some(i), .. } => eval_cost(i) + 5,
        V::Alu(_, a, b) => eval_cost(a) + operand(b),
        V::Neg(a) => eval_cost(a) + 1,
        V::Select { cond, then, other } => {
            eval_cost(&cond.a) + operand(&cond.b) + eval_cost(then) + eval_cost(other) + 2
        }
    }
}

/// The values that evaluating `v` computes on every way through it, `v` included.
fn must_eval(v: &V) -> HashSet<&V> {
    let mut m = match v {
        V::Select { cond, then, other } => {
            let o = must_eval(other);
            let mut m: HashSet<&V> = must_eval(then)
                .into_iter()
                .filter(|w| o.contains(w))
                .collect();
            m.extend(must_eval(&cond.a));
            m.extend(must_eval(&cond.b));
            m
        }
        v => operands(v).into_iter().flat_map(must_eval).collect(),
    };
    m.insert(v);
    m
}

/// `x` and `m` of `x & m` (a constant mask).
fn and_mask(v: &V) -> Option<(&V, u32)> {
    match v {
        V::Alu(ArithOp::And, x, m) => match **m {
            V::K(m) => Some((&**x, m)),
            _ => None,
        },
        _ => None,
    }
}

/// The 32-bit ALU operation of `o` when `a o b == b o a`.
fn commutative(o: ArithOp) -> Option<crate::asm::AluOp> {
    use crate::asm::AluOp as A;
    match o {
        ArithOp::Add => Some(A::Add),
        ArithOp::Mul => Some(A::Mul),
        ArithOp::And => Some(A::And),
        ArithOp::Or => Some(A::Or),
        ArithOp::Xor => Some(A::Xor),
        _ => None,
    }
}

/// The operands of `v` (`Select`'s condition's too).
fn operands(v: &V) -> Vec<&V> {
    match v {
        V::K(_) | V::Len | V::PktType | V::Ifindex => vec![],
        V::Load { idx, .. } => idx.as_deref().into_iter().collect(),
        V::Alu(_, a, b) => vec![a, b],
        V::Neg(a) => vec![a],
        V::Select { cond, then, other } => vec![&cond.a, &cond.b, then, other],
    }
}

/// The highest spill slot evaluating `v` from slot `d` uses, if any (see
/// [`Emitter::eval`]: a computed right operand spills the left one).
fn spill_top(v: &V, d: usize) -> Option<usize> {
    let own = match v {
        V::Alu(_, _, b) if !matches!(**b, V::K(_)) => Some(d),
        V::Select { cond, .. } if !matches!(cond.b, V::K(_)) => Some(d),
        _ => None,
    };
    let deeper = match v {
        V::Alu(_, a, b) => [spill_top(a, d), spill_top(b, d + 1)]
            .into_iter()
            .max()
            .flatten(),
        V::Select { cond, then, other } => [
            spill_top(&cond.a, d),
            spill_top(&cond.b, d + 1),
            spill_top(then, d),
            spill_top(other, d),
        ]
        .into_iter()
        .max()
        .flatten(),
        v => operands(v)
            .into_iter()
            .filter_map(|o| spill_top(o, d))
            .max(),
    };
    own.max(deeper)
}

/// Values (load indexes and operands, not whole test sides) that the reachable tests
/// compute more than once and that cost a few instructions each time: Geneve's inner
/// offsets, a header length added to a loaded offset. Each gets a spill slot that no
/// evaluation reaches (the highest first); a larger value goes before the values inside it,
/// which then count only their uses outside it.
fn cache_candidates(dag: &Dag, order: &[NodeId], banned: &HashSet<V>) -> Vec<V> {
    const MIN_COST: usize = 5;
    fn count<'v>(v: &'v V, top: bool, counts: &mut HashMap<&'v V, usize>) {
        if !top {
            *counts.entry(v).or_default() += 1;
        }
        for o in operands(v) {
            count(o, false, counts);
        }
    }
    let mut counts: HashMap<&V, usize> = HashMap::new();
    let mut used_slots: Option<usize> = None;
    for &n in order {
        match dag.node(n) {
            Node::Test { t, .. } => {
                count(&t.a, true, &mut counts);
                count(&t.b, true, &mut counts);
                let b_spill = (!matches!(t.b, V::K(_))).then_some(0);
                used_slots = [used_slots, b_spill, spill_top(&t.a, 0), spill_top(&t.b, 1)]
                    .into_iter()
                    .max()
                    .flatten();
            }
            Node::Chain { .. } => used_slots = used_slots.max(Some(1)),
            Node::Match | Node::Reject => {}
        }
    }
    let free = SPILL_SLOTS - used_slots.map_or(0, |s| s + 1);
    let mut cands: Vec<(&V, usize)> = counts
        .iter()
        .filter(|(v, &c)| c >= 2 && eval_cost(v) >= MIN_COST && !banned.contains(**v))
        .map(|(v, _)| (*v, eval_cost(v)))
        .collect();
    // larger first; ties in a fixed order (the listing must not depend on hashing)
    cands.sort_by_cached_key(|(v, cost)| (std::cmp::Reverse(*cost), format!("{v:?}")));
    let mut chosen = vec![];
    for (v, _) in cands {
        if chosen.len() >= free {
            break;
        }
        let c = counts[v];
        if c < 2 {
            continue;
        }
        chosen.push(v.clone());
        // computed once: the values inside it are computed `c - 1` times fewer
        let mut inner: HashMap<&V, usize> = HashMap::new();
        count(v, true, &mut inner);
        for (w, m) in inner {
            if let Some(x) = counts.get_mut(w) {
                *x = x.saturating_sub((c - 1) * m);
            }
        }
    }
    chosen
}

struct Emitter<'a> {
    asm: &'a mut Asm,
    src: PacketSource,
    wire_len: WireLength,
    pkt_type: MetaSource,
    ifindex: MetaSource,
    top: i32,
    /// The label jumps to a node (or an exit) use now: the node's own, or with
    /// islands, the next island's entry for it.
    labels: HashMap<NodeId, Label>,
    /// With islands: where the first jump to each node's current label was emitted.
    first_use: HashMap<NodeId, usize>,
    /// The nodes and exits something jumped to.
    used: HashSet<NodeId>,
    /// Far jumps go through islands (see [`ISLAND_SPACING`]).
    long: bool,
    /// Tests with an exit on one side fall through to it (see [`EXITS_FIRST_FROM`]).
    exits_first: bool,
    /// Whether the code emitted last falls through to what comes next.
    falls_through: bool,
    /// Steps each `protochain` walk may take (see [`PROTOCHAIN_MAX_HEADERS`]).
    chain_steps: i32,
    /// Packet bytes proven present on every path to here (bounds checks to skip).
    proven: u64,
    /// Packet bytes every path from this node to a match loads (see [`need_lengths`]):
    /// a bounds check here may as well check that many.
    need: u64,
    /// What R4 (direct back end) or R5 (kernel memory) holds here, if known.
    r4: Option<PktPtr>,
    /// Kernel memory: variable indexes loaded more than once (worth keeping in R5).
    multi_idx: HashSet<V>,
    /// Bytes (0-3, inside the pad above it) the kernel-memory window is moved up by.
    buf_shift: i16,
    /// Values computed once per path: their spill slot and their bit in `avail` (see
    /// [`cache_candidates`]).
    cache: HashMap<V, (i16, u8)>,
    /// The cached values whose slots hold them here (one bit each).
    avail: u8,
    /// Per node jumped to from the current node: what the slots held at the jumps.
    edge_avail: HashMap<NodeId, u8>,
    /// The cached values loaded back from their slots somewhere.
    hit: HashSet<V>,
    /// Per node, the edges to it from the reachable nodes.
    preds: HashMap<NodeId, usize>,
    /// Where [`Emitter::eval`] last wrote `r0 |= 0` (see [`Emitter::fuse_unlink`]).
    unlink_at: Option<usize>,
}

/// Direct back end: R4 = `start + idx + off`, already checked against `end` (so bytes
/// below it may be loaded). Kernel memory: R5 = `idx + off` (a scalar), already
/// checked against the length and inside the window.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PktPtr {
    idx: Option<V>,
    off: u64,
}

fn cond_of(op: TestOp) -> Cond {
    match op {
        TestOp::Eq => Cond::Eq,
        TestOp::Gt => Cond::Gt,
        TestOp::Ge => Cond::Ge,
        TestOp::Set => Cond::Set,
    }
}

impl Emitter<'_> {
    fn slot(&self, i: usize) -> i16 {
        (self.top - 8 * (i as i32 + 1)) as i16
    }
    fn tmp_off(&self) -> i16 {
        (self.top - 8 * SPILL_SLOTS as i32 - 8) as i16
    }
    /// Protochain state: 0 = A, 1 = X, 2 = iteration count.
    fn chain_off(&self, i: i32) -> i16 {
        (self.top - 8 * SPILL_SLOTS as i32 - 16 - 8 * i) as i16
    }
    fn buf_off(&self) -> i16 {
        match self.src {
            PacketSource::KernelMemory { .. } => {
                (self.top - stack_bytes(&self.src) as i32) as i16 + self.buf_shift
            }
            PacketSource::Direct { .. } => 0,
        }
    }

    /// The label to jump to node `n` (or an exit) with a jump emitted next.
    fn target(&mut self, n: NodeId) -> Label {
        self.used.insert(n);
        if n > REJECT && !self.cache.is_empty() {
            *self.edge_avail.entry(n).or_insert(self.avail) &= self.avail;
        }
        if self.long {
            let pos = self.asm.pos();
            self.first_use.entry(n).or_insert(pos);
        }
        *self.labels.entry(n).or_insert_with(|| self.asm.label())
    }

    /// The label of the reject exit, for a jump emitted next.
    fn rej(&mut self) -> Label {
        self.target(REJECT)
    }

    /// Binds node `n`'s label here (its jumps are resolved).
    fn bind_node(&mut self, n: NodeId) {
        let l = *self.labels.entry(n).or_insert_with(|| self.asm.label());
        self.asm.bind(l);
        self.first_use.remove(&n);
    }

    /// With islands: when a pending jump is getting out of range, an island of
    /// `ja`s (one per pending target, each to the target's next label) that the code
    /// before jumps over.
    fn island_if_due(&mut self) {
        let pos = self.asm.pos();
        if !self
            .first_use
            .values()
            .any(|&first| pos - first > ISLAND_SPACING)
        {
            return;
        }
        let mut pending: Vec<NodeId> = self.first_use.keys().copied().collect();
        pending.sort_unstable();
        self.first_use.clear();
        let skip = self.asm.label();
        if self.falls_through {
            self.asm.ja(skip);
        }
        for n in pending {
            let entry = self.labels[&n];
            self.asm.bind(entry);
            let next = self.asm.label();
            self.labels.insert(n, next);
            let l = self.target(n);
            self.asm.ja(l);
        }
        self.asm.bind(skip);
    }

    /// Kernel memory: the window read. When every path to a match needs `need` bytes,
    /// the length is checked first and the window is read whole: its bytes past the
    /// packet's end are still inside the buffer (an skb's tailroom and shared info,
    /// an XDP frame's tailroom; at least 320 bytes, more than any window) and no load
    /// uses them unchecked. Otherwise only the packet's bytes are read. Returns the
    /// packet length proven and the instructions of the read (the check not counted).
    fn prologue(&mut self, need: u64) -> (u64, usize) {
        let PacketSource::KernelMemory { base, len, window } = self.src else {
            return (0, 0);
        };
        let buf = self.buf_off();
        let need = need.min(0x7fff_ffff);
        if need > 0 {
            let rej = self.rej();
            self.asm.jmp(Cond::Lt, len, need as i32, rej);
        }
        let start = self.asm.pos();
        let a = &mut *self.asm;
        a.mov64(Reg::R1, Reg::R10);
        a.add64(Reg::R1, buf as i32);
        if need > 0 {
            a.mov64(Reg::R2, window as i32);
        } else {
            let ok = a.label();
            a.mov64(Reg::R2, len);
            a.jmp(Cond::Le, Reg::R2, window as i32, ok);
            a.mov64(Reg::R2, window as i32);
            a.bind(ok);
        }
        a.mov64(Reg::R3, base);
        a.call(Helper::PROBE_READ_KERNEL);
        let rej = self.rej();
        self.asm.jmp(Cond::Ne, Reg::R0, 0, rej);
        (need, self.asm.pos() - start)
    }

    fn node(
        &mut self,
        n: &Node,
        id: NodeId,
        next: Option<NodeId>,
        r0: Option<&(V, bool)>,
    ) -> Result<Option<(V, bool)>, CompileError> {
        self.bind_node(id);
        let mut out = None;
        match n {
            Node::Match | Node::Reject => {}
            Node::Test { t, yes, no } => {
                let c = cond_of(t.op);
                match &t.b {
                    // `x >= 0` holds wherever `x` can be loaded (libpcap keeps it for
                    // the load's check): the loads, then on to `yes`; `no` is reached
                    // from elsewhere too (else its code would be unreachable)
                    V::K(0)
                        if t.op == TestOp::Ge
                            && (*no <= REJECT || self.preds.get(no).is_some_and(|&p| p > 1))
                            && self.value_reg(&t.a).is_none() =>
                    {
                        match &t.a {
                            V::Load { idx: None, k, size } => {
                                self.load_const(*k, *size, true);
                            }
                            V::Load {
                                idx: Some(i),
                                k,
                                size,
                            } => {
                                self.load_at(i, *k, *size, 0, true)?;
                            }
                            a => self.eval(a, 0)?,
                        }
                        if Some(*yes) == next {
                            self.falls_through = true;
                        } else {
                            let l = self.target(*yes);
                            self.asm.ja(l);
                            self.falls_through = false;
                        }
                    }
                    // a length or direction held in a register is compared there
                    V::K(k) if self.value_reg(&t.a).is_some() => {
                        let r = self.value_reg(&t.a).expect("checked");
                        self.branch(c, r, (*k as i32).into(), *yes, *no, next);
                    }
                    V::K(k)
                        if t.op == TestOp::Eq
                            && r0.is_none_or(|(v, _)| *v != t.a)
                            && raw_shape(&t.a)
                                .and_then(|(_, size, m)| narrowed(size, m, *k))
                                .is_some() =>
                    {
                        // a mask that keeps one or two adjacent bytes: those are loaded
                        let (k0, size, m) = raw_shape(&t.a).expect("checked");
                        let n = narrowed(size, m, *k).expect("checked");
                        let raw = self.load_const_part(k0, size, n.delta, n.width, true);
                        let full = if n.width == 1 { 0xff } else { 0xffff };
                        let swapped = |x: u32| if raw { swap_k(x, n.width) } else { x };
                        if n.mask != full {
                            let mm = swapped(n.mask);
                            self.asm.alu32(crate::asm::AluOp::And, Reg::R0, mm as i32);
                        }
                        let kk = swapped(n.k);
                        self.branch(c, Reg::R0, (kk as i32).into(), *yes, *no, next);
                    }
                    V::K(k)
                        if t.op == TestOp::Eq
                            && r0.is_none_or(|(v, _)| *v != t.a)
                            && self.split_word(&t.a).is_some() =>
                    {
                        // a word at a 2-aligned window offset: half by half (two loads
                        // and two jumps, not two loads, a shift and an `or`, then a jump)
                        let (k0, m) = self.split_word(&t.a).expect("checked");
                        let (hi_m, lo_m) = (m >> 16, m & 0xffff);
                        let (hi_k, lo_k) = (*k >> 16, *k & 0xffff);
                        if *k & !m != 0 {
                            // never equal: the plain test below says so at run time
                            self.eval(&t.a, 0)?;
                            self.branch(c, Reg::R0, (*k as i32).into(), *yes, *no, next);
                        } else {
                            for (delta, hm, hk) in [(0, hi_m, hi_k), (2, lo_m, lo_k)] {
                                self.load_const_part(k0, 4, delta, 2, true);
                                if hm != 0xffff {
                                    let mm = swap_k(hm, 2);
                                    self.asm.alu32(crate::asm::AluOp::And, Reg::R0, mm as i32);
                                }
                                let kk = swap_k(hk, 2) as i32;
                                if delta == 0 {
                                    let l = self.target(*no);
                                    self.asm.jmp32(Cond::Ne, Reg::R0, kk, l);
                                } else {
                                    self.branch(c, Reg::R0, kk.into(), *yes, *no, next);
                                }
                            }
                        }
                    }
                    V::K(0)
                        if t.op == TestOp::Eq
                            && raw_shape(&t.a).is_none()
                            && r0.is_none_or(|(v, _)| *v != t.a)
                            && and_mask(&t.a).is_some() =>
                    {
                        // `x & m == 0` is a `jset` on `x` with the branches swapped
                        let (x, m) = and_mask(&t.a).expect("checked");
                        if r0.is_none_or(|(v, raw)| v != x || *raw) {
                            self.eval(x, 0)?;
                        }
                        self.branch(Cond::Set, Reg::R0, (m as i32).into(), *no, *yes, next);
                        out = Some((x.clone(), false));
                    }
                    V::K(k) => {
                        // Equality and bit tests of 2/4-byte fields compare the raw
                        // (little-endian) load against byte-swapped constants.
                        let eq_or_set = matches!(t.op, TestOp::Eq | TestOp::Set);
                        let shape = raw_shape(&t.a).filter(|&(_, size, m)| {
                            eq_or_set
                                && (size == 4 || (*k <= 0xffff && (m == u32::MAX || m <= 0xffff)))
                        });
                        let var_raw = match &t.a {
                            V::Load {
                                idx: Some(_), size, ..
                            } if *size > 1 && eq_or_set && (*size == 4 || *k <= 0xffff) => {
                                Some(*size)
                            }
                            _ => None,
                        };
                        let want = shape.map(|(_, size, _)| size).or(var_raw);
                        let raw = match (r0, shape, &t.a) {
                            // (an equality or bit test compares R0 as it is, against
                            // the constant in the same byte order)
                            (Some((v, raw)), _, _) if *v == t.a => match (want, *raw) {
                                (Some(_), raw) => raw,
                                (None, true) => {
                                    if let Some(size) = raw_size(&t.a) {
                                        swap(self.asm, size);
                                    }
                                    false
                                }
                                (None, false) => false,
                            },
                            (_, Some((k0, size, m)), _) => {
                                let raw = self.load_const(k0, size, true);
                                if m != u32::MAX {
                                    let mm = if raw { swap_k(m, size) } else { m };
                                    self.asm.alu32(crate::asm::AluOp::And, Reg::R0, mm as i32);
                                }
                                raw
                            }
                            (
                                _,
                                None,
                                V::Load {
                                    idx: Some(i),
                                    k: k0,
                                    size,
                                },
                            ) if var_raw.is_some() => self.load_at(i, *k0, *size, 0, true)?,
                            _ => {
                                self.eval(&t.a, 0)?;
                                false
                            }
                        };
                        let kk = match want {
                            Some(size) if raw => swap_k(*k, size),
                            _ => *k,
                        };
                        self.branch(c, Reg::R0, (kk as i32).into(), *yes, *no, next);
                        out = Some((t.a.clone(), raw));
                    }
                    b => {
                        self.eval(&t.a, 0)?;
                        self.asm.stx(Size::DW, Reg::R10, self.slot(0), Reg::R0);
                        self.eval(b, 1)?;
                        self.asm.mov64(Reg::R1, Reg::R0);
                        self.asm.ldx(Size::DW, Reg::R0, Reg::R10, self.slot(0));
                        self.branch(c, Reg::R0, Reg::R1.into(), *yes, *no, next);
                        out = Some((t.a.clone(), false));
                    }
                }
            }
            Node::Chain {
                v6,
                nl,
                proto,
                yes,
                no,
            } => self.protochain(*v6, *nl, *proto, *yes, *no)?,
        }
        Ok(out)
    }

    fn branch(
        &mut self,
        c: Cond,
        r: Reg,
        s: crate::asm::Src,
        yes: NodeId,
        no: NodeId,
        next: Option<NodeId>,
    ) {
        let is_exit = |n: NodeId| n == MATCH || n == REJECT;
        if self.exits_first && is_exit(yes) != is_exit(no) {
            // jump to the continuation, fall through to the exit (a `jset` toward an
            // exit, which has no inverse, jumps to the exit instead)
            let (cond, jump_to, then) = match c.negate() {
                Some(inv) if is_exit(yes) => (inv, no, yes),
                _ => (c, yes, no),
            };
            let lj = self.target(jump_to);
            self.asm.jmp32(cond, r, s, lj);
            let lt = self.target(then);
            self.asm.ja(lt);
            self.falls_through = false;
        } else if Some(no) == next {
            let ly = self.target(yes);
            self.asm.jmp32(c, r, s, ly);
            self.falls_through = true;
        } else if let (Some(inv), true) = (c.negate(), Some(yes) == next) {
            let ln = self.target(no);
            self.asm.jmp32(inv, r, s, ln);
            self.falls_through = true;
        } else {
            let ly = self.target(yes);
            self.asm.jmp32(c, r, s, ly);
            let ln = self.target(no);
            self.asm.ja(ln);
            self.falls_through = false;
        }
    }

    /// The register that holds `v` for the whole filter (the wire length, the packet
    /// type, the interface), if one does.
    fn value_reg(&self, v: &V) -> Option<Reg> {
        match (v, self.wire_len, self.pkt_type, self.ifindex) {
            (V::Len, WireLength::Reg(w), _, _) => Some(w),
            (V::PktType, _, MetaSource::Reg(r), _) | (V::Ifindex, _, _, MetaSource::Reg(r)) => {
                Some(r)
            }
            _ => None,
        }
    }

    /// Evaluate `v` (u32, zero-extended) into R0. `d` is the first free spill slot.
    /// A cached value is loaded from its slot where the slot holds it, else computed
    /// and stored there.
    fn eval(&mut self, v: &V, d: usize) -> Result<(), CompileError> {
        if d >= SPILL_SLOTS {
            return Err(CompileError::TooComplex(SPILL_SLOTS));
        }
        let Some(&(off, bit)) = self.cache.get(v) else {
            return self.compute(v, d);
        };
        if self.avail & bit != 0 {
            // (a 64-bit spill: the verifier keeps the value's bounds across it)
            self.asm.ldx(Size::DW, Reg::R0, Reg::R10, off);
            self.hit.insert(v.clone());
        } else {
            self.compute(v, d)?;
            self.asm.stx(Size::DW, Reg::R10, off, Reg::R0);
            self.avail |= bit;
        }
        // R0 and the slot now share the verifier's scalar id: a later check on R0 would
        // narrow the slot's bounds too, and 6.12's verifier then explores the window
        // check of the next load from the slot on an impossible side, with wrong bounds
        // ("REG INVARIANTS VIOLATION"), and refuses the program. `r0 |= 0` unlinks them
        // (`fuse_unlink` takes it back where what follows unlinks them as well).
        self.unlink_at = Some(self.asm.pos());
        self.asm.alu64(crate::asm::AluOp::Or, Reg::R0, 0);
        Ok(())
    }

    /// Take back the `r0 |= 0` that [`Self::eval`] just wrote, where what comes next
    /// unlinks R0 from its slot as well. Two places do: where R0 is dead (the next
    /// evaluation writes it first), and a load's `w0 += k` right before its bounds
    /// check (6.1 and 6.12 clear R0's id on a 32-bit add; later kernels keep a link
    /// through it with the bounds synced). Elsewhere `w0 += k` in its place is not
    /// enough: 6.12's verifier then refused `geneve and tcp port 80` (tests/pcapc_kernel.rs
    /// in the VM). Whether it took it back.
    fn fuse_unlink(&mut self) -> bool {
        self.unlink_at
            .take()
            .is_some_and(|at| self.asm.retract_last(at))
    }

    /// R0 += `k`: 32-bit in place of a pending unlink where R0 is below `bound` and
    /// the sum cannot wrap, else 64-bit.
    fn add_to_r0(&mut self, k: u32, bound: Option<u64>) {
        if bound.is_some_and(|b| b + k as u64 <= u32::MAX as u64) && self.fuse_unlink() {
            self.asm.alu32(crate::asm::AluOp::Add, Reg::R0, k as i32);
        } else {
            self.asm.add64(Reg::R0, k as i32);
        }
    }

    /// Whether `v` is cached and its slot holds it here.
    fn holds(&self, v: &V) -> bool {
        self.cache
            .get(v)
            .is_some_and(|(_, bit)| self.avail & bit != 0)
    }

    /// [`Self::eval`] without the cache at the top.
    fn compute(&mut self, v: &V, d: usize) -> Result<(), CompileError> {
        match v {
            V::K(k) => {
                self.asm.mov32(Reg::R0, *k as i32);
            }
            V::Len => match (self.wire_len, self.src) {
                (WireLength::Reg(w), _) => {
                    self.asm.mov32(Reg::R0, w);
                }
                (WireLength::Stack(off), _) => {
                    self.asm.ldx(Size::W, Reg::R0, Reg::R10, off);
                }
                (WireLength::Captured, PacketSource::Direct { start, end }) => {
                    self.asm.mov64(Reg::R0, end);
                    self.asm.alu64(crate::asm::AluOp::Sub, Reg::R0, start);
                    self.asm.mov32(Reg::R0, Reg::R0);
                }
                (WireLength::Captured, PacketSource::KernelMemory { len, .. }) => {
                    self.asm.mov32(Reg::R0, len);
                }
            },
            V::PktType | V::Ifindex => {
                let (source, what) = match v {
                    V::PktType => (self.pkt_type, "direction"),
                    _ => (self.ifindex, "interface"),
                };
                match source {
                    MetaSource::Reg(r) => {
                        self.asm.mov32(Reg::R0, r);
                    }
                    MetaSource::Stack {
                        offset,
                        size,
                        shift,
                        bits,
                    } => {
                        let size = match size {
                            1 => Size::B,
                            2 => Size::H,
                            4 => Size::W,
                            _ => Size::DW,
                        };
                        self.asm.ldx(size, Reg::R0, Reg::R10, offset);
                        if shift > 0 {
                            self.asm
                                .alu64(crate::asm::AluOp::Rsh, Reg::R0, shift as i32);
                        }
                        if bits < 32 {
                            self.asm.alu32(
                                crate::asm::AluOp::And,
                                Reg::R0,
                                ((1u32 << bits) - 1) as i32,
                            );
                        }
                    }
                    // the lowering refuses the primitive without the metadata, and
                    // compile_program_opt resolves Mbuff
                    MetaSource::Unknown | MetaSource::Mbuff => {
                        return Err(CompileError::Invalid(format!(
                            "the packet's {what} is not available here"
                        )))
                    }
                }
            }
            V::Select { cond, then, other } => {
                // both branches start from what is proven here, and what is proven
                // after is what both prove; R4/R5 are not tracked across them
                // a cached value both branches compute is computed before them (the
                // verdict is the same: either branch would reject where it rejects)
                let mut both: Vec<&V> = must_eval(then)
                    .into_iter()
                    .filter(|w| self.cache.contains_key(*w) && !self.holds(w))
                    .collect();
                let in_other = must_eval(other);
                both.retain(|w| in_other.contains(w));
                // (outermost first: the values inside it are then computed with it)
                both.sort_by_key(|w| std::cmp::Reverse(eval_cost(w)));
                for w in both {
                    if !self.holds(w) {
                        self.eval(w, d)?;
                        // (R0 is dead: the next evaluation writes it first)
                        self.fuse_unlink();
                    }
                }
                let (other_l, done) = (self.asm.label(), self.asm.label());
                let c = cond_of(cond.op);
                let raw = match (&cond.b, raw_shape(&cond.a)) {
                    // an equality on a constant field: raw, against a swapped constant
                    (V::K(k), Some((k0, size, m)))
                        if matches!(cond.op, TestOp::Eq | TestOp::Set)
                            && (size == 4 || (*k <= 0xffff && (m == u32::MAX || m <= 0xffff))) =>
                    {
                        let raw = self.load_const(k0, size, true);
                        if m != u32::MAX {
                            let mm = if raw { swap_k(m, size) } else { m };
                            self.asm.alu32(crate::asm::AluOp::And, Reg::R0, mm as i32);
                        }
                        raw.then_some(size)
                    }
                    _ => {
                        self.eval(&cond.a, d)?;
                        None
                    }
                };
                match &cond.b {
                    V::K(k) => {
                        let k = &match raw {
                            Some(size) => swap_k(*k, size),
                            None => *k,
                        };
                        let inv = c.negate();
                        match inv {
                            Some(inv) => {
                                self.asm.jmp32(inv, Reg::R0, *k as i32, other_l);
                            }
                            None => {
                                let then_l = self.asm.label();
                                self.asm.jmp32(c, Reg::R0, *k as i32, then_l);
                                self.asm.ja(other_l);
                                self.asm.bind(then_l);
                            }
                        }
                    }
                    b => {
                        self.asm.stx(Size::DW, Reg::R10, self.slot(d), Reg::R0);
                        self.eval(b, d + 1)?;
                        self.asm.mov64(Reg::R1, Reg::R0);
                        self.asm.ldx(Size::DW, Reg::R0, Reg::R10, self.slot(d));
                        let then_l = self.asm.label();
                        self.asm.jmp32(c, Reg::R0, Reg::R1, then_l);
                        self.asm.ja(other_l);
                        self.asm.bind(then_l);
                    }
                }
                let (before, avail_before) = (self.proven, self.avail);
                self.r4 = None;
                self.eval(then, d)?;
                self.asm.ja(done);
                let after_then = self.proven;
                let avail_then = std::mem::replace(&mut self.avail, avail_before);
                self.proven = before;
                self.r4 = None;
                self.asm.bind(other_l);
                self.eval(other, d)?;
                self.asm.bind(done);
                self.proven = self.proven.min(after_then);
                self.avail &= avail_then;
                self.r4 = None;
            }
            V::Load { idx, k, size } => match idx {
                None => {
                    self.load_const(*k, *size, false);
                }
                Some(i) => {
                    self.load_at(i, *k, *size, d, false)?;
                }
            },
            V::Neg(a) => {
                self.eval(a, d)?;
                self.asm.neg32(Reg::R0);
            }
            V::Alu(o, a, b) => {
                let held = |e: &Self, v: &V| {
                    e.cache
                        .get(v)
                        .filter(|(_, bit)| e.avail & bit != 0)
                        .map(|c| c.0)
                };
                if let (Some(slot), false) = (held(self, a), matches!(**b, V::K(_))) {
                    // the left operand waits in its slot, not in a spill slot
                    self.eval(b, d)?;
                    self.asm.mov64(Reg::R1, Reg::R0);
                    self.asm.ldx(Size::DW, Reg::R0, Reg::R10, slot);
                    self.hit.insert((**a).clone());
                    self.alu_reg(*o);
                    return Ok(());
                }
                self.eval(a, d)?;
                if let V::K(y) = **b {
                    self.alu_imm(*o, y);
                } else if let Some(slot) = held(self, b) {
                    self.asm.ldx(Size::DW, Reg::R1, Reg::R10, slot);
                    self.hit.insert((**b).clone());
                    self.alu_reg(*o);
                } else if self.light(b) {
                    // the left operand waits in R3, which the right one leaves alone
                    self.asm.mov64(Reg::R3, Reg::R0);
                    self.eval(b, d)?;
                    if let Some(aop) = commutative(*o) {
                        self.asm.alu32(aop, Reg::R0, Reg::R3);
                    } else {
                        self.asm.mov64(Reg::R1, Reg::R0);
                        self.asm.mov64(Reg::R0, Reg::R3);
                        self.alu_reg(*o);
                    }
                } else {
                    self.asm.stx(Size::DW, Reg::R10, self.slot(d), Reg::R0);
                    self.eval(b, d + 1)?;
                    self.asm.mov64(Reg::R1, Reg::R0);
                    self.asm.ldx(Size::DW, Reg::R0, Reg::R10, self.slot(d));
                    self.alu_reg(*o);
                }
            }
        }
        Ok(())
    }

    /// Whether evaluating `v` writes no register but R0 and R2 and calls no helper:
    /// constants, lengths and metadata, window loads at constant offsets, and constant
    /// operations on them (R3 can then hold a value across it).
    fn light(&self, v: &V) -> bool {
        if self.cache.contains_key(v) {
            return false;
        }
        match v {
            V::K(_) | V::PktType | V::Ifindex => true,
            V::Len => true,
            V::Load { idx: None, k, size } => match self.src {
                // (a constant load past the window reads it with the helper)
                PacketSource::KernelMemory { window, .. } => {
                    *k as u64 + *size as u64 <= window as u64
                }
                // (a check sets R4)
                PacketSource::Direct { .. } => false,
            },
            V::Alu(o, a, b) => match **b {
                V::K(y) => !(matches!(o, ArithOp::Div | ArithOp::Mod) && y == 0) && self.light(a),
                _ => false,
            },
            V::Neg(a) => self.light(a),
            V::Load { idx: Some(_), .. } | V::Select { .. } => false,
        }
    }

    /// The low bits of `v` known zero, as the verifier's `tnum` of the code
    /// [`Self::eval`] writes knows them: [`V::known_zero_bits`], and a sum of two computed
    /// values whose right one is [`Self::light`] (both stay in registers). 0 for cached
    /// values (loaded from their slots).
    fn zero_bits(&self, v: &V) -> u32 {
        if self.cache.contains_key(v) {
            return 0;
        }
        let V::Alu(op, a, b) = v else {
            return v.known_zero_bits();
        };
        let z = match (op, &**b) {
            (ArithOp::And, V::K(m)) => self.zero_bits(a).max(m.trailing_zeros()),
            (ArithOp::Or | ArithOp::Add, V::K(m)) => self.zero_bits(a).min(m.trailing_zeros()),
            (ArithOp::Lsh, V::K(s)) if *s < 32 => self.zero_bits(a) + s,
            // (`w0 >>= s` shifts the known bits down; past 31, `w0 = 0`)
            (ArithOp::Rsh, V::K(s)) if *s < 32 => self.zero_bits(a).saturating_sub(*s),
            (ArithOp::Rsh, V::K(_)) => 32,
            (ArithOp::Add, b) if self.light(b) => self.zero_bits(a).min(self.zero_bits(b)),
            _ => 0,
        };
        z.min(32)
    }

    fn alu_imm(&mut self, o: ArithOp, y: u32) {
        use crate::asm::AluOp as A;
        if matches!(o, ArithOp::Div | ArithOp::Mod) && y == 0 {
            // (a kept test libpcap's optimizer would have refused): reject through the
            // runtime check, so that no instruction after it is unreachable
            self.asm.mov32(Reg::R1, 0);
            self.alu_reg(o);
            return;
        }
        let a = &mut *self.asm;
        let k = y as i32;
        match o {
            ArithOp::Add => a.alu32(A::Add, Reg::R0, k),
            ArithOp::Sub => a.alu32(A::Sub, Reg::R0, k),
            ArithOp::Mul => a.alu32(A::Mul, Reg::R0, k),
            ArithOp::Div => a.alu32(A::Div, Reg::R0, k),
            ArithOp::Mod => a.alu32(A::Mod, Reg::R0, k),
            ArithOp::And => a.alu32(A::And, Reg::R0, k),
            ArithOp::Or => a.alu32(A::Or, Reg::R0, k),
            ArithOp::Xor => a.alu32(A::Xor, Reg::R0, k),
            ArithOp::Lsh | ArithOp::Rsh if y > 31 => a.mov32(Reg::R0, 0),
            ArithOp::Lsh => a.alu32(A::Lsh, Reg::R0, k),
            ArithOp::Rsh => a.alu32(A::Rsh, Reg::R0, k),
        };
    }

    /// R0 = R0 op R1 (32-bit, classic BPF semantics).
    fn alu_reg(&mut self, o: ArithOp) {
        use crate::asm::AluOp as A;
        let aop = match o {
            ArithOp::Add => A::Add,
            ArithOp::Sub => A::Sub,
            ArithOp::Mul => A::Mul,
            ArithOp::Div => A::Div,
            ArithOp::Mod => A::Mod,
            ArithOp::And => A::And,
            ArithOp::Or => A::Or,
            ArithOp::Xor => A::Xor,
            ArithOp::Lsh => A::Lsh,
            ArithOp::Rsh => A::Rsh,
        };
        match o {
            ArithOp::Div | ArithOp::Mod => {
                let rej = self.rej();
                self.asm.jmp32(Cond::Eq, Reg::R1, 0, rej);
                self.asm.alu32(aop, Reg::R0, Reg::R1);
            }
            ArithOp::Lsh | ArithOp::Rsh => {
                let a = &mut *self.asm;
                let big = a.label();
                let done = a.label();
                a.jmp32(Cond::Gt, Reg::R1, 31, big);
                a.alu32(aop, Reg::R0, Reg::R1);
                a.ja(done);
                a.bind(big);
                a.mov32(Reg::R0, 0);
                a.bind(done);
            }
            _ => {
                self.asm.alu32(aop, Reg::R0, Reg::R1);
            }
        }
    }

    /// The offset and mask of a (masked) 4-byte field at a constant offset that sits
    /// in the kernel-memory window 2-aligned but not 4-aligned, and whose mask keeps
    /// bytes of both halves.
    fn split_word(&self, v: &V) -> Option<(u32, u32)> {
        let (k, size, m) = raw_shape(v)?;
        let PacketSource::KernelMemory { window, .. } = self.src else {
            return None;
        };
        let off = self.buf_off() as i64 + k as i64;
        (size == 4
            && k as u64 + 4 <= window as u64
            && off.rem_euclid(4) == 2
            && m >> 16 != 0
            && m & 0xffff != 0)
            .then_some((k, m))
    }

    /// R0 = load at constant offset `k`: big-endian, or the raw little-endian word when
    /// `want_raw` and the back end can load it in one go (returns whether it did).
    fn load_const(&mut self, k: u32, size: u8, want_raw: bool) -> bool {
        self.load_const_part(k, size, 0, size, want_raw)
    }

    /// [`Self::load_const`] of the `w` bytes at `k + delta` inside the `size`-byte field
    /// at `k`, whose bounds it checks (a packet too short for the field is rejected).
    fn load_const_part(&mut self, k: u32, size: u8, delta: u32, w: u8, want_raw: bool) -> bool {
        let end_off = k as u64 + size as u64;
        let (fk, k) = (k + delta, k);
        let size = w;
        match self.src {
            PacketSource::Direct { start, end } => {
                if end_off > DIRECT_MAX_END as u64 {
                    let rej = self.rej();
                    self.asm.ja(rej);
                    return false;
                }
                if end_off <= self.proven && fk <= i16::MAX as u32 {
                    self.asm.ldx(size_of(size), Reg::R0, start, fk as i16);
                } else {
                    let rej = self.rej();
                    let a = &mut *self.asm;
                    // check the length every path to a match needs anyway
                    let mut n = self.need.clamp(end_off, DIRECT_MAX_END as u64);
                    if n - k as u64 > i16::MAX as u64 && k > i16::MAX as u32 {
                        n = end_off;
                    }
                    match &self.r4 {
                        Some(PktPtr { idx: None, off }) if *off < n => {
                            a.add64(Reg::R4, (n - off) as i32);
                        }
                        _ => {
                            a.mov64(Reg::R4, start);
                            a.add64(Reg::R4, n as i32);
                        }
                    }
                    a.jmp(Cond::Gt, Reg::R4, end, rej);
                    self.r4 = Some(PktPtr { idx: None, off: n });
                    if fk <= i16::MAX as u32 {
                        a.ldx(size_of(size), Reg::R0, start, fk as i16);
                    } else {
                        a.ldx(size_of(size), Reg::R0, Reg::R4, -((n - fk as u64) as i16));
                    }
                    self.proven = self.proven.max(n);
                }
                if want_raw && size > 1 {
                    return true;
                }
                swap(self.asm, size);
                false
            }
            PacketSource::KernelMemory { base, len, window } => {
                if end_off > 0x7fff_ffff {
                    let rej = self.rej();
                    self.asm.ja(rej);
                    return false;
                }
                if end_off > self.proven {
                    let n = self.need.clamp(end_off, 0x7fff_ffff);
                    let rej = self.rej();
                    self.asm.jmp(Cond::Lt, len, n as i32, rej);
                    self.proven = n;
                }
                if end_off <= window as u64 {
                    let off = self.buf_off() as i32 + fk as i32;
                    if want_raw && size > 1 && off.rem_euclid(size as i32) == 0 {
                        self.asm.ldx(size_of(size), Reg::R0, Reg::R10, off as i16);
                        return true;
                    }
                    if want_raw && size == 4 && off.rem_euclid(2) == 0 {
                        // the raw little-endian word from two aligned halves
                        let a = &mut *self.asm;
                        a.ldx(Size::H, Reg::R0, Reg::R10, off as i16);
                        a.ldx(Size::H, Reg::R2, Reg::R10, off as i16 + 2);
                        a.alu32(crate::asm::AluOp::Lsh, Reg::R2, 16);
                        a.alu32(crate::asm::AluOp::Or, Reg::R0, Reg::R2);
                        return true;
                    }
                    self.aligned_from_stack(off as i16, size);
                } else {
                    self.asm.mov64(Reg::R3, base);
                    self.asm.add64(Reg::R3, fk as i32);
                    self.slow_read(size, false);
                }
                false
            }
        }
    }

    /// R0 = big-endian load at `R0 + k` (R0 a zero-extended u32; no wrap), or the raw
    /// little-endian value when `want_raw` and the back end loads it in one go (returns
    /// whether it did). `bound`: an upper bound of R0 that the verifier also derives
    /// (lets us drop the range check, and in kernel memory the read-on-demand path).
    /// `idx_zeros`: the low bits of R0 known to be zero (see [`V::known_zero_bits`]).
    fn load_var(
        &mut self,
        k: u32,
        size: u8,
        bound: Option<u64>,
        idx_zeros: u32,
        want_raw: bool,
    ) -> bool {
        // every way below checks the packet length
        let rej = self.rej();
        self.r4 = None;
        // `k + size` in one constant (the packet pointer's fixed offset, or added to
        // R0 at once) where it fits
        let ks = k as u64 + size as u64;
        let end_bound = bound.map(|b| b + ks);
        match self.src {
            PacketSource::Direct { start, end } if ks <= i16::MAX as u64 => {
                let a = &mut *self.asm;
                if end_bound.is_none_or(|b| b > DIRECT_MAX_END as u64) {
                    a.jmp(Cond::Gt, Reg::R0, DIRECT_MAX_END - ks as i32, rej);
                }
                a.mov64(Reg::R4, start);
                a.add64(Reg::R4, Reg::R0);
                a.add64(Reg::R4, ks as i32);
                a.jmp(Cond::Gt, Reg::R4, end, rej);
                a.ldx(size_of(size), Reg::R0, Reg::R4, -(size as i16));
                if want_raw && size > 1 {
                    return true;
                }
                swap(a, size);
                return false;
            }
            PacketSource::KernelMemory { len, window, .. }
                if end_bound.is_some_and(|b| b <= window as u64) =>
            {
                // always inside the window
                self.add_to_r0(ks as u32, bound);
                let a = &mut *self.asm;
                a.jmp(Cond::Gt, Reg::R0, len, rej);
                let off = self.buf_off() - size as i16;
                let fixed = self.buf_off() as i64 + k as i64;
                return self.window_load(Reg::R0, off, fixed, idx_zeros, size, want_raw);
            }
            _ => {}
        }
        if k > i32::MAX as u32 {
            self.asm.mov32(Reg::R1, k as i32);
            self.asm.add64(Reg::R0, Reg::R1);
        } else if k != 0 {
            self.add_to_r0(k, bound);
        }
        let a = &mut *self.asm;
        match self.src {
            PacketSource::Direct { start, end } => {
                if end_bound.is_none_or(|b| b > DIRECT_MAX_END as u64) {
                    a.jmp(Cond::Gt, Reg::R0, DIRECT_MAX_END - size as i32, rej);
                }
                a.mov64(Reg::R4, start);
                a.add64(Reg::R4, Reg::R0);
                a.add64(Reg::R4, size as i32);
                a.jmp(Cond::Gt, Reg::R4, end, rej);
                a.ldx(size_of(size), Reg::R0, Reg::R4, -(size as i16));
                swap(a, size);
            }
            PacketSource::KernelMemory { base, len, window } => {
                let slow = a.label();
                let done = a.label();
                if size == 1 {
                    // R0 + 1 > len, R0 being below 2^32 + k (no wrap)
                    a.jmp(Cond::Ge, Reg::R0, len, rej);
                } else {
                    a.mov64(Reg::R1, Reg::R0);
                    a.add64(Reg::R1, size as i32);
                    a.jmp(Cond::Gt, Reg::R1, len, rej);
                }
                a.jmp(Cond::Gt, Reg::R0, window as i32 - size as i32, slow);
                let off = self.buf_off();
                let fixed = off as i64 + k as i64;
                // raw where the window load is aligned (the slow path's slot is),
                // else big-endian on both paths
                let raw = self.window_load(Reg::R0, off, fixed, idx_zeros, size, want_raw);
                let a = &mut *self.asm;
                a.ja(done);
                a.bind(slow);
                a.mov64(Reg::R3, base);
                a.add64(Reg::R3, Reg::R0);
                self.slow_read(size, raw);
                self.asm.bind(done);
                return raw;
            }
        }
        false
    }

    /// R0 = the load at `i + k` ([`Self::load_var`]), reusing R4 where it already
    /// points at `start + i` plus a checked offset (`d`: the first free spill slot).
    fn load_at(
        &mut self,
        i: &V,
        k: u32,
        size: u8,
        d: usize,
        want_raw: bool,
    ) -> Result<bool, CompileError> {
        let bound = i.verifier_bound();
        let ks = k as u64 + size as u64;
        let fits = bound.is_some_and(|b| b + ks <= DIRECT_MAX_END as u64) && ks <= i16::MAX as u64;
        if let (PacketSource::Direct { end, .. }, Some(PktPtr { idx: Some(pi), off }), true) =
            (self.src, self.r4.clone(), fits)
        {
            if pi == *i {
                let rej = (ks > off).then(|| self.rej());
                let a = &mut *self.asm;
                let top = off.max(ks);
                if let Some(rej) = rej {
                    a.add64(Reg::R4, (ks - off) as i32);
                    a.jmp(Cond::Gt, Reg::R4, end, rej);
                }
                a.ldx(
                    size_of(size),
                    Reg::R0,
                    Reg::R4,
                    (k as i64 - top as i64) as i16,
                );
                self.r4 = Some(PktPtr {
                    idx: Some(pi),
                    off: top,
                });
                if want_raw && size > 1 {
                    return Ok(true);
                }
                swap(a, size);
                return Ok(false);
            }
        }
        if let PacketSource::KernelMemory { len, window, .. } = self.src {
            if bound.is_some_and(|b| b + ks <= window as u64) {
                let buf = self.buf_off();
                match self.r4.clone() {
                    Some(PktPtr { idx: Some(pi), off }) if pi == *i => {
                        let rej = (ks > off).then(|| self.rej());
                        let a = &mut *self.asm;
                        if let Some(rej) = rej {
                            a.add64(Reg::R5, (ks - off) as i32);
                            a.jmp(Cond::Gt, Reg::R5, len, rej);
                        }
                        let top = off.max(ks);
                        let (off, fixed) = (buf + k as i16 - top as i16, buf as i64 + k as i64);
                        let zeros = self.zero_bits(i);
                        let raw = self.window_load(Reg::R5, off, fixed, zeros, size, want_raw);
                        self.r4 = Some(PktPtr {
                            idx: Some(pi),
                            off: top,
                        });
                        return Ok(raw);
                    }
                    _ if self.multi_idx.contains(i) => {
                        self.eval(i, d)?;
                        let rej = self.rej();
                        self.add_to_r0(ks as u32, bound);
                        let a = &mut *self.asm;
                        a.jmp(Cond::Gt, Reg::R0, len, rej);
                        a.mov64(Reg::R5, Reg::R0);
                        let (off, fixed) = (buf - size as i16, buf as i64 + k as i64);
                        let zeros = self.zero_bits(i);
                        let raw = self.window_load(Reg::R0, off, fixed, zeros, size, want_raw);
                        self.r4 = Some(PktPtr {
                            idx: Some(i.clone()),
                            off: ks,
                        });
                        return Ok(raw);
                    }
                    _ => {}
                }
            }
        }
        self.eval(i, d)?;
        let raw = self.load_var(k, size, bound, self.zero_bits(i), want_raw);
        if matches!(self.src, PacketSource::Direct { .. }) && fits {
            self.r4 = Some(PktPtr {
                idx: Some(i.clone()),
                off: ks,
            });
        }
        Ok(raw)
    }

    /// probe_read_kernel(tmp, size, R3) and load it into R0: big-endian, or raw
    /// (little-endian) when `raw`.
    fn slow_read(&mut self, size: u8, raw: bool) {
        // the helper call clobbers R1-R5
        self.r4 = None;
        let tmp = self.tmp_off();
        let rej = self.rej();
        let a = &mut *self.asm;
        a.mov64(Reg::R1, Reg::R10);
        a.add64(Reg::R1, tmp as i32);
        a.mov64(Reg::R2, size as i32);
        a.call(Helper::PROBE_READ_KERNEL);
        a.jmp(Cond::Ne, Reg::R0, 0, rej);
        if raw && (tmp as i32).rem_euclid(size as i32) == 0 {
            self.asm.ldx(size_of(size), Reg::R0, Reg::R10, tmp);
        } else {
            self.aligned_from_stack(tmp, size);
        }
    }

    /// Big-endian value at `R10 + off`, with the widest loads the alignment allows
    /// (the verifier rejects misaligned stack accesses). Uses R0 and R2.
    fn aligned_from_stack(&mut self, off: i16, size: u8) {
        use crate::asm::AluOp as A;
        let a = &mut *self.asm;
        let al = |n: i16| (off as i32).rem_euclid(n as i32) == 0;
        match size {
            2 if al(2) => {
                a.ldx(Size::H, Reg::R0, Reg::R10, off);
                a.to_be(Reg::R0, 16);
            }
            4 if al(4) => {
                a.ldx(Size::W, Reg::R0, Reg::R10, off);
                a.to_be(Reg::R0, 32);
            }
            4 if al(2) => {
                a.ldx(Size::H, Reg::R0, Reg::R10, off);
                a.to_be(Reg::R0, 16);
                a.alu32(A::Lsh, Reg::R0, 16);
                a.ldx(Size::H, Reg::R2, Reg::R10, off + 2);
                a.to_be(Reg::R2, 16);
                a.alu32(A::Or, Reg::R0, Reg::R2);
            }
            _ => self.bytes_from(Reg::R10, off, size),
        }
    }

    /// R0 = the `size` window bytes at `R10 + idx + off`, `idx` being a variable whose
    /// low `var_zeros` bits are known zero plus constants that add up to `fixed` with
    /// `off`: one load where the verifier can prove the address aligned (it refuses
    /// misaligned stack accesses), returned raw (little-endian) if `want_raw` (returns
    /// whether it is), else byte by byte, big-endian. `idx` survives unless it is R0.
    fn window_load(
        &mut self,
        idx: Reg,
        off: i16,
        fixed: i64,
        var_zeros: u32,
        size: u8,
        want_raw: bool,
    ) -> bool {
        let aligned = size > 1
            && var_zeros >= (size as u32).trailing_zeros()
            && fixed.rem_euclid(size as i64) == 0;
        let a = &mut *self.asm;
        if !aligned && size > 1 {
            a.mov64(Reg::R1, Reg::R10);
            a.add64(Reg::R1, idx);
            self.bytes_from(Reg::R1, off, size);
            return false;
        }
        // one load: an index in R0 becomes its base (`r0 += r10`, scalar plus the frame
        // pointer), one instruction fewer than a base in R1
        let base = if idx == Reg::R0 {
            a.add64(Reg::R0, Reg::R10);
            Reg::R0
        } else {
            a.mov64(Reg::R1, Reg::R10);
            a.add64(Reg::R1, idx);
            Reg::R1
        };
        a.ldx(size_of(size), Reg::R0, base, off);
        if size == 1 {
            return false;
        }
        if want_raw {
            return true;
        }
        swap(self.asm, size);
        false
    }

    /// Big-endian value of `size` bytes at `base + off`, read byte by byte (stack
    /// accesses must be aligned for the verifier). Uses R0 and R2.
    fn bytes_from(&mut self, base: Reg, off: i16, size: u8) {
        let a = &mut *self.asm;
        a.ldx(Size::B, Reg::R0, base, off);
        for i in 1..size as i16 {
            a.alu32(crate::asm::AluOp::Lsh, Reg::R0, 8);
            a.ldx(Size::B, Reg::R2, base, off + i);
            a.alu32(crate::asm::AluOp::Or, Reg::R0, Reg::R2);
        }
    }

    /// `protochain`: libpcap's walk over the IPv6 extension headers (hop-by-hop,
    /// routing, fragment, destination options) and AH headers, until the protocol
    /// (`yes`), no next header or another protocol (`no`), a load past the packet
    /// (reject), or its share of [`PROTOCHAIN_MAX_HEADERS`] steps (reject).
    ///
    /// The verifier follows every iteration, so the loop body has exactly one way
    /// back and its exits fall through (the pending branches stay few): the header
    /// class is computed without branches, both next-header and length bytes are read
    /// with one check, and the kernel-memory back end reads them with
    /// `bpf_probe_read_kernel` (no window/slow-path split to double the paths).
    fn protochain(
        &mut self,
        v6: bool,
        nl: u32,
        proto: u32,
        yes: NodeId,
        no: NodeId,
    ) -> Result<(), CompileError> {
        use crate::asm::AluOp as A;
        self.r4 = None;
        let (pa, px, pc) = (self.chain_off(0), self.chain_off(1), self.chain_off(2));
        let (ext_slot, ah_slot) = (self.slot(0), self.slot(1));
        if v6 {
            self.load_const(nl + 6, 1, false);
            self.asm.stx(Size::DW, Reg::R10, pa, Reg::R0);
            self.asm.st(Size::DW, Reg::R10, px, 40);
        } else {
            self.load_const(nl + 9, 1, false);
            self.asm.stx(Size::DW, Reg::R10, pa, Reg::R0);
            self.load_const(nl, 1, false);
            self.alu_imm(ArithOp::And, 0xf);
            self.alu_imm(ArithOp::Lsh, 2);
            self.asm.stx(Size::DW, Reg::R10, px, Reg::R0);
        }
        self.asm.st(Size::DW, Reg::R10, pc, 0);
        let again = self.asm.label();
        self.asm.bind(again);
        // the step count, then the protocol and the end of the chain
        self.asm.ldx(Size::DW, Reg::R0, Reg::R10, pc);
        self.exit_unless(Cond::Lt, Reg::R0, self.chain_steps, REJECT);
        self.asm.add64(Reg::R0, 1);
        self.asm.stx(Size::DW, Reg::R10, pc, Reg::R0);
        self.asm.ldx(Size::DW, Reg::R0, Reg::R10, pa);
        self.exit_unless(Cond::Ne, Reg::R0, proto as i32, yes);
        self.exit_unless(Cond::Ne, Reg::R0, 59, no);
        // R1 = an IPv6 extension header (0, 43, 44, 60), R2 = AH (51): x == k is
        // ((x ^ k) - 1) >> 63 for a byte x
        let is = |a: &mut Asm, dst: Reg, k: i32| {
            a.mov64(dst, Reg::R0);
            a.alu64(A::Xor, dst, k);
            a.alu64(A::Sub, dst, 1);
            a.alu64(A::Rsh, dst, 63);
        };
        let a = &mut *self.asm;
        a.mov64(Reg::R1, 0);
        if v6 {
            for k in [0, 43, 44, 60] {
                is(a, Reg::R3, k);
                a.alu64(A::Or, Reg::R1, Reg::R3);
            }
        }
        is(a, Reg::R2, 51);
        a.stx(Size::DW, Reg::R10, ext_slot, Reg::R1);
        a.stx(Size::DW, Reg::R10, ah_slot, Reg::R2);
        a.alu64(A::Or, Reg::R1, Reg::R2);
        self.exit_unless(Cond::Ne, Reg::R1, 0, no);
        // R1 = P[nl + X] (the next header), R2 = P[nl + X + 1] (the length)
        self.chain_bytes(nl, px)?;
        self.asm.stx(Size::DW, Reg::R10, pa, Reg::R1);
        // X = ext * ((len + 1) * 8 + X) + ah * ((len + 2) * 4), as libpcap (AH's X is
        // not relative: libpcap's, and its loops, are kept)
        let a = &mut *self.asm;
        a.mov32(Reg::R3, Reg::R2);
        a.alu32(A::Add, Reg::R3, 1);
        a.alu32(A::Mul, Reg::R3, 8);
        a.ldx(Size::DW, Reg::R0, Reg::R10, px);
        a.alu32(A::Add, Reg::R3, Reg::R0);
        a.ldx(Size::DW, Reg::R0, Reg::R10, ext_slot);
        a.alu32(A::Mul, Reg::R3, Reg::R0);
        a.alu32(A::Add, Reg::R2, 2);
        a.alu32(A::Mul, Reg::R2, 4);
        a.ldx(Size::DW, Reg::R0, Reg::R10, ah_slot);
        a.alu32(A::Mul, Reg::R2, Reg::R0);
        a.alu32(A::Add, Reg::R3, Reg::R2);
        a.stx(Size::DW, Reg::R10, px, Reg::R3);
        a.ja(again);
        self.falls_through = false;
        self.r4 = None;
        Ok(())
    }

    /// `if !(reg cond k) goto exit`, laid out as a jump over a `ja` to the exit (the
    /// verifier explores the exit first and keeps only the way on pending).
    fn exit_unless(&mut self, cond: Cond, reg: Reg, k: i32, exit: NodeId) {
        let on = self.asm.label();
        self.asm.jmp(cond, reg, k, on);
        let l = self.target(exit);
        self.asm.ja(l);
        self.asm.bind(on);
    }

    /// Protochain: R1 = P[nl + X], R2 = P[nl + X + 1] (X in the stack slot `px`); past
    /// the packet rejects.
    fn chain_bytes(&mut self, nl: u32, px: i16) -> Result<(), CompileError> {
        let ks = nl as i32 + 2;
        self.asm.ldx(Size::DW, Reg::R0, Reg::R10, px);
        match self.src {
            PacketSource::Direct { start, end } => {
                self.exit_unless(Cond::Le, Reg::R0, DIRECT_MAX_END - ks, REJECT);
                let a = &mut *self.asm;
                a.mov64(Reg::R4, start);
                a.add64(Reg::R4, Reg::R0);
                a.add64(Reg::R4, ks);
                let ok = a.label();
                a.jmp(Cond::Le, Reg::R4, end, ok);
                let rej = self.rej();
                self.asm.ja(rej);
                let a = &mut *self.asm;
                a.bind(ok);
                a.ldx(Size::B, Reg::R1, Reg::R4, -2);
                a.ldx(Size::B, Reg::R2, Reg::R4, -1);
            }
            PacketSource::KernelMemory { base, len, .. } => {
                let tmp = self.tmp_off();
                let a = &mut *self.asm;
                a.mov64(Reg::R1, Reg::R0);
                a.add64(Reg::R1, ks);
                let ok = a.label();
                a.jmp(Cond::Le, Reg::R1, len, ok);
                let rej = self.rej();
                self.asm.ja(rej);
                let a = &mut *self.asm;
                a.bind(ok);
                a.mov64(Reg::R3, base);
                a.add64(Reg::R3, Reg::R0);
                a.add64(Reg::R3, ks - 2);
                a.mov64(Reg::R1, Reg::R10);
                a.add64(Reg::R1, tmp as i32);
                a.mov64(Reg::R2, 2);
                a.call(Helper::PROBE_READ_KERNEL);
                self.exit_unless(Cond::Eq, Reg::R0, 0, REJECT);
                let a = &mut *self.asm;
                a.ldx(Size::B, Reg::R1, Reg::R10, tmp);
                a.ldx(Size::B, Reg::R2, Reg::R10, tmp + 1);
            }
        }
        Ok(())
    }
}

/// The size of a 2/4-byte load a test value is (possibly masked), whose raw
/// little-endian form a register may hold.
fn raw_size(v: &V) -> Option<u8> {
    match v {
        V::Load { size, .. } if *size > 1 => Some(*size),
        V::Alu(ArithOp::And, a, m) => match (&**a, &**m) {
            (
                V::Load {
                    idx: None, size, ..
                },
                V::K(_),
            ) if *size > 1 => Some(*size),
            _ => None,
        },
        _ => None,
    }
}

/// `(offset, size, mask)` of a test value that is a constant-offset 2/4-byte load,
/// possibly masked (`u32::MAX` = no mask).
fn raw_shape(v: &V) -> Option<(u32, u8, u32)> {
    match v {
        V::Load { idx: None, k, size } if *size > 1 => Some((*k, *size, u32::MAX)),
        V::Alu(ArithOp::And, a, m) => match (&**a, &**m) {
            (V::Load { idx: None, k, size }, V::K(m)) if *size > 1 => Some((*k, *size, *m)),
            _ => None,
        },
        _ => None,
    }
}

/// The bytes an equality test `field & mask == k` needs of a `size`-byte big-endian
/// field: the one or two adjacent bytes the mask keeps (not the whole field).
struct Narrowed {
    /// First byte of the field loaded, and how many.
    delta: u32,
    width: u8,
    /// The mask and the constant on those bytes.
    mask: u32,
    k: u32,
}

fn narrowed(size: u8, mask: u32, k: u32) -> Option<Narrowed> {
    let bits = 8 * size as u32;
    let mask = if bits == 32 {
        mask
    } else {
        mask & ((1 << bits) - 1)
    };
    // (a constant outside the mask never matches: left to the plain test)
    if mask == 0 || k & !mask != 0 || size < 2 {
        return None;
    }
    let first = (mask.leading_zeros() - (32 - bits)) / 8;
    let last = size as u32 - 1 - mask.trailing_zeros() / 8;
    let width = last - first + 1;
    if width > 2 || width == size as u32 {
        return None;
    }
    let shift = 8 * (size as u32 - 1 - last);
    let keep = (1u32 << (8 * width)) - 1;
    Some(Narrowed {
        delta: first,
        width: width as u8,
        mask: (mask >> shift) & keep,
        k: k >> shift,
    })
}

fn swap_k(k: u32, size: u8) -> u32 {
    if size == 2 {
        (k as u16).swap_bytes() as u32
    } else {
        k.swap_bytes()
    }
}

fn size_of(size: u8) -> Size {
    match size {
        1 => Size::B,
        2 => Size::H,
        _ => Size::W,
    }
}

fn swap(a: &mut Asm, size: u8) {
    match size {
        2 => {
            a.to_be(Reg::R0, 16);
        }
        4 => {
            a.to_be(Reg::R0, 32);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::insn::op;
    use crate::asm::Program;
    use crate::pcapc::ast::{Dir, Prim, Proto};

    /// `expr` on Ethernet packets from `src`, leaving through `on_match` / `on_reject`.
    fn ethernet<'e>(
        expr: &'e Expr,
        src: PacketSource,
        env: FilterEnv,
        (on_match, on_reject): (Label, Label),
    ) -> FilterSpec<'e> {
        FilterSpec {
            expr: Some(expr),
            link: LinkType::Ethernet,
            src,
            env,
            on_match,
            on_reject,
            reject_follows: false,
        }
    }

    fn port_or_vlan() -> Expr {
        Expr::Or(
            Box::new(Expr::Prim(Prim::Port {
                proto: None,
                dir: Dir::SrcOrDst,
                port: 53,
            })),
            Box::new(Expr::And(
                Box::new(Expr::Prim(Prim::Vlan(Some(5)))),
                Box::new(Expr::Prim(Prim::Protochain {
                    under: None,
                    proto: 6,
                })),
            )),
        )
    }

    fn emit_port_or_vlan(src: PacketSource, top: i16) -> (Program, FilterStats) {
        let mut a = Asm::new();
        let (m, r) = (a.label(), a.label());
        let env = FilterEnv {
            stack_top: top,
            netmask: None,
            ..FilterEnv::default()
        };
        let st = emit(&mut a, &ethernet(&port_or_vlan(), src, env, (m, r))).unwrap();
        a.bind(m);
        a.exit();
        a.bind(r);
        a.exit();
        (a.finish().unwrap(), st)
    }

    #[test]
    fn honours_the_register_and_stack_contract() {
        let srcs = [
            PacketSource::Direct {
                start: Reg::R8,
                end: Reg::R9,
            },
            PacketSource::KernelMemory {
                base: Reg::R6,
                len: Reg::R7,
                window: 64,
            },
        ];
        for src in srcs {
            let top = -40;
            let (p, st) = emit_port_or_vlan(src, top);
            assert!(st.insns > 0 && st.nodes > 0);
            let lo = top as i32 - stack_bytes(&src) as i32;
            let mut i = 0;
            while i < p.insns.len() {
                let x = p.insns[i];
                let class = x.class();
                let writes_dst = matches!(class, op::ALU | op::ALU64 | op::LDX) || x.is_ld_imm64();
                assert!(
                    !(writes_dst && (6..=9).contains(&x.dst)),
                    "insn {i} writes r{} ({src:?})",
                    x.dst
                );
                let stack_ref = (matches!(class, op::STX | op::ST) && x.dst == 10)
                    || (class == op::LDX && x.src == 10);
                if stack_ref {
                    let off = x.off as i32;
                    assert!(
                        off >= lo && off < top as i32,
                        "insn {i}: r10{off:+} outside [{lo}, {top})"
                    );
                }
                i += if x.is_ld_imm64() { 2 } else { 1 };
            }
        }
    }

    #[test]
    fn rejects_bad_operands() {
        let mut a = Asm::new();
        let (m, r) = (a.label(), a.label());
        let bad = PacketSource::Direct {
            start: Reg::R1,
            end: Reg::R7,
        };
        let e = Expr::Prim(Prim::Proto(Proto::Ip));
        assert!(matches!(
            emit(&mut a, &ethernet(&e, bad, FilterEnv::default(), (m, r))),
            Err(CompileError::BadRegisters(_))
        ));
        let ok = PacketSource::KernelMemory {
            base: Reg::R6,
            len: Reg::R7,
            window: 128,
        };
        let env = FilterEnv {
            stack_top: -400,
            netmask: None,
            ..FilterEnv::default()
        };
        assert!(matches!(
            emit(&mut a, &ethernet(&e, ok, env, (m, r))),
            Err(CompileError::Stack(_))
        ));
    }

    #[test]
    fn small_filters_stay_small() {
        let cases = [
            (Expr::Prim(Prim::Proto(Proto::Ip)), 7),
            (Expr::Prim(Prim::Proto(Proto::Tcp)), 26),
        ];
        for (e, max) in cases {
            let mut a = Asm::new();
            let (m, r) = (a.label(), a.label());
            let src = PacketSource::Direct {
                start: Reg::R6,
                end: Reg::R7,
            };
            let st = emit(&mut a, &ethernet(&e, src, FilterEnv::default(), (m, r))).unwrap();
            assert!(st.insns <= max, "`{e}`: {} insns", st.insns);
        }
    }

    #[test]
    fn masked_fields_load_only_the_bytes_their_mask_keeps() {
        // (size, mask, k) → (first byte, bytes, mask, k) on those bytes
        type Bytes = Option<(u32, u8, u32, u32)>;
        let cases: [(u8, u32, u32, Bytes); 9] = [
            (4, 0xff00_0000, 0x0a00_0000, Some((0, 1, 0xff, 0x0a))),
            (4, 0xffff_0000, 0x0a01_0000, Some((0, 2, 0xffff, 0x0a01))),
            (4, 0x0000_ff00, 0x0000_1200, Some((2, 1, 0xff, 0x12))),
            (4, 0x00f0_0000, 0x0010_0000, Some((1, 1, 0xf0, 0x10))),
            (2, 0x00ff, 0x0011, Some((1, 1, 0xff, 0x11))),
            // three bytes, or all of them: the field is loaded whole
            (2, 0x1fff, 0, None),
            (4, 0xffff_ff00, 0x0a01_0200, None),
            (4, u32::MAX, 1, None),
            // a constant outside the mask: left to the plain test (never equal)
            (4, 0xff00_0000, 0x0000_0001, None),
        ];
        for (size, mask, k, want) in cases {
            let got = narrowed(size, mask, k).map(|n| (n.delta, n.width, n.mask, n.k));
            assert_eq!(got, want, "size {size}, mask {mask:#x}, k {k:#x}");
        }
    }
}
