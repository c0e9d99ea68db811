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
#[cfg(test)]
use std::os::unix::fs::PermissionsExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrStorage, UnixAddr,
    sockopt,
};

use crate::service::{Address, ListenerKey, SocketType, canonical_addr};
use crate::sys;

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
                    socket_file: None,
                    port: None,
                    specific: None,
                    inherited: false,
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

    /// Moves this listener's socket file aside, to a hidden name in the
    /// same directory, so that a socket of another type can be bound at
    /// its path by a reload that may still be rolled back
    /// (`restore_socket_file`). Nothing is moved when the path no longer
    /// names this listener's file.
    pub fn stash_socket_file(&mut self) -> io::Result<()> {
        let Some(file) = &mut self.socket_file else {
            return Ok(());
        };
        if file.stashed.is_some() || !file.is_at(&file.path) {
            return Ok(());
        }
        let name = file.path.file_name().unwrap_or_default().to_string_lossy();
        let stash = file
            .path
            .with_file_name(format!(".{name}.superd-{}", std::process::id()));
        nix::fcntl::renameat2(
            None,
            &file.path,
            None,
            &stash,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(errno_io)?;
        file.stashed = Some(stash);
        Ok(())
    }

    /// Puts a stashed socket file back at its path (a rolled-back reload;
    /// the socket bound there meanwhile is gone).
    pub fn restore_socket_file(&mut self) -> io::Result<()> {
        let Some(file) = &mut self.socket_file else {
            return Ok(());
        };
        let Some(stash) = file.stashed.take() else {
            return Ok(());
        };
        if !file.is_at(&stash) {
            return Ok(());
        }
        nix::fcntl::renameat2(
            None,
            &stash,
            None,
            &file.path,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| {
            file.stashed = Some(stash);
            errno_io(e)
        })
    }

    /// Removes the socket file superd created (at shutdown, or when the
    /// service goes away), only if its path still names the inode bound
    /// there: a file someone else put at the path is theirs.
    pub fn remove_socket_file(&mut self) {
        if let Some(file) = self.socket_file.take() {
            let at = file.stashed.as_ref().unwrap_or(&file.path);
            if file.is_at(at) {
                let _ = fs::remove_file(at);
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.remove_socket_file();
    }
}

/// A unix socket file superd bound: the path, and the device and inode
/// bind created there, which say whether the path still names it.
#[derive(Debug)]
pub struct SocketFile {
    pub path: PathBuf,
    dev: u64,
    ino: u64,
    /// Where the file waits while a reload binds another socket at `path`.
    stashed: Option<PathBuf>,
}

impl SocketFile {
    /// Whether `at` names this socket file now (lstat: a symlink there
    /// does not).
    ///
    /// Between this check and the unlink or rename that follows it, only
    /// someone who can write the directory can swap the name; what the
    /// unlink or rename then touches is a name in a directory that person
    /// could already change.
    fn is_at(&self, at: &Path) -> bool {
        fs::symlink_metadata(at)
            .is_ok_and(|m| m.file_type().is_socket() && m.dev() == self.dev && m.ino() == self.ino)
    }

    /// An `O_PATH` descriptor of this socket file, opened without following
    /// a symlink and checked to be the inode bound at start: chmod and
    /// chown through it cannot reach any other file.
    fn open(&self) -> io::Result<OwnedFd> {
        let replaced = || {
            io::Error::other(format!(
                "{} is no longer superd's socket file (replaced or removed): left alone",
                self.path.display()
            ))
        };
        let fd = open_path(&self.path).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT | libc::ELOOP) => replaced(),
            _ => e,
        })?;
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(errno_io)?;
        if st.st_dev != self.dev || st.st_ino != self.ino {
            return Err(replaced());
        }
        Ok(fd)
    }
}

/// `open(path, O_PATH | O_NOFOLLOW)`: a handle on the file at the path,
/// for fstat, chmod and chown; a symlink there is not followed (the handle
/// is the link's own, which the callers' checks refuse).
fn open_path(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map(OwnedFd::from)
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

fn unix_socket(key: &ListenerKey) -> io::Result<OwnedFd> {
    socket::socket(AddressFamily::Unix, sock_type(key.socket), flags(), None).map_err(errno_io)
}

pub(crate) fn listen_if_stream(fd: &OwnedFd, key: &ListenerKey) -> io::Result<()> {
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
        Ok(meta) if meta.file_type().is_socket() => match probe(key, &addr)? {
            Probe::Stale => {
                // Nothing accepts on it. Replace it, as inetd does.
                match fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            Probe::Gone => {}
        },
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket exists at that path (left untouched)",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let fd = bind_closed(key, &addr)?;
    let file = bound_file(fd.as_fd(), path)?;
    let st = nix::sys::stat::fstat(file.as_raw_fd()).map_err(errno_io)?;
    // From here on the file is ours: the Listener's Drop removes it, also
    // when a later step fails.
    let listener = Listener {
        key: key.clone(),
        fd,
        local: path.display().to_string(),
        socket_file: Some(SocketFile {
            path: path.to_path_buf(),
            dev: st.st_dev,
            ino: st.st_ino,
            stashed: None,
        }),
        port: None,
        specific: None,
        inherited: false,
    };
    // Owner first, then mode: until both are set the file stays mode 0,
    // which only root can pass (nothing sends to a datagram socket, nor
    // connects, with the owner or group not yet right).
    if key.socket_user.is_some() || key.socket_group.is_some() {
        sys::chown_fd(file.as_fd(), key.socket_user, key.socket_group)?;
    }
    sys::chmod_fd(file.as_fd(), key.socket_mode)?;
    listen_if_stream(&listener.fd, key)?;
    Ok(listener)
}

/// A new unix socket bound at `addr` with its file created mode 0 (the
/// socket's own mode, set before bind, is the one bind gives the file,
/// less the umask): no one but root can connect or send to it until its
/// mode and owner are set through its inode.
fn bind_closed(key: &ListenerKey, addr: &UnixAddr) -> io::Result<OwnedFd> {
    let fd = unix_socket(key)?;
    nix::sys::stat::fchmod(fd.as_raw_fd(), nix::sys::stat::Mode::empty()).map_err(errno_io)?;
    socket::bind(fd.as_raw_fd(), addr).map_err(errno_io)?;
    Ok(fd)
}

/// An `O_PATH` descriptor of the file `sock` was just bound to at `path`.
/// SIOCUNIXFILE gives the very inode; where the kernel or superd's
/// privileges do not allow it, the path is opened without following a
/// symlink and must be a socket file of superd's user still at mode 0,
/// which only the bind just made can be (no one else can create a file
/// owned by superd's user, nor chmod one).
fn bound_file(sock: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    match sys::unix_socket_file(sock) {
        Ok(fd) => Ok(fd),
        Err(_) => open_fresh(path),
    }
}

/// The fallback of `bound_file`: `path` opened without following a
/// symlink, accepted only as a socket file of superd's user at mode 0.
fn open_fresh(path: &Path) -> io::Result<OwnedFd> {
    let replaced = || {
        io::Error::other(
            "the socket file was replaced right after bind (a directory others can write?)",
        )
    };
    let fd = open_path(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT | libc::ELOOP) => replaced(),
        _ => e,
    })?;
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(errno_io)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK
        || st.st_mode & 0o7777 != 0
        || st.st_uid != nix::unistd::geteuid().as_raw()
    {
        return Err(replaced());
    }
    Ok(fd)
}

/// What is at a unix socket path superd is to bind.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// A socket file nothing is bound to (ECONNREFUSED).
    Stale,
    /// Nothing any more (removed since the lstat).
    Gone,
}

/// Whether the socket file at `addr` is stale. Only ECONNREFUSED to a
/// socket of the key's own type says so (connect on a datagram socket
/// finds the bound peer the same way, without sending anything); a live
/// socket, one of another type (EPROTOTYPE), or a probe that cannot be
/// made (out of file descriptors, no permission) is an error: the file is
/// someone else's, or superd cannot tell, and it is left untouched.
fn probe(key: &ListenerKey, addr: &UnixAddr) -> io::Result<Probe> {
    let fd = unix_socket(key)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot probe the socket there: {e}")))?;
    match socket::connect(fd.as_raw_fd(), addr) {
        Err(Errno::ECONNREFUSED) => Ok(Probe::Stale),
        Err(Errno::ENOENT) => Ok(Probe::Gone),
        // A full backlog still means someone is listening.
        Ok(()) | Err(Errno::EAGAIN) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "a live socket is already listening there",
        )),
        Err(Errno::EPROTOTYPE) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "a socket of another type than {} is bound there (left untouched)",
                key.socket
            ),
        )),
        Err(e) => Err(io::Error::new(
            errno_io(e).kind(),
            format!("cannot tell whether the socket there is stale: {e} (left untouched)"),
        )),
    }
}

/// The raw fd, for mio registration.
pub fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &Path, socket: SocketType) -> ListenerKey {
        ListenerKey {
            addr: Address::UnixPath(path.to_path_buf()),
            socket,
            backlog: 16,
            reuse_port: false,
            v6only: false,
            socket_mode: 0o640,
            socket_user: None,
            socket_group: None,
        }
    }

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("superd-listener-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    /// Nobody but root can connect or send to a socket file between bind
    /// and the moment its mode and owner are set: bind makes it mode 0.
    #[test]
    fn a_socket_file_is_mode_0_until_its_mode_is_set() {
        let d = temp("closed");
        for t in [SocketType::Stream, SocketType::Dgram, SocketType::Seqpacket] {
            let path = d.join(format!("{t}.sock"));
            let k = key(&path, t);
            let fd = bind_closed(&k, &UnixAddr::new(&path).unwrap()).unwrap();
            assert_eq!(mode(&path), 0, "{t}");
            // The fallback accepts what bind just made...
            let file = open_fresh(&path).unwrap();
            let via = bound_file(fd.as_fd(), &path).unwrap();
            let (a, b) = (
                nix::sys::stat::fstat(file.as_raw_fd()).unwrap(),
                nix::sys::stat::fstat(via.as_raw_fd()).unwrap(),
            );
            assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
            // ...and the mode is set through the inode.
            sys::chmod_fd(file.as_fd(), 0o620).unwrap();
            assert_eq!(mode(&path), 0o620);
            drop(fd);
            fs::remove_file(&path).unwrap();
        }
        let path = d.join("full.sock");
        let l = Listener::bind(&key(&path, SocketType::Dgram)).unwrap();
        assert_eq!(mode(&path), 0o640);
        drop(l);
        assert!(!path.exists(), "removed with the listener");
        let _ = fs::remove_dir_all(&d);
    }

    /// What `open_fresh` refuses: anything bind did not just make.
    #[test]
    fn a_file_swapped_in_after_bind_is_not_taken_for_the_socket() {
        let d = temp("fresh");
        let other = d.join("other.sock");
        let _l = std::os::unix::net::UnixListener::bind(&other).unwrap();
        fs::set_permissions(&other, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(open_fresh(&other).is_err(), "a socket with a mode");
        let link = d.join("link.sock");
        std::os::unix::fs::symlink(&other, &link).unwrap();
        assert!(open_fresh(&link).is_err(), "a symlink");
        let plain = d.join("plain");
        fs::write(&plain, "").unwrap();
        fs::set_permissions(&plain, fs::Permissions::from_mode(0o000)).unwrap();
        assert!(open_fresh(&plain).is_err(), "not a socket");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn only_a_refused_connection_of_the_same_type_is_stale() {
        let d = temp("probe");
        let path = d.join("p.sock");
        let addr = UnixAddr::new(&path).unwrap();
        let stream = key(&path, SocketType::Stream);
        let dgram = key(&path, SocketType::Dgram);
        {
            let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
            // Live, of the same type.
            assert!(probe(&stream, &addr).is_err());
            // Live, of another type: EPROTOTYPE, not stale.
            let e = probe(&dgram, &addr).unwrap_err();
            assert!(e.to_string().contains("another type"), "{e}");
        }
        // Closed: nothing bound to the file.
        assert_eq!(probe(&stream, &addr).unwrap(), Probe::Stale);
        assert_eq!(probe(&dgram, &addr).unwrap(), Probe::Stale);
        fs::remove_file(&path).unwrap();
        assert_eq!(probe(&stream, &addr).unwrap(), Probe::Gone);
        {
            let _l = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
            assert!(probe(&dgram, &addr).is_err(), "a live datagram socket");
            assert!(probe(&stream, &addr).is_err(), "of another type");
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_socket_file_is_removed_only_while_its_path_names_it() {
        let d = temp("remove");
        let path = d.join("r.sock");
        let mut l = Listener::bind(&key(&path, SocketType::Stream)).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, "theirs").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        // Its mode is not superd's to change...
        let e = l
            .adjust(&ListenerKey {
                socket_mode: 0o666,
                ..key(&path, SocketType::Stream)
            })
            .unwrap_err();
        assert!(e.to_string().contains("no longer superd's"), "{e}");
        assert_eq!(mode(&path), 0o600);
        // ...nor the file superd's to remove.
        l.remove_socket_file();
        assert_eq!(fs::read_to_string(&path).unwrap(), "theirs");
        let _ = fs::remove_dir_all(&d);
    }
}
