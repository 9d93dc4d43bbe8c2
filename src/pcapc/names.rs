//! Built-in name tables for pcap-filter (services, IP protocols, ethertypes) and the
//! /etc/hosts lookup: the only name resolution we do, so filters never touch DNS.

use std::net::IpAddr;
use std::path::Path;

/// How a service name resolves, as libpcap 1.10's `pcap_nametoport` decides: TCP's entry
/// wins; if UDP has the same port the name means both (`proto: None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub port: u16,
    /// `Some(6)` TCP only, `Some(17)` UDP only, `None` TCP, UDP and SCTP.
    pub ip_proto: Option<u8>,
}

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// Looks up a service name like libpcap 1.10 does with getservbyname for tcp then udp.
pub fn service_port(name: &str) -> Option<ServicePort> {
    let i = SERVICES.binary_search_by(|e| e.0.cmp(name)).ok()?;
    let (_, tcp, udp, _sctp) = SERVICES[i];
    match (tcp, udp) {
        (Some(t), Some(u)) if t == u => Some(ServicePort {
            port: t,
            ip_proto: None,
        }),
        (Some(t), _) => Some(ServicePort {
            port: t,
            ip_proto: Some(IPPROTO_TCP),
        }),
        (None, Some(u)) => Some(ServicePort {
            port: u,
            ip_proto: Some(IPPROTO_UDP),
        }),
        (None, None) => None,
    }
}

/// IP protocol number for a name or alias from /etc/protocols (case-sensitive, as glibc).
pub fn ip_proto_number(name: &str) -> Option<u16> {
    PROTOCOLS
        .binary_search_by(|e| e.0.cmp(name))
        .ok()
        .map(|i| PROTOCOLS[i].1)
}

/// Names accepted by `ether proto \NAME`: libpcap's ethertype table, then its LLC SAP table
/// (values <= 1500 mean an 802.2 LLC SAP, as libpcap's `gen_linktype` reads them).
pub const ETHER_PROTOS: &[(&str, u16)] = &[
    ("aarp", 0x80f3),
    ("arp", 0x0806),
    ("atalk", 0x809b),
    ("decnet", 0x6003),
    ("ip", 0x0800),
    ("ip6", 0x86dd),
    ("lat", 0x6004),
    ("loopback", 0x9000),
    ("mopdl", 0x6001),
    ("moprc", 0x6002),
    ("rarp", 0x8035),
    ("sca", 0x6007),
    ("iso", 0xfe),
    ("stp", 0x42),
    ("ipx", 0xe0),
    ("netbeui", 0xf0),
];

/// Ethertype (or LLC SAP) for `ether proto \NAME`.
pub fn ether_proto_number(name: &str) -> Option<u16> {
    ETHER_PROTOS.iter().find(|e| e.0 == name).map(|e| e.1)
}

/// Errors reading a names file (hosts, ethers, networks).
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct HostsError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// All addresses for `name` in a hosts file, in file order, without duplicates.
/// Names compare case-insensitively, as the C library does.
pub fn hosts_lookup(path: &Path, name: &str) -> Result<Vec<IpAddr>, HostsError> {
    Ok(hosts_lookup_in(&read_names_file(path)?, name))
}

/// The MAC address of `name` in an ethers file (`08:00:20:01:02:03 name`, as
/// ether_hostton reads it); `Ok(None)` when it is not there.
pub fn ethers_lookup(path: &Path, name: &str) -> Result<Option<[u8; 6]>, HostsError> {
    Ok(ethers_lookup_in(&read_names_file(path)?, name))
}

/// [`ethers_lookup`] over the text of an ethers file.
pub fn ethers_lookup_in(text: &str, name: &str) -> Option<[u8; 6]> {
    text.lines().find_map(|line| {
        let mut fields = line.split('#').next().unwrap_or("").split_whitespace();
        let (addr, n) = (fields.next()?, fields.next()?);
        if n != name {
            return None;
        }
        let mut mac = [0u8; 6];
        let mut parts = addr.split([':', '-']);
        for byte in &mut mac {
            *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        parts.next().is_none().then_some(mac)
    })
}

/// The network number of `name` (or an alias) in a networks file (`loopback 127`,
/// `link-local 169.254.0.0`), as getnetbyname gives it: `127` is 0x7f, `10.1` 0x0a01.
pub fn networks_lookup(path: &Path, name: &str) -> Result<Option<u32>, HostsError> {
    Ok(networks_lookup_in(&read_names_file(path)?, name))
}

/// [`networks_lookup`] over the text of a networks file.
pub fn networks_lookup_in(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut fields = line.split('#').next().unwrap_or("").split_whitespace();
        let net_name = fields.next()?;
        let number = fields.next()?;
        if net_name != name && !fields.any(|alias| alias == name) {
            return None;
        }
        let parts: Vec<&str> = number.split('.').collect();
        if parts.len() > 4 {
            return None;
        }
        parts.iter().try_fold(0u32, |acc, part| {
            let byte: u8 = part.parse().ok()?;
            Some(acc << 8 | u32::from(byte))
        })
    })
}

fn read_names_file(path: &Path) -> Result<String, HostsError> {
    std::fs::read_to_string(path).map_err(|source| HostsError {
        path: path.display().to_string(),
        source,
    })
}

/// [`hosts_lookup`] over the text of a hosts file.
pub fn hosts_lookup_in(text: &str, name: &str) -> Vec<IpAddr> {
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(addr) = fields.next() else { continue };
        if !fields.any(|n| n.eq_ignore_ascii_case(name)) {
            continue;
        }
        // Link-local scope suffixes (`fe80::1%eth0`) are dropped; a filter has no interface.
        let addr = addr.split('%').next().unwrap_or(addr);
        if let Ok(ip) = addr.parse::<IpAddr>() {
            if !found.contains(&ip) {
                found.push(ip);
            }
        }
    }
    found
}

/// One /etc/services name: (name, TCP port, UDP port, SCTP port).
pub type ServiceEntry = (&'static str, Option<u16>, Option<u16>, Option<u16>);

/// Service names from Debian bookworm's /etc/services (netbase 6.4): name or alias,
/// TCP port, UDP port, SCTP port (first entry per protocol, as getservbyname returns).
pub const SERVICES: &[ServiceEntry] = &[
    ("Clearcase", None, Some(371), None),
    ("acr-nema", Some(104), None, None),
    ("afpovertcp", Some(548), None, None),
    ("afs3-bos", None, Some(7007), None),
    ("afs3-callback", None, Some(7001), None),
    ("afs3-fileserver", None, Some(7000), None),
    ("afs3-kaserver", None, Some(7004), None),
    ("afs3-prserver", None, Some(7002), None),
    ("afs3-rmtsys", None, Some(7009), None),
    ("afs3-update", None, Some(7008), None),
    ("afs3-vlserver", None, Some(7003), None),
    ("afs3-volser", None, Some(7005), None),
    ("amanda", Some(10080), None, None),
    ("amandaidx", Some(10082), None, None),
    ("amidxtape", Some(10083), None, None),
    ("amqp", Some(5672), None, Some(5672)),
    ("amqps", Some(5671), None, None),
    ("asf-rmcp", None, Some(623), None),
    ("asp", Some(27374), Some(27374), None),
    ("auth", Some(113), None, None),
    ("authentication", Some(113), None, None),
    ("babel", None, Some(6696), None),
    ("bacula-dir", Some(9101), None, None),
    ("bacula-fd", Some(9102), None, None),
    ("bacula-sd", Some(9103), None, None),
    ("bbs", Some(7000), None, None),
    ("bgp", Some(179), None, None),
    ("bgpd", Some(2605), None, None),
    ("biff", None, Some(512), None),
    ("binkp", Some(24554), None, None),
    ("bootpc", None, Some(68), None),
    ("bootps", None, Some(67), None),
    ("canna", Some(5680), None, None),
    ("cfengine", Some(5308), None, None),
    ("chargen", Some(19), Some(19), None),
    ("cisco-sccp", Some(2000), None, None),
    ("clc-build-daemon", Some(8990), None, None),
    ("clearcase", None, Some(371), None),
    ("cmd", Some(514), None, None),
    ("cmip-agent", Some(164), Some(164), None),
    ("cmip-man", Some(163), Some(163), None),
    ("codaauth2", Some(370), Some(370), None),
    ("codasrv", Some(2432), Some(2432), None),
    ("codasrv-se", Some(2433), Some(2433), None),
    ("comsat", None, Some(512), None),
    ("csync2", Some(30865), None, None),
    ("cvspserver", Some(2401), None, None),
    ("daap", Some(3689), None, None),
    ("datametrics", Some(1645), Some(1645), None),
    ("daytime", Some(13), Some(13), None),
    ("db-lsp", Some(17500), None, None),
    ("dcap", Some(22125), None, None),
    ("dhcpv6-client", None, Some(546), None),
    ("dhcpv6-server", None, Some(547), None),
    ("dicom", Some(104), None, None),
    ("dict", Some(2628), None, None),
    ("dircproxy", Some(57000), None, None),
    ("discard", Some(9), Some(9), None),
    ("distcc", Some(3632), None, None),
    ("domain", Some(53), Some(53), None),
    ("domain-s", Some(853), Some(853), None),
    ("echo", Some(7), Some(7), None),
    ("epmap", Some(135), None, None),
    ("epmd", Some(4369), None, None),
    ("exec", Some(512), None, None),
    ("f5-globalsite", Some(2792), None, None),
    ("f5-iquery", Some(4353), None, None),
    ("fax", Some(4557), None, None),
    ("fido", Some(60179), None, None),
    ("finger", Some(79), None, None),
    ("font-service", Some(7100), None, None),
    ("freeciv", Some(5556), None, None),
    ("fsp", None, Some(21), None),
    ("fspd", None, Some(21), None),
    ("ftp", Some(21), None, None),
    ("ftp-data", Some(20), None, None),
    ("ftps", Some(990), None, None),
    ("ftps-data", Some(989), None, None),
    ("gdomap", Some(538), Some(538), None),
    ("gds-db", Some(3050), None, None),
    ("gds_db", Some(3050), None, None),
    ("git", Some(9418), None, None),
    ("gnunet", Some(2086), Some(2086), None),
    ("gnutella-rtr", Some(6347), Some(6347), None),
    ("gnutella-svc", Some(6346), Some(6346), None),
    ("gopher", Some(70), None, None),
    ("gpsd", Some(2947), None, None),
    ("gris", Some(2135), None, None),
    ("groupwise", Some(1677), None, None),
    ("gsidcap", Some(22128), None, None),
    ("gsiftp", Some(2811), None, None),
    ("gsigatekeeper", Some(2119), None, None),
    ("hkp", Some(11371), None, None),
    ("hprop", Some(754), None, None),
    ("http", Some(80), None, None),
    ("http-alt", Some(8080), None, None),
    ("https", Some(443), Some(443), None),
    ("hylafax", Some(4559), None, None),
    ("iax", None, Some(4569), None),
    ("icp", None, Some(3130), None),
    ("icpv2", None, Some(3130), None),
    ("ident", Some(113), None, None),
    ("imap", Some(143), None, None),
    ("imap2", Some(143), None, None),
    ("imaps", Some(993), None, None),
    ("ingreslock", Some(1524), None, None),
    ("ipp", Some(631), None, None),
    ("iprop", Some(2121), None, None),
    ("ipsec-nat-t", None, Some(4500), None),
    ("ipx", None, Some(213), None),
    ("ircd", Some(6667), None, None),
    ("ircs-u", Some(6697), None, None),
    ("isakmp", None, Some(500), None),
    ("iscsi-target", Some(3260), None, None),
    ("isisd", Some(2608), None, None),
    ("isns", Some(3205), Some(3205), None),
    ("iso-tsap", Some(102), None, None),
    ("jabber-client", Some(5222), None, None),
    ("jabber-server", Some(5269), None, None),
    ("kamanda", Some(10081), None, None),
    ("kdc", Some(750), Some(750), None),
    ("kerberos", Some(88), Some(88), None),
    ("kerberos-adm", Some(749), None, None),
    ("kerberos-iv", Some(750), Some(750), None),
    ("kerberos-master", Some(751), Some(751), None),
    ("kerberos-sec", Some(88), Some(88), None),
    ("kerberos4", Some(750), Some(750), None),
    ("kerberos5", Some(88), Some(88), None),
    ("kerberos_master", None, Some(751), None),
    ("kermit", Some(1649), None, None),
    ("klogin", Some(543), None, None),
    ("kpasswd", Some(464), Some(464), None),
    ("krb-prop", Some(754), None, None),
    ("krb5", Some(88), Some(88), None),
    ("krb5_prop", Some(754), None, None),
    ("krb_prop", Some(754), None, None),
    ("krcmd", Some(544), None, None),
    ("kshell", Some(544), None, None),
    ("l2f", None, Some(1701), None),
    ("l2tp", None, Some(1701), None),
    ("ldap", Some(389), Some(389), None),
    ("ldaps", Some(636), Some(636), None),
    ("ldp", Some(646), Some(646), None),
    ("loc-srv", Some(135), None, None),
    ("login", Some(513), None, None),
    ("lotusnote", Some(1352), None, None),
    ("lotusnotes", Some(1352), None, None),
    ("lrrd", Some(4949), None, None),
    ("mail", Some(25), None, None),
    ("mailq", Some(174), None, None),
    ("mdns", None, Some(5353), None),
    ("microsoft-ds", Some(445), None, None),
    ("moira-db", Some(775), None, None),
    ("moira-update", Some(777), None, None),
    ("moira-ureg", None, Some(779), None),
    ("moira_db", Some(775), None, None),
    ("moira_update", Some(777), None, None),
    ("moira_ureg", None, Some(779), None),
    ("mon", Some(2583), Some(2583), None),
    ("ms-sql-m", None, Some(1434), None),
    ("ms-sql-s", Some(1433), None, None),
    ("ms-wbt-server", Some(3389), None, None),
    ("mtn", Some(4691), None, None),
    ("munin", Some(4949), None, None),
    ("mysql", Some(3306), None, None),
    ("mysql-proxy", Some(6446), None, None),
    ("nbd", Some(10809), None, None),
    ("netbios-dgm", None, Some(138), None),
    ("netbios-ns", None, Some(137), None),
    ("netbios-ssn", Some(139), None, None),
    ("netstat", Some(15), None, None),
    ("nfs", Some(2049), Some(2049), None),
    ("nicname", Some(43), None, None),
    ("nntp", Some(119), None, None),
    ("nntps", Some(563), None, None),
    ("nqs", Some(607), None, None),
    ("nrpe", Some(5666), None, None),
    ("nsca", Some(5667), None, None),
    ("ntalk", None, Some(518), None),
    ("ntp", None, Some(123), None),
    ("ntske", Some(4460), None, None),
    ("null", Some(9), Some(9), None),
    ("nut", Some(3493), Some(3493), None),
    ("old-radacct", Some(1646), Some(1646), None),
    ("old-radius", Some(1645), Some(1645), None),
    ("omniorb", Some(8088), None, None),
    ("openvpn", Some(1194), Some(1194), None),
    ("ospf6d", Some(2606), None, None),
    ("ospfapi", Some(2607), None, None),
    ("ospfd", Some(2604), None, None),
    ("passwd-server", None, Some(752), None),
    ("passwd_server", None, Some(752), None),
    ("pawserv", Some(345), None, None),
    ("pop-3", Some(110), None, None),
    ("pop3", Some(110), None, None),
    ("pop3s", Some(995), None, None),
    ("poppassd", Some(106), None, None),
    ("portmapper", Some(111), Some(111), None),
    ("postgres", Some(5432), None, None),
    ("postgresql", Some(5432), None, None),
    ("predict", None, Some(1210), None),
    ("printer", Some(515), None, None),
    ("proofd", Some(1093), None, None),
    ("ptp-event", None, Some(319), None),
    ("ptp-general", None, Some(320), None),
    ("puppet", Some(8140), None, None),
    ("qmqp", Some(628), None, None),
    ("qmtp", Some(209), None, None),
    ("qotd", Some(17), None, None),
    ("quote", Some(17), None, None),
    ("radacct", Some(1813), Some(1813), None),
    ("radius", Some(1812), Some(1812), None),
    ("radius-acct", Some(1813), Some(1813), None),
    ("radmin-port", Some(4899), None, None),
    ("readnews", Some(119), None, None),
    ("redis", Some(6379), None, None),
    ("remctl", Some(4373), None, None),
    ("ripd", Some(2602), None, None),
    ("ripngd", Some(2603), None, None),
    ("rmiregistry", Some(1099), None, None),
    ("rmtcfg", Some(1236), None, None),
    ("rootd", Some(1094), None, None),
    ("route", None, Some(520), None),
    ("routed", None, Some(520), None),
    ("router", None, Some(520), None),
    ("rpc2portmap", Some(369), Some(369), None),
    ("rplay", None, Some(5555), None),
    ("rptp", Some(5556), None, None),
    ("rsync", Some(873), None, None),
    ("rtcm-sc104", Some(2101), Some(2101), None),
    ("rtsp", Some(554), Some(554), None),
    ("sa-msg-port", Some(1646), Some(1646), None),
    ("saft", Some(487), None, None),
    ("sane", Some(6566), None, None),
    ("sane-port", Some(6566), None, None),
    ("saned", Some(6566), None, None),
    ("sge-execd", Some(6445), None, None),
    ("sge-qmaster", Some(6444), None, None),
    ("sge_execd", Some(6445), None, None),
    ("sge_qmaster", Some(6444), None, None),
    ("sgi-cad", Some(17004), None, None),
    ("sgi-cmsd", None, Some(17001), None),
    ("sgi-crsd", None, Some(17002), None),
    ("sgi-gcd", None, Some(17003), None),
    ("shell", Some(514), None, None),
    ("sieve", Some(4190), None, None),
    ("silc", Some(706), None, None),
    ("sink", Some(9), Some(9), None),
    ("sip", Some(5060), Some(5060), None),
    ("sip-tls", Some(5061), Some(5061), None),
    ("skkserv", Some(1178), None, None),
    ("smtp", Some(25), None, None),
    ("smtps", Some(465), None, None),
    ("smux", Some(199), None, None),
    ("snmp", Some(161), Some(161), None),
    ("snmp-trap", Some(162), Some(162), None),
    ("snmptrap", Some(162), Some(162), None),
    ("snntp", Some(563), None, None),
    ("snpp", Some(444), None, None),
    ("socks", Some(1080), None, None),
    ("source", Some(19), Some(19), None),
    ("spamd", Some(783), None, None),
    ("spooler", Some(515), None, None),
    ("ssh", Some(22), None, None),
    ("ssmtp", Some(465), None, None),
    ("submission", Some(587), None, None),
    ("submissions", Some(465), None, None),
    ("subversion", Some(3690), None, None),
    ("sunrpc", Some(111), Some(111), None),
    ("supfiledbg", Some(1127), None, None),
    ("supfilesrv", Some(871), None, None),
    ("suucp", Some(4031), None, None),
    ("svn", Some(3690), None, None),
    ("svrloc", Some(427), Some(427), None),
    ("syslog", Some(514), Some(514), None),
    ("syslog-tls", Some(6514), None, None),
    ("sysrqd", Some(4094), None, None),
    ("systat", Some(11), None, None),
    ("tacacs", Some(49), Some(49), None),
    ("talk", None, Some(517), None),
    ("tap", Some(113), None, None),
    ("tcpmux", Some(1), None, None),
    ("telnet", Some(23), None, None),
    ("telnets", Some(992), None, None),
    ("tfido", Some(60177), None, None),
    ("tftp", None, Some(69), None),
    ("time", Some(37), Some(37), None),
    ("timserver", Some(37), Some(37), None),
    ("tinc", Some(655), Some(655), None),
    ("tproxy", Some(8081), None, None),
    ("tsap", Some(102), None, None),
    ("ttytst", Some(19), Some(19), None),
    ("untp", Some(119), None, None),
    ("urd", Some(465), None, None),
    ("users", Some(11), None, None),
    ("uucp", Some(540), None, None),
    ("uucpd", Some(540), None, None),
    ("venus", Some(2430), Some(2430), None),
    ("venus-se", Some(2431), Some(2431), None),
    ("wais", Some(210), None, None),
    ("webcache", Some(8080), None, None),
    ("webmin", Some(10000), None, None),
    ("who", None, Some(513), None),
    ("whod", None, Some(513), None),
    ("whois", Some(43), None, None),
    ("wnn6", Some(22273), None, None),
    ("www", Some(80), None, None),
    ("x11", Some(6000), None, None),
    ("x11-0", Some(6000), None, None),
    ("x11-1", Some(6001), None, None),
    ("x11-2", Some(6002), None, None),
    ("x11-3", Some(6003), None, None),
    ("x11-4", Some(6004), None, None),
    ("x11-5", Some(6005), None, None),
    ("x11-6", Some(6006), None, None),
    ("x11-7", Some(6007), None, None),
    ("xdmcp", None, Some(177), None),
    ("xfs", Some(7100), None, None),
    ("xinetd", Some(9098), None, None),
    ("xmms2", Some(9667), None, None),
    ("xmpp-client", Some(5222), None, None),
    ("xmpp-server", Some(5269), None, None),
    ("xtel", Some(1313), None, None),
    ("xtelw", Some(1314), None, None),
    ("z3950", Some(210), None, None),
    ("zabbix-agent", Some(10050), None, None),
    ("zabbix-trapper", Some(10051), None, None),
    ("zebra", Some(2601), None, None),
    ("zebrasrv", Some(2600), None, None),
    ("zephyr-clt", None, Some(2103), None),
    ("zephyr-hm", None, Some(2104), None),
    ("zephyr-srv", None, Some(2102), None),
    ("zope", Some(9673), None, None),
    ("zope-ftp", Some(8021), None, None),
    ("zserv", Some(346), None, None),
];

/// IP protocol names and aliases from Debian bookworm's /etc/protocols (netbase 6.4).
pub const PROTOCOLS: &[(&str, u16)] = &[
    ("AX.25", 93),
    ("CPHB", 73),
    ("DCCP", 33),
    ("DDP", 37),
    ("EGP", 8),
    ("EIGRP", 88),
    ("ENCAP", 98),
    ("ETHERIP", 97),
    ("Ethernet", 143),
    ("FC", 133),
    ("GGP", 3),
    ("GRE", 47),
    ("HIP", 139),
    ("HMP", 20),
    ("HOPOPT", 0),
    ("ICMP", 1),
    ("IDPR-CMTP", 38),
    ("IDRP", 45),
    ("IGMP", 2),
    ("IGP", 9),
    ("IP", 0),
    ("IP-ENCAP", 4),
    ("IPCOMP", 108),
    ("IPIP", 94),
    ("IPSEC-AH", 51),
    ("IPSEC-ESP", 50),
    ("IPv6", 41),
    ("IPv6-Frag", 44),
    ("IPv6-ICMP", 58),
    ("IPv6-NoNxt", 59),
    ("IPv6-Opts", 60),
    ("IPv6-Route", 43),
    ("ISIS", 124),
    ("ISO-TP4", 29),
    ("L2TP", 115),
    ("MPLS-in-IP", 137),
    ("MPTCP", 262),
    ("Mobility-Header", 135),
    ("OSPFIGP", 89),
    ("PIM", 103),
    ("PUP", 12),
    ("RDP", 27),
    ("ROHC", 142),
    ("RSPF", 73),
    ("RSVP", 46),
    ("SCTP", 132),
    ("SKIP", 57),
    ("ST", 5),
    ("Shim6", 140),
    ("TCP", 6),
    ("UDP", 17),
    ("UDPLite", 136),
    ("VMTP", 81),
    ("VRRP", 112),
    ("WESP", 141),
    ("XNS-IDP", 22),
    ("XTP", 36),
    ("ah", 51),
    ("ax.25", 93),
    ("dccp", 33),
    ("ddp", 37),
    ("egp", 8),
    ("eigrp", 88),
    ("encap", 98),
    ("esp", 50),
    ("etherip", 97),
    ("ethernet", 143),
    ("fc", 133),
    ("ggp", 3),
    ("gre", 47),
    ("hip", 139),
    ("hmp", 20),
    ("hopopt", 0),
    ("icmp", 1),
    ("idpr-cmtp", 38),
    ("idrp", 45),
    ("igmp", 2),
    ("igp", 9),
    ("ip", 0),
    ("ipcomp", 108),
    ("ipencap", 4),
    ("ipip", 94),
    ("ipv6", 41),
    ("ipv6-frag", 44),
    ("ipv6-icmp", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ipv6-route", 43),
    ("isis", 124),
    ("iso-tp4", 29),
    ("l2tp", 115),
    ("manet", 138),
    ("mobility-header", 135),
    ("mpls-in-ip", 137),
    ("mptcp", 262),
    ("ospf", 89),
    ("pim", 103),
    ("pup", 12),
    ("rdp", 27),
    ("rohc", 142),
    ("rspf", 73),
    ("rsvp", 46),
    ("sctp", 132),
    ("shim6", 140),
    ("skip", 57),
    ("st", 5),
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("vmtp", 81),
    ("vrrp", 112),
    ("wesp", 141),
    ("xns-idp", 22),
    ("xtp", 36),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(SERVICES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(PROTOCOLS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn services_resolve_like_libpcap_1_10() {
        let cases: &[(&str, Option<ServicePort>)] = &[
            (
                "http",
                Some(ServicePort {
                    port: 80,
                    ip_proto: Some(IPPROTO_TCP),
                }),
            ),
            (
                "domain",
                Some(ServicePort {
                    port: 53,
                    ip_proto: None,
                }),
            ),
            (
                "ntp",
                Some(ServicePort {
                    port: 123,
                    ip_proto: Some(IPPROTO_UDP),
                }),
            ),
            (
                "ftp-data",
                Some(ServicePort {
                    port: 20,
                    ip_proto: Some(IPPROTO_TCP),
                }),
            ),
            (
                "www",
                Some(ServicePort {
                    port: 80,
                    ip_proto: Some(IPPROTO_TCP),
                }),
            ),
            ("HTTP", None),
            ("no-such-service", None),
        ];
        for (name, want) in cases {
            assert_eq!(service_port(name), *want, "{name}");
        }
    }

    #[test]
    fn protocols_and_ethertypes() {
        assert_eq!(ip_proto_number("tcp"), Some(6));
        assert_eq!(ip_proto_number("TCP"), Some(6));
        assert_eq!(ip_proto_number("ipv6-icmp"), Some(58));
        assert_eq!(ip_proto_number("nope"), None);
        assert_eq!(ether_proto_number("ip6"), Some(0x86dd));
        assert_eq!(ether_proto_number("stp"), Some(0x42));
        assert_eq!(ether_proto_number("tcp"), None);
    }

    /// The built-in tables equal this machine's files, where they exist (Debian netbase).
    #[test]
    fn tables_match_system_files() {
        let (Ok(services), Ok(protocols)) = (
            std::fs::read_to_string("/etc/services"),
            std::fs::read_to_string("/etc/protocols"),
        ) else {
            eprintln!("skipped: /etc/services or /etc/protocols missing");
            return;
        };
        let mut want: std::collections::BTreeMap<&str, [Option<u16>; 3]> = Default::default();
        for line in services.lines() {
            let fields: Vec<&str> = line.split('#').next().unwrap().split_whitespace().collect();
            let Some((port, proto)) = fields.get(1).and_then(|f| f.split_once('/')) else {
                continue;
            };
            let slot = match proto {
                "tcp" => 0,
                "udp" => 1,
                "sctp" => 2,
                _ => continue,
            };
            let port: u16 = port.parse().unwrap();
            for name in std::iter::once(fields[0]).chain(fields[2..].iter().copied()) {
                want.entry(name).or_default()[slot].get_or_insert(port);
            }
        }
        let have: std::collections::BTreeMap<&str, [Option<u16>; 3]> = SERVICES
            .iter()
            .map(|&(n, t, u, s)| (n, [t, u, s]))
            .collect();
        assert_eq!(have, want, "built-in SERVICES differ from /etc/services");
        let mut want_protos: std::collections::BTreeMap<&str, u16> = Default::default();
        for line in protocols.lines() {
            let fields: Vec<&str> = line.split('#').next().unwrap().split_whitespace().collect();
            if fields.len() < 2 {
                continue;
            }
            let num: u16 = fields[1].parse().unwrap();
            for name in std::iter::once(fields[0]).chain(fields[2..].iter().copied()) {
                want_protos.entry(name).or_insert(num);
            }
        }
        let have_protos: std::collections::BTreeMap<&str, u16> =
            PROTOCOLS.iter().copied().collect();
        assert_eq!(
            have_protos, want_protos,
            "built-in PROTOCOLS differ from /etc/protocols"
        );
    }

    #[test]
    fn ethers_and_networks_files() {
        let ethers = "# comment\n8:0:20:1:2:3 sun\n02-00-00-00-00-0a  router # gw\nbad:mac other\n";
        let table: &[(&str, Option<[u8; 6]>)] = &[
            ("sun", Some([8, 0, 0x20, 1, 2, 3])),
            ("router", Some([2, 0, 0, 0, 0, 0x0a])),
            ("other", None),
            ("gw", None),
            ("nosuch", None),
        ];
        for (name, want) in table {
            assert_eq!(ethers_lookup_in(ethers, name), *want, "{name}");
        }
        let networks =
            "default\t\t0.0.0.0\nloopback\t127.0.0.0\nlab 10.1 lab-net # x\nbig 1.2.3.4.5\n";
        let table: &[(&str, Option<u32>)] = &[
            ("loopback", Some(0x7f00_0000)),
            ("lab", Some(0x0a01)),
            ("lab-net", Some(0x0a01)),
            ("default", Some(0)),
            ("big", None),
            ("x", None),
        ];
        for (name, want) in table {
            assert_eq!(networks_lookup_in(networks, name), *want, "{name}");
        }
        let missing = ethers_lookup(Path::new("/nonexistent/pwru/ethers"), "sun").unwrap_err();
        assert!(missing
            .to_string()
            .starts_with("cannot read /nonexistent/pwru/ethers"));
    }

    #[test]
    fn hosts_file_lookup() {
        let text = "# comment\n127.0.0.1 localhost\n::1 localhost ip6-localhost\n\
                    10.0.0.1 Server srv # trailing\n10.0.0.2 srv\n10.0.0.1 srv\nbogus srv\n";
        let v: Vec<String> = hosts_lookup_in(text, "srv")
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(v, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(hosts_lookup_in(text, "server").len(), 1);
        assert_eq!(hosts_lookup_in(text, "localhost").len(), 2);
        assert!(hosts_lookup_in(text, "nothere").is_empty());
        assert!(hosts_lookup(Path::new("/nonexistent/hosts"), "x").is_err());
    }
}
