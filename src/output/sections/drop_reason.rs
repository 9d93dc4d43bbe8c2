//! The drop reason of `kfree_skb_reason`-like functions and the `skb:kfree_skb` tracepoint,
//! printed inside FUNC as `kfree_skb_reason(SKB_DROP_REASON_X)` (or `(N)` when unnamed),
//! and as JSON `drop_reason` besides `func`. The probe header records it (the arguments,
//! and a tracepoint's reason argument).

use crate::events::{Event, RecordPart};
use crate::output::json::JsonObject;
use crate::output::text::push_dec;
use crate::output::{Names, OutputOptions};
use crate::probes::event::{off, EVENT_SIZE, FLAG_DROP_REASON};
use crate::probes::ProbeError;

use super::{Cx, JsonAt, RecordSection, RecordStage, Section, TableAt};

/// The `enum skb_drop_reason` a tracepoint program read itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropReason(pub u64);

impl RecordPart for DropReason {
    const FLAG: u16 = FLAG_DROP_REASON;
    fn read(fixed: &[u8; EVENT_SIZE]) -> Self {
        DropReason(u64::from_ne_bytes(
            fixed[off::DROP_REASON..off::DROP_REASON + 8]
                .try_into()
                .expect("8 bytes"),
        ))
    }
    fn write(&self, fixed: &mut [u8; EVENT_SIZE]) {
        fixed[off::DROP_REASON..off::DROP_REASON + 8].copy_from_slice(&self.0.to_ne_bytes());
    }
}

/// The drop reason to show for `ev` when its function is `func`, whose
/// `enum skb_drop_reason` parameter (from BTF) is at `reason_arg` (1-based): the reason
/// the program read itself, else the 2nd or 3rd argument it recorded. Without BTF
/// knowledge, pwru's two functions: `kfree_skb_reason` (2nd) and `sk_skb_reason_drop` (3rd).
pub fn drop_reason_for(ev: &Event, func: &str, reason_arg: Option<u16>) -> Option<u64> {
    if let Some(DropReason(r)) = ev.get::<DropReason>() {
        return Some(r);
    }
    let arg = reason_arg.or(match func {
        "kfree_skb_reason" => Some(2),
        "sk_skb_reason_drop" => Some(3),
        _ => None,
    });
    match arg {
        Some(2) => ev.args.map(|a| a.second),
        Some(3) => ev.args.map(|a| a.third),
        _ => None,
    }
}

/// The section (always on).
#[derive(Debug)]
pub struct DropReasonSection;

impl RecordSection for DropReasonSection {
    /// Nothing: the header has it (`probes::record`).
    fn emit(&self, _r: &mut RecordStage<'_>) -> Result<(), ProbeError> {
        Ok(())
    }
}

impl Section for DropReasonSection {
    fn from_options(_opts: &OutputOptions) -> Option<Self> {
        Some(DropReasonSection)
    }
    fn records(&self) -> bool {
        false
    }
    fn table_at(&self) -> &'static [TableAt] {
        &[TableAt::Func]
    }
    fn json_at(&self) -> &'static [JsonAt] {
        &[JsonAt::Func]
    }
    fn func(&self, names: &Names, ev: &Event, name: &str, func: &mut String) {
        if let Some(reason) = names.drop_reason(ev, name) {
            match names.drop_reasons.get(&reason) {
                Some(reason) => {
                    func.push('(');
                    func.push_str(reason);
                    func.push(')');
                }
                None => {
                    func.push_str(" (");
                    push_dec(func, reason);
                    func.push(')');
                }
            }
        }
    }
    fn json(&self, _at: JsonAt, cx: &mut Cx<'_>, ev: &Event, obj: &mut JsonObject<'_>) {
        let mut value = std::mem::take(cx.scratch);
        Self::json_value(cx.names, ev, &mut value);
        obj.str("drop_reason", &value);
        *cx.scratch = value;
    }
}

impl DropReasonSection {
    /// `"drop_reason"`: the reason's name as FUNC shows it (`SKB_DROP_REASON_NETFILTER_DROP`),
    /// or its number as a string when BTF does not name it; left out without a reason.
    fn json_value(names: &Names, ev: &Event, out: &mut String) {
        if ev.args.is_none() && ev.get::<DropReason>().is_none() {
            return;
        }
        let Some(reason) = names.drop_reason(ev, names.probe_key(ev).unwrap_or("")) else {
            return;
        };
        match names.drop_reasons.get(&reason) {
            Some(name) => out.push_str(name),
            None => push_dec(out, reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::NextArgs;

    #[test]
    fn drop_reason_source_depends_on_function() {
        let mut ev = Event {
            args: Some(NextArgs {
                second: 2,
                third: 3,
            }),
            ..Event::default()
        };
        let table = [
            ("kfree_skb_reason", Some(2)),
            ("sk_skb_reason_drop", Some(3)),
            ("ip_rcv", None),
        ];
        for (func, want) in table {
            assert_eq!(drop_reason_for(&ev, func, None), want, "{func}");
        }
        // BTF knowledge wins: a function with its reason as 3rd argument.
        assert_eq!(drop_reason_for(&ev, "tcp_drop_reason", Some(3)), Some(3));
        assert_eq!(drop_reason_for(&ev, "ip_rcv", Some(5)), None);
        ev.set(Some(DropReason(9)));
        assert_eq!(drop_reason_for(&ev, "skb:kfree_skb", None), Some(9));
    }

    #[test]
    fn json_value_is_the_name_func_shows_or_the_number() {
        let mut names = Names {
            ksyms: crate::output::Ksyms::parse(
                "ffffffff81a01000 T kfree_skb_reason\nffffffff81a02000 T ip_rcv\n".as_bytes(),
            )
            .unwrap(),
            ..Names::default()
        };
        names
            .drop_reasons
            .insert(6, "SKB_DROP_REASON_NETFILTER_DROP".into());
        names.probe_names.insert(7, "skb:kfree_skb".into());
        let args = |second| Some(NextArgs { second, third: 0 });
        let ev = |probe_addr, args| Event {
            probe_addr,
            args,
            ..Event::default()
        };
        let tracepoint = ev(7, None).with(DropReason(6));
        let table: &[(Event, &str)] = &[
            (
                ev(0xffffffff81a01000, args(6)),
                "SKB_DROP_REASON_NETFILTER_DROP",
            ),
            (ev(0xffffffff81a01000, args(77)), "77"),
            (tracepoint, "SKB_DROP_REASON_NETFILTER_DROP"),
            // No reason: the key is left out.
            (ev(0xffffffff81a02000, args(6)), ""),
            (ev(0xffffffff81a01000, None), ""),
            (ev(0xffffffff81ffff00, args(6)), ""),
        ];
        for (e, want) in table {
            let mut got = String::new();
            DropReasonSection::json_value(&names, e, &mut got);
            assert_eq!(got, *want, "{:#x}", e.probe_addr);
        }
    }
}
