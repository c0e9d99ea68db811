//! SPEC §4 through the real binary: the builtins (echo, discard, daytime,
//! chargen, time) over TCP, UDP, IPv6, dual stack and unix stream sockets,
//! with their exact bytes; bounded memory for a chargen client that never
//! reads; idle sessions closed by `idle_timeout`; UDP reflection guard;
//! limits, access rules and logs applied to builtins.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::*;
use crate::limits::connect_from;

/// Seconds from 1900-01-01 to 1970-01-01 (RFC 868).
const RFC868_OFFSET: i64 = 2_208_988_800;

fn has_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// RFC 864 line `k`, built independently of superd: the 72 printing
/// characters starting at character `k` (mod 95), then CRLF.
fn chargen_line(k: usize) -> Vec<u8> {
    let mut l: Vec<u8> = (0..72).map(|c| b' ' + ((k + c) % 95) as u8).collect();
    l.extend_from_slice(b"\r\n");
    l
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses inetd's daytime reply (`Sat Nov 21 10:00:00 2026\r\n`, a
/// single-digit day padded with a space) into Unix seconds, checking the
/// layout and that the weekday matches the date.
fn parse_daytime(reply: &[u8]) -> i64 {
    let s = std::str::from_utf8(reply).expect("daytime is ASCII");
    assert_eq!(s.len(), 26, "{s:?}");
    assert!(s.ends_with("\r\n"), "{s:?}");
    let b = s.as_bytes();
    for i in [3, 7, 10, 19] {
        assert_eq!(b[i], b' ', "{s:?}");
    }
    assert_eq!((b[13], b[16]), (b':', b':'), "{s:?}");
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let weekday = DAYS.iter().position(|d| *d == &s[0..3]).expect("weekday");
    let month = MONTHS.iter().position(|m| *m == &s[4..7]).expect("month") as i64 + 1;
    let day_field = &s[8..10];
    assert!(
        day_field.starts_with(' ') || !day_field.starts_with('0'),
        "day is space-padded, not zero-padded: {s:?}"
    );
    let day: i64 = day_field.trim_start().parse().expect("day");
    let num = |r: std::ops::Range<usize>| -> i64 {
        assert!(s[r.clone()].bytes().all(|c| c.is_ascii_digit()), "{s:?}");
        s[r].parse().unwrap()
    };
    let (hh, mm, ss, year) = (num(11..13), num(14..16), num(17..19), num(20..24));
    assert!(hh < 24 && mm < 60 && ss < 61, "{s:?}");
    let days = days_from_civil(year, month, day);
    assert_eq!(
        (days + 4).rem_euclid(7) as usize,
        weekday,
        "weekday of {s:?}"
    );
    days * 86_400 + hh * 3600 + mm * 60 + ss
}

/// Asserts that `reply` is a daytime reply between `t0` and `t1` (UTC).
fn check_daytime(reply: &[u8], t0: i64, t1: i64) {
    let t = parse_daytime(reply);
    assert!(
        t0 - 1 <= t && t <= t1 + 1,
        "daytime {:?} is {t}, test clock {t0}..{t1}",
        String::from_utf8_lossy(reply)
    );
}

/// Asserts that `reply` is an RFC 868 time between `t0` and `t1`.
fn check_time(reply: &[u8], t0: i64, t1: i64) {
    assert_eq!(reply.len(), 4, "{reply:?}");
    let v = u32::from_be_bytes(reply.try_into().unwrap());
    let lo = (t0 + RFC868_OFFSET) as u32;
    let off = v.wrapping_sub(lo);
    assert!(
        off as i64 <= t1 - t0 + 1 || off == u32::MAX,
        "time {v} not within a second of {lo}..={}",
        (t1 + RFC868_OFFSET) as u32
    );
}

fn udp_client(bind: &str) -> UdpSocket {
    let s = UdpSocket::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Sends `payload` to `to` and waits for one reply from it.
fn udp_ask(s: &UdpSocket, to: &str, payload: &[u8]) -> Vec<u8> {
    let to: SocketAddr = to.parse().unwrap();
    s.send_to(payload, to).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = s
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no reply from {to}: {e}"));
    assert_eq!(from.port(), to.port(), "reply from {from}");
    buf.truncate(n);
    buf
}

/// Nothing is queued on `s` right now.
fn nothing_queued(s: &UdpSocket) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1024];
    let r = s.recv_from(&mut buf);
    s.set_nonblocking(false).unwrap();
    matches!(r, Err(ref e) if e.kind() == ErrorKind::WouldBlock)
}

/// Reads exactly `n` bytes.
fn read_n(s: &mut impl Read, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

fn vm_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Bytes the kernel holds for `s` that the application has not read.
fn unread_bytes(s: &TcpStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through a valid pointer.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(r, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n as usize
}

/// The send queue (`tx_queue` of /proc/net/tcp) of the IPv4 TCP socket
/// from local port `local` to remote port `remote` (loopback only here).
fn tcp_tx_queue(local: u16, remote: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let want = (format!(":{local:04X}"), format!(":{remote:04X}"));
    for row in table.lines().skip(1) {
        let f: Vec<&str> = row.split_whitespace().collect();
        if f.len() > 4 && f[1].ends_with(&want.0) && f[2].ends_with(&want.1) {
            let tx = f[4].split(':').next().unwrap();
            return usize::from_str_radix(tx, 16).unwrap();
        }
    }
    panic!("no socket {local}->{remote} in /proc/net/tcp");
}

const ALL_KINDS: [&str; 5] = ["echo", "discard", "daytime", "time", "chargen"];

/// Every builtin once over TCP and once over UDP, on 127.0.0.1.
fn all_builtins_yaml(host: &str) -> String {
    let mut y = String::from("services:\n");
    for k in ALL_KINDS {
        y += &format!("  {k}:\n    listen: \"{host}:0\"\n    builtin: {k}\n");
        y += &format!("  u{k}:\n    listen: \"{host}:0\"\n    socket: dgram\n    builtin: {k}\n");
    }
    y
}

#[test]
fn each_builtin_over_tcp_sends_the_exact_bytes() {
    let d = Superd::start(&all_builtins_yaml("127.0.0.1"));

    // echo: everything back, then EOF once we half-close.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut s = connect(&d.addr("echo"));
    let writer = {
        let mut w = s.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert!(
        got == data,
        "echo returned {} bytes, not the 200000 sent",
        got.len()
    );

    // discard: nothing comes back; the server closes when we close.
    assert_eq!(exchange(&d.addr("discard"), b"thrown away\r\n"), b"");
    let line = d.wait_for(&["exit", "service=discard "]);
    assert!(line.contains("bytes_in=13 bytes_out=0"), "{line}");

    // daytime: one ctime line in UTC, then close (without our input).
    let t0 = unix_now();
    let mut s = connect(&d.addr("daytime"));
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    check_daytime(&reply, t0, unix_now());

    // time: 4 bytes, seconds since 1900, then close.
    let t0 = unix_now();
    let reply = exchange(&d.addr("time"), b"");
    check_time(&reply, t0, unix_now());

    // chargen: RFC 864 lines from line 0; read 200 (past the 95-line
    // period), then close.
    let mut s = connect(&d.addr("chargen"));
    let got = read_n(&mut s, 200 * 74);
    for (k, line) in got.chunks(74).enumerate() {
        assert_eq!(
            line,
            chargen_line(k),
            "line {k}: {:?}",
            String::from_utf8_lossy(line)
        );
    }
    drop(s);
    d.wait_for(&["exit", "service=chargen "]);
}

/// RFC 864: chargen sends "until the calling user terminates the
/// connection"; a client that half-closes (as `nc` does at the end of its
/// input) still gets the stream.
#[test]
fn chargen_goes_on_after_the_peer_half_closes() {
    let d = Superd::start("services:\n  chargen:\n    listen: 127.0.0.1:0\n    builtin: chargen\n");
    let mut s = connect(&d.addr("chargen"));
    s.shutdown(Shutdown::Write).unwrap();
    // Far more than socket buffers and one write hold.
    const WANT: usize = 8 << 20;
    let mut got = vec![0u8; 0];
    let mut buf = vec![0u8; 1 << 16];
    while got.len() < WANT {
        let n = s.read(&mut buf).expect("chargen data");
        assert!(n > 0, "chargen ended after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    for (k, line) in got.chunks_exact(74).take(200).enumerate() {
        assert_eq!(line, chargen_line(k), "line {k}");
    }
    drop(s);
    d.wait_for(&["exit", "service=chargen "]);
}

#[test]
fn each_builtin_over_udp_answers_one_datagram_with_the_exact_bytes() {
    let d = Superd::start(&all_builtins_yaml("127.0.0.1"));
    let c = udp_client("127.0.0.1:0");

    assert_eq!(udp_ask(&c, &d.addr("uecho"), b"ping\r\n"), b"ping\r\n");
    let big: Vec<u8> = (0..60_000u32).map(|i| i as u8).collect();
    assert!(udp_ask(&c, &d.addr("uecho"), &big) == big);
    assert_eq!(udp_ask(&c, &d.addr("uecho"), b""), b"");

    let t0 = unix_now();
    let r = udp_ask(&c, &d.addr("udaytime"), b"");
    check_daytime(&r, t0, unix_now());

    let t0 = unix_now();
    let r = udp_ask(&c, &d.addr("utime"), b"x");
    check_time(&r, t0, unix_now());

    // chargen: one 74-byte line per datagram (at most 512), rotating.
    for k in 0..3 {
        let r = udp_ask(&c, &d.addr("uchargen"), b"");
        assert!(r.len() <= 512);
        assert_eq!(r, chargen_line(k), "datagram {k}");
    }

    // discard: superd handled the datagram (its log says so) and sent
    // nothing; replies are sent before that line is written.
    c.send_to(
        b"drop me",
        d.addr("udiscard").parse::<SocketAddr>().unwrap(),
    )
    .unwrap();
    let me = c.local_addr().unwrap().to_string();
    let line = d.wait_for(&["datagram", "service=udiscard ", &format!("peer={me} ")]);
    assert!(line.contains("bytes_in=7 outcome=NoReply"), "{line}");
    assert!(nothing_queued(&c), "discard answered");
}

#[test]
fn builtins_over_ipv6_and_the_dual_stack_wildcard() {
    if !has_ipv6() {
        skip("no IPv6 on this host ([::1] cannot be bound)");
        return;
    }
    let d = Superd::start(
        "services:\n  e6:\n    listen: \"[::1]:0\"\n    builtin: echo\n  t6:\n    listen: \"[::1]:0\"\n    socket: dgram\n    builtin: time\n  dual:\n    listen: \":0\"\n    builtin: echo\n  udual:\n    listen: \":0\"\n    socket: dgram\n    builtin: echo\n",
    );
    let e6 = d.addr("e6");
    assert!(e6.starts_with("[::1]:"), "{e6}");
    assert_eq!(exchange(&e6, b"over v6\n"), b"over v6\n");
    let c6 = udp_client("[::1]:0");
    let t0 = unix_now();
    let r = udp_ask(&c6, &d.addr("t6"), b"");
    check_time(&r, t0, unix_now());

    // The wildcard takes IPv4 and IPv6 on one port, TCP and UDP.
    let port = d.port("dual");
    assert_eq!(exchange(&format!("127.0.0.1:{port}"), b"v4\n"), b"v4\n");
    assert_eq!(exchange(&format!("[::1]:{port}"), b"v6\n"), b"v6\n");
    let line = d.wait_for(&["exit", "service=dual ", "peer=127.0.0.1:"]);
    assert!(line.contains("bytes_in=3 bytes_out=3"), "{line}");
    d.wait_for(&["exit", "service=dual ", "peer=[::1]:"]);
    let uport = d.port("udual");
    let c4 = udp_client("127.0.0.1:0");
    assert_eq!(udp_ask(&c4, &format!("127.0.0.1:{uport}"), b"u4"), b"u4");
    assert_eq!(udp_ask(&c6, &format!("[::1]:{uport}"), b"u6"), b"u6");
}

#[test]
fn echo_over_a_unix_stream_socket() {
    let sockdir = TempDir::new("bsock");
    let path = sockdir.path().join("echo.sock");
    let d = Superd::start(&format!(
        "services:\n  ue:\n    listen: {}\n    builtin: echo\n",
        path.display()
    ));
    d.wait_for(&["listening", "service=ue "]);
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"over unix\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"over unix\n");
    let line = d.wait_for(&["exit", "service=ue "]);
    assert!(line.contains("bytes_in=10 bytes_out=10"), "{line}");
}

#[test]
fn a_chargen_client_that_never_reads_costs_no_memory() {
    let d = Superd::start(
        "services:\n  chargen:\n    listen: 127.0.0.1:0\n    builtin: chargen\n  echo:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
    );
    let echo = d.addr("echo");
    // Warm up the paths a session allocates on, then take the baseline.
    assert_eq!(exchange(&echo, b"warm\n"), b"warm\n");
    let mut c = connect(&d.addr("chargen"));
    drop(read_n(&mut c, 74));
    drop(c);
    d.wait_for(&["exit", "service=chargen "]);
    let base = vm_rss_kib(d.pid());

    // A client that never reads: its receive buffer and superd's send
    // buffer fill up, then superd must stop writing, holding nothing.
    let lazy = connect(&d.addr("chargen"));
    let mut max_rss = base;
    let server_port = d.port("chargen");
    let client_port = lazy.local_addr().unwrap().port();
    let mut last = 0;
    let mut stable = 0;
    let mut answered = 0;
    let start = Instant::now();
    // At least 200 answers from another service, and on until the lazy
    // client's receive queue has not moved for 100 of them.
    while answered < 200 || stable < 100 {
        assert!(
            start.elapsed() < DEADLINE,
            "chargen kept sending: {last} bytes queued"
        );
        let msg = format!("ping {answered}\n");
        assert_eq!(exchange(&echo, msg.as_bytes()), msg.as_bytes());
        answered += 1;
        max_rss = max_rss.max(vm_rss_kib(d.pid()));
        let now = unread_bytes(&lazy);
        if now == last && now > 0 {
            stable += 1;
        } else {
            stable = 0;
            last = now;
        }
    }
    // Then until superd's send queue stops growing too (read seldom:
    // /proc/net/tcp can be long), another service answering in between.
    let mut txq = tcp_tx_queue(server_port, client_port);
    loop {
        assert!(start.elapsed() < DEADLINE, "chargen kept sending");
        assert_eq!(exchange(&echo, b"more\n"), b"more\n");
        max_rss = max_rss.max(vm_rss_kib(d.pid()));
        let now = tcp_tx_queue(server_port, client_port);
        if now == txq {
            break;
        }
        txq = now;
    }
    let unread = unread_bytes(&lazy);
    eprintln!(
        "chargen never read: {unread} bytes queued at the client, {txq} in superd's send queue, {answered} echo answers, RSS {base} KiB -> max {max_rss} KiB"
    );
    assert!(
        unread >= 64 * 1024,
        "only {unread} bytes reached the client"
    );
    assert!(
        max_rss <= base + 1024,
        "superd's RSS grew from {base} KiB to {max_rss} KiB"
    );
    // The session is still there; closing the client ends it.
    assert!(d.lines_with(&["exit", "service=chargen "]).len() == 1);
    drop(lazy);
    let line = d.wait_nth(2, &["exit", "service=chargen "]);
    // What superd wrote in all is what the two kernel queues held when we
    // looked: it had stopped writing, it was not still generating data
    // somewhere. Data in flight can be counted in both queues (unacked at
    // superd, already queued at the client): up to a window of slack.
    let out: usize = field(&line, "bytes_out").unwrap().parse().unwrap();
    assert!(
        out <= unread + txq && unread + txq - out <= 256 * 1024,
        "{line}: queues held {unread} + {txq}"
    );
}

#[test]
fn five_hundred_idle_echo_sessions_are_closed_by_idle_timeout() {
    const N: usize = 500;
    // 500 clients here and 500 sessions in superd (which inherits this):
    // make sure a low soft fd limit is not what the test measures.
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < 4096 && hard > soft {
        setrlimit(Resource::RLIMIT_NOFILE, hard.min(4096), hard).unwrap();
    }
    let d = Superd::start(
        "services:\n  idle:\n    listen: 127.0.0.1:0\n    builtin: echo\n    idle_timeout: 3s\n    max_connections: 600\n    backlog: 1024\n  other:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
    );
    let idle = d.addr("idle");
    let other = d.addr("other");
    d.wait_for(&["listening", "service=other "]);
    let base = d.fd_count();

    let mut clients: Vec<TcpStream> = (0..N).map(|_| connect(&idle)).collect();
    // Every one accepted: a session (one fd) each inside superd (or, where
    // its fds are not ours to count, an accept line each).
    let readable = fds_readable(d.pid(), "superd's fd count");
    if readable {
        d.wait_until("500 sessions open", || d.fd_count() == base + N);
    } else {
        d.wait_nth(N, &["accept", "service=idle "]);
    }
    // Another service still answers while they are open.
    assert_eq!(exchange(&other, b"still here\n"), b"still here\n");
    d.wait_for(&["exit", "service=other "]);
    assert!(
        d.lines_with(&["exit", "service=idle "]).is_empty(),
        "sessions ended before the idle timeout"
    );
    // The sessions are live: one of them echoes (and so stays a bit longer).
    let last = clients.last_mut().unwrap();
    last.write_all(b"x").unwrap();
    assert_eq!(read_n(last, 1), b"x");

    // After idle_timeout, each client sees EOF.
    for (i, c) in clients.iter_mut().enumerate() {
        let mut buf = [0u8; 16];
        match read_once(c, &mut buf) {
            Ok(0) => {}
            other => panic!("client {i}: {other:?}, not EOF"),
        }
    }
    if readable {
        d.wait_until("fd count back to baseline", || d.fd_count() == base);
    }
    d.wait_nth(N, &["exit", "service=idle ", "reason=idle_timeout"]);
    let exits = d.lines_with(&["exit", "service=idle "]);
    assert_eq!(exits.len(), N);
    assert!(exits.iter().all(|l| l.contains("reason=idle_timeout")));
    drop(clients);
    assert_eq!(exchange(&idle, b"again\n"), b"again\n");
}

#[test]
fn udp_builtins_never_answer_a_source_port_below_1024() {
    let d = Superd::start(
        "services:\n  uecho:\n    listen: 127.0.0.1:0\n    socket: dgram\n    builtin: echo\n",
    );
    let to = d.addr("uecho");
    // A normal port gets its reply...
    let normal = udp_client("127.0.0.1:0");
    assert_eq!(udp_ask(&normal, &to, b"hello"), b"hello");
    if !is_root() {
        skip("the port < 1024 half: not root (cannot bind a privileged port)");
        return;
    }
    // ...one below 1024 gets none.
    let low = (600..1024)
        .rev()
        .find_map(|p| UdpSocket::bind(("127.0.0.1", p)).ok())
        .expect("a free UDP port below 1024");
    low.set_read_timeout(Some(DEADLINE)).unwrap();
    let low_addr = low.local_addr().unwrap();
    low.send_to(b"reflect me", to.parse::<SocketAddr>().unwrap())
        .unwrap();
    let line = d.wait_for(&["datagram", "service=uecho ", &format!("peer={low_addr} ")]);
    assert!(line.contains("outcome=BadSource"), "{line}");
    assert!(
        nothing_queued(&low),
        "a reply went to port {}",
        low_addr.port()
    );
    // And the service still answers normal ports afterwards.
    assert_eq!(udp_ask(&normal, &to, b"again"), b"again");
    assert!(nothing_queued(&low));
}

/// inetd's spelling of a UDP builtin, `daytime dgram udp wait root
/// internal`, is accepted as it is written and served like the default.
#[test]
fn a_udp_builtin_written_with_wait_true_is_served() {
    let d = Superd::start(
        "services:\n  uecho:\n    listen: 127.0.0.1:0\n    socket: dgram\n    wait: true\n    builtin: echo\n",
    );
    let client = udp_client("127.0.0.1:0");
    assert_eq!(udp_ask(&client, &d.addr("uecho"), b"hello"), b"hello");
    assert_eq!(udp_ask(&client, &d.addr("uecho"), b"again"), b"again");
}

/// A datagram whose source port is one of superd's own UDP builtin ports
/// is not answered, from any address (OpenBSD inetd's `check_loop`): a
/// spoofed source would have two builtins, or one and itself, answer each
/// other forever.
#[test]
fn udp_builtins_never_answer_superd_s_own_ports() {
    let d = Superd::start(
        "services:\n  uecho:\n    listen: 127.0.0.1:0\n    socket: dgram\n    builtin: echo\n  uchargen:\n    listen: 127.0.0.1:0\n    socket: dgram\n    builtin: chargen\n",
    );
    let echo: SocketAddr = d.addr("uecho").parse().unwrap();
    let chargen: SocketAddr = d.addr("uchargen").parse().unwrap();
    // 127.0.0.2 with the port of each builtin: the port is free there.
    for (from_port, to) in [(echo.port(), echo), (chargen.port(), echo)] {
        let s = UdpSocket::bind(("127.0.0.2", from_port)).expect("bind 127.0.0.2");
        s.send_to(b"loop?", to).unwrap();
        let from = s.local_addr().unwrap();
        let line = d.wait_for(&["datagram", "service=uecho ", &format!("peer={from} ")]);
        assert!(line.contains("outcome=BadSource"), "{line}");
        assert!(nothing_queued(&s), "answered {from}");
    }
    let normal = udp_client("127.0.0.1:0");
    assert_eq!(udp_ask(&normal, &echo.to_string(), b"fine"), b"fine");
}

/// `rate` on a UDP builtin counts datagrams: a burst of N is answered at
/// once, the rest wait in the socket's buffer and are answered as tokens
/// come, none dropped.
#[test]
fn rate_paces_a_udp_builtin() {
    let d = Superd::start(
        "services:\n  urate:\n    listen: 127.0.0.1:0\n    socket: dgram\n    builtin: echo\n    rate: \"2/s\"\n",
    );
    let to: SocketAddr = d.addr("urate").parse().unwrap();
    let c = udp_client("127.0.0.1:0");
    let sent = Instant::now();
    for i in 0..6u8 {
        c.send_to(&[b'0' + i], to).unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 16];
    for _ in 0..6 {
        let (n, _) = c.recv_from(&mut buf).expect("every datagram answered");
        got.extend_from_slice(&buf[..n]);
    }
    // Two at once (the burst), then four more at 2/s: 2 s at the least.
    let took = sent.elapsed();
    assert_eq!(got, b"012345");
    assert!(
        took >= Duration::from_millis(1900),
        "six replies in {took:?}"
    );
    d.signal(nix::sys::signal::Signal::SIGUSR1);
    let st = d.wait_for(&["status service=urate "]);
    assert!(st.contains(" accepted=6 "), "{st}");
}

/// A reload that drops `rate` ends a pause for it: the datagram waiting
/// for the old rate's next token is answered at once (SPEC §6: a kept
/// service takes its new fields for new connections).
#[test]
fn a_reload_dropping_rate_ends_its_pause() {
    let d = Superd::start(
        "services:\n  slow:\n    listen: 127.0.0.1:0\n    socket: dgram\n    builtin: echo\n    rate: \"1/m\"\n",
    );
    let to = d.addr("slow");
    let c = udp_client("127.0.0.1:0");
    assert_eq!(udp_ask(&c, &to, b"one"), b"one");
    // The second waits a minute for a token...
    c.send_to(b"two", to.parse::<SocketAddr>().unwrap())
        .unwrap();
    d.signal(nix::sys::signal::Signal::SIGUSR1);
    d.wait_for(&["status service=slow ", "state=paused_rate"]);
    // ...until the reload without a rate.
    d.dir.write(
        "test.yaml",
        &format!("services:\n  slow:\n    listen: {to}\n    socket: dgram\n    builtin: echo\n"),
    );
    let asked = Instant::now();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let mut buf = [0u8; 16];
    let (n, _) = c.recv_from(&mut buf).expect("answered after the reload");
    assert_eq!(&buf[..n], b"two");
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "waited for the old rate"
    );
}

#[test]
fn max_connections_applies_to_builtin_sessions() {
    let d = Superd::start(
        "services:\n  cap:\n    listen: 127.0.0.1:0\n    builtin: echo\n    max_connections: 1\n",
    );
    let addr = d.addr("cap");
    let mut a = connect(&addr);
    a.write_all(b"a").unwrap();
    assert_eq!(read_n(&mut a, 1), b"a");
    // b waits in the backlog: connected by the kernel, not served.
    let mut b = connect(&addr);
    b.write_all(b"b").unwrap();
    // A round trip on a after b's arrival: superd has seen b by now.
    a.write_all(b"a").unwrap();
    assert_eq!(read_n(&mut a, 1), b"a");
    // (The log is read by another thread: wait for a's line, then count.)
    d.wait_for(&["accept", "service=cap "]);
    assert_eq!(d.lines_with(&["accept", "service=cap "]).len(), 1);
    assert_eq!(unread_bytes(&b), 0);
    // a leaves: b is accepted and served.
    drop(a);
    assert_eq!(read_n(&mut b, 1), b"b");
    d.wait_for(&["exit", "service=cap "]);
    d.wait_nth(2, &["accept", "service=cap "]);
}

#[test]
fn only_from_and_deny_from_apply_to_builtins() {
    let d = Superd::start(
        "services:\n  day:\n    listen: 127.0.0.1:0\n    builtin: daytime\n    only_from: [127.0.0.2]\n  uecho:\n    listen: 127.0.0.1:0\n    socket: dgram\n    builtin: echo\n    deny_from: [127.0.0.3]\n",
    );
    // TCP: only_from refuses 127.0.0.1 (closed at once, no daytime).
    let day = d.addr("day");
    let mut s = connect_from("127.0.0.1", &day);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty(), "{got:?}");
    d.wait_for(&["refused", "service=day ", "reason=only_from"]);
    let t0 = unix_now();
    let mut s = connect_from("127.0.0.2", &day);
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    check_daytime(&got, t0, unix_now());

    // UDP: deny_from gets no reply; another source does.
    let to = d.addr("uecho");
    let denied = udp_client("127.0.0.3:0");
    denied
        .send_to(b"no", to.parse::<SocketAddr>().unwrap())
        .unwrap();
    d.wait_for(&[
        "refused",
        "service=uecho ",
        "peer=127.0.0.3:",
        "reason=deny_from",
    ]);
    let line = d.wait_for(&["datagram", "service=uecho ", "peer=127.0.0.3:"]);
    assert!(line.contains("outcome=Refused"), "{line}");
    assert!(nothing_queued(&denied));
    let ok = udp_client("127.0.0.2:0");
    assert_eq!(udp_ask(&ok, &to, b"yes"), b"yes");
}

#[test]
fn a_finished_tcp_session_logs_one_exit_line() {
    let d = Superd::start(
        "services:\n  echo:\n    listen: 127.0.0.1:0\n    builtin: echo\n  time:\n    listen: 127.0.0.1:0\n    builtin: time\n",
    );
    assert_eq!(exchange(&d.addr("echo"), b"hello"), b"hello");
    let line = d.wait_for(&["exit", "service=echo "]);
    assert!(line.starts_with("INFO"), "{line}");
    for part in [
        "peer=127.0.0.1:",
        "status=0",
        "duration=",
        "bytes_in=5 bytes_out=5",
    ] {
        assert!(line.contains(part), "{part} not in {line}");
    }
    assert!(!line.contains("reason="), "{line}");
    // A later session's line is logged after it: still one for echo.
    assert_eq!(exchange(&d.addr("time"), b"").len(), 4);
    let line = d.wait_for(&["exit", "service=time "]);
    assert!(line.contains("bytes_out=4"), "{line}");
    assert_eq!(d.lines_with(&["exit", "service=echo "]).len(), 1);
    assert_eq!(d.lines_with(&["exit", "service=time "]).len(), 1);
}

/// Segments the client received on `s` (TCP_INFO's `tcpi_segs_in`).
fn segments_in(s: &TcpStream) -> u32 {
    // SAFETY: tcp_info is plain integers, for which all zeroes is valid.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_segs_in
}

/// Echo's reply and daytime's go out with the FIN in one segment, so the
/// client receives the SYN-ACK and then one segment: 2 in all (3 when the
/// FIN follows the data on its own). A loaded machine may send an ACK on
/// its own now and then, so most connections, not all, must show it.
#[test]
fn the_last_bytes_and_the_fin_share_one_segment() {
    let d = Superd::start(
        "services:\n  echo:\n    listen: 127.0.0.1:0\n    builtin: echo\n  daytime:\n    listen: 127.0.0.1:0\n    builtin: daytime\n",
    );
    for service in ["echo", "daytime"] {
        let addr = d.addr(service);
        let mut merged = 0;
        for _ in 0..20 {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            if service == "echo" {
                // The line and this client's FIN in one segment too.
                let sent = nix::sys::socket::send(
                    s.as_raw_fd(),
                    b"one segment\n",
                    nix::sys::socket::MsgFlags::from_bits_retain(libc::MSG_MORE),
                )
                .unwrap();
                assert_eq!(sent, 12);
                s.shutdown(Shutdown::Write).unwrap();
            }
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            assert!(!got.is_empty(), "{service}: no reply");
            let segs = segments_in(&s);
            assert!(segs >= 2, "{service}: {segs} segments in");
            if segs == 2 {
                merged += 1;
            }
        }
        assert!(
            merged >= 15,
            "{service}: only {merged} of 20 replies carried the FIN"
        );
    }
}

/// Builtin sessions share a byte budget per loop turn; the ones that wait
/// must get the next turn, not wait behind the same busy few for as long as
/// those keep their peers reading: sixteen fast chargen readers all get
/// data, all the time.
#[test]
fn every_fast_chargen_reader_is_served() {
    let d = Superd::start("services:\n  chargen:\n    listen: 127.0.0.1:0\n    builtin: chargen\n");
    let addr = d.addr("chargen");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let mut c = connect(&addr);
            let stop = stop.clone();
            std::thread::spawn(move || {
                c.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut buf = vec![0u8; 1 << 16];
                let start = Instant::now();
                let mut late = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match c.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) if start.elapsed() > Duration::from_secs(2) => late += n as u64,
                        _ => {}
                    }
                }
                late
            })
        })
        .collect();
    // Five seconds of reading, bounded by the deadline below.
    let until = Instant::now() + Duration::from_secs(5);
    d.wait_until("five seconds of chargen", || Instant::now() >= until);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let late: Vec<u64> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(
        late.iter().all(|&n| n > 0),
        "readers starved after the first 2 s (bytes each): {late:?}"
    );
}
