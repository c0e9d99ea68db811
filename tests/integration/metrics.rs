//! `builtin: metrics`, `builtin: status` and `superd status` through the
//! real binary: counters that move exactly with known traffic, the pause
//! and accept-queue figures at `max_connections`, reload counters, the
//! services' own access rules, `promtool check metrics` on a scrape taken
//! under load, and the status command's table, JSON and failure.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;
use crate::limits::connect_from;

/// The response to `request` sent to `addr`, read to EOF.
fn http(addr: &str, request: &str) -> String {
    let mut s = connect(addr);
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8(out).expect("an HTTP response is text")
}

/// `GET /metrics`: the body, after checking the status line and type.
fn scrape(addr: &str) -> String {
    let r = http(addr, "GET /metrics HTTP/1.1\r\nHost: superd\r\n\r\n");
    let (head, body) = r.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nContent-Length: {}", body.len())),
        "{head}"
    );
    body.to_owned()
}

/// The value of the sample `name{labels}` (labels as written, in order;
/// "" for none).
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let key = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    let line = text
        .lines()
        .find(|l| l.starts_with(&key))
        .unwrap_or_else(|| panic!("no sample {key:?} in:\n{text}"));
    line[key.len()..].parse().expect("a number")
}

/// `promtool check metrics` on `text`; skips (with the reason printed)
/// when promtool is not installed (Debian package `prometheus`).
fn promtool_check(text: &str) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            skip(&format!(
                "promtool check metrics (promtool not found: {e}; Debian package prometheus)"
            ));
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\non:\n{text}"
    );
}

/// An executable script in `dir`.
fn script(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p.to_str().unwrap().to_owned()
}

fn read_all(mut s: TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// N served, M refused by deny_from, exec failures, exits by outcome
/// (a timeout among them), the histogram's count equal to the exits, the
/// identity accepted = served + refused + failed; the metrics service's
/// own only_from; 404 and 405; promtool on the scrape.
#[test]
fn metrics_count_known_traffic_exactly() {
    const N: usize = 5;
    const M: usize = 3;
    const F: usize = 2;
    let bin = TempDir::new("bin");
    let work = script(
        &bin,
        "work",
        "#!/bin/sh\nread x\ncase $x in\n fail) exit 3;;\n kill) kill -KILL $$;;\n hang) exec sleep 30;;\nesac\necho ok\n",
    );
    let broken = script(&bin, "broken", "#!/nonexistent/interpreter\n");
    let yaml = format!(
        "services:
  metrics:
    listen: 127.0.0.1:0
    builtin: metrics
    only_from: [127.0.0.1]
  work:
    listen: 127.0.0.1:0
    exec: {work}
    {user}
    deny_from: [127.0.0.3]
    timeout: 1s
    kill_grace: 1s
  broken:
    listen: 127.0.0.1:0
    exec: {broken}
    {user}
",
        user = user_line()
    );
    let d = Superd::start(&yaml);
    let m = d.addr("metrics");
    let w = d.addr("work");
    let b = d.addr("broken");

    let ask = |what: &str| {
        let mut s = connect(&w);
        s.write_all(format!("{what}\n").as_bytes()).unwrap();
        read_all(s)
    };
    for _ in 0..N {
        assert_eq!(ask("ok"), b"ok\n");
    }
    ask("fail");
    ask("fail");
    ask("kill");
    ask("hang");
    d.wait_for(&["exit service=work ", "reason=timeout"]);
    for _ in 0..M {
        let s = connect_from("127.0.0.3", &w);
        assert!(read_all(s).is_empty(), "a refused connection gets nothing");
    }
    for _ in 0..F {
        assert!(read_all(connect(&b)).is_empty());
    }
    d.wait_until("every exit logged", || {
        d.lines_with(&["exit service=work "]).len() == N + 4
            && d.lines_with(&["exit service=broken "]).len() == F
    });
    // The metrics service's own only_from: closed without an answer.
    let s = connect_from("127.0.0.2", &m);
    let mut s2 = s.try_clone().unwrap();
    let _ = s2.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    assert!(read_all(s).is_empty(), "only_from applies to metrics");
    d.wait_for(&["refused service=metrics ", "reason=only_from"]);

    let t = scrape(&m);
    let svc = |s: &str| format!("service=\"{s}\"");
    let work_l = svc("work");
    let v = |name: &str, labels: &str| sample(&t, name, labels);
    assert_eq!(v("superd_connections_total", &work_l), (N + 4 + M) as f64);
    assert_eq!(v("superd_served_total", &work_l), (N + 4) as f64);
    assert_eq!(
        v(
            "superd_refused_total",
            &format!("{work_l},reason=\"deny_from\"")
        ),
        M as f64
    );
    assert_eq!(
        v(
            "superd_refused_total",
            &format!("{work_l},reason=\"only_from\"")
        ),
        0.0
    );
    assert_eq!(v("superd_exec_failures_total", &work_l), 0.0);
    assert_eq!(v("superd_pending_connections", &work_l), 0.0);
    assert_eq!(v("superd_active_connections", &work_l), 0.0);
    for (outcome, n) in [("ok", N), ("error", 2), ("signal", 1), ("timeout", 1)] {
        assert_eq!(
            v(
                "superd_exits_total",
                &format!("{work_l},outcome=\"{outcome}\"")
            ),
            n as f64,
            "outcome {outcome}"
        );
    }
    assert_eq!(
        v("superd_connection_duration_seconds_count", &work_l),
        (N + 4) as f64
    );
    assert_eq!(
        v(
            "superd_connection_duration_seconds_bucket",
            &format!("{work_l},le=\"+Inf\"")
        ),
        (N + 4) as f64
    );
    // The timed-out one lasted its timeout at least.
    assert!(v("superd_connection_duration_seconds_sum", &work_l) >= 1.0);
    assert!(
        v(
            "superd_connection_duration_seconds_bucket",
            &format!("{work_l},le=\"0.5\"")
        ) <= (N + 3) as f64
    );
    let broken_l = svc("broken");
    assert_eq!(v("superd_connections_total", &broken_l), F as f64);
    assert_eq!(v("superd_served_total", &broken_l), 0.0);
    assert_eq!(v("superd_exec_failures_total", &broken_l), F as f64);
    assert_eq!(
        v(
            "superd_exits_total",
            &format!("{broken_l},outcome=\"error\"")
        ),
        F as f64
    );
    assert_eq!(
        v("superd_connection_duration_seconds_count", &broken_l),
        F as f64
    );
    // The metrics service counts itself: the refused one, and this scrape.
    let metrics_l = svc("metrics");
    assert_eq!(
        v(
            "superd_refused_total",
            &format!("{metrics_l},reason=\"only_from\"")
        ),
        1.0
    );
    assert_eq!(v("superd_connections_total", &metrics_l), 2.0);
    assert_eq!(
        v(
            "superd_service_state",
            &format!("{work_l},state=\"listening\"")
        ),
        1.0
    );
    assert_eq!(
        v(
            "superd_build_info",
            &format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))
        ),
        1.0
    );
    assert!(v("process_open_fds", "") > 3.0);
    assert!(v("process_resident_memory_bytes", "") > 0.0);
    assert!(v("process_start_time_seconds", "") > 1e9);
    assert_eq!(v("superd_log_lines_dropped_total", ""), 0.0);
    promtool_check(&t);

    // The same counters in SIGUSR1's line.
    d.signal(nix::sys::signal::Signal::SIGUSR1);
    let st = d.wait_for(&["status service=work "]);
    for part in [
        format!(" accepted={} ", N + 4 + M),
        format!(" served={} ", N + 4),
        format!(" refused_deny_from={M} "),
        " exec_failures=0 ".to_owned(),
        " pending=0 ".to_owned(),
        format!(" exits_ok={N} "),
        " exits_timeout=1 ".to_owned(),
    ] {
        assert!(st.contains(&part), "{part:?} not in {st}");
    }

    // Anything but GET/HEAD /metrics.
    let r = http(&m, "GET / HTTP/1.0\r\n\r\n");
    assert!(r.starts_with("HTTP/1.0 404 Not Found\r\n"), "{r}");
    let r = http(&m, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
    assert!(r.contains("\r\nAllow: GET, HEAD\r\n"), "{r}");
    let r = http(&m, "HEAD /metrics HTTP/1.0\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.0 200 OK\r\n") && r.ends_with("\r\n\r\n"),
        "{r}"
    );
    let r = http(&m, "NONSENSE\r\n\r\n");
    assert!(r.starts_with("HTTP/1.0 400 Bad Request\r\n"), "{r}");
    // A request that never ends its head is cut at the cap.
    let mut s = connect(&m);
    let _ = s.write_all(&[b'x'; 9000]);
    let mut r = Vec::new();
    let _ = s.read_to_end(&mut r);
    assert!(
        r.starts_with(b"HTTP/1.0 431 "),
        "{}",
        String::from_utf8_lossy(&r)
    );
    assert_eq!(d.stop().code(), Some(0));
}

/// At max_connections superd stops accepting: the clients wait in the
/// kernel's accept queue (superd_listen_queue counts them), the paused
/// time for max_connections grows, the state says so; promtool passes on
/// a scrape taken then; once the holders go, every waiting client is
/// served and the pause stops growing.
#[test]
fn a_service_at_its_limit_shows_its_queue_and_paused_time() {
    let yaml = format!(
        "services:
  metrics:
    listen: 127.0.0.1:0
    builtin: metrics
  slow:
    listen: 127.0.0.1:0
    exec: /bin/cat
    {}
    max_connections: 2
",
        user_line()
    );
    let d = Superd::start(&yaml);
    let m = d.addr("metrics");
    let a = d.addr("slow");
    let slow = "service=\"slow\"";
    let holders: Vec<TcpStream> = (0..2).map(|_| connect(&a)).collect();
    d.wait_nth(2, &["spawn service=slow "]);
    let waiting: Vec<TcpStream> = (0..3).map(|_| connect(&a)).collect();
    let queue_label = format!("{slow},address=\"{a}\"");
    let mut t = String::new();
    d.wait_until("three clients in the accept queue", || {
        t = scrape(&m);
        sample(&t, "superd_listen_queue", &queue_label) == 3.0
    });
    assert_eq!(
        sample(
            &t,
            "superd_service_state",
            &format!("{slow},state=\"paused_max_connections\"")
        ),
        1.0
    );
    assert_eq!(sample(&t, "superd_active_connections", slow), 2.0);
    promtool_check(&t);
    let paused = |t: &str| {
        sample(
            t,
            "superd_paused_seconds_total",
            &format!("{slow},reason=\"max_connections\""),
        )
    };
    let first = paused(&t);
    d.wait_until("the paused time grows", || {
        paused(&scrape(&m)) >= first + 0.2
    });
    assert_eq!(
        sample(
            &scrape(&m),
            "superd_paused_seconds_total",
            &format!("{slow},reason=\"rate\"")
        ),
        0.0
    );

    // The holders go: everyone waiting is served, in turn.
    drop(holders);
    for mut s in waiting {
        s.write_all(b"hi\n").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_all(s), b"hi\n");
    }
    d.wait_until("every exit logged", || {
        d.lines_with(&["exit service=slow "]).len() == 5
    });
    let t = scrape(&m);
    assert_eq!(sample(&t, "superd_listen_queue", &queue_label), 0.0);
    assert_eq!(sample(&t, "superd_served_total", slow), 5.0);
    let settled = paused(&t);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(paused(&scrape(&m)), settled, "no pause below the limit");
    assert_eq!(d.stop().code(), Some(0));
}

/// superd_reloads_total after a good and a failed reload.
#[test]
fn reload_counters_count_good_and_failed_reloads() {
    let good = "services:\n  metrics:\n    listen: 127.0.0.1:0\n    builtin: metrics\n";
    let d = Superd::start(good);
    let m = d.addr("metrics");
    let t = scrape(&m);
    assert_eq!(sample(&t, "superd_reloads_total", "result=\"ok\""), 0.0);
    // Same port, so the kept socket answers after the reload.
    let port = m.rsplit(':').next().unwrap();
    let file = d.dir.path().join("test.yaml");
    fs::write(
        &file,
        format!(
            "services:\n  metrics:\n    listen: 127.0.0.1:{port}\n    builtin: metrics\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n"
        ),
    )
    .unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_for(&["reloaded "]);
    fs::write(&file, "services:\n  metrics:\n    lisen: 1\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_for(&["reload failed "]);
    let t = scrape(&m);
    assert_eq!(sample(&t, "superd_reloads_total", "result=\"ok\""), 1.0);
    assert_eq!(sample(&t, "superd_reloads_total", "result=\"failed\""), 1.0);
    // The new service is there, counted from zero.
    assert_eq!(sample(&t, "superd_connections_total", "service=\"e\""), 0.0);
    assert_eq!(d.stop().code(), Some(0));
}

/// A wait service whose child holds the socket is `child_running`, not
/// `listening`, in SIGUSR1, status and metrics alike.
#[test]
fn a_wait_service_with_its_child_running_says_so() {
    let dir = TempDir::new("st");
    let sock = dir.path().join("status.sock");
    let yaml = format!(
        "services:
  status:
    listen: {}
    builtin: status
  metrics:
    listen: 127.0.0.1:0
    builtin: metrics
  holder:
    listen: 127.0.0.1:0
    wait: true
    exec: [/bin/sleep, '30']
    {u}
  activated:
    listen: [127.0.0.1:0, {{address: 127.0.0.1:0, socket: dgram}}]
    wait: true
    pass: listen_fds
    exec: [/bin/sleep, '30']
    {u}
",
        sock.display(),
        u = user_line()
    );
    let d = Superd::start(&yaml);
    let m = d.addr("metrics");
    let h = d.addr("holder");
    let _client = connect(&h);
    d.wait_for(&["spawn service=holder "]);
    // A pass: listen_fds child holds every socket of its service.
    let _other = connect(&d.addr("activated"));
    d.wait_for(&["spawn service=activated "]);
    d.signal(nix::sys::signal::Signal::SIGUSR1);
    let st = d.wait_for(&["status service=holder "]);
    assert!(st.contains(" state=child_running "), "{st}");
    let st = d.wait_for(&["status service=activated "]);
    assert!(st.contains(" state=child_running "), "{st}");
    let t = scrape(&m);
    assert_eq!(
        sample(
            &t,
            "superd_service_state",
            "service=\"activated\",state=\"child_running\""
        ),
        1.0
    );
    assert_eq!(
        sample(
            &t,
            "superd_service_state",
            "service=\"holder\",state=\"child_running\""
        ),
        1.0
    );
    assert_eq!(
        sample(
            &t,
            "superd_service_state",
            "service=\"holder\",state=\"listening\""
        ),
        0.0
    );
    let out = status_cmd(&[sock.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    // The entry of `list` whose `key` is `value`.
    let entry = |list: &str, key: &str, value: &str| {
        doc[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e[key] == value)
            .unwrap_or_else(|| panic!("{list}: no {key}={value} in the document"))
            .clone()
    };
    let holder = entry("services", "name", "holder");
    assert_eq!(holder["state"], "child_running");
    let activated = entry("services", "name", "activated");
    assert_eq!(activated["state"], "child_running");
    let child = entry("children", "service", "holder");
    assert!(child["peer"].is_null(), "a wait child has no peer: {child}");
    assert_eq!(d.stop().code(), Some(0));
}

fn status_cmd(args: &[&str]) -> std::process::Output {
    Command::new(superd_bin())
        .arg("status")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `superd status PATH` prints every service and live child; `--json`
/// parses and names the same; TCP works too; nothing listening is exit 1
/// with one line on stderr.
#[test]
fn superd_status_prints_services_and_children() {
    let dir = TempDir::new("st");
    let sock = dir.path().join("status.sock");
    let yaml = format!(
        "services:
  status:
    listen: {}
    builtin: status
  status-tcp:
    listen: 127.0.0.1:0
    builtin: status
  cat:
    listen: 127.0.0.1:0
    exec: /bin/cat
    {}
  echo:
    listen: 127.0.0.1:0
    builtin: echo
  off:
    listen: 127.0.0.1:0
    builtin: echo
    enabled: false
",
        sock.display(),
        user_line()
    );
    let d = Superd::start(&yaml);
    let cat = d.addr("cat");
    let _c1 = connect(&cat);
    let _c2 = connect(&cat);
    let pids: Vec<String> = (1..=2)
        .map(|n| field(&d.wait_nth(n, &["spawn service=cat "]), "pid").unwrap())
        .collect();
    let _e = connect(&d.addr("echo"));
    let path = sock.to_str().unwrap();

    let out = status_cmd(&[path]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for (name, state) in [
        ("status", "listening"),
        ("status-tcp", "listening"),
        ("cat", "listening"),
        ("echo", "listening"),
        ("off", "disabled"),
    ] {
        assert!(
            rows.iter()
                .any(|r| r.first() == Some(&name) && r.get(1) == Some(&state)),
            "{name} {state} not in:\n{text}"
        );
    }
    for pid in &pids {
        assert!(
            rows.iter()
                .any(|r| r.first() == Some(&"child") && r.get(2) == Some(&pid.as_str())),
            "child {pid} not in:\n{text}"
        );
    }
    d.wait_until("the echo session is live", || {
        status_cmd(&[path])
            .stdout
            .windows(12)
            .any(|w| w == b"session  ech")
    });

    let out = status_cmd(&["--json", path]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let names: Vec<&str> = doc["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["status", "status-tcp", "cat", "echo", "off"]);
    let cat_doc = &doc["services"][2];
    assert_eq!(cat_doc["addresses"][0], cat.as_str());
    assert_eq!(cat_doc["active"], 2);
    assert_eq!(cat_doc["counters"]["accepted"], 2);
    assert_eq!(cat_doc["counters"]["refused"]["deny_from"], 0);
    let mut got: Vec<String> = doc["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["service"], "cat");
            assert!(c["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
            assert!(c["age_seconds"].as_f64().unwrap() >= 0.0);
            c["pid"].to_string()
        })
        .collect();
    got.sort();
    let mut want = pids.clone();
    want.sort();
    assert_eq!(got, want);

    // A relative path (it has a slash).
    let out = Command::new(superd_bin())
        .args(["status", "./status.sock"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // Over TCP, with the default table.
    let out = status_cmd(&[&d.addr("status-tcp")]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("status-tcp"));

    // Nothing there: exit 1, one line on stderr, nothing on stdout.
    let gone = dir.path().join("nothing.sock");
    let out = status_cmd(&[gone.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("superd status: "), "{err}");
    assert!(err.contains("nothing.sock"), "{err}");
    // A closed TCP port: the same.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let out = status_cmd(&[&addr]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    assert_eq!(d.stop().code(), Some(0));
}

/// metrics and status serve connections: on a datagram socket they are a
/// load error, with file:line:column.
#[test]
fn metrics_and_status_need_a_stream_socket() {
    for b in ["metrics", "status"] {
        let dir = TempDir::new("cfg");
        let f = dir.write(
            "x.yaml",
            &format!(
                "services:\n  x:\n    listen: 127.0.0.1:0\n    socket: dgram\n    builtin: {b}\n"
            ),
        );
        let out = Command::new(superd_bin())
            .arg("--check")
            .arg(&f)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("x.yaml:5:") && err.contains("needs a stream socket"),
            "{err}"
        );
    }
}
