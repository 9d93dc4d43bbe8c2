//! BPF programs the end-to-end tests trace, made with our assembler (no clang): a tc
//! program that drops TCP to one port, an XDP program that drops UDP to one port. Shared
//! by the `e2e_fixture` example and host tests.

use pwru::asm::Program;
use pwru::bpf;

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

/// A tc program (direct packet access) returning `TC_ACT_SHOT` for IPv4 TCP packets to
/// `port` (IP header without options) and `TC_ACT_OK` for everything else.
pub fn tc_drop_tcp(port: u16) -> Program {
    // Loads are in host order: compare with the wire bytes read the same way.
    let ipv4 = i32::from(u16::from_ne_bytes(0x0800u16.to_be_bytes()));
    let dport = i32::from(u16::from_ne_bytes(port.to_be_bytes()));
    bpf! {
        r2 = *(u32 *)(r1 + SKB_DATA);
        r3 = *(u32 *)(r1 + SKB_DATA_END);
        r4 = r2;
        r4 += 38;
        if r4 > r3 goto pass;
        r5 = *(u16 *)(r2 + 12);
        if r5 != ipv4 goto pass;
        r5 = *(u8 *)(r2 + 14);
        if r5 != 0x45 goto pass;
        r5 = *(u8 *)(r2 + 23);
        if r5 != 6 goto pass;
        r5 = *(u16 *)(r2 + 36);
        if r5 != dport goto pass;
        r0 = TC_ACT_SHOT;
        exit;
      pass:
        r0 = TC_ACT_OK;
        exit;
    }
    .expect("the fixture assembles")
}

/// The kernel name of [`xdp_drop_udp`] (also its BTF function name).
pub const XDP_DROP_UDP_NAME: &str = "e2e_drop_udp";

/// An XDP program returning `XDP_DROP` for IPv4 UDP packets to `port` (IP header without
/// options) and `XDP_PASS` for everything else.
pub fn xdp_drop_udp(port: u16) -> Program {
    let ipv4 = i32::from(u16::from_ne_bytes(0x0800u16.to_be_bytes()));
    let dport = i32::from(u16::from_ne_bytes(port.to_be_bytes()));
    bpf! {
        r2 = *(u32 *)(r1 + XDP_DATA);
        r3 = *(u32 *)(r1 + XDP_DATA_END);
        r4 = r2;
        r4 += 38;
        if r4 > r3 goto pass;
        r5 = *(u16 *)(r2 + 12);
        if r5 != ipv4 goto pass;
        r5 = *(u8 *)(r2 + 14);
        if r5 != 0x45 goto pass;
        r5 = *(u8 *)(r2 + 23);
        if r5 != 17 goto pass;
        r5 = *(u16 *)(r2 + 36);
        if r5 != dport goto pass;
        r0 = XDP_DROP;
        exit;
      pass:
        r0 = XDP_PASS;
        exit;
    }
    .expect("the fixture assembles")
}
