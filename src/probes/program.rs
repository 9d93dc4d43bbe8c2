//! The per-hit probe program, generated with our assembler from BTF offsets: find the skb,
//! run the filter chain (pcap filter on the L2 or L3 start, mark, netns, ifindex, tracking),
//! then write one fixed-size event (see `event`) to the ring buffer. A miss costs one read
//! of the skb fields the filters need, one read of the packet window, and the exit.

use crate::asm::{Asm, AsmError, Label, Program, Reg, Size};
use crate::bpf;
use crate::btf::{ArchFacts, Field, PtRegsLayout, SkbLayout, MAX_PROBE_ARG};
use crate::pcapc::ast::Expr;
use crate::pcapc::compile::{
    emit_filter, stack_bytes, CompileError, FilterEnv, LinkType, MetaSource, PacketSource,
    WireLength,
};

use super::maps::{self, MapDef};
use super::record::{self, DeviceSlots, Frame, RecordEnv, RecordSections, SkbWindow};
use super::skb_expr::{self, SkbFilter};

use Reg::*;

mod tunnel;
pub use tunnel::TunnelFilters;

/// `RTAX_MTU - 1`: index of the MTU metric in a dst's metrics array (u32 each).
const RTAX_MTU_INDEX: i32 = 1;
/// Ethernet header bytes, and the 802.1Q EtherType (the XDP view, [`Gen::xdp_view`]).
const ETH_HLEN: i32 = 14;
const ETH_P_8021Q: u16 = 0x8100;
/// Packet bytes the filter reads in one `bpf_probe_read_kernel`.
pub const FILTER_WINDOW: u16 = 96;

/// Where the program is attached, which decides how it finds its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// A perf-event kprobe or a kprobe-multi link; the skb is argument `skb_arg`
    /// (1..=[`MAX_PROBE_ARG`]), read from its register in `struct pt_regs`.
    /// `skb_arg` 0 (`NON_SKB`) is a function that takes no skb (`--filter-non-skb-funcs`):
    /// the skb is the one recorded for the kernel stack the hit runs on (see
    /// [`StackTracking`]), and the program needs `ProbeOptions::track_stackid`.
    /// `map_op`: a non-skb function that operates on a BPF map (`--output-bpfmap`): the
    /// record's bpfmap section reads the map, key and value from its arguments (a lookup's
    /// program is a kretprobe, see [`MapOp::Lookup`]).
    /// `link` says how it is attached, and so what names the function in its events.
    Kprobe {
        skb_arg: u8,
        link: KprobeLink,
        map_op: Option<MapOp>,
    },
    /// A raw tracepoint; `id` is reported as the probe address so userspace knows which.
    Tracepoint {
        id: u32,
        skb_arg: u16,
        nargs: u16,
        drop_reason_arg: Option<u16>,
    },
    /// A `SCHED_CLS` program run with `BPF_PROG_TEST_RUN` (tests, benchmarks): the context
    /// r1 IS the kernel's `struct sk_buff *` (the `__sk_buff` view is the real skb), so the
    /// program reads it like any probed skb and runs the same filter chain and event code.
    /// Events are reported as `Tracepoint` with id 0 and no arguments; `--output-stack`
    /// is refused (`bpf_get_stackid` needs a `pt_regs` context).
    SkbContext,
    /// fentry (`exit: false`) or fexit (`exit: true`) on a tc BPF program, loaded as
    /// `BPF_PROG_TYPE_TRACING`: the context is the traced program's arguments as u64s, the
    /// first its `struct __sk_buff *` (which is the kernel's `struct sk_buff *`); fexit
    /// finds the program's return value after them. fentry runs the filter chain and
    /// remembers a matching skb for this CPU (map `tc_matched`); fexit reports only that
    /// skb, with the verdict. `prog_id` names the traced program in events
    /// ([`super::event::bpf_prog_probe_addr`]).
    TcProgram { prog_id: u32, exit: bool },
    /// fentry or fexit on an XDP BPF program, like [`Attachment::TcProgram`]: the first
    /// argument is its `struct xdp_md *`, which is the kernel's `struct xdp_buff *`. The
    /// probe sees the buffer through an skb-shaped view ([`Gen::xdp_view`]): the packet
    /// `data..data_end` at L2, the device `rxq->dev`; the mark filter, `--filter-skb-expr`
    /// and the skb trackers do not apply, `--filter-xdp-expr` does (map `xdp_matched`).
    XdpProgram { prog_id: u32, exit: bool },
    /// fentry on a kernel function (the fentry backend), loaded as `BPF_PROG_TYPE_TRACING`
    /// with the function's BTF id: the context is its arguments as u64s, the skb argument
    /// `skb_arg` (1-based) at `ctx + 8 * (skb_arg - 1)`. The record reads the second and
    /// third arguments with `bpf_get_func_arg` (inlined by the verifier), which leaves
    /// them zero when the function has fewer and reads any type (a direct context read of
    /// a pointer to a non-struct, e.g. `enum skb_drop_reason *`, is refused). The
    /// function is named by `bpf_get_func_ip`, so one program serves every function with
    /// its skb at the same position.
    Fentry { skb_arg: u8 },
}

/// How a kprobe program is attached, which decides what its events carry to name the
/// probed function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KprobeLink {
    /// A perf-event kprobe: the function's address (`bpf_get_func_ip`, or the kprobe's ip
    /// less the breakpoint's length), which kallsyms names.
    Perf,
    /// A kprobe_multi link made by function names: its attach cookie, which names the
    /// function (`attach::kprobe_multi`; no kallsyms needed).
    MultiByCookie,
    /// A kprobe_multi link made by ftrace locations: `bpf_get_func_ip`, the function's
    /// entry, which the output names by the nearest location at or after it (the location
    /// may sit past an entry instruction such as x86's `endbr64`).
    MultiByAddress,
}

impl KprobeLink {
    /// A kprobe_multi link (not a perf-event kprobe).
    pub fn is_multi(self) -> bool {
        self != KprobeLink::Perf
    }
}

/// The kinds of BPF programs traced with fentry/fexit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BpfProgKind {
    /// tc (`SCHED_CLS`) programs, `--filter-trace-tc`.
    Tc,
    /// XDP programs, `--filter-trace-xdp`.
    Xdp,
}

impl BpfProgKind {
    /// The probe attachment on program `prog_id` (fentry, or fexit when `exit`).
    pub fn attachment(self, prog_id: u32, exit: bool) -> Attachment {
        match self {
            BpfProgKind::Tc => Attachment::TcProgram { prog_id, exit },
            BpfProgKind::Xdp => Attachment::XdpProgram { prog_id, exit },
        }
    }

    /// The per-CPU map where the fentry half leaves what it matched for the fexit half.
    pub fn matched_map(self) -> &'static MapDef {
        match self {
            BpfProgKind::Tc => maps::TC_MATCHED,
            BpfProgKind::Xdp => maps::XDP_MATCHED,
        }
    }
}

impl Attachment {
    /// fentry/fexit on a BPF program: its kind, id and whether this is the fexit half.
    pub fn bpf_program(&self) -> Option<(BpfProgKind, u32, bool)> {
        match *self {
            Attachment::TcProgram { prog_id, exit } => Some((BpfProgKind::Tc, prog_id, exit)),
            Attachment::XdpProgram { prog_id, exit } => Some((BpfProgKind::Xdp, prog_id, exit)),
            _ => None,
        }
    }

    /// Whether the probe's subject is an `xdp_buff` rather than an skb.
    pub fn is_xdp(&self) -> bool {
        matches!(self, Attachment::XdpProgram { .. })
    }
}

/// `skb_arg` of an [`Attachment::Kprobe`] on a function that takes no skb.
pub const NON_SKB: u8 = 0;

/// What a probed map function does with its `struct bpf_map *` (first argument) and
/// key (second).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapOp {
    /// `*_lookup_elem`: the value is what it returns. Its record program runs as a
    /// kretprobe; a small kprobe at entry ([`build_map_lookup_entry`]) stashes the map
    /// and key pointers for it in [`maps::BPFMAP_STASH`] (per CPU: a lookup does not sleep).
    Lookup,
    /// `__htab_map_lookup_elem`, which the verifier calls for a hash map's lookup and
    /// which returns the element, not the value: like [`MapOp::Lookup`], the value
    /// following the key in `struct htab_elem` (at `key` + the key size rounded up to 8).
    LookupElem,
    /// `*_update_elem`: the value is the third argument.
    Update,
    /// `*_delete_elem`: no value.
    Delete,
}

impl MapOp {
    /// The operation a map function's name ends with (`htab_map_update_elem`).
    pub fn from_name(name: &str) -> Option<Self> {
        if name == "__htab_map_lookup_elem" {
            return Some(MapOp::LookupElem);
        }
        [
            ("_lookup_elem", MapOp::Lookup),
            ("_update_elem", MapOp::Update),
            ("_delete_elem", MapOp::Delete),
        ]
        .into_iter()
        .find(|(suffix, _)| name.ends_with(suffix))
        .map(|(_, op)| op)
    }

    /// Whether its record program runs on the function's return.
    pub fn on_return(self) -> bool {
        matches!(self, MapOp::Lookup | MapOp::LookupElem)
    }
}

/// Offset in `struct pt_regs` of the register holding kprobe argument `skb_arg`
/// (1..=[`MAX_PROBE_ARG`]; out-of-range values are clamped into it).
fn kprobe_arg(regs: &PtRegsLayout, skb_arg: u8) -> i16 {
    regs.args[(skb_arg as usize).clamp(1, MAX_PROBE_ARG as usize) - 1]
}

/// Offset in an fentry program's context (the arguments as u64s) of 1-based argument `arg`
/// (out-of-range values are clamped into 1..=[`MAX_PROBE_ARG`], as for kprobes).
pub fn fentry_arg(arg: u8) -> i16 {
    ((arg as i16).clamp(1, MAX_PROBE_ARG as i16) - 1) * 8
}

/// `--filter-track-skb-by-stackid`: a hit is attributed to the skb last recorded for the
/// kernel stack it runs on (maps `stackid_skb`/`skb_stackid`).
///
/// The original pwru names a stack by walking the frame-pointer chain from `pt_regs->bp`
/// to its outermost frame; on kernels built without frame pointers (ORC, e.g. Debian's)
/// `bp` is a general register and the walk reads arbitrary values. We name the stack
/// itself instead, from an address known to lie on it: `pt_regs->sp` for kprobes and
/// kprobe-multi, the address of the raw tracepoint's argument array (built on the stack
/// by `bpf_trace_run<N>`) for tracepoints, the program's own frame for `SCHED_CLS` test
/// runs. (`r10` is not used for tracing programs: since 6.13 the x86-64 JIT may give them
/// a per-CPU private stack.) That address rounded down to the kernel's task stack size
/// ([`ArchFacts::thread_size`]: task stacks are that big and aligned) is the base of
/// the task stack when it equals `current->stack`; otherwise the hit runs on the CPU's
/// interrupt stack (softirq, hardirq), which is only page-aligned (a `vmap` of per-CPU
/// pages under `VMAP_STACK`), so rounding could split it: its identity is `cpu + 1`
/// instead (one interrupt stack per CPU; kernel addresses are never that small). Like the original's outermost frame, the identity of a task stack outlives
/// one system call; unlike it, it never depends on frame pointers. Caveat: when the
/// kernel configuration is unreadable, a KASAN kernel's stacks are twice the size
/// assumed, and the upper half of a task stack is taken for an interrupt stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackTracking {
    /// Byte offset of `task_struct.stack` (BTF). Without it the identity is the address
    /// rounded down to the stack size, which can split an interrupt stack in two.
    pub task_stack_offset: Option<u32>,
}

/// What the program filters on and what it records. Built from the CLI config.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Where `struct pt_regs` keeps the registers read and the kernel stack size, resolved
    /// from the kernel's BTF (`btf::arch`); every generator takes them from here.
    pub arch: ArchFacts,
    pub filter: Option<Expr>,
    /// `--filter-tunnel-pcap-l2/-l3`: on the inner headers, where the skb has them.
    pub tunnel: TunnelFilters,
    /// `(mark, mask)`: keep packets where `skb->mark & mask == mark & mask`.
    pub mark: Option<(u32, u32)>,
    pub netns: Option<u32>,
    pub ifindex: Option<u32>,
    /// Keep following an skb once it matched (`--filter-track-skb`).
    pub track_skb: bool,
    /// With `track_skb` and `--filter-trace-xdp`: the skb built from an XDP buffer that
    /// matched is tracked too (map `xdp_heads`: the buffer's `data_hard_start`, recorded
    /// by the fexit half, is the skb's `head`).
    pub track_xdp: bool,
    /// `--filter-track-skb-by-stackid` (also implied by `--filter-non-skb-funcs`).
    pub track_stackid: Option<StackTracking>,
    /// The kernel has `bpf_get_func_ip` for this program type.
    pub has_get_func_ip: bool,
    /// `--filter-skb-expr`, resolved through BTF; runs after the other filters.
    pub skb_expr: Option<SkbFilter>,
    /// `--filter-xdp-expr`: the same on the `xdp_buff` of probes on XDP programs.
    pub xdp_expr: Option<SkbFilter>,
    /// What each event records besides its header, in emit order (`output::sections`).
    pub sections: RecordSections,
}

impl ProbeOptions {
    /// Options for a kernel of `arch` that filter nothing and record only the header.
    pub fn new(arch: ArchFacts) -> Self {
        ProbeOptions {
            arch,
            filter: None,
            tunnel: TunnelFilters::default(),
            mark: None,
            netns: None,
            ifindex: None,
            track_skb: false,
            track_xdp: false,
            track_stackid: None,
            has_get_func_ip: false,
            skb_expr: None,
            xdp_expr: None,
            sections: RecordSections::new(),
        }
    }

    /// Whether a section reads the device facts (netns inode, ifindex, MTU).
    fn device_facts(&self) -> bool {
        self.sections.iter().any(|s| s.device_facts())
    }
}

/// Errors generating a probe program.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("pcap filter: {0}")]
    Filter(#[from] CompileError),
    #[error("assembler: {0}")]
    Asm(#[from] AsmError),
    #[error("kernel layout not supported: {0}")]
    Layout(String),
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    #[error("records of up to {bytes} bytes do not fit the {max}-byte per-CPU area they are built in; lower --output-pcap-snaplen or --set-percpu-buf")]
    RecordTooLarge { bytes: usize, max: usize },
}

/// The BPF stack's size.
const STACK_BYTES: u32 = 512;
/// Most bytes one read of `net_device` or `dst_entry` fields spans (else one read each).
const DEV_SPAN_MAX: u32 = 64;

/// The bytes a set of fields (offset, size) spans in their struct, to read them at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    lo: u32,
    len: u32,
}

impl Span {
    /// The span of `fields`, when at most `max` bytes.
    fn of(fields: &[(u32, u32)], max: u32) -> Option<Span> {
        let lo = fields.iter().map(|f| f.0).min()?;
        let hi = fields.iter().map(|f| f.0 + f.1).max()?;
        (hi - lo <= max).then_some(Span { lo, len: hi - lo })
    }

    /// Where the field at struct offset `at` lands in a copy of the span.
    fn offset(&self, at: u32) -> i16 {
        (at - self.lo) as i16
    }
}

/// Stack slots below r10 (negative offsets).
const SLOT_KEY: i16 = -8;
const SLOT_NETNS: i16 = -16;
const SLOT_IFINDEX: i16 = -20;
const SLOT_MTU: i16 = -24;
const SLOT_VALUE: i16 = -28;
/// The packet's length on the wire from the filter's start (u32), while a pcap filter
/// runs (`len`, `greater`, `less`); `SLOT_VALUE` is free until the filters passed.
const SLOT_WIRE_LEN: i16 = SLOT_VALUE;
/// Linear bytes from `network_header` to `tail` (u32), for the tuple parser.
const SLOT_L3_LEN: i16 = -32;
/// The stack identity of this hit (u64), with `--filter-track-skb-by-stackid`.
const SLOT_STACKID: i16 = -40;
/// Scratch u64 of the stack identity code.
const SLOT_AUX: i16 = -48;
const SCRATCH_BYTES: i16 = 48;

/// The parts of byte range `a` outside `b` (at most two).
fn subtract(a: Option<(u32, u32)>, b: Option<(u32, u32)>) -> Vec<(u32, u32)> {
    let Some((alo, ahi)) = a else {
        return Vec::new();
    };
    let Some((blo, bhi)) = b else {
        return vec![(alo, ahi)];
    };
    let mut parts = Vec::new();
    if alo < blo {
        parts.push((alo, ahi.min(blo)));
    }
    if ahi > bhi {
        parts.push((alo.max(bhi), ahi));
    }
    parts
}

fn size_of(f: &Field) -> Result<Size, ProbeError> {
    Size::from_bytes(f.size_bytes as usize)
        .ok_or_else(|| ProbeError::Layout(format!("field of {} bytes", f.size_bytes)))
}

/// Generates the probe program for `attach`.
pub fn build(
    layout: &SkbLayout,
    opts: &ProbeOptions,
    attach: &Attachment,
) -> Result<Program, ProbeError> {
    for section in &opts.sections {
        section.check(attach)?;
    }
    if let Attachment::Kprobe {
        skb_arg: NON_SKB, ..
    } = attach
    {
        if opts.track_stackid.is_none() {
            return Err(ProbeError::Unsupported(
                "a probe on a function without an skb needs --filter-track-skb-by-stackid",
            ));
        }
    }
    Gen::new(layout, opts, attach)?.emit()
}

struct Gen<'a> {
    a: Asm,
    l: &'a SkbLayout,
    o: &'a ProbeOptions,
    at: &'a Attachment,
    win: SkbWindow,
    /// Bytes of the window (a multiple of 8).
    win_len: u32,
    out: Label,
    /// XDP: the skb-shaped view of the buffer is built on this (only) path.
    view_built: bool,
}

impl<'a> Gen<'a> {
    fn new(l: &'a SkbLayout, o: &'a ProbeOptions, at: &'a Attachment) -> Result<Self, ProbeError> {
        let s = &l.sk_buff;
        let mut fields = vec![
            s.head,
            s.len,
            s.data_len,
            s.mark,
            s.protocol,
            s.dev,
            s.sk,
            s.mac_header,
            s.network_header,
            s.mac_len,
            s.tail,
            s.pkt_type,
        ];
        fields.extend(s.skb_refdst);
        fields.extend(o.tunnel.skb_fields(s));
        fields.extend(o.sections.iter().flat_map(|r| r.skb_fields(s)));
        let lo = fields.iter().map(|f| f.offset_bytes()).min().unwrap_or(0) & !7;
        let hi = fields
            .iter()
            .map(|f| f.offset_bytes() + f.size_bytes)
            .max()
            .unwrap_or(0);
        let len = (hi - lo + 7) & !7;
        if len > 256 {
            return Err(ProbeError::Layout(format!(
                "sk_buff fields span {len} bytes (more than 256)"
            )));
        }
        let mut a = Asm::new();
        let out = a.named_label("out");
        Ok(Gen {
            a,
            l,
            o,
            at,
            win: SkbWindow {
                lo,
                stack: -SCRATCH_BYTES - len as i16,
            },
            win_len: len,
            out,
            view_built: false,
        })
    }

    /// Stack offset where the filter's (and later the tuple parser's) area ends.
    fn filter_top(&self) -> i16 {
        self.win.stack
    }

    /// Where field `f` sits in the skb window: its access type and stack offset, so that
    /// `r1 = *(ty *)(r10 + at)` loads it.
    fn window(&self, f: &Field) -> Result<(Size, i16), ProbeError> {
        Ok((size_of(f)?, self.win.at(f)))
    }

    fn emit(mut self) -> Result<Program, ProbeError> {
        let out = self.out;
        // r6 = ctx, r7 = skb
        bpf!(into &mut self.a; r6 = r1;);
        let non_skb = matches!(
            self.at,
            Attachment::Kprobe {
                skb_arg: NON_SKB,
                ..
            }
        );
        let prog = self.at.bpf_program();
        let prog_exit = matches!(prog, Some((_, _, true)));
        let xdp = self.at.is_xdp();
        // An xdp_buff is not an skb: no skb tracking on XDP programs.
        let by_stack = self
            .o
            .track_stackid
            .filter(|_| !prog_exit && !xdp)
            .map(|st| {
                emit_stack_identity(
                    &mut self.a,
                    self.at,
                    &self.o.arch,
                    st,
                    SLOT_STACKID,
                    SLOT_AUX,
                );
                self.a.named_label("by_stack")
            });
        match self.at {
            Attachment::Kprobe {
                skb_arg: NON_SKB, ..
            } => {
                // The skb recorded for this stack, if any; it skips the filters.
                if by_stack.is_none() {
                    return Err(ProbeError::Unsupported(
                        "a non-skb function without stack tracking",
                    ));
                }
                lookup(&mut self.a, maps::STACKID_SKB, SLOT_STACKID);
                bpf!(into &mut self.a;
                    if r0 == 0 goto (out);
                    r7 = *(u64 *)(r0 + 0);
                    if r7 == 0 goto (out);
                );
            }
            Attachment::Kprobe { skb_arg, .. } => {
                let arg = kprobe_arg(&self.o.arch.regs, *skb_arg);
                bpf!(into &mut self.a; r7 = *(u64 *)(r6 + arg););
            }
            Attachment::Tracepoint { skb_arg, .. } => {
                let arg = *skb_arg as i16 * 8;
                bpf!(into &mut self.a; r7 = *(u64 *)(r6 + arg););
            }
            Attachment::SkbContext => bpf!(into &mut self.a; r7 = r6;),
            Attachment::TcProgram { .. } | Attachment::XdpProgram { .. } => {
                bpf!(into &mut self.a; r7 = *(u64 *)(r6 + 0););
            }
            Attachment::Fentry { skb_arg, .. } => {
                let arg = fentry_arg(*skb_arg);
                bpf!(into &mut self.a; r7 = *(u64 *)(r6 + arg););
            }
        }
        let pre = self.span(&self.pre_filter_fields());
        let post = self.span(&self.post_filter_fields());
        let emit_event = self.a.named_label("emit");
        if let Some((kind, _, true)) = prog {
            // The skb the fentry half matched on this CPU, once: no filters, no tracking.
            bpf!(into &mut self.a;
                if r7 == 0 goto (out);
                *(u32 *)(r10 + SLOT_VALUE) = 0;
            );
            lookup(&mut self.a, kind.matched_map(), SLOT_VALUE);
            bpf!(into &mut self.a;
                if r0 == 0 goto (out);
                r1 = *(u64 *)(r0 + 0);
                if r1 != r7 goto (out);
                *(u64 *)(r0 + 0) = 0;
            );
            if xdp && self.o.track_skb && self.o.track_xdp {
                self.record_xdp_head()?;
            }
            self.unfiltered_skb(post)?;
        }
        // A non-skb function has no skb of its own to filter: only the stack's.
        if !non_skb && !prog_exit {
            bpf!(into &mut self.a; if r7 == 0 goto (out););

            // The non-matching path reads only what the filters need: the skb fields of the
            // mark and pcap filters, then the packet window, then out. The fields the device
            // filters and the event need are read once those filters passed.
            let tracked = (self.o.track_skb && !xdp).then(|| self.a.named_label("tracked"));
            if let Some(tracked) = tracked {
                bpf!(into &mut self.a; *(u64 *)(r10 + SLOT_KEY) = r7;);
                lookup(&mut self.a, maps::TRACKED_SKBS, SLOT_KEY);
                bpf!(into &mut self.a; if r0 != 0 goto (tracked););
                if self.o.track_xdp {
                    self.track_from_xdp(tracked);
                }
            }
            if let Some(by_stack) = by_stack {
                lookup(&mut self.a, maps::STACKID_SKB, SLOT_STACKID);
                bpf!(into &mut self.a; if r0 != 0 goto (by_stack););
            }
            if let Some(range) = pre {
                self.read_skb(range)?;
            }
            self.pre_filters()?;
            for range in subtract(post, pre) {
                self.read_skb(range)?;
            }
            self.post_filters()?;
            if tracked.is_some() {
                bpf!(into &mut self.a;
                    *(u64 *)(r10 + SLOT_KEY) = r7;
                    *(u32 *)(r10 + SLOT_VALUE) = 1;
                );
                update_elem(&mut self.a, maps::TRACKED_SKBS, SLOT_KEY, SLOT_VALUE);
            }
            if by_stack.is_some() {
                self.record_stack();
            }
            if tracked.is_some() || by_stack.is_some() {
                bpf!(into &mut self.a; goto (emit_event););
            }
            // A tracked skb skips the filters but still needs its fields and device facts.
            if let Some(tracked) = tracked {
                bpf!(into &mut self.a; (tracked):);
                self.unfiltered_skb(post)?;
                if by_stack.is_some() {
                    self.record_stack();
                }
                bpf!(into &mut self.a; goto (emit_event););
            }
        }
        // An skb attributed by its stack: like a tracked one, but it records nothing.
        if let Some(by_stack) = by_stack {
            bpf!(into &mut self.a; (by_stack):);
            self.unfiltered_skb(post)?;
        }
        bpf!(into &mut self.a; (emit_event):);
        if let Some((kind, _, false)) = prog {
            // For the fexit half: this CPU's program run is on this skb.
            let skip = self.a.label();
            bpf!(into &mut self.a; *(u32 *)(r10 + SLOT_VALUE) = 0;);
            lookup(&mut self.a, kind.matched_map(), SLOT_VALUE);
            bpf!(into &mut self.a;
                if r0 == 0 goto (skip);
                *(u64 *)(r0 + 0) = r7;
              (skip):
            );
        }
        self.event()?;
        bpf!(into &mut self.a;
          (out):
            r0 = 0;
            exit;
        );
        Ok(self.a.finish()?)
    }

    /// An skb built from a matched XDP buffer (its `head` in `xdp_heads`) becomes tracked:
    /// the entry moves to `tracked_skbs` and the skb takes the tracked path.
    fn track_from_xdp(&mut self, tracked: Label) {
        let head = self.l.sk_buff.head.offset_bytes();
        let miss = self.a.label();
        read_u64_at_r7(&mut self.a, head, SLOT_KEY, miss);
        lookup(&mut self.a, maps::XDP_HEADS, SLOT_KEY);
        bpf!(into &mut self.a; if r0 == 0 goto (miss););
        delete_elem(&mut self.a, maps::XDP_HEADS, SLOT_KEY);
        bpf!(into &mut self.a;
            *(u64 *)(r10 + SLOT_KEY) = r7;
            *(u32 *)(r10 + SLOT_VALUE) = 1;
        );
        update_elem(&mut self.a, maps::TRACKED_SKBS, SLOT_KEY, SLOT_VALUE);
        bpf!(into &mut self.a;
            goto (tracked);
          (miss):
        );
    }

    /// fexit on an XDP program, for a buffer its fentry half matched: records its
    /// `data_hard_start` in `xdp_heads` (see [`Gen::track_from_xdp`]).
    fn record_xdp_head(&mut self) -> Result<(), ProbeError> {
        let Some(x) = &self.l.xdp_buff else {
            return Err(ProbeError::Unsupported(
                "tracing XDP programs: no struct xdp_buff in the kernel BTF",
            ));
        };
        let dhs = x.data_hard_start.offset_bytes();
        let skip = self.a.label();
        read_u64_at_r7(&mut self.a, dhs, SLOT_KEY, skip);
        bpf!(into &mut self.a; *(u32 *)(r10 + SLOT_VALUE) = 1;);
        update_elem(&mut self.a, maps::XDP_HEADS, SLOT_KEY, SLOT_VALUE);
        bpf!(into &mut self.a; (skip):);
        Ok(())
    }

    /// Records `stack identity <-> r7` (pwru's handle_everything): drops the skb's mapping
    /// from its previous stack when that stack still points at it, then sets both maps.
    /// Clobbers r0-r5 and r9.
    fn record_stack(&mut self) {
        let a = &mut self.a;
        let update = a.label();
        bpf!(into a; *(u64 *)(r10 + SLOT_KEY) = r7;);
        lookup(a, maps::SKB_STACKID, SLOT_KEY);
        bpf!(into a;
            if r0 == 0 goto (update);
            r1 = *(u64 *)(r0 + 0);
            r2 = *(u64 *)(r10 + SLOT_STACKID);
            if r1 == r2 goto (update);
        );
        forget_stack(a, R0, update);
        bpf!(into a; (update):);
        update_elem(a, maps::STACKID_SKB, SLOT_STACKID, SLOT_KEY);
        update_elem(a, maps::SKB_STACKID, SLOT_KEY, SLOT_STACKID);
    }

    /// What an skb that skipped the filters (tracked, or attributed by its stack) still
    /// needs before its event: the skb fields read after the filters, and its device facts.
    fn unfiltered_skb(&mut self, post: Option<(u32, u32)>) -> Result<(), ProbeError> {
        if let Some(range) = post {
            self.read_skb(range)?;
        }
        if self.o.device_facts() {
            self.device_meta()?;
        }
        Ok(())
    }

    /// skb fields the mark and pcap filters read.
    fn pre_filter_fields(&self) -> Vec<Field> {
        let s = &self.l.sk_buff;
        let mut f = Vec::new();
        if self.mark_filter().is_some() {
            f.push(s.mark);
        }
        if self.o.filter.is_some() {
            f.extend([
                s.mac_len,
                s.mac_header,
                s.network_header,
                s.head,
                s.tail,
                s.data_len,
            ]);
        }
        f.extend(self.o.tunnel.skb_fields(s));
        if self.o.filter.as_ref().is_some_and(Expr::reads_direction)
            || self.o.tunnel.reads_direction()
        {
            f.push(s.pkt_type);
        }
        if self.filters_read_ifindex() {
            f.extend([s.dev, s.sk]);
            f.extend(s.skb_refdst);
        }
        f
    }

    /// `--filter-mark`, where the subject has a mark (not on XDP programs, as pwru).
    fn mark_filter(&self) -> Option<(u32, u32)> {
        self.o.mark.filter(|_| !self.at.is_xdp())
    }

    /// The BTF expression filter for the subject: `--filter-xdp-expr` on XDP programs,
    /// `--filter-skb-expr` elsewhere.
    fn expr_filter(&self) -> Option<&'a SkbFilter> {
        match self.at.is_xdp() {
            true => self.o.xdp_expr.as_ref(),
            false => self.o.skb_expr.as_ref(),
        }
    }

    /// Whether a pcap filter tests the interface (`ifindex N`): the device facts are
    /// then read before the filters instead of after them.
    fn filters_read_ifindex(&self) -> bool {
        self.o.filter.as_ref().is_some_and(Expr::reads_ifindex) || self.o.tunnel.reads_ifindex()
    }

    /// skb fields the device filters, the device facts and the record sections read.
    fn post_filter_fields(&self) -> Vec<Field> {
        let s = &self.l.sk_buff;
        let o = self.o;
        let mut f = Vec::new();
        if o.netns.is_some() || o.ifindex.is_some() || o.device_facts() {
            f.extend([s.dev, s.sk]);
            f.extend(s.skb_refdst);
        }
        f.extend(o.sections.iter().flat_map(|r| r.skb_fields(s)));
        f
    }

    /// Byte range of `sk_buff` covering `fields`, `None` for none.
    fn span(&self, fields: &[Field]) -> Option<(u32, u32)> {
        let lo = fields.iter().map(|f| f.offset_bytes()).min()?;
        let hi = fields
            .iter()
            .map(|f| f.offset_bytes() + f.size_bytes)
            .max()?;
        Some((lo, hi))
    }

    /// Copies `sk_buff` bytes `[lo, hi)` to their place in the stack window; out on failure.
    /// On an XDP program the first read builds the whole view instead ([`Gen::xdp_view`]).
    fn read_skb(&mut self, (lo, hi): (u32, u32)) -> Result<(), ProbeError> {
        if self.at.is_xdp() {
            if !self.view_built {
                self.view_built = true;
                self.xdp_view()?;
            }
            return Ok(());
        }
        let out = self.out;
        let stack = self.win.stack + (lo - self.win.lo) as i16;
        let len = hi - lo;
        bpf!(into &mut self.a;
            r3 = r7;
            r3 += lo;
            r1 = r10;
            r1 += stack;
            r2 = len;
            call probe_read_kernel;
            if r0 != 0 goto (out);
        );
        Ok(())
    }

    /// The skb-shaped view of the `xdp_buff` in r7, in the skb window, so that the filters
    /// and the record sections read an XDP packet as they read an skb: `head` = `data`,
    /// `mac_header` 0 and `mac_len` 14 (the pcap filter runs at L2), `network_header` 14
    /// (18 after an 802.1Q tag), `tail` = `len` = `data_end - data` (all of it linear),
    /// `protocol` the frame's EtherType, `dev` = `rxq->dev`; the rest zero (no mark,
    /// socket, route or inner headers; `pkt_type` `PACKET_HOST`). Out when the buffer
    /// cannot be read.
    fn xdp_view(&mut self) -> Result<(), ProbeError> {
        let out = self.out;
        let Some(x) = self.l.xdp_buff.clone() else {
            return Err(ProbeError::Unsupported(
                "tracing XDP programs: no struct xdp_buff in the kernel BTF",
            ));
        };
        let s = self.l.sk_buff.clone();
        for at in (0..self.win_len).step_by(8) {
            let at = self.win.stack + at as i16;
            bpf!(into &mut self.a; *(u64 *)(r10 + at) = 0;);
        }
        // The buffer's pointers, copied just below the window (the filters' area, free
        // until they run).
        let fields = [x.data, x.data_end, x.rxq];
        let lo = fields.iter().map(|f| f.offset_bytes()).min().unwrap_or(0);
        let hi = fields
            .iter()
            .map(|f| f.offset_bytes() + f.size_bytes)
            .max()
            .unwrap_or(0);
        let len = (hi - lo + 7) & !7;
        let buf = self.win.stack - len as i16;
        let at = |f: &Field| buf + (f.offset_bytes() - lo) as i16;
        let [data_at, data_end_at, rxq_at] = fields.map(|f| at(&f));
        let (head, head_at) = self.window(&s.head)?;
        let (tail, tail_at) = self.window(&s.tail)?;
        let (skb_len, len_at) = self.window(&s.len)?;
        let (mac_len, mac_len_at) = self.window(&s.mac_len)?;
        let (nh, nh_at) = self.window(&s.network_header)?;
        let (proto, proto_at) = self.window(&s.protocol)?;
        let (_, dev_at) = self.window(&s.dev)?;
        let vlan = i32::from(u16::from_ne_bytes(ETH_P_8021Q.to_be_bytes()));
        let [no_type, untagged, no_dev] = [(); 3].map(|_| self.a.label());
        bpf!(into &mut self.a;
            r3 = r7;
            r3 += lo;
            r1 = r10;
            r1 += buf;
            r2 = len;
            call probe_read_kernel;
            if r0 != 0 goto (out);
            r1 = *(u64 *)(r10 + data_at);
            *(head *)(r10 + head_at) = r1;
            r2 = *(u64 *)(r10 + data_end_at);
            r2 -= r1;
            *(tail *)(r10 + tail_at) = r2;
            *(skb_len *)(r10 + len_at) = r2;
            *(mac_len *)(r10 + mac_len_at) = ETH_HLEN;
            *(nh *)(r10 + nh_at) = ETH_HLEN;
            // EtherType, and the one behind an 802.1Q tag (bytes 12..18)
            r3 = r1;
            r3 += 12;
            r1 = r10;
            r1 += SLOT_KEY;
            r2 = 6;
            call probe_read_kernel;
            if r0 != 0 goto (no_type);
            r1 = *(u16 *)(r10 + SLOT_KEY);
            if r1 != vlan goto (untagged);
            r1 = *(u16 *)(r10 + (SLOT_KEY + 4));
            *(nh *)(r10 + nh_at) = (ETH_HLEN + 4);
          (untagged):
            *(proto *)(r10 + proto_at) = r1;
          (no_type):
            // dev = rxq->dev
            r3 = *(u64 *)(r10 + rxq_at);
            if r3 == 0 goto (no_dev);
            r3 += (x.rxq_dev.offset_bytes());
            r1 = r10;
            r1 += dev_at;
            r2 = 8;
            call probe_read_kernel;
          (no_dev):
        );
        Ok(())
    }

    /// mark and pcap filters: a failing test jumps to `out`.
    fn pre_filters(&mut self) -> Result<(), ProbeError> {
        let out = self.out;
        if let Some((mark, mask)) = self.mark_filter() {
            let (mark_ty, mark_at) = self.window(&self.l.sk_buff.mark)?;
            bpf!(into &mut self.a;
                r1 = *(mark_ty *)(r10 + mark_at);
                w1 &= mask;
                if w1 != (mark & mask) goto (out);
            );
        }
        if self.filters_read_ifindex() {
            self.device_meta()?;
        }
        self.tunnel_filters()?;
        if let Some(expr) = &self.o.filter {
            self.pcap_filter(expr)?;
        }
        Ok(())
    }

    /// Device facts (unless the pcap filters needed them first), then the netns and
    /// ifindex filters.
    fn post_filters(&mut self) -> Result<(), ProbeError> {
        let out = self.out;
        if (self.o.netns.is_some() || self.o.ifindex.is_some() || self.o.device_facts())
            && !self.filters_read_ifindex()
        {
            self.device_meta()?;
        }
        if let Some(netns) = self.o.netns {
            bpf!(into &mut self.a;
                r1 = *(u32 *)(r10 + SLOT_NETNS);
                if w1 != netns goto (out);
            );
        }
        if let Some(ifindex) = self.o.ifindex {
            bpf!(into &mut self.a;
                r1 = *(u32 *)(r10 + SLOT_IFINDEX);
                if w1 != ifindex goto (out);
            );
        }
        if let Some(expr) = self.expr_filter() {
            skb_expr::emit_filter(&mut self.a, expr, R7, SLOT_KEY, out);
        }
        Ok(())
    }

    /// Picks the packet start like pwru: `mac_len == 0` means no L2 header yet, so the
    /// raw-IP filter runs at `network_header`; otherwise the Ethernet filter at `mac_header`.
    fn pcap_filter(&mut self, expr: &Expr) -> Result<(), ProbeError> {
        let out = self.out;
        let s = &self.l.sk_buff;
        let l3 = self.a.named_label("filter_l3");
        let matched = self.a.named_label("filter_matched");
        let (src, env) = self.pcap_source()?;
        let (mac_len, mac_len_at) = self.window(&s.mac_len)?;
        bpf!(into &mut self.a;
            r1 = *(mac_len *)(r10 + mac_len_at);
            if r1 == 0 goto (l3);
        );
        // L2: base = head + mac_header, len = tail - mac_header
        self.packet_bounds(&s.mac_header)?;
        // The pcap compiler walks the filter's tree with the builder (it is not a listing).
        match emit_filter(
            &mut self.a,
            expr,
            LinkType::Ethernet,
            &src,
            &env,
            matched,
            out,
        ) {
            Ok(_) => {}
            Err(CompileError::RejectsAll) | Err(CompileError::Unsupported { .. }) => {
                bpf!(into &mut self.a; goto (out););
            }
            Err(e) => return Err(e.into()),
        }
        bpf!(into &mut self.a; (l3):);
        self.packet_bounds(&s.network_header)?;
        match emit_filter(&mut self.a, expr, LinkType::RawIp, &src, &env, matched, out) {
            Ok(_) => {}
            // L2-only expressions (arp, ether host ...) can never match an L3 start.
            Err(CompileError::RejectsAll) | Err(CompileError::Unsupported { .. }) => {
                bpf!(into &mut self.a; goto (out););
            }
            Err(e) => return Err(e.into()),
        }
        bpf!(into &mut self.a; (matched):);
        Ok(())
    }

    /// Where a pcap filter finds its packet (r8, r9 from [`Gen::packet_bounds`]) and its
    /// stack area.
    fn pcap_source(&self) -> Result<(PacketSource, FilterEnv), ProbeError> {
        let pkt_type = &self.l.sk_buff.pkt_type;
        let (shift, bits) = pkt_type
            .bitfield
            .map_or((0, pkt_type.size_bytes * 8), |b| (b.bit_offset, b.bit_size));
        let env = FilterEnv {
            stack_top: self.filter_top(),
            wire_len: WireLength::Stack(SLOT_WIRE_LEN),
            // read before the filters when one tests it (see pre_filter_fields)
            pkt_type: MetaSource::Stack {
                offset: self.win.at(pkt_type),
                size: pkt_type.size_bytes as u8,
                shift: shift as u8,
                bits: bits as u8,
            },
            // the device facts, read before the filters when one tests it (pre_filters)
            ifindex: MetaSource::Stack {
                offset: SLOT_IFINDEX,
                size: 4,
                shift: 0,
                bits: 32,
            },
            ..FilterEnv::default()
        };
        let src = PacketSource::KernelMemory {
            base: R8,
            len: R9,
            window: FILTER_WINDOW,
        };
        let room = 512 - (-(self.filter_top() as i32)) as usize;
        if stack_bytes(&src) > room {
            return Err(ProbeError::Layout(format!(
                "the filter needs {} stack bytes, {room} left",
                stack_bytes(&src)
            )));
        }
        Ok((src, env))
    }

    /// r8 = head + header offset, r9 = tail - header offset (0 when negative): the linear
    /// bytes from the header; and at `SLOT_WIRE_LEN` those plus the paged ones
    /// (`data_len`), the packet's length on the wire from the header.
    fn packet_bounds(&mut self, header: &Field) -> Result<(), ProbeError> {
        let s = &self.l.sk_buff;
        let (hdr, hdr_at) = self.window(header)?;
        let (head, head_at) = self.window(&s.head)?;
        let (tail, tail_at) = self.window(&s.tail)?;
        let (data_len, data_len_at) = self.window(&s.data_len)?;
        let ok = self.a.label();
        bpf!(into &mut self.a;
            r1 = *(hdr *)(r10 + hdr_at);
            r8 = *(head *)(r10 + head_at);
            r8 += r1;
            r9 = *(tail *)(r10 + tail_at);
            r9 -= r1;
            if r9 s>= 0 goto (ok);
            r9 = 0;
          (ok):
            r1 = *(data_len *)(r10 + data_len_at);
            r1 += r9;
            *(u32 *)(r10 + SLOT_WIRE_LEN) = r1;
        );
        Ok(())
    }

    /// netns inode, ifindex and MTU into their stack slots.
    fn device_meta(&mut self) -> Result<(), ProbeError> {
        let s = &self.l.sk_buff;
        let d = &self.l.net_device;
        let (dev, dev_at) = self.window(&s.dev)?;
        let no_dev = self.a.label();
        let done_ns = self.a.label();
        bpf!(into &mut self.a;
            *(u32 *)(r10 + SLOT_NETNS) = 0;
            *(u32 *)(r10 + SLOT_IFINDEX) = 0;
            *(u32 *)(r10 + SLOT_MTU) = 0;
            r9 = *(dev *)(r10 + dev_at);
            if r9 == 0 goto (no_dev);
        );
        // dev->ifindex and dev->nd_net.net, in one read when they are close (they are
        // 40 bytes apart on x86-64).
        let net_at = self
            .l
            .netns
            .as_ref()
            .map(|ns| d.nd_net.offset_bytes() + ns.possible_net_net.offset_bytes());
        let ifindex_at = d.ifindex.offset_bytes();
        let span = net_at.and_then(|net| Span::of(&[(ifindex_at, 4), (net, 8)], DEV_SPAN_MAX));
        match (span, net_at) {
            (Some(span), Some(net)) => {
                let buf = self.scratch_below_filters(span.len)?;
                let [ifindex_in, net_in] = [ifindex_at, net].map(|o| buf + span.offset(o));
                read_at_r9(&mut self.a, span.lo, buf, span.len);
                bpf!(into &mut self.a;
                    r1 = *(u32 *)(r10 + ifindex_in);
                    *(u32 *)(r10 + SLOT_IFINDEX) = r1;
                    r3 = *(u64 *)(r10 + net_in);
                );
            }
            (_, net) => {
                read_at_r9(&mut self.a, ifindex_at, SLOT_IFINDEX, 4);
                if let Some(net) = net {
                    read_at_r9(&mut self.a, net, SLOT_KEY, 8);
                    bpf!(into &mut self.a; r3 = *(u64 *)(r10 + SLOT_KEY););
                }
            }
        }
        if let Some(ns) = &self.l.netns {
            // r3 = dev->nd_net.net: net->ns.inum
            self.read_net_inum(&ns.net_ns_inum, done_ns);
            // skb->sk->__sk_common.skc_net.net->ns.inum
            let (sk, sk_at) = self.window(&s.sk)?;
            let sk_net = ns.sock_skc_net.offset_bytes() + ns.possible_net_net.offset_bytes();
            bpf!(into &mut self.a;
                r1 = *(u32 *)(r10 + SLOT_NETNS);
                if r1 != 0 goto (done_ns);
              (no_dev):
                r3 = *(sk *)(r10 + sk_at);
                if r3 == 0 goto (done_ns);
                r3 += sk_net;
                r1 = r10;
                r1 += SLOT_KEY;
                r2 = 8;
                call probe_read_kernel;
                r3 = *(u64 *)(r10 + SLOT_KEY);
            );
            self.read_net_inum(&ns.net_ns_inum, done_ns);
        } else {
            bpf!(into &mut self.a; (no_dev):);
        }
        bpf!(into &mut self.a; (done_ns):);
        self.mtu()
    }

    /// r3 = a `struct net *`: `net->ns.inum` into SLOT_NETNS (to `fail` when r3 is 0).
    fn read_net_inum(&mut self, inum: &Field, fail: Label) {
        bpf!(into &mut self.a;
            if r3 == 0 goto (fail);
            r3 += (inum.offset_bytes());
            r1 = r10;
            r1 += SLOT_NETNS;
            r2 = 4;
            call probe_read_kernel;
        );
    }

    /// pwru's MTU: the route's RTAX_MTU metric when the skb has a dst and it is set, else
    /// the route device's MTU; without a dst, the skb device's. Each path reads one MTU.
    fn mtu(&mut self) -> Result<(), ProbeError> {
        let dev_mtu_at = self.l.net_device.mtu.offset_bytes();
        let (_, skb_dev_at) = self.window(&self.l.sk_buff.dev)?;
        let [done, read_mtu, skb_dev_mtu] = [(); 3].map(|_| self.a.label());
        if let (Some(refdst), Some(dst)) = (&self.l.sk_buff.skb_refdst, &self.l.dst_entry) {
            let (refdst, refdst_at) = self.window(refdst)?;
            let (dev, metrics) = (dst.dev.offset_bytes(), dst.metrics.offset_bytes());
            let dst_dev_mtu = self.a.label();
            bpf!(into &mut self.a;
                r9 = *(refdst *)(r10 + refdst_at);
                r9 &= -2; // clear SKB_DST_NOREF
                if r9 == 0 goto (skb_dev_mtu);
            );
            // dst->dev and dst->_metrics, in one read when close (16 bytes apart on x86-64).
            let (dev_in, metrics_in) = match Span::of(&[(dev, 8), (metrics, 8)], DEV_SPAN_MAX) {
                Some(span) => {
                    let buf = self.scratch_below_filters(span.len)?;
                    read_at_r9(&mut self.a, span.lo, buf, span.len);
                    (buf + span.offset(dev), buf + span.offset(metrics))
                }
                None => {
                    let buf = self.scratch_below_filters(16)?;
                    read_at_r9(&mut self.a, dev, buf, 8);
                    read_at_r9(&mut self.a, metrics, buf + 8, 8);
                    (buf, buf + 8)
                }
            };
            bpf!(into &mut self.a;
                r3 = *(u64 *)(r10 + metrics_in);
                r3 &= -4; // DST_METRICS_FLAGS
                if r3 == 0 goto (dst_dev_mtu);
                r3 += (RTAX_MTU_INDEX * 4);
                r1 = r10;
                r1 += SLOT_KEY;
                r2 = 4;
                call probe_read_kernel;
                r1 = *(u32 *)(r10 + SLOT_KEY);
                if w1 == 0 goto (dst_dev_mtu);
                *(u32 *)(r10 + SLOT_MTU) = r1;
                goto (done);
                // No MTU metric on the route: the route device's MTU.
              (dst_dev_mtu):
                r3 = *(u64 *)(r10 + dev_in);
                goto (read_mtu);
            );
        }
        bpf!(into &mut self.a;
          (skb_dev_mtu):
            r3 = *(u64 *)(r10 + skb_dev_at);
          (read_mtu):
            if r3 == 0 goto (done);
            r3 += dev_mtu_at;
            r1 = r10;
            r1 += SLOT_MTU;
            r2 = 4;
            call probe_read_kernel;
          (done):
        );
        Ok(())
    }

    /// `len` bytes of scratch just below the skb window: the filters' area, free while the
    /// device facts are read (before the pcap filter, or after it decided).
    fn scratch_below_filters(&self, len: u32) -> Result<i16, ProbeError> {
        let at = i32::from(self.filter_top()) - ((len as i32 + 7) & !7);
        match at >= -(STACK_BYTES as i32) {
            true => Ok(at as i16),
            false => Err(ProbeError::Layout(format!(
                "no room on the stack for {len} bytes of device facts"
            ))),
        }
    }

    /// The event record: header, the sections' parts, submit (see `record`).
    fn event(&mut self) -> Result<(), ProbeError> {
        let env = RecordEnv {
            layout: self.l,
            attach: self.at,
            regs: &self.o.arch.regs,
            has_get_func_ip: self.o.has_get_func_ip,
            window: self.win,
            frame: Frame {
                scratch: SLOT_KEY,
                device: DeviceSlots {
                    netns: SLOT_NETNS,
                    ifindex: SLOT_IFINDEX,
                    mtu: SLOT_MTU,
                },
                spare: SLOT_L3_LEN,
                below: self.filter_top(),
            },
            out: self.out,
        };
        record::emit(&mut self.a, &env, &self.o.sections)
    }
}

/// `len` bytes at `r9 + offset` (kernel memory) into the stack at `slot`, with
/// `bpf_probe_read_kernel` (zeroed on a failed read); clobbers r1-r5.
fn read_at_r9(a: &mut Asm, offset: u32, slot: i16, len: u32) {
    bpf!(into a;
        r3 = r9;
        r3 += offset;
        r1 = r10;
        r1 += slot;
        r2 = len;
        call probe_read_kernel;
    );
}

/// `r0 = bpf_map_lookup_elem(map, r10 + key)`.
/// The u64 at `r7 + offset` (kernel memory) into the stack slot `slot`; to `failed` when
/// it cannot be read.
fn read_u64_at_r7(a: &mut Asm, offset: u32, slot: i16, failed: Label) {
    bpf!(into a;
        r3 = r7;
        r3 += (offset as i32);
        r1 = r10;
        r1 += slot;
        r2 = 8;
        call probe_read_kernel;
        if r0 != 0 goto (failed);
    );
}

fn lookup(a: &mut Asm, map: &MapDef, key: i16) {
    bpf!(into a;
        r1 = map[(map)];
        r2 = r10;
        r2 += key;
        call map_lookup_elem;
    );
}

/// `map[r10 + key] = r10 + value` (BPF_ANY).
fn update_elem(a: &mut Asm, map: &MapDef, key: i16, value: i16) {
    bpf!(into a;
        r1 = map[(map)];
        r2 = r10;
        r2 += key;
        r3 = r10;
        r3 += value;
        r4 = 0;
        call map_update_elem;
    );
}

/// `delete map[r10 + key]`.
fn delete_elem(a: &mut Asm, map: &MapDef, key: i16) {
    bpf!(into a;
        r1 = map[(map)];
        r2 = r10;
        r2 += key;
        call map_delete_elem;
    );
}

/// `key` points at a stack identity (a map value of `skb_stackid`): deletes
/// `stackid_skb[*key]` when it still names the skb at `r10 + SLOT_KEY`. Moves `key` to
/// r9; clobbers r0-r5; falls through (or jumps to `done`) when finished.
fn forget_stack(a: &mut Asm, key: Reg, done: Label) {
    bpf!(into a;
        r9 = (key);
        r1 = map[maps::STACKID_SKB];
        r2 = r9;
        call map_lookup_elem;
        if r0 == 0 goto (done);
        r1 = *(u64 *)(r0 + 0);
        r2 = *(u64 *)(r10 + SLOT_KEY);
        if r1 != r2 goto (done);
        r1 = map[maps::STACKID_SKB];
        r2 = r9;
        call map_delete_elem;
    );
}

/// Writes the identity of the kernel stack the program runs on (see [`StackTracking`])
/// as a u64 to `r10 + slot`; `r6` must hold the context. Clobbers r0-r5 and `aux`.
pub fn emit_stack_identity(
    a: &mut Asm,
    at: &Attachment,
    arch: &ArchFacts,
    st: StackTracking,
    slot: i16,
    aux: i16,
) {
    let sp = arch.regs.sp;
    let stack_base = arch.stack_base_mask();
    match at {
        Attachment::Kprobe { .. } => bpf!(into a;
            r1 = *(u64 *)(r6 + sp);
            *(u64 *)(r10 + slot) = r1;
        ),
        // A pointer cannot be masked; reading its spilled copy back gives its value.
        Attachment::Tracepoint { .. }
        | Attachment::TcProgram { .. }
        | Attachment::XdpProgram { .. }
        | Attachment::Fentry { .. }
        | Attachment::SkbContext => {
            let on_stack = if *at == Attachment::SkbContext {
                R10
            } else {
                R6
            };
            bpf!(into a;
                *(u64 *)(r10 + aux) = (on_stack);
                r1 = r10;
                r1 += slot;
                r2 = 8;
                r3 = r10;
                r3 += aux;
                call probe_read_kernel;
            );
        }
    }
    bpf!(into a;
        r1 = *(u64 *)(r10 + slot);
        r1 &= stack_base;
    );
    if let Some(off) = st.task_stack_offset {
        let done = a.label();
        bpf!(into a;
            *(u64 *)(r10 + slot) = r1;
            call get_current_task;
            r3 = r0;
            r3 += off;
            r1 = r10;
            r1 += aux;
            r2 = 8;
            call probe_read_kernel;
            r1 = *(u64 *)(r10 + slot);
            r2 = *(u64 *)(r10 + aux);
            if r1 == r2 goto (done);
            // Not the task's stack: this CPU's interrupt stack.
            call get_smp_processor_id;
            r1 = r0;
            r1 += 1;
          (done):
        );
    }
    bpf!(into a; *(u64 *)(r10 + slot) = r1;);
}

/// What the program run when the kernel frees an skb forgets about it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UntrackOptions {
    /// `--filter-track-skb`: delete it from `tracked_skbs`.
    pub track_skb: bool,
    /// `--filter-track-skb-by-stackid`: like pwru, forget the mapping of the stack the
    /// skb is freed on and `skb_stackid[skb]`; also `stackid_skb[skb_stackid[skb]]`
    /// when that stack still names this skb (it was recorded on another stack).
    pub track_stackid: Option<StackTracking>,
    /// `--output-journey` with tracking: also forget the skb's entry in `clone_parents`.
    pub clone_parents: bool,
}

/// The tiny program that forgets a tracked skb when the kernel frees it
/// (`kfree_skbmem(skb)`, or the `kfree_skb`/`consume_skb` tracepoints).
pub fn build_untrack(attach: &Attachment, arch: &ArchFacts) -> Result<Program, ProbeError> {
    build_untrack_with(
        attach,
        arch,
        UntrackOptions {
            track_skb: true,
            track_stackid: None,
            clone_parents: false,
        },
    )
}

/// [`build_untrack`] for the maps `opts` names.
pub fn build_untrack_with(
    attach: &Attachment,
    arch: &ArchFacts,
    opts: UntrackOptions,
) -> Result<Program, ProbeError> {
    let mut asm = Asm::new();
    let a = &mut asm;
    let out = a.label();
    bpf!(into a; r6 = r1;);
    match attach {
        Attachment::Kprobe { skb_arg, .. } => {
            let arg = kprobe_arg(&arch.regs, *skb_arg);
            bpf!(into a; r1 = *(u64 *)(r1 + arg););
        }
        Attachment::Tracepoint { skb_arg, .. } => {
            let arg = *skb_arg as i16 * 8;
            bpf!(into a; r1 = *(u64 *)(r1 + arg););
        }
        // r1 is the skb already.
        Attachment::SkbContext => {}
        Attachment::TcProgram { .. } | Attachment::XdpProgram { .. } => {
            bpf!(into a; r1 = *(u64 *)(r1 + 0););
        }
        Attachment::Fentry { skb_arg, .. } => {
            let arg = fentry_arg(*skb_arg);
            bpf!(into a; r1 = *(u64 *)(r1 + arg););
        }
    }
    bpf!(into a;
        if r1 == 0 goto (out);
        *(u64 *)(r10 + SLOT_KEY) = r1;
    );
    if opts.track_skb {
        delete_elem(a, maps::TRACKED_SKBS, SLOT_KEY);
    }
    if opts.clone_parents {
        delete_elem(a, maps::CLONE_PARENTS, SLOT_KEY);
    }
    if let Some(st) = opts.track_stackid {
        let delete = a.label();
        // pwru: an skb freed on a stack ends that stack's attribution.
        emit_stack_identity(a, attach, arch, st, SLOT_STACKID, SLOT_AUX);
        delete_elem(a, maps::STACKID_SKB, SLOT_STACKID);
        lookup(a, maps::SKB_STACKID, SLOT_KEY);
        bpf!(into a; if r0 == 0 goto (out););
        forget_stack(a, R0, delete);
        bpf!(into a; (delete):);
        delete_elem(a, maps::SKB_STACKID, SLOT_KEY);
    }
    bpf!(into a;
      (out):
        r0 = 0;
        exit;
    );
    Ok(asm.finish()?)
}

/// Clone following, entry half: a kprobe on `skb_clone`/`skb_copy`/`__pskb_copy_fclone`
/// (the source skb is argument 1) that stashes the source by `pid_tgid` when it is
/// tracked. Returns in [`build_clone_return`] pick it up; fexit would do both at once,
/// but kernels deny fexit where kprobes work (and the reverse).
pub fn build_clone_entry(regs: &PtRegsLayout) -> Result<Program, ProbeError> {
    let mut asm = Asm::new();
    let a = &mut asm;
    let out = a.label();
    let skb = regs.args[0];
    bpf!(into a;
        r1 = *(u64 *)(r1 + skb);
        if r1 == 0 goto (out);
        *(u64 *)(r10 + SLOT_KEY) = r1;
    );
    lookup(a, maps::TRACKED_SKBS, SLOT_KEY);
    bpf!(into a;
        if r0 == 0 goto (out);
        call get_current_pid_tgid;
        *(u64 *)(r10 + SLOT_AUX) = r0;
    );
    update_elem(a, maps::CLONE_STASH, SLOT_AUX, SLOT_KEY);
    bpf!(into a;
      (out):
        r0 = 0;
        exit;
    );
    Ok(asm.finish()?)
}

/// `--output-bpfmap`, a lookup's entry half: stashes the map (first argument) and key
/// (second) pointers for this CPU in [`maps::BPFMAP_STASH`], where the record program on
/// the function's return finds them.
pub fn build_map_lookup_entry(regs: &PtRegsLayout) -> Result<Program, ProbeError> {
    let mut asm = Asm::new();
    let a = &mut asm;
    let out = a.label();
    let (map, key) = (regs.args[0], regs.args[1]);
    bpf!(into a;
        r6 = r1;
        *(u32 *)(r10 + SLOT_VALUE) = 0;
    );
    lookup(a, maps::BPFMAP_STASH, SLOT_VALUE);
    bpf!(into a;
        if r0 == 0 goto (out);
        r1 = *(u64 *)(r6 + map);
        *(u64 *)(r0 + 0) = r1;
        r1 = *(u64 *)(r6 + key);
        *(u64 *)(r0 + 8) = r1;
      (out):
        r0 = 0;
        exit;
    );
    Ok(asm.finish()?)
}

/// Clone following, return half: a kretprobe on the same functions that marks the new
/// skb (the return value) tracked when this task stashed a tracked source; with
/// `clone_parents`, it also records the source as the new skb's parent
/// (`maps::CLONE_PARENTS`).
pub fn build_clone_return(regs: &PtRegsLayout, clone_parents: bool) -> Result<Program, ProbeError> {
    let mut asm = Asm::new();
    let a = &mut asm;
    let out = a.label();
    let forget = a.label();
    let return_value = regs.return_value;
    bpf!(into a;
        r6 = r1;
        call get_current_pid_tgid;
        *(u64 *)(r10 + SLOT_AUX) = r0;
    );
    lookup(a, maps::CLONE_STASH, SLOT_AUX);
    bpf!(into a;
        if r0 == 0 goto (out);
        r1 = *(u64 *)(r6 + return_value);
        if r1 == 0 goto (forget);
        *(u64 *)(r10 + SLOT_KEY) = r1;
    );
    if clone_parents {
        // the stashed source, before the updates clobber r0 (in SLOT_STACKID, which
        // this program has no other use for)
        bpf!(into a;
            r1 = *(u64 *)(r0 + 0);
            *(u64 *)(r10 + SLOT_STACKID) = r1;
        );
    }
    bpf!(into a; *(u32 *)(r10 + SLOT_VALUE) = 1;);
    update_elem(a, maps::TRACKED_SKBS, SLOT_KEY, SLOT_VALUE);
    if clone_parents {
        update_elem(a, maps::CLONE_PARENTS, SLOT_KEY, SLOT_STACKID);
    }
    bpf!(into a; (forget):);
    delete_elem(a, maps::CLONE_STASH, SLOT_AUX);
    bpf!(into a;
      (out):
        r0 = 0;
        exit;
    );
    Ok(asm.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::{KernelBtf, Kmods, SYS_VMLINUX_BTF};

    #[test]
    fn bpf_program_kinds_name_their_attachment_and_matched_map() {
        let table = [
            (BpfProgKind::Tc, false, maps::TC_MATCHED.name),
            (BpfProgKind::Xdp, true, maps::XDP_MATCHED.name),
        ];
        for (kind, xdp, map) in table {
            for exit in [false, true] {
                let at = kind.attachment(7, exit);
                assert_eq!(at.bpf_program(), Some((kind, 7, exit)), "{at:?}");
                assert_eq!(at.is_xdp(), xdp, "{at:?}");
            }
            assert_eq!(kind.matched_map().name, map);
        }
        assert_eq!(Attachment::SkbContext.bpf_program(), None);
        assert!(!Attachment::SkbContext.is_xdp());
    }

    /// On XDP programs the mark filter and `--filter-skb-expr` leave the program as it is;
    /// `--filter-xdp-expr` changes it (and only there); without `xdp_buff` in BTF the XDP
    /// probe is refused with a reason.
    #[test]
    fn xdp_probes_take_the_xdp_expression_and_no_skb_only_filter() {
        if !std::path::Path::new(SYS_VMLINUX_BTF).exists() {
            eprintln!("skipped: no {SYS_VMLINUX_BTF}");
            return;
        }
        let btf = KernelBtf::open_system(&Kmods::None).expect("system BTF opens");
        let layout = SkbLayout::resolve(&btf).expect("layout");
        let arch = ArchFacts::resolve(&btf).expect("arch facts");
        let base = ProbeOptions {
            filter: crate::pcapc::parse("udp").expect("parses"),
            ..ProbeOptions::new(arch)
        };
        let expr = |root, text| Some(skb_expr::compile_filter(&btf, root, text).unwrap());
        let skb_only = ProbeOptions {
            mark: Some((1, 0xff)),
            skb_expr: expr(skb_expr::SKB, "skb->len > 1"),
            ..base.clone()
        };
        let with_xdp_expr = ProbeOptions {
            xdp_expr: expr(skb_expr::XDP, "xdp->rxq->queue_index == 1"),
            ..base.clone()
        };
        for exit in [false, true] {
            let at = BpfProgKind::Xdp.attachment(3, exit);
            let insns = |o: &ProbeOptions| build(&layout, o, &at).unwrap().insns;
            assert_eq!(insns(&base), insns(&skb_only), "exit {exit}");
            // fexit reports what fentry matched: no filters there.
            assert_eq!(insns(&base) != insns(&with_xdp_expr), !exit, "exit {exit}");
            let tc = Attachment::TcProgram { prog_id: 3, exit };
            let tc_insns = |o: &ProbeOptions| build(&layout, o, &tc).unwrap().insns;
            assert_eq!(tc_insns(&base), tc_insns(&with_xdp_expr), "exit {exit}");
        }
        let no_xdp = SkbLayout {
            xdp_buff: None,
            ..layout.clone()
        };
        let err = build(&no_xdp, &base, &BpfProgKind::Xdp.attachment(3, false)).unwrap_err();
        assert!(err.to_string().contains("xdp_buff"), "{err}");
    }
}
