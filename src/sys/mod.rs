//! Small raw calls that have no safe wrapper in our dependencies, each one
//! line of unsafe with its reason.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

mod cpu;
pub use cpu::CpuMask;

/// Whether the peer of a connected stream socket has shut down its side
/// (POLLRDHUP: its FIN is in), or the connection is gone (POLLHUP,
/// POLLERR); never waits. A peek cannot tell: it returns the bytes queued
/// before the FIN as if more could follow. (nix's `PollFd` drops revents
/// it has no name for, POLLRDHUP among them.)
pub fn peer_shut_down(sock: BorrowedFd<'_>) -> bool {
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: poll(2) on one pollfd of ours, with a zero timeout; it only
    // writes `revents`.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n == 1 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

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

/// Ignores every realtime signal (SIGRTMIN..=SIGRTMAX), whose default
/// action ends the process; children get the default back (spawn resets
/// every signal whose disposition is not the default).
pub fn ignore_realtime_signals() {
    for sig in libc::SIGRTMIN()..=libc::SIGRTMAX() {
        // SAFETY: SIG_IGN installs no handler; a zeroed sigaction with an
        // empty mask and no flags is a valid argument.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = libc::SIG_IGN;
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
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

/// Takes ownership of a descriptor superd inherited from its parent (the
/// LISTEN_FDS protocol, superd.8 SOCKET ACTIVATION); `None` when it is not
/// open.
pub fn inherited_fd(fd: std::os::fd::RawFd) -> Option<OwnedFd> {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).ok()?;
    // SAFETY: the fd is open (above) and was handed to this process by its
    // parent; superd opened nothing on it, and takes each number once, at
    // start, before any other owner could exist.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes `name` from superd's own environment.
pub fn remove_env(name: &str) {
    // SAFETY: superd runs one thread (the loop); this is called at start,
    // before anything reads the environment concurrently.
    unsafe { std::env::remove_var(name) }
}

/// The number of connections waiting in the accept queue of the listening
/// TCP socket `sock`: on a socket in LISTEN state, Linux reports the
/// queue's current length in `tcp_info.tcpi_unacked` (and its limit in
/// `tcpi_sacked`), see tcp_get_info() in net/ipv4/tcp.c. `None` if the
/// kernel does not answer.
pub fn tcp_listen_queue(sock: BorrowedFd<'_>) -> Option<u32> {
    // SAFETY: tcp_info is plain data, all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes into `info`, which
    // is that large, and sets `len` to what it wrote.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    // TCP_LISTEN in the kernel's enum of TCP states (include/net/tcp_states.h).
    const TCP_LISTEN: u8 = 10;
    // tcpi_unacked is at offset 24: any kernel's tcp_info reaches it.
    (rc == 0 && len as usize >= 28 && info.tcpi_state == TCP_LISTEN).then_some(info.tcpi_unacked)
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
                P_PIDFD,
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

/// pidfd_open(2): a pidfd for `pid`, a child of superd's that it has not
/// reaped yet (a child carried across an upgrade, superd.8 UPGRADING).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and no flags and returns a new fd
    // or -1; it reads no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the call succeeded: `fd` is a new descriptor nothing else
    // owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
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

/// accept4(2) with `SOCK_NONBLOCK | SOCK_CLOEXEC`: the new connection and,
/// when its peer is inet, the peer's address (read in the same syscall).
pub fn accept4(listener: BorrowedFd<'_>) -> io::Result<(OwnedFd, Option<std::net::SocketAddr>)> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the listener fd is valid for the borrow; storage and len
    // describe a writable sockaddr_storage of the stated size.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
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
    Ok((fd, sockaddr_to_inet(&storage)))
}

/// The inet address in `ss`, if it holds one.
fn sockaddr_to_inet(ss: &libc::sockaddr_storage) -> Option<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
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
            // SAFETY: ss_family says the storage holds a sockaddr_in6, and
            // sockaddr_storage is large and aligned enough for it.
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

/// listen(2) with `backlog` on a bound socket.
pub fn listen(sock: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: listen(2) takes a socket fd valid for the borrow and an
    // integer; it reads no memory of ours.
    let rc = unsafe { libc::listen(sock.as_raw_fd(), backlog) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts `path` under a "clone" child of superd's: one that ends with
/// no signal to its parent (exit_signal 0), so that the loop's
/// `waitpid(-1)` sweep, which does not pass `__WALL`, never reaps it; only
/// `waitpid(pid, __WALL)` does. The clone child does not exec (an exec
/// gives a process the default exit signal, SIGCHLD, again): it forks
/// `path`, waits for it and ends as it ended (an exit status, or the same
/// signal); `path` dies with it (PR_SET_PDEATHSIG). Used for the new
/// binary's `--check` of an upgrade (superd.8, UPGRADING). stdin and
/// stdout are `null`, stderr is `err`; the signal mask is emptied. `argv`
/// and `envp` are null-terminated arrays of pointers to C strings that
/// outlive the call. Returns the clone child's pid and, where the kernel
/// has one, its pidfd (`clone3(CLONE_PIDFD)`, Linux 5.3; else `clone` and
/// `pidfd_open`).
pub fn spawn_clone_child(
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    null: BorrowedFd<'_>,
    err: BorrowedFd<'_>,
) -> io::Result<(i32, Option<OwnedFd>)> {
    assert!(argv.last().is_some_and(|p| p.is_null()));
    assert!(envp.last().is_some_and(|p| p.is_null()));
    let (null, err) = (null.as_raw_fd(), err.as_raw_fd());
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: writes only `empty`, which is ours.
    unsafe { libc::sigemptyset(&mut empty) };
    let mut pidfd: libc::c_int = -1;
    let args = CloneArgs {
        flags: libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        // No signal at its end: see above.
        exit_signal: 0,
        ..CloneArgs::default()
    };
    // SAFETY: without CLONE_VM the child runs on a copy of our memory, as
    // after fork(2); the kernel writes only `pidfd`, which is ours.
    let mut pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let mut with_pidfd = true;
    if pid < 0 {
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
            return Err(e);
        }
        // No clone3 (an older kernel, or a seccomp filter): clone with no
        // exit signal and no other flag, whose other arguments are all
        // zero in every architecture's order.
        with_pidfd = false;
        // SAFETY: as fork(2), with no signal to the parent at the end.
        pid = unsafe { libc::syscall(libc::SYS_clone, 0 as libc::c_ulong, 0, 0, 0, 0) };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    if pid == 0 {
        // The clone child runs on a copy of the parent's memory; execve
        // returns only on failure, and every path ends in _exit or a signal.
        // SAFETY: only raw syscalls, on descriptors and C-string arrays made before the clone.
        unsafe {
            let me = libc::getpid();
            // As fork(2): the grandchild reports to this process with SIGCHLD.
            let g = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
            if g == 0 {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != me {
                    libc::_exit(127);
                }
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                libc::dup2(null, 0);
                libc::dup2(null, 1);
                libc::dup2(err, 2);
                libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
                libc::_exit(127);
            }
            let mut status: libc::c_int = 0;
            if g < 0 || libc::waitpid(g as libc::pid_t, &mut status, 0) != g as libc::pid_t {
                libc::_exit(127);
            }
            if libc::WIFSIGNALED(status) {
                let sig = libc::WTERMSIG(status);
                libc::signal(sig, libc::SIG_DFL);
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                libc::kill(me, sig);
                libc::_exit(128 + sig);
            }
            libc::_exit(libc::WEXITSTATUS(status));
        }
    }
    let pid = pid as i32;
    let fd = if with_pidfd {
        // SAFETY: clone3 succeeded with CLONE_PIDFD: `pidfd` is a new
        // descriptor nothing else owns.
        Some(unsafe { OwnedFd::from_raw_fd(pidfd) })
    } else {
        pidfd_open(pid).ok()
    };
    Ok((pid, fd))
}

/// The kernel's `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2,
/// 88 bytes; a kernel that knows only the first 64 takes it as long as
/// the rest is zero), for every `clone3(2)` superd makes.
#[repr(C)]
#[derive(Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// `P_PIDFD` for waitid(2) (Linux 5.4).
pub const P_PIDFD: libc::idtype_t = 3;

/// Whether children are started with a pidfd and reaped through it:
/// `clone3` works and waitid(2) knows `P_PIDFD` (Linux >= 5.4); probed
/// once. Otherwise children are reaped by `waitpid(-1)` on SIGCHLD.
pub fn pidfd_works() -> bool {
    static PIDFD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PIDFD.get_or_init(|| {
        if !clone3_works() {
            return false;
        }
        // SAFETY: siginfo_t is plain data; all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // waitid(2) on a pidfd that is no open fd (the largest number; a
        // negative one is EINVAL) waits for nothing: a kernel that knows
        // P_PIDFD answers EBADF, an older one EINVAL.
        // SAFETY: that call waits for nothing; `info` is ours to write.
        let ret = unsafe {
            libc::waitid(
                P_PIDFD,
                i32::MAX as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG,
            )
        };
        ret == -1 && nix::errno::Errno::last() == nix::errno::Errno::EBADF
    })
}

/// Whether `clone3(2)` can be used (Linux >= 5.3, and not refused with
/// `ENOSYS` by a seccomp filter, as some container runtimes do); probed
/// once. Otherwise children are started with `clone(2)`, and never in a
/// cgroup of their own.
pub fn clone3_works() -> bool {
    static CLONE3: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CLONE3.get_or_init(|| {
        // SAFETY: clone3 with no arguments (NULL, size 0) starts nothing:
        // a kernel that has it answers EINVAL (size below the first
        // version of the struct).
        let ret = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<CloneArgs>(), 0usize) };
        ret == -1 && nix::errno::Errno::last() == nix::errno::Errno::EINVAL
    })
}
