//! A connection's whole tree ends with it: at `timeout` and at shutdown,
//! also what left the child's session (`setsid`) or was orphaned (see
//! "Process trees" in superd.8). Every process a test starts carries the
//! test's own directory in its argv: that marker finds them in /proc.

use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::*;

/// Leaves, all ignoring SIGTERM: one in a session of its own, one in a
/// session of its own whose parent has gone (an orphan that comes back to
/// superd), one in the child's group; then the child's own loop.
const TREE: &str = r#"#!/bin/sh
leaf='trap "" TERM; while :; do sleep 1; done'
setsid /bin/sh -c "$leaf" "$1-setsid" &
/bin/sh -c 'setsid /bin/sh -c "$0" "$1" &' "$leaf" "$1-orphan"
/bin/sh -c "$leaf" "$1-group" &
echo ready
exec /bin/sh -c 'while :; do sleep 1; done' "$1-main"
"#;

/// The processes whose argv holds `marker`, zombies included, with their
/// state.
fn marked(marker: &str) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(marker)
            && let Some(state) = proc_state(pid)
        {
            out.push((pid, state));
        }
    }
    out
}

/// Kills what a failed test left behind (only the marked processes).
struct Reaper(String);

impl Drop for Reaper {
    fn drop(&mut self) {
        for (pid, _) in marked(&self.0) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// The service's config file and the marker of its processes.
fn tree_service(dir: &TempDir, extra: &str) -> String {
    let script = dir.write("tree.sh", TREE);
    let marker = format!("{}/mark", dir.path().display());
    dir.write(
        "t.yaml",
        &format!(
            "services:\n  tree:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, {}, {marker}]\n    {extra}\n    {}\n",
            script.display(),
            user_line()
        ),
    );
    marker
}

/// Connects and waits until the tree is up (the four marked processes,
/// with the child itself).
fn start_tree(d: &Superd, marker: &str) -> std::net::TcpStream {
    let mut s = connect(&d.addr("tree"));
    assert_eq!(read_line_from(&mut s).trim(), "ready");
    d.wait_until("the whole tree running", || {
        ["-setsid", "-orphan", "-group", "-main"]
            .iter()
            .all(|tag| !marked(&format!("{marker}{tag}")).is_empty())
    });
    s
}

/// The mechanism the `ready` line names (`cgroup` or `subreaper`; checked
/// by `check_mechanism` once the tree is tested).
fn mechanism(d: &Superd) -> String {
    let ready = d.wait_for(&["ready services="]);
    field(&ready, "tree").unwrap_or_default()
}

fn check_mechanism(tree: &str, log: &str) {
    assert!(
        tree == "cgroup" || tree == "subreaper",
        "no tree= mechanism in the ready line: {log}"
    );
}

fn nothing_left(d: &Superd, marker: &str) {
    d.wait_until("nothing of the tree left", || marked(marker).is_empty());
}

/// The tree of a service with `timeout` is ended kill_grace after it
/// struck: all of it with cgroups; without, all but the orphan, which no
/// longer says which connection it came from and is ended at shutdown.
fn timeout_ends_the_whole_tree(mut d: Superd, marker: &str) -> String {
    let _reaper = Reaper(marker.to_string());
    let tree = mechanism(&d);
    let mut s = start_tree(&d, marker);
    let exit = d.wait_for(&["exit", "service=tree", "reason=timeout"]);
    assert!(exit.contains("signal=SIGTERM"), "{exit}");
    if tree == "cgroup" {
        nothing_left(&d, marker);
    } else {
        for tag in ["-setsid", "-group", "-main"] {
            nothing_left(&d, &format!("{marker}{tag}"));
        }
        assert!(!marked(&format!("{marker}-orphan")).is_empty());
    }
    d.wait_until("no zombie", || d.zombies() == 0);
    if tree == "cgroup" {
        // With the tree went the last copy of the connection.
        assert_eq!(read_once(&mut s, &mut [0u8; 1]).unwrap(), 0);
    }
    // Orphans that came back are never logged as a connection's exit.
    assert_eq!(
        d.lines_with(&["exit service=tree"]).len(),
        1,
        "{}",
        d.log_text()
    );
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
    let left = marked(marker);
    assert!(left.is_empty(), "left after shutdown: {left:?}");
    check_mechanism(&tree, &d.log_text());
    tree
}

fn shutdown_ends_the_whole_tree(mut d: Superd, marker: &str) -> String {
    let _reaper = Reaper(marker.to_string());
    let tree = mechanism(&d);
    let _s = start_tree(&d, marker);
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
    let log = d.log_text();
    assert!(log.contains("grace expired"), "{log}");
    // superd reaped them all before it exited: none is left, not even a
    // zombie for init to reap.
    let left = marked(marker);
    assert!(left.is_empty(), "left after shutdown: {left:?}\n{log}");
    check_mechanism(&tree, &log);
    tree
}

#[test]
fn timeout_ends_what_left_the_session_and_what_was_orphaned() {
    let dir = TempDir::new("tree-timeout");
    let marker = tree_service(&dir, "timeout: 2s\n    kill_grace: 1s");
    let p = dir.path().to_str().unwrap().to_string();
    let d = Superd::spawn(dir, &[&p, "-v"], &[]);
    let tree = timeout_ends_the_whole_tree(d, &marker);
    eprintln!("timeout test ran with tree={tree}");
}

#[test]
fn shutdown_ends_what_left_the_session_and_what_was_orphaned() {
    let dir = TempDir::new("tree-shutdown");
    let marker = tree_service(&dir, "");
    let p = dir.path().to_str().unwrap().to_string();
    let d = Superd::spawn(dir, &[&p, "-v", "--grace", "1s"], &[]);
    let tree = shutdown_ends_the_whole_tree(d, &marker);
    eprintln!("shutdown test ran with tree={tree}");
}

fn root_with_cgroup2() -> bool {
    if !is_root() {
        skip("needs root (cgroups and a mount namespace)");
        return false;
    }
    if !std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(" - cgroup2 ")
    {
        skip("no cgroup2 file system on this host");
        return false;
    }
    true
}

#[test]
fn timeout_without_cgroups_the_subreaper_ends_the_tree() {
    if !root_with_cgroup2() {
        return;
    }
    let dir = TempDir::new("tree-timeout-sr");
    let marker = tree_service(&dir, "timeout: 2s\n    kill_grace: 1s");
    let p = dir.path().to_str().unwrap().to_string();
    let d = Superd::spawn_without_cgroup2(dir, &[&p, "-v"]);
    assert_eq!(timeout_ends_the_whole_tree(d, &marker), "subreaper");
}

#[test]
fn shutdown_without_cgroups_the_subreaper_ends_the_tree() {
    if !root_with_cgroup2() {
        return;
    }
    let dir = TempDir::new("tree-shutdown-sr");
    let marker = tree_service(&dir, "");
    let p = dir.path().to_str().unwrap().to_string();
    let d = Superd::spawn_without_cgroup2(dir, &[&p, "-v", "--grace", "1s"]);
    assert_eq!(shutdown_ends_the_whole_tree(d, &marker), "subreaper");
}

/// As root on a host with a writable cgroup2, each connection gets a
/// cgroup: kept for the next child once empty, removed with superd's own
/// directory at exit. What a child leaves running after a normal exit gets SIGTERM,
/// then SIGKILL kill_grace later (as systemd's KillMode=control-group).
#[test]
fn cgroups_hold_each_connection_and_are_removed_after_it() {
    if !root_with_cgroup2() {
        return;
    }
    let dir = TempDir::new("tree-cg");
    let marker = format!("{}/mark", dir.path().display());
    dir.write(
        "t.yaml",
        &format!(
            "services:\n  quick:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'cat /proc/self/cgroup']\n    user: root\n  \
             daemonizes:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'setsid /bin/sh -c \"trap \\\"\\\" TERM; touch $0.on; while :; do sleep 1; done\" \"$0\" & while [ ! -e $0.on ]; do sleep 0.01; done; echo started', {marker}]\n    kill_grace: 1s\n    user: root\n"
        ),
    );
    let _reaper = Reaper(marker.clone());
    let p = dir.path().to_str().unwrap().to_string();
    let mut d = Superd::spawn(dir, &[&p, "-v"], &[]);
    let ready = d.wait_for(&["ready services="]);
    assert_eq!(field(&ready, "tree").as_deref(), Some("cgroup"), "{ready}");
    let base = field(&ready, "cgroup").unwrap();
    assert!(Path::new(&base).join("cgroup.kill").exists(), "{ready}");

    // The child sees a cgroup of its own under superd's, from its start;
    // once empty, the next child gets it again.
    let cgroup_of_a_child = || {
        let out = String::from_utf8(exchange(&d.addr("quick"), b"")).unwrap();
        out.lines()
            .find(|l| l.starts_with("0::"))
            .unwrap()
            .to_string()
    };
    let line = cgroup_of_a_child();
    let name = Path::new(&base).file_name().unwrap().to_str().unwrap();
    assert!(line.contains(&format!("/{name}/c")), "{line} {base}");
    d.wait_for(&["exit", "service=quick", "status=0"]);
    assert_eq!(cgroup_of_a_child(), line);
    d.wait_nth(2, &["exit", "service=quick", "status=0"]);
    let populated = || {
        std::fs::read_dir(&base)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter(|e| {
                std::fs::read_to_string(e.path().join("cgroup.events"))
                    .unwrap_or_default()
                    .contains("populated 1")
            })
            .count()
    };
    assert_eq!(populated(), 0);

    // A leftover after a normal exit: SIGTERM (ignored), then SIGKILL.
    let mut s = connect(&d.addr("daemonizes"));
    assert_eq!(read_line_from(&mut s).trim(), "started");
    d.wait_for(&["exit", "service=daemonizes", "status=0"]);
    d.wait_for(&["leftover", "service=daemonizes", "signal=SIGTERM"]);
    d.wait_for(&["leftover", "service=daemonizes", "signal=SIGKILL"]);
    d.wait_until("the leftover gone", || marked(&marker).is_empty());
    d.wait_until("its cgroup empty", || populated() == 0);
    d.wait_until("no zombie", || d.zombies() == 0);
    drop(s);

    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
    assert!(!Path::new(&base).exists(), "{base} left after exit");

    // What a killed superd left (a pid no process has now) is removed by
    // the next one in the same cgroup.
    let parent = Path::new(&base).parent().unwrap();
    let dead = (4_000_000..4_194_000)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let stale = parent.join(format!("superd.{dead}"));
    std::fs::create_dir_all(stale.join("c7")).unwrap();
    let dir = TempDir::new("tree-cg2");
    dir.write(
        "t.yaml",
        "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n",
    );
    let p = dir.path().to_str().unwrap().to_string();
    let d = Superd::spawn(dir, &[&p], &[]);
    d.wait_for(&["ready services=", "tree=cgroup"]);
    let gone = !stale.exists();
    let _ = std::fs::remove_dir(stale.join("c7"));
    let _ = std::fs::remove_dir(&stale);
    assert!(gone, "{} left", stale.display());
}

/// The descriptors superd holds open into `base` (its connection
/// cgroups'), by target; `None` where /proc/PID/fd is not readable.
fn cgroup_fds(pid: i32, base: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.starts_with(base))
        .collect();
    out.sort();
    Some(out)
}

/// superd keeps the descriptors of a fixed few connection cgroups open
/// (superd.8, PROCESS TREES): more children at once than those, or one
/// that leaves a process behind (its cgroup is not reused), leave superd
/// with the same descriptors as before once they are gone and the next
/// connection is served.
#[test]
fn connection_cgroups_leave_superd_with_the_descriptors_it_started_with() {
    if !root_with_cgroup2() {
        return;
    }
    let dir = TempDir::new("tree-cg-fds");
    let marker = format!("{}/mark", dir.path().display());
    dir.write(
        "t.yaml",
        &format!(
            "services:\n  quick:\n    listen: 127.0.0.1:0\n    exec: /bin/true\n    user: root\n  \
             hold:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    user: root\n  \
             leaves:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, 'setsid /bin/sh -c \"touch $0.on; while :; do sleep 1; done\" \"$0\" </dev/null >/dev/null 2>&1 & while [ ! -e $0.on ]; do sleep 0.01; done; echo started', {marker}]\n    kill_grace: 1s\n    user: root\n"
        ),
    );
    let _reaper = Reaper(marker.clone());
    let p = dir.path().to_str().unwrap().to_string();
    let d = Superd::spawn(dir, &[&p, "-v"], &[]);
    let ready = d.wait_for(&["ready services="]);
    assert_eq!(field(&ready, "tree").as_deref(), Some("cgroup"), "{ready}");
    let base = field(&ready, "cgroup").unwrap();
    if !fds_readable(d.pid(), "superd's descriptors") {
        return;
    }
    let quick = |n| {
        assert_eq!(exchange(&d.addr("quick"), b""), b"");
        d.wait_nth(n, &["exit", "service=quick", "status=0"]);
    };
    quick(1);
    let count = d.fd_count();
    let held = cgroup_fds(d.pid(), &base).unwrap();
    let settled = |what: &str| {
        d.wait_until(what, || {
            d.fd_count() == count && cgroup_fds(d.pid(), &base).as_ref() == Some(&held)
        });
    };

    // More children at once than cgroups with descriptors held.
    const LIVE: usize = 40;
    let conns: Vec<std::net::TcpStream> = (0..LIVE).map(|_| connect(&d.addr("hold"))).collect();
    d.wait_until("a child for each connection", || {
        d.lines_with(&["spawn service=hold"]).len() == LIVE
    });
    drop(conns);
    d.wait_nth(LIVE, &["exit", "service=hold"]);
    d.wait_until("no zombie", || d.zombies() == 0);
    quick(2);
    settled("the same descriptors after many children at once");

    // A child that leaves a process behind: its cgroup's descriptors go
    // with it, and the next connection's cgroup holds them instead.
    let mut s = connect(&d.addr("leaves"));
    assert_eq!(read_line_from(&mut s).trim(), "started");
    d.wait_for(&["leftover", "service=leaves", "signal=SIGTERM"]);
    d.wait_until("the leftover gone", || marked(&marker).is_empty());
    d.wait_until("no zombie", || d.zombies() == 0);
    drop(s);
    assert!(d.fd_count() <= count, "more descriptors than at the start");
    quick(3);
    d.wait_until("the same number of descriptors after a leftover", || {
        d.fd_count() == count
            && cgroup_fds(d.pid(), &base).is_some_and(|now| now.len() == held.len())
    });
}
