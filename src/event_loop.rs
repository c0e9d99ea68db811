//! The event loop: the only owner of `mio::Poll`. It accepts connections,
//! reads their PROXY headers (`proxy_protocol`), applies access rules and
//! limits, starts children or builtin sessions,
//! reaps, pauses and resumes listeners, reloads, reports status and shuts
//! down. mio is edge-triggered: a listener is always drained until
//! `WouldBlock`, and drained again by hand whenever a pause ends.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::socket::{self, MsgFlags, SockaddrStorage};

use crate::access::{self, Refusal};
use crate::builtins;
use crate::children::{self, Child, Children};
use crate::config::{self, Config};
use crate::limits::{LogBudget, ServiceLimits, SourceKey, TokenBucket, source_key};
use crate::listener::{self, Accepted, Listener, Peer};
use crate::logging::quote;
use crate::metrics::{self, Counters, PauseReason};
use crate::notify::Notifier;
use crate::plan::{ConnInfo, SpawnPlan};
use crate::proxy;
use crate::service::{
    ListenerKey, PassMode, Program, Rate, Service, SocketType, StartMode, canonical_addr,
};
use crate::signals::{self, Signals};
use crate::spawn;
use crate::spawn::sandbox::Namespaces;
use crate::tree::{self, ConnCgroup, Fence};

const SIGNAL_TOKEN: Token = Token(0);

/// Upgrade in place (SIGUSR2): the state's export and restore.
#[path = "upgrade/daemon.rs"]
mod upgrade;
pub use upgrade::log_restored;

/// How long accepting pauses when file descriptors or processes run out.
const RESOURCE_PAUSE: Duration = Duration::from_millis(250);
/// At most one "out of resources" line per service in this interval.
const RESOURCE_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// At most one `refused` line per service per interval for datagrams,
/// whose source anyone can forge (superd.8, LOGS).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);
/// A `wait` service whose program fails before exec is retried after this
/// delay, doubled for every further failure in a row, up to the cap.
const WAIT_BACKOFF_START: Duration = Duration::from_millis(100);
const WAIT_BACKOFF_CAP: Duration = Duration::from_secs(10);
/// A `nowait` service may fail to exec at most this often per second
/// (burst the same): a client flood against a broken program costs a few
/// forks a second, never a tight loop.
const NOWAIT_FAILURES_PER_SEC: u32 = 50;
/// A `wait` service without a `rate` may start this many children a
/// second (burst the same); past that it is looping (a child that ends at
/// once leaves its socket readable, and the next starts at once) and
/// pauses for LOOP_PAUSE, as xinetd's `cps` default does. Never disabled.
const WAIT_STARTS_PER_SEC: u32 = 50;
const LOOP_PAUSE: Duration = Duration::from_secs(10);
/// Bytes the builtin sessions of one loop turn may move together before
/// the rest wait for the next turn (each session also yields after
/// builtins::PUMP_BUDGET): a thousand chargen readers cannot hold the
/// loop, and other services' events wait a few milliseconds at most.
const TURN_BYTES: u64 = 2 * 1024 * 1024;
/// Connections accepted on one listener before the loop looks at anything
/// else.
const ACCEPT_BATCH: usize = 64;
/// Ended connections held for the turn's log write at the most; at this
/// many the lines are written and the connections closed at once.
const CLOSE_BATCH: usize = 64;
/// Children of one service started and not yet past exec, at the most.
/// superd does not wait for a child's exec (it accepts and serves
/// meanwhile, and a child stuck in exec stalls nothing else), but starting
/// many at once only moves the queue from the listen backlog, which is in
/// order, to the scheduler's run queue, which is not: under load the
/// slowest connections then wait several times longer (p99 at 64
/// concurrent clients: 21 ms with 2, 30 ms with 3, 45 ms with 4, over
/// 200 ms unbounded).
const PRE_EXEC_MAX: usize = 2;
/// How often the report pipe of a child is read when epoll could not take
/// it (out of memory, max_user_watches): the loop never waits for a child.
const EXEC_CHECK: Duration = Duration::from_millis(10);
/// The least time between two `waitpid(-1)` sweeps on SIGCHLD: each makes
/// the kernel look at every child, so with thousands alive it is
/// rate-bounded (a timer makes sure the one that is due comes, so no
/// zombie stays). Without pidfds every child is reaped so.
const SWEEP_INTERVAL: Duration = Duration::from_millis(10);
/// The same with pidfds: each child is reaped through its own, and the
/// sweep is left to orphans that came back to superd. A child raises
/// SIGCHLD too (exec gives every process the default exit signal), and a
/// sweep reaps those of them that ended but whose pidfd event is still to
/// come, each with another walk of every child: at 6,000 live children a
/// 100 ms bound still took a quarter of superd's CPU.
const SWEEP_INTERVAL_PIDFD: Duration = Duration::from_secs(1);
/// Reads of 4 KiB from one stderr pipe before the loop looks elsewhere.
const STDERR_READS_PER_TURN: usize = 16;
/// Largest line taken from a child's stderr (`stderr: log`) in one piece.
const STDERR_LINE_MAX: usize = 4096;

/// Where the configuration comes from, read again on every reload.
#[derive(Clone, Debug)]
pub enum Source {
    Paths(Vec<PathBuf>),
    OneLine {
        listen: Vec<String>,
        sets: Vec<(String, String)>,
        program: Vec<String>,
    },
}

impl Source {
    pub fn load(&self) -> Result<Config, Vec<config::ConfigError>> {
        match self {
            Source::Paths(p) => config::load(p),
            Source::OneLine {
                listen,
                sets,
                program,
            } => config::load_oneline(listen, sets, program),
        }
    }
}

/// Why a service is not accepting right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pause {
    Rate,
    Resources,
    ExecFailures,
    Looping,
    AcceptError,
}

impl Pause {
    fn state(self) -> metrics::ServiceState {
        match self {
            Pause::Rate => metrics::ServiceState::PausedRate,
            Pause::Resources => metrics::ServiceState::PausedResources,
            Pause::ExecFailures => metrics::ServiceState::PausedExecFailures,
            Pause::Looping => metrics::ServiceState::PausedLooping,
            Pause::AcceptError => metrics::ServiceState::PausedAcceptError,
        }
    }

    /// The reason `superd_paused_seconds_total` counts it under: a
    /// program that keeps failing before exec is paced as a looping one
    /// is, and any accept error as a shortage of resources (superd.8,
    /// METRICS).
    fn reason(self) -> PauseReason {
        match self {
            Pause::Rate => PauseReason::Rate,
            Pause::Resources | Pause::AcceptError => PauseReason::Resources,
            Pause::ExecFailures | Pause::Looping => PauseReason::Looping,
        }
    }
}

/// A service as the loop runs it: config, spawn plan, limits, counters.
struct ServiceState {
    id: u64,
    service: Rc<Service>,
    plan: Option<Rc<SpawnPlan>>,
    /// The namespaces its children join (superd.yaml(5), "Fences"); the
    /// plan holds them too.
    namespaces: Option<Rc<Namespaces>>,
    limits: ServiceLimits,
    counters: Counters,
    listeners: Vec<Token>,
    paused: Option<(Pause, Instant)>,
    /// Exec failures in a row (reset by a successful exec).
    fail_streak: u32,
    /// Children started and not yet past exec (see PRE_EXEC_MAX).
    pre_exec: usize,
    failure_bucket: TokenBucket,
    /// wait mode without `rate`: children started (see WAIT_STARTS_PER_SEC).
    wait_starts: TokenBucket,
    last_resource_log: Option<Instant>,
    /// `refused` lines about datagrams (see REFUSAL_LOG_INTERVAL).
    refusal_log: LogBudget,
    /// A connection accepted when fork failed, served first on resume.
    pending: Option<Accepted>,
    /// `proxy_protocol`: connections whose header is read and admitted,
    /// waiting for their start while the service has enough children on
    /// their way to exec (see PRE_EXEC_MAX). Each holds a max_connections
    /// slot.
    proxied: VecDeque<Accepted>,
}

impl ServiceState {
    /// Stops accepting until `until`, and starts counting the pause.
    fn pause(&mut self, why: Pause, until: Instant, now: Instant) {
        self.paused = Some((why, until));
        self.counters.paused.begin(why.reason(), now, Some(until));
    }
}

struct ListenerEntry {
    listener: Listener,
    service_id: u64,
    /// Handed to a `wait` child: not watched until it exits.
    busy: bool,
    /// The datagram server of a UDP builtin.
    udp: Option<builtins::UdpServer>,
}

/// The stream a builtin session talks over.
enum Stream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

struct SessionEntry {
    session: builtins::Session,
    stream: Stream,
    service_id: u64,
    service: String,
    peer: Peer,
    /// Behind a proxy: the proxy's address (`peer` is the client).
    proxy: Option<SocketAddr>,
    source: Option<SourceKey>,
    started: Instant,
    last_activity: Instant,
    idle_timeout: Duration,
}

/// A connection of a `proxy_protocol` service waiting for its PROXY
/// header (superd.yaml(5), PROXY PROTOCOL). Its peer is the proxy; it
/// holds a max_connections slot, and no per-source slot (the proxy is not
/// a source).
struct HeaderWait {
    conn: Accepted,
    service_id: u64,
    accept: proxy::Accept,
    /// Registered with the poll: the first read found no complete header.
    watched: bool,
}

/// What one look at a connection's first bytes found.
enum HeaderRead {
    /// Not all there yet: wait for more (or for `proxy_timeout`).
    Wait,
    /// The header, read off the socket up to its last byte and no further.
    Read(Box<proxy::Header>),
    /// Refused, `reason=proxy_header`: why, for the log line.
    Refuse(String),
}

/// A child on its way to exec (see `Daemon::exec_settled`).
struct ExecWait {
    pid: i32,
    service_id: u64,
    service: String,
    /// Behind a proxy: the client and the proxy, for `exec failed`.
    proxied: Option<(Peer, SocketAddr)>,
    pending: spawn::Pending,
    /// nowait: superd's copy of the connection, closed once the outcome is
    /// known (after the `exec failed` line, if any).
    conn: Option<OwnedFd>,
}

struct StderrPipe {
    file: File,
    service: String,
    pid: i32,
    buf: Vec<u8>,
    /// The last line logged was cut at STDERR_LINE_MAX: a newline right
    /// after it ends that line, not an empty one.
    cut: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Resume(u64),
    ChildTimeout(i32, u64),
    /// SIGKILL for the group of the child with this pid and serial, or
    /// for what is left of it once the child itself is gone.
    ChildKill(i32, u64),
    SessionIdle(Token),
    /// `proxy_timeout` of a connection waiting for its PROXY header.
    ProxyHeader(Token),
    /// A child's exec report pipe the loop could not watch: looked at
    /// again (see EXEC_CHECK).
    ExecCheck(Token),
    /// The `waitpid(-1)` sweep held back by SWEEP_INTERVAL.
    Sweep,
    /// A child's pidfd the loop could not watch: tried again (as
    /// ExecCheck).
    PidfdCheck(i32, u64),
}

/// What outlived a child (by the child's serial): after its `timeout` SIGTERM, its process group
/// or anything in its cgroup; after a normal exit, anything in its cgroup
/// (see "Process trees" in superd.8). Its ChildKill timer ends it.
struct Lingering {
    service: String,
    /// The child's pid: its process group's number.
    pid: i32,
    /// When the child ended (see children::boot_ticks).
    ended: u64,
    /// The child had timed out (else: leftovers of a normal exit).
    timed_out: bool,
    cgroup: Option<ConnCgroup>,
    strays: Vec<tree::Stray>,
}

/// The daemon: everything the loop owns.
pub struct Daemon {
    poll: Poll,
    signals: Signals,
    source: Source,
    grace: Duration,
    notifier: Notifier,
    services: HashMap<u64, ServiceState>,
    /// Service ids in configuration order (for status and logs).
    order: Vec<u64>,
    /// The ports superd's own UDP builtins are bound to: a datagram from
    /// one of them is never answered (a spoofed source would set two of
    /// them, or one and itself, answering each other forever).
    udp_ports: Vec<u16>,
    listeners: HashMap<Token, ListenerEntry>,
    sessions: HashMap<Token, SessionEntry>,
    /// Connections waiting for their PROXY header, by token.
    headers: HashMap<Token, HeaderWait>,
    pipes: HashMap<Token, StderrPipe>,
    children: Children,
    /// Process groups, by number, whose leader (a child) ended after its
    /// `timeout` SIGTERM while other members still run; their SIGKILL is
    /// still due.
    lingering: HashMap<u64, Lingering>,
    /// How connection trees are followed: cgroups or the subreaper alone.
    fence: Fence,
    /// Connection cgroups whose processes are all killed, removed once
    /// empty (tried at each reap).
    dying: Vec<ConnCgroup>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
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
    /// Children not yet past exec, by the token of their report pipe.
    execs: HashMap<Token, ExecWait>,
    /// `pass: listen_fds` wait children (by pid) and the listeners each
    /// holds, given back when it ends.
    listen_fds_children: HashMap<i32, Vec<Token>>,
    next_token: usize,
    next_service_id: u64,
    next_serial: u64,
    /// When children's pidfds move above the low numbers (spawn::fdpark).
    parking: spawn::fdpark::Parking,
    reload_pending: bool,
    status_pending: bool,
    reap_pending: bool,
    /// Children with a pidfd, by the token of their pidfd.
    pidfds: HashMap<Token, i32>,
    /// When the last `waitpid(-1)` sweep ran, and whether a Sweep timer
    /// is set (see SWEEP_INTERVAL).
    last_sweep: Option<Instant>,
    sweep_due: bool,
    shutdown: Option<Signal>,
    /// When superd started (Unix seconds), for status and metrics.
    started_unix: f64,
    /// Reloads that took effect, and reloads that kept the old
    /// configuration (superd_reloads_total).
    reloads_ok: u64,
    reloads_failed: u64,
    /// What an upgrade needs (the binary's path, argv, pid file); `None`
    /// where superd runs without one (tests of the loop).
    upgrade: Option<crate::upgrade::Context>,
    /// SIGUSR2 came; the upgrade waits for children in exec (at most
    /// until the instant, see `upgrade`).
    upgrade_pending: Option<Instant>,
}

/// A failure at start: superd exits 1.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The local zone's offset for daytime (the only builtin that shows a
/// local time); 0 for the others, which need no `localtime_r`.
fn offset_for(kind: crate::service::Builtin, now: i64) -> i64 {
    match kind {
        crate::service::Builtin::Daytime => crate::sys::utc_offset(now),
        _ => 0,
    }
}

/// An accept error that is about one connection only (it is gone; the next
/// may be fine): accept(2) says to retry on these. Any other error that is
/// not a shortage of resources would come back at every call.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::ETIMEDOUT
                | libc::ECONNRESET
        )
    )
}

fn is_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl Daemon {
    /// Binds every listener of `config` (all or nothing) and prepares the
    /// loop. Signals must already be blocked (`signals`).
    pub fn start(
        config: Config,
        source: Source,
        grace: Duration,
        signals: Signals,
        notifier: Notifier,
    ) -> Result<Daemon, StartError> {
        let inherited = crate::listener_inherit::take_from_env();
        let none = upgrade::Adopted::default();
        Daemon::start_with(config, source, grace, signals, notifier, inherited, &none)
    }

    /// `start`, with the sockets to adopt (from LISTEN_FDS, or from the
    /// previous image after an upgrade: `upgraded` says which of those a
    /// `wait` child holds and which the previous image bound itself).
    fn start_with(
        config: Config,
        source: Source,
        grace: Duration,
        signals: Signals,
        notifier: Notifier,
        inherited: Vec<crate::listener_inherit::Inherited>,
        upgraded: &upgrade::Adopted,
    ) -> Result<Daemon, StartError> {
        let poll = Poll::new().map_err(|e| StartError(format!("cannot create poll: {e}")))?;
        poll.registry()
            .register(
                &mut SourceFd(&signals.raw_fd()),
                SIGNAL_TOKEN,
                Interest::READABLE,
            )
            .map_err(|e| StartError(format!("cannot watch signals: {e}")))?;
        let mut d = Daemon {
            poll,
            signals,
            source,
            grace,
            notifier,
            services: HashMap::new(),
            order: Vec::new(),
            udp_ports: Vec::new(),
            listeners: HashMap::new(),
            sessions: HashMap::new(),
            headers: HashMap::new(),
            pipes: HashMap::new(),
            children: Children::default(),
            lingering: HashMap::new(),
            fence: Fence::start(),
            dying: Vec::new(),
            timers: BinaryHeap::new(),
            ready: Vec::new(),
            deferred: Vec::new(),
            closing: Vec::new(),
            execs: HashMap::new(),
            listen_fds_children: HashMap::new(),
            next_token: 1,
            next_service_id: 1,
            next_serial: 0,
            parking: Default::default(),
            reload_pending: false,
            status_pending: false,
            reap_pending: false,
            pidfds: HashMap::new(),
            last_sweep: None,
            sweep_due: false,
            shutdown: None,
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            reloads_ok: 0,
            reloads_failed: 0,
            upgrade: None,
            // A restored image accepts only once its children, sessions
            // and limits are back (see upgrade::Daemon::restore).
            upgrade_pending: upgraded.hold_accepts.then(Instant::now),
        };
        let namespaces = d
            .namespaces_for(&config.services, &HashMap::new())
            .map_err(StartError)?;
        // Sockets from superd's parent (LISTEN_FDS) first: a service they
        // match is not bound again (superd.8, SOCKET ACTIVATION).
        let mut inherited = crate::listener_inherit::adopt(inherited, &config.services);
        let mut bound = bind_all(
            &config.services,
            &mut HashMap::new(),
            &HashMap::new(),
            &mut inherited,
        )
        .map_err(|e| StartError(e.to_string()))?;
        for slot in bound.iter_mut().flatten() {
            let fd = slot.listener.fd.as_raw_fd();
            if upgraded.own.contains(&fd) {
                slot.listener.inherited = false;
            }
            if upgraded.busy.contains(&fd) {
                slot.busy = true;
                let _ = listener::set_nonblocking(slot.listener.fd.as_fd(), false);
            }
        }
        d.install(config.services, bound, HashMap::new(), namespaces);
        Ok(d)
    }

    fn token(&mut self) -> Token {
        let t = Token(self.next_token);
        self.next_token += 1;
        t
    }

    fn timer(&mut self, at: Instant, t: Timer) {
        self.timers.push(Reverse((at, t)));
        // Timers are deleted lazily (a session that ends leaves its idle
        // timer behind). Keep the heap in proportion to what is alive, so a
        // flood of short sessions cannot grow it for a whole idle_timeout.
        let live =
            self.sessions.len() + self.children.len() + self.services.len() + self.headers.len();
        if self.timers.len() > 1024 && self.timers.len() > 4 * live {
            self.compact_timers();
        }
    }

    /// Drops timers whose session, child or service is gone.
    fn compact_timers(&mut self) {
        let timers = std::mem::take(&mut self.timers);
        self.timers = timers
            .into_iter()
            .filter(|Reverse((_, t))| match t {
                Timer::Resume(sid) => self.services.contains_key(sid),
                Timer::ChildTimeout(pid, _) => self.children.get(*pid).is_some(),
                Timer::ChildKill(pid, serial) => {
                    self.children.get(*pid).is_some() || self.lingering.contains_key(serial)
                }
                Timer::SessionIdle(token) => self.sessions.contains_key(token),
                Timer::ProxyHeader(token) => self.headers.contains_key(token),
                Timer::ExecCheck(token) => self.execs.contains_key(token),
                Timer::Sweep => true,
                Timer::PidfdCheck(pid, serial) => {
                    self.children.get(*pid).is_some_and(|c| c.serial == *serial)
                }
            })
            .collect();
    }

    /// The namespaces of every enabled exec service of `services` whose
    /// fences ask for some (superd.yaml(5), "Fences"): those of the
    /// running service of the same name when its fences made the same
    /// ones, new ones otherwise. All or nothing: the error names the
    /// service and the step.
    fn namespaces_for(
        &self,
        services: &[Service],
        old_ids: &HashMap<String, u64>,
    ) -> Result<HashMap<String, Rc<Namespaces>>, String> {
        let mut out = HashMap::new();
        for s in services {
            if !s.enabled || s.builtin().is_some() || !s.fences.needs_namespaces() {
                continue;
            }
            let kept = old_ids
                .get(&s.name)
                .and_then(|id| self.services.get(id))
                .filter(|st| {
                    st.service.fences.namespace_key() == s.fences.namespace_key()
                        && (!s.fences.private_tmp || st.service.chroot == s.chroot)
                })
                .and_then(|st| st.namespaces.clone());
            let ns = match kept {
                Some(ns) => ns,
                None => match Namespaces::new(&s.fences, s.chroot.as_deref()) {
                    Ok(Some(ns)) => Rc::new(ns),
                    Ok(None) => continue,
                    Err(e) => {
                        return Err(format!("service {}: cannot set up its fences: {e}", s.name));
                    }
                },
            };
            out.insert(s.name.clone(), ns);
        }
        Ok(out)
    }

    /// Makes `services` the running set. `bound` holds a listener for every
    /// (service, address) of an enabled service, in order; `old` the
    /// previous states by name (reload); `namespaces` those of the fenced
    /// services, by name.
    fn install(
        &mut self,
        services: Vec<Service>,
        mut bound: Vec<Vec<Slot>>,
        old_ids: HashMap<String, u64>,
        mut namespaces: HashMap<String, Rc<Namespaces>>,
    ) {
        let now = Instant::now();
        let mut new_order = Vec::new();
        for (service, listeners) in services.into_iter().zip(bound.drain(..)) {
            let service = Rc::new(service);
            let ns = namespaces.remove(&service.name);
            // Built for a new or changed service only: the plan, and the
            // warning that its user could not execute its program.
            let new_plan = || match service.program {
                Program::Exec { .. } => {
                    if let Some(why) = crate::config::exec_access_warning(&service) {
                        warn!(
                            "program not executable service={} error={}",
                            service.name,
                            quote(&why)
                        );
                    }
                    Some(Rc::new(
                        SpawnPlan::new(&service).with_namespaces(ns.clone()),
                    ))
                }
                Program::Builtin(_) => None,
            };
            // And the configuration's warnings, as --check shows them.
            let new_plan = || {
                config_warnings(&service);
                new_plan()
            };
            let id = match old_ids.get(&service.name) {
                Some(&id) => {
                    let st = self.services.get_mut(&id).expect("old id is live");
                    st.limits.reconfigure(
                        service.max_connections,
                        service.max_per_source,
                        service.rate,
                        now,
                    );
                    // A pause for the old rate is the old rate's: the new
                    // one decides at the drain below (and pauses again if
                    // it must).
                    if matches!(st.paused, Some((Pause::Rate, _))) {
                        st.paused = None;
                        st.counters.paused.end(PauseReason::Rate, now);
                    }
                    // An unchanged service keeps its plan (no passwd lookup,
                    // no C strings rebuilt for each of 1000 services).
                    if *st.service != *service {
                        st.plan = new_plan();
                    }
                    st.namespaces = ns.clone();
                    st.service = service.clone();
                    st.listeners.clear();
                    id
                }
                None => {
                    let id = self.next_service_id;
                    self.next_service_id += 1;
                    self.services.insert(
                        id,
                        ServiceState {
                            id,
                            limits: ServiceLimits::new(
                                service.max_connections,
                                service.max_per_source,
                                service.rate,
                                now,
                            ),
                            service: service.clone(),
                            plan: new_plan(),
                            namespaces: ns.clone(),
                            counters: Counters::default(),
                            listeners: Vec::new(),
                            paused: None,
                            fail_streak: 0,
                            pre_exec: 0,
                            failure_bucket: TokenBucket::new(
                                Rate {
                                    tokens: NOWAIT_FAILURES_PER_SEC,
                                    per: Duration::from_secs(1),
                                },
                                now,
                            ),
                            wait_starts: TokenBucket::new(
                                Rate {
                                    tokens: WAIT_STARTS_PER_SEC,
                                    per: Duration::from_secs(1),
                                },
                                now,
                            ),
                            last_resource_log: None,
                            refusal_log: LogBudget::default(),
                            pending: None,
                            proxied: VecDeque::new(),
                        },
                    );
                    id
                }
            };
            new_order.push(id);
            for slot in listeners {
                let is_new = slot.token.is_none();
                let token = slot.token.unwrap_or_else(|| self.token());
                // A kept UDP builtin keeps its server (chargen's rotation).
                let udp = match (service.builtin(), slot.listener.key.socket) {
                    (Some(kind), SocketType::Dgram) => slot
                        .udp
                        .filter(|u| u.kind() == kind)
                        .or_else(|| Some(builtins::UdpServer::new(kind))),
                    _ => None,
                };
                let mut entry = ListenerEntry {
                    listener: slot.listener,
                    service_id: id,
                    busy: slot.busy,
                    udp,
                };
                if is_new {
                    if entry.busy {
                        // Held by a wait child (after an upgrade).
                    } else if let Err(e) = self.poll.registry().register(
                        &mut SourceFd(&entry.listener.fd.as_raw_fd()),
                        token,
                        Interest::READABLE,
                    ) {
                        error!(
                            "cannot watch service={} addr={} error={}",
                            service.name,
                            quote(&entry.listener.local),
                            quote(&e.to_string())
                        );
                        entry.busy = true;
                    }
                    info!(
                        "listening service={} addr={} socket={}{}",
                        service.name,
                        quote(&entry.listener.local),
                        entry.listener.key.socket,
                        if entry.listener.inherited {
                            " inherited=yes"
                        } else {
                            ""
                        }
                    );
                }
                self.services
                    .get_mut(&id)
                    .expect("just inserted")
                    .listeners
                    .push(token);
                self.listeners.insert(token, entry);
            }
            if !service.enabled {
                info!("disabled service={}", service.name);
            }
        }
        // Services that are gone: their states go (children keep running
        // and are still reaped and logged by name).
        let live: std::collections::HashSet<u64> = new_order.iter().copied().collect();
        self.services.retain(|id, _| live.contains(id));
        self.order = new_order;
        self.udp_ports = self
            .listeners
            .values()
            .filter(|e| e.udp.is_some())
            .filter_map(|e| e.listener.port)
            .collect();
        self.udp_ports.sort_unstable();
        self.udp_ports.dedup();
        // Loading a large configuration peaks well above what stays alive
        // (the YAML event list, the old maps): give that memory back.
        crate::sys::trim_heap();
        // Every listener may have connections waiting: drain them all.
        let tokens: Vec<Token> = self.listeners.keys().copied().collect();
        for t in tokens {
            self.drain_listener(t);
        }
    }

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
                self.timers
                    .peek()
                    .map(|Reverse((at, _))| at.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    error!("poll failed error={}", quote(&e.to_string()));
                }
                continue;
            }
            // Builtin sessions that move much (chargen to many readers at
            // once) share the turn's byte budget; past it they wait, and go
            // first next turn, ahead of the events (where the sessions that
            // used this turn's budget come again): every session gets its
            // turn. Then the events, then what stopped on a budget of its
            // own last turn.
            let ready = std::mem::take(&mut self.ready);
            let waited = std::mem::take(&mut self.deferred);
            let mut moved = 0;
            let mut deferred: Vec<Token> = Vec::new();
            let mut seen_deferred = std::collections::HashSet::new();
            for token in waited
                .into_iter()
                .chain(events.iter().map(|e| e.token()))
                .chain(ready)
            {
                if token == SIGNAL_TOKEN {
                    self.on_signals();
                } else if self.listeners.contains_key(&token) {
                    self.drain_listener(token);
                } else if self.sessions.contains_key(&token) {
                    if moved < TURN_BYTES {
                        moved += self.pump_session(token);
                    } else if seen_deferred.insert(token) {
                        deferred.push(token);
                    }
                } else if self.pipes.contains_key(&token) {
                    self.read_stderr(token);
                } else if self.execs.contains_key(&token) {
                    self.exec_settled(token);
                } else if self.headers.contains_key(&token) {
                    self.read_header(token);
                } else if let Some(&pid) = self.pidfds.get(&token) {
                    self.reap_one(pid);
                }
            }
            self.deferred = deferred;
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

    fn on_signals(&mut self) {
        let mut got = Vec::new();
        self.signals.drain(|e| got.push(e));
        for e in got {
            match e {
                signals::Event::Reload => self.reload_pending = true,
                signals::Event::Status => self.status_pending = true,
                signals::Event::Child => self.reap_pending = true,
                signals::Event::Upgrade => {
                    if self.upgrade_pending.is_none() {
                        self.upgrade_pending = Some(Instant::now() + upgrade::EXEC_WAIT);
                    }
                }
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

    // ---- accepting ----------------------------------------------------

    /// Accepts on `token` until the backlog is empty or a limit says stop.
    fn drain_listener(&mut self, token: Token) {
        if self.upgrade_pending.is_some() {
            // An upgrade waits for the children in exec: new connections
            // wait in the backlog (the next image drains every listener).
            return;
        }
        let mut accepted = 0;
        loop {
            // A flood on one listener must not starve the others, signals
            // or reaping: after a batch it waits its turn on the ready list
            // (no new edge would come for what is already queued).
            if accepted == ACCEPT_BATCH {
                self.ready.push(token);
                return;
            }
            let Some(entry) = self.listeners.get(&token) else {
                return;
            };
            if entry.busy {
                return;
            }
            let sid = entry.service_id;
            let Some(st) = self.services.get_mut(&sid) else {
                return;
            };
            let now = Instant::now();
            if let Some((_, until)) = st.paused {
                if now < until {
                    return;
                }
                st.paused = None;
            }
            // Connections whose PROXY header is read go first: they hold
            // their max_connections slots already.
            if !st.proxied.is_empty() && !exec_gated(st) {
                let conn = st.proxied.pop_front().expect("not empty");
                st.limits.connection_ended(None);
                self.start_connection(sid, conn);
                continue;
            }
            if st.limits.at_capacity() {
                // superd stops watching the listener: a pause, until a
                // connection ends (connection_ended).
                st.counters
                    .paused
                    .begin(PauseReason::MaxConnections, now, None);
                return;
            }
            if st.counters.paused.is_open(PauseReason::MaxConnections) {
                // Below the limit again (a reload raised it).
                st.counters.paused.end(PauseReason::MaxConnections, now);
            }
            if exec_gated(st) {
                // Enough of its children are on their way to exec: the
                // next connection waits in the backlog, in order, rather
                // than in the scheduler's run queue (see PRE_EXEC_MAX). A
                // service whose last exec failed has one at a time: the
                // next failure must be known before another start.
                return;
            }
            if let Some(conn) = st.pending.take() {
                self.start_connection(sid, conn);
                continue;
            }
            let service = st.service.clone();
            let entry = self.listeners.get(&token).expect("checked above");
            if service.wait && service.builtin().is_none() {
                // The listening/bound socket itself goes to one child.
                self.spawn_wait(sid, token);
                return;
            }
            if entry.listener.key.socket == SocketType::Dgram {
                self.serve_udp(sid, token);
                return;
            }
            if let Err(at) = st.limits.rate_ready(now) {
                st.pause(Pause::Rate, at, now);
                self.timer(at, Timer::Resume(sid));
                return;
            }
            match entry.listener.accept() {
                Ok(conn) => {
                    accepted += 1;
                    let st = self.services.get_mut(&sid).expect("live");
                    let _ = st.limits.take_rate_token(now);
                    st.counters.accepted += 1;
                    debug!("accept service={} peer={}", service.name, conn.peer);
                    if service.proxy.is_some() {
                        self.wait_header(sid, conn);
                    } else if self.admit(sid, &conn) {
                        self.start_connection(sid, conn);
                    } else {
                        self.close_after_log(conn.fd);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_resource_error(&e) => {
                    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
                    self.pause_for_resources(sid, "accept", errno);
                    return;
                }
                // ECONNABORTED and friends: that connection is gone, go on.
                Err(e) if is_connection_error(&e) => debug!(
                    "accept failed service={} error={}",
                    service.name,
                    quote(&e.to_string())
                ),
                // Anything else (EINVAL on a socket no longer listening,
                // an LSM's EACCES) would fail again at once: pause, so
                // the loop goes on with signals and other services.
                Err(e) => {
                    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
                    self.pause_accepting(sid, Pause::AcceptError, "accept", errno);
                    return;
                }
            }
        }
    }

    /// Pauses accepting for RESOURCE_PAUSE after `errno` at `what`; the
    /// error reads as in every other line (`exec failed`): strerror alone.
    fn pause_for_resources(&mut self, sid: u64, what: &str, errno: Errno) {
        self.pause_accepting(sid, Pause::Resources, what, errno);
    }

    /// Pauses accepting on `sid` for RESOURCE_PAUSE after `errno` at
    /// `what`, logged at most once per RESOURCE_LOG_INTERVAL.
    fn pause_accepting(&mut self, sid: u64, why: Pause, what: &str, errno: Errno) {
        let now = Instant::now();
        let until = now + RESOURCE_PAUSE;
        let Some(st) = self.services.get_mut(&sid) else {
            return;
        };
        st.pause(why, until, now);
        let log_now = st
            .last_resource_log
            .is_none_or(|t| now.duration_since(t) >= RESOURCE_LOG_INTERVAL);
        if log_now {
            st.last_resource_log = Some(now);
            if why == Pause::Resources {
                warn!(
                    "out of resources service={} step={what} error={} pause={}",
                    st.service.name,
                    quote(errno.desc()),
                    children::secs(RESOURCE_PAUSE)
                );
            } else {
                warn!(
                    "cannot accept service={} error={} pause={}",
                    st.service.name,
                    quote(errno.desc()),
                    children::secs(RESOURCE_PAUSE)
                );
            }
        }
        self.timer(until, Timer::Resume(sid));
    }

    /// Access rules and the per-source limit; `false` when refused (the
    /// connection is closed when dropped by the caller).
    fn admit(&mut self, sid: u64, conn: &Accepted) -> bool {
        let st = self.services.get_mut(&sid).expect("live");
        let Some(ip) = conn.peer.ip() else {
            return true;
        };
        let verdict = access::check(ip, st.service.only_from.as_deref(), &st.service.deny_from)
            .and_then(|()| st.limits.admit_source(source_key(ip)));
        match verdict {
            Ok(()) => true,
            Err(reason) => {
                st.counters.refuse(reason);
                warn!(
                    "refused service={} peer={}{} reason={}",
                    st.service.name,
                    conn.peer,
                    proxy_field(conn.proxy.as_deref().map(|r| r.proxy)),
                    reason.as_str()
                );
                if let Some(msg) = &st.service.refuse_message {
                    listener::send_refusal(conn.fd.as_fd(), msg);
                }
                false
            }
        }
    }

    /// Starts a child or a builtin session for an admitted connection.
    fn start_connection(&mut self, sid: u64, conn: Accepted) {
        let st = self.services.get_mut(&sid).expect("live");
        let service = st.service.clone();
        let source = conn.peer.ip().map(source_key);
        if matches!(conn.peer, Peer::Inet(_)) && service.socket == SocketType::Stream {
            listener::set_connection_options(conn.fd.as_fd(), service.keepalive, service.nodelay);
        }
        match &service.program {
            Program::Builtin(kind) => {
                st.limits.connection_started();
                st.counters.served += 1;
                self.start_session(sid, &service, *kind, conn, source);
            }
            Program::Exec { .. } => {
                let plan = st.plan.clone().expect("exec services have a plan");
                let local = |remote| {
                    conn.local
                        .or_else(|| listener::local_inet(conn.fd.as_fd()))
                        .unwrap_or_else(|| canonical_addr(remote))
                };
                let info = match (conn.peer, conn.proxy.as_deref()) {
                    (Peer::Inet(remote), None) => ConnInfo::Tcp {
                        remote,
                        local: local(remote),
                    },
                    (Peer::Inet(remote), Some(relayed)) => ConnInfo::TcpProxied {
                        remote,
                        local: local(remote),
                        proxy: &relayed.vars,
                    },
                    (Peer::Unix { pid, uid, gid }, _) => ConnInfo::Unix { pid, uid, gid },
                };
                // What was logged about this connection is written before
                // its program can answer.
                crate::logging::flush();
                match spawn_child(&mut self.fence, &plan, conn.fd.as_fd(), &info) {
                    Ok((spawned, cgroup)) => {
                        let pid = spawned.pid.as_raw();
                        let st = self.services.get_mut(&sid).expect("live");
                        st.limits.connection_started();
                        let proxy = conn.proxy.map(|r| r.proxy);
                        self.child_started(
                            sid,
                            &service,
                            spawned,
                            Some(conn.peer),
                            source,
                            None,
                            Some(conn.fd),
                            cgroup,
                        );
                        if let Some(p) = proxy {
                            self.mark_proxied(pid, conn.peer, p);
                        }
                    }
                    Err(e) => {
                        // fork failed: keep the connection, with its
                        // per-source slot, and start it first when the
                        // pause ends.
                        let st = self.services.get_mut(&sid).expect("live");
                        st.pending = Some(conn);
                        self.pause_for_resources(sid, "fork", e);
                    }
                }
            }
        }
    }

    /// Records a started child and watches its way to exec (see
    /// `exec_settled`). `conn` is superd's copy of a nowait connection,
    /// kept until the outcome is known.
    #[allow(clippy::too_many_arguments)]
    fn child_started(
        &mut self,
        sid: u64,
        service: &Rc<Service>,
        spawned: spawn::Spawned,
        peer: Option<Peer>,
        source: Option<SourceKey>,
        wait_listener: Option<Token>,
        conn: Option<OwnedFd>,
        cgroup: Option<ConnCgroup>,
    ) {
        let now = Instant::now();
        let pid = spawned.pid.as_raw();
        let token = self.token();
        let mut pidfd_watched = true;
        let pidfd = spawned.pidfd.map(|fd| {
            let t = self.token();
            pidfd_watched = self
                .poll
                .registry()
                .register(&mut SourceFd(&fd.as_raw_fd()), t, Interest::READABLE)
                .is_ok();
            self.pidfds.insert(t, pid);
            (fd, t)
        });
        let crowded = pidfd
            .as_ref()
            .is_some_and(|(fd, _)| self.parking.due(fd.as_raw_fd(), now));
        self.children.insert(
            spawned.pid,
            Child {
                service_id: sid,
                service: service.name.clone(),
                peer,
                source,
                started: now,
                serial: {
                    self.next_serial += 1;
                    self.next_serial
                },
                wait_listener,
                timed_out: false,
                killed: false,
                exec_failed: false,
                exec: Some(token),
                success: service.success_status,
                cgroup,
                strays: Vec::new(),
                proxy: None,
                pidfd,
            },
        );
        debug!("spawn service={} pid={pid}", service.name);
        if crowded {
            for c in self.children.iter_mut() {
                if let Some((fd, t)) = c.pidfd.as_mut() {
                    let _ = spawn::fdpark::park(fd, *t, self.poll.registry(), c.started, now);
                }
            }
            for (t, p) in self.pipes.iter_mut() {
                if let Some(c) = self.children.get(p.pid) {
                    let _ =
                        spawn::fdpark::park(&mut p.file, *t, self.poll.registry(), c.started, now);
                }
            }
        }
        if !pidfd_watched {
            self.timer(now + EXEC_CHECK, Timer::PidfdCheck(pid, self.next_serial));
        }
        if let Some(t) = service.timeout {
            self.timer(now + t, Timer::ChildTimeout(pid, self.next_serial));
        }
        if let Some(fd) = spawned.stderr {
            self.watch_stderr(fd, &service.name, pid);
        }
        let watched = self
            .poll
            .registry()
            .register(
                &mut SourceFd(&spawned.exec.fd().as_raw_fd()),
                token,
                Interest::READABLE,
            )
            .is_ok();
        self.execs.insert(
            token,
            ExecWait {
                pid,
                service_id: sid,
                service: service.name.clone(),
                proxied: None,
                pending: spawned.exec,
                conn,
            },
        );
        // A service whose last child failed before exec starts no other
        // until this one's outcome is known (see `drain_listener`), so its
        // failures stay paced one by one; the loop never waits for it: a
        // slow or stopped child holds up only its own service.
        if let Some(st) = self.services.get_mut(&sid) {
            st.pre_exec += 1;
        }
        if !watched {
            self.timer(now + EXEC_CHECK, Timer::ExecCheck(token));
        }
    }

    /// The child behind `token` is past exec, or failed before it: logs and
    /// paces a failure, closes superd's copy of the connection. `None`
    /// while the child has not got there yet; else whether it failed.
    fn exec_settled(&mut self, token: Token) -> Option<bool> {
        let outcome = self.execs.get_mut(&token)?.pending.poll()?;
        let w = self.execs.remove(&token).expect("present");
        if let Some(st) = self.services.get_mut(&w.service_id) {
            // Room for another start: the service's listeners go on.
            if st.pre_exec == PRE_EXEC_MAX || st.fail_streak > 0 {
                self.ready.extend_from_slice(&st.listeners);
            }
            st.pre_exec = st.pre_exec.saturating_sub(1);
        }
        let failed = outcome.is_some();
        let mut wait_listener = None;
        if let Some(c) = self.children.get_mut(w.pid) {
            c.exec_failed = failed;
            c.exec = None;
            wait_listener = c.wait_listener;
        }
        let now = Instant::now();
        match (outcome, self.services.get_mut(&w.service_id)) {
            (None, Some(st)) => {
                st.fail_streak = 0;
                st.counters.served += 1;
            }
            (None, None) => {}
            (Some(f), st) => {
                // Behind a proxy, the line says for whom (superd.8, LOGS).
                let proxied = w
                    .proxied
                    .map(|(peer, proxy)| format!(" peer={peer} proxy={proxy}"))
                    .unwrap_or_default();
                error!(
                    "exec failed service={} step={} error=\"{}\"{proxied}",
                    w.service,
                    f.step.as_str(),
                    f.errno.desc()
                );
                // The datagram that started a UDP wait child is still
                // queued (the child read nothing): one attempt only, or it
                // would start the next child, and the next, for ever.
                if let Some(entry) = wait_listener.and_then(|t| self.listeners.get(&t))
                    && entry.listener.key.socket == SocketType::Dgram
                    && let Ok(peer) = datagram_source(entry.listener.fd.as_fd(), false)
                {
                    warn!(
                        "datagram dropped service={} peer={} reason=exec_failed",
                        w.service,
                        peer.map_or_else(|| "-".to_owned(), |p| canonical_addr(p).to_string())
                    );
                }
                if let Some(st) = st {
                    st.counters.exec_failures += 1;
                    st.fail_streak += 1;
                    // Pace a program that keeps failing: wait mode backs off
                    // (the unread datagram or connection would otherwise
                    // respawn it at once); nowait is held to a failure rate.
                    let delay = if st.service.wait {
                        let shift = st.fail_streak.saturating_sub(1).min(10);
                        Some((WAIT_BACKOFF_START * (1u32 << shift)).min(WAIT_BACKOFF_CAP))
                    } else {
                        // This failure spends a token; if none is left for
                        // the next attempt, wait until there is one.
                        let _ = st.failure_bucket.try_take(now);
                        let next = st.failure_bucket.next_token_at(now);
                        (next > now).then(|| next.saturating_duration_since(now))
                    };
                    if let Some(d) = delay {
                        let until = now + d.max(Duration::from_millis(1));
                        st.pause(Pause::ExecFailures, until, now);
                        self.timer(until, Timer::Resume(w.service_id));
                    }
                }
            }
        }
        // The peer sees its connection close only after the line is out.
        if let Some(fd) = w.conn
            && failed
        {
            self.close_after_log(fd);
        }
        Some(failed)
    }

    /// wait mode: hands the listening/bound socket to one child.
    fn spawn_wait(&mut self, sid: u64, token: Token) {
        let st = self.services.get(&sid).expect("live");
        let service = st.service.clone();
        let Some(plan) = st.plan.clone() else {
            return;
        };
        // pass: listen_fds: one child gets every socket of the service, so
        // none starts while another has them.
        let listen_fds = service.pass == PassMode::ListenFds;
        if listen_fds
            && st
                .listeners
                .iter()
                .any(|t| self.listeners.get(t).is_some_and(|e| e.busy))
        {
            return;
        }
        let at_start = service.start == StartMode::AtStart;
        let entry = self.listeners.get_mut(&token).expect("live");
        // Only when there is something to serve: a readable socket (or,
        // with start: at_start, at once).
        let mut pfd = [nix::poll::PollFd::new(
            entry.listener.fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if !at_start
            && !matches!(
                nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO),
                Ok(1)
            )
        {
            return;
        }
        let revents = pfd[0].revents().unwrap_or(nix::poll::PollFlags::empty());
        if !at_start && !revents.contains(nix::poll::PollFlags::POLLIN) {
            // Only a pending socket error (an ICMP report on a datagram
            // socket): reading SO_ERROR clears it; no child for that.
            let _ = socket::getsockopt(&entry.listener.fd, socket::sockopt::SocketError);
            return;
        }
        if !at_start
            && entry.listener.key.socket == SocketType::Dgram
            && (service.only_from.is_some() || !service.deny_from.is_empty())
            && !self.admit_datagram(sid, token)
        {
            return;
        }
        // `rate` paces a wait service's children as it paces accepts;
        // without one, a child that ends at once and leaves its socket
        // readable must not make a tight loop.
        let now = Instant::now();
        let st = self.services.get_mut(&sid).expect("live");
        if let Err(at) = st.limits.take_rate_token(now) {
            st.pause(Pause::Rate, at, now);
            self.timer(at, Timer::Resume(sid));
            return;
        }
        if service.rate.is_none() && !st.wait_starts.try_take(now) {
            let until = now + LOOP_PAUSE;
            st.pause(Pause::Looping, until, now);
            // The datagrams its children leave unread would start the loop
            // again after every pause, for ever: they go, as xinetd
            // drains a UDP wait service's socket. (Connections waiting on
            // a stream socket stay: their clients can give up.)
            let entry = self.listeners.get(&token).expect("live");
            let dropped = if entry.listener.key.socket == SocketType::Dgram {
                drain_datagrams(entry.listener.fd.as_fd())
            } else {
                0
            };
            warn!(
                "looping service={} starts={WAIT_STARTS_PER_SEC} interval=1s pause={} dropped={dropped}",
                service.name,
                children::secs(LOOP_PAUSE)
            );
            self.timer(until, Timer::Resume(sid));
            return;
        }
        if listen_fds {
            self.spawn_listen_fds(sid, token, &service, &plan);
            return;
        }
        let entry = self.listeners.get_mut(&token).expect("live");
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&entry.listener.fd.as_raw_fd()));
        entry.busy = true;
        crate::logging::flush();
        let fd = entry.listener.fd.as_fd();
        match spawn_child(&mut self.fence, &plan, fd, &ConnInfo::None) {
            Ok((spawned, cgroup)) => {
                let st = self.services.get_mut(&sid).expect("live");
                st.limits.connection_started();
                st.counters.accepted += 1;
                self.child_started(
                    sid,
                    &service,
                    spawned,
                    None,
                    None,
                    Some(token),
                    None,
                    cgroup,
                );
            }
            Err(e) => {
                self.resume_wait_listener(token);
                self.pause_for_resources(sid, "fork", e);
            }
        }
    }

    /// wait mode with `pass: listen_fds`: every socket of the service, in
    /// `listen:` order, goes to one child; none is watched until it exits.
    fn spawn_listen_fds(
        &mut self,
        sid: u64,
        token: Token,
        service: &Rc<Service>,
        plan: &Rc<SpawnPlan>,
    ) {
        let tokens = self.services.get(&sid).expect("live").listeners.clone();
        for t in &tokens {
            if let Some(entry) = self.listeners.get_mut(t) {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&entry.listener.fd.as_raw_fd()));
                entry.busy = true;
            }
        }
        let fds: Vec<std::os::fd::BorrowedFd<'_>> = tokens
            .iter()
            .filter_map(|t| self.listeners.get(t))
            .map(|e| e.listener.fd.as_fd())
            .collect();
        crate::logging::flush();
        let result = start_in_cgroup(&mut self.fence, |cgroup| {
            spawn::spawn_listen_fds(plan, &fds, &ConnInfo::None, cgroup)
        });
        match result {
            Ok((spawned, cgroup)) => {
                let st = self.services.get_mut(&sid).expect("live");
                st.limits.connection_started();
                st.counters.accepted += 1;
                // Its sockets, by token: a reload may change the service's
                // list meanwhile, these are the ones to give back.
                self.listen_fds_children
                    .insert(spawned.pid.as_raw(), tokens);
                self.child_started(sid, service, spawned, None, None, Some(token), None, cgroup);
            }
            Err(e) => {
                self.resume_listeners(tokens);
                self.pause_for_resources(sid, "fork", e);
            }
        }
    }

    /// UDP wait with access rules: the source of the datagram at the head
    /// of the queue is peeked (the child still reads it) and checked; a
    /// refused datagram is read and dropped, as xinetd does. `true` when
    /// the head may start a child; a batch of refusals at most per call.
    fn admit_datagram(&mut self, sid: u64, token: Token) -> bool {
        for _ in 0..ACCEPT_BATCH {
            let (Some(entry), Some(st)) = (self.listeners.get(&token), self.services.get_mut(&sid))
            else {
                return false;
            };
            let fd = entry.listener.fd.as_fd();
            let verdict = match datagram_source(fd, true) {
                Ok(Some(peer)) => access::check(
                    peer.ip(),
                    st.service.only_from.as_deref(),
                    &st.service.deny_from,
                )
                .map_err(|r| (peer, r)),
                // No inet source (none on an inet socket): nothing to
                // check it against; it goes.
                Ok(None) => {
                    let _ = datagram_source(fd, false);
                    continue;
                }
                Err(Errno::EAGAIN) => return false,
                // EINTR, or an ICMP report the read has cleared: again.
                Err(_) => continue,
            };
            let Err((peer, reason)) = verdict else {
                return true;
            };
            let _ = datagram_source(fd, false);
            // Taken from the queue and refused: accepted, then refused
            // (metrics::Counters).
            st.counters.accepted += 1;
            st.counters.refuse(reason);
            log_refused_datagram(&mut st.refusal_log, &st.service.name, peer, reason);
        }
        self.ready.push(token);
        false
    }

    /// Gives the listeners of a `pass: listen_fds` child back to the loop
    /// after it ended: all of them before any is drained (a drain may
    /// start the next child, which takes them all again).
    fn resume_listeners(&mut self, tokens: Vec<Token>) {
        let mut drain = Vec::new();
        for t in tokens {
            if let Some(entry) = self.listeners.get_mut(&t)
                && entry.busy
            {
                let _ = listener::set_nonblocking(entry.listener.fd.as_fd(), true);
                entry.busy = self
                    .poll
                    .registry()
                    .register(
                        &mut SourceFd(&entry.listener.fd.as_raw_fd()),
                        t,
                        Interest::READABLE,
                    )
                    .is_err();
                drain.push(t);
            }
        }
        for t in drain {
            self.drain_listener(t);
        }
    }

    /// Gives a `wait` listener back to the loop after its child ended.
    fn resume_wait_listener(&mut self, token: Token) {
        let Some(entry) = self.listeners.get_mut(&token) else {
            return;
        };
        if !entry.busy {
            return;
        }
        let _ = listener::set_nonblocking(entry.listener.fd.as_fd(), true);
        entry.busy = self
            .poll
            .registry()
            .register(
                &mut SourceFd(&entry.listener.fd.as_raw_fd()),
                token,
                Interest::READABLE,
            )
            .is_err();
        self.drain_listener(token);
    }

    // ---- PROXY headers ------------------------------------------------------

    /// A connection accepted by a `proxy_protocol` service (superd.yaml(5),
    /// PROXY PROTOCOL): refused at once from outside `proxy_from`, else
    /// held, with a max_connections slot, until its header is read
    /// (`read_header`) or `proxy_timeout` passes.
    fn wait_header(&mut self, sid: u64, conn: Accepted) {
        let st = self.services.get_mut(&sid).expect("live");
        let Some(p) = st.service.proxy.as_ref() else {
            return;
        };
        if !conn.peer.ip().is_some_and(|ip| p.trusts(ip)) {
            st.counters.refuse(Refusal::ProxyFrom);
            warn!(
                "refused service={} peer={} reason={}",
                st.service.name,
                conn.peer,
                Refusal::ProxyFrom.as_str()
            );
            self.close_after_log(conn.fd);
            return;
        }
        let accept = p.accept;
        st.limits.connection_started();
        let token = self.token();
        self.headers.insert(
            token,
            HeaderWait {
                conn,
                service_id: sid,
                accept,
                watched: false,
            },
        );
        // A proxy writes the header as soon as it connects: it is most
        // often here already, and the connection goes on without a poll.
        self.read_header(token);
    }

    /// Looks at the first bytes of a connection waiting for its header:
    /// goes on with the client once it is read, refuses a bad one, or
    /// waits for more (watched, under `proxy_timeout`). mio is
    /// edge-triggered and a peek consumes nothing: each arrival of bytes
    /// is a new edge, and a peer that sends part of a header and then
    /// nothing is ended by the timer.
    fn read_header(&mut self, token: Token) {
        let Some(w) = self.headers.get_mut(&token) else {
            return;
        };
        match peek_header(w.conn.fd.as_fd(), w.accept) {
            HeaderRead::Wait => {
                if w.watched {
                    return;
                }
                w.watched = true;
                let sid = w.service_id;
                let registered = self.poll.registry().register(
                    &mut SourceFd(&w.conn.fd.as_raw_fd()),
                    token,
                    Interest::READABLE,
                );
                if let Err(e) = registered {
                    self.refuse_header(token, &format!("cannot watch: {e}"));
                    return;
                }
                let timeout = self
                    .services
                    .get(&sid)
                    .and_then(|st| st.service.proxy.as_ref())
                    .map_or(crate::service::ProxyConfig::DEFAULT_TIMEOUT, |p| p.timeout);
                self.timer(Instant::now() + timeout, Timer::ProxyHeader(token));
            }
            HeaderRead::Refuse(why) => self.refuse_header(token, &why),
            HeaderRead::Read(header) => {
                let w = self.headers.remove(&token).expect("present");
                if w.watched {
                    // Its builtin session or child registers it anew.
                    let _ = self
                        .poll
                        .registry()
                        .deregister(&mut SourceFd(&w.conn.fd.as_raw_fd()));
                }
                self.header_read(w, &header);
            }
        }
    }

    /// The header of `w` is read: the connection is the client's from now
    /// on (`peer` the client, `local` the address it connected to), for
    /// the access rules, `max_per_source`, the logs and the child.
    fn header_read(&mut self, w: HeaderWait, header: &proxy::Header) {
        let sid = w.service_id;
        let mut conn = w.conn;
        let Peer::Inet(proxy_addr) = conn.peer else {
            // Refused at load: a unix socket service reads no header.
            self.connection_ended(sid, None);
            return;
        };
        let local = conn
            .local
            .or_else(|| listener::local_inet(conn.fd.as_fd()))
            .unwrap_or(proxy_addr);
        let (remote, local) = header.connection(proxy_addr, local);
        conn.peer = Peer::Inet(remote);
        conn.local = Some(local);
        conn.proxy = Some(Box::new(proxy::Relayed {
            proxy: proxy_addr,
            vars: header.proxy_vars(proxy_addr),
        }));
        let Some(st) = self.services.get(&sid) else {
            // The service is gone (a reload): so is the connection.
            return;
        };
        debug!(
            "proxy header service={} peer={} proxy={proxy_addr}",
            st.service.name, conn.peer
        );
        if !self.admit(sid, &conn) {
            self.close_after_log(conn.fd);
            self.connection_ended(sid, None);
            return;
        }
        let st = self.services.get_mut(&sid).expect("live");
        if exec_gated(st) {
            // It keeps its slot and starts when the service may start one
            // (drain_listener), in order.
            st.proxied.push_back(conn);
            return;
        }
        // The slot it held is the one its session or child takes.
        st.limits.connection_ended(None);
        self.start_connection(sid, conn);
    }

    /// Ends a connection waiting for its header: `refused … reason=
    /// proxy_header`, closed, its slot released.
    fn refuse_header(&mut self, token: Token, why: &str) {
        let Some(w) = self.headers.remove(&token) else {
            return;
        };
        if let Some(st) = self.services.get_mut(&w.service_id) {
            st.counters.refuse(Refusal::ProxyHeader);
            warn!(
                "refused service={} peer={} reason={} error={}",
                st.service.name,
                w.conn.peer,
                Refusal::ProxyHeader.as_str(),
                quote(why)
            );
        }
        self.close_after_log(w.conn.fd);
        self.connection_ended(w.service_id, None);
    }

    /// Records the proxy of a child started for a proxied connection: its
    /// `exit` and `exec failed` lines name it.
    fn mark_proxied(&mut self, pid: i32, peer: Peer, proxy: SocketAddr) {
        if let Some(c) = self.children.get_mut(pid) {
            c.proxy = Some(proxy);
            if let Some(w) = c.exec.and_then(|t| self.execs.get_mut(&t)) {
                w.proxied = Some((peer, proxy));
            }
        }
    }

    // ---- builtins -------------------------------------------------------

    fn start_session(
        &mut self,
        sid: u64,
        service: &Rc<Service>,
        kind: crate::service::Builtin,
        conn: Accepted,
        source: Option<SourceKey>,
    ) {
        let now = Instant::now();
        let stream = match conn.peer {
            Peer::Inet(_) => Stream::Tcp(std::net::TcpStream::from(conn.fd)),
            Peer::Unix { .. } => Stream::Unix(std::os::unix::net::UnixStream::from(conn.fd)),
        };
        let mut entry = SessionEntry {
            session: match kind {
                crate::service::Builtin::Status => {
                    builtins::Session::reply(crate::status::document(&self.snapshot()))
                }
                _ => {
                    let t = builtins::now_unix();
                    builtins::Session::new(kind, t, offset_for(kind, t))
                }
            },
            stream,
            service_id: sid,
            service: service.name.clone(),
            peer: conn.peer,
            proxy: conn.proxy.map(|r| r.proxy),
            source,
            started: now,
            last_activity: now,
            idle_timeout: service.idle_timeout,
        };
        // Serve first: most sessions (daytime, time, a short echo) are over
        // in this one pump and never need epoll or a timer. Registering
        // afterwards is safe with edge triggering: epoll reports readiness
        // that already exists when the fd is added.
        let mut pump = match &mut entry.stream {
            Stream::Tcp(s) => entry.session.pump(s),
            Stream::Unix(s) => entry.session.pump(s),
        };
        if let Some(req) = entry.session.request() {
            entry.session.set_reply(self.metrics_reply(req));
            pump = match &mut entry.stream {
                Stream::Tcp(s) => entry.session.pump(s),
                Stream::Unix(s) => entry.session.pump(s),
            };
        }
        if pump.done {
            self.end_session_entry(entry, None);
            return;
        }
        let token = self.token();
        let raw = match &entry.stream {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        };
        if self
            .poll
            .registry()
            .register(
                &mut SourceFd(&raw),
                token,
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            self.end_session_entry(entry, None);
            return;
        }
        self.sessions.insert(token, entry);
        self.timer(now + service.idle_timeout, Timer::SessionIdle(token));
        if pump.again {
            self.ready.push(token);
        }
    }

    /// The HTTP response to a metrics session's request.
    fn metrics_reply(&self, req: metrics::Request) -> Vec<u8> {
        metrics::respond(req, || metrics::render(&self.snapshot()))
    }

    /// Moves a builtin session on; returns the bytes it moved.
    fn pump_session(&mut self, token: Token) -> u64 {
        let Some(entry) = self.sessions.get_mut(&token) else {
            return 0;
        };
        let before = entry.session.bytes_in() + entry.session.bytes_out();
        let mut pump = match &mut entry.stream {
            Stream::Tcp(s) => entry.session.pump(s),
            Stream::Unix(s) => entry.session.pump(s),
        };
        // A metrics request complete: answered, and the answer pumped.
        let entry = match entry.session.request() {
            Some(req) => {
                let reply = self.metrics_reply(req);
                let entry = self.sessions.get_mut(&token).expect("present");
                entry.session.set_reply(reply);
                let again = match &mut entry.stream {
                    Stream::Tcp(s) => entry.session.pump(s),
                    Stream::Unix(s) => entry.session.pump(s),
                };
                pump = builtins::Pump {
                    progressed: pump.progressed || again.progressed,
                    ..again
                };
                entry
            }
            None => entry,
        };
        let moved = entry.session.bytes_in() + entry.session.bytes_out() - before;
        if pump.progressed {
            entry.last_activity = Instant::now();
        }
        if pump.done {
            self.end_session(token, None);
        } else if pump.again {
            self.ready.push(token);
        }
        moved
    }

    fn end_session(&mut self, token: Token, reason: Option<&str>) {
        // No deregister: the session's fd is the only one referring to its
        // socket, and closing it (when the entry drops) takes it out of
        // the epoll set; an event already fetched for the token finds no
        // session and is ignored (tokens are not reused).
        if let Some(entry) = self.sessions.remove(&token) {
            self.end_session_entry(entry, reason);
        }
    }

    fn end_session_entry(&mut self, entry: SessionEntry, reason: Option<&str>) {
        let now = Instant::now();
        // A session that ended on an I/O error (the peer reset it, say)
        // says which.
        let error = entry
            .session
            .error()
            .map(|e| format!(" error={}", quote(&e.to_string())))
            .unwrap_or_default();
        info!(
            "exit service={} peer={}{} status=0 duration={} bytes_in={} bytes_out={}{}{error}",
            entry.service,
            entry.peer,
            proxy_field(entry.proxy),
            children::secs(now.duration_since(entry.started)),
            entry.session.bytes_in(),
            entry.session.bytes_out(),
            reason.map(|r| format!(" reason={r}")).unwrap_or_default()
        );
        if let Some(st) = self.services.get_mut(&entry.service_id) {
            st.counters.exit(
                children::Outcome::Ok,
                now.saturating_duration_since(entry.started),
            );
        }
        self.connection_ended(entry.service_id, entry.source);
        self.close_after_log(match entry.stream {
            Stream::Tcp(s) => s.into(),
            Stream::Unix(s) => s.into(),
        });
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

    /// Serves the queued datagrams of a UDP builtin (a budget at a time:
    /// `again` puts the listener on the ready list).
    fn serve_udp(&mut self, sid: u64, token: Token) {
        let Some(st) = self.services.get_mut(&sid) else {
            return;
        };
        let service = st.service.clone();
        let Some(entry) = self.listeners.get_mut(&token) else {
            return;
        };
        let Some(udp) = entry.udp.as_mut() else {
            return;
        };
        // `rate` counts datagrams here: over it, they wait in the socket's
        // receive buffer until a token is free, as connections wait in
        // the backlog.
        let now = Instant::now();
        if let Err(at) = st.limits.rate_ready(now) {
            st.pause(Pause::Rate, at, now);
            self.timer(at, Timer::Resume(sid));
            return;
        }
        let most = st
            .limits
            .rate_tokens(now)
            .map_or(usize::MAX, |n| n as usize);
        let sock = FdDatagram(entry.listener.fd.as_fd());
        let counters = &mut st.counters;
        let refusal_log = &mut st.refusal_log;
        let t = builtins::now_unix();
        let offset = offset_for(udp.kind(), t);
        let drain = udp.serve(
            &sock,
            t,
            offset,
            most,
            &self.udp_ports,
            |peer| match access::check(peer.ip(), service.only_from.as_deref(), &service.deny_from)
            {
                Ok(()) => {
                    counters.accepted += 1;
                    counters.served += 1;
                    true
                }
                Err(reason) => {
                    counters.accepted += 1;
                    counters.refuse(reason);
                    log_refused_datagram(refusal_log, &service.name, peer, reason);
                    false
                }
            },
        );
        for d in &drain.datagrams {
            // Every datagram read takes a token, refused or not.
            let _ = st.limits.take_rate_token(now);
            debug!(
                "datagram service={} peer={} bytes_in={} outcome={:?}",
                service.name,
                canonical_addr(d.peer),
                d.bytes_in,
                d.outcome
            );
        }
        if drain.again {
            self.ready.push(token);
        }
    }

    // ---- children ---------------------------------------------------------

    /// SIGCHLD: a `waitpid(-1)` sweep now, or when SWEEP_INTERVAL since
    /// the last one has passed (a timer; never later).
    fn sweep_soon(&mut self) {
        let now = Instant::now();
        let interval = if spawn::pidfd_works() {
            SWEEP_INTERVAL_PIDFD
        } else {
            SWEEP_INTERVAL
        };
        match self.last_sweep {
            Some(last) if now < last + interval => {
                if !self.sweep_due {
                    self.sweep_due = true;
                    self.timer(last + interval, Timer::Sweep);
                }
            }
            _ => self.reap(),
        }
    }

    /// The `waitpid(-1)` sweep: children without a pidfd, and orphans.
    fn reap(&mut self) {
        let now = Instant::now();
        self.last_sweep = Some(now);
        // Killed cgroups empty as their processes end (each of which was
        // reaped by superd or by a parent in the same cgroup).
        self.dying.retain(|c| !c.remove());
        for (pid, child, ended) in self.children.reap() {
            self.child_ended(pid, child, ended, now);
        }
    }

    /// The child `pid`'s pidfd is readable: reaps it alone; whether it was.
    fn reap_one(&mut self, pid: i32) -> bool {
        let Some((pid, child, ended)) = self.children.reap_pidfd(pid) else {
            return false;
        };
        if !self.dying.is_empty() {
            self.dying.retain(|c| !c.remove());
        }
        self.child_ended(pid, child, ended, Instant::now());
        true
    }

    /// A reaped child: its exit line, what it left, its slots.
    fn child_ended(&mut self, pid: i32, mut child: Child, ended: children::Ended, now: Instant) {
        // A child that died before exec: its report first (its end of
        // the pipe is closed with it, so the report is all there), then
        // its exit.
        if let Some(token) = child.exec
            && let Some(failed) = self.exec_settled(token)
        {
            child.exec_failed = failed;
        }
        // Closing the pidfd (with `child`) takes it out of epoll too.
        if let Some((_, token)) = &child.pidfd {
            self.pidfds.remove(token);
        }
        let outcome = children::log_exit(pid, &child, ended, now);
        if let Some(st) = self.services.get_mut(&child.service_id) {
            st.counters
                .exit(outcome, now.saturating_duration_since(child.started));
        }
        self.after_child(pid, &mut child, now);
        if let Some(token) = child.wait_listener {
            self.connection_ended(child.service_id, None);
            match self.listen_fds_children.remove(&pid) {
                Some(tokens) => self.resume_listeners(tokens),
                None => self.resume_wait_listener(token),
            }
        } else {
            self.connection_ended(child.service_id, child.source);
        }
    }

    /// What a reaped child left behind (see "Process trees" in superd.8):
    /// its cgroup is removed when empty; after a timeout the pending
    /// ChildKill is for what still runs; after a normal exit, what still
    /// runs in its cgroup gets SIGTERM now and SIGKILL kill_grace later.
    fn after_child(&mut self, pid: i32, child: &mut Child, now: Instant) {
        let cgroup = child.cgroup.take().and_then(|c| self.fence.release(c));
        let strays = std::mem::take(&mut child.strays);
        let lingering = |timed_out, cgroup, strays| Lingering {
            service: child.service.clone(),
            pid,
            ended: children::boot_ticks(),
            timed_out,
            cgroup,
            strays,
        };
        if child.timed_out && !child.killed {
            if cgroup.is_some() || !strays.is_empty() || children::group_alive(pid) {
                self.lingering
                    .insert(child.serial, lingering(true, cgroup, strays));
            }
            return;
        }
        let Some(cgroup) = cgroup else {
            return;
        };
        if child.killed {
            cgroup.kill();
            self.dying.push(cgroup);
            return;
        }
        let n = cgroup.signal(Signal::SIGTERM);
        info!(
            "leftover service={} pid={pid} processes={n} signal=SIGTERM",
            child.service
        );
        let grace = self
            .services
            .get(&child.service_id)
            .map_or(Duration::from_secs(5), |s| s.service.kill_grace);
        self.lingering
            .insert(child.serial, lingering(false, Some(cgroup), Vec::new()));
        self.timer(now + grace, Timer::ChildKill(pid, child.serial));
    }

    /// A connection of `sid` is over: release its slots and, if the
    /// service was at its cap, accept again.
    fn connection_ended(&mut self, sid: u64, source: Option<SourceKey>) {
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

    fn watch_stderr(&mut self, fd: OwnedFd, service: &str, pid: i32) {
        let token = self.token();
        if self
            .poll
            .registry()
            .register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)
            .is_ok()
        {
            self.pipes.insert(
                token,
                StderrPipe {
                    file: File::from(fd),
                    service: service.to_string(),
                    pid,
                    buf: Vec::new(),
                    cut: false,
                },
            );
        }
    }

    fn read_stderr(&mut self, token: Token) {
        let Some(pipe) = self.pipes.get_mut(&token) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        let mut reads = 0;
        let eof = loop {
            // A child that writes stderr without pause must not hold the
            // loop: after a budget, this pipe waits its turn (ready list).
            if reads == STDERR_READS_PER_TURN {
                self.ready.push(token);
                break false;
            }
            reads += 1;
            match pipe.file.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => {
                    pipe.buf.extend_from_slice(&chunk[..n]);
                    // A line of at most STDERR_LINE_MAX bytes goes whole;
                    // a longer one in pieces of at most that, each cut at
                    // a character boundary and marked (it goes on in the
                    // next record), wherever it falls in the reads.
                    loop {
                        let end = match pipe.buf.iter().position(|&b| b == b'\n') {
                            Some(i) if i <= STDERR_LINE_MAX => i + 1,
                            _ if pipe.buf.len() > STDERR_LINE_MAX => utf8_cut(&pipe.buf),
                            _ => break,
                        };
                        let rest = pipe.buf.split_off(end);
                        let line = std::mem::replace(&mut pipe.buf, rest);
                        let cut = line.last() != Some(&b'\n');
                        let was_cut = std::mem::replace(&mut pipe.cut, cut);
                        if !(was_cut && line.iter().all(|&b| b == b'\r' || b == b'\n')) {
                            log_stderr_line(pipe, &line, cut);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        if eof {
            let pipe = self.pipes.remove(&token).expect("present");
            if !pipe.buf.is_empty() {
                log_stderr_line(&pipe, &pipe.buf, false);
            }
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&pipe.file.as_raw_fd()));
        }
    }

    // ---- timers -------------------------------------------------------------

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, t))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match t {
                Timer::Resume(sid) => {
                    let Some(st) = self.services.get(&sid) else {
                        continue;
                    };
                    if st.paused.is_some_and(|(_, until)| until > now) {
                        continue;
                    }
                    for t in st.listeners.clone() {
                        self.drain_listener(t);
                    }
                }
                Timer::ChildTimeout(pid, serial) => {
                    let grace = match self.children.get_mut(pid) {
                        Some(c) if !c.timed_out && c.serial == serial => {
                            c.timed_out = true;
                            let g = self
                                .services
                                .get(&c.service_id)
                                .map(|s| s.service.kill_grace)
                                .unwrap_or(Duration::from_secs(5));
                            warn!("timeout service={} pid={pid} signal=SIGTERM", c.service);
                            match &c.cgroup {
                                // Every process in it once: the group's and
                                // what left it (setsid).
                                Some(cg) => {
                                    if cg.signal(Signal::SIGTERM) == 0 {
                                        children::signal_child(pid, c, Signal::SIGTERM);
                                    }
                                }
                                // Without a cgroup, what descends from the
                                // child, recorded for its SIGKILL; read
                                // before the SIGTERM, which may end the
                                // child and orphan them.
                                None => {
                                    let table = tree::processes();
                                    let below = tree::descendants(pid, &table);
                                    children::signal_child(pid, c, Signal::SIGTERM);
                                    for p in below {
                                        if p.pgid != pid {
                                            let _ = nix::sys::signal::kill(
                                                nix::unistd::Pid::from_raw(p.pid),
                                                Signal::SIGTERM,
                                            );
                                        }
                                        c.strays.push(tree::Stray {
                                            pid: p.pid,
                                            started: p.started,
                                        });
                                    }
                                }
                            }
                            g
                        }
                        _ => continue,
                    };
                    self.timer(now + grace, Timer::ChildKill(pid, serial));
                }
                Timer::ChildKill(pid, serial) => {
                    if let Some(c) = self.children.get_mut(pid)
                        && c.serial == serial
                        && c.timed_out
                    {
                        c.killed = true;
                        children::signal_child(pid, c, Signal::SIGKILL);
                        match &c.cgroup {
                            Some(cg) => cg.kill(),
                            None => {
                                let _ = tree::signal_strays(&c.strays, Signal::SIGKILL);
                                let table = tree::processes();
                                for p in tree::descendants(pid, &table) {
                                    let _ = nix::sys::signal::kill(
                                        nix::unistd::Pid::from_raw(p.pid),
                                        Signal::SIGKILL,
                                    );
                                }
                            }
                        }
                        continue;
                    }
                    // The child ended, and something it started kept
                    // running (and maybe the connection open): the SIGKILL
                    // is for what is left of it. When the pid is a newer
                    // child's now, so is the group number: it is never
                    // signalled for the old one.
                    let reused = self.children.get(pid).is_some();
                    if let Some(l) = self.lingering.remove(&serial) {
                        self.kill_lingering(l, reused);
                    }
                }
                Timer::ExecCheck(token) => {
                    if self.execs.contains_key(&token) && self.exec_settled(token).is_none() {
                        self.timer(now + EXEC_CHECK, Timer::ExecCheck(token));
                    }
                }
                Timer::ProxyHeader(token) => {
                    if self.headers.contains_key(&token) {
                        self.refuse_header(token, "no complete header within proxy_timeout");
                    }
                }
                Timer::Sweep => {
                    self.sweep_due = false;
                    self.reap();
                }
                Timer::PidfdCheck(pid, serial) => {
                    if self.children.get(pid).is_some_and(|c| c.serial == serial)
                        && !self.reap_one(pid)
                    {
                        self.timer(now + EXEC_CHECK, Timer::PidfdCheck(pid, serial));
                    }
                }
                Timer::SessionIdle(token) => {
                    let Some(s) = self.sessions.get(&token) else {
                        continue;
                    };
                    let due = s.last_activity + s.idle_timeout;
                    if due <= now {
                        self.end_session(token, Some("idle_timeout"));
                    } else {
                        self.timer(due, Timer::SessionIdle(token));
                    }
                }
            }
        }
    }

    /// SIGKILL for every child and everything descending from superd:
    /// with cgroups, at once through each connection's cgroup.kill first.
    fn kill_everything(&mut self, me: i32) {
        let cgroups = self
            .children
            .iter()
            .filter_map(|(_, c)| c.cgroup.as_ref())
            .chain(self.lingering.values().filter_map(|l| l.cgroup.as_ref()))
            .chain(self.dying.iter());
        for cg in cgroups {
            cg.kill();
        }
        self.children.signal_all(Signal::SIGKILL);
        for p in tree::descendants(me, &tree::processes()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), Signal::SIGKILL);
        }
    }

    /// SIGKILL for what outlived a child (see `after_child`), logged when
    /// anything was left.
    fn kill_lingering(&mut self, l: Lingering, pid_reused: bool) {
        let mut killed =
            l.timed_out && !pid_reused && children::kill_leftover_group(l.pid, l.ended);
        if let Some(cg) = l.cgroup {
            if cg.populated() {
                cg.kill();
                killed = true;
            }
            if !cg.remove() {
                self.dying.push(cg);
            }
        }
        if tree::signal_strays(&l.strays, Signal::SIGKILL) > 0 {
            killed = true;
        }
        if killed && l.timed_out {
            warn!(
                "timeout service={} pgid={} signal=SIGKILL",
                l.service, l.pid
            );
        } else if killed {
            warn!(
                "leftover service={} pid={} signal=SIGKILL",
                l.service, l.pid
            );
        }
    }

    // ---- reload -------------------------------------------------------------

    /// SIGHUP (SPEC §6): validate everything first; keep every listening
    /// socket whose key is unchanged; bind new addresses before closing
    /// anything; roll back whole if one cannot be bound.
    fn reload(&mut self) {
        self.notifier.reloading();
        info!("reloading");
        let config = match self.source.load() {
            Ok(c) => c,
            Err(errors) => {
                for e in &errors {
                    error!("config error: {e}");
                }
                error!(
                    "reload failed errors={} (the running configuration is unchanged)",
                    errors.len()
                );
                self.reloads_failed += 1;
                self.notifier.notify("READY=1");
                return;
            }
        };
        let old: HashMap<String, u64> = self
            .services
            .values()
            .map(|s| (s.service.name.clone(), s.id))
            .collect();
        // Namespaces before sockets: a fence that cannot be set up fails
        // the reload with nothing changed.
        let namespaces = match self.namespaces_for(&config.services, &old) {
            Ok(n) => n,
            Err(e) => {
                error!("reload failed: {e} (the running configuration is unchanged)");
                self.notifier.notify("READY=1");
                return;
            }
        };
        // Every current listener is offered for reuse, by key; it stays
        // registered with mio under its token while it waits in the pool.
        let mut pool: HashMap<ListenerKey, Vec<Slot>> = HashMap::new();
        for (token, e) in self.listeners.drain() {
            pool.entry(e.listener.key.clone()).or_default().push(Slot {
                token: Some(token),
                service_id: e.service_id,
                busy: e.busy,
                listener: e.listener,
                udp: e.udp,
                adjust: None,
            });
        }
        match bind_all(&config.services, &mut pool, &old, &mut HashMap::new()) {
            Ok(bound) => {
                let n = config.services.len();
                let changes = self.reload_changes(&config.services);
                // The new listeners (bound above) are logged first, then
                // what is closed: the log tells the order it happened in.
                self.install(config.services, bound, old, namespaces);
                // What is left in the pool is no longer configured. Its
                // socket file goes too, if its path still names it (a new
                // listener bound at the same path, for a changed socket
                // type, has a file of its own there).
                for (_, slots) in pool.drain() {
                    for mut slot in slots {
                        if !slot.busy {
                            let _ = self
                                .poll
                                .registry()
                                .deregister(&mut SourceFd(&slot.listener.fd.as_raw_fd()));
                        }
                        info!("closed addr={}", quote(&slot.listener.local));
                        slot.listener.remove_socket_file();
                    }
                }
                changes.log(n);
                self.reloads_ok += 1;
            }
            Err(e) => {
                error!("reload failed: {e} (rolled back; the running configuration is unchanged)");
                self.reloads_failed += 1;
                for (_, slots) in pool.drain() {
                    for slot in slots {
                        let token = slot.token.expect("only old listeners return to the pool");
                        self.listeners.insert(
                            token,
                            ListenerEntry {
                                listener: slot.listener,
                                service_id: slot.service_id,
                                busy: slot.busy,
                                udp: slot.udp,
                            },
                        );
                    }
                }
            }
        }
        self.notifier.notify("READY=1");
    }

    /// What a reload to `new` adds, removes and changes, by service name.
    fn reload_changes(&self, new: &[Service]) -> ReloadChanges {
        let mut c = ReloadChanges::default();
        let running: HashMap<&str, &Service> = self
            .services
            .values()
            .map(|s| (s.service.name.as_str(), &*s.service))
            .collect();
        for s in new {
            match running.get(s.name.as_str()) {
                None => c.added.push(s.name.clone()),
                Some(old) => {
                    let fields = old.changed_fields(s);
                    if fields.is_empty() {
                        c.unchanged += 1;
                    } else {
                        c.changed.push((s.name.clone(), fields));
                    }
                }
            }
        }
        let mut removed: Vec<&str> = running
            .keys()
            .copied()
            .filter(|name| !new.iter().any(|s| s.name == *name))
            .collect();
        removed.sort_unstable();
        c.removed = removed.into_iter().map(str::to_owned).collect();
        c
    }

    // ---- status and shutdown --------------------------------------------

    /// What status, SIGUSR1 and metrics show, taken now (never on the
    /// accept path: a status or metrics connection, or SIGUSR1, asks).
    fn snapshot(&self) -> metrics::Snapshot {
        let now = Instant::now();
        // The listeners a wait child holds right now: a `pass: listen_fds`
        // child holds every socket of its service.
        let held: std::collections::HashSet<Token> = self
            .children
            .iter()
            .filter_map(|(_, c)| c.wait_listener)
            .chain(self.listen_fds_children.values().flatten().copied())
            .collect();
        let services = self
            .order
            .iter()
            .filter_map(|id| self.services.get(id))
            .map(|st| {
                let s = &st.service;
                let mut listeners: Vec<metrics::ListenerView> = st
                    .listeners
                    .iter()
                    .filter_map(|t| self.listeners.get(t))
                    .map(|e| metrics::ListenerView {
                        address: e.listener.local.clone(),
                        queue: (e.listener.key.socket == SocketType::Stream
                            && !e.listener.key.addr.is_unix())
                        .then(|| crate::sys::tcp_listen_queue(e.listener.fd.as_fd()))
                        .flatten(),
                    })
                    .collect();
                if listeners.is_empty() {
                    // Not listening (disabled): the addresses it is
                    // declared on.
                    listeners = s
                        .listen
                        .iter()
                        .map(|a| metrics::ListenerView {
                            address: a.to_string(),
                            queue: None,
                        })
                        .collect();
                }
                metrics::ServiceView {
                    name: s.name.clone(),
                    socket: s.socket.as_str(),
                    program: match &s.program {
                        Program::Exec { path, .. } => path.display().to_string(),
                        Program::Builtin(b) => format!("builtin {b}"),
                    },
                    listeners,
                    state: self.service_state(st, &held, now),
                    active: st.limits.active(),
                    max_connections: st.limits.max_connections(),
                    // Accepted, not yet served or refused: children on
                    // their way to exec, a connection held after fork
                    // failed, and connections waiting for (or admitted
                    // after) their PROXY header.
                    pending: st.pre_exec as u64
                        + u64::from(st.pending.is_some())
                        + st.proxied.len() as u64
                        + self
                            .headers
                            .values()
                            .filter(|w| w.service_id == st.id)
                            .count() as u64,
                    counters: st.counters,
                    paused_seconds: PauseReason::ALL.map(|r| st.counters.paused.seconds(r, now)),
                }
            })
            .collect();
        let mut children: Vec<metrics::ConnectionView> = self
            .children
            .iter()
            .map(|(pid, c)| metrics::ConnectionView {
                service: c.service.clone(),
                pid: Some(pid),
                peer: c.peer.map(|p| p.to_string()),
                proxy: c.proxy.map(|p| p.to_string()),
                age: now.saturating_duration_since(c.started),
            })
            .collect();
        children.sort_by_key(|c| c.pid);
        let mut sessions: Vec<metrics::ConnectionView> = self
            .sessions
            .values()
            .map(|s| metrics::ConnectionView {
                service: s.service.clone(),
                pid: None,
                peer: Some(s.peer.to_string()),
                proxy: s.proxy.map(|p| p.to_string()),
                age: now.saturating_duration_since(s.started),
            })
            .collect();
        sessions.sort_by_key(|s| std::cmp::Reverse(s.age));
        metrics::Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            start_time: self.started_unix,
            reloads_ok: self.reloads_ok,
            reloads_failed: self.reloads_failed,
            log_lines_dropped: crate::logging::dropped_total(),
            services,
            children,
            sessions,
            process: crate::sys::process_view(),
        }
    }

    /// The state of a service (superd(8), STATUS AND METRICS): a wait
    /// service whose child holds every socket is `child_running`, not
    /// listening (superd does not watch them).
    fn service_state(
        &self,
        st: &ServiceState,
        held: &std::collections::HashSet<Token>,
        now: Instant,
    ) -> metrics::ServiceState {
        if !st.service.enabled {
            metrics::ServiceState::Disabled
        } else if !st.listeners.is_empty() && st.listeners.iter().all(|t| held.contains(t)) {
            metrics::ServiceState::ChildRunning
        } else if let Some((p, _)) = st.paused.filter(|(_, until)| *until > now) {
            p.state()
        } else if st.limits.at_capacity() {
            metrics::ServiceState::PausedMaxConnections
        } else {
            metrics::ServiceState::Listening
        }
    }

    /// The `status` lines of SIGUSR1 (superd(8), LOGS).
    fn log_status(&self) {
        let snap = self.snapshot();
        info!(
            "status services={} children={} sessions={} proxy_headers={}",
            snap.services.len(),
            snap.children.len(),
            snap.sessions.len(),
            self.headers.len()
        );
        for s in &snap.services {
            let c = &s.counters;
            let addrs: Vec<&str> = s.listeners.iter().map(|l| l.address.as_str()).collect();
            let mut line = format!(
                "status service={} addr={} state={} active={} accepted={} served={}",
                s.name,
                if addrs.is_empty() {
                    "-".to_string()
                } else {
                    quote(&addrs.join(","))
                },
                s.state.as_str(),
                s.active,
                c.accepted,
                c.served
            );
            for r in Refusal::ALL {
                line.push_str(&format!(" refused_{}={}", r.as_str(), c.refused_by(r)));
            }
            line.push_str(&format!(
                " exec_failures={} pending={}",
                c.exec_failures, s.pending
            ));
            for o in children::Outcome::ALL {
                line.push_str(&format!(" exits_{}={}", o.as_str(), c.exits_by(o)));
            }
            for (r, secs) in PauseReason::ALL.iter().zip(s.paused_seconds) {
                line.push_str(&format!(" paused_{}={secs:.3}s", r.as_str()));
            }
            info!("{line}");
        }
        for c in &snap.children {
            info!(
                "status child service={} pid={} peer={}{} age={}",
                c.service,
                c.pid.unwrap_or(0),
                c.peer.as_deref().unwrap_or("-"),
                c.proxy
                    .as_deref()
                    .map(|p| format!(" proxy={p}"))
                    .unwrap_or_default(),
                children::secs(c.age)
            );
        }
        for s in &snap.sessions {
            info!(
                "status session service={} peer={}{} age={}",
                s.service,
                s.peer.as_deref().unwrap_or("-"),
                s.proxy
                    .as_deref()
                    .map(|p| format!(" proxy={p}"))
                    .unwrap_or_default(),
                children::secs(s.age)
            );
        }
    }

    /// Shutdown: the sweep and every child with a pidfd that ended.
    fn reap_everything(&mut self) {
        self.reap();
        let now = Instant::now();
        for (pid, child, ended) in self.children.reap_all_pidfds() {
            self.child_ended(pid, child, ended, now);
        }
    }

    fn shutdown_now(mut self) -> crate::ExitCode {
        self.notifier.notify("STOPPING=1");
        for (_, mut e) in self.listeners.drain() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&e.listener.fd.as_raw_fd()));
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
                    .filter(|&g| self.children.get(g).is_none())
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
                    let _ = self.poll.poll(&mut events, Some(Duration::from_millis(20)));
                    self.signals.drain(|_| {});
                }
                break;
            }
            // No event says a tree emptied: look again every 20 ms.
            let wait = (deadline - now).min(Duration::from_millis(20));
            let _ = self.poll.poll(&mut events, Some(wait));
            for ev in events.iter() {
                if self.pipes.contains_key(&ev.token()) {
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

/// Starts a child for a connection, in a new cgroup of its own when there
/// are cgroups (see crate::tree). If the kernel refuses that cgroup for
/// another reason than a lack of resources, the child starts without it.
fn spawn_child(
    fence: &mut Fence,
    plan: &Rc<SpawnPlan>,
    sock: std::os::fd::BorrowedFd<'_>,
    info: &ConnInfo,
) -> Result<(spawn::Spawned, Option<ConnCgroup>), Errno> {
    start_in_cgroup(fence, |cgroup| spawn::spawn(plan, sock, info, cgroup))
}

/// Runs `start` with a cgroup of the child's own when the fence has one
/// (superd(8), PROCESS TREES), or without one when there is none or the
/// kernel refuses it (other than `EAGAIN`/`ENOMEM`, which are the
/// caller's to handle).
fn start_in_cgroup(
    fence: &mut Fence,
    start: impl Fn(Option<std::os::fd::BorrowedFd<'_>>) -> Result<spawn::Spawned, Errno>,
) -> Result<(spawn::Spawned, Option<ConnCgroup>), Errno> {
    let Some(mut cgroup) = fence.prepare() else {
        return start(None).map(|s| (s, None));
    };
    match start(cgroup.dir()) {
        Ok(s) => {
            cgroup.started();
            Ok((s, Some(cgroup)))
        }
        Err(e) => {
            cgroup.remove();
            if matches!(e, Errno::EAGAIN | Errno::ENOMEM) {
                return Err(e);
            }
            fence.refused(&cgroup, e);
            start(None).map(|s| (s, None))
        }
    }
}

/// Enough of a service's children are on their way to exec that the next
/// connection waits (see PRE_EXEC_MAX); one at a time after a failure.
fn exec_gated(st: &ServiceState) -> bool {
    st.pre_exec >= PRE_EXEC_MAX || st.fail_streak > 0 && st.pre_exec > 0
}

/// ` proxy=ADDR` for a connection behind a proxy, else nothing.
fn proxy_field(proxy: Option<SocketAddr>) -> String {
    proxy.map(|p| format!(" proxy={p}")).unwrap_or_default()
}

/// Peeks at the start of a connection (up to the most a header of
/// `accept` may take: 107 bytes for v1, 4096 otherwise) and parses it;
/// when a header is complete, reads exactly its bytes off the socket and
/// no more, so the program's first read is the client's first byte.
fn peek_header(fd: std::os::fd::BorrowedFd<'_>, accept: proxy::Accept) -> HeaderRead {
    let cap = match accept {
        proxy::Accept::V1 => proxy::V1_MAX,
        proxy::Accept::V2 | proxy::Accept::Any => proxy::V2_MAX,
    };
    let mut buf = [0u8; proxy::V2_MAX];
    let peek = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
    let n = loop {
        match socket::recv(fd.as_raw_fd(), &mut buf[..cap], peek) {
            Ok(0) => return HeaderRead::Refuse("closed before a complete header".into()),
            Ok(n) => break n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return HeaderRead::Wait,
            Err(e) => return HeaderRead::Refuse(e.desc().into()),
        }
    };
    let (header_len, header) = match proxy::parse(&buf[..n], accept) {
        proxy::Parse::Complete { header_len, header } => (header_len, header),
        proxy::Parse::Invalid(why) => return HeaderRead::Refuse(why.to_string()),
        // Every header fits the cap (the parser refuses longer ones): a
        // full buffer that is still incomplete is not one.
        proxy::Parse::Incomplete { .. } if n == cap => {
            return HeaderRead::Refuse("longer than a PROXY header".into());
        }
        // A peek returns what is queued even after the peer's FIN, so the
        // edge that reported a close looks like one without new bytes: a
        // peer that has stopped sending is asked about (one more call,
        // only for a header that is not all there).
        proxy::Parse::Incomplete { .. } if crate::sys::peer_shut_down(fd) => {
            return HeaderRead::Refuse("closed before a complete header".into());
        }
        proxy::Parse::Incomplete { .. } => return HeaderRead::Wait,
    };
    // The bytes are queued (just peeked): one read takes them, never more.
    let mut got = 0;
    while got < header_len {
        match socket::recv(
            fd.as_raw_fd(),
            &mut buf[got..header_len],
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(0) => return HeaderRead::Refuse("closed before a complete header".into()),
            Ok(k) => got += k,
            Err(Errno::EINTR) => continue,
            Err(e) => return HeaderRead::Refuse(e.desc().into()),
        }
    }
    HeaderRead::Read(header)
}

/// Where to cut `buf` (longer than STDERR_LINE_MAX) into a piece of at
/// most STDERR_LINE_MAX bytes: before the UTF-8 character that would
/// straddle the limit, so no character is split in two (bytes that are not
/// UTF-8 are cut at the limit).
fn utf8_cut(buf: &[u8]) -> usize {
    let continuation = |i: usize| buf[i] & 0xc0 == 0x80;
    let mut k = STDERR_LINE_MAX;
    while k > STDERR_LINE_MAX - 3 && continuation(k) {
        k -= 1;
    }
    if continuation(k) { STDERR_LINE_MAX } else { k }
}

/// Logs a refused datagram within the service's budget: one line per
/// REFUSAL_LOG_INTERVAL, the next one saying how many were not logged.
fn log_refused_datagram(budget: &mut LogBudget, service: &str, peer: SocketAddr, reason: Refusal) {
    if let Some(left_out) = budget.take(Instant::now(), REFUSAL_LOG_INTERVAL) {
        warn!(
            "refused service={service} peer={} reason={}{}",
            canonical_addr(peer),
            reason.as_str(),
            if left_out > 0 {
                format!(" suppressed={left_out}")
            } else {
                String::new()
            }
        );
    }
}

/// The inet source of a datagram (`None` for any other kind).
fn inet_source(ss: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = ss.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    ss.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

/// Reads the datagram at the head of the queue (`peek`: leaves it there)
/// for its source only: `Ok(None)` when it has no inet source.
fn datagram_source(fd: std::os::fd::BorrowedFd<'_>, peek: bool) -> nix::Result<Option<SocketAddr>> {
    let mut buf = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC;
    if peek {
        flags |= MsgFlags::MSG_PEEK;
    }
    let msg = socket::recvmsg::<SockaddrStorage>(fd.as_raw_fd(), &mut iov, None, flags)?;
    Ok(msg.address.as_ref().and_then(inet_source))
}

/// Reads and throws away what is queued on a datagram socket (at most a
/// bounded number, so a flood cannot hold the loop); returns how many.
fn drain_datagrams(fd: std::os::fd::BorrowedFd<'_>) -> usize {
    let mut buf = [0u8; 1];
    let flags = socket::MsgFlags::MSG_DONTWAIT | socket::MsgFlags::MSG_TRUNC;
    (0..10_000)
        .take_while(|_| socket::recv(fd.as_raw_fd(), &mut buf, flags).is_ok())
        .count()
}

fn log_stderr_line(pipe: &StderrPipe, line: &[u8], cut: bool) {
    let mut text = line;
    while let [rest @ .., b'\n' | b'\r'] = text {
        text = rest;
    }
    info!(
        "stderr service={} pid={} line={}{}",
        pipe.service,
        pipe.pid,
        crate::logging::quote_bytes(text),
        if cut { " cut=true" } else { "" }
    );
}

/// What a reload changed (superd(8), LOGS): a line per service added,
/// removed or changed, then the `reloaded` line with the counts.
#[derive(Default)]
struct ReloadChanges {
    added: Vec<String>,
    removed: Vec<String>,
    /// With the fields that changed.
    changed: Vec<(String, Vec<&'static str>)>,
    unchanged: usize,
}

impl ReloadChanges {
    fn log(&self, services: usize) {
        for name in &self.added {
            info!("service added service={name}");
        }
        for name in &self.removed {
            info!("service removed service={name}");
        }
        for (name, fields) in &self.changed {
            info!("service changed service={name} fields={}", fields.join(","));
        }
        info!(
            "reloaded services={services} added={} removed={} changed={} unchanged={}",
            self.added.len(),
            self.removed.len(),
            self.changed.len(),
            self.unchanged
        );
    }
}

/// A bound datagram socket seen through the builtins' trait.
struct FdDatagram<'a>(std::os::fd::BorrowedFd<'a>);

impl builtins::DatagramSocket for FdDatagram<'_> {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = socket::recvfrom::<SockaddrStorage>(self.0.as_raw_fd(), buf)
                .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
            let peer = from.as_ref().and_then(inet_source);
            // Datagrams without an inet source (none on an inet socket) are
            // skipped.
            if let Some(p) = peer {
                return Ok((n, p));
            }
        }
    }

    fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        let addr = SockaddrStorage::from(target);
        socket::sendto(self.0.as_raw_fd(), buf, &addr, MsgFlags::MSG_DONTWAIT)
            .map_err(|e| io::Error::from_raw_os_error(e as i32))
    }
}

/// A bind failure during start or reload.
#[derive(Debug)]
pub struct BindFailure(pub String);

impl std::fmt::Display for BindFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A listening socket between the loop and a (re)configuration: an old one
/// keeps its token and registration; a new one has no token yet.
struct Slot {
    token: Option<Token>,
    service_id: u64,
    busy: bool,
    listener: Listener,
    udp: Option<builtins::UdpServer>,
    /// The key an old socket takes once the whole reload has bound (its
    /// backlog, socket file mode and owner change then, so that a reload
    /// rolled back leaves them as they were).
    adjust: Option<ListenerKey>,
}

/// Takes the listener for `key` out of the pool for the service that had
/// the id `owner` before the reload (`None`: a new service): the same key,
/// or a socket that was configured with port 0 and got exactly the port
/// `key` names (an admin who pins the port the kernel chose keeps the
/// socket). A service gets its own socket back first; a port-0 socket
/// goes to no other service, since port 0 names no socket in particular
/// (several services on `127.0.0.1:0` have the same key, and each keeps
/// the port it was given).
fn take_from_pool(
    pool: &mut HashMap<ListenerKey, Vec<Slot>>,
    key: &ListenerKey,
    owner: Option<u64>,
) -> Option<Slot> {
    let any_port = key.addr.port() == Some(0);
    let mine = |s: &Slot| Some(s.service_id) == owner;
    if let Some(slots) = pool.get_mut(key) {
        if let Some(i) = slots.iter().position(mine) {
            return Some(slots.swap_remove(i));
        }
        if !any_port && let Some(slot) = slots.pop() {
            return Some(slot);
        }
    }
    // The same address with other options that an open socket can take
    // (backlog, socket file mode and owner): adjust it in place, once the
    // reload is known to succeed (bind_all), rather than fail to bind the
    // address a second time.
    let same_addr = |k: &ListenerKey, s: &Slot| {
        k.addr == key.addr && (!any_port || mine(s))
            || key.addr.port().is_some_and(|p| p != 0)
                && key.addr.with_port(0).as_ref() == Some(&k.addr)
                && s.listener.port == key.addr.port()
                && mine(s)
    };
    let found = pool.iter().find_map(|(k, slots)| {
        slots
            .iter()
            .position(|s| same_addr(k, s) && s.listener.can_adjust_to(key))
            .map(|i| (k.clone(), i))
    });
    let (k, i) = found?;
    let slots = pool.get_mut(&k)?;
    let mut slot = slots.swap_remove(i);
    slot.adjust = Some(key.clone());
    Some(slot)
}

/// Binds a listener for every address of every enabled service, taking an
/// existing one from `pool` when its key matches (reload). All or nothing:
/// on failure, listeners bound here are closed (their socket files
/// removed) and those taken from the pool are put back.
fn bind_all(
    services: &[Service],
    pool: &mut HashMap<ListenerKey, Vec<Slot>>,
    old: &HashMap<String, u64>,
    inherited: &mut HashMap<(usize, usize), Listener>,
) -> Result<Vec<Vec<Slot>>, BindFailure> {
    let mut out: Vec<Vec<Slot>> = Vec::with_capacity(services.len());
    let mut failure = None;
    'outer: for (si, s) in services.iter().enumerate() {
        let mut slots = Vec::new();
        if s.enabled {
            for i in 0..s.listen.len() {
                if let Some(listener) = inherited.remove(&(si, i)) {
                    slots.push(Slot {
                        token: None,
                        service_id: 0,
                        busy: false,
                        listener,
                        udp: None,
                        adjust: None,
                    });
                    continue;
                }
                let key = s.listener_key_at(i);
                if let Some(slot) = take_from_pool(pool, &key, old.get(&s.name).copied()) {
                    slots.push(slot);
                    continue;
                }
                // A socket file of ours at this path, whose socket cannot
                // take the new key (another socket type): moved aside
                // until the reload is known to succeed, and put back if it
                // is rolled back.
                if let crate::service::Address::UnixPath(path) = &key.addr
                    && let Some(old) = pool.values_mut().flatten().find(|slot| {
                        slot.listener
                            .socket_file
                            .as_ref()
                            .is_some_and(|f| f.path == *path)
                    })
                    && let Err(e) = old.listener.stash_socket_file()
                {
                    failure = Some(BindFailure(format!(
                        "service {}: cannot move the old socket file {} aside: {e}",
                        s.name,
                        path.display()
                    )));
                    out.push(slots);
                    break 'outer;
                }
                match Listener::bind(&key) {
                    Ok(listener) => slots.push(Slot {
                        token: None,
                        service_id: 0,
                        busy: false,
                        listener,
                        udp: None,
                        adjust: None,
                    }),
                    Err(e) => {
                        // The address is ours already, with options a
                        // socket cannot change once bound; or one of ours
                        // on the same port overlaps it (a wildcard and a
                        // specific address), and ours stays bound until
                        // the reload has bound everything new.
                        let in_use = e.error.kind() == io::ErrorKind::AddrInUse;
                        let held = in_use && pool.keys().any(|k| k.addr == key.addr);
                        let overlaps = in_use
                            && pool.iter().any(|(k, slots)| {
                                k.socket == key.socket
                                    && slots.iter().any(|s| {
                                        // The port actually bound (the key
                                        // may say 0).
                                        let bound =
                                            s.listener.port.and_then(|p| k.addr.with_port(p));
                                        bound
                                            .as_ref()
                                            .unwrap_or(&k.addr)
                                            .conflicts_with(k.v6only, &key.addr, key.v6only)
                                    })
                            });
                        let hint = if held {
                            " (v6only and reuse_port cannot change on a reload: restart superd)"
                        } else if overlaps {
                            " (an address this reload replaces holds that port: moving between a wildcard and a specific address on one port needs a restart of superd)"
                        } else {
                            ""
                        };
                        failure = Some(BindFailure(format!("service {}: {e}{hint}", s.name)));
                        out.push(slots);
                        break 'outer;
                    }
                }
            }
        }
        out.push(slots);
    }
    let Some(f) = failure else {
        // Everything is bound: the old sockets kept take their new options.
        for slot in out.iter_mut().flatten() {
            if let Some(key) = slot.adjust.take()
                && let Err(e) = slot.listener.adjust(&key)
            {
                warn!(
                    "cannot change socket options addr={} error={}",
                    quote(&slot.listener.local),
                    quote(&e.to_string())
                );
            }
        }
        return Ok(out);
    };
    // Roll back: old listeners go back to the pool, as they were; new ones
    // are dropped, which closes them and removes their socket files; then
    // socket files moved aside for them go back to their paths.
    for mut slot in out.into_iter().flatten() {
        if slot.token.is_some() {
            slot.adjust = None;
            pool.entry(slot.listener.key.clone())
                .or_default()
                .push(slot);
        }
    }
    for slot in pool.values_mut().flatten() {
        if let Err(e) = slot.listener.restore_socket_file() {
            error!(
                "cannot put the socket file back addr={} error={}",
                quote(&slot.listener.local),
                quote(&e.to_string())
            );
        }
    }
    Err(f)
}

/// Logs the warnings of a service's configuration (`--check` shows them).
fn config_warnings(service: &Service) {
    for n in &service.notes {
        if let Some((at, what)) = n.split_once(": warning: ") {
            warn!("config warning {at}: {what}");
        }
    }
}
