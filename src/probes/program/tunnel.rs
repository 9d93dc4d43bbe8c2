//! `--filter-tunnel-pcap-l2` / `-l3` in the probe's filter chain: pcap filters on the inner
//! frame and packet of encapsulated traffic (VXLAN, Geneve), as pwru's `filter_pcap_tunnel`.

use crate::bpf;
use crate::btf::{Field, SkBuffLayout};
use crate::pcapc::ast::Expr;
use crate::pcapc::compile::{emit_filter, CompileError, LinkType};

use super::{Gen, ProbeError};

/// The tunnel filters; `None` passes (pwru's empty expression). An skb without inner
/// headers (`inner_network_header == 0`: not encapsulated, or not yet) passes both, as
/// in pwru: they only filter tunnel traffic. Both AND with the other filters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TunnelFilters {
    /// On the inner Ethernet frame, from `head + inner_mac_header`.
    pub l2: Option<Expr>,
    /// On the inner IPv4/IPv6 packet, from `head + inner_network_header`.
    pub l3: Option<Expr>,
}

impl TunnelFilters {
    /// Whether there is no tunnel filter.
    pub fn is_empty(&self) -> bool {
        self.l2.is_none() && self.l3.is_none()
    }

    /// The inner header fields, or why the kernel cannot have tunnel filters.
    fn headers(s: &SkBuffLayout) -> Result<(Field, Field), ProbeError> {
        match (s.inner_mac_header, s.inner_network_header) {
            (Some(mac), Some(net)) => Ok((mac, net)),
            _ => Err(ProbeError::Unsupported(
                "tunnel filters: this kernel's sk_buff has no inner_mac_header/inner_network_header",
            )),
        }
    }

    /// Whether a filter tests the packet's direction (`inbound`/`outbound`: `pkt_type`).
    pub(super) fn reads_direction(&self) -> bool {
        [&self.l2, &self.l3]
            .into_iter()
            .flatten()
            .any(Expr::reads_direction)
    }

    /// Whether a filter tests the packet's interface (`ifindex N`: `skb->dev`).
    pub(super) fn reads_ifindex(&self) -> bool {
        [&self.l2, &self.l3]
            .into_iter()
            .flatten()
            .any(Expr::reads_ifindex)
    }

    /// The `sk_buff` fields the filters read (none without a filter).
    pub(super) fn skb_fields(&self, s: &SkBuffLayout) -> Vec<Field> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut fields = vec![s.head, s.tail, s.data_len];
        fields.extend(s.inner_mac_header);
        fields.extend(s.inner_network_header);
        fields
    }
}

impl Gen<'_> {
    /// Runs the tunnel filters on an skb with inner headers; a failing one goes to `out`.
    pub(super) fn tunnel_filters(&mut self) -> Result<(), ProbeError> {
        let (tunnel, out) = (&self.o.tunnel, self.out);
        if tunnel.is_empty() {
            return Ok(());
        }
        let (inner_mac, inner_net) = TunnelFilters::headers(&self.l.sk_buff)?;
        let passed = self.a.named_label("tunnel_passed");
        let (net, net_at) = self.window(&inner_net)?;
        bpf!(into &mut self.a;
            r1 = *(net *)(r10 + net_at);
            if r1 == 0 goto (passed);
        );
        for (expr, header, link, name) in [
            (
                &tunnel.l2,
                inner_mac,
                LinkType::Ethernet,
                "tunnel_l2_matched",
            ),
            (&tunnel.l3, inner_net, LinkType::RawIp, "tunnel_l3_matched"),
        ] {
            let Some(expr) = expr else { continue };
            let matched = self.a.named_label(name);
            self.packet_bounds(&header)?;
            let (src, env) = self.pcap_source()?;
            match emit_filter(&mut self.a, expr, link, &src, &env, matched, out) {
                Ok(()) => {}
                // Never true of an inner packet: tunnel traffic never passes.
                Err(CompileError::RejectsAll) => bpf!(into &mut self.a; goto (out);),
                Err(e) => return Err(e.into()),
            }
            bpf!(into &mut self.a; (matched):);
        }
        bpf!(into &mut self.a; (passed):);
        Ok(())
    }
}
