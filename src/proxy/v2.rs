//! Version 2: a 12-byte signature, version and command, family and
//! transport, a 16-bit length, then exactly that many bytes: the address
//! block and TLVs. At most [`V2_MAX`] bytes in all.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Endpoints, Header, Invalid, Parse, Tlvs, V2_FIXED, V2_MAX, Version, tlv};

/// `\r\n\r\n\0\r\nQUIT\n`.
pub(super) const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

const CMD_LOCAL: u8 = 0x0;
const CMD_PROXY: u8 = 0x1;

/// Whether `buf` (not empty) could begin a v2 header.
pub(super) fn is_start(buf: &[u8]) -> bool {
    let n = buf.len().min(SIGNATURE.len());
    buf[..n] == SIGNATURE[..n]
}

pub(super) fn parse(buf: &[u8]) -> Parse {
    // Check each fixed byte as soon as it is there: a bad one is refused
    // without waiting for the rest.
    if let Some(&ver_cmd) = buf.get(12) {
        if ver_cmd >> 4 != 2 {
            return Parse::Invalid(Invalid::V2Version);
        }
        if ver_cmd & 0xf > CMD_PROXY {
            return Parse::Invalid(Invalid::V2Command);
        }
    }
    if let Some(&fam) = buf.get(13)
        && address_len(fam).is_none()
    {
        return Parse::Invalid(Invalid::V2Family);
    }
    if buf.len() < V2_FIXED {
        return Parse::Incomplete {
            need_at_least: V2_FIXED,
        };
    }
    let total = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if total > V2_MAX {
        return Parse::Invalid(Invalid::V2TooLong);
    }
    if buf.len() < total {
        return Parse::Incomplete {
            need_at_least: total,
        };
    }
    let header = &buf[..total];
    match body(header) {
        Ok(h) => Parse::Complete {
            header_len: total,
            header: Box::new(h),
        },
        Err(e) => Parse::Invalid(e),
    }
}

/// The length of the address block of a family/transport byte, for the
/// seven combinations the text defines; `None` for any other.
fn address_len(fam: u8) -> Option<usize> {
    match fam {
        0x00 => Some(0),
        0x11 | 0x12 => Some(12),
        0x21 | 0x22 => Some(36),
        0x31 | 0x32 => Some(216),
        _ => None,
    }
}

/// A complete header of `V2_FIXED + len` bytes, fixed bytes checked.
fn body(header: &[u8]) -> Result<Header, Invalid> {
    let cmd = header[12] & 0xf;
    let fam = header[13];
    let done = |endpoints, tlvs| Header {
        version: Version::V2,
        endpoints,
        tlvs,
    };
    // LOCAL: the real endpoints, and the rest "discarded", address block
    // and TLVs alike; the length still had to fit.
    if cmd == CMD_LOCAL {
        return Ok(done(Endpoints::Local, Tlvs::default()));
    }
    // AF_UNSPEC: no address layout, so no TLVs either: nothing to read.
    if fam == 0x00 {
        return Ok(done(Endpoints::Unknown, Tlvs::default()));
    }
    let alen = address_len(fam).expect("checked by parse");
    let addr = header
        .get(V2_FIXED..V2_FIXED + alen)
        .ok_or(Invalid::V2AddressTruncated)?;
    let endpoints = match fam {
        0x11 => {
            let ip = |o: usize| Ipv4Addr::from(<[u8; 4]>::try_from(&addr[o..o + 4]).unwrap());
            Endpoints::Proxied {
                source: SocketAddr::new(ip(0).into(), be16(&addr[8..])),
                destination: SocketAddr::new(ip(4).into(), be16(&addr[10..])),
            }
        }
        0x21 => {
            let ip = |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&addr[o..o + 16]).unwrap());
            Endpoints::Proxied {
                source: SocketAddr::new(ip(0).into(), be16(&addr[32..])),
                destination: SocketAddr::new(ip(16).into(), be16(&addr[34..])),
            }
        }
        // UDP, and unix sockets: not a TCP peer; the real endpoints apply.
        _ => Endpoints::Unknown,
    };
    let tlvs = tlv::parse(header, V2_FIXED + alen)?;
    Ok(done(endpoints, tlvs))
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
