//! Reaping by pidfd (superd.8, LOGS: `ready` ... `reap=`): each child is
//! reaped through its own pidfd, none is left a zombie, and no pidfd
//! outlives its child.

use std::fs;
use std::io::Read;
use std::net::TcpStream;

use crate::harness::*;

/// What superd's open descriptors are, by kind: pidfds, and the others
/// apart from connection cgroups' (which a pool keeps open for reuse).
/// `None` where they are not this test's to read (superd is non-dumpable:
/// only root may).
fn fds_of(pid: i32) -> Option<(usize, usize)> {
    let mut pidfds = 0;
    let mut others = 0;
    for e in fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let Ok(target) = fs::read_link(e.path()) else {
            continue;
        };
        let t = target.to_string_lossy();
        if t == "anon_inode:[pidfd]" {
            pidfds += 1;
        } else if !t.starts_with("/sys/fs/cgroup") {
            others += 1;
        }
    }
    Some((pidfds, others))
}

/// Whether this kernel has waitid(P_PIDFD) (Linux 5.4).
fn kernel_has_pidfd_waitid() -> bool {
    let rel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut v = rel
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    (major, minor) >= (5, 4)
}

#[test]
fn ready_line_says_how_children_are_reaped() {
    let d = Superd::start(&format!(
        "services:\n  t:\n    listen: 127.0.0.1:0\n    exec: [/bin/echo, hi]\n    {}\n",
        user_line()
    ));
    let ready = d.wait_for(&["ready services="]);
    let reap = field(&ready, "reap");
    if kernel_has_pidfd_waitid() {
        assert_eq!(reap.as_deref(), Some("pidfd"), "{ready}");
    } else {
        assert_eq!(reap.as_deref(), Some("waitpid"), "{ready}");
    }
}

#[test]
fn two_thousand_connections_leave_no_zombie_and_no_pidfd() {
    const N: usize = 2000;
    const THREADS: usize = 8;
    let d = Superd::start(&format!(
        "services:\n  t:\n    listen: 127.0.0.1:0\n    exec: [/bin/echo, hi]\n    {}\n",
        user_line()
    ));
    if !fds_readable(d.pid(), "superd's pidfds and fd count") {
        return;
    }
    let addr = d.addr("t");
    // One connection first, so lazily opened descriptors are in the
    // baseline.
    assert_eq!(exchange(&addr, b""), b"hi\n");
    d.wait_nth(1, &["exit", "service=t"]);
    let Some((pidfds, base)) = fds_of(d.pid()) else {
        return skip("superd's pidfds and fd count: its /proc/PID/fd is root's to read");
    };
    assert_eq!(pidfds, 0, "a pidfd outlived its child");
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                for _ in 0..N / THREADS {
                    let mut s = connect(&addr);
                    let mut out = Vec::new();
                    s.read_to_end(&mut out).unwrap();
                    assert_eq!(out, b"hi\n");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    d.wait_nth(N + 1, &["exit", "service=t"]);
    d.wait_until("no zombies", || d.zombies() == 0);
    d.wait_until("no pidfd left, fds at baseline", || {
        fds_of(d.pid()) == Some((0, base))
    });
}

#[test]
fn a_live_child_holds_one_pidfd_until_it_is_reaped() {
    const LIVE: usize = 50;
    let d = Superd::start(&format!(
        "services:\n  cat:\n    listen: 127.0.0.1:0\n    exec: /bin/cat\n    {}\n",
        user_line()
    ));
    if !kernel_has_pidfd_waitid() {
        return skip("no waitid(P_PIDFD) before Linux 5.4");
    }
    if !fds_readable(d.pid(), "superd's pidfds") {
        return;
    }
    let addr = d.addr("cat");
    let Some((_, base)) = fds_of(d.pid()) else {
        return skip("superd's pidfds: its /proc/PID/fd is root's to read");
    };
    let conns: Vec<TcpStream> = (0..LIVE).map(|_| connect(&addr)).collect();
    d.wait_until("a pidfd for each live child", || {
        fds_of(d.pid()).is_some_and(|f| f.0 == LIVE)
    });
    drop(conns);
    d.wait_nth(LIVE, &["exit", "service=cat"]);
    d.wait_until("no zombies", || d.zombies() == 0);
    d.wait_until("no pidfd left, fds at baseline", || {
        fds_of(d.pid()) == Some((0, base))
    });
    // Every exit line came from its own child, each once.
    let mut pids: Vec<String> = d
        .lines_with(&["exit", "service=cat"])
        .iter()
        .filter_map(|l| field(l, "pid"))
        .collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), LIVE);
}

/// A child that leaves a zombie of its own (a program it started ended,
/// and the child never waited for it) hands it to superd at its exit:
/// superd reaps it, though no child of its own is left to end and, with
/// pidfds and cgroups, it reads no SIGCHLD.
#[test]
fn a_zombie_a_child_leaves_behind_is_reaped() {
    let d = Superd::start(&format!(
        "services:\n  z:\n    listen: 127.0.0.1:0\n    exec: [/bin/sh, -c, '/bin/true & exec /bin/sleep 0.3']\n    {}\n",
        user_line()
    ));
    d.wait_for(&["ready services="]);
    // Past the sweeps superd owes at start for what an earlier image may
    // have left (see event_loop/reap.rs), so only the child's exit can
    // bring one.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(exchange(&d.addr("z"), b""), b"");
    d.wait_for(&["exit", "service=z", "status=0"]);
    d.wait_until("no zombies", || d.zombies() == 0);
}
