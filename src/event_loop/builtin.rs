//! Builtin services as the loop serves them: TCP and unix sessions pumped
//! on readiness under the turn's byte budget, and UDP datagrams answered
//! from the listener.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::{Interest, Token};

use crate::access::{self, Refusal};
use crate::builtins;
use crate::children;
use crate::limits::{LogBudget, SourceKey};
use crate::listener::{self, Accepted, Peer};
use crate::logging::quote;
use crate::metrics;
use crate::service::{Service, canonical_addr};

use super::services::Pause;
use super::timers::Timer;
use super::watch::Watched;
use super::{Daemon, proxy_field};
use crate::service::ServiceId;

/// At most one `refused` line per service per interval for datagrams,
/// whose source anyone can forge (superd.8, LOGS).
pub(super) const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The stream a builtin session talks over.
pub(super) enum Stream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

/// A builtin session: its state, its stream, and what its `exit` line says.
pub(super) struct SessionEntry {
    pub(super) session: builtins::Session,
    pub(super) stream: Stream,
    pub(super) service_id: ServiceId,
    pub(super) service: String,
    pub(super) peer: Peer,
    /// Behind a proxy: the proxy's address (`peer` is the client).
    pub(super) proxy: Option<SocketAddr>,
    pub(super) source: Option<SourceKey>,
    pub(super) started: Instant,
    pub(super) last_activity: Instant,
    pub(super) idle_timeout: Duration,
}

/// The local zone's offset for daytime (the only builtin that shows a
/// local time); 0 for the others, which need no `localtime_r`.
pub(super) fn offset_for(kind: crate::service::Builtin, now: i64) -> i64 {
    match kind {
        crate::service::Builtin::Daytime => crate::sys::utc_offset(now),
        _ => 0,
    }
}

impl Daemon {
    /// A session's idle timer is due: it ends if it stayed idle for its
    /// whole `idle_timeout`, or the timer moves to its new end.
    pub(super) fn session_idle(&mut self, token: Token, now: Instant) {
        let Some(s) = self.sessions.get(&token) else {
            return;
        };
        let due = s.last_activity + s.idle_timeout;
        if due <= now {
            self.end_session(token, Some("idle_timeout"));
        } else {
            self.timer(due, Timer::SessionIdle(token));
        }
    }

    pub(super) fn start_session(
        &mut self,
        sid: ServiceId,
        service: &Rc<Service>,
        kind: crate::service::Builtin,
        conn: Accepted,
        source: Option<SourceKey>,
    ) {
        let now = Instant::now();
        let stream = match conn.peer {
            Peer::Inet(_) => Stream::Tcp(std::net::TcpStream::from(conn.fd)),
            Peer::Unix { .. } => Stream::Unix(std::os::unix::net::UnixStream::from(conn.fd)),
        };
        let mut entry = SessionEntry {
            session: match kind {
                crate::service::Builtin::Status => {
                    builtins::Session::reply(crate::status::document(&self.snapshot()))
                }
                _ => {
                    let t = builtins::now_unix();
                    builtins::Session::new(kind, t, offset_for(kind, t))
                }
            },
            stream,
            service_id: sid,
            service: service.name.clone(),
            peer: conn.peer,
            proxy: conn.proxy.map(|r| r.proxy),
            source,
            started: now,
            last_activity: now,
            idle_timeout: service.idle_timeout,
        };
        // Serve first: most sessions (daytime, time, a short echo) are over
        // in this one pump and never need epoll or a timer. Registering
        // afterwards is safe with edge triggering: epoll reports readiness
        // that already exists when the fd is added.
        let mut pump = match &mut entry.stream {
            Stream::Tcp(s) => entry.session.pump(s),
            Stream::Unix(s) => entry.session.pump(s),
        };
        if let Some(req) = entry.session.request() {
            entry.session.set_reply(self.metrics_reply(req));
            pump = match &mut entry.stream {
                Stream::Tcp(s) => entry.session.pump(s),
                Stream::Unix(s) => entry.session.pump(s),
            };
        }
        if pump.done {
            self.end_session_entry(entry, None);
            return;
        }
        let token = self.watch.token(Watched::Session);
        let raw = match &entry.stream {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        };
        if self
            .watch
            .register(raw, token, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            self.watch.forget(token);
            self.end_session_entry(entry, None);
            return;
        }
        self.sessions.insert(token, entry);
        self.timer(now + service.idle_timeout, Timer::SessionIdle(token));
        if pump.again {
            self.ready.push(token);
        }
    }

    /// The HTTP response to a metrics session's request.
    pub(super) fn metrics_reply(&self, req: metrics::Request) -> Vec<u8> {
        metrics::respond(req, || metrics::render(&self.snapshot()))
    }

    /// Moves a builtin session on; returns the bytes it moved.
    pub(super) fn pump_session(&mut self, token: Token) -> u64 {
        let Some(entry) = self.sessions.get_mut(&token) else {
            return 0;
        };
        let before = entry.session.bytes_in() + entry.session.bytes_out();
        let mut pump = match &mut entry.stream {
            Stream::Tcp(s) => entry.session.pump(s),
            Stream::Unix(s) => entry.session.pump(s),
        };
        // A metrics request complete: answered, and the answer pumped.
        let entry = match entry.session.request() {
            Some(req) => {
                let reply = self.metrics_reply(req);
                let entry = self.sessions.get_mut(&token).expect("present");
                entry.session.set_reply(reply);
                let again = match &mut entry.stream {
                    Stream::Tcp(s) => entry.session.pump(s),
                    Stream::Unix(s) => entry.session.pump(s),
                };
                pump = builtins::Pump {
                    progressed: pump.progressed || again.progressed,
                    ..again
                };
                entry
            }
            None => entry,
        };
        let moved = entry.session.bytes_in() + entry.session.bytes_out() - before;
        if pump.progressed {
            entry.last_activity = Instant::now();
        }
        if pump.done {
            self.end_session(token, None);
        } else if pump.again {
            self.ready.push(token);
        }
        moved
    }

    pub(super) fn end_session(&mut self, token: Token, reason: Option<&str>) {
        // No deregister: the session's fd is the only one referring to its
        // socket, and closing it (when the entry drops) takes it out of
        // the epoll set; an event already fetched for the token finds no
        // session and is ignored (tokens are not reused).
        if let Some(entry) = self.sessions.remove(&token) {
            self.watch.forget(token);
            self.end_session_entry(entry, reason);
        }
    }

    pub(super) fn end_session_entry(&mut self, entry: SessionEntry, reason: Option<&str>) {
        let now = Instant::now();
        // A session that ended on an I/O error (the peer reset it, say)
        // says which.
        let error = entry
            .session
            .error()
            .map(|e| format!(" error={}", quote(&e.to_string())))
            .unwrap_or_default();
        info!(
            "exit service={} peer={}{} status=0 duration={} bytes_in={} bytes_out={}{}{error}",
            entry.service,
            entry.peer,
            proxy_field(entry.proxy),
            children::secs(now.duration_since(entry.started)),
            entry.session.bytes_in(),
            entry.session.bytes_out(),
            reason.map(|r| format!(" reason={r}")).unwrap_or_default()
        );
        if let Some(st) = self.services.get_mut(&entry.service_id) {
            st.counters.exit(
                children::Outcome::Ok,
                now.saturating_duration_since(entry.started),
            );
        }
        self.connection_ended(entry.service_id, entry.source);
        self.close_after_log(match entry.stream {
            Stream::Tcp(s) => s.into(),
            Stream::Unix(s) => s.into(),
        });
    }

    /// Serves the queued datagrams of a UDP builtin (a budget at a time:
    /// `again` puts the listener on the ready list).
    pub(super) fn serve_udp(&mut self, sid: ServiceId, token: Token) {
        let Some(st) = self.services.get_mut(&sid) else {
            return;
        };
        let service = st.service.clone();
        let Some(entry) = self.listeners.get_mut(&token) else {
            return;
        };
        let Some(udp) = entry.udp.as_mut() else {
            return;
        };
        // `rate` counts datagrams here: over it, they wait in the socket's
        // receive buffer until a token is free, as connections wait in
        // the backlog.
        let now = Instant::now();
        if let Err(at) = st.limits.rate_ready(now) {
            st.pause(Pause::Rate, at, now);
            self.timer(at, Timer::Resume(sid));
            return;
        }
        let most = st
            .limits
            .rate_tokens(now)
            .map_or(usize::MAX, |n| n as usize);
        let sock = listener::FdDatagram(entry.listener.fd.as_fd());
        let counters = &mut st.counters;
        let refusal_log = &mut st.refusal_log;
        let t = builtins::now_unix();
        let offset = offset_for(udp.kind(), t);
        let drain = udp.serve(
            &sock,
            t,
            offset,
            most,
            &self.udp_ports,
            |peer| match access::check(peer.ip(), service.only_from.as_deref(), &service.deny_from)
            {
                Ok(()) => {
                    counters.accepted += 1;
                    counters.served += 1;
                    true
                }
                Err(reason) => {
                    counters.accepted += 1;
                    counters.refuse(reason);
                    log_refused_datagram(refusal_log, &service.name, peer, reason);
                    false
                }
            },
        );
        for d in &drain.datagrams {
            // Every datagram read takes a token, refused or not.
            let _ = st.limits.take_rate_token(now);
            debug!(
                "datagram service={} peer={} bytes_in={} outcome={:?}",
                service.name,
                canonical_addr(d.peer),
                d.bytes_in,
                d.outcome
            );
        }
        if drain.again {
            self.ready.push(token);
        }
    }
}

/// Logs a refused datagram within the service's budget: one line per
/// REFUSAL_LOG_INTERVAL, the next one saying how many were not logged.
pub(super) fn log_refused_datagram(
    budget: &mut LogBudget,
    service: &str,
    peer: SocketAddr,
    reason: Refusal,
) {
    if let Some(left_out) = budget.take(Instant::now(), REFUSAL_LOG_INTERVAL) {
        warn!(
            "refused service={service} peer={} reason={}{}",
            canonical_addr(peer),
            reason.as_str(),
            if left_out > 0 {
                format!(" suppressed={left_out}")
            } else {
                String::new()
            }
        );
    }
}
