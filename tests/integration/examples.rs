//! Every example in `examples/` runs as its header says: superd started on
//! the example's YAML, a client talks to it, the answer is checked. The
//! YAML and its program are copied into a temporary directory (mode 755, so
//! `user: nobody` can run them when the tests run as root) and only the
//! listen address is rewritten, to port 0 or a private socket path.

use std::fs;
use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::*;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The example's YAML with every `listen:` value replaced by `listen`, and
/// the `exec:` value by `exec` when given.
fn rewrite(yaml: &str, listen: &str, exec: Option<&str>) -> String {
    let mut out = String::new();
    for line in yaml.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let t = line.trim_start();
        if t.starts_with("listen:") {
            out.push_str(&format!("{indent}listen: {listen:?}\n"));
        } else if let (true, Some(e)) = (t.starts_with("exec:"), exec) {
            out.push_str(&format!("{indent}exec: {e}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Copies `programs` (from `examples/`, or absolute paths) next to the
/// rewritten `yaml` in a fresh directory and starts superd on the YAML file.
fn start(yaml: &str, listen: &str, programs: &[&Path], exec: Option<&str>) -> Superd {
    let original = fs::read_to_string(examples_dir().join(yaml)).expect("example yaml");
    assert!(original.starts_with('#'), "{yaml} has no header comment");
    let dir = TempDir::new("ex");
    for p in programs {
        let from = if p.is_absolute() {
            p.to_path_buf()
        } else {
            examples_dir().join(p)
        };
        let to = dir.path().join(from.file_name().unwrap());
        fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let file = dir.write(yaml, &rewrite(&original, listen, exec));
    let file = file.to_str().unwrap().to_owned();
    Superd::spawn(dir, &[&file, "-v"], &[])
}

/// The example's own header comment must show how it is run.
/// Whether a child would find `python3` on its PATH (SPEC §3's PATH);
/// the Python examples skip, with a reason, where it would not.
fn child_has_python3() -> bool {
    let found = ["/usr/local/bin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join("python3").exists());
    if !found {
        skip("no python3 in /usr/local/bin:/usr/bin:/bin for the child");
    }
    found
}

fn header_mentions(file: &str, what: &str) {
    let text = fs::read_to_string(examples_dir().join(file)).unwrap();
    let header: String = text
        .lines()
        .take_while(|l| l.starts_with('#') || l.starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        header.contains(what),
        "{file}: header does not mention {what:?}:\n{header}"
    );
}

/// The unmodified example YAML passes `superd --check` where it lies.
fn checks_as_shipped(yaml: &str) {
    let out = Command::new(superd_bin())
        .arg("--check")
        .arg(examples_dir().join(yaml))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "superd --check examples/{yaml}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hello_sh_greets_and_shouts() {
    header_mentions("hello.sh", "superd examples/hello.yaml");
    checks_as_shipped("hello.yaml");
    let d = start("hello.yaml", "127.0.0.1:0", &[Path::new("hello.sh")], None);
    let addr = d.addr("hello");
    let reply = String::from_utf8(exchange(&addr, b"superd\n")).unwrap();
    let mut lines = reply.lines();
    let greeting = lines.next().unwrap_or_default();
    assert!(
        greeting.starts_with("hello 127.0.0.1:") && greeting.ends_with("this is hello"),
        "{reply:?}"
    );
    assert_eq!(lines.next(), Some("SUPERD"), "{reply:?}");
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn greet_py_greets_its_peer_from_remote_addr() {
    if !child_has_python3() {
        return;
    }
    header_mentions("greet.py", "superd examples/greet.yaml");
    checks_as_shipped("greet.yaml");
    let d = start("greet.yaml", "127.0.0.1:0", &[Path::new("greet.py")], None);
    let addr = d.addr("greet");
    let mut s = connect(&addr);
    let me = s.local_addr().unwrap();
    s.write_all(b"abc\nsuperd\n").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some(
            format!(
                "hello {} (port {}), I count characters. Type a line.",
                me.ip(),
                me.port()
            )
            .as_str()
        ),
        "{out:?}"
    );
    assert_eq!(lines.next(), Some("3 characters: abc"));
    assert_eq!(lines.next(), Some("6 characters: superd"));
    d.wait_for(&["exit", "service=greet", "status=0"]);
}

#[test]
fn peername_rs_finds_its_peer_with_getpeername() {
    header_mentions("peername.rs", "cargo build --example peername");
    header_mentions("peername.yaml", "cargo build --example peername");
    let bin = example_bin("peername");
    assert!(
        bin.exists(),
        "cargo test builds examples: {}",
        bin.display()
    );
    // The shipped YAML points into target/debug; check it when that is
    // where this build put the example.
    let shipped = examples_dir().join("../target/debug/examples/peername");
    if fs::canonicalize(&shipped).ok() == fs::canonicalize(&bin).ok() {
        checks_as_shipped("peername.yaml");
    } else {
        eprintln!("not checking examples/peername.yaml as shipped: the target dir is elsewhere");
    }
    let d = start("peername.yaml", "127.0.0.1:0", &[&bin], Some("./peername"));
    let addr = d.addr("peername");
    let mut s = connect(&addr);
    let me = s.local_addr().unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(
        out,
        format!(
            "getpeername(0): {me}\nREMOTE_ADDR={} REMOTE_PORT={}\n",
            me.ip(),
            me.port()
        )
    );
}

#[test]
fn whoami_unix_reports_the_peers_uid() {
    header_mentions("whoami-unix.sh", "superd examples/whoami-unix.yaml");
    checks_as_shipped("whoami-unix.yaml");
    let sock_dir = TempDir::new("ex-sock");
    let path = sock_dir.path().join("whoami.sock");
    let d = start(
        "whoami-unix.yaml",
        path.to_str().unwrap(),
        &[Path::new("whoami-unix.sh")],
        None,
    );
    d.addr("whoami-unix");
    let mut s = UnixStream::connect(&path).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let name = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "?".into());
    assert_eq!(
        out,
        format!(
            "uid={uid} user={name} gid={gid} pid={}\n",
            std::process::id()
        )
    );
}

#[test]
fn http_sh_answers_http_1_0() {
    header_mentions("http.sh", "superd examples/http.yaml");
    checks_as_shipped("http.yaml");
    let script = fs::read_to_string(examples_dir().join("http.sh")).unwrap();
    let code = script
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count();
    assert!(code <= 10, "http.sh has {code} lines of code, not ten");

    let d = start("http.yaml", "127.0.0.1:0", &[Path::new("http.sh")], None);
    let addr = d.addr("http");
    let reply = exchange(
        &addr,
        b"GET /hello HTTP/1.0\r\nHost: x\r\nUser-Agent: t\r\n\r\n",
    );
    let reply = String::from_utf8(reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("a header block");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{reply:?}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(len, body.len(), "{reply:?}");
    assert_eq!(
        body,
        "hello from superd: you asked for /hello, you are 127.0.0.1\n"
    );

    let reply = String::from_utf8(exchange(&addr, b"POST / HTTP/1.0\r\n\r\n")).unwrap();
    assert!(reply.starts_with("HTTP/1.0 405 "), "{reply:?}");
}

#[test]
fn udp_upper_py_serves_datagrams_in_wait_mode() {
    if !child_has_python3() {
        return;
    }
    header_mentions("udp-upper.py", "superd examples/udp-upper.yaml");
    checks_as_shipped("udp-upper.yaml");
    let d = start(
        "udp-upper.yaml",
        "127.0.0.1:0",
        &[Path::new("udp-upper.py")],
        None,
    );
    let line = d.wait_for(&["listening", "service=udp-upper"]);
    assert_eq!(field(&line, "socket").as_deref(), Some("dgram"));
    let addr = field(&line, "addr").unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = [0u8; 1024];
    // Two datagrams: one child owns the socket until it has been idle for
    // 10 s; whichever child reads the second one, it is answered.
    for (ask, want) in [(&b"hello"[..], &b"HELLO"[..]), (b"superd\n", b"SUPERD\n")] {
        sock.send_to(ask, &addr).unwrap();
        let (n, from) = sock.recv_from(&mut buf).expect("an answer");
        assert_eq!(&buf[..n], want);
        assert_eq!(from.to_string(), addr);
    }
    d.wait_for(&["spawn", "service=udp-upper"]);
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn ctf_sh_runs_fenced() {
    header_mentions("ctf.sh", "superd examples/ctf.yaml");
    if !is_root() {
        eprintln!("skipped: the fences of examples/ctf.yaml need root");
        return;
    }
    if examples_dir().starts_with("/tmp") || examples_dir().starts_with("/var/tmp") {
        // A checkout under /tmp: the private /tmp would hide ctf.sh, and
        // the load says so.
        let out = Command::new(superd_bin())
            .arg("--check")
            .arg(examples_dir().join("ctf.yaml"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("would hide the program"), "{err}");
    } else {
        checks_as_shipped("ctf.yaml");
    }
    // Outside /tmp, which the service's private /tmp would hide.
    let dir = outside_tmp().join(format!("superd-ex-ctf-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::copy(examples_dir().join("ctf.sh"), dir.join("ctf.sh")).unwrap();
    fs::set_permissions(dir.join("ctf.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    let yaml = fs::read_to_string(examples_dir().join("ctf.yaml")).unwrap();
    let file = dir.join("ctf.yaml");
    fs::write(&file, rewrite(&yaml, "127.0.0.1:0", None)).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let check = Command::new(superd_bin())
        .arg("--check")
        .arg(&file)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(
        shown.contains("fences: no_new_privs private_network private_tmp read_only_paths=[/]"),
        "{shown}"
    );
    let conf = TempDir::new("ex-ctf");
    let d = Superd::spawn(conf, &[file.to_str().unwrap(), "-v"], &[]);
    let reply = String::from_utf8(exchange(&d.addr("ctf"), b"42\n")).unwrap();
    assert_eq!(reply, "What is 6 * 7? flag{superd-fences}\n");
    let reply = String::from_utf8(exchange(&d.addr("ctf"), b"41\n")).unwrap();
    assert_eq!(reply, "What is 6 * 7? no\n");
    assert_eq!(d.stop().code(), Some(0));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn activated_py_serves_connections_from_its_inherited_socket() {
    if !child_has_python3() {
        return;
    }
    header_mentions("activated.py", "superd examples/activated.yaml");
    header_mentions("activated.yaml", "superd examples/activated.yaml");
    checks_as_shipped("activated.yaml");
    let d = start(
        "activated.yaml",
        "127.0.0.1:0",
        &[Path::new("activated.py")],
        None,
    );
    let addr = d.addr("activated");
    // One child serves both: it keeps the socket until it is idle.
    for n in 1..=2 {
        let reply = String::from_utf8(exchange(&addr, b"")).unwrap();
        assert!(
            reply.starts_with("hello 127.0.0.1 from pid ")
                && reply.contains(&format!("on greeting, connection {n}\n")),
            "{reply}"
        );
    }
    assert_eq!(d.lines_with(&["spawn", "service=activated"]).len(), 1);
    assert_eq!(d.stop().code(), Some(0));
}

/// The socket unit names superd's service and says what superd does with
/// its sockets.
#[test]
fn superd_socket_pairs_with_superd_service() {
    let text = fs::read_to_string(examples_dir().join("superd.socket")).unwrap();
    assert!(
        text.contains("[Socket]") && text.contains("ListenStream="),
        "{text}"
    );
    assert!(text.contains("inherited=yes"), "{text}");
    assert!(examples_dir().join("superd.service").exists());
}

#[test]
fn metrics_yaml_serves_metrics_and_status() {
    checks_as_shipped("metrics.yaml");
    let original = fs::read_to_string(examples_dir().join("metrics.yaml")).unwrap();
    assert!(original.starts_with('#'));
    let dir = TempDir::new("ex");
    let sock = dir.path().join("status.sock");
    let yaml = original
        .replace("listen: 127.0.0.1:9119", "listen: 127.0.0.1:0")
        .replace(
            "listen: /tmp/superd-status.sock",
            &format!("listen: {}", sock.display()),
        );
    assert_ne!(yaml, original);
    let file = dir.write("metrics.yaml", &yaml);
    let file = file.to_str().unwrap().to_owned();
    let d = Superd::spawn(dir, &[&file, "-v"], &[]);
    let reply = String::from_utf8(exchange(
        &d.addr("metrics"),
        b"GET /metrics HTTP/1.0\r\n\r\n",
    ))
    .unwrap();
    assert!(reply.starts_with("HTTP/1.0 200 OK\r\n"), "{reply}");
    assert!(reply.contains("\nsuperd_connections_total{service=\"status\"} 0\n"));
    let out = Command::new(superd_bin())
        .args(["status", sock.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.lines().any(|l| l.starts_with("metrics ")), "{table}");
    assert_eq!(d.stop().code(), Some(0));
}

/// The scrape job points at the address examples/metrics.yaml listens on,
/// and is a valid Prometheus configuration (when promtool is installed).
#[test]
fn prometheus_yml_scrapes_the_metrics_example() {
    let prom = fs::read_to_string(examples_dir().join("prometheus.yml")).unwrap();
    let yaml = fs::read_to_string(examples_dir().join("metrics.yaml")).unwrap();
    assert!(prom.contains("targets: [\"127.0.0.1:9119\"]"), "{prom}");
    assert!(yaml.contains("listen: 127.0.0.1:9119"), "{yaml}");
    match Command::new("promtool")
        .args(["check", "config"])
        .arg(examples_dir().join("prometheus.yml"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool check config: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => skip(&format!("promtool check config (promtool not found: {e})")),
    }
}
