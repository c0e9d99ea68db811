//! A child's way to exec: recording a started child, and settling its exec
//! report (the `exec failed` line and the pacing of a service that keeps
//! failing): when its wake pipe says so, at the start of a loop turn for
//! a child without one, or at its exit.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, error, warn};
use mio::{Interest, Token};

use crate::children::{Child, ExecReport, Pid};
use crate::limits::SourceKey;
use crate::listener::{self, Peer};
use crate::service::{Service, ServiceId, SocketType, canonical_addr};
use crate::spawn;
use crate::tree::ConnCgroup;

use super::Daemon;
use super::services::{PRE_EXEC_MAX, Pause, ServiceState, exec_gated};
use super::timers::{EXEC_CHECK, Timer};
use super::watch::Watched;

/// What a new child serves, recorded with it.
#[derive(Default)]
pub(super) struct Serving {
    /// `None` in wait mode.
    pub(super) peer: Option<Peer>,
    /// Behind a proxy (`peer` is the client): the proxy's address.
    pub(super) proxy: Option<SocketAddr>,
    /// The per-source slot it holds.
    pub(super) source: Option<SourceKey>,
    /// wait mode: the listener it holds.
    pub(super) wait_listener: Option<Token>,
    /// `pass: listen_fds`: every listener of its service it holds.
    pub(super) listen_fds: Vec<Token>,
    /// nowait: superd's copy of the connection, kept until the outcome of
    /// the exec is known.
    pub(super) conn: Option<OwnedFd>,
    pub(super) cgroup: Option<ConnCgroup>,
}

/// Whether the next child of `st` gets a wake pipe: when its start
/// closes the service's exec gate (see `exec_gated`), the loop must hear
/// at once that it is past exec, to open the gate again; and while another
/// connection of the service is served, the next start may close it, which
/// must not wait for the next event either (under load the gate then
/// opens as soon as any child is past exec, as before). Otherwise, a
/// service served one connection at a time, nothing waits for it, and the
/// loop looks each turn (`settle_unwoken`).
pub(super) fn wants_wake(st: &ServiceState) -> bool {
    st.limits.active() > 0 || exec_gated(st.pre_exec + 1, st.pacing.fail_streak())
}

/// The part of a child's record its exec outcome is settled with.
struct Settling {
    service_id: ServiceId,
    service: String,
    /// Behind a proxy: the client and the proxy, for `exec failed`.
    proxied: Option<(Peer, SocketAddr)>,
    /// The listener of a UDP wait child whose unread datagram goes.
    wait_listener: Option<Token>,
}

impl Daemon {
    /// Records a started child and watches its way to exec (see
    /// `exec_settled`): its wake pipe, or, without one, the list the loop
    /// looks at each turn (`settle_unwoken`).
    pub(super) fn child_started(
        &mut self,
        sid: ServiceId,
        service: &Rc<Service>,
        spawned: spawn::Spawned,
        serving: Serving,
    ) {
        let now = Instant::now();
        let pid = Pid::from(spawned.pid);
        let mut pidfd_watched = true;
        let pidfd = spawned.pidfd.map(|fd| {
            // Kept under its token even when the poll refuses it: the
            // PidfdCheck timer looks at it instead.
            let t = self.watch.token(Watched::Pidfd(pid));
            pidfd_watched = self
                .watch
                .register(fd.as_raw_fd(), t, Interest::READABLE)
                .is_ok();
            (fd, t)
        });
        let mut watched = true;
        let token = spawned.exec.wake_fd().map(|fd| {
            let t = self.watch.token(Watched::Exec(pid));
            watched = self
                .watch
                .register(fd.as_raw_fd(), t, Interest::READABLE)
                .is_ok();
            t
        });
        let crowded = pidfd
            .as_ref()
            .is_some_and(|(fd, _)| self.parking.due(fd.as_raw_fd(), now));
        if pidfd.is_none() || serving.cgroup.is_none() {
            self.child_exits_unseen();
        }
        self.next_serial += 1;
        let serial = self.next_serial;
        self.children.insert(
            pid,
            Child {
                service_id: sid,
                service: service.name.clone(),
                peer: serving.peer,
                source: serving.source,
                started: now,
                serial,
                wait_listener: serving.wait_listener,
                listen_fds: serving.listen_fds,
                timed_out: false,
                killed: false,
                exec_failed: false,
                exec: Some(ExecReport {
                    pending: spawned.exec,
                    token,
                    conn: serving.conn,
                }),
                success: service.success_status,
                cgroup: serving.cgroup,
                strays: Vec::new(),
                proxy: serving.proxy,
                pidfd,
            },
        );
        debug!("spawn service={} pid={pid}", service.name);
        if crowded {
            self.park_long_lived(now);
        }
        if !pidfd_watched {
            self.timer(now + EXEC_CHECK, Timer::PidfdCheck(pid, serial));
        }
        if let Some(t) = service.timeout {
            self.timer(now + t, Timer::ChildTimeout(pid, serial));
        }
        if let Some(fd) = spawned.stderr {
            self.watch_stderr(fd, &service.name, pid);
        }
        // A service whose last child failed before exec starts no other
        // until this one's outcome is known (see `drain_listener`), so its
        // failures stay paced one by one; the loop never waits for it: a
        // slow or stopped child holds up only its own service. (A start
        // that closes the gate has a wake pipe, see `wants_wake`.)
        if let Some(st) = self.services.get_mut(&sid) {
            st.pre_exec += 1;
        }
        if !watched {
            self.timer(now + EXEC_CHECK, Timer::ExecCheck(pid, serial));
        }
    }

    /// The live child `pid` is past exec, or failed before it (its wake
    /// pipe is readable, an ExecCheck or `settle_unwoken` looks): see
    /// `exec_outcome`. `None` while the child has not got there yet; else
    /// whether it failed.
    pub(super) fn exec_settled(&mut self, pid: Pid) -> Option<bool> {
        let c = self.children.get_mut(pid)?;
        let outcome = c.exec.as_mut()?.pending.poll()?;
        let report = c.exec.take().expect("polled above");
        c.exec_failed = outcome.is_some();
        let of = Settling {
            service_id: c.service_id,
            service: c.service.clone(),
            proxied: c.proxy.and_then(|p| Some((c.peer?, p))),
            wait_listener: c.wait_listener,
        };
        Some(self.exec_outcome(of, report, outcome))
    }

    /// The exec report of a child just reaped: all there (the kernel
    /// cleared its word at the exit). A failed UDP wait child's datagram is
    /// dropped here as in `exec_settled`: the pidfd's event may come before
    /// the wake pipe's in the same turn, and the listener resumes right
    /// after.
    pub(super) fn exec_settled_at_exit(&mut self, child: &mut Child) {
        let Some(mut report) = child.exec.take() else {
            return;
        };
        let Some(outcome) = report.pending.poll() else {
            if let Some(t) = report.token {
                self.watch.forget(t);
            }
            return;
        };
        child.exec_failed = outcome.is_some();
        let of = Settling {
            service_id: child.service_id,
            service: child.service.clone(),
            proxied: child.proxy.and_then(|p| Some((child.peer?, p))),
            wait_listener: child.wait_listener,
        };
        self.exec_outcome(of, report, outcome);
    }

    /// Logs and paces an exec failure, counts a success, and closes
    /// superd's copy of the connection; whether it failed.
    fn exec_outcome(
        &mut self,
        w: Settling,
        report: ExecReport,
        outcome: Option<spawn::ExecFailure>,
    ) -> bool {
        if let Some(t) = report.token {
            self.watch.forget(t);
        }
        if let Some(st) = self.services.get_mut(&w.service_id) {
            // Room for another start: the service's listeners go on.
            if st.pre_exec == PRE_EXEC_MAX || st.pacing.fail_streak() > 0 {
                self.ready.extend_from_slice(&st.listeners);
            }
            st.pre_exec = st.pre_exec.saturating_sub(1);
        }
        let failed = outcome.is_some();
        let wait_listener = w.wait_listener;
        let now = Instant::now();
        match (outcome, self.services.get_mut(&w.service_id)) {
            (None, Some(st)) => {
                st.pacing.exec_ok();
                st.counters.served += 1;
            }
            (None, None) => {}
            (Some(f), st) => {
                // Behind a proxy, the line says for whom (superd.8, LOGS).
                let proxied = w
                    .proxied
                    .map(|(peer, proxy)| format!(" peer={peer} proxy={proxy}"))
                    .unwrap_or_default();
                error!(
                    "exec failed service={} step={} error=\"{}\"{proxied}",
                    w.service,
                    f.step.as_str(),
                    f.errno.desc()
                );
                // The datagram that started a UDP wait child is still
                // queued (the child read nothing): one attempt only, or it
                // would start the next child, and the next, for ever.
                if let Some(entry) = wait_listener.and_then(|t| self.listeners.get(&t))
                    && entry.listener.key.socket == SocketType::Dgram
                    && let Ok(peer) = listener::datagram_source(entry.listener.fd.as_fd(), false)
                {
                    warn!(
                        "datagram dropped service={} peer={} reason=exec_failed",
                        w.service,
                        peer.map_or_else(|| "-".to_owned(), |p| canonical_addr(p).to_string())
                    );
                }
                if let Some(st) = st {
                    st.counters.exec_failures += 1;
                    // Pace a program that keeps failing (limits::Pacing).
                    if let Some(d) = st.pacing.exec_failed(st.service.wait, now) {
                        let until = now + d;
                        st.pause(Pause::ExecFailures, until, now);
                        self.timer(until, Timer::Resume(w.service_id));
                    }
                }
            }
        }
        // The peer sees its connection close only after the line is out.
        if let Some(fd) = report.conn
            && failed
        {
            self.close_after_log(fd);
        }
        failed
    }
}

impl Daemon {
    /// Settles the children on their way to exec without a wake pipe that
    /// got past it (or failed) since the last look: at the start of each
    /// loop turn, which comes within EXEC_CHECK while any is on the list
    /// (see `poll_timeout`). No system call for a child still on its way.
    pub(super) fn settle_unwoken(&mut self) {
        if !self.children.has_unwoken() {
            return;
        }
        let mut list = self.children.take_unwoken();
        list.retain(|&(pid, serial)| {
            self.children
                .get(pid)
                .is_some_and(|c| c.serial == serial && c.exec.is_some())
                && self.exec_settled(pid).is_none()
        });
        self.children.put_unwoken(list);
    }

    /// How long the loop may sleep when its timers say `timeout`: while a
    /// child without a wake pipe is on its way to exec, EXEC_CHECK at the
    /// most (its outcome, and superd's copy of its connection, must not
    /// wait for an unrelated event).
    pub(super) fn poll_timeout(&self, timeout: Option<Duration>) -> Option<Duration> {
        if !self.children.has_unwoken() {
            return timeout;
        }
        Some(timeout.map_or(EXEC_CHECK, |t| t.min(EXEC_CHECK)))
    }

    /// Moves the pidfds and stderr pipes of children alive for a while
    /// above the low numbers (spawn::fdpark), so the fds a new child
    /// needs stay low and its clone copies only those.
    fn park_long_lived(&mut self, now: Instant) {
        for c in self.children.iter_mut() {
            if let Some((fd, t)) = c.pidfd.as_mut() {
                let _ = self.watch.park(fd, *t, c.started, now);
            }
        }
        for (t, p) in self.pipes.iter_mut() {
            if let Some(c) = self.children.get(p.pid) {
                let _ = self.watch.park(&mut p.file, *t, c.started, now);
            }
        }
    }
}
