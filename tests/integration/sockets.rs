//! Listeners of every kind (superd.yaml(5), ADDRESSES and wait): TCP and UDP
//! over IPv4, IPv6 and dual stack; unix stream, dgram and seqpacket by path
//! and abstract name; wait mode.

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixDatagram, UnixStream};

use crate::harness::*;

fn has_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[test]
fn tcp_wait_mode_hands_the_listening_socket_to_one_child() {
    let d = Superd::start(&format!(
        "services:\n  w:\n    listen: 127.0.0.1:0\n    wait: true\n    exec: [{}, accept]\n    {}\n",
        probe_bin().display(),
        user_line()
    ));
    let addr = d.addr("w");
    for round in 1..=2 {
        let mut s = connect(&addr);
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let r = report(&out);
        // The child got the listening socket itself, blocking, on 0-2.
        assert_eq!(get(&r, "nonblock.0"), "0");
        assert_eq!(get(&r, "same_socket_012"), "1");
        assert!(
            get(&r, "peer").starts_with("error:"),
            "fd 0 is not connected"
        );
        assert!(
            !r.iter().any(|(k, _)| k == "env.PROTO"),
            "no connection variables in wait mode"
        );
        // superd resumes watching once the child is gone.
        d.wait_nth(round, &["exit", "service=w"]);
    }
}

#[test]
fn udp_wait_mode_serves_datagrams_one_child_at_a_time() {
    let d = Superd::start(&format!(
        "services:\n  u:\n    listen: 127.0.0.1:0\n    socket: dgram\n    exec: [{}, udp]\n    {}\n",
        probe_bin().display(),
        user_line()
    ));
    let addr = d.addr("u");
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    for round in 1..=2 {
        c.send_to(b"ping", &addr).unwrap();
        let mut buf = [0u8; 65536];
        let (n, _) = c.recv_from(&mut buf).unwrap();
        let r = report(&buf[..n]);
        assert_eq!(get(&r, "nonblock.0"), "0");
        assert_eq!(get(&r, "kind.0"), "sock");
        assert_eq!(get(&r, "udp.request"), "ping");
        d.wait_nth(round, &["exit", "service=u"]);
    }
}

#[test]
fn unix_stream_socket_with_peer_credentials_and_cleanup() {
    let dir = TempDir::new("unix");
    let sock = dir.path().join("s.sock");
    let d = Superd::start(&format!(
        "services:\n  us:\n    listen: {}\n    exec: {}\n    socket_mode: \"0600\"\n    {}\n",
        sock.display(),
        probe_bin().display(),
        user_line()
    ));
    d.wait_for(&["listening", "service=us"]);
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let r = report(&out);
    assert_eq!(get(&r, "env.PROTO"), "UNIX");
    assert_eq!(get(&r, "env.UNIXREMOTEPID"), std::process::id().to_string());
    assert_eq!(
        get(&r, "env.UNIXREMOTEEUID"),
        nix::unistd::geteuid().to_string()
    );
    assert_eq!(
        get(&r, "env.UNIXREMOTEEGID"),
        nix::unistd::getegid().to_string()
    );
    assert_eq!(get(&r, "peer"), "unix");
    assert_eq!(d.stop().code(), Some(0));
    assert!(!sock.exists(), "socket file removed at exit");
}

#[test]
fn abstract_and_seqpacket_and_unix_dgram() {
    let dir = TempDir::new("unix2");
    let name = format!("superd-test-{}", std::process::id());
    let seq = dir.path().join("seq.sock");
    let dg = dir.path().join("dg.sock");
    let d = Superd::start(&format!(
        "services:\n  abs:\n    listen: \"@{name}\"\n    builtin: echo\n  seq:\n    listen: {}\n    socket: seqpacket\n    exec: {}\n    {u}\n  udg:\n    listen: {}\n    socket: dgram\n    exec: [{}, udp]\n    {u}\n",
        seq.display(),
        probe_bin().display(),
        dg.display(),
        probe_bin().display(),
        u = user_line()
    ));
    d.wait_for(&["listening", "service=udg"]);
    // Abstract name: connect through the Linux abstract namespace.
    use std::os::linux::net::SocketAddrExt;
    let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let mut s = UnixStream::connect_addr(&a).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"abstract\n").unwrap();
    let mut buf = [0u8; 9];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"abstract\n");
    // Seqpacket: a child per connection.
    let fd = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        nix::sys::socket::SockFlag::empty(),
        None,
    )
    .unwrap();
    use std::os::fd::AsRawFd;
    nix::sys::socket::connect(
        fd.as_raw_fd(),
        &nix::sys::socket::UnixAddr::new(&seq).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = nix::unistd::read(fd.as_raw_fd(), &mut chunk).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    let r = report(&out);
    assert_eq!(get(&r, "env.PROTO"), "UNIX");
    // Unix datagram in wait mode.
    let client_path = dir.path().join("client.sock");
    let c = UnixDatagram::bind(&client_path).unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    c.send_to(b"hi", &dg).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = c.recv(&mut buf).unwrap();
    assert_eq!(get(&report(&buf[..n]), "udp.request"), "hi");
}

#[test]
fn stale_socket_file_is_replaced_and_other_files_are_refused() {
    let dir = TempDir::new("stale");
    let stale = dir.path().join("stale.sock");
    {
        // A socket file nobody accepts on.
        let l = std::os::unix::net::UnixListener::bind(&stale).unwrap();
        drop(l);
    }
    assert!(stale.exists());
    let d = Superd::start(&format!(
        "services:\n  s:\n    listen: {}\n    builtin: echo\n",
        stale.display()
    ));
    d.wait_for(&["listening", "service=s"]);
    let mut s = UnixStream::connect(&stale).unwrap();
    s.write_all(b"x").unwrap();
    drop(d);

    let regular = dir.path().join("regular");
    std::fs::write(&regular, "precious").unwrap();
    let conf = TempDir::new("stale2");
    conf.write(
        "t.yaml",
        &format!(
            "services:\n  s:\n    listen: {}\n    builtin: echo\n",
            regular.display()
        ),
    );
    let p = conf.path().to_str().unwrap().to_string();
    let mut d = Superd::spawn(conf, &[&p], &[]);
    let status = d.wait_exit();
    assert_eq!(status.code(), Some(1));
    assert!(
        d.log_text().contains(&regular.display().to_string()),
        "{}",
        d.log_text()
    );
    assert_eq!(std::fs::read_to_string(&regular).unwrap(), "precious");
}

#[test]
fn an_address_that_cannot_be_bound_exits_1_with_nothing_half_started() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let dir = TempDir::new("held");
    let sock = dir.path().join("first.sock");
    dir.write(
        "t.yaml",
        &format!(
            "services:\n  a:\n    listen: {}\n    builtin: echo\n  b:\n    listen: 127.0.0.1:{port}\n    builtin: echo\n",
            sock.display()
        ),
    );
    let p = dir.path().to_str().unwrap().to_string();
    let mut d = Superd::spawn(dir, &[&p], &[]);
    assert_eq!(d.wait_exit().code(), Some(1));
    assert!(
        d.log_text().contains(&format!("127.0.0.1:{port}")),
        "{}",
        d.log_text()
    );
    assert!(!sock.exists(), "the unix socket bound first was removed");
}

#[test]
fn ipv6_and_dual_stack() {
    if !has_ipv6() {
        skip("no IPv6 on this host");
        return;
    }
    let d = Superd::start(&format!(
        "services:\n  v6:\n    listen: \"[::1]:0\"\n    exec: {p}\n    {u}\n  dual:\n    listen: \"[::]:0\"\n    exec: {p}\n    {u}\n",
        p = probe_bin().display(),
        u = user_line()
    ));
    let r = report(&exchange(&d.addr("v6"), b""));
    assert_eq!(get(&r, "env.TCPREMOTEIP"), "::1");
    assert_eq!(get(&r, "env.TCPLOCALIP"), "::1");
    let port = d.port("dual");
    // A v4 client on the dual-stack socket is shown as plain IPv4.
    let r = report(&exchange(&format!("127.0.0.1:{port}"), b""));
    assert_eq!(get(&r, "env.TCPREMOTEIP"), "127.0.0.1");
    assert_eq!(get(&r, "env.REMOTE_ADDR"), "127.0.0.1");
    assert_eq!(get(&r, "env.TCPLOCALIP"), "127.0.0.1");
    let line = d.wait_for(&["exit", "service=dual", "peer=127.0.0.1:"]);
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    let r = report(&exchange(&format!("[::1]:{port}"), b""));
    assert_eq!(get(&r, "env.TCPREMOTEIP"), "::1");
    // v6only leaves IPv4 alone: with the test holding 127.0.0.1:PORT,
    // superd still binds [::]:PORT (a dual-stack socket could not) and
    // serves on it. The port is the test's own from the start: a port
    // superd picked could meanwhile be any other socket's on 127.0.0.1.
    let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = v4.local_addr().unwrap().port();
    let only = Superd::start(&format!(
        "services:\n  v6only:\n    listen: \"[::]:{port}\"\n    v6only: true\n    builtin: echo\n"
    ));
    assert_eq!(exchange(&only.addr("v6only"), b"six\n"), b"six\n");
    drop(v4);
    let dual = d.port("dual");
    let err = std::net::TcpListener::bind(("127.0.0.1", dual)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}

#[test]
fn keepalive_and_nodelay_reach_the_accepted_socket() {
    let d = Superd::start(&format!(
        "services:\n  on:\n    listen: 127.0.0.1:0\n    exec: {p}\n    keepalive: true\n    nodelay: true\n    {u}\n  off:\n    listen: 127.0.0.1:0\n    exec: {p}\n    {u}\n",
        p = probe_bin().display(),
        u = user_line()
    ));
    let r = report(&exchange(&d.addr("on"), b""));
    assert_eq!(get(&r, "sockopt.keepalive"), "1");
    assert_eq!(get(&r, "sockopt.nodelay"), "1");
    let r = report(&exchange(&d.addr("off"), b""));
    assert_eq!(get(&r, "sockopt.keepalive"), "0");
    assert_eq!(get(&r, "sockopt.nodelay"), "0");
}

/// Binds 127.0.0.1:`port` with SO_REUSEPORT set.
fn bind_reuseport(port: u16) -> nix::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port))?;
    nix::sys::socket::listen(&fd, nix::sys::socket::Backlog::new(8)?)?;
    Ok(fd)
}

#[test]
fn reuse_port_lets_a_second_listener_share_the_port() {
    let d = Superd::start(
        "services:\n  shared:\n    listen: 127.0.0.1:0\n    builtin: echo\n    reuse_port: true\n  alone:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
    );
    // Only a socket with SO_REUSEPORT (same owner) lets another bind its
    // port: that is how a second superd or a hot spare shares it.
    assert!(bind_reuseport(d.port("shared")).is_ok());
    assert_eq!(
        bind_reuseport(d.port("alone")).unwrap_err(),
        nix::errno::Errno::EADDRINUSE
    );
}

#[test]
fn socket_user_and_group_own_the_unix_socket_file() {
    if !is_root() {
        skip("chown of the socket file needs root");
        return;
    }
    let dir = TempDir::new("sockown");
    let sock = dir.path().join("own.sock");
    let d = Superd::start(&format!(
        "services:\n  own:\n    listen: {}\n    builtin: echo\n    socket_user: nobody\n    socket_group: daemon\n    socket_mode: \"0660\"\n",
        sock.display()
    ));
    d.wait_for(&["listening", "service=own"]);
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert_eq!(meta.uid(), 65534);
    assert_eq!(meta.gid(), 1);
    assert_eq!(meta.mode() & 0o777, 0o660);
}

#[test]
fn chroot_puts_the_child_in_the_jail() {
    if !is_root() {
        skip("chroot needs root");
        return;
    }
    // A jail holding the probe and the shared libraries it needs.
    let jail = TempDir::new("jail");
    let probe = probe_bin();
    let out = std::process::Command::new("ldd").arg(&probe).output();
    let Ok(out) = out else {
        skip("no ldd to find the probe's libraries");
        return;
    };
    let copy_in = |src: &std::path::Path| {
        let dst = jail.path().join(src.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(src, &dst).unwrap();
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(std::path::PathBuf::from);
        if let Some(p) = path {
            copy_in(&p);
        }
    }
    std::fs::create_dir_all(jail.path().join("bin")).unwrap();
    std::fs::copy(&probe, jail.path().join("bin/probe")).unwrap();
    std::fs::create_dir_all(jail.path().join("work")).unwrap();
    let d = Superd::start(&format!(
        "services:\n  jailed:\n    listen: 127.0.0.1:0\n    exec: /bin/probe\n    chroot: {}\n    cwd: /work\n    user: nobody\n",
        jail.path().display()
    ));
    let r = report(&exchange(&d.addr("jailed"), b""));
    // Inside the jail: cwd is /work there, and the host's files are gone.
    assert_eq!(get(&r, "cwd"), "/work");
    assert_eq!(get(&r, "uid"), "65534");
    // No /proc in the jail: the probe cannot even list its fds there.
    assert_eq!(get(&r, "fds"), "");
    assert!(get(&r, "peer").starts_with("127.0.0.1:"), "{r:?}");
}

#[test]
fn backlog_is_the_listen_queue_length() {
    let d = Superd::start(
        "services:\n  b:\n    listen: 127.0.0.1:0\n    builtin: echo\n    backlog: 17\n",
    );
    let port = d.port("b");
    let Ok(out) = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
    else {
        skip("no ss(8) to read the listen queue length");
        return;
    };
    // For a listening socket, ss shows the backlog as Send-Q.
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no listener in ss output"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[0], "LISTEN", "{line}");
    assert_eq!(cols[2], "17", "{line}");
}
