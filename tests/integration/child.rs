//! superd(8), THE CHILD, from inside a child: the probe reports what a legacy inetd
//! program would check, through the real superd.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;

use crate::harness::*;

fn probe_service(extra: &str) -> Superd {
    Superd::start(&format!(
        "services:\n  probe:\n    listen: 127.0.0.1:0\n    exec: {}\n    {}\n{}",
        probe_bin().display(),
        user_line(),
        extra
    ))
}

fn probe_report(d: &Superd) -> Vec<(String, String)> {
    let out = exchange(&d.addr("probe"), b"");
    report(&out)
}

#[test]
fn fds_0_1_2_are_one_blocking_socket_and_nothing_else_is_open() {
    let d = probe_service("");
    let r = probe_report(&d);
    assert_eq!(get(&r, "fds"), "0,1,2");
    for fd in 0..3 {
        assert_eq!(
            get(&r, &format!("nonblock.{fd}")),
            "0",
            "fd {fd} non-blocking"
        );
        assert_eq!(get(&r, &format!("kind.{fd}")), "sock");
    }
    assert_eq!(get(&r, "same_socket_012"), "1");
    // getpeername(0) names the test's own end.
    assert!(get(&r, "peer").starts_with("127.0.0.1:"), "{r:?}");
}

#[test]
fn signals_are_default_and_unblocked_and_the_child_leads_its_session() {
    let d = probe_service("");
    let r = probe_report(&d);
    assert_eq!(get(&r, "sigblk"), "0000000000000000");
    assert_eq!(
        get(&r, "sigign"),
        "0000000000000000",
        "SIGPIPE must not be ignored"
    );
    assert_eq!(get(&r, "sigcgt"), "0000000000000000");
    assert_eq!(get(&r, "sid"), get(&r, "pid"));
    assert_eq!(get(&r, "pgid"), get(&r, "pid"));
}

#[test]
fn environment_is_clean_with_ucspi_variables() {
    let dir = TempDir::new("env2");
    dir.write(
        "t.yaml",
        &format!(
            "services:\n  probe:\n    listen: 127.0.0.1:0\n    exec: {}\n    {}\n    env:\n      GREETING: hi\n      PATH: /custom\n",
            probe_bin().display(),
            user_line()
        ),
    );
    let p = dir.path().to_str().unwrap().to_string();
    let d = Superd::spawn(dir, &[&p], &[("SUPERD_LEAK_MARKER", "leaked")]);
    let addr = d.addr("probe");
    let mut s = connect(&addr);
    let local = s.local_addr().unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let r = report(&out);
    let env: Vec<(&str, &str)> = r
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("env.").map(|k| (k, v.as_str())))
        .collect();
    let names: Vec<&str> = env.iter().map(|(k, _)| *k).collect();
    assert!(
        !names.contains(&"SUPERD_LEAK_MARKER"),
        "superd's env leaked: {names:?}"
    );
    let e = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    assert_eq!(e("PATH"), Some("/custom"), "env overrides the default");
    assert_eq!(e("GREETING"), Some("hi"));
    assert_eq!(e("SUPERD_SERVICE"), Some("probe"));
    assert_eq!(e("PROTO"), Some("TCP"));
    assert_eq!(e("TCPREMOTEIP"), Some("127.0.0.1"));
    assert_eq!(e("TCPREMOTEPORT"), Some(local.port().to_string().as_str()));
    assert_eq!(e("REMOTE_ADDR"), Some("127.0.0.1"));
    assert_eq!(e("REMOTE_PORT"), Some(local.port().to_string().as_str()));
    assert_eq!(e("TCPLOCALIP"), Some("127.0.0.1"));
    assert_eq!(e("TCPLOCALPORT"), Some(addr.rsplit(':').next().unwrap()));
    for k in ["HOME", "USER", "LOGNAME", "SHELL"] {
        assert!(e(k).is_some(), "{k} missing: {names:?}");
    }
    let allowed = [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "SUPERD_SERVICE",
        "PROTO",
        "TCPREMOTEIP",
        "TCPREMOTEPORT",
        "TCPLOCALIP",
        "TCPLOCALPORT",
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "GREETING",
    ];
    for n in &names {
        assert!(allowed.contains(n), "unexpected variable {n}");
    }
}

#[test]
fn rlimits_umask_cwd_and_nice_are_applied() {
    let d = probe_service(
        "    cwd: /tmp\n    umask: \"027\"\n    nice: 5\n    rlimits:\n      core: 0\n      fsize: \"1M:2M\"\n",
    );
    let r = probe_report(&d);
    let nofile = get(&r, "rlimit.nofile");
    assert!(
        nofile.starts_with("1024:"),
        "soft nofile must default to 1024: {nofile}"
    );
    assert_eq!(get(&r, "rlimit.core"), "0:0");
    assert_eq!(get(&r, "rlimit.fsize"), "1048576:2097152");
    assert_eq!(get(&r, "umask"), "0027");
    assert_eq!(get(&r, "cwd"), "/tmp");
    assert_eq!(get(&r, "nice"), "5");
}

/// `nofile: unlimited` is the most the child can have: fs.nr_open, or
/// superd's own hard limit without CAP_SYS_RESOURCE. The child starts
/// instead of failing at its rlimit step.
#[test]
fn nofile_unlimited_is_the_most_the_child_can_have() {
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap();
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let max = if cap_eff & (1 << 24) != 0 {
        nr_open
    } else {
        nr_open.min(hard)
    };
    let d = probe_service("    rlimits: {nofile: unlimited}\n");
    let r = probe_report(&d);
    assert_eq!(get(&r, "rlimit.nofile"), format!("{max}:{max}"));
}

#[test]
fn default_cwd_is_root_and_umask_022() {
    let d = probe_service("");
    let r = probe_report(&d);
    assert_eq!(get(&r, "cwd"), "/");
    assert_eq!(get(&r, "umask"), "0022");
}

#[test]
fn runs_as_the_configured_user_and_groups() {
    if !is_root() {
        skip("needs root to change uid/gid/groups");
        return;
    }
    // A copy of the probe that `nobody` can reach, whatever the checkout's
    // permissions are.
    let dir = TempDir::new("uid");
    let probe = dir.path().join("probe");
    std::fs::copy(probe_bin(), &probe).unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = TempDir::new("uidconf");
    conf.write(
        "t.yaml",
        &format!(
            "services:\n  nob:\n    listen: 127.0.0.1:0\n    exec: {p}\n    user: nobody\n    groups: []\n  grp:\n    listen: 127.0.0.1:0\n    exec: {p}\n    user: nobody\n    group: daemon\n    groups: [daemon, \"100\"]\n",
            p = probe.display()
        ),
    );
    let path = conf.path().to_str().unwrap().to_string();
    let d = Superd::spawn(conf, &[&path], &[]);
    let r = report(&exchange(&d.addr("nob"), b""));
    assert_eq!(get(&r, "status.uid"), "65534 65534 65534 65534");
    assert_eq!(get(&r, "groups"), "");
    let nogroup = get(&r, "gid").to_string();
    assert_eq!(
        get(&r, "status.gid"),
        format!("{nogroup} {nogroup} {nogroup} {nogroup}")
    );
    let r = report(&exchange(&d.addr("grp"), b""));
    assert_eq!(get(&r, "uid"), "65534");
    assert_eq!(get(&r, "gid"), "1", "group: daemon is gid 1");
    assert_eq!(get(&r, "groups"), "1,100");
    let env_user = r
        .iter()
        .find(|(k, _)| k == "env.USER")
        .map(|(_, v)| v.as_str());
    assert_eq!(env_user, Some("nobody"));
    drop(dir);
}

#[test]
fn stderr_modes_socket_log_and_null() {
    let p = probe_bin();
    let d = Superd::start(&format!(
        "services:\n  sock:\n    listen: 127.0.0.1:0\n    exec: [{p}, stderr]\n    {u}\n  log:\n    listen: 127.0.0.1:0\n    exec: [{p}, stderr]\n    stderr: log\n    {u}\n  devnull:\n    listen: 127.0.0.1:0\n    exec: [{p}, stderr]\n    stderr: null\n    {u}\n",
        p = p.display(),
        u = user_line()
    ));
    let out = String::from_utf8(exchange(&d.addr("sock"), b"")).unwrap();
    assert!(out.starts_with("probe-stderr: hello\n"), "{out}");
    let out = String::from_utf8(exchange(&d.addr("log"), b"")).unwrap();
    assert!(!out.contains("probe-stderr"), "{out}");
    assert!(out.contains("kind.2=fifo"), "{out}");
    let line = d.wait_for(&["stderr", "service=log", "probe-stderr: hello"]);
    assert!(field(&line, "pid").is_some(), "{line}");
    d.wait_for(&["stderr", "service=log", "second line"]);
    let out = String::from_utf8(exchange(&d.addr("devnull"), b"")).unwrap();
    assert!(!out.contains("probe-stderr"), "{out}");
    assert!(out.contains("kind.2=chr"), "{out}");
}

/// `stderr: log` takes a line of up to 4096 bytes whole, also when its
/// newline comes in a later write: no empty line, no cut.
#[test]
fn a_stderr_line_at_its_limit_is_one_record() {
    let d = Superd::start(&format!(
        "services:\n  long:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'printf %04096d 0 >&2; sleep 0.1; printf \"\\nafter\\n\" >&2']\n    stderr: log\n    {}\n",
        user_line()
    ));
    assert_eq!(exchange(&d.addr("long"), b""), b"");
    d.wait_for(&["exit", "service=long"]);
    let lines = d.lines_with(&["stderr", "service=long"]);
    let values: Vec<String> = lines
        .iter()
        .map(|l| l.split_once(" line=").unwrap().1.to_owned())
        .collect();
    assert_eq!(values.len(), 2, "{values:?}");
    assert_eq!(values[0], "0".repeat(4096));
    assert_eq!(values[1], "after");
}

/// A long line is cut at 4096 bytes wherever it falls in the pipe's
/// reads (here after a short line, in one write), and never inside a
/// UTF-8 character.
#[test]
fn long_stderr_lines_are_cut_alike_and_between_characters() {
    let d = Superd::start(&format!(
        "services:\n  long:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'printf \"x\\n%05000d\\n\" 0 >&2; for i in $(seq 2000); do printf \"\\346\\227\\245\"; done >&2; printf \"\\nend\\n\" >&2']\n    stderr: log\n    {}\n",
        user_line()
    ));
    assert_eq!(exchange(&d.addr("long"), b""), b"");
    d.wait_for(&["stderr", "service=long", "line=end"]);
    let values: Vec<String> = d
        .lines_with(&["stderr", "service=long"])
        .iter()
        .map(|l| l.split_once(" line=").unwrap().1.to_owned())
        .collect();
    let ri = "\u{65e5}";
    // 4096 is not a multiple of 3: the piece stops before the character
    // that would straddle it.
    assert_eq!(
        values,
        [
            "x".to_string(),
            format!("{} cut=true", "0".repeat(4096)),
            "0".repeat(904),
            format!("{} cut=true", ri.repeat(1365)),
            ri.repeat(635),
            "end".to_string(),
        ]
    );
}

/// A line longer than 4096 bytes is logged in 4096-byte pieces, each but
/// the last marked `cut=true`, so a reader can tell them from lines.
#[test]
fn a_long_stderr_line_is_logged_in_marked_pieces() {
    let d = Superd::start(&format!(
        "services:\n  long:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'printf \"%010000d\\nshort\\n\" 0 >&2']\n    stderr: log\n    {}\n",
        user_line()
    ));
    assert_eq!(exchange(&d.addr("long"), b""), b"");
    d.wait_for(&["exit", "service=long"]);
    d.wait_for(&["stderr", "service=long", "line=short"]);
    let values: Vec<String> = d
        .lines_with(&["stderr", "service=long"])
        .iter()
        .map(|l| l.split_once(" line=").unwrap().1.to_owned())
        .collect();
    let zeros = |n: usize| "0".repeat(n);
    assert_eq!(
        values,
        [
            format!("{} cut=true", zeros(4096)),
            format!("{} cut=true", zeros(4096)),
            zeros(10000 - 2 * 4096),
            "short".to_string()
        ]
    );
}

#[test]
fn exec_failure_is_logged_and_the_service_keeps_serving() {
    let dir = TempDir::new("noexec");
    let prog = dir.write("prog", "#!/bin/sh\necho ok\n");
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = Superd::start(&format!(
        "services:\n  flaky:\n    listen: 127.0.0.1:0\n    exec: {}\n    {}\n",
        prog.display(),
        user_line()
    ));
    let addr = d.addr("flaky");
    assert_eq!(exchange(&addr, b""), b"ok\n");
    // The program disappears after the config loaded: exec fails at run time.
    std::fs::remove_file(&prog).unwrap();
    assert_eq!(exchange(&addr, b""), b"", "connection closed");
    let line = d.wait_for(&["exec failed", "service=flaky"]);
    assert!(line.starts_with("ERROR"), "{line}");
    assert_eq!(field(&line, "step").as_deref(), Some("exec"));
    assert_eq!(
        field(&line, "error").as_deref(),
        Some("No such file or directory")
    );
    d.wait_for(&["exit", "service=flaky", "status=127"]);
    // And it serves again once the program is back.
    std::fs::write(&prog, "#!/bin/sh\necho back\n").unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(exchange(&addr, b""), b"back\n");
}

#[test]
fn shutdown_terminates_children_and_exits_zero() {
    let d = Superd::start(&format!(
        "services:\n  sleeper:\n    listen: 127.0.0.1:0\n    exec: [/bin/sleep, \"1000\"]\n    {}\n",
        user_line()
    ));
    let s = connect(&d.addr("sleeper"));
    let pid: i32 = {
        let line = d.wait_for(&["spawn", "service=sleeper"]);
        field(&line, "pid").unwrap().parse().unwrap()
    };
    let status = d.stop();
    assert_eq!(status.code(), Some(0));
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_err() || proc_state(pid) == Some('Z'),
        "child {pid} survived shutdown"
    );
    drop(s);
}

#[test]
fn grace_then_sigkill_for_a_child_that_ignores_sigterm() {
    let dir = TempDir::new("grace");
    dir.write(
        "t.yaml",
        &format!(
            "services:\n  stubborn:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'trap \"\" TERM; echo ready; while :; do sleep 1; done']\n    {}\n",
            user_line()
        ),
    );
    let p = dir.path().to_str().unwrap().to_string();
    let mut d = Superd::spawn(dir, &[&p, "-v", "--grace", "1s"], &[]);
    let mut s = connect(&d.addr("stubborn"));
    let mut buf = [0u8; 6];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    let start = std::time::Instant::now();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let status = d.wait_exit();
    assert_eq!(status.code(), Some(0));
    // It waited for the grace period, then killed what was left.
    assert!(start.elapsed() >= std::time::Duration::from_millis(900));
    assert!(d.log_text().contains("grace expired"), "{}", d.log_text());
    assert!(d.log_text().contains("signal=SIGKILL"), "{}", d.log_text());
}

/// Shutdown waits for, and then kills, a child's whole process group, not
/// only the child: here the child ends at SIGTERM and what it started
/// ignores it.
#[test]
fn shutdown_kills_what_outlives_a_child_in_its_group() {
    let dir = TempDir::new("group");
    dir.write(
        "t.yaml",
        &format!(
            "services:\n  forked:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'sh -c \"trap \\\"\\\" TERM; echo $$; exec sleep 1000\" & wait']\n    {}\n",
            user_line()
        ),
    );
    let p = dir.path().to_str().unwrap().to_string();
    let mut d = Superd::spawn(dir, &[&p, "--grace", "1s"], &[]);
    let mut s = connect(&d.addr("forked"));
    let stubborn: i32 = read_line_from(&mut s).trim().parse().unwrap();
    let start = std::time::Instant::now();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let status = d.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert!(start.elapsed() >= std::time::Duration::from_millis(900));
    let log = d.log_text();
    assert!(
        log.contains("grace expired children=0 groups=1 signal=SIGKILL"),
        "{log}"
    );
    // SIGKILL is sent before superd exits; the process may still be on its
    // way out for a moment.
    d.wait_until("the group's last process gone", || {
        std::fs::metadata(format!("/proc/{stubborn}")).is_err() || proc_state(stubborn) == Some('Z')
    });
    assert_eq!(read_once(&mut s, &mut [0u8; 1]).unwrap(), 0);
}

#[test]
fn a_child_flooding_its_stderr_log_does_not_hold_the_loop() {
    let d = Superd::start(&format!(
        "services:\n  noisy:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'echo started; exec yes noise >&2']\n    stderr: log\n    timeout: 20s\n    {}\n  calm:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
        user_line()
    ));
    let calm = d.addr("calm");
    let mut noisy = connect(&d.addr("noisy"));
    let mut buf = [0u8; 8];
    noisy.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"started\n");
    d.wait_nth(100, &["stderr", "service=noisy", "noise"]);
    // While the child still floods its pipe, the other service answers.
    for i in 0..10 {
        let msg = format!("calm {i}\n");
        assert_eq!(exchange(&calm, msg.as_bytes()), msg.as_bytes());
    }
    assert!(
        d.lines_with(&["exit", "service=noisy"]).is_empty(),
        "the flood had already ended"
    );
}

/// The CPUs in `/proc/PID/status` form (`Cpus_allowed_list`).
fn cpus_allowed(status: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_owned())
}

/// A program gets superd's CPUs, even when superd started it pinned to
/// the one it runs on (one child at a time: superd.8, THE CHILD).
#[test]
fn the_program_runs_on_superds_cpus_not_on_the_one_it_was_started_on() {
    let ours = cpus_allowed(&std::fs::read_to_string("/proc/self/status").unwrap())
        .expect("Cpus_allowed_list");
    if !ours.contains([',', '-']) {
        skip(&format!("one CPU allowed ({ours}): superd never pins"));
        return;
    }
    let d = Superd::start(&format!(
        "services:\n  cpus:\n    listen: 127.0.0.1:0\n    exec: [/bin/grep, Cpus_allowed_list, /proc/self/status]\n    {}\n",
        user_line()
    ));
    let addr = d.addr("cpus");
    let mut pinned_seen = false;
    for _ in 0..20 {
        let out = String::from_utf8(exchange(&addr, b"")).unwrap();
        assert_eq!(cpus_allowed(&out).as_deref(), Some(ours.as_str()), "{out}");
        let superd = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
        pinned_seen |= cpus_allowed(&superd).is_some_and(|c| c != ours);
    }
    // One connection at a time: superd ran on one CPU for them.
    assert!(pinned_seen, "superd was never on one CPU");
}
