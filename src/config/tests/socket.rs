//! The PROXY protocol fields and socket activation (pass, fd_names, start).

use super::*;

/// `proxy_protocol`, `proxy_from`, `proxy_timeout` (superd.yaml(5), PROXY
/// PROTOCOL): parsed, defaulted, shown by `--check`.
#[test]
fn proxy_fields() {
    let c = ok(&format!(
        "{ECHO}    proxy_protocol: v2\n    proxy_from: [10.0.0.0/8, \"2001:db8::1\"]\n    proxy_timeout: 2s\n"
    ));
    let p = c.services[0].proxy.as_ref().expect("a proxy config");
    assert_eq!(p.accept, crate::proxy::Accept::V2);
    assert_eq!(
        p.from.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["10.0.0.0/8", "2001:db8::1/128"]
    );
    assert_eq!(p.timeout, Duration::from_secs(2));
    for (peer, trusted) in [
        ("10.1.2.3", true),
        ("::ffff:10.1.2.3", true),
        ("11.0.0.1", false),
        ("2001:db8::1", true),
        ("2001:db8::2", false),
    ] {
        assert_eq!(p.trusts(peer.parse().unwrap()), trusted, "{peer}");
    }
    let shown = crate::check::describe(&c);
    assert!(
        shown.contains(
            "  proxy: proxy_protocol=v2 proxy_from=[10.0.0.0/8,2001:db8::1/128] proxy_timeout=2s\n"
        ),
        "{shown}"
    );
    // The default timeout; every version; a builtin or an exec service.
    for v in ["v1", "v2", "any"] {
        let c = ok(&format!(
            "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: nobody\n    proxy_protocol: {v}\n    proxy_from: 127.0.0.1\n"
        ));
        let p = c.services[0].proxy.as_ref().unwrap();
        assert_eq!(p.accept.as_str(), v);
        assert_eq!(p.timeout, Duration::from_secs(5));
    }
    // Without the fields: no proxy, and --check says nothing of it.
    let c = ok(ECHO);
    assert_eq!(c.services[0].proxy, None);
    assert!(!crate::check::describe(&c).contains("proxy"));
    // From defaults: proxy_from and proxy_timeout wait for a service that
    // sets proxy_protocol; the others ignore them.
    let c = ok(&format!(
        "defaults:\n  proxy_from: [192.0.2.0/24]\n  proxy_timeout: 1s\n{ECHO}  lb:\n    listen: 127.0.0.1:7008\n    builtin: echo\n    proxy_protocol: any\n"
    ));
    assert_eq!(c.services[0].proxy, None);
    let p = c.services[1].proxy.as_ref().unwrap();
    assert_eq!(
        (p.accept, p.timeout),
        (crate::proxy::Accept::Any, Duration::from_secs(1))
    );
}

#[test]
fn proxy_field_rules() {
    let b = "services:\n  a:\n    listen: 127.0.0.1:0\n    builtin: echo\n";
    let from = "    proxy_from: 10.0.0.1\n";
    one(
        &format!("{b}    proxy_protocol: v2\n"),
        5,
        21,
        "proxy_protocol needs proxy_from",
    );
    one(
        &format!("{b}    proxy_protocol: v2\n    proxy_from: []\n"),
        6,
        5,
        "proxy_from is empty",
    );
    one(
        "services:\n  a:\n    listen: 127.0.0.1:0\n    socket: dgram\n    builtin: echo\n    proxy_protocol: v1\n    proxy_from: 10.0.0.1\n",
        6,
        21,
        "proxy_protocol needs a stream service",
    );
    one(
        "services:\n  a:\n    listen: /run/superd-proxy.sock\n    builtin: echo\n    proxy_protocol: v1\n    proxy_from: 10.0.0.1\n",
        5,
        21,
        "proxy_protocol needs TCP addresses",
    );
    one(
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: nobody\n    wait: true\n    proxy_protocol: v1\n    proxy_from: 10.0.0.1\n",
        6,
        5,
        "proxy_protocol needs wait: false",
    );
    one(
        &format!("{b}    proxy_protocol: v2\n{from}    proxy_timeout: 0\n"),
        7,
        5,
        "proxy_timeout must be longer than 0",
    );
    one(
        &format!("{b}    proxy_protocol: v2\n{from}    proxy_timeout: soon\n"),
        7,
        20,
        "bad duration \"soon\"",
    );
    one(
        &format!("{b}    proxy_protocol: v3\n{from}"),
        5,
        21,
        "unknown PROXY protocol version \"v3\", expected one of v1, v2, any",
    );
    one(
        &format!("{b}    proxy_protocol: v2\n    proxy_from: 10.0.0.0/40\n"),
        6,
        17,
        "prefix longer than 32",
    );
    one(
        &format!("{b}{from}"),
        5,
        5,
        "proxy_from has no effect without proxy_protocol",
    );
    one(
        &format!("{b}    proxy_timeout: 3s\n"),
        5,
        5,
        "proxy_timeout has no effect without proxy_protocol",
    );
    // Inherited from defaults, the error points at defaults' value.
    one(
        "defaults:\n  proxy_protocol: v2\n  proxy_from: 10.0.0.1\nservices:\n  a:\n    listen: 127.0.0.1:0\n    socket: dgram\n    builtin: echo\n",
        2,
        19,
        "proxy_protocol needs a stream service",
    );
}

/// Until the event loop reads PROXY headers, a configuration using them is
/// refused, by `--check` and the daemon alike, at the field.
#[test]
fn proxy_protocol_is_refused_while_not_served() {
    let d = tmpdir();
    let p = write(
        &d,
        "t.yaml",
        &format!("{ECHO}    proxy_protocol: v2\n    proxy_from: 10.0.0.1\n"),
    );
    let mut ctx = root_ctx();
    ctx.proxy_served = false;
    let e = load_as(&[p.clone()], &ctx).expect_err("not served yet");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0].to_string(),
        format!(
            "{}:5:21: proxy_protocol is not yet supported by this build: superd does not read PROXY headers yet",
            p.display()
        )
    );
    // What this build ships with.
    assert_eq!(Context::current().proxy_served, crate::proxy::PROXY_SERVED);
    // A configuration without it is unaffected.
    let p = write(&d, "u.yaml", ECHO);
    assert!(load_as(&[p], &ctx).is_ok());
}

/// Socket activation fields (superd.yaml(5), SOCKET ACTIVATION): what they
/// load into, and each refusal at its place.
#[test]
fn socket_activation_fields() {
    let c = ok(
        "services:\n  dns:\n    listen: [{address: \"127.0.0.1:53\", socket: dgram}, \"127.0.0.1:53\"]\n    wait: true\n    pass: listen_fds\n    fd_names: [udp, tcp]\n    start: at_start\n    exec: /bin/cat\n    user: nobody\n",
    );
    let s = &c.services[0];
    assert_eq!(s.pass, PassMode::ListenFds);
    assert_eq!(s.start, StartMode::AtStart);
    assert_eq!(s.fd_names, ["udp", "tcp"]);
    assert_eq!(
        (s.socket_at(0), s.socket_at(1)),
        (SocketType::Dgram, SocketType::Stream)
    );
    assert_eq!(s.listener_key_at(0).socket, SocketType::Dgram);
    assert_eq!(s.fd_name(1), "tcp");
    // listen_fds sends stdout and stderr to the log unless told otherwise.
    assert_eq!(s.stderr, StderrMode::Log);
    // One UDP and one TCP socket on the same port do not conflict.
    let c = ok(
        "services:\n  n:\n    listen: 127.0.0.1:7000\n    wait: true\n    pass: listen_fds\n    exec: /bin/cat\n    user: nobody\n",
    );
    assert_eq!(c.services[0].fd_name(0), "n");

    let base = "services:\n  s:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    user: nobody\n";
    one(
        &format!("{base}    wait: true\n    pass: listen_fds\n    stderr: socket\n"),
        8,
        13,
        "stderr: socket",
    );
    one(
        &format!("{base}    pass: listen_fds\n    fd_names: [a]\n"),
        7,
        16,
        "needs wait: true",
    );
    one(
        &format!("{base}    wait: true\n    pass: listen_fds\n    fd_names: [a, b]\n"),
        8,
        16,
        "one per address",
    );
    one(
        &format!("{base}    wait: true\n    pass: listen_fds\n    fd_names: [\"a:b\"]\n"),
        8,
        16,
        "':'",
    );
    one(
        &format!("{base}    fd_names: [a]\n"),
        6,
        16,
        "needs pass: listen_fds",
    );
    one(
        &format!("{base}    start: at_start\n"),
        6,
        12,
        "at_start needs wait",
    );
    one(
        &format!("{base}    wait: true\n    pass: listen_fds\n    env: {{LISTEN_PID: 1}}\n"),
        8,
        11,
        "LISTEN_PID",
    );
    one(
        "services:\n  s:\n    listen: 127.0.0.1:0\n    builtin: echo\n    pass: listen_fds\n",
        5,
        11,
        "needs exec",
    );
    one(
        "services:\n  s:\n    listen: [{address: \"127.0.0.1:0\", socket: dgram}]\n    exec: /bin/cat\n    user: nobody\n",
        3,
        39,
        "needs wait: true",
    );
    one(
        "services:\n  s:\n    listen: [{address: \"127.0.0.1:0\", port: 1}]\n    exec: /bin/cat\n    user: nobody\n",
        3,
        14,
        "unknown field",
    );
    one(
        "services:\n  s:\n    listen: [{socket: dgram}]\n    wait: true\n    exec: /bin/cat\n    user: nobody\n",
        3,
        14,
        "needs address",
    );
}
