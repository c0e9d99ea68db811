//! What the loop watches: the `mio::Poll`, and for every token the kind of
//! thing it names (`Watched`), so that an event goes to its part in one
//! lookup. The parts keep their own tables by token; this registry only
//! says which table a token belongs to.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::children::Pid;
use crate::error::Error;

/// The token of the signalfd, registered for the loop's whole life.
pub(super) const SIGNAL_TOKEN: Token = Token(0);

/// The kind of thing a token names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Watched {
    Signals,
    /// A listening or bound socket (`Daemon::listeners`).
    Listener,
    /// A builtin session (`Daemon::sessions`).
    Session,
    /// A child's stderr pipe (`Daemon::pipes`).
    Stderr,
    /// The exec wake pipe of the child with this pid.
    Exec(Pid),
    /// A connection waiting for its PROXY header (`Daemon::headers`).
    Header,
    /// The pidfd of the child with this pid.
    Pidfd(Pid),
    /// The pidfd or timer of an upgrade's running `--check`
    /// (`crate::upgrade::Context::check`).
    UpgradeCheck,
}

/// The poll and the kind of every live token. Tokens are never reused: an
/// event already fetched for a token whose owner is gone finds nothing.
pub(super) struct Watch {
    poll: Poll,
    kinds: HashMap<Token, Watched>,
    next: usize,
}

impl Watch {
    /// A poll with the signalfd `signals` registered under SIGNAL_TOKEN.
    pub(super) fn new(signals: RawFd) -> Result<Watch, Error> {
        let setup = |what| {
            move |e: io::Error| Error::Setup {
                what,
                reason: e.to_string(),
            }
        };
        let poll = Poll::new().map_err(setup("cannot create poll"))?;
        poll.registry()
            .register(&mut SourceFd(&signals), SIGNAL_TOKEN, Interest::READABLE)
            .map_err(setup("cannot watch signals"))?;
        let mut kinds = HashMap::new();
        kinds.insert(SIGNAL_TOKEN, Watched::Signals);
        Ok(Watch {
            poll,
            kinds,
            next: 1,
        })
    }

    /// A new token for a thing of `kind`, not yet registered with the poll
    /// (a busy listener, or a connection read before it is watched).
    pub(super) fn token(&mut self, kind: Watched) -> Token {
        let t = Token(self.next);
        self.next += 1;
        self.kinds.insert(t, kind);
        t
    }

    /// Registers `fd` under `token` (a token from `token`).
    pub(super) fn register(&self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), token, interest)
    }

    /// Moves a long-lived child's `fd`, watched under `token`, above the
    /// low numbers (see spawn::fdpark); `Ok(false)` when it stays.
    pub(super) fn park<F: AsRawFd + From<OwnedFd>>(
        &self,
        fd: &mut F,
        token: Token,
        started: Instant,
        now: Instant,
    ) -> io::Result<bool> {
        crate::spawn::fdpark::park(fd, token, self.poll.registry(), started, now)
    }

    /// Takes `fd` out of the poll; its token stays until `forget`.
    pub(super) fn deregister(&self, fd: RawFd) {
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
    }

    /// A new token for `fd`, registered for reading; `None` (and no token
    /// left behind) when the poll refuses it.
    pub(super) fn watch(&mut self, fd: RawFd, kind: Watched) -> Option<Token> {
        let t = self.token(kind);
        if self.register(fd, t, Interest::READABLE).is_err() {
            self.forget(t);
            return None;
        }
        Some(t)
    }

    /// The thing behind `token` is gone from its table.
    pub(super) fn forget(&mut self, token: Token) {
        self.kinds.remove(&token);
    }

    /// What `token` names, if it is still live.
    pub(super) fn kind(&self, token: Token) -> Option<Watched> {
        self.kinds.get(&token).copied()
    }

    /// Waits for events (at most `timeout`).
    pub(super) fn poll(
        &mut self,
        events: &mut Events,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        self.poll.poll(events, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_kind_until_forgotten_and_is_never_reused() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let mut w = Watch::new(std::os::fd::AsRawFd::as_raw_fd(&r)).unwrap();
        assert_eq!(w.kind(SIGNAL_TOKEN), Some(Watched::Signals));
        let a = w.token(Watched::Session);
        let b = w.token(Watched::Pidfd(Pid(7)));
        assert_ne!(a, b);
        assert_eq!(w.kind(b), Some(Watched::Pidfd(Pid(7))));
        w.forget(a);
        assert_eq!(w.kind(a), None);
        assert!(w.token(Watched::Session) > b);
    }
}
