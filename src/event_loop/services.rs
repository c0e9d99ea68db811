//! A service as the loop runs it (`ServiceState`): its plan, limits,
//! counters and pauses; the gate that holds starts while children are on
//! their way to exec, and the state name status and metrics show.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::warn;
use mio::Token;
use nix::errno::Errno;

use crate::children::{self};
use crate::limits::{LogBudget, ServiceLimits, TokenBucket};
use crate::listener::Accepted;
use crate::logging::quote;
use crate::metrics::{self, Counters, PauseReason};
use crate::plan::SpawnPlan;
use crate::service::Service;
use crate::spawn::sandbox::Namespaces;

use super::Daemon;
use super::timers::Timer;

/// How long accepting pauses when file descriptors or processes run out.
pub(super) const RESOURCE_PAUSE: Duration = Duration::from_millis(250);

/// At most one "out of resources" line per service in this interval.
pub(super) const RESOURCE_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// A `nowait` service may fail to exec at most this often per second
/// (burst the same): a client flood against a broken program costs a few
/// forks a second, never a tight loop.
pub(super) const NOWAIT_FAILURES_PER_SEC: u32 = 50;

/// A `wait` service without a `rate` may start this many children a
/// second (burst the same); past that it is looping (a child that ends at
/// once leaves its socket readable, and the next starts at once) and
/// pauses for LOOP_PAUSE, as xinetd's `cps` default does. Never disabled.
pub(super) const WAIT_STARTS_PER_SEC: u32 = 50;

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
    pub(super) id: u64,
    pub(super) service: Rc<Service>,
    pub(super) plan: Option<Rc<SpawnPlan>>,
    /// The namespaces its children join (superd.yaml(5), "Fences"); the
    /// plan holds them too.
    pub(super) namespaces: Option<Rc<Namespaces>>,
    pub(super) limits: ServiceLimits,
    pub(super) counters: Counters,
    pub(super) listeners: Vec<Token>,
    pub(super) paused: Option<(Pause, Instant)>,
    /// Exec failures in a row (reset by a successful exec).
    pub(super) fail_streak: u32,
    /// Children started and not yet past exec (see PRE_EXEC_MAX).
    pub(super) pre_exec: usize,
    pub(super) failure_bucket: TokenBucket,
    /// wait mode without `rate`: children started (see WAIT_STARTS_PER_SEC).
    pub(super) wait_starts: TokenBucket,
    pub(super) last_resource_log: Option<Instant>,
    /// `refused` lines about datagrams (see REFUSAL_LOG_INTERVAL).
    pub(super) refusal_log: LogBudget,
    /// A connection accepted when fork failed, served first on resume.
    pub(super) pending: Option<Accepted>,
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
}

/// Enough of a service's children are on their way to exec that the next
/// connection waits (see PRE_EXEC_MAX); one at a time after a failure.
pub(super) fn exec_gated(st: &ServiceState) -> bool {
    st.pre_exec >= PRE_EXEC_MAX || st.fail_streak > 0 && st.pre_exec > 0
}

impl Daemon {
    /// Pauses accepting for RESOURCE_PAUSE after `errno` at `what`; the
    /// error reads as in every other line (`exec failed`): strerror alone.
    pub(super) fn pause_for_resources(&mut self, sid: u64, what: &str, errno: Errno) {
        self.pause_accepting(sid, Pause::Resources, what, errno);
    }

    /// Pauses accepting on `sid` for RESOURCE_PAUSE after `errno` at
    /// `what`, logged at most once per RESOURCE_LOG_INTERVAL.
    pub(super) fn pause_accepting(&mut self, sid: u64, why: Pause, what: &str, errno: Errno) {
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

    /// The state of a service (superd(8), STATUS AND METRICS): a wait
    /// service whose child holds every socket is `child_running`, not
    /// listening (superd does not watch them).
    pub(super) fn service_state(
        &self,
        st: &ServiceState,
        held: &std::collections::HashSet<Token>,
        now: Instant,
    ) -> metrics::ServiceState {
        if !st.service.enabled {
            metrics::ServiceState::Disabled
        } else if !st.listeners.is_empty() && st.listeners.iter().all(|t| held.contains(t)) {
            metrics::ServiceState::ChildRunning
        } else if let Some((p, _)) = st.paused.filter(|(_, until)| *until > now) {
            p.state()
        } else if st.limits.at_capacity() {
            metrics::ServiceState::PausedMaxConnections
        } else {
            metrics::ServiceState::Listening
        }
    }
}
