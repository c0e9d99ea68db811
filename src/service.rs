//! The validated, immutable description of a service, as the config layer
//! produces it and every other module consumes it. Nothing here touches the
//! system: it is plain data, cheap to clone behind an `Rc`.
//!
//! [`ListenerKey`] decides what "the same socket" means on reload: two
//! services (old and new) whose keys match share the open listening socket.

use std::ffi::CString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// `socket:` — the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocketType {
    Stream,
    Dgram,
    Seqpacket,
}

impl SocketType {
    pub fn as_str(self) -> &'static str {
        match self {
            SocketType::Stream => "stream",
            SocketType::Dgram => "dgram",
            SocketType::Seqpacket => "seqpacket",
        }
    }
}

impl fmt::Display for SocketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `listen:`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// `7007`, `:7007`, `*:7007`: every address, dual stack where the host
    /// has IPv6, `0.0.0.0` otherwise.
    AnyPort(u16),
    /// A specific IPv4 or IPv6 address (including `0.0.0.0` and `[::]`).
    Inet(SocketAddr),
    /// A unix socket at an absolute path.
    UnixPath(PathBuf),
    /// A Linux abstract unix socket, the name without the leading `@`.
    UnixAbstract(Vec<u8>),
}

impl Address {
    pub fn is_unix(&self) -> bool {
        matches!(self, Address::UnixPath(_) | Address::UnixAbstract(_))
    }

    /// The port, for inet addresses.
    pub fn port(&self) -> Option<u16> {
        match self {
            Address::AnyPort(p) => Some(*p),
            Address::Inet(sa) => Some(sa.port()),
            _ => None,
        }
    }

    /// The same address on another port (inet only).
    pub fn with_port(&self, port: u16) -> Option<Address> {
        match self {
            Address::AnyPort(_) => Some(Address::AnyPort(port)),
            Address::Inet(sa) => Some(Address::Inet(SocketAddr::new(sa.ip(), port))),
            _ => None,
        }
    }

    /// Whether two addresses of the same socket type would fight over the
    /// same port: equal, or a wildcard and anything it covers on the same
    /// non-zero port. `v6only` says whether each one's IPv6 wildcard is
    /// IPv6 only (then it leaves IPv4 addresses alone). Port 0 never
    /// conflicts (the kernel picks a free port).
    pub fn conflicts_with(&self, v6only: bool, other: &Address, other_v6only: bool) -> bool {
        match (self, other) {
            (Address::UnixPath(a), Address::UnixPath(b)) => a == b,
            (Address::UnixAbstract(a), Address::UnixAbstract(b)) => a == b,
            _ => {
                let (Some(pa), Some(pb)) = (self.port(), other.port()) else {
                    return false;
                };
                if pa == 0 || pb == 0 || pa != pb {
                    return false;
                }
                let (ia, ib) = (self.ip(), other.ip());
                ia == ib || covers(ia, v6only, ib) || covers(ib, other_v6only, ia)
            }
        }
    }

    /// The IP an inet address binds: `AnyPort` is the IPv6 wildcard (dual
    /// stack unless v6only).
    fn ip(&self) -> IpAddr {
        match self {
            Address::Inet(sa) => sa.ip(),
            _ => ANY_V6,
        }
    }
}

/// Whether the address `wild` (when it is a wildcard) covers `other`: the
/// IPv4 wildcard covers IPv4; the IPv6 wildcard covers IPv6, and IPv4 too
/// unless it is v6only.
fn covers(wild: IpAddr, v6only: bool, other: IpAddr) -> bool {
    match wild {
        IpAddr::V4(w) if w.is_unspecified() => other.is_ipv4(),
        IpAddr::V6(w) if w.is_unspecified() => other.is_ipv6() || !v6only,
        _ => false,
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::AnyPort(p) => write!(f, "*:{p}"),
            Address::Inet(sa) => write!(f, "{sa}"),
            Address::UnixPath(p) => write!(f, "{}", p.display()),
            Address::UnixAbstract(n) => write!(f, "@{}", String::from_utf8_lossy(n)),
        }
    }
}

/// `builtin:` — served inside the event loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    Echo,
    Discard,
    Daytime,
    Chargen,
    Time,
    /// Prometheus metrics over HTTP (superd(8), METRICS).
    Metrics,
    /// One JSON document of superd's state (superd(8), STATUS).
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

/// An IP network for `only_from` / `deny_from`; the address is stored with
/// its host bits cleared. IPv4-mapped IPv6 networks are stored as IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
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

/// The resources `rlimits:` may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RlimitResource {
    Nofile,
    Nproc,
    As,
    Data,
    Stack,
    Fsize,
    Core,
    Cpu,
    Memlock,
}

impl RlimitResource {
    pub const ALL: [RlimitResource; 9] = [
        RlimitResource::Nofile,
        RlimitResource::Nproc,
        RlimitResource::As,
        RlimitResource::Data,
        RlimitResource::Stack,
        RlimitResource::Fsize,
        RlimitResource::Core,
        RlimitResource::Cpu,
        RlimitResource::Memlock,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RlimitResource::Nofile => "nofile",
            RlimitResource::Nproc => "nproc",
            RlimitResource::As => "as",
            RlimitResource::Data => "data",
            RlimitResource::Stack => "stack",
            RlimitResource::Fsize => "fsize",
            RlimitResource::Core => "core",
            RlimitResource::Cpu => "cpu",
            RlimitResource::Memlock => "memlock",
        }
    }

    /// The resource as nix names it: the one table from `rlimits:` keys
    /// to the kernel's resources (what superd checks at load and what the
    /// child is given both come from it).
    pub fn resource(self) -> nix::sys::resource::Resource {
        use nix::sys::resource::Resource;
        match self {
            RlimitResource::Nofile => Resource::RLIMIT_NOFILE,
            RlimitResource::Nproc => Resource::RLIMIT_NPROC,
            RlimitResource::As => Resource::RLIMIT_AS,
            RlimitResource::Data => Resource::RLIMIT_DATA,
            RlimitResource::Stack => Resource::RLIMIT_STACK,
            RlimitResource::Fsize => Resource::RLIMIT_FSIZE,
            RlimitResource::Core => Resource::RLIMIT_CORE,
            RlimitResource::Cpu => Resource::RLIMIT_CPU,
            RlimitResource::Memlock => Resource::RLIMIT_MEMLOCK,
        }
    }

    /// The `RLIMIT_*` constant (nix's discriminants are libc's).
    pub fn raw(self) -> libc::__rlimit_resource_t {
        self.resource() as libc::__rlimit_resource_t
    }
}

/// One value of an rlimit: a number or `unlimited` (`None`).
pub type RlimValue = Option<u64>;

/// One configured rlimit. `soft: None` means `unlimited`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: RlimitResource,
    pub soft: RlimValue,
    pub hard: RlimValue,
}

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

/// One `success_status` entry: an exit status or a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitMatch {
    Status(u8),
    Signal(nix::sys::signal::Signal),
}

/// The exits of a child that count as a normal end of its connection
/// (`success_status`, as systemd's `SuccessExitStatus=`): status 0 always,
/// and the statuses and signals listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuccessStatus {
    /// Bit `n` for status `n`.
    codes: [u64; 4],
    /// Bit `n - 1` for signal `n`.
    signals: u64,
}

impl Default for SuccessStatus {
    fn default() -> SuccessStatus {
        SuccessStatus {
            codes: [1, 0, 0, 0],
            signals: 0,
        }
    }
}

impl SuccessStatus {
    /// Status 0 and every entry of `list`.
    pub fn new(list: &[ExitMatch]) -> SuccessStatus {
        let mut s = SuccessStatus::default();
        for m in list {
            match *m {
                ExitMatch::Status(n) => s.codes[usize::from(n / 64)] |= 1 << (n % 64),
                ExitMatch::Signal(sig) => s.signals |= Self::signal_bit(sig),
            }
        }
        s
    }

    fn signal_bit(sig: nix::sys::signal::Signal) -> u64 {
        1u64.checked_shl(sig as u32 - 1).unwrap_or(0)
    }

    /// Whether exit status `code` is a normal end.
    pub fn has_status(&self, code: i32) -> bool {
        u8::try_from(code).is_ok_and(|n| self.codes[usize::from(n / 64)] & (1 << (n % 64)) != 0)
    }

    /// Whether death by `sig` is a normal end.
    pub fn has_signal(&self, sig: nix::sys::signal::Signal) -> bool {
        self.signals & Self::signal_bit(sig) != 0
    }
}

/// `0,255,SIGPIPE`: the statuses in order, then the signals by number.
impl fmt::Display for SuccessStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let s = if first { "" } else { "," };
            first = false;
            f.write_str(s)
        };
        for n in 0..=255u8 {
            if self.has_status(n.into()) {
                sep(f)?;
                write!(f, "{n}")?;
            }
        }
        for sig in nix::sys::signal::Signal::iterator() {
            if self.has_signal(sig) {
                sep(f)?;
                f.write_str(sig.as_str())?;
            }
        }
        Ok(())
    }
}

/// Shows an IP as the logs and the environment do: IPv4-mapped IPv6
/// addresses as plain IPv4 (superd(8), THE CHILD and LIMITS AND ACCESS).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// `canonical_ip` for a socket address.
pub fn canonical_addr(sa: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(sa.ip()), sa.port())
}

/// The unspecified addresses, for callers matching wildcards.
pub const ANY_V4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
pub const ANY_V6: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// A C string for a path or argument; config validation guarantees no NUL.
pub fn cstring(s: impl Into<Vec<u8>>) -> CString {
    CString::new(s).expect("config validation rejects NUL bytes")
}

/// The fences of a service's children (superd.yaml(5), "Fences"): what
/// each child joins or drops between clone and exec. The namespaces are
/// made once per service when the configuration loads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Fences {
    pub no_new_privs: bool,
    pub private_network: bool,
    pub private_tmp: bool,
    pub read_only_paths: Vec<PathBuf>,
    pub writable_paths: Vec<PathBuf>,
    pub inaccessible_paths: Vec<PathBuf>,
    /// Capability numbers (linux/capability.h), in the order written.
    pub capabilities: Vec<u8>,
}

impl Fences {
    /// The fields that shape the service's mount namespace.
    pub fn needs_mount_namespace(&self) -> bool {
        self.private_tmp
            || !self.read_only_paths.is_empty()
            || !self.writable_paths.is_empty()
            || !self.inaccessible_paths.is_empty()
    }

    /// Whether the service needs namespaces of its own.
    pub fn needs_namespaces(&self) -> bool {
        self.private_network || self.needs_mount_namespace()
    }

    /// What the namespaces are made of: two services (or one across a
    /// reload) with equal keys could share them.
    pub fn namespace_key(&self) -> (bool, bool, &[PathBuf], &[PathBuf], &[PathBuf]) {
        (
            self.private_network,
            self.private_tmp,
            &self.read_only_paths,
            &self.writable_paths,
            &self.inaccessible_paths,
        )
    }
}

/// The capabilities `capabilities:` may name, as capabilities(7) spells
/// them, with their numbers (linux/capability.h).
pub const CAPABILITIES: [(&str, u8); 41] = [
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_LINUX_IMMUTABLE", 9),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_BROADCAST", 11),
    ("CAP_NET_ADMIN", 12),
    ("CAP_NET_RAW", 13),
    ("CAP_IPC_LOCK", 14),
    ("CAP_IPC_OWNER", 15),
    ("CAP_SYS_MODULE", 16),
    ("CAP_SYS_RAWIO", 17),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_PACCT", 20),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_BOOT", 22),
    ("CAP_SYS_NICE", 23),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_SYS_TIME", 25),
    ("CAP_SYS_TTY_CONFIG", 26),
    ("CAP_MKNOD", 27),
    ("CAP_LEASE", 28),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_AUDIT_CONTROL", 30),
    ("CAP_SETFCAP", 31),
    ("CAP_MAC_OVERRIDE", 32),
    ("CAP_MAC_ADMIN", 33),
    ("CAP_SYSLOG", 34),
    ("CAP_WAKE_ALARM", 35),
    ("CAP_BLOCK_SUSPEND", 36),
    ("CAP_AUDIT_READ", 37),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
    ("CAP_CHECKPOINT_RESTORE", 40),
];

/// The name of capability `n`.
pub fn capability_name(n: u8) -> &'static str {
    CAPABILITIES
        .iter()
        .find(|(_, c)| *c == n)
        .map_or("CAP_UNKNOWN", |(name, _)| name)
}
#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn success_status_always_has_zero_and_adds_the_list() {
        let d = SuccessStatus::default();
        assert!(d.has_status(0));
        assert!(!d.has_status(255) && !d.has_status(-1) && !d.has_status(256));
        assert!(!d.has_signal(Signal::SIGPIPE));
        assert_eq!(d.to_string(), "0");
        let s = SuccessStatus::new(&[
            ExitMatch::Signal(Signal::SIGPIPE),
            ExitMatch::Status(255),
            ExitMatch::Status(64),
            ExitMatch::Status(63),
            ExitMatch::Signal(Signal::SIGHUP),
        ]);
        for n in [0, 63, 64, 255] {
            assert!(s.has_status(n), "{n}");
        }
        for n in [1, 62, 65, 127, 254, 256, 0x1ff] {
            assert!(!s.has_status(n), "{n}");
        }
        assert!(s.has_signal(Signal::SIGPIPE) && s.has_signal(Signal::SIGHUP));
        assert!(!s.has_signal(Signal::SIGKILL) && !s.has_signal(Signal::SIGTERM));
        assert_eq!(s.to_string(), "0,63,64,255,SIGHUP,SIGPIPE");
        assert_eq!(SuccessStatus::new(&[ExitMatch::Status(0)]), d);
    }

    #[test]
    fn changed_fields_names_what_a_reload_changes() {
        let a = Service::new(
            "a".into(),
            "/x.yaml".into(),
            Program::Builtin(Builtin::Echo),
        );
        assert!(a.changed_fields(&a.clone()).is_empty());
        let mut b = a.clone();
        b.program = Program::Exec {
            path: "/bin/cat".into(),
            argv: vec!["cat".into()],
        };
        b.max_connections = 3;
        b.success_status = SuccessStatus::new(&[ExitMatch::Status(1)]);
        b.file = "/y.yaml".into();
        b.credentials = Some(Credentials {
            user: "nobody".into(),
            uid: 65534,
            gid: 65534,
            groups: vec![],
            home: "/".into(),
            shell: "/bin/sh".into(),
        });
        assert_eq!(
            a.changed_fields(&b),
            [
                "file",
                "exec",
                "user",
                "group",
                "groups",
                "max_connections",
                "success_status"
            ]
        );
        let mut c = b.clone();
        c.credentials.as_mut().unwrap().groups = vec![1];
        c.program = Program::Builtin(Builtin::Echo);
        assert_eq!(b.changed_fields(&c), ["builtin", "groups"]);
    }

    #[test]
    fn changed_fields_name_each_fence_and_proxy_field() {
        let a = Service::new(
            "a".into(),
            "/x.yaml".into(),
            Program::Builtin(Builtin::Echo),
        );
        let mut b = a.clone();
        b.fences.private_network = true;
        b.fences.read_only_paths = vec!["/".into()];
        b.fences.capabilities = vec![10];
        assert_eq!(
            a.changed_fields(&b),
            ["private_network", "read_only_paths", "capabilities"]
        );
        let mut c = b.clone();
        c.fences.no_new_privs = true;
        c.fences.private_tmp = true;
        c.fences.writable_paths = vec!["/tmp".into()];
        c.fences.inaccessible_paths = vec!["/root".into()];
        assert_eq!(
            b.changed_fields(&c),
            [
                "no_new_privs",
                "private_tmp",
                "writable_paths",
                "inaccessible_paths"
            ]
        );
        let proxy = ProxyConfig {
            accept: crate::proxy::Accept::Any,
            from: vec![],
            timeout: ProxyConfig::DEFAULT_TIMEOUT,
        };
        let mut d = a.clone();
        d.proxy = Some(proxy.clone());
        assert_eq!(
            a.changed_fields(&d),
            ["proxy_protocol", "proxy_from", "proxy_timeout"]
        );
        let mut e = d.clone();
        e.proxy.as_mut().unwrap().timeout = Duration::from_secs(1);
        assert_eq!(d.changed_fields(&e), ["proxy_timeout"]);
        let mut f = a.clone();
        f.listen = vec![Address::UnixPath("/run/x.sock".into())];
        f.listen_sockets = vec![Some(SocketType::Dgram)];
        assert_eq!(a.changed_fields(&f), ["listen"]);
        let mut g = a.clone();
        g.listen_sockets = vec![Some(SocketType::Dgram)];
        assert_eq!(a.changed_fields(&g), ["listen"]);
    }
}
