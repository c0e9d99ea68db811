//! Signals superd does not act on, and upgrade in place with SIGUSR2
//! (superd.8, SIGNALS and UPGRADING).

use nix::sys::signal::Signal;

use crate::harness::*;

/// No signal ends superd silently: the ones it has no use for are logged
/// (or, for SIGPIPE and the realtime signals, ignored), and it serves on.
#[test]
fn unused_signals_are_logged_and_superd_serves_on() {
    let d = Superd::start("services:\n  echo:\n    listen: 127.0.0.1:0\n    builtin: echo\n");
    let addr = d.addr("echo");
    let logged = [
        Signal::SIGALRM,
        Signal::SIGQUIT,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGTSTP,
        Signal::SIGVTALRM,
        Signal::SIGPROF,
        Signal::SIGIO,
        Signal::SIGPWR,
        Signal::SIGXCPU,
        Signal::SIGXFSZ,
    ];
    for sig in logged {
        d.signal(sig);
        d.wait_for(&["signal ignored", &format!("signal={}", sig.as_str())]);
    }
    d.signal(Signal::SIGPIPE);
    let rt = libc::SIGRTMIN() + 3;
    assert_eq!(kill_raw(d.pid(), rt), 0);
    // A signal sent after them is handled: superd is still there.
    d.signal(Signal::SIGUSR1);
    d.wait_for(&["status service=echo "]);
    assert_eq!(exchange(&addr, b"still\n"), b"still\n");
    assert_eq!(proc_state(d.pid()).map(|s| s != 'Z'), Some(true));
    let status = d.stop();
    assert_eq!(status.code(), Some(0));
}

/// kill(2) with a raw signal number (nix's `Signal` has no realtime ones).
fn kill_raw(pid: i32, sig: i32) -> i32 {
    let out = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    out.code().unwrap_or(-1)
}

/// superd started from a copy of the binary in its own directory, so a
/// test can put another file at that path.
fn start_from_copy(yaml: &str) -> (Superd, std::path::PathBuf) {
    start_from_copy_with(yaml, &[])
}

fn start_from_copy_with(yaml: &str, env: &[(&str, &str)]) -> (Superd, std::path::PathBuf) {
    let dir = TempDir::new("up");
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(conf.join("test.yaml"), yaml).unwrap();
    let exe = dir.path().join("bin-superd");
    install(&superd_bin(), &exe);
    let cmd = std::process::Command::new(&exe);
    let d = Superd::spawn_command(cmd, dir, &[conf.to_str().unwrap(), "-v"], env);
    d.wait_for(&["ready "]);
    (d, exe)
}

/// Puts `from` at `to` as a new file (a rename: the running binary's file
/// is never written), and waits until it can be executed: a child another
/// test thread forks while the copy is open for writing holds that
/// descriptor until its own exec, and executing the file fails with
/// ETXTBSY meanwhile.
fn install(from: &std::path::Path, to: &std::path::Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).expect("copy the binary");
    set_mode(&tmp, 0o755);
    std::fs::rename(&tmp, to).expect("rename the binary");
    wait_executable(to);
}

/// Runs `path --version` until it is not refused with ETXTBSY (see
/// `install`), whatever it then does.
fn wait_executable(path: &std::path::Path) {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        match std::process::Command::new(path)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
        {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{}: {e}",
                    path.display()
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            _ => return,
        }
    }
}

fn install_text(text: &str, to: &std::path::Path, mode: u32) {
    let tmp = to.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    set_mode(&tmp, mode);
    std::fs::rename(&tmp, to).unwrap();
    if mode & 0o111 != 0 {
        wait_executable(to);
    }
}

fn set_mode(p: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The inode of the TCP socket listening on 127.0.0.1:`port`.
fn listening_inode(port: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let want = format!("0100007F:{port:04X}");
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 9 && f[1] == want && f[3] == "0A").then(|| f[9].parse().ok())?
    })
}

fn services_yaml() -> String {
    let user = user_line();
    format!(
        "services:\n  hi:\n    listen: 127.0.0.1:0\n    exec: [/bin/echo, hi]\n    {user}\n  \
         hold:\n    listen: 127.0.0.1:0\n    exec: [/bin/cat]\n    {user}\n  \
         slow:\n    listen: 127.0.0.1:0\n    exec: [/bin/sleep, \"60\"]\n    timeout: 4s\n    {user}\n  \
         echo:\n    listen: 127.0.0.1:0\n    builtin: echo\n  \
         chargen:\n    listen: 127.0.0.1:0\n    builtin: chargen\n"
    )
}

/// Clients at concurrency 8 on `addr`, each expecting `hi`; returns the
/// stop flag, the count of good answers and the failures seen.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    failures: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: &str, clients: usize) -> Load {
        use std::io::Read;
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ok = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let failures = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok, failures, addr) =
                    (stop.clone(), ok.clone(), failures.clone(), addr.to_string());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let got = std::net::TcpStream::connect(&addr).and_then(|mut s| {
                            s.set_read_timeout(Some(DEADLINE))?;
                            let mut v = Vec::new();
                            s.read_to_end(&mut v)?;
                            Ok(v)
                        });
                        match got {
                            Ok(v) if v == b"hi\n" => {
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(v) => failures
                                .lock()
                                .unwrap()
                                .push(format!("answer {:?}", String::from_utf8_lossy(&v))),
                            Err(e) => failures.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            threads,
        }
    }

    fn served(&self) -> usize {
        self.ok.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops the clients; the failures they saw.
    fn finish(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.failures.lock().unwrap())
    }
}

/// The byte at `n` of chargen's stream (RFC 864: lines of 72 printable
/// characters, each starting one further, then CRLF).
fn chargen_byte(n: u64) -> u8 {
    let (line, col) = (n / 74, n % 74);
    match col {
        72 => b'\r',
        73 => b'\n',
        _ => b' ' + ((line + col) % 95) as u8,
    }
}

/// A chargen reader: the bytes it read, all checked against the stream.
struct Reader {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

impl Reader {
    fn start(addr: &str) -> Reader {
        use std::io::Read;
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut s = connect(addr);
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let (stop2, read2) = (stop.clone(), read.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut at = 0u64;
            while !stop2.load(Ordering::SeqCst) {
                let n = s.read(&mut buf).map_err(|e| format!("at {at}: {e}"))?;
                if n == 0 {
                    return Err(format!("closed at {at}"));
                }
                for &b in &buf[..n] {
                    if b != chargen_byte(at) {
                        return Err(format!("byte {at} is {b}, not {}", chargen_byte(at)));
                    }
                    at += 1;
                }
                read2.store(at, Ordering::SeqCst);
            }
            Ok(())
        });
        Reader { stop, read, thread }
    }

    fn read(&self) -> u64 {
        self.read.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn finish(self) -> Result<(), String> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

fn wait_served_more(d: &Superd, load: &Load, than: usize) {
    d.wait_until("the clients to be served", || load.served() > than + 8);
}

/// SIGUSR2 under load: nothing refused or reset, the same pid and
/// listening socket, a child from before is reaped after with its start
/// time, a timeout set before fires after, no zombie, no fd left over.
#[test]
fn an_upgrade_under_load_drops_nothing() {
    use std::io::{Read, Write};
    let (d, exe) = start_from_copy(&services_yaml());
    let hi = d.addr("hi");
    let port = d.port("hi");
    let inode = listening_inode(port).expect("listening");
    let fds = d.fd_count();
    let pid = d.pid();

    let load = Load::start(&hi, 8);
    wait_served_more(&d, &load, 0);
    let mut hold = connect(&d.addr("hold"));
    hold.write_all(b"before\n").unwrap();
    let mut buf = [0u8; 7];
    hold.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"before\n");
    let held_since = std::time::Instant::now();
    let _slow = connect(&d.addr("slow"));
    d.wait_for(&["spawn service=slow"]);
    // Builtin sessions open across it: echo owes nothing, chargen streams.
    let mut echo = connect(&d.addr("echo"));
    echo.write_all(b"one\n").unwrap();
    let mut four = [0u8; 4];
    echo.read_exact(&mut four).unwrap();
    assert_eq!(&four, b"one\n");
    let chargen = Reader::start(&d.addr("chargen"));
    d.wait_until("chargen bytes", || chargen.read() > 100_000);

    install(&superd_bin(), &exe);
    d.signal(Signal::SIGUSR2);
    let line = d.wait_for(&["upgraded from="]);
    assert!(
        line.contains(&format!("to={}", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    let served = load.served();
    wait_served_more(&d, &load, served);
    // The sessions go on: chargen's bytes flow on in sequence well past
    // what the socket buffers held at the exec.
    let before = chargen.read();
    d.wait_until("chargen bytes after the upgrade", || {
        chargen.read() > before + 32 * 1024 * 1024
    });
    echo.write_all(b"two\n").unwrap();
    echo.read_exact(&mut four).unwrap();
    assert_eq!(&four, b"two\n");
    drop(echo);
    chargen.finish().expect("chargen's stream");
    d.wait_for(&["exit service=chargen"]);

    // The same process, the same socket.
    assert_eq!(d.pid(), pid);
    assert_eq!(listening_inode(port), Some(inode));
    // The child from before still talks, and is reaped by the new image.
    hold.write_all(b"after!\n").unwrap();
    hold.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"after!\n");
    // It ran at least this long, across both images (it started before
    // `held_since` and still runs now).
    let at_least = held_since.elapsed().as_secs_f64();
    drop(hold);
    let exit = d.wait_for(&["exit service=hold "]);
    let lasted: f64 = field(&exit, "duration")
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    // The log shows milliseconds.
    assert!(lasted >= at_least - 0.001, "{exit} (at least {at_least}s)");
    // Its timeout, set before, fires after.
    d.wait_for(&["timeout service=slow "]);
    d.wait_for(&["exit service=slow ", "reason=timeout"]);

    let failures = load.finish();
    assert!(failures.is_empty(), "failures: {failures:?}");
    d.wait_until("no zombie and the fds back", || {
        d.zombies() == 0 && d.fd_count() <= fds
    });
    assert_eq!(d.stop().code(), Some(0));
}

/// 100 upgrades in a row under light load: every one takes, the pid and
/// the socket stay, and memory does not grow.
#[test]
fn a_hundred_upgrades_in_a_row() {
    let (d, exe) = start_from_copy(&services_yaml());
    let hi = d.addr("hi");
    let port = d.port("hi");
    let inode = listening_inode(port).expect("listening");
    let pid = d.pid();
    let fds = d.fd_count();
    install(&superd_bin(), &exe);
    let load = Load::start(&hi, 1);
    let mut rss10 = 0;
    for i in 1..=100 {
        d.signal(Signal::SIGUSR2);
        d.wait_nth(i, &["upgraded from="]);
        if i == 10 {
            rss10 = d.rss_kib();
        }
    }
    let served = load.served();
    wait_served_more(&d, &load, served);
    let rss100 = d.rss_kib();
    eprintln!(
        "100 upgrades: VmRSS {rss10} kB after 10, {rss100} kB after 100; {} served",
        load.served()
    );
    let failures = load.finish();
    assert!(failures.is_empty(), "failures: {failures:?}");
    assert_eq!(d.pid(), pid);
    assert_eq!(listening_inode(port), Some(inode));
    assert!(
        rss100 <= rss10 + rss10 / 4 + 1024,
        "VmRSS {rss10} kB after 10 upgrades, {rss100} kB after 100"
    );
    d.wait_until("no zombie and the fds back", || {
        d.zombies() == 0 && d.fd_count() <= fds
    });
    assert!(d.lines_with(&["upgrade refused"]).is_empty());
    assert_eq!(d.stop().code(), Some(0));
}

/// superd's descriptors into cgroupfs (the connection cgroups it keeps
/// open, superd.8 PROCESS TREES), by target; `None` where its
/// /proc/PID/fd is not this test's to read.
fn cgroup_fds(pid: i32) -> Option<usize> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        fds.flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter(|t| t.starts_with("/sys/fs/cgroup"))
            .count(),
    )
}

/// After an upgrade, with a child carried in its cgroup, superd holds as
/// many descriptors as before once that child is gone: the new image
/// keeps its own connection cgroups open, none inherited.
#[test]
fn an_upgrade_leaves_the_descriptor_count_of_a_fresh_start() {
    use std::io::{Read, Write};
    let (d, exe) = start_from_copy(&services_yaml());
    let hi = d.addr("hi");
    assert_eq!(exchange(&hi, b""), b"hi\n");
    d.wait_nth(1, &["exit service=hi "]);
    let Some(fds) = d.fd_count() else {
        return;
    };
    let cgroup = cgroup_fds(d.pid());
    let mut hold = connect(&d.addr("hold"));
    hold.write_all(b"before\n").unwrap();
    let mut buf = [0u8; 7];
    hold.read_exact(&mut buf).unwrap();
    install(&superd_bin(), &exe);
    d.signal(Signal::SIGUSR2);
    d.wait_for(&["upgraded from="]);
    hold.write_all(b"after!\n").unwrap();
    hold.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"after!\n");
    drop(hold);
    d.wait_for(&["exit service=hold "]);
    assert_eq!(exchange(&hi, b""), b"hi\n");
    d.wait_nth(2, &["exit service=hi "]);
    d.wait_until("no zombie, the same descriptors as before", || {
        d.zombies() == 0 && d.fd_count() == Some(fds) && cgroup_fds(d.pid()) == cgroup
    });
    assert_eq!(d.stop().code(), Some(0));
}

/// A new binary that cannot run, or fails its `--check`: refused, and
/// superd serves on as it was.
#[test]
fn a_broken_new_binary_is_refused() {
    let (d, exe) = start_from_copy(&services_yaml());
    let hi = d.addr("hi");
    let pid = d.pid();
    install_text("\x7fELF not really", &exe, 0o644);
    d.signal(Signal::SIGUSR2);
    let line = d.wait_nth(1, &["upgrade refused"]);
    assert!(line.contains("reason="), "{line}");
    assert_eq!(exchange(&hi, b""), b"hi\n");
    install_text("#!/bin/sh\necho broken >&2\nexit 1\n", &exe, 0o755);
    d.signal(Signal::SIGUSR2);
    let line = d.wait_nth(2, &["upgrade refused"]);
    assert!(
        line.contains("--check failed") && line.contains("broken"),
        "{line}"
    );
    assert_eq!(exchange(&hi, b""), b"hi\n");
    assert_eq!(d.pid(), pid);
    assert!(d.lines_with(&["upgraded from="]).is_empty());
    assert_eq!(d.stop().code(), Some(0));
}

/// A new binary that passes `--check` but refuses the state (a format of
/// another version): the previous binary takes the state back, same pid,
/// still serving, its children still its own.
#[test]
fn a_new_binary_that_cannot_restore_is_rolled_back() {
    use std::io::{Read, Write};
    let (d, exe) = start_from_copy(&services_yaml());
    let hi = d.addr("hi");
    let port = d.port("hi");
    let inode = listening_inode(port).expect("listening");
    let pid = d.pid();
    let mut hold = connect(&d.addr("hold"));
    hold.write_all(b"before\n").unwrap();
    let mut buf = [0u8; 7];
    hold.read_exact(&mut buf).unwrap();
    // The same binary, reading state format 999 only.
    let real = exe.with_file_name("real-superd");
    install(&superd_bin(), &real);
    install_text(
        &format!(
            "#!/bin/sh\nSUPERD_STATE_VERSION=999 exec {} \"$@\"\n",
            real.display()
        ),
        &exe,
        0o755,
    );
    d.signal(Signal::SIGUSR2);
    let line = d.wait_for(&["upgrade failed", "rolled back"]);
    assert!(line.contains("999"), "{line}");
    d.wait_nth(2, &["ready "]);
    assert_eq!(d.pid(), pid);
    assert_eq!(listening_inode(port), Some(inode));
    assert_eq!(exchange(&hi, b""), b"hi\n");
    hold.write_all(b"after!\n").unwrap();
    hold.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"after!\n");
    drop(hold);
    d.wait_for(&["exit service=hold "]);
    // And a good binary upgrades it afterwards.
    install(&superd_bin(), &exe);
    d.signal(Signal::SIGUSR2);
    d.wait_for(&["upgraded from="]);
    assert_eq!(exchange(&hi, b""), b"hi\n");
    assert_eq!(d.stop().code(), Some(0));
}

/// A wait service's child running across an upgrade keeps its listener:
/// the new image does not watch it (no second child while the first
/// runs), and takes it back when the child ends. The child's stderr
/// pipe (`stderr: log`) carries over with it.
#[test]
fn a_wait_child_keeps_its_listener_across_an_upgrade() {
    let user = user_line();
    let flag = std::env::temp_dir().join(format!("superd-upgrade-wait-{}", std::process::id()));
    let _ = std::fs::remove_file(&flag);
    let (d, exe) = start_from_copy(&format!(
        "services:\n  w:\n    listen: 127.0.0.1:0\n    wait: true\n    stderr: log\n    \
         exec: [/bin/sh, -c, \"echo started >&2; while [ ! -e {f} ]; do sleep 0.05; done; echo ending >&2\"]\n    {user}\n",
        f = flag.display()
    ));
    let addr = d.addr("w");
    let _first = connect(&addr);
    d.wait_nth(1, &["spawn service=w"]);
    d.wait_for(&["stderr service=w", "started"]);
    install(&superd_bin(), &exe);
    d.signal(Signal::SIGUSR2);
    d.wait_for(&["upgraded from=", "children=1"]);
    // Waits in the backlog until the child ends.
    let _second = connect(&addr);
    std::fs::write(&flag, "").unwrap();
    d.wait_for(&["stderr service=w", "ending"]);
    d.wait_for(&["exit service=w "]);
    d.wait_nth(2, &["spawn service=w"]);
    let text = d.log_text();
    let first_exit = text.find("exit service=w ").unwrap();
    let second_spawn = text.rfind("spawn service=w").unwrap();
    assert!(first_exit < second_spawn, "{text}");
    d.wait_nth(2, &["exit service=w "]);
    let _ = std::fs::remove_file(&flag);
    assert_eq!(d.stop().code(), Some(0));
}

/// Counters and a `rate` bucket's fill carry over: a service whose one
/// token a minute is spent is still paused after an upgrade, and its
/// counts go on.
#[test]
fn counters_and_the_rate_bucket_carry_over() {
    let (d, exe) = start_from_copy(
        "services:\n  r:\n    listen: 127.0.0.1:0\n    builtin: daytime\n    rate: \"1/m\"\n",
    );
    let addr = d.addr("r");
    assert!(!exchange(&addr, b"").is_empty());
    install(&superd_bin(), &exe);
    d.signal(Signal::SIGUSR2);
    d.wait_for(&["upgraded from="]);
    // The second connection waits for the next token, a minute away.
    let _waiting = connect(&addr);
    d.wait_until("the service paused for its rate", || {
        // Counted before the signal: its answer is the next line.
        let n = d.lines_with(&["status service=r "]).len();
        d.signal(Signal::SIGUSR1);
        d.wait_nth(n + 1, &["status service=r "])
            .contains("state=paused_rate")
    });
    let st = d.lines_with(&["status service=r "]).pop().unwrap();
    assert!(st.contains(" accepted=1 "), "{st}");
    assert_eq!(d.stop().code(), Some(0));
}

/// Under systemd: RELOADING=1 (with MONOTONIC_USEC) before the exec,
/// READY=1 once the new image serves, from the same pid.
#[test]
fn sd_notify_reloading_then_ready_around_an_upgrade() {
    let dir = TempDir::new("upnotify");
    let sock = dir.path().join("notify.sock");
    let rx = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(DEADLINE)).unwrap();
    let (d, exe) = start_from_copy_with(
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
        &[("NOTIFY_SOCKET", sock.to_str().unwrap())],
    );
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = rx.recv(&mut buf).expect("notification");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert_eq!(next(), "READY=1");
    install(&superd_bin(), &exe);
    d.signal(Signal::SIGUSR2);
    assert!(next().starts_with("RELOADING=1\nMONOTONIC_USEC="));
    assert_eq!(next(), "READY=1");
    d.wait_for(&["upgraded from="]);
    // The next image still knows the socket (superd keeps it in the state).
    d.signal(Signal::SIGUSR2);
    assert!(next().starts_with("RELOADING=1"));
    assert_eq!(next(), "READY=1");
    d.signal(Signal::SIGTERM);
    assert_eq!(next(), "STOPPING=1");
}

/// The pid file and its lock carry over: another superd on it is still
/// refused after an upgrade, and the new image removes it at exit.
#[test]
fn the_pidfile_lock_carries_over() {
    let dir = TempDir::new("uppid");
    let pid_dir = TempDir::new("uppidfile");
    let pidfile = pid_dir.path().join("superd.pid");
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(
        conf.join("t.yaml"),
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
    )
    .unwrap();
    let exe = dir.path().join("bin-superd");
    install(&superd_bin(), &exe);
    let d = Superd::spawn_command(
        std::process::Command::new(&exe),
        dir,
        &[
            conf.to_str().unwrap(),
            "--pidfile",
            pidfile.to_str().unwrap(),
        ],
        &[],
    );
    d.wait_for(&["ready "]);
    install(&superd_bin(), &exe);
    d.signal(Signal::SIGUSR2);
    d.wait_for(&["upgraded from="]);
    let other = TempDir::new("uppid2");
    other.write("t.yaml", "services: {}\n");
    let p2 = other.path().to_str().unwrap().to_string();
    let mut second = Superd::spawn(other, &[&p2, "--pidfile", pidfile.to_str().unwrap()], &[]);
    assert_eq!(second.wait_exit().code(), Some(1));
    assert!(second.log_text().contains("held by another superd"));
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        d.pid().to_string()
    );
    assert_eq!(d.stop().code(), Some(0));
    assert!(!pidfile.exists(), "pidfile removed at exit");
}

/// Pidfds superd holds (`anon_inode:[pidfd]` in its /proc/PID/fd);
/// `None` where that is not this test's to read.
fn pidfd_count(pid: i32) -> Option<usize> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        dir.flatten()
            .filter(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|t| t.to_string_lossy() == "anon_inode:[pidfd]")
            })
            .count(),
    )
}

// A child carried across an upgrade is reaped through a pidfd of the new
// image, as one started there (superd.8, UPGRADING), not by the sweep.
#[test]
fn a_carried_child_gets_a_pidfd_of_the_new_image() {
    let (d, exe) = start_from_copy(&format!(
        "services:\n  cat:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    {}\n",
        user_line()
    ));
    let Some(before) = pidfd_count(d.pid()) else {
        return skip("superd's pidfds: its /proc/PID/fd is root's to read");
    };
    if !d.log_text().contains("reap=pidfd") {
        return skip("this kernel reaps without pidfds");
    }
    assert_eq!(before, 0);
    let held = connect(&d.addr("cat"));
    d.wait_nth(1, &["spawn service=cat"]);
    install(&superd_bin(), &exe);
    d.signal(Signal::SIGUSR2);
    d.wait_for(&["upgraded from=", "children=1"]);
    d.wait_until("one pidfd for the carried child", || {
        pidfd_count(d.pid()) == Some(1)
    });
    drop(held);
    d.wait_for(&["exit service=cat "]);
    d.wait_until("no pidfd left", || pidfd_count(d.pid()) == Some(0));
    assert_eq!(d.stop().code(), Some(0));
}

/// `GET /metrics` from a `builtin: metrics` service: the body.
fn metrics_body(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = connect(addr);
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or(out)
}

// The duration histogram and the paused time carry over an upgrade with
// the other counters (superd.8, UPGRADING).
#[test]
fn the_duration_histogram_carries_over() {
    let (d, exe) = start_from_copy(&format!(
        "services:\n  t:\n    listen: 127.0.0.1:0\n    exec: [/bin/echo, hi]\n    {}\n  m:\n    listen: 127.0.0.1:0\n    builtin: metrics\n",
        user_line()
    ));
    for n in 1..=3 {
        assert_eq!(exchange(&d.addr("t"), b""), b"hi\n");
        d.wait_nth(n, &["exit service=t "]);
    }
    let key = "superd_connection_duration_seconds_count{service=\"t\"} ";
    let count = |body: &str| -> Option<String> {
        body.lines()
            .find_map(|l| l.strip_prefix(key).map(str::to_owned))
    };
    assert_eq!(count(&metrics_body(&d.addr("m"))).as_deref(), Some("3"));
    install(&superd_bin(), &exe);
    d.signal(Signal::SIGUSR2);
    d.wait_for(&["upgraded from="]);
    let body = metrics_body(&d.addr("m"));
    assert_eq!(count(&body).as_deref(), Some("3"), "{body}");
    assert_eq!(d.stop().code(), Some(0));
}

/// A UDP chargen's rotation (the line its next datagram starts at) goes
/// on across an upgrade rather than starting again at the first line.
#[test]
fn udp_chargen_rotation_carries_over() {
    let (d, exe) = start_from_copy(
        "services:\n  uchargen:\n    listen: 127.0.0.1:0\n    socket: dgram\n    builtin: chargen\n",
    );
    let to: std::net::SocketAddr = d.addr("uchargen").parse().unwrap();
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    // The first byte of each line: ' ' + k for line k.
    let first_byte = || {
        c.send_to(b"", to).unwrap();
        let mut buf = [0u8; 1024];
        let (n, _) = c.recv_from(&mut buf).expect("a chargen datagram");
        assert!(n > 0);
        buf[0]
    };
    assert_eq!(first_byte(), b' ');
    assert_eq!(first_byte(), b'!');
    install(&superd_bin(), &exe);
    d.signal(Signal::SIGUSR2);
    d.wait_for(&["upgraded from="]);
    assert_eq!(first_byte(), b'"', "the rotation started again");
    assert_eq!(d.stop().code(), Some(0));
}

/// A new binary whose `--check` first writes its pid to `started`, then
/// waits (at most 20 s) for `gate` to exist (or runs `check_cmd` instead),
/// then runs the real superd; run without `--check` it is the real superd.
fn install_slow_check(
    exe: &std::path::Path,
    check_cmd: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = exe.parent().unwrap();
    let (started, gate) = (dir.join("check-started"), dir.join("check-gate"));
    let text = format!(
        "#!/bin/sh\nif [ \"$1\" = --check ]; then\n  echo $$ > '{started}.new' && mv '{started}.new' '{started}'\n  {check_cmd}\n  \
         i=0\n  while [ ! -e '{gate}' ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done\nfi\n\
         exec '{real}' \"$@\"\n",
        started = started.display(),
        gate = gate.display(),
        real = superd_bin().display(),
    );
    install_text(&text, exe, 0o755);
    (started, gate)
}

/// The new binary's `--check` runs while superd serves on: an echo
/// session completes while the check waits, a second SIGUSR2 meanwhile is
/// logged and ignored, and the upgrade goes on once the check passes.
#[test]
fn the_check_runs_while_superd_serves() {
    let (d, exe) = start_from_copy(&services_yaml());
    let echo = d.addr("echo");
    let (started, gate) = install_slow_check(&exe, ":");
    d.signal(Signal::SIGUSR2);
    d.wait_until("the check to start", || started.exists());
    assert_eq!(
        exchange(&echo, b"during the check\n"),
        b"during the check\n"
    );
    assert_eq!(exchange(&d.addr("hi"), b""), b"hi\n");
    // Served while the check still runs (a check run in the loop would
    // have held the loop until it was killed at its deadline).
    let check_pid = std::fs::read_to_string(&started).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", check_pid.trim()))
        .expect("the check still runs");
    assert!(!stat.contains(") Z "), "{stat}");
    assert!(d.lines_with(&["upgrade refused"]).is_empty());
    d.signal(Signal::SIGUSR2);
    d.wait_for(&["upgrade ignored"]);
    assert!(d.lines_with(&["upgraded from="]).is_empty());
    std::fs::write(&gate, b"").unwrap();
    d.wait_for(&["upgraded from="]);
    assert_eq!(exchange(&echo, b"after\n"), b"after\n");
    assert!(d.lines_with(&["upgrade refused"]).is_empty());
    assert_eq!(d.stop().code(), Some(0));
}

/// A `--check` that outlives its deadline (10 s) is killed and the upgrade
/// refused; superd serves on meanwhile and after.
#[test]
fn a_check_past_its_deadline_is_refused() {
    let (d, exe) = start_from_copy(&services_yaml());
    let echo = d.addr("echo");
    let (started, _gate) = install_slow_check(&exe, "exec sleep 60");
    d.signal(Signal::SIGUSR2);
    d.wait_until("the check to start", || started.exists());
    assert_eq!(exchange(&echo, b"waiting\n"), b"waiting\n");
    let line = d.wait_for(&["upgrade refused"]);
    assert!(line.contains("--check took longer than 10s"), "{line}");
    assert_eq!(exchange(&echo, b"after\n"), b"after\n");
    d.wait_until("the check killed and reaped", || d.zombies() == 0);
    assert!(d.lines_with(&["upgraded from="]).is_empty());
    assert_eq!(d.stop().code(), Some(0));
}

/// A connection of a `proxy_protocol` service still waiting for its PROXY
/// header (part of it sent) is carried across an upgrade: its proxy sends
/// the rest afterwards and the client is served.
#[test]
fn a_connection_waiting_for_its_proxy_header_is_carried() {
    use std::io::{Read, Write};
    let (d, exe) = start_from_copy(
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    proxy_protocol: v1\n    proxy_from: 127.0.0.1\n    proxy_timeout: 60s\n",
    );
    let mut s = connect(&d.addr("e"));
    s.write_all(b"PROXY TCP4 192.0.2.7 ").unwrap();
    d.signal(Signal::SIGUSR1);
    d.wait_for(&["status ", "proxy_headers=1"]);
    install(&superd_bin(), &exe);
    d.signal(Signal::SIGUSR2);
    d.wait_for(&["upgraded from="]);
    s.write_all(b"192.0.2.1 4000 7\r\nhello\n").unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert_eq!(out, b"hello\n");
    let line = d.wait_for(&["exit service=e"]);
    assert!(line.contains("peer=192.0.2.7:4000"), "{line}");
    assert!(d.lines_with(&["refused service=e"]).is_empty());
    assert_eq!(d.stop().code(), Some(0));
}
