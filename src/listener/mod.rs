//! Listening sockets: binding one per configured address with the service's
//! socket options, accepting connections, and reading datagram sources.
//! The event loop owns the listeners; unix socket files are in `unix`, the
//! reuse of listeners on a reload in `pool`, and the raw calls in `sys`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrStorage,
    UnixAddr, sockopt,
};

use crate::service::{Address, ListenerKey, SocketType, canonical_addr};
use crate::sys;

pub mod pool;
mod unix;

pub use unix::SocketFile;
use unix::bind_unix_path;

/// A bound (and, for stream types, listening) socket, non-blocking and
/// close-on-exec.
#[derive(Debug)]
pub struct Listener {
    pub key: ListenerKey,
    pub fd: OwnedFd,
    /// The address actually bound, as the `listening` line shows it (the
    /// kernel's port when the config said 0).
    pub local: String,
    /// The socket file superd created, removed when the listener goes away
    /// (if the path still names it).
    pub socket_file: Option<SocketFile>,
    /// The port actually bound (inet), which differs from the key's when
    /// the configuration said 0.
    pub port: Option<u16>,
    /// The bound address when it is a specific IP (not a wildcard), the
    /// local address of every connection accepted on it.
    pub specific: Option<SocketAddr>,
    /// Inherited from superd's parent (LISTEN_FDS), not bound by superd.
    pub inherited: bool,
}

/// Who is on the other end of an accepted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// An inet peer, canonical (IPv4-mapped shown as IPv4).
    Inet(SocketAddr),
    /// A unix peer: credentials from SO_PEERCRED.
    Unix { pid: i32, uid: u32, gid: u32 },
}

impl Peer {
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Peer::Inet(sa) => Some(sa.ip()),
            Peer::Unix { .. } => None,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Inet(sa) => write!(f, "{sa}"),
            Peer::Unix { pid, uid, .. } => write!(f, "unix:pid={pid},uid={uid}"),
        }
    }
}

/// An accepted connection, non-blocking and close-on-exec.
#[derive(Debug)]
pub struct Accepted {
    pub fd: OwnedFd,
    pub peer: Peer,
    /// The local address, when the listener's own says it (a specific
    /// IP); `None` for wildcard listeners, where getsockname must tell.
    pub local: Option<SocketAddr>,
    /// Behind a proxy, once its PROXY header is read: the proxy, and the
    /// header's variables (`peer` and `local` are the header's then).
    pub proxy: Option<Box<crate::proxy::Relayed>>,
}

/// Why an address could not be bound.
#[derive(Debug)]
pub struct BindError {
    pub addr: String,
    pub error: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot listen on {}: {}", self.addr, self.error)
    }
}

fn sock_type(t: SocketType) -> SockType {
    match t {
        SocketType::Stream => SockType::Stream,
        SocketType::Dgram => SockType::Datagram,
        SocketType::Seqpacket => SockType::SeqPacket,
    }
}

fn flags() -> SockFlag {
    SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC
}

pub(super) fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl Listener {
    /// Binds `key.addr` with every socket option of the key.
    pub fn bind(key: &ListenerKey) -> Result<Listener, BindError> {
        let fail = |error: io::Error| BindError {
            addr: key.addr.to_string(),
            error,
        };
        match &key.addr {
            Address::AnyPort(port) => {
                // Dual stack `[::]`, or `0.0.0.0` where the host has no IPv6.
                let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), *port);
                match bind_inet(key, v6) {
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
                        ) =>
                    {
                        let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), *port);
                        bind_inet(key, v4).map_err(fail)
                    }
                    r => r.map_err(fail),
                }
            }
            Address::Inet(sa) => bind_inet(key, *sa).map_err(fail),
            Address::UnixPath(path) => bind_unix_path(key, path).map_err(fail),
            Address::UnixAbstract(name) => {
                let addr = UnixAddr::new_abstract(name).map_err(|e| fail(errno_io(e)))?;
                let fd = unix_socket(key).map_err(fail)?;
                socket::bind(fd.as_raw_fd(), &addr).map_err(|e| fail(errno_io(e)))?;
                listen_if_stream(&fd, key).map_err(fail)?;
                Ok(Listener {
                    key: key.clone(),
                    fd,
                    local: key.addr.to_string(),
                    socket_file: None,
                    port: None,
                    specific: None,
                    inherited: false,
                })
            }
        }
    }

    /// Accepts one connection; `WouldBlock` when the backlog is empty.
    pub fn accept(&self) -> io::Result<Accepted> {
        let (fd, from) = sys::accept4(self.fd.as_fd())?;
        let peer = match from {
            Some(sa) => Peer::Inet(canonical_addr(sa)),
            None => peer_credentials(fd.as_fd()),
        };
        Ok(Accepted {
            fd,
            peer,
            local: self.specific,
            proxy: None,
        })
    }

    /// Whether this socket can take `key`'s options without being rebound:
    /// same address and type, same v6only and reuse_port (fixed at bind).
    pub fn can_adjust_to(&self, key: &ListenerKey) -> bool {
        self.key.socket == key.socket
            && self.key.v6only == key.v6only
            && self.key.reuse_port == key.reuse_port
    }

    /// Applies the options that can change on an open socket (reload):
    /// the backlog (listen() again) and the socket file's mode and owner.
    /// The file is changed through a descriptor of the inode bound at
    /// start, never by a path lookup: a symlink or another file put at the
    /// path is left alone (an error says so).
    pub fn adjust(&mut self, key: &ListenerKey) -> io::Result<()> {
        let old = std::mem::replace(&mut self.key, key.clone());
        if key.socket != SocketType::Dgram && key.backlog != old.backlog {
            listen_if_stream(&self.fd, key)?;
        }
        if let Some(file) = &self.socket_file {
            let owner = key.socket_user != old.socket_user || key.socket_group != old.socket_group;
            if key.socket_mode != old.socket_mode || owner {
                let fd = file.open()?;
                if owner {
                    // An owner no longer configured goes back to the
                    // default, superd's own, as a freshly bound socket
                    // file has.
                    sys::chown_fd(
                        fd.as_fd(),
                        Some(
                            key.socket_user
                                .unwrap_or_else(|| nix::unistd::geteuid().as_raw()),
                        ),
                        Some(
                            key.socket_group
                                .unwrap_or_else(|| nix::unistd::getegid().as_raw()),
                        ),
                    )?;
                }
                // After the chown, which may clear mode bits.
                sys::chmod_fd(fd.as_fd(), key.socket_mode)?;
            }
        }
        Ok(())
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.remove_socket_file();
    }
}

/// SO_PEERCRED of a unix socket; unknown credentials read as -1.
pub fn peer_credentials(fd: BorrowedFd<'_>) -> Peer {
    match socket::getsockopt(&fd, sockopt::PeerCredentials) {
        Ok(c) => Peer::Unix {
            pid: c.pid(),
            uid: c.uid(),
            gid: c.gid(),
        },
        Err(_) => Peer::Unix {
            pid: -1,
            uid: u32::MAX,
            gid: u32::MAX,
        },
    }
}

/// The local address of a connected inet socket, canonical.
pub fn local_inet(fd: BorrowedFd<'_>) -> Option<SocketAddr> {
    let ss: SockaddrStorage = socket::getsockname(fd.as_raw_fd()).ok()?;
    if let Some(v4) = ss.as_sockaddr_in() {
        return Some(canonical_addr(SocketAddr::V4(SocketAddrV4::new(
            v4.ip(),
            v4.port(),
        ))));
    }
    ss.as_sockaddr_in6().map(|v6| {
        canonical_addr(SocketAddr::V6(SocketAddrV6::new(
            v6.ip(),
            v6.port(),
            v6.flowinfo(),
            v6.scope_id(),
        )))
    })
}

/// Sets `O_NONBLOCK` on `fd` (a listening socket handed back by a `wait`
/// child) or clears it.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let raw = fd.as_raw_fd();
    let fl = OFlag::from_bits_truncate(fcntl(raw, FcntlArg::F_GETFL).map_err(errno_io)?);
    let new = if on {
        fl | OFlag::O_NONBLOCK
    } else {
        fl - OFlag::O_NONBLOCK
    };
    fcntl(raw, FcntlArg::F_SETFL(new)).map_err(errno_io)?;
    Ok(())
}

/// Sets the per-connection TCP options of the service on an accepted socket.
pub fn set_connection_options(fd: BorrowedFd<'_>, keepalive: bool, nodelay: bool) {
    if keepalive {
        let _ = socket::setsockopt(&fd, sockopt::KeepAlive, &true);
    }
    if nodelay {
        let _ = socket::setsockopt(&fd, sockopt::TcpNoDelay, &true);
    }
}

/// Writes a service's `refuse_message` to a connection about to be closed:
/// once, without blocking and without SIGPIPE. What the send buffer does not
/// take is lost; a fresh connection's buffer always takes 512 bytes.
pub fn send_refusal(fd: BorrowedFd<'_>, msg: &[u8]) {
    let flags = socket::MsgFlags::MSG_DONTWAIT | socket::MsgFlags::MSG_NOSIGNAL;
    let _ = socket::send(fd.as_raw_fd(), msg, flags);
}

fn bind_inet(key: &ListenerKey, sa: SocketAddr) -> io::Result<Listener> {
    let family = if sa.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(family, sock_type(key.socket), flags(), None).map_err(errno_io)?;
    if key.socket == SocketType::Stream && sa.port() != 0 {
        // A restarted superd must rebind while old connections sit in
        // TIME_WAIT, as every inetd does. Port 0 is a fresh port each
        // time, so it needs no reuse, and with SO_REUSEADDR the kernel's
        // search for a free port gets slow as ports fill (10,000 binds of
        // 127.0.0.1:0 took 6.2 s with it, 0.09 s without).
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(errno_io)?;
    }
    if key.reuse_port {
        socket::setsockopt(&fd, sockopt::ReusePort, &true).map_err(errno_io)?;
    }
    if sa.is_ipv6() {
        socket::setsockopt(&fd, sockopt::Ipv6V6Only, &key.v6only).map_err(errno_io)?;
    }
    match sa {
        SocketAddr::V4(v4) => socket::bind(fd.as_raw_fd(), &SockaddrIn::from(v4)),
        SocketAddr::V6(v6) => socket::bind(fd.as_raw_fd(), &SockaddrIn6::from(v6)),
    }
    .map_err(errno_io)?;
    listen_if_stream(&fd, key)?;
    let local = local_bound(fd.as_fd()).unwrap_or(sa);
    Ok(Listener {
        key: key.clone(),
        fd,
        local: local.to_string(),
        socket_file: None,
        port: Some(local.port()),
        specific: (!local.ip().is_unspecified()).then(|| canonical_addr(local)),
        inherited: false,
    })
}

/// The address a listening socket is bound to (not canonicalised: `[::]`
/// stays `[::]`).
pub(crate) fn local_bound(fd: BorrowedFd<'_>) -> Option<SocketAddr> {
    let ss: SockaddrStorage = socket::getsockname(fd.as_raw_fd()).ok()?;
    if let Some(v4) = ss.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())));
    }
    ss.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::new(v6.ip(), v6.port(), 0, v6.scope_id())))
}

pub(super) fn unix_socket(key: &ListenerKey) -> io::Result<OwnedFd> {
    socket::socket(AddressFamily::Unix, sock_type(key.socket), flags(), None).map_err(errno_io)
}

pub(crate) fn listen_if_stream(fd: &OwnedFd, key: &ListenerKey) -> io::Result<()> {
    if key.socket == SocketType::Dgram {
        return Ok(());
    }
    sys::listen(fd.as_fd(), key.backlog)
}

/// The inet source of a datagram (`None` for any other kind).
fn inet_source(ss: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = ss.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    ss.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

/// Reads the datagram at the head of the queue (`peek`: leaves it there)
/// for its source only: `Ok(None)` when it has no inet source.
pub fn datagram_source(
    fd: std::os::fd::BorrowedFd<'_>,
    peek: bool,
) -> nix::Result<Option<SocketAddr>> {
    let mut buf = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC;
    if peek {
        flags |= MsgFlags::MSG_PEEK;
    }
    let msg = socket::recvmsg::<SockaddrStorage>(fd.as_raw_fd(), &mut iov, None, flags)?;
    Ok(msg.address.as_ref().and_then(inet_source))
}

/// Reads and throws away what is queued on a datagram socket (at most a
/// bounded number, so a flood cannot hold the loop); returns how many.
pub fn drain_datagrams(fd: BorrowedFd<'_>) -> usize {
    let mut buf = [0u8; 1];
    let flags = socket::MsgFlags::MSG_DONTWAIT | socket::MsgFlags::MSG_TRUNC;
    (0..10_000)
        .take_while(|_| socket::recv(fd.as_raw_fd(), &mut buf, flags).is_ok())
        .count()
}

/// A bound datagram socket seen through the builtins' trait.
pub struct FdDatagram<'a>(pub BorrowedFd<'a>);

impl crate::builtins::DatagramSocket for FdDatagram<'_> {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = socket::recvfrom::<SockaddrStorage>(self.0.as_raw_fd(), buf)
                .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
            let peer = from.as_ref().and_then(inet_source);
            // Datagrams without an inet source (none on an inet socket) are
            // skipped.
            if let Some(p) = peer {
                return Ok((n, p));
            }
        }
    }

    fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        let addr = SockaddrStorage::from(target);
        socket::sendto(self.0.as_raw_fd(), buf, &addr, MsgFlags::MSG_DONTWAIT)
            .map_err(|e| io::Error::from_raw_os_error(e as i32))
    }
}
