//! The loop's side of an upgrade in place (superd.8, UPGRADING): SIGUSR2
//! starts the new binary's check, and once it passed, what goes into the
//! state before the `execve`; how the new image takes it back is
//! `restore.rs`'s. The format is `crate::upgrade::state`'s; the check,
//! the exec and the rollback are `crate::upgrade`'s.

#[path = "restore.rs"]
mod restore;

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::{Interest, Token};

use super::{Daemon, Stream, Timer, Watched, quote};
use crate::builtins::CarriedKind;
use crate::listener::Peer;
use crate::service::ServiceId;
use crate::upgrade::state::{
    ChildState, HeaderState, ListenerState, PeerState, PidFileState, PipeState, ServiceCounters,
    SessionKind, SessionState,
};
use crate::upgrade::{self, Context, State};

/// How long an upgrade waits for children still on their way to exec
/// (they share superd's memory until then, which an exec replaces): then
/// it is refused.
pub const EXEC_WAIT: Duration = Duration::from_secs(2);

/// Of the sockets a restored image adopts: the ones a `wait` child holds
/// (not watched, left blocking) and the ones superd bound itself (not
/// inherited from its parent).
#[derive(Default)]
pub struct Adopted {
    pub busy: Vec<RawFd>,
    pub own: Vec<RawFd>,
    /// Accept nothing until the restore is complete.
    pub hold_accepts: bool,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Daemon {
    /// Gives the daemon what an upgrade needs.
    pub fn set_upgrade(&mut self, ctx: Context) {
        self.upgrade = Some(ctx);
    }

    /// SIGUSR2: starts the new binary's `--check`, which runs while the
    /// loop serves on (see [`upgrade::check`]). A SIGUSR2 that comes while
    /// a check runs or an upgrade waits is logged and ignored.
    pub(super) fn upgrade_requested(&mut self) {
        // The check and the new image start with superd's own CPUs.
        self.pin.release();
        let busy = self.upgrade_pending.is_some()
            || self.upgrade.as_ref().is_some_and(|c| c.check.is_some());
        if busy {
            warn!("upgrade ignored reason=\"an upgrade is under way\"");
            return;
        }
        let Some(ctx) = self.upgrade.as_mut() else {
            warn!("upgrade refused reason=\"not available in this process\"");
            return;
        };
        let check = match upgrade::check::Check::start(ctx) {
            Ok(c) => c,
            Err(why) => {
                warn!("upgrade refused reason={}", quote(&why));
                return;
            }
        };
        let mut tokens = Vec::new();
        for fd in check.fds() {
            let t = self.watch.token(Watched::UpgradeCheck);
            if let Err(e) = self.watch.register(fd, t, Interest::READABLE) {
                self.watch.forget(t);
                warn!(
                    "upgrade refused reason={}",
                    quote(&format!("watching the check: {e}"))
                );
                self.unwatch_check(&check, &tokens);
                return;
            }
            tokens.push(t);
        }
        if let Some(ctx) = self.upgrade.as_mut() {
            ctx.check = Some((check, tokens));
        }
    }

    /// The check's pidfd or timer is readable: once it has a verdict, the
    /// upgrade goes on (waiting for children in exec, see [`upgrade`]) or
    /// is refused.
    pub(super) fn upgrade_check_progress(&mut self) {
        let Some(ctx) = self.upgrade.as_mut() else {
            return;
        };
        let Some((check, _)) = ctx.check.as_mut() else {
            return;
        };
        let Some(verdict) = check.verdict(Instant::now()) else {
            return;
        };
        if let Some((check, tokens)) = ctx.check.take() {
            self.unwatch_check(&check, &tokens);
        }
        // A check killed at its deadline leaves its program to superd.
        self.orphans_may_come();
        match verdict {
            Ok(()) => self.upgrade_pending = Some(Instant::now() + EXEC_WAIT),
            Err(why) => warn!("upgrade refused reason={}", quote(&why)),
        }
    }

    /// Takes the check's descriptors (those registered: `tokens`) out of
    /// the poll and their tokens out of the registry.
    fn unwatch_check(&mut self, check: &upgrade::check::Check, tokens: &[Token]) {
        for (fd, t) in check.fds().into_iter().zip(tokens) {
            self.watch.deregister(fd);
            self.watch.forget(*t);
        }
    }

    /// Once the new binary passed its `--check` (see
    /// [`Daemon::upgrade_requested`]) and no child is in exec, execs it
    /// with the state; on any failure logs `upgrade refused` and goes on
    /// untouched.
    pub(super) fn upgrade(&mut self) {
        let Some(until) = self.upgrade_pending else {
            return;
        };
        let now = Instant::now();
        let in_exec = self.children.in_exec();
        if in_exec > 0 {
            if now < until {
                return;
            }
            self.upgrade_pending = None;
            self.drain_all();
            warn!(
                "upgrade refused reason={}",
                quote(&format!(
                    "{} children still in exec after {}s",
                    in_exec,
                    EXEC_WAIT.as_secs()
                ))
            );
            return;
        }
        self.upgrade_pending = None;
        let Some(ctx) = self.upgrade.take() else {
            warn!("upgrade refused reason=\"not available in this process\"");
            self.drain_all();
            return;
        };
        // The new binary passed its `--check` (see `upgrade_requested`).
        info!(
            "upgrading exe={} children={} listeners={} sessions={}",
            quote(&ctx.exe.display().to_string()),
            self.children.len(),
            self.listeners.len(),
            self.sessions.len()
        );
        self.notifier.reloading();
        // What cannot be carried ends here, logged: a metrics session
        // (its request half read), and what outlived a child (its SIGKILL
        // was due anyway).
        let tokens: Vec<Token> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.session.carry().is_none())
            .map(|(t, _)| *t)
            .collect();
        for t in tokens {
            self.end_session(t, Some("upgrade"));
        }
        let lingering: Vec<_> = self.lingering.drain().map(|(_, l)| l).collect();
        for l in lingering {
            let reused = self.children.get(l.pid).is_some();
            if let Some(cg) = l.kill(reused) {
                self.dying.push(cg);
            }
        }
        for st in self.services.values_mut() {
            st.pending = None;
        }
        let state = self.export_state(&ctx);
        crate::logging::flush();
        self.pin.release();
        let why = upgrade::exec_new(&ctx, &state);
        // Still here: the exec failed, nothing was given away.
        warn!("upgrade refused reason={}", quote(&why));
        self.upgrade = Some(ctx);
        self.notifier.notify("READY=1");
        self.drain_all();
    }

    /// After a refused upgrade: the connections that waited meanwhile.
    fn drain_all(&mut self) {
        let tokens: Vec<Token> = self.listeners.keys().copied().collect();
        for t in tokens {
            self.drain_listener(t);
        }
    }

    /// The state of this image, for the next one.
    fn export_state(&self, ctx: &Context) -> State {
        let now = Instant::now();
        let mut s = State::new(ctx.exe.display().to_string());
        s.notify_socket = ctx.notify_socket.clone();
        s.pidfile = ctx.pidfile.as_ref().map(|(fd, path)| PidFileState {
            fd: *fd,
            path: path.clone(),
        });
        s.started_unix = self.started_unix;
        s.reloads_ok = self.reloads_ok;
        s.reloads_failed = self.reloads_failed;
        s.next_serial = self.next_serial;
        s.written_ns = crate::upgrade::state::monotonic_ns();
        let name_of = |sid: ServiceId| self.services.get(&sid).map(|st| st.service.name.clone());
        let fd_of = |t: &Token| self.listeners.get(t).map(|e| e.listener.fd.as_raw_fd());
        for e in self.listeners.values() {
            s.listeners.push(ListenerState {
                fd: e.listener.fd.as_raw_fd(),
                service: name_of(e.service_id).unwrap_or_default(),
                addr: e.listener.local.clone(),
                socket: e.listener.key.socket.to_string(),
                inherited: e.listener.inherited,
                chargen_next: e
                    .udp
                    .as_ref()
                    .filter(|u| u.kind() == crate::service::Builtin::Chargen)
                    .map(|u| u.rotation()),
            });
        }
        // Timers by child: the ones still due.
        let due = |want: &dyn Fn(&Timer) -> bool| {
            self.timers
                .iter()
                .filter(|(_, t)| want(t))
                .map(|(at, _)| nanos(at.saturating_duration_since(now)))
                .min()
        };
        for (pid, c) in self.children.iter() {
            let serial = c.serial;
            s.children.push(ChildState {
                pid: pid.0,
                service: c.service.clone(),
                peer: c.peer.map(peer_state),
                per_source: c.source.is_some(),
                age_ns: nanos(now.saturating_duration_since(c.started)),
                serial,
                timed_out: c.timed_out,
                killed: c.killed,
                exec_failed: c.exec_failed,
                timeout_in_ns: due(&|t| *t == Timer::ChildTimeout(pid, serial)),
                kill_in_ns: due(&|t| *t == Timer::ChildKill(pid, serial)),
                cgroup: c.cgroup.as_ref().map(|g| g.path().display().to_string()),
                wait_listener_fd: c.wait_listener.as_ref().and_then(fd_of),
                listen_fds: c.listen_fds.iter().filter_map(fd_of).collect(),
            });
        }
        for e in self.sessions.values() {
            let Some(c) = e.session.carry() else {
                continue;
            };
            let fd = match &e.stream {
                Stream::Tcp(t) => t.as_raw_fd(),
                Stream::Unix(u) => u.as_raw_fd(),
            };
            s.sessions.push(SessionState {
                fd,
                service: e.service.clone(),
                peer: peer_state(e.peer),
                per_source: e.source.is_some(),
                age_ns: nanos(now.saturating_duration_since(e.started)),
                idle_ns: nanos(now.saturating_duration_since(e.last_activity)),
                idle_timeout_ns: nanos(e.idle_timeout),
                kind: match c.kind {
                    CarriedKind::Echo(pending) => SessionKind::Echo { pending },
                    CarriedKind::Discard => SessionKind::Discard,
                    CarriedKind::Reply { data, sent } => SessionKind::Reply { data, sent },
                    CarriedKind::Chargen(pos) => SessionKind::Chargen { pos },
                },
                read_eof: c.read_eof,
                bytes_in: c.bytes_in,
                bytes_out: c.bytes_out,
            });
        }
        for (token, w) in &self.headers {
            s.headers.push(HeaderState {
                fd: w.conn.fd.as_raw_fd(),
                service: name_of(w.service_id).unwrap_or_default(),
                peer: peer_state(w.conn.peer),
                local: w.conn.local,
                timeout_in_ns: due(&|t| *t == Timer::ProxyHeader(*token)),
            });
        }
        for p in self.pipes.values() {
            s.pipes.push(PipeState {
                fd: p.file.as_raw_fd(),
                service: p.service.clone(),
                pid: p.pid.0,
                pending: p.lines.pending().to_vec(),
                cut: p.lines.was_cut(),
            });
        }
        for st in self.services.values() {
            let c = &st.counters;
            s.services.push(ServiceCounters {
                service: st.service.name.clone(),
                accepted: c.accepted,
                served: c.served,
                refused: c.refused.to_vec(),
                exec_failures: c.exec_failures,
                exits: c.exits.to_vec(),
                rate_fill: st.limits.rate_fill(now),
                duration_buckets: c.duration.buckets().to_vec(),
                duration_sum: c.duration.sum(),
                paused_ns: crate::metrics::PauseReason::ALL
                    .iter()
                    .map(|&r| (c.paused.seconds(r, now) * 1e9) as u64)
                    .collect(),
            });
        }
        s
    }
}

fn peer_state(p: Peer) -> PeerState {
    match p {
        Peer::Inet(a) => PeerState::Inet(a),
        Peer::Unix { pid, uid, gid } => PeerState::Unix { pid, uid, gid },
    }
}

/// The line a restored image logs: `upgraded from=OLD to=NEW`, or, after a
/// rollback, `upgrade failed reason=… rolled back`.
pub fn log_restored(state: &State, failed: Option<&str>) {
    match failed {
        Some(why) => error!(
            "upgrade failed reason={} rolled back to={}",
            quote(why),
            upgrade::this_version()
        ),
        None => info!(
            "upgraded from={} to={} children={} listeners={}",
            state.from,
            upgrade::this_version(),
            state.children.len(),
            state.listeners.len()
        ),
    }
}
