//! Unit tests of the xinetd.conf importer, through whole files.

use super::super::testenv::{SERVICES, with_files};
use super::super::{Entry, Note, Severity, Value};
use super::attrs::networks;
use super::*;
use crate::services::Services;
use std::collections::HashMap;

fn run(files: &[(&str, &str)], root: &str) -> Result<Vec<SourceFile>, Vec<ParseError>> {
    let s = Services::parse(SERVICES);
    let map: HashMap<PathBuf, Vec<u8>> = files
        .iter()
        .map(|(p, t)| (PathBuf::from(p), t.as_bytes().to_vec()))
        .collect();
    let mut out = None;
    with_files(&s, map, |env| {
        out = Some(super::super::import(
            super::super::Kind::Xinetd,
            Path::new(root),
            env,
        ))
    });
    out.unwrap()
}

fn entries(files: &[SourceFile]) -> Vec<&Entry> {
    files.iter().flat_map(|f| &f.entries).collect()
}

fn list(v: &[&str]) -> Value {
    Value::List(v.iter().map(|s| Value::str(*s)).collect())
}

#[test]
fn defaults_includedir_ids_and_internal_services() {
    let files = run(
        &[
            ("/x/xinetd.conf", "defaults\n{\n  instances = 10\n  only_from = 10.0.0.0\n  only_from = 128.138.0.0\n}\nincludedir /x/d\n"),
            ("/x/d/echo", "service echo\n{\n  disable = yes\n  type = INTERNAL\n  id = echo-stream\n  socket_type = stream\n  protocol = tcp\n  user = root\n  wait = no\n}\n\
              service echo\n{\n  type = INTERNAL\n  id = echo-dgram\n  socket_type = dgram\n  wait = yes\n  flags = NOLIBWRAP\n}\n"),
            ("/x/d/echo-udp", "service echo\n{\n  type = INTERNAL UNLISTED\n  id = echo-dgram\n  socket_type = dgram\n  port = 7\n  wait = yes\n}\n"),
            ("/x/d/skip.rpmsave", "garbage"),
        ],
        "/x/xinetd.conf",
    )
    .expect("parses");
    assert_eq!(files.len(), 3);
    let v = entries(&files);
    assert_eq!(v[0].name, "echo-stream");
    assert_eq!(v[0].get("builtin"), Some(&Value::str("echo")));
    assert_eq!(v[0].get("listen"), Some(&Value::str("0.0.0.0:7")));
    assert_eq!(v[0].get("enabled"), Some(&Value::Bool(false)));
    assert_eq!(v[0].get("user"), None);
    assert_eq!(v[0].get("max_connections"), Some(&Value::Int(10)));
    assert_eq!(
        v[0].get("only_from"),
        Some(&list(&["10.0.0.0/8", "128.138.0.0/16"]))
    );
    assert_eq!(v[1].name, "echo-dgram");
    assert_eq!(v[1].get("socket"), Some(&Value::str("dgram")));
    assert_eq!(v[1].get("enabled"), None);
    assert!(
        v[1].notes.iter().all(|n| n.severity == Severity::Info),
        "{:?}",
        v[1].notes
    );
    assert_eq!(v[2].name, "echo-dgram-2");
    // The defaults' attributes are noted where they are written.
    assert!(
        v[0].notes
            .iter()
            .any(|n| n.loc.file == Path::new("/x/xinetd.conf") && n.loc.line == 4)
    );
}

#[test]
fn nameinargs_tcpd_and_the_exec_attributes() {
    let files = run(
        &[("/x/finger", "service finger\n{\n  socket_type = stream\n  wait = no\n  user = nobody\n  group = nogroup\n  server = /usr/sbin/tcpd\n  server_args = /usr/sbin/in.fingerd -w\n  flags = NAMEINARGS NOLIBWRAP KEEPALIVE\n  passenv = LANG TCPREMOTEIP\n  env = TZ=UTC LC_ALL=C\n  env += A=b\n  umask = 27\n  nice = 5\n  rlimit_as = 8M\n  rlimit_files = 64\n  rlimit_cpu = UNLIMITED\n  per_source = 3\n  bind = 127.0.0.1\n  groups = no\n}\n")],
        "/x/finger",
    )
    .expect("parses");
    let e = entries(&files)[0];
    assert_eq!(e.get("exec"), Some(&list(&["/usr/sbin/tcpd", "-w"])));
    assert_eq!(e.get("argv0"), Some(&Value::str("/usr/sbin/in.fingerd")));
    assert_eq!(e.get("listen"), Some(&Value::str("127.0.0.1:79")));
    assert_eq!(e.get("user"), Some(&Value::str("nobody")));
    assert_eq!(e.get("group"), Some(&Value::str("nogroup")));
    assert_eq!(e.get("groups"), Some(&Value::List(vec![])));
    assert_eq!(e.get("keepalive"), Some(&Value::Bool(true)));
    assert_eq!(e.get("pass_env"), Some(&list(&["LANG"])));
    assert_eq!(
        e.get("env"),
        Some(&Value::Map(vec![
            ("TZ".into(), Value::str("UTC")),
            ("LC_ALL".into(), Value::str("C")),
            ("A".into(), Value::str("b")),
        ]))
    );
    assert_eq!(e.get("umask"), Some(&Value::str("027")));
    assert_eq!(e.get("nice"), Some(&Value::Int(5)));
    assert_eq!(e.get("max_per_source"), Some(&Value::Int(3)));
    assert_eq!(
        e.get("rlimits"),
        Some(&Value::Map(vec![
            ("as".into(), Value::str("8M")),
            ("nofile".into(), Value::Int(64)),
            ("cpu".into(), Value::str("unlimited")),
        ]))
    );
    // Only the connection variable was dropped.
    let loud: Vec<&Note> = e
        .notes
        .iter()
        .filter(|n| n.severity != Severity::Info)
        .collect();
    assert_eq!(loud.len(), 1, "{loud:?}");
    assert_eq!(loud[0].loc.line, 10);
}

#[test]
fn approximations_and_drops_are_noted_with_their_lines() {
    let files = run(
        &[
            ("/x/ftp", "service ftp\n{\n  socket_type = stream\n  wait = no\n  user = root\n  server = /usr/sbin/in.ftpd\n  cps = 25 30\n  instances = UNLIMITED\n  log_on_success += DURATION HOST\n  access_times = 2:00-9:00\n  banner_fail = /x/deny.txt\n  only_from = 10.1.0.0/16 .example.com\n  no_access = 10.0.0.0\n  flags = IDONLY\n}\n"),
            ("/x/deny.txt", "421 Service not available.\r\n"),
            ("/x/rstatd", "service rstatd\n{\n  type = RPC\n  socket_type = dgram\n  server = /usr/sbin/rpc.rstatd\n  wait = yes\n  user = root\n}\nservice fwd\n{\n  socket_type = stream\n  port = 8080\n  redirect = 10.0.0.1 80\n}\n"),
        ],
        "/x",
    )
    .expect("parses");
    let v = entries(&files);
    let ftp = v.iter().find(|e| e.name == "ftp").unwrap();
    assert_eq!(ftp.get("rate"), Some(&Value::str("25/s")));
    assert_eq!(
        ftp.get("refuse_message"),
        Some(&Value::str("421 Service not available.\r\n"))
    );
    assert_eq!(ftp.get("only_from"), Some(&list(&["10.1.0.0/16"])));
    assert_eq!(ftp.get("deny_from"), Some(&list(&["10.0.0.0/8"])));
    let lines = |sev: Severity| -> Vec<usize> {
        ftp.notes
            .iter()
            .filter(|n| n.severity == sev)
            .map(|n| n.loc.line)
            .collect()
    };
    let approx = lines(Severity::Approximated);
    let dropped = lines(Severity::Dropped);
    assert!(
        approx.contains(&7) && approx.contains(&8) && approx.contains(&13) && approx.contains(&1),
        "{approx:?}"
    );
    assert!(
        dropped.contains(&9)
            && dropped.contains(&10)
            && dropped.contains(&12)
            && dropped.contains(&14),
        "{dropped:?}"
    );
    assert!(v.iter().find(|e| e.name == "rstatd").unwrap().dropped);
    assert!(v.iter().find(|e| e.name == "fwd").unwrap().dropped);
}

#[test]
fn network_forms() {
    assert_eq!(networks("10.0.0.0"), Ok(vec!["10.0.0.0/8".into()]));
    assert_eq!(networks("0.0.0.0"), Ok(vec!["0.0.0.0/0".into()]));
    assert_eq!(networks("128.138.12.0"), Ok(vec!["128.138.12.0/24".into()]));
    assert_eq!(networks("192.0.2.7"), Ok(vec!["192.0.2.7/32".into()]));
    assert_eq!(
        networks("128.138.{12,13}"),
        Ok(vec!["128.138.12.0/24".into(), "128.138.13.0/24".into()])
    );
    assert_eq!(
        networks("10.1.2.{3,4}"),
        Ok(vec!["10.1.2.3/32".into(), "10.1.2.4/32".into()])
    );
    assert_eq!(networks("2001:db8::/32"), Ok(vec!["2001:db8::/32".into()]));
    assert!(networks("host.example.com").is_err());
    assert!(networks("10.0.0.0/33").is_err());
    assert!(networks("::/129").is_err());
    assert!(networks("10.0.0.0/+8").is_err());
}

#[test]
fn broken_sources_are_parse_errors() {
    for (text, line) in [
        ("service x\n{\n  socket_type stream\n}\n", 3),
        ("service x\n{\n  socket_type = stream\n", 1),
        ("bogus line\n", 1),
    ] {
        let err = run(&[("/x/c", text)], "/x/c").unwrap_err();
        assert_eq!(err[0].loc.line, line, "{text:?}: {err:?}");
    }
}
