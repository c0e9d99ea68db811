//! The new image's side of an upgrade in place (superd.8, UPGRADING): the
//! listeners, children, pipes, sessions, PROXY header waits and counters
//! of the state taken back. What goes into the state is `daemon.rs`'s.

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use log::error;
use mio::{Interest, Token};

use super::super::{
    Child, Daemon, HeaderWait, LineSplitter, Notifier, ServiceState, SessionEntry, Signals, Source,
    StderrPipe, Stream, Timer, Watched, quote,
};
use super::Adopted;
use crate::builtins::{Carried, CarriedKind};
use crate::children::Pid;
use crate::config::Config;
use crate::listener::Peer;
use crate::listener_inherit::Inherited;
use crate::service::ServiceId;
use crate::tree::ConnCgroup;
use crate::upgrade::state::{HeaderState, PeerState, SessionKind, SessionState};
use crate::upgrade::{self, State};

impl Daemon {
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
    ) -> Result<Daemon, crate::error::Error> {
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
            let sid = d.service_named(&c.service).map_or(ServiceId(0), |st| st.id);
            let peer = c.peer.as_ref().map(peer_of);
            let source = peer.and_then(|p| source_of(p, c.per_source));
            let wait_listener = c.wait_listener_fd.and_then(|fd| token_of(&d, fd));
            let listen_fds: Vec<Token> = c
                .listen_fds
                .iter()
                .filter_map(|fd| token_of(&d, *fd))
                .collect();
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
                    let t = d.watch.watch(fd.as_raw_fd(), Watched::Pidfd(Pid(c.pid)))?;
                    Some((fd, t))
                })
            } else {
                None
            };
            d.children.insert(
                Pid(c.pid),
                Child {
                    service_id: sid,
                    service: c.service.clone(),
                    peer,
                    source,
                    started: now.checked_sub(age).unwrap_or(now),
                    serial: c.serial,
                    wait_listener,
                    listen_fds,
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
                    Timer::ChildTimeout(Pid(c.pid), c.serial),
                );
            }
            if let Some(ns) = c.kill_in_ns {
                d.timer(
                    now + Duration::from_nanos(ns),
                    Timer::ChildKill(Pid(c.pid), c.serial),
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
            let token = d.watch.token(Watched::Stderr);
            if let Err(e) = d.watch.register(fd.as_raw_fd(), token, Interest::READABLE) {
                d.watch.forget(token);
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
                    pid: Pid(p.pid),
                    lines: LineSplitter::carried(p.pending.clone(), p.cut),
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

    /// The service of this image with the name a state gives (ids are
    /// each image's own).
    fn service_named(&self, name: &str) -> Option<&ServiceState> {
        self.services
            .values()
            .map(|st| &**st)
            .find(|st| st.service.name == name)
    }

    /// A builtin session carried across the upgrade, watched again and
    /// pumped at once (what its peer sent meanwhile raises no new edge).
    fn restore_session(&mut self, ss: &SessionState, now: Instant) {
        let Some(fd) = upgrade::take_fd(ss.fd) else {
            return;
        };
        let sid = self
            .service_named(&ss.service)
            .map_or(ServiceId(0), |st| st.id);
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
        let token = self.watch.token(Watched::Session);
        let raw = match &entry.stream {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        };
        if let Err(e) = self
            .watch
            .register(raw, token, Interest::READABLE | Interest::WRITABLE)
        {
            self.watch.forget(token);
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
        let token = self.watch.token(Watched::Header);
        let registered = self
            .watch
            .register(fd.as_raw_fd(), token, Interest::READABLE);
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
