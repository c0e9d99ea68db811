//! superd(8), LIMITS AND ACCESS, through the real binary: caps that make connections wait instead
//! of refusing them, per-source limits, rate, access rules, timeouts.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{self as nsock, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6};

use crate::harness::*;

/// A TCP connection from a chosen local address (127.0.0.2, ...).
pub fn connect_from(src: &str, addr: &str) -> TcpStream {
    let to: SocketAddr = addr.parse().unwrap();
    let from: SocketAddr = format!("{src}:0").parse().unwrap();
    let fam = if to.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd = nsock::socket(fam, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    match from {
        SocketAddr::V4(a) => nsock::bind(fd.as_raw_fd(), &SockaddrIn::from(a)).unwrap(),
        SocketAddr::V6(a) => nsock::bind(fd.as_raw_fd(), &SockaddrIn6::from(a)).unwrap(),
    }
    match to {
        SocketAddr::V4(a) => nsock::connect(fd.as_raw_fd(), &SockaddrIn::from(a)).unwrap(),
        SocketAddr::V6(a) => nsock::connect(fd.as_raw_fd(), &SockaddrIn6::from(a)).unwrap(),
    }
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Whether the server closed `s` without serving it: EOF or reset on read.
fn closed_at_once(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    let _ = s.write_all(b"ping\n");
    match read_once(s, &mut buf) {
        Ok(0) => true,
        Err(e) => matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
        Ok(_) => false,
    }
}

fn echoes(s: &mut TcpStream, msg: &[u8]) -> bool {
    if s.write_all(msg).is_err() {
        return false;
    }
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf).is_ok() && buf == msg
}

fn live_children(d: &Superd) -> usize {
    children_of(d.pid())
        .into_iter()
        .filter(|p| proc_state(*p) != Some('Z'))
        .count()
}

#[test]
fn max_connections_queues_the_extra_clients_and_serves_them_in_turn() {
    let d = Superd::start(&format!(
        "services:\n  cap:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    max_connections: 2\n    {}\n",
        user_line()
    ));
    let addr = d.addr("cap");
    let mut clients: Vec<TcpStream> = (0..5).map(|_| connect(&addr)).collect();
    assert!(echoes(&mut clients[0], b"a\n"));
    assert!(echoes(&mut clients[1], b"b\n"));
    d.wait_until("two children", || live_children(&d) == 2);
    d.wait_nth(2, &["spawn", "service=cap"]);
    // Exactly two children, however long we look at it: the other three
    // wait in the backlog, not reset.
    assert_eq!(live_children(&d), 2);
    assert!(d.lines_with(&["spawn", "service=cap"]).len() == 2);
    // Release them one at a time: each waiting client is served in turn.
    for i in 2..5 {
        drop(clients.remove(0));
        let c = &mut clients[1];
        assert!(
            echoes(c, format!("client {i}\n").as_bytes()),
            "client {i} not served"
        );
        assert!(live_children(&d) <= 2);
    }
    assert!(d.lines_with(&["refused"]).is_empty(), "{}", d.log_text());
}

#[test]
fn max_per_source_counts_each_source_and_releases_on_any_end() {
    let d = Superd::start(&format!(
        "services:\n  ps:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    max_per_source: 1\n    {}\n",
        user_line()
    ));
    let addr = d.addr("ps");
    let mut a1 = connect_from("127.0.0.2", &addr);
    assert!(echoes(&mut a1, b"a1\n"));
    let mut a2 = connect_from("127.0.0.2", &addr);
    assert!(
        closed_at_once(&mut a2),
        "second connection from .2 must be closed"
    );
    let line = d.wait_for(&["refused", "service=ps", "reason=max_per_source"]);
    assert!(line.starts_with("WARN"), "{line}");
    assert!(line.contains("peer=127.0.0.2:"), "{line}");
    let mut b1 = connect_from("127.0.0.3", &addr);
    assert!(echoes(&mut b1, b"b1\n"), "another source is served");

    // A normal exit releases the slot.
    drop(a1);
    d.wait_nth(1, &["exit", "service=ps", "peer=127.0.0.2:"]);
    let mut a3 = connect_from("127.0.0.2", &addr);
    assert!(echoes(&mut a3, b"a3\n"));

    // So does a death by signal.
    let pid = {
        let line = d.wait_nth(3, &["spawn", "service=ps"]);
        field(&line, "pid").unwrap().parse::<i32>().unwrap()
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    d.wait_for(&["exit", "service=ps", "signal=SIGKILL"]);
    let mut a4 = connect_from("127.0.0.2", &addr);
    assert!(echoes(&mut a4, b"a4\n"));
    drop(b1);
}

#[test]
fn max_per_source_slot_is_released_by_an_exec_failure() {
    let dir = TempDir::new("psfail");
    let prog = dir.write("prog", "#!/bin/sh\nexec cat\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = Superd::start(&format!(
        "services:\n  pf:\n    listen: 127.0.0.1:0\n    exec: {}\n    max_per_source: 1\n    {}\n",
        prog.display(),
        user_line()
    ));
    let addr = d.addr("pf");
    std::fs::remove_file(&prog).unwrap();
    let mut a = connect_from("127.0.0.2", &addr);
    let mut buf = Vec::new();
    let _ = a.read_to_end(&mut buf);
    d.wait_for(&["exit", "service=pf", "status=127"]);
    std::fs::write(&prog, "#!/bin/sh\nexec cat\n").unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut b = connect_from("127.0.0.2", &addr);
    assert!(
        echoes(&mut b, b"again\n"),
        "slot released after exec failure"
    );
}

#[test]
fn rate_delays_a_burst_without_refusing_it() {
    let d = Superd::start(&format!(
        "services:\n  r:\n    listen: 127.0.0.1:0\n    exec: [/bin/echo, ok]\n    rate: \"4/s\"\n    {}\n",
        user_line()
    ));
    let addr = d.addr("r");
    // 12 connections at once: a burst of 4, then one every 250 ms.
    let start = Instant::now();
    let clients: Vec<TcpStream> = (0..12).map(|_| connect(&addr)).collect();
    for mut c in clients {
        let mut out = Vec::new();
        c.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ok\n", "every connection of the burst is served");
    }
    // The bucket paced them: at least (12-4)/4 s minus a token's slack.
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert!(d.lines_with(&["refused"]).is_empty());
    // The service is still up afterwards, without a reload.
    assert_eq!(exchange(&addr, b""), b"ok\n");
}

#[test]
fn deny_from_and_only_from_over_ipv4() {
    let d = Superd::start(
        "services:\n  deny:\n    listen: 127.0.0.1:0\n    builtin: echo\n    deny_from: [127.0.0.2]\n  only:\n    listen: 127.0.0.1:0\n    builtin: echo\n    only_from: [127.0.0.3/32, 10.0.0.0/8]\n    deny_from: [127.0.0.3]\n  only2:\n    listen: 127.0.0.1:0\n    builtin: echo\n    only_from: [127.0.0.0/30]\n",
    );
    let deny = d.addr("deny");
    assert!(closed_at_once(&mut connect_from("127.0.0.2", &deny)));
    d.wait_for(&[
        "refused",
        "service=deny",
        "peer=127.0.0.2:",
        "reason=deny_from",
    ]);
    assert!(echoes(&mut connect_from("127.0.0.1", &deny), b"x\n"));
    // deny_from wins over only_from.
    let only = d.addr("only");
    assert!(closed_at_once(&mut connect_from("127.0.0.3", &only)));
    d.wait_for(&["refused", "service=only", "reason=deny_from"]);
    assert!(closed_at_once(&mut connect_from("127.0.0.1", &only)));
    d.wait_for(&["refused", "service=only", "reason=only_from"]);
    let only2 = d.addr("only2");
    assert!(echoes(&mut connect_from("127.0.0.2", &only2), b"y\n"));
    assert!(closed_at_once(&mut connect_from("127.0.0.5", &only2)));
}

/// An empty allow list allows nobody (as `groups: []` is no groups, and
/// as xinetd reads an empty `only_from`); no `only_from` allows everyone.
#[test]
fn an_empty_only_from_refuses_everyone() {
    let d = Superd::start(
        "services:\n  none:\n    listen: 127.0.0.1:0\n    builtin: echo\n    only_from: []\n  all:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
    );
    assert!(closed_at_once(&mut connect_from(
        "127.0.0.1",
        &d.addr("none")
    )));
    d.wait_for(&["refused", "service=none ", "reason=only_from"]);
    assert!(echoes(
        &mut connect_from("127.0.0.1", &d.addr("all")),
        b"z\n"
    ));
    // --check says so.
    let out = std::process::Command::new(superd_bin())
        .arg("--check")
        .arg(d.dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning: only_from is empty: every connection is refused"),
        "{text}"
    );
}

#[test]
fn access_rules_over_ipv6_and_mapped_ipv4() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        skip("no IPv6 on this host");
        return;
    }
    let d = Superd::start(
        "services:\n  v6:\n    listen: \"[::]:0\"\n    builtin: echo\n    deny_from: [\"::1/128\", 127.0.0.2]\n  v6only:\n    listen: \"[::1]:0\"\n    builtin: echo\n    only_from: [\"::1\"]\n",
    );
    let port = d.port("v6");
    assert!(closed_at_once(&mut connect(&format!("[::1]:{port}"))));
    d.wait_for(&["refused", "service=v6", "peer=[::1]:", "reason=deny_from"]);
    // A v4 client on the dual-stack socket is matched as its IPv4 address.
    assert!(closed_at_once(&mut connect_from(
        "127.0.0.2",
        &format!("127.0.0.1:{port}")
    )));
    d.wait_for(&[
        "refused",
        "service=v6",
        "peer=127.0.0.2:",
        "reason=deny_from",
    ]);
    assert!(echoes(&mut connect(&format!("127.0.0.1:{port}")), b"v4\n"));
    let only = d.addr("v6only");
    assert!(echoes(&mut connect(&only), b"ok\n"));
}

#[test]
fn timeout_kills_the_child_and_its_process_group() {
    let d = Superd::start(&format!(
        "services:\n  slow:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'sleep 1000 & echo $!; wait']\n    timeout: 1s\n    kill_grace: 1s\n    {}\n",
        user_line()
    ));
    let mut s = connect(&d.addr("slow"));
    let grandchild: i32 = read_line_from(&mut s).trim().parse().unwrap();
    let exit = d.wait_for(&["exit", "service=slow"]);
    assert!(exit.starts_with("WARN"), "{exit}");
    assert!(exit.contains("reason=timeout"), "{exit}");
    assert!(exit.contains("signal=SIGTERM"), "{exit}");
    d.wait_until("grandchild gone", || {
        std::fs::metadata(format!("/proc/{grandchild}")).is_err()
            || proc_state(grandchild) == Some('Z')
    });
}

/// The child's program ends at the SIGTERM, but something it started
/// ignores SIGTERM and still holds the connection: the SIGKILL kill_grace
/// later is for the whole group, child gone or not.
#[test]
fn timeout_kills_what_outlives_the_child_in_its_group() {
    let d = Superd::start(&format!(
        "services:\n  slow:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'sh -c \"trap \\\"\\\" TERM; echo $$; exec sleep 1000\" & wait']\n    timeout: 1s\n    kill_grace: 1s\n    {}\n",
        user_line()
    ));
    let mut s = connect(&d.addr("slow"));
    let stubborn: i32 = read_line_from(&mut s).trim().parse().unwrap();
    let exit = d.wait_for(&["exit", "service=slow", "reason=timeout"]);
    assert!(exit.contains("signal=SIGTERM"), "{exit}");
    let pid = field(&exit, "pid").unwrap();
    let kill = d.wait_for(&["timeout", "service=slow", "signal=SIGKILL"]);
    assert!(kill.contains(&format!("pgid={pid}")), "{kill}");
    d.wait_until("the group's last process gone", || {
        std::fs::metadata(format!("/proc/{stubborn}")).is_err() || proc_state(stubborn) == Some('Z')
    });
    // With it went the last copy of the connection.
    assert_eq!(read_once(&mut s, &mut [0u8; 1]).unwrap(), 0);
}

#[test]
fn out_of_descriptors_pauses_accepting_without_spinning_and_serves_the_queue_later() {
    let dir = TempDir::new("emfile");
    dir.write(
        "t.yaml",
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    idle_timeout: 1h\n",
    );
    let p = dir.path().to_str().unwrap().to_string();
    // 48 descriptors: superd's own handful, then a few dozen sessions.
    let d = Superd::spawn_limited(dir, &[&p], &[], Some(48));
    let addr = d.addr("e");
    // Flood past the limit: every client says hello and waits for the echo.
    let mut clients: Vec<TcpStream> = (0..120).map(|_| connect(&addr)).collect();
    for c in clients.iter_mut() {
        c.write_all(b"hello\n").unwrap();
    }
    let line = d.wait_for(&["out of resources", "service=e", "step=accept"]);
    assert!(line.starts_with("WARN"), "{line}");
    // While the flood stands, superd does not spin: over the next 2 seconds
    // of wall time (bounded by the poll below) it uses well under a second
    // of CPU. A busy loop would use all of it.
    let before = d.cpu_ticks();
    let until = Instant::now() + Duration::from_secs(2);
    d.wait_until("two seconds of flood", || Instant::now() >= until);
    let used = d.cpu_ticks() - before;
    assert!(
        used < 50,
        "superd used {used} ticks in 2 s while out of fds"
    );
    // The log says so once per interval, not once per attempt.
    assert!(
        d.lines_with(&["out of resources"]).len() <= 2,
        "{}",
        d.log_text()
    );
    // Release them in order: each one read frees a descriptor, and every
    // client that waited in the backlog is served in turn.
    let total = clients.len();
    for (i, mut c) in clients.drain(..).enumerate() {
        let mut buf = [0u8; 6];
        c.read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("client {i} of {total} not served: {e}"));
        assert_eq!(&buf, b"hello\n");
    }
}

#[test]
fn a_flood_on_one_service_does_not_starve_another() {
    let d = Superd::start(&format!(
        "services:\n  flood:\n    listen: 127.0.0.1:0\n    exec: /bin/true\n    {}\n  calm:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
        user_line()
    ));
    let flood = d.addr("flood");
    let calm = d.addr("calm");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Four clients connecting and hanging up as fast as they can (faster
    // than any fork+exec), each bounded in count: the backlog never runs
    // dry while they go on.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (stop, flood) = (stop.clone(), flood.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 50_000 {
                    drop(TcpStream::connect(&flood));
                    n += 1;
                }
            })
        })
        .collect();
    d.wait_nth(200, &["exit", "service=flood"]);
    // While the flood goes on, the other service answers and signals are
    // handled.
    for i in 0..20 {
        let mut c = connect(&calm);
        assert!(echoes(&mut c, format!("calm {i}\n").as_bytes()));
    }
    d.signal(nix::sys::signal::Signal::SIGUSR1);
    d.wait_for(&["status", "service=calm"]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
}
