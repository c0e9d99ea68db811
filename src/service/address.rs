//! Where a service listens: the socket type, the address (inet, any port,
//! unix path, abstract), whether two addresses overlap, and IPs shown as
//! the logs show them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

/// `socket:` — the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocketType {
    Stream,
    Dgram,
    Seqpacket,
}

impl SocketType {
    pub fn as_str(self) -> &'static str {
        match self {
            SocketType::Stream => "stream",
            SocketType::Dgram => "dgram",
            SocketType::Seqpacket => "seqpacket",
        }
    }
}

impl fmt::Display for SocketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `listen:`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// `7007`, `:7007`, `*:7007`: every address, dual stack where the host
    /// has IPv6, `0.0.0.0` otherwise.
    AnyPort(u16),
    /// A specific IPv4 or IPv6 address (including `0.0.0.0` and `[::]`).
    Inet(SocketAddr),
    /// A unix socket at an absolute path.
    UnixPath(PathBuf),
    /// A Linux abstract unix socket, the name without the leading `@`.
    UnixAbstract(Vec<u8>),
}

impl Address {
    pub fn is_unix(&self) -> bool {
        matches!(self, Address::UnixPath(_) | Address::UnixAbstract(_))
    }

    /// The port, for inet addresses.
    pub fn port(&self) -> Option<u16> {
        match self {
            Address::AnyPort(p) => Some(*p),
            Address::Inet(sa) => Some(sa.port()),
            _ => None,
        }
    }

    /// The same address on another port (inet only).
    pub fn with_port(&self, port: u16) -> Option<Address> {
        match self {
            Address::AnyPort(_) => Some(Address::AnyPort(port)),
            Address::Inet(sa) => Some(Address::Inet(SocketAddr::new(sa.ip(), port))),
            _ => None,
        }
    }

    /// Whether two addresses of the same socket type would fight over the
    /// same port: equal, or a wildcard and anything it covers on the same
    /// non-zero port. `v6only` says whether each one's IPv6 wildcard is
    /// IPv6 only (then it leaves IPv4 addresses alone). Port 0 never
    /// conflicts (the kernel picks a free port).
    pub fn conflicts_with(&self, v6only: bool, other: &Address, other_v6only: bool) -> bool {
        match (self, other) {
            (Address::UnixPath(a), Address::UnixPath(b)) => a == b,
            (Address::UnixAbstract(a), Address::UnixAbstract(b)) => a == b,
            _ => {
                let (Some(pa), Some(pb)) = (self.port(), other.port()) else {
                    return false;
                };
                if pa == 0 || pb == 0 || pa != pb {
                    return false;
                }
                let (ia, ib) = (self.ip(), other.ip());
                ia == ib || covers(ia, v6only, ib) || covers(ib, other_v6only, ia)
            }
        }
    }

    /// The IP an inet address binds: `AnyPort` is the IPv6 wildcard (dual
    /// stack unless v6only).
    fn ip(&self) -> IpAddr {
        match self {
            Address::Inet(sa) => sa.ip(),
            _ => ANY_V6,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::AnyPort(p) => write!(f, "*:{p}"),
            Address::Inet(sa) => write!(f, "{sa}"),
            Address::UnixPath(p) => write!(f, "{}", p.display()),
            Address::UnixAbstract(n) => write!(f, "@{}", String::from_utf8_lossy(n)),
        }
    }
}

/// Whether the address `wild` (when it is a wildcard) covers `other`: the
/// IPv4 wildcard covers IPv4; the IPv6 wildcard covers IPv6, and IPv4 too
/// unless it is v6only.
fn covers(wild: IpAddr, v6only: bool, other: IpAddr) -> bool {
    match wild {
        IpAddr::V4(w) if w.is_unspecified() => other.is_ipv4(),
        IpAddr::V6(w) if w.is_unspecified() => other.is_ipv6() || !v6only,
        _ => false,
    }
}

/// The unspecified addresses, for callers matching wildcards.
pub const ANY_V4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

pub const ANY_V6: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
