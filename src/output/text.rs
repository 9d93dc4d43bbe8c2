//! Allocation-free text building blocks for output lines: decimal/hex numbers, padding,
//! centring, IP addresses as Go prints them and the wall-clock TIME column.

use crate::events::{ETH_P_IP, ETH_P_IPV6};

/// Appends `v` in decimal.
#[inline]
pub fn push_dec(buf: &mut String, v: impl itoa::Integer) {
    buf.push_str(itoa::Buffer::new().format(v));
}

/// Appends `v` in lowercase hex without prefix (Go `%x`).
pub fn push_hex(buf: &mut String, v: u64) {
    push_hex_digits(buf, v, 1, false);
}

/// Appends `v` as `%#x` (`0x` + lowercase hex; `0x0` for zero).
pub fn push_hex_prefixed(buf: &mut String, v: u64) {
    buf.push_str("0x");
    push_hex(buf, v);
}

/// Appends `v` in hex with at least `min_digits` digits.
pub fn push_hex_digits(buf: &mut String, v: u64, min_digits: usize, upper: bool) {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut tmp = [0u8; 16];
    let mut n = v;
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = digits[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    push_repeated(buf, ZEROS, min_digits.saturating_sub(tmp.len() - i));
    // SAFETY: `tmp[i..]` holds only bytes from `digits`, which are ASCII.
    buf.push_str(unsafe { std::str::from_utf8_unchecked(&tmp[i..]) });
}

const SPACES: &str = "                                                                ";
const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Appends `n` characters of `fill` (a run of one ASCII character).
fn push_repeated(buf: &mut String, fill: &str, mut n: usize) {
    while n > 0 {
        let k = n.min(fill.len());
        buf.push_str(&fill[..k]);
        n -= k;
    }
}

/// Pads ASCII text written since byte `start` with spaces to `width` bytes.
#[inline]
pub fn pad_ascii_from(buf: &mut String, start: usize, width: usize) {
    push_spaces(buf, width.saturating_sub(buf.len() - start));
}

/// Appends `n` spaces.
pub fn push_spaces(buf: &mut String, n: usize) {
    push_repeated(buf, SPACES, n);
}

fn char_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// Pads the text written since byte `start` with spaces to `width` characters (Go `%-Ns`).
pub fn pad_from(buf: &mut String, start: usize, width: usize) {
    let len = char_len(&buf[start..]);
    push_spaces(buf, width.saturating_sub(len));
}

/// Appends `s` centred in `width` columns (extra space on the right); longer text as is.
pub fn push_centered(buf: &mut String, s: &str, width: usize) {
    let len = char_len(s);
    if len >= width {
        buf.push_str(s);
        return;
    }
    let left = (width - len) / 2;
    push_spaces(buf, left);
    buf.push_str(s);
    push_spaces(buf, width - len - left);
}

/// `s` cut to its last `max` bytes with the first replaced by `~` (pwru's PROCESS/IFACE rule).
pub fn tail_with_tilde(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = s.len() - max + 1;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    let mut out = String::with_capacity(max);
    out.push('~');
    out.push_str(&s[cut..]);
    out
}

/// Appends an address as pwru prints it: dotted IPv4, bracketed IPv6 (IPv4-mapped IPv6 as
/// dotted inside the brackets, like Go's `net.IP`), nothing for other protocols.
pub fn push_addr(buf: &mut String, l3_proto: u16, addr: &[u8; 16]) {
    match l3_proto {
        ETH_P_IP => push_ipv4(buf, &addr[..4]),
        ETH_P_IPV6 => {
            buf.push('[');
            if addr[..10].iter().all(|b| *b == 0) && addr[10] == 0xff && addr[11] == 0xff {
                push_ipv4(buf, &addr[12..]);
            } else {
                push_ipv6(buf, addr);
            }
            buf.push(']');
        }
        _ => {}
    }
}

/// RFC 5952 text of an IPv6 address (longest run of two or more zero groups as `::`, the
/// first on ties), as Go and Rust print it, without going through `fmt`.
fn push_ipv6(buf: &mut String, addr: &[u8; 16]) {
    let groups: [u16; 8] =
        std::array::from_fn(|i| u16::from_be_bytes([addr[2 * i], addr[2 * i + 1]]));
    let (mut best_start, mut best_len, mut run_start, mut run_len) = (0, 0, 0, 0);
    for (i, g) in groups.iter().enumerate() {
        if *g == 0 {
            if run_len == 0 {
                run_start = i;
            }
            run_len += 1;
            if run_len > best_len {
                (best_start, best_len) = (run_start, run_len);
            }
        } else {
            run_len = 0;
        }
    }
    if best_len < 2 {
        best_len = 0;
    }
    let mut i = 0;
    while i < 8 {
        if best_len > 0 && i == best_start {
            buf.push_str("::");
            i += best_len;
            continue;
        }
        if i > 0 && !(best_len > 0 && i == best_start + best_len) {
            buf.push(':');
        }
        push_hex(buf, u64::from(groups[i]));
        i += 1;
    }
}

fn push_ipv4(buf: &mut String, o: &[u8]) {
    for (i, b) in o.iter().enumerate() {
        if i > 0 {
            buf.push('.');
        }
        push_dec(buf, *b);
    }
}

/// Local wall-clock time as `2006-01-02T15:04:05.000`, with the date/time part cached per second.
#[derive(Debug, Default)]
pub struct WallClock {
    second: Option<i64>,
    prefix: String,
}

impl WallClock {
    /// Appends the current local time (23 characters).
    pub fn push_now(&mut self, buf: &mut String) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.push_at(buf, now.as_secs() as i64, now.subsec_millis());
    }

    /// Appends the local time of `unix_secs` + `millis`.
    pub fn push_at(&mut self, buf: &mut String, unix_secs: i64, millis: u32) {
        if self.second != Some(unix_secs) {
            self.second = Some(unix_secs);
            self.prefix.clear();
            push_local_datetime(&mut self.prefix, unix_secs);
        }
        buf.push_str(&self.prefix);
        buf.push('.');
        push_millis(buf, millis.min(999));
    }
}

fn push_millis(buf: &mut String, millis: u32) {
    let mut digits = itoa::Buffer::new();
    let s = digits.format(millis);
    for _ in s.len()..3 {
        buf.push('0');
    }
    buf.push_str(s);
}

fn push_2(buf: &mut String, v: i32) {
    if (0..10).contains(&v) {
        buf.push('0');
    }
    push_dec(buf, v);
}

/// Appends `YYYY-MM-DDTHH:MM:SS` in the local time zone.
fn push_local_datetime(buf: &mut String, unix_secs: i64) {
    let t: libc::time_t = unix_secs as libc::time_t;
    // SAFETY: `tm` is plain data; localtime_r fills it from `t` and returns null on failure.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        // Out of range for the C library: fall back to the raw seconds.
        push_dec(buf, unix_secs);
        return;
    }
    let year = tm.tm_year + 1900;
    let mut digits = itoa::Buffer::new();
    let year_text = digits.format(year);
    for _ in year_text.len()..4 {
        buf.push('0');
    }
    buf.push_str(year_text);
    buf.push('-');
    push_2(buf, tm.tm_mon + 1);
    buf.push('-');
    push_2(buf, tm.tm_mday);
    buf.push('T');
    push_2(buf, tm.tm_hour);
    buf.push(':');
    push_2(buf, tm.tm_min);
    buf.push(':');
    push_2(buf, tm.tm_sec);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn with(f: impl FnOnce(&mut String)) -> String {
        let mut s = String::new();
        f(&mut s);
        s
    }

    #[test]
    fn numbers() {
        let table: &[(u64, &str, &str)] = &[
            (0, "0", "0x0"),
            (0xa00, "a00", "0xa00"),
            (0x78540a00, "78540a00", "0x78540a00"),
            (0xffff8881052b6ee8, "ffff8881052b6ee8", "0xffff8881052b6ee8"),
            (u64::MAX, "ffffffffffffffff", "0xffffffffffffffff"),
        ];
        for (v, hex, prefixed) in table {
            assert_eq!(with(|b| push_hex(b, *v)), *hex);
            assert_eq!(with(|b| push_hex_prefixed(b, *v)), *prefixed);
        }
        assert_eq!(with(|b| push_hex_digits(b, 0x800, 4, false)), "0800");
        assert_eq!(with(|b| push_hex_digits(b, 0xab, 8, true)), "000000AB");
        assert_eq!(with(|b| push_dec(b, 4026531840u32)), "4026531840");
    }

    #[test]
    fn padding_and_centering() {
        let table: &[(&str, &str)] = &[
            ("eth0:2", "     eth0:2     "),
            ("lo:1", "      lo:1      "),
            ("0", "       0        "),
            ("0123456789abcdef", "0123456789abcdef"),
            ("", "                "),
        ];
        for (s, want) in table {
            assert_eq!(with(|b| push_centered(b, s, 16)), *want, "{s:?}");
        }
        let mut b = String::from("x ");
        b.push_str("ab");
        pad_from(&mut b, 2, 5);
        assert_eq!(b, "x ab   ");
    }

    #[test]
    fn tilde_truncation() {
        let table: &[(&str, &str)] = &[
            ("/usr/bin/curl:12345", "~/bin/curl:12345"),
            ("/usr/local/bin/curl:659155", "~bin/curl:659155"),
            ("/bin/pwru:4526", "/bin/pwru:4526"),
            ("<empty>:0", "<empty>:0"),
            ("0123456789abcdef", "0123456789abcdef"),
            ("0123456789abcdefg", "~23456789abcdefg"),
            ("/ü/ü/ü/ü/ü/ü/x:1", "~ü/ü/ü/ü/x:1"),
        ];
        for (s, want) in table {
            assert_eq!(tail_with_tilde(s, 16), *want, "{s:?}");
        }
    }

    #[test]
    fn ipv6_text_matches_std() {
        let fixed = [
            "::",
            "::1",
            "1::",
            "fd00::1",
            "2606:4700:4700::1001",
            "1:0:0:2:0:0:0:3",
            "1:0:2:0:3:0:4:0",
            "0:0:1:0:0:1:0:0",
            "fe80::1:2:3:4",
            "1:2:3:4:5:6:7:8",
            "::2:3:4:5:6:7:8",
        ];
        let mut samples: Vec<[u8; 16]> = fixed
            .iter()
            .map(|a| a.parse::<Ipv6Addr>().unwrap().octets())
            .collect();
        // Pseudo-random addresses with many zero groups.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..5000 {
            let mut a = [0u8; 16];
            for g in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x.is_multiple_of(3) {
                    a[2 * g] = (x >> 8) as u8 & 0x0f;
                    a[2 * g + 1] = (x >> 16) as u8;
                }
            }
            samples.push(a);
        }
        for a in samples {
            let ip = Ipv6Addr::from(a);
            if ip.to_ipv4_mapped().is_some() {
                continue;
            }
            assert_eq!(with(|b| push_ipv6(b, &a)), ip.to_string(), "{a:?}");
        }
    }

    #[test]
    fn wall_clock_layout() {
        let mut clock = WallClock::default();
        let s = with(|b| clock.push_now(b));
        assert_eq!(s.len(), 23, "{s}");
        let bytes = s.as_bytes();
        for (i, c) in [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
        ] {
            assert_eq!(bytes[i], c, "{s}");
        }
        assert!(
            s.chars().filter(|c| c.is_ascii_digit()).count() == 17,
            "{s}"
        );
        // Same second reuses the cached prefix; millis are zero-padded.
        let a = with(|b| clock.push_at(b, 1_700_000_000, 7));
        let b2 = with(|b| clock.push_at(b, 1_700_000_000, 250));
        assert_eq!(a[..19], b2[..19]);
        assert!(a.ends_with(".007") && b2.ends_with(".250"), "{a} {b2}");
    }
}
