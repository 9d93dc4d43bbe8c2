//! Turns events into pwru's text: the header and table columns, JSON lines, process and
//! interface names, kernel symbols and drop reasons, written through one buffered writer.

pub mod iface;
pub mod journey;
pub mod json;
pub mod ksyms;
pub mod netns;
pub mod pcap;
pub mod process;
pub mod rotate;
pub mod sections;
pub mod summary;
pub mod text;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use crate::btf::FieldPath;
use crate::events::{Event, EventKind, EventSink, Flow};
use crate::settings::{OutputSettings, PcapTarget, TimestampMode};

pub use iface::IfaceNames;
use journey::Journeys;
use json::JsonObject;
pub use ksyms::{Ksym, Ksyms, KsymsError};
pub use netns::NetnsNames;
pub use pcap::{PcapError, PcapOutput};
pub use process::ProcessNames;
pub use rotate::{RotatingFile, RotationPolicy};
use sections::skb_dump::SkbDump;
use sections::tuple::{push_tuple, Tuple};
use sections::{Cx, JsonAt, Placed, Sections, TableAt};
pub use summary::KernelCounts;
use summary::Summary;
use text::{pad_ascii_from, pad_from, push_dec, push_hex_prefixed, WallClock};

/// What to print, taken from the command line; the sections (`sections::REGISTRY`) turn
/// on from it, and so decide what the probes record as well.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutputOptions {
    pub timestamp: TimestampMode,
    pub meta: bool,
    pub tuple: bool,
    pub tcp_flags: bool,
    /// The inner tuple of encapsulated traffic (`--output-tunnel`).
    pub tunnel: bool,
    pub caller: bool,
    pub stack: bool,
    /// The `__sk_buff->cb[]` column (`--output-skb-cb` or `--filter-trace-tc`).
    pub cb: bool,
    pub json: bool,
    /// The NETNS NAME column and its width (`--output-netns-names`, `--netns-names-max-length`).
    pub netns_names: Option<usize>,
    /// Stop after this many events (0 = no limit).
    pub limit_lines: u64,
    /// `--output-skb-metadata` fields resolved through BTF, printed as ` name=value`
    /// after FUNC (not in JSON).
    pub skb_metadata: Vec<FieldPath>,
    /// `--output-xdp-metadata`: the same on the `xdp_buff` of XDP program events.
    pub xdp_metadata: Vec<FieldPath>,
    /// `--output-skb`/`--output-skb-shared-info`: what the probe renders as text.
    pub skb_dump: Option<SkbDump>,
    /// `--summary`: drops by reason and function, and totals, at exit.
    pub summary: bool,
    /// `--output-journey`: one block (or JSON object) per packet instead of a line per event.
    pub journey: bool,
    /// Record the skb a followed clone was made from (the journey groups it with its
    /// packet): `TraceSettings::records_clone_parents`.
    pub clone_parents: bool,
    /// `--output-pcap`'s snap length: the probes copy the packet bytes.
    pub pcap_snaplen: Option<u32>,
    /// `--output-bpfmap`: the `struct bpf_map` offsets the probes read.
    pub bpfmap: Option<sections::bpfmap::BpfMapFields>,
}

impl OutputOptions {
    pub fn from_settings(settings: &OutputSettings) -> Self {
        Self {
            timestamp: settings.timestamp,
            meta: settings.meta,
            // A journey starts with the packet's tuple.
            tuple: settings.tuple || settings.journey,
            tcp_flags: settings.tcp_flags,
            tunnel: settings.tunnel,
            caller: settings.caller,
            stack: settings.stack,
            cb: settings.skb_cb,
            json: settings.json,
            netns_names: settings
                .netns_names
                .map(|width| width.max(netns::MIN_NETNS_NAME_WIDTH)),
            limit_lines: settings.limit_lines,
            // Typed from BTF by the tracer.
            skb_metadata: Vec::new(),
            xdp_metadata: Vec::new(),
            skb_dump: None,
            summary: settings.summary,
            journey: settings.journey,
            // Set by the tracer, which knows whether skbs are tracked.
            clone_parents: false,
            pcap_snaplen: settings.pcap.as_ref().map(|p| p.snaplen),
            // Resolved from BTF by the tracer.
            bpfmap: None,
        }
    }
}

/// Name sources for the FUNC, CALLER, PROCESS and IFACE columns.
#[derive(Debug, Default)]
pub struct Names {
    pub ksyms: Ksyms,
    /// `enum skb_drop_reason` value -> name (from BTF).
    pub drop_reasons: BTreeMap<u64, String>,
    /// Function name -> 1-based position of its `enum skb_drop_reason` parameter (BTF).
    pub drop_reason_args: HashMap<String, u16>,
    /// Names for probe ids that are not kernel text addresses (e.g. tracepoints), looked up
    /// before kallsyms.
    pub probe_names: HashMap<u64, String>,
    /// kprobe-multi links made by ftrace location: (location, probe id), sorted by
    /// location. Their events carry the function's entry, at or just before its location
    /// (x86's `endbr64` sits between them on IBT kernels).
    pub multi_locations: Vec<(u64, u64)>,
    pub processes: ProcessNames,
    pub ifaces: IfaceNames,
    /// `/run/netns` names for the NETNS NAME column.
    pub netns: NetnsNames,
}

impl Names {
    /// The id naming `ev`'s probe: its probe address, except for a kprobe-multi event of a
    /// link made by location, whose function entry leads to the first probed location at
    /// or after it.
    pub fn probe_id(&self, ev: &Event) -> u64 {
        if ev.kind != EventKind::KprobeMulti || self.multi_locations.is_empty() {
            return ev.probe_addr;
        }
        let at = self
            .multi_locations
            .partition_point(|&(location, _)| location < ev.probe_addr);
        self.multi_locations
            .get(at)
            .map_or(ev.probe_addr, |&(_, id)| id)
    }

    /// The name `ev`'s drop-reason parameter is known by: its probe name (tracepoints,
    /// kprobe-multi ids) or its kallsyms symbol.
    pub fn probe_key(&self, ev: &Event) -> Option<&str> {
        let id = self.probe_id(ev);
        self.probe_names
            .get(&id)
            .map(String::as_str)
            .or_else(|| self.ksyms.exact(id).map(|sym| &*sym.name))
    }

    /// The `enum skb_drop_reason` value `ev` carries, when its function (`key`, from
    /// [`Names::probe_key`]) has one.
    pub fn drop_reason(&self, ev: &Event, key: &str) -> Option<u64> {
        let reason_arg = self.drop_reason_args.get(key).copied();
        sections::drop_reason::drop_reason_for(ev, key, reason_arg)
    }

    /// Kallsyms plus, when `scan_ifaces` (the meta columns are on), the interface names of
    /// every netns. Returns the netns that could not be scanned as warnings (their interfaces
    /// print as bare ifindexes); add drop reasons and probe names afterwards.
    pub fn from_system(scan_ifaces: bool) -> Result<(Self, Vec<String>), KsymsError> {
        let ksyms = Ksyms::load()?;
        let mut warnings = Vec::new();
        let ifaces =
            if scan_ifaces {
                let (ifaces, errors) = IfaceNames::scan();
                warnings.extend(errors.0.iter().map(|(path, e)| {
                    format!("listing interfaces of netns {}: {e}", path.display())
                }));
                ifaces
            } else {
                IfaceNames::new()
            };
        Ok((
            Self {
                ksyms,
                ifaces,
                ..Self::default()
            },
            warnings,
        ))
    }
}

/// Where the trace goes.
pub enum OutputTarget {
    Stdout,
    /// `--output-pcap -` without `--output-file`: stdout carries the packets.
    Stderr,
    /// Appends to this file (created if missing), rotating it by the policy.
    File(PathBuf, RotationPolicy),
    /// Any writer (tests, benches).
    Writer(Box<dyn Write + Send>),
}

impl OutputTarget {
    /// `--output-file`, else stdout (stderr when `--output-pcap -` writes there).
    pub fn from_settings(settings: &OutputSettings) -> Self {
        let pcap_on_stdout = settings
            .pcap
            .as_ref()
            .is_some_and(|p| p.target == PcapTarget::Stdout);
        match &settings.file {
            Some(file) => Self::File(file.path.clone(), RotationPolicy::from_settings(file)),
            None if pcap_on_stdout => Self::Stderr,
            None => Self::Stdout,
        }
    }
}

/// Bytes of formatted lines collected before they are written out.
const PENDING_LIMIT: usize = 1 << 16;

/// Formats and writes events. Lines are formatted straight into one pending buffer that is
/// written out when it fills, after every line when stdout is a terminal, and on
/// [`Output::flush`] (call it, or [`EventSink::drained`], when the ring buffer is drained).
pub struct Output {
    printer: Printer,
    out: Box<dyn Write + Send>,
    line_buffered: bool,
    /// Formatted lines not yet written.
    line: String,
    func: String,
    last_seen: crate::fasthash::FastMap<u64, u64>,
    printed: u64,
    clock: WallClock,
    /// `--summary`'s counts.
    summary: Option<Summary>,
    /// `--output-journey`'s packets.
    journeys: Option<Journeys>,
    /// `--output-pcap`'s file.
    pcap: Option<PcapOutput>,
}

/// The options, the name sources and the active sections at each place.
struct Printer {
    opts: OutputOptions,
    names: Names,
    /// The sections printing at each [`TableAt`] / [`JsonAt`] (by discriminant).
    table: [Vec<Placed>; 4],
    json: [Vec<Placed>; 5],
    scratch: String,
    /// Where the record keeps a followed clone's parent (`--output-journey`).
    clone_parent_at: Option<usize>,
}

impl Printer {
    fn new(opts: OutputOptions, names: Names) -> Self {
        let sections = Sections::new(&opts);
        let table = [
            TableAt::Columns,
            TableAt::Func,
            TableAt::AfterFunc,
            TableAt::Lines,
        ]
        .map(|at| sections.table_at(at));
        let json = [
            JsonAt::Head,
            JsonAt::Func,
            JsonAt::Netns,
            JsonAt::Packet,
            JsonAt::Text,
        ]
        .map(|at| sections.json_at(at));
        let clone_parent_at = sections.tail_at_of::<sections::clone_parent::CloneParentSection>();
        Self {
            opts,
            names,
            table,
            json,
            scratch: String::with_capacity(256),
            clone_parent_at,
        }
    }

    /// The sections' text at `at` of a table line.
    #[inline(always)]
    fn table(
        &mut self,
        at: TableAt,
        ev: &Event,
        frames: &[u64],
        func_start: usize,
        line: &mut String,
    ) {
        let Self {
            names,
            table,
            scratch,
            ..
        } = self;
        each(&mut table[at as usize], |p| {
            scratch.clear();
            let mut cx = Cx {
                names,
                width: &mut p.width,
                func_start,
                frames,
                tail_at: p.tail_at,
                scratch,
            };
            p.section.table(at, &mut cx, ev, line);
        });
    }

    /// The sections' keys at `at` of a JSON object.
    #[inline(always)]
    fn json(&mut self, at: JsonAt, ev: &Event, frames: &[u64], obj: &mut JsonObject<'_>) {
        let Self {
            names,
            json,
            scratch,
            ..
        } = self;
        each(&mut json[at as usize], |p| {
            scratch.clear();
            let mut cx = Cx {
                names,
                width: &mut p.width,
                func_start: 0,
                frames,
                tail_at: p.tail_at,
                scratch,
            };
            p.section.json(at, &mut cx, ev, obj);
        });
    }

    /// FUNC: probe name or kallsyms symbol (else `0x<addr>`), `(tc)` / `(xdp)` for
    /// BPF-program events, then what the sections append (the drop reason, the verdict).
    fn func(&self, ev: &Event, buf: &mut String) {
        let names = &self.names;
        buf.clear();
        let id = names.probe_id(ev);
        let probe_name = if names.probe_names.is_empty() {
            None
        } else {
            names.probe_names.get(&id)
        };
        let key: &str = if let Some(name) = probe_name {
            buf.push_str(name);
            name
        } else if let Some(sym) = names.ksyms.exact(id) {
            sym.push_to(buf);
            &sym.name
        } else {
            push_hex_prefixed(buf, ev.probe_addr);
            ""
        };
        match ev.kind {
            EventKind::Tc => buf.push_str("(tc)"),
            EventKind::Xdp => buf.push_str("(xdp)"),
            EventKind::Kprobe
            | EventKind::KprobeMulti
            | EventKind::Tracepoint
            | EventKind::Fentry => {}
        }
        for p in &self.table[TableAt::Func as usize] {
            p.section.func(names, ev, key, buf);
        }
    }
}

/// Calls `one` for each section at a place, the first two from call sites of their own.
/// A place calls the same sections on every line; through one call site the virtual call
/// would alternate between them (meta, tuple) and be mispredicted each time on simple
/// predictors (callgrind, table with tuple and caller: 7 indirect mispredictions a line
/// before, 1 after).
#[inline(always)]
fn each(list: &mut [Placed], mut one: impl FnMut(&mut Placed)) {
    if let [first, rest @ ..] = list {
        one(first);
        if let [second, rest @ ..] = rest {
            one(second);
            rest.iter_mut().for_each(one);
        }
    }
}

impl Output {
    /// Opens the target (the file is opened for append).
    pub fn new(opts: OutputOptions, names: Names, target: OutputTarget) -> io::Result<Self> {
        let opts_summary = opts.summary;
        let journeys = opts.journey.then(|| Journeys::new(opts.json));
        let (writer, line_buffered): (Box<dyn Write + Send>, bool) = match target {
            OutputTarget::Stdout => (Box::new(io::stdout()), io::stdout().is_terminal()),
            OutputTarget::Stderr => (Box::new(io::stderr()), io::stderr().is_terminal()),
            OutputTarget::File(path, policy) => {
                (Box::new(RotatingFile::open(&path, policy)?), false)
            }
            OutputTarget::Writer(w) => (w, false),
        };
        Ok(Self {
            printer: Printer::new(opts, names),
            out: writer,
            line_buffered,
            line: String::with_capacity(PENDING_LIMIT + 4096),
            func: String::with_capacity(128),
            last_seen: crate::fasthash::FastMap::default(),
            printed: 0,
            clock: WallClock::default(),
            summary: opts_summary.then(Summary::default),
            journeys,
            pcap: None,
        })
    }

    /// Also writes every printed event to `pcap` (`--output-pcap`).
    pub fn set_pcap(&mut self, pcap: PcapOutput) {
        self.pcap = Some(pcap);
    }

    /// The name sources (e.g. to add interfaces or drop reasons after start).
    pub fn names_mut(&mut self) -> &mut Names {
        &mut self.printer.names
    }

    /// Writes the header line (table output only).
    pub fn print_header(&mut self) -> io::Result<()> {
        if self.printer.opts.json || self.printer.opts.journey {
            return Ok(());
        }
        self.line.push_str(&header_line(&self.printer.opts));
        self.after_line()
    }

    /// Formats and writes one event; a no-op once `--output-limit-lines` is reached.
    pub fn print(&mut self, event: &Event) -> io::Result<()> {
        self.print_with_stack(event, &[])
    }

    /// Like [`Output::print`], with the event's kernel stack frames (`--output-stack`).
    pub fn print_with_stack(&mut self, event: &Event, frames: &[u64]) -> io::Result<()> {
        if self.limit_reached() {
            return Ok(());
        }
        if let Some(pcap) = &mut self.pcap {
            self.printer.func(event, &mut self.func);
            pcap.write(event, &mut self.printer.names, &self.func)
                .map_err(io::Error::other)?;
        }
        if self.journeys.is_some() {
            self.add_to_journey(event);
        } else {
            self.append_event(event, frames);
        }
        self.printed += 1;
        if let Some(summary) = &mut self.summary {
            let names = &self.printer.names;
            let func = names.probe_key(event).unwrap_or("");
            summary.observe(names, event, func, names.drop_reason(event, func));
        }
        self.after_line()
    }

    /// `--output-journey`: adds `event` to its packet's journey (writing a journey it ends).
    fn add_to_journey(&mut self, event: &Event) {
        let Self {
            printer,
            line,
            func,
            journeys,
            ..
        } = self;
        let Some(journeys) = journeys else { return };
        printer.func(event, func);
        let names = &printer.names;
        let key = names.probe_key(event).unwrap_or("");
        let reason = names
            .drop_reason(event, key)
            .map(|r| match names.drop_reasons.get(&r) {
                Some(name) => name.clone(),
                None => r.to_string(),
            });
        let tuple = event.get::<Tuple>().map(|t| {
            let mut text = String::with_capacity(64);
            push_tuple(&mut text, &t, printer.opts.tcp_flags);
            text
        });
        let step = journey::Step {
            skb: event.skb_addr,
            ktime_ns: event.ktime_ns,
            key,
            func,
            reason: reason.as_deref(),
            tuple: tuple.as_deref(),
            parent: printer
                .clone_parent_at
                .and_then(|at| sections::clone_parent::parent(event, at)),
        };
        journeys.observe(step, line);
    }

    /// Writes what comes at exit: the journeys still open (`--output-journey`), then
    /// `--summary` (a table, or one JSON object).
    pub fn finish(&mut self, kernel: KernelCounts) -> io::Result<()> {
        if let Some(journeys) = &mut self.journeys {
            journeys.finish(&mut self.line);
        }
        if let Some(summary) = &self.summary {
            if self.printer.opts.json {
                summary.push_json(&kernel, &mut self.line);
            } else {
                summary.push_table(&kernel, &mut self.line);
            }
        }
        self.flush_pcap()?;
        self.flush()
    }

    /// Writes out the pcap-ng packets buffered so far.
    fn flush_pcap(&mut self) -> io::Result<()> {
        match &mut self.pcap {
            Some(pcap) => pcap.flush().map_err(io::Error::other),
            None => Ok(()),
        }
    }

    /// The text [`Output::print_with_stack`] would write for `event`, newline included,
    /// without writing it (updates the same state: column widths, relative timestamps).
    pub fn format_event(&mut self, event: &Event, frames: &[u64]) -> io::Result<String> {
        let keep = self.line.len();
        self.append_event(event, frames);
        let text = self.line[keep..].to_string();
        self.line.truncate(keep);
        Ok(text)
    }

    /// Formats `event` at the end of the pending buffer.
    fn append_event(&mut self, event: &Event, frames: &[u64]) {
        if self.printer.opts.json {
            self.format_json(event, frames);
        } else {
            self.format_table(event, frames);
        }
    }

    /// Writes the pending lines to the target.
    fn write_pending(&mut self) -> io::Result<()> {
        if !self.line.is_empty() {
            let result = self.out.write_all(self.line.as_bytes());
            self.line.clear();
            result?;
        }
        Ok(())
    }

    /// Events printed so far.
    pub fn printed(&self) -> u64 {
        self.printed
    }

    /// Whether `--output-limit-lines` events have been printed.
    pub fn limit_reached(&self) -> bool {
        let limit = self.printer.opts.limit_lines;
        limit != 0 && self.printed >= limit
    }

    /// Writes out buffered lines.
    pub fn flush(&mut self) -> io::Result<()> {
        self.write_pending()?;
        self.out.flush()
    }

    fn after_line(&mut self) -> io::Result<()> {
        if self.line_buffered {
            self.flush()
        } else if self.line.len() >= PENDING_LIMIT {
            self.write_pending()
        } else {
            Ok(())
        }
    }

    /// TIMESTAMP value: ktime, or ns since this skb's previous event (0 for the first).
    fn timestamp(&mut self, event: &Event) -> u64 {
        match self.printer.opts.timestamp {
            TimestampMode::Relative => {
                let prev = self.last_seen.insert(event.skb_addr, event.ktime_ns);
                prev.map_or(0, |p| event.ktime_ns.wrapping_sub(p))
            }
            _ => event.ktime_ns,
        }
    }

    /// `[TIME] SKB CPU PROCESS [TIMESTAMP] <columns> FUNC <after func>`, then lines.
    fn format_table(&mut self, ev: &Event, frames: &[u64]) {
        let ts = self.timestamp(ev);
        let Self {
            printer,
            line,
            func,
            clock,
            ..
        } = self;
        printer.func(ev, func);
        let timestamp = printer.opts.timestamp;
        if timestamp == TimestampMode::Absolute {
            clock.push_now(line);
            line.push(' ');
        }
        let start = line.len();
        push_hex_prefixed(line, ev.skb_addr);
        pad_ascii_from(line, start, 18);
        line.push(' ');
        let start = line.len();
        push_dec(line, ev.cpu);
        pad_ascii_from(line, start, 3);
        line.push(' ');
        let start = line.len();
        let process = printer.names.processes.get(ev.pid, ev.tid, ev.comm());
        line.push_str(&process.column);
        pad_from(line, start, 16);
        if timestamp != TimestampMode::None {
            line.push(' ');
            let start = line.len();
            push_dec(line, ts);
            pad_ascii_from(line, start, 16);
        }
        printer.table(TableAt::Columns, ev, frames, 0, line);
        line.push(' ');
        let func_start = line.len();
        line.push_str(func);
        printer.table(TableAt::AfterFunc, ev, frames, func_start, line);
        printer.table(TableAt::Lines, ev, frames, func_start, line);
        line.push('\n');
    }

    /// pwru's keys: `skb`, <head>, `cpu`, `process`, `func`, <func>, `time`, <netns>,
    /// <packet>, <text> (the sections' places).
    fn format_json(&mut self, ev: &Event, frames: &[u64]) {
        let ts = self.timestamp(ev);
        let Self {
            printer,
            line,
            func,
            clock,
            ..
        } = self;
        printer.func(ev, func);
        let mut obj = JsonObject::begin(line);
        printer.scratch.clear();
        push_hex_prefixed(&mut printer.scratch, ev.skb_addr);
        obj.str("skb", &printer.scratch);
        printer.json(JsonAt::Head, ev, frames, &mut obj);
        obj.num("cpu", ev.cpu);
        let process = printer.names.processes.get(ev.pid, ev.tid, ev.comm());
        obj.str("process", &process.full);
        obj.str("func", func);
        printer.json(JsonAt::Func, ev, frames, &mut obj);
        match printer.opts.timestamp {
            TimestampMode::None => {}
            TimestampMode::Absolute => {
                printer.scratch.clear();
                clock.push_now(&mut printer.scratch);
                obj.str("time", &printer.scratch);
            }
            TimestampMode::Current | TimestampMode::Relative => obj.always_num("time", ts),
        }
        printer.json(JsonAt::Netns, ev, frames, &mut obj);
        printer.json(JsonAt::Packet, ev, frames, &mut obj);
        printer.json(JsonAt::Text, ev, frames, &mut obj);
        obj.end();
        line.push('\n');
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        let _ = self.flush_pcap();
        let _ = self.flush();
    }
}

impl EventSink for Output {
    fn event(&mut self, event: &Event, stack: Option<&[u64]>) -> io::Result<Flow> {
        self.print_with_stack(event, stack.unwrap_or(&[]))?;
        Ok(if self.limit_reached() {
            Flow::Stop
        } else {
            Flow::Continue
        })
    }

    fn drained(&mut self) -> io::Result<()> {
        if let Some(journeys) = &mut self.journeys {
            journeys.flush_ended(monotonic_ns(), &mut self.line);
        }
        // A file being written can be followed (`tail -f | tshark -i -`): the ring
        // buffer is drained as events come (at most one `BATCH_WINDOW` late).
        self.flush_pcap()?;
        self.flush()
    }

    fn holds_back_by_time(&self) -> bool {
        self.journeys.is_some()
    }

    fn probe_named(&mut self, addr: u64, name: String) {
        self.printer.names.probe_names.insert(addr, name);
    }

    fn lost(&mut self, newly_lost: u64, total: u64) -> io::Result<()> {
        if newly_lost > 0 {
            self.flush()?;
            eprintln!(
                "pwru: warning: {newly_lost} events lost (ring buffer full), {total} in total"
            );
        }
        Ok(())
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of the events' `ktime_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the pointer, which is valid.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The header line for `opts` (pwru's column titles and widths), newline included.
pub fn header_line(opts: &OutputOptions) -> String {
    let mut h = String::with_capacity(160);
    let col = |h: &mut String, title: &str, width: usize| {
        let start = h.len();
        h.push_str(title);
        pad_from(h, start, width);
    };
    if opts.timestamp == TimestampMode::Absolute {
        col(&mut h, "TIME", 23);
        h.push(' ');
    }
    col(&mut h, "SKB", 18);
    h.push(' ');
    col(&mut h, "CPU", 3);
    h.push(' ');
    col(&mut h, "PROCESS", 16);
    if opts.timestamp != TimestampMode::None {
        h.push(' ');
        col(&mut h, "TIMESTAMP", 16);
    }
    let sections = Sections::new(opts);
    for at in [TableAt::Columns, TableAt::AfterFunc] {
        if at == TableAt::AfterFunc {
            h.push_str(" FUNC");
        }
        for s in sections.iter().filter(|s| s.table_at().contains(&at)) {
            s.header(at, &mut h);
        }
    }
    h.push('\n');
    h
}

/// The symbol containing `addr`, or `0x<addr>` when below every symbol.
pub(crate) fn push_nearest(ksyms: &Ksyms, addr: u64, buf: &mut String) {
    match ksyms.nearest(addr) {
        Some(sym) => sym.push_to(buf),
        None => push_hex_prefixed(buf, addr),
    }
}

#[cfg(test)]
mod tests;
