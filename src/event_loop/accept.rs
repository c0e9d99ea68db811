//! Accepting: draining a listener within its service's limits, the access
//! rules and per-source limit of a new connection, and starting its child
//! or builtin session.

use std::io;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::Instant;

use log::{debug, warn};
use mio::Token;
use nix::errno::Errno;

use crate::access;
use crate::builtins;
use crate::limits::source_key;
use crate::listener::{self, Accepted, Listener, Peer};
use crate::logging::quote;
use crate::metrics::PauseReason;
use crate::plan::{ConnInfo, SpawnPlan};
use crate::service::{Program, SocketType, canonical_addr};
use crate::spawn;
use crate::tree::{ConnCgroup, Fence};

use super::exec::{Serving, wants_wake};
use super::pin;
use super::services::Pause;
use super::timers::Timer;
use super::{Daemon, proxy_field};
use crate::service::ServiceId;

/// Connections accepted on one listener before the loop looks at anything
/// else.
pub(super) const ACCEPT_BATCH: usize = 64;

/// A listening or bound socket as the loop runs it.
pub(super) struct ListenerEntry {
    pub(super) listener: Listener,
    pub(super) service_id: ServiceId,
    /// Handed to a `wait` child: not watched until it exits.
    pub(super) busy: bool,
    /// The datagram server of a UDP builtin.
    pub(super) udp: Option<builtins::UdpServer>,
}

/// An accept error that is about one connection only (it is gone; the next
/// may be fine): accept(2) says to retry on these. Any other error that is
/// not a shortage of resources would come back at every call.
pub(super) fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::ETIMEDOUT
                | libc::ECONNRESET
        )
    )
}

pub(super) fn is_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl Daemon {
    /// Accepts on `token` until the backlog is empty or a limit says stop.
    pub(super) fn drain_listener(&mut self, token: Token) {
        if self.upgrade_pending.is_some() {
            // An upgrade waits for the children in exec: new connections
            // wait in the backlog (the next image drains every listener).
            return;
        }
        let mut accepted = 0;
        loop {
            // A flood on one listener must not starve the others, signals
            // or reaping: after a batch it waits its turn on the ready list
            // (no new edge would come for what is already queued).
            if accepted == ACCEPT_BATCH {
                self.ready.push(token);
                return;
            }
            let Some(entry) = self.listeners.get(&token) else {
                return;
            };
            if entry.busy {
                return;
            }
            let sid = entry.service_id;
            let Some(st) = self.services.get_mut(&sid) else {
                return;
            };
            let now = Instant::now();
            if let Some((_, until)) = st.paused {
                if now < until {
                    return;
                }
                st.paused = None;
            }
            // Connections whose PROXY header is read go first: they hold
            // their max_connections slots already.
            if !st.proxied.is_empty() && !st.gated() {
                let conn = st.proxied.pop_front().expect("not empty");
                st.limits.connection_ended(None);
                self.start_connection(sid, conn);
                continue;
            }
            if st.limits.at_capacity() {
                // superd stops watching the listener: a pause, until a
                // connection ends (connection_ended).
                st.counters
                    .paused
                    .begin(PauseReason::MaxConnections, now, None);
                return;
            }
            if st.counters.paused.is_open(PauseReason::MaxConnections) {
                // Below the limit again (a reload raised it).
                st.counters.paused.end(PauseReason::MaxConnections, now);
            }
            if st.gated() {
                // Enough of its children are on their way to exec: the
                // next connection waits in the backlog, in order, rather
                // than in the scheduler's run queue (see PRE_EXEC_MAX). A
                // service whose last exec failed has one at a time: the
                // next failure must be known before another start.
                return;
            }
            if let Some(conn) = st.pending.take() {
                self.start_connection(sid, *conn);
                continue;
            }
            let service = st.service.clone();
            let entry = self.listeners.get(&token).expect("checked above");
            if service.wait && service.builtin().is_none() {
                // The listening/bound socket itself goes to one child.
                self.spawn_wait(sid, token);
                return;
            }
            if entry.listener.key.socket == SocketType::Dgram {
                self.serve_udp(sid, token);
                return;
            }
            if let Err(at) = st.limits.rate_ready(now) {
                st.pause(Pause::Rate, at, now);
                self.timer(at, Timer::Resume(sid));
                return;
            }
            match entry.listener.accept() {
                Ok(conn) => {
                    accepted += 1;
                    let st = self.services.get_mut(&sid).expect("live");
                    let _ = st.limits.take_rate_token(now);
                    st.counters.accepted += 1;
                    debug!("accept service={} peer={}", service.name, conn.peer);
                    if service.proxy.is_some() {
                        if let Some((sid, conn)) = self.wait_header(sid, conn) {
                            self.start_connection(sid, conn);
                        }
                    } else if self.admit(sid, &conn) {
                        self.start_connection(sid, conn);
                    } else {
                        self.close_after_log(conn.fd);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_resource_error(&e) => {
                    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
                    self.pause_for_resources(sid, "accept", errno);
                    return;
                }
                // ECONNABORTED and friends: that connection is gone, go on.
                Err(e) if is_connection_error(&e) => debug!(
                    "accept failed service={} error={}",
                    service.name,
                    quote(&e.to_string())
                ),
                // Anything else (EINVAL on a socket no longer listening,
                // an LSM's EACCES) would fail again at once: pause, so
                // the loop goes on with signals and other services.
                Err(e) => {
                    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
                    self.pause_accepting(sid, Pause::AcceptError, "accept", errno);
                    return;
                }
            }
        }
    }

    /// Access rules and the per-source limit; `false` when refused (the
    /// connection is closed when dropped by the caller).
    pub(super) fn admit(&mut self, sid: ServiceId, conn: &Accepted) -> bool {
        let st = self.services.get_mut(&sid).expect("live");
        let Some(ip) = conn.peer.ip() else {
            return true;
        };
        let verdict = access::check(ip, st.service.only_from.as_deref(), &st.service.deny_from)
            .and_then(|()| st.limits.admit_source(source_key(ip)));
        match verdict {
            Ok(()) => true,
            Err(reason) => {
                st.counters.refuse(reason);
                warn!(
                    "refused service={} peer={}{} reason={}",
                    st.service.name,
                    conn.peer,
                    proxy_field(conn.proxy.as_deref().map(|r| r.proxy)),
                    reason.as_str()
                );
                if let Some(msg) = &st.service.refuse_message {
                    listener::send_refusal(conn.fd.as_fd(), msg);
                }
                false
            }
        }
    }

    /// Starts a child or a builtin session for an admitted connection.
    pub(super) fn start_connection(&mut self, sid: ServiceId, conn: Accepted) {
        let st = self.services.get_mut(&sid).expect("live");
        let service = st.service.clone();
        let source = conn.peer.ip().map(source_key);
        if matches!(conn.peer, Peer::Inet(_)) && service.socket == SocketType::Stream {
            listener::set_connection_options(conn.fd.as_fd(), service.keepalive, service.nodelay);
        }
        match &service.program {
            Program::Builtin(kind) => {
                st.limits.connection_started();
                st.counters.served += 1;
                self.start_session(sid, &service, *kind, conn, source);
            }
            Program::Exec { .. } => {
                let plan = st.plan.clone().expect("exec services have a plan");
                let local = |remote| {
                    conn.local
                        .or_else(|| listener::local_inet(conn.fd.as_fd()))
                        .unwrap_or_else(|| canonical_addr(remote))
                };
                let info = match (conn.peer, conn.proxy.as_deref()) {
                    (Peer::Inet(remote), None) => ConnInfo::Tcp {
                        remote,
                        local: local(remote),
                    },
                    (Peer::Inet(remote), Some(relayed)) => ConnInfo::TcpProxied {
                        remote,
                        local: local(remote),
                        proxy: &relayed.vars,
                    },
                    (Peer::Unix { pid, uid, gid }, _) => ConnInfo::Unix { pid, uid, gid },
                };
                let wake = wants_wake(st);
                // What was logged about this connection is written before
                // its program can answer.
                crate::logging::flush();
                // With no other child to look after, the child starts on
                // superd's CPU (pin.rs); with others, superd and its
                // children are the scheduler's to spread.
                let now = Instant::now();
                let cpus = if self.children.len() <= 1 {
                    let (cpus, pinned) = self.pin.for_lone_start(now);
                    if pinned {
                        self.timer(now + pin::PIN_WINDOW, Timer::Unpin);
                    }
                    cpus
                } else {
                    self.pin.for_busy_start(now);
                    None
                };
                match spawn_child(&mut self.fence, &plan, conn.fd.as_fd(), &info, wake, cpus) {
                    Ok((spawned, cgroup)) => {
                        let st = self.services.get_mut(&sid).expect("live");
                        st.limits.connection_started();
                        let serving = Serving {
                            peer: Some(conn.peer),
                            proxy: conn.proxy.map(|r| r.proxy),
                            source,
                            conn: Some(conn.fd),
                            cgroup,
                            ..Serving::default()
                        };
                        self.child_started(sid, &service, spawned, serving);
                    }
                    Err(e) => {
                        // fork failed: keep the connection, with its
                        // per-source slot, and start it first when the
                        // pause ends.
                        let st = self.services.get_mut(&sid).expect("live");
                        st.pending = Some(Box::new(conn));
                        self.pause_for_resources(sid, "fork", e);
                    }
                }
            }
        }
    }
}

/// Starts a child for a connection, in a new cgroup of its own when there
/// are cgroups (see crate::tree), with a wake pipe if `wake` (see
/// `spawn::spawn_with_wake`). If the kernel refuses that cgroup for
/// another reason than a lack of resources, the child starts without it.
pub(super) fn spawn_child(
    fence: &mut Fence,
    plan: &Rc<SpawnPlan>,
    sock: std::os::fd::BorrowedFd<'_>,
    info: &ConnInfo,
    wake: bool,
    cpus: Option<crate::sys::CpuMask>,
) -> Result<(spawn::Spawned, Option<ConnCgroup>), Errno> {
    start_in_cgroup(fence, |cgroup| {
        spawn::spawn_with_wake(plan, sock, info, cgroup, wake, cpus)
    })
}

/// Runs `start` with a cgroup of the child's own when the fence has one
/// (superd(8), PROCESS TREES), or without one when there is none or the
/// kernel refuses it (other than `EAGAIN`/`ENOMEM`, which are the
/// caller's to handle).
pub(super) fn start_in_cgroup(
    fence: &mut Fence,
    start: impl Fn(Option<std::os::fd::BorrowedFd<'_>>) -> Result<spawn::Spawned, Errno>,
) -> Result<(spawn::Spawned, Option<ConnCgroup>), Errno> {
    let Some(mut cgroup) = fence.prepare() else {
        return start(None).map(|s| (s, None));
    };
    match start(cgroup.dir()) {
        Ok(s) => {
            cgroup.started();
            Ok((s, Some(cgroup)))
        }
        Err(e) => {
            cgroup.remove();
            if matches!(e, Errno::EAGAIN | Errno::ENOMEM) {
                return Err(e);
            }
            fence.refused(&cgroup, e);
            start(None).map(|s| (s, None))
        }
    }
}
