//! Table-driven specification of the parser: pcap-filter(7) examples and libpcap 1.10
//! corner cases (checked with `tcpdump -d -y EN10MB`), each with its AST or its error.

use super::*;
use crate::pcapc::ast::{Arith, ArithOp, Dir, Expr, Llc, Net4, Prim, Proto, RelOp};
use std::io::Write;

/// Parses with a fixed hosts file, so tests do not depend on the machine.
fn parse_test(expr: &str) -> Result<Option<Expr>, ParseError> {
    let opts = ParseOptions {
        hosts_file: hosts_file(),
        ..ParseOptions::default()
    };
    parse_with(expr, &opts)
}

/// A hosts file for the tests, written once per process (tests run in parallel).
fn hosts_file() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("pwru-pcapc-hosts-{}", std::process::id()));
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(
            f,
            "127.0.0.1 localhost\n::1 localhost ip6-localhost\n\
             10.0.0.5 server.example server # comment\n10.0.0.6 server\n\
             2001:db8::7 v6only"
        )
        .unwrap();
        path
    })
    .clone()
}

/// Expressions and the fully parenthesised AST `Display` they must produce.
const ACCEPTED: &[(&str, &str)] = &[
    // protocols and boolean structure
    ("tcp", "tcp"),
    ("ip6", "ip6"),
    (
        "ah or esp or carp or vrrp or pim",
        "((((ah or esp) or carp) or vrrp) or pim)",
    ),
    ("not tcp", "(not tcp)"),
    ("! tcp", "(not tcp)"),
    ("!tcp", "(not tcp)"),
    ("not not tcp", "(not (not tcp))"),
    ("tcp && udp || icmp", "((tcp and udp) or icmp)"),
    // and/or: same precedence, left to right
    ("tcp or udp and icmp", "((tcp or udp) and icmp)"),
    ("tcp and udp or icmp", "((tcp and udp) or icmp)"),
    ("not tcp and udp", "((not tcp) and udp)"),
    ("tcp and (udp or icmp)", "(tcp and (udp or icmp))"),
    ("((tcp))", "tcp"),
    // hosts, directions
    ("host 1.2.3.4", "src or dst host 1.2.3.4"),
    ("src host 1.2.3.4", "src host 1.2.3.4"),
    ("dst 1.2.3.4", "dst host 1.2.3.4"),
    ("src or dst host 1.2.3.4", "src or dst host 1.2.3.4"),
    ("dst or src host 1.2.3.4", "src or dst host 1.2.3.4"),
    ("src and dst host 1.2.3.4", "src and dst host 1.2.3.4"),
    ("dst && src 1.2.3.4", "src and dst host 1.2.3.4"),
    ("ip src 1.2.3.4", "ip src host 1.2.3.4"),
    ("arp host 1.2.3.4", "arp src or dst host 1.2.3.4"),
    ("rarp dst host 1.2.3.4", "rarp dst host 1.2.3.4"),
    ("host 10", "src or dst host 0.0.0.10"),
    ("host 010.1.1.1", "src or dst host 10.1.1.1"),
    ("host 10.1.2", "src or dst net 10.1.2.0 mask 255.255.255.0"),
    ("host ::1", "ip6 src or dst host ::1"),
    ("ip6 dst host 2001:db8::1", "ip6 dst host 2001:db8::1"),
    ("host ::ffff:1.2.3.4", "ip6 src or dst host ::ffff:1.2.3.4"),
    ("ip6 host ::1/128", "ip6 src or dst host ::1"),
    // host names come from the hosts file only; several addresses make an `or`
    (
        "host localhost",
        "(src or dst host 127.0.0.1 or ip6 src or dst host ::1)",
    ),
    ("ip host localhost", "ip src or dst host 127.0.0.1"),
    ("ip6 host localhost", "ip6 src or dst host ::1"),
    (
        "src host SERVER",
        "(src host 10.0.0.5 or src host 10.0.0.6)",
    ),
    ("host server.example", "src or dst host 10.0.0.5"),
    ("host v6only", "ip6 src or dst host 2001:db8::7"),
    ("host \\10.1.2.3", "src or dst host 10.1.2.3"),
    // qualifier inheritance
    (
        "tcp dst port 80 or 8080",
        "(tcp dst port 80 or tcp dst port 8080)",
    ),
    (
        "host 1.1.1.1 and not 2.2.2.2",
        "(src or dst host 1.1.1.1 and (not src or dst host 2.2.2.2))",
    ),
    (
        "src net 10 or 11",
        "(src net 10.0.0.0 mask 255.0.0.0 or src net 11.0.0.0 mask 255.0.0.0)",
    ),
    (
        "port 1 or 2 or 3",
        "((src or dst port 1 or src or dst port 2) or src or dst port 3)",
    ),
    ("src port 1 and dst 2", "(src port 1 and dst host 0.0.0.2)"),
    (
        "host 1.1.1.1 or (2.2.2.2 and not 3.3.3.3)",
        "(src or dst host 1.1.1.1 or (src or dst host 2.2.2.2 and (not src or dst host 3.3.3.3)))",
    ),
    // a parenthesised term passes on the qualifier from before it (libpcap quirk)
    (
        "host 1.2.3.4 and (tcp) or 5.6.7.8",
        "((src or dst host 1.2.3.4 and tcp) or src or dst host 5.6.7.8)",
    ),
    (
        "not host 1.2.3.4 and 5.6.7.8",
        "((not src or dst host 1.2.3.4) and src or dst host 5.6.7.8)",
    ),
    ("host not 1.2.3.4", "(not src or dst host 1.2.3.4)"),
    // ether
    (
        "ether host aa:bb:cc:dd:ee:ff",
        "ether src or dst host aa:bb:cc:dd:ee:ff",
    ),
    (
        "ether src aa-bb-cc-dd-ee-ff",
        "ether src host aa:bb:cc:dd:ee:ff",
    ),
    (
        "ether dst aabb.ccdd.eeff",
        "ether dst host aa:bb:cc:dd:ee:ff",
    ),
    (
        "ether host a:b:c:d:e:f",
        "ether src or dst host 0a:0b:0c:0d:0e:0f",
    ),
    (
        "ether host 001122334455",
        "ether src or dst host 00:11:22:33:44:55",
    ),
    (
        "ether host aa.bb.cc.dd.ee.ff",
        "ether src or dst host aa:bb:cc:dd:ee:ff",
    ),
    (
        "link src and dst 1:2:3:4:5:6",
        "ether src and dst host 01:02:03:04:05:06",
    ),
    ("ether broadcast", "ether broadcast"),
    ("broadcast", "ether broadcast"),
    ("ip broadcast", "ip broadcast"),
    ("multicast", "ether multicast"),
    ("ip6 multicast", "ip6 multicast"),
    // networks
    ("net 10", "src or dst net 10.0.0.0 mask 255.0.0.0"),
    ("net 0x0a", "src or dst net 10.0.0.0 mask 255.0.0.0"),
    ("net 192.168", "src or dst net 192.168.0.0 mask 255.255.0.0"),
    (
        "net 10.1.2.3",
        "src or dst net 10.1.2.3 mask 255.255.255.255",
    ),
    ("net 10.0.0.0/8", "src or dst net 10.0.0.0 mask 255.0.0.0"),
    (
        "net 10.1.2/24",
        "src or dst net 10.1.2.0 mask 255.255.255.0",
    ),
    ("net 0.0.0.0/0", "src or dst net 0.0.0.0 mask 0.0.0.0"),
    (
        "net 10.0.0.0 mask 255.255.0.255",
        "src or dst net 10.0.0.0 mask 255.255.0.255",
    ),
    (
        "ip dst net 10.0.0.0/8 or 11",
        "(ip dst net 10.0.0.0 mask 255.0.0.0 or ip dst net 11.0.0.0 mask 255.0.0.0)",
    ),
    ("ip6 net 2001:db8::/32", "ip6 src or dst net 2001:db8::/32"),
    ("net ::/0", "ip6 src or dst net ::/0"),
    ("net ::1", "ip6 src or dst net ::1/128"),
    // ports
    ("port 80", "src or dst port 80"),
    ("port 0x50", "src or dst port 80"),
    ("port 0120", "src or dst port 80"),
    ("tcp port 80", "tcp src or dst port 80"),
    ("udp src port 53", "udp src port 53"),
    ("sctp port 9", "sctp src or dst port 9"),
    ("port http", "tcp src or dst port 80"),
    ("port domain", "src or dst port 53"),
    ("udp port domain", "udp src or dst port 53"),
    ("sctp port domain", "sctp src or dst port 53"),
    ("port ntp", "udp src or dst port 123"),
    ("portrange 20-30", "src or dst portrange 20-30"),
    ("portrange 30-20", "src or dst portrange 20-30"),
    ("portrange 20-30x", "src or dst portrange 20-30"),
    ("tcp portrange ftp-http", "tcp src or dst portrange 21-80"),
    ("portrange 20-http", "src or dst portrange 20-80"),
    ("portrange 20", "src or dst portrange 20-20"),
    // protocols by number and name
    ("proto 6", "proto 6"),
    ("proto \\tcp", "proto 6"),
    ("ip proto \\udp", "ip proto 17"),
    ("ip6 proto \\ipv6-icmp", "ip6 proto 58"),
    ("ip proto \\IP", "ip proto 0"),
    ("ip protochain 6", "ip protochain 6"),
    ("protochain \\tcp", "protochain 6"),
    ("ether proto 0x800", "ether proto 2048"),
    ("ether proto \\ip6", "ether proto 34525"),
    ("ether proto \\arp", "ether proto 2054"),
    ("ether proto \\stp", "ether proto 66"),
    // length
    ("less 10", "less 10"),
    ("greater 0x10", "greater 16"),
    ("len >= 100", "(len >= 100)"),
    ("length != 1", "(len != 1)"),
    // relations and arithmetic
    ("tcp[13] & 2 != 0", "((tcp[13:1] & 2) != 0)"),
    ("tcp[tcpflags] & tcp-syn != 0", "((tcp[13:1] & 2) != 0)"),
    (
        "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0",
        "((tcp[13:1] & (2 | 1)) != 0)",
    ),
    ("icmp[icmptype] = icmp-echo", "(icmp[0:1] = 8)"),
    ("icmp[icmpcode] == 0", "(icmp[1:1] = 0)"),
    ("icmp6[icmp6type] = icmp6-echo", "(icmp6[0:1] = 128)"),
    ("ip[2:2] > 576", "(ip[2:2] > 576)"),
    (
        "ether[0] & 1 = 0 and ip[16] >= 224",
        "(((ether[0:1] & 1) = 0) and (ip[16:1] >= 224))",
    ),
    ("link[12:2] = 0x800", "(ether[12:2] = 2048)"),
    (
        "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420",
        "(tcp[((tcp[12:1] & 240) >> 2):4] = 1195725856)",
    ),
    ("len - 1 - 1 = 0", "(((len - 1) - 1) = 0)"),
    ("len + 2 * 3 = 0", "((len + (2 * 3)) = 0)"),
    ("len & 1 | 2 = 0", "(((len & 1) | 2) = 0)"),
    ("len | 1 & 2 = 0", "((len | (1 & 2)) = 0)"),
    ("len << 1 + 1 = 0", "((len << (1 + 1)) = 0)"),
    ("len + 2 << 1 = 0", "(((len + 2) << 1) = 0)"),
    ("len = -1 + 2", "(len = ((-1) + 2))"),
    ("len * -2 = 1", "((len * (-2)) = 1)"),
    // `%` and `^` take everything to their right (no declared precedence in grammar.y)
    ("len % 3 + 1 = 0", "((len % (3 + 1)) = 0)"),
    ("len + 1 % 3 = 0", "((len + (1 % 3)) = 0)"),
    ("len ^ 2 * 3 = 0", "((len ^ (2 * 3)) = 0)"),
    ("len * 2 ^ 3 = 0", "((len * (2 ^ 3)) = 0)"),
    ("-len % 2 = 0", "((-(len % 2)) = 0)"),
    ("(len + 1) % 2 = 0", "(((len + 1) % 2) = 0)"),
    ("(len) = 1", "(len = 1)"),
    ("1 = 1", "(1 = 1)"),
    ("len > 4294967295", "(len > 4294967295)"),
    ("len > 037777777", "(len > 8388607)"),
    ("len > 0X1F", "(len > 31)"),
    ("len > 00", "(len > 0)"),
    ("byte 1 = 2", "(ether[1:1] = 2)"),
    ("byte 1 & 2", "((ether[1:1] & 2) != 0)"),
    ("byte 1 | 2", "((ether[1:1] | 2) != 0)"),
    // encapsulations
    ("vlan", "vlan"),
    ("vlan 100", "vlan 100"),
    ("vlan (100)", "vlan 100"),
    ("vlan and vlan 20 and tcp", "((vlan and vlan 20) and tcp)"),
    ("mpls 1048575", "mpls 1048575"),
    ("pppoed or pppoes 1", "(pppoed or pppoes 1)"),
    ("geneve 16777215 and ip", "(geneve 16777215 and ip)"),
    ("llc", "llc"),
    ("llc i", "llc i"),
    ("llc S", "llc s"),
    ("llc rnr", "llc rnr"),
    ("llc xid", "llc xid"),
    // libpcap's other link-layer names are `ether` on every link type
    (
        "fddi host aa:bb:cc:dd:ee:ff",
        "ether src or dst host aa:bb:cc:dd:ee:ff",
    ),
    ("tr src 1:2:3:4:5:6", "ether src host 01:02:03:04:05:06"),
    ("wlan[0] = 1", "(ether[0:1] = 1)"),
    ("ppp proto 0x800", "ether proto 2048"),
    ("slip broadcast", "ether broadcast"),
    // LLC, OSI, DECnet, AppleTalk and DEC's protocols
    ("stp or ipx or netbeui", "((stp or ipx) or netbeui)"),
    ("vlan and stp", "(vlan and stp)"),
    (
        "iso or clnp or esis or es-is or isis or is-is",
        "(((((iso or clnp) or esis) or esis) or isis) or isis)",
    ),
    ("l1 or l2 or iih or lsp", "(((l1 or l2) or iih) or lsp)"),
    ("snp or csnp or psnp", "((snp or csnp) or psnp)"),
    ("iso proto 0x83", "iso proto 131"),
    // numbers past the field's width are accepted and never match, as in libpcap
    ("ip proto 300", "ip proto 300"),
    ("ether proto 0x10000", "ether proto 65536"),
    ("protochain 256", "protochain 256"),
    ("iso proto \\isis", "iso proto 131"),
    ("isis proto 15", "isis proto 15"),
    ("atalk or aarp", "(atalk or aarp)"),
    (
        "lat or sca or mopdl or moprc",
        "(((lat or sca) or mopdl) or moprc)",
    ),
    ("decnet", "decnet"),
    ("decnet host 1.2", "decnet src or dst host 1.2"),
    ("decnet src 63.1023", "decnet src host 63.1023"),
    // libpcap keeps the low bits of area and node
    ("decnet dst 64.1025", "decnet dst host 0.1"),
    (
        "decnet src and dst host 1029",
        "decnet src and dst host 1.5",
    ),
    (
        "decnet host 1.2 or 1.3",
        "(decnet src or dst host 1.2 or decnet src or dst host 1.3)",
    ),
    ("decnet net 10.0/16", "decnet src or dst host 0.0"),
    (
        "atalk[0] = 1 and decnet[2:2] = 3",
        "((atalk[0:1] = 1) and (decnet[2:2] = 3))",
    ),
    // the direction and interface of Linux cooked captures
    ("inbound", "inbound"),
    ("tcp and outbound", "(tcp and outbound)"),
    ("ifindex 3", "ifindex 3"),
    // whitespace, empty
    ("  tcp\n\tand\r udp ", "(tcp and udp)"),
];

/// Expressions that must fail: (expression, column, error kind, text in the message).
const REJECTED: &[(&str, usize, &str, &str)] = &[
    // syntax, as libpcap
    ("tcp and", 8, "syntax", "end of expression"),
    ("and tcp", 1, "syntax", "unexpected 'and'"),
    ("tcp tcp", 5, "syntax", "unexpected 'tcp'"),
    ("()", 2, "syntax", "unexpected ')'"),
    ("(tcp", 5, "syntax", "end of expression"),
    ("1.2.3.4", 1, "syntax", "expected a primitive"),
    ("TCP", 1, "syntax", "unexpected 'TCP'"),
    ("tcpx", 1, "syntax", "unexpected 'tcpx'"),
    ("host tcp", 6, "syntax", "expected a value"),
    ("ip proto tcp", 10, "syntax", "unexpected 'tcp'"),
    ("protochain tcp", 12, "syntax", "unexpected 'tcp'"),
    ("len-1 > 0", 1, "syntax", "unexpected 'len-1'"),
    ("len = 5-3", 7, "syntax", "unexpected '5-3'"),
    ("len > 037777777777", 7, "syntax", "unexpected"),
    ("len > 1f", 7, "syntax", "unexpected '1f'"),
    ("net 10/8", 7, "syntax", "unexpected '/8'"),
    ("net 10.0.0.0 mask 255", 19, "syntax", "expected an address"),
    ("host 1.1.1.1 or ((2.2.2.2))", 19, "syntax", "unexpected"),
    ("host fe80::1%eth0", 13, "syntax", "unexpected '%eth0'"),
    ("portrange 20 - 30", 14, "syntax", "unexpected '-'"),
    ("byte 1 ! 2", 8, "syntax", "expected one of"),
    ("tcp # comment", 5, "syntax", "unexpected '#'"),
    ("vxlan 5", 1, "syntax", "not a keyword in libpcap 1.10"),
    // nothing to inherit (libpcap: "syntax error in filter expression")
    ("tcp or 10", 8, "syntax", "no qualifier to inherit"),
    ("(tcp) or 10", 10, "syntax", "no qualifier to inherit"),
    (
        "host 1.2.3.4 or tcp or 5.6.7.8",
        24,
        "syntax",
        "no qualifier to inherit",
    ),
    // numbers
    ("len > 09", 7, "invalid", "contains non-octal digit"),
    ("len > 4294967296", 7, "invalid", "overflows 32 bits"),
    ("len > 0x100000000", 7, "invalid", "overflows 32 bits"),
    // addresses
    (
        "host 300.1.1.1",
        6,
        "invalid",
        "invalid IPv4 address '300.1.1.1'",
    ),
    ("host 0x0a.1", 6, "invalid", "invalid IPv4 address"),
    (
        "host 10.0.0.0/8",
        6,
        "invalid",
        "Mask syntax for networks only",
    ),
    (
        "net 10.0.0.1/8",
        5,
        "invalid",
        "non-network bits set in \"10.0.0.1/8\"",
    ),
    (
        "net 10.1.0.0 mask 255.0.0.0",
        5,
        "invalid",
        "non-network bits",
    ),
    (
        "net 10.0.0.0/33",
        14,
        "invalid",
        "mask length must be <= 32",
    ),
    ("net 2001:db8::1/32", 5, "invalid", "non-network bits"),
    (
        "ip6 net ::1/129",
        13,
        "invalid",
        "mask length must be <= 128",
    ),
    (
        "host 2001:db8::/64",
        6,
        "invalid",
        "Mask syntax for networks only",
    ),
    ("host 1:2:3:4:5:6:7:8:9", 6, "invalid", "bogus IPv6 address"),
    (
        "ether host aa:bb:cc:dd:ee",
        12,
        "invalid",
        "bogus ethernet address",
    ),
    (
        "host aa:bb:cc:dd:ee:ff",
        6,
        "invalid",
        "ethernet address used in non-ether expression",
    ),
    (
        "host 001122334455",
        6,
        "invalid",
        "ethernet address used in non-ether",
    ),
    (
        "host 1.2.3.4.5.6",
        6,
        "invalid",
        "ethernet address used in non-ether",
    ),
    (
        "ip6 host 1.2.3.4",
        10,
        "invalid",
        "'ip6' modifier applied to ip host",
    ),
    (
        "ip host ::1",
        9,
        "invalid",
        "'ip' modifier applied to ip6 host",
    ),
    (
        "tcp host 1.2.3.4",
        10,
        "invalid",
        "'tcp' modifier applied to host",
    ),
    ("tcp src 80", 9, "invalid", "'tcp' modifier applied to host"),
    ("tcp net 10", 9, "invalid", "'tcp' modifier applied to net"),
    ("ether net 10", 11, "invalid", "illegal link layer address"),
    (
        "ether host 1.2.3.4",
        12,
        "invalid",
        "link-layer modifier applied to host",
    ),
    (
        "arp host localhost",
        10,
        "invalid",
        "'arp' modifier applied to ip6 host",
    ),
    // ports and protocols
    (
        "port 70000",
        6,
        "invalid",
        "illegal port number 70000 > 65535",
    ),
    (
        "portrange 20-70000",
        11,
        "invalid",
        "illegal port number 70000 > 65535",
    ),
    ("ip port 80", 9, "invalid", "illegal qualifier of 'port'"),
    (
        "icmp portrange 1-2",
        16,
        "invalid",
        "illegal qualifier of 'portrange'",
    ),
    ("udp port http", 10, "invalid", "port 'http' is tcp"),
    ("sctp port http", 11, "invalid", "port 'http' is tcp"),
    ("tcp port ntp", 10, "invalid", "port 'ntp' is udp"),
    (
        "port 1.2.3.4",
        6,
        "invalid",
        "'port' modifier applied to IP address",
    ),
    (
        "proto 10.0.0.0/8",
        7,
        "invalid",
        "'proto' modifier applied to IP address and prefix",
    ),
    ("tcp proto 6", 11, "invalid", "'tcp proto' is bogus"),
    (
        "arp proto 6",
        11,
        "invalid",
        "arp does not encapsulate another protocol",
    ),
    (
        "tcp protochain 6",
        16,
        "invalid",
        "bad protocol applied for 'protochain'",
    ),
    (
        "ip6 broadcast",
        1,
        "invalid",
        "only link-layer/IP broadcast",
    ),
    ("arp multicast", 1, "invalid", "multicast filters supported"),
    ("ether", 1, "invalid", "link layer applied in wrong context"),
    ("ip[0:3] = 1", 6, "invalid", "data size must be 1, 2, or 4"),
    ("ah[0] = 1", 1, "invalid", "unsupported index operation"),
    (
        "vlan 4096",
        6,
        "invalid",
        "VLAN tag 4096 greater than maximum 4095",
    ),
    ("mpls 1048576", 6, "invalid", "greater than maximum 1048575"),
    ("pppoes 65536", 8, "invalid", "greater than maximum 65535"),
    (
        "geneve 16777216",
        8,
        "invalid",
        "greater than maximum 16777215",
    ),
    // names
    ("host nosuchhost", 6, "unknown", "unknown host 'nosuchhost'"),
    (
        "ip6 host server",
        10,
        "unknown",
        "for specified address family",
    ),
    ("net localnet", 5, "unknown", "unknown network 'localnet'"),
    (
        "port no-such-service",
        6,
        "unknown",
        "unknown port 'no-such-service'",
    ),
    (
        "portrange ftp-data-http",
        11,
        "unknown",
        "unknown port in range",
    ),
    ("ip proto \\foo", 10, "unknown", "unknown ip proto 'foo'"),
    (
        "ether proto \\foo",
        13,
        "unknown",
        "unknown ether proto 'foo'",
    ),
    ("llc foo", 5, "unknown", "unknown LLC type name 'foo'"),
    // valid pcap-filter that pwru does not support
    ("ether host foo", 12, "unknown", "unknown ether host 'foo'"),
    (
        "gateway 10.0.0.1",
        9,
        "invalid",
        "'gateway' requires a name",
    ),
    ("gateway 10", 9, "invalid", "'gateway' requires a name"),
    (
        "ip6 gateway snup",
        13,
        "invalid",
        "illegal modifier of 'gateway'",
    ),
    ("ifname eth0", 1, "unsupported", "--filter-ifname"),
    ("on eth0", 1, "unsupported", "'on'"),
    ("rnr 1", 1, "unsupported", "pflog"),
    ("action pass", 1, "unsupported", "pflog"),
    ("type mgt subtype beacon", 1, "unsupported", "802.11"),
    ("ra 1.2.3.4", 1, "unsupported", "'ra' is not supported"),
    ("addr1 aa:bb:cc:dd:ee:ff", 1, "unsupported", "802.11"),
    // what libpcap refuses on Ethernet and raw IP, with its reason
    (
        "radio[0] = 1",
        1,
        "invalid",
        "'radio' is not a valid protocol type",
    ),
    (
        "decnet host foo",
        13,
        "invalid",
        "decnet name support not included",
    ),
    (
        "decnet host 1x.2",
        13,
        "invalid",
        "decnet name support not included",
    ),
    (
        "decnet proto 1",
        14,
        "invalid",
        "DECNET encapsulation is not specifiable",
    ),
    (
        "atalk proto 1",
        13,
        "invalid",
        "AppleTalk encapsulation is not specifiable",
    ),
    (
        "lat proto 1",
        11,
        "invalid",
        "LAT does not encapsulate another protocol",
    ),
    (
        "clnp proto 1",
        12,
        "invalid",
        "'clnp proto' is not supported",
    ),
    ("stp proto 1", 11, "invalid", "'stp proto' is bogus"),
    ("l1 proto 1", 10, "invalid", "'l1 proto' is bogus"),
    ("iso proto \\foo", 11, "unknown", "unknown osi proto 'foo'"),
    (
        "iso protochain 1",
        16,
        "invalid",
        "bad protocol applied for 'protochain'",
    ),
    (
        "atalk host 1.2",
        12,
        "invalid",
        "'atalk' modifier applied to host",
    ),
    (
        "decnet port 1",
        13,
        "invalid",
        "illegal qualifier of 'port'",
    ),
    ("vpi 1", 1, "unsupported", "ATM"),
    ("sio 1", 1, "unsupported", "MTP"),
    ("host $ab", 6, "unsupported", "ARCnet"),
];

fn kind_name(k: &ParseErrorKind) -> &'static str {
    match k {
        ParseErrorKind::Syntax(_) => "syntax",
        ParseErrorKind::Unsupported { .. } => "unsupported",
        ParseErrorKind::UnknownName { .. } => "unknown",
        ParseErrorKind::Invalid(_) => "invalid",
        ParseErrorKind::TooComplex(_) => "complex",
    }
}

#[test]
fn accepted_expressions_give_their_ast() {
    let mut failures = Vec::new();
    for (expr, want) in ACCEPTED {
        match parse_test(expr) {
            Ok(Some(e)) if e.to_string() == *want => {}
            other => failures.push(format!("{expr:?}: want {want:?}, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rejected_expressions_give_their_error() {
    let mut failures = Vec::new();
    for (expr, column, kind, text) in REJECTED {
        match parse_test(expr) {
            Err(e)
                if e.column == *column
                    && kind_name(&e.kind) == *kind
                    && e.message().contains(text) => {}
            other => failures.push(format!(
                "{expr:?}: want {kind} at {column} containing {text:?}, got {:?}",
                other.map_err(|e| e.message())
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn blank_expression_matches_everything() {
    for e in ["", " ", "\t\n "] {
        assert_eq!(parse_test(e), Ok(None), "{e:?}");
    }
}

#[test]
fn ast_shapes_are_exact() {
    let h4 = |dir, addr| {
        Expr::Prim(Prim::Host4 {
            proto: None,
            dir,
            addr,
        })
    };
    assert_eq!(
        parse_test("host 10.0.0.1 or dst 10.0.0.2")
            .unwrap()
            .unwrap(),
        Expr::Or(
            Box::new(h4(Dir::SrcOrDst, 0x0a00_0001)),
            Box::new(h4(Dir::Dst, 0x0a00_0002))
        )
    );
    assert_eq!(
        parse_test("net 172.16").unwrap().unwrap(),
        Expr::Prim(Prim::Net4 {
            proto: None,
            dir: Dir::SrcOrDst,
            net: Net4 {
                addr: 0xac10_0000,
                mask: 0xffff_0000
            }
        })
    );
    assert_eq!(
        parse_test("udp port domain").unwrap().unwrap(),
        Expr::Prim(Prim::Port {
            proto: Some(Proto::Udp),
            dir: Dir::SrcOrDst,
            port: 53
        })
    );
    assert_eq!(
        parse_test("ip6 proto 58").unwrap().unwrap(),
        Expr::Prim(Prim::IpProto {
            under: Some(Proto::Ip6),
            proto: 58
        })
    );
    assert_eq!(
        parse_test("llc ui").unwrap().unwrap(),
        Expr::Prim(Prim::Llc(Llc::USubtype(0x03)))
    );
    assert_eq!(
        parse_test("tcp[0:2] - 1 < len").unwrap().unwrap(),
        Expr::Rel {
            op: RelOp::Lt,
            lhs: Arith::Bin {
                op: ArithOp::Sub,
                lhs: Box::new(Arith::Load {
                    proto: Proto::Tcp,
                    offset: Box::new(Arith::Num(0)),
                    size: 2
                }),
                rhs: Box::new(Arith::Num(1)),
            },
            rhs: Arith::Len,
        }
    );
}

#[test]
fn display_shows_caret_under_column() {
    let err = parse_test("tcp and udp or 10").unwrap_err();
    assert_eq!(err.column, 16);
    let shown = err.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3, "{shown}");
    assert!(
        lines[0].starts_with("syntax error at column 16: "),
        "{shown}"
    );
    assert_eq!(lines[1], "  tcp and udp or 10");
    assert_eq!(lines[2], format!("  {}^", " ".repeat(15)));
}

#[test]
fn columns_count_characters_not_bytes() {
    let err = parse_test("host é").unwrap_err();
    assert_eq!(err.column, 6);
    let err = parse_test("tcp and é").unwrap_err();
    assert_eq!(err.column, 9);
}

#[test]
fn display_round_trips_through_the_parser() {
    for (expr, _) in ACCEPTED {
        let Ok(Some(ast)) = parse_test(expr) else {
            continue;
        };
        let printed = ast.to_string();
        // `llc` subtypes and `byte` print in forms that re-parse to the same AST too.
        let again = parse_test(&printed).unwrap_or_else(|e| panic!("{printed}: {e}"));
        assert_eq!(again, Some(ast), "{expr} -> {printed}");
    }
}

#[test]
fn deep_or_long_inputs_are_refused_not_crashed() {
    let deep = format!("{}tcp{}", "(".repeat(500), ")".repeat(500));
    assert!(matches!(
        parse_test(&deep).unwrap_err().kind,
        ParseErrorKind::TooComplex(_)
    ));
    let ok_depth = format!("{}tcp{}", "(".repeat(50), ")".repeat(50));
    assert_eq!(parse_test(&ok_depth).unwrap().unwrap().to_string(), "tcp");
    let long = "tcp or ".repeat(20_000) + "tcp";
    assert!(matches!(
        parse_test(&long).unwrap_err().kind,
        ParseErrorKind::TooComplex(_)
    ));
    let negs = format!("len = {}1", "- ".repeat(2000));
    assert!(matches!(
        parse_test(&negs).unwrap_err().kind,
        ParseErrorKind::TooComplex(_)
    ));
    let nots = format!("{}tcp", "not ".repeat(900));
    assert!(parse_test(&nots).unwrap().is_some());
    let mods = format!("len = 1{}", " % 1".repeat(900));
    assert!(parse_test(&mods).unwrap().is_some());
    let many_hosts = (0..2000)
        .map(|i| format!("host 10.0.{}.{}", i / 256, i % 256))
        .collect::<Vec<_>>()
        .join(" or ");
    assert!(parse_test(&many_hosts).unwrap().is_some());
}

/// `ether host NAME` from the ethers file, `net NAME` from the networks file, moved up
/// to the top byte as libpcap does (`lab 10.1` is 10.1.0.0/16; `loopback 127.0.0.0` is
/// the whole address, as tcpdump -d 'net loopback' compares it).
#[test]
fn ethers_and_networks_names() {
    let dir = std::env::temp_dir().join(format!("pwru-pcapc-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ethers, networks) = (dir.join("ethers"), dir.join("networks"));
    std::fs::write(&ethers, "02:00:00:00:00:0a router\n").unwrap();
    std::fs::write(&networks, "loopback 127.0.0.0\nlab 10.1\n").unwrap();
    let opts = ParseOptions {
        hosts_file: hosts_file(),
        ethers_file: ethers,
        networks_file: networks,
    };
    let shown = |e: &str| match parse_with(e, &opts) {
        Ok(Some(expr)) => expr.to_string(),
        other => panic!("{e}: {other:?}"),
    };
    assert_eq!(
        shown("ether host router"),
        shown("ether host 02:00:00:00:00:0a")
    );
    assert_eq!(
        shown("ether src router"),
        shown("ether src 02:00:00:00:00:0a")
    );
    assert_eq!(shown("net lab"), shown("net 10.1.0.0/16"));
    assert_eq!(
        shown("dst net loopback"),
        shown("dst net 127.0.0.0 mask 255.255.255.255")
    );
    // The frames through server's MAC that are not its own IPv4 packets (hosts file:
    // 10.0.0.5 and 10.0.0.6 are server).
    std::fs::write(
        &opts.ethers_file,
        "02:00:00:00:00:0a router\n02:00:00:00:00:0b server\n",
    )
    .unwrap();
    assert_eq!(
        shown("gateway server"),
        shown("ether host 02:00:00:00:00:0b and not (host 10.0.0.5 or host 10.0.0.6)")
    );
    for (e, want) in [
        ("ether host nosuch", "unknown ether host 'nosuch'"),
        ("net nosuch", "unknown network 'nosuch'"),
    ] {
        let err = parse_with(e, &opts).unwrap_err();
        assert!(err.message().contains(want), "{e}: {}", err.message());
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn hosts_file_path_is_injectable() {
    let opts = ParseOptions {
        hosts_file: PathBuf::from("/nonexistent/pwru/hosts"),
        ..ParseOptions::default()
    };
    let err = parse_with("host localhost", &opts).unwrap_err();
    assert!(
        err.message()
            .contains("cannot read /nonexistent/pwru/hosts"),
        "{}",
        err.message()
    );
    assert!(parse_with("host 127.0.0.1", &opts).is_ok());
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn pcapish() -> impl Strategy<Value = String> {
        let word = prop::sample::select(vec![
            "host",
            "net",
            "port",
            "portrange",
            "src",
            "dst",
            "or",
            "and",
            "not",
            "!",
            "(",
            ")",
            "tcp",
            "ip",
            "ip6",
            "ether",
            "proto",
            "len",
            "vlan",
            "llc",
            "mask",
            "[",
            "]",
            ":",
            "=",
            "<",
            ">=",
            "+",
            "-",
            "*",
            "%",
            "^",
            "&",
            "|",
            "<<",
            "1.2.3.4",
            "::1",
            "10",
            "0x1f",
            "07",
            "08",
            "aa:bb:cc:dd:ee:ff",
            "http",
            "20-30",
            "\\tcp",
            "tcp-syn",
            "localhost",
            "9999999999",
            "é",
            "$1",
            "",
        ]);
        prop::collection::vec(word, 0..12).prop_map(|w| w.join(" "))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any text: an AST or an error whose column lies inside (or just after) the text.
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,64}") {
            if let Err(e) = parse_test(&s) {
                prop_assert!(e.column >= 1 && e.column <= s.chars().count() + 1);
            }
        }

        /// Token soup: accepted expressions print to text that parses back to the same AST.
        #[test]
        fn token_soup_round_trips(s in pcapish()) {
            match parse_test(&s) {
                Ok(Some(ast)) => {
                    let again = parse_test(&ast.to_string());
                    prop_assert_eq!(again, Ok(Some(ast)));
                }
                Ok(None) => prop_assert!(s.trim().is_empty()),
                Err(e) => prop_assert!(e.column >= 1 && e.column <= s.chars().count() + 1),
            }
        }
    }
}
