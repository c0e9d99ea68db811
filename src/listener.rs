//! Listening sockets: binding one per configured address with the service's
//! socket options, accepting connections, and removing the unix socket files
//! superd made. The event loop owns the listeners; this module only makes
//! the raw calls (accept4 with the peer address in one syscall).

#![allow(unsafe_code)]

use std::fs;
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrStorage, UnixAddr,
    sockopt,
};

use crate::service::{Address, ListenerKey, SocketType, canonical_addr};

/// A bound (and, for stream types, listening) socket, non-blocking and
/// close-on-exec.
#[derive(Debug)]
pub struct Listener {
    pub key: ListenerKey,
    pub fd: OwnedFd,
    /// The address actually bound, as the `listening` line shows it (the
    /// kernel's port when the config said 0).
    pub local: String,
    /// The socket file superd created, removed when the listener goes away.
    pub unix_path: Option<PathBuf>,
    /// The port actually bound (inet), which differs from the key's when
    /// the configuration said 0.
    pub port: Option<u16>,
    /// The bound address when it is a specific IP (not a wildcard), the
    /// local address of every connection accepted on it.
    pub specific: Option<SocketAddr>,
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

fn errno_io(e: Errno) -> io::Error {
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
                    unix_path: None,
                    port: None,
                    specific: None,
                })
            }
        }
    }

    /// Whether connections are accepted on this socket (stream, seqpacket).
    pub fn is_connection_based(&self) -> bool {
        self.key.socket != SocketType::Dgram
    }

    /// Accepts one connection; `WouldBlock` when the backlog is empty.
    pub fn accept(&self) -> io::Result<Accepted> {
        let mut storage: libc::sockaddr_storage = unsafe_zeroed_storage();
        let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: the listener fd is valid for self's lifetime; storage and
        // len describe a writable sockaddr_storage of the stated size.
        let fd = unsafe {
            libc::accept4(
                self.fd.as_raw_fd(),
                (&mut storage as *mut libc::sockaddr_storage).cast(),
                &mut len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: accept4 succeeded, so fd is a new descriptor owned by no
        // one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let peer = match sockaddr_to_inet(&storage) {
            Some(sa) => Peer::Inet(canonical_addr(sa)),
            None => peer_credentials(fd.as_fd()),
        };
        Ok(Accepted {
            fd,
            peer,
            local: self.specific,
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
    pub fn adjust(&mut self, key: &ListenerKey) -> io::Result<()> {
        if key.socket != SocketType::Dgram && key.backlog != self.key.backlog {
            listen_if_stream(&self.fd, key)?;
        }
        if let Some(path) = &self.unix_path {
            if key.socket_mode != self.key.socket_mode {
                fs::set_permissions(path, fs::Permissions::from_mode(key.socket_mode))?;
            }
            if key.socket_user != self.key.socket_user || key.socket_group != self.key.socket_group
            {
                // An owner no longer configured goes back to the default,
                // superd's own, as a freshly bound socket file has.
                std::os::unix::fs::lchown(
                    path,
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
        }
        self.key = key.clone();
        Ok(())
    }

    /// Removes the socket file superd created (at shutdown, or when the
    /// service goes away).
    pub fn remove_socket_file(&mut self) {
        if let Some(path) = self.unix_path.take() {
            let _ = fs::remove_file(path);
        }
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

fn unsafe_zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    unsafe { mem::zeroed() }
}

fn sockaddr_to_inet(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: ss_family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn bind_inet(key: &ListenerKey, sa: SocketAddr) -> io::Result<Listener> {
    let family = if sa.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(family, sock_type(key.socket), flags(), None).map_err(errno_io)?;
    if key.socket == SocketType::Stream {
        // A restarted superd must rebind while old connections sit in
        // TIME_WAIT, as every inetd does.
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
        unix_path: None,
        port: Some(local.port()),
        specific: (!local.ip().is_unspecified()).then(|| canonical_addr(local)),
    })
}

/// The address a listening socket is bound to (not canonicalised: `[::]`
/// stays `[::]`).
fn local_bound(fd: BorrowedFd<'_>) -> Option<SocketAddr> {
    let ss: SockaddrStorage = socket::getsockname(fd.as_raw_fd()).ok()?;
    if let Some(v4) = ss.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())));
    }
    ss.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::new(v6.ip(), v6.port(), 0, v6.scope_id())))
}

fn unix_socket(key: &ListenerKey) -> io::Result<OwnedFd> {
    socket::socket(AddressFamily::Unix, sock_type(key.socket), flags(), None).map_err(errno_io)
}

fn listen_if_stream(fd: &OwnedFd, key: &ListenerKey) -> io::Result<()> {
    if key.socket == SocketType::Dgram {
        return Ok(());
    }
    // SAFETY: fd is a valid socket owned by the caller.
    let rc = unsafe { libc::listen(fd.as_raw_fd(), key.backlog) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn bind_unix_path(key: &ListenerKey, path: &Path) -> io::Result<Listener> {
    let addr = UnixAddr::new(path).map_err(errno_io)?;
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if socket_is_live(key, &addr) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "a live socket is already listening there",
                ));
            }
            // Stale: nothing accepts on it. Replace it, as inetd does.
            fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket exists at that path (left untouched)",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let fd = unix_socket(key)?;
    socket::bind(fd.as_raw_fd(), &addr).map_err(errno_io)?;
    // From here on the file is ours: the Listener's Drop removes it, also
    // when a later step fails.
    let listener = Listener {
        key: key.clone(),
        fd,
        local: path.display().to_string(),
        unix_path: Some(path.to_path_buf()),
        port: None,
        specific: None,
    };
    fs::set_permissions(path, fs::Permissions::from_mode(key.socket_mode))?;
    if key.socket_user.is_some() || key.socket_group.is_some() {
        std::os::unix::fs::lchown(path, key.socket_user, key.socket_group)?;
    }
    listen_if_stream(&listener.fd, key)?;
    Ok(listener)
}

/// Whether something accepts connections on the unix socket at `addr`.
fn socket_is_live(key: &ListenerKey, addr: &UnixAddr) -> bool {
    let Ok(fd) = unix_socket(key) else {
        return false;
    };
    match socket::connect(fd.as_raw_fd(), addr) {
        Ok(()) => true,
        // A full backlog still means someone is listening.
        Err(Errno::EAGAIN) => true,
        Err(_) => false,
    }
}

/// The raw fd, for mio registration.
pub fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}
