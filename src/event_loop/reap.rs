//! Reaping: the `waitpid(-1)` sweep and pidfds, a child's `exit` line, and
//! what outlived a child (its process group, its cgroup), killed after
//! `kill_grace` (superd.8, PROCESS TREES). With pidfds and cgroups the
//! loop reads no SIGCHLD: the sweep runs only where orphans can be.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::children::Leftover;
use crate::children::{self, Child};
use crate::spawn;
use crate::tree;

use super::Daemon;
use super::timers::Timer;
use crate::children::Pid;

/// The least time between two `waitpid(-1)` sweeps on SIGCHLD: each makes
/// the kernel look at every child, so with thousands alive it is
/// rate-bounded (a timer makes sure the one that is due comes, so no
/// zombie stays). Without pidfds every child is reaped so.
pub(super) const SWEEP_INTERVAL: Duration = Duration::from_millis(10);

/// The same with pidfds: each child is reaped through its own, and the
/// sweep is left to orphans that came back to superd. A child raises
/// SIGCHLD too (exec gives every process the default exit signal), and a
/// sweep reaps those of them that ended but whose pidfd event is still to
/// come, each with another walk of every child: at 6,000 live children a
/// 100 ms bound still took a quarter of superd's CPU.
pub(super) const SWEEP_INTERVAL_PIDFD: Duration = Duration::from_secs(1);

impl Daemon {
    /// Before the first turn: where every child is reaped through its
    /// pidfd and every connection's tree is held by a cgroup (which says
    /// what outlived a child), SIGCHLD is no longer read (one read(2) less
    /// per child exit; it stays blocked). Orphans that come back to superd
    /// are then swept for on the Sweep timer: after a child's exit (what
    /// it left as zombies), and on while its cgroup says something
    /// outlived it (see `after_child`), plus once for what an earlier
    /// image left. Otherwise every SIGCHLD sweeps, as without pidfds.
    pub(super) fn start_reaping(&mut self) {
        let known = self
            .children
            .iter()
            .all(|(_, c)| c.pidfd.is_some() && c.cgroup.is_some());
        if spawn::pidfd_works()
            && self.fence.has_cgroups()
            && known
            && !self.signals.watch_child_exits(false)
        {
            self.children.expect_orphans();
            self.sweep_soon();
        }
    }

    /// A child started without a pidfd (out of descriptors) or without a
    /// cgroup (none could be made): its exit, or what it leaves, is told
    /// by SIGCHLD alone, read again from now on.
    pub(super) fn child_exits_unseen(&mut self) {
        self.signals.watch_child_exits(true);
    }

    /// Processes superd started outside any connection's cgroup (the
    /// upgrade's check) may come back as orphans: sweeps are owed, the
    /// first one soon.
    pub(super) fn orphans_may_come(&mut self) {
        self.children.expect_orphans();
        if !self.signals.watches_child_exits() {
            self.sweep_soon();
        }
    }

    /// SIGCHLD: a `waitpid(-1)` sweep now, or when SWEEP_INTERVAL since
    /// the last one has passed (a timer; never later).
    pub(super) fn sweep_soon(&mut self) {
        let now = Instant::now();
        let interval = if spawn::pidfd_works() {
            SWEEP_INTERVAL_PIDFD
        } else {
            SWEEP_INTERVAL
        };
        match self.last_sweep {
            Some(last) if now < last + interval => {
                if !self.sweep_due {
                    self.sweep_due = true;
                    self.timer(last + interval, Timer::Sweep);
                }
            }
            _ => self.reap(),
        }
    }

    /// The `waitpid(-1)` sweep: children without a pidfd, and orphans.
    /// Without SIGCHLD, the next one is due while there are signs of
    /// orphans (see `Children::swept`).
    pub(super) fn reap(&mut self) {
        let now = Instant::now();
        self.last_sweep = Some(now);
        // Killed cgroups empty as their processes end (each of which was
        // reaped by superd or by a parent in the same cgroup).
        self.dying.retain(|c| !c.remove());
        let (ended, orphans) = self.children.reap();
        for (pid, child, ended) in ended {
            self.child_ended(pid, child, ended, now);
        }
        let lingering = !self.lingering.is_empty() || !self.dying.is_empty();
        if !self.signals.watches_child_exits()
            && self.children.swept(orphans, lingering)
            && !self.sweep_due
        {
            self.sweep_due = true;
            self.timer(now + SWEEP_INTERVAL_PIDFD, Timer::Sweep);
        }
    }

    /// The child `pid`'s pidfd is readable: reaps it alone; whether it was.
    pub(super) fn reap_one(&mut self, pid: Pid) -> bool {
        let Some((pid, child, ended)) = self.children.reap_pidfd(pid) else {
            return false;
        };
        if !self.dying.is_empty() {
            self.dying.retain(|c| !c.remove());
        }
        self.child_ended(pid, child, ended, Instant::now());
        if !self.signals.watches_child_exits() {
            // What the child left as zombies came back to superd at its
            // exit, and no SIGCHLD says so: a sweep, rate-bounded.
            self.sweep_soon();
        }
        true
    }

    /// A reaped child: its exit line, what it left, its slots.
    pub(super) fn child_ended(
        &mut self,
        pid: Pid,
        mut child: Child,
        ended: children::Ended,
        now: Instant,
    ) {
        // A child that died before exec: its report first (its end of
        // the pipe is closed with it, so the report is all there), then
        // its exit.
        self.exec_settled_at_exit(&mut child);
        // Closing the pidfd (with `child`) takes it out of epoll too.
        if let Some((_, token)) = &child.pidfd {
            self.watch.forget(*token);
        }
        let outcome = children::log_exit(pid, &child, ended, now);
        if let Some(st) = self.services.get_mut(&child.service_id) {
            st.counters
                .exit(outcome, now.saturating_duration_since(child.started));
        }
        self.after_child(pid, &mut child, now);
        if let Some(token) = child.wait_listener {
            self.connection_ended(child.service_id, None);
            if child.listen_fds.is_empty() {
                self.resume_wait_listener(token);
            } else {
                self.resume_listeners(std::mem::take(&mut child.listen_fds));
            }
        } else {
            self.connection_ended(child.service_id, child.source);
        }
    }

    /// What a reaped child left behind (see "Process trees" in superd.8):
    /// its cgroup is removed when empty; after a timeout the pending
    /// ChildKill is for what still runs; after a normal exit, what still
    /// runs in its cgroup gets SIGTERM now and SIGKILL kill_grace later.
    pub(super) fn after_child(&mut self, pid: Pid, child: &mut Child, now: Instant) {
        let cgroup = child.cgroup.take().and_then(|c| self.fence.release(c));
        let left = children::leftover(pid, child, cgroup);
        if !matches!(left, Leftover::Nothing) {
            // What outlived it comes back to superd as it ends.
            self.children.expect_orphans();
        }
        match left {
            Leftover::Nothing => {}
            Leftover::Dying(cgroup) => self.dying.push(cgroup),
            Leftover::Lingering(l) => {
                self.lingering.insert(child.serial, l);
            }
            Leftover::Grace(l) => {
                let grace = self
                    .services
                    .get(&child.service_id)
                    .map_or(Duration::from_secs(5), |s| s.service.kill_grace);
                self.lingering.insert(child.serial, l);
                self.timer(now + grace, Timer::ChildKill(pid, child.serial));
            }
        }
    }

    /// SIGKILL for every child and everything descending from superd:
    /// with cgroups, at once through each connection's cgroup.kill first.
    pub(super) fn kill_everything(&mut self, me: i32) {
        let cgroups = self
            .children
            .iter()
            .filter_map(|(_, c)| c.cgroup.as_ref())
            .chain(self.lingering.values().filter_map(|l| l.cgroup.as_ref()))
            .chain(self.dying.iter());
        for cg in cgroups {
            cg.kill();
        }
        self.children.signal_all(Signal::SIGKILL);
        for p in tree::descendants(me, &tree::processes()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), Signal::SIGKILL);
        }
    }
}
