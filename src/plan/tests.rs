//! Unit tests of the spawn plan: the environment in order and without
//! duplicates, argv and path, credentials, rlimits, socket activation.

use super::*;
use crate::service::{Credentials, Rlimit};
use std::path::PathBuf;

fn service() -> Service {
    Service {
        credentials: Some(Credentials {
            user: "nobody".into(),
            uid: 65534,
            gid: 65534,
            groups: vec![65534, 100],
            home: PathBuf::from("/nonexistent"),
            shell: PathBuf::from("/usr/sbin/nologin"),
        }),
        ..Service::new(
            "hello".into(),
            PathBuf::from("/etc/superd/services.d/hello.yaml"),
            Program::Exec {
                path: PathBuf::from("/usr/bin/hello"),
                argv: vec!["hello".into(), "--greeting".into(), "hi".into()],
            },
        )
    }
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn tcp(remote: &str, local: &str) -> ConnInfo<'static> {
    ConnInfo::Tcp {
        remote: remote.parse().unwrap(),
        local: local.parse().unwrap(),
    }
}

#[test]
fn default_env_then_tcp_vars_in_order() {
    let plan = SpawnPlan::new(&service());
    let env = plan.env_pairs(&tcp("192.0.2.7:50312", "127.0.0.1:7008"));
    assert_eq!(
        env,
        pairs(&[
            ("PATH", PATH_USER),
            ("HOME", "/nonexistent"),
            ("USER", "nobody"),
            ("LOGNAME", "nobody"),
            ("SHELL", "/usr/sbin/nologin"),
            ("SUPERD_SERVICE", "hello"),
            ("PROTO", "TCP"),
            ("TCPREMOTEIP", "192.0.2.7"),
            ("TCPREMOTEPORT", "50312"),
            ("TCPLOCALIP", "127.0.0.1"),
            ("TCPLOCALPORT", "7008"),
            ("REMOTE_ADDR", "192.0.2.7"),
            ("REMOTE_PORT", "50312"),
        ])
    );
}

/// Behind a proxy: the header's endpoints as the connection variables,
/// then its own variables, and `env:` still wins over any of them.
#[test]
fn proxied_vars_follow_the_tcp_vars_and_env_overrides_them() {
    assert_eq!(CONN_VARS[PROXY_VARS_AT..], crate::proxy::PROXY_VARS);
    let proxy = vec![
        ("PROXY_PROTOCOL", "2".to_owned()),
        ("TCPPROXYIP", "127.0.0.1".to_owned()),
        ("TCPPROXYPORT", "40000".to_owned()),
        ("PROXY_ALPN", "h2".to_owned()),
    ];
    let conn = ConnInfo::TcpProxied {
        remote: "192.0.2.7:50312".parse().unwrap(),
        local: "198.51.100.1:443".parse().unwrap(),
        proxy: &proxy,
    };
    let mut s = service();
    s.env = vec![("PROXY_ALPN".into(), "mine".into())];
    let plan = SpawnPlan::new(&s);
    let env = plan.env_pairs(&conn);
    assert_eq!(
        env[6..],
        pairs(&[
            ("PROTO", "TCP"),
            ("TCPREMOTEIP", "192.0.2.7"),
            ("TCPREMOTEPORT", "50312"),
            ("TCPLOCALIP", "198.51.100.1"),
            ("TCPLOCALPORT", "443"),
            ("REMOTE_ADDR", "192.0.2.7"),
            ("REMOTE_PORT", "50312"),
            ("PROXY_PROTOCOL", "2"),
            ("TCPPROXYIP", "127.0.0.1"),
            ("TCPPROXYPORT", "40000"),
            ("PROXY_ALPN", "mine"),
        ])
    );
    assert_eq!(plan.envp_for(&conn).len(), env.len());
}

#[test]
fn env_overrides_defaults_and_conn_vars_without_duplicates() {
    let mut s = service();
    s.env = vec![
        ("LANG".into(), "C.UTF-8".into()),
        ("PATH".into(), "/opt/bin".into()),
        ("TCPREMOTEIP".into(), "hidden".into()),
    ];
    let plan = SpawnPlan::new(&s);
    let env = plan.env_pairs(&tcp("192.0.2.7:1", "127.0.0.1:2"));
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "HOME",
            "USER",
            "LOGNAME",
            "SHELL",
            "SUPERD_SERVICE",
            "PROTO",
            "TCPREMOTEPORT",
            "TCPLOCALIP",
            "TCPLOCALPORT",
            "REMOTE_ADDR",
            "REMOTE_PORT",
            "LANG",
            "PATH",
            "TCPREMOTEIP",
        ]
    );
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("PATH"), Some("/opt/bin"));
    assert_eq!(get("TCPREMOTEIP"), Some("hidden"));
    assert_eq!(get("REMOTE_ADDR"), Some("192.0.2.7"));
}

#[test]
fn root_gets_sbin_in_path() {
    let mut s = service();
    if let Some(c) = s.credentials.as_mut() {
        c.uid = 0;
        c.user = "root".into();
    }
    let env = SpawnPlan::new(&s).env_pairs(&ConnInfo::None);
    assert_eq!(env[0], ("PATH".into(), PATH_ROOT.into()));
    assert!(PATH_ROOT.contains("/usr/sbin") && PATH_ROOT.contains("/usr/local/bin"));
}

#[test]
fn no_credentials_describe_superd_itself() {
    let mut s = service();
    s.credentials = None;
    let env = SpawnPlan::new(&s).env_pairs(&ConnInfo::None);
    let expected_path = if geteuid().is_root() {
        PATH_ROOT
    } else {
        PATH_USER
    };
    assert_eq!(env[0], ("PATH".into(), expected_path.into()));
    let me = User::from_uid(geteuid()).unwrap().map(|u| u.name);
    let user = env
        .iter()
        .find(|(k, _)| k == "USER")
        .map(|(_, v)| v.clone());
    assert_eq!(user, Some(me.unwrap_or_else(|| geteuid().to_string())));
}

#[test]
fn v4_mapped_addresses_are_shown_as_v4() {
    let plan = SpawnPlan::new(&service());
    let env = plan.env_pairs(&tcp("[::ffff:192.0.2.7]:4444", "[::ffff:127.0.0.1]:7008"));
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("TCPREMOTEIP").as_deref(), Some("192.0.2.7"));
    assert_eq!(get("REMOTE_ADDR").as_deref(), Some("192.0.2.7"));
    assert_eq!(get("TCPLOCALIP").as_deref(), Some("127.0.0.1"));
    let env6 = plan.env_pairs(&tcp("[2001:db8::1]:4444", "[::1]:7008"));
    assert!(env6.contains(&("TCPREMOTEIP".into(), "2001:db8::1".into())));
    assert!(env6.contains(&("TCPLOCALIP".into(), "::1".into())));
}

#[test]
fn unix_vars_and_none() {
    let plan = SpawnPlan::new(&service());
    let env = plan.env_pairs(&ConnInfo::Unix {
        pid: 42,
        uid: 1000,
        gid: 100,
    });
    assert_eq!(
        env[6..],
        pairs(&[
            ("PROTO", "UNIX"),
            ("UNIXREMOTEPID", "42"),
            ("UNIXREMOTEEUID", "1000"),
            ("UNIXREMOTEEGID", "100"),
        ])[..]
    );
    assert_eq!(plan.env_pairs(&ConnInfo::None).len(), 6);
}

#[test]
fn envp_matches_env_pairs() {
    let mut s = service();
    s.env = vec![("X".into(), "1".into())];
    let plan = SpawnPlan::new(&s);
    let conn = tcp("192.0.2.7:1", "127.0.0.1:2");
    let envp = plan.envp_for(&conn);
    assert_eq!(envp.len(), plan.env_pairs(&conn).len());
    assert!(envp.ptrs.last().unwrap().is_null());
    assert!(envp.ptrs[..envp.len()].iter().all(|p| !p.is_null()));
}

#[test]
fn argv_and_path() {
    let plan = SpawnPlan::new(&service());
    assert_eq!(plan.path().unwrap().as_bytes(), b"/usr/bin/hello");
    assert_eq!(plan.body._argv.len(), 3);
    assert_eq!(plan.body.argv_ptrs.len(), 4);
    assert!(plan.body.argv_ptrs[3].is_null());
    assert_eq!(plan.body.argv_ptrs[1], plan.body._argv[1].as_ptr());
}

#[test]
fn default_nofile_is_capped_and_configured_limits_kept() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let plan = SpawnPlan::new(&service());
    let nofile: Vec<_> = plan
        .rlimits()
        .iter()
        .filter(|(r, _)| *r == libc::RLIMIT_NOFILE)
        .collect();
    assert_eq!(nofile.len(), 1);
    assert_eq!(nofile[0].1.rlim_cur, hard.min(1024));
    assert_eq!(nofile[0].1.rlim_max, hard);

    let mut s = service();
    s.rlimits = vec![
        Rlimit {
            resource: RlimitResource::Nofile,
            soft: Some(64),
            hard: Some(128),
        },
        Rlimit {
            resource: RlimitResource::Core,
            soft: None,
            hard: None,
        },
    ];
    let plan = SpawnPlan::new(&s);
    assert_eq!(plan.rlimits().len(), 2);
    assert_eq!(plan.rlimits()[0].1.rlim_cur, 64);
    assert_eq!(plan.rlimits()[0].1.rlim_max, 128);
    assert_eq!(plan.rlimits()[1].0, libc::RLIMIT_CORE);
    assert_eq!(plan.rlimits()[1].1.rlim_cur, libc::RLIM_INFINITY);
}

#[test]
fn builtin_has_no_program() {
    let mut s = service();
    s.program = Program::Builtin(crate::service::Builtin::Echo);
    assert!(SpawnPlan::new(&s).path().is_none());
}

/// pass: listen_fds: LISTEN_FDS and LISTEN_FDNAMES after the
/// connection variables, and room after `LISTEN_PID=` for the child's
/// own pid; nothing of the kind for stdio.
#[test]
fn listen_fds_variables() {
    let mut s = service();
    s.listen = vec![
        crate::service::Address::AnyPort(53),
        crate::service::Address::AnyPort(853),
    ];
    s.pass = PassMode::ListenFds;
    s.wait = true;
    s.fd_names = vec!["dns".into(), "dot".into()];
    let plan = SpawnPlan::new(&s);
    assert_eq!(plan.listen_fds(), Some(2));
    let env = plan.env_pairs(&ConnInfo::None);
    let listen: Vec<_> = env
        .iter()
        .filter(|(k, _)| k.starts_with("LISTEN_"))
        .collect();
    assert_eq!(
        listen,
        [
            &("LISTEN_FDS".to_string(), "2".to_string()),
            &("LISTEN_PID".to_string(), String::new()),
            &("LISTEN_FDNAMES".to_string(), "dns:dot".to_string()),
        ]
    );
    assert!(!plan.envp_for(&ConnInfo::None).pid_slot().is_null());

    s.wait = false;
    s.fd_names.clear();
    let plan = SpawnPlan::new(&s);
    assert_eq!(plan.listen_fds(), Some(1));
    let env = plan.env_pairs(&ConnInfo::None);
    assert!(env.contains(&("LISTEN_FDNAMES".to_string(), "connection".to_string())));

    let plan = SpawnPlan::new(&service());
    assert_eq!(plan.listen_fds(), None);
    assert!(plan.envp_for(&ConnInfo::None).pid_slot().is_null());
    assert!(
        !plan
            .env_pairs(&ConnInfo::None)
            .iter()
            .any(|(k, _)| k.starts_with("LISTEN_"))
    );
}

#[test]
fn rlimit_resources_are_the_kernels() {
    use crate::service::RlimitResource as R;
    let want = [
        (R::Nofile, libc::RLIMIT_NOFILE),
        (R::Nproc, libc::RLIMIT_NPROC),
        (R::As, libc::RLIMIT_AS),
        (R::Data, libc::RLIMIT_DATA),
        (R::Stack, libc::RLIMIT_STACK),
        (R::Fsize, libc::RLIMIT_FSIZE),
        (R::Core, libc::RLIMIT_CORE),
        (R::Cpu, libc::RLIMIT_CPU),
        (R::Memlock, libc::RLIMIT_MEMLOCK),
    ];
    assert_eq!(want.len(), R::ALL.len());
    for (r, raw) in want {
        assert_eq!(r.raw(), raw, "{}", r.as_str());
    }
}

/// Services built alike share one body, each with its own name in the
/// environment; a service built otherwise gets a body of its own.
#[test]
fn plans_built_alike_share_their_body() {
    let mut cache = PlanCache::default();
    let a = SpawnPlan::shared(&service(), None, &mut cache);
    let mut s = service();
    s.name = "other".into();
    s.pass = PassMode::ListenFds;
    let b = SpawnPlan::shared(&s, None, &mut cache);
    assert!(Rc::ptr_eq(&a.body, &b.body));
    let var = |p: &SpawnPlan| {
        p.env_pairs(&ConnInfo::None)
            .into_iter()
            .filter(|(k, _)| k == "SUPERD_SERVICE" || k == "LISTEN_FDNAMES")
            .collect::<Vec<_>>()
    };
    assert_eq!(var(&a), pairs(&[("SUPERD_SERVICE", "hello")]));
    assert_eq!(
        var(&b),
        pairs(&[
            ("SUPERD_SERVICE", "other"),
            ("LISTEN_FDNAMES", "connection")
        ])
    );
    assert_eq!(
        a.env_pairs(&ConnInfo::None),
        SpawnPlan::new(&service()).env_pairs(&ConnInfo::None)
    );
    s.cwd = PathBuf::from("/tmp");
    let c = SpawnPlan::shared(&s, None, &mut cache);
    assert!(!Rc::ptr_eq(&a.body, &c.body));
    assert_eq!(c.cwd().as_bytes(), b"/tmp");
}
