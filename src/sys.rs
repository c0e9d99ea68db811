//! Small raw calls that have no safe wrapper in our dependencies, each one
//! line of unsafe with its reason.

#![allow(unsafe_code)]

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
