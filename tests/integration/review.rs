//! Regressions of the review of issue 14: access rules where they cannot
//! apply, UDP wait access, bounded refusal logs and UDP builtin rates, exec
//! failures that held the loop or repeated a datagram, persistent accept
//! errors, the group root rule, and superd's dumpable flag.

use std::fs;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::*;

fn udp_client(bind: &str) -> UdpSocket {
    let s = UdpSocket::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

fn nothing_queued(s: &UdpSocket) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1024];
    let r = s.recv_from(&mut buf);
    s.set_nonblocking(false).unwrap();
    matches!(r, Err(ref e) if e.kind() == ErrorKind::WouldBlock)
}

/// `superd --check` on a directory holding `yaml` as t.yaml: (exit code,
/// stderr, the file's path).
fn check(yaml: &str) -> (i32, String, String) {
    let dir = TempDir::new("rv-check");
    let p = dir.write("t.yaml", yaml);
    let out = Command::new(superd_bin())
        .arg("--check")
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run superd --check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        p.display().to_string(),
    )
}

/// A copy of the probe that the test may make non-executable.
fn own_probe(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("probe-copy");
    fs::copy(probe_bin(), &p).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Sums what the `refused` lines of `service` account for: each line, and
/// the `suppressed=` count it carries.
fn refusals_accounted(d: &Superd, service: &str) -> u64 {
    d.lines_with(&["WARN  refused ", &format!("service={service} ")])
        .iter()
        .map(|l| 1 + field(l, "suppressed").map_or(0, |n| n.parse::<u64>().unwrap()))
        .sum()
}

/// `key` of `service`'s status line, from a SIGUSR1 sent now (the line
/// after those already logged: an earlier one holds older counts).
fn status_field(d: &Superd, service: &str, key: &str) -> u64 {
    let svc = format!("service={service} ");
    let parts = ["status", svc.as_str(), "refused_"];
    let before = d.lines_with(&parts).len();
    d.signal(Signal::SIGUSR1);
    let line = d.wait_nth(before + 1, &parts);
    field(&line, key).unwrap().parse().unwrap()
}

// F1: rules that cannot apply are load errors, with the field's place.
#[test]
fn access_rules_that_cannot_apply_are_load_errors() {
    let user = if is_root() { "    user: nobody\n" } else { "" };
    let cases = [
        (
            format!(
                "services:\n  tw:\n    listen: 127.0.0.1:0\n    wait: true\n    exec: /bin/cat\n{user}    deny_from: [10.0.0.0/8]\n"
            ),
            "deny_from cannot be applied: a wait service's child accepts",
        ),
        (
            format!(
                "services:\n  ux:\n    listen: /run/superd-rv-never.sock\n    exec: /bin/cat\n{user}    only_from: [127.0.0.1]\n"
            ),
            "only_from cannot be applied: a unix socket's peer",
        ),
        (
            format!(
                "services:\n  uw:\n    listen: 127.0.0.1:0\n    socket: dgram\n    exec: /bin/cat\n{user}    max_per_source: 3\n"
            ),
            "max_per_source cannot be applied: datagrams",
        ),
    ];
    for (yaml, msg) in cases {
        let (code, err, file) = check(&yaml);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(msg), "{err}");
        // file:line:column of the field (the last line; one fewer when
        // not root, without the user line).
        let field = msg.split(' ').next().unwrap();
        let line = yaml.lines().count();
        assert!(
            yaml.lines().last().unwrap().trim_start().starts_with(field),
            "{yaml}"
        );
        assert!(err.contains(&format!("{file}:{line}:")), "{err}");
    }
    // From defaults: the defaults' line, naming the service.
    let d_user = if is_root() { "  user: nobody\n" } else { "" };
    let (code, err, file) = check(&format!(
        "defaults:\n{d_user}  only_from: [127.0.0.1]\nservices:\n  fine:\n    listen: 127.0.0.1:0\n    builtin: echo\n  tw:\n    listen: 127.0.0.1:0\n    wait: true\n    exec: /bin/cat\n"
    ));
    assert_eq!(code, 1, "{err}");
    let line = if is_root() { 3 } else { 2 };
    assert!(
        err.contains(&format!(
            "{file}:{line}:15: service \"tw\": only_from (set in defaults) cannot be applied"
        )),
        "{err}"
    );
    assert!(!err.contains("\"fine\""), "{err}");
}

// N2: group root never through defaults.
#[test]
fn group_root_through_defaults_is_a_load_error() {
    if !is_root() {
        skip("the root rule is only checked when superd runs as root");
        return;
    }
    let (code, err, file) = check(
        "defaults:\n  user: nobody\n  group: root\nservices:\n  a:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "{file}:5:3: service \"a\" would run with group root through defaults ({file}:3:10)"
        )),
        "{err}"
    );
    let (code, err, _) = check(
        "defaults:\n  user: nobody\nservices:\n  a:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    group: root\n",
    );
    assert_eq!(code, 0, "{err}");
}

// F1 and F10: a UDP wait service checks each datagram that would start a
// child; refusals are logged within a budget that accounts for all.
#[test]
fn udp_wait_services_apply_only_from_and_deny_from() {
    let d = Superd::start(&format!(
        "services:\n  uw:\n    listen: 127.0.0.1:0\n    socket: dgram\n    exec: [{}, udp]\n    {}\n    deny_from: [127.0.0.3]\n  uo:\n    listen: 127.0.0.1:0\n    socket: dgram\n    exec: [{}, udp]\n    {}\n    only_from: [127.0.0.2]\n",
        probe_bin().display(),
        user_line(),
        probe_bin().display(),
        user_line()
    ));
    let uw: SocketAddr = d.addr("uw").parse().unwrap();
    let uo: SocketAddr = d.addr("uo").parse().unwrap();
    let denied = udp_client("127.0.0.3:0");
    denied.send_to(b"no", uw).unwrap();
    d.wait_for(&[
        "refused",
        "service=uw ",
        "peer=127.0.0.3:",
        "reason=deny_from",
    ]);
    let ok = udp_client("127.0.0.2:0");
    ok.send_to(b"yes", uw).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = ok
        .recv_from(&mut buf)
        .expect("a reply to the allowed source");
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(reply.contains("udp.request=yes"), "{reply}");
    d.wait_for(&["exit", "service=uw "]);
    assert!(nothing_queued(&denied));

    // only_from: 127.0.0.1 is outside it.
    let other = udp_client("127.0.0.1:0");
    other.send_to(b"out", uo).unwrap();
    d.wait_for(&[
        "refused",
        "service=uo ",
        "peer=127.0.0.1:",
        "reason=only_from",
    ]);
    ok.send_to(b"in", uo).unwrap();
    let (n, _) = ok
        .recv_from(&mut buf)
        .expect("a reply to the allowed source");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("udp.request=in"));
    assert!(nothing_queued(&other));

    // A flood of refused datagrams: few lines, every refusal counted.
    for _ in 0..50 {
        denied.send_to(b"no", uw).unwrap();
    }
    d.wait_until("50 more refusals counted", || {
        status_field(&d, "uw", "refused_deny_from") >= 51
    });
    assert!(
        d.lines_with(&["WARN  refused ", "service=uw "]).len() < 20,
        "{}",
        d.log_text()
    );
    // After the interval, the next refusal's line says how many were left
    // out: the lines account for every refusal.
    std::thread::sleep(Duration::from_millis(1100));
    denied.send_to(b"no", uw).unwrap();
    d.wait_until("every refusal accounted for in the log", || {
        refusals_accounted(&d, "uw") == 52
    });
    assert!(nothing_queued(&denied));
}

// F10: a UDP builtin without `rate` has the default bound: a datagram
// bouncing between it and another echo is held to it.
#[test]
fn a_udp_builtin_without_rate_is_bounded() {
    let d = Superd::start(
        "services:\n  ue:\n    listen: 127.0.0.1:0\n    socket: dgram\n    builtin: echo\n",
    );
    let to: SocketAddr = d.addr("ue").parse().unwrap();
    // The other echo: sends back whatever superd's echo sends it.
    let peer = udp_client("127.0.0.1:0");
    peer.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    peer.send_to(b"ping", to).unwrap();
    let mut bounces = 0u64;
    let mut buf = [0u8; 64];
    while start.elapsed() < Duration::from_secs(2) {
        match peer.recv_from(&mut buf) {
            Ok((n, from)) => {
                bounces += 1;
                peer.send_to(&buf[..n], from).unwrap();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // Seen once in a full parallel run, cause not found: an error
            // on the test's own socket says nothing about superd's bound.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionRefused | ErrorKind::Interrupted
                ) =>
            {
                eprintln!("a_udp_builtin_without_rate_is_bounded: recv_from: {e} (ignored)");
            }
            Err(e) => panic!("{e} ({:?})", e.kind()),
        }
    }
    // 100/s with a burst of 100: at most 100 + 100/s over the time the
    // loop really ran (its last receive may end past the 2 s), +1 in
    // flight, however fast the machine. Unbounded, it was thousands.
    let bound = 101 + (start.elapsed().as_secs_f64() * 100.0).ceil() as u64;
    assert!(bounces <= bound, "bounces={bounces} bound={bound}");
    assert!(bounces > 0);
    // --check shows the bound.
    let dir = TempDir::new("rv-rate");
    dir.write(
        "t.yaml",
        "services:\n  ue:\n    listen: 127.0.0.1:0\n    socket: dgram\n    builtin: echo\n",
    );
    let out = Command::new(superd_bin())
        .arg("--check")
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rate=100/s"), "{text}");
}

// F11: a UDP wait service whose program cannot exec drops the datagram
// after one attempt.
#[test]
fn a_udp_wait_exec_failure_drops_its_datagram() {
    let dir = TempDir::new("rv-f11");
    let prog = own_probe(dir.path());
    dir.write(
        "t.yaml",
        &format!(
            "services:\n  uw:\n    listen: 127.0.0.1:0\n    socket: dgram\n    exec: [{}, udp]\n    {}\n",
            prog.display(),
            user_line()
        ),
    );
    let p = dir.path().to_path_buf();
    let d = Superd::spawn(dir, &[p.to_str().unwrap(), "-v"], &[]);
    let to: SocketAddr = d.addr("uw").parse().unwrap();
    fs::set_permissions(&prog, fs::Permissions::from_mode(0o644)).unwrap();
    let c = udp_client("127.0.0.1:0");
    c.send_to(b"first", to).unwrap();
    d.wait_for(&["exec failed", "service=uw "]);
    d.wait_for(&[
        "datagram dropped",
        "service=uw ",
        "peer=127.0.0.1:",
        "reason=exec_failed",
    ]);
    fs::set_permissions(&prog, fs::Permissions::from_mode(0o755)).unwrap();
    c.send_to(b"second", to).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = c.recv_from(&mut buf).expect("a reply");
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(reply.contains("udp.request=second"), "{reply}");
    assert_eq!(d.lines_with(&["exec failed", "service=uw "]).len(), 1);
}

/// A strace run, killed (which detaches it) when dropped.
struct Strace(std::process::Child);

impl Drop for Strace {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Attaches strace to `pid` and its future children, holding every
/// execve of theirs for `secs` on entry; returns once it is attached.
fn strace_delay_exec(pid: i32, secs: u64) -> Option<Strace> {
    let mut child = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=execve",
            "-e",
            &format!("inject=execve:delay_enter={}", secs * 1_000_000),
            "-o",
            "/dev/null",
            "-p",
            &pid.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Attached: superd's status shows a tracer.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status
            .lines()
            .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
        {
            return Some(Strace(child));
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// F6: after an exec failure, a child slow to exec holds up only its own
// service: the others answer and SIGTERM is heard.
#[test]
fn a_slow_exec_after_a_failure_holds_up_nothing_else() {
    if !is_root() || Command::new("strace").arg("-V").output().is_err() {
        skip("needs root and strace (to hold a child before exec)");
        return;
    }
    let dir = TempDir::new("rv-f6");
    let prog = own_probe(dir.path());
    dir.write(
        "t.yaml",
        &format!(
            "services:\n  flaky:\n    listen: 127.0.0.1:0\n    exec: {}\n    {}\n  echo:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
            prog.display(),
            user_line()
        ),
    );
    let p = dir.path().to_path_buf();
    let mut d = Superd::spawn(dir, &[p.to_str().unwrap(), "-v", "--grace", "1"], &[]);
    let flaky = d.addr("flaky");
    let echo = d.addr("echo");
    // One exec failure.
    fs::set_permissions(&prog, fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = connect(&flaky);
    let mut sink = Vec::new();
    let _ = c.read_to_end(&mut sink);
    d.wait_for(&["exec failed", "service=flaky "]);
    fs::set_permissions(&prog, fs::Permissions::from_mode(0o755)).unwrap();
    // The next child is held in execve for far longer than the deadline.
    let Some(strace) = strace_delay_exec(d.pid(), 600) else {
        skip("strace cannot attach here");
        return;
    };
    let _held = connect(&flaky);
    // The second child of the service (the first failed).
    let line = d.wait_nth(2, &["spawn", "service=flaky "]);
    let child: i32 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .expect("the spawn line names the child");
    // The child is held in its execve by the tracer (not past it).
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
        if status.lines().any(|l| l.starts_with("State:\tt")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the child was never held: {status}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Another service answers meanwhile (a blocked loop would not within
    // the harness's deadline: the exec is held for 600 s).
    assert_eq!(exchange(&echo, b"still here"), b"still here");
    // And SIGTERM is heard while the child is still held. A traced child
    // held by the tracer does not die even of SIGKILL until the tracer
    // lets it go: the tracer goes, then superd ends.
    d.signal(Signal::SIGTERM);
    d.wait_for(&["shutting down", "signal=SIGTERM"]);
    drop(strace);
    let status = d.wait_exit();
    assert!(status.success(), "{status:?}\n{}", d.log_text());
    assert!(!d.lines_with(&["stopped"]).is_empty());
}

/// The descriptor of superd's listening socket on `port`, duplicated into
/// this process (pidfd_getfd: root may take another process's fds).
fn steal_listener(pid: i32, port: u16) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) with a pid and no flags returns a new fd or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return None;
    }
    // SAFETY: a fresh fd we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    for e in fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let Ok(target) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: pidfd_getfd(2) returns a new fd in this process or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
        if fd < 0 {
            continue;
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let listening = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::AcceptConn)
            .unwrap_or(false);
        let local = nix::sys::socket::getsockname::<nix::sys::socket::SockaddrIn>(fd.as_raw_fd());
        if listening && local.is_ok_and(|a| a.port() == port) {
            return Some(fd);
        }
    }
    None
}

// F8: a listener whose accept fails for good (here EINVAL: it was shut
// down from outside and no longer listens) pauses instead of spinning.
#[test]
fn a_persistent_accept_error_pauses_the_listener() {
    if !is_root() {
        skip("taking superd's listener (pidfd_getfd) needs root");
        return;
    }
    let mut d = Superd::start(
        "services:\n  broken:\n    listen: 127.0.0.1:0\n    builtin: echo\n  echo:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
    );
    let port = d.port("broken");
    let echo = d.addr("echo");
    let Some(fd) = steal_listener(d.pid(), port) else {
        skip("pidfd_getfd is not available here");
        return;
    };
    nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Both).unwrap();
    drop(fd);
    let line = d.wait_for(&["cannot accept", "service=broken "]);
    assert!(line.contains("error=\"Invalid argument\""), "{line}");
    assert!(line.contains("pause="), "{line}");
    assert_eq!(exchange(&echo, b"alive"), b"alive");
    d.signal(Signal::SIGUSR1);
    let st = d.wait_for(&["status", "service=broken "]);
    assert!(
        st.contains("state=paused_accept_error") || st.contains("state=listening"),
        "{st}"
    );
    // Not spinning: superd uses little CPU over a few pause intervals.
    let before = d.cpu_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let used = d.cpu_ticks() - before;
    assert!(used < 50, "superd used {used} ticks in 1 s");
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit().success());
}

// N1: superd is not dumpable: its /proc files belong to root even when
// superd runs as another user, so no process of that user can ptrace it or
// open its memory.
#[test]
fn superd_is_not_dumpable() {
    if !is_root() {
        skip("needs root to start superd as another user");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new("rv-n1");
    dir.write(
        "t.yaml",
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
    );
    let mut cmd = Command::new(superd_bin());
    cmd.arg(dir.path()).arg("-v").uid(65534).gid(65534);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = LogFollower::follow(child.stderr.take().unwrap());
    log.wait_for(&["ready"]);
    let pid = child.id();
    let mem = fs::metadata(format!("/proc/{pid}/mem")).unwrap();
    let fds = fs::metadata(format!("/proc/{pid}/fd")).unwrap();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534")),
        "{status}"
    );
    // A non-dumpable process's /proc files are root's, whatever its user.
    assert_eq!((mem.uid(), mem.gid()), (0, 0), "/proc/PID/mem");
    assert_eq!((fds.uid(), fds.gid()), (0, 0), "/proc/PID/fd");
}
