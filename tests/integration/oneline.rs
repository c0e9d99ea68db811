//! The one-line mode (superd(8), OPTIONS): `superd --listen ADDR [--set FIELD=VALUE]...
//! -- PROGRAM [ARG...]` serves one program with the semantics and
//! validation of a YAML service; a bad `--set` value is an invalid
//! configuration (exit 1), a malformed command line bad usage (exit 2).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Output, Stdio};

use crate::harness::*;

/// `--set user=...` when superd runs as root (said outright, though the
/// one-line mode runs as nobody then anyway); nothing otherwise.
fn user_args() -> Vec<&'static str> {
    if is_root() {
        vec!["--set", "user=nobody"]
    } else {
        Vec::new()
    }
}

/// Starts superd in one-line mode: `--listen` for each of `listen`, the
/// `--set` pairs (plus the user when root), `--` and `program`.
fn oneline(listen: &[&str], sets: &[&str], program: &[&str]) -> Superd {
    let mut args: Vec<&str> = vec!["-v"];
    for l in listen {
        args.extend(["--listen", l]);
    }
    for s in sets {
        args.extend(["--set", s]);
    }
    args.extend(user_args());
    args.push("--");
    args.extend(program);
    Superd::spawn(TempDir::new("one"), &args, &[])
}

fn run(args: &[&str]) -> Output {
    Command::new(superd_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run superd")
}

#[test]
fn cat_on_one_address_is_an_echo_server() {
    let d = oneline(&["127.0.0.1:0"], &[], &["/bin/cat"]);
    // The service is named after the program.
    let addr = d.addr("cat");
    assert_eq!(exchange(&addr, b"hello\n"), b"hello\n");
    assert_eq!(exchange(&addr, b"again\n"), b"again\n");
    d.wait_nth(2, &["exit", "service=cat", "status=0"]);
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn set_max_connections_makes_the_second_client_wait_for_the_first() {
    let d = oneline(&["127.0.0.1:0"], &["max_connections=1"], &["/bin/cat"]);
    let addr = d.addr("cat");

    let mut first = connect(&addr);
    first.write_all(b"one\n").unwrap();
    let mut buf = [0u8; 4];
    first.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"one\n");
    let first_peer = first.local_addr().unwrap().to_string();

    // The second connection completes in the kernel's backlog, but superd
    // does not accept it while the first runs.
    let mut second = connect(&addr);
    let second_peer = second.local_addr().unwrap().to_string();
    second.write_all(b"two\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGUSR1);
    let status = d.wait_for(&["status", "service=cat ", "state="]);
    assert_eq!(
        field(&status, "state").as_deref(),
        Some("paused_max_connections"),
        "{status}"
    );
    assert_eq!(field(&status, "active").as_deref(), Some("1"), "{status}");
    assert_eq!(field(&status, "accepted").as_deref(), Some("1"), "{status}");

    // The first ends; only then is the second accepted and served.
    drop(first);
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"two\n");
    d.wait_for(&["accept service=cat", &second_peer]);
    let log = d.log_text();
    let exit_first = log
        .lines()
        .position(|l| l.contains("exit service=cat") && l.contains(&first_peer))
        .expect("the first connection's exit line");
    let accept_second = log
        .lines()
        .position(|l| l.contains("accept service=cat") && l.contains(&second_peer))
        .expect("the second connection's accept line");
    assert!(
        exit_first < accept_second,
        "the second was accepted before the first ended:\n{log}"
    );
}

#[test]
fn set_env_reads_its_value_as_yaml() {
    let d = oneline(
        &["127.0.0.1:0"],
        &["env={A: b, B: \"two words\", N: 3}", "umask=\"077\""],
        &["/bin/sh", "-c", "echo \"$A|$B|$N|$SUPERD_SERVICE\"; umask"],
    );
    let addr = d.addr("sh");
    let out = String::from_utf8(exchange(&addr, b"")).unwrap();
    assert_eq!(out, "b|two words|3|sh\n0077\n");
}

#[test]
fn several_listen_addresses_serve_the_same_program() {
    let sock_dir = TempDir::new("one-sock");
    let path = sock_dir.path().join("cat.sock");
    let d = oneline(
        &["127.0.0.1:0", path.to_str().unwrap(), "127.0.0.1:0"],
        &[],
        &["/bin/cat"],
    );
    let a = d.addr_n("cat", 1);
    let b = d.addr_n("cat", 3);
    let unix = d.addr_n("cat", 2);
    assert_eq!(unix, path.to_str().unwrap());
    assert_ne!(a, b, "two port-0 listeners get two ports");
    assert_eq!(exchange(&a, b"tcp one\n"), b"tcp one\n");
    assert_eq!(exchange(&b, b"tcp two\n"), b"tcp two\n");
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"unix\n").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert_eq!(out, b"unix\n");
    assert_eq!(d.stop().code(), Some(0));
    assert!(!path.exists(), "the socket file is removed at exit");
}

#[test]
fn a_relative_program_is_relative_to_the_current_directory() {
    // As hello.sh's header says: `superd --listen ... -- examples/hello.sh`,
    // from the repository (cargo runs tests there). As root the program
    // runs as root here: the repository may not be readable by nobody.
    let mut args = vec!["-v", "--listen", "127.0.0.1:0"];
    if is_root() {
        args.extend(["--set", "user=root"]);
    }
    args.extend(["--", "examples/hello.sh"]);
    let d = Superd::spawn(TempDir::new("one-rel"), &args, &[]);
    let addr = d.addr("hello.sh");
    let out = String::from_utf8(exchange(&addr, b"abc\n")).unwrap();
    assert!(out.ends_with("this is hello.sh\nABC\n"), "{out:?}");
}

#[test]
fn check_describes_the_one_service_and_binds_nothing() {
    let mut args = vec![
        "--check",
        "--listen",
        "127.0.0.1:1",
        "--set",
        "max_connections=3",
    ];
    args.extend(user_args());
    args.extend(["--", "/bin/cat"]);
    let out = run(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("service cat"), "{text}");
    assert!(text.contains("max_connections=3"), "{text}");
}

/// superd with `args` must exit `code` and say `want` (every part) on
/// stderr, with nothing on stdout.
fn rejected(args: &[&str], code: i32, want: &[&str]) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: stderr:\n{err}");
    for w in want {
        assert!(err.contains(w), "{args:?}: {w:?} not in stderr:\n{err}");
    }
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
}

/// A value the service cannot take is an invalid configuration (exit 1),
/// as it would be in a file; `--check` says the same.
#[test]
fn a_bad_set_value_is_an_invalid_configuration_exit_1() {
    let with = |set: &'static str| -> Vec<&'static str> {
        let mut a = vec!["--listen", "127.0.0.1:0", "--set", set];
        a.extend(user_args());
        a.extend(["--", "/bin/cat"]);
        a
    };
    let bad = |args: &[&str], want: &[&str]| {
        rejected(args, 1, want);
        let mut checked = vec!["--check"];
        checked.extend(args);
        rejected(&checked, 1, want);
    };
    bad(
        &with("lisen=1"),
        &[
            "--set lisen=1",
            "unknown field \"lisen\"",
            "expected one of listen",
        ],
    );
    bad(
        &with("umask=022"),
        &["--set umask=022", "quoted octal string"],
    );
    bad(
        &with("max_connections=0"),
        &[
            "--set max_connections=0",
            "expected an integer >= 1, found 0",
        ],
    );
    bad(
        &with("rate=fast"),
        &["--set rate=fast", "bad rate \"fast\""],
    );
    bad(
        &[
            "--listen",
            "127.0.0.1:0",
            "--set",
            "user=no-such-user-here",
            "--",
            "/bin/cat",
        ],
        &["--set user=no-such-user-here", "no-such-user-here"],
    );
    // A field set twice is an error, not a silent last-wins.
    bad(
        &[
            "--listen",
            "127.0.0.1:0",
            "--set",
            "nice=1",
            "--set",
            "nice=2",
            "--",
            "/bin/cat",
        ],
        &["nice is set twice"],
    );
    bad(&with("exec=/bin/sh"), &["the program is given after --"]);
    bad(&with("env={A: [1]"), &["--set env={A: [1]"]);
    bad(
        &["--listen", "nowhere", "--", "/bin/cat"],
        &["bad address \"nowhere\""],
    );
}

/// superd(8)'s own example (DESCRIPTION, EXAMPLES), as it is written: `superd --listen ADDR --
/// /bin/cat` is an echo server, for root too, where it runs as nobody
/// (safe defaults hold: nothing runs as root by accident).
#[test]
fn the_example_as_written_is_an_echo_server_and_never_root() {
    let args = ["-v", "--listen", "127.0.0.1:0", "--", "/bin/cat"];
    let d = Superd::spawn(TempDir::new("one"), &args, &[]);
    assert_eq!(exchange(&d.addr("cat"), b"hello\n"), b"hello\n");
    assert_eq!(d.stop().code(), Some(0));
    let out = run(&["--check", "--listen", "127.0.0.1:0", "--", "/bin/cat"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    if is_root() {
        assert!(text.contains("user: nobody uid=65534"), "{text}");
    } else {
        skip("the `user: nobody` half: not root (the child runs as superd's own user)");
    }
}

/// The shape of the command line itself is bad usage (exit 2).
#[test]
fn a_malformed_one_line_command_is_bad_usage_exit_2() {
    rejected(
        &[
            "--listen",
            "127.0.0.1:0",
            "--set",
            "novalue",
            "--",
            "/bin/cat",
        ],
        2,
        &["--set \"novalue\"", "expected FIELD=VALUE"],
    );
    rejected(
        &["--set", "max_connections=1", "/etc/superd/services.d"],
        2,
        &["--set needs --listen"],
    );
    rejected(
        &["--", "/bin/cat"],
        2,
        &["a program after -- needs --listen"],
    );
    rejected(
        &["--listen", "127.0.0.1:0"],
        2,
        &["needs a program after --"],
    );
}
