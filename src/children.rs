//! The pid table: every child superd started, reaping, the `exit` log line,
//! and signalling whole process groups (each child is a session leader, so
//! its pid is its process group).

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use log::debug;
use mio::Token;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::limits::SourceKey;
use crate::listener::Peer;
use crate::service::SuccessStatus;
use crate::tree::{ConnCgroup, Stray};

/// One running child.
#[derive(Debug)]
pub struct Child {
    /// The service's id in the event loop (stable across reloads).
    pub service_id: u64,
    pub service: String,
    /// `None` in wait mode.
    pub peer: Option<Peer>,
    /// The per-source slot this child holds, released when it is reaped.
    pub source: Option<SourceKey>,
    pub started: Instant,
    /// Unique per spawn: a timer names the child by pid and serial, so a
    /// reused pid is never mistaken for an earlier child.
    pub serial: u64,
    /// wait mode: the listener to hand back to the loop at exit.
    pub wait_listener: Option<Token>,
    /// Set once `timeout` fired: the exit line says `reason=timeout`.
    pub timed_out: bool,
    /// Its group was sent SIGKILL (`kill_grace` after the timeout) while
    /// it still ran: nothing of it is left to kill later.
    pub killed: bool,
    /// The child reported a failure before exec.
    pub exec_failed: bool,
    /// The token of its report pipe while it is not yet past exec.
    pub exec: Option<Token>,
    /// Its service's `success_status` when it started.
    pub success: SuccessStatus,
    /// The cgroup it started in (see crate::tree).
    pub cgroup: Option<ConnCgroup>,
    /// Without a cgroup: what descended from it when `timeout` struck,
    /// killed with it kill_grace later.
    pub strays: Vec<Stray>,
    /// Behind a proxy (`peer` is the client): the proxy's address.
    pub proxy: Option<std::net::SocketAddr>,
    /// Its pidfd and the loop's token for it, where the kernel gives one
    /// (see [`Children::reap_pidfd`]); closed when it is reaped.
    pub pidfd: Option<(OwnedFd, Token)>,
}

/// How a reaped child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Status(i32),
    Signal(Signal),
}

/// Every live child, by pid.
#[derive(Debug, Default)]
pub struct Children {
    map: HashMap<i32, Child>,
}

impl Children {
    pub fn insert(&mut self, pid: Pid, child: Child) {
        self.map.insert(pid.as_raw(), child);
    }

    pub fn get(&self, pid: i32) -> Option<&Child> {
        self.map.get(&pid)
    }

    pub fn get_mut(&mut self, pid: i32) -> Option<&mut Child> {
        self.map.get_mut(&pid)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Child> {
        self.map.values_mut()
    }

    pub fn iter(&self) -> impl Iterator<Item = (i32, &Child)> {
        self.map.iter().map(|(p, c)| (*p, c))
    }

    /// Reaps every child that has ended, without blocking; returns each
    /// with how it ended. Pids that are not in the table are orphans that
    /// came back to superd, the subreaper (see crate::tree): reaped, with
    /// a debug line.
    pub fn reap(&mut self) -> Vec<(i32, Child, Ended)> {
        let mut out = Vec::new();
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => match self.map.remove(&pid.as_raw()) {
                    Some(c) => out.push((pid.as_raw(), c, Ended::Status(code))),
                    None => debug!("orphan reaped pid={pid} status={code}"),
                },
                Ok(WaitStatus::Signaled(pid, sig, _)) => match self.map.remove(&pid.as_raw()) {
                    Some(c) => out.push((pid.as_raw(), c, Ended::Signal(sig))),
                    None => debug!("orphan reaped pid={pid} signal={}", sig.as_str()),
                },
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        out
    }

    /// Reaps the child `pid` through its pidfd if it has ended: that
    /// child alone, O(1) whatever the number of others (waitpid(-1) makes
    /// the kernel look at every child). `None` while it runs.
    pub fn reap_pidfd(&mut self, pid: i32) -> Option<(i32, Child, Ended)> {
        let (fd, _) = self.map.get(&pid)?.pidfd.as_ref()?;
        let ended = match crate::sys::pidfd_reap(fd.as_fd()) {
            Ok(Some(crate::sys::PidfdExit::Exited(code))) => Ended::Status(code),
            Ok(Some(crate::sys::PidfdExit::Killed(sig))) => {
                Ended::Signal(Signal::try_from(sig).unwrap_or(Signal::SIGKILL))
            }
            // Err: ECHILD, reaped already, which cannot be: only this and
            // the sweep reap it, and either takes it out of the table.
            Ok(None) | Err(_) => return None,
        };
        let child = self.map.remove(&pid)?;
        Some((pid, child, ended))
    }

    /// Every child with a pidfd that has ended (shutdown, which does not
    /// wait for their events).
    pub fn reap_all_pidfds(&mut self) -> Vec<(i32, Child, Ended)> {
        let pids: Vec<i32> = self
            .map
            .iter()
            .filter(|(_, c)| c.pidfd.is_some())
            .map(|(p, _)| *p)
            .collect();
        pids.into_iter()
            .filter_map(|p| self.reap_pidfd(p))
            .collect()
    }

    /// Sends `sig` to every child's process group.
    pub fn signal_all(&self, sig: Signal) {
        for (pid, c) in &self.map {
            signal_child(*pid, c, sig);
        }
    }
}

/// Signals the process group of the child `pid` (a child in the table is
/// not reaped yet, so its pid, and with it the group's number, is still
/// its own); a child that died before its `setsid` gets it through its
/// pidfd, or its pid without one.
pub fn signal_child(pid: i32, child: &Child, sig: Signal) {
    if kill(Pid::from_raw(-pid), sig).is_ok() {
        return;
    }
    match &child.pidfd {
        Some((fd, _)) => {
            let _ = crate::sys::pidfd_send_signal(fd.as_fd(), sig as i32);
        }
        None => {
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }
}

/// Whether the process group `pgid` still has a member. A child's group
/// outlives the child when something it started is still running.
pub fn group_alive(pgid: i32) -> bool {
    // Signal 0 checks without sending; EPERM still means someone is there.
    !matches!(kill(Pid::from_raw(-pgid), None), Err(Errno::ESRCH))
}

/// Clock ticks since boot, as /proc/PID/stat counts a process's start.
pub fn boot_ticks() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
        .unwrap_or_default();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |v| v.max(1) as u64);
    now.as_secs() * hz + u64::from(now.subsec_nanos()) * hz / 1_000_000_000
}

/// Whether the process group `pgid` is still the group of a child of
/// ours, after that child (its leader) is gone: a member of it, in the
/// session the child made, that started by `ticks` (see [`boot_ticks`]).
/// A group number freed and taken again by someone else's new group
/// leader only has members that started later, and is never signalled.
fn group_is_still(pgid: i32, ticks: u64) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .as_encoded_bytes()
                .iter()
                .all(u8::is_ascii_digit)
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .any(|stat| {
            // Fields after the command (which may hold spaces and parens):
            // state ppid pgrp session ... starttime is the 20th of them.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
            num(2) == Some(pgid.into())
                && num(3) == Some(pgid.into())
                && num(19).is_some_and(|start| start as u64 <= ticks)
        })
}

/// SIGKILLs what is left of a child's process group after the child (its
/// leader) is gone, if it is still that group (see [`group_is_still`]);
/// whether it was signalled. Never falls back to a pid: the child's is
/// free for anyone now.
pub fn kill_leftover_group(pgid: i32, started_by: u64) -> bool {
    group_is_still(pgid, started_by) && kill(Pid::from_raw(-pgid), Signal::SIGKILL).is_ok()
}

/// Formats a duration the way the logs show it: seconds, 3 decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// How a connection's child ended, as the metrics count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Status 0, or a status or signal its service's `success_status`
    /// lists.
    Ok,
    /// Another status, or the program never started (exec failed).
    Error,
    /// Killed by a signal `success_status` does not list.
    Signal,
    /// Ended after its `timeout` fired, however it ended.
    Timeout,
}

impl Outcome {
    /// In discriminant order: the metrics index their counters by it.
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Signal,
        Outcome::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Signal => "signal",
            Outcome::Timeout => "timeout",
        }
    }

    /// Judges how `child` ended.
    pub fn of(child: &Child, ended: Ended) -> Outcome {
        if child.timed_out {
            return Outcome::Timeout;
        }
        if child.exec_failed {
            return Outcome::Error;
        }
        match ended {
            Ended::Status(code) if child.success.has_status(code) => Outcome::Ok,
            Ended::Status(_) => Outcome::Error,
            Ended::Signal(sig) if child.success.has_signal(sig) => Outcome::Ok,
            Ended::Signal(_) => Outcome::Signal,
        }
    }
}

/// Writes the `exit` line (superd(8), LOGS): info for an exit its
/// service's `success_status` calls normal (status 0 by default), warn
/// otherwise; returns the outcome.
pub fn log_exit(pid: i32, child: &Child, ended: Ended, now: Instant) -> Outcome {
    let mut peer = child.peer.map(|p| format!(" peer={p}")).unwrap_or_default();
    if let Some(p) = child.proxy {
        peer.push_str(&format!(" proxy={p}"));
    }
    let duration = secs(now.saturating_duration_since(child.started));
    let reason = if child.timed_out {
        " reason=timeout"
    } else if child.exec_failed {
        " reason=exec_failed"
    } else {
        ""
    };
    let how = match ended {
        Ended::Status(code) => format!("status={code}"),
        Ended::Signal(sig) => format!("signal={}", sig.as_str()),
    };
    let outcome = Outcome::of(child, ended);
    let level = if outcome == Outcome::Ok {
        log::Level::Info
    } else {
        log::Level::Warn
    };
    log::log!(
        level,
        "exit service={} pid={pid}{peer} {how} duration={duration}{reason}",
        child.service
    );
    outcome
}
