//! The real probe program on real kernel `sk_buff`s: `Attachment::SkbContext` programs run
//! under `BPF_PROG_TEST_RUN` on crafted frames; we check filter verdicts and decoded events.
//! Needs root and kernel BTF; skips with a printed reason otherwise.

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use pwru::asm::Program;
use std::sync::OnceLock;

use pwru::btf::{ArchFacts, KernelBtf, Kmods, SkbLayout};
use pwru::events::{self, Event, EventKind, ETH_P_IP, ETH_P_IPV6};
use pwru::load::{self, LoadOptions, LoadedObject, MapKind, MapSpec, ObjectSpec, ProgKind};
use pwru::output::sections::drop_reason::DropReason;
use pwru::output::sections::skb_cb::SkbCb;
use pwru::output::sections::skb_metadata::SkbMetadata;
use pwru::output::sections::stack::StackId;
use pwru::output::sections::{SkbMeta, Tuple};
use pwru::output::OutputOptions;
use pwru::probes::{self, maps, Attachment, ProbeError, ProbeOptions, RecordSections};

/// What the probe records for these output options.
fn sections(opts: OutputOptions) -> RecordSections {
    pwru::output::sections::record_sections(&opts)
}

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (BPF_PROG_TEST_RUN needs CAP_BPF + CAP_PERFMON)".into());
    }
    if !std::path::Path::new(pwru::btf::SYS_VMLINUX_BTF).exists() {
        return Some("no /sys/kernel/btf/vmlinux".into());
    }
    None
}

fn layout() -> SkbLayout {
    let btf = KernelBtf::open_system(&Kmods::None).expect("open BTF");
    SkbLayout::resolve(&btf).expect("sk_buff layout")
}

/// This kernel's `pt_regs` layout and stack size (resolved once per test process).
fn arch() -> ArchFacts {
    static ARCH: OnceLock<ArchFacts> = OnceLock::new();
    ARCH.get_or_init(|| {
        let btf = KernelBtf::open_system(&Kmods::None).expect("open BTF");
        ArchFacts::resolve(&btf).expect("this kernel's pt_regs resolves")
    })
    .clone()
}

fn filter(s: &str) -> Option<pwru::pcapc::ast::Expr> {
    pwru::pcapc::parse(s).unwrap_or_else(|e| panic!("filter {s:?}: {e}"))
}

/// Default outputs of the CLI: meta and tuple.
fn default_outputs() -> OutputOptions {
    OutputOptions {
        meta: true,
        tuple: true,
        ..OutputOptions::default()
    }
}

/// The CLI's default outputs and the pcap filter `f`.
fn outputs(f: &str) -> ProbeOptions {
    ProbeOptions {
        filter: filter(f),
        sections: sections(default_outputs()),
        ..ProbeOptions::new(arch())
    }
}

/// `__sk_buff.mark` offset: the only field before `priority` that test_run's ctx_in may set.
const SKB_CTX_MARK: usize = 8;
/// `__sk_buff.ifindex`: test_run puts the skb on this device when it is > 1.
const SKB_CTX_IFINDEX: usize = 40;

/// One loaded SkbContext probe with its maps.
struct Probe {
    obj: LoadedObject,
    ring: aya::maps::RingBuf<aya::maps::MapData>,
}

const PROG: &str = "probe";

impl Probe {
    fn load(layout: &SkbLayout, opts: &ProbeOptions) -> Probe {
        let program = probes::build(layout, opts, &Attachment::SkbContext)
            .unwrap_or_else(|e| panic!("build {opts:?}: {e}"));
        let tracked = MapSpec::new(maps::TRACKED_SKBS, MapKind::Hash, 8, 4, 64);
        Probe::load_with(program, None, vec![tracked])
    }

    /// Loads `program` (as `PROG`) and, when given, `untrack` (as "untrack") with the
    /// event ring, the lost-event counter and `maps`.
    fn load_with(program: Program, untrack: Option<Program>, maps: Vec<MapSpec>) -> Probe {
        let mut programs = vec![load::ProgramSpec {
            name: PROG.into(),
            kind: ProgKind::SchedCls,
            program,
        }];
        programs.extend(untrack.map(|program| load::ProgramSpec {
            name: "untrack".into(),
            kind: ProgKind::SchedCls,
            program,
        }));
        let mut all_maps = vec![
            MapSpec::ring_buf(maps::EVENTS, 1 << 16),
            MapSpec::new(maps::LOST, MapKind::PerCpuArray, 4, 8, 1),
        ];
        all_maps.extend(maps);
        let spec = ObjectSpec {
            maps: all_maps,
            programs,
        };
        let mut obj =
            load::load(&spec, &LoadOptions::default()).unwrap_or_else(|e| panic!("load: {e}"));
        let ring = obj.take_ring_buf(maps::EVENTS).expect("events ring");
        Probe { obj, ring }
    }

    /// Runs the program once on `frame` with `ctx` as `__sk_buff` input; returns the
    /// events it wrote (decoded).
    fn run_ctx(&mut self, frame: &[u8], ctx: Option<&[u8]>) -> Vec<Event> {
        self.run_only(frame, ctx);
        self.drain()
    }

    /// Runs the program once, leaving its events in the ring.
    fn run_only(&mut self, frame: &[u8], ctx: Option<&[u8]>) {
        let prog: &mut SchedClassifier = self
            .obj
            .aya_program_mut(PROG)
            .expect("program")
            .try_into()
            .expect("sched_cls");
        let res = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: ctx,
                ..TestRunOptions::new()
            })
            .unwrap_or_else(|e| panic!("test_run on {frame:02x?}: {e:?}"));
        assert_eq!(res.return_value, 0, "the probe always returns 0");
    }

    /// The events in the ring, decoded.
    fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            out.push(events::decode(&item).expect("event decodes"));
        }
        out
    }

    fn run(&mut self, frame: &[u8]) -> Vec<Event> {
        self.run_ctx(frame, None)
    }
}

// ---- frame builders -------------------------------------------------------------------

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const V4_SRC: [u8; 4] = [10, 0, 0, 1];
const V4_DST: [u8; 4] = [10, 0, 0, 2];
const V6_SRC: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6_DST: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const TCP_SYN: u8 = 0x02;

fn ether(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn vlan(id: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut inner = id.to_be_bytes().to_vec();
    inner.extend_from_slice(&ethertype.to_be_bytes());
    inner.extend_from_slice(payload);
    ether(0x8100, &inner)
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = flags;
    h[14..16].copy_from_slice(&64240u16.to_be_bytes());
    h
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 8];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// IPv4 header (with `options`, a multiple of 4 bytes) + `l4`; `frag` is the
/// flags/fragment-offset field.
fn ipv4(proto: u8, options: &[u8], frag: u16, l4: &[u8]) -> Vec<u8> {
    let ihl = 20 + options.len();
    let mut h = vec![0u8; 20];
    h[0] = 0x40 | (ihl / 4) as u8;
    h[2..4].copy_from_slice(&((ihl + l4.len()) as u16).to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&V4_SRC);
    h[16..20].copy_from_slice(&V4_DST);
    h.extend_from_slice(options);
    h.extend_from_slice(l4);
    h
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&V6_SRC);
    h[24..40].copy_from_slice(&V6_DST);
    h.extend_from_slice(payload);
    h
}

fn arp_request() -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0, 6, 4, 0, 1];
    a.extend_from_slice(&SRC_MAC);
    a.extend_from_slice(&V4_SRC);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&V4_DST);
    ether(0x0806, &a)
}

fn v4_tcp_syn() -> Vec<u8> {
    ether(0x0800, &ipv4(6, &[], 0, &tcp(40000, 8080, TCP_SYN)))
}

fn v4_tcp_ack_other_port() -> Vec<u8> {
    ether(0x0800, &ipv4(6, &[], 0, &tcp(40000, 9090, 0x10)))
}

fn v4_udp() -> Vec<u8> {
    ether(0x0800, &ipv4(17, &[], 0, &udp(5353, 53, b"query")))
}

/// IPv4 with 8 bytes of options (NOP NOP + a 4-byte router alert + padding) and TCP.
fn v4_options_tcp() -> Vec<u8> {
    let opts = [1, 1, 148, 4, 0, 0, 0, 0];
    ether(0x0800, &ipv4(6, &opts, 0, &tcp(40000, 8080, TCP_SYN)))
}

/// A non-first fragment (offset 185 * 8) of a UDP datagram: its payload is no header.
fn v4_non_first_fragment() -> Vec<u8> {
    let payload = [0xaa; 32];
    ether(0x0800, &ipv4(17, &[], 185, &payload))
}

fn v6_tcp_syn() -> Vec<u8> {
    ether(0x86dd, &ipv6(6, &tcp(40000, 8080, TCP_SYN)))
}

/// IPv6 with hop-by-hop (8 bytes), routing (24 bytes) and a first-fragment header, then UDP.
fn v6_ext_udp() -> Vec<u8> {
    let mut p = vec![43, 0, 5, 2, 0, 0, 0, 0]; // hop-by-hop: next routing, PadN
    let mut rh = vec![44, 2, 0, 0, 0, 0, 0, 0]; // routing: next fragment, len 2 (24 bytes)
    rh.extend_from_slice(&[0; 16]);
    p.extend_from_slice(&rh);
    p.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0, 7]); // fragment: offset 0, M=1
    p.extend_from_slice(&udp(5353, 53, b"query"));
    ether(0x86dd, &ipv6(0, &p))
}

/// Same chain, but a non-first fragment (offset 8 * 8): no ports.
fn v6_ext_non_first_fragment() -> Vec<u8> {
    let mut p = vec![44, 0, 1, 4, 0, 0, 0, 0]; // hop-by-hop: next fragment, PadN
    p.extend_from_slice(&[17, 0, 0, 64, 0, 0, 0, 7]); // fragment: offset 8, M=0
    p.extend_from_slice(&[0xbb; 16]);
    ether(0x86dd, &ipv6(0, &p))
}

fn vlan_v4_udp() -> Vec<u8> {
    vlan(10, 0x0800, &ipv4(17, &[], 0, &udp(5353, 53, b"query")))
}

// test_run refuses frames shorter than 34 bytes (Ethernet + 20) and cut IPv6 headers, so
// the truncated frames lose their L4 header.

/// IPv4 header only: the TCP header is missing.
fn v4_truncated_l4() -> Vec<u8> {
    let mut f = v4_tcp_syn();
    f.truncate(14 + 20);
    f
}

/// IPv4 + the first 10 bytes of TCP: ports, but no flags byte.
fn v4_truncated_tcp() -> Vec<u8> {
    let mut f = v4_tcp_syn();
    f.truncate(14 + 20 + 10);
    f
}

/// IPv6 header alone, next header TCP (test_run refuses a cut IPv6 header).
fn v6_truncated_l4() -> Vec<u8> {
    let mut f = v6_tcp_syn();
    f.truncate(14 + 40);
    f
}

/// Every test frame by name.
fn frames() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("syn4", v4_tcp_syn()),
        ("ack4", v4_tcp_ack_other_port()),
        ("udp4", v4_udp()),
        ("opt4", v4_options_tcp()),
        ("frag4", v4_non_first_fragment()),
        ("syn6", v6_tcp_syn()),
        ("ext6", v6_ext_udp()),
        ("frag6", v6_ext_non_first_fragment()),
        ("arp", arp_request()),
        ("vlan4", vlan_v4_udp()),
        ("trunc_l4", v4_truncated_l4()),
        ("trunc_tcp", v4_truncated_tcp()),
        ("trunc6", v6_truncated_l4()),
    ]
}

const ALL: &[&str] = &[
    "syn4",
    "ack4",
    "udp4",
    "opt4",
    "frag4",
    "syn6",
    "ext6",
    "frag6",
    "arp",
    "vlan4",
    "trunc_l4",
    "trunc_tcp",
    "trunc6",
];

/// `(filter, frames matched with the filter at the L2 start, at the L3 start)`.
/// Both columns were checked against `tcpdump -r` on the same frames (as DLT_EN10MB, and
/// as DLT_RAW from `network_header`).
fn verdict_table() -> Vec<(&'static str, Vec<&'static str>, Vec<&'static str>)> {
    let v = |s: &[&'static str]| s.to_vec();
    vec![
        ("", v(ALL), v(ALL)),
        (
            "dst host 10.0.0.2 and tcp and dst port 8080",
            v(&["syn4", "opt4", "trunc_tcp"]),
            v(&["syn4", "opt4", "trunc_tcp"]),
        ),
        (
            "tcp[tcpflags] = tcp-syn",
            v(&["syn4", "opt4"]),
            v(&["syn4", "opt4"]),
        ),
        (
            "ip6 protochain 17",
            v(&["ext6", "frag6"]),
            v(&["ext6", "frag6"]),
        ),
        // L2-only: never matches at an L3 start.
        ("arp", v(&["arp"]), v(&[])),
        (
            "not udp",
            v(&[
                "syn4",
                "ack4",
                "opt4",
                "syn6",
                "ext6",
                "frag6",
                "arp",
                "vlan4",
                "trunc_l4",
                "trunc_tcp",
                "trunc6",
            ]),
            // At L3, ARP and the VLAN tag are neither IPv4 nor IPv6, so "not udp" holds.
            v(&[
                "syn4",
                "ack4",
                "opt4",
                "syn6",
                "ext6",
                "frag6",
                "arp",
                "vlan4",
                "trunc_l4",
                "trunc_tcp",
                "trunc6",
            ]),
        ),
        // Non-first fragments carry no ports.
        ("ip and udp port 53", v(&["udp4"]), v(&["udp4"])),
        ("ip6 and tcp dst port 8080", v(&["syn6"]), v(&["syn6"])),
        ("vlan 10 and udp port 53", v(&["vlan4"]), v(&[])),
        ("ether src 02:00:00:00:00:01", v(&ALL[..ALL.len()]), v(&[])),
        ("ip[0] & 0xf > 5", v(&["opt4"]), v(&["opt4"])),
        ("icmp or icmp6", v(&[]), v(&[])),
        ("ip[6:2] & 0x1fff != 0", v(&["frag4"]), v(&["frag4"])),
    ]
}

/// The layout seen through `mac_len := mac_header`: under `BPF_PROG_TEST_RUN` the kernel
/// leaves `skb->mac_len` at 0 (`eth_type_trans` does not set it), so the probe takes the
/// L3 path; aliasing `mac_len` to the (non-zero) `mac_header` makes it take the L2 path on
/// the same skb.
fn l2_view(l: &SkbLayout) -> SkbLayout {
    let mut l2 = l.clone();
    l2.sk_buff.mac_len = l2.sk_buff.mac_header;
    l2
}

fn check_verdicts(l: &SkbLayout, l2_start: bool) {
    let mut failures = Vec::new();
    for (f, l2_matches, l3_matches) in verdict_table() {
        let want = if l2_start { l2_matches } else { l3_matches };
        let mut p = Probe::load(l, &outputs(f));
        for (name, frame) in frames() {
            let got = p.run(&frame);
            assert!(got.len() <= 1, "{f:?} on {name}: {} events", got.len());
            if got.len() == 1 && got[0].get::<SkbMeta>().map(|m| m.len) != Some(frame.len() as u32)
            {
                failures.push(format!(
                    "{f:?} on {name}: wrong meta {:?}",
                    got[0].get::<SkbMeta>()
                ));
            }
            if want.contains(&name) != (got.len() == 1) {
                failures.push(format!(
                    "{f:?} on {name}: {} (expected {})",
                    if got.is_empty() { "no event" } else { "event" },
                    if want.contains(&name) {
                        "event"
                    } else {
                        "none"
                    },
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn filter_verdicts_at_the_l3_start() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    check_verdicts(&layout(), false);
}

#[test]
fn filter_verdicts_at_the_l2_start() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    check_verdicts(&l2_view(&layout()), true);
}

fn netns_inode() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net")
        .expect("stat /proc/self/ns/net")
        .ino() as u32
}

fn sysfs_u32(path: &str) -> u32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut b = [0; 16];
    b[..4].copy_from_slice(&a);
    b
}

/// The tuple the probe must report for each frame (`None`: no IPv4/IPv6 header parsed).
fn expected_tuple(name: &str) -> Option<Tuple> {
    let t4 = |l4_proto, sport, dport, tcp_flags| Tuple {
        l3_proto: ETH_P_IP,
        saddr: v4(V4_SRC),
        daddr: v4(V4_DST),
        sport,
        dport,
        l4_proto,
        tcp_flags,
    };
    let t6 = |l4_proto, sport, dport, tcp_flags| Tuple {
        l3_proto: ETH_P_IPV6,
        saddr: V6_SRC,
        daddr: V6_DST,
        sport,
        dport,
        l4_proto,
        tcp_flags,
    };
    Some(match name {
        "syn4" | "opt4" => t4(6, 40000, 8080, TCP_SYN),
        "ack4" => t4(6, 40000, 9090, 0x10),
        "udp4" => t4(17, 5353, 53, 0),
        // Non-first fragment: protocol, no ports.
        "frag4" => t4(17, 0, 0, 0),
        "syn6" => t6(6, 40000, 8080, TCP_SYN),
        // The protocol after the extension headers.
        "ext6" => t6(17, 5353, 53, 0),
        "frag6" => t6(17, 0, 0, 0),
        // Addresses and protocol, but the TCP header is past the packet end.
        "trunc_l4" => t4(6, 0, 0, 0),
        // Ports, but the flags byte is past the packet end.
        "trunc_tcp" => t4(6, 40000, 8080, 0),
        "trunc6" => t6(6, 0, 0, 0),
        // The VLAN tag sits at network_header (test_run does not untag): not IP.
        "arp" | "vlan4" => return None,
        other => panic!("no expectation for {other}"),
    })
}

fn expected_protocol(name: &str) -> u16 {
    match name {
        "syn6" | "ext6" | "frag6" | "trunc6" => ETH_P_IPV6,
        "arp" => 0x0806,
        "vlan4" => 0x8100,
        _ => ETH_P_IP,
    }
}

#[test]
fn meta_and_tuple_of_every_frame() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let l = layout();
    let lo_mtu = sysfs_u32("/sys/class/net/lo/mtu");
    for (view, layout) in [("l3", l.clone()), ("l2", l2_view(&l))] {
        let mut p = Probe::load(&layout, &outputs(""));
        for (name, frame) in frames() {
            let got = p.run(&frame);
            assert_eq!(got.len(), 1, "{view} {name}: one event");
            let e = &got[0];
            assert_eq!(e.kind, EventKind::Tracepoint, "{name}");
            assert_eq!(e.probe_addr, 0, "{name}: SkbContext reports id 0");
            assert_eq!(e.args, None, "{name}: no arguments");
            assert_eq!(e.get::<DropReason>(), None);
            assert_eq!(e.get::<StackId>(), None);
            assert_ne!(e.skb_addr, 0);
            assert_ne!(e.ktime_ns, 0);
            assert_eq!(e.pid as i32, std::process::id() as i32, "{name}: our tgid");
            // SCHED_CLS has no bpf_get_current_comm: the name is zeroed, not stale bytes.
            assert_eq!(e.comm(), &[0u8; 16], "{name}: no comm");
            let m = e
                .get::<SkbMeta>()
                .unwrap_or_else(|| panic!("{view} {name}: meta"));
            assert_eq!(m.len, frame.len() as u32, "{view} {name}: len");
            assert_eq!(
                m.protocol,
                expected_protocol(name),
                "{view} {name}: protocol"
            );
            assert_eq!(m.mark, 0, "{name}: mark");
            // test_run's skb->dev is the loopback device of our netns.
            assert_eq!(m.ifindex, 1, "{name}: ifindex");
            assert_eq!(m.netns, netns_inode(), "{name}: netns");
            assert_eq!(m.mtu, lo_mtu, "{name}: no route, so the device MTU");
            // eth_type_trans: the destination MAC is not lo's, so PACKET_OTHERHOST.
            assert_eq!(m.pkt_type, 3, "{name}: pkt_type");
            assert_eq!(
                e.get::<Tuple>(),
                expected_tuple(name),
                "{view} {name}: tuple"
            );
        }
    }
}

/// Edge-triggered readiness of the ring: one `epoll_wait` result per wakeup the probes
/// asked the kernel for.
struct RingWakeups(std::os::fd::OwnedFd);

impl RingWakeups {
    fn watch(ring: &impl std::os::fd::AsRawFd) -> Self {
        use std::os::fd::FromRawFd;
        // SAFETY: epoll_create1 has no preconditions; the fd is owned from here on.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(
            ep >= 0,
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: ep was just returned and is owned by nobody else.
        let ep = unsafe { std::os::fd::OwnedFd::from_raw_fd(ep) };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        use std::os::fd::AsRawFd;
        // SAFETY: both fds are open; ev is a valid epoll_event.
        let rc = unsafe {
            libc::epoll_ctl(
                ep.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                ring.as_raw_fd(),
                &mut ev,
            )
        };
        assert_eq!(rc, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
        RingWakeups(ep)
    }

    /// Whether a wakeup came within `ms` milliseconds (consumes it).
    fn woken(&self, ms: i32) -> bool {
        use std::os::fd::AsRawFd;
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: the epoll fd is open; one event fits in ev.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), &mut ev, 1, ms) };
        assert!(n >= 0, "epoll_wait: {}", std::io::Error::last_os_error());
        n == 1
    }
}

/// The probes' adaptive wakeup: the record the reader finds first after reading
/// everything wakes it at once; records behind an unread one add no wakeup (a flood is one
/// wakeup per batch); an idle ring never wakes anyone.
#[test]
fn the_first_unread_record_wakes_the_reader_and_the_rest_do_not() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut p = Probe::load(&layout(), &outputs(""));
    let wakeups = RingWakeups::watch(&p.ring);
    let frame = v4_tcp_syn();
    // An edge for the registration itself may or may not be reported: start clean.
    wakeups.woken(0);
    assert!(!wakeups.woken(50), "an empty ring wakes nobody");
    p.run_only(&frame, None);
    assert!(wakeups.woken(1000), "the first record wakes the reader");
    for _ in 0..10 {
        p.run_only(&frame, None);
    }
    assert!(
        !wakeups.woken(100),
        "records behind an unread one go in without a wakeup"
    );
    assert_eq!(p.drain().len(), 11, "every record is there");
    p.run_only(&frame, None);
    assert!(
        wakeups.woken(1000),
        "after a full read, the next record wakes the reader again"
    );
    assert_eq!(p.drain().len(), 1);
}

#[test]
fn pkt_type_from_the_destination_mac() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut p = Probe::load(&layout(), &outputs(""));
    // lo's address (and broadcast address) is all zeroes: PACKET_HOST; a group bit set:
    // PACKET_MULTICAST; anything else PACKET_OTHERHOST (the bitfield's values 0, 2, 3).
    for (dst, want) in [([0; 6], 0u8), ([0x33, 0x33, 0, 0, 0, 1], 2), (DST_MAC, 3)] {
        let mut f = arp_request();
        f[..6].copy_from_slice(&dst);
        let got = p.run(&f);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].get::<SkbMeta>().map(|m| m.pkt_type),
            Some(want),
            "dst {dst:x?}"
        );
    }
}

/// `__sk_buff` input for test_run: only `mark` and `ifindex` set.
fn skb_ctx(mark: u32, ifindex: u32) -> Vec<u8> {
    let mut c = vec![0u8; SKB_CTX_IFINDEX + 4];
    c[SKB_CTX_MARK..SKB_CTX_MARK + 4].copy_from_slice(&mark.to_ne_bytes());
    c[SKB_CTX_IFINDEX..SKB_CTX_IFINDEX + 4].copy_from_slice(&ifindex.to_ne_bytes());
    c
}

#[test]
fn mark_filter_uses_skb_mark() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let l = layout();
    let frame = v4_tcp_syn();
    // (filter mark, mask, skb mark, expect an event)
    let table = [
        (0xa00, 0xff00, 0xa00, true),
        (0xa00, 0xff00, 0xa3f, true),
        (0xa00, 0xff00, 0xb00, false),
        (0xa00, 0xffff_ffff, 0, false),
        (0, 0xffff_ffff, 0, true),
        (0xdead_beef, 0xffff_ffff, 0xdead_beef, true),
        (0xdead_beef, 0xffff_ffff, 0xdead_beee, false),
    ];
    for (mark, mask, skb_mark, want) in table {
        let opts = ProbeOptions {
            mark: Some((mark, mask)),
            ..outputs("tcp")
        };
        let mut p = Probe::load(&l, &opts);
        let got = p.run_ctx(&frame, Some(&skb_ctx(skb_mark, 0)));
        assert_eq!(
            got.len(),
            want as usize,
            "--filter-mark {mark:#x}/{mask:#x} on skb->mark {skb_mark:#x}"
        );
        if want {
            assert_eq!(got[0].get::<SkbMeta>().map(|m| m.mark), Some(skb_mark));
        }
        // The pcap filter still applies.
        assert!(p.run_ctx(&v4_udp(), Some(&skb_ctx(skb_mark, 0))).is_empty());
    }
}

/// `len`, `greater` and `less` are the length on the wire from the filter's start: the
/// linear bytes plus the paged ones (`data_len`). test_run builds linear skbs, so the
/// probe is generated with `data_len := mark` and the paged bytes come from `skb->mark`.
#[test]
fn len_is_the_wire_length_with_the_paged_bytes() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let linear = layout();
    let mut paged_view = linear.clone();
    paged_view.sk_buff.data_len = paged_view.sk_buff.mark;
    for (l2_start, base) in [(false, layout()), (true, l2_view(&linear))] {
        let frame = v4_tcp_syn();
        // From mac_header, or from network_header (14 bytes in).
        let captured = frame.len() as u32 - if l2_start { 0 } else { 14 };
        let mut view = base.clone();
        view.sk_buff.data_len = paged_view.sk_buff.data_len;
        // (filter, paged bytes, expect an event)
        let table = [
            (format!("len = {captured}"), 0, true),
            (format!("len = {captured}"), 1000, false),
            (format!("len = {}", captured + 1000), 1000, true),
            (format!("greater {}", captured + 1), 0, false),
            (format!("greater {}", captured + 1), 1000, true),
            (format!("less {}", captured + 500), 0, true),
            (format!("less {}", captured + 500), 1000, false),
        ];
        for (f, paged, want) in table {
            let mut p = Probe::load(&view, &outputs(&f));
            let got = p.run_ctx(&frame, Some(&skb_ctx(paged, 0)));
            assert_eq!(
                got.len(),
                want as usize,
                "{f:?} with {paged} paged bytes, filter at the L{} start",
                if l2_start { 2 } else { 3 }
            );
        }
    }
}

/// `inbound` and `outbound` test `skb->pkt_type` against `PACKET_OUTGOING` (4), as
/// libpcap's SKF_AD_PKTTYPE on a live handle, and `ifindex N` `skb->dev->ifindex`
/// (SKF_AD_IFINDEX). test_run's skbs are never outgoing
/// (`eth_type_trans` gives 0, 2 or 3), so the outgoing case is generated with
/// `pkt_type := mark` and its value comes from `skb->mark`; the real bitfield is read for
/// the others.
#[test]
fn inbound_and_outbound_read_the_packet_type() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let real = layout();
    let mut from_mark = real.clone();
    from_mark.sk_buff.pkt_type = from_mark.sk_buff.mark;
    for (l2_start, base) in [(false, real.clone()), (true, l2_view(&real))] {
        let mut view = base.clone();
        view.sk_buff.pkt_type = from_mark.sk_buff.pkt_type;
        // (layout, filter, skb->mark, expect an event)
        let table = [
            (&base, "inbound", 0, true),
            (&base, "outbound", 0, false),
            (&base, "inbound and tcp dst port 8080", 0, true),
            (&base, "not outbound and udp", 0, false),
            (&view, "outbound", 4, true),
            (&view, "inbound", 4, false),
            (&view, "outbound and tcp dst port 8080", 4, true),
            (&view, "outbound", 3, false),
            (&view, "inbound", 3, true),
            // test_run's skbs arrive on lo (ifindex 1): skb->dev->ifindex
            (&base, "ifindex 1", 0, true),
            (&base, "ifindex 2", 0, false),
            (
                &base,
                "ifindex 1 and inbound and tcp dst port 8080",
                0,
                true,
            ),
            (&view, "ifindex 1 and outbound", 4, true),
        ];
        for (l, f, mark, want) in table {
            let mut p = Probe::load(l, &outputs(f));
            let got = p.run_ctx(&v4_tcp_syn(), Some(&skb_ctx(mark, 0)));
            assert_eq!(
                got.len(),
                want as usize,
                "{f:?} with packet type {mark}, filter at the L{} start",
                if l2_start { 2 } else { 3 }
            );
        }
    }
}

/// A device other than lo (ifindex > 1) and its MTU, for test_run's `ctx.ifindex`.
fn other_device() -> Option<(String, u32, u32)> {
    let mut devs: Vec<_> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    devs.sort();
    let name = devs.into_iter().next()?;
    let ifindex = sysfs_u32(&format!("/sys/class/net/{name}/ifindex"));
    let mtu = sysfs_u32(&format!("/sys/class/net/{name}/mtu"));
    Some((name, ifindex, mtu))
}

#[test]
fn ifindex_and_netns_filters() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let l = layout();
    let ns = netns_inode();
    let frame = v4_tcp_syn();
    // (ifindex filter, netns filter, expect an event) on lo.
    let table = [
        (Some(1), None, true),
        (Some(2), None, false),
        (None, Some(ns), true),
        (None, Some(ns ^ 1), false),
        (Some(1), Some(ns), true),
        (Some(1), Some(ns ^ 1), false),
        (Some(7), Some(ns), false),
    ];
    for (ifindex, netns, want) in table {
        for meta in [false, true] {
            let opts = ProbeOptions {
                ifindex,
                netns,
                sections: sections(OutputOptions {
                    meta,
                    ..default_outputs()
                }),
                ..outputs("tcp")
            };
            let mut p = Probe::load(&l, &opts);
            let got = p.run(&frame);
            assert_eq!(
                got.len(),
                want as usize,
                "ifindex {ifindex:?} netns {netns:?} meta {meta}"
            );
            assert_eq!(
                got.first().map(|e| e.get::<SkbMeta>().is_some()),
                want.then_some(meta)
            );
        }
    }
    // test_run puts the skb on the device `ctx.ifindex` names when it is above 1.
    let Some((dev, ifindex, mtu)) = other_device() else {
        eprintln!("no device besides lo: the ifindex > 1 case is not covered");
        return;
    };
    let ctx = skb_ctx(0, ifindex);
    for (filter_ifindex, want) in [(ifindex, true), (1, false)] {
        let opts = ProbeOptions {
            ifindex: Some(filter_ifindex),
            netns: Some(ns),
            ..outputs("tcp")
        };
        let mut p = Probe::load(&l, &opts);
        let got = p.run_ctx(&frame, Some(&ctx));
        assert_eq!(
            got.len(),
            want as usize,
            "{dev} ({ifindex}), filter {filter_ifindex}"
        );
        if want {
            let m = got[0].get::<SkbMeta>().expect("meta");
            assert_eq!((m.ifindex, m.mtu, m.netns), (ifindex, mtu, ns), "{dev}");
        }
    }
}

/// Pins the calling thread to one CPU so freed skbs come back from the same slab cache.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[test]
fn track_skb_follows_a_matched_skb_until_untracked() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let l = layout();
    let opts = ProbeOptions {
        track_skb: true,
        ..outputs("dst host 10.0.0.2 and tcp and dst port 8080")
    };
    let program = probes::build(&l, &opts, &Attachment::SkbContext).expect("build");
    let untrack =
        probes::build_untrack(&Attachment::SkbContext, &opts.arch).expect("build untrack");
    let tracked_map = MapSpec::new(maps::TRACKED_SKBS, MapKind::Hash, 8, 4, 64);
    let mut p = Probe::load_with(program, Some(untrack), vec![tracked_map]);
    let tracked = |p: &mut Probe| -> Vec<u64> {
        let m = p
            .obj
            .hash_map_mut::<u64, u32>(maps::TRACKED_SKBS)
            .expect("tracked map");
        let mut keys: Vec<u64> = m.keys().map(|k| k.expect("key")).collect();
        for k in &keys {
            assert_eq!(m.get(k, 0).expect("value"), 1);
        }
        keys.sort();
        keys
    };
    pin_to_cpu(0);

    // Not matching, not tracked: nothing, and nothing tracked.
    assert!(p.run(&v4_udp()).is_empty());
    assert!(tracked(&mut p).is_empty());
    // A match tracks the skb.
    let first = p.run(&v4_tcp_syn());
    assert_eq!(first.len(), 1);
    let addr = first[0].skb_addr;
    assert_eq!(tracked(&mut p), [addr]);

    // test_run frees its skb after each run; pinned to one CPU the slab hands the same
    // object back, so a non-matching frame now arrives in a tracked skb.
    let mut follow = 0;
    for _ in 0..20 {
        for e in p.run(&v4_udp()) {
            assert_eq!(e.skb_addr, addr, "only the tracked skb passes unfiltered");
            let m = e
                .get::<SkbMeta>()
                .expect("a tracked skb still gets its device facts");
            assert_eq!((m.ifindex, m.netns), (1, netns_inode()));
            assert_eq!(e.get::<Tuple>().map(|t| t.l4_proto), Some(17));
            follow += 1;
        }
    }
    assert!(
        follow > 0,
        "the skb allocator never reused the tracked skb in 20 runs"
    );

    // The untrack program (kfree_skbmem's role) forgets it.
    let mut forgot = false;
    for _ in 0..20 {
        let prog: &mut SchedClassifier = p
            .obj
            .aya_program_mut("untrack")
            .expect("untrack")
            .try_into()
            .expect("sched_cls");
        prog.test_run(TestRunOptions {
            data_in: Some(&v4_udp()),
            ..TestRunOptions::new()
        })
        .expect("untrack run");
        if tracked(&mut p).is_empty() {
            forgot = true;
            break;
        }
    }
    assert!(forgot, "untrack never saw the tracked skb");
    for _ in 0..20 {
        assert!(p.run(&v4_udp()).is_empty(), "untracked: filtered again");
    }
}

#[test]
fn output_stack_is_refused_on_skb_context() {
    // No kernel needed: the generator refuses before reading the layout's offsets.
    let btf = match KernelBtf::open_system(&Kmods::None) {
        Ok(btf) => btf,
        Err(e) => {
            eprintln!("skipped: no kernel BTF ({e})");
            return;
        }
    };
    let l = SkbLayout::resolve(&btf).expect("sk_buff layout");
    let opts = ProbeOptions {
        sections: sections(OutputOptions {
            stack: true,
            ..OutputOptions::default()
        }),
        ..ProbeOptions::new(ArchFacts::resolve(&btf).expect("this kernel's pt_regs resolves"))
    };
    match probes::build(&l, &opts, &Attachment::SkbContext) {
        Err(ProbeError::Unsupported(what)) => assert!(what.contains("output-stack")),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

/// The layout seen through `tail := mark`: test_run lets us set `skb->mark`, so the tuple
/// parser's end of linear data becomes ours to place anywhere in the packet.
fn tail_view(l: &SkbLayout) -> SkbLayout {
    let mut t = l.clone();
    t.sk_buff.tail = t.sk_buff.mark;
    t
}

#[test]
fn tuple_parsing_stops_at_tail() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut p = Probe::load(&tail_view(&layout()), &outputs(""));
    let tuple_with_tail = |p: &mut Probe, frame: &[u8], tail: u32| {
        let got = p.run_ctx(frame, Some(&skb_ctx(tail, 0)));
        assert_eq!(got.len(), 1);
        got[0].get::<Tuple>()
    };
    // Calibrate: the smallest tail giving an IPv4 tuple is network_header + 20.
    let syn = v4_tcp_syn();
    let nh = (0..1024)
        .find(|&t| tuple_with_tail(&mut p, &syn, t).is_some())
        .expect("some tail gives a tuple")
        .checked_sub(20)
        .expect("a tuple with fewer than 20 bytes before tail: the parser ignores tail");
    let t4 = |sport, dport, tcp_flags| {
        Some(Tuple {
            l3_proto: ETH_P_IP,
            saddr: v4(V4_SRC),
            daddr: v4(V4_DST),
            sport,
            dport,
            l4_proto: 6,
            tcp_flags,
        })
    };
    // (bytes after network_header, expected tuple)
    for (avail, want) in [
        (19, None),
        (20, t4(0, 0, 0)),
        (23, t4(0, 0, 0)),
        (24, t4(40000, 8080, 0)),
        (33, t4(40000, 8080, 0)),
        (34, t4(40000, 8080, TCP_SYN)),
    ] {
        assert_eq!(
            tuple_with_tail(&mut p, &syn, nh + avail),
            want,
            "v4, {avail} bytes"
        );
    }
    let ext = v6_ext_udp();
    let t6 = |l4_proto, sport, dport| {
        Some(Tuple {
            l3_proto: ETH_P_IPV6,
            saddr: V6_SRC,
            daddr: V6_DST,
            sport,
            dport,
            l4_proto,
            tcp_flags: 0,
        })
    };
    // Header chain: IPv6 (40) hop-by-hop (8) routing (24) fragment (8) UDP.
    for (avail, want) in [
        (39, None),
        (40, t6(0, 0, 0)),
        (47, t6(0, 0, 0)),
        (48, t6(43, 0, 0)),
        (72, t6(44, 0, 0)),
        (80, t6(17, 0, 0)),
        (83, t6(17, 0, 0)),
        (84, t6(17, 5353, 53)),
    ] {
        assert_eq!(
            tuple_with_tail(&mut p, &ext, nh + avail),
            want,
            "v6, {avail} bytes"
        );
    }
}

/// `__sk_buff.cb`: test_run copies it into `qdisc_skb_cb.data`, what `--output-skb-cb` reads.
const SKB_CTX_CB: usize = 48;

#[test]
fn every_option_together() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let opts = ProbeOptions {
        mark: Some((0xa00, 0xff00)),
        netns: Some(netns_inode()),
        ifindex: Some(1),
        track_skb: true,
        sections: sections(OutputOptions {
            cb: true,
            ..default_outputs()
        }),
        ..outputs("dst host 10.0.0.2 and tcp and dst port 8080")
    };
    let mut p = Probe::load(&layout(), &opts);
    let cb = [1u32, 2, 3, 0xdead_beef, 5];
    let mut ctx = vec![0u8; SKB_CTX_CB + 20];
    ctx[SKB_CTX_MARK..SKB_CTX_MARK + 4].copy_from_slice(&0xa42u32.to_ne_bytes());
    for (i, v) in cb.iter().enumerate() {
        ctx[SKB_CTX_CB + 4 * i..SKB_CTX_CB + 4 * i + 4].copy_from_slice(&v.to_ne_bytes());
    }
    let got = p.run_ctx(&v4_tcp_syn(), Some(&ctx));
    assert_eq!(got.len(), 1);
    let e = &got[0];
    assert_eq!(e.get::<SkbCb>().map(|c| c.0), Some(cb));
    assert_eq!(e.get::<Tuple>(), expected_tuple("syn4"));
    let m = e.get::<SkbMeta>().expect("meta");
    assert_eq!((m.mark, m.ifindex, m.netns), (0xa42, 1, netns_inode()));
    // The mark filter still rejects an untracked skb with another mark.
    ctx[SKB_CTX_MARK..SKB_CTX_MARK + 4].copy_from_slice(&0xb00u32.to_ne_bytes());
    let other = p.run_ctx(&v4_tcp_syn(), Some(&ctx));
    assert!(
        other.iter().all(|o| o.skb_addr == e.skb_addr),
        "only a tracked skb passes"
    );
}

/// `--filter-skb-expr` verdicts and `--output-skb-metadata` values on real kernel skbs
/// (fields resolved through the running kernel's BTF: pointer chain, bitfield, mask).
#[test]
fn skb_expressions_and_metadata_on_real_skbs() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    use pwru::probes::skb_expr;
    let btf = KernelBtf::open_system(&Kmods::None).expect("open BTF");
    let l = SkbLayout::resolve(&btf).expect("sk_buff layout");
    let frame = v4_udp();
    let len = frame.len();
    let ctx = skb_ctx(0x12a, 0);
    let table: Vec<(String, bool)> = vec![
        (format!("skb->len == {len}"), true),
        (format!("skb->len != {len}"), false),
        (
            format!("skb->len > {} && skb->len < {}", len - 1, len + 1),
            true,
        ),
        ("skb->dev->ifindex == 1".into(), true),
        ("skb->dev->ifindex == 2".into(), false),
        ("skb->dev->ifindex > -1".into(), true),
        // eth_type_trans: PACKET_OTHERHOST (a bitfield).
        ("skb->pkt_type == 3".into(), true),
        ("skb->pkt_type != 3".into(), false),
        ("skb->mark & 0xff == 0x2a".into(), true),
        ("skb->mark & 0xf00 == 0x200".into(), false),
        ("!skb->mark".into(), false),
        ("skb->mark == 1 || skb->dev->ifindex == 1".into(), true),
    ];
    for (expr, matches) in &table {
        let opts = ProbeOptions {
            skb_expr: Some(
                skb_expr::compile_filter(&btf, skb_expr::SKB, expr).expect("expression resolves"),
            ),
            ..outputs("")
        };
        let mut p = Probe::load(&l, &opts);
        let got = p.run_ctx(&frame, Some(&ctx));
        assert_eq!(got.len(), usize::from(*matches), "{expr}");
    }
    let fields: Vec<String> = [
        "skb->len",
        "skb->mark",
        "skb->dev->ifindex",
        "skb->pkt_type",
    ]
    .map(String::from)
    .to_vec();
    let opts = ProbeOptions {
        sections: sections(OutputOptions {
            skb_metadata: skb_expr::compile_metadata(&btf, skb_expr::SKB, &fields)
                .expect("fields resolve"),
            ..default_outputs()
        }),
        ..outputs("")
    };
    let mut p = Probe::load(&l, &opts);
    let got = p.run_ctx(&frame, Some(&ctx));
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].get::<SkbMetadata>().map(|m| m.0),
        Some([len as u64, 0x12a, 1, 3])
    );
}

/// `--output-skb` / `--output-skb-shared-info`: `bpf_snprintf_btf` text after the record.
#[test]
fn skb_and_shared_info_dumps_on_real_skbs() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    use pwru::output::sections::skb_dump::{self, SkbDump};
    let btf = KernelBtf::open_system(&Kmods::None).expect("open BTF");
    let l = SkbLayout::resolve(&btf).expect("sk_buff layout");
    let skb = btf.vmlinux_struct_id("sk_buff").expect("sk_buff id");
    let shinfo = btf.vmlinux_struct_id("skb_shared_info").expect("shinfo id");
    let frame = v4_udp();
    for (skb_id, shinfo_id) in [
        (Some(skb), Some(shinfo)),
        (None, Some(shinfo)),
        (Some(skb), None),
    ] {
        let opts = ProbeOptions {
            sections: sections(OutputOptions {
                skb_dump: SkbDump::new(skb_id, shinfo_id, 4096),
                ..default_outputs()
            }),
            ..outputs("")
        };
        let mut p = Probe::load(&l, &opts);
        let got = p.run_ctx(&frame, Some(&skb_ctx(0x12a, 0)));
        assert_eq!(got.len(), 1);
        let e = &got[0];
        match skb_dump::skb_text(e, pwru::probes::event::EVENT_SIZE) {
            Some(text) if skb_id.is_some() => {
                assert!(text.starts_with("(struct sk_buff){"), "{text}");
                let len = format!(".len = (unsigned int){},", frame.len());
                assert!(text.contains(&len), "{text}");
                assert!(text.contains(".mark = (__u32)298,"), "{text}");
            }
            None if skb_id.is_none() => {}
            other => panic!("skb dump {other:?} for {skb_id:?}"),
        }
        match skb_dump::shinfo_text(e) {
            Some(text) if shinfo_id.is_some() => {
                assert!(text.starts_with("(struct skb_shared_info){"), "{text}");
            }
            None if shinfo_id.is_none() => {}
            other => panic!("shinfo dump {other:?} for {shinfo_id:?}"),
        }
    }
}

/// Lowest x86-64 kernel address: a stack identity that is a stack base lies above.
const KERNEL_SPACE: u64 = 0xffff_8000_0000_0000;

/// Sorted `(key, value)` pairs of a `u64 -> u64` map.
type Pairs = Vec<(u64, u64)>;

/// `(stackid_skb, skb_stackid)` contents, sorted.
fn stack_maps(p: &mut Probe) -> (Pairs, Pairs) {
    let mut read = |name: &str| {
        let m = p.obj.hash_map_mut::<u64, u64>(name).expect("stack map");
        let mut v: Vec<(u64, u64)> = m.iter().map(|kv| kv.expect("entry")).collect();
        v.sort();
        v
    };
    (read(maps::STACKID_SKB), read(maps::SKB_STACKID))
}

fn stackid_probe(l: &SkbLayout, task_stack_offset: Option<u32>) -> Probe {
    let opts = ProbeOptions {
        track_stackid: Some(probes::StackTracking { task_stack_offset }),
        ..outputs("dst host 10.0.0.2 and tcp and dst port 8080")
    };
    let program = probes::build(l, &opts, &Attachment::SkbContext).expect("build");
    let untrack = probes::build_untrack_with(
        &Attachment::SkbContext,
        &opts.arch,
        probes::UntrackOptions {
            track_skb: false,
            track_stackid: Some(probes::StackTracking { task_stack_offset }),
            clone_parents: false,
        },
    )
    .expect("build untrack");
    let stack_maps = vec![
        MapSpec::new(maps::STACKID_SKB, MapKind::Hash, 8, 8, 64),
        MapSpec::new(maps::SKB_STACKID, MapKind::Hash, 8, 8, 64),
    ];
    Probe::load_with(program, Some(untrack), stack_maps)
}

/// Runs the probe on `frame` from a new thread (another task stack); returns how many
/// events it wrote (read back here: the ring buffer stays with this thread).
fn run_on_other_thread(p: &mut Probe, frame: &[u8]) -> usize {
    let obj = &mut p.obj;
    std::thread::scope(|s| {
        s.spawn(|| obj.test_run(PROG, frame).expect("test_run"))
            .join()
            .expect("thread")
    });
    let mut n = 0;
    while let Some(item) = p.ring.next() {
        events::decode(&item).expect("event decodes");
        n += 1;
    }
    n
}

#[test]
fn track_by_stackid_attributes_hits_on_the_recorded_stack() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let l = layout();
    let btf = KernelBtf::open_system(&Kmods::None).expect("open BTF");
    let task_stack = btf
        .optional_member("task_struct", "stack")
        .expect("BTF")
        .map(|f| f.offset_bytes());
    assert!(task_stack.is_some(), "task_struct.stack is in every BTF");
    pin_to_cpu(0);
    let thread_size = u64::from(arch().thread_size);

    // The same thread gives the same identity with and without the task_struct.stack
    // check: BPF_PROG_TEST_RUN runs on this thread's task stack, THREAD_SIZE-aligned, so
    // the address rounded down IS current->stack (not the per-CPU interrupt fallback).
    let mut ids = Vec::new();
    for offset in [task_stack, None] {
        let mut p = stackid_probe(&l, offset);
        let first = p.run(&v4_tcp_syn());
        assert_eq!(first.len(), 1);
        let (by_stack, by_skb) = stack_maps(&mut p);
        assert_eq!(by_stack.len(), 1, "{by_stack:x?}");
        let (id, skb) = by_stack[0];
        assert_eq!(skb, first[0].skb_addr);
        assert_eq!(by_skb, [(skb, id)]);
        assert!(
            id >= KERNEL_SPACE,
            "a stack base, not a CPU number: {id:#x}"
        );
        assert_eq!(id % thread_size, 0, "{id:#x}");
        ids.push(id);
    }
    assert_eq!(ids[0], ids[1], "{ids:x?}");

    let mut p = stackid_probe(&l, task_stack);
    // Nothing recorded: a non-matching skb is filtered.
    assert!(p.run(&v4_udp()).is_empty());
    assert_eq!(stack_maps(&mut p), (vec![], vec![]));
    // A match records this stack -> skb.
    let first = p.run(&v4_tcp_syn());
    assert_eq!(first.len(), 1);
    let a = first[0].skb_addr;
    let (by_stack, _) = stack_maps(&mut p);
    let s = by_stack[0].0;
    assert_eq!(by_stack, [(s, a)]);
    // A non-matching skb on the same stack is attributed to it (and records nothing).
    for _ in 0..3 {
        let ev = p.run(&v4_udp());
        assert_eq!(ev.len(), 1, "attributed by stack");
        assert_eq!(ev[0].get::<Tuple>().map(|t| t.l4_proto), Some(17));
        assert!(
            ev[0].get::<SkbMeta>().is_some(),
            "device facts like any event"
        );
        assert_eq!(stack_maps(&mut p), (vec![(s, a)], vec![(a, s)]));
    }
    // Another thread runs on another stack: not attributed.
    assert_eq!(run_on_other_thread(&mut p, &v4_udp()), 0);
    // A match there records its own stack; an skb re-recorded elsewhere leaves its old
    // stack (the slab on this pinned CPU usually hands back the same skb).
    assert_eq!(run_on_other_thread(&mut p, &v4_tcp_syn()), 1);
    let (by_stack, by_skb) = stack_maps(&mut p);
    let other: Vec<_> = by_stack.iter().filter(|(id, _)| *id != s).collect();
    assert_eq!(other.len(), 1, "{by_stack:x?}");
    let (s2, b) = *other[0];
    assert!(s2 >= KERNEL_SPACE && s2.is_multiple_of(thread_size));
    eprintln!(
        "stacks {s:#x} and {s2:#x}; the other thread's skb was the same: {}",
        b == a
    );
    if b == a {
        assert_eq!(by_stack, [(s2, a)], "moved: the old stack forgot it");
        assert_eq!(by_skb, [(a, s2)]);
        assert!(
            p.run(&v4_udp()).is_empty(),
            "this stack no longer attributes"
        );
    } else {
        let mut want = vec![(s, a), (s2, b)];
        want.sort();
        assert_eq!(by_stack, want);
        assert_eq!(p.run(&v4_udp()).len(), 1);
    }

    // The untrack program (kfree_skbmem's role): any skb freed on a stack ends that
    // stack's attribution (like pwru), and the freed skb is forgotten on both sides.
    let mut forgot = false;
    for _ in 0..20 {
        let ev = p.run(&v4_tcp_syn());
        let x = ev.first().map(|e| e.skb_addr);
        assert!(stack_maps(&mut p).0.iter().any(|(id, _)| *id == s));
        p.obj.test_run("untrack", &v4_udp()).expect("untrack run");
        let (by_stack, by_skb) = stack_maps(&mut p);
        assert!(by_stack.iter().all(|(id, _)| *id != s), "{by_stack:x?}");
        if by_skb.iter().all(|(skb, _)| Some(*skb) != x) {
            assert!(
                by_stack.iter().all(|(_, skb)| Some(*skb) != x),
                "{by_stack:x?}"
            );
            forgot = true;
            break;
        }
    }
    assert!(forgot, "untrack never saw the recorded skb");
}

/// Loads a by-stackid probe on raw tracepoint `tp` (skb = argument 0), attaches it, sends
/// one UDP datagram over loopback from this thread, and returns `stackid_skb`.
fn stack_ids_seen_at(l: &SkbLayout, tp: &str, port: u16) -> Vec<(u64, u64)> {
    let btf = KernelBtf::open_system(&Kmods::None).expect("open BTF");
    let task_stack_offset = btf
        .optional_member("task_struct", "stack")
        .expect("BTF")
        .map(|f| f.offset_bytes());
    let opts = ProbeOptions {
        track_stackid: Some(probes::StackTracking { task_stack_offset }),
        ..outputs(&format!("udp and dst port {port}"))
    };
    let at = Attachment::Tracepoint {
        id: 0,
        skb_arg: 0,
        nargs: 1,
        drop_reason_arg: None,
    };
    let spec = ObjectSpec {
        maps: vec![
            MapSpec::ring_buf(maps::EVENTS, 1 << 16),
            MapSpec::new(maps::LOST, MapKind::PerCpuArray, 4, 8, 1),
            MapSpec::new(maps::STACKID_SKB, MapKind::Hash, 8, 8, 64),
            MapSpec::new(maps::SKB_STACKID, MapKind::Hash, 8, 8, 64),
        ],
        programs: vec![load::ProgramSpec {
            name: "tp".into(),
            kind: ProgKind::RawTracepoint(tp.into()),
            program: probes::build(l, &opts, &at).expect("build"),
        }],
    };
    let mut obj = load::load(&spec, &LoadOptions::default()).expect("load");
    let link = obj.attach_raw_tp("tp").expect("attach raw tracepoint");
    let rx = std::net::UdpSocket::bind(("127.0.0.1", port)).expect("bind receiver");
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    tx.send_to(b"pwru stack identity", ("127.0.0.1", port))
        .expect("send");
    let mut buf = [0u8; 64];
    rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    rx.recv(&mut buf).expect("datagram arrives");
    obj.detach_raw_tp("tp", link).expect("detach");
    let m = obj
        .hash_map_mut::<u64, u64>(maps::STACKID_SKB)
        .expect("map");
    let mut v: Vec<(u64, u64)> = m.iter().map(|kv| kv.expect("entry")).collect();
    v.sort();
    v
}

#[test]
fn stack_identity_of_raw_tracepoints_matches_the_task_stack() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let l = layout();
    pin_to_cpu(0);
    // This thread's task stack, as the SCHED_CLS test run names it.
    let btf = KernelBtf::open_system(&Kmods::None).expect("open BTF");
    let task_stack_offset = btf
        .optional_member("task_struct", "stack")
        .expect("BTF")
        .map(|f| f.offset_bytes());
    let mut p = stackid_probe(&l, task_stack_offset);
    assert_eq!(p.run(&v4_tcp_syn()).len(), 1);
    let (by_stack, _) = stack_maps(&mut p);
    let task = by_stack[0].0;
    let thread_size = u64::from(arch().thread_size);

    // net_dev_queue fires in dev_queue_xmit, in this thread's sendto: the same identity,
    // read from the address of the tracepoint's argument array.
    let tx = stack_ids_seen_at(&l, "net_dev_queue", 47931);
    assert_eq!(tx.len(), 1, "{tx:x?}");
    assert_eq!(
        tx[0].0, task,
        "net_dev_queue: {:#x} vs task stack {task:#x}",
        tx[0].0
    );

    // netif_receive_skb runs in the NET_RX softirq that loopback raised: on x86-64 the
    // softirq runs on this CPU's interrupt stack (identity cpu + 1), or in ksoftirqd
    // (another task stack); never on this thread's stack.
    let rx = stack_ids_seen_at(&l, "netif_receive_skb", 47932);
    assert_eq!(rx.len(), 1, "{rx:x?}");
    let id = rx[0].0;
    eprintln!("netif_receive_skb stack identity: {id:#x} (this task's: {task:#x})");
    assert_ne!(id, task);
    assert!(
        id == 1 || (id >= KERNEL_SPACE && id.is_multiple_of(thread_size)),
        "{id:#x}"
    );
}

/// `__sk_buff.priority`: test_run copies it into `skb->priority`.
const SKB_CTX_PRIORITY: usize = 32;

/// The layout seen through `inner_network_header := mark` and `inner_mac_header :=
/// priority`: test_run builds skbs without inner headers, but lets us set those two
/// fields, so the tunnel filters and the tunnel tuple see inner headers where we put them.
fn inner_view() -> SkbLayout {
    let btf = KernelBtf::open_system(&Kmods::None).expect("open BTF");
    let mut v = SkbLayout::resolve(&btf).expect("sk_buff layout");
    v.sk_buff.inner_network_header = Some(v.sk_buff.mark);
    v.sk_buff.inner_mac_header = Some(btf.member("sk_buff", "priority").expect("skb->priority"));
    v
}

const INNER_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 3];
const INNER_V4_SRC: [u8; 4] = [10, 42, 0, 1];
const INNER_V4_DST: [u8; 4] = [10, 42, 0, 2];
/// Where the inner frame and the inner IPv4 header start in [`vxlan_frame`].
const VXLAN_INNER_MAC: u32 = 14 + 20 + 8 + 8;
const VXLAN_INNER_IP: u32 = VXLAN_INNER_MAC + 14;

/// 10.0.0.1 -> 10.0.0.2 UDP to 4789, VXLAN (VNI 42), then an Ethernet frame carrying a
/// TCP packet 10.42.0.1:43216 -> 10.42.0.2:`dport`.
fn vxlan_frame(dport: u16, flags: u8) -> Vec<u8> {
    let mut inner_ip = ipv4(6, &[], 0, &tcp(43216, dport, flags));
    inner_ip[12..16].copy_from_slice(&INNER_V4_SRC);
    inner_ip[16..20].copy_from_slice(&INNER_V4_DST);
    let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    vxlan.extend_from_slice(&DST_MAC);
    vxlan.extend_from_slice(&INNER_SRC_MAC);
    vxlan.extend_from_slice(&0x0800u16.to_be_bytes());
    vxlan.extend_from_slice(&inner_ip);
    ether(0x0800, &ipv4(17, &[], 0, &udp(40000, 4789, &vxlan)))
}

/// `__sk_buff` input placing the inner headers `inner_ip`/`inner_mac` bytes after `head`.
fn inner_ctx(inner_ip: u32, inner_mac: u32) -> Vec<u8> {
    let mut c = vec![0u8; SKB_CTX_PRIORITY + 4];
    c[SKB_CTX_MARK..SKB_CTX_MARK + 4].copy_from_slice(&inner_ip.to_ne_bytes());
    c[SKB_CTX_PRIORITY..SKB_CTX_PRIORITY + 4].copy_from_slice(&inner_mac.to_ne_bytes());
    c
}

/// The tunnel filters and the tunnel tuple on a real VXLAN frame: each filter applies to
/// its inner start and ANDs with the filter, and an skb without inner headers passes
/// them (pwru's semantics) and records no inner tuple.
#[test]
fn tunnel_filters_and_tuple_on_a_vxlan_frame() {
    use pwru::output::sections::tunnel::inner_tuple;
    use pwru::probes::event::EVENT_SIZE;
    use pwru::probes::TunnelFilters;
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let view = inner_view();
    let with_tunnel = |f: &str, l2: &str, l3: &str| ProbeOptions {
        tunnel: TunnelFilters {
            l2: filter(l2),
            l3: filter(l3),
        },
        sections: sections(OutputOptions {
            tunnel: true,
            tcp_flags: true,
            ..default_outputs()
        }),
        ..outputs(f)
    };
    let inner = Tuple {
        l3_proto: ETH_P_IP,
        saddr: v4(INNER_V4_SRC),
        daddr: v4(INNER_V4_DST),
        sport: 43216,
        dport: 8080,
        l4_proto: 6,
        tcp_flags: TCP_SYN,
    };
    // Calibrate: the one inner_network_header giving the inner tuple is the headroom
    // (head to data) plus VXLAN_INNER_IP.
    let frame = vxlan_frame(8080, TCP_SYN);
    let mut p = Probe::load(&view, &with_tunnel("", "", ""));
    let inner_ip = (0..1024u32)
        .find(|&at| {
            let got = p.run_ctx(&frame, Some(&inner_ctx(at, 0)));
            got.len() == 1 && inner_tuple(&got[0], EVENT_SIZE) == Some(inner)
        })
        .expect("some inner_network_header gives the inner tuple");
    let inner_mac = inner_ip - (VXLAN_INNER_IP - VXLAN_INNER_MAC);
    let tunnelled = inner_ctx(inner_ip, inner_mac);
    let plain = inner_ctx(0, 0);
    let got = p.run_ctx(&frame, Some(&plain));
    assert_eq!(got.len(), 1);
    assert_eq!(inner_tuple(&got[0], EVENT_SIZE), None, "no inner headers");
    assert_eq!(got[0].get::<Tuple>().map(|t| t.dport), Some(4789));

    // (filter, tunnel l2, tunnel l3, event with inner headers, event without)
    let table: &[(&str, &str, &str, bool, bool)] = &[
        ("", "", "tcp and dst port 8080", true, true),
        ("", "", "tcp and dst port 9090", false, true),
        (
            "",
            "",
            "tcp[tcpflags] = tcp-syn and src host 10.42.0.1",
            true,
            true,
        ),
        ("", "", "udp", false, true),
        ("", "ether src 02:00:00:00:00:03 and ip", "", true, true),
        ("", "ether src 02:00:00:00:00:01", "", false, true),
        ("", "ip and tcp dst port 8080", "tcp", true, true),
        ("", "ip and tcp dst port 8080", "udp", false, true),
        ("udp and dst port 4789", "", "tcp dst port 8080", true, true),
        ("tcp", "", "tcp dst port 8080", false, false),
        // Never true of an IP packet: tunnel traffic never passes.
        ("", "", "ip and ip6", false, true),
    ];
    let mut failures = Vec::new();
    for &(f, l2, l3, tunnel_event, plain_event) in table {
        let mut p = Probe::load(&view, &with_tunnel(f, l2, l3));
        for (ctx, want, what) in [
            (&tunnelled, tunnel_event, "inner headers"),
            (&plain, plain_event, "no inner headers"),
        ] {
            let got = p.run_ctx(&frame, Some(ctx));
            if (got.len() == 1) != want {
                failures.push(format!(
                    "{f:?} / l2 {l2:?} / l3 {l3:?}, {what}: {} events",
                    got.len()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// `--output-pcap` on real skbs: the bytes the probe copies are the packet's, from L2
/// (`mac_len` set) or L3 (raw IP), cut at the snap length, with the wire length; the
/// records are as long as what they carry.
#[test]
fn pcap_output_copies_the_packet_bytes() {
    use pwru::capture::LinkType;
    use pwru::output::sections::pcap::packet_bytes;
    use pwru::output::sections::Sections;
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let l3_layout = layout();
    let mut failures = Vec::new();
    for (view, l2) in [(l3_layout.clone(), false), (l2_view(&l3_layout), true)] {
        for snaplen in [16u32, 64, 256] {
            let out = OutputOptions {
                pcap_snaplen: Some(snaplen),
                ..default_outputs()
            };
            let opts = ProbeOptions {
                sections: sections(out.clone()),
                ..ProbeOptions::new(arch())
            };
            let at = Sections::new(&out).variable_at().expect("the pcap section");
            let scratch = probes::record::scratch_map(&opts.sections).expect("a scratch map");
            let program = probes::build(&view, &opts, &Attachment::SkbContext)
                .unwrap_or_else(|e| panic!("build: {e}"));
            let mut p = Probe::load_with(program, None, vec![scratch.spec()]);
            for (name, frame) in frames() {
                let got = p.run(&frame);
                let [ev] = &got[..] else {
                    failures.push(format!("{name}: {} events", got.len()));
                    continue;
                };
                let (link, start) = if l2 {
                    (LinkType::ETHERNET, &frame[..])
                } else {
                    // test_run's skb: network_header right after the Ethernet header.
                    (LinkType::RAW, &frame[14..])
                };
                let want = &start[..start.len().min(snaplen as usize)];
                match packet_bytes(ev, at) {
                    Some(b)
                        if b.link_type == link
                            && b.data == want
                            && b.wire_len == start.len() as u32 => {}
                    other => failures.push(format!(
                        "{name}, l2 {l2}, snaplen {snaplen}: {other:02x?}, want {want:02x?}"
                    )),
                }
                // The record ends with the bytes (the ring rounds it up to 8).
                let end = ev.record.after(at).map(|a| a.len()).unwrap_or(0);
                let used = 16 + want.len();
                if end < used || end >= used + 8 {
                    failures.push(format!("{name}: record area of {end} bytes for {used}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
