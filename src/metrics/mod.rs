//! What superd counts and how it shows it (superd(8), METRICS): the
//! per-service [`Counters`] the event loop bumps, the [`Snapshot`] it takes
//! of itself, and that snapshot rendered in the Prometheus text exposition
//! format 0.0.4 for `builtin: metrics`, with the one HTTP request such a
//! connection carries parsed here. Pure: no sockets, no clock inside (the
//! loop passes `now`); [`crate::status`] renders the same snapshot as JSON.

use std::time::{Duration, Instant};

use crate::access::Refusal;

/// The upper bounds of `superd_connection_duration_seconds`'s buckets, in
/// seconds: from a 5 ms builtin reply to a 10 min session; longer ones
/// land in `+Inf` only.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Why a service was not accepting, as `superd_paused_seconds_total`
/// names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseReason {
    /// Over `rate`: waiting for a token.
    Rate,
    /// At `max_connections`: superd does not watch the listener.
    MaxConnections,
    /// Out of file descriptors or processes, or another accept error.
    Resources,
    /// A wait service restarting too fast, or a program that keeps
    /// failing before exec (its retries are paced the same way).
    Looping,
}

impl PauseReason {
    pub const ALL: [PauseReason; 4] = [
        PauseReason::Rate,
        PauseReason::MaxConnections,
        PauseReason::Resources,
        PauseReason::Looping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Rate => "rate",
            PauseReason::MaxConnections => "max_connections",
            PauseReason::Resources => "resources",
            PauseReason::Looping => "looping",
        }
    }
}

/// The time a service spent paused, per reason. A pause is opened when it
/// starts, with its end when that is known in advance (rate, resources,
/// looping), and closed when it ends early or, for `max_connections`,
/// when a connection ends; an open pause counts up to now (or its end).
/// Most services never pause: the clock takes its room at the first one
/// (8 bytes until then, not 192, for each of 10,000 services).
#[derive(Clone, Debug, Default)]
pub struct PauseClock {
    spans: Option<Box<PauseSpans>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct PauseSpans {
    total: [Duration; PauseReason::ALL.len()],
    /// Since when, and until when if known.
    open: [Option<(Instant, Option<Instant>)>; PauseReason::ALL.len()],
}

impl PauseClock {
    /// A pause for `reason` starts at `now` (until `until`, if known). A
    /// pause for the same reason still open goes on (to the new end).
    pub fn begin(&mut self, reason: PauseReason, now: Instant, until: Option<Instant>) {
        let i = reason as usize;
        let spans = self.spans.get_or_insert_default();
        match spans.open[i] {
            Some((since, old_until)) if old_until.is_none_or(|u| u > now) => {
                spans.open[i] = Some((since, until));
            }
            _ => {
                self.end(reason, now);
                self.spans.get_or_insert_default().open[i] = Some((now, until));
            }
        }
    }

    /// The pause for `reason`, if any, ends at `now` (or at its own end,
    /// if that came first).
    pub fn end(&mut self, reason: PauseReason, now: Instant) {
        let i = reason as usize;
        let Some(spans) = self.spans.as_deref_mut() else {
            return;
        };
        if let Some((since, until)) = spans.open[i].take() {
            spans.total[i] += Self::span(since, until, now);
        }
    }

    /// Whether a pause for `reason` is open (cheap: the loop asks on every
    /// accept whether there is a `max_connections` pause to end).
    pub fn is_open(&self, reason: PauseReason) -> bool {
        self.spans
            .as_ref()
            .is_some_and(|s| s.open[reason as usize].is_some())
    }

    /// Seconds paused for `reason` up to `now`.
    pub fn seconds(&self, reason: PauseReason, now: Instant) -> f64 {
        let i = reason as usize;
        let Some(spans) = self.spans.as_deref() else {
            return 0.0;
        };
        let open = spans.open[i].map_or(Duration::ZERO, |(since, until)| {
            Self::span(since, until, now)
        });
        (spans.total[i] + open).as_secs_f64()
    }

    /// Carried across an upgrade (superd.8, UPGRADING): the time paused
    /// for `reason` in the previous image, up to when it wrote its state;
    /// a pause still due is begun again by the new image.
    pub fn carry(&mut self, reason: PauseReason, total: Duration) {
        self.spans.get_or_insert_default().total[reason as usize] = total;
    }

    fn span(since: Instant, until: Option<Instant>, now: Instant) -> Duration {
        let end = until.map_or(now, |u| u.min(now));
        end.saturating_duration_since(since)
    }
}

/// A histogram with [`DURATION_BUCKETS`]: counts per bucket (not
/// cumulative; rendering adds them up), the sum and the count. Empty until
/// the first observation, and then it takes its room (8 bytes until then,
/// not 152, for each of 10,000 services that may never end a connection).
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    counts: Option<Box<HistogramCounts>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct HistogramCounts {
    /// One more than the bounds: the last is `+Inf`.
    buckets: [u64; DURATION_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

/// The buckets of a histogram that has seen nothing.
const NO_BUCKETS: [u64; DURATION_BUCKETS.len() + 1] = [0; DURATION_BUCKETS.len() + 1];

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = DURATION_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(DURATION_BUCKETS.len());
        let c = self.counts.get_or_insert_default();
        c.buckets[i] += 1;
        c.sum += secs;
        c.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.counts.as_ref().map_or(0, |c| c.count)
    }

    /// Its counts per bucket (not cumulative), for an upgrade's state.
    pub fn buckets(&self) -> &[u64] {
        self.counts.as_ref().map_or(&NO_BUCKETS, |c| &c.buckets)
    }

    /// The histogram an upgrade's state carries; `None` when the buckets
    /// are not this build's.
    pub fn carried(buckets: &[u64], sum: f64) -> Option<Histogram> {
        let mut c = HistogramCounts::default();
        if buckets.len() != c.buckets.len() {
            return None;
        }
        c.buckets.copy_from_slice(buckets);
        c.count = buckets.iter().sum();
        c.sum = sum;
        Some(Histogram {
            counts: Some(Box::new(c)),
        })
    }

    pub fn sum(&self) -> f64 {
        self.counts.as_ref().map_or(0.0, |c| c.sum)
    }

    /// `(upper bound, cumulative count)`, `+Inf` last (as `f64::INFINITY`).
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = DURATION_BUCKETS.iter().copied().chain([f64::INFINITY]);
        bounds.zip(self.buckets().iter().scan(0u64, |acc, n| {
            *acc += n;
            Some(*acc)
        }))
    }
}

/// Counters of one service, carried over reloads (superd(8), STATUS AND
/// METRICS). At any moment `accepted = served + refused + exec_failures +
/// pending`: every connection (datagram, for UDP builtins; child start,
/// for wait services) superd took is counted once as accepted, and once
/// more as it leaves pending: served (a builtin session started, a
/// datagram answered or a program past exec), refused (by reason) or
/// failed before exec. Plain increments: nothing here costs a syscall.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub accepted: u64,
    pub served: u64,
    /// By [`Refusal`], indexed by its discriminant (see [`Counters::refuse`]).
    pub refused: [u64; Refusal::ALL.len()],
    pub exec_failures: u64,
    /// By [`Outcome`]: children that ended, and builtin stream sessions
    /// (always `ok`).
    pub exits: [u64; Outcome::ALL.len()],
    /// How long those exits' connections lasted.
    pub duration: Histogram,
    pub paused: PauseClock,
}

impl Counters {
    pub fn refuse(&mut self, reason: Refusal) {
        self.refused[reason as usize] += 1;
    }

    #[cfg(test)]
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }

    pub fn refused_by(&self, reason: Refusal) -> u64 {
        self.refused[reason as usize]
    }

    /// A connection ended, after `lasted`.
    pub fn exit(&mut self, outcome: Outcome, lasted: Duration) {
        self.exits[outcome as usize] += 1;
        self.duration.observe(lasted);
    }

    pub fn exits_by(&self, outcome: Outcome) -> u64 {
        self.exits[outcome as usize]
    }
}

/// What a service is doing right now (the `state` of status, SIGUSR1 and
/// `superd_service_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceState {
    /// superd watches its sockets and accepts.
    Listening,
    /// A wait service whose child holds every one of its sockets: superd
    /// is not watching them until the child exits.
    ChildRunning,
    PausedRate,
    PausedMaxConnections,
    PausedResources,
    PausedExecFailures,
    PausedLooping,
    PausedAcceptError,
    /// `enabled: false`.
    Disabled,
}

impl ServiceState {
    pub const ALL: [ServiceState; 9] = [
        ServiceState::Listening,
        ServiceState::ChildRunning,
        ServiceState::PausedRate,
        ServiceState::PausedMaxConnections,
        ServiceState::PausedResources,
        ServiceState::PausedExecFailures,
        ServiceState::PausedLooping,
        ServiceState::PausedAcceptError,
        ServiceState::Disabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Listening => "listening",
            ServiceState::ChildRunning => "child_running",
            ServiceState::PausedRate => "paused_rate",
            ServiceState::PausedMaxConnections => "paused_max_connections",
            ServiceState::PausedResources => "paused_resources",
            ServiceState::PausedExecFailures => "paused_exec_failures",
            ServiceState::PausedLooping => "paused_looping",
            ServiceState::PausedAcceptError => "paused_accept_error",
            ServiceState::Disabled => "disabled",
        }
    }
}

/// One listening socket of a service.
#[derive(Clone, Debug)]
pub struct ListenerView {
    pub address: String,
    /// Connections waiting in the kernel's accept queue: TCP only (read
    /// with `TCP_INFO`); `None` where the kernel does not say.
    pub queue: Option<u32>,
}

/// One service as the loop sees it at the snapshot.
#[derive(Clone, Debug)]
pub struct ServiceView {
    pub name: String,
    pub socket: &'static str,
    pub program: String,
    pub listeners: Vec<ListenerView>,
    pub state: ServiceState,
    pub active: u32,
    pub max_connections: u32,
    /// Accepted and not yet served, refused or failed (see [`Counters`]).
    pub pending: u64,
    pub counters: Counters,
    /// [`PauseClock::seconds`] per [`PauseReason::ALL`], at the snapshot.
    pub paused_seconds: [f64; PauseReason::ALL.len()],
}

/// A live connection: a child, or a builtin session.
#[derive(Clone, Debug)]
pub struct ConnectionView {
    pub service: String,
    /// `None` for a builtin session.
    pub pid: Option<i32>,
    /// `None` for a wait child (it holds the listening socket).
    pub peer: Option<String>,
    /// Behind a proxy (`peer` is the client): the proxy's address.
    pub proxy: Option<String>,
    pub age: Duration,
}

/// The process's own figures, from /proc/self.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessView {
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub start_time: Option<f64>,
}

/// superd's own figures for the `process_*` metrics, from /proc/self
/// (proc(5)): what cannot be read is left out.
pub fn process_view() -> ProcessView {
    let mut v = ProcessView {
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            // The directory's own descriptor is among those listed.
            .map(|d| d.count().saturating_sub(1) as u64),
        max_fds: nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .ok()
            .map(|(soft, _)| soft),
        ..Default::default()
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |v| v.max(1) as f64);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |v| v.max(1) as u64);
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some((_, rest)) = stat.rsplit_once(')')
    {
        // Fields after the command, from 3 (state): utime is 14, stime
        // 15, starttime 22, vsize 23, rss 24.
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        if let (Some(u), Some(s)) = (num(14), num(15)) {
            v.cpu_seconds = Some((u + s) as f64 / hz);
        }
        v.virtual_bytes = num(23);
        v.resident_bytes = num(24).map(|p| p * page);
        let btime = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|t| t.trim().parse::<u64>().ok())
        });
        if let (Some(b), Some(start)) = (btime, num(22)) {
            v.start_time = Some(b as f64 + start as f64 / hz);
        }
    }
    v
}

/// How a connection's child ended, as the metrics count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Status 0, or a status or signal its service's `success_status`
    /// lists.
    Ok,
    /// Another status, or the program never started (exec failed).
    Error,
    /// Killed by a signal `success_status` does not list.
    Signal,
    /// Ended after its `timeout` fired, however it ended.
    Timeout,
}

impl Outcome {
    /// In discriminant order: the metrics index their counters by it.
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Signal,
        Outcome::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Signal => "signal",
            Outcome::Timeout => "timeout",
        }
    }
}

/// Everything status and metrics show, taken at one instant.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub version: &'static str,
    pub pid: u32,
    /// Unix time superd started (seconds).
    pub start_time: f64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub log_lines_dropped: u64,
    pub services: Vec<ServiceView>,
    pub children: Vec<ConnectionView>,
    pub sessions: Vec<ConnectionView>,
    pub process: ProcessView,
}

mod http;
mod prometheus;

pub use http::{MAX_REQUEST, Request, parse_request, respond};
pub use prometheus::{CONTENT_TYPE, render};

#[cfg(test)]
mod tests;
