//! The namespaces of a fenced service (superd.yaml(5), "Fences"): made once
//! per service when the configuration loads, held by superd as namespace
//! fds, joined by each child with setns(2) (see the child sequence in
//! [`crate::spawn`]). Nothing here runs per connection.
//!
//! A short-lived helper process, forked from superd, unshares a mount and
//! a network namespace, sets up the mounts and loopback there, and waits
//! while superd opens `/proc/<helper>/ns/{mnt,net}`; then it exits and
//! superd reaps it at once, by its pid, before it returns to the loop (so
//! the loop's child table never sees it). The namespaces live on as long
//! as superd holds the fds: until the service goes, or its fences change.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

use crate::service::Fences;

/// A service's namespaces (the type the plan carries; made here).
pub use crate::plan::Namespaces;

impl Namespaces {
    /// Makes the namespaces `fences` ask for (`None`: it asks for none);
    /// the private /tmp goes inside `chroot` when the service has one.
    /// Blocks for the few milliseconds the helper takes. The error says
    /// which step failed and why.
    pub fn new(fences: &Fences, chroot: Option<&Path>) -> Result<Option<Namespaces>, SetupError> {
        if !fences.needs_namespaces() {
            return Ok(None);
        }
        let ops = plan(fences, chroot);
        build(&ops, fences.private_network, fences.needs_mount_namespace()).map(Some)
    }
}

/// Why the namespaces of a service could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupError {
    /// What was being done, e.g. `read_only_paths /usr: make read-only`.
    pub what: String,
    pub errno: Errno,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.errno.desc())
    }
}

// mount_setattr(2) attributes and `struct mount_attr` (linux/mount.h).
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
// linux/sockios.h
const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
const SIOCSIFFLAGS: libc::c_ulong = 0x8914;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// One step of the helper, on data built before the fork.
enum Op {
    Unshare(libc::c_int),
    /// Every mount private: nothing done here reaches the host, nothing
    /// the host mounts later shows through a read-only view.
    Private,
    /// A bind mount of `from` (with what is mounted under it) on `to`.
    Bind {
        from: CString,
        to: CString,
    },
    /// mount_setattr(2) on `path` and everything mounted under it.
    SetAttr {
        path: CString,
        set: u64,
        clear: u64,
    },
    Tmpfs {
        target: CString,
        flags: libc::c_ulong,
        data: CString,
    },
    LoopbackUp,
}

impl Op {
    fn describe(&self) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Op::Unshare(_) => "unshare the namespaces".into(),
            Op::Private => "make the mounts private".into(),
            Op::Bind { from, to } => format!("bind {} on {}", s(from), s(to)),
            Op::SetAttr { path, set, .. } if set & MOUNT_ATTR_RDONLY != 0 => {
                format!("make {} read-only", s(path))
            }
            Op::SetAttr { path, .. } => format!("make {} writable", s(path)),
            Op::Tmpfs { target, .. } => format!("mount a tmpfs on {}", s(target)),
            Op::LoopbackUp => "bring up loopback".into(),
        }
    }
}

fn cpath(p: &Path) -> CString {
    crate::service::cstring(p.as_os_str().as_bytes())
}

/// The steps, in order: read-only paths, writable ones under them,
/// inaccessible ones, then the private /tmp (a fresh, writable tmpfs even
/// under a read-only `/`), then loopback.
fn plan(f: &Fences, chroot: Option<&Path>) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut flags = 0;
    if f.needs_mount_namespace() {
        flags |= libc::CLONE_NEWNS;
    }
    if f.private_network {
        flags |= libc::CLONE_NEWNET;
    }
    ops.push(Op::Unshare(flags));
    if f.needs_mount_namespace() {
        ops.push(Op::Private);
    }
    for p in &f.read_only_paths {
        // `/` is the namespace's root mount already; a mount stacked on it
        // would not be seen from the root, so `/` is changed in place.
        if p != Path::new("/") {
            ops.push(Op::Bind {
                from: cpath(p),
                to: cpath(p),
            });
        }
        ops.push(Op::SetAttr {
            path: cpath(p),
            set: MOUNT_ATTR_RDONLY,
            clear: 0,
        });
    }
    for p in &f.writable_paths {
        ops.push(Op::Bind {
            from: cpath(p),
            to: cpath(p),
        });
        ops.push(Op::SetAttr {
            path: cpath(p),
            set: 0,
            clear: MOUNT_ATTR_RDONLY,
        });
    }
    let sealed = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    for p in &f.inaccessible_paths {
        if p.is_dir() {
            // An empty, read-only directory of mode 000.
            ops.push(Op::Tmpfs {
                target: cpath(p),
                flags: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data: CString::from(c"mode=000,size=4k,nr_inodes=1"),
            });
        } else {
            // A file: /dev/null on a nodev mount, which no one can open.
            ops.push(Op::Bind {
                from: CString::from(c"/dev/null"),
                to: cpath(p),
            });
            ops.push(Op::SetAttr {
                path: cpath(p),
                set: sealed,
                clear: 0,
            });
        }
    }
    if f.private_tmp {
        for dir in ["tmp", "var/tmp"] {
            ops.push(Op::Tmpfs {
                target: cpath(&chroot.unwrap_or(Path::new("/")).join(dir)),
                flags: libc::MS_NOSUID | libc::MS_NODEV,
                data: CString::from(c"mode=1777"),
            });
        }
    }
    if f.private_network {
        ops.push(Op::LoopbackUp);
    }
    ops
}

/// What the helper writes: the index of the failed op and the errno, or
/// `DONE` and 0.
const REPORT_LEN: usize = 8;
const DONE: u32 = u32::MAX;

fn build(ops: &[Op], net: bool, mnt: bool) -> Result<Namespaces, SetupError> {
    let fail = |what: &str, errno: Errno| SetupError {
        what: what.to_owned(),
        errno,
    };
    let (report_r, report_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail("pipe", e))?;
    let (go_r, go_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail("pipe", e))?;

    // SAFETY: fork(2). superd is single-threaded; the helper still only
    // makes system calls on data built above (no allocation, no lock) and
    // ends in _exit, never returning into superd's code.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(fail("fork the namespace helper", Errno::last()));
    }
    if pid == 0 {
        // SAFETY: close(2) on the helper's copies of superd's ends, so
        // that superd's close of `go_w` is the helper's EOF.
        unsafe {
            libc::close(go_w.as_raw_fd());
            libc::close(report_r.as_raw_fd());
        }
        helper(ops, report_w.as_raw_fd(), go_r.as_raw_fd());
    }
    drop(report_w);
    drop(go_r);

    let mut report = [0u8; REPORT_LEN];
    let got = read_full(&report_r, &mut report);
    let result = match got {
        Ok(REPORT_LEN) => {
            let index = u32::from_ne_bytes(report[0..4].try_into().unwrap_or_default());
            let errno = i32::from_ne_bytes(report[4..8].try_into().unwrap_or_default());
            if index == DONE {
                let open = |kind: &str| -> Result<Option<OwnedFd>, SetupError> {
                    File::open(format!("/proc/{pid}/ns/{kind}"))
                        .map(|f| Some(OwnedFd::from(f)))
                        .map_err(|e| {
                            fail(
                                &format!("open the {kind} namespace"),
                                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                            )
                        })
                };
                (|| {
                    Ok(Namespaces::of(
                        if net { open("net")? } else { None },
                        if mnt { open("mnt")? } else { None },
                    ))
                })()
            } else {
                let what = ops
                    .get(index as usize)
                    .map_or_else(|| "set up".into(), Op::describe);
                Err(fail(&what, Errno::from_raw(errno)))
            }
        }
        Ok(_) => Err(fail("the namespace helper died", Errno::EPIPE)),
        Err(e) => Err(fail("read the helper's report", e)),
    };
    // EOF on its pipe lets the helper exit; it is reaped here, by pid,
    // before the loop can see it.
    drop(go_w);
    loop {
        // SAFETY: waitpid(2) on our own child, no status wanted.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        if r != -1 || Errno::last() != Errno::EINTR {
            break;
        }
    }
    result
}

fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut n = 0;
    while n < buf.len() {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The helper: runs `ops`, reports, waits for EOF on `go`, exits.
fn helper(ops: &[Op], report: RawFd, go: RawFd) -> ! {
    let mut out = [0u8; REPORT_LEN];
    let (index, errno) = match run_ops(ops) {
        Ok(()) => (DONE, 0),
        Err((i, e)) => (i as u32, e),
    };
    out[0..4].copy_from_slice(&index.to_ne_bytes());
    out[4..8].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: write(2) and read(2) on our own pipe ends from local
    // buffers; _exit(2) never returns.
    unsafe {
        libc::write(report, out.as_ptr().cast(), out.len());
        let mut b = [0u8; 1];
        while libc::read(go, b.as_mut_ptr().cast(), 1) == -1
            && *libc::__errno_location() == libc::EINTR
        {}
        libc::_exit(0)
    }
}

fn errno() -> libc::c_int {
    // SAFETY: this thread's errno, in the helper's own memory.
    unsafe { *libc::__errno_location() }
}

fn run_ops(ops: &[Op]) -> Result<(), (usize, libc::c_int)> {
    for (i, op) in ops.iter().enumerate() {
        let ok = match op {
            // SAFETY: unshare(2) takes no pointer.
            Op::Unshare(flags) => unsafe { libc::unshare(*flags) == 0 },
            // SAFETY: mount(2) with a static C string and null pointers
            // where mount(2) allows them (propagation change).
            Op::Private => unsafe {
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
            },
            // SAFETY: mount(2) on C strings built before the fork, alive
            // for the whole helper.
            Op::Bind { from, to } => unsafe {
                libc::mount(
                    from.as_ptr(),
                    to.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) == 0
            },
            Op::SetAttr { path, set, clear } => {
                let attr = MountAttr {
                    attr_set: *set,
                    attr_clr: *clear,
                    propagation: 0,
                    userns_fd: 0,
                };
                // SAFETY: mount_setattr(2) on a C string built before the
                // fork and `attr`, a live local of the size passed.
                unsafe {
                    libc::syscall(
                        libc::SYS_mount_setattr,
                        libc::AT_FDCWD,
                        path.as_ptr(),
                        libc::AT_RECURSIVE as libc::c_uint,
                        &attr as *const MountAttr,
                        std::mem::size_of::<MountAttr>(),
                    ) == 0
                }
            }
            Op::Tmpfs {
                target,
                flags,
                data,
            } =>
            // SAFETY: mount(2) on static C strings and C strings built
            // before the fork.
            unsafe {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    target.as_ptr(),
                    c"tmpfs".as_ptr(),
                    *flags,
                    data.as_ptr().cast(),
                ) == 0
            },
            Op::LoopbackUp => loopback_up(),
        };
        if !ok {
            return Err((i, errno()));
        }
    }
    Ok(())
}

/// `ip link set lo up`, in the new network namespace.
fn loopback_up() -> bool {
    // struct ifreq: the name, then the flags (a short) at offset 16.
    let mut ifr = [0u8; 40];
    ifr[..2].copy_from_slice(b"lo");
    // SAFETY: a socket of our own and SIOC[GS]IFFLAGS on a local buffer
    // the size of struct ifreq; the socket is closed before returning.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s == -1 {
            return false;
        }
        let mut ok = libc::ioctl(s, SIOCGIFFLAGS, ifr.as_mut_ptr()) == 0;
        if ok {
            let flags = i16::from_ne_bytes([ifr[16], ifr[17]]) | libc::IFF_UP as i16;
            ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
            ok = libc::ioctl(s, SIOCSIFFLAGS, ifr.as_mut_ptr()) == 0;
        }
        let e = errno();
        libc::close(s);
        *libc::__errno_location() = e;
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn nothing_asked_makes_nothing() {
        let f = Fences {
            no_new_privs: true,
            ..Fences::default()
        };
        assert!(Namespaces::new(&f, None).unwrap().is_none());
    }

    #[test]
    fn the_plan_puts_read_only_first_and_private_tmp_last() {
        let f = Fences {
            private_tmp: true,
            private_network: true,
            read_only_paths: vec![PathBuf::from("/"), PathBuf::from("/usr")],
            writable_paths: vec![PathBuf::from("/var")],
            ..Fences::default()
        };
        let names: Vec<String> = plan(&f, None).iter().map(Op::describe).collect();
        assert_eq!(
            names,
            [
                "unshare the namespaces",
                "make the mounts private",
                "make / read-only",
                "bind /usr on /usr",
                "make /usr read-only",
                "bind /var on /var",
                "make /var writable",
                "mount a tmpfs on /tmp",
                "mount a tmpfs on /var/tmp",
                "bring up loopback",
            ]
        );
        // Under chroot, the private /tmp is the chroot's.
        let f = Fences {
            private_tmp: true,
            ..Fences::default()
        };
        let names: Vec<String> = plan(&f, Some(Path::new("/srv/jail")))
            .iter()
            .map(Op::describe)
            .collect();
        assert_eq!(
            names[2..],
            [
                "mount a tmpfs on /srv/jail/tmp",
                "mount a tmpfs on /srv/jail/var/tmp"
            ]
        );
    }

    #[test]
    fn namespaces_are_made_and_the_helper_is_reaped() {
        if !root() {
            eprintln!("skipped: needs root (unshare, mount)");
            return;
        }
        let f = Fences {
            private_network: true,
            private_tmp: true,
            ..Fences::default()
        };
        let ns = Namespaces::new(&f, None).unwrap().unwrap();
        let ino = |fd: RawFd| nix::sys::stat::fstat(fd).unwrap().st_ino;
        let own_net = nix::sys::stat::stat("/proc/self/ns/net").unwrap().st_ino;
        let own_mnt = nix::sys::stat::stat("/proc/self/ns/mnt").unwrap().st_ino;
        assert_ne!(ino(ns.net_fd().unwrap()), own_net);
        assert_ne!(ino(ns.mnt_fd().unwrap()), own_mnt);
    }

    #[test]
    fn a_failing_step_is_named() {
        if !root() {
            eprintln!("skipped: needs root (unshare, mount)");
            return;
        }
        let f = Fences {
            inaccessible_paths: vec![PathBuf::from("/nonexistent-superd-test")],
            ..Fences::default()
        };
        let e = Namespaces::new(&f, None).unwrap_err();
        assert_eq!(e.errno, Errno::ENOENT, "{e}");
        assert!(e.what.contains("/nonexistent-superd-test"), "{e}");
    }
}
