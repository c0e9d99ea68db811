//! The snapshot in the Prometheus text exposition format 0.0.4 (superd(8),
//! METRICS): one HELP and one TYPE line per family, then its samples.

use std::fmt::Write as _;

use super::Outcome;
use super::{PauseReason, ServiceState, ServiceView, Snapshot};
use crate::access::Refusal;

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
    // A counter per service and per value of one more label.
    let by_label = |m: &mut Metrics<'_>,
                    name: &str,
                    help: &str,
                    label: &str,
                    keys: &[&str],
                    value: &dyn Fn(&ServiceView, usize) -> f64| {
        m.family(name, "counter", help);
        for s in &snap.services {
            for (i, key) in keys.iter().enumerate() {
                m.sample(name, &[("service", &s.name), (label, key)], value(s, i));
            }
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
    by_label(
        &mut m,
        "superd_refused_total",
        "Accepted connections closed at once, by reason.",
        "reason",
        &Refusal::ALL.map(Refusal::as_str),
        &|s, i| s.counters.refused_by(Refusal::ALL[i]) as f64,
    );
    per_service(
        &mut m,
        "superd_exec_failures_total",
        "counter",
        "Children that failed before their program started (the connection is closed).",
        &|s| s.counters.exec_failures as f64,
    );
    by_label(
        &mut m,
        "superd_exits_total",
        "Connections that ended (children, and builtin stream sessions), by outcome.",
        "outcome",
        &Outcome::ALL.map(Outcome::as_str),
        &|s, i| s.counters.exits_by(Outcome::ALL[i]) as f64,
    );
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
pub(super) fn format_value(v: f64) -> String {
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
pub(super) fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}
