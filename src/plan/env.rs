//! The child's environment: superd's defaults, `env:`, the connection
//! variables (superd.8, THE CHILD) written per connection into one buffer,
//! and the socket activation variables with the room for the child's pid.

use super::*;

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
pub(super) const PATH_USER: &str = "/usr/local/bin:/usr/bin:/bin";
pub(super) const PATH_ROOT: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The default soft `nofile` of a child: old programs loop up to it.
pub(super) const DEFAULT_NOFILE: u64 = 1024;

/// The variables of a connection itself, before those of a PROXY header.
const OWN_VARS: [&str; 10] = [
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
];
/// Where the PROXY header's variables start in [`CONN_VARS`].
pub(super) const PROXY_VARS_AT: usize = OWN_VARS.len();

/// Every connection variable name, in the order they are written: then
/// those of a PROXY header ([`crate::proxy::PROXY_VARS`], from index
/// [`PROXY_VARS_AT`]). The index is the bit in
/// [`SpawnPlan::conn_overridden`].
pub(super) const CONN_VARS: [&str; PROXY_VARS_AT + crate::proxy::PROXY_VARS.len()] = {
    let proxy = crate::proxy::PROXY_VARS;
    let mut all = [""; PROXY_VARS_AT + crate::proxy::PROXY_VARS.len()];
    let mut i = 0;
    while i < all.len() {
        all[i] = if i < PROXY_VARS_AT {
            OWN_VARS[i]
        } else {
            proxy[i - PROXY_VARS_AT]
        };
        i += 1;
    }
    all
};
/// The most connection variables one child gets (TCP behind a proxy).
pub(super) const CONN_VARS_MAX: usize = 7 + crate::proxy::PROXY_VARS.len();

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

/// The socket activation variables of a `pass: listen_fds` service
/// (superd.yaml(5), SOCKET ACTIVATION), but `LISTEN_PID`, which only the
/// child knows: its room is made in each [`Env`].
#[derive(Debug)]
pub(super) struct ListenVars {
    pub(super) n: usize,
    pub(super) fds: Vec<u8>,
    pub(super) names: Vec<u8>,
}

/// `LISTEN_PID=` and the room after it for the child's pid, in digits,
/// written by the child itself after the clone (the rest stays NUL).
pub(super) const LISTEN_PID: &[u8] = b"LISTEN_PID=";
pub(super) const PID_ROOM: usize = 20;

/// A per-connection environment: owned storage for the connection variables
/// and the NULL-terminated `envp` array pointing into it and into the plan.
/// Build it before `fork`; it borrows the plan, so it cannot outlive it.
#[derive(Debug)]
pub struct Env<'a> {
    /// `NAME=value\0` records of the connection variables; never touched
    /// after `ptrs` is built (so it never reallocates under them).
    _conn: Vec<u8>,
    pub(super) ptrs: Vec<*const c_char>,
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
        let mut ptrs = Vec::with_capacity(self.head_len() + n + self.body.tail.len() + 1);
        ptrs.extend(self.head().map(|c| c.as_ptr()));
        ptrs.extend(
            offsets[..n]
                .iter()
                .map(|&o| base.wrapping_add(o).cast_const().cast::<c_char>()),
        );
        ptrs.extend(self.body.tail.iter().map(|c| c.as_ptr()));
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
        self.head()
            .map(|c| c.as_bytes())
            .chain(conn_entries)
            .chain(self.body.tail.iter().map(|c| c.as_bytes()))
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
            if self.body.conn_overridden & (1 << idx) != 0 {
                return;
            }
            offsets[n] = buf.len();
            n += 1;
            // Writing into a Vec cannot fail; values are numbers and IPs, no NUL.
            let _ = write!(buf, "{}={}\0", CONN_VARS[idx], value);
        };
        match *conn {
            ConnInfo::Tcp { remote, local } | ConnInfo::TcpProxied { remote, local, .. } => {
                let (remote, local) = (canonical_addr(remote), canonical_addr(local));
                put(0, format_args!("TCP"));
                put(1, format_args!("{}", remote.ip()));
                put(2, format_args!("{}", remote.port()));
                put(3, format_args!("{}", local.ip()));
                put(4, format_args!("{}", local.port()));
                put(5, format_args!("{}", remote.ip()));
                put(6, format_args!("{}", remote.port()));
                if let ConnInfo::TcpProxied { proxy, .. } = conn {
                    for (name, value) in *proxy {
                        // Values are filtered by proxy::Header::proxy_vars:
                        // UTF-8 without control characters, so no NUL.
                        if let Some(i) = crate::proxy::PROXY_VARS.iter().position(|v| v == name) {
                            put(PROXY_VARS_AT + i, format_args!("{value}"));
                        }
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
pub(super) fn build_env(service: &Service) -> (Vec<CString>, Vec<CString>, u32) {
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

pub(super) fn env_entry(name: &str, value: &[u8]) -> CString {
    let mut entry = Vec::with_capacity(name.len() + 1 + value.len());
    entry.extend_from_slice(name.as_bytes());
    entry.push(b'=');
    entry.extend_from_slice(value);
    cstring(entry)
}

/// PATH, HOME, USER, LOGNAME, SHELL and SUPERD_SERVICE, in that order.
pub(super) fn default_env(service: &Service) -> Vec<(&'static str, Vec<u8>)> {
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
pub(super) fn path_or(p: &Path, default: &str) -> Vec<u8> {
    if p.as_os_str().is_empty() {
        default.as_bytes().to_vec()
    } else {
        p.as_os_str().as_bytes().to_vec()
    }
}
