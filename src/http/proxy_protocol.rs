//! PROXY protocol v1 and v2 (haproxy's doc/proxy-protocol.txt): the header a load balancer in
//! front of a reverse listener sends before the client's first byte, naming the client. With
//! `proxy_protocol: true` (DESIGN §7.1) a reverse session calls [`parse`] on what it has read
//! before it looks for a request head: an `Incomplete` waits for more, a `Header` is consumed
//! (`len` bytes) and its `source` becomes the client address, an error closes the connection.
//! Bytes that cannot start a header are refused as soon as they arrive (the spec asks for an
//! abort "as soon as possible"), so a peer that sends a plain request is turned away at its
//! first bytes, not at a timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What the start of a connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preface {
    /// More bytes are needed (what came so far is a prefix of a valid header).
    Incomplete,
    /// A whole header of `len` bytes; `source` is the client it announces: None for v1
    /// UNKNOWN, v2 LOCAL, or address families other than TCP over IPv4/IPv6 (the caller then
    /// uses the peer address). Addresses are as sent: an IPv4-mapped IPv6 one stays IPv6.
    Header {
        /// How many bytes the header takes at the start of the buffer.
        len: usize,
        /// The client the header announces.
        source: Option<SocketAddr>,
    },
}

/// The longest header [`parse`] accepts (a v2 header with 1024 bytes after its fixed 16): a
/// buffer this big always gets a `Header` or an error, never `Incomplete`.
pub const MAX_LEN: usize = V2_FIXED + V2_MAX_BLOCK;

/// The longest v1 line, CRLF included (spec §2.1: "PROXY UNKNOWN" with two full IPv6
/// addresses and ports).
const V1_MAX: usize = 107;
/// The v2 signature (spec §2.2): it starts with CRLF CRLF and holds a NUL, so no text
/// protocol starts with it.
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version and command, family and protocol, length.
const V2_FIXED: usize = 16;
/// How much of a v2 address block (addresses and TLVs) is taken.
const V2_MAX_BLOCK: usize = 1024;

const NOT_PROXY: &str = "not a PROXY protocol header";

/// Why parsing stopped short of a header.
enum Stop {
    More,
    Bad(&'static str),
}

/// Parses a PROXY protocol v1 or v2 header at the start of `buf`. An error as soon as the
/// bytes cannot start one (the caller closes the connection). v1: at most 107 bytes,
/// CRLF-terminated, "PROXY TCP4|TCP6|UNKNOWN ...", addresses and ports strictly checked (no
/// leading zeros, ports 0..=65535, IPv4 in dotted-quad form only, the family matching the
/// addresses). v2: the 12-byte signature, version 2, command LOCAL(0)/PROXY(1), families
/// AF_INET/AF_INET6 with STREAM give a source (UNSPEC, UNIX, DGRAM: None), the length field
/// honoured (TLVs skipped), a header longer than 16+1024 bytes refused. Every field is
/// checked as far as it has arrived, so a prefix of a valid header is always `Incomplete`.
pub fn parse(buf: &[u8]) -> Result<Preface, &'static str> {
    let step = match buf.first() {
        Some(&b'\r') => v2(buf),
        _ => v1(buf),
    };
    match step {
        Ok(p) => Ok(p),
        Err(Stop::More) => Ok(Preface::Incomplete),
        Err(Stop::Bad(why)) => Err(why),
    }
}

fn v1(buf: &[u8]) -> Result<Preface, Stop> {
    // Only the first 107 bytes can hold the line: a header still incomplete there never ends.
    match v1_line(&buf[..buf.len().min(V1_MAX)]) {
        Err(Stop::More) if buf.len() >= V1_MAX => {
            Err(Stop::Bad("PROXY v1: no CRLF within 107 bytes"))
        }
        step => step,
    }
}

fn v1_line(buf: &[u8]) -> Result<Preface, Stop> {
    if !starts(buf, b"PROXY ")? {
        return Err(Stop::Bad(NOT_PROXY));
    }
    let at = 6;
    let rest = &buf[at..];
    if starts(rest, b"UNKNOWN")? {
        return v1_unknown(buf, at + 7);
    }
    let v6 = if starts(rest, b"TCP4 ")? {
        false
    } else if starts(rest, b"TCP6 ")? {
        true
    } else {
        return Err(Stop::Bad(
            "PROXY v1: the protocol is not TCP4, TCP6 or UNKNOWN",
        ));
    };
    let at = at + 5;
    let ip = |t: &[u8]| if v6 { v6_text(t) } else { v4_text(t) };
    let (src, at) = field(buf, at, b' ', "PROXY v1: bad source address", ip)?;
    let (_, at) = field(buf, at, b' ', "PROXY v1: bad destination address", ip)?;
    let (port, at) = field(buf, at, b' ', "PROXY v1: bad source port", port_text)?;
    let (_, at) = field(buf, at, b'\r', "PROXY v1: bad destination port", port_text)?;
    match buf.get(at) {
        None => Err(Stop::More),
        Some(b'\n') => Ok(Preface::Header {
            len: at + 1,
            source: Some(SocketAddr::new(src, port)),
        }),
        Some(_) => Err(Stop::Bad("PROXY v1: a CR not followed by LF")),
    }
}

/// "UNKNOWN" is followed by CRLF, or by a space and anything up to CRLF, which the receiver
/// ignores (spec §2.1); a lone CR or LF does not end the line.
fn v1_unknown(buf: &[u8], at: usize) -> Result<Preface, Stop> {
    match buf.get(at) {
        None => return Err(Stop::More),
        Some(b' ' | b'\r') => {}
        Some(_) => {
            return Err(Stop::Bad(
                "PROXY v1: the protocol is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    }
    for i in at..buf.len() {
        match buf[i] {
            b'\r' => match buf.get(i + 1) {
                None => return Err(Stop::More),
                Some(b'\n') => {
                    return Ok(Preface::Header {
                        len: i + 2,
                        source: None,
                    })
                }
                Some(_) => return Err(Stop::Bad("PROXY v1: a CR not followed by LF")),
            },
            b'\n' => return Err(Stop::Bad("PROXY v1: a LF without CR")),
            _ => {}
        }
    }
    Err(Stop::More)
}

/// True when `buf` starts with `lit`, false when it cannot, `More` while it is a shorter
/// prefix of `lit`.
fn starts(buf: &[u8], lit: &[u8]) -> Result<bool, Stop> {
    if buf.len() >= lit.len() {
        Ok(buf.starts_with(lit))
    } else if lit.starts_with(buf) {
        Err(Stop::More)
    } else {
        Ok(false)
    }
}

/// Reads the field at `at` that ends with `end`, and returns its value and where the next
/// one starts. `read` answers, for the bytes of a field, `Err` when they cannot start a valid
/// field, `Ok(None)` when they can but are no whole one, `Ok(Some(value))` when they are one;
/// before `end` has come, only the first answer matters.
fn field<T>(
    buf: &[u8],
    at: usize,
    end: u8,
    why: &'static str,
    read: impl Fn(&[u8]) -> Result<Option<T>, ()>,
) -> Result<(T, usize), Stop> {
    let rest = buf.get(at..).unwrap_or_default();
    match rest.iter().position(|&b| b == end) {
        None => match read(rest) {
            Ok(_) => Err(Stop::More),
            Err(()) => Err(Stop::Bad(why)),
        },
        Some(i) => match read(&rest[..i]) {
            Ok(Some(value)) => Ok((value, at + i + 1)),
            _ => Err(Stop::Bad(why)),
        },
    }
}

/// A decimal port: no leading zero but in "0" itself (spec §2.1: no confusion with octal).
fn port_text(t: &[u8]) -> Result<Option<u16>, ()> {
    if t.len() > 5 || !t.iter().all(u8::is_ascii_digit) || (t.len() > 1 && t[0] == b'0') {
        return Err(());
    }
    let n = t.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    match u16::try_from(n) {
        Err(_) => Err(()),
        Ok(_) if t.is_empty() => Ok(None),
        Ok(port) => Ok(Some(port)),
    }
}

/// An IPv4 address as four decimal parts 0..=255 without leading zeros, nothing else (the
/// short and octal forms inet_aton takes are refused).
fn v4_text(t: &[u8]) -> Result<Option<IpAddr>, ()> {
    let mut octets = [0u8; 4];
    let parts = t.split(|&b| b == b'.').count();
    for (i, part) in t.split(|&b| b == b'.').enumerate() {
        // An empty part is only allowed last, while the address is still arriving.
        if i == 4 || (part.is_empty() && i + 1 < parts) {
            return Err(());
        }
        match port_text(part) {
            Ok(Some(n)) if n <= 255 && part.len() <= 3 => octets[i] = n as u8,
            Ok(None) => {}
            _ => return Err(()),
        }
    }
    let whole = parts == 4 && !t.ends_with(b".");
    Ok(whole.then(|| IpAddr::V4(Ipv4Addr::from(octets))))
}

/// An IPv6 address in the text form `Ipv6Addr` reads. While it is arriving, only what no
/// valid address can hold is refused: other bytes than hex digits, ':' and '.', more than 45
/// bytes (INET6_ADDRSTRLEN), ":::", a second "::", a group of more than 4 hex digits, an
/// embedded IPv4 part that is not last or not the start of a dotted quad.
fn v6_text(t: &[u8]) -> Result<Option<IpAddr>, ()> {
    let allowed = |b: &u8| b.is_ascii_hexdigit() || *b == b':' || *b == b'.';
    if t.len() > 45 || !t.iter().all(allowed) || t.windows(3).any(|w| w == b":::") {
        return Err(());
    }
    if t.windows(2).filter(|w| *w == b"::").count() > 1 {
        return Err(());
    }
    let groups = t.split(|&b| b == b':').count();
    for (i, g) in t.split(|&b| b == b':').enumerate() {
        // An embedded IPv4 address (RFC 4291 §2.2) ends the address, after a ':' at least.
        // (Fuzzing found "192161." taken after "192161" was refused: a refusal must be final.)
        let fits = if g.contains(&b'.') {
            i > 0 && i + 1 == groups && v4_text(g).is_ok()
        } else {
            g.len() <= 4
        };
        if !fits {
            return Err(());
        }
    }
    let text = std::str::from_utf8(t).map_err(|_| ())?;
    Ok(text.parse::<Ipv6Addr>().ok().map(IpAddr::V6))
}

fn v2(buf: &[u8]) -> Result<Preface, Stop> {
    let n = buf.len().min(V2_SIG.len());
    if buf[..n] != V2_SIG[..n] {
        return Err(Stop::Bad(NOT_PROXY));
    }
    let Some(&ver_cmd) = buf.get(12) else {
        return Err(Stop::More);
    };
    if ver_cmd >> 4 != 2 {
        return Err(Stop::Bad("PROXY v2: the version is not 2"));
    }
    let local = match ver_cmd & 0xf {
        0 => true,
        1 => false,
        _ => {
            return Err(Stop::Bad(
                "PROXY v2: the command is neither LOCAL nor PROXY",
            ))
        }
    };
    let Some(&fam) = buf.get(13) else {
        return Err(Stop::More);
    };
    // Families UNSPEC, INET, INET6, UNIX; protocols UNSPEC, STREAM, DGRAM. The spec has
    // receivers reject any other value, even on LOCAL, where the family is otherwise ignored.
    if fam >> 4 > 3 || fam & 0xf > 2 {
        return Err(Stop::Bad("PROXY v2: an unknown address family or protocol"));
    }
    let Some(&[hi, lo]) = buf.get(14..16) else {
        return Err(Stop::More);
    };
    let block = usize::from(u16::from_be_bytes([hi, lo]));
    if block > V2_MAX_BLOCK {
        return Err(Stop::Bad("PROXY v2: a header longer than 16+1024 bytes"));
    }
    // Addresses and ports of the families that carry them (spec §2.2).
    let needs = match fam {
        0x11 | 0x12 => 12,
        0x21 | 0x22 => 36,
        0x31 | 0x32 => 216,
        _ => 0,
    };
    if !local && block < needs {
        return Err(Stop::Bad(
            "PROXY v2: the address block is shorter than its family needs",
        ));
    }
    let Some(a) = buf.get(V2_FIXED..V2_FIXED + block) else {
        return Err(Stop::More);
    };
    let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
    let source = match fam {
        _ if local => None,
        0x11 => {
            let ip: [u8; 4] = a[..4].try_into().unwrap_or_default();
            Some(SocketAddr::new(Ipv4Addr::from(ip).into(), port(8)))
        }
        0x21 => {
            let ip: [u8; 16] = a[..16].try_into().unwrap_or_default();
            Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port(32)))
        }
        _ => None,
    };
    Ok(Preface::Header {
        len: V2_FIXED + block,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortest prefix of `input` that is refused, after checking that every shorter one
    /// is `Incomplete` and every longer one refused too.
    fn refused_at(input: &[u8]) -> Option<usize> {
        let at = (0..=input.len()).find(|&n| parse(&input[..n]).is_err())?;
        for n in 0..at {
            assert_eq!(parse(&input[..n]), Ok(Preface::Incomplete), "{n}");
        }
        for n in at..=input.len() {
            assert!(parse(&input[..n]).is_err(), "refused at {at}, not at {n}");
        }
        Some(at)
    }

    /// Checks that `header` parses whole, alone and followed by a request, and that each of
    /// its prefixes is `Incomplete`.
    fn whole(header: &[u8]) -> Option<SocketAddr> {
        let mut with_request = header.to_vec();
        with_request.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let Ok(Preface::Header { len, source }) = parse(header) else {
            panic!("{:?}: {:?}", String::from_utf8_lossy(header), parse(header));
        };
        assert_eq!(len, header.len());
        assert_eq!(parse(&with_request), Ok(Preface::Header { len, source }));
        assert_eq!(refused_at(header), None);
        source
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    fn v2_header(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIG.to_vec();
        h.extend_from_slice(&[ver_cmd, fam]);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    #[test]
    fn v1_lines_name_their_client() {
        let cases: &[(&[u8], Option<SocketAddr>)] = &[
            (
                b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
                addr("192.168.0.1:56324"),
            ),
            (b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", addr("0.0.0.0:0")),
            (
                b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
                addr("255.255.255.255:65535"),
            ),
            (b"PROXY TCP6 ::1 ::1 1 2\r\n", addr("[::1]:1")),
            (
                b"PROXY TCP6 2001:DB8::a fe80::1 8080 80\r\n",
                addr("[2001:db8::a]:8080"),
            ),
            (
                b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
                addr("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
            ),
            (
                b"PROXY TCP6 ::ffff:127.0.0.1 ::1 10 20\r\n",
                addr("[::ffff:127.0.0.1]:10"),
            ),
            (b"PROXY UNKNOWN\r\n", None),
            (b"PROXY UNKNOWN 1.2.3.4 and anything\r\n", None),
            (
                b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
                None,
            ),
        ];
        for &(line, source) in cases {
            assert_eq!(whole(line), source, "{}", String::from_utf8_lossy(line));
        }
        assert_eq!(
            cases[9].0.len(),
            V1_MAX,
            "the spec's worst case fits exactly"
        );
    }

    #[test]
    fn v1_errors_come_at_the_first_byte_that_cannot_belong() {
        let cases: &[(&[u8], usize)] = &[
            (b"GET / HTTP/1.1\r\n", 1),
            (b"POST / HTTP/1.1\r\n", 2),
            (b"PROXI", 5),
            (b"PROXY  TCP4", 7),
            (b"PROXY TCP5 1.2.3.4", 10),
            (b"PROXY tcp4 1.2.3.4", 7),
            (b"PROXY UNKNOWNX\r\n", 14),
            (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", 13),
            (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", 20),
            (b"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", 19),
            (b"PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", 14),
            (b"PROXY TCP4 .1.2.3 5.6.7.8 1 2\r\n", 12),
            (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", 17),
            (b"PROXY TCP4 1.2.3. 5.6.7.8 1 2\r\n", 18),
            (b"PROXY TCP4 127.1 5.6.7.8 1 2\r\n", 17),
            (b"PROXY TCP4 ::1 ::1 1 2\r\n", 12),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", 13),
            (b"PROXY TCP6 192161.8 ::1 1 2\r\n", 16),
            (b"PROXY TCP6 ::ffff:1.2.3.4.5 ::1 1 2\r\n", 26),
            (b"PROXY TCP6 ::ffff:1.2.3.4:1 ::1 1 2\r\n", 26),
            (b"PROXY TCP6 ::ffff:1.2.3.a ::1 1 2\r\n", 25),
            (b"PROXY TCP6 ::1234.1.2.3 ::1 1 2\r\n", 18),
            (b"PROXY TCP6 1:::2 ::1 1 2\r\n", 15),
            (b"PROXY TCP6 1::2::3 ::1 1 2\r\n", 17),
            (b"PROXY TCP6 12345::1 ::1 1 2\r\n", 16),
            (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", 19),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", 29),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", 32),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 100000 2\r\n", 33),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", 31),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", 28),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", 31),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 31),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", 32),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 29),
            (b"PROXY UNKNOWN\n", 14),
            (b"PROXY UNKNOWN x\ny\r\n", 16),
            (b"PROXY UNKNOWN \rx", 16),
        ];
        for &(input, at) in cases {
            let text = String::from_utf8_lossy(input);
            assert_eq!(refused_at(input), Some(at), "{text}");
        }
        // No CRLF in the first 107 bytes: refused at the 107th, not at a timeout.
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(200, b'x');
        assert_eq!(refused_at(&long), Some(V1_MAX));
        let mut just = b"PROXY UNKNOWN ".to_vec();
        just.resize(V1_MAX - 2, b'x');
        just.extend_from_slice(b"\r\n");
        assert_eq!(whole(&just), None);
        let mut over = just[..V1_MAX - 2].to_vec();
        over.extend_from_slice(b"x\r\n");
        assert_eq!(refused_at(&over), Some(V1_MAX));
        // The longest TCP6 form (embedded IPv4) is too long when both ends use it.
        let wide = b"PROXY TCP6 0000:0000:0000:0000:0000:ffff:255.255.255.255 0000:0000:0000:0000:0000:ffff:255.255.255.255 65535 65535\r\n";
        assert_eq!(refused_at(wide), Some(V1_MAX));
        assert_eq!(parse(b""), Ok(Preface::Incomplete));
    }

    #[test]
    fn v2_headers_name_their_client_when_tcp() {
        let v4 = [127, 0, 0, 9, 10, 0, 0, 1, 0x1f, 0x90, 0, 80];
        assert_eq!(whole(&v2_header(0x21, 0x11, &v4)), addr("127.0.0.9:8080"));
        let mut v6 = [0u8; 36];
        v6[15] = 1;
        v6[16] = 0x20;
        v6[17] = 0x01;
        v6[32..34].copy_from_slice(&443u16.to_be_bytes());
        assert_eq!(whole(&v2_header(0x21, 0x21, &v6)), addr("[::1]:443"));
        // TLVs after the addresses are skipped with them.
        let mut tlvs = v4.to_vec();
        tlvs.extend_from_slice(&[0x04, 0, 3, b'a', b'b', b'c', 0x05, 0, 0]);
        assert_eq!(whole(&v2_header(0x21, 0x11, &tlvs)), addr("127.0.0.9:8080"));
        // LOCAL: the peer is the client, whatever follows.
        assert_eq!(whole(&v2_header(0x20, 0x00, &[])), None);
        assert_eq!(whole(&v2_header(0x20, 0x11, &v4)), None);
        assert_eq!(whole(&v2_header(0x20, 0x11, &[])), None);
        // Families without a TCP client address.
        assert_eq!(whole(&v2_header(0x21, 0x00, &[])), None);
        assert_eq!(whole(&v2_header(0x21, 0x12, &v4)), None);
        assert_eq!(whole(&v2_header(0x21, 0x22, &v6)), None);
        assert_eq!(whole(&v2_header(0x21, 0x10, &[])), None);
        assert_eq!(whole(&v2_header(0x21, 0x31, &[0; 216])), None);
        // The largest block taken, and a buffer of MAX_LEN always answered.
        let big = v2_header(0x21, 0x11, &[1; V2_MAX_BLOCK]);
        assert_eq!(big.len(), MAX_LEN);
        assert_eq!(whole(&big), addr("1.1.1.1:257"));
    }

    #[test]
    fn v2_errors_come_at_the_first_byte_that_cannot_belong() {
        let v4 = [127, 0, 0, 9, 10, 0, 0, 1, 0x1f, 0x90, 0, 80];
        let mut bad_sig = v2_header(0x21, 0x11, &v4);
        bad_sig[7] = b'q';
        assert_eq!(refused_at(&bad_sig), Some(8));
        assert_eq!(refused_at(&v2_header(0x11, 0x11, &v4)), Some(13));
        assert_eq!(refused_at(&v2_header(0x22, 0x11, &v4)), Some(13));
        assert_eq!(refused_at(&v2_header(0x2f, 0x11, &v4)), Some(13));
        assert_eq!(refused_at(&v2_header(0x21, 0x41, &v4)), Some(14));
        assert_eq!(refused_at(&v2_header(0x21, 0x13, &v4)), Some(14));
        assert_eq!(refused_at(&v2_header(0x20, 0x13, &[])), Some(14));
        assert_eq!(refused_at(&v2_header(0x21, 0x11, &v4[..8])), Some(16));
        assert_eq!(refused_at(&v2_header(0x21, 0x21, &v4)), Some(16));
        assert_eq!(refused_at(&v2_header(0x21, 0x31, &[0; 36])), Some(16));
        let too_big = v2_header(0x21, 0x11, &[0; V2_MAX_BLOCK + 1]);
        assert_eq!(refused_at(&too_big), Some(16));
        // Empty lines that then turn out to be no signature.
        assert_eq!(refused_at(b"\r\n\r\nGET / HTTP/1.1\r\n"), Some(5));
        assert_eq!(refused_at(b"\r\nGET"), Some(3));
    }
}
