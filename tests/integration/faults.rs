//! Hostile programs and exhausted resources through the real binary: a
//! crash storm, every kind of exec failure, fork failure, superd started
//! with fds 0-2 closed, a log reader that stops reading, and a flood of
//! refused connections. Each test is bounded in count and time; every wait
//! is for a log line, a socket event or a process state. The only timed
//! windows measure the absence of work (CPU while a fork keeps failing).

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::*;

// ---- measuring superd from /proc ----------------------------------------

/// User plus system CPU time `pid` has used.
fn cpu_time(pid: i32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // pid (comm) state ppid ... : utime and stime are fields 14 and 15,
    // the 12th and 13th after the comm.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<u64> = after
        .split(' ')
        .skip(11)
        .take(2)
        .map(|s| s.parse().expect("ticks"))
        .collect();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Duration::from_millis((f[0] + f[1]) * 1000 / hz)
}

/// Resident set size of `pid`, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn fd_count(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// SIGUSR1, then the `n`-th status line of `service`.
fn status(d: &Superd, service: &str, n: usize) -> String {
    d.signal(Signal::SIGUSR1);
    d.wait_nth(n, &["status service=", &format!("service={service} ")])
}

/// Connects, reads to EOF or reset; the bytes received.
fn read_all(addr: &str) -> Vec<u8> {
    let mut s = connect(addr);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Runs `count` calls of `f` from `threads` threads at once.
fn in_parallel(threads: usize, count: usize, f: impl Fn(usize) + Send + Sync + 'static) {
    let f = Arc::new(f);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let f = f.clone();
            std::thread::spawn(move || {
                let mut i = t;
                while i < count {
                    f(i);
                    i += threads;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
}

// ---- a superd started by hand (custom fds, user, limits) ------------------

/// A child process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

fn superd_command(dir: &Path) -> Command {
    let mut cmd = Command::new(superd_bin());
    cmd.arg(dir).arg("-v").env_remove("RUST_LOG");
    cmd
}

/// Reads until superd closes a refused connection: EOF, or a reset.
fn expect_refused(c: &mut TcpStream) {
    let mut b = [0u8; 1];
    match read_once(c, &mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("refused connection got {other:?}"),
    }
}

/// Connects to a unix socket once superd has bound it.
fn connect_unix(path: &Path) -> UnixStream {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match UnixStream::connect(path) {
            Ok(s) => {
                s.set_read_timeout(Some(DEADLINE)).unwrap();
                return s;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("connect {}: {e}", path.display()),
        }
    }
}

// ---- the tests ----------------------------------------------------------

/// 1,000 children that die by SIGSEGV: each exit logged with its signal,
/// the counters back to zero, and the service still serves.
#[test]
fn crash_storm_of_segfaulting_children_is_logged_and_survived() {
    const N: usize = 1000;
    let d = Superd::start(&format!(
        "services:\n  segv:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'kill -SEGV $$']\n    rlimits: {{core: 0}}\n    {}\n",
        user_line()
    ));
    let addr = d.addr("segv");
    let started = Instant::now();
    let a = addr.clone();
    in_parallel(8, N, move |_| {
        let _ = read_all(&a);
    });
    d.wait_until("every crash logged", || {
        d.lines_with(&["exit service=segv "]).len() >= N
    });
    let exits = d.lines_with(&["exit service=segv "]);
    assert_eq!(exits.len(), N, "one exit line per connection");
    for l in &exits {
        assert!(l.starts_with("WARN"), "{l}");
        assert!(l.contains(" signal=SIGSEGV "), "{l}");
    }
    let st = status(&d, "segv", 1);
    assert!(st.contains(" active=0 "), "{st}");
    assert!(st.contains(" state=listening "), "{st}");
    assert!(st.contains(&format!(" accepted={N} ")), "{st}");
    assert_eq!(d.zombies(), 0);
    // Still serving.
    let _ = read_all(&addr);
    d.wait_nth(N + 1, &["exit service=segv ", "signal=SIGSEGV"]);
    eprintln!("crash storm: {N} connections in {:?}", started.elapsed());
}

/// Text from a configuration (a quoted key, a program path) that holds a
/// newline or an escape sequence cannot make a log line end early or
/// forge another record: each record is one line, the bytes escaped.
#[test]
fn a_configuration_cannot_forge_log_lines() {
    let d = Superd::start("services:\n  a:\n    listen: 127.0.0.1:0\n    builtin: echo\n");
    d.addr("a");
    d.dir.write(
        "test.yaml",
        "services:\n  a:\n    listen: 127.0.0.1:0\n    exec: [\"/nonexistent\\nERROR  forged one\"]\n    user: nobody\n  b:\n    listen: 127.0.0.1:0\n    builtin: echo\n    \"lis\\nERROR  forged two\\e[2J\": 1\n",
    );
    d.signal(Signal::SIGHUP);
    d.wait_for(&["reload failed"]);
    let log = d.log_text();
    assert!(!log.contains('\x1b'), "{log}");
    for line in log.lines() {
        assert!(
            !line.starts_with("ERROR  forged"),
            "a forged record:\n{log}"
        );
    }
    assert!(log.contains("\\nERROR  forged one"), "{log}");
    assert!(log.contains("\\nERROR  forged two\\x1b[2J"), "{log}");
}

/// The same for text that reaches the log outside configuration errors:
/// a unix socket path with a newline, in its `listening` line.
#[test]
fn a_socket_path_cannot_forge_log_lines() {
    let dir = TempDir::new("forge");
    let path = dir
        .path()
        .join("a\nINFO  listening service=forged addr=1.2.3.4:1");
    let yaml = format!(
        "services:\n  u:\n    listen: \"{}\"\n    builtin: echo\n",
        path.display().to_string().replace('\n', "\\n")
    );
    let d = Superd::start(&yaml);
    let line = d.wait_for(&["listening", "service=u "]);
    assert!(line.contains("\\nINFO  listening service=forged"), "{line}");
    assert!(
        d.lines_with(&["service=forged"]).len() == 1,
        "{}",
        d.log_text()
    );
    assert!(
        !d.log_text()
            .lines()
            .any(|l| l.starts_with("INFO  listening service=forged"))
    );
}

/// Started with SIGCHLD ignored (which would have the kernel reap every
/// child unseen), superd still reaps and logs each child, and its
/// `max_connections` slot comes back.
#[test]
fn an_inherited_ignored_sigchld_does_not_hide_children() {
    let dir = TempDir::new("sigchld");
    dir.write(
        "test.yaml",
        &format!(
            "services:\n  hi:\n    listen: 127.0.0.1:0\n    exec: [/bin/echo, hi]\n    max_connections: 1\n    {}\n",
            user_line()
        ),
    );
    let path = dir.path().to_str().unwrap().to_string();
    let d = Superd::spawn_sigchld_ignored(dir, &[&path]);
    let addr = d.addr("hi");
    for n in 1..=3 {
        assert_eq!(read_all(&addr), b"hi\n", "connection {n}");
        let line = d.wait_nth(n, &["exit service=hi "]);
        assert!(line.contains(" status=0 "), "{line}");
    }
    assert_eq!(d.zombies(), 0);
}

/// Every way exec can fail, each logged with its errno; 1,000 failures in
/// all leak no descriptor and cost little CPU (nowait failures are paced).
#[test]
fn exec_failures_of_every_kind_are_logged_paced_and_leak_nothing() {
    const PER_KIND: usize = 250;
    let bin = TempDir::new("bin");
    let script = |name: &str, text: &str| {
        let p = bin.path().join(name);
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let missing = script("missing", "#!/bin/sh\nexit 0\n");
    let noexec = script("noexec", "#!/bin/sh\nexit 0\n");
    let empty = script("empty", "#!/bin/sh\nexit 0\n");
    let interp = script("interp", "#!/nonexistent/interpreter\nexit 0\n");
    let kinds: [(&str, &Path, &str); 4] = [
        ("enoent", &missing, "No such file or directory"),
        ("eacces", &noexec, "Permission denied"),
        ("enoexec", &empty, "Exec format error"),
        ("badinterp", &interp, "No such file or directory"),
    ];
    let mut yaml = String::from("services:\n");
    for (name, path, _) in &kinds {
        yaml.push_str(&format!(
            "  {name}:\n    listen: 127.0.0.1:0\n    exec: {}\n    {}\n",
            path.display(),
            user_line()
        ));
    }
    let d = Superd::start(&yaml);
    let addrs: Vec<String> = kinds.iter().map(|(n, _, _)| d.addr(n)).collect();
    // Loaded: now break the programs.
    fs::remove_file(&missing).unwrap();
    fs::set_permissions(&noexec, fs::Permissions::from_mode(0o644)).unwrap();
    fs::File::create(&empty).unwrap();

    let fds_before = d.fd_count();
    let cpu_before = cpu_time(d.pid());
    let started = Instant::now();
    let handles: Vec<_> = addrs
        .iter()
        .cloned()
        .map(|a| {
            std::thread::spawn(move || {
                for _ in 0..PER_KIND {
                    assert!(read_all(&a).is_empty(), "a failed exec sends nothing");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for (name, _, errno) in &kinds {
        let svc = format!("service={name} ");
        d.wait_until("every failure logged", || {
            d.lines_with(&["exec failed ", &svc]).len() >= PER_KIND
        });
        for l in d.lines_with(&["exec failed ", &svc]) {
            assert!(l.starts_with("ERROR"), "{l}");
            assert!(l.contains(" step=exec "), "{l}");
            assert_eq!(field(&l, "error").as_deref(), Some(*errno), "{l}");
        }
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time(d.pid()) - cpu_before;
    d.wait_until("children reaped", || {
        kinds.iter().all(|(name, _, _)| {
            d.lines_with(&["exit service=", &format!("service={name} "), "status=127"])
                .len()
                >= PER_KIND
        })
    });
    d.wait_until("fd count back to its baseline", || {
        d.fd_count() == fds_before
    });
    for (i, (name, _, _)) in kinds.iter().enumerate() {
        let st = status(&d, name, 1);
        assert!(
            st.contains(&format!(" exec_failures={PER_KIND}")),
            "{st} (#{i})"
        );
        assert!(st.contains(" active=0 "), "{st}");
    }
    assert_eq!(d.zombies(), 0);
    eprintln!(
        "exec failures: {} attempts in {elapsed:?}, superd cpu {cpu:?}",
        PER_KIND * kinds.len()
    );
    // Paced, not spinning: a burst of 50, then 50 failures a second per
    // service, so 250 take at least 4 s.
    assert!(cpu < Duration::from_secs(5), "superd used {cpu:?} of CPU");
    assert!(
        elapsed > Duration::from_millis(3500),
        "failures were not paced: {elapsed:?}"
    );
}

/// fork fails (superd's user at its process limit): the connection waits,
/// superd does not spin, and it is served once the limit lifts.
#[test]
fn fork_failure_pauses_without_spinning_and_serves_when_the_limit_lifts() {
    // RLIMIT_NPROC does not bind root: run superd as nobody when root, as
    // ourselves otherwise (we have more processes than the limit of 1).
    let dir = TempDir::new("nproc");
    dir.write(
        "t.yaml",
        "services:\n  cat:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    user: nobody\n",
    );
    let mut cmd = superd_command(dir.path());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if is_root() {
        // std drops the supplementary groups when it sets the uid as root.
        cmd.uid(65534).gid(65534);
    }
    // SAFETY: setrlimit(2) between fork and exec; std runs pre_exec
    // after its setuid, so the limit binds the user superd runs as.
    unsafe {
        cmd.pre_exec(|| {
            let (_, hard) =
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NPROC)?;
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NPROC, 1, hard)?;
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            skip(&format!("cannot start superd under RLIMIT_NPROC=1: {e}"));
            return;
        }
    };
    let log = LogFollower::follow(child.stderr.take().unwrap());
    let superd = Running(child);
    let line = log.wait_for(&["listening", "service=cat "]);
    let addr = field(&line, "addr").unwrap();

    let mut client = connect(&addr);
    client.write_all(b"waited\n").unwrap();
    let warn = log.wait_for(&["out of resources", "service=cat ", "step=fork"]);
    assert!(warn.starts_with("WARN"), "{warn}");
    // Measure a window of failing forks: superd retries every 250 ms and
    // must sleep in between.
    let cpu_before = cpu_time(superd.pid());
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = cpu_time(superd.pid()) - cpu_before;
    assert!(
        cpu < Duration::from_millis(500),
        "superd used {cpu:?} of CPU in {:?} of failing forks; log:\n{}",
        window.elapsed(),
        log.text()
    );
    assert_eq!(
        log.text().matches("out of resources").count(),
        1,
        "logged once per interval:\n{}",
        log.text()
    );

    // Lift the limit (soft up to the hard limit, which we left alone):
    // the waiting connection is served. prlimit(2) on another user's
    // process needs CAP_SYS_RESOURCE, which a container may lack: it is
    // called from a helper running as superd's user.
    let pid = superd.pid();
    let mut helper = Command::new("/bin/true");
    if is_root() {
        helper.uid(65534).gid(65534);
    }
    // SAFETY: getrlimit/prlimit(2) between fork and exec, on plain data.
    unsafe {
        helper.pre_exec(move || {
            let (_, hard) =
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NPROC)?;
            let lim = libc::rlimit {
                rlim_cur: hard,
                rlim_max: hard,
            };
            if libc::prlimit(pid, libc::RLIMIT_NPROC, &lim, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let lifted = helper.status().expect("prlimit helper");
    assert!(lifted.success());
    let mut got = [0u8; 7];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"waited\n");
    client.shutdown(Shutdown::Write).unwrap();
    log.wait_for(&["exit service=cat ", "status=0"]);
    // And new connections too.
    assert_eq!(exchange(&addr, b"again\n"), b"again\n");
}

/// What superd started with fds 0, 1 and 2 closed must still do: children
/// get their socket on 0-2, and no log line reaches a client.
fn closed_std_fds(close: &'static [i32], read_log: bool) {
    let dir = TempDir::new("closedfds");
    let quiet = dir.path().join("quiet.sock");
    let probe = dir.path().join("probe.sock");
    let gone: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("gone{i}.sock")))
        .collect();
    let services = format!(
        "  quiet:\n    listen: {}\n    exec: [/bin/sh, -c, 'read line; printf ok']\n    {u}\n  probe:\n    listen: {}\n    exec: {}\n    {u}\n",
        quiet.display(),
        probe.display(),
        probe_bin().display(),
        u = user_line()
    );
    // Three services bound first, then removed by a reload: their
    // listeners would take the lowest free fds, and freed by the reload,
    // the next connection could land on fd 2, where the log goes.
    let mut first = String::from("services:\n");
    for (i, g) in gone.iter().enumerate() {
        first.push_str(&format!(
            "  gone{i}:\n    listen: {}\n    builtin: echo\n",
            g.display()
        ));
    }
    first.push_str(&services);
    dir.write("t.yaml", &first);
    let mut cmd = superd_command(dir.path());
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    cmd.stderr(if read_log {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    // SAFETY: close(2) on fds 0-2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in close {
                let _ = nix::unistd::close(fd);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start superd");
    let log = child.stderr.take().map(LogFollower::follow);
    let mut superd = Running(child);
    if let Some(log) = &log {
        log.wait_for(&["listening", "service=probe "]);
    } else {
        let _ = connect_unix(&probe);
    }
    assert!(superd.0.try_wait().unwrap().is_none(), "superd exited");
    dir.write("t.yaml", &format!("services:\n{services}"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(superd.pid()), Signal::SIGHUP).unwrap();
    wait_until(
        "the reload to remove the gone services",
        &mut || gone.iter().all(|g| !g.exists()),
        String::new,
    );

    for i in 0..20 {
        // The accept and spawn lines are logged while this client waits.
        let mut s = connect_unix(&quiet);
        if let Some(log) = &log {
            log.wait_for(&["spawn service=quiet "]);
        }
        s.write_all(b"go\n").unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(
            got,
            b"ok",
            "connection {i} got {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    let mut s = connect_unix(&probe);
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let r = report(&out);
    assert_eq!(get(&r, "fds"), "0,1,2", "{r:?}");
    assert_eq!(get(&r, "same_socket_012"), "1", "{r:?}");
    assert_eq!(get(&r, "kind.0"), "sock");
    // superd itself has /dev/null (or the log pipe) on 0-2, never a socket.
    let fds = if fds_readable(superd.pid(), "superd's own fds 0-2") {
        0..3
    } else {
        0..0
    };
    for fd in fds {
        let link = fs::read_link(format!("/proc/{}/fd/{fd}", superd.pid())).unwrap();
        let link = link.to_string_lossy().into_owned();
        assert!(
            link == "/dev/null" || link.starts_with("pipe:"),
            "superd fd {fd} is {link}"
        );
    }
    if let Some(log) = &log {
        log.wait_for(&["exit service=probe ", "status=0"]);
    }
}

#[test]
fn started_with_stdin_and_stdout_closed_no_log_reaches_a_client() {
    closed_std_fds(&[0, 1], true);
}

#[test]
fn started_with_fds_0_1_2_closed_children_still_get_their_socket() {
    closed_std_fds(&[0, 1, 2], false);
}

/// stderr a pipe nobody drains: the loop keeps serving, lines are dropped
/// and counted, and the count is logged when the reader comes back.
#[test]
fn a_stalled_log_reader_never_blocks_the_loop() {
    stalled_log(false);
}

/// The same with stderr a unix stream socket, as under systemd-journald.
#[test]
fn a_stalled_log_socket_never_blocks_the_loop() {
    stalled_log(true);
}

fn stalled_log(socket: bool) {
    // A socket buffer holds a few hundred KiB: more connections for it.
    let n: usize = if socket { 8000 } else { 3000 };
    let dir = TempDir::new("stall");
    dir.write(
        "t.yaml",
        "services:\n  echo:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
    );
    let mut cmd = superd_command(dir.path());
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    let (stderr, _superd): (Box<dyn Read + Send>, Running) = if socket {
        let (ours, theirs) = UnixStream::pair().unwrap();
        cmd.stderr(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
        let child = cmd.spawn().expect("start superd");
        (Box::new(ours), Running(child))
    } else {
        cmd.stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start superd");
        let stderr: ChildStderr = child.stderr.take().unwrap();
        (Box::new(stderr), Running(child))
    };
    // Read up to the listening line, then stop reading.
    let mut r = BufReader::new(stderr);
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "superd exited");
        if line.contains("listening") && line.contains("service=echo ") {
            break field(line.trim_end(), "addr").unwrap();
        }
    };
    // Every connection logs at least two lines (accept, exit): a
    // 64 KiB pipe is full long before n.
    let started = Instant::now();
    let a = addr.clone();
    in_parallel(4, n, move |i| {
        let msg = format!("hello {i}\n");
        let mut s = connect(&a);
        s.write_all(msg.as_bytes()).unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, msg.as_bytes());
    });
    eprintln!(
        "stalled log (socket={socket}): {n} echo sessions in {:?}",
        started.elapsed()
    );

    // The reader comes back. Connections made while it still drains what
    // the pipe holds may lose their lines too; once it has caught up, the
    // next connection's lines go through, and the drops were announced
    // with their count.
    let log = LogFollower::follow(r);
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert_eq!(exchange(&addr, b"back\n"), b"back\n");
        let text = log.text();
        if text
            .lines()
            .any(|l| l.contains("exit service=echo ") && l.contains("bytes_in=5"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no line got through; log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = log.text();
    let notes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("log lines dropped"))
        .collect();
    assert!(!notes.is_empty(), "no dropped line; log:\n{text}");
    let mut total = 0;
    for note in &notes {
        assert!(note.starts_with("WARN"), "{note}");
        let count: u64 = field(note, "count").unwrap().parse().unwrap();
        assert!(count > 0, "{note}");
        total += count;
    }
    assert!(total < (3 * n) as u64, "{total} dropped of fewer lines");
    // Every line is whole: a known message at its start.
    for l in text.lines() {
        assert!(
            [
                "DEBUG accept ",
                "INFO  exit ",
                "INFO  ready ",
                "WARN  log lines dropped "
            ]
            .iter()
            .any(|p| l.starts_with(p)),
            "a cut line: {l:?}"
        );
    }
}

/// A wait service whose child ends at once leaves its datagram unread and
/// its socket readable: without a guard the next child starts at once,
/// forever. It is paused instead (as xinetd's cps does), logged once, and
/// never disabled.
#[test]
fn a_wait_service_whose_child_ends_at_once_does_not_loop() {
    let d = Superd::start(&format!(
        "services:\n  lp:\n    listen: 127.0.0.1:0\n    socket: dgram\n    exec: /bin/true\n    {}\n",
        user_line()
    ));
    let addr = d.addr("lp");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = Instant::now();
    udp.send_to(b"nobody reads this\n", &addr).unwrap();
    let line = d.wait_for(&["looping", "service=lp"]);
    // A burst of 50, then 50 a second: on a busy machine the burst takes
    // longer and more tokens come in meanwhile.
    let allowed = 50 + (50.0 * sent.elapsed().as_secs_f64()).ceil() as usize;
    assert!(line.starts_with("WARN"), "{line}");
    assert!(line.contains("pause=10.000s"), "{line}");
    // The datagram no child read is gone: it cannot start the loop again
    // after the pause.
    assert!(line.contains(" dropped=1"), "{line}");
    let started = d.lines_with(&["exit", "service=lp "]).len();
    // Over the next second (bounded by the poll below) it starts nothing:
    // it is paused for ten.
    let until = Instant::now() + Duration::from_secs(1);
    d.wait_until("one second", || Instant::now() >= until);
    let now = d.lines_with(&["exit", "service=lp "]).len();
    assert!(
        now <= allowed,
        "{now} children started (at most {allowed}): a loop"
    );
    assert!(now - started <= 1, "{started} then {now}: not paused");
    d.signal(Signal::SIGUSR1);
    d.wait_for(&["status", "service=lp", "state=paused_looping"]);
}

/// A log line longer than PIPE_BUF has no atomic write: a slow reader
/// takes part of it, and the rest must follow before any other line, or
/// the output holds a line cut in two with another record inside it.
#[test]
fn a_slow_log_reader_never_gets_a_cut_line() {
    const LINES: usize = 300;
    let dir = TempDir::new("slowlog");
    dir.write(
        "t.yaml",
        &format!(
            "services:\n  long:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'yes $(printf %05000d 0) | head -n {LINES} >&2']\n    stderr: log\n    {}\n  mark:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
            user_line()
        ),
    );
    let mut cmd = superd_command(dir.path());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start superd");
    let mut stderr = child.stderr.take().unwrap();
    let _superd = Running(child);
    // Up to the ready line at full speed.
    let mut text = Vec::new();
    let mut buf = [0u8; 777];
    while !String::from_utf8_lossy(&text).contains("INFO  ready ") {
        let n = read_once(&mut stderr, &mut buf).unwrap();
        assert!(n > 0, "superd exited");
        text.extend_from_slice(&buf[..n]);
    }
    let addr = |service: &str| {
        let s = String::from_utf8_lossy(&text).into_owned();
        let l = s
            .lines()
            .find(|l| l.contains("listening") && l.contains(&format!("service={service} ")))
            .expect("listening line")
            .to_owned();
        field(&l, "addr").unwrap()
    };
    let (long, mark) = (addr("long"), addr("mark"));
    assert_eq!(exchange(&long, b""), b"");
    // Then a slow reader: a few hundred bytes at a time, so that long
    // records are taken in parts. Once it has caught up, an echo session
    // marks the end.
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&stderr),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut marked = false;
    loop {
        match stderr.read(&mut buf) {
            Ok(0) => panic!("superd exited"),
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if String::from_utf8_lossy(&text).contains("exit service=mark ") {
                    break;
                }
                if !marked {
                    assert_eq!(exchange(&mark, b"end\n"), b"end\n");
                    marked = true;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "no end mark");
        std::thread::sleep(Duration::from_millis(1));
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    let mut chars = 0;
    for l in text.lines().map(strip_ts) {
        if let Some(v) = l.strip_prefix("INFO  stderr service=long ") {
            let value = v.split_once(" line=").expect("line=").1;
            // The 5000-byte lines come in two pieces, the first marked.
            let value = value.strip_suffix(" cut=true").unwrap_or(value);
            assert!(value.bytes().all(|b| b == b'0'), "a cut line: {l:?}");
            chars += value.len();
        } else {
            // Any other record, whole: a level, a message, and no part of
            // a stderr line.
            assert!(
                ["DEBUG ", "INFO  ", "WARN  "]
                    .iter()
                    .any(|p| l.starts_with(p))
                    && !l.contains("line=")
                    && !l.contains("00000"),
                "a cut line: {l:?}"
            );
        }
    }
    assert!(chars > 0, "{text}");
}

/// Refused connections wait for the turn's log write before they are
/// closed, but never many at once: six listeners with 60 queued refusals
/// each (360 in one turn) under a descriptor limit of 96 run into no
/// EMFILE, and every refusal is logged.
#[test]
fn refusals_held_for_the_log_are_few_at_a_time() {
    const LISTENERS: usize = 6;
    const EACH: usize = 60;
    let dir = TempDir::new("heldfds");
    let mut yaml = String::from("services:\n");
    for i in 0..LISTENERS {
        yaml.push_str(&format!(
            "  d{i}:\n    listen: 127.0.0.1:0\n    builtin: echo\n    deny_from: [127.0.0.0/8]\n"
        ));
    }
    dir.write("t.yaml", &yaml);
    let mut cmd = superd_command(dir.path());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit(2) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 96, 96)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start superd");
    let stderr = child.stderr.take().unwrap();
    roomy_pipe(&stderr);
    let log = LogFollower::follow(stderr);
    let superd = Running(child);
    let mut addrs = Vec::new();
    for i in 0..LISTENERS {
        let line = log.wait_for(&["listening", &format!("service=d{i} ")]);
        addrs.push(field(&line, "addr").unwrap());
    }
    log.wait_for(&["ready services=6 "]);
    // Stopped, superd accepts nothing: every connection waits in a
    // backlog, and all of them are there for its next turn.
    let pid = nix::unistd::Pid::from_raw(superd.pid());
    nix::sys::signal::kill(pid, Signal::SIGSTOP).unwrap();
    let clients: Vec<TcpStream> = addrs
        .iter()
        .flat_map(|a| (0..EACH).map(move |_| connect(a)))
        .collect();
    nix::sys::signal::kill(pid, Signal::SIGCONT).unwrap();
    for mut c in clients {
        expect_refused(&mut c);
    }
    let deadline = Instant::now() + DEADLINE;
    while log.text().matches("refused service=d").count() < LISTENERS * EACH {
        assert!(
            Instant::now() < deadline,
            "refusals missing:\n{}",
            log.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!log.text().contains("out of resources"), "{}", log.text());
}

/// A flood queued on one listener does not keep the loop from another:
/// with 300 connections waiting on `a` and then one on `b`, `b`'s is
/// handled within the first batch of `a`'s (64), not after all of them.
#[test]
fn a_flooded_listener_waits_its_turn() {
    const FLOOD: usize = 300;
    let d = Superd::start(
        "services:\n  a:\n    listen: 127.0.0.1:0\n    builtin: echo\n    deny_from: [127.0.0.0/8]\n  b:\n    listen: 127.0.0.1:0\n    builtin: echo\n    deny_from: [127.0.0.0/8]\n",
    );
    let (a, b) = (d.addr("a"), d.addr("b"));
    // Stopped, superd accepts nothing: the flood and the one connection
    // are all queued for its next turn, `a` readable first.
    d.signal(Signal::SIGSTOP);
    let mut clients: Vec<TcpStream> = (0..FLOOD).map(|_| connect(&a)).collect();
    clients.push(connect(&b));
    d.signal(Signal::SIGCONT);
    for mut c in clients {
        expect_refused(&mut c);
    }
    d.wait_nth(FLOOD + 1, &["refused service="]);
    let refused = d.lines_with(&["refused service="]);
    let at = refused
        .iter()
        .position(|l| l.contains("service=b "))
        .expect("b's refusal");
    assert!(at <= 2 * 64, "b waited for {at} of a's {FLOOD} connections");
}

/// 100,000 refused connections cost no memory and no descriptor.
#[test]
fn a_flood_of_refused_connections_leaks_nothing() {
    const WARMUP: usize = 2000;
    const N: usize = 100_000;
    let dir = TempDir::new("flood");
    dir.write(
        "t.yaml",
        "services:\n  echo:\n    listen: 127.0.0.1:0\n    builtin: echo\n    deny_from: [127.0.0.0/8]\n",
    );
    let d2 = dir.path().to_path_buf();
    let d = Superd::spawn(dir, &[d2.to_str().unwrap()], &[]);
    let addr = d.addr("echo");
    let flood = |n: usize| {
        let a = addr.clone();
        in_parallel(4, n, move |_| {
            let mut s = match TcpStream::connect(&a) {
                Ok(s) => s,
                Err(e) => panic!("connect {a}: {e}"),
            };
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            // Wait for superd's close, so superd closes first and the
            // TIME_WAIT is on its side, not on our ephemeral ports.
            expect_refused(&mut s);
        });
    };
    flood(WARMUP);
    let st = status(&d, "echo", 1);
    assert!(
        st.contains(&format!(" refused_deny_from={WARMUP} ")),
        "{st}"
    );
    let rss_before = rss_kib(d.pid());
    let fds_before = fd_count(d.pid());
    let started = Instant::now();
    flood(N);
    let elapsed = started.elapsed();
    let st = status(&d, "echo", 2);
    assert!(
        st.contains(&format!(" refused_deny_from={} ", WARMUP + N)),
        "{st}"
    );
    assert!(st.contains(" active=0 "), "{st}");
    let rss_after = rss_kib(d.pid());
    let fds_after = fd_count(d.pid());
    eprintln!(
        "refused flood: {N} in {elapsed:?}, rss {rss_before} -> {rss_after} KiB, fds {fds_before} -> {fds_after}"
    );
    assert_eq!(fds_after, fds_before);
    assert!(
        rss_after < rss_before + 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}
