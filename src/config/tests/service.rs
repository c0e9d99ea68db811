//! One service validated: every field and default, the rules between fields, limits, access rules, address conflicts.

use super::*;

/// Limits a child could never be given are found at load, not at every
/// connection's exec: nofile above fs.nr_open, and (without root) a hard
/// limit above superd's own. `unlimited` nofile is the kernel's ceiling.
#[test]
fn rlimits_the_child_could_not_have() {
    let c = ok(&format!("{ECHO}    rlimits: {{nofile: unlimited}}\n"));
    let nofile = Rlimit {
        resource: RlimitResource::Nofile,
        soft: Some(1 << 20),
        hard: Some(1 << 20),
    };
    assert_eq!(c.services[0].rlimits, [nofile]);
    one(
        &format!("{ECHO}    rlimits:\n      core: 0\n      nofile: 2000000\n"),
        7,
        7,
        "rlimits: nofile 2000000 is above the kernel's maximum of 1048576 (fs.nr_open)",
    );
    // superd's own hard core limit is 0 in `user_ctx`.
    let d = tmpdir();
    let p = write(
        &d,
        "t.yaml",
        &format!("defaults:\n  rlimits: {{core: \"0:1\"}}\n{ECHO}    rlimits: {{nofile: 8}}\n"),
    );
    let e = load_as(&[p.clone()], &user_ctx()).expect_err("core above the own hard limit");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0].to_string(),
        format!(
            "{}:2:13: rlimits: core 1 is above superd's own hard limit of 0, which only CAP_SYS_RESOURCE can raise",
            p.display()
        )
    );
    // `unlimited` is as much as the child can have.
    let p = write(
        &d,
        "t.yaml",
        &format!("{ECHO}    rlimits: {{core: unlimited}}\n"),
    );
    let c = load_as(&[p], &user_ctx()).unwrap_or_else(|e| panic!("{e:?}"));
    let core = Rlimit {
        resource: RlimitResource::Core,
        soft: Some(0),
        hard: Some(0),
    };
    assert_eq!(c.services[0].rlimits, [core]);
    // With CAP_SYS_RESOURCE any hard limit can be raised.
    let c = ok(&format!("{ECHO}    rlimits: {{core: unlimited}}\n"));
    assert_eq!(c.services[0].rlimits[0].hard, None);
}

/// A cwd that does not exist is found at load, not by every connection's
/// chdir; under chroot it is looked for inside the jail.
#[test]
fn cwd_must_exist() {
    one(
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: nobody\n    cwd: /no/such/dir\n",
        6,
        10,
        "cwd /no/such/dir is not a directory",
    );
    ok("services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: nobody\n    cwd: /tmp\n");
    // A builtin has no child to change directory.
    ok(&format!("{ECHO}    cwd: /no/such/dir\n"));
}

#[test]
fn same_address_in_two_services() {
    let text = "services:\n  a:\n    listen: 7000\n    builtin: echo\n  b:\n    listen: \"127.0.0.1:7000\"\n    builtin: echo\n";
    let (p, e) = errs(text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].line, e[0].column), (Some(6), Some(13)));
    // Both services are named: the one whose address is reported, and the
    // one it conflicts with.
    assert!(
        e[0].message.contains(&format!(
            "service \"b\": address 127.0.0.1:7000 conflicts with *:7000 of service \"a\" ({}:2:3)",
            p.display()
        )),
        "{}",
        e[0]
    );
    // TCP and UDP do not conflict; disabled services do not either; port 0 never.
    ok(
        "services:\n  a:\n    listen: 7000\n    builtin: echo\n  b:\n    listen: 7000\n    socket: dgram\n    builtin: echo\n",
    );
    ok(
        "services:\n  a:\n    listen: 7000\n    builtin: echo\n  b:\n    listen: 7000\n    enabled: false\n    builtin: echo\n",
    );
    ok("services:\n  a:\n    listen: [0, 0]\n    builtin: echo\n");
    // Twice in one service.
    one(
        "services:\n  a:\n    listen: [\"/run/x.sock\", \"/run/x.sock\"]\n    builtin: echo\n",
        3,
        29,
        "of the same service",
    );
    // A service with another error still has its conflicts reported, in
    // the same run: both sides here have one.
    let (_, e) = errs(
        "services:\n  a:\n    listen: 7000\n    builtin: echo\n    wait: true\n  b:\n    listen: \"[::]:7000\"\n    builtin: echo\n    chroot: /nonexistent/superd\n",
    );
    let msgs: Vec<String> = e.iter().map(|e| e.message.clone()).collect();
    assert_eq!(e.len(), 3, "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("wait: true")), "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m.contains("not a directory")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("[::]:7000 conflicts with *:7000 of service \"a\"")),
        "{msgs:?}"
    );
}

#[test]
fn exec_not_found() {
    one(
        "services:\n  a:\n    listen: 1\n    exec: [/nonexistent/prog, -x]\n    user: nobody\n",
        4,
        12,
        "program /nonexistent/prog not found",
    );
    one(
        "services:\n  a:\n    listen: 1\n    exec: no-such-program-here\n    user: nobody\n",
        4,
        11,
        "program \"no-such-program-here\" not found in PATH",
    );
    // A relative path with a slash is relative to the file's directory.
    one(
        "services:\n  a:\n    listen: 1\n    exec: ./rel\n    user: nobody\n",
        4,
        11,
        "/rel not found",
    );
    let d = tmpdir();
    let prog = write(&d, "tool.sh", "#!/bin/sh\n");
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = write(
        &d,
        "t.yaml",
        "services:\n  a:\n    listen: 1\n    exec: [./tool.sh, x]\n    user: nobody\n",
    );
    let c = load_as(&[p], &root_ctx()).unwrap();
    match &c.services[0].program {
        Program::Exec { path, argv } => {
            assert_eq!(path, &std::fs::canonicalize(&d).unwrap().join("./tool.sh"));
            assert_eq!(argv, &["./tool.sh", "x"]);
        }
        other => panic!("{other:?}"),
    }
    // A bare name is found in PATH; argv[0] stays as written.
    let c = ok("services:\n  a:\n    listen: 1\n    exec: sh\n    user: nobody\n");
    match &c.services[0].program {
        Program::Exec { path, argv } => {
            assert!(path.is_absolute() && path.ends_with("sh"));
            assert_eq!(argv, &["sh"]);
        }
        p => panic!("{p:?}"),
    }
}

#[test]
fn exec_and_builtin() {
    one(
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    builtin: echo\n    user: nobody\n",
        5,
        5,
        "exec and builtin are exclusive",
    );
    one(
        "services:\n  a:\n    listen: 1\n    user: nobody\n",
        2,
        3,
        "needs exec or builtin",
    );
}

#[test]
fn every_default() {
    let c = ok("services:\n  echo:\n    listen: 7007\n    exec: /bin/cat\n    user: nobody\n");
    let s = &c.services[0];
    assert_eq!(s.listen, [Address::AnyPort(7007)]);
    assert_eq!(s.socket, SocketType::Stream);
    assert!(!s.wait);
    let cr = s.credentials.as_ref().unwrap();
    assert_eq!(cr.user, "nobody");
    assert_eq!(s.cwd, PathBuf::from("/"));
    assert_eq!(s.chroot, None);
    assert_eq!(s.umask, 0o022);
    assert_eq!(s.nice, None);
    assert!(s.env.is_empty());
    assert_eq!(s.stderr, StderrMode::Socket);
    assert_eq!(s.max_connections, 256);
    assert_eq!(s.max_per_source, None);
    assert_eq!(s.rate, None);
    assert!(s.only_from.is_none() && s.deny_from.is_empty());
    assert_eq!(s.timeout, None);
    assert_eq!(s.kill_grace, Duration::from_secs(5));
    assert_eq!(s.idle_timeout, Duration::from_secs(60));
    assert!(s.rlimits.is_empty());
    assert_eq!(s.backlog, 1024);
    assert!(!s.reuse_port && !s.v6only && !s.keepalive && !s.nodelay);
    assert_eq!(s.socket_mode, 0o666);
    assert_eq!((s.socket_user, s.socket_group), (None, None));
    assert!(s.enabled);
    // dgram waits by default.
    let c = ok(
        "services:\n  u:\n    listen: 7\n    socket: dgram\n    exec: /bin/cat\n    user: nobody\n",
    );
    assert!(c.services[0].wait);
}

/// A UDP builtin waits by default, as inetd's `daytime dgram udp wait
/// root internal` is written; it never forks, so `wait: false` (written,
/// or from defaults that also serve TCP exec services) changes nothing
/// and is accepted, as before.
#[test]
fn dgram_builtins_wait() {
    let b =
        "services:\n  d:\n    listen: 127.0.0.1:7013\n    socket: dgram\n    builtin: daytime\n";
    assert!(ok(b).services[0].wait);
    assert!(ok(&format!("{b}    wait: true\n")).services[0].wait);
    assert!(!ok(&format!("{b}    wait: false\n")).services[0].wait);
    let c = ok(&format!(
        "defaults:\n  wait: false\n{}",
        b.trim_start_matches("services:\n")
            .replace("  d:", "services:\n  d:")
    ));
    assert!(!c.services[0].wait);
}

#[test]
fn every_field() {
    let d = tmpdir();
    let chroot = d.join("jail");
    std::fs::create_dir_all(chroot.join("bin")).unwrap();
    std::fs::create_dir_all(chroot.join("tmp")).unwrap();
    std::fs::copy("/bin/cat", chroot.join("bin/cat")).unwrap();
    let text = format!(
        r#"defaults:
  env: {{A: "1", B: b}}
  rlimits: {{core: 0}}
services:
  full:
    listen: ["127.0.0.1:7008", "[::1]:7008", ":7009", "*:7010", "0.0.0.0:7011", "[::]:7012"]
    socket: stream
    wait: false
    exec: [/bin/cat, -u, 5]
    user: nobody
    group: root
    groups: [root, 0]
    cwd: /tmp
    chroot: {chroot}
    umask: "0027"
    nice: -5
    env: {{B: 2, C: true, D: "x y"}}
    stderr: log
    max_connections: 8
    max_per_source: 2
    rate: 10/m
    only_from: [10.0.0.1/8, "::ffff:192.168.1.1/120", "2001:db8::1/32"]
    deny_from: 10.1.2.3
    timeout: 1.5
    kill_grace: 500ms
    idle_timeout: 2m
    rlimits: {{nofile: 64, as: 1G, stack: "8M:unlimited", cpu: unlimited, nproc: "10:20"}}
    backlog: 16
    reuse_port: true
    v6only: true
    keepalive: true
    nodelay: true
    socket_mode: "0600"
    socket_user: nobody
    socket_group: 0
    enabled: false
  unix:
    listen: ["/run/superd-test.sock", "@abstract"]
    socket: seqpacket
    exec: cat
    user: root
"#,
        chroot = chroot.display()
    );
    let p = write(&d, "t.yaml", &text);
    let c = load_as(&[p.clone()], &root_ctx()).unwrap_or_else(|e| panic!("{e:?}"));
    let s = &c.services[0];
    let sa = |x: &str| Address::Inet(x.parse::<SocketAddr>().unwrap());
    assert_eq!(s.name, "full");
    assert_eq!(s.file, p);
    assert_eq!(
        s.listen,
        [
            sa("127.0.0.1:7008"),
            sa("[::1]:7008"),
            Address::AnyPort(7009),
            Address::AnyPort(7010),
            sa("0.0.0.0:7011"),
            sa("[::]:7012"),
        ]
    );
    assert!(!s.wait);
    assert_eq!(
        s.program,
        Program::Exec {
            path: "/bin/cat".into(),
            argv: vec!["/bin/cat".into(), "-u".into(), "5".into()]
        }
    );
    let cr = s.credentials.as_ref().unwrap();
    assert_eq!((cr.user.as_str(), cr.gid), ("nobody", 0));
    assert_eq!(cr.groups, [0, 0]);
    assert_eq!(s.cwd, PathBuf::from("/tmp"));
    assert_eq!(s.chroot.as_deref(), Some(chroot.as_path()));
    assert_eq!((s.umask, s.nice), (0o027, Some(-5)));
    let env: Vec<(&str, &str)> = s
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env, [("A", "1"), ("B", "2"), ("C", "true"), ("D", "x y")]);
    assert_eq!(s.stderr, StderrMode::Log);
    assert_eq!((s.max_connections, s.max_per_source), (8, Some(2)));
    assert_eq!(
        s.rate,
        Some(Rate {
            tokens: 10,
            per: Duration::from_secs(60)
        })
    );
    let nets: Vec<String> = s
        .only_from
        .iter()
        .flatten()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"]);
    assert_eq!(s.deny_from[0].to_string(), "10.1.2.3/32");
    assert_eq!(s.timeout, Some(Duration::from_millis(1500)));
    assert_eq!(s.kill_grace, Duration::from_millis(500));
    assert_eq!(s.idle_timeout, Duration::from_secs(120));
    let rl = |r, soft, hard| Rlimit {
        resource: r,
        soft,
        hard,
    };
    assert_eq!(
        s.rlimits,
        [
            rl(RlimitResource::Core, Some(0), Some(0)),
            rl(RlimitResource::Nofile, Some(64), Some(64)),
            rl(RlimitResource::As, Some(1 << 30), Some(1 << 30)),
            rl(RlimitResource::Stack, Some(8 << 20), None),
            rl(RlimitResource::Cpu, None, None),
            rl(RlimitResource::Nproc, Some(10), Some(20)),
        ]
    );
    assert_eq!(s.backlog, 16);
    assert!(s.reuse_port && s.v6only && s.keepalive && s.nodelay);
    assert_eq!(s.socket_mode, 0o600);
    assert_eq!((s.socket_user, s.socket_group), (Some(65534), Some(0)));
    assert!(!s.enabled);
    let u = &c.services[1];
    assert_eq!(
        u.listen,
        [
            Address::UnixPath("/run/superd-test.sock".into()),
            Address::UnixAbstract(b"abstract".to_vec())
        ]
    );
    assert_eq!(u.socket, SocketType::Seqpacket);
    assert_eq!(u.credentials.as_ref().unwrap().uid, 0);
}

#[test]
fn field_rules() {
    let b = "services:\n  a:\n    listen: 1\n";
    one(
        &format!("{b}    builtin: echo\n    wait: true\n"),
        5,
        5,
        "wait: true makes no sense for a builtin",
    );
    one(
        &format!("{b}    exec: /bin/cat\n    user: nobody\n    socket: seqpacket\n"),
        6,
        13,
        "seqpacket needs unix addresses",
    );
    one(
        "services:\n  a:\n    listen: /run/x\n    socket: dgram\n    builtin: echo\n",
        5,
        14,
        "builtin echo cannot serve unix dgram sockets",
    );
    one(
        "services:\n  a:\n    listen: \"@x\"\n    socket: seqpacket\n    builtin: echo\n",
        5,
        14,
        "builtin echo cannot serve seqpacket sockets",
    );
    one(
        "services:\n  a:\n    listen: 1\n    socket: dgram\n    wait: false\n    exec: /bin/cat\n    user: nobody\n",
        5,
        5,
        "dgram services need wait: true",
    );
    one(
        &format!("{b}    builtin: echo\n    nice: 20\n"),
        5,
        11,
        "nice 20 is out of range",
    );
    one(
        &format!("{b}    builtin: echo\n    rate: 0/s\n"),
        5,
        11,
        "bad rate \"0/s\"",
    );
    one(
        &format!("{b}    builtin: echo\n    timeout: 0\n"),
        5,
        5,
        "timeout must be longer than 0",
    );
    one(
        &format!("{b}    builtin: echo\n    rlimits: {{core: \"2:1\"}}\n"),
        5,
        21,
        "soft limit exceeds",
    );
    one(
        &format!("{b}    builtin: echo\n    rlimits: {{cores: 1}}\n"),
        5,
        15,
        "unknown rlimit \"cores\"",
    );
    one(
        &format!("{b}    builtin: echo\n    env: {{1A: x}}\n"),
        5,
        11,
        "bad variable name \"1A\"",
    );
    one(
        &format!("{b}    builtin: echo\n    cwd: tmp\n"),
        5,
        10,
        "expected an absolute path",
    );
    one(
        &format!("{b}    builtin: echo\n    only_from: [10.0.0.0/33]\n"),
        5,
        17,
        "prefix longer than 32",
    );
    one(
        &format!("{b}    builtin: lol\n"),
        4,
        14,
        "unknown builtin \"lol\", expected one of echo",
    );
    one(
        &format!("{b}    exec: \"/bin/c\\0at\"\n    user: nobody\n"),
        4,
        11,
        "NUL",
    );
    one(
        "services:\n  \"a b\":\n    listen: 1\n",
        2,
        3,
        "bad service name \"a b\"",
    );
    one(
        "services: {a: 1}\n---\nservices: {}\n",
        3,
        1,
        "a second YAML document",
    );
    one(
        "services: {a: {listen: 1, builtin: echo}\n",
        2,
        1,
        "did not find expected",
    );
}

/// `[::]` with `v6only: true` leaves IPv4 free: the split-stack pair is
/// no conflict; without v6only it is.
#[test]
fn v6only_wildcard_does_not_conflict_with_ipv4() {
    ok(
        "services:\n  a:\n    listen: [\"[::]:7600\", \"0.0.0.0:7600\"]\n    builtin: echo\n    v6only: true\n",
    );
    let (_, e) =
        errs("services:\n  a:\n    listen: [\"[::]:7601\", \"0.0.0.0:7601\"]\n    builtin: echo\n");
    assert!(!e.is_empty());
}

#[test]
fn access_rules_only_where_applied() {
    // TCP wait: the child accepts.
    one(
        "services:\n  a:\n    listen: 1\n    wait: true\n    exec: /bin/cat\n    user: nobody\n    deny_from: 10.0.0.0/8\n",
        7,
        16,
        "deny_from cannot be applied: a wait service's child accepts",
    );
    // A dgram wait service with an address of its own on TCP: the child
    // accepts there too.
    one(
        "services:\n  a:\n    listen: [127.0.0.1:53, {address: 127.0.0.1:53, socket: stream}]\n    socket: dgram\n    wait: true\n    pass: listen_fds\n    exec: /bin/cat\n    user: nobody\n    deny_from: 10.0.0.0/8\n",
        9,
        16,
        "deny_from cannot be applied: a wait service's child accepts",
    );
    // A UDP wait service: the head datagram is checked.
    ok(
        "services:\n  a:\n    listen: [127.0.0.1:53, {address: 127.0.0.1:54, socket: dgram}]\n    socket: dgram\n    wait: true\n    exec: /bin/cat\n    user: nobody\n    deny_from: 10.0.0.0/8\n",
    );
    // A unix socket has no IP peer.
    one(
        "services:\n  a:\n    listen: /run/x.sock\n    exec: /bin/cat\n    user: nobody\n    only_from: [127.0.0.1]\n",
        6,
        17,
        "only_from cannot be applied: a unix socket's peer",
    );
    // No per-source count for datagrams (UDP wait or builtin).
    one(
        "services:\n  a:\n    listen: 1\n    socket: dgram\n    exec: /bin/cat\n    user: nobody\n    max_per_source: 2\n",
        7,
        5,
        "max_per_source cannot be applied: datagrams",
    );
    one(
        "services:\n  a:\n    listen: 1\n    socket: dgram\n    builtin: echo\n    max_per_source: 2\n",
        6,
        5,
        "max_per_source cannot be applied",
    );
    // From defaults: the defaults line, naming the service.
    one(
        "defaults:\n  user: nobody\n  only_from: [127.0.0.1]\nservices:\n  tcpwait:\n    listen: 1\n    wait: true\n    exec: /bin/cat\n",
        3,
        15,
        "service \"tcpwait\": only_from (set in defaults) cannot be applied",
    );
    // Where they apply: nowait TCP, UDP wait (only_from/deny_from), UDP
    // builtins.
    ok(
        "defaults:\n  user: nobody\n  only_from: [127.0.0.1]\n  deny_from: [10.0.0.0/8]\nservices:\n  a:\n    listen: 1\n    exec: /bin/cat\n    max_per_source: 2\n  b:\n    listen: 2\n    socket: dgram\n    exec: /bin/cat\n  c:\n    listen: 3\n    socket: dgram\n    builtin: echo",
    );
    // An empty deny_from is no rule.
    ok(
        "services:\n  d:\n    listen: /run/d.sock\n    exec: /bin/cat\n    user: nobody\n    deny_from: []\n",
    );
}

#[test]
fn argv0_is_not_a_default() {
    one(
        "defaults:\n  argv0: x\nservices: {}\n",
        2,
        3,
        "argv0 cannot be set in defaults",
    );
}
