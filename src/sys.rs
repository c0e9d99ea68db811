//! Small raw calls that have no safe wrapper in our dependencies, each one
//! line of unsafe with its reason.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Returns freed heap memory to the kernel (glibc keeps the peak of a large
/// configuration load otherwise).
pub fn trim_heap() {
    // SAFETY: malloc_trim(3) only releases free memory of the allocator;
    // it touches nothing the program owns.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The local time zone's offset from UTC at `unix_secs`, in seconds
/// (daytime is local time, as inetd prints it; 0 where TZ is UTC or the
/// zone cannot be read).
pub fn utc_offset(unix_secs: i64) -> i64 {
    let t: libc::time_t = unix_secs;
    // SAFETY: `tm` is plain data, all-zero is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r(3) reads `t` and fills our `tm`; it is the
    // reentrant form (superd has one thread anyway).
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok { tm.tm_gmtoff } else { 0 }
}

/// Puts `signal` back to its default disposition, with no flags: an
/// ignored SIGCHLD inherited from whoever started superd would make the
/// kernel reap every child itself (no exit status, no `exit` line, a
/// `max_connections` slot never freed).
pub fn default_disposition(signal: nix::sys::signal::Signal) -> nix::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, sigaction};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL installs no handler, so no code of ours can run in
    // signal context; the previous action is not needed.
    unsafe { sigaction(signal, &dfl) }.map(drop)
}

/// An `O_PATH` descriptor of the file a bound unix socket `sock` made
/// (`SIOCUNIXFILE`, unix(7)): the very inode bind created, whatever the
/// path names by now. Needs `CAP_NET_ADMIN` and a kernel that has the
/// ioctl; the caller falls back to opening the path.
pub fn unix_socket_file(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SIOCPROTOPRIVATE + 0, from <linux/un.h> (not in the libc crate).
    const SIOCUNIXFILE: libc::c_ulong = 0x89E0;
    // SAFETY: the ioctl takes no argument and returns a new descriptor or
    // -1; `sock` is a valid socket for the call.
    let fd = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCUNIXFILE as _) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the ioctl succeeded: `fd` is a new descriptor owned by no one
    // else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// chmod of the inode an `O_PATH` descriptor holds, never a path lookup:
/// fchmodat2(2) with `AT_EMPTY_PATH` (Linux 6.6), or, on an older kernel,
/// chmod of `/proc/self/fd/N`, which names that same inode (what the C
/// library's `fchmodat(AT_SYMLINK_NOFOLLOW)` does).
pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: the path is a NUL-terminated empty string; fchmodat2 reads
    // it and the descriptor, nothing else.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            fd.as_raw_fd(),
            c"".as_ptr(),
            mode as libc::mode_t,
            libc::AT_EMPTY_PATH,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    // ENOSYS, or EINVAL from a kernel whose fchmodat2 has no AT_EMPTY_PATH;
    // EPERM from a seccomp filter that does not know the call.
    if !matches!(
        e.raw_os_error(),
        Some(libc::ENOSYS | libc::EINVAL | libc::EPERM)
    ) {
        return Err(e);
    }
    let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
    std::fs::set_permissions(proc, std::fs::Permissions::from_mode(mode))
}

/// chown of the inode an `O_PATH` descriptor holds (fchownat(2) with
/// `AT_EMPTY_PATH`); `None` leaves that id as it is.
pub fn chown_fd(fd: BorrowedFd<'_>, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    // SAFETY: the path is a NUL-terminated empty string; fchownat reads it
    // and the descriptor, nothing else. u32::MAX is the kernel's "no
    // change" (-1).
    let rc = unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            uid.unwrap_or(u32::MAX),
            gid.unwrap_or(u32::MAX),
            libc::AT_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Where to read an extended attribute from.
pub enum XattrOf<'a> {
    Fd(BorrowedFd<'a>),
    /// A path; symbolic links are followed, as stat(2) does.
    Path(&'a Path),
}

/// The value of the extended attribute `name`, or `None` when the file has
/// none or its file system has no extended attributes.
pub fn xattr(of: XattrOf<'_>, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    let cpath = match &of {
        XattrOf::Path(p) => Some(
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        ),
        XattrOf::Fd(_) => None,
    };
    let get = |buf: &mut [u8]| -> isize {
        let (ptr, len) = if buf.is_empty() {
            (std::ptr::null_mut(), 0)
        } else {
            (buf.as_mut_ptr().cast(), buf.len())
        };
        match (&of, &cpath) {
            // SAFETY: `ptr` and `len` describe writable memory of ours (or
            // are null and 0, asking for the size); `name` is NUL-terminated.
            (XattrOf::Fd(fd), _) => unsafe {
                libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), ptr, len)
            },
            // SAFETY: as above; `c` is a NUL-terminated path.
            (XattrOf::Path(_), Some(c)) => unsafe {
                libc::getxattr(c.as_ptr(), name.as_ptr(), ptr, len)
            },
            (XattrOf::Path(_), None) => -1,
        }
    };
    // The value may grow between the size query and the read: ask again.
    for _ in 0..8 {
        let n = get(&mut []);
        if n >= 0 {
            let mut buf = vec![0u8; n as usize];
            let m = get(&mut buf);
            if m >= 0 {
                buf.truncate(m as usize);
                return Ok(Some(buf));
            }
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA | libc::EOPNOTSUPP) => return Ok(None),
            Some(libc::ERANGE) => continue,
            _ => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ERANGE))
}

/// How a child reaped through its pidfd ended: `Exited(code)` or
/// `Killed(signal)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PidfdExit {
    Exited(i32),
    Killed(i32),
}

/// Reaps the child behind `pidfd` if it has ended (`waitid(P_PIDFD, …,
/// WEXITED | WNOHANG)`): that child only, whatever the number of
/// others. `Ok(None)` while it runs.
pub fn pidfd_reap(pidfd: BorrowedFd<'_>) -> io::Result<Option<PidfdExit>> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waitid(2) writes only `info`, which is ours.
        let rc = unsafe {
            libc::waitid(
                crate::spawn::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG,
            )
        };
        if rc == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    // SAFETY: waitid filled `info` for a SIGCHLD-style report (or left it
    // zero: nothing ended yet); si_pid and si_status are valid there.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(match info.si_code {
        libc::CLD_EXITED => PidfdExit::Exited(status),
        _ => PidfdExit::Killed(status),
    }))
}

/// pidfd_send_signal(2): `sig` to the process behind `pidfd`, never to
/// another that took its pid.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: the call takes the fd, the signal and two null/zero
    // arguments; it reads no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
