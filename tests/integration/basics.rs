//! The core end to end: a service served, reaped and logged; shutdown.

use std::io::{Read, Write};

use crate::harness::*;

#[test]
fn cat_is_an_echo_server_and_every_connection_is_logged() {
    let d = Superd::start(&format!(
        "services:\n  cat:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    {}\n",
        user_line()
    ));
    let addr = d.addr("cat");
    assert_eq!(exchange(&addr, b"hello\n"), b"hello\n");
    let line = d.wait_for(&["exit", "service=cat"]);
    assert!(line.starts_with("INFO"), "{line}");
    for k in ["pid", "peer", "status", "duration"] {
        assert!(field(&line, k).is_some(), "{k} missing in {line}");
    }
    assert_eq!(field(&line, "status").as_deref(), Some("0"));
    let status = d.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn five_hundred_connections_leave_no_zombie_and_no_fd() {
    let d = Superd::start(&format!(
        "services:\n  t:\n    listen: 127.0.0.1:0\n    exec: [/bin/echo, hi]\n    {}\n",
        user_line()
    ));
    let addr = d.addr("t");
    // One connection first, so lazily opened descriptors are in the baseline.
    assert_eq!(exchange(&addr, b""), b"hi\n");
    d.wait_nth(1, &["exit", "service=t"]);
    let base = d.fd_count();
    for _ in 0..500 {
        let mut s = connect(&addr);
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hi\n");
    }
    d.wait_nth(501, &["exit", "service=t"]);
    d.wait_until("no zombies", || d.zombies() == 0);
    if base.is_some() {
        assert_eq!(d.fd_count(), base, "fd count changed");
    }
    let _ = connect(&addr).write_all(b"");
}
