//! Turns events into pwru's text: the header and table columns, JSON lines, process and
//! interface names, kernel symbols and drop reasons, written through one buffered writer.

mod fasthash;
pub mod iface;
mod json;
pub mod ksyms;
pub mod netns;
pub mod process;
pub mod rotate;
pub mod text;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use crate::btf::ScalarKind;
use crate::events::{Event, EventKind, EventSink, Flow, SkbMeta, Tuple};
use crate::settings::{OutputSettings, TimestampMode};

pub use iface::IfaceNames;
pub use ksyms::{Ksym, Ksyms, KsymsError};
pub use netns::NetnsNames;
pub use process::ProcessNames;
pub use rotate::{RotatingFile, RotationPolicy};
use text::{
    pad_ascii_from, pad_from, push_centered, push_dec, push_hex, push_hex_digits,
    push_hex_prefixed, push_tuple, WallClock,
};

/// What to print, taken from the command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutputOptions {
    pub timestamp: TimestampMode,
    pub meta: bool,
    pub tuple: bool,
    pub tcp_flags: bool,
    pub caller: bool,
    pub stack: bool,
    /// The `__sk_buff->cb[]` column (`--output-skb-cb` or `--filter-trace-tc`).
    pub cb: bool,
    pub json: bool,
    /// The NETNS NAME column and its width (`--output-netns-names`, `--netns-names-max-length`).
    pub netns_names: Option<usize>,
    /// Stop after this many events (0 = no limit).
    pub limit_lines: u64,
    /// `--output-skb-metadata` fields, printed as ` name=value` after FUNC (not in JSON).
    pub skb_metadata: Vec<MetadataField>,
}

/// One `--output-skb-metadata` field: its name as written and how its value prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataField {
    pub name: String,
    pub kind: ScalarKind,
}

/// ` name=value` for each metadata field: decimal (signed when the BTF type is), pointers in hex.
fn push_metadata(buf: &mut String, fields: &[MetadataField], values: &[u64; 4]) {
    use std::fmt::Write as _;
    for (f, &raw) in fields.iter().zip(values.iter()) {
        let _ = match f.kind {
            ScalarKind::Pointer => write!(buf, " {}={raw:#x}", f.name),
            ScalarKind::Signed => write!(buf, " {}={}", f.name, raw as i64),
            ScalarKind::Unsigned => write!(buf, " {}={raw}", f.name),
        };
    }
}

impl OutputOptions {
    pub fn from_settings(settings: &OutputSettings) -> Self {
        Self {
            timestamp: settings.timestamp,
            meta: settings.meta,
            tuple: settings.tuple,
            tcp_flags: settings.tcp_flags,
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
    pub processes: ProcessNames,
    pub ifaces: IfaceNames,
    /// `/run/netns` names for the NETNS NAME column.
    pub netns: NetnsNames,
}

impl Names {
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
    /// Appends to this file (created if missing), rotating it by the policy.
    File(PathBuf, RotationPolicy),
    /// Any writer (tests, benches).
    Writer(Box<dyn Write + Send>),
}

impl OutputTarget {
    /// `--output-file` or stdout.
    pub fn from_settings(settings: &OutputSettings) -> Self {
        match &settings.file {
            Some(file) => Self::File(file.path.clone(), RotationPolicy::from_settings(file)),
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
    opts: OutputOptions,
    names: Names,
    out: Box<dyn Write + Send>,
    line_buffered: bool,
    /// Formatted lines not yet written.
    line: String,
    func: String,
    last_seen: fasthash::FastMap<u64, u64>,
    max_tuple: usize,
    max_func: usize,
    printed: u64,
    clock: WallClock,
}

impl Output {
    /// Opens the target (the file is opened for append).
    pub fn new(opts: OutputOptions, names: Names, target: OutputTarget) -> io::Result<Self> {
        let (writer, line_buffered): (Box<dyn Write + Send>, bool) = match target {
            OutputTarget::Stdout => (Box::new(io::stdout()), io::stdout().is_terminal()),
            OutputTarget::File(path, policy) => {
                (Box::new(RotatingFile::open(&path, policy)?), false)
            }
            OutputTarget::Writer(w) => (w, false),
        };
        Ok(Self {
            opts,
            names,
            out: writer,
            line_buffered,
            line: String::with_capacity(PENDING_LIMIT + 4096),
            func: String::with_capacity(128),
            last_seen: fasthash::FastMap::default(),
            max_tuple: 0,
            max_func: 0,
            printed: 0,
            clock: WallClock::default(),
        })
    }

    /// The name sources (e.g. to add interfaces or drop reasons after start).
    pub fn names_mut(&mut self) -> &mut Names {
        &mut self.names
    }

    /// Writes the header line (table output only).
    pub fn print_header(&mut self) -> io::Result<()> {
        if self.opts.json {
            return Ok(());
        }
        self.line.push_str(&header_line(&self.opts));
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
        self.append_event(event, frames)?;
        self.printed += 1;
        self.after_line()
    }

    /// The text [`Output::print_with_stack`] would write for `event`, newline included,
    /// without writing it (updates the same state: column widths, relative timestamps).
    pub fn format_event(&mut self, event: &Event, frames: &[u64]) -> io::Result<String> {
        let keep = self.line.len();
        self.append_event(event, frames)?;
        let text = self.line[keep..].to_string();
        self.line.truncate(keep);
        Ok(text)
    }

    /// Formats `event` at the end of the pending buffer.
    fn append_event(&mut self, event: &Event, frames: &[u64]) -> io::Result<()> {
        let start = self.line.len();
        let result = if self.opts.json {
            self.format_json(event, frames)
        } else {
            self.format_table(event, frames);
            Ok(())
        };
        if result.is_err() {
            self.line.truncate(start);
        }
        result
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
        self.opts.limit_lines != 0 && self.printed >= self.opts.limit_lines
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
        match self.opts.timestamp {
            TimestampMode::Relative => {
                let prev = self.last_seen.insert(event.skb_addr, event.ktime_ns);
                prev.map_or(0, |p| event.ktime_ns.wrapping_sub(p))
            }
            _ => event.ktime_ns,
        }
    }

    fn format_table(&mut self, ev: &Event, frames: &[u64]) {
        let ts = self.timestamp(ev);
        push_func(&self.names, ev, &mut self.func);
        let Self {
            opts,
            names,
            line,
            func,
            clock,
            max_tuple,
            max_func,
            ..
        } = self;
        if opts.timestamp == TimestampMode::Absolute {
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
        line.push_str(names.processes.get(ev.pid));
        pad_from(line, start, 16);
        if opts.timestamp != TimestampMode::None {
            line.push(' ');
            let start = line.len();
            push_dec(line, ts);
            pad_ascii_from(line, start, 16);
        }
        if opts.meta {
            let m = ev.meta.unwrap_or_default();
            line.push(' ');
            let start = line.len();
            push_dec(line, m.netns);
            pad_ascii_from(line, start, 10);
            line.push(' ');
            let start = line.len();
            push_hex(line, u64::from(m.mark));
            pad_ascii_from(line, start, 8);
            line.push(' ');
            line.push_str(names.ifaces.centered(m.netns, m.ifindex));
            line.push_str(" 0x");
            push_hex_digits(line, u64::from(m.protocol), 4, false);
            line.push(' ');
            let start = line.len();
            push_dec(line, m.mtu);
            pad_ascii_from(line, start, 5);
            line.push(' ');
            let start = line.len();
            push_dec(line, m.len);
            pad_ascii_from(line, start, 5);
            if opts.cb {
                line.push(' ');
                push_cb(line, &ev.cb.unwrap_or_default());
            }
        }
        if let Some(width) = opts.netns_names {
            line.push(' ');
            names
                .netns
                .push_cell(line, ev.meta.unwrap_or_default().netns, width);
        }
        if opts.tuple {
            line.push(' ');
            let start = line.len();
            push_tuple(line, &ev.tuple.unwrap_or_default(), opts.tcp_flags);
            *max_tuple = (*max_tuple).max(line.len() - start);
            pad_ascii_from(line, start, *max_tuple);
        }
        line.push(' ');
        if opts.caller {
            let start = line.len();
            line.push_str(func);
            *max_func = (*max_func).max(func.len());
            pad_ascii_from(line, start, *max_func);
            line.push(' ');
            push_nearest(&names.ksyms, ev.caller_addr.unwrap_or(0), line);
        } else {
            line.push_str(func);
        }
        if !opts.skb_metadata.is_empty() {
            push_metadata(
                line,
                &opts.skb_metadata,
                &ev.skb_metadata.unwrap_or_default(),
            );
        }
        if opts.stack {
            for &frame in frames.iter().filter(|f| **f != 0) {
                line.push('\n');
                push_nearest(&names.ksyms, frame, line);
            }
        }
        if let Some(dump) = &ev.skb_dump {
            // The kernel's text ends with a newline; the line's own ends it instead.
            line.push('\n');
            line.push_str(dump.trim_end_matches('\n'));
        }
        if let Some(dump) = &ev.shinfo_dump {
            line.push('\n');
            line.push_str(dump.trim_end_matches('\n'));
        }
        line.push('\n');
    }

    fn format_json(&mut self, ev: &Event, frames: &[u64]) -> io::Result<()> {
        let ts = self.timestamp(ev);
        push_func(&self.names, ev, &mut self.func);
        let Self {
            opts,
            names,
            line,
            func,
            clock,
            ..
        } = self;
        let skb = format!("{:#x}", ev.skb_addr);
        let mut caller = String::new();
        if opts.caller {
            push_nearest(&names.ksyms, ev.caller_addr.unwrap_or(0), &mut caller);
        }
        let mut wall = String::new();
        let time = match opts.timestamp {
            TimestampMode::None => None,
            TimestampMode::Absolute => {
                clock.push_now(&mut wall);
                Some(json::JsonTime::Text(&wall))
            }
            TimestampMode::Current | TimestampMode::Relative => Some(json::JsonTime::Nanos(ts)),
        };
        let meta = if opts.meta {
            ev.meta.unwrap_or_default()
        } else {
            SkbMeta::default()
        };
        let iface = if opts.meta {
            names.ifaces.label(meta.netns, meta.ifindex)
        } else {
            String::new()
        };
        let mut stack = String::new();
        if opts.stack {
            for &frame in frames.iter().filter(|f| **f != 0) {
                stack.push('\n');
                push_nearest(&names.ksyms, frame, &mut stack);
            }
        }
        let tuple = opts
            .tuple
            .then(|| json_tuple(&ev.tuple.unwrap_or_default(), opts.tcp_flags));
        let record = json::JsonEvent {
            skb: &skb,
            skb_shared_info: ev.shinfo_dump.as_deref().unwrap_or_default(),
            cpu: ev.cpu,
            process: names.processes.get(ev.pid),
            func,
            caller_func: &caller,
            time,
            netns: meta.netns,
            netns_name: if opts.netns_names.is_some() {
                names.netns.get(ev.meta.unwrap_or_default().netns)
            } else {
                ""
            },
            mark: meta.mark,
            iface: &iface,
            proto: meta.protocol,
            mtu: meta.mtu,
            len: meta.len,
            cb: (opts.meta && opts.cb).then(|| ev.cb.unwrap_or_default()),
            tuple,
            stack: &stack,
            skb_metadata: ev.skb_dump.as_deref().unwrap_or_default(),
        };
        let text = serde_json::to_string(&record).map_err(io::Error::other)?;
        line.push_str(&text);
        line.push('\n');
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
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
        self.flush()
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
    if opts.meta {
        h.push(' ');
        col(&mut h, "NETNS", 10);
        h.push(' ');
        col(&mut h, "MARK/x", 8);
        h.push(' ');
        push_centered(&mut h, "IFACE", 16);
        h.push(' ');
        col(&mut h, "PROTO", 6);
        h.push(' ');
        col(&mut h, "MTU", 5);
        h.push(' ');
        col(&mut h, "LEN", 5);
        if opts.cb {
            h.push(' ');
            col(&mut h, "__sk_buff->cb[]", 56);
        }
    }
    if let Some(width) = opts.netns_names {
        h.push(' ');
        col(&mut h, "NETNS NAME", width);
    }
    if opts.tuple {
        h.push_str(" TUPLE");
    }
    h.push_str(" FUNC");
    if opts.caller {
        h.push_str(" CALLER");
    }
    h.push('\n');
    h
}

/// FUNC: probe name or kallsyms symbol (else `0x<addr>`), the drop reason when there is one
/// (`kfree_skb_reason(SKB_DROP_REASON_X)`, or `kfree_skb_reason (N)` when unnamed), then
/// `(tc)` / `(xdp)` for BPF-program events.
fn push_func(names: &Names, ev: &Event, buf: &mut String) {
    buf.clear();
    let probe_name = if names.probe_names.is_empty() {
        None
    } else {
        names.probe_names.get(&ev.probe_addr)
    };
    let key: &str = if let Some(name) = probe_name {
        buf.push_str(name);
        name
    } else if let Some(sym) = names.ksyms.exact(ev.probe_addr) {
        sym.push_to(buf);
        &sym.name
    } else {
        push_hex_prefixed(buf, ev.probe_addr);
        ""
    };
    if let Some(reason) = ev.drop_reason_for(key, names.drop_reason_args.get(key).copied()) {
        match names.drop_reasons.get(&reason) {
            Some(name) => {
                buf.push('(');
                buf.push_str(name);
                buf.push(')');
            }
            None => {
                buf.push_str(" (");
                push_dec(buf, reason);
                buf.push(')');
            }
        }
    }
    match ev.kind {
        EventKind::Tc => buf.push_str("(tc)"),
        EventKind::Xdp => buf.push_str("(xdp)"),
        EventKind::Kprobe | EventKind::KprobeMulti | EventKind::Tracepoint => {}
    }
}

/// The symbol containing `addr`, or `0x<addr>` when below every symbol.
fn push_nearest(ksyms: &Ksyms, addr: u64, buf: &mut String) {
    match ksyms.nearest(addr) {
        Some(sym) => sym.push_to(buf),
        None => push_hex_prefixed(buf, addr),
    }
}

/// `[0x%08X,...]` of the five cb words.
fn push_cb(buf: &mut String, cb: &[u32; 5]) {
    buf.push('[');
    for (i, v) in cb.iter().enumerate() {
        if i > 0 {
            buf.push(',');
        }
        buf.push_str("0x");
        push_hex_digits(buf, u64::from(*v), 8, true);
    }
    buf.push(']');
}

fn json_tuple(t: &Tuple, tcp_flags: bool) -> json::JsonTuple {
    let mut saddr = String::new();
    text::push_addr(&mut saddr, t.l3_proto, &t.saddr);
    let mut daddr = String::new();
    text::push_addr(&mut daddr, t.l3_proto, &t.daddr);
    let mut flags = String::new();
    if tcp_flags {
        text::push_tcp_flags(&mut flags, t.tcp_flags);
    }
    json::JsonTuple {
        saddr,
        daddr,
        sport: t.sport,
        dport: t.dport,
        proto: t.l4_proto,
        flags,
    }
}

#[cfg(test)]
mod tests;
