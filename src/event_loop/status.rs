//! What status, SIGUSR1 and metrics show: a snapshot of the services,
//! children and sessions (superd.8, STATUS AND METRICS), and the `status`
//! lines of SIGUSR1.

use std::os::fd::AsFd;
use std::time::Instant;

use log::info;
use mio::Token;

use crate::access::Refusal;
use crate::children;
use crate::logging::quote;
use crate::metrics::{self, PauseReason};
use crate::service::{Program, SocketType};

use super::Daemon;

impl Daemon {
    /// What status, SIGUSR1 and metrics show, taken now (never on the
    /// accept path: a status or metrics connection, or SIGUSR1, asks).
    pub(super) fn snapshot(&self) -> metrics::Snapshot {
        let now = Instant::now();
        // The listeners a wait child holds right now: a `pass: listen_fds`
        // child holds every socket of its service.
        let held: std::collections::HashSet<Token> = self
            .children
            .iter()
            .flat_map(|(_, c)| c.wait_listener.iter().chain(&c.listen_fds))
            .copied()
            .collect();
        let services = self
            .order
            .iter()
            .filter_map(|id| self.services.get(id))
            .map(|st| {
                let s = &st.service;
                let mut listeners: Vec<metrics::ListenerView> = st
                    .listeners
                    .iter()
                    .filter_map(|t| self.listeners.get(t))
                    .map(|e| metrics::ListenerView {
                        address: e.listener.local.clone(),
                        queue: (e.listener.key.socket == SocketType::Stream
                            && !e.listener.key.addr.is_unix())
                        .then(|| crate::sys::tcp_listen_queue(e.listener.fd.as_fd()))
                        .flatten(),
                    })
                    .collect();
                if listeners.is_empty() {
                    // Not listening (disabled): the addresses it is
                    // declared on.
                    listeners = s
                        .listen
                        .iter()
                        .map(|a| metrics::ListenerView {
                            address: a.to_string(),
                            queue: None,
                        })
                        .collect();
                }
                metrics::ServiceView {
                    name: s.name.clone(),
                    socket: s.socket.as_str(),
                    program: match &s.program {
                        Program::Exec { path, .. } => path.display().to_string(),
                        Program::Builtin(b) => format!("builtin {b}"),
                    },
                    listeners,
                    state: self.service_state(st, &held, now),
                    active: st.limits.active(),
                    max_connections: st.limits.max_connections(),
                    // Accepted, not yet served or refused: children on
                    // their way to exec, a connection held after fork
                    // failed, and connections waiting for (or admitted
                    // after) their PROXY header.
                    pending: st.pre_exec as u64
                        + u64::from(st.pending.is_some())
                        + st.proxied.len() as u64
                        + self
                            .headers
                            .values()
                            .filter(|w| w.service_id == st.id)
                            .count() as u64,
                    counters: st.counters.clone(),
                    paused_seconds: PauseReason::ALL.map(|r| st.counters.paused.seconds(r, now)),
                }
            })
            .collect();
        let mut children: Vec<metrics::ConnectionView> = self
            .children
            .iter()
            .map(|(pid, c)| metrics::ConnectionView {
                service: c.service.clone(),
                pid: Some(pid.0),
                peer: c.peer.map(|p| p.to_string()),
                proxy: c.proxy.map(|p| p.to_string()),
                age: now.saturating_duration_since(c.started),
            })
            .collect();
        children.sort_by_key(|c| c.pid);
        let mut sessions: Vec<metrics::ConnectionView> = self
            .sessions
            .values()
            .map(|s| metrics::ConnectionView {
                service: s.service.clone(),
                pid: None,
                peer: Some(s.peer.to_string()),
                proxy: s.proxy.map(|p| p.to_string()),
                age: now.saturating_duration_since(s.started),
            })
            .collect();
        sessions.sort_by_key(|s| std::cmp::Reverse(s.age));
        metrics::Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            start_time: self.started_unix,
            reloads_ok: self.reloads_ok,
            reloads_failed: self.reloads_failed,
            log_lines_dropped: crate::logging::dropped_total(),
            services,
            children,
            sessions,
            process: crate::metrics::process_view(),
        }
    }

    /// The `status` lines of SIGUSR1 (superd(8), LOGS).
    pub(super) fn log_status(&self) {
        let snap = self.snapshot();
        info!(
            "status services={} children={} sessions={} proxy_headers={}",
            snap.services.len(),
            snap.children.len(),
            snap.sessions.len(),
            self.headers.len()
        );
        for s in &snap.services {
            let c = &s.counters;
            let addrs: Vec<&str> = s.listeners.iter().map(|l| l.address.as_str()).collect();
            let mut line = format!(
                "status service={} addr={} state={} active={} accepted={} served={}",
                s.name,
                if addrs.is_empty() {
                    "-".to_string()
                } else {
                    quote(&addrs.join(","))
                },
                s.state.as_str(),
                s.active,
                c.accepted,
                c.served
            );
            for r in Refusal::ALL {
                line.push_str(&format!(" refused_{}={}", r.as_str(), c.refused_by(r)));
            }
            line.push_str(&format!(
                " exec_failures={} pending={}",
                c.exec_failures, s.pending
            ));
            for o in children::Outcome::ALL {
                line.push_str(&format!(" exits_{}={}", o.as_str(), c.exits_by(o)));
            }
            for (r, secs) in PauseReason::ALL.iter().zip(s.paused_seconds) {
                line.push_str(&format!(" paused_{}={secs:.3}s", r.as_str()));
            }
            info!("{line}");
        }
        for c in &snap.children {
            info!(
                "status child service={} pid={} peer={}{} age={}",
                c.service,
                c.pid.unwrap_or(0),
                c.peer.as_deref().unwrap_or("-"),
                c.proxy
                    .as_deref()
                    .map(|p| format!(" proxy={p}"))
                    .unwrap_or_default(),
                children::secs(c.age)
            );
        }
        for s in &snap.sessions {
            info!(
                "status session service={} peer={}{} age={}",
                s.service,
                s.peer.as_deref().unwrap_or("-"),
                s.proxy
                    .as_deref()
                    .map(|p| format!(" proxy={p}"))
                    .unwrap_or_default(),
                children::secs(s.age)
            );
        }
    }
}
