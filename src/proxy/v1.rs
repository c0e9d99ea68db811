//! Version 1: one US-ASCII line, `PROXY TCP4|TCP6 SRC DST SPORT DPORT`
//! or `PROXY UNKNOWN …`, ending in CRLF within 107 bytes. Strict: single
//! spaces, no leading zeros in IPv4 octets or ports, ports ≤ 65535,
//! addresses of the declared family.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Endpoints, Header, Invalid, Parse, Tlvs, V1_MAX, V1_MIN, Version};

const PREFIX: &[u8] = b"PROXY ";

/// Whether `buf` (not empty) could begin a v1 line.
pub(super) fn is_start(buf: &[u8]) -> bool {
    let n = buf.len().min(PREFIX.len());
    buf[..n] == PREFIX[..n]
}

pub(super) fn parse(buf: &[u8]) -> Parse {
    // The line ends at the first CR, which must be followed by LF and
    // leave the line within V1_MAX bytes; an LF before any CR is a bare
    // LF. Nothing past the CRLF is looked at.
    let window = &buf[..buf.len().min(V1_MAX - 1)];
    match window.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(i) if window[i] == b'\n' => Parse::Invalid(Invalid::V1LineEnd),
        Some(i) => match buf.get(i + 1) {
            None => Parse::Incomplete {
                need_at_least: i + 2,
            },
            Some(b'\n') => match line(&buf[..i]) {
                Ok(endpoints) => Parse::Complete {
                    header_len: i + 2,
                    header: Box::new(Header {
                        version: Version::V1,
                        endpoints,
                        tlvs: Tlvs::default(),
                    }),
                },
                Err(e) => Parse::Invalid(e),
            },
            Some(_) => Parse::Invalid(Invalid::V1LineEnd),
        },
        None if window.len() == V1_MAX - 1 => Parse::Invalid(Invalid::V1TooLong),
        None => Parse::Incomplete {
            need_at_least: (buf.len() + 1).max(V1_MIN),
        },
    }
}

/// The line without its CRLF.
fn line(line: &[u8]) -> Result<Endpoints, Invalid> {
    let rest = &line[PREFIX.len()..];
    // UNKNOWN: whatever follows it up to the CRLF is ignored, as the text
    // asks; but `UNKNOWNX` is no keyword.
    if let Some(after) = rest.strip_prefix(b"UNKNOWN")
        && (after.is_empty() || after[0] == b' ')
    {
        return Ok(Endpoints::Unknown);
    }
    let syntax = Invalid::V1Syntax;
    let text = std::str::from_utf8(rest).map_err(|_| syntax("not US-ASCII"))?;
    let mut fields = text.split(' ');
    let mut next = |what| fields.next().filter(|f| !f.is_empty()).ok_or(syntax(what));
    let proto = next("no protocol")?;
    let (src, dst) = (next("no source address")?, next("no destination address")?);
    let (sport, dport) = (next("no source port")?, next("no destination port")?);
    if fields.next().is_some() {
        return Err(syntax("more than 5 fields"));
    }
    let (src, dst): (IpAddr, IpAddr) = match proto {
        "TCP4" => (
            ipv4(src).ok_or(syntax("bad IPv4 source address"))?.into(),
            ipv4(dst)
                .ok_or(syntax("bad IPv4 destination address"))?
                .into(),
        ),
        "TCP6" => (
            ipv6(src).ok_or(syntax("bad IPv6 source address"))?.into(),
            ipv6(dst)
                .ok_or(syntax("bad IPv6 destination address"))?
                .into(),
        ),
        _ => return Err(syntax("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let sport = port(sport).ok_or(syntax("bad source port"))?;
    let dport = port(dport).ok_or(syntax("bad destination port"))?;
    Ok(Endpoints::Proxied {
        source: SocketAddr::new(src, sport),
        destination: SocketAddr::new(dst, dport),
    })
}

/// A decimal number of 1 to `max_digits` digits without a leading zero
/// (the text forbids them, against octal readings), at most `max`.
fn decimal(s: &str, max_digits: usize, max: u32) -> Option<u32> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > max_digits || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.len() > 1 && b[0] == b'0' {
        return None;
    }
    let n = b.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    (n <= max).then_some(n)
}

fn port(s: &str) -> Option<u16> {
    decimal(s, 5, 65535).map(|n| n as u16)
}

/// Exactly four decimal octets 0–255, no leading zeros.
fn ipv4(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for o in &mut octets {
        *o = decimal(parts.next()?, 3, 255)? as u8;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// IPv6 text as inet_ntop writes it (hex groups, one `::`, an IPv4 tail
/// allowed); no zone, no brackets.
fn ipv6(s: &str) -> Option<Ipv6Addr> {
    if !s
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_rules() {
        assert_eq!(port("0"), Some(0));
        assert_eq!(port("65535"), Some(65535));
        assert_eq!(port("65536"), None);
        assert_eq!(port("080"), None);
        assert_eq!(port("00"), None);
        assert_eq!(port("+80"), None);
        assert_eq!(port("123456"), None);
        assert_eq!(port(""), None);
        assert_eq!(ipv4("0.0.0.0"), Some(Ipv4Addr::UNSPECIFIED));
        assert_eq!(ipv4("255.255.255.255"), Some(Ipv4Addr::BROADCAST));
        for bad in [
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "1..2.3",
            "1.2.3.4 ",
            " 1.2.3.4",
            "1.2.3.0x1",
            "::1",
        ] {
            assert_eq!(ipv4(bad), None, "{bad}");
        }
        assert!(ipv6("::1").is_some());
        assert!(ipv6("2001:DB8::A").is_some());
        assert!(ipv6("::ffff:192.0.2.1").is_some());
        for bad in ["[::1]", "fe80::1%eth0", "1.2.3.4", "::1::", "12345::", ""] {
            assert_eq!(ipv6(bad), None, "{bad}");
        }
    }
}
