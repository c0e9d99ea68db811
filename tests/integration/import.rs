//! Coming from inetd and xinetd: the `argv0`, `pass_env` and
//! `refuse_message` fields seen from a child and a client, the load-time
//! hints, and `superd import` on the files Debian ships and the lines
//! Debian packages register, run for real.

use std::fs;
use std::io::{Read, Write};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::harness::*;

fn superd(args: &[&str]) -> Output {
    Command::new(superd_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run superd")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---- the new fields, from inside the child and from a refused client ----

#[test]
fn argv0_and_pass_env_reach_the_child() {
    let dir = TempDir::new("argv0");
    dir.write(
        "t.yaml",
        &format!(
            "services:\n  probe:\n    listen: 127.0.0.1:0\n    exec: [{}, report]\n    argv0: in.probed\n    pass_env: [SUPERD_TEST_PASSED, TZ, SUPERD_TEST_ABSENT]\n    env:\n      TZ: from-env\n    {}\n",
            probe_bin().display(),
            user_line()
        ),
    );
    let p = dir.path().to_str().unwrap().to_string();
    let d = Superd::spawn(
        dir,
        &[&p],
        &[
            ("SUPERD_TEST_PASSED", "yes it is"),
            ("SUPERD_LEAK_MARKER", "x"),
        ],
    );
    let r = report(&exchange(&d.addr("probe"), b""));
    assert_eq!(get(&r, "argv.0"), "in.probed", "{r:?}");
    assert_eq!(get(&r, "argv.1"), "report");
    assert_eq!(get(&r, "env.SUPERD_TEST_PASSED"), "yes it is");
    // env: wins over pass_env; a name superd does not have is not invented.
    assert_eq!(get(&r, "env.TZ"), "from-env");
    assert!(
        !r.iter()
            .any(|(k, _)| k == "env.SUPERD_TEST_ABSENT" || k == "env.SUPERD_LEAK_MARKER"),
        "{r:?}"
    );
}

#[test]
fn without_argv0_the_child_sees_the_first_word_of_exec() {
    let d = Superd::start(&format!(
        "services:\n  probe:\n    listen: 127.0.0.1:0\n    exec: {}\n    {}\n",
        probe_bin().display(),
        user_line()
    ));
    let r = report(&exchange(&d.addr("probe"), b""));
    assert_eq!(get(&r, "argv.0"), probe_bin().display().to_string());
}

/// Reads what a refused client gets before the close.
fn refused_gets(addr: &str) -> Vec<u8> {
    let mut s = connect(addr);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn refuse_message_is_written_for_every_refusal_reason() {
    let d = Superd::start(&format!(
        "services:\n\
        \x20 deny:\n    listen: 127.0.0.1:0\n    builtin: echo\n    deny_from: [127.0.0.0/8]\n    refuse_message: \"421 denied\\r\\n\"\n\
        \x20 only:\n    listen: 127.0.0.1:0\n    builtin: echo\n    only_from: [10.0.0.0/8]\n    refuse_message: \"421 not from here\\r\\n\"\n\
        \x20 one:\n    listen: 127.0.0.1:0\n    exec: [/bin/cat]\n    {}\n    max_per_source: 1\n    refuse_message: \"421 one at a time\\r\\n\"\n\
        \x20 quiet:\n    listen: 127.0.0.1:0\n    builtin: echo\n    deny_from: [127.0.0.0/8]\n",
        user_line()
    ));
    assert_eq!(refused_gets(&d.addr("deny")), b"421 denied\r\n");
    assert_eq!(refused_gets(&d.addr("only")), b"421 not from here\r\n");
    let one = d.addr("one");
    let mut first = connect(&one);
    first.write_all(b"ping\n").unwrap();
    let mut buf = [0u8; 5];
    first.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping\n");
    assert_eq!(refused_gets(&one), b"421 one at a time\r\n");
    d.wait_for(&["refused", "service=one", "reason=max_per_source"]);
    // Unset: the client gets the close and nothing else.
    assert_eq!(refused_gets(&d.addr("quiet")), b"");
}

#[test]
fn the_new_fields_are_checked_at_load() {
    let dir = TempDir::new("newfields");
    let long = "x".repeat(513);
    dir.write(
        "t.yaml",
        &format!(
            "services:\n  a:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    {u}\n    pass_env: [HOME, TCPREMOTEIP, LISTEN_FDS]\n  b:\n    listen: 127.0.0.1:0\n    builtin: echo\n    argv0: echo\n  c:\n    listen: 127.0.0.1:0\n    socket: dgram\n    builtin: echo\n    refuse_message: no\n  d:\n    listen: 127.0.0.1:0\n    builtin: echo\n    refuse_message: {long}\n  e:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    wait: true\n    {u}\n    refuse_message: no\n",
            u = user_line()
        ),
    );
    let out = superd(&["--check", dir.path().to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for want in [
        "t.yaml:6:22: pass_env: TCPREMOTEIP is set by superd",
        "t.yaml:6:35: pass_env: LISTEN_FDS is set by superd",
        "t.yaml:10:5: argv0 needs exec",
        "t.yaml:15:5: refuse_message is written to TCP clients superd refuses",
        "t.yaml:19:21: refuse_message is 513 bytes: at most 512",
        "t.yaml:25:5: refuse_message is written to TCP clients superd refuses",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
}

#[test]
fn check_shows_the_new_fields() {
    let dir = TempDir::new("shownew");
    dir.write(
        "t.yaml",
        &format!(
            "services:\n  a:\n    listen: 127.0.0.1:0\n    exec: [/bin/cat, -u]\n    argv0: kitty\n    pass_env: [LANG]\n    refuse_message: \"421 bye\\r\\n\"\n    {}\n",
            user_line()
        ),
    );
    let out = superd(&["--check", dir.path().to_str().unwrap()]);
    let so = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(so.contains("argv=[\"kitty\", \"-u\"]"), "{so}");
    assert!(so.contains("pass_env: LANG"), "{so}");
    assert!(
        so.contains("refuse_message: \"421 bye\\r\\n\" (9 bytes)"),
        "{so}"
    );
}

// ---- hints for the old meanings ----

#[test]
fn inetd_and_xinetd_habits_get_hints() {
    let dir = TempDir::new("hints");
    dir.write(
        "t.yaml",
        "services:\n  a:\n    listen: 127.0.0.1:0\n    exec: \"/bin/cat -u\"\n    wait: yes\n    socket: udp\n    user: nobody.nogroup\n    lisen: 7\n  b:\n    listen: 127.0.0.1:0\n    builtin: echo\n    group: \"nobody:nogroup\"\n",
    );
    let out = superd(&["--check", dir.path().to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    for want in [
        "t.yaml:8:5: unknown field \"lisen\", expected one of listen,",
        "; did you mean \"listen\"?",
        "t.yaml:5:11: invalid type: string \"yes\", expected a boolean (\"yes\" is a string here, not YAML 1.1's boolean: use true or false)",
        "t.yaml:6:13: socket: unknown socket type \"udp\", expected one of stream, dgram, seqpacket (socket is the socket type: udp is socket: dgram)",
        "(inetd's user:group: write user: nobody and group: nogroup)",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    // Fixed those, the next layer: the user and the one-string exec.
    dir.write(
        "t.yaml",
        "services:\n  a:\n    listen: 127.0.0.1:0\n    exec: \"/bin/cat -u\"\n    user: nobody.nogroup\n",
    );
    let err = text(&superd(&["--check", dir.path().to_str().unwrap()]).stderr);
    assert!(err.contains("t.yaml:4:11: program /bin/cat -u not found (one string is one program name, never split: write a list, exec: [/bin/cat, -u])"), "{err}");
    assert!(err.contains("t.yaml:5:11: unknown user \"nobody.nogroup\" (inetd's user.group: write user: nobody and group: nogroup)"), "{err}");
}

#[test]
fn a_service_name_as_port_and_the_xinetd_network_shorthand() {
    let dir = TempDir::new("svcname");
    dir.write(
        "t.yaml",
        "services:\n  f:\n    listen: 127.0.0.1:finger\n    builtin: echo\n    enabled: false\n    only_from: [10.0.0.0, 192.0.2.1, 10.0.0.0/8]\n",
    );
    let out = superd(&["--check", dir.path().to_str().unwrap()]);
    let so = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    if !fs::read_to_string("/etc/services")
        .unwrap_or_default()
        .contains("finger")
    {
        skip("the port check: /etc/services has no finger");
        return;
    }
    assert!(so.contains("listen: 127.0.0.1:79"), "{so}");
    assert!(
        so.contains("t.yaml:3:13: listen: finger is port 79 (/etc/services)"),
        "{so}"
    );
    assert!(so.contains("t.yaml:6:17: warning: only_from: 10.0.0.0 is the one address 10.0.0.0/32 here, where xinetd read 10.0.0.0 as 10.0.0.0/8"), "{so}");
    assert_eq!(so.matches("warning:").count(), 1, "{so}");
}

// ---- superd import ----

/// A Debian package's files (`-x`) or control files (`-e`) in a fresh
/// directory, fetched with `apt-get download`; `None`, with the reason
/// printed, where apt or dpkg-deb cannot.
fn debian_package(name: &str, tmp: &TempDir) -> Option<(PathBuf, PathBuf)> {
    let dl = tmp.path().join("dl");
    fs::create_dir_all(&dl).ok()?;
    let got = Command::new("apt-get")
        .args(["download", "-q", name])
        .current_dir(&dl)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deb = fs::read_dir(&dl)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}_")))
        });
    let Some(deb) = deb.filter(|_| got.is_ok_and(|s| s.success())) else {
        skip(&format!(
            "`apt-get download {name}` did not give a package (no apt or no package index)"
        ));
        return None;
    };
    let files = tmp.path().join(format!("{name}-files"));
    let control = tmp.path().join(format!("{name}-control"));
    for (flag, dir) in [("-x", &files), ("-e", &control)] {
        let ok = Command::new("dpkg-deb")
            .arg(flag)
            .arg(&deb)
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            skip(&format!("dpkg-deb {flag} {name} failed"));
            return None;
        }
    }
    Some((files, control))
}

/// Every `superd import: FILE:LINE: approximated|dropped: …` line of
/// stderr is a comment of the output.
fn every_note_is_a_comment(stdout: &str, stderr: &str) -> usize {
    let mut n = 0;
    for l in stderr.lines() {
        let Some(note) = l.strip_prefix("superd import: ") else {
            continue;
        };
        if !(note.contains(": approximated: ") || note.contains(": dropped: ")) {
            continue;
        }
        assert!(
            stdout.contains(&format!("# {note}")),
            "stderr note not in the output as a comment: {note}\n{stdout}"
        );
        n += 1;
    }
    n
}

/// Makes every imported service of `yaml` listen on a fresh loopback port
/// and run (the shipped files disable them and use the real ports).
fn on_loopback(yaml: &str) -> String {
    yaml.lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("listen: ") {
                "    listen: \"127.0.0.1:0\"".to_owned()
            } else if t == "enabled: false" {
                "    enabled: true".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn check_ok(dir: &Path) -> String {
    let out = superd(&["--check", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "--check: {}", text(&out.stderr));
    text(&out.stdout)
}

fn echo_and_daytime_answer(d: &Superd, echo: &str, daytime: &str) {
    assert_eq!(exchange(&d.addr(echo), b"hello\r\n"), b"hello\r\n");
    let t = text(&exchange(&d.addr(daytime), b""));
    assert!(t.ends_with("\r\n") && t.len() > 10, "daytime said {t:?}");
}

#[test]
fn debian_xinetd_files_import_pass_check_and_serve() {
    let tmp = TempDir::new("xinetd-deb");
    let Some((files, _)) = debian_package("xinetd", &tmp) else {
        return;
    };
    let etc = files.join("etc");
    // The shipped xinetd.conf includes /etc/xinetd.d: point it at the
    // package's own copy.
    let conf = fs::read_to_string(etc.join("xinetd.conf")).expect("xinetd.conf in the package");
    assert!(conf.contains("includedir /etc/xinetd.d"), "{conf}");
    let conf_path = etc.join("xinetd.conf");
    fs::write(
        &conf_path,
        conf.replace(
            "includedir /etc/xinetd.d",
            &format!("includedir {}", etc.join("xinetd.d").display()),
        ),
    )
    .unwrap();

    let out = superd(&["import", "xinetd", conf_path.to_str().unwrap()]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{se}");
    assert!(every_note_is_a_comment(&so, &se) > 0, "{se}");
    // The listing services of xinetd itself have no equivalent: dropped, with their file:line.
    assert!(
        se.contains(&format!(
            "{}:4: dropped: internal service \"servers\"",
            etc.join("xinetd.d/servers").display()
        )),
        "{se}"
    );
    for name in [
        "echo-stream",
        "echo-dgram",
        "daytime-stream",
        "chargen-stream",
        "time-dgram",
        "discard-stream",
    ] {
        assert!(
            so.contains(&format!("\n  {name}:\n")),
            "{name} missing:\n{so}"
        );
    }

    let out_dir = TempDir::new("xinetd-out");
    out_dir.write("all.yaml", &so);
    let shown = check_ok(out_dir.path());
    assert!(
        shown.contains("service echo-stream") && shown.contains("(disabled)"),
        "{shown}"
    );

    // -o: one file per source file, the same services.
    let per = TempDir::new("xinetd-o");
    let o = per.path().join("out");
    let out = superd(&[
        "import",
        "xinetd",
        conf_path.to_str().unwrap(),
        "-o",
        o.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    for f in [
        "xinetd.yaml",
        "echo.yaml",
        "echo-udp.yaml",
        "daytime.yaml",
        "servers.yaml",
        "time.yaml",
    ] {
        assert!(o.join(f).is_file(), "{f} not written");
    }
    let shown_o = check_ok(&o);
    assert_eq!(shown_o.lines().next(), shown.lines().next());

    // The imported echo and daytime answer, enabled and on loopback.
    let d = Superd::start(&on_loopback(&so));
    echo_and_daytime_answer(&d, "echo-stream", "daytime-stream");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(DEADLINE)).unwrap();
    udp.send_to(b"ping", d.addr("echo-dgram")).unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = udp.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
}

/// The inetd.conf openbsd-inetd's preinst writes when there is none.
fn openbsd_default_conf(control: &Path) -> String {
    let preinst = fs::read_to_string(control.join("preinst")).expect("preinst");
    let start = preinst
        .find("cat <<EOF > /etc/inetd.conf\n")
        .expect("the heredoc")
        + "cat <<EOF > /etc/inetd.conf\n".len();
    let len = preinst[start..].find("\nEOF\n").expect("its end");
    preinst[start..start + len + 1].to_owned()
}

#[test]
fn openbsd_inetd_default_conf_imports_exactly() {
    let tmp = TempDir::new("obsd");
    let Some((_, control)) = debian_package("openbsd-inetd", &tmp) else {
        return;
    };
    let conf = openbsd_default_conf(&control);
    let path = tmp.path().join("inetd.conf");
    fs::write(&path, &conf).unwrap();
    let out = superd(&["import", "inetd", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    assert!(so.contains("services: {}"), "{so}");
    let dir = TempDir::new("obsd-out");
    dir.write("x.yaml", &so);
    assert!(check_ok(dir.path()).starts_with("configuration OK: 0 services"));

    // Its commented INTERNAL entries, switched on as an admin would.
    let on: String = conf
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.contains("internal") => rest.to_owned(),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(&path, on).unwrap();
    let out = superd(&["import", "inetd", path.to_str().unwrap()]);
    let so = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    dir.write("x.yaml", &so);
    assert!(
        check_ok(dir.path()).starts_with("configuration OK: 6 services"),
        "{so}"
    );
    let d = Superd::start(&on_loopback(&so));
    echo_and_daytime_answer(&d, "echo", "daytime");
}

/// inetd.conf lines as Debian packages register them with update-inetd(8)
/// in their postinst (fingerd, talkd, rsh-server), and tftpd-hpa's in.tftpd
/// as in.tftpd(8) runs it from inetd.
const PACKAGE_LINES: &str = "\
#:BSD: Shell, login, exec and talk are BSD protocols.
shell\t\tstream\ttcp\tnowait\troot\t/usr/sbin/tcpd\t/usr/sbin/in.rshd
talk\t\tdgram\tudp\twait\tnobody.tty\t/usr/sbin/in.talkd\tin.talkd
ntalk\t\tdgram\tudp\twait\tnobody.tty\t/usr/sbin/in.ntalkd\tin.ntalkd
#:INFO: Info services
finger\t\tstream\ttcp\tnowait\tnobody\t/usr/sbin/tcpd\t/usr/sbin/in.fingerd
#:BOOT: TFTP service is provided primarily for booting.
tftp\t\tdgram\tudp4\twait\troot\t/usr/sbin/in.tftpd /usr/sbin/in.tftpd -s /srv/tftp
";

#[test]
fn lines_debian_packages_register_import_and_finger_answers() {
    let tmp = TempDir::new("pkglines");
    let path = tmp.write("inetd.conf", PACKAGE_LINES);
    let out = superd(&["import", "inetd", path.to_str().unwrap()]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{se}");
    assert_eq!(every_note_is_a_comment(&so, &se), 2, "{se}");
    for want in [
        "inetd.conf:2: approximated: /usr/sbin/tcpd /usr/sbin/in.rshd: runs /usr/sbin/in.rshd directly",
        "inetd.conf:6: approximated: /usr/sbin/tcpd /usr/sbin/in.fingerd: runs /usr/sbin/in.fingerd directly",
    ] {
        assert!(se.contains(want), "{want:?} not in {se}");
    }
    assert!(so.contains("  talk:\n    listen: 517\n    socket: dgram\n    exec: [/usr/sbin/in.talkd]\n    user: nobody\n    group: tty\n"), "{so}");
    assert!(
        so.contains("exec: [/usr/sbin/in.tftpd, \"-s\", /srv/tftp]"),
        "{so}"
    );

    // --check passes wherever the programs exist; elsewhere the only
    // complaint is the missing program.
    let dir = TempDir::new("pkglines-out");
    dir.write("x.yaml", &so);
    let out = superd(&["--check", dir.path().to_str().unwrap()]);
    for l in text(&out.stderr).lines().filter(|l| l.contains("x.yaml:")) {
        assert!(l.contains("not found"), "{l}");
    }

    // The finger entry, on loopback, answers through the real in.fingerd.
    if !Path::new("/usr/sbin/in.fingerd").exists() {
        skip("the run: /usr/sbin/in.fingerd is absent (Debian package fingerd)");
        return;
    }
    let finger_only: String = so
        .split("\n\n")
        .filter(|b| !b.contains("  # ") || b.contains("  finger:"))
        .collect::<Vec<_>>()
        .join("\n\n");
    let d = Superd::start(&on_loopback(&finger_only));
    let answer = exchange(&d.addr("finger"), b"\r\n");
    assert!(
        !answer.is_empty(),
        "in.fingerd said nothing; log:\n{}",
        d.log_text()
    );
    d.wait_for(&["exit", "service=finger", "status=0"]);
}

#[test]
fn xinetd_nameinargs_tcpd_runs_tcpd_once_and_the_wrapped_program_answers() {
    for p in ["/usr/sbin/tcpd", "/usr/sbin/in.fingerd"] {
        if !Path::new(p).exists() {
            skip(&format!("{p} is absent (Debian packages tcpd and fingerd)"));
            return;
        }
    }
    let tmp = TempDir::new("nameinargs");
    // The natural xinetd entry for a wrapped daemon (xinetd.conf(5),
    // NAMEINARGS and NOLIBWRAP): tcpd finds its daemon by argv[0].
    let path = tmp.write(
        "finger",
        "service finger\n{\n\tsocket_type\t= stream\n\twait\t\t= no\n\tuser\t\t= nobody\n\tbind\t\t= 127.0.0.1\n\tport\t\t= 0\n\tserver\t\t= /usr/sbin/tcpd\n\tserver_args\t= /usr/sbin/in.fingerd\n\tflags\t\t= NAMEINARGS NOLIBWRAP\n}\n",
    );
    let out = superd(&["import", "xinetd", path.to_str().unwrap()]);
    let so = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "exact: {}", text(&out.stderr));
    assert!(
        so.contains("    exec: [/usr/sbin/tcpd]\n    argv0: /usr/sbin/in.fingerd\n"),
        "{so}"
    );
    let d = Superd::start(&so);
    let answer = exchange(&d.addr("finger"), b"\r\n");
    assert!(
        !answer.is_empty(),
        "nothing from in.fingerd; log:\n{}",
        d.log_text()
    );
    // One connection, one child: tcpd exec'd in.fingerd, which answered
    // and exited (a tcpd re-executing itself never would).
    d.wait_for(&["exit", "service=finger", "status=0"]);
    assert_eq!(
        d.lines_with(&["exit", "service=finger"]).len(),
        1,
        "{}",
        d.log_text()
    );
}

#[test]
fn import_usage_and_unparseable_sources() {
    let tmp = TempDir::new("importbad");
    let bad = tmp.write("inetd.conf", "echo stream tcp\n");
    let out = superd(&["import", "inetd", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("inetd.conf:1: expected `service socket protocol wait user program [args]`"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let bad = tmp.write("x", "service x\n{\n\tsocket_type = stream\n");
    assert_eq!(
        superd(&["import", "xinetd", bad.to_str().unwrap()])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(superd(&["import", "bsd", "x"]).status.code(), Some(2));
    assert_eq!(superd(&["import", "inetd"]).status.code(), Some(2));
    // Everything exact: 0.
    let ok = tmp.write(
        "ok.conf",
        "127.0.0.1:echo stream tcp nowait root internal\n",
    );
    let out = superd(&["import", "inetd", ok.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty());
}

#[test]
fn the_network_shorthand_warning_is_logged_at_start() {
    let d = Superd::start(
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    only_from: [127.0.0.0]\n",
    );
    let line = d.wait_for(&["WARN", "config warning"]);
    assert!(
        line.contains("test.yaml:5:17: only_from: 127.0.0.0 is the one address 127.0.0.0/32 here, where xinetd read 127.0.0.0 as 127.0.0.0/8"),
        "{line}"
    );
}
