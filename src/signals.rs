//! Signals turned into loop events: the signals superd acts on are blocked
//! and read from a signalfd that the event loop polls, so no handler ever
//! runs and nothing async-signal-unsafe can happen on their account.
//! The child undoes the blocked mask before exec (see `spawn`).
//!
//! No signal ends superd silently (superd.8, SIGNALS): the ones it has no
//! use for are read from the same signalfd and logged, or, for the
//! realtime signals, ignored; `spawn` resets all of them for children.
//! SIGCHLD may be left out of the signalfd (still blocked) where the loop
//! hears of its children's exits otherwise (see `watch_child_exits`).

use std::os::fd::{AsRawFd, RawFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// What a signal asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Reload,
    Shutdown(Signal),
    Status,
    Child,
    /// SIGUSR2: upgrade in place.
    Upgrade,
    /// A signal superd does not act on: logged and otherwise ignored.
    Ignored(Signal),
}

/// The blocked signals and the signalfd that reports them.
pub struct Signals {
    fd: SignalFd,
    /// Whether SIGCHLD is among the signals the signalfd reports.
    child_exits: bool,
}

fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
        Signal::SIGCHLD,
        Signal::SIGUSR2,
    ] {
        set.add(s);
    }
    for s in LOGGED {
        set.add(*s);
    }
    set
}

/// Signals whose default action would end (or stop) superd and that it
/// has no use for: read and logged. The faults (SIGSEGV, SIGBUS, SIGFPE,
/// SIGILL, SIGTRAP, SIGSYS, SIGABRT) keep their default: blocking those
/// would hide a crash. SIGPIPE stays ignored (a write gets EPIPE).
const LOGGED: &[Signal] = &[
    Signal::SIGALRM,
    Signal::SIGQUIT,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    Signal::SIGIO,
    Signal::SIGPWR,
    Signal::SIGSTKFLT,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGTSTP,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
];

impl Signals {
    /// Blocks the handled signals and opens the signalfd. Call before any
    /// child is started, so no SIGCHLD can be lost.
    pub fn install() -> nix::Result<Signals> {
        let set = handled();
        // Blocked signals reach the signalfd even when ignored, but an
        // ignored SIGCHLD also means "reap my children for me".
        crate::sys::default_disposition(Signal::SIGCHLD)?;
        // The realtime signals end a process by default; superd uses none.
        crate::sys::ignore_realtime_signals();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Signals {
            fd,
            child_exits: true,
        })
    }

    /// Whether SIGCHLD is read from the signalfd ([`Event::Child`]): at
    /// first, yes. Without it, SIGCHLD stays blocked and pending, unread
    /// (no read(2) per child exit); put back, a pending one is reported
    /// at once. Where the signalfd cannot change, it stays as it was;
    /// returns whether SIGCHLD is read now.
    pub fn watch_child_exits(&mut self, on: bool) -> bool {
        if on != self.child_exits {
            let mut set = handled();
            if !on {
                set.remove(Signal::SIGCHLD);
            }
            if self.fd.set_mask(&set).is_ok() {
                self.child_exits = on;
            }
        }
        self.child_exits
    }

    /// Whether SIGCHLD is read from the signalfd (see
    /// [`watch_child_exits`](Self::watch_child_exits)).
    pub fn watches_child_exits(&self) -> bool {
        self.child_exits
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Drains every pending signal (the fd is edge-triggered in mio): up
    /// to 16 in one read(2); a read that returns fewer found the queue
    /// empty, so no second read is needed to see EAGAIN (one syscall per
    /// SIGCHLD, not two).
    pub fn drain(&mut self, mut on: impl FnMut(Event)) {
        const INFO: usize = std::mem::size_of::<libc::signalfd_siginfo>();
        let mut buf = [0u8; 16 * INFO];
        loop {
            let n = match nix::unistd::read(self.fd.as_raw_fd(), &mut buf) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            };
            for info in buf[..n].chunks_exact(INFO) {
                // ssi_signo is the first field, a u32.
                let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
                let event = match Signal::try_from(signo as i32) {
                    Ok(Signal::SIGHUP) => Event::Reload,
                    Ok(Signal::SIGUSR1) => Event::Status,
                    Ok(Signal::SIGCHLD) => Event::Child,
                    Ok(s @ (Signal::SIGTERM | Signal::SIGINT)) => Event::Shutdown(s),
                    Ok(Signal::SIGUSR2) => Event::Upgrade,
                    Ok(s) => Event::Ignored(s),
                    Err(_) => continue,
                };
                on(event);
            }
            if n < buf.len() {
                return;
            }
        }
    }
}
