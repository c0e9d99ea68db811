//! Unit tests of the counters, the exposition and the HTTP request.

use super::prometheus::{escape_help, escape_label, format_value};
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
