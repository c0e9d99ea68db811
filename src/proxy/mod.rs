//! The PROXY protocol, versions 1 and 2 (HAProxy's `proxy-protocol.txt`):
//! a pure parser of the header a load balancer puts in front of a
//! connection, and the child's variables it implies (superd.yaml(5),
//! PROXY PROTOCOL). No sockets and no clock: the event loop peeks at the
//! connection (`MSG_PEEK`, so nothing past the header is ever consumed),
//! hands the bytes to [`parse`], and owns the timeout, the logging and the
//! refusals.
//!
//! - [`parse`]: bytes so far → [`Parse::Incomplete`], [`Parse::Complete`]
//!   (with the header's exact length) or [`Parse::Invalid`].
//! - [`Header::connection`], [`Header::proxy_vars`], [`child_vars`]: what
//!   the connection is from then on, and the child's environment.
//!
//! Choices the text leaves to a receiver, made here once:
//! - A v2 `LOCAL` header and a v1 `UNKNOWN` line are the proxy's own
//!   connection (a health check): the real endpoints apply. The rest of a
//!   `LOCAL` header is discarded unread, as the text says.
//! - A v2 `PROXY` header for `AF_UNSPEC`, `AF_UNIX` or `DGRAM` is accepted
//!   and falls back to the real endpoints, as the text asks of a receiver
//!   that does not serve that combination: superd serves TCP connections,
//!   and a unix path or a UDP peer is not a TCP peer. Its TLVs still count
//!   (for `AF_UNSPEC` there are none: its block has no defined layout).
//! - A TLV type superd surfaces (ALPN, AUTHORITY, CRC32C, UNIQUE_ID, SSL,
//!   NETNS, and each SSL sub-TLV) given twice makes the header invalid:
//!   which one would count is anybody's guess. NOOP, the custom
//!   (0xE0–0xEF), experimental and future ranges and unknown types are
//!   skipped; their lengths must still fit.

mod crc32c;
mod tlv;
mod v1;
mod v2;

use std::fmt;
use std::net::SocketAddr;

pub use crc32c::{Crc32c, crc32c};

use crate::access::canonical_addr;

/// Whether the event loop reads PROXY headers (it does: see
/// `event_loop`'s header wait). Were it off, a service with
/// `proxy_protocol` would be refused when the configuration loads (a field
/// the daemon would not apply must not be accepted).
pub const PROXY_SERVED: bool = true;

/// The longest v1 line, CRLF included.
pub const V1_MAX: usize = 107;
/// The longest v2 header superd accepts: the 16 fixed bytes and at most
/// 4080 more. The most the event loop ever needs to peek.
pub const V2_MAX: usize = 4096;
/// The shortest v1 line (`PROXY UNKNOWN\r\n`).
const V1_MIN: usize = 15;
/// The fixed part of a v2 header.
const V2_FIXED: usize = 16;

/// `proxy_protocol:` — which header a service accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Accept {
    V1,
    V2,
    Any,
}

impl Accept {
    pub const ALL: [Accept; 3] = [Accept::V1, Accept::V2, Accept::Any];

    pub fn as_str(self) -> &'static str {
        match self {
            Accept::V1 => "v1",
            Accept::V2 => "v2",
            Accept::Any => "any",
        }
    }

    fn admits(self, v: Version) -> bool {
        matches!(
            (self, v),
            (Accept::Any, _) | (Accept::V1, Version::V1) | (Accept::V2, Version::V2)
        )
    }
}

impl fmt::Display for Accept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The version a header was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    /// `PROXY_PROTOCOL`'s value.
    pub fn number(self) -> u8 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }
}

/// What [`parse`] makes of the bytes seen so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parse {
    /// Not enough bytes yet; the header is at least `need_at_least` bytes
    /// long (a lower bound: peek again when more have arrived).
    Incomplete { need_at_least: usize },
    /// A complete, valid header: the first `header_len` bytes. The client's
    /// data starts right after. (Boxed: the other answers are small and
    /// far more frequent.)
    Complete {
        header_len: usize,
        header: Box<Header>,
    },
    /// Not a valid header for this service: close the connection.
    Invalid(Invalid),
}

/// A parsed header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub endpoints: Endpoints,
    pub tlvs: Tlvs,
}

/// Whom the connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoints {
    /// v2 `LOCAL`: the proxy's own connection.
    Local,
    /// v1 `UNKNOWN`, or a v2 `PROXY` header whose family or transport
    /// superd does not serve (`AF_UNSPEC`, `AF_UNIX`, `DGRAM`): the real
    /// endpoints apply.
    Unknown,
    /// A relayed TCP connection: the client (`source`) and the address it
    /// connected to (`destination`).
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
}

/// The v2 TLVs superd reads, values as sent. A v1 header has none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tlvs {
    /// `PP2_TYPE_ALPN`: the application protocol (`h2`, `http/1.1`).
    pub alpn: Option<Vec<u8>>,
    /// `PP2_TYPE_AUTHORITY`: the host name the client asked for (TLS SNI).
    pub authority: Option<Vec<u8>>,
    /// `PP2_TYPE_CRC32C`: the checksum, already verified.
    pub crc32c: Option<u32>,
    /// `PP2_TYPE_UNIQUE_ID`: the proxy's id of the connection (≤ 128 bytes).
    pub unique_id: Option<Vec<u8>>,
    /// `PP2_TYPE_SSL` and its sub-TLVs.
    pub ssl: Option<Ssl>,
    /// `PP2_TYPE_NETNS`: the proxy's network namespace name.
    pub netns: Option<Vec<u8>>,
}

/// `PP2_TYPE_SSL`: how the client talked to the proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ssl {
    /// `PP2_CLIENT_*` bits.
    pub client: u8,
    /// 0: the client presented a certificate and it was verified.
    pub verify: u32,
    /// `PP2_SUBTYPE_SSL_VERSION` (`TLSv1.3`).
    pub version: Option<Vec<u8>>,
    /// `PP2_SUBTYPE_SSL_CN`: the client certificate's Common Name.
    pub cn: Option<Vec<u8>>,
    /// `PP2_SUBTYPE_SSL_CIPHER`.
    pub cipher: Option<Vec<u8>>,
    /// `PP2_SUBTYPE_SSL_SIG_ALG`.
    pub sig_alg: Option<Vec<u8>>,
    /// `PP2_SUBTYPE_SSL_KEY_ALG`.
    pub key_alg: Option<Vec<u8>>,
}

impl Ssl {
    /// `PP2_CLIENT_SSL`: the client connected over TLS.
    pub const CLIENT_SSL: u8 = 0x01;
    /// `PP2_CLIENT_CERT_CONN`: a certificate on this connection.
    pub const CLIENT_CERT_CONN: u8 = 0x02;
    /// `PP2_CLIENT_CERT_SESS`: a certificate once in this TLS session.
    pub const CLIENT_CERT_SESS: u8 = 0x04;

    /// The client connected over TLS.
    pub fn tls(&self) -> bool {
        self.client & Ssl::CLIENT_SSL != 0
    }

    /// The client presented a certificate and the proxy verified it: only
    /// then does its Common Name identify anyone.
    pub fn verified_cert(&self) -> bool {
        self.client & (Ssl::CLIENT_CERT_CONN | Ssl::CLIENT_CERT_SESS) != 0 && self.verify == 0
    }
}

/// Why a header is refused. `Display` is the detail a log line may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Neither v1's `PROXY ` nor v2's signature.
    NotProxy,
    /// A valid start, of the version the service does not accept.
    VersionNotAccepted(Version),
    /// v1: no CRLF within 107 bytes.
    V1TooLong,
    /// v1: a CR without LF, or an LF without CR.
    V1LineEnd,
    /// v1: the line does not match the grammar; what is wrong.
    V1Syntax(&'static str),
    /// v2: the version nibble is not 2.
    V2Version,
    /// v2: a command other than LOCAL and PROXY.
    V2Command,
    /// v2: a family/transport byte outside the seven the text defines.
    V2Family,
    /// v2: the length field says more than 4096 bytes in all.
    V2TooLong,
    /// v2: the length is shorter than the family's address block.
    V2AddressTruncated,
    /// A TLV (or SSL sub-TLV) runs past the end of its container.
    TlvTruncated,
    /// A TLV type superd reads given twice.
    TlvDuplicate(u8),
    /// `PP2_TYPE_UNIQUE_ID` over 128 bytes.
    UniqueIdTooLong,
    /// `PP2_TYPE_SSL` shorter than its 5 fixed bytes.
    SslTruncated,
    /// `PP2_TYPE_CRC32C` not 4 bytes long.
    Crc32cLength,
    /// The checksum does not match the header.
    Crc32cMismatch,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::NotProxy => f.write_str("no PROXY header"),
            Invalid::VersionNotAccepted(v) => {
                write!(f, "a v{} header where it is not accepted", v.number())
            }
            Invalid::V1TooLong => f.write_str("v1: no CRLF within 107 bytes"),
            Invalid::V1LineEnd => f.write_str("v1: a CR or LF alone"),
            Invalid::V1Syntax(what) => write!(f, "v1: {what}"),
            Invalid::V2Version => f.write_str("v2: version is not 2"),
            Invalid::V2Command => f.write_str("v2: unknown command"),
            Invalid::V2Family => f.write_str("v2: unknown family or transport"),
            Invalid::V2TooLong => f.write_str("v2: longer than 4096 bytes"),
            Invalid::V2AddressTruncated => f.write_str("v2: address block truncated"),
            Invalid::TlvTruncated => f.write_str("v2: TLV past the end"),
            Invalid::TlvDuplicate(t) => write!(f, "v2: TLV 0x{t:02x} twice"),
            Invalid::UniqueIdTooLong => f.write_str("v2: UNIQUE_ID over 128 bytes"),
            Invalid::SslTruncated => f.write_str("v2: SSL TLV shorter than 5 bytes"),
            Invalid::Crc32cLength => f.write_str("v2: CRC32C TLV not 4 bytes"),
            Invalid::Crc32cMismatch => f.write_str("v2: CRC32C mismatch"),
        }
    }
}

/// Parses the start of a connection, `buf` being every byte peeked so far.
/// Reads only what it needs: never a byte past the header's end, so the
/// result for a buffer holding a header and more is the result for the
/// header alone. Refuses as early as the bytes allow (a first byte that
/// starts neither version is refused at once).
pub fn parse(buf: &[u8], accept: Accept) -> Parse {
    let Some(&first) = buf.first() else {
        let need = match accept {
            Accept::V2 => V2_FIXED,
            Accept::V1 | Accept::Any => V1_MIN,
        };
        return Parse::Incomplete {
            need_at_least: need,
        };
    };
    let version = match first {
        b'P' => Version::V1,
        b'\r' => Version::V2,
        _ => return Parse::Invalid(Invalid::NotProxy),
    };
    let started = match version {
        Version::V1 => v1::is_start(buf),
        Version::V2 => v2::is_start(buf),
    };
    if !started {
        return Parse::Invalid(Invalid::NotProxy);
    }
    if !accept.admits(version) {
        return Parse::Invalid(Invalid::VersionNotAccepted(version));
    }
    match version {
        Version::V1 => v1::parse(buf),
        Version::V2 => v2::parse(buf),
    }
}

impl Header {
    /// The connection's endpoints from now on, as (remote, local): the
    /// client and the address it connected to when the header says so,
    /// else the real ones (`peer`, from accept, is the proxy; `local`,
    /// from getsockname). IPv4-mapped addresses come back as IPv4, as in
    /// every log line and variable.
    pub fn connection(&self, peer: SocketAddr, local: SocketAddr) -> (SocketAddr, SocketAddr) {
        let (r, l) = match self.endpoints {
            Endpoints::Proxied {
                source,
                destination,
            } => (source, destination),
            Endpoints::Local | Endpoints::Unknown => (peer, local),
        };
        (canonical_addr(r), canonical_addr(l))
    }

    /// The variables the header adds to the child's environment, in
    /// [`PROXY_VARS`] order: `PROXY_PROTOCOL`, the proxy's own address
    /// (`proxy`: the peer accept returned), and the TLVs. A TLV value that
    /// is not UTF-8 or holds a control character (NUL included) is left
    /// out rather than passed on: a program that reads its environment
    /// must not meet line breaks or escapes a client chose. SSL_PROTOCOL
    /// and SSL_CIPHER need the client to have used TLS; SSL_PEER_CERT_CN
    /// also needs a certificate the proxy verified.
    pub fn proxy_vars(&self, proxy: SocketAddr) -> Vec<(&'static str, String)> {
        let proxy = canonical_addr(proxy);
        let mut out = vec![
            ("PROXY_PROTOCOL", self.version.number().to_string()),
            ("TCPPROXYIP", proxy.ip().to_string()),
            ("TCPPROXYPORT", proxy.port().to_string()),
        ];
        let t = &self.tlvs;
        let mut text = |name: &'static str, v: Option<&Vec<u8>>| {
            if let Some(s) = v.and_then(|v| env_text(v)) {
                out.push((name, s));
            }
        };
        text("PROXY_ALPN", t.alpn.as_ref());
        text("PROXY_AUTHORITY", t.authority.as_ref());
        if let Some(id) = &t.unique_id {
            out.push(("PROXY_UNIQUE_ID", hex(id)));
        }
        if let Some(ssl) = t.ssl.as_ref().filter(|s| s.tls()) {
            if let Some(s) = ssl.version.as_deref().and_then(env_text) {
                out.push(("SSL_PROTOCOL", s));
            }
            if let Some(s) = ssl.cipher.as_deref().and_then(env_text) {
                out.push(("SSL_CIPHER", s));
            }
            if ssl.verified_cert()
                && let Some(s) = ssl.cn.as_deref().and_then(env_text)
            {
                out.push(("SSL_PEER_CERT_CN", s));
            }
        }
        out
    }
}

/// What the event loop keeps of a connection whose header it has read:
/// the proxy and the header's variables for the child. The connection's
/// peer and local address are the header's from then on
/// ([`Header::connection`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relayed {
    /// The proxy: the peer accept returned (canonical), `proxy=` in logs.
    pub proxy: SocketAddr,
    /// [`Header::proxy_vars`].
    pub vars: Vec<(&'static str, String)>,
}

/// Every variable [`Header::proxy_vars`] may write, in its order.
pub const PROXY_VARS: [&str; 9] = [
    "PROXY_PROTOCOL",
    "TCPPROXYIP",
    "TCPPROXYPORT",
    "PROXY_ALPN",
    "PROXY_AUTHORITY",
    "PROXY_UNIQUE_ID",
    "SSL_PROTOCOL",
    "SSL_CIPHER",
    "SSL_PEER_CERT_CN",
];

/// The connection variables of a TCP child behind a proxy, in the order
/// the spawn plan writes them: `PROTO`, `TCPREMOTEIP`, `TCPREMOTEPORT`,
/// `TCPLOCALIP`, `TCPLOCALPORT`, `REMOTE_ADDR`, `REMOTE_PORT` from
/// [`Header::connection`], then [`Header::proxy_vars`]. `peer` is the
/// address accept returned (the proxy), `local` the socket's own.
pub fn child_vars(
    header: &Header,
    peer: SocketAddr,
    local: SocketAddr,
) -> Vec<(&'static str, String)> {
    let (remote, local) = header.connection(peer, local);
    let mut out = vec![
        ("PROTO", "TCP".to_owned()),
        ("TCPREMOTEIP", remote.ip().to_string()),
        ("TCPREMOTEPORT", remote.port().to_string()),
        ("TCPLOCALIP", local.ip().to_string()),
        ("TCPLOCALPORT", local.port().to_string()),
        ("REMOTE_ADDR", remote.ip().to_string()),
        ("REMOTE_PORT", remote.port().to_string()),
    ];
    out.extend(header.proxy_vars(peer));
    out
}

/// `v` as an environment value: UTF-8 without control characters (C0,
/// DEL, C1; NUL among them), else `None`.
fn env_text(v: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(v).ok()?;
    if s.chars().any(char::is_control) {
        return None;
    }
    Some(s.to_owned())
}

fn hex(v: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(v.len() * 2);
    for &b in v {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests;
