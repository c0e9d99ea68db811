//! The cost of `proxy_protocol` (issue 18): the fork+exec rate of one
//! tiny program behind two services of one superd, the same but for
//! `proxy_protocol: v1` on one of them (its clients send a v1 header
//! first), in interleaved rounds; and superd's own CPU per connection
//! (from /proc/PID/schedstat, or /proc/PID/stat ticks where schedstat is
//! all zeros).
//!
//! Run with `cargo bench --bench proxy`. `SUPERD_BENCH_ROUNDS` (default 9)
//! rounds of `SUPERD_BENCH_SECS` (default 1) seconds per service and
//! concurrency, after a 0.5 s warm-up each; medians are reported.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const CONCURRENCY: [usize; 2] = [1, 8];

fn main() {
    let rounds: usize = env_or("SUPERD_BENCH_ROUNDS", 9);
    let secs: f64 = env_or("SUPERD_BENCH_SECS", 1.0);
    let dir = std::env::temp_dir().join(format!("superd-bench-proxy-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("bench dir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let tiny = build_tiny(&dir);
    let user = if nix::unistd::geteuid().is_root() {
        "\n    user: nobody"
    } else {
        ""
    };
    let conf = dir.join("conf");
    fs::create_dir_all(&conf).expect("conf dir");
    fs::write(
        conf.join("bench.yaml"),
        format!(
            "services:\n  plain:\n    listen: 127.0.0.1:0\n    exec: {t}{user}\n    max_connections: 512\n  proxied:\n    listen: 127.0.0.1:0\n    exec: {t}{user}\n    max_connections: 512\n    proxy_protocol: v1\n    proxy_from: 127.0.0.1\n",
            t = tiny.display()
        ),
    )
    .expect("config");
    let sd = Superd::start(&conf);
    let (plain, proxied) = (sd.port("plain"), sd.port("proxied"));
    let pid = sd.child.id();
    println!(
        "superd {} (pid {pid}), {rounds} rounds of {secs} s, interleaved",
        env!("CARGO_BIN_EXE_superd")
    );
    println!();
    println!(
        "| c | plain conn/s | proxied conn/s | ratio | plain superd µs/conn | proxied superd µs/conn |"
    );
    println!("|---|---|---|---|---|---|");
    for conc in CONCURRENCY {
        round(plain, false, conc, 0.5, pid);
        round(proxied, true, conc, 0.5, pid);
        let (mut p, mut q) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            // Alternate which goes first, so that a drift favours neither.
            if r % 2 == 0 {
                p.push(round(plain, false, conc, secs, pid));
                q.push(round(proxied, true, conc, secs, pid));
            } else {
                q.push(round(proxied, true, conc, secs, pid));
                p.push(round(plain, false, conc, secs, pid));
            }
        }
        let rate = |v: &[(f64, f64)]| median(v.iter().map(|x| x.0).collect());
        let cpu = |v: &[(f64, f64)]| median(v.iter().map(|x| x.1).collect());
        println!(
            "| {conc} | {:.0} | {:.0} | {:.3} | {:.1} | {:.1} |",
            rate(&p),
            rate(&q),
            rate(&q) / rate(&p),
            cpu(&p),
            cpu(&q)
        );
        let show = |v: &[(f64, f64)]| {
            v.iter()
                .map(|x| format!("{:.0}", x.0))
                .collect::<Vec<_>>()
                .join(" ")
        };
        eprintln!("c={conc} plain rounds:   {}", show(&p));
        eprintln!("c={conc} proxied rounds: {}", show(&q));
    }
    drop(sd);
    let _ = fs::remove_dir_all(&dir);
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// superd's CPU time so far, in microseconds.
fn cpu_us(pid: u32) -> f64 {
    let sched = fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap_or_default();
    let ns: u64 = sched
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if ns > 0 {
        return ns as f64 / 1000.0;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<u64> = rest.split(' ').map(|v| v.parse().unwrap_or(0)).collect();
    // utime and stime, fields 14 and 15 (11 and 12 after the state).
    (f[11] + f[12]) as f64 * 10_000.0
}

/// `conc` clients for `secs`, each connecting again as soon as the tiny
/// program's reply ends; a v1 header first on `proxy`. Returns the rate and
/// superd's CPU per connection.
fn round(port: u16, proxy: bool, conc: usize, secs: f64, pid: u32) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_us(pid);
    let start = Instant::now();
    let clients: Vec<_> = (0..conc)
        .map(|t| {
            let (stop, done) = (stop.clone(), done.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 256];
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                    if proxy {
                        let h = format!(
                            "PROXY TCP4 192.0.2.{} 127.0.0.1 {} 7000\r\n",
                            t + 1,
                            1024 + i % 60000
                        );
                        s.write_all(h.as_bytes()).expect("header");
                    }
                    let mut n = 0;
                    while let Ok(k @ 1..) = s.read(&mut buf[n..]) {
                        n += k;
                    }
                    assert!(n > 0, "no reply");
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    let n = done.load(Ordering::Relaxed) as f64;
    (n / start.elapsed().as_secs_f64(), (cpu_us(pid) - cpu0) / n)
}

fn build_tiny(dir: &Path) -> PathBuf {
    let out = dir.join("tiny");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/tiny.c");
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot build benches/tiny.c with cc");
    out
}

/// superd on `conf`, at the default log level, its log read (and thrown
/// away) by a thread so that it never blocks.
struct Superd {
    child: Child,
    ports: Vec<(String, u16)>,
}

impl Superd {
    fn start(conf: &Path) -> Superd {
        let mut child = Command::new(env!("CARGO_BIN_EXE_superd"))
            .arg(conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start superd");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut ports = Vec::new();
        for line in lines.by_ref() {
            let line = line.expect("log");
            if let Some(rest) = line.strip_prefix("INFO  listening service=") {
                let name = rest.split(' ').next().unwrap_or_default().to_owned();
                let port = rest.rsplit(':').next().and_then(|p| p.split(' ').next());
                ports.push((name, port.and_then(|p| p.parse().ok()).expect("port")));
            }
            if line.contains("ready services=") {
                break;
            }
            assert!(!line.contains("ERROR"), "{line}");
        }
        thread::spawn(move || for _ in lines {});
        Superd { child, ports }
    }

    fn port(&self, name: &str) -> u16 {
        self.ports
            .iter()
            .find(|(n, _)| n == name)
            .expect("service")
            .1
    }
}

/// Stopped when dropped, on a failed assertion too.
impl Drop for Superd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}
