//! `--output-journey`: events grouped by packet (skb). Each packet prints once, as one block
//! (or one JSON object), when its life ends: its tuple, the functions in order with the time
//! between steps, and where it ended (dropped with a reason, delivered, transmitted, freed).

use std::fmt::Write as _;

use super::json::JsonObject;
use super::text::push_hex_prefixed;
use crate::fasthash::FastMap;

/// How long (event or clock time) an ended journey waits for the rest of its free path (e.g.
/// `kfree_skbmem` after `consume_skb`) before it is printed.
const END_GRACE_NS: u64 = 50_000_000;
/// How long an ended journey waits for its clones' journeys to end too (so that they print
/// inside its block) before it prints without them; they then print on their own.
const CLONE_WAIT_NS: u64 = 1_000_000_000;

/// One event of a packet, as the journey sees it.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub skb: u64,
    pub ktime_ns: u64,
    /// The function's plain name (kallsyms or tracepoint), for classification.
    pub key: &'a str,
    /// FUNC as the table prints it (with the drop reason).
    pub func: &'a str,
    /// The `enum skb_drop_reason` name, when the event carries one.
    pub reason: Option<&'a str>,
    /// `saddr:sport->daddr:dport(proto)`, when the probe parsed one.
    pub tuple: Option<&'a str>,
    /// The skb this one was cloned or copied from, when the probes followed the clone.
    pub parent: Option<u64>,
}

/// How a packet's life ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Dropped { func: String, reason: String },
    Delivered { func: String },
    Transmitted { func: String },
    Freed { func: String },
    InFlight,
}

impl End {
    fn kind(&self) -> &'static str {
        match self {
            End::Dropped { .. } => "dropped",
            End::Delivered { .. } => "delivered",
            End::Transmitted { .. } => "transmitted",
            End::Freed { .. } => "freed",
            End::InFlight => "in flight at exit",
        }
    }

    fn func(&self) -> &str {
        match self {
            End::Dropped { func, .. }
            | End::Delivered { func }
            | End::Transmitted { func }
            | End::Freed { func } => func,
            End::InFlight => "",
        }
    }
}

#[derive(Debug)]
struct Journey {
    skb: u64,
    tuple: Option<String>,
    /// (FUNC, event time).
    steps: Vec<(String, u64)>,
    /// Set at the step that ended it; later free-path steps still join.
    end: Option<End>,
    /// The last socket or device step (the later one wins).
    handed_to: Option<End>,
    /// The skb this one was cloned or copied from (followed with `--filter-track-skb`).
    parent: Option<u64>,
    /// Its clones whose journeys are still open.
    open_clones: Vec<u64>,
    /// Its clones whose journeys ended: printed inside its block.
    clones: Vec<Journey>,
}

impl Journey {
    fn start(&self) -> u64 {
        self.steps.first().map_or(0, |s| s.1)
    }

    fn ended_before(&self, newest_ns: u64) -> bool {
        self.end.is_some()
            && self
                .steps
                .last()
                .is_some_and(|&(_, t)| newest_ns.saturating_sub(t) > END_GRACE_NS)
    }
}

/// Functions and tracepoints that free an skb: the last step of its life.
const FREE_FUNCS: &[&str] = &[
    "kfree_skb",
    "kfree_skb_reason",
    "sk_skb_reason_drop",
    "kfree_skb_list_reason",
    "consume_skb",
    "__kfree_skb",
    "kfree_skbmem",
    "napi_consume_skb",
    "__napi_kfree_skb",
    "__dev_kfree_skb_any",
    "__dev_kfree_skb_irq",
    "dev_kfree_skb_any_reason",
    "dev_kfree_skb_irq_reason",
    "skb:kfree_skb",
    "skb:consume_skb",
];

/// Steps that hand the packet to a socket.
const SOCKET_FUNCS: &[&str] = &[
    "sock_queue_rcv_skb_reason",
    "__sock_queue_rcv_skb",
    "sock_queue_rcv_skb",
    "__udp_enqueue_schedule_skb",
    "tcp_queue_rcv",
    "tcp_data_queue",
    "skb_copy_datagram_iter",
    "skb:skb_copy_datagram_iovec",
    "sock_def_readable",
    "unix_stream_sendmsg",
];

/// Steps that hand the packet to a device driver.
const DEVICE_FUNCS: &[&str] = &[
    "dev_hard_start_xmit",
    "xmit_one",
    "net:net_dev_start_xmit",
    "net:net_dev_xmit",
];

/// Whether `key` belongs to freeing an skb (a step after the end joins the journey).
fn is_free_path(key: &str) -> bool {
    ["free", "consume", "release", "destruct", "skb_orphan"]
        .iter()
        .any(|part| key.contains(part))
}

/// Open journeys by skb address, and the newest event time seen.
#[derive(Debug)]
pub struct Journeys {
    open: FastMap<u64, Journey>,
    newest_ns: u64,
    json: bool,
}

impl Journeys {
    pub fn new(json: bool) -> Self {
        Self {
            open: FastMap::default(),
            newest_ns: 0,
            json,
        }
    }

    /// Adds `step` to its packet's journey; writes to `out` the journey it replaces (an
    /// skb address freed and used again for a new packet).
    pub fn observe(&mut self, step: Step<'_>, out: &mut String) {
        self.newest_ns = self.newest_ns.max(step.ktime_ns);
        let ended_before = self
            .open
            .get(&step.skb)
            .is_some_and(|j| j.end.is_some() && !is_free_path(step.key));
        if ended_before {
            self.close(&[step.skb], out);
        }
        if !self.open.contains_key(&step.skb) {
            let parent = step.parent.filter(|p| *p != step.skb);
            if let Some(p) = parent.and_then(|p| self.open.get_mut(&p)) {
                p.open_clones.push(step.skb);
            }
            self.open.insert(
                step.skb,
                Journey {
                    skb: step.skb,
                    tuple: None,
                    steps: Vec::new(),
                    end: None,
                    handed_to: None,
                    parent,
                    open_clones: Vec::new(),
                    clones: Vec::new(),
                },
            );
        }
        let journey = self.open.get_mut(&step.skb).expect("inserted above");
        if journey.tuple.is_none() {
            journey.tuple = step.tuple.map(str::to_string);
        }
        journey.steps.push((step.func.to_string(), step.ktime_ns));
        if journey.end.is_some() {
            return;
        }
        if SOCKET_FUNCS.contains(&step.key) {
            journey.handed_to = Some(End::Delivered {
                func: step.key.to_string(),
            });
        } else if DEVICE_FUNCS.contains(&step.key) {
            journey.handed_to = Some(End::Transmitted {
                func: step.key.to_string(),
            });
        }
        let consumed = step.reason.is_some_and(|r| r.ends_with("SKB_CONSUMED"));
        journey.end = match step.reason {
            Some(reason) if !consumed => Some(End::Dropped {
                func: step.key.to_string(),
                reason: reason.to_string(),
            }),
            _ if consumed || FREE_FUNCS.contains(&step.key) => {
                Some(journey.handed_to.clone().unwrap_or(End::Freed {
                    func: step.key.to_string(),
                }))
            }
            _ => None,
        };
    }

    /// Writes the journeys that ended more than the grace time ago: event time, or
    /// `now_ns` (`CLOCK_MONOTONIC`, the probes' `bpf_ktime_get_ns` clock) when later, so
    /// that a quiet trace prints a packet's journey without waiting for the next event.
    /// A clone's journey joins its packet's block instead while that one is open; a
    /// packet waits for its open clones up to [`CLONE_WAIT_NS`].
    pub fn flush_ended(&mut self, now_ns: u64, out: &mut String) {
        let newest = self.newest_ns.max(now_ns);
        let done: Vec<u64> = self
            .open
            .values()
            .filter(|j| {
                j.ended_before(newest)
                    && (j.open_clones.is_empty()
                        || j.steps
                            .last()
                            .is_some_and(|&(_, t)| newest.saturating_sub(t) > CLONE_WAIT_NS))
            })
            .map(|j| j.skb)
            .collect();
        self.close(&done, out);
    }

    /// Writes every journey (at exit): the unfinished ones as in flight, clones inside
    /// their packet's block when it is open.
    pub fn finish(&mut self, out: &mut String) {
        let all: Vec<u64> = self.open.keys().copied().collect();
        self.close(&all, out);
    }

    /// Closes the journeys of `skbs`: each joins its packet's block when that one is
    /// open (latest started first, so that clones of clones nest), the others are
    /// written in the order they started.
    fn close(&mut self, skbs: &[u64], out: &mut String) {
        let mut order: Vec<(u64, u64)> = skbs
            .iter()
            .filter_map(|s| self.open.get(s).map(|j| (j.start(), j.skb)))
            .collect();
        order.sort_by_key(|&(start, skb)| (std::cmp::Reverse(start), skb));
        let mut roots = Vec::new();
        for (_, skb) in order {
            let Some(mut j) = self.open.remove(&skb) else {
                continue;
            };
            j.clones.sort_by_key(|c| (c.start(), c.skb));
            match j.parent.and_then(|p| self.open.get_mut(&p)) {
                Some(parent) => {
                    parent.open_clones.retain(|c| *c != j.skb);
                    parent.clones.push(j);
                }
                None => roots.push(j),
            }
        }
        roots.sort_by_key(|j| (j.start(), j.skb));
        for j in &roots {
            self.render(j, out);
        }
    }

    fn render(&self, j: &Journey, out: &mut String) {
        if self.json {
            let mut obj = JsonObject::begin(out);
            render_json(j, &mut obj);
            obj.end();
            out.push('\n');
        } else {
            render_table(j, "", out);
            out.push('\n');
        }
    }
}

/// `+12.345us`: the time since the previous step.
fn push_delta(out: &mut String, ns: u64) {
    let _ = write!(out, "+{}.{:03}us", ns / 1000, ns % 1000);
}

/// ```text
/// 0xffff888104bd1ce0 10.0.0.1:43682->10.0.0.2:8080(tcp)
///       +0.000us  ip_local_out
///       +1.234us  kfree_skb_reason(SKB_DROP_REASON_NETFILTER_DROP)
///   dropped by kfree_skb_reason: SKB_DROP_REASON_NETFILTER_DROP
/// ```
///
/// Its clones' journeys follow inside the block, indented, each headed `clone 0x…`;
/// a clone printed on its own (its packet's block was written before it ended) says
/// `(clone of 0x…)` after its tuple.
fn render_table(j: &Journey, indent: &str, out: &mut String) {
    out.push_str(indent);
    if !indent.is_empty() {
        out.push_str("clone ");
    }
    push_hex_prefixed(out, j.skb);
    if let Some(tuple) = &j.tuple {
        out.push(' ');
        out.push_str(tuple);
    }
    if let (Some(p), true) = (j.parent, indent.is_empty()) {
        out.push_str(" (clone of ");
        push_hex_prefixed(out, p);
        out.push(')');
    }
    out.push('\n');
    let mut prev = j.start();
    for (func, t) in &j.steps {
        let mut delta = String::new();
        push_delta(&mut delta, t.saturating_sub(prev));
        let _ = writeln!(out, "{indent}  {delta:>14}  {func}");
        prev = *t;
    }
    let end = j.end.clone().unwrap_or(End::InFlight);
    out.push_str(indent);
    out.push_str("  ");
    out.push_str(end.kind());
    match &end {
        End::Dropped { func, reason } => {
            let _ = write!(out, " by {func}: {reason}");
        }
        End::InFlight => {}
        other => {
            let _ = write!(out, " ({})", other.func());
        }
    }
    out.push('\n');
    let nested = format!("{indent}    ");
    for c in &j.clones {
        render_table(c, &nested, out);
    }
}

/// `{"skb":…,"clone_of":…,"tuple":…,"steps":[{"func":…,"time":…,"delta_ns":…}],"end":…,
/// "end_func":…,"drop_reason":…,"clones":[…]}` (`clone_of` for a clone, `clones` with the
/// journeys of its clones, each such an object).
fn render_json(j: &Journey, obj: &mut JsonObject<'_>) {
    let mut skb = String::new();
    push_hex_prefixed(&mut skb, j.skb);
    obj.str("skb", &skb);
    if let Some(p) = j.parent {
        skb.clear();
        push_hex_prefixed(&mut skb, p);
        obj.str("clone_of", &skb);
    }
    if let Some(tuple) = &j.tuple {
        obj.str("tuple", tuple);
    }
    let mut steps = obj.array("steps");
    let mut prev = j.start();
    for (func, t) in &j.steps {
        let mut step = steps.object();
        step.str("func", func);
        step.always_num("time", *t);
        step.always_num("delta_ns", t.saturating_sub(prev));
        step.end();
        prev = *t;
    }
    steps.end();
    let end = j.end.clone().unwrap_or(End::InFlight);
    obj.str("end", end.kind());
    obj.str("end_func", end.func());
    if let End::Dropped { reason, .. } = &end {
        obj.str("drop_reason", reason);
    }
    if !j.clones.is_empty() {
        let mut clones = obj.array("clones");
        for c in &j.clones {
            let mut o = clones.object();
            render_json(c, &mut o);
            o.end();
        }
        clones.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DROP: &str = "SKB_DROP_REASON_NETFILTER_DROP";

    fn step<'a>(skb: u64, t: u64, key: &'a str, reason: Option<&'a str>) -> Step<'a> {
        Step {
            skb,
            ktime_ns: t,
            key,
            func: key,
            reason,
            tuple: Some("10.0.0.1:1->10.0.0.2:8080(tcp)"),
            parent: None,
        }
    }

    fn run(table: bool, steps: &[Step<'_>]) -> (String, String) {
        let mut j = Journeys::new(!table);
        let mut during = String::new();
        for s in steps {
            j.observe(*s, &mut during);
        }
        let mut at_exit = String::new();
        j.finish(&mut at_exit);
        (during, at_exit)
    }

    #[test]
    fn a_dropped_packet_is_one_block_ending_in_its_reason() {
        let (during, at_exit) = run(
            true,
            &[
                step(0xa, 1_000, "ip_local_out", None),
                step(0xa, 2_500, "nf_hook_slow", None),
                step(0xa, 3_000, "kfree_skb_reason", Some(DROP)),
                step(0xa, 3_100, "kfree_skbmem", None),
            ],
        );
        assert_eq!(during, "");
        assert_eq!(
            at_exit,
            "0xa 10.0.0.1:1->10.0.0.2:8080(tcp)\n\
             \x20       +0.000us  ip_local_out\n\
             \x20       +1.500us  nf_hook_slow\n\
             \x20       +0.500us  kfree_skb_reason\n\
             \x20       +0.100us  kfree_skbmem\n\
             \x20 dropped by kfree_skb_reason: SKB_DROP_REASON_NETFILTER_DROP\n\n"
        );
    }

    #[test]
    fn ends_are_classified_by_the_last_socket_or_device_step() {
        let table: &[(&[&str], &str)] = &[
            (
                &["ip_rcv", "tcp_v4_rcv", "tcp_data_queue", "__kfree_skb"],
                "delivered (tcp_data_queue)",
            ),
            (
                &["ip_output", "dev_hard_start_xmit", "consume_skb"],
                "transmitted (dev_hard_start_xmit)",
            ),
            (&["ip_rcv", "skb:consume_skb"], "freed (skb:consume_skb)"),
            (&["ip_rcv", "ip_rcv_finish"], "in flight at exit"),
        ];
        for (funcs, want) in table {
            let steps: Vec<_> = funcs
                .iter()
                .enumerate()
                .map(|(i, f)| step(0xb, i as u64 * 10, f, None))
                .collect();
            let (_, out) = run(true, &steps);
            let last = out.trim_end().lines().last().unwrap();
            assert_eq!(last, format!("  {want}"), "{funcs:?}");
        }
        // SKB_CONSUMED is not a drop.
        let (_, out) = run(
            true,
            &[step(0xc, 1, "kfree_skb_reason", Some("SKB_CONSUMED"))],
        );
        assert!(out.ends_with("  freed (kfree_skb_reason)\n\n"), "{out}");
    }

    #[test]
    fn a_reused_address_starts_a_new_journey_and_prints_the_old_one() {
        let (during, at_exit) = run(
            true,
            &[
                step(0xa, 10, "ip_rcv", None),
                step(0xa, 20, "consume_skb", None),
                step(0xa, 30, "skb_release_data", None),
                step(0xa, 40, "ip_output", None),
            ],
        );
        assert!(
            during.contains("skb_release_data\n  freed (consume_skb)\n"),
            "{during}"
        );
        assert!(
            at_exit.contains("ip_output\n  in flight at exit\n"),
            "{at_exit}"
        );
    }

    #[test]
    fn ended_journeys_print_after_the_grace_time_in_start_order() {
        let mut j = Journeys::new(false);
        let mut out = String::new();
        j.observe(step(0x2, 100, "ip_rcv", None), &mut out);
        j.observe(step(0x2, 200, "skb:kfree_skb", Some(DROP)), &mut out);
        j.observe(step(0x1, 150, "ip_rcv", None), &mut out);
        j.observe(step(0x1, 250, "skb:consume_skb", None), &mut out);
        j.flush_ended(0, &mut out);
        assert_eq!(out, "", "within the grace time");
        j.observe(step(0x3, END_GRACE_NS + 1_000, "ip_rcv", None), &mut out);
        j.flush_ended(0, &mut out);
        let firsts: Vec<&str> = out.lines().filter(|l| l.starts_with("0x")).collect();
        assert_eq!(firsts.len(), 2, "{out}");
        assert!(
            firsts[0].starts_with("0x2 ") && firsts[1].starts_with("0x1 "),
            "{out}"
        );
        let mut rest = String::new();
        j.finish(&mut rest);
        assert!(rest.starts_with("0x3 ") && rest.contains("in flight at exit"));
    }

    fn clone_step<'a>(skb: u64, parent: u64, t: u64, key: &'a str) -> Step<'a> {
        Step {
            parent: Some(parent),
            ..step(skb, t, key, None)
        }
    }

    #[test]
    fn a_clone_prints_inside_its_packets_block() {
        let (during, at_exit) = run(
            true,
            &[
                step(0xa, 1_000, "__dev_queue_xmit", None),
                clone_step(0xc, 0xa, 2_000, "packet_rcv"),
                step(0xa, 3_000, "dev_hard_start_xmit", None),
                clone_step(0xc, 0xa, 4_000, "consume_skb"),
                step(0xa, 5_000, "consume_skb", None),
            ],
        );
        assert_eq!(during, "");
        assert_eq!(
            at_exit,
            "0xa 10.0.0.1:1->10.0.0.2:8080(tcp)\n\
             \x20       +0.000us  __dev_queue_xmit\n\
             \x20       +2.000us  dev_hard_start_xmit\n\
             \x20       +2.000us  consume_skb\n\
             \x20 transmitted (dev_hard_start_xmit)\n\
             \x20   clone 0xc 10.0.0.1:1->10.0.0.2:8080(tcp)\n\
             \x20           +0.000us  packet_rcv\n\
             \x20           +2.000us  consume_skb\n\
             \x20     freed (consume_skb)\n\n"
        );
    }

    #[test]
    fn a_packet_waits_for_its_clones_then_prints_without_them() {
        let mut j = Journeys::new(false);
        let mut out = String::new();
        j.observe(step(0xa, 100, "ip_output", None), &mut out);
        j.observe(clone_step(0xc, 0xa, 200, "packet_rcv"), &mut out);
        j.observe(step(0xa, 300, "consume_skb", None), &mut out);
        // the clone is still open: its packet waits for it
        j.flush_ended(300 + END_GRACE_NS + 1, &mut out);
        assert_eq!(out, "");
        j.flush_ended(300 + CLONE_WAIT_NS + 1, &mut out);
        assert!(out.starts_with("0xa ") && !out.contains("clone"), "{out}");
        out.clear();
        // the clone then ends on its own, naming its packet
        j.observe(
            clone_step(0xc, 0xa, CLONE_WAIT_NS + 500, "consume_skb"),
            &mut out,
        );
        j.finish(&mut out);
        assert!(
            out.starts_with("0xc 10.0.0.1:1->10.0.0.2:8080(tcp) (clone of 0xa)\n"),
            "{out}"
        );
    }

    #[test]
    fn json_nests_clones_in_their_packets_object() {
        let (_, out) = run(
            false,
            &[
                step(0xa, 1_000, "ip_output", None),
                clone_step(0xc, 0xa, 2_000, "kfree_skbmem"),
                step(0xa, 3_000, "kfree_skbmem", None),
            ],
        );
        assert_eq!(out.lines().count(), 1, "{out}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["skb"], "0xa");
        assert_eq!(v["clones"][0]["skb"], "0xc");
        assert_eq!(v["clones"][0]["clone_of"], "0xa");
        assert_eq!(v["clones"][0]["end"], "freed");
    }

    #[test]
    fn a_quiet_trace_prints_ended_journeys_by_the_clock() {
        let mut j = Journeys::new(false);
        let mut out = String::new();
        j.observe(step(0x2, 100, "ip_rcv", None), &mut out);
        j.observe(step(0x2, 200, "skb:kfree_skb", Some(DROP)), &mut out);
        j.flush_ended(200 + END_GRACE_NS / 2, &mut out);
        assert_eq!(out, "", "within the grace time");
        // no later event: the clock moves on
        j.flush_ended(200 + END_GRACE_NS + 1, &mut out);
        assert!(out.starts_with("0x2 "), "{out}");
    }

    #[test]
    fn json_is_one_object_per_packet() {
        let (_, out) = run(
            false,
            &[
                step(0xa, 1_000, "ip_local_out", None),
                step(0xa, 3_000, "kfree_skb_reason", Some(DROP)),
            ],
        );
        assert_eq!(
            out,
            concat!(
                r#"{"skb":"0xa","tuple":"10.0.0.1:1->10.0.0.2:8080(tcp)","steps":["#,
                r#"{"func":"ip_local_out","time":1000,"delta_ns":0},"#,
                r#"{"func":"kfree_skb_reason","time":3000,"delta_ns":2000}],"#,
                r#""end":"dropped","end_func":"kfree_skb_reason","drop_reason":"SKB_DROP_REASON_NETFILTER_DROP"}"#,
                "\n"
            )
        );
    }
}
