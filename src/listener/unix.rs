//! Unix socket files: binding at a path (probing a stale file first),
//! the file's mode and owner set through its inode, and moving, putting
//! back and removing the file only while its path still names it.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{self, UnixAddr};

use super::{Listener, errno_io, listen_if_stream, unix_socket};
use crate::service::ListenerKey;
use crate::sys;

impl Listener {
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
    pub(super) fn open(&self) -> io::Result<OwnedFd> {
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

pub(super) fn bind_unix_path(key: &ListenerKey, path: &Path) -> io::Result<Listener> {
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

#[cfg(test)]
mod tests;
