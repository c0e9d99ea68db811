//! The event loop: the only owner of `mio::Poll`, and the router of what it
//! reports. The parts (accepting, wait mode, exec settling, reaping, PROXY
//! headers, builtins, stderr pipes, timers, install and reload, status,
//! shutdown) each own their tables in the files beside this one; `run`
//! dispatches every event to its part by the `Watched` kind of its token.
//! mio is edge-triggered: a listener is always drained until `WouldBlock`,
//! and drained again by hand whenever a pause ends.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::{Events, Token};
use nix::sys::signal::Signal;

use crate::children::{Child, Children};
use crate::config::Source;
use crate::limits::SourceKey;
use crate::logging::quote;
use crate::metrics::PauseReason;
use crate::notify::Notifier;
use crate::signals::{self, Signals};
use crate::spawn;
use crate::tree::{ConnCgroup, Fence};

mod accept;
mod builtin;
mod changes;
mod exec;
mod header;
mod install;
mod pin;
mod reap;
mod services;
mod shutdown;
mod status;
mod stderr;
mod timeout;
mod timers;
/// Upgrade in place (SIGUSR2): the new binary's check, the state's export
/// and restore.
#[path = "../upgrade/daemon.rs"]
mod upgrade;
mod wait;
mod watch;
pub use upgrade::log_restored;

use crate::children::Lingering;
use crate::service::ServiceId;
use accept::ListenerEntry;
use builtin::{SessionEntry, Stream};
use header::HeaderWait;
use services::ServiceState;
use stderr::{LineSplitter, StderrPipe};
use timers::{EXEC_CHECK, Timer, Timers};
use watch::{Watch, Watched};

/// Bytes the builtin sessions of one loop turn may move together before
/// the rest wait for the next turn (each session also yields after
/// builtins::PUMP_BUDGET): a thousand chargen readers cannot hold the
/// loop, and other services' events wait a few milliseconds at most.
const TURN_BYTES: u64 = 2 * 1024 * 1024;

/// Ended connections held for the turn's log write at the most; at this
/// many the lines are written and the connections closed at once.
const CLOSE_BATCH: usize = 64;

/// The daemon: everything the loop owns, grouped by the part that keeps
/// it (the other parts read it, and only through `Daemon`'s methods).
pub struct Daemon {
    // ---- mod.rs: the router --------------------------------------------
    /// The poll, and what each token names (watch.rs).
    watch: Watch,
    signals: Signals,
    notifier: Notifier,
    /// Sessions and UDP listeners that stopped on a budget, not on
    /// `WouldBlock`: no edge will come for them, so they run next turn.
    ready: Vec<Token>,
    /// Builtin sessions that found the turn's byte budget spent
    /// (TURN_BYTES): they go first next turn, before its events.
    deferred: Vec<Token>,
    /// Connections this turn ended after logging about them (a builtin
    /// session's `exit`, a `refused`): closed after the turn's log lines
    /// are written, so that a peer that sees the close finds its line in
    /// the log (see `close_after_log`).
    closing: Vec<OwnedFd>,
    reload_pending: bool,
    status_pending: bool,
    reap_pending: bool,
    shutdown: Option<Signal>,

    // ---- services.rs and install.rs: the running configuration ---------
    source: Source,
    /// Boxed: a state is over a kilobyte, and a map of 10,000 inline
    /// states doubled that at every growth.
    services: HashMap<ServiceId, Box<ServiceState>>,
    /// Service ids in configuration order (for status and logs).
    order: Vec<ServiceId>,
    next_service_id: u64,
    /// The ports superd's own UDP builtins are bound to: a datagram from
    /// one of them is never answered (a spoofed source would set two of
    /// them, or one and itself, answering each other forever).
    udp_ports: Vec<u16>,
    /// Every listening or bound socket, by token (accept.rs, wait.rs).
    /// Boxed: a map of 10,000 inline 280-byte entries has room for 16,384
    /// of them, and doubles at every growth.
    listeners: HashMap<Token, Box<ListenerEntry>>,
    /// Reloads that took effect, and reloads that kept the old
    /// configuration (superd_reloads_total).
    reloads_ok: u64,
    reloads_failed: u64,

    // ---- connections: builtin.rs, header.rs, stderr.rs ------------------
    sessions: HashMap<Token, SessionEntry>,
    /// Connections waiting for their PROXY header, by token.
    headers: HashMap<Token, HeaderWait>,
    /// Children's stderr pipes (`stderr: log`), by token: a pipe may
    /// outlive its child (something the child started still holds it).
    pipes: HashMap<Token, StderrPipe>,

    // ---- children: exec.rs, reap.rs -------------------------------------
    children: Children,
    next_serial: u64,
    /// When long-lived children's pidfds and stderr pipes move above the
    /// low numbers (spawn::fdpark), so a clone copies few descriptors.
    parking: spawn::fdpark::Parking,
    /// What outlived a child, by the child's serial; its SIGKILL is still
    /// due (see `Lingering`).
    lingering: HashMap<u64, Lingering>,
    /// How connection trees are followed: cgroups or the subreaper alone.
    fence: Fence,
    /// Connection cgroups whose processes are all killed, removed once
    /// empty (tried at each reap).
    dying: Vec<ConnCgroup>,
    /// When the last `waitpid(-1)` sweep ran, and whether a Sweep timer
    /// is set (see SWEEP_INTERVAL).
    last_sweep: Option<Instant>,
    sweep_due: bool,
    /// superd on one CPU while it starts one child at a time (pin.rs).
    pin: pin::Pin,

    // ---- timers.rs -------------------------------------------------------
    timers: Timers,

    // ---- shutdown.rs, status.rs, upgrade ---------------------------------
    grace: Duration,
    /// When superd started (Unix seconds), for status and metrics.
    started_unix: f64,
    /// What an upgrade needs (the binary's path, argv, pid file); `None`
    /// where superd runs without one (tests of the loop).
    upgrade: Option<crate::upgrade::Context>,
    /// SIGUSR2 came; the upgrade waits for children in exec (at most
    /// until the instant, see `upgrade`).
    upgrade_pending: Option<Instant>,
}

impl Daemon {
    /// Runs until SIGTERM/SIGINT, then shuts down. Returns the exit code.
    pub fn run(mut self) -> crate::ExitCode {
        info!(
            "ready services={} listeners={} pid={} {} reap={}",
            self.order.len(),
            self.listeners.len(),
            std::process::id(),
            self.fence.describe(),
            if spawn::pidfd_works() {
                "pidfd"
            } else {
                "waitpid"
            }
        );
        self.notifier.notify("READY=1");
        self.start_reaping();
        // A turn's log lines go out together, before the loop sleeps.
        crate::logging::batch(true);
        let mut events = Events::with_capacity(256);
        loop {
            crate::logging::flush();
            self.closing.clear();
            let timeout = if self.upgrade_pending.is_some() {
                // Waiting for children in exec before an upgrade.
                Some(Duration::from_millis(5))
            } else if self.ready.is_empty() && self.deferred.is_empty() {
                self.poll_timeout(
                    self.timers
                        .next_at()
                        .map(|at| at.saturating_duration_since(Instant::now())),
                )
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.watch.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    error!("poll failed error={}", quote(&e.to_string()));
                }
                continue;
            }
            // Children without a wake pipe that got past exec first (they
            // may open an exec gate: their listeners join `ready`).
            self.settle_unwoken();
            // Builtin sessions that move much (chargen to many readers at
            // once) share the turn's byte budget; past it they wait, and go
            // first next turn, ahead of the events (where the sessions that
            // used this turn's budget come again): every session gets its
            // turn. Then the events, then what stopped on a budget of its
            // own last turn.
            let ready = std::mem::take(&mut self.ready);
            let waited = std::mem::take(&mut self.deferred);
            let mut turn = Turn::default();
            for token in waited
                .into_iter()
                .chain(events.iter().map(|e| e.token()))
                .chain(ready)
            {
                self.dispatch(token, &mut turn);
            }
            self.deferred = turn.deferred;
            if self.reap_pending {
                self.reap_pending = false;
                self.sweep_soon();
            }
            self.fire_timers();
            if self.status_pending {
                self.status_pending = false;
                self.log_status();
            }
            if self.shutdown.is_some() {
                break;
            }
            if self.reload_pending {
                self.reload_pending = false;
                self.reload();
            }
            if self.upgrade_pending.is_some() {
                self.upgrade();
            }
        }
        crate::logging::batch(false);
        self.shutdown_now()
    }

    /// Hands the event (or ready entry) of `token` to its part. A token
    /// whose owner is gone (an event fetched before it ended) names
    /// nothing and is skipped.
    fn dispatch(&mut self, token: Token, turn: &mut Turn) {
        match self.watch.kind(token) {
            Some(Watched::Signals) => self.on_signals(),
            Some(Watched::Listener) => self.drain_listener(token),
            Some(Watched::Session) if turn.moved < TURN_BYTES => {
                turn.moved += self.pump_session(token);
            }
            Some(Watched::Session) if turn.seen.insert(token) => turn.deferred.push(token),
            Some(Watched::Stderr) => self.read_stderr(token),
            Some(Watched::Exec(pid)) => {
                self.exec_settled(pid);
            }
            Some(Watched::Header) => {
                if let Some((sid, conn)) = self.read_header(token) {
                    self.start_connection(sid, conn);
                }
            }
            Some(Watched::Pidfd(pid)) => {
                self.reap_one(pid);
            }
            Some(Watched::UpgradeCheck) => self.upgrade_check_progress(),
            Some(Watched::Session) | None => {}
        }
    }

    /// Hands every timer that is due to its part.
    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                Timer::Resume(sid) => self.resume_service(sid, now),
                Timer::ChildTimeout(pid, serial) => self.child_timed_out(pid, serial, now),
                Timer::ChildKill(pid, serial) => self.kill_after_grace(pid, serial),
                Timer::ExecCheck(pid, serial) => {
                    let live = self
                        .children
                        .get(pid)
                        .is_some_and(|c| c.serial == serial && c.exec.is_some());
                    if live && self.exec_settled(pid).is_none() {
                        self.timer(now + EXEC_CHECK, Timer::ExecCheck(pid, serial));
                    }
                }
                Timer::PidfdCheck(pid, serial) => {
                    if self.children.get(pid).is_some_and(|c| c.serial == serial)
                        && !self.reap_one(pid)
                    {
                        self.timer(now + EXEC_CHECK, Timer::PidfdCheck(pid, serial));
                    }
                }
                Timer::ProxyHeader(token) => {
                    if self.headers.contains_key(&token) {
                        self.refuse_header(token, "no complete header within proxy_timeout");
                    }
                }
                Timer::SessionIdle(token) => self.session_idle(token, now),
                Timer::Sweep => {
                    self.sweep_due = false;
                    self.reap();
                }
                Timer::Unpin => self.pin.release(),
            }
        }
    }

    fn on_signals(&mut self) {
        let mut got = Vec::new();
        self.signals.drain(|e| got.push(e));
        for e in got {
            match e {
                signals::Event::Reload => self.reload_pending = true,
                signals::Event::Status => self.status_pending = true,
                signals::Event::Child => self.reap_pending = true,
                signals::Event::Upgrade => self.upgrade_requested(),
                signals::Event::Ignored(s) => warn!("signal ignored signal={}", s.as_str()),
                signals::Event::Shutdown(s) => {
                    if self.shutdown.is_none() {
                        info!("shutting down signal={}", s.as_str());
                    }
                    self.shutdown = Some(s);
                }
            }
        }
    }

    /// A connection of `sid` is over: release its slots and, if the
    /// service was at its cap, accept again.
    fn connection_ended(&mut self, sid: ServiceId, source: Option<SourceKey>) {
        let Some(st) = self.services.get_mut(&sid) else {
            return;
        };
        let was_full = st.limits.at_capacity();
        st.limits.connection_ended(source);
        if was_full {
            st.counters
                .paused
                .end(PauseReason::MaxConnections, Instant::now());
            let tokens = st.listeners.clone();
            for t in tokens {
                self.drain_listener(t);
            }
        }
    }

    /// Closes `fd` once the log lines about it are written: at the end of
    /// the turn, or now (after a write) when [`CLOSE_BATCH`] are waiting,
    /// so that a flood never holds many descriptors.
    fn close_after_log(&mut self, fd: OwnedFd) {
        self.closing.push(fd);
        if self.closing.len() >= CLOSE_BATCH {
            crate::logging::flush();
            self.closing.clear();
        }
    }
}

/// One turn's shared budget: the bytes builtin sessions moved, and the
/// sessions that found it spent (they go first next turn).
#[derive(Default)]
struct Turn {
    moved: u64,
    deferred: Vec<Token>,
    seen: std::collections::HashSet<Token>,
}

/// ` proxy=ADDR` for a connection behind a proxy, else nothing.
fn proxy_field(proxy: Option<SocketAddr>) -> String {
    proxy.map(|p| format!(" proxy={p}")).unwrap_or_default()
}
