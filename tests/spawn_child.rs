//! The child contract of superd(8), THE CHILD, checked end to end: `SpawnPlan` + `spawn`
//! start `examples/probe` on a real connection, and the probe's report says
//! what the child saw (fds, blocking, signals, session, env, ids, limits).

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::resource::{Resource, getrlimit};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{User, geteuid};

use superd::plan::{ConnInfo, SpawnPlan};
use superd::service::{Credentials, Program, Rlimit, RlimitResource, Service, StderrMode};
use superd::spawn::{ExecFailure, Spawned, Step, spawn};

/// Test threads fork concurrently, and a child holds copies of every fd of
/// the test process until it execs: a file open for writing in one thread
/// makes exec of that file fail with ETXTBSY in another. Forks take this
/// lock shared; writing an executable takes it exclusively.
static FORK_LOCK: RwLock<()> = RwLock::new(());

fn spawn_locked(
    plan: &Rc<SpawnPlan>,
    sock: BorrowedFd<'_>,
    conn: &ConnInfo,
) -> Result<Spawned, Errno> {
    let _guard = FORK_LOCK.read().unwrap_or_else(|e| e.into_inner());
    spawn(plan, sock, conn, None)
}

/// Long enough for any machine; reads end at EOF, never by timing out.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Says on the test output (past libtest's capture) that the running test
/// skips, and why.
fn skip(reason: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("a spawn test");
    let _ = writeln!(std::io::stderr(), "skipped {name}: {reason}");
}

fn probe_path() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_superd"));
    let probe = bin.parent().unwrap().join("examples/probe");
    assert!(
        probe.exists(),
        "{} missing: run `cargo test` (which builds the examples)",
        probe.display()
    );
    probe
}

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "superd-spawn-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn service(path: &Path, args: &[&str]) -> Service {
    let mut argv = vec!["probe".to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    Service::new(
        "probe".into(),
        PathBuf::from("/etc/superd/services.d/probe.yaml"),
        Program::Exec {
            path: path.to_path_buf(),
            argv,
        },
    )
}

/// Blocks in this test thread what the daemon blocks for its signalfd, so
/// the child has a mask to undo (the harness already ignores SIGPIPE).
fn block_daemon_signals() {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
    ] {
        set.add(s);
    }
    set.thread_block().unwrap();
}

/// The probe's `key=value` lines; `env.` lines go to `env`.
#[derive(Debug, Default)]
struct Report {
    kv: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    /// Lines that are not `key=value` (the probe's stderr in socket mode).
    other: Vec<String>,
}

impl Report {
    fn parse(text: &str) -> Report {
        let mut r = Report::default();
        for line in text.lines() {
            match line.split_once('=') {
                Some((k, v)) if k.starts_with("env.") => {
                    r.env.insert(k[4..].to_string(), v.to_string());
                }
                Some((k, v)) if !k.contains(' ') => {
                    r.kv.insert(k.to_string(), v.to_string());
                }
                _ => r.other.push(line.to_string()),
            }
        }
        r
    }

    fn get(&self, k: &str) -> &str {
        self.kv
            .get(k)
            .unwrap_or_else(|| panic!("probe reported no {k}: {self:?}"))
    }
}

struct Outcome {
    spawned: Spawned,
    exec_failure: Option<ExecFailure>,
    report: Report,
    status: WaitStatus,
    /// The client side of the connection.
    client_addr: SocketAddr,
}

/// Spawns `service` on a fresh TCP connection, reads the report to EOF,
/// reaps the child.
fn run_tcp(service: &Service) -> Outcome {
    block_daemon_signals();
    let plan = Rc::new(SpawnPlan::new(service));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, remote) = listener.accept().unwrap();
    // As the daemon does with accepted sockets.
    server.set_nonblocking(true).unwrap();
    let conn = ConnInfo::Tcp {
        remote,
        local: server.local_addr().unwrap(),
    };
    let mut spawned = spawn_locked(&plan, server.as_fd(), &conn).expect("fork");
    let exec_failure = spawned.exec.wait();
    drop(server);
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut text = String::new();
    client.read_to_string(&mut text).unwrap();
    let status = waitpid(spawned.pid, None).unwrap();
    Outcome {
        spawned,
        exec_failure,
        report: Report::parse(&text),
        status,
        client_addr: client.local_addr().unwrap(),
    }
}

fn expect_ok(o: &Outcome) {
    assert_eq!(o.exec_failure, None);
    assert_eq!(o.status, WaitStatus::Exited(o.spawned.pid, 0));
}

/// The default part of the env for a child keeping the test's identity.
fn own_user_env() -> Vec<(String, String)> {
    let uid = geteuid();
    let user = User::from_uid(uid)
        .unwrap()
        .expect("test user has a passwd entry");
    let path = if uid.is_root() {
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    } else {
        "/usr/local/bin:/usr/bin:/bin"
    };
    let shell = user.shell.display().to_string();
    vec![
        ("PATH".into(), path.into()),
        ("HOME".into(), user.dir.display().to_string()),
        ("USER".into(), user.name.clone()),
        ("LOGNAME".into(), user.name),
        (
            "SHELL".into(),
            if shell.is_empty() {
                "/bin/sh".into()
            } else {
                shell
            },
        ),
    ]
}

fn nofile_default() -> String {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let f = |v: u64| {
        if v == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    format!("{}:{}", f(hard.min(1024)), f(hard))
}

#[test]
fn child_sees_the_inetd_contract() {
    let dir = TempDir::new();
    let mut s = service(&probe_path(), &[]);
    s.cwd = dir.0.clone();
    s.umask = 0o027;
    // SAFETY: getpriority(2) reads this process's nice value.
    let own_nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let nice = (own_nice + 3).min(19);
    s.nice = Some(nice);
    s.env = vec![
        ("LANG".into(), "C.UTF-8".into()),
        ("SUPERD_SERVICE".into(), "renamed".into()),
    ];
    // An inheritable (non-CLOEXEC) fd in superd must not reach the child.
    // SAFETY: dup(2) of fd 0; the result is closed below.
    let leak = unsafe { libc::dup(0) };
    assert!(leak >= 3);

    // The test process ignores SIGPIPE (Rust runtime) and this thread blocks
    // the daemon's signals: the child has something to undo.
    block_daemon_signals();
    let own = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    assert!(
        own.lines()
            .any(|l| l.starts_with("SigIgn:") && !l.ends_with("0000000000000000"))
    );
    assert!(
        own.lines()
            .any(|l| l.starts_with("SigBlk:") && !l.ends_with("0000000000000000"))
    );

    let o = run_tcp(&s);
    // SAFETY: closing the fd dup'ed above, which nothing else owns.
    unsafe { libc::close(leak) };
    expect_ok(&o);
    let r = &o.report;

    // fds 0, 1, 2: the socket, blocking, nothing else open.
    assert_eq!(r.get("fds"), "0,1,2");
    for fd in 0..3 {
        assert_eq!(
            r.get(&format!("nonblock.{fd}")),
            "0",
            "fd {fd} is non-blocking"
        );
        assert_eq!(r.get(&format!("kind.{fd}")), "sock");
    }
    assert_eq!(r.get("same_socket_012"), "1");
    assert_eq!(r.get("peer"), o.client_addr.to_string());

    // Signals: empty mask, nothing ignored or caught.
    assert_eq!(r.get("sigblk"), "0000000000000000");
    assert_eq!(r.get("sigign"), "0000000000000000");
    assert_eq!(r.get("sigcgt"), "0000000000000000");

    // Own session and process group.
    let pid = o.spawned.pid.to_string();
    assert_eq!(r.get("pid"), pid);
    assert_eq!(r.get("sid"), pid);
    assert_eq!(r.get("pgid"), pid);

    // Limits, umask, cwd, nice as configured.
    assert_eq!(r.get("rlimit.nofile"), nofile_default());
    assert_eq!(r.get("umask"), "0027");
    assert_eq!(r.get("cwd"), dir.0.display().to_string());
    assert_eq!(r.get("nice"), nice.to_string());

    // Exactly the specified environment; nothing of the test's own leaks.
    let mut expected: BTreeMap<String, String> = own_user_env().into_iter().collect();
    let port = |a: SocketAddr| a.port().to_string();
    for (k, v) in [
        ("PROTO", "TCP".to_string()),
        ("TCPREMOTEIP", "127.0.0.1".to_string()),
        ("TCPREMOTEPORT", port(o.client_addr)),
        ("TCPLOCALIP", "127.0.0.1".to_string()),
        ("REMOTE_ADDR", "127.0.0.1".to_string()),
        ("REMOTE_PORT", port(o.client_addr)),
        ("LANG", "C.UTF-8".to_string()),
        ("SUPERD_SERVICE", "renamed".to_string()),
    ] {
        expected.insert(k.into(), v);
    }
    let mut got = r.env.clone();
    let local_port = got.remove("TCPLOCALPORT").expect("TCPLOCALPORT");
    assert!(local_port.parse::<u16>().unwrap() > 0);
    assert_eq!(got, expected);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if !expected.contains_key(&k) {
            assert!(!r.env.contains_key(&k), "{k} leaked into the child");
        }
    }
}

#[test]
fn stderr_socket_mode_writes_to_the_connection() {
    let o = run_tcp(&service(&probe_path(), &["stderr"]));
    expect_ok(&o);
    assert!(o.spawned.stderr.is_none());
    assert_eq!(
        o.report.other,
        ["probe-stderr: hello", "probe-stderr: second line"]
    );
    assert_eq!(o.report.get("same_socket_012"), "1");
}

/// Reads a non-blocking fd to EOF, waiting with poll.
fn read_nonblocking_to_eof(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                let n = poll(&mut fds, PollTimeout::try_from(TIMEOUT).unwrap()).unwrap();
                assert!(n > 0, "stderr pipe: no EOF within {TIMEOUT:?}");
            }
            Err(Errno::EINTR) => {}
            Err(e) => panic!("read stderr pipe: {e}"),
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn stderr_log_mode_gives_a_nonblocking_pipe() {
    let mut s = service(&probe_path(), &["stderr"]);
    s.stderr = StderrMode::Log;
    let o = run_tcp(&s);
    expect_ok(&o);
    let pipe = o.spawned.stderr.as_ref().expect("stderr pipe");
    let fl = nix::fcntl::fcntl(pipe.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
    assert_ne!(fl & libc::O_NONBLOCK, 0, "read end must be non-blocking");
    let fd_fl = nix::fcntl::fcntl(pipe.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
    assert_ne!(
        fd_fl & libc::FD_CLOEXEC,
        0,
        "read end must be close-on-exec"
    );
    assert_eq!(
        read_nonblocking_to_eof(pipe),
        "probe-stderr: hello\nprobe-stderr: second line\n"
    );
    let r = &o.report;
    assert!(
        r.other.is_empty(),
        "stderr reached the socket: {:?}",
        r.other
    );
    assert_eq!(r.get("fds"), "0,1,2");
    assert_eq!(r.get("kind.2"), "fifo");
    assert_eq!(r.get("nonblock.2"), "0");
    assert_eq!(r.get("same_socket_01"), "1");
}

#[test]
fn stderr_null_mode_discards() {
    let mut s = service(&probe_path(), &["stderr"]);
    s.stderr = StderrMode::Null;
    let o = run_tcp(&s);
    expect_ok(&o);
    assert!(o.spawned.stderr.is_none());
    let r = &o.report;
    assert!(
        r.other.is_empty(),
        "stderr reached the socket: {:?}",
        r.other
    );
    assert_eq!(r.get("fds"), "0,1,2");
    assert_eq!(r.get("kind.2"), "chr");
    assert_eq!(r.get("same_socket_01"), "1");
}

#[test]
fn configured_rlimits_replace_the_default() {
    let mut s = service(&probe_path(), &[]);
    s.rlimits = vec![
        Rlimit {
            resource: RlimitResource::Nofile,
            soft: Some(64),
            hard: Some(128),
        },
        Rlimit {
            resource: RlimitResource::Core,
            soft: Some(0),
            hard: Some(0),
        },
    ];
    let o = run_tcp(&s);
    expect_ok(&o);
    assert_eq!(o.report.get("rlimit.nofile"), "64:128");
    assert_eq!(o.report.get("rlimit.core"), "0:0");
}

#[test]
fn unix_peer_gets_unix_variables() {
    block_daemon_signals();
    let plan = Rc::new(SpawnPlan::new(&service(&probe_path(), &[])));
    let (server, mut client) = UnixStream::pair().unwrap();
    server.set_nonblocking(true).unwrap();
    let conn = ConnInfo::Unix {
        pid: 4242,
        uid: 1000,
        gid: 100,
    };
    let spawned = spawn_locked(&plan, server.as_fd(), &conn).unwrap();
    drop(server);
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut text = String::new();
    client.read_to_string(&mut text).unwrap();
    let status = waitpid(spawned.pid, None).unwrap();
    assert_eq!(status, WaitStatus::Exited(spawned.pid, 0));
    let r = Report::parse(&text);
    assert_eq!(r.get("fds"), "0,1,2");
    assert_eq!(r.get("nonblock.0"), "0");
    assert_eq!(r.get("peer"), "unix");
    let conn_vars: Vec<(&str, &str)> = r
        .env
        .iter()
        .filter(|(k, _)| {
            k.starts_with("UNIX")
                || k.starts_with("TCP")
                || k.starts_with("REMOTE")
                || *k == "PROTO"
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        conn_vars,
        [
            ("PROTO", "UNIX"),
            ("UNIXREMOTEEGID", "100"),
            ("UNIXREMOTEEUID", "1000"),
            ("UNIXREMOTEPID", "4242"),
        ]
    );
}

/// `spawn` returns without waiting for the child's exec: children stopped
/// the moment it returns are found before exec (their report pipe still
/// open), and once continued each reaches exec. (A start that waited, as
/// vfork does, would return only after the exec.)
#[test]
fn spawn_does_not_wait_for_exec() {
    block_daemon_signals();
    let plan = Rc::new(SpawnPlan::new(&service(&probe_path(), &[])));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut before_exec = 0;
    for _ in 0..20 {
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, remote) = listener.accept().unwrap();
        let conn = ConnInfo::Tcp {
            remote,
            local: server.local_addr().unwrap(),
        };
        let mut spawned = spawn_locked(&plan, server.as_fd(), &conn).expect("fork");
        let _ = nix::sys::signal::kill(spawned.pid, Signal::SIGSTOP);
        // Stopped: wait until it really is, then look at its pipe.
        loop {
            match waitpid(spawned.pid, Some(nix::sys::wait::WaitPidFlag::WUNTRACED)) {
                Ok(WaitStatus::Stopped(..)) | Ok(WaitStatus::Exited(..)) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => panic!("waitpid: {e}"),
            }
        }
        if spawned.exec.poll().is_none() {
            before_exec += 1;
        }
        let _ = nix::sys::signal::kill(spawned.pid, Signal::SIGCONT);
        assert_eq!(spawned.exec.wait(), None, "the child reaches exec");
        drop(server);
        let _ = nix::sys::signal::kill(spawned.pid, Signal::SIGKILL);
        let _ = waitpid(spawned.pid, None);
    }
    assert!(
        before_exec > 0,
        "every child had exec'd when spawn returned"
    );
}

/// wait mode: the listening socket itself on 0-2, no connection variables.
#[test]
fn wait_mode_child_gets_the_listening_socket() {
    block_daemon_signals();
    let plan = Rc::new(SpawnPlan::new(&service(&probe_path(), &["accept"])));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut spawned = spawn_locked(&plan, listener.as_fd(), &ConnInfo::None).unwrap();
    assert_eq!(spawned.exec.wait(), None);
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut text = String::new();
    client.read_to_string(&mut text).unwrap();
    let status = waitpid(spawned.pid, None).unwrap();
    assert_eq!(status, WaitStatus::Exited(spawned.pid, 0));
    let r = Report::parse(&text);
    // The probe accepted on a blocking fd 0 (it would have failed with
    // EAGAIN otherwise) and reported on the accepted connection.
    assert_eq!(r.get("nonblock.0"), "0");
    assert_eq!(r.get("fds"), "0,1,2,3");
    assert!(r.get("peer").starts_with("error:"), "fd 0 is a listener");
    assert!(!r.env.contains_key("PROTO"));
    // As the daemon does when this child exits.
    listener.set_nonblocking(true).unwrap();
}

fn expect_failure(s: &Service, step: Step, errno: Errno) {
    let o = run_tcp(s);
    let f = o.exec_failure.expect("an exec failure");
    assert_eq!((f.step, f.errno), (step, errno), "{f}");
    assert_eq!(o.status, WaitStatus::Exited(o.spawned.pid, 127));
    assert!(o.report.kv.is_empty() && o.report.other.is_empty());
}

#[test]
fn missing_program_fails_at_exec_with_enoent() {
    let dir = TempDir::new();
    expect_failure(
        &service(&dir.0.join("no-such-program"), &[]),
        Step::Exec,
        Errno::ENOENT,
    );
}

#[test]
fn non_executable_file_fails_at_exec_with_eacces() {
    let dir = TempDir::new();
    let file = dir.0.join("not-executable");
    {
        let _guard = FORK_LOCK.write().unwrap_or_else(|e| e.into_inner());
        std::fs::write(&file, "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    expect_failure(&service(&file, &[]), Step::Exec, Errno::EACCES);
}

#[test]
fn bad_cwd_fails_at_chdir() {
    let dir = TempDir::new();
    let mut s = service(&probe_path(), &[]);
    s.cwd = dir.0.join("missing");
    expect_failure(&s, Step::Chdir, Errno::ENOENT);
}

/// Runs the probe as `nobody` with `groups`; root only.
fn run_as_nobody(groups: Vec<u32>) -> Option<Outcome> {
    if !geteuid().is_root() {
        skip(&format!("credentials need root (euid {})", geteuid()));
        return None;
    }
    // A copy nobody can surely execute, whatever the checkout's modes.
    let dir = TempDir::new();
    let probe = dir.0.join("probe");
    {
        let _guard = FORK_LOCK.write().unwrap_or_else(|e| e.into_inner());
        std::fs::copy(probe_path(), &probe).unwrap();
        std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut s = service(&probe, &[]);
    s.credentials = Some(Credentials {
        user: "nobody".into(),
        uid: 65534,
        gid: 65534,
        groups,
        home: PathBuf::from("/nonexistent"),
        shell: PathBuf::from("/usr/sbin/nologin"),
    });
    let o = run_tcp(&s);
    expect_ok(&o);
    let r = &o.report;
    assert_eq!(r.get("status.uid"), "65534 65534 65534 65534");
    assert_eq!(r.get("status.gid"), "65534 65534 65534 65534");
    let env: Vec<(&str, &str)> = ["PATH", "HOME", "USER", "LOGNAME", "SHELL"]
        .iter()
        .map(|k| (*k, r.env.get(*k).map_or("", |v| v.as_str())))
        .collect();
    assert_eq!(
        env,
        [
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
            ("HOME", "/nonexistent"),
            ("USER", "nobody"),
            ("LOGNAME", "nobody"),
            ("SHELL", "/usr/sbin/nologin"),
        ]
    );
    Some(o)
}

#[test]
fn credentials_nobody_without_groups() {
    if let Some(o) = run_as_nobody(vec![]) {
        assert_eq!(o.report.get("groups"), "");
    }
}

#[test]
fn credentials_nobody_with_groups() {
    if let Some(o) = run_as_nobody(vec![65534, 100]) {
        // The kernel keeps supplementary groups sorted.
        assert_eq!(o.report.get("groups"), "100,65534");
        assert_eq!(o.report.get("uid"), "65534");
        assert_eq!(o.report.get("egid"), "65534");
    }
}

#[test]
fn builtin_plan_cannot_be_spawned() {
    let mut s = service(&probe_path(), &[]);
    s.program = Program::Builtin(superd::service::Builtin::Echo);
    let (a, _b) = UnixStream::pair().unwrap();
    let err = spawn_locked(&Rc::new(SpawnPlan::new(&s)), a.as_fd(), &ConnInfo::None).unwrap_err();
    assert_eq!(err, Errno::EINVAL);
}

#[test]
fn missing_chroot_fails_at_chroot() {
    let dir = TempDir::new();
    let mut s = service(&probe_path(), &[]);
    s.chroot = Some(dir.0.join("missing"));
    expect_failure(&s, Step::Chroot, Errno::ENOENT);
}

#[test]
fn impossible_rlimit_fails_at_rlimit() {
    // Above the kernel's fs.nr_open: refused even for root.
    let mut s = service(&probe_path(), &[]);
    s.rlimits = vec![Rlimit {
        resource: RlimitResource::Nofile,
        soft: Some(1 << 40),
        hard: Some(1 << 40),
    }];
    expect_failure(&s, Step::Rlimit, Errno::EPERM);
}
