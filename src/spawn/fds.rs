//! The descriptors a spawn prepares in the parent: moved above stdio (or
//! any floor), the shared /dev/null, and how the child will mark the rest
//! close-on-exec.

#![allow(unsafe_code)]

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use nix::errno::Errno;

/// `fd` itself when it is at least `min`, else a copy there (close-on-exec).
pub(super) fn above(fd: OwnedFd, min: RawFd) -> Result<OwnedFd, Errno> {
    if fd.as_raw_fd() >= min {
        return Ok(fd);
    }
    // SAFETY: fcntl(2) F_DUPFD_CLOEXEC on a descriptor we own.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if new == -1 {
        return Err(Errno::last());
    }
    // SAFETY: a new descriptor, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

pub(super) fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, Errno> {
    if fd.as_raw_fd() >= 3 {
        Ok(fd)
    } else {
        dup_above_stdio(fd.as_raw_fd())
    }
}

/// A close-on-exec duplicate of `fd` numbered >= 3.
pub(super) fn dup_above_stdio(fd: RawFd) -> Result<OwnedFd, Errno> {
    // SAFETY: fcntl(2) F_DUPFD_CLOEXEC on a valid fd.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new == -1 {
        return Err(Errno::last());
    }
    // SAFETY: `new` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// One process-wide /dev/null (close-on-exec, >= 3) for `stderr: null`,
/// opened on first use rather than per spawn.
pub(super) fn dev_null() -> Result<RawFd, Errno> {
    static DEV_NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = DEV_NULL.get() {
        return Ok(fd.as_raw_fd());
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let fd = above_stdio(OwnedFd::from(file))?;
    // A racing thread may have set it first; either fd is fine.
    let _ = DEV_NULL.set(fd);
    DEV_NULL.get().map(|fd| fd.as_raw_fd()).ok_or(Errno::EIO)
}

/// `None` when `close_range(CLOSE_RANGE_CLOEXEC)` works (Linux >= 5.11,
/// probed once); otherwise the bound for the fcntl loop: superd's own soft
/// `nofile` limit, above which it can hold no fd.
pub(super) fn close_fallback_limit() -> Option<RawFd> {
    const UNKNOWN: u8 = 0;
    const SUPPORTED: u8 = 1;
    const MISSING: u8 = 2;
    static CLOSE_RANGE: AtomicU8 = AtomicU8::new(UNKNOWN);
    let mut state = CLOSE_RANGE.load(Ordering::Relaxed);
    if state == UNKNOWN {
        // SAFETY: close_range(2) over the empty range [~0U, ~0U] (no such
        // fd): only tells whether the kernel knows the syscall and flag.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                u32::MAX,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        state = if ret == 0 { SUPPORTED } else { MISSING };
        CLOSE_RANGE.store(state, Ordering::Relaxed);
    }
    if state == SUPPORTED {
        return None;
    }
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    Some(RawFd::try_from(soft).unwrap_or(RawFd::MAX))
}
