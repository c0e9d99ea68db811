//! The values of where a service listens and how its socket is handed
//! over: addresses and ports (`listen:`), fd names, pass and start modes,
//! socket types (superd.yaml.5, SERVICE FIELDS).

use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::{Scalar, ScalarVisitor, custom};
use crate::service::{Address, PassMode, SocketType, StartMode};

pub(super) fn no_nul(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        Err("contains a NUL byte".into())
    } else {
        Ok(())
    }
}

impl Scalar for Address {
    const EXPECTING: &'static str =
        "an address: PORT, :PORT, *:PORT, IPV4:PORT, [IPV6]:PORT, /unix/path or @abstract";
    fn from_u64(n: u64) -> Result<Self, String> {
        port(&n.to_string()).map(Address::AnyPort)
    }
    fn from_str(s: &str) -> Result<Self, String> {
        no_nul(s)?;
        let bad = || {
            format!(
                "bad address {s:?}: expected PORT, :PORT, *:PORT, IPV4:PORT, [IPV6]:PORT, /unix/path or @abstract"
            )
        };
        if let Some(name) = s.strip_prefix('@') {
            // sun_path is 108 bytes, one of which is the leading NUL.
            if name.is_empty() || name.len() > 107 {
                return Err(format!(
                    "bad abstract socket name {s:?}: 1 to 107 bytes after @"
                ));
            }
            return Ok(Address::UnixAbstract(name.as_bytes().to_vec()));
        }
        if s.starts_with('/') {
            // sun_path holds 107 bytes plus the terminating NUL.
            if s.len() > 107 {
                return Err(format!("unix socket path {s:?} is longer than 107 bytes"));
            }
            return Ok(Address::UnixPath(PathBuf::from(s)));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
            return port(s).map(Address::AnyPort);
        }
        if let Some(p) = s.strip_prefix("*:").or_else(|| s.strip_prefix(':')) {
            return port(p).map(Address::AnyPort);
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (ip, p) = rest.split_once("]:").ok_or_else(bad)?;
            let ip: Ipv6Addr = ip.parse().map_err(|_| bad())?;
            return Ok(Address::Inet(SocketAddr::new(IpAddr::V6(ip), port(p)?)));
        }
        if is_service_word(s) {
            return port(s).map(Address::AnyPort).map_err(|_| {
                format!(
                    "{} (or a service name of /etc/services, which {s:?} is not)",
                    bad()
                )
            });
        }
        let (ip, p) = s.rsplit_once(':').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        Ok(Address::Inet(SocketAddr::new(IpAddr::V4(ip), port(p)?)))
    }
}

/// One entry of `listen:`: an address, or a mapping `{address: ADDR,
/// socket: TYPE}` that gives that address its own socket type (wait mode
/// only, checked by `validate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenEntry {
    pub addr: Address,
    pub socket: Option<SocketType>,
    /// The service name the port was written as (`listen: finger`), which
    /// `--check` shows resolved.
    pub port_name: Option<String>,
}

impl Scalar for ListenEntry {
    const EXPECTING: &'static str = "an address (PORT, :PORT, *:PORT, IPV4:PORT, [IPV6]:PORT, /unix/path, @abstract) or a mapping {address: ADDR, socket: TYPE}";
    fn from_u64(n: u64) -> Result<Self, String> {
        Address::from_u64(n).map(ListenEntry::plain)
    }
    fn from_str(s: &str) -> Result<Self, String> {
        let addr = Address::from_str(s)?;
        let last = s.rsplit(':').next().unwrap_or(s);
        let port_name = (addr.port().is_some() && is_service_word(last)).then(|| last.to_owned());
        Ok(ListenEntry {
            port_name,
            ..ListenEntry::plain(addr)
        })
    }
}

impl ListenEntry {
    fn plain(addr: Address) -> ListenEntry {
        ListenEntry {
            addr,
            socket: None,
            port_name: None,
        }
    }
}

impl<'de> Deserialize<'de> for ListenEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ListenEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ListenEntry::EXPECTING)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ListenEntry, E> {
                ScalarVisitor::<ListenEntry>(PhantomData).visit_str(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ListenEntry, E> {
                ScalarVisitor::<ListenEntry>(PhantomData).visit_u64(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ListenEntry, E> {
                ScalarVisitor::<ListenEntry>(PhantomData).visit_i64(v)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ListenEntry, E> {
                ScalarVisitor::<ListenEntry>(PhantomData).visit_f64(v)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ListenEntry, E> {
                ScalarVisitor::<ListenEntry>(PhantomData).visit_bool(v)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListenEntry, A::Error> {
                let (mut addr, mut socket) = (None, None);
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "address" if addr.is_none() => addr = Some(map.next_value::<Address>()?),
                        "socket" if socket.is_none() => {
                            socket = Some(map.next_value::<SocketType>()?)
                        }
                        "address" | "socket" => {
                            return Err(custom(format_args!(
                                "duplicate key {k:?} in a listen entry"
                            )));
                        }
                        _ => return Err(de::Error::unknown_field(&k, &["address", "socket"])),
                    }
                }
                let addr = addr.ok_or_else(|| {
                    custom::<A::Error>(
                        "a listen entry mapping needs address: (and may have socket:)",
                    )
                })?;
                Ok(ListenEntry {
                    socket,
                    ..ListenEntry::plain(addr)
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// One name of `fd_names:` (a `LISTEN_FDNAMES` entry): no `:`, which
/// separates them, and nothing a C string cannot hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdName(pub String);

impl Scalar for FdName {
    const EXPECTING: &'static str = "a socket name (printable, at most 255 bytes, no ':')";
    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains(':') {
            return Err(format!(
                "bad fd name {s:?}: a name cannot contain ':' (it separates the names in LISTEN_FDNAMES)"
            ));
        }
        if s.is_empty() || s.len() > 255 || s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!(
                "bad fd name {s:?}: 1 to 255 printable bytes without spaces"
            ));
        }
        Ok(FdName(s.to_owned()))
    }
    fn from_u64(n: u64) -> Result<Self, String> {
        Ok(FdName(n.to_string()))
    }
}

impl Scalar for PassMode {
    const EXPECTING: &'static str = "one of stdio, listen_fds";
    fn from_str(s: &str) -> Result<Self, String> {
        let all = [PassMode::Stdio, PassMode::ListenFds];
        one_of(s, &all, PassMode::as_str, "pass mode")
    }
}

impl Scalar for StartMode {
    const EXPECTING: &'static str = "one of on_demand, at_start";
    fn from_str(s: &str) -> Result<Self, String> {
        let all = [StartMode::OnDemand, StartMode::AtStart];
        one_of(s, &all, StartMode::as_str, "start mode")
    }
}

fn port(s: &str) -> Result<u16, String> {
    if is_service_word(s) {
        return crate::services::port_by_name(s).ok_or_else(|| {
            format!("bad port {s:?}: not a number, and no service of that name in /etc/services")
        });
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad port {s:?}: expected a number from 0 to 65535"));
    }
    s.parse()
        .map_err(|_| format!("bad port {s:?}: expected a number from 0 to 65535"))
}

pub(super) fn one_of<T: Copy>(
    s: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    what: &str,
) -> Result<T, String> {
    all.iter().copied().find(|&x| name(x) == s).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|&x| name(x)).collect();
        format!("unknown {what} {s:?}, expected one of {}", names.join(", "))
    })
}

impl Scalar for SocketType {
    const EXPECTING: &'static str = "one of stream, dgram, seqpacket";
    fn from_str(s: &str) -> Result<Self, String> {
        let all = [SocketType::Stream, SocketType::Dgram, SocketType::Seqpacket];
        one_of(s, &all, SocketType::as_str, "socket type").map_err(|e| {
            // inetd.conf's protocol column, written where the socket type goes.
            let meant = match s.to_ascii_lowercase().as_str() {
                "tcp" | "tcp4" | "tcp6" => "stream",
                "udp" | "udp4" | "udp6" => "dgram",
                _ => return e,
            };
            format!("{e} (socket is the socket type: {s} is socket: {meant})")
        })
    }
}

/// A word that may name a service of /etc/services (`finger`, `ftp-data`):
/// a letter first, so that no number is ever read as a name.
pub(super) fn is_service_word(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
