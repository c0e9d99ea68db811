//! Process set-up that must happen before anything else opens a file.

use std::fs::OpenOptions;
use std::os::fd::IntoRawFd;

use nix::fcntl::{FcntlArg, fcntl};

/// Opens /dev/null on any of fds 0, 1 and 2 that is closed, so no socket
/// superd opens later can take one of those numbers (a child would get it
/// as stdio, and a log line could reach a client).
pub fn ensure_std_fds() {
    for fd in 0..3 {
        if fcntl(fd, FcntlArg::F_GETFD).is_err() {
            // open() returns the lowest free number: this very fd. The
            // descriptor is deliberately leaked: it is fd 0, 1 or 2 for the
            // life of the process.
            if let Ok(f) = OpenOptions::new().read(true).write(true).open("/dev/null") {
                let raw = f.into_raw_fd();
                debug_assert!(raw <= 2);
            }
        }
    }
}

/// Marks superd non-dumpable (prctl PR_SET_DUMPABLE 0, superd(8), CAVEATS):
/// no process of its user can ptrace it or open its /proc/PID/mem, so a
/// program superd started, running as the same user, cannot write its
/// memory, nor that of a child not yet past exec (which shares it). No
/// core dump of superd either: it may hold what its configuration holds.
pub fn not_dumpable() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        log::warn!("cannot mark superd non-dumpable error={e}");
    }
}
