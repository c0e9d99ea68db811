//! superd(8), SIGNALS and OPTIONS: reload that drops nothing, status,
//! sd_notify, pid file.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use nix::sys::signal::Signal;

use crate::harness::*;

/// The inode of the TCP socket listening on 127.0.0.1:`port`, from
/// /proc/net/tcp.
fn listening_inode(port: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let want = format!("0100007F:{port:04X}");
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 9 && f[1] == want && f[3] == "0A").then(|| f[9].parse().ok())?
    })
}

/// Whether superd holds the socket with `inode` among its fds.
fn holds_inode(pid: i32, inode: u64) -> bool {
    let want = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == want))
        })
        .unwrap_or(false)
}

fn echo_service(word: &str, port: u16) -> String {
    format!(
        "services:\n  say:\n    listen: 127.0.0.1:{port}\n    exec: [/bin/echo, {word}]\n    {}\n",
        user_line()
    )
}

#[test]
fn reload_changing_arguments_refuses_nothing_and_keeps_the_socket() {
    let d = Superd::start(&echo_service("one", 0));
    let port = d.port("say");
    let addr = format!("127.0.0.1:{port}");
    // Pin the port in the file, so the reload keeps the same address.
    d.dir.write("test.yaml", &echo_service("one", port));
    d.signal(Signal::SIGHUP);
    d.wait_nth(1, &["reloaded"]);
    let inode = listening_inode(port).expect("listening socket");

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let saw_two = Arc::new(AtomicBool::new(false));
    let client = {
        let (stop, failures, served, saw_two, addr) = (
            stop.clone(),
            failures.clone(),
            served.clone(),
            saw_two.clone(),
            addr.clone(),
        );
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 100_000 {
                n += 1;
                match std::net::TcpStream::connect(&addr) {
                    Ok(mut s) => {
                        s.set_read_timeout(Some(DEADLINE)).unwrap();
                        let mut out = Vec::new();
                        match s.read_to_end(&mut out) {
                            Ok(_) if out == b"one\n" || out == b"two\n" => {
                                served.fetch_add(1, Ordering::SeqCst);
                                if out == b"two\n" {
                                    saw_two.store(true, Ordering::SeqCst);
                                }
                            }
                            _ => {
                                failures.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    Err(e) => {
                        assert_ne!(e.kind(), ErrorKind::WouldBlock);
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
    };
    d.wait_until("some connections", || served.load(Ordering::SeqCst) > 20);
    d.dir.write("test.yaml", &echo_service("two", port));
    d.signal(Signal::SIGHUP);
    d.wait_nth(2, &["reloaded"]);
    d.wait_until("new arguments in use", || saw_two.load(Ordering::SeqCst));
    let before = served.load(Ordering::SeqCst);
    d.wait_until("more connections", || {
        served.load(Ordering::SeqCst) > before + 20
    });
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "refused or reset connections"
    );
    assert_eq!(
        listening_inode(port),
        Some(inode),
        "listening socket replaced"
    );
    if d.fd_count().is_some() {
        assert!(holds_inode(d.pid(), inode));
    }
    assert_eq!(exchange(&addr, b""), b"two\n");
}

#[test]
fn a_broken_reload_keeps_the_old_configuration() {
    let d = Superd::start(&echo_service("old", 0));
    let addr = d.addr("say");
    d.dir.write(
        "test.yaml",
        "services:\n  say:\n    listen: 127.0.0.1:0\n    exec: [/bin/echo, new]\n    lisen: oops\n",
    );
    d.signal(Signal::SIGHUP);
    let line = d.wait_for(&["test.yaml:5:5", "lisen"]);
    assert!(line.starts_with("ERROR"), "{line}");
    d.wait_for(&["reload failed"]);
    assert_eq!(exchange(&addr, b""), b"old\n");
}

#[test]
fn a_reload_that_cannot_bind_is_rolled_back_whole() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hport = held.local_addr().unwrap().port();
    let d = Superd::start(&format!(
        "services:\n  a:\n    listen: 127.0.0.1:0\n    builtin: echo\n  b:\n    listen: 127.0.0.1:0\n    exec: [/bin/echo, b]\n    {}\n",
        user_line()
    ));
    let (pa, pb) = (d.port("a"), d.port("b"));
    d.dir.write(
        "test.yaml",
        &format!(
            "services:\n  a:\n    listen: 127.0.0.1:{pa}\n    builtin: echo\n  c:\n    listen: 127.0.0.1:0\n    builtin: discard\n  d:\n    listen: 127.0.0.1:{hport}\n    builtin: echo\n"
        ),
    );
    d.signal(Signal::SIGHUP);
    let line = d.wait_for(&["reload failed"]);
    assert!(line.contains(&hport.to_string()), "{line}");
    // Every old service still answers; b was not removed.
    assert_eq!(exchange(&format!("127.0.0.1:{pa}"), b"x"), b"x");
    assert_eq!(exchange(&format!("127.0.0.1:{pb}"), b""), b"b\n");
    assert!(
        d.lines_with(&["listening", "service=c"]).is_empty(),
        "rolled back: c never listened"
    );
    drop(held);
}

/// Widening `127.0.0.1:P` to `*:P` cannot bind while the old socket
/// holds the port (new addresses are bound before anything is closed):
/// the reload is rolled back, says why and what to do, and the old
/// socket goes on serving.
#[test]
fn a_reload_widening_to_the_wildcard_on_one_port_says_to_restart() {
    let d = Superd::start("services:\n  a:\n    listen: 127.0.0.1:0\n    builtin: echo\n");
    let port = d.port("a");
    d.dir.write(
        "test.yaml",
        &format!("services:\n  a:\n    listen: {port}\n    builtin: echo\n"),
    );
    d.signal(Signal::SIGHUP);
    let line = d.wait_for(&["reload failed"]);
    assert!(line.contains("needs a restart of superd"), "{line}");
    assert_eq!(exchange(&format!("127.0.0.1:{port}"), b"x"), b"x");
}

#[test]
fn a_burst_of_sighups_ends_on_the_last_configuration() {
    let d = Superd::start(&echo_service("first", 0));
    let port = d.port("say");
    let addr = format!("127.0.0.1:{port}");
    assert_eq!(exchange(&addr, b""), b"first\n");
    d.wait_nth(1, &["exit", "service=say"]);
    let base = d.fd_count();
    d.dir.write("test.yaml", &echo_service("middle", port));
    for _ in 0..200 {
        d.signal(Signal::SIGHUP);
    }
    d.dir.write("test.yaml", &echo_service("last", port));
    d.signal(Signal::SIGHUP);
    d.wait_until("last config served", || exchange(&addr, b"") == b"last\n");
    // Nothing leaked across the reloads.
    if base.is_some() {
        d.wait_until("fd count back to baseline", || d.fd_count() == base);
    }
}

#[test]
fn a_child_outlives_the_removal_of_its_service() {
    let d = Superd::start(&format!(
        "services:\n  cat:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    {}\n",
        user_line()
    ));
    let addr = d.addr("cat");
    let mut s = connect(&addr);
    use std::io::Write;
    s.write_all(b"before\n").unwrap();
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).unwrap();
    d.dir.write("test.yaml", "services: {}\n");
    d.signal(Signal::SIGHUP);
    d.wait_for(&["reloaded"]);
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "removed service stops listening"
    );
    s.write_all(b"after\n").unwrap();
    let mut buf = [0u8; 6];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"after\n");
    drop(s);
    let line = d.wait_for(&["exit", "service=cat"]);
    assert!(line.contains("status=0"), "{line}");
}

#[test]
fn sd_notify_ready_reloading_stopping_in_order() {
    let dir = TempDir::new("notify");
    let sock = dir.path().join("notify.sock");
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(DEADLINE)).unwrap();
    let conf = TempDir::new("notifyconf");
    conf.write(
        "t.yaml",
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
    );
    let p = conf.path().to_str().unwrap().to_string();
    let d = Superd::spawn(conf, &[&p], &[("NOTIFY_SOCKET", sock.to_str().unwrap())]);
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = rx.recv(&mut buf).expect("notification");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert_eq!(next(), "READY=1");
    d.signal(Signal::SIGHUP);
    assert!(next().starts_with("RELOADING=1"));
    assert_eq!(next(), "READY=1");
    d.signal(Signal::SIGTERM);
    assert_eq!(next(), "STOPPING=1");
}

/// A notification socket nobody reads fills up (a few datagrams); superd
/// drops what does not fit instead of blocking: it reloads, serves and
/// shuts down as usual.
#[test]
fn a_notify_socket_nobody_reads_never_blocks_superd() {
    let dir = TempDir::new("notifyfull");
    let sock = dir.path().join("notify.sock");
    let _rx = UnixDatagram::bind(&sock).unwrap();
    let conf = TempDir::new("notifyfullconf");
    conf.write(
        "t.yaml",
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
    );
    let p = conf.path().to_str().unwrap().to_string();
    // The queue holds net.unix.max_dgram_qlen datagrams (10 by default,
    // 512 where systemd sets it); two notifications a reload overflow it.
    let qlen: usize = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(10);
    if qlen > 2000 {
        skip(&format!(
            "net.unix.max_dgram_qlen is {qlen}, too many reloads to fill it"
        ));
        return;
    }
    let mut d = Superd::spawn(conf, &[&p], &[("NOTIFY_SOCKET", sock.to_str().unwrap())]);
    let addr = d.addr("e");
    for n in 1..=qlen / 2 + 10 {
        d.signal(Signal::SIGHUP);
        d.wait_nth(n, &["reloaded services=1"]);
    }
    assert_eq!(exchange(&addr, b"still here"), b"still here");
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
}

/// A supervisor that reads the log when it hears READY=1, or a client
/// that reads it when its connection closes, finds the lines of what just
/// happened there already (stderr a regular file here: read at once, no
/// follower thread in between), though the loop writes a turn's lines
/// together.
#[test]
fn the_log_is_written_before_each_notification_and_close() {
    let dir = TempDir::new("notifylog");
    let sock = dir.path().join("notify.sock");
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(DEADLINE)).unwrap();
    let prog = dir.write("prog", "#!/bin/sh\necho ok\n");
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.write(
        "t.yaml",
        &format!(
            "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    deny_from: [127.0.0.2]\n  gone:\n    listen: 127.0.0.1:0\n    exec: {}\n    {}\n",
            prog.display(),
            user_line()
        ),
    );
    let log_path = dir.path().join("superd.log");
    let child = std::process::Command::new(superd_bin())
        .arg(dir.path().join("t.yaml"))
        .env_remove("RUST_LOG")
        .env("NOTIFY_SOCKET", &sock)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Kill(child);
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = rx.recv(&mut buf).expect("notification");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let log = || std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(next(), "READY=1");
    assert!(log().contains("INFO  ready services=2 "), "{}", log());
    // An exec failure: the client sees the close after the line is out.
    let gone = log()
        .lines()
        .find_map(|l| {
            l.contains("listening service=gone ")
                .then(|| field(l, "addr"))
        })
        .flatten()
        .expect("listening line");
    std::fs::remove_file(&prog).unwrap();
    for n in 1..=3 {
        assert_eq!(exchange(&gone, b""), b"", "connection closed");
        let text = log();
        assert_eq!(
            text.matches("exec failed service=gone ").count(),
            n,
            "{text}"
        );
    }
    // Back, for the reloads below to validate.
    std::fs::write(&prog, "#!/bin/sh\necho ok\n").unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Log lines of a busy turn, then a reload in the same process.
    let addr = log()
        .lines()
        .find_map(|l| l.contains("listening service=e ").then(|| field(l, "addr")))
        .flatten()
        .expect("listening line");
    for i in 0..5 {
        let msg = format!("line {i}\n");
        assert_eq!(exchange(&addr, msg.as_bytes()), msg.as_bytes());
        let text = log();
        assert_eq!(text.matches("exit service=e ").count(), i + 1, "{text}");
        // Refused: closed at once, and the line is there by then.
        let mut s = crate::limits::connect_from("127.0.0.2", &addr);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let text = log();
        assert_eq!(text.matches("refused service=e ").count(), i + 1, "{text}");
    }
    for k in 1..=10 {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.0.id() as i32),
            Signal::SIGHUP,
        )
        .unwrap();
        assert!(next().starts_with("RELOADING=1"));
        assert_eq!(next(), "READY=1");
        let text = log();
        assert_eq!(
            text.matches("INFO  reloaded services=2").count(),
            k,
            "{text}"
        );
        assert_eq!(text.matches("exit service=e ").count(), 5, "{text}");
    }
}

#[test]
fn sigusr1_logs_every_service_and_its_live_children() {
    let d = Superd::start(&format!(
        "services:\n  cat:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    {}\n  idle:\n    listen: 127.0.0.1:0\n    builtin: echo\n  off:\n    listen: 127.0.0.1:0\n    builtin: echo\n    enabled: false\n",
        user_line()
    ));
    let mut s = connect(&d.addr("cat"));
    use std::io::Write;
    s.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    let pid = field(&d.wait_for(&["spawn", "service=cat"]), "pid").unwrap();
    d.signal(Signal::SIGUSR1);
    let line = d.wait_for(&["status", "service=cat", "state=listening"]);
    assert!(line.contains("accepted=1"), "{line}");
    d.wait_for(&["status", "service=idle", "state=listening"]);
    d.wait_for(&["status", "service=off", "state=disabled"]);
    let child = d.wait_for(&["status child", &format!("pid={pid}")]);
    assert!(child.contains("peer=127.0.0.1:"), "{child}");
    assert!(field(&child, "age").is_some(), "{child}");
}

#[test]
fn pidfile_is_locked_never_follows_symlinks_and_is_removed() {
    let dir = TempDir::new("pid");
    let pidfile = dir.path().join("superd.pid");
    let conf = TempDir::new("pidconf");
    conf.write("t.yaml", "services: {}\n");
    let p = conf.path().to_str().unwrap().to_string();
    let pf = pidfile.to_str().unwrap().to_string();
    let first = Superd::spawn(conf, &[&p, "--pidfile", &pf], &[]);
    first.wait_for(&["ready"]);
    first.wait_until("pidfile written", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.trim() == first.pid().to_string())
    });
    // A second superd on the same pidfile refuses and leaves it alone.
    let conf2 = TempDir::new("pidconf2");
    conf2.write("t.yaml", "services: {}\n");
    let p2 = conf2.path().to_str().unwrap().to_string();
    let mut second = Superd::spawn(conf2, &[&p2, "--pidfile", &pf], &[]);
    assert_eq!(second.wait_exit().code(), Some(1));
    assert!(
        second.log_text().contains("held by another superd"),
        "{}",
        second.log_text()
    );
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        first.pid().to_string()
    );
    assert_eq!(first.stop().code(), Some(0));
    assert!(!pidfile.exists(), "pidfile removed at exit");

    // A symlink is never followed.
    let target = dir.path().join("target");
    std::fs::write(&target, "keep").unwrap();
    let link = dir.path().join("link.pid");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let conf3 = TempDir::new("pidconf3");
    conf3.write("t.yaml", "services: {}\n");
    let p3 = conf3.path().to_str().unwrap().to_string();
    let mut third = Superd::spawn(conf3, &[&p3, "--pidfile", link.to_str().unwrap()], &[]);
    assert_eq!(third.wait_exit().code(), Some(1));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
}

#[test]
fn a_reload_that_removes_a_unix_service_removes_its_socket_file() {
    let dir = TempDir::new("unixreload");
    let sock = dir.path().join("gone.sock");
    let d = Superd::start(&format!(
        "services:\n  u:\n    listen: {}\n    builtin: echo\n  keep:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
        sock.display()
    ));
    d.wait_for(&["listening", "service=u"]);
    assert!(sock.exists());
    let keep = d.port("keep");
    d.dir.write(
        "test.yaml",
        &format!("services:\n  keep:\n    listen: 127.0.0.1:{keep}\n    builtin: echo\n"),
    );
    d.signal(Signal::SIGHUP);
    d.wait_for(&["reloaded"]);
    assert!(
        !sock.exists(),
        "socket file of the removed service left behind"
    );
    assert_eq!(exchange(&format!("127.0.0.1:{keep}"), b"k"), b"k");
}

/// Several services on `127.0.0.1:0` share one listener key; a reload
/// must still give each service its own socket back (and a removed
/// service's socket to nobody), or clients of one port reach another
/// service.
#[test]
fn port_zero_services_keep_their_own_sockets_across_reloads() {
    let three = "services:\n  a:\n    listen: 127.0.0.1:0\n    builtin: echo\n  b:\n    listen: 127.0.0.1:0\n    exec: [/bin/echo, b]\n    USER\n  c:\n    listen: 127.0.0.1:0\n    exec: [/bin/echo, c]\n    USER\n";
    let three = three.replace("USER", user_line());
    let d = Superd::start(&three);
    let (a, b, c) = (d.addr("a"), d.addr("b"), d.addr("c"));
    let answers = |a: &str, b: &str, c: &str| {
        assert_eq!(exchange(a, b"a\n"), b"a\n", "a at {a}");
        assert_eq!(exchange(b, b""), b"b\n", "b at {b}");
        assert_eq!(exchange(c, b""), b"c\n", "c at {c}");
    };
    answers(&a, &b, &c);
    for n in 1..=3 {
        d.signal(Signal::SIGHUP);
        d.wait_nth(n, &["reloaded"]);
        answers(&a, &b, &c);
    }
    // Without b: a and c keep their ports, b's is closed, and nobody logs
    // a new listener.
    let (_, rest) = three.split_once("  b:").unwrap();
    let (_, c_part) = rest.split_once("  c:").unwrap();
    let two = format!("services:\n  a:\n    listen: 127.0.0.1:0\n    builtin: echo\n  c:{c_part}");
    d.dir.write("test.yaml", &two);
    d.signal(Signal::SIGHUP);
    d.wait_nth(4, &["reloaded"]);
    d.wait_for(&["closed", &format!("addr={b}")]);
    assert_eq!(exchange(&a, b"a\n"), b"a\n");
    assert_eq!(exchange(&c, b""), b"c\n");
    assert_eq!(d.lines_with(&["listening"]).len(), 3, "{}", d.log_text());
    assert!(std::net::TcpStream::connect(&b).is_err(), "{b} still open");
}

/// A reload drains only the listeners that may hold connections no event
/// will announce: one at max_connections, unchanged by the reload, still
/// serves the connection queued behind it once a slot frees.
#[test]
fn a_connection_queued_at_max_connections_is_served_after_a_reload() {
    let one =
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    max_connections: 1\n";
    let d = Superd::start(one);
    let a = d.addr("e");
    let mut first = std::net::TcpStream::connect(&a).unwrap();
    first.write_all(b"1\n").unwrap();
    let mut buf = [0u8; 2];
    first.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"1\n");
    // Queued in the backlog: superd is at max_connections.
    let mut second = std::net::TcpStream::connect(&a).unwrap();
    second.write_all(b"2\n").unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_nth(1, &["reloaded", "unchanged=1"]);
    drop(first);
    second
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"2\n");
}

#[test]
fn a_reload_changing_backlog_and_socket_mode_keeps_the_sockets() {
    let dir = TempDir::new("adjust");
    let sock = dir.path().join("adj.sock");
    let d = Superd::start(&format!(
        "services:\n  tcp:\n    listen: 127.0.0.1:0\n    builtin: echo\n    backlog: 16\n  unix:\n    listen: {}\n    builtin: echo\n    socket_mode: \"0600\"\n",
        sock.display()
    ));
    let port = d.port("tcp");
    d.wait_for(&["listening", "service=unix"]);
    let inode = listening_inode(port).expect("listening socket");
    d.dir.write(
        "test.yaml",
        &format!(
            "services:\n  tcp:\n    listen: 127.0.0.1:{port}\n    builtin: echo\n    backlog: 64\n  unix:\n    listen: {}\n    builtin: echo\n    socket_mode: \"0644\"\n",
            sock.display()
        ),
    );
    d.signal(Signal::SIGHUP);
    d.wait_for(&["reloaded"]);
    assert!(
        d.lines_with(&["reload failed"]).is_empty(),
        "{}",
        d.log_text()
    );
    assert_eq!(listening_inode(port), Some(inode), "TCP socket replaced");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    assert_eq!(exchange(&format!("127.0.0.1:{port}"), b"t"), b"t");
}

/// A unix service whose socket type changes on a reload gets a new socket
/// at the same path; closing the old one must not remove the new one's
/// file.
#[test]
fn a_reload_changing_a_unix_socket_type_keeps_the_socket_file() {
    let dir = TempDir::new("retype");
    let sock = dir.path().join("x.sock");
    let d = Superd::start(&format!(
        "services:\n  u:\n    listen: {}\n    socket: seqpacket\n    exec: /bin/cat\n    {}\n",
        sock.display(),
        user_line()
    ));
    d.wait_for(&["listening", "service=u "]);
    d.dir.write(
        "test.yaml",
        &format!(
            "services:\n  u:\n    listen: {}\n    builtin: echo\n",
            sock.display()
        ),
    );
    d.signal(Signal::SIGHUP);
    d.wait_for(&["reloaded"]);
    assert!(sock.exists(), "the socket file is gone:\n{}", d.log_text());
    let mut c = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    use std::io::{Read, Write};
    c.write_all(b"hi").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hi");
}

/// Removing socket_user/socket_group on a reload gives the socket file
/// back to the default owner, superd's own, as a restart would.
#[test]
fn a_reload_dropping_the_socket_owner_resets_it() {
    if !is_root() {
        skip("needs root (chown to another user)");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("owner");
    let sock = dir.path().join("o.sock");
    let d = Superd::start(&format!(
        "services:\n  o:\n    listen: {}\n    builtin: echo\n    socket_mode: \"0660\"\n    socket_user: nobody\n    socket_group: 65534\n",
        sock.display()
    ));
    d.wait_for(&["listening", "service=o "]);
    let m = std::fs::metadata(&sock).unwrap();
    assert_eq!((m.uid(), m.gid()), (65534, 65534));
    d.dir.write(
        "test.yaml",
        &format!(
            "services:\n  o:\n    listen: {}\n    builtin: echo\n    socket_mode: \"0660\"\n",
            sock.display()
        ),
    );
    d.signal(Signal::SIGHUP);
    d.wait_for(&["reloaded"]);
    let m = std::fs::metadata(&sock).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0), "{}", d.log_text());
}

/// A reload that changes one service keeps every other whole: its
/// listening socket, and its state, such as a full max_connections (the
/// connection waiting in its backlog is served once a slot frees after
/// the reload, not before).
#[test]
fn a_reload_keeps_the_unchanged_services_whole() {
    let config = |hold_port: u16, say_port: u16, word: &str| {
        format!(
            "services:\n  hold:\n    listen: 127.0.0.1:{hold_port}\n    exec: [/bin/cat]\n    max_connections: 1\n    {user}\n  say:\n    listen: 127.0.0.1:{say_port}\n    exec: [/bin/echo, {word}]\n    {user}\n",
            user = user_line()
        )
    };
    let d = Superd::start(&config(0, 0, "one"));
    let (hold, say) = (d.port("hold"), d.port("say"));
    d.dir.write("test.yaml", &config(hold, say, "one"));
    d.signal(Signal::SIGHUP);
    d.wait_nth(1, &["reloaded"]);
    let inode = listening_inode(hold).expect("listening socket");
    let addr = format!("127.0.0.1:{hold}");

    // The one slot is taken; a second client waits in the backlog.
    let mut first = connect(&addr);
    first.write_all(b"first\n").unwrap();
    assert_eq!(read_line_from(&mut first), "first");
    let mut second = connect(&addr);
    second.write_all(b"second\n").unwrap();

    d.dir.write("test.yaml", &config(hold, say, "two"));
    d.signal(Signal::SIGHUP);
    let line = d.wait_nth(2, &["reloaded"]);
    assert_eq!(field(&line, "changed").as_deref(), Some("1"), "{line}");
    assert_eq!(field(&line, "unchanged").as_deref(), Some("1"), "{line}");
    assert_eq!(exchange(&format!("127.0.0.1:{say}"), b""), b"two\n");
    // Still full: the second client is not served while the first holds
    // the slot.
    second
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 16];
    let waited = second.read(&mut buf);
    assert!(
        matches!(&waited, Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut),
        "the full service served a second client: {waited:?}"
    );
    drop(first);
    second.set_read_timeout(Some(DEADLINE)).unwrap();
    assert_eq!(read_line_from(&mut second), "second");
    assert_eq!(
        listening_inode(hold),
        Some(inode),
        "listening socket replaced"
    );
}
