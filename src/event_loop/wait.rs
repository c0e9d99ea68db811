//! `wait` mode: the listening socket itself (or, with `pass: listen_fds`,
//! every socket of the service) goes to one child, and comes back to the
//! loop when that child ends.

use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;
use std::time::Instant;

use log::warn;
use mio::{Interest, Token};
use nix::errno::Errno;
use nix::sys::socket;

use crate::access;
use crate::children;
use crate::listener;
use crate::plan::{ConnInfo, SpawnPlan};
use crate::service::{PassMode, Service, SocketType, StartMode};
use crate::spawn;

use super::Daemon;
use super::accept::{ACCEPT_BATCH, spawn_child, start_in_cgroup};
use super::builtin::log_refused_datagram;
use super::exec::Serving;
use super::services::Pause;
use super::timers::Timer;
use crate::limits::{LOOP_PAUSE, WAIT_STARTS_PER_SEC};
use crate::service::ServiceId;

impl Daemon {
    /// wait mode: hands the listening/bound socket to one child.
    pub(super) fn spawn_wait(&mut self, sid: ServiceId, token: Token) {
        let st = self.services.get(&sid).expect("live");
        let service = st.service.clone();
        let Some(plan) = st.plan.clone() else {
            return;
        };
        // pass: listen_fds: one child gets every socket of the service, so
        // none starts while another has them.
        let listen_fds = service.pass == PassMode::ListenFds;
        if listen_fds
            && st
                .listeners
                .iter()
                .any(|t| self.listeners.get(t).is_some_and(|e| e.busy))
        {
            return;
        }
        let at_start = service.start == StartMode::AtStart;
        let entry = self.listeners.get_mut(&token).expect("live");
        // Only when there is something to serve: a readable socket (or,
        // with start: at_start, at once).
        let mut pfd = [nix::poll::PollFd::new(
            entry.listener.fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if !at_start
            && !matches!(
                nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO),
                Ok(1)
            )
        {
            return;
        }
        let revents = pfd[0].revents().unwrap_or(nix::poll::PollFlags::empty());
        if !at_start && !revents.contains(nix::poll::PollFlags::POLLIN) {
            // Only a pending socket error (an ICMP report on a datagram
            // socket): reading SO_ERROR clears it; no child for that.
            let _ = socket::getsockopt(&entry.listener.fd, socket::sockopt::SocketError);
            return;
        }
        if !at_start
            && entry.listener.key.socket == SocketType::Dgram
            && (service.only_from.is_some() || !service.deny_from.is_empty())
            && !self.admit_datagram(sid, token)
        {
            return;
        }
        // `rate` paces a wait service's children as it paces accepts;
        // without one, a child that ends at once and leaves its socket
        // readable must not make a tight loop.
        let now = Instant::now();
        let st = self.services.get_mut(&sid).expect("live");
        if let Err(at) = st.limits.take_rate_token(now) {
            st.pause(Pause::Rate, at, now);
            self.timer(at, Timer::Resume(sid));
            return;
        }
        if service.rate.is_none() && !st.pacing.wait_start(now) {
            let until = now + LOOP_PAUSE;
            st.pause(Pause::Looping, until, now);
            // The datagrams its children leave unread would start the loop
            // again after every pause, for ever: they go, as xinetd
            // drains a UDP wait service's socket. (Connections waiting on
            // a stream socket stay: their clients can give up.)
            let entry = self.listeners.get(&token).expect("live");
            let dropped = if entry.listener.key.socket == SocketType::Dgram {
                listener::drain_datagrams(entry.listener.fd.as_fd())
            } else {
                0
            };
            warn!(
                "looping service={} starts={WAIT_STARTS_PER_SEC} interval=1s pause={} dropped={dropped}",
                service.name,
                children::secs(LOOP_PAUSE)
            );
            self.timer(until, Timer::Resume(sid));
            return;
        }
        if listen_fds {
            self.spawn_listen_fds(sid, token, &service, &plan);
            return;
        }
        let entry = self.listeners.get_mut(&token).expect("live");
        self.watch.deregister(entry.listener.fd.as_raw_fd());
        entry.busy = true;
        crate::logging::flush();
        let fd = entry.listener.fd.as_fd();
        // With a wake pipe: the datagram a failed UDP wait child leaves is
        // dropped only while the child is alive (see `exec_settled_at_exit`).
        // A wait child keeps superd's CPUs (pin.rs).
        self.pin.release();
        match spawn_child(&mut self.fence, &plan, fd, &ConnInfo::None, true, None) {
            Ok((spawned, cgroup)) => {
                let serving = Serving {
                    wait_listener: Some(token),
                    cgroup,
                    ..Serving::default()
                };
                self.wait_child_started(sid, &service, spawned, serving);
            }
            Err(e) => {
                self.resume_wait_listener(token);
                self.pause_for_resources(sid, "fork", e);
            }
        }
    }

    /// A wait child started: it holds a max_connections slot, and its
    /// socket counts as accepted.
    fn wait_child_started(
        &mut self,
        sid: ServiceId,
        service: &Rc<Service>,
        spawned: spawn::Spawned,
        serving: Serving,
    ) {
        let st = self.services.get_mut(&sid).expect("live");
        st.limits.connection_started();
        st.counters.accepted += 1;
        self.child_started(sid, service, spawned, serving);
    }

    /// wait mode with `pass: listen_fds`: every socket of the service, in
    /// `listen:` order, goes to one child; none is watched until it exits.
    pub(super) fn spawn_listen_fds(
        &mut self,
        sid: ServiceId,
        token: Token,
        service: &Rc<Service>,
        plan: &Rc<SpawnPlan>,
    ) {
        let tokens = self.services.get(&sid).expect("live").listeners.clone();
        for t in &tokens {
            if let Some(entry) = self.listeners.get_mut(t) {
                self.watch.deregister(entry.listener.fd.as_raw_fd());
                entry.busy = true;
            }
        }
        let fds: Vec<std::os::fd::BorrowedFd<'_>> = tokens
            .iter()
            .filter_map(|t| self.listeners.get(t))
            .map(|e| e.listener.fd.as_fd())
            .collect();
        crate::logging::flush();
        self.pin.release();
        let result = start_in_cgroup(&mut self.fence, |cgroup| {
            spawn::spawn_listen_fds(plan, &fds, &ConnInfo::None, cgroup)
        });
        match result {
            Ok((spawned, cgroup)) => {
                let serving = Serving {
                    wait_listener: Some(token),
                    listen_fds: tokens,
                    cgroup,
                    ..Serving::default()
                };
                self.wait_child_started(sid, service, spawned, serving);
            }
            Err(e) => {
                self.resume_listeners(tokens);
                self.pause_for_resources(sid, "fork", e);
            }
        }
    }

    /// UDP wait with access rules: the source of the datagram at the head
    /// of the queue is peeked (the child still reads it) and checked; a
    /// refused datagram is read and dropped, as xinetd does. `true` when
    /// the head may start a child; a batch of refusals at most per call.
    pub(super) fn admit_datagram(&mut self, sid: ServiceId, token: Token) -> bool {
        for _ in 0..ACCEPT_BATCH {
            let (Some(entry), Some(st)) = (self.listeners.get(&token), self.services.get_mut(&sid))
            else {
                return false;
            };
            let fd = entry.listener.fd.as_fd();
            let verdict = match listener::datagram_source(fd, true) {
                Ok(Some(peer)) => access::check(
                    peer.ip(),
                    st.service.only_from.as_deref(),
                    &st.service.deny_from,
                )
                .map_err(|r| (peer, r)),
                // No inet source (none on an inet socket): nothing to
                // check it against; it goes.
                Ok(None) => {
                    let _ = listener::datagram_source(fd, false);
                    continue;
                }
                Err(Errno::EAGAIN) => return false,
                // EINTR, or an ICMP report the read has cleared: again.
                Err(_) => continue,
            };
            let Err((peer, reason)) = verdict else {
                return true;
            };
            let _ = listener::datagram_source(fd, false);
            // Taken from the queue and refused: accepted, then refused
            // (metrics::Counters).
            st.counters.accepted += 1;
            st.counters.refuse(reason);
            log_refused_datagram(&mut st.refusal_log, &st.service.name, peer, reason);
        }
        self.ready.push(token);
        false
    }

    /// Gives the listeners of a `pass: listen_fds` child back to the loop
    /// after it ended: all of them before any is drained (a drain may
    /// start the next child, which takes them all again).
    pub(super) fn resume_listeners(&mut self, tokens: Vec<Token>) {
        let mut drain = Vec::new();
        for t in tokens {
            if let Some(entry) = self.listeners.get_mut(&t)
                && entry.busy
            {
                let _ = listener::set_nonblocking(entry.listener.fd.as_fd(), true);
                entry.busy = self
                    .watch
                    .register(entry.listener.fd.as_raw_fd(), t, Interest::READABLE)
                    .is_err();
                drain.push(t);
            }
        }
        for t in drain {
            self.drain_listener(t);
        }
    }

    /// Gives a `wait` listener back to the loop after its child ended.
    pub(super) fn resume_wait_listener(&mut self, token: Token) {
        self.resume_listeners(vec![token]);
    }
}
