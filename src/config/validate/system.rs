//! What validation asks of the system, cached for one load: users,
//! groups and their lists (passwd, group), directories, programs on the
//! PATH (inside a chroot, if any), superd's own hard limits and
//! capabilities; and the `--check` warning about a program the service's
//! user could not execute.

use super::*;

/// A user as passwd knows it.
#[derive(Clone, Debug)]
pub(super) struct UserInfo {
    pub(super) name: String,
    pub(super) uid: u32,
    /// `None`: the uid has no passwd entry.
    pub(super) gid: Option<u32>,
    pub(super) home: PathBuf,
    pub(super) shell: PathBuf,
}

/// Lookups are cached for one load: 1000 services naming `nobody` ask
/// passwd once.
#[derive(Default)]
pub(super) struct Cache {
    pub(super) users: HashMap<IdRef, Result<UserInfo, String>>,
    pub(super) groups: HashMap<IdRef, Result<u32, String>>,
    pub(super) grouplists: HashMap<(String, u32), Result<Vec<u32>, String>>,
    pub(super) programs: HashMap<(Option<PathBuf>, String), Result<PathBuf, String>>,
    pub(super) dirs: HashMap<PathBuf, bool>,
}

impl Cache {
    pub(super) fn user(&mut self, r: &IdRef) -> Result<UserInfo, String> {
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

    pub(super) fn group(&mut self, r: &IdRef) -> Result<u32, String> {
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
    pub(super) fn grouplist(&mut self, name: &str, gid: u32) -> Result<Vec<u32>, String> {
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

    pub(super) fn is_dir(&mut self, p: &Path) -> bool {
        if let Some(&v) = self.dirs.get(p) {
            return v;
        }
        let v = p.is_dir();
        self.dirs.insert(p.to_path_buf(), v);
        v
    }

    /// Finds `prog` (inside `chroot` when set); returns the path as the
    /// child will exec it.
    pub(super) fn program(
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

pub(super) fn user_info(u: User) -> UserInfo {
    UserInfo {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: Some(u.gid.as_raw()),
        home: u.dir,
        shell: u.shell,
    }
}

pub(super) fn host_path(inside: &Path, chroot: Option<&Path>) -> PathBuf {
    match chroot {
        Some(root) => root.join(inside.strip_prefix("/").unwrap_or(inside)),
        None => inside.to_path_buf(),
    }
}

pub(super) fn check_executable(inside: &Path, chroot: Option<&Path>) -> Result<(), String> {
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
pub(super) fn relative_to_file(prog: &str, file: &Path, chrooted: bool) -> String {
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

pub(super) fn find_program(
    prog: &str,
    chroot: Option<&Path>,
    search: &str,
) -> Result<PathBuf, String> {
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

/// superd's own hard limit for `r`: `Some(None)` is unlimited.
pub(super) fn own_hard_limit(r: RlimitResource) -> Option<RlimValue> {
    use nix::sys::resource::{RLIM_INFINITY, getrlimit};
    let (_, hard) = getrlimit(r.resource()).ok()?;
    Some((hard != RLIM_INFINITY).then_some(hard))
}

/// CAP_SYS_RESOURCE, from linux/capability.h.
pub(super) const CAP_SYS_RESOURCE: u32 = 24;

/// Whether superd's effective capability set holds `cap`
/// (/proc/self/status, CapEff).
pub(super) fn has_capability(cap: u32) -> bool {
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
pub(super) fn settle_rlimit(mut l: Rlimit, ctx: &Context) -> Result<Rlimit, String> {
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

/// Opens `path` if it is a regular file, with its metadata from the opened
/// file itself: what is read is what was checked. O_NONBLOCK, so that a
/// FIFO swapped in after the load's check cannot hang the event loop in
/// open(2). Symlinks are followed (programs are often links, as exec
/// follows them); the file is only read, never written or executed here.
pub(crate) fn open_regular(path: &Path) -> Option<(std::fs::File, std::fs::Metadata)> {
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
