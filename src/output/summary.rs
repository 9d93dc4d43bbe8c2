//! `--summary`: what a run saw, printed once at exit: drops by reason and function with
//! counts, then packets seen, events, lost events and missed probe hits (table or one JSON object).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use crate::events::Event;

use super::json::JsonObject;
use super::text::{pad_from, push_dec};
use super::Names;

/// Counts taken from every printed event; the kernel's counts come in at the end.
#[derive(Debug, Default)]
pub struct Summary {
    events: u64,
    /// Distinct skb addresses (a freed skb's address can come back for a new packet, so
    /// this is a lower bound on packets).
    packets: HashSet<u64>,
    /// (drop reason name, function) -> drops.
    drops: BTreeMap<(String, String), u64>,
}

/// What only the kernel knows at exit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelCounts {
    /// Records the ring buffer had no room for.
    pub lost_events: u64,
    /// Probe runs the kernel skipped, by program: (program, its `recursion_misses`), for
    /// every program we loaded.
    pub missed: Vec<(String, u64)>,
}

impl KernelCounts {
    /// Probe runs the kernel skipped, all programs together.
    pub fn missed_hits(&self) -> u64 {
        self.missed.iter().map(|(_, n)| n).sum()
    }

    /// The programs that missed runs, with how many.
    fn missing(&self) -> impl Iterator<Item = (&str, u64)> {
        self.missed
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| (name.as_str(), *n))
    }

    /// One line per program that missed runs: `N probe hits missed (recursion) in PROG`
    /// (no newline), in the order of [`KernelCounts::missed`].
    pub fn missed_hit_lines(&self) -> Vec<String> {
        self.missing()
            .map(|(name, n)| format!("{n} probe hits missed (recursion) in {name}"))
            .collect()
    }
}

/// Reasons that end a packet's life without a drop (`consume_skb`'s `SKB_CONSUMED`).
fn is_consumed(reason: &str) -> bool {
    reason.ends_with("SKB_CONSUMED")
}

impl Summary {
    /// Counts `ev`, whose function is `func` and whose drop reason (if any) is `reason`.
    pub fn observe(&mut self, names: &Names, ev: &Event, func: &str, reason: Option<u64>) {
        self.events += 1;
        self.packets.insert(ev.skb_addr);
        let Some(reason) = reason else { return };
        let reason = match names.drop_reasons.get(&reason) {
            Some(name) if is_consumed(name) => return,
            Some(name) => name.clone(),
            None => reason.to_string(),
        };
        let func = if func.is_empty() {
            format!("{:#x}", ev.probe_addr)
        } else {
            func.to_string()
        };
        *self.drops.entry((reason, func)).or_default() += 1;
    }

    /// Drops counted so far.
    pub fn dropped(&self) -> u64 {
        self.drops.values().sum()
    }

    /// The drops, most frequent first (then by reason and function).
    fn drops_by_count(&self) -> Vec<(&str, &str, u64)> {
        let mut rows: Vec<_> = self
            .drops
            .iter()
            .map(|((reason, func), n)| (reason.as_str(), func.as_str(), *n))
            .collect();
        rows.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (a.0, a.1).cmp(&(b.0, b.1))));
        rows
    }

    /// The table: a DROPS/REASON/FUNCTION block (or "no drops"), then one line of totals.
    /// Then a line per program that missed runs ([`KernelCounts::missed_hit_lines`]).
    pub fn push_table(&self, kernel: &KernelCounts, out: &mut String) {
        out.push_str("\nSummary:\n");
        let rows = self.drops_by_count();
        if rows.is_empty() {
            out.push_str("No drops.\n");
        } else {
            let reason_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(6);
            let col = |out: &mut String, text: &str, width: usize| {
                let start = out.len();
                out.push_str(text);
                pad_from(out, start, width);
            };
            out.push_str("   DROPS  ");
            col(out, "REASON", reason_width);
            out.push_str("  FUNCTION\n");
            for (reason, func, n) in rows {
                let _ = write!(out, "{n:>8}  ");
                col(out, reason, reason_width);
                out.push_str("  ");
                out.push_str(func);
                out.push('\n');
            }
        }
        push_dec(out, self.packets.len() as u64);
        out.push_str(" packets, ");
        push_dec(out, self.events);
        out.push_str(" events, ");
        push_dec(out, self.dropped());
        out.push_str(" drops, ");
        push_dec(out, kernel.lost_events);
        out.push_str(" lost events, ");
        push_dec(out, kernel.missed_hits());
        out.push_str(" missed hits\n");
        for line in kernel.missed_hit_lines() {
            out.push_str(&line);
            out.push('\n');
        }
    }

    /// One JSON line: `{"summary":{"packets":…,"events":…,"drops":[{"reason":…,"func":…,"count":…}],…}}`;
    /// `missed_by_program` (`[{"program":…,"count":…}]`) lists the programs that missed runs.
    pub fn push_json(&self, kernel: &KernelCounts, out: &mut String) {
        let mut top = JsonObject::begin(out);
        let mut obj = top.object("summary");
        obj.always_num("packets", self.packets.len() as u64);
        obj.always_num("events", self.events);
        obj.always_num("lost_events", kernel.lost_events);
        obj.always_num("missed_hits", kernel.missed_hits());
        let mut drops = obj.array("drops");
        for (reason, func, n) in self.drops_by_count() {
            let mut row = drops.object();
            row.str("reason", reason);
            row.str("func", func);
            row.always_num("count", n);
            row.end();
        }
        drops.end();
        if kernel.missing().next().is_some() {
            let mut missed = obj.array("missed_by_program");
            for (name, n) in kernel.missing() {
                let mut row = missed.object();
                row.str("program", name);
                row.always_num("count", n);
                row.end();
            }
            missed.end();
        }
        obj.end();
        top.end();
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        let mut names = Names::default();
        names.drop_reasons.insert(1, "SKB_CONSUMED".into());
        names
            .drop_reasons
            .insert(2, "SKB_DROP_REASON_NOT_SPECIFIED".into());
        names
            .drop_reasons
            .insert(6, "SKB_DROP_REASON_NETFILTER_DROP".into());
        names
    }

    fn event(skb: u64) -> Event {
        Event {
            skb_addr: skb,
            probe_addr: 0xffff_ffff_8100_0000,
            ..Event::default()
        }
    }

    /// Three packets: two dropped by netfilter, one consumed, one unnamed reason.
    fn sample() -> Summary {
        let names = names();
        let mut s = Summary::default();
        let cases: &[(u64, &str, Option<u64>)] = &[
            (0xa, "ip_rcv", None),
            (0xa, "kfree_skb_reason", Some(6)),
            (0xb, "ip_rcv", None),
            (0xb, "skb:kfree_skb", Some(6)),
            (0xc, "kfree_skb_reason", Some(1)),
            (0xc, "kfree_skb_reason", Some(6)),
            (0xc, "", Some(99)),
        ];
        for &(skb, func, reason) in cases {
            s.observe(&names, &event(skb), func, reason);
        }
        s
    }

    #[test]
    fn drops_are_counted_by_reason_and_function_and_consumed_is_not_a_drop() {
        let s = sample();
        assert_eq!(s.events, 7);
        assert_eq!(s.packets.len(), 3);
        assert_eq!(s.dropped(), 4);
        assert_eq!(
            s.drops_by_count(),
            vec![
                ("SKB_DROP_REASON_NETFILTER_DROP", "kfree_skb_reason", 2),
                ("99", "0xffffffff81000000", 1),
                ("SKB_DROP_REASON_NETFILTER_DROP", "skb:kfree_skb", 1),
            ]
        );
    }

    #[test]
    fn table_lists_drops_then_totals() {
        let mut out = String::new();
        sample().push_table(
            &KernelCounts {
                lost_events: 5,
                missed: vec![("kprobe_skb_1".into(), 1), ("untrack".into(), 0)],
            },
            &mut out,
        );
        let want = "
Summary:
   DROPS  REASON                          FUNCTION
       2  SKB_DROP_REASON_NETFILTER_DROP  kfree_skb_reason
       1  99                              0xffffffff81000000
       1  SKB_DROP_REASON_NETFILTER_DROP  skb:kfree_skb
3 packets, 7 events, 4 drops, 5 lost events, 1 missed hits
1 probe hits missed (recursion) in kprobe_skb_1
";
        assert_eq!(out, want);
    }

    #[test]
    fn table_without_drops_says_so() {
        let mut out = String::new();
        Summary::default().push_table(&KernelCounts::default(), &mut out);
        assert_eq!(
            out,
            "\nSummary:\nNo drops.\n0 packets, 0 events, 0 drops, 0 lost events, 0 missed hits\n"
        );
    }

    #[test]
    fn json_is_one_object_with_every_count() {
        let mut out = String::new();
        sample().push_json(
            &KernelCounts {
                lost_events: 0,
                missed: vec![("kp".into(), 2), ("tp".into(), 0)],
            },
            &mut out,
        );
        assert_eq!(
            out,
            concat!(
                r#"{"summary":{"packets":3,"events":7,"lost_events":0,"missed_hits":2,"drops":["#,
                r#"{"reason":"SKB_DROP_REASON_NETFILTER_DROP","func":"kfree_skb_reason","count":2},"#,
                r#"{"reason":"99","func":"0xffffffff81000000","count":1},"#,
                r#"{"reason":"SKB_DROP_REASON_NETFILTER_DROP","func":"skb:kfree_skb","count":1}],"#,
                r#""missed_by_program":[{"program":"kp","count":2}]}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn missed_hits_are_summed_and_listed_per_program_with_misses() {
        /// (program, misses) of each program; the total; the lines printed.
        type Case<'a> = (&'a [(&'a str, u64)], u64, &'a [&'a str]);
        let table: &[Case] = &[
            (&[], 0, &[]),
            (&[("kprobe_skb_1", 0), ("untrack", 0)], 0, &[]),
            (
                &[
                    ("kprobe_skb_1", 12),
                    ("untrack", 0),
                    ("pwru_tc_entry on cil_from_netdev", 3),
                ],
                15,
                &[
                    "12 probe hits missed (recursion) in kprobe_skb_1",
                    "3 probe hits missed (recursion) in pwru_tc_entry on cil_from_netdev",
                ],
            ),
        ];
        for &(missed, total, lines) in table {
            let kernel = KernelCounts {
                lost_events: 0,
                missed: missed.iter().map(|&(p, n)| (p.to_string(), n)).collect(),
            };
            assert_eq!(kernel.missed_hits(), total, "{missed:?}");
            assert_eq!(kernel.missed_hit_lines(), lines, "{missed:?}");
        }
    }
}
