//! Target addresses in canonical form (DESIGN §5), decided once, when a request target's host
//! is parsed. A host is an IP literal when it is an IPv6 literal or one of the numeric IPv4
//! forms that inet_aton(3), and so getaddrinfo(3), accepts: `2130706433`, `0177.0.0.1`,
//! `127.1`, `0x7f.0.0.1`. Such a host is the address it denotes from then on: `cidr:` rules
//! and the self check see that address, and it is never handed to a resolver, which would
//! turn it into an address the rules never saw. An IPv4-mapped IPv6 address
//! (`::ffff:127.0.0.1`, RFC 4291 §2.5.5.2) is the IPv4 address it carries: comparisons go
//! through `IpAddr::to_canonical`, the one canonicalisation used for targets, `cidr:` rules,
//! `access.allow` and the self check.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a host that ends in a number is refused.
pub const NOT_AN_ADDRESS: &str = "invalid host (numeric, but not an IPv4 address)";

/// The address `host` denotes, in canonical form, when it is an IP literal (an IPv6 literal
/// without brackets, or a numeric IPv4 form); `Ok(None)` for a name. A host whose last label
/// is a number but which is no address (`1.2.3.256`, `4294967296`, `08`) is an error: it is
/// not a DNS name either (RFC 3696 §2: a top-level domain is never all-numeric), and a
/// resolver might read it as something the rules never saw. One trailing dot is ignored, as
/// for names (the WHATWG URL standard reads `127.0.0.1.` so too).
pub fn host_ip(host: &str) -> Result<Option<IpAddr>, &'static str> {
    if host.contains(':') {
        return Ok(host
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| IpAddr::V6(v6).to_canonical()));
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let last = host.rsplit('.').next().unwrap_or(host);
    if !is_number(last) {
        return Ok(None);
    }
    parse_ipv4(host)
        .map(|v4| Some(IpAddr::V4(v4)))
        .ok_or(NOT_AN_ADDRESS)
}

/// True when `label` reads as a number (decimal, or `0x` hex), so its host is no name.
fn is_number(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(h) => h.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// An IPv4 address in any form inet_aton(3) accepts: one to four parts separated by `.`,
/// each decimal, octal (a leading `0`) or hex (`0x`); every part but the last is one byte,
/// and the last fills the bytes that remain (`127.1` is 127.0.0.1, `2130706433` is
/// 127.0.0.1). A part out of its range is refused, where old inet_aton implementations
/// silently truncated; so is anything else inet_aton refuses (empty parts, `0x` with no
/// digits, `8` or `9` in octal, a sign).
pub fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    let mut parts = [0u32; 4];
    let mut n = 0;
    for p in s.split('.') {
        if n == parts.len() {
            return None;
        }
        parts[n] = parse_part(p)?;
        n += 1;
    }
    let (last, lead) = parts[..n].split_last()?;
    // The last part holds the bytes the leading ones left: 32, 24, 16 or 8 bits.
    let bits = 32 - 8 * lead.len() as u32;
    if lead.iter().any(|&b| b > 0xff) || (bits < 32 && last >> bits != 0) {
        return None;
    }
    let mut addr = *last;
    for (i, &b) in lead.iter().enumerate() {
        addr |= b << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from(addr))
}

/// One part: `0x` hex, `0` octal, else decimal; digits only (u32::from_str_radix alone would
/// take a leading `+`), and within 32 bits.
fn parse_part(p: &str) -> Option<u32> {
    let (digits, radix) = match p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None if p.len() > 1 && p.starts_with('0') => (&p[1..], 8),
        None => (p, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// An address written out on the stack (an IPv6 address is at most 39 bytes once mapped
/// addresses are IPv4), so that matching it against domain tables costs no allocation.
pub struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl Default for IpText {
    fn default() -> Self {
        IpText {
            buf: [0; 48],
            len: 0,
        }
    }
}

impl IpText {
    /// Writes `ip` (as `Display` does, IPv6 without brackets) and returns it.
    pub fn show(&mut self, ip: IpAddr) -> &str {
        self.len = 0;
        // Cannot fail: the longest address fits.
        let _ = write!(self, "{ip}");
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Option<String> {
        parse_ipv4(s).map(|a| a.to_string())
    }

    #[test]
    fn inet_aton_forms() {
        for (form, want) in [
            ("127.0.0.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("0x7f.0.0.1", "127.0.0.1"),
            ("0X7F.0.0.01", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("017700000001", "127.0.0.1"),
            ("127.0x10203", "127.1.2.3"),
            ("127.0.0x102", "127.0.1.2"),
            ("0", "0.0.0.0"),
            ("00", "0.0.0.0"),
            ("0x0", "0.0.0.0"),
            ("4294967295", "255.255.255.255"),
            ("0xffffffff", "255.255.255.255"),
            ("0x00000000000000000000007f.1", "127.0.0.1"),
        ] {
            assert_eq!(v4(form).as_deref(), Some(want), "{form}");
        }
    }

    #[test]
    fn inet_aton_refusals() {
        for form in [
            "",
            ".",
            "127.0.0.1.",
            "127..1",
            ".127.1",
            "1.2.3.4.5",
            "4294967296",
            "0x100000000",
            "256.0.0.1",
            "127.256.1",
            "127.0.65536",
            "127.16777216",
            "1.2.3.256",
            "08",
            "0179.0.0.1",
            "0x",
            "0x.1",
            "0xg",
            "+1",
            "1.-1",
            "1 ",
            "１２７.0.0.1",
            "99999999999999999999",
        ] {
            assert_eq!(v4(form), None, "{form}");
        }
    }

    #[test]
    fn hosts_are_names_addresses_or_refused() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for (host, want) in [
            ("127.1", ip("127.0.0.1")),
            ("127.0.0.1.", ip("127.0.0.1")),
            ("0x7f.1.", ip("127.0.0.1")),
            ("::1", ip("::1")),
            ("::ffff:127.0.0.1", ip("127.0.0.1")),
            ("::ffff:7f00:1", ip("127.0.0.1")),
            ("::127.0.0.1", ip("::7f00:1")),
        ] {
            assert_eq!(host_ip(host), Ok(Some(want)), "{host}");
        }
        for name in [
            "localhost",
            "a.example",
            "127.0.0.1.example",
            "1.2.3.a",
            "0x7f.x",
            "1.2.3.4..",
        ] {
            assert_eq!(host_ip(name), Ok(None), "{name}");
        }
        for bad in ["4294967296", "1.2.3.4.5", "127.0.0.256", "08", "0x", "a.0x"] {
            assert_eq!(host_ip(bad).map(|_| ()), Err(NOT_AN_ADDRESS), "{bad}");
        }
    }

    #[test]
    fn canonical_form_is_ipv4_for_mapped_only() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(ip("::ffff:127.0.0.1").to_canonical(), ip("127.0.0.1"));
        assert_eq!(ip("::ffff:a00:1").to_canonical(), ip("10.0.0.1"));
        assert_eq!(ip("::1").to_canonical(), ip("::1"));
        assert_eq!(ip("::7f00:1").to_canonical(), ip("::7f00:1"));
    }

    #[test]
    fn ip_text_fits_the_longest_address() {
        let mut t = IpText::default();
        assert_eq!(
            t.show(ip6_longest()),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"
        );
        assert_eq!(t.show("127.0.0.1".parse().unwrap()), "127.0.0.1");
        assert_eq!(
            t.show("255.255.255.255".parse().unwrap()),
            "255.255.255.255"
        );
    }

    fn ip6_longest() -> IpAddr {
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe".parse().unwrap()
    }
}
