//! systemd's socket activation protocol both ways (superd.8 and
//! superd.yaml(5), SOCKET ACTIVATION): superd started by
//! `systemd-socket-activate` on inherited sockets, and superd starting
//! socket-activated programs (`pass: listen_fds`) — the probe, a Python
//! server and `systemd-socket-proxyd`.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::harness::*;

const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";
const PROXYD: &str = "/lib/systemd/systemd-socket-proxyd";

/// Whether `tool` is installed; prints why the test skips when not.
fn have(tool: &str) -> bool {
    let ok = Path::new(tool).exists();
    if !ok {
        eprintln!("skipped: {tool} is not installed (Debian package systemd)");
    }
    ok
}

fn activated_py() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/activated.py")
}

fn python3() -> bool {
    let ok = ["/usr/local/bin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join("python3").exists());
    if !ok {
        eprintln!("skipped: no python3 on the child's PATH");
    }
    ok
}

/// A port free on 127.0.0.1 for `udp` or TCP right now (the kernel's pick,
/// released at once): systemd-socket-activate needs one it can name.
fn free_port(udp: bool) -> u16 {
    if udp {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// The socket inode behind superd's fd `fd` (`socket:[N]`).
fn socket_inode(pid: i32, fd: i32) -> String {
    fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Connects, retrying while nothing listens yet (the activator binds
/// first, then logs).
fn connect_retry(addr: &str) -> TcpStream {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => {
                s.set_read_timeout(Some(DEADLINE)).unwrap();
                return s;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("connect {addr}: {e}"),
        }
    }
}

/// superd under `systemd-socket-activate ARGS… superd DIR -v`.
fn activate(dir: TempDir, args: &[&str]) -> Superd {
    let d = dir.path().to_str().unwrap().to_owned();
    let superd = superd_bin();
    let mut all: Vec<&str> = args.to_vec();
    all.extend([superd.to_str().unwrap(), &d, "-v"]);
    Superd::spawn_command(Command::new(ACTIVATE), dir, &all, &[])
}

/// TCP and unix stream sockets opened by systemd-socket-activate are
/// served as superd's own (`inherited=yes`), one with a name that picks
/// its service; a socket nothing matches is closed; a reload keeps them
/// (the same socket inode on the same fd), and the unix socket file,
/// which superd did not create, is left in place at shutdown.
#[test]
fn superd_serves_sockets_inherited_from_systemd_socket_activate() {
    if !have(ACTIVATE) {
        return;
    }
    let port = free_port(false);
    let named = free_port(false);
    let unused = free_port(false);
    let dir = TempDir::new("act");
    // Outside the config directory, which goes with superd.
    let keep = TempDir::new("actsock");
    let sock = keep.path().join("echo.sock");
    let yaml = format!(
        "services:\n  echo:\n    listen: 127.0.0.1:{port}\n    builtin: echo\n  \
         picked:\n    listen: 127.0.0.1:0\n    builtin: echo\n  \
         local:\n    listen: {}\n    builtin: echo\n",
        sock.display()
    );
    dir.write("a.yaml", &yaml);
    let (a, b, c) = (
        format!("127.0.0.1:{port}"),
        format!("127.0.0.1:{named}"),
        format!("127.0.0.1:{unused}"),
    );
    // --fdname names every socket after it: `picked` for the second one,
    // nothing for the third (the name `x` matches no service).
    let d = activate(
        dir,
        &[
            "-l",
            &a,
            "--fdname=echo:picked:x:local",
            "-l",
            &b,
            "-l",
            &c,
            "-l",
            sock.to_str().unwrap(),
        ],
    );
    // The activator execs superd at the first connection, which superd
    // then serves from the backlog it inherited.
    let mut first = connect_retry(&a);
    first.write_all(b"first\n").unwrap();
    let mut buf = [0u8; 6];
    first.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"first\n");
    for (service, addr) in [("echo", a.as_str()), ("picked", b.as_str())] {
        let line = d.wait_for(&["listening", &format!("service={service} ")]);
        assert!(line.contains("inherited=yes"), "{line}");
        assert!(line.contains(&format!("addr={addr} ")), "{line}");
    }
    let line = d.wait_for(&["listening", "service=local "]);
    assert!(line.contains("inherited=yes"), "{line}");
    let line = d.wait_for(&["inherited socket unused", "fd=5"]);
    assert!(line.contains(&format!("addr={c}")), "{line}");
    assert_eq!(exchange(&b, b"picked\n"), b"picked\n");
    let mut u = UnixStream::connect(&sock).unwrap();
    u.write_all(b"unix\n").unwrap();
    u.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    u.read_to_end(&mut out).unwrap();
    assert_eq!(out, b"unix\n");
    // Nothing listens on the unused socket any more.
    assert!(
        TcpStream::connect(&c).is_err(),
        "the unused socket was closed"
    );

    // The activator exec'd superd in its own process: the same pid.
    let pid = d.pid();
    let readable = fds_readable(pid, "the inherited sockets' inodes across a reload");
    let inodes = || -> Vec<String> {
        if readable {
            [3, 4, 6].iter().map(|&fd| socket_inode(pid, fd)).collect()
        } else {
            Vec::new()
        }
    };
    let before = inodes();
    assert!(
        before.iter().all(|s| s.starts_with("socket:[")),
        "{before:?}"
    );
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_for(&["reloaded"]);
    let after = inodes();
    assert_eq!(before, after, "a reload keeps the inherited sockets");
    assert_eq!(
        d.lines_with(&["listening", "service=echo "]).len(),
        1,
        "not bound again"
    );
    assert_eq!(exchange(&a, b"again\n"), b"again\n");
    let status = d.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        sock.exists(),
        "superd never unlinks a socket file it did not create"
    );
}

/// A UDP socket passed with --datagram is served by a UDP builtin, the
/// datagram that made the activator exec superd included.
#[test]
fn superd_serves_an_inherited_udp_socket() {
    if !have(ACTIVATE) {
        return;
    }
    let port = free_port(true);
    let dir = TempDir::new("actu");
    dir.write(
        "a.yaml",
        &format!("services:\n  uecho:\n    listen: 127.0.0.1:{port}\n    socket: dgram\n    builtin: echo\n"),
    );
    let addr = format!("127.0.0.1:{port}");
    let d = activate(dir, &["--datagram", "-l", &addr]);
    d.wait_for(&["Listening on", &addr]);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    c.send_to(b"ping", &addr).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    let line = d.wait_for(&["listening", "service=uecho "]);
    assert!(
        line.contains("inherited=yes") && line.contains("socket=dgram"),
        "{line}"
    );
    let readable = fds_readable(d.pid(), "the inherited socket's inode across a reload");
    let inode = || readable.then(|| socket_inode(d.pid(), 3));
    let before = inode();
    assert!(
        before.as_ref().is_none_or(|s| s.starts_with("socket:[")),
        "{before:?}"
    );
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_for(&["reloaded"]);
    assert_eq!(inode(), before, "a reload keeps it");
    c.send_to(b"pong", &addr).unwrap();
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"pong");
}

/// IPv6: `-l PORT` (a dual-stack `[::]` socket) is the service that says
/// `listen: PORT`, and `-l [::1]:PORT` the one that says so; a `v6only`
/// the inherited socket does not have is warned about, not applied.
#[test]
fn inherited_ipv6_and_dual_stack_sockets_match_their_services() {
    if !have(ACTIVATE) {
        return;
    }
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    let any = free_port(false);
    let one = TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new("act6");
    dir.write(
        "a.yaml",
        &format!(
            "services:\n  any:\n    listen: {any}\n    v6only: true\n    builtin: echo\n  \
             one:\n    listen: \"[::1]:{one}\"\n    builtin: echo\n"
        ),
    );
    let (a, b) = (any.to_string(), format!("[::1]:{one}"));
    let d = activate(dir, &["-l", &a, "-l", &b]);
    d.wait_for(&["Listening on", &b]);
    // The first connection, over IPv4 to the dual-stack socket, makes the
    // activator exec superd.
    assert_eq!(exchange(&format!("127.0.0.1:{any}"), b"v4\n"), b"v4\n");
    let line = d.wait_for(&["listening", "service=any "]);
    assert!(
        line.contains(&format!("addr=[::]:{any} ")) && line.contains("inherited=yes"),
        "{line}"
    );
    let line = d.wait_for(&["inherited socket option not applied", "service=any"]);
    assert!(
        line.contains("option=v6only configured=true socket=false"),
        "{line}"
    );
    let line = d.wait_for(&["listening", "service=one "]);
    assert!(line.contains("inherited=yes"), "{line}");
    assert_eq!(exchange(&format!("[::1]:{any}"), b"v6\n"), b"v6\n");
    assert_eq!(exchange(&b, b"one\n"), b"one\n");
    assert!(
        d.lines_with(&["inherited socket unused"]).is_empty(),
        "{}",
        d.log_text()
    );
}

/// An inherited fd that is not a socket (a pipe), and a socket of a family
/// superd does not serve (netlink), are logged and closed; the TCP socket
/// beside them is served. The test passes the fds itself, through
/// `sh -c 'LISTEN_PID=$$ exec superd …'` (the shell's pid is superd's).
#[test]
fn inherited_fds_superd_cannot_serve_are_closed_without_harm() {
    use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
    use std::os::unix::process::CommandExt;
    let (pipe_r, pipe_w) = nix::unistd::pipe().unwrap();
    let netlink = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::empty(),
        SockProtocol::NetlinkRoute,
    )
    .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap().to_string();
    let tcp: OwnedFd = tcp.into();
    let dir = TempDir::new("actbad");
    dir.write(
        "a.yaml",
        &format!("services:\n  echo:\n    listen: {addr}\n    builtin: echo\n"),
    );
    let d = dir.path().to_str().unwrap().to_owned();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\""])
        .arg(superd_bin())
        .args([&d, "-v"]);
    let fds = [pipe_r.as_raw_fd(), netlink.as_raw_fd(), tcp.as_raw_fd()];
    // SAFETY: dup2 is async-signal-safe; the sources stay open in the
    // parent until spawn returns. They are moved up to 1000 first so that no
    // dup2 onto 3, 4 or 5 closes a source still to be copied.
    unsafe {
        cmd.pre_exec(move || {
            for (i, fd) in fds.iter().enumerate() {
                if libc::dup2(*fd, 1000 + i as i32) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for i in 0..3 {
                if libc::dup2(1000 + i, 3 + i) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(1000 + i);
            }
            Ok(())
        });
    }
    let s = Superd::spawn_command(cmd, dir, &[], &[("LISTEN_FDS", "3")]);
    drop((pipe_r, netlink, tcp));
    let line = s.wait_for(&["inherited fd unused", "fd=3"]);
    assert!(line.contains("not a socket"), "{line}");
    let line = s.wait_for(&["inherited fd unused", "fd=4"]);
    assert!(line.contains("family"), "{line}");
    let line = s.wait_for(&["listening", "service=echo "]);
    assert!(line.contains("inherited=yes"), "{line}");
    s.wait_for(&["ready"]);
    // superd's copy of the pipe's read end is closed: writing fails.
    let mut w = fs::File::from(pipe_w);
    let e = w.write_all(b"x").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    assert_eq!(exchange(&addr, b"ok\n"), b"ok\n");
    assert!(s.stop().success());
}

/// A wait service with `pass: listen_fds` hands its child every socket,
/// in `listen:` order, on fds 3 … 3+n-1: blocking, not close-on-exec, of
/// the right types and addresses, with LISTEN_PID its own pid and the
/// names configured; fds 0-2 are /dev/null and the log, nothing else is
/// open. A nowait one gives its child the connection on fd 3.
#[test]
fn a_listen_fds_child_sees_exactly_its_sockets() {
    let dir = TempDir::new("lfd");
    let abs = format!("@superd-test-lfd-{}", std::process::id());
    let path = dir.path().join("lfd.sock");
    let yaml = format!(
        "services:\n  act:\n    listen: [\"127.0.0.1:0\", {{address: \"127.0.0.1:0\", socket: dgram}}, {}, {:?}]\n    \
         wait: true\n    pass: listen_fds\n    fd_names: [web, dns, local, abstract]\n    \
         exec: [{}, listen]\n    {u}\n  \
         conn:\n    listen: 127.0.0.1:0\n    pass: listen_fds\n    stderr: null\n    exec: [{}, fd3]\n    {u}\n",
        path.display(),
        abs,
        probe_bin().display(),
        probe_bin().display(),
        u = user_line()
    );
    dir.write("a.yaml", &yaml);
    let d = dir.path().to_str().unwrap().to_owned();
    let s = Superd::spawn(dir, &[&d, "-v"], &[]);
    let tcp = s.addr_n("act", 1);
    let udp = s.addr_n("act", 2);
    let r = report(&exchange(&tcp, b""));
    let pid = get(&r, "pid");
    assert_eq!(get(&r, "fds"), "0,1,2,3,4,5,6", "{r:?}");
    assert_eq!(get(&r, "kind.0"), "chr", "/dev/null");
    assert_eq!(
        get(&r, "kind.1"),
        "fifo",
        "the log pipe (stderr: log by default)"
    );
    assert_eq!(get(&r, "kind.2"), "fifo");
    for (fd, ty, addr) in [
        (3, "stream", tcp.as_str()),
        (4, "dgram", udp.as_str()),
        (5, "stream", path.to_str().unwrap()),
        (6, "stream", abs.as_str()),
    ] {
        assert_eq!(
            get(&r, &format!("fdinfo.{fd}")),
            format!("nonblock=0,cloexec=0,type={ty},addr={addr}"),
            "{r:?}"
        );
    }
    assert_eq!(get(&r, "env.LISTEN_FDS"), "4");
    assert_eq!(get(&r, "env.LISTEN_PID"), pid);
    assert_eq!(get(&r, "env.LISTEN_FDNAMES"), "web:dns:local:abstract");
    s.wait_for(&["exit", "service=act", &format!("pid={pid} "), "status=0"]);
    // Watched again after the child: the next datagram starts a new one.
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    c.send_to(b"hi", &udp).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = c.recv_from(&mut buf).unwrap();
    let r = report(&buf[..n]);
    assert_ne!(get(&r, "pid"), pid, "a new child");
    assert_eq!(get(&r, "env.LISTEN_PID"), get(&r, "pid"));

    let conn = s.addr("conn");
    let mut t = connect(&conn);
    let local = t.local_addr().unwrap();
    let mut out = Vec::new();
    t.read_to_end(&mut out).unwrap();
    let r = report(&out);
    assert_eq!(get(&r, "fds"), "0,1,2,3", "{r:?}");
    assert_eq!(get(&r, "kind.1"), "chr", "stderr: null");
    assert!(
        get(&r, "fdinfo.3").starts_with("nonblock=0,cloexec=0,type=stream,"),
        "{r:?}"
    );
    assert_eq!(get(&r, "env.LISTEN_FDS"), "1");
    assert_eq!(get(&r, "env.LISTEN_FDNAMES"), "connection");
    assert_eq!(get(&r, "env.LISTEN_PID"), get(&r, "pid"));
    assert_eq!(get(&r, "env.PROTO"), "TCP");
    assert_eq!(get(&r, "env.TCPREMOTEPORT"), local.port().to_string());
    assert_eq!(
        get(&r, "env.TCPLOCALPORT"),
        conn.rsplit(':').next().unwrap()
    );
}

/// A Python server written for socket activation (it checks LISTEN_PID)
/// serves every connection while it runs: superd starts no second child
/// (it does not watch the sockets meanwhile); once it exits, superd
/// watches again and the next connection starts a new one. With
/// `start: at_start` it runs before any connection, and again after it
/// exits.
#[test]
fn a_socket_activated_python_server_runs_under_superd() {
    if !python3() {
        return;
    }
    let py = activated_py();
    let yaml = format!(
        "services:\n  py:\n    listen: [\"127.0.0.1:0\", {{address: \"127.0.0.1:0\", socket: dgram}}]\n    \
         wait: true\n    pass: listen_fds\n    exec: [{}]\n    {u}\n  \
         early:\n    listen: 127.0.0.1:0\n    wait: true\n    pass: listen_fds\n    start: at_start\n    \
         fd_names: [first]\n    exec: [{}]\n    {u}\n",
        py.display(),
        py.display(),
        u = user_line()
    );
    let s = Superd::start(&yaml);
    let addr = s.addr("py");
    let ask = |addr: &str, line: &str| {
        let mut t = connect(addr);
        t.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut out = String::new();
        t.read_to_string(&mut out).unwrap();
        out
    };
    let a = ask(&addr, "one");
    assert!(a.contains("fds=2 names=py:py line=one"), "{a}");
    let b = ask(&addr, "two");
    assert_eq!(
        field(&format!(" {a}"), "pid"),
        field(&format!(" {b}"), "pid")
    );
    assert_eq!(
        s.lines_with(&["spawn", "service=py "]).len(),
        1,
        "{}",
        s.log_text()
    );
    // A reload while the child runs leaves its sockets to it.
    s.signal(nix::sys::signal::Signal::SIGHUP);
    s.wait_for(&["reloaded"]);
    let r = ask(&addr, "after-reload");
    assert_eq!(
        field(&format!(" {a}"), "pid"),
        field(&format!(" {r}"), "pid")
    );
    let q = ask(&addr, "quit");
    let pid = field(&format!(" {q}"), "pid").unwrap();
    s.wait_for(&["exit", "service=py", &format!("pid={pid} "), "status=0"]);
    let c = ask(&addr, "three");
    assert_ne!(field(&format!(" {c}"), "pid").unwrap(), pid, "{c}");
    assert_eq!(s.lines_with(&["spawn", "service=py "]).len(), 2);

    // at_start: started with no connection at all.
    s.wait_for(&["spawn", "service=early "]);
    let early = s.addr("early");
    let e = ask(&early, "quit");
    assert!(e.contains("names=first line=quit"), "{e}");
    s.wait_for(&["exit", "service=early", "status=0"]);
    let again = s.wait_nth(2, &["spawn", "service=early "]);
    // A shutdown ends the running child too: nothing is left behind.
    let pid = field(&again, "pid").unwrap();
    assert_eq!(s.stop().code(), Some(0));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the at_start child {pid} outlived superd"
    );
}

/// systemd-socket-proxyd, run by superd as a `pass: listen_fds` wait
/// child, forwards to another superd service (an echo on a unix socket)
/// end to end.
#[test]
fn systemd_socket_proxyd_forwards_to_another_service() {
    if !have(PROXYD) {
        return;
    }
    let dir = TempDir::new("proxyd");
    let target = dir.path().join("echo.sock");
    let yaml = format!(
        "services:\n  echo:\n    listen: {}\n    builtin: echo\n  \
         proxy:\n    listen: 127.0.0.1:0\n    wait: true\n    pass: listen_fds\n    \
         exec: [{PROXYD}, {}]\n    {u}\n",
        target.display(),
        target.display(),
        u = user_line()
    );
    dir.write("a.yaml", &yaml);
    let d = dir.path().to_str().unwrap().to_owned();
    let s = Superd::spawn(dir, &[&d, "-v"], &[]);
    let addr = s.addr("proxy");
    for word in ["through", "the proxy"] {
        let mut t = connect(&addr);
        t.write_all(format!("{word}\n").as_bytes()).unwrap();
        let mut buf = vec![0u8; word.len() + 1];
        t.read_exact(&mut buf).unwrap();
        assert_eq!(buf, format!("{word}\n").as_bytes());
    }
    // One proxy served both: superd did not watch its socket meanwhile.
    assert_eq!(s.lines_with(&["spawn", "service=proxy "]).len(), 1);
    // And the echo service saw the proxy's connections.
    s.wait_for(&["exit", "service=echo "]);
    // A SIGTERM, not the harness's SIGKILL: superd ends the proxy it
    // started, which would otherwise outlive the test.
    assert!(s.stop().success());
}

/// Each socket activation field is refused at load, with file:line:column,
/// where superd could not apply it.
#[test]
fn socket_activation_fields_are_refused_where_they_cannot_apply() {
    let u = user_line();
    let svc = |extra: &str, listen: &str| {
        format!("services:\n  s:\n    listen: {listen}\n    exec: /bin/cat\n    {u}\n{extra}")
    };
    let cases = [
        (
            svc(
                "    wait: true\n    pass: listen_fds\n    stderr: socket\n",
                "127.0.0.1:0",
            ),
            "8:13",
            "stderr: socket",
        ),
        (
            svc(
                "",
                "[\"127.0.0.1:0\", {address: \"127.0.0.1:0\", socket: dgram}]",
            ),
            "3:54",
            "needs wait: true",
        ),
        (
            svc(
                "    wait: true\n    pass: listen_fds\n    fd_names: [a, b]\n",
                "127.0.0.1:0",
            ),
            "8:16",
            "one per address",
        ),
        (
            svc(
                "    wait: true\n    pass: listen_fds\n    fd_names: [\"a:b\"]\n",
                "127.0.0.1:0",
            ),
            "8:16",
            "cannot contain ':'",
        ),
        (
            svc("    start: at_start\n", "127.0.0.1:0"),
            "6:12",
            "at_start needs wait",
        ),
    ];
    for (yaml, pos, msg) in cases {
        let dir = TempDir::new("lfdbad");
        let file = dir.write("bad.yaml", &yaml);
        let out = Command::new(superd_bin())
            .arg("--check")
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{yaml}\n{err}");
        let want = format!("{}:{pos}:", file.display());
        assert!(
            err.contains(&want) && err.contains(msg),
            "expected {want} and {msg:?} in:\n{err}\nfor:\n{yaml}"
        );
    }
}

/// `--check` binds nothing and adopts nothing: with LISTEN_PID and
/// LISTEN_FDS pointing at a socket, it only describes the configuration.
#[test]
fn check_adopts_nothing() {
    use std::os::unix::process::CommandExt;
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap().to_string();
    let dir = TempDir::new("actcheck");
    dir.write(
        "a.yaml",
        &format!("services:\n  echo:\n    listen: {addr}\n    builtin: echo\n"),
    );
    let fd = tcp.as_raw_fd();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\""])
        .arg(superd_bin())
        .args(["--check", dir.path().to_str().unwrap()])
        .stdin(Stdio::null());
    // SAFETY: dup2 is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("configuration OK: 1 service"), "{stdout}");
    assert!(
        !stderr.contains("inherited") && !stderr.contains("listening"),
        "{stderr}"
    );
}
