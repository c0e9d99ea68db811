//! Listening sockets superd inherits from its parent, as systemd's `.socket`
//! units and `systemd-socket-activate` pass them (`LISTEN_PID`,
//! `LISTEN_FDS`, `LISTEN_FDNAMES`; superd.8, SOCKET ACTIVATION): read once
//! at start, matched to the services by address and socket type (or by
//! name), and turned into [`Listener`]s that the event loop keeps like its
//! own. Binding is left to [`crate::listener`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use log::{info, warn};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{self, SockType, SockaddrLike, SockaddrStorage, sockopt};

use crate::listener::{self, Listener};
use crate::service::{Address, Service, SocketType, canonical_addr};

/// The first inherited descriptor (`SD_LISTEN_FDS_START`).
pub const FIRST_FD: RawFd = 3;

/// The protocol's environment variables, unset once read.
const VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// The most descriptors taken: more is no socket unit anyone writes, and a
/// bogus `LISTEN_FDS` must not make superd walk millions of numbers.
const MAX_FDS: usize = 4096;

/// An inherited descriptor, as far as superd can tell what it is.
#[derive(Debug)]
pub struct Inherited {
    pub fd: OwnedFd,
    /// Its `LISTEN_FDNAMES` entry, if any (empty names are none).
    pub name: Option<String>,
}

/// What an inherited socket is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Bound {
    Inet(SocketAddr),
    UnixPath(PathBuf),
    UnixAbstract(Vec<u8>),
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Inet(sa) => write!(f, "{sa}"),
            Bound::UnixPath(p) => write!(f, "{}", p.display()),
            Bound::UnixAbstract(n) => write!(f, "@{}", String::from_utf8_lossy(n)),
        }
    }
}

/// Reads the protocol's variables and takes the descriptors they name,
/// then unsets the variables (no child ever sees them). Nothing when
/// `LISTEN_PID` is not superd's own pid: they were meant for another
/// process. Each descriptor is made close-on-exec at once.
pub fn take_from_env() -> Vec<Inherited> {
    let get = |k: &str| std::env::var(k).ok();
    let (pid, fds, names) = (get(VARS[0]), get(VARS[1]), get(VARS[2]));
    for v in VARS {
        crate::sys::remove_env(v);
    }
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Vec::new();
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        info!("inherited sockets ignored: LISTEN_PID={pid} is not superd's pid");
        return Vec::new();
    }
    let Some(n) = fds.trim().parse::<usize>().ok() else {
        warn!("inherited sockets ignored: bad LISTEN_FDS={fds:?}");
        return Vec::new();
    };
    if n > MAX_FDS {
        warn!("inherited sockets ignored: LISTEN_FDS={n} is more than {MAX_FDS}");
        return Vec::new();
    }
    let names: Vec<&str> = names
        .as_deref()
        .map_or(Vec::new(), |n| n.split(':').collect());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let raw = FIRST_FD + i as RawFd;
        let Some(fd) = crate::sys::inherited_fd(raw) else {
            warn!("inherited fd not open fd={raw}");
            continue;
        };
        let _ = fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        let name = names
            .get(i)
            .filter(|s| !s.is_empty())
            .map(|s| (*s).to_owned());
        out.push(Inherited { fd, name });
    }
    out
}

/// The socket type and bound address of `fd`, or why superd cannot serve
/// it (not a socket, another family or type).
fn describe(fd: &OwnedFd) -> Result<(SocketType, Bound), String> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| format!("fstat: {e}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err("not a socket".to_owned());
    }
    let ss: SockaddrStorage =
        socket::getsockname(fd.as_raw_fd()).map_err(|e| format!("getsockname: {e}"))?;
    let bound = if let Some(v4) = ss.as_sockaddr_in() {
        Bound::Inet(SocketAddr::from((v4.ip(), v4.port())))
    } else if let Some(v6) = ss.as_sockaddr_in6() {
        Bound::Inet(SocketAddr::from((v6.ip(), v6.port())))
    } else if let Some(un) = ss.as_unix_addr() {
        if let Some(p) = un.path() {
            Bound::UnixPath(p.to_path_buf())
        } else if let Some(n) = un.as_abstract() {
            Bound::UnixAbstract(n.to_vec())
        } else {
            return Err("an unnamed unix socket".to_owned());
        }
    } else {
        return Err(format!(
            "a socket of family {} superd does not serve",
            ss.family().map_or(-1, |f| f as i32)
        ));
    };
    let kind = match socket::getsockopt(fd, sockopt::SockType) {
        Ok(SockType::Stream) => SocketType::Stream,
        Ok(SockType::Datagram) => SocketType::Dgram,
        Ok(SockType::SeqPacket) if matches!(bound, Bound::UnixPath(_) | Bound::UnixAbstract(_)) => {
            SocketType::Seqpacket
        }
        Ok(t) => return Err(format!("a socket of type {t:?} superd does not serve")),
        Err(e) => return Err(format!("SO_TYPE: {e}")),
    };
    Ok((kind, bound))
}

/// Whether a configured address names the socket bound at `bound`: the
/// same address, `*:PORT` for `[::]:PORT` or `0.0.0.0:PORT`, the same
/// path or abstract name. Port 0 names no socket in particular.
fn names_socket(addr: &Address, bound: &Bound) -> bool {
    match (addr, bound) {
        (Address::AnyPort(p), Bound::Inet(sa)) => {
            *p != 0 && *p == sa.port() && sa.ip().is_unspecified()
        }
        (Address::Inet(want), Bound::Inet(sa)) => {
            want.port() != 0 && canonical_addr(*want) == canonical_addr(*sa)
        }
        (Address::UnixPath(p), Bound::UnixPath(q)) => p == q,
        (Address::UnixAbstract(a), Bound::UnixAbstract(b)) => a == b,
        _ => false,
    }
}

/// Matches `inherited` to the addresses of the enabled `services`; returns
/// a listener for each match, by (service index, address index). A socket
/// whose `LISTEN_FDNAMES` name is a service's name goes to that service:
/// its address of the same type and address, else its first address of
/// the same type not yet taken (the socket unit's address replaces it).
/// Every other socket goes to the address that names it. What matches
/// nothing, and what superd cannot serve, is logged and closed here.
pub fn adopt(inherited: Vec<Inherited>, services: &[Service]) -> HashMap<(usize, usize), Listener> {
    let mut out: HashMap<(usize, usize), Listener> = HashMap::new();
    let mut rest = Vec::new();
    for inh in inherited {
        let raw = inh.fd.as_raw_fd();
        match describe(&inh.fd) {
            Ok((kind, bound)) => rest.push((inh, kind, bound)),
            Err(why) => warn!(
                "inherited fd unused fd={raw} reason={} (closed)",
                crate::logging::quote(&why)
            ),
        }
    }
    // Named sockets first: a name is the admin's explicit choice.
    rest.sort_by_key(|(inh, _, _)| inh.name.is_none());
    for (inh, kind, bound) in rest {
        let raw = inh.fd.as_raw_fd();
        let by_name = inh
            .name
            .as_deref()
            .and_then(|n| services.iter().position(|s| s.enabled && s.name == n));
        let free = |si: usize, ai: usize| !out.contains_key(&(si, ai));
        let found = match by_name {
            Some(si) => {
                let s = &services[si];
                let same_type = |ai: &usize| s.socket_at(*ai) == kind && free(si, *ai);
                (0..s.listen.len())
                    .filter(same_type)
                    .find(|ai| names_socket(&s.listen[*ai], &bound))
                    .or_else(|| (0..s.listen.len()).find(same_type))
                    .map(|ai| (si, ai))
            }
            None => services
                .iter()
                .enumerate()
                .filter(|(_, s)| s.enabled)
                .flat_map(|(si, s)| (0..s.listen.len()).map(move |ai| (si, ai)))
                .find(|&(si, ai)| {
                    let s = &services[si];
                    s.socket_at(ai) == kind && names_socket(&s.listen[ai], &bound) && free(si, ai)
                }),
        };
        let Some((si, ai)) = found else {
            warn!(
                "inherited socket unused fd={raw} addr={} socket={kind} (closed)",
                crate::logging::quote(&bound.to_string())
            );
            continue;
        };
        match listener_for(inh.fd, &services[si], ai, &bound) {
            Ok(l) => {
                out.insert((si, ai), l);
            }
            Err(e) => warn!(
                "inherited socket unused fd={raw} addr={} socket={kind} error={} (closed)",
                crate::logging::quote(&bound.to_string()),
                crate::logging::quote(&e.to_string())
            ),
        }
    }
    out
}

/// The listener for address `ai` of `service` on the inherited `fd`:
/// non-blocking and close-on-exec for superd's own use, listening if it
/// is a stream socket not yet listening. Options a bound socket cannot
/// take any more are warned about.
fn listener_for(
    fd: OwnedFd,
    service: &Service,
    ai: usize,
    bound: &Bound,
) -> std::io::Result<Listener> {
    let key = service.listener_key_at(ai);
    listener::set_nonblocking(fd.as_fd(), true)?;
    if key.socket != SocketType::Dgram
        && !socket::getsockopt(&fd, sockopt::AcceptConn).unwrap_or(true)
    {
        listener::listen_if_stream(&fd, &key)?;
    }
    let warn_option = |option: &str, want: bool, has: bool| {
        warn!(
            "inherited socket option not applied service={} addr={} option={option} configured={want} socket={has}",
            service.name,
            crate::logging::quote(&bound.to_string())
        );
    };
    if let Ok(has) = socket::getsockopt(&fd, sockopt::ReusePort)
        && has != key.reuse_port
    {
        warn_option("reuse_port", key.reuse_port, has);
    }
    if let Bound::Inet(SocketAddr::V6(v6)) = bound
        && v6.ip().is_unspecified()
        && let Ok(has) = socket::getsockopt(&fd, sockopt::Ipv6V6Only)
        && has != key.v6only
    {
        warn_option("v6only", key.v6only, has);
    }
    let (port, specific) = match bound {
        Bound::Inet(sa) => (
            Some(sa.port()),
            (!sa.ip().is_unspecified()).then(|| canonical_addr(*sa)),
        ),
        _ => (None, None),
    };
    Ok(Listener {
        key,
        fd,
        local: bound.to_string(),
        // Never unlinked by superd: the file is its creator's.
        socket_file: None,
        port,
        specific,
        inherited: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn addresses_name_the_sockets_they_would_bind() {
        let v4 = |ip: [u8; 4], p| Bound::Inet(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), p));
        let any6 = Bound::Inet(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 53));
        assert!(names_socket(&Address::AnyPort(53), &any6));
        assert!(names_socket(&Address::AnyPort(53), &v4([0, 0, 0, 0], 53)));
        assert!(!names_socket(
            &Address::AnyPort(53),
            &v4([127, 0, 0, 1], 53)
        ));
        assert!(!names_socket(&Address::AnyPort(54), &any6));
        let a: Address = Address::Inet("127.0.0.1:7000".parse().unwrap());
        assert!(names_socket(&a, &v4([127, 0, 0, 1], 7000)));
        assert!(!names_socket(&a, &v4([127, 0, 0, 2], 7000)));
        // Port 0 names no socket in particular.
        let zero: Address = Address::Inet("127.0.0.1:0".parse().unwrap());
        assert!(!names_socket(&zero, &v4([127, 0, 0, 1], 0)));
        assert!(names_socket(
            &Address::UnixPath("/run/x.sock".into()),
            &Bound::UnixPath("/run/x.sock".into())
        ));
        assert!(!names_socket(
            &Address::UnixAbstract(b"x".to_vec()),
            &Bound::UnixPath("x".into())
        ));
        assert!(names_socket(
            &Address::UnixAbstract(b"x".to_vec()),
            &Bound::UnixAbstract(b"x".to_vec())
        ));
    }
}
