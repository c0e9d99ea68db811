//! Files superd makes and trusts: unix socket files (their mode and owner,
//! the stale probe, removal, reloads that roll back), the pidfile, and
//! config files with POSIX ACLs.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::Command;

use nix::sys::signal::Signal;

use crate::harness::*;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn echo_over_unix(sock: &Path) -> Vec<u8> {
    let mut c = UnixStream::connect(sock).expect("connect");
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    c.write_all(b"hi").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    got
}

/// A reload that changes socket_mode (and, as root, socket_user) while the
/// socket's path was replaced by a symlink to another file: that file's
/// mode and owner stay as they were (a path chmod follows the link: root
/// would chmod any file).
#[test]
fn a_reload_never_changes_the_mode_or_owner_through_a_symlink() {
    let dir = TempDir::new("symlinkmode");
    let sock = dir.path().join("s.sock");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "secret").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let conf = |m: &str, owner: &str| {
        format!(
            "services:\n  u:\n    listen: {}\n    builtin: echo\n    socket_mode: \"{m}\"\n{owner}",
            sock.display()
        )
    };
    let d = Superd::start(&conf("0600", ""));
    d.wait_for(&["listening", "service=u "]);
    std::fs::remove_file(&sock).unwrap();
    std::os::unix::fs::symlink(&victim, &sock).unwrap();
    let owner = if is_root() {
        "    socket_user: nobody\n    socket_group: 65534\n"
    } else {
        ""
    };
    let before = std::fs::metadata(&victim).unwrap();
    d.dir.write("test.yaml", &conf("0666", owner));
    d.signal(Signal::SIGHUP);
    d.wait_for(&["reloaded"]);
    let after = std::fs::metadata(&victim).unwrap();
    assert_eq!(after.mode() & 0o7777, 0o600, "victim chmodded");
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    // Logged before `reloaded`.
    let warn = d.lines_with(&["cannot change socket options"]).join("\n");
    assert!(
        warn.contains("no longer superd's socket file"),
        "{}",
        d.log_text()
    );
    // Nor is the symlink superd's to remove.
    assert_eq!(d.stop().code(), Some(0));
    assert!(
        std::fs::symlink_metadata(&sock)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
}

/// A socket file that is no longer the one superd bound (removed and
/// replaced by someone) is left alone when its service goes and at exit.
#[test]
fn socket_files_replaced_by_others_are_never_removed() {
    let dir = TempDir::new("replaced");
    let gone = dir.path().join("gone.sock");
    let stays = dir.path().join("stays.sock");
    let d = Superd::start(&format!(
        "services:\n  gone:\n    listen: {}\n    builtin: echo\n  stays:\n    listen: {}\n    builtin: echo\n",
        gone.display(),
        stays.display()
    ));
    d.wait_for(&["listening", "service=stays "]);
    for p in [&gone, &stays] {
        std::fs::remove_file(p).unwrap();
        std::fs::write(p, "someone else's").unwrap();
    }
    d.dir.write(
        "test.yaml",
        &format!(
            "services:\n  stays:\n    listen: {}\n    builtin: echo\n",
            stays.display()
        ),
    );
    d.signal(Signal::SIGHUP);
    d.wait_for(&["reloaded"]);
    d.wait_for(&["closed", &format!("addr={}", gone.display())]);
    assert_eq!(std::fs::read_to_string(&gone).unwrap(), "someone else's");
    assert_eq!(d.stop().code(), Some(0));
    assert_eq!(std::fs::read_to_string(&stays).unwrap(), "someone else's");
}

/// Another program's live socket of another type is not stale: superd
/// refuses to start, naming the path, and leaves it alone.
#[test]
fn a_live_socket_of_another_type_is_never_taken() {
    let dir = TempDir::new("othertype");
    let sock = dir.path().join("dg.sock");
    let theirs = UnixDatagram::bind(&sock).unwrap();
    let conf = TempDir::new("othertypeconf");
    conf.write(
        "t.yaml",
        &format!(
            "services:\n  s:\n    listen: {}\n    builtin: echo\n",
            sock.display()
        ),
    );
    let p = conf.path().to_str().unwrap().to_string();
    let mut d = Superd::spawn(conf, &[&p], &[]);
    assert_eq!(d.wait_exit().code(), Some(1), "{}", d.log_text());
    let log = d.log_text();
    assert!(log.contains(&sock.display().to_string()), "{log}");
    assert!(log.contains("another type"), "{log}");
    // Still theirs, and still reachable.
    let c = UnixDatagram::unbound().unwrap();
    c.send_to(b"still here", &sock).unwrap();
    let mut buf = [0u8; 32];
    theirs.set_read_timeout(Some(DEADLINE)).unwrap();
    let n = theirs.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"still here");
}

/// A reload that changes a unix socket's type and is rolled back (another
/// address cannot be bound) leaves the old socket's file in place: the
/// old service goes on answering at its path.
#[test]
fn a_rolled_back_reload_changing_a_socket_type_keeps_the_old_file() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hport = held.local_addr().unwrap().port();
    let dir = TempDir::new("retyperollback");
    let sock = dir.path().join("x.sock");
    let d = Superd::start(&format!(
        "services:\n  u:\n    listen: {}\n    builtin: echo\n",
        sock.display()
    ));
    d.wait_for(&["listening", "service=u "]);
    d.dir.write(
        "test.yaml",
        &format!(
            "services:\n  u:\n    listen: {}\n    socket: seqpacket\n    exec: /bin/cat\n    {}\n  x:\n    listen: 127.0.0.1:{hport}\n    builtin: echo\n",
            sock.display(),
            user_line()
        ),
    );
    d.signal(Signal::SIGHUP);
    d.wait_for(&["reload failed", "rolled back"]);
    assert!(sock.exists(), "the socket file is gone:\n{}", d.log_text());
    assert_eq!(echo_over_unix(&sock), b"hi");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("x.sock")], "{left:?}");
    // The same change, without the address that cannot be bound, goes
    // through, and leaves nothing but the new socket's file.
    d.dir.write(
        "test.yaml",
        &format!(
            "services:\n  u:\n    listen: {}\n    socket: seqpacket\n    exec: /bin/cat\n    {}\n",
            sock.display(),
            user_line()
        ),
    );
    d.signal(Signal::SIGHUP);
    d.wait_for(&["reloaded"]);
    assert!(UnixStream::connect(&sock).is_err(), "still a stream socket");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("x.sock")], "{left:?}");
    drop(held);
}

/// A rolled-back reload leaves the socket file's mode and owner as they
/// were; the same change in a reload that succeeds applies them.
#[test]
fn a_rolled_back_reload_leaves_socket_mode_and_owner_alone() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hport = held.local_addr().unwrap().port();
    let dir = TempDir::new("moderollback");
    let sock = dir.path().join("m.sock");
    let owner = if is_root() {
        "    socket_user: nobody\n    socket_group: 65534\n"
    } else {
        ""
    };
    let conf = |m: &str, owner: &str, extra: &str| {
        format!(
            "services:\n  u:\n    listen: {}\n    builtin: echo\n    socket_mode: \"{m}\"\n{owner}{extra}",
            sock.display()
        )
    };
    let d = Superd::start(&conf("0600", "", ""));
    d.wait_for(&["listening", "service=u "]);
    let before = std::fs::metadata(&sock).unwrap();
    d.dir.write(
        "test.yaml",
        &conf(
            "0660",
            owner,
            &format!("  x:\n    listen: 127.0.0.1:{hport}\n    builtin: echo\n"),
        ),
    );
    d.signal(Signal::SIGHUP);
    d.wait_for(&["reload failed", "rolled back"]);
    let after = std::fs::metadata(&sock).unwrap();
    assert_eq!(after.mode() & 0o7777, 0o600, "{}", d.log_text());
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    d.dir.write("test.yaml", &conf("0660", owner, ""));
    d.signal(Signal::SIGHUP);
    d.wait_for(&["reloaded"]);
    assert_eq!(mode(&sock), 0o660, "{}", d.log_text());
    if is_root() {
        let m = std::fs::metadata(&sock).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534));
    }
    drop(held);
}

/// A socket file is mode 0 from bind until its mode is set: what the
/// listening line announces already has the configured mode.
#[test]
fn the_socket_file_has_its_mode_when_listening_is_logged() {
    let dir = TempDir::new("bindmode");
    let sock = dir.path().join("d.sock");
    let d = Superd::start(&format!(
        "services:\n  d:\n    listen: {}\n    socket: dgram\n    exec: [{}, udp]\n    socket_mode: \"0620\"\n    {}\n",
        sock.display(),
        probe_bin().display(),
        user_line()
    ));
    d.wait_for(&["listening", "service=d "]);
    assert_eq!(mode(&sock), 0o620);
}

/// The pidfile: one replaced while superd runs is not removed at exit;
/// one owned by another user is refused.
#[test]
fn a_pidfile_is_removed_only_if_it_is_the_one_locked_and_must_be_superds() {
    let dir = TempDir::new("pidid");
    let pidfile = dir.path().join("superd.pid");
    let conf = TempDir::new("pididconf");
    conf.write("t.yaml", "services: {}\n");
    let p = conf.path().to_str().unwrap().to_string();
    let pf = pidfile.to_str().unwrap().to_string();
    let d = Superd::spawn(conf, &[&p, "--pidfile", &pf], &[]);
    d.wait_for(&["ready"]);
    d.wait_until("pidfile written", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.trim() == d.pid().to_string())
    });
    std::fs::rename(&pidfile, dir.path().join("moved")).unwrap();
    std::fs::write(&pidfile, "not superd's\n").unwrap();
    assert_eq!(d.stop().code(), Some(0));
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), "not superd's\n");

    if !is_root() {
        skip("a pidfile of another user needs root to make");
        return;
    }
    std::fs::write(&pidfile, "1\n").unwrap();
    std::os::unix::fs::chown(&pidfile, Some(65534), Some(65534)).unwrap();
    let conf = TempDir::new("pididconf2");
    conf.write("t.yaml", "services: {}\n");
    let p = conf.path().to_str().unwrap().to_string();
    let mut d = Superd::spawn(conf, &[&p, "--pidfile", &pf], &[]);
    assert_eq!(d.wait_exit().code(), Some(1));
    assert!(
        d.log_text().contains("owned by uid 65534"),
        "{}",
        d.log_text()
    );
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), "1\n");
}

/// Runs setfacl; false (with the reason printed) where it cannot.
fn setfacl(args: &[&str], on: &Path) -> bool {
    match Command::new("setfacl").args(args).arg(on).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            skip(&format!(
                "setfacl failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            false
        }
        Err(e) => {
            skip(&format!("no setfacl (Debian package acl): {e}"));
            false
        }
    }
}

/// As root, a config file or directory whose ACL lets another user or
/// group write it is refused, as group and other write bits are.
#[test]
fn a_config_an_acl_lets_others_write_is_refused() {
    if !is_root() {
        skip("the ownership rule applies to root only");
        return;
    }
    let conf = TempDir::new("aclfile");
    let file = conf.write("t.yaml", "services: {}\n");
    if !setfacl(&["-m", "u:nobody:rw"], &file) {
        return;
    }
    let p = conf.path().to_str().unwrap().to_string();
    let mut d = Superd::spawn(conf, &[&p], &[]);
    assert_eq!(d.wait_exit().code(), Some(1), "{}", d.log_text());
    let log = d.log_text();
    assert!(
        log.contains("t.yaml: writable by user 65534 (ACL)"),
        "{log}"
    );

    let conf = TempDir::new("acldir");
    conf.write("t.yaml", "services: {}\n");
    if !setfacl(&["-m", "g:65534:rwx"], conf.path()) {
        return;
    }
    let p = conf.path().to_str().unwrap().to_string();
    let mut d = Superd::spawn(conf, &[&p], &[]);
    assert_eq!(d.wait_exit().code(), Some(1), "{}", d.log_text());
    let log = d.log_text();
    assert!(log.contains("writable by group 65534 (ACL)"), "{log}");

    // Read-only entries, and root's own, are fine.
    let conf = TempDir::new("aclok");
    let file = conf.write("t.yaml", "services: {}\n");
    if !setfacl(&["-m", "u:nobody:r,u:root:rw,g:root:rw"], &file) {
        return;
    }
    let p = conf.path().to_str().unwrap().to_string();
    let d = Superd::spawn(conf, &[&p], &[]);
    d.wait_for(&["ready"]);
    assert_eq!(d.stop().code(), Some(0));
}

/// Out of file descriptors superd cannot probe a socket file, and must not
/// take a live one for stale: whatever the limit, another program's
/// listening socket keeps its file.
#[test]
fn a_probe_that_cannot_be_made_never_takes_the_socket() {
    let dir = TempDir::new("probefds");
    let sock = dir.path().join("live.sock");
    let theirs = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    theirs.set_nonblocking(true).unwrap();
    // From too few descriptors to start at all to enough to probe: one of
    // them leaves superd out of descriptors exactly at the probe.
    for nofile in 3..=16 {
        let conf = TempDir::new("probefdsconf");
        conf.write(
            "t.yaml",
            &format!(
                "services:\n  s:\n    listen: {}\n    builtin: echo\n",
                sock.display()
            ),
        );
        let p = conf.path().to_str().unwrap().to_string();
        let mut d = Superd::spawn_limited(conf, &[&p], &[], Some(nofile));
        // Exit 1, or 127 when even the dynamic loader runs out.
        assert!(!d.wait_exit().success(), "{}", d.log_text());
        assert!(
            sock.exists(),
            "RLIMIT_NOFILE={nofile}: the live socket's file was removed:\n{}",
            d.log_text()
        );
        // Drop what the probes queued.
        while theirs.accept().is_ok() {}
    }
    UnixStream::connect(&sock).expect("still theirs");
}
