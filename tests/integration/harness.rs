//! Starting superd for a test and following its log. Nothing here sleeps
//! and hopes: every wait is for a log line, a socket event or a process
//! state, bounded by a generous deadline.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The deadline for anything a test waits for. Generous: a loaded CI
/// machine is slow, never wrong.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn superd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_superd"))
}

/// A program built from `tests/support/` or `examples/` (cargo test builds
/// examples next to the binary).
pub fn example_bin(name: &str) -> PathBuf {
    superd_bin()
        .parent()
        .expect("target dir")
        .join("examples")
        .join(name)
}

pub fn probe_bin() -> PathBuf {
    example_bin("probe")
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Where a root-only test puts files a child must reach as `nobody`, also
/// with `private_tmp`: not cargo's temporary directory, which is under the
/// checkout (in /tmp, where a private /tmp hides it, or in a home others
/// cannot enter), but a directory of its own under /var/lib, mode 0755.
pub fn outside_tmp() -> PathBuf {
    let dir = PathBuf::from("/var/lib/superd-tests");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir
}

/// Says on the test output that the running test skips (all of it, or the
/// part named in `reason`), and why. Written past libtest's capture, which
/// keeps a passing test's `eprintln!` to itself, so a run as a normal user
/// shows what it did not check.
pub fn skip(reason: &str) {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr(), "skipped {name}: {reason}");
}

/// The `user:` line an exec service needs: as root superd refuses exec
/// services without one; as a normal user it runs them as that user.
pub fn user_line() -> &'static str {
    if is_root() { "user: root" } else { "" }
}

/// Whether this test process may read superd's `/proc/PID/fd`: superd
/// makes itself non-dumpable (superd(8)), so only root may. Prints why a
/// check is skipped otherwise.
pub fn fds_readable(pid: i32, what: &str) -> bool {
    if std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok() {
        return true;
    }
    skip(&format!(
        "{what}: superd is not dumpable, its /proc/{pid}/fd is root's to read"
    ));
    false
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "superd-test-{}-{}-{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        // The config directory must not be writable by others when superd
        // runs as root.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file atomically (a hidden temporary name, then rename), so
    /// a reload never reads half a file.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.0.join(name);
        let tmp = self.0.join(format!(".{name}.tmp"));
        fs::write(&tmp, content).expect("write file");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        fs::rename(&tmp, &p).expect("rename");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[derive(Default)]
struct Log {
    lines: Vec<String>,
    closed: bool,
}

/// superd's log as a thread reads it, line by line, from a pipe: what the
/// tests wait on. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct LogFollower(Arc<(Mutex<Log>, Condvar)>);

impl LogFollower {
    /// Follows `stderr` in a thread until EOF.
    pub fn follow(stderr: impl Read + Send + 'static) -> LogFollower {
        let log = LogFollower::default();
        let l2 = log.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if std::env::var_os("SUPERD_TEST_ECHO").is_some() {
                            eprint!("[superd] {line}");
                        }
                        let (m, c) = &*l2.0;
                        m.lock()
                            .unwrap()
                            .lines
                            .push(strip_ts(line.trim_end()).to_string());
                        c.notify_all();
                    }
                }
            }
            let (m, c) = &*l2.0;
            m.lock().unwrap().closed = true;
            c.notify_all();
        });
        log
    }

    /// Waits for the `n`-th (1-based) line containing every one of
    /// `parts`; panics with the whole log after the deadline or at EOF.
    pub fn wait_nth(&self, n: usize, parts: &[&str]) -> String {
        let (m, c) = &*self.0;
        let deadline = Instant::now() + DEADLINE;
        let mut log = m.lock().unwrap();
        loop {
            let found: Vec<&String> = log
                .lines
                .iter()
                .filter(|l| parts.iter().all(|p| l.contains(p)))
                .collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            let now = Instant::now();
            if now >= deadline || log.closed {
                panic!(
                    "no log line #{n} with {parts:?} (closed={}); log:\n{}",
                    log.closed,
                    log.lines.join("\n")
                );
            }
            log = c.wait_timeout(log, deadline - now).unwrap().0;
        }
    }

    pub fn wait_for(&self, parts: &[&str]) -> String {
        self.wait_nth(1, parts)
    }

    /// Lines containing all of `parts`, now.
    pub fn lines_with(&self, parts: &[&str]) -> Vec<String> {
        let (m, _) = &*self.0;
        m.lock()
            .unwrap()
            .lines
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .cloned()
            .collect()
    }

    pub fn text(&self) -> String {
        self.0.0.lock().unwrap().lines.join("\n")
    }

    /// Waits until the pipe reached EOF (every line is in).
    pub fn wait_closed(&self, deadline: Instant) {
        let (m, c) = &*self.0;
        let mut log = m.lock().unwrap();
        while !log.closed {
            let now = Instant::now();
            assert!(now < deadline, "superd's stderr stayed open");
            log = c.wait_timeout(log, deadline - now).unwrap().0;
        }
    }
}

/// A running superd.
pub struct Superd {
    pub child: Child,
    pub log: LogFollower,
    pub dir: TempDir,
    stdout: Option<std::process::ChildStdout>,
}

impl Superd {
    /// Writes `yaml` as the only file of a fresh config directory and starts
    /// superd on it (at debug level, so accepts are logged too).
    pub fn start(yaml: &str) -> Superd {
        let dir = TempDir::new("d");
        dir.write("test.yaml", yaml);
        let d = dir.path().to_path_buf();
        Superd::spawn(dir, &[d.to_str().unwrap(), "-v"], &[])
    }

    /// Starts superd with `args`, `dir` kept alive as long as it runs.
    pub fn spawn(dir: TempDir, args: &[&str], env: &[(&str, &str)]) -> Superd {
        Superd::spawn_limited(dir, args, env, None)
    }

    /// Like `spawn`, with superd's own RLIMIT_NOFILE set to `nofile`.
    pub fn spawn_limited(
        dir: TempDir,
        args: &[&str],
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Superd {
        let mut cmd = Command::new(superd_bin());
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs
            // between fork and exec here.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n)
                        .map_err(std::io::Error::from)
                });
            }
        }
        Superd::spawn_command(cmd, dir, args, env)
    }

    /// Like `spawn`, with SIGCHLD ignored by whoever started superd (an
    /// init script or a harness may leave it so).
    pub fn spawn_sigchld_ignored(dir: TempDir, args: &[&str]) -> Superd {
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(superd_bin());
        // SAFETY: sigaction is async-signal-safe; nothing else runs
        // between fork and exec here.
        unsafe {
            cmd.pre_exec(|| {
                let ign = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
                sigaction(Signal::SIGCHLD, &ign)
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }
        Superd::spawn_command(cmd, dir, args, &[])
    }

    /// Like `spawn`, in a mount namespace of its own where no cgroup2 file
    /// system is mounted (root only): superd then follows its children's
    /// trees with the subreaper alone.
    pub fn spawn_without_cgroup2(dir: TempDir, args: &[&str]) -> Superd {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            "awk '/ - cgroup2 / {print $5}' /proc/self/mountinfo | while read m; do umount -l \"$m\"; done; exec \"$0\" \"$@\"",
        ])
        .arg(superd_bin());
        Superd::spawn_command(cmd, dir, args, &[])
    }

    pub fn spawn_command(
        mut cmd: Command,
        dir: TempDir,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Superd {
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            // daytime answers in local time: pin the zone so the tests'
            // clock comparisons hold on any machine.
            .env("TZ", "UTC0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start superd");
        let stderr = child.stderr.take().unwrap();
        roomy_pipe(&stderr);
        let stdout = child.stdout.take();
        let log = LogFollower::follow(stderr);
        Superd {
            child,
            log,
            dir,
            stdout,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the `n`-th (1-based) log line containing every one of
    /// `parts`; panics with the whole log after the deadline.
    pub fn wait_nth(&self, n: usize, parts: &[&str]) -> String {
        self.log.wait_nth(n, parts)
    }

    pub fn wait_for(&self, parts: &[&str]) -> String {
        self.log.wait_for(parts)
    }

    /// Lines containing all of `parts`, now.
    pub fn lines_with(&self, parts: &[&str]) -> Vec<String> {
        self.log.lines_with(parts)
    }

    pub fn log_text(&self) -> String {
        self.log.text()
    }

    /// The address of `service`'s `n`-th listener, from its `listening`
    /// line.
    pub fn addr_n(&self, service: &str, n: usize) -> String {
        let line = self.wait_nth(n, &["listening", &format!("service={service} ")]);
        field(&line, "addr").expect("addr field")
    }

    pub fn addr(&self, service: &str) -> String {
        self.addr_n(service, 1)
    }

    pub fn port(&self, service: &str) -> u16 {
        let a = self.addr(service);
        a.rsplit(':').next().unwrap().parse().expect("port")
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("kill");
    }

    /// SIGTERM and wait for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit()
    }

    /// Waits for superd to exit, and for its whole log to be read.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "superd did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        self.log.wait_closed(deadline);
        status
    }

    /// superd's stdout, read to EOF (for --check).
    pub fn stdout_text(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut o) = self.stdout.take() {
            let _ = o.read_to_string(&mut s);
        }
        s
    }

    /// Number of open fds of superd itself, or `None` (said on the test
    /// output) where its /proc/PID/fd cannot be read: superd makes itself
    /// non-dumpable (superd(8), CAVEATS), which gives that directory to
    /// root, so a test run as a normal user cannot count superd's
    /// descriptors and skips that check.
    pub fn fd_count(&self) -> Option<usize> {
        match fs::read_dir(format!("/proc/{}/fd", self.pid())) {
            Ok(d) => Some(d.count()),
            Err(e) => {
                skip(&format!(
                    "superd's descriptors not checked: /proc/{}/fd: {e} (superd is non-dumpable: only root can read it)",
                    self.pid()
                ));
                None
            }
        }
    }

    /// Children of superd that are zombies right now.
    /// CPU time superd has used (utime + stime), in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
        let f: Vec<&str> = after.split(' ').collect();
        // Fields 14 and 15 of stat(5); `after` starts at field 3.
        f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
    }

    /// Resident memory of superd, in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn zombies(&self) -> usize {
        children_of(self.pid())
            .into_iter()
            .filter(|p| proc_state(*p) == Some('Z'))
            .count()
    }

    /// Waits until `f` holds, polling; panics after the deadline.
    pub fn wait_until(&self, what: &str, mut f: impl FnMut() -> bool) {
        wait_until(what, &mut f, || self.log_text());
    }
}

impl Drop for Superd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `f` every few milliseconds until it holds or the deadline passes.
pub fn wait_until(what: &str, f: &mut dyn FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}; log:\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Gives the pipe superd logs into room for a burst (1 MiB, or what the
/// system allows): a test that counts every line of a busy turn must not
/// depend on how fast its reader thread is scheduled (superd drops what
/// the pipe cannot take, by design).
pub fn roomy_pipe(fd: &impl std::os::fd::AsRawFd) {
    let _ = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
}

/// A text log line without its leading timestamp
/// (`2026-01-02T03:04:05.678Z `), as the tests read lines: level first.
pub fn strip_ts(line: &str) -> &str {
    let b = line.as_bytes();
    let is_ts = b.len() > 24
        && b[24] == b' '
        && b[23] == b'Z'
        && b[10] == b'T'
        && b[..23].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => true,
            13 | 16 => *c == b':',
            19 => *c == b'.',
            _ => c.is_ascii_digit(),
        });
    if is_ts { &line[25..] } else { line }
}

/// `key=value` from a log line (value up to the next space, or quoted).
pub fn field(line: &str, key: &str) -> Option<String> {
    let pat = format!(" {key}=");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    if let Some(q) = rest.strip_prefix('"') {
        let end = q.find('"')?;
        return Some(q[..end].to_string());
    }
    Some(rest.split(' ').next().unwrap_or("").to_string())
}

/// Pids whose parent is `ppid`.
pub fn children_of(ppid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
                // pid (comm) state ppid ...
                if let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) {
                    let mut it = after.split(' ');
                    let _state = it.next();
                    if it.next().and_then(|p| p.parse::<i32>().ok()) == Some(ppid) {
                        out.push(pid);
                    }
                }
            }
        }
    }
    out
}

pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rfind(')').and_then(|i| stat[i + 2..].chars().next())
}

/// Connects to `addr` with generous timeouts.
/// One `read`, retried when a signal interrupts it (the test process gets
/// signals: `read` alone would report EINTR as an error).
/// Reads one line (without its newline) byte by byte, so that nothing
/// after it is consumed: the number a test's child prints first, say.
pub fn read_line_from(s: &mut impl std::io::Read) -> String {
    let mut line = String::new();
    let mut byte = [0u8; 1];
    while read_once(s, &mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0] as char);
    }
    line
}

pub fn read_once(s: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

pub fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Sends `input`, half-closes, reads the reply to EOF.
pub fn exchange(addr: &str, input: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    s.write_all(input).unwrap();
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// Reads the probe's `key=value` report into pairs (keys may repeat).
pub fn report(bytes: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

pub fn get<'a>(r: &'a [(String, String)], key: &str) -> &'a str {
    r.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in report: {r:?}"))
}

/// The YAML text of a flow list of strings.
pub fn yaml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}
