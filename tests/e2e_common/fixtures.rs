//! BPF programs the end-to-end tests trace, made with our assembler (no clang): a tc
//! program that drops TCP to one port, an XDP program that drops UDP to one port. Shared
//! by the `e2e_fixture` example and host tests.

use std::os::fd::{AsFd, OwnedFd};

use pwru::asm::{Asm, Label, Program};
use pwru::bpf;
use pwru::load::{self, MapKind, MapSpec, TracedProgType};

/// `struct __sk_buff` offsets of `data` and `data_end` (UAPI).
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;
/// `TC_ACT_OK`, `TC_ACT_SHOT`.
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;

/// `struct xdp_md` offsets of `data` and `data_end` (UAPI).
const XDP_DATA: i16 = 0;
const XDP_DATA_END: i16 = 4;
/// `XDP_DROP`, `XDP_PASS`.
const XDP_DROP: i32 = 1;
const XDP_PASS: i32 = 2;

/// The kernel name of [`tc_drop_tcp`] (also its BTF function name).
pub const TC_DROP_TCP_NAME: &str = "e2e_drop_tcp";

/// The map [`tc_drop_tcp`] counts its drops in: destination port (u32, host order) ->
/// packets dropped (u64). Its updates are what `--output-bpfmap` shows.
pub const TC_DROPS_MAP: &str = "e2e_tc_drops";

/// [`TC_DROPS_MAP`]'s shape.
pub fn tc_drops_map() -> MapSpec {
    MapSpec::new(TC_DROPS_MAP, MapKind::Hash, 4, 8, 16)
}

/// A tc program (direct packet access) returning `TC_ACT_SHOT` for IPv4 TCP packets to
/// `port` (IP header without options) and `TC_ACT_OK` for everything else. Each drop
/// counts in [`TC_DROPS_MAP`] (`bpf_map_lookup_elem`, then `bpf_map_update_elem` with the
/// count plus one), so the program calls map helpers `--filter-track-bpf-helpers` finds.
pub fn tc_drop_tcp(port: u16) -> Program {
    let key = i32::from(port);
    let mut a = Asm::new();
    let [pass, update] = [a.label(), a.label()];
    to_ipv4_port(&mut a, SKB_DATA, SKB_DATA_END, 6, port, pass);
    bpf!(into &mut a;
        *(u32 *)(r10 - 4) = key;
        *(u64 *)(r10 - 16) = 1;
        r1 = map[(TC_DROPS_MAP)];
        r2 = r10;
        r2 += -4;
        call map_lookup_elem;
        if r0 == 0 goto (update);
        r1 = *(u64 *)(r0 + 0);
        r1 += 1;
        *(u64 *)(r10 - 16) = r1;
      (update):
        r1 = map[(TC_DROPS_MAP)];
        r2 = r10;
        r2 += -4;
        r3 = r10;
        r3 += -16;
        r4 = 0;
        call map_update_elem;
        r0 = TC_ACT_SHOT;
        exit;
      (pass):
        r0 = TC_ACT_OK;
        exit;
    );
    a.finish().expect("the fixture assembles")
}

/// Jumps to `pass` unless the packet (direct access, `data`/`data_end` at these context
/// offsets, loaded into r2/r3) is IPv4 without options, L4 protocol `proto`, to `port`.
fn to_ipv4_port(a: &mut Asm, data: i16, data_end: i16, proto: i32, port: u16, pass: Label) {
    // Loads are in host order: compare with the wire bytes read the same way.
    let ipv4 = i32::from(u16::from_ne_bytes(0x0800u16.to_be_bytes()));
    let dport = i32::from(u16::from_ne_bytes(port.to_be_bytes()));
    bpf!(into a;
        r2 = *(u32 *)(r1 + data);
        r3 = *(u32 *)(r1 + data_end);
        r4 = r2;
        r4 += 38;
        if r4 > r3 goto (pass);
        r5 = *(u16 *)(r2 + 12);
        if r5 != ipv4 goto (pass);
        r5 = *(u8 *)(r2 + 14);
        if r5 != 0x45 goto (pass);
        r5 = *(u8 *)(r2 + 23);
        if r5 != proto goto (pass);
        r5 = *(u16 *)(r2 + 36);
        if r5 != dport goto (pass);
    );
}

/// Loads [`tc_drop_tcp`] with BTF and a fresh [`TC_DROPS_MAP`]: the program's fd and the
/// map's (the program keeps the map alive once loaded; the map fd is for reading it).
pub fn load_tc_drop_tcp(port: u16) -> Result<(OwnedFd, OwnedFd), String> {
    let drops = load::create_map(&tc_drops_map())
        .map_err(|e| format!("creating map {TC_DROPS_MAP}: {e}"))?;
    let maps = [(TC_DROPS_MAP, drops.as_fd())];
    let prog = load::load_with_maps(
        TracedProgType::SchedCls,
        TC_DROP_TCP_NAME,
        &tc_drop_tcp(port),
        &maps,
    )
    .map_err(|e| format!("loading {TC_DROP_TCP_NAME}: {e}"))?;
    Ok((prog, drops))
}

/// The kernel name of [`xdp_drop_udp`] (also its BTF function name).
pub const XDP_DROP_UDP_NAME: &str = "e2e_drop_udp";

/// An XDP program returning `XDP_DROP` for IPv4 UDP packets to `port` (IP header without
/// options) and `XDP_PASS` for everything else.
pub fn xdp_drop_udp(port: u16) -> Program {
    let mut a = Asm::new();
    let pass = a.label();
    to_ipv4_port(&mut a, XDP_DATA, XDP_DATA_END, 17, port, pass);
    bpf!(into &mut a;
        r0 = XDP_DROP;
        exit;
      (pass):
        r0 = XDP_PASS;
        exit;
    );
    a.finish().expect("the fixture assembles")
}
