//! A child's way to exec: recording a started child, and settling its exec
//! report (the `exec failed` line and the pacing of a service that keeps
//! failing).

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, error, warn};
use mio::{Interest, Token};

use crate::children::Child;
use crate::limits::SourceKey;
use crate::listener::{self, Peer};
use crate::service::{Service, SocketType, canonical_addr};
use crate::spawn;
use crate::tree::ConnCgroup;

use super::Daemon;
use super::services::{PRE_EXEC_MAX, Pause};
use super::timers::Timer;
use super::watch::Watched;

/// A `wait` service whose program fails before exec is retried after this
/// delay, doubled for every further failure in a row, up to the cap.
pub(super) const WAIT_BACKOFF_START: Duration = Duration::from_millis(100);

pub(super) const WAIT_BACKOFF_CAP: Duration = Duration::from_secs(10);

/// How often the report pipe of a child is read when epoll could not take
/// it (out of memory, max_user_watches): the loop never waits for a child.
pub(super) const EXEC_CHECK: Duration = Duration::from_millis(10);

/// A child on its way to exec (see `Daemon::exec_settled`).
pub(super) struct ExecWait {
    pub(super) pid: i32,
    pub(super) service_id: u64,
    pub(super) service: String,
    /// Behind a proxy: the client and the proxy, for `exec failed`.
    pub(super) proxied: Option<(Peer, SocketAddr)>,
    pub(super) pending: spawn::Pending,
    /// nowait: superd's copy of the connection, closed once the outcome is
    /// known (after the `exec failed` line, if any).
    pub(super) conn: Option<OwnedFd>,
}

impl Daemon {
    /// Records a started child and watches its way to exec (see
    /// `exec_settled`). `conn` is superd's copy of a nowait connection,
    /// kept until the outcome is known.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn child_started(
        &mut self,
        sid: u64,
        service: &Rc<Service>,
        spawned: spawn::Spawned,
        peer: Option<Peer>,
        source: Option<SourceKey>,
        wait_listener: Option<Token>,
        conn: Option<OwnedFd>,
        cgroup: Option<ConnCgroup>,
    ) {
        let now = Instant::now();
        let pid = spawned.pid.as_raw();
        let token = self.watch.token(Watched::Exec);
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
        self.children.insert(
            spawned.pid,
            Child {
                service_id: sid,
                service: service.name.clone(),
                peer,
                source,
                started: now,
                serial: {
                    self.next_serial += 1;
                    self.next_serial
                },
                wait_listener,
                timed_out: false,
                killed: false,
                exec_failed: false,
                exec: Some(token),
                success: service.success_status,
                cgroup,
                strays: Vec::new(),
                proxy: None,
                pidfd,
            },
        );
        debug!("spawn service={} pid={pid}", service.name);
        if !pidfd_watched {
            self.timer(now + EXEC_CHECK, Timer::PidfdCheck(pid, self.next_serial));
        }
        if let Some(t) = service.timeout {
            self.timer(now + t, Timer::ChildTimeout(pid, self.next_serial));
        }
        if let Some(fd) = spawned.stderr {
            self.watch_stderr(fd, &service.name, pid);
        }
        let watched = self
            .watch
            .register(spawned.exec.fd().as_raw_fd(), token, Interest::READABLE)
            .is_ok();
        self.execs.insert(
            token,
            ExecWait {
                pid,
                service_id: sid,
                service: service.name.clone(),
                proxied: None,
                pending: spawned.exec,
                conn,
            },
        );
        // A service whose last child failed before exec starts no other
        // until this one's outcome is known (see `drain_listener`), so its
        // failures stay paced one by one; the loop never waits for it: a
        // slow or stopped child holds up only its own service.
        if let Some(st) = self.services.get_mut(&sid) {
            st.pre_exec += 1;
        }
        if !watched {
            self.timer(now + EXEC_CHECK, Timer::ExecCheck(token));
        }
    }

    /// The child behind `token` is past exec, or failed before it: logs and
    /// paces a failure, closes superd's copy of the connection. `None`
    /// while the child has not got there yet; else whether it failed.
    pub(super) fn exec_settled(&mut self, token: Token) -> Option<bool> {
        let outcome = self.execs.get_mut(&token)?.pending.poll()?;
        let w = self.execs.remove(&token).expect("present");
        self.watch.forget(token);
        if let Some(st) = self.services.get_mut(&w.service_id) {
            // Room for another start: the service's listeners go on.
            if st.pre_exec == PRE_EXEC_MAX || st.fail_streak > 0 {
                self.ready.extend_from_slice(&st.listeners);
            }
            st.pre_exec = st.pre_exec.saturating_sub(1);
        }
        let failed = outcome.is_some();
        let mut wait_listener = None;
        if let Some(c) = self.children.get_mut(w.pid) {
            c.exec_failed = failed;
            c.exec = None;
            wait_listener = c.wait_listener;
        }
        let now = Instant::now();
        match (outcome, self.services.get_mut(&w.service_id)) {
            (None, Some(st)) => {
                st.fail_streak = 0;
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
                    st.fail_streak += 1;
                    // Pace a program that keeps failing: wait mode backs off
                    // (the unread datagram or connection would otherwise
                    // respawn it at once); nowait is held to a failure rate.
                    let delay = if st.service.wait {
                        let shift = st.fail_streak.saturating_sub(1).min(10);
                        Some((WAIT_BACKOFF_START * (1u32 << shift)).min(WAIT_BACKOFF_CAP))
                    } else {
                        // This failure spends a token; if none is left for
                        // the next attempt, wait until there is one.
                        let _ = st.failure_bucket.try_take(now);
                        let next = st.failure_bucket.next_token_at(now);
                        (next > now).then(|| next.saturating_duration_since(now))
                    };
                    if let Some(d) = delay {
                        let until = now + d.max(Duration::from_millis(1));
                        st.pause(Pause::ExecFailures, until, now);
                        self.timer(until, Timer::Resume(w.service_id));
                    }
                }
            }
        }
        // The peer sees its connection close only after the line is out.
        if let Some(fd) = w.conn
            && failed
        {
            self.close_after_log(fd);
        }
        Some(failed)
    }

    /// Records the proxy of a child started for a proxied connection: its
    /// `exit` and `exec failed` lines name it.
    pub(super) fn mark_proxied(&mut self, pid: i32, peer: Peer, proxy: SocketAddr) {
        if let Some(c) = self.children.get_mut(pid) {
            c.proxy = Some(proxy);
            if let Some(w) = c.exec.and_then(|t| self.execs.get_mut(&t)) {
                w.proxied = Some((peer, proxy));
            }
        }
    }
}
