//! Unit tests of the service description.

use super::*;
use nix::sys::signal::Signal;

#[test]
fn success_status_always_has_zero_and_adds_the_list() {
    let d = SuccessStatus::default();
    assert!(d.has_status(0));
    assert!(!d.has_status(255) && !d.has_status(-1) && !d.has_status(256));
    assert!(!d.has_signal(Signal::SIGPIPE));
    assert_eq!(d.to_string(), "0");
    let s = SuccessStatus::new(&[
        ExitMatch::Signal(Signal::SIGPIPE),
        ExitMatch::Status(255),
        ExitMatch::Status(64),
        ExitMatch::Status(63),
        ExitMatch::Signal(Signal::SIGHUP),
    ]);
    for n in [0, 63, 64, 255] {
        assert!(s.has_status(n), "{n}");
    }
    for n in [1, 62, 65, 127, 254, 256, 0x1ff] {
        assert!(!s.has_status(n), "{n}");
    }
    assert!(s.has_signal(Signal::SIGPIPE) && s.has_signal(Signal::SIGHUP));
    assert!(!s.has_signal(Signal::SIGKILL) && !s.has_signal(Signal::SIGTERM));
    assert_eq!(s.to_string(), "0,63,64,255,SIGHUP,SIGPIPE");
    assert_eq!(SuccessStatus::new(&[ExitMatch::Status(0)]), d);
}

#[test]
fn changed_fields_names_what_a_reload_changes() {
    let a = Service::new(
        "a".into(),
        "/x.yaml".into(),
        Program::Builtin(Builtin::Echo),
    );
    assert!(a.changed_fields(&a.clone()).is_empty());
    let mut b = a.clone();
    b.program = Program::Exec {
        path: "/bin/cat".into(),
        argv: vec!["cat".into()],
    };
    b.max_connections = 3;
    b.success_status = SuccessStatus::new(&[ExitMatch::Status(1)]);
    b.file = "/y.yaml".into();
    b.credentials = Some(Credentials {
        user: "nobody".into(),
        uid: 65534,
        gid: 65534,
        groups: vec![],
        home: "/".into(),
        shell: "/bin/sh".into(),
    });
    assert_eq!(
        a.changed_fields(&b),
        [
            "file",
            "exec",
            "user",
            "group",
            "groups",
            "max_connections",
            "success_status"
        ]
    );
    let mut c = b.clone();
    c.credentials.as_mut().unwrap().groups = vec![1];
    c.program = Program::Builtin(Builtin::Echo);
    assert_eq!(b.changed_fields(&c), ["builtin", "groups"]);
}

#[test]
fn changed_fields_name_each_fence_and_proxy_field() {
    let a = Service::new(
        "a".into(),
        "/x.yaml".into(),
        Program::Builtin(Builtin::Echo),
    );
    let mut b = a.clone();
    b.fences.private_network = true;
    b.fences.read_only_paths = vec!["/".into()];
    b.fences.capabilities = vec![10];
    assert_eq!(
        a.changed_fields(&b),
        ["private_network", "read_only_paths", "capabilities"]
    );
    let mut c = b.clone();
    c.fences.no_new_privs = true;
    c.fences.private_tmp = true;
    c.fences.writable_paths = vec!["/tmp".into()];
    c.fences.inaccessible_paths = vec!["/root".into()];
    assert_eq!(
        b.changed_fields(&c),
        [
            "no_new_privs",
            "private_tmp",
            "writable_paths",
            "inaccessible_paths"
        ]
    );
    let proxy = ProxyConfig {
        accept: crate::proxy::Accept::Any,
        from: vec![],
        timeout: ProxyConfig::DEFAULT_TIMEOUT,
    };
    let mut d = a.clone();
    d.proxy = Some(proxy.clone());
    assert_eq!(
        a.changed_fields(&d),
        ["proxy_protocol", "proxy_from", "proxy_timeout"]
    );
    let mut e = d.clone();
    e.proxy.as_mut().unwrap().timeout = Duration::from_secs(1);
    assert_eq!(d.changed_fields(&e), ["proxy_timeout"]);
    let mut f = a.clone();
    f.listen = vec![Address::UnixPath("/run/x.sock".into())];
    f.listen_sockets = vec![Some(SocketType::Dgram)];
    assert_eq!(a.changed_fields(&f), ["listen"]);
    let mut g = a.clone();
    g.listen_sockets = vec![Some(SocketType::Dgram)];
    assert_eq!(a.changed_fields(&g), ["listen"]);
}
