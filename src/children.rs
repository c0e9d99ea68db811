//! The pid table: one record per child superd started (its service, its
//! connection, its exec report, its pidfd), reaping, the `exit` log line,
//! and signalling whole process groups (each child is a session leader, so
//! its pid is its process group).

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::Token;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use crate::limits::SourceKey;
use crate::listener::Peer;
use crate::service::{ServiceId, SuccessStatus};
use crate::spawn::Pending;
use crate::tree::{self, ConnCgroup, Stray};

/// A child's process id, which is its process group's number too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid(pub i32);

impl Pid {
    fn nix(self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.0)
    }

    /// The process group this pid leads, for kill(2).
    fn group(self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(-self.0)
    }
}

impl From<nix::unistd::Pid> for Pid {
    fn from(p: nix::unistd::Pid) -> Pid {
        Pid(p.as_raw())
    }
}

impl std::fmt::Display for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A child on its way to exec (see `spawn::Pending`): its report, with
/// its wake pipe watched under `token` where it has one, and superd's
/// copy of a nowait connection, closed once the outcome is known (after
/// the `exec failed` line, if any).
#[derive(Debug)]
pub struct ExecReport {
    pub pending: Pending,
    pub token: Option<Token>,
    pub conn: Option<OwnedFd>,
}

/// One running child.
#[derive(Debug)]
pub struct Child {
    /// The service's id in the event loop (stable across reloads).
    pub service_id: ServiceId,
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
    /// `pass: listen_fds`: every listener of its service it holds (by
    /// token: a reload may change the service's list meanwhile), given
    /// back at exit.
    pub listen_fds: Vec<Token>,
    /// Set once `timeout` fired: the exit line says `reason=timeout`.
    pub timed_out: bool,
    /// Its group was sent SIGKILL (`kill_grace` after the timeout) while
    /// it still ran: nothing of it is left to kill later.
    pub killed: bool,
    /// The child reported a failure before exec.
    pub exec_failed: bool,
    /// Its exec report while it is not yet past exec.
    pub exec: Option<ExecReport>,
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
    map: HashMap<Pid, Child>,
    /// Children on their way to exec that have no wake pipe, by pid and
    /// serial: nothing tells the loop when they are past exec, so it looks
    /// (see [`Children::take_unwoken`]). Short: a service has at most a
    /// few children on their way to exec. May name children settled or
    /// reaped since.
    unwoken: Vec<(Pid, u64)>,
    /// Sweeps still owed to orphans that may come back to superd (see
    /// [`Children::expect_orphans`]).
    orphan_sweeps: u32,
}

/// The sweeps owed after the last sign of orphans (see
/// [`Children::swept`]): a few, a sweep interval apart, so that what was
/// killed has long become a zombie before the last of them.
const ORPHAN_SWEEPS: u32 = 2;

impl Children {
    /// Records a started child; one on its way to exec without a wake
    /// pipe goes on the list the loop looks at (see `take_unwoken`).
    pub fn insert(&mut self, pid: Pid, child: Child) {
        if child.exec.as_ref().is_some_and(|e| e.token.is_none()) {
            self.unwoken.push((pid, child.serial));
        }
        self.map.insert(pid, child);
    }

    /// Whether a child may be on its way to exec with nothing to wake the
    /// loop when it gets there.
    pub fn has_unwoken(&self) -> bool {
        !self.unwoken.is_empty()
    }

    /// The list of children without a wake pipe, taken out to be looked
    /// at; given back with [`put_unwoken`](Self::put_unwoken).
    pub fn take_unwoken(&mut self) -> Vec<(Pid, u64)> {
        std::mem::take(&mut self.unwoken)
    }

    /// Gives back what [`take_unwoken`](Self::take_unwoken) took (those
    /// still on their way), after any added meanwhile.
    pub fn put_unwoken(&mut self, mut list: Vec<(Pid, u64)>) {
        if self.unwoken.is_empty() {
            std::mem::swap(&mut self.unwoken, &mut list);
        } else {
            self.unwoken.append(&mut list);
        }
    }

    pub fn get(&self, pid: Pid) -> Option<&Child> {
        self.map.get(&pid)
    }

    pub fn get_mut(&mut self, pid: Pid) -> Option<&mut Child> {
        self.map.get_mut(&pid)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// How many children are still on their way to exec.
    pub fn in_exec(&self) -> usize {
        self.map.values().filter(|c| c.exec.is_some()).count()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Child> {
        self.map.values_mut()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Pid, &Child)> {
        self.map.iter().map(|(p, c)| (*p, c))
    }

    /// Reaps every child that has ended, without blocking; returns each
    /// with how it ended, and how many orphans it reaped. Pids that are
    /// not in the table are orphans that came back to superd, the
    /// subreaper (see crate::tree): reaped, with a debug line.
    pub fn reap(&mut self) -> (Vec<(Pid, Child, Ended)>, usize) {
        let mut out = Vec::new();
        let mut orphans = 0;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => match self.map.remove(&pid.into()) {
                    Some(c) => out.push((pid.into(), c, Ended::Status(code))),
                    None => {
                        orphans += 1;
                        debug!("orphan reaped pid={pid} status={code}");
                    }
                },
                Ok(WaitStatus::Signaled(pid, sig, _)) => match self.map.remove(&pid.into()) {
                    Some(c) => out.push((pid.into(), c, Ended::Signal(sig))),
                    None => {
                        orphans += 1;
                        debug!("orphan reaped pid={pid} signal={}", sig.as_str());
                    }
                },
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        (out, orphans)
    }

    /// Something may come back to superd as an orphan (a child left
    /// processes behind, or they are being killed): sweeps are owed (see
    /// [`swept`](Self::swept)).
    pub fn expect_orphans(&mut self) {
        self.orphan_sweeps = ORPHAN_SWEEPS;
    }

    /// After a sweep that reaped `orphans`, while `lingering` (what
    /// outlived a child is still there): whether another sweep is owed.
    /// Each sign of orphans owes ORPHAN_SWEEPS more; a sweep without one
    /// pays one off.
    pub fn swept(&mut self, orphans: usize, lingering: bool) -> bool {
        if orphans > 0 || lingering {
            self.orphan_sweeps = ORPHAN_SWEEPS;
        } else {
            self.orphan_sweeps = self.orphan_sweeps.saturating_sub(1);
        }
        self.orphan_sweeps > 0
    }

    /// Reaps the child `pid` through its pidfd if it has ended: that
    /// child alone, O(1) whatever the number of others (waitpid(-1) makes
    /// the kernel look at every child). `None` while it runs.
    pub fn reap_pidfd(&mut self, pid: Pid) -> Option<(Pid, Child, Ended)> {
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
    pub fn reap_all_pidfds(&mut self) -> Vec<(Pid, Child, Ended)> {
        let pids: Vec<Pid> = self
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
pub fn signal_child(pid: Pid, child: &Child, sig: Signal) {
    if kill(pid.group(), sig).is_ok() {
        return;
    }
    match &child.pidfd {
        Some((fd, _)) => {
            let _ = crate::sys::pidfd_send_signal(fd.as_fd(), sig as i32);
        }
        None => {
            let _ = kill(pid.nix(), sig);
        }
    }
}

/// Whether the process group `pgid` still has a member. A child's group
/// outlives the child when something it started is still running.
pub fn group_alive(pgid: Pid) -> bool {
    // Signal 0 checks without sending; EPERM still means someone is there.
    !matches!(kill(pgid.group(), None), Err(Errno::ESRCH))
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
fn group_is_still(pgid: Pid, ticks: u64) -> bool {
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
            num(2) == Some(pgid.0.into())
                && num(3) == Some(pgid.0.into())
                && num(19).is_some_and(|start| start as u64 <= ticks)
        })
}

/// SIGKILLs what is left of a child's process group after the child (its
/// leader) is gone, if it is still that group (see `group_is_still`);
/// whether it was signalled. Never falls back to a pid: the child's is
/// free for anyone now.
pub fn kill_leftover_group(pgid: Pid, started_by: u64) -> bool {
    group_is_still(pgid, started_by) && kill(pgid.group(), Signal::SIGKILL).is_ok()
}

// ---- the timeout machine (superd.8, PROCESS TREES) ------------------------
//
// `timeout` strikes a running child: SIGTERM for all of it (`time_out`);
// kill_grace later, SIGKILL for what still runs (`kill_timed_out`), or,
// once the child is reaped, for what outlived it (`Lingering::kill`). A
// normal exit leaves nothing but what still runs in the child's cgroup:
// SIGTERM now, SIGKILL kill_grace later (`leftover`).

/// `timeout` struck the child `pid`: logs it and sends SIGTERM to every
/// process of its cgroup once (its group's and what left it by `setsid`),
/// or, without a cgroup, to its group and what descends from it, recorded
/// as strays for the SIGKILL (read before the SIGTERM, which may end the
/// child and orphan them).
pub fn time_out(pid: Pid, c: &mut Child) {
    c.timed_out = true;
    warn!("timeout service={} pid={pid} signal=SIGTERM", c.service);
    match &c.cgroup {
        Some(cg) => {
            if cg.signal(Signal::SIGTERM) == 0 {
                signal_child(pid, c, Signal::SIGTERM);
            }
        }
        None => {
            let table = tree::processes();
            let below = tree::descendants(pid.0, &table);
            signal_child(pid, c, Signal::SIGTERM);
            for p in below {
                if p.pgid != pid.0 {
                    let _ = kill(nix::unistd::Pid::from_raw(p.pid), Signal::SIGTERM);
                }
                c.strays.push(Stray {
                    pid: p.pid,
                    started: p.started,
                });
            }
        }
    }
}

/// kill_grace after its timeout the child `pid` still runs: SIGKILL for
/// its group and its cgroup, or its strays and what descends from it.
pub fn kill_timed_out(pid: Pid, c: &mut Child) {
    c.killed = true;
    signal_child(pid, c, Signal::SIGKILL);
    match &c.cgroup {
        Some(cg) => cg.kill(),
        None => {
            let _ = tree::signal_strays(&c.strays, Signal::SIGKILL);
            let table = tree::processes();
            for p in tree::descendants(pid.0, &table) {
                let _ = kill(nix::unistd::Pid::from_raw(p.pid), Signal::SIGKILL);
            }
        }
    }
}

/// What outlived a child: after its `timeout` SIGTERM, its process group
/// or anything in its cgroup; after a normal exit, anything in its cgroup.
/// Its ChildKill timer ends it (`kill`).
#[derive(Debug)]
pub struct Lingering {
    pub service: String,
    /// The child's pid: its process group's number.
    pub pid: Pid,
    /// When the child ended (see [`boot_ticks`]).
    pub ended: u64,
    /// The child had timed out (else: leftovers of a normal exit).
    pub timed_out: bool,
    pub cgroup: Option<ConnCgroup>,
    pub strays: Vec<Stray>,
}

/// What a reaped child leaves for the loop to do.
#[derive(Debug)]
pub enum Leftover {
    Nothing,
    /// A killed cgroup, to remove once empty.
    Dying(ConnCgroup),
    /// What outlived a timed-out child: its pending ChildKill ends it.
    Lingering(Lingering),
    /// What still runs in the cgroup of a child that exited: sent SIGTERM
    /// now, its SIGKILL due kill_grace later (a new ChildKill).
    Grace(Lingering),
}

/// What the reaped child `pid` left; `cgroup` is its cgroup as the fence
/// released it (`None`: none, or removed already).
pub fn leftover(pid: Pid, child: &mut Child, cgroup: Option<ConnCgroup>) -> Leftover {
    let strays = std::mem::take(&mut child.strays);
    let lingering = |timed_out, cgroup, strays| Lingering {
        service: child.service.clone(),
        pid,
        ended: boot_ticks(),
        timed_out,
        cgroup,
        strays,
    };
    if child.timed_out && !child.killed {
        if cgroup.is_some() || !strays.is_empty() || group_alive(pid) {
            return Leftover::Lingering(lingering(true, cgroup, strays));
        }
        return Leftover::Nothing;
    }
    let Some(cgroup) = cgroup else {
        return Leftover::Nothing;
    };
    if child.killed {
        cgroup.kill();
        return Leftover::Dying(cgroup);
    }
    let n = cgroup.signal(Signal::SIGTERM);
    info!(
        "leftover service={} pid={pid} processes={n} signal=SIGTERM",
        child.service
    );
    Leftover::Grace(lingering(false, Some(cgroup), Vec::new()))
}

impl Lingering {
    /// SIGKILL for what outlived the child, logged when anything was left.
    /// `pid_reused`: the pid is a newer child's now, and so is the group
    /// number, which is never signalled for the old one. Returns the
    /// cgroup when it could not be removed yet (it empties as its
    /// processes are reaped).
    pub fn kill(self, pid_reused: bool) -> Option<ConnCgroup> {
        let mut killed = self.timed_out && !pid_reused && kill_leftover_group(self.pid, self.ended);
        let mut dying = None;
        if let Some(cg) = self.cgroup {
            if cg.populated() {
                cg.kill();
                killed = true;
            }
            if !cg.remove() {
                dying = Some(cg);
            }
        }
        if tree::signal_strays(&self.strays, Signal::SIGKILL) > 0 {
            killed = true;
        }
        if killed && self.timed_out {
            warn!(
                "timeout service={} pgid={} signal=SIGKILL",
                self.service, self.pid
            );
        } else if killed {
            warn!(
                "leftover service={} pid={} signal=SIGKILL",
                self.service, self.pid
            );
        }
        dying
    }
}

/// Formats a duration the way the logs show it: seconds, 3 decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// How a connection's child ended, as the metrics count it (the type
/// is the metrics'; how a child is judged is here).
pub use crate::metrics::Outcome;

impl Outcome {
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
pub fn log_exit(pid: Pid, child: &Child, ended: Ended, now: Instant) -> Outcome {
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

#[cfg(test)]
mod tests;
