//! Shutdown (superd.8, SIGNALS): listeners closed, sessions ended, every
//! descendant sent SIGTERM and waited for until the grace expires, then
//! SIGKILL.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::{Events, Token};
use nix::sys::signal::Signal;

use crate::tree;

use super::Daemon;
use super::watch::Watched;
use crate::children::Pid;

impl Daemon {
    /// Shutdown: the sweep and every child with a pidfd that ended.
    pub(super) fn reap_everything(&mut self) {
        self.reap();
        let now = Instant::now();
        for (pid, child, ended) in self.children.reap_all_pidfds() {
            self.child_ended(pid, child, ended, now);
        }
    }

    pub(super) fn shutdown_now(mut self) -> crate::ExitCode {
        self.notifier.notify("STOPPING=1");
        for (_, mut e) in self.listeners.drain() {
            self.watch.deregister(e.listener.fd.as_raw_fd());
            e.listener.remove_socket_file();
        }
        let tokens: Vec<Token> = self.sessions.keys().copied().collect();
        for t in tokens {
            self.end_session(t, Some("shutdown"));
        }
        // Everything the children started descends from superd, the
        // subreaper, whatever sessions and groups it made: it all gets
        // SIGTERM, and shutdown waits for all of it, not only for the
        // children superd can reap (superd.8: SIGKILL what is left).
        let me = std::process::id() as i32;
        self.children.signal_all(Signal::SIGTERM);
        for p in tree::descendants(me, &tree::processes()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + self.grace;
        let mut events = Events::with_capacity(64);
        loop {
            self.reap_everything();
            let left = tree::descendants(me, &tree::processes());
            if self.children.is_empty() && left.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                // Groups whose leader (a child) is gone.
                let mut groups: Vec<i32> = left
                    .iter()
                    .map(|p| p.pgid)
                    .filter(|&g| self.children.get(Pid(g)).is_none())
                    .collect();
                groups.sort_unstable();
                groups.dedup();
                warn!(
                    "grace expired children={} groups={} signal=SIGKILL",
                    self.children.len(),
                    groups.len()
                );
                self.kill_everything(me);
                // SIGKILL cannot be caught: reap them, waiting briefly.
                let until = Instant::now() + Duration::from_secs(5);
                while Instant::now() < until {
                    self.reap_everything();
                    if self.children.is_empty()
                        && tree::descendants(me, &tree::processes()).is_empty()
                    {
                        break;
                    }
                    let _ = self
                        .watch
                        .poll(&mut events, Some(Duration::from_millis(20)));
                    self.signals.drain(|_| {});
                }
                break;
            }
            // No event says a tree emptied: look again every 20 ms.
            let wait = (deadline - now).min(Duration::from_millis(20));
            let _ = self.watch.poll(&mut events, Some(wait));
            for ev in events.iter() {
                if self.watch.kind(ev.token()) == Some(Watched::Stderr) {
                    self.read_stderr(ev.token());
                }
            }
            self.signals.drain(|_| {});
        }
        // The connection cgroups are empty now (superd's own goes with
        // the fence).
        for (_, l) in self.lingering.drain() {
            if let Some(cg) = l.cgroup {
                cg.remove();
            }
        }
        self.dying.retain(|c| !c.remove());
        info!("stopped");
        crate::ExitCode::Ok
    }
}
