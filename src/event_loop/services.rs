//! A service as the loop runs it (`ServiceState`): its plan, limits,
//! counters and pauses; the gate that holds starts while children are on
//! their way to exec, and the state name status and metrics show.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::warn;
use mio::Token;
use nix::errno::Errno;

use crate::children;
use crate::limits::{LogBudget, Pacing, ServiceLimits};
use crate::listener::Accepted;
use crate::logging::quote;
use crate::metrics::{self, Counters, PauseReason};
use crate::plan::SpawnPlan;
use crate::service::Service;
use crate::spawn::sandbox::Namespaces;

use super::Daemon;
use super::timers::Timer;
use crate::service::ServiceId;

/// How long accepting pauses when file descriptors or processes run out.
pub(super) const RESOURCE_PAUSE: Duration = Duration::from_millis(250);

/// At most one "out of resources" line per service in this interval.
pub(super) const RESOURCE_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Children of one service started and not yet past exec, at the most.
/// superd does not wait for a child's exec (it accepts and serves
/// meanwhile, and a child stuck in exec stalls nothing else), but starting
/// many at once only moves the queue from the listen backlog, which is in
/// order, to the scheduler's run queue, which is not: under load the
/// slowest connections then wait several times longer (p99 at 64
/// concurrent clients: 21 ms with 2, 30 ms with 3, 45 ms with 4, over
/// 200 ms unbounded).
pub(super) const PRE_EXEC_MAX: usize = 2;

/// Why a service is not accepting right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pause {
    Rate,
    Resources,
    ExecFailures,
    Looping,
    AcceptError,
}

impl Pause {
    pub(super) fn state(self) -> metrics::ServiceState {
        match self {
            Pause::Rate => metrics::ServiceState::PausedRate,
            Pause::Resources => metrics::ServiceState::PausedResources,
            Pause::ExecFailures => metrics::ServiceState::PausedExecFailures,
            Pause::Looping => metrics::ServiceState::PausedLooping,
            Pause::AcceptError => metrics::ServiceState::PausedAcceptError,
        }
    }

    /// The reason `superd_paused_seconds_total` counts it under: a
    /// program that keeps failing before exec is paced as a looping one
    /// is, and any accept error as a shortage of resources (superd.8,
    /// METRICS).
    pub(super) fn reason(self) -> PauseReason {
        match self {
            Pause::Rate => PauseReason::Rate,
            Pause::Resources | Pause::AcceptError => PauseReason::Resources,
            Pause::ExecFailures | Pause::Looping => PauseReason::Looping,
        }
    }
}

/// A service as the loop runs it: config, spawn plan, limits, counters.
pub(super) struct ServiceState {
    pub(super) id: ServiceId,
    pub(super) service: Rc<Service>,
    pub(super) plan: Option<Rc<SpawnPlan>>,
    /// The namespaces its children join (superd.yaml(5), "Fences"); the
    /// plan holds them too.
    pub(super) namespaces: Option<Rc<Namespaces>>,
    pub(super) limits: ServiceLimits,
    pub(super) counters: Counters,
    pub(super) listeners: Vec<Token>,
    pub(super) paused: Option<(Pause, Instant)>,
    /// Children started and not yet past exec (see PRE_EXEC_MAX).
    pub(super) pre_exec: usize,
    /// Exec failures in a row, and the pacing of failures and of `wait`
    /// starts.
    pub(super) pacing: Pacing,
    pub(super) last_resource_log: Option<Instant>,
    /// `refused` lines about datagrams (see REFUSAL_LOG_INTERVAL).
    pub(super) refusal_log: LogBudget,
    /// A connection accepted when fork failed, served first on resume
    /// (boxed: rare, and 80 bytes in each of 10,000 services otherwise).
    pub(super) pending: Option<Box<Accepted>>,
    /// `proxy_protocol`: connections whose header is read and admitted,
    /// waiting for their start while the service has enough children on
    /// their way to exec (see PRE_EXEC_MAX). Each holds a max_connections
    /// slot.
    pub(super) proxied: VecDeque<Accepted>,
}

impl ServiceState {
    /// Stops accepting until `until`, and starts counting the pause.
    pub(super) fn pause(&mut self, why: Pause, until: Instant, now: Instant) {
        self.paused = Some((why, until));
        self.counters.paused.begin(why.reason(), now, Some(until));
    }

    /// Whether a drain of its listeners would find nothing the loop does
    /// not already know of: accepting (no pause, below max_connections, no
    /// child holding the gate), with no connection of its own waiting
    /// (pending, proxied), and a nowait stream service (whose drains run
    /// to the end of the backlog, or put the listener on the ready list).
    /// Then every connection still queued comes with an event to come.
    pub(super) fn settled(&self) -> bool {
        self.paused.is_none()
            && self.pending.is_none()
            && self.proxied.is_empty()
            && !self.limits.at_capacity()
            && !self
                .counters
                .paused
                .is_open(metrics::PauseReason::MaxConnections)
            && self.pre_exec == 0
            && self.pacing.fail_streak() == 0
            && !self.service.wait
            && self.service.socket == crate::service::SocketType::Stream
    }

    /// Whether the next connection waits for a child on its way to exec
    /// (see `exec_gated`).
    pub(super) fn gated(&self) -> bool {
        exec_gated(self.pre_exec, self.pacing.fail_streak())
    }
}

/// Enough of a service's children (`pre_exec`) are on their way to exec
/// that the next connection waits (see PRE_EXEC_MAX); one at a time after
/// a failure (`fail_streak` failures in a row).
pub(super) fn exec_gated(pre_exec: usize, fail_streak: u32) -> bool {
    pre_exec >= PRE_EXEC_MAX || fail_streak > 0 && pre_exec > 0
}

/// The state a service shows (superd(8), STATUS AND METRICS), first match
/// wins: disabled; `child_running` when a wait child holds every socket
/// (superd does not watch them); the reason of a pause still running;
/// at max_connections; else listening.
pub(super) fn state_name(
    enabled: bool,
    all_held: bool,
    paused: Option<Pause>,
    at_capacity: bool,
) -> metrics::ServiceState {
    if !enabled {
        metrics::ServiceState::Disabled
    } else if all_held {
        metrics::ServiceState::ChildRunning
    } else if let Some(p) = paused {
        p.state()
    } else if at_capacity {
        metrics::ServiceState::PausedMaxConnections
    } else {
        metrics::ServiceState::Listening
    }
}

impl Daemon {
    /// A paused service's pause is over: accept again on its listeners
    /// (unless a newer pause runs past `now`).
    pub(super) fn resume_service(&mut self, sid: ServiceId, now: Instant) {
        let Some(st) = self.services.get(&sid) else {
            return;
        };
        if st.paused.is_some_and(|(_, until)| until > now) {
            return;
        }
        for t in st.listeners.clone() {
            self.drain_listener(t);
        }
    }

    /// Pauses accepting for RESOURCE_PAUSE after `errno` at `what`; the
    /// error reads as in every other line (`exec failed`): strerror alone.
    pub(super) fn pause_for_resources(&mut self, sid: ServiceId, what: &str, errno: Errno) {
        self.pause_accepting(sid, Pause::Resources, what, errno);
    }

    /// Pauses accepting on `sid` for RESOURCE_PAUSE after `errno` at
    /// `what`, logged at most once per RESOURCE_LOG_INTERVAL.
    pub(super) fn pause_accepting(&mut self, sid: ServiceId, why: Pause, what: &str, errno: Errno) {
        let now = Instant::now();
        let until = now + RESOURCE_PAUSE;
        let Some(st) = self.services.get_mut(&sid) else {
            return;
        };
        st.pause(why, until, now);
        let log_now = st
            .last_resource_log
            .is_none_or(|t| now.duration_since(t) >= RESOURCE_LOG_INTERVAL);
        if log_now {
            st.last_resource_log = Some(now);
            if why == Pause::Resources {
                warn!(
                    "out of resources service={} step={what} error={} pause={}",
                    st.service.name,
                    quote(errno.desc()),
                    children::secs(RESOURCE_PAUSE)
                );
            } else {
                warn!(
                    "cannot accept service={} error={} pause={}",
                    st.service.name,
                    quote(errno.desc()),
                    children::secs(RESOURCE_PAUSE)
                );
            }
        }
        self.timer(until, Timer::Resume(sid));
    }

    /// The state of `st` now; `held`: the listeners wait children hold.
    pub(super) fn service_state(
        &self,
        st: &ServiceState,
        held: &std::collections::HashSet<Token>,
        now: Instant,
    ) -> metrics::ServiceState {
        state_name(
            st.service.enabled,
            !st.listeners.is_empty() && st.listeners.iter().all(|t| held.contains(t)),
            st.paused.filter(|(_, until)| *until > now).map(|(p, _)| p),
            st.limits.at_capacity(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::ServiceState as S;

    #[test]
    fn the_gate_holds_at_pre_exec_max_and_after_a_failure_at_one() {
        assert!(!exec_gated(0, 0));
        assert!(!exec_gated(PRE_EXEC_MAX - 1, 0));
        assert!(exec_gated(PRE_EXEC_MAX, 0));
        // After a failure: one start at a time, none while one is pending.
        assert!(!exec_gated(0, 3));
        assert!(exec_gated(1, 1));
    }

    #[test]
    fn the_state_name_takes_the_first_that_applies() {
        assert_eq!(
            state_name(false, true, Some(Pause::Rate), true),
            S::Disabled
        );
        assert_eq!(
            state_name(true, true, Some(Pause::Rate), true),
            S::ChildRunning
        );
        assert_eq!(
            state_name(true, false, Some(Pause::Looping), true),
            S::PausedLooping
        );
        assert_eq!(
            state_name(true, false, Some(Pause::AcceptError), false),
            S::PausedAcceptError
        );
        assert_eq!(state_name(true, false, None, true), S::PausedMaxConnections);
        assert_eq!(state_name(true, false, None, false), S::Listening);
    }

    #[test]
    fn pauses_count_under_their_metrics_reason() {
        assert_eq!(Pause::Rate.reason(), PauseReason::Rate);
        assert_eq!(Pause::AcceptError.reason(), PauseReason::Resources);
        assert_eq!(Pause::ExecFailures.reason(), PauseReason::Looping);
        assert_eq!(Pause::ExecFailures.state(), S::PausedExecFailures);
    }
}
