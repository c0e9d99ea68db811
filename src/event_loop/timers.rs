//! The loop's timers: resumes after a pause, child timeouts and kills,
//! idle sessions, PROXY header deadlines, exec and pidfd checks, and the
//! held-back sweep. `Timers` only keeps them in order (deleted lazily,
//! compacted when they outgrow what is alive); `mod.rs` routes each one
//! that is due to its part.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use mio::Token;

use super::Daemon;
use crate::children::Pid;
use crate::service::ServiceId;

/// How often the exec report of a child is looked at when epoll could
/// not take its wake pipe (out of memory, max_user_watches), or when it
/// has none (see `poll_timeout`): the loop never waits for a child.
pub(super) const EXEC_CHECK: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    Resume(ServiceId),
    ChildTimeout(Pid, u64),
    /// SIGKILL for the group of the child with this pid and serial, or
    /// for what is left of it once the child itself is gone.
    ChildKill(Pid, u64),
    SessionIdle(Token),
    /// `proxy_timeout` of a connection waiting for its PROXY header.
    ProxyHeader(Token),
    /// A child's exec wake pipe the loop could not watch: looked at
    /// again (see EXEC_CHECK).
    ExecCheck(Pid, u64),
    /// The `waitpid(-1)` sweep held back by SWEEP_INTERVAL.
    Sweep,
    /// A child's pidfd the loop could not watch: tried again (as
    /// ExecCheck).
    PidfdCheck(Pid, u64),
    /// The end of a window on one CPU (see `pin`).
    Unpin,
}

/// The pending timers, soonest first.
#[derive(Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
}

impl Timers {
    pub(super) fn push(&mut self, at: Instant, t: Timer) {
        self.heap.push(Reverse((at, t)));
    }

    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// When the soonest is due.
    pub(super) fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The soonest timer due at `now`, taken off.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, t))| t),
            _ => None,
        }
    }

    /// Keeps only the timers `keep` says are still about something alive.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Timer) -> bool) {
        self.heap.retain(|Reverse((_, t))| keep(t));
    }

    /// Every timer with its instant, in no order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Instant, Timer)> + '_ {
        self.heap.iter().map(|Reverse(e)| *e)
    }
}

impl Daemon {
    pub(super) fn timer(&mut self, at: Instant, t: Timer) {
        self.timers.push(at, t);
        // Timers are deleted lazily (a session that ends leaves its idle
        // timer behind). Keep the heap in proportion to what is alive, so a
        // flood of short sessions cannot grow it for a whole idle_timeout.
        let live =
            self.sessions.len() + self.children.len() + self.services.len() + self.headers.len();
        if self.timers.len() > 1024 && self.timers.len() > 4 * live {
            self.compact_timers();
        }
    }

    /// Drops timers whose session, child or service is gone.
    pub(super) fn compact_timers(&mut self) {
        let mut timers = std::mem::take(&mut self.timers);
        timers.retain(|t| match t {
            Timer::Resume(sid) => self.services.contains_key(sid),
            Timer::ChildTimeout(pid, _) => self.children.get(*pid).is_some(),
            Timer::ChildKill(pid, serial) => {
                self.children.get(*pid).is_some() || self.lingering.contains_key(serial)
            }
            Timer::SessionIdle(token) => self.sessions.contains_key(token),
            Timer::ProxyHeader(token) => self.headers.contains_key(token),
            Timer::ExecCheck(pid, serial) => self
                .children
                .get(*pid)
                .is_some_and(|c| c.serial == *serial && c.exec.is_some()),
            Timer::Sweep => true,
            Timer::Unpin => self.pin.is_held(),
            Timer::PidfdCheck(pid, serial) => {
                self.children.get(*pid).is_some_and(|c| c.serial == *serial)
            }
        });
        self.timers = timers;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_come_due_in_order_and_not_before_their_instant() {
        let now = Instant::now();
        let mut t = Timers::default();
        t.push(now + Duration::from_secs(2), Timer::Sweep);
        t.push(now + Duration::from_secs(1), Timer::Resume(ServiceId(7)));
        t.push(now, Timer::SessionIdle(Token(3)));
        assert_eq!(t.next_at(), Some(now));
        assert_eq!(t.pop_due(now), Some(Timer::SessionIdle(Token(3))));
        assert_eq!(t.pop_due(now), None, "the next is a second away");
        let later = now + Duration::from_secs(2);
        assert_eq!(t.pop_due(later), Some(Timer::Resume(ServiceId(7))));
        assert_eq!(t.pop_due(later), Some(Timer::Sweep));
        assert_eq!(t.pop_due(later), None);
        assert_eq!(t.next_at(), None);
    }

    #[test]
    fn retain_drops_what_is_gone_and_keeps_the_order() {
        let now = Instant::now();
        let mut t = Timers::default();
        for i in 0..10u64 {
            t.push(
                now + Duration::from_millis(10 - i),
                Timer::Resume(ServiceId(i)),
            );
        }
        t.retain(|x| matches!(x, Timer::Resume(ServiceId(i)) if i % 2 == 0));
        assert_eq!(t.len(), 5);
        let end = now + Duration::from_secs(1);
        let order: Vec<_> = std::iter::from_fn(|| t.pop_due(end)).collect();
        let want: Vec<_> = [8, 6, 4, 2, 0]
            .into_iter()
            .map(|i| Timer::Resume(ServiceId(i)))
            .collect();
        assert_eq!(order, want);
    }
}
