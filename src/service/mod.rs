//! The validated, immutable description of a service, as the config layer
//! produces it and every other module consumes it. Nothing here touches the
//! system: it is plain data, cheap to clone behind an `Rc`.
//!
//! [`ListenerKey`] decides what "the same socket" means on reload: two
//! services (old and new) whose keys match share the open listening socket.

use std::ffi::CString;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

mod address;
mod fences;
mod rlimit;
mod success;

pub use crate::access::{Cidr, canonical_addr, canonical_ip};
pub use address::{ANY_V4, ANY_V6, Address, SocketType};
pub use fences::{CAPABILITIES, Fences, capability_name};
pub use rlimit::{RlimValue, Rlimit, RlimitResource};
pub use success::{ExitMatch, SuccessStatus};

/// `builtin:` — served inside the event loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    Echo,
    Discard,
    Daytime,
    Chargen,
    Time,
    /// Prometheus metrics over HTTP (superd(8), STATUS AND METRICS).
    Metrics,
    /// One JSON document of superd's state (superd(8), STATUS AND METRICS).
    Status,
}

impl Builtin {
    pub const ALL: [Builtin; 7] = [
        Builtin::Echo,
        Builtin::Discard,
        Builtin::Daytime,
        Builtin::Chargen,
        Builtin::Time,
        Builtin::Metrics,
        Builtin::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Builtin::Echo => "echo",
            Builtin::Discard => "discard",
            Builtin::Daytime => "daytime",
            Builtin::Chargen => "chargen",
            Builtin::Time => "time",
            Builtin::Metrics => "metrics",
            Builtin::Status => "status",
        }
    }
}

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What runs for a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// `exec:` — `path` is resolved (absolute; inside `chroot` when set) and
    /// `argv[0]` is `argv0:` when set, else what the config wrote first.
    Exec {
        path: PathBuf,
        argv: Vec<String>,
    },
    Builtin(Builtin),
}

/// `stderr:` — where the child's fd 2 goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StderrMode {
    Socket,
    Log,
    Null,
}

impl StderrMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StderrMode::Socket => "socket",
            StderrMode::Log => "log",
            StderrMode::Null => "null",
        }
    }
}

/// `pass:` — how a child gets its socket (superd.yaml(5), SOCKET ACTIVATION).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassMode {
    /// On fds 0, 1 and 2, as inetd passes it.
    Stdio,
    /// On fds 3 and up, with `LISTEN_FDS`, `LISTEN_PID` and
    /// `LISTEN_FDNAMES`, as systemd's socket activation passes it.
    ListenFds,
}

impl PassMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PassMode::Stdio => "stdio",
            PassMode::ListenFds => "listen_fds",
        }
    }
}

/// `start:` — when a wait service's child starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// At the first connection or datagram.
    OnDemand,
    /// As soon as the listeners are bound, and again whenever it exits.
    AtStart,
}

impl StartMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StartMode::OnDemand => "on_demand",
            StartMode::AtStart => "at_start",
        }
    }
}

/// The identity a child runs as, resolved when the config loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (or the uid as text when the uid has no passwd entry).
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, exactly as they will be passed to setgroups.
    pub groups: Vec<u32>,
    pub home: PathBuf,
    pub shell: PathBuf,
}

/// `rate:` — `tokens` new connections per `per` (burst = tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub tokens: u32,
    pub per: Duration,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.per >= Duration::from_secs(60) {
            "m"
        } else {
            "s"
        };
        write!(f, "{}/{}", self.tokens, unit)
    }
}

/// The event loop's id of a running service: stable across reloads while
/// the service keeps its name, never reused (0: none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(pub u64);

/// A validated service. Built by the config layer (tests build their own
/// from [`Service::new`]); immutable after.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub name: String,
    /// The file the service was declared in (for messages).
    pub file: PathBuf,
    pub listen: Vec<Address>,
    pub socket: SocketType,
    pub wait: bool,
    pub program: Program,
    /// `None`: the child keeps superd's own identity (only possible when
    /// superd is not root).
    pub credentials: Option<Credentials>,
    pub cwd: PathBuf,
    pub chroot: Option<PathBuf>,
    pub umask: u32,
    pub nice: Option<i32>,
    /// `env:` in file order (a YAML mapping: keys unique).
    pub env: Vec<(String, String)>,
    pub stderr: StderrMode,
    pub max_connections: u32,
    pub max_per_source: Option<u32>,
    pub rate: Option<Rate>,
    /// `None`: everyone (the field is absent); `Some([])`: nobody, as
    /// an empty allow list says (and as xinetd's empty `only_from` does).
    pub only_from: Option<Vec<Cidr>>,
    pub deny_from: Vec<Cidr>,
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
    pub idle_timeout: Duration,
    /// Every configured rlimit. The default soft `nofile` of 1024 is not
    /// listed here: the spawn plan applies it when `nofile` is absent.
    pub rlimits: Vec<Rlimit>,
    pub backlog: i32,
    pub reuse_port: bool,
    pub v6only: bool,
    pub keepalive: bool,
    pub nodelay: bool,
    pub socket_mode: u32,
    pub socket_user: Option<u32>,
    pub socket_group: Option<u32>,
    pub enabled: bool,
    /// `no_new_privs`, `private_network`, `private_tmp`, the path lists
    /// and `capabilities`.
    pub fences: Fences,
    /// Exits that count as a normal end (`success_status`).
    pub success_status: SuccessStatus,
    /// `pass_env:` names of superd's own environment a child inherits.
    pub pass_env: Vec<String>,
    /// `refuse_message:` written to a refused TCP client before the close.
    pub refuse_message: Option<Vec<u8>>,
    /// What the load noticed besides the fields, each `file:line:column:
    /// text` (a port given by name; a `warning:` such as xinetd's network
    /// shorthand): shown by `--check` and logged at start.
    pub notes: Vec<String>,
    /// `proxy_protocol`, `proxy_from`, `proxy_timeout`: `None` when the
    /// service expects no PROXY header.
    pub proxy: Option<ProxyConfig>,
    /// The socket type of each address of `listen` given its own (a
    /// `{address, socket}` entry, wait mode only); `None` (or a list
    /// shorter than `listen`): the service's `socket`.
    pub listen_sockets: Vec<Option<SocketType>>,
    /// `pass:` — stdio (inetd) or listen_fds (socket activation).
    pub pass: PassMode,
    /// `fd_names:` — one per address; empty: the service name for each.
    pub fd_names: Vec<String>,
    /// `start:` — on_demand or at_start (wait mode only).
    pub start: StartMode,
}

/// A service behind a load balancer: every connection starts with a PROXY
/// header (superd.yaml(5), PROXY PROTOCOL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Which header versions are accepted.
    pub accept: crate::proxy::Accept,
    /// The proxies: a connection from anywhere else is refused. Never empty.
    pub from: Vec<Cidr>,
    /// The longest wait for a complete header.
    pub timeout: Duration,
}

impl ProxyConfig {
    /// `proxy_timeout`'s default.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Whether `peer` (the address accept returned) is one of the proxies
    /// in `proxy_from`; IPv4-mapped peers count as IPv4, as everywhere.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.from
            .iter()
            .any(|net| crate::access::cidr_contains(net, peer))
    }
}

impl Service {
    /// A stream service with every other field at its superd.yaml(5) default: no
    /// address, no user, nowait, cwd `/`, umask 022, stderr on the socket,
    /// max_connections 256, kill_grace 5 s, idle_timeout 60 s, backlog
    /// 1024, socket_mode 0666, enabled. The one place those defaults are
    /// written; the config layer fills in what the files say.
    pub fn new(name: String, file: PathBuf, program: Program) -> Service {
        Service {
            name,
            file,
            listen: Vec::new(),
            socket: SocketType::Stream,
            wait: false,
            program,
            credentials: None,
            cwd: PathBuf::from("/"),
            chroot: None,
            umask: 0o022,
            nice: None,
            env: Vec::new(),
            stderr: StderrMode::Socket,
            max_connections: 256,
            max_per_source: None,
            rate: None,
            only_from: None,
            deny_from: Vec::new(),
            timeout: None,
            kill_grace: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            rlimits: Vec::new(),
            backlog: 1024,
            reuse_port: false,
            v6only: false,
            keepalive: false,
            nodelay: false,
            socket_mode: 0o666,
            socket_user: None,
            socket_group: None,
            enabled: true,
            proxy: None,
            pass_env: Vec::new(),
            refuse_message: None,
            notes: Vec::new(),
            success_status: SuccessStatus::default(),
            fences: Fences::default(),
            listen_sockets: Vec::new(),
            pass: PassMode::Stdio,
            fd_names: Vec::new(),
            start: StartMode::OnDemand,
        }
    }

    /// The fields, by their configuration names, in which `new` differs
    /// from this service (for the reload log, superd(8)). `program` is
    /// `exec` or `builtin`; `credentials` is `user`, `group`, `groups`;
    /// `file` is `file` (the service moved). Every field is named below,
    /// so a field added to [`Service`] cannot be forgotten here.
    pub fn changed_fields(&self, new: &Service) -> Vec<&'static str> {
        let Service {
            name: _,
            file,
            listen,
            socket,
            wait,
            program,
            credentials,
            cwd,
            chroot,
            umask,
            nice,
            env,
            stderr,
            max_connections,
            max_per_source,
            rate,
            only_from,
            deny_from,
            timeout,
            kill_grace,
            idle_timeout,
            rlimits,
            backlog,
            reuse_port,
            v6only,
            keepalive,
            nodelay,
            socket_mode,
            socket_user,
            socket_group,
            enabled,
            success_status,
            pass_env,
            refuse_message,
            // What the load noticed follows from the fields compared here.
            notes: _,
            proxy,
            fences,
            listen_sockets,
            pass,
            fd_names,
            start,
        } = self;
        let mut out = Vec::new();
        macro_rules! cmp {
            ($($f:ident),*) => {$(
                if *$f != new.$f {
                    out.push(stringify!($f));
                }
            )*};
        }
        cmp!(file, listen, socket, wait);
        if *program != new.program {
            out.push(match new.program {
                Program::Exec { .. } => "exec",
                Program::Builtin(_) => "builtin",
            });
        }
        let (a, b) = (credentials.as_ref(), new.credentials.as_ref());
        if a.map(|c| (&c.user, c.uid)) != b.map(|c| (&c.user, c.uid)) {
            out.push("user");
        }
        if a.map(|c| c.gid) != b.map(|c| c.gid) {
            out.push("group");
        }
        if a.map(|c| &c.groups) != b.map(|c| &c.groups) {
            out.push("groups");
        }
        if a.map(|c| (&c.home, &c.shell)) != b.map(|c| (&c.home, &c.shell))
            && !out.contains(&"user")
        {
            // HOME and SHELL come from the user's passwd entry.
            out.push("user");
        }
        cmp!(
            cwd,
            chroot,
            umask,
            nice,
            env,
            stderr,
            max_connections,
            max_per_source,
            rate,
            only_from,
            deny_from,
            timeout,
            kill_grace,
            idle_timeout,
            rlimits,
            backlog,
            reuse_port,
            v6only,
            keepalive,
            nodelay,
            socket_mode,
            socket_user,
            socket_group,
            enabled,
            success_status,
            pass_env,
            refuse_message
        );
        if *listen_sockets != new.listen_sockets && !out.contains(&"listen") {
            // The per-address socket types of `listen:`.
            out.push("listen");
        }
        cmp!(pass, fd_names, start);
        // The fence fields, each by its own name (superd.yaml(5), FENCES).
        let Fences {
            no_new_privs,
            private_network,
            private_tmp,
            read_only_paths,
            writable_paths,
            inaccessible_paths,
            capabilities,
        } = fences;
        let nf = &new.fences;
        for (changed, name) in [
            (*no_new_privs != nf.no_new_privs, "no_new_privs"),
            (*private_network != nf.private_network, "private_network"),
            (*private_tmp != nf.private_tmp, "private_tmp"),
            (*read_only_paths != nf.read_only_paths, "read_only_paths"),
            (*writable_paths != nf.writable_paths, "writable_paths"),
            (
                *inaccessible_paths != nf.inaccessible_paths,
                "inaccessible_paths",
            ),
            (*capabilities != nf.capabilities, "capabilities"),
        ] {
            if changed {
                out.push(name);
            }
        }
        // proxy_protocol (on, off, or which versions), proxy_from and
        // proxy_timeout, each by its own name.
        let (a, b) = (proxy.as_ref(), new.proxy.as_ref());
        if a.map(|p| &p.accept) != b.map(|p| &p.accept) {
            out.push("proxy_protocol");
        }
        if a.map(|p| &p.from) != b.map(|p| &p.from) {
            out.push("proxy_from");
        }
        if a.map(|p| p.timeout) != b.map(|p| p.timeout) {
            out.push("proxy_timeout");
        }
        out
    }

    /// The socket type of the `i`th address of `listen`.
    pub fn socket_at(&self, i: usize) -> SocketType {
        self.listen_sockets
            .get(i)
            .copied()
            .flatten()
            .unwrap_or(self.socket)
    }

    /// The key of the `i`th address of `listen`.
    pub fn listener_key_at(&self, i: usize) -> ListenerKey {
        ListenerKey {
            socket: self.socket_at(i),
            ..self.listener_key(&self.listen[i])
        }
    }

    /// The name the `i`th listening socket has in `LISTEN_FDNAMES`.
    pub fn fd_name(&self, i: usize) -> &str {
        self.fd_names.get(i).map_or(&self.name, String::as_str)
    }

    /// The key that decides whether a listening socket survives a reload.
    pub fn listener_key(&self, addr: &Address) -> ListenerKey {
        ListenerKey {
            addr: addr.clone(),
            socket: self.socket,
            backlog: self.backlog,
            reuse_port: self.reuse_port,
            v6only: self.v6only,
            socket_mode: self.socket_mode,
            socket_user: self.socket_user,
            socket_group: self.socket_group,
        }
    }

    pub fn builtin(&self) -> Option<Builtin> {
        match self.program {
            Program::Builtin(b) => Some(b),
            Program::Exec { .. } => None,
        }
    }
}

/// Everything that shapes a listening socket itself. Options that act on
/// accepted connections (`keepalive`, `nodelay`) are not part of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListenerKey {
    pub addr: Address,
    pub socket: SocketType,
    pub backlog: i32,
    pub reuse_port: bool,
    pub v6only: bool,
    pub socket_mode: u32,
    pub socket_user: Option<u32>,
    pub socket_group: Option<u32>,
}

/// A C string for a path or argument; config validation guarantees no NUL.
pub fn cstring(s: impl Into<Vec<u8>>) -> CString {
    CString::new(s).expect("config validation rejects NUL bytes")
}

#[cfg(test)]
mod tests;

/// `s` made a valid service name (`[A-Za-z0-9_.-]+`): every other
/// character becomes `_`, and nothing at all becomes `service`. Names the
/// one-line mode and `superd import` make up.
pub fn name_from(s: &str) -> String {
    let n: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if n.is_empty() { "service".into() } else { n }
}
