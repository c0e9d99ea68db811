//! `proxy_protocol` through the real binary while the event loop does not
//! read PROXY headers yet (superd.yaml(5), PROXY PROTOCOL): the fields are
//! parsed and checked, but a configuration setting `proxy_protocol` is
//! refused with file:line:column by `--check`, at start and at reload, so
//! that nothing is accepted that the daemon would not apply. The loop
//! integration replaces these tests with the served behaviour.

use nix::sys::signal::Signal;

use crate::harness::*;

const NOT_YET: &str = "proxy_protocol is not yet supported by this build";

const PROXIED: &str = "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    proxy_protocol: v2\n    proxy_from: 127.0.0.1\n";

#[test]
fn check_refuses_proxy_protocol_with_file_line_and_column() {
    let dir = TempDir::new("proxy-check");
    let file = dir.write("lb.yaml", PROXIED);
    // A second service: the rules of the fields are checked too.
    let dgram = dir.write(
        "udp.yaml",
        "services:\n  u:\n    listen: 127.0.0.1:0\n    socket: dgram\n    builtin: echo\n    proxy_protocol: any\n",
    );
    let mut d = Superd::spawn(
        dir,
        &["--check", file.parent().unwrap().to_str().unwrap()],
        &[],
    );
    let status = d.wait_exit();
    assert_eq!(status.code(), Some(1));
    let log = d.log_text();
    for want in [
        format!("{}:5:21: {NOT_YET}", file.display()),
        format!(
            "{}:6:21: proxy_protocol needs a stream service",
            dgram.display()
        ),
        format!("{}:6:21: proxy_protocol needs proxy_from", dgram.display()),
    ] {
        assert!(log.contains(&want), "{want:?} not in:\n{log}");
    }
    assert!(d.stdout_text().is_empty());
}

#[test]
fn the_daemon_refuses_to_start_with_proxy_protocol() {
    let mut d = Superd::start(PROXIED);
    let status = d.wait_exit();
    assert_eq!(status.code(), Some(1));
    let log = d.log_text();
    assert!(log.contains(&format!("test.yaml:5:21: {NOT_YET}")), "{log}");
    assert!(!log.contains("listening"), "{log}");
}

#[test]
fn a_reload_to_proxy_protocol_is_refused_and_the_old_configuration_kept() {
    let d = Superd::start("services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n");
    let port = d.port("e");
    d.dir.write(
        "test.yaml",
        &format!(
            "services:\n  e:\n    listen: 127.0.0.1:{port}\n    builtin: echo\n    proxy_protocol: v1\n    proxy_from: 127.0.0.1\n"
        ),
    );
    d.signal(Signal::SIGHUP);
    d.wait_for(&["test.yaml:5:21", NOT_YET]);
    d.wait_for(&["reload failed"]);
    // Still the plain echo service: a PROXY line is echoed as data.
    let line = b"PROXY TCP4 192.0.2.7 127.0.0.1 5 6\r\n";
    assert_eq!(exchange(&format!("127.0.0.1:{port}"), line), line);
}
