//! The load and footprint benchmark of issue 6: connections/s and p50/p99
//! latency of superd (fork+exec and builtin echo), of a minimal
//! accept-and-posix_spawn loop (the practical ceiling), and of tcpserver and
//! xinetd when installed, side by side on loopback; then superd's idle CPU,
//! RSS, start and reload times with 1 and 1000 services.
//!
//! Run with `cargo bench --bench load`. Each cell is `SUPERD_BENCH_ROUNDS`
//! rounds (default 5) of `SUPERD_BENCH_SECS` measured seconds (default 1),
//! each after a 0.5 s warm-up, the servers interleaved round by round.
//! `SUPERD_BENCH_BASELINE=PATH` adds another superd build's rows to the same
//! rounds and a table of this build ÷ that one (an interleaved A/B);
//! `SUPERD_BENCH_AB_ONLY=1` leaves the peers and the -q rows out.
//!
//! `SUPERD_BENCH_SCALE=1` appends the scale tables (minutes more; as root),
//! `SUPERD_BENCH_SCALE=only` runs them alone: superd's CPU per connection
//! and conn/s on the tiny service at c=8 with 0, 2,000 and 8,000 live
//! children of a `cat` service (`SUPERD_BENCH_SCALE_LIVE=0,2000,6000` for
//! other levels); start-up, RSS and reload time with 1,000 and 10,000
//! services; RSS with 10,000 idle builtin echo sessions; a soak of
//! 100,000 fork+exec connections (children and open fds after); syscalls per
//! fork+exec connection (`strace -c` on the server process alone, at c=1)
//! beside tcpserver's when it is installed (Debian: ucspi-tcp). With
//! `SUPERD_BENCH_BASELINE` each table has the baseline's rows too.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const TINY_REPLY: &[u8] = b"superd-bench tiny reply\n";
const ECHO_LINE: &[u8] = b"superd-bench echo line\n";
const CONCURRENCY: [usize; 3] = [1, 8, 64];
const WARMUP: Duration = Duration::from_millis(500);
const IDLE_WINDOW: Duration = Duration::from_secs(10);
const MANY: usize = 1000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__ceiling") {
        ceiling(&args[2]);
    }
    if args.get(1).map(String::as_str) == Some("__client") {
        // One cell against any server: `__client PORT tiny|echo CONC SECS`.
        let proto = if args[3] == "echo" {
            Proto::Echo
        } else {
            Proto::Tiny
        };
        let r = Cell::from_rounds(vec![run_round(
            args[2].parse().expect("port"),
            proto,
            args[4].parse().expect("concurrency"),
            Duration::from_secs_f64(args[5].parse().expect("seconds")),
            args.get(6).map(|p| p.parse().expect("server pid")),
        )]);
        let (server_us, client_us, idle) = r.cost();
        println!(
            "{:.0} conn/s p50 {:.3} ms p99 {:.3} ms errors {} server {server_us:.1} us/conn client {client_us:.1} us/conn idle {:.0}%",
            r.rate,
            r.p50 as f64 / 1000.0,
            r.p99 as f64 / 1000.0,
            r.errors,
            idle * 100.0
        );
        return;
    }
    // `cargo test --all-targets` runs a harness-less bench without
    // `--bench`: do nothing there, the load run is minutes long.
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("load: run it with `cargo bench --bench load`");
        return;
    }
    let secs: f64 = std::env::var("SUPERD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let rounds_n: usize = std::env::var("SUPERD_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let cell = Duration::from_secs_f64(secs);
    let superd = PathBuf::from(env!("CARGO_BIN_EXE_superd"));
    let dir = std::env::temp_dir().join(format!("superd-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    let tiny = build_tiny(&dir);
    // SAFETY: geteuid(2) reads an id; no pointer involved.
    let root = unsafe { libc::geteuid() } == 0;
    let mut notes: Vec<String> = Vec::new();
    let load_before = loadavg();
    // The scale table, alone (`only`) or after the rest (`1`).
    let scale_mode = std::env::var("SUPERD_BENCH_SCALE").unwrap_or_default();
    if scale_mode == "only" {
        let baseline = std::env::var_os("SUPERD_BENCH_BASELINE").map(PathBuf::from);
        let t = scale(&superd, baseline.as_deref(), &dir, &tiny, rounds_n, secs);
        println!(
            "{t}\n- load average before / after: {load_before} / {}",
            loadavg()
        );
        let _ = fs::remove_dir_all(&dir);
        return;
    }

    eprintln!("superd: {}", superd.display());
    eprintln!("tiny:   {}", tiny.display());
    eprintln!(
        "cells:  {rounds_n} rounds of {secs} s (+{} ms warm-up each)",
        WARMUP.as_millis()
    );

    // ---- servers ------------------------------------------------------------
    let mut servers: Vec<Server> = Vec::new();
    servers.push(start_ceiling(&tiny));
    // An A/B of two builds in one run: `SUPERD_BENCH_BASELINE=/path/to/old/superd`
    // adds its rows, interleaved with this build's; `SUPERD_BENCH_AB_ONLY=1`
    // leaves out the peers and the -q rows for a shorter run.
    let baseline = std::env::var_os("SUPERD_BENCH_BASELINE").map(PathBuf::from);
    let ab_only = std::env::var_os("SUPERD_BENCH_AB_ONLY").is_some_and(|v| v == "1");
    let sd = start_superd(&superd, &dir, "superd", &tiny, root, false);
    let sd_q = (!ab_only).then(|| start_superd(&superd, &dir, "superd-q", &tiny, root, true));
    let base = baseline
        .as_ref()
        .map(|b| start_superd(b, &dir, "superd-baseline", &tiny, root, false));
    let sd_pid = sd.child.id();
    servers.push(Server {
        label: "superd fork+exec".into(),
        port: sd.ports[0],
        proto: Proto::Tiny,
        child: None,
        cpu_pid: Some(sd_pid),
    });
    if let Some(b) = &base {
        servers.push(Server {
            label: "superd fork+exec (baseline)".into(),
            port: b.ports[0],
            proto: Proto::Tiny,
            child: None,
            cpu_pid: Some(b.child.id()),
        });
    }
    if let Some(q) = &sd_q {
        servers.push(Server {
            label: "superd fork+exec (-q)".into(),
            port: q.ports[0],
            proto: Proto::Tiny,
            child: None,
            cpu_pid: Some(q.child.id()),
        });
    }
    if !ab_only {
        match start_tcpserver(&tiny) {
            Ok(s) => servers.push(s),
            Err(e) => notes.push(format!("tcpserver skipped: {e}")),
        }
        match start_xinetd(&tiny, &dir) {
            Ok(s) => servers.push(s),
            Err(e) => notes.push(format!("xinetd skipped: {e}")),
        }
    }
    servers.push(Server {
        label: "superd builtin echo".into(),
        port: sd.ports[1],
        proto: Proto::Echo,
        child: None,
        cpu_pid: Some(sd_pid),
    });
    if let Some(b) = &base {
        servers.push(Server {
            label: "superd builtin echo (baseline)".into(),
            port: b.ports[1],
            proto: Proto::Echo,
            child: None,
            cpu_pid: Some(b.child.id()),
        });
    }
    if let Some(q) = &sd_q {
        servers.push(Server {
            label: "superd builtin echo (-q)".into(),
            port: q.ports[1],
            proto: Proto::Echo,
            child: None,
            cpu_pid: Some(q.child.id()),
        });
    }
    for s in &servers {
        wait_serving(s.port, s.proto).unwrap_or_else(|e| panic!("{}: {e}", s.label));
    }

    // ---- load ----------------------------------------------------------------
    // Rounds interleave the servers, so that a burst of other work on the
    // machine hits every server alike; a cell's rate is the median of its
    // rounds, its latencies are those of all rounds together.
    let mut results: Vec<Vec<Cell>> = vec![Vec::new(); servers.len()];
    for &c in &CONCURRENCY {
        let mut rounds: Vec<Vec<Round>> = (0..servers.len()).map(|_| Vec::new()).collect();
        for _ in 0..rounds_n {
            for (i, s) in servers.iter().enumerate() {
                rounds[i].push(run_round(s.port, s.proto, c, cell, s.cpu_pid));
                // Let the previous round's zombies and TIME_WAITs settle.
                thread::sleep(Duration::from_millis(200));
            }
        }
        for (i, s) in servers.iter().enumerate() {
            let r = Cell::from_rounds(std::mem::take(&mut rounds[i]));
            eprintln!(
                "{:<32} c={c:<3} {:>8.0} conn/s  p50 {:>7.3} ms  p99 {:>7.3} ms  errors {}",
                s.label,
                r.rate,
                r.p50 as f64 / 1000.0,
                r.p99 as f64 / 1000.0,
                r.errors
            );
            results[i].push(r);
        }
    }
    let after_load = (vm(sd_pid, "VmRSS"), vm(sd_pid, "VmHWM"));
    for s in &mut servers {
        if let Some(mut c) = s.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    drop(sd);
    drop(sd_q);
    drop(base);

    // ---- footprint -------------------------------------------------------------
    let fp = footprint(&superd, &dir, &tiny, root);

    // ---- report -----------------------------------------------------------------
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Load: loopback, {} CPUs, kernel {}; per cell {rounds_n} rounds of {secs} s, servers interleaved (conn/s: median round; latency: all rounds); each connection = connect, (echo: send a line, half-close), read the reply to EOF, verify it.\n",
        thread::available_parallelism().map_or(0, |n| n.get()),
        kernel()
    );
    let _ = writeln!(
        out,
        "| server | c | conn/s | × ceiling | p50 ms | p99 ms | errors |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for (ci, &c) in CONCURRENCY.iter().enumerate() {
        let ceiling = results[0][ci].rate;
        for (si, s) in servers.iter().enumerate() {
            let r = &results[si][ci];
            let _ = writeln!(
                out,
                "| {} | {c} | {:.0} | {:.2} | {:.3} | {:.3} | {} |",
                s.label,
                r.rate,
                r.rate / ceiling,
                r.p50 as f64 / 1000.0,
                r.p99 as f64 / 1000.0,
                r.errors
            );
        }
    }
    // What a builtin saves over fork+exec: the ratio per concurrency, at
    // the same log level.
    let find = |label: &str| servers.iter().position(|s| s.label == label);
    // (log level, echo row, fork+exec row) for each level.
    let pairs: Vec<(&str, usize, usize)> = [
        ("default", "superd builtin echo", "superd fork+exec"),
        ("-q", "superd builtin echo (-q)", "superd fork+exec (-q)"),
    ]
    .into_iter()
    .filter_map(|(level, echo, exec)| Some((level, find(echo)?, find(exec)?)))
    .collect();
    let _ = writeln!(
        out,
        "\nBuiltin echo ÷ superd fork+exec, conn/s at the same log level:\n"
    );
    let _ = writeln!(out, "| log level | c | echo ÷ fork+exec |");
    let _ = writeln!(out, "|---|---:|---:|");
    for &(level, e, x) in &pairs {
        for (ci, &c) in CONCURRENCY.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {level} | {c} | {:.1} |",
                results[e][ci].rate / results[x][ci].rate
            );
        }
    }
    // What bounds echo on this machine: the client shares its CPUs, and
    // each connection costs the kernel's TCP work on both sides.
    let cpus = thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let _ = writeln!(
        out,
        "\nWhere a builtin echo connection's CPU goes (measured windows only; superd's CPU from /proc, the client's from getrusage):\n"
    );
    let _ = writeln!(
        out,
        "| log level | c | conn/s | superd µs/conn | client µs/conn | machine idle | min(c, CPUs) ÷ (superd + client), conn/s | that ÷ fork+exec |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for &(level, e, x) in &pairs {
        for (ci, &c) in CONCURRENCY.iter().enumerate() {
            let r = &results[e][ci];
            let (server_us, client_us, idle) = r.cost();
            // At c=1 client and server take turns: one CPU's worth.
            let bound = cpus.min(c as f64) * 1e6 / (server_us + client_us);
            let _ = writeln!(
                out,
                "| {level} | {c} | {:.0} | {server_us:.1} | {client_us:.1} | {:.0} % | {bound:.0} | {:.1} |",
                r.rate,
                idle * 100.0,
                bound / results[x][ci].rate
            );
        }
    }
    // This build against the baseline, row by row, from the same
    // interleaved rounds.
    if let Some(b) = &baseline {
        let _ = writeln!(
            out,
            "\nThis build ÷ baseline ({}), same interleaved rounds:\n",
            b.display()
        );
        let _ = writeln!(
            out,
            "| row | c | conn/s | baseline conn/s | ratio | p99 ms | baseline p99 ms | superd µs/conn | baseline µs/conn |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for row in ["superd fork+exec", "superd builtin echo"] {
            let (Some(a), Some(z)) = (find(row), find(&format!("{row} (baseline)"))) else {
                continue;
            };
            for (ci, &c) in CONCURRENCY.iter().enumerate() {
                let (ra, rz) = (&results[a][ci], &results[z][ci]);
                let _ = writeln!(
                    out,
                    "| {row} | {c} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {:.1} | {:.1} |",
                    ra.rate,
                    rz.rate,
                    ra.rate / rz.rate,
                    ra.p99 as f64 / 1000.0,
                    rz.p99 as f64 / 1000.0,
                    ra.cost().0,
                    rz.cost().0
                );
            }
        }
    }
    let _ = writeln!(out, "\nFootprint (superd, default log level):\n");
    let _ = writeln!(out, "| measure | value |");
    let _ = writeln!(out, "|---|---:|");
    let _ = writeln!(out, "| RSS, 1 service | {} |", kib(fp.rss_one));
    let _ = writeln!(out, "| RSS, {MANY} services | {} |", kib(fp.rss_many));
    let _ = writeln!(
        out,
        "| RSS / peak RSS after the load run (2 services) | {} / {} |",
        kib(after_load.0),
        kib(after_load.1)
    );
    let _ = writeln!(
        out,
        "| start to READY=1, 1 service | {:.1} ms |",
        ms(fp.start_one)
    );
    let _ = writeln!(
        out,
        "| start to READY=1, {MANY} services | {:.1} ms |",
        ms(fp.start_many)
    );
    let _ = writeln!(
        out,
        "| SIGHUP to READY=1, {MANY} services, one changed | {:.1} ms |",
        ms(fp.reload_many)
    );
    let _ = writeln!(
        out,
        "| CPU ticks idle over {} s, 1 service | {} |",
        IDLE_WINDOW.as_secs(),
        fp.idle_one
    );
    let _ = writeln!(
        out,
        "| CPU ticks idle over {} s, {MANY} services | {} |",
        IDLE_WINDOW.as_secs(),
        fp.idle_many
    );
    notes.push(format!(
        "load average before / after the run: {load_before} / {} (other work on the machine shows here)",
        loadavg()
    ));
    notes.push(format!(
        "the {MANY} services are exec services of the tiny program on 127.0.0.1:0{}",
        if root { ", user nobody" } else { "" }
    ));
    notes.push(
        "superd logs to a file; at the default level each connection writes one `exit` line".into(),
    );
    notes.push("tcpserver runs without -v (it logs nothing per connection); xinetd logs PID HOST EXIT DURATION to a file".into());
    notes.push(format!(
        "client: {} event-driven thread(s) (non-blocking sockets on one epoll each), {SOURCES} source addresses from 127.1.0.1; the echo line and the client's FIN leave in one segment",
        client_threads(usize::MAX)
    ));
    if scale_mode == "1" {
        out.push_str(&scale(
            &superd,
            baseline.as_deref(),
            &dir,
            &tiny,
            rounds_n,
            secs,
        ));
    }
    let _ = writeln!(out);
    for n in &notes {
        let _ = writeln!(out, "- {n}");
    }
    println!("{out}");
    let _ = fs::remove_dir_all(&dir);
}

// ---- the tiny program ---------------------------------------------------------

fn build_tiny(dir: &Path) -> PathBuf {
    let out = dir.join("tiny");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/tiny.c");
    let cc = Command::new("cc")
        .args(["-O2", "-static", "-o"])
        .arg(&out)
        .arg(&src)
        .status();
    if !matches!(cc, Ok(s) if s.success()) {
        // No C compiler (or no static libc): the same program in Rust.
        let rs = dir.join("tiny.rs");
        fs::write(
            &rs,
            "use std::io::Write;\nfn main() { let _ = std::io::stdout().write_all(b\"superd-bench tiny reply\\n\"); }\n",
        )
        .expect("write tiny.rs");
        let ok = Command::new("rustc")
            .args(["-O", "-C", "target-feature=+crt-static", "-o"])
            .arg(&out)
            .arg(&rs)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot build the tiny program with cc or rustc");
    }
    fs::set_permissions(&out, fs::Permissions::from_mode(0o755)).expect("chmod tiny");
    let got = Command::new(&out).output().expect("run tiny");
    assert_eq!(got.stdout, TINY_REPLY, "tiny program reply");
    out
}

// ---- servers ------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    /// Read the tiny program's reply to EOF.
    Tiny,
    /// Send a line, half-close, read it back to EOF.
    Echo,
}

struct Server {
    label: String,
    port: u16,
    proto: Proto,
    child: Option<Child>,
    /// The process that does all of this server's work (superd for its
    /// builtin echo): its CPU per connection is reported.
    cpu_pid: Option<u32>,
}

/// A server the benchmark started is killed when dropped, on a failed
/// assertion too.
impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The ceiling: a minimal blocking accept loop that posix_spawns the tiny
/// program on the socket and lets the kernel reap (SIGCHLD ignored). Runs in
/// its own process (this binary, `__ceiling PROGRAM`); prints its port.
fn ceiling(prog: &str) -> ! {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let fd = l.as_raw_fd();
    let path = CString::new(prog).expect("path");
    let argv = [path.as_ptr(), std::ptr::null()];
    let env = CString::new("PATH=/usr/bin:/bin").expect("env");
    let envp = [env.as_ptr(), std::ptr::null()];
    // SAFETY: plain libc calls on valid fds and initialised structures; the
    // process is single-threaded.
    unsafe {
        libc::listen(fd, 1024);
        println!("{}", l.local_addr().expect("addr").port());
        let _ = std::io::stdout().flush();
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawnattr_init(&mut attr);
        let mut def: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut def);
        libc::sigaddset(&mut def, libc::SIGPIPE);
        libc::posix_spawnattr_setsigdefault(&mut attr, &def);
        libc::posix_spawnattr_setflags(&mut attr, libc::POSIX_SPAWN_SETSIGDEF as _);
        loop {
            let c = libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            );
            if c < 0 {
                continue;
            }
            let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
            libc::posix_spawn_file_actions_init(&mut fa);
            for target in 0..3 {
                libc::posix_spawn_file_actions_adddup2(&mut fa, c, target);
            }
            let mut pid = 0;
            libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                &fa,
                &attr,
                argv.as_ptr() as *const *mut libc::c_char,
                envp.as_ptr() as *const *mut libc::c_char,
            );
            libc::posix_spawn_file_actions_destroy(&mut fa);
            libc::close(c);
        }
    }
}

fn start_ceiling(tiny: &Path) -> Server {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .arg("__ceiling")
        .arg(tiny)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start ceiling loop");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ceiling port");
    Server {
        label: "ceiling (accept + posix_spawn)".into(),
        port: line.trim().parse().expect("ceiling port"),
        proto: Proto::Tiny,
        child: Some(child),
        cpu_pid: None,
    }
}

fn start_tcpserver(tiny: &Path) -> Result<Server, String> {
    let port = free_port();
    let child = Command::new("tcpserver")
        .args([
            "-R",
            "-H",
            "-l",
            "localhost",
            "-c",
            "1024",
            "-b",
            "1024",
            "127.0.0.1",
        ])
        .arg(port.to_string())
        .arg(tiny)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("tcpserver not runnable ({e}); apt-get install ucspi-tcp"))?;
    Ok(Server {
        label: "tcpserver".into(),
        port,
        proto: Proto::Tiny,
        child: Some(child),
        cpu_pid: None,
    })
}

fn start_xinetd(tiny: &Path, dir: &Path) -> Result<Server, String> {
    // SAFETY: geteuid(2) reads an id; no pointer involved.
    if unsafe { libc::geteuid() } != 0 {
        return Err("xinetd needs root".into());
    }
    let port = free_port();
    let conf = dir.join("xinetd.conf");
    fs::write(
        &conf,
        format!(
            "defaults\n{{\n  instances = UNLIMITED\n  per_source = UNLIMITED\n  cps = 1000000 1\n}}\n\
             service superd-bench\n{{\n  type = UNLISTED\n  socket_type = stream\n  protocol = tcp\n  wait = no\n  user = root\n  server = {}\n  port = {port}\n  bind = 127.0.0.1\n  instances = UNLIMITED\n  cps = 1000000 1\n  log_type = FILE {}\n  log_on_success = PID HOST EXIT DURATION\n  log_on_failure = HOST\n}}\n",
            tiny.display(),
            dir.join("xinetd.log").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let child = Command::new("xinetd")
        .args(["-dontfork", "-f"])
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("xinetd not runnable ({e}); apt-get install xinetd"))?;
    Ok(Server {
        label: "xinetd".into(),
        port,
        proto: Proto::Tiny,
        child: Some(child),
        cpu_pid: None,
    })
}

/// A running superd with its notify socket.
struct Superd {
    child: Child,
    notify: UnixDatagram,
    ports: Vec<u16>,
    config: PathBuf,
    log: PathBuf,
}

/// Stopped when dropped, a failed assertion included: no superd of the
/// benchmark outlives it.
impl Drop for Superd {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child this process started and
        // has not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn spawn_superd(
    superd: &Path,
    dir: &Path,
    name: &str,
    config: &str,
    quiet: bool,
) -> (Superd, Duration) {
    let cfg = dir.join(format!("{name}.yaml"));
    fs::write(&cfg, config).expect("write config");
    let sock = dir.join(format!("{name}.notify"));
    let _ = fs::remove_file(&sock);
    let notify = UnixDatagram::bind(&sock).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let log = dir.join(format!("{name}.log"));
    let mut cmd = Command::new(superd);
    if quiet {
        cmd.arg("-q");
    }
    cmd.arg(&cfg)
        .env("NOTIFY_SOCKET", &sock)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log file"));
    let t0 = Instant::now();
    let child = cmd.spawn().expect("start superd");
    let mut sd = Superd {
        child,
        notify,
        ports: Vec::new(),
        config: cfg,
        log,
    };
    wait_notify(&sd.notify, "READY=1").unwrap_or_else(|e| {
        panic!(
            "{name}: {e}; log: {}",
            fs::read_to_string(&sd.log).unwrap_or_default()
        )
    });
    let took = t0.elapsed();
    sd.ports.clear();
    (sd, took)
}

fn wait_notify(sock: &UnixDatagram, what: &str) -> Result<(), String> {
    let mut buf = [0u8; 512];
    loop {
        let n = sock
            .recv(&mut buf)
            .map_err(|e| format!("waiting for {what}: {e}"))?;
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == what)
        {
            return Ok(());
        }
    }
}

fn start_superd(
    superd: &Path,
    dir: &Path,
    name: &str,
    tiny: &Path,
    root: bool,
    quiet: bool,
) -> Superd {
    let (p_tiny, p_echo) = (free_port(), free_port());
    let user = if root { "\n    user: root" } else { "" };
    let config = format!(
        "services:\n  tiny:\n    listen: 127.0.0.1:{p_tiny}\n    exec: {}{user}\n  echo:\n    listen: 127.0.0.1:{p_echo}\n    builtin: echo\n",
        tiny.display()
    );
    let (mut sd, _) = spawn_superd(superd, dir, name, &config, quiet);
    sd.ports = vec![p_tiny, p_echo];
    sd
}

fn wait_serving(port: u16, proto: Proto) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(10);
    let mut buf = Vec::new();
    loop {
        if one_connection(SocketAddr::from(([127, 0, 0, 1], port)), proto, &mut buf) {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(format!("port {port} does not serve"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---- load ---------------------------------------------------------------------

/// One round of one cell: its rate and every latency (microseconds), and
/// where the machine's CPU went during the measured window.
struct Round {
    rate: f64,
    lat: Vec<u32>,
    errors: u64,
    cpu: CpuUse,
}

/// CPU used over a measured window, and what was left idle.
#[derive(Clone, Copy, Default)]
struct CpuUse {
    /// The server process given to [`run_round`], in clock ticks.
    server_ticks: u64,
    /// This benchmark process (the client threads), in microseconds.
    client_us: u64,
    /// The whole machine, in clock ticks: idle (with iowait), and all.
    idle_ticks: u64,
    total_ticks: u64,
}

impl CpuUse {
    fn now(server: Option<u32>) -> CpuUse {
        // SAFETY: getrusage fills the zeroed structure it is given.
        let ru = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut ru);
            ru
        };
        let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        let (idle_ticks, total_ticks) = machine_ticks();
        CpuUse {
            server_ticks: server.map_or(0, cpu_ticks),
            client_us: tv(ru.ru_utime) + tv(ru.ru_stime),
            idle_ticks,
            total_ticks,
        }
    }

    fn since(self, before: CpuUse) -> CpuUse {
        // iowait may go down (proc(5)): never wrap.
        CpuUse {
            server_ticks: self.server_ticks.saturating_sub(before.server_ticks),
            client_us: self.client_us.saturating_sub(before.client_us),
            idle_ticks: self.idle_ticks.saturating_sub(before.idle_ticks),
            total_ticks: self.total_ticks.saturating_sub(before.total_ticks),
        }
    }

    fn add(self, o: CpuUse) -> CpuUse {
        CpuUse {
            server_ticks: self.server_ticks + o.server_ticks,
            client_us: self.client_us + o.client_us,
            idle_ticks: self.idle_ticks + o.idle_ticks,
            total_ticks: self.total_ticks + o.total_ticks,
        }
    }
}

#[derive(Clone, Default)]
struct Cell {
    rate: f64,
    /// Microseconds.
    p50: u64,
    p99: u64,
    errors: u64,
    /// The rounds' CPU together, and the connections they counted.
    cpu: CpuUse,
    conns: u64,
}

impl Cell {
    /// The server's and the client's CPU per connection (µs), and the
    /// share of the machine left idle.
    fn cost(&self) -> (f64, f64, f64) {
        let n = self.conns.max(1) as f64;
        let tick_us = 1e6 / clock_ticks_per_sec();
        (
            self.cpu.server_ticks as f64 * tick_us / n,
            self.cpu.client_us as f64 / n,
            self.cpu.idle_ticks as f64 / self.cpu.total_ticks.max(1) as f64,
        )
    }
}

/// One connection: connect, (echo: send a line, half-close), read to EOF,
/// verify. `false` on any failure or a wrong reply.
fn one_connection(addr: SocketAddr, proto: Proto, buf: &mut Vec<u8>) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let expected = match proto {
        Proto::Tiny => TINY_REPLY,
        Proto::Echo => {
            if s.write_all(ECHO_LINE).is_err() || s.shutdown(Shutdown::Write).is_err() {
                return false;
            }
            ECHO_LINE
        }
    };
    buf.clear();
    s.read_to_end(buf).is_ok() && buf.as_slice() == expected
}

impl Cell {
    fn from_rounds(mut rounds: Vec<Round>) -> Cell {
        rounds.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let rate = rounds.get(rounds.len() / 2).map_or(0.0, |r| r.rate);
        let errors = rounds.iter().map(|r| r.errors).sum();
        let cpu = rounds.iter().fold(CpuUse::default(), |a, r| a.add(r.cpu));
        let mut all: Vec<u32> = rounds.into_iter().flat_map(|r| r.lat).collect();
        all.sort_unstable();
        let pct = |p: usize| all.get(all.len() * p / 100).copied().unwrap_or(0) as u64;
        Cell {
            rate,
            p50: pct(50),
            p99: pct(99),
            errors,
            cpu,
            conns: all.len() as u64,
        }
    }
}

/// One round of one cell: `conc` connections always in flight, driven by
/// [`client_threads`] event-driven client threads (non-blocking sockets on
/// one epoll each), so that the client spends little of the machine's CPU
/// and the rate measures the server. A connection is timed from `socket()`
/// to its verified EOF; it counts when it started after the warm-up and
/// ended before the round's end.
/// `server`, when given, is the process whose CPU is measured as the
/// server's, over the measured window only.
fn run_round(port: u16, proto: Proto, conc: usize, dur: Duration, server: Option<u32>) -> Round {
    let stop = Arc::new(AtomicBool::new(false));
    let from = Instant::now() + WARMUP;
    let to = from + dur;
    let threads = client_threads(conc);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            // Spread `conc` over the threads as evenly as possible.
            let n = conc / threads + usize::from(t < conc % threads);
            let stop = stop.clone();
            // Threads start at different source addresses.
            let first = (t as u32).wrapping_mul(SOURCES / threads as u32);
            thread::spawn(move || client_worker(port, proto, n, first, from, to, &stop))
        })
        .collect();
    thread::sleep(from.saturating_duration_since(Instant::now()));
    let before = CpuUse::now(server);
    thread::sleep(to.saturating_duration_since(Instant::now()));
    let cpu = CpuUse::now(server).since(before);
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<u32> = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (lat, e) = w.join().expect("worker");
        all.extend(lat);
        errors += e;
    }
    Round {
        rate: all.len() as f64 / dur.as_secs_f64(),
        lat: all,
        errors,
        cpu,
    }
}

/// Client threads for `conc` connections: `SUPERD_BENCH_CLIENT_THREADS`,
/// else one per CPU, never more than `conc`.
fn client_threads(conc: usize) -> usize {
    let default = thread::available_parallelism().map_or(1, |n| n.get());
    std::env::var("SUPERD_BENCH_CLIENT_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
        .clamp(1, conc.max(1))
}

/// Where one client connection is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Echo: connecting; the line is not sent yet.
    Sending,
    /// Reading the reply to EOF.
    Reading,
}

struct ClientConn {
    fd: i32,
    phase: Phase,
    started: Instant,
    got: Vec<u8>,
}

/// Keeps `n` connections in flight on one epoll until `stop`; returns the
/// latencies (microseconds) of the counted connections and the errors.
fn client_worker(
    port: u16,
    proto: Proto,
    n: usize,
    mut next_source: u32,
    from: Instant,
    to: Instant,
    stop: &AtomicBool,
) -> (Vec<u32>, u64) {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: epoll_create1 has no memory arguments.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1");
    let mut conns: Vec<Option<ClientConn>> = (0..n).map(|_| None).collect();
    let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
    let mut errors = 0u64;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; n.max(1)];
    // Connections that finished, with their outcome, to close and replace.
    let mut finished: Vec<(usize, bool)> = Vec::with_capacity(n);
    for slot in 0..n {
        let src = source(next_source);
        next_source = next_source.wrapping_add(1);
        if let Some(outcome) = client_start(ep, &addr, src, slot, proto, &mut conns) {
            finished.push((slot, outcome));
        }
    }
    loop {
        while let Some((slot, outcome)) = finished.pop() {
            let c = conns[slot].take().expect("finished connection");
            // SAFETY: the connection owns `fd`; closing also removes it
            // from the epoll set.
            unsafe { libc::close(c.fd) };
            let end = Instant::now();
            let counted = c.started >= from && end <= to;
            if outcome && counted {
                lat.push(end.duration_since(c.started).as_micros() as u32);
            } else if !outcome {
                if counted {
                    errors += 1;
                }
                // A server that refuses must not turn the client into a
                // busy loop.
                thread::sleep(Duration::from_millis(1));
            }
            if stop.load(Ordering::Relaxed) {
                continue;
            }
            let src = source(next_source);
            next_source = next_source.wrapping_add(1);
            if let Some(outcome) = client_start(ep, &addr, src, slot, proto, &mut conns) {
                finished.push((slot, outcome));
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // SAFETY: `events` is a valid buffer of `events.len()` entries.
        let got = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 20) };
        for ev in events.iter().take(got.max(0) as usize) {
            let slot = ev.u64 as usize;
            if let Some(outcome) = client_drive(slot, proto, &mut conns) {
                finished.push((slot, outcome));
            }
        }
    }
    for c in conns.into_iter().flatten() {
        // SAFETY: as above; connections still in flight are not counted.
        unsafe { libc::close(c.fd) };
    }
    // SAFETY: `ep` is this worker's epoll fd.
    unsafe { libc::close(ep) };
    (lat, errors)
}

/// Client source addresses, 127.1.0.1 and up, one after the other for
/// each new connection. An echo client closes first (it half-closes, RFC
/// 862), so each of its connections leaves a TIME_WAIT on its side for
/// 60 s; from one source address the ~28,000 ephemeral ports are all in
/// TIME_WAIT within a second at echo rates, and every connect() then
/// searches the port range for a reusable one, which makes the kernel's
/// port search, not the server, the measured bottleneck. Loopback is the
/// whole of 127.0.0.0/8: 1024 sources give 1024 times the 4-tuples. Every
/// server is measured with the same client.
const SOURCES: u32 = 1024;

/// The `n`th client source address (network order).
fn source(n: u32) -> u32 {
    (u32::from_be_bytes([127, 1, 0, 1]) + n % SOURCES).to_be()
}

/// Opens the connection of `slot` and registers it (edge-triggered);
/// the outcome if it finished at once (see [`client_drive`]).
fn client_start(
    ep: i32,
    addr: &libc::sockaddr_in,
    src: u32,
    slot: usize,
    proto: Proto,
    conns: &mut [Option<ClientConn>],
) -> Option<bool> {
    let started = Instant::now();
    // SAFETY: socket/connect/epoll_ctl get a valid address of the stated
    // length and an event structure on the stack.
    let fd = unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // A new source address for each connection (see SOURCES); the
        // port is chosen at connect, for the whole 4-tuple.
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let src = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: src },
            sin_zero: [0; 8],
        };
        let r = libc::bind(
            fd,
            (&src as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert!(r == 0, "bind: {}", std::io::Error::last_os_error());
        libc::connect(
            fd,
            (addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        // EINPROGRESS or an immediate error: either way the outcome shows
        // as an event (writable, or an error) on the registered socket.
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: slot as u64,
        };
        let r = libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev);
        assert!(r == 0, "epoll_ctl: {}", std::io::Error::last_os_error());
        fd
    };
    conns[slot] = Some(ClientConn {
        fd,
        phase: match proto {
            Proto::Echo => Phase::Sending,
            Proto::Tiny => Phase::Reading,
        },
        started,
        got: Vec::with_capacity(64),
    });
    // On loopback the handshake is usually complete when connect()
    // returns: send at once rather than after a writable event. Anything
    // that is not finished here goes on at the next event.
    if proto == Proto::Echo {
        return client_drive(slot, proto, conns);
    }
    None
}

/// Moves the connection of `slot` on after an event: `None` while it is
/// still going, `Some(true)` for a verified reply at EOF, `Some(false)` for
/// any failure or a wrong reply.
fn client_drive(slot: usize, proto: Proto, conns: &mut [Option<ClientConn>]) -> Option<bool> {
    let c = conns[slot].as_mut()?;
    if c.phase == Phase::Sending {
        // MSG_MORE holds the line back until the shutdown, whose FIN then
        // leaves in the same segment: one packet instead of two, as a
        // client that writes its whole request at once would send.
        // SAFETY: sending from a static buffer on the connection's fd.
        let n = unsafe {
            libc::send(
                c.fd,
                ECHO_LINE.as_ptr().cast(),
                ECHO_LINE.len(),
                libc::MSG_MORE | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                // Still connecting: the writable edge comes later.
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::NotConnected => None,
                _ => Some(false),
            };
        }
        if n as usize != ECHO_LINE.len() {
            return Some(false);
        }
        // SAFETY: shutting down the write side of the connection's fd.
        if unsafe { libc::shutdown(c.fd, libc::SHUT_WR) } != 0 {
            return Some(false);
        }
        c.phase = Phase::Reading;
    }
    let expected = match proto {
        Proto::Tiny => TINY_REPLY,
        Proto::Echo => ECHO_LINE,
    };
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: reading into a stack buffer of the stated length.
        let n = unsafe { libc::read(c.fd, buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => return Some(c.got == expected),
            n if n > 0 => {
                c.got.extend_from_slice(&buf[..n as usize]);
                if c.got.len() > expected.len() {
                    return Some(false);
                }
            }
            _ => {
                let e = std::io::Error::last_os_error();
                return match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::NotConnected => None,
                    std::io::ErrorKind::Interrupted => continue,
                    _ => Some(false),
                };
            }
        }
    }
}

// ---- footprint ----------------------------------------------------------------

struct Footprint {
    rss_one: Option<u64>,
    rss_many: Option<u64>,
    start_one: Duration,
    start_many: Duration,
    reload_many: Duration,
    idle_one: u64,
    idle_many: u64,
}

fn many_config(tiny: &Path, root: bool, changed: bool) -> String {
    let mut s = String::with_capacity(MANY * 80);
    if root {
        s.push_str("defaults:\n  user: nobody\n");
    }
    s.push_str("services:\n");
    for i in 0..MANY {
        let extra = if changed && i == MANY / 2 {
            ", changed"
        } else {
            ""
        };
        let _ = write!(
            s,
            "  s{i:04}:\n    listen: 127.0.0.1:0\n    exec: [{}{extra}]\n",
            tiny.display()
        );
    }
    s
}

fn footprint(superd: &Path, dir: &Path, tiny: &Path, root: bool) -> Footprint {
    let user = if root { "\n    user: root" } else { "" };
    let one = format!(
        "services:\n  tiny:\n    listen: 127.0.0.1:0\n    exec: {}{user}\n",
        tiny.display()
    );
    let (sd_one, start_one) = spawn_superd(superd, dir, "one", &one, false);
    let (sd_many, start_many) =
        spawn_superd(superd, dir, "many", &many_config(tiny, root, false), false);
    let listening = fs::read_to_string(&sd_many.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("listening service="))
        .count();
    assert_eq!(listening, MANY, "every service of the big config listens");
    // Let both settle before sampling memory and idling.
    thread::sleep(Duration::from_millis(200));
    let rss_one = vm(sd_one.child.id(), "VmRSS");
    let rss_many = vm(sd_many.child.id(), "VmRSS");

    let t_one = cpu_ticks(sd_one.child.id());
    let t_many = cpu_ticks(sd_many.child.id());
    thread::sleep(IDLE_WINDOW);
    let idle_one = cpu_ticks(sd_one.child.id()) - t_one;
    let idle_many = cpu_ticks(sd_many.child.id()) - t_many;

    // Reload: one service's arguments changed.
    fs::write(&sd_many.config, many_config(tiny, root, true)).expect("rewrite config");
    let t0 = Instant::now();
    // SAFETY: kill(2) on our own child, not yet reaped; no pointer involved.
    unsafe { libc::kill(sd_many.child.id() as i32, libc::SIGHUP) };
    wait_notify(&sd_many.notify, "RELOADING=1").expect("RELOADING=1");
    wait_notify(&sd_many.notify, "READY=1").expect("READY=1 after reload");
    let reload_many = t0.elapsed();
    let log = fs::read_to_string(&sd_many.log).unwrap_or_default();
    assert!(
        log.contains(&format!("reloaded services={MANY}")),
        "reload applied: {}",
        log.lines().last().unwrap_or("")
    );
    drop(sd_one);
    drop(sd_many);
    Footprint {
        rss_one,
        rss_many,
        start_one,
        start_many,
        reload_many,
        idle_one,
        idle_many,
    }
}

/// A `Vm*` line of /proc/PID/status, in KiB.
fn vm(pid: u32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The machine's idle (with iowait) and total clock ticks, all CPUs.
fn machine_ticks() -> (u64, u64) {
    let s = fs::read_to_string("/proc/stat").expect("/proc/stat");
    let f: Vec<u64> = s
        .lines()
        .next()
        .expect("cpu line")
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().expect("tick count"))
        .collect();
    (f[3] + f[4], f.iter().sum())
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no memory arguments.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 { n as f64 } else { 100.0 }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let rest = &s[s.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

fn kib(v: Option<u64>) -> String {
    v.map_or("?".into(), |k| {
        format!("{:.1} MiB ({k} KiB)", k as f64 / 1024.0)
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

// ---- the scale table (SUPERD_BENCH_SCALE) ---------------------------------------

/// superd's cost as the work grows: CPU per connection and conn/s on the
/// tiny service with many live children of a `cat` service; start-up, RSS
/// and reload time with many services; RSS with many idle builtin
/// sessions; syscalls per connection (strace -c) beside tcpserver's.
fn scale(
    superd: &Path,
    baseline: Option<&Path>,
    dir: &Path,
    tiny: &Path,
    rounds: usize,
    secs: f64,
) -> String {
    raise_nofile();
    let mut out = String::new();
    let levels: Vec<usize> = std::env::var("SUPERD_BENCH_SCALE_LIVE")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![0, 2000, 8000]);
    let conc = 8;
    let mut builds: Vec<(&str, &Path)> = vec![("this build", superd)];
    if let Some(b) = baseline {
        builds.push(("baseline", b));
    }
    let _ = writeln!(
        out,
        "\nScale: the tiny service at c={conc} with N live children of a `cat` service (median of {rounds} × {secs} s; the builds one after the other at each N):\n"
    );
    let _ = writeln!(
        out,
        "| build | live children | conn/s | superd µs/conn | ÷ N=0 µs/conn | ÷ N=0 conn/s |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let mut zero: Vec<Option<(f64, f64)>> = vec![None; builds.len()];
    for &n in &levels {
        for (bi, (label, bin)) in builds.iter().enumerate() {
            let (p_tiny, p_cat) = (free_port(), free_port());
            let config = format!(
                "services:\n  tiny:\n    listen: 127.0.0.1:{p_tiny}\n    exec: {}\n    user: root\n  cat:\n    listen: 127.0.0.1:{p_cat}\n    exec: /bin/cat\n    user: root\n    max_connections: 20000\n",
                tiny.display()
            );
            let (sd, _) = spawn_superd(bin, dir, &format!("scale-{bi}-{n}"), &config, false);
            let pid = sd.child.id();
            wait_serving(p_tiny, Proto::Tiny).expect("tiny serving");
            let live = hold_connections(p_cat, n, pid);
            let cells: Vec<Round> = (0..rounds)
                .map(|_| {
                    run_round(
                        p_tiny,
                        Proto::Tiny,
                        conc,
                        Duration::from_secs_f64(secs),
                        Some(pid),
                    )
                })
                .collect();
            let cell = Cell::from_rounds(cells);
            let us = cell.cost().0;
            if n == 0 || zero[bi].is_none() {
                zero[bi] = Some((us, cell.rate));
            }
            let (z_us, z_rate) = zero[bi].unwrap_or((us, cell.rate));
            let _ = writeln!(
                out,
                "| {label} | {n} | {:.0} | {us:.1} | {:.2} | {:.2} |",
                cell.rate,
                us / z_us,
                z_rate / cell.rate.max(1.0)
            );
            eprintln!(
                "scale {label} live={n}: {:.0} conn/s {us:.1} µs/conn",
                cell.rate
            );
            drop(live);
            drop(sd);
        }
    }

    // Many services: start-up, RSS, reload.
    let _ = writeln!(
        out,
        "\nScale: many services (exec services of the tiny program, one port each):\n"
    );
    let _ = writeln!(
        out,
        "| build | services | start to READY=1 | RSS | SIGHUP to READY=1, one changed |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for n in [1000, 10_000] {
        for (label, bin) in &builds {
            let (sd, start) = spawn_superd(
                bin,
                dir,
                &format!("svc-{n}"),
                &services_config(tiny, n, false),
                false,
            );
            thread::sleep(Duration::from_millis(200));
            let rss = vm(sd.child.id(), "VmRSS");
            fs::write(&sd.config, services_config(tiny, n, true)).expect("rewrite config");
            let t0 = Instant::now();
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(sd.child.id() as i32, libc::SIGHUP) };
            wait_notify(&sd.notify, "RELOADING=1").expect("RELOADING=1");
            wait_notify(&sd.notify, "READY=1").expect("READY=1 after reload");
            let reload = t0.elapsed();
            let _ = writeln!(
                out,
                "| {label} | {n} | {:.1} ms | {} | {:.1} ms |",
                ms(start),
                kib(rss),
                ms(reload)
            );
        }
    }

    // Idle builtin sessions.
    let sessions = 10_000;
    let _ = writeln!(out, "\nScale: {sessions} idle builtin echo sessions:\n");
    let _ = writeln!(out, "| build | RSS before | RSS with {sessions} sessions |");
    let _ = writeln!(out, "|---|---:|---:|");
    for (label, bin) in &builds {
        let p = free_port();
        let config = format!(
            "services:\n  echo:\n    listen: 127.0.0.1:{p}\n    builtin: echo\n    max_connections: 20000\n    max_per_source: 20000\n"
        );
        let (sd, _) = spawn_superd(bin, dir, "sessions", &config, true);
        wait_serving(p, Proto::Echo).expect("echo serving");
        let pid = sd.child.id();
        let before = vm(pid, "VmRSS");
        let base_fds = fd_count(pid);
        let live: Vec<TcpStream> = (0..sessions)
            .filter_map(|_| TcpStream::connect(("127.0.0.1", p)).ok())
            .collect();
        let until = Instant::now() + Duration::from_secs(60);
        while fd_count(pid) < base_fds + live.len() && Instant::now() < until {
            thread::sleep(Duration::from_millis(50));
        }
        let with = vm(pid, "VmRSS");
        let _ = writeln!(
            out,
            "| {label} ({} open) | {} | {} |",
            fd_count(pid) - base_fds,
            kib(before),
            kib(with)
        );
        drop(live);
        drop(sd);
    }

    // A soak: 100,000 fork+exec connections, then no zombie and the fds
    // back at the count before them (no pidfd, pipe or cgroup fd leaked).
    let soak = 100_000;
    let _ = writeln!(
        out,
        "\nSoak: {soak} fork+exec connections to the tiny service at c=8, then its children and open fds:\n"
    );
    let _ = writeln!(
        out,
        "| build | connections | seconds | children after | fds before | fds after |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for (bi, (label, bin)) in builds.iter().enumerate() {
        let p = free_port();
        let config = format!(
            "services:\n  tiny:\n    listen: 127.0.0.1:{p}\n    exec: {}\n    user: root\n",
            tiny.display()
        );
        let (sd, _) = spawn_superd(bin, dir, &format!("soak-{bi}"), &config, false);
        let pid = sd.child.id();
        wait_serving(p, Proto::Tiny).expect("tiny serving");
        let fds_before = fd_count(pid);
        let t0 = Instant::now();
        let mut done = 0;
        // Bounded in count and in time (10 minutes).
        while done < soak && t0.elapsed() < Duration::from_secs(600) {
            let r = run_round(p, Proto::Tiny, conc, Duration::from_secs(5), None);
            done += r.lat.len();
        }
        let took = t0.elapsed();
        let until = Instant::now() + Duration::from_secs(30);
        while (child_count(pid) > 0 || fd_count(pid) > fds_before) && Instant::now() < until {
            thread::sleep(Duration::from_millis(50));
        }
        let _ = writeln!(
            out,
            "| {label} | {done} | {:.0} | {} | {fds_before} | {} |",
            took.as_secs_f64(),
            child_count(pid),
            fd_count(pid)
        );
        drop(sd);
    }

    // Syscalls per connection.
    let _ = writeln!(
        out,
        "\nSyscalls per fork+exec connection (strace -c on the server process alone, c=1, 3 s):\n"
    );
    let _ = writeln!(
        out,
        "| server | connections | syscalls / conn | the largest |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|");
    /// A server under strace: its label, port and pid, kept running.
    struct Traced {
        label: String,
        port: u16,
        pid: u32,
        _superd: Option<Superd>,
        child: Option<Child>,
    }
    let mut servers: Vec<Traced> = Vec::new();
    for (bi, (label, bin)) in builds.iter().enumerate() {
        let p = free_port();
        let config = format!(
            "services:\n  tiny:\n    listen: 127.0.0.1:{p}\n    exec: {}\n    user: root\n",
            tiny.display()
        );
        let (sd, _) = spawn_superd(bin, dir, &format!("strace-{bi}"), &config, false);
        servers.push(Traced {
            label: format!("superd ({label})"),
            port: p,
            pid: sd.child.id(),
            _superd: Some(sd),
            child: None,
        });
    }
    match start_tcpserver(tiny) {
        Ok(mut s) => {
            let child = s.child.take().expect("tcpserver child");
            servers.push(Traced {
                label: "tcpserver".into(),
                port: s.port,
                pid: child.id(),
                _superd: None,
                child: Some(child),
            });
        }
        Err(e) => {
            let _ = writeln!(out, "| tcpserver | - | - | not run: {e} |");
        }
    }
    for t in &servers {
        wait_serving(t.port, Proto::Tiny).expect("serving");
        match strace_count(t.port, t.pid) {
            Ok((n, per, top)) => {
                let _ = writeln!(out, "| {} | {n} | {per:.1} | {top} |", t.label);
            }
            Err(e) => {
                let _ = writeln!(out, "| {} | - | - | {e} |", t.label);
            }
        }
    }
    for t in servers.iter_mut() {
        if let Some(c) = &mut t.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    out
}

/// Opens `n` connections to the `cat` service and keeps them, once superd
/// (pid) has a child for each.
fn hold_connections(port: u16, n: usize, pid: u32) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let s = std::net::TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(10),
        );
        match s {
            Ok(s) => held.push(s),
            Err(e) => panic!("live connection {i} of {n}: {e}"),
        }
    }
    let until = Instant::now() + Duration::from_secs(120);
    while child_count(pid) < n && Instant::now() < until {
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        child_count(pid) >= n,
        "{} live children of {n}",
        child_count(pid)
    );
    held
}

fn child_count(pid: u32) -> usize {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|s| s.split_whitespace().count())
        .unwrap_or(0)
}

fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// `n` exec services on ports of their own (127.3.0.1:20000 on, below
/// the ephemeral range): with port 0 the kernel's search for a free port
/// is what start-up measures (bind(2) walks the ports in use: 23 s for
/// 10,000 on the machine of issue 22).
fn services_config(tiny: &Path, n: usize, changed: bool) -> String {
    let mut s = String::with_capacity(n * 80);
    s.push_str("defaults:\n  user: nobody\nservices:\n");
    for i in 0..n {
        let extra = if changed && i == n / 2 {
            ", changed"
        } else {
            ""
        };
        let _ = write!(
            s,
            "  s{i:05}:\n    listen: 127.3.0.1:{}\n    exec: [{}{extra}]\n",
            20_000 + i,
            tiny.display()
        );
    }
    s
}

/// strace -c on `pid` (its own thread only, no -f: not the children)
/// during a 3 s round at c=1 on `port`; the connections, the syscalls per
/// connection and the five most frequent calls.
fn strace_count(port: u16, pid: u32) -> Result<(usize, f64, String), String> {
    let out = std::env::temp_dir().join(format!("superd-bench-strace-{pid}"));
    let mut st = Command::new("strace")
        .args(["-c", "-o"])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("strace not runnable ({e})"))?;
    thread::sleep(Duration::from_millis(500));
    let r = run_round(port, Proto::Tiny, 1, Duration::from_secs(3), None);
    // Connections: one clone (or fork) each while traced; the client's
    // count (warm-up estimated) if the server started none.
    let estimate = r.lat.len() + (r.rate * WARMUP.as_secs_f64()) as usize;
    // SAFETY: SIGINT to the strace we started: it detaches and writes
    // its summary.
    unsafe { libc::kill(st.id() as i32, libc::SIGINT) };
    let _ = st.wait();
    let text = fs::read_to_string(&out).map_err(|e| e.to_string())?;
    let _ = fs::remove_file(&out);
    let mut calls: Vec<(u64, String)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 5 || f[0].parse::<f64>().is_err() || f.last() == Some(&"total") {
                return None;
            }
            Some((f[3].parse().ok()?, f.last()?.to_string()))
        })
        .collect();
    calls.sort_by_key(|c| std::cmp::Reverse(c.0));
    let total: u64 = calls.iter().map(|c| c.0).sum();
    let clones: u64 = calls
        .iter()
        .filter(|c| matches!(c.1.as_str(), "clone" | "clone3" | "fork" | "vfork"))
        .map(|c| c.0)
        .sum();
    let n = if clones > 0 {
        clones as usize
    } else {
        estimate.max(1)
    };
    let top = calls
        .iter()
        .take(8)
        .map(|(c, name)| format!("{name} {:.1}", *c as f64 / n as f64))
        .collect::<Vec<_>>()
        .join(", ");
    Ok((n, total as f64 / n as f64, top))
}

/// The soft `nofile` limit up to the hard one: thousands of live
/// connections are held by this process.
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit on this process with a local struct.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}
