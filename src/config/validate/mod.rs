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

/// The service's own value of field `$f`, else the one `defaults` gives,
/// with where it came from (`pick`, over the `Layers` `$l`).
macro_rules! pick {
    ($l:expr, $f:ident) => {{
        let l: &$crate::config::validate::Layers = &$l;
        $crate::config::validate::pick(&l.raw.$f, l.own, l.defaults.map(|(d, o)| (&d.$f, o)))
    }};
}

mod fences;
mod fields;
mod ids;
mod service;
mod socket;
mod system;

use fences::*;
use fields::*;
use ids::*;
use service::*;
use socket::*;
use system::*;

pub use fields::MAX_REFUSE_MESSAGE;
pub use system::exec_access_warning;
#[cfg(test)]
pub(crate) use system::open_regular;

use super::ConfigError;
use super::tree::{Index, Pos};
use crate::config::raw::{Dur, EnvKey, IdRef, ListenEntry, Net, OneOrMany, RawFile, RawService};
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

/// A service's fields as written and those of the `defaults` it inherits,
/// each with where it came from: what `pick!` reads a field from.
#[derive(Clone, Copy)]
struct Layers<'a> {
    raw: &'a RawService,
    own: Origin<'a>,
    defaults: Option<(&'a RawService, Origin<'a>)>,
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

    // Sized once: a `Service` is large, and growing by doubling left up to
    // half of 10,000 services' worth unused (superd holds the list while it
    // installs them).
    let n = files
        .iter()
        .filter_map(|f| f.raw.services.as_ref())
        .map(|l| l.0.len())
        .sum();
    let mut services: Vec<Service> = Vec::with_capacity(n);
    let mut bindings: Vec<Binding> = Vec::with_capacity(n);
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
    let l = Layers { raw, own, defaults };
    Binding {
        name,
        listen: raw.listen.as_ref().map_or(&[], |l| l.0.as_slice()),
        socket: pick!(l, socket).map_or(SocketType::Stream, |(v, _)| *v),
        v6only: pick!(l, v6only).is_some_and(|(v, _)| *v),
        enabled: pick!(l, enabled).is_none_or(|(v, _)| *v),
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
