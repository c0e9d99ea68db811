//! The loop's side of an upgrade in place (superd.8, UPGRADING): what goes
//! into the state before the `execve`, and how the new image takes it
//! back. The format is `crate::upgrade::state`'s; the exec and the
//! rollback are `crate::upgrade`'s.

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::Token;
use mio::unix::SourceFd;
use mio::{Interest, Poll};

use super::{
    Child, Daemon, HeaderWait, Notifier, ServiceState, SessionEntry, Signals, Source, StartError,
    StderrPipe, Stream, Timer, quote,
};
use crate::builtins::{Carried, CarriedKind};
use crate::config::Config;
use crate::listener::Peer;
use crate::listener_inherit::Inherited;
use crate::tree::ConnCgroup;
use crate::upgrade::state::{
    ChildState, HeaderState, ListenerState, PeerState, PidFileState, PipeState, ServiceCounters,
    SessionKind, SessionState,
};
use crate::upgrade::{self, Context, State};

/// How long an upgrade waits for children still on their way to exec
/// (their report pipes cannot be carried): then it is refused.
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
            let t = self.token();
            if let Err(e) = register(&self.poll, fd, t, Interest::READABLE) {
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

    /// Whether `token` is one of the running check's descriptors.
    pub(super) fn is_upgrade_check(&self, token: Token) -> bool {
        self.upgrade
            .as_ref()
            .and_then(|c| c.check.as_ref())
            .is_some_and(|(_, tokens)| tokens.contains(&token))
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
        match verdict {
            Ok(()) => self.upgrade_pending = Some(Instant::now() + EXEC_WAIT),
            Err(why) => warn!("upgrade refused reason={}", quote(&why)),
        }
    }

    fn unwatch_check(&self, check: &upgrade::check::Check, tokens: &[Token]) {
        for (fd, _) in check.fds().into_iter().zip(tokens) {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
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
        if !self.execs.is_empty() {
            if now < until {
                return;
            }
            self.upgrade_pending = None;
            self.drain_all();
            warn!(
                "upgrade refused reason={}",
                quote(&format!(
                    "{} children still in exec after {}s",
                    self.execs.len(),
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
            self.kill_lingering(l, reused);
        }
        for st in self.services.values_mut() {
            st.pending = None;
        }
        let state = self.export_state(&ctx);
        crate::logging::flush();
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
        let name_of = |sid: u64| self.services.get(&sid).map(|st| st.service.name.clone());
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
                .map(|std::cmp::Reverse(t)| t)
                .filter(|(_, t)| want(t))
                .map(|(at, _)| nanos(at.saturating_duration_since(now)))
                .min()
        };
        for (pid, c) in self.children.iter() {
            let serial = c.serial;
            s.children.push(ChildState {
                pid,
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
                listen_fds: self
                    .listen_fds_children
                    .get(&pid)
                    .map(|ts| ts.iter().filter_map(fd_of).collect())
                    .unwrap_or_default(),
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
                pid: p.pid,
                pending: p.buf.clone(),
                cut: p.cut,
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

    /// The new image's start after an upgrade: the listeners of `state`
    /// are adopted by address and service as inherited sockets are (a
    /// changed configuration binds what is new and closes what is gone,
    /// as a reload does), then its children, pipes and counters are taken
    /// back. Every descriptor the state names is close-on-exec again.
    pub fn restore(
        config: Config,
        source: Source,
        grace: Duration,
        signals: Signals,
        notifier: Notifier,
        state: &State,
    ) -> Result<Daemon, StartError> {
        let adopted = Adopted {
            busy: state
                .children
                .iter()
                .flat_map(|c| c.wait_listener_fd.iter().chain(c.listen_fds.iter()))
                .copied()
                .collect(),
            own: state
                .listeners
                .iter()
                .filter(|l| !l.inherited)
                .map(|l| l.fd)
                .collect(),
            hold_accepts: true,
        };
        let inherited: Vec<Inherited> = state
            .listeners
            .iter()
            .filter_map(|l| {
                upgrade::take_fd(l.fd).map(|fd| Inherited {
                    fd,
                    name: Some(l.service.clone()),
                })
            })
            .collect();
        let mut d = Daemon::start_with(
            config, source, grace, signals, notifier, inherited, &adopted,
        )?;
        d.started_unix = state.started_unix;
        d.reloads_ok = state.reloads_ok;
        d.reloads_failed = state.reloads_failed;
        d.next_serial = d.next_serial.max(state.next_serial);
        for l in &state.listeners {
            let Some(next) = l.chargen_next else {
                continue;
            };
            let udp = d
                .listeners
                .values_mut()
                .find(|e| e.listener.fd.as_raw_fd() == l.fd)
                .and_then(|e| e.udp.as_mut())
                .filter(|u| u.kind() == crate::service::Builtin::Chargen);
            if let Some(u) = udp {
                u.set_rotation(next);
            }
        }
        for sc in &state.services {
            let Some(st) = d
                .services
                .values_mut()
                .find(|st| st.service.name == sc.service)
            else {
                continue;
            };
            let c = &mut st.counters;
            c.accepted = sc.accepted;
            c.served = sc.served;
            for (to, from) in c.refused.iter_mut().zip(&sc.refused) {
                *to = *from;
            }
            c.exec_failures = sc.exec_failures;
            for (to, from) in c.exits.iter_mut().zip(&sc.exits) {
                *to = *from;
            }
            if let Some(h) =
                crate::metrics::Histogram::carried(&sc.duration_buckets, sc.duration_sum)
            {
                c.duration = h;
            }
            for (&r, &ns) in crate::metrics::PauseReason::ALL.iter().zip(&sc.paused_ns) {
                c.paused.carry(r, Duration::from_nanos(ns));
            }
            if let Some(fill) = sc.rate_fill {
                // As of the writing: the exec's time earns tokens too.
                let now = Instant::now();
                let written = now.checked_sub(state.since_written()).unwrap_or(now);
                st.limits.set_rate_fill(fill, written);
            }
        }
        // Ages and deadlines are as of the writing: `now` is that instant
        // here (the exec took some time since).
        let now = Instant::now();
        let now = now.checked_sub(state.since_written()).unwrap_or(now);
        let token_of = |d: &Daemon, fd: RawFd| {
            d.listeners
                .iter()
                .find(|(_, e)| e.listener.fd.as_raw_fd() == fd)
                .map(|(t, _)| *t)
        };
        for c in &state.children {
            let sid = d.service_named(&c.service).map_or(0, |st| st.id);
            let peer = c.peer.as_ref().map(peer_of);
            let source = peer.and_then(|p| source_of(p, c.per_source));
            let wait_listener = c.wait_listener_fd.and_then(|fd| token_of(&d, fd));
            if !c.listen_fds.is_empty() {
                let tokens: Vec<Token> = c
                    .listen_fds
                    .iter()
                    .filter_map(|fd| token_of(&d, *fd))
                    .collect();
                d.listen_fds_children.insert(c.pid, tokens);
            }
            let success = d
                .services
                .get(&sid)
                .map(|st| st.service.success_status)
                .unwrap_or_default();
            if let Some(st) = d.services.get_mut(&sid) {
                st.limits.connection_started();
                if let Some(key) = source {
                    let _ = st.limits.admit_source(key);
                }
            }
            let age = Duration::from_nanos(c.age_ns);
            // A pidfd of this image's for the carried child, watched as
            // for a child started here; without one the sweep reaps it.
            let pidfd = if crate::spawn::pidfd_works() {
                crate::sys::pidfd_open(c.pid).ok().and_then(|fd| {
                    let t = d.token();
                    d.poll
                        .registry()
                        .register(&mut SourceFd(&fd.as_raw_fd()), t, Interest::READABLE)
                        .ok()?;
                    d.pidfds.insert(t, c.pid);
                    Some((fd, t))
                })
            } else {
                None
            };
            d.children.insert(
                nix::unistd::Pid::from_raw(c.pid),
                Child {
                    service_id: sid,
                    service: c.service.clone(),
                    peer,
                    source,
                    started: now.checked_sub(age).unwrap_or(now),
                    serial: c.serial,
                    wait_listener,
                    timed_out: c.timed_out,
                    killed: c.killed,
                    exec_failed: c.exec_failed,
                    exec: None,
                    success,
                    cgroup: c.cgroup.clone().map(|p| ConnCgroup::at(p.into())),
                    strays: Vec::new(),
                    pidfd,
                    // Not carried: a proxied child logs its client only.
                    proxy: None,
                },
            );
            if let Some(ns) = c.timeout_in_ns {
                d.timer(
                    now + Duration::from_nanos(ns),
                    Timer::ChildTimeout(c.pid, c.serial),
                );
            }
            if let Some(ns) = c.kill_in_ns {
                d.timer(
                    now + Duration::from_nanos(ns),
                    Timer::ChildKill(c.pid, c.serial),
                );
            }
        }
        let in_use: Vec<std::path::PathBuf> = state
            .children
            .iter()
            .filter_map(|c| c.cgroup.clone().map(Into::into))
            .collect();
        let in_use: Vec<&std::path::Path> = in_use.iter().map(|p| p.as_path()).collect();
        d.fence.adopt_existing(&in_use);
        for p in &state.pipes {
            let Some(fd) = upgrade::take_fd(p.fd) else {
                continue;
            };
            let token = d.token();
            if let Err(e) = register(&d.poll, fd.as_raw_fd(), token, Interest::READABLE) {
                error!(
                    "cannot watch stderr service={} pid={} error={}",
                    p.service,
                    p.pid,
                    quote(&e.to_string())
                );
                continue;
            }
            d.pipes.insert(
                token,
                StderrPipe {
                    file: std::fs::File::from(fd),
                    service: p.service.clone(),
                    pid: p.pid,
                    buf: p.pending.clone(),
                    cut: p.cut,
                },
            );
        }
        for ss in &state.sessions {
            d.restore_session(ss, now);
        }
        for h in &state.headers {
            d.restore_header(h, now);
        }
        // A child may have ended during the exec: its SIGCHLD is pending
        // on the new signalfd, but reap once anyway.
        d.reap_pending = true;
        // Everything is back (connection counts, rate fills): accept what
        // waited in the backlogs.
        d.upgrade_pending = None;
        d.drain_all();
        Ok(d)
    }
}

impl Daemon {
    /// The service of this image with the name a state gives (ids are
    /// each image's own).
    fn service_named(&self, name: &str) -> Option<&ServiceState> {
        self.services.values().find(|st| st.service.name == name)
    }

    /// A builtin session carried across the upgrade, watched again and
    /// pumped at once (what its peer sent meanwhile raises no new edge).
    fn restore_session(&mut self, ss: &SessionState, now: Instant) {
        let Some(fd) = upgrade::take_fd(ss.fd) else {
            return;
        };
        let sid = self.service_named(&ss.service).map_or(0, |st| st.id);
        let peer = peer_of(&ss.peer);
        let stream = match peer {
            Peer::Inet(_) => Stream::Tcp(std::net::TcpStream::from(fd)),
            Peer::Unix { .. } => Stream::Unix(std::os::unix::net::UnixStream::from(fd)),
        };
        let source = source_of(peer, ss.per_source);
        if let Some(st) = self.services.get_mut(&sid) {
            st.limits.connection_started();
            if let Some(key) = source {
                let _ = st.limits.admit_source(key);
            }
        }
        let kind = match &ss.kind {
            SessionKind::Echo { pending } => CarriedKind::Echo(pending.clone()),
            SessionKind::Discard => CarriedKind::Discard,
            SessionKind::Reply { data, sent } => CarriedKind::Reply {
                data: data.clone(),
                sent: *sent,
            },
            SessionKind::Chargen { pos } => CarriedKind::Chargen(*pos),
        };
        let session = crate::builtins::Session::carried(Carried {
            kind,
            read_eof: ss.read_eof,
            bytes_in: ss.bytes_in,
            bytes_out: ss.bytes_out,
        });
        let ago = |ns| now.checked_sub(Duration::from_nanos(ns)).unwrap_or(now);
        let entry = SessionEntry {
            session,
            stream,
            service_id: sid,
            service: ss.service.clone(),
            peer,
            source,
            started: ago(ss.age_ns),
            last_activity: ago(ss.idle_ns),
            idle_timeout: Duration::from_nanos(ss.idle_timeout_ns),
            proxy: None,
        };
        let token = self.token();
        let raw = match &entry.stream {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        };
        if let Err(e) = register(
            &self.poll,
            raw,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            error!(
                "cannot watch session service={} error={}",
                ss.service,
                quote(&e.to_string())
            );
            self.end_session_entry(entry, Some("upgrade"));
            return;
        }
        self.timer(
            entry.last_activity + entry.idle_timeout,
            Timer::SessionIdle(token),
        );
        self.sessions.insert(token, entry);
        self.ready.push(token);
    }

    /// A connection that waited for its PROXY header across the upgrade,
    /// watched again under what was left of its `proxy_timeout`, and read
    /// at once (what its proxy sent meanwhile raises no new edge). A
    /// service gone, or no longer reading headers, closes it as a reload
    /// would.
    fn restore_header(&mut self, h: &HeaderState, now: Instant) {
        let Some(fd) = upgrade::take_fd(h.fd) else {
            return;
        };
        let found = self.service_named(&h.service).and_then(|st| {
            st.service
                .proxy
                .as_ref()
                .map(|p| (st.id, p.accept, p.timeout))
        });
        let Some((sid, accept, timeout)) = found else {
            return;
        };
        if let Some(st) = self.services.get_mut(&sid) {
            st.limits.connection_started();
        }
        let token = self.token();
        let registered = register(&self.poll, fd.as_raw_fd(), token, Interest::READABLE);
        self.headers.insert(
            token,
            HeaderWait {
                conn: crate::listener::Accepted {
                    fd,
                    peer: peer_of(&h.peer),
                    local: h.local,
                    proxy: None,
                },
                service_id: sid,
                accept,
                watched: true,
            },
        );
        if let Err(e) = registered {
            self.refuse_header(token, &format!("cannot watch: {e}"));
            return;
        }
        let left = h.timeout_in_ns.map_or(timeout, Duration::from_nanos);
        self.timer(now + left, Timer::ProxyHeader(token));
        self.ready.push(token);
    }
}

fn peer_state(p: Peer) -> PeerState {
    match p {
        Peer::Inet(a) => PeerState::Inet(a),
        Peer::Unix { pid, uid, gid } => PeerState::Unix { pid, uid, gid },
    }
}

fn peer_of(p: &PeerState) -> Peer {
    match *p {
        PeerState::Inet(a) => Peer::Inet(a),
        PeerState::Unix { pid, uid, gid } => Peer::Unix { pid, uid, gid },
    }
}

/// The per-source key of a connection that held a slot.
fn source_of(peer: Peer, per_source: bool) -> Option<crate::limits::SourceKey> {
    match peer {
        Peer::Inet(a) if per_source => Some(crate::limits::source_key(a.ip())),
        _ => None,
    }
}

fn register(poll: &Poll, fd: RawFd, token: Token, interest: Interest) -> std::io::Result<()> {
    poll.registry()
        .register(&mut SourceFd(&fd), token, interest)
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
