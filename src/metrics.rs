//! What superd counts and how it shows it (superd(8), METRICS): the
//! per-service [`Counters`] the event loop bumps, the [`Snapshot`] it takes
//! of itself, and that snapshot rendered in the Prometheus text exposition
//! format 0.0.4 for `builtin: metrics`, with the one HTTP request such a
//! connection carries parsed here. Pure: no sockets, no clock inside (the
//! loop passes `now`); [`crate::status`] renders the same snapshot as JSON.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::access::Refusal;
use crate::children::Outcome;

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
#[derive(Clone, Copy, Debug, Default)]
pub struct PauseClock {
    total: [Duration; PauseReason::ALL.len()],
    /// Since when, and until when if known.
    open: [Option<(Instant, Option<Instant>)>; PauseReason::ALL.len()],
}

impl PauseClock {
    /// A pause for `reason` starts at `now` (until `until`, if known). A
    /// pause for the same reason still open goes on (to the new end).
    pub fn begin(&mut self, reason: PauseReason, now: Instant, until: Option<Instant>) {
        let i = reason as usize;
        match self.open[i] {
            Some((since, old_until)) if old_until.is_none_or(|u| u > now) => {
                self.open[i] = Some((since, until));
            }
            _ => {
                self.end(reason, now);
                self.open[i] = Some((now, until));
            }
        }
    }

    /// The pause for `reason`, if any, ends at `now` (or at its own end,
    /// if that came first).
    pub fn end(&mut self, reason: PauseReason, now: Instant) {
        let i = reason as usize;
        if let Some((since, until)) = self.open[i].take() {
            self.total[i] += Self::span(since, until, now);
        }
    }

    /// Whether a pause for `reason` is open (cheap: the loop asks on every
    /// accept whether there is a `max_connections` pause to end).
    pub fn is_open(&self, reason: PauseReason) -> bool {
        self.open[reason as usize].is_some()
    }

    /// Seconds paused for `reason` up to `now`.
    pub fn seconds(&self, reason: PauseReason, now: Instant) -> f64 {
        let i = reason as usize;
        let open = self.open[i].map_or(Duration::ZERO, |(since, until)| {
            Self::span(since, until, now)
        });
        (self.total[i] + open).as_secs_f64()
    }

    /// Carried across an upgrade (superd.8, UPGRADING): the time paused
    /// for `reason` in the previous image, up to when it wrote its state;
    /// a pause still due is begun again by the new image.
    pub fn carry(&mut self, reason: PauseReason, total: Duration) {
        self.total[reason as usize] = total;
    }

    fn span(since: Instant, until: Option<Instant>, now: Instant) -> Duration {
        let end = until.map_or(now, |u| u.min(now));
        end.saturating_duration_since(since)
    }
}

/// A histogram with [`DURATION_BUCKETS`]: counts per bucket (not
/// cumulative; rendering adds them up), the sum and the count.
#[derive(Clone, Copy, Debug, Default)]
pub struct Histogram {
    /// One more than the bounds: the last is `+Inf`.
    buckets: [u64; DURATION_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = DURATION_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += secs;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Its counts per bucket (not cumulative), for an upgrade's state.
    pub fn buckets(&self) -> &[u64] {
        &self.buckets
    }

    /// The histogram an upgrade's state carries; `None` when the buckets
    /// are not this build's.
    pub fn carried(buckets: &[u64], sum: f64) -> Option<Histogram> {
        let mut h = Histogram::default();
        if buckets.len() != h.buckets.len() {
            return None;
        }
        h.buckets.copy_from_slice(buckets);
        h.count = buckets.iter().sum();
        h.sum = sum;
        Some(h)
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// `(upper bound, cumulative count)`, `+Inf` last (as `f64::INFINITY`).
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = DURATION_BUCKETS.iter().copied().chain([f64::INFINITY]);
        bounds.zip(self.buckets.iter().scan(0u64, |acc, n| {
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
#[derive(Clone, Copy, Debug, Default)]
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

// ---------------------------------------------------------------------------
// The Prometheus text format (version 0.0.4)
// ---------------------------------------------------------------------------

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `snap` in the Prometheus text exposition format 0.0.4: one
/// HELP and one TYPE line per metric family, then its samples.
pub fn render(snap: &Snapshot) -> String {
    let mut out = String::with_capacity(4096 + snap.services.len() * 4096);
    let mut m = Metrics { out: &mut out };
    m.family(
        "superd_build_info",
        "gauge",
        "Always 1; the version label is superd's.",
    );
    m.sample("superd_build_info", &[("version", snap.version)], 1.0);
    m.family(
        "superd_start_time_seconds",
        "gauge",
        "When superd started, in seconds since the Unix epoch.",
    );
    m.sample("superd_start_time_seconds", &[], snap.start_time);
    m.family(
        "superd_reloads_total",
        "counter",
        "Reloads (SIGHUP), by result: ok, or failed (the old configuration kept running).",
    );
    m.sample(
        "superd_reloads_total",
        &[("result", "ok")],
        snap.reloads_ok as f64,
    );
    m.sample(
        "superd_reloads_total",
        &[("result", "failed")],
        snap.reloads_failed as f64,
    );
    m.family(
        "superd_log_lines_dropped_total",
        "counter",
        "Log lines dropped because stderr could not take them.",
    );
    m.sample(
        "superd_log_lines_dropped_total",
        &[],
        snap.log_lines_dropped as f64,
    );

    let per_service = |m: &mut Metrics<'_>,
                       name: &str,
                       kind: &str,
                       help: &str,
                       value: &dyn Fn(&ServiceView) -> f64| {
        m.family(name, kind, help);
        for s in &snap.services {
            m.sample(name, &[("service", &s.name)], value(s));
        }
    };
    per_service(
        &mut m,
        "superd_connections_total",
        "counter",
        "Connections accepted (datagrams for a UDP builtin, children started for a wait service), refused ones included.",
        &|s| s.counters.accepted as f64,
    );
    per_service(
        &mut m,
        "superd_served_total",
        "counter",
        "Accepted connections served: a builtin session or answer, or a program past exec.",
        &|s| s.counters.served as f64,
    );
    per_service(
        &mut m,
        "superd_pending_connections",
        "gauge",
        "Accepted connections not yet served, refused or failed (a child on its way to exec).",
        &|s| s.pending as f64,
    );
    per_service(
        &mut m,
        "superd_active_connections",
        "gauge",
        "Connections being served now (children and builtin sessions).",
        &|s| f64::from(s.active),
    );
    per_service(
        &mut m,
        "superd_max_connections",
        "gauge",
        "The service's max_connections.",
        &|s| f64::from(s.max_connections),
    );
    m.family(
        "superd_refused_total",
        "counter",
        "Accepted connections closed at once, by reason.",
    );
    for s in &snap.services {
        for r in Refusal::ALL {
            m.sample(
                "superd_refused_total",
                &[("service", &s.name), ("reason", r.as_str())],
                s.counters.refused_by(r) as f64,
            );
        }
    }
    per_service(
        &mut m,
        "superd_exec_failures_total",
        "counter",
        "Children that failed before their program started (the connection is closed).",
        &|s| s.counters.exec_failures as f64,
    );
    m.family(
        "superd_exits_total",
        "counter",
        "Connections that ended (children, and builtin stream sessions), by outcome.",
    );
    for s in &snap.services {
        for o in Outcome::ALL {
            m.sample(
                "superd_exits_total",
                &[("service", &s.name), ("outcome", o.as_str())],
                s.counters.exits_by(o) as f64,
            );
        }
    }
    m.family(
        "superd_connection_duration_seconds",
        "histogram",
        "How long connections lasted, from accept to exit.",
    );
    for s in &snap.services {
        let h = &s.counters.duration;
        for (le, n) in h.cumulative() {
            let le = if le.is_infinite() {
                "+Inf".to_owned()
            } else {
                format_value(le)
            };
            m.sample(
                "superd_connection_duration_seconds_bucket",
                &[("service", &s.name), ("le", &le)],
                n as f64,
            );
        }
        m.sample(
            "superd_connection_duration_seconds_sum",
            &[("service", &s.name)],
            h.sum(),
        );
        m.sample(
            "superd_connection_duration_seconds_count",
            &[("service", &s.name)],
            h.count() as f64,
        );
    }
    m.family(
        "superd_paused_seconds_total",
        "counter",
        "Time the service did not accept, by reason (rate, max_connections, resources, looping).",
    );
    for s in &snap.services {
        for (r, secs) in PauseReason::ALL.iter().zip(s.paused_seconds) {
            m.sample(
                "superd_paused_seconds_total",
                &[("service", &s.name), ("reason", r.as_str())],
                secs,
            );
        }
    }
    m.family(
        "superd_service_state",
        "gauge",
        "1 for the state the service is in, 0 for the others.",
    );
    for s in &snap.services {
        for st in ServiceState::ALL {
            m.sample(
                "superd_service_state",
                &[("service", &s.name), ("state", st.as_str())],
                if st == s.state { 1.0 } else { 0.0 },
            );
        }
    }
    m.family(
        "superd_listen_queue",
        "gauge",
        "Connections waiting in the kernel's accept queue of a TCP listener.",
    );
    for s in &snap.services {
        for l in &s.listeners {
            if let Some(q) = l.queue {
                m.sample(
                    "superd_listen_queue",
                    &[("service", &s.name), ("address", &l.address)],
                    f64::from(q),
                );
            }
        }
    }
    let p = &snap.process;
    let process: [(&str, &str, &str, Option<f64>); 6] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            p.cpu_seconds,
        ),
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            p.open_fds.map(|v| v as f64),
        ),
        (
            "process_max_fds",
            "gauge",
            "The soft limit on open file descriptors.",
            p.max_fds.map(|v| v as f64),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            p.resident_bytes.map(|v| v as f64),
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            p.virtual_bytes.map(|v| v as f64),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "When the process started, in seconds since the Unix epoch.",
            p.start_time,
        ),
    ];
    for (name, kind, help, value) in process {
        if let Some(v) = value {
            m.family(name, kind, help);
            m.sample(name, &[], v);
        }
    }
    out
}

struct Metrics<'a> {
    out: &'a mut String,
}

impl Metrics<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&format_value(value));
        self.out.push('\n');
    }
}

/// A sample value as the format writes it: integers without a fraction,
/// `+Inf`, `-Inf` and `NaN` spelled as Go spells them.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A label value escaped as the format requires: backslash, double quote
/// and line feed.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text escaped as the format requires: backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

// ---------------------------------------------------------------------------
// HTTP: one request per connection
// ---------------------------------------------------------------------------

/// The most of a request superd reads: its request line and headers. A
/// scraper's request is a few hundred bytes.
pub const MAX_REQUEST: usize = 8 * 1024;

/// What the request in `buf` asks for, once it is complete: `None` while
/// its head (up to the empty line) has not all arrived and `buf` is below
/// [`MAX_REQUEST`]. `eof`: the peer will send nothing more.
pub fn parse_request(buf: &[u8], eof: bool) -> Option<Request> {
    let end = head_end(buf);
    let Some(end) = end else {
        if buf.len() >= MAX_REQUEST {
            return Some(Request::TooLarge);
        }
        return eof.then_some(Request::Bad { http11: false });
    };
    let head = &buf[..end];
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    let Ok(line) = std::str::from_utf8(line) else {
        return Some(Request::Bad { http11: false });
    };
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Some(Request::Bad { http11: false });
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Some(Request::Bad { http11: false }),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) || target.is_empty() {
        return Some(Request::Bad { http11 });
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Some(Request::MethodNotAllowed { http11 }),
    };
    // The path, without a query string; an absolute-form target
    // (`http://host/metrics`, RFC 9112 3.2.2) names its path after the
    // authority.
    let path = target.split(['?', '#']).next().unwrap_or("");
    let path = match path.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => path,
    };
    if path != "/metrics" {
        return Some(Request::NotFound { http11, head_only });
    }
    Some(Request::Metrics { http11, head_only })
}

/// Where the head of a request ends (just past its empty line).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A parsed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `GET /metrics` (or `HEAD`).
    Metrics { http11: bool, head_only: bool },
    /// Another path: 404.
    NotFound { http11: bool, head_only: bool },
    /// A method other than GET and HEAD: 405.
    MethodNotAllowed { http11: bool },
    /// Not an HTTP/1.0 or 1.1 request line: 400.
    Bad { http11: bool },
    /// No end of the head within [`MAX_REQUEST`]: 431.
    TooLarge,
}

/// The whole response to `req`; `body` renders the metrics (called only
/// for a request that gets them). Every response closes the connection.
pub fn respond(req: Request, body: impl FnOnce() -> String) -> Vec<u8> {
    let (http11, status, head_only) = match req {
        Request::Metrics { http11, head_only } => (http11, "200 OK", head_only),
        Request::NotFound { http11, head_only } => (http11, "404 Not Found", head_only),
        Request::MethodNotAllowed { http11 } => (http11, "405 Method Not Allowed", false),
        Request::Bad { http11 } => (http11, "400 Bad Request", false),
        Request::TooLarge => (false, "431 Request Header Fields Too Large", false),
    };
    let (content_type, text) = match req {
        Request::Metrics { .. } => (CONTENT_TYPE, body()),
        _ => (
            "text/plain; charset=utf-8",
            format!("{status}\nsuperd serves its metrics at GET /metrics\n"),
        ),
    };
    let mut out = format!(
        "HTTP/1.{} {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        u8::from(http11),
        text.len()
    );
    if matches!(req, Request::MethodNotAllowed { .. }) {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(text.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_and_outcome_index_their_arrays() {
        // A new Refusal or Outcome variant must take the next index.
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
        for (i, p) in PauseReason::ALL.iter().enumerate() {
            assert_eq!(*p as usize, i);
        }
    }

    #[test]
    fn counters_add_up_by_reason() {
        let mut c = Counters::default();
        c.refuse(Refusal::DenyFrom);
        c.refuse(Refusal::DenyFrom);
        c.refuse(Refusal::MaxPerSource);
        assert_eq!(c.refused_by(Refusal::DenyFrom), 2);
        assert_eq!(c.refused_by(Refusal::OnlyFrom), 0);
        assert_eq!(c.refused_total(), 3);
        c.exit(Outcome::Ok, Duration::from_millis(3));
        c.exit(Outcome::Timeout, Duration::from_secs(700));
        assert_eq!(c.exits_by(Outcome::Ok), 1);
        assert_eq!(c.exits_by(Outcome::Timeout), 1);
        assert_eq!(c.duration.count(), 2);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(5)); // on the bound: in it
        h.observe(Duration::from_millis(6));
        h.observe(Duration::from_secs(601));
        let b: Vec<(f64, u64)> = h.cumulative().collect();
        assert_eq!(b.len(), DURATION_BUCKETS.len() + 1);
        assert_eq!(b[0], (0.005, 1));
        assert_eq!(b[1], (0.01, 2));
        assert_eq!(b[DURATION_BUCKETS.len() - 1], (600.0, 2));
        assert_eq!(b[DURATION_BUCKETS.len()], (f64::INFINITY, 3));
        assert_eq!(h.count(), 3);
        assert!((h.sum() - 601.011).abs() < 1e-9);
    }

    #[test]
    fn pause_clock_counts_open_and_closed_pauses() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut c = PauseClock::default();
        // A timed pause counts up to its end, never past it.
        c.begin(PauseReason::Rate, t0, Some(s(2)));
        assert_eq!(c.seconds(PauseReason::Rate, s(1)), 1.0);
        assert_eq!(c.seconds(PauseReason::Rate, s(5)), 2.0);
        // A new one after it adds up.
        c.begin(PauseReason::Rate, s(10), Some(s(11)));
        assert_eq!(c.seconds(PauseReason::Rate, s(20)), 3.0);
        // Cut short.
        c.begin(PauseReason::Rate, s(30), Some(s(40)));
        c.end(PauseReason::Rate, s(31));
        assert_eq!(c.seconds(PauseReason::Rate, s(50)), 4.0);
        // An open-ended pause runs until it ends; begin again while open
        // does not restart it.
        c.begin(PauseReason::MaxConnections, s(0), None);
        c.begin(PauseReason::MaxConnections, s(3), None);
        assert!(c.is_open(PauseReason::MaxConnections));
        assert_eq!(c.seconds(PauseReason::MaxConnections, s(4)), 4.0);
        c.end(PauseReason::MaxConnections, s(6));
        assert!(!c.is_open(PauseReason::MaxConnections));
        assert_eq!(c.seconds(PauseReason::MaxConnections, s(100)), 6.0);
        assert_eq!(c.seconds(PauseReason::Looping, s(100)), 0.0);
    }

    #[test]
    fn labels_and_help_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_help("a\\b\nc\"d"), "a\\\\b\\nc\"d");
    }

    #[test]
    fn values_as_the_format_spells_them() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }

    fn snapshot() -> Snapshot {
        let mut counters = Counters {
            accepted: 3,
            served: 2,
            ..Counters::default()
        };
        counters.refuse(Refusal::DenyFrom);
        counters.exit(Outcome::Ok, Duration::from_millis(20));
        Snapshot {
            version: "1.2.3",
            pid: 1,
            start_time: 1_700_000_000.5,
            reloads_ok: 1,
            reloads_failed: 2,
            log_lines_dropped: 0,
            services: vec![ServiceView {
                name: "web".into(),
                socket: "stream",
                program: "/bin/cat".into(),
                listeners: vec![
                    ListenerView {
                        address: "127.0.0.1:80".into(),
                        queue: Some(4),
                    },
                    ListenerView {
                        address: "/run/a \"b\".sock".into(),
                        queue: None,
                    },
                ],
                state: ServiceState::ChildRunning,
                active: 1,
                max_connections: 256,
                pending: 0,
                counters,
                paused_seconds: [0.5, 0.0, 0.0, 0.0],
            }],
            children: Vec::new(),
            sessions: Vec::new(),
            process: ProcessView {
                open_fds: Some(7),
                ..ProcessView::default()
            },
        }
    }

    #[test]
    fn render_has_every_family_once_with_help_and_type() {
        let text = render(&snapshot());
        for line in [
            "superd_build_info{version=\"1.2.3\"} 1",
            "superd_start_time_seconds 1700000000.5",
            "superd_reloads_total{result=\"failed\"} 2",
            "superd_connections_total{service=\"web\"} 3",
            "superd_refused_total{service=\"web\",reason=\"deny_from\"} 1",
            "superd_refused_total{service=\"web\",reason=\"only_from\"} 0",
            "superd_exits_total{service=\"web\",outcome=\"ok\"} 1",
            "superd_connection_duration_seconds_bucket{service=\"web\",le=\"0.025\"} 1",
            "superd_connection_duration_seconds_bucket{service=\"web\",le=\"0.01\"} 0",
            "superd_connection_duration_seconds_bucket{service=\"web\",le=\"+Inf\"} 1",
            "superd_connection_duration_seconds_count{service=\"web\"} 1",
            "superd_paused_seconds_total{service=\"web\",reason=\"rate\"} 0.5",
            "superd_service_state{service=\"web\",state=\"child_running\"} 1",
            "superd_service_state{service=\"web\",state=\"listening\"} 0",
            "superd_listen_queue{service=\"web\",address=\"127.0.0.1:80\"} 4",
            "process_open_fds 7",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        // The unix listener has no queue figure.
        assert!(!text.contains("a \\\"b\\\".sock"));
        // Absent process figures are left out, HELP and TYPE too.
        assert!(!text.contains("process_resident_memory_bytes"));
        let mut types = std::collections::HashSet::new();
        for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(types.insert(l.split(' ').nth(2).unwrap().to_owned()), "{l}");
        }
        assert_eq!(
            text.lines().filter(|l| l.starts_with("# HELP ")).count(),
            types.len()
        );
    }

    #[test]
    fn requests() {
        use Request::*;
        let p = |s: &str| parse_request(s.as_bytes(), false);
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Metrics {
                http11: true,
                head_only: false
            })
        );
        assert_eq!(
            p("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Some(Metrics {
                http11: false,
                head_only: true
            })
        );
        assert_eq!(
            p("GET http://h:9/metrics HTTP/1.1\n\n"),
            Some(Metrics {
                http11: true,
                head_only: false
            })
        );
        assert_eq!(
            p("GET / HTTP/1.1\r\n\r\n"),
            Some(NotFound {
                http11: true,
                head_only: false
            })
        );
        assert_eq!(
            p("POST /metrics HTTP/1.1\r\n\r\n"),
            Some(MethodNotAllowed { http11: true })
        );
        assert_eq!(
            p("GET /metrics HTTP/2.0\r\n\r\n"),
            Some(Bad { http11: false })
        );
        assert_eq!(p("GET /metrics\r\n\r\n"), Some(Bad { http11: false }));
        // Not complete yet; complete at EOF is a bad request.
        assert_eq!(p("GET /metrics HTTP/1.1\r\n"), None);
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\n", true),
            Some(Bad { http11: false })
        );
        assert_eq!(parse_request(&[b'a'; MAX_REQUEST], false), Some(TooLarge));
    }

    #[test]
    fn responses() {
        let r = respond(
            Request::Metrics {
                http11: true,
                head_only: false,
            },
            || "x 1\n".into(),
        );
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")));
        assert!(r.contains("Content-Length: 4\r\n"));
        assert!(r.ends_with("\r\n\r\nx 1\n"));
        let head = respond(
            Request::Metrics {
                http11: false,
                head_only: true,
            },
            || "x 1\n".into(),
        );
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.0 200 OK\r\n"));
        assert!(head.ends_with("Content-Length: 4\r\nConnection: close\r\n\r\n"));
        let r = respond(
            Request::MethodNotAllowed { http11: true },
            || unreachable!(),
        );
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(r.contains("Allow: GET, HEAD\r\n"));
        let r = respond(
            Request::NotFound {
                http11: false,
                head_only: false,
            },
            || unreachable!(),
        );
        assert!(r.starts_with(b"HTTP/1.0 404 Not Found\r\n"));
    }
}
