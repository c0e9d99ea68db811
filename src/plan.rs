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
use crate::spawn::sandbox::Namespaces;

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

/// What the connection tells the child through its environment.
#[derive(Clone, Copy, Debug)]
pub enum ConnInfo<'a> {
    /// TCP; addresses already canonical (IPv4-mapped shown as IPv4).
    Tcp {
        remote: SocketAddr,
        local: SocketAddr,
    },
    /// TCP behind a proxy (superd.yaml(5), PROXY PROTOCOL): the endpoints
    /// the header names (or the real ones for a LOCAL/UNKNOWN header), and
    /// the header's own variables ([`crate::proxy::Header::proxy_vars`]),
    /// each name one of [`crate::proxy::PROXY_VARS`].
    TcpProxied {
        remote: SocketAddr,
        local: SocketAddr,
        proxy: &'a [(&'static str, String)],
    },
    /// A unix stream/seqpacket peer, from SO_PEERCRED.
    Unix { pid: i32, uid: u32, gid: u32 },
    /// wait mode, or a datagram socket: no connection variables.
    None,
}

/// `PATH` for everyone, and for root (superd(8), THE CHILD).
const PATH_USER: &str = "/usr/local/bin:/usr/bin:/bin";
const PATH_ROOT: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The default soft `nofile` of a child: old programs loop up to it.
const DEFAULT_NOFILE: u64 = 1024;

/// Every connection variable name, in the order they are written: then
/// those of a PROXY header ([`crate::proxy::PROXY_VARS`], from index
/// [`PROXY_VARS_AT`]). The index is the bit in
/// [`SpawnPlan::conn_overridden`].
const CONN_VARS: [&str; 19] = [
    "PROTO",
    "TCPREMOTEIP",
    "TCPREMOTEPORT",
    "TCPLOCALIP",
    "TCPLOCALPORT",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "UNIXREMOTEPID",
    "UNIXREMOTEEUID",
    "UNIXREMOTEEGID",
    "PROXY_PROTOCOL",
    "TCPPROXYIP",
    "TCPPROXYPORT",
    "PROXY_ALPN",
    "PROXY_AUTHORITY",
    "PROXY_UNIQUE_ID",
    "SSL_PROTOCOL",
    "SSL_CIPHER",
    "SSL_PEER_CERT_CN",
];
/// Where the PROXY header's variables start in [`CONN_VARS`].
const PROXY_VARS_AT: usize = 10;
/// The most connection variables one child gets (TCP behind a proxy).
const CONN_VARS_MAX: usize = 7 + crate::proxy::PROXY_VARS.len();

/// Whether `name` is a variable superd writes for each connection
/// (superd(8), THE CHILD; and the socket-activation and PROXY names), which
/// `pass_env` may never carry from superd's own environment.
pub fn is_connection_variable(name: &str) -> bool {
    CONN_VARS.contains(&name)
        || name == "SUPERD_SERVICE"
        || name.starts_with("LISTEN_")
        || name.starts_with("PROXY_")
        || name.starts_with("TCPPROXY")
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
/// It holds raw pointers into its own C strings (the argv array), so it is
/// neither `Send` nor `Sync`; the daemon is single-threaded.
#[derive(Debug)]
pub struct SpawnPlan {
    name: String,
    /// `None` for a builtin service: nothing to exec.
    path: Option<CString>,
    /// Owns the strings `argv_ptrs` points into; never mutated.
    _argv: Vec<CString>,
    /// NULL-terminated.
    argv_ptrs: Vec<*const c_char>,
    /// `NAME=value` entries before the connection variables (defaults not
    /// overridden by `env`).
    head: Vec<CString>,
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
    /// `pass: listen_fds`: the `LISTEN_FDS` and `LISTEN_FDNAMES` entries
    /// (`NAME=value\0`) and the number of sockets; `None` for stdio.
    listen: Option<ListenVars>,
    /// The service's fences (superd.yaml(5), "Fences").
    fences: PlanFences,
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

/// The socket activation variables of a `pass: listen_fds` service
/// (superd.yaml(5), SOCKET ACTIVATION), but `LISTEN_PID`, which only the
/// child knows: its room is made in each [`Env`].
#[derive(Debug)]
struct ListenVars {
    n: usize,
    fds: Vec<u8>,
    names: Vec<u8>,
}

/// `LISTEN_PID=` and the room after it for the child's pid, in digits,
/// written by the child itself after the clone (the rest stays NUL).
const LISTEN_PID: &[u8] = b"LISTEN_PID=";
const PID_ROOM: usize = 20;

/// A per-connection environment: owned storage for the connection variables
/// and the NULL-terminated `envp` array pointing into it and into the plan.
/// Build it before `fork`; it borrows the plan, so it cannot outlive it.
#[derive(Debug)]
pub struct Env<'a> {
    /// `NAME=value\0` records of the connection variables; never touched
    /// after `ptrs` is built (so it never reallocates under them).
    _conn: Vec<u8>,
    ptrs: Vec<*const c_char>,
    /// Where the child writes its pid, after `LISTEN_PID=` in `_conn`
    /// (`pass: listen_fds`); null otherwise.
    pid_slot: *mut u8,
    _plan: PhantomData<&'a SpawnPlan>,
}

impl Env<'_> {
    /// The `envp` argument of `execve`: valid while `self` lives.
    pub fn as_ptr(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }

    /// Number of variables (without the terminating NULL).
    pub fn len(&self) -> usize {
        self.ptrs.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The PID_ROOM NUL bytes after `LISTEN_PID=`, for the child to write
    /// its pid into; null without `pass: listen_fds`. Only the child of
    /// this environment writes there, and nothing else reads it until
    /// execve does.
    pub fn pid_slot(&self) -> *mut u8 {
        self.pid_slot
    }
}

impl SpawnPlan {
    /// Builds the plan of `service`. Reads superd's own limits and (when the
    /// service has no `user`) superd's own passwd entry: call it at load and
    /// reload, not per connection.
    pub fn new(service: &Service) -> SpawnPlan {
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

        let (head, tail, conn_overridden) = build_env(service);

        SpawnPlan {
            name: service.name.clone(),
            path,
            _argv: argv,
            argv_ptrs,
            head,
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
            listen: (service.pass == PassMode::ListenFds).then(|| {
                let names: Vec<&str> = if service.wait {
                    (0..service.listen.len())
                        .map(|i| service.fd_name(i))
                        .collect()
                } else {
                    vec!["connection"]
                };
                ListenVars {
                    n: names.len(),
                    fds: format!("LISTEN_FDS={}\0", names.len()).into_bytes(),
                    names: format!("LISTEN_FDNAMES={}\0", names.join(":")).into_bytes(),
                }
            }),
            fences: build_fences(service),
        }
    }

    /// The plan with the service's namespaces, which the child joins.
    pub fn with_namespaces(mut self, ns: Option<Rc<Namespaces>>) -> SpawnPlan {
        self.fences.namespaces = ns;
        self
    }

    pub fn fences(&self) -> &PlanFences {
        &self.fences
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
        self.path.as_ref()
    }

    /// NULL-terminated argv.
    pub fn argv_ptr(&self) -> *const *const c_char {
        self.argv_ptrs.as_ptr()
    }

    pub fn cwd(&self) -> &CString {
        &self.cwd
    }

    pub fn chroot(&self) -> Option<&CString> {
        self.chroot.as_ref()
    }

    pub fn umask(&self) -> libc::mode_t {
        self.umask
    }

    pub fn nice(&self) -> Option<libc::c_int> {
        self.nice
    }

    /// Every rlimit to set, the default `nofile` included.
    pub fn rlimits(&self) -> &[(libc::__rlimit_resource_t, libc::rlimit)] {
        &self.rlimits
    }

    pub fn credentials(&self) -> Option<&PlanCredentials> {
        self.credentials.as_ref()
    }

    pub fn stderr(&self) -> StderrMode {
        self.stderr
    }

    /// Builds the environment for one connection (before `fork`): one buffer
    /// for the connection variables and one pointer array.
    pub fn envp_for(&self, conn: &ConnInfo<'_>) -> Env<'_> {
        let mut buf = Vec::with_capacity(192);
        let mut offsets = [0usize; CONN_VARS_MAX + 3];
        let mut n = self.write_conn_vars(conn, &mut buf, &mut offsets[..CONN_VARS_MAX]);
        let pid_at = self.write_listen_vars(&mut buf, &mut offsets, &mut n);
        // Every pointer comes from one mutable base, so that the child may
        // write its pid through `pid_slot`; `buf` is never touched again.
        let base = buf.as_mut_ptr();
        let mut ptrs = Vec::with_capacity(self.head.len() + n + self.tail.len() + 1);
        ptrs.extend(self.head.iter().map(|c| c.as_ptr()));
        ptrs.extend(
            offsets[..n]
                .iter()
                .map(|&o| base.wrapping_add(o).cast_const().cast::<c_char>()),
        );
        ptrs.extend(self.tail.iter().map(|c| c.as_ptr()));
        ptrs.push(std::ptr::null());
        Env {
            _conn: buf,
            ptrs,
            pid_slot: pid_at.map_or(std::ptr::null_mut(), |o| base.wrapping_add(o)),
            _plan: PhantomData,
        }
    }

    /// The environment `envp_for` builds, as pairs in order (for tests and
    /// `--check`).
    pub fn env_pairs(&self, conn: &ConnInfo<'_>) -> Vec<(String, String)> {
        let mut buf = Vec::new();
        let mut offsets = [0usize; CONN_VARS_MAX + 3];
        let mut n = self.write_conn_vars(conn, &mut buf, &mut offsets[..CONN_VARS_MAX]);
        self.write_listen_vars(&mut buf, &mut offsets, &mut n);
        let conn_entries = offsets[..n].iter().map(|&o| {
            let end = buf[o..]
                .iter()
                .position(|&b| b == 0)
                .map_or(buf.len(), |e| o + e);
            &buf[o..end]
        });
        self.head
            .iter()
            .map(|c| c.as_bytes())
            .chain(conn_entries)
            .chain(self.tail.iter().map(|c| c.as_bytes()))
            .map(|entry| {
                let s = String::from_utf8_lossy(entry);
                let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    /// Appends `NAME=value\0` for each connection variable not overridden by
    /// `env:`, recording where each starts; returns how many.
    fn write_conn_vars(
        &self,
        conn: &ConnInfo<'_>,
        buf: &mut Vec<u8>,
        offsets: &mut [usize],
    ) -> usize {
        let mut n = 0;
        let mut put = |idx: usize, value: std::fmt::Arguments<'_>| {
            if self.conn_overridden & (1 << idx) != 0 {
                return;
            }
            offsets[n] = buf.len();
            n += 1;
            // Writing into a Vec cannot fail; values are numbers and IPs, no NUL.
            let _ = write!(buf, "{}={}\0", CONN_VARS[idx], value);
        };
        match *conn {
            ConnInfo::Tcp { remote, local } => {
                let (remote, local) = (canonical_addr(remote), canonical_addr(local));
                put(0, format_args!("TCP"));
                put(1, format_args!("{}", remote.ip()));
                put(2, format_args!("{}", remote.port()));
                put(3, format_args!("{}", local.ip()));
                put(4, format_args!("{}", local.port()));
                put(5, format_args!("{}", remote.ip()));
                put(6, format_args!("{}", remote.port()));
            }
            ConnInfo::TcpProxied {
                remote,
                local,
                proxy,
            } => {
                let (remote, local) = (canonical_addr(remote), canonical_addr(local));
                put(0, format_args!("TCP"));
                put(1, format_args!("{}", remote.ip()));
                put(2, format_args!("{}", remote.port()));
                put(3, format_args!("{}", local.ip()));
                put(4, format_args!("{}", local.port()));
                put(5, format_args!("{}", remote.ip()));
                put(6, format_args!("{}", remote.port()));
                for (name, value) in proxy {
                    // Values are filtered by proxy::Header::proxy_vars:
                    // UTF-8 without control characters, so no NUL.
                    if let Some(i) = crate::proxy::PROXY_VARS.iter().position(|v| v == name) {
                        put(PROXY_VARS_AT + i, format_args!("{value}"));
                    }
                }
            }
            ConnInfo::Unix { pid, uid, gid } => {
                put(0, format_args!("UNIX"));
                put(7, format_args!("{pid}"));
                put(8, format_args!("{uid}"));
                put(9, format_args!("{gid}"));
            }
            ConnInfo::None => {}
        }
        n
    }
}

impl SpawnPlan {
    /// Appends `LISTEN_FDS`, `LISTEN_PID` (with PID_ROOM NUL bytes for the
    /// child's pid) and `LISTEN_FDNAMES` for `pass: listen_fds`, recording
    /// where each starts at `offsets[*n..]`; returns where the pid goes.
    fn write_listen_vars(
        &self,
        buf: &mut Vec<u8>,
        offsets: &mut [usize],
        n: &mut usize,
    ) -> Option<usize> {
        let l = self.listen.as_ref()?;
        offsets[*n] = buf.len();
        buf.extend_from_slice(&l.fds);
        offsets[*n + 1] = buf.len();
        buf.extend_from_slice(LISTEN_PID);
        let pid_at = buf.len();
        buf.extend_from_slice(&[0; PID_ROOM]);
        offsets[*n + 2] = buf.len();
        buf.extend_from_slice(&l.names);
        *n += 3;
        Some(pid_at)
    }
}

/// The fixed parts of the environment: defaults (minus what `env:` names),
/// `env:` itself, and which connection variables `env:` overrides.
fn build_env(service: &Service) -> (Vec<CString>, Vec<CString>, u32) {
    // `env:` keys are unique (a YAML mapping), but be safe: the last wins.
    let mut tail: Vec<(&str, &str)> = Vec::with_capacity(service.env.len());
    for (k, v) in &service.env {
        tail.retain(|(tk, _)| *tk != k.as_str());
        tail.push((k, v));
    }
    let overridden = |name: &str| tail.iter().any(|(k, _)| *k == name);

    // `pass_env:` values from superd's own environment replace the
    // defaults of the same name and come after them; `env:` wins over both.
    let passed: Vec<(&str, Vec<u8>)> = service
        .pass_env
        .iter()
        .filter_map(|k| Some((k.as_str(), std::env::var_os(k)?.as_bytes().to_vec())))
        .filter(|(_, v)| !v.contains(&0))
        .collect();
    let head = default_env(service)
        .into_iter()
        .filter(|(k, _)| !passed.iter().any(|(p, _)| p == k))
        .chain(passed.iter().map(|(k, v)| (*k, v.clone())))
        .filter(|(k, _)| !overridden(k))
        .map(|(k, v)| env_entry(k, &v))
        .collect();
    let conn_overridden = CONN_VARS
        .iter()
        .enumerate()
        .filter(|(_, name)| overridden(name))
        .fold(0u32, |mask, (i, _)| mask | 1 << i);
    let tail = tail
        .iter()
        .map(|(k, v)| env_entry(k, v.as_bytes()))
        .collect();
    (head, tail, conn_overridden)
}

fn env_entry(name: &str, value: &[u8]) -> CString {
    let mut entry = Vec::with_capacity(name.len() + 1 + value.len());
    entry.extend_from_slice(name.as_bytes());
    entry.push(b'=');
    entry.extend_from_slice(value);
    cstring(entry)
}

/// PATH, HOME, USER, LOGNAME, SHELL and SUPERD_SERVICE, in that order.
fn default_env(service: &Service) -> Vec<(&'static str, Vec<u8>)> {
    let (uid, user, home, shell) = match &service.credentials {
        Some(c) => (
            c.uid,
            c.user.clone(),
            path_or(&c.home, "/"),
            path_or(&c.shell, "/bin/sh"),
        ),
        None => {
            // The child keeps superd's identity: describe that user.
            let uid = geteuid();
            match User::from_uid(uid).ok().flatten() {
                Some(u) => (
                    uid.as_raw(),
                    u.name,
                    path_or(&u.dir, "/"),
                    path_or(&u.shell, "/bin/sh"),
                ),
                None => (
                    uid.as_raw(),
                    uid.to_string(),
                    b"/".to_vec(),
                    b"/bin/sh".to_vec(),
                ),
            }
        }
    };
    let path = if Uid::from_raw(uid).is_root() {
        PATH_ROOT
    } else {
        PATH_USER
    };
    vec![
        ("PATH", path.as_bytes().to_vec()),
        ("HOME", home),
        ("USER", user.clone().into_bytes()),
        ("LOGNAME", user.into_bytes()),
        ("SHELL", shell),
        ("SUPERD_SERVICE", service.name.clone().into_bytes()),
    ]
}

/// A passwd path, or `default` when the field is empty (as login does).
fn path_or(p: &Path, default: &str) -> Vec<u8> {
    if p.as_os_str().is_empty() {
        default.as_bytes().to_vec()
    } else {
        p.as_os_str().as_bytes().to_vec()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{Credentials, Rlimit};
    use std::path::PathBuf;

    fn service() -> Service {
        Service {
            credentials: Some(Credentials {
                user: "nobody".into(),
                uid: 65534,
                gid: 65534,
                groups: vec![65534, 100],
                home: PathBuf::from("/nonexistent"),
                shell: PathBuf::from("/usr/sbin/nologin"),
            }),
            ..Service::new(
                "hello".into(),
                PathBuf::from("/etc/superd/services.d/hello.yaml"),
                Program::Exec {
                    path: PathBuf::from("/usr/bin/hello"),
                    argv: vec!["hello".into(), "--greeting".into(), "hi".into()],
                },
            )
        }
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tcp(remote: &str, local: &str) -> ConnInfo<'static> {
        ConnInfo::Tcp {
            remote: remote.parse().unwrap(),
            local: local.parse().unwrap(),
        }
    }

    #[test]
    fn default_env_then_tcp_vars_in_order() {
        let plan = SpawnPlan::new(&service());
        let env = plan.env_pairs(&tcp("192.0.2.7:50312", "127.0.0.1:7008"));
        assert_eq!(
            env,
            pairs(&[
                ("PATH", PATH_USER),
                ("HOME", "/nonexistent"),
                ("USER", "nobody"),
                ("LOGNAME", "nobody"),
                ("SHELL", "/usr/sbin/nologin"),
                ("SUPERD_SERVICE", "hello"),
                ("PROTO", "TCP"),
                ("TCPREMOTEIP", "192.0.2.7"),
                ("TCPREMOTEPORT", "50312"),
                ("TCPLOCALIP", "127.0.0.1"),
                ("TCPLOCALPORT", "7008"),
                ("REMOTE_ADDR", "192.0.2.7"),
                ("REMOTE_PORT", "50312"),
            ])
        );
    }

    /// Behind a proxy: the header's endpoints as the connection variables,
    /// then its own variables, and `env:` still wins over any of them.
    #[test]
    fn proxied_vars_follow_the_tcp_vars_and_env_overrides_them() {
        assert_eq!(CONN_VARS[PROXY_VARS_AT..], crate::proxy::PROXY_VARS);
        let proxy = vec![
            ("PROXY_PROTOCOL", "2".to_owned()),
            ("TCPPROXYIP", "127.0.0.1".to_owned()),
            ("TCPPROXYPORT", "40000".to_owned()),
            ("PROXY_ALPN", "h2".to_owned()),
        ];
        let conn = ConnInfo::TcpProxied {
            remote: "192.0.2.7:50312".parse().unwrap(),
            local: "198.51.100.1:443".parse().unwrap(),
            proxy: &proxy,
        };
        let mut s = service();
        s.env = vec![("PROXY_ALPN".into(), "mine".into())];
        let plan = SpawnPlan::new(&s);
        let env = plan.env_pairs(&conn);
        assert_eq!(
            env[6..],
            pairs(&[
                ("PROTO", "TCP"),
                ("TCPREMOTEIP", "192.0.2.7"),
                ("TCPREMOTEPORT", "50312"),
                ("TCPLOCALIP", "198.51.100.1"),
                ("TCPLOCALPORT", "443"),
                ("REMOTE_ADDR", "192.0.2.7"),
                ("REMOTE_PORT", "50312"),
                ("PROXY_PROTOCOL", "2"),
                ("TCPPROXYIP", "127.0.0.1"),
                ("TCPPROXYPORT", "40000"),
                ("PROXY_ALPN", "mine"),
            ])
        );
        assert_eq!(plan.envp_for(&conn).len(), env.len());
    }

    #[test]
    fn env_overrides_defaults_and_conn_vars_without_duplicates() {
        let mut s = service();
        s.env = vec![
            ("LANG".into(), "C.UTF-8".into()),
            ("PATH".into(), "/opt/bin".into()),
            ("TCPREMOTEIP".into(), "hidden".into()),
        ];
        let plan = SpawnPlan::new(&s);
        let env = plan.env_pairs(&tcp("192.0.2.7:1", "127.0.0.1:2"));
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "HOME",
                "USER",
                "LOGNAME",
                "SHELL",
                "SUPERD_SERVICE",
                "PROTO",
                "TCPREMOTEPORT",
                "TCPLOCALIP",
                "TCPLOCALPORT",
                "REMOTE_ADDR",
                "REMOTE_PORT",
                "LANG",
                "PATH",
                "TCPREMOTEIP",
            ]
        );
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH"), Some("/opt/bin"));
        assert_eq!(get("TCPREMOTEIP"), Some("hidden"));
        assert_eq!(get("REMOTE_ADDR"), Some("192.0.2.7"));
    }

    #[test]
    fn root_gets_sbin_in_path() {
        let mut s = service();
        if let Some(c) = s.credentials.as_mut() {
            c.uid = 0;
            c.user = "root".into();
        }
        let env = SpawnPlan::new(&s).env_pairs(&ConnInfo::None);
        assert_eq!(env[0], ("PATH".into(), PATH_ROOT.into()));
        assert!(PATH_ROOT.contains("/usr/sbin") && PATH_ROOT.contains("/usr/local/bin"));
    }

    #[test]
    fn no_credentials_describe_superd_itself() {
        let mut s = service();
        s.credentials = None;
        let env = SpawnPlan::new(&s).env_pairs(&ConnInfo::None);
        let expected_path = if geteuid().is_root() {
            PATH_ROOT
        } else {
            PATH_USER
        };
        assert_eq!(env[0], ("PATH".into(), expected_path.into()));
        let me = User::from_uid(geteuid()).unwrap().map(|u| u.name);
        let user = env
            .iter()
            .find(|(k, _)| k == "USER")
            .map(|(_, v)| v.clone());
        assert_eq!(user, Some(me.unwrap_or_else(|| geteuid().to_string())));
    }

    #[test]
    fn v4_mapped_addresses_are_shown_as_v4() {
        let plan = SpawnPlan::new(&service());
        let env = plan.env_pairs(&tcp("[::ffff:192.0.2.7]:4444", "[::ffff:127.0.0.1]:7008"));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("TCPREMOTEIP").as_deref(), Some("192.0.2.7"));
        assert_eq!(get("REMOTE_ADDR").as_deref(), Some("192.0.2.7"));
        assert_eq!(get("TCPLOCALIP").as_deref(), Some("127.0.0.1"));
        let env6 = plan.env_pairs(&tcp("[2001:db8::1]:4444", "[::1]:7008"));
        assert!(env6.contains(&("TCPREMOTEIP".into(), "2001:db8::1".into())));
        assert!(env6.contains(&("TCPLOCALIP".into(), "::1".into())));
    }

    #[test]
    fn unix_vars_and_none() {
        let plan = SpawnPlan::new(&service());
        let env = plan.env_pairs(&ConnInfo::Unix {
            pid: 42,
            uid: 1000,
            gid: 100,
        });
        assert_eq!(
            env[6..],
            pairs(&[
                ("PROTO", "UNIX"),
                ("UNIXREMOTEPID", "42"),
                ("UNIXREMOTEEUID", "1000"),
                ("UNIXREMOTEEGID", "100"),
            ])[..]
        );
        assert_eq!(plan.env_pairs(&ConnInfo::None).len(), 6);
    }

    #[test]
    fn envp_matches_env_pairs() {
        let mut s = service();
        s.env = vec![("X".into(), "1".into())];
        let plan = SpawnPlan::new(&s);
        let conn = tcp("192.0.2.7:1", "127.0.0.1:2");
        let envp = plan.envp_for(&conn);
        assert_eq!(envp.len(), plan.env_pairs(&conn).len());
        assert!(envp.ptrs.last().unwrap().is_null());
        assert!(envp.ptrs[..envp.len()].iter().all(|p| !p.is_null()));
    }

    #[test]
    fn argv_and_path() {
        let plan = SpawnPlan::new(&service());
        assert_eq!(plan.path().unwrap().as_bytes(), b"/usr/bin/hello");
        assert_eq!(plan._argv.len(), 3);
        assert_eq!(plan.argv_ptrs.len(), 4);
        assert!(plan.argv_ptrs[3].is_null());
        assert_eq!(plan.argv_ptrs[1], plan._argv[1].as_ptr());
    }

    #[test]
    fn default_nofile_is_capped_and_configured_limits_kept() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let plan = SpawnPlan::new(&service());
        let nofile: Vec<_> = plan
            .rlimits()
            .iter()
            .filter(|(r, _)| *r == libc::RLIMIT_NOFILE)
            .collect();
        assert_eq!(nofile.len(), 1);
        assert_eq!(nofile[0].1.rlim_cur, hard.min(1024));
        assert_eq!(nofile[0].1.rlim_max, hard);

        let mut s = service();
        s.rlimits = vec![
            Rlimit {
                resource: RlimitResource::Nofile,
                soft: Some(64),
                hard: Some(128),
            },
            Rlimit {
                resource: RlimitResource::Core,
                soft: None,
                hard: None,
            },
        ];
        let plan = SpawnPlan::new(&s);
        assert_eq!(plan.rlimits().len(), 2);
        assert_eq!(plan.rlimits()[0].1.rlim_cur, 64);
        assert_eq!(plan.rlimits()[0].1.rlim_max, 128);
        assert_eq!(plan.rlimits()[1].0, libc::RLIMIT_CORE);
        assert_eq!(plan.rlimits()[1].1.rlim_cur, libc::RLIM_INFINITY);
    }

    #[test]
    fn builtin_has_no_program() {
        let mut s = service();
        s.program = Program::Builtin(crate::service::Builtin::Echo);
        assert!(SpawnPlan::new(&s).path().is_none());
    }

    /// pass: listen_fds: LISTEN_FDS and LISTEN_FDNAMES after the
    /// connection variables, and room after `LISTEN_PID=` for the child's
    /// own pid; nothing of the kind for stdio.
    #[test]
    fn listen_fds_variables() {
        let mut s = service();
        s.listen = vec![
            crate::service::Address::AnyPort(53),
            crate::service::Address::AnyPort(853),
        ];
        s.pass = PassMode::ListenFds;
        s.wait = true;
        s.fd_names = vec!["dns".into(), "dot".into()];
        let plan = SpawnPlan::new(&s);
        assert_eq!(plan.listen_fds(), Some(2));
        let env = plan.env_pairs(&ConnInfo::None);
        let listen: Vec<_> = env
            .iter()
            .filter(|(k, _)| k.starts_with("LISTEN_"))
            .collect();
        assert_eq!(
            listen,
            [
                &("LISTEN_FDS".to_string(), "2".to_string()),
                &("LISTEN_PID".to_string(), String::new()),
                &("LISTEN_FDNAMES".to_string(), "dns:dot".to_string()),
            ]
        );
        assert!(!plan.envp_for(&ConnInfo::None).pid_slot().is_null());

        s.wait = false;
        s.fd_names.clear();
        let plan = SpawnPlan::new(&s);
        assert_eq!(plan.listen_fds(), Some(1));
        let env = plan.env_pairs(&ConnInfo::None);
        assert!(env.contains(&("LISTEN_FDNAMES".to_string(), "connection".to_string())));

        let plan = SpawnPlan::new(&service());
        assert_eq!(plan.listen_fds(), None);
        assert!(plan.envp_for(&ConnInfo::None).pid_slot().is_null());
        assert!(
            !plan
                .env_pairs(&ConnInfo::None)
                .iter()
                .any(|(k, _)| k.starts_with("LISTEN_"))
        );
    }
}
