//! The command line and `--check` through the real binary (superd(8),
//! OPTIONS; superd.yaml(5)): exit codes, what --check prints, and
//! configuration errors with file:line:column.

use std::process::Command;

use crate::harness::*;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = Command::new(superd_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run superd");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn check(files: &[(&str, &str)]) -> (TempDir, Run) {
    let dir = TempDir::new("check");
    for (name, text) in files {
        dir.write(name, text);
    }
    let r = run(&["--check", dir.path().to_str().unwrap()]);
    (dir, r)
}

#[test]
fn help_version_and_usage_errors() {
    let r = run(&["--help"]);
    assert_eq!(r.code, Some(0));
    assert!(r.stdout.contains("--check"), "{}", r.stdout);
    let r = run(&["-V"]);
    assert_eq!(r.code, Some(0));
    assert!(r.stdout.starts_with("superd "), "{}", r.stdout);
    for bad in [
        &["--bogus"][..],
        &["--grace", "soon"],
        &["--", "/bin/cat"],
        // A flag with a value is not the flag.
        &["--check=no", "services.d"],
        &["--help=me"],
    ] {
        let r = run(bad);
        assert_eq!(r.code, Some(2), "{bad:?}: {}", r.stderr);
        assert!(!r.stderr.is_empty());
    }
}

#[test]
fn check_prints_every_service_and_binds_nothing() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let (_d, r) = check(&[(
        "a.yaml",
        &format!(
            "services:\n  web:\n    listen: [\"127.0.0.1:{port}\", \"[::1]:{port}\"]\n    exec: [/bin/echo, hi]\n    {}\n    max_connections: 7\n    rate: \"5/s\"\n  ud:\n    listen: 127.0.0.1:{port}\n    socket: dgram\n    builtin: daytime\n",
            user_line()
        ),
    )]);
    // The port is held by this test: --check must not try to bind it.
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for want in [
        "web",
        &format!("127.0.0.1:{port}"),
        &format!("[::1]:{port}"),
        "stream nowait",
        "/bin/echo",
        "max_connections=7",
        "rate=5/s",
        "ud",
        // A UDP builtin waits by default, as every dgram service does.
        "dgram wait",
        "builtin: daytime",
    ] {
        assert!(
            r.stdout.contains(want),
            "{want:?} missing in:\n{}",
            r.stdout
        );
    }
    drop(held);
}

/// As root, --check passes a program superd itself can run but warns
/// when the service's own user could not (a directory it cannot search);
/// superd says the same at start.
#[test]
fn a_program_the_user_cannot_execute_is_warned_about() {
    if !is_root() {
        skip("needs root (a user other than superd's)");
        return;
    }
    let private = TempDir::new("private");
    use std::os::unix::fs::PermissionsExt;
    let prog = private.write("tool.sh", "#!/bin/sh\necho hi\n");
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let yaml = format!(
        "services:\n  t:\n    listen: 127.0.0.1:0\n    exec: {}\n    user: nobody\n",
        prog.display()
    );
    let (_d, r) = check(&[("a.yaml", &yaml)]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let want = format!(
        "warning: directory {} is not searchable by user nobody",
        private.path().display()
    );
    assert!(r.stdout.contains(&want), "{}", r.stdout);
    let d = Superd::start(&yaml);
    let line = d.wait_for(&["program not executable", "service=t "]);
    assert!(
        line.starts_with("WARN") && line.contains("not searchable"),
        "{line}"
    );
}

#[test]
fn check_of_the_shipped_services_d_succeeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("services.d");
    let r = run(&["--check", dir.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for s in ["echo", "hello", "whoami", "daytime"] {
        assert!(r.stdout.contains(&format!("service {s} ")), "{}", r.stdout);
    }
}

/// One broken file per error class: --check exits 1 and names
/// file:line:column.
#[test]
fn every_error_class_names_file_line_and_column() {
    let u = user_line();
    let cases: Vec<(String, String, &str)> = vec![
        (
            format!("services:\n  web:\n    lisen: 127.0.0.1:0\n    exec: /bin/cat\n    {u}\n"),
            "3:5".into(),
            "unknown field \"lisen\"",
        ),
        (
            "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    max_connections: lots\n"
                .into(),
            "5:22".into(),
            "max_connections",
        ),
        (
            "services:\n  e:\n    listen: 127.0.0.1:99999\n    builtin: echo\n".into(),
            "3:13".into(),
            "99999",
        ),
        (
            "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    builtin: discard\n"
                .into(),
            "5:5".into(),
            "duplicate",
        ),
        (
            "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    umask: 022\n".into(),
            "5:12".into(),
            "quote",
        ),
        (
            format!("services:\n  e:\n    listen: 127.0.0.1:0\n    exec: /no/such/program\n    {u}\n"),
            "4:11".into(),
            "not found",
        ),
        (
            "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    user: no-such-user-zz\n"
                .into(),
            "5:11".into(),
            "no-such-user-zz",
        ),
        (
            "services:\n  e:\n    listen: 127.0.0.1:7700\n    builtin: echo\n  f:\n    listen: \"*:7700\"\n    builtin: echo\n"
                .into(),
            "6:13".into(),
            "e",
        ),
    ];
    for (text, pos, msg) in cases {
        let (d, r) = check(&[("bad.yaml", &text)]);
        assert_eq!(r.code, Some(1), "{text}\n{}", r.stderr);
        let want = format!("{}:{pos}", d.path().join("bad.yaml").display());
        assert!(
            r.stderr.contains(&want) && r.stderr.contains(msg),
            "expected {want} and {msg:?} in:\n{}\nfor:\n{text}",
            r.stderr
        );
        assert!(r.stdout.is_empty());
    }
}

#[test]
fn errors_of_every_file_are_reported_and_duplicates_name_both_files() {
    let (d, r) = check(&[
        (
            "a.yaml",
            "services:\n  same:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
        ),
        (
            "b.yaml",
            "services:\n  same:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
        ),
        (
            "c.yaml",
            "services:\n  x:\n    listen: nowhere\n    builtin: echo\n",
        ),
        (
            "d.yaml",
            "services:\n  y:\n    listen: 127.0.0.1:0\n    builtin: nope\n",
        ),
    ]);
    assert_eq!(r.code, Some(1));
    let a = d.path().join("a.yaml").display().to_string();
    let b = d.path().join("b.yaml").display().to_string();
    let dup = r
        .stderr
        .lines()
        .find(|l| l.contains("same") && l.contains("b.yaml"))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(dup.contains(&a) && dup.contains(&b), "{dup}");
    assert!(r.stderr.contains("c.yaml:3:13"), "{}", r.stderr);
    assert!(r.stderr.contains("d.yaml:4:14"), "{}", r.stderr);
}

/// Not only the first error of a file: every one, in file order, with
/// the files in the order they are read.
#[test]
fn every_error_of_a_file_is_reported_in_order() {
    let (d, r) = check(&[
        (
            "a.yaml",
            "services:\n  a:\n    lisen: 127.0.0.1:0\n    bultin: echo\n  b:\n    listen: 127.0.0.1:0\n    builtin: echo\n    max_connections: 0\n",
        ),
        ("b.yaml", "services:\n  c:\n    listen: [7, nowhere]\n"),
    ]);
    assert_eq!(r.code, Some(1));
    let at = |f: &str, pos: &str| format!("{}:{pos}: ", d.path().join(f).display());
    let lines: Vec<&str> = r.stderr.lines().collect();
    let want = [
        (at("a.yaml", "3:5"), "unknown field \"lisen\""),
        (at("a.yaml", "4:5"), "unknown field \"bultin\""),
        (at("a.yaml", "8:22"), "max_connections"),
        (at("b.yaml", "3:17"), "bad address \"nowhere\""),
    ];
    assert_eq!(lines.len(), want.len() + 1, "{}", r.stderr);
    for (line, (prefix, text)) in lines.iter().zip(&want) {
        assert!(line.starts_with(prefix.as_str()), "{line:?} vs {prefix:?}");
        assert!(line.contains(text), "{line:?} vs {text:?}");
    }
    assert_eq!(lines[4], "superd: 4 errors in the configuration");
}

#[test]
fn editor_and_package_leftovers_are_never_read() {
    let (_d, r) = check(&[
        (
            "ok.yaml",
            "services:\n  good:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
        ),
        ("x.yaml~", "garbage: ["),
        (".x.yaml.swp", "garbage: ["),
        ("x.yaml.dpkg-old", "garbage: ["),
        ("notes.txt", "garbage: ["),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("good"));
}

#[test]
fn a_config_with_no_services_runs_idle() {
    let dir = TempDir::new("empty");
    dir.write("empty.yaml", "# nothing yet\n");
    let p = dir.path().to_str().unwrap().to_string();
    let d = Superd::spawn(dir, &[&p], &[]);
    d.wait_for(&["ready", "services=0"]);
    assert_eq!(d.stop().code(), Some(0));
}
