//! Unit tests of the inetd.conf importer.

use super::super::testenv::{SERVICES, with_files};
use super::*;
use crate::services::Services;
use std::collections::HashMap;

fn parse_text(text: &str) -> Result<Vec<Entry>, Vec<ParseError>> {
    let s = Services::parse(SERVICES);
    let mut out = None;
    with_files(&s, HashMap::new(), |env| {
        out = Some(parse(Path::new("inetd.conf"), text, env));
    });
    out.unwrap()
}

fn one(text: &str) -> Entry {
    let mut v = parse_text(text).expect("parses");
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

fn f<'a>(e: &'a Entry, k: &str) -> Option<&'a Value> {
    e.get(k)
}

fn severities(e: &Entry) -> Vec<Severity> {
    e.notes.iter().map(|n| n.severity).collect()
}

#[test]
fn builtins_by_name_stream_and_dgram() {
    let v = parse_text(
        "echo stream tcp nowait root internal\n\
         echo dgram udp wait root internal\n\
         daytime stream tcp6 nowait root internal\n",
    )
    .unwrap();
    assert_eq!(f(&v[0], "builtin"), Some(&Value::str("echo")));
    assert_eq!(f(&v[0], "listen"), Some(&Value::Int(7)));
    assert_eq!(f(&v[0], "user"), None);
    assert_eq!(f(&v[1], "socket"), Some(&Value::str("dgram")));
    assert_eq!(f(&v[1], "wait"), None);
    assert_eq!(f(&v[2], "listen"), Some(&Value::str("[::]:13")));
    assert_eq!(f(&v[2], "v6only"), Some(&Value::Bool(true)));
    assert!(v.iter().all(|e| e.notes.is_empty()), "{v:?}");
}

#[test]
fn exec_argv0_user_group_and_names() {
    // What update-inetd registers for fingerd and tftpd-hpa.
    let e = one("finger\tstream\ttcp\tnowait\tnobody\t/usr/sbin/tcpd\t/usr/sbin/in.fingerd\n");
    assert_eq!(
        f(&e, "exec"),
        Some(&Value::List(vec![Value::str("/usr/sbin/in.fingerd")]))
    );
    assert_eq!(f(&e, "argv0"), None);
    assert_eq!(severities(&e), vec![Severity::Approximated]);
    let e = one("tftp dgram udp4 wait root /usr/sbin/in.tftpd /usr/sbin/in.tftpd -s /srv/tftp\n");
    assert_eq!(f(&e, "listen"), Some(&Value::str("0.0.0.0:69")));
    assert_eq!(f(&e, "socket"), Some(&Value::str("dgram")));
    assert_eq!(f(&e, "wait"), None);
    assert_eq!(f(&e, "user"), Some(&Value::str("root")));
    assert_eq!(
        f(&e, "exec"),
        Some(&Value::List(vec![
            Value::str("/usr/sbin/in.tftpd"),
            Value::str("-s"),
            Value::str("/srv/tftp")
        ]))
    );
    assert!(e.notes.is_empty());
    let e = one("ftp stream tcp nowait.40 ftp:ftpgrp /usr/sbin/ftpd ftpd-ssl -l\n");
    assert_eq!(f(&e, "argv0"), Some(&Value::str("ftpd-ssl")));
    assert_eq!(f(&e, "user"), Some(&Value::str("ftp")));
    assert_eq!(f(&e, "group"), Some(&Value::str("ftpgrp")));
    assert_eq!(f(&e, "rate"), Some(&Value::str("40/m")));
    assert_eq!(severities(&e), vec![Severity::Approximated]);
    let e = one("login stream tcp nowait root.wheel /usr/sbin/tcpd in.rlogind -a\n");
    assert_eq!(f(&e, "argv0"), Some(&Value::str("in.rlogind")));
    assert_eq!(
        f(&e, "exec"),
        Some(&Value::List(vec![
            Value::str("/usr/sbin/in.rlogind"),
            Value::str("-a")
        ]))
    );
    assert_eq!(f(&e, "group"), Some(&Value::str("wheel")));
}

#[test]
fn hosts_continuations_comments_and_disabled_entries() {
    let v = parse_text(
        "# comment\n\n127.0.0.1:\necho stream tcp nowait root internal\n\
         *:\n[::1]:daytime stream tcp6 nowait root internal\n\
         time stream tcp \\\n  nowait root internal\n\
         #<off># finger stream tcp nowait nobody /usr/sbin/in.fingerd in.fingerd\n\
         10.0.0.1,localhost:discard stream tcp nowait root internal\n",
    )
    .unwrap();
    assert_eq!(f(&v[0], "listen"), Some(&Value::str("127.0.0.1:7")));
    assert_eq!(f(&v[1], "listen"), Some(&Value::str("[::1]:13")));
    assert_eq!(f(&v[1], "v6only"), None);
    assert_eq!(f(&v[2], "builtin"), Some(&Value::str("time")));
    assert_eq!(v[2].loc.line, 7);
    assert_eq!(f(&v[3], "enabled"), Some(&Value::Bool(false)));
    assert_eq!(
        f(&v[4], "listen"),
        Some(&Value::List(vec![
            Value::str("10.0.0.1:9"),
            Value::str("127.0.0.1:9"),
            Value::str("[::1]:9")
        ]))
    );
}

#[test]
fn what_cannot_be_served_is_dropped_loudly() {
    let v = parse_text(
        "rstatd/1-3 dgram rpc/udp wait root /usr/sbin/rpc.rstatd rpc.rstatd\n\
         nosuch stream tcp nowait root /bin/true true\n\
         tcpmux stream tcp nowait root internal\n\
         gw.example:echo stream tcp nowait root internal\n\
         finger stream tcp,rcvbuf=64k nowait nobody /usr/sbin/in.fingerd in.fingerd\n\
         talk dgram udp nowait nobody /usr/sbin/in.talkd in.talkd\n",
    )
    .unwrap();
    assert!(
        v[0].dropped && v[1].dropped && v[2].dropped && v[3].dropped,
        "{v:?}"
    );
    assert!(!v[4].dropped);
    assert_eq!(severities(&v[4]), vec![Severity::Dropped]);
    assert_eq!(f(&v[5], "wait"), Some(&Value::Bool(true)));
    assert_eq!(severities(&v[5]), vec![Severity::Approximated]);
}

#[test]
fn unix_sockets_and_freebsd_limits() {
    let e = one("/run/x.sock stream unix nowait/10/0/2 nobody /bin/cat cat\n");
    assert_eq!(e.name, "x.sock");
    assert_eq!(f(&e, "listen"), Some(&Value::str("/run/x.sock")));
    assert_eq!(f(&e, "max_connections"), Some(&Value::Int(10)));
    assert_eq!(f(&e, "max_per_source"), Some(&Value::Int(2)));
    assert!(e.notes.is_empty(), "{e:?}");
}

#[test]
fn a_line_starting_with_blanks_continues_the_entry() {
    let e = one("ftp stream tcp nowait root /usr/sbin/ftpd ftpd\n\t-l -A\n");
    assert_eq!(
        f(&e, "exec"),
        Some(&Value::List(vec![
            Value::str("/usr/sbin/ftpd"),
            Value::str("-l"),
            Value::str("-A")
        ]))
    );
    assert_eq!(e.loc.line, 1);
}

#[test]
fn a_line_that_is_no_entry_cannot_be_parsed() {
    let err = parse_text("echo stream tcp nowait\n").unwrap_err();
    assert_eq!(err[0].loc.line, 1);
}
