//! `proxy_protocol` through the real binary (superd.yaml(5), PROXY
//! PROTOCOL): the header read in the loop, the client everywhere after it
//! (access rules, `max_per_source`, logs, the child's variables), the bad
//! headers refused without leaking, and a real HAProxy in front.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::*;

/// A service of the probe behind a proxy on 127.0.0.1.
fn probe_behind(accept: &str, extra: &str) -> Superd {
    Superd::start(&format!(
        "services:\n  p:\n    listen: 127.0.0.1:0\n    exec: {}\n    {}\n    proxy_protocol: {accept}\n    proxy_from: 127.0.0.1\n{extra}",
        probe_bin().display(),
        user_line(),
    ))
}

/// A v1 line for a TCP4 client.
fn v1(src: &str, dst: &str) -> Vec<u8> {
    let (s, d): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    format!(
        "PROXY TCP4 {} {} {} {}\r\n",
        s.ip(),
        d.ip(),
        s.port(),
        d.port()
    )
    .into_bytes()
}

const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 PROXY header for a TCP4 client, with `tlvs` (raw) after the
/// addresses.
fn v2(src: &str, dst: &str, tlvs: &[u8]) -> Vec<u8> {
    let (s, d): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (s, d) else {
        panic!("IPv4 only")
    };
    let mut h = V2_SIG.to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x11); // TCP over IPv4
    h.extend_from_slice(&((12 + tlvs.len()) as u16).to_be_bytes());
    h.extend_from_slice(&s.ip().octets());
    h.extend_from_slice(&d.ip().octets());
    h.extend_from_slice(&s.port().to_be_bytes());
    h.extend_from_slice(&d.port().to_be_bytes());
    h.extend_from_slice(tlvs);
    h
}

/// A v2 LOCAL header (a health check): no addresses.
fn v2_local() -> Vec<u8> {
    let mut h = V2_SIG.to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0, 0]);
    h
}

/// Connects from `source` (any 127.0.0.0/8 address is local on Linux).
fn connect_from(source: Ipv4Addr, addr: &str) -> TcpStream {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(source, 0)),
    )
    .unwrap();
    let target: std::net::SocketAddrV4 = addr.parse().unwrap();
    connect(fd.as_raw_fd(), &SockaddrIn::from(target))
        .unwrap_or_else(|e| panic!("connect {addr} from {source}: {e}"));
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Sends `input`, half-closes, reads to EOF (or to a reset).
fn send_and_read(s: &mut TcpStream, input: &[u8]) -> Vec<u8> {
    let _ = s.write_all(input);
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

// ---- --check ---------------------------------------------------------------

#[test]
fn check_refuses_bad_proxy_fields_with_file_line_and_column() {
    let dir = TempDir::new("proxy-check");
    let good = dir.write(
        "lb.yaml",
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    proxy_protocol: v2\n    proxy_from: 127.0.0.1\n",
    );
    let dgram = dir.write(
        "udp.yaml",
        "services:\n  u:\n    listen: 127.0.0.1:0\n    socket: dgram\n    builtin: echo\n    proxy_protocol: any\n",
    );
    let timeout = dir.write(
        "slow.yaml",
        "services:\n  t:\n    listen: 127.0.0.1:0\n    builtin: echo\n    proxy_protocol: v1\n    proxy_from: 127.0.0.1\n    proxy_timeout: soon\n",
    );
    let mut d = Superd::spawn(
        dir,
        &["--check", good.parent().unwrap().to_str().unwrap()],
        &[],
    );
    let status = d.wait_exit();
    assert_eq!(status.code(), Some(1));
    let log = d.log_text();
    for want in [
        format!(
            "{}:6:21: proxy_protocol needs a stream service",
            dgram.display()
        ),
        format!("{}:6:21: proxy_protocol needs proxy_from", dgram.display()),
        format!("{}:7:20: ", timeout.display()),
    ] {
        assert!(log.contains(&want), "{want:?} not in:\n{log}");
    }
    assert!(!log.contains(&good.display().to_string()), "{log}");
    assert!(!log.contains("not yet supported"), "{log}");
    assert!(d.stdout_text().is_empty());
}

#[test]
fn check_accepts_proxy_protocol_and_shows_it() {
    let dir = TempDir::new("proxy-check-ok");
    let file = dir.write(
        "lb.yaml",
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    proxy_protocol: any\n    proxy_from: [10.0.0.0/8]\n",
    );
    let mut d = Superd::spawn(
        dir,
        &["--check", file.parent().unwrap().to_str().unwrap()],
        &[],
    );
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log_text());
    let out = d.stdout_text();
    assert!(
        out.contains("proxy_protocol=any proxy_from=[10.0.0.0/8] proxy_timeout=5s"),
        "{out}"
    );
}

// ---- the header, by hand -----------------------------------------------------

#[test]
fn the_child_sees_the_client_of_a_v1_and_a_v2_header() {
    let d = probe_behind("any", "");
    let addr = d.addr("p");
    let port = d.port("p");
    let mut s = connect(&addr);
    let r = report(&send_and_read(
        &mut s,
        &v1("192.0.2.7:50312", "198.51.100.1:443"),
    ));
    assert_eq!(get(&r, "env.PROTO"), "TCP");
    assert_eq!(get(&r, "env.TCPREMOTEIP"), "192.0.2.7");
    assert_eq!(get(&r, "env.TCPREMOTEPORT"), "50312");
    assert_eq!(get(&r, "env.REMOTE_ADDR"), "192.0.2.7");
    assert_eq!(get(&r, "env.REMOTE_PORT"), "50312");
    assert_eq!(get(&r, "env.TCPLOCALIP"), "198.51.100.1");
    assert_eq!(get(&r, "env.TCPLOCALPORT"), "443");
    assert_eq!(get(&r, "env.PROXY_PROTOCOL"), "1");
    assert_eq!(get(&r, "env.TCPPROXYIP"), "127.0.0.1");
    let proxy_port = s.local_addr().unwrap().port();
    assert_eq!(get(&r, "env.TCPPROXYPORT"), proxy_port.to_string());
    // getpeername(0) is still the proxy (the caveat of superd.yaml(5)).
    assert_eq!(get(&r, "peer"), format!("127.0.0.1:{proxy_port}"));
    let exit = d.wait_for(&["exit service=p", "peer=192.0.2.7:50312"]);
    assert!(
        exit.contains(&format!("proxy=127.0.0.1:{proxy_port}")),
        "{exit}"
    );

    // v2 with an ALPN and an AUTHORITY TLV.
    let tlvs = [&[0x01, 0, 2][..], b"h2", &[0x02, 0, 11], b"example.org"].concat();
    let r = report(&send_and_read(
        &mut connect(&addr),
        &v2("203.0.113.9:40000", &format!("127.0.0.1:{port}"), &tlvs),
    ));
    assert_eq!(get(&r, "env.TCPREMOTEIP"), "203.0.113.9");
    assert_eq!(get(&r, "env.TCPREMOTEPORT"), "40000");
    assert_eq!(get(&r, "env.PROXY_PROTOCOL"), "2");
    assert_eq!(get(&r, "env.TCPPROXYIP"), "127.0.0.1");
    assert_eq!(get(&r, "env.PROXY_ALPN"), "h2");
    assert_eq!(get(&r, "env.PROXY_AUTHORITY"), "example.org");
}

#[test]
fn env_overrides_a_proxy_variable_and_a_local_header_keeps_the_real_peer() {
    let d = probe_behind("v2", "    env:\n      PROXY_ALPN: mine\n");
    let addr = d.addr("p");
    let mut s = connect(&addr);
    let mine = s.local_addr().unwrap();
    let r = report(&send_and_read(&mut s, &v2_local()));
    // A health check: the real endpoints.
    assert_eq!(get(&r, "env.TCPREMOTEIP"), "127.0.0.1");
    assert_eq!(get(&r, "env.TCPREMOTEPORT"), mine.port().to_string());
    assert_eq!(get(&r, "env.TCPLOCALPORT"), d.port("p").to_string());
    assert_eq!(get(&r, "env.PROXY_PROTOCOL"), "2");
    assert_eq!(get(&r, "env.PROXY_ALPN"), "mine");
    let tlvs = [&[0x01, 0, 2][..], b"h2"].concat();
    let r = report(&send_and_read(
        &mut connect(&addr),
        &v2("192.0.2.1:1000", "192.0.2.2:2000", &tlvs),
    ));
    assert_eq!(get(&r, "env.TCPREMOTEIP"), "192.0.2.1");
    assert_eq!(get(&r, "env.PROXY_ALPN"), "mine");
}

#[test]
fn a_peer_outside_proxy_from_is_refused() {
    let d = Superd::start(
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    proxy_protocol: v1\n    proxy_from: [10.0.0.1, 127.0.0.2]\n",
    );
    let addr = d.addr("e");
    let out = send_and_read(&mut connect(&addr), &v1("192.0.2.7:1", "192.0.2.1:2"));
    assert!(out.is_empty(), "{out:?}");
    let line = d.wait_for(&["refused service=e", "reason=proxy_from"]);
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    // A proxy in the list is served.
    let mut s = connect_from(Ipv4Addr::new(127, 0, 0, 2), &addr);
    let input = [v1("192.0.2.7:1", "192.0.2.1:2"), b"hi\n".to_vec()].concat();
    assert_eq!(send_and_read(&mut s, &input), b"hi\n");
    let exit = d.wait_for(&["exit service=e", "peer=192.0.2.7:1"]);
    assert!(exit.contains("proxy=127.0.0.2:"), "{exit}");
}

/// The program's first read is the client's first byte, whether the
/// header and the data come in one segment or not; a builtin likewise.
#[test]
fn header_and_data_in_one_segment_leave_the_data_to_the_program() {
    let d = Superd::start(
        "services:\n  cat:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    USER\n    proxy_protocol: any\n    proxy_from: 127.0.0.1\n  echo:\n    listen: 127.0.0.1:0\n    builtin: echo\n    proxy_protocol: any\n    proxy_from: 127.0.0.1\n"
            .replace("USER", user_line())
            .as_str(),
    );
    let data = b"PROXY TCP4 data that looks like a header\r\n\r\n\r\n\0\r\nQUIT\nrest";
    for service in ["cat", "echo"] {
        let addr = d.addr(service);
        for header in [
            v1("192.0.2.7:1", "192.0.2.1:2"),
            v2("192.0.2.7:1", "192.0.2.1:2", &[]),
        ] {
            let input = [header, data.to_vec()].concat();
            let mut s = connect(&addr);
            s.set_nodelay(true).unwrap();
            assert_eq!(
                send_and_read(&mut s, &input),
                data,
                "{service}: {}",
                d.log_text()
            );
        }
    }
}

#[test]
fn a_header_sent_one_byte_at_a_time_is_read() {
    let d = probe_behind("any", "    proxy_timeout: 60s\n");
    let addr = d.addr("p");
    for header in [
        v1("192.0.2.7:50312", "192.0.2.1:2"),
        v2("192.0.2.7:50312", "192.0.2.1:2", &[0x04, 0, 3, 1, 2, 3]),
    ] {
        let mut s = connect(&addr);
        s.set_nodelay(true).unwrap();
        for b in &header {
            s.write_all(&[*b]).unwrap();
            // Separate segments, most of them: the test holds either way.
            std::thread::sleep(Duration::from_millis(2));
        }
        let r = report(&send_and_read(&mut s, b""));
        assert_eq!(get(&r, "env.TCPREMOTEIP"), "192.0.2.7");
        assert_eq!(get(&r, "env.TCPREMOTEPORT"), "50312");
    }
    assert!(d.lines_with(&["refused"]).is_empty(), "{}", d.log_text());
}

/// Missing, malformed, oversize, unaccepted, late and cut-off headers:
/// each refused `reason=proxy_header`, and the service goes on.
#[test]
fn bad_headers_are_refused_and_the_service_keeps_serving() {
    let d = Superd::start(
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    proxy_protocol: v1\n    proxy_from: 127.0.0.1\n    proxy_timeout: 1s\n    max_connections: 2\n",
    );
    let addr = d.addr("e");
    let mut long_v1 = b"PROXY TCP4 ".to_vec();
    long_v1.resize(200, b'1');
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "missing",
            b"GET / HTTP/1.0\r\n\r\n".to_vec(),
            "no PROXY header",
        ),
        ("malformed", b"PROXY TCP4 1.2.3.4\r\n".to_vec(), "v1:"),
        (
            "leading zero",
            b"PROXY TCP4 1.2.3.04 1.2.3.5 1 2\r\n".to_vec(),
            "v1:",
        ),
        ("oversize", long_v1, "v1: no CRLF within 107 bytes"),
        (
            "v2 where v1",
            v2("192.0.2.7:1", "192.0.2.1:2", &[]),
            "a v2 header",
        ),
        (
            "cut off",
            b"PROXY TCP4 192.0.2.7 ".to_vec(),
            "closed before a complete header",
        ),
    ];
    for (i, (what, bytes, why)) in cases.iter().enumerate() {
        let out = send_and_read(&mut connect(&addr), bytes);
        assert!(out.is_empty(), "{what}: {out:?}");
        let line = d.wait_nth(i + 1, &["refused service=e", "reason=proxy_header"]);
        assert!(line.contains(why), "{what}: {line}");
        // The next one is served.
        let input = [v1("192.0.2.7:1", "192.0.2.1:2"), b"ok\n".to_vec()].concat();
        assert_eq!(
            send_and_read(&mut connect(&addr), &input),
            b"ok\n",
            "{what}"
        );
    }
    // Late: part of a header, then nothing, past proxy_timeout.
    let mut late = connect(&addr);
    late.write_all(b"PROXY TCP4 192.0.2.7").unwrap();
    let line = d.wait_for(&["refused service=e", "within proxy_timeout"]);
    assert!(line.contains("reason=proxy_header"), "{line}");
    let mut buf = [0u8; 16];
    assert_eq!(read_once(&mut late, &mut buf).unwrap_or(0), 0);
    // A v2 header too long for the cap, to a service that takes v2.
    let d2 = Superd::start(
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    proxy_protocol: v2\n    proxy_from: 127.0.0.1\n",
    );
    let mut big = V2_SIG.to_vec();
    big.extend_from_slice(&[0x21, 0x11]);
    big.extend_from_slice(&5000u16.to_be_bytes());
    big.resize(16 + 5000, 0);
    let out = send_and_read(&mut connect(&d2.addr("e")), &big);
    assert!(out.is_empty(), "{out:?}");
    let line = d2.wait_for(&["refused service=e", "reason=proxy_header"]);
    assert!(line.contains("longer than 4096"), "{line}");
    d.signal(Signal::SIGUSR1);
    let st = d.wait_for(&["status service=e"]);
    assert_eq!(
        field(&st, "refused_proxy_header").as_deref(),
        Some("7"),
        "{st}"
    );
    assert_eq!(field(&st, "active").as_deref(), Some("0"), "{st}");
}

/// A connection waiting for its header holds a max_connections slot; the
/// slot comes back when it is refused.
#[test]
fn a_waiting_header_holds_a_slot_until_refused() {
    let d = Superd::start(
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    proxy_protocol: v1\n    proxy_from: 127.0.0.1\n    proxy_timeout: 2s\n    max_connections: 1\n",
    );
    let addr = d.addr("e");
    let mut waiting = connect(&addr);
    waiting.write_all(b"PROXY ").unwrap();
    d.signal(Signal::SIGUSR1);
    let st = d.wait_for(&["status service=e"]);
    assert_eq!(field(&st, "active").as_deref(), Some("1"), "{st}");
    assert!(st.contains("state=paused_max_connections"), "{st}");
    // The next waits in the backlog, and is served once the first is
    // refused at its timeout.
    let input = [v1("192.0.2.7:1", "192.0.2.1:2"), b"ok\n".to_vec()].concat();
    assert_eq!(send_and_read(&mut connect(&addr), &input), b"ok\n");
    d.wait_for(&["exit service=e"]);
    let log = d.log_text();
    let refused = log.find("within proxy_timeout").expect("refused");
    let served = log.find("exit service=e").unwrap();
    assert!(refused < served, "{log}");
}

/// 1,000 bad headers of every kind: superd's fds and the service's slots
/// are back at their baseline, and it still serves.
#[test]
fn no_fd_or_slot_leaks_after_1000_bad_headers() {
    let d = Superd::start(
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    proxy_protocol: any\n    proxy_from: 127.0.0.1\n    proxy_timeout: 30s\n    max_connections: 8\n",
    );
    let addr = d.addr("e");
    let good = [v1("192.0.2.7:1", "192.0.2.1:2"), b"ok\n".to_vec()].concat();
    assert_eq!(send_and_read(&mut connect(&addr), &good), b"ok\n");
    d.wait_for(&["exit service=e"]);
    let baseline = d.fd_count();
    let bad: [&[u8]; 4] = [
        b"hello\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
        b"PROXY TCP4 192.0.2.7 ",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x20",
    ];
    // Each ends when superd closes it, after counting it: no waiting on
    // 1,000 log lines (a reader that falls behind costs dropped lines).
    for i in 0..1000 {
        let out = send_and_read(&mut connect(&addr), bad[i % bad.len()]);
        assert!(out.is_empty(), "{out:?}");
    }
    d.wait_until("superd's fds back at the baseline", || {
        d.fd_count() == baseline
    });
    d.signal(Signal::SIGUSR1);
    let st = d.wait_for(&["status service=e"]);
    assert_eq!(field(&st, "active").as_deref(), Some("0"), "{st}");
    assert_eq!(
        field(&st, "refused_proxy_header").as_deref(),
        Some("1000"),
        "{st}"
    );
    assert!(st.contains("state=listening"), "{st}");
    assert_eq!(send_and_read(&mut connect(&addr), &good), b"ok\n");
}

/// The access rules and `max_per_source` apply to the header's client.
#[test]
fn access_rules_and_max_per_source_see_the_client() {
    let d = Superd::start(
        "services:\n  cat:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    USER\n    proxy_protocol: v1\n    proxy_from: 127.0.0.1\n    deny_from: [192.0.2.66]\n    max_per_source: 1\n"
            .replace("USER", user_line())
            .as_str(),
    );
    let addr = d.addr("cat");
    let out = send_and_read(&mut connect(&addr), &v1("192.0.2.66:1", "192.0.2.1:2"));
    assert!(out.is_empty(), "{out:?}");
    let line = d.wait_for(&["refused service=cat", "reason=deny_from"]);
    assert!(
        line.contains("peer=192.0.2.66:1 proxy=127.0.0.1:"),
        "{line}"
    );
    // One connection per client, many through the one proxy.
    let mut a = connect(&addr);
    a.write_all(&[v1("192.0.2.7:1", "192.0.2.1:2"), b"a\n".to_vec()].concat())
        .unwrap();
    assert_eq!(read_line_from(&mut a), "a");
    let out = send_and_read(&mut connect(&addr), &v1("192.0.2.7:3", "192.0.2.1:2"));
    assert!(out.is_empty(), "{out:?}");
    let line = d.wait_for(&["refused service=cat", "reason=max_per_source"]);
    assert!(line.contains("peer=192.0.2.7:3 proxy=127.0.0.1:"), "{line}");
    let input = [v1("192.0.2.8:1", "192.0.2.1:2"), b"b\n".to_vec()].concat();
    assert_eq!(send_and_read(&mut connect(&addr), &input), b"b\n");
    drop(a);
}

// ---- a real HAProxy in front ---------------------------------------------------

/// HAProxy in the foreground (`-db`), stopped by pid when dropped.
struct Haproxy {
    child: Child,
    _dir: TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn haproxy_bin() -> Option<&'static str> {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// Starts HAProxy with a frontend per `send-proxy` option, each relaying
/// to `backend`; returns it and the frontends' addresses in order. The
/// frontends' sockets are bound and listening here, on port 0, and handed
/// to HAProxy (`bind fd@N`): no port can be taken in between, and a
/// connection made before HAProxy is up waits in the backlog.
fn haproxy(backend: &str, options: &[&str]) -> Option<(Haproxy, Vec<String>)> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let Some(bin) = haproxy_bin() else {
        eprintln!("SKIP: haproxy not installed (apt-get install haproxy)");
        return None;
    };
    let dir = TempDir::new("haproxy");
    let mut cfg = String::from(
        "global\n    maxconn 256\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n",
    );
    let mut fronts = Vec::new();
    let mut listeners = Vec::new();
    for (i, opt) in options.iter().enumerate() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        fronts.push(l.local_addr().unwrap().to_string());
        // HAProxy's fds: 10, 11, ... (above whatever it opens first).
        let fd = 10 + i as i32;
        cfg.push_str(&format!(
            "frontend f{i}\n    bind fd@{fd}\n    default_backend b{i}\nbackend b{i}\n    server s1 {backend} {opt}\n"
        ));
        listeners.push((l, fd));
    }
    let file = dir.write("haproxy.cfg", &cfg);
    let raw: Vec<(i32, i32)> = listeners
        .iter()
        .map(|(l, fd)| (l.as_raw_fd(), *fd))
        .collect();
    let mut cmd = Command::new(bin);
    cmd.args(["-db", "-f"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only dup2 (async-signal-safe) between fork and exec; the
    // new descriptors are not close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            for &(from, to) in &raw {
                if libc::dup2(from, to) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("start haproxy");
    drop(listeners);
    Some((Haproxy { child, _dir: dir }, fronts))
}

#[test]
fn haproxy_send_proxy_and_send_proxy_v2_carry_the_client() {
    let d = probe_behind("any", "");
    let Some((_h, fronts)) = haproxy(&d.addr("p"), &["send-proxy", "send-proxy-v2"]) else {
        return;
    };
    for (front, version) in fronts.iter().zip(["1", "2"]) {
        let mut s = connect_from(Ipv4Addr::new(127, 0, 0, 2), front);
        let client = s.local_addr().unwrap();
        // No half-close before the answer: HAProxy may take a client that
        // shuts down its side before the server connection is up for one
        // that went away.
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(
            !out.is_empty(),
            "no report through {front}:\n{}",
            d.log_text()
        );
        let r = report(&out);
        assert_eq!(get(&r, "env.TCPREMOTEIP"), "127.0.0.2", "{r:?}");
        assert_eq!(get(&r, "env.TCPREMOTEPORT"), client.port().to_string());
        assert_eq!(get(&r, "env.REMOTE_ADDR"), "127.0.0.2");
        assert_eq!(get(&r, "env.TCPLOCALIP"), "127.0.0.1");
        assert_eq!(
            get(&r, "env.TCPLOCALPORT"),
            front.rsplit(':').next().unwrap()
        );
        assert_eq!(get(&r, "env.PROXY_PROTOCOL"), version);
        assert_eq!(get(&r, "env.TCPPROXYIP"), "127.0.0.1");
        let exit = d.wait_for(&["exit service=p", &format!("peer={client}")]);
        assert!(exit.contains("proxy=127.0.0.1:"), "{exit}");
    }
}

#[test]
fn haproxy_clients_meet_deny_from_and_max_per_source_not_the_proxy() {
    let d = Superd::start(
        "services:\n  cat:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    USER\n    proxy_protocol: any\n    proxy_from: 127.0.0.1\n    deny_from: [127.0.0.3]\n    max_per_source: 1\n"
            .replace("USER", user_line())
            .as_str(),
    );
    let Some((_h, fronts)) = haproxy(&d.addr("cat"), &["send-proxy-v2", "send-proxy"]) else {
        return;
    };
    for (i, front) in fronts.iter().enumerate() {
        // 127.0.0.3 is denied; 127.0.0.2 is not.
        // (HAProxy may try a refused connection again: lines are matched by
        // the client's port.)
        let mut denied = connect_from(Ipv4Addr::new(127, 0, 0, 3), front);
        let denied_port = denied.local_addr().unwrap().port();
        let out = send_and_read(&mut denied, b"x\n");
        assert!(out.is_empty(), "{out:?}");
        let line = d.wait_for(&[
            "refused service=cat",
            &format!("peer=127.0.0.3:{denied_port} "),
            "reason=deny_from",
        ]);
        assert!(line.contains("peer=127.0.0.3:"), "{line}");
        assert!(line.contains("proxy=127.0.0.1:"), "{line}");
        let mut a = connect_from(Ipv4Addr::new(127, 0, 0, 2), front);
        a.write_all(b"a\n").unwrap();
        assert_eq!(read_line_from(&mut a), "a");
        // A second connection of that client is over its limit; another
        // client through the same proxy is not.
        let second = connect_from(Ipv4Addr::new(127, 0, 0, 2), front);
        let second_port = second.local_addr().unwrap().port();
        d.wait_for(&[
            "refused service=cat",
            &format!("peer=127.0.0.2:{second_port}"),
            "reason=max_per_source",
        ]);
        let mut b = connect_from(Ipv4Addr::new(127, 0, 0, 4), front);
        b.write_all(b"b\n").unwrap();
        assert_eq!(read_line_from(&mut b), "b", "{}", d.log_text());
        assert_eq!(send_and_read(&mut b, b""), b"");
        assert_eq!(send_and_read(&mut a, b""), b"");
        // Both reaped, their per-source slots free for the next round.
        let b_port = b.local_addr().unwrap().port();
        d.wait_for(&["exit service=cat", &format!("peer=127.0.0.4:{b_port} ")]);
        d.wait_nth(i + 1, &["exit service=cat", "peer=127.0.0.2:"]);
    }
    // Every refusal names a client and the proxy it came through.
    for line in d.lines_with(&["refused"]) {
        let (peer, proxy) = (field(&line, "peer"), field(&line, "proxy"));
        assert!(proxy.is_some() && peer != proxy, "{line}");
    }
}

/// A reload turns the header on for the connections that follow, on the
/// socket kept open.
#[test]
fn a_reload_to_proxy_protocol_applies_to_new_connections() {
    let d = Superd::start("services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n");
    let port = d.port("e");
    let line = v1("192.0.2.7:1", "192.0.2.1:2");
    assert_eq!(exchange(&format!("127.0.0.1:{port}"), &line), line);
    d.dir.write(
        "test.yaml",
        &format!(
            "services:\n  e:\n    listen: 127.0.0.1:{port}\n    builtin: echo\n    proxy_protocol: v1\n    proxy_from: 127.0.0.1\n"
        ),
    );
    d.signal(Signal::SIGHUP);
    d.wait_for(&["reloaded"]);
    let mut s = connect(&format!("127.0.0.1:{port}"));
    assert_eq!(
        send_and_read(&mut s, &[line, b"data".to_vec()].concat()),
        b"data"
    );
    d.wait_for(&["exit service=e", "peer=192.0.2.7:1", "proxy=127.0.0.1:"]);
}

/// `exec failed` and the child's `exit` name the client and the proxy.
#[test]
fn exec_failed_names_the_client_and_the_proxy() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("proxy-noexec");
    let prog = dir.write("prog", "#!/bin/sh\necho ok\n");
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = Superd::start(&format!(
        "services:\n  gone:\n    listen: 127.0.0.1:0\n    exec: {}\n    {}\n    proxy_protocol: v1\n    proxy_from: 127.0.0.1\n",
        prog.display(),
        user_line()
    ));
    let addr = d.addr("gone");
    // The program disappears after the config loaded: exec fails.
    std::fs::remove_file(&prog).unwrap();
    let mut s = connect(&addr);
    let proxy = s.local_addr().unwrap();
    assert_eq!(
        send_and_read(&mut s, &v1("192.0.2.7:50312", "192.0.2.1:2")),
        b""
    );
    let line = d.wait_for(&["exec failed", "service=gone"]);
    assert_eq!(
        field(&line, "peer").as_deref(),
        Some("192.0.2.7:50312"),
        "{line}"
    );
    assert_eq!(field(&line, "proxy"), Some(proxy.to_string()), "{line}");
    let exit = d.wait_for(&["exit", "service=gone", "status=127"]);
    assert_eq!(
        field(&exit, "peer").as_deref(),
        Some("192.0.2.7:50312"),
        "{exit}"
    );
    assert_eq!(field(&exit, "proxy"), Some(proxy.to_string()), "{exit}");
}
