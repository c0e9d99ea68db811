//! Tests of the config layer: one per error class, each pinning the exact
//! file:line:column, plus defaults, a full example and one-line mode.

// `&[p.clone()]` reads better in tests than `slice::from_ref(&p)`.
#![allow(clippy::cloned_ref_to_slice_refs)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::service::*;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh private directory, removed with everything in it when dropped.
struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TmpDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

/// A fresh private directory (0755: a config dir must not be writable by
/// others when the tests run as root).
fn tmpdir() -> TmpDir {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("superd-config-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    TmpDir(d)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn root_ctx() -> Context {
    Context {
        euid: 0,
        egid: 0,
        groups: vec![0],
        path: validate::DEFAULT_PATH.into(),
        nr_open: Some(1 << 20),
        hard_limits: vec![(RlimitResource::Core, Some(0))],
        can_raise_limits: true,
        proxy_served: true,
    }
}

fn user_ctx() -> Context {
    Context {
        euid: 65534,
        egid: 65534,
        groups: vec![],
        path: validate::DEFAULT_PATH.into(),
        nr_open: Some(1 << 20),
        hard_limits: vec![(RlimitResource::Core, Some(0))],
        can_raise_limits: false,
        proxy_served: true,
    }
}

fn is_root() -> bool {
    euid_is_root()
}

/// Says on the test output (past libtest's capture, which keeps a passing
/// test's `eprintln!` to itself) that the running test skips, and why.
fn skip(reason: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("a config test");
    let _ = writeln!(std::io::stderr(), "skipped {name}: {reason}");
}

/// `load_with` as these tests need it: validation sees `ctx`, while the
/// file layer's ownership rule (a root superd refuses a config someone else
/// can write, superd.8) follows who really runs the tests. Files root owns
/// cannot be made without root, so a normal user's run that pretends to be
/// root checks everything but that rule, which has its own root-only test
/// (`writable_config_refused_when_root`).
fn load_as(paths: &[PathBuf], ctx: &Context) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let sources = files::collect(paths, ctx.euid == 0 && is_root(), &mut errors);
    finish(&sources, ctx, errors).map_err(|mut errors| {
        in_file_order(&mut errors, paths);
        errors
    })
}

/// Loads one file's text as root would; returns the errors.
fn errs(text: &str) -> (PathBuf, Vec<ConfigError>) {
    let d = tmpdir();
    let p = write(&d, "t.yaml", text);
    let e = load_as(&[p.clone()], &root_ctx()).expect_err("expected errors");
    (p, e)
}

fn ok(text: &str) -> Config {
    let d = tmpdir();
    let p = write(&d, "t.yaml", text);
    load_as(&[p], &root_ctx()).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Asserts exactly one error, at `line:col`, whose message contains `msg`.
fn one(text: &str, line: usize, col: usize, msg: &str) {
    let (p, e) = errs(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    let s = e[0].to_string();
    assert_eq!(e[0].file, p);
    assert_eq!((e[0].line, e[0].column), (Some(line), Some(col)), "{s}");
    assert!(s.contains(msg), "{s:?} does not contain {msg:?}");
}

const ECHO: &str = "services:\n  echo:\n    listen: 127.0.0.1:7007\n    builtin: echo\n";

/// Limits a child could never be given are found at load, not at every
/// connection's exec: nofile above fs.nr_open, and (without root) a hard
/// limit above superd's own. `unlimited` nofile is the kernel's ceiling.
#[test]
fn rlimits_the_child_could_not_have() {
    let c = ok(&format!("{ECHO}    rlimits: {{nofile: unlimited}}\n"));
    let nofile = Rlimit {
        resource: RlimitResource::Nofile,
        soft: Some(1 << 20),
        hard: Some(1 << 20),
    };
    assert_eq!(c.services[0].rlimits, [nofile]);
    one(
        &format!("{ECHO}    rlimits:\n      core: 0\n      nofile: 2000000\n"),
        7,
        7,
        "rlimits: nofile 2000000 is above the kernel's maximum of 1048576 (fs.nr_open)",
    );
    // superd's own hard core limit is 0 in `user_ctx`.
    let d = tmpdir();
    let p = write(
        &d,
        "t.yaml",
        &format!("defaults:\n  rlimits: {{core: \"0:1\"}}\n{ECHO}    rlimits: {{nofile: 8}}\n"),
    );
    let e = load_as(&[p.clone()], &user_ctx()).expect_err("core above the own hard limit");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0].to_string(),
        format!(
            "{}:2:13: rlimits: core 1 is above superd's own hard limit of 0, which only CAP_SYS_RESOURCE can raise",
            p.display()
        )
    );
    // `unlimited` is as much as the child can have.
    let p = write(
        &d,
        "t.yaml",
        &format!("{ECHO}    rlimits: {{core: unlimited}}\n"),
    );
    let c = load_as(&[p], &user_ctx()).unwrap_or_else(|e| panic!("{e:?}"));
    let core = Rlimit {
        resource: RlimitResource::Core,
        soft: Some(0),
        hard: Some(0),
    };
    assert_eq!(c.services[0].rlimits, [core]);
    // With CAP_SYS_RESOURCE any hard limit can be raised.
    let c = ok(&format!("{ECHO}    rlimits: {{core: unlimited}}\n"));
    assert_eq!(c.services[0].rlimits[0].hard, None);
}

/// serde stops at a file's first error; the loader goes on past it, so a
/// file's errors are all reported at once, in the order of the file, and
/// a service with a broken field adds no errors that only follow from it
/// (a misspelt listen is not also a missing listen).
#[test]
fn every_error_of_a_file_is_reported() {
    let (p, e) = errs(
        "services:\n  a:\n    lisen: 1\n    bultin: echo\n  b:\n    listen: 2\n    builtin: nope\n  c:\n    listen: 3\n    builtin: echo\n    max_connections: -1\n    umask: \"999\"\n  \"bad name\":\n    listen: 4\n  d:\n    listen: 5\n    builtin: echo\n    wait: true\n  e:\n    listen: 6\n    builtin: echo\n    env: {A: [1]}\n",
    );
    let at: Vec<(Option<usize>, Option<usize>)> = e.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(
        at,
        [
            (Some(3), Some(5)),
            (Some(4), Some(5)),
            (Some(7), Some(14)),
            (Some(11), Some(22)),
            (Some(12), Some(12)),
            (Some(13), Some(3)),
            (Some(18), Some(5)),
            (Some(22), Some(14)),
        ],
        "{e:#?}"
    );
    assert!(e.iter().all(|e| e.file == p));
    let text: Vec<String> = e.iter().map(|e| e.message.clone()).collect();
    assert!(text[0].starts_with("unknown field \"lisen\""), "{text:?}");
    assert!(text[1].starts_with("unknown field \"bultin\""), "{text:?}");
    assert!(text[2].contains("unknown builtin \"nope\""), "{text:?}");
    assert!(
        text[5].starts_with("bad service name \"bad name\""),
        "{text:?}"
    );
    assert!(text[6].contains("wait: true makes no sense"), "{text:?}");
}

/// A broken `defaults` stops the checks of the services (each might
/// inherit what is broken), not the report of its own errors.
#[test]
fn every_error_of_defaults_is_reported() {
    let (_, e) = errs("defaults:\n  usr: x\n  nice: 99\nservices:\n  a:\n    listen: 1\n");
    let at: Vec<_> = e.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(at, [(Some(2), Some(3)), (Some(3), Some(9))], "{e:#?}");
}

/// The YAML merge key: a service takes every field of the merged
/// mapping(s) it does not set itself; the first of a list wins.
#[test]
fn merge_keys() {
    let c = ok(
        "services:\n  a: &common\n    listen: 127.0.0.1:7100\n    builtin: echo\n    max_connections: 5\n    idle_timeout: 9s\n  b:\n    <<: *common\n    listen: 127.0.0.1:7101\n  c: &other\n    listen: 127.0.0.1:7102\n    builtin: daytime\n    max_connections: 7\n  d:\n    listen: 127.0.0.1:7103\n    <<: [*other, *common]\n",
    );
    let by = |n: &str| c.services.iter().find(|s| s.name == n).unwrap();
    let b = by("b");
    assert_eq!(b.builtin(), Some(Builtin::Echo));
    assert_eq!(b.max_connections, 5);
    assert_eq!(b.idle_timeout, Duration::from_secs(9));
    assert_eq!(b.listen[0].to_string(), "127.0.0.1:7101");
    let d = by("d");
    assert_eq!(d.builtin(), Some(Builtin::Daytime));
    assert_eq!(d.max_connections, 7);
    assert_eq!(d.idle_timeout, Duration::from_secs(9));
    assert_eq!(d.listen[0].to_string(), "127.0.0.1:7103");
    one(
        "services:\n  a:\n    listen: 1\n    builtin: echo\n    <<: 5\n",
        5,
        9,
        "a mapping of service fields to merge",
    );
}

/// superd.yaml(5) lists `null` among the stderr modes; YAML reads a bare `null` (and
/// `~`) as no value, which must still mean the null mode, not the default.
#[test]
fn stderr_null_unquoted_is_the_null_mode() {
    for v in ["null", "~", "\"null\"", "Null"] {
        let c = ok(&format!("{ECHO}    stderr: {v}\n"));
        assert_eq!(c.services[0].stderr, StderrMode::Null, "stderr: {v}");
    }
    let c = ok(&format!("defaults:\n  stderr: null\n{ECHO}"));
    assert_eq!(c.services[0].stderr, StderrMode::Null);
}

/// A bare octal is an error of its field, not of the file: the other
/// errors of the file are reported with it.
#[test]
fn a_bare_octal_hides_no_other_error() {
    let (_, e) = errs(
        "services:\n  a:\n    listen: 1\n    builtin: echo\n    umask: 022\n  b:\n    listen: 2\n    builtin: echo\n    exec: /bin/cat\n    user: nobody\n",
    );
    let text: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(e.len(), 2, "{text:#?}");
    assert!(
        text[0].contains(":5:12: umask: must be a quoted octal"),
        "{text:#?}"
    );
    assert!(
        text[1].contains("exec and builtin are exclusive"),
        "{text:#?}"
    );
}

/// An error in a value replayed from an anchor is reported where the
/// anchor is, and the reading goes on past it (the service being read is
/// skipped, not the anchor's position); a merged field's error names the
/// merging service's `<<`.
#[test]
fn errors_through_anchors_and_merges() {
    let (_, e) = errs(
        "services:\n  base: &base\n    listen: 127.0.0.1:7601\n    builtin: echo\n    bogus: 1\n  m1:\n    <<: *base\n    listen: 127.0.0.1:7602\n  m2:\n    listen: 127.0.0.1:7603\n    builtin: nope\n  m3:\n    listen: 127.0.0.1:7604\n    builtin: echo\n    max_connections: -1\n",
    );
    let text: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter().any(|t| t.contains("unknown field \"bogus\"")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|t| t.contains("unknown builtin \"nope\"")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|t| t.contains("max_connections")),
        "{text:#?}"
    );
    let (p, e) = errs(
        "services:\n  base: &base\n    listen: 127.0.0.1:7601\n    builtin: echo\n    timeout: 0s\n  m1:\n    <<: *base\n    listen: 127.0.0.1:7602\n",
    );
    let m1: Vec<&ConfigError> = e.iter().filter(|e| e.line == Some(7)).collect();
    assert_eq!(m1.len(), 1, "{e:#?}");
    assert_eq!(m1[0].file, p);
    assert_eq!(m1[0].column, Some(5));
    assert!(
        m1[0].message.contains("timeout must be longer than 0"),
        "{e:#?}"
    );
}

/// Only a service's own `user:` may make it root: not `defaults`, and not
/// a mapping it merges.
#[test]
fn a_merge_key_cannot_make_a_service_root() {
    let (_, e) = errs(
        "services:\n  a: &a\n    listen: 127.0.0.1:7611\n    exec: /bin/cat\n    user: root\n  b:\n    <<: *a\n    listen: 127.0.0.1:7612\n",
    );
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!((e[0].line, e[0].column), (Some(6), Some(3)));
    assert!(e[0].message.contains("through a merge key"), "{e:#?}");
}

/// A broken `defaults` stops the checks of every service, in every file:
/// they would report what follows from it.
#[test]
fn a_broken_defaults_adds_no_errors_elsewhere() {
    let d = tmpdir();
    write(
        &d,
        "00-defaults.yaml",
        "defaults:\n  user: nobody\n  max_conections: 3\n",
    );
    write(
        &d,
        "10-a.yaml",
        "services:\n  a:\n    listen: 127.0.0.1:7621\n    exec: /bin/cat\n",
    );
    let e = load_as(&[d.to_path_buf()], &root_ctx()).expect_err("broken defaults");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].message.contains("unknown field \"max_conections\""),
        "{e:#?}"
    );
}

/// A cwd that does not exist is found at load, not by every connection's
/// chdir; under chroot it is looked for inside the jail.
#[test]
fn cwd_must_exist() {
    one(
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: nobody\n    cwd: /no/such/dir\n",
        6,
        10,
        "cwd /no/such/dir is not a directory",
    );
    ok("services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: nobody\n    cwd: /tmp\n");
    // A builtin has no child to change directory.
    ok(&format!("{ECHO}    cwd: /no/such/dir\n"));
}

#[test]
fn unknown_key_at_the_key() {
    one(
        "services:\n  echo:\n    lisen: 7007\n    builtin: echo\n",
        3,
        5,
        "unknown field \"lisen\", expected one of listen, socket, wait, exec",
    );
}

#[test]
fn unknown_top_level_key() {
    one(
        "servces: {}\n",
        1,
        1,
        "unknown field \"servces\", expected one of defaults, services",
    );
}

#[test]
fn wrong_type() {
    one(
        "services:\n  echo:\n    listen: 7007\n    builtin: echo\n    max_connections: many\n",
        5,
        22,
        "expected an integer >= 1",
    );
    one(
        "services:\n  echo:\n    listen: 7007\n    builtin: echo\n    wait: [1]\n",
        5,
        11,
        "invalid type: sequence, expected a boolean",
    );
}

#[test]
fn bad_address() {
    one(
        "services:\n  echo:\n    listen: [7007, \"localhost:7\"]\n    builtin: echo\n",
        3,
        20,
        "bad address \"localhost:7\": expected PORT, :PORT",
    );
    one(
        "services:\n  e:\n    listen: 70000\n    builtin: echo\n",
        3,
        13,
        "bad port",
    );
}

#[test]
fn duplicate_key_anywhere() {
    one(
        "services:\n  echo:\n    listen: 7007\n    builtin: echo\n    listen: 7008\n",
        5,
        5,
        "duplicate key \"listen\" (first at line 3)",
    );
    one(
        "services:\n  a:\n    listen: 1\n    builtin: echo\n    env: {A: x, A: y}\n",
        5,
        17,
        "duplicate key \"A\"",
    );
}

#[test]
fn duplicate_service_across_files() {
    let d = tmpdir();
    let a = write(&d, "a.yaml", ECHO);
    let b = write(
        &d,
        "b.yaml",
        "\nservices:\n  echo:\n    listen: 7008\n    builtin: echo\n",
    );
    let e = load_as(&[d.to_path_buf()], &root_ctx()).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].file, b);
    assert_eq!((e[0].line, e[0].column), (Some(3), Some(3)));
    let s = e[0].to_string();
    assert!(
        s.contains(&format!("already defined at {}:2:3", a.display())),
        "{s}"
    );
}

#[test]
fn same_address_in_two_services() {
    let text = "services:\n  a:\n    listen: 7000\n    builtin: echo\n  b:\n    listen: \"127.0.0.1:7000\"\n    builtin: echo\n";
    let (p, e) = errs(text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].line, e[0].column), (Some(6), Some(13)));
    // Both services are named: the one whose address is reported, and the
    // one it conflicts with.
    assert!(
        e[0].message.contains(&format!(
            "service \"b\": address 127.0.0.1:7000 conflicts with *:7000 of service \"a\" ({}:2:3)",
            p.display()
        )),
        "{}",
        e[0]
    );
    // TCP and UDP do not conflict; disabled services do not either; port 0 never.
    ok(
        "services:\n  a:\n    listen: 7000\n    builtin: echo\n  b:\n    listen: 7000\n    socket: dgram\n    builtin: echo\n",
    );
    ok(
        "services:\n  a:\n    listen: 7000\n    builtin: echo\n  b:\n    listen: 7000\n    enabled: false\n    builtin: echo\n",
    );
    ok("services:\n  a:\n    listen: [0, 0]\n    builtin: echo\n");
    // Twice in one service.
    one(
        "services:\n  a:\n    listen: [\"/run/x.sock\", \"/run/x.sock\"]\n    builtin: echo\n",
        3,
        29,
        "of the same service",
    );
    // A service with another error still has its conflicts reported, in
    // the same run: both sides here have one.
    let (_, e) = errs(
        "services:\n  a:\n    listen: 7000\n    builtin: echo\n    wait: true\n  b:\n    listen: \"[::]:7000\"\n    builtin: echo\n    chroot: /nonexistent/superd\n",
    );
    let msgs: Vec<String> = e.iter().map(|e| e.message.clone()).collect();
    assert_eq!(e.len(), 3, "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("wait: true")), "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m.contains("not a directory")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("[::]:7000 conflicts with *:7000 of service \"a\"")),
        "{msgs:?}"
    );
}

#[test]
fn bare_octal_umask() {
    let base = "services:\n  a:\n    listen: 1\n    builtin: echo\n";
    one(
        &format!("{base}    umask: 022\n"),
        5,
        12,
        "must be a quoted octal string",
    );
    one(
        &format!("{base}    umask: 22\n"),
        5,
        12,
        "must be a quoted octal string",
    );
    one(
        &format!("{base}    socket_mode: 0o660\n"),
        5,
        18,
        "must be a quoted octal string",
    );
    one(
        &format!("{base}    umask: \"0999\"\n"),
        5,
        12,
        "bad mode \"0999\"",
    );
    let c = ok(&format!(
        "{base}    umask: \"0027\"\n    socket_mode: '660'\n"
    ));
    assert_eq!(c.services[0].umask, 0o027);
    assert_eq!(c.services[0].socket_mode, 0o660);
}

#[test]
fn alias_bomb() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    text.push_str("services: *a8\n");
    let (_, e) = errs(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].message.contains("expands to more than"), "{}", e[0]);
    // The node being counted when the bound is hit: inside the anchored list.
    assert_eq!((e[0].line, e[0].column), (Some(1), Some(31)), "{}", e[0]);
}

#[test]
fn nesting_bound() {
    let deep = format!("{}1{}", "[".repeat(20), "]".repeat(20));
    one(
        &format!("services: {deep}\n"),
        1,
        26,
        "nested deeper than 16 levels",
    );
}

#[test]
fn file_over_one_mib() {
    let d = tmpdir();
    let p = write(&d, "big.yaml", &format!("# {}\n", "x".repeat(1 << 20)));
    let e = load_as(&[p.clone()], &root_ctx()).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].file.clone(), e[0].line), (p, None));
    assert!(e[0].message.contains("larger than 1048576 bytes"));
}

#[test]
fn non_regular_files() {
    let d = tmpdir();
    let fifo = d.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    std::os::unix::fs::symlink(&fifo, d.join("x.yaml")).unwrap();
    std::fs::create_dir(d.join("sub.yaml")).unwrap();
    let e = load_as(&[d.to_path_buf()], &root_ctx()).unwrap_err();
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].file, d.join("sub.yaml"));
    assert_eq!(e[0].message, "not a regular file");
    assert_eq!(e[1].file, d.join("x.yaml"));
    assert_eq!(e[1].message, "not a regular file");
    // A symlink to a regular file is followed.
    let real = write(&d, "real", ECHO);
    std::os::unix::fs::symlink(&real, d.join("link.yaml")).unwrap();
    assert!(load_as(&[d.join("link.yaml")], &root_ctx()).is_ok());
    // A missing path is an error.
    let e = load_as(&[d.join("nope")], &root_ctx()).unwrap_err();
    assert_eq!(e[0].message, "no such file or directory");
}

#[test]
fn exec_not_found() {
    one(
        "services:\n  a:\n    listen: 1\n    exec: [/nonexistent/prog, -x]\n    user: nobody\n",
        4,
        12,
        "program /nonexistent/prog not found",
    );
    one(
        "services:\n  a:\n    listen: 1\n    exec: no-such-program-here\n    user: nobody\n",
        4,
        11,
        "program \"no-such-program-here\" not found in PATH",
    );
    // A relative path with a slash is relative to the file's directory.
    one(
        "services:\n  a:\n    listen: 1\n    exec: ./rel\n    user: nobody\n",
        4,
        11,
        "/rel not found",
    );
    let d = tmpdir();
    let prog = write(&d, "tool.sh", "#!/bin/sh\n");
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = write(
        &d,
        "t.yaml",
        "services:\n  a:\n    listen: 1\n    exec: [./tool.sh, x]\n    user: nobody\n",
    );
    let c = load_as(&[p], &root_ctx()).unwrap();
    match &c.services[0].program {
        Program::Exec { path, argv } => {
            assert_eq!(path, &std::fs::canonicalize(&d).unwrap().join("./tool.sh"));
            assert_eq!(argv, &["./tool.sh", "x"]);
        }
        other => panic!("{other:?}"),
    }
    // A bare name is found in PATH; argv[0] stays as written.
    let c = ok("services:\n  a:\n    listen: 1\n    exec: sh\n    user: nobody\n");
    match &c.services[0].program {
        Program::Exec { path, argv } => {
            assert!(path.is_absolute() && path.ends_with("sh"));
            assert_eq!(argv, &["sh"]);
        }
        p => panic!("{p:?}"),
    }
}

#[test]
fn exec_and_builtin() {
    one(
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    builtin: echo\n    user: nobody\n",
        5,
        5,
        "exec and builtin are exclusive",
    );
    one(
        "services:\n  a:\n    listen: 1\n    user: nobody\n",
        2,
        3,
        "needs exec or builtin",
    );
}

#[test]
fn unknown_user_and_group() {
    one(
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: no-such-user-x\n",
        5,
        11,
        "unknown user \"no-such-user-x\"",
    );
    one(
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: nobody\n    groups: [root, nogroupx]\n",
        6,
        20,
        "unknown group \"nogroupx\"",
    );
    // In defaults, whether or not a service inherits it.
    one(
        "defaults:\n  socket_group: nogroupx\nservices: {}\n",
        2,
        17,
        "unknown group \"nogroupx\"",
    );
    one(
        "defaults:\n  user: no-such-user-x\nservices:\n  a:\n    listen: 1\n    exec: /bin/cat\n",
        2,
        9,
        "unknown user \"no-such-user-x\"",
    );
}

#[test]
fn root_rule() {
    if !is_root() {
        skip("the root rule is only checked when the tests run as root");
        return;
    }
    // The real context: superd as root refuses an exec service without a
    // user, and a root user coming from defaults.
    let d = tmpdir();
    let p = write(
        &d,
        "t.yaml",
        "defaults:\n  user: 0\nservices:\n  a:\n    listen: 1\n    exec: /bin/cat\n",
    );
    let e = load(&[p]).unwrap_err();
    assert_eq!((e[0].line, e[0].column), (Some(4), Some(3)));
    assert!(
        e[0].message.contains("would run as root through defaults"),
        "{}",
        e[0]
    );
    let p = write(
        &d,
        "u.yaml",
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n",
    );
    let e = load(&[p]).unwrap_err();
    assert!(e[0].message.contains("needs a user"), "{}", e[0]);
}

#[test]
fn root_rule_with_root_context() {
    // These use a root context, so they hold whoever runs the tests.
    one(
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n",
        2,
        3,
        "needs a user: superd runs as root",
    );
    let d = tmpdir();
    let p = write(
        &d,
        "t.yaml",
        "defaults:\n  user: root\nservices:\n  a:\n    listen: 1\n    exec: /bin/cat\n  b:\n    listen: 2\n    exec: /bin/cat\n    user: root\n",
    );
    let e = load_as(&[p.clone()], &root_ctx()).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].line, e[0].column), (Some(4), Some(3)));
    assert!(
        e[0].message.contains("would run as root through defaults"),
        "{}",
        e[0]
    );
    // A service's own `user: 0` is fine; builtins need no user.
    let c = ok(
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: 0\n  b:\n    listen: 2\n    builtin: echo\n",
    );
    assert_eq!(c.services[0].credentials.as_ref().unwrap().uid, 0);
    assert_eq!(c.services[1].credentials, None);
}

#[test]
fn not_root_rules() {
    let d = tmpdir();
    let p = write(
        &d,
        "t.yaml",
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n",
    );
    let c = load_as(&[p], &user_ctx()).unwrap();
    assert_eq!(c.services[0].credentials, None);
    let p = write(
        &d,
        "u.yaml",
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: root\n",
    );
    // Not root: the user is validated, then the child keeps superd's
    // identity (as xinetd does).
    let c = load_as(&[p], &user_ctx()).unwrap();
    assert_eq!(c.services[0].credentials, None);
    let p = write(
        &d,
        "v.yaml",
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: no-such-user-x\n",
    );
    let e = load_as(&[p], &user_ctx()).unwrap_err();
    assert_eq!((e[0].line, e[0].column), (Some(5), Some(11)), "{}", e[0]);
}

#[test]
fn writable_config_refused_when_root() {
    if !is_root() {
        skip("the ownership rule applies only when superd runs as root");
        return;
    }
    let d = tmpdir();
    let p = write(&d, "t.yaml", ECHO);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o646)).unwrap();
    let e = load_with(&[p.clone()], &root_ctx()).unwrap_err();
    assert!(e[0].message.contains("writable by everyone"), "{}", e[0]);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let e = load_with(&[p.clone()], &root_ctx()).unwrap_err();
    assert!(
        e[0].message.contains("owned by uid 65534, not root"),
        "{}",
        e[0]
    );
    // The directory counts too.
    nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = load_with(&[d.to_path_buf()], &root_ctx()).unwrap_err();
    assert!(e[0].message.contains("writable by everyone"), "{}", e[0]);
    // Not root: no ownership rule.
    assert!(load_with(&[p], &user_ctx()).is_ok());
}

#[test]
fn defaults_in_two_files() {
    let d = tmpdir();
    let a = write(&d, "a.yaml", "defaults:\n  user: nobody\n");
    let b = write(&d, "b.yaml", "services: {}\ndefaults:\n  user: nobody\n");
    let e = load_as(&[d.to_path_buf()], &root_ctx()).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        (e[0].file.clone(), e[0].line, e[0].column),
        (b, Some(2), Some(1))
    );
    assert!(
        e[0].message
            .contains(&format!("already set in {}:1:1", a.display()))
    );
    one(
        "defaults:\n  listen: 7\n",
        2,
        3,
        "listen cannot be set in defaults",
    );
}

#[test]
fn directory_listing() {
    let d = tmpdir();
    for junk in [
        "x.yaml~",
        ".x.yaml",
        ".x.yaml.swp",
        "x.yaml.dpkg-old",
        "x.txt",
    ] {
        write(&d, junk, "garbage: [");
    }
    write(
        &d,
        "b.yml",
        "services:\n  b:\n    listen: 2\n    builtin: echo\n",
    );
    write(
        &d,
        "a.yaml",
        "services:\n  a:\n    listen: 1\n    builtin: echo\n",
    );
    write(
        &d,
        "C.yaml",
        "services:\n  c:\n    listen: 3\n    builtin: echo\n",
    );
    write(&d, "empty.yaml", "");
    write(&d, "comments.yaml", "# nothing here\n");
    let c = load_as(&[d.to_path_buf()], &root_ctx()).unwrap();
    let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["c", "a", "b"]);
}

#[test]
fn every_default() {
    let c = ok("services:\n  echo:\n    listen: 7007\n    exec: /bin/cat\n    user: nobody\n");
    let s = &c.services[0];
    assert_eq!(s.listen, [Address::AnyPort(7007)]);
    assert_eq!(s.socket, SocketType::Stream);
    assert!(!s.wait);
    let cr = s.credentials.as_ref().unwrap();
    assert_eq!(cr.user, "nobody");
    assert_eq!(s.cwd, PathBuf::from("/"));
    assert_eq!(s.chroot, None);
    assert_eq!(s.umask, 0o022);
    assert_eq!(s.nice, None);
    assert!(s.env.is_empty());
    assert_eq!(s.stderr, StderrMode::Socket);
    assert_eq!(s.max_connections, 256);
    assert_eq!(s.max_per_source, None);
    assert_eq!(s.rate, None);
    assert!(s.only_from.is_none() && s.deny_from.is_empty());
    assert_eq!(s.timeout, None);
    assert_eq!(s.kill_grace, Duration::from_secs(5));
    assert_eq!(s.idle_timeout, Duration::from_secs(60));
    assert!(s.rlimits.is_empty());
    assert_eq!(s.backlog, 1024);
    assert!(!s.reuse_port && !s.v6only && !s.keepalive && !s.nodelay);
    assert_eq!(s.socket_mode, 0o666);
    assert_eq!((s.socket_user, s.socket_group), (None, None));
    assert!(s.enabled);
    // dgram waits by default.
    let c = ok(
        "services:\n  u:\n    listen: 7\n    socket: dgram\n    exec: /bin/cat\n    user: nobody\n",
    );
    assert!(c.services[0].wait);
}

/// A UDP builtin waits by default, as inetd's `daytime dgram udp wait
/// root internal` is written; it never forks, so `wait: false` (written,
/// or from defaults that also serve TCP exec services) changes nothing
/// and is accepted, as before.
#[test]
fn dgram_builtins_wait() {
    let b =
        "services:\n  d:\n    listen: 127.0.0.1:7013\n    socket: dgram\n    builtin: daytime\n";
    assert!(ok(b).services[0].wait);
    assert!(ok(&format!("{b}    wait: true\n")).services[0].wait);
    assert!(!ok(&format!("{b}    wait: false\n")).services[0].wait);
    let c = ok(&format!(
        "defaults:\n  wait: false\n{}",
        b.trim_start_matches("services:\n")
            .replace("  d:", "services:\n  d:")
    ));
    assert!(!c.services[0].wait);
}

#[test]
fn every_field() {
    let d = tmpdir();
    let chroot = d.join("jail");
    std::fs::create_dir_all(chroot.join("bin")).unwrap();
    std::fs::create_dir_all(chroot.join("tmp")).unwrap();
    std::fs::copy("/bin/cat", chroot.join("bin/cat")).unwrap();
    let text = format!(
        r#"defaults:
  env: {{A: "1", B: b}}
  rlimits: {{core: 0}}
services:
  full:
    listen: ["127.0.0.1:7008", "[::1]:7008", ":7009", "*:7010", "0.0.0.0:7011", "[::]:7012"]
    socket: stream
    wait: false
    exec: [/bin/cat, -u, 5]
    user: nobody
    group: root
    groups: [root, 0]
    cwd: /tmp
    chroot: {chroot}
    umask: "0027"
    nice: -5
    env: {{B: 2, C: true, D: "x y"}}
    stderr: log
    max_connections: 8
    max_per_source: 2
    rate: 10/m
    only_from: [10.0.0.1/8, "::ffff:192.168.1.1/120", "2001:db8::1/32"]
    deny_from: 10.1.2.3
    timeout: 1.5
    kill_grace: 500ms
    idle_timeout: 2m
    rlimits: {{nofile: 64, as: 1G, stack: "8M:unlimited", cpu: unlimited, nproc: "10:20"}}
    backlog: 16
    reuse_port: true
    v6only: true
    keepalive: true
    nodelay: true
    socket_mode: "0600"
    socket_user: nobody
    socket_group: 0
    enabled: false
  unix:
    listen: ["/run/superd-test.sock", "@abstract"]
    socket: seqpacket
    exec: cat
    user: root
"#,
        chroot = chroot.display()
    );
    let p = write(&d, "t.yaml", &text);
    let c = load_as(&[p.clone()], &root_ctx()).unwrap_or_else(|e| panic!("{e:?}"));
    let s = &c.services[0];
    let sa = |x: &str| Address::Inet(x.parse::<SocketAddr>().unwrap());
    assert_eq!(s.name, "full");
    assert_eq!(s.file, p);
    assert_eq!(
        s.listen,
        [
            sa("127.0.0.1:7008"),
            sa("[::1]:7008"),
            Address::AnyPort(7009),
            Address::AnyPort(7010),
            sa("0.0.0.0:7011"),
            sa("[::]:7012"),
        ]
    );
    assert!(!s.wait);
    assert_eq!(
        s.program,
        Program::Exec {
            path: "/bin/cat".into(),
            argv: vec!["/bin/cat".into(), "-u".into(), "5".into()]
        }
    );
    let cr = s.credentials.as_ref().unwrap();
    assert_eq!((cr.user.as_str(), cr.gid), ("nobody", 0));
    assert_eq!(cr.groups, [0, 0]);
    assert_eq!(s.cwd, PathBuf::from("/tmp"));
    assert_eq!(s.chroot.as_deref(), Some(chroot.as_path()));
    assert_eq!((s.umask, s.nice), (0o027, Some(-5)));
    let env: Vec<(&str, &str)> = s
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env, [("A", "1"), ("B", "2"), ("C", "true"), ("D", "x y")]);
    assert_eq!(s.stderr, StderrMode::Log);
    assert_eq!((s.max_connections, s.max_per_source), (8, Some(2)));
    assert_eq!(
        s.rate,
        Some(Rate {
            tokens: 10,
            per: Duration::from_secs(60)
        })
    );
    let nets: Vec<String> = s
        .only_from
        .iter()
        .flatten()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"]);
    assert_eq!(s.deny_from[0].to_string(), "10.1.2.3/32");
    assert_eq!(s.timeout, Some(Duration::from_millis(1500)));
    assert_eq!(s.kill_grace, Duration::from_millis(500));
    assert_eq!(s.idle_timeout, Duration::from_secs(120));
    let rl = |r, soft, hard| Rlimit {
        resource: r,
        soft,
        hard,
    };
    assert_eq!(
        s.rlimits,
        [
            rl(RlimitResource::Core, Some(0), Some(0)),
            rl(RlimitResource::Nofile, Some(64), Some(64)),
            rl(RlimitResource::As, Some(1 << 30), Some(1 << 30)),
            rl(RlimitResource::Stack, Some(8 << 20), None),
            rl(RlimitResource::Cpu, None, None),
            rl(RlimitResource::Nproc, Some(10), Some(20)),
        ]
    );
    assert_eq!(s.backlog, 16);
    assert!(s.reuse_port && s.v6only && s.keepalive && s.nodelay);
    assert_eq!(s.socket_mode, 0o600);
    assert_eq!((s.socket_user, s.socket_group), (Some(65534), Some(0)));
    assert!(!s.enabled);
    let u = &c.services[1];
    assert_eq!(
        u.listen,
        [
            Address::UnixPath("/run/superd-test.sock".into()),
            Address::UnixAbstract(b"abstract".to_vec())
        ]
    );
    assert_eq!(u.socket, SocketType::Seqpacket);
    assert_eq!(u.credentials.as_ref().unwrap().uid, 0);
}

#[test]
fn field_rules() {
    let b = "services:\n  a:\n    listen: 1\n";
    one(
        &format!("{b}    builtin: echo\n    wait: true\n"),
        5,
        5,
        "wait: true makes no sense for a builtin",
    );
    one(
        &format!("{b}    exec: /bin/cat\n    user: nobody\n    socket: seqpacket\n"),
        6,
        13,
        "seqpacket needs unix addresses",
    );
    one(
        "services:\n  a:\n    listen: /run/x\n    socket: dgram\n    builtin: echo\n",
        5,
        14,
        "builtin echo cannot serve unix dgram sockets",
    );
    one(
        "services:\n  a:\n    listen: \"@x\"\n    socket: seqpacket\n    builtin: echo\n",
        5,
        14,
        "builtin echo cannot serve seqpacket sockets",
    );
    one(
        "services:\n  a:\n    listen: 1\n    socket: dgram\n    wait: false\n    exec: /bin/cat\n    user: nobody\n",
        5,
        5,
        "dgram services need wait: true",
    );
    one(
        &format!("{b}    builtin: echo\n    nice: 20\n"),
        5,
        11,
        "nice 20 is out of range",
    );
    one(
        &format!("{b}    builtin: echo\n    rate: 0/s\n"),
        5,
        11,
        "bad rate \"0/s\"",
    );
    one(
        &format!("{b}    builtin: echo\n    timeout: 0\n"),
        5,
        5,
        "timeout must be longer than 0",
    );
    one(
        &format!("{b}    builtin: echo\n    rlimits: {{core: \"2:1\"}}\n"),
        5,
        21,
        "soft limit exceeds",
    );
    one(
        &format!("{b}    builtin: echo\n    rlimits: {{cores: 1}}\n"),
        5,
        15,
        "unknown rlimit \"cores\"",
    );
    one(
        &format!("{b}    builtin: echo\n    env: {{1A: x}}\n"),
        5,
        11,
        "bad variable name \"1A\"",
    );
    one(
        &format!("{b}    builtin: echo\n    cwd: tmp\n"),
        5,
        10,
        "expected an absolute path",
    );
    one(
        &format!("{b}    builtin: echo\n    only_from: [10.0.0.0/33]\n"),
        5,
        17,
        "prefix longer than 32",
    );
    one(
        &format!("{b}    builtin: lol\n"),
        4,
        14,
        "unknown builtin \"lol\", expected one of echo",
    );
    one(
        &format!("{b}    exec: \"/bin/c\\0at\"\n    user: nobody\n"),
        4,
        11,
        "NUL",
    );
    one(
        "services:\n  \"a b\":\n    listen: 1\n",
        2,
        3,
        "bad service name \"a b\"",
    );
    one(
        "services: {a: 1}\n---\nservices: {}\n",
        3,
        1,
        "a second YAML document",
    );
    one(
        "services: {a: {listen: 1, builtin: echo}\n",
        2,
        1,
        "did not find expected",
    );
}

/// Every struct refuses unknown fields (`deny_unknown_fields` and the
/// hand-written maps alike).
#[test]
fn unknown_fields_everywhere() {
    one("bogus: 1\n", 1, 1, "unknown field \"bogus\"");
    one("defaults:\n  bogus: 1\n", 2, 3, "unknown field \"bogus\"");
    one(
        "services:\n  a:\n    bogus: 1\n",
        3,
        5,
        "unknown field \"bogus\"",
    );
    one(
        "services:\n  a:\n    rlimits:\n      bogus: 1\n",
        4,
        7,
        "unknown rlimit \"bogus\"",
    );
}

#[test]
fn empty_and_null_files() {
    for text in ["", "---\n", "~\n", "services:\n", "services: {}\n"] {
        assert!(ok(text).services.is_empty(), "{text:?}");
    }
    assert!(load_as(&[], &root_ctx()).unwrap().services.is_empty());
}

#[test]
fn errors_from_every_file() {
    let d = tmpdir();
    write(&d, "a.yaml", "services:\n  a:\n    lisen: 1\n");
    write(&d, "b.yaml", "services:\n  b:\n    listen: nope\n");
    let e = load_as(&[d.to_path_buf()], &root_ctx()).unwrap_err();
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn oneline() {
    let ctx = root_ctx();
    let c = oneline_with(
        &["127.0.0.1:7000".into()],
        &[
            ("user".into(), "nobody".into()),
            ("max_connections".into(), "8".into()),
            ("umask".into(), "'027'".into()),
            ("env".into(), "{A: b}".into()),
        ],
        &["/bin/cat".into(), "-u".into()],
        &ctx,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let s = &c.services[0];
    assert_eq!(s.name, "cat");
    assert_eq!(s.max_connections, 8);
    assert_eq!(s.umask, 0o027);
    assert_eq!(s.env, [("A".to_owned(), "b".to_owned())]);
    assert_eq!(s.file, PathBuf::from(COMMAND_LINE));

    // The errors of `superd --listen 7000 --set F=V... -- /bin/cat`.
    let rejected = |sets: &[(&str, &str)]| {
        let sets: Vec<(String, String)> = sets
            .iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect();
        oneline_with(&["7000".into()], &sets, &["/bin/cat".into()], &ctx).unwrap_err()
    };
    // A bare octal is refused before the values are validated together.
    let e = rejected(&[
        ("user", "nobody"),
        ("max_connections", "0"),
        ("umask", "022"),
    ]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0].to_string(),
        format!(
            "{COMMAND_LINE}: --set umask=022: must be a quoted octal string like \"022\" (a bare number is not read as octal)"
        )
    );
    let e = rejected(&[("user", "nobody"), ("max_connections", "0")]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0].to_string(),
        format!("{COMMAND_LINE}: --set max_connections=0: expected an integer >= 1, found 0")
    );
    // A value cannot inject structure; an unknown field is named.
    let e = rejected(&[("user", "nobody\nexec: /bin/sh")]);
    assert!(
        e[0].message
            .starts_with("--set user=nobody\nexec: /bin/sh: mapping values are not allowed"),
        "{e:?}"
    );
    let e = rejected(&[("user", "nobody"), ("lisen", "1")]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].message
            .starts_with("--set lisen=1: unknown field \"lisen\", expected one of listen"),
        "{e:?}"
    );
    // As root, without --set user=, the service runs as nobody, never as
    // root; --set user=root is the way to say root.
    let as_root = |sets: &[(String, String)]| {
        oneline_with(&["7000".into()], sets, &["/bin/cat".into()], &ctx)
            .unwrap_or_else(|e| panic!("{e:?}"))
    };
    for sets in [vec![], vec![("user".to_string(), "null".to_string())]] {
        let c = as_root(&sets);
        let cred = c.services[0].credentials.as_ref().expect("a user");
        assert_eq!(
            (cred.user.as_str(), cred.uid),
            ("nobody", 65534),
            "{sets:?}"
        );
    }
    let c = as_root(&[("user".into(), "root".into())]);
    assert_eq!(c.services[0].credentials.as_ref().map(|c| c.uid), Some(0));
}

#[test]
fn thousand_services_fast() {
    let mut text = String::from("defaults:\n  user: nobody\nservices:\n");
    for i in 0..1000 {
        text.push_str(&format!(
            "  s{i}:\n    listen: \"127.0.0.1:{}\"\n    exec: [/bin/cat, -u]\n    umask: \"027\"\n    max_connections: 4\n",
            10000 + i
        ));
    }
    let d = tmpdir();
    let p = write(&d, "big.yaml", &text);
    let t = std::time::Instant::now();
    let c = load_as(&[p], &root_ctx()).unwrap();
    let el = t.elapsed();
    assert_eq!(c.services.len(), 1000);
    eprintln!("1000 services loaded in {el:?}");
}

#[test]
fn deep_flow_brackets_are_refused_before_libyaml_sees_them() {
    // 1 MiB of `[` took libyaml minutes; refused at the 65th bracket.
    let text = format!("services: {}", "[".repeat(200));
    one(
        &text,
        1,
        11 + tree::MAX_FLOW_BRACKETS,
        "nested deeper than 64",
    );
    let text = format!("services:\n  x: {}", "{a: ".repeat(100));
    one(&text, 2, 6 + 4 * tree::MAX_FLOW_BRACKETS, "brackets");
    // Closers inside quoted scalars and comments do not count down.
    let text = format!("services: {}", "{a: \"}\", b: ".repeat(80));
    one(&text, 1, 11 + 12 * tree::MAX_FLOW_BRACKETS, "brackets");
    // Brackets in a quoted argument are fine.
    ok("services:\n  x:\n    listen: 127.0.0.1:0\n    exec: [/bin/echo, '[{']\n    user: root\n");
}

#[test]
fn a_long_line_costs_linear_time() {
    // Columns were counted from the line start for every scalar:
    // quadratic in the line length.
    let mut text = String::from("services: {");
    for i in 0..20_000 {
        text.push_str(&format!("s{i}: {{listen: [x]}}, "));
    }
    text.push('}');
    let start = std::time::Instant::now();
    let (_, e) = errs(&text);
    assert!(!e.is_empty());
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}

/// Quoted IPv6 addresses and commented-out flow lists hold brackets that
/// are text, not nesting: a file with many of them is valid.
#[test]
fn brackets_in_quotes_and_comments_do_not_add_up() {
    let mut text = String::from("services:\n");
    for i in 0..120 {
        text.push_str(&format!(
            "  # old: listen: [\"[::1]:{p}\", \"[::2]:{p}\"]\n  s{i}:\n    listen: [\"127.0.0.1:{p}\", \"[::1]:{p}\"]\n    builtin: echo\n",
            p = 20000 + i
        ));
    }
    let c = ok(&text);
    assert_eq!(c.services.len(), 120);
}

/// A duration large enough to overflow the clock is refused at load, not
/// left to panic the daemon later.
#[test]
fn durations_are_bounded() {
    for field in ["timeout", "kill_grace", "idle_timeout"] {
        for v in ["9223372036854775807", "\"9000000000000000000s\"", "1e300"] {
            let (_, e) = errs(&format!(
                "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    {field}: {v}\n"
            ));
            assert!(
                e.iter()
                    .any(|e| e.line == Some(5) && e.message.contains("at most")),
                "{field}: {v}: {e:?}"
            );
        }
    }
    ok("services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    idle_timeout: 86400\n");
}

/// `[::]` with `v6only: true` leaves IPv4 free: the split-stack pair is
/// no conflict; without v6only it is.
#[test]
fn v6only_wildcard_does_not_conflict_with_ipv4() {
    ok(
        "services:\n  a:\n    listen: [\"[::]:7600\", \"0.0.0.0:7600\"]\n    builtin: echo\n    v6only: true\n",
    );
    let (_, e) =
        errs("services:\n  a:\n    listen: [\"[::]:7601\", \"0.0.0.0:7601\"]\n    builtin: echo\n");
    assert!(!e.is_empty());
}

/// The bare-octal rule is about the service fields, not any key spelled
/// `umask` (an `env` variable may be called that).
#[test]
fn bare_octal_rule_only_for_service_fields() {
    ok("services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    env:\n      umask: 022\n");
}

/// Bytes that are no YAML at all are reported where they are: the first
/// byte that is not UTF-8, or a control character YAML does not allow.
#[test]
fn bytes_that_are_no_yaml_have_a_line_and_column() {
    use super::files::decode;
    assert_eq!(
        decode(b"services:\n  a\0b:\n".to_vec()).unwrap_err(),
        (
            2,
            4,
            "control character U+0000 is not allowed in YAML".into()
        )
    );
    assert_eq!(
        decode(b"services:\n  \xc3\xa9\xff: 1\n".to_vec()).unwrap_err(),
        (2, 4, "not valid UTF-8 (byte 0xff)".into())
    );
    let e = decode("a: \u{1b}[2J\n".as_bytes().to_vec()).unwrap_err();
    assert_eq!((e.0, e.1), (1, 4));
    // Tabs, CR, NEL and byte order marks are what the YAML reader takes.
    for ok in [
        "\u{feff}a: 1\n",
        "a: \"x\ty\"\r\n",
        "a: \"\u{85}\"\n",
        "a: \"x\u{feff}y\"\n",
    ] {
        assert!(decode(ok.as_bytes().to_vec()).is_ok(), "{ok:?}");
    }
    // Lone CRs and CRLFs end lines too.
    let e = decode(b"a: 1\rb: 2\r\nc: \x01\n".to_vec()).unwrap_err();
    assert_eq!((e.0, e.1), (3, 4));
    // Through the loader, with the file named.
    let (p, e) = errs("services:\n  a\0b:\n    listen: 1\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0].to_string(),
        format!(
            "{}:2:4: control character U+0000 is not allowed in YAML",
            p.display()
        )
    );
}

/// A duration past the 10-year bound is refused naming the value written,
/// whatever its unit.
#[test]
fn a_too_long_duration_names_its_value() {
    let b = "services:\n  a:\n    listen: 1\n    builtin: echo\n    idle_timeout: ";
    for (v, secs) in [
        ("87601h", "315363600"),
        ("5256001m", "315360060"),
        ("315360001", "315360001"),
    ] {
        one(
            &format!("{b}{v}\n"),
            5,
            19,
            &format!("duration of {secs} s is too long: at most 10 years (315360000 s)"),
        );
    }
}

#[test]
fn access_rules_only_where_applied() {
    // TCP wait: the child accepts.
    one(
        "services:\n  a:\n    listen: 1\n    wait: true\n    exec: /bin/cat\n    user: nobody\n    deny_from: 10.0.0.0/8\n",
        7,
        16,
        "deny_from cannot be applied: a wait service's child accepts",
    );
    // A dgram wait service with an address of its own on TCP: the child
    // accepts there too.
    one(
        "services:\n  a:\n    listen: [127.0.0.1:53, {address: 127.0.0.1:53, socket: stream}]\n    socket: dgram\n    wait: true\n    pass: listen_fds\n    exec: /bin/cat\n    user: nobody\n    deny_from: 10.0.0.0/8\n",
        9,
        16,
        "deny_from cannot be applied: a wait service's child accepts",
    );
    // A UDP wait service: the head datagram is checked.
    ok(
        "services:\n  a:\n    listen: [127.0.0.1:53, {address: 127.0.0.1:54, socket: dgram}]\n    socket: dgram\n    wait: true\n    exec: /bin/cat\n    user: nobody\n    deny_from: 10.0.0.0/8\n",
    );
    // A unix socket has no IP peer.
    one(
        "services:\n  a:\n    listen: /run/x.sock\n    exec: /bin/cat\n    user: nobody\n    only_from: [127.0.0.1]\n",
        6,
        17,
        "only_from cannot be applied: a unix socket's peer",
    );
    // No per-source count for datagrams (UDP wait or builtin).
    one(
        "services:\n  a:\n    listen: 1\n    socket: dgram\n    exec: /bin/cat\n    user: nobody\n    max_per_source: 2\n",
        7,
        5,
        "max_per_source cannot be applied: datagrams",
    );
    one(
        "services:\n  a:\n    listen: 1\n    socket: dgram\n    builtin: echo\n    max_per_source: 2\n",
        6,
        5,
        "max_per_source cannot be applied",
    );
    // From defaults: the defaults line, naming the service.
    one(
        "defaults:\n  user: nobody\n  only_from: [127.0.0.1]\nservices:\n  tcpwait:\n    listen: 1\n    wait: true\n    exec: /bin/cat\n",
        3,
        15,
        "service \"tcpwait\": only_from (set in defaults) cannot be applied",
    );
    // Where they apply: nowait TCP, UDP wait (only_from/deny_from), UDP
    // builtins.
    ok(
        "defaults:\n  user: nobody\n  only_from: [127.0.0.1]\n  deny_from: [10.0.0.0/8]\nservices:\n  a:\n    listen: 1\n    exec: /bin/cat\n    max_per_source: 2\n  b:\n    listen: 2\n    socket: dgram\n    exec: /bin/cat\n  c:\n    listen: 3\n    socket: dgram\n    builtin: echo",
    );
    // An empty deny_from is no rule.
    ok(
        "services:\n  d:\n    listen: /run/d.sock\n    exec: /bin/cat\n    user: nobody\n    deny_from: []\n",
    );
}

#[test]
fn group_root_never_through_defaults() {
    let (_, e) = errs(
        "defaults:\n  user: nobody\n  group: root\nservices:\n  a:\n    listen: 1\n    exec: /bin/cat\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].line, e[0].column), (Some(5), Some(3)));
    assert!(
        e[0].message
            .contains("would run with group root through defaults"),
        "{}",
        e[0]
    );
    // Through a merge key neither; a service's own group: root is allowed.
    let (_, e) = errs(
        "services:\n  a: &x\n    listen: 1\n    exec: /bin/cat\n    user: nobody\n    group: 0\n  b:\n    <<: *x\n    listen: 2\n",
    );
    assert!(
        e[0].message.contains("group root through a merge key"),
        "{}",
        e[0]
    );
    ok("services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: nobody\n    group: root\n");
}

#[test]
fn a_fifo_in_place_of_the_program_never_blocks_the_warning_check() {
    // A FIFO swapped in after the load's check: open(2) without O_NONBLOCK
    // would wait for a writer for ever, inside the event loop.
    let d = tmpdir();
    let fifo = d.join("prog");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o755)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let f2 = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(validate::open_regular(&f2).is_some());
    });
    let got = rx.recv_timeout(Duration::from_secs(10));
    // Unblock a thread stuck in open(2), whatever happened.
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo);
    assert_eq!(
        got,
        Ok(false),
        "a FIFO is not a program, and is refused at once"
    );
    let prog = d.join("real");
    std::fs::write(&prog, "#!/bin/sh\n").unwrap();
    assert!(validate::open_regular(&prog).is_some());
}

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

#[test]
fn argv0_is_not_a_default() {
    one(
        "defaults:\n  argv0: x\nservices: {}\n",
        2,
        3,
        "argv0 cannot be set in defaults",
    );
}

const CAT: &str =
    "services:\n  cat:\n    listen: 127.0.0.1:7007\n    exec: /bin/cat\n    user: nobody\n";

/// The fences: paths that exist, are absolute and plain; writable paths
/// under a read-only one; capabilities written as capabilities(7) does,
/// for a non-root user; none on a builtin of its own.
#[test]
fn fences_are_validated_where_they_are_written() {
    let c = ok(&format!(
        "{CAT}    no_new_privs: true\n    private_network: true\n    private_tmp: true\n    read_only_paths: [/, /usr, /usr]\n    writable_paths: /var\n    inaccessible_paths: [/etc/shadow]\n"
    ));
    let f = &c.services[0].fences;
    assert!(f.no_new_privs && f.private_network && f.private_tmp);
    assert_eq!(
        f.read_only_paths,
        [PathBuf::from("/"), PathBuf::from("/usr")]
    );
    assert_eq!(f.writable_paths, [PathBuf::from("/var")]);
    assert_eq!(f.inaccessible_paths, [PathBuf::from("/etc/shadow")]);
    one(
        &format!("{CAT}    read_only_paths: [/usr, /nonexistent-superd]\n"),
        6,
        29,
        "read_only_paths: /nonexistent-superd: no such file or directory",
    );
    one(
        &format!("{CAT}    read_only_paths: [usr]\n"),
        6,
        23,
        "expected an absolute path, found \"usr\"",
    );
    one(
        &format!("{CAT}    read_only_paths: [/usr/../etc]\n"),
        6,
        23,
        "has . or .. in it",
    );
    one(
        &format!("{CAT}    read_only_paths: [/usr]\n    writable_paths: [/var]\n"),
        7,
        22,
        "writable_paths: /var is under no read_only_paths entry",
    );
    one(
        &format!("{CAT}    capabilities: [cap_net_bind_service]\n"),
        6,
        20,
        "unknown capability \"cap_net_bind_service\": write it as capabilities(7) does, CAP_NET_BIND_SERVICE",
    );
    one(
        &format!("{CAT}    capabilities: [NET_RAW]\n"),
        6,
        20,
        "write it as capabilities(7) does, CAP_NET_RAW",
    );
    one(
        &format!("{CAT}    capabilities: [CAP_FLY]\n"),
        6,
        20,
        "unknown capability \"CAP_FLY\"",
    );
    one(
        "services:\n  cat:\n    listen: 127.0.0.1:7007\n    exec: /bin/cat\n    user: root\n    capabilities: [CAP_NET_RAW]\n",
        6,
        5,
        "capabilities are kept by a non-root user",
    );
    one(
        &format!("{ECHO}    private_network: true\n"),
        5,
        5,
        "private_network: a builtin is served inside superd: there is no child to fence",
    );
    one(
        &format!("{CAT}    inaccessible_paths: [/bin]\n"),
        6,
        26,
        "inaccessible_paths: /bin would hide the program /bin/cat",
    );
    // A program under the /tmp or /var/tmp that private_tmp replaces.
    for tmp in ["/tmp", "/var/tmp"] {
        let prog = Path::new(tmp).join(format!("superd-test-prog-{}", std::process::id()));
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (_, e) = errs(&format!(
            "{}    private_tmp: true\n",
            CAT.replace("/bin/cat", prog.to_str().unwrap())
        ));
        let _ = std::fs::remove_file(&prog);
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!((e[0].line, e[0].column), (Some(6), Some(5)), "{}", e[0]);
        let want = format!(
            "private_tmp: the private {tmp} would hide the program {}",
            prog.display()
        );
        assert!(e[0].to_string().contains(&want), "{}", e[0]);
    }
    // From defaults, fences do not concern a builtin.
    let c = ok(&format!(
        "defaults:\n  private_tmp: true\n  user: nobody\n{ECHO}"
    ));
    assert_eq!(c.services[0].fences, crate::service::Fences::default());
}

#[test]
fn capabilities_are_numbered_as_in_linux_capability_h() {
    if !is_root() {
        eprintln!("skipped: superd must hold the capabilities it passes on (root)");
        return;
    }
    let c = ok(&format!(
        "{CAT}    capabilities: [CAP_NET_BIND_SERVICE, CAP_CHECKPOINT_RESTORE, CAP_CHOWN]\n"
    ));
    assert_eq!(c.services[0].fences.capabilities, [10, 40, 0]);
}

/// When superd is not root, every fence but no_new_privs is an error
/// naming the field, where it is written.
#[test]
fn fences_need_root_except_no_new_privs() {
    let d = tmpdir();
    let p = write(
        &d,
        "t.yaml",
        "services:\n  cat:\n    listen: 127.0.0.1:7007\n    exec: /bin/cat\n    no_new_privs: true\n    private_tmp: true\n    read_only_paths: [/]\n    capabilities: [CAP_NET_RAW]\n",
    );
    let e = load_with(&[p.clone()], &user_ctx()).expect_err("fences need root");
    let msgs: Vec<String> = e.iter().map(ToString::to_string).collect();
    let at = |l: usize, field: &str| {
        format!(
            "{}:{l}:5: {field} needs superd to run as root (namespaces, mounts and capabilities are privileged)",
            p.display()
        )
    };
    assert_eq!(
        msgs,
        [
            at(6, "private_tmp"),
            at(7, "read_only_paths"),
            at(8, "capabilities")
        ]
    );
    let p = write(
        &d,
        "t.yaml",
        "services:\n  cat:\n    listen: 127.0.0.1:7007\n    exec: /bin/cat\n    no_new_privs: true\n",
    );
    let c = load_with(&[p], &user_ctx()).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(c.services[0].fences.no_new_privs);
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

/// A program or a cwd under the host's /tmp is not there for a child whose
/// private_tmp replaces /tmp with an empty directory: an error at load,
/// where private_tmp is written, not an exec failure at every connection.
#[test]
fn private_tmp_hiding_the_program_or_the_cwd_is_an_error() {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let d =
        TmpDir(Path::new("/tmp").join(format!("superd-config-hidden-{}-{n}", std::process::id())));
    let _ = std::fs::remove_dir_all(&d.0);
    std::fs::create_dir(&d.0).unwrap();
    std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let prog = write(&d.0, "prog.sh", "#!/bin/sh\n");
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = |fence: &str| {
        format!(
            "services:\n  t:\n    listen: 127.0.0.1:7007\n    exec: {}\n    user: nobody\n    cwd: {}\n{fence}",
            prog.display(),
            d.0.display()
        )
    };
    let (p, e) = errs(&text("    private_tmp: true\n"));
    let msgs: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(
        msgs,
        [
            format!(
                "{}:7:5: private_tmp: the private /tmp would hide the program {}",
                p.display(),
                prog.display()
            ),
            format!(
                "{}:7:5: private_tmp: the private /tmp would hide the cwd {}",
                p.display(),
                d.0.display()
            ),
        ]
    );
    // Without the fence both are found; /tmp itself is a fine cwd with it.
    ok(&text(""));
    let c = ok(
        "services:\n  t:\n    listen: 127.0.0.1:7007\n    exec: /bin/cat\n    user: nobody\n    cwd: /tmp\n    private_tmp: true\n",
    );
    assert!(c.services[0].fences.private_tmp);
}
