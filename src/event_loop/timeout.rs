//! A child's `timeout` (superd.yaml(5)): SIGTERM to its group when it is
//! due, SIGKILL after `kill_grace`, then SIGKILL to what is left of its
//! tree once the child itself is gone (superd(8), PROCESS TREES). The
//! signals themselves are `children`'s; this part keeps the timers.

use std::time::{Duration, Instant};

use super::Daemon;
use super::timers::Timer;
use crate::children::{self, Pid};

impl Daemon {
    /// The child's `timeout` is due: SIGTERM now, SIGKILL after its
    /// service's `kill_grace`.
    pub(super) fn child_timed_out(&mut self, pid: Pid, serial: u64, now: Instant) {
        let Some(c) = self
            .children
            .get_mut(pid)
            .filter(|c| !c.timed_out && c.serial == serial)
        else {
            return;
        };
        let grace = self
            .services
            .get(&c.service_id)
            .map(|s| s.service.kill_grace)
            .unwrap_or(Duration::from_secs(5));
        children::time_out(pid, c);
        self.timer(now + grace, Timer::ChildKill(pid, serial));
    }

    /// The grace after a SIGTERM is over: SIGKILL to the child's group,
    /// or, when the child ended and something it started kept running
    /// (and maybe the connection open), to what is left of it. When the
    /// pid is a newer child's now, so is the group number: it is never
    /// signalled for the old one.
    pub(super) fn kill_after_grace(&mut self, pid: Pid, serial: u64) {
        if let Some(c) = self.children.get_mut(pid)
            && c.serial == serial
            && c.timed_out
        {
            children::kill_timed_out(pid, c);
            return;
        }
        let reused = self.children.get(pid).is_some();
        if let Some(l) = self.lingering.remove(&serial)
            && let Some(cg) = l.kill(reused)
        {
            self.dying.push(cg);
        }
    }
}
