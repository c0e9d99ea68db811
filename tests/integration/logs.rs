//! The log's forms through the real binary (superd(8), LOGS): JSON lines,
//! the text timestamp, the journal's priority prefix; what a reload logs;
//! `success_status` deciding an exit's level.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use serde_json::{Map, Value};

use crate::harness::*;

/// Starts superd on `yaml` with `--log-format json` (and `-v`).
fn start_json(yaml: &str) -> Superd {
    let dir = TempDir::new("json");
    dir.write("test.yaml", yaml);
    let d = dir.path().to_str().unwrap().to_string();
    Superd::spawn(dir, &[&d, "-v", "--log-format", "json"], &[])
}

/// One JSON log line as an object; panics with the line otherwise.
fn object(line: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(m)) => m,
        other => panic!("not a JSON object: {line:?} ({other:?})"),
    }
}

fn str_of<'a>(o: &'a Map<String, Value>, key: &str) -> &'a str {
    o.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string {key:?} in {o:?}"))
}

/// Waits for the JSON line whose `msg` is `msg` and whose fields hold
/// every `(key, value)` of `with`.
fn wait_json(d: &Superd, msg: &str, with: &[(&str, &str)]) -> Map<String, Value> {
    let mut parts = vec![format!("\"msg\":\"{msg}\"")];
    parts.extend(with.iter().map(|(k, v)| format!("\"{k}\":\"{v}\"")));
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    object(&d.wait_for(&parts))
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp with `digits`
/// fractional digits (`2026-01-02T03:04:05.678Z`); panics on any other
/// shape.
fn parse_ts(ts: &str, digits: usize) -> f64 {
    let b = ts.as_bytes();
    assert_eq!(b.len(), 21 + digits, "{ts:?}");
    let num = |r: std::ops::Range<usize>| -> i64 {
        assert!(b[r.clone()].iter().all(u8::is_ascii_digit), "{ts:?}");
        ts[r].parse().unwrap()
    };
    assert!(
        b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && b[19] == b'.'
            && b[20 + digits] == b'Z',
        "{ts:?}"
    );
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    // Days from civil (Howard Hinnant), to compare with the clock.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19);
    secs as f64 + num(20..20 + digits) as f64 / 10f64.powi(digits as i32)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Connects to a service that refuses us: it closes (or resets) the
/// connection without an answer.
fn refused(addr: &str) {
    use std::io::{Read, Write};
    let mut c = connect(addr);
    let _ = c.write_all(b"x\n");
    let mut buf = Vec::new();
    if let Ok(n) = c.read_to_end(&mut buf) {
        assert_eq!(n, 0, "a refused connection got {buf:?}");
    }
}

/// A script at `path` that cannot be executed (its interpreter does not
/// exist): every connection to it ends in `exec failed`.
fn unexecutable(dir: &TempDir) -> String {
    let p = dir.write("broken", "#!/nonexistent/interpreter\n");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

/// A session with every kind of event, under `--log-format json`: each
/// line is one JSON object with `ts`, `level` and `msg`, and the fields
/// of the text form as keys; every line that ends a connection names its
/// service.
#[test]
fn every_json_line_is_an_object_with_the_fields() {
    let progs = TempDir::new("jsonprog");
    let broken = unexecutable(&progs);
    let talker = progs.write(
        "talker",
        "#!/bin/sh\necho 'hi there'\necho 'say \"x\" \\ y' >&2\n",
    );
    fs::set_permissions(&talker, fs::Permissions::from_mode(0o755)).unwrap();
    let talker = talker.display();
    let u = user_line();
    let yaml = format!(
        "services:\n  echo:\n    listen: 127.0.0.1:0\n    builtin: echo\n  \
         ok:\n    listen: 127.0.0.1:0\n    exec: {talker}\n    stderr: log\n    {u}\n  \
         denied:\n    listen: 127.0.0.1:0\n    builtin: echo\n    deny_from: [127.0.0.0/8]\n  \
         broken:\n    listen: 127.0.0.1:0\n    exec: {broken}\n    {u}\n"
    );
    let started = now_secs();
    let mut d = start_json(&yaml);
    let addr = |service: &str| {
        let o = wait_json(&d, "listening", &[("service", service)]);
        assert_eq!(str_of(&o, "socket"), "stream");
        str_of(&o, "addr").to_string()
    };
    let (echo, ok, denied, broken_addr) =
        (addr("echo"), addr("ok"), addr("denied"), addr("broken"));
    wait_json(&d, "ready", &[]);

    assert_eq!(exchange(&echo, b"ping\n"), b"ping\n");
    let exit = wait_json(&d, "exit", &[("service", "echo")]);
    assert_eq!(str_of(&exit, "level"), "INFO");
    assert_eq!(str_of(&exit, "status"), "0");
    assert_eq!(str_of(&exit, "bytes_in"), "5");

    assert_eq!(exchange(&ok, b""), b"hi there\n");
    let exit = wait_json(&d, "exit", &[("service", "ok")]);
    assert_eq!(str_of(&exit, "status"), "0");
    assert!(str_of(&exit, "pid").parse::<u32>().is_ok(), "{exit:?}");
    assert!(str_of(&exit, "peer").starts_with("127.0.0.1:"), "{exit:?}");
    assert!(str_of(&exit, "duration").ends_with('s'), "{exit:?}");
    // The text form's quoting is undone: the line exactly as written.
    let line = wait_json(&d, "stderr", &[("service", "ok")]);
    assert_eq!(str_of(&line, "line"), "say \"x\" \\ y");

    refused(&denied);
    let refused = wait_json(&d, "refused", &[("service", "denied")]);
    assert_eq!(str_of(&refused, "level"), "WARN");
    assert_eq!(str_of(&refused, "reason"), "deny_from");
    assert!(str_of(&refused, "peer").starts_with("127.0.0.1:"));

    assert_eq!(exchange(&broken_addr, b""), b"");
    let failed = wait_json(&d, "exec failed", &[("service", "broken")]);
    assert_eq!(str_of(&failed, "level"), "ERROR");
    assert_eq!(str_of(&failed, "step"), "exec");
    assert!(!str_of(&failed, "error").is_empty());
    let exit = wait_json(&d, "exit", &[("service", "broken")]);
    assert_eq!(str_of(&exit, "level"), "WARN");
    assert_eq!(str_of(&exit, "reason"), "exec_failed");

    // A reload: one service removed, one added, one changed.
    let yaml2 = yaml.replace("  denied:\n", "  denied2:\n").replace(
        "    builtin: echo\n  ok:",
        "    builtin: echo\n    max_connections: 7\n  ok:",
    );
    d.dir.write("test.yaml", &yaml2);
    d.signal(Signal::SIGHUP);
    let reloaded = wait_json(&d, "reloaded", &[]);
    assert_eq!(str_of(&reloaded, "services"), "4");
    assert_eq!(str_of(&reloaded, "added"), "1");
    assert_eq!(str_of(&reloaded, "removed"), "1");
    assert_eq!(str_of(&reloaded, "changed"), "1");
    assert_eq!(str_of(&reloaded, "unchanged"), "2");
    wait_json(&d, "service added", &[("service", "denied2")]);
    wait_json(&d, "service removed", &[("service", "denied")]);
    let changed = wait_json(&d, "service changed", &[("service", "echo")]);
    assert_eq!(str_of(&changed, "fields"), "max_connections");

    // A failed reload: its count is a key, its remark ends the message.
    d.dir.write(
        "test.yaml",
        &yaml2.replace("max_connections: 7", "max_connections: lots"),
    );
    d.signal(Signal::SIGHUP);
    let failed = wait_json(
        &d,
        "reload failed (the running configuration is unchanged)",
        &[],
    );
    assert_eq!(str_of(&failed, "level"), "ERROR");
    assert_eq!(str_of(&failed, "errors"), "1");

    d.signal(Signal::SIGUSR1);
    let status = wait_json(&d, "status", &[("service", "echo")]);
    assert_eq!(str_of(&status, "state"), "listening");
    assert_eq!(str_of(&status, "accepted"), "1");
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
    let text = d.log_text();
    let mut msgs = std::collections::BTreeSet::new();
    for line in text.lines() {
        let o = object(line);
        let ts = parse_ts(str_of(&o, "ts"), 6);
        assert!(
            ts >= started - 1.0 && ts <= now_secs() + 1.0,
            "a time that is not now: {line}"
        );
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&str_of(&o, "level")),
            "{line}"
        );
        let msg = str_of(&o, "msg");
        // (A config error quotes the file: its text is its own.)
        assert!(
            !msg.contains('=') || msg.starts_with("config error: "),
            "a field left in the message: {line}"
        );
        if ["exit", "refused", "exec failed", "timeout", "accept"].contains(&msg) {
            assert!(o.contains_key("service"), "no service: {line}");
        }
        msgs.insert(msg.to_string());
    }
    for m in [
        "listening",
        "ready",
        "accept",
        "exit",
        "refused",
        "exec failed",
        "stderr",
        "reloading",
        "reloaded",
        "reload failed (the running configuration is unchanged)",
        "status",
        "shutting down",
        "stopped",
    ] {
        assert!(msgs.contains(m), "no {m:?} line in:\n{text}");
    }
}

/// A configuration error at start, under `--log-format json`: JSON lines
/// too; `--check` keeps its plain lines.
#[test]
fn json_start_errors_are_json_and_check_stays_plain() {
    let dir = TempDir::new("jsonbad");
    dir.write(
        "bad.yaml",
        "services:\n  x:\n    listen: 127.0.0.1:0\n    builtin: echo\n    max_connections: 0\n",
    );
    let out = Command::new(superd_bin())
        .arg(dir.path())
        .args(["--log-format", "json"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = err.lines().map(object).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(str_of(&lines[0], "msg").contains("bad.yaml:5:22"), "{err}");
    assert_eq!(str_of(&lines[1], "errors"), "1");
    let out = Command::new(superd_bin())
        .arg(dir.path())
        .args(["--check", "--log-format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("{}:5:22: ", dir.path().join("bad.yaml").display())),
        "{err}"
    );
}

/// superd with its stderr on a regular file, `env` added; returns the file
/// once `wait` shows in it (and superd is stopped).
fn log_to_file(
    yaml: &str,
    env: impl Fn(&std::path::Path) -> Vec<(String, String)>,
    act: impl Fn(&str),
) -> String {
    let dir = TempDir::new("filelog");
    dir.write("t.yaml", yaml);
    let log = dir.path().join("log");
    let file = fs::File::create(&log).unwrap();
    let mut cmd = Command::new(superd_bin());
    cmd.arg(dir.path().join("t.yaml"))
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(file));
    for (k, v) in env(&log) {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let read = || fs::read_to_string(&log).unwrap_or_default();
    wait_until(
        "the ready line",
        &mut || read().contains("INFO  ready "),
        read,
    );
    act(&read());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "superd did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
    read()
}

const DENIED: &str = "services:\n  denied:\n    listen: 127.0.0.1:0\n    builtin: echo\n    deny_from: [127.0.0.0/8]\n";

/// Connects once to the `denied` service of a log text.
fn refuse_once(text: &str) {
    let l = text
        .lines()
        .find(|l| l.contains("listening service=denied "))
        .expect("listening line");
    refused(&field(l, "addr").unwrap());
}

/// Text lines start with the time, in UTC, to the millisecond.
#[test]
fn text_lines_start_with_a_utc_timestamp() {
    let started = now_secs();
    let text = log_to_file(DENIED, |_| Vec::new(), refuse_once);
    let mut levels = Vec::new();
    for l in text.lines() {
        let (ts, rest) = l.split_once(' ').unwrap();
        let t = parse_ts(ts, 3);
        assert!(t >= started - 1.0 && t <= now_secs() + 1.0, "{l}");
        levels.push(rest.split(' ').next().unwrap().to_string());
        assert!(!l.starts_with('<'), "{l}");
    }
    assert!(levels.contains(&"WARN".to_string()), "{text}");
    assert!(text.contains(" INFO  stopped"), "{text}");
}

/// When stderr is the stream `JOURNAL_STREAM` names (its device and
/// inode), lines carry the `<N>` priority and no timestamp; when the
/// variable names another file, they do not.
#[test]
fn under_the_journal_lines_carry_the_priority_instead_of_the_time() {
    let journal = |log: &std::path::Path| {
        let m = fs::metadata(log).unwrap();
        vec![(
            "JOURNAL_STREAM".to_string(),
            format!("{}:{}", m.dev(), m.ino()),
        )]
    };
    let text = log_to_file(DENIED, journal, refuse_once);
    for l in text.lines() {
        assert!(
            ["<6>INFO  ", "<4>WARN  ", "<3>ERROR ", "<7>DEBUG "]
                .iter()
                .any(|p| l.starts_with(p)),
            "{l}"
        );
    }
    assert!(text.contains("<4>WARN  refused service=denied "), "{text}");
    assert!(
        text.contains("<6>INFO  listening service=denied "),
        "{text}"
    );
    // Another file's inode: not the journal.
    let elsewhere = |log: &std::path::Path| {
        let m = fs::metadata(log).unwrap();
        vec![(
            "JOURNAL_STREAM".to_string(),
            format!("{}:{}", m.dev(), m.ino() + 1),
        )]
    };
    let text = log_to_file(DENIED, elsewhere, refuse_once);
    assert!(
        text.lines().all(|l| l.as_bytes()[0].is_ascii_digit()),
        "{text}"
    );
}

/// An exit 255 is an INFO line with `success_status: [255]`, a WARN line
/// without; a child killed by SIGPIPE alike; a timeout stays WARN even
/// when its signal is listed.
#[test]
fn success_status_makes_an_exit_normal() {
    let u = user_line();
    let d = Superd::start(&format!(
        "services:\n  \
         ssh:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'exit 255']\n    success_status: [255, SIGPIPE]\n    {u}\n  \
         plain:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'exit 255']\n    {u}\n  \
         pipe:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'kill -PIPE $$']\n    success_status: SIGPIPE\n    {u}\n  \
         pipe_plain:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'kill -PIPE $$']\n    success_status: [255]\n    {u}\n  \
         slow:\n    listen: 127.0.0.1:0\n    exec: [/bin/sleep, '30']\n    timeout: 500ms\n    success_status: [SIGTERM, 143]\n    {u}\n"
    ));
    for s in ["ssh", "plain", "pipe", "pipe_plain", "slow"] {
        let addr = d.addr(s);
        let _ = exchange(&addr, b"");
    }
    let exit = |s: &str| d.wait_for(&["exit", &format!("service={s} ")]);
    let l = exit("ssh");
    assert!(
        l.starts_with("INFO  exit ") && l.contains(" status=255 "),
        "{l}"
    );
    let l = exit("plain");
    assert!(
        l.starts_with("WARN  exit ") && l.contains(" status=255 "),
        "{l}"
    );
    let l = exit("pipe");
    assert!(
        l.starts_with("INFO  exit ") && l.contains(" signal=SIGPIPE "),
        "{l}"
    );
    let l = exit("pipe_plain");
    assert!(
        l.starts_with("WARN  exit ") && l.contains(" signal=SIGPIPE "),
        "{l}"
    );
    let l = exit("slow");
    assert!(
        l.starts_with("WARN  exit ")
            && l.contains(" signal=SIGTERM ")
            && l.ends_with(" reason=timeout"),
        "{l}"
    );
}

/// Bad `success_status` values are load errors with file:line:column;
/// `--check` shows the set a service gets.
#[test]
fn success_status_is_checked_at_load_and_shown_by_check() {
    let u = user_line();
    for (value, at, msg) in [
        ("256", "5:21", "bad exit status 256"),
        ("[0, -1]", "5:25", "found the number -1"),
        ("[SIGFOO]", "5:22", "unknown signal \"SIGFOO\""),
        ("PIPE", "5:21", "unknown signal \"PIPE\""),
        ("[1.5]", "5:22", "found the number 1.5"),
        (
            "{a: 1}",
            "5:21",
            "invalid type: map, expected an exit status",
        ),
    ] {
        let dir = TempDir::new("succ");
        let f = dir.write(
            "a.yaml",
            &format!(
                "services:\n  s:\n    listen: 127.0.0.1:0\n    exec: /bin/true\n    success_status: {value}\n    {u}\n"
            ),
        );
        let out = Command::new(superd_bin())
            .arg("--check")
            .arg(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{value}: {err}");
        let want = format!("{}:{at}: ", f.display());
        assert!(
            err.starts_with(&want) && err.contains(msg),
            "{value}: want {want}…{msg}, got {err}"
        );
    }
    // On a builtin the field is refused; from defaults it is not.
    let dir = TempDir::new("succb");
    let f = dir.write(
        "a.yaml",
        "services:\n  b:\n    listen: 127.0.0.1:0\n    builtin: echo\n    success_status: [1]\n",
    );
    let out = Command::new(superd_bin())
        .arg("--check")
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with(&format!("{}:5:5: ", f.display())), "{err}");
    dir.write(
        "a.yaml",
        &format!(
            "defaults:\n  success_status: [1]\nservices:\n  b:\n    listen: 127.0.0.1:0\n    builtin: echo\n  \
             s:\n    listen: 127.0.0.1:0\n    exec: /bin/true\n    success_status: [SIGPIPE, 255, 3]\n    {u}\n  \
             t:\n    listen: 127.0.0.1:0\n    exec: /bin/true\n    {u}\n"
        ),
    );
    let out = Command::new(superd_bin())
        .arg("--check")
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("  success_status: 0,3,255,SIGPIPE\n"),
        "{text}"
    );
    assert!(text.contains("  success_status: 0,1\n"), "{text}");
}

/// A reload says, per service, what it added, removed and changed.
#[test]
fn a_reload_logs_what_it_changed() {
    let d = Superd::start(
        "services:\n  a:\n    listen: 127.0.0.1:0\n    builtin: echo\n  b:\n    listen: 127.0.0.1:0\n    builtin: echo\n  c:\n    listen: 127.0.0.1:0\n    builtin: daytime\n",
    );
    d.wait_for(&["ready"]);
    d.dir.write(
        "test.yaml",
        "services:\n  a:\n    listen: 127.0.0.1:0\n    builtin: discard\n    rate: 5/s\n  c:\n    listen: 127.0.0.1:0\n    builtin: daytime\n  n:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
    );
    d.signal(Signal::SIGHUP);
    let l = d.wait_for(&["reloaded services="]);
    assert!(
        l.ends_with("INFO  reloaded services=3 added=1 removed=1 changed=1 unchanged=1"),
        "{l}"
    );
    d.wait_for(&["INFO  service added service=n"]);
    d.wait_for(&["INFO  service removed service=b"]);
    d.wait_for(&["INFO  service changed service=a fields=builtin,rate"]);
    assert!(d.lines_with(&["service=c"]).len() == 1, "{}", d.log_text());
}

/// An address with a space (a unix socket's path) is one field, in text
/// (quoted) and in JSON (its own key) alike.
#[test]
fn an_address_with_a_space_is_one_field() {
    let socks = TempDir::new("space");
    let yaml = |name: &str| {
        let path = socks.path().join(name);
        let yaml = format!(
            "services:\n  sp:\n    listen: {:?}\n    builtin: echo\n",
            path.display()
        );
        (path, yaml)
    };
    let (path, y) = yaml("json with space.sock");
    let json = start_json(&y);
    let o = wait_json(&json, "listening", &[("service", "sp")]);
    assert_eq!(str_of(&o, "addr"), path.to_str().unwrap());
    assert_eq!(str_of(&o, "socket"), "stream");
    let (path, y) = yaml("text with space.sock");
    let text = Superd::start(&y);
    text.wait_for(&[&format!(
        "listening service=sp addr={:?} socket=stream",
        path.display()
    )]);
}
