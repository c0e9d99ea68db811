//! Keeps the low descriptor numbers for what a new child needs: the
//! long-lived descriptors superd holds per child (pidfds, `stderr: log`
//! pipes) move above a
//! high floor once their child has lived a while, so that a child's first
//! step copies only a few descriptors (see `child::Child::own_fd_table`),
//! however many children superd holds.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// A new child's pidfd above this number says the low numbers are crowded
/// with long-lived descriptors: time for a batch (see [`Parking::due`]).
const CROWDED: RawFd = 64;

/// At most one batch this often: a batch walks every child.
const BATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Only the descriptors of children this old move: most children are
/// short-lived, and moving one costs four syscalls.
const AGE: Duration = Duration::from_secs(1);

/// The highest floor: a higher one only makes the descriptor table bigger.
const MAX_FLOOR: RawFd = 1 << 16;

/// When the long-lived descriptors move (the loop keeps one).
#[derive(Debug, Default)]
pub struct Parking {
    last: Option<Instant>,
}

impl Parking {
    /// Whether to park now: `newest`, the descriptor a new child just got,
    /// shows the low numbers crowded, and no batch ran in the last
    /// `BATCH_INTERVAL`. Costs nothing otherwise.
    pub fn due(&mut self, newest: RawFd, now: Instant) -> bool {
        if newest <= CROWDED
            || self
                .last
                .is_some_and(|t| now.saturating_duration_since(t) < BATCH_INTERVAL)
        {
            return false;
        }
        self.last = Some(now);
        floor().is_some()
    }
}

/// Half the soft `nofile` limit, at most [`MAX_FLOOR`]; `None` where that
/// leaves no room below it (a small limit): nothing moves then.
fn floor() -> Option<RawFd> {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(0, |(soft, _)| soft);
    let floor = RawFd::try_from(soft / 2)
        .unwrap_or(RawFd::MAX)
        .min(MAX_FLOOR);
    (floor > 4 * CROWDED).then_some(floor)
}

/// Moves `fd`, watched by `registry` under `token`, to the lowest free
/// number at or above the floor when it is below it and its child
/// `started` at least `AGE` before `now`: the copy is watched under the
/// same token and the old number closed (after leaving epoll: epoll
/// watches the open file, which the copy keeps open). `Ok(false)` when it
/// stays.
pub fn park<F: AsRawFd + From<OwnedFd>>(
    fd: &mut F,
    token: Token,
    registry: &Registry,
    started: Instant,
    now: Instant,
) -> io::Result<bool> {
    let Some(floor) = floor() else {
        return Ok(false);
    };
    if fd.as_raw_fd() >= floor || now.saturating_duration_since(started) < AGE {
        return Ok(false);
    }
    // SAFETY: fcntl(2) F_DUPFD_CLOEXEC on a descriptor we own.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, floor) };
    if new == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor, owned by no one else.
    let new = unsafe { OwnedFd::from_raw_fd(new) };
    registry.register(&mut SourceFd(&new.as_raw_fd()), token, Interest::READABLE)?;
    registry.deregister(&mut SourceFd(&fd.as_raw_fd()))?;
    // The old number closes as `new` takes its place.
    *fd = F::from(new);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_due_only_when_crowded_and_at_most_once_a_second() {
        let t = Instant::now();
        let mut p = Parking::default();
        assert!(!p.due(CROWDED, t));
        let room = floor().is_some();
        assert_eq!(p.due(CROWDED + 1, t), room);
        if room {
            assert!(!p.due(CROWDED + 1, t + Duration::from_millis(999)));
            assert!(p.due(CROWDED + 1, t + BATCH_INTERVAL));
        }
    }

    #[test]
    fn a_watched_descriptor_moves_above_the_floor_and_stays_watched() {
        let Some(floor) = floor() else {
            eprintln!("skipped: the nofile limit leaves no room for a floor");
            return;
        };
        let mut poll = mio::Poll::new().unwrap();
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let mut r = r;
        let token = Token(7);
        poll.registry()
            .register(&mut SourceFd(&r.as_raw_fd()), token, Interest::READABLE)
            .unwrap();
        let now = Instant::now();
        // Too young: stays.
        assert!(!park(&mut r, token, poll.registry(), now, now).unwrap());
        assert!(park(&mut r, token, poll.registry(), now - AGE, now).unwrap());
        assert!(r.as_raw_fd() >= floor);
        // The copy is watched under the same token, the old one not at all.
        nix::unistd::write(&w, b"x").unwrap();
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        let tokens: Vec<Token> = events.iter().map(|e| e.token()).collect();
        assert_eq!(tokens, vec![token]);
        // Already above the floor: stays.
        assert!(!park(&mut r, token, poll.registry(), now - AGE, now).unwrap());
    }
}
