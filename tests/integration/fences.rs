//! The fences of superd.yaml(5) seen from inside the child (the probe):
//! no_new_privs, the private network and /tmp, read-only, writable and
//! inaccessible paths, ambient capabilities; their refusal when superd is
//! not root; and what a reload keeps and releases. Root only: each test
//! says so and returns otherwise.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::harness::*;

/// A directory outside /tmp (a private /tmp would hide it), reachable by
/// `nobody`, with a copy of the probe, a setuid-root copy, a read-only
/// tree with a writable directory inside, and things to hide.
struct Jail(PathBuf);

impl Jail {
    fn new(tag: &str) -> Jail {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = outside_tmp().join(format!(
            "fences-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&p);
        for d in ["ro/rw", "hidden"] {
            fs::create_dir_all(p.join(d)).unwrap();
        }
        let mode =
            |path: &Path, m: u32| fs::set_permissions(path, fs::Permissions::from_mode(m)).unwrap();
        // Every ancestor must be searchable by nobody.
        let mut a = p.clone();
        while let Some(parent) = a.parent() {
            if parent.as_os_str().is_empty() || parent == Path::new("/") {
                break;
            }
            let m = fs::metadata(parent).unwrap().permissions().mode();
            if m & 0o001 == 0 {
                mode(parent, m | 0o001);
            }
            a = parent.to_path_buf();
        }
        for d in ["", "ro", "hidden"] {
            mode(&p.join(d), 0o755);
        }
        mode(&p.join("ro/rw"), 0o777);
        fs::write(p.join("hidden/secret"), "secret").unwrap();
        fs::write(p.join("hidden-file"), "secret").unwrap();
        mode(&p.join("hidden-file"), 0o644);
        fs::copy(probe_bin(), p.join("probe")).unwrap();
        mode(&p.join("probe"), 0o755);
        fs::copy(probe_bin(), p.join("suid")).unwrap();
        mode(&p.join("suid"), 0o4755);
        Jail(p)
    }

    fn path(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }
}

impl Drop for Jail {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn skip_unless_root(what: &str) -> bool {
    if !is_root() {
        skip(&format!(
            "{what} needs root (namespaces, mounts, capabilities)"
        ));
        return true;
    }
    false
}

/// The inode of a namespace link as the probe reports it (`net:[N]`).
fn host_ns(pid: i32, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

/// One service of the probe as `nobody`, with `fences` (YAML lines, each
/// indented by four) and the probe's `PROBE_*` variables.
fn service(name: &str, jail: &Jail, fences: &str, env: &[(&str, String)]) -> String {
    let mut s = format!(
        "  {name}:\n    listen: 127.0.0.1:0\n    exec: {}\n    user: nobody\n{fences}",
        jail.path("probe")
    );
    if !env.is_empty() {
        s += "    env:\n";
        for (k, v) in env {
            s += &format!("      {k}: {v:?}\n");
        }
    }
    s
}

const ALL_FENCES: &str = "    no_new_privs: true\n    private_network: true\n    private_tmp: true\n    read_only_paths: [/]\n    writable_paths: [WRITABLE]\n    inaccessible_paths: [HIDDEN, HIDDEN_FILE]\n    capabilities: [CAP_NET_BIND_SERVICE]\n";

#[test]
fn a_fenced_child_sees_its_fences_and_an_unfenced_one_does_not() {
    if skip_unless_root("this test") {
        return;
    }
    let jail = Jail::new("inside");
    // A port on the host's loopback that accepts: the unfenced child can
    // reach it, the fenced one cannot.
    let outside = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let env = [
        ("PROBE_CONNECT", outside.local_addr().unwrap().to_string()),
        (
            "PROBE_WRITE",
            format!("{},{}", jail.path("ro"), jail.path("ro/rw")),
        ),
        ("PROBE_TOUCH", "/tmp".to_string()),
        ("PROBE_LIST", "/tmp".to_string()),
        ("PROBE_STAT", jail.path("hidden/secret")),
        ("PROBE_OPEN", jail.path("hidden-file")),
        ("PROBE_BIND", "80".to_string()),
        ("PROBE_EXEC", jail.path("suid")),
    ];
    let fences = ALL_FENCES
        .replace("WRITABLE", &jail.path("ro/rw"))
        .replace("HIDDEN_FILE", &jail.path("hidden-file"))
        .replace("HIDDEN", &jail.path("hidden"));
    let yaml = format!(
        "services:\n{}{}{}",
        service("fenced", &jail, &fences, &env),
        service("plain", &jail, "", &env),
        service("tmp_only", &jail, "    private_tmp: true\n", &env),
    );
    let d = Superd::start(&yaml);

    let one = report(&exchange(&d.addr("fenced"), b""));
    let two = report(&exchange(&d.addr("fenced"), b""));
    let plain = report(&exchange(&d.addr("plain"), b""));
    let other = report(&exchange(&d.addr("tmp_only"), b""));

    for r in [&one, &two] {
        // The connection it was given works end to end: this report came
        // over it.
        assert_eq!(get(r, "peer").split(':').next(), Some("127.0.0.1"));
        assert_eq!(get(r, "uid"), "65534");
        // no_new_privs: the setuid-root copy runs as nobody.
        assert_eq!(get(r, "status.nonewprivs"), "1");
        assert_eq!(get(r, "exec.euid"), "65534");
        // private_network: no way out to the host's loopback.
        assert_eq!(get(r, "connect"), format!("error:{}", libc::ECONNREFUSED));
        // read_only_paths / writable_paths / inaccessible_paths.
        let ro = format!("write.{}", jail.path("ro"));
        assert_eq!(get(r, &ro), format!("error:{}", libc::EROFS));
        assert_eq!(get(r, &format!("write.{}", jail.path("ro/rw"))), "ok");
        let stat = format!("stat.{}", jail.path("hidden/secret"));
        assert_eq!(get(r, &stat), format!("error:{}", libc::EACCES));
        let open = format!("open.{}", jail.path("hidden-file"));
        assert_eq!(get(r, &open), format!("error:{}", libc::EACCES));
        // capabilities: ambient, and it works for nobody.
        assert_eq!(get(r, "status.capamb"), "0000000000000400");
        assert_eq!(get(r, "status.capeff"), "0000000000000400");
        assert_eq!(get(r, "bind"), "ok");
        // private_tmp is writable under a read-only /.
        assert_eq!(get(r, "touch"), "ok");
    }
    // One network and one mount namespace per service, not superd's, and
    // shared by its children.
    assert_ne!(get(&one, "ns.net"), host_ns(d.pid(), "net"));
    assert_ne!(get(&one, "ns.mnt"), host_ns(d.pid(), "mnt"));
    assert_eq!(get(&one, "ns.net"), get(&two, "ns.net"));
    assert_eq!(get(&one, "ns.mnt"), get(&two, "ns.mnt"));
    // The private /tmp is shared by the service's children...
    let pid1 = get(&one, "pid");
    let pid2 = get(&two, "pid");
    assert_eq!(
        get(&two, "list"),
        format!("probe-touch-{pid1},probe-touch-{pid2}")
    );
    // ...and seen neither by the host nor by another service's children.
    assert!(!Path::new(&format!("/tmp/probe-touch-{pid1}")).exists());
    assert_eq!(
        get(&other, "list"),
        format!("probe-touch-{}", get(&other, "pid"))
    );
    assert_ne!(get(&other, "ns.mnt"), get(&one, "ns.mnt"));

    // The same program without fences: everything the fences stopped.
    assert_eq!(get(&plain, "status.nonewprivs"), "0");
    assert_eq!(get(&plain, "exec.euid"), "0");
    assert_eq!(get(&plain, "connect"), "ok");
    assert_eq!(
        get(&plain, &format!("write.{}", jail.path("ro"))),
        "error:13"
    );
    assert_eq!(
        get(&plain, &format!("stat.{}", jail.path("hidden/secret"))),
        "ok"
    );
    assert_eq!(get(&plain, "status.capamb"), "0000000000000000");
    assert_eq!(get(&plain, "bind"), format!("error:{}", libc::EACCES));
    assert_eq!(get(&plain, "ns.net"), host_ns(d.pid(), "net"));
    let _ = fs::remove_file(format!("/tmp/probe-touch-{}", get(&plain, "pid")));
}

#[test]
fn without_the_capability_nobody_cannot_bind_a_low_port_in_its_namespace() {
    if skip_unless_root("this test") {
        return;
    }
    let jail = Jail::new("nocap");
    let env = [("PROBE_BIND", "80".to_string())];
    let yaml = format!(
        "services:\n{}{}",
        service(
            "with",
            &jail,
            "    private_network: true\n    capabilities: [CAP_NET_BIND_SERVICE]\n",
            &env
        ),
        service("without", &jail, "    private_network: true\n", &env),
    );
    let d = Superd::start(&yaml);
    let with = report(&exchange(&d.addr("with"), b""));
    let without = report(&exchange(&d.addr("without"), b""));
    assert_eq!(get(&with, "bind"), "ok");
    assert_eq!(get(&without, "bind"), format!("error:{}", libc::EACCES));
    assert_eq!(get(&without, "status.capamb"), "0000000000000000");
    assert_eq!(get(&without, "status.capprm"), "0000000000000000");
}

#[test]
fn fences_when_superd_is_not_root_are_load_errors_naming_the_field() {
    let conf = TempDir::new("fences-nonroot");
    let path = conf.write(
        "t.yaml",
        "services:\n  t:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    private_network: true\n    capabilities: [CAP_NET_BIND_SERVICE]\n    no_new_privs: true\n",
    );
    let mut cmd = Command::new(superd_bin());
    cmd.arg("--check").arg(conf.path());
    if is_root() {
        // superd as nobody: the config must be readable, and is (0644 in a
        // 0755 directory).
        use std::os::unix::process::CommandExt;
        cmd.uid(65534).gid(65534);
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let p = path.display();
    assert!(
        err.contains(&format!(
            "{p}:5:5: private_network needs superd to run as root"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{p}:6:5: capabilities needs superd to run as root"
        )),
        "{err}"
    );
    // no_new_privs needs no privilege: it is kept, not refused.
    assert!(!err.contains("no_new_privs"), "{err}");
}

#[test]
fn check_shows_the_fences_and_refuses_bad_ones_with_their_position() {
    if skip_unless_root("this test") {
        return;
    }
    let jail = Jail::new("check");
    let conf = TempDir::new("fences-check");
    conf.write(
        "ok.yaml",
        &format!(
            "services:\n{}",
            service(
                "f",
                &jail,
                &ALL_FENCES
                    .replace("WRITABLE", &jail.path("ro/rw"))
                    .replace("HIDDEN_FILE", &jail.path("hidden-file"))
                    .replace("HIDDEN", &jail.path("hidden"))
                    .replace(
                        "read_only_paths: [/]",
                        &format!("read_only_paths: [{}]", jail.path("ro"))
                    ),
                &[]
            )
        ),
    );
    let out = Command::new(superd_bin())
        .arg("--check")
        .arg(conf.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "  fences: no_new_privs private_network private_tmp read_only_paths=[{}] writable_paths=[{}] inaccessible_paths=[{},{}] capabilities=[CAP_NET_BIND_SERVICE]",
            jail.path("ro"),
            jail.path("ro/rw"),
            jail.path("hidden"),
            jail.path("hidden-file")
        )),
        "{stdout}"
    );

    let bad = TempDir::new("fences-bad");
    let path = bad.write(
        "bad.yaml",
        &format!(
            "services:\n  b:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    user: nobody\n    read_only_paths: [{ro}, relative, /nonexistent-superd]\n    writable_paths: [/var]\n    capabilities: [cap_net_raw, CAP_NOPE]\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    private_tmp: true\n",
            ro = jail.path("ro")
        ),
    );
    let out = Command::new(superd_bin())
        .arg("--check")
        .arg(bad.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let p = path.display();
    for want in [
        format!("{p}:6:"),
        "expected an absolute path, found \"relative\"".to_string(),
        "unknown capability \"cap_net_raw\": write it as capabilities(7) does, CAP_NET_RAW"
            .to_string(),
        format!("{p}:12:5: private_tmp: a builtin is served inside superd"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
}

/// Reloads superd and waits for the `n`-th `reloaded` line.
fn reload(d: &Superd, n: usize) {
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_nth(n, &["reloaded"]);
}

#[test]
fn reload_rebuilds_only_changed_fences_and_releases_the_old() {
    if skip_unless_root("this test") {
        return;
    }
    let jail = Jail::new("reload");
    let yaml = |a_max: u32, b_fences: &str| {
        format!(
            "services:\n{}    max_connections: {a_max}\n{}",
            service(
                "a",
                &jail,
                "    private_network: true\n    private_tmp: true\n",
                &[]
            ),
            service("b", &jail, b_fences, &[]),
        )
    };
    let d = Superd::start(&yaml(10, "    private_tmp: true\n"));
    let host_net = host_ns(d.pid(), "net");
    let a1 = report(&exchange(&d.addr("a"), b""));
    let b1 = report(&exchange(&d.addr("b"), b""));
    assert_eq!(get(&b1, "ns.net"), host_net);

    // a changes a field that is no fence; b gains private_network.
    d.dir.write(
        "test.yaml",
        &yaml(11, "    private_network: true\n    private_tmp: true\n"),
    );
    reload(&d, 1);
    // The reload log names the fence field that changed, by its name.
    d.wait_for(&["service changed service=a fields=max_connections"]);
    d.wait_for(&["service changed service=b fields=private_network"]);
    let a2 = report(&exchange(&d.addr("a"), b""));
    let b2 = report(&exchange(&d.addr("b"), b""));
    assert_eq!(
        get(&a2, "ns.net"),
        get(&a1, "ns.net"),
        "a keeps its namespaces"
    );
    assert_eq!(get(&a2, "ns.mnt"), get(&a1, "ns.mnt"));
    assert_ne!(
        get(&b2, "ns.net"),
        host_net,
        "b's new fence holds for new connections"
    );
    assert_ne!(
        get(&b2, "ns.mnt"),
        get(&b1, "ns.mnt"),
        "b's namespaces are new"
    );
    assert_ne!(get(&b2, "ns.net"), get(&a2, "ns.net"));

    // 200 reloads, b's fences changing each time: its namespaces are made
    // and released each time, and nothing is left behind.
    // Measured once the four children so far are gone (their
    // connections closed).
    d.wait_nth(4, &["exit service="]);
    let baseline = d.fd_count().expect("root reads superd's fds");
    for i in 0..200 {
        let b = if i % 2 == 0 {
            "    private_tmp: true\n"
        } else {
            "    private_network: true\n    private_tmp: true\n"
        };
        d.dir.write("test.yaml", &yaml(12 + i, b));
        reload(&d, 2 + i as usize);
    }
    // Back to where the baseline was taken.
    d.dir.write(
        "test.yaml",
        &yaml(11, "    private_network: true\n    private_tmp: true\n"),
    );
    reload(&d, 202);
    d.wait_until(
        "the fd count back at its baseline after 200 reloads",
        || d.fd_count() == Some(baseline),
    );
    assert_eq!(d.zombies(), 0);
    let a3 = report(&exchange(&d.addr("a"), b""));
    assert_eq!(
        get(&a3, "ns.net"),
        get(&a1, "ns.net"),
        "a kept its namespaces throughout"
    );
    // Removing a service, and b's fences, releases their namespaces: two
    // fds each, and a's listener.
    d.dir.write(
        "test.yaml",
        &format!("services:\n{}", service("b", &jail, "", &[])),
    );
    reload(&d, 203);
    d.wait_nth(5, &["exit service="]);
    d.wait_until("a's and b's namespace fds closed", || {
        d.fd_count() == Some(baseline - 5)
    });
}

// linux/capability.h
const CAP_SYS_CHROOT: libc::c_ulong = 18;
const CAP_SYS_ADMIN: libc::c_ulong = 21;

/// A command for superd with `cap` dropped from its bounding set, so that
/// superd (root) starts without it.
fn superd_without(cap: libc::c_ulong) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(superd_bin());
    // SAFETY: prctl(2) is async-signal-safe; nothing else runs between
    // fork and exec here.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

#[test]
fn a_fence_that_cannot_be_set_up_at_load_stops_superd() {
    if skip_unless_root("this test") {
        return;
    }
    // Without CAP_SYS_ADMIN no namespace can be made.
    let jail = Jail::new("noadmin");
    let conf = TempDir::new("fences-noadmin");
    conf.write(
        "t.yaml",
        &format!(
            "services:\n{}",
            service("f", &jail, "    private_tmp: true\n", &[])
        ),
    );
    let out = superd_without(CAP_SYS_ADMIN)
        .arg(conf.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "service f: cannot set up its fences: unshare the namespaces: Operation not permitted"
        ),
        "{err}"
    );
    assert!(!err.contains("listening"), "{err}");
}

#[test]
fn a_fence_a_child_cannot_enter_is_an_exec_failure_and_nothing_runs() {
    if skip_unless_root("this test") {
        return;
    }
    // Without CAP_SYS_CHROOT superd can make the mount namespace, but a
    // child cannot join it (setns(2) needs both).
    let jail = Jail::new("nochroot");
    let conf = TempDir::new("fences-nochroot");
    conf.write(
        "t.yaml",
        &format!(
            "services:\n{}",
            service(
                "f",
                &jail,
                "    private_tmp: true\n",
                &[("PROBE_TOUCH", jail.path(""))]
            )
        ),
    );
    let path = conf.path().to_str().unwrap().to_string();
    let d = Superd::spawn_command(superd_without(CAP_SYS_CHROOT), conf, &[&path, "-v"], &[]);
    let reply = exchange(&d.addr("f"), b"");
    assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
    let line = d.wait_for(&["exec failed", "service=f"]);
    assert!(
        line.contains(r#"step=setns_mnt error="Operation not permitted""#),
        "{line}"
    );
    // The program never ran: it would have left its file in the jail.
    let touched = fs::read_dir(&jail.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("probe-touch-"));
    assert!(!touched);
}

/// With cgroups (superd(8), PROCESS TREES) every child starts in a cgroup
/// of its own under superd's: a fenced child (which joins the service's
/// namespaces as well) and a `pass: listen_fds` wait child alike.
#[test]
fn fenced_and_listen_fds_children_start_in_a_cgroup_of_their_own() {
    if skip_unless_root("this test") {
        return;
    }
    let jail = Jail::new("cgroup");
    let fences = ALL_FENCES
        .replace("WRITABLE", &jail.path("ro/rw"))
        .replace("HIDDEN_FILE", &jail.path("hidden-file"))
        .replace("HIDDEN", &jail.path("hidden"));
    let yaml = format!(
        "services:\n{}  activated:\n    listen: 127.0.0.1:0\n    wait: true\n    pass: listen_fds\n    \
         exec: [{}, listen]\n    user: nobody\n",
        service("fenced", &jail, &fences, &[]),
        jail.path("probe"),
    );
    let d = Superd::start(&yaml);
    let ready = d.wait_for(&["ready services="]);
    if field(&ready, "tree").as_deref() != Some("cgroup") {
        eprintln!("skipped: superd has no cgroups here ({ready})");
        return;
    }
    let base = field(&ready, "cgroup").unwrap();
    let name = Path::new(&base).file_name().unwrap().to_str().unwrap();
    let want = format!("/{name}/c");
    for service in ["fenced", "activated"] {
        let r = report(&exchange(&d.addr(service), b""));
        assert!(get(&r, "cgroup").contains(&want), "{service}: {r:?}");
    }
    // The fenced child still runs fenced.
    let r = report(&exchange(&d.addr("fenced"), b""));
    assert_ne!(get(&r, "ns.net"), host_ns(d.pid(), "net"));
}
