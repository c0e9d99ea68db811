//! Everything a child needs, built before `fork`: program path, argv, the
//! environment, ids, rlimits and the rest, as C strings and raw structs that
//! [`crate::spawn`] can use without allocating. Built once per service (and
//! again on reload); per connection only the connection variables are built.

use std::ffi::{CString, c_char};
use std::io::Write as _;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use nix::sys::resource::{Resource, getrlimit};
use nix::unistd::{Uid, User, getegid, geteuid};

use crate::service::{
    PassMode, Program, RlimitResource, Service, StderrMode, canonical_addr, cstring,
};

mod env;

use env::*;
pub use env::{ConnInfo, Env, is_connection_variable};

/// The capability sets of `capabilities:`.
fn build_fences(service: &Service) -> PlanFences {
    let f = &service.fences;
    let capset = (!f.capabilities.is_empty()).then(|| {
        let mut mask = 0u64;
        for &c in &f.capabilities {
            mask |= 1 << c;
        }
        let (lo, hi) = (mask as u32, (mask >> 32) as u32);
        [0, lo, lo, 0, hi, hi]
    });
    PlanFences {
        namespaces: None,
        capset,
        ambient: f.capabilities.iter().map(|&c| c as libc::c_ulong).collect(),
        no_new_privs: f.no_new_privs,
    }
}

/// The child's identity, ready for setgroups/setgid/setuid.
#[derive(Debug)]
pub struct PlanCredentials {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
    /// `false` when superd is not root and the target is superd's own uid
    /// and gid: an unprivileged process cannot call setgroups, and already
    /// is that user (with its own groups).
    pub set_groups: bool,
}

/// A service's spawn template: immutable, shared by every connection.
///
/// What names the service (its name, `SUPERD_SERVICE`, `LISTEN_FDNAMES`)
/// is its own; the rest is a [`PlanBody`] that services built alike share
/// (see [`PlanCache`]): 10,000 services of one program and user hold one
/// argv, one environment and one set of C strings, not 10,000.
///
/// It holds raw pointers into its own C strings (the argv array), so it is
/// neither `Send` nor `Sync`; the daemon is single-threaded.
#[derive(Debug)]
pub struct SpawnPlan {
    name: String,
    /// The `SUPERD_SERVICE=` entry of the environment, which goes at
    /// `body.own_at` among the body's `head`; `None` when `env:` sets it.
    own: Option<CString>,
    /// `pass: listen_fds`: the `LISTEN_FDS` and `LISTEN_FDNAMES` entries
    /// (`NAME=value\0`) and the number of sockets; `None` for stdio.
    listen: Option<Box<ListenVars>>,
    body: Rc<PlanBody>,
}

/// The part of a plan that does not name its service.
#[derive(Debug)]
struct PlanBody {
    /// `None` for a builtin service: nothing to exec.
    path: Option<CString>,
    /// Owns the strings `argv_ptrs` points into; never mutated.
    _argv: Vec<CString>,
    /// NULL-terminated.
    argv_ptrs: Vec<*const c_char>,
    /// `NAME=value` entries before the connection variables (defaults not
    /// overridden by `env`), but for the plan's own `SUPERD_SERVICE`.
    head: Vec<CString>,
    /// Where in `head` the plan's own entry goes.
    own_at: usize,
    /// The service's `env:` entries, after the connection variables.
    tail: Vec<CString>,
    /// Bit i set: `env:` overrides `CONN_VARS[i]`, so it is not written.
    conn_overridden: u32,
    cwd: CString,
    chroot: Option<CString>,
    umask: libc::mode_t,
    nice: Option<libc::c_int>,
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    credentials: Option<PlanCredentials>,
    stderr: StderrMode,
    /// The service's fences (superd.yaml(5), "Fences").
    fences: PlanFences,
}

impl PlanBody {
    /// Whether a plan may use `other` for this body: every field the same
    /// (the argv pointers aside, which point into each one's own strings),
    /// and the very same namespaces.
    fn same(&self, other: &PlanBody) -> bool {
        let rlimit = |a: &(u32, libc::rlimit), b: &(u32, libc::rlimit)| {
            a.0 == b.0 && a.1.rlim_cur == b.1.rlim_cur && a.1.rlim_max == b.1.rlim_max
        };
        let credentials = |a: &PlanCredentials, b: &PlanCredentials| {
            (a.uid, a.gid, &a.groups, a.set_groups) == (b.uid, b.gid, &b.groups, b.set_groups)
        };
        let (f, g) = (&self.fences, &other.fences);
        self.path == other.path
            && self._argv == other._argv
            && self.head == other.head
            && self.own_at == other.own_at
            && self.tail == other.tail
            && self.conn_overridden == other.conn_overridden
            && self.cwd == other.cwd
            && self.chroot == other.chroot
            && self.umask == other.umask
            && self.nice == other.nice
            && self.rlimits.len() == other.rlimits.len()
            && self
                .rlimits
                .iter()
                .zip(&other.rlimits)
                .all(|(a, b)| rlimit(a, b))
            && match (&self.credentials, &other.credentials) {
                (Some(a), Some(b)) => credentials(a, b),
                (None, None) => true,
                _ => false,
            }
            && self.stderr == other.stderr
            && match (&f.namespaces, &g.namespaces) {
                (Some(a), Some(b)) => Rc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
            && f.capset == g.capset
            && f.ambient == g.ambient
            && f.no_new_privs == g.no_new_privs
    }
}

/// The bodies of the plans built lately, for the next plans to share (one
/// load or reload; the plans keep what they use).
#[derive(Debug, Default)]
pub struct PlanCache {
    recent: Vec<Rc<PlanBody>>,
}

/// How many bodies a [`PlanCache`] compares a new one with: services built
/// alike mostly come together in a file.
const PLAN_CACHE_SIZE: usize = 8;

impl PlanCache {
    /// `body`, or an equal one already built.
    fn share(&mut self, body: PlanBody) -> Rc<PlanBody> {
        if let Some(i) = self.recent.iter().position(|b| b.same(&body)) {
            let b = self.recent.remove(i);
            self.recent.push(b.clone());
            return b;
        }
        let b = Rc::new(body);
        if self.recent.len() == PLAN_CACHE_SIZE {
            self.recent.remove(0);
        }
        self.recent.push(b.clone());
        b
    }
}

/// The fences as the child applies them.
#[derive(Debug, Default)]
pub struct PlanFences {
    /// The service's namespaces, held while a child may still join them.
    pub namespaces: Option<Rc<Namespaces>>,
    /// The capset(2) data (effective, permitted, inheritable for caps
    /// 0-31, then 32-63): permitted and inheritable are the listed caps,
    /// effective is empty until exec. `None`: no `capabilities`.
    pub capset: Option<[u32; 6]>,
    /// The capabilities to raise into the ambient set.
    pub ambient: Vec<libc::c_ulong>,
    pub no_new_privs: bool,
}

impl SpawnPlan {
    /// Builds the plan of `service`. Reads superd's own limits and (when the
    /// service has no `user`) superd's own passwd entry: call it at load and
    /// reload, not per connection.
    pub fn new(service: &Service) -> SpawnPlan {
        SpawnPlan::build(service, None, &mut PlanCache::default())
    }

    /// `new` with the service's namespaces, which the child joins, sharing
    /// its body with an equal one of `cache`.
    pub fn shared(
        service: &Service,
        ns: Option<Rc<Namespaces>>,
        cache: &mut PlanCache,
    ) -> SpawnPlan {
        SpawnPlan::build(service, ns, cache)
    }

    fn build(service: &Service, ns: Option<Rc<Namespaces>>, cache: &mut PlanCache) -> SpawnPlan {
        let (path, argv) = match &service.program {
            Program::Exec { path, argv } => (
                Some(cstring(path.as_os_str().as_bytes())),
                argv.iter().map(|a| cstring(a.as_str())).collect(),
            ),
            Program::Builtin(_) => (None, Vec::new()),
        };
        let argv_ptrs = argv
            .iter()
            .map(|a: &CString| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();

        let (mut head, tail, conn_overridden) = build_env(service);
        let own_at = head
            .iter()
            .position(|c| c.as_bytes().starts_with(b"SUPERD_SERVICE="));
        let own = own_at.map(|i| head.remove(i));
        let mut fences = build_fences(service);
        fences.namespaces = ns;

        let body = PlanBody {
            path,
            _argv: argv,
            argv_ptrs,
            head,
            own_at: own_at.unwrap_or(0),
            tail,
            conn_overridden,
            cwd: cstring(service.cwd.as_os_str().as_bytes()),
            chroot: service
                .chroot
                .as_ref()
                .map(|c| cstring(c.as_os_str().as_bytes())),
            umask: service.umask as libc::mode_t,
            nice: service.nice,
            rlimits: build_rlimits(service),
            credentials: service.credentials.as_ref().map(|c| PlanCredentials {
                uid: c.uid,
                gid: c.gid,
                groups: c.groups.clone(),
                set_groups: geteuid().is_root()
                    || c.uid != geteuid().as_raw()
                    || c.gid != getegid().as_raw(),
            }),
            stderr: service.stderr,
            fences,
        };
        SpawnPlan {
            name: service.name.clone(),
            own,
            listen: (service.pass == PassMode::ListenFds).then(|| {
                let names: Vec<&str> = if service.wait {
                    (0..service.listen.len())
                        .map(|i| service.fd_name(i))
                        .collect()
                } else {
                    vec!["connection"]
                };
                Box::new(ListenVars {
                    n: names.len(),
                    fds: format!("LISTEN_FDS={}\0", names.len()).into_bytes(),
                    names: format!("LISTEN_FDNAMES={}\0", names.join(":")).into_bytes(),
                })
            }),
            body: cache.share(body),
        }
    }

    /// The environment entries before the connection variables, in order.
    fn head(&self) -> impl Iterator<Item = &CString> {
        let (before, after) = self.body.head.split_at(self.body.own_at);
        before.iter().chain(&self.own).chain(after)
    }

    fn head_len(&self) -> usize {
        self.body.head.len() + usize::from(self.own.is_some())
    }

    pub fn fences(&self) -> &PlanFences {
        &self.body.fences
    }

    /// `pass: listen_fds`: how many sockets the child gets on fds 3 and up
    /// (every listener of a wait service, the connection of a nowait
    /// one); `None` for stdio.
    pub fn listen_fds(&self) -> Option<usize> {
        self.listen.as_ref().map(|l| l.n)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The program to exec; `None` for a builtin.
    pub fn path(&self) -> Option<&CString> {
        self.body.path.as_ref()
    }

    /// NULL-terminated argv.
    pub fn argv_ptr(&self) -> *const *const c_char {
        self.body.argv_ptrs.as_ptr()
    }

    pub fn cwd(&self) -> &CString {
        &self.body.cwd
    }

    pub fn chroot(&self) -> Option<&CString> {
        self.body.chroot.as_ref()
    }

    pub fn umask(&self) -> libc::mode_t {
        self.body.umask
    }

    pub fn nice(&self) -> Option<libc::c_int> {
        self.body.nice
    }

    /// Every rlimit to set, the default `nofile` included.
    pub fn rlimits(&self) -> &[(libc::__rlimit_resource_t, libc::rlimit)] {
        &self.body.rlimits
    }

    pub fn credentials(&self) -> Option<&PlanCredentials> {
        self.body.credentials.as_ref()
    }

    pub fn stderr(&self) -> StderrMode {
        self.body.stderr
    }
}

/// The configured rlimits, plus soft `nofile` = min(1024, hard) when
/// `nofile` is not configured (a child never inherits superd's huge limit).
fn build_rlimits(service: &Service) -> Vec<(libc::__rlimit_resource_t, libc::rlimit)> {
    let raw = |v: Option<u64>| v.map_or(libc::RLIM_INFINITY, |n| n as libc::rlim_t);
    let mut out: Vec<_> = service
        .rlimits
        .iter()
        .map(|r| {
            (
                r.resource.raw(),
                libc::rlimit {
                    rlim_cur: raw(r.soft),
                    rlim_max: raw(r.hard),
                },
            )
        })
        .collect();
    let has_nofile = service
        .rlimits
        .iter()
        .any(|r| r.resource == RlimitResource::Nofile);
    if !has_nofile && let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        out.push((
            libc::RLIMIT_NOFILE,
            libc::rlimit {
                rlim_cur: hard.min(DEFAULT_NOFILE),
                rlim_max: hard,
            },
        ));
    }
    out
}

/// A service's namespaces (superd.yaml(5), "Fences"), made once per
/// service by `spawn::sandbox` for its children to join; dropping it closes
/// the fds (the namespaces go with the last child that joined them).
#[derive(Debug)]
pub struct Namespaces {
    net: Option<std::os::fd::OwnedFd>,
    mnt: Option<std::os::fd::OwnedFd>,
}

impl Namespaces {
    /// The namespaces behind these descriptors (`/proc/PID/ns/*` opened
    /// by the sandbox helper).
    pub(crate) fn of(
        net: Option<std::os::fd::OwnedFd>,
        mnt: Option<std::os::fd::OwnedFd>,
    ) -> Namespaces {
        Namespaces { net, mnt }
    }

    /// The network namespace (`private_network`).
    pub fn net_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.net.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// The mount namespace (`private_tmp` and the path lists).
    pub fn mnt_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.mnt.as_ref().map(AsRawFd::as_raw_fd)
    }
}

#[cfg(test)]
mod tests;
