//! The loop's timers: resumes after a pause, child timeouts and kills,
//! idle sessions, PROXY header deadlines, exec and pidfd checks, and the
//! held-back sweep. Deleted lazily, and compacted when they outgrow what
//! is alive.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use mio::Token;

use crate::children;

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
}

impl Daemon {
    pub(super) fn timer(&mut self, at: Instant, t: Timer) {
        self.timers.push(Reverse((at, t)));
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
        let timers = std::mem::take(&mut self.timers);
        self.timers = timers
            .into_iter()
            .filter(|Reverse((_, t))| match t {
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
                Timer::PidfdCheck(pid, serial) => {
                    self.children.get(*pid).is_some_and(|c| c.serial == *serial)
                }
            })
            .collect();
    }

    pub(super) fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, t))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match t {
                Timer::Resume(sid) => {
                    let Some(st) = self.services.get(&sid) else {
                        continue;
                    };
                    if st.paused.is_some_and(|(_, until)| until > now) {
                        continue;
                    }
                    for t in st.listeners.clone() {
                        self.drain_listener(t);
                    }
                }
                Timer::ChildTimeout(pid, serial) => {
                    let Some(c) = self
                        .children
                        .get_mut(pid)
                        .filter(|c| !c.timed_out && c.serial == serial)
                    else {
                        continue;
                    };
                    let grace = self
                        .services
                        .get(&c.service_id)
                        .map(|s| s.service.kill_grace)
                        .unwrap_or(Duration::from_secs(5));
                    children::time_out(pid, c);
                    self.timer(now + grace, Timer::ChildKill(pid, serial));
                }
                Timer::ChildKill(pid, serial) => {
                    if let Some(c) = self.children.get_mut(pid)
                        && c.serial == serial
                        && c.timed_out
                    {
                        children::kill_timed_out(pid, c);
                        continue;
                    }
                    // The child ended, and something it started kept
                    // running (and maybe the connection open): the SIGKILL
                    // is for what is left of it. When the pid is a newer
                    // child's now, so is the group number: it is never
                    // signalled for the old one.
                    let reused = self.children.get(pid).is_some();
                    if let Some(l) = self.lingering.remove(&serial)
                        && let Some(cg) = l.kill(reused)
                    {
                        self.dying.push(cg);
                    }
                }
                Timer::ExecCheck(pid, serial) => {
                    let live = self
                        .children
                        .get(pid)
                        .is_some_and(|c| c.serial == serial && c.exec.is_some());
                    if live && self.exec_settled(pid).is_none() {
                        self.timer(now + EXEC_CHECK, Timer::ExecCheck(pid, serial));
                    }
                }
                Timer::ProxyHeader(token) => {
                    if self.headers.contains_key(&token) {
                        self.refuse_header(token, "no complete header within proxy_timeout");
                    }
                }
                Timer::Sweep => {
                    self.sweep_due = false;
                    self.reap();
                }
                Timer::PidfdCheck(pid, serial) => {
                    if self.children.get(pid).is_some_and(|c| c.serial == serial)
                        && !self.reap_one(pid)
                    {
                        self.timer(now + EXEC_CHECK, Timer::PidfdCheck(pid, serial));
                    }
                }
                Timer::SessionIdle(token) => {
                    let Some(s) = self.sessions.get(&token) else {
                        continue;
                    };
                    let due = s.last_activity + s.idle_timeout;
                    if due <= now {
                        self.end_session(token, Some("idle_timeout"));
                    } else {
                        self.timer(due, Timer::SessionIdle(token));
                    }
                }
            }
        }
    }
}
