//! From raw files to validated services: `defaults` inheritance, the checks
//! that need several fields or the system (exec xor builtin, programs on
//! disk, users and groups, the root rule) and the checks across services
//! (duplicate names, conflicting addresses). Every error is collected.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{AccessFlags, Gid, Group, Uid, User};

use super::ConfigError;
use super::raw::{Dur, EnvKey, IdRef, ListenEntry, Net, OneOrMany, RawFile, RawService};
use super::tree::{Index, Pos};
use crate::service::{
    Address, Builtin, Cidr, Credentials, Fences, Program, ProxyConfig, RlimValue, Rlimit,
    RlimitResource, Service, SocketType, SuccessStatus,
};

/// The PATH used to find programs when superd's own has none (superd(8),
/// THE CHILD: the child's PATH, so what `--check` finds is what the child would find).
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A UDP builtin's `rate` when it sets none (superd.yaml(5), rate): a
/// datagram's source can be forged, and one forged to come from another
/// echo service would bounce between the two for ever; bounded, that
/// costs at most this.
pub const UDP_BUILTIN_RATE: crate::service::Rate = crate::service::Rate {
    tokens: 100,
    per: std::time::Duration::from_secs(1),
};

/// What validation needs to know about the running superd.
#[derive(Clone, Debug)]
pub struct Context {
    pub euid: u32,
    pub egid: u32,
    /// superd's own supplementary groups.
    pub groups: Vec<u32>,
    /// Where bare program names are looked up.
    pub path: String,
    /// The kernel's ceiling for `nofile` (fs.nr_open); `None`: not known,
    /// not checked.
    pub nr_open: Option<u64>,
    /// superd's own hard limits: without CAP_SYS_RESOURCE a child cannot
    /// raise its own above them. Empty: not checked.
    pub hard_limits: Vec<(RlimitResource, RlimValue)>,
    /// superd holds CAP_SYS_RESOURCE (root usually does; a container's
    /// root may not), so a child may raise hard limits before it drops it.
    pub can_raise_limits: bool,
    /// The event loop reads PROXY headers ([`crate::proxy::PROXY_SERVED`]);
    /// if not, `proxy_protocol` is refused. Tests turn it on.
    pub proxy_served: bool,
}

impl Context {
    pub fn current() -> Context {
        Context {
            euid: Uid::effective().as_raw(),
            egid: Gid::effective().as_raw(),
            groups: nix::unistd::getgroups()
                .map(|g| g.into_iter().map(Gid::as_raw).collect())
                .unwrap_or_default(),
            path: std::env::var("PATH")
                .ok()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| DEFAULT_PATH.to_owned()),
            nr_open: std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            hard_limits: RlimitResource::ALL
                .into_iter()
                .filter_map(|r| Some((r, own_hard_limit(r)?)))
                .collect(),
            can_raise_limits: has_capability(CAP_SYS_RESOURCE),
            proxy_served: crate::proxy::PROXY_SERVED,
        }
    }

    fn root(&self) -> bool {
        self.euid == 0
    }
}

/// One parsed file.
pub struct Parsed {
    pub path: PathBuf,
    pub raw: RawFile,
    pub index: Index,
}

/// A user as passwd knows it.
#[derive(Clone, Debug)]
struct UserInfo {
    name: String,
    uid: u32,
    /// `None`: the uid has no passwd entry.
    gid: Option<u32>,
    home: PathBuf,
    shell: PathBuf,
}

/// Lookups are cached for one load: 1000 services naming `nobody` ask
/// passwd once.
#[derive(Default)]
struct Cache {
    users: HashMap<IdRef, Result<UserInfo, String>>,
    groups: HashMap<IdRef, Result<u32, String>>,
    grouplists: HashMap<(String, u32), Result<Vec<u32>, String>>,
    programs: HashMap<(Option<PathBuf>, String), Result<PathBuf, String>>,
    dirs: HashMap<PathBuf, bool>,
}

impl Cache {
    fn user(&mut self, r: &IdRef) -> Result<UserInfo, String> {
        if let Some(v) = self.users.get(r) {
            return v.clone();
        }
        let v = match r {
            IdRef::Name(n) => match User::from_name(n) {
                Ok(Some(u)) => Ok(user_info(u)),
                Ok(None) => Err(match n.split_once('.') {
                    Some((u, g)) => format!(
                        "unknown user {n:?} (inetd's user.group: write user: {u} and group: {g})"
                    ),
                    None => format!("unknown user {n:?}"),
                }),
                Err(e) => Err(format!("cannot look up user {n:?}: {e}")),
            },
            IdRef::Id(id) => match User::from_uid(Uid::from_raw(*id)) {
                Ok(Some(u)) => Ok(user_info(u)),
                // A uid without a passwd entry is allowed (containers,
                // dynamic ids), but nothing can be inferred from it.
                Ok(None) => Ok(UserInfo {
                    name: id.to_string(),
                    uid: *id,
                    gid: None,
                    home: PathBuf::from("/"),
                    shell: PathBuf::from("/bin/sh"),
                }),
                Err(e) => Err(format!("cannot look up uid {id}: {e}")),
            },
        };
        self.users.insert(r.clone(), v.clone());
        v
    }

    fn group(&mut self, r: &IdRef) -> Result<u32, String> {
        if let Some(v) = self.groups.get(r) {
            return v.clone();
        }
        let v = match r {
            IdRef::Name(n) => match Group::from_name(n) {
                Ok(Some(g)) => Ok(g.gid.as_raw()),
                Ok(None) => Err(format!("unknown group {n:?}")),
                Err(e) => Err(format!("cannot look up group {n:?}: {e}")),
            },
            // A bare gid needs no entry in /etc/group.
            IdRef::Id(id) => Ok(*id),
        };
        self.groups.insert(r.clone(), v.clone());
        v
    }

    /// The groups `initgroups(name, gid)` would set.
    fn grouplist(&mut self, name: &str, gid: u32) -> Result<Vec<u32>, String> {
        let key = (name.to_owned(), gid);
        if let Some(v) = self.grouplists.get(&key) {
            return v.clone();
        }
        let v = CString::new(name)
            .map_err(|_| "user name contains NUL".to_owned())
            .and_then(|c| {
                nix::unistd::getgrouplist(&c, Gid::from_raw(gid))
                    .map(|g| g.into_iter().map(Gid::as_raw).collect())
                    .map_err(|e| format!("cannot list the groups of {name:?}: {e}"))
            });
        self.grouplists.insert(key, v.clone());
        v
    }

    fn is_dir(&mut self, p: &Path) -> bool {
        if let Some(&v) = self.dirs.get(p) {
            return v;
        }
        let v = p.is_dir();
        self.dirs.insert(p.to_path_buf(), v);
        v
    }

    /// Finds `prog` (inside `chroot` when set); returns the path as the
    /// child will exec it.
    fn program(
        &mut self,
        prog: &str,
        chroot: Option<&Path>,
        search: &str,
    ) -> Result<PathBuf, String> {
        let key = (chroot.map(Path::to_path_buf), prog.to_owned());
        if let Some(v) = self.programs.get(&key) {
            return v.clone();
        }
        let v = find_program(prog, chroot, search);
        self.programs.insert(key, v.clone());
        v
    }
}

fn user_info(u: User) -> UserInfo {
    UserInfo {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: Some(u.gid.as_raw()),
        home: u.dir,
        shell: u.shell,
    }
}

fn host_path(inside: &Path, chroot: Option<&Path>) -> PathBuf {
    match chroot {
        Some(root) => root.join(inside.strip_prefix("/").unwrap_or(inside)),
        None => inside.to_path_buf(),
    }
}

fn check_executable(inside: &Path, chroot: Option<&Path>) -> Result<(), String> {
    let host = host_path(inside, chroot);
    let shown = || match chroot {
        Some(r) => format!("{} (in chroot {})", inside.display(), r.display()),
        None => inside.display().to_string(),
    };
    let meta = std::fs::metadata(&host).map_err(|_| format!("program {} not found", shown()))?;
    if !meta.is_file() {
        return Err(format!("program {} is not a regular file", shown()));
    }
    // access(X_OK) alone says yes to root for any file with one x bit; the
    // mode test alone ignores ACLs and read-only mounts: ask both.
    if meta.permissions().mode() & 0o111 == 0
        || nix::unistd::access(&host, AccessFlags::X_OK).is_err()
    {
        return Err(format!("program {} is not executable", shown()));
    }
    Ok(())
}

/// A relative program path with a slash (`../examples/hello.sh`) names a
/// file relative to the directory of the config file that wrote it, so a
/// service directory can ship its own programs. Not under chroot, where
/// only absolute paths inside the jail make sense.
fn relative_to_file(prog: &str, file: &Path, chrooted: bool) -> String {
    if chrooted || prog.starts_with('/') || !prog.contains('/') {
        return prog.to_owned();
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    match std::fs::canonicalize(dir) {
        Ok(abs) => abs.join(prog).to_string_lossy().into_owned(),
        Err(_) => prog.to_owned(),
    }
}

fn find_program(prog: &str, chroot: Option<&Path>, search: &str) -> Result<PathBuf, String> {
    if prog.is_empty() {
        return Err("exec: the program name is empty".into());
    }
    if prog.starts_with('/') {
        let p = PathBuf::from(prog);
        check_executable(&p, chroot)?;
        return Ok(p);
    }
    if prog.contains('/') {
        return Err(format!(
            "program {prog:?}: expected an absolute path, a path relative to this file, or a bare name found in PATH"
        ));
    }
    for dir in search.split(':').filter(|d| d.starts_with('/')) {
        let p = Path::new(dir).join(prog);
        if check_executable(&p, chroot).is_ok() {
            return Ok(p);
        }
    }
    Err(format!("program {prog:?} not found in PATH ({search})"))
}

/// Where a value came from: the service itself or `defaults`.
#[derive(Clone, Copy)]
struct Origin<'a> {
    file: &'a Parsed,
    /// `["services", name]` or `["defaults"]`.
    service: Option<&'a str>,
}

impl<'a> Origin<'a> {
    fn path<'b>(&'b self, rest: &[&'b str]) -> Vec<&'b str> {
        let mut v: Vec<&str> = match self.service {
            Some(name) => vec!["services", name],
            None => vec!["defaults"],
        };
        v.extend_from_slice(rest);
        v
    }

    fn error(&self, pos: Option<Pos>, message: impl Into<String>) -> ConfigError {
        // A field that came through a merge key (`<<: *name`) was not
        // written in the service: point at its `<<`, or at the service.
        let pos = pos
            .or_else(|| self.file.index.key(&self.path(&["<<"])))
            .or_else(|| self.file.index.key(&self.path(&[])));
        ConfigError {
            file: self.file.path.clone(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            message: message.into(),
        }
    }

    /// An error about the value of `field`.
    fn at_value(&self, field: &str, message: impl Into<String>) -> ConfigError {
        self.error(self.file.index.value(&self.path(&[field])), message)
    }

    /// An error about element `i` of the list `field`.
    fn at_element(&self, field: &str, i: usize, message: impl Into<String>) -> ConfigError {
        let i = i.to_string();
        let pos = self.file.index.value(&self.path(&[field, &i]));
        self.error(
            pos.or_else(|| self.file.index.value(&self.path(&[field]))),
            message,
        )
    }

    /// An error about the key `field` (or, with `""`, the service's key).
    fn at_key(&self, field: &str, message: impl Into<String>) -> ConfigError {
        let path = if field.is_empty() {
            self.path(&[])
        } else {
            self.path(&[field])
        };
        self.error(self.file.index.key(&path), message)
    }

    /// `file:line:column` of the value of `field`.
    fn at_field(&self, field: &str) -> String {
        let e = self.at_value(field, "");
        match (e.line, e.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", e.file.display()),
            _ => self.at(),
        }
    }

    fn at(&self) -> String {
        let pos = self.file.index.key(&self.path(&[]));
        match pos {
            Some(p) => format!("{}:{}:{}", self.file.path.display(), p.line, p.column),
            None => self.file.path.display().to_string(),
        }
    }
}

/// The service's own value, else the default's, with where it came from.
fn pick<'a, T>(
    own: &'a Option<T>,
    own_origin: Origin<'a>,
    def: Option<(&'a Option<T>, Origin<'a>)>,
) -> Option<(&'a T, Origin<'a>)> {
    match own {
        Some(v) => Some((v, own_origin)),
        None => def.and_then(|(d, o)| d.as_ref().map(|v| (v, o))),
    }
}

/// Validates every file; returns the services and appends the errors.
pub fn validate(files: &[Parsed], ctx: &Context, errors: &mut Vec<ConfigError>) -> Vec<Service> {
    let mut cache = Cache::default();

    // `defaults`: at most one file may have it.
    let mut defaults: Option<(&RawService, Origin)> = None;
    for f in files {
        if let Some(d) = &f.raw.defaults {
            let o = Origin {
                file: f,
                service: None,
            };
            match &defaults {
                Some((_, first)) => errors.push(o.at_key(
                    "",
                    format!(
                        "defaults are already set in {}: only one file may have defaults",
                        first.at()
                    ),
                )),
                None => {
                    if d.listen.is_some() {
                        errors.push(o.at_key(
                            "listen",
                            "listen cannot be set in defaults: each service says where it listens",
                        ));
                    }
                    if d.argv0.is_some() {
                        errors.push(o.at_key(
                            "argv0",
                            "argv0 cannot be set in defaults: it names one service's program",
                        ));
                    }
                    resolve_default_ids(d, o, &mut cache, errors);
                    defaults = Some((d, o));
                }
            }
        }
    }

    let mut services: Vec<Service> = Vec::new();
    let mut bindings: Vec<Binding> = Vec::new();
    let mut names: HashMap<&str, Origin> = HashMap::new();
    for f in files {
        let Some(list) = &f.raw.services else {
            continue;
        };
        for (name, raw) in &list.0 {
            let o = Origin {
                file: f,
                service: Some(name),
            };
            if let Some(first) = names.get(name.as_str()) {
                errors.push(o.at_key(
                    "",
                    format!(
                        "duplicate service {name:?}: already defined at {}",
                        first.at()
                    ),
                ));
                continue;
            }
            names.insert(name, o);
            let b = binding(name, raw, o, defaults);
            if let Some(s) = service(name, raw, &b, defaults, ctx, &mut cache, errors) {
                services.push(s);
            }
            bindings.push(b);
        }
    }

    conflicts(&bindings, errors);
    services
}

/// Where a service listens: what the conflict check needs, known for a
/// service with errors elsewhere too, so that one `--check` reports those
/// and its conflicts together.
struct Binding<'a> {
    name: &'a str,
    listen: &'a [ListenEntry],
    socket: SocketType,
    v6only: bool,
    enabled: bool,
    origin: Origin<'a>,
}

fn binding<'a>(
    name: &'a str,
    raw: &'a RawService,
    own: Origin<'a>,
    defaults: Option<(&'a RawService, Origin<'a>)>,
) -> Binding<'a> {
    macro_rules! pick {
        ($f:ident) => {
            pick(&raw.$f, own, defaults.map(|(d, o)| (&d.$f, o)))
        };
    }
    Binding {
        name,
        listen: raw.listen.as_ref().map_or(&[], |l| l.0.as_slice()),
        socket: pick!(socket).map_or(SocketType::Stream, |(v, _)| *v),
        v6only: pick!(v6only).is_some_and(|(v, _)| *v),
        enabled: pick!(enabled).is_none_or(|(v, _)| *v),
        origin: own,
    }
}

/// What two addresses must share to conflict: the port (never 0, which
/// the kernel picks anew each time) or the unix name.
#[derive(PartialEq, Eq, Hash)]
enum BindKey<'a> {
    Port(u16),
    Path(&'a std::path::Path),
    Abstract(&'a [u8]),
}

impl<'a> BindKey<'a> {
    fn of(a: &'a Address) -> Option<BindKey<'a>> {
        match a {
            Address::UnixPath(p) => Some(BindKey::Path(p)),
            Address::UnixAbstract(n) => Some(BindKey::Abstract(n)),
            _ => a.port().filter(|&p| p != 0).map(BindKey::Port),
        }
    }
}

/// Two services (or one twice) on the same socket. Disabled services are
/// left out: they bind nothing, and an admin disables one precisely to
/// hand its port to another.
fn conflicts(bindings: &[Binding], errors: &mut Vec<ConfigError>) {
    let mut seen: HashMap<BindKey, Vec<(&Address, SocketType, bool, usize)>> = HashMap::new();
    for (i, s) in bindings.iter().enumerate() {
        if !s.enabled {
            continue;
        }
        for (k, entry) in s.listen.iter().enumerate() {
            let a = &entry.addr;
            let a_socket = entry.socket.unwrap_or(s.socket);
            let Some(key) = BindKey::of(a) else {
                continue;
            };
            let bucket = seen.entry(key).or_default();
            for &(b, bt, b_v6only, j) in bucket.iter() {
                // Unix sockets share one namespace whatever their type; TCP
                // and UDP ports are distinct.
                let same_proto = a.is_unix() && b.is_unix() || a_socket == bt;
                if same_proto && a.conflicts_with(s.v6only, b, b_v6only) {
                    let msg = if i == j {
                        format!("address {a} conflicts with {b} of the same service")
                    } else {
                        format!(
                            "service {:?}: address {a} conflicts with {b} of service {:?} ({})",
                            s.name,
                            bindings[j].name,
                            bindings[j].origin.at()
                        )
                    };
                    errors.push(s.origin.at_element("listen", k, msg));
                }
            }
            bucket.push((a, a_socket, s.v6only, i));
        }
    }
}

fn service<'a>(
    name: &str,
    raw: &'a RawService,
    b: &Binding<'a>,
    defaults: Option<(&'a RawService, Origin<'a>)>,
    ctx: &Context,
    cache: &mut Cache,
    errors: &mut Vec<ConfigError>,
) -> Option<Service> {
    let before = errors.len();
    let own = b.origin;
    macro_rules! pick {
        ($f:ident) => {
            pick(&raw.$f, own, defaults.map(|(d, o)| (&d.$f, o)))
        };
    }

    let entries: Vec<ListenEntry> = match &raw.listen {
        Some(OneOrMany(v)) if v.is_empty() => {
            errors.push(own.at_key("listen", "listen is empty: expected at least one address"));
            Vec::new()
        }
        Some(OneOrMany(v)) => v.clone(),
        None => {
            errors.push(own.at_key("", format!("service {name:?} has no listen address")));
            Vec::new()
        }
    };
    let listen: Vec<Address> = entries.iter().map(|e| e.addr.clone()).collect();
    let listen_sockets: Vec<Option<SocketType>> = entries.iter().map(|e| e.socket).collect();
    let socket = b.socket;
    let any_unix = listen.iter().any(Address::is_unix);
    if socket == SocketType::Seqpacket
        && entries
            .iter()
            .any(|e| !e.addr.is_unix() && e.socket.is_none())
    {
        let o = pick!(socket).map(|(_, o)| o).unwrap_or(own);
        errors.push(o.at_value("socket", "seqpacket needs unix addresses (/path or @name)"));
    }
    for (i, e) in entries.iter().enumerate() {
        if e.socket == Some(SocketType::Seqpacket) && !e.addr.is_unix() {
            errors.push(own.at_element(
                "listen",
                i,
                "seqpacket needs unix addresses (/path or @name)",
            ));
        }
    }

    // exec and builtin decide together what the service is: a service
    // naming either one takes nothing of the other from defaults.
    let (exec, builtin, prog_origin) = if raw.exec.is_some() || raw.builtin.is_some() {
        (raw.exec.as_ref(), raw.builtin, own)
    } else if let Some((d, o)) = defaults {
        (d.exec.as_ref(), d.builtin, o)
    } else {
        (None, None, own)
    };
    let chroot = pick!(chroot).map(|(v, o)| (v.0.clone(), o));
    if let Some((c, o)) = &chroot
        && !cache.is_dir(c)
    {
        errors.push(o.at_value(
            "chroot",
            format!("chroot {} is not a directory", c.display()),
        ));
    }
    // cwd must exist when the service loads (inside the chroot, if any),
    // or every connection would end in `exec failed step=chdir`; a
    // builtin has no child to change into it.
    if let Some((cwd, o)) = pick!(cwd)
        && builtin.is_none()
    {
        let host = host_path(&cwd.0, chroot.as_ref().map(|(c, _)| c.as_path()));
        if !cache.is_dir(&host) {
            errors.push(o.at_value("cwd", format!("cwd {} is not a directory", host.display())));
        }
    }
    let program = match (exec, builtin) {
        (Some(_), Some(_)) => {
            errors.push(
                prog_origin.at_key("builtin", "exec and builtin are exclusive: set exactly one"),
            );
            None
        }
        (None, None) => {
            errors.push(own.at_key("", format!("service {name:?} needs exec or builtin")));
            None
        }
        (Some(OneOrMany(args)), None) => match args.first() {
            None => {
                errors.push(prog_origin.at_key("exec", "exec is empty: expected a program"));
                None
            }
            Some(prog) => {
                let mut argv: Vec<String> = args.iter().map(|a| a.0.clone()).collect();
                // `argv0:` is what the program sees as its name, as
                // inetd.conf's separate argv[0] field gives it.
                if let Some((a, _)) = pick!(argv0) {
                    argv[0] = a.0.clone();
                }
                let p =
                    relative_to_file(&prog.0, prog_origin.file.path.as_path(), chroot.is_some());
                match cache.program(&p, chroot.as_ref().map(|(c, _)| c.as_path()), &ctx.path) {
                    Ok(path) => Some(Program::Exec { path, argv }),
                    Err(m) => {
                        let m = exec_hint(m, &prog.0, args.len());
                        errors.push(prog_origin.at_value("exec", m));
                        None
                    }
                }
            }
        },
        (None, Some(b)) => {
            // UDP builtins answer to the datagram's source address; a unix
            // dgram peer usually has none. Seqpacket has no builtin protocol.
            if socket == SocketType::Seqpacket || socket == SocketType::Dgram && any_unix {
                let what = if socket == SocketType::Seqpacket {
                    "seqpacket"
                } else {
                    "unix dgram"
                };
                errors.push(prog_origin.at_value(
                    "builtin",
                    format!(
                        "builtin {b} cannot serve {what} sockets (only TCP, UDP and unix stream)"
                    ),
                ));
            }
            // metrics and status answer over a connection (HTTP, one
            // JSON document): a datagram has no room for either.
            if matches!(b, Builtin::Metrics | Builtin::Status) && socket == SocketType::Dgram {
                errors.push(prog_origin.at_value(
                    "builtin",
                    format!("builtin {b} needs a stream socket (TCP or unix stream)"),
                ));
            }
            Some(Program::Builtin(b))
        }
    };
    let is_builtin = builtin.is_some() && exec.is_none();
    if let Some((a, o)) = pick!(argv0) {
        if is_builtin {
            errors.push(o.at_key("argv0", "argv0 needs exec: a builtin runs no program"));
        } else if a.0.is_empty() {
            errors.push(o.at_value(
                "argv0",
                "argv0 is empty: expected the name the program sees",
            ));
        }
    }
    let pass_env = pass_env(pick!(pass_env), is_builtin, errors);
    let notes = notes(raw, own, pick!(only_from), pick!(deny_from));

    // wait: a dgram exec service has no connection to hand over, so it
    // waits. A builtin never forks: on dgram it serves each datagram on
    // the bound socket either way (inetd writes `dgram udp wait …
    // internal`, and wait is its default), on stream there is nothing
    // for it to wait for.
    let wait = match (pick!(wait), is_builtin) {
        (Some((true, o)), true) if socket != SocketType::Dgram => {
            errors.push(o.at_value(
                "wait",
                "wait: true makes no sense for a builtin on a stream socket (builtins never fork)",
            ));
            false
        }
        (Some((false, o)), false) if socket == SocketType::Dgram => {
            errors.push(o.at_value(
                "wait",
                "dgram services need wait: true (there is no connection to accept)",
            ));
            true
        }
        (Some((w, _)), _) => *w,
        (None, _) => socket == SocketType::Dgram,
    };

    // Access rules and the per-source limit only where superd applies them
    // (superd.yaml(5), only_from): a rule shown by --check and not applied
    // would let in a client the admin believes refused.
    let rules = [
        ("only_from", pick!(only_from).map(|(_, o)| o)),
        (
            "deny_from",
            pick!(deny_from)
                .filter(|(v, _)| !v.0.is_empty())
                .map(|(_, o)| o),
        ),
        ("max_per_source", pick!(max_per_source).map(|(_, o)| o)),
    ];
    for (field, o) in rules {
        let Some(o) = o else { continue };
        let per_source = field == "max_per_source";
        // A wait child accepts on every address that is no datagram
        // socket: the service's own type, or one an address gives itself.
        let child_accepts = socket != SocketType::Dgram
            || listen_sockets
                .iter()
                .any(|t| t.is_some_and(|t| t != SocketType::Dgram));
        let why = if any_unix {
            Some("a unix socket's peer has no IP address to check")
        } else if wait && !is_builtin && child_accepts {
            Some("a wait service's child accepts its connections itself")
        } else if per_source && socket == SocketType::Dgram {
            Some("datagrams have no connections to count per source")
        } else {
            None
        };
        if let Some(why) = why {
            let from = if o.service.is_none() {
                " (set in defaults)".to_owned()
            } else {
                String::new()
            };
            errors.push(o.at_value(
                field,
                format!("service {name:?}: {field}{from} cannot be applied: {why}"),
            ));
        }
    }

    let refuse_message = refuse_message(pick!(refuse_message), socket, wait, &listen, errors);
    let credentials = credentials(raw, own, defaults, is_builtin, ctx, cache, errors);
    let fences = fences(
        raw,
        own,
        defaults,
        is_builtin,
        ctx,
        credentials.as_ref(),
        chroot.as_ref().map(|(c, _)| c.as_path()),
        errors,
    );
    // A program under an inaccessible path could never be run.
    if let Some(Program::Exec { path, .. }) = &program {
        let root = chroot.as_ref().map(|(c, _)| c.as_path());
        let host = host_path(path, root);
        if let Some(p) = fences
            .inaccessible_paths
            .iter()
            .find(|p| host.starts_with(p))
        {
            let o = pick!(inaccessible_paths).map_or(own, |(_, o)| o);
            errors.push(o.at_value(
                "inaccessible_paths",
                format!(
                    "inaccessible_paths: {} would hide the program {}",
                    p.display(),
                    host.display()
                ),
            ));
        }
    }
    // Nor one, or a cwd, under the /tmp or /var/tmp that private_tmp
    // replaces with an empty directory: the child would not find it.
    if fences.private_tmp {
        let root = chroot.as_ref().map(|(c, _)| c.as_path());
        let hidden_by = |p: &Path| {
            ["/tmp", "/var/tmp"].into_iter().find(|t| {
                let t = host_path(Path::new(t), root);
                p.starts_with(&t) && p != t
            })
        };
        let o = pick!(private_tmp).map_or(own, |(_, o)| o);
        if let Some(Program::Exec { path, .. }) = &program {
            let host = host_path(path, root);
            if let Some(t) = hidden_by(&host) {
                errors.push(o.at_value(
                    "private_tmp",
                    format!(
                        "private_tmp: the private {t} would hide the program {}",
                        host.display()
                    ),
                ));
            }
        }
        if let Some((cwd, _)) = pick!(cwd) {
            let host = host_path(&cwd.0, root);
            if let Some(t) = hidden_by(&host) {
                errors.push(o.at_value(
                    "private_tmp",
                    format!(
                        "private_tmp: the private {t} would hide the cwd {}",
                        host.display()
                    ),
                ));
            }
        }
    }

    let (pass, fd_names, start) = activation(
        name,
        ActivationFields {
            pass: pick!(pass),
            fd_names: raw.fd_names.as_ref(),
            start: pick!(start),
            stderr: pick!(stderr),
        },
        &entries,
        own,
        (wait, is_builtin),
        errors,
    );

    let positive =
        |d: Option<(&super::raw::Dur, Origin)>, field: &str, errors: &mut Vec<ConfigError>| {
            d.and_then(|(v, o)| {
                if v.0.is_zero() {
                    errors.push(o.at_value(field, format!("{field} must be longer than 0")));
                    None
                } else {
                    Some(v.0)
                }
            })
        };
    let timeout = positive(pick!(timeout), "timeout", errors);
    let idle_timeout = positive(pick!(idle_timeout), "idle_timeout", errors);

    // env and rlimits merge key by key: a service adding one variable keeps
    // the others from defaults.
    let mut env: Vec<(String, String)> = Vec::new();
    for e in [defaults.and_then(|(d, _)| d.env.as_ref()), raw.env.as_ref()]
        .into_iter()
        .flatten()
    {
        for (k, v) in &e.0 {
            if v.contains('\0') {
                continue; // refused by the visitor already
            }
            match env.iter_mut().find(|(ek, _)| ek == k) {
                Some(slot) => slot.1 = v.clone(),
                None => env.push((k.clone(), v.clone())),
            }
        }
    }
    // The socket activation variables are superd's to write (the child's
    // own pid, its sockets' names): `env:` cannot set them there.
    if pass == crate::service::PassMode::ListenFds {
        for (e, o) in [
            (defaults.and_then(|(d, o)| Some((d.env.as_ref()?, o)))),
            raw.env.as_ref().map(|e| (e, own)),
        ]
        .into_iter()
        .flatten()
        {
            for (k, _) in &e.0 {
                if matches!(k.as_str(), "LISTEN_FDS" | "LISTEN_PID" | "LISTEN_FDNAMES") {
                    let at = o.file.index.key(&o.path(&["env", k]));
                    errors.push(o.error(
                        at,
                        format!(
                            "service {name:?}: env cannot set {k} with pass: listen_fds (superd sets it for the child)"
                        ),
                    ));
                }
            }
        }
    }
    let mut rlimits: Vec<(Rlimit, Origin)> = Vec::new();
    for (r, o) in [
        defaults.and_then(|(d, o)| Some((d.rlimits.as_ref()?, o))),
        raw.rlimits.as_ref().map(|r| (r, own)),
    ]
    .into_iter()
    .flatten()
    {
        for l in &r.0 {
            match rlimits.iter_mut().find(|(x, _)| x.resource == l.resource) {
                Some(slot) => *slot = (*l, o),
                None => rlimits.push((*l, o)),
            }
        }
    }
    let rlimits: Vec<Rlimit> = rlimits
        .into_iter()
        .filter_map(|(l, o)| {
            settle_rlimit(l, ctx)
                .map_err(|m| {
                    let key = o.file.index.key(&o.path(&["rlimits", l.resource.as_str()]));
                    errors.push(o.error(key, format!("rlimits: {m}")))
                })
                .ok()
        })
        .collect();

    let mut id =
        |field: &str, r: Option<(&IdRef, Origin)>, user: bool, errors: &mut Vec<ConfigError>| {
            let (r, o) = r?;
            let v = if user {
                cache.user(r).map(|u| u.uid)
            } else {
                cache.group(r)
            };
            v.map_err(|m| errors.push(o.at_value(field, m))).ok()
        };
    // A builtin's sessions always end with status 0: success_status
    // written on one would say something superd never does.
    let success_status = match pick!(success_status) {
        Some((_, o)) if is_builtin && o.service.is_some() => {
            errors.push(o.at_key(
                "success_status",
                "success_status has no effect on a builtin (its sessions always end with status 0)",
            ));
            None
        }
        Some((v, _)) => Some(SuccessStatus::new(&v.0)),
        None => None,
    };
    let socket_user = id("socket_user", pick!(socket_user), true, errors);
    let socket_group = id("socket_group", pick!(socket_group), false, errors);

    let proxy = proxy_config(
        ProxyFields {
            protocol: pick!(proxy_protocol),
            from: pick!(proxy_from),
            timeout: pick!(proxy_timeout),
            wait: pick!(wait),
        },
        raw,
        own,
        (socket, any_unix, wait),
        ctx,
        errors,
    );

    if errors.len() > before {
        return None;
    }
    let d = Service::new(name.to_owned(), own.file.path.clone(), program?);
    Some(Service {
        listen,
        socket,
        wait,
        credentials,
        cwd: pick!(cwd).map(|(v, _)| v.0.clone()).unwrap_or(d.cwd),
        chroot: chroot.map(|(c, _)| c),
        umask: pick!(umask).map(|(v, _)| v.0).unwrap_or(d.umask),
        nice: pick!(nice).map(|(v, _)| v.0),
        env,
        // With pass: listen_fds fds 1 and 2 go to the log by default, as
        // systemd sends a socket-activated daemon's output to its journal.
        stderr: pick!(stderr).map(|(v, _)| *v).unwrap_or(
            if pass == crate::service::PassMode::ListenFds {
                crate::service::StderrMode::Log
            } else {
                d.stderr
            },
        ),
        max_connections: pick!(max_connections)
            .map(|(v, _)| v.0)
            .unwrap_or(d.max_connections),
        max_per_source: pick!(max_per_source).map(|(v, _)| v.0),
        rate: pick!(rate)
            .map(|(v, _)| *v)
            .or((is_builtin && socket == SocketType::Dgram).then_some(UDP_BUILTIN_RATE)),
        only_from: pick!(only_from).map(|(v, _)| v.0.iter().map(|n| n.cidr).collect()),
        deny_from: pick!(deny_from)
            .map(|(v, _)| v.0.iter().map(|n| n.cidr).collect())
            .unwrap_or_default(),
        timeout,
        kill_grace: pick!(kill_grace).map(|(v, _)| v.0).unwrap_or(d.kill_grace),
        idle_timeout: idle_timeout.unwrap_or(d.idle_timeout),
        rlimits,
        // Count is at most i32::MAX by construction.
        backlog: pick!(backlog).map(|(v, _)| v.0 as i32).unwrap_or(d.backlog),
        reuse_port: pick!(reuse_port).map(|(v, _)| *v).unwrap_or(d.reuse_port),
        v6only: b.v6only,
        keepalive: pick!(keepalive).map(|(v, _)| *v).unwrap_or(d.keepalive),
        nodelay: pick!(nodelay).map(|(v, _)| *v).unwrap_or(d.nodelay),
        socket_mode: pick!(socket_mode)
            .map(|(v, _)| v.0)
            .unwrap_or(d.socket_mode),
        socket_user,
        socket_group,
        enabled: b.enabled,
        proxy,
        pass_env,
        refuse_message,
        notes,
        success_status: success_status.unwrap_or(d.success_status),
        fences,
        listen_sockets,
        pass,
        fd_names,
        start,
        ..d
    })
}

/// What `--check` and the start-up log say besides the fields: a port
/// written as a service name, and xinetd's trailing-zero network shorthand,
/// which is one address here (a warning).
fn notes(
    raw: &RawService,
    own: Origin,
    only_from: Option<(&OneOrMany<Net>, Origin)>,
    deny_from: Option<(&OneOrMany<Net>, Origin)>,
) -> Vec<String> {
    let mut out = Vec::new();
    let place = |e: ConfigError| match (e.line, e.column) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}", e.file.display()),
        _ => e.file.display().to_string(),
    };
    for (i, e) in raw.listen.iter().flat_map(|l| l.0.iter()).enumerate() {
        if let (Some(name), Some(port)) = (&e.port_name, e.addr.port()) {
            let at = place(own.at_element("listen", i, ""));
            out.push(format!(
                "{at}: listen: {name} is port {port} (/etc/services)"
            ));
        }
    }
    for (field, list) in [("only_from", only_from), ("deny_from", deny_from)] {
        let Some((OneOrMany(nets), o)) = list else {
            continue;
        };
        for (i, n) in nets.iter().enumerate() {
            if let Some(x) = n.xinetd_reading {
                let at = place(o.at_element(field, i, ""));
                out.push(format!(
                    "{at}: warning: {field}: {} is the one address {} here, where xinetd read {} as {x}: write {x} if that is meant",
                    n.cidr.addr, n.cidr, n.cidr.addr
                ));
            }
        }
    }
    out
}

/// `pass_env:` checked: no builtin (no child to inherit anything), and
/// never a variable superd writes itself for each connection (those say
/// who the peer is: inheriting them would lie to the program).
fn pass_env(
    field: Option<(&OneOrMany<EnvKey>, Origin)>,
    is_builtin: bool,
    errors: &mut Vec<ConfigError>,
) -> Vec<String> {
    let Some((OneOrMany(names), o)) = field else {
        return Vec::new();
    };
    if is_builtin && !names.is_empty() {
        errors.push(o.at_key("pass_env", "pass_env needs exec: a builtin runs no program"));
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if crate::plan::is_connection_variable(&n.0) {
            errors.push(o.at_element(
                "pass_env",
                i,
                format!(
                    "pass_env: {} is set by superd for each connection and cannot be inherited",
                    n.0
                ),
            ));
        } else if !out.contains(&n.0) {
            out.push(n.0.clone());
        }
    }
    out
}

/// The longest `refuse_message:`: it is written once, without blocking,
/// into a fresh socket's send buffer, which always holds this much.
pub const MAX_REFUSE_MESSAGE: usize = 512;

/// `refuse_message:` checked: at most 512 bytes, and only where a TCP
/// connection can be refused (a datagram or a unix peer never is by an
/// access rule or the per-source limit, and in wait mode the program
/// accepts, not superd).
fn refuse_message(
    field: Option<(&super::raw::Arg, Origin)>,
    socket: SocketType,
    wait: bool,
    listen: &[Address],
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<u8>> {
    let (m, o) = field?;
    if m.0.len() > MAX_REFUSE_MESSAGE {
        errors.push(o.at_value(
            "refuse_message",
            format!(
                "refuse_message is {} bytes: at most {MAX_REFUSE_MESSAGE}",
                m.0.len()
            ),
        ));
        return None;
    }
    if socket != SocketType::Stream
        || wait
        || (!listen.is_empty() && listen.iter().all(Address::is_unix))
    {
        errors.push(o.at_key(
            "refuse_message",
            "refuse_message is written to TCP clients superd refuses: this service has none (it needs socket: stream on an IP address, without wait: true)",
        ));
        return None;
    }
    Some(m.0.clone().into_bytes())
}

/// A program that was not found, with what an inetd admin may have meant:
/// one string holding the program and its arguments (inetd.conf's way).
fn exec_hint(message: String, prog: &str, words: usize) -> String {
    if words == 1 && prog.trim().contains(char::is_whitespace) {
        let list: Vec<&str> = prog.split_whitespace().collect();
        format!(
            "{message} (one string is one program name, never split: write a list, exec: [{}])",
            list.join(", ")
        )
    } else {
        message
    }
}

/// The fences (superd.yaml(5), "Fences"). Namespaces, mounts and
/// capabilities need root: set when superd is not, each is a load error
/// naming the field (`no_new_privs` needs no privilege and is kept). A
/// builtin has no child to fence: its own fences are refused, those of
/// `defaults` do not concern it. It takes what the fences depend on (who
/// runs superd and the child, where the child's root is) one by one.
#[allow(clippy::too_many_arguments)]
fn fences<'a>(
    raw: &'a RawService,
    own: Origin<'a>,
    defaults: Option<(&'a RawService, Origin<'a>)>,
    is_builtin: bool,
    ctx: &Context,
    credentials: Option<&Credentials>,
    chroot: Option<&Path>,
    errors: &mut Vec<ConfigError>,
) -> Fences {
    macro_rules! pick {
        ($f:ident) => {
            pick(&raw.$f, own, defaults.map(|(d, o)| (&d.$f, o)))
        };
    }
    // Whether a field that is set (to something other than its default)
    // can be used here; pushes the error when not.
    let usable = |field: &str, o: Origin, errors: &mut Vec<ConfigError>| -> bool {
        if is_builtin {
            if o.service.is_some() {
                errors.push(o.at_key(
                    field,
                    format!(
                        "{field}: a builtin is served inside superd: there is no child to fence"
                    ),
                ));
            }
            return false;
        }
        if !ctx.root() && field != "no_new_privs" {
            errors.push(o.at_key(
                field,
                format!(
                    "{field} needs superd to run as root (namespaces, mounts and capabilities are privileged)"
                ),
            ));
            return false;
        }
        true
    };
    let mut f = Fences::default();
    for (field, v, slot) in [
        ("no_new_privs", pick!(no_new_privs), &mut f.no_new_privs),
        (
            "private_network",
            pick!(private_network),
            &mut f.private_network,
        ),
        ("private_tmp", pick!(private_tmp), &mut f.private_tmp),
    ] {
        if let Some((true, o)) = v {
            *slot = usable(field, o, errors);
        }
    }
    if f.private_tmp {
        // Inside the chroot, where the child will look.
        for dir in ["/tmp", "/var/tmp"] {
            let host = host_path(Path::new(dir), chroot);
            if !host.is_dir() {
                let o = pick!(private_tmp).map_or(own, |(_, o)| o);
                errors.push(o.at_value(
                    "private_tmp",
                    format!(
                        "private_tmp: {} is not a directory to mount the private one on",
                        host.display()
                    ),
                ));
            }
        }
    }
    let paths = |field: &str,
                 v: Option<(&OneOrMany<super::raw::AbsPath>, Origin)>,
                 errors: &mut Vec<ConfigError>|
     -> Vec<PathBuf> {
        let Some((OneOrMany(list), o)) = v else {
            return Vec::new();
        };
        if list.is_empty() || !usable(field, o, errors) {
            return Vec::new();
        }
        let mut out: Vec<PathBuf> = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let p = &p.0;
            if p.components().any(|c| {
                matches!(
                    c,
                    std::path::Component::CurDir | std::path::Component::ParentDir
                )
            }) {
                errors.push(o.at_element(
                    field,
                    i,
                    format!(
                        "{field}: {} has . or .. in it: write the path itself",
                        p.display()
                    ),
                ));
            } else if let Err(e) = std::fs::metadata(p) {
                errors.push(o.at_element(
                    field,
                    i,
                    format!("{field}: {}: {}", p.display(), io_reason(&e)),
                ));
            } else if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    };
    f.read_only_paths = paths("read_only_paths", pick!(read_only_paths), errors);
    f.writable_paths = paths("writable_paths", pick!(writable_paths), errors);
    f.inaccessible_paths = paths("inaccessible_paths", pick!(inaccessible_paths), errors);
    // A writable path outside every read-only one would change nothing:
    // refused rather than accepted and not applied.
    if let Some((OneOrMany(list), o)) = pick!(writable_paths) {
        for (i, p) in list.iter().enumerate() {
            if f.writable_paths.contains(&p.0)
                && !f.read_only_paths.iter().any(|r| p.0.starts_with(r))
            {
                errors.push(o.at_element(
                    "writable_paths",
                    i,
                    format!(
                        "writable_paths: {} is under no read_only_paths entry: it is writable already",
                        p.0.display()
                    ),
                ));
            }
        }
    }

    if let Some((OneOrMany(list), o)) = pick!(capabilities)
        && !list.is_empty()
        && usable("capabilities", o, errors)
    {
        match credentials {
            Some(c) if c.uid != 0 => {
                let held = permitted_capabilities();
                for (i, c) in list.iter().enumerate() {
                    if held & (1u64 << c.0) == 0 {
                        errors.push(o.at_element(
                            "capabilities",
                            i,
                            format!(
                                "capabilities: superd itself does not hold {}, so it cannot pass it on",
                                crate::service::capability_name(c.0)
                            ),
                        ));
                    } else if !f.capabilities.contains(&c.0) {
                        f.capabilities.push(c.0);
                    }
                }
            }
            _ => errors.push(o.at_key(
                "capabilities",
                "capabilities are kept by a non-root user: root has them all (set user: to someone else)",
            )),
        }
    }
    f
}

/// Why a path cannot be used, in a few words.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => e.to_string(),
    }
}

/// superd's permitted capability set (/proc/self/status, CapPrm).
fn permitted_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapPrm:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .unwrap_or(0)
}

/// The socket activation fields of a service, as picked.
struct ActivationFields<'a> {
    pass: Option<(&'a crate::service::PassMode, Origin<'a>)>,
    /// Only the service's own: names are per address, and `defaults` has
    /// no addresses.
    fd_names: Option<&'a OneOrMany<super::raw::FdName>>,
    start: Option<(&'a crate::service::StartMode, Origin<'a>)>,
    stderr: Option<(&'a crate::service::StderrMode, Origin<'a>)>,
}

/// `pass`, `fd_names`, `start` and per-address socket types
/// (superd.yaml(5), SOCKET ACTIVATION): each only where superd applies it.
fn activation(
    name: &str,
    f: ActivationFields<'_>,
    entries: &[ListenEntry],
    own: Origin<'_>,
    (wait, is_builtin): (bool, bool),
    errors: &mut Vec<ConfigError>,
) -> (
    crate::service::PassMode,
    Vec<String>,
    crate::service::StartMode,
) {
    use crate::service::{PassMode, StartMode, StderrMode};
    let pass = f.pass.map_or(PassMode::Stdio, |(p, _)| *p);
    if let Some((PassMode::ListenFds, o)) = f.pass {
        if is_builtin {
            errors.push(o.at_value(
                "pass",
                format!("service {name:?}: pass: listen_fds needs exec (a builtin has no child)"),
            ));
        }
        if let Some((StderrMode::Socket, so)) = f.stderr {
            errors.push(so.at_value(
                "stderr",
                format!(
                    "service {name:?}: stderr: socket cannot be applied with pass: listen_fds (the socket is on fd 3, fds 0-2 are /dev/null or the log): use log or null"
                ),
            ));
        }
    }
    if let Some((StartMode::AtStart, o)) = f.start
        && (!wait || is_builtin)
    {
        errors.push(o.at_value(
            "start",
            format!(
                "service {name:?}: start: at_start needs wait: true and exec (a nowait child needs a connection)"
            ),
        ));
    }
    for (i, e) in entries.iter().enumerate() {
        if e.socket.is_some() && (!wait || is_builtin) {
            let msg = format!(
                "service {name:?}: a socket type per address needs wait: true and exec (one child gets every socket)"
            );
            // At the entry's `socket:` key.
            let at = own
                .file
                .index
                .key(&own.path(&["listen", &i.to_string(), "socket"]));
            errors.push(match at {
                Some(pos) => own.error(Some(pos), msg),
                None => own.at_element("listen", i, msg),
            });
        }
    }
    let mut names = Vec::new();
    if let Some(OneOrMany(list)) = f.fd_names {
        if pass != PassMode::ListenFds {
            errors.push(own.at_value(
                "fd_names",
                format!("service {name:?}: fd_names needs pass: listen_fds"),
            ));
        } else if !wait && !list.is_empty() {
            errors.push(own.at_value(
                "fd_names",
                format!(
                    "service {name:?}: fd_names needs wait: true (a nowait child's fd 3 is named connection)"
                ),
            ));
        } else if list.len() != entries.len() {
            errors.push(own.at_value(
                "fd_names",
                format!(
                    "service {name:?}: fd_names has {} name{} for {} address{}: one per address of listen",
                    list.len(),
                    if list.len() == 1 { "" } else { "s" },
                    entries.len(),
                    if entries.len() == 1 { "" } else { "es" }
                ),
            ));
        }
        names = list.iter().map(|n| n.0.clone()).collect();
    }
    let start = f.start.map_or(StartMode::OnDemand, |(s, _)| *s);
    (pass, names, start)
}

/// superd's own hard limit for `r`: `Some(None)` is unlimited.
fn own_hard_limit(r: RlimitResource) -> Option<RlimValue> {
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
    let res = match r {
        RlimitResource::Nofile => Resource::RLIMIT_NOFILE,
        RlimitResource::Nproc => Resource::RLIMIT_NPROC,
        RlimitResource::As => Resource::RLIMIT_AS,
        RlimitResource::Data => Resource::RLIMIT_DATA,
        RlimitResource::Stack => Resource::RLIMIT_STACK,
        RlimitResource::Fsize => Resource::RLIMIT_FSIZE,
        RlimitResource::Core => Resource::RLIMIT_CORE,
        RlimitResource::Cpu => Resource::RLIMIT_CPU,
        RlimitResource::Memlock => Resource::RLIMIT_MEMLOCK,
    };
    let (_, hard) = getrlimit(res).ok()?;
    Some((hard != RLIM_INFINITY).then_some(hard))
}

/// CAP_SYS_RESOURCE, from linux/capability.h.
const CAP_SYS_RESOURCE: u32 = 24;

/// Whether superd's effective capability set holds `cap`
/// (/proc/self/status, CapEff).
fn has_capability(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << cap) != 0)
}

/// Makes a configured rlimit one the child can be given, or says why it
/// cannot (so `--check` finds it, not every connection's exec). The kernel
/// never lets `nofile` exceed fs.nr_open, and without CAP_SYS_RESOURCE no
/// hard limit can go above superd's own. `unlimited` means the most the
/// child can have under those ceilings (as systemd reads
/// `LimitNOFILE=infinity`); a number above them is an error.
fn settle_rlimit(mut l: Rlimit, ctx: &Context) -> Result<Rlimit, String> {
    let name = l.resource.as_str();
    let kernel = (l.resource == RlimitResource::Nofile)
        .then_some(ctx.nr_open)
        .flatten();
    let own = if ctx.can_raise_limits {
        None
    } else {
        ctx.hard_limits
            .iter()
            .find(|(r, _)| *r == l.resource)
            .and_then(|(_, h)| *h)
    };
    let ceiling = match (kernel, own) {
        (Some(k), Some(o)) => Some(k.min(o)),
        (k, o) => k.or(o),
    };
    let Some(max) = ceiling else {
        return Ok(l);
    };
    for v in [&mut l.soft, &mut l.hard] {
        let Some(n) = *v else {
            *v = Some(max);
            continue;
        };
        if let Some(k) = kernel
            && n > k
        {
            return Err(format!(
                "{name} {n} is above the kernel's maximum of {k} (fs.nr_open)"
            ));
        }
        if let Some(o) = own
            && n > o
        {
            return Err(format!(
                "{name} {n} is above superd's own hard limit of {o}, which only CAP_SYS_RESOURCE can raise"
            ));
        }
    }
    Ok(l)
}

/// The PROXY fields of one service, each with where it came from.
struct ProxyFields<'a> {
    protocol: Option<(&'a crate::proxy::Accept, Origin<'a>)>,
    from: Option<(&'a OneOrMany<Cidr>, Origin<'a>)>,
    timeout: Option<(&'a Dur, Origin<'a>)>,
    wait: Option<(&'a bool, Origin<'a>)>,
}

/// `proxy_protocol` and its companions. The header is read from a TCP
/// connection before anything else happens to it, so the service must be
/// TCP, stream, and not wait (a wait child gets the listening socket: no
/// header is ever read). A unix socket is refused too: `proxy_from` names
/// IP addresses, and a unix peer has none to check.
fn proxy_config(
    f: ProxyFields,
    raw: &RawService,
    own: Origin,
    (socket, any_unix, wait): (SocketType, bool, bool),
    ctx: &Context,
    errors: &mut Vec<ConfigError>,
) -> Option<ProxyConfig> {
    let Some((&accept, o)) = f.protocol else {
        // Written in the service itself, these would be ignored: refuse
        // them. From `defaults` they wait for a service that uses them.
        for (field, set) in [
            ("proxy_from", raw.proxy_from.is_some()),
            ("proxy_timeout", raw.proxy_timeout.is_some()),
        ] {
            if set {
                errors.push(own.at_key(
                    field,
                    format!("{field} has no effect without proxy_protocol"),
                ));
            }
        }
        return None;
    };
    let before = errors.len();
    if !ctx.proxy_served {
        errors.push(o.at_value(
            "proxy_protocol",
            "proxy_protocol is not yet supported by this build: superd does not read PROXY headers yet",
        ));
    }
    if socket != SocketType::Stream {
        errors.push(o.at_value(
            "proxy_protocol",
            format!(
                "proxy_protocol needs a stream service: a PROXY header starts a TCP connection, and a {socket} service has none"
            ),
        ));
    } else if any_unix {
        errors.push(o.at_value(
            "proxy_protocol",
            "proxy_protocol needs TCP addresses: proxy_from names IP addresses, and a unix socket peer has none",
        ));
    } else if wait {
        let (at, field) = match f.wait {
            Some((_, w)) => (w, "wait"),
            None => (o, "proxy_protocol"),
        };
        errors.push(at.at_value(
            field,
            "proxy_protocol needs wait: false: a wait child gets the listening socket, and no header is read",
        ));
    }
    let from = match f.from {
        None => {
            errors.push(o.at_value(
                "proxy_protocol",
                "proxy_protocol needs proxy_from: the addresses of the proxies that may send the header",
            ));
            Vec::new()
        }
        Some((list, at)) if list.0.is_empty() => {
            errors.push(at.at_key(
                "proxy_from",
                "proxy_from is empty: expected the addresses of the proxies that may send the header",
            ));
            Vec::new()
        }
        Some((list, _)) => list.0.clone(),
    };
    let timeout = match f.timeout {
        Some((d, at)) if d.0.is_zero() => {
            errors.push(at.at_value("proxy_timeout", "proxy_timeout must be longer than 0"));
            Duration::ZERO
        }
        Some((d, _)) => d.0,
        None => ProxyConfig::DEFAULT_TIMEOUT,
    };
    (errors.len() == before).then_some(ProxyConfig {
        accept,
        from,
        timeout,
    })
}

/// Resolves the users and groups `defaults` names even when no service
/// inherits them: an unknown one is a load error all the same (superd.yaml(5)). A
/// service that inherits one reports the same error, which `finish` merges.
fn resolve_default_ids(
    d: &RawService,
    o: Origin,
    cache: &mut Cache,
    errors: &mut Vec<ConfigError>,
) {
    let ids = [
        ("user", &d.user, true),
        ("group", &d.group, false),
        ("socket_user", &d.socket_user, true),
        ("socket_group", &d.socket_group, false),
    ];
    for (field, r, is_user) in ids {
        let Some(r) = r else { continue };
        let found = if is_user {
            cache.user(r).map(drop)
        } else {
            cache.group(r).map(drop)
        };
        if let Err(m) = found {
            errors.push(o.at_value(field, m));
        }
    }
    for (i, r) in d.groups.iter().flat_map(|g| g.0.iter()).enumerate() {
        if let Err(m) = cache.group(r) {
            errors.push(o.at_element("groups", i, m));
        }
    }
}

/// Resolves user, group and groups, and applies the root rule (superd.yaml(5), THE ROOT RULE):
/// as root, an exec service needs a user and runs as uid 0 only when its
/// own `user:` says so; not as root, nobody can be switched to.
fn credentials<'a>(
    raw: &'a RawService,
    own: Origin<'a>,
    defaults: Option<(&'a RawService, Origin<'a>)>,
    is_builtin: bool,
    ctx: &Context,
    cache: &mut Cache,
    errors: &mut Vec<ConfigError>,
) -> Option<Credentials> {
    macro_rules! pick {
        ($f:ident) => {
            pick(&raw.$f, own, defaults.map(|(d, o)| (&d.$f, o)))
        };
    }
    let user = pick!(user);
    let group = pick!(group);
    let groups = pick!(groups);
    let name = own.service.unwrap_or("defaults");

    let info = user.and_then(|(r, o)| {
        cache
            .user(r)
            .map_err(|m| errors.push(o.at_value("user", m)))
            .ok()
    });
    let gid = group.and_then(|(r, o)| {
        cache
            .group(r)
            .map_err(|m| errors.push(o.at_value("group", m)))
            .ok()
    });
    let mut list = Vec::new();
    if let Some((OneOrMany(rs), o)) = groups {
        for (i, r) in rs.iter().enumerate() {
            match cache.group(r) {
                Ok(g) => list.push(g),
                Err(m) => errors.push(o.at_element("groups", i, m)),
            }
        }
    }

    if is_builtin {
        // Builtins run inside superd: there is no child to give an identity.
        return None;
    }
    if ctx.root() {
        let Some((_, uo)) = user else {
            errors.push(own.at_key(
                "",
                format!("service {name:?} needs a user: superd runs as root (set user: here or in defaults)"),
            ));
            return None;
        };
        let info = info?;
        if info.uid == 0 && uo.service.is_some() && raw.user_merged {
            errors.push(own.at_key(
                "",
                format!(
                    "service {name:?} would run as root through a merge key (<<): only a service's own user: may say root"
                ),
            ));
            return None;
        }
        if info.uid == 0 && uo.service.is_none() {
            errors.push(own.at_key(
                "",
                format!(
                    "service {name:?} would run as root through defaults ({}): only a service's own user: may say root",
                    uo.at()
                ),
            ));
            return None;
        }
        // The same rule for the group: gid 0 reads root's files as surely
        // as uid 0 (superd.yaml(5), THE ROOT RULE).
        if let (Some(0), Some((_, go))) = (gid, group) {
            if go.service.is_none() {
                errors.push(own.at_key(
                    "",
                    format!(
                        "service {name:?} would run with group root through defaults ({}): only a service's own group: may say root",
                        go.at_field("group")
                    ),
                ));
                return None;
            }
            if raw.group_merged {
                errors.push(own.at_key(
                    "",
                    format!(
                        "service {name:?} would run with group root through a merge key (<<): only a service's own group: may say root"
                    ),
                ));
                return None;
            }
        }
        let gid = match (gid, info.gid) {
            (Some(g), _) | (None, Some(g)) => g,
            (None, None) => {
                if group.is_none() {
                    errors.push(user.map_or(own, |(_, o)| o).at_value(
                        "user",
                        format!(
                            "uid {} has no passwd entry: set group: explicitly",
                            info.uid
                        ),
                    ));
                }
                return None;
            }
        };
        let groups = match groups {
            Some(_) => list,
            None if info.gid.is_none() => Vec::new(),
            None => cache
                .grouplist(&info.name, gid)
                .map_err(|m| errors.push(user.map_or(own, |(_, o)| o).at_value("user", m)))
                .ok()?,
        };
        return Some(Credentials {
            user: info.name,
            uid: info.uid,
            gid,
            groups,
            home: info.home,
            shell: info.shell,
        });
    }

    // Not root: superd cannot change identity, so the child runs as
    // superd's own user, as xinetd does. user/group/groups were resolved
    // above, so a typo is still an error; they take effect under root.
    None
}

/// Opens `path` if it is a regular file, with its metadata from the opened
/// file itself: what is read is what was checked. O_NONBLOCK, so that a
/// FIFO swapped in after the load's check cannot hang the event loop in
/// open(2). Symlinks are followed (programs are often links, as exec
/// follows them); the file is only read, never written or executed here.
pub(super) fn open_regular(path: &Path) -> Option<(std::fs::File, std::fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    let m = file.metadata().ok()?;
    m.is_file().then_some((file, m))
}

/// Why the service's own user could not execute its program, if that can
/// be told from the permission bits: a directory on the way it cannot
/// search, or a file it cannot execute (or, for a `#!` script, read).
/// superd checks the program as itself at load, and root passes every
/// check; this says what the child will meet. Only a warning: an ACL may
/// grant what the bits do not. Nothing to say without a user, for root,
/// or under a chroot (the path is inside it).
pub fn exec_access_warning(service: &Service) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let (Program::Exec { path, .. }, Some(c)) = (&service.program, &service.credentials) else {
        return None;
    };
    if c.uid == 0 || service.chroot.is_some() {
        return None;
    }
    let may = |m: &std::fs::Metadata, bit: u32| {
        let shift = if m.uid() == c.uid {
            6
        } else if m.gid() == c.gid || c.groups.contains(&m.gid()) {
            3
        } else {
            0
        };
        m.mode() >> shift & bit != 0
    };
    let mut dirs: Vec<&Path> = path.ancestors().skip(1).collect();
    dirs.reverse();
    for dir in dirs {
        let m = std::fs::metadata(dir).ok()?;
        if !may(&m, 0o1) {
            return Some(format!(
                "directory {} is not searchable by user {}",
                dir.display(),
                c.user
            ));
        }
    }
    let (mut file, m) = open_regular(path)?;
    if !may(&m, 0o1) {
        return Some(format!(
            "{} is not executable by user {}",
            path.display(),
            c.user
        ));
    }
    let mut head = [0u8; 2];
    let script = std::io::Read::read_exact(&mut file, &mut head).is_ok() && head == *b"#!";
    if script && !may(&m, 0o4) {
        return Some(format!(
            "{} is a script user {} cannot read",
            path.display(),
            c.user
        ));
    }
    None
}
