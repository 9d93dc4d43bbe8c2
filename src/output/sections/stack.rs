//! `--output-stack`: the kernel stack of each hit, by id in the `stacks` map
//! (`bpf_get_stackid`); the reader looks the frames up and they print as one symbol a
//! line after the event, unindented as pwru prints them (JSON `stack`, the same text).
//!
//! A stack taken from a tracepoint program starts inside that program (where it called
//! `bpf_get_stackid`): those leading `[bpf]` frames are the tracer itself and are left out.
//! Later BPF frames (a tc or XDP program on the path) print as the kernel names them,
//! `bpf_prog_<tag>_<name>[bpf]`; a frame in no known text prints as its address.

use crate::bpf;
use crate::events::{Event, RecordPart};
use crate::output::json::JsonObject;
use crate::output::text::push_hex_prefixed;
use crate::output::{Ksym, Ksyms, OutputOptions};
use crate::probes::event::{off, EVENT_SIZE, FLAG_STACK};
use crate::probes::maps::{self, MapDef};
use crate::probes::{Attachment, ProbeError};

use super::{Cx, JsonAt, RecordSection, RecordStage, Section, TableAt};

/// The `bpf_get_stackid` result (negative: an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackId(pub i64);

impl RecordPart for StackId {
    const FLAG: u16 = FLAG_STACK;
    fn read(b: &[u8; EVENT_SIZE]) -> Self {
        StackId(i64::from_ne_bytes(
            b[off::STACK_ID..off::STACK_ID + 8]
                .try_into()
                .expect("8 bytes"),
        ))
    }
    fn write(&self, b: &mut [u8; EVENT_SIZE]) {
        b[off::STACK_ID..off::STACK_ID + 8].copy_from_slice(&self.0.to_ne_bytes());
    }
}

/// The section (on with `--output-stack`).
#[derive(Debug)]
pub struct StackSection;

impl RecordSection for StackSection {
    fn check(&self, at: &Attachment) -> Result<(), ProbeError> {
        if *at == Attachment::SkbContext {
            return Err(ProbeError::Unsupported(
                "--output-stack on a SCHED_CLS (skb context) program: bpf_get_stackid needs pt_regs",
            ));
        }
        Ok(())
    }
    fn maps(&self) -> Vec<&'static MapDef> {
        vec![maps::STACKS]
    }
    fn emit(&self, r: &mut RecordStage<'_>) -> Result<(), ProbeError> {
        r.set_flag(FLAG_STACK);
        bpf!(into r.a;
            r1 = r6;
            r2 = map[maps::STACKS];
            r3 = 0;
            call get_stackid;
            *(u64 *)(r8 + off::STACK_ID) = r0;
        );
        Ok(())
    }
}

/// Appends `\n<symbol>` for each frame after the probe's own leading BPF frames
/// (`0x<addr>` for a frame outside every known symbol).
fn push_frames(ksyms: &Ksyms, frames: &[u64], buf: &mut String) {
    let mut leading = true;
    for &frame in frames.iter().filter(|f| **f != 0) {
        let sym = ksyms.nearest(frame);
        if leading && sym.is_some_and(Ksym::is_bpf) {
            continue;
        }
        leading = false;
        buf.push('\n');
        match sym {
            Some(sym) => sym.push_to(buf),
            None => push_hex_prefixed(buf, frame),
        }
    }
}

impl Section for StackSection {
    fn from_options(opts: &OutputOptions) -> Option<Self> {
        opts.stack.then_some(StackSection)
    }
    fn table_at(&self) -> &'static [TableAt] {
        &[TableAt::Lines]
    }
    fn json_at(&self) -> &'static [JsonAt] {
        &[JsonAt::Text]
    }
    fn table(&self, _at: TableAt, cx: &mut Cx<'_>, _ev: &Event, line: &mut String) {
        push_frames(&cx.names.ksyms, cx.frames, line);
    }
    fn json(&self, _at: JsonAt, cx: &mut Cx<'_>, _ev: &Event, obj: &mut JsonObject<'_>) {
        let mut text = std::mem::take(cx.scratch);
        push_frames(&cx.names.ksyms, cx.frames, &mut text);
        obj.str("stack", &text);
        *cx.scratch = text;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffff81000000 T _text
ffffffff81100000 T bpf_trace_run2
ffffffff81100400 T __bpf_trace_kfree_skb
ffffffff81100800 T sk_skb_reason_drop
ffffffff81100c00 T tcf_classify
ffffffff82200000 T _etext
ffffffff83700000 T _sinittext
ffffffff837f26a0 T _einittext
ffffffffa0001000 t bpf_prog_6deef7357e7b4530_pwru_tp\t[bpf]
ffffffffa0003000 t bpf_prog_0123456789abcdef_cls_main\t[bpf]
ffffffffc0a01000 t nft_do_chain\t[nf_tables]
ffffffffc0a02000 t nft_other\t[nf_tables]
";

    fn frames_text(frames: &[u64]) -> String {
        let ksyms = Ksyms::parse(KALLSYMS.as_bytes()).unwrap();
        let mut text = String::new();
        push_frames(&ksyms, frames, &mut text);
        text
    }

    #[test]
    fn the_probes_own_frames_are_left_out_and_others_named() {
        let text = frames_text(&[
            // Our tracepoint program, where it called bpf_get_stackid (was `_einittext`).
            0xffffffffa0001234,
            0xffffffff81100010,
            0xffffffff81100420,
            0xffffffff81100810,
            0,
            // A module frame, a tc program on the path, then its caller.
            0xffffffffc0a01010,
            0xffffffffa0003040,
            0xffffffff81100c20,
            // Past the last text symbol, and between text and the BPF programs.
            0xffffffffc0b00000,
            0xffffffff83000000,
        ]);
        assert_eq!(
            text,
            "\nbpf_trace_run2\n__bpf_trace_kfree_skb\nsk_skb_reason_drop\
             \nnft_do_chain[nf_tables]\nbpf_prog_0123456789abcdef_cls_main[bpf]\ntcf_classify\
             \n0xffffffffc0b00000\n0xffffffff83000000"
        );
        assert!(!text.contains("_einittext"));
    }

    #[test]
    fn a_stack_of_only_bpf_frames_prints_nothing_and_unknown_tops_stay() {
        assert_eq!(frames_text(&[0xffffffffa0001234, 0xffffffffa0003000]), "");
        // An unknown first frame is not known to be ours: it prints as an address.
        assert_eq!(
            frames_text(&[0xffffffff90000000, 0xffffffffa0001234]),
            "\n0xffffffff90000000\nbpf_prog_6deef7357e7b4530_pwru_tp[bpf]"
        );
    }
}
