//! The decision DAG of a filter: tests folded as libpcap's optimizer folds them, interned,
//! and hash-consed into nodes, with the jump-threading facts that prune them.

use std::collections::HashMap;

use super::ast::ArithOp;
use super::lower::{Test, TestOp, B, V};
use super::types::CompileError;

/// A node's index in [`Dag`]; the first two are the exits.
pub(super) type NodeId = usize;
pub(super) const MATCH: NodeId = 0;
pub(super) const REJECT: NodeId = 1;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Node {
    Match,
    Reject,
    Test {
        t: Test,
        yes: NodeId,
        no: NodeId,
    },
    Chain {
        v6: bool,
        nl: u32,
        proto: u32,
        yes: NodeId,
        no: NodeId,
    },
}

/// Known outcomes of tests on the current path, by interned test id.
pub(super) type Facts = Vec<(u32, bool)>;

/// A test after constant folding.
#[derive(Clone, Debug)]
pub(super) enum Folded {
    Const(bool),
    /// Interned test id.
    Id(u32),
    /// Always rejects the packet (a load past the back end's limit, ...).
    Rejects,
}

/// The decision nodes of one filter (hash-consed), and its folded, interned tests.
pub(super) struct Dag {
    nodes: Vec<Node>,
    intern: HashMap<Node, NodeId>,
    optimize: bool,
    /// Constant loads ending past this offset always reject (back-end limit).
    max_end: u64,
    /// Interned folded tests and, per test, (value id of `a`, op, `b` is a constant).
    tests: Vec<Test>,
    test_ids: HashMap<Test, u32>,
    val_ids: HashMap<V, u32>,
    tinfo: Vec<(u32, TestOp, bool)>,
    /// Folding results by the address of the lowered test.
    folded: HashMap<usize, Folded>,
    /// Test nodes by (test id, yes, no).
    test_nodes: HashMap<(u32, NodeId, NodeId), NodeId>,
    /// Tests whose folding hit an optimizer error.
    test_errors: HashMap<u32, CompileError>,
}

/// True when evaluating `v` certainly rejects the packet: a constant-offset load past
/// the back end's limit, or a division by a constant zero (unoptimized filters).
fn always_rejects(v: &V, max_end: u64) -> bool {
    match v {
        V::K(_) | V::Len | V::PktType | V::Ifindex => false,
        V::Load { idx: None, k, size } => *k as u64 + *size as u64 > max_end,
        V::Load { idx: Some(i), .. } => always_rejects(i, max_end),
        V::Neg(a) => always_rejects(a, max_end),
        V::Select { cond, .. } => {
            always_rejects(&cond.a, max_end) || always_rejects(&cond.b, max_end)
        }
        V::Alu(o, a, b) => {
            always_rejects(a, max_end)
                || always_rejects(b, max_end)
                || (matches!(o, ArithOp::Div | ArithOp::Mod) && **b == V::K(0))
        }
    }
}

/// True when evaluating `v` certainly loads at an index of at least the wire length
/// (`ip[len]`): the load starts past the captured bytes, which the wire length bounds,
/// so it rejects every packet. libpcap's `ldb [x + 14]` with X = `len` rejects them at
/// run time; its optimizer does not know it, so neither does planning (see
/// [`Dag::prune_dead`]).
fn loads_past_wire_length(v: &V) -> bool {
    fn at_least_wire_length(v: &V) -> bool {
        match v {
            V::Len => true,
            // (`|` never lowers a value; `+` may wrap around in 32 bits)
            V::Alu(ArithOp::Or, a, b) => at_least_wire_length(a) || at_least_wire_length(b),
            _ => false,
        }
    }
    match v {
        V::K(_) | V::Len | V::PktType | V::Ifindex | V::Load { idx: None, .. } => false,
        V::Load { idx: Some(i), .. } => at_least_wire_length(i) || loads_past_wire_length(i),
        V::Neg(a) => loads_past_wire_length(a),
        V::Alu(_, a, b) => loads_past_wire_length(a) || loads_past_wire_length(b),
        // (only the condition is evaluated on every path)
        V::Select { cond, .. } => {
            loads_past_wire_length(&cond.a) || loads_past_wire_length(&cond.b)
        }
    }
}

fn eval_op(op: TestOp, a: u32, b: u32) -> bool {
    match op {
        TestOp::Eq => a == b,
        TestOp::Gt => a > b,
        TestOp::Ge => a >= b,
        TestOp::Set => a & b != 0,
    }
}

impl Dag {
    /// An empty DAG (the two exits only). `optimize`: fold as libpcap's optimizer does;
    /// `max_end`: constant loads ending past it always reject (the back end's limit).
    pub(super) fn new(optimize: bool, max_end: u64) -> Dag {
        Dag {
            nodes: vec![Node::Match, Node::Reject],
            intern: HashMap::new(),
            optimize,
            max_end,
            tests: vec![],
            test_ids: HashMap::new(),
            val_ids: HashMap::new(),
            tinfo: vec![],
            folded: HashMap::new(),
            test_nodes: HashMap::new(),
            test_errors: HashMap::new(),
        }
    }

    pub(super) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// Forget every node but the two exits (the folded tests stay).
    pub(super) fn clear_nodes(&mut self) {
        self.nodes.truncate(2);
        self.intern.clear();
        self.test_nodes.clear();
    }

    /// Whether a true outcome of test `t` decides other tests on its value (`v == c`
    /// makes `v == k` false), the only use [`Self::known`] makes of other tests' facts.
    pub(super) fn decides_others(&self, t: u32) -> bool {
        let (_, op, b_const) = self.tinfo[t as usize];
        op == TestOp::Eq && b_const
    }

    /// The value id of the left-hand side of interned test `t`.
    pub(super) fn value_id(&self, t: u32) -> u32 {
        self.tinfo[t as usize].0
    }

    /// Fold and intern a lowered test (cached by its address).
    pub(super) fn ftest(&mut self, t: &Test) -> Result<Folded, CompileError> {
        let key = t as *const Test as usize;
        if let Some(f) = self.folded.get(&key) {
            return Ok(f.clone());
        }
        let mut err = None;
        let ft = Test {
            a: self.fold(&t.a, &mut err),
            op: t.op,
            b: self.fold(&t.b, &mut err),
        };
        let f = if let Some(e) = err {
            // An error of libpcap's optimizer: raised only if the test stays reachable
            // (see `optimizer_error`), so the test is kept as it is.
            let id = self.intern_test(ft);
            self.test_errors.insert(id, e);
            Folded::Id(id)
        } else if let (V::K(a), V::K(b)) = (&ft.a, &ft.b) {
            Folded::Const(eval_op(ft.op, *a, *b))
        } else if always_rejects(&ft.a, self.max_end) || always_rejects(&ft.b, self.max_end) {
            Folded::Rejects
        } else {
            Folded::Id(self.intern_test(ft))
        };
        self.folded.insert(key, f.clone());
        Ok(f)
    }

    fn intern_test(&mut self, ft: Test) -> u32 {
        if let Some(&id) = self.test_ids.get(&ft) {
            return id;
        }
        let n = self.val_ids.len() as u32;
        let a_id = *self.val_ids.entry(ft.a.clone()).or_insert(n);
        let id = self.tests.len() as u32;
        self.tinfo.push((a_id, ft.op, matches!(ft.b, V::K(_))));
        self.test_ids.insert(ft.clone(), id);
        self.tests.push(ft);
        id
    }

    /// The error libpcap's optimizer reports while folding the statements of the tests
    /// that survive its jump threading (a shift by a computed constant above 31, a
    /// division by a computed zero): the tests reachable from `root` whose two branches
    /// differ (a test with equal branches is bypassed before statements are folded).
    pub(super) fn optimizer_error(&self, root: NodeId) -> Option<CompileError> {
        if self.test_errors.is_empty() {
            return None;
        }
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![root];
        while let Some(n) = stack.pop() {
            if n <= REJECT || seen[n] {
                continue;
            }
            seen[n] = true;
            match &self.nodes[n] {
                Node::Test { t, yes, no } => {
                    if yes != no {
                        if let Some(e) =
                            self.test_ids.get(t).and_then(|id| self.test_errors.get(id))
                        {
                            return Some(e.clone());
                        }
                    }
                    stack.push(*yes);
                    stack.push(*no);
                }
                Node::Chain { yes, no, .. } => {
                    stack.push(*yes);
                    stack.push(*no);
                }
                Node::Match | Node::Reject => {}
            }
        }
        None
    }

    /// What the facts say about test `t`, with exactly libpcap's jump-threading rules
    /// (optimize.c `fold_edge`): the same test on the same value has the same outcome,
    /// and after `v == c` held, `v == k` (k != c) is false. Nothing else (no ranges),
    /// so that "expression rejects all packets" is reported where libpcap reports it.
    pub(super) fn known(&self, t: u32, facts: &Facts) -> Option<bool> {
        let (a, op, bk) = self.tinfo[t as usize];
        for &(f, out) in facts.iter().rev() {
            if f == t {
                return Some(out);
            }
            let (fa, fop, fbk) = self.tinfo[f as usize];
            if out && fop == TestOp::Eq && op == TestOp::Eq && fa == a && fbk && bk {
                return Some(false);
            }
        }
        None
    }

    /// What is known about `b` given `facts` (three-valued).
    fn static_eval(&mut self, b: &B, facts: &Facts) -> Option<bool> {
        match b {
            B::Const(c) => Some(*c),
            B::Test(t) => match self.ftest(t).ok()? {
                Folded::Const(c) => Some(c),
                Folded::Id(id) => self.known(id, facts),
                Folded::Rejects => None,
            },
            B::Not(x) => self.static_eval(x, facts).map(|v| !v),
            B::And(x, y) => self.static_eval_binary(x, y, false, facts),
            B::Or(x, y) => self.static_eval_binary(x, y, true, facts),
            B::Protochain { .. } => None,
        }
    }

    /// `x and y` (`short` = false) or `x or y` (`short` = true): `x == short` decides
    /// alone; otherwise `y` is evaluated knowing what `x` being `!short` implies.
    fn static_eval_binary(&mut self, x: &B, y: &B, short: bool, facts: &Facts) -> Option<bool> {
        let left = self.static_eval(x, facts);
        if left == Some(short) {
            return Some(short);
        }
        let mut f = facts.clone();
        self.facts_of(x, !short, &mut f);
        let right = self.static_eval(y, &f);
        match left {
            Some(_) => right,
            None => (right == Some(short)).then_some(short),
        }
    }

    /// Append to `facts` what holds when `b` evaluates to `truth` (given `facts`).
    pub(super) fn facts_of(&mut self, b: &B, truth: bool, facts: &mut Facts) {
        match b {
            B::Test(t) => {
                if let Ok(Folded::Id(id)) = self.ftest(t) {
                    facts.push((id, truth));
                }
            }
            B::Not(x) => self.facts_of(x, !truth, facts),
            B::And(x, y) | B::Or(x, y) => {
                let is_and = matches!(b, B::And(..));
                if is_and == truth {
                    // both operands have this truth value
                    self.facts_of(x, truth, facts);
                    self.facts_of(y, truth, facts);
                } else {
                    // one of them decided it: if the other one can't, it is that one
                    let mut fx = facts.clone();
                    self.facts_of(x, !truth, &mut fx);
                    if self.static_eval(x, facts) == Some(!truth) {
                        self.facts_of(y, truth, &mut fx);
                        *facts = fx;
                    } else if self.static_eval(y, &fx) == Some(!truth) {
                        self.facts_of(x, truth, facts);
                    }
                }
            }
            B::Const(_) | B::Protochain { .. } => {}
        }
    }

    pub(super) fn mk(&mut self, n: Node) -> NodeId {
        if let Some(&id) = self.intern.get(&n) {
            return id;
        }
        self.nodes.push(n.clone());
        let id = self.nodes.len() - 1;
        self.intern.insert(n, id);
        id
    }

    /// `mk` for an interned test (cheap key).
    pub(super) fn mk_test(&mut self, tid: u32, yes: NodeId, no: NodeId) -> NodeId {
        if let Some(&id) = self.test_nodes.get(&(tid, yes, no)) {
            return id;
        }
        self.nodes.push(Node::Test {
            t: self.tests[tid as usize].clone(),
            yes,
            no,
        });
        let id = self.nodes.len() - 1;
        self.test_nodes.insert((tid, yes, no), id);
        id
    }

    /// Constant folding as libpcap's optimizer does it; its errors go to `err` (the
    /// first one) and leave the operation unfolded.
    fn fold(&self, v: &V, err: &mut Option<CompileError>) -> V {
        match v {
            V::K(_) | V::Len | V::PktType | V::Ifindex => v.clone(),
            V::Load { idx, k, size } => {
                let idx = idx.as_ref().map(|i| self.fold(i, err));
                match idx {
                    // a constant index is a constant offset (optimize.c turns
                    // `ldx #c; ld [x + k]` into `ld [c + k]`); the same bytes, so the
                    // same verdicts, whether libpcap's optimizer runs or not (past the
                    // back end's limit it stays a load that rejects when it runs)
                    Some(V::K(c))
                        if k.checked_add(c)
                            .is_some_and(|o| o as u64 + *size as u64 <= self.max_end) =>
                    {
                        V::Load {
                            idx: None,
                            k: k + c,
                            size: *size,
                        }
                    }
                    // `x + c` as the index: the constant joins the offset (libpcap's
                    // `ld [x + k]` with X = x) when `x + c` cannot wrap around
                    Some(V::Alu(ArithOp::Add, x, c)) => match (*c, x.verifier_bound()) {
                        (V::K(c), Some(b))
                            if b + c as u64 <= u32::MAX as u64 && k.checked_add(c).is_some() =>
                        {
                            V::Load {
                                idx: Some(x),
                                k: k + c,
                                size: *size,
                            }
                        }
                        (c, _) => V::Load {
                            idx: Some(Box::new(V::Alu(ArithOp::Add, x, Box::new(c)))),
                            k: *k,
                            size: *size,
                        },
                    },
                    idx => V::Load {
                        idx: idx.map(Box::new),
                        k: *k,
                        size: *size,
                    },
                }
            }
            V::Neg(a) => match self.fold(a, err) {
                V::K(x) => V::K(x.wrapping_neg()),
                a => V::Neg(Box::new(a)),
            },
            V::Select { cond, then, other } => {
                let (a, b) = (self.fold(&cond.a, err), self.fold(&cond.b, err));
                if let (V::K(x), V::K(y)) = (&a, &b) {
                    return if eval_op(cond.op, *x, *y) {
                        self.fold(then, err)
                    } else {
                        self.fold(other, err)
                    };
                }
                V::Select {
                    cond: Box::new(Test { a, op: cond.op, b }),
                    then: Box::new(self.fold(then, err)),
                    other: Box::new(self.fold(other, err)),
                }
            }
            V::Alu(o, a, b) => {
                let (mut a, mut b) = (self.fold(a, err), self.fold(b, err));
                // the constant of a commutative operation goes right (an immediate
                // operand, and `x + c` indexes fold into load offsets)
                if matches!(a, V::K(_))
                    && !matches!(b, V::K(_))
                    && matches!(
                        o,
                        ArithOp::Add | ArithOp::Mul | ArithOp::And | ArithOp::Or | ArithOp::Xor
                    )
                {
                    std::mem::swap(&mut a, &mut b);
                }
                let keep = |err: &mut Option<CompileError>, e: CompileError| {
                    err.get_or_insert(e);
                    V::Alu(*o, Box::new(a.clone()), Box::new(b.clone()))
                };
                if let V::K(y) = b {
                    if self.optimize {
                        match (o, y) {
                            (ArithOp::Div, 0) => return keep(err, CompileError::DivisionByZero),
                            (ArithOp::Mod, 0) => return keep(err, CompileError::ModulusByZero),
                            (ArithOp::Lsh | ArithOp::Rsh, y) if y > 31 && !matches!(a, V::K(_)) => {
                                return keep(err, CompileError::ShiftTooLarge)
                            }
                            // libpcap's optimizer turns `mul #0` / `and #0` into `ld #0`
                            // (dropping the operand's loads); so do we.
                            (ArithOp::Mul | ArithOp::And, 0) => return V::K(0),
                            (
                                ArithOp::Add
                                | ArithOp::Sub
                                | ArithOp::Or
                                | ArithOp::Xor
                                | ArithOp::Lsh
                                | ArithOp::Rsh,
                                0,
                            ) => return a,
                            _ => {}
                        }
                    }
                    if let V::K(x) = a {
                        if let Some(r) = alu_const(*o, x, y) {
                            return V::K(r);
                        }
                    }
                } else if self.optimize && a == V::K(0) {
                    // optimize.c opt_stmt on `A op X` with A a constant 0 and X not a
                    // constant: `add/or/xor` become `tax`, `mul/div/mod/and/lsh/rsh`
                    // become `ld #0` (so X's loads, and a runtime division by zero,
                    // are gone); `sub` stays.
                    match o {
                        ArithOp::Add | ArithOp::Or | ArithOp::Xor => return b,
                        ArithOp::Mul
                        | ArithOp::Div
                        | ArithOp::Mod
                        | ArithOp::And
                        | ArithOp::Lsh
                        | ArithOp::Rsh => return V::K(0),
                        ArithOp::Sub => {}
                    }
                }
                V::Alu(*o, Box::new(a), Box::new(b))
            }
        }
    }
}

/// Constant arithmetic with classic BPF semantics; `None` for a runtime division by zero.
fn alu_const(o: ArithOp, x: u32, y: u32) -> Option<u32> {
    Some(match o {
        ArithOp::Add => x.wrapping_add(y),
        ArithOp::Sub => x.wrapping_sub(y),
        ArithOp::Mul => x.wrapping_mul(y),
        ArithOp::Div => x.checked_div(y)?,
        ArithOp::Mod => x.checked_rem(y)?,
        ArithOp::And => x & y,
        ArithOp::Or => x | y,
        ArithOp::Xor => x ^ y,
        ArithOp::Lsh => {
            if y < 32 {
                x << y
            } else {
                0
            }
        }
        ArithOp::Rsh => {
            if y < 32 {
                x >> y
            } else {
                0
            }
        }
    })
}

/// Whether a path from `root` reaches the match exit.
pub(super) fn reaches_match(dag: &Dag, root: NodeId) -> bool {
    let mut seen = vec![false; dag.nodes.len()];
    let mut stack = vec![root];
    while let Some(n) = stack.pop() {
        if n == MATCH {
            return true;
        }
        if n == REJECT || seen[n] {
            continue;
        }
        seen[n] = true;
        if let Node::Test { yes, no, .. } | Node::Chain { yes, no, .. } = dag.node(n) {
            stack.push(*yes);
            stack.push(*no);
        }
    }
    false
}

impl Dag {
    /// `root` with every node from which no path reaches the match exit replaced by the
    /// reject exit. The verdicts are the same: from such a node the packet is rejected
    /// whether its loads are in bounds or not. (A test whose two branches meet
    /// elsewhere stays: its load rejects a packet too short for it.) A test that loads
    /// past the wire length ([`loads_past_wire_length`]) is the reject exit too.
    /// (Planning keeps these nodes, for libpcap's "rejects all packets" rules; the code
    /// has no use for them.)
    pub(super) fn prune_dead(&mut self, root: NodeId) -> NodeId {
        let mut new_id: Vec<NodeId> = (0..self.nodes.len()).collect();
        // children are made before their parents
        for n in 2..self.nodes.len() {
            let node = match self.nodes[n].clone() {
                Node::Test { t, yes, no } => Node::Test {
                    t,
                    yes: new_id[yes],
                    no: new_id[no],
                },
                Node::Chain {
                    v6,
                    nl,
                    proto,
                    yes,
                    no,
                } => Node::Chain {
                    v6,
                    nl,
                    proto,
                    yes: new_id[yes],
                    no: new_id[no],
                },
                Node::Match | Node::Reject => continue,
            };
            new_id[n] = match node {
                Node::Test { ref t, .. }
                    if loads_past_wire_length(&t.a) || loads_past_wire_length(&t.b) =>
                {
                    REJECT
                }
                Node::Test {
                    yes: REJECT,
                    no: REJECT,
                    ..
                }
                | Node::Chain {
                    yes: REJECT,
                    no: REJECT,
                    ..
                } => REJECT,
                node => self.mk(node),
            };
        }
        new_id[root]
    }
}

/// Nodes reachable from `root`, parents before children (descending creation order).
pub(super) fn reachable_order(dag: &Dag, root: NodeId) -> Vec<NodeId> {
    let mut seen = vec![false; dag.nodes.len()];
    let mut stack = vec![root];
    while let Some(n) = stack.pop() {
        if n <= REJECT || seen[n] {
            continue;
        }
        seen[n] = true;
        match dag.node(n) {
            Node::Test { yes, no, .. } | Node::Chain { yes, no, .. } => {
                stack.push(*yes);
                stack.push(*no);
            }
            _ => {}
        }
    }
    (2..dag.nodes.len()).rev().filter(|&n| seen[n]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field() -> V {
        V::load(12, 2)
    }

    fn alu(o: ArithOp, a: V, b: V) -> V {
        V::Alu(o, Box::new(a), Box::new(b))
    }

    fn interned(dag: &mut Dag, t: &Test) -> u32 {
        match dag.ftest(t).unwrap() {
            Folded::Id(id) => id,
            f => panic!("{t:?} folded to {f:?}"),
        }
    }

    #[test]
    fn folds_like_libpcaps_optimizer() {
        let dag = Dag::new(true, u64::MAX);
        let mut err = None;
        // `x * 0` drops the load of `x`; `0 - x` is kept
        assert_eq!(
            dag.fold(&alu(ArithOp::Mul, field(), V::K(0)), &mut err),
            V::K(0)
        );
        assert_eq!(
            dag.fold(&alu(ArithOp::Add, V::K(2), V::K(3)), &mut err),
            V::K(5)
        );
        let sub = alu(ArithOp::Sub, V::K(0), field());
        assert_eq!(dag.fold(&sub, &mut err), sub);
        assert_eq!(err, None);
        // the optimizer's errors leave the operation as it is
        let div = alu(ArithOp::Div, field(), V::K(0));
        assert_eq!(dag.fold(&div, &mut err), div);
        assert_eq!(err, Some(CompileError::DivisionByZero));
        // without the optimizer (`protochain`), loads stay and nothing is reported
        let unoptimized = Dag::new(false, u64::MAX);
        let mut err = None;
        let mul = alu(ArithOp::Mul, field(), V::K(0));
        assert_eq!(unoptimized.fold(&mul, &mut err), mul);
        let const_div = alu(ArithOp::Div, V::K(6), V::K(0));
        assert_eq!(unoptimized.fold(&const_div, &mut err), const_div);
        assert_eq!(err, None);
    }

    #[test]
    fn constant_tests_fold_and_loads_past_the_limit_reject() {
        let mut dag = Dag::new(true, 100);
        let constant = Test {
            a: V::K(3),
            op: TestOp::Gt,
            b: V::K(2),
        };
        assert!(matches!(dag.ftest(&constant), Ok(Folded::Const(true))));
        let past = Test {
            a: V::load(99, 2),
            op: TestOp::Eq,
            b: V::K(1),
        };
        assert!(matches!(dag.ftest(&past), Ok(Folded::Rejects)));
        let inside = Test {
            a: V::load(98, 2),
            op: TestOp::Eq,
            b: V::K(1),
        };
        assert!(matches!(dag.ftest(&inside), Ok(Folded::Id(_))));
    }

    #[test]
    fn facts_thread_only_like_libpcap() {
        let mut dag = Dag::new(true, u64::MAX);
        let eq = |k| Test {
            a: field(),
            op: TestOp::Eq,
            b: V::K(k),
        };
        let (ipv4, ipv6) = (eq(0x0800), eq(0x86dd));
        let above = Test {
            a: field(),
            op: TestOp::Gt,
            b: V::K(0x0900),
        };
        let ipv4 = interned(&mut dag, &ipv4);
        let ipv6 = interned(&mut dag, &ipv6);
        let above = interned(&mut dag, &above);
        let is_ipv4 = vec![(ipv4, true)];
        assert_eq!(dag.known(ipv4, &is_ipv4), Some(true));
        assert_eq!(dag.known(ipv6, &is_ipv4), Some(false));
        // no ranges: `v == 0x800` says nothing about `v > 0x900`
        assert_eq!(dag.known(above, &is_ipv4), None);
        assert_eq!(dag.known(ipv6, &vec![(ipv4, false)]), None);
    }

    #[test]
    fn nodes_are_shared_and_ordered_parents_first() {
        let mut dag = Dag::new(true, u64::MAX);
        let tests: Vec<Test> = (1..=3)
            .map(|k| Test {
                a: field(),
                op: TestOp::Eq,
                b: V::K(k),
            })
            .collect();
        let ids: Vec<u32> = tests.iter().map(|t| interned(&mut dag, t)).collect();
        let leaf = dag.mk_test(ids[0], MATCH, REJECT);
        assert_eq!(dag.mk_test(ids[0], MATCH, REJECT), leaf);
        let root = dag.mk_test(ids[1], leaf, REJECT);
        assert_eq!(reachable_order(&dag, root), vec![root, leaf]);
        assert!(reaches_match(&dag, root));
        let dead = dag.mk_test(ids[2], REJECT, REJECT);
        assert!(!reaches_match(&dag, dead));
        dag.clear_nodes();
        assert_eq!(reachable_order(&dag, MATCH), Vec::<NodeId>::new());
    }

    #[test]
    fn tests_that_load_past_the_wire_length_are_pruned_to_reject() {
        let at = |i: V| Test {
            a: V::Load {
                idx: Some(Box::new(i)),
                k: 14,
                size: 1,
            },
            op: TestOp::Eq,
            b: V::K(1),
        };
        let table = [
            (at(V::Len), true),
            (at(alu(ArithOp::Or, field(), V::Len)), true),
            // a load inside the index loads past it too
            (
                at(V::Load {
                    idx: Some(Box::new(V::Len)),
                    k: 0,
                    size: 1,
                }),
                true,
            ),
            // `len - 1` and `len + k` (32-bit, may wrap) can be in the packet
            (at(alu(ArithOp::Sub, V::Len, V::K(1))), false),
            (at(alu(ArithOp::Add, V::Len, V::K(1))), false),
            (at(field()), false),
        ];
        for (t, pruned) in table {
            let mut dag = Dag::new(true, u64::MAX);
            // planning keeps it (libpcap's optimizer does not know either)
            let id = interned(&mut dag, &t);
            let root = dag.mk_test(id, MATCH, REJECT);
            assert_eq!(dag.prune_dead(root) == REJECT, pruned, "{t:?}");
        }
    }
}
