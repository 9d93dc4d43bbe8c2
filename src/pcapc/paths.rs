//! From the lowered boolean IR to a pruned decision DAG: path-sensitive generation (each
//! continuation under the facts of the paths into it), within a step budget, then checks.

use std::collections::HashMap;

use super::ast::Expr;
use super::dag::{reaches_match, Dag, Facts, Folded, Node, NodeId, MATCH, REJECT};
use super::lower::{Lowering, B};
use super::types::{CompileError, FilterEnv, LinkType, MetaSource};

/// A continuation: what to evaluate next, with the values its tests read (a bitset of
/// value ids: facts about other values can't matter to it).
struct Kont<'b> {
    what: KontKind<'b>,
    vids: Vec<u64>,
}

enum KontKind<'b> {
    Done(NodeId),
    /// Evaluate this `B`, then continue with the two continuations.
    Eval(&'b B, usize, usize),
}

/// Path-sensitive generation: each continuation is generated under the facts of the
/// path that reaches it (like libpcap's jump threading over dominating edges, to
/// fixpoint), memoized on (continuation, relevant facts). Gives up past a step budget.
struct PathGen<'b> {
    konts: Vec<Kont<'b>>,
    kont_ids: HashMap<(usize, usize, usize), usize>,
    memo: HashMap<(usize, Facts), NodeId>,
    steps: usize,
    depth: usize,
    max_depth: usize,
    /// Test ids that occur more than once in the expression (a bitset): only their
    /// outcomes can be asked again further down a path.
    repeated: Vec<u64>,
}

const PATH_BUDGET: usize = 400_000;
/// Deepest recursion of the path-sensitive generation on the caller's thread (whose
/// stack may be small); deeper gives up like the budget. Large expressions are planned
/// on a thread of their own with [`BIG_STACK`] bytes of stack and no such limit.
const PATH_DEPTH: usize = 1_500;
/// Failed tests a continuation remembers (the latest ones).
const FAILED_FACTS: usize = 32;
/// Expressions with more AST nodes than this are planned on their own thread.
const BIG_EXPR_NODES: usize = 256;
const BIG_STACK: usize = 1 << 30;
/// The fallback learns facts from sub-expressions up to this many nodes only (what a
/// long chain of alternatives teaches its last one is not worth quadratic time).
const FACTS_FROM_NODES: usize = 256;

struct OverBudget;

fn set_bit(bits: &mut Vec<u64>, i: u32) {
    let w = (i / 64) as usize;
    if bits.len() <= w {
        bits.resize(w + 1, 0);
    }
    bits[w] |= 1 << (i % 64);
}

fn has_bit(bits: &[u64], i: u32) -> bool {
    bits.get((i / 64) as usize)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
}

impl<'b> PathGen<'b> {
    fn done(&mut self, n: NodeId) -> usize {
        self.konts.push(Kont {
            what: KontKind::Done(n),
            vids: vec![],
        });
        self.konts.len() - 1
    }

    fn collect_vids(dag: &mut Dag, b: &B, bits: &mut Vec<u64>) {
        match b {
            B::Test(t) => {
                if let Ok(Folded::Id(id)) = dag.ftest(t) {
                    set_bit(bits, dag.value_id(id));
                }
            }
            B::And(x, y) | B::Or(x, y) => {
                Self::collect_vids(dag, x, bits);
                Self::collect_vids(dag, y, bits);
            }
            B::Not(x) => Self::collect_vids(dag, x, bits),
            B::Const(_) | B::Protochain { .. } => {}
        }
    }

    fn kont(&mut self, dag: &mut Dag, b: &'b B, yes: usize, no: usize) -> usize {
        let key = (b as *const B as usize, yes, no);
        if let Some(&id) = self.kont_ids.get(&key) {
            return id;
        }
        let mut vids = self.konts[yes].vids.clone();
        for (i, w) in self.konts[no].vids.iter().enumerate() {
            if vids.len() <= i {
                vids.push(0);
            }
            vids[i] |= w;
        }
        Self::collect_vids(dag, b, &mut vids);
        self.konts.push(Kont {
            what: KontKind::Eval(b, yes, no),
            vids,
        });
        self.kont_ids.insert(key, self.konts.len() - 1);
        self.konts.len() - 1
    }

    fn resolve(
        &mut self,
        dag: &mut Dag,
        k: usize,
        facts: &Facts,
    ) -> Result<Result<NodeId, OverBudget>, CompileError> {
        let (b, y, n) = match self.konts[k].what {
            KontKind::Done(n) => return Ok(Ok(n)),
            KontKind::Eval(b, y, n) => (b, y, n),
        };
        let vids = &self.konts[k].vids;
        // what the continuation can use: facts on values it reads, about tests it may
        // meet again, or that decide other tests on the value; of the failed tests, the
        // latest few only (forgetting a fact is safe: the test is then made again)
        let mut failed = 0;
        let mut relevant: Facts = facts
            .iter()
            .rev()
            .copied()
            .filter(|&(t, out)| {
                let keep = has_bit(vids, dag.value_id(t))
                    && ((out && dag.decides_others(t))
                        || (has_bit(&self.repeated, t) && (out || failed < FAILED_FACTS)));
                failed += usize::from(keep && !out);
                keep
            })
            .collect();
        relevant.reverse();
        let key = (k, relevant);
        if let Some(&id) = self.memo.get(&key) {
            return Ok(Ok(id));
        }
        let r = self.gen(dag, b, y, n, &key.1)?;
        if let Ok(id) = r {
            self.memo.insert(key, id);
        }
        Ok(r)
    }

    fn gen(
        &mut self,
        dag: &mut Dag,
        b: &'b B,
        yes: usize,
        no: usize,
        facts: &Facts,
    ) -> Result<Result<NodeId, OverBudget>, CompileError> {
        self.steps += 1;
        if self.steps > PATH_BUDGET || self.depth >= self.max_depth {
            return Ok(Err(OverBudget));
        }
        self.depth += 1;
        let r = self.gen_here(dag, b, yes, no, facts);
        self.depth -= 1;
        r
    }

    fn gen_here(
        &mut self,
        dag: &mut Dag,
        b: &'b B,
        yes: usize,
        no: usize,
        facts: &Facts,
    ) -> Result<Result<NodeId, OverBudget>, CompileError> {
        match b {
            B::Const(true) => self.resolve(dag, yes, facts),
            B::Const(false) => self.resolve(dag, no, facts),
            B::Not(x) => self.gen(dag, x, no, yes, facts),
            B::And(x, y) => {
                let k = self.kont(dag, y, yes, no);
                self.gen(dag, x, k, no, facts)
            }
            B::Or(x, y) => {
                let k = self.kont(dag, y, yes, no);
                self.gen(dag, x, yes, k, facts)
            }
            B::Test(t) => {
                let id = match dag.ftest(t)? {
                    Folded::Const(c) => return self.resolve(dag, if c { yes } else { no }, facts),
                    Folded::Rejects => return Ok(Ok(REJECT)),
                    Folded::Id(id) => id,
                };
                if let Some(v) = dag.known(id, facts) {
                    return self.resolve(dag, if v { yes } else { no }, facts);
                }
                let mut fy = facts.clone();
                fy.push((id, true));
                let ny = match self.resolve(dag, yes, &fy)? {
                    Ok(n) => n,
                    Err(e) => return Ok(Err(e)),
                };
                let mut fno = facts.clone();
                fno.push((id, false));
                let nn = match self.resolve(dag, no, &fno)? {
                    Ok(n) => n,
                    Err(e) => return Ok(Err(e)),
                };
                Ok(Ok(dag.mk_test(id, ny, nn)))
            }
            B::Protochain { v6, nl, proto } => {
                let ny = match self.resolve(dag, yes, facts)? {
                    Ok(n) => n,
                    Err(e) => return Ok(Err(e)),
                };
                let nn = match self.resolve(dag, no, facts)? {
                    Ok(n) => n,
                    Err(e) => return Ok(Err(e)),
                };
                Ok(Ok(dag.mk(Node::Chain {
                    v6: *v6,
                    nl: *nl,
                    proto: *proto,
                    yes: ny,
                    no: nn,
                })))
            }
        }
    }
}

/// Past the budget: each sub-expression generated once, with the facts that hold on
/// every path into it.
fn gen_shared(
    dag: &mut Dag,
    b: &B,
    yes: NodeId,
    no: NodeId,
    facts: &Facts,
) -> Result<NodeId, CompileError> {
    Ok(match b {
        B::Const(true) => yes,
        B::Const(false) => no,
        B::Not(x) => gen_shared(dag, x, no, yes, facts)?,
        B::And(x, y) => {
            let mut f2 = facts.clone();
            if size_upto(x, FACTS_FROM_NODES) <= FACTS_FROM_NODES {
                dag.facts_of(x, true, &mut f2);
            }
            let ny = gen_shared(dag, y, yes, no, &f2)?;
            gen_shared(dag, x, ny, no, facts)?
        }
        B::Or(x, y) => {
            let mut f2 = facts.clone();
            if size_upto(x, FACTS_FROM_NODES) <= FACTS_FROM_NODES {
                dag.facts_of(x, false, &mut f2);
            }
            let ny = gen_shared(dag, y, yes, no, &f2)?;
            gen_shared(dag, x, yes, ny, facts)?
        }
        B::Test(t) => match dag.ftest(t)? {
            Folded::Const(c) => {
                if c {
                    yes
                } else {
                    no
                }
            }
            Folded::Rejects => REJECT,
            Folded::Id(id) => match dag.known(id, facts) {
                Some(true) => yes,
                Some(false) => no,
                None => dag.mk_test(id, yes, no),
            },
        },
        B::Protochain { v6, nl, proto } => dag.mk(Node::Chain {
            v6: *v6,
            nl: *nl,
            proto: *proto,
            yes,
            no,
        }),
    })
}

/// The number of nodes of `b`, counted up to a little past `cap`.
fn size_upto(b: &B, cap: usize) -> usize {
    let mut n = 0;
    let mut stack = vec![b];
    while let Some(b) = stack.pop() {
        n += 1;
        if n > cap {
            break;
        }
        match b {
            B::And(x, y) | B::Or(x, y) => {
                stack.push(x);
                stack.push(y);
            }
            B::Not(x) => stack.push(x),
            B::Const(_) | B::Test(_) | B::Protochain { .. } => {}
        }
    }
    n
}

/// Chains of `and` (or of `or`) as balanced trees: the same tests in the same order
/// (both operators are associative under short-circuit evaluation), recursion depth
/// logarithmic in a chain's length (an allow-list of 3000 hosts is a 3000-deep chain).
fn balance(b: B) -> B {
    fn operands(b: B, and: bool, out: &mut Vec<B>) {
        match b {
            B::And(x, y) if and => {
                operands(*x, and, out);
                operands(*y, and, out);
            }
            B::Or(x, y) if !and => {
                operands(*x, and, out);
                operands(*y, and, out);
            }
            b => out.push(balance(b)),
        }
    }
    fn build(mut items: Vec<B>, and: bool) -> B {
        if items.len() == 1 {
            return items.pop().expect("one operand");
        }
        let right = items.split_off(items.len() / 2);
        let (x, y) = (Box::new(build(items, and)), Box::new(build(right, and)));
        if and {
            B::And(x, y)
        } else {
            B::Or(x, y)
        }
    }
    match b {
        B::And(..) | B::Or(..) => {
            let and = matches!(b, B::And(..));
            let mut items = Vec::new();
            operands(b, and, &mut items);
            build(items, and)
        }
        B::Not(x) => B::Not(Box::new(balance(*x))),
        b => b,
    }
}

/// A compiled decision DAG, before emission.
pub(super) struct Plan {
    pub(super) dag: Dag,
    pub(super) root: NodeId,
}

/// Lower `expr`, then generate and prune its decision DAG; `max_end`: the back end's
/// load limit. Fails where `pcap_compile` fails.
pub(super) fn plan(
    expr: Option<&Expr>,
    link: LinkType,
    env: &FilterEnv,
    max_end: u64,
) -> Result<Plan, CompileError> {
    if expr.is_none_or(|e| ast_nodes_upto(e, BIG_EXPR_NODES) <= BIG_EXPR_NODES) {
        return plan_here(expr, link, env, max_end, PATH_DEPTH);
    }
    // recursion over a long chain of alternatives goes deep: give it room
    let planned = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("pcapc-plan".into())
            .stack_size(BIG_STACK)
            .spawn_scoped(scope, || plan_here(expr, link, env, max_end, usize::MAX))
            .map(|planner| planner.join())
    });
    match planned {
        Ok(Ok(plan)) => plan,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        // no thread to be had: plan here, within the depth limit of small expressions
        Err(_no_thread) => plan_here(expr, link, env, max_end, PATH_DEPTH),
    }
}

/// The number of nodes of `e`, counted up to a little past `cap`.
fn ast_nodes_upto(e: &Expr, cap: usize) -> usize {
    let mut n = 0;
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        n += 1;
        if n > cap {
            break;
        }
        match e {
            Expr::And(a, b) | Expr::Or(a, b) => {
                stack.push(a);
                stack.push(b);
            }
            Expr::Not(a) => stack.push(a),
            Expr::Prim(_) | Expr::Rel { .. } => {}
        }
    }
    n
}

/// The test ids that occur more than once in `b` (a bitset).
fn repeated_tests(dag: &mut Dag, b: &B) -> Result<Vec<u64>, CompileError> {
    let (mut seen, mut repeated) = (Vec::new(), Vec::new());
    let mut stack = vec![b];
    while let Some(b) = stack.pop() {
        match b {
            B::Test(t) => {
                if let Folded::Id(id) = dag.ftest(t)? {
                    if has_bit(&seen, id) {
                        set_bit(&mut repeated, id);
                    }
                    set_bit(&mut seen, id);
                }
            }
            B::And(x, y) | B::Or(x, y) => {
                stack.push(x);
                stack.push(y);
            }
            B::Not(x) => stack.push(x),
            B::Const(_) | B::Protochain { .. } => {}
        }
    }
    Ok(repeated)
}

fn plan_here(
    expr: Option<&Expr>,
    link: LinkType,
    env: &FilterEnv,
    max_end: u64,
    max_depth: usize,
) -> Result<Plan, CompileError> {
    let mut lw = Lowering::new(link, env.netmask)
        .with_direction(env.pkt_type != MetaSource::Unknown)
        .with_ifindex(env.ifindex != MetaSource::Unknown);
    let b = match expr {
        Some(e) => balance(lw.expr(e)?),
        // the empty expression matches every packet
        None => B::Const(true),
    };
    // libpcap turns its optimizer off when `protochain` or `geneve` is used.
    let optimize = !lw.no_optimize;
    let mut dag = Dag::new(optimize, max_end);
    let repeated = repeated_tests(&mut dag, &b)?;
    let mut pg = PathGen {
        konts: vec![],
        kont_ids: HashMap::new(),
        memo: HashMap::new(),
        steps: 0,
        depth: 0,
        max_depth,
        repeated,
    };
    let km = pg.done(MATCH);
    let kr = pg.done(REJECT);
    let root = match pg.gen(&mut dag, &b, km, kr, &Vec::new())? {
        Ok(root) => root,
        Err(OverBudget) => {
            // Too many paths: generate each continuation once, with the facts that
            // hold on every path into it.
            dag.clear_nodes();
            gen_shared(&mut dag, &b, MATCH, REJECT, &Vec::new())?
        }
    };
    // libpcap's optimizer reports a program that can only reach `ret #0`. (We keep
    // tests whose outcomes are irrelevant, like libpcap's unoptimized code, because
    // their loads can still reject a short packet.)
    if let Some(e) = dag.optimizer_error(root) {
        return Err(e);
    }
    if optimize && !reaches_match(&dag, root) {
        return Err(CompileError::RejectsAll);
    }
    Ok(Plan { dag, root })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcapc::dag::reachable_order;

    fn parse(s: &str) -> Expr {
        crate::pcapc::parse(s).unwrap().unwrap()
    }

    fn ethernet_plan(s: &str) -> Result<Plan, CompileError> {
        plan(
            Some(&parse(s)),
            LinkType::Ethernet,
            &FilterEnv::default(),
            0xffff,
        )
    }

    #[test]
    fn a_path_that_decides_a_test_skips_it() {
        // after `ip` held, `ip` again is true; after `arp` held, `ip` is false
        let s = "(ip or arp) and ip";
        let p = ethernet_plan(s).unwrap();
        assert_eq!(reachable_order(&p.dag, p.root).len(), 2);
        // the fallback knows only the facts of every path into `ip`: it tests it again
        let b = Lowering::new(LinkType::Ethernet, Some(0))
            .expr(&parse(s))
            .unwrap();
        let mut dag = Dag::new(true, 0xffff);
        let root = gen_shared(&mut dag, &b, MATCH, REJECT, &Vec::new()).unwrap();
        assert_eq!(reachable_order(&dag, root).len(), 3);
    }

    #[test]
    fn reports_what_pcap_compile_reports() {
        assert!(matches!(
            ethernet_plan("ip and arp"),
            Err(CompileError::RejectsAll)
        ));
        // an optimizer error counts only on a test that stays reachable
        assert!(matches!(
            ethernet_plan("(igmp[46:1] / (ip[2] * 0) != 3) or tcp"),
            Err(CompileError::DivisionByZero)
        ));
        assert!(ethernet_plan("(igmp[46:1] / (ip[2] * 0) != 3) or ip").is_ok());
        // `protochain` turns libpcap's optimizer off, and with it the report
        assert!(ethernet_plan("ip and arp and ip protochain 6").is_ok());
    }
}
